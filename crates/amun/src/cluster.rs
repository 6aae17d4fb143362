//! The Slurm cluster as amun reaches it, for the experiment executor and a
//! registry's retrain alike: job states, the [`Cluster`] trait (submit,
//! cancel, ask) with [`Sbatch`] running Slurm's commands, and the `#SBATCH`
//! lines of a job's resources.
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Resolved resources of one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    pub cpus: usize,
    pub gpus: usize,
    pub mem: String,
    pub time: String,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub extra: Vec<String>,
}

/// A job's state as Slurm names it, in the classes the executor acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlurmState {
    Pending,
    /// Running, or on its way in or out (CONFIGURING, COMPLETING,
    /// REQUEUED, RESIZING, SUSPENDED).
    Running,
    Completed,
    Cancelled,
    /// Any other end: FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, … (the
    /// name kept for messages).
    Ended(String),
}

impl SlurmState {
    /// Classifies Slurm's state name (`CANCELLED by 0` is CANCELLED).
    pub fn parse(s: &str) -> SlurmState {
        match s.split_whitespace().next().unwrap_or("") {
            "PENDING" => SlurmState::Pending,
            "RUNNING" | "CONFIGURING" | "COMPLETING" | "REQUEUED" | "RESIZING" | "SUSPENDED" => {
                SlurmState::Running
            }
            "COMPLETED" => SlurmState::Completed,
            "CANCELLED" => SlurmState::Cancelled,
            other => SlurmState::Ended(other.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            SlurmState::Pending => "PENDING",
            SlurmState::Running => "RUNNING",
            SlurmState::Completed => "COMPLETED",
            SlurmState::Cancelled => "CANCELLED",
            SlurmState::Ended(s) => s,
        }
    }
}

/// What Slurm says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub state: SlurmState,
    /// squeue's reason (pending jobs) or sacct's exit code.
    pub detail: String,
}

impl JobState {
    /// A pending job whose dependency can never be met.
    pub fn never_starts(&self) -> bool {
        self.state == SlurmState::Pending && self.detail.contains("DependencyNeverSatisfied")
    }
}

/// The cluster: submitting, cancelling and asking about jobs.
pub trait Cluster {
    /// Submits the array job `script`, after every job of `dependency`
    /// (`afterok` targets joined by `:`) succeeded; returns its job id.
    fn submit(&self, script: &Path, dependency: Option<&str>) -> Result<String>;
    /// Cancels `job` (an array task `J_T` or a whole array `J`).
    fn cancel(&self, job: &str) -> Result<()>;
    /// The states of `jobs` (`ARRAY_TASK` ids) it knows.
    fn query(&self, jobs: &[String]) -> Result<BTreeMap<String, JobState>>;
}

/// The real cluster, through Slurm's commands (found on `PATH`, configured
/// by `SLURM_CONF`).
pub struct Sbatch;

fn run_cmd(cmd: &mut Command, what: &str) -> Result<String> {
    let o = cmd.output().map_err(|e| {
        Error::invalid(
            "slurm",
            format!("cannot run {what}: {e} (is Slurm installed, and SLURM_CONF set?)"),
        )
    })?;
    if !o.status.success() {
        return Err(Error::invalid(
            "slurm",
            format!(
                "{what} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

impl Cluster for Sbatch {
    fn submit(&self, script: &Path, dependency: Option<&str>) -> Result<String> {
        let mut sb = Command::new("sbatch");
        sb.arg("--parsable");
        if let Some(d) = dependency {
            sb.arg(format!("--dependency=afterok:{d}"));
        }
        sb.arg(script);
        let raw = run_cmd(&mut sb, "sbatch")?;
        let id = raw.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::invalid(
                "slurm",
                format!("sbatch answered '{}', not a job id", raw.trim()),
            ));
        }
        Ok(id)
    }

    fn cancel(&self, job: &str) -> Result<()> {
        run_cmd(Command::new("scancel").arg(job), "scancel").map(|_| ())
    }

    /// Queued and running jobs from squeue, finished ones from sacct.
    fn query(&self, jobs: &[String]) -> Result<BTreeMap<String, JobState>> {
        let mut out = BTreeMap::new();
        if jobs.is_empty() {
            return Ok(out);
        }
        let arrays: BTreeSet<&str> = jobs.iter().filter_map(|j| j.split('_').next()).collect();
        let list = arrays.iter().copied().collect::<Vec<_>>().join(",");
        // squeue keeps finished jobs for a while (MinJobAge) with their
        // final state, before sacct may have them; it errors on unknown
        // ids, so ask for every job and filter.
        let q = run_cmd(
            Command::new("squeue").args(["-h", "-r", "-t", "all", "-o", "%i|%T|%r"]),
            "squeue",
        )?;
        let a = run_cmd(
            Command::new("sacct").args([
                "-n",
                "-P",
                "-X",
                "-o",
                "JobID,State,ExitCode",
                "-j",
                &list,
            ]),
            "sacct",
        )?;
        for (text, first) in [(&q, true), (&a, false)] {
            for line in text.lines() {
                let mut f = line.split('|');
                let (Some(id), Some(state), Some(detail)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                // squeue knows why a job waits; for a job that ended,
                // sacct's exit code says more than squeue's last reason
                // (which can be JobLaunchFailure for a task killed after it
                // launched).
                let ended = !matches!(
                    SlurmState::parse(state),
                    SlurmState::Pending | SlurmState::Running
                );
                if jobs.iter().any(|j| j == id) && (first || ended || !out.contains_key(id)) {
                    out.insert(
                        id.to_string(),
                        JobState {
                            state: SlurmState::parse(state),
                            detail: detail.to_string(),
                        },
                    );
                }
            }
        }
        Ok(out)
    }
}

/// `s` quoted for the shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The `#SBATCH` options (without the prefix) of a job with resources `r`.
pub fn resource_lines(r: &Resolved) -> Vec<String> {
    let mut v = vec![
        format!("--cpus-per-task={}", r.cpus),
        format!("--mem={}", r.mem),
        format!("--time={}", r.time),
    ];
    if r.gpus > 0 {
        v.push(format!("--gres=gpu:{}", r.gpus));
    }
    if let Some(p) = &r.partition {
        v.push(format!("--partition={p}"));
    }
    if let Some(a) = &r.account {
        v.push(format!("--account={a}"));
    }
    for e in &r.extra {
        let e = e.trim();
        v.push(e.strip_prefix("#SBATCH").unwrap_or(e).trim().to_string());
    }
    v
}

/// The sbatch script of a single job (pure): `command` (program and
/// arguments) with the resources `r` and `threads`, its output in `log`.
/// What runs outside an experiment's plan (a registry's retrain) is placed
/// by the same `[slurm]` tables as its steps.
pub fn render_job(
    job_name: &str,
    log: &Path,
    r: &Resolved,
    threads: usize,
    command: &[String],
) -> String {
    let mut text = String::from("#!/bin/bash\n");
    let mut lines = vec![
        format!("--job-name={job_name}"),
        format!("--output={}", log.display()),
    ];
    lines.extend(resource_lines(r));
    for l in lines {
        text.push_str(&format!("#SBATCH {l}\n"));
    }
    text.push_str("set -uo pipefail\n");
    text.push_str("echo \"amun job ${SLURM_JOB_ID} on $(hostname), $(date -u +%FT%TZ)\"\n");
    let line: Vec<String> = command.iter().map(|a| sh_quote(a)).collect();
    text.push_str(&format!("exec {} --threads {threads}\n", line.join(" ")));
    text
}
