//! l1-sparse (Jia et al., NeurIPS 2023): FT on D_R plus α‖θ‖₁, α decayed
//! linearly to 0 over the epochs (α at epoch e = α0 · (1 − e/E)). Defaults of
//! its code: α0 5e-4, lr 0.01, 10 epochs, constant.
use super::{Entry, FineTune, ForgetRequest, Method, RunCtx, UnlearnLog, finetune, settings_from};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::train::{Schedule, cross_entropy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L1Settings {
    pub finetune: FineTune,
    /// Initial weight of the L1 penalty.
    pub alpha: f64,
}

fn defaults() -> L1Settings {
    L1Settings {
        finetune: FineTune {
            schedule: Schedule::Constant,
            ..FineTune::amun()
        },
        alpha: 5e-4,
    }
}

struct L1Sparse(L1Settings);

pub const L1: Entry = Entry {
    name: "l1",
    summary: "l1-sparse: fine-tune on D_R plus an L1 penalty decayed linearly over the epochs",
    defaults: || serde_json::to_value(defaults()).expect("serialisable"),
    build: |v| {
        let s: L1Settings = settings_from("l1", &defaults(), v)?;
        s.finetune.check("l1")?;
        if !(s.alpha >= 0.0 && s.alpha.is_finite()) {
            return Err(Error::invalid(
                "l1.alpha",
                format!("must be ≥ 0, got {}", s.alpha),
            ));
        }
        Ok(Box::new(L1Sparse(s)))
    },
};

/// ‖θ‖₁ over the trainable parameters.
pub fn l1_norm(model: &Classifier) -> Tensor {
    let params = model.named_parameters();
    let parts: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.abs().sum(Kind::Float))
        .collect();
    Tensor::stack(&parts, 0).sum(Kind::Float)
}

impl Method for L1Sparse {
    fn name(&self) -> &'static str {
        "l1"
    }

    fn settings(&self) -> Value {
        serde_json::to_value(&self.0).expect("serialisable")
    }

    fn requires_retain(&self) -> Option<&'static str> {
        Some("it fine-tunes on D_R alone (with an L1 penalty)")
    }

    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &self.0.finetune;
        let retain = super::retain_of(req, "l1")?;
        let set = super::indices_set(req.train, "retain", retain, ft.augment_on(ctx, req.train));
        let (alpha, epochs) = (self.0.alpha, ft.epochs as f64);
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
                "l1",
            )
        })?;
        Ok(log)
    }
}
