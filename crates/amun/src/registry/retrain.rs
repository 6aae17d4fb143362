//! The exact retrain: when the policy says so (or asked to), the root's
//! recipe and seed trained from scratch without every sample the head
//! forgot, in this process or as a Slurm job placed by the experiment's
//! `[slurm]` tables; recorded as a new root once its sidecar's exclusion
//! matches the registry's forgotten set.
use super::audit::{audit_version, compare};
use super::db::{self, append, sql};
use super::kinds::{Committer, Executor, How, RecordKind, VersionKind};
use super::writer::{Writer, head_in, load_checked_data};
use super::{
    JsonText, Registry, RetrainRow, VersionRow, VersionSettings, insert_absorption, insert_version,
    weights_name, write_certificate,
};
use crate::cluster::{Cluster, Sbatch, SlurmState, render_job};
use crate::error::{Error, IoContext, Result};
use crate::experiment::{Resource, SlurmSection};
use crate::model::checkpoint;
use crate::progress::Progress;
use crate::seed::derive;
use crate::train::{Subset, TrainJob, record_final_metrics, train};
use rusqlite::params;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the retrain runs.
#[derive(Debug, Clone)]
pub enum RetrainExecutor {
    /// In this process.
    Local,
    /// As one sbatch job running `amun registry retrain --run ID`.
    Slurm {
        section: Box<SlurmSection>,
        /// The amun binary the job runs.
        amun: PathBuf,
        /// `--device` of the job.
        device: String,
        /// Wait for the job and report its version.
        wait: bool,
    },
}

/// How to retrain.
#[derive(Debug, Clone)]
pub struct RetrainSpec {
    /// Retrain even when the policy does not say so.
    pub force: bool,
    pub executor: RetrainExecutor,
    /// The device of a local retrain.
    pub device: tch::Device,
    pub data_dir: PathBuf,
}

/// [`VersionRow::serialize_output`] of a boxed version (serde hands the
/// field as it is declared).
#[allow(clippy::borrowed_box)]
fn boxed_output<S: serde::Serializer>(
    v: &Box<VersionRow>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    VersionRow::serialize_output(v, s)
}

/// What a retrain did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum RetrainOutcome {
    /// Not due (why), nothing done.
    NotDue {
        why: String,
        /// Where the files of a version the database lacks were moved
        /// (each variant: warned about on the progress too).
        set_aside: Option<String>,
    },
    /// A new root version.
    Retrained {
        retrain: i64,
        /// Its records shown as objects ([`VersionRow::to_output`]).
        #[serde(serialize_with = "boxed_output")]
        version: Box<VersionRow>,
        certificate: PathBuf,
        set_aside: Option<String>,
    },
    /// Submitted to Slurm, not waited for.
    Submitted {
        retrain: i64,
        job: String,
        log: PathBuf,
        set_aside: Option<String>,
    },
}

/// Retrains the registry in `dir` when its policy says so (or `force`).
pub fn retrain(dir: &Path, spec: &RetrainSpec, progress: &dyn Progress) -> Result<RetrainOutcome> {
    let mut w = Writer::open(dir, "retrain", "retrained", progress)?;
    let reg = &w.reg;
    let head = reg.head()?;
    let why = match due(reg, &head, spec.force)? {
        Due::Now(why) => why,
        Due::Not(why) => {
            return Ok(RetrainOutcome::NotDue {
                set_aside: w.set_aside.clone(),
                why,
            });
        }
    };
    let row = new_retrain(reg, &head, spec)?;
    progress.note(&format!(
        "retrain {}: the root's recipe without the {} sample(s) version {} forgot ({why})",
        row.id, row.excluded, head.id,
    ));
    match &spec.executor {
        RetrainExecutor::Local => {
            let (version, cert) =
                run_locked(&mut w, &row, true, spec.device, &spec.data_dir, progress)?;
            Ok(RetrainOutcome::Retrained {
                retrain: row.id,
                version: Box::new(version),
                certificate: cert,
                set_aside: w.set_aside.clone(),
            })
        }
        RetrainExecutor::Slurm {
            section,
            amun,
            device,
            wait,
        } => {
            let job = SlurmRetrain {
                dir,
                row: &row,
                section,
                amun,
                device,
                data_dir: &spec.data_dir,
            };
            job.submit(w, *wait, progress)
        }
    }
}

/// Whether the head is to be retrained: why, or why not.
enum Due {
    Now(String),
    Not(String),
}

/// A head that forgot something and is no retrain is retrained when the
/// policy says so, or when forced.
fn due(reg: &Registry, head: &VersionRow, force: bool) -> Result<Due> {
    if head.forgotten == 0 {
        return Ok(Due::Not(format!(
            "version {} has forgotten nothing: nothing to retrain without",
            head.id
        )));
    }
    if head.kind == VersionKind::Retrained {
        return Ok(Due::Not(format!(
            "version {} is already the exact retrain of everything forgotten",
            head.id
        )));
    }
    match reg.retrain_due()? {
        Some(why) => Ok(Due::Now(why)),
        None if force => Ok(Due::Now("forced".into())),
        None => Ok(Due::Not(format!(
            "the policy ({}) is not met yet; --force retrains anyway",
            reg.policy()?.describe()
        ))),
    }
}

/// The record of a new retrain of `head`: the next id, what it excludes
/// and where it runs. Recorded only with what it made: the version (local)
/// or the job Slurm accepted. A retrain that fails, or is killed, before
/// leaves no record (the writer lock keeps the id free until then).
fn new_retrain(reg: &Registry, head: &VersionRow, spec: &RetrainSpec) -> Result<RetrainRow> {
    let excluded = reg.forgotten(head.id)?;
    let info = reg.info()?;
    let executor = match spec.executor {
        RetrainExecutor::Local => Executor::Local,
        RetrainExecutor::Slurm { .. } => Executor::Slurm,
    };
    if let RetrainExecutor::Slurm { section, .. } = &spec.executor {
        section.check()?;
    }
    let id: i64 = reg
        .conn
        .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM retrains", [], |r| {
            r.get(0)
        })
        .map_err(reg.err())?;
    Ok(RetrainRow {
        id,
        created: db::now_utc(),
        based_on: head.id,
        excluded: excluded.len() as i64,
        excluded_sha256: super::indices_sha256(&info, &excluded),
        executor,
    })
}

/// A retrain run as one sbatch job (`amun registry retrain --run ID`).
struct SlurmRetrain<'a> {
    dir: &'a Path,
    row: &'a RetrainRow,
    section: &'a SlurmSection,
    amun: &'a Path,
    device: &'a str,
    data_dir: &'a Path,
}

impl SlurmRetrain<'_> {
    /// Submits the job and records it; with `wait`, waits for its version.
    fn submit(&self, mut w: Writer, wait: bool, progress: &dyn Progress) -> Result<RetrainOutcome> {
        let row = self.row;
        let (script, log) = self.write_script()?;
        let job = match Sbatch.submit(&script, None) {
            Ok(job) => job,
            Err(e) => {
                let _ = std::fs::remove_file(&script);
                return Err(e);
            }
        };
        // The job waits for the writer lock, which this process holds
        // until the retrain and its job are recorded.
        w.commit(Committer::Retrain, progress, |tx, db| {
            insert_retrain(tx, db, row)?;
            tx.execute(
                "INSERT INTO retrain_jobs (retrain, job, script) VALUES (?1, ?2, ?3)",
                params![row.id, job, script.display().to_string()],
            )
            .map_err(sql(db))?;
            Ok(())
        })?;
        progress.note(&format!("retrain {}: submitted as Slurm job {job}", row.id));
        let set_aside = w.set_aside.clone();
        drop(w);
        if !wait {
            return Ok(RetrainOutcome::Submitted {
                retrain: row.id,
                job,
                log,
                set_aside,
            });
        }
        let v = wait_retrain(
            self.dir,
            row.id,
            Duration::from_secs(2),
            Duration::from_secs(86_400),
        )?;
        let cert = super::certificate::certificate_paths(&Registry::open_read(self.dir)?, v.id).0;
        Ok(RetrainOutcome::Retrained {
            retrain: row.id,
            version: Box::new(v),
            certificate: cert,
            set_aside,
        })
    }

    /// Writes the job's script under the registry's `slurm/`; returns it
    /// and the log it names.
    fn write_script(&self) -> Result<(PathBuf, PathBuf)> {
        let (row, device) = (self.row, self.device);
        let abs = std::path::absolute(self.dir).at(self.dir)?;
        let sdir = abs.join("slurm");
        std::fs::create_dir_all(&sdir).at(&sdir)?;
        let log = sdir.join(format!("retrain-{:04}.log", row.id));
        let script = sdir.join(format!("retrain-{:04}.sh", row.id));
        let cmd: Vec<String> = vec![
            self.amun.display().to_string(),
            "registry".into(),
            "retrain".into(),
            "--registry".into(),
            abs.display().to_string(),
            "--run".into(),
            row.id.to_string(),
            "--data-dir".into(),
            std::path::absolute(self.data_dir)
                .unwrap_or_else(|_| self.data_dir.to_path_buf())
                .display()
                .to_string(),
            "--device".into(),
            device.to_string(),
        ];
        let name = format!("amun-registry-retrain-{}", row.id);
        let r = self
            .section
            .resources(Resource::Train, device.starts_with("cuda"));
        let text = render_job(&name, &log, &r, self.section.job_threads(&r), &cmd);
        crate::fsutil::write_atomic(&script, text.as_bytes())?;
        Ok((script, log))
    }
}

/// Runs retrain `id` of the registry in `dir` (what its Slurm job does);
/// returns its version and where the files of a version the database
/// lacked were moved, if any.
pub fn run_retrain(
    dir: &Path,
    id: i64,
    device: tch::Device,
    data_dir: &Path,
    progress: &dyn Progress,
) -> Result<(VersionRow, Option<String>)> {
    let mut w = Writer::open_for_job(dir, progress)?;
    let set_aside = w.set_aside.clone();
    let reg = &w.reg;
    let row = reg
        .retrains()?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| Error::invalid("run", format!("{id}: no such retrain")))?;
    if let Some(v) = reg.versions()?.into_iter().find(|v| v.retrain == Some(id)) {
        return Ok((v, set_aside));
    }
    let v = run_locked(&mut w, &row, false, device, data_dir, progress)?.0;
    Ok((v, set_aside))
}

/// Inserts the retrain record `row` and chains it.
fn insert_retrain(tx: &rusqlite::Transaction<'_>, db: &Path, row: &RetrainRow) -> Result<()> {
    tx.execute(
        "INSERT INTO retrains (id, created, based_on, excluded, excluded_sha256, executor) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            row.id,
            row.created,
            row.based_on,
            row.excluded,
            row.excluded_sha256,
            row.executor
        ],
    )
    .map_err(sql(db))?;
    append(tx, db, RecordKind::Retrain, row.id, row)?;
    Ok(())
}

/// The retrain itself, under the writer lock; `record`: its record is not
/// in the database yet (a local retrain), and goes in with its version.
fn run_locked(
    w: &mut Writer,
    row: &RetrainRow,
    record: bool,
    device: tch::Device,
    data_dir: &Path,
    progress: &dyn Progress,
) -> Result<(VersionRow, PathBuf)> {
    let reg = &w.reg;
    let info = reg.info()?;
    let head = reg.head()?;
    if head.id != row.based_on {
        return Err(Error::invalid(
            format!("retrain {}", row.id),
            format!(
                "was started for version {}, but the head is now version {}: start a new \
                 retrain",
                row.based_on, head.id
            ),
        ));
    }
    let excluded = reg.forgotten(row.based_on)?;
    if super::indices_sha256(&info, &excluded) != row.excluded_sha256 {
        return Err(Error::invalid(
            format!("retrain {}", row.id),
            "the forgotten set of its version differs from the one it recorded",
        ));
    }
    let forget = reg.forget_set(excluded.clone(), "registry")?;
    let data = load_checked_data(reg, data_dir, progress)?;
    let root = reg.dir.join(weights_name(1));
    let root_sc = reg.root_sidecar()?;
    let recipe = crate::train::recipe_of(&root_sc)?.ok_or_else(|| {
        Error::checkpoint(
            &root,
            "records no recipe, so no exact retrain can repeat it",
        )
    })?;
    let data = data.to_device(device);
    let t = Instant::now();
    let job = TrainJob {
        spec: root_sc.model.clone(),
        data: &data,
        recipe,
        seed: root_sc.seed,
        subset: Subset::Exclude(&forget),
        out: None,
        resume: false,
        eval_each_epoch: false,
    };
    let mut trained = train(&job, progress)?;
    record_final_metrics(&trained.model, &data, &mut trained.sidecar);
    let seconds = t.elapsed().as_secs_f64();
    let new_id = head.id + 1;
    let staged = w.stage(&trained.model, &trained.sidecar, new_id)?;
    // The retrain's own record of what it excluded, read back from the
    // file the version will be, must be the registry's forgotten set.
    let written = checkpoint::read_sidecar(&staged)?;
    crate::audit::check_retrain(&written, &forget, &staged)?;
    let refs = match &info.refs {
        Some(r) => Some(crate::audit::load_references(Path::new(r), &data)?),
        None => None,
    };
    let mut audit = audit_version(
        &trained.model,
        &data,
        &excluded,
        info.holdout_test as usize,
        refs.as_ref(),
        derive(info.seed as u64, "registry-audit", 0),
    )?;
    audit.retrain = Some(compare(&head.audit()?, &audit, head.id, new_id));
    let (weights, weights_sha256, sidecar_sha256) = w.place(&staged, new_id)?;
    let version = VersionRow {
        id: new_id,
        parent: None,
        kind: VersionKind::Retrained,
        created: db::now_utc(),
        weights,
        weights_sha256,
        sidecar_sha256,
        method: Some("retrain".into()),
        settings: Some(JsonText::sorted(&VersionSettings::Retrain {
            recipe: crate::train::recipe_of(&root_sc)?,
            seed: root_sc.seed,
        })),
        calibration: None,
        audit: JsonText::new(&audit),
        forgotten: excluded.len() as i64,
        forgotten_sha256: row.excluded_sha256.clone(),
        retrain: Some(row.id),
        seed: root_sc.seed as i64,
        seconds,
    };
    let absorbed = reg.absorbed(row.based_on)?;
    let changed = format!("retrain {}", row.id);
    w.commit_version(Committer::Retrain, progress, |tx, db| {
        if head_in(tx, db)? != head.id {
            return Err(Error::invalid(
                changed,
                "the head changed while it ran; nothing was recorded",
            ));
        }
        if record {
            insert_retrain(tx, db, row)?;
        }
        insert_version(tx, db, &version)?;
        for r in absorbed {
            insert_absorption(tx, db, new_id, r, How::Retrained)?;
        }
        Ok(())
    })?;
    let reg = &w.reg;
    let (md, _) = super::writer::certify_committed(reg, new_id)?;
    // The unlearned version's certificate now has a retrain to compare with.
    write_certificate(reg, row.based_on)?;
    Ok((version, md))
}

/// Waits until retrain `id` recorded its version, or its Slurm job ended
/// without one (an error with the end of its log).
pub fn wait_retrain(dir: &Path, id: i64, every: Duration, timeout: Duration) -> Result<VersionRow> {
    let t = Instant::now();
    loop {
        let reg = Registry::open_read(dir)?;
        if let Some(v) = reg.versions()?.into_iter().find(|v| v.retrain == Some(id)) {
            return Ok(v);
        }
        let job = reg.retrain_job(id)?.ok_or_else(|| {
            Error::invalid(
                "wait-for",
                format!("retrain {id} was not submitted to Slurm, so there is nothing to wait for"),
            )
        })?;
        let states = Sbatch.query(std::slice::from_ref(&job))?;
        if let Some(s) = states.get(&job)
            && !matches!(s.state, SlurmState::Pending | SlurmState::Running)
        {
            // The job may have committed just before it ended.
            if let Some(v) = Registry::open_read(dir)?
                .versions()?
                .into_iter()
                .find(|v| v.retrain == Some(id))
            {
                return Ok(v);
            }
            let log = std::path::absolute(dir)
                .at(dir)?
                .join("slurm")
                .join(format!("retrain-{id:04}.log"));
            return Err(Error::invalid(
                format!("retrain {id}"),
                format!(
                    "Slurm job {job} ended ({}) without recording a version; the end of its \
                     log {}:\n{}",
                    s.state.name(),
                    log.display(),
                    crate::experiment::exec::tail(&log, 15)
                ),
            ));
        }
        if t.elapsed() > timeout {
            return Err(Error::invalid(
                format!("retrain {id}"),
                format!(
                    "Slurm job {job} still queued or running after {}s",
                    timeout.as_secs()
                ),
            ));
        }
        std::thread::sleep(every);
    }
}
