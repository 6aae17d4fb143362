//! Adversarial-set search: the step by hand, early exit, ε doubling,
//! refill ≡ naive, and real numbers on a trained CNN.
use crate::common;

use amun::attack::{
    AdvParams, AdvSet, AttackKind, Eps0, SearchKind, Target, l2_step, linf_step, search,
};
use amun::data::{ForgetSet, ForgetSpec};
use amun::progress::Quiet;
use amun::train::{Subset, TrainParams};
use tch::{Device, Kind, Tensor};

/// logits = W · flatten(x) + b.
struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Target for Linear {
    fn logits(&self, x: &Tensor) -> Tensor {
        x.flatten(1, -1).matmul(&self.w.tr()) + &self.b
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
}

fn t2(a: f32, b: f32) -> Tensor {
    Tensor::from_slice(&[a, b]).view([1, 1, 1, 2])
}

fn close(a: &Tensor, b: &Tensor) -> bool {
    (a - b).abs().max().double_value(&[]) < 1e-6
}

#[test]
fn l2_step_by_hand_direction_projection_clamp() {
    let eps = Tensor::from_slice(&[0.5f32]);
    // Unit gradient (3,4)/5 times α = ε/10 = 0.05.
    let x0 = t2(0.2, 0.2);
    assert!(close(
        &l2_step(&x0, &x0, &t2(3.0, 4.0), &eps),
        &t2(0.23, 0.24)
    ));
    // Already on the ball's surface: the step is projected back onto it.
    let x = t2(0.5, 0.6);
    assert!(close(&l2_step(&x, &x0, &t2(3.0, 4.0), &eps), &t2(0.5, 0.6)));
    // Clamped to [0,1].
    let x0 = t2(0.95, 0.5);
    let one = Tensor::from_slice(&[1.0f32]);
    assert!(close(
        &l2_step(&x0, &x0, &t2(1.0, 0.0), &one),
        &t2(1.0, 0.5)
    ));
    // L∞: sign step, box projection.
    let x0 = t2(0.5, 0.5);
    let x = t2(0.548, 0.5);
    let e = Tensor::from_slice(&[0.05f32]);
    assert!(close(
        &linf_step(&x, &x0, &t2(2.0, -3.0), &e),
        &t2(0.55, 0.495)
    ));
}

fn identity_model() -> Linear {
    Linear {
        w: Tensor::eye(2, (Kind::Float, Device::Cpu)),
        b: Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    }
}

#[test]
fn early_exit_and_eps_doubling_on_a_linear_model() {
    // Class 0 while x₁ > x₂; the L2 distance to the boundary is gap/√2.
    // gap 0.15 → 0.106: ε0 = 0.04 and 0.08 fail, 0.16 = 4ε0 succeeds.
    // gap 0.03 → 0.021: flips in the first round. Sample 3 is already wrong.
    let x = Tensor::from_slice(&[0.5f32, 0.35, 0.5, 0.47, 0.2, 0.6]).view([3, 1, 1, 2]);
    let y = Tensor::from_slice(&[0i64, 0, 0]);
    let s = AdvParams::new()
        .search(SearchKind::Exact)
        .batch_size(2)
        .check()
        .unwrap();
    let set = search(&identity_model(), &x, &y, &[10, 11, 12], &s, &Quiet).unwrap();
    assert_eq!(set.indices, vec![10, 11, 12]);
    assert_eq!(set.adv_labels, vec![1, 1, 1]);
    assert!(set.success.iter().all(|s| *s));
    assert!(
        (set.eps[0] - 0.16).abs() < 1e-9,
        "two doublings: {}",
        set.eps[0]
    );
    assert!((set.eps[1] - 0.04).abs() < 1e-9);
    assert!(
        set.steps[0] > 100 && set.steps[0] <= 150,
        "{}",
        set.steps[0]
    );
    assert!(set.steps[1] > 0 && set.steps[1] < 50);
    // Already misclassified: kept as is, no step.
    assert_eq!(set.steps[2], 0);
    assert_eq!(set.dist[2], 0.0);
    assert!(set.images.get(2).equal(&x.get(2)));
    // Every adversarial example lies in its ε-ball and in [0,1], just past the boundary.
    for i in 0..2 {
        assert!(set.dist[i] <= set.eps[i] + 1e-6);
        let v = Vec::<f32>::try_from(set.images.get(i as i64).flatten(0, -1)).unwrap();
        assert!(v[1] > v[0] && v.iter().all(|p| (0.0..=1.0).contains(p)));
    }
    let summary = set.summary();
    assert_eq!(summary.already_misclassified, 1);
    assert_eq!(summary.success_rate, 100.0);
}

#[test]
fn fgsm_and_linf_variants_flip_every_sample() {
    let x = Tensor::from_slice(&[0.5f32, 0.35, 0.5, 0.47]).view([2, 1, 1, 2]);
    let y = Tensor::from_slice(&[0i64, 0]);
    for kind in [AttackKind::Fgsm, AttackKind::PgdLinf] {
        let s = AdvParams::new()
            .search(SearchKind::Exact)
            .attack(kind)
            .check()
            .unwrap();
        let set = search(&identity_model(), &x, &y, &[0, 1], &s, &Quiet).unwrap();
        assert_eq!(set.adv_labels, vec![1, 1], "{kind:?}");
        assert!(
            set.eps[0] > set.eps[1],
            "{kind:?}: the farther sample needs the larger ε"
        );
    }
}

fn trained_cnn() -> (amun::data::Dataset, amun::model::Classifier) {
    let data = common::load("mnist", Some(1000), Some(200));
    let model = common::trained(
        &data,
        TrainParams::new()
            .epochs(3)
            .batch_size(32)
            .lr(0.02)
            .augment(false)
            .check()
            .unwrap(),
        1,
        Subset::All,
    );
    (data, model)
}

#[test]
fn refill_gives_bit_identical_results_to_the_naive_loop() {
    let (data, model) = trained_cnn();
    let forget = ForgetSet::choose(&data, &ForgetSpec::Count(40), 2).unwrap();
    let part = data.train.select(&forget.indices);
    let run = |refill: bool| -> AdvSet {
        let s = AdvParams::new()
            .search(SearchKind::Exact)
            .batch_size(16)
            .steps(10)
            .refill(refill)
            .check()
            .unwrap();
        search(
            &model,
            &part.images,
            &part.labels,
            &forget.indices,
            &s,
            &Quiet,
        )
        .unwrap()
    };
    let (a, b) = (run(true), run(false));
    assert!(a.images.equal(&b.images));
    assert_eq!(a.adv_labels, b.adv_labels);
    assert_eq!(a.eps, b.eps);
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.dist, b.dist);
    // Deterministic on the CPU.
    assert!(run(true).images.equal(&a.images));
    // Every label differs from the truth; the save → load round trip is exact.
    assert!(a.adv_labels.iter().zip(&a.true_labels).all(|(p, t)| p != t));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("adv.safetensors");
    let fp = model.fingerprint();
    a.save(&p, &fp, amun::model::checkpoint::ForgetSummary::of(&forget))
        .unwrap();
    let (c, meta) = AdvSet::load(&p).unwrap();
    assert!(c.images.equal(&a.images));
    assert_eq!(c.adv_labels, a.adv_labels);
    c.check_matches(&meta, &forget.indices, &fp, &p).unwrap();
    assert!(
        c.check_matches(&meta, &forget.indices[1..], &fp, &p)
            .is_err()
    );
    assert!(
        c.check_matches(&meta, &forget.indices, "another model", &p)
            .is_err()
    );
}

#[test]
fn auto_eps0_picks_a_power_of_two_multiple() {
    let (data, model) = trained_cnn();
    let forget = ForgetSet::choose(&data, &ForgetSpec::Count(30), 3).unwrap();
    let part = data.train.select(&forget.indices);
    let s = AdvParams::new()
        .search(SearchKind::Exact)
        .eps0(Eps0::Auto)
        .steps(10)
        .check()
        .unwrap();
    let set = search(
        &model,
        &part.images,
        &part.labels,
        &forget.indices,
        &s,
        &Quiet,
    )
    .unwrap();
    let k = (set.eps0 / 0.01).log2();
    assert!(
        (k - k.round()).abs() < 1e-9 && k >= 0.0,
        "eps0 {}",
        set.eps0
    );
    assert!(set.success.iter().all(|s| *s));
}

#[test]
fn fast_search_lands_just_past_the_boundary_of_a_linear_model() {
    // Boundary distances gap/√2: 0.106 and 0.021; sample 3 already wrong.
    let x = Tensor::from_slice(&[0.5f32, 0.35, 0.5, 0.47, 0.2, 0.6]).view([3, 1, 1, 2]);
    let y = Tensor::from_slice(&[0i64, 0, 0]);
    let s = AdvParams::new().search(SearchKind::Fast).check().unwrap();
    let set = search(&identity_model(), &x, &y, &[10, 11, 12], &s, &Quiet).unwrap();
    assert_eq!(set.adv_labels, vec![1, 1, 1]);
    assert!(set.success.iter().all(|s| *s));
    for (i, want) in [(0, 0.15 / 2f64.sqrt()), (1, 0.03 / 2f64.sqrt())] {
        assert!(
            set.dist[i] >= want - 1e-6 && set.dist[i] < want * 1.02,
            "sample {i}: {} for a boundary at {want}",
            set.dist[i]
        );
        // Misclassified (past the boundary), in [0,1].
        let v = Vec::<f32>::try_from(set.images.get(i as i64).flatten(0, -1)).unwrap();
        assert!(v[1] > v[0] && v.iter().all(|p| (0.0..=1.0).contains(p)));
        // ε: the smallest of Alg. 1's grid that holds the example.
        assert!(set.dist[i] <= set.eps[i] && set.dist[i] > set.eps[i] / 2.0 || set.eps[i] == 0.04);
    }
    assert!((set.eps[0] - 0.16).abs() < 1e-9, "{}", set.eps[0]);
    assert!((set.eps[1] - 0.04).abs() < 1e-9);
    // Already misclassified: kept as is, no step.
    assert_eq!((set.steps[2], set.dist[2]), (0, 0.0));
    assert!(set.images.get(2).equal(&x.get(2)));
    // The exact search needs more passes for the same samples (on real
    // models ≥ 4× more: see the CNN test below).
    let exact = search(
        &identity_model(),
        &x,
        &y,
        &[10, 11, 12],
        &AdvParams::new().search(SearchKind::Exact).check().unwrap(),
        &Quiet,
    )
    .unwrap();
    assert!(set.summary().total_steps < exact.summary().total_steps);
}

#[test]
fn fast_search_falls_back_for_samples_it_cannot_flip() {
    // A model that always says class 0: nothing flips. The fast search gives
    // up on it, Alg. 1 takes over and stops after max_doublings, as documented.
    let never = Linear {
        w: Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
        b: Tensor::from_slice(&[1.0f32, 0.0]),
    };
    let x = Tensor::from_slice(&[0.5f32, 0.35]).view([1, 1, 1, 2]);
    let y = Tensor::from_slice(&[0i64]);
    let mut s = AdvParams::new()
        .search(SearchKind::Fast)
        .steps(5)
        .check()
        .unwrap();
    s.max_doublings = 2;
    let set = search(&never, &x, &y, &[0], &s, &Quiet).unwrap();
    assert!(!set.success[0]);
    assert_eq!(set.adv_labels[0], 0, "not flipped: its own (true) label");
    assert!((set.eps[0] - 0.16).abs() < 1e-9, "ε0 · 2²: {}", set.eps[0]);
    assert_eq!(set.summary().success_rate, 0.0);
}

#[test]
fn fast_search_on_a_trained_cnn_is_closer_cheaper_and_batch_invariant() {
    let (data, model) = trained_cnn();
    let forget = ForgetSet::choose(&data, &ForgetSpec::Count(40), 5).unwrap();
    let part = data.train.select(&forget.indices);
    let run = |kind: SearchKind, batch: usize| -> AdvSet {
        let s = AdvParams::new()
            .search(kind)
            .batch_size(batch)
            .check()
            .unwrap();
        search(
            &model,
            &part.images,
            &part.labels,
            &forget.indices,
            &s,
            &Quiet,
        )
        .unwrap()
    };
    let fast = run(SearchKind::Fast, 16);
    let exact = run(SearchKind::Exact, 16);
    assert!(fast.success.iter().all(|s| *s));
    // Every example is misclassified by the model — with the label recorded —
    // and lies in [0,1].
    let pred = model.forward_t(&fast.images, false).argmax(1, false);
    assert_eq!(Vec::<i64>::try_from(&pred).unwrap(), fast.adv_labels);
    assert!(
        fast.adv_labels
            .iter()
            .zip(&fast.true_labels)
            .all(|(a, t)| a != t)
    );
    assert!(fast.images.min().double_value(&[]) >= 0.0);
    assert!(fast.images.max().double_value(&[]) <= 1.0);
    let (f, e) = (fast.summary(), exact.summary());
    assert!(
        f.median_distance <= e.median_distance,
        "fast median {} > exact {}",
        f.median_distance,
        e.median_distance
    );
    assert!(
        f.total_steps * 4 <= e.total_steps,
        "passes: fast {} vs exact {}",
        f.total_steps,
        e.total_steps
    );
    // Deterministic, and a sample's result does not depend on its batch.
    let other = run(SearchKind::Fast, 7);
    assert!(other.images.equal(&fast.images));
    assert_eq!(other.adv_labels, fast.adv_labels);
    assert_eq!(other.dist, fast.dist);
}

/// A precomputed adversarial set is what `amun adv` wrote: one flipped
/// byte is refused by its recorded sha256; a set rewritten (noise images,
/// every label 3) with a matching sha256 is refused by its content; a set
/// whose JSON records no sha256 is refused where a user hands it in; a JSON
/// edited (its settings), with or without its own hash, is refused.
#[test]
fn a_tampered_adversarial_set_or_its_json_is_refused() {
    let data = common::load("mnist", Some(300), Some(100));
    let recipe = TrainParams::new()
        .epochs(2)
        .batch_size(32)
        .lr(0.02)
        .augment(false)
        .check()
        .unwrap();
    let model = common::trained(&data, recipe, 1, Subset::All);
    // Class 3: every adversarial label set to 3 is then the true label.
    let forget = ForgetSet::choose(&data, &ForgetSpec::Class(3), 2).unwrap();
    let part = data.train.select(&forget.indices);
    let s = AdvParams::new()
        .search(SearchKind::Exact)
        .steps(10)
        .check()
        .unwrap();
    let set = search(
        &model,
        &part.images,
        &part.labels,
        &forget.indices,
        &s,
        &Quiet,
    )
    .unwrap();
    assert!(set.success.iter().any(|&s| s));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("adv.safetensors");
    set.save(
        &p,
        &model.fingerprint(),
        amun::model::checkpoint::ForgetSummary::of(&forget),
    )
    .unwrap();
    let requests = [forget.clone()];
    let load = || amun::unlearn::UnlearnJob::load_adversarial(&p, &requests, &model);
    load().unwrap();
    let good = std::fs::read(&p).unwrap();

    // Issue 37 (S2): its JSON's settings edited (recorded later as the
    // unlearned model's), with or without its content hash.
    let meta_path = AdvSet::meta_path(&p);
    let text = std::fs::read_to_string(&meta_path).unwrap();
    let edited = text.replace("\"steps\": 10,", "\"steps\": 3,");
    assert_ne!(edited, text);
    std::fs::write(&meta_path, &edited).unwrap();
    let e = load().err().unwrap().to_string();
    assert!(
        e.contains("adv.json") && e.contains("changed after amun wrote it"),
        "{e}"
    );
    let mut stripped: serde_json::Value = serde_json::from_str(&edited).unwrap();
    stripped.as_object_mut().unwrap().remove("content_sha256");
    std::fs::write(
        &meta_path,
        serde_json::to_string_pretty(&stripped).unwrap() + "\n",
    )
    .unwrap();
    let e = load().err().unwrap().to_string();
    assert!(
        e.contains("adv.json") && e.contains("carries no content_sha256"),
        "{e}"
    );
    std::fs::write(&meta_path, &text).unwrap();

    // One flipped byte (of an image).
    let mut bytes = good.clone();
    let at = bytes.len() - 5;
    bytes[at] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let e = load().err().unwrap().to_string();
    assert!(e.contains("adv.safetensors") && e.contains("sha256"), "{e}");

    // Noise for images, 3 for every adversarial label, the JSON's sha256
    // made to match.
    let noise = Tensor::rand_like(&set.images);
    let threes = Tensor::full([set.len() as i64], 3, (Kind::Int64, Device::Cpu));
    std::fs::write(&p, &good).unwrap();
    let mut t = amun::model::checkpoint::read_tensors(&p, Device::Cpu).unwrap();
    t.insert("images".into(), noise);
    t.insert("adv_labels".into(), threes);
    let mut named: Vec<(String, Tensor)> = t.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    amun::model::checkpoint::write_tensors(&p, &named).unwrap();
    let mut meta: amun::attack::AdvMeta =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta.content_sha256 = None;
    // Re-signed as amun signs it, so the checks after the JSON's reach.
    let write_meta = |meta: &amun::attack::AdvMeta| {
        amun::fsutil::write_json_signed(&meta_path, meta).unwrap();
    };
    meta.sha256 = Some(amun::data::sha256_file(&p).unwrap());
    write_meta(&meta);
    let e = load().err().unwrap().to_string();
    assert!(
        e.contains("adv.safetensors") && e.contains("its true label"),
        "{e}"
    );
    // Images outside [0, 1].
    let mut t = amun::model::checkpoint::read_tensors(&p, Device::Cpu).unwrap();
    t.insert("images".into(), Tensor::full_like(&set.images, 2.0));
    t.insert("adv_labels".into(), Tensor::from_slice(&set.adv_labels));
    let mut named: Vec<(String, Tensor)> = t.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    amun::model::checkpoint::write_tensors(&p, &named).unwrap();
    meta.sha256 = Some(amun::data::sha256_file(&p).unwrap());
    write_meta(&meta);
    let e = load().err().unwrap().to_string();
    assert!(e.contains("[0, 1]"), "{e}");

    // The original file, its JSON without a sha256 (an older version's,
    // or one stripped of it).
    std::fs::write(&p, &good).unwrap();
    meta.sha256 = None;
    write_meta(&meta);
    let e = load().err().unwrap().to_string();
    assert!(e.contains("records no sha256"), "{e}");
    // A run folder's set (hashed by the run's record) is still read.
    amun::unlearn::UnlearnJob::load_recorded_adversarial(&p, &requests, &model).unwrap();
}
