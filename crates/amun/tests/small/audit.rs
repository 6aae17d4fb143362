//! The audit's arithmetic by hand, RMIA counting against brute force, and
//! both attacks on real models.
use crate::common;

use amun::audit::{
    RmiaParams, Scores, Signal, auc, audit, avg_gap, mean_std, mis, roc_curve, scores,
    scores_brute, signal, tpr_at_fpr, train_references,
};
use amun::data::{ForgetSet, ForgetSpec};
use amun::model::{Arch, ModelSpec};
use amun::progress::Quiet;
use amun::train::{Subset, TrainJob, TrainParams, train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

#[test]
fn auc_and_tpr_by_hand() {
    // 3 of 4 (pos, neg) pairs ordered: AUC 0.75.
    assert_eq!(auc(&[0.9, 0.4], &[0.5, 0.1]), 0.75);
    // A tie counts one half: pairs (2,1) win, (2,2) half, (3,·) win twice → 3.5/4.
    assert_eq!(auc(&[2.0, 3.0], &[1.0, 2.0]), 0.875);
    assert_eq!(auc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
    let roc = roc_curve(&[0.9, 0.4], &[0.5, 0.1]);
    assert_eq!(
        roc,
        vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
    );
    // 100 negatives: the top one sits at 1% FPR.
    let neg: Vec<f64> = (0..100).map(|i| i as f64).collect();
    let pos = vec![200.0, 150.0, 99.5, 50.0];
    assert_eq!(tpr_at_fpr(&pos, &neg, 0.0), 0.75);
    assert_eq!(tpr_at_fpr(&pos, &neg, 0.01), 0.75);
    assert_eq!(tpr_at_fpr(&pos, &neg, 0.5), 1.0);
}

#[test]
fn avg_gap_and_mean_std_arithmetic() {
    let r = Scores {
        unlearn: 94.49,
        retain: 100.0,
        test: 94.33,
        mia: 50.0,
    };
    let amun = Scores {
        unlearn: 95.45,
        retain: 99.57,
        test: 93.45,
        mia: 50.18,
    };
    // The paper's AMUN row: (0.96 + 0.43 + 0.88 + 0.18) / 4 = 0.6125 (0.62 in its table).
    assert!((avg_gap(&amun, &r) - 0.6125).abs() < 1e-9);
    assert_eq!(avg_gap(&r, &r), 0.0);
    let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    assert_eq!(m, 5.0);
    assert!((s - 2.138089935299395).abs() < 1e-12);
    assert!(mean_std(&[]).0.is_nan());
}

#[test]
fn rmia_counting_matches_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for trial in 0..20 {
        let nz = 1 + trial * 13;
        let z: Vec<f64> = (0..nz).map(|_| rng.random_range(0.01..5.0)).collect();
        // Candidates: some fresh, some members of the population, some ties.
        let mut x: Vec<f64> = (0..30).map(|_| rng.random_range(0.01..10.0)).collect();
        let mut me: Vec<Option<usize>> = vec![None; 30];
        for (k, j) in (0..nz.min(10)).enumerate() {
            x.push(z[j]);
            me.push(Some(j));
            let _ = k;
        }
        x.push(z[0] * 2.0); // an exact tie with the threshold
        me.push(None);
        for gamma in [0.5, 1.0, 2.0, 3.5] {
            let inside: Vec<bool> = me.iter().map(Option::is_some).collect();
            let fast = scores(&x, &z, &inside, gamma);
            let slow = scores_brute(&x, &z, &me, gamma);
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() < 1e-12, "gamma {gamma}, nz {nz}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn taylor_soft_margin_signal_by_hand() {
    // logits (2, 0), label 0, T = 2, margin 0.6, order 4: z = (1, 0).
    let t = |v: f64| 1.0 + v + v * v / 2.0 + v * v * v / 6.0;
    let want = t(1.0 - 0.6) / (t(1.0 - 0.6) + t(0.0));
    let got = signal(
        &Tensor::from_slice(&[2.0f32, 0.0]).view([1, 2]),
        &Tensor::from_slice(&[0i64]),
        Signal::default(),
    );
    assert!((got[0] - want).abs() < 1e-12, "{got:?} vs {want}");
    let soft = signal(
        &Tensor::from_slice(&[2.0f32, 0.0]).view([1, 2]),
        &Tensor::from_slice(&[0i64]),
        Signal::Softmax { temperature: 1.0 },
    );
    assert!((soft[0] - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12);
}

/// Reference models on MNIST-5k halves; a target retrained without a
/// forget set: RMIA must find D_F indistinguishable from D_T, while the
/// model trained on everything leaks membership.
#[test]
fn rmia_is_near_chance_on_unseen_data_and_above_it_on_members() {
    let data = common::load("mnist", Some(1000), Some(400));
    let spec = ModelSpec::for_data(Arch::SmallCnn, data.image_shape(), 10).unwrap();
    let recipe = TrainParams::new()
        .epochs(12)
        .batch_size(32)
        .lr(0.02)
        .augment(false)
        .check()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refs = train_references(&data, &spec, &recipe, 2, 5, dir.path(), &Quiet).unwrap();
    // Each pool row is IN for exactly one of the two models.
    assert!(
        refs.members[0]
            .iter()
            .zip(&refs.members[1])
            .all(|(a, b)| a != b)
    );
    let forget = ForgetSet::choose(&data, &ForgetSpec::Count(400), 2).unwrap();
    let fit = |subset: Subset<'_>, seed: u64| {
        let job = TrainJob {
            spec: spec.clone(),
            data: &data,
            recipe: recipe.clone(),
            seed,
            subset,
            out: None,
            resume: false,
            eval_each_epoch: false,
        };
        train(&job, &Quiet).unwrap().model
    };
    let p = RmiaParams::default();
    let retrain = audit(
        &fit(Subset::Exclude(&forget), 1),
        &data,
        &forget.indices,
        &refs,
        &p,
        0,
        0,
        &Quiet,
    )
    .unwrap();
    let original = audit(
        &fit(Subset::All, 1),
        &data,
        &forget.indices,
        &refs,
        &p,
        0,
        0,
        &Quiet,
    )
    .unwrap();
    eprintln!(
        "RMIA AUC D_F/D_T: retrain {:.2}, original {:.2}; D_R/D_T retrain {:.2}; MIS retrain {:.1} original {:.1}",
        retrain.scores.mia,
        original.scores.mia,
        retrain.rmia_auc_retain_test,
        retrain.mis,
        original.mis
    );
    assert!(
        (retrain.scores.mia - 50.0).abs() < 7.0,
        "retrain AUC {}",
        retrain.scores.mia
    );
    assert!(
        original.scores.mia > retrain.scores.mia + 5.0,
        "original AUC {} vs retrain {}",
        original.scores.mia,
        retrain.scores.mia
    );
    assert!(
        retrain.rmia_auc_retain_test > 55.0,
        "members of the retrain are detectable: {}",
        retrain.rmia_auc_retain_test
    );
    // A second call reuses the trained references (nothing to train).
    let again = train_references(&data, &spec, &recipe, 2, 5, dir.path(), &Quiet).unwrap();
    assert!(again.logits[0].equal(&refs.logits[0]));
    // Another setting in the same folder is refused.
    assert!(train_references(&data, &spec, &recipe, 4, 5, dir.path(), &Quiet).is_err());
}

#[test]
fn svc_mia_separates_members_from_non_members() {
    // Confidences as an overfit model gives them: members near 1, the rest spread.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let member = |rng: &mut ChaCha8Rng| 1.0 - rng.random_range(0.0..0.05f64).powi(2);
    let nonmember = |rng: &mut ChaCha8Rng| rng.random_range(0.0..1.0f64);
    let m: Vec<f64> = (0..500).map(|_| member(&mut rng)).collect();
    let n: Vec<f64> = (0..500).map(|_| nonmember(&mut rng)).collect();
    let held_m: Vec<f64> = (0..200).map(|_| member(&mut rng)).collect();
    let held_n: Vec<f64> = (0..200).map(|_| nonmember(&mut rng)).collect();
    let on_members = mis(&m, &n, &held_m, 0).unwrap();
    let on_nonmembers = mis(&m, &n, &held_n, 0).unwrap();
    assert!(
        on_members < 15.0,
        "members called non-member: {on_members}%"
    );
    assert!(
        on_nonmembers > 70.0,
        "non-members called non-member: {on_nonmembers}%"
    );
}

/// The references' manifest records every file's sha256, and loading them
/// checks what an audit reads: swapped logits files, an edited membership
/// table or one flipped byte are refused naming the file; a manifest of an
/// older version (no hashes) is read with a warning until `train-refs`
/// records them.
#[test]
fn tampered_reference_files_are_refused_naming_the_file() {
    use amun::audit::load_references;
    let data = common::load("mnist", Some(200), Some(100));
    let spec = ModelSpec::for_data(Arch::SmallCnn, data.image_shape(), 10).unwrap();
    let recipe = TrainParams::new()
        .epochs(1)
        .batch_size(32)
        .augment(false)
        .check()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train_references(&data, &spec, &recipe, 2, 5, d, &Quiet).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["files"].as_object().unwrap().len(), 1 + 2 * 3);
    assert!(load_references(d, &data).unwrap().notes.is_empty());
    let refused = |needle: &str| {
        let e = load_references(d, &data)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(needle) && e.contains("sha256"), "{e}");
    };
    let swap = |a: &str, b: &str| {
        let t = d.join("swap.tmp");
        std::fs::rename(d.join(a), &t).unwrap();
        std::fs::rename(d.join(b), d.join(a)).unwrap();
        std::fs::rename(&t, d.join(b)).unwrap();
    };
    let (l0, l1) = ("ref-000.logits.safetensors", "ref-001.logits.safetensors");
    swap(l0, l1);
    refused(l0);
    swap(l0, l1);
    for name in ["members.safetensors", l1] {
        let p = d.join(name);
        let good = std::fs::read(&p).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 1;
        bad[at] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        refused(name);
        std::fs::write(&p, &good).unwrap();
    }
    load_references(d, &data).unwrap();
    // A manifest without hashes (an older amun's: neither the files' nor its
    // own text's): read, with a warning saying how to record them.
    let mut old = manifest.clone();
    old.as_object_mut().unwrap().remove("files");
    old.as_object_mut().unwrap().remove("content_sha256");
    std::fs::write(d.join("manifest.json"), old.to_string()).unwrap();
    let notes = load_references(d, &data).unwrap().notes;
    assert!(
        notes.len() == 1 && notes[0].contains("amun rmia train-refs"),
        "{notes:?}"
    );
    // Finishing the folder again trains nothing and records them.
    train_references(&data, &spec, &recipe, 2, 5, d, &Quiet).unwrap();
    assert!(load_references(d, &data).unwrap().notes.is_empty());
    // A swapped model is not reused to recompute its logits, nor hashed
    // into the manifest: it is trained again, to the same bits.
    let (w0, logits0) = (
        std::fs::read(d.join("ref-000.safetensors")).unwrap(),
        std::fs::read(d.join(l0)).unwrap(),
    );
    swap("ref-000.safetensors", "ref-001.safetensors");
    swap("ref-000.json", "ref-001.json");
    std::fs::remove_file(d.join(l0)).unwrap();
    train_references(&data, &spec, &recipe, 2, 5, d, &Quiet).unwrap();
    assert!(std::fs::read(d.join("ref-000.safetensors")).unwrap() == w0);
    assert!(std::fs::read(d.join(l0)).unwrap() == logits0);
    load_references(d, &data).unwrap();
}

/// Issue 37 (hostile6 I6d): `rmia train-refs` killed in a reference
/// model's training, its resume state then deleted, kept that model's last
/// epoch as a finished reference model, and the audit scored against it.
/// An unfinished model without its resume state is trained again; one
/// sealed into a folder (as the version before this check made) is
/// refused by the audit, naming the file and how far it got.
#[test]
fn an_unfinished_reference_model_is_trained_again_never_used() {
    use amun::audit::{RefSetup, load_references};
    let data = common::load("mnist", Some(200), Some(100));
    let spec = ModelSpec::for_data(Arch::SmallCnn, data.image_shape(), 10).unwrap();
    let recipe = TrainParams::new()
        .epochs(2)
        .batch_size(32)
        .augment(false)
        .check()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Killed as model 1 starts its second epoch (the fourth of the folder).
    let stop = crate::train::StopAfter {
        epochs: 3,
        seen: std::sync::atomic::AtomicUsize::new(0),
    };
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_references(&data, &spec, &recipe, 2, 5, d, &stop)
    }));
    assert!(killed.is_err(), "the stop hook interrupts the run");
    let done = |k: usize| {
        let p = d.join(format!("ref-{k:03}.json"));
        let sc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        sc["origin"]["epochs_done"].as_u64().unwrap()
    };
    assert_eq!(done(1), 1);
    let rp = d.join("ref-001.resume.safetensors");
    let unfinished = [
        "ref-001.safetensors",
        "ref-001.json",
        "ref-001.resume.safetensors",
    ]
    .map(|n| (n, std::fs::read(d.join(n)).unwrap()));
    let put_back = || {
        for (n, bytes) in &unfinished {
            std::fs::write(d.join(n), bytes).unwrap();
        }
    };
    std::fs::remove_file(&rp).unwrap();
    train_references(&data, &spec, &recipe, 2, 5, d, &Quiet).unwrap();
    assert_eq!(done(1), 2, "the unfinished model is trained to the end");
    // I6c: a changed resume state is refused with a remedy that works
    // here (train-refs has no --resume flag to leave out).
    put_back();
    let mut bytes = std::fs::read(&rp).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&rp, &bytes).unwrap();
    let e = train_references(&data, &spec, &recipe, 2, 5, d, &Quiet)
        .err()
        .expect("a changed resume state is refused")
        .to_string();
    assert!(
        e.contains("delete")
            && e.contains("ref-001.resume.safetensors and ")
            && e.contains("/ref-001.safetensors to start the run over"),
        "{e}"
    );
    // The unfinished model sealed into the manifest, as the version
    // before this check did.
    std::fs::remove_file(&rp).unwrap();
    let setup = RefSetup {
        data: &data,
        spec: &spec,
        recipe: &recipe,
        count: 2,
        seed: 5,
        dir: d,
    };
    setup.seal().unwrap();
    let e = load_references(d, &data)
        .err()
        .expect("an unfinished reference model is refused")
        .to_string();
    assert!(
        e.contains("ref-001.safetensors") && e.contains("epoch 1 of the 2"),
        "{e}"
    );
}
