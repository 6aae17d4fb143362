//! FT: fine-tune on the retain set only (catastrophic forgetting of D_F).
//! Defaults as in the l1-sparse and SalUn code: 10 epochs, lr 0.01, constant.
use super::{
    FineTune, ForgetRequest, MethodDef, RunCtx, Settings, UnlearnLog, finetune, finetune_field,
};
use crate::error::Result;
use crate::model::Classifier;
use crate::train::cross_entropy;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtSettings {
    pub finetune: FineTune,
}

impl Settings for FtSettings {
    finetune_field!();
}

/// FT's definition.
pub struct Ft;

impl MethodDef for Ft {
    const NAME: &'static str = "ft";
    const SUMMARY: &'static str = "fine-tune on D_R only";
    type Settings = FtSettings;

    fn defaults() -> FtSettings {
        FtSettings {
            finetune: FineTune {
                ..FineTune::amun().constant()
            },
        }
    }

    fn requires_retain() -> Option<&'static str> {
        Some("it trains on D_R alone, so without D_R there is nothing to train on")
    }

    fn unlearn(
        s: &FtSettings,
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
        let mut log = UnlearnLog::default();
        log.epochs = log.time("fine_tune", || {
            finetune(
                model,
                &set,
                ft,
                None,
                &mut |_, _, l, b| cross_entropy(l, &b.y),
                ctx,
                Self::NAME,
            )
        })?;
        Ok(log)
    }
}
