//! BS (Boundary Shrink, Chen et al., CVPR 2023): relabel each forget sample
//! with the prediction after an FGSM-sign step of size `bound` (0.1) taken on
//! a frozen copy of the model — its nearest wrong class — then fine-tune on
//! D_F with those labels. Defaults of the paper's code: lr 1e-5, 10 epochs.
use super::{Entry, FineTune, ForgetRequest, Method, RunCtx, UnlearnLog, finetune, settings_from};
use crate::attack::fgsm_predictions;
use crate::data::{Augment, Part, TrainSet};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::train::{Schedule, cross_entropy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BsSettings {
    pub finetune: FineTune,
    /// FGSM step size (L∞ bound) in `[0,1]` pixel units.
    pub bound: f64,
}

fn defaults() -> BsSettings {
    BsSettings {
        finetune: FineTune {
            lr: 1e-5,
            schedule: Schedule::Constant,
            ..FineTune::amun()
        },
        bound: 0.1,
    }
}

struct Bs(BsSettings);

pub const BS: Entry = Entry {
    name: "bs",
    summary: "boundary shrink: relabel D_F by an FGSM step (bound 0.1) on a frozen copy, fine-tune",
    defaults: || serde_json::to_value(defaults()).expect("serialisable"),
    build: |v| {
        let s: BsSettings = settings_from("bs", &defaults(), v)?;
        s.finetune.check("bs")?;
        if !(s.bound > 0.0 && s.bound.is_finite()) {
            return Err(Error::invalid(
                "bs.bound",
                format!("must be positive, got {}", s.bound),
            ));
        }
        Ok(Box::new(Bs(s)))
    },
};

impl Method for Bs {
    fn name(&self) -> &'static str {
        "bs"
    }

    fn settings(&self) -> Value {
        serde_json::to_value(&self.0).expect("serialisable")
    }

    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &self.0.finetune;
        let mut log = UnlearnLog::default();
        let forget = req.train.select(req.forget);
        let labels = log.time("boundary_labels", || {
            let frozen = model.try_clone()?;
            Ok(fgsm_predictions(
                &frozen,
                &forget.images,
                &forget.labels,
                self.0.bound,
                ft.batch_size,
            ))
        })?;
        let part = Part {
            name: "forget-shrunk".into(),
            images: forget.images,
            labels: Tensor::from_slice(&labels).to_device(req.train.labels.device()),
            augment: ft.augment_on(ctx, req.train),
            origin: req.forget.to_vec(),
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
                "bs",
            )
        })?;
        Ok(log)
    }
}
