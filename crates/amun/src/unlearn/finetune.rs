//! The fine-tuning settings most methods share, and the loop they run.
use super::{RunCtx, SaliencyMask};
use crate::data::{Batch, TrainSet};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::model::checkpoint::EpochRecord;
use crate::seed::derive;
use crate::train::{EpochConfig, Schedule, Sgd, sgd_epoch};
use serde::{Deserialize, Serialize};
use tch::Tensor;

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
}

impl FineTune {
    /// The spec's AMUN fine-tuning: SGD momentum 0.9, wd 5e-4, batch 128,
    /// 10 epochs, lr 0.01, ×0.1 every epoch.
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
    for epoch in 0..ft.epochs {
        let lr = |i: usize| ft.schedule.lr(ft.lr, epoch, i, iters, ft.epochs);
        let cfg = EpochConfig {
            label,
            epoch,
            batch_size: ft.batch_size,
            seed: derive(ctx.seed, label, epoch as u64),
            bf16: false,
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
        });
        if !ctx.epoch_done(epoch + 1, model)? {
            break;
        }
    }
    Ok(log)
}
