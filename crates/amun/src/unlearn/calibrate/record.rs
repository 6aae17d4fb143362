//! What a calibration record holds: the measured states, the legs of the
//! walk, before → after with the bands, and the choice with its reasons.
use super::settings::CalibrateSettings;
use super::walk::{BatchCap, CapOrigin, CostCap};
#[cfg(doc)]
use super::{accuracy_noise, auc_se, utility_drop};
use crate::train::Schedule;
use serde::{Deserialize, Serialize};

/// Which membership score calibration tests against 50 (issue 35).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Membership {
    /// AUC of the state's forget losses against its held-out losses: needs
    /// no reference model.
    #[default]
    Loss,
    /// AUC of the audit's RMIA scores, forget against held-out, with the
    /// reference models of the model's data: the strongest retrain-free
    /// signal, used wherever references exist.
    Rmia,
}

impl Membership {
    /// How reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Membership::Loss => "loss-AUC",
            Membership::Rmia => "RMIA AUC",
        }
    }
}

/// What one model state looks like from the outside (percent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub forget_acc: f64,
    pub heldout_acc: f64,
    pub retain_acc: f64,
    /// AUC (%) of "forget losses are lower than held-out losses", both of
    /// the state measured (as an attacker sees the model): 50 when they
    /// look alike, above when still member-like, below when unlearned past
    /// unseen data. Its target, 50, is fixed; its reference is not the
    /// original's held-out losses, because fine-tuning rescales every loss
    /// (FT on MNIST at lr 0.1 took it from 50.0 to 45.1 against the
    /// original's with forget accuracy still 100%: docs/CALIBRATION.md).
    pub loss_auc: f64,
    /// Kolmogorov–Smirnov distance (points) of true-class confidences.
    pub confidence_ks: f64,
    /// AUC (%) of the audit's RMIA scores, forget against held-out (the
    /// held-out set as RMIA's population), when reference models exist:
    /// then it, not `loss_auc`, is the membership signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmia_auc: Option<f64>,
}

impl Probe {
    /// The membership signal this probe carries: RMIA where measured.
    pub fn signal(&self) -> Membership {
        match self.rmia_auc {
            Some(_) => Membership::Rmia,
            None => Membership::Loss,
        }
    }

    /// The membership AUC (%) every test and rule uses: [`Probe::signal`]'s.
    pub fn membership_auc(&self) -> f64 {
        self.rmia_auc.unwrap_or(self.loss_auc)
    }
}

/// One measured state of a calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// 0 for the original model.
    pub lr: f64,
    /// Epochs of fine-tuning (0: the original model).
    pub epoch: usize,
    /// The schedule, when calibration replaced the method's own (its
    /// relaxed pass); absent: the method's schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// The continuing walk's way here: each leg's constant rate and
    /// epochs, in order (empty for a state of one run from the original).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<Leg>,
    pub probe: Probe,
    /// The rule's distance (lower is better).
    pub score: f64,
    /// Whether held-out and retain accuracy stayed within the allowed drop.
    pub keeps_utility: bool,
    /// Whether the loss-based membership AUC stayed above 50 − the band: a
    /// forget set *less* member-like than unseen data is as telling as one
    /// still memorised, and no retrained model shows it.
    #[serde(default = "passes")]
    pub membership_ok: bool,
    /// Whether every test passed: forget accuracy and loss-AUC within
    /// their bands of the fixed targets, utility kept.
    #[serde(default)]
    pub reached: bool,
}

fn passes() -> bool {
    true
}

/// A stretch of the continuing walk at one constant rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    pub lr: f64,
    pub epochs: usize,
}

impl Candidate {
    /// How reports name this state: "original kept", "lr 0.1, epoch 3",
    /// "lr 0.1 constant, epoch 3" or "lr 0.01 ×1 → lr 0.03 ×2 epochs".
    pub fn label(&self) -> String {
        if self.epoch > 0 && !self.path.is_empty() {
            let legs: Vec<String> = self
                .path
                .iter()
                .map(|l| format!("lr {} ×{}", l.lr, l.epochs))
                .collect();
            return format!("{} epochs", legs.join(" → "));
        }
        match (self.epoch, &self.schedule) {
            (0, _) => "original kept".into(),
            (e, None) => format!("lr {}, epoch {e}", self.lr),
            (e, Some(s)) => format!("lr {} {s}, epoch {e}", self.lr),
        }
    }

    /// Whether it may be chosen: utility kept and not over-unlearned by the
    /// membership signal.
    pub(super) fn admissible(&self) -> bool {
        self.keeps_utility && self.membership_ok
    }
}

/// One measured number before (the original) and after (the chosen state)
/// calibration, with its noise band at the sample sizes and the level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub measure: String,
    pub before: f64,
    pub after: f64,
    /// What calibration aims at: the original's held-out accuracy for the
    /// forget set, the original's own value for held-out and retain
    /// accuracy, 50 for the loss-AUC.
    pub target: f64,
    /// ± this much around the target is sampling noise at the level.
    pub band: f64,
    /// For held-out and retain accuracy: the utility guard, how far below
    /// the target a kept state may be (noise + the cost of forgetting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<f64>,
}

impl Change {
    /// "forget accuracy %: 90.8 → 86.0 (target 88.8 ± 3.6)".
    pub fn line(&self) -> String {
        let tail = match self.guard {
            Some(g) => format!(
                "noise ±{:.1}, may lose {g:.1} against {:.1}",
                self.band, self.target
            ),
            None => format!(
                "target {:.1}, ±{:.1} is the null band at these sample sizes",
                self.target, self.band
            ),
        };
        format!(
            "{}: {:.1} → {:.1} ({tail})",
            self.measure, self.before, self.after
        )
    }
}

/// What a calibration chose, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub settings: CalibrateSettings,
    pub chosen: Candidate,
    /// Every state measured, in order.
    pub table: Vec<Candidate>,
    pub epochs_run: usize,
    /// The worst case of this walk, in epochs.
    pub epochs_worst_case: usize,
    pub seconds: f64,
    /// Standard error (points) of forget accuracy minus the original's
    /// held-out accuracy ([`accuracy_noise`]).
    pub noise: f64,
    /// How far forget accuracy may be from its target (z × `noise`).
    #[serde(default)]
    pub accuracy_band: f64,
    /// The held-out utility guard applied (points; [`utility_drop`]).
    #[serde(default)]
    pub allowed_drop: f64,
    /// The retain utility guard applied (points; [`utility_drop`]).
    #[serde(default)]
    pub retain_drop: f64,
    /// How far from 50 a state's membership AUC may be (points; z ×
    /// [`auc_se`]).
    #[serde(default)]
    pub auc_band: f64,
    /// The membership signal tested: RMIA where reference models exist,
    /// else the loss-based one.
    #[serde(default)]
    pub signal: Membership,
    pub heldout_size: usize,
    #[serde(default)]
    pub forget_size: usize,
    /// The original model's probe, measured once before the first epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Probe>,
    /// Before → after of every measured number, with its band.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Where the chosen state stands, in words and numbers.
    #[serde(default)]
    pub verdict: String,
    /// The chosen state still remembers the forget set detectably (no
    /// state forgot it within the utility guard): no deletion was done.
    /// Left out of the record when false, so records keep their identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remembers: bool,
    /// What the walk cost against its cap, when `max_cost` applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostCap>,
    pub why: String,
}

impl Calibration {
    /// Records that this walk's cap is its request's share of a registry
    /// apply's cap `b` (when the walk had a cap): the record then says where
    /// the cap came from and what the batch was allowed.
    pub fn record_batch_cap(&mut self, b: BatchCap) {
        let Some(c) = self.cost.as_mut() else { return };
        c.batch = Some(b);
        let from = match b.origin {
            CapOrigin::Default => "the apply's default cap",
            CapOrigin::Given => "the apply's cap as given",
        };
        self.why.push_str(&format!(
            "; the cap is this request's share of {from}, {}× the exact retrain the batch \
             replaces",
            b.fraction
        ));
    }
}
