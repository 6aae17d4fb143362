//! The experiment's report: the paper's table (method × UA/RA/TA/MIA/Avg.
//! Gap, mean ± std over seeds, plus MIS and time against retraining) as
//! Markdown, JSON and CSV, and PNG plots.
use super::config::Config;
use super::tune::TuneChoice;
use crate::audit::{ModelAudit, Scores, avg_gap, mean_std};
use crate::error::Result;
use crate::fsutil;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One audited model of the experiment.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunResult {
    pub seed: u64,
    pub fraction: f64,
    /// `None` for the original and the retrained model (they need no D_R choice).
    pub with_retain: Option<bool>,
    /// The method, with its variant: `amun`, `amun (tuned)`, `amun (calibrated)`.
    pub method: String,
    pub audit: ModelAudit,
    /// Wall-clock seconds of the method (training for original/retrain;
    /// adversarial search and calibration included for the methods that
    /// use them).
    pub seconds: f64,
    /// Images forwarded and backpropagated (training, or fine-tuning with
    /// the adversarial search): the cost, comparable across devices.
    #[serde(default)]
    pub image_steps: u64,
    pub checkpoint: String,
    /// What a retrain-free calibration chose (calibrated runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::unlearn::Calibration>,
}

/// Mean and sample standard deviation over seeds.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
}

impl Stat {
    fn missing() -> Stat {
        Stat {
            mean: f64::NAN,
            std: f64::NAN,
        }
    }

    fn of(xs: &[f64]) -> Stat {
        let (mean, std) = mean_std(xs);
        Stat { mean, std }
    }

    fn show(&self) -> String {
        if !self.mean.is_finite() {
            "-".into()
        } else {
            format!("{:.2} ± {:.2}", self.mean, self.std)
        }
    }
}

/// One method's line of a table.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Row {
    pub method: String,
    pub runs: usize,
    pub unlearn_acc: Stat,
    pub retain_acc: Stat,
    pub test_acc: Stat,
    /// RMIA AUC of D_F vs D_T.
    pub mia: Stat,
    pub avg_gap: Stat,
    pub mis: Stat,
    pub rmia_auc_retain_test: Stat,
    pub tpr_at_1pct_fpr: Stat,
    pub seconds: Stat,
    /// Seconds over the same seed's retraining seconds.
    pub time_vs_retrain: Stat,
    #[serde(default = "Stat::missing")]
    pub image_steps: Stat,
    /// Image-steps over the same seed's retraining image-steps.
    #[serde(default = "Stat::missing")]
    pub steps_vs_retrain: Stat,
}

/// One table: a forget fraction, with or without D_R.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReportTable {
    pub fraction: f64,
    pub with_retain: bool,
    pub rows: Vec<Row>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    pub name: String,
    pub hardware: String,
    /// The config as written, every setting equal to its default left out
    /// (so that writing a default out is no other config).
    pub config: Config,
    /// What ran, defaults included (`None` in a report an older amun wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolved>,
    pub tables: Vec<ReportTable>,
    pub results: Vec<RunResult>,
    /// The tuning stage's choices and tables (empty without `[tune]`).
    #[serde(default)]
    pub tuning: Vec<TuneChoice>,
}

/// The settings an experiment ran with, every default filled in: what
/// `config` leaves out (hostile11 K12/SC6 stripped defaults, so a reader of
/// the echo alone could not tell the recipe).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Resolved {
    /// The recipe of the original models, the exact retrains and the
    /// reference models.
    pub train: crate::train::Recipe,
    /// Each method's settings as its default variant ran them (a tuned
    /// variant's are in `tuning`, a calibrated run's choice in its result).
    pub methods: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Resolved {
    /// The settings `cfg` runs with on images of `in_channels` channels
    /// (which decide the default `augment`). A fine-tuning's unset
    /// `augment` is the original's, as the run takes it.
    pub fn of(cfg: &Config, in_channels: i64) -> Result<Resolved> {
        let train = cfg.recipe(in_channels)?;
        let as_original = crate::train::TrainOverrides {
            augment: Some(train.augment),
            ..Default::default()
        };
        let mut methods = std::collections::BTreeMap::new();
        for m in cfg.methods()? {
            let m = match m.method().finetune() {
                Some(ft) if ft.augment.is_none() => m.adjusted(&as_original)?,
                _ => m,
            };
            methods.insert(m.name().to_string(), m.method().settings());
        }
        Ok(Resolved { train, methods })
    }
}

/// The report's name of the noise floor's second retrain
/// (`[forget] noise_floor`): its Avg. Gap is the gap between two exact
/// retrains, the floor below which no method's difference means anything.
pub const RETRAIN_AGAIN: &str = "retrain (another seed)";

fn retrain_of(results: &[RunResult], seed: u64, fraction: f64) -> Option<&RunResult> {
    results
        .iter()
        .find(|r| r.method == "retrain" && r.seed == seed && r.fraction == fraction)
}

/// Aggregates results into tables.
pub fn build_report(
    cfg: &Config,
    resolved: Resolved,
    results: Vec<RunResult>,
    tuning: Vec<TuneChoice>,
    hardware: String,
) -> Report {
    let mut tables = Vec::new();
    let mut names: Vec<String> = vec!["original".into(), "retrain".into(), RETRAIN_AGAIN.into()];
    for n in cfg.method_names() {
        for v in [
            super::plan::Variant::Default,
            super::plan::Variant::Tuned,
            super::plan::Variant::Calibrated,
        ] {
            names.push(v.label(n));
        }
    }
    for &fraction in &cfg.forget.fractions {
        for &with_retain in &cfg.forget.with_retain {
            let mut rows = Vec::new();
            for name in &names {
                let runs: Vec<&RunResult> = results
                    .iter()
                    .filter(|r| {
                        r.fraction == fraction
                            && r.method == *name
                            && r.with_retain.is_none_or(|w| w == with_retain)
                    })
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let col = |f: &dyn Fn(&RunResult) -> f64| {
                    Stat::of(&runs.iter().map(|r| f(r)).collect::<Vec<_>>())
                };
                let gap = |r: &RunResult| {
                    retrain_of(&results, r.seed, r.fraction)
                        .map_or(f64::NAN, |rt| avg_gap(&r.audit.scores, &rt.audit.scores))
                };
                let ratio = |r: &RunResult| {
                    retrain_of(&results, r.seed, r.fraction)
                        .map_or(f64::NAN, |rt| r.seconds / rt.seconds.max(1e-9))
                };
                let steps_ratio = |r: &RunResult| {
                    retrain_of(&results, r.seed, r.fraction)
                        .filter(|rt| rt.image_steps > 0)
                        .map_or(f64::NAN, |rt| r.image_steps as f64 / rt.image_steps as f64)
                };
                rows.push(Row {
                    method: name.clone(),
                    runs: runs.len(),
                    unlearn_acc: col(&|r| r.audit.scores.unlearn),
                    retain_acc: col(&|r| r.audit.scores.retain),
                    test_acc: col(&|r| r.audit.scores.test),
                    mia: col(&|r| r.audit.scores.mia),
                    avg_gap: col(&gap),
                    mis: col(&|r| r.audit.mis),
                    rmia_auc_retain_test: col(&|r| r.audit.rmia_auc_retain_test),
                    tpr_at_1pct_fpr: col(&|r| r.audit.tpr_at_1pct_fpr),
                    seconds: col(&|r| r.seconds),
                    time_vs_retrain: col(&ratio),
                    image_steps: col(&|r| r.image_steps as f64),
                    steps_vs_retrain: col(&steps_ratio),
                });
            }
            tables.push(ReportTable {
                fraction,
                with_retain,
                rows,
            });
        }
    }
    Report {
        name: cfg.name.clone(),
        hardware,
        config: cfg.clone(),
        resolved: Some(resolved),
        tables,
        results,
        tuning,
    }
}

/// The Markdown form of one table.
pub fn table_markdown(t: &ReportTable) -> String {
    let mut md = crate::report::Table::new([
        "method",
        "UA",
        "RA",
        "TA",
        "MIA (RMIA AUC)",
        "Avg. Gap",
        "MIS",
        "AUC D_R/D_T",
        "time s",
        "× retrain",
        "steps × retrain",
    ]);
    for r in &t.rows {
        md.row([
            r.method.clone(),
            r.unlearn_acc.show(),
            r.retain_acc.show(),
            r.test_acc.show(),
            r.mia.show(),
            r.avg_gap.show(),
            r.mis.show(),
            r.rmia_auc_retain_test.show(),
            format!("{:.1}", r.seconds.mean),
            if r.time_vs_retrain.mean.is_finite() {
                format!("{:.3}", r.time_vs_retrain.mean)
            } else {
                "-".into()
            },
            if r.steps_vs_retrain.mean.is_finite() {
                format!("{:.3}", r.steps_vs_retrain.mean)
            } else {
                "-".into()
            },
        ]);
    }
    md.render()
}

impl Report {
    /// report.md
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n", self.name);
        let _ = writeln!(
            s,
            "Hardware: {}. Seeds: {:?}. Data: {}. Model: {}.\n",
            self.hardware,
            self.config.seeds,
            self.config.data.label(),
            self.config.model
        );
        let _ = writeln!(
            s,
            "UA/RA/TA: accuracy (%) on D_F, D_R, D_T. MIA: RMIA AUC (%) of D_F vs D_T (ideal: Retrain's, ≈ 50). \
             Avg. Gap: mean |metric − Retrain's| over UA, RA, TA, MIA. MIS: % of D_F an RBF SVC on confidence calls non-member. \
             Mean ± std over seeds.{}\n",
            if self.config.forget.noise_floor {
                format!(
                    " `{RETRAIN_AGAIN}`: a second exact retrain from another initialisation; its Avg. Gap \
                     is the noise floor (two retrains differ by this much), so a gap within it of \
                     another is no difference."
                )
            } else {
                String::new()
            }
        );
        for t in &self.tables {
            let _ = writeln!(
                s,
                "## Forget {:.0}%, {}\n",
                t.fraction * 100.0,
                if t.with_retain {
                    "with D_R"
                } else {
                    "without D_R"
                }
            );
            s.push_str(&table_markdown(t));
            s.push('\n');
        }
        s.push_str(&self.tie_markdown());
        if !self.tuning.is_empty() {
            s.push_str(&self.tuning_markdown());
        }
        let cal = self.calibration_markdown();
        if !cal.is_empty() {
            s.push_str(&cal);
        }
        s
    }

    /// The audits whose RMIA scores (nearly) all tie, each with why its
    /// RMIA columns measure nothing; empty when there are none.
    pub fn tie_markdown(&self) -> String {
        let p = &self.config.rmia.attack;
        let lines: Vec<String> = self
            .results
            .iter()
            .filter_map(|r| {
                let w = r.audit.tie_warning(p, &crate::audit::TieRemedy::CONFIG)?;
                Some(format!(
                    "- {} (seed {}, forget {:.0}%): {w}\n",
                    r.method,
                    r.seed,
                    r.fraction * 100.0
                ))
            })
            .collect();
        if lines.is_empty() {
            return String::new();
        }
        format!("## Warning: tied RMIA scores\n\n{}\n", lines.concat())
    }

    /// The tuning stage: per method and setting, the choice and the table.
    pub fn tuning_markdown(&self) -> String {
        let mut s = String::new();
        let t = self.config.tune.as_ref();
        let _ = writeln!(
            s,
            "## Tuning against retrain\n\nEach grid point ran on the tuning forget set(s) \
             (seeds {:?}, disjoint from the evaluation sets) of seed {}'s original model and was \
             audited against that set's exact retrain; the point with the smallest {} (mean over \
             tuning seeds) runs on the evaluation seeds as `(tuned)`. Schedule: StepLR, ×{} every \
             `step` epochs.\n",
            t.map(|t| t.seeds.clone()).unwrap_or_default(),
            self.config.seeds[0],
            match t.map(|t| t.metric).unwrap_or_default() {
                super::config::TuneMetric::Gap => "Avg. Gap",
                super::config::TuneMetric::MisGap => "MIS gap",
            },
            t.map_or(0.1, |t| t.gamma)
        );
        let mut chosen = crate::report::Table::new([
            "method", "setting", "forget", "lr", "step", "metric", "Avg. Gap",
        ]);
        for c in &self.tuning {
            let best = c
                .table
                .iter()
                .find(|r| r.lr == c.chosen_lr && r.step == c.chosen_step);
            chosen.row([
                c.method.clone(),
                if c.with_retain {
                    "with D_R"
                } else {
                    "without D_R"
                }
                .to_string(),
                format!("{:.0}%", c.fraction * 100.0),
                format!("{}", c.chosen_lr),
                c.chosen_step.to_string(),
                best.map_or("-".into(), |b| format!("{:.2}", b.value)),
                best.map_or("-".into(), |b| format!("{:.2}", b.gap)),
            ]);
        }
        s.push_str(&chosen.render());
        s.push('\n');
        for c in &self.tuning {
            let _ = writeln!(
                s,
                "<details><summary>{} {} {:.0}%: {} grid points</summary>\n",
                c.method,
                if c.with_retain {
                    "with D_R"
                } else {
                    "without D_R"
                },
                c.fraction * 100.0,
                c.table.len()
            );
            let mut t = crate::report::Table::new(["lr", "step", "metric", "per seed", "Avg. Gap"]);
            for r in &c.table {
                t.row([
                    format!("{}", r.lr),
                    r.step.to_string(),
                    format!("{:.2}", r.value),
                    r.per_seed
                        .iter()
                        .map(|v| format!("{v:.2}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    format!("{:.2}", r.gap),
                ]);
            }
            s.push_str(&t.render());
            let _ = write!(
                s,
                "\n![tuning {m}](tune-{m}-f{f}-{r}.png)\n\n</details>\n\n",
                m = c.method,
                f = c.fraction,
                r = if c.with_retain { "R" } else { "noR" }
            );
        }
        s
    }

    /// The calibrated runs: what each chose, at what cost.
    pub fn calibration_markdown(&self) -> String {
        let runs: Vec<(&RunResult, &crate::unlearn::Calibration)> = self
            .results
            .iter()
            .filter_map(|r| Some((r, r.calibration.as_ref()?)))
            .collect();
        if runs.is_empty() {
            return String::new();
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Retrain-free calibration\n\nNo retrained model is used: each calibrated run tried \
             the learning-rate ladder and kept the state whose forget set looked most like the {} \
             held-out test images (never audited) by the original's numbers, measured once before \
             the first epoch, with held-out and retain accuracy within the guard of the original's \
             (an original that already passes is kept with no epoch). Numbers read before → after; \
             ± is the band at these sample sizes.\n",
            runs[0].1.heldout_size
        );
        let mut t = crate::report::Table::new([
            "method",
            "setting",
            "seed",
            "rule",
            "chosen",
            "forget % (target ±)",
            "held-out % (guard)",
            "loss AUC (50 ±)",
            "epochs (worst)",
            "seconds",
        ]);
        for (r, c) in &runs {
            t.row([
                r.method.clone(),
                match r.with_retain {
                    Some(false) => "without D_R",
                    _ => "with D_R",
                }
                .to_string(),
                r.seed.to_string(),
                format!("{:?}", c.settings.rule),
                c.chosen.label(),
                before_after(c.before.map(|b| b.forget_acc), c.chosen.probe.forget_acc)
                    + &band(c.before.map(|b| b.heldout_acc), c.accuracy_band, ""),
                before_after(c.before.map(|b| b.heldout_acc), c.chosen.probe.heldout_acc)
                    + &band(c.before.map(|_| 0.0), c.allowed_drop, "−"),
                before_after(c.before.map(|b| b.loss_auc), c.chosen.probe.loss_auc)
                    + &band(c.before.map(|_| 50.0), c.auc_band, ""),
                format!("{} ({})", c.epochs_run, c.epochs_worst_case),
                format!("{:.1}", c.seconds),
            ]);
        }
        s.push_str(&t.render());
        s.push('\n');
        s
    }

    /// report.csv: one line per model and seed.
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "fraction,with_retain,method,seed,unlearn_acc,retain_acc,test_acc,rmia_auc_forget_test,avg_gap,mis,rmia_auc_retain_test,tpr_at_1pct_fpr,tpr_at_01pct_fpr,seconds,image_steps,checkpoint\n",
        );
        for r in &self.results {
            let gap = retrain_of(&self.results, r.seed, r.fraction)
                .map_or(f64::NAN, |rt| avg_gap(&r.audit.scores, &rt.audit.scores));
            let a: &ModelAudit = &r.audit;
            let Scores {
                unlearn,
                retain,
                test,
                mia,
            } = a.scores;
            let _ = writeln!(
                s,
                "{},{},{},{},{unlearn:.4},{retain:.4},{test:.4},{mia:.4},{gap:.4},{:.4},{:.4},{:.4},{:.4},{:.3},{},{}",
                r.fraction,
                r.with_retain.map_or("".into(), |w| w.to_string()),
                r.method,
                r.seed,
                a.mis,
                a.rmia_auc_retain_test,
                a.tpr_at_1pct_fpr,
                a.tpr_at_01pct_fpr,
                r.seconds,
                r.image_steps,
                r.checkpoint
            );
        }
        s
    }

    /// Writes report.md, report.json and report.csv into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
        let mut written = Vec::new();
        let md = dir.join("report.md");
        fsutil::write_atomic(&md, self.markdown().as_bytes())?;
        written.push(md);
        let js = dir.join("report.json");
        fsutil::write_json(&js, self)?;
        written.push(js);
        let csv = dir.join("report.csv");
        fsutil::write_atomic(&csv, self.csv().as_bytes())?;
        written.push(csv);
        Ok(written)
    }
}

/// "90.8 → 86.0", or just "86.0" for a record made before calibrations
/// kept the original's probe.
fn before_after(before: Option<f64>, after: f64) -> String {
    match before {
        Some(b) => format!("{b:.1} → {after:.1}"),
        None => format!("{after:.1}"),
    }
}

/// " (88.8 ± 3.6)" or, for a guard (`target` 0), " (−4.0)"; nothing for an
/// old record.
fn band(target: Option<f64>, band: f64, sign: &str) -> String {
    match target {
        Some(_) if !sign.is_empty() => format!(" ({sign}{band:.1})"),
        Some(t) => format!(" ({t:.1} ± {band:.1})"),
        None => String::new(),
    }
}
