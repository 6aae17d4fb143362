//! NegGrad+ (Kurmanji et al., NeurIPS 2023): each step descends on a D_R
//! batch and ascends on a D_F batch, weighted: β·CE(D_R) − (1 − β)·CE(D_F).
//! Defaults: β 0.999, lr 0.01, 5 epochs, constant.
use super::{Entry, FineTune, ForgetRequest, Method, RunCtx, UnlearnLog, finetune, settings_from};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::seed::derive;
use crate::train::{Schedule, cross_entropy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegGradSettings {
    pub finetune: FineTune,
    /// Weight of the retain loss; 1 − beta weighs the forget ascent.
    pub beta: f64,
}

fn defaults() -> NegGradSettings {
    NegGradSettings {
        finetune: FineTune {
            epochs: 5,
            schedule: Schedule::Constant,
            ..FineTune::amun()
        },
        beta: 0.999,
    }
}

struct NegGrad(NegGradSettings);

pub const NEGGRAD: Entry = Entry {
    name: "neggrad+",
    summary: "descent on D_R and ascent on D_F in every step, weighted β and 1 − β",
    defaults: || serde_json::to_value(defaults()).expect("serialisable"),
    build: |v| {
        let s: NegGradSettings = settings_from("neggrad+", &defaults(), v)?;
        s.finetune.check("neggrad+")?;
        if !(0.0..=1.0).contains(&s.beta) {
            return Err(Error::invalid(
                "neggrad+.beta",
                format!("must lie in [0,1], got {}", s.beta),
            ));
        }
        Ok(Box::new(NegGrad(s)))
    },
};

impl Method for NegGrad {
    fn name(&self) -> &'static str {
        "neggrad+"
    }

    fn settings(&self) -> Value {
        serde_json::to_value(&self.0).expect("serialisable")
    }

    fn requires_retain(&self) -> Option<&'static str> {
        Some("its descent half runs on D_R (without D_R it is plain GA)")
    }

    fn unlearn(
        &self,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<UnlearnLog> {
        let ft = &self.0.finetune;
        let beta = self.0.beta;
        let retain = super::retain_of(req, "neggrad+")?;
        let retain = super::indices_set(req.train, "retain", retain, ft.augment_on(ctx, req.train));
        let forget = super::indices_set(
            req.train,
            "forget",
            req.forget,
            ft.augment_on(ctx, req.train),
        );
        // D_F batches cycle alongside the D_R epoch, each cycle reshuffled.
        let mut cycle = 0u64;
        let mut it = forget.epoch(ft.batch_size, derive(ctx.seed, "neggrad-forget", cycle));
        let mut log = UnlearnLog::default();
        log.epochs = log.time("fine_tune", || {
            finetune(
                model,
                &retain,
                ft,
                None,
                &mut |_, m, logits, b| {
                    let fb = it.next().unwrap_or_else(|| {
                        cycle += 1;
                        it = forget.epoch(ft.batch_size, derive(ctx.seed, "neggrad-forget", cycle));
                        it.next().expect("non-empty forget set")
                    });
                    if let Some(f) = ctx.observe {
                        f(&fb);
                    }
                    let fl = m.forward_t(&fb.x, true);
                    cross_entropy(logits, &b.y) * beta - cross_entropy(&fl, &fb.y) * (1.0 - beta)
                },
                ctx,
                "neggrad+",
            )
        })?;
        Ok(log)
    }
}
