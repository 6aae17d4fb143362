//! The saliency mask, continual requests and the settings' validation (AMUN
//! on a memorising model is in the protocol tier: `protocol/amun_run.rs`).
use crate::common;

use amun::data::{ForgetSet, ForgetSpec};
use amun::model::{Arch, Classifier, ModelSpec};
use amun::progress::Quiet;
use amun::unlearn::{
    ForgetRequest, Method, RequestOptions, RunCtx, UnlearnLog, build, saliency_mask,
    unlearn_requests,
};
use serde_json::json;
use std::cell::RefCell;

fn ctx() -> RunCtx<'static> {
    RunCtx {
        seed: 3,
        progress: &Quiet,
        original_recipe: None,
        observe: None,
        on_epoch: None,
    }
}

#[test]
fn saliency_mask_keeps_exactly_the_top_fraction() {
    let data = common::load("mnist", Some(300), Some(10));
    let spec = ModelSpec::for_data(Arch::SmallCnn, data.image_shape(), 10).unwrap();
    let model = Classifier::new(&spec, tch::Device::Cpu, 0).unwrap();
    let forget = data.train.select(&(0..64).collect::<Vec<_>>());
    let mask = saliency_mask(&model, &forget, 0.3, 32).unwrap();
    let total: i64 = model
        .named_parameters()
        .iter()
        .map(|(_, p)| p.numel() as i64)
        .sum();
    let kept: f64 = mask
        .masks
        .values()
        .map(|m| m.sum(tch::Kind::Double).double_value(&[]))
        .sum();
    assert_eq!(kept as i64, (total as f64 * 0.3).floor() as i64);
    // Every kept weight is at least as salient as every dropped one.
    let params = model.named_parameters();
    let ps: Vec<&tch::Tensor> = params.iter().map(|(_, p)| p).collect();
    let mut sal: Vec<tch::Tensor> = ps.iter().map(|p| p.zeros_like()).collect();
    for (start, x) in amun::data::eval_batches(&forget.images, 32, tch::Device::Cpu) {
        let y = forget.labels.narrow(0, start, x.size()[0]);
        let loss = -amun::train::cross_entropy(&model.forward_t(&x, false), &y);
        for (s, g) in sal
            .iter_mut()
            .zip(tch::Tensor::run_backward(&[&loss], &ps, false, false))
        {
            *s += g;
        }
    }
    let (mut min_kept, mut max_dropped) = (f64::INFINITY, 0.0f64);
    for ((name, _), s) in params.iter().zip(&sal) {
        let m = &mask.masks[name];
        let a = s.abs();
        if m.sum(tch::Kind::Double).double_value(&[]) > 0.0 {
            min_kept = min_kept.min(a.masked_select(&m.gt(0.5)).min().double_value(&[]));
        }
        if m.lt(0.5).any().int64_value(&[]) == 1 {
            max_dropped = max_dropped.max(a.masked_select(&m.lt(0.5)).max().double_value(&[]));
        }
    }
    assert!(
        min_kept >= max_dropped * (1.0 - 1e-6),
        "{min_kept} < {max_dropped}"
    );
    assert!(saliency_mask(&model, &forget, 0.0, 32).is_err());
}

/// (forget, retain) of one request.
type Seen = (Vec<i64>, Option<Vec<i64>>);

/// Records what each request gave the method, and does nothing.
struct Spy {
    seen: RefCell<Vec<Seen>>,
}

impl Method for Spy {
    fn name(&self) -> &'static str {
        "spy"
    }
    fn settings(&self) -> serde_json::Value {
        json!({})
    }
    fn unlearn(
        &self,
        _: &mut Classifier,
        req: &ForgetRequest<'_>,
        _: &RunCtx<'_>,
    ) -> amun::Result<UnlearnLog> {
        self.seen
            .borrow_mut()
            .push((req.forget.to_vec(), req.retain.map(|r| r.to_vec())));
        Ok(UnlearnLog::default())
    }
}

#[test]
fn continual_requests_never_train_on_an_already_forgotten_sample() {
    let data = common::load("mnist", Some(200), Some(10));
    let spec = ModelSpec::for_data(Arch::SmallCnn, data.image_shape(), 10).unwrap();
    let mut model = Classifier::new(&spec, tch::Device::Cpu, 0).unwrap();
    let requests: Vec<Vec<i64>> = (0..3)
        .map(|k| {
            ForgetSet::choose(&data, &ForgetSpec::Count(30), k)
                .unwrap()
                .indices
        })
        .collect();
    let spy = Spy {
        seen: RefCell::new(Vec::new()),
    };
    unlearn_requests(
        &spy,
        &mut model,
        &data.train,
        10,
        &requests,
        &RequestOptions {
            with_retain: true,
            adaptive: false,
            precomputed: None,
            calibrate: None,
        },
        &ctx(),
    )
    .unwrap();
    let seen = spy.seen.borrow();
    let mut forgotten: Vec<i64> = Vec::new();
    for (k, (forget, retain)) in seen.iter().enumerate() {
        let retain = retain.as_ref().unwrap();
        assert!(
            forget.iter().all(|i| !forgotten.contains(i)),
            "request {k} re-forgets"
        );
        assert!(
            retain
                .iter()
                .all(|i| !forgotten.contains(i) && !forget.contains(i)),
            "request {k} retains a forgotten sample"
        );
        assert_eq!(retain.len() + forget.len() + forgotten.len(), 200);
        forgotten.extend(forget);
    }
    // And AMUN itself, adaptive, on two requests: the model changes, the
    // adversarial labels always differ from the truth.
    let amun = build(
        "amun",
        &json!({"finetune": {"epochs": 1, "batch_size": 32}, "attack": {"steps": 5}}),
    )
    .unwrap();
    let logs = unlearn_requests(
        amun.as_ref(),
        &mut model,
        &data.train,
        10,
        &requests[..2],
        &RequestOptions {
            with_retain: true,
            adaptive: true,
            precomputed: None,
            calibrate: None,
        },
        &ctx(),
    )
    .unwrap();
    assert_eq!(logs.len(), 2);
    assert!(
        logs.iter()
            .all(|l| l.adv.as_ref().unwrap().success_rate == 100.0)
    );
}

#[test]
fn bad_settings_are_named() {
    let e = build("amun", &json!({"finetune": {"lr": 0.0}}))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("amun.finetune.lr") && e.contains("positive"),
        "{e}"
    );
    let e = build("amun", &json!({"finetune": {"epochs": 0}}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("epochs"), "{e}");
    let e = build("amun", &json!({"finetun": {"lr": 0.1}}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("amun.finetun") && e.contains("finetune"), "{e}");
    let e = build("amun", &json!({"attack": {"eps0": -1.0}}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("eps0"), "{e}");
    let e = build("forget-everything", &json!({}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("amun") && e.contains("amun-salun"), "{e}");
}

#[test]
fn diverging_fine_tuning_stops_with_the_step() {
    let data = common::load("mnist", Some(200), Some(10));
    let spec = ModelSpec::for_data(Arch::SmallCnn, data.image_shape(), 10).unwrap();
    let mut model = Classifier::new(&spec, tch::Device::Cpu, 0).unwrap();
    let forget = ForgetSet::choose(&data, &ForgetSpec::Count(20), 1).unwrap();
    let m = build(
        "amun",
        &json!({"finetune": {"lr": 1e12, "momentum": 0.0}, "attack": {"steps": 2}}),
    )
    .unwrap();
    let e = unlearn_requests(
        m.as_ref(),
        &mut model,
        &data.train,
        10,
        &[forget.indices],
        &RequestOptions {
            with_retain: true,
            adaptive: false,
            precomputed: None,
            calibrate: None,
        },
        &ctx(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, amun::Error::Diverged { .. }), "{e}");
    assert!(e.to_string().contains("step"), "{e}");
}
