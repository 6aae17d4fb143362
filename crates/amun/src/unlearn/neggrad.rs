//! NegGrad+ (Kurmanji et al., NeurIPS 2023): each step descends on a D_R
//! batch and ascends on a D_F batch, weighted: β·CE(D_R) − (1 − β)·CE(D_F).
//! Defaults: β 0.999, lr 0.01, 5 epochs, constant.
use super::{
    FineTune, ForgetRequest, MethodDef, RunCtx, Settings, UnlearnLog, finetune, finetune_field,
};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::seed::derive;
use crate::train::cross_entropy;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegGradSettings {
    pub finetune: FineTune,
    /// Weight of the retain loss; 1 − beta weighs the forget ascent.
    pub beta: f64,
}

impl Settings for NegGradSettings {
    finetune_field!();
    fn check_own(&self, method: &str) -> Result<()> {
        if !(0.0..=1.0).contains(&self.beta) {
            return Err(Error::invalid(
                format!("{method}.beta"),
                format!("must lie in [0,1], got {}", self.beta),
            ));
        }
        Ok(())
    }
}

/// NegGrad+'s definition.
pub struct NegGrad;

impl MethodDef for NegGrad {
    const NAME: &'static str = "neggrad+";
    const SUMMARY: &'static str =
        "descent on D_R and ascent on D_F in every step, weighted β and 1 − β";
    type Settings = NegGradSettings;

    fn defaults() -> NegGradSettings {
        NegGradSettings {
            finetune: FineTune {
                epochs: 5,
                ..FineTune::amun().constant()
            },
            beta: 0.999,
        }
    }

    fn requires_retain() -> Option<&'static str> {
        Some("its descent half runs on D_R (without D_R it is plain GA)")
    }

    fn unlearn(
        s: &NegGradSettings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &s.finetune;
        let beta = s.beta;
        let retain = super::retain_of(req, Self::NAME)?;
        let retain = super::retain_set(
            req.train,
            retain,
            ft,
            req.forget.len(),
            ft.augment_on(ctx, req.train),
        );
        let forget = super::indices_set(
            req.train,
            "forget",
            req.forget,
            ft.augment_on(ctx, req.train),
        );
        // D_F batches cycle alongside the D_R epoch, each cycle reshuffled.
        let mut cycle = 0u64;
        let mut it = forget.epoch(ft.batch_size, derive(ctx.seed, "neggrad-forget", cycle));
        let mut log = UnlearnLog::default();
        // The D_F batches are image-steps too, per epoch.
        let mut forget_images: Vec<usize> = Vec::new();
        log.epochs = log.time("fine_tune", || {
            finetune(
                model,
                &retain,
                ft,
                None,
                &mut |epoch, m, logits, b| {
                    let fb = it.next().unwrap_or_else(|| {
                        cycle += 1;
                        it = forget.epoch(ft.batch_size, derive(ctx.seed, "neggrad-forget", cycle));
                        it.next().expect("non-empty forget set")
                    });
                    if let Some(f) = ctx.observe {
                        f(&fb);
                    }
                    if forget_images.len() <= epoch {
                        forget_images.resize(epoch + 1, 0);
                    }
                    forget_images[epoch] += fb.origin.len();
                    let fl = m.forward_t(&fb.x, true);
                    cross_entropy(logits, &b.y) * beta - cross_entropy(&fl, &fb.y) * (1.0 - beta)
                },
                ctx,
                Self::NAME,
            )
        })?;
        for (r, extra) in log.epochs.iter_mut().zip(forget_images) {
            r.images += extra;
        }
        Ok(log)
    }
}
