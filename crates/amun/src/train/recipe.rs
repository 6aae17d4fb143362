//! Training hyper-parameters: [`TrainParams`] is the unchecked builder,
//! [`Recipe`] the checked form every training run takes.
use crate::error::{Error, Result};
use crate::model::Arch;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Learning-rate schedule. Written as a string everywhere (flags, configs,
/// sidecars): `constant`, `step:STEP[:GAMMA]`, `multistep:M1,M2[:GAMMA]`,
/// `cosine`, `onecycle[:PCT_START]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// `lr × gamma^(epoch / step)` (PyTorch `StepLR`).
    Step { step: usize, gamma: f64 },
    /// `lr × gamma^(number of milestones passed)` (`MultiStepLR`).
    MultiStep { milestones: Vec<usize>, gamma: f64 },
    /// Cosine from the base rate to 0 over the run, per iteration.
    Cosine,
    /// PyTorch's `OneCycleLR` curve per iteration: cosine warm-up from
    /// lr/25 to lr over `pct_start` of the run, cosine down to lr/25e4
    /// (without its momentum cycling).
    OneCycle { pct_start: f64 },
}

impl Schedule {
    /// The rate at `epoch` (0-based) after `iter` of `iters` steps in it.
    pub fn lr(&self, base: f64, epoch: usize, iter: usize, iters: usize, epochs: usize) -> f64 {
        let t = (epoch as f64 + iter as f64 / iters.max(1) as f64) / epochs.max(1) as f64;
        match self {
            Schedule::Constant => base,
            Schedule::Step { step, gamma } => base * gamma.powi((epoch / step.max(&1)) as i32),
            Schedule::MultiStep { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32)
            }
            Schedule::Cosine => base * 0.5 * (1.0 + (PI * t).cos()),
            Schedule::OneCycle { pct_start } => {
                let (lo, hi, end) = (base / 25.0, base, base / 25.0 / 1e4);
                let cos = |a: f64, b: f64, f: f64| b + (a - b) * 0.5 * (1.0 + (PI * f).cos());
                if t < *pct_start {
                    cos(lo, hi, t / pct_start)
                } else {
                    cos(hi, end, (t - pct_start) / (1.0 - pct_start))
                }
            }
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid("schedule", m.to_string()));
        match self {
            Schedule::Step { step, gamma } if *step == 0 || *gamma <= 0.0 => {
                bad("step needs a step ≥ 1 and gamma > 0")
            }
            Schedule::MultiStep { gamma, .. } if *gamma <= 0.0 => bad("gamma must be > 0"),
            Schedule::OneCycle { pct_start } if !(*pct_start > 0.0 && *pct_start < 1.0) => {
                bad("one-cycle pct_start must lie in (0,1)")
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Step { step, gamma } => write!(f, "step:{step}:{gamma}"),
            Schedule::MultiStep { milestones, gamma } => {
                let m: Vec<String> = milestones.iter().map(|m| m.to_string()).collect();
                write!(f, "multistep:{}:{gamma}", m.join(","))
            }
            Schedule::Cosine => write!(f, "cosine"),
            Schedule::OneCycle { pct_start } => write!(f, "onecycle:{pct_start}"),
        }
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Schedule {
    type Error = Error;
    fn try_from(s: String) -> Result<Schedule> {
        s.parse()
    }
}

impl std::str::FromStr for Schedule {
    type Err = Error;
    /// `constant`, `step:STEP[:GAMMA]`, `multistep:M1,M2[:GAMMA]`, `cosine`,
    /// `onecycle[:PCT]`.
    fn from_str(s: &str) -> Result<Schedule> {
        let err = || {
            Error::invalid(
                "schedule",
                format!(
                    "'{s}': expected constant, step:STEP[:GAMMA], multistep:M1,M2[:GAMMA], cosine or onecycle[:PCT_START]"
                ),
            )
        };
        let mut it = s.split(':');
        let kind = it.next().unwrap_or("");
        let a = it.next();
        let b = it.next();
        if it.next().is_some() {
            return Err(err());
        }
        let num = |x: Option<&str>, d: f64| -> Result<f64> {
            x.map_or(Ok(d), |v| v.parse().map_err(|_| err()))
        };
        let sched = match kind {
            "constant" if a.is_none() => Schedule::Constant,
            "cosine" if a.is_none() => Schedule::Cosine,
            "step" => Schedule::Step {
                step: a.ok_or_else(err)?.parse().map_err(|_| err())?,
                gamma: num(b, 0.1)?,
            },
            "multistep" => Schedule::MultiStep {
                milestones: a
                    .ok_or_else(err)?
                    .split(',')
                    .map(|m| m.parse().map_err(|_| err()))
                    .collect::<Result<_>>()?,
                gamma: num(b, 0.1)?,
            },
            "onecycle" if b.is_none() => Schedule::OneCycle {
                pct_start: num(a, 0.25)?,
            },
            _ => return Err(err()),
        };
        sched.check()?;
        Ok(sched)
    }
}

/// A checked training recipe (build one with [`TrainParams`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub schedule: Schedule,
    /// Random crop (padding 4) and horizontal flip on the training data.
    pub augment: bool,
    /// bf16 autocast for forward passes.
    pub bf16: bool,
    /// Channels-last memory format (same values, faster convolutions: 1.35×
    /// for the small CNN on a 2-core CPU).
    pub channels_last: bool,
}

/// Unchecked training hyper-parameters with every default in [`TrainParams::new`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | epochs | 10 | passes over the training set |
/// | batch_size | 128 | samples per step |
/// | lr | 0.05 | base learning rate |
/// | momentum | 0.9 | SGD momentum |
/// | weight_decay | 5e-4 | L2 penalty added to the gradient |
/// | schedule | one-cycle (pct 0.25) | learning-rate schedule |
/// | augment | true | crop (padding 4) + flip |
///
/// ```
/// use amun::train::{Schedule, TrainParams};
/// let recipe = TrainParams::new().epochs(2).lr(0.1).schedule(Schedule::Cosine).check().unwrap();
/// assert_eq!(recipe.epochs, 2);
/// assert!(TrainParams::new().lr(-1.0).check().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct TrainParams(Recipe);

impl Default for TrainParams {
    fn default() -> Self {
        Self::new()
    }
}

impl TrainParams {
    /// The defaults (a fast recipe for the small CNN).
    pub fn new() -> TrainParams {
        TrainParams(Recipe {
            epochs: 10,
            batch_size: 128,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
            schedule: Schedule::OneCycle { pct_start: 0.25 },
            augment: true,
            bf16: false,
            channels_last: false,
        })
    }

    /// The spec's recipe for an architecture: for ResNet-18 and VGG-19 the
    /// paper's 201 epochs of SGD lr 0.1, StepLR ×0.1 every 40 epochs; for
    /// the small CNN a 10-epoch one-cycle run, channels-last.
    pub fn for_arch(arch: Arch) -> TrainParams {
        match arch {
            Arch::SmallCnn => TrainParams::new().channels_last(true),
            // A user's own model: amun knows no recipe for it; the plain
            // defaults stand until the user's flags or `[train]` replace them.
            Arch::Exported => TrainParams::new(),
            Arch::Resnet18 | Arch::Resnet18Div2 | Arch::Vgg19 => TrainParams::new()
                .epochs(201)
                .lr(0.1)
                .schedule(Schedule::Step {
                    step: 40,
                    gamma: 0.1,
                }),
        }
    }

    /// Starts from an existing recipe.
    pub fn from_recipe(r: Recipe) -> TrainParams {
        TrainParams(r)
    }

    pub fn epochs(mut self, v: usize) -> Self {
        self.0.epochs = v;
        self
    }
    pub fn batch_size(mut self, v: usize) -> Self {
        self.0.batch_size = v;
        self
    }
    pub fn lr(mut self, v: f64) -> Self {
        self.0.lr = v;
        self
    }
    pub fn momentum(mut self, v: f64) -> Self {
        self.0.momentum = v;
        self
    }
    pub fn weight_decay(mut self, v: f64) -> Self {
        self.0.weight_decay = v;
        self
    }
    pub fn nesterov(mut self, v: bool) -> Self {
        self.0.nesterov = v;
        self
    }
    pub fn schedule(mut self, v: Schedule) -> Self {
        self.0.schedule = v;
        self
    }
    pub fn augment(mut self, v: bool) -> Self {
        self.0.augment = v;
        self
    }
    pub fn bf16(mut self, v: bool) -> Self {
        self.0.bf16 = v;
        self
    }
    pub fn channels_last(mut self, v: bool) -> Self {
        self.0.channels_last = v;
        self
    }

    /// Validates every field once.
    pub fn check(self) -> Result<Recipe> {
        let r = self.0;
        if r.epochs == 0 {
            return Err(Error::invalid("epochs", "must be at least 1, got 0"));
        }
        if r.batch_size == 0 {
            return Err(Error::invalid("batch-size", "must be at least 1, got 0"));
        }
        if !(r.lr > 0.0 && r.lr.is_finite()) {
            return Err(Error::invalid(
                "lr",
                format!("must be a positive number, got {}", r.lr),
            ));
        }
        if !(0.0..1.0).contains(&r.momentum) {
            return Err(Error::invalid(
                "momentum",
                format!("must lie in [0,1), got {}", r.momentum),
            ));
        }
        if !(r.weight_decay >= 0.0 && r.weight_decay.is_finite()) {
            return Err(Error::invalid(
                "weight-decay",
                format!("must be ≥ 0, got {}", r.weight_decay),
            ));
        }
        if r.nesterov && r.momentum == 0.0 {
            return Err(Error::invalid("nesterov", "needs momentum > 0"));
        }
        r.schedule.check()?;
        Ok(r)
    }
}

/// How much of the retain set D_R a fine-tune visits per epoch (a
/// training recipe always visits all of its data).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "BudgetRepr", try_from = "BudgetRepr")]
pub enum RetainBudget {
    /// All of D_R in every epoch (the paper's): a fine-tune costs the same
    /// whatever the request's size.
    Full,
    /// A fresh sample of D_R in every epoch, this multiple of the request's
    /// size (|D_F|, plus |D_A| for AMUN), drawn from the run's seed.
    Multiple(f64),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BudgetRepr {
    Num(f64),
    Str(String),
}

impl From<RetainBudget> for BudgetRepr {
    fn from(b: RetainBudget) -> BudgetRepr {
        match b {
            RetainBudget::Full => BudgetRepr::Str("full".into()),
            RetainBudget::Multiple(k) => BudgetRepr::Num(k),
        }
    }
}

impl TryFrom<BudgetRepr> for RetainBudget {
    type Error = String;
    fn try_from(r: BudgetRepr) -> std::result::Result<RetainBudget, String> {
        match r {
            BudgetRepr::Str(s) if s == "full" => Ok(RetainBudget::Full),
            BudgetRepr::Num(k) if k > 0.0 && k.is_finite() => Ok(RetainBudget::Multiple(k)),
            BudgetRepr::Num(k) => Err(format!(
                "retain_budget: {k}: expected a multiple > 0 or \"full\""
            )),
            BudgetRepr::Str(s) => Err(format!(
                "retain_budget: '{s}': expected a multiple > 0 or \"full\""
            )),
        }
    }
}

impl std::str::FromStr for RetainBudget {
    type Err = String;
    /// `full`, or a multiple > 0 of the request (as on a command line; the
    /// config's number goes through the same check).
    fn from_str(s: &str) -> std::result::Result<RetainBudget, String> {
        match s.parse::<f64>() {
            Ok(k) => BudgetRepr::Num(k),
            Err(_) => BudgetRepr::Str(s.to_string()),
        }
        .try_into()
    }
}

impl RetainBudget {
    /// The retain samples an epoch visits for a request of `request`
    /// samples out of a retain set of `retain`, never fewer than `floor`
    /// (`None`: all of it).
    pub fn count(self, request: usize, retain: usize, floor: usize) -> Option<usize> {
        match self {
            RetainBudget::Full => None,
            RetainBudget::Multiple(k) => {
                let n = ((k * request as f64).ceil() as usize).max(floor).max(1);
                (n < retain).then_some(n)
            }
        }
    }
}

/// Training settings to replace; each one left unset keeps what it
/// replaces. One type for every place that adjusts a recipe or a
/// fine-tuning: the experiment's `[train]` section and `amun train`'s flags
/// (over the architecture's recipe), retrain's `recipe` table (over the
/// original's), `amun unlearn`'s flags, a tuning grid point and a
/// calibration rung (over a method's fine-tuning, see
/// `unlearn::Method::adjusted`).
///
/// ```
/// use amun::train::{Schedule, TrainOverrides, TrainParams};
/// let o = TrainOverrides { lr: Some(0.2), schedule: Some(Schedule::Cosine), ..Default::default() };
/// let r = o.apply(TrainParams::new()).check().unwrap();
/// assert_eq!((r.lr, r.epochs), (0.2, 10));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOverrides {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
    pub schedule: Option<Schedule>,
    pub augment: Option<bool>,
    pub bf16: Option<bool>,
    pub channels_last: Option<bool>,
    /// Fine-tunes only (a recipe refuses it): how much of D_R an epoch
    /// visits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_budget: Option<RetainBudget>,
}

impl TrainOverrides {
    /// A learning rate, and a schedule when given: what tuning and
    /// calibration vary.
    pub fn rate(lr: f64, schedule: Option<Schedule>) -> TrainOverrides {
        TrainOverrides {
            lr: Some(lr),
            schedule,
            ..Default::default()
        }
    }

    /// Whether nothing is replaced.
    pub fn is_empty(&self) -> bool {
        *self == TrainOverrides::default()
    }

    /// `p` with every set field replaced.
    pub fn apply(&self, mut p: TrainParams) -> TrainParams {
        let r = &mut p.0;
        let o = self.clone();
        r.epochs = o.epochs.unwrap_or(r.epochs);
        r.batch_size = o.batch_size.unwrap_or(r.batch_size);
        r.lr = o.lr.unwrap_or(r.lr);
        r.momentum = o.momentum.unwrap_or(r.momentum);
        r.weight_decay = o.weight_decay.unwrap_or(r.weight_decay);
        if let Some(s) = o.schedule {
            r.schedule = s;
        }
        r.augment = o.augment.unwrap_or(r.augment);
        r.bf16 = o.bf16.unwrap_or(r.bf16);
        r.channels_last = o.channels_last.unwrap_or(r.channels_last);
        p
    }

    /// `self`'s fields over `under`'s (each set field of `self` wins).
    pub fn over(&self, under: &TrainOverrides) -> TrainOverrides {
        let o = self.clone();
        let u = under.clone();
        TrainOverrides {
            epochs: o.epochs.or(u.epochs),
            batch_size: o.batch_size.or(u.batch_size),
            lr: o.lr.or(u.lr),
            momentum: o.momentum.or(u.momentum),
            weight_decay: o.weight_decay.or(u.weight_decay),
            schedule: o.schedule.or(u.schedule),
            augment: o.augment.or(u.augment),
            bf16: o.bf16.or(u.bf16),
            channels_last: o.channels_last.or(u.channels_last),
            retain_budget: o.retain_budget.or(u.retain_budget),
        }
    }

    /// The names of the fields that are set (for "set twice" errors).
    pub fn set_fields(&self) -> Vec<&'static str> {
        let o = self;
        [
            ("epochs", o.epochs.is_some()),
            ("batch_size", o.batch_size.is_some()),
            ("lr", o.lr.is_some()),
            ("momentum", o.momentum.is_some()),
            ("weight_decay", o.weight_decay.is_some()),
            ("schedule", o.schedule.is_some()),
            ("augment", o.augment.is_some()),
            ("bf16", o.bf16.is_some()),
            ("channels_last", o.channels_last.is_some()),
            ("retain_budget", o.retain_budget.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect()
    }
}
