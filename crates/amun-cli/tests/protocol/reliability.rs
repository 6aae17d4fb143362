//! Regression tests of the hostile-user audit (issue 13): each case gave a
//! wrong result with exit code 0, or a panic, before it was fixed. Run with
//! `AMUN_TEST_BIN=<older amun>` to see them fail on an older build.
use crate::common;
use common::{amun, ensure, fails_with, ok, path_in, stderr, stdout, train_mnist};

/// 1. `--resume` on a finished checkpoint returned the old model whatever
///    the settings, so `--exclude` handed back a model trained on the forget
///    set as the "retrain".
#[test]
fn resuming_a_finished_run_with_other_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| path_in(dir.path(), f);
    ok(&train_mnist(&p("m.safetensors"), "400", "1", &[]));
    ok(&amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "400",
        "--forget",
        "0.1",
        "--out",
        &p("forget.json"),
    ]));
    let resume = |extra: &[&str], limit: &str| {
        let mut a = vec!["--resume"];
        a.extend_from_slice(extra);
        train_mnist(&p("m.safetensors"), limit, "1", &a)
    };
    fails_with(
        &resume(&["--exclude", &p("forget.json")], "400"),
        &[
            "m.safetensors",
            "finished run of other settings",
            "subset differs",
        ],
    );
    fails_with(
        &resume(&["--seed", "3"], "400"),
        &["finished run of other settings", "seed differs"],
    );
    fails_with(
        &resume(&[], "300"),
        &["finished run of other settings", "data differs"],
    );
    let o = resume(&["--weight-decay", "0.01"], "400");
    fails_with(&o, &["recipe differs"]);
    // The same settings hand the finished model back, untouched.
    let w = dir.path().join("m.safetensors");
    let before = amun::data::sha256_file(&w).unwrap();
    ok(&resume(&[], "400"));
    assert_eq!(amun::data::sha256_file(&w).unwrap(), before);
}

/// 2. The same with another dataset: a libtorch panic (exit 101, C++
///    backtrace). Now one error line.
#[test]
fn resuming_on_other_data_is_an_error_not_a_panic() {
    ensure("cifar10");
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| path_in(dir.path(), f);
    common::mnist_trained_once(&dir.path().join("m.safetensors"), "300", "1");
    let o = common::Args::of(&["train", "--dataset", "cifar10"])
        .with("--train-limit", "300")
        .with("--test-limit", "200")
        .quick("1")
        .and(&["--resume", "--out", &p("m.safetensors"), "-q"])
        .run();
    fails_with(&o, &["m.safetensors", "other settings", "data"]);
}

const TINY: &str = r#"name = "tiny"
model = "small-cnn"
seeds = [0]
device = "cpu"

[data]
dataset = "mnist"
train_limit = 300
test_limit = 100

[train]
epochs = 2
batch_size = 32
lr = 0.02
augment = false

[forget]
fractions = [0.1]
with_retain = [true]

[rmia]
reference_models = 2

[methods.ft]
finetune.epochs = 1
"#;

/// Every model's audit in the report (timings left out: they vary).
fn report_audits(out: &std::path::Path) -> Vec<serde_json::Value> {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| serde_json::json!([x["method"], x["audit"]]))
        .collect()
}

/// 3. A bit-flipped artifact, or the retrain replaced by the original model,
///    was "up to date" and the report was built on it.
#[test]
fn experiment_recomputes_changed_or_swapped_artifacts() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let out = dir.path().join("run");
    let run = || {
        amun(&[
            "experiment",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    ok(&run());
    let first = report_audits(&out);
    // Swap: the retrain's files replaced by the original's.
    for ext in ["safetensors", "json"] {
        std::fs::copy(
            out.join(format!("original-s0.{ext}")),
            out.join(format!("retrain-s0-f0.1.{ext}")),
        )
        .unwrap();
    }
    let o = run();
    ok(&o);
    assert!(
        !stderr(&o).contains("retrain-s0-f0.1: up to date"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        report_audits(&out),
        first,
        "the retrain is recomputed, bit for bit"
    );
    // One bit flipped in the unlearned model.
    let ft = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("unlearn-ft") && n.ends_with(".safetensors")
        })
        .unwrap();
    let mut bytes = std::fs::read(&ft).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    std::fs::write(&ft, &bytes).unwrap();
    let o = run();
    ok(&o);
    assert!(stderr(&o).contains("ft (with D_R)"), "{}", stderr(&o));
    assert_eq!(report_audits(&out), first);
}

/// 4. References trained on another dataset were accepted when the pool
///    sizes matched (CIFAR-10 references for an MNIST model).
#[test]
fn references_of_other_data_are_refused() {
    ensure("cifar10");
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| path_in(dir.path(), f);
    ok(&amun(&[
        "rmia",
        "train-refs",
        "--dataset",
        "cifar10",
        "--train-limit",
        "300",
        "--test-limit",
        "200",
        "--count",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        &p("refs"),
        "-q",
    ]));
    common::mnist_trained_once(&dir.path().join("m.safetensors"), "300", "1");
    ok(&amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "300",
        "--forget",
        "30",
        "--out",
        &p("forget.json"),
    ]));
    let o = amun(&[
        "audit",
        "--checkpoint",
        &p("m.safetensors"),
        "--forget",
        &p("forget.json"),
        "--refs",
        &p("refs"),
        "--device",
        "cpu",
    ]);
    fails_with(
        &o,
        &["manifest.json", "reference models", "cifar10", "mnist"],
    );
}

/// 5. A run diverging in epoch 2 said "nothing was written" but left the
///    epoch-1 checkpoint; non-finite weights loaded silently.
#[test]
fn divergence_says_what_was_left_and_non_finite_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| path_in(dir.path(), f);
    // Epoch 1 at lr 0.02, then ×1e9: diverges in epoch 2.
    let o = train_mnist(
        &p("d.safetensors"),
        "300",
        "3",
        &["--schedule", "multistep:1:1e9", "--momentum", "0"],
    );
    fails_with(
        &o,
        &[
            "diverged in epoch 2",
            "left on disk",
            "d.safetensors",
            "epoch 1 of 3",
        ],
    );
    // What was left is finite and said to be incomplete when used.
    let o = amun(&[
        "eval",
        "--checkpoint",
        &p("d.safetensors"),
        "--device",
        "cpu",
    ]);
    ok(&o);
    assert!(
        stderr(&o).contains("incomplete") && stderr(&o).contains("1 of 3 epochs"),
        "{}",
        stderr(&o)
    );
    // A model whose weights hold NaN (sidecar updated to match) is refused.
    common::mnist_trained_once(&dir.path().join("m.safetensors"), "300", "1");
    let w = dir.path().join("m.safetensors");
    let mut t = tch::Tensor::read_safetensors(&w).unwrap();
    for (k, v) in t.iter_mut() {
        if k == "bn1.running_var" {
            *v = v.fill(f64::NAN);
        }
    }
    tch::Tensor::write_safetensors(&t, &w).unwrap();
    let sc_path = dir.path().join("m.json");
    let mut sc: amun::model::Sidecar =
        serde_json::from_slice(&std::fs::read(&sc_path).unwrap()).unwrap();
    sc.weights_sha256 = Some(amun::data::sha256_file(&w).unwrap());
    // Signed as amun signs a sidecar, so the weights are read.
    sc.content_sha256 = None;
    amun::fsutil::write_json_signed(&sc_path, &sc).unwrap();
    let o = amun(&[
        "eval",
        "--checkpoint",
        &p("m.safetensors"),
        "--device",
        "cpu",
    ]);
    fails_with(&o, &["m.safetensors", "non-finite", "bn1.running_var"]);
}

/// A sidecar copied beside another model's weights went unnoticed.
#[test]
fn a_sidecar_beside_other_weights_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| path_in(dir.path(), f);
    common::mnist_trained_once(&dir.path().join("a.safetensors"), "300", "1");
    ok(&train_mnist(
        &p("b.safetensors"),
        "300",
        "1",
        &["--seed", "1"],
    ));
    std::fs::copy(dir.path().join("a.json"), dir.path().join("b.json")).unwrap();
    let o = amun(&[
        "eval",
        "--checkpoint",
        &p("b.safetensors"),
        "--device",
        "cpu",
    ]);
    fails_with(&o, &["b.safetensors", "does not match its sidecar"]);
    // The untouched pair still loads.
    let o = amun(&[
        "eval",
        "--checkpoint",
        &p("a.safetensors"),
        "--device",
        "cpu",
        "--json",
    ]);
    ok(&o);
    assert!(stdout(&o).contains("\"test\""));
}

/// Output paths are checked before any work (here: before the dataset is
/// even looked at), and a failing command leaves no folder behind.
#[test]
fn bad_outputs_fail_first_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| path_in(dir.path(), f);
    let o = amun(&[
        "train",
        "--dataset",
        "/no/such/data",
        "--device",
        "cpu",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    fails_with(&o, &["--out", "is a folder", ".safetensors"]);
    let o = amun(&[
        "train",
        "--dataset",
        "/no/such/data",
        "--device",
        "cpu",
        "--out",
        &p("new/sub/model.bin"),
    ]);
    fails_with(&o, &["--out", "model.bin", "ending in .safetensors"]);
    // A good path in a new folder, but bad data: the folder is not left.
    let o = amun(&[
        "train",
        "--dataset",
        "/no/such/data",
        "--device",
        "cpu",
        "--out",
        &p("new/sub/model.safetensors"),
    ]);
    fails_with(&o, &["/no/such/data"]);
    assert!(!dir.path().join("new").exists());
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &p("none.safetensors"),
        "--forget",
        &p("none.json"),
        "--method",
        "ft",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    fails_with(&o, &["--out", "is a folder"]);
    // An OS error is printed once.
    let o = amun(&[
        "split",
        "--dataset",
        "mnist",
        "--forget",
        "0.1",
        "--out",
        "/proc/no/such.json",
    ]);
    let e = stderr(&o);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
}

/// Config errors name the file, the line and the key.
#[test]
fn config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let check = |text: String, needles: &[&str]| {
        std::fs::write(&cfg, text).unwrap();
        let o = amun(&[
            "experiment",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            &path_in(dir.path(), "run"),
        ]);
        fails_with(&o, needles);
        assert!(!dir.path().join("run").exists());
    };
    check(
        TINY.replace("test_limit = 100", "test_limit = 0"),
        &["c.toml", "line 9", "data.test_limit"],
    );
    check(
        TINY.replace("train_limit = 300", "train_limit = 0"),
        &["c.toml", "line 8", "data.train_limit"],
    );
    check(
        TINY.replace("dataset = \"mnist\"", "dataset = \"mnsit\""),
        &["c.toml", "line 7", "data.dataset", "mnsit"],
    );
    check(
        TINY.replace("finetune.epochs = 1", "finetune.lr = \"fast\""),
        &["c.toml", "line 25", "ft.finetune.lr", "invalid type"],
    );
    check(
        TINY.replace("finetune.epochs = 1", "finetune.lr = -0.5"),
        &["c.toml", "line 25", "ft.finetune.lr", "positive"],
    );
    check(
        TINY.replace(
            "[methods.ft]\nfinetune.epochs = 1",
            "[methods.ft.finetune]\nlr = -0.5",
        ),
        &["c.toml", "line 25", "ft.finetune.lr"],
    );
    // A dataset folder relative to the config resolves against the config.
    check(
        TINY.replace("dataset = \"mnist\"", "dataset = \"imgs\""),
        &["c.toml", "line 7", "imgs"],
    );
    std::fs::create_dir_all(dir.path().join("imgs/cat")).unwrap();
    check(
        TINY.replace("dataset = \"mnist\"", "dataset = \"imgs\""),
        &["c.toml", "[data]", "no images found", "imgs"],
    );
}

/// Bad values on the command line say which and why.
#[test]
fn command_line_values_are_named() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| path_in(dir.path(), f);
    let o = amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "100000",
        "--forget",
        "0.1",
        "--out",
        &p("f.json"),
    ]);
    fails_with(&o, &["train-limit", "100000 exceeds the 4000 train images"]);
    // MNIST-5k interleaves its classes: the first 5 images are 0..4.
    let o = amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "5",
        "--class",
        "7",
        "--out",
        &p("f.json"),
    ]);
    fails_with(&o, &["class", "no training image of class 7"]);
    assert!(!dir.path().join("f.json").exists());
    std::fs::write(
        p("empty.json"),
        r#"{"dataset":"mnist[train:300]","train_size":300,"kind":"random","seed":0,"size":0,"indices":[]}"#,
    )
    .unwrap();
    common::mnist_trained_once(&dir.path().join("m.safetensors"), "300", "1");
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &p("m.safetensors"),
        "--forget",
        &p("empty.json"),
        "--method",
        "ft",
        "--device",
        "cpu",
        "--out",
        &p("u.safetensors"),
    ]);
    fails_with(&o, &["empty.json", "the forget set is empty"]);
    ok(&amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "300",
        "--forget",
        "10",
        "--out",
        &p("f.json"),
    ]));
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &p("m.safetensors"),
        "--forget",
        &p("f.json"),
        "--method",
        "ft",
        "--adv",
        &p("adv.safetensors"),
        "--device",
        "cpu",
        "--out",
        &p("u.safetensors"),
    ]);
    fails_with(&o, &["--adv", "ft trains on no adversarial set"]);
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &p("m.safetensors"),
        "--forget",
        &p("f.json"),
        "--method",
        "amun",
        "--set",
        "finetune.lr=abc",
        "--device",
        "cpu",
        "--out",
        &p("u.safetensors"),
    ]);
    fails_with(&o, &["amun.finetune.lr"]);
    let help = stdout(&amun(&["bench", "--help"]));
    assert_eq!(help.matches("--steps").count(), 1, "{help}");
    // The sidecar records the thread count the bits depend on.
    let sc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("m.json")).unwrap()).unwrap();
    assert!(sc["threads"].as_u64().unwrap() >= 1, "{sc}");
}

/// A corrupt cached file that cannot be fetched again is named.
#[test]
fn a_corrupt_cache_that_cannot_be_repaired_is_named() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("data");
    let src = amun::data::default_data_dir().join("mnist");
    std::fs::create_dir_all(cache.join("mnist")).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), cache.join("mnist").join(e.file_name())).unwrap();
    }
    let f = cache.join("mnist/mnist_5k.csv.gz");
    let mut b = std::fs::read(&f).unwrap();
    b[100] ^= 1;
    std::fs::write(&f, b).unwrap();
    let o = std::process::Command::new(common::bin())
        .args(["data", "info", "--dataset", "mnist", "--data-dir"])
        .arg(&cache)
        .env("AMUN_PYTHON", "/no/such/python")
        .output()
        .unwrap();
    fails_with(&o, &["mnist_5k.csv.gz", "corrupt", "could not be fetched"]);
}

/// Two processes writing the same output: the second is refused while the
/// first runs.
#[test]
fn a_second_writer_of_the_same_output_is_refused() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let out = path_in(dir.path(), "m.safetensors");
    let mut first = std::process::Command::new(common::bin())
        .args([
            "train",
            "--dataset",
            "mnist",
            "--epochs",
            "30",
            "--device",
            "cpu",
            "--out",
            &out,
            "-q",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.path().join("m.safetensors.lock");
    let t = std::time::Instant::now();
    while !lock.exists() && t.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(lock.exists(), "the first run took no lock");
    let o = train_mnist(&out, "300", "1", &[]);
    first.kill().unwrap();
    let _ = first.wait();
    fails_with(&o, &["m.safetensors", "another amun process is writing it"]);
}
