//! What `registry create` makes on disk before the registry exists (its
//! folders, the anchor's copy, the temporary folder it is built in), so that
//! a failed create removes exactly those and never a path that was there
//! before; and the temporary folders a killed create left behind.
use crate::error::{Error, IoContext, Result};
use crate::fsutil::process_alive;
use crate::progress::Progress;
use std::path::{Path, PathBuf};

/// The paths a create made, removed again (files, then the folders, newest
/// first, each only while empty) unless [`Made::keep`] is called: never a
/// path that existed before.
#[derive(Default)]
pub(super) struct Made {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    kept: bool,
}

impl Made {
    /// Makes `dir` and its missing parents, each recorded as made here.
    pub(super) fn dirs(&mut self, dir: &Path) -> Result<()> {
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .collect();
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(d) {
                Ok(()) => self.dirs.push(d.to_path_buf()),
                // Made meanwhile by another command: not ours to remove.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).at(d),
            }
        }
        Ok(())
    }

    /// Claims the anchor's copy `copy` (`setting` names its flag): made
    /// here as a new file when `existed` is false (and refused if another
    /// command made it since it was checked), or, when the checked file was
    /// there (empty), used as it is and never removed.
    pub(super) fn copy(&mut self, setting: &str, copy: &Path, existed: bool) -> Result<()> {
        if existed {
            return Ok(());
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(copy)
        {
            Ok(_) => {
                self.files.push(copy.to_path_buf());
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::invalid(
                setting,
                format!(
                    "{}: was made by another command while this one ran (it did not exist when \
                     checked); it is left as it is and nothing was created: name a new file",
                    copy.display()
                ),
            )),
            Err(e) => Err(e).at(copy),
        }
    }

    /// Whether `dir` was made here.
    pub(super) fn has_dir(&self, dir: &Path) -> bool {
        self.dirs.iter().any(|d| d == dir)
    }

    /// The create succeeded: everything made stays.
    pub(super) fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The name of the temporary folder process `pid` builds registry `name` in.
pub(super) fn tmp_name(name: &str, pid: u32) -> String {
    format!(".{name}.tmp-{pid}")
}

/// The temporary folders in `parent` named as creates of registry `name`
/// name theirs whose process is gone: (folder, its process, whether it
/// holds only what a create writes).
fn leftovers(parent: &Path, name: &str) -> Vec<(PathBuf, u32, bool)> {
    let prefix = tmp_name(name, 0);
    let prefix = prefix.trim_end_matches('0');
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(prefix))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Another create, still running, owns its folder.
        if pid == std::process::id() || !process_alive(pid) {
            found.push((e.path(), pid, made_by_create(&e.path())));
        }
    }
    found
}

/// Removes, in `parent`, each temporary folder a killed create of registry
/// `name` left behind, saying so: only one provably amun's (its naming,
/// its process gone, nothing in it but what create writes); one that is not
/// is named and left as it is.
pub(super) fn remove_leftovers(parent: &Path, name: &str, progress: &dyn Progress) {
    for (path, pid, ours) in leftovers(parent, name) {
        if !ours {
            progress.note(&format!(
                "{}: named like the temporary folder of a registry create, but holds other \
                 files; left as it is",
                path.display()
            ));
        } else if std::fs::remove_dir_all(&path).is_ok() {
            progress.note(&format!(
                "removed {}: the temporary folder of a registry create that was stopped \
                 (process {pid} is gone)",
                path.display()
            ));
        }
    }
}

/// Notes naming the temporary folders killed creates of the registry `dir`
/// left beside it (verify writes nothing, so it only names them).
pub(super) fn leftover_notes(dir: &Path) -> Vec<String> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    leftovers(parent, name)
        .into_iter()
        .map(|(path, pid, ours)| {
            if ours {
                format!(
                    "{}: the temporary folder of a registry create that was stopped (process \
                     {pid} is gone), holding only what create writes: remove it (the next \
                     create of {} removes it)",
                    path.display(),
                    dir.display()
                )
            } else {
                format!(
                    "{}: named like the temporary folder of a registry create, but holds \
                     other files",
                    path.display()
                )
            }
        })
        .collect()
}

/// Whether `dir` (a real folder) holds only what a create writes: the
/// database, the anchor, `versions/` with the first version, `graphs/`.
fn made_by_create(dir: &Path) -> bool {
    let top = [
        "registry.db",
        "registry.db-wal",
        "registry.db-shm",
        "registry.db-journal",
        "anchor.log",
    ];
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let is_file = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    let only = |d: &Path, ok: &dyn Fn(&str, &Path) -> bool| {
        std::fs::read_dir(d).is_ok_and(|r| {
            r.filter_map(|e| e.ok())
                .all(|e| e.file_name().to_str().is_some_and(|n| ok(n, &e.path())))
        })
    };
    is_dir(dir)
        && only(dir, &|n, p| match n {
            "versions" => {
                is_dir(p)
                    && only(p, &|n, p| {
                        ["v0001.safetensors", "v0001.json"].contains(&n) && is_file(p)
                    })
            }
            "graphs" => is_dir(p) && only(p, &|_, p| is_file(p)),
            n => top.contains(&n) && is_file(p),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_is_removed_only_when_it_holds_what_create_writes() {
        let t = tempfile::tempdir().unwrap();
        // A pid no process has (above the kernel's pid_max).
        let dead = 4_194_399;
        let ours = t.path().join(tmp_name("reg", dead));
        std::fs::create_dir_all(ours.join("versions")).unwrap();
        std::fs::write(ours.join("versions/v0001.safetensors"), b"w").unwrap();
        std::fs::write(ours.join("registry.db"), b"").unwrap();
        let theirs = t.path().join(tmp_name("reg", dead + 1));
        std::fs::create_dir_all(theirs.join("versions")).unwrap();
        std::fs::write(theirs.join("notes.txt"), b"mine").unwrap();
        let other = t.path().join(tmp_name("other", dead));
        std::fs::create_dir_all(&other).unwrap();
        remove_leftovers(t.path(), "reg", &crate::progress::Quiet);
        assert!(!ours.exists());
        assert!(theirs.join("notes.txt").exists());
        assert!(other.exists());
    }

    #[test]
    fn a_failed_create_removes_only_what_it_made() {
        let t = tempfile::tempdir().unwrap();
        let had = t.path().join("had");
        std::fs::create_dir(&had).unwrap();
        let copy = t.path().join("c.log");
        {
            let mut m = Made::default();
            m.dirs(&had.join("a/b")).unwrap();
            m.copy("anchor-copy", &copy, false).unwrap();
            assert!(had.join("a/b").is_dir() && copy.is_file());
        }
        assert!(had.is_dir() && !had.join("a").exists() && !copy.exists());
        // A copy made by another command meanwhile is refused, and stays.
        std::fs::write(&copy, b"theirs").unwrap();
        {
            let mut m = Made::default();
            assert!(m.copy("anchor-copy", &copy, false).is_err());
        }
        assert_eq!(std::fs::read(&copy).unwrap(), b"theirs");
    }
}
