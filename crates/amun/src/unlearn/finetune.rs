//! The fine-tuning settings most methods share, and the loop they run.
use super::{RunCtx, SaliencyMask};
use crate::data::{Batch, Part, TrainSet};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::model::checkpoint::EpochRecord;
use crate::seed::derive;
pub use crate::train::RetainBudget;
use crate::train::{EpochConfig, Schedule, Sgd, TrainOverrides, sgd_epoch};
use serde::{Deserialize, Serialize};
use tch::Tensor;

fn full() -> RetainBudget {
    RetainBudget::Full
}

fn every_epoch() -> Option<f64> {
    Some(0.0)
}

/// The stop floor of a decaying schedule when none is given: 1% of `lr`.
pub const STOP_BELOW: f64 = 0.01;

/// The arithmetic of a fine-tune's forward passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// bf16 autocast on CUDA, fp32 on the CPU: there bf16 fine-tunes ran
    /// 1.46× faster but unlearned worse on both seeds of the demo's slice
    /// (Avg. Gap +0.28 and +0.17; docs/PERFORMANCE.md), and quality comes
    /// first.
    #[default]
    Auto,
    Fp32,
    /// bf16 autocast for the forward pass (matmuls and convolutions in
    /// bf16, losses and reductions in fp32).
    Bf16,
}

impl Precision {
    /// Whether a fine-tune on `device` runs under bf16 autocast.
    pub fn bf16_on(self, device: tch::Device) -> bool {
        match self {
            Precision::Auto => device.is_cuda(),
            Precision::Fp32 => false,
            Precision::Bf16 => true,
        }
    }
}

/// SGD fine-tuning settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FineTune {
    pub epochs: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub schedule: Schedule,
    /// Crop (padding 4) + flip on the original training data (the spec: it
    /// "keeps its augmentation"); adversarial examples are never augmented.
    /// Unset: as the original model was trained (its sidecar's recipe), or
    /// for a model of unknown recipe, on for colour images and off for
    /// one-channel ones. Serialised as `null` when unset, so that
    /// `finetune.augment` is a known setting to override.
    #[serde(default)]
    pub augment: Option<bool>,
    /// How much of D_R each epoch visits (methods that use D_R).
    #[serde(default = "full")]
    pub retain_budget: RetainBudget,
    /// The fewest D_R images a budgeted epoch visits, whatever the
    /// request's size ([`RETAIN_FLOOR`] by default; absent in records made
    /// before it: 0, as they ran). Never less than one batch either: see
    /// [`FineTune::retain_per_epoch`].
    #[serde(default)]
    pub retain_floor: usize,
    /// The run ends before an epoch whose schedule starts below this
    /// fraction of `lr`: such epochs change the model by little at full
    /// price. 0 runs every epoch. Unset (`null`): [`STOP_BELOW`] where the
    /// schedule decays, none at a constant rate (where a floor would stop
    /// nothing): the baselines' default, so that their recorded settings
    /// are ones [`super::check_given`] accepts. Absent in records made
    /// before it: 0, as they ran.
    #[serde(default = "every_epoch")]
    pub stop_below: Option<f64>,
    /// fp32, bf16 autocast, or auto (bf16 on CUDA).
    #[serde(default)]
    pub precision: Precision,
}

/// The default [`FineTune::retain_floor`]: 1,024 images of D_R per epoch.
/// Measured at 1% forgotten (docs/PERFORMANCE.md, "The retain budget's
/// floor"): with 4 × the request alone (160 images of MNIST-5k's D_R, 80 of
/// a 2,000-image CIFAR-10 slice's) RL and SalUn collapse (test 97.6 → 81.7
/// and 77.2; 62.2 → 52.3 and 50.1); with ~1,000 images they stay within
/// 0.9 points of all of D_R on both (MNIST RL 95.9 vs 96.8, SalUn 96.3 vs
/// 96.6; CIFAR RL 59.8 vs 59.1, SalUn 60.9 vs 60.9). A request of 256 or
/// more samples is not affected (4 × 256 = 1,024). Every baseline that
/// visits D_R has it; AMUN, measured not to need it, has none.
pub const RETAIN_FLOOR: usize = 1024;

impl FineTune {
    /// The spec's AMUN fine-tuning: SGD momentum 0.9, wd 5e-4, batch 128,
    /// 10 epochs, lr 0.01, ×0.1 every epoch; D_R visited under a retain
    /// budget of 4 × the request per epoch, and no epoch run whose rate the
    /// schedule has put below 1% of its start (both chosen by measurement,
    /// docs/PERFORMANCE.md: no worse than all of D_R and every epoch beyond
    /// the seeds' spread, on a CIFAR-10 slice and MNIST). [`FineTune::paper`]
    /// is the paper's: all of D_R, every epoch.
    pub fn amun() -> FineTune {
        FineTune {
            epochs: 10,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            batch_size: 128,
            schedule: Schedule::Step {
                step: 1,
                gamma: 0.1,
            },
            augment: None,
            retain_budget: RetainBudget::Multiple(4.0),
            retain_floor: RETAIN_FLOOR,
            stop_below: Some(STOP_BELOW),
            precision: Precision::Auto,
        }
    }

    /// This fine-tuning with the paper's costs: all of D_R in every epoch,
    /// every epoch of the schedule run.
    pub fn paper(self) -> FineTune {
        FineTune {
            retain_budget: RetainBudget::Full,
            stop_below: Some(0.0),
            ..self
        }
    }

    /// This fine-tuning at a constant rate with the stop floor unset: the
    /// rate never falls, so a floor would stop nothing (and
    /// [`super::check_given`] refuses the pair when a user gives it), while
    /// a decaying schedule given later (`--schedule`, tuning) still gets
    /// [`STOP_BELOW`]. The baselines' defaults, as in the l1-sparse and
    /// SalUn code.
    pub fn constant(self) -> FineTune {
        FineTune {
            schedule: Schedule::Constant,
            stop_below: None,
            ..self
        }
    }

    /// The stop floor in force, a fraction of `lr` (see
    /// [`FineTune::stop_below`]).
    pub fn stop_floor(&self) -> f64 {
        match (self.stop_below, &self.schedule) {
            (Some(f), _) => f,
            (None, Schedule::Constant) => 0.0,
            (None, _) => STOP_BELOW,
        }
    }

    /// The epochs the schedule leaves at or above the `stop_below` floor
    /// (at least one), and why the run ends early when it does.
    pub fn epochs_to_run(&self) -> (usize, Option<String>) {
        let floor = self.stop_floor() * self.lr;
        let n = (1..self.epochs)
            .find(|&e| self.schedule.lr(self.lr, e, 0, 1, self.epochs) < floor)
            .unwrap_or(self.epochs);
        let why = (n < self.epochs).then(|| {
            format!(
                "stopped after {n} of {} epochs: the schedule ({}) starts epoch {} at {:.1e}, \
                 below the floor {:.1e} ({} × lr)",
                self.epochs,
                self.schedule,
                n + 1,
                self.schedule.lr(self.lr, n, 0, 1, self.epochs),
                floor,
                self.stop_floor()
            )
        });
        (n, why)
    }

    /// The D_R images an epoch visits for a request of `request` samples
    /// out of a retain set of `retain` (`None`: all of it): the budget, but
    /// at least the floor and at least one batch. A budget that rounds below
    /// a batch is raised rather than refused: AMUN's default (4 × the
    /// request, no floor) does so for requests under 16 samples, which are
    /// legitimate, while a draw of a few images leaves each epoch's steps
    /// without D_R's anchor (1 image an epoch: test 93.8 → 82.8, issue 37);
    /// one batch costs at most one SGD step more per epoch.
    pub fn retain_per_epoch(&self, request: usize, retain: usize) -> Option<usize> {
        self.retain_budget
            .count(request, retain, self.retain_floor.max(self.batch_size))
    }

    /// `part`'s rows from `retain` drawn afresh each epoch under the retain
    /// budget, for a request of `request` samples.
    pub fn budgeted(&self, part: Part, retain: &[i64], request: usize) -> Part {
        match self.retain_per_epoch(request, retain.len()) {
            Some(n) => part.drawing(retain, n),
            None => part,
        }
    }

    /// Whether the original training data is augmented: as set, else as
    /// the original model was trained, else on unless the images have one
    /// channel (flips corrupt digits).
    pub fn augment_on(&self, ctx: &RunCtx<'_>, train: &crate::data::Split) -> bool {
        self.augment
            .or(ctx.original_recipe.map(|r| r.augment))
            .unwrap_or_else(|| train.images.size().get(1).copied() != Some(1))
    }

    /// Replaces what `o` sets; refuses what a fine-tuning has no setting
    /// for (naming `method`).
    pub fn apply(&mut self, o: &TrainOverrides, method: &str) -> Result<()> {
        for (name, set) in [("bf16", o.bf16), ("channels_last", o.channels_last)] {
            if set.is_some() {
                return Err(Error::invalid(
                    format!("{method}.finetune.{name}"),
                    "fine-tuning has no such setting",
                ));
            }
        }
        let o = o.clone();
        self.epochs = o.epochs.unwrap_or(self.epochs);
        self.batch_size = o.batch_size.unwrap_or(self.batch_size);
        self.lr = o.lr.unwrap_or(self.lr);
        self.momentum = o.momentum.unwrap_or(self.momentum);
        self.weight_decay = o.weight_decay.unwrap_or(self.weight_decay);
        if let Some(s) = o.schedule {
            self.schedule = s;
        }
        if o.augment.is_some() {
            self.augment = o.augment;
        }
        if let Some(b) = o.retain_budget {
            self.retain_budget = b;
        }
        Ok(())
    }

    /// Validates the values (names the field at fault).
    pub fn check(&self, method: &str) -> Result<()> {
        let bad = |f: &str, m: String| Err(Error::invalid(format!("{method}.finetune.{f}"), m));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1, got 0".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(
                "momentum",
                format!("must lie in [0,1), got {}", self.momentum),
            );
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad(
                "weight_decay",
                format!("must be ≥ 0, got {}", self.weight_decay),
            );
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if let Some(f) = self.stop_below
            && !(0.0..1.0).contains(&f)
        {
            return bad("stop_below", format!("must lie in [0,1), got {f}"));
        }
        Ok(())
    }
}

/// A method's loss: `(epoch, model, logits of the batch, batch) → loss`.
pub type LossFn<'a> = dyn FnMut(usize, &Classifier, &Tensor, &Batch) -> Tensor + 'a;

/// Fine-tunes `model` on `set` for `ft.epochs` with `loss`, the gradient
/// masked by `mask` when given. `label` names the loop in progress bars and
/// errors, and its random stream (shuffling, augmentation).
pub fn finetune(
    model: &Classifier,
    set: &TrainSet,
    ft: &FineTune,
    mask: Option<&SaliencyMask>,
    loss: &mut LossFn<'_>,
    ctx: &RunCtx<'_>,
    label: &str,
) -> Result<Vec<EpochRecord>> {
    if set.is_empty() {
        return Err(Error::invalid(label, "nothing to train on"));
    }
    let mut opt = Sgd::new(model, ft.momentum, ft.weight_decay, false);
    if let Some(m) = mask {
        opt.set_grad_mask(&m.masks)?;
    }
    let iters = set.batches_per_epoch(ft.batch_size);
    let mut log = Vec::new();
    for epoch in 0..ft.epochs_to_run().0 {
        let lr = |i: usize| ft.schedule.lr(ft.lr, epoch, i, iters, ft.epochs);
        let cfg = EpochConfig {
            label,
            epoch,
            batch_size: ft.batch_size,
            seed: derive(ctx.seed, label, epoch as u64),
            bf16: ft.precision.bf16_on(model.device()),
            lr: &lr,
            observe: ctx.observe,
        };
        let s = sgd_epoch(
            model,
            &mut opt,
            set,
            &cfg,
            &mut |m, l, b| loss(epoch, m, l, b),
            ctx.progress,
        )?;
        log.push(EpochRecord {
            epoch: epoch + 1,
            loss: s.loss,
            train_acc: s.acc,
            test_acc: None,
            lr: s.lr,
            seconds: s.seconds,
            images_per_s: s.images as f64 / s.seconds.max(1e-9),
            images: s.images,
        });
        if !ctx.epoch_done(epoch + 1, model)? {
            break;
        }
    }
    Ok(log)
}
