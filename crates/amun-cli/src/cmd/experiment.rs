use super::{DataDir, load_data, print_json};
use amun::experiment::{Config, run as run_experiment, table_markdown};
use amun::report::hardware_line;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// The CPU demo's experiment file, built into the binary.
pub const DEMO_CONFIG: &str = include_str!("../../../../experiments/demo-cpu.toml");

#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// The experiment file (TOML; see experiments/)
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The run folder [default: runs/<name>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub dir: DataDir,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The run folder
    #[arg(long, value_name = "DIR", default_value = "runs/demo-cpu")]
    pub out: PathBuf,
    #[command(flatten)]
    pub dir: DataDir,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: ExperimentArgs) -> Result<()> {
    let cfg = Config::read(&a.config)?;
    execute(cfg, &a.config, a.out, &a.dir, a.json, a.quiet)
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let cfg = Config::parse(
        DEMO_CONFIG,
        std::path::Path::new("experiments/demo-cpu.toml"),
    )?;
    execute(
        cfg,
        std::path::Path::new("experiments/demo-cpu.toml"),
        Some(a.out),
        &a.dir,
        false,
        a.quiet,
    )
}

fn execute(
    cfg: Config,
    config_path: &std::path::Path,
    out: Option<PathBuf>,
    dir: &DataDir,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name));
    let dev = super::device(&cfg.device)?;
    let data = load_data(&cfg.data, dir)
        .with_context(|| {
            format!(
                "{}: [data] dataset '{}'",
                config_path.display(),
                cfg.data.dataset
            )
        })?
        .to_device(dev);
    let bars = crate::progress::Bars::terse(quiet || json);
    let started = std::time::Instant::now();
    let report = run_experiment(&cfg, &data, &out, hardware_line(dev), &bars)?;
    if json {
        return print_json(&report);
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
