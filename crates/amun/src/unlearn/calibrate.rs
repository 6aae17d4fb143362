//! Retrain-free calibration: how hard to unlearn, decided without a
//! retrained model. A user never has one; what they can have is data the
//! model never trained on (a held-out split). An exactly retrained model
//! treats the forget set like such unseen data: the same accuracy, the same
//! loss distribution (a membership test cannot tell them apart), and it
//! keeps the original's accuracy on unseen data. Calibration runs the method
//! over a ladder of learning rates, measures those quantities on the forget
//! set and the held-out set after every epoch, and keeps the best state.
//!
//! It is two-sided: a forget set that became *less* familiar than unseen
//! data (over-unlearning: forget accuracy below held-out accuracy, losses
//! above unseen data's) scores as badly as one still memorised.
use super::{ForgetRequest, Method, RunCtx, UnlearnLog};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::seed::derive;
use crate::train::{RetainBudget, Schedule, TrainOverrides};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// What "the forget set looks unseen" is measured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// SCRUB+R's rule: forget accuracy closest to held-out accuracy.
    Accuracy,
    /// A loss-based membership test (AUC of per-sample losses, forget vs
    /// held-out) closest to chance (50).
    Mia,
    /// The largest gap between the true-class confidence distributions of
    /// forget and held-out samples (Kolmogorov–Smirnov, in points).
    Confidence,
    /// The paper's Avg. Gap with retrain-free targets: forget accuracy →
    /// held-out accuracy, held-out and retain accuracy → the original's,
    /// membership AUC → 50; the mean of the four distances.
    ProxyGap,
}

impl std::str::FromStr for Rule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Rule> {
        match s {
            "accuracy" => Ok(Rule::Accuracy),
            "mia" => Ok(Rule::Mia),
            "confidence" => Ok(Rule::Confidence),
            "proxy-gap" => Ok(Rule::ProxyGap),
            _ => Err(Error::invalid(
                "calibrate.rule",
                format!("unknown rule '{s}'; expected accuracy, mia, confidence or proxy-gap"),
            )),
        }
    }
}

/// Where the ladder's walk begins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LadderStart {
    /// The rung nearest the method's own learning rate, walking up or down
    /// from there.
    #[default]
    Own,
    /// The smallest rung, walking up (the ladder before the walk existed).
    Lowest,
}

impl std::str::FromStr for LadderStart {
    type Err = Error;
    fn from_str(s: &str) -> Result<LadderStart> {
        match s {
            "own" => Ok(LadderStart::Own),
            "lowest" => Ok(LadderStart::Lowest),
            _ => Err(Error::invalid(
                "calibrate.start",
                format!("unknown start '{s}'; expected own or lowest"),
            )),
        }
    }
}

/// How the ladder is walked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Walk {
    /// One trajectory at a constant rate: it starts at the start rung and,
    /// after every epoch, climbs a rung (going on from the state it has)
    /// when the forget set's approach to the held-out accuracy would take
    /// more than `climb_after` more epochs at this rate; when a state
    /// over-unlearns (by accuracy or membership) it goes back to the best
    /// state so far and on from there one rung lower, never again above
    /// the rung that overshot. An epoch that costs utility is ridden out
    /// for `patience` epochs (the next ones usually win it back); a rate
    /// that still costs it then is left for the rung below, going on from
    /// the state it reached (its forgetting is kept, as a decaying
    /// schedule keeps it; the best admissible state stays recorded) and
    /// never climbed to again. It ends at the first state within
    /// the noise of the target, or after `max_epochs` epochs in all (twice
    /// the method's own by default), a probe after each.
    #[default]
    Continue,
    /// Every rung a fresh run of the method from the original model with
    /// its own schedule, walking up or down the ladder, then (for a
    /// decaying schedule that under-unlearned) a second ladder at a
    /// constant rate: up to rungs × 2 × the method's epochs.
    Restart,
}

impl std::str::FromStr for Walk {
    type Err = Error;
    fn from_str(s: &str) -> Result<Walk> {
        match s {
            "continue" => Ok(Walk::Continue),
            "restart" => Ok(Walk::Restart),
            _ => Err(Error::invalid(
                "calibrate.walk",
                format!("unknown walk '{s}'; expected continue or restart"),
            )),
        }
    }
}

/// Calibration settings, every default here. The rule and the guard were
/// chosen by measurement (docs/CALIBRATION.md: 8 method × data × D_R cases
/// on a CIFAR-10 slice and MNIST): the accuracy rule under a 10-point guard
/// picked states 0.33 Avg. Gap above the best of the grid on average, the
/// proxy-gap rule 1.45, and a 3-point guard cost every rule ~3 points
/// (unlearning as much as a retrain costs a small model real accuracy).
///
/// | field | default | meaning |
/// |---|---|---|
/// | lrs | 0.001, 0.003, 0.01, 0.03, 0.1 | the learning-rate ladder |
/// | start | own | walk from the rung nearest the method's own rate (up while it under-unlearns, down while it over-unlearns), or from the lowest |
/// | walk | continue | one trajectory that climbs and descends the ladder from the state it has (see [`Walk`]), or `restart` every rung from the original |
/// | max_epochs | twice the method's | `continue`: epochs in all |
/// | retain_budget | full | how much of D_R each of calibration's epochs visits: `full`, a multiple of the request, or `method` (the method's own); calibration's high rates need D_R's anchor (docs/CALIBRATION.md) |
/// | climb_after | 3 | `continue`: climb a rung when reaching the target at this rate would take more epochs than this |
/// | rule | accuracy | what is minimised (see [`Rule`]) |
/// | max_utility_drop | 10.0 | points of held-out (and retain) accuracy the result may lose against the original; never more than the original's held-out error (see [`allowed_drop`]) |
/// | patience | 2 | epochs a rung may go on getting worse once it over-unlearns (`continue`: epochs of lost utility ridden out) |
/// | retain_probe | 1000 | retain samples measured after each epoch |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrateSettings {
    pub lrs: Vec<f64>,
    pub start: LadderStart,
    pub walk: Walk,
    /// `None`: twice the method's own epochs.
    pub max_epochs: Option<usize>,
    pub climb_after: f64,
    /// `None`: the method's own.
    #[serde(with = "budget_or_method")]
    pub retain_budget: Option<RetainBudget>,
    pub rule: Rule,
    pub max_utility_drop: f64,
    pub patience: usize,
    pub retain_probe: usize,
}

impl Default for CalibrateSettings {
    fn default() -> Self {
        CalibrateSettings {
            lrs: vec![0.001, 0.003, 0.01, 0.03, 0.1],
            start: LadderStart::Own,
            walk: Walk::Continue,
            max_epochs: None,
            climb_after: 3.0,
            retain_budget: Some(RetainBudget::Full),
            rule: Rule::Accuracy,
            max_utility_drop: 10.0,
            patience: 2,
            retain_probe: 1000,
        }
    }
}

impl CalibrateSettings {
    /// Validates the values (names the field at fault).
    pub fn check(&self) -> Result<()> {
        if self.lrs.is_empty() || self.lrs.iter().any(|l| !(*l > 0.0 && l.is_finite())) {
            return Err(Error::invalid(
                "calibrate.lrs",
                "give at least one positive learning rate",
            ));
        }
        if self.lrs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(
                "calibrate.lrs",
                "list the ladder in increasing order",
            ));
        }
        if self.max_utility_drop.is_nan() || self.max_utility_drop < 0.0 {
            return Err(Error::invalid(
                "calibrate.max_utility_drop",
                format!("must be ≥ 0, got {}", self.max_utility_drop),
            ));
        }
        if self.retain_probe == 0 {
            return Err(Error::invalid(
                "calibrate.retain_probe",
                "must be at least 1",
            ));
        }
        if self.walk == Walk::Restart && self.max_epochs.is_some() {
            // It would be ignored: the restarting ladder's length is rungs
            // × the method's epochs.
            return Err(Error::invalid(
                "calibrate.max_epochs",
                "only the continuing walk (walk = continue) has an epoch budget; the restarting \
                 ladder runs each rung for the method's epochs",
            ));
        }
        if self.max_epochs == Some(0) {
            return Err(Error::invalid("calibrate.max_epochs", "must be at least 1"));
        }
        if !(self.climb_after > 0.0 && self.climb_after.is_finite()) {
            return Err(Error::invalid(
                "calibrate.climb_after",
                format!(
                    "must be a positive number of epochs, got {}",
                    self.climb_after
                ),
            ));
        }
        Ok(())
    }
}

/// Calibration settings to replace; each one left unset keeps its default.
/// One type for the experiment's `[calibrate]` keys and `amun unlearn`'s
/// `--calibrate-*` flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrateOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lrs: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<LadderStart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<Walk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub climb_after: Option<f64>,
    /// `Some(None)`: the method's own.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_budget_or_method"
    )]
    pub retain_budget: Option<Option<RetainBudget>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_utility_drop: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_probe: Option<usize>,
}

impl CalibrateOverrides {
    /// Whether nothing is replaced.
    pub fn is_empty(&self) -> bool {
        *self == CalibrateOverrides::default()
    }

    /// The defaults with every set field replaced, checked.
    pub fn settings(&self) -> Result<CalibrateSettings> {
        let d = CalibrateSettings::default();
        let o = self.clone();
        let s = CalibrateSettings {
            lrs: o.lrs.unwrap_or(d.lrs),
            start: o.start.unwrap_or(d.start),
            walk: o.walk.unwrap_or(d.walk),
            max_epochs: o.max_epochs.or(d.max_epochs),
            climb_after: o.climb_after.unwrap_or(d.climb_after),
            retain_budget: o.retain_budget.unwrap_or(d.retain_budget),
            rule: o.rule.unwrap_or(d.rule),
            max_utility_drop: o.max_utility_drop.unwrap_or(d.max_utility_drop),
            patience: o.patience.unwrap_or(d.patience),
            retain_probe: o.retain_probe.unwrap_or(d.retain_probe),
        };
        s.check()?;
        Ok(s)
    }
}

/// `retain_budget` as written: "method" (the method's own), "full" or a
/// multiple of the request.
mod budget_or_method {
    use super::RetainBudget;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Method(MethodWord),
        Budget(RetainBudget),
    }
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum MethodWord {
        Method,
    }

    pub fn serialize<S: Serializer>(v: &Option<RetainBudget>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => Repr::Budget(*b),
            None => Repr::Method(MethodWord::Method),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RetainBudget>, D::Error> {
        match Repr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "retain_budget: expected \"method\", \"full\" or a multiple > 0 of the request",
            )
        })? {
            Repr::Method(_) => Ok(None),
            Repr::Budget(b) => Ok(Some(b)),
        }
    }
}

mod opt_budget_or_method {
    use super::RetainBudget;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<Option<RetainBudget>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => super::budget_or_method::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<RetainBudget>>, D::Error> {
        super::budget_or_method::deserialize(d).map(Some)
    }
}

/// `--calibrate-retain-budget`'s value: `method` (the method's own),
/// `full`, or a multiple of the request.
///
/// ```
/// use amun::unlearn::{RetainBudget, parse_calibration_budget};
/// assert_eq!(parse_calibration_budget("method").unwrap(), None);
/// assert_eq!(parse_calibration_budget("4").unwrap(), Some(RetainBudget::Multiple(4.0)));
/// assert!(parse_calibration_budget("0").is_err());
/// ```
pub fn parse_calibration_budget(s: &str) -> Result<Option<RetainBudget>> {
    if s == "method" {
        return Ok(None);
    }
    s.parse::<RetainBudget>().map(Some).map_err(|_| {
        Error::invalid(
            format!("calibrate retain budget '{s}'"),
            "expected full, method or a multiple > 0 of the request",
        )
    })
}

/// What one model state looks like from the outside (percent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub forget_acc: f64,
    pub heldout_acc: f64,
    pub retain_acc: f64,
    /// AUC (%) of "forget losses are lower than held-out losses": 50 when
    /// they look alike, above when still member-like, below when unlearned
    /// past unseen data.
    pub loss_auc: f64,
    /// Kolmogorov–Smirnov distance (points) of true-class confidences.
    pub confidence_ks: f64,
}

/// One measured state of a calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// 0 for the original model.
    pub lr: f64,
    /// Epochs of fine-tuning (0: the original model).
    pub epoch: usize,
    /// The schedule, when calibration replaced the method's own (its
    /// relaxed pass); absent: the method's schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// The continuing walk's way here: each leg's constant rate and
    /// epochs, in order (empty for a state of one run from the original).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<Leg>,
    pub probe: Probe,
    /// The rule's distance (lower is better).
    pub score: f64,
    /// Whether held-out and retain accuracy stayed within the allowed drop.
    pub keeps_utility: bool,
    /// Whether the loss-based membership AUC stayed above 50 − the band: a
    /// forget set *less* member-like than unseen data is as telling as one
    /// still memorised, and no retrained model shows it.
    #[serde(default = "passes")]
    pub membership_ok: bool,
}

fn passes() -> bool {
    true
}

/// A stretch of the continuing walk at one constant rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    pub lr: f64,
    pub epochs: usize,
}

impl Candidate {
    /// How reports name this state: "original kept", "lr 0.1, epoch 3",
    /// "lr 0.1 constant, epoch 3" or "lr 0.01 ×1 → lr 0.03 ×2 epochs".
    pub fn label(&self) -> String {
        if self.epoch > 0 && !self.path.is_empty() {
            let legs: Vec<String> = self
                .path
                .iter()
                .map(|l| format!("lr {} ×{}", l.lr, l.epochs))
                .collect();
            return format!("{} epochs", legs.join(" → "));
        }
        match (self.epoch, &self.schedule) {
            (0, _) => "original kept".into(),
            (e, None) => format!("lr {}, epoch {e}", self.lr),
            (e, Some(s)) => format!("lr {} {s}, epoch {e}", self.lr),
        }
    }
}

/// What a calibration chose, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub settings: CalibrateSettings,
    pub chosen: Candidate,
    /// Every state measured, in order.
    pub table: Vec<Candidate>,
    pub epochs_run: usize,
    /// The worst case of this ladder, in epochs: rungs × the method's epochs.
    pub epochs_worst_case: usize,
    pub seconds: f64,
    /// Sampling noise of the forget-vs-held-out accuracy difference (points,
    /// one standard deviation): differences below it are not evidence.
    pub noise: f64,
    /// The utility guard applied (points; [`allowed_drop`]).
    #[serde(default)]
    pub allowed_drop: f64,
    /// How far below 50 a state's loss-AUC could be before it counted as
    /// over-unlearned (points; [`auc_band`]).
    #[serde(default)]
    pub auc_band: f64,
    pub heldout_size: usize,
    pub why: String,
}

/// Where a state stands against "looks like unseen data".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Forget accuracy within the noise of held-out accuracy, utility kept.
    Reached,
    /// Still remembers the forget set, utility kept.
    Under,
    /// Past unseen data, or utility lost.
    Over,
}

/// The rung of `ladder` nearest `lr` (in log scale): where a walk starts.
fn nearest(ladder: &[f64], lr: f64) -> usize {
    (0..ladder.len())
        .min_by(|&a, &b| {
            (ladder[a].ln() - lr.ln())
                .abs()
                .total_cmp(&(ladder[b].ln() - lr.ln()).abs())
        })
        .unwrap_or(0)
}

/// Per-sample loss and true-class confidence, plus predictions, of `split`.
fn measure(model: &Classifier, split: &Split) -> (Vec<f64>, Vec<f64>, usize) {
    let logits = crate::eval::logits(model, &split.images);
    let labels = split.labels.to_device(Device::Cpu);
    let loss = logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
        &labels,
        None,
        Reduction::None,
        -100,
        0.0,
    );
    let conf = logits
        .softmax(1, Kind::Double)
        .gather(1, &labels.view([-1, 1]), false)
        .flatten(0, -1);
    let correct = logits
        .argmax(1, false)
        .eq_tensor(&labels)
        .sum(Kind::Int64)
        .int64_value(&[]) as usize;
    (
        Vec::<f64>::try_from(loss.to_kind(Kind::Double)).unwrap_or_default(),
        Vec::<f64>::try_from(conf).unwrap_or_default(),
        correct,
    )
}

fn ks(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    100.0 * d
}

/// The three sets calibration looks at.
pub struct Probes<'a> {
    pub forget: Split,
    pub heldout: &'a Split,
    pub retain: Option<Split>,
}

impl<'a> Probes<'a> {
    /// The forget set, `heldout`, and up to `retain_probe` retain samples
    /// (seeded) of `req`.
    pub fn new(
        req: &ForgetRequest<'_>,
        heldout: &'a Split,
        retain_probe: usize,
        seed: u64,
    ) -> Probes<'a> {
        let n = req.train.len();
        let retain: Vec<i64> = match req.retain {
            Some(r) => r.to_vec(),
            None => {
                // Without D_R the method never sees it, but its accuracy is
                // still what the user keeps: measure it on the training rows.
                let mut f = req.forget.to_vec();
                f.sort_unstable();
                (0..n as i64)
                    .filter(|i| f.binary_search(i).is_err())
                    .collect()
            }
        };
        let retain = (!retain.is_empty()).then(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(derive(seed, "calibrate-retain", 0));
            let k = retain.len().min(retain_probe);
            let mut pick: Vec<i64> = sample(&mut rng, retain.len(), k)
                .into_iter()
                .map(|i| retain[i])
                .collect();
            pick.sort_unstable();
            req.train.select(&pick)
        });
        Probes {
            forget: req.train.select(req.forget),
            heldout,
            retain,
        }
    }

    /// Measures `model`.
    pub fn probe(&self, model: &Classifier) -> Probe {
        let (lf, cf, okf) = measure(model, &self.forget);
        let (lh, ch, okh) = measure(model, self.heldout);
        let retain_acc = match &self.retain {
            Some(r) => {
                let (_, _, ok) = measure(model, r);
                100.0 * ok as f64 / r.len().max(1) as f64
            }
            None => f64::NAN,
        };
        let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<f64>>();
        Probe {
            forget_acc: 100.0 * okf as f64 / lf.len().max(1) as f64,
            heldout_acc: 100.0 * okh as f64 / lh.len().max(1) as f64,
            retain_acc,
            loss_auc: 100.0 * crate::audit::auc(&neg(&lf), &neg(&lh)),
            confidence_ks: ks(&cf, &ch),
        }
    }
}

/// The rule's distance of `p` from "looks like unseen data", given the
/// original model's probe.
pub fn score(rule: Rule, p: &Probe, original: &Probe) -> f64 {
    let acc = (p.forget_acc - p.heldout_acc).abs();
    let mia = (p.loss_auc - 50.0).abs();
    match rule {
        Rule::Accuracy => acc,
        Rule::Mia => mia,
        Rule::Confidence => p.confidence_ks,
        Rule::ProxyGap => {
            let test = (p.heldout_acc - original.heldout_acc).abs();
            let retain = if p.retain_acc.is_finite() && original.retain_acc.is_finite() {
                (p.retain_acc - original.retain_acc).abs()
            } else {
                0.0
            };
            (acc + test + retain + mia) / 4.0
        }
    }
}

/// The utility guard in points: `max_drop`, but never more than the
/// original's held-out error (an unlearned model may at most double its
/// error on unseen data) nor less than the measurement's `noise`. Ten points
/// suit a CIFAR model at 60% test accuracy; on MNIST (97%) they let
/// calibrated RL fall to 86% test accuracy (Avg. Gap 7.87 against the
/// original's 2.26).
pub fn allowed_drop(max_drop: f64, original: &Probe, noise: f64) -> f64 {
    let error = 100.0 - original.heldout_acc;
    if error.is_finite() {
        max_drop.min(error.max(noise))
    } else {
        max_drop
    }
}

fn keeps_utility(p: &Probe, original: &Probe, max_drop: f64) -> bool {
    let ok = |now: f64, then: f64| !now.is_finite() || !then.is_finite() || now >= then - max_drop;
    ok(p.heldout_acc, original.heldout_acc) && ok(p.retain_acc, original.retain_acc)
}

impl Candidate {
    /// Whether it may be chosen: utility kept and not over-unlearned by the
    /// membership signal.
    fn admissible(&self) -> bool {
        self.keeps_utility && self.membership_ok
    }
}

/// Better: admissible first, then a lower score, then (ties) the gentler
/// state (earlier in the table).
fn better(a: &Candidate, b: &Candidate) -> bool {
    (a.admissible(), -a.score) > (b.admissible(), -b.score)
}

/// Two standard errors (in points) of the AUC of `nf` against `nh`
/// samples from one distribution (Mann–Whitney's variance under the null):
/// a loss-AUC below 50 by more than this is over-unlearning, not noise.
pub fn auc_band(nf: usize, nh: usize) -> f64 {
    let (nf, nh) = (nf.max(1) as f64, nh.max(1) as f64);
    200.0 * ((nf + nh + 1.0) / (12.0 * nf * nh)).sqrt()
}

/// The search's state across rungs: every state measured, the best one and
/// its weights.
struct Search<'p, 'a> {
    method: &'p dyn Method,
    cal: &'p CalibrateSettings,
    probes: &'p Probes<'a>,
    original: Probe,
    noise: f64,
    /// The utility guard in points ([`allowed_drop`]).
    max_drop: f64,
    /// How far below 50 the loss-AUC may be ([`auc_band`]).
    band: f64,
    best: RefCell<Candidate>,
    best_state: RefCell<Option<Vec<(String, Tensor)>>>,
    table: RefCell<Vec<Candidate>>,
    logs: UnlearnLog,
    epochs_run: usize,
}

/// `path` followed by `epochs` more at `lr`: one leg where the state it
/// went on from was already at that rate (back to the best state, then on
/// at the rung it had reached), so a path reads as the rates it lived.
fn extended(path: &[Leg], lr: f64, epochs: usize) -> Vec<Leg> {
    let mut legs = path.to_vec();
    match legs.last_mut() {
        Some(last) if last.lr == lr => last.epochs += epochs,
        _ => legs.push(Leg { lr, epochs }),
    }
    legs
}

/// Adds `c` (the state of `now`) to the table, and keeps it with its
/// weights when it is the best so far.
fn record(
    table: &RefCell<Vec<Candidate>>,
    best: &RefCell<Candidate>,
    best_state: &RefCell<Option<Vec<(String, Tensor)>>>,
    c: &Candidate,
    now: &Classifier,
) {
    table.borrow_mut().push(c.clone());
    if better(c, &best.borrow()) {
        *best.borrow_mut() = c.clone();
        *best_state.borrow_mut() = Some(
            now.named_tensors()
                .into_iter()
                .map(|(k, t)| (k, t.detach().copy()))
                .collect(),
        );
    }
}

impl Search<'_, '_> {
    /// Runs the method from `base` at `lr` (its schedule replaced by
    /// `schedule` when given), measuring every epoch; stops the rung once it
    /// is past unseen data (or lost utility) and has got worse for
    /// `patience` epochs. Returns the rung's best state, if it ran an epoch.
    fn rung(
        &mut self,
        lr: f64,
        schedule: Option<&Schedule>,
        base: &Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<Option<Candidate>> {
        let name = self.method.name();
        let method = self.method.adjusted(&TrainOverrides {
            retain_budget: self.cal.retain_budget,
            ..TrainOverrides::rate(lr, schedule.cloned())
        })?;
        let mut m = base.try_clone()?;
        let rung_best: RefCell<Option<Candidate>> = RefCell::new(None);
        let worse_for = RefCell::new(0usize);
        let ran = RefCell::new(0usize);
        let (cal, original, noise, max_drop, band) = (
            self.cal,
            self.original,
            self.noise,
            self.max_drop,
            self.band,
        );
        let (best, best_state, table) = (&self.best, &self.best_state, &self.table);
        let probes = self.probes;
        let label = match schedule {
            Some(sch) => format!("lr {lr:e} ({sch})"),
            None => format!("lr {lr:e}"),
        };
        let on_epoch = |epoch: usize, now: &Classifier| -> Result<bool> {
            *ran.borrow_mut() += 1;
            let probe = probes.probe(now);
            let c = Candidate {
                lr,
                epoch,
                schedule: schedule.cloned(),
                path: Vec::new(),
                probe,
                score: score(cal.rule, &probe, &original),
                keeps_utility: keeps_utility(&probe, &original, max_drop),
                membership_ok: probe.loss_auc >= 50.0 - band,
            };
            ctx.progress.note(&format!(
                "calibrate {name}: {label} epoch {epoch}: forget {:.1}% held-out {:.1}% \
                 retain {:.1}% loss-AUC {:.1} → score {:.2}{}",
                probe.forget_acc,
                probe.heldout_acc,
                probe.retain_acc,
                probe.loss_auc,
                c.score,
                match (c.keeps_utility, c.membership_ok) {
                    (true, true) => "",
                    (false, _) => " (utility lost)",
                    (true, false) => " (over-unlearned: loss-AUC below 50 − band)",
                }
            ));
            record(table, best, best_state, &c, now);
            let improved = rung_best.borrow().as_ref().is_none_or(|b| better(&c, b));
            if improved {
                *rung_best.borrow_mut() = Some(c.clone());
                *worse_for.borrow_mut() = 0;
            } else {
                *worse_for.borrow_mut() += 1;
            }
            // Reached the target: no later epoch is evidence of better.
            if c.admissible() && (probe.forget_acc - probe.heldout_acc).abs() <= noise {
                return Ok(false);
            }
            // Past unseen data (or utility gone) and no longer improving:
            // further epochs at this rate only go further.
            let over = probe.forget_acc < probe.heldout_acc - noise || !c.admissible();
            Ok(!(over && *worse_for.borrow() >= cal.patience))
        };
        let rctx = RunCtx {
            seed: ctx.seed,
            progress: ctx.progress,
            original_recipe: ctx.original_recipe,
            observe: ctx.observe,
            on_epoch: Some(&on_epoch),
        };
        let log = method.unlearn(&mut m, req, &rctx)?;
        self.epochs_run += *ran.borrow();
        self.logs.epochs.extend(log.epochs);
        for (k, v) in log.timing {
            *self.logs.timing.entry(k).or_insert(0.0) += v;
        }
        Ok(rung_best.into_inner())
    }

    /// Where a rung's best state `rb` stands against the target.
    fn verdict(&self, rb: &Candidate) -> Verdict {
        let diff = rb.probe.forget_acc - rb.probe.heldout_acc;
        if rb.admissible() && diff.abs() <= self.noise {
            Verdict::Reached
        } else if rb.admissible() && diff > self.noise {
            Verdict::Under
        } else {
            Verdict::Over
        }
    }

    /// Walks `ladder` from rung `start`: up while the rungs under-unlearn,
    /// down while they over-unlearn (or lose utility); stops at a rung that
    /// reaches the target, where the direction turns (the target lies
    /// between two rungs), or at the ladder's end. Returns why it stopped.
    fn walk(
        &mut self,
        ladder: &[f64],
        start: usize,
        schedule: Option<&Schedule>,
        base: &Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<String> {
        let mut i = start;
        let mut dir = 0i32;
        loop {
            let lr = ladder[i];
            let v = match self.rung(lr, schedule, base, req, ctx)? {
                Some(rb) => self.verdict(&rb),
                None => Verdict::Over,
            };
            let (next, why) = match v {
                Verdict::Reached => {
                    return Ok(format!(
                        "lr {lr:e} reached the held-out accuracy within its noise ({:.1} \
                         points)",
                        self.noise
                    ));
                }
                Verdict::Under if dir < 0 => (
                    None,
                    format!(
                        "lr {lr:e} under-unlearns and lr {:e} over-unlearned: the target lies between them",
                        ladder[i + 1]
                    ),
                ),
                Verdict::Over if dir > 0 => (
                    None,
                    format!(
                        "lr {lr:e} over-unlearns and lr {:e} under-unlearned: the target lies between them",
                        ladder[i - 1]
                    ),
                ),
                Verdict::Under if i + 1 == ladder.len() => (
                    None,
                    format!("the largest rate, lr {lr:e}, still under-unlearns"),
                ),
                Verdict::Over if i == 0 => {
                    (None, format!("the smallest rate, lr {lr:e}, over-unlearns"))
                }
                Verdict::Under => {
                    dir = 1;
                    (Some(i + 1), String::new())
                }
                Verdict::Over => {
                    dir = -1;
                    (Some(i - 1), String::new())
                }
            };
            match next {
                Some(n) => i = n,
                None => return Ok(why),
            }
        }
    }

    /// Whether the best state so far is a fine-tuned one that still
    /// remembers the forget set better than unseen data.
    fn under_unlearned(&self) -> bool {
        let b = self.best.borrow();
        b.epoch > 0 && b.admissible() && b.probe.forget_acc > b.probe.heldout_acc + self.noise
    }

    /// One leg of the continuing walk: the method at the constant rate
    /// `lr` on `model` (in place, from whatever state it holds), measuring
    /// every epoch, for at most `epochs`. `path` leads to the state it
    /// starts from, `done` epochs in; `from_diff` is that state's forget
    /// minus held-out accuracy. Returns how the leg ended and its epochs.
    #[allow(clippy::too_many_arguments)]
    fn leg(
        &mut self,
        lr: f64,
        model: &mut Classifier,
        path: &[Leg],
        done: usize,
        epochs: usize,
        from_diff: f64,
        can_climb: bool,
        seed: u64,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<(LegEnd, usize)> {
        let name = self.method.name();
        let method = self.method.adjusted(&TrainOverrides {
            epochs: Some(epochs),
            retain_budget: self.cal.retain_budget,
            ..TrainOverrides::rate(lr, Some(Schedule::Constant))
        })?;
        let end = RefCell::new(LegEnd::Budget);
        let ran = RefCell::new(0usize);
        let shock = RefCell::new(0usize);
        let (cal, original, noise, max_drop, band) = (
            self.cal,
            self.original,
            self.noise,
            self.max_drop,
            self.band,
        );
        let (best, best_state, table) = (&self.best, &self.best_state, &self.table);
        let probes = self.probes;
        let on_epoch = |epoch: usize, now: &Classifier| -> Result<bool> {
            *ran.borrow_mut() += 1;
            let probe = probes.probe(now);
            let legs = extended(path, lr, epoch);
            let c = Candidate {
                lr,
                epoch: done + epoch,
                schedule: Some(Schedule::Constant),
                path: legs,
                probe,
                score: score(cal.rule, &probe, &original),
                keeps_utility: keeps_utility(&probe, &original, max_drop),
                membership_ok: probe.loss_auc >= 50.0 - band,
            };
            ctx.progress.note(&format!(
                "calibrate {name}: lr {lr:e}, epoch {} ({}): forget {:.1}% held-out {:.1}% \
                 retain {:.1}% loss-AUC {:.1} → score {:.2}{}",
                c.epoch,
                c.label(),
                probe.forget_acc,
                probe.heldout_acc,
                probe.retain_acc,
                probe.loss_auc,
                c.score,
                match (c.keeps_utility, c.membership_ok) {
                    (true, true) => "",
                    (false, _) => " (utility lost)",
                    (true, false) => " (over-unlearned: loss-AUC below 50 − band)",
                }
            ));
            record(table, best, best_state, &c, now);
            let diff = probe.forget_acc - probe.heldout_acc;
            if c.admissible() && diff.abs() <= noise {
                *end.borrow_mut() = LegEnd::Reached;
                return Ok(false);
            }
            if c.admissible() && diff < -noise {
                *end.borrow_mut() = LegEnd::Over;
                return Ok(false);
            }
            if !c.admissible() {
                // The first epochs at a higher rate often cost utility that
                // the next ones win back: ride it out for `patience` epochs.
                *shock.borrow_mut() += 1;
                if *shock.borrow() > cal.patience {
                    *end.borrow_mut() = if c.membership_ok && diff >= -noise {
                        LegEnd::Lost
                    } else {
                        LegEnd::Over
                    };
                    return Ok(false);
                }
                return Ok(true);
            }
            *shock.borrow_mut() = 0;
            // Still under: how many more epochs would this rate need, at
            // the leg's pace so far?
            let progress = (from_diff - diff) / epoch as f64;
            if can_climb && (progress <= 0.0 || diff / progress > cal.climb_after) {
                *end.borrow_mut() = LegEnd::Climb;
                return Ok(false);
            }
            // Where it cannot climb, a slow leg runs on: one epoch's
            // change is within the probes' noise, so no stall is called.
            Ok(true)
        };
        let rctx = RunCtx {
            seed,
            progress: ctx.progress,
            original_recipe: ctx.original_recipe,
            observe: ctx.observe,
            on_epoch: Some(&on_epoch),
        };
        let log = method.unlearn(model, req, &rctx)?;
        let ran = ran.into_inner();
        self.epochs_run += ran;
        self.logs.epochs.extend(log.epochs);
        for (k, v) in log.timing {
            *self.logs.timing.entry(k).or_insert(0.0) += v;
        }
        Ok((end.into_inner(), ran))
    }

    /// The continuing walk ([`Walk::Continue`]) from rung `start` over at
    /// most `budget` epochs; `model` holds the original and ends in the
    /// walk's last state. Returns why it stopped.
    #[allow(clippy::too_many_arguments)]
    fn climb(
        &mut self,
        ladder: &[f64],
        start: usize,
        budget: usize,
        model: &mut Classifier,
        base: &Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<String> {
        let mut i = start;
        // Rungs from here up overshot once: never again.
        let mut ceiling = ladder.len();
        let mut path: Vec<Leg> = Vec::new();
        let mut done = 0usize;
        let mut diff = self.original.forget_acc - self.original.heldout_acc;
        for k in 0.. {
            if self.epochs_run >= budget {
                return Ok(format!("the {budget} epochs of the budget ran out"));
            }
            let lr = ladder[i];
            let can_climb = i + 1 < ceiling;
            let (end, ran) = self.leg(
                lr,
                model,
                &path,
                done,
                budget - self.epochs_run,
                diff,
                can_climb,
                derive(ctx.seed, "calibrate-leg", k),
                req,
                ctx,
            )?;
            if ran > 0 {
                path = extended(&path, lr, ran);
                done += ran;
                let last = self.table.borrow().last().map(|c| c.probe);
                if let Some(p) = last {
                    diff = p.forget_acc - p.heldout_acc;
                }
            }
            match end {
                LegEnd::Reached => {
                    return Ok(format!(
                        "lr {lr:e} reached the held-out accuracy within its noise ({:.1} points) \
                         after {done} epochs",
                        self.noise
                    ));
                }
                LegEnd::Budget => {
                    return Ok(format!(
                        "the {budget} epochs of the budget ran out at lr {lr:e}"
                    ));
                }
                LegEnd::Climb => i += 1,
                LegEnd::Lost => {
                    if i == 0 {
                        return Ok(format!(
                            "the smallest rate, lr {lr:e}, costs utility beyond the guard"
                        ));
                    }
                    // Too high a rate, but the forgetting it did is not
                    // past unseen data: go on from this state more gently
                    // (as a decaying schedule would), which wins the
                    // utility back; the best admissible state stays kept.
                    ceiling = i;
                    i -= 1;
                }
                LegEnd::Over => {
                    if i == 0 {
                        return Ok(format!("the smallest rate, lr {lr:e}, over-unlearns"));
                    }
                    // Back to the best state so far, and on from there
                    // more gently.
                    let b = self.best.borrow().clone();
                    match self.best_state.borrow().as_ref() {
                        Some(state) if b.epoch > 0 => {
                            let map = state.iter().map(|(k, t)| (k.clone(), t.copy())).collect();
                            model.load_named(map, std::path::Path::new("calibration"))?;
                        }
                        _ => model.copy_from(base)?,
                    }
                    path = b.path.clone();
                    done = b.epoch;
                    diff = b.probe.forget_acc - b.probe.heldout_acc;
                    ceiling = i;
                    i -= 1;
                }
            }
        }
        unreachable!("the walk returns from its loop")
    }
}

/// How a leg of the continuing walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegEnd {
    /// Forget accuracy within the noise of held-out accuracy, admissible.
    Reached,
    /// Past unseen data (by accuracy or by membership).
    Over,
    /// Utility lost for longer than `patience` epochs, not past unseen
    /// data.
    Lost,
    /// Under, and too slowly at this rate.
    Climb,
    /// The epochs it was given ran out.
    Budget,
}

/// Runs `method` (whose learning rate the ladder replaces) on `model` for `req`, choosing the learning rate and the
/// stopping epoch by `cal.rule` against `heldout`, a split the model never
/// trained on. `model` ends in the best state measured (possibly the
/// original, if no state improved on it).
///
/// How the ladder is walked is `cal.walk` ([`Walk`]). The continuing walk
/// (the default) is one trajectory at constant rates, at most
/// `cal.max_epochs` epochs in all. The restarting ladder runs the method
/// from the original once per rung; when it ends with its best state still
/// remembering the forget set (forget accuracy above held-out accuracy by
/// more than the noise, utility kept) and the method's schedule decays the
/// rate within its run (AMUN's ×0.1 every epoch leaves one epoch of real
/// work), it runs again at a constant rate from the rung below that state's
/// rate upwards. Its cost: at most `cal.lrs.len()` × the method's epochs,
/// twice that with the constant-rate pass; a rung stops after
/// `cal.patience` epochs of getting worse once it over-unlearns, and a pass
/// stops once a rung's best is within the sampling noise of the target or a
/// rung over-unlearns from its first epoch.
pub fn calibrate(
    method: &dyn Method,
    cal: &CalibrateSettings,
    model: &mut Classifier,
    req: &ForgetRequest<'_>,
    heldout: &Split,
    ctx: &RunCtx<'_>,
) -> Result<(UnlearnLog, Calibration)> {
    cal.check()?;
    let ft = method.finetune().ok_or_else(|| {
        Error::invalid(
            method.name(),
            "has no fine-tuning, so there is no learning rate to calibrate",
        )
    })?;
    let (schedule, method_epochs, ft_lr) = (ft.schedule.clone(), ft.epochs, ft.lr);
    if heldout.is_empty() {
        return Err(Error::invalid("holdout", "the held-out set is empty"));
    }
    let started = Instant::now();
    let probes = Probes::new(req, heldout, cal.retain_probe, ctx.seed);
    let original = probes.probe(model);
    let p = original.heldout_acc / 100.0;
    let nf = probes.forget.len().max(1) as f64;
    let nh = heldout.len().max(1) as f64;
    let noise = 100.0 * (p * (1.0 - p) * (1.0 / nf + 1.0 / nh)).sqrt();
    let band = auc_band(probes.forget.len(), heldout.len());
    let start = Candidate {
        lr: 0.0,
        epoch: 0,
        schedule: None,
        path: Vec::new(),
        probe: original,
        score: score(cal.rule, &original, &original),
        keeps_utility: true,
        membership_ok: original.loss_auc >= 50.0 - band,
    };
    let base = model.try_clone()?;
    let mut search = Search {
        method,
        cal,
        probes: &probes,
        original,
        noise,
        max_drop: allowed_drop(cal.max_utility_drop, &original, noise),
        band,
        best: RefCell::new(start.clone()),
        best_state: RefCell::new(None),
        table: RefCell::new(vec![start]),
        logs: UnlearnLog::default(),
        epochs_run: 0,
    };
    // From the method's own rate, both ways (or from the lowest, up).
    let start_rung = match cal.start {
        LadderStart::Own => nearest(&cal.lrs, ft_lr),
        LadderStart::Lowest => 0,
    };
    let from = match cal.start {
        LadderStart::Own => format!(
            "from lr {:e} (nearest the method's own)",
            cal.lrs[start_rung]
        ),
        LadderStart::Lowest => "from the lowest rung".to_string(),
    };
    let (mut why, worst_case) = match cal.walk {
        Walk::Continue => {
            let budget = cal.max_epochs.unwrap_or(2 * method_epochs);
            let w = search.climb(&cal.lrs, start_rung, budget, model, &base, req, ctx)?;
            (format!("{from}, one continuing walk: {w}"), budget)
        }
        Walk::Restart => {
            let why = search.walk(&cal.lrs, start_rung, None, &base, req, ctx)?;
            let mut why = format!("{from}: {why}");
            let decays = schedule.lr(1.0, method_epochs.saturating_sub(1), 0, 1, method_epochs)
                < 1.0 - 1e-12;
            let mut worst_case = cal.lrs.len() * method_epochs;
            if decays && search.under_unlearned() {
                // From the rung below the best one: a constant rate does several
                // times the work of the same rate decayed, so the best state's own
                // rate may now overshoot.
                let at = search.best.borrow().lr;
                let k = cal.lrs.iter().position(|&l| l >= at).unwrap_or(0);
                let rungs: Vec<f64> = cal.lrs[k.saturating_sub(1)..].to_vec();
                let from = rungs[0];
                let sch = Schedule::Constant;
                worst_case += rungs.len() * method_epochs;
                why.push_str(&format!(
                    "; the best state still remembered the forget set, so the ladder ran again from lr \
                     {from:e} with a constant rate (the schedule's decay cut the work short)"
                ));
                let w = search.walk(&rungs, 0, Some(&sch), &base, req, ctx)?;
                why.push_str(&format!(": {w}"));
            }
            (why, worst_case)
        }
    };
    let allowed = search.max_drop;
    let Search {
        best,
        best_state,
        table,
        mut logs,
        epochs_run,
        ..
    } = search;
    let chosen = best.into_inner();
    let table = table.into_inner();
    let refused = table.iter().filter(|c| !c.membership_ok).count();
    if refused > 0 {
        why.push_str(&format!(
            "; {refused} state(s) over-unlearned by membership (loss-AUC below 50 − {band:.1}) \
             were not chosen"
        ));
    }
    if !chosen.admissible() {
        why.push_str(
            "; no state kept both utility and membership within their bands: the closest is \
             kept, and is not calibrated",
        );
    }
    match best_state.into_inner() {
        Some(state) if chosen.epoch > 0 => {
            let map = state.into_iter().collect();
            model.load_named(map, std::path::Path::new("calibration"))?;
        }
        _ => {
            // The continuing walk ran on `model` itself.
            model.copy_from(&base)?;
            why.push_str("; no fine-tuned state beat the original model, which is kept");
        }
    }
    let cal_out = Calibration {
        settings: cal.clone(),
        chosen,
        table,
        epochs_run,
        epochs_worst_case: worst_case,
        seconds: started.elapsed().as_secs_f64(),
        noise,
        allowed_drop: allowed,
        auc_band: band,
        heldout_size: heldout.len(),
        why,
    };
    logs.timing.insert("calibration".into(), cal_out.seconds);
    Ok((logs, cal_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(f: f64, h: f64, r: f64, auc: f64) -> Probe {
        Probe {
            forget_acc: f,
            heldout_acc: h,
            retain_acc: r,
            loss_auc: auc,
            confidence_ks: 0.0,
        }
    }

    #[test]
    fn scores_are_two_sided() {
        let orig = probe(99.0, 70.0, 99.0, 80.0);
        let under = probe(95.0, 70.0, 99.0, 75.0);
        let over = probe(45.0, 70.0, 99.0, 25.0);
        let right = probe(71.0, 70.0, 98.0, 51.0);
        for rule in [Rule::Accuracy, Rule::Mia, Rule::ProxyGap] {
            let s = |p: &Probe| score(rule, p, &orig);
            assert!(s(&right) < s(&under), "{rule:?}");
            assert!(s(&right) < s(&over), "{rule:?}");
        }
        assert!(!keeps_utility(&probe(70.0, 60.0, 99.0, 50.0), &orig, 3.0));
        assert!(keeps_utility(&probe(70.0, 68.0, 97.0, 50.0), &orig, 3.0));
        // A 97%-accurate model may lose at most its 3 points of error, a
        // 60% one the full 10; never less than the noise.
        let good = probe(100.0, 97.0, 100.0, 60.0);
        assert_eq!(allowed_drop(10.0, &good, 1.5), 3.0);
        assert_eq!(
            allowed_drop(10.0, &probe(90.0, 60.0, 90.0, 70.0), 4.0),
            10.0
        );
        assert_eq!(
            allowed_drop(10.0, &probe(100.0, 99.8, 100.0, 50.0), 1.5),
            1.5
        );
    }

    #[test]
    fn the_membership_band_follows_the_sample_sizes() {
        // 600 forget vs 1000 held-out: 2 SE ≈ 3 points; 200 vs 500 ≈ 4.8.
        assert!(
            (auc_band(600, 1000) - 2.98).abs() < 0.05,
            "{}",
            auc_band(600, 1000)
        );
        assert!(
            (auc_band(200, 500) - 4.83).abs() < 0.05,
            "{}",
            auc_band(200, 500)
        );
        assert!(auc_band(10_000, 10_000) < 1.0);
        let c = |keeps, ok| Candidate {
            lr: 0.1,
            epoch: 1,
            schedule: None,
            path: Vec::new(),
            probe: probe(50.0, 50.0, 90.0, 50.0),
            score: 0.0,
            keeps_utility: keeps,
            membership_ok: ok,
        };
        // An over-unlearned state never beats an admissible one, whatever
        // its score.
        let mut worse = c(true, true);
        worse.score = 9.0;
        assert!(better(&worse, &c(true, false)));
        assert!(!better(&c(true, false), &worse));
    }

    #[test]
    fn ks_distance() {
        assert_eq!(ks(&[0.1, 0.2, 0.3], &[0.1, 0.2, 0.3]), 0.0);
        assert_eq!(ks(&[0.1, 0.2], &[0.8, 0.9]), 100.0);
    }

    /// Settings that would do nothing, or nothing sensible, are named.
    #[test]
    fn walk_settings_that_do_nothing_are_refused() {
        let err = |c: CalibrateSettings| c.check().unwrap_err().to_string();
        let base = CalibrateSettings::default();
        assert!(base.check().is_ok());
        let e = err(CalibrateSettings {
            max_epochs: Some(0),
            ..base.clone()
        });
        assert!(e.contains("max_epochs"), "{e}");
        let e = err(CalibrateSettings {
            walk: Walk::Restart,
            max_epochs: Some(10),
            ..base.clone()
        });
        assert!(
            e.contains("max_epochs") && e.contains("continuing walk"),
            "{e}"
        );
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let e = err(CalibrateSettings {
                climb_after: bad,
                ..base.clone()
            });
            assert!(e.contains("climb_after"), "{e}");
        }
        for bad in ["0", "-2", "inf", "NaN", "all", ""] {
            let e = parse_calibration_budget(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("method"),
                "{e}"
            );
        }
        assert_eq!(
            parse_calibration_budget("full").unwrap(),
            Some(RetainBudget::Full)
        );
        assert!("walk".parse::<Walk>().is_err());
    }
}
