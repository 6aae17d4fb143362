//! The plan of an experiment: every step the protocol needs — reference
//! models, original models, forget sets, exact retrains, adversarial sets,
//! tuning points, unlearning runs, audits, the report — with the artifact
//! each one writes and, named in its kind, the steps it reads. It is pure
//! data, computed from the config alone; executors (local, several workers,
//! Slurm) decide where and when each step runs, and `steps::run_step` what
//! it does.
use super::config::Config;
pub use super::placement::Resource;
use super::store;
use crate::attack::AdvSettings;
use crate::error::{Error, Result};
use crate::unlearn::MethodSpec;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Which settings an unlearning run uses.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The config's settings (the methods' published defaults unless set).
    Default,
    /// The tuning stage's choice (against an exact retrain).
    Tuned,
    /// Retrain-free calibration against held-out test images.
    Calibrated,
}

impl Variant {
    /// The method's label in reports: `amun`, `amun (tuned)`, …
    pub fn label(self, method: &str) -> String {
        match self {
            Variant::Default => method.to_string(),
            Variant::Tuned => format!("{method} (tuned)"),
            Variant::Calibrated => format!("{method} (calibrated)"),
        }
    }
}

/// A step's id: one constructor per kind, so an id is spelled in one place.
/// Ids name artifacts and log files, Slurm array tasks and `--step`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StepId(String);

fn tag(with_retain: bool) -> &'static str {
    if with_retain { "R" } else { "noR" }
}

fn safe(method: &str) -> String {
    method.replace('+', "plus")
}

impl StepId {
    pub fn reference(index: usize) -> StepId {
        StepId(format!("ref-{index:03}"))
    }
    pub fn references() -> StepId {
        StepId("references".into())
    }
    pub fn original(seed: u64) -> StepId {
        StepId(format!("original-s{seed}"))
    }
    pub fn forget(seed: u64, fraction: f64) -> StepId {
        StepId(format!("forget-s{seed}-f{fraction}"))
    }
    pub fn tune_forget(seed: u64, fraction: f64) -> StepId {
        StepId(format!("tune-forget-t{seed}-f{fraction}"))
    }
    pub fn retrain(seed: u64, fraction: f64, tune: bool) -> StepId {
        StepId(if tune {
            format!("tune-retrain-t{seed}-f{fraction}")
        } else {
            format!("retrain-s{seed}-f{fraction}")
        })
    }
    /// The noise floor's second exact retrain of an evaluation forget set.
    pub fn retrain_again(seed: u64, fraction: f64) -> StepId {
        StepId(format!("retrain2-s{seed}-f{fraction}"))
    }
    pub fn adversarial(seed: u64, fraction: f64, tune: bool, s: &AdvSettings) -> StepId {
        let h = short_hash(s);
        StepId(if tune {
            format!("tune-adv-t{seed}-f{fraction}-{h}")
        } else {
            format!("adv-s{seed}-f{fraction}-{h}")
        })
    }
    /// An evaluation run; default runs are named by the hash of the
    /// settings table as the config wrote it.
    pub fn unlearn(
        method: &MethodSpec,
        seed: u64,
        fraction: f64,
        with_retain: bool,
        variant: Variant,
    ) -> StepId {
        let suffix = match variant {
            Variant::Default => short_hash(method.table()),
            Variant::Tuned => "tuned".into(),
            Variant::Calibrated => "calibrated".into(),
        };
        StepId(format!(
            "unlearn-{}-s{seed}-f{fraction}-{}-{suffix}",
            safe(method.name()),
            tag(with_retain)
        ))
    }
    pub fn tune_point(
        method: &str,
        seed: u64,
        fraction: f64,
        with_retain: bool,
        lr: f64,
        step: usize,
    ) -> StepId {
        StepId(format!(
            "tune-{}-{}-t{seed}-f{fraction}-lr{lr}-st{step}",
            safe(method),
            tag(with_retain)
        ))
    }
    pub fn choice(method: &str, fraction: f64, with_retain: bool) -> StepId {
        StepId(format!(
            "tuned-{}-{}-f{fraction}",
            safe(method),
            tag(with_retain)
        ))
    }
    /// The audit of `model`; an original is audited once per fraction
    /// (`-f{fraction}` after its id).
    pub fn audit(model: &StepId, per_fraction: Option<f64>) -> StepId {
        StepId(match per_fraction {
            Some(f) => format!("audit-{}-f{f}", model.0),
            None => format!("audit-{}", model.0),
        })
    }
    pub fn report() -> StepId {
        StepId("report".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a step computes, and — by name — the steps it reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepKind {
    /// RMIA reference model `index` (trained on its half of the pool).
    Reference { index: usize },
    /// The reference models checked and indexed.
    References { models: Vec<StepId> },
    /// The original model of an evaluation seed.
    Original { seed: u64 },
    /// The evaluation forget set of a seed and fraction: drawn at random,
    /// or read from `file` (the config's `forget.files`).
    Forget {
        seed: u64,
        fraction: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// A tuning forget set: its own seed, disjoint from every evaluation
    /// forget set of the fraction (`avoid`).
    TuneForget {
        seed: u64,
        fraction: f64,
        avoid: Vec<StepId>,
    },
    /// The exact retrain without a forget set (evaluation or tuning);
    /// `replica` 1 is the noise floor's second retrain, from another
    /// initialisation (absent from the step's identity when 0, so run
    /// folders made before it stay fresh).
    Retrain {
        seed: u64,
        fraction: f64,
        tune: bool,
        forget: StepId,
        #[serde(skip_serializing_if = "is_zero")]
        replica: u32,
    },
    /// The adversarial set of a forget set on the original model.
    Adversarial {
        seed: u64,
        fraction: f64,
        tune: bool,
        settings: AdvSettings,
        original: StepId,
        forget: StepId,
    },
    /// One unlearning run on an evaluation forget set: `method` as
    /// configured, or with the tuning stage's rate (`choice`), or
    /// calibrated.
    Unlearn {
        method: MethodSpec,
        seed: u64,
        fraction: f64,
        with_retain: bool,
        variant: Variant,
        original: StepId,
        forget: StepId,
        adversarial: Option<StepId>,
        choice: Option<StepId>,
        /// A calibrated run's membership test is RMIA's (issue 35).
        #[serde(skip_serializing_if = "Option::is_none")]
        references: Option<StepId>,
    },
    /// One grid point of the tuning stage: the run on the tuning forget
    /// set and its audit (the model itself is not kept).
    TunePoint {
        method: MethodSpec,
        seed: u64,
        fraction: f64,
        with_retain: bool,
        lr: f64,
        step: usize,
        gamma: f64,
        original: StepId,
        forget: StepId,
        adversarial: Option<StepId>,
        references: StepId,
    },
    /// The tuning stage's choice for a method and setting, from its grid
    /// points and the audits of the tuning retrains.
    Choose {
        method: String,
        fraction: f64,
        with_retain: bool,
        points: Vec<StepId>,
        retrain_audits: Vec<StepId>,
    },
    /// The audit of a model against a forget set.
    Audit {
        model: StepId,
        seed: u64,
        fraction: f64,
        tune: bool,
        forget: StepId,
        references: StepId,
    },
    /// report.md/json/csv and the plots.
    Report {
        audits: Vec<StepId>,
        choices: Vec<StepId>,
    },
}

impl StepKind {
    /// The steps this one reads, in a fixed order.
    pub fn inputs(&self) -> Vec<&StepId> {
        match self {
            StepKind::Reference { .. } | StepKind::Original { .. } | StepKind::Forget { .. } => {
                vec![]
            }
            StepKind::References { models } => models.iter().collect(),
            StepKind::TuneForget { avoid, .. } => avoid.iter().collect(),
            StepKind::Retrain { forget, .. } => vec![forget],
            StepKind::Adversarial {
                original, forget, ..
            } => vec![original, forget],
            StepKind::Unlearn {
                original,
                forget,
                adversarial,
                choice,
                references,
                ..
            } => [
                Some(original),
                Some(forget),
                adversarial.as_ref(),
                choice.as_ref(),
                references.as_ref(),
            ]
            .into_iter()
            .flatten()
            .collect(),
            StepKind::TunePoint {
                original,
                forget,
                adversarial,
                references,
                ..
            } => [
                Some(original),
                Some(forget),
                adversarial.as_ref(),
                Some(references),
            ]
            .into_iter()
            .flatten()
            .collect(),
            StepKind::Choose {
                points,
                retrain_audits,
                ..
            } => points.iter().chain(retrain_audits).collect(),
            StepKind::Audit {
                model,
                forget,
                references,
                ..
            } => vec![model, forget, references],
            StepKind::Report { audits, choices } => audits.iter().chain(choices).collect(),
        }
    }

    /// The kind's name (`reference`, `unlearn`, …).
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Reference { .. } => "reference",
            StepKind::References { .. } => "references",
            StepKind::Original { .. } => "original",
            StepKind::Forget { .. } => "forget",
            StepKind::TuneForget { .. } => "tune-forget",
            StepKind::Retrain { .. } => "retrain",
            StepKind::Adversarial { .. } => "adversarial",
            StepKind::Unlearn { .. } => "unlearn",
            StepKind::TunePoint { .. } => "tune-point",
            StepKind::Choose { .. } => "choose",
            StepKind::Audit { .. } => "audit",
            StepKind::Report { .. } => "report",
        }
    }

    /// What it needs to run.
    pub fn resource(&self) -> Resource {
        match self {
            StepKind::Reference { .. } | StepKind::Original { .. } | StepKind::Retrain { .. } => {
                Resource::Train
            }
            StepKind::Adversarial { .. } => Resource::Search,
            StepKind::Unlearn { .. } | StepKind::TunePoint { .. } => Resource::Unlearn,
            StepKind::Audit { .. } => Resource::Audit,
            StepKind::References { .. }
            | StepKind::Forget { .. }
            | StepKind::TuneForget { .. }
            | StepKind::Choose { .. }
            | StepKind::Report { .. } => Resource::Light,
        }
    }

    /// The artifact of step `id` of this kind, relative to the run folder.
    fn artifact(&self, id: &StepId) -> String {
        let id = id.as_str();
        match self {
            StepKind::Reference { .. } => format!("references/{id}.logits.safetensors"),
            StepKind::References { .. } => "references/index.json".into(),
            StepKind::Report { .. } => "report.json".into(),
            // Grid points go to their own folder, without the prefix.
            StepKind::TunePoint { .. } => {
                format!("tune/{}.json", id.strip_prefix("tune-").unwrap_or(id))
            }
            StepKind::Original { .. }
            | StepKind::Retrain { .. }
            | StepKind::Adversarial { .. }
            | StepKind::Unlearn { .. } => format!("{id}.safetensors"),
            StepKind::Forget { .. }
            | StepKind::TuneForget { .. }
            | StepKind::Choose { .. }
            | StepKind::Audit { .. } => format!("{id}.json"),
        }
    }
}

/// One step: what it computes, from which steps, into which file.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: StepId,
    pub kind: StepKind,
    /// The artifact, relative to the run folder.
    pub artifact: String,
    /// A hash of the config's settings the step computes with beyond its
    /// kind (data, model, recipe, audit, …): part of its inputs, so a run
    /// folder whose config changed (an unsigned experiment.json of an older
    /// amun, edited) recomputes what changed; a signed one edited is refused.
    pub settings: String,
}

impl Step {
    fn new(id: StepId, kind: StepKind, cfg: &Config) -> Step {
        Step {
            artifact: kind.artifact(&id),
            settings: short_hash(&settings_of(cfg, &kind)),
            id,
            kind,
        }
    }

    /// The steps it reads.
    pub fn deps(&self) -> Vec<&StepId> {
        self.kind.inputs()
    }

    pub fn resource(&self) -> Resource {
        self.kind.resource()
    }
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            id: &'a StepId,
            #[serde(flatten)]
            kind: &'a StepKind,
            deps: Vec<&'a StepId>,
            artifact: &'a str,
            resource: Resource,
        }
        View {
            id: &self.id,
            kind: &self.kind,
            deps: self.deps(),
            artifact: &self.artifact,
            resource: self.resource(),
        }
        .serialize(s)
    }
}

/// The settings of `cfg` that a step of `kind` reads besides its kind's
/// fields (see `steps`): what every model it trains or loads is made of,
/// and what an audit measures with.
fn settings_of(cfg: &Config, kind: &StepKind) -> serde_json::Value {
    use serde_json::json;
    let models = json!({ "data": cfg.data, "model": cfg.model, "train": cfg.train });
    let audit = json!({
        "models": models,
        "attack": cfg.rmia.attack,
        "heldout": cfg.heldout(),
    });
    match kind {
        StepKind::Reference { .. } => json!({
            "models": models,
            "count": cfg.rmia.reference_models,
            "seed": cfg.seeds[0],
        }),
        StepKind::References { .. } => json!({
            "models": models,
            "count": cfg.rmia.reference_models,
            "seed": cfg.seeds[0],
        }),
        StepKind::Forget { .. } | StepKind::TuneForget { .. } => json!({ "data": cfg.data }),
        StepKind::Original { .. } | StepKind::Retrain { .. } | StepKind::Adversarial { .. } => {
            models
        }
        StepKind::Unlearn {
            variant, method, ..
        } => {
            let calibrated = *variant == Variant::Calibrated;
            // What calibration reads: the held-out images, not which other
            // methods the config calibrates (an AMUN-only config's
            // calibrated AMUN was not reused by the full one, stop 51).
            let mut v = json!({
                "models": models,
                "calibrate": calibrated.then(|| json!({ "holdout": cfg.heldout() })),
            });
            // The settings calibration runs with, defaults included and
            // resolved for the method (its own `stall`), so that a new
            // default makes calibrated artifacts of earlier rules stale, and
            // only theirs; absent for other variants, whose hashes stay as
            // they were.
            if calibrated {
                let resolved = (cfg.calibrate.as_ref())
                    .and_then(|c| c.settings().ok())
                    .map(|s| s.for_method(method.name()));
                v["calibration"] = json!(resolved);
            }
            v
        }
        StepKind::TunePoint { .. } | StepKind::Audit { .. } => audit,
        StepKind::Choose { method, .. } => json!({
            "tune": cfg.tune,
            "method": cfg.methods.get(method),
        }),
        // The report shows the whole config.
        StepKind::Report { .. } => json!(cfg),
    }
}

/// Every step of an experiment, in an order where each step comes after
/// the steps it reads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    index: HashMap<StepId, usize>,
    /// [`crate::data::files_sha256`] of the config's dataset: part of every
    /// step's inputs, so changed data makes the run's steps stale.
    data_sha256: Option<String>,
}

/// A short stable hash of a value (settings in names and inputs).
pub fn short_hash(v: &impl Serialize) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    format!("{:x}", Sha256::digest(s.as_bytes()))[..10].to_string()
}

/// Builds a plan stage by stage; a step added twice is kept once.
struct Builder<'c> {
    cfg: &'c Config,
    methods: Vec<MethodSpec>,
    steps: Vec<Step>,
    index: HashMap<StepId, usize>,
    /// Audits of evaluation models and tuning choices: what the report reads.
    audits: Vec<StepId>,
    choices: Vec<StepId>,
}

impl Builder<'_> {
    fn add(&mut self, id: StepId, kind: StepKind) -> StepId {
        if !self.index.contains_key(&id) {
            self.index.insert(id.clone(), self.steps.len());
            self.steps.push(Step::new(id.clone(), kind, self.cfg));
        }
        id
    }

    fn audit(
        &mut self,
        model: &StepId,
        per_fraction: bool,
        seed: u64,
        fraction: f64,
        tune: bool,
        forget: &StepId,
    ) -> StepId {
        let id = StepId::audit(model, per_fraction.then_some(fraction));
        let a = self.add(
            id,
            StepKind::Audit {
                model: model.clone(),
                seed,
                fraction,
                tune,
                forget: forget.clone(),
                references: StepId::references(),
            },
        );
        if !tune {
            self.audits.push(a.clone());
        }
        a
    }

    fn adversarial(
        &mut self,
        seed: u64,
        fraction: f64,
        tune: bool,
        settings: &AdvSettings,
        original: &StepId,
        forget: &StepId,
    ) -> StepId {
        self.add(
            StepId::adversarial(seed, fraction, tune, settings),
            StepKind::Adversarial {
                seed,
                fraction,
                tune,
                settings: settings.clone(),
                original: original.clone(),
                forget: forget.clone(),
            },
        )
    }

    /// The methods of a setting: without D_R, those that can run without.
    fn methods_for(&self, with_retain: bool) -> Vec<MethodSpec> {
        self.methods
            .iter()
            .filter(|m| with_retain || m.method().requires_retain().is_none())
            .cloned()
            .collect()
    }

    /// The RMIA reference models and their index.
    fn references(&mut self) {
        let models: Vec<StepId> = (0..self.cfg.rmia.reference_models)
            .map(|k| self.add(StepId::reference(k), StepKind::Reference { index: k }))
            .collect();
        self.add(StepId::references(), StepKind::References { models });
    }

    /// Per evaluation seed: its original model and forget sets.
    fn originals_and_forgets(&mut self) {
        let cfg = self.cfg;
        for (si, &seed) in cfg.seeds.iter().enumerate() {
            self.add(StepId::original(seed), StepKind::Original { seed });
            for &fraction in &cfg.forget.fractions {
                self.add(
                    StepId::forget(seed, fraction),
                    StepKind::Forget {
                        seed,
                        fraction,
                        file: cfg.forget.files.get(si).cloned(),
                    },
                );
            }
        }
    }

    /// The tuning stage: per fraction and tuning seed, its forget set (away
    /// from every evaluation set), retrain (audited), adversarial sets, and
    /// every grid point of every tuned method; then each method's choice.
    fn tuning(&mut self) {
        let cfg = self.cfg;
        let Some(t) = cfg.tune.as_ref() else {
            return;
        };
        if !self
            .methods
            .iter()
            .any(|m| cfg.tune_grid(m.name()).is_some())
        {
            return;
        }
        let original = StepId::original(cfg.seeds[0]);
        for &fraction in &cfg.forget.fractions {
            let avoid: Vec<StepId> = cfg
                .seeds
                .iter()
                .map(|&s| StepId::forget(s, fraction))
                .collect();
            let mut per_seed = Vec::new();
            for &ts in &t.seeds {
                let forget = self.add(
                    StepId::tune_forget(ts, fraction),
                    StepKind::TuneForget {
                        seed: ts,
                        fraction,
                        avoid: avoid.clone(),
                    },
                );
                let retrain = self.add(
                    StepId::retrain(ts, fraction, true),
                    StepKind::Retrain {
                        seed: ts,
                        fraction,
                        tune: true,
                        forget: forget.clone(),
                        replica: 0,
                    },
                );
                let audit = self.audit(&retrain, false, ts, fraction, true, &forget);
                per_seed.push((ts, forget, audit));
            }
            for &with_retain in &cfg.forget.with_retain {
                for method in self.methods_for(with_retain) {
                    let Some((lrs, steps)) = cfg.tune_grid(method.name()) else {
                        continue;
                    };
                    let mut points = Vec::new();
                    for (ts, forget, _) in &per_seed {
                        let adversarial = method
                            .method()
                            .adversarial()
                            .map(|s| self.adversarial(*ts, fraction, true, &s, &original, forget));
                        for &lr in &lrs {
                            for &step in &steps {
                                points.push(self.add(
                                    StepId::tune_point(
                                        method.name(),
                                        *ts,
                                        fraction,
                                        with_retain,
                                        lr,
                                        step,
                                    ),
                                    StepKind::TunePoint {
                                        method: method.clone(),
                                        seed: *ts,
                                        fraction,
                                        with_retain,
                                        lr,
                                        step,
                                        gamma: t.gamma,
                                        original: original.clone(),
                                        forget: forget.clone(),
                                        adversarial: adversarial.clone(),
                                        references: StepId::references(),
                                    },
                                ));
                            }
                        }
                    }
                    let choice = self.add(
                        StepId::choice(method.name(), fraction, with_retain),
                        StepKind::Choose {
                            method: method.name().to_string(),
                            fraction,
                            with_retain,
                            points,
                            retrain_audits: per_seed.iter().map(|(_, _, a)| a.clone()).collect(),
                        },
                    );
                    self.choices.push(choice);
                }
            }
        }
    }

    /// Per seed and fraction: the original and the retrain audited, the
    /// adversarial sets, then every method in every variant, audited.
    fn evaluation(&mut self) {
        let cfg = self.cfg;
        // Each distinct attack is one adversarial set per forget set.
        let mut attacks: Vec<AdvSettings> = Vec::new();
        for m in &self.methods {
            if let Some(a) = m.method().adversarial()
                && !attacks.contains(&a)
            {
                attacks.push(a);
            }
        }
        for &seed in &cfg.seeds {
            let original = StepId::original(seed);
            for &fraction in &cfg.forget.fractions {
                let forget = StepId::forget(seed, fraction);
                self.audit(&original, true, seed, fraction, false, &forget);
                let retrain = self.add(
                    StepId::retrain(seed, fraction, false),
                    StepKind::Retrain {
                        seed,
                        fraction,
                        tune: false,
                        forget: forget.clone(),
                        replica: 0,
                    },
                );
                self.audit(&retrain, false, seed, fraction, false, &forget);
                if cfg.forget.noise_floor {
                    let again = self.add(
                        StepId::retrain_again(seed, fraction),
                        StepKind::Retrain {
                            seed,
                            fraction,
                            tune: false,
                            forget: forget.clone(),
                            replica: 1,
                        },
                    );
                    self.audit(&again, false, seed, fraction, false, &forget);
                }
                for a in &attacks {
                    self.adversarial(seed, fraction, false, a, &original, &forget);
                }
                for &with_retain in &cfg.forget.with_retain {
                    for method in self.methods_for(with_retain) {
                        let adversarial = method
                            .method()
                            .adversarial()
                            .map(|s| StepId::adversarial(seed, fraction, false, &s));
                        let mut variants = vec![Variant::Default];
                        if cfg.tune.is_some() && cfg.tune_grid(method.name()).is_some() {
                            variants.push(Variant::Tuned);
                        }
                        if cfg.calibrated(method.name()) {
                            variants.push(Variant::Calibrated);
                        }
                        for variant in variants {
                            let run = self.add(
                                StepId::unlearn(&method, seed, fraction, with_retain, variant),
                                StepKind::Unlearn {
                                    method: method.clone(),
                                    seed,
                                    fraction,
                                    with_retain,
                                    variant,
                                    original: original.clone(),
                                    forget: forget.clone(),
                                    adversarial: adversarial.clone(),
                                    choice: (variant == Variant::Tuned).then(|| {
                                        StepId::choice(method.name(), fraction, with_retain)
                                    }),
                                    references: (variant == Variant::Calibrated)
                                        .then(StepId::references),
                                },
                            );
                            self.audit(&run, false, seed, fraction, false, &forget);
                        }
                    }
                }
            }
        }
    }

    fn report(&mut self) {
        let kind = StepKind::Report {
            audits: self.audits.clone(),
            choices: self.choices.clone(),
        };
        self.add(StepId::report(), kind);
    }
}

impl Plan {
    /// The plan of `cfg`.
    pub fn build(cfg: &Config) -> Result<Plan> {
        let mut b = Builder {
            cfg,
            methods: cfg.methods()?,
            steps: Vec::new(),
            index: HashMap::new(),
            audits: Vec::new(),
            choices: Vec::new(),
        };
        b.references();
        // The evaluation forget sets first: tuning sets avoid all of them.
        b.originals_and_forgets();
        b.tuning();
        b.evaluation();
        b.report();
        let plan = Plan {
            steps: b.steps,
            index: b.index,
            data_sha256: crate::data::files_sha256(&cfg.data)?,
        };
        plan.check_order()?;
        Ok(plan)
    }

    fn check_order(&self) -> Result<()> {
        for (i, s) in self.steps.iter().enumerate() {
            for d in s.deps() {
                match self.index.get(d) {
                    Some(&j) if j < i => {}
                    _ => {
                        return Err(Error::invalid(
                            "plan",
                            format!("step {} reads {d}, which is not planned before it", s.id),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The step `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.index
            .get(&StepId(id.to_string()))
            .map(|&i| &self.steps[i])
    }

    /// The step `id`, or an error listing a few known ids.
    pub fn get(&self, id: &str) -> Result<&Step> {
        self.step(id).ok_or_else(|| {
            let near: Vec<&str> = self
                .steps
                .iter()
                .map(|s| s.id.as_str())
                .filter(|s| s.starts_with(id.split('-').next().unwrap_or("")))
                .take(5)
                .collect();
            Error::invalid(
                "step",
                format!(
                    "no step '{id}' in this experiment's plan{}",
                    if near.is_empty() {
                        String::new()
                    } else {
                        format!(" (e.g. {})", near.join(", "))
                    }
                ),
            )
        })
    }

    /// The step a kind names as its input.
    pub fn input(&self, id: &StepId) -> Result<&Step> {
        self.get(id.as_str())
    }

    /// Where step `step` writes, inside `dir`.
    pub fn artifact(&self, dir: &Path, step: &Step) -> PathBuf {
        dir.join(&step.artifact)
    }

    /// What a step's artifact must have been made from: the content hash
    /// of each step it reads, a hash of the step itself (its settings) and
    /// of the dataset folder's files.
    /// `None` while a dependency has no artifact yet.
    pub fn inputs(&self, dir: &Path, step: &Step) -> Option<BTreeMap<String, String>> {
        self.inputs_with(step, |dep| {
            Some(self.artifact(dir, dep)).filter(|p| p.exists())
        })
    }

    /// [`Plan::inputs`], with each dependency's artifact where `artifact_of`
    /// finds it (`None`: not made yet).
    pub fn inputs_with(
        &self,
        step: &Step,
        artifact_of: impl Fn(&Step) -> Option<PathBuf>,
    ) -> Option<BTreeMap<String, String>> {
        let mut inputs = BTreeMap::new();
        for d in step.deps() {
            let p = artifact_of(self.step(d.as_str())?)?;
            inputs.insert(d.to_string(), store::content_sha(&p).ok()?);
        }
        inputs.insert("step".into(), short_hash(&step.kind));
        inputs.insert("settings".into(), step.settings.clone());
        // A dataset folder's files, for every step: each reads the data or
        // what was made from it.
        if let Some(d) = &self.data_sha256 {
            inputs.insert("data".into(), d.clone());
        }
        // A forget set read from a file depends on the file's content.
        if let StepKind::Forget { file: Some(f), .. } = &step.kind {
            inputs.insert("file".into(), crate::data::sha256_file(Path::new(f)).ok()?);
        }
        Some(inputs)
    }

    /// Which steps are done (their artifact fresh for their inputs, every
    /// dependency done), in plan order.
    pub fn status(&self, dir: &Path) -> Vec<Status> {
        self.status_reusing(dir, &[])
    }

    /// [`Plan::status`] once the steps `reused` (what `--reuse` would copy
    /// from another run folder) are: those are [`Status::Reused`], and the
    /// steps that read them wait for nothing (hostile11 X6: `--plan` listed
    /// them as waiting while the run copied them all).
    pub fn status_reusing(&self, dir: &Path, reused: &[String]) -> Vec<Status> {
        let mut out: Vec<Status> = Vec::with_capacity(self.steps.len());
        for s in &self.steps {
            let deps_done = s
                .deps()
                .iter()
                .all(|d| matches!(out[self.index[*d]], Status::Done | Status::Reused));
            let art = self.artifact(dir, s);
            let st = if reused.iter().any(|r| r == s.id.as_str()) {
                Status::Reused
            } else if !deps_done {
                if art.exists() {
                    Status::Stale
                } else {
                    Status::Waiting
                }
            } else {
                match self.inputs(dir, s) {
                    Some(i) if store::fresh(&art, &i).is_some() => Status::Done,
                    _ if art.exists() => Status::Stale,
                    _ => Status::Ready,
                }
            };
            out.push(st);
        }
        out
    }

    /// Steps whose dependencies are all in `done` and that are not
    /// themselves done.
    pub fn ready<'a>(&'a self, done: &'a [bool]) -> impl Iterator<Item = usize> + 'a {
        (0..self.steps.len())
            .filter(move |&i| !done[i] && self.steps[i].deps().iter().all(|d| done[self.index[*d]]))
    }

    /// The position of step `id`.
    pub fn position(&self, id: &StepId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The positions of the steps `step` reads.
    pub fn dep_positions(&self, step: &Step) -> Vec<usize> {
        step.deps()
            .iter()
            .filter_map(|d| self.position(d))
            .collect()
    }

    /// The number of steps per resource class.
    pub fn counts(&self) -> BTreeMap<Resource, usize> {
        let mut m = BTreeMap::new();
        for s in &self.steps {
            *m.entry(s.resource()).or_insert(0) += 1;
        }
        m
    }
}

/// Where a step stands in a run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Its artifact is fresh.
    Done,
    /// Its dependencies are done; it is not.
    Ready,
    /// An artifact exists but is not what its inputs say it must be (or a
    /// dependency is not done): it will be recomputed.
    Stale,
    /// A dependency is not done yet.
    Waiting,
    /// Not here, but up to date in the run folder `--reuse` names: a run
    /// copies it from there.
    Reused,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Ready => "ready",
            Status::Stale => "stale",
            Status::Waiting => "waiting",
            Status::Reused => "reused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const TUNED: &str = r#"
name = "t"
model = "small-cnn"
seeds = [0, 1]
[data]
dataset = "mnist"
[forget]
fractions = [0.1]
[rmia]
reference_models = 2
[methods.ft]
[methods.ga]
[methods.amun]
attack.steps = 5
[tune]
lr = [0.01, 0.1]
step = [1]
methods = ["ft", "amun"]
[calibrate]
holdout = 100
methods = ["amun"]
"#;

    fn plan(text: &str) -> Plan {
        Plan::build(&Config::parse(text, Path::new("t.toml")).unwrap()).unwrap()
    }

    fn kind<'a>(p: &'a Plan, id: &StepId) -> &'a StepKind {
        &p.input(id).unwrap().kind
    }

    #[test]
    fn every_edge_names_a_step_of_the_right_kind() {
        let p = plan(TUNED);
        let ids: HashSet<&StepId> = p.steps.iter().map(|s| &s.id).collect();
        let arts: HashSet<&String> = p.steps.iter().map(|s| &s.artifact).collect();
        assert_eq!(ids.len(), p.steps.len(), "ids are unique");
        assert_eq!(arts.len(), p.steps.len(), "artifacts are unique");
        let mut tune_points = 0;
        for s in &p.steps {
            match &s.kind {
                // The bug fixed in c5a651e: a tuning point of AMUN read the
                // references where its adversarial set belonged.
                StepKind::TunePoint {
                    method,
                    adversarial,
                    original,
                    forget,
                    references,
                    ..
                } => {
                    tune_points += 1;
                    assert_eq!(
                        adversarial.is_some(),
                        method.method().adversarial().is_some()
                    );
                    if let Some(a) = adversarial {
                        assert!(matches!(
                            kind(&p, a),
                            StepKind::Adversarial { tune: true, .. }
                        ));
                    }
                    assert!(matches!(kind(&p, original), StepKind::Original { .. }));
                    assert!(matches!(kind(&p, forget), StepKind::TuneForget { .. }));
                    assert!(matches!(kind(&p, references), StepKind::References { .. }));
                }
                StepKind::Unlearn {
                    method,
                    variant,
                    choice,
                    adversarial,
                    forget,
                    with_retain,
                    fraction,
                    references,
                    ..
                } => {
                    assert!(matches!(kind(&p, forget), StepKind::Forget { .. }));
                    if let Some(a) = adversarial {
                        assert!(matches!(
                            kind(&p, a),
                            StepKind::Adversarial { tune: false, .. }
                        ));
                    }
                    match (variant, choice) {
                        (Variant::Tuned, Some(c)) => assert!(matches!(
                            kind(&p, c),
                            StepKind::Choose { method: m, with_retain: w, fraction: f, .. }
                                if m == method.name() && w == with_retain && f == fraction
                        )),
                        (Variant::Tuned, None) => {
                            panic!("{}: a tuned run without its choice", s.id)
                        }
                        (_, Some(_)) => panic!("{}: reads a choice it does not use", s.id),
                        _ => {}
                    }
                    // ga is not tuned, only amun is calibrated.
                    if *variant == Variant::Tuned {
                        assert_ne!(method.name(), "ga");
                    }
                    if *variant == Variant::Calibrated {
                        assert_eq!(method.name(), "amun");
                    }
                    // A calibrated run tests membership with RMIA: it reads
                    // the references; no other run does.
                    if let Some(r) = references {
                        assert!(matches!(kind(&p, r), StepKind::References { .. }));
                    }
                    assert_eq!(
                        references.is_some(),
                        *variant == Variant::Calibrated,
                        "{}",
                        s.id
                    );
                }
                _ => {}
            }
        }
        // 2 methods × 2 settings × 2 lrs × 1 step (ft needs D_R).
        assert_eq!(tune_points, 2 + 4);
        // ft cannot run without D_R: no such step.
        assert!(
            p.steps
                .iter()
                .all(|s| !s.id.as_str().starts_with("unlearn-ft-s0-f0.1-noR"))
        );
        let StepKind::Report { audits, choices } = kind(&p, &StepId::report()) else {
            panic!("no report");
        };
        assert_eq!(choices.len(), 3);
        assert!(
            audits
                .iter()
                .all(|a| matches!(kind(&p, a), StepKind::Audit { tune: false, .. }))
        );
    }

    /// The settings of the first calibrated unlearn step.
    fn p_settings_of_calibrated(settings: &BTreeMap<String, String>) -> String {
        settings
            .iter()
            .find(|(id, _)| id.starts_with("unlearn-") && id.ends_with("-calibrated"))
            .map(|(_, s)| s.clone())
            .expect("a calibrated step")
    }

    #[test]
    fn a_steps_freshness_covers_the_config_it_was_made_with() {
        let settings = |text: &str| -> BTreeMap<String, String> {
            plan(text)
                .steps
                .iter()
                .map(|s| (s.id.to_string(), s.settings.clone()))
                .collect()
        };
        let base = settings(TUNED);
        // A longer recipe: every model (and what reads one) changes, the
        // forget sets do not.
        let more = settings(&TUNED.replace("[rmia]", "[train]\nepochs = 3\n[rmia]"));
        for id in [
            "original-s0",
            "retrain-s0-f0.1",
            "ref-000",
            "audit-original-s0-f0.1",
        ] {
            assert_ne!(base[id], more[id], "{id}");
        }
        assert_eq!(base["forget-s0-f0.1"], more["forget-s0-f0.1"]);
        // Another audit attack: the audits change, the models do not.
        let gamma = settings(&TUNED.replace(
            "reference_models = 2",
            "reference_models = 2\nattack = { gamma = 3.0 }",
        ));
        assert_ne!(
            base["audit-original-s0-f0.1"],
            gamma["audit-original-s0-f0.1"]
        );
        assert_eq!(base["original-s0"], gamma["original-s0"]);
        // A calibrated step covers the calibration it runs with (defaults
        // included: issue 35 added `level` and a guard from the data, so
        // runs calibrated by an earlier rule are not fresh); others do not.
        let tighter = settings(&TUNED.replace("holdout = 100", "holdout = 100\nlevel = 0.01"));
        assert_ne!(
            p_settings_of_calibrated(&tighter),
            p_settings_of_calibrated(&base)
        );
        let ft = |s: &BTreeMap<String, String>| {
            s.iter()
                .find(|(id, _)| id.starts_with("unlearn-ft-s0"))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(ft(&tighter), ft(&base));
        // Which other methods are calibrated is not part of a calibrated
        // step's identity; the held-out images are.
        let amun_cal = |s: &BTreeMap<String, String>| {
            s.iter()
                .find(|(id, _)| id.starts_with("unlearn-amun-s0") && id.ends_with("-calibrated"))
                .map(|(_, v)| v.clone())
                .expect("calibrated amun")
        };
        let two = settings(&TUNED.replace(
            "holdout = 100\nmethods = [\"amun\"]",
            "holdout = 100\nmethods = [\"amun\", \"ft\"]",
        ));
        assert!(
            two.keys()
                .any(|id| id.starts_with("unlearn-ft-s0") && id.ends_with("-calibrated"))
        );
        assert_eq!(amun_cal(&two), amun_cal(&base));
        let more_held = settings(&TUNED.replace("holdout = 100", "holdout = 120"));
        assert_ne!(amun_cal(&more_held), amun_cal(&base));
        // The settings are part of each step's inputs.
        let dir = tempfile::tempdir().unwrap();
        let p = plan(TUNED);
        let i = p.inputs(dir.path(), p.get("original-s0").unwrap()).unwrap();
        assert_eq!(i["settings"], base["original-s0"]);
    }

    /// A calibrated step's settings hold the `stall` its method runs with:
    /// AMUN's own 2, the others' 3 (what every record before AMUN's own
    /// held, so the baselines' calibrated run folders stay fresh); a
    /// `stall` given wins.
    #[test]
    fn a_calibrated_steps_settings_hold_the_methods_own_stall() {
        let stall_of = |text: &str, method: &str| {
            let cfg = Config::parse(text, Path::new("t.toml")).unwrap();
            let p = Plan::build(&cfg).unwrap();
            let s = (p.steps.iter())
                .find(|s| matches!(&s.kind, StepKind::Unlearn { method: m, variant: Variant::Calibrated, .. } if m.name() == method))
                .expect("a calibrated step");
            settings_of(&cfg, &s.kind)["calibration"]["stall"].clone()
        };
        assert_eq!(stall_of(TUNED, "amun"), 2);
        let given = TUNED.replace("holdout = 100", "holdout = 100\nstall = 3");
        assert_eq!(stall_of(&given, "amun"), 3);
        let ft = TUNED.replace(r#"methods = ["amun"]"#, r#"methods = ["ft"]"#);
        assert_eq!(stall_of(&ft, "ft"), 3);
    }

    #[test]
    fn a_steps_identity_follows_its_effective_settings() {
        let id_of = |text: &str| {
            let p = plan(text);
            let s = p
                .steps
                .iter()
                .find(|s| {
                    matches!(&s.kind, StepKind::Unlearn { method, variant: Variant::Default, .. } if method.name() == "ga")
                })
                .unwrap()
                .clone();
            (s.id, short_hash(&s.kind))
        };
        let (id, hash) = id_of(TUNED);
        // Naming the default value is not naming another setting: the
        // same step, by name and identity (hostile11 SC6/K12)…
        let (id2, hash2) =
            id_of(&TUNED.replace("[methods.ga]", "[methods.ga]\nfinetune.lr = 1e-4"));
        assert_eq!(id, id2);
        assert_eq!(hash, hash2);
        // …and any other value changes what the step is.
        let (_, hash3) = id_of(&TUNED.replace("[methods.ga]", "[methods.ga]\nfinetune.lr = 1e-3"));
        assert_ne!(hash, hash3);
    }

    #[test]
    fn the_noise_floor_adds_a_second_retrain_per_forget_set_and_leaves_the_rest() {
        let off = plan(TUNED);
        let on = plan(&TUNED.replace("fractions = [0.1]", "fractions = [0.1]\nnoise_floor = true"));
        for seed in [0, 1] {
            let again = StepId::retrain_again(seed, 0.1);
            assert!(off.get(again.as_str()).is_err());
            let StepKind::Retrain {
                seed: s,
                tune: false,
                forget,
                replica: 1,
                ..
            } = kind(&on, &again)
            else {
                panic!("{again} is not the second retrain");
            };
            assert_eq!(*s, seed);
            assert_eq!(*forget, StepId::forget(seed, 0.1));
            // It is audited, and the report reads that audit.
            let audited = on.steps.iter().any(|st| {
                matches!(&st.kind, StepKind::Audit { model, tune: false, .. } if *model == again)
            });
            assert!(audited, "{again} has no audit");
        }
        assert_eq!(on.steps.len(), off.steps.len() + 4);
        // Every other step is the same step (same identity), so turning the
        // floor on recomputes nothing else; the first retrain's kind
        // serialises as before (no `replica`), keeping run folders fresh.
        for s in &off.steps {
            let t = on.get(s.id.as_str()).unwrap();
            if !matches!(s.kind, StepKind::Report { .. }) {
                assert_eq!(short_hash(&s.kind), short_hash(&t.kind), "{}", s.id);
            }
        }
        let first = serde_json::to_value(kind(&off, &StepId::retrain(0, 0.1, false))).unwrap();
        assert!(first.get("replica").is_none());
    }
}
