//! Training from scratch: the recipe, the SGD loop, checkpoints every epoch
//! and an exact resume.

mod fit;
mod recipe;
mod sgd;

pub use fit::{EpochConfig, EpochStats, cross_entropy, sgd_epoch};
pub use recipe::{Recipe, RetainBudget, Schedule, TrainOverrides, TrainParams};
pub use sgd::Sgd;

use crate::data::{Augment, Dataset, ForgetSet, Part, TrainSet};
use crate::error::{Error, Result};
use crate::eval;
use crate::model::checkpoint::{self, EpochRecord, ForgetSummary, Origin, Resume, Sidecar};
use crate::model::{Classifier, ModelSpec};
use crate::progress::Progress;
use crate::seed::derive;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor};

/// A training run: what to train, on what, and where to keep it.
pub struct TrainJob<'a> {
    pub spec: ModelSpec,
    /// The data, already on the training device.
    pub data: &'a Dataset,
    pub recipe: Recipe,
    pub seed: u64,
    /// Which samples to train on.
    pub subset: Subset<'a>,
    /// Where to write the checkpoint (every epoch); `None` keeps it in memory.
    pub out: Option<&'a Path>,
    /// Continue from the resume state beside `out` if there is one.
    pub resume: bool,
    /// Measure test accuracy after every epoch (else only at the end).
    pub eval_each_epoch: bool,
}

/// The result of a run.
pub struct Trained {
    pub model: Classifier,
    pub sidecar: Sidecar,
    /// Epochs run by this call (0 when resuming a finished run).
    pub epochs_run: usize,
}

/// The samples a run trains on.
#[derive(Debug, Clone, Copy)]
pub enum Subset<'a> {
    /// The whole training split.
    All,
    /// The training split without a forget set (retraining = exact unlearning).
    Exclude(&'a ForgetSet),
    /// Rows of the pool: the training split followed by the test split (a
    /// membership-inference reference model trains on half of it).
    Pool(&'a [i64]),
}

impl Subset<'_> {
    fn summary(&self, data: &Dataset) -> Option<ForgetSummary> {
        match self {
            Subset::All => None,
            Subset::Exclude(f) => Some(ForgetSummary::of(f)),
            Subset::Pool(idx) => Some(ForgetSummary::of(&ForgetSet::of_indices(
                format!("{}+test", data.spec.label()),
                data.train.len() + data.test.len(),
                checkpoint::POOL_MEMBERS,
                idx.to_vec(),
            ))),
        }
    }
}

/// `model.safetensors` → `model.resume.safetensors`: weights, momentum,
/// epoch and history in one file, so one rename commits a resume point.
pub fn resume_path(out: &Path) -> PathBuf {
    out.with_extension("resume.safetensors")
}

/// The samples a job trains on.
pub fn train_set(data: &Dataset, subset: Subset<'_>, augment: bool) -> TrainSet {
    let part = match subset {
        Subset::All => Part::whole("train", &data.train, augment),
        Subset::Exclude(f) => {
            Part::from_indices("retain", &data.train, &f.retain_indices(), augment)
        }
        Subset::Pool(idx) => Part::from_indices("pool", &data.pool(), idx, augment),
    };
    TrainSet::single(part, Augment::CROP_FLIP)
}

/// What identifies a run for resuming, part by part: model, recipe, seed,
/// data, exclusions.
fn fingerprint_parts(job: &TrainJob<'_>) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::to_value;
    let mut parts = vec![
        ("model", to_value(&job.spec).unwrap_or_default()),
        ("recipe", to_value(&job.recipe).unwrap_or_default()),
        ("seed", to_value(job.seed).unwrap_or_default()),
        ("data", to_value(&job.data.spec).unwrap_or_default()),
        (
            "subset",
            to_value(job.subset.summary(job.data)).unwrap_or_default(),
        ),
    ];
    // A user's folder can change under its name: its content and classes
    // are part of the run (registry datasets are pinned by their sha256).
    if let Some(c) = job.data.content() {
        parts.push((
            "data content",
            serde_json::json!({ "classes": job.data.classes, "sha256": c }),
        ));
    }
    parts
}

/// The same parts, as a finished run's sidecar records them.
fn sidecar_parts(sc: &Sidecar) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::{Value, to_value};
    let (recipe, subset) = match &sc.origin {
        Origin::Train { recipe, subset, .. } => {
            (recipe.clone(), to_value(subset).unwrap_or_default())
        }
        _ => (Value::Null, Value::Null),
    };
    let mut parts = vec![
        ("model", to_value(&sc.model).unwrap_or_default()),
        ("recipe", recipe),
        ("seed", to_value(sc.seed).unwrap_or_default()),
        ("data", to_value(&sc.data).unwrap_or_default()),
        ("subset", subset),
    ];
    // Compared only where both record it (older sidecars do not).
    if let Some(c) = &sc.data_sha256 {
        parts.push((
            "data content",
            serde_json::json!({ "classes": sc.classes, "sha256": c }),
        ));
    }
    parts
}

fn fingerprint(job: &TrainJob<'_>) -> String {
    serde_json::Value::Object(
        fingerprint_parts(job)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
    .to_string()
}

/// The recipe a trained model's sidecar records (`None` for a model that
/// was not trained by amun: imported or unlearned).
pub fn recipe_of(sc: &Sidecar) -> Result<Option<Recipe>> {
    match &sc.origin {
        Origin::Train { recipe, .. } => serde_json::from_value(recipe.clone())
            .map(Some)
            .map_err(|e| Error::invalid("sidecar recipe", format!("unreadable recipe: {e}"))),
        _ => Ok(None),
    }
}

/// Lays `model` out in the memory format `recipe` trains in (channels-last
/// when it says so). A model read from disk is not, and the two layouts run
/// different convolution kernels: every run that continues from a trained
/// model lays it out so, to get the bits training would.
pub fn lay_out(model: &mut Classifier, recipe: &Recipe) -> Result<()> {
    if recipe.channels_last {
        model.use_channels_last()?;
    }
    Ok(())
}

/// [`lay_out`] by the recipe `sc` records (nothing for a model amun did not
/// train); returns that recipe.
pub fn lay_out_as_trained(model: &mut Classifier, sc: &Sidecar) -> Result<Option<Recipe>> {
    let recipe = recipe_of(sc)?;
    if let Some(r) = &recipe {
        lay_out(model, r)?;
    }
    Ok(recipe)
}

fn bytes_tensor(s: &str) -> Tensor {
    Tensor::from_slice(s.as_bytes())
}

fn tensor_string(t: &Tensor) -> String {
    let v = Vec::<u8>::try_from(t.to_kind(Kind::Uint8)).unwrap_or_default();
    String::from_utf8_lossy(&v).into_owned()
}

/// Trains a model as `job` says, writing a checkpoint after every epoch
/// when `job.out` is set. With `job.resume`, continues exactly where a
/// killed run of the same job stopped (same final weights as an
/// uninterrupted run on the CPU).
pub fn train(job: &TrainJob<'_>, progress: &dyn Progress) -> Result<Trained> {
    let recipe = &job.recipe;
    let device = job.data.train.images.device();
    if let Some(out) = job.out {
        crate::fsutil::check_output(out, &["safetensors"])?;
    }
    if let Subset::Exclude(f) = job.subset {
        f.check_matches(job.data, Path::new("exclude"))?;
    }
    let mut model = Classifier::new(&job.spec, device, derive(job.seed, "init", 0))?;
    lay_out(&mut model, recipe)?;
    let mut opt = Sgd::new(
        &model,
        recipe.momentum,
        recipe.weight_decay,
        recipe.nesterov,
    );
    let fp = fingerprint(job);
    let threads = tch::get_num_threads().max(1) as usize;
    let start = if job.resume {
        match resume(job, &fp, threads, &mut model, &mut opt, progress)? {
            Resumed::From(start) => start,
            Resumed::Finished(trained) => return Ok(*trained),
        }
    } else {
        StartPoint::default()
    };

    let set = train_set(job.data, job.subset, recipe.augment);
    if set.is_empty() {
        return Err(Error::invalid("exclude", "leaves no sample to train on"));
    }
    let mut sidecar = new_sidecar(job, &start);
    let StartPoint {
        epoch: start_epoch,
        wall_before,
        mut history,
        resumes,
    } = start;
    let started = Instant::now();
    for epoch in start_epoch..recipe.epochs {
        let stats = train_epoch(job, &model, &mut opt, &set, epoch, progress)?;
        let last = epoch + 1 == recipe.epochs;
        let test_acc = (job.eval_each_epoch || last)
            .then(|| eval::accuracy(&model, &job.data.test).percent())
            .filter(|a| a.is_finite());
        history.push(epoch_record(epoch, &stats, test_acc));
        if let Some(t) = test_acc {
            progress.note(&format!("epoch {}: test accuracy {t:.2}%", epoch + 1));
        }
        let wall = wall_before + started.elapsed().as_secs_f64();
        record_progress(&mut sidecar, epoch + 1, wall, &history);
        if let Some(out) = job.out {
            let state = ResumeMeta {
                epoch: epoch + 1,
                wall,
                history: &history,
                fingerprint: &fp,
                threads,
                resumes: &resumes,
            };
            let resume_state = (!last).then_some(&state);
            save_epoch(
                out,
                &model,
                &opt,
                &mut sidecar,
                &stats,
                test_acc,
                resume_state,
            )?;
        }
    }
    if let Some(t) = history.last().and_then(|h| h.test_acc) {
        sidecar.metrics.insert("test_acc".into(), t);
    }
    Ok(Trained {
        model,
        sidecar,
        epochs_run: recipe.epochs - start_epoch,
    })
}

/// Where a run starts: its first epoch and what the epochs before it left
/// (all empty for a run from scratch).
#[derive(Default)]
struct StartPoint {
    epoch: usize,
    wall_before: f64,
    history: Vec<EpochRecord>,
    resumes: Vec<Resume>,
}

/// What `--resume` finds beside the output.
enum Resumed {
    /// Train on from here.
    From(StartPoint),
    /// A finished run of the same settings: its result, nothing to train.
    Finished(Box<Trained>),
}

/// `--resume`: the point where a killed run of this job stopped (its
/// weights and momentum loaded into `model` and `opt`), a finished run's
/// result, or epoch 0 when the output holds neither.
fn resume(
    job: &TrainJob<'_>,
    fp: &str,
    threads: usize,
    model: &mut Classifier,
    opt: &mut Sgd,
    progress: &dyn Progress,
) -> Result<Resumed> {
    let out = job
        .out
        .ok_or_else(|| Error::invalid("resume", "needs --out, the checkpoint to resume"))?;
    let rp = resume_path(out);
    let device = job.data.train.images.device();
    if rp.exists() {
        read_resume_state(&rp, device, fp, threads, model, opt, progress).map(Resumed::From)
    } else if out.exists() {
        finished_run(job, out, &rp, progress).map(|t| Resumed::Finished(Box::new(t)))
    } else {
        Ok(Resumed::From(StartPoint::default()))
    }
}

/// Reads the resume state `rp` of the run `fp` identifies into `model` and
/// `opt`; warns when it ran with another thread count (its bits differ).
fn read_resume_state(
    rp: &Path,
    device: tch::Device,
    fp: &str,
    threads: usize,
    model: &mut Classifier,
    opt: &mut Sgd,
    progress: &dyn Progress,
) -> Result<StartPoint> {
    let mut t = checkpoint::read_tensors(rp, device)?;
    check_resume_sha256(rp, &mut t)?;
    let meta = t
        .remove("meta.fingerprint")
        .map(|x| tensor_string(&x))
        .unwrap_or_default();
    if meta != fp {
        return Err(Error::checkpoint(
            rp,
            format!(
                "resume state of a different run (model, recipe, seed, data or --exclude \
                 differ); rerun with the same settings, or {}",
                start_over(rp)
            ),
        ));
    }
    let epoch = t
        .remove("meta.epoch")
        .map(|x| x.int64_value(&[]))
        .unwrap_or(0) as usize;
    let wall_before = t
        .remove("meta.wall_s")
        .map(|x| x.double_value(&[]))
        .unwrap_or(0.0);
    let history = t
        .remove("meta.history")
        .map(|x| serde_json::from_str(&tensor_string(&x)).unwrap_or_default())
        .unwrap_or_default();
    let mut resumes: Vec<Resume> = t
        .remove("meta.resumes")
        .map(|x| serde_json::from_str(&tensor_string(&x)).unwrap_or_default())
        .unwrap_or_default();
    let before = t
        .remove("meta.threads")
        .map(|x| x.int64_value(&[]) as usize);
    if let Some(b) = before
        && b != threads
    {
        progress.note(&format!(
            "warning: resuming with {threads} libtorch thread(s) a run whose first \
             {epoch} epoch(s) ran with {b}: CPU results are bit-identical only for \
             one thread count (recorded in the sidecar's origin.resumes)"
        ));
    }
    resumes.push(Resume {
        epoch: epoch + 1,
        threads,
        threads_before: before,
    });
    let (weights, momentum) = split_state(t);
    model.load_named(weights, rp)?;
    opt.load_state(&momentum)?;
    progress.note(&format!(
        "resuming at epoch {} from {}",
        epoch + 1,
        rp.display()
    ));
    Ok(StartPoint {
        epoch,
        wall_before,
        history,
        resumes,
    })
}

/// A resume state's tensors by kind: the model's weights and the
/// optimizer's momentum, each by its own name.
fn split_state(t: HashMap<String, Tensor>) -> (HashMap<String, Tensor>, HashMap<String, Tensor>) {
    let mut weights = HashMap::new();
    let mut momentum = HashMap::new();
    for (k, v) in t {
        if let Some(n) = k.strip_prefix("model.") {
            weights.insert(n.to_string(), v);
        } else if let Some(n) = k.strip_prefix("momentum.") {
            momentum.insert(n.to_string(), v);
        }
    }
    (weights, momentum)
}

/// A finished run leaves no resume state: hands back its result, but only
/// when it is a run of exactly these settings.
fn finished_run(
    job: &TrainJob<'_>,
    out: &Path,
    rp: &Path,
    progress: &dyn Progress,
) -> Result<Trained> {
    let sc = checkpoint::read_sidecar(out)?;
    let differ: Vec<&str> = fingerprint_parts(job)
        .iter()
        .zip(sidecar_parts(&sc))
        .filter(|((_, a), (_, b))| *a != *b)
        .map(|((k, _), _)| *k)
        .collect();
    if !differ.is_empty() {
        return Err(Error::checkpoint(
            out,
            format!(
                "is a finished run of other settings ({} differ{}); --resume only \
                 continues or returns a run of the same settings: choose another --out, \
                 or delete it to train anew",
                differ.join(", "),
                if differ.len() == 1 { "s" } else { "" }
            ),
        ));
    }
    if let Some((done, total)) = sc.incomplete() {
        return Err(Error::checkpoint(
            out,
            format!(
                "holds epoch {done} of {total} but its resume state {} is gone; \
                 train again without --resume",
                rp.display()
            ),
        ));
    }
    let (m, sc) = checkpoint::load(out, job.data.train.images.device())?;
    progress.note(&format!("{} is complete; nothing to resume", out.display()));
    Ok(Trained {
        model: m,
        sidecar: sc,
        epochs_run: 0,
    })
}

/// The sidecar of a run from `start`: what it trains, and how far it got.
fn new_sidecar(job: &TrainJob<'_>, start: &StartPoint) -> Sidecar {
    let mut sidecar = Sidecar::new(
        &job.spec,
        &job.data.spec,
        &job.data.classes,
        job.seed,
        Origin::Train {
            recipe: serde_json::to_value(&job.recipe).unwrap_or_default(),
            subset: job.subset.summary(job.data),
            epochs_done: start.epoch,
            wall_s: start.wall_before,
            resumes: start.resumes.clone(),
        },
    );
    sidecar.data_sha256 = job.data.content().cloned();
    sidecar
}

/// One epoch of SGD over `set`. A divergence, of the loss or of the
/// weights (the loss can stay finite while BatchNorm statistics
/// overflow), says what the run left on disk.
fn train_epoch(
    job: &TrainJob<'_>,
    model: &Classifier,
    opt: &mut Sgd,
    set: &TrainSet,
    epoch: usize,
    progress: &dyn Progress,
) -> Result<EpochStats> {
    let recipe = &job.recipe;
    let iters = set.batches_per_epoch(recipe.batch_size);
    let lr = |i: usize| {
        recipe
            .schedule
            .lr(recipe.lr, epoch, i, iters, recipe.epochs)
    };
    let cfg = EpochConfig {
        label: "train",
        epoch,
        batch_size: recipe.batch_size,
        seed: derive(job.seed, "epoch", epoch as u64),
        bf16: recipe.bf16,
        lr: &lr,
        observe: None,
    };
    let stats = sgd_epoch(
        model,
        opt,
        set,
        &cfg,
        &mut |_, logits, b| cross_entropy(logits, &b.y),
        progress,
    )
    .map_err(|e| match e {
        Error::Diverged {
            what,
            epoch: at,
            cause,
            ..
        } => Error::Diverged {
            what,
            epoch: at,
            cause,
            left: left_on_disk(job, epoch),
        },
        e => e,
    })?;
    let bad = model.non_finite();
    if !bad.is_empty() {
        return Err(Error::Diverged {
            what: "train".into(),
            epoch: epoch + 1,
            cause: format!("{} became NaN or Inf", bad.join(", ")),
            left: left_on_disk(job, epoch),
        });
    }
    Ok(stats)
}

/// What a run that diverged in `epoch` leaves on disk: the previous
/// epoch's checkpoint and resume state, which would diverge again.
fn left_on_disk(job: &TrainJob<'_>, epoch: usize) -> String {
    match job.out {
        Some(out) if epoch > 0 => format!(
            "left on disk: {} (epoch {epoch} of {}, finite but incomplete) and its resume \
             state {}; resuming would diverge again — train anew with other settings \
             (e.g. a lower --lr)",
            out.display(),
            job.recipe.epochs,
            resume_path(out).display()
        ),
        _ => "nothing was written".into(),
    }
}

/// The history's record of `epoch` (0-based).
fn epoch_record(epoch: usize, stats: &EpochStats, test_acc: Option<f64>) -> EpochRecord {
    EpochRecord {
        epoch: epoch + 1,
        loss: stats.loss,
        train_acc: stats.acc,
        test_acc,
        lr: stats.lr,
        seconds: stats.seconds,
        images_per_s: stats.images as f64 / stats.seconds.max(1e-9),
        images: stats.images,
    }
}

/// Records in the sidecar how far the run got.
fn record_progress(sidecar: &mut Sidecar, done: usize, wall: f64, history: &[EpochRecord]) {
    if let Origin::Train {
        epochs_done,
        wall_s,
        ..
    } = &mut sidecar.origin
    {
        *epochs_done = done;
        *wall_s = wall;
    }
    sidecar.history = history.to_vec();
}

/// Writes an epoch's checkpoint, then its resume state; the last epoch
/// (`resume` is `None`) removes the resume state instead.
fn save_epoch(
    out: &Path,
    model: &Classifier,
    opt: &Sgd,
    sidecar: &mut Sidecar,
    stats: &EpochStats,
    test_acc: Option<f64>,
    resume: Option<&ResumeMeta<'_>>,
) -> Result<()> {
    if let Some(t) = test_acc {
        sidecar.metrics.insert("test_acc".into(), t);
    }
    sidecar
        .metrics
        .insert("train_acc_running".into(), stats.acc);
    checkpoint::save(model, out, sidecar)?;
    match resume {
        Some(state) => write_resume(out, model, opt, state),
        None => {
            let _ = std::fs::remove_file(resume_path(out));
            Ok(())
        }
    }
}

/// What a resume state records besides weights and momentum.
struct ResumeMeta<'a> {
    epoch: usize,
    wall: f64,
    history: &'a [EpochRecord],
    fingerprint: &'a str,
    threads: usize,
    resumes: &'a [Resume],
}

fn write_resume(out: &Path, model: &Classifier, opt: &Sgd, m: &ResumeMeta<'_>) -> Result<()> {
    let ResumeMeta {
        epoch,
        wall,
        history,
        fingerprint: fp,
        threads,
        resumes,
    } = *m;
    let mut t: Vec<(String, Tensor)> = model
        .named_tensors()
        .into_iter()
        .map(|(k, v)| (format!("model.{k}"), v))
        .collect();
    t.extend(
        opt.state()
            .into_iter()
            .map(|(k, v)| (format!("momentum.{k}"), v)),
    );
    t.push(("meta.epoch".into(), Tensor::from(epoch as i64)));
    t.push(("meta.wall_s".into(), Tensor::from(wall)));
    t.push((
        "meta.history".into(),
        bytes_tensor(&serde_json::to_string(history).unwrap_or_default()),
    ));
    t.push(("meta.fingerprint".into(), bytes_tensor(fp)));
    t.push(("meta.threads".into(), Tensor::from(threads as i64)));
    t.push((
        "meta.resumes".into(),
        bytes_tensor(&serde_json::to_string(resumes).unwrap_or_default()),
    ));
    let sha = state_sha256(t.iter().map(|(k, v)| (k, v)));
    t.push((RESUME_SHA256.into(), bytes_tensor(&sha)));
    checkpoint::write_tensors(&resume_path(out), &t)
}

/// The resume state's record of its own content's sha256 ([`state_sha256`]).
const RESUME_SHA256: &str = "meta.sha256";

/// sha256 over named tensors in name order: names, then kinds, shapes and
/// bytes.
fn state_sha256<'a>(tensors: impl Iterator<Item = (&'a String, &'a Tensor)>) -> String {
    use sha2::{Digest, Sha256};
    let mut v: Vec<(&String, &Tensor)> = tensors.collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (k, _) in &v {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    let t: Vec<&Tensor> = v.iter().map(|(_, t)| *t).collect();
    h.update(crate::data::tensors_sha256(&t).as_bytes());
    format!("{:x}", h.finalize())
}

/// Refuses a resume state whose tensors are not the ones amun wrote (a
/// flipped bit would continue the run from other weights, silently), or
/// that records no sha256 of them; takes the record out of `t`.
fn check_resume_sha256(rp: &Path, t: &mut HashMap<String, Tensor>) -> Result<()> {
    let want = t.remove(RESUME_SHA256).map(|x| tensor_string(&x));
    let got = state_sha256(t.iter());
    let why = match want {
        Some(w) if w == got => return Ok(()),
        Some(w) => format!(
            "changed since amun wrote it: its content's sha256 is {got}, it records {w} (a \
             damaged disk, or an edit?)"
        ),
        None => "records no sha256 of its content (an older amun wrote it, or it was edited), \
                 so a changed bit could not be told"
            .into(),
    };
    Err(Error::checkpoint(
        rp,
        format!(
            "{why}; resuming from it would continue from other weights — {}",
            start_over(rp)
        ),
    ))
}

/// How a run whose resume state `rp` cannot be used starts over: by
/// deleting that file (with its checkpoint, which it would continue), what
/// works for every command that resumes (`amun train --resume`, `amun rmia
/// train-refs`, an experiment's steps); `amun train` also starts over
/// without --resume.
fn start_over(rp: &Path) -> String {
    let name = rp
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let out = name.strip_suffix(".resume.safetensors").map_or_else(
        || "its checkpoint".to_string(),
        |stem| {
            rp.with_file_name(format!("{stem}.safetensors"))
                .display()
                .to_string()
        },
    );
    format!(
        "delete {} and {out} to start the run over from its first epoch (with `amun train`, \
         running without --resume does the same)",
        rp.display()
    )
}

/// Evaluates the final model on train and test and records it.
pub fn record_final_metrics(model: &Classifier, data: &Dataset, sidecar: &mut Sidecar) {
    let train = eval::accuracy(model, &data.train).percent();
    let test = eval::accuracy(model, &data.test).percent();
    sidecar.metrics.remove("train_acc_running");
    sidecar.metrics.insert("train_acc".into(), train);
    if test.is_finite() {
        sidecar.metrics.insert("test_acc".into(), test);
    }
}
