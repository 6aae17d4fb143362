//! The tuning stage's records and its choice: every grid point (lr ×
//! StepLR step) of a method ran on the tuning forget sets and was audited;
//! the point with the smallest mean selection metric against those sets'
//! exact retrains is what the evaluation seeds run as `(tuned)`.
use super::config::{TuneMetric, grid_rate};
use crate::audit::{ModelAudit, avg_gap};
use crate::error::{Error, Result};
use crate::train::TrainOverrides;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A tuning point's artifact: the audit of the run, not the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunePointResult {
    pub lr: f64,
    pub step: usize,
    pub audit: ModelAudit,
    pub seconds: f64,
}

/// One line of a tuning table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneRow {
    pub lr: f64,
    pub step: usize,
    /// The selection metric, mean over tuning seeds.
    pub value: f64,
    pub per_seed: Vec<f64>,
    /// The Avg. Gap (mean over tuning seeds), whatever the metric.
    pub gap: f64,
}

/// The tuning stage's choice for one method and setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneChoice {
    pub method: String,
    pub fraction: f64,
    pub with_retain: bool,
    pub metric: TuneMetric,
    pub chosen_lr: f64,
    pub chosen_step: usize,
    /// The StepLR decay of the grid.
    #[serde(default = "tenth")]
    pub gamma: f64,
    /// The full settings the evaluation runs use (a record; the runs apply
    /// [`TuneChoice::rate`] to the configured method).
    pub settings: Value,
    pub table: Vec<TuneRow>,
}

fn tenth() -> f64 {
    0.1
}

impl TuneChoice {
    /// The chosen learning rate and schedule, as the lever methods take.
    pub fn rate(&self) -> TrainOverrides {
        grid_rate(self.chosen_lr, self.chosen_step, self.gamma)
    }
}

/// The tuning table of grid points run on tuning seeds (`points`: seed and
/// result), each scored against its seed's retrain audit, averaged over
/// seeds; and the row with the smallest mean metric (ties: the first in
/// grid order).
pub fn choose(
    metric: TuneMetric,
    points: &[(u64, TunePointResult)],
    retrains: &BTreeMap<u64, ModelAudit>,
) -> Result<(Vec<TuneRow>, TuneRow)> {
    let mut table: Vec<TuneRow> = Vec::new();
    for (seed, p) in points {
        let rt = retrains.get(seed).ok_or_else(|| {
            Error::invalid("tune", format!("no retrain audit for tuning seed {seed}"))
        })?;
        let gap = avg_gap(&p.audit.scores, &rt.scores);
        let value = match metric {
            TuneMetric::Gap => gap,
            TuneMetric::MisGap => (p.audit.mis - rt.mis).abs(),
        };
        match table.iter_mut().find(|r| r.lr == p.lr && r.step == p.step) {
            Some(r) => {
                r.per_seed.push(value);
                r.gap += gap;
            }
            None => table.push(TuneRow {
                lr: p.lr,
                step: p.step,
                value: 0.0,
                per_seed: vec![value],
                gap,
            }),
        }
    }
    for r in &mut table {
        let n = r.per_seed.len().max(1) as f64;
        r.value = r.per_seed.iter().sum::<f64>() / n;
        r.gap /= n;
    }
    let best = table
        .iter()
        .fold(None::<&TuneRow>, |b, r| match b {
            Some(b) if b.value <= r.value => Some(b),
            _ => Some(r),
        })
        .cloned()
        .ok_or_else(|| Error::invalid("tune", "an empty grid"))?;
    Ok((table, best))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ConfidenceHist, Scores};

    fn audit(unlearn: f64, mis: f64) -> ModelAudit {
        ModelAudit {
            scores: Scores {
                unlearn,
                retain: 90.0,
                test: 80.0,
                mia: 50.0,
            },
            rmia_auc_retain_test: 70.0,
            tpr_at_1pct_fpr: 0.0,
            tpr_at_01pct_fpr: 0.0,
            mis,
            roc: vec![],
            confidence_hist: ConfidenceHist {
                forget: vec![],
                test: vec![],
                retain: vec![],
            },
            rmia_tied: 0.0,
        }
    }

    fn point(lr: f64, step: usize, unlearn: f64) -> TunePointResult {
        TunePointResult {
            lr,
            step,
            audit: audit(unlearn, 40.0),
            seconds: 1.0,
        }
    }

    #[test]
    fn the_smallest_mean_gap_over_seeds_wins_and_ties_keep_grid_order() {
        let retrains: BTreeMap<u64, ModelAudit> = [(1, audit(80.0, 50.0)), (2, audit(80.0, 50.0))]
            .into_iter()
            .collect();
        // lr 0.1 is best on seed 1 but bad on seed 2; 0.01 is good on both.
        let points = vec![
            (1, point(0.1, 1, 80.0)),
            (1, point(0.01, 1, 84.0)),
            (1, point(0.05, 1, 84.0)),
            (2, point(0.1, 1, 100.0)),
            (2, point(0.01, 1, 84.0)),
            (2, point(0.05, 1, 84.0)),
        ];
        let (table, best) = choose(TuneMetric::Gap, &points, &retrains).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table[0].per_seed, vec![0.0, 5.0]);
        // 0.01 and 0.05 tie at a gap of 1.0: the first in grid order wins.
        assert_eq!((best.lr, best.value), (0.01, 1.0));
        // By MIS gap every point ties (MIS 40 vs 50): the first one wins.
        let (_, by_mis) = choose(TuneMetric::MisGap, &points, &retrains).unwrap();
        assert_eq!((by_mis.lr, by_mis.value), (0.1, 10.0));
        // A seed without its retrain audit is an error, not a silent skip.
        let only_one: BTreeMap<u64, ModelAudit> = [(1, audit(80.0, 50.0))].into_iter().collect();
        assert!(choose(TuneMetric::Gap, &points, &only_one).is_err());
        assert!(choose(TuneMetric::Gap, &[], &retrains).is_err());
    }
}
