//! Retrain: a new model trained from scratch on D_R with the original
//! model's recipe (read from its sidecar; any field can be overridden). The
//! gold standard every gap is measured to.
use super::{FineTune, ForgetRequest, MethodDef, RunCtx, Settings, UnlearnLog, finetune};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::seed::derive;
use crate::train::{TrainOverrides, cross_entropy};
use serde::{Deserialize, Serialize};

/// Retrain's settings: fields of the original recipe to replace (unset
/// keeps the original's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainSettings {
    pub recipe: TrainOverrides,
}

impl Settings for RetrainSettings {
    fn finetune(&self) -> Option<&FineTune> {
        None
    }
    fn finetune_mut(&mut self) -> Option<&mut FineTune> {
        None
    }
    fn check_own(&self, method: &str) -> Result<()> {
        if self.recipe.retain_budget.is_some() {
            return Err(Error::invalid(
                format!("{method}.recipe.retain_budget"),
                "is not a setting of retrain (an exact retrain visits all of D_R)",
            ));
        }
        // The model's memory format is the original's, set where it is
        // loaded; a retrain has nothing to apply it to.
        if self.recipe.channels_last.is_some() {
            return Err(Error::invalid(
                format!("{method}.recipe.channels_last"),
                "is not a setting of retrain (the model keeps the original's memory format)",
            ));
        }
        Ok(())
    }
    fn adjust(&mut self, o: &TrainOverrides, _method: &str) -> Result<()> {
        self.recipe = o.over(&self.recipe);
        Ok(())
    }
}

/// `mine`, else the original recipe's value, else an error naming the field.
fn field<T>(mine: Option<T>, orig: Option<T>, name: &str) -> Result<T> {
    mine.or(orig).ok_or_else(|| {
        Error::invalid(
            format!("retrain.recipe.{name}"),
            "the original checkpoint records no training recipe; give every recipe field",
        )
    })
}

/// The original recipe with the overrides `o` applied.
fn recipe_finetune(o: &TrainOverrides, ctx: &RunCtx<'_>) -> Result<FineTune> {
    let r = ctx.original_recipe;
    let ft = FineTune {
        epochs: field(o.epochs, r.map(|r| r.epochs), "epochs")?,
        lr: field(o.lr, r.map(|r| r.lr), "lr")?,
        momentum: field(o.momentum, r.map(|r| r.momentum), "momentum")?,
        weight_decay: field(o.weight_decay, r.map(|r| r.weight_decay), "weight_decay")?,
        batch_size: field(o.batch_size, r.map(|r| r.batch_size), "batch_size")?,
        schedule: field(
            o.schedule.clone(),
            r.map(|r| r.schedule.clone()),
            "schedule",
        )?,
        augment: Some(field(o.augment, r.map(|r| r.augment), "augment")?),
        // An exact retrain visits all of D_R.
        retain_budget: super::RetainBudget::Full,
        retain_floor: 0,
        stop_below: Some(0.0),
        precision: if o.bf16.or(r.map(|r| r.bf16)).unwrap_or(false) {
            super::Precision::Bf16
        } else {
            super::Precision::Fp32
        },
    };
    ft.check(Retrain::NAME)?;
    Ok(ft)
}

/// Retrain's definition.
pub struct Retrain;

impl MethodDef for Retrain {
    const NAME: &'static str = "retrain";
    const SUMMARY: &'static str =
        "train from scratch on D_R with the original recipe (exact unlearning)";
    type Settings = RetrainSettings;

    fn defaults() -> RetrainSettings {
        RetrainSettings::default()
    }

    fn requires_retain() -> Option<&'static str> {
        Some("it trains a new model from scratch on D_R")
    }

    fn unlearn(
        s: &RetrainSettings,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = recipe_finetune(&s.recipe, ctx)?;
        let retain = super::retain_of(req, Self::NAME)?;
        let fresh = Classifier::new(
            model.spec(),
            model.device(),
            derive(ctx.seed, "retrain-init", 0),
        )?;
        let set = super::indices_set(req.train, "retain", retain, ft.augment_on(ctx, req.train));
        let mut log = UnlearnLog::default();
        log.epochs = log.time("train", || {
            finetune(
                &fresh,
                &set,
                &ft,
                None,
                &mut |_, _, l, b| cross_entropy(l, &b.y),
                ctx,
                Self::NAME,
            )
        })?;
        model.copy_from(&fresh)?;
        Ok(log)
    }
}
