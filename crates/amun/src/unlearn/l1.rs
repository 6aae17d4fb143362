//! l1-sparse (Jia et al., NeurIPS 2023): FT on D_R plus α‖θ‖₁, α decayed
//! linearly to 0 over the epochs (α at epoch e = α0 · (1 − e/E)). Defaults of
//! its code: α0 5e-4, lr 0.01, 10 epochs, constant.
use super::{
    FineTune, ForgetRequest, MethodDef, RunCtx, Settings, UnlearnLog, finetune, finetune_field,
};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::train::cross_entropy;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L1Settings {
    pub finetune: FineTune,
    /// Initial weight of the L1 penalty.
    pub alpha: f64,
}

impl Settings for L1Settings {
    finetune_field!();
    fn check_own(&self, method: &str) -> Result<()> {
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(Error::invalid(
                format!("{method}.alpha"),
                format!("must be ≥ 0, got {}", self.alpha),
            ));
        }
        Ok(())
    }
}

/// ‖θ‖₁ over the trainable parameters.
pub fn l1_norm(model: &Classifier) -> Tensor {
    let params = model.named_parameters();
    let parts: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.abs().sum(Kind::Float))
        .collect();
    Tensor::stack(&parts, 0).sum(Kind::Float)
}

/// l1-sparse's definition.
pub struct L1;

impl MethodDef for L1 {
    const NAME: &'static str = "l1";
    const SUMMARY: &'static str =
        "l1-sparse: fine-tune on D_R plus an L1 penalty decayed linearly over the epochs";
    type Settings = L1Settings;

    fn defaults() -> L1Settings {
        L1Settings {
            finetune: FineTune {
                ..FineTune::amun().constant()
            },
            alpha: 5e-4,
        }
    }

    fn requires_retain() -> Option<&'static str> {
        Some("it fine-tunes on D_R alone (with an L1 penalty)")
    }

    fn unlearn(
        s: &L1Settings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &s.finetune;
        let retain = super::retain_of(req, Self::NAME)?;
        let set = super::retain_set(
            req.train,
            retain,
            ft,
            req.forget.len(),
            ft.augment_on(ctx, req.train),
        );
        let (alpha, epochs) = (s.alpha, ft.epochs as f64);
        let mut log = UnlearnLog::default();
        log.epochs = log.time("fine_tune", || {
            finetune(
                model,
                &set,
                ft,
                None,
                &mut |epoch, m, l, b| {
                    cross_entropy(l, &b.y) + l1_norm(m) * (alpha * (1.0 - epoch as f64 / epochs))
                },
                ctx,
                Self::NAME,
            )
        })?;
        Ok(log)
    }
}
