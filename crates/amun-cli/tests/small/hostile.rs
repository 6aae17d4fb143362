//! What a careless or hostile user tries (issue 26): inputs that used to give
//! an exit code 0 and a wrong or stale result, settings dropped without a
//! word, errors found only after minutes of work. Each test is a few CLI
//! calls on a tiny MNIST slice; most need no training at all.
use crate::common::{Args, amun, ensure, fails_with, files_in, ok, read_json, stderr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Tiny models on MNIST[train:300][test:100], made once per test process
/// and only read by the tests: two forget sets of 30 (`f.json`,
/// `f2.json`), the original, the retrains without each, and two reference
/// models. (In the target's folder for integration tests, so the 2-core
/// machine trains them once rather than once per test.)
fn models() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-models");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_models(&dir);
        dir
    })
}

/// A file of [`models`].
pub(crate) fn m(name: &str) -> String {
    if Path::new(name).is_absolute() {
        return name.to_string();
    }
    models().join(name).to_string_lossy().into_owned()
}

fn make_models(dir: &Path) {
    ensure("mnist");
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    for (f, seed) in [("f.json", "2"), ("f2.json", "5")] {
        let split = Args::split_mnist("300", "30")
            .with("--seed", seed)
            .with("--out", &p(f));
        ok(&split.run());
    }
    let train = |out: &str, extra: &[&str]| {
        let a = Args::train_mnist("300", "100")
            .quick("2")
            .and(&["-q"])
            .with("--out", &p(out))
            .and(extra);
        ok(&a.run());
    };
    train("orig.safetensors", &[]);
    train("rt.safetensors", &["--exclude", &p("f.json")]);
    train("rt2.safetensors", &["--exclude", &p("f2.json")]);
    ok(&Args::refs_like(&p("orig.safetensors"), &p("refs")).run());
}

/// `amun audit` of the [`m`] original for `f.json` against `refs`, with
/// `extra` flags.
pub(crate) fn audit_with(refs: &str, extra: &[&str]) -> std::process::Output {
    let base = [
        "audit",
        "--checkpoint",
        &m("orig.safetensors"),
        "--forget",
        &m("f.json"),
        "--refs",
        refs,
        "--device",
        "cpu",
    ];
    amun(&[&base[..], extra].concat())
}

/// A model trained like the [`m`] original but for one epoch, not two:
/// another recipe, at `dir`/other.safetensors.
pub(crate) fn other_recipe_model(dir: &Path) -> std::path::PathBuf {
    let other = dir.join("other.safetensors");
    let train = Args::train_mnist("300", "100")
        .quick("1")
        .and(&["-q"])
        .with("--out", other.to_str().unwrap());
    ok(&train.run());
    other
}

/// `amun audit --json` of `checkpoint` (with `retrain` unless empty) for
/// `forget`, each a path or a name in [`models`].
fn audit(checkpoint: &str, retrain: &str, forget: &str, extra: &[&str]) -> std::process::Output {
    let p = |n: &str| m(n);
    let mut a = vec![
        "audit".to_string(),
        "--checkpoint".into(),
        p(checkpoint),
        "--forget".into(),
        p(forget),
        "--refs".into(),
        p("refs"),
        "--device".into(),
        "cpu".into(),
        "--json".into(),
    ];
    if !retrain.is_empty() {
        a.extend(["--retrain".into(), p(retrain)]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    amun(&a)
}

#[test]
fn the_avg_gap_is_only_computed_against_a_retrain_of_the_forget_set() {
    let dir = tempfile::tempdir().unwrap();
    // The original model passed as the retrain: "as good as retrain".
    let o = audit("orig.safetensors", "orig.safetensors", "f.json", &[]);
    fails_with(
        &o,
        &["orig.safetensors", "--retrain", "whole training split"],
    );
    // A retrain of another forget set.
    let o = audit("orig.safetensors", "rt2.safetensors", "f.json", &[]);
    fails_with(&o, &["rt2.safetensors", "another forget set"]);
    // The retrain of this forget set, also when the set is given as the
    // authors' CSV of the same indices.
    ok(&audit("orig.safetensors", "rt.safetensors", "f.json", &[]));
    let csv = dir.path().join("f.csv");
    std::fs::write(&csv, authors_csv(false)).unwrap();
    let o = audit(
        "orig.safetensors",
        "rt.safetensors",
        csv.to_str().unwrap(),
        &[],
    );
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["models"][1]["avg_gap"].as_f64().unwrap() > 0.0, "{v}");
}

/// A reference folder that lacks one of its files (issue 37, N7): one
/// error line naming the file and what was expected, never the OS's bare
/// "No such file or directory".
#[test]
fn a_reference_folder_missing_a_file_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    for (gone, expected) in [
        ("manifest.json", "the manifest of a reference-model folder"),
        ("members.safetensors", "memberships"),
        ("ref-001.logits.safetensors", "rmia train-refs"),
        ("ref-000.safetensors", "rmia train-refs"),
    ] {
        let refs = dir.path().join(gone.replace('.', "-"));
        crate::common::registry::copy_dir(Path::new(&m("refs")), &refs);
        std::fs::remove_file(refs.join(gone)).unwrap();
        let o = audit_with(refs.to_str().unwrap(), &[]);
        fails_with(&o, &[gone, "missing", expected]);
        assert!(!stderr(&o).contains("os error"), "{}", stderr(&o));
    }
}

/// A number that is not defined (here the accuracy of classes a 2-sample
/// forget set lacks) was written as `null` without a word (issue 37):
/// `--json` still writes `null`, but lists each one under `undefined`
/// (its JSON pointer and value) and names it on stderr.
#[test]
fn undefined_numbers_in_json_are_listed_not_silently_null() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("two.json");
    ok(&amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "300",
        "--forget",
        "2",
        "--out",
        f.to_str().unwrap(),
    ]));
    let o = amun(&[
        "eval",
        "--checkpoint",
        &m("orig.safetensors"),
        "--forget",
        f.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nulls: Vec<String> = v["forget"]["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_null())
        .map(|(i, _)| format!("/forget/per_class/{i}"))
        .collect();
    assert!(nulls.len() >= 8, "{v}");
    let listed: Vec<&str> = v["undefined"]
        .as_array()
        .unwrap_or_else(|| panic!("no 'undefined' list: {v}"))
        .iter()
        .map(|u| u["at"].as_str().unwrap())
        .collect();
    assert_eq!(listed, nulls, "{v}");
    assert!(v["undefined"][0]["value"] == "NaN", "{v}");
    assert!(stderr(&o).contains(&nulls[0]), "{}", stderr(&o));
}

/// The indices of `f.json` as the AMUN authors' CSV (with pandas' unnamed
/// index column first when `pandas`).
fn authors_csv(pandas: bool) -> String {
    let idx = crate::common::forget_indices(Path::new(&m("f.json")));
    let head = if pandas {
        ",unlearn_idx"
    } else {
        "unlearn_idx"
    };
    std::iter::once(head.to_string())
        .chain(idx.iter().enumerate().map(|(k, i)| {
            if pandas {
                format!("{k},{i}")
            } else {
                i.to_string()
            }
        }))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_forget_option_reads_the_files_split_from_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::write(p("f.csv"), authors_csv(true)).unwrap();
    let o = amun(&[
        "eval",
        "--checkpoint",
        &m("orig.safetensors"),
        "--forget",
        &p("f.csv"),
        "--device",
        "cpu",
        "--json",
    ]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["forget"]["total"], 30, "{v}");
    let retrain = Args::train_mnist("300", "100")
        .and(&["--epochs", "1", "--device", "cpu"])
        .with("--exclude", &p("f.csv"))
        .with("--out", &p("rt-csv.safetensors"))
        .and(&["-q"]);
    ok(&retrain.run());
    // It excluded the samples of f.json: a retrain of that forget set.
    let sc = read_json(&dir.path().join("rt-csv.json"));
    let rt = read_json(&models().join("rt.json"));
    assert_eq!(
        sc["origin"]["subset"]["indices_sha256"],
        rt["origin"]["subset"]["indices_sha256"]
    );
    ok(&amun(&[
        "unlearn",
        "--checkpoint",
        &m("orig.safetensors"),
        "--forget",
        &p("f.csv"),
        "--method",
        "ft",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        &p("u.safetensors"),
        "-q",
    ]));
}

/// `amun unlearn` of ft for one epoch from [`models`]' original without
/// `f.json`, calibrated on the last 40 test images at lr 0.01, into `out`.
fn calibrated_ft(out: &str) -> Args {
    Args::unlearn(&m("orig.safetensors"), &m("f.json"), "ft")
        .and(&[
            "--epochs",
            "1",
            "--calibrate",
            "--holdout-test",
            "40",
            "--calibrate-lrs",
            "0.01",
            "--device",
            "cpu",
        ])
        .with("--out", out)
        .and(&["-q"])
}

#[test]
fn a_calibrated_model_is_audited_without_the_images_it_was_calibrated_on() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("cal.safetensors");
    let cal = cal.to_str().unwrap();
    ok(&calibrated_ft(cal).run());
    let sc = read_json(&dir.path().join("cal.json"));
    assert_eq!(
        sc["origin"]["heldout"],
        serde_json::json!({"kind": "last-test", "size": 40, "test_size": 100})
    );
    // By default the recorded held-out images are left out, and it says so.
    let o = audit(cal, "rt.safetensors", "f.json", &[]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["holdout_test"], 40, "{v}");
    assert!(
        stderr(&o).contains("calibrated on the last 40"),
        "{}",
        stderr(&o)
    );
    // Fewer would score images calibration chose by; more is fine.
    let o = audit(cal, "rt.safetensors", "f.json", &["--holdout-test", "10"]);
    fails_with(&o, &["holdout-test", "cal.safetensors", "last 40"]);
    let o = audit(cal, "", "f.json", &["--holdout-test", "50"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["holdout_test"], 50, "{v}");
}

/// Issue 35: `--calibrate-max-cost` ends the walk before an epoch that
/// would cost more than that fraction of the same-recipe retrain (the
/// model's recorded 2 epochs over its 270 retained images), and the record
/// says what it spent.
#[test]
fn a_cost_cap_ends_calibration_before_it_costs_more_than_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out).to_string_lossy().into_owned();
        let (orig, f) = (m("orig.safetensors"), m("f.json"));
        let mut a = vec![
            "unlearn",
            "--checkpoint",
            &orig,
            "--forget",
            &f,
            "--method",
            "ft",
            "--epochs",
            "3",
            "--calibrate",
            "--holdout-test",
            "40",
            "--calibrate-lrs",
            "0.001",
            // A strict level, so that this barely trained model is not
            // kept as it is and the walk runs.
            "--calibrate-level",
            "0.95",
            "--device",
            "cpu",
            "--out",
            &out,
            "-q",
            "--json",
        ];
        a.extend_from_slice(extra);
        let o = amun(&a);
        ok(&o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["logs"][0]["calibration"].clone()
    };
    let free = run("free.safetensors", &[]);
    assert!(free["epochs_run"].as_u64().unwrap() >= 2, "{free}");
    assert!(free.get("cost").is_none(), "{free}");
    let capped = run("capped.safetensors", &["--calibrate-max-cost", "0.75"]);
    assert_eq!(capped["epochs_run"], 1, "{capped}");
    let cost = &capped["cost"];
    assert_eq!(cost["retrain_image_steps"], 540, "{cost}");
    assert_eq!(cost["spent"], 270, "{cost}");
    assert!(
        capped["why"]
            .as_str()
            .unwrap()
            .contains("would pass the cost cap"),
        "{capped}"
    );
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &m("orig.safetensors"),
        "--forget",
        &m("f.json"),
        "--calibrate",
        "--holdout-test",
        "40",
        "--calibrate-max-cost",
        "0",
        "--out",
        &dir.path().join("z.safetensors").to_string_lossy(),
    ]);
    fails_with(&o, &["--calibrate-max-cost", "positive fraction"]);
}

/// Issue 35: a calibration shows what it cost, before → after, each number
/// with its band at the sample sizes; the level is a setting, checked.
#[test]
fn calibration_shows_before_and_after_with_their_bands() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let run = |out: &str, extra: &[&str]| calibrated_ft(out).and(extra).run();
    let o = run(&p("a.safetensors"), &[]);
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "30 forgotten vs 40 held-out images, level 0.05",
        "forget accuracy %: ",
        "held-out accuracy %: ",
        "loss AUC forget vs held-out %: ",
        "null band at these sample sizes",
        " → ",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let o = run(
        &p("b.safetensors"),
        &["--json", "--calibrate-level", "0.01"],
    );
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &v["logs"][0]["calibration"];
    assert_eq!(c["settings"]["level"], 0.01, "{c}");
    assert!(c["before"]["forget_acc"].as_f64().is_some(), "{c}");
    let ch = c["changes"].as_array().unwrap();
    assert_eq!(ch[0]["measure"], "forget accuracy %");
    assert_eq!(ch[0]["before"], c["before"]["forget_acc"]);
    assert_eq!(ch[0]["after"], c["chosen"]["probe"]["forget_acc"]);
    // The target is the original's held-out accuracy, fixed.
    assert_eq!(ch[0]["target"], c["before"]["heldout_acc"]);
    assert!(c["verdict"].as_str().unwrap().contains("level 0.01"), "{c}");
    for bad in ["0", "1", "-0.1", "nan"] {
        let o = run(&p("c.safetensors"), &["--calibrate-level", bad]);
        fails_with(&o, &["--calibrate-level", "between 0 and 1"]);
        assert!(!dir.path().join("c.safetensors").exists());
    }
}

/// Issue 35: an original kept by calibration's pre-check costs nothing —
/// AMUN searches no adversarial set and AMUN+SalUn computes no saliency
/// mask (on main both ran before calibration decided) — and the weights
/// come back as they were.
#[test]
fn a_kept_original_costs_no_attack_and_keeps_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let weights = |p: &str| {
        let mut t = tch::Tensor::read_safetensors(p).unwrap();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    for method in ["amun", "amun-salun"] {
        let out = dir.path().join(format!("{method}.safetensors"));
        let out = out.to_str().unwrap();
        let o = amun(&[
            "unlearn",
            "--checkpoint",
            &m("orig.safetensors"),
            "--forget",
            &m("f.json"),
            "--method",
            method,
            "--calibrate",
            "--holdout-test",
            "40",
            "--device",
            "cpu",
            "--json",
            "--out",
            out,
        ]);
        ok(&o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let log = &v["logs"][0];
        let c = &log["calibration"];
        assert_eq!(c["epochs_run"], 0, "{method}: {c}");
        assert_eq!(c["chosen"]["epoch"], 0, "{method}: {c}");
        assert!(log["adv"].is_null(), "{method}: an adversarial set: {log}");
        assert_eq!(log["timing"]["adversarial_search"], 0.0, "{method}: {log}");
        assert!(
            log["timing"].get("saliency_mask").is_none(),
            "{method}: {log}"
        );
        assert_eq!(v["sidecar"]["origin"]["image_steps"], 0, "{method}: {v}");
        let (a, b) = (weights(&m("orig.safetensors")), weights(out));
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{method}: {na} changed");
        }
    }
}

/// Issue 35, item 3: with reference models (`unlearn --refs`, a registry
/// created with `--refs`) calibration tests membership with the audit's
/// RMIA, and the record, the output and the certificate say so; without,
/// the loss-based test. RMIA needs the held-out images in the references'
/// pool: `--holdout` (a folder) is refused before any work.
#[test]
fn calibration_tests_membership_with_rmia_where_references_exist() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (refs, orig, forget) = (m("refs"), m("orig.safetensors"), m("f.json"));
    let run = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "unlearn",
            "--checkpoint",
            &orig,
            "--forget",
            &forget,
            "--method",
            "ft",
            "--epochs",
            "1",
            "--calibrate",
            "--calibrate-lrs",
            "0.01",
            "--device",
            "cpu",
            "--out",
            out,
            "-q",
        ];
        a.extend_from_slice(extra);
        amun(&a)
    };
    let o = run(
        &p("a.safetensors"),
        &["--holdout-test", "40", "--refs", &refs],
    );
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    for want in ["membership by RMIA AUC", "RMIA AUC forget vs held-out %: "] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let json = |o: &std::process::Output| -> serde_json::Value {
        ok(o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["logs"][0]["calibration"].clone()
    };
    let c = json(&run(
        &p("b.safetensors"),
        &["--holdout-test", "40", "--refs", &refs, "--json"],
    ));
    assert_eq!(c["signal"], "rmia", "{c}");
    assert!(c["before"]["rmia_auc"].as_f64().is_some(), "{c}");
    assert!(c["chosen"]["probe"]["rmia_auc"].as_f64().is_some(), "{c}");
    let c = json(&run(
        &p("c.safetensors"),
        &["--holdout-test", "40", "--json"],
    ));
    assert_eq!(c["signal"], "loss", "{c}");
    assert!(c["before"].get("rmia_auc").is_none(), "{c}");
    let o = run(
        &p("d.safetensors"),
        &["--holdout", &p("val"), "--refs", &refs],
    );
    fails_with(&o, &["--refs", "--holdout-test"]);
    assert!(!dir.path().join("d.safetensors").exists());
    // A registry created with references calibrates on RMIA; its
    // certificate names the signal.
    let r = dir.path().join("reg");
    crate::common::registry::create(
        &r,
        Path::new(&orig),
        &["--holdout-test", "40", "--refs", &refs],
    );
    let req = crate::common::registry::request(dir.path(), "r.csv", &[3, 17, 42, 99]);
    ok(&crate::common::registry::reg(
        "add",
        &r,
        &[req.to_str().unwrap()],
    ));
    ok(&crate::common::registry::reg(
        "apply",
        &r,
        &[
            "--device",
            "cpu",
            "-q",
            "--method",
            "ft",
            "--epochs",
            "1",
            "--calibrate-lrs",
            "0.01",
        ],
    ));
    let md = std::fs::read_to_string(r.join("certificates/v0002.md")).unwrap();
    assert!(md.contains("membership by RMIA AUC"), "{md}");
    assert!(md.contains("RMIA AUC forget vs held-out %: "), "{md}");
}

#[test]
fn forget_files_of_other_data_or_ambiguous_lists_are_refused() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let split_from = |from: &str, limit: &str| {
        amun(&[
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            limit,
            "--from",
            &p(from),
            "--out",
            &p("out.json"),
        ])
    };
    // amun's JSON names its own dataset and slice: a CIFAR-10 set, or one
    // of a 500-image slice, is not an MNIST 1,000-image forget set.
    let set = |dataset: &str, n: usize| {
        serde_json::json!({
            "dataset": dataset, "train_size": n, "kind": "random", "seed": 1,
            "size": 3, "indices": [1, 4, 9]
        })
        .to_string()
    };
    std::fs::write(p("cifar.json"), set("cifar10[train:500]", 500)).unwrap();
    std::fs::write(p("m500.json"), set("mnist[train:500]", 500)).unwrap();
    fails_with(
        &split_from("cifar.json", "1000"),
        &["cifar.json", "cifar10[train:500]"],
    );
    fails_with(
        &split_from("m500.json", "1000"),
        &["m500.json", "mnist[train:500]"],
    );
    ok(&split_from("m500.json", "500"));
    // Lists that could be read two ways.
    for (text, needle) in [
        ("\"a,7,b\",3\n", "line 1"),
        ("4,5,6\n", "3 values"),
        ("4;5;6\n", "commas or tabs"),
        ("first\n4\n5\n", "'first'"),
    ] {
        std::fs::write(p("list.txt"), text).unwrap();
        fails_with(&split_from("list.txt", "300"), &["list.txt", needle]);
    }
    // The refused ones left the file of the accepted one as it was.
    assert_eq!(
        read_json(&dir.path().join("out.json"))["dataset"],
        "mnist[train:500]"
    );
}

#[test]
fn flags_that_would_be_dropped_or_found_late_are_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let unlearn = |extra: &[&str]| {
        let out = p("u.safetensors");
        let ck = m("orig.safetensors");
        let mut a = vec![
            "unlearn",
            "--checkpoint",
            &ck,
            "--out",
            &out,
            "--device",
            "cpu",
        ];
        a.extend_from_slice(extra);
        amun(&a)
    };
    let f = m("f.json");
    fails_with(
        &unlearn(&["--forget", &f, "--method", "ft", "--adaptive"]),
        &["--adaptive", "ft"],
    );
    fails_with(
        &unlearn(&[
            "--forget",
            &f,
            "--method",
            "ft",
            "--lr",
            "0.1",
            "--set",
            "finetune.lr=0.2",
        ]),
        &["--set finetune.lr", "silently win"],
    );
    // The same request twice: refused before the first one runs.
    let o = unlearn(&["--requests", &f, &f, "--method", "ft", "--epochs", "1"]);
    fails_with(&o, &["f.json", "same 30 samples"]);
    assert!(!stderr(&o).contains("epoch 1"), "{}", stderr(&o));
    // Reference models: an even count of at least 2, or nothing is made.
    for count in ["0", "1", "3"] {
        let out = p(&format!("refs{count}"));
        let o = amun(&[
            "rmia",
            "train-refs",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--count",
            count,
            "--device",
            "cpu",
            "--out",
            &out,
            "-q",
        ]);
        fails_with(&o, &["--count", count, "even"]);
        assert!(!Path::new(&out).exists(), "{out} was created");
    }
    // An export onto an amun checkpoint would leave its sidecar describing
    // other weights.
    std::fs::copy(m("orig.safetensors"), p("o2.safetensors")).unwrap();
    std::fs::copy(m("orig.json"), p("o2.json")).unwrap();
    let before = amun::data::sha256_file(&dir.path().join("o2.safetensors")).unwrap();
    let o = amun(&[
        "export",
        "--checkpoint",
        &m("rt.safetensors"),
        "--out",
        &p("o2.safetensors"),
    ]);
    fails_with(&o, &["o2.safetensors", "amun checkpoint"]);
    assert_eq!(
        amun::data::sha256_file(&dir.path().join("o2.safetensors")).unwrap(),
        before
    );
    // A held-out folder that is not there is named as such.
    let o = unlearn(&["--forget", &f, "--calibrate", "--holdout", &p("nowhere")]);
    fails_with(&o, &["nowhere", "no such folder"]);
    assert!(
        files_in(dir.path()).iter().all(|n| !n.starts_with("u.")),
        "{:?}",
        files_in(dir.path())
    );
}

pub(crate) const EXPERIMENT: &str = r#"name = "hostile"
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

fn experiment(args: &[&str]) -> std::process::Output {
    let mut a = vec!["experiment"];
    a.extend_from_slice(args);
    amun(&a)
}

#[test]
fn experiment_errors_come_before_any_work_or_folder() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let out = p("run");
    let run = |text: &str, extra: &[&str]| {
        std::fs::write(p("exp.toml"), text).unwrap();
        let cfg = p("exp.toml");
        let mut a = vec!["--config", cfg.as_str(), "--out", out.as_str(), "-q"];
        a.extend_from_slice(extra);
        let o = experiment(&a);
        assert!(!Path::new(&out).exists(), "a failed check made {out}");
        o
    };
    let files = |f: &str| {
        EXPERIMENT.replace(
            "with_retain = [true]",
            &format!("with_retain = [true]\nfiles = [\"{f}\"]"),
        )
    };
    // A forget file's index out of range: found before 40 s of training.
    let idx: Vec<String> = (180..199).chain([5000]).map(|i| i.to_string()).collect();
    std::fs::write(p("bad.csv"), format!("idx\n{}\n", idx.join("\n"))).unwrap();
    fails_with(
        &run(&files("bad.csv"), &[]),
        &["bad.csv", "5000", "out of range"],
    );
    // amun's JSON of another slice.
    let other = serde_json::json!({
        "dataset": "mnist[train:300]", "train_size": 300, "kind": "random", "seed": 1,
        "size": 20, "indices": (0..20).collect::<Vec<i64>>()
    });
    std::fs::write(p("other.json"), other.to_string()).unwrap();
    fails_with(
        &run(&files("other.json"), &[]),
        &["other.json", "mnist[train:300]"],
    );
    // More held-out images than the test split has (no test_limit to
    // check it against in the file).
    let holdout = EXPERIMENT.replace("test_limit = 100\n", "")
        + "\n[calibrate]\nholdout = 1500\nmethods = [\"rl\"]\n";
    fails_with(
        &run(&holdout, &[]),
        &["calibrate.holdout", "1500", "1000 test images"],
    );
    // Executor flags that would do nothing, or nothing sensible.
    fails_with(&run(EXPERIMENT, &["--jobs", "0"]), &["jobs", "at least 1"]);
    fails_with(&run(EXPERIMENT, &["--jobs", "2", "--slurm"]), &["--jobs"]);
    fails_with(
        &run(EXPERIMENT, &["--plan", "--jobs", "2"]),
        &["--plan", "--jobs"],
    );
    fails_with(&run(EXPERIMENT, &["--status", "--jobs", "0"]), &["jobs"]);
    fails_with(&run(EXPERIMENT, &["--step", "nope"]), &["no step 'nope'"]);
    let o = run(
        EXPERIMENT,
        &["--slurm", "--slurm-config", &p("missing.toml")],
    );
    fails_with(&o, &["missing.toml"]);
    let o = run(EXPERIMENT, &["--slurm-config", &p("missing.toml")]);
    assert!(
        !o.status.success() && stderr(&o).contains("--slurm"),
        "{}",
        stderr(&o)
    );
    // A method's own grid without [tune], a method that runs nowhere.
    let grid = EXPERIMENT.replace(
        "finetune.epochs = 1",
        "finetune.epochs = 1\ntune = { lr = [0.1] }",
    );
    fails_with(
        &run(&grid, &["--plan"]),
        &["exp.toml", "line 26", "rl.tune", "[tune]"],
    );
    let nowhere = EXPERIMENT
        .replace("with_retain = [true]", "with_retain = [false]")
        .replace("[methods.rl]", "[methods.ft]");
    fails_with(
        &run(&nowhere, &["--plan"]),
        &["exp.toml", "line 24", "methods.ft", "no setting"],
    );
}

/// hostile8 EXM2/K6b: a calibrated experiment whose forget set holds most
/// of a class (a file, or a fraction's random draw) passed `--plan` and
/// failed after all its training, naming no step or line. Both are refused
/// at `--plan`, at the config's line; a draw that does not is planned.
#[test]
fn a_calibrated_experiment_forgetting_most_of_a_class_is_refused_at_plan() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let out = p("run");
    let calibrated = format!("{EXPERIMENT}\n[calibrate]\nholdout = 30\nmethods = [\"rl\"]\n");
    let plan = |text: &str| {
        std::fs::write(p("exp.toml"), text).unwrap();
        let o = experiment(&["--config", &p("exp.toml"), "--out", &out, "--plan", "-q"]);
        assert!(!Path::new(&out).exists(), "a failed check made {out}");
        o
    };
    // 19 of class 3's 20 images (MNIST's prefix interleaves the classes).
    let idx: Vec<String> = (0..19).map(|j| (10 * j + 3).to_string()).collect();
    std::fs::write(p("c3.csv"), format!("idx\n{}\n", idx.join("\n"))).unwrap();
    let file = calibrated.replace(
        "with_retain = [true]",
        "with_retain = [true]\nfiles = [\"c3.csv\"]",
    );
    fails_with(
        &plan(&file),
        &[
            "exp.toml",
            "line 20",
            "forget.files",
            "c3.csv",
            "19 of the 20 training images of class 3",
        ],
    );
    // Half the training set: seed 3 draws 15 of class 6's 20, seed 0 at
    // most 14 of any class's (70%).
    let half = |seed: &str| {
        calibrated
            .replace("fractions = [0.1]", "fractions = [0.5]")
            .replace("seeds = [0]", &format!("seeds = [{seed}]"))
    };
    fails_with(
        &plan(&half("3")),
        &[
            "exp.toml",
            "line 18",
            "forget.fractions",
            "0.5",
            "with seed 3",
            "15 of the 20 training images of class 6",
        ],
    );
    ok(&plan(&half("0")));
}

/// The status of each step in `amun experiment … --plan --json`.
fn plan_status(args: &[&str]) -> std::collections::BTreeMap<String, String> {
    let mut a = args.to_vec();
    a.extend(["--plan", "--json"]);
    let o = experiment(&a);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_edited_run_folder_recomputes_what_its_settings_changed() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::write(p("exp.toml"), EXPERIMENT).unwrap();
    let (cfg, out) = (p("exp.toml"), p("run"));
    for step in ["forget-s0-f0.1", "original-s0"] {
        ok(&experiment(&[
            "--config", &cfg, "--out", &out, "--step", step, "-q",
        ]));
    }
    let st = plan_status(&["--folder", &out]);
    assert_eq!(
        (st["original-s0"].as_str(), st["forget-s0-f0.1"].as_str()),
        ("done", "done")
    );
    // Another config's --plan and --status refuse the folder, as its run
    // does, rather than counting its steps as done.
    let three = EXPERIMENT.replace("epochs = 2", "epochs = 3");
    std::fs::write(p("three.toml"), &three).unwrap();
    for flag in ["--plan", "--status"] {
        let o = experiment(&["--config", &p("three.toml"), "--out", &out, flag]);
        fails_with(&o, &["experiment.json", "another config"]);
    }
    // The folder's own record edited to 3 epochs, as an amun that wrote
    // it unsigned would read it (a signed one is refused, see
    // experiment_input): the 2-epoch original is no longer its step's
    // result; the forget set still is.
    let rec = dir.path().join("run/experiment.json");
    let mut v = read_json(&rec);
    v.as_object_mut().unwrap().remove("content_sha256");
    v["train"]["epochs"] = 3.into();
    std::fs::write(&rec, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let st = plan_status(&["--folder", &out]);
    assert_eq!(st["original-s0"], "stale");
    assert_eq!(st["forget-s0-f0.1"], "done");
    let st = plan_status(&["--config", &p("three.toml"), "--out", &out]);
    assert_eq!(st["original-s0"], "stale");
}

/// Sends `signal` (`INT`, `KILL`, …) to `pid` with kill(1).
fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `cond` every 50 ms for up to `secs` seconds (a wait for what a
/// process will do, not a timing assertion).
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}

#[test]
fn an_interrupted_command_removes_its_lock_and_says_so() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("long.safetensors");
    let lock = dir.path().join("long.safetensors.lock");
    let child = crate::common::long_training(&out);
    assert!(wait_for(120, || lock.exists()), "the lock never appeared");
    assert!(signal(child.id(), "INT"));
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: removed") && err.contains("long.safetensors.lock"),
        "{err}"
    );
    assert!(!lock.exists());
    assert!(
        files_in(dir.path()).iter().all(|n| !n.contains(".tmp-")),
        "{:?}",
        files_in(dir.path())
    );
}

#[test]
fn workers_die_with_their_parent() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exp.toml");
    // Long enough reference models that the workers are still training
    // when their parent is killed.
    std::fs::write(
        &cfg,
        EXPERIMENT
            .replace("train_limit = 200", "train_limit = 4000")
            .replace("epochs = 2", "epochs = 200"),
    )
    .unwrap();
    let out = dir.path().join("run");
    for how in ["KILL", "TERM"] {
        let parent = std::process::Command::new(crate::common::bin())
            .args(["experiment", "--jobs", "2", "-q", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A worker's lock holds its pid. The wait returns as soon as it
        // does; 120 s was too short beside a loaded machine's builds (the
        // fresh-check of 7b93030, nice 19 at a load of ~20: "no worker started").
        let lock = out.join("references/ref-000.logits.safetensors.lock");
        let mut pid = None;
        assert!(
            wait_for(600, || {
                pid = std::fs::read_to_string(&lock)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                pid.is_some()
            }),
            "no worker started"
        );
        let worker = pid.unwrap();
        assert_ne!(worker, parent.id());
        assert!(signal(parent.id(), how));
        let mut parent = parent;
        parent.wait().unwrap();
        let died = wait_for(60, || !signal(worker, "0"));
        // Whatever the outcome, no worker of this test outlives it.
        for k in 0..2 {
            let l = out.join(format!("references/ref-{k:03}.logits.safetensors.lock"));
            if let Some(p) = std::fs::read_to_string(&l)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                signal(p, "KILL");
            }
        }
        signal(worker, "KILL");
        assert!(died, "worker {worker} outlived its parent (kill -{how})");
    }
}

#[test]
fn a_resume_with_another_thread_count_is_recorded() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.safetensors");
    let resume = dir.path().join("r.resume.safetensors");
    let train = |threads: &str| {
        let mut c = Args::train_mnist("2000", "100")
            .and(&["--epochs", "8", "--device", "cpu", "--resume", "--out"])
            .command();
        c.arg(&out).env("OMP_NUM_THREADS", threads);
        c
    };
    // Killed after its first epoch, on one thread…
    let child = train("1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(120, || resume.exists()), "no resume state");
    signal(child.id(), "KILL");
    let mut child = child;
    child.wait().unwrap();
    let done = read_json(&dir.path().join("r.json"))["origin"]["epochs_done"]
        .as_u64()
        .unwrap();
    // …and resumed on two.
    let o = train("2").output().unwrap();
    ok(&o);
    assert!(stderr(&o).contains("ran with 1"), "{}", stderr(&o));
    let sc = read_json(&dir.path().join("r.json"));
    assert_eq!(
        sc["origin"]["resumes"],
        serde_json::json!([{"epoch": done + 1, "threads": 2, "threads_before": 1}]),
        "{sc}"
    );
}

#[test]
fn a_flag_that_contradicts_the_recorded_slice_is_warned_about() {
    let o = amun(&[
        "eval",
        "--checkpoint",
        &m("orig.safetensors"),
        "--train-limit",
        "250",
        "--device",
        "cpu",
    ]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("warning")
            && err.contains("mnist[train:300]")
            && err.contains("mnist[train:250]"),
        "{err}"
    );
}

/// Issue 37 (N4): a checkpoint's sidecar edited by hand (`train_limit` 300
/// → 200) was read as amun wrote it, since only the weights' sha256 was
/// checked. Every command that reads it now names the sidecar first.
#[test]
fn an_edited_sidecar_is_refused_by_every_command_that_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::copy(m("orig.safetensors"), p("o.safetensors")).unwrap();
    let text = std::fs::read_to_string(m("orig.json")).unwrap();
    let edited = text.replace("\"train_limit\": 300", "\"train_limit\": 200");
    assert_ne!(edited, text);
    std::fs::write(p("o.json"), &edited).unwrap();
    let (o, f, out) = (p("o.safetensors"), m("f.json"), p("u.safetensors"));
    let eval = ["eval", "--checkpoint", &o, "--device", "cpu"];
    let unlearn = Args::ft_one_epoch(&o, &f, &out);
    let unlearn = unlearn.words();
    let reg = p("reg");
    let create = ["registry", "create", "--registry", &reg, "--checkpoint", &o];
    for args in [&eval[..], &unlearn[..], &create[..]] {
        fails_with(&amun(args), &["o.json", "changed after amun wrote it"]);
    }
    fails_with(
        &audit(&o, "rt.safetensors", "f.json", &[]),
        &["o.json", "changed after amun wrote it"],
    );
    assert!(!Path::new(&out).exists() && !Path::new(&reg).exists());
    // The sidecar amun wrote reads.
    std::fs::write(p("o.json"), &text).unwrap();
    ok(&amun(&eval));
}

/// Issue 37: the reference models' weights and sidecars are in the
/// references' manifest, but `audit --refs` (and a registry's references)
/// checked only memberships and logits, so logits were scored as coming
/// from models that had been swapped or edited.
#[test]
fn swapped_reference_models_are_refused_by_audit_and_registry() {
    let dir = tempfile::tempdir().unwrap();
    let refs = dir.path().join("refs");
    std::fs::create_dir(&refs).unwrap();
    for e in std::fs::read_dir(m("refs")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), refs.join(e.file_name())).unwrap();
    }
    let refs_s = refs.to_string_lossy().into_owned();
    let (orig, rt, f) = (m("orig.safetensors"), m("rt.safetensors"), m("f.json"));
    let audit_refs = |needles: &[&str]| {
        let o = amun(&[
            "audit",
            "--checkpoint",
            &orig,
            "--retrain",
            &rt,
            "--forget",
            &f,
            "--refs",
            &refs_s,
            "--device",
            "cpu",
        ]);
        match needles {
            [] => ok(&o),
            n => fails_with(&o, n),
        }
    };
    audit_refs(&[]);
    for (a, b) in [
        ("ref-000.safetensors", "ref-001.safetensors"),
        ("ref-000.json", "ref-001.json"),
    ] {
        let t = refs.join("swap.tmp");
        std::fs::rename(refs.join(a), &t).unwrap();
        std::fs::rename(refs.join(b), refs.join(a)).unwrap();
        std::fs::rename(&t, refs.join(b)).unwrap();
        audit_refs(&[a, "changed since the reference models were made"]);
        let reg = dir.path().join("reg");
        let create = [
            "registry",
            "create",
            "--registry",
            reg.to_str().unwrap(),
            "--checkpoint",
            &orig,
            "--refs",
            &refs_s,
        ];
        fails_with(
            &amun(&create),
            &[a, "changed since the reference models were made"],
        );
        assert!(!reg.exists());
        std::fs::rename(refs.join(a), &t).unwrap();
        std::fs::rename(refs.join(b), refs.join(a)).unwrap();
        std::fs::rename(&t, refs.join(b)).unwrap();
    }
    audit_refs(&[]);
}

/// `text` pretty-printed without its `content_sha256`, as a hand edit
/// that removes the hash leaves it.
fn without_content_hash(mut v: serde_json::Value) -> String {
    v.as_object_mut().unwrap().remove("content_sha256");
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

/// Issue 37 (S1): a sidecar edited and stripped of its `content_sha256` was
/// read as an older amun's: `train_limit` 300 → 1000 was taken, and the
/// original's sidecar given a retrain's origin made the original its own
/// retrain (Avg. Gap 0.00).
#[test]
fn a_sidecar_without_its_content_hash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::copy(m("orig.safetensors"), p("o.safetensors")).unwrap();
    let orig = read_json(Path::new(&m("orig.json")));
    let mut limit = orig.clone();
    limit["data"]["train_limit"] = 1000.into();
    std::fs::write(p("o.json"), without_content_hash(limit)).unwrap();
    let o = amun(&[
        "eval",
        "--checkpoint",
        &p("o.safetensors"),
        "--device",
        "cpu",
    ]);
    fails_with(
        &o,
        &["o.json", "carries no content_sha256", "amun import --from"],
    );
    let mut forged = orig.clone();
    forged["origin"] = read_json(Path::new(&m("rt.json")))["origin"].clone();
    std::fs::write(p("o.json"), without_content_hash(forged)).unwrap();
    fails_with(
        &audit("orig.safetensors", &p("o.safetensors"), "f.json", &[]),
        &["o.json", "carries no content_sha256"],
    );
    // The way out it names: the sidecar moved aside, the weights imported.
    std::fs::rename(p("o.json"), p("o.old.json")).unwrap();
    ok(&amun(&[
        "import",
        "--from",
        &p("o.safetensors"),
        "--arch",
        "small-cnn",
        "--dataset",
        "mnist",
        "--train-limit",
        "300",
        "--test-limit",
        "100",
        "--force",
        "--out",
        &p("i.safetensors"),
    ]));
    ok(&amun(&[
        "eval",
        "--checkpoint",
        &p("i.safetensors"),
        "--device",
        "cpu",
    ]));
}

/// Issue 37 (S2): an adversarial set's JSON with its settings edited
/// (ε0, steps, the search) was taken, and the unlearned model's sidecar
/// recorded the forged settings.
#[test]
fn an_edited_adversarial_set_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (ck, f, adv) = (m("orig.safetensors"), m("f.json"), p("adv.safetensors"));
    ok(&amun(&[
        "adv",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--pgd-steps",
        "3",
        "--device",
        "cpu",
        "-q",
        "--out",
        &adv,
    ]));
    let unlearn = |out: &str| {
        let args = ["--epochs", "1", "--adv", &adv, "--device", "cpu", "-q"];
        crate::common::unlearn(&ck, &f, "amun", &p(out), &args)
    };
    // The set amun wrote is taken, and recorded with its files' hashes.
    ok(&unlearn("u.safetensors"));
    let rec = &read_json(&dir.path().join("u.json"))["origin"]["adversarial"];
    let sha = |n: &str| amun::data::sha256_file(&dir.path().join(n)).unwrap();
    assert_eq!(rec["sha256"], sha("adv.safetensors"), "{rec}");
    assert_eq!(rec["meta_sha256"], sha("adv.json"), "{rec}");
    assert_eq!(rec["settings"]["steps"], 3, "{rec}");
    let text = std::fs::read_to_string(p("adv.json")).unwrap();
    let edited = text.replace("\"steps\": 3,", "\"steps\": 50,");
    assert_ne!(edited, text);
    std::fs::write(p("adv.json"), &edited).unwrap();
    fails_with(
        &unlearn("u2.safetensors"),
        &["adv.json", "changed after amun wrote it", "amun adv"],
    );
    let stripped = without_content_hash(serde_json::from_str(&edited).unwrap());
    std::fs::write(p("adv.json"), stripped).unwrap();
    fails_with(
        &unlearn("u2.safetensors"),
        &["adv.json", "carries no content_sha256", "amun adv"],
    );
    assert!(!dir.path().join("u2.safetensors").exists());
}

/// A list read from a device or a pipe (issue 37: `split --from
/// /dev/zero` filled memory until the OS killed it) is refused before
/// anything is read, by `split` and `registry add` alike.
#[test]
fn a_list_of_samples_from_a_device_or_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("z.json");
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    for from in ["/dev/zero", folder.to_str().unwrap()] {
        let o = amun(&[
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--from",
            from,
            "--out",
            out.to_str().unwrap(),
        ]);
        fails_with(&o, &[from, "not a regular file"]);
        assert!(!out.exists());
    }
    let r = crate::common::registry::small_registry(dir.path());
    let o = crate::common::registry::reg("add", &r, &["/dev/zero"]);
    fails_with(&o, &["/dev/zero", "not a regular file"]);
    assert_eq!(crate::common::registry::count(&r, "requests"), 2);
}

/// `rmia train-refs --like M` trains as M was trained: a recipe or model
/// flag beside it was dropped without a word (issue 37: `--epochs 2`
/// trained 6), so it is refused before any work.
#[test]
fn train_refs_like_a_model_refuses_recipe_flags_it_would_drop() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("refs");
    let like = m("orig.safetensors");
    for (flags, named) in [
        (&["--epochs", "2"][..], "--epochs"),
        (&["--lr", "0.1", "--model", "vgg19"][..], "--lr, --model"),
    ] {
        let mut a = vec![
            "rmia",
            "train-refs",
            "--like",
            &like,
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--test-limit",
            "100",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(flags);
        fails_with(&amun(&a), &[named, "with --like", "without --like"]);
        assert!(!out.exists());
    }
}

/// References of other settings in the folder (issue 37: after a class
/// folder was renamed, an experiment's run folder said "use another
/// --out"): the message names what differs and remedies that exist.
#[test]
fn references_of_other_data_name_what_differs_and_a_real_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let refs = dir.path().join("refs");
    crate::common::registry::copy_dir(Path::new(&m("refs")), &refs);
    // The pool's content recorded by the folder is not this data's.
    let mut v = read_json(&refs.join("manifest.json"));
    v["pool_sha256"] = "0".repeat(64).into();
    // As an older amun wrote it, without the hash of its text (hostile11
    // AU5: an edited manifest that carries one is refused as edited).
    v.as_object_mut().unwrap().remove("content_sha256");
    std::fs::write(refs.join("manifest.json"), v.to_string()).unwrap();
    let o = train_refs_again(&refs);
    fails_with(
        &o,
        &[
            "what differs: data's content",
            "class folder renamed",
            "`amun experiment --out`",
            "move",
        ],
    );
}

/// `import` does what its help says (issue 37, import-amun-clean, C51):
/// an amun checkpoint was refused with "needs --arch", then with --arch
/// as "already an amun checkpoint"; a .pt2, which brings its own
/// architecture, was refused for lacking --arch.
#[test]
fn import_names_an_amun_checkpoint_at_once_and_takes_a_pt2_without_arch() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let import = |from: &str, extra: &[&str]| {
        let out = p("o.safetensors");
        let mut a = vec!["import", "--from", from, "--dataset", "mnist"];
        a.extend_from_slice(&["--train-limit", "300", "--out", &out]);
        a.extend_from_slice(extra);
        amun(&a)
    };
    let o = import(&m("orig.safetensors"), &[]);
    fails_with(
        &o,
        &[
            "already an amun checkpoint",
            "orig.json",
            "nothing to import",
        ],
    );
    assert!(!stderr(&o).contains("--arch"), "{}", stderr(&o));
    // One whose sidecar is refused: the way to import its weights.
    std::fs::copy(m("orig.safetensors"), p("e.safetensors")).unwrap();
    let text = std::fs::read_to_string(m("orig.json")).unwrap();
    std::fs::write(p("e.json"), text.replacen('{', "{ ", 1)).unwrap();
    fails_with(
        &import(&p("e.safetensors"), &[]),
        &["e.json", "is refused", "move", "aside"],
    );
    // A .pt2 goes on to its archive (here not one) without --arch.
    std::fs::write(p("mine.pt2"), b"not a zip archive").unwrap();
    let o = import(&p("mine.pt2"), &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("mine.pt2") && !err.contains("--arch"), "{err}");
    // A PyTorch state_dict still needs its architecture, named.
    std::fs::copy(m("orig.safetensors"), p("sd.safetensors")).unwrap();
    fails_with(
        &import(&p("sd.safetensors"), &[]),
        &["--arch", "only an exported program (.pt2)"],
    );
    assert!(!dir.path().join("o.safetensors").exists());
    let help = crate::common::stdout(&amun(&["import", "--help"]));
    assert!(!help.contains("replaces the sidecar"), "{help}");
    assert!(help.contains(".pt2"), "{help}");
}

/// `rmia train-refs --like M` on a slice other than M's (issue 37,
/// W-rmia-like-seed-dataset) trained, and only the audit refused the
/// references: refused first, naming the flag and M's value.
#[test]
fn train_refs_like_a_model_on_other_data_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("refs");
    let like = m("orig.safetensors");
    for (slice, named) in [
        (
            &["--train-limit", "200", "--test-limit", "100"][..],
            &["--train-limit 200", "give --train-limit 300"],
        ),
        (
            &["--train-limit", "300"][..],
            &["no --test-limit", "give --test-limit 100"],
        ),
    ] {
        let mut a = vec!["rmia", "train-refs", "--like", &like, "--dataset", "mnist"];
        a.extend_from_slice(slice);
        a.extend_from_slice(&["--device", "cpu", "--out", out.to_str().unwrap()]);
        let o = amun(&a);
        fails_with(&o, named);
        fails_with(&o, &["mnist[train:300][test:100]", "audit"]);
        assert!(!out.exists());
    }
}

/// A reference folder missing a model's weights (issue 37,
/// W-rmia-rebuild-deleted): the audit says to run train-refs again, which
/// failed with a bare "No such file or directory". It trains that model
/// again, to the same bits, and the audit takes the folder.
#[test]
fn train_refs_again_rebuilds_a_deleted_reference_model() {
    let dir = tempfile::tempdir().unwrap();
    let refs = dir.path().join("refs");
    crate::common::registry::copy_dir(Path::new(&m("refs")), &refs);
    let was = std::fs::read(refs.join("ref-000.safetensors")).unwrap();
    std::fs::remove_file(refs.join("ref-000.safetensors")).unwrap();
    let (ck, rt, f) = (m("orig.safetensors"), m("rt.safetensors"), m("f.json"));
    let audit = || {
        amun(&[
            "audit",
            "--checkpoint",
            &ck,
            "--retrain",
            &rt,
            "--forget",
            &f,
            "--refs",
            refs.to_str().unwrap(),
            "--device",
            "cpu",
        ])
    };
    fails_with(
        &audit(),
        &[
            "ref-000.safetensors",
            "missing",
            "run `amun rmia train-refs --out",
        ],
    );
    ok(&train_refs_again(&refs));
    // The same seed and thread count: the same bits as the deleted file.
    assert!(std::fs::read(refs.join("ref-000.safetensors")).unwrap() == was);
    ok(&audit());
}

/// Issue 37 T7/T8: a reference model's weights swapped for the other's
/// (T7), or swapped under a manifest made to record them, as an older
/// train-refs did (T8), its logits deleted. The audit's hint, "train the
/// references again with `amun rmia train-refs`", was refused by
/// train-refs itself (T7: "changed since", T8: "does not match its
/// sidecar"). Now the hint names the folder, and train-refs trains that
/// model again, to the same bits.
#[test]
fn the_audits_hint_for_swapped_reference_weights_works() {
    let dir = tempfile::tempdir().unwrap();
    let (ck, rt, f) = (m("orig.safetensors"), m("rt.safetensors"), m("f.json"));
    for (case, blessed, why) in [
        ("t7", false, "changed since the reference models were made"),
        ("t8", true, "missing"),
    ] {
        let refs = dir.path().join(case);
        crate::common::registry::copy_dir(Path::new(&m("refs")), &refs);
        let w0 = refs.join("ref-000.safetensors");
        let was = std::fs::read(&w0).unwrap();
        std::fs::copy(refs.join("ref-001.safetensors"), &w0).unwrap();
        std::fs::remove_file(refs.join("ref-000.logits.safetensors")).unwrap();
        if blessed {
            let mpath = refs.join("manifest.json");
            let mut mf = read_json(&mpath);
            mf["files"]["ref-000.safetensors"] = amun::data::sha256_file(&w0).unwrap().into();
            // An older train-refs wrote no hash of the manifest's text.
            mf.as_object_mut().unwrap().remove("content_sha256");
            std::fs::write(&mpath, mf.to_string()).unwrap();
        }
        let audit = || {
            amun(&[
                "audit",
                "--checkpoint",
                &ck,
                "--retrain",
                &rt,
                "--forget",
                &f,
                "--refs",
                refs.to_str().unwrap(),
                "--device",
                "cpu",
            ])
        };
        let o = audit();
        fails_with(&o, &[why, "run `amun rmia train-refs --out"]);
        assert!(
            stderr(&o).contains(refs.to_str().unwrap()),
            "{}",
            stderr(&o)
        );
        ok(&train_refs_again(&refs));
        assert!(std::fs::read(&w0).unwrap() == was, "{case}");
        ok(&audit());
    }
}

/// `amun rmia train-refs` run again on the fixture's reference folder `refs`.
fn train_refs_again(refs: &Path) -> std::process::Output {
    Args::refs_like(&m("orig.safetensors"), refs.to_str().unwrap()).run()
}

/// A reference folder with tampered files (issue 37, T1/T9/T11/T12): train-refs
/// run again hashed them into the manifest, and the audit then took the folder
/// and reported other RMIA numbers; a deleted sidecar failed. It trains such a
/// model again (or computes its logits again): the untampered folder's numbers.
#[test]
fn train_refs_again_rebuilds_tampered_reference_files() {
    let dir = tempfile::tempdir().unwrap();
    let refs = dir.path().join("refs");
    crate::common::registry::copy_dir(Path::new(&m("refs")), &refs);
    let (ck, rt, f) = (m("orig.safetensors"), m("rt.safetensors"), m("f.json"));
    let audit = || {
        let o = amun(&[
            "audit",
            "--checkpoint",
            &ck,
            "--retrain",
            &rt,
            "--forget",
            &f,
            "--refs",
            refs.to_str().unwrap(),
            "--device",
            "cpu",
        ]);
        ok(&o);
        crate::common::stdout(&o)
    };
    let before = audit();
    // ref-000's logits replaced by ref-001's (a valid file, other numbers),
    // and ref-001's sidecar edited by hand.
    std::fs::copy(
        refs.join("ref-001.logits.safetensors"),
        refs.join("ref-000.logits.safetensors"),
    )
    .unwrap();
    let sidecar = refs.join("ref-001.json");
    let mut sc: serde_json::Value = read_json(&sidecar);
    sc["edited"] = serde_json::Value::Bool(true);
    std::fs::write(&sidecar, serde_json::to_string(&sc).unwrap()).unwrap();
    ok(&train_refs_again(&refs));
    assert_eq!(audit(), before, "the audit of the folder trained again");
    // A sidecar deleted alone: "no sidecar … beside it" before.
    std::fs::remove_file(&sidecar).unwrap();
    ok(&train_refs_again(&refs));
    assert_eq!(audit(), before, "the audit after a sidecar was deleted");
}

/// Outputs the OS refused with its bare message (issue 37, C11, C13-C16):
/// a trailing '/', a name too long for the temporary files beside it, a
/// folder no file can be made in; each named with what was expected,
/// before any work.
#[test]
fn output_paths_the_os_would_refuse_are_named_first() {
    let dir = tempfile::tempdir().unwrap();
    let split = |out: &str| Args::split_mnist("300", "5").with("--out", out).run();
    let slash = dir.path().join("f.json/");
    fails_with(
        &split(&format!("{}/", dir.path().join("f.json").display())),
        &["--out", "ends with '/'", "expected a file path"],
    );
    assert!(!slash.exists());
    let long = dir.path().join(format!("{}.json", "b".repeat(245)));
    fails_with(
        &split(long.to_str().unwrap()),
        &[
            "--out",
            "250 bytes long",
            "at most 255",
            "at most 235 bytes",
        ],
    );
    fails_with(
        &split("/proc/f.json"),
        &[
            "--out /proc/f.json",
            "cannot create files in /proc",
            "a folder this user can write to",
        ],
    );
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

/// A precomputed `--adv` set without its `.json` (issue 37, C34): a bare
/// "No such file or directory"; now the file, what it holds and the remedy.
#[test]
fn an_adversarial_set_without_its_metadata_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let adv = dir.path().join("adv.safetensors");
    std::fs::copy(m("orig.safetensors"), &adv).unwrap();
    let out = dir.path().join("u.safetensors");
    let args = [
        "--epochs",
        "1",
        "--adv",
        adv.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
    ];
    let o = crate::common::unlearn(
        &m("orig.safetensors"),
        &m("f.json"),
        "amun",
        out.to_str().unwrap(),
        &args,
    );
    fails_with(&o, &["adv.json", "missing", "its metadata", "amun adv"]);
    assert!(!out.exists());
}

/// A registry's next receipt name taken by a file it did not issue
/// (issue 37, C59b): `add` blamed a database put back to an older copy;
/// an anchor copy where no file can be made (C-create) was found only
/// after the registry's work, with the OS's bare message.
#[test]
fn a_squatted_receipt_and_an_unwritable_anchor_copy_are_named_for_what_they_are() {
    use crate::common::registry::{count, reg, request};
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("reg");
    let model = m("orig.safetensors");
    std::fs::write(dir.path().join("afile"), "x").unwrap();
    let bad_copy = dir.path().join("afile/a.log");
    let o = reg(
        "create",
        &r,
        &[
            "--checkpoint",
            &model,
            "--holdout-test",
            "30",
            "--anchor-copy",
            bad_copy.to_str().unwrap(),
        ],
    );
    fails_with(
        &o,
        &["anchor-copy", "afile/a.log", "is a file, not a folder"],
    );
    assert!(!stderr(&o).contains("hashing"), "{}", stderr(&o));
    assert!(!r.exists());
    ok(&reg(
        "create",
        &r,
        &["--checkpoint", &model, "--holdout-test", "30"],
    ));
    std::fs::create_dir_all(r.join("receipts")).unwrap();
    std::fs::write(r.join("receipts/r0001.json"), "{\"mine\": 1}\n").unwrap();
    let req = request(dir.path(), "r1.csv", &[1, 2]);
    let o = reg("add", &r, &[req.to_str().unwrap()]);
    fails_with(
        &o,
        &[
            "receipts/r0001.json",
            "no receipt this registry issued",
            "move it out",
        ],
    );
    assert!(!stderr(&o).contains("put back"), "{}", stderr(&o));
    assert_eq!(count(&r, "requests"), 0);
}

/// Issue 37 S1-exp-run-ref-*/W-exp-ref-weights-deleted: an experiment
/// called its references "up to date" with a reference model's weights
/// flipped, its sidecar edited or its weights deleted, where `audit
/// --refs` refuses the same folder. The experiment checks them with the
/// audit's function before any step is up to date, with the audit's
/// message.
#[test]
fn an_experiment_checks_its_references_as_the_audit_does() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::write(p("exp.toml"), EXPERIMENT).unwrap();
    let (cfg, base) = (p("exp.toml"), p("base"));
    for step in ["ref-000", "ref-001", "references"] {
        ok(&experiment(&[
            "--config", &cfg, "--out", &base, "--step", step, "-q",
        ]));
    }
    let flip = |f: &Path| {
        let mut b = std::fs::read(f).unwrap();
        let i = b.len() - 3;
        b[i] ^= 1;
        std::fs::write(f, b).unwrap();
    };
    let edit = |f: &Path| {
        let t = std::fs::read_to_string(f).unwrap();
        std::fs::write(f, t.replacen("\"epochs\": 2", "\"epochs\": 3", 1)).unwrap();
    };
    let delete = |f: &Path| std::fs::remove_file(f).unwrap();
    type Tamper<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Tamper, &str); 3] = [
        (
            "ref-000.safetensors",
            &flip,
            "changed since the reference models",
        ),
        ("ref-001.json", &edit, "changed since the reference models"),
        ("ref-000.safetensors", &delete, "missing"),
    ];
    for (k, (file, tamper, why)) in cases.into_iter().enumerate() {
        let run = dir.path().join(format!("run{k}"));
        crate::common::registry::copy_dir(Path::new(&base), &run);
        tamper(&run.join("references").join(file));
        let run = run.to_str().unwrap();
        for extra in [&["--step", "references"][..], &["--plan"]] {
            let mut a = vec!["--config", cfg.as_str(), "--out", run, "-q"];
            a.extend_from_slice(extra);
            // Issue 37 W-exp-ref-weights-deleted: the hint named `rmia
            // train-refs` on this folder, which writes nothing into a run
            // folder; the experiment trains them.
            let o = experiment(&a);
            fails_with(&o, &[file, why, "move", "amun experiment --folder"]);
            assert!(!stderr(&o).contains("train-refs --out"), "{}", stderr(&o));
        }
    }
}

/// Issue 37 W1: a missing input was named by the OS alone ("nope.json: No
/// such file or directory (os error 2)"), without its flag or what the
/// file should have been. Each is named before any work.
#[test]
fn a_missing_input_is_named_with_its_flag_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (nope, ck, refs) = (p("nope.json"), m("orig.safetensors"), m("refs"));
    let data: &[&str] = &["--dataset", "mnist", "--train-limit", "300"];
    let (w, s) = (p("w.safetensors"), p("s.json"));
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec![
                "unlearn",
                "--checkpoint",
                &ck,
                "--forget",
                &nope,
                "--method",
                "ft",
                "--epochs",
                "1",
                "--out",
                &w,
            ],
            "--forget",
            "deletion request",
        ),
        (
            [
                &["train", "--epochs", "1", "--exclude", &nope, "--out", &w][..],
                data,
            ]
            .concat(),
            "--exclude",
            "forget set",
        ),
        (
            vec![
                "audit",
                "--checkpoint",
                &ck,
                "--retrain",
                &ck,
                "--forget",
                &nope,
                "--refs",
                &refs,
            ],
            "--forget",
            "forget set",
        ),
        (
            [&["split", "--from", &nope, "--out", &s][..], data].concat(),
            "--from",
            "list of indices",
        ),
        (
            vec!["experiment", "--config", &nope],
            "--config",
            "TOML config",
        ),
    ];
    for (args, flag, what) in cases {
        let o = amun(&args);
        fails_with(&o, &[&format!("{flag} {nope}"), "no such file", what]);
        assert!(!stderr(&o).contains("os error"), "{}", stderr(&o));
    }
    assert!(files_in(dir.path()).is_empty());
}

/// Issue 38: a library error about a setting names the flag the user typed
/// (`--calibrate-max-cost`), not the library's key (`calibrate.max_cost`),
/// the settings it clashes with included; refused before any work.
#[test]
fn setting_errors_name_the_flags_that_gave_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let run = |extra: &[&str]| calibrated_ft(out.to_str().unwrap()).and(extra).run();
    for (extra, want) in [
        (
            &[
                "--calibrate-walk",
                "restart",
                "--calibrate-max-cost",
                "0.05",
            ][..],
            "--calibrate-max-cost: only the continuing walk (--calibrate-walk continue) has a \
             cost cap",
        ),
        (
            &["--calibrate-walk", "restart", "--calibrate-max-epochs", "4"][..],
            "--calibrate-max-epochs: only the continuing walk (--calibrate-walk continue)",
        ),
        (
            &["--calibrate-rule", "best"][..],
            "--calibrate-rule: unknown rule 'best'",
        ),
        (
            &["--calibrate-retain-budget", "0"][..],
            "--calibrate-retain-budget: '0': expected full, method",
        ),
        (
            &["--no-retain", "--calibrate-retain-budget", "2"][..],
            "--calibrate-retain-budget: a run without the retain set (--no-retain)",
        ),
        (
            &["--no-retain"][..],
            "--no-retain: ft cannot run without the retain set",
        ),
        (
            &["--adaptive"][..],
            "--adaptive: ft trains on no adversarial set to recompute; AMUN-A is amun (or \
             amun-salun) with --adaptive",
        ),
    ] {
        let o = run(extra);
        fails_with(&o, &[want]);
        assert!(!stderr(&o).contains("calibrate."), "{}", stderr(&o));
        assert!(!out.exists());
    }
}

/// A link to a checkpoint whose sidecar lies beside the target only: the
/// error says so (hostile8 SYM1 was told to import it as a PyTorch file).
#[test]
fn a_link_to_a_checkpoint_is_named_as_one() {
    let d = tempfile::tempdir().unwrap();
    let link = d.path().join("link.safetensors");
    std::os::unix::fs::symlink(m("orig.safetensors"), &link).unwrap();
    let o = amun(&["eval", "--checkpoint", link.to_str().unwrap()]);
    fails_with(&o, &["a link to", "beside the target", "link.json"]);
}

/// References trained with another recipe than the audited model give
/// other RMIA numbers (hostile8 RA2: 51.5 against 58.2) — audit says so on
/// stderr and in the JSON row's warnings; not for the model they were made
/// like.
#[test]
fn references_trained_unlike_the_audited_model_are_named() {
    let d = tempfile::tempdir().unwrap();
    let other = other_recipe_model(d.path());
    let o = audit(other.to_str().unwrap(), "", "f.json", &[]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("another recipe") && err.contains("epochs 2 against 1"),
        "{err}"
    );
    assert!(err.contains("train-refs --like"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let w = json["models"][0]["warnings"].to_string();
    assert!(w.contains("another recipe"), "{w}");
    let o = audit("orig.safetensors", "", "f.json", &[]);
    ok(&o);
    assert!(!stderr(&o).contains("another recipe"), "{}", stderr(&o));
}

/// hostile9 RF1: `unlearn` of an RMIA reference model ran with exit 0 on a
/// retain set of the whole training split, though the model trained on
/// half the audit's pool. Refused before any work, naming the flag.
#[test]
fn a_reference_model_is_not_unlearned() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("u.safetensors");
    let o = Args::ft_one_epoch(
        &m("refs/ref-000.safetensors"),
        &m("f.json"),
        out.to_str().unwrap(),
    )
    .and(&["-q"])
    .run();
    fails_with(&o, &["--checkpoint: an RMIA reference model"]);
    assert!(!out.exists());
}
