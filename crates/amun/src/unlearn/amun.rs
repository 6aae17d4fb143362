//! AMUN (Adversarial Machine UNlearning, ICML 2025): fine-tune on the forget
//! samples together with their nearest adversarial examples (D_A, labelled
//! with the model's own wrong predictions). With the retain set: on
//! D_R ∪ D_F ∪ D_A; without: on D_F ∪ D_A; `adv_only`: D_R ∪ D_A (or D_A).
//! The training data keeps its crop+flip augmentation; D_A does not.
//! AMUN+SalUn multiplies every gradient by the saliency mask of D_F.
use super::{
    Entry, FineTune, ForgetRequest, Method, RunCtx, UnlearnLog, finetune, saliency_mask,
    settings_from, union_sorted,
};
use crate::attack::AdvSettings;
use crate::data::{Augment, Part, TrainSet};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::train::cross_entropy;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::Kind;

/// AMUN's settings.
///
/// | field | default | meaning |
/// |---|---|---|
/// | finetune | SGD 0.9, wd 5e-4, batch 128, 10 epochs, lr 0.01, `step:1:0.1` | the fine-tuning |
/// | adv_only | false | drop D_F from the mix (helps for very large D_F) |
/// | attack | L2 PGD, ε0 0.04, 50 steps/round | how D_A is found |
/// | salun_ratio | none (AMUN), 0.5 (AMUN+SalUn) | fraction of weights the mask frees |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmunSettings {
    pub finetune: FineTune,
    pub adv_only: bool,
    pub attack: AdvSettings,
    pub salun_ratio: Option<f64>,
}

fn defaults(salun: Option<f64>) -> AmunSettings {
    AmunSettings {
        finetune: FineTune::amun(),
        adv_only: false,
        attack: AdvSettings::default(),
        salun_ratio: salun,
    }
}

struct Amun {
    name: &'static str,
    s: AmunSettings,
}

fn build(name: &'static str, salun: Option<f64>, v: &Value) -> Result<Box<dyn Method>> {
    let s: AmunSettings = settings_from(name, &defaults(salun), v)?;
    s.finetune.check(name)?;
    crate::attack::AdvParams::from_settings(s.attack.clone()).check()?;
    if let Some(r) = s.salun_ratio
        && !(r > 0.0 && r <= 1.0)
    {
        return Err(Error::invalid(
            format!("{name}.salun_ratio"),
            format!("must lie in (0,1], got {r}"),
        ));
    }
    Ok(Box::new(Amun { name, s }))
}

pub const AMUN: Entry = Entry {
    name: "amun",
    summary: "fine-tune on D_F and its nearest adversarial examples (plus D_R if available)",
    defaults: || serde_json::to_value(defaults(None)).expect("serialisable"),
    build: |v| build("amun", None, v),
};

pub const AMUN_SALUN: Entry = Entry {
    name: "amun-salun",
    summary: "AMUN with SalUn's weight-saliency mask on the gradients (r = 0.5)",
    defaults: || serde_json::to_value(defaults(Some(0.5))).expect("serialisable"),
    build: |v| build("amun-salun", Some(0.5), v),
};

impl Method for Amun {
    fn name(&self) -> &'static str {
        self.name
    }

    fn settings(&self) -> Value {
        serde_json::to_value(&self.s).expect("serialisable")
    }

    fn adversarial(&self) -> Option<AdvSettings> {
        Some(self.s.attack.clone())
    }

    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let adv = req.adv.ok_or_else(|| {
            Error::invalid(self.name, "needs the adversarial set of the forget set")
        })?;
        let mut log = UnlearnLog::default();
        let mask = match self.s.salun_ratio {
            Some(r) => Some(log.time("saliency_mask", || {
                saliency_mask(
                    model,
                    &req.train.select(req.forget),
                    r,
                    self.s.finetune.batch_size,
                )
            })?),
            None => None,
        };
        let base: Vec<i64> = match (req.retain, self.s.adv_only) {
            (Some(r), false) => union_sorted(r, req.forget),
            (Some(r), true) => r.to_vec(),
            (None, false) => req.forget.to_vec(),
            (None, true) => Vec::new(),
        };
        let dev = req.train.labels.device();
        let mut parts = Vec::new();
        if !base.is_empty() {
            parts.push(Part::from_indices(
                "train",
                req.train,
                &base,
                self.s.finetune.augment_on(ctx, req.train),
            ));
        }
        parts.push(Part {
            name: "adversarial".into(),
            images: adv.images.to_device(dev).to_kind(Kind::Float),
            labels: tch::Tensor::from_slice(&adv.adv_labels).to_device(dev),
            augment: false,
            origin: vec![-1; adv.len()],
        });
        let set = TrainSet {
            parts,
            augment: Augment::CROP_FLIP,
        };
        log.epochs = log.time("fine_tune", || {
            finetune(
                model,
                &set,
                &self.s.finetune,
                mask.as_ref(),
                &mut |_, _, logits, b| cross_entropy(logits, &b.y),
                ctx,
                self.name,
            )
        })?;
        Ok(log)
    }
}
