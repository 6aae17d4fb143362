//! Verification: the chain's links, every record's content against the
//! hash the chain holds for it, every record against the chain (none added
//! or removed outside amun), every file against the sha256 its version
//! recorded, and every certificate's chain hashes. Each problem is named.
use super::db::{self, GENESIS, content_sha256, link_hash};
use super::samples::{digest, short};
use super::{Registry, read_absorptions, read_policies, read_retrains};
use crate::error::Result;
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
    pub findings: Vec<Finding>,
    /// What is not a problem but worth saying (an interrupted apply's
    /// leftovers, removed by the next one).
    pub notes: Vec<String>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verifies the registry in `dir`; `files`: also re-hash every artifact
/// (not only the records).
pub fn verify(dir: &Path) -> Result<Verified> {
    let reg = Registry::open(dir)?;
    check(&reg, true)
}

pub(crate) fn check(reg: &Registry, files: bool) -> Result<Verified> {
    let mut f: Vec<Finding> = Vec::new();
    let mut find = |what: String, problem: String| f.push(Finding { what, problem });
    let chain = db::chain(&reg.conn, &reg.db)?;
    // The links.
    let mut prev = GENESIS.to_string();
    for e in &chain {
        if e.prev != prev {
            find(
                format!("chain record {}", e.seq),
                "its link to the record before it does not match: a chain record before it \
                 was removed, inserted or edited"
                    .into(),
            );
        }
        if link_hash(&e.prev, &e.kind, e.item, &e.content_sha256) != e.hash {
            find(
                format!("chain record {}", e.seq),
                format!("was edited ({} {})", e.kind, e.item),
            );
        }
        prev = e.hash.clone();
    }
    // Every record's content, by (kind, item).
    let mut rows: BTreeMap<(String, i64), String> = BTreeMap::new();
    let info = reg.info().ok();
    if let Some(i) = &info {
        rows.insert(("registry".into(), 1), content_sha256(i));
    }
    for p in read_policies(&reg.conn, &reg.db)? {
        rows.insert(("policy".into(), p.id), content_sha256(&p));
    }
    let requests = reg.requests()?;
    for r in &requests {
        let samples = reg.request_samples(r.id)?;
        if digest(&samples) != r.samples_sha256 || samples.len() as i64 != r.size {
            find(
                format!("request {}", r.id),
                format!(
                    "its samples were edited: {} sample row(s) now, digest {}; the request \
                     recorded {} with digest {}",
                    samples.len(),
                    short(&digest(&samples)),
                    r.size,
                    short(&r.samples_sha256)
                ),
            );
        }
        rows.insert(("request".into(), r.id), content_sha256(r));
    }
    let versions = reg.versions()?;
    for v in &versions {
        rows.insert(("version".into(), v.id), content_sha256(v));
    }
    for a in read_absorptions(&reg.conn, &reg.db)? {
        rows.insert(("absorption".into(), a.id), content_sha256(&a));
    }
    for r in read_retrains(&reg.conn, &reg.db)? {
        rows.insert(("retrain".into(), r.id), content_sha256(&r));
    }
    let mut chained: BTreeMap<(String, i64), &db::ChainEntry> = BTreeMap::new();
    for e in &chain {
        chained.insert((e.kind.clone(), e.item), e);
    }
    for ((kind, item), e) in &chained {
        match rows.get(&(kind.clone(), *item)) {
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
                    short(h),
                    e.seq,
                    short(&e.content_sha256)
                ),
            ),
            _ => {}
        }
    }
    for (kind, item) in rows.keys() {
        if !chained.contains_key(&(kind.clone(), *item)) {
            find(
                format!("{kind} {item}"),
                "is not in the chain: it was added outside amun".into(),
            );
        }
    }
    // The samples recorded when the registry was made.
    if let Some(i) = &info {
        let all = reg.samples()?;
        if digest(&all) != i.samples_sha256 || all.len() as i64 != i.train_size {
            find(
                "samples table".into(),
                format!(
                    "was edited: {} row(s) with digest {}; the registry recorded {} with \
                     digest {}",
                    all.len(),
                    short(&digest(&all)),
                    i.train_size,
                    short(&i.samples_sha256)
                ),
            );
        }
    }
    let mut nfiles = 0;
    if files {
        for v in &versions {
            for (file, want) in [
                (v.weights.clone(), &v.weights_sha256),
                (v.sidecar_file(), &v.sidecar_sha256),
            ] {
                let p = reg.dir.join(&file);
                nfiles += 1;
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
                            short(&got),
                            short(want)
                        ),
                    ),
                    Ok(_) => {}
                }
            }
        }
        if let Some(i) = &info
            && let (Some(r), Some(want)) = (&i.refs, &i.refs_sha256)
        {
            nfiles += 1;
            match super::refs_digest(Path::new(r)) {
                Ok(got) if got == *want => {}
                Ok(got) => find(
                    format!("reference models {r}"),
                    format!(
                        "changed since the registry was made (digest {}, recorded {})",
                        short(&got),
                        short(want)
                    ),
                ),
                Err(e) => find(format!("reference models {r}"), e.to_string()),
            }
        }
        // Certificates pin the chain as it was when they were made.
        let cdir = reg.dir.join("certificates");
        let mut certs: Vec<PathBuf> = std::fs::read_dir(&cdir)
            .map(|r| {
                r.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        certs.sort();
        for p in certs {
            nfiles += 1;
            let name = format!("certificate {}", p.display());
            let c: super::Certificate = match crate::fsutil::read_json(&p) {
                Ok(c) => c,
                Err(e) => {
                    find(name, format!("unreadable: {e}"));
                    continue;
                }
            };
            for (seq, hash) in [
                (c.chain.record_seq, &c.chain.record_hash),
                (c.chain.head_seq, &c.chain.head_hash),
            ] {
                match chain.iter().find(|e| e.seq == seq) {
                    Some(e) if e.hash == *hash => {}
                    Some(e) => find(
                        name.clone(),
                        format!(
                            "names chain record {seq} with hash {}, the chain now holds {}: \
                             the history it certified was rewritten",
                            short(hash),
                            short(&e.hash)
                        ),
                    ),
                    None => find(
                        name.clone(),
                        format!("names chain record {seq}, which the chain no longer holds"),
                    ),
                }
            }
        }
    }
    let mut notes = Vec::new();
    let staging = reg.dir.join("staging");
    if std::fs::read_dir(&staging).is_ok_and(|mut r| r.next().is_some()) {
        notes.push(format!(
            "{} holds files of an interrupted apply or retrain; they are no version and the \
             next apply or retrain removes them",
            staging.display()
        ));
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
        findings: f,
        notes,
    })
}
