//! The anchor: the chain's head after every commit, appended to
//! `anchor.log` beside the database (and to a copy the user names), so a
//! database put back to an older copy, or whose newest records were
//! deleted, no longer verifies. The hash chain alone cannot show that: an
//! older database is a shorter chain that is intact in itself.
//!
//! Each line is one JSON [`Head`]: the chain's last record (sequence and
//! hash) and the records added since the line before it. A line is written
//! after the SQLite commit, under an exclusive `flock`, with everything the
//! chain holds beyond the file's last line: a process that stopped between
//! its commit and its line leaves a database one commit ahead of its
//! anchor, which the next commit appends (verify only notes it). A database ahead of
//! its anchor is therefore normal; one behind it, or whose record at an
//! anchored sequence has another hash, is not.
use super::db::{self, ChainEntry, sql};
use super::kinds::{Committer, RecordKind};
use super::{Registry, RequestRow};
use crate::error::{Error, IoContext, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The anchor file in a registry folder.
pub const FILE: &str = "anchor.log";

/// A chain record an anchor line names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rec {
    pub seq: i64,
    pub kind: RecordKind,
    pub item: i64,
}

/// One line of the anchor: the chain's head and the records since the
/// line before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    /// When the line was written (UTC).
    pub time: String,
    /// The command that wrote it.
    pub kind: Committer,
    pub records: Vec<Rec>,
    /// The registry folder whose command wrote it (its canonical path), so
    /// that two copies of one registry writing one anchor copy (a clone or
    /// backup that was written to) are told apart. Lines of an amun
    /// before this name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// The anchor record: when this registry started its anchor, and the copy
/// every line also goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorRow {
    pub id: i64,
    pub started: String,
    pub copy: Option<String>,
}

/// An anchor file as read.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Its heads with their line numbers.
    pub heads: Vec<(usize, Head)>,
    /// Lines that are no head (line number, why).
    pub bad: Vec<(usize, String)>,
    /// A line was cut short (a process stopped while writing it).
    pub torn: bool,
}

impl Parsed {
    /// What a file without a head holds, in words: "is empty: …", or the
    /// first line that is no anchor line.
    pub fn no_line(&self) -> String {
        match self.bad.first() {
            Some((line, why)) => format!(
                "holds no anchor line: its line {line} is none ({why}){}",
                match self.bad.len() {
                    1 => String::new(),
                    n => format!(", nor are {} more", n - 1),
                }
            ),
            None if self.torn => "holds no anchor line: only one cut short".into(),
            None => "is empty: it holds no anchor line".into(),
        }
    }

    /// The newest head (the largest sequence).
    pub fn last(&self) -> Option<&Head> {
        self.heads.iter().map(|(_, h)| h).max_by_key(|h| h.seq)
    }
}

/// Where the registry in `dir` lies, as anchor lines name it: its
/// canonical path (its absolute path when it cannot be resolved).
pub(crate) fn location(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

/// The folders other than `own` that wrote lines of `p` and hold a
/// registry of identity `id` now: other copies of this registry (a clone
/// or a backup) that share the anchor file. A folder that holds no such
/// registry any more is where this one lay before it moved: its lines are
/// this registry's.
pub(crate) fn other_copies(p: &Parsed, own: &str, id: &str) -> BTreeSet<String> {
    let dirs: BTreeSet<&str> = p
        .heads
        .iter()
        .filter_map(|(_, h)| h.dir.as_deref())
        .filter(|d| *d != own)
        .collect();
    dirs.into_iter()
        .filter(|d| db::identity_at(Path::new(d)).as_deref() == Some(id))
        .map(str::to_string)
        .collect()
}

/// The line of `p` written last (in the file's order) when another copy
/// of this registry wrote it: its folder, line number and time.
fn written_last_by_another(
    p: &Parsed,
    others: &BTreeSet<String>,
) -> Option<(String, usize, String)> {
    let (line, h) = p.heads.last()?;
    let d = h.dir.as_ref().filter(|d| others.contains(*d))?;
    Some((d.clone(), *line, h.time.clone()))
}

/// Why another copy of this registry, at `other`, makes writing the
/// shared anchor copy `file` wrong, and what to do.
fn fork_words(file: &Path, other: &str, line: usize, time: &str, this: &Path) -> String {
    format!(
        "its anchor's copy {} was last written by another copy of this registry, at {other} \
         (line {line}, {time}): a clone or backup of it, or the registry this folder was \
         copied from. Two registries writing one copy would each look rolled back to the \
         other. Give this one its own copy first (`amun registry anchor --registry {} \
         --copy NEW_FILE`), or remove the stale folder; nothing was changed",
        file.display(),
        this.display()
    )
}

/// Reads the anchor file at `path`; `None` when there is none. A path
/// that is no regular file (a folder, a device such as `/dev/null`
/// behind a symbolic link) is an error that says so.
pub fn read(path: &Path) -> Result<Option<Parsed>> {
    if let Ok(m) = std::fs::metadata(path)
        && let Some(what) = crate::fsutil::special_kind(&m)
    {
        let link = match std::fs::read_link(path) {
            Ok(to) => format!(" (a symbolic link to {})", to.display()),
            Err(_) => String::new(),
        };
        return Err(Error::invalid(
            path.display().to_string(),
            format!(
                "is not a regular file but {what}{link}: an anchor is a file of lines amun \
                 appends to; put the anchor file back there (from a backup or the anchor's copy)"
            ),
        ));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    Ok(Some(parse(&text)))
}

fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (i, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Head>(line) {
            Ok(h) => p.heads.push((i + 1, h)),
            // A line that ends before its JSON does: a write cut short
            // (the next line is written after it).
            Err(e) if e.is_eof() => p.torn = true,
            Err(e) => p.bad.push((i + 1, e.to_string())),
        }
    }
    p
}

/// The anchor records of the database, in order.
pub fn rows(conn: &Connection, path: &Path) -> Result<Vec<AnchorRow>> {
    let err = sql(path);
    let mut st = conn
        .prepare("SELECT id, started, copy FROM anchors ORDER BY id")
        .map_err(&err)?;
    st.query_map([], |r| {
        Ok(AnchorRow {
            id: r.get(0)?,
            started: r.get(1)?,
            copy: r.get(2)?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

/// Records an anchor (its start, or a new copy) in the transaction.
pub fn insert(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    copy: Option<&str>,
) -> Result<AnchorRow> {
    let err = sql(path);
    let id: i64 = tx
        .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM anchors", [], |r| {
            r.get(0)
        })
        .map_err(&err)?;
    let row = AnchorRow {
        id,
        started: db::now_utc(),
        copy: copy.map(str::to_string),
    };
    tx.execute(
        "INSERT INTO anchors (id, started, copy) VALUES (?1, ?2, ?3)",
        params![row.id, row.started, row.copy],
    )
    .map_err(&err)?;
    db::append(tx, path, RecordKind::Anchor, id, &row)?;
    Ok(row)
}

/// Starts the anchor in the transaction of a registry that has none yet
/// (made before anchors): its first line follows this commit.
pub fn ensure_started(tx: &rusqlite::Transaction<'_>, path: &Path) -> Result<()> {
    let any: Option<i64> = tx
        .query_row("SELECT id FROM anchors LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(sql(path))?;
    if any.is_none() {
        insert(tx, path, None)?;
    }
    Ok(())
}

/// The copy of the anchor the registry names, if any.
pub fn copy_path(conn: &Connection, path: &Path) -> Result<Option<PathBuf>> {
    Ok(rows(conn, path)?
        .pop()
        .and_then(|r| r.copy)
        .map(PathBuf::from))
}

/// Chain records after `seq`, in order.
fn chain_after(conn: &Connection, path: &Path, seq: i64) -> Result<Vec<ChainEntry>> {
    Ok(db::chain(conn, path)?
        .into_iter()
        .filter(|e| e.seq > seq)
        .collect())
}

/// Brings the anchor file `file` of the registry at `dir` up to the
/// database's chain: one line with the head and every record after the
/// file's last line. Nothing is written (an error says why) when the
/// file's last line is not in the chain as it recorded it (the database is
/// behind its anchor or was rewritten: verify names it, and the evidence
/// stays as it is), when another copy of this registry wrote its last line,
/// or, unless `start`, when the file is missing or holds no line (a new one
/// would begin at this database and hide one put back to an older copy).
/// Returns the records appended.
pub fn catch_up(
    conn: &Connection,
    db_path: &Path,
    file: &Path,
    kind: Committer,
    start: bool,
    dir: &Path,
) -> Result<Vec<Rec>> {
    if !start && read(file).ok().flatten().is_none_or(|p| p.heads.is_empty()) {
        return Err(Error::invalid(
            file.display().to_string(),
            "is missing or holds no anchor line, so it was not written: a new one would start \
             from this database and could hide one put back to an older copy; put it back, or \
             name a new copy with `amun registry anchor --copy`",
        ));
    }
    let own = location(dir);
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).at(parent)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(file)
        .at(file)?;
    let _lock = Flock::exclusive(&f, file)?;
    let text = std::fs::read_to_string(file).at(file)?;
    let parsed = parse(&text);
    let chain = db::chain(conn, db_path)?;
    let id = chain.first().map(|e| e.hash.clone()).unwrap_or_default();
    // A registry's own anchor.log is never shared; its copy may be.
    let shared = !crate::outputs::lies_inside(file, dir);
    let others = if shared {
        other_copies(&parsed, &own, &id)
    } else {
        BTreeSet::new()
    };
    if let Some((other, line, time)) = written_last_by_another(&parsed, &others) {
        return Err(Error::invalid(
            file.display().to_string(),
            format!(
                "not written: another copy of this registry, at {other}, wrote its last line \
                 (line {line}, {time}); give this registry its own copy (`amun registry anchor \
                 --copy NEW_FILE`)"
            ),
        ));
    }
    let from = match parsed.last() {
        None => 0,
        Some(h) => match chain.iter().find(|e| e.seq == h.seq) {
            Some(e) if e.hash == h.hash => h.seq,
            _ => {
                return Err(Error::invalid(
                    file.display().to_string(),
                    format!(
                        "not written: its last line names chain record {} (hash {}, {}), which \
                         this database does not hold as recorded (`amun registry verify` says \
                         why)",
                        h.seq,
                        super::samples::short(&h.hash),
                        h.time
                    ),
                ));
            }
        },
    };
    let new = chain_after(conn, db_path, from)?;
    let Some(last) = new.last() else {
        return Ok(Vec::new());
    };
    let head = Head {
        seq: last.seq,
        hash: last.hash.clone(),
        time: db::now_utc(),
        kind,
        records: new
            .iter()
            .map(|e| Rec {
                seq: e.seq,
                kind: e.kind,
                item: e.item,
            })
            .collect(),
        dir: Some(own),
    };
    let mut line = serde_json::to_string(&head).expect("heads serialise");
    line.push('\n');
    if !text.is_empty() && !text.ends_with('\n') {
        // A torn line from a stopped writer stays as it is, alone.
        line.insert(0, '\n');
    }
    (&f).write_all(line.as_bytes()).at(file)?;
    f.sync_all().at(file)?;
    if text.is_empty()
        && let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(parent)
    {
        // The new file's name survives a power cut too.
        let _ = d.sync_all();
    }
    Ok(head.records)
}

/// An exclusive `flock` on an open file, released on drop.
struct Flock<'f>(&'f std::fs::File);

impl<'f> Flock<'f> {
    fn exclusive(f: &'f std::fs::File, path: &Path) -> Result<Flock<'f>> {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this process holds open.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).at(path);
        }
        Ok(Flock(f))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// After a commit: the anchor and its copy brought up to the chain. What
/// fails is returned as warnings (the commit stands; the next commit
/// appends what is missing).
pub(crate) fn after_commit(reg: &Registry, kind: Committer) -> Vec<String> {
    super::stop_at(reg, "anchor");
    let mut warnings = Vec::new();
    let local = reg.dir.join(FILE);
    if let Err(e) = catch_up(&reg.conn, &reg.db, &local, kind, true, &reg.dir) {
        warnings.push(format!(
            "committed, but the anchor {} was not written ({e}); the next add, apply, retrain \
             or policy appends it (verify writes nothing)",
            local.display()
        ));
    }
    match copy_path(&reg.conn, &reg.db) {
        // Started only by the command that names it: a copy made anew
        // later would begin at this database, and hide a database put back
        // to an older copy together with anchor.log.
        Ok(Some(copy)) => {
            if let Err(e) = catch_up(
                &reg.conn,
                &reg.db,
                &copy,
                kind,
                kind == Committer::Anchor,
                &reg.dir,
            ) {
                warnings.push(format!(
                    "committed, but the anchor's copy {} was not written: {e}",
                    copy.display()
                ));
            }
        }
        Ok(None) => {}
        Err(e) => warnings.push(e.to_string()),
    }
    warnings
}

/// Refuses to `doing` when the registry's anchor is missing or empty
/// (it started one), or when the database is behind its anchor or its
/// history differs from the anchored one: a write would bury the
/// evidence. Lines of the anchor's copy written by another copy of this
/// registry ([`other_copies`]) are that copy's, not evidence about this
/// one.
pub(crate) fn refuse_behind(reg: &Registry, doing: &str) -> Result<()> {
    let chain = db::chain(&reg.conn, &reg.db)?;
    let refuse = |msg: String| {
        Error::invalid(
            format!("registry {}", reg.dir.display()),
            format!("cannot {doing}: {msg}"),
        )
    };
    let local = reg.dir.join(FILE);
    let parsed = read(&local)?;
    if !rows(&reg.conn, &reg.db)?.is_empty() && parsed.as_ref().is_none_or(|p| p.heads.is_empty()) {
        let state = match &parsed {
            None => "is missing".to_string(),
            Some(p) => format!("{} (emptied, e.g. by a log rotation?)", p.no_line()),
        };
        return Err(refuse(format!(
            "its anchor {} {state} (the registry started one); put it back from a backup or the \
             anchor's copy — a new one would hide a database put back to an older copy; nothing \
             was changed",
            local.display()
        )));
    }
    let mut files: Vec<(PathBuf, Parsed)> = parsed.map(|p| (local, p)).into_iter().collect();
    if let Some(copy) = copy_path(&reg.conn, &reg.db)?
        && let Ok(Some(mut p)) = read(&copy)
    {
        let id = chain.first().map(|e| e.hash.clone()).unwrap_or_default();
        let others = other_copies(&p, &location(&reg.dir), &id);
        // A fork's lines are the other copy's; lines that only run ahead of
        // this chain show this database behind (an older copy of that one).
        if theirs(&p, &chain, &others) == Theirs::Fork {
            p.heads
                .retain(|(_, h)| h.dir.as_ref().is_none_or(|d| !others.contains(d)));
        }
        files.push((copy, p));
    }
    for (file, p) in files {
        let Some(h) = p.last() else { continue };
        let problem = match chain.iter().find(|e| e.seq == h.seq) {
            Some(e) if e.hash == h.hash => continue,
            Some(_) => "holds another history than the one anchored",
            None => "is behind its anchor (rolled back, or its newest records deleted)",
        };
        let id = chain.first().map(|e| &e.hash);
        let by = match &h.dir {
            Some(d) if *d != location(&reg.dir) && db::identity_at(Path::new(d)).as_ref() == id => {
                format!(" (written by another copy of this registry, at {d}, which holds them)")
            }
            _ => String::new(),
        };
        return Err(refuse(format!(
            "its database {problem}: {} recorded chain record {} at {}{by}; nothing was changed \
             (`amun registry verify` names what is missing); {}",
            file.display(),
            h.seq,
            h.time,
            next_step(h.seq)
        )));
    }
    Ok(())
}

/// How to go on from a database behind its anchor (hostile11 R12/FK8c):
/// the anchor is the evidence, so it is never reset silently.
fn next_step(seq: i64) -> String {
    format!(
        "to go on: put back the newer registry.db (a later backup, or the folder this one was \
         copied from: one whose chain reaches record {seq}), and run again; if it is lost for \
         good, this registry stays refused (its anchor proves acknowledged requests are \
         missing): make a new one from the same model (`amun registry create`) and add the \
         lost requests again from their receipts' sources (`amun registry verify --receipt \
         FILE` names each request a receipt acknowledges)"
    )
}

/// Refuses to `doing` while the anchor's copy the registry names cannot be
/// read or holds no line: until it is back, a database put back to an
/// older copy together with `anchor.log` cannot be told from this one, and
/// a new request would take the number of one acknowledged since.
pub(crate) fn refuse_unreadable_copy(reg: &Registry, doing: &str) -> Result<()> {
    let Some(copy) = copy_path(&reg.conn, &reg.db)? else {
        return Ok(());
    };
    let why = match read(&copy) {
        Ok(Some(p)) if !p.heads.is_empty() => return Ok(()),
        Ok(Some(p)) => p.no_line(),
        Ok(None) => "is missing".to_string(),
        Err(e) => format!("cannot be read ({e})"),
    };
    Err(Error::invalid(
        format!("registry {}", reg.dir.display()),
        format!(
            "cannot {doing}: the anchor's copy {} {why}; until it is back, a database put back \
             to an older copy cannot be told from this one (and a request acknowledged since \
             would be numbered again); put the copy back, or — once you know this database is \
             the latest — name a new copy with `amun registry anchor --copy NEW_FILE`; nothing \
             was changed",
            copy.display()
        ),
    ))
}

/// Refuses to `doing` when another copy of this registry (a clone or a
/// backup, or the registry this folder was copied from) wrote the last
/// line of the anchor's copy both name: a write here would fork the
/// copy, and each registry would then look rolled back to the other.
pub(crate) fn refuse_fork(reg: &Registry, doing: &str) -> Result<()> {
    let Some(copy) = copy_path(&reg.conn, &reg.db)? else {
        return Ok(());
    };
    let Ok(Some(p)) = read(&copy) else {
        return Ok(());
    };
    let others = other_copies(&p, &location(&reg.dir), &reg.id()?);
    let chain = db::chain(&reg.conn, &reg.db)?;
    if theirs(&p, &chain, &others) == Theirs::Ahead {
        // Not a fork: this database is behind (verify and refuse_behind say so).
        return Ok(());
    }
    match written_last_by_another(&p, &others) {
        Some((other, line, time)) => Err(Error::invalid(
            format!("registry {}", reg.dir.display()),
            format!(
                "cannot {doing}: {}",
                fork_words(&copy, &other, line, &time, &reg.dir)
            ),
        )),
        None => Ok(()),
    }
}

/// Whether version `id` ever committed, as the anchor (or its copy) says:
/// `None` when there is no anchor, or when the registry names a copy that
/// cannot be read and `anchor.log` does not name the version — which then
/// proves nothing: `anchor.log` may have been put back with the database,
/// and the files of a version the database lacks may be the released
/// version of a database put back to an older copy.
pub(crate) fn committed(reg: &Registry, id: i64) -> Result<Option<bool>> {
    let Some(p) = read(&reg.dir.join(FILE))? else {
        return Ok(None);
    };
    if p.heads.is_empty() {
        return Ok(None);
    }
    let mut all = vec![p];
    let mut copy_unread = false;
    if let Some(copy) = copy_path(&reg.conn, &reg.db)? {
        match read(&copy) {
            Ok(Some(c)) if !c.heads.is_empty() => all.push(c),
            _ => copy_unread = true,
        }
    }
    let seen = all.iter().any(|p| {
        p.heads.iter().any(|(_, h)| {
            h.records
                .iter()
                .any(|r| r.kind == RecordKind::Version && r.item == id)
        })
    });
    Ok(match (seen, copy_unread) {
        (true, _) => Some(true),
        (false, true) => None,
        (false, false) => Some(false),
    })
}

/// A receipt: what `add` hands the requester, checkable against the
/// registry by anyone who keeps it (`amun registry verify --receipt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// [`RECEIPT_FORMAT`].
    pub format: String,
    /// The registry's identity: the hash of its first chain record.
    pub registry: String,
    /// The request as recorded (its samples' digest included).
    pub request: RequestRow,
    /// The request's chain record.
    pub record: ChainEntry,
    /// The chain's head after the add (after the records, for a receipt
    /// written again).
    pub head_seq: i64,
    pub head_hash: String,
    /// When the receipt was written again from the records (`amun registry
    /// receipt`): the add's own was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued: Option<String>,
}

/// Receipt format tag.
pub use crate::outputs::RECEIPT_FORMAT;

/// The folder of receipts in a registry.
pub const RECEIPTS: &str = "receipts";

/// The receipt file of request `id` in the registry folder.
pub fn receipt_path(dir: &Path, id: i64) -> PathBuf {
    dir.join(RECEIPTS).join(format!("r{id:04}.json"))
}

/// The receipts in the registry's `receipts/` folder, in order.
pub fn receipt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(RECEIPTS))
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Each problem the anchor, its copy and the receipts show about the
/// database whose chain is `chain` (`what`, `problem`), and notes. Returns
/// the newest chain record each anchor file recorded (its name, the
/// record).
pub(crate) fn check(
    reg: &Registry,
    chain: &[ChainEntry],
    receipts: &[PathBuf],
    find: &mut impl FnMut(String, String),
    notes: &mut Vec<String>,
) -> Result<Vec<(String, i64)>> {
    let started = rows(&reg.conn, &reg.db)?;
    let local = reg.dir.join(FILE);
    let mut files: Vec<(PathBuf, Parsed)> = Vec::new();
    match read(&local)? {
        Some(p) if p.heads.is_empty() && !started.is_empty() => find(
            FILE.into(),
            format!(
                "{}, but the registry started its anchor at {} (emptied, e.g. by a log \
                 rotation, or replaced): without its lines a database put back to an older copy \
                 cannot be told from the real one; put it back from a backup or the anchor's copy",
                p.no_line(),
                started[0].started
            ),
        ),
        Some(p) => files.push((local.clone(), p)),
        None if !started.is_empty() => find(
            FILE.into(),
            format!(
                "is missing, but the registry started its anchor at {}: without it a database \
                 put back to an older copy cannot be told from the real one; put it back from a \
                 backup{} (until then no request is added or applied and no certificate is \
                 given; those issued stay in certificates/)",
                started[0].started,
                started
                    .last()
                    .and_then(|r| r.copy.as_ref())
                    .map_or(String::new(), |c| format!(" or the anchor's copy {c}"))
            ),
        ),
        None => notes.push(format!(
            "warning: {} has no {FILE} (made before anchors): a registry.db put back to an \
             older copy, or with its newest records deleted, cannot be detected until one is \
             started; the next add, apply, retrain or policy starts it",
            reg.dir.display()
        )),
    }
    // anchor.log first: what it shows is named before the copy's findings.
    for (file, p) in &files {
        check_file(file, p, chain, find, notes);
    }
    if let Some(row) = started.last()
        && let Some(copy) = row.copy.as_ref().map(PathBuf::from)
    {
        let state = match read(&copy) {
            Ok(Some(p)) if !p.heads.is_empty() => {
                let p = leave_out_other_copies(reg, chain, &copy, p, find, notes);
                check_file(&copy, &p, chain, find, notes);
                files.push((copy.clone(), p));
                None
            }
            Ok(Some(p)) => Some(p.no_line()),
            Ok(None) => Some("is missing".to_string()),
            Err(e) => Some(format!("cannot be read ({e})")),
        };
        if let Some(state) = state {
            find(
                format!("the anchor's copy {}", copy.display()),
                format!(
                    "{state}, but the registry keeps its anchor there since {}: without it a \
                     registry.db put back to an older copy together with {FILE} cannot be told \
                     from the real one, so this registry is not verified (apply and retrain \
                     refuse meanwhile). Put it back (or mount its disk); if it is lost for good, \
                     `amun registry anchor --copy NEW_FILE` starts a new copy from this database",
                    row.started
                ),
            );
        }
    }
    let id = chain.first().map(|e| e.hash.clone()).unwrap_or_default();
    for r in receipts {
        check_receipt(r, &id, chain, find);
    }
    Ok(files
        .iter()
        .filter_map(|(f, p)| p.last().map(|h| (f.display().to_string(), h.seq)))
        .collect())
}

/// Whether the line `h` holds for `chain`: its head is there with its
/// hash, and every record it names.
fn holds(h: &Head, chain: &[ChainEntry]) -> bool {
    let at = |seq: i64| chain.iter().find(|e| e.seq == seq);
    at(h.seq).is_some_and(|e| e.hash == h.hash)
        && h.records
            .iter()
            .all(|r| at(r.seq).is_some_and(|e| e.kind == r.kind && e.item == r.item))
}

/// Whether the line `h`, which `chain` does not hold, only runs ahead of
/// it: its head lies beyond the chain's, and every record it names up to
/// the chain's head is the chain's own. A registry writes a line only after
/// one its chain holds, so such a line continues this history.
fn runs_ahead(h: &Head, chain: &[ChainEntry]) -> bool {
    let head = chain.last().map_or(0, |e| e.seq);
    let at = |seq: i64| chain.iter().find(|e| e.seq == seq);
    h.seq > head
        && h.records.iter().all(|r| {
            r.seq > head || at(r.seq).is_some_and(|e| e.kind == r.kind && e.item == r.item)
        })
}

/// How the lines of `p` that another copy of this registry wrote stand to
/// this `chain`, told by content, not by where the folders are.
#[derive(Debug, PartialEq)]
enum Theirs {
    /// All are this history (or there are none).
    Held,
    /// Some run ahead of this chain, none disagree with it: this database
    /// is an older copy of that registry (a backup that never wrote since):
    /// it is behind, and the requests it lacks were acknowledged.
    Ahead,
    /// Some disagree with records this chain holds: both wrote after the
    /// split, a fork.
    Fork,
}

fn theirs(p: &Parsed, chain: &[ChainEntry], others: &BTreeSet<String>) -> Theirs {
    let mut unheld = p
        .heads
        .iter()
        .map(|(_, h)| h)
        .filter(|h| h.dir.as_ref().is_some_and(|d| others.contains(d)) && !holds(h, chain))
        .peekable();
    if unheld.peek().is_none() {
        Theirs::Held
    } else if unheld.all(|h| runs_ahead(h, chain)) {
        Theirs::Ahead
    } else {
        Theirs::Fork
    }
}

/// The anchor's copy `p` without the lines another copy of this registry
/// (a clone or backup) wrote where they differ from this registry's
/// history: they are a fork, named as such, not a rollback of this one.
/// Lines of the other copy that this history holds (the registry this
/// folder was copied from, before the copy) are kept and checked, and so
/// are lines that only run ahead of it ([`Theirs::Ahead`]): this folder is
/// then an older copy of that one, behind its anchor.
fn leave_out_other_copies(
    reg: &Registry,
    chain: &[ChainEntry],
    file: &Path,
    mut p: Parsed,
    find: &mut impl FnMut(String, String),
    notes: &mut Vec<String>,
) -> Parsed {
    let id = chain.first().map(|e| e.hash.clone()).unwrap_or_default();
    let others = other_copies(&p, &location(&reg.dir), &id);
    let theirs_at = |h: &Head| h.dir.as_ref().is_some_and(|d| others.contains(d));
    let unheld: Vec<(usize, &Head)> = p
        .heads
        .iter()
        .filter(|(_, h)| theirs_at(h) && !holds(h, chain))
        .map(|(l, h)| (*l, h))
        .collect();
    let state = theirs(&p, chain, &others);
    if let (Theirs::Ahead, Some((line, h))) = (&state, unheld.first()) {
        // Kept: checked below, they name what this database lacks.
        notes.push(format!(
            "{}: line(s) from line {line} on were written by another copy of this registry, at \
             {} ({}), after this folder was copied from it: this folder is an older copy of \
             it (a backup that never wrote since), behind it, not a fork; that registry holds \
             the records this one lacks",
            file.display(),
            h.dir.as_deref().unwrap_or_default(),
            h.time
        ));
    } else if let Some((line, h)) = unheld.first() {
        find(
            format!("the anchor's copy {}", file.display()),
            format!(
                "{} line(s) from line {line} on were written by another copy of this registry, \
                 at {} ({}), and are not this registry's history: that copy (a clone or backup) \
                 was written to after it was copied — a fork, not a rollback of this one. They \
                 are left out of the check. Give this registry a new copy (`amun registry anchor \
                 --registry {} --copy NEW_FILE`) and the other one its own, or remove the other",
                unheld.len(),
                h.dir.as_deref().unwrap_or_default(),
                h.time,
                reg.dir.display()
            ),
        );
        p.heads.retain(|(_, h)| !theirs_at(h) || holds(h, chain));
    } else if let Some((other, line, time)) = written_last_by_another(&p, &others) {
        notes.push(format!(
            "{}: its last line was written by another copy of this registry, at {other} (line \
             {line}, {time}): this folder is a clone or backup of it, or it of this one; commands \
             that write here are refused until this one has its own copy (`amun registry anchor \
             --registry {} --copy NEW_FILE`)",
            file.display(),
            reg.dir.display()
        ));
    }
    p
}

/// One anchor file against the chain.
fn check_file(
    file: &Path,
    p: &Parsed,
    chain: &[ChainEntry],
    find: &mut impl FnMut(String, String),
    notes: &mut Vec<String>,
) {
    let name = file.display().to_string();
    for (line, why) in &p.bad {
        find(
            format!("{name} line {line}"),
            format!("is no anchor line (edited?): {why}"),
        );
    }
    if p.torn {
        notes.push(format!(
            "{name}: a line was cut short (a process stopped while writing it); the next \
             line is written after it"
        ));
    }
    let db_head = chain.last().map_or(0, |e| e.seq);
    let at = |seq: i64| chain.iter().find(|e| e.seq == seq);
    if let Some(h) = p.last()
        && h.seq > db_head
    {
        find(
            "registry.db".into(),
            format!(
                "is behind its anchor: its chain ends at record {db_head}, but {name} recorded \
                 record {} (hash {}) at {}: the database was put back to an older copy, or its \
                 newest records were deleted",
                h.seq,
                super::samples::short(&h.hash),
                h.time
            ),
        );
        let step = next_step(h.seq);
        if !notes.contains(&step) {
            notes.push(step);
        }
    }
    let mut rewritten = false;
    for (line, h) in &p.heads {
        if let Some(e) = at(h.seq)
            && e.hash != h.hash
            && !rewritten
        {
            rewritten = true;
            find(
                format!("chain record {}", h.seq),
                format!(
                    "has hash {}, but {name} line {line} recorded {} at {}: the history since \
                     was replaced",
                    crate::fsutil::short_pair(&e.hash, &h.hash).0,
                    crate::fsutil::short_pair(&e.hash, &h.hash).1,
                    h.time
                ),
            );
        }
        for r in &h.records {
            let held = at(r.seq).is_some_and(|e| e.kind == r.kind && e.item == r.item);
            if !held {
                let what = if r.kind == RecordKind::Request {
                    "was acknowledged"
                } else {
                    "was committed"
                };
                find(
                    format!("{} {}", r.kind, r.item),
                    format!(
                        "{what} as chain record {} ({name} line {line}, {}), but the \
                         database no longer holds it",
                        r.seq, h.time
                    ),
                );
            }
        }
    }
    if let Some(h) = p.last()
        && h.seq < db_head
        && at(h.seq).is_some_and(|e| e.hash == h.hash)
    {
        notes.push(format!(
            "{name} ends at chain record {}, the database at {db_head} (a command stopped \
             between its commit and its anchor line, or the line could not be written); the \
             next add, apply, retrain or policy appends the rest (verify writes nothing)",
            h.seq
        ));
    }
}

/// The receipt in `file` if it reads as a receipt of any registry; else
/// what it is instead (empty, not JSON, of another format).
pub fn parse_receipt(file: &Path) -> std::result::Result<Receipt, String> {
    // Before opening: a pipe nobody writes would block (hostile15 N5c).
    if let Some(what) = std::fs::metadata(file)
        .ok()
        .as_ref()
        .and_then(crate::fsutil::special_kind)
    {
        return Err(format!("is not a regular file ({what})"));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("unreadable: {e}"))?;
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    let r: Receipt = serde_json::from_str(&text).map_err(|e| format!("is not a receipt ({e})"))?;
    if r.format != RECEIPT_FORMAT {
        return Err(format!(
            "format '{}', expected '{RECEIPT_FORMAT}'",
            r.format
        ));
    }
    Ok(r)
}

/// The receipt in `file` if it reads as one the registry `id` issued
/// (its format, identity, and request hashing to the chain record it
/// names); else what it is not.
pub fn read_receipt(file: &Path, id: &str) -> std::result::Result<Receipt, String> {
    let r = parse_receipt(file)?;
    if r.registry != id {
        return Err(format!(
            "was issued by another registry (identity {}, this one is {})",
            crate::fsutil::short_pair(&r.registry, id).0,
            crate::fsutil::short_pair(&r.registry, id).1
        ));
    }
    let e = &r.record;
    let content = db::content_sha256(&r.request);
    if e.kind != RecordKind::Request
        || e.item != r.request.id
        || e.content_sha256 != content
        || db::link_hash(&e.prev, e.kind, e.item, &content) != e.hash
    {
        return Err("was edited: its request does not hash to the chain record it names".into());
    }
    // A receipt is issued after its request's record, so its head is
    // never before it: an earlier head (0, -1) names no record to compare
    // (hostile15 N26).
    if r.head_seq < e.seq {
        return Err(format!(
            "was edited: its head ({}) precedes its own record {} (a registry hands out a \
             receipt only at or after its request's record)",
            r.head_seq, e.seq
        ));
    }
    Ok(r)
}

/// A receipt whose request the chain holds, but whose chain head lies
/// beyond the chain's (hostile14 RG8, RG10): no registry hands out a
/// receipt past its own head, so records after the database's head were
/// lost (deleted, or the database put back to an older copy with its
/// anchor) — or the receipt was edited. Either way not intact.
fn beyond_head(
    name: &str,
    r: &Receipt,
    chain: &[ChainEntry],
    find: &mut impl FnMut(String, String),
) {
    let (seq, hash) = chain
        .last()
        .map_or((0, db::GENESIS), |c| (c.seq, c.hash.as_str()));
    if r.head_seq <= seq {
        return;
    }
    find(
        name.to_string(),
        format!(
            "was issued at chain head {} ({}), but the database's chain ends at record {seq} \
             ({}): records after {seq} were deleted or the database was put back to an older \
             copy — or the receipt was edited (a registry never hands out a receipt beyond its \
             own head)",
            r.head_seq,
            super::samples::short(&r.head_hash),
            super::samples::short(hash)
        ),
    );
}

/// One receipt against the chain of the registry `id`.
fn check_receipt(
    file: &Path,
    id: &str,
    chain: &[ChainEntry],
    find: &mut impl FnMut(String, String),
) {
    let name = format!("receipt {}", file.display());
    let r = match read_receipt(file, id) {
        Ok(r) => r,
        Err(why) => return find(name, why),
    };
    let e = &r.record;
    let what = format!("request {}", r.request.id);
    match chain.iter().find(|c| c.seq == e.seq) {
        Some(c) if c.hash == e.hash => beyond_head(&name, &r, chain, find),
        Some(_) => find(
            what,
            format!(
                "was acknowledged (added {}, {name}) as chain record {}, which the database \
                 now holds with another hash: the history since was replaced",
                r.request.added, e.seq
            ),
        ),
        None => find(
            what,
            format!(
                "was acknowledged (added {}, {name}) as chain record {}, but the database no \
                 longer holds it: put back to an older copy, or its records deleted",
                r.request.added, e.seq
            ),
        ),
    }
    if let Some(c) = chain.iter().find(|c| c.seq == r.head_seq)
        && c.hash != r.head_hash
    {
        find(
            name,
            format!(
                "names chain head {} with hash {}, the database holds {}",
                r.head_seq,
                crate::fsutil::short_pair(&r.head_hash, &c.hash).0,
                crate::fsutil::short_pair(&r.head_hash, &c.hash).1
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_told_from_an_edited_one() {
        let h = Head {
            seq: 3,
            hash: "ab".into(),
            time: "2026-01-01T00:00:00Z".into(),
            kind: Committer::Add,
            records: vec![Rec {
                seq: 3,
                kind: RecordKind::Request,
                item: 1,
            }],
            dir: None,
        };
        let line = serde_json::to_string(&h).unwrap();
        let p = parse(&format!("{line}\n{}", &line[..10]));
        assert_eq!(p.heads.len(), 1);
        assert!(p.torn && p.bad.is_empty());
        // Cut short, then the next line written after it.
        let p = parse(&format!("{}\n{line}\n", &line[..10]));
        assert!(p.torn && p.bad.is_empty());
        assert_eq!(p.last(), Some(&h));
        let edited = line.replace("\"seq\":3", "\"seq\":\"x\"");
        let p = parse(&format!("{edited}\n{line}\n"));
        assert_eq!(p.bad.len(), 1);
        assert!(!p.torn);
    }
}
