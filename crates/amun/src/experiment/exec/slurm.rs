//! The Slurm executor. Every step that is not done becomes one task of an
//! sbatch job array (steps of one kind whose dependencies are already
//! submitted go into the same array), with `--dependency=afterok:` on the
//! jobs of the steps it reads. A task runs `amun experiment --folder DIR
//! --step ID` in the shared run folder, under the same artifact rules as
//! everywhere (lock, atomic write, meta); its log goes beside its artifact.
//!
//! Submissions are recorded in `DIR/slurm/jobs.json`. Submitting again
//! skips done steps and steps whose job is still queued or running, cancels
//! jobs that can never start (a step they wait for failed or was
//! cancelled), and submits the rest. [`status`] joins the run folder with
//! `squeue` and `sacct`.
use crate::error::{Error, IoContext, Result};
use crate::experiment::plan::{Plan, Resource, Status, Step};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Resources of the jobs of one step kind; unset fields take the kind's
/// default (see [`SlurmSection::resources`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobResources {
    pub cpus: Option<usize>,
    pub gpus: Option<usize>,
    /// e.g. "8G".
    pub mem: Option<String>,
    /// e.g. "04:00:00".
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Extra `#SBATCH` lines (with or without the prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

/// The `[slurm]` table of an experiment (or `--slurm-config FILE`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    pub partition: Option<String>,
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// libtorch threads per step [default: the job's CPUs]. CPU results are
    /// bit-identical to a local run only with the same thread count.
    pub threads: Option<usize>,
    pub train: Option<JobResources>,
    pub search: Option<JobResources>,
    pub unlearn: Option<JobResources>,
    pub audit: Option<JobResources>,
    pub light: Option<JobResources>,
}

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

impl SlurmSection {
    /// Reads a TOML file holding the table's keys at its top level.
    pub fn read(path: &Path) -> Result<SlurmSection> {
        let text = std::fs::read_to_string(path).at(path)?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            Error::format(
                path,
                match line {
                    Some(l) => format!("line {l}: {}", e.message().trim_end()),
                    None => e.message().trim_end().to_string(),
                },
            )
        })
    }

    /// The resources of `kind`'s jobs: the kind's table, then the section's
    /// partition/account/extra, then defaults by kind (training gets a GPU
    /// when the experiment runs on CUDA).
    pub fn resources(&self, kind: Resource, cuda: bool) -> Resolved {
        let own = match kind {
            Resource::Train => &self.train,
            Resource::Search => &self.search,
            Resource::Unlearn => &self.unlearn,
            Resource::Audit => &self.audit,
            Resource::Light => &self.light,
        }
        .clone()
        .unwrap_or_default();
        let (cpus, mem, time) = match kind {
            Resource::Train => (2, "8G", "24:00:00"),
            Resource::Search => (2, "8G", "04:00:00"),
            Resource::Unlearn => (2, "8G", "04:00:00"),
            Resource::Audit => (2, "8G", "01:00:00"),
            Resource::Light => (1, "2G", "00:30:00"),
        };
        let gpu = cuda && kind != Resource::Light;
        let mut extra = self.extra.clone();
        extra.extend(own.extra.clone());
        Resolved {
            cpus: own.cpus.unwrap_or(cpus),
            gpus: own.gpus.unwrap_or(usize::from(gpu)),
            mem: own.mem.unwrap_or_else(|| mem.to_string()),
            time: own.time.unwrap_or_else(|| time.to_string()),
            partition: own.partition.or_else(|| self.partition.clone()),
            account: own.account.or_else(|| self.account.clone()),
            extra,
        }
    }
}

/// One submitted step: its job (`ARRAY_TASK`) and the array's script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRef {
    /// `12345_3`: array job 12345, task 3.
    pub job: String,
    pub script: String,
}

fn jobs_path(dir: &Path) -> PathBuf {
    dir.join("slurm").join("jobs.json")
}

/// The recorded submissions of a run folder.
pub fn recorded(dir: &Path) -> Result<BTreeMap<String, JobRef>> {
    let p = jobs_path(dir);
    if !p.exists() {
        return Ok(BTreeMap::new());
    }
    fsutil::read_json(&p)
}

/// What Slurm says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, …
    pub state: String,
    /// squeue's reason (pending jobs) or sacct's exit code.
    pub detail: String,
}

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

/// The states of `jobs` (`ARRAY_TASK` ids): queued/running ones from
/// squeue, finished ones from sacct.
pub fn query(jobs: &[String]) -> Result<BTreeMap<String, JobState>> {
    let mut out = BTreeMap::new();
    if jobs.is_empty() {
        return Ok(out);
    }
    let arrays: BTreeSet<&str> = jobs.iter().filter_map(|j| j.split('_').next()).collect();
    let list = arrays.iter().copied().collect::<Vec<_>>().join(",");
    // squeue keeps finished jobs for a while (MinJobAge) with their final
    // state, before sacct may have them; it errors on unknown ids, so ask
    // for every job and filter.
    let q = run_cmd(
        Command::new("squeue").args(["-h", "-r", "-t", "all", "-o", "%i|%T|%r"]),
        "squeue",
    )?;
    for line in q.lines() {
        let mut f = line.split('|');
        let (Some(id), Some(state), Some(reason)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if jobs.iter().any(|j| j == id) {
            out.insert(
                id.to_string(),
                JobState {
                    state: state.to_string(),
                    detail: reason.to_string(),
                },
            );
        }
    }
    let a = run_cmd(
        Command::new("sacct").args(["-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", &list]),
        "sacct",
    )?;
    for line in a.lines() {
        let mut f = line.split('|');
        let (Some(id), Some(state), Some(code)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if jobs.iter().any(|j| j == id) && !out.contains_key(id) {
            // "CANCELLED by 0" → CANCELLED.
            let state = state.split_whitespace().next().unwrap_or("").to_string();
            out.insert(
                id.to_string(),
                JobState {
                    state,
                    detail: code.to_string(),
                },
            );
        }
    }
    Ok(out)
}

fn in_flight(s: &JobState) -> bool {
    matches!(
        s.state.as_str(),
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "REQUEUED"
            | "RESIZING"
            | "SUSPENDED"
    ) && !never_starts(s)
}

fn never_starts(s: &JobState) -> bool {
    s.state == "PENDING" && s.detail.contains("DependencyNeverSatisfied")
}

/// How to run one step in a job: the command line after `#SBATCH` lines
/// (the step id comes from the array index).
pub struct JobCommand {
    /// The amun binary.
    pub amun: PathBuf,
    /// Arguments before `--step ID` (e.g. `experiment --folder DIR
    /// --data-dir D`); `--threads N` is appended per kind.
    pub args: Vec<String>,
}

/// What a submission did.
#[derive(Debug, Default)]
pub struct Submitted {
    /// (array job id, step kind, steps) per sbatch call.
    pub arrays: Vec<(String, String, Vec<String>)>,
    /// Steps already queued or running, left as they are.
    pub in_flight: Vec<String>,
    /// Jobs cancelled because a step they waited for failed.
    pub cancelled: Vec<String>,
    pub done: usize,
}

fn kind_name(s: &Step) -> String {
    serde_json::to_value(&s.kind)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(String::from))
        .unwrap_or_else(|| "step".into())
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Submits every step of `plan` that is not done and not in flight.
pub fn submit(
    plan: &Plan,
    dir: &Path,
    name: &str,
    section: &SlurmSection,
    cuda: bool,
    cmd: &JobCommand,
) -> Result<Submitted> {
    let mut jobs = recorded(dir)?;
    let st = status(plan, dir, !jobs.is_empty())?;
    let mut out = Submitted::default();
    // step → the job a new job must wait for (queued/running steps).
    let mut waiting_on: BTreeMap<String, String> = BTreeMap::new();
    let mut missing: Vec<usize> = Vec::new();
    for (i, s) in st.iter().enumerate() {
        match s.state.as_str() {
            "done" => out.done += 1,
            "queued" | "running" => {
                waiting_on.insert(s.step.clone(), jobs[&s.step].job.clone());
                out.in_flight.push(s.step.clone());
            }
            "blocked" => {
                // It waits for a step that failed or was cancelled: it can
                // never start. Cancelled here, submitted again below.
                let job = jobs[&s.step].job.clone();
                let _ = run_cmd(Command::new("scancel").arg(&job), "scancel");
                out.cancelled.push(job);
                missing.push(i);
            }
            _ => missing.push(i),
        }
    }
    // Arrays: a step joins the latest array of its kind that every one of
    // its dependencies was submitted before.
    let mut groups: Vec<(String, Resource, Vec<usize>)> = Vec::new();
    let mut group_of: BTreeMap<usize, usize> = BTreeMap::new();
    for &i in &missing {
        let s = &plan.steps[i];
        let after = s
            .deps
            .iter()
            .filter_map(|d| plan.position(d).and_then(|j| group_of.get(&j)))
            .max()
            .copied();
        let kind = kind_name(s);
        let g = groups
            .iter()
            .enumerate()
            .rev()
            .find(|(gi, (k, r, _))| *k == kind && *r == s.resource && after.is_none_or(|a| *gi > a))
            .map(|(gi, _)| gi);
        let g = match g {
            Some(g) => g,
            None => {
                groups.push((kind, s.resource, Vec::new()));
                groups.len() - 1
            }
        };
        groups[g].2.push(i);
        group_of.insert(i, g);
    }
    let sdir = dir.join("slurm");
    std::fs::create_dir_all(sdir.join("logs")).at(&sdir)?;
    let mut task_job: BTreeMap<usize, String> = BTreeMap::new();
    let mut array_ids: Vec<String> = Vec::new();
    for (g, (kind, res, members)) in groups.iter().enumerate() {
        let r = section.resources(*res, cuda);
        let threads = section.threads.unwrap_or(r.cpus).max(1);
        // Dependencies: whole arrays when every task of one is needed.
        let mut deps: BTreeSet<String> = BTreeSet::new();
        for &i in members {
            for d in &plan.steps[i].deps {
                if let Some(j) = waiting_on.get(d) {
                    deps.insert(j.clone());
                } else if let Some(&p) = plan.position(d).as_ref()
                    && let Some(j) = task_job.get(&p)
                {
                    deps.insert(j.clone());
                }
            }
        }
        let dep_arg = compress(&deps, &groups, &group_of, &task_job, &array_ids);
        let script = sdir.join(format!("{g:03}-{kind}.sh"));
        let mut text = String::from("#!/bin/bash\n");
        text.push_str(&format!("#SBATCH --job-name=amun-{name}-{kind}\n"));
        text.push_str(&format!("#SBATCH --array=0-{}\n", members.len() - 1));
        text.push_str(&format!(
            "#SBATCH --output={}/logs/%x-%A_%a.out\n",
            sdir.display()
        ));
        text.push_str(&format!("#SBATCH --cpus-per-task={}\n", r.cpus));
        text.push_str(&format!("#SBATCH --mem={}\n", r.mem));
        text.push_str(&format!("#SBATCH --time={}\n", r.time));
        if r.gpus > 0 {
            text.push_str(&format!("#SBATCH --gres=gpu:{}\n", r.gpus));
        }
        if let Some(p) = &r.partition {
            text.push_str(&format!("#SBATCH --partition={p}\n"));
        }
        if let Some(a) = &r.account {
            text.push_str(&format!("#SBATCH --account={a}\n"));
        }
        for e in &r.extra {
            let e = e.trim();
            if e.starts_with("#SBATCH") {
                text.push_str(&format!("{e}\n"));
            } else {
                text.push_str(&format!("#SBATCH {e}\n"));
            }
        }
        text.push_str("set -uo pipefail\n");
        text.push_str("steps=(");
        for &i in members {
            text.push_str(&format!(" {}", sh_quote(&plan.steps[i].id)));
        }
        text.push_str(" )\nlogs=(");
        for &i in members {
            text.push_str(&format!(
                " {}",
                sh_quote(&super::log_path(dir, &plan.steps[i]).display().to_string())
            ));
        }
        text.push_str(" )\n");
        text.push_str("step=${steps[$SLURM_ARRAY_TASK_ID]}\nlog=${logs[$SLURM_ARRAY_TASK_ID]}\n");
        text.push_str("mkdir -p \"$(dirname \"$log\")\"\nexec >\"$log\" 2>&1\n");
        text.push_str(
            "echo \"amun step $step: job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname), $(date -u +%FT%TZ)\"\n",
        );
        let mut line = sh_quote(&cmd.amun.display().to_string());
        for a in &cmd.args {
            line.push(' ');
            line.push_str(&sh_quote(a));
        }
        text.push_str(&format!(
            "exec {line} --threads {threads} --step \"$step\"\n"
        ));
        fsutil::write_atomic(&script, text.as_bytes())?;
        let mut sb = Command::new("sbatch");
        sb.arg("--parsable");
        if let Some(d) = &dep_arg {
            sb.arg(format!("--dependency=afterok:{d}"));
        }
        sb.arg(&script);
        let raw = run_cmd(&mut sb, "sbatch")?;
        let array = raw.trim().split(';').next().unwrap_or("").to_string();
        if array.is_empty() || !array.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::invalid(
                "slurm",
                format!("sbatch answered '{}', not a job id", raw.trim()),
            ));
        }
        let mut steps = Vec::new();
        for (t, &i) in members.iter().enumerate() {
            let job = format!("{array}_{t}");
            task_job.insert(i, job.clone());
            jobs.insert(
                plan.steps[i].id.clone(),
                JobRef {
                    job,
                    script: script.display().to_string(),
                },
            );
            steps.push(plan.steps[i].id.clone());
        }
        // Recorded after every sbatch: a crash here never loses a job.
        fsutil::write_json(&jobs_path(dir), &jobs)?;
        array_ids.push(array.clone());
        out.arrays.push((array, kind.clone(), steps));
    }
    Ok(out)
}

/// `afterok` targets: a whole array (`J`) when every task of it is needed,
/// else its tasks (`J_t`).
fn compress(
    deps: &BTreeSet<String>,
    groups: &[(String, Resource, Vec<usize>)],
    group_of: &BTreeMap<usize, usize>,
    task_job: &BTreeMap<usize, String>,
    array_ids: &[String],
) -> Option<String> {
    if deps.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut covered: BTreeSet<&String> = BTreeSet::new();
    for (g, array) in array_ids.iter().enumerate() {
        let tasks: Vec<&String> = groups[g].2.iter().filter_map(|i| task_job.get(i)).collect();
        if !tasks.is_empty() && tasks.iter().all(|t| deps.contains(*t)) {
            parts.push(array.clone());
            covered.extend(tasks);
        }
    }
    let _ = group_of;
    for d in deps {
        if !covered.contains(d) {
            parts.push(d.clone());
        }
    }
    Some(parts.join(":"))
}

/// Where each step stands: done in the run folder, or its job's state.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub step: String,
    /// done, queued, running, failed, cancelled, blocked, missing.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The end of the log of a failed step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

/// The status of every step of `plan` in `dir`, with Slurm's view of the
/// submitted ones (when `slurm_query` is set).
pub fn status(plan: &Plan, dir: &Path, slurm_query: bool) -> Result<Vec<StepStatus>> {
    let st = plan.status(dir);
    let jobs = recorded(dir)?;
    let states = if slurm_query && !jobs.is_empty() {
        query(&jobs.values().map(|j| j.job.clone()).collect::<Vec<_>>())?
    } else {
        BTreeMap::new()
    };
    let mut out: Vec<StepStatus> = Vec::new();
    for (i, s) in plan.steps.iter().enumerate() {
        let job = jobs.get(&s.id).map(|j| j.job.clone());
        let js = job.as_ref().and_then(|j| states.get(j));
        // A queued job whose input can no longer come (failed, cancelled,
        // blocked itself, or not submitted) never starts.
        let stuck_dep = s.deps.iter().any(|d| {
            plan.position(d).is_some_and(|j| {
                matches!(
                    out[j].state.as_str(),
                    "failed" | "cancelled" | "blocked" | "missing" | "waiting"
                )
            })
        });
        let log_tail = || Some(super::tail(&super::log_path(dir, s), 10));
        let (state, detail, tail) = if st[i] == Status::Done {
            ("done".to_string(), None, None)
        } else {
            match js {
                Some(j) if never_starts(j) || (j.state == "PENDING" && stuck_dep) => (
                    "blocked".into(),
                    Some("waits for a step that failed or was cancelled".into()),
                    None,
                ),
                Some(j) if j.state == "PENDING" => ("queued".into(), Some(j.detail.clone()), None),
                Some(j) if in_flight(j) => ("running".into(), None, None),
                Some(j) if j.state == "CANCELLED" => {
                    ("cancelled".into(), Some(j.detail.clone()), log_tail())
                }
                Some(j) if j.state != "COMPLETED" => (
                    "failed".into(),
                    Some(format!("{} {}", j.state, j.detail)),
                    log_tail(),
                ),
                _ => (
                    match st[i] {
                        Status::Ready | Status::Stale => "missing",
                        _ => "waiting",
                    }
                    .to_string(),
                    None,
                    None,
                ),
            }
        };
        out.push(StepStatus {
            step: s.id.clone(),
            state,
            job,
            detail,
            log_tail: tail.filter(|t| !t.is_empty()),
        });
    }
    Ok(out)
}

/// Waits until no step of `plan` in `dir` is queued (able to start) or
/// running; polls every `every`.
pub fn wait(
    plan: &Plan,
    dir: &Path,
    every: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<()> {
    let t = std::time::Instant::now();
    loop {
        let st = status(plan, dir, true)?;
        if !st
            .iter()
            .any(|s| s.state == "queued" || s.state == "running")
        {
            return Ok(());
        }
        if t.elapsed() > timeout {
            return Err(Error::invalid(
                "slurm",
                format!("jobs still queued or running after {}s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(every);
    }
}
