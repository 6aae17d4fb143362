//! The run folder as an artifact store. Every artifact has a
//! `<artifact>.meta.json` recording the sha256 of the inputs it was made
//! from, the seconds it took, and a stamp (sha256, size, mtime) of each file
//! it consists of. An artifact is trusted ("fresh") only when its inputs are
//! unchanged *and* its own files still hash to what was recorded: a
//! bit-flipped or swapped file is recomputed, never reported.
use crate::data::sha256_file;
use crate::error::{IoContext, Result};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What an artifact was made from, how long it took, and what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Input name → sha256 of its content.
    pub inputs: BTreeMap<String, String>,
    pub seconds: f64,
    /// File name (in the run folder) → stamp of the artifact's own files.
    /// A meta without stamps (older runs) is never fresh.
    #[serde(default)]
    pub outputs: BTreeMap<String, Stamp>,
}

/// A file's content hash, with size and modification time as a fast path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub sha256: String,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: u128,
}

fn size_mtime(path: &Path) -> Option<(u64, u128)> {
    let md = std::fs::metadata(path).ok()?;
    let t = md
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some((md.len(), t.as_nanos()))
}

impl Stamp {
    /// Hashes `path` now.
    pub fn of(path: &Path) -> Result<Stamp> {
        let sha256 = sha256_file(path)?;
        let (size, mtime_ns) = size_mtime(path).ok_or_else(|| crate::error::Error::Io {
            path: path.to_path_buf(),
            err: std::io::Error::new(std::io::ErrorKind::NotFound, "cannot stat"),
        })?;
        Ok(Stamp {
            sha256,
            size,
            mtime_ns,
        })
    }

    /// Whether `path` still holds the stamped content: same size and mtime
    /// (no read), or else the same sha256 (a touched but unchanged file).
    pub fn holds(&self, path: &Path) -> bool {
        match size_mtime(path) {
            None => false,
            Some((size, _)) if size != self.size => false,
            Some((_, mtime)) if mtime == self.mtime_ns => true,
            Some(_) => sha256_file(path).is_ok_and(|s| s == self.sha256),
        }
    }
}

/// `<artifact>.meta.json`.
pub fn meta_path(artifact: &Path) -> PathBuf {
    let mut s = artifact.as_os_str().to_owned();
    s.push(".meta.json");
    PathBuf::from(s)
}

fn folder(artifact: &Path) -> PathBuf {
    artifact
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The artifact's meta if it was made from `inputs` and each of its files
/// still holds what was recorded.
pub fn fresh(artifact: &Path, inputs: &BTreeMap<String, String>) -> Option<Meta> {
    let m: Meta = fsutil::read_json(&meta_path(artifact)).ok()?;
    if m.inputs != *inputs || m.outputs.is_empty() {
        return None;
    }
    let dir = folder(artifact);
    m.outputs
        .iter()
        .all(|(name, st)| st.holds(&dir.join(name)))
        .then_some(m)
}

/// Records that `artifact` (made of `files`, the artifact first) was made
/// from `inputs` in `seconds`. Written last, after every file is in place.
pub fn record(
    artifact: &Path,
    files: &[&Path],
    inputs: BTreeMap<String, String>,
    seconds: f64,
) -> Result<Meta> {
    let mut outputs = BTreeMap::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        outputs.insert(name, Stamp::of(f)?);
    }
    let m = Meta {
        inputs,
        seconds,
        outputs,
    };
    fsutil::write_json(&meta_path(artifact), &m)?;
    Ok(m)
}

/// The sha256 of an artifact's main file, from its meta when the stamp
/// still holds (no read of a large file), else by hashing it.
pub fn content_sha(artifact: &Path) -> Result<String> {
    let name = artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(m) = fsutil::read_json::<Meta>(&meta_path(artifact))
        && let Some(st) = m.outputs.get(&name)
        && st.holds(artifact)
    {
        return Ok(st.sha256.clone());
    }
    sha256_file(artifact)
}

/// Removes an artifact's meta (before recomputing it), so a crash midway
/// never leaves an old meta beside new files.
pub fn forget(artifact: &Path) -> Result<()> {
    let p = meta_path(artifact);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(&p),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_or_swapped_file_is_not_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        std::fs::write(&a, b"hello").unwrap();
        let inputs: BTreeMap<String, String> = [("x".to_string(), "1".to_string())].into();
        record(&a, &[&a], inputs.clone(), 1.0).unwrap();
        assert!(fresh(&a, &inputs).is_some());
        assert_eq!(content_sha(&a).unwrap(), sha256_file(&a).unwrap());
        // Other inputs: stale.
        let other: BTreeMap<String, String> = [("x".to_string(), "2".to_string())].into();
        assert!(fresh(&a, &other).is_none());
        // Same size, one bit flipped: stale.
        std::fs::write(&a, b"hellp").unwrap();
        assert!(fresh(&a, &inputs).is_none());
        // Same content written again (new mtime): still fresh, by hash.
        std::fs::write(&a, b"hello").unwrap();
        assert!(fresh(&a, &inputs).is_some());
        // Missing file: stale.
        std::fs::remove_file(&a).unwrap();
        assert!(fresh(&a, &inputs).is_none());
    }
}
