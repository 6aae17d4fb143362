//! ROC analysis of membership scores (higher = more likely a member).

/// Area under the ROC curve of `pos` (members) against `neg` (non-members),
/// in `[0,1]`; ties count one half (the Mann–Whitney statistic). NaN when a
/// side is empty.
///
/// ```
/// use amun::audit::auc;
/// assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
/// assert_eq!(auc(&[1.0], &[1.0]), 0.5);
/// ```
pub fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties (1-based).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * all[i..=j].iter().filter(|(_, p)| *p).count() as f64;
        i = j + 1;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

/// The ROC curve as `(false-positive rate, true-positive rate)` points, from
/// `(0,0)` to `(1,1)`, one point per distinct threshold.
pub fn roc_curve(pos: &[f64], neg: &[f64]) -> Vec<(f64, f64)> {
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (np, nn) = (pos.len().max(1) as f64, neg.len().max(1) as f64);
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let t = all[i].0;
        while i < all.len() && all[i].0 == t {
            if all[i].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        pts.push((fp / nn, tp / np));
    }
    pts
}

/// The highest true-positive rate at a false-positive rate of at most
/// `max_fpr` (e.g. 0.01 for TPR@1%FPR).
pub fn tpr_at_fpr(pos: &[f64], neg: &[f64], max_fpr: f64) -> f64 {
    roc_curve(pos, neg)
        .into_iter()
        .filter(|(f, _)| *f <= max_fpr + 1e-12)
        .map(|(_, t)| t)
        .fold(0.0, f64::max)
}
