//! Atomic file writes: every artifact is written to a temporary file in the
//! destination folder and renamed into place, so a crash, a full disk or a
//! kill never leaves a partial file under the final name.
use crate::error::{Error, IoContext, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A temporary path beside `dest` that keeps `dest`'s extension (libtorch
/// picks the format from it) and is removed on drop unless committed.
pub struct TempPath {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl TempPath {
    /// Reserves a temporary name beside `dest`; creates the parent folder.
    pub fn beside(dest: &Path) -> Result<Self> {
        let parent = parent_dir(dest);
        std::fs::create_dir_all(&parent).at(&parent)?;
        let name = dest
            .file_name()
            .ok_or_else(|| Error::invalid(dest.display().to_string(), "expected a file path"))?
            .to_string_lossy()
            .into_owned();
        let tmp = parent.join(format!(".{name}.{}.tmp-{name}", std::process::id()));
        Ok(TempPath {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Renames the temporary file onto its destination.
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).at(&self.dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `dest` atomically (temp file, fsync, rename).
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = TempPath::beside(dest)?;
    {
        let mut f = std::fs::File::create(tmp.path()).at(dest)?;
        f.write_all(bytes).at(dest)?;
        f.sync_all().at(dest)?;
    }
    tmp.commit()
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json<T: serde::Serialize>(dest: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)
        .map_err(|e| Error::format(dest, format!("cannot serialise: {e}")))?;
    s.push('\n');
    write_atomic(dest, s.as_bytes())
}

/// Reads and parses a JSON file, naming the file in every error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

/// Checks up front that a file can be created in `dest`'s folder, so a long
/// run fails in its first second rather than at its end.
pub fn check_writable(dest: &Path) -> Result<()> {
    let tmp = TempPath::beside(dest)?;
    std::fs::File::create(tmp.path()).at(dest)?;
    Ok(())
}
