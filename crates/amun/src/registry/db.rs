//! The registry's database: SQLite through `rusqlite` (compiled in, so no
//! system library is needed), in WAL mode so readers never wait for the
//! writer, with a busy timeout so concurrent writers queue instead of
//! failing, and a schema version with forward migrations.
//!
//! Every row that says what happened (the registry itself, a policy, a
//! request, a version, an absorption, a retrain) is also a record of the
//! chain: its canonical content (the row as JSON, fields in a fixed order)
//! is hashed, and the chain entry's hash covers that hash and the previous
//! entry's. Rows are never updated; a request's status is derived from the
//! absorptions that name it.
use super::kinds::{RecordKind, kind_in};
use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The database file in a registry folder.
pub const DB_FILE: &str = "registry.db";

/// The schema this amun reads and writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Forward migrations: entry k takes a database from version k to k + 1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE registry (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    created TEXT NOT NULL,
    data TEXT NOT NULL,
    data_sha256 TEXT NOT NULL,
    train_size INTEGER NOT NULL,
    sample_names TEXT NOT NULL,
    samples_sha256 TEXT NOT NULL,
    holdout_test INTEGER NOT NULL,
    refs TEXT,
    refs_sha256 TEXT,
    seed INTEGER NOT NULL
);
CREATE TABLE samples (
    idx INTEGER PRIMARY KEY,
    path TEXT UNIQUE,
    sha256 TEXT NOT NULL
);
CREATE TABLE policies (
    id INTEGER PRIMARY KEY,
    set_at TEXT NOT NULL,
    after_requests INTEGER,
    after_fraction REAL
);
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    received TEXT NOT NULL,
    added TEXT NOT NULL,
    reference TEXT NOT NULL,
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    samples_sha256 TEXT NOT NULL
);
CREATE TABLE request_samples (
    request INTEGER NOT NULL REFERENCES requests(id),
    idx INTEGER NOT NULL REFERENCES samples(idx),
    PRIMARY KEY (request, idx)
) WITHOUT ROWID;
CREATE INDEX request_samples_idx ON request_samples(idx);
CREATE TABLE retrains (
    id INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    based_on INTEGER NOT NULL,
    excluded INTEGER NOT NULL,
    excluded_sha256 TEXT NOT NULL,
    executor TEXT NOT NULL
);
CREATE TABLE retrain_jobs (
    retrain INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    script TEXT NOT NULL
);
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    parent INTEGER,
    kind TEXT NOT NULL,
    created TEXT NOT NULL,
    weights TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    sidecar_sha256 TEXT NOT NULL,
    method TEXT,
    settings TEXT,
    calibration TEXT,
    audit TEXT NOT NULL,
    forgotten INTEGER NOT NULL,
    forgotten_sha256 TEXT NOT NULL,
    retrain INTEGER,
    seed INTEGER NOT NULL,
    seconds REAL NOT NULL
);
CREATE TABLE absorptions (
    id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    request INTEGER NOT NULL,
    how TEXT NOT NULL,
    UNIQUE (version, request)
);
CREATE INDEX absorptions_request ON absorptions(request);
CREATE TABLE chain (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    item INTEGER NOT NULL,
    content_sha256 TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (kind, item)
);
"#,
    // 2: the anchor (`anchor.log` beside the database, and a copy the
    // user names): when this registry started it, and where its copy is.
    r#"
CREATE TABLE anchors (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    copy TEXT
);
"#,
    // 3: the copies of exported models' graphs the registry stored
    // (`graphs/`), so that a deleted copy is told from one never made.
    r#"
CREATE TABLE graphs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    stored TEXT NOT NULL
);
"#,
];

/// The `prev` of the first chain entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An SQLite error on the registry database at `path`, in words.
pub fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy {
            Error::format(
                path,
                "the registry database stayed locked by another process for 30 s; try again",
            )
        } else {
            Error::format(path, format!("registry database: {e}"))
        }
    }
}

/// Why the folder `dir` has no registry database, if it has none.
fn missing(dir: &Path, path: &Path) -> Option<Error> {
    if path.is_file() {
        return None;
    }
    let kept: Vec<&str> = ["versions", "certificates", "anchor.log", "receipts"]
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect();
    if !kept.is_empty() {
        return Some(Error::invalid(
            dir.display().to_string(),
            format!(
                "its database {} is missing, but the folder holds a registry's {}: put \
                 registry.db back from a backup (verify then checks it against the anchor \
                 and receipts); nothing was changed",
                path.display(),
                kept.join(", ")
            ),
        ));
    }
    Some(Error::invalid(
        dir.display().to_string(),
        format!(
            "not a registry: no {DB_FILE} in it (make one with `amun registry create \
             --registry DIR --checkpoint MODEL`)"
        ),
    ))
}

/// Refuses a database without the registry's tables. Checked before
/// anything writes: an empty file or another program's database would
/// otherwise be given the registry's tables and then pass for an empty,
/// intact registry.
fn check_known(conn: &Connection, dir: &Path, path: &Path) -> Result<()> {
    let known: bool = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN \
             ('schema_version', 'registry', 'chain')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(sql(path))?
        == 3;
    if !known {
        return Err(Error::invalid(
            dir.display().to_string(),
            format!(
                "not a registry: {} holds no amun registry (no schema_version, registry and \
                 chain tables); registries are made by `amun registry create`",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `path` as an SQLite URI (`file:` and the path, percent-encoded) with
/// the query `query`.
fn uri(path: &Path, query: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut u = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            u.push(b as char);
        } else {
            u.push_str(&format!("%{b:02X}"));
        }
    }
    u.push('?');
    u.push_str(query);
    u
}

/// Reads through SQLite's locks and the WAL: needs `-wal` and `-shm`.
const LOCKED: &str = "mode=ro";
/// Reads the database file alone, without locks: creates no file.
const IMMUTABLE: &str = "mode=ro&immutable=1";

/// How a read-only open reads the database at `path`, and whether its WAL
/// holds commits. [`LOCKED`] while a writer may be at work (`-wal` and
/// `-shm` beside it) or left commits in the WAL; [`IMMUTABLE`]
/// otherwise, which creates no file and takes no lock, so it reads a
/// registry on read-only media (a read-only mount, an auditor's copy) and
/// leaves the folder as it was. (A writer that starts meanwhile does not
/// touch the database file before its first checkpoint, at its end.)
fn read_mode(path: &Path) -> (&'static str, bool) {
    let side = |ext: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(ext);
        std::fs::metadata(PathBuf::from(p)).ok()
    };
    let (wal, shm) = (side("-wal"), side("-shm"));
    let commits = wal.as_ref().is_some_and(|m| m.len() > 0);
    if commits || (wal.is_some() && shm.is_some()) {
        (LOCKED, commits)
    } else {
        (IMMUTABLE, false)
    }
}

/// Opens `abs` read-only with the URI query `query` and reads from it
/// (SQLite opens lazily: a file it cannot use fails at the first read).
fn open_ro(abs: &Path, query: &str) -> rusqlite::Result<Connection> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
        | rusqlite::OpenFlags::SQLITE_OPEN_URI
        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(uri(abs, query), flags)?;
    c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(c)
}

/// The database of the registry in `dir`, opened read-only for the
/// commands that only read (verify, list, show, certificate): nothing is
/// written, so a read-only copy opens. A database of an older schema is
/// opened for writing, once, to migrate it.
pub fn open_read(dir: &Path) -> Result<(Connection, PathBuf)> {
    let path = dir.join(DB_FILE);
    if let Some(e) = missing(dir, &path) {
        return Err(e);
    }
    let abs = std::path::absolute(&path).map_err(|e| Error::format(&path, e.to_string()))?;
    let (mode, commits) = read_mode(&abs);
    let conn = match open_ro(&abs, mode) {
        Ok(c) => c,
        // Left-over -wal/-shm on read-only media, the WAL empty: the
        // database file holds everything.
        Err(_) if mode == LOCKED && !commits => open_ro(&abs, IMMUTABLE).map_err(sql(&path))?,
        Err(e) if commits => {
            return Err(Error::format(
                &path,
                format!(
                    "registry database: {e}: its write-ahead log {DB_FILE}-wal holds commits, \
                     and reading them needs {DB_FILE}-shm beside it; copy the folder to \
                     writable media, or open it there once with a writing command"
                ),
            ));
        }
        Err(e) => return Err(sql(&path)(e)),
    };
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(sql(&path))?;
    check_known(&conn, dir, &path)?;
    let have: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .map_err(sql(&path))?
        .unwrap_or(0);
    if have < SCHEMA_VERSION {
        drop(conn);
        return open(dir, false);
    }
    if have > SCHEMA_VERSION {
        return Err(Error::format(
            &path,
            format!(
                "schema version {have}: made by a newer amun (this one knows up to \
                 {SCHEMA_VERSION}); use that amun"
            ),
        ));
    }
    Ok((conn, path))
}

/// The identity (the first chain record's hash) of the registry whose
/// folder is `dir`, read without writing anything; `None` when `dir` holds
/// no registry that can be read. How a registry tells another copy of
/// itself (a clone or backup that is written to) from a folder it was
/// moved away from.
pub(crate) fn identity_at(dir: &Path) -> Option<String> {
    let path = std::path::absolute(dir.join(DB_FILE)).ok()?;
    if !path.is_file() {
        return None;
    }
    let (mode, _) = read_mode(&path);
    let conn = open_ro(&path, mode).ok()?;
    conn.query_row("SELECT hash FROM chain ORDER BY seq LIMIT 1", [], |r| {
        r.get(0)
    })
    .ok()
}

/// The database of the registry in `dir`: opened (made when `create`),
/// configured and migrated to [`SCHEMA_VERSION`].
pub fn open(dir: &Path, create: bool) -> Result<(Connection, PathBuf)> {
    let path = dir.join(DB_FILE);
    if !create && let Some(e) = missing(dir, &path) {
        return Err(e);
    }
    if !create {
        refuse_read_only(dir, &path)?;
    }
    let flags = if create {
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
    } else {
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let conn = Connection::open_with_flags(&path, flags).map_err(sql(&path))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(sql(&path))?;
    if !create {
        check_known(&conn, dir, &path)?;
    }
    // WAL: readers see the last commit while a writer works; FULL: a
    // commit survives a power cut, not only a killed process.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sql(&path))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::format(
            &path,
            format!("the file system refused SQLite's WAL mode (journal mode {mode})"),
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql(&path))?;
    migrate(&conn, &path)?;
    Ok((conn, path))
}

/// Refuses to open for writing a registry whose folder or database cannot
/// be written (read-only media, `chattr +i`, file modes), before SQLite's
/// bare "unable to open database file" (hostile11 ROR2/ROR3). `access`
/// asks the kernel, which also stops root at an immutable file or a
/// read-only mount.
fn refuse_read_only(dir: &Path, db: &Path) -> Result<()> {
    let mut files = vec![dir.to_path_buf(), db.to_path_buf()];
    for ext in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(ext);
        files.push(PathBuf::from(p));
    }
    for f in files.iter().filter(|f| f.exists()) {
        let Some(e) = not_writable(f) else { continue };
        return Err(Error::invalid(
            format!("registry {}", dir.display()),
            format!(
                "is read-only ({} cannot be written: {e}); this command writes to the registry \
                 (add, apply, retrain, policy, receipt and anchor need write access to its folder); nothing was \
                 changed (verify, list, show and certificate read a read-only registry)",
                f.display()
            ),
        ));
    }
    Ok(())
}

/// Why `path` cannot be written, per `access(2)`; `None` when it can.
fn not_writable(path: &Path) -> Option<std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    let rc = unsafe { libc::access(c.as_ptr(), libc::W_OK) };
    (rc != 0).then(std::io::Error::last_os_error)
}

fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let err = sql(path);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
    let run = || -> Result<()> {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(&err)?;
        let have: Option<i64> = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .optional()
            .map_err(&err)?;
        let have = have.unwrap_or(0);
        if have > SCHEMA_VERSION {
            return Err(Error::format(
                path,
                format!(
                    "schema version {have}: made by a newer amun (this one knows up to \
                     {SCHEMA_VERSION}); use that amun"
                ),
            ));
        }
        for m in &MIGRATIONS[have as usize..] {
            conn.execute_batch(m).map_err(&err)?;
        }
        if have == 0 {
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )
            .map_err(&err)?;
        } else if have < SCHEMA_VERSION {
            conn.execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION])
                .map_err(&err)?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => conn.execute_batch("COMMIT").map_err(&err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A write transaction that takes the write lock at its start (`BEGIN
/// IMMEDIATE`): what it read cannot change before it commits.
pub fn immediate<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql(path))
}

/// sha256 of `bytes`, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    crate::fsutil::sha256_hex(bytes)
}

/// The canonical content of a record: its JSON (fields in declaration
/// order, maps sorted), and that text's sha256.
pub fn content_sha256<T: Serialize>(row: &T) -> String {
    sha256(
        serde_json::to_string(row)
            .expect("records serialise")
            .as_bytes(),
    )
}

/// A chain entry's hash: over the previous hash, what it records and the
/// record's content hash.
pub fn link_hash(prev: &str, kind: RecordKind, item: i64, content: &str) -> String {
    sha256(format!("{prev}\n{kind}\n{item}\n{content}").as_bytes())
}

/// One entry of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub seq: i64,
    pub kind: RecordKind,
    pub item: i64,
    pub content_sha256: String,
    pub prev: String,
    pub hash: String,
}

/// Appends the record `kind` `item` with content `row` to the chain.
pub fn append<T: Serialize>(
    tx: &Transaction<'_>,
    path: &Path,
    kind: RecordKind,
    item: i64,
    row: &T,
) -> Result<ChainEntry> {
    let err = sql(path);
    let prev: String = tx
        .query_row(
            "SELECT hash FROM chain ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(&err)?
        .unwrap_or_else(|| GENESIS.to_string());
    let content = content_sha256(row);
    let hash = link_hash(&prev, kind, item, &content);
    tx.execute(
        "INSERT INTO chain (kind, item, content_sha256, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![kind, item, content, prev, hash],
    )
    .map_err(&err)?;
    Ok(ChainEntry {
        seq: tx.last_insert_rowid(),
        kind,
        item,
        content_sha256: content,
        prev,
        hash,
    })
}

/// The chain's last entry.
pub fn chain_head(conn: &Connection, path: &Path) -> Result<ChainEntry> {
    conn.query_row(
        "SELECT seq, kind, item, content_sha256, prev, hash FROM chain ORDER BY seq DESC LIMIT 1",
        [],
        |r| {
            Ok(ChainEntry {
                seq: r.get(0)?,
                kind: kind_in(r, 1, "chain record")?,
                item: r.get(2)?,
                content_sha256: r.get(3)?,
                prev: r.get(4)?,
                hash: r.get(5)?,
            })
        },
    )
    .map_err(sql(path))
}

/// Every chain entry, in order.
pub fn chain(conn: &Connection, path: &Path) -> Result<Vec<ChainEntry>> {
    let err = sql(path);
    let mut st = conn
        .prepare("SELECT seq, kind, item, content_sha256, prev, hash FROM chain ORDER BY seq")
        .map_err(&err)?;
    st.query_map([], |r| {
        Ok(ChainEntry {
            seq: r.get(0)?,
            kind: kind_in(r, 1, "chain record")?,
            item: r.get(2)?,
            content_sha256: r.get(3)?,
            prev: r.get(4)?,
            hash: r.get(5)?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    utc(OffsetDateTime::now_utc()).expect("this year has four digits")
}

/// `t` in UTC, to the second, as RFC 3339 (`2026-03-01T12:00:00Z`); `None`
/// for a year RFC 3339 cannot write.
fn utc(t: OffsetDateTime) -> Option<String> {
    t.to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// A user-given time as [`now_utc`] writes it: RFC 3339 (any offset,
/// turned into UTC; fractions of a second dropped) or a date alone, taken
/// as its midnight UTC.
pub fn parse_utc(s: &str) -> Result<String> {
    let bad = || {
        Error::invalid(
            "received",
            format!(
                "'{s}': expected a UTC time such as 2026-03-01T12:00:00Z, or a date 2026-03-01"
            ),
        )
    };
    // A date alone (`YYYY-MM-DD`) is its midnight UTC.
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = OffsetDateTime::parse(&full, &Rfc3339).map_err(|_| bad())?;
    // Four-digit years only: the records sort and compare as text.
    utc(t).filter(|x| x.len() == 20).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_knows_the_files_that_make_a_registry() {
        assert_eq!(
            crate::outputs::REGISTRY_MARKERS,
            [DB_FILE, crate::registry::anchor::FILE]
        );
    }

    /// A registry-shaped WAL database in a new folder, closed.
    fn wal_db() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (conn, path) = open(d.path(), true).unwrap();
        conn.execute_batch("INSERT INTO chain VALUES (1, 'k', 1, 'c', 'p', 'h')")
            .unwrap();
        drop(conn);
        (d, path)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn read_only_open_uses_read_only_uri_flags_and_creates_no_file() {
        assert_eq!(
            uri(Path::new("/a b/r?x#%.db"), IMMUTABLE),
            "file:/a%20b/r%3Fx%23%25.db?mode=ro&immutable=1"
        );
        let (d, path) = wal_db();
        assert_eq!(names(d.path()), ["registry.db"]);
        let before = std::fs::read(&path).unwrap();
        assert_eq!(read_mode(&path), (IMMUTABLE, false));
        let (conn, _) = open_read(d.path()).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM chain", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let e = conn
            .execute("INSERT INTO chain VALUES (2, 'k', 2, 'c', 'p', 'h')", [])
            .unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
        drop(conn);
        assert_eq!(names(d.path()), ["registry.db"]);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // A writer at work: read through its WAL, with SQLite's locks.
        let (w, _) = open(d.path(), false).unwrap();
        w.execute("INSERT INTO chain VALUES (2, 'k', 2, 'c', 'p', 'h')", [])
            .unwrap();
        assert_eq!(read_mode(&path), (LOCKED, true));
        let (conn, _) = open_read(d.path()).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM chain", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        let at = |secs| utc(OffsetDateTime::from_unix_timestamp(secs).unwrap()).unwrap();
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_294_400 + 3661), "2024-03-01T13:01:01Z");
        assert_eq!(now_utc().len(), 20);
        assert_eq!(parse_utc("2026-03-01").unwrap(), "2026-03-01T00:00:00Z");
        assert_eq!(
            parse_utc("2026-03-01T12:00:00.5+02:00").unwrap(),
            "2026-03-01T10:00:00Z"
        );
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "2026-02-29T00:00:00Z",
            "yesterday",
            "",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, path) = open(dir.path(), true).unwrap();
        let v: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        drop(conn);
        // Opening again migrates nothing (the tables exist already).
        let (conn, _) = open(dir.path(), false).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(conn);
        let e = open(dir.path(), false).err().unwrap().to_string();
        assert!(e.contains("newer amun") && e.contains("99"), "{e}");
        assert!(path.ends_with(DB_FILE));
    }

    #[test]
    fn an_empty_file_or_another_database_is_not_a_registry_and_stays_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        std::fs::write(&path, b"").unwrap();
        let e = open(dir.path(), false).err().unwrap().to_string();
        assert!(e.contains("not a registry"), "{e}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        std::fs::remove_file(&path).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("CREATE TABLE notes (t TEXT)").unwrap();
        drop(other);
        let e = open(dir.path(), false).err().unwrap().to_string();
        assert!(e.contains("not a registry"), "{e}");
        let names: Vec<String> = Connection::open(&path)
            .unwrap()
            .prepare("SELECT name FROM sqlite_master")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(names, vec!["notes".to_string()]);
    }

    #[test]
    fn the_chain_links_every_record_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, path) = open(dir.path(), true).unwrap();
        let tx = immediate(&mut conn, &path).unwrap();
        let a = append(&tx, &path, RecordKind::Request, 1, &("a", 1)).unwrap();
        let b = append(&tx, &path, RecordKind::Request, 2, &("b", 2)).unwrap();
        tx.commit().unwrap();
        assert_eq!(a.prev, GENESIS);
        assert_eq!(b.prev, a.hash);
        assert_eq!(
            b.hash,
            link_hash(&a.hash, RecordKind::Request, 2, &content_sha256(&("b", 2)))
        );
        assert_eq!(chain(&conn, &path).unwrap(), vec![a, b]);
    }
}
