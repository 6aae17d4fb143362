//! hostile13's findings (issue 37): a forget set an older amun wrote (no
//! content hash) sealed, recorded or planned with a folder's data without
//! a word, or called a copy when its folder changed, and an audit's
//! models checked one by one as it went.
use crate::common::registry::{count, create, folder_registry, mnist_model, reg, request};
use crate::common::{self, Args, amun, fails_with, ok, path_in, read_json, stderr, stdout};
use std::path::Path;

/// - hostile13 F15: `split --from` sealed an older amun's class set (class
///   by number only) with the name that number has now, without a word;
/// - R15/R16: `registry add` recorded such a set for good, without a word;
/// - R9: a set of another MNIST slice "named other samples";
/// - X12: an experiment's `forget.files` of such a set: `--plan` said
///   nothing (hostile14 X12: nor did `--step`);
/// - A16: `rmia train-refs` sealed an older manifest whose seed was
///   edited over models another seed made;
/// - N21b/F14: a folder changed at the set's path was called a copy;
/// - A4/A5: `audit`'s second checkpoint without a sidecar was named only
///   after the first was audited; A1: a model given twice was audited
///   twice; hostile14 A1/A5: those refusals named flags not given, or asked
///   for flags given; hostile14 RA1: a set sealed on an exact copy of the
///   registry's folder was refused as made for other data.
///
/// And what the lead's review of the fixes found (fix37e): a sealed set
/// made on the registry's folder while one of its images was another was
/// recorded as a request; an experiment's run folder kept an older set's
/// copy unsealed; "1 requests", "was null" for a setting amun chooses,
/// "0.0000×" for a tiny cost cap.
#[test]
fn unsealed_sets_and_repeated_models_are_named_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let (data, r) = folder_registry(d.path());
    let ds = data.to_str().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    let (fc, old) = (path_in(d.path(), "fc.json"), path_in(d.path(), "old.json"));
    ok(&common::split_class(ds, "3", &fc));
    common::without_keys(&fc, &["train_sha256", "class_name"], &old);

    // F15: sealing says which class it seals the number as.
    let sealed = path_in(d.path(), "sealed.json");
    let o = amun(&["split", "--from", &old, "--dataset", ds, "--out", &sealed]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("class 3 by its number only") && err.contains("sealed as class 3 '3'"),
        "{err}"
    );

    // R15/R16: the registry refuses it unsealed, takes it sealed.
    fails_with(
        &reg("add", &r, &[&old]),
        &["old.json", "no content hash", "class 3", "split --from"],
    );
    ok(&reg("add", &r, &[&sealed]));
    let o = reg("verify", &r, &[]);
    ok(&o);
    assert!(
        stdout(&o).contains("1 version, 1 request,"),
        "{}",
        stdout(&o)
    );

    // fix37e: a set sealed on the folder while an image was another one is
    // refused by its content, before anything is recorded.
    let mut imgs: Vec<_> = std::fs::read_dir(data.join("train/3"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    imgs.sort();
    let kept = std::fs::read(&imgs[0]).unwrap();
    std::fs::copy(&imgs[1], &imgs[0]).unwrap();
    let edited = path_in(d.path(), "edited.json");
    ok(&common::split_forget(ds, "12", &edited));
    std::fs::write(&imgs[0], kept).unwrap();
    fails_with(
        &reg("add", &r, &[&edited]),
        &[
            "edited.json",
            "other training data than the registry's",
            "split --dataset",
        ],
    );
    assert_eq!(count(&r, "requests"), 1);

    // hostile14 RA1: a set sealed on an exact copy of the registry's folder
    // (another path, the same content) names the registry's own samples:
    // taken, not called "made for other data".
    let copy = d.path().join("digits-copy");
    crate::common::registry::copy_dir(&data, &copy);
    let on_copy = path_in(d.path(), "on-copy.json");
    ok(&common::split_forget(copy.to_str().unwrap(), "5", &on_copy));
    ok(&reg("add", &r, &[&on_copy]));
    assert_eq!(count(&r, "requests"), 2);

    // R9: another slice of MNIST is named so.
    let mr = d.path().join("mreg");
    create(&mr, &mnist_model(d.path(), "400", "1"), &[]);
    let f200 = path_in(d.path(), "f200.json");
    common::split_mnist("200", "20", &f200, &[]);
    fails_with(
        &reg("add", &mr, &[&f200]),
        &["f200.json", "mnist[train:200]", "another slice"],
    );
    // fix37e: MNIST is not "amun's registry dataset" (read as the deletion
    // registry).
    let x = path_in(d.path(), "x.json");
    fails_with(
        &amun(&["split", "--from", &f200, "--dataset", ds, "--out", &x]),
        &[
            "f200.json",
            "(200 training samples, the MNIST dataset amun fetches)",
        ],
    );
    // fix37e: a cost cap too small for 4 decimals is said so.
    let q = request(d.path(), "q.csv", &[1, 2, 3]);
    ok(&reg("add", &mr, &[q.to_str().unwrap()]));
    let cap = ["--calibrate-max-cost", "1e-9", "--device", "cpu"];
    fails_with(&reg("apply", &mr, &cap), &["below 0.0001× its own retrain"]);

    // X12: an experiment's file of an older amun is warned of at --plan.
    let (ff, fold) = (path_in(d.path(), "ff.json"), path_in(d.path(), "fold.json"));
    ok(&common::split_forget(ds, "12", &ff));
    common::without_keys(&ff, &["train_sha256"], &fold);
    let cfg = path_in(d.path(), "x.toml");
    let files = format!("files = [\"{fold}\"]\n");
    std::fs::write(&cfg, common::folder_config(&data, "", &files)).unwrap();
    let run = path_in(d.path(), "run");
    let o = amun(&["experiment", "--config", &cfg, "--out", &run, "--plan"]);
    ok(&o);
    assert!(
        stderr(&o).contains("fold.json records no content hash"),
        "{}",
        stderr(&o)
    );
    // hostile14 X12: and at `--step` (with --config or --folder), which
    // reads it. fix37e: the run folder's copy is sealed on the data the
    // run read, and a setting amun chose is not called "null".
    let step = ["--step", "forget-s0-f0.1", "-q"];
    let o = Args::of(&["experiment", "--config", &cfg, "--out", &run])
        .and(&step)
        .run();
    ok(&o);
    assert!(
        stderr(&o).contains("fold.json records no content hash"),
        "{}",
        stderr(&o)
    );
    let o = Args::of(&["experiment", "--folder", &run]).and(&step).run();
    ok(&o);
    assert!(
        stderr(&o).contains("fold.json records no content hash"),
        "{}",
        stderr(&o)
    );
    let copy = read_json(&Path::new(&run).join("forget-s0-f0.1.json"));
    assert_eq!(
        copy["train_sha256"],
        read_json(Path::new(&ff))["train_sha256"]
    );
    std::fs::write(&cfg, common::folder_config(&data, "lr = 0.1\n", &files)).unwrap();
    fails_with(
        &amun(&["experiment", "--config", &cfg, "--out", &run, "--plan"]),
        &["train.lr was automatic (the default) and is now 0.1"],
    );

    // A4/A5, A1: every model before any is audited (--refs is never read).
    let bare = path_in(d.path(), "bare.safetensors");
    std::fs::copy(&m, &bare).unwrap();
    let audit = |models: &[&str]| {
        let a = ["--forget", &ff, "--refs", "nothere-refs", "--device", "cpu"];
        Args::of(&["audit", "--checkpoint"])
            .and(models)
            .and(&a)
            .run()
    };
    fails_with(
        &audit(&[&m, &bare]),
        &["bare.safetensors", "no amun sidecar", "separately"],
    );
    // hostile14 A5: --arch and --dataset given are not asked for again.
    let o = audit(&[&m, &bare, "--arch", "small-cnn", "--dataset", ds]);
    fails_with(&o, &["bare.safetensors", "no amun sidecar", "separately"]);
    assert!(
        !stderr(&o).contains("give --arch and --dataset"),
        "{}",
        stderr(&o)
    );
    // hostile14 A1: no --retrain given, so no word of its row.
    let o = audit(&[&m, &m]);
    fails_with(&o, &["m.safetensors", "given twice"]);
    assert!(!stderr(&o).contains("--retrain"), "{}", stderr(&o));

    // A16: an older (unsealed) references manifest whose seed was edited
    // is not sealed over models another seed made.
    let refs = path_in(d.path(), "refs");
    let train_refs = |seed: &str| {
        let a = [
            "--count", "2", "--seed", seed, "--device", "cpu", "--out", &refs, "-q",
        ];
        Args::of(&["rmia", "train-refs", "--dataset", ds, "--like", &m])
            .and(&a)
            .run()
    };
    ok(&train_refs("0"));
    let manifest = Path::new(&refs).join("manifest.json");
    let mut v = read_json(&manifest);
    v.as_object_mut().unwrap().remove("content_sha256");
    v["seed"] = serde_json::json!(1);
    let edited = serde_json::to_string_pretty(&v).unwrap();
    std::fs::write(&manifest, &edited).unwrap();
    fails_with(
        &train_refs("1"),
        &["ref-000.safetensors", "trained with seed", "another --seed"],
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), edited);

    // N21b/F14: the folder changed at the set's own path is not "a copy".
    let img = std::fs::read_dir(data.join("train/3")).unwrap().next();
    std::fs::remove_file(img.unwrap().unwrap().path()).unwrap();
    let again = path_in(d.path(), "again.json");
    fails_with(
        &amun(&["split", "--from", &old, "--dataset", ds, "--out", &again]),
        &[
            "old.json",
            "120 training samples, which holds 119 now",
            "changed",
        ],
    );
}
