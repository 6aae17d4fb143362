//! Experiments: one TOML file describes data, model, recipe, forget
//! fractions, seeds, methods, tuning, calibration and the audit.
//!
//! The protocol is a [`Plan`]: every step (reference models, originals,
//! forget sets, retrains, adversarial sets, tuning points, unlearning runs,
//! audits, the report) with the artifact it writes and the steps it reads.
//! [`steps::run_step`] runs one step from the artifacts in the run folder;
//! executors decide where: [`run`] runs the plan in this process, `exec`
//! on several local workers or as Slurm jobs. Every artifact carries a
//! meta of its inputs' and its own sha256, so a fresh one is never
//! recomputed and a changed one never trusted.

mod config;
pub mod exec;
pub mod placement;
mod plan;
mod plots;
mod report;
mod reuse;
pub mod steps;
pub(crate) mod store;
mod tune;

pub use config::grid_rate;
pub use config::{
    CalibrateSection, Config, ForgetSection, MethodTune, ModelName, ProgramSection, RmiaSection,
    TuneMetric, TuneSection,
};
pub use placement::SlurmSection;
pub use plan::{Plan, Resource, Status, Step, StepId, StepKind, Variant, short_hash};
pub use report::{
    Report, ReportTable, Resolved, Row, RunResult, Stat, build_report, table_markdown,
};
pub use reuse::reuse;
pub use steps::StepCtx;
pub use store::{Meta, Stamp};
pub use tune::{TuneChoice, TunePointResult, TuneRow, choose};

use crate::data::Dataset;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::progress::Progress;
use std::path::Path;

/// Claims the run folder `dir` for `cfg`: creates it and records the
/// config, or checks that the config it records is this one (a folder made
/// by another config is refused rather than mixed).
pub fn open_folder(cfg: &Config, dir: &Path) -> Result<()> {
    check_folder(cfg, dir)?;
    // An unwritable folder (read-only mount, chattr +i) in words, before
    // any step: the OS's bare "Operation not permitted" named no remedy.
    let unwritable = |e: Error| {
        Error::invalid(
            format!("run folder {}", dir.display()),
            format!(
                "cannot be written ({e}); nothing was run — make it writable (a read-only \
                 mount, file modes, or chattr +i?) or choose another --out"
            ),
        )
    };
    std::fs::create_dir_all(dir).at(dir).map_err(unwritable)?;
    let p = dir.join("experiment.json");
    if !p.exists() {
        // Signed: an edit by hand is named as one (hostile11 E12), not
        // blamed on the artifacts it no longer matches.
        fsutil::write_json_signed(&p, cfg).map_err(unwritable)?;
    }
    Ok(())
}

/// `e`, a run folder's artifacts disagreeing with the config it records,
/// said of its `experiment.json` when that record is unsigned (an older
/// amun wrote it): an edit of it by hand cannot be told, and the artifacts
/// are not to blame for it (hostile12 E12).
pub(crate) fn blame_unsigned_record(dir: &Path, e: Error) -> Error {
    let p = dir.join("experiment.json");
    let unsigned = fsutil::read_text(&p)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get(fsutil::CONTENT_KEY).is_none());
    if !unsigned {
        return e;
    }
    Error::format(
        &p,
        format!(
            "records no content hash (an older amun wrote it), so an edit of it by hand cannot \
             be told: the run folder's artifacts disagree with the config it records ({e}); if \
             it was edited, put back the experiment.json amun wrote, or run the changed config \
             from a TOML file into another folder (`amun experiment --config FILE --out DIR`)"
        ),
    )
}

/// The config a run folder records (`experiment.json`), refused when its
/// text is not what amun wrote (its `content_sha256`). A record without
/// one (written before amun signed it) is read as it is.
fn read_recorded(p: &Path) -> Result<Config> {
    let text = fsutil::read_text(p)?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(p, format!("invalid JSON: {e}")))?;
    if v.get(fsutil::CONTENT_KEY).is_some() {
        v = fsutil::parse_json_signed(
            p,
            &text,
            "run folder's record of its config",
            "put back the experiment.json amun wrote, or run the changed config from a TOML \
             file into another folder (`amun experiment --config FILE --out DIR`)",
        )?;
        if let Some(m) = v.as_object_mut() {
            m.remove(fsutil::CONTENT_KEY);
        }
    }
    serde_json::from_value(v)
        .map_err(|e| Error::format(p, format!("not an experiment's config: {e}")))
}

/// The config to run `cfg` with in the run folder `dir`: its `[train]` and
/// method tables written as the folder records them where they are the
/// same up to settings written out at their defaults, so that a folder made
/// before those were left out keeps its step ids and finished steps. A new
/// folder that reuses `reuse` takes that folder's spelling, so that the
/// steps they share have the same identities. What else differs,
/// [`check_folder`] judges.
pub fn config_for_folder(cfg: Config, dir: &Path, reuse: Option<&Path>) -> Result<Config> {
    let p = dir.join("experiment.json");
    let from = match reuse {
        Some(r) if !p.exists() => r.join("experiment.json"),
        _ => p,
    };
    if !from.is_file() {
        return Ok(cfg);
    }
    Ok(cfg.written_as(&read_recorded(&from)?))
}

/// The first setting (dotted key) whose value differs between two configs
/// as their JSON, with both values: what a run folder made by another
/// version of a config names.
fn first_difference(
    was: &serde_json::Value,
    now: &serde_json::Value,
    key: &str,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (was, now) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let sub = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                first_difference(x, y, &sub)
            })
        }
        // A value left out (JSON null) is the one amun chooses: say so,
        // not "null" (hostile13 N13/X3).
        (a, b) if a != b => {
            let said = |v: &Value| match v {
                Value::Null => "automatic (the default)".to_string(),
                v => v.to_string(),
            };
            Some((key.to_string(), said(a), said(b)))
        }
        _ => None,
    }
}

/// Checks, without creating anything, that the run folder `dir` (if it
/// exists) was made by `cfg`: what `open_folder` refuses, `--plan` and
/// `--status` refuse too.
pub fn check_folder(cfg: &Config, dir: &Path) -> Result<()> {
    let p = dir.join("experiment.json");
    if p.exists() {
        // Both without their defaults: a default written out is no change
        // (hostile11 SC6).
        let old = read_recorded(&p)?.without_defaults();
        let cfg = &cfg.clone().without_defaults();
        let pinned = |c: &Config| c.program.as_ref().and_then(|p| p.pinned.clone());
        if let (Some(was), Some(now)) = (pinned(&old), pinned(cfg))
            && was != now
        {
            // The same config over another graph or init: say which.
            let (what, a, b) = match (&was.init, &now.init) {
                (
                    crate::model::program::ProgramInit::Weights { file, sha256: a },
                    crate::model::program::ProgramInit::Weights { sha256: b, .. },
                ) if was.sha256 == now.sha256 && a != b => (file.clone(), a.clone(), b.clone()),
                _ => (now.file.clone(), was.sha256.clone(), now.sha256.clone()),
            };
            return Err(Error::format(
                &p,
                format!(
                    "this run folder's models were made from {} with sha256 {a}; that file now \
                     has sha256 {b} (changed or replaced): put the original back, or use another \
                     --out",
                    what.display()
                ),
            ));
        }
        if old != *cfg {
            let json = |c: &Config| serde_json::to_value(c).unwrap_or_default();
            let changed = match first_difference(&json(&old), &json(cfg), "") {
                Some((key, was, now)) if old.name == cfg.name => {
                    format!(" (the same name, but {key} was {was} and is now {now})")
                }
                _ => String::new(),
            };
            return Err(Error::format(
                &p,
                format!(
                    "this run folder was made by another config ('{}'){changed}; refusing to mix \
                     results — use another --out or delete the folder",
                    old.name
                ),
            ));
        }
        check_references(dir)?;
    }
    Ok(())
}

/// The run folder's reference models checked as an audit checks them
/// ([`crate::audit::check_reference_files`]) before any step is called up
/// to date: no step records their weights and sidecars, and the
/// references step would record an edited file as its own.
fn check_references(dir: &Path) -> Result<()> {
    let refs = dir.join("references");
    let mpath = refs.join("manifest.json");
    if !mpath.is_file() {
        return Ok(());
    }
    let m = crate::audit::read_manifest(&mpath)?;
    // Its messages say how to train them anew (the experiment, not `amun
    // rmia train-refs`, which writes nothing into a run folder).
    crate::audit::check_reference_files(&refs, &m).map(|_| ())
}

/// Checks the config against its data before any step runs or any folder
/// is made: every `forget.files` entry (format, dataset and slice, indices
/// in range, its share of the training set) and the test images
/// `[calibrate] holdout` keeps back.
pub fn check_data(cfg: &Config, data: &Dataset) -> Result<()> {
    // A .pt2 model is checked on the data's shape (and its init, if any,
    // against its graph) before anything trains.
    let spec = cfg.model_spec(data.image_shape(), data.num_classes())?;
    if let Some(p) = &spec.program {
        let init = match &p.init {
            crate::model::program::ProgramInit::Weights { file, .. } => Some(file.as_path()),
            crate::model::program::ProgramInit::Pytorch => None,
        };
        crate::model::import_program(
            &p.file,
            data.image_shape(),
            data.num_classes(),
            spec.normalize.clone(),
            init,
            tch::Device::Cpu,
        )?;
        crate::model::Classifier::new(&spec, tch::Device::Cpu, 0)?;
    }
    check_forget_files(cfg, data, None)?;
    check_calibrated_sets(cfg, data, None)?;
    let (holdout, n) = (cfg.heldout(), data.test.len());
    if holdout >= n && cfg.calibrate.is_some() {
        return Err(Error::invalid(
            "calibrate.holdout",
            format!(
                "{holdout} held-out test images leave none of the {n} test images of {} to audit",
                data.spec.label()
            ),
        ));
    }
    Ok(())
}

/// Every `forget.files` entry against the data (format, the data it was
/// made for — its content, a class set's class name —, indices in range,
/// its share of the training set): what `--plan` refuses before it calls a
/// step ready. `config` names the file whose `files` line the error points
/// at (the error names the forget file itself too). Returns the warnings
/// for the caller to print: a file of an older amun that nothing ties to a
/// folder's content (hostile13 X12, as `train --exclude` warns).
pub fn check_forget_files(
    cfg: &Config,
    data: &Dataset,
    config: Option<&Path>,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (&seed, f) in cfg.seeds.iter().zip(&cfg.forget.files) {
        let (_, warning) =
            steps::file_forget_set(data, Path::new(f), seed, cfg.forget.fractions[0]).map_err(
                |e| match config {
                    Some(c) => {
                        Config::error_at(c, &["forget", "files"], format!("forget.files: {e}"))
                    }
                    None => e,
                },
            )?;
        warnings.extend(warning);
    }
    Ok(warnings)
}

/// The warnings a step's inputs call for, for `--step`, which runs no
/// [`check_forget_files`]: a forget step's `forget.files` entry that an
/// older amun wrote (no content hash, hostile14 X12). A file that cannot be
/// read gives none here: the step itself says why.
pub fn step_warnings(data: &Dataset, step: &Step) -> Vec<String> {
    let StepKind::Forget { file: Some(f), .. } = &step.kind else {
        return Vec::new();
    };
    let p = Path::new(f);
    crate::data::ForgetSet::load(p, data)
        .ok()
        .and_then(|set| set.unsealed_warning(data, p))
        .into_iter()
        .collect()
}

/// With `[calibrate]`, every evaluation forget set against the rule the
/// calibrated unlearning applies ([`crate::unlearn::class_mostly_forgotten`]),
/// before any model is trained for it (hostile8 EXM2, K6b: it failed after
/// all the training): a file's set as read, a fraction's as its step will
/// draw it (same seed, same bits). `config` names the file whose line the
/// error points at.
pub fn check_calibrated_sets(cfg: &Config, data: &Dataset, config: Option<&Path>) -> Result<()> {
    if cfg.calibrate.is_none() {
        return Ok(());
    }
    let labels = data.train.label_vec();
    for (si, &seed) in cfg.seeds.iter().enumerate() {
        let file = cfg.forget.files.get(si).map(String::as_str);
        for &fraction in &cfg.forget.fractions {
            // A file's own faults, named after the config as check_data does.
            let set =
                steps::eval_forget_set(data, seed, fraction, file).map_err(|e| match config {
                    Some(p) => Error::format(p, e.to_string()),
                    None => e,
                })?;
            let found = crate::unlearn::class_mostly_forgotten(
                &labels,
                data.num_classes(),
                &[],
                &set.indices,
            );
            let Some((c, new, old, n)) = found else {
                continue;
            };
            let held = crate::unlearn::class_share_words(c, new, old, n);
            let (key, what) = match file {
                Some(f) => ("files", format!("{f} (seed {seed}): {held}")),
                None => (
                    "fractions",
                    format!("{fraction} with seed {seed} (its random draw): {held}"),
                ),
            };
            let msg = format!(
                "{what}: a retrain without them scores far below the held-out accuracy that \
                 [calibrate] aims at, so the calibrated unlearning would refuse it; forget \
                 fewer of the class, or drop [calibrate]"
            );
            return Err(match config {
                Some(p) => Config::error_at(p, &["forget", key], format!("forget.{key}: {msg}")),
                None => Error::invalid(format!("forget.{key}"), msg),
            });
        }
    }
    Ok(())
}

/// Checks, reading only, that the run folder `dir` (if it holds reference
/// models) can go on with this data: a folder whose references were made
/// on other data (a class folder renamed since) is refused before any step
/// recomputes or forgets anything.
pub fn check_run_data(cfg: &Config, data: &Dataset, dir: &Path) -> Result<()> {
    let plan = Plan::build(cfg)?;
    steps::check_references(&StepCtx {
        cfg,
        plan: &plan,
        dir,
        data,
        progress: &crate::progress::Quiet,
        hardware: "",
    })
}

/// The config a run folder was made by (`experiment.json`).
pub fn folder_config(dir: &Path) -> Result<Config> {
    let p = dir.join("experiment.json");
    if !p.exists() {
        return Err(Error::format(
            &p,
            "missing: not a run folder (run `amun experiment --config FILE --out DIR` first)",
        ));
    }
    read_recorded(&p)
}

/// What a run did.
pub struct RunOutcome {
    pub report: Report,
    /// The steps computed by this call (the others were up to date).
    pub computed: Vec<String>,
}

/// Runs (or resumes) the experiment `cfg` on `data` (already on the
/// configured device) in `dir`, one step after the other in this process,
/// and writes report.md/json/csv and plots.
pub fn run(
    cfg: &Config,
    data: &Dataset,
    dir: &Path,
    hardware: String,
    progress: &dyn Progress,
) -> Result<RunOutcome> {
    check_data(cfg, data)?;
    open_folder(cfg, dir)?;
    let plan = Plan::build(cfg)?;
    let ctx = StepCtx {
        cfg,
        plan: &plan,
        dir,
        data,
        progress,
        hardware: &hardware,
    };
    let computed = steps::run_all(&ctx)?;
    Ok(RunOutcome {
        report: steps::report(&ctx)?,
        computed,
    })
}
