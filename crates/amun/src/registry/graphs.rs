//! The files an exported model's versions need besides their weights (the
//! `.pt2` graph, and the initial weights a retrain starts from), copied
//! into the registry as `graphs/<sha256>.<ext>` when it is made: versions
//! open from those copies, verify hashes them, and the folder stays
//! movable to another machine. A sidecar keeps the path it recorded (its
//! hash is part of the version); the copy is found by the sha256 it names.
use super::Registry;
use super::samples::short;
use crate::error::{IoContext, Result};
use crate::model::ModelSpec;
use crate::model::program::ProgramInit;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The folder of the copies in a registry.
pub const DIR: &str = "graphs";

/// What `spec` needs besides its weights: (sha256, the file it recorded).
fn needs(spec: &ModelSpec) -> Vec<(String, PathBuf)> {
    let Some(p) = &spec.program else {
        return Vec::new();
    };
    let mut v = vec![(p.sha256.clone(), p.file.clone())];
    if let ProgramInit::Weights { file, sha256 } = &p.init {
        v.push((sha256.clone(), file.clone()));
    }
    v
}

/// The registry's copy of `file` (whose content has `sha256`), relative to
/// the registry folder.
fn copy_name(sha256: &str, file: &Path) -> PathBuf {
    let ext = file
        .extension()
        .map_or("bin".into(), |e| e.to_string_lossy().into_owned());
    Path::new(DIR).join(format!("{sha256}.{ext}"))
}

/// Copies what `spec` needs into the registry folder `dir`, each checked
/// against its sha256 first; a copy already there stays (verify hashes
/// it), a source that is gone or changed is left to the load that needs
/// it, which names it. Returns the copies made.
pub(crate) fn copy_in(dir: &Path, spec: &ModelSpec) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for (sha, file) in needs(spec) {
        let dest = dir.join(copy_name(&sha, &file));
        if dest.exists() || !file.is_file() || crate::data::sha256_file(&file)? != sha {
            continue;
        }
        let tmp = crate::fsutil::TempPath::beside(&dest)?;
        std::fs::copy(&file, tmp.path()).at(&file)?;
        std::fs::File::open(tmp.path())
            .and_then(|f| f.sync_all())
            .at(tmp.path())?;
        tmp.commit()?;
        made.push(dest);
    }
    Ok(made)
}

/// Points `spec` at the registry's copies (those it holds).
pub(crate) fn relocate(dir: &Path, spec: &mut ModelSpec) {
    let Some(p) = &mut spec.program else { return };
    let copy = dir.join(copy_name(&p.sha256, &p.file));
    if copy.is_file() {
        p.file = std::path::absolute(&copy).unwrap_or(copy);
    }
    if let ProgramInit::Weights { file, sha256 } = &mut p.init {
        let copy = dir.join(copy_name(sha256, file));
        if copy.is_file() {
            *file = std::path::absolute(&copy).unwrap_or(copy);
        }
    }
}

/// Copies into the registry what its versions need and it lacks (a
/// registry made before it kept copies), from where their sidecars say.
pub(crate) fn copy_missing(reg: &Registry) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for v in reg.versions()? {
        if let Ok(sc) = crate::model::checkpoint::read_sidecar(&reg.dir.join(&v.weights)) {
            made.extend(copy_in(&reg.dir, &sc.model)?);
        }
    }
    Ok(made)
}

/// Each version's graph (and initial weights) against the registry's copy:
/// a copy that is missing or whose sha256 differs is named.
pub(crate) fn check(
    reg: &Registry,
    versions: &[super::VersionRow],
    find: &mut impl FnMut(String, String),
    notes: &mut Vec<String>,
    nfiles: &mut usize,
) -> Result<()> {
    // Each copy once: (the versions that need it, the original's path).
    let mut wanted: BTreeMap<(String, PathBuf), (Vec<i64>, PathBuf)> = BTreeMap::new();
    for v in versions {
        let Ok(sc) = crate::model::checkpoint::read_sidecar(&reg.dir.join(&v.weights)) else {
            continue; // a missing or changed sidecar is named with its version
        };
        for (sha, file) in needs(&sc.model) {
            let e = wanted
                .entry((sha.clone(), copy_name(&sha, &file)))
                .or_insert_with(|| (Vec::new(), file.clone()));
            e.0.push(v.id);
        }
    }
    for ((sha, name), (ids, original)) in wanted {
        let who = format!(
            "version(s) {}",
            ids.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let copy = reg.dir.join(&name);
        let shown = name.display().to_string();
        if copy.exists() {
            *nfiles += 1;
            let got = crate::data::sha256_file(&copy)?;
            if got != sha {
                find(
                    shown,
                    format!(
                        "was replaced or changed: sha256 {}, {who} need the file with sha256 {}",
                        short(&got),
                        short(&sha)
                    ),
                );
            }
            continue;
        }
        let original_ok = original.is_file() && crate::data::sha256_file(&original)? == sha;
        if original_ok {
            notes.push(format!(
                "the registry holds no copy of {} ({who} need it; made before registries kept \
                 one): the next apply or retrain copies it to {shown}",
                original.display()
            ));
        } else {
            find(
                shown,
                format!(
                    "is missing: {who} need the file with sha256 {}, and {} (where it came \
                     from) is {}",
                    short(&sha),
                    original.display(),
                    if original.exists() {
                        "another file now"
                    } else {
                        "gone"
                    }
                ),
            );
        }
    }
    Ok(())
}
