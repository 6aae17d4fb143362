//! The tests every state is judged by: the targets fixed from the original
//! model, the sampling noise of each comparison at the level, the verdict
//! and the rule's score. Numbers only: no model.
use super::record::{Candidate, Change, Probe};
use super::settings::Rule;

/// Where a state stands against the fixed targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forget accuracy and loss-AUC within their bands, utility kept.
    Reached,
    /// Still remembers the forget set (by accuracy or membership), utility
    /// kept.
    Under,
    /// Past unseen data, by accuracy or by membership.
    Over,
    /// Utility lost beyond the guard, not past unseen data.
    Lost,
}

/// The sizes the tests' bands follow from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub forget: usize,
    pub heldout: usize,
    /// The retain probe's samples.
    pub retain: usize,
    /// Training samples of the original model.
    pub train: usize,
}

/// The two-sided standard normal quantile: |Z| exceeds it with
/// probability `level` (1.96 at 0.05).
pub fn z_two_sided(level: f64) -> f64 {
    // P(|Z| > z) = erfc(z/√2), decreasing in z: bisect to f64 precision.
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if libm::erfc(mid / std::f64::consts::SQRT_2) > level {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Standard error (points) of forget accuracy minus held-out accuracy on
/// `nf` and `nh` samples: the two-proportion z-test's, with the pooled
/// accuracy of the original (`forget`, `heldout` in percent), fixed once.
pub fn accuracy_noise(forget: f64, heldout: f64, nf: usize, nh: usize) -> f64 {
    let (nf, nh) = (nf.max(1) as f64, nh.max(1) as f64);
    // Both at 100% (or 0%) would give a band of ±0, as if no error were
    // possible: the pooled accuracy is kept one sample from the edge.
    let edge = 1.0 / (nf + nh);
    let p = ((forget * nf + heldout * nh) / (nf + nh) / 100.0).clamp(edge, 1.0 - edge);
    100.0 * (p * (1.0 - p) * (1.0 / nf + 1.0 / nh)).max(0.0).sqrt()
}

/// Standard error (points) of an accuracy of `acc`% on `n` samples, with
/// Agresti–Coull's z²/2 successes and failures added, so that a perfect
/// score on a probe set still has the noise of its size (a model at 100%
/// on 1000 samples may be at 99.7%).
pub fn accuracy_se(acc: f64, n: usize, z: f64) -> f64 {
    let n = n as f64 + z * z;
    let p = ((acc / 100.0).clamp(0.0, 1.0) * (n - z * z) + z * z / 2.0) / n;
    100.0 * (p * (1.0 - p) / n).sqrt()
}

/// Standard error (points) of the AUC of `nf` against `nh` samples from
/// one distribution (Mann–Whitney's variance under the null).
pub fn auc_se(nf: usize, nh: usize) -> f64 {
    let (nf, nh) = (nf.max(1) as f64, nh.max(1) as f64);
    100.0 * ((nf + nh + 1.0) / (12.0 * nf * nh)).sqrt()
}

/// The null band of a loss-AUC at the 0.05 level (≈ 2 standard errors):
/// an AUC this far from 50 is evidence, not noise.
pub fn auc_band(nf: usize, nh: usize) -> f64 {
    z_two_sided(0.05) * auc_se(nf, nh)
}

/// The fewest held-out samples against `nf` forgotten ones for which the
/// membership test at `level` can fire at all: its null band
/// (`z` × [`auc_se`]) narrower than the 50 points an AUC can lie from 50.
/// With fewer, even a forget set the model separates perfectly (AUC 100)
/// tests as "not detectably memorised". `None` when no held-out set is
/// large enough (a forget set of one sample).
pub fn min_heldout(nf: usize, level: f64) -> Option<usize> {
    let z = z_two_sided(level);
    // The band shrinks as nh grows, towards z × 100/√(12 nf).
    if z * 100.0 / (12.0 * nf.max(1) as f64).sqrt() >= 50.0 {
        return None;
    }
    (1..).find(|&nh| z * auc_se(nf, nh) < 50.0)
}

/// The utility guard (points) on a probe set of `n` samples on which the
/// original scored `acc`%: the sampling noise of the comparison at the
/// level (`z` standard errors of that accuracy, `z` one-sided: only a loss
/// is tested) plus what forgetting
/// `forgotten` of `train` training samples may cost a retrain.
///
/// Noise: a calibrated state and the original are scored on the same
/// images and the state descends from the original, so their correctness
/// is strongly correlated: the difference's standard error lies below the
/// unpaired √2·SE, and for closely related states near McNemar's
/// √(discordant)/n. One SE of the accuracy ([`accuracy_se`]) lies between
/// the two and needs nothing but the original's numbers.
///
/// Cost: on a learning curve err(N) ∝ N^(−β) (image classifiers measure
/// β ≈ 0.3–0.7), a retrain on N − n_f samples loses
/// err × ((N/(N − n_f))^β − 1) points; β = [`LEARNING_CURVE_EXPONENT`]
/// (0.6 points for 10% forgotten of a model at 89%, 2.2 at 60%). The
/// bound β = 1 (4.4 points at 60%) was measured too loose: on the CIFAR-10
/// slice the retrain lost 0.4 points at 10% and the bound let a calibrated
/// state that lost 6.8 through (docs/CALIBRATION.md).
pub fn utility_drop(acc: f64, n: usize, z: f64, forgotten: usize, train: usize) -> f64 {
    if !acc.is_finite() || n == 0 {
        return f64::INFINITY;
    }
    let noise = z * accuracy_se(acc, n, z);
    let kept = train.saturating_sub(forgotten).max(1) as f64;
    let shrink = (train.max(1) as f64 / kept).powf(LEARNING_CURVE_EXPONENT) - 1.0;
    // No state can lose more than the accuracy it is measured against.
    (noise + (100.0 - acc) * shrink).min(acc)
}

/// β of the learning curve err(N) ∝ N^(−β) that [`utility_drop`] assumes:
/// the middle of what image classifiers measure (0.3–0.7).
pub const LEARNING_CURVE_EXPONENT: f64 = 0.5;

/// What every state is judged against, fixed from the original model
/// measured once before the first epoch, with the tests' bands at the
/// level. Nothing here moves with the state being judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Targets {
    pub original: Probe,
    pub sizes: Sizes,
    pub level: f64,
    /// The two-sided normal quantile of `level`.
    pub z: f64,
    /// [`accuracy_noise`] of the original.
    pub noise: f64,
    /// [`auc_se`] at the sizes.
    pub auc_se: f64,
    /// Points of held-out accuracy a kept state may lose.
    pub heldout_drop: f64,
    /// Points of retain accuracy a kept state may lose.
    pub retain_drop: f64,
}

impl Targets {
    /// The targets of `original` at `level`; the guards allow `guard_se`
    /// standard errors of noise (`None`: the one-sided z at the level, as
    /// records from before it ran); `max_drop` replaces both guards when
    /// given.
    pub fn new(
        original: Probe,
        sizes: Sizes,
        level: f64,
        guard_se: Option<f64>,
        max_drop: Option<f64>,
    ) -> Targets {
        let z = z_two_sided(level);
        // A loss of utility is one-sided (a state that gains accuracy is
        // never refused for it).
        let z_loss = guard_se.unwrap_or_else(|| z_two_sided((2.0 * level).min(1.0)));
        let drop = |acc: f64, n: usize| {
            max_drop.unwrap_or_else(|| utility_drop(acc, n, z_loss, sizes.forget, sizes.train))
        };
        Targets {
            original,
            sizes,
            level,
            z,
            noise: accuracy_noise(
                original.forget_acc,
                original.heldout_acc,
                sizes.forget,
                sizes.heldout,
            ),
            auc_se: auc_se(sizes.forget, sizes.heldout),
            heldout_drop: drop(original.heldout_acc, sizes.heldout),
            // Never tighter than the held-out guard: a training-set accuracy
            // near 100% has almost no sampling noise, and a guard of a few
            // tenths refused every fine-tuned state of a memorising model
            // (the protocol tests' CIFAR and MNIST cases), keeping the
            // original however memorised.
            retain_drop: drop(original.retain_acc, sizes.retain)
                .max(drop(original.heldout_acc, sizes.heldout))
                .min(original.retain_acc),
        }
    }

    /// What forget accuracy aims at: the original's held-out accuracy, the
    /// best retrain-free estimate of a retrain's accuracy on the forget set.
    pub fn forget_target(&self) -> f64 {
        self.original.heldout_acc
    }

    /// How far forget accuracy may be from its target.
    pub fn accuracy_band(&self) -> f64 {
        self.z * self.noise
    }

    /// How far the loss-AUC may be from 50.
    pub fn auc_band(&self) -> f64 {
        self.z * self.auc_se
    }

    /// Forget accuracy minus its target.
    pub fn diff(&self, p: &Probe) -> f64 {
        p.forget_acc - self.forget_target()
    }

    /// Whether held-out and retain accuracy are no lower than the
    /// original's by more than the guards.
    pub fn keeps_utility(&self, p: &Probe) -> bool {
        let ok = |now: f64, then: f64, drop: f64| {
            !now.is_finite() || !then.is_finite() || now >= then - drop
        };
        ok(p.heldout_acc, self.original.heldout_acc, self.heldout_drop)
            && ok(p.retain_acc, self.original.retain_acc, self.retain_drop)
    }

    /// Whether the membership AUC is not below 50 by more than its band.
    pub fn membership_ok(&self, p: &Probe) -> bool {
        p.membership_auc() >= 50.0 - self.auc_band()
    }

    /// Where `p` stands: the tests at the level against the fixed targets.
    pub fn verdict(&self, p: &Probe) -> Verdict {
        let (diff, auc) = (self.diff(p), p.membership_auc() - 50.0);
        let (ab, mb) = (self.accuracy_band(), self.auc_band());
        if diff < -ab || auc < -mb {
            Verdict::Over
        } else if !self.keeps_utility(p) {
            Verdict::Lost
        } else if diff > ab || auc > mb {
            Verdict::Under
        } else {
            Verdict::Reached
        }
    }

    /// `p` judged as the original (lr 0, epoch 0); a walk's states replace
    /// where it was.
    pub fn judge(&self, rule: Rule, p: Probe) -> Candidate {
        Candidate {
            lr: 0.0,
            epoch: 0,
            schedule: None,
            path: Vec::new(),
            probe: p,
            score: score(rule, &p, &self.original),
            keeps_utility: self.keeps_utility(&p),
            membership_ok: self.membership_ok(&p),
            reached: self.verdict(&p) == Verdict::Reached,
        }
    }

    /// The tests' numbers for `p`: "forget 90.8% vs target 88.8% (+2.0 ±
    /// 3.6), loss-AUC 52.0 (50 ± 3.4), at level 0.05".
    pub fn describe(&self, p: &Probe) -> String {
        format!(
            "forget {:.1}% vs target {:.1}% ({:+.1} ± {:.1}), {} {:.1} (50 ± {:.1}), at level {}",
            p.forget_acc,
            self.forget_target(),
            self.diff(p),
            self.accuracy_band(),
            p.signal().name(),
            p.membership_auc(),
            self.auc_band(),
            self.level
        )
    }

    /// The verdict on `chosen`, in words with its numbers.
    pub fn verdict_text(&self, chosen: &Candidate) -> String {
        let d = self.describe(&chosen.probe);
        match self.verdict(&chosen.probe) {
            Verdict::Reached if chosen.epoch == 0 => {
                format!("not detectably memorised at this sample size: {d}")
            }
            Verdict::Reached => format!("looks like unseen data at this sample size: {d}"),
            Verdict::Under => format!("still detectably memorised: {d}"),
            Verdict::Over => format!("past unseen data (over-unlearned): {d}"),
            Verdict::Lost => format!(
                "utility lost beyond the guard (held-out may lose {:.1}, retain {:.1}): {d}",
                self.heldout_drop, self.retain_drop
            ),
        }
    }

    /// Before (the original) → after (`after`) of every measured number.
    pub fn changes(&self, after: &Probe) -> Vec<Change> {
        let o = &self.original;
        let noise = |acc: f64, n: usize| self.z * accuracy_se(acc, n, self.z);
        let mut v = vec![
            Change {
                measure: "forget accuracy %".into(),
                before: o.forget_acc,
                after: after.forget_acc,
                target: self.forget_target(),
                band: self.accuracy_band(),
                guard: None,
            },
            Change {
                measure: "held-out accuracy %".into(),
                before: o.heldout_acc,
                after: after.heldout_acc,
                target: o.heldout_acc,
                band: noise(o.heldout_acc, self.sizes.heldout),
                guard: Some(self.heldout_drop),
            },
        ];
        if o.retain_acc.is_finite() {
            v.push(Change {
                measure: "retain accuracy %".into(),
                before: o.retain_acc,
                after: after.retain_acc,
                target: o.retain_acc,
                band: noise(o.retain_acc, self.sizes.retain),
                guard: Some(self.retain_drop),
            });
        }
        if let (Some(before), Some(now)) = (o.rmia_auc, after.rmia_auc) {
            v.push(Change {
                measure: "RMIA AUC forget vs held-out %".into(),
                before,
                after: now,
                target: 50.0,
                band: self.auc_band(),
                guard: None,
            });
        }
        v.push(Change {
            measure: "loss AUC forget vs held-out %".into(),
            before: o.loss_auc,
            after: after.loss_auc,
            target: 50.0,
            band: self.auc_band(),
            guard: None,
        });
        v
    }
}

/// The rule's distance of `p` from "looks like unseen data", against the
/// targets of the original model's probe (never `p`'s own held-out
/// accuracy: a state that loses accuracy on unseen data must not look
/// closer for it).
pub fn score(rule: Rule, p: &Probe, original: &Probe) -> f64 {
    let acc = (p.forget_acc - original.heldout_acc).abs();
    let mia = (p.membership_auc() - 50.0).abs();
    match rule {
        Rule::Accuracy => acc,
        Rule::Mia => mia,
        Rule::Confidence => p.confidence_ks,
        Rule::ProxyGap => {
            let test = (p.heldout_acc - original.heldout_acc).abs();
            let retain = if p.retain_acc.is_finite() && original.retain_acc.is_finite() {
                (p.retain_acc - original.retain_acc).abs()
            } else {
                0.0
            };
            (acc + test + retain + mia) / 4.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unlearn::calibrate::Membership;
    use crate::unlearn::calibrate::fixtures::{SIZES, probe, targets, with_rmia};
    use crate::unlearn::calibrate::walk::better;

    /// hostile6 HT1: forget and held-out both at 100% printed a null band
    /// of ±0.0 (and a held-out set of one image kept the original at
    /// "+0.0 ± 0.0"); a pooled accuracy one sample from the edge gives the
    /// band the sample sizes allow. Away from the edge nothing changes.
    #[test]
    fn a_perfect_score_on_both_sets_still_has_a_null_band() {
        assert!(accuracy_noise(100.0, 100.0, 30, 1) > 15.0);
        assert!(accuracy_noise(100.0, 100.0, 30, 40) > 1.0);
        assert!(accuracy_noise(0.0, 0.0, 30, 40) > 1.0);
        let p: f64 = (90.0 * 30.0 + 80.0 * 40.0) / 70.0 / 100.0;
        let want = 100.0 * (p * (1.0 - p) * (1.0 / 30.0 + 1.0 / 40.0)).sqrt();
        assert_eq!(accuracy_noise(90.0, 80.0, 30, 40), want);
    }

    #[test]
    fn scores_are_two_sided_against_fixed_targets() {
        let orig = probe(99.0, 70.0, 99.0, 80.0);
        let under = probe(95.0, 70.0, 99.0, 75.0);
        let over = probe(45.0, 70.0, 99.0, 25.0);
        let right = probe(71.0, 70.0, 98.0, 51.0);
        for rule in [Rule::Accuracy, Rule::Mia, Rule::ProxyGap] {
            let s = |p: &Probe| score(rule, p, &orig);
            assert!(s(&right) < s(&under), "{rule:?}");
            assert!(s(&right) < s(&over), "{rule:?}");
        }
        // A state that lost held-out accuracy is scored against the
        // original's 70, not its own 60.
        let damaged = probe(60.0, 60.0, 99.0, 50.0);
        assert_eq!(score(Rule::Accuracy, &damaged, &orig), 10.0);
    }

    /// hostile7 HT1b: one held-out image against 30 forgotten gave a
    /// loss-AUC band of 50 ± 58.4, which no AUC can leave: the least
    /// held-out set is the first whose band is narrower than 50.
    #[test]
    fn the_least_held_out_set_is_the_first_whose_band_can_be_left() {
        let z = z_two_sided(0.05);
        assert!(z * auc_se(30, 1) > 58.0 && z * auc_se(30, 2) < 50.0);
        assert_eq!(min_heldout(30, 0.05), Some(2));
        assert_eq!(
            min_heldout(30, 0.01),
            Some(3),
            "a stricter level needs more"
        );
        assert_eq!(min_heldout(2, 0.05), Some(6));
        assert_eq!(
            min_heldout(1, 0.05),
            None,
            "one sample: no held-out set suffices"
        );
        for nf in [2, 5, 30, 1000] {
            let m = min_heldout(nf, 0.05).unwrap();
            assert!(z * auc_se(nf, m) < 50.0 && (m == 1 || z * auc_se(nf, m - 1) >= 50.0));
        }
    }

    #[test]
    fn the_level_sets_the_bands() {
        assert!((z_two_sided(0.05) - 1.959964).abs() < 1e-5);
        assert!((z_two_sided(0.01) - 2.575829).abs() < 1e-5);
        // 600 forget vs 1000 held-out: 2 SE ≈ 3 points; 200 vs 500 ≈ 4.8.
        assert!(
            (auc_band(600, 1000) - 2.92).abs() < 0.05,
            "{}",
            auc_band(600, 1000)
        );
        assert!(
            (auc_band(200, 500) - 4.73).abs() < 0.05,
            "{}",
            auc_band(200, 500)
        );
        // The registry's case: 60 forgotten against 1000 test images.
        assert!(
            (auc_band(60, 1000) - 7.6).abs() < 0.1,
            "{}",
            auc_band(60, 1000)
        );
        let o = probe(90.8, 88.8, 100.0, 52.0);
        let t = Targets::new(o, SIZES, 0.01, None, None);
        assert!(t.accuracy_band() > targets(o).accuracy_band());
        // A set guard replaces the data's.
        let t = Targets::new(o, SIZES, 0.05, Some(1.0), Some(10.0));
        assert_eq!((t.heldout_drop, t.retain_drop), (10.0, 10.0));
        // Removing more costs more; a larger probe set has less noise.
        assert!(utility_drop(60.0, 500, 1.96, 600, 6000) > utility_drop(60.0, 500, 1.96, 60, 6000));
        assert!(utility_drop(90.0, 5000, 1.96, 60, 6000) < utility_drop(90.0, 500, 1.96, 60, 6000));
    }

    /// Fashion-MNIST 10%, seed 0 (stop 51's matrix): calibrated AMUN kept
    /// a state 2.8 held-out points below the original, inside the 2.9 of
    /// a guard at the one-sided z, and lost 3.8 points of the audit's test
    /// accuracy. At one standard error (2.0) it is a utility loss; a state
    /// that lost 1.6 still passes.
    #[test]
    fn a_guard_at_one_standard_error_refuses_fashion_seed_0s_kept_state() {
        let sizes = Sizes {
            forget: 300,
            heldout: 500,
            retain: 1000,
            train: 3000,
        };
        let o = with_rmia(probe(97.33, 89.0, 98.1, 54.45), 60.885);
        let kept = with_rmia(probe(90.67, 86.2, 96.5, 48.73), 50.10);
        let at_z = Targets::new(o, sizes, 0.05, None, None);
        assert!((at_z.heldout_drop - 2.909).abs() < 0.01, "{at_z:?}");
        assert_eq!(at_z.verdict(&kept), Verdict::Reached);
        let t = Targets::new(o, sizes, 0.05, Some(1.0), None);
        assert!((t.heldout_drop - 1.99).abs() < 0.01, "{t:?}");
        assert_eq!(t.verdict(&kept), Verdict::Lost);
        let gentler = with_rmia(probe(90.67, 87.4, 97.0, 48.73), 50.10);
        assert_eq!(t.verdict(&gentler), Verdict::Reached);
    }

    /// Issue 37 (hostile6 AA3): 299 of 300 forgotten read "may lose 173.0
    /// against 90.0": no guard allows losing more than the accuracy it is
    /// measured against.
    #[test]
    fn a_utility_guard_never_exceeds_its_accuracy() {
        assert_eq!(utility_drop(90.0, 30, 1.645, 299, 300), 90.0);
        let sizes = Sizes {
            forget: 299,
            heldout: 30,
            retain: 1,
            train: 300,
        };
        let t = Targets::new(probe(94.3, 90.0, 60.0, 52.0), sizes, 0.05, Some(1.0), None);
        assert!(t.heldout_drop <= 90.0 && t.retain_drop <= 60.0, "{t:?}");
    }

    /// The well-generalising model: forget 90.8 vs held-out 88.8
    /// on 600 and 500 samples is within the noise; kept before any epoch.
    #[test]
    fn an_original_within_the_noise_is_kept_before_any_epoch() {
        let o = probe(90.8, 88.8, 99.0, 52.0);
        let t = targets(o);
        assert!((t.noise - 1.82).abs() < 0.02, "{}", t.noise);
        assert_eq!(t.verdict(&o), Verdict::Reached);
        let c = Candidate {
            reached: true,
            ..t.judge(Rule::Accuracy, o)
        };
        let text = t.verdict_text(&c);
        assert!(
            text.starts_with("not detectably memorised at this sample size"),
            "{text}"
        );
        assert!(
            text.contains("+2.0 ± 3.6") && text.contains("52.0 (50 ± 3.4)"),
            "{text}"
        );
        // Its membership signal alone can refuse it: the test is two-sided.
        assert_eq!(t.verdict(&probe(90.8, 88.8, 99.0, 56.0)), Verdict::Under);
    }

    /// Issue 35, item 3: where reference models exist, RMIA's AUC is the
    /// membership test (with the same null band at the sizes), and the
    /// loss-based AUC only reported: a model whose losses look unseen but
    /// whose RMIA still finds the forget set is not kept, and one whose
    /// loss-AUC is noisy but whose RMIA is at 50 is.
    #[test]
    fn rmia_where_measured_is_the_membership_test() {
        let loss_quiet = with_rmia(probe(90.8, 88.8, 99.0, 51.0), 58.0);
        let t = targets(loss_quiet);
        assert_eq!(loss_quiet.signal(), Membership::Rmia);
        assert_eq!(t.verdict(&probe(90.8, 88.8, 99.0, 51.0)), Verdict::Reached);
        assert_eq!(t.verdict(&loss_quiet), Verdict::Under);
        let c = t.judge(Rule::Accuracy, loss_quiet);
        assert!(!c.reached);
        assert!(t.describe(&loss_quiet).contains("RMIA AUC 58.0 (50 ± 3.4)"));
        // Below 50 by more than the band: over-unlearned by RMIA, whatever
        // the loss-AUC says.
        let past = with_rmia(probe(88.0, 88.8, 99.0, 50.0), 45.0);
        assert!(!t.membership_ok(&past));
        assert_eq!(t.verdict(&past), Verdict::Over);
        let rmia_quiet = with_rmia(probe(90.8, 88.8, 99.0, 58.0), 51.0);
        let t = targets(rmia_quiet);
        assert_eq!(t.verdict(&rmia_quiet), Verdict::Reached);
        assert!(
            t.verdict_text(&t.judge(Rule::Accuracy, rmia_quiet))
                .starts_with("not detectably memorised")
        );
        // The mia rule scores the signal in use.
        assert_eq!(score(Rule::Mia, &rmia_quiet, &rmia_quiet), 1.0);
        // Before → after shows both, RMIA first, each with its band.
        let ch = t.changes(&with_rmia(probe(88.0, 88.6, 99.0, 55.0), 50.5));
        let names: Vec<&str> = ch.iter().map(|c| c.measure.as_str()).collect();
        assert_eq!(
            &names[names.len() - 2..],
            &[
                "RMIA AUC forget vs held-out %",
                "loss AUC forget vs held-out %"
            ]
        );
        assert_eq!(
            (ch[ch.len() - 2].before, ch[ch.len() - 2].after),
            (51.0, 50.5)
        );
        // Without references: the loss-based signal, and no RMIA line.
        let o = probe(90.8, 88.8, 99.0, 51.0);
        assert_eq!(o.signal(), Membership::Loss);
        assert!(
            targets(o)
                .changes(&o)
                .iter()
                .all(|c| !c.measure.starts_with("RMIA"))
        );
    }

    #[test]
    fn before_and_after_carry_their_bands() {
        let o = probe(100.0, 60.0, 99.0, 85.0);
        let t = targets(o);
        let ch = t.changes(&probe(62.0, 59.0, 98.8, 51.0));
        let lines: Vec<String> = ch.iter().map(Change::line).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].starts_with("forget accuracy %: 100.0 → 62.0 (target 60.0, ±4.6"),
            "{lines:?}"
        );
        assert!(lines[1].contains("may lose"), "{lines:?}");
        assert!(
            lines[3].contains("85.0 → 51.0") && lines[3].contains("null band"),
            "{lines:?}"
        );
        let c = Candidate {
            lr: 0.1,
            epoch: 1,
            score: 9.0,
            ..t.judge(Rule::Accuracy, probe(50.0, 50.0, 90.0, 40.0))
        };
        // An over-unlearned state never beats an admissible one, whatever
        // its score.
        let ok = Candidate {
            membership_ok: true,
            keeps_utility: true,
            ..c.clone()
        };
        let bad = Candidate {
            membership_ok: false,
            keeps_utility: true,
            score: 0.0,
            ..c
        };
        assert!(better(&ok, &bad) && !better(&bad, &ok));
    }
}
