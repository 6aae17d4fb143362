//! SCRUB (Kurmanji et al., NeurIPS 2023): the student (the model) moves away
//! from the frozen teacher (the original) on D_F in max-steps and stays close
//! to it — and correct — on D_R in min-steps. KL is Hinton's distillation KL
//! at temperature T (scaled by T²). Defaults of its code: 3 epochs, max-steps
//! in the first 2, lr 5e-4, T 4, min-step loss γ·CE + α·KL with γ 0.99, α 0.001.
use super::{FineTune, ForgetRequest, MethodDef, RunCtx, Settings, UnlearnLog, finetune_field};
use crate::data::TrainSet;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::model::checkpoint::EpochRecord;
use crate::seed::derive;
use crate::train::{EpochConfig, Sgd, cross_entropy, sgd_epoch};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubSettings {
    pub finetune: FineTune,
    /// Epochs (from the first) that begin with a max-step pass over D_F.
    pub max_epochs: usize,
    /// Batch size of the max-steps.
    pub forget_batch_size: usize,
    pub temperature: f64,
    /// Weight of KL in the min-step loss.
    pub alpha: f64,
    /// Weight of CE in the min-step loss.
    pub gamma: f64,
}

impl Settings for ScrubSettings {
    finetune_field!();
    fn check_own(&self, method: &str) -> Result<()> {
        if self.temperature.is_nan() || self.temperature <= 0.0 || self.forget_batch_size == 0 {
            return Err(Error::invalid(
                format!("{method}.temperature"),
                "temperature and forget_batch_size must be positive",
            ));
        }
        Ok(())
    }
}

/// Distillation KL(teacher ‖ student) at temperature `t`, × t², batch mean.
pub fn distill_kl(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let n = student.size()[0].max(1) as f64;
    let log_s = (student.to_kind(Kind::Float) / t).log_softmax(1, Kind::Float);
    let p_t = (teacher.to_kind(Kind::Float) / t).softmax(1, Kind::Float);
    log_s.kl_div(&p_t, Reduction::Sum, false) * (t * t / n)
}

/// SCRUB's definition.
pub struct Scrub;

impl MethodDef for Scrub {
    const NAME: &'static str = "scrub";
    const SUMMARY: &'static str = "teacher-student: max-steps raise KL to the original on D_F, min-steps keep KL + CE low on D_R";
    type Settings = ScrubSettings;

    fn defaults() -> ScrubSettings {
        ScrubSettings {
            finetune: FineTune {
                epochs: 3,
                lr: 5e-4,
                ..FineTune::amun().constant()
            },
            max_epochs: 2,
            forget_batch_size: 32,
            temperature: 4.0,
            alpha: 0.001,
            gamma: 0.99,
        }
    }

    fn requires_retain() -> Option<&'static str> {
        Some("its min-steps keep the model close to the original on D_R")
    }

    fn unlearn(
        s: &ScrubSettings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &s.finetune;
        let retain = super::retain_of(req, Self::NAME)?;
        let teacher = model.try_clone()?;
        let forget = super::indices_set(
            req.train,
            "forget",
            req.forget,
            ft.augment_on(ctx, req.train),
        );
        let retain = super::retain_set(
            req.train,
            retain,
            ft,
            req.forget.len(),
            ft.augment_on(ctx, req.train),
        );
        let teach = |x: &Tensor| tch::no_grad(|| teacher.forward_t(x, false));
        let mut opt = Sgd::new(model, ft.momentum, ft.weight_decay, false);
        let mut log = UnlearnLog::default();
        let t = Instant::now();
        for epoch in 0..ft.epochs_to_run().0 {
            let mut passes: Vec<(&str, &TrainSet, usize)> = Vec::new();
            if epoch < s.max_epochs {
                passes.push(("scrub-max", &forget, s.forget_batch_size));
            }
            passes.push(("scrub-min", &retain, ft.batch_size));
            for (label, set, bs) in passes {
                let iters = set.batches_per_epoch(bs);
                let lr = |i: usize| ft.schedule.lr(ft.lr, epoch, i, iters, ft.epochs);
                let cfg = EpochConfig {
                    label,
                    epoch,
                    batch_size: bs,
                    seed: derive(ctx.seed, label, epoch as u64),
                    bf16: ft.precision.bf16_on(model.device()),
                    lr: &lr,
                    observe: ctx.observe,
                };
                let max = label == "scrub-max";
                let stats = sgd_epoch(
                    model,
                    &mut opt,
                    set,
                    &cfg,
                    &mut |_, logits, b| {
                        let kl = distill_kl(logits, &teach(&b.x), s.temperature);
                        if max {
                            -kl
                        } else {
                            cross_entropy(logits, &b.y) * s.gamma + kl * s.alpha
                        }
                    },
                    ctx.progress,
                )?;
                log.epochs.push(EpochRecord {
                    epoch: epoch + 1,
                    loss: stats.loss,
                    train_acc: stats.acc,
                    test_acc: None,
                    lr: stats.lr,
                    seconds: stats.seconds,
                    images_per_s: stats.images as f64 / stats.seconds.max(1e-9),
                    images: stats.images,
                });
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
