//! The plan of an experiment: every step the protocol needs — reference
//! models, original models, forget sets, exact retrains, adversarial sets,
//! tuning points, unlearning runs, audits, the report — with the artifact
//! each one writes and the steps it reads. It is pure data, computed from
//! the config alone; executors (local, several workers, Slurm) decide where
//! and when each step runs, and `steps::run_step` what it does.
use super::config::Config;
use super::store;
use crate::attack::AdvSettings;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What a step needs to run, for schedulers (Slurm resources per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    /// Training from scratch: references, originals, retrains.
    Train,
    /// The adversarial-set search.
    Search,
    /// An unlearning run (or a tuning point: a run and its audit).
    Unlearn,
    /// Auditing one model.
    Audit,
    /// Seconds of bookkeeping: forget sets, the choice of a tuned point,
    /// the report.
    Light,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Train,
        Resource::Search,
        Resource::Unlearn,
        Resource::Audit,
        Resource::Light,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Train => "train",
            Resource::Search => "search",
            Resource::Unlearn => "unlearn",
            Resource::Audit => "audit",
            Resource::Light => "light",
        }
    }
}

/// Which settings an unlearning run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// What a step computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepKind {
    /// RMIA reference model `index` (trained on its half of the pool).
    Reference { index: usize },
    /// The reference models checked and indexed.
    References,
    /// The original model of an evaluation seed.
    Original { seed: u64 },
    /// The evaluation forget set of a seed and fraction: drawn at random,
    /// or read from `file` (the config's `forget.files`).
    Forget {
        seed: u64,
        fraction: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// A tuning forget set: its own seed, disjoint from every evaluation
    /// forget set of the fraction.
    TuneForget { seed: u64, fraction: f64 },
    /// The exact retrain without a forget set (evaluation or tuning).
    Retrain {
        seed: u64,
        fraction: f64,
        tune: bool,
    },
    /// The adversarial set of a forget set on the original model.
    Adversarial {
        seed: u64,
        fraction: f64,
        tune: bool,
        settings: AdvSettings,
    },
    /// One unlearning run on an evaluation forget set.
    Unlearn {
        method: String,
        seed: u64,
        fraction: f64,
        with_retain: bool,
        variant: Variant,
        /// The config's settings of the method (tuned runs replace lr and
        /// schedule with the tuning stage's choice).
        settings: Value,
    },
    /// One grid point of the tuning stage: the run on the tuning forget
    /// set and its audit (the model itself is not kept).
    TunePoint {
        method: String,
        seed: u64,
        fraction: f64,
        with_retain: bool,
        lr: f64,
        step: usize,
        settings: Value,
    },
    /// The tuning stage's choice for a method and setting.
    Choose {
        method: String,
        fraction: f64,
        with_retain: bool,
    },
    /// The audit of a model (`model` is its step) against a forget set.
    Audit {
        model: String,
        seed: u64,
        fraction: f64,
        tune: bool,
    },
    /// report.md/json/csv and the plots.
    Report,
}

/// One step: what it computes, from which steps, into which file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(flatten)]
    pub kind: StepKind,
    pub deps: Vec<String>,
    /// The artifact, relative to the run folder.
    pub artifact: String,
    pub resource: Resource,
}

/// Every step of an experiment, in an order where each step comes after
/// the steps it reads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    index: HashMap<String, usize>,
}

/// A short stable hash of a value (settings in names and inputs).
pub fn short_hash(v: &impl Serialize) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    format!("{:x}", Sha256::digest(s.as_bytes()))[..10].to_string()
}

fn tag(with_retain: bool) -> &'static str {
    if with_retain { "R" } else { "noR" }
}

fn safe(method: &str) -> String {
    method.replace('+', "plus")
}

struct Builder {
    steps: Vec<Step>,
    index: HashMap<String, usize>,
}

impl Builder {
    fn add(
        &mut self,
        id: String,
        kind: StepKind,
        deps: Vec<String>,
        artifact: String,
        resource: Resource,
    ) -> String {
        if !self.index.contains_key(&id) {
            self.index.insert(id.clone(), self.steps.len());
            self.steps.push(Step {
                id: id.clone(),
                kind,
                deps,
                artifact,
                resource,
            });
        }
        id
    }
}

impl Plan {
    /// The plan of `cfg`.
    pub fn build(cfg: &Config) -> Result<Plan> {
        let mut b = Builder {
            steps: Vec::new(),
            index: HashMap::new(),
        };
        let methods = cfg.method_list();
        let mut refs = Vec::new();
        for k in 0..cfg.rmia.reference_models {
            refs.push(b.add(
                format!("ref-{k:03}"),
                StepKind::Reference { index: k },
                vec![],
                format!("references/ref-{k:03}.logits.safetensors"),
                Resource::Train,
            ));
        }
        b.add(
            "references".into(),
            StepKind::References,
            refs,
            "references/index.json".into(),
            Resource::Light,
        );
        let mut audits = Vec::new();
        let mut chooses = Vec::new();
        let first_seed = cfg.seeds[0];
        // Adversarial-set settings in use (each distinct one is one set).
        let attacks: Vec<AdvSettings> = {
            let mut v: Vec<AdvSettings> = Vec::new();
            for (name, s) in &methods {
                if let Some(a) = crate::unlearn::build(name, s)?.adversarial()
                    && !v.contains(&a)
                {
                    v.push(a);
                }
            }
            v
        };
        let adv_of = |b: &mut Builder,
                      seed: u64,
                      f: f64,
                      tune: bool,
                      s: &AdvSettings,
                      model: &str,
                      forget: &str| {
            let (id, art) = if tune {
                (
                    format!("tune-adv-t{seed}-f{f}-{}", short_hash(s)),
                    format!("tune-adv-t{seed}-f{f}-{}.safetensors", short_hash(s)),
                )
            } else {
                (
                    format!("adv-s{seed}-f{f}-{}", short_hash(s)),
                    format!("adv-s{seed}-f{f}-{}.safetensors", short_hash(s)),
                )
            };
            b.add(
                id,
                StepKind::Adversarial {
                    seed,
                    fraction: f,
                    tune,
                    settings: s.clone(),
                },
                vec![model.to_string(), forget.to_string()],
                art,
                Resource::Search,
            )
        };
        let mut audit = |b: &mut Builder,
                         model: &str,
                         seed: u64,
                         f: f64,
                         tune: bool,
                         forget: &str,
                         suffix: &str| {
            let id = format!("audit-{model}{suffix}");
            let art = format!("{id}.json");
            let a = b.add(
                id,
                StepKind::Audit {
                    model: model.to_string(),
                    seed,
                    fraction: f,
                    tune,
                },
                vec![model.to_string(), forget.to_string(), "references".into()],
                art,
                Resource::Audit,
            );
            if !tune {
                audits.push(a.clone());
            }
            a
        };
        // The evaluation forget sets first: tuning sets avoid all of them.
        let mut forgets: BTreeMap<(u64, String), String> = BTreeMap::new();
        let mut originals = BTreeMap::new();
        for (si, &seed) in cfg.seeds.iter().enumerate() {
            originals.insert(
                seed,
                b.add(
                    format!("original-s{seed}"),
                    StepKind::Original { seed },
                    vec![],
                    format!("original-s{seed}.safetensors"),
                    Resource::Train,
                ),
            );
            for &f in &cfg.forget.fractions {
                forgets.insert(
                    (seed, f.to_string()),
                    b.add(
                        format!("forget-s{seed}-f{f}"),
                        StepKind::Forget {
                            seed,
                            fraction: f,
                            file: cfg.forget.files.get(si).cloned(),
                        },
                        vec![],
                        format!("forget-s{seed}-f{f}.json"),
                        Resource::Light,
                    ),
                );
            }
        }
        // The tuning stage: per fraction and tuning seed, its forget set,
        // retrain (audited), adversarial sets, and every grid point.
        let tuned_any = methods.iter().any(|(m, _)| cfg.tune_grid(m).is_some());
        if let Some(t) = cfg.tune.as_ref().filter(|_| tuned_any) {
            let original = originals[&first_seed].clone();
            for &f in &cfg.forget.fractions {
                let eval_forgets: Vec<String> = cfg
                    .seeds
                    .iter()
                    .map(|s| forgets[&(*s, f.to_string())].clone())
                    .collect();
                let mut per_seed = Vec::new();
                for &ts in &t.seeds {
                    let tf = b.add(
                        format!("tune-forget-t{ts}-f{f}"),
                        StepKind::TuneForget {
                            seed: ts,
                            fraction: f,
                        },
                        eval_forgets.clone(),
                        format!("tune-forget-t{ts}-f{f}.json"),
                        Resource::Light,
                    );
                    let tr = b.add(
                        format!("tune-retrain-t{ts}-f{f}"),
                        StepKind::Retrain {
                            seed: ts,
                            fraction: f,
                            tune: true,
                        },
                        vec![tf.clone()],
                        format!("tune-retrain-t{ts}-f{f}.safetensors"),
                        Resource::Train,
                    );
                    let tra = audit(&mut b, &tr, ts, f, true, &tf, "");
                    per_seed.push((ts, tf, tra));
                }
                for &with_retain in &cfg.forget.with_retain {
                    for (name, settings) in &methods {
                        let Some((lrs, steps)) = cfg.tune_grid(name) else {
                            continue;
                        };
                        let method = crate::unlearn::build(name, settings)?;
                        if !with_retain && method.requires_retain().is_some() {
                            continue;
                        }
                        let mut points = Vec::new();
                        for (ts, tf, tra) in &per_seed {
                            let adv = method
                                .adversarial()
                                .map(|s| adv_of(&mut b, *ts, f, true, &s, &original, tf));
                            for &lr in &lrs {
                                for &step in &steps {
                                    // The run reads its adversarial set
                                    // at deps[2], as evaluation runs do.
                                    let mut deps = vec![original.clone(), tf.clone()];
                                    deps.extend(adv.clone());
                                    deps.extend(["references".to_string(), tra.clone()]);
                                    points.push(b.add(
                                        format!(
                                            "tune-{}-{}-t{ts}-f{f}-lr{lr}-st{step}",
                                            safe(name),
                                            tag(with_retain)
                                        ),
                                        StepKind::TunePoint {
                                            method: name.to_string(),
                                            seed: *ts,
                                            fraction: f,
                                            with_retain,
                                            lr,
                                            step,
                                            settings: settings.clone(),
                                        },
                                        deps,
                                        format!(
                                            "tune/{}-{}-t{ts}-f{f}-lr{lr}-st{step}.json",
                                            safe(name),
                                            tag(with_retain)
                                        ),
                                        Resource::Unlearn,
                                    ));
                                }
                            }
                        }
                        let mut deps = points;
                        deps.extend(per_seed.iter().map(|(_, _, a)| a.clone()));
                        chooses.push(b.add(
                            format!("tuned-{}-{}-f{f}", safe(name), tag(with_retain)),
                            StepKind::Choose {
                                method: name.to_string(),
                                fraction: f,
                                with_retain,
                            },
                            deps,
                            format!("tuned-{}-{}-f{f}.json", safe(name), tag(with_retain)),
                            Resource::Light,
                        ));
                    }
                }
            }
        }
        // The evaluation: per seed and fraction, the original and the
        // retrain audited, then every method in every variant.
        for &seed in &cfg.seeds {
            let original = originals[&seed].clone();
            for &f in &cfg.forget.fractions {
                let forget = forgets[&(seed, f.to_string())].clone();
                audit(
                    &mut b,
                    &original,
                    seed,
                    f,
                    false,
                    &forget,
                    &format!("-f{f}"),
                );
                let retrain = b.add(
                    format!("retrain-s{seed}-f{f}"),
                    StepKind::Retrain {
                        seed,
                        fraction: f,
                        tune: false,
                    },
                    vec![forget.clone()],
                    format!("retrain-s{seed}-f{f}.safetensors"),
                    Resource::Train,
                );
                audit(&mut b, &retrain, seed, f, false, &forget, "");
                let advs: Vec<(AdvSettings, String)> = attacks
                    .iter()
                    .map(|s| {
                        (
                            s.clone(),
                            adv_of(&mut b, seed, f, false, s, &original, &forget),
                        )
                    })
                    .collect();
                for &with_retain in &cfg.forget.with_retain {
                    for (name, settings) in &methods {
                        let method = crate::unlearn::build(name, settings)?;
                        if !with_retain && method.requires_retain().is_some() {
                            continue;
                        }
                        let adv = method.adversarial().map(|s| {
                            advs.iter()
                                .find(|(a, _)| *a == s)
                                .map(|(_, id)| id.clone())
                                .expect("every attack has its set")
                        });
                        let mut variants = vec![Variant::Default];
                        if cfg.tune_grid(name).is_some() && cfg.tune.is_some() {
                            variants.push(Variant::Tuned);
                        }
                        if cfg.calibrated(name) {
                            variants.push(Variant::Calibrated);
                        }
                        for v in variants {
                            let suffix = match v {
                                Variant::Default => short_hash(settings),
                                Variant::Tuned => "tuned".into(),
                                Variant::Calibrated => "calibrated".into(),
                            };
                            let stem = format!(
                                "unlearn-{}-s{seed}-f{f}-{}-{suffix}",
                                safe(name),
                                tag(with_retain)
                            );
                            let mut deps = vec![original.clone(), forget.clone()];
                            deps.extend(adv.clone());
                            if v == Variant::Tuned {
                                deps.push(format!(
                                    "tuned-{}-{}-f{f}",
                                    safe(name),
                                    tag(with_retain)
                                ));
                            }
                            let id = b.add(
                                stem.clone(),
                                StepKind::Unlearn {
                                    method: name.to_string(),
                                    seed,
                                    fraction: f,
                                    with_retain,
                                    variant: v,
                                    settings: settings.clone(),
                                },
                                deps,
                                format!("{stem}.safetensors"),
                                Resource::Unlearn,
                            );
                            audit(&mut b, &id, seed, f, false, &forget, "");
                        }
                    }
                }
            }
        }
        let mut deps = audits;
        deps.extend(chooses);
        b.add(
            "report".into(),
            StepKind::Report,
            deps,
            "report.json".into(),
            Resource::Light,
        );
        let plan = Plan {
            steps: b.steps,
            index: b.index,
        };
        plan.check_order()?;
        Ok(plan)
    }

    fn check_order(&self) -> Result<()> {
        for (i, s) in self.steps.iter().enumerate() {
            for d in &s.deps {
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
        self.index.get(id).map(|&i| &self.steps[i])
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

    /// Where step `id` writes, inside `dir`.
    pub fn artifact(&self, dir: &Path, step: &Step) -> PathBuf {
        dir.join(&step.artifact)
    }

    /// What a step's artifact must have been made from: the content hash
    /// of each step it reads, and a hash of the step itself (its settings).
    /// `None` while a dependency has no artifact yet.
    pub fn inputs(&self, dir: &Path, step: &Step) -> Option<BTreeMap<String, String>> {
        let mut inputs = BTreeMap::new();
        for d in &step.deps {
            let dep = self.step(d)?;
            let p = self.artifact(dir, dep);
            if !p.exists() {
                return None;
            }
            inputs.insert(d.clone(), store::content_sha(&p).ok()?);
        }
        inputs.insert("step".into(), short_hash(&step.kind));
        // A forget set read from a file depends on the file's content.
        if let StepKind::Forget { file: Some(f), .. } = &step.kind {
            inputs.insert("file".into(), crate::data::sha256_file(Path::new(f)).ok()?);
        }
        Some(inputs)
    }

    /// Which steps are done (their artifact fresh for their inputs, every
    /// dependency done), in plan order.
    pub fn status(&self, dir: &Path) -> Vec<Status> {
        let mut out: Vec<Status> = Vec::with_capacity(self.steps.len());
        for s in &self.steps {
            let deps_done = s.deps.iter().all(|d| out[self.index[d]] == Status::Done);
            let art = self.artifact(dir, s);
            let st = if !deps_done {
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
            .filter(move |&i| !done[i] && self.steps[i].deps.iter().all(|d| done[self.index[d]]))
    }

    /// The position of step `id`.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The number of steps per resource class.
    pub fn counts(&self) -> BTreeMap<Resource, usize> {
        let mut m = BTreeMap::new();
        for s in &self.steps {
            *m.entry(s.resource).or_insert(0) += 1;
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
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Ready => "ready",
            Status::Stale => "stale",
            Status::Waiting => "waiting",
        }
    }
}
