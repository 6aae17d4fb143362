//! What each step of a plan does: it reads the artifacts of the steps it
//! depends on from the run folder, computes, and writes its own artifact
//! (atomically, under a lock) with a meta recording its inputs. The same
//! function runs a step in the local executor, in a worker process or in a
//! Slurm job, so every executor gives the same bits.
use super::config::{Config, TuneMetric};
use super::plan::{Plan, Status, Step, StepKind, Variant};
use super::report::{RunResult, build_report};
use super::store::{self, record};
use crate::attack::AdvSet;
use crate::audit::{ModelAudit, RefSetup, audit, audit_seed, avg_gap, load_references};
use crate::data::{Dataset, ForgetSet, ForgetSpec, Split};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::checkpoint::{self, ForgetSummary};
use crate::model::{Classifier, ModelSpec, Origin};
use crate::progress::Progress;
use crate::seed::derive;
use crate::train::{Recipe, Subset, TrainJob, train};
use crate::unlearn::{RequestOptions, RunCtx, build, unlearn_requests, unlearned_sidecar};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything a step may read besides the run folder.
pub struct StepCtx<'a> {
    pub cfg: &'a Config,
    pub plan: &'a Plan,
    pub dir: &'a Path,
    /// The data, on the experiment's device.
    pub data: &'a Dataset,
    pub progress: &'a dyn Progress,
    /// The hardware line for the report.
    pub hardware: &'a str,
}

/// A tuning point's artifact: the audit of the run, not the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunePointResult {
    pub lr: f64,
    pub step: usize,
    pub audit: ModelAudit,
    pub seconds: f64,
}

/// One line of a tuning table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneRow {
    pub lr: f64,
    pub step: usize,
    /// The selection metric, mean over tuning seeds.
    pub value: f64,
    pub per_seed: Vec<f64>,
    /// The Avg. Gap (mean over tuning seeds), whatever the metric.
    pub gap: f64,
}

/// The tuning stage's choice for one method and setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneChoice {
    pub method: String,
    pub fraction: f64,
    pub with_retain: bool,
    pub metric: TuneMetric,
    pub chosen_lr: f64,
    pub chosen_step: usize,
    /// The full settings the evaluation runs use.
    pub settings: Value,
    pub table: Vec<TuneRow>,
}

impl StepCtx<'_> {
    fn path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.plan.artifact(self.dir, self.plan.get(id)?))
    }

    fn spec(&self) -> Result<ModelSpec> {
        ModelSpec::for_data(
            self.cfg.model,
            self.data.image_shape(),
            self.data.num_classes(),
        )
    }

    fn recipe(&self) -> Result<Recipe> {
        self.cfg.recipe(self.data.image_shape()[0])
    }

    fn device(&self) -> tch::Device {
        self.data.train.labels.device()
    }

    fn load_model(&self, id: &str) -> Result<Classifier> {
        let mut m = checkpoint::load(&self.path(id)?, self.device())?.0;
        if self.recipe()?.channels_last {
            m.use_channels_last()?;
        }
        Ok(m)
    }

    fn forget(&self, id: &str) -> Result<ForgetSet> {
        let p = self.path(id)?;
        let f = ForgetSet::read(&p)?;
        f.check_matches(self.data, &p)?;
        Ok(f)
    }

    fn seconds_of(&self, id: &str) -> f64 {
        self.path(id)
            .ok()
            .and_then(|p| fsutil::read_json::<store::Meta>(&store::meta_path(&p)).ok())
            .map_or(0.0, |m| m.seconds)
    }

    /// The held-out test images of calibration (the last N), if any.
    fn heldout(&self) -> Option<Split> {
        let n = self.cfg.heldout();
        let t = self.data.test.len();
        (n > 0 && n < t).then(|| Split {
            images: self.data.test.images.narrow(0, (t - n) as i64, n as i64),
            labels: self.data.test.labels.narrow(0, (t - n) as i64, n as i64),
        })
    }

    fn audit_model(&self, model: &Classifier, forget: &ForgetSet) -> Result<ModelAudit> {
        let refs = load_references(&self.dir.join("references"), self.data)?;
        audit(
            model,
            self.data,
            &forget.indices,
            &refs,
            &self.cfg.rmia.attack,
            audit_seed(forget.seed),
            self.cfg.heldout(),
        )
    }
}

/// Whether `step` is done (fresh) in the run folder.
pub fn is_fresh(ctx: &StepCtx<'_>, step: &Step) -> bool {
    ctx.plan
        .inputs(ctx.dir, step)
        .is_some_and(|i| store::fresh(&ctx.plan.artifact(ctx.dir, step), &i).is_some())
}

/// Runs one step unless its artifact is fresh; returns whether it ran.
/// Every dependency must be done.
pub fn run_step(ctx: &StepCtx<'_>, step: &Step) -> Result<bool> {
    for d in &step.deps {
        let dep = ctx.plan.get(d)?;
        if !is_fresh(ctx, dep) {
            return Err(Error::invalid(
                "step",
                format!("{} needs {d}, which is not done", step.id),
            ));
        }
    }
    let artifact = ctx.plan.artifact(ctx.dir, step);
    let inputs = ctx
        .plan
        .inputs(ctx.dir, step)
        .expect("dependencies are done, so their artifacts exist");
    if store::fresh(&artifact, &inputs).is_some() {
        return Ok(false);
    }
    // One writer per artifact: two executors (or two Slurm jobs) never
    // compute the same step at once.
    let _lock = fsutil::OutputLock::acquire(&artifact)?;
    // Another process may have finished it while we waited for the lock.
    if store::fresh(&artifact, &inputs).is_some() {
        return Ok(false);
    }
    store::forget(&artifact)?;
    let started = Instant::now();
    let files = compute(ctx, step, &artifact)?;
    let seconds = match files.seconds {
        Some(s) => s,
        None => started.elapsed().as_secs_f64(),
    };
    let refs: Vec<&Path> = files.paths.iter().map(PathBuf::as_path).collect();
    record(&artifact, &refs, inputs, seconds)?;
    Ok(true)
}

/// What a step wrote, and its seconds when they are not its wall time
/// (training resumed over several processes, or a run that includes the
/// adversarial search it read).
struct Written {
    paths: Vec<PathBuf>,
    seconds: Option<f64>,
}

fn written(paths: Vec<PathBuf>) -> Written {
    Written {
        paths,
        seconds: None,
    }
}

fn compute(ctx: &StepCtx<'_>, step: &Step, artifact: &Path) -> Result<Written> {
    let cfg = ctx.cfg;
    match &step.kind {
        StepKind::Reference { index } => {
            let (spec, recipe) = (ctx.spec()?, ctx.recipe()?);
            let setup = RefSetup {
                data: ctx.data,
                spec: &spec,
                recipe: &recipe,
                count: cfg.rmia.reference_models,
                seed: derive(cfg.seeds[0], "references", 0),
                dir: &ctx.dir.join("references"),
            };
            setup.prepare()?;
            ctx.progress.note(&format!(
                "reference model {}/{}",
                index + 1,
                cfg.rmia.reference_models
            ));
            setup.train_one(*index, ctx.progress)?;
            Ok(written(vec![artifact.to_path_buf()]))
        }
        StepKind::References => {
            // Loading checks manifest, memberships and every logits file
            // against this data; the index records what was checked.
            load_references(&ctx.dir.join("references"), ctx.data)?;
            let files: Vec<String> = step
                .deps
                .iter()
                .map(|d| ctx.path(d).and_then(|p| store::content_sha(&p)))
                .collect::<Result<_>>()?;
            fsutil::write_json(artifact, &serde_json::json!({ "logits_sha256": files }))?;
            Ok(written(vec![artifact.to_path_buf()]))
        }
        StepKind::Original { seed } => {
            train_model(ctx, artifact, derive(*seed, "original", 0), Subset::All)
        }
        StepKind::Retrain { seed, tune, .. } => {
            let forget = ctx.forget(&step.deps[0])?;
            let s = if *tune {
                derive(*seed, "tune-retrain", 0)
            } else {
                derive(*seed, "retrain", 0)
            };
            train_model(ctx, artifact, s, Subset::Exclude(&forget))
        }
        StepKind::Forget {
            seed,
            fraction,
            file,
        } => {
            let set = match file {
                None => ForgetSet::choose(
                    ctx.data,
                    &ForgetSpec::Fraction(*fraction),
                    derive(*seed, "forget", 0),
                )?,
                Some(f) => {
                    let p = Path::new(f);
                    let mut set =
                        ForgetSet::from_indices(ctx.data, ForgetSet::read_indices(p)?, p)?;
                    // The experiment's seed: audits of different seeds draw
                    // their own retain samples.
                    set.seed = *seed;
                    let share = set.size as f64 / set.train_size as f64;
                    if (share - fraction).abs() > 0.01 {
                        return Err(Error::format(
                            p,
                            format!(
                                "holds {} of {} training samples ({:.1}%), but forget.fractions \
                                 says {:.1}%",
                                set.size,
                                set.train_size,
                                100.0 * share,
                                100.0 * fraction
                            ),
                        ));
                    }
                    set
                }
            };
            set.write(artifact)?;
            Ok(written(vec![artifact.to_path_buf()]))
        }
        StepKind::TuneForget { seed, fraction } => {
            let mut taken: Vec<i64> = Vec::new();
            for d in &step.deps {
                taken.extend(ctx.forget(d)?.indices);
            }
            let set = ForgetSet::choose_outside(
                ctx.data,
                *fraction,
                &taken,
                derive(*seed, "tune-forget", 0),
            )?;
            set.write(artifact)?;
            Ok(written(vec![artifact.to_path_buf()]))
        }
        StepKind::Adversarial { settings, .. } => {
            let original = ctx.load_model(&step.deps[0])?;
            let forget = ctx.forget(&step.deps[1])?;
            ctx.progress.note(&format!("{}: searching", step.id));
            let part = ctx.data.train.select(&forget.indices);
            let set = crate::attack::search(
                &original,
                &part.images,
                &part.labels,
                &forget.indices,
                settings,
                ctx.progress,
            )?;
            set.save(
                artifact,
                &original.fingerprint(),
                ForgetSummary::of(&forget),
            )?;
            Ok(written(vec![
                artifact.to_path_buf(),
                AdvSet::meta_path(artifact),
            ]))
        }
        StepKind::Unlearn {
            method,
            seed,
            with_retain,
            variant,
            settings,
            ..
        } => {
            let settings = match variant {
                Variant::Tuned => {
                    let choice: TuneChoice = fsutil::read_json(
                        &ctx.path(step.deps.last().expect("a tuned run reads its choice"))?,
                    )?;
                    choice.settings
                }
                _ => settings.clone(),
            };
            ctx.progress.note(&format!(
                "{} ({}) s{seed}",
                variant.label(method),
                if *with_retain {
                    "with D_R"
                } else {
                    "without D_R"
                }
            ));
            let run = unlearn_run(ctx, step, method, &settings, *seed, *with_retain, *variant)?;
            let sc = unlearned_sidecar(
                &checkpoint::read_sidecar(&ctx.path(&step.deps[0])?)?,
                &store::content_sha(&ctx.path(&step.deps[0])?)?,
                run.method.as_ref(),
                std::slice::from_ref(&run.forget),
                &run.logs,
                run.seed,
            );
            checkpoint::save(&run.model, artifact, &sc)?;
            Ok(Written {
                paths: vec![artifact.to_path_buf(), checkpoint::sidecar_path(artifact)],
                seconds: Some(run.seconds),
            })
        }
        StepKind::TunePoint {
            method,
            seed,
            with_retain,
            lr,
            step: decay,
            settings,
            ..
        } => {
            let gamma = cfg.tune.as_ref().map_or(0.1, |t| t.gamma);
            let settings = with_lr_schedule(settings, *lr, *decay, gamma)?;
            let run = unlearn_run(
                ctx,
                step,
                method,
                &settings,
                *seed,
                *with_retain,
                Variant::Default,
            )?;
            let a = ctx.audit_model(&run.model, &run.forget)?;
            let r = TunePointResult {
                lr: *lr,
                step: *decay,
                audit: a,
                seconds: run.seconds,
            };
            fsutil::write_json(artifact, &r)?;
            Ok(written(vec![artifact.to_path_buf()]))
        }
        StepKind::Choose {
            method,
            fraction,
            with_retain,
        } => {
            let choice = choose(ctx, step, method, *fraction, *with_retain)?;
            fsutil::write_json(artifact, &choice)?;
            Ok(written(vec![artifact.to_path_buf()]))
        }
        StepKind::Audit { model, .. } => {
            let m = ctx.load_model(model)?;
            let forget = ctx.forget(&step.deps[1])?;
            let a = ctx.audit_model(&m, &forget)?;
            fsutil::write_json(artifact, &a)?;
            Ok(written(vec![artifact.to_path_buf()]))
        }
        StepKind::Report => {
            report(ctx)?.write(ctx.dir)?;
            Ok(written(vec![artifact.to_path_buf()]))
        }
    }
}

/// Trains a model of the config's recipe into `artifact` (resuming a
/// killed run of the same step).
fn train_model(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    seed: u64,
    subset: Subset<'_>,
) -> Result<Written> {
    let name = artifact
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx.progress.note(&format!("{name}: training"));
    let job = TrainJob {
        spec: ctx.spec()?,
        data: ctx.data,
        recipe: ctx.recipe()?,
        seed,
        subset,
        out: Some(artifact),
        resume: true,
        eval_each_epoch: false,
    };
    // A finished file without a fresh meta is not this step's result (its
    // inputs changed, or it was tampered with): train anew. An unfinished
    // one resumes (its resume state holds the run's fingerprint).
    if artifact.exists() && !crate::train::resume_path(artifact).exists() {
        let _ = std::fs::remove_file(artifact);
        let _ = std::fs::remove_file(checkpoint::sidecar_path(artifact));
    }
    let t = train(&job, ctx.progress)?;
    let seconds = match &t.sidecar.origin {
        Origin::Train { wall_s, .. } => *wall_s,
        _ => 0.0,
    };
    Ok(Written {
        paths: vec![artifact.to_path_buf(), checkpoint::sidecar_path(artifact)],
        seconds: Some(seconds),
    })
}

/// `settings` with `finetune.lr = lr` and a StepLR schedule.
fn with_lr_schedule(settings: &Value, lr: f64, step: usize, gamma: f64) -> Result<Value> {
    let mut s = settings.clone();
    let obj = s
        .as_object_mut()
        .ok_or_else(|| Error::invalid("tune", "method settings must be a table"))?;
    let ft = obj
        .entry("finetune")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
        .ok_or_else(|| Error::invalid("tune", "finetune must be a table"))?;
    ft.insert("lr".into(), lr.into());
    ft.insert("schedule".into(), format!("step:{step}:{gamma}").into());
    Ok(s)
}

struct UnlearnRun {
    model: Classifier,
    method: Box<dyn crate::unlearn::Method>,
    forget: ForgetSet,
    logs: Vec<crate::unlearn::UnlearnLog>,
    seed: u64,
    /// The method's seconds plus those of the adversarial search it read.
    seconds: f64,
}

/// Runs `method` on a copy of the original model (deps[0]) for the forget
/// set (deps[1]), with the adversarial set (deps[2]) when it uses one.
#[allow(clippy::too_many_arguments)]
fn unlearn_run(
    ctx: &StepCtx<'_>,
    step: &Step,
    name: &str,
    settings: &Value,
    seed: u64,
    with_retain: bool,
    variant: Variant,
) -> Result<UnlearnRun> {
    let method = build(name, settings)?;
    let mut model = ctx.load_model(&step.deps[0])?;
    let forget = ctx.forget(&step.deps[1])?;
    let (adv, adv_secs) = match method.adversarial() {
        Some(_) => {
            let p = ctx.path(&step.deps[2])?;
            let (set, meta) = AdvSet::load(&p)?;
            set.check_matches(&meta, &forget.indices, &model.fingerprint(), &p)?;
            (Some(set), ctx.seconds_of(&step.deps[2]))
        }
        None => (None, 0.0),
    };
    let recipe = ctx.recipe()?;
    let run_seed = derive(seed, name, u64::from(with_retain));
    let heldout = ctx.heldout();
    let cal = ctx.cfg.calibrate.as_ref().map(|c| c.settings());
    let calibrate = match variant {
        Variant::Calibrated => Some((
            cal.as_ref().expect("a calibrated step has [calibrate]"),
            heldout.as_ref().ok_or_else(|| {
                Error::invalid("calibrate.holdout", "leaves no held-out test image")
            })?,
        )),
        _ => None,
    };
    let rctx = RunCtx {
        seed: run_seed,
        progress: ctx.progress,
        original_recipe: Some(&recipe),
        observe: None,
        on_epoch: None,
    };
    let t = Instant::now();
    let logs = unlearn_requests(
        method.as_ref(),
        &mut model,
        &ctx.data.train,
        ctx.data.num_classes(),
        std::slice::from_ref(&forget.indices),
        &RequestOptions {
            with_retain,
            adaptive: false,
            precomputed: adv.as_ref(),
            calibrate,
        },
        &rctx,
    )?;
    Ok(UnlearnRun {
        model,
        method,
        forget,
        logs,
        seed: run_seed,
        seconds: t.elapsed().as_secs_f64() + adv_secs,
    })
}

/// The grid point with the smallest mean selection metric over the tuning
/// seeds (ties: the first in grid order).
fn choose(
    ctx: &StepCtx<'_>,
    step: &Step,
    method: &str,
    fraction: f64,
    with_retain: bool,
) -> Result<TuneChoice> {
    let t = ctx
        .cfg
        .tune
        .as_ref()
        .ok_or_else(|| Error::invalid("tune", "no [tune] section"))?;
    let mut retrain: BTreeMap<u64, ModelAudit> = BTreeMap::new();
    let mut points: Vec<(u64, TunePointResult)> = Vec::new();
    for d in &step.deps {
        let s = ctx.plan.get(d)?;
        match &s.kind {
            StepKind::Audit { seed, .. } => {
                retrain.insert(*seed, fsutil::read_json(&ctx.path(d)?)?);
            }
            StepKind::TunePoint { seed, .. } => {
                points.push((*seed, fsutil::read_json(&ctx.path(d)?)?));
            }
            _ => {}
        }
    }
    let mut table: Vec<TuneRow> = Vec::new();
    for (seed, p) in &points {
        let rt = retrain.get(seed).ok_or_else(|| {
            Error::invalid("tune", format!("no retrain audit for tuning seed {seed}"))
        })?;
        let gap = avg_gap(&p.audit.scores, &rt.scores);
        let value = match t.metric {
            TuneMetric::Gap => gap,
            TuneMetric::MisGap => (p.audit.mis - rt.mis).abs(),
        };
        match table.iter_mut().find(|r| r.lr == p.lr && r.step == p.step) {
            Some(r) => {
                r.per_seed.push(value);
                r.gap += gap;
            }
            None => table.push(TuneRow {
                lr: p.lr,
                step: p.step,
                value: 0.0,
                per_seed: vec![value],
                gap,
            }),
        }
    }
    for r in &mut table {
        let n = r.per_seed.len().max(1) as f64;
        r.value = r.per_seed.iter().sum::<f64>() / n;
        r.gap /= n;
    }
    let best = table
        .iter()
        .fold(None::<&TuneRow>, |b, r| match b {
            Some(b) if b.value <= r.value => Some(b),
            _ => Some(r),
        })
        .ok_or_else(|| Error::invalid("tune", "an empty grid"))?;
    let (settings, _) = ctx
        .cfg
        .method_list()
        .into_iter()
        .find(|(n, _)| *n == method)
        .map(|(_, s)| (s, ()))
        .ok_or_else(|| Error::invalid("tune", format!("{method} is not configured")))?;
    Ok(TuneChoice {
        method: method.to_string(),
        fraction,
        with_retain,
        metric: t.metric,
        chosen_lr: best.lr,
        chosen_step: best.step,
        settings: with_lr_schedule(&settings, best.lr, best.step, t.gamma)?,
        table,
    })
}

/// One result per audited evaluation model, in plan order.
fn results(ctx: &StepCtx<'_>) -> Result<Vec<RunResult>> {
    let mut out = Vec::new();
    for s in &ctx.plan.steps {
        let StepKind::Audit {
            model,
            seed,
            fraction,
            tune: false,
        } = &s.kind
        else {
            continue;
        };
        let audit: ModelAudit = fsutil::read_json(&ctx.plan.artifact(ctx.dir, s))?;
        let m = ctx.plan.get(model)?;
        let (method, with_retain) = match &m.kind {
            StepKind::Original { .. } => ("original".to_string(), None),
            StepKind::Retrain { .. } => ("retrain".to_string(), None),
            StepKind::Unlearn {
                method,
                with_retain,
                variant,
                ..
            } => (variant.label(method), Some(*with_retain)),
            _ => continue,
        };
        let calibration = match &m.kind {
            StepKind::Unlearn {
                variant: Variant::Calibrated,
                ..
            } => match checkpoint::read_sidecar(&ctx.plan.artifact(ctx.dir, m))?.origin {
                Origin::Unlearn { calibration, .. } => calibration,
                _ => None,
            },
            _ => None,
        };
        out.push(RunResult {
            seed: *seed,
            fraction: *fraction,
            with_retain,
            method,
            audit,
            seconds: ctx.seconds_of(model),
            checkpoint: m.artifact.clone(),
            calibration,
        });
    }
    Ok(out)
}

fn choices(ctx: &StepCtx<'_>) -> Result<Vec<TuneChoice>> {
    ctx.plan
        .steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Choose { .. }))
        .map(|s| fsutil::read_json(&ctx.plan.artifact(ctx.dir, s)))
        .collect()
}

/// Runs every step of the plan that is not done, one after the other, in
/// this process; returns the ids of the steps computed.
pub fn run_all(ctx: &StepCtx<'_>) -> Result<Vec<String>> {
    let done = ctx
        .plan
        .status(ctx.dir)
        .iter()
        .filter(|s| **s == Status::Done)
        .count();
    ctx.progress.note(&format!(
        "{}: {} steps, {done} up to date",
        ctx.cfg.name,
        ctx.plan.steps.len()
    ));
    let mut computed = Vec::new();
    for s in &ctx.plan.steps {
        if run_step(ctx, s)? {
            computed.push(s.id.clone());
        }
    }
    Ok(computed)
}

/// The report of the run folder (every audit must be done).
pub fn report(ctx: &StepCtx<'_>) -> Result<super::report::Report> {
    Ok(build_report(
        ctx.cfg,
        results(ctx)?,
        choices(ctx)?,
        ctx.hardware.to_string(),
    ))
}
