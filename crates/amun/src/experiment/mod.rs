//! Experiments: one TOML file describes data, model, recipe, forget
//! fractions, seeds, methods and the audit; [`run`] trains, unlearns and
//! audits everything in one resumable folder and writes the report.

mod config;
mod plots;
mod report;
mod run;
mod store;

pub use config::{Config, ForgetSection, RmiaSection, TrainSection};
pub use report::{Report, ReportTable, Row, Stat, build_report, table_markdown};
pub use run::{RunResult, Runner};
pub use store::{Meta, Stamp};

use crate::data::Dataset;
use crate::error::Result;
use crate::progress::Progress;
use std::path::Path;

/// Runs (or resumes) the experiment `cfg` on `data` (already on the
/// configured device) in `dir`, and writes report.md/json/csv and plots.
pub fn run(
    cfg: &Config,
    data: &Dataset,
    dir: &Path,
    hardware: String,
    progress: &dyn Progress,
) -> Result<Report> {
    let mut runner = Runner::new(cfg, dir, data, progress)?;
    let results = runner.run()?;
    let report = build_report(cfg, results, hardware);
    report.write(dir)?;
    Ok(report)
}
