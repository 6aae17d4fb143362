//! BS (Boundary Shrink, Chen et al., CVPR 2023): relabel each forget sample
//! with the prediction after an FGSM-sign step of size `bound` (0.1) taken on
//! a frozen copy of the model — its nearest wrong class — then fine-tune on
//! D_F with those labels. Defaults of the paper's code: lr 1e-5, 10 epochs.
use super::{
    FineTune, ForgetRequest, MethodDef, RunCtx, Settings, UnlearnLog, finetune, finetune_field,
};
use crate::attack::fgsm_predictions;
use crate::data::{Augment, Part, TrainSet};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::train::cross_entropy;
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BsSettings {
    pub finetune: FineTune,
    /// FGSM step size (L∞ bound) in `[0,1]` pixel units.
    pub bound: f64,
}

impl Settings for BsSettings {
    finetune_field!();
    fn check_own(&self, method: &str) -> Result<()> {
        if !(self.bound > 0.0 && self.bound.is_finite()) {
            return Err(Error::invalid(
                format!("{method}.bound"),
                format!("must be positive, got {}", self.bound),
            ));
        }
        Ok(())
    }
}

/// Boundary Shrink's definition.
pub struct Bs;

impl MethodDef for Bs {
    const NAME: &'static str = "bs";
    const SUMMARY: &'static str =
        "boundary shrink: relabel D_F by an FGSM step (bound 0.1) on a frozen copy, fine-tune";
    type Settings = BsSettings;

    fn defaults() -> BsSettings {
        BsSettings {
            finetune: FineTune {
                lr: 1e-5,
                ..FineTune::amun().constant()
            },
            bound: 0.1,
        }
    }

    fn unlearn(
        s: &BsSettings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &s.finetune;
        let mut log = UnlearnLog::default();
        let forget = req.train.select(req.forget);
        let labels = log.time("boundary_labels", || {
            let frozen = model.try_clone()?;
            Ok(fgsm_predictions(
                &frozen,
                &forget.images,
                &forget.labels,
                s.bound,
                ft.batch_size,
            ))
        })?;
        let part = Part {
            name: "forget-shrunk".into(),
            images: forget.images,
            labels: Tensor::from_slice(&labels).to_device(req.train.labels.device()),
            augment: ft.augment_on(ctx, req.train),
            origin: req.forget.to_vec(),
            draw: None,
        };
        let set = TrainSet::single(part, Augment::CROP_FLIP);
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
