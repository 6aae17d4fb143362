//! RL (random labels): fine-tune on D_F relabelled with uniformly random
//! wrong labels, plus D_R when available. SalUn = RL with the saliency mask
//! (Fan et al., ICLR 2024; defaults of its code: lr 0.013, 10 epochs, r 0.5).
use super::{
    FineTune, ForgetRequest, GivenOrOwn, MethodDef, RunCtx, Settings, UnlearnLog, finetune,
    finetune_field, given_or_own,
};
use crate::data::{Augment, Part, TrainSet};
use crate::error::Result;
use crate::model::Classifier;
use crate::seed::derive;
use crate::train::cross_entropy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlSettings {
    pub finetune: FineTune,
    /// SalUn's mask: the fraction of weights left free (`null`: plain RL).
    pub salun_ratio: Option<f64>,
}

impl Settings for RlSettings {
    finetune_field!();
    fn check_own(&self, method: &str) -> Result<()> {
        super::check_ratio(self.salun_ratio, method)
    }
}

fn defaults(salun: bool) -> RlSettings {
    RlSettings {
        finetune: FineTune {
            lr: if salun { 0.013 } else { 0.01 },
            ..FineTune::amun().constant()
        },
        salun_ratio: salun.then_some(0.5),
    }
}

/// RL's definition.
pub struct Rl;

impl MethodDef for Rl {
    const NAME: &'static str = "rl";
    const SUMMARY: &'static str =
        "fine-tune on D_F with random wrong labels (plus D_R if available)";
    type Settings = RlSettings;

    fn defaults() -> RlSettings {
        defaults(false)
    }

    fn saliency(s: &RlSettings) -> Option<f64> {
        s.salun_ratio
    }

    fn unlearn(
        s: &RlSettings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        relabel(Self::NAME, s, model, req, ctx)
    }
}

/// SalUn's definition: RL with the saliency mask.
pub struct Salun;

impl MethodDef for Salun {
    const NAME: &'static str = "salun";
    const SUMMARY: &'static str = "RL restricted by SalUn's weight-saliency mask (r = 0.5)";
    type Settings = RlSettings;

    fn defaults() -> RlSettings {
        defaults(true)
    }

    fn saliency(s: &RlSettings) -> Option<f64> {
        s.salun_ratio
    }

    fn unlearn(
        s: &RlSettings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        relabel(Self::NAME, s, model, req, ctx)
    }
}

/// A uniformly random label other than `y` for each of `labels`.
pub fn random_wrong_labels(labels: &[i64], num_classes: usize, seed: u64) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = num_classes as i64;
    labels
        .iter()
        .map(|&y| (y + 1 + rng.random_range(0..k - 1)) % k)
        .collect()
}

/// RL and SalUn: fine-tune on D_F with random wrong labels (and D_R), the
/// gradient masked when `s.salun_ratio` is set.
fn relabel(
    name: &str,
    s: &RlSettings,
    model: &mut Classifier,
    req: &ForgetRequest<'_>,
    ctx: &RunCtx<'_>,
) -> Result<UnlearnLog> {
    let ft = &s.finetune;
    let mut log = UnlearnLog::default();
    let forget = req.train.select(req.forget);
    let mask = given_or_own(
        s.salun_ratio,
        req.mask,
        model,
        || req.train.select(req.forget),
        ft.batch_size,
        &mut log,
    )?;
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
        draw: None,
    }];
    if let Some(r) = req.retain {
        let part = Part::from_indices("retain", req.train, r, ft.augment_on(ctx, req.train));
        parts.push(ft.budgeted(part, r, req.forget.len()));
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
            mask.as_ref().map(GivenOrOwn::mask),
            &mut |_, _, l, b| cross_entropy(l, &b.y),
            ctx,
            name,
        )
    })?;
    Ok(log)
}
