//! Deletion requests as a workflow: a registry in a folder that remembers
//! the requests a team received, the model versions it made from them, which
//! version absorbed which request, how, and with what evidence.
//!
//! ```text
//! REG/registry.db            SQLite (WAL): registry, samples, policies, requests,
//!                            request_samples, versions, absorptions, retrains, chain
//! REG/versions/vNNNN.*       each version's weights and sidecar
//! REG/certificates/vNNNN.*   each version's certificate (Markdown and JSON)
//! REG/staging/               what an apply or retrain writes before it commits
//! REG/set-aside/TIME-vNNNN/  a version's files the database lacks (moved, never deleted)
//! REG/anchor.log             the chain's head after every commit (outside the database)
//! REG/receipts/rNNNN.json    each request's receipt, as `add` handed it out
//! REG/graphs/<sha256>.pt2    an exported model's graph, which versions open from
//! REG/writer.lock            held by the one apply or retrain running
//! ```
//!
//! A version is made by [`apply`] (the pending requests, unlearned as one
//! batch by an [`crate::unlearn::UnlearnJob`]) or by [`retrain`] (the exact
//! retrain without every forgotten sample, a new root). Its files are
//! written under their final names first and the database commit is what
//! makes them a version, so a crash anywhere leaves the complete version or
//! none of it. Every record is chained by hashes; [`verify`] names what
//! changed.

pub mod anchor;
mod apply;
mod audit;
pub(crate) mod certificate;
pub mod db;
mod graphs;
mod handout;
mod issue;
mod kinds;
mod records;
mod retrain;
mod samples;
mod staging;
mod verify;
mod writer;

pub use anchor::Receipt;
pub use apply::{Applied, ApplyCap, ApplySpec, DEFAULT_APPLY_CAP, apply};
pub use audit::{HeldOutAudit, RetrainComparison, RmiaAudit, VersionAudit};
pub use certificate::{Certificate, certificate, render_markdown, write_certificate};
pub use issue::{Issued, ensure_certificate};
pub use kinds::{
    Committer, Executor, How, RecordKind, RequestState, SampleNames, UnknownKind, VersionKind,
};
pub use records::{CalibrationRecord, JsonText, VersionSettings};
pub use retrain::{
    RetrainExecutor, RetrainOutcome, RetrainSpec, retrain, run_retrain, wait_retrain,
};
pub use samples::{Named, Sample};
pub use verify::{Finding, Verified, check_issued_certificate, verify};

use crate::data::{DataSpec, ForgetSet};
use crate::error::{Error, IoContext, Result};
use crate::model::checkpoint::{self, ForgetSummary};
use crate::progress::Progress;
use db::{append, immediate, sql};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The registry record: what data and model the registry is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryRow {
    pub created: String,
    /// The data.
    pub data: JsonText<DataSpec>,
    /// sha256 of the whole dataset's content (both splits).
    pub data_sha256: String,
    pub train_size: i64,
    /// How requests name samples.
    pub sample_names: SampleNames,
    /// Digest of every training sample's index, path and sha256.
    pub samples_sha256: String,
    /// The last N test images calibrations look at (audits leave them out).
    pub holdout_test: i64,
    /// RMIA reference models (`amun rmia train-refs`), absolute path.
    pub refs: Option<String>,
    pub refs_sha256: Option<String>,
    /// The seed (a u64, stored as SQLite's i64 bit for bit).
    pub seed: i64,
}

impl RegistryRow {
    /// As output shows it: its data spec as an object, not as the JSON
    /// text the database holds.
    pub fn to_output(&self) -> serde_json::Value {
        records::nested(self, [("data", Some(self.data.value()))])
    }
}

/// When the exact retrain is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// After this many requests absorbed since the last root.
    pub after_requests: Option<usize>,
    /// After this fraction of the training set forgotten since the last root.
    pub after_fraction: Option<f64>,
}

impl Policy {
    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        if self.after_requests == Some(0) {
            return Err(Error::invalid(
                "retrain-after-requests",
                "expected at least 1 request",
            ));
        }
        if let Some(f) = self.after_fraction
            && !(f > 0.0 && f < 1.0)
        {
            return Err(Error::invalid(
                "retrain-after-fraction",
                format!("{f}: expected a fraction in (0,1), such as 0.05"),
            ));
        }
        Ok(())
    }

    /// In words.
    pub fn describe(&self) -> String {
        match (self.after_requests, self.after_fraction) {
            (None, None) => "never (retrain only with --force)".into(),
            (Some(n), None) => format!("after {n} request(s)"),
            (None, Some(f)) => format!("after {:.2}% of the training set", 100.0 * f),
            (Some(n), Some(f)) => format!(
                "after {n} request(s) or {:.2}% of the training set, whichever comes first",
                100.0 * f
            ),
        }
    }
}

/// A policy record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRow {
    pub id: i64,
    pub set_at: String,
    pub after_requests: Option<i64>,
    pub after_fraction: Option<f64>,
}

/// A deletion request as recorded (never changed afterwards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRow {
    pub id: i64,
    /// When the request was received (as the user says, UTC).
    pub received: String,
    /// When it was added to the registry (UTC).
    pub added: String,
    /// Free text: a ticket, an e-mail, a name.
    pub reference: String,
    /// The name of the file it was read from (without its folder).
    pub source: String,
    pub size: i64,
    /// Digest of its samples (index, path, sha256 each).
    pub samples_sha256: String,
}

/// A model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRow {
    pub id: i64,
    /// The version it was unlearned from (`None` for a root: the trained
    /// model or an exact retrain).
    pub parent: Option<i64>,
    pub kind: VersionKind,
    pub created: String,
    /// Relative to the registry folder.
    pub weights: String,
    pub weights_sha256: String,
    pub sidecar_sha256: String,
    pub method: Option<String>,
    /// The method's full settings.
    pub settings: Option<JsonText<VersionSettings>>,
    /// Each request's calibration record, when calibrated.
    pub calibration: Option<JsonText<Vec<CalibrationRecord>>>,
    pub audit: JsonText<VersionAudit>,
    /// Training samples this version has forgotten, cumulatively.
    pub forgotten: i64,
    /// sha256 of their sorted indices (as a sidecar's `indices_sha256`).
    pub forgotten_sha256: String,
    pub retrain: Option<i64>,
    pub seed: i64,
    pub seconds: f64,
}

impl VersionRow {
    /// As output shows it: its settings, calibration and audit as objects,
    /// not as the JSON text the database (and the chain's hash) holds.
    pub fn to_output(&self) -> serde_json::Value {
        records::nested(
            self,
            [
                ("settings", self.settings.as_ref().map(JsonText::value)),
                (
                    "calibration",
                    self.calibration.as_ref().map(JsonText::value),
                ),
                ("audit", Some(self.audit.value())),
            ],
        )
    }

    /// [`VersionRow::to_output`] as a field's `serialize_with`.
    pub fn serialize_output<S: serde::Serializer>(
        v: &VersionRow,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&v.to_output(), s)
    }

    /// Its audit, parsed.
    pub fn audit(&self) -> Result<VersionAudit> {
        self.audit
            .parse()
            .map_err(|e| Error::invalid(format!("version {}", self.id), format!("audit: {e}")))
    }

    /// The sidecar beside its weights.
    pub fn sidecar_file(&self) -> String {
        self.weights.replace(".safetensors", ".json")
    }
}

/// Which requests a version absorbed, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbsorptionRow {
    pub id: i64,
    pub version: i64,
    pub request: i64,
    pub how: How,
}

/// An exact retrain as started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainRow {
    pub id: i64,
    pub created: String,
    /// The version whose forgotten samples it excludes.
    pub based_on: i64,
    pub excluded: i64,
    pub excluded_sha256: String,
    pub executor: Executor,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestStatus {
    #[serde(flatten)]
    pub request: RequestRow,
    pub status: RequestState,
    /// The first version that absorbed it, and how.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absorbed_by: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how: Option<How>,
}

/// How a registry is made.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// A model trained by amun on the whole training split (its sidecar
    /// records the recipe an exact retrain repeats).
    pub checkpoint: PathBuf,
    /// The last N test images calibration looks at [default: a tenth of
    /// the test split].
    pub holdout_test: Option<usize>,
    /// RMIA reference models for the model's data.
    pub refs: Option<PathBuf>,
    pub policy: Policy,
    pub seed: u64,
    pub data_dir: PathBuf,
    /// A copy of the anchor kept elsewhere (another disk, a mounted
    /// share): every commit's head is appended there too.
    pub anchor_copy: Option<PathBuf>,
}

impl CreateSpec {
    /// hostile7 HT1b: however large a request, fewer held-out images leave
    /// calibration's membership test a null band no AUC can leave (at the
    /// applies' default level): no request could ever be calibrated.
    fn check_holdout(&self) -> Result<()> {
        let level = crate::unlearn::CalibrateSettings::default().level;
        let least = crate::unlearn::min_heldout(usize::MAX / 4, level).unwrap_or(1);
        match self.holdout_test.filter(|&n| n < least) {
            Some(n) => Err(Error::invalid(
                "holdout-test",
                format!(
                    "{n}: against fewer than {least} held-out images the membership test's null \
                     band at level {level} is wider than the 50 points an AUC can lie from 50, \
                     so no request could ever test as memorised; hold out at least {least} (by \
                     default a tenth of the test split)"
                ),
            )),
            None => Ok(()),
        }
    }
}

/// A request as `add` recorded it, with the receipt handed out for it.
#[derive(Debug, Clone, Serialize)]
pub struct AddedRequest {
    #[serde(flatten)]
    pub status: RequestStatus,
    pub receipt: Receipt,
    /// The receipt's file in the registry (`receipts/rNNNN.json`); `None`
    /// when it could not be written (a warning says why).
    pub receipt_file: Option<PathBuf>,
}

/// An open registry.
pub struct Registry {
    dir: PathBuf,
    db: PathBuf,
    conn: Connection,
    /// What went wrong after a commit (the anchor not written): the
    /// commit stands, the caller says so.
    warnings: Vec<String>,
}

/// The weights file of version `id`, relative to the registry folder.
fn weights_name(id: i64) -> String {
    format!("versions/v{id:04}.safetensors")
}

/// Whether `name` is one amun stages a version under: `vNNNN.safetensors`
/// or its sidecar `vNNNN.json`, or either's temporary name
/// (`.PID.tmp-NAME`, [`crate::fsutil::TempPath`]).
fn staged_name(name: &str) -> bool {
    let name = match name.strip_prefix('.').and_then(|n| n.split_once(".tmp-")) {
        Some((pid, rest)) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => name,
    };
    let stem = name
        .strip_suffix(".safetensors")
        .or_else(|| name.strip_suffix(".json"));
    stem.and_then(|s| s.strip_prefix('v'))
        .is_some_and(|id| id.len() >= 4 && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The folder inside a registry that files of a version the database does
/// not hold are moved to (never deleted).
const SET_ASIDE: &str = "set-aside";

/// Stops the process at a named point of a commit when
/// `AMUN_REGISTRY_STOP_AT` is `POINT@DIR`, DIR being this registry's
/// absolute path: the crash tests' way to kill an apply or retrain exactly
/// between its steps (the same signal as `kill -9`, so it leaves nothing a
/// real crash could not). `pause:POINT@DIR` stops it (SIGSTOP) there
/// instead, until a SIGCONT: how a test changes the folder between two
/// steps. Bound to one folder, a variable left set in a shell cannot stop
/// the work on any other registry.
pub(crate) fn stop_at(reg: &Registry, point: &str) {
    stop_at_dir(&reg.dir, point);
}

/// [`stop_at`] the registry in `dir` (one being made, too).
fn stop_at_dir(reg_dir: &Path, point: &str) {
    let Ok(v) = std::env::var("AMUN_REGISTRY_STOP_AT") else {
        return;
    };
    let Some((p, target)) = v.split_once('@') else {
        return;
    };
    let (signal, p) = match p.strip_prefix("pause:") {
        Some(p) => (libc::SIGSTOP, p),
        None => (libc::SIGKILL, p),
    };
    if p == point && std::path::absolute(reg_dir).is_ok_and(|d| d == Path::new(target)) {
        // SAFETY: raise only sends this process a signal.
        unsafe {
            libc::raise(signal);
        }
    }
}

impl Registry {
    /// Opens the registry in `dir`.
    pub fn open(dir: &Path) -> Result<Registry> {
        let (conn, db) = db::open(dir, false)?;
        Ok(Registry {
            dir: dir.to_path_buf(),
            db,
            conn,
            warnings: Vec::new(),
        })
    }

    /// Opens the registry in `dir` for reading only (see
    /// [`db::open_read`]): what verify, list, show and certificate use, so
    /// a read-only copy opens and nothing is written.
    pub fn open_read(dir: &Path) -> Result<Registry> {
        let (conn, db) = db::open_read(dir)?;
        Ok(Registry {
            dir: dir.to_path_buf(),
            db,
            conn,
            warnings: Vec::new(),
        })
    }

    /// The warnings of the commits so far (each once).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The registry's identity: the hash of its first chain record (the
    /// registry record: data, samples, seed, time of creation).
    pub fn id(&self) -> Result<String> {
        self.conn
            .query_row("SELECT hash FROM chain ORDER BY seq LIMIT 1", [], |r| {
                r.get(0)
            })
            .map_err(self.err())
    }

    /// The registry folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the checkpoint of version `v` (an exported model from the
    /// registry's copy of its graph).
    pub fn load_version(
        &self,
        v: &VersionRow,
        device: tch::Device,
    ) -> Result<(crate::model::Classifier, checkpoint::Sidecar)> {
        let path = self.dir.join(&v.weights);
        let mut sc = checkpoint::read_sidecar(&path)?;
        graphs::relocate(&self.dir, &mut sc.model);
        checkpoint::load_as(&path, sc, device)
    }

    /// The sidecar of version 1 (the root whose recipe every retrain
    /// repeats), pointed at the registry's copies of its graph.
    pub(crate) fn root_sidecar(&self) -> Result<checkpoint::Sidecar> {
        let mut sc = checkpoint::read_sidecar(&self.dir.join(weights_name(1)))?;
        graphs::relocate(&self.dir, &mut sc.model);
        Ok(sc)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        sql(&self.db)
    }

    /// Makes a registry in `dir` (absent or empty) whose first version is
    /// the checkpoint of `spec`. Built in a temporary folder beside `dir`
    /// and renamed: a failed create leaves nothing.
    pub fn create(dir: &Path, spec: &CreateSpec, progress: &dyn Progress) -> Result<Registry> {
        spec.policy.check()?;
        spec.check_holdout()?;
        check_new_registry_dir(dir)?;
        let copy = anchor_copy_checked(spec.anchor_copy.as_deref(), dir)?;
        // The weights missing is said as eval says it, not as a missing
        // sidecar (hostile11 SG4).
        crate::outputs::require_file(
            "--checkpoint",
            "an amun checkpoint (weights + JSON sidecar)",
            &spec.checkpoint,
        )?;
        let sc = checkpoint::read_sidecar(&spec.checkpoint)?;
        check_root_model(spec, &sc)?;
        refuse_in_dataset("registry", dir, &sc.data)?;
        if let Some(c) = &copy {
            refuse_in_dataset("anchor-copy", &c.path, &sc.data)?;
        }
        let data = crate::model::load_data(&sc.data, &spec.data_dir, progress)?;
        let (model, _) = checkpoint::load(&spec.checkpoint, tch::Device::Cpu)?;
        let holdout = spec.holdout_test.unwrap_or((data.test.len() / 10).max(1));
        crate::data::HeldOut::LastTest(holdout).split(&data, &spec.data_dir)?;
        let files = crate::data::sample_files(&sc.data)?;
        let refs = match &spec.refs {
            Some(r) => {
                let loaded = crate::audit::load_references(r, &data)?;
                refuse_unlike_refs(r, &loaded, &sc, &spec.checkpoint)?;
                // What an audit warns of the references (a manifest of an
                // older amun, unsealed), create warns too (hostile12 N31).
                for n in &loaded.notes {
                    progress.warn(n.strip_prefix("warning: ").unwrap_or(n));
                }
                Some((std::path::absolute(r).at(r)?, refs_digest(r)?, loaded))
            }
            None => None,
        };
        progress.note(&format!(
            "hashing the {} training samples of {}",
            data.train.len(),
            data.spec.train_label()
        ));
        let all = samples::hash_all(&data, files.as_deref())?;
        // Declared before the temporary folder: dropped after it.
        let mut made = staging::Made::default();
        let tmp = staging_dir(dir, &mut made, progress)?;
        let root = RootFiles::copy(tmp.path(), spec, &sc)?;
        let audit = audit::audit_version(
            &model,
            &data,
            &[],
            holdout,
            refs.as_ref().map(|r| &r.2),
            crate::seed::derive(spec.seed, "registry-audit", 0),
        )?;
        let created = db::now_utc();
        let row = RegistryRow {
            created: created.clone(),
            data: JsonText::new(&sc.data),
            data_sha256: data.content_sha256(),
            train_size: data.train.len() as i64,
            sample_names: if files.is_some() {
                SampleNames::Path
            } else {
                SampleNames::Index
            },
            samples_sha256: samples::digest(&all),
            holdout_test: holdout as i64,
            refs: refs.as_ref().map(|r| r.0.display().to_string()),
            refs_sha256: refs.as_ref().map(|r| r.1.clone()),
            seed: spec.seed as i64,
        };
        let root_version = VersionRow {
            id: 1,
            parent: None,
            kind: VersionKind::Trained,
            created: created.clone(),
            weights: root.weights,
            weights_sha256: root.weights_sha256,
            sidecar_sha256: root.sidecar_sha256,
            method: None,
            settings: None,
            calibration: None,
            audit: JsonText::new(&audit),
            forgotten: 0,
            forgotten_sha256: indices_sha256(&row, &[]),
            retrain: None,
            seed: sc.seed as i64,
            seconds: 0.0,
        };
        let records = RootRecords {
            row: &row,
            samples: &all,
            policy: &spec.policy,
            version: &root_version,
            graphs: &root.graphs,
        };
        stop_at_dir(dir, "create");
        let done = format!("registry {} was created and is complete", dir.display());
        // From the commit to the certificate, a signal's handler waits:
        // the registry is whole, or never placed.
        let g = crate::fsutil::committing();
        records.commit(tmp.path(), dir, copy.as_ref(), &mut made)?;
        stop_at_dir(dir, "create-place");
        let had_dir = !made.has_dir(dir);
        if let Err(e) = place_new_registry(tmp.path(), dir) {
            if had_dir && !dir.exists() {
                // The user's empty folder is put back.
                let _ = std::fs::create_dir(dir);
            }
            return Err(e);
        }
        made.keep();
        let reg = Registry::open(dir)?;
        write_certificate(&reg, 1)?;
        g.stands(done);
        Ok(reg)
    }

    /// The registry record.
    pub fn info(&self) -> Result<RegistryRow> {
        self.conn
            .query_row(
                "SELECT created, data, data_sha256, train_size, sample_names, samples_sha256, \
                 holdout_test, refs, refs_sha256, seed FROM registry WHERE id = 1",
                [],
                |r| {
                    Ok(RegistryRow {
                        created: r.get(0)?,
                        data: r.get(1)?,
                        data_sha256: r.get(2)?,
                        train_size: r.get(3)?,
                        sample_names: kinds::kind_in(r, 4, "the registry record")?,
                        samples_sha256: r.get(5)?,
                        holdout_test: r.get(6)?,
                        refs: r.get(7)?,
                        refs_sha256: r.get(8)?,
                        seed: r.get(9)?,
                    })
                },
            )
            .map_err(self.err())
    }

    /// What to say when the registry's dataset is a folder that is no
    /// longer where its create recorded it (moved or removed, hostile11
    /// RF6); `None` while it is there, or for a named dataset.
    pub(crate) fn data_folder_missing(&self) -> Result<Option<String>> {
        let spec = self.data_spec()?;
        let folder = Path::new(&spec.dataset);
        if crate::data::Registry::from_name(&spec.dataset).is_some() || folder.exists() {
            return Ok(None);
        }
        Ok(Some(format!(
            "the registry's data folder {} (recorded by its create) is missing: put it back \
             there (apply, retrain and image-path requests read the data where it was \
             recorded)",
            folder.display()
        )))
    }

    /// The data spec the registry's model was trained on.
    pub fn data_spec(&self) -> Result<DataSpec> {
        let info = self.info()?;
        info.data
            .parse()
            .map_err(|e| Error::format(&self.db, format!("the registry's data spec: {e}")))
    }

    /// Every training sample as recorded, in index order.
    pub fn samples(&self) -> Result<Vec<Sample>> {
        let mut st = self
            .conn
            .prepare("SELECT idx, path, sha256 FROM samples ORDER BY idx")
            .map_err(self.err())?;
        st.query_map([], |r| {
            Ok(Sample {
                idx: r.get(0)?,
                path: r.get(1)?,
                sha256: r.get(2)?,
            })
        })
        .map_err(self.err())?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(self.err())
    }

    /// The samples request `id` names, by index.
    pub fn request_samples(&self, id: i64) -> Result<Vec<Sample>> {
        request_samples_in(&self.conn, &self.db, id)
    }

    /// Every request, in order.
    pub fn requests(&self) -> Result<Vec<RequestRow>> {
        read_requests(&self.conn, &self.db, "")
    }

    /// Request `id`.
    pub fn request(&self, id: i64) -> Result<RequestRow> {
        read_requests(&self.conn, &self.db, &format!("WHERE id = {id}"))?
            .pop()
            .ok_or_else(|| Error::invalid("request", format!("{id}: no such request")))
    }

    /// Every request with its status.
    pub fn request_status(&self) -> Result<Vec<RequestStatus>> {
        let abs = self.absorptions()?;
        Ok(self
            .requests()?
            .into_iter()
            .map(|r| {
                let first = abs
                    .iter()
                    .filter(|a| a.request == r.id)
                    .min_by_key(|a| a.version);
                RequestStatus {
                    status: if first.is_some() {
                        RequestState::Absorbed
                    } else {
                        RequestState::Pending
                    },
                    absorbed_by: first.map(|a| a.version),
                    how: first.map(|a| a.how),
                    request: r,
                }
            })
            .collect())
    }

    /// Requests no version absorbed yet, in order.
    pub fn pending(&self) -> Result<Vec<RequestRow>> {
        read_requests(
            &self.conn,
            &self.db,
            "WHERE id NOT IN (SELECT request FROM absorptions)",
        )
    }

    /// Every version, in order.
    pub fn versions(&self) -> Result<Vec<VersionRow>> {
        read_versions(&self.conn, &self.db, "")
    }

    /// Version `id`.
    pub fn version(&self, id: i64) -> Result<VersionRow> {
        read_versions(&self.conn, &self.db, &format!("WHERE id = {id}"))?
            .pop()
            .ok_or_else(|| Error::invalid("version", format!("{id}: no such version")))
    }

    /// The newest version: what the next apply unlearns from.
    pub fn head(&self) -> Result<VersionRow> {
        read_versions(&self.conn, &self.db, "ORDER BY id DESC LIMIT 1")?
            .pop()
            .ok_or_else(|| Error::format(&self.db, "the registry holds no version"))
    }

    /// Every absorption, in order.
    pub fn absorptions(&self) -> Result<Vec<AbsorptionRow>> {
        read_absorptions(&self.conn, &self.db)
    }

    /// Every retrain started, in order.
    pub fn retrains(&self) -> Result<Vec<RetrainRow>> {
        read_retrains(&self.conn, &self.db)
    }

    /// The Slurm job of retrain `id`, if it was submitted.
    pub fn retrain_job(&self, id: i64) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT job FROM retrain_jobs WHERE retrain = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// The requests version `id` has forgotten (its own absorptions and
    /// those of its parents up to its root), in order.
    pub fn absorbed(&self, id: i64) -> Result<Vec<i64>> {
        absorbed_in(&self.conn, &self.db, id)
    }

    /// The training samples version `id` has forgotten, sorted.
    pub fn forgotten(&self, id: i64) -> Result<Vec<i64>> {
        forgotten_in(&self.conn, &self.db, id)
    }

    /// A forget set of training indices of this registry's data.
    pub fn forget_set(&self, indices: Vec<i64>, kind: &str) -> Result<ForgetSet> {
        let info = self.info()?;
        let spec = self.data_spec()?;
        let n = info.train_size as usize;
        Ok(ForgetSet::of_indices(spec.train_label(), n, kind, indices))
    }

    /// The policy in force (the last one set).
    pub fn policy(&self) -> Result<Policy> {
        let row = read_policies(&self.conn, &self.db)?
            .pop()
            .ok_or_else(|| Error::format(&self.db, "the registry holds no retrain policy"))?;
        Ok(Policy {
            after_requests: row.after_requests.map(|n| n as usize),
            after_fraction: row.after_fraction,
        })
    }

    /// Every policy set, in order.
    pub fn policies(&self) -> Result<Vec<PolicyRow>> {
        read_policies(&self.conn, &self.db)
    }

    /// Sets the retrain policy (a new record).
    pub fn set_policy(&mut self, p: &Policy) -> Result<()> {
        p.check()?;
        anchor::refuse_behind(self, "set the policy")?;
        anchor::refuse_fork(self, "set the policy")?;
        anchor::refuse_unreadable_copy(self, "set the policy")?;
        let tx = immediate(&mut self.conn, &self.db)?;
        anchor::ensure_started(&tx, &self.db)?;
        insert_policy(&tx, &self.db, p, &db::now_utc())?;
        tx.commit().map_err(sql(&self.db))?;
        let w = anchor::after_commit(self, Committer::Policy);
        self.warnings.extend(w);
        Ok(())
    }

    /// Keeps a copy of the anchor at `copy` from now on (a new anchor
    /// record): the whole anchor is written there at once, and every
    /// commit's head after it. `copy` must be a new or empty file.
    pub fn set_anchor_copy(&mut self, copy: &Path) -> Result<PathBuf> {
        refuse_special(copy)?;
        self.refuse_lost_copy(&std::path::absolute(copy).at(copy)?)?;
        let current = anchor::copy_path(&self.conn, &self.db)?;
        if current.is_some_and(|c| crate::outputs::same_file(&c, copy)) {
            return Err(Error::invalid(
                "anchor-copy",
                format!(
                    "{}: already this registry's copy of its anchor (every commit appends \
                     its head there); nothing to change",
                    copy.display()
                ),
            ));
        }
        let copy = anchor_copy_checked(Some(copy), &self.dir)?.expect("a path was given");
        refuse_in_dataset("anchor-copy", &copy.path, &self.data_spec()?)?;
        anchor::refuse_behind(self, "set the anchor's copy")?;
        // Made (or found writable) before it is recorded: a copy that
        // cannot be written is refused, not kept as the registry's copy.
        let mut made = staging::Made::default();
        made.copy("anchor-copy", &copy.path, copy.existed)?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&copy.path)
            .map_err(|e| {
                Error::invalid(
                    "anchor-copy",
                    format!(
                        "{}: cannot be written: {e}; nothing was changed",
                        copy.path.display()
                    ),
                )
            })?;
        let copy = copy.path;
        let tx = immediate(&mut self.conn, &self.db)?;
        anchor::ensure_started(&tx, &self.db)?;
        anchor::insert(&tx, &self.db, Some(&copy.display().to_string()))?;
        tx.commit().map_err(sql(&self.db))?;
        made.keep();
        let w = anchor::after_commit(self, Committer::Anchor);
        self.warnings.extend(w);
        Ok(copy)
    }

    /// Refuses `copy` when the registry kept its anchor there before and the
    /// file is now missing or empty: a copy started there again would
    /// begin at this database and hide one put back to an older copy (no
    /// command starts a lost copy again).
    fn refuse_lost_copy(&self, copy: &Path) -> Result<()> {
        if anchor::read(copy)
            .ok()
            .flatten()
            .is_some_and(|p| !p.heads.is_empty())
        {
            return Ok(());
        }
        let named = anchor::rows(&self.conn, &self.db)?
            .into_iter()
            .find(|r| r.copy.as_deref().is_some_and(|c| Path::new(c) == copy));
        let Some(row) = named else { return Ok(()) };
        Err(Error::invalid(
            "anchor-copy",
            format!(
                "{}: was this registry's anchor copy (named at {}) and is now missing or empty; \
                 started there again it would begin at this database and hide one put back to \
                 an older copy. Put the copy back (from its disk or a backup); if it is lost for \
                 good, name a new file: the new copy starts from this database, so check it \
                 first against the receipts requesters kept (`amun registry verify --receipt \
                 FILE…`); nothing was changed",
                copy.display(),
                row.started
            ),
        ))
    }

    /// Why the exact retrain is due now, if it is: requests absorbed and
    /// the share of the training set forgotten since the last root.
    pub fn retrain_due(&self) -> Result<Option<String>> {
        let p = self.policy()?;
        let head = self.head()?;
        let versions = self.versions()?;
        let abs = self.absorptions()?;
        // Walk from the head to its root, counting what the unlearned
        // versions absorbed on the way.
        let mut since: Vec<i64> = Vec::new();
        let mut cur = Some(head.id);
        let mut root = head.clone();
        while let Some(v) = cur {
            let row = versions.iter().find(|x| x.id == v);
            if let Some(r) = row {
                root = r.clone();
                if r.parent.is_some() {
                    since.extend(abs.iter().filter(|a| a.version == v).map(|a| a.request));
                }
            }
            cur = row.and_then(|x| x.parent);
        }
        since.sort_unstable();
        since.dedup();
        let train = self.info()?.train_size.max(1) as f64;
        let frac = (head.forgotten - root.forgotten).max(0) as f64 / train;
        let n = since.len();
        let mut why = Vec::new();
        if let Some(k) = p.after_requests
            && n >= k
            && n > 0
        {
            why.push(format!(
                "{n} request(s) absorbed since root version {} (policy: after {k})",
                root.id
            ));
        }
        if let Some(f) = p.after_fraction
            && frac >= f
            && frac > 0.0
        {
            why.push(format!(
                "{:.2}% of the training set forgotten since root version {} (policy: after \
                 {:.2}%)",
                100.0 * frac,
                root.id,
                100.0 * f
            ));
        }
        Ok((!why.is_empty()).then(|| why.join("; ")))
    }

    /// Adds one request per file (indices, or image paths for an image
    /// folder), received at `received` (UTC; default now), with a free-text
    /// `reference`. Every file is read and checked first, then all are
    /// added in one transaction: a bad file adds none, and concurrent adds
    /// never lose or repeat a request. A request whose every sample the
    /// head already forgot is absorbed by the head at once. Each request's
    /// receipt is written to `receipts/rNNNN.json` after the commit and
    /// its anchor line.
    pub fn add_requests(
        &mut self,
        files: &[PathBuf],
        reference: &str,
        received: Option<&str>,
    ) -> Result<Vec<AddedRequest>> {
        let data_dir = crate::data::default_data_dir();
        self.add_requests_receipt(files, reference, received, None, &data_dir)
    }

    /// [`add_requests`](Self::add_requests) that also hands the requester
    /// the receipt of its one request in the new file `receipt`, reading
    /// amun's datasets (MNIST, CIFAR-10) from `data_dir` when a request
    /// needs the data (a class or sealed forget set). The commit, the
    /// anchor line and the receipts run whole once begun (a signal waits
    /// for them, then says the requests stand).
    pub fn add_requests_receipt(
        &mut self,
        files: &[PathBuf],
        reference: &str,
        received: Option<&str>,
        receipt: Option<&Path>,
        data_dir: &Path,
    ) -> Result<Vec<AddedRequest>> {
        check_add_receipt(files, receipt)?;
        check_reference(reference)?;
        let received = received_at(received)?;
        refuse_repeated_files(files)?;
        anchor::refuse_behind(self, "add requests")?;
        anchor::refuse_fork(self, "add requests")?;
        anchor::refuse_unreadable_copy(self, "add requests")?;
        let registry_id = self.id()?;
        let info = self.info()?;
        let resolved = self.resolve_requests(files, &info, data_dir)?;
        // Reserved before the commit: a path that cannot be written is
        // refused while nothing changed.
        let handout = receipt.map(handout::ReceiptOut::reserve).transpose()?;
        let added = db::now_utc();
        let db = self.db.clone();
        let err = sql(&db);
        let tx = immediate(&mut self.conn, &db)?;
        anchor::ensure_started(&tx, &db)?;
        let adding = Adding {
            tx: &tx,
            db: &db,
            dir: &self.dir,
            registry_id: &registry_id,
            train_size: info.train_size,
            received: &received,
            added: &added,
            reference,
        };
        let mut out = Vec::new();
        for (file, picked) in resolved {
            out.push(adding.request(file, &picked)?);
        }
        let head = db::chain_head(&tx, &db)?;
        // From the commit to the last receipt, a signal's handler waits:
        // the requests and their receipts are whole, and said to stand.
        let g = crate::fsutil::committing();
        tx.commit().map_err(&err)?;
        let w = anchor::after_commit(self, Committer::Add);
        self.warnings.extend(w);
        let added = self.write_receipts(out, &registry_id, &head);
        if let (Some(h), Some(first)) = (handout, added.first()) {
            self.hand_out(h, first);
        }
        g.stands(added_words(&self.dir, &added));
        Ok(added)
    }

    /// Puts the requester's receipt of `added` in place (a failure is a
    /// warning: the request stands, and the registry keeps its copy).
    fn hand_out(&mut self, h: handout::ReceiptOut, added: &AddedRequest) {
        let dest = h.dest().to_path_buf();
        if let Err(e) = h.hand_out(&added.receipt) {
            self.warnings.push(format!(
                "request {} was added, but --receipt {} was not written: {e}; the registry's \
                 copy is {}",
                added.status.request.id,
                dest.display(),
                anchor::receipt_path(&self.dir, added.status.request.id).display()
            ));
        }
    }

    /// Writes request `id`'s receipt to `receipts/rNNNN.json` again when it
    /// is missing (an add stopped between its commit and its receipt, the
    /// receipt could not be written, or it was deleted), from the records:
    /// the request, its chain record and the chain's head now, marked
    /// `reissued`. A receipt there is never replaced: this registry's
    /// receipt of the request is returned as it is (`false`: not written).
    /// Refused while the registry fails verification: a receipt of altered
    /// records would vouch for them.
    pub fn reissue_receipt(&self, id: i64) -> Result<(Receipt, PathBuf, bool)> {
        let request = self.request(id)?;
        let file = anchor::receipt_path(&self.dir, id);
        let registry_id = self.id()?;
        if file.exists() {
            return match anchor::read_receipt(&file, &registry_id) {
                Ok(r) if r.request.id == id => Ok((r, file, false)),
                Ok(r) => Err(Error::invalid(
                    file.display().to_string(),
                    format!(
                        "holds the receipt of request {}, not of request {id}; it is never \
                         replaced: move it away and run again",
                        r.request.id
                    ),
                )),
                Err(why) => Err(Error::invalid(
                    file.display().to_string(),
                    format!(
                        "is no receipt this registry issued ({why}); it is never replaced: move \
                         it away and run again"
                    ),
                )),
            };
        }
        verify::refuse_findings(
            self,
            &verify::check(self)?,
            "no receipt is written from its records",
        )?;
        let chain = db::chain(&self.conn, &self.db)?;
        let record = chain
            .iter()
            .find(|e| e.kind == RecordKind::Request && e.item == id)
            .cloned()
            .ok_or_else(|| Error::format(&self.db, format!("request {id} is not in the chain")))?;
        let head = chain.last().cloned().unwrap_or_else(|| record.clone());
        let receipt = Receipt {
            format: anchor::RECEIPT_FORMAT.into(),
            registry: registry_id,
            request,
            record,
            head_seq: head.seq,
            head_hash: head.hash,
            reissued: Some(db::now_utc()),
        };
        crate::fsutil::write_json(&file, &receipt)?;
        Ok((receipt, file, true))
    }

    /// Each request file's samples, read and matched to the registry's.
    fn resolve_requests<'f>(
        &self,
        files: &'f [PathBuf],
        info: &RegistryRow,
        data_dir: &Path,
    ) -> Result<Vec<(&'f PathBuf, Vec<Sample>)>> {
        let spec = self.data_spec()?;
        let root = (info.sample_names == SampleNames::Path).then(|| PathBuf::from(&spec.dataset));
        let recorded = self.samples()?;
        let named = (files.iter())
            .map(|f| samples::read_request(f, root.as_deref()))
            .collect::<Result<Vec<_>>>()?;
        // Only a sealed forget set of the registry's size (made on the
        // registry's folder or on a copy of it at another path: hostile14
        // RA1) and a class set (whose class is checked against the data's
        // labels, as every command checks it: hostile15 SR_fc_name) need
        // the data (read once); any other request is matched unread.
        let n = recorded.len();
        let sealed =
            |x: &Named| matches!(x, Named::Set(s) if s.train_sha256.is_some() && s.train_size == n);
        let class = |x: &Named| matches!(x, Named::Set(s) if s.kind == "class");
        let data = match named.iter().position(|x| sealed(x) || class(x)) {
            Some(i) => Some(self.checked_data(&spec, &recorded, &files[i], data_dir)?),
            None => None,
        };
        let content = data
            .as_ref()
            .and_then(|d| d.content().map(|c| c.train.clone()));
        let label = spec.train_label();
        let mut resolved = Vec::new();
        for (file, named) in files.iter().zip(named) {
            let class_set = match &named {
                Named::Set(s) if s.kind == "class" => Some(s.clone()),
                _ => None,
            };
            let root = root.as_deref();
            let picked =
                samples::resolve(named, &recorded, file, &label, root, content.as_deref())?;
            if let (Some(set), Some(data)) = (class_set, &data) {
                set.check_class(data, file)?;
            }
            resolved.push((file, picked));
        }
        Ok(resolved)
    }

    /// The registry's training data, checked to hold the recorded samples
    /// (a set sealed on the folder before or after an edit is refused by
    /// the content hash it records; a class set by its labels). `file` is
    /// the first request that needs it, which an error names; `data_dir`
    /// holds amun's datasets (MNIST, CIFAR-10).
    fn checked_data(
        &self,
        spec: &DataSpec,
        recorded: &[Sample],
        file: &Path,
        data_dir: &Path,
    ) -> Result<crate::data::Dataset> {
        let unreadable = |why: String| {
            Error::format(
                file,
                format!(
                    "a forget set that records its data's content or class is checked against \
                     the registry's data, which cannot be read as the registry recorded it: {why}"
                ),
            )
        };
        if let Some(missing) = self.data_folder_missing()? {
            return Err(unreadable(missing));
        }
        // A folder's data ignores the data folder, which holds amun's
        // registry datasets only.
        let data = spec.load(data_dir).map_err(|e| unreadable(e.to_string()))?;
        samples::check_recorded(recorded, spec, Some(&data))
            .map_err(|e| unreadable(e.to_string()))?;
        Ok(data)
    }

    /// Writes each added request's receipt (a failed write is a warning:
    /// the request is added) and returns them.
    fn write_receipts(
        &mut self,
        out: Vec<(RequestStatus, db::ChainEntry, PathBuf)>,
        registry_id: &str,
        head: &db::ChainEntry,
    ) -> Vec<AddedRequest> {
        let mut added = Vec::new();
        for (status, record, receipt_file) in out {
            let receipt = Receipt {
                format: anchor::RECEIPT_FORMAT.into(),
                registry: registry_id.to_string(),
                request: status.request.clone(),
                record,
                head_seq: head.seq,
                head_hash: head.hash.clone(),
                reissued: None,
            };
            let written = crate::fsutil::write_json(&receipt_file, &receipt);
            if let Err(e) = &written {
                self.warnings.push(format!(
                    "request {} was added, but its receipt {} was not written: {e}; `amun \
                     registry receipt --registry {} --request {}` writes it again",
                    status.request.id,
                    receipt_file.display(),
                    self.dir.display(),
                    status.request.id
                ));
            }
            added.push(AddedRequest {
                status,
                receipt,
                receipt_file: written.is_ok().then_some(receipt_file),
            });
        }
        added
    }
}

/// `1 request`, `2 requests`: a count of `noun`s as messages say it (a
/// noun whose plural adds an `s`).
pub fn counted(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

/// Refuses an add's `--receipt` before anything is read: one request file
/// only, and a new file in an existing folder outside amun's own folders.
pub fn check_add_receipt(files: &[PathBuf], receipt: Option<&Path>) -> Result<()> {
    let Some(r) = receipt else {
        return Ok(());
    };
    if files.len() != 1 {
        return Err(Error::invalid(
            "--receipt",
            format!(
                "names one file, for one request file; {} were given (each request's receipt \
                 is also in the registry's receipts/ folder)",
                files.len()
            ),
        ));
    }
    handout::check(r)
}

/// What an add committed, for a signal's handler to say.
fn added_words(dir: &Path, added: &[AddedRequest]) -> String {
    let ids: Vec<String> = added
        .iter()
        .map(|a| a.status.request.id.to_string())
        .collect();
    format!(
        "request(s) {} were added to registry {}, with their receipts (`amun registry list \
         --registry {}` shows them; adding them again is refused)",
        ids.join(", "),
        dir.display(),
        dir.display()
    )
}

/// The samples request `id` names, by index.
fn request_samples_in(conn: &Connection, db: &Path, id: i64) -> Result<Vec<Sample>> {
    let err = sql(db);
    let mut st = conn
        .prepare_cached(
            "SELECT s.idx, s.path, s.sha256 FROM request_samples r JOIN samples s ON s.idx = \
             r.idx WHERE r.request = ?1 ORDER BY s.idx",
        )
        .map_err(&err)?;
    st.query_map([id], |r| {
        Ok(Sample {
            idx: r.get(0)?,
            path: r.get(1)?,
            sha256: r.get(2)?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

/// The requests version `id` has forgotten: its absorptions and its
/// parents' up to its root.
fn absorbed_in(conn: &Connection, db: &Path, id: i64) -> Result<Vec<i64>> {
    let err = sql(db);
    let mut out = Vec::new();
    let mut cur = Some(id);
    while let Some(v) = cur {
        let mut st = conn
            .prepare_cached("SELECT request FROM absorptions WHERE version = ?1")
            .map_err(&err)?;
        let rows = st
            .query_map([v], |r| r.get::<_, i64>(0))
            .map_err(&err)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(&err)?;
        out.extend(rows);
        cur = conn
            .query_row("SELECT parent FROM versions WHERE id = ?1", [v], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map_err(&err)?
            .flatten();
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The training samples version `id` has forgotten, sorted.
fn forgotten_in(conn: &Connection, db: &Path, id: i64) -> Result<Vec<i64>> {
    let mut v = Vec::new();
    for r in absorbed_in(conn, db, id)? {
        v.extend(request_samples_in(conn, db, r)?.into_iter().map(|s| s.idx));
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The anchor's copy a command names: absolute, and whether it existed
/// (empty) when checked: only one made by the command is removed again.
struct CopyPath {
    path: PathBuf,
    existed: bool,
}

/// The anchor's copy of registry `dir`, checked before any work: a file
/// that exists must be an empty regular file (one that is not empty is
/// another registry's anchor; a device, FIFO or socket takes no anchor and
/// is no file to clean up after); its folder must exist (a typo would make
/// folders); a copy inside a registry folder is a file apply may remove or
/// move aside as a leftover (and it would share the fate of the folder it
/// should outlive).
fn anchor_copy_checked(copy: Option<&Path>, dir: &Path) -> Result<Option<CopyPath>> {
    let Some(c) = copy else { return Ok(None) };
    refuse_special(c)?;
    let abs = std::path::absolute(c).at(c)?;
    if crate::outputs::lies_inside(&abs, dir) {
        return Err(Error::invalid(
            "anchor-copy",
            format!(
                "{}: inside the registry folder {}; name a file outside the registry folder \
                 (e.g. on another disk)",
                c.display(),
                dir.display()
            ),
        ));
    }
    crate::outputs::refuse_evidence_path("anchor-copy", c)?;
    let meta = std::fs::symlink_metadata(&abs).ok();
    if abs.is_dir() || meta.as_ref().is_some_and(|m| m.len() > 0) {
        let what = match crate::outputs::Kind::of(&abs) {
            _ if abs.is_dir() => "a folder",
            crate::outputs::Kind::Anchor => "another registry's anchor or its copy",
            k => k.describe(),
        };
        return Err(Error::invalid(
            "anchor-copy",
            format!(
                "{}: exists ({what}); the anchor's copy is made only as a new (or empty) file: \
                 name a new file",
                c.display()
            ),
        ));
    }
    // A parent that is a file is check_output's to name.
    if let Some(parent) = abs.parent().filter(|p| !p.exists()) {
        return Err(Error::invalid(
            "anchor-copy",
            format!(
                "{}: its folder {} does not exist (it is not made for the copy: a typo would \
                 make folders); make the folder first or name another file",
                c.display(),
                parent.display()
            ),
        ));
    }
    crate::fsutil::check_output(c, &[])
        .map_err(|e| Error::invalid("anchor-copy", e.to_string()))?;
    Ok(Some(CopyPath {
        path: abs,
        existed: meta.is_some(),
    }))
}

/// Refuses an anchor's copy `c` that exists and is a device, FIFO or
/// socket, before anything opens it (a FIFO's read would wait forever).
fn refuse_special(c: &Path) -> Result<()> {
    let Ok(m) = std::fs::symlink_metadata(c) else {
        return Ok(());
    };
    if m.is_dir() || m.is_symlink() {
        return Ok(()); // refused, if at all, with their own words
    }
    let Some(what) = crate::fsutil::special_kind(&m) else {
        return Ok(());
    };
    Err(Error::invalid(
        "anchor-copy",
        format!(
            "{}: exists and is not a regular file ({what}); the anchor's copy is made only as a \
             new (or empty) regular file: name a new file; nothing was changed",
            c.display()
        ),
    ))
}

/// Refuses `path` (`setting` names its flag) inside the folder of the
/// dataset `data` (an image folder; a registry name has none): a folder
/// made there would be read as one more class, and every model of the
/// dataset refused.
fn refuse_in_dataset(setting: &str, path: &Path, data: &DataSpec) -> Result<()> {
    let ds = Path::new(&data.dataset);
    if crate::data::Registry::from_name(&data.dataset).is_some()
        || !ds.is_dir()
        || !crate::outputs::lies_inside(path, ds)
    {
        return Ok(());
    }
    Err(Error::invalid(
        setting,
        format!(
            "{}: inside the dataset folder {} of the registry's model (a folder made there \
             would be read as one more class); name a path outside the dataset folder",
            path.display(),
            ds.display()
        ),
    ))
}

/// Removes a folder on drop unless it was renamed away.
/// Refuses reference models trained otherwise than the registry's model
/// (the check `audit` warns with, hostile11 RC6): every version's RMIA
/// would score against them.
fn refuse_unlike_refs(
    refs: &Path,
    loaded: &crate::audit::References,
    sc: &checkpoint::Sidecar,
    model: &Path,
) -> Result<()> {
    let Some(why) = loaded.unlike(sc)? else {
        return Ok(());
    };
    Err(Error::invalid(
        format!("--refs {}", refs.display()),
        format!(
            "{why}: RMIA assumes references trained as the model was, so every version's \
             membership audit would be off; `amun rmia train-refs --like {}` trains matching \
             ones (nothing was made)",
            model.display()
        ),
    ))
}

/// A request's time of receipt: `received` (UTC), or now; never later
/// than now.
/// A request's reference is one line of free text: a control character
/// (a line break, a tab, an escape) would break every table and line that
/// shows it.
fn check_reference(reference: &str) -> Result<()> {
    match reference.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(Error::setting(
            "reference",
            format!(
                "holds the control character {c:?} at byte {at}; a reference is one line of \
                 text (a ticket, an e-mail address); nothing was added"
            ),
        )),
        None => Ok(()),
    }
}

fn received_at(received: Option<&str>) -> Result<String> {
    let now = db::now_utc();
    let received = match received {
        Some(r) => db::parse_utc(r)?,
        None => now.clone(),
    };
    // Both in UTC as `YYYY-MM-DDTHH:MM:SSZ`: they compare as text.
    if received > now {
        return Err(Error::invalid(
            "received",
            format!("{received} is in the future (now {now}); nothing was added"),
        ));
    }
    Ok(received)
}

/// One file is one request: a file named twice (by any path) is refused.
fn refuse_repeated_files(files: &[PathBuf]) -> Result<()> {
    let mut seen: Vec<PathBuf> = Vec::new();
    for f in files {
        let canon = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
        if seen.contains(&canon) {
            return Err(Error::invalid(
                f.display().to_string(),
                "is named twice: one file is one request (nothing was added)",
            ));
        }
        seen.push(canon);
    }
    Ok(())
}

/// Requests being added in one transaction, and what they share.
struct Adding<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    db: &'a Path,
    dir: &'a Path,
    registry_id: &'a str,
    train_size: i64,
    received: &'a str,
    added: &'a str,
    reference: &'a str,
}

impl Adding<'_> {
    /// Adds the request of `file` naming `picked`: its row, samples and
    /// chain record, absorbed by the head when the head forgot them all.
    /// Returns its status, chain record and receipt file.
    fn request(
        &self,
        file: &Path,
        picked: &[Sample],
    ) -> Result<(RequestStatus, db::ChainEntry, PathBuf)> {
        let err = sql(self.db);
        let covered_by_any = self.named_before(picked)?;
        let named_before: i64 = self
            .tx
            .query_row("SELECT COUNT(DISTINCT idx) FROM request_samples", [], |r| {
                r.get(0)
            })
            .map_err(&err)?;
        let total = named_before as usize + picked.len() - covered_by_any;
        if total >= self.train_size as usize {
            return Err(Error::format(
                file,
                format!(
                    "with this request every one of the {} training samples would be \
                     forgotten; keep at least one (nothing was added)",
                    self.train_size
                ),
            ));
        }
        let id: i64 = self
            .tx
            .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM requests", [], |r| {
                r.get(0)
            })
            .map_err(&err)?;
        let receipt_file = anchor::receipt_path(self.dir, id);
        if receipt_file.exists() {
            return Err(receipt_in_the_way(
                self.dir,
                &receipt_file,
                self.registry_id,
                id,
            ));
        }
        let digest = samples::digest(picked);
        self.refuse_repeat(file, &digest)?;
        let row = RequestRow {
            id,
            received: self.received.to_string(),
            added: self.added.to_string(),
            reference: self.reference.to_string(),
            // The file's name, not its path: records, receipts and
            // certificates name no machine's folders.
            source: file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
            size: picked.len() as i64,
            samples_sha256: digest,
        };
        let record = self.insert(&row, picked)?;
        let mut status = RequestStatus {
            request: row,
            status: RequestState::Pending,
            absorbed_by: None,
            how: None,
        };
        if covered_by_any == picked.len() {
            self.absorb_if_forgotten(picked, &mut status)?;
        }
        Ok((status, record, receipt_file))
    }

    /// Refuses a request that repeats a pending one (the same samples and
    /// reference): an add retried after a signal or a lost answer, whose
    /// first try was committed (hostile11 KA-TERM). Another requester of
    /// the same samples gives a reference of its own.
    fn refuse_repeat(&self, file: &Path, digest: &str) -> Result<()> {
        let err = sql(self.db);
        let pending: Option<(i64, String)> = self
            .tx
            .query_row(
                "SELECT id, received FROM requests WHERE samples_sha256 = ?1 AND reference = ?2 \
                 AND id NOT IN (SELECT request FROM absorptions) ORDER BY id LIMIT 1",
                rusqlite::params![digest, self.reference],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        let Some((id, received)) = pending else {
            return Ok(());
        };
        Err(Error::invalid(
            file.display().to_string(),
            format!(
                "already pending as request {id}, received {received}, with the same samples \
                 (sha256 {}) and reference; nothing was added (a request is added once: `amun \
                 registry show --registry {dir} request {id}` shows it, `amun registry receipt \
                 --registry {dir} --request {id}` writes its receipt again; another request \
                 for the same samples is added with a --reference of its own)",
                samples::short(digest),
                dir = self.dir.display()
            ),
        ))
    }

    /// How many of `picked` an earlier request named: a request of none
    /// of them forgets nothing new.
    fn named_before(&self, picked: &[Sample]) -> Result<usize> {
        let err = sql(self.db);
        let mut st = self
            .tx
            .prepare_cached("SELECT 1 FROM request_samples WHERE idx = ?1 LIMIT 1")
            .map_err(&err)?;
        let mut n = 0usize;
        for s in picked {
            if st.exists([s.idx]).map_err(&err)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The request's row, its samples and its chain record.
    fn insert(&self, row: &RequestRow, picked: &[Sample]) -> Result<db::ChainEntry> {
        let err = sql(self.db);
        self.tx
            .execute(
                "INSERT INTO requests (id, received, added, reference, source, size, \
                 samples_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.id,
                    row.received,
                    row.added,
                    row.reference,
                    row.source,
                    row.size,
                    row.samples_sha256
                ],
            )
            .map_err(&err)?;
        {
            let mut st = self
                .tx
                .prepare_cached("INSERT INTO request_samples (request, idx) VALUES (?1, ?2)")
                .map_err(&err)?;
            for s in picked {
                st.execute(params![row.id, s.idx]).map_err(&err)?;
            }
        }
        append(self.tx, self.db, RecordKind::Request, row.id, row)
    }

    /// Every sample was named before; if the head forgot them all, the
    /// head absorbs this request now.
    fn absorb_if_forgotten(&self, picked: &[Sample], status: &mut RequestStatus) -> Result<()> {
        let err = sql(self.db);
        let head: i64 = self
            .tx
            .query_row("SELECT MAX(id) FROM versions", [], |r| r.get(0))
            .map_err(&err)?;
        let forgotten = forgotten_in(self.tx, self.db, head)?;
        if picked
            .iter()
            .all(|s| forgotten.binary_search(&s.idx).is_ok())
        {
            insert_absorption(self.tx, self.db, head, status.request.id, How::Covered)?;
            status.status = RequestState::Absorbed;
            status.absorbed_by = Some(head);
            status.how = Some(How::Covered);
        }
        Ok(())
    }
}

/// A registry is made in a new or empty folder, and never inside what
/// another command holds.
fn check_new_registry_dir(dir: &Path) -> Result<()> {
    if dir.exists() && (!dir.is_dir() || std::fs::read_dir(dir).at(dir)?.next().is_some()) {
        return Err(Error::invalid(
            dir.display().to_string(),
            "exists and is not an empty folder; a registry is made in a new folder",
        ));
    }
    // Only `registry` commands write in a registry (nested ones too:
    // versions/sub), reference models or a run folder.
    crate::outputs::refuse_held("registry", dir)
}

/// A registry's root is a model amun trained to its last epoch on the whole
/// training split: the exact retrain repeats its recipe.
fn check_root_model(spec: &CreateSpec, sc: &checkpoint::Sidecar) -> Result<()> {
    // Its sidecar holds only digests of the requests its lineage forgot: a
    // registry could keep none of those samples out of a later retain set
    // or count them toward most of a class, nor retrain without them.
    let forgotten = sc.forgotten();
    if !forgotten.is_empty() {
        return Err(Error::checkpoint(
            &spec.checkpoint,
            format!(
                "an unlearned model: its lineage forgot {} request(s) ({} samples), which a \
                 registry made from it could not carry (its sidecar records only their \
                 digests, so later unlearning would train on those samples again and an exact \
                 retrain would include them); create the registry from the trained original, \
                 then `amun registry add` those requests and `amun registry apply`",
                forgotten.len(),
                forgotten.iter().map(|f| f.size).sum::<usize>()
            ),
        ));
    }
    match &sc.origin {
        crate::model::Origin::Train { subset: None, .. } if sc.incomplete().is_none() => Ok(()),
        _ => Err(Error::checkpoint(
            &spec.checkpoint,
            "a registry starts from a model amun trained to its last epoch on the whole \
             training split: its sidecar's recipe is what the exact retrain repeats \
             (this one is unlearned, imported, a retrain, a reference model or \
             incomplete)",
        )),
    }
}

/// Moves the registry built in `tmp` to `dir`, which was missing or an
/// empty folder when the create began: another command that filled it
/// meanwhile (a second `registry create` at the same time) wins, and this
/// one says so and leaves it as it is.
fn place_new_registry(tmp: &Path, dir: &Path) -> Result<()> {
    let taken = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
        )
    };
    let placed = match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => std::fs::rename(tmp, dir),
    };
    match placed {
        Ok(()) => Ok(()),
        Err(e) if taken(&e) => Err(Error::invalid(
            dir.display().to_string(),
            "was filled by another command while this create ran (a second `amun registry \
             create` of the same folder at the same time?): it was empty when this one began \
             and holds files now; it is left as it is and nothing was created here (a \
             registry is made in a new folder)",
        )),
        Err(e) => Err(e).at(dir),
    }
}

/// The temporary folder (with `versions/`) a registry is built in, beside
/// `dir`; removed when dropped unless renamed to `dir` first. Made anew
/// (never one that was there), after the leftovers of killed creates of
/// `dir` are removed; the missing folders above it are recorded in `made`.
fn staging_dir(
    dir: &Path,
    made: &mut staging::Made,
    progress: &dyn Progress,
) -> Result<crate::fsutil::TempTree> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    made.dirs(&parent)?;
    let name = dir
        .file_name()
        .ok_or_else(|| Error::invalid(dir.display().to_string(), "expected a folder path"))?
        .to_string_lossy()
        .into_owned();
    staging::remove_leftovers(&parent, &name, progress);
    let path = parent.join(staging::tmp_name(&name, std::process::id()));
    let tmp = crate::fsutil::TempTree::create(&path)?;
    let versions = tmp.path().join("versions");
    std::fs::create_dir(&versions).at(&versions)?;
    Ok(tmp)
}

/// The root version's files, copied into the registry being built.
struct RootFiles {
    weights: String,
    weights_sha256: String,
    sidecar_sha256: String,
    /// The graph of an exported model: versions open from the registry's
    /// own copy.
    graphs: Vec<(String, String)>,
}

impl RootFiles {
    fn copy(tmp: &Path, spec: &CreateSpec, sc: &checkpoint::Sidecar) -> Result<RootFiles> {
        let w = weights_name(1);
        std::fs::copy(&spec.checkpoint, tmp.join(&w)).at(&spec.checkpoint)?;
        // Hash-checked when the model was loaded.
        let (graphs, _) = graphs::copy_in(tmp, &sc.model)?;
        let side = checkpoint::sidecar_path(&spec.checkpoint);
        let sw = w.replace(".safetensors", ".json");
        std::fs::copy(&side, tmp.join(&sw)).at(&side)?;
        Ok(RootFiles {
            weights_sha256: crate::data::sha256_file(&tmp.join(&w))?,
            sidecar_sha256: crate::data::sha256_file(&tmp.join(&sw))?,
            weights: w,
            graphs,
        })
    }
}

/// A new registry's first records: the registry row, its samples, policy,
/// root version and graphs.
struct RootRecords<'a> {
    row: &'a RegistryRow,
    samples: &'a [Sample],
    policy: &'a Policy,
    version: &'a VersionRow,
    graphs: &'a [(String, String)],
}

impl RootRecords<'_> {
    /// Commits the records in the database of `tmp` (renamed to `dir`
    /// next) in one transaction, then starts the anchor and its copy (what
    /// it makes recorded in `made`, removed again if the create fails).
    fn commit(
        &self,
        tmp: &Path,
        dir: &Path,
        copy: Option<&CopyPath>,
        made: &mut staging::Made,
    ) -> Result<()> {
        let row = self.row;
        let (mut conn, db) = db::open(tmp, true)?;
        let err = sql(&db);
        let tx = immediate(&mut conn, &db)?;
        tx.execute(
            "INSERT INTO registry (id, created, data, data_sha256, train_size, sample_names, \
             samples_sha256, holdout_test, refs, refs_sha256, seed) VALUES (1, ?1, ?2, ?3, \
             ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                row.created,
                row.data,
                row.data_sha256,
                row.train_size,
                row.sample_names,
                row.samples_sha256,
                row.holdout_test,
                row.refs,
                row.refs_sha256,
                row.seed
            ],
        )
        .map_err(&err)?;
        {
            let mut st = tx
                .prepare("INSERT INTO samples (idx, path, sha256) VALUES (?1, ?2, ?3)")
                .map_err(&err)?;
            for s in self.samples {
                st.execute(params![s.idx, s.path, s.sha256]).map_err(&err)?;
            }
        }
        append(&tx, &db, RecordKind::Registry, 1, row)?;
        insert_policy(&tx, &db, self.policy, &row.created)?;
        insert_version(&tx, &db, self.version)?;
        graphs::insert(&tx, &db, self.graphs)?;
        let shown = copy.map(|c| c.path.display().to_string());
        anchor::insert(&tx, &db, shown.as_deref())?;
        tx.commit().map_err(&err)?;
        // The lines name where the registry will lie: its folder exists
        // (empty or made now), so its path resolves as it will.
        made.dirs(dir)?;
        anchor::catch_up(
            &conn,
            &db,
            &tmp.join(anchor::FILE),
            Committer::Create,
            true,
            dir,
        )?;
        if let Some(c) = copy {
            made.copy("anchor-copy", &c.path, c.existed)?;
            anchor::catch_up(&conn, &db, &c.path, Committer::Create, true, dir)?;
        }
        Ok(())
    }
}

/// sha256 over the reference models' files (names and contents).
fn refs_digest(dir: &Path) -> Result<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".lock"))
        .collect();
    names.sort();
    let mut text = String::new();
    for p in names {
        text.push_str(&format!(
            "{}\t{}\n",
            p.file_name().unwrap_or_default().to_string_lossy(),
            crate::data::sha256_file(&p)?
        ));
    }
    Ok(db::sha256(text.as_bytes()))
}

/// The sidecar-style sha256 of sorted training indices of this registry.
fn indices_sha256(info: &RegistryRow, indices: &[i64]) -> String {
    let spec = info.data.parse().unwrap_or_else(|_| DataSpec::new(""));
    let n = info.train_size as usize;
    ForgetSummary::of(&ForgetSet::of_indices(
        spec.train_label(),
        n,
        "registry",
        indices.to_vec(),
    ))
    .indices_sha256
}

fn insert_policy(tx: &rusqlite::Transaction<'_>, db: &Path, p: &Policy, at: &str) -> Result<()> {
    let err = sql(db);
    let id: i64 = tx
        .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM policies", [], |r| {
            r.get(0)
        })
        .map_err(&err)?;
    let row = PolicyRow {
        id,
        set_at: at.to_string(),
        after_requests: p.after_requests.map(|n| n as i64),
        after_fraction: p.after_fraction,
    };
    tx.execute(
        "INSERT INTO policies (id, set_at, after_requests, after_fraction) VALUES (?1, ?2, ?3, ?4)",
        params![row.id, row.set_at, row.after_requests, row.after_fraction],
    )
    .map_err(&err)?;
    append(tx, db, RecordKind::Policy, id, &row)?;
    Ok(())
}

fn insert_version(tx: &rusqlite::Transaction<'_>, db: &Path, v: &VersionRow) -> Result<()> {
    tx.execute(
        "INSERT INTO versions (id, parent, kind, created, weights, weights_sha256, \
         sidecar_sha256, method, settings, calibration, audit, forgotten, forgotten_sha256, \
         retrain, seed, seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
         ?14, ?15, ?16)",
        params![
            v.id,
            v.parent,
            v.kind,
            v.created,
            v.weights,
            v.weights_sha256,
            v.sidecar_sha256,
            v.method,
            v.settings,
            v.calibration,
            v.audit,
            v.forgotten,
            v.forgotten_sha256,
            v.retrain,
            v.seed,
            v.seconds
        ],
    )
    .map_err(sql(db))?;
    append(tx, db, RecordKind::Version, v.id, v)?;
    Ok(())
}

fn insert_absorption(
    tx: &rusqlite::Transaction<'_>,
    db: &Path,
    version: i64,
    request: i64,
    how: How,
) -> Result<()> {
    let err = sql(db);
    tx.execute(
        "INSERT INTO absorptions (version, request, how) VALUES (?1, ?2, ?3)",
        params![version, request, how],
    )
    .map_err(&err)?;
    let row = AbsorptionRow {
        id: tx.last_insert_rowid(),
        version,
        request,
        how,
    };
    append(tx, db, RecordKind::Absorption, row.id, &row)?;
    Ok(())
}

fn read_requests(conn: &Connection, db: &Path, filter: &str) -> Result<Vec<RequestRow>> {
    let err = sql(db);
    let mut st = conn
        .prepare(&format!(
            "SELECT id, received, added, reference, source, size, samples_sha256 FROM requests \
             {filter}{}",
            if filter.contains("ORDER") {
                ""
            } else {
                " ORDER BY id"
            }
        ))
        .map_err(&err)?;
    st.query_map([], |r| {
        Ok(RequestRow {
            id: r.get(0)?,
            received: r.get(1)?,
            added: r.get(2)?,
            reference: r.get(3)?,
            source: r.get(4)?,
            size: r.get(5)?,
            samples_sha256: r.get(6)?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

fn read_versions(conn: &Connection, db: &Path, filter: &str) -> Result<Vec<VersionRow>> {
    let err = sql(db);
    let mut st = conn
        .prepare(&format!(
            "SELECT id, parent, kind, created, weights, weights_sha256, sidecar_sha256, method, \
             settings, calibration, audit, forgotten, forgotten_sha256, retrain, seed, seconds \
             FROM versions {filter}{}",
            if filter.contains("ORDER") {
                ""
            } else {
                " ORDER BY id"
            }
        ))
        .map_err(&err)?;
    st.query_map([], |r| {
        Ok(VersionRow {
            id: r.get(0)?,
            parent: r.get(1)?,
            kind: kinds::kind_in(r, 2, "version")?,
            created: r.get(3)?,
            weights: r.get(4)?,
            weights_sha256: r.get(5)?,
            sidecar_sha256: r.get(6)?,
            method: r.get(7)?,
            settings: r.get(8)?,
            calibration: r.get(9)?,
            audit: r.get(10)?,
            forgotten: r.get(11)?,
            forgotten_sha256: r.get(12)?,
            retrain: r.get(13)?,
            seed: r.get(14)?,
            seconds: r.get(15)?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

fn read_absorptions(conn: &Connection, db: &Path) -> Result<Vec<AbsorptionRow>> {
    let err = sql(db);
    let mut st = conn
        .prepare("SELECT id, version, request, how FROM absorptions ORDER BY id")
        .map_err(&err)?;
    st.query_map([], |r| {
        Ok(AbsorptionRow {
            id: r.get(0)?,
            version: r.get(1)?,
            request: r.get(2)?,
            how: kinds::kind_in(r, 3, "absorption")?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

fn read_retrains(conn: &Connection, db: &Path) -> Result<Vec<RetrainRow>> {
    let err = sql(db);
    let mut st = conn
        .prepare(
            "SELECT id, created, based_on, excluded, excluded_sha256, executor FROM retrains \
             ORDER BY id",
        )
        .map_err(&err)?;
    st.query_map([], |r| {
        Ok(RetrainRow {
            id: r.get(0)?,
            created: r.get(1)?,
            based_on: r.get(2)?,
            excluded: r.get(3)?,
            excluded_sha256: r.get(4)?,
            executor: kinds::kind_in(r, 5, "retrain")?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

fn read_policies(conn: &Connection, db: &Path) -> Result<Vec<PolicyRow>> {
    let err = sql(db);
    let mut st = conn
        .prepare("SELECT id, set_at, after_requests, after_fraction FROM policies ORDER BY id")
        .map_err(&err)?;
    st.query_map([], |r| {
        Ok(PolicyRow {
            id: r.get(0)?,
            set_at: r.get(1)?,
            after_requests: r.get(2)?,
            after_fraction: r.get(3)?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

/// Why request `id` cannot be added while `file` holds its receipt's name:
/// a receipt this registry issued for it says the database lost a request
/// it acknowledged; any other file was put there by hand.
fn receipt_in_the_way(dir: &Path, file: &Path, registry_id: &str, id: i64) -> Error {
    let msg = match anchor::read_receipt(file, registry_id) {
        Ok(r) if r.request.id == id => format!(
            "{} exists already: request {id} was acknowledged before (added {}), but the \
             database no longer holds it (put back to an older copy?); nothing was added — \
             `amun registry verify` names what is missing",
            file.display(),
            r.request.added
        ),
        Ok(r) => format!(
            "{} holds the receipt of request {}, not of request {id} whose name it has (moved \
             or copied there by hand?); move it out of receipts/ and add again; nothing was \
             added",
            file.display(),
            r.request.id
        ),
        Err(why) => format!(
            "{} is in the way of request {id}'s receipt, and is no receipt this registry \
             issued ({why}): a file put into receipts/ by hand? move it out of receipts/ and \
             add again; nothing was added",
            file.display()
        ),
    };
    Error::invalid(format!("registry {}", dir.display()), msg)
}
