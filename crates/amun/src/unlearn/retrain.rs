//! Retrain: a new model trained from scratch on D_R with the original
//! model's recipe (read from its sidecar; any field can be overridden). The
//! gold standard every gap is measured to.
use super::{Entry, FineTune, ForgetRequest, Method, RunCtx, UnlearnLog, finetune, settings_from};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::seed::derive;
use crate::train::{Schedule, cross_entropy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields of the original recipe to replace (`null` keeps the original's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeOverride {
    pub epochs: Option<usize>,
    pub lr: Option<f64>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
    pub batch_size: Option<usize>,
    pub schedule: Option<Schedule>,
    pub augment: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainSettings {
    pub recipe: RecipeOverride,
}

struct Retrain(RetrainSettings);

pub const RETRAIN: Entry = Entry {
    name: "retrain",
    summary: "train from scratch on D_R with the original recipe (exact unlearning)",
    defaults: || serde_json::to_value(RetrainSettings::default()).expect("serialisable"),
    build: |v| {
        Ok(Box::new(Retrain(settings_from(
            "retrain",
            &RetrainSettings::default(),
            v,
        )?)))
    },
};

/// `mine`, else the original recipe's value, else an error naming the field.
fn field<T>(mine: Option<T>, orig: Option<T>, name: &str) -> Result<T> {
    mine.or(orig).ok_or_else(|| {
        Error::invalid(
            format!("retrain.recipe.{name}"),
            "the original checkpoint records no training recipe; give every recipe field",
        )
    })
}

impl Retrain {
    /// The original recipe with the overrides applied.
    fn finetune(&self, ctx: &RunCtx<'_>) -> Result<FineTune> {
        let o = &self.0.recipe;
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
        };
        ft.check("retrain")?;
        Ok(ft)
    }
}

impl Method for Retrain {
    fn name(&self) -> &'static str {
        "retrain"
    }

    fn settings(&self) -> Value {
        serde_json::to_value(&self.0).expect("serialisable")
    }

    fn requires_retain(&self) -> Option<&'static str> {
        Some("it trains a new model from scratch on D_R")
    }

    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = self.finetune(ctx)?;
        let retain = super::retain_of(req, "retrain")?;
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
                "retrain",
            )
        })?;
        model.copy_from(&fresh)?;
        Ok(log)
    }
}
