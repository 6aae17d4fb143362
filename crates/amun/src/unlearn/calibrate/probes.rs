//! The measurements that touch a model: per-sample losses, confidences and
//! accuracy of the forget, held-out and retain probes, and RMIA's AUC where
//! reference models exist.
use super::super::ForgetRequest;
use super::record::{Membership, Probe};
use crate::audit::{References, RmiaParams};
use crate::data::{Dataset, IndexSet, Split};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::seed::derive;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Reduction, Tensor};

/// What [`measure`] sees of a split.
struct Seen {
    loss: Vec<f64>,
    confidence: Vec<f64>,
    correct: usize,
    logits: Tensor,
    labels: Tensor,
}

/// Per-sample loss and true-class confidence, predictions and logits of
/// `split`.
fn measure(model: &Classifier, split: &Split) -> Seen {
    let logits = crate::eval::logits(model, &split.images).to_device(Device::Cpu);
    let labels = split.labels.to_device(Device::Cpu);
    let loss = logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
        &labels,
        None,
        Reduction::None,
        -100,
        0.0,
    );
    let conf = logits
        .softmax(1, Kind::Double)
        .gather(1, &labels.view([-1, 1]), false)
        .flatten(0, -1);
    let correct = logits
        .argmax(1, false)
        .eq_tensor(&labels)
        .sum(Kind::Int64)
        .int64_value(&[]) as usize;
    Seen {
        loss: Vec::<f64>::try_from(loss.to_kind(Kind::Double)).unwrap_or_default(),
        confidence: Vec::<f64>::try_from(conf).unwrap_or_default(),
        correct,
        logits,
        labels,
    }
}

/// The audit's RMIA on calibration's sets: the reference models of the
/// model's data and where the held-out images are in their pool.
#[derive(Clone, Copy)]
pub struct RmiaSignal<'a> {
    pub refs: &'a References,
    pub params: &'a RmiaParams,
    /// Pool row (the training rows first, then the test rows) of the first
    /// held-out image: the held-out set is the last test images.
    pub heldout_start: usize,
}

impl<'a> RmiaSignal<'a> {
    /// The signal for `heldout`, the last test images of `data` (their pool
    /// rows follow the training rows and the test rows before them).
    pub fn last_test(
        refs: &'a References,
        params: &'a RmiaParams,
        data: &Dataset,
        heldout: &Split,
    ) -> Self {
        RmiaSignal {
            refs,
            params,
            heldout_start: data.train.len() + data.test.len() - heldout.len(),
        }
    }
}

/// RMIA's priors p(x) (the reference models' signals, fixed) of the forget
/// and held-out samples.
struct RmiaPrior {
    params: RmiaParams,
    forget: Vec<f64>,
    heldout: Vec<f64>,
}

impl RmiaPrior {
    /// The AUC (%) of the forget set's RMIA scores against the held-out
    /// set's, the held-out set being RMIA's population (each held-out
    /// sample left out of its own count), as the audit scores D_F against
    /// D_T.
    fn auc(&self, forget: &Seen, heldout: &Seen) -> f64 {
        let ratio = |seen: &Seen, prior: &[f64]| -> Vec<f64> {
            crate::audit::signal(&seen.logits, &seen.labels, self.params.signal)
                .iter()
                .zip(prior)
                .map(|(s, q)| s / q.max(1e-300))
                .collect()
        };
        let (lf, lh) = (ratio(forget, &self.forget), ratio(heldout, &self.heldout));
        let x: Vec<f64> = lf.iter().chain(&lh).copied().collect();
        let inside: Vec<bool> = (0..x.len()).map(|i| i >= lf.len()).collect();
        let s = crate::audit::scores(&x, &lh, &inside, self.params.gamma);
        let (sf, sh) = s.split_at(lf.len());
        100.0 * crate::audit::auc(sf, sh)
    }
}

fn ks(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    100.0 * d
}

/// The three sets calibration looks at.
pub struct Probes<'a> {
    pub forget: Split,
    pub heldout: &'a Split,
    pub retain: Option<Split>,
    rmia: Option<RmiaPrior>,
}

impl<'a> Probes<'a> {
    /// The forget set, `heldout`, and up to `retain_probe` retain samples
    /// (seeded) of `req`.
    pub fn new(
        req: &ForgetRequest<'_>,
        heldout: &'a Split,
        retain_probe: usize,
        seed: u64,
    ) -> Probes<'a> {
        let n = req.train.len();
        let retain: Vec<i64> = match req.retain {
            Some(r) => r.to_vec(),
            None => {
                // Without D_R the method never sees it, but its accuracy is
                // still what the user keeps: measure it on the training rows.
                IndexSet::new(req.forget.iter().copied())
                    .complement(n)
                    .into_vec()
            }
        };
        let retain = (!retain.is_empty()).then(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(derive(seed, "calibrate-retain", 0));
            let k = retain.len().min(retain_probe);
            let mut pick: Vec<i64> = sample(&mut rng, retain.len(), k)
                .into_iter()
                .map(|i| retain[i])
                .collect();
            pick.sort_unstable();
            req.train.select(&pick)
        });
        Probes {
            forget: req.train.select(req.forget),
            heldout,
            retain,
            rmia: None,
        }
    }

    /// These probes with RMIA as the membership signal, for the forget set
    /// of `req`. Refused when the references' pool does not hold the
    /// training split and the held-out images where `rmia` says.
    pub fn with_rmia(mut self, req: &ForgetRequest<'_>, rmia: RmiaSignal<'_>) -> Result<Self> {
        let pool = rmia.refs.members.first().map_or(0, Vec::len);
        let end = rmia.heldout_start + self.heldout.len();
        if rmia.refs.n_train != req.train.len()
            || end > pool
            || rmia.heldout_start < req.train.len()
        {
            return Err(Error::invalid(
                "refs",
                format!(
                    "the reference models' pool ({} training rows, {pool} in all) does not hold \
                     this model's {} training samples and its {} held-out test images at row {}: \
                     RMIA calibration needs references of the model's own data and held-out \
                     images from its test split",
                    rmia.refs.n_train,
                    req.train.len(),
                    self.heldout.len(),
                    rmia.heldout_start
                ),
            ));
        }
        let forget: Vec<usize> = req.forget.iter().map(|&i| i as usize).collect();
        let heldout: Vec<usize> = (rmia.heldout_start..end).collect();
        self.rmia = Some(RmiaPrior {
            params: rmia.params.clone(),
            forget: rmia.refs.prior(&forget, rmia.params)?,
            heldout: rmia.refs.prior(&heldout, rmia.params)?,
        });
        Ok(self)
    }

    /// The membership signal these probes measure.
    pub fn signal(&self) -> Membership {
        match self.rmia {
            Some(_) => Membership::Rmia,
            None => Membership::Loss,
        }
    }

    /// The retain probe's samples.
    pub fn retain_len(&self) -> usize {
        self.retain.as_ref().map_or(0, Split::len)
    }

    /// Measures `model`.
    pub fn probe(&self, model: &Classifier) -> Probe {
        let (f, h) = (measure(model, &self.forget), measure(model, self.heldout));
        let retain_acc = match &self.retain {
            Some(r) => 100.0 * measure(model, r).correct as f64 / r.len().max(1) as f64,
            None => f64::NAN,
        };
        let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<f64>>();
        Probe {
            forget_acc: 100.0 * f.correct as f64 / f.loss.len().max(1) as f64,
            heldout_acc: 100.0 * h.correct as f64 / h.loss.len().max(1) as f64,
            retain_acc,
            loss_auc: 100.0 * crate::audit::auc(&neg(&f.loss), &neg(&h.loss)),
            confidence_ks: ks(&f.confidence, &h.confidence),
            rmia_auc: self.rmia.as_ref().map(|r| r.auc(&f, &h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RMIA's AUC on calibration's sets, from logits and fixed priors: a
    /// forget set the model is more confident on than the held-out set
    /// scores above 50, the held-out set against itself at 50.
    #[test]
    fn rmia_auc_of_forget_against_heldout() {
        let seen = |margins: &[f64]| {
            let n = margins.len() as i64;
            let logits: Vec<f64> = margins.iter().flat_map(|&m| [m, 0.0]).collect();
            Seen {
                loss: vec![0.0; margins.len()],
                confidence: vec![0.0; margins.len()],
                correct: 0,
                logits: Tensor::from_slice(&logits).view([n, 2]),
                labels: Tensor::from_slice(&vec![0i64; margins.len()]),
            }
        };
        let heldout: Vec<f64> = (0..40).map(|i| -2.0 + 0.1 * f64::from(i)).collect();
        let prior = |n: usize| vec![0.5; n];
        let r = RmiaPrior {
            params: RmiaParams::default(),
            forget: prior(40),
            heldout: prior(40),
        };
        let h = seen(&heldout);
        let member: Vec<f64> = heldout.iter().map(|m| m + 3.0).collect();
        let auc = r.auc(&seen(&member), &h);
        assert!(auc > 80.0, "{auc}");
        let auc = r.auc(&seen(&heldout), &h);
        assert!((auc - 50.0).abs() < 5.0, "{auc}");
    }

    #[test]
    fn ks_distance() {
        assert_eq!(ks(&[0.1, 0.2, 0.3], &[0.1, 0.2, 0.3]), 0.0);
        assert_eq!(ks(&[0.1, 0.2], &[0.8, 0.9]), 100.0);
    }
}
