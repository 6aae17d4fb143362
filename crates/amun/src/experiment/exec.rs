//! Executors: where the steps of a plan run. Each runs a step by starting
//! `amun experiment --folder DIR --step ID` (the command comes from the
//! caller), so a step computes the same way wherever it runs:
//!
//! - [`run_local`]: up to N worker processes on this machine (several GPUs:
//!   one worker per device; CPU workers share the cores);
//! - [`slurm`]: every step that is not done becomes an sbatch job, similar
//!   steps as arrays, edges as `afterok` dependencies.
//!
//! The in-process sequential executor is `experiment::run`.
use super::placement::SlurmSection;
use super::plan::{Plan, Status, Step};
use crate::device::DeviceSpec;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod slurm;

/// Where the steps of a run go: chosen once, from the flags, before any
/// work.
#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    /// One step after the other in this process.
    Sequential,
    /// Worker processes on this machine, one step each at a time.
    Local(Vec<Worker>),
    /// sbatch jobs; with `wait`, until none is queued or running.
    Slurm {
        section: Box<SlurmSection>,
        wait: bool,
    },
}

/// What the flags ask of the executor.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// `--jobs N`: N local workers.
    pub jobs: Option<usize>,
    /// `--devices`: one worker per device.
    pub devices: Vec<DeviceSpec>,
    /// `--slurm`, with the resources to use (`--slurm-config` or the
    /// file's `[slurm]`) and whether to wait.
    pub slurm: Option<(SlurmSection, bool)>,
    /// The device steps run on (workers without `--devices`).
    pub device: DeviceSpec,
    /// A pinned thread count (bits depend on it): wins over each
    /// worker's share of the cores, and over a job's CPUs.
    pub threads: Option<usize>,
    /// This machine's cores.
    pub cores: usize,
}

impl ExecRequest {
    /// That every device the steps would run on here exists on this
    /// machine, before any step starts (a Slurm job's node checks its own).
    pub fn check_devices(&self) -> Result<()> {
        if self.slurm.is_some() {
            return Ok(());
        }
        for d in self.devices.iter().chain([&self.device]) {
            d.resolve().map_err(|e| match e {
                Error::Device { requested, msg } if !self.devices.is_empty() => {
                    Error::invalid("devices", format!("{requested}: {msg}"))
                }
                e => e,
            })?;
        }
        Ok(())
    }

    /// The executor, or an error naming the flags that do not go together.
    pub fn executor(&self) -> Result<Executor> {
        if self.jobs == Some(0) {
            return Err(Error::invalid("jobs", "expected at least 1 worker"));
        }
        if self.threads == Some(0) {
            return Err(Error::invalid("threads", "expected at least 1"));
        }
        if let Some((section, wait)) = &self.slurm {
            if self.jobs.is_some() || !self.devices.is_empty() {
                return Err(Error::invalid(
                    "slurm",
                    "Slurm decides where each step runs; --jobs and --devices are for running on \
                     this machine",
                ));
            }
            let mut section = section.clone();
            if let Some(t) = self.threads {
                section.threads = Some(t);
            }
            section.check()?;
            return Ok(Executor::Slurm {
                section: Box::new(section),
                wait: *wait,
            });
        }
        if self.jobs.is_none() && self.devices.is_empty() {
            return Ok(Executor::Sequential);
        }
        let mut w = workers(
            self.jobs.unwrap_or(1),
            &self.devices,
            self.device,
            self.cores,
        );
        if let Some(t) = self.threads {
            for w in &mut w {
                w.threads = t;
            }
        }
        Ok(Executor::Local(w))
    }
}

/// Where one worker runs its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub device: DeviceSpec,
    /// libtorch threads of each step it runs.
    pub threads: usize,
}

/// The log of a step: beside its artifact.
pub fn log_path(dir: &Path, step: &Step) -> PathBuf {
    let mut s = dir.join(&step.artifact).into_os_string();
    s.push(".log");
    PathBuf::from(s)
}

/// The last `n` lines of a file (for failures).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A step that failed, with the end of its log.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: String,
    pub log: PathBuf,
    pub tail: String,
}

/// What a local run did.
#[derive(Debug, Default)]
pub struct LocalOutcome {
    pub computed: Vec<String>,
    pub failed: Vec<Failure>,
    /// Steps not run because a step they need failed.
    pub blocked: Vec<String>,
}

/// Runs every step of `plan` that is not done in `dir` on `workers`, each
/// step in its own process made by `command(step, worker)`; a step starts
/// once every step it reads is done. A failed step stops what depends on
/// it; the others go on. Returns what was computed and what failed.
pub fn run_local(
    plan: &Plan,
    dir: &Path,
    workers: &[Worker],
    command: &dyn Fn(&Step, &Worker) -> Command,
    progress: &dyn Progress,
) -> Result<LocalOutcome> {
    if workers.is_empty() {
        return Err(Error::invalid("jobs", "expected at least one worker"));
    }
    let status = plan.status(dir);
    let n = plan.steps.len();
    let mut done: Vec<bool> = status.iter().map(|s| *s == Status::Done).collect();
    let mut started = vec![false; n];
    let mut failed = vec![false; n];
    let mut out = LocalOutcome::default();
    let todo = done.iter().filter(|d| !**d).count();
    progress.note(&format!(
        "{} steps, {} up to date, {todo} to run on {} worker(s)",
        n,
        n - todo,
        workers.len()
    ));
    progress.start("experiment steps", todo as u64);
    let mut running: Vec<(usize, usize, Child, Instant)> = Vec::new(); // (step, worker, child, since)
    let mut finished = 0u64;
    loop {
        // Start ready steps on free workers.
        let busy: Vec<usize> = running.iter().map(|r| r.1).collect();
        let mut free: Vec<usize> = (0..workers.len()).filter(|w| !busy.contains(w)).collect();
        let blocked = |i: usize, failed: &[bool]| {
            plan.dep_positions(&plan.steps[i])
                .iter()
                .any(|&j| failed[j])
        };
        let ready: Vec<usize> = plan
            .ready(&done)
            .filter(|&i| !started[i] && !blocked(i, &failed))
            .collect();
        for i in ready {
            let Some(w) = free.pop() else { break };
            let step = &plan.steps[i];
            let log = log_path(dir, step);
            if let Some(p) = log.parent() {
                std::fs::create_dir_all(p).at(p)?;
            }
            let file = std::fs::File::create(&log).at(&log)?;
            let err = file.try_clone().at(&log)?;
            let mut cmd = command(step, &workers[w]);
            die_with_parent(&mut cmd);
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::from(file))
                .stderr(Stdio::from(err))
                .spawn()
                .map_err(|e| Error::invalid("jobs", format!("cannot start a worker: {e}")))?;
            progress.note(&format!("{}: started on {}", step.id, workers[w].device));
            started[i] = true;
            running.push((i, w, child, Instant::now()));
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut still = Vec::new();
        for (i, w, mut child, since) in running {
            match child.try_wait() {
                Ok(None) => still.push((i, w, child, since)),
                Ok(Some(st)) => {
                    let step = &plan.steps[i];
                    finished += 1;
                    progress.update(finished, step.id.as_str());
                    if st.success() {
                        done[i] = true;
                        out.computed.push(step.id.to_string());
                        progress.note(&format!(
                            "{}: done in {:.1}s",
                            step.id,
                            since.elapsed().as_secs_f64()
                        ));
                    } else {
                        failed[i] = true;
                        let log = log_path(dir, step);
                        progress.note(&format!(
                            "{}: FAILED ({st}); log {}",
                            step.id,
                            log.display()
                        ));
                        out.failed.push(Failure {
                            step: step.id.to_string(),
                            tail: tail(&log, 15),
                            log,
                        });
                    }
                }
                Err(e) => {
                    return Err(Error::invalid("jobs", format!("waiting for a worker: {e}")));
                }
            }
        }
        running = still;
    }
    progress.finish(&format!(
        "experiment steps: {} computed, {} failed",
        out.computed.len(),
        out.failed.len()
    ));
    for (i, s) in plan.steps.iter().enumerate() {
        if !done[i] && !failed[i] {
            out.blocked.push(s.id.to_string());
        }
    }
    Ok(out)
}

/// Makes the child get SIGTERM when this process dies, however it dies
/// (kill -9 included): an orphaned worker would hold its step's lock and
/// write into the log of the step a rerun gives to a new worker.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: runs in the forked child before exec and calls only
        // prctl and getppid, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the request took effect.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the experiment process ended"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Workers for `--jobs N` on the CPU (the cores shared between them) or
/// one per device of `--devices`.
pub fn workers(
    jobs: usize,
    devices: &[DeviceSpec],
    device: DeviceSpec,
    cores: usize,
) -> Vec<Worker> {
    if !devices.is_empty() {
        return devices
            .iter()
            .map(|&d| Worker {
                device: d,
                threads: (cores / devices.len()).max(1),
            })
            .collect();
    }
    let jobs = jobs.max(1);
    (0..jobs)
        .map(|_| Worker {
            device,
            threads: (cores / jobs).max(1),
        })
        .collect()
}

/// Steps per status, for summaries.
pub fn status_counts(status: &[Status]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for s in status {
        *m.entry(s.name()).or_insert(0) += 1;
    }
    m
}
