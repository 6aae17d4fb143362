//! RL (random labels): fine-tune on D_F relabelled with uniformly random
//! wrong labels, plus D_R when available. SalUn = RL with the saliency mask
//! (Fan et al., ICLR 2024; defaults of its code: lr 0.013, 10 epochs, r 0.5).
use super::{
    Entry, FineTune, ForgetRequest, Method, RunCtx, UnlearnLog, finetune, saliency_mask,
    settings_from,
};
use crate::data::{Augment, Part, TrainSet};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::seed::derive;
use crate::train::{Schedule, cross_entropy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlSettings {
    pub finetune: FineTune,
    /// SalUn's mask: the fraction of weights left free (`null`: plain RL).
    pub salun_ratio: Option<f64>,
}

fn defaults(salun: bool) -> RlSettings {
    RlSettings {
        finetune: FineTune {
            lr: if salun { 0.013 } else { 0.01 },
            schedule: Schedule::Constant,
            ..FineTune::amun()
        },
        salun_ratio: salun.then_some(0.5),
    }
}

struct Rl {
    name: &'static str,
    s: RlSettings,
}

fn build(name: &'static str, salun: bool, v: &Value) -> Result<Box<dyn Method>> {
    let s: RlSettings = settings_from(name, &defaults(salun), v)?;
    s.finetune.check(name)?;
    if let Some(r) = s.salun_ratio
        && !(r > 0.0 && r <= 1.0)
    {
        return Err(Error::invalid(
            format!("{name}.salun_ratio"),
            format!("must lie in (0,1], got {r}"),
        ));
    }
    Ok(Box::new(Rl { name, s }))
}

pub const RL: Entry = Entry {
    name: "rl",
    summary: "fine-tune on D_F with random wrong labels (plus D_R if available)",
    defaults: || serde_json::to_value(defaults(false)).expect("serialisable"),
    build: |v| build("rl", false, v),
};

pub const SALUN: Entry = Entry {
    name: "salun",
    summary: "RL restricted by SalUn's weight-saliency mask (r = 0.5)",
    defaults: || serde_json::to_value(defaults(true)).expect("serialisable"),
    build: |v| build("salun", true, v),
};

/// A uniformly random label other than `y` for each of `labels`.
pub fn random_wrong_labels(labels: &[i64], num_classes: usize, seed: u64) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = num_classes as i64;
    labels
        .iter()
        .map(|&y| (y + 1 + rng.random_range(0..k - 1)) % k)
        .collect()
}

impl Method for Rl {
    fn name(&self) -> &'static str {
        self.name
    }

    fn settings(&self) -> Value {
        serde_json::to_value(&self.s).expect("serialisable")
    }

    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &self.s.finetune;
        let mut log = UnlearnLog::default();
        let forget = req.train.select(req.forget);
        let mask = match self.s.salun_ratio {
            Some(r) => Some(log.time("saliency_mask", || {
                saliency_mask(model, &forget, r, ft.batch_size)
            })?),
            None => None,
        };
        let wrong = random_wrong_labels(
            &forget.label_vec(),
            req.num_classes,
            derive(ctx.seed, "rl-labels", 0),
        );
        let mut parts = vec![Part {
            name: "forget-relabelled".into(),
            images: forget.images,
            labels: Tensor::from_slice(&wrong).to_device(req.train.labels.device()),
            augment: ft.augment_on(ctx, req.train),
            origin: req.forget.to_vec(),
        }];
        if let Some(r) = req.retain {
            parts.push(Part::from_indices(
                "retain",
                req.train,
                r,
                ft.augment_on(ctx, req.train),
            ));
        }
        let set = TrainSet {
            parts,
            augment: Augment::CROP_FLIP,
        };
        log.epochs = log.time("fine_tune", || {
            finetune(
                model,
                &set,
                ft,
                mask.as_ref(),
                &mut |_, _, l, b| cross_entropy(l, &b.y),
                ctx,
                self.name,
            )
        })?;
        Ok(log)
    }
}
