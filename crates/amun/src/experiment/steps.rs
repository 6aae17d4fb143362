//! What each step of a plan does: it reads the artifacts of the steps its
//! kind names from the run folder, computes, and writes its own artifact
//! (atomically, under a lock) with a meta recording its inputs. The same
//! function runs a step in the local executor, in a worker process or in a
//! Slurm job, so every executor gives the same bits. One function per kind.
use super::config::Config;
use super::config::grid_rate;
use super::plan::{Plan, Status, Step, StepId, StepKind, Variant};
use super::report::{RETRAIN_AGAIN, Resolved, RunResult, build_report};
use super::store::{self, record};
use super::tune::{TuneChoice, TunePointResult, choose};
use crate::attack::{AdvSet, AdvSettings};
use crate::audit::{ModelAudit, RefSetup, audit, audit_seed, load_references};
use crate::data::{Dataset, ForgetSet, ForgetSpec, HeldOut};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::checkpoint::{self, ForgetSummary};
use crate::model::{Classifier, ModelSpec, Origin};
use crate::progress::Progress;
use crate::seed::derive;
use crate::train::{Recipe, Subset, TrainJob, train};
use crate::unlearn::{AdvFile, Calibration, MethodSpec, RunSettings};
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

impl StepCtx<'_> {
    fn path(&self, id: &StepId) -> Result<PathBuf> {
        Ok(self.plan.artifact(self.dir, self.plan.input(id)?))
    }

    fn spec(&self) -> Result<ModelSpec> {
        self.cfg
            .model_spec(self.data.image_shape(), self.data.num_classes())
    }

    fn recipe(&self) -> Result<Recipe> {
        self.cfg.recipe(self.data.image_shape()[0])
    }

    /// The artifact of step `id`, its large files hashed against its
    /// record first (see [`store::verify`]).
    fn verified(&self, id: &StepId) -> Result<PathBuf> {
        let p = self.path(id)?;
        store::verify(&p)?;
        Ok(p)
    }

    fn load_model(&self, id: &StepId) -> Result<Classifier> {
        let mut m = checkpoint::load(&self.verified(id)?, self.data.train.labels.device())?.0;
        crate::train::lay_out(&mut m, &self.recipe()?)?;
        Ok(m)
    }

    fn forget(&self, id: &StepId) -> Result<ForgetSet> {
        let p = self.path(id)?;
        let f = ForgetSet::read(&p)?;
        f.check_matches(self.data, &p)?;
        Ok(f)
    }

    fn seconds_of(&self, id: &StepId) -> f64 {
        self.path(id)
            .ok()
            .and_then(|p| fsutil::read_json::<store::Meta>(&store::meta_path(&p)).ok())
            .map_or(0.0, |m| m.seconds)
    }

    /// The reference models, verified: the index, then each reference
    /// model's logits (what RMIA reads).
    fn references(&self) -> Result<crate::audit::References> {
        load_references(&self.references_dir()?, self.data)
    }

    /// The reference models' folder, verified: the index, then each
    /// reference model's logits.
    fn references_dir(&self) -> Result<PathBuf> {
        if let StepKind::References { models } = &self.plan.input(&StepId::references())?.kind {
            self.verified(&StepId::references())?;
            for m in models {
                self.verified(m)?;
            }
        }
        Ok(self.dir.join("references"))
    }

    fn audit_model(&self, model: &Classifier, forget: &ForgetSet) -> Result<ModelAudit> {
        let refs = self.references()?;
        audit(
            model,
            self.data,
            &forget.indices,
            &refs,
            &self.cfg.rmia.attack,
            audit_seed(forget.seed),
            self.cfg.heldout(),
            self.progress,
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
    for d in step.deps() {
        if !is_fresh(ctx, ctx.plan.input(d)?) {
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
    check_before(ctx, step)?;
    store::forget(&artifact)?;
    let started = Instant::now();
    let files = compute(ctx, step, &artifact)?;
    let seconds = files
        .seconds
        .unwrap_or_else(|| started.elapsed().as_secs_f64());
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

fn written(artifact: &Path) -> Written {
    Written {
        paths: vec![artifact.to_path_buf()],
        seconds: None,
    }
}

fn compute(ctx: &StepCtx<'_>, step: &Step, artifact: &Path) -> Result<Written> {
    match &step.kind {
        StepKind::Reference { index } => reference(ctx, *index, artifact),
        StepKind::References { models } => references(ctx, models, artifact),
        StepKind::Original { seed } => {
            train_model(ctx, artifact, derive(*seed, "original", 0), Subset::All)
        }
        StepKind::Retrain {
            seed,
            tune,
            forget,
            replica,
            ..
        } => retrain(ctx, artifact, *seed, *tune, *replica, forget),
        StepKind::Forget {
            seed,
            fraction,
            file,
        } => forget_set(ctx, artifact, *seed, *fraction, file.as_deref()),
        StepKind::TuneForget {
            seed,
            fraction,
            avoid,
        } => tune_forget(ctx, artifact, *seed, *fraction, avoid),
        StepKind::Adversarial {
            settings,
            original,
            forget,
            ..
        } => adversarial(ctx, step, artifact, settings, original, forget),
        StepKind::Unlearn {
            method,
            seed,
            with_retain,
            variant,
            original,
            forget,
            adversarial,
            choice,
            ..
        } => {
            let inputs = RunInputs {
                original,
                forget,
                adversarial: adversarial.as_ref(),
            };
            unlearn(
                ctx,
                artifact,
                method,
                *seed,
                *with_retain,
                *variant,
                &inputs,
                choice.as_ref(),
            )
        }
        StepKind::TunePoint {
            method,
            seed,
            with_retain,
            lr,
            step: decay,
            gamma,
            original,
            forget,
            adversarial,
            ..
        } => {
            let inputs = RunInputs {
                original,
                forget,
                adversarial: adversarial.as_ref(),
            };
            let method = method.adjusted(&grid_rate(*lr, *decay, *gamma))?;
            tune_point(
                ctx,
                artifact,
                &method,
                *seed,
                *with_retain,
                (*lr, *decay),
                &inputs,
            )
        }
        StepKind::Choose {
            method,
            fraction,
            with_retain,
            points,
            retrain_audits,
        } => choice(
            ctx,
            artifact,
            method,
            *fraction,
            *with_retain,
            points,
            retrain_audits,
        ),
        StepKind::Audit { model, forget, .. } => audit_step(ctx, artifact, model, forget),
        StepKind::Report { audits, choices } => report_step(ctx, artifact, audits, choices),
    }
}

/// RMIA reference model `index`, trained on its half of the pool.
fn reference(ctx: &StepCtx<'_>, index: usize, artifact: &Path) -> Result<Written> {
    with_ref_setup(ctx, |setup| {
        setup.prepare()?;
        ctx.progress
            .note(&format!("reference model {}/{}", index + 1, setup.count));
        setup.train_one(index, ctx.progress)
    })?;
    Ok(written(artifact))
}

/// What a step refuses in any case, checked before its record is
/// forgotten: a refused step leaves the run folder as it was.
fn check_before(ctx: &StepCtx<'_>, step: &Step) -> Result<()> {
    match step.kind {
        StepKind::Reference { .. } | StepKind::References { .. } => {
            with_ref_setup(ctx, |s| s.check_manifest())
        }
        _ => Ok(()),
    }
}

/// Refuses, before any step runs, a run folder whose reference models were
/// made with other settings or on other data (a class folder renamed since):
/// its reference steps would refuse only after other steps were recomputed.
pub fn check_references(ctx: &StepCtx<'_>) -> Result<()> {
    let has_refs = ctx
        .plan
        .steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::References { .. }));
    if has_refs {
        with_ref_setup(ctx, |s| s.check_manifest())
            .map_err(|e| super::blame_unsigned_record(ctx.dir, e))?;
    }
    Ok(())
}

/// The experiment's reference models: the config's recipe and count, their
/// seed from the first evaluation seed, in `references/`.
fn with_ref_setup<T>(ctx: &StepCtx<'_>, f: impl FnOnce(&RefSetup<'_>) -> Result<T>) -> Result<T> {
    let (spec, recipe) = (ctx.spec()?, ctx.recipe()?);
    f(&RefSetup {
        data: ctx.data,
        spec: &spec,
        recipe: &recipe,
        count: ctx.cfg.rmia.reference_models,
        seed: derive(ctx.cfg.seeds[0], "references", 0),
        dir: &ctx.dir.join("references"),
    })
}

/// Loading checks manifest, memberships and every logits file against this
/// data; the index records what was checked.
fn references(ctx: &StepCtx<'_>, models: &[StepId], artifact: &Path) -> Result<Written> {
    // Checks the manifest and rewrites a membership table that is not the
    // seed's, before the index records them.
    with_ref_setup(ctx, |s| {
        s.prepare()?;
        s.seal()
    })?;
    load_references(&ctx.dir.join("references"), ctx.data)?;
    let files: Vec<String> = models
        .iter()
        .map(|d| ctx.path(d).and_then(|p| store::content_sha(&p)))
        .collect::<Result<_>>()?;
    fsutil::write_json(artifact, &serde_json::json!({ "logits_sha256": files }))?;
    // What every reference step shares is part of the index's record, so a
    // changed membership table is never read as the one the models had.
    let refs = ctx.dir.join("references");
    Ok(Written {
        paths: vec![
            artifact.to_path_buf(),
            refs.join("manifest.json"),
            refs.join("members.safetensors"),
        ],
        seconds: None,
    })
}

fn retrain(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    seed: u64,
    tune: bool,
    replica: u32,
    forget: &StepId,
) -> Result<Written> {
    let forget = ctx.forget(forget)?;
    let stream = if tune { "tune-retrain" } else { "retrain" };
    train_model(
        ctx,
        artifact,
        derive(seed, stream, u64::from(replica)),
        Subset::Exclude(&forget),
    )
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

/// An evaluation forget set: drawn at random, or read from `file`.
fn forget_set(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    seed: u64,
    fraction: f64,
    file: Option<&str>,
) -> Result<Written> {
    let set = eval_forget_set(ctx.data, seed, fraction, file)?;
    set.write(artifact)?;
    Ok(written(artifact))
}

/// The evaluation forget set of `seed` and `fraction`, as its step makes
/// it (and [`super::check_calibrated_sets`] checks it before any step).
pub(crate) fn eval_forget_set(
    data: &Dataset,
    seed: u64,
    fraction: f64,
    file: Option<&str>,
) -> Result<ForgetSet> {
    match file {
        None => ForgetSet::choose(
            data,
            &ForgetSpec::Fraction(fraction),
            derive(seed, "forget", 0),
        ),
        Some(f) => file_forget_set(data, Path::new(f), seed, fraction).map(|(set, _)| set),
    }
}

/// The evaluation forget set of seed `seed` read from a `forget.files`
/// entry: any format `amun split --from` reads (amun's JSON only for this
/// dataset and slice), holding the share of the training set that
/// `fraction` says (within one point). Sealed with the content of `data`
/// when the file records none (an older amun's): the run folder's copy
/// then ties the run to the data it read, so a later edit of the data is
/// refused where the copy is read. With the warning the file itself calls
/// for (see [`ForgetSet::unsealed_warning`]), which the copy no longer
/// carries.
pub(crate) fn file_forget_set(
    data: &Dataset,
    p: &Path,
    seed: u64,
    fraction: f64,
) -> Result<(ForgetSet, Option<String>)> {
    let read = ForgetSet::load(p, data)?;
    let warning = read.unsealed_warning(data, p);
    let mut set = read.with_content_of(data);
    // A set of the experiment, whatever the file recorded: audits of
    // different seeds draw their own retain samples.
    set.kind = "file".into();
    set.class = None;
    set.class_name = None;
    set.seed = seed;
    let share = set.size as f64 / set.train_size as f64;
    if (share - fraction).abs() > 0.01 {
        return Err(Error::format(
            p,
            format!(
                "holds {} of {} training samples ({:.1}%), but forget.fractions says {:.1}%",
                set.size,
                set.train_size,
                100.0 * share,
                100.0 * fraction
            ),
        ));
    }
    Ok((set, warning))
}

/// A tuning forget set, disjoint from the evaluation sets `avoid`.
fn tune_forget(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    seed: u64,
    fraction: f64,
    avoid: &[StepId],
) -> Result<Written> {
    let mut taken: Vec<i64> = Vec::new();
    for d in avoid {
        taken.extend(ctx.forget(d)?.indices);
    }
    let set =
        ForgetSet::choose_outside(ctx.data, fraction, &taken, derive(seed, "tune-forget", 0))?;
    set.write(artifact)?;
    Ok(written(artifact))
}

fn adversarial(
    ctx: &StepCtx<'_>,
    step: &Step,
    artifact: &Path,
    settings: &AdvSettings,
    original: &StepId,
    forget: &StepId,
) -> Result<Written> {
    let original = ctx.load_model(original)?;
    let forget = ctx.forget(forget)?;
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
    Ok(Written {
        paths: vec![artifact.to_path_buf(), AdvSet::meta_path(artifact)],
        seconds: None,
    })
}

/// The steps an unlearning run reads.
struct RunInputs<'a> {
    original: &'a StepId,
    forget: &'a StepId,
    adversarial: Option<&'a StepId>,
}

/// An evaluation run: the configured method, at the tuning stage's rate
/// (`choice`) when tuned, or calibrated.
#[allow(clippy::too_many_arguments)]
fn unlearn(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    method: &MethodSpec,
    seed: u64,
    with_retain: bool,
    variant: Variant,
    inputs: &RunInputs<'_>,
    choice: Option<&StepId>,
) -> Result<Written> {
    let method = match choice {
        Some(c) => {
            let choice: TuneChoice = fsutil::read_json(&ctx.path(c)?)?;
            method.adjusted(&choice.rate())?
        }
        None => method.clone(),
    };
    ctx.progress.note(&format!(
        "{} ({}) s{seed}",
        variant.label(method.name()),
        if with_retain {
            "with D_R"
        } else {
            "without D_R"
        }
    ));
    let run = unlearn_run(
        ctx,
        &method,
        seed,
        with_retain,
        variant == Variant::Calibrated,
        inputs,
    )?;
    checkpoint::save(&run.model, artifact, &run.sidecar)?;
    Ok(Written {
        paths: vec![artifact.to_path_buf(), checkpoint::sidecar_path(artifact)],
        seconds: Some(run.seconds),
    })
}

/// One tuning grid point: the run and its audit, not the model.
fn tune_point(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    method: &MethodSpec,
    seed: u64,
    with_retain: bool,
    (lr, step): (f64, usize),
    inputs: &RunInputs<'_>,
) -> Result<Written> {
    let run = unlearn_run(ctx, method, seed, with_retain, false, inputs)?;
    let r = TunePointResult {
        lr,
        step,
        audit: ctx.audit_model(&run.model, &run.forget)?,
        seconds: run.seconds,
    };
    fsutil::write_json(artifact, &r)?;
    Ok(written(artifact))
}

struct UnlearnRun {
    model: Classifier,
    sidecar: crate::model::Sidecar,
    forget: ForgetSet,
    /// The method's seconds plus those of the adversarial search it read.
    seconds: f64,
}

/// Runs `method` on a copy of the original model for the forget set, with
/// the adversarial set when it uses one (the job `amun unlearn` runs).
fn unlearn_run(
    ctx: &StepCtx<'_>,
    method: &MethodSpec,
    seed: u64,
    with_retain: bool,
    calibrated: bool,
    inputs: &RunInputs<'_>,
) -> Result<UnlearnRun> {
    let device = ctx.data.train.labels.device();
    let (model, parent) = checkpoint::load(&ctx.verified(inputs.original)?, device)?;
    let requests = vec![ctx.forget(inputs.forget)?];
    let mut run = RunSettings::new(device, ".");
    run.with_retain = with_retain;
    let mut adv_secs = 0.0;
    if let Some(a) = inputs.adversarial
        && method.method().adversarial().is_some()
    {
        run.adversarial = Some(AdvFile::Recorded(ctx.verified(a)?));
        adv_secs = ctx.seconds_of(a);
    }
    if calibrated {
        let c =
            ctx.cfg.calibrate.as_ref().ok_or_else(|| {
                Error::invalid("calibrate", "a calibrated step needs [calibrate]")
            })?;
        run.calibrate = Some((c.settings()?, HeldOut::LastTest(c.holdout)));
        // Calibration's membership test: the audit's RMIA with the
        // experiment's references (verified as the audit reads them).
        run.refs = Some(ctx.references_dir()?);
        run.rmia = ctx.cfg.rmia.attack.clone();
    }
    run.check(method.method())?;
    let mut prepared = run.prepare(model, &parent, ctx.data, requests, &[])?;
    let seed = derive(seed, method.name(), u64::from(with_retain));
    let out = prepared.run(&run, method.method(), &parent, seed, &[], ctx.progress)?;
    // A calibration that kept the original before its first epoch needed
    // no adversarial set (`amun unlearn` does not compute one then): the
    // shared step's time is not this run's cost.
    let kept_before_any_epoch = !out.logs.is_empty()
        && out
            .logs
            .iter()
            .all(|l| l.calibration.as_ref().is_some_and(|c| c.epochs_run == 0));
    let forget = prepared.requests.remove(0);
    Ok(UnlearnRun {
        model: prepared.model,
        sidecar: out.sidecar,
        forget,
        seconds: out.seconds + if kept_before_any_epoch { 0.0 } else { adv_secs },
    })
}

/// The tuning stage's choice from its grid points and retrain audits.
fn choice(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    method: &str,
    fraction: f64,
    with_retain: bool,
    points: &[StepId],
    retrain_audits: &[StepId],
) -> Result<Written> {
    let t = ctx
        .cfg
        .tune
        .as_ref()
        .ok_or_else(|| Error::invalid("tune", "no [tune] section"))?;
    let seed_of = |id: &StepId| -> Result<u64> {
        match &ctx.plan.input(id)?.kind {
            StepKind::TunePoint { seed, .. } | StepKind::Audit { seed, .. } => Ok(*seed),
            _ => Err(Error::invalid(
                "plan",
                format!("{id} is neither a tuning point nor an audit"),
            )),
        }
    };
    let mut retrains: BTreeMap<u64, ModelAudit> = BTreeMap::new();
    for a in retrain_audits {
        retrains.insert(seed_of(a)?, fsutil::read_json(&ctx.path(a)?)?);
    }
    let mut results: Vec<(u64, TunePointResult)> = Vec::new();
    for p in points {
        results.push((seed_of(p)?, fsutil::read_json(&ctx.path(p)?)?));
    }
    let (table, best) = choose(t.metric, &results, &retrains)?;
    let configured = ctx
        .cfg
        .methods()?
        .into_iter()
        .find(|m| m.name() == method)
        .ok_or_else(|| Error::invalid("tune", format!("{method} is not configured")))?;
    let settings = configured
        .adjusted(&grid_rate(best.lr, best.step, t.gamma))?
        .method()
        .settings();
    let c = TuneChoice {
        method: method.to_string(),
        fraction,
        with_retain,
        metric: t.metric,
        chosen_lr: best.lr,
        chosen_step: best.step,
        gamma: t.gamma,
        settings,
        table,
    };
    fsutil::write_json(artifact, &c)?;
    Ok(written(artifact))
}

fn audit_step(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    model: &StepId,
    forget: &StepId,
) -> Result<Written> {
    let m = ctx.load_model(model)?;
    let forget = ctx.forget(forget)?;
    let a = ctx.audit_model(&m, &forget)?;
    fsutil::write_json(artifact, &a)?;
    Ok(written(artifact))
}

/// report.md/json/csv and the plots.
fn report_step(
    ctx: &StepCtx<'_>,
    artifact: &Path,
    audits: &[StepId],
    choices: &[StepId],
) -> Result<Written> {
    let r = report_of(ctx, audits, choices)?;
    let mut paths = vec![artifact.to_path_buf()];
    paths.extend(r.write(ctx.dir)?.into_iter().filter(|p| p != artifact));
    paths.extend(
        super::plots::write_plots(&r, ctx.dir)
            .map_err(|e| Error::invalid("plots", e.to_string()))?,
    );
    Ok(Written {
        paths,
        seconds: None,
    })
}

/// One result per audited evaluation model, in plan order, and the
/// libtorch thread counts their sidecars record.
fn results(ctx: &StepCtx<'_>, audits: &[StepId]) -> Result<(Vec<RunResult>, Vec<usize>)> {
    let mut out = Vec::new();
    let mut threads = Vec::new();
    for id in audits {
        let s = ctx.plan.input(id)?;
        let StepKind::Audit {
            model,
            seed,
            fraction,
            tune: false,
            ..
        } = &s.kind
        else {
            continue;
        };
        let audit: ModelAudit = fsutil::read_json(&ctx.plan.artifact(ctx.dir, s))?;
        let m = ctx.plan.input(model)?;
        let (method, with_retain, calibrated) = match &m.kind {
            StepKind::Original { .. } => ("original".to_string(), None, false),
            StepKind::Retrain { replica: 0, .. } => ("retrain".to_string(), None, false),
            StepKind::Retrain { .. } => (RETRAIN_AGAIN.to_string(), None, false),
            StepKind::Unlearn {
                method,
                with_retain,
                variant,
                ..
            } => (
                variant.label(method.name()),
                Some(*with_retain),
                *variant == Variant::Calibrated,
            ),
            _ => continue,
        };
        let sidecar = checkpoint::read_sidecar(&ctx.plan.artifact(ctx.dir, m))?;
        threads.extend(sidecar.threads);
        let calibration = if calibrated {
            calibration_of(&sidecar, &ctx.plan.artifact(ctx.dir, m))?
        } else {
            None
        };
        out.push(RunResult {
            seed: *seed,
            fraction: *fraction,
            with_retain,
            method,
            audit,
            seconds: ctx.seconds_of(model),
            image_steps: sidecar.image_steps(),
            checkpoint: m.artifact.clone(),
            calibration,
        });
    }
    Ok((out, threads))
}

/// What calibration chose for the checkpoint at `path` (its sidecar).
fn calibration_of(sidecar: &crate::model::Sidecar, path: &Path) -> Result<Option<Calibration>> {
    match &sidecar.origin {
        Origin::Unlearn {
            calibration: Some(c),
            ..
        } => serde_json::from_value(c.clone())
            .map(Some)
            .map_err(|e| Error::format(path, format!("unreadable calibration record: {e}"))),
        _ => Ok(None),
    }
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
            computed.push(s.id.to_string());
        }
    }
    Ok(computed)
}

fn report_of(
    ctx: &StepCtx<'_>,
    audits: &[StepId],
    choices: &[StepId],
) -> Result<super::report::Report> {
    let choices: Vec<TuneChoice> = choices
        .iter()
        .map(|c| fsutil::read_json(&ctx.path(c)?))
        .collect::<Result<_>>()?;
    let (results, threads) = results(ctx, audits)?;
    // The models' thread counts, not the report step's own (one CPU in a
    // Slurm job of light steps).
    let hardware = if threads.is_empty() {
        ctx.hardware.to_string()
    } else {
        crate::report::hardware_line_threads(ctx.data.train.labels.device(), &threads)
    };
    let resolved = Resolved::of(ctx.cfg, ctx.data.image_shape()[0])?;
    Ok(build_report(ctx.cfg, resolved, results, choices, hardware))
}

/// The report of the run folder (every audit must be done).
pub fn report(ctx: &StepCtx<'_>) -> Result<super::report::Report> {
    match &ctx.plan.input(&StepId::report())?.kind {
        StepKind::Report { audits, choices } => report_of(ctx, audits, choices),
        _ => Err(Error::invalid("plan", "the report step is not a report")),
    }
}
