//! Each baseline's defining behaviour, on a small CNN and MNIST.
use crate::common;

use amun::attack::fgsm_predictions;
use amun::data::{Batch, Dataset, ForgetSet, ForgetSpec};
use amun::model::Classifier;
use amun::progress::Quiet;
use amun::train::{Subset, TrainParams, cross_entropy};
use amun::unlearn::{RequestOptions, RunCtx, build, distill_kl, l1_norm, unlearn_requests};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashMap;

fn setup() -> (Dataset, Classifier, ForgetSet) {
    let data = common::load("mnist", Some(500), Some(100));
    let model = common::trained(
        &data,
        TrainParams::new()
            .epochs(2)
            .batch_size(32)
            .lr(0.02)
            .augment(false)
            .check()
            .unwrap(),
        1,
        Subset::All,
    );
    let forget = ForgetSet::choose(&data, &ForgetSpec::Count(50), 4).unwrap();
    (data, model, forget)
}

/// Runs `method` with `settings`, returning every batch it trained on.
fn run(
    model: &mut Classifier,
    data: &Dataset,
    forget: &ForgetSet,
    method: &str,
    settings: Value,
    with_retain: bool,
    recipe: Option<&amun::train::Recipe>,
) -> amun::Result<Vec<(Vec<i64>, Vec<i64>)>> {
    let seen: RefCell<Vec<(Vec<i64>, Vec<i64>)>> = RefCell::new(Vec::new());
    let observe = |b: &Batch| {
        seen.borrow_mut()
            .push((b.origin.clone(), Vec::<i64>::try_from(&b.y).unwrap()))
    };
    let ctx = RunCtx {
        seed: 7,
        progress: &Quiet,
        original_recipe: recipe,
        observe: Some(&observe),
        on_epoch: None,
    };
    let m = build(method, &settings)?;
    unlearn_requests(
        m.as_ref(),
        model,
        &data.train,
        10,
        std::slice::from_ref(&forget.indices),
        &RequestOptions {
            with_retain,
            adaptive: false,
            precomputed: None,
            calibrate: None,
            ..Default::default()
        },
        &ctx,
    )?;
    Ok(seen.into_inner())
}

fn forget_loss(model: &Classifier, data: &Dataset, forget: &ForgetSet) -> f64 {
    let s = data.train.select(&forget.indices);
    let logits = amun::eval::logits(model, &s.images);
    cross_entropy(&logits, &s.labels).double_value(&[])
}

#[test]
fn rl_relabels_every_forget_sample_with_a_wrong_label() {
    let (data, mut model, forget) = setup();
    let truth = data.train.label_vec();
    let batches = run(
        &mut model,
        &data,
        &forget,
        "rl",
        json!({"finetune": {"epochs": 1}}),
        true,
        None,
    )
    .unwrap();
    let mut relabelled = HashMap::new();
    let mut retain_rows = 0;
    for (origin, y) in &batches {
        for (o, l) in origin.iter().zip(y) {
            if forget.indices.binary_search(o).is_ok() {
                assert_ne!(
                    *l, truth[*o as usize],
                    "forget sample {o} kept its true label"
                );
                relabelled.insert(*o, *l);
            } else {
                assert_eq!(*l, truth[*o as usize]);
                retain_rows += 1;
            }
        }
    }
    assert_eq!(relabelled.len(), 50);
    assert_eq!(
        retain_rows, 450,
        "with D_R, an epoch visits max(4 × |D_F|, the 1,024 floor) of the retain samples: \
         all 450 here"
    );
}

#[test]
fn ga_raises_the_forget_loss() {
    let (data, mut model, forget) = setup();
    let before = forget_loss(&model, &data, &forget);
    run(
        &mut model,
        &data,
        &forget,
        "ga",
        json!({"finetune": {"epochs": 2, "lr": 0.01}}),
        false,
        None,
    )
    .unwrap();
    let after = forget_loss(&model, &data, &forget);
    assert!(after > before + 0.1, "forget loss {before} → {after}");
}

#[test]
fn bs_labels_are_the_fgsm_predictions_of_the_frozen_model() {
    let (data, mut model, forget) = setup();
    let f = data.train.select(&forget.indices);
    let want = fgsm_predictions(&model, &f.images, &f.labels, 0.1, 128);
    let batches = run(
        &mut model,
        &data,
        &forget,
        "bs",
        json!({"finetune": {"epochs": 1, "lr": 0.01}}),
        true,
        None,
    )
    .unwrap();
    let mut checked = 0;
    for (origin, y) in &batches {
        for (o, l) in origin.iter().zip(y) {
            let row = forget
                .indices
                .binary_search(o)
                .expect("BS trains on D_F only");
            assert_eq!(*l, want[row]);
            checked += 1;
        }
    }
    assert_eq!(checked, 50);
    assert!(
        want.iter().zip(f.label_vec()).any(|(a, b)| *a != b),
        "some labels moved to a neighbouring class"
    );
}

#[test]
fn l1_ends_with_a_smaller_l1_norm_than_plain_ft() {
    let (data, model, forget) = setup();
    let settings = |m: &str| {
        if m == "l1" {
            json!({"finetune": {"epochs": 2}, "alpha": 5e-3})
        } else {
            json!({"finetune": {"epochs": 2}})
        }
    };
    let mut norms = Vec::new();
    for m in ["ft", "l1"] {
        let mut copy = model.try_clone().unwrap();
        run(&mut copy, &data, &forget, m, settings(m), true, None).unwrap();
        norms.push(l1_norm(&copy).double_value(&[]));
    }
    assert!(norms[1] < norms[0], "l1 {} vs ft {}", norms[1], norms[0]);
}

/// A copy of every trainable parameter, by name.
fn parameters(model: &Classifier) -> HashMap<String, tch::Tensor> {
    model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.copy()))
        .collect()
}

#[test]
fn salun_mask_freezes_the_masked_weights_exactly() {
    let (data, mut model, forget) = setup();
    let before = parameters(&model);
    let f = data.train.select(&forget.indices);
    let mask = amun::unlearn::saliency_mask(&model, &f, 0.5, 500).unwrap();
    run(
        &mut model,
        &data,
        &forget,
        "salun",
        json!({"finetune": {"epochs": 1, "weight_decay": 0.0}}),
        false,
        None,
    )
    .unwrap();
    let (mut frozen, mut moved) = (0i64, 0i64);
    for (name, p) in model.named_parameters() {
        let m = &mask.masks[&name];
        let changed = p.ne_tensor(&before[&name]);
        // Masked (0) weights: exactly unchanged.
        assert_eq!(
            changed
                .logical_and(&m.eq(0.0))
                .sum(tch::Kind::Int64)
                .int64_value(&[]),
            0,
            "{name}"
        );
        frozen += m.eq(0.0).sum(tch::Kind::Int64).int64_value(&[]);
        moved += changed.sum(tch::Kind::Int64).int64_value(&[]);
    }
    assert!(frozen > 0 && moved > 0);
}

/// Calibration runs SalUn once per leg; every leg must mask with the
/// original's saliency (`ForgetRequest::mask`), not recompute it on the
/// state the previous leg left. Given the inverse of the model's own mask,
/// SalUn keeps exactly the weights the given mask freezes and moves
/// weights its own mask would have frozen.
#[test]
fn salun_masks_with_a_given_mask_instead_of_computing_its_own() {
    let (data, mut model, forget) = setup();
    let before = parameters(&model);
    let f = data.train.select(&forget.indices);
    let own = amun::unlearn::saliency_mask(&model, &f, 0.5, 500).unwrap();
    let given = amun::unlearn::SaliencyMask {
        masks: own
            .masks
            .iter()
            .map(|(k, m)| (k.clone(), m.ones_like() - m))
            .collect(),
        ratio: 0.5,
    };
    let salun = build(
        "salun",
        &json!({"finetune": {"epochs": 1, "weight_decay": 0.0}}),
    )
    .unwrap();
    let req = amun::unlearn::ForgetRequest {
        train: &data.train,
        forget: &forget.indices,
        retain: None,
        adv: None,
        mask: Some(&given),
        num_classes: 10,
    };
    let ctx = RunCtx {
        seed: 7,
        progress: &Quiet,
        original_recipe: None,
        observe: None,
        on_epoch: None,
    };
    let log = salun.unlearn(&mut model, &req, &ctx).unwrap();
    assert!(
        !log.timing.contains_key("saliency_mask"),
        "{:?}",
        log.timing
    );
    let (mut own_frozen_moved, mut given_frozen_moved) = (0i64, 0i64);
    for (name, p) in model.named_parameters() {
        let changed = p.ne_tensor(&before[&name]);
        let count = |m: &tch::Tensor| {
            changed
                .logical_and(&m.eq(0.0))
                .sum(tch::Kind::Int64)
                .int64_value(&[])
        };
        given_frozen_moved += count(&given.masks[&name]);
        own_frozen_moved += count(&own.masks[&name]);
    }
    assert_eq!(given_frozen_moved, 0);
    assert!(own_frozen_moved > 0);
}

#[test]
fn retrain_never_sees_a_forget_index() {
    let (data, mut model, forget) = setup();
    let recipe = TrainParams::new()
        .epochs(1)
        .batch_size(64)
        .augment(false)
        .check()
        .unwrap();
    let batches = run(
        &mut model,
        &data,
        &forget,
        "retrain",
        json!({}),
        true,
        Some(&recipe),
    )
    .unwrap();
    let seen: usize = batches.iter().map(|(o, _)| o.len()).sum();
    assert_eq!(seen, 450);
    for (origin, _) in &batches {
        assert!(
            origin
                .iter()
                .all(|o| forget.indices.binary_search(o).is_err())
        );
    }
    // Without a recorded recipe every field must be given.
    let mut m2 = model.try_clone().unwrap();
    let e = run(&mut m2, &data, &forget, "retrain", json!({}), true, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("retrain.recipe.epochs"), "{e}");
}

#[test]
fn scrub_max_steps_raise_kl_to_the_teacher_on_the_forget_set() {
    let (data, mut model, forget) = setup();
    let teacher = model.try_clone().unwrap();
    let f = data.train.select(&forget.indices);
    let kl = |m: &Classifier| {
        distill_kl(
            &amun::eval::logits(m, &f.images),
            &amun::eval::logits(&teacher, &f.images),
            4.0,
        )
        .double_value(&[])
    };
    assert!(kl(&model) < 1e-5);
    // Only max-steps move the model: the min-step loss weights are zero.
    run(
        &mut model,
        &data,
        &forget,
        "scrub",
        json!({"finetune": {"epochs": 1, "lr": 0.01, "weight_decay": 0.0}, "max_epochs": 1, "alpha": 0.0, "gamma": 0.0}),
        true,
        None,
    )
    .unwrap();
    assert!(
        kl(&model) > 1e-3,
        "KL on D_F after max-steps: {}",
        kl(&model)
    );
}

#[test]
fn neggrad_plus_ascends_on_the_forget_set_while_descending_on_retain() {
    let (data, model, forget) = setup();
    // Same seed and batches; β = 1 is pure descent on D_R.
    let mut losses = Vec::new();
    for beta in [1.0, 0.5] {
        let mut m = model.try_clone().unwrap();
        let batches = run(
            &mut m,
            &data,
            &forget,
            "neggrad+",
            json!({"finetune": {"epochs": 2}, "beta": beta}),
            true,
            None,
        )
        .unwrap();
        assert!(
            batches
                .iter()
                .any(|(o, _)| o.iter().any(|i| forget.indices.binary_search(i).is_ok()))
        );
        losses.push(forget_loss(&m, &data, &forget));
    }
    assert!(
        losses[1] > losses[0] + 0.1,
        "forget loss with ascent {} vs without {}",
        losses[1],
        losses[0]
    );
}

#[test]
fn methods_that_need_the_retain_set_say_why() {
    let (data, mut model, forget) = setup();
    for m in ["ft", "l1", "retrain", "scrub", "neggrad+"] {
        let e = run(&mut model, &data, &forget, m, json!({}), false, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("with_retain") && e.contains(m) && e.contains("D_R"),
            "{e}"
        );
    }
    let e = build("sisa", &json!({})).err().unwrap().to_string();
    for m in amun::unlearn::names() {
        assert!(e.contains(m), "{e}");
    }
}
