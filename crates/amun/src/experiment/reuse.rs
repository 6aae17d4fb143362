//! Reusing another run folder's artifacts. A variant of an experiment
//! (another method setting, calibration rule or fraction) shares most of
//! its steps with the run it varies — originals, forget sets, retrains,
//! reference models — and each step's record says exactly what it was made
//! from. A step is taken from the other folder only when its record there
//! holds for the inputs it would have here and every file it consists of
//! still hashes to what was recorded; its files are copied (never linked:
//! a later step here must not be able to change the other run).
use super::plan::{Plan, Step, StepKind};
use super::store::{self, Meta};
use crate::data::sha256_file;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// The steps of `plan` that run folder `from` holds up to date for the
/// inputs they would have in `dir`, in plan order. With `copy`, each one's
/// files are copied into `dir` as it is found, so that later steps' inputs
/// read the copies; without, nothing is written (what `--plan` shows).
/// A step whose artifact or any of whose files already exists in `dir` is
/// left alone: reuse fills gaps, it never replaces.
pub fn reuse(plan: &Plan, from: &Path, dir: &Path, copy: bool) -> Result<Vec<String>> {
    check_source(from, dir)?;
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for step in &plan.steps {
        let here = plan.artifact(dir, step);
        if here.exists() || store::meta_path(&here).exists() {
            continue;
        }
        let there = plan.artifact(from, step);
        let Some(inputs) = plan.inputs_with(step, |dep| {
            let p = plan.artifact(dir, dep);
            if p.exists() {
                Some(p)
            } else if taken.contains(dep.id.as_str()) {
                Some(plan.artifact(from, dep))
            } else {
                None
            }
        }) else {
            continue;
        };
        let Some(meta) = store::fresh(&there, &inputs) else {
            continue;
        };
        let files = files_of(step, &meta);
        if !intact(&there, &meta)? || files.iter().any(|f| sibling(&here, f).exists()) {
            continue;
        }
        if copy {
            copy_step(&there, &here, &files, &meta)?;
        }
        taken.insert(step.id.to_string());
    }
    Ok(plan
        .steps
        .iter()
        .filter(|s| taken.contains(s.id.as_str()))
        .map(|s| s.id.to_string())
        .collect())
}

/// `from` must be another experiment's run folder whose reference models
/// are as their manifest records.
fn check_source(from: &Path, dir: &Path) -> Result<()> {
    if !from.join("experiment.json").is_file() {
        return Err(Error::format(
            from,
            "not a run folder (it has no experiment.json): name a folder `amun experiment` made",
        ));
    }
    let same = match (from.canonicalize(), dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::format(
            from,
            "is the run folder itself: name another experiment's run folder to reuse",
        ));
    }
    super::check_references(from)
}

/// Every file of a step's record, and for a reference model the weights
/// and sidecar its logits were computed from (the manifest records them,
/// the step's record does not).
fn files_of(step: &Step, meta: &Meta) -> Vec<String> {
    let mut files: Vec<String> = meta.outputs.keys().cloned().collect();
    if let StepKind::Reference { index } = step.kind {
        files.extend(crate::audit::rmia::model_names(index));
    }
    files
}

/// Whether every recorded file of `artifact` hashes to its record (the
/// freshness check takes large files on size and mtime).
fn intact(artifact: &Path, meta: &Meta) -> Result<bool> {
    for (name, st) in &meta.outputs {
        if sha256_file(&sibling(artifact, name))? != st.sha256 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `name` in the folder of `artifact`.
fn sibling(artifact: &Path, name: &str) -> PathBuf {
    artifact
        .parent()
        .map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

/// Copies a step's files (each through a temporary name), gives the
/// recorded ones their recorded modification time (their content was just
/// hashed, so the status's size-and-mtime path stays true), and writes the
/// record last: a copy cut short leaves no record, and the step runs here.
fn copy_step(there: &Path, here: &Path, files: &[String], meta: &Meta) -> Result<()> {
    for name in files {
        let (src, dest) = (sibling(there, name), sibling(here, name));
        let tmp = fsutil::TempPath::beside(&dest)?;
        std::fs::copy(&src, tmp.path()).at(&src)?;
        if let Some(st) = meta.outputs.get(name) {
            let t = UNIX_EPOCH + Duration::from_nanos(st.mtime_ns as u64);
            std::fs::File::options()
                .write(true)
                .open(tmp.path())
                .and_then(|f| f.set_modified(t))
                .at(&dest)?;
        }
        tmp.commit()?;
    }
    fsutil::write_json(&store::meta_path(here), meta)
}
