//! The one writer of a registry: what apply and retrain share to make a
//! version safely. A [`Writer`] holds the writer lock, refuses a registry
//! that fails verification, removes what an interrupted writer left (and
//! moves aside, never deletes, a version's files the database lacks), stages
//! a version's files and places them under their final names, and commits
//! its records in one transaction before the anchor line.
use super::db::{immediate, sql};
use super::kinds::{Committer, Executor};
use super::{
    Registry, SET_ASIDE, samples, staged_name, stop_at, verify, weights_name, write_certificate,
};
use crate::cluster::{Cluster, Sbatch, SlurmState};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::OutputLock;
use crate::model::{Classifier, checkpoint};
use crate::progress::Progress;
use rusqlite::Transaction;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A registry opened to write, its writer lock held.
pub(crate) struct Writer {
    pub(crate) reg: Registry,
    /// Where the files of a version the database lacks were moved (a
    /// warning about the user's files, for the command's result).
    pub(crate) set_aside: Option<String>,
    _lock: WriterLock,
}

impl Writer {
    /// Opens the registry in `dir` to `doing` (`apply`, `retrain`): takes
    /// the writer lock, refuses a registry that fails verification (so
    /// nothing is `done`), removes what an interrupted writer left, copies
    /// the graphs the versions need, and refuses while a Slurm retrain may
    /// still record a version.
    pub(crate) fn open(
        dir: &Path,
        doing: &str,
        done: &str,
        progress: &dyn Progress,
    ) -> Result<Writer> {
        let reg = Registry::open(dir)?;
        let mut w = Writer {
            _lock: lock_writer(dir, doing)?,
            reg,
            set_aside: None,
        };
        super::anchor::refuse_fork(&w.reg, doing)?;
        check_writable(&w.reg, doing)?;
        w.clean(done, progress)?;
        for p in super::graphs::copy_missing(&mut w.reg)? {
            progress.note(&format!("copied the graph the versions need to {p}"));
        }
        refuse_in_flight(&w.reg, doing, progress)?;
        Ok(w)
    }

    /// Opens the registry in `dir` for a retrain's Slurm job. The process
    /// that submitted the job may still hold the lock for a moment (it
    /// records the job id after sbatch answers): wait for it.
    pub(crate) fn open_for_job(dir: &Path, progress: &dyn Progress) -> Result<Writer> {
        let reg = Registry::open(dir)?;
        let mut tries = 0;
        let lock = loop {
            match lock_writer(dir, "run the retrain") {
                Ok(l) => break l,
                Err(Error::Invalid { .. }) if tries < 120 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        };
        let mut w = Writer {
            reg,
            set_aside: None,
            _lock: lock,
        };
        super::anchor::refuse_fork(&w.reg, "run the retrain")?;
        check_writable(&w.reg, "run the retrain")?;
        w.clean("retrained", progress)?;
        Ok(w)
    }

    /// Verified before anything is removed: files of versions the database
    /// does not hold are the evidence of a rolled-back database. Says what
    /// was removed, and warns (even under `--quiet`, and in a Slurm job's
    /// log) where a version's files were set aside.
    fn clean(&mut self, done: &str, progress: &dyn Progress) -> Result<()> {
        check_intact(&self.reg, done)?;
        let cleaned = clean_leftovers(&self.reg)?;
        for p in cleaned.removed {
            progress.note(&format!(
                "removed {} (left by an interrupted apply or retrain)",
                p.display()
            ));
        }
        if !cleaned.left.is_empty() {
            let names: Vec<String> = cleaned
                .left
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            progress.warn(&format!(
                "left {} in place: not a file amun stages (staging/ is amun's scratch folder for \
                 a version being written; keep your own files elsewhere)",
                names.join(", ")
            ));
        }
        if let Some(note) = &cleaned.set_aside {
            progress.warn(note);
        }
        self.set_aside = cleaned.set_aside;
        Ok(())
    }

    /// Saves version `id` in the staging folder.
    pub(crate) fn stage(
        &self,
        model: &Classifier,
        sidecar: &checkpoint::Sidecar,
        id: i64,
    ) -> Result<PathBuf> {
        let staging = self.reg.dir.join("staging");
        std::fs::create_dir_all(&staging).at(&staging)?;
        let staged = staging.join(format!("v{id:04}.safetensors"));
        checkpoint::save(model, &staged, sidecar)?;
        Ok(staged)
    }

    /// Moves the staged version `id` to its final names: its weights file
    /// (relative to the registry), their sha256 and the sidecar's.
    pub(crate) fn place(&self, staged: &Path, id: i64) -> Result<(String, String, String)> {
        stop_at(&self.reg, "staged");
        let placed = place(&self.reg, staged, id)?;
        stop_at(&self.reg, "renamed");
        Ok(placed)
    }

    /// Commits the records `write` inserts in one transaction (the anchor
    /// started first), then appends the anchor line of `command`.
    pub(crate) fn commit(
        &mut self,
        command: Committer,
        progress: &dyn Progress,
        write: impl FnOnce(&Transaction<'_>, &Path) -> Result<()>,
    ) -> Result<()> {
        self.transact(write)?;
        self.anchor(command, progress);
        Ok(())
    }

    /// [`Writer::commit`] of a new version: the crash tests' `committed`
    /// point lies between its commit and its anchor line.
    pub(crate) fn commit_version(
        &mut self,
        command: Committer,
        progress: &dyn Progress,
        write: impl FnOnce(&Transaction<'_>, &Path) -> Result<()>,
    ) -> Result<()> {
        self.transact(write)?;
        stop_at(&self.reg, "committed");
        self.anchor(command, progress);
        Ok(())
    }

    fn transact(
        &mut self,
        write: impl FnOnce(&Transaction<'_>, &Path) -> Result<()>,
    ) -> Result<()> {
        let db = self.reg.db.clone();
        let tx = immediate(&mut self.reg.conn, &db)?;
        super::anchor::ensure_started(&tx, &db)?;
        write(&tx, &db)?;
        tx.commit().map_err(sql(&db))
    }

    /// The anchor line after a commit; what went wrong is noted, the commit
    /// stands.
    fn anchor(&self, command: Committer, progress: &dyn Progress) {
        for w in super::anchor::after_commit(&self.reg, command) {
            progress.note(&w);
        }
    }
}

/// Refuses to `doing` when a folder the writer writes (`staging/`,
/// `versions/`, `certificates/`) cannot take a new file: found before any
/// work, not once the unlearning or retrain is done (or, for
/// certificates, after the version committed).
fn check_writable(reg: &Registry, doing: &str) -> Result<()> {
    for sub in ["staging", "versions", "certificates"] {
        let d = reg.dir.join(sub);
        let probe = d.join(format!(".amun-write-test-{}", std::process::id()));
        let tried = std::fs::create_dir_all(&d).and_then(|()| std::fs::File::create(&probe));
        match tried {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) => {
                return Err(Error::invalid(
                    format!("registry {}", reg.dir.display()),
                    format!(
                        "cannot {doing}: its folder {} cannot be written ({e}); nothing was \
                         done — make it writable (a read-only mount, file modes, or chattr +i?) \
                         and run again",
                        d.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Writes the certificate of version `id`, which committed just before:
/// a failure says that the version stands and how to write its
/// certificate later (a script must not read a failed command as nothing
/// done).
pub(crate) fn certify_committed(reg: &Registry, id: i64) -> Result<(PathBuf, PathBuf)> {
    write_certificate(reg, id).map_err(|e| {
        Error::invalid(
            format!("registry {}", reg.dir.display()),
            format!(
                "version {id} WAS committed (`amun registry list` shows it, `amun registry \
                 verify` checks it), but its certificate was not written: {e}; once \
                 certificates/ can be written, `amun registry certificate --registry {} \
                 --version {id}` (or the next apply or retrain) writes it",
                reg.dir.display()
            ),
        )
    })
}

/// The newest version's id as `tx` sees it: a writer checks that the head
/// did not move while it worked.
pub(crate) fn head_in(tx: &Transaction<'_>, db: &Path) -> Result<i64> {
    tx.query_row("SELECT MAX(id) FROM versions", [], |r| r.get(0))
        .map_err(sql(db))
}

/// The one apply or retrain that may write a registry.
struct WriterLock {
    _lock: OutputLock,
}

/// Takes the registry's writer lock, or says who holds it.
fn lock_writer(dir: &Path, doing: &str) -> Result<WriterLock> {
    let base = dir.join("writer");
    match OutputLock::acquire(&base) {
        Ok(l) => Ok(WriterLock { _lock: l }),
        Err(Error::Invalid { .. }) => {
            let lock = dir.join("writer.lock");
            let pid = std::fs::read_to_string(&lock).unwrap_or_default();
            Err(Error::invalid(
                format!("registry {}", dir.display()),
                format!(
                    "cannot {doing}: another apply or retrain is running (process {} holds {}); \
                     two at once could apply the same requests twice — wait for it to finish",
                    pid.trim(),
                    lock.display()
                ),
            ))
        }
        Err(e) => Err(e),
    }
}

/// What [`clean_leftovers`] did: the staged and temporary files it
/// removed, and the note naming where the head's successor's files went.
struct Cleaned {
    removed: Vec<PathBuf>,
    /// What `staging/` holds that amun never stages: left as it is.
    left: Vec<PathBuf>,
    set_aside: Option<String>,
}

/// Cleans up after an interrupted apply or retrain (under the writer
/// lock, so none is running, and after [`check_intact`], so nothing here
/// is evidence of lost history): removes staged and temporary files, and
/// moves the files of the one version a writer places before its commit
/// (the head's successor) to `set-aside/` when the anchor says that
/// version never committed. They are never deleted: after a rollback of
/// the database together with its anchor (and its copy, or with none) the
/// anchor's "never committed" is wrong and they are a released version;
/// only the user can tell. A certificate or other version files of a
/// version the database does not hold are never a crash's leftovers
/// (certificates are written after the commit): verify names them and
/// they stay. Without an anchor (a registry made before anchors), or with
/// the anchor's copy unreadable, the successor's files are kept and the
/// writer refused.
fn clean_leftovers(reg: &Registry) -> Result<Cleaned> {
    let (mut removed, mut left) = (Vec::new(), Vec::new());
    let staging = reg.dir.join("staging");
    if let Ok(rd) = std::fs::read_dir(&staging) {
        for e in rd.flatten() {
            let p = e.path();
            let ours = e.file_type().is_ok_and(|t| t.is_file())
                && staged_name(&e.file_name().to_string_lossy());
            if !ours {
                left.push(p);
            } else if std::fs::remove_file(&p).is_ok() {
                removed.push(p);
            }
        }
    }
    left.sort();
    let next_id = reg.head()?.id + 1;
    let next = weights_name(next_id);
    let next_side = next.replace(".safetensors", ".json");
    let present: Vec<PathBuf> = [&next, &next_side]
        .iter()
        .map(|f| reg.dir.join(f))
        .filter(|p| p.exists())
        .collect();
    if !present.is_empty() && super::anchor::committed(reg, next_id)? != Some(false) {
        return Err(Error::invalid(
            present[0].display().to_string(),
            format!(
                "belongs to version {next_id}, which the database does not hold, and no \
                 anchor proves the version never committed (the registry has none, or the \
                 anchor's copy it names cannot be read): it may be \
                 the released version of a database put back to an older copy, or what an \
                 apply that stopped before its commit left. Nothing was removed; if no \
                 version {next_id} was ever released, move its files away and run again"
            ),
        ));
    }
    let set_aside = if present.is_empty() {
        None
    } else {
        Some(set_aside(reg, next_id, &present)?)
    };
    for sub in ["versions", "certificates"] {
        let Ok(rd) = std::fs::read_dir(reg.dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") && std::fs::remove_file(&p).is_ok() {
                removed.push(p);
            }
        }
    }
    // A version committed just before its process died has no
    // certificate yet: write it now. One older than the head was written
    // by the writer after it, and removed since: written again, marked so.
    let head = reg.head()?.id;
    for v in reg.versions()? {
        let (_, json) = super::certificate::certificate_paths(reg, v.id);
        if json.exists() {
            continue;
        }
        if v.id < head {
            super::certificate::reissue_certificate(reg, v.id)?;
        } else {
            write_certificate(reg, v.id)?;
        }
    }
    Ok(Cleaned {
        removed,
        left,
        set_aside,
    })
}

/// Moves `files` (version `id`'s, in `versions/`) into a new folder
/// `set-aside/<UTC time>-vNNNN/` of the registry, one rename each (the
/// same filesystem, so nothing is copied and a kill leaves every file
/// under one of its two names; a rerun moves what is left), and says
/// where they went and why.
fn set_aside(reg: &Registry, id: i64, files: &[PathBuf]) -> Result<String> {
    let root = reg.dir.join(SET_ASIDE);
    std::fs::create_dir_all(&root).at(&root)?;
    let stamp = super::db::now_utc().replace(':', "");
    let mut to = root.join(format!("{stamp}-v{id:04}"));
    let mut n = 1;
    loop {
        match std::fs::create_dir(&to) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                n += 1;
                to = root.join(format!("{stamp}-v{id:04}-{n}"));
            }
            Err(e) => return Err(e).at(&to),
        }
    }
    let mut names = Vec::new();
    for f in files {
        let name = f.file_name().expect("a version file's name");
        std::fs::rename(f, to.join(name)).at(f)?;
        names.push(format!("versions/{}", name.to_string_lossy()));
    }
    Ok(format!(
        "moved {} to {}: they belong to version {id}, which the database does not hold and \
         its anchor never saw committed — either left by an apply or retrain that stopped \
         before its commit, or a released version whose database was put back to an older \
         copy together with its anchor. Nothing was deleted: keep them or delete them as you \
         decide",
        names.join(" and "),
        to.display()
    ))
}

/// Refuses to write a registry that fails verification, naming what changed.
fn check_intact(reg: &Registry, doing: &str) -> Result<()> {
    verify::refuse_findings(reg, &verify::check(reg)?, &format!("nothing was {doing}"))
}

/// Loads the registry's data and checks it holds the recorded samples.
pub(crate) fn load_checked_data(
    reg: &Registry,
    data_dir: &Path,
    progress: &dyn Progress,
) -> Result<crate::data::Dataset> {
    if let Some(missing) = reg.data_folder_missing()? {
        return Err(Error::invalid(
            format!("registry {}", reg.dir.display()),
            format!("{missing}; nothing was changed"),
        ));
    }
    let spec = reg.data_spec()?;
    let data = crate::model::load_data(&spec, data_dir, progress)?;
    samples::check_recorded(&reg.samples()?, &spec, Some(&data))?;
    // The training samples are the recorded ones, so a different content
    // hash means other test images: calibration's hold-out and every
    // audit would measure on data the registry's versions were not.
    let info = reg.info()?;
    let got = data.content_sha256();
    if got != info.data_sha256 {
        return Err(Error::invalid(
            "dataset",
            format!(
                "the test split of {} differs from the one the registry recorded (content \
                 sha256 {}, recorded {}): calibration and audits must use the same held-out \
                 images as the registry's versions",
                spec.label(),
                crate::fsutil::short_pair(&got, &info.data_sha256).0,
                crate::fsutil::short_pair(&got, &info.data_sha256).1
            ),
        ));
    }
    Ok(data)
}

/// Moves a staged version's weights and sidecar to their final names.
fn place(reg: &Registry, staged: &Path, id: i64) -> Result<(String, String, String)> {
    let w = weights_name(id);
    let sw = w.replace(".safetensors", ".json");
    let staged_side = checkpoint::sidecar_path(staged);
    let weights_sha = crate::data::sha256_file(staged)?;
    let sidecar_sha = crate::data::sha256_file(&staged_side)?;
    let vdir = reg.dir.join("versions");
    std::fs::create_dir_all(&vdir).at(&vdir)?;
    move_new(staged, &reg.dir.join(&w))?;
    move_new(&staged_side, &reg.dir.join(&sw))?;
    Ok((w, weights_sha, sidecar_sha))
}

/// Renames `from` to `to` unless `to` exists (a hard link fails on a taken
/// name, then the old name goes): a writer never replaces the files of a
/// version another one committed.
fn move_new(from: &Path, to: &Path) -> Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from).at(from),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::invalid(
            to.display().to_string(),
            "exists already: another apply or retrain placed this version; nothing was \
             recorded, run the command again",
        )),
        Err(e) => Err(e).at(to),
    }
}

/// Refuses to `doing` while a Slurm retrain that may still record a
/// version is queued or running, as Slurm says. A job Slurm does not know
/// (any more), or a Slurm that cannot be asked, does not block: the
/// refusal only spares a retrain's work, and such a job, if it ever runs,
/// finds the head moved and records nothing (`run_locked`).
fn refuse_in_flight(reg: &Registry, doing: &str, progress: &dyn Progress) -> Result<()> {
    let done: Vec<i64> = reg.versions()?.iter().filter_map(|v| v.retrain).collect();
    for r in reg.retrains()? {
        if done.contains(&r.id) || r.executor != Executor::Slurm {
            continue;
        }
        let Some(job) = reg.retrain_job(r.id)? else {
            continue;
        };
        let states = match Sbatch.query(std::slice::from_ref(&job)) {
            Ok(s) => s,
            Err(e) => {
                progress.note(&format!(
                    "cannot ask Slurm about retrain {} (job {job}): {e}; going on (if that job \
                     still runs, it will find the head moved and record nothing)",
                    r.id
                ));
                continue;
            }
        };
        let live = states
            .get(&job)
            .is_some_and(|s| matches!(s.state, SlurmState::Pending | SlurmState::Running));
        if live {
            return Err(Error::invalid(
                format!("registry {}", reg.dir.display()),
                format!(
                    "cannot {doing}: retrain {} (Slurm job {job}) is queued or running and will \
                     record a new root; wait for it (`amun registry retrain --wait-for {}`) or \
                     cancel it (scancel {job})",
                    r.id, r.id
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_amun_stages_is_named_staged() {
        for ours in [
            "v0002.safetensors",
            "v0002.json",
            "v12345.json",
            ".4242.tmp-v0002.safetensors",
            ".7.tmp-v0003.json",
        ] {
            assert!(staged_name(ours), "{ours}");
        }
        for theirs in [
            "notes.txt",
            "v2.safetensors",
            "v0002.md",
            "x0002.json",
            ".tmp-v0002.json",
            ".ab.tmp-v0002.json",
            "v0002.safetensors.bak",
        ] {
            assert!(!staged_name(theirs), "{theirs}");
        }
    }

    #[test]
    fn a_placed_file_never_replaces_one_that_exists() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        std::fs::write(&a, b"staged").unwrap();
        std::fs::write(&b, b"committed").unwrap();
        let e = move_new(&a, &b).unwrap_err().to_string();
        assert!(e.contains("exists already"), "{e}");
        assert_eq!(std::fs::read(&b).unwrap(), b"committed");
        move_new(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&c).unwrap(), b"staged");
    }
}
