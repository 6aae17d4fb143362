//! Verification: the chain's links, every record's content against the
//! hash the chain holds for it, every record against the chain (none added
//! or removed outside amun), every file against the sha256 its version
//! recorded, and every certificate's chain hashes; the chain against its
//! anchor (`anchor.log` and its copy) and the receipts `add` handed out,
//! so a database put back to an older copy or cut at its end is named.
//! Each problem is named.
use super::anchor;
use super::db::{self, GENESIS, content_sha256, link_hash};
use super::kinds::RecordKind;
use super::samples::{self, digest};
use super::{Registry, read_absorptions, read_policies, read_retrains};
use crate::error::{Error, IoContext, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One thing that is not as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What: `request 3`, `version 2`, `chain record 7`, a file.
    pub what: String,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.problem)
    }
}

/// What [`verify`] checked and found.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub records: usize,
    pub files: usize,
    pub versions: usize,
    pub requests: usize,
    pub head_seq: i64,
    pub head_hash: String,
    /// The newest chain record the anchor (or its copy) recorded; `None`
    /// without an anchor, when a rolled-back database cannot be told.
    pub anchored_seq: Option<i64>,
    /// The newest chain record each anchor file recorded: `anchor.log`,
    /// then its copy (the file, the record).
    pub anchor_ends: Vec<(String, i64)>,
    /// Receipts checked (the registry's own and those given).
    pub receipts: usize,
    /// Training samples of the registry's data re-hashed against those it
    /// recorded (an image folder's files, as apply checks them).
    pub data_rehashed: usize,
    /// What verify checked of the registry's data, and what it left to
    /// apply and retrain (what it would have to decode), in words.
    pub data: String,
    pub findings: Vec<Finding>,
    /// What is not a problem but worth saying (an interrupted apply's
    /// leftovers, moved to set-aside/ by the next one).
    pub notes: Vec<String>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verifies the registry in `dir`: its records and every file, against its
/// anchor and the receipts in `receipts/` and `receipts`. Writes nothing:
/// an anchor that lacks the newest commits (a command stopped between its
/// commit and its anchor line) is noted, and the next command that
/// commits appends them.
pub fn verify(dir: &Path, receipts: &[PathBuf]) -> Result<Verified> {
    let reg = Registry::open_read(dir)?;
    // A file that is no receipt at all (empty, not JSON, another format)
    // is the argument's fault, not a finding about the registry (hostile11
    // KK-RCPT: a receipt file an interrupted add left empty).
    let mut foreign = Vec::new();
    for r in receipts {
        let rec = anchor::parse_receipt(r).map_err(|why| {
            Error::invalid(
                format!("--receipt {}", r.display()),
                format!("{why}; expected a receipt `amun registry add` wrote"),
            )
        })?;
        foreign.push(rec.registry);
    }
    let id = db::chain(&reg.conn, &reg.db)?
        .first()
        .map(|e| e.hash.clone())
        .unwrap_or_default();
    let mut v = check_with(&reg, receipts)?;
    check_data(&reg, &mut v)?;
    v.notes.extend(super::staging::leftover_notes(dir));
    // A receipt of another registry says nothing of this one: when it is
    // all that was found, the registry is intact and the argument wrong
    // (hostile12 N26).
    let others: Vec<(&PathBuf, &String)> = (receipts.iter().zip(&foreign))
        .filter(|(_, r)| **r != id)
        .collect();
    if let Some((file, theirs)) = others.first()
        && v.findings.len() == others.len()
    {
        return Err(Error::invalid(
            format!("--receipt {}", file.display()),
            format!(
                "is not a receipt of {}: it was issued by another registry (identity {}, this \
                 one is {}), so it acknowledges none of its requests; {} itself is intact ({}, \
                 {}); verify the receipt with the registry that \
                 issued it (`amun registry verify --registry DIR --receipt {}`)",
                dir.display(),
                crate::fsutil::short_pair(theirs, &id).0,
                crate::fsutil::short_pair(theirs, &id).1,
                dir.display(),
                super::counted(v.records, "chained record"),
                super::counted(v.requests, "request"),
                file.display()
            ),
        ));
    }
    Ok(v)
}

/// The registry's training data against the samples it recorded, as apply
/// checks it before any work (hostile14 RA5: an image replaced was called
/// intact). An image folder's files are re-hashed without decoding, as
/// apply hashes them; other data's samples have no files and would have to
/// be decoded whole, which verify leaves to apply and says so. Only
/// `verify` does this: the commands that check the registry before they
/// write leave the data to their own checks.
fn check_data(reg: &Registry, v: &mut Verified) -> Result<()> {
    // No registry row: a finding already.
    let Ok(spec) = reg.data_spec() else {
        return Ok(());
    };
    if reg.data_folder_missing()?.is_some() {
        v.data = format!(
            "training data not re-hashed (its folder {} is missing)",
            spec.dataset
        );
        return Ok(());
    }
    let label = spec.train_label();
    match samples::check_recorded(&reg.samples()?, &spec, None) {
        Ok(Some(n)) => {
            v.data_rehashed = n;
            v.data = format!(
                "{n} training images re-hashed (the test images: apply and retrain check them as \
                 they load them)"
            );
        }
        Ok(None) => {
            v.data = format!(
                "training data not re-hashed ({label} has no file per sample; apply and retrain \
                 check it as they load it)"
            );
        }
        // The data differs from the samples recorded (check_same's error).
        Err(Error::Invalid { what, msg }) if what == "dataset" => v.findings.push(Finding {
            what: "training data".into(),
            problem: format!(
                "{msg}; apply and retrain refuse until the data is put back as it was"
            ),
        }),
        Err(e) => v.findings.push(Finding {
            what: "training data".into(),
            problem: e.to_string(),
        }),
    }
    Ok(())
}

/// [`verify`] of an open registry without the receipts given by hand.
pub(crate) fn check(reg: &Registry) -> Result<Verified> {
    check_with(reg, &[])
}

/// Refuses (naming the findings) a registry that `amun registry verify`
/// would report, with every check verify runs, its data's re-hash included:
/// a certificate is never issued over a registry whose data or files are
/// no longer as recorded (hostile15 N11), nor one whose anchor is gone
/// (N13). `not_done`: what the refusal says was not done. Returns verify's
/// warnings otherwise.
pub(crate) fn refuse_unverified(reg: &Registry, not_done: &str) -> Result<Vec<String>> {
    let mut v = check(reg)?;
    check_data(reg, &mut v)?;
    refuse_findings(reg, &v, not_done)?;
    Ok(v.notes
        .into_iter()
        .filter(|n| n.starts_with("warning:"))
        .collect())
}

/// The error for a registry whose verification `v` found problems (the
/// first three named), or `Ok` when it found none. `not_done`: what the
/// refusal says was not done (`nothing was applied`).
pub(crate) fn refuse_findings(reg: &Registry, v: &Verified, not_done: &str) -> Result<()> {
    if v.ok() {
        return Ok(());
    }
    let named: Vec<String> = v.findings.iter().take(3).map(|f| f.to_string()).collect();
    let more = match v.findings.len().saturating_sub(named.len()) {
        0 => String::new(),
        n => format!(" and {n} more problem(s)"),
    };
    Err(Error::invalid(
        format!("registry {}", reg.dir.display()),
        format!(
            "fails verification, so {not_done}: {}{more}; `amun registry verify` lists every \
             finding",
            named.join("; ")
        ),
    ))
}

fn check_with(reg: &Registry, given: &[PathBuf]) -> Result<Verified> {
    let mut f: Vec<Finding> = Vec::new();
    let mut find = |what: String, problem: String| f.push(Finding { what, problem });
    let chain = db::chain(&reg.conn, &reg.db)?;
    check_links(&chain, &mut find);
    // Every record's content, by (kind, item).
    let mut rows: BTreeMap<(RecordKind, i64), String> = BTreeMap::new();
    let info = reg.info().ok();
    if let Some(i) = &info {
        rows.insert((RecordKind::Registry, 1), content_sha256(i));
    }
    for p in read_policies(&reg.conn, &reg.db)? {
        rows.insert((RecordKind::Policy, p.id), content_sha256(&p));
    }
    let requests = reg.requests()?;
    for r in &requests {
        check_request_samples(reg, r, &mut find)?;
        rows.insert((RecordKind::Request, r.id), content_sha256(r));
    }
    let versions = reg.versions()?;
    for v in &versions {
        rows.insert((RecordKind::Version, v.id), content_sha256(v));
    }
    other_rows(reg, &mut rows)?;
    check_rows_against_chain(&chain, &rows, &mut find);
    if let Some(i) = &info {
        check_samples_table(reg, i, &mut find)?;
    }
    let mut nfiles = 0;
    let mut notes = Vec::new();
    check_version_files(reg, &versions, &mut find, &mut nfiles);
    if let Some(i) = &info {
        check_refs(i, &mut find, &mut nfiles);
    }
    super::graphs::check(reg, &versions, &mut find, &mut notes, &mut nfiles)?;
    let mut receipts = anchor::receipt_files(&reg.dir);
    receipts.extend(given.iter().cloned());
    let anchor_ends = anchor::check(reg, &chain, &receipts, &mut find, &mut notes)?;
    let anchored_seq = anchor_ends.iter().map(|(_, s)| *s).max();
    missing_receipts(reg, &requests, &mut notes);
    certificates(reg, &chain, &versions, &mut find, &mut notes, &mut nfiles)?;
    staging_note(reg, &mut notes);
    set_aside_note(reg, &mut notes);
    if let Some(missing) = reg.data_folder_missing()? {
        notes.push(format!("warning: {missing}"));
    }
    let (head_seq, head_hash) = chain
        .last()
        .map_or((0, GENESIS.to_string()), |e| (e.seq, e.hash.clone()));
    Ok(Verified {
        records: chain.len(),
        files: nfiles,
        versions: versions.len(),
        requests: requests.len(),
        head_seq,
        head_hash,
        anchored_seq,
        anchor_ends,
        receipts: receipts.len(),
        data_rehashed: 0,
        data: String::new(),
        findings: f,
        notes,
    })
}

/// A note naming each request whose receipt is not in `receipts/` (its
/// add stopped between its commit and its receipt, the receipt could not
/// be written, or it was deleted), and how to write it again.
fn missing_receipts(reg: &Registry, requests: &[super::RequestRow], notes: &mut Vec<String>) {
    let missing: Vec<i64> = requests
        .iter()
        .map(|r| r.id)
        .filter(|&id| !anchor::receipt_path(&reg.dir, id).exists())
        .collect();
    if missing.is_empty() {
        return;
    }
    let list = missing
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    notes.push(format!(
        "warning: request(s) {list} have no receipt in {}/ (an add stopped between its commit \
         and its receipt, the receipt could not be written, or it was deleted); `amun registry \
         receipt --registry {} --request N` writes one again from the records",
        reg.dir.join(anchor::RECEIPTS).display(),
        reg.dir.display()
    ));
}

/// The chain's links: each record's link to the one before it, and its own
/// hash.
fn check_links(chain: &[db::ChainEntry], find: &mut impl FnMut(String, String)) {
    let mut prev = GENESIS.to_string();
    for e in chain {
        if e.prev != prev {
            find(
                format!("chain record {}", e.seq),
                "its link to the record before it does not match: a chain record before it \
                 was removed, inserted or edited"
                    .into(),
            );
        }
        if link_hash(&e.prev, e.kind, e.item, &e.content_sha256) != e.hash {
            find(
                format!("chain record {}", e.seq),
                format!("was edited ({} {})", e.kind, e.item),
            );
        }
        prev = e.hash.clone();
    }
}

/// A request's sample rows against the digest and count it recorded.
fn check_request_samples(
    reg: &Registry,
    r: &super::RequestRow,
    find: &mut impl FnMut(String, String),
) -> Result<()> {
    let samples = reg.request_samples(r.id)?;
    let got = digest(&samples);
    if got != r.samples_sha256 || samples.len() as i64 != r.size {
        let (got, want) = crate::fsutil::short_pair(&got, &r.samples_sha256);
        find(
            format!("request {}", r.id),
            format!(
                "its samples were edited: {} sample row(s) now, digest {}; the request \
                 recorded {} with digest {}",
                samples.len(),
                got,
                r.size,
                want
            ),
        );
    }
    Ok(())
}

/// The content sha256 of the records of the kinds that have no other
/// check: absorptions, retrains, anchor lines and graphs.
fn other_rows(reg: &Registry, rows: &mut BTreeMap<(RecordKind, i64), String>) -> Result<()> {
    for a in read_absorptions(&reg.conn, &reg.db)? {
        rows.insert((RecordKind::Absorption, a.id), content_sha256(&a));
    }
    for r in read_retrains(&reg.conn, &reg.db)? {
        rows.insert((RecordKind::Retrain, r.id), content_sha256(&r));
    }
    for r in anchor::rows(&reg.conn, &reg.db)? {
        rows.insert((RecordKind::Anchor, r.id), content_sha256(&r));
    }
    for g in super::graphs::rows(&reg.conn, &reg.db)? {
        rows.insert((RecordKind::Graph, g.id), content_sha256(&g));
    }
    Ok(())
}

/// Every record against the chain: none deleted, edited, or added outside
/// amun.
fn check_rows_against_chain(
    chain: &[db::ChainEntry],
    rows: &BTreeMap<(RecordKind, i64), String>,
    find: &mut impl FnMut(String, String),
) {
    let mut chained: BTreeMap<(RecordKind, i64), &db::ChainEntry> = BTreeMap::new();
    for e in chain {
        chained.insert((e.kind, e.item), e);
    }
    for ((kind, item), e) in &chained {
        match rows.get(&(*kind, *item)) {
            None => find(
                format!("{kind} {item}"),
                format!(
                    "was deleted: chain record {} recorded it, the database no longer holds it",
                    e.seq
                ),
            ),
            Some(h) if *h != e.content_sha256 => find(
                format!("{kind} {item}"),
                format!(
                    "was edited: its row's content sha256 is {}, chain record {} recorded {}",
                    crate::fsutil::short_pair(h, &e.content_sha256).0,
                    e.seq,
                    crate::fsutil::short_pair(h, &e.content_sha256).1
                ),
            ),
            _ => {}
        }
    }
    for (kind, item) in rows.keys() {
        if !chained.contains_key(&(*kind, *item)) {
            find(
                format!("{kind} {item}"),
                "is not in the chain: it was added outside amun".into(),
            );
        }
    }
}

/// The samples recorded when the registry was made.
fn check_samples_table(
    reg: &Registry,
    i: &super::RegistryRow,
    find: &mut impl FnMut(String, String),
) -> Result<()> {
    let all = reg.samples()?;
    let got = digest(&all);
    if got != i.samples_sha256 || all.len() as i64 != i.train_size {
        let (got, want) = crate::fsutil::short_pair(&got, &i.samples_sha256);
        find(
            "samples table".into(),
            format!(
                "was edited: {} row(s) with digest {}; the registry recorded {} with \
                 digest {}",
                all.len(),
                got,
                i.train_size,
                want
            ),
        );
    }
    Ok(())
}

/// Each version's weights and sidecar against the sha256 it recorded.
fn check_version_files(
    reg: &Registry,
    versions: &[super::VersionRow],
    find: &mut impl FnMut(String, String),
    nfiles: &mut usize,
) {
    for v in versions {
        for (file, want) in [
            (v.weights.clone(), &v.weights_sha256),
            (v.sidecar_file(), &v.sidecar_sha256),
        ] {
            let p = reg.dir.join(&file);
            *nfiles += 1;
            match crate::data::sha256_file(&p) {
                Err(_) if !p.exists() => find(
                    format!("version {}", v.id),
                    format!("its file {file} is missing"),
                ),
                Err(e) => find(format!("version {}", v.id), e.to_string()),
                Ok(got) if got != *want => find(
                    format!("version {}", v.id),
                    format!(
                        "its file {file} was replaced or changed: sha256 {}, the version \
                         recorded {}",
                        crate::fsutil::short_pair(&got, want).0,
                        crate::fsutil::short_pair(&got, want).1
                    ),
                ),
                Ok(_) => {}
            }
        }
    }
}

/// The reference models' folder against the digest the registry recorded
/// (when it has them).
fn check_refs(i: &super::RegistryRow, find: &mut impl FnMut(String, String), nfiles: &mut usize) {
    let (Some(r), Some(want)) = (&i.refs, &i.refs_sha256) else {
        return;
    };
    *nfiles += 1;
    match super::refs_digest(Path::new(r)) {
        Ok(got) if got == *want => {}
        Ok(got) => find(
            format!("reference models {r}"),
            format!(
                "changed since the registry was made (digest {}, recorded {})",
                crate::fsutil::short_pair(&got, want).0,
                crate::fsutil::short_pair(&got, want).1
            ),
        ),
        Err(e) => find(format!("reference models {r}"), e.to_string()),
    }
}

/// A note (no problem) naming the staged files of an interrupted apply or
/// retrain.
fn staging_note(reg: &Registry, notes: &mut Vec<String>) {
    let staging = reg.dir.join("staging");
    let (ours, theirs): (Vec<_>, Vec<_>) = std::fs::read_dir(&staging)
        .map(|r| r.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .partition(|e: &std::fs::DirEntry| {
            e.file_type().is_ok_and(|t| t.is_file())
                && super::staged_name(&e.file_name().to_string_lossy())
        });
    if !ours.is_empty() {
        notes.push(format!(
            "{} holds files of an interrupted apply or retrain; they are no version and the \
             next apply or retrain removes them",
            staging.display()
        ));
    }
    if !theirs.is_empty() {
        let mut names: Vec<String> = theirs
            .iter()
            .map(|e| e.path().display().to_string())
            .collect();
        names.sort();
        notes.push(format!(
            "{} in {} amun never stages: apply and retrain leave them there (keep your own \
             files elsewhere)",
            names.join(", "),
            staging.display()
        ));
    }
}

/// A note (never a problem: amun put them there) naming the files an
/// apply or retrain moved to `set-aside/`.
fn set_aside_note(reg: &Registry, notes: &mut Vec<String>) {
    let root = reg.dir.join(super::SET_ASIDE);
    let Ok(rd) = std::fs::read_dir(&root) else {
        return;
    };
    let files: usize = rd
        .flatten()
        .filter_map(|e| std::fs::read_dir(e.path()).ok())
        .map(|r| r.count())
        .sum();
    if files > 0 {
        notes.push(format!(
            "{} holds {files} file(s) of versions the database did not hold, which an apply or \
             retrain moved there instead of deleting them: a stopped apply's leftovers, or a \
             released version of a database put back to an older copy; they are no version of \
             this registry — delete them once you know which",
            root.display()
        ));
    }
}

/// The number in a version's file name (`v0003.safetensors` → 3).
fn version_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix('v')?;
    let (num, ext) = rest.split_once('.')?;
    (num.len() >= 4 && !ext.is_empty() && num.bytes().all(|b| b.is_ascii_digit()))
        .then(|| num.parse().ok())
        .flatten()
}

/// Files under `versions/` and `certificates/` of versions the registry
/// does not hold, and every certificate against the records it certifies.
fn certificates(
    reg: &Registry,
    chain: &[db::ChainEntry],
    versions: &[super::VersionRow],
    find: &mut impl FnMut(String, String),
    notes: &mut Vec<String>,
    nfiles: &mut usize,
) -> Result<()> {
    let head = versions.iter().map(|v| v.id).max().unwrap_or(0);
    // Whether the anchor saw the head's successor commit (`None`: no anchor,
    // or its copy unreadable).
    let next_committed = anchor::committed(reg, head + 1)?;
    for sub in ["versions", "certificates"] {
        let mut names: Vec<String> = std::fs::read_dir(reg.dir.join(sub))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for name in names {
            let Some(id) = version_of(&name) else {
                continue;
            };
            if versions.iter().any(|v| v.id == id) {
                continue;
            }
            if sub == "versions" && id == head + 1 && next_committed.is_none() {
                // Without an anchor, a leftover of a stopped apply and the
                // released version of a rolled-back database look alike.
                notes.push(format!(
                    "{sub}/{name} belongs to no version: an apply or retrain stopped before \
                     its commit, or the released version of a database put back to an older \
                     copy — without an anchor (or with its copy unreadable) that cannot be \
                     told, so it is kept (apply refuses until it is moved away)"
                ));
            } else if sub == "versions" && id == head + 1 && next_committed == Some(false) {
                // Placed by an apply or retrain that stopped before its
                // commit (the anchor never saw the version): no version,
                // moved to set-aside/ by the next one.
                notes.push(format!(
                    "{sub}/{name} belongs to no version (an apply or retrain stopped before \
                     its commit, as the anchor says); the next apply or retrain moves it to \
                     {}/ (never deletes it)",
                    super::SET_ASIDE
                ));
            } else {
                find(
                    format!("{sub}/{name}"),
                    format!(
                        "belongs to version {id}, which the registry does not hold (its newest \
                         is version {head}): the database was rolled back or replaced by an \
                         older copy, or the version's records were deleted"
                    ),
                );
            }
        }
    }
    for v in versions {
        let (md, json) = super::certificate::certificate_paths(reg, v.id);
        let Ok(text) = std::fs::read_to_string(&json) else {
            if md.exists() {
                // The JSON is written first: a Markdown certificate without
                // it was not left by a stopped process.
                find(
                    format!("certificate {}", md.display()),
                    format!(
                        "has no JSON certificate beside it ({} is missing: deleted?), so it \
                         cannot be checked against the records and is not the certificate the \
                         registry issued; move it away, then `amun registry certificate \
                         --version {}` writes both",
                        json.display(),
                        v.id
                    ),
                );
                continue;
            }
            notes.push(no_certificate_note(chain, v.id, &json));
            continue;
        };
        *nfiles += 1;
        let markdown = std::fs::read_to_string(&md).ok();
        if markdown.is_some() {
            *nfiles += 1;
        } else {
            notes.push(format!(
                "version {}'s Markdown certificate {} is missing; `amun registry certificate \
                 --version {}` writes it",
                v.id,
                md.display(),
                v.id
            ));
        }
        check_certificate(
            reg,
            chain,
            Some(v.id),
            (&json, &text),
            markdown.as_deref().map(|m| (md.as_path(), m)),
            find,
        );
    }
    Ok(())
}

/// Version `id`'s weights and sidecar re-hashed against the sha256 the
/// registry recorded: a certificate names them by that sha256, so none is
/// printed or written for a version whose file was replaced (hostile14
/// RG11).
pub(crate) fn check_certified_files(reg: &Registry, id: i64) -> Result<()> {
    let v = reg.version(id)?;
    let mut found = Vec::new();
    check_version_files(
        reg,
        std::slice::from_ref(&v),
        &mut |what, problem| found.push(format!("{what}: {problem}")),
        &mut 0,
    );
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        reg.dir.display().to_string(),
        format!(
            "{}; its certificate would certify the recorded file, not the one there now, so \
             none is given; `amun registry verify` lists every finding",
            found.join("; ")
        ),
    ))
}

/// Version `id`'s issued certificate files checked against the records
/// (what verify does for every certificate), so a command that prints one
/// never prints an edited certificate as the registry's.
pub fn check_issued_certificate(reg: &Registry, id: i64) -> Result<()> {
    let (md, json) = super::certificate::certificate_paths(reg, id);
    let text = std::fs::read_to_string(&json).at(&json)?;
    let markdown = std::fs::read_to_string(&md).ok();
    let chain = db::chain(&reg.conn, &reg.db)?;
    let mut found = Vec::new();
    check_certificate(
        reg,
        &chain,
        Some(id),
        (&json, &text),
        markdown.as_deref().map(|m| (md.as_path(), m)),
        &mut |what, problem| found.push(format!("{what} {problem}")),
    );
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        "registry",
        format!(
            "{}; `amun registry verify` lists every finding",
            found.join("; ")
        ),
    ))
}

/// Checks one certificate (`json`: its path and text; `md`: its Markdown,
/// when there is one) against the registry: the chain records it pins must
/// be there with the hashes it names, and its content must be what the
/// records give for its version as of the chain head it names (with the
/// file's own time and folder: a moved registry is no change). `id`: the
/// version its file name says, if any.
fn check_certificate(
    reg: &Registry,
    chain: &[db::ChainEntry],
    id: Option<i64>,
    json: (&Path, &str),
    md: Option<(&Path, &str)>,
    find: &mut impl FnMut(String, String),
) {
    let name = format!("certificate {}", json.0.display());
    let c: super::Certificate = match serde_json::from_str(json.1) {
        Ok(c) => c,
        Err(e) => return find(name, format!("unreadable: {e}")),
    };
    if id.is_some_and(|i| i != c.version.id) {
        return find(
            name,
            format!(
                "certifies version {}, not the one its name says",
                c.version.id
            ),
        );
    }
    if reg.version(c.version.id).is_err() {
        return find(
            name,
            format!(
                "certifies version {}, which the registry does not hold: the database was \
                 rolled back or replaced by an older copy, or the version's records were deleted",
                c.version.id
            ),
        );
    }
    let mut pinned = true;
    for (seq, hash) in [
        (c.chain.record_seq, &c.chain.record_hash),
        (c.chain.head_seq, &c.chain.head_hash),
    ] {
        match chain.iter().find(|e| e.seq == seq) {
            Some(e) if e.hash == *hash => {}
            Some(e) => {
                pinned = false;
                find(
                    name.clone(),
                    format!(
                        "names chain record {seq} with hash {}, the chain now holds {}: the \
                         history it certified was rewritten",
                        crate::fsutil::short_pair(hash, &e.hash).0,
                        crate::fsutil::short_pair(hash, &e.hash).1
                    ),
                )
            }
            None => {
                pinned = false;
                find(
                    name.clone(),
                    format!(
                        "names chain record {seq}, which the chain no longer holds: the \
                         database was rolled back or its history removed"
                    ),
                )
            }
        }
    }
    if !pinned {
        return;
    }
    let head = chain
        .iter()
        .find(|e| e.seq == c.chain.head_seq)
        .expect("checked above");
    let want = match super::certificate::build(reg, c.version.id, chain, head) {
        Ok(mut w) => {
            w.generated = c.generated.clone();
            w.reissued = c.reissued.clone();
            w.registry = c.registry.clone();
            // Certificates of an amun before this one named a dataset
            // folder by its full path: the same data.
            if reg
                .data_spec()
                .is_ok_and(|s| s.train_label() == c.data.dataset)
            {
                w.data.dataset = c.data.dataset.clone();
            }
            w
        }
        Err(e) => return find(name, format!("cannot be derived from the records: {e}")),
    };
    if super::certificate::json_text(&want) != json.1 {
        return find(
            name,
            format!(
                "was edited: its {} differs from what the registry's records give",
                first_difference(&want, json.1)
            ),
        );
    }
    if let Some((path, m)) = md {
        let r = super::certificate::render_markdown(&want);
        if m != r {
            let line = m
                .lines()
                .zip(r.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| m.lines().count().min(r.lines().count()))
                + 1;
            find(
                format!("certificate {}", path.display()),
                format!("was edited: line {line} differs from the certificate the records give"),
            );
        }
    }
}

/// What verify can say of version `id` without its certificate `json`:
/// that it was issued and removed when an apply or retrain committed after
/// the version (each writes the certificates missing before it), else
/// that it was never written or removed — which, the files cannot tell.
fn no_certificate_note(chain: &[db::ChainEntry], id: i64, json: &Path) -> String {
    let version = |e: &&db::ChainEntry| e.kind == RecordKind::Version;
    let own = chain
        .iter()
        .filter(version)
        .find(|e| e.item == id)
        .map_or(i64::MAX, |e| e.seq);
    match chain.iter().filter(version).find(|e| e.seq > own) {
        Some(e) => format!(
            "warning: version {id} has no certificate file ({} is missing): it was issued \
             (version {} committed after it, and an apply or retrain first writes every \
             certificate missing) and has since been removed; `amun registry certificate \
             --version {id}` writes it again, marked re-issued",
            json.display(),
            e.item
        ),
        None => format!(
            "version {id} has no certificate file ({} is missing): either it was never written \
             (its apply or retrain stopped after the commit) or it was removed; the next apply \
             or retrain, or `amun registry certificate --version {id}`, writes it",
            json.display()
        ),
    }
}

/// The first top-level field of a certificate file that differs from `want`.
fn first_difference(want: &super::Certificate, text: &str) -> String {
    let w = serde_json::to_value(want).unwrap_or_default();
    let got: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    if let (Some(w), Some(g)) = (w.as_object(), got.as_object()) {
        for (k, v) in w {
            if g.get(k) != Some(v) {
                return format!("`{k}`");
            }
        }
        if let Some(k) = g.keys().find(|k| !w.contains_key(*k)) {
            return format!("`{k}` (not a certificate field)");
        }
    }
    "text".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, kind: RecordKind, item: i64) -> db::ChainEntry {
        db::ChainEntry {
            seq,
            kind,
            item,
            content_sha256: String::new(),
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// Hostile7 CE7: a missing certificate was put down to a process that
    /// stopped after its commit, a cause verify cannot know; a version
    /// committed after it shows the certificate was issued (every apply or
    /// retrain first writes those missing), so it was removed.
    #[test]
    fn a_missing_certificate_is_said_issued_only_when_a_later_version_shows_it() {
        let json = Path::new("reg/certificates/v0002.json");
        let mut chain = vec![
            entry(1, RecordKind::Version, 1),
            entry(2, RecordKind::Request, 1),
            entry(3, RecordKind::Version, 2),
        ];
        let head = no_certificate_note(&chain, 2, json);
        assert!(head.contains("no certificate file"), "{head}");
        assert!(head.contains("either it was never written"), "{head}");
        assert!(!head.contains("stopped after the commit;"), "{head}");
        chain.push(entry(4, RecordKind::Request, 2));
        chain.push(entry(5, RecordKind::Version, 3));
        let older = no_certificate_note(&chain, 2, json);
        assert!(older.contains("it was issued"), "{older}");
        assert!(older.contains("version 3 committed after it"), "{older}");
        assert!(older.contains("removed"), "{older}");
        assert!(older.contains("re-issued"), "{older}");
    }
}
