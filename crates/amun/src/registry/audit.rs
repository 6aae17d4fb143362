//! The evidence a version carries: its forgotten samples against data the
//! model never saw (the test images no calibration looked at), against RMIA
//! reference models when the registry has them, and against an exact
//! retrain once one exists.
use crate::audit::{References, RmiaParams, Scores, avg_gap};
use crate::data::{Dataset, Split};
use crate::error::Result;
use crate::eval::accuracy;
use crate::model::Classifier;
use crate::unlearn::{ForgetRequest, Probes};
use serde::{Deserialize, Serialize};

/// A version against held-out data: the audit's test images (the test
/// split without the calibration hold-out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutAudit {
    /// Accuracy (%) on every sample the version forgot (none: absent).
    pub forget_acc: Option<f64>,
    pub retain_acc: f64,
    pub test_acc: f64,
    /// AUC (%) of "forgotten samples' losses are lower than the test
    /// images'": 50 when they look alike.
    pub loss_auc: Option<f64>,
    /// Kolmogorov–Smirnov distance (points) of true-class confidences.
    pub confidence_ks: Option<f64>,
    /// The test images audited.
    pub test_images: usize,
}

/// RMIA and MIS against the registry's reference models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RmiaAudit {
    /// UA, RA, TA and RMIA's AUC of D_F vs D_T (%).
    pub scores: Scores,
    pub rmia_auc_retain_test: f64,
    pub tpr_at_1pct_fpr: f64,
    pub mis: f64,
}

/// An unlearned version against the exact retrain of its forgotten set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainComparison {
    /// The unlearned version compared.
    pub version: i64,
    /// The retrained version.
    pub retrain_version: i64,
    /// Mean |difference| (points) of forget, retain and test accuracy.
    pub accuracy_gap: f64,
    /// The paper's Avg. Gap (with RMIA's AUC), when there are references.
    pub avg_gap: Option<f64>,
}

/// Everything measured on a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionAudit {
    /// Training samples forgotten (cumulatively).
    pub forgotten: usize,
    pub heldout: HeldOutAudit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmia: Option<RmiaAudit>,
    /// For a retrained version: the unlearned version it replaces, compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<RetrainComparison>,
}

/// Audits `model` for the forgotten training samples `forgotten` (sorted):
/// against the test images before the last `holdout` (which calibration
/// looked at), and with RMIA when `refs` are given.
pub fn audit_version(
    model: &Classifier,
    data: &Dataset,
    forgotten: &[i64],
    holdout: usize,
    refs: Option<&References>,
    seed: u64,
) -> Result<VersionAudit> {
    let n = data.train.len() as i64;
    let retain: Vec<i64> = (0..n)
        .filter(|i| forgotten.binary_search(i).is_err())
        .collect();
    let t = data.test.len();
    let keep = t.saturating_sub(holdout) as i64;
    let test = Split {
        images: data.test.images.narrow(0, 0, keep),
        labels: data.test.labels.narrow(0, 0, keep),
    };
    let retain_acc = accuracy(model, &data.train.select(&retain)).percent();
    let test_acc = accuracy(model, &test).percent();
    let heldout = if forgotten.is_empty() {
        HeldOutAudit {
            forget_acc: None,
            retain_acc,
            test_acc,
            loss_auc: None,
            confidence_ks: None,
            test_images: keep as usize,
        }
    } else {
        let req = ForgetRequest {
            train: &data.train,
            forget: forgotten,
            retain: Some(&retain),
            adv: None,
            mask: None,
            num_classes: data.num_classes(),
        };
        let p = Probes::new(&req, &test, 1, seed).probe(model);
        HeldOutAudit {
            forget_acc: Some(p.forget_acc),
            retain_acc,
            test_acc,
            loss_auc: Some(p.loss_auc),
            confidence_ks: Some(p.confidence_ks),
            test_images: keep as usize,
        }
    };
    let rmia = match refs {
        Some(r) if !forgotten.is_empty() => {
            let a = crate::audit::audit(
                model,
                data,
                forgotten,
                r,
                &RmiaParams::default(),
                seed,
                holdout,
                &crate::progress::Quiet,
            )?;
            Some(RmiaAudit {
                scores: a.scores,
                rmia_auc_retain_test: a.rmia_auc_retain_test,
                tpr_at_1pct_fpr: a.tpr_at_1pct_fpr,
                mis: a.mis,
            })
        }
        _ => None,
    };
    Ok(VersionAudit {
        forgotten: forgotten.len(),
        heldout,
        rmia,
        retrain: None,
    })
}

/// How far the unlearned version's audit `u` lies from the retrain's `r`.
pub fn compare(
    u: &VersionAudit,
    r: &VersionAudit,
    version: i64,
    retrain_version: i64,
) -> RetrainComparison {
    let acc = |a: &VersionAudit| {
        [
            a.heldout.forget_acc.unwrap_or(f64::NAN),
            a.heldout.retain_acc,
            a.heldout.test_acc,
        ]
    };
    let (x, y) = (acc(u), acc(r));
    RetrainComparison {
        version,
        retrain_version,
        accuracy_gap: x.iter().zip(&y).map(|(a, b)| (a - b).abs()).sum::<f64>() / 3.0,
        avg_gap: match (&u.rmia, &r.rmia) {
            (Some(a), Some(b)) => Some(avg_gap(&a.scores, &b.scores)),
            _ => None,
        },
    }
}
