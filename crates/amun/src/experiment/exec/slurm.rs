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
//! cancelled), and submits the rest.
//!
//! The decisions — each step's state, the arrays, their dependencies, the
//! scripts — are pure functions of the plan, the run folder's status and
//! what the cluster says; the cluster itself is behind [`Cluster`]
//! ([`Sbatch`] runs sbatch, scancel, squeue and sacct), so the logic is
//! tested against an in-memory cluster and, in the slow tier, a real one.
pub use crate::cluster::{Cluster, JobState, Sbatch, SlurmState};
use crate::cluster::{resource_lines, sh_quote};
use crate::error::{Error, IoContext, Result};
use crate::experiment::placement::SlurmSection;
use crate::experiment::plan::{Plan, Resource, Status, Step};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

/// Where a step stands, joining the run folder with the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Its artifact is fresh.
    Done,
    /// Its job waits in the queue and can start.
    Queued,
    Running,
    /// Its job ended without the artifact.
    Failed,
    Cancelled,
    /// Its job waits for a step that failed or was cancelled: it never
    /// starts.
    Blocked,
    /// Not done and not submitted, its inputs done.
    Missing,
    /// Not submitted, and its artifact is there but not what its inputs
    /// say it must be (edited, or made from other inputs): it will be
    /// recomputed, as `--plan` says (hostile11 X4: it was "missing").
    Stale,
    /// Not submitted and waiting for inputs.
    Waiting,
}

impl StepState {
    pub fn name(self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::Queued => "queued",
            StepState::Running => "running",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Blocked => "blocked",
            StepState::Missing => "missing",
            StepState::Stale => "stale",
            StepState::Waiting => "waiting",
        }
    }

    /// Whether its job may still produce the artifact.
    pub fn in_flight(self) -> bool {
        matches!(self, StepState::Queued | StepState::Running)
    }
}

/// squeue's reason for a waiting job, without the placeholders Slurm
/// prints when there is none (`None`, `(null)`).
fn reason(detail: &str) -> Option<String> {
    let d = detail.trim();
    (!d.is_empty() && d != "None" && d != "(null)").then(|| d.to_string())
}

/// How a job ended, from sacct's `EXIT:SIGNAL` exit code (or a reason).
fn ending(detail: &str) -> Option<String> {
    let d = reason(detail)?;
    let Some((code, sig)) = d.split_once(':') else {
        return Some(d);
    };
    match (code.parse::<i32>(), sig.parse::<i32>()) {
        (Ok(_), Ok(s)) if s != 0 => Some(format!("killed by signal {s}")),
        (Ok(0), Ok(0)) => None,
        (Ok(c), Ok(0)) => Some(format!("exit code {c}")),
        _ => Some(d),
    }
}

/// Where each step stands: done in the run folder, or its job's state.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub step: String,
    pub state: StepState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The end of the log of a failed step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

/// Each step's state from the run folder's `status`, the recorded `jobs`
/// and the cluster's `states` of them (pure).
pub fn classify(
    plan: &Plan,
    status: &[Status],
    jobs: &BTreeMap<String, JobRef>,
    states: &BTreeMap<String, JobState>,
) -> Vec<StepStatus> {
    let mut out: Vec<StepStatus> = Vec::with_capacity(plan.steps.len());
    for (i, s) in plan.steps.iter().enumerate() {
        let job = jobs.get(s.id.as_str()).map(|j| j.job.clone());
        let js = job.as_ref().and_then(|j| states.get(j));
        // A queued job whose input can no longer come (failed, cancelled,
        // blocked itself, or not submitted) never starts.
        let stuck_dep = plan.dep_positions(s).iter().any(|&j| {
            matches!(
                out[j].state,
                StepState::Failed
                    | StepState::Cancelled
                    | StepState::Blocked
                    | StepState::Missing
                    | StepState::Stale
                    | StepState::Waiting
            )
        });
        let (state, detail) = if status[i] == Status::Done {
            (StepState::Done, None)
        } else {
            match js {
                Some(j) if j.never_starts() || (j.state == SlurmState::Pending && stuck_dep) => (
                    StepState::Blocked,
                    Some("waits for a step that failed or was cancelled".into()),
                ),
                Some(j) if j.state == SlurmState::Pending => (StepState::Queued, reason(&j.detail)),
                Some(j) if j.state == SlurmState::Running => (StepState::Running, None),
                Some(j) if j.state == SlurmState::Cancelled => {
                    (StepState::Cancelled, ending(&j.detail))
                }
                Some(j) if j.state != SlurmState::Completed => (
                    StepState::Failed,
                    Some(match ending(&j.detail) {
                        Some(e) => format!("{}, {e}", j.state.name()),
                        None => j.state.name().to_string(),
                    }),
                ),
                _ => (
                    match status[i] {
                        Status::Ready => StepState::Missing,
                        Status::Stale => StepState::Stale,
                        _ => StepState::Waiting,
                    },
                    None,
                ),
            }
        };
        out.push(StepStatus {
            step: s.id.to_string(),
            state,
            job,
            detail,
            log_tail: None,
        });
    }
    out
}

/// The status of every step of `plan` in `dir`, with the cluster's view
/// of the submitted ones (when `cluster` is given) and the end of failed
/// steps' logs.
pub fn status(plan: &Plan, dir: &Path, cluster: Option<&dyn Cluster>) -> Result<Vec<StepStatus>> {
    let st = plan.status(dir);
    let jobs = recorded(dir)?;
    let states = match cluster {
        Some(c) if !jobs.is_empty() => {
            c.query(&jobs.values().map(|j| j.job.clone()).collect::<Vec<_>>())?
        }
        _ => BTreeMap::new(),
    };
    let mut out = classify(plan, &st, &jobs, &states);
    for (s, step) in out.iter_mut().zip(&plan.steps) {
        if matches!(s.state, StepState::Missing | StepState::Stale)
            && let Some((pid, lock)) = fsutil::lock_holder(&plan.artifact(dir, step))
        {
            // A local run computes it now (hostile14 XE1: it read "missing").
            s.state = StepState::Running;
            s.job = Some(format!("pid {pid}"));
            s.detail = Some(format!("a local run (it holds {})", lock.display()));
        }
        if matches!(s.state, StepState::Failed | StepState::Cancelled) {
            let t = super::tail(&super::log_path(dir, step), 10);
            s.log_tail = (!t.is_empty()).then_some(t);
        }
    }
    Ok(out)
}

/// One sbatch array: steps of one kind and resource class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub kind: &'static str,
    pub resource: Resource,
    /// Plan positions of its steps, its tasks in order.
    pub members: Vec<usize>,
}

/// The arrays for the steps at `missing` (plan order): a step joins the
/// latest array of its kind that every one of its dependencies was
/// submitted before (pure).
pub fn group(plan: &Plan, missing: &[usize]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: BTreeMap<usize, usize> = BTreeMap::new();
    for &i in missing {
        let s = &plan.steps[i];
        let after = plan
            .dep_positions(s)
            .iter()
            .filter_map(|j| group_of.get(j))
            .max()
            .copied();
        let (kind, resource) = (s.kind.name(), s.resource());
        let found = groups
            .iter()
            .enumerate()
            .rev()
            .find(|(gi, g)| {
                g.kind == kind && g.resource == resource && after.is_none_or(|a| *gi > a)
            })
            .map(|(gi, _)| gi);
        let g = found.unwrap_or_else(|| {
            groups.push(Group {
                kind,
                resource,
                members: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].members.push(i);
        group_of.insert(i, g);
    }
    groups
}

/// `afterok` targets of `group`: the jobs its steps' inputs wait in —
/// a queued or running step's job (`in_flight`), or a task of an array
/// submitted earlier in this round (`task_job`) — as whole arrays where
/// every task of one is needed (pure).
pub fn dependency(
    plan: &Plan,
    group: &Group,
    in_flight: &BTreeMap<String, String>,
    task_job: &BTreeMap<usize, String>,
    earlier: &[(String, &Group)],
) -> Option<String> {
    let mut deps: BTreeSet<String> = BTreeSet::new();
    for &i in &group.members {
        for d in plan.steps[i].deps() {
            if let Some(j) = in_flight.get(d.as_str()) {
                deps.insert(j.clone());
            } else if let Some(p) = plan.position(d)
                && let Some(j) = task_job.get(&p)
            {
                deps.insert(j.clone());
            }
        }
    }
    if deps.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut covered: BTreeSet<&String> = BTreeSet::new();
    for (array, g) in earlier {
        let tasks: Vec<&String> = g.members.iter().filter_map(|i| task_job.get(i)).collect();
        if !tasks.is_empty() && tasks.iter().all(|t| deps.contains(*t)) {
            parts.push(array.clone());
            covered.extend(tasks);
        }
    }
    for d in &deps {
        if !covered.contains(d) {
            parts.push(d.clone());
        }
    }
    Some(parts.join(":"))
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

/// The sbatch script of one array (pure).
pub fn render_script(
    plan: &Plan,
    dir: &Path,
    name: &str,
    group: &Group,
    section: &SlurmSection,
    cuda: bool,
    cmd: &JobCommand,
) -> String {
    let kind = group.kind;
    let r = section.resources(group.resource, cuda);
    let threads = section.job_threads(&r);
    let sdir = dir.join("slurm");
    let mut text = String::from("#!/bin/bash\n");
    let mut sbatch = |line: String| {
        text.push_str("#SBATCH ");
        text.push_str(&line);
        text.push('\n');
    };
    sbatch(format!("--job-name=amun-{name}-{kind}"));
    sbatch(format!("--array=0-{}", group.members.len() - 1));
    sbatch(format!("--output={}/logs/%x-%A_%a.out", sdir.display()));
    for line in resource_lines(&r) {
        sbatch(line);
    }
    text.push_str("set -uo pipefail\n");
    let list = |f: &dyn Fn(&Step) -> String| {
        group
            .members
            .iter()
            .map(|&i| format!(" {}", sh_quote(&f(&plan.steps[i]))))
            .collect::<String>()
    };
    text.push_str(&format!("steps=({} )\n", list(&|s| s.id.to_string())));
    text.push_str(&format!(
        "logs=({} )\n",
        list(&|s| super::log_path(dir, s).display().to_string())
    ));
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
    text
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

/// Submits every step of `plan` that is not done and not in flight to
/// `cluster`, recording each array in `DIR/slurm/jobs.json` as soon as it
/// is submitted.
#[allow(clippy::too_many_arguments)]
pub fn submit(
    plan: &Plan,
    dir: &Path,
    name: &str,
    section: &SlurmSection,
    cuda: bool,
    cmd: &JobCommand,
    cluster: &dyn Cluster,
) -> Result<Submitted> {
    section.check()?;
    let mut jobs = recorded(dir)?;
    let st = status(plan, dir, (!jobs.is_empty()).then_some(cluster))?;
    let mut out = Submitted::default();
    // step → the job a new job must wait for (queued/running steps).
    let mut in_flight: BTreeMap<String, String> = BTreeMap::new();
    let mut missing: Vec<usize> = Vec::new();
    for (i, s) in st.iter().enumerate() {
        match s.state {
            StepState::Done => out.done += 1,
            StepState::Queued | StepState::Running => {
                in_flight.insert(s.step.clone(), jobs[&s.step].job.clone());
                out.in_flight.push(s.step.clone());
            }
            StepState::Blocked => {
                // It waits for a step that failed or was cancelled: it can
                // never start. Cancelled here, submitted again below.
                let job = jobs[&s.step].job.clone();
                // Already gone from the queue is as good as cancelled.
                let _ = cluster.cancel(&job);
                out.cancelled.push(job);
                missing.push(i);
            }
            _ => missing.push(i),
        }
    }
    let groups = group(plan, &missing);
    let sdir = dir.join("slurm");
    std::fs::create_dir_all(sdir.join("logs")).at(&sdir)?;
    let mut task_job: BTreeMap<usize, String> = BTreeMap::new();
    let mut earlier: Vec<(String, &Group)> = Vec::new();
    for (g, grp) in groups.iter().enumerate() {
        let dep = dependency(plan, grp, &in_flight, &task_job, &earlier);
        let script = sdir.join(format!("{g:03}-{}.sh", grp.kind));
        let text = render_script(plan, dir, name, grp, section, cuda, cmd);
        fsutil::write_atomic(&script, text.as_bytes())?;
        let array = cluster.submit(&script, dep.as_deref())?;
        let mut steps = Vec::new();
        for (t, &i) in grp.members.iter().enumerate() {
            let job = format!("{array}_{t}");
            task_job.insert(i, job.clone());
            jobs.insert(
                plan.steps[i].id.to_string(),
                JobRef {
                    job,
                    script: script.display().to_string(),
                },
            );
            steps.push(plan.steps[i].id.to_string());
        }
        // Recorded after every sbatch: a crash here never loses a job.
        fsutil::write_json(&jobs_path(dir), &jobs)?;
        earlier.push((array.clone(), grp));
        out.arrays.push((array, grp.kind.to_string(), steps));
    }
    Ok(out)
}

/// Waits until no step of `plan` in `dir` is queued (able to start) or
/// running; polls every `every`.
pub fn wait(
    plan: &Plan,
    dir: &Path,
    cluster: &dyn Cluster,
    every: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<()> {
    let t = std::time::Instant::now();
    loop {
        let st = status(plan, dir, Some(cluster))?;
        if !st.iter().any(|s| s.state.in_flight()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Config;
    use std::cell::RefCell;

    /// A cluster in memory: numbered arrays, the states a test sets.
    #[derive(Default)]
    struct Fake {
        next: RefCell<u64>,
        submitted: RefCell<Vec<(String, Option<String>, String)>>,
        states: RefCell<BTreeMap<String, JobState>>,
        cancelled: RefCell<Vec<String>>,
    }

    impl Fake {
        fn set(&self, job: &str, state: SlurmState) {
            self.states.borrow_mut().insert(
                job.to_string(),
                JobState {
                    state,
                    detail: String::new(),
                },
            );
        }
    }

    impl Cluster for Fake {
        fn submit(&self, script: &Path, dependency: Option<&str>) -> Result<String> {
            *self.next.borrow_mut() += 1;
            let id = (100 + *self.next.borrow()).to_string();
            let text = std::fs::read_to_string(script).unwrap();
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix("#SBATCH --array=0-"))
                .unwrap()
                .parse::<usize>()
                .unwrap();
            for t in 0..=n {
                self.set(&format!("{id}_{t}"), SlurmState::Pending);
            }
            self.submitted
                .borrow_mut()
                .push((id.clone(), dependency.map(String::from), text));
            Ok(id)
        }
        fn cancel(&self, job: &str) -> Result<()> {
            self.cancelled.borrow_mut().push(job.to_string());
            self.set(job, SlurmState::Cancelled);
            Ok(())
        }
        fn query(&self, jobs: &[String]) -> Result<BTreeMap<String, JobState>> {
            let s = self.states.borrow();
            Ok(jobs
                .iter()
                .filter_map(|j| s.get(j).map(|st| (j.clone(), st.clone())))
                .collect())
        }
    }

    const CONFIG: &str = r#"
name = "t"
model = "small-cnn"
seeds = [0]
[data]
dataset = "mnist"
[forget]
fractions = [0.1]
with_retain = [true]
[rmia]
reference_models = 2
[methods.ft]
[methods.amun]
"#;

    fn cmd() -> JobCommand {
        JobCommand {
            amun: "/bin/amun".into(),
            args: vec!["experiment".into()],
        }
    }

    #[test]
    fn submission_groups_steps_and_resubmits_only_what_cannot_finish() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let plan = Plan::build(&cfg).unwrap();
        let section = SlurmSection::default();
        let fake = Fake::default();
        let sub = submit(&plan, dir.path(), "t", &section, false, &cmd(), &fake).unwrap();
        // Every step submitted once, in arrays of one kind each.
        let n: usize = sub.arrays.iter().map(|a| a.2.len()).sum();
        assert_eq!(n, plan.steps.len());
        assert_eq!(sub.arrays[0].1, "reference");
        assert_eq!(sub.arrays[0].2, vec!["ref-000", "ref-001"]);
        let jobs = recorded(dir.path()).unwrap();
        assert_eq!(jobs.len(), plan.steps.len());
        // The index waits for the whole reference array, not task by task.
        let subs = fake.submitted.borrow().clone();
        let (refs_array, _, _) = &subs[0];
        let index = subs
            .iter()
            .find(|(_, _, t)| t.contains("'references'"))
            .unwrap();
        assert_eq!(index.1.as_deref(), Some(refs_array.as_str()));
        // Scripts name the steps and their logs, with the job's resources.
        let script = &subs[0].2;
        assert!(script.contains("--cpus-per-task=2") && script.contains("--mem=8G"));
        assert!(script.contains("'ref-000' 'ref-001'"), "{script}");

        // Everything queued: a second submission leaves it alone.
        let again = submit(&plan, dir.path(), "t", &section, false, &cmd(), &fake).unwrap();
        assert!(again.arrays.is_empty());
        assert_eq!(again.in_flight.len(), plan.steps.len());

        // The original's job is cancelled: it and every step waiting on it
        // are resubmitted (the waiting ones cancelled first); the reference
        // models, still queued, are not.
        let original = &jobs["original-s0"].job;
        fake.set(original, SlurmState::Cancelled);
        let st = status(&plan, dir.path(), Some(&fake)).unwrap();
        let of = |id: &str| st.iter().find(|s| s.step == id).unwrap().state;
        assert_eq!(of("original-s0"), StepState::Cancelled);
        assert_eq!(of("audit-original-s0-f0.1"), StepState::Blocked);
        assert_eq!(of("ref-000"), StepState::Queued);
        let third = submit(&plan, dir.path(), "t", &section, false, &cmd(), &fake).unwrap();
        let resubmitted: Vec<&String> = third.arrays.iter().flat_map(|a| &a.2).collect();
        assert!(resubmitted.iter().any(|s| *s == "original-s0"));
        assert!(resubmitted.iter().all(|s| !s.starts_with("ref-")));
        assert!(
            third
                .cancelled
                .contains(&jobs["audit-original-s0-f0.1"].job)
        );
        // A resubmitted audit waits on the new original and on the queued
        // references index.
        let refs_job = &jobs["references"].job;
        let last = fake.submitted.borrow().clone();
        let audit_sub = last
            .iter()
            .rev()
            .find(|(_, _, t)| t.contains("'audit-original-s0-f0.1'"))
            .unwrap();
        let dep = audit_sub.1.clone().unwrap();
        assert!(dep.split(':').any(|d| d == refs_job), "{dep}");

        // A failed job is resubmitted too.
        let jobs = recorded(dir.path()).unwrap();
        fake.set(
            &jobs["forget-s0-f0.1"].job,
            SlurmState::Ended("FAILED".into()),
        );
        let st = status(&plan, dir.path(), Some(&fake)).unwrap();
        assert_eq!(
            st.iter()
                .find(|s| s.step == "forget-s0-f0.1")
                .unwrap()
                .state,
            StepState::Failed
        );
        let fourth = submit(&plan, dir.path(), "t", &section, false, &cmd(), &fake).unwrap();
        assert!(
            fourth
                .arrays
                .iter()
                .any(|a| a.2.contains(&"forget-s0-f0.1".to_string()))
        );
    }

    #[test]
    fn states_are_classified_as_slurm_names_them() {
        assert_eq!(SlurmState::parse("CANCELLED by 0"), SlurmState::Cancelled);
        assert_eq!(SlurmState::parse("COMPLETING"), SlurmState::Running);
        assert_eq!(
            SlurmState::parse("OUT_OF_MEMORY"),
            SlurmState::Ended("OUT_OF_MEMORY".into())
        );
        let pending = JobState {
            state: SlurmState::Pending,
            detail: "DependencyNeverSatisfied".into(),
        };
        assert!(pending.never_starts());
        // What Slurm prints is turned into words, never shown as
        // placeholders or codes.
        assert_eq!(reason("None"), None);
        assert_eq!(reason("(null)"), None);
        assert_eq!(reason("Dependency").as_deref(), Some("Dependency"));
        assert_eq!(ending("0:9").as_deref(), Some("killed by signal 9"));
        assert_eq!(ending("1:0").as_deref(), Some("exit code 1"));
        assert_eq!(ending("0:0"), None);
        let cfg = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let plan = Plan::build(&cfg).unwrap();
        let status = vec![Status::Ready; plan.steps.len()];
        let id = plan.steps[0].id.to_string();
        let jobs: BTreeMap<String, JobRef> = [(
            id.clone(),
            JobRef {
                job: "7_0".into(),
                script: "s.sh".into(),
            },
        )]
        .into();
        let st = |state: SlurmState, detail: &str| {
            let states = [(
                "7_0".to_string(),
                JobState {
                    state,
                    detail: detail.into(),
                },
            )]
            .into();
            classify(&plan, &status, &jobs, &states)[0].clone()
        };
        assert_eq!(st(SlurmState::Pending, "None").detail, None);
        let failed = st(SlurmState::Ended("FAILED".into()), "0:9");
        assert_eq!(failed.state, StepState::Failed);
        assert_eq!(failed.detail.as_deref(), Some("FAILED, killed by signal 9"));
    }

    #[test]
    fn a_bad_resource_is_refused_before_any_submission() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let plan = Plan::build(&cfg).unwrap();
        let section = SlurmSection {
            audit: Some(crate::experiment::placement::JobResources {
                mem: Some("lots".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let fake = Fake::default();
        let e = submit(&plan, dir.path(), "t", &section, false, &cmd(), &fake).unwrap_err();
        assert!(e.to_string().contains("slurm.audit.mem"), "{e}");
        assert!(fake.submitted.borrow().is_empty());
        assert!(!dir.path().join("slurm").exists());
    }
}
