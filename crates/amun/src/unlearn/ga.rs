//! GA (gradient ascent): maximise the cross-entropy on D_F; with D_R, each
//! epoch also makes a descent pass over D_R. Defaults as in the l1-sparse
//! code: 5 epochs, lr 1e-4, constant.
use super::{FineTune, ForgetRequest, MethodDef, RunCtx, Settings, UnlearnLog, finetune_field};
use crate::data::TrainSet;
use crate::error::Result;
use crate::model::Classifier;
use crate::model::checkpoint::EpochRecord;
use crate::seed::derive;
use crate::train::{EpochConfig, Sgd, cross_entropy, sgd_epoch};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaSettings {
    pub finetune: FineTune,
}

impl Settings for GaSettings {
    finetune_field!();
}

/// GA's definition.
pub struct Ga;

impl MethodDef for Ga {
    const NAME: &'static str = "ga";
    const SUMMARY: &'static str =
        "gradient ascent on D_F (with D_R: plus a descent pass over D_R each epoch)";
    type Settings = GaSettings;

    fn defaults() -> GaSettings {
        GaSettings {
            finetune: FineTune {
                epochs: 5,
                lr: 1e-4,
                ..FineTune::amun().constant()
            },
        }
    }

    fn unlearn(
        s: &GaSettings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &s.finetune;
        let forget = super::indices_set(
            req.train,
            "forget",
            req.forget,
            ft.augment_on(ctx, req.train),
        );
        let retain = req.retain.map(|r| {
            super::retain_set(
                req.train,
                r,
                ft,
                req.forget.len(),
                ft.augment_on(ctx, req.train),
            )
        });
        let mut opt = Sgd::new(model, ft.momentum, ft.weight_decay, false);
        let mut log = UnlearnLog::default();
        let t = Instant::now();
        for epoch in 0..ft.epochs_to_run().0 {
            let mut images = 0;
            let passes: [(&str, Option<&TrainSet>, f64); 2] = [
                ("ga-ascent", Some(&forget), -1.0),
                ("ga-descent", retain.as_ref(), 1.0),
            ];
            for (label, set, sign) in passes {
                let Some(set) = set else { continue };
                let iters = set.batches_per_epoch(ft.batch_size);
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
                    &mut |_, l, b| cross_entropy(l, &b.y) * sign,
                    ctx.progress,
                )?;
                images += s.images;
                if sign < 0.0 {
                    log.epochs.push(EpochRecord {
                        epoch: epoch + 1,
                        loss: -s.loss,
                        train_acc: s.acc,
                        test_acc: None,
                        lr: s.lr,
                        seconds: s.seconds,
                        images_per_s: s.images as f64 / s.seconds.max(1e-9),
                        images: 0,
                    });
                }
            }
            // The record is the epoch: both passes are its cost.
            if let Some(r) = log.epochs.last_mut() {
                r.images = images;
            }
            if !ctx.epoch_done(epoch + 1, model)? {
                break;
            }
        }
        log.timing
            .insert("fine_tune".into(), t.elapsed().as_secs_f64());
        Ok(log)
    }
}
