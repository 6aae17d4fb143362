//! The tuning stage (the paper's protocol against an exact retrain), on
//! real MNIST-5k; calibration's tests are in `calibration`.
use crate::common;
use common::{amun, forget_indices, ok, path_in, read_json as read, split_mnist, stdout, unlearn};
use std::path::Path;

/// `[tune]` with a 2 × 2 grid for FT: every grid point is an artifact, the
/// choice is the point with the smallest gap of the tuning table, the tuned
/// settings run on the evaluation seed, the tuning forget set avoids the
/// evaluation one, the noise floor's second retrain is a row of its own,
/// and a second run (as after a kill) recomputes nothing.
#[test]
fn tuning_picks_the_smallest_gap_and_resumes() {
    common::ensure("mnist");
    let d = tempfile::tempdir().unwrap();
    let cfg = path_in(d.path(), "tune.toml");
    std::fs::write(
        &cfg,
        "name = \"tune\"\nmodel = \"small-cnn\"\nseeds = [0]\ndevice = \"cpu\"\n\
         [data]\ndataset = \"mnist\"\ntrain_limit = 400\ntest_limit = 100\n\
         [train]\nepochs = 2\n\
         [forget]\nfractions = [0.1]\nwith_retain = [true]\nnoise_floor = true\n\
         [rmia]\nreference_models = 2\n\
         [tune]\nlr = [0.1, 0.001]\nstep = [1, 10]\nseeds = [1]\n\
         [methods.ft]\nfinetune.epochs = 2\n\
         [methods.amun]\nfinetune.epochs = 2\nattack.steps = 10\n\
         tune = { lr = [0.01], step = [1] }\n",
    )
    .unwrap();
    let run = d.path().join("run");
    let o = amun(&[
        "experiment",
        "--config",
        &cfg,
        "--out",
        run.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let tuning = report["tuning"].as_array().expect("a tuning section");
    assert_eq!(tuning.len(), 2, "{tuning:?}");
    let of = |m: &str| {
        tuning
            .iter()
            .find(|t| t["method"] == m)
            .unwrap_or_else(|| panic!("no tuning of {m}: {tuning:?}"))
    };
    // A method with an adversarial set tunes too (its grid points read D_A
    // where evaluation runs do), on its own one-point grid.
    assert_eq!(of("amun")["table"].as_array().unwrap().len(), 1);
    let t = of("ft");
    let table = t["table"].as_array().unwrap();
    assert_eq!(table.len(), 4, "2 lr × 2 steps");
    let best = table
        .iter()
        .min_by(|a, b| {
            a["value"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["value"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(t["chosen_lr"], best["lr"]);
    assert_eq!(t["chosen_step"], best["step"]);
    assert_eq!(t["settings"]["finetune"]["lr"], best["lr"]);
    // The values differ: the grid points really ran with their settings.
    let values: Vec<f64> = table.iter().map(|r| r["value"].as_f64().unwrap()).collect();
    assert!(
        values.iter().any(|v| (v - values[0]).abs() > 1e-9),
        "{values:?}"
    );

    // The tuning forget set: same size, another seed, disjoint from the
    // evaluation forget set.
    let files = common::files_in(&run);
    let tune_forget = files
        .iter()
        .find(|f| f.starts_with("tune-forget-") && f.ends_with(".json") && !f.contains(".meta"))
        .unwrap_or_else(|| panic!("no tuning forget set in {files:?}"));
    let t_ids = forget_indices(&run.join(tune_forget));
    let e_ids = forget_indices(&run.join("forget-s0-f0.1.json"));
    assert_eq!(t_ids.len(), e_ids.len());
    assert!(t_ids.iter().all(|i| e_ids.binary_search(i).is_err()));

    // The tuning plot is written.
    assert!(run.join("tune-ft-f0.1-R.png").is_file(), "{files:?}");
    // The noise floor: a second exact retrain of the same forget set from
    // another initialisation, scored against the first like any method.
    let rows = report["tables"][0]["rows"].as_array().unwrap();
    let floor = rows
        .iter()
        .find(|r| r["method"] == "retrain (another seed)")
        .unwrap_or_else(|| panic!("no noise-floor row: {rows:?}"));
    let gap = floor["avg_gap"]["mean"].as_f64().unwrap();
    assert!(gap > 0.0 && gap < 50.0, "noise floor {gap}");
    let again = read(&run.join("retrain2-s0-f0.1.json"));
    assert_eq!(
        again["origin"]["subset"],
        read(&run.join("retrain-s0-f0.1.json"))["origin"]["subset"],
        "both retrains leave out the same forget set"
    );
    assert!(again["origin"]["subset"].is_object());
    assert_ne!(
        std::fs::read(run.join("retrain2-s0-f0.1.safetensors")).unwrap(),
        std::fs::read(run.join("retrain-s0-f0.1.safetensors")).unwrap()
    );
    // The tuned variant is a row of the report.
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("ft (tuned)") && md.contains("amun (tuned)"),
        "{md}"
    );

    // Resuming computes nothing: every grid point is a fresh artifact.
    let o = amun(&[
        "experiment",
        "--config",
        &cfg,
        "--out",
        run.to_str().unwrap(),
    ]);
    ok(&o);
    // "tune: N steps, N up to date"
    let err = common::stderr(&o);
    let counts: Vec<usize> = err
        .lines()
        .find(|l| l.contains(" up to date"))
        .unwrap_or_else(|| panic!("no up-to-date line:\n{err}"))
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        counts.len() == 2 && counts[0] == counts[1] && counts[0] > 20,
        "a rerun recomputed steps:\n{err}"
    );
    assert!(!err.contains("epoch 1"), "a rerun trained again:\n{err}");
}

/// The fine-tune follows the original model's augmentation (from its
/// sidecar): an MNIST model trained without crop+flip is fine-tuned without
/// them — the same bits as asking for no augmentation, other bits than
/// asking for it.
#[test]
fn fine_tuning_uses_the_original_models_augmentation() {
    let d = tempfile::tempdir().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    common::mnist_trained_once(Path::new(&m), "300", "1");
    let side = read(&Path::new(&m).with_extension("json"));
    assert_eq!(
        side["origin"]["recipe"]["augment"], false,
        "1-channel data trains without augmentation: {side}"
    );
    let f = path_in(d.path(), "f.json");
    split_mnist("300", "30", &f, &[]);
    let weights = |name: &str, extra: &[&str]| -> String {
        let out = path_in(d.path(), name);
        let mut a = vec!["--epochs", "1"];
        a.extend_from_slice(extra);
        ok(&unlearn(&m, &f, "ft", &out, &a));
        read(&Path::new(&out).with_extension("json"))["weights_sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let default = weights("default.safetensors", &[]);
    let off = weights("off.safetensors", &["--set", "finetune.augment=false"]);
    let on = weights("on.safetensors", &["--set", "finetune.augment=true"]);
    assert_eq!(default, off, "the default fine-tune augmented");
    assert_ne!(default, on, "augment=true changed nothing");
}
