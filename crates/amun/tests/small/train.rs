//! Training: learns for real, checkpoints round-trip exactly, a resumed run
//! ends with the same weights as an uninterrupted one, the seed fixes all.
use crate::common;

use amun::data::{Dataset, ForgetSet, ForgetSpec};
use amun::eval::{accuracy, logits};
use amun::model::{Arch, Classifier, ModelSpec, checkpoint};
use amun::progress::Quiet;
use amun::train::{Recipe, Subset, TrainJob, TrainParams, resume_path, train};
use std::path::Path;

fn recipe(epochs: usize) -> Recipe {
    TrainParams::new()
        .epochs(epochs)
        .batch_size(64)
        .check()
        .unwrap()
}

fn job<'a>(data: &'a Dataset, recipe: Recipe, out: Option<&'a Path>, resume: bool) -> TrainJob<'a> {
    TrainJob {
        spec: ModelSpec::for_data(Arch::SmallCnn, data.image_shape(), data.num_classes()).unwrap(),
        data,
        recipe,
        seed: 5,
        subset: Subset::All,
        out,
        resume,
        eval_each_epoch: false,
    }
}

fn weights_equal(a: &Classifier, b: &Classifier) -> bool {
    a.named_tensors()
        .iter()
        .zip(b.named_tensors())
        .all(|((n1, t1), (n2, t2))| *n1 == n2 && t1.equal(&t2))
}

#[test]
fn small_cnn_learns_mnist_far_above_chance() {
    let data = common::mnist();
    let trained = train(&job(&data, recipe(3), None, false), &Quiet).unwrap();
    let acc = accuracy(&trained.model, &data.test).percent();
    assert!(acc > 90.0, "test accuracy {acc:.1}% after 3 epochs");
}

#[test]
fn checkpoint_round_trip_gives_identical_logits() {
    let data = common::load("mnist", Some(500), Some(200));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let trained = train(&job(&data, recipe(1), Some(&out), false), &Quiet).unwrap();
    let (loaded, sc) = checkpoint::load(&out, tch::Device::Cpu).unwrap();
    assert!(logits(&trained.model, &data.test.images).equal(&logits(&loaded, &data.test.images)));
    assert_eq!(sc.seed, 5);
    assert!(
        !resume_path(&out).exists(),
        "a finished run leaves no resume state"
    );
    // Another architecture or class count is refused, naming what differs.
    // (Signed as amun signs a sidecar, so that the checks after the
    // hash's are reached.)
    let mut sc2 = sc.clone();
    sc2.content_sha256 = None;
    sc2.model.num_classes = 7;
    amun::fsutil::write_json_signed(&checkpoint::sidecar_path(&out), &sc2).unwrap();
    let msg = checkpoint::load(&out, tch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("fc.weight") && msg.contains("shape mismatch"),
        "{msg}"
    );
    sc2.model = sc.model.clone();
    sc2.model.arch = Arch::Resnet18;
    amun::fsutil::write_json_signed(&checkpoint::sidecar_path(&out), &sc2).unwrap();
    let msg = checkpoint::load(&out, tch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("missing") && msg.contains("unexpected"),
        "{msg}"
    );
}

#[test]
fn resume_matches_an_uninterrupted_run_bit_for_bit() {
    let data = common::load("mnist", Some(600), Some(100));
    let dir = tempfile::tempdir().unwrap();
    let full_out = dir.path().join("full.safetensors");
    let full = train(&job(&data, recipe(3), Some(&full_out), false), &Quiet).unwrap();

    // "Kill" the same 3-epoch job after its second epoch's checkpoint.
    let out = dir.path().join("cut.safetensors");
    let r3 = recipe(3);
    {
        // Run two epochs of the three-epoch job, leaving its resume state.
        let j = job(&data, r3.clone(), Some(&out), false);
        let p = StopAfter {
            epochs: 2,
            seen: std::sync::atomic::AtomicUsize::new(0),
        };
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train(&j, &p)));
        assert!(killed.is_err(), "the stop hook interrupts the run");
    }
    assert!(resume_path(&out).exists());
    let resumed = train(&job(&data, r3, Some(&out), true), &Quiet).unwrap();
    assert_eq!(resumed.epochs_run, 1);
    assert!(weights_equal(&full.model, &resumed.model));
    assert_eq!(full.sidecar.history.len(), resumed.sidecar.history.len());
    // Resuming a finished run does nothing and returns it.
    let again = train(&job(&data, recipe(3), Some(&out), true), &Quiet).unwrap();
    assert_eq!(again.epochs_run, 0);
    // Another seed's state is refused rather than mixed.
    let mut other = job(&data, recipe(3), Some(&out), true);
    other.seed = 6;
    assert!(train(&other, &Quiet).is_err());
}

/// Issue 37 (S3): a resume state with one flipped byte was resumed from,
/// exit 0: the run continued from other weights (or diverged later).
#[test]
fn a_changed_resume_state_is_refused() {
    let data = common::load("mnist", Some(300), Some(100));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cut.safetensors");
    let j = job(&data, recipe(2), Some(&out), false);
    let p = StopAfter {
        epochs: 1,
        seen: std::sync::atomic::AtomicUsize::new(0),
    };
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train(&j, &p)));
    assert!(killed.is_err(), "the stop hook interrupts the run");
    let rp = resume_path(&out);
    let good = std::fs::read(&rp).unwrap();
    let mut bytes = good.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&rp, &bytes).unwrap();
    let resume = || train(&job(&data, recipe(2), Some(&out), true), &Quiet);
    let e = resume()
        .err()
        .expect("a changed state is refused")
        .to_string();
    assert!(
        e.contains("cut.resume.safetensors")
            && e.contains("changed since amun wrote it")
            && e.contains("without --resume"),
        "{e}"
    );
    // The state amun wrote resumes.
    std::fs::write(&rp, &good).unwrap();
    assert_eq!(resume().unwrap().epochs_run, 1);
}

/// A progress sink that aborts the run (by panicking inside a start call)
/// once `epochs` epochs have been checkpointed.
pub(crate) struct StopAfter {
    pub(crate) epochs: usize,
    pub(crate) seen: std::sync::atomic::AtomicUsize,
}

impl amun::progress::Progress for StopAfter {
    fn start(&self, label: &str, _total: u64) {
        if label.starts_with("train epoch") {
            let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == self.epochs {
                panic!("simulated kill");
            }
        }
    }
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let data = common::load("mnist", Some(400), Some(100));
    let a = train(&job(&data, recipe(1), None, false), &Quiet).unwrap();
    let b = train(&job(&data, recipe(1), None, false), &Quiet).unwrap();
    assert!(weights_equal(&a.model, &b.model));
    let mut j = job(&data, recipe(1), None, false);
    j.seed = 99;
    let c = train(&j, &Quiet).unwrap();
    assert!(!weights_equal(&a.model, &c.model));
}

#[test]
fn retraining_with_exclude_never_sees_a_forget_sample() {
    let data = common::load("mnist", Some(500), Some(100));
    let forget = ForgetSet::choose(&data, &ForgetSpec::Fraction(0.2), 3).unwrap();
    let set = amun::train::train_set(&data, Subset::Exclude(&forget), true);
    assert_eq!(set.len(), 400);
    let f: std::collections::HashSet<i64> = forget.indices.iter().copied().collect();
    let mut seen = 0;
    for b in set.epoch(64, 1) {
        assert!(b.origin.iter().all(|i| !f.contains(i)));
        seen += b.origin.len();
    }
    assert_eq!(seen, 400, "no sample dropped, none repeated");
}

/// A remainder under half a batch joins the last full batch (a 4-sample
/// SGD step destabilised a real retrain); a larger one is its own batch;
/// every sample still comes exactly once, and the count the schedules use
/// matches what the epoch yields.
#[test]
fn a_small_remainder_joins_the_last_batch() {
    for (limit, bs, sizes) in [
        (388usize, 128usize, vec![128usize, 128, 132]),
        (448, 128, vec![128, 128, 128, 64]),
        (500, 64, vec![64, 64, 64, 64, 64, 64, 64, 52]),
        (40, 64, vec![40]),
    ] {
        let keep: Vec<i64> = (0..limit as i64).collect();
        let d = common::load("mnist", Some(limit), Some(10));
        let set = amun::train::train_set(&d, Subset::All, false);
        let got: Vec<usize> = set.epoch(bs, 7).map(|b| b.origin.len()).collect();
        assert_eq!(got, sizes, "{limit} samples at batch {bs}");
        assert_eq!(set.batches_per_epoch(bs), sizes.len());
        assert_eq!(set.epoch(bs, 7).len(), sizes.len());
        let mut seen: Vec<i64> = set.epoch(bs, 7).flat_map(|b| b.origin).collect();
        seen.sort_unstable();
        assert_eq!(seen, keep);
    }
}

#[test]
fn bad_recipes_are_refused() {
    assert!(
        TrainParams::new()
            .epochs(0)
            .check()
            .unwrap_err()
            .to_string()
            .contains("epochs")
    );
    assert!(
        TrainParams::new()
            .lr(0.0)
            .check()
            .unwrap_err()
            .to_string()
            .contains("lr")
    );
    assert!(TrainParams::new().batch_size(0).check().is_err());
    assert!("step:0".parse::<amun::train::Schedule>().is_err());
    assert!("warp:3".parse::<amun::train::Schedule>().is_err());
    assert!(
        "nope"
            .parse::<Arch>()
            .unwrap_err()
            .to_string()
            .contains("small-cnn")
    );
}

#[test]
fn every_architecture_builds_and_runs_on_its_data_shape() {
    for (arch, shape) in [
        (Arch::SmallCnn, [1, 28, 28]),
        (Arch::Resnet18, [3, 32, 32]),
        (Arch::Resnet18Div2, [1, 28, 28]),
        (Arch::Vgg19, [3, 32, 32]),
    ] {
        let spec = ModelSpec::for_data(arch, shape, 10).unwrap();
        let m = Classifier::new(&spec, tch::Device::Cpu, 0).unwrap();
        let x = tch::Tensor::rand(
            [2, shape[0], shape[1], shape[2]],
            (tch::Kind::Float, tch::Device::Cpu),
        );
        assert_eq!(m.forward_t(&x, true).size(), vec![2, 10], "{arch}");
    }
    assert!(ModelSpec::for_data(Arch::Vgg19, [1, 28, 28], 10).is_err());
}

#[test]
fn bf16_autocast_and_channels_last_train_on_the_cpu() {
    let data = common::load("mnist", Some(1000), Some(200));
    let recipe = TrainParams::new()
        .epochs(3)
        .batch_size(32)
        .lr(0.02)
        .augment(false)
        .bf16(true)
        .channels_last(true)
        .check()
        .unwrap();
    let model = common::trained(&data, recipe, 1, Subset::All);
    let acc = accuracy(&model, &data.test).percent();
    assert!(acc > 85.0, "bf16 + channels-last test accuracy {acc}");
}

/// The multi-tensor SGD (CUDA's default) makes the per-tensor loop's update
/// (the CPU's): same momentum, weight decay, Nesterov and SalUn mask, on a
/// real model's gradients. Both run in lockstep from the same weights; after
/// each step they must agree to rounding, a few float32 ulps (a dropped
/// weight decay alone moves a BatchNorm weight by lr·5e-4·|θ| ≈ 5e-5), then the per-tensor weights are
/// copied over so that rounding does not compound through the next forward.
#[test]
fn foreach_sgd_matches_the_per_tensor_update() {
    use amun::train::{Sgd, cross_entropy};
    use std::collections::HashMap;
    use tch::{Device, Kind, Tensor};

    tch::manual_seed(11);
    let spec = ModelSpec::for_data(Arch::SmallCnn, [3, 32, 32], 10).unwrap();
    let x = Tensor::rand([16, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [16], (Kind::Int64, Device::Cpu));
    for (momentum, nesterov, masked) in [
        (0.9, false, false),
        (0.9, true, false),
        (0.0, false, false),
        (0.9, false, true),
    ] {
        let a = Classifier::new(&spec, Device::Cpu, 3).unwrap();
        let b = Classifier::new(&spec, Device::Cpu, 3).unwrap();
        let mut opt_a = Sgd::new(&a, momentum, 5e-4, nesterov);
        let mut opt_b = Sgd::new(&b, momentum, 5e-4, nesterov);
        assert!(
            !opt_a.foreach,
            "CPU parameters default to the per-tensor loop"
        );
        opt_b.foreach = true;
        if masked {
            // Every other parameter tensor half masked, the rest unmasked.
            let mask: HashMap<String, Tensor> = opt_a
                .params()
                .iter()
                .step_by(2)
                .map(|(n, p)| (n.clone(), p.rand_like().ge(0.5).to_kind(Kind::Float)))
                .collect();
            opt_a.set_grad_mask(&mask).unwrap();
            opt_b.set_grad_mask(&mask).unwrap();
        }
        let start: Vec<Tensor> = a.named_tensors().iter().map(|(_, t)| t.copy()).collect();
        for lr in [0.1, 0.05, 0.02] {
            for (m, opt) in [(&a, &mut opt_a), (&b, &mut opt_b)] {
                let loss = cross_entropy(&m.forward_t(&x, true), &y);
                opt.zero_grad();
                loss.backward();
                opt.step(lr);
            }
            for ((n, ta), (_, tb)) in a.named_tensors().iter().zip(b.named_tensors()) {
                let d = (ta - &tb).abs().max().double_value(&[]);
                let scale = ta.abs().max().double_value(&[]).max(1.0);
                assert!(
                    d <= 1e-6 * scale,
                    "{n}: foreach and per-tensor SGD differ by {d} at lr {lr} \
                     (momentum {momentum}, nesterov {nesterov}, mask {masked})"
                );
                tch::no_grad(|| tb.shallow_clone().copy_(ta));
            }
        }
        let moved = start
            .iter()
            .zip(a.named_tensors())
            .any(|(s, (_, t))| !s.equal(&t));
        assert!(moved, "three steps moved no weight");
    }
}
