//! Unlearning methods behind one trait. Each method is one file: its
//! settings (with every default in one `defaults()`), their validation, and
//! its `unlearn`. [`METHODS`] is the list of names; adding a method touches
//! its file and that list.
//!
//! A method edits a model in place, given a [`ForgetRequest`]: the training
//! split, the samples to forget, and — when the setting allows it — the
//! retain set. Methods never see the test set.

mod amun;
mod bs;
mod calibrate;
mod finetune;
mod ft;
mod ga;
mod job;
mod l1;
mod mask;
mod neggrad;
mod prepare;
mod retrain;
mod rl;
mod scrub;

pub use crate::model::lineage::{
    Lineage, forgotten_before, lineage_gap, short_summary, union as forget_union,
};
pub use amun::{Amun, AmunSalun, AmunSettings};
pub use bs::{Bs, BsSettings};
pub use calibrate::{
    BatchCap, CalibrateOverrides, CalibrateSettings, Calibration, Candidate, CapOrigin, Change,
    CostCap, LadderStart, Leg, Membership, Opening, Probe, Probes, RmiaSignal, Rule, Sizes,
    Targets, Verdict, Walk, accuracy_noise, auc_band, calibrate, calibrate_from, min_heldout,
    parse_calibration_budget, score, utility_drop, z_two_sided,
};
pub use finetune::{FineTune, LossFn, Precision, RetainBudget, STOP_BELOW, finetune};
pub use ft::{Ft, FtSettings};
pub use ga::{Ga, GaSettings};
pub(crate) use job::check_run;
pub use job::{
    BatchRun, UnlearnJob, Unlearned, class_mostly_forgotten, class_share_words, default_cap_way_out,
};
pub use l1::l1_norm;
pub use l1::{L1, L1Settings};
pub use mask::{GivenOrOwn, SaliencyMask, given_or_own, saliency_mask};
pub use neggrad::{NegGrad, NegGradSettings};
pub use prepare::{AdvFile, Prepared, RunSettings};
pub use retrain::{Retrain, RetrainSettings};
pub use rl::random_wrong_labels;
pub use rl::{Rl, RlSettings, Salun};
pub use scrub::distill_kl;
pub use scrub::{Scrub, ScrubSettings};

use crate::attack::{AdvSet, AdvSettings, AdvSummary};
use crate::data::{IndexSet, Split};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::model::checkpoint::EpochRecord;
use crate::progress::Progress;
use crate::train::TrainOverrides;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A deletion request as a method sees it.
pub struct ForgetRequest<'a> {
    /// The training split (on the model's device).
    pub train: &'a Split,
    /// Training indices to forget (sorted).
    pub forget: &'a [i64],
    /// The retain set D_R (training indices, sorted), or `None` when the
    /// method may not use it (the paper's "without D_R" setting).
    pub retain: Option<&'a [i64]>,
    /// The adversarial set of `forget`, for methods that ask for one.
    pub adv: Option<&'a AdvSet>,
    /// The original model's saliency mask, for methods that use one
    /// ([`Method::saliency`]), when the method runs more than once on the
    /// request (calibration's legs and rungs): SalUn defines the mask on
    /// the model it starts from, and a leg that recomputed it on an already
    /// fine-tuned state would free other weights. `None`: the method
    /// computes it from the model it is given.
    pub mask: Option<&'a SaliencyMask>,
    pub num_classes: usize,
}

/// What a method may draw on besides the request.
pub struct RunCtx<'a> {
    /// Seed of every random choice the method makes.
    pub seed: u64,
    pub progress: &'a dyn Progress,
    /// The recipe the original model was trained with (for `retrain`).
    pub original_recipe: Option<&'a crate::train::Recipe>,
    /// Sees every training batch of every method (audits, tests).
    pub observe: Option<&'a dyn Fn(&crate::data::Batch)>,
    /// Called after each epoch with its 1-based number and the model
    /// ([`EpochObserver`]); [`Control::Stop`] ends the method there
    /// (calibration's stopping point). In a `RefCell` because methods see
    /// the context by shared reference; only [`RunCtx::epoch_done`]
    /// borrows it, once per epoch.
    pub on_epoch: Option<RefCell<&'a mut dyn EpochObserver>>,
}

/// Whether a method goes on after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Sees the model after every epoch of a method and decides whether it
/// goes on; stateful (`&mut self`) like burn's `should_stop`, so a
/// calibration's walk is a value, not closures over shared cells.
pub trait EpochObserver {
    /// `epoch` is 1-based.
    fn after_epoch(&mut self, epoch: usize, model: &Classifier) -> Result<Control>;
}

/// A closure is an observer (tests, studies): `true` goes on.
impl<F: FnMut(usize, &Classifier) -> Result<bool>> EpochObserver for F {
    fn after_epoch(&mut self, epoch: usize, model: &Classifier) -> Result<Control> {
        Ok(if self(epoch, model)? {
            Control::Continue
        } else {
            Control::Stop
        })
    }
}

impl<'a> RunCtx<'a> {
    /// A context with no observers.
    pub fn new(seed: u64, progress: &'a dyn Progress) -> RunCtx<'a> {
        RunCtx {
            seed,
            progress,
            original_recipe: None,
            observe: None,
            on_epoch: None,
        }
    }

    /// Reports the end of `epoch` (1-based); whether to go on.
    pub fn epoch_done(&self, epoch: usize, model: &Classifier) -> Result<bool> {
        match &self.on_epoch {
            Some(o) => Ok(o.borrow_mut().after_epoch(epoch, model)? == Control::Continue),
            None => Ok(true),
        }
    }
}

/// What a run of a method did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnlearnLog {
    pub epochs: Vec<EpochRecord>,
    /// Seconds per stage.
    pub timing: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adv: Option<AdvSummary>,
    /// What a retrain-free calibration chose, when the run was calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Why the fine-tune ran fewer epochs than its settings say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The D_R images each epoch visited when the retain budget drew fewer
    /// than all of D_R: the settings hold the budget as given, which may
    /// round below the one batch that runs (hostile16 W1k).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_per_epoch: Option<usize>,
}

impl UnlearnLog {
    /// Images forwarded and backpropagated: every epoch's, and the
    /// adversarial search's passes.
    pub fn image_steps(&self) -> u64 {
        self.epochs.iter().map(|e| e.images as u64).sum::<u64>()
            + self.adv.as_ref().map_or(0, |a| a.total_steps)
    }

    /// Runs `f`, adding its wall time to `timing[stage]`.
    pub fn time<T>(&mut self, stage: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = std::time::Instant::now();
        let out = f();
        *self.timing.entry(stage.to_string()).or_insert(0.0) += t.elapsed().as_secs_f64();
        out
    }
}

/// An unlearning method with checked settings.
pub trait Method {
    /// Its name on the command line.
    fn name(&self) -> &'static str;
    /// Its settings, as recorded in sidecars and reports.
    fn settings(&self) -> Value;
    /// Whether it cannot run without the retain set (and why).
    fn requires_retain(&self) -> Option<&'static str> {
        None
    }
    /// The attack settings, for methods that train on an adversarial set.
    fn adversarial(&self) -> Option<AdvSettings> {
        None
    }
    /// The fine-tuning it runs (`None` for retrain, which trains anew with
    /// the original's recipe).
    fn finetune(&self) -> Option<&FineTune> {
        None
    }
    /// The fraction of weights SalUn's mask frees, for methods that mask
    /// their gradients (SalUn, AMUN+SalUn).
    fn saliency(&self) -> Option<f64> {
        None
    }
    /// The same method with `o` applied to its training (its fine-tuning,
    /// or retrain's recipe), checked again: the one lever the flags, tuning
    /// and calibration pull.
    fn adjusted(&self, _o: &TrainOverrides) -> Result<Box<dyn Method>> {
        Err(Error::invalid(
            self.name(),
            "has no training settings to adjust",
        ))
    }
    /// Unlearns `req.forget` from `model`, in place.
    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog>;
}

/// A method's settings type: its checks and its training knobs.
pub trait Settings:
    Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug + 'static
{
    /// The fine-tuning, when the method has one.
    fn finetune(&self) -> Option<&FineTune>;
    fn finetune_mut(&mut self) -> Option<&mut FineTune>;
    /// Checks beyond the fine-tuning's; errors name `method.field`.
    fn check_own(&self, _method: &str) -> Result<()> {
        Ok(())
    }
    /// Validates every value; errors name `method.field`.
    fn check(&self, method: &str) -> Result<()> {
        if let Some(ft) = self.finetune() {
            ft.check(method)?;
        }
        self.check_own(method)
    }
    /// Applies `o` to the training knobs (the fine-tuning's).
    fn adjust(&mut self, o: &TrainOverrides, method: &str) -> Result<()> {
        match self.finetune_mut() {
            Some(ft) => ft.apply(o, method),
            None => Err(Error::invalid(method, "has no training settings to adjust")),
        }
    }
}

/// [`Settings`]' accessors for a settings struct whose fine-tuning is its
/// `finetune` field.
macro_rules! finetune_field {
    () => {
        fn finetune(&self) -> Option<&super::FineTune> {
            Some(&self.finetune)
        }
        fn finetune_mut(&mut self) -> Option<&mut super::FineTune> {
            Some(&mut self.finetune)
        }
    };
}
use finetune_field;

/// A share of a retrain's cost as messages print it (4 decimals), or
/// `below 0.0001` for a tiny cap that would print as `0.0000` (hostile13
/// R5: `--calibrate-max-cost 1e-9`).
pub(crate) fn share_text(x: f64) -> String {
    let s = format!("{x:.4}");
    match x > 0.0 && s == "0.0000" {
        true => "below 0.0001".into(),
        false => s,
    }
}

/// A fraction of weights a saliency mask frees, if set, must lie in (0,1].
fn check_ratio(r: Option<f64>, method: &str) -> Result<()> {
    match r {
        Some(r) if !(r > 0.0 && r <= 1.0) => Err(Error::invalid(
            format!("{method}.salun_ratio"),
            format!("must lie in (0,1], got {r}"),
        )),
        _ => Ok(()),
    }
}

/// One method: its name, its settings type with their defaults, and what it
/// does. [`entry`] turns a definition into a registry line; [`Configured`]
/// is the definition with checked settings, a [`Method`].
pub trait MethodDef: 'static {
    const NAME: &'static str;
    const SUMMARY: &'static str;
    type Settings: Settings;
    fn defaults() -> Self::Settings;
    /// Why it cannot run without the retain set, if it cannot.
    fn requires_retain() -> Option<&'static str> {
        None
    }
    /// The attack its adversarial set is made with, if it uses one.
    fn adversarial(_: &Self::Settings) -> Option<AdvSettings> {
        None
    }
    /// The fraction of weights its saliency mask frees, if it masks.
    fn saliency(_: &Self::Settings) -> Option<f64> {
        None
    }
    fn unlearn(
        s: &Self::Settings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog>;
}

/// Method `D` with settings that passed their checks; there is no other way
/// to make one than [`Configured::new`].
///
/// ```
/// use amun::unlearn::{Configured, Ft, Method, MethodDef};
/// let mut s = Ft::defaults();
/// s.finetune.lr = 0.05;
/// let ft = Configured::<Ft>::new(s).unwrap();
/// assert_eq!(ft.finetune().unwrap().lr, 0.05);
/// let mut bad = Ft::defaults();
/// bad.finetune.epochs = 0;
/// assert!(Configured::<Ft>::new(bad).is_err());
/// ```
pub struct Configured<D: MethodDef> {
    settings: D::Settings,
}

impl<D: MethodDef> Configured<D> {
    /// Checks `settings`.
    pub fn new(settings: D::Settings) -> Result<Self> {
        settings.check(D::NAME)?;
        Ok(Configured { settings })
    }

    /// The checked settings (read-only).
    pub fn get(&self) -> &D::Settings {
        &self.settings
    }
}

impl<D: MethodDef> Method for Configured<D> {
    fn name(&self) -> &'static str {
        D::NAME
    }

    fn settings(&self) -> Value {
        serde_json::to_value(&self.settings).expect("settings serialise")
    }

    fn requires_retain(&self) -> Option<&'static str> {
        D::requires_retain()
    }

    fn adversarial(&self) -> Option<AdvSettings> {
        D::adversarial(&self.settings)
    }

    fn finetune(&self) -> Option<&FineTune> {
        self.settings.finetune()
    }

    fn saliency(&self) -> Option<f64> {
        D::saliency(&self.settings)
    }

    fn adjusted(&self, o: &TrainOverrides) -> Result<Box<dyn Method>> {
        let mut s = self.settings.clone();
        s.adjust(o, D::NAME)?;
        Ok(Box::new(Configured::<D>::new(s)?))
    }

    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        D::unlearn(&self.settings, model, req, ctx)
    }
}

/// A registered method: its name, one line about it, its default settings,
/// and how to build it from settings (JSON: the boundary of TOML tables,
/// `--set` and sidecars).
pub struct Entry {
    pub name: &'static str,
    pub summary: &'static str,
    pub defaults: fn() -> Value,
    pub build: fn(&Value) -> Result<Box<dyn Method>>,
}

/// The registry line of `D`.
pub const fn entry<D: MethodDef>() -> Entry {
    Entry {
        name: D::NAME,
        summary: D::SUMMARY,
        defaults: defaults_json::<D>,
        build: build_json::<D>,
    }
}

fn defaults_json<D: MethodDef>() -> Value {
    serde_json::to_value(D::defaults()).expect("settings serialise")
}

fn build_json<D: MethodDef>(overrides: &Value) -> Result<Box<dyn Method>> {
    let s = settings_from(D::NAME, &D::defaults(), overrides)?;
    Ok(Box::new(Configured::<D>::new(s)?))
}

/// Every method amun knows.
pub const METHODS: &[Entry] = &[
    entry::<Retrain>(),
    entry::<Ft>(),
    entry::<Rl>(),
    entry::<Ga>(),
    entry::<Bs>(),
    entry::<L1>(),
    entry::<Salun>(),
    entry::<Amun>(),
    entry::<AmunSalun>(),
    entry::<Scrub>(),
    entry::<NegGrad>(),
];

/// The registered names, in order.
pub fn names() -> Vec<&'static str> {
    METHODS.iter().map(|e| e.name).collect()
}

/// Builds method `name` with `overrides` (a JSON object of settings; keys
/// not given keep their defaults). Unknown names and keys are errors that
/// list what is known.
pub fn build(name: &str, overrides: &Value) -> Result<Box<dyn Method>> {
    let entry = METHODS.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::invalid(
            "method",
            format!("unknown method '{name}'; known: {}", names().join(", ")),
        )
    })?;
    (entry.build)(overrides)
}

/// A configured method as a value that plans and jobs carry: built (and so
/// checked) once from the settings table a config or the flags gave.
/// Serialises as its name and full settings, so anything hashed from it
/// changes when an effective setting does, defaults included.
#[derive(Clone)]
pub struct MethodSpec {
    method: std::rc::Rc<dyn Method>,
    table: Value,
}

impl MethodSpec {
    /// Method `name` with the settings `table` (keys not given keep their
    /// defaults).
    pub fn new(name: &str, table: &Value) -> Result<MethodSpec> {
        Ok(MethodSpec {
            method: build(name, table)?.into(),
            table: table.clone(),
        })
    }

    /// The method.
    pub fn method(&self) -> &dyn Method {
        self.method.as_ref()
    }

    pub fn name(&self) -> &'static str {
        self.method.name()
    }

    /// The settings as they were written (what names its artifacts: a
    /// run of the published defaults is named by `{}`).
    pub fn table(&self) -> &Value {
        &self.table
    }

    /// This method with `o` applied to its training (see
    /// [`Method::adjusted`]).
    pub fn adjusted(&self, o: &TrainOverrides) -> Result<MethodSpec> {
        Ok(MethodSpec {
            method: self.method.adjusted(o)?.into(),
            table: self.table.clone(),
        })
    }
}

impl PartialEq for MethodSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.method.settings() == other.method.settings()
    }
}

impl std::fmt::Debug for MethodSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name(), self.method.settings())
    }
}

impl Serialize for MethodSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("name", self.name())?;
        m.serialize_entry("settings", &self.method.settings())?;
        m.end()
    }
}

/// Refuses fine-tuning settings that `given` (the table a user wrote:
/// a config's method table, `--set`) sets but that `method`'s effective
/// settings would make meaningless, naming the key: they would be recorded
/// as used while changing nothing. `with_retain`: whether any run of it may
/// use the retain set. Only what the user wrote is checked: the defaults
/// (a stop floor, a retain floor) are meant to sit unused where they do not
/// apply.
pub fn check_given(method: &dyn Method, given: &Value, with_retain: bool) -> Result<()> {
    let Some(ft) = method.finetune() else {
        return Ok(());
    };
    let name = method.name();
    let wrote = |key: &str| {
        given.get("finetune").is_some_and(|f| {
            f.get(key).is_some() || f.get(key.replace('_', "-").as_str()).is_some()
        })
    };
    let refuse = |key: &str, why: &str| Err(Error::invalid(format!("{name}.finetune.{key}"), why));
    if !with_retain {
        for key in ["retain_budget", "retain_floor"] {
            if wrote(key) {
                return refuse(
                    key,
                    "a run without the retain set (--no-retain, with_retain = [false]) visits no \
                     retain images, so it would have no effect; drop it or run with the retain set",
                );
            }
        }
    }
    if wrote("retain_floor") && ft.retain_budget == RetainBudget::Full {
        return refuse(
            "retain_floor",
            "the retain budget is full (all of D_R every epoch), so a floor on the retain images \
             an epoch visits would have no effect; set finetune.retain_budget to a multiple of the \
             request or drop retain_floor",
        );
    }
    if wrote("stop_below")
        && ft.stop_below.is_some_and(|f| f > 0.0)
        && matches!(ft.schedule, crate::train::Schedule::Constant)
    {
        return refuse(
            "stop_below",
            "the schedule is constant, so the rate never falls below stop_below × lr and the \
             floor would stop nothing; choose a decaying finetune.schedule (e.g. step:1:0.1) or \
             drop stop_below",
        );
    }
    Ok(())
}

/// Merges `overrides` into `defaults` (JSON objects, tables merged key by
/// key), refusing keys the defaults do not have, then deserialises.
pub fn settings_from<T: Serialize + DeserializeOwned>(
    method: &str,
    defaults: &T,
    overrides: &Value,
) -> Result<T> {
    let mut base =
        serde_json::to_value(defaults).map_err(|e| Error::invalid(method, e.to_string()))?;
    match overrides {
        Value::Null => {}
        Value::Object(o) => merge(&mut base, o, method)?,
        _ => {
            return Err(Error::invalid(
                method,
                "settings must be a table of key = value",
            ));
        }
    }
    serde_path_to_error::deserialize(base).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            Error::invalid(method, format!("bad setting: {inner}"))
        } else {
            Error::invalid(format!("{method}.{path}"), format!("bad value: {inner}"))
        }
    })
}

/// The methods a method's own top-level setting belongs to, when another
/// method is given it (`ft` with `adv_only`): named rather than listed as
/// unknown, as a precomputed `--adv` is.
fn only_for(key: &str) -> Option<&'static str> {
    match key {
        "adv_only" | "attack" => {
            Some("amun and amun-salun (the methods that train on an adversarial set)")
        }
        "salun_ratio" => {
            Some("salun and amun-salun (the methods that mask the gradient by saliency)")
        }
        _ => None,
    }
}

fn merge(base: &mut Value, over: &Map<String, Value>, path: &str) -> Result<()> {
    let fields = base
        .as_object_mut()
        .ok_or_else(|| Error::invalid(path, "is a value, not a table"))?;
    for (k, v) in over {
        let key = k.replace('-', "_");
        let here = format!("{path}.{key}");
        match fields.get_mut(&key) {
            Some(slot @ Value::Object(_)) => match v {
                Value::Object(o) => merge(slot, o, &here)?,
                _ => return Err(Error::invalid(here, "expected a table of settings")),
            },
            Some(slot) => *slot = v.clone(),
            None if let Some(only) = only_for(&key).filter(|_| !path.contains('.')) => {
                return Err(Error::invalid(here, format!("only for {only}")));
            }
            None => {
                let mut known: Vec<&str> = fields.keys().map(String::as_str).collect();
                known.sort();
                return Err(Error::invalid(
                    here,
                    format!("unknown setting; {path} has {}", known.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

/// The retain set, or an error saying why `method` needs it.
pub(crate) fn retain_of<'a>(req: &ForgetRequest<'a>, method: &str) -> Result<&'a [i64]> {
    req.retain.ok_or_else(|| {
        Error::invalid(
            "no-retain",
            format!("{method} cannot run without the retain set"),
        )
    })
}

/// The training rows `indices`, shuffled into batches, crop+flip when `augment`.
pub(crate) fn indices_set(
    train: &Split,
    name: &str,
    indices: &[i64],
    augment: bool,
) -> crate::data::TrainSet {
    crate::data::TrainSet::single(
        crate::data::Part::from_indices(name, train, indices, augment),
        crate::data::Augment::CROP_FLIP,
    )
}

/// The retain rows `retain` as a set, each epoch a fresh sample under
/// `ft`'s retain budget for a request of `request` samples.
pub(crate) fn retain_set(
    train: &Split,
    retain: &[i64],
    ft: &FineTune,
    request: usize,
    augment: bool,
) -> crate::data::TrainSet {
    crate::data::TrainSet::single(
        ft.budgeted(
            crate::data::Part::from_indices("retain", train, retain, augment),
            retain,
            request,
        ),
        crate::data::Augment::CROP_FLIP,
    )
}

/// Merges two sorted index lists.
pub(crate) fn union_sorted(a: &[i64], b: &[i64]) -> Vec<i64> {
    IndexSet::new(a.iter().chain(b).copied()).into_vec()
}

/// How [`unlearn_requests`] runs a method.
#[derive(Default)]
pub struct RequestOptions<'a> {
    /// Whether the method may use the retain set (the paper's "with D_R").
    pub with_retain: bool,
    /// AMUN-A: recompute the adversarial set on the current model for each
    /// request.
    pub adaptive: bool,
    /// An adversarial set computed earlier (rows for every request).
    pub precomputed: Option<&'a AdvSet>,
    /// Retrain-free calibration against a held-out split the model never
    /// trained on (each request calibrated in turn).
    pub calibrate: Option<(&'a CalibrateSettings, &'a Split)>,
    /// Reference models for calibration's membership test (RMIA, as the
    /// audit's); without, the loss-based one.
    pub rmia: Option<RmiaSignal<'a>>,
    /// Training samples the model already forgot before these requests
    /// (sorted; earlier versions of a registry): never in a retain set.
    pub forgotten: &'a [i64],
    /// Stop after the first request calibration cannot forget (its log is
    /// the last): a caller that refuses such a batch (a registry's apply)
    /// spends no work on the requests after it.
    pub stop_when_remembered: bool,
    /// A registry apply's cap for the whole batch, which each request's
    /// `calibrate.max_cost` is a share of: recorded with each walk's cost.
    pub batch_cap: Option<BatchCap>,
}

/// Runs `method` on a sequence of deletion requests (one request is the
/// common case), editing `model` in place; one log per request.
///
/// - The retain set of request k (when `with_retain`) is the training set
///   minus every sample forgotten so far and minus request k: no step ever
///   trains on an already-forgotten sample.
/// - For methods that use an adversarial set: with `adaptive` (AMUN-A) it is
///   recomputed on the current model for each request; otherwise it is
///   computed once on the original model for all requests (or `precomputed`
///   is used) and each request takes its rows.
/// - With `calibrate`, the method's learning rate and stopping epoch are
///   chosen by [`calibrate`], for each request in turn.
/// - Samples in `opts.forgotten` (forgotten by earlier runs) are in no
///   retain set, and requests are unlearned without them.
pub fn unlearn_requests(
    method: &dyn Method,
    model: &mut Classifier,
    train: &Split,
    num_classes: usize,
    requests: &[Vec<i64>],
    opts: &RequestOptions<'_>,
    ctx: &RunCtx<'_>,
) -> Result<Vec<UnlearnLog>> {
    job::check_run(method, opts.with_retain, false, false)?;
    let n = train.len() as i64;
    let all_requested = requests
        .iter()
        .fold(Vec::new(), |acc, r| union_sorted(&acc, r));
    if let Some(&bad) = all_requested.iter().find(|&&i| i < 0 || i >= n) {
        return Err(Error::invalid(
            "forget",
            format!("index {bad} is out of range for {n} training samples"),
        ));
    }
    let attack = method.adversarial();
    let mut adv_source = AdvSource {
        train,
        all_requested: &all_requested,
        adaptive: opts.adaptive,
        // Computed at the first request that trains on it: on the original
        // model still, since every request before it kept the model as it was.
        shared: match (opts.precomputed, opts.adaptive) {
            (Some(p), false) if attack.is_some() => Some(p.subset(&all_requested)),
            _ => None,
        },
    };
    let mut forgotten = IndexSet::new(opts.forgotten.iter().copied());
    let mut logs = Vec::new();
    for (k, request) in requests.iter().enumerate() {
        let (forget, retain) = request_sets(k, request, &forgotten, opts.with_retain, n)?;
        let plain = ForgetRequest {
            train,
            forget: &forget,
            retain: retain.as_deref(),
            adv: None,
            mask: None,
            num_classes,
        };
        let t = std::time::Instant::now();
        // Calibration decides first whether the original is kept: then the
        // method prepares nothing (no adversarial search).
        let opening = match opts.calibrate {
            Some((cal, heldout)) => Some(calibrate::open(
                method, cal, model, &plain, heldout, opts.rmia, ctx,
            )?),
            None => None,
        };
        let kept = opening.as_ref().is_some_and(Opening::keeps_original);
        let mut search_time = 0.0;
        let adv: Option<AdvSet> = match &attack {
            Some(s) if !kept => {
                let at = std::time::Instant::now();
                let a = adv_source.rows(model, &forget, s, ctx)?;
                search_time = at.elapsed().as_secs_f64();
                Some(a)
            }
            _ => None,
        };
        let req = ForgetRequest {
            adv: adv.as_ref(),
            ..plain
        };
        let mut log = match (opts.calibrate, opening) {
            (Some((cal, _)), Some(o)) => {
                let (mut log, mut record) = calibrate_from(o, method, cal, model, &req, ctx)?;
                if let Some(b) = opts.batch_cap {
                    record.record_batch_cap(b);
                }
                log.calibration = Some(record);
                log
            }
            _ => method.unlearn(model, &req, ctx)?,
        };
        // The method alone: the search is timed on its own.
        let method_total = t.elapsed().as_secs_f64() - search_time;
        log.timing.insert("method_total".into(), method_total);
        if log.stopped.is_none() && opts.calibrate.is_none() {
            log.stopped = method.finetune().and_then(|f| f.epochs_to_run().1);
        }
        // The request (D_F, and D_A for AMUN) sizes what the budget draws
        // from D_R an epoch; a calibrated run's walk records its own.
        if opts.calibrate.is_none() {
            let request = req.forget.len() + req.adv.map_or(0, AdvSet::len);
            log.retain_per_epoch = (method.finetune().zip(req.retain))
                .and_then(|(f, r)| f.retain_per_epoch(request, r.len()));
        }
        if attack.is_some() {
            log.timing.insert("adversarial_search".into(), search_time);
            log.adv = adv.as_ref().map(|a| a.summary());
        }
        // method_total is the method alone; total adds the search it read.
        let total = log.timing["method_total"]
            + log.timing.get("adversarial_search").copied().unwrap_or(0.0);
        log.timing.insert("total".into(), total);
        let remembered = log.calibration.as_ref().is_some_and(|c| c.remembers);
        logs.push(log);
        if remembered && opts.stop_when_remembered {
            break;
        }
        forgotten = forgotten.union(&IndexSet::new(forget.iter().copied()));
    }
    Ok(logs)
}

/// Request `k`'s forget set (its samples not forgotten before, in the
/// request's order) and, `with_retain`, its retain set: every training
/// sample neither forgotten before nor in this request.
fn request_sets(
    k: usize,
    request: &[i64],
    forgotten: &IndexSet,
    with_retain: bool,
    n: i64,
) -> Result<(Vec<i64>, Option<Vec<i64>>)> {
    if request.is_empty() {
        return Err(Error::invalid(
            "forget",
            format!("request {}: the forget set is empty", k + 1),
        ));
    }
    let forget: Vec<i64> = request
        .iter()
        .copied()
        .filter(|&i| !forgotten.contains(i))
        .collect();
    if forget.is_empty() {
        return Err(Error::invalid(
            "requests",
            format!("request {} holds only already-forgotten samples", k + 1),
        ));
    }
    let retain = with_retain.then(|| {
        let gone = forgotten.union(&IndexSet::new(forget.iter().copied()));
        gone.complement(n as usize).into_vec()
    });
    Ok((forget, retain))
}

/// Where each request's adversarial rows come from: searched on the current
/// model per request (AMUN-A, `adaptive`), or one set for every request's
/// samples (given, or searched once) that each request takes its rows of.
struct AdvSource<'a> {
    train: &'a Split,
    all_requested: &'a [i64],
    adaptive: bool,
    shared: Option<AdvSet>,
}

impl AdvSource<'_> {
    fn rows(
        &mut self,
        model: &Classifier,
        forget: &[i64],
        s: &AdvSettings,
        ctx: &RunCtx<'_>,
    ) -> Result<AdvSet> {
        let search = |idx: &[i64]| -> Result<AdvSet> {
            let part = self.train.select(idx);
            crate::attack::search(model, &part.images, &part.labels, idx, s, ctx.progress)
        };
        if self.adaptive {
            return search(forget);
        }
        let shared = match self.shared.take() {
            Some(sh) => sh,
            None => search(self.all_requested)?,
        };
        let rows = shared.subset(forget);
        self.shared = Some(shared);
        Ok(rows)
    }
}

/// The sidecar of an unlearned model: the parent's model and data, with the
/// method, its settings, the requests and the time of every stage.
pub fn unlearned_sidecar(
    parent: &crate::model::Sidecar,
    parent_fingerprint: &str,
    method: &dyn Method,
    requests: &[crate::data::ForgetSet],
    logs: &[UnlearnLog],
    seed: u64,
) -> crate::model::Sidecar {
    let mut timing = BTreeMap::new();
    for log in logs {
        for (k, v) in &log.timing {
            *timing.entry(k.clone()).or_insert(0.0) += v;
        }
    }
    let mut sc = crate::model::Sidecar::new(
        &parent.model,
        &parent.data,
        &parent.classes,
        seed,
        crate::model::Origin::Unlearn {
            method: method.name().into(),
            settings: method.settings(),
            forget: requests
                .iter()
                .map(crate::model::checkpoint::ForgetSummary::of)
                .collect(),
            parent: parent_fingerprint.into(),
            timing,
            calibration: logs
                .iter()
                .find_map(|l| l.calibration.as_ref())
                .and_then(|c| serde_json::to_value(c).ok()),
            image_steps: logs.iter().map(UnlearnLog::image_steps).sum(),
            notes: logs.iter().filter_map(|l| l.stopped.clone()).collect(),
            retain_per_epoch: logs.iter().filter_map(|l| l.retain_per_epoch).collect(),
            forgotten_before: parent.forgotten(),
            heldout: None,
            adversarial: None,
        },
    );
    sc.history = logs.iter().flat_map(|l| l.epochs.clone()).collect();
    sc.data_sha256 = parent.data_sha256.clone();
    sc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method's recorded defaults, given back as a user's settings,
    /// pass the checks a user's settings pass (issue 37, N8: FT and the
    /// other constant-rate baselines recorded `stop_below 0.01` with a
    /// constant schedule, a pair refused when given).
    #[test]
    fn recorded_defaults_are_settings_check_given_accepts() {
        for name in names() {
            let m = build(name, &Value::Null).unwrap();
            let recorded = m.settings();
            check_given(m.as_ref(), &recorded, true)
                .unwrap_or_else(|e| panic!("{name}'s defaults {recorded}: {e}"));
            // Given back, they build the same method.
            assert_eq!(build(name, &recorded).unwrap().settings(), recorded);
        }
    }

    /// The floor in force is what it was: none at a constant rate, 1% of
    /// the rate once a decaying schedule replaces it (tuning, --schedule),
    /// AMUN's own 1%, and a user's value as given.
    #[test]
    fn the_stop_floor_in_force_is_unchanged_by_an_unset_default() {
        let ft = |o: Value| build("ft", &o).unwrap().finetune().unwrap().clone();
        assert_eq!(ft(Value::Null).stop_floor(), 0.0);
        assert_eq!(ft(Value::Null).epochs_to_run().0, 10);
        let step = serde_json::json!({"finetune": {"schedule": "step:1:0.1"}});
        assert_eq!(ft(step).stop_floor(), STOP_BELOW);
        let given = serde_json::json!({"finetune": {"schedule": "step:1:0.1", "stop_below": 0.0}});
        assert_eq!(ft(given).stop_floor(), 0.0);
        let amun = build("amun", &Value::Null).unwrap();
        assert_eq!(amun.finetune().unwrap().stop_below, Some(0.01));
        // A record made before the floor existed ran every epoch.
        let mut old = serde_json::to_value(ft(Value::Null)).unwrap();
        old.as_object_mut().unwrap().remove("stop_below");
        let old: FineTune = serde_json::from_value(old).unwrap();
        assert_eq!(old.stop_below, Some(0.0));
    }
}
