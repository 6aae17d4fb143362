//! The run folder as an artifact store. Every artifact has a
//! `<artifact>.meta.json` recording the sha256 of the inputs it was made
//! from, the seconds it took, and a stamp (sha256, size, mtime) of each file
//! it consists of. An artifact is trusted ("fresh") only when its inputs are
//! unchanged *and* its own files still hash to what was recorded: a
//! bit-flipped or swapped file is recomputed, never reported. Small files
//! (what reports are built from: audits, sidecars, forget sets, choices) are
//! hashed every time, since size and mtime survive `touch -r`, `cp -p`,
//! `rsync -t` and bit rot; large ones (weights, adversarial sets, logits)
//! are taken on size and mtime for the status, and hashed by [`verify`]
//! where a step loads them.
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

    /// Whether `path` still holds the stamped content: the same sha256,
    /// read every time for a small file; for a large one, the same size and
    /// mtime stand in for it (a load checks it with [`verify`]).
    pub fn holds(&self, path: &Path) -> bool {
        match size_mtime(path) {
            None => false,
            Some((size, _)) if size != self.size => false,
            Some((size, mtime)) if size > SMALL && mtime == self.mtime_ns => true,
            Some(_) => sha256_file(path).is_ok_and(|s| s == self.sha256),
        }
    }
}

/// Files up to this size are hashed whenever their freshness is asked.
pub const SMALL: u64 = 1 << 20;

/// Hashes the large files of `artifact`'s record, which the status took on
/// size and mtime, before a step reads them. A file that no longer holds
/// what was recorded loses the record (so the next run recomputes it) and
/// is refused here, never read.
pub fn verify(artifact: &Path) -> Result<()> {
    let meta = meta_path(artifact);
    let m: Meta = fsutil::read_json(&meta)?;
    let dir = folder(artifact);
    for (name, st) in &m.outputs {
        let p = dir.join(name);
        if st.size <= SMALL {
            continue;
        }
        let got = sha256_file(&p)?;
        if got != st.sha256 {
            forget(artifact)?;
            return Err(crate::error::Error::format(
                &p,
                format!(
                    "changed since it was made: its sha256 is {got}, {} recorded {}; that record \
                     is removed, so the next run recomputes it",
                    meta.display(),
                    st.sha256
                ),
            ));
        }
    }
    Ok(())
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
        // A small file edited with its size and mtime kept (`touch -r`,
        // `cp -p`): stale, by hash.
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::write(&a, b"jello").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(fresh(&a, &inputs).is_none());
        assert_eq!(content_sha(&a).unwrap(), sha256_file(&a).unwrap());
        std::fs::write(&a, b"hello").unwrap();
        // Missing file: stale.
        std::fs::remove_file(&a).unwrap();
        assert!(fresh(&a, &inputs).is_none());
    }

    #[test]
    fn a_large_file_changed_in_place_is_refused_where_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("w.safetensors");
        let mut bytes = vec![7u8; SMALL as usize + 10];
        std::fs::write(&a, &bytes).unwrap();
        let inputs: BTreeMap<String, String> = [("x".to_string(), "1".to_string())].into();
        record(&a, &[&a], inputs.clone(), 1.0).unwrap();
        verify(&a).unwrap();
        // One bit flipped, size and mtime kept: the status trusts it…
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        bytes[5] ^= 1;
        std::fs::write(&a, &bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(fresh(&a, &inputs).is_some());
        // …a step reading it does not, and the record goes with it.
        let e = verify(&a).unwrap_err().to_string();
        assert!(e.contains("changed since it was made"), "{e}");
        assert!(!meta_path(&a).exists());
        assert!(fresh(&a, &inputs).is_none());
    }
}
