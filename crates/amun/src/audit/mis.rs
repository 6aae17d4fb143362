//! MIS, SalUn's "MIA-efficacy": an RBF SVC (C = 3, gamma "auto" = 1 / #features)
//! fitted on the true-class confidence of members (a subset of D_R) against
//! non-members (D_T); MIS is the percentage of D_F it calls non-member.
use crate::error::{Error, Result};
use linfa::prelude::*;
use linfa_svm::Svm;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

/// Samples per side the SVC is fitted on at most (the SMO solver keeps a
/// dense kernel matrix; 2,000 + 2,000 is 128 MB).
pub const MAX_PER_SIDE: usize = 2000;

fn subsample(v: &[f64], n: usize, seed: u64) -> Vec<f64> {
    if v.len() <= n {
        return v.to_vec();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    sample(&mut rng, v.len(), n)
        .into_iter()
        .map(|i| v[i])
        .collect()
}

/// Percentage of `forget` confidences the SVC classifies as non-member.
pub fn mis(members: &[f64], nonmembers: &[f64], forget: &[f64], seed: u64) -> Result<f64> {
    if members.is_empty() || nonmembers.is_empty() || forget.is_empty() {
        return Err(Error::invalid(
            "mis",
            "needs members, non-members and forget samples",
        ));
    }
    let m = subsample(
        members,
        MAX_PER_SIDE,
        crate::seed::derive(seed, "mis-members", 0),
    );
    let n = subsample(
        nonmembers,
        MAX_PER_SIDE,
        crate::seed::derive(seed, "mis-nonmembers", 0),
    );
    let x: Vec<f64> = m.iter().chain(&n).copied().collect();
    let y: Vec<bool> = std::iter::repeat_n(true, m.len())
        .chain(std::iter::repeat_n(false, n.len()))
        .collect();
    let records = Array2::from_shape_vec((x.len(), 1), x).expect("one feature");
    let data = Dataset::new(records, Array1::from(y));
    let model = Svm::<f64, bool>::params()
        .pos_neg_weights(3.0, 3.0)
        .gaussian_kernel(1.0)
        .fit(&data)
        .map_err(|e| Error::invalid("mis", format!("SVC fit failed: {e}")))?;
    let fx = Array2::from_shape_vec((forget.len(), 1), forget.to_vec()).expect("one feature");
    let pred = model.predict(&fx);
    let non = pred.iter().filter(|p| !**p).count();
    Ok(100.0 * non as f64 / forget.len() as f64)
}
