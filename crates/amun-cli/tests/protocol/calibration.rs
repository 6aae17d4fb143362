//! Retrain-free calibration on real MNIST-5k and CIFAR-10 slices: what it
//! keeps, refuses and stops on, and the continuing walk against the
//! restarting ladder. (Their module name sorts first, so that libtest
//! starts these, the tier's longest, before the rest rather than last.)
use crate::common;
use common::{
    Args, amun, fails_with, ok, path_in, read_json as read, split_mnist, stdout, train_mnist,
    unlearn,
};
use std::path::Path;
use std::process::{Command, Output};

/// `amun ARGS` on 2 libtorch threads. scripts/test.sh runs tests on one
/// thread each (faster on CI's 2 cores), but a calibration's trajectory
/// depends on the thread count (float sums in another order), and the
/// CIFAR calibration tests' claims (a relaxed pass happens; the walk is no
/// worse than the ladder) were measured on CI's 2 threads: on 1, the first
/// epoch at lr 0.03 lost 8 points of held-out accuracy against a guard of
/// 7.6 and the walk chose 5.6 against the ladder's 3.1. These tests pin
/// the conditions they were measured under.
fn amun_at_2(args: &[&str]) -> Output {
    Command::new(common::bin())
        .env("OMP_NUM_THREADS", "2")
        .args(args)
        .output()
        .expect("running amun")
}

/// [`common::unlearn`] on 2 libtorch threads ([`amun_at_2`]).
fn unlearn_at_2(ck: &str, forget: &str, method: &str, out: &str, extra: &[&str]) -> Output {
    amun_at_2(&common::unlearn_args(ck, forget, method, out, extra).words())
}

/// RL without the retain set at its published learning rate collapses the
/// model; calibrated, it keeps held-out accuracy near the original's and
/// does not push the forget set below unseen data (two-sided), with what it
/// chose recorded in the sidecar.
#[test]
fn calibration_rolls_back_over_unlearning() {
    let d = tempfile::tempdir().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    ok(&train_mnist(&m, "600", "8", &[]));
    let f = path_in(d.path(), "f.json");
    split_mnist("600", "60", &f, &["--seed", "3"]);
    let acc = |ck: &str| -> (f64, f64) {
        let o = amun(&["eval", "--checkpoint", ck, "--forget", &f, "--json"]);
        ok(&o);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        (
            v["forget"]["accuracy"].as_f64().unwrap(),
            v["test"]["accuracy"].as_f64().unwrap(),
        )
    };
    let (_, test0) = acc(&m);
    let plain = path_in(d.path(), "plain.safetensors");
    ok(&unlearn(
        &m,
        &f,
        "rl",
        &plain,
        &["--no-retain", "--lr", "0.1"],
    ));
    let (_, test_plain) = acc(&plain);
    assert!(
        test_plain < test0 - 20.0,
        "RL at lr 0.1 without D_R should collapse: test {test0} → {test_plain}"
    );
    let cal = path_in(d.path(), "cal.safetensors");
    ok(&unlearn(
        &m,
        &f,
        "rl",
        &cal,
        &["--no-retain", "--calibrate", "--holdout-test", "100"],
    ));
    let (forget_c, test_c) = acc(&cal);
    assert!(
        test_c >= test0 - 5.0,
        "calibrated RL lost utility: test {test0} → {test_c}"
    );
    assert!(
        forget_c >= test_c - 10.0,
        "calibrated RL over-unlearned: forget {forget_c} vs test {test_c}"
    );
    let side = read(&Path::new(&cal).with_extension("json"));
    let text = side.to_string();
    assert!(
        text.contains("\"calibration\""),
        "no calibration record: {text}"
    );
    assert!(text.contains("\"chosen\""), "{text}");
}

/// A small CNN that memorised `n` CIFAR-10 images (no augmentation, 20
/// epochs: train 100%, test under 50%) and a forget set of a tenth of them.
fn memorising_cifar(dir: &Path, n: usize) -> (String, String) {
    common::ensure("cifar10");
    let (n, k) = (n.to_string(), (n / 10).to_string());
    let m = path_in(dir, "m.safetensors");
    ok(&amun_at_2(&[
        "train",
        "--dataset",
        "cifar10",
        "--train-limit",
        &n,
        "--test-limit",
        "1000",
        "--augment",
        "off",
        "--epochs",
        "20",
        "--lr",
        "0.02",
        "--out",
        &m,
        "-q",
    ]));
    let f = path_in(dir, "f.json");
    ok(&amun_at_2(&[
        "split",
        "--dataset",
        "cifar10",
        "--train-limit",
        &n,
        "--forget",
        &k,
        "--seed",
        "3",
        "--out",
        &f,
    ]));
    (m, f)
}

/// AMUN divides its rate by 10 every epoch; when the best state of the
/// restarting ladder still remembers the forget set, calibration runs the
/// ladder again at a constant rate (and records it), which here forgets
/// more than the decayed run. A method whose schedule is already constant
/// is not re-run.
#[test]
fn calibration_relaxes_a_decaying_schedule_that_under_unlearns() {
    let d = tempfile::tempdir().unwrap();
    let (m, f) = memorising_cifar(d.path(), 500);
    let run = |extra: &[&str]| {
        let out = path_in(d.path(), "cal.safetensors");
        let mut a = vec![
            "--no-retain",
            "--calibrate",
            "--holdout-test",
            "300",
            "--calibrate-lrs",
            "0.03",
            "--calibrate-walk",
            "restart",
            // What is tested is the relaxed pass after an under-unlearned
            // best state, not the guard: without D_R these states lose
            // more held-out accuracy than one standard error allows (stop
            // 52), and the original would be the best state.
            "--calibrate-max-drop",
            "10",
            "--epochs",
            "3",
            "--pgd-steps",
            "10",
        ];
        a.extend_from_slice(extra);
        ok(&unlearn_at_2(&m, &f, "amun", &out, &a));
        read(&Path::new(&out).with_extension("json"))["origin"]["calibration"].clone()
    };
    let c = run(&[]);
    let table = c["table"].as_array().unwrap();
    let relaxed: Vec<_> = table
        .iter()
        .filter(|r| r["schedule"] == "constant")
        .collect();
    assert_eq!(c["epochs_worst_case"], 6, "{c}");
    assert!(!relaxed.is_empty(), "no relaxed pass: {c}");
    let forget = |r: &serde_json::Value| r["probe"]["forget_acc"].as_f64().unwrap();
    let decayed_best = table
        .iter()
        .filter(|r| r["epoch"].as_u64() > Some(0) && r["schedule"].is_null())
        .map(forget)
        .fold(f64::INFINITY, f64::min);
    // Both passes share their first epoch (the decay has not begun), so the
    // relaxed pass's best may equal the decayed one's (seen on an AMD EPYC
    // without AVX-512); it must never forget less.
    assert!(
        relaxed
            .iter()
            .map(|r| forget(r))
            .fold(f64::INFINITY, f64::min)
            <= decayed_best,
        "the constant rate should forget no less than the decayed one: {c}"
    );
    let c = run(&["--schedule", "constant"]);
    assert_eq!(c["epochs_worst_case"], 3, "{c}");
    assert!(
        c["table"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["schedule"].is_null()),
        "{c}"
    );
}

/// The other side: a model that memorised its training data (CIFAR-10
/// slice, no augmentation: train 100%, test ~50%) keeps its forget set at
/// 100% under RL's default lr; calibration drives forget accuracy down to
/// the held-out accuracy (within its noise), keeps utility within the
/// guard, and stops the ladder early instead of trying every rung.
#[test]
fn calibration_stops_an_under_unlearning_run() {
    let d = tempfile::tempdir().unwrap();
    let (m, f) = memorising_cifar(d.path(), 1000);
    let cal = path_in(d.path(), "cal.safetensors");
    ok(&unlearn_at_2(
        &m,
        &f,
        "rl",
        &cal,
        // The walk's stopping is tested here, under the fixed 10-point
        // guard it was written for: the data's guard (6.4 points on this
        // 47%-accurate model) holds RL to an earlier state (issue 35's
        // measurement of that choice is open).
        &[
            "--calibrate",
            "--holdout-test",
            "500",
            "--calibrate-max-drop",
            "10",
        ],
    ));
    let side = read(&Path::new(&cal).with_extension("json"));
    let c = &side["origin"]["calibration"];
    let acc = |v: &serde_json::Value, k: &str| v["probe"][k].as_f64().unwrap();
    let (orig, chosen) = (&c["table"][0], &c["chosen"]);
    assert!(
        acc(orig, "forget_acc") >= 95.0 && acc(orig, "heldout_acc") <= 65.0,
        "the original should have memorised its data: {orig}"
    );
    let (forget, heldout) = (acc(chosen, "forget_acc"), acc(chosen, "heldout_acc"));
    assert!(
        forget <= acc(orig, "forget_acc") - 30.0 && (forget - heldout).abs() <= 8.0,
        "calibration should bring forget accuracy to the held-out one: {chosen}"
    );
    assert!(
        chosen["keeps_utility"].as_bool() == Some(true)
            && heldout >= acc(orig, "heldout_acc") - 10.0,
        "calibration lost utility: {chosen}"
    );
    let (run, worst) = (
        c["epochs_run"].as_u64().unwrap(),
        c["epochs_worst_case"].as_u64().unwrap(),
    );
    assert!(
        run < worst,
        "the ladder should stop early: {run} of {worst}"
    );
}

/// The continuing walk (the default) chooses a state that passes the same
/// rule and guard as the restarting ladder — utility and membership kept —
/// on a model that remembers its forget set (the demo's: a small CNN on
/// 2,000 CIFAR-10 images, forget ~88% against held-out ~60%), in no more
/// epochs; it unlearns beyond the noise, ends no further from the target
/// than the ladder's state by more than that noise, and its verdict says
/// whether the forget set is still detectably remembered.
///
/// Which of the two gets nearer is one trajectory's luck, and the
/// trajectory depends on the CPU's vector units: on the machine of stop 53
/// the walk reached the band and the ladder did not; on an Intel Xeon with
/// AVX-512 FP16 (stop 54) the walk ended at +9.5 (band 7.6) after 7 epochs,
/// its lr 3e-2 leg having lost utility, and the ladder at +6.5 after 25
/// (docs/CALIBRATION.md, "The continuing walk against the restarting
/// ladder", compares them over seeds and methods).
#[test]
fn the_continuing_walk_calibrates_in_no_more_epochs_than_the_restarting_ladder() {
    common::ensure("cifar10");
    let d = tempfile::tempdir().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    ok(&amun_at_2(&[
        "train",
        "--dataset",
        "cifar10",
        "--train-limit",
        "2000",
        "--test-limit",
        "1500",
        "--epochs",
        "30",
        "--batch-size",
        "64",
        "--lr",
        "0.05",
        "--schedule",
        "onecycle:0.25",
        "--device",
        "cpu",
        "--out",
        &m,
        "-q",
    ]));
    let f = path_in(d.path(), "f.json");
    ok(&amun_at_2(&[
        "split",
        "--dataset",
        "cifar10",
        "--train-limit",
        "2000",
        "--forget",
        "0.1",
        "--seed",
        "0",
        "--out",
        &f,
    ]));
    let run = |walk: &str| {
        let out = path_in(d.path(), &format!("{walk}.safetensors"));
        ok(&unlearn_at_2(
            &m,
            &f,
            "amun",
            &out,
            &[
                "--calibrate",
                "--holdout-test",
                "500",
                "--calibrate-walk",
                walk,
            ],
        ));
        read(&Path::new(&out).with_extension("json"))["origin"]["calibration"].clone()
    };
    let (cont, restart) = (run("continue"), run("restart"));
    let acc = |v: &serde_json::Value, k: &str| v["probe"][k].as_f64().unwrap();
    let orig = &cont["table"][0];
    assert!(
        acc(orig, "forget_acc") - acc(orig, "heldout_acc") > 15.0,
        "the original should remember its forget set: {orig}"
    );
    for (walk, c) in [("continue", &cont), ("restart", &restart)] {
        let chosen = &c["chosen"];
        assert!(
            chosen["keeps_utility"] == true && chosen["membership_ok"] == true,
            "{walk}: an inadmissible state: {chosen}"
        );
    }
    // It unlearns: forget accuracy falls by more than the band around the
    // target (the rule's noise at these sample sizes).
    let chosen = &cont["chosen"];
    let band = cont["accuracy_band"].as_f64().unwrap();
    let (target, forget) = (acc(orig, "heldout_acc"), acc(chosen, "forget_acc"));
    assert!(
        acc(orig, "forget_acc") - forget > band,
        "continue: forget accuracy fell by no more than the band ({band:.1}): {chosen}"
    );
    // Its verdict is the numbers': a forget accuracy above the band (a
    // state that keeps utility) is "still detectably memorised", never
    // "reached"; one within it is reached unless the membership test fails.
    let verdict = cont["verdict"].as_str().unwrap();
    assert_eq!(
        cont["remembers"] == true,
        verdict.starts_with("still detectably memorised"),
        "{cont}"
    );
    if forget - target > band {
        assert!(
            chosen["reached"] == false && cont["remembers"] == true,
            "continue: a state above the band ({band:.1}) not recorded as remembering: {cont}"
        );
    } else if (forget - target).abs() <= band {
        let auc = acc(chosen, "loss_auc");
        let auc_band = cont["auc_band"].as_f64().unwrap();
        assert_eq!(
            chosen["reached"] == true,
            (auc - 50.0).abs() <= auc_band,
            "continue: {cont}"
        );
    }
    // No further from the target than the ladder's state by more than
    // that band.
    let score = |c: &serde_json::Value| c["chosen"]["score"].as_f64().unwrap();
    assert!(
        score(&cont) <= score(&restart) + band,
        "the continuing walk chose a worse state ({}) than the ladder ({}) by more than the \
         band ({band:.1} points)",
        score(&cont),
        score(&restart)
    );
    let epochs = |c: &serde_json::Value| c["epochs_run"].as_u64().unwrap();
    // Under the data's utility guard (issue 35) both took 18 epochs on the
    // machine of stop 53, 7 and 25 on stop 54's: never more.
    assert!(
        epochs(&cont) <= epochs(&restart),
        "the continuing walk took {} epochs, the restarting ladder {}",
        epochs(&cont),
        epochs(&restart)
    );
    // The chosen state's path is recorded leg by leg and adds up.
    let path = cont["chosen"]["path"].as_array().unwrap();
    let legs: u64 = path.iter().map(|l| l["epochs"].as_u64().unwrap()).sum();
    assert_eq!(legs, cont["chosen"]["epoch"].as_u64().unwrap(), "{cont}");
}

/// Held-out data for calibration must be unseen: a folder holding training
/// images, or a `--holdout-test` of every test image, is refused before
/// any work, naming what is wrong.
#[test]
fn calibration_refuses_held_out_data_that_is_not_held_out() {
    let d = tempfile::tempdir().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    common::mnist_trained_once(Path::new(&m), "300", "1");
    let f = path_in(d.path(), "f.json");
    split_mnist("300", "30", &f, &[]);
    let out = path_in(d.path(), "u.safetensors");
    let calibrate = |extra: &[&str]| {
        let mut a = vec!["--calibrate"];
        a.extend_from_slice(extra);
        unlearn(&m, &f, "ft", &out, &a)
    };
    // The test split has 200 images (train_mnist's --test-limit).
    let o = calibrate(&["--holdout-test", "200"]);
    fails_with(&o, &["holdout-test"]);
    let o = calibrate(&["--holdout-test", "0"]);
    fails_with(&o, &["holdout-test"]);
    let o = calibrate(&[]);
    fails_with(&o, &["--holdout"]);
    // The utility guard is a number of points, never negative.
    let o = calibrate(&["--holdout-test", "100", "--calibrate-max-drop", "-1"]);
    fails_with(&o, &["--calibrate-max-drop", "-1"]);
    assert!(!Path::new(&out).exists());

    // A folder made of the model's own training images.
    let dir = d.path().join("leak");
    let data = amun::data::DataSpec::new("mnist")
        .load(&amun::data::default_data_dir())
        .unwrap();
    for (split, sub) in [(&data.train, "train"), (&data.test, "test")] {
        // Two images of each class, from the front of the split (the
        // model's 300 training images include them).
        let all = split.label_vec();
        let labels = &all;
        let picks: Vec<i64> = (0..10)
            .flat_map(|c| {
                (0..labels.len().min(300) as i64)
                    .filter(move |&i| labels[i as usize] == c)
                    .take(2)
            })
            .collect();
        for i in picks {
            let label = split.labels.int64_value(&[i]);
            let cls = dir.join(sub).join(label.to_string());
            std::fs::create_dir_all(&cls).unwrap();
            let px = Vec::<u8>::try_from(split.images.get(i).flatten(0, -1)).unwrap();
            image::GrayImage::from_raw(28, 28, px)
                .unwrap()
                .save(cls.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let o = calibrate(&["--holdout", dir.to_str().unwrap()]);
    fails_with(&o, &["leak", "training"]);
    assert!(!Path::new(&out).exists());
}

/// The membership side of calibration (issue 27's case, smaller): RL with
/// D_R on MNIST soon brings the forget accuracy within noise of held-out
/// while the forget set's loss-AUC sinks far below 50 (it then looks *less*
/// like members than unseen data: as telling as a memorised one).
/// Calibration records the band, refuses those states whatever their
/// accuracy says, says so, and keeps a state inside the band. (On the
/// restarting ladder, whose rungs run the method's decaying schedule and
/// pass through such states; the continuing walk reaches an admissible
/// state at its first epoch here, so it meets none to refuse. Both walks
/// share the admissibility test.)
#[test]
fn calibration_refuses_states_the_membership_signal_calls_over_unlearned() {
    common::ensure("mnist");
    let d = tempfile::tempdir().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    let train = Args::train_mnist("2000", "1000")
        .quick("6")
        .with("--out", &m)
        .and(&["-q"]);
    ok(&train.run());
    let f = path_in(d.path(), "f.json");
    split_mnist("2000", "200", &f, &["--seed", "3"]);
    let cal = path_in(d.path(), "cal.safetensors");
    let out = unlearn(
        &m,
        &f,
        "rl",
        &cal,
        &[
            "--calibrate",
            "--holdout-test",
            "500",
            "--calibrate-walk",
            "restart",
            // The membership test is what is tested here: a fixed utility
            // guard (the held-out error, as before issue 35) lets the walk
            // reach the states that fool the accuracy test; the data's
            // guard (1.5 points here) refuses them for their utility first.
            "--calibrate-max-drop",
            "3.2",
        ],
    );
    ok(&out);
    let side = read(&Path::new(&cal).with_extension("json"));
    let c = &side["origin"]["calibration"];
    let band = c["auc_band"].as_f64().unwrap();
    // 1.96 standard errors (the 0.05 level) of an AUC of 200 against 500
    // samples.
    assert!((band - 4.73).abs() < 0.05, "{band}");
    let auc = |v: &serde_json::Value| v["probe"]["loss_auc"].as_f64().unwrap();
    let acc = |v: &serde_json::Value, k: &str| v["probe"][k].as_f64().unwrap();
    let accuracy_band = c["accuracy_band"].as_f64().unwrap();
    let table = c["table"].as_array().unwrap();
    let target = acc(&table[0], "heldout_acc");
    // States the accuracy test alone would call calibrated, refused by the
    // membership signal.
    let fooling: Vec<&serde_json::Value> = table
        .iter()
        .filter(|s| {
            auc(s) < 50.0 - band
                && s["keeps_utility"] == true
                && (acc(s, "forget_acc") - target).abs() <= accuracy_band
        })
        .collect();
    assert!(
        !fooling.is_empty(),
        "no state within the accuracy noise had a loss-AUC below {:.1}: {c}",
        50.0 - band
    );
    for s in table {
        assert_eq!(s["membership_ok"] == true, auc(s) >= 50.0 - band, "{s}");
    }
    let chosen = &c["chosen"];
    assert!(
        auc(chosen) >= 50.0 - band && chosen["membership_ok"] == true,
        "calibration chose an over-unlearned state: {chosen}"
    );
    assert!(
        c["why"]
            .as_str()
            .unwrap()
            .contains("over-unlearned by membership"),
        "{c}"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("±{band:.1} is the null band")),
        "{printed}"
    );
}
