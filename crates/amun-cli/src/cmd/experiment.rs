use super::{DataDir, load_data, print_json};
use amun::device::DeviceSpec;
use amun::experiment::exec::{self, ExecRequest, Executor, slurm};
use amun::experiment::{
    Config, Plan, Report, SlurmSection, StepCtx, check_folder, folder_config, open_folder,
    placement, run as run_experiment, steps, table_markdown,
};
use amun::report::{Table, hardware_line};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};

/// The CPU demo's experiment files, built into the binary.
pub const DEMO_CONFIG: &str = include_str!("../../../../experiments/demo-cpu.toml");
pub const DEMO_QUICK_CONFIG: &str = include_str!("../../../../experiments/demo-cpu-quick.toml");

#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// The experiment file (TOML; see experiments/)
    #[arg(long, value_name = "FILE", required_unless_present = "folder")]
    pub config: Option<PathBuf>,
    /// The run folder [default: runs/<name>]
    #[arg(long, value_name = "DIR", conflicts_with = "folder")]
    pub out: Option<PathBuf>,
    /// An existing run folder, run with the config it records
    /// (experiment.json): what workers and Slurm jobs use
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub folder: Option<PathBuf>,
    /// Print the plan (every step, what it reads, whether it is done) and exit
    #[arg(long)]
    pub plan: bool,
    /// Show what is done, queued, running and failed (with Slurm's view of
    /// submitted jobs, and the end of failed steps' logs), and exit
    #[arg(long)]
    pub status: bool,
    /// Run one step of the plan (every step it reads must be done)
    #[arg(long, value_name = "ID")]
    pub step: Option<String>,
    /// Run up to N steps at once, each in its own process (on the CPU the
    /// cores are shared: N workers of cores/N threads)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub jobs: Option<usize>,
    /// One worker per device, e.g. cuda:0,cuda:1
    #[arg(long, value_delimiter = ',', value_name = "DEV,DEV,..")]
    pub devices: Vec<String>,
    /// Submit every step that is not done (and not already queued) to Slurm
    /// as sbatch jobs: arrays of similar steps, afterok dependencies
    #[arg(long)]
    pub slurm: bool,
    /// With --slurm: wait for the jobs, then print the status and the report
    #[arg(long, requires = "slurm")]
    pub wait: bool,
    /// Slurm resources per step kind: a TOML file with the keys of the
    /// config's [slurm] table (partition, account, extra, threads, and
    /// tables train/search/unlearn/audit/light of cpus, gpus, mem, time)
    #[arg(long, value_name = "FILE", requires = "slurm")]
    pub slurm_config: Option<PathBuf>,
    /// libtorch threads (default: the config's, else the machine's cores)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Run on this device instead of the config's (workers of --devices)
    #[arg(long, value_name = "DEV")]
    pub device: Option<String>,
    /// Before running, copy from this run folder every step it holds up to
    /// date for the inputs the step has here (originals, forget sets,
    /// retrains, reference models…): a variant config reuses what it shares
    /// with the run it varies; nothing in this run folder is replaced
    #[arg(long, value_name = "DIR", conflicts_with_all = ["status", "step"])]
    pub reuse: Option<PathBuf>,
    #[command(flatten)]
    pub dir: DataDir,
    /// Print the report (or plan, or status) as JSON
    #[arg(long)]
    pub json: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Published defaults only, one seed (experiments/demo-cpu-quick.toml):
    /// a few minutes instead of about a quarter of an hour on 2 cores
    #[arg(long)]
    pub quick: bool,
    /// The run folder [default: runs/demo-cpu, or runs/demo-cpu-quick]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub dir: DataDir,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--plan`: what a run would do (and copy with `--reuse`), after the
/// checks a run makes of the config, its device and its data before any
/// step, so that a plan never lists as ready what a run refuses.
fn plan(
    a: &ExperimentArgs,
    cfg: &Config,
    config_path: &Path,
    out: &Path,
    device: DeviceSpec,
) -> Result<()> {
    // The run's own first check (hostile11 K16: `cuda:7` on a CPU-only
    // build was planned as ready), at the config's line when it came from
    // there.
    match device.resolve() {
        Err(amun::Error::Device { requested, msg }) if a.device.is_none() => {
            let msg = format!("device '{requested}': {msg}");
            return Err(Config::error_at(config_path, &["device"], msg).into());
        }
        r => r?,
    };
    check_folder(cfg, out)?;
    let data = data_of(cfg, &a.dir, config_path, tch::Device::Cpu)?;
    preflight(cfg, &data, config_path, out)?;
    drop(data);
    let mut reused = Vec::new();
    if let Some(from) = &a.reuse {
        reused = amun::experiment::reuse(&Plan::build(cfg)?, from, out, false)
            .map_err(|e| anyhow::anyhow!("--reuse: {e}"))?;
        eprintln!(
            "--reuse: a run would first copy {} step(s) from {}{}",
            reused.len(),
            from.display(),
            if reused.is_empty() {
                String::new()
            } else {
                format!(": {}", reused.join(", "))
            }
        );
    }
    print_plan(cfg, out, &reused, a.json)
}

/// The config, its file, the run folder and the Slurm placement the flags
/// name: `--folder` reads them from a run folder, `--config` from a TOML.
type Named = (Config, PathBuf, PathBuf, Option<SlurmSection>);

fn named(a: &ExperimentArgs) -> Result<Named> {
    Ok(match (&a.folder, &a.config) {
        (Some(f), _) => (
            folder_config(f)?,
            f.join("experiment.json"),
            f.clone(),
            placement::recorded(f)?,
        ),
        (None, Some(c)) => {
            amun::outputs::require_file("--config", "the experiment's TOML config", c)?;
            let cfg = Config::read(c)?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name));
            (cfg, c.clone(), out, placement::read_experiment(c)?)
        }
        (None, None) => bail!("give --config FILE or --folder DIR"),
    })
}

pub fn run(a: ExperimentArgs) -> Result<()> {
    // Everything the flags say is checked before the run folder is touched.
    let (cfg, config_path, out, file_placement) = named(&a)?;
    let mut io = amun::outputs::Outputs::new();
    io.reads_dataset("[data] dataset", &cfg.data.dataset)
        .writes("--out", &out, amun::outputs::Artifact::RunFolder)
        .check()?;
    // A folder made before defaults written out were left out (or the one
    // --reuse copies from) spells the config as it records it, keeping its
    // step ids.
    let cfg = amun::experiment::config_for_folder(cfg, &out, a.reuse.as_deref())?;
    let threads = a.threads.or(cfg.threads);
    if let Some(t) = threads {
        amun::device::check_threads(t).map_err(|e| anyhow::anyhow!("--threads: {e}"))?;
    }
    if let Some(t) = threads {
        tch::set_num_threads(t as i32);
    }
    let device = match &a.device {
        Some(d) => d.parse::<DeviceSpec>()?,
        None => cfg.device,
    };
    let section = match &a.slurm_config {
        Some(p) => Some(SlurmSection::read(p)?),
        None => file_placement.clone(),
    };
    let request = ExecRequest {
        jobs: a.jobs,
        devices: a
            .devices
            .iter()
            .map(|d| worker_device(d))
            .collect::<Result<_>>()?,
        slurm: a
            .slurm
            .then(|| (section.clone().unwrap_or_default(), a.wait)),
        device,
        threads,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let executor = request.executor()?;
    // These only print or run one step here: an executor flag would be
    // dropped without a word.
    let only = [
        ("--plan", a.plan),
        ("--status", a.status),
        ("--step", a.step.is_some()),
    ];
    if let Some((flag, _)) = only.iter().find(|(_, on)| *on)
        && executor != Executor::Sequential
    {
        bail!(
            "{flag} runs no steps on workers or Slurm: --jobs, --devices and --slurm do not apply \
             to it"
        );
    }
    if a.plan {
        return plan(&a, &cfg, &config_path, &out, device);
    }
    if a.status {
        check_folder(&cfg, &out)?;
        return print_status(&cfg, &out, a.json);
    }
    if a.step.is_none() {
        let named = [("devices".to_string(), "--devices")];
        request
            .check_devices()
            .map_err(|e| super::flags::in_flags(e.into(), &named))?;
    }
    if let Some(id) = &a.step {
        return run_one_step(&a, &cfg, &config_path, &out, device, id);
    }
    let plan = Plan::build(&cfg)?;
    check_folder(&cfg, &out)?;
    // Workers and Slurm jobs load the data themselves: here it is only
    // checked, on the CPU.
    let here = executor == Executor::Sequential;
    let dev = if here {
        device.resolve()?
    } else {
        tch::Device::Cpu
    };
    let data = data_of(&cfg, &a.dir, &config_path, dev)?;
    preflight(&cfg, &data, &config_path, &out)?;
    reuse_steps(&a, &cfg, &plan, &out)?;
    if !here || file_placement.is_some() {
        open_folder(&cfg, &out)?;
    }
    if let Some(s) = &file_placement {
        placement::remember(&out, s)?;
    }
    match executor {
        Executor::Sequential => execute(cfg, &out, &data, dev, a.json, a.quiet),
        Executor::Local(workers) => {
            drop(data);
            run_workers(&a, &plan, &out, &workers)
        }
        Executor::Slurm { section, wait } => {
            drop(data);
            submit_slurm(&a, &cfg, &plan, &out, &section, device, wait)
        }
    }
}

/// `--step ID`: what a worker or a Slurm job runs — one step, in the run
/// folder.
fn run_one_step(
    a: &ExperimentArgs,
    cfg: &Config,
    config_path: &Path,
    out: &Path,
    device: DeviceSpec,
    id: &str,
) -> Result<()> {
    let plan = Plan::build(cfg)?;
    let step = plan.get(id)?;
    let dev = device.resolve()?;
    let data = data_of(cfg, &a.dir, config_path, dev)?;
    open_folder(cfg, out)?;
    for w in amun::experiment::step_warnings(&data, step) {
        eprintln!("{w}");
    }
    let bars = crate::progress::Bars::terse(a.quiet);
    let hw = hardware_line(dev);
    let ctx = StepCtx {
        cfg,
        plan: &plan,
        dir: out,
        data: &data,
        progress: &bars,
        hardware: &hw,
    };
    let t = std::time::Instant::now();
    let ran = steps::run_step(&ctx, step)?;
    eprintln!(
        "{id}: {} ({:.1}s)",
        if ran { "done" } else { "up to date" },
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--reuse DIR`: what DIR holds up to date for this plan, copied into the
/// run folder after every check and before any step.
fn reuse_steps(a: &ExperimentArgs, cfg: &Config, plan: &Plan, out: &Path) -> Result<()> {
    let Some(from) = &a.reuse else {
        return Ok(());
    };
    open_folder(cfg, out)?;
    let ids = amun::experiment::reuse(plan, from, out, true)
        .map_err(|e| anyhow::anyhow!("--reuse: {e}"))?;
    if !a.quiet {
        eprintln!(
            "--reuse: copied {} step(s) from {}",
            ids.len(),
            from.display()
        );
    }
    Ok(())
}

/// What the config says about its data, checked before any step runs or
/// any folder is made (the steps that read them would fail only after
/// others trained for minutes).
fn preflight(
    cfg: &Config,
    data: &amun::data::Dataset,
    config_path: &Path,
    out: &Path,
) -> Result<()> {
    // Their errors name the config's line (and the config) themselves.
    for w in amun::experiment::check_forget_files(cfg, data, Some(config_path))? {
        eprintln!("{w}");
    }
    amun::experiment::check_calibrated_sets(cfg, data, Some(config_path))?;
    amun::experiment::check_data(cfg, data)
        .with_context(|| format!("{}", config_path.display()))?;
    Ok(amun::experiment::check_run_data(cfg, data, out)?)
}

/// The config's data on `dev` (fetched first when missing).
fn data_of(
    cfg: &Config,
    dir: &DataDir,
    config_path: &Path,
    dev: tch::Device,
) -> Result<amun::data::Dataset> {
    Ok(load_data(&cfg.data, dir)
        .with_context(|| {
            format!(
                "{}: [data] dataset '{}'",
                config_path.display(),
                cfg.data.dataset
            )
        })?
        .to_device(dev))
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let (text, file) = if a.quick {
        (DEMO_QUICK_CONFIG, "experiments/demo-cpu-quick.toml")
    } else {
        (DEMO_CONFIG, "experiments/demo-cpu.toml")
    };
    let cfg = Config::parse(text, Path::new(file))?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name));
    let cfg = amun::experiment::config_for_folder(cfg, &out, None)?;
    let dev = cfg.device.resolve()?;
    let data = load_data(&cfg.data, &a.dir)?.to_device(dev);
    execute(cfg, &out, &data, dev, false, a.quiet)
}

fn execute(
    cfg: Config,
    out: &Path,
    data: &amun::data::Dataset,
    dev: tch::Device,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let bars = crate::progress::Bars::terse(quiet || json);
    let started = std::time::Instant::now();
    let report = run_experiment(&cfg, data, out, hardware_line(dev), &bars)?.report;
    print_report(&report, out, json, started)
}

fn print_report(
    report: &Report,
    out: &Path,
    json: bool,
    started: std::time::Instant,
) -> Result<()> {
    if json {
        return print_json(report);
    }
    for t in &report.tables {
        super::outln!(
            "forget {:.0}%, {}:",
            t.fraction * 100.0,
            if t.with_retain {
                "with D_R"
            } else {
                "without D_R"
            }
        );
        super::emit(&table_markdown(t))?;
        super::emit("\n")?;
    }
    super::outln!(
        "{}: report.md, report.json, report.csv and plots ({:.0}s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_plan(cfg: &Config, out: &Path, reused: &[String], json: bool) -> Result<()> {
    let t = std::time::Instant::now();
    let plan = Plan::build(cfg)?;
    let status = plan.status_reusing(out, reused);
    if json {
        let steps: Vec<serde_json::Value> = plan
            .steps
            .iter()
            .zip(&status)
            .map(|(s, st)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["status"] = st.name().into();
                v
            })
            .collect();
        return print_json(&serde_json::json!({ "steps": steps }));
    }
    let mut tbl = Table::new(["step", "kind", "resource", "reads", "status"]);
    for (s, st) in plan.steps.iter().zip(&status) {
        let deps: Vec<String> = s.deps().iter().map(|d| d.to_string()).collect();
        let reads = match deps.len() {
            0 => "-".to_string(),
            1..=3 => deps.join(", "),
            n => format!("{}, … ({n} steps)", deps[..2].join(", ")),
        };
        tbl.row([
            s.id.to_string(),
            s.kind.name().to_string(),
            s.resource().name().to_string(),
            reads,
            st.name().to_string(),
        ]);
    }
    super::emit(&tbl.render())?;
    let edges: usize = plan.steps.iter().map(|s| s.deps().len()).sum();
    let counts = plan.counts();
    let per: Vec<String> = counts
        .iter()
        .map(|(r, n)| format!("{} {n}", r.name()))
        .collect();
    let st = exec::status_counts(&status);
    super::outln!(
        "{}: {} steps ({}), {edges} edges; {} — in {}; planned in {:.2}s",
        cfg.name,
        plan.steps.len(),
        per.join(", "),
        st.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_status(cfg: &Config, out: &Path, json: bool) -> Result<()> {
    let plan = Plan::build(cfg)?;
    let has_jobs = !slurm::recorded(out)?.is_empty();
    let st = slurm::status(
        &plan,
        out,
        has_jobs.then_some(&slurm::Sbatch as &dyn slurm::Cluster),
    )?;
    if json {
        return print_json(&st);
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in &st {
        *counts.entry(s.state.name()).or_insert(0) += 1;
    }
    let done = |s: &slurm::StepStatus| s.state == slurm::StepState::Done;
    let mut tbl = Table::new(["step", "state", "job", "detail"]);
    for s in st.iter().filter(|s| !done(s)) {
        tbl.row([
            s.step.clone(),
            s.state.name().to_string(),
            s.job.clone().unwrap_or_else(|| "-".into()),
            s.detail.clone().unwrap_or_default(),
        ]);
    }
    if st.iter().any(|s| !done(s)) {
        super::emit(&tbl.render())?;
    }
    for s in st.iter().filter(|s| s.log_tail.is_some()) {
        super::outln!(
            "\n{} ({}): last lines of {}:\n{}",
            s.step,
            s.state.name(),
            plan.get(&s.step)
                .map(|p| exec::log_path(out, p).display().to_string())
                .unwrap_or_default(),
            s.log_tail.as_deref().unwrap_or("")
        );
    }
    super::outln!(
        "{}: {} steps: {}",
        out.display(),
        st.len(),
        counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The command a worker or job runs for a step.
fn step_command(out: &Path, a: &ExperimentArgs) -> Result<(PathBuf, Vec<String>)> {
    let amun = std::env::current_exe().context("finding the amun binary")?;
    let folder = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let data_dir = std::path::absolute(a.dir.path()).unwrap_or_else(|_| a.dir.path());
    let mut args = vec![
        "experiment".to_string(),
        "--folder".into(),
        folder.display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ];
    if a.quiet {
        args.push("-q".into());
    }
    Ok((amun, args))
}

fn run_workers(
    a: &ExperimentArgs,
    plan: &Plan,
    out: &Path,
    workers: &[exec::Worker],
) -> Result<()> {
    let (amun, base) = step_command(out, a)?;
    let bars = crate::progress::Bars::terse(a.quiet || a.json);
    let started = std::time::Instant::now();
    let done = exec::run_local(
        plan,
        out,
        workers,
        &|step, w| {
            let mut c = std::process::Command::new(&amun);
            c.args(&base)
                .args(["--step", step.id.as_str()])
                .args(["--device", &w.device.to_string()])
                .args(["--threads", &w.threads.to_string()]);
            c
        },
        &bars,
    )?;
    if !done.failed.is_empty() {
        for f in &done.failed {
            eprintln!(
                "{} failed; last lines of {}:\n{}\n",
                f.step,
                f.log.display(),
                f.tail
            );
        }
        bail!(
            "{} step(s) failed ({}); {} not run because of them; rerun to retry",
            done.failed.len(),
            done.failed
                .iter()
                .map(|f| f.step.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            done.blocked.len()
        );
    }
    let report: Report = amun::fsutil::read_json(&out.join("report.json"))?;
    print_report(&report, out, a.json, started)
}

fn submit_slurm(
    a: &ExperimentArgs,
    cfg: &Config,
    plan: &Plan,
    out: &Path,
    section: &SlurmSection,
    device: DeviceSpec,
    wait: bool,
) -> Result<()> {
    let (amun, mut args) = step_command(out, a)?;
    if let Some(d) = &a.device {
        args.extend(["--device".to_string(), d.clone()]);
    }
    let cluster = slurm::Sbatch;
    let sub = slurm::submit(
        plan,
        out,
        &cfg.name,
        section,
        device.is_cuda(),
        &slurm::JobCommand { amun, args },
        &cluster,
    )?;
    if !a.json {
        for (job, kind, steps) in &sub.arrays {
            super::outln!("submitted {job}: {kind} × {}", steps.len());
        }
        if !sub.cancelled.is_empty() {
            super::outln!(
                "cancelled {} job(s) that waited for failed steps: {}",
                sub.cancelled.len(),
                sub.cancelled.join(", ")
            );
        }
        super::outln!(
            "{}: {} steps done, {} already queued or running, {} submitted in {} job array(s)",
            out.display(),
            sub.done,
            sub.in_flight.len(),
            sub.arrays.iter().map(|a| a.2.len()).sum::<usize>(),
            sub.arrays.len()
        );
    }
    if !wait {
        return Ok(());
    }
    slurm::wait(
        plan,
        out,
        &cluster,
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(7 * 24 * 3600),
    )?;
    print_status(cfg, out, a.json)?;
    let st = plan.status(out);
    if st.iter().all(|s| *s == amun::experiment::Status::Done) {
        let report: Report = amun::fsutil::read_json(&out.join("report.json"))?;
        if !a.json {
            print_report(&report, out, false, std::time::Instant::now())?;
        }
        Ok(())
    } else {
        bail!(
            "some steps did not finish; `amun experiment --folder {} --status` shows which (rerun --slurm to retry)",
            out.display()
        )
    }
}

/// One device of `--devices`, its error naming that flag (hostile7 DV4:
/// `--devices tpu:0` was refused as `--device tpu:0`, a flag of other
/// commands).
fn worker_device(d: &str) -> Result<DeviceSpec> {
    d.parse::<DeviceSpec>().map_err(|e| match e {
        amun::Error::Device { msg, .. } => anyhow::anyhow!("--devices '{d}': {msg}"),
        e => e.into(),
    })
}
