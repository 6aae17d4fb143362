//! FT: fine-tune on the retain set only (catastrophic forgetting of D_F).
//! Defaults as in the l1-sparse and SalUn code: 10 epochs, lr 0.01, constant.
use super::{Entry, FineTune, ForgetRequest, Method, RunCtx, UnlearnLog, finetune, settings_from};
use crate::error::Result;
use crate::model::Classifier;
use crate::train::{Schedule, cross_entropy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtSettings {
    pub finetune: FineTune,
}

fn defaults() -> FtSettings {
    FtSettings {
        finetune: FineTune {
            schedule: Schedule::Constant,
            ..FineTune::amun()
        },
    }
}

struct Ft(FtSettings);

pub const FT: Entry = Entry {
    name: "ft",
    summary: "fine-tune on D_R only",
    defaults: || serde_json::to_value(defaults()).expect("serialisable"),
    build: |v| {
        let s: FtSettings = settings_from("ft", &defaults(), v)?;
        s.finetune.check("ft")?;
        Ok(Box::new(Ft(s)))
    },
};

impl Method for Ft {
    fn name(&self) -> &'static str {
        "ft"
    }

    fn settings(&self) -> Value {
        serde_json::to_value(&self.0).expect("serialisable")
    }

    fn requires_retain(&self) -> Option<&'static str> {
        Some("it trains on D_R alone, so without D_R there is nothing to train on")
    }

    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &self.0.finetune;
        let retain = super::retain_of(req, "ft")?;
        let set = super::indices_set(req.train, "retain", retain, ft.augment_on(ctx, req.train));
        let mut log = UnlearnLog::default();
        log.epochs = log.time("fine_tune", || {
            finetune(
                model,
                &set,
                ft,
                None,
                &mut |_, _, l, b| cross_entropy(l, &b.y),
                ctx,
                "ft",
            )
        })?;
        Ok(log)
    }
}
