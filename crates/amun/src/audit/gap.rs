//! Summary arithmetic: the paper's Avg. Gap and mean ± std over seeds.
use serde::{Deserialize, Serialize};

/// The four numbers the paper's table compares (all in percent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Accuracy on D_F ("Unlearn Acc").
    pub unlearn: f64,
    /// Accuracy on D_R.
    pub retain: f64,
    /// Accuracy on D_T.
    pub test: f64,
    /// The MIA score (RMIA AUC of D_F vs D_T, percent).
    pub mia: f64,
}

/// Mean of |metric − Retrain's metric| over the four scores.
///
/// ```
/// use amun::audit::{Scores, avg_gap};
/// let r = Scores { unlearn: 94.0, retain: 100.0, test: 94.0, mia: 50.0 };
/// let m = Scores { unlearn: 95.0, retain: 99.0, test: 93.0, mia: 51.0 };
/// assert!((avg_gap(&m, &r) - 1.0).abs() < 1e-12);
/// ```
pub fn avg_gap(m: &Scores, retrain: &Scores) -> f64 {
    ((m.unlearn - retrain.unlearn).abs()
        + (m.retain - retrain.retain).abs()
        + (m.test - retrain.test).abs()
        + (m.mia - retrain.mia).abs())
        / 4.0
}

/// Mean and sample standard deviation (0 for one value, NaN for none).
///
/// ```
/// let (m, s) = amun::audit::mean_std(&[1.0, 2.0, 3.0]);
/// assert_eq!((m, s), (2.0, 1.0));
/// ```
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}
