//! A version's certificate: what was deleted and when, how, the evidence,
//! and every hash a reader needs to check it against the registry and the
//! files — as JSON (for machines) and Markdown (for people).
use super::audit::{RetrainComparison, VersionAudit};
use super::db::{self, ChainEntry};
use super::kinds::{How, RecordKind, SampleNames, VersionKind};
use super::{Registry, RetrainRow, Sample, VersionRow};
use crate::error::{Error, Result};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Certificate format tag.
pub use crate::outputs::CERTIFICATE_FORMAT as FORMAT;

/// The data the registry's model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertData {
    pub dataset: String,
    pub train_size: i64,
    pub data_sha256: String,
    pub samples_sha256: String,
    /// `index` or `path`.
    pub sample_names: SampleNames,
}

/// A request a version forgot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub request: i64,
    pub received: String,
    pub added: String,
    pub reference: String,
    pub source: String,
    /// The version that absorbed it first, and how.
    pub absorbed_by: i64,
    pub how: How,
    pub size: i64,
    pub samples_sha256: String,
    /// Every sample: index, file (image folders) and sha256.
    pub samples: Vec<CertSample>,
}

/// One deleted sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertSample {
    pub index: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub sha256: String,
}

/// Where a version's record stands in the chain, and the chain's end when
/// the certificate was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertChain {
    pub record_seq: i64,
    pub record_hash: String,
    pub head_seq: i64,
    pub head_hash: String,
}

/// The certificate of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub format: String,
    pub generated: String,
    /// When `amun registry certificate` wrote it from the records, after
    /// the commit, because the version's certificate file was missing (the
    /// certificate its apply or retrain issued, if any, was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued: Option<String>,
    /// The registry's identity: the hash of its first chain record (as
    /// receipts name it). Certificates written by an amun before this one
    /// hold the registry folder's absolute path here instead.
    pub registry: String,
    pub data: CertData,
    pub version: VersionRow,
    /// Version ids from its root to it.
    pub lineage: Vec<i64>,
    /// Every request it has forgotten (its own and its ancestors').
    pub deleted: Vec<Deleted>,
    pub audit: VersionAudit,
    /// The retrain that made it (retrained versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<RetrainRow>,
    /// Exact retrains of its forgotten set, compared with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub against_retrain: Vec<RetrainComparison>,
    pub chain: CertChain,
}

/// How a certificate names the data: a dataset folder by its name, not
/// its path on the machine that made the registry (its content is named by
/// `data_sha256`).
pub(crate) fn dataset_name(spec: &crate::data::DataSpec) -> String {
    let mut s = spec.clone();
    if s.dataset.contains('/')
        && let Some(n) = std::path::Path::new(&spec.dataset).file_name()
    {
        s.dataset = n.to_string_lossy().into_owned();
    }
    s.train_label()
}

/// The certificate of version `id`, from the registry as it is now.
pub fn certificate(reg: &Registry, id: i64) -> Result<Certificate> {
    let chain = db::chain(&reg.conn, &reg.db)?;
    let head = chain
        .last()
        .ok_or_else(|| Error::invalid("certificate", "the registry's chain is empty"))?;
    build(reg, id, &chain, head)
}

/// Version `id`'s certificate as it was made when the chain ended at
/// `head`: only what the chain held then (absorptions and retrains
/// recorded later are left out), so [`super::verify`] can re-derive a
/// certificate file from the records and name an edited one.
pub(crate) fn build(
    reg: &Registry,
    id: i64,
    chain: &[ChainEntry],
    head: &ChainEntry,
) -> Result<Certificate> {
    let v = reg.version(id)?;
    let info = reg.info()?;
    let spec = reg.data_spec()?;
    let recorded = |kind: RecordKind, item: i64| {
        chain
            .iter()
            .any(|e| e.kind == kind && e.item == item && e.seq <= head.seq)
    };
    let versions: Vec<VersionRow> = reg
        .versions()?
        .into_iter()
        .filter(|x| recorded(RecordKind::Version, x.id))
        .collect();
    let mut lineage = vec![v.id];
    let mut cur = v.parent;
    while let Some(p) = cur {
        lineage.push(p);
        cur = versions.iter().find(|x| x.id == p).and_then(|x| x.parent);
    }
    lineage.reverse();
    let abs: Vec<_> = reg
        .absorptions()?
        .into_iter()
        .filter(|a| recorded(RecordKind::Absorption, a.id) && lineage.contains(&a.version))
        .collect();
    let mut absorbed: Vec<i64> = abs.iter().map(|a| a.request).collect();
    absorbed.sort_unstable();
    absorbed.dedup();
    let mut deleted = Vec::new();
    for r in absorbed {
        let row = reg.request(r)?;
        let first = abs
            .iter()
            .filter(|a| a.request == r)
            .min_by_key(|a| a.version)
            .ok_or_else(|| Error::invalid("certificate", format!("request {r}: no absorption")))?;
        let samples: Vec<Sample> = reg.request_samples(r)?;
        deleted.push(Deleted {
            request: r,
            received: row.received,
            added: row.added,
            reference: row.reference,
            source: row.source,
            absorbed_by: first.version,
            how: first.how,
            size: row.size,
            samples_sha256: row.samples_sha256,
            samples: samples
                .into_iter()
                .map(|s| CertSample {
                    index: s.idx,
                    path: s.path,
                    sha256: s.sha256,
                })
                .collect(),
        });
    }
    let audit = v.audit()?;
    let retrain = match v.retrain {
        Some(r) => reg.retrains()?.into_iter().find(|x| x.id == r),
        None => None,
    };
    let mut against = Vec::new();
    for x in versions.iter().filter(|x| x.kind == VersionKind::Retrained) {
        if let Some(c) = x.audit()?.retrain
            && c.version == id
        {
            against.push(c);
        }
    }
    let rec = chain
        .iter()
        .find(|e| e.kind == RecordKind::Version && e.item == id)
        .ok_or_else(|| {
            Error::invalid("certificate", format!("version {id} is not in the chain"))
        })?;
    Ok(Certificate {
        format: FORMAT.into(),
        generated: db::now_utc(),
        reissued: None,
        // The registry's identity, not where it lies: a certificate names
        // no machine's path, and the folder can move.
        registry: reg.id()?,
        data: CertData {
            dataset: dataset_name(&spec),
            train_size: info.train_size,
            data_sha256: info.data_sha256,
            samples_sha256: info.samples_sha256,
            sample_names: info.sample_names,
        },
        version: v,
        lineage,
        deleted,
        audit,
        retrain,
        against_retrain: against,
        chain: CertChain {
            record_seq: rec.seq,
            record_hash: rec.hash.clone(),
            head_seq: head.seq,
            head_hash: head.hash.clone(),
        },
    })
}

/// The JSON text a certificate file holds.
pub(crate) fn json_text(c: &Certificate) -> String {
    let mut s = serde_json::to_string_pretty(c).expect("certificates serialise");
    s.push('\n');
    s
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

/// Markdown written a line at a time.
struct Md(String);

impl Md {
    fn line(&mut self, l: impl AsRef<str>) {
        self.0.push_str(l.as_ref());
        self.0.push('\n');
    }
}

/// The certificate as Markdown.
pub fn render_markdown(c: &Certificate) -> String {
    let mut md = Md(String::new());
    md_title(&mut md, c);
    md_deleted(&mut md, c);
    md_how(&mut md, c);
    md_evidence(&mut md, c);
    md_hashes(&mut md, c);
    md.0
}

/// The title, the version and its lineage.
fn md_title(md: &mut Md, c: &Certificate) {
    let v = &c.version;
    md.line(format!("# Deletion certificate: version {}", v.id));
    md.line("");
    md.line(format!(
        "Registry `{}`, generated {}. Model version {} ({}) of {} ({} training samples), made {}.",
        c.registry, c.generated, v.id, v.kind, c.data.dataset, c.data.train_size, v.created
    ));
    if let Some(t) = &c.reissued {
        md.line("");
        md.line(format!(
            "Re-issued {t} from the registry's records: the version's certificate file was \
             missing."
        ));
    }
    md.line(format!(
        "Lineage: {}.",
        c.lineage
            .iter()
            .map(|x| format!("v{x}"))
            .collect::<Vec<_>>()
            .join(" → ")
    ));
    md.line("");
}

/// "What was deleted": the requests, then their first 50 samples.
fn md_deleted(md: &mut Md, c: &Certificate) {
    let v = &c.version;
    md.line("## What was deleted");
    md.line("");
    if c.deleted.is_empty() {
        md.line("Nothing: this version forgot no sample.");
        return;
    }
    md.line(format!(
        "{} request(s), {} training sample(s) in all (indices sha256 `{}`).",
        c.deleted.len(),
        v.forgotten,
        v.forgotten_sha256
    ));
    md.line("");
    md.line(
        "| request | received | added | reference | samples | absorbed by | how | samples sha256 |",
    );
    md.line("|---|---|---|---|---|---|---|---|");
    for d in &c.deleted {
        md.line(format!(
            "| {} | {} | {} | {} | {} | v{} | {} | `{}` |",
            d.request,
            d.received,
            d.added,
            crate::report::cell(&d.reference),
            d.size,
            d.absorbed_by,
            d.how,
            d.samples_sha256
        ));
    }
    md.line("");
    md_samples(md, c);
}

/// The deleted samples' table, its first 50 rows (all are in the JSON).
fn md_samples(md: &mut Md, c: &Certificate) {
    md.line("| request | sample | file | sha256 |");
    md.line("|---|---|---|---|");
    let mut shown = 0;
    let total: usize = c.deleted.iter().map(|d| d.samples.len()).sum();
    'outer: for d in &c.deleted {
        for smp in &d.samples {
            if shown == 50 {
                break 'outer;
            }
            md.line(format!(
                "| {} | {} | {} | `{}` |",
                d.request,
                smp.index,
                smp.path.as_deref().unwrap_or("-"),
                smp.sha256
            ));
            shown += 1;
        }
    }
    if total > shown {
        md.line(format!(
            "| … | {} more (all in the JSON) | | |",
            total - shown
        ));
    }
}

/// "How": trained, retrained exactly, or unlearned (and calibrated).
fn md_how(md: &mut Md, c: &Certificate) {
    let v = &c.version;
    md.line("");
    md.line("## How");
    md.line("");
    match (v.kind, &c.retrain) {
        (VersionKind::Trained, _) => md.line("The registry's root: the model as trained."),
        (VersionKind::Retrained, Some(r)) => md.line(format!(
            "Exact retrain {} ({}), started {}: trained from scratch with the root's recipe and \
             seed on the training set without the {} sample(s) version {} had forgotten; its \
             sidecar's exclusion (indices sha256 `{}`) was checked against the registry.",
            r.id, r.executor, r.created, r.excluded, r.based_on, r.excluded_sha256
        )),
        _ => {
            md.line(format!(
                "Unlearned from version {} by `{}` (seed {}, {:.1} s).",
                v.parent.unwrap_or(0),
                v.method.as_deref().unwrap_or("?"),
                v.seed as u64,
                v.seconds
            ));
            if let Some(st) = &v.settings {
                md.line("");
                md.line(format!("Settings: `{st}`"));
            }
            if let Some(cal) = &v.calibration {
                md.line("");
                md.line(
                    "Calibrated without a retrain, each request in turn (full records in the \
                     JSON):",
                );
                md.line("");
                for r in cal.parse().unwrap_or_default() {
                    md_calibration(md, &r);
                }
            } else {
                md.line("");
                md.line("Not calibrated: the method ran at its settings.");
            }
        }
    }
}

/// One request's calibration: its before → after lines, or (a record made
/// before they were kept) the chosen point as it always rendered.
fn md_calibration(md: &mut Md, r: &super::CalibrationRecord) {
    let c = &r.calibration;
    if let Some(lines) = calibration_changes(c) {
        md.line(format!(
            "- request {}: {}, {} epoch(s) run ({} forgotten vs {} held-out \
             images, membership by {}); {}",
            r.request,
            serde_json::from_value::<crate::unlearn::Candidate>(c["chosen"].clone())
                .map_or_else(|_| "?".into(), |ch| ch.label()),
            c["epochs_run"],
            c["forget_size"],
            c["heldout_size"],
            serde_json::from_value::<crate::unlearn::Membership>(c["signal"].clone())
                .unwrap_or_default()
                .name(),
            c["verdict"].as_str().unwrap_or("")
        ));
        for l in lines {
            md.line(format!("  - {l}"));
        }
        if let Some(l) = cost_line(c) {
            md.line(format!("  - {l}"));
        }
        return;
    }
    md.line(format!(
        "- request {}: chose lr {} epoch {} (forget {:.1}% vs held-out {:.1}% \
         on {} images); {}",
        r.request,
        c["chosen"]["lr"],
        c["chosen"]["epoch"],
        c["chosen"]["probe"]["forget_acc"]
            .as_f64()
            .unwrap_or(f64::NAN),
        c["chosen"]["probe"]["heldout_acc"]
            .as_f64()
            .unwrap_or(f64::NAN),
        c["heldout_size"],
        c["why"].as_str().unwrap_or("")
    ));
}

/// "Evidence": held-out data, then RMIA, then the exact retrain.
fn md_evidence(md: &mut Md, c: &Certificate) {
    md.line("");
    md.line("## Evidence");
    md.line("");
    let h = &c.audit.heldout;
    md.line(format!(
        "Against held-out data ({} test images no calibration looked at):",
        h.test_images
    ));
    md.line("");
    md.line("| forgotten acc % | retain acc % | test acc % | loss AUC forgotten vs test % (ideal 50) | confidence KS |");
    md.line("|---|---|---|---|---|");
    md.line(format!(
        "| {} | {:.2} | {:.2} | {} | {} |",
        opt(h.forget_acc),
        h.retain_acc,
        h.test_acc,
        opt(h.loss_auc),
        opt(h.confidence_ks)
    ));
    md.line("");
    match &c.audit.rmia {
        Some(r) => {
            md.line("Against the registry's RMIA reference models:");
            md.line("");
            md.line("| UA % | RA % | TA % | RMIA AUC forgotten/test % (ideal 50) | RMIA AUC retain/test % | TPR@1% FPR | MIS % |");
            md.line("|---|---|---|---|---|---|---|");
            md.line(format!(
                "| {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                r.scores.unlearn,
                r.scores.retain,
                r.scores.test,
                r.scores.mia,
                r.rmia_auc_retain_test,
                r.tpr_at_1pct_fpr,
                r.mis
            ));
        }
        None => md.line("No RMIA reference models in this registry."),
    }
    md.line("");
    md_against_retrain(md, c);
}

/// The comparisons with exact retrains of the same forgotten set.
fn md_against_retrain(md: &mut Md, c: &Certificate) {
    let mut comps: Vec<&RetrainComparison> = c.against_retrain.iter().collect();
    if let Some(x) = &c.audit.retrain {
        comps.push(x);
    }
    if comps.is_empty() {
        md.line("No exact retrain of this forgotten set yet.");
        return;
    }
    md.line("Against the exact retrain:");
    md.line("");
    md.line("| unlearned version | retrained version | accuracy gap (points) | Avg. Gap |");
    md.line("|---|---|---|---|");
    for x in comps {
        md.line(format!(
            "| v{} | v{} | {:.2} | {} |",
            x.version,
            x.retrain_version,
            x.accuracy_gap,
            opt(x.avg_gap)
        ));
    }
}

/// "Hashes": the files', the data's and the chain's.
fn md_hashes(md: &mut Md, c: &Certificate) {
    let v = &c.version;
    md.line("");
    md.line("## Hashes");
    md.line("");
    md.line(format!(
        "- weights `{}`: sha256 `{}`",
        v.weights, v.weights_sha256
    ));
    md.line(format!(
        "- sidecar `{}`: sha256 `{}`",
        v.sidecar_file(),
        v.sidecar_sha256
    ));
    md.line(format!(
        "- data {}: content sha256 `{}`, samples sha256 `{}`",
        c.data.dataset, c.data.data_sha256, c.data.samples_sha256
    ));
    md.line(format!(
        "- chain: this version is record {} (hash `{}`); the chain ended at record {} (hash `{}`) \
         when this certificate was made",
        c.chain.record_seq, c.chain.record_hash, c.chain.head_seq, c.chain.head_hash
    ));
    md.line("");
    md.line("`amun registry verify` re-hashes every file and record and checks this certificate's chain hashes.");
}

/// The certificate files of version `id`.
pub fn certificate_paths(reg: &Registry, id: i64) -> (PathBuf, PathBuf) {
    let d = reg.dir().join("certificates");
    (
        d.join(format!("v{id:04}.md")),
        d.join(format!("v{id:04}.json")),
    )
}

/// Writes version `id`'s certificate (Markdown and JSON, atomically).
pub fn write_certificate(reg: &Registry, id: i64) -> Result<(PathBuf, PathBuf)> {
    let c = certificate(reg, id)?;
    let (md, json) = certificate_paths(reg, id);
    write(&c, &md, &json)
}

/// Writes version `id`'s certificate, whose file is missing, from the
/// records, marked `reissued` (as a receipt written again is).
pub(crate) fn reissue_certificate(reg: &Registry, id: i64) -> Result<(PathBuf, PathBuf)> {
    let mut c = certificate(reg, id)?;
    c.reissued = Some(c.generated.clone());
    let (md, json) = certificate_paths(reg, id);
    write(&c, &md, &json)
}

/// Writes `c` to its files, the JSON first (verify reads a Markdown
/// without its JSON as no certificate the registry issued).
fn write(c: &Certificate, md: &Path, json: &Path) -> Result<(PathBuf, PathBuf)> {
    fsutil::write_atomic(json, json_text(c).as_bytes())?;
    fsutil::write_atomic(md, render_markdown(c).as_bytes())?;
    Ok((md.to_path_buf(), json.to_path_buf()))
}

/// What a walk spent against an apply's cost cap, and where the cap came
/// from; `None` for a record without one (records before the apply's cap
/// was recorded render as they did).
fn cost_line(c: &serde_json::Value) -> Option<String> {
    let cost: crate::unlearn::CostCap = serde_json::from_value(c.get("cost")?.clone()).ok()?;
    let b = cost.batch?;
    let from = match b.origin {
        crate::unlearn::CapOrigin::Default => "the default",
        crate::unlearn::CapOrigin::Given => "given",
    };
    Some(format!(
        "cost: {:.2}× the same-recipe retrain ({} of {} image-steps), against a cap of {:.2}× \
         (its share of the apply's cap, {}× the exact retrain the batch replaces, {from})",
        cost.spent_fraction(),
        cost.spent,
        cost.retrain_image_steps,
        cost.fraction,
        b.fraction
    ))
}

/// A calibration record's before → after lines with their bands
/// (`Change::line`); `None` for a record made before they were kept,
/// which renders as it always did.
fn calibration_changes(c: &serde_json::Value) -> Option<Vec<String>> {
    let changes: Vec<crate::unlearn::Change> =
        serde_json::from_value(c.get("changes")?.clone()).ok()?;
    (!changes.is_empty()).then(|| changes.iter().map(|ch| ch.line()).collect())
}
