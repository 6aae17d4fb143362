//! Atomic file writes: every artifact is written to a temporary file in the
//! destination folder and renamed into place, so a crash, a full disk or a
//! kill never leaves a partial file under the final name.
use crate::error::{Error, IoContext, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The locks, temporary files and folders made for locks that this
/// process holds right now: what [`release_all`] removes when it is
/// interrupted (a signal ends it without running destructors).
static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, PartialEq)]
enum Held {
    Lock(PathBuf),
    Temp(PathBuf),
    Folder(PathBuf),
    /// A temporary folder built in, removed with what it holds.
    Tree(PathBuf),
}

fn hold(h: Held) {
    HELD.lock().unwrap_or_else(|p| p.into_inner()).push(h);
}

fn release(h: &Held) {
    let mut v = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = v.iter().rposition(|x| x == h) {
        v.remove(i);
    }
}

/// Held while a commit's steps run ([`Committing`]): a signal's
/// handler waits for it, so a commit is either whole or never begun.
static COMMITTING: Mutex<()> = Mutex::new(());

/// What the commits of this process made that stands (`registry r was
/// created`), for a signal's handler to say.
static COMMITTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Held while a commit's steps run, from [`committing`] until dropped: a
/// signal's handler waits for it, so a commit is either whole or never
/// begun, and says what [`Committing::stands`] recorded.
pub struct Committing(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

/// Begins a commit's steps: see [`Committing`].
pub fn committing() -> Committing {
    Committing(COMMITTING.lock().unwrap_or_else(|p| p.into_inner()))
}

impl Committing {
    /// The commit succeeded: `done` (what it made, which stands) is what a
    /// signal's handler says.
    pub fn stands(self, done: String) {
        COMMITTED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(done);
    }
}

/// What a process ending on a signal removed, and what it had committed.
#[derive(Debug, Default)]
pub struct Released {
    /// The locks removed (their paths).
    pub locks: Vec<PathBuf>,
    /// What this process's commits made, which stands.
    pub committed: Vec<String>,
}

/// Removes every lock, temporary file and temporary folder this process
/// holds, and the folders made for locks that are still empty, for a
/// process about to end on a signal, after any commit in progress has
/// finished ([`Committing`]).
pub fn release_all() -> Released {
    let _g = COMMITTING.lock().unwrap_or_else(|p| p.into_inner());
    let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(|p| p.into_inner()));
    let mut locks = Vec::new();
    for h in held.iter().rev() {
        match h {
            Held::Lock(p) => {
                if std::fs::remove_file(p).is_ok() {
                    locks.push(p.clone());
                }
            }
            Held::Temp(p) => {
                let _ = std::fs::remove_file(p);
            }
            Held::Folder(p) => {
                let _ = std::fs::remove_dir(p);
            }
            Held::Tree(p) => remove_tree(p),
        }
    }
    locks.reverse();
    let committed = COMMITTED.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Released { locks, committed }
}

/// A temporary folder this process builds something in (a registry before
/// it is renamed into place): removed with its contents when dropped, and
/// by [`release_all`] when a signal ends the process, so that neither an
/// error nor Ctrl-C/SIGTERM leaves it behind. Once it was renamed away,
/// both find nothing to remove.
pub struct TempTree(PathBuf);

impl TempTree {
    /// Makes the folder `path`, which must not exist (never one that was
    /// there is taken over, let alone removed).
    pub fn create(path: &Path) -> Result<TempTree> {
        std::fs::create_dir(path).at(path)?;
        hold(Held::Tree(path.to_path_buf()));
        Ok(TempTree(path.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        release(&Held::Tree(self.0.clone()));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the folder `p` with its contents while the command's own
/// thread may still write into it (a signal's handler runs beside it):
/// again until it is gone, which happens once that thread's next write
/// fails for want of the folder; at most for a second.
fn remove_tree(p: &Path) {
    for _ in 0..100 {
        if std::fs::remove_dir_all(p).is_ok() || !p.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

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
        // The name once, so that any name the file system takes for `dest`
        // leaves room for this one (`check_output` probes it).
        let tmp = parent.join(format!(".{}.tmp-{name}", std::process::id()));
        hold(Held::Temp(tmp.clone()));
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
        release(&Held::Temp(self.tmp.clone()));
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

/// What `meta` describes when it is no regular file (`None` when it is
/// one): a folder, a device (`/dev/zero` never ends), a pipe (a read waits
/// for a writer) or a socket — each read or written by none of amun's files.
pub fn special_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_fifo() {
        Some("a pipe")
    } else {
        Some("a socket or other special file")
    }
}

/// Refuses `path` when it is there but no regular file ([`special_kind`]):
/// a pipe's read waits for a writer and a device's never ends, so weights
/// or tensors are never opened from one. `expected` says what the file
/// should be. A missing file passes: its reader names it so.
pub fn require_regular(path: &Path, expected: &str) -> Result<()> {
    match std::fs::metadata(path).ok().as_ref().and_then(special_kind) {
        Some(what) => Err(Error::format(
            path,
            format!("is not a regular file ({what}); expected {expected}"),
        )),
        None => Ok(()),
    }
}

/// The text of the regular file `path`: anything else ([`special_kind`])
/// is refused before it is opened.
pub fn read_text(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).at(path)?;
    if let Some(what) = special_kind(&meta) {
        return Err(Error::format(
            path,
            format!("is not a regular file ({what}); expected a file amun reads as text"),
        ));
    }
    std::fs::read_to_string(path).at(path)
}

/// Reads and parses a JSON file, naming the file in every error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

/// The last field of a JSON file amun signs ([`write_json_signed`]).
pub const CONTENT_KEY: &str = "content_sha256";

/// sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Two hashes a message shows side by side as different, cut to their
/// first 12 hex digits, or longer where they share more, so the two shown
/// prefixes always differ (hostile14 M1: two equal 12-digit prefixes read
/// as the same hash).
pub fn short_pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    let shared = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let n = (shared + 1).max(12);
    (a.get(..n).unwrap_or(a), b.get(..n).unwrap_or(b))
}

/// [`write_json`] of an object that records how an artifact was made (a
/// checkpoint's sidecar, an adversarial set's metadata), signed by
/// [`sign_json_text`]. `value` must serialise without [`CONTENT_KEY`].
pub fn write_json_signed<T: serde::Serialize>(dest: &Path, value: &T) -> Result<()> {
    let body = serde_json::to_string_pretty(value)
        .map_err(|e| Error::format(dest, format!("cannot serialise: {e}")))?;
    let text = Some(&body)
        .filter(|b| !b.contains(&format!("\n  \"{CONTENT_KEY}\":")))
        .and_then(|b| sign_json_text(b))
        .ok_or_else(|| Error::format(dest, format!("not an object without {CONTENT_KEY}")))?;
    write_atomic(dest, text.as_bytes())
}

/// A JSON object's text (ending in `}`) with a last field [`CONTENT_KEY`]
/// added: the sha256 of the text before that field, closed by `\n}` (for
/// pretty-printed JSON: the text without the field). The bytes, not parsed
/// values, are hashed: a parsed float may differ from the written one in
/// its last bit.
pub fn sign_json_text(body: &str) -> Option<String> {
    let rest = body.strip_suffix('}')?;
    let rest = rest.strip_suffix('\n').unwrap_or(rest);
    let h = sha256_hex(format!("{rest}\n}}").as_bytes());
    Some(format!("{rest},\n  \"{CONTENT_KEY}\": \"{h}\"\n}}\n"))
}

/// Reads a file written by [`write_json_signed`], refusing one whose bytes
/// are not what amun wrote: any edit, reformatting included, and a file
/// without the field (an older amun's, or one whose hash was removed with
/// an edit). `what` names the file's kind ("checkpoint sidecar"),
/// `remake` how to get one amun wrote.
pub fn read_json_signed<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    remake: &str,
) -> Result<T> {
    let text = read_text(path)?;
    parse_json_signed(path, &text, what, remake)
}

/// [`read_json_signed`] of `text`, already read from `path`.
pub fn parse_json_signed<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    what: &str,
    remake: &str,
) -> Result<T> {
    #[derive(serde::Deserialize)]
    struct Signed {
        content_sha256: Option<String>,
    }
    let parse_err = |e: serde_json::Error| Error::format(path, format!("invalid JSON: {e}"));
    let value: T = serde_json::from_str(text).map_err(parse_err)?;
    let Signed { content_sha256 } = serde_json::from_str(text).map_err(parse_err)?;
    let Some(want) = content_sha256 else {
        return Err(Error::format(
            path,
            format!(
                "carries no {CONTENT_KEY}, the hash of its text that amun writes into every \
                 {what}: written by an older amun, or edited and its hash removed — nothing \
                 says it is what amun wrote, so it is not trusted; {remake}"
            ),
        ));
    };
    let tail = format!(",\n  \"{CONTENT_KEY}\": \"{want}\"\n}}\n");
    let got = text
        .strip_suffix(&tail)
        .map(|body| sha256_hex(format!("{body}\n}}").as_bytes()));
    if got.as_deref() == Some(want.as_str()) {
        return Ok(value);
    }
    let why = match got {
        Some(h) => format!("its content's sha256 is {h}, but it records {CONTENT_KEY} {want}"),
        None => format!("its {CONTENT_KEY} is not the last field as amun writes it"),
    };
    Err(Error::format(
        path,
        format!(
            "was changed after amun wrote it: {why} (a field edited by hand, or the file \
             reformatted?); it records how its artifact was made and is never edited — \
             {remake}"
        ),
    ))
}

/// The most bytes a list of indices or a request file may have (a
/// million indices, one a line, take under 10 MB).
pub const MAX_LIST_BYTES: u64 = 256 << 20;

/// Reads a list (indices, image paths) from `path`: a regular file of at
/// most [`MAX_LIST_BYTES`]. A folder, a device (`/dev/zero` never ends) or
/// a pipe is refused before anything is read, and so is a larger file,
/// rather than filling memory.
pub fn read_list_file(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).at(path)?;
    if let Some(what) = special_kind(&meta) {
        return Err(Error::format(
            path,
            format!("is not a regular file ({what}); expected a file listing training samples"),
        ));
    }
    let too_big = |n: u64| {
        Error::format(
            path,
            format!(
                "has {n} bytes or more, more than the {MAX_LIST_BYTES} a file listing \
                 training samples may have"
            ),
        )
    };
    if meta.len() > MAX_LIST_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    // A file that grows while it is read is cut at the limit.
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path).at(path)?, MAX_LIST_BYTES + 1),
        &mut bytes,
    )
    .at(path)?;
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| Error::format(path, "is not UTF-8 text"))
}

/// Checks an output path before any work: not a folder, one of
/// `extensions` (when given), and a file can be created where it goes.
/// Creates no folder: a failed command leaves nothing behind.
pub fn check_output(dest: &Path, extensions: &[&str]) -> Result<()> {
    let shown = dest.display().to_string();
    // `out.safetensors/` names a folder: its lock would be `out.safetensors/.lock`.
    if dest.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(Error::invalid(
            shown,
            "ends with '/', so it names a folder; expected a file path".to_string()
                + &ext_hint(extensions),
        ));
    }
    if dest.is_dir() {
        return Err(Error::invalid(
            shown,
            "is a folder; expected a file path".to_string() + &ext_hint(extensions),
        ));
    }
    if !extensions.is_empty() {
        let ext = dest.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !extensions.contains(&ext) {
            return Err(Error::invalid(
                shown,
                format!("expected a file name{}", ext_hint(extensions)),
            ));
        }
    }
    // The nearest folder that exists must be a writable folder.
    let parent = parent_dir(dest);
    let mut probe = parent.as_path();
    while !probe.exists() {
        // A link that resolves to nothing (dangling, or a loop) exists as a
        // name: creating the folder would fail with the OS's bare EEXIST.
        if probe.symlink_metadata().is_ok() {
            let why = std::fs::metadata(probe)
                .err()
                .map_or_else(String::new, |e| format!(" ({e})"));
            return Err(Error::invalid(
                shown,
                format!(
                    "{} is a symbolic link that leads to no folder{why}; expected a folder",
                    probe.display()
                ),
            ));
        }
        probe = match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    if !probe.is_dir() {
        return Err(Error::invalid(
            shown,
            format!("{} is a file, not a folder", probe.display()),
        ));
    }
    probe_name(probe, dest).map_err(|why| Error::invalid(shown, why))
}

/// The most bytes the names amun writes beside an output add to its name:
/// the temporary file of its resume state, `.PID.tmp-NAME.resume.safetensors`
/// (a lock is `NAME.lock`, a sidecar `NAME.json`).
const NAME_EXTRA: usize = 20;

/// Creates (and removes) a file in `probe` with a name as long as the
/// longest one amun writes for `dest`, so that an unwritable folder or a
/// name the file system refuses is found before any work, and said so.
fn probe_name(probe: &Path, dest: &Path) -> std::result::Result<(), String> {
    let name_len = dest.file_name().map_or(0, |n| n.len());
    let mut test = format!(".amun-write-test-{}-", std::process::id());
    while test.len() < name_len + NAME_EXTRA {
        test.push('x');
    }
    let tmp = probe.join(&test);
    match std::fs::File::create(&tmp) {
        Ok(_) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
            let max = name_max(probe).saturating_sub(NAME_EXTRA);
            let folder = std::path::absolute(probe).unwrap_or_else(|_| probe.to_path_buf());
            Err(format!(
                "its file name is {name_len} bytes long; amun writes temporary files beside it \
                 whose names are up to {NAME_EXTRA} bytes longer, and the file system of {} \
                 takes at most {} bytes a name: choose a file name of at most {max} bytes",
                folder.display(),
                name_max(probe)
            ))
        }
        Err(e) => Err(format!(
            "cannot create files in {} ({e}); expected a folder this user can write to",
            probe.display()
        )),
    }
}

/// The longest file name the file system of `dir` takes (255 when it does
/// not say).
fn name_max(dir: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 255;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    let n = unsafe { libc::pathconf(c.as_ptr(), libc::_PC_NAME_MAX) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(255)
}

fn ext_hint(extensions: &[&str]) -> String {
    match extensions {
        [] => String::new(),
        [one] => format!(" ending in .{one}"),
        many => format!(
            " ending in {}",
            many.iter()
                .map(|e| format!(".{e}"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

/// An exclusive claim on an output: `<dest>.lock` beside it, locked for as
/// long as this value lives, so two processes never write the same file at
/// once. Folders created for it are removed again if nothing was written.
pub struct OutputLock {
    lock: PathBuf,
    created: Vec<PathBuf>,
    _file: std::fs::File,
}

impl OutputLock {
    /// Claims `dest` (after [`check_output`]-style checks by the caller), or
    /// says which process holds it.
    pub fn acquire(dest: &Path) -> Result<OutputLock> {
        let parent = parent_dir(dest);
        let mut created = Vec::new();
        let mut p = parent.clone();
        while !p.exists() {
            created.push(p.clone());
            p = match p.parent() {
                Some(q) if !q.as_os_str().is_empty() => q.to_path_buf(),
                _ => break,
            };
        }
        std::fs::create_dir_all(&parent).at(&parent)?;
        let lock = lock_path(dest);
        let cleanup = |created: &[PathBuf]| {
            for d in created {
                let _ = std::fs::remove_dir(d);
            }
        };
        // A holder removes the file while it still holds it (drop,
        // `release_all`), so a handle opened just before that removal can
        // lock a file no longer under the name while a third process locks
        // the new one: only a lock on the file still named `lock` counts.
        let mut tries = 0;
        let file = loop {
            let file = match std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)
            {
                Ok(f) => f,
                Err(e) => {
                    cleanup(&created);
                    return Err(e).at(&lock);
                }
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::invalid(
                        dest.display().to_string(),
                        format!(
                            "another amun process is writing it (it holds {}); wait for it to \
                             finish or choose another output",
                            lock.display()
                        ),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    cleanup(&created);
                    return Err(e).at(&lock);
                }
            }
            if still_named(&file, &lock) {
                break file;
            }
            tries += 1;
            if tries == 100 {
                cleanup(&created);
                return Err(Error::invalid(
                    dest.display().to_string(),
                    format!("its lock {} keeps being replaced", lock.display()),
                ));
            }
        };
        let _ = file.set_len(0);
        let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
        for d in created.iter().rev() {
            hold(Held::Folder(d.clone()));
        }
        hold(Held::Lock(lock.clone()));
        Ok(OutputLock {
            lock,
            created,
            _file: file,
        })
    }
}

/// The lock file of `dest`, named as the output was given
/// (`out.safetensors.lock`), so messages show the path the user typed.
fn lock_path(dest: &Path) -> PathBuf {
    let mut lock = dest.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// The process that holds `dest`'s [`OutputLock`]: the pid it wrote into
/// the lock file, while that process lives. Only read, never locked, so
/// asking never keeps a writer from claiming the output.
pub fn lock_holder(dest: &Path) -> Option<(u32, PathBuf)> {
    let lock = lock_path(dest);
    let pid: u32 = std::fs::read_to_string(&lock).ok()?.trim().parse().ok()?;
    process_alive(pid).then_some((pid, lock))
}

/// Whether process `pid` exists (signal 0: nothing is sent).
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether `file` is still the file at `path` (not removed or replaced).
fn still_named(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other process holds this file.
        let _ = std::fs::remove_file(&self.lock);
        release(&Held::Lock(self.lock.clone()));
        for d in &self.created {
            // Only empty folders go: those of a command that wrote nothing.
            let _ = std::fs::remove_dir(d);
            release(&Held::Folder(d.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_pair_shows_hashes_that_differ_late_as_different() {
        let (a, b) = ("66f6a9550903aaaa01", "66f6a9550903aaaa02");
        assert_eq!(short_pair(a, b), (a, b));
        assert_eq!(
            short_pair("0123456789abcdef", "f123"),
            ("0123456789ab", "f123")
        );
    }

    #[test]
    fn a_lock_counts_only_while_its_file_is_still_under_the_name() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        std::fs::write(&p, b"").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        assert!(still_named(&f, &p));
        std::fs::remove_file(&p).unwrap();
        assert!(!still_named(&f, &p));
        std::fs::write(&p, b"").unwrap();
        assert!(!still_named(&f, &p));
    }

    #[test]
    fn one_holder_at_a_time_and_a_dropped_lock_is_free_again() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out.safetensors");
        let a = OutputLock::acquire(&dest).unwrap();
        let e = OutputLock::acquire(&dest).err().unwrap().to_string();
        assert!(e.contains("another amun process"), "{e}");
        drop(a);
        assert!(!d.path().join("out.safetensors.lock").exists());
        let _b = OutputLock::acquire(&dest).unwrap();
    }
}
