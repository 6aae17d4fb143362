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
mod l1;
mod mask;
mod neggrad;
mod retrain;
mod rl;
mod scrub;

pub use calibrate::{
    CalibrateSettings, Calibration, Candidate, Probe, Probes, Rule, calibrate, score,
};
pub use finetune::{FineTune, LossFn, finetune};
pub use l1::l1_norm;
pub use mask::{SaliencyMask, saliency_mask};
pub use rl::random_wrong_labels;
pub use scrub::distill_kl;

use crate::attack::{AdvSet, AdvSettings, AdvSummary};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::model::checkpoint::EpochRecord;
use crate::progress::Progress;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
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
    /// Called after each epoch with its 1-based number and the model;
    /// returning `false` ends the method there (calibration's stopping
    /// point).
    pub on_epoch: Option<&'a EpochHook<'a>>,
}

/// Called after each epoch with its 1-based number and the model; returns
/// whether to go on.
pub type EpochHook<'a> = dyn Fn(usize, &Classifier) -> Result<bool> + 'a;

impl RunCtx<'_> {
    /// A context with no observers.
    pub fn new<'a>(seed: u64, progress: &'a dyn Progress) -> RunCtx<'a> {
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
        match self.on_epoch {
            Some(f) => f(epoch, model),
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
    pub calibration: Option<serde_json::Value>,
}

impl UnlearnLog {
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
    /// Unlearns `req.forget` from `model`, in place.
    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog>;
}

/// A registered method: its name, one line about it, its default settings,
/// and how to build it from settings.
pub struct Entry {
    pub name: &'static str,
    pub summary: &'static str,
    pub defaults: fn() -> Value,
    pub build: fn(&Value) -> Result<Box<dyn Method>>,
}

/// Every method amun knows.
pub const METHODS: &[Entry] = &[
    retrain::RETRAIN,
    ft::FT,
    rl::RL,
    ga::GA,
    bs::BS,
    l1::L1,
    rl::SALUN,
    amun::AMUN,
    amun::AMUN_SALUN,
    scrub::SCRUB,
    neggrad::NEGGRAD,
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

/// Merges two sorted index lists.
pub(crate) fn union_sorted(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut v: Vec<i64> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
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
    /// trained on (one request only).
    pub calibrate: Option<(&'a CalibrateSettings, &'a Split)>,
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
///   chosen by [`calibrate`].
pub fn unlearn_requests(
    method: &dyn Method,
    model: &mut Classifier,
    train: &Split,
    num_classes: usize,
    requests: &[Vec<i64>],
    opts: &RequestOptions<'_>,
    ctx: &RunCtx<'_>,
) -> Result<Vec<UnlearnLog>> {
    let (with_retain, adaptive, precomputed) = (opts.with_retain, opts.adaptive, opts.precomputed);
    if !with_retain && let Some(why) = method.requires_retain() {
        return Err(Error::invalid(
            "no-retain",
            format!("{} cannot run without the retain set: {why}", method.name()),
        ));
    }
    if opts.calibrate.is_some() && requests.len() != 1 {
        return Err(Error::invalid(
            "calibrate",
            "calibration takes one deletion request at a time",
        ));
    }
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
    let search = |model: &Classifier, idx: &[i64], s: &AdvSettings| -> Result<AdvSet> {
        let part = train.select(idx);
        crate::attack::search(model, &part.images, &part.labels, idx, s, ctx.progress)
    };
    let mut shared: Option<AdvSet> = None;
    let mut shared_time = 0.0;
    if let Some(s) = &attack
        && !adaptive
    {
        match precomputed {
            Some(p) => shared = Some(p.subset(&all_requested)),
            None => {
                let t = std::time::Instant::now();
                shared = Some(search(model, &all_requested, s)?);
                shared_time = t.elapsed().as_secs_f64();
            }
        }
    }
    let mut forgotten: Vec<i64> = Vec::new();
    let mut logs = Vec::new();
    for (k, request) in requests.iter().enumerate() {
        let forget: Vec<i64> = request
            .iter()
            .copied()
            .filter(|i| forgotten.binary_search(i).is_err())
            .collect();
        if request.is_empty() {
            return Err(Error::invalid(
                "forget",
                format!("request {}: the forget set is empty", k + 1),
            ));
        }
        if forget.is_empty() {
            return Err(Error::invalid(
                "requests",
                format!("request {} holds only already-forgotten samples", k + 1),
            ));
        }
        let retain: Option<Vec<i64>> = with_retain.then(|| {
            let gone = union_sorted(&forgotten, &forget);
            (0..n).filter(|i| gone.binary_search(i).is_err()).collect()
        });
        let mut search_time = if k == 0 { shared_time } else { 0.0 };
        let adv: Option<AdvSet> = match (&attack, &shared) {
            (None, _) => None,
            (Some(_), Some(sh)) => Some(sh.subset(&forget)),
            (Some(s), None) => {
                let t = std::time::Instant::now();
                let a = search(model, &forget, s)?;
                search_time += t.elapsed().as_secs_f64();
                Some(a)
            }
        };
        let req = ForgetRequest {
            train,
            forget: &forget,
            retain: retain.as_deref(),
            adv: adv.as_ref(),
            num_classes,
        };
        let t = std::time::Instant::now();
        let mut log = match opts.calibrate {
            None => method.unlearn(model, &req, ctx)?,
            Some((cal, heldout)) => {
                let (mut log, record) = calibrate(
                    method.name(),
                    &method.settings(),
                    cal,
                    model,
                    &req,
                    heldout,
                    ctx,
                )?;
                log.calibration = serde_json::to_value(&record).ok();
                log
            }
        };
        log.timing
            .insert("method_total".into(), t.elapsed().as_secs_f64());
        if attack.is_some() {
            log.timing.insert("adversarial_search".into(), search_time);
            log.adv = adv.as_ref().map(|a| a.summary());
        }
        // method_total is the method alone; total adds the search it read.
        let total = log.timing["method_total"]
            + log.timing.get("adversarial_search").copied().unwrap_or(0.0);
        log.timing.insert("total".into(), total);
        logs.push(log);
        forgotten = union_sorted(&forgotten, &forget);
    }
    Ok(logs)
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
            calibration: logs.iter().find_map(|l| l.calibration.clone()),
        },
    );
    sc.history = logs.iter().flat_map(|l| l.epochs.clone()).collect();
    sc
}
