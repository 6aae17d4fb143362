//! The `amun` binary end to end: real runs in temporary folders, and every
//! kind of bad input giving one clear error line, a non-zero exit and no
//! partial file.
use crate::common;
use common::{Args, amun, ensure, fails_with, files_in, ok, stderr};
use std::path::Path;
use std::process::Command;

#[test]
fn split_train_eval_round_trip() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let o = amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "600",
        "--forget",
        "0.1",
        "--seed",
        "4",
        "--out",
        &p("forget.json"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--train-limit",
        "600",
        "--test-limit",
        "200",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--lr",
        "0.02",
        "--exclude",
        &p("forget.json"),
        "--device",
        "cpu",
        "--out",
        &p("retrain.safetensors"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sc["origin"]["kind"], "train");
    assert_eq!(sc["origin"]["subset"]["size"], 60);
    assert_eq!(sc["history"].as_array().unwrap().len(), 3);
    assert_eq!(
        sc["origin"]["recipe"]["augment"], false,
        "auto: no flips for digits"
    );
    assert_eq!(
        files_in(dir.path()),
        vec!["forget.json", "retrain.json", "retrain.safetensors"]
    );
    let o = amun(&[
        "eval",
        "--checkpoint",
        &p("retrain.safetensors"),
        "--forget",
        &p("forget.json"),
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ev["forget"]["total"], 60);
    assert_eq!(ev["retain"]["total"], 540);
    assert_eq!(ev["test"]["total"], 200);
    assert!(ev["test"]["accuracy"].as_f64().unwrap() > 50.0);
    // The table form names every split.
    let o = amun(&[
        "eval",
        "--checkpoint",
        &p("retrain.safetensors"),
        "--forget",
        &p("forget.json"),
        "--device",
        "cpu",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    for s in ["train", "test", "forget", "retain"] {
        assert!(out.contains(s), "{out}");
    }
}

#[test]
fn bench_prints_a_table_with_the_hardware() {
    let o = amun(&[
        "bench",
        "train",
        "--model",
        "small-cnn",
        "--device",
        "cpu",
        "--batch",
        "16,32",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--windows",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("CPU: "), "{out}");
    assert!(
        out.contains("images/s") && out.contains("| 16 ") && out.contains("| 32 "),
        "{out}"
    );
    let o = amun(&[
        "bench",
        "pgd",
        "--model",
        "small-cnn",
        "--device",
        "cpu",
        "--json",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--windows",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["results"][0]["images_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn unknown_names_list_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let o = amun(&[
        "train",
        "--dataset",
        "imagenet-xl",
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["dataset", "cifar10", "mnist"]);
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--model",
        "resnet99",
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["model", "small-cnn", "resnet18", "vgg19"]);
    let o = amun(&["data", "fetch", "svhn"]);
    fails_with(&o, &["svhn", "cifar10"]);
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    if tch::Cuda::is_available() {
        return; // this machine has a GPU: the error cannot occur here
    }
    let o = amun(&["bench", "train", "--device", "cuda"]);
    // A binary built on the CPU-only libtorch set-up says so (and how to get
    // the CUDA one) before asking libtorch.
    let why = if cfg!(amun_cpu_only_libtorch) {
        "CPU-only libtorch set-up"
    } else {
        "CUDA is not available"
    };
    fails_with(&o, &["--device cuda", why, "--device cpu"]);
    let o = amun(&["bench", "train", "--device", "gpu7"]);
    fails_with(&o, &["--device gpu7", "expected cpu, cuda"]);
    // An experiment's workers' devices are checked before the run folder
    // is made or any step runs.
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exp.toml");
    let text = "name = \"dev\"\nmodel = \"small-cnn\"\nseeds = [0]\ndevice = \"cpu\"\n\
                [data]\ndataset = \"mnist\"\ntrain_limit = 200\ntest_limit = 100\n\
                [train]\nepochs = 1\n[forget]\nfractions = [0.1]\nwith_retain = [true]\n\
                [rmia]\nreference_models = 2\n[methods.ft]\n";
    std::fs::write(&cfg, text).unwrap();
    let out = dir.path().join("run");
    let experiment = |extra: &[&str]| {
        Args::of(&["experiment", "--config", cfg.to_str().unwrap()])
            .with("--out", out.to_str().unwrap())
            .and(extra)
            .run()
    };
    let o = experiment(&["--devices", "cpu,cuda:1"]);
    fails_with(&o, &["devices", "cuda:1", why]);
    assert!(!out.exists(), "a run folder was made");
    // --plan checks the device as the run does (hostile11 K16: it said
    // "ready" for a run refused at once); the device is in no step's
    // identity, so a login node plans a GPU run with --device cpu.
    fails_with(
        &experiment(&["--device", "cuda:0", "--plan"]),
        &["cuda:0", why],
    );
    ok(&experiment(&["--device", "cpu", "--plan"]));
}

#[test]
fn bad_forget_files_are_refused_before_any_work() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let forget = dir.path().join("forget.json");
    let out = dir.path().join("m.safetensors");
    let write = |indices: &str, size: usize| {
        std::fs::write(
            &forget,
            format!(r#"{{"dataset":"mnist","train_size":4000,"kind":"random","seed":1,"size":{size},"indices":[{indices}]}}"#),
        )
        .unwrap();
    };
    write("1,5,4000", 3);
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--exclude",
        forget.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["forget.json", "4000", "out of range"]);
    write("1,5,5", 3);
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--exclude",
        forget.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["forget.json", "twice"]);
    write("1,5", 2);
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--train-limit",
        "100",
        "--exclude",
        forget.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["forget.json", "mnist[train:100]"]);
    std::fs::write(&forget, "{not json").unwrap();
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--exclude",
        forget.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["forget.json", "invalid JSON"]);
    let o = amun(&[
        "split",
        "--dataset",
        "mnist",
        "--forget",
        "2.5",
        "--out",
        forget.to_str().unwrap(),
    ]);
    fails_with(&o, &["forget", "fraction"]);
    assert_eq!(files_in(dir.path()), vec!["forget.json"]);
}

#[test]
fn corrupt_dataset_files_are_named() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let out = top.path().join("m.safetensors");
    std::fs::write(dir.join("data_batch_1.bin"), vec![0u8; 3073 * 2 + 17]).unwrap();
    let train = |out: &Path| {
        amun(&[
            "train",
            "--dataset",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    fails_with(&train(&out), &["data_batch_1.bin", "3073-byte"]);
    std::fs::write(dir.join("data_batch_1.bin"), vec![0u8; 3073 * 2]).unwrap();
    fails_with(&train(&out), &["data_batch_2.bin"]);
    assert!(!out.exists());
    // Nothing is written into a dataset folder (it would change the data).
    fails_with(
        &train(&dir.join("m.safetensors")),
        &["inside --dataset", "dataset folder"],
    );
}

#[test]
fn checkpoint_for_other_data_is_refused() {
    ensure("mnist");
    ensure("cifar10");
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("m.safetensors");
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--train-limit",
        "200",
        "--test-limit",
        "50",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        ck.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = amun(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--dataset",
        "cifar10",
        "--device",
        "cpu",
    ]);
    fails_with(&o, &["m.safetensors", "1x28x28", "3x32x32"]);
    let o = amun(&[
        "eval",
        "--checkpoint",
        dir.path().join("none.safetensors").to_str().unwrap(),
    ]);
    fails_with(&o, &["none.safetensors"]);
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--out",
        dir.path().join("m.pt").to_str().unwrap(),
    ]);
    fails_with(&o, &["m.pt", ".safetensors"]);
}

#[test]
fn unwritable_output_fails_fast_without_partial_files() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let out = blocker.join("m.safetensors");
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["a-file"]);
    assert_eq!(files_in(dir.path()), vec!["a-file"]);
}

#[test]
fn full_disk_leaves_no_partial_checkpoint() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    // A 100 KiB file-size limit (SIGXFSZ ignored, so writes fail with EFBIG
    // as on a full disk): the 400 KiB weights file cannot be written.
    let script = format!(
        "trap '' XFSZ; ulimit -f 100; exec '{}' train --dataset mnist --train-limit 200 --test-limit 50 --epochs 1 --device cpu -q --out '{}'",
        common::bin().display(),
        out.display()
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    fails_with(&o, &["m.safetensors", "File too large"]);
    // The OS error in words, not safetensors' Debug text.
    let err = stderr(&o);
    assert!(!err.contains("IoError") && !err.contains("Os {"), "{err}");
    assert!(
        files_in(dir.path()).is_empty(),
        "left behind: {:?}",
        files_in(dir.path())
    );
}

fn sha(path: &Path) -> String {
    amun::data::sha256_file(path).unwrap()
}

/// Trains a tiny MNIST model and a forget set in `dir`.
fn tiny_setup(dir: &Path) -> (String, String) {
    ensure("mnist");
    let ck = dir.join("orig.safetensors").to_string_lossy().into_owned();
    let f = dir.join("forget.json").to_string_lossy().into_owned();
    let split = common::Args::split_mnist("300", "30")
        .with("--seed", "2")
        .with("--out", &f);
    let o = split.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let train = Args::train_mnist("300", "100")
        .quick("2")
        .with("--out", &ck)
        .and(&["-q"]);
    let o = train.run();
    assert!(o.status.success(), "{}", stderr(&o));
    (ck, f)
}

#[test]
fn adv_mask_unlearn_methods_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (ck, f) = tiny_setup(dir.path());
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let o = amun(&[
        "adv",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--out",
        &p("adv.safetensors"),
        "--pgd-steps",
        "5",
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["samples"], 30);
    assert_eq!(s["success_rate"], 100.0);
    let o = amun(&[
        "mask",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--ratio",
        "0.25",
        "--out",
        &p("mask.safetensors"),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0.25"));
    let before = sha(Path::new(&ck));
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--method",
        "amun",
        "--adv",
        &p("adv.safetensors"),
        "--epochs",
        "2",
        "--out",
        &p("amun.safetensors"),
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sidecar"]["origin"]["kind"], "unlearn");
    assert_eq!(v["sidecar"]["origin"]["method"], "amun");
    assert_eq!(v["sidecar"]["origin"]["settings"]["finetune"]["epochs"], 2);
    assert!(
        v["sidecar"]["origin"]["timing"]["fine_tune"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(
        sha(Path::new(&ck)),
        before,
        "the input checkpoint is never touched"
    );
    // The unlearned checkpoint evaluates like any other.
    let o = amun(&[
        "eval",
        "--checkpoint",
        &p("amun.safetensors"),
        "--forget",
        &f,
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Continual, adaptive, without the retain set, AMUN+SalUn.
    let f2 = p("forget2.json");
    let o = amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "300",
        "--forget",
        "20",
        "--seed",
        "9",
        "--out",
        &f2,
    ]);
    assert!(o.status.success());
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--requests",
        &f,
        &f2,
        "--adaptive",
        "--no-retain",
        "--method",
        "amun-salun",
        "--epochs",
        "1",
        "--pgd-steps",
        "5",
        "--out",
        &p("cont.safetensors"),
        "--device",
        "cpu",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("forget") && out.contains("adversarial_search"),
        "{out}"
    );
    let o = amun(&["methods"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("amun-salun"));
}

#[test]
fn unlearn_bad_inputs_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (ck, f) = tiny_setup(dir.path());
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let before = sha(Path::new(&ck));
    let out = p("u.safetensors");
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--lr",
        "0",
        "--out",
        &out,
    ]);
    // In the flag's words (hostile7 AP1), not the setting's key.
    fails_with(&o, &["--lr: must be positive"]);
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--epochs",
        "0",
        "--out",
        &out,
    ]);
    fails_with(&o, &["--epochs: must be at least 1"]);
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--method",
        "oblivion",
        "--out",
        &out,
    ]);
    fails_with(&o, &["oblivion", "amun-salun"]);
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--set",
        "finetune.nope=1",
        "--out",
        &out,
    ]);
    fails_with(&o, &["finetune.nope", "unknown setting"]);
    // Diverging fine-tuning: the step is reported, nothing is written.
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--lr",
        "1e12",
        "--momentum",
        "0",
        "--pgd-steps",
        "2",
        "--out",
        &out,
        "--device",
        "cpu",
        "-q",
    ]);
    fails_with(&o, &["amun", "step", "nothing was written"]);
    // An adversarial set of another forget set, or another model.
    let other = p("other.json");
    assert!(
        amun(&[
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--forget",
            "30",
            "--seed",
            "5",
            "--out",
            &other
        ])
        .status
        .success()
    );
    let adv = p("adv.safetensors");
    assert!(
        amun(&[
            "adv",
            "--checkpoint",
            &ck,
            "--forget",
            &other,
            "--out",
            &adv,
            "--pgd-steps",
            "3",
            "--device",
            "cpu",
            "-q"
        ])
        .status
        .success()
    );
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--adv",
        &adv,
        "--out",
        &out,
        "--device",
        "cpu",
    ]);
    fails_with(&o, &["adv.safetensors", "forget set"]);
    // A forget set for other data.
    let big = p("big.json");
    assert!(
        amun(&[
            "split",
            "--dataset",
            "mnist",
            "--forget",
            "30",
            "--out",
            &big
        ])
        .status
        .success()
    );
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &big,
        "--out",
        &out,
    ]);
    fails_with(&o, &["big.json", "mnist[train:300]"]);
    let o = amun(&["unlearn", "--checkpoint", &ck, "--forget", &f, "--out", &ck]);
    fails_with(&o, &["overwrite"]);
    assert!(!Path::new(&out).exists());
    assert_eq!(sha(Path::new(&ck)), before);
    assert!(
        files_in(dir.path())
            .iter()
            .all(|n| !n.starts_with("u.") && !n.starts_with(".u.")),
        "{:?}",
        files_in(dir.path())
    );
}

#[test]
fn experiment_runs_resumes_and_names_bad_lines() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exp.toml");
    let text = r#"name = "cli-tiny"
model = "small-cnn"
seeds = [0]
device = "cpu"

[data]
dataset = "mnist"
train_limit = 200
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

[methods.rl]
finetune.epochs = 1
"#;
    std::fs::write(&cfg, text).unwrap();
    let out = dir.path().join("run");
    let o = amun(&[
        "experiment",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("| retrain") && table.contains("| rl") && table.contains("Avg. Gap"),
        "{table}"
    );
    for f in ["report.md", "report.json", "report.csv", "gap-f0.1.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    // The report says what ran, defaults included: its config echo leaves
    // out what equals a default (`augment = false` on MNIST, momentum).
    let r = common::read_json(&out.join("report.json"));
    let (echo, ran) = (&r["config"]["train"], &r["resolved"]["train"]);
    assert!(
        echo["momentum"].is_null() && echo["augment"].is_null(),
        "{r}"
    );
    assert_eq!(
        (&ran["momentum"], &ran["epochs"]),
        (&0.9.into(), &2.into()),
        "{r}"
    );
    assert_eq!(ran["augment"], false, "{r}");
    let rl = &r["resolved"]["methods"]["rl"]["finetune"];
    assert_eq!(
        (&rl["epochs"], &rl["augment"]),
        (&1.into(), &false.into()),
        "{r}"
    );
    assert!(rl["lr"].as_f64().is_some_and(|lr| lr > 0.0), "{r}");
    // The second run only reads.
    let o = amun(&[
        "experiment",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("up to date") && !stderr(&o).contains("training"),
        "{}",
        stderr(&o)
    );
    // An audit edited with its size and mtime kept (`touch -r`, `cp -p`,
    // bit rot) is recomputed, never reported.
    let report = std::fs::read(out.join("report.json")).unwrap();
    let audit = out.join("audit-retrain-s0-f0.1.json");
    let good = std::fs::read_to_string(&audit).unwrap();
    let at = good.find("\"unlearn\": ").unwrap() + 11;
    let digit = good.as_bytes()[at];
    let bad = format!(
        "{}{}{}",
        &good[..at],
        if digit == b'7' { '8' } else { '7' },
        &good[at + 1..]
    );
    let mtime = std::fs::metadata(&audit).unwrap().modified().unwrap();
    std::fs::write(&audit, &bad).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&audit)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::remove_file(out.join("report.json")).unwrap();
    let o = amun(&[
        "experiment",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&audit).unwrap() == good,
        "the edited audit was kept"
    );
    assert!(
        std::fs::read(out.join("report.json")).unwrap() == report,
        "the report was built from the edited audit"
    );
    // A report written by a process of another thread count (a one-CPU
    // Slurm job) names the threads the models were made with.
    let made: u64 = common::read_json(&out.join("original-s0.json"))["threads"]
        .as_u64()
        .unwrap();
    std::fs::remove_file(out.join("report.json")).unwrap();
    let o = amun(&[
        "experiment",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        &(made + 1).to_string(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hw = common::read_json(&out.join("report.json"))["hardware"].clone();
    assert!(
        hw.as_str()
            .unwrap()
            .contains(&format!(", {made} torch thread(s)")),
        "{hw}"
    );
    // Bad lines are named; another config is refused.
    std::fs::write(
        &cfg,
        text.replace("[methods.rl]", "[methods.rl]\nspeed = 9"),
    )
    .unwrap();
    let o = amun(&[
        "experiment",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["exp.toml", "line 25", "rl.speed"]);
    std::fs::write(&cfg, text.replace("epochs = 2", "epochs = 3")).unwrap();
    let o = amun(&[
        "experiment",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    fails_with(&o, &["experiment.json", "another config"]);
}

/// `--reuse`: a variant config takes from another run folder exactly the
/// steps whose records hold for the inputs they have in the variant, copies
/// them (the source is never changed), and computes the rest.
#[test]
fn a_variant_reuses_the_steps_it_shares_with_another_run_and_computes_the_rest() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::write(p("base.toml"), crate::hostile::EXPERIMENT).unwrap();
    let variant = crate::hostile::EXPERIMENT
        .replace("name = \"hostile\"", "name = \"variant\"")
        .replace("finetune.epochs = 1", "finetune.epochs = 2");
    std::fs::write(p("variant.toml"), variant).unwrap();
    let run = |cfg: &str, out: &str, extra: &[&str]| {
        let mut a = vec![
            "experiment",
            "--config",
            cfg,
            "--out",
            out,
            "--threads",
            "1",
        ];
        a.extend_from_slice(extra);
        amun(&a)
    };
    let o = run(&p("base.toml"), &p("base"), &["-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let source_before = files_in(Path::new(&p("base")));

    // --plan says what a run would copy, and writes nothing.
    let o = run(
        &p("variant.toml"),
        &p("var"),
        &["--plan", "--reuse", &p("base")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stderr(&o);
    for id in [
        "original-s0",
        "retrain-s0-f0.1",
        "ref-000",
        "references",
        "forget-s0-f0.1",
    ] {
        assert!(said.contains(id), "{id} not reused: {said}");
    }
    assert!(!said.contains("unlearn-rl"), "{said}");
    assert!(!Path::new(&p("var")).exists());

    // The run copies them (no training) and computes the variant's own steps.
    let o = run(&p("variant.toml"), &p("var"), &["--reuse", &p("base")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    assert!(log.contains("--reuse: copied"), "{log}");
    assert!(
        !log.contains("original-s0: training") && !log.contains("reference model"),
        "{log}"
    );
    let read = |d: &str, f: &str| std::fs::read(Path::new(&p(d)).join(f)).unwrap();
    assert_eq!(
        read("var", "original-s0.safetensors"),
        read("base", "original-s0.safetensors")
    );
    let rl = |d: &str| {
        let names = files_in(Path::new(&p(d)));
        let n = names
            .iter()
            .find(|n| n.starts_with("unlearn-rl-s0") && n.ends_with(".safetensors"))
            .unwrap()
            .clone();
        read(d, &n)
    };
    assert_ne!(rl("var"), rl("base"), "the variant's own step was not run");
    assert_eq!(files_in(Path::new(&p("base"))), source_before);
    // Copies are records like any other: a second run finds all up to date,
    // and a second --reuse replaces nothing.
    let o = run(&p("variant.toml"), &p("var"), &["--reuse", &p("base")]);
    assert!(stderr(&o).contains("copied 0 step(s)"), "{}", stderr(&o));

    // A source file that no longer holds its record is not taken, nor is
    // anything made from it.
    let w = Path::new(&p("base")).join("original-s0.safetensors");
    let mut b = std::fs::read(&w).unwrap();
    let i = b.len() - 3;
    b[i] ^= 1;
    std::fs::write(&w, b).unwrap();
    let o = run(
        &p("variant.toml"),
        &p("var2"),
        &["--plan", "--reuse", &p("base")],
    );
    let said = stderr(&o);
    assert!(o.status.success(), "{said}");
    // (The retrain and the references do not read the original.)
    assert!(
        said.contains("ref-000") && said.contains("retrain-s0-f0.1"),
        "{said}"
    );
    assert!(
        !said.contains("original-s0") && !said.contains("adv-s0"),
        "{said}"
    );

    // Bad sources are named before any work.
    for (from, why) in [
        (p("variant.toml"), "not a run folder"),
        (
            dir.path().to_string_lossy().into_owned(),
            "not a run folder",
        ),
        (p("var"), "the run folder itself"),
    ] {
        fails_with(
            &run(&p("variant.toml"), &p("var"), &["--reuse", &from]),
            &["--reuse", why],
        );
    }
}

/// hostile6 K2/R22: calibration aims at the held-out accuracy of classes the
/// model has seen, so a forget set holding a whole class was "not
/// detectably memorised" and kept the original (the retrain scores 0% on
/// it). Calibrating one is refused before any work, by `unlearn` and by
/// `registry apply`, and the request stays pending.
#[test]
fn calibrating_a_whole_class_is_refused_before_any_work() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::mnist_trained_once(&model, "300", "1");
    let class = dir.path().join("c3.json");
    ok(&Args::of(&["split"])
        .mnist("300")
        .with("--class", "3")
        .with("--out", class.to_str().unwrap())
        .run());
    let out = dir.path().join("u.safetensors");
    let o = common::unlearn(
        model.to_str().unwrap(),
        class.to_str().unwrap(),
        "ft",
        out.to_str().unwrap(),
        &["--calibrate", "--holdout-test", "40", "-q"],
    );
    fails_with(
        &o,
        &["every training image of class 3", "without calibration"],
    );
    assert!(!out.exists());
    // Without calibration it runs.
    ok(&common::unlearn(
        model.to_str().unwrap(),
        class.to_str().unwrap(),
        "ft",
        out.to_str().unwrap(),
        &["--epochs", "1", "-q"],
    ));

    // The same samples as a registry request.
    let indices = common::forget_indices(&class);
    let r = dir.path().join("reg");
    common::registry::create(&r, &model, &["--holdout-test", "40"]);
    let q = common::registry::request(dir.path(), "q.csv", &indices);
    ok(&common::registry::reg("add", &r, &[q.to_str().unwrap()]));
    fails_with(
        &common::registry::reg("apply", &r, &["--method", "ft"]),
        &["every training image of class 3"],
    );
    assert_eq!(common::registry::pending(&r), vec![1]);

    // Most of a class is refused as well: all but one image, or a class
    // forgotten in two requests.
    let most = common::registry::request(dir.path(), "most.txt", &indices[1..]);
    let o = common::unlearn(
        model.to_str().unwrap(),
        most.to_str().unwrap(),
        "ft",
        out.to_str().unwrap(),
        &["--calibrate", "--holdout-test", "40", "-q"],
    );
    let held = format!(
        "{} of the {} training images of class 3",
        indices.len() - 1,
        indices.len()
    );
    fails_with(&o, &[&held, "without calibration"]);
    let r2 = dir.path().join("reg2");
    common::registry::create(&r2, &model, &["--holdout-test", "40"]);
    let half = indices.len() / 2;
    for (name, part) in [("a.csv", &indices[..half]), ("b.csv", &indices[half..])] {
        let q = common::registry::request(dir.path(), name, part);
        ok(&common::registry::reg("add", &r2, &[q.to_str().unwrap()]));
    }
    fails_with(
        &common::registry::reg("apply", &r2, &["--method", "ft"]),
        &["every training image of class 3"],
    );
    assert_eq!(common::registry::pending(&r2), vec![1, 2]);
}

/// hostile6 AU5: the audit checked only the retrain's exclusion hash, so a
/// "retrain" of another network gave an Avg. Gap of the architectures'
/// difference (63.6) with exit 0. The retrain must be the same network.
#[test]
fn a_retrain_of_another_network_is_refused_by_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    common::mnist_trained_once(Path::new(&p("m.safetensors")), "300", "1");
    common::split_mnist("300", "30", &p("f.json"), &[]);
    let retrain = |model: &str, out: &str| {
        let a = Args::train_mnist("300", "200")
            .quick("1")
            .with("--model", model)
            .with("--exclude", &p("f.json"))
            .with("--out", out);
        ok(&a.and(&["-q"]).run());
    };
    retrain("resnet18", &p("r18.safetensors"));
    let audit = |r: &str| {
        amun(&[
            "audit",
            "--checkpoint",
            &p("m.safetensors"),
            "--forget",
            &p("f.json"),
            "--retrain",
            r,
            // No reference models: the check comes before they are read.
            "--refs",
            &p("refs"),
        ])
    };
    fails_with(
        &audit(&p("r18.safetensors")),
        &["the retrain is a resnet18", "small-cnn", "same network"],
    );
    retrain("small-cnn", &p("r.safetensors"));
    let o = audit(&p("r.safetensors"));
    assert!(
        !stderr(&o).contains("same network") && stderr(&o).contains("refs"),
        "{}",
        stderr(&o)
    );
    // hostile7 AU3: the same network by another recipe is no exact retrain.
    let a = Args::train_mnist("300", "200")
        .quick("2")
        .with("--exclude", &p("f.json"))
        .with("--out", &p("r2.safetensors"));
    ok(&a.and(&["-q"]).run());
    fails_with(
        &audit(&p("r2.safetensors")),
        &["the retrain's recipe is not that of", "epochs 2 against 1"],
    );
}

/// hostile7 LN1: unlearning an unlearned model again fine-tuned on a retain
/// set that held what its parent forgot (re-learning it), exit 0. The
/// lineage's requests are recorded and must be given as `--forgotten`,
/// which keeps them out of the retain set.
#[test]
fn unlearning_an_unlearned_model_again_keeps_what_it_forgot_out_of_training() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    common::mnist_trained_once(Path::new(&p("m.safetensors")), "300", "1");
    common::split_mnist("300", "20", &p("f1.json"), &["--seed", "1"]);
    common::split_mnist("300", "10", &p("f2.json"), &["--seed", "2"]);
    let ft = |ck: &str, forget: &str, out: &str, extra: &[&str]| {
        common::unlearn(
            &p(ck),
            &p(forget),
            "ft",
            &p(out),
            &[&["--epochs", "1"], extra].concat(),
        )
    };
    ok(&ft("m.safetensors", "f1.json", "u1.safetensors", &[]));
    fails_with(
        &ft("u1.safetensors", "f2.json", "u2.safetensors", &[]),
        &["--forgotten", "forgot 1 request(s)", "20 samples"],
    );
    assert!(!Path::new(&p("u2.safetensors")).exists());
    fails_with(
        &ft(
            "u1.safetensors",
            "f2.json",
            "u2.safetensors",
            &["--forgotten", &p("f2.json")],
        ),
        &["--forgotten", "20 samples"],
    );
    let o = ft(
        "u1.safetensors",
        "f2.json",
        "u2.safetensors",
        &["--forgotten", &p("f1.json")],
    );
    ok(&o);
    let (f1, f2) = (
        common::forget_indices(Path::new(&p("f1.json"))),
        common::forget_indices(Path::new(&p("f2.json"))),
    );
    let retain = 300
        - f1.iter()
            .chain(&f2)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
    assert!(
        common::stdout(&o).contains(&format!("| retain | {retain} ")),
        "{}",
        common::stdout(&o)
    );
    // The grandchild needs both.
    let u2 = common::read_json(Path::new(&p("u2.json")));
    assert_eq!(
        u2["origin"]["forgotten_before"].as_array().unwrap().len(),
        1
    );
    fails_with(
        &ft(
            "u2.safetensors",
            "f2.json",
            "u3.safetensors",
            &["--forgotten", &p("f1.json")],
        ),
        &["--forgotten", "10 samples"],
    );
}
