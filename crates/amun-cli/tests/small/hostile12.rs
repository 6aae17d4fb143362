//! hostile12's findings (issue 37): forget sets an older amun wrote or
//! made for other data, an audit's later checkpoints checked only after
//! the first was audited, an experiment config that writes out a default,
//! and what the registry says of references, receipts and image paths.
use crate::common::registry::{copy_dir, create, folder_registry, reg, request};
use crate::common::{self, Args, amun, fails_with, ok, path_in, read_json, stderr, stdout};
use std::path::Path;

/// Renames class folder `from` to `to` in train/ and test/.
fn rename_class(data: &Path, from: &str, to: &str) {
    for part in ["train", "test"] {
        std::fs::rename(data.join(part).join(from), data.join(part).join(to)).unwrap();
    }
}

/// - hostile12 N21: a class forget set of an older amun (no content hash,
///   no class name) was used without a word; it is warned of (seal it
///   with `split --from`), and after a class folder is renamed in place
///   `train --exclude` refuses it (it retrained without another class);
/// - N16: an MNIST set with a folder model said "an older amun wrote it
///   … `amun split --from`", advice that loops: it names the other data;
/// - N9/N10/N11: `audit` named a missing second checkpoint, one trained on
///   other data, or a forget set given as one only after auditing the
///   first (or as a raw JSON error): all before any audit;
/// - N13: an experiment config that adds `augment = false` on one-channel
///   images (the default there) was "another config" for its run folder;
/// - E12: an unsigned experiment.json (an older amun's) edited by hand was
///   blamed on the run's reference models: it names the record.
#[test]
fn older_or_foreign_inputs_are_named_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 120, 60);
    // The first images hold as many of each class: one fewer zero.
    let zeros = data.join("train/0");
    let mut files: Vec<_> = (std::fs::read_dir(&zeros).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    std::fs::remove_file(&files[0]).unwrap();
    let ds = data.to_str().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    ok(&Args::of(&["train", "--dataset", ds, "--out", &m, "-q"])
        .quick("1")
        .run());
    // A class whose count differs from the next one's: renamed to sort
    // last, its label goes to a class of another size.
    let count = |c: usize| {
        std::fs::read_dir(data.join(format!("train/{c}")))
            .unwrap()
            .count()
    };
    let c = (0..9).find(|&c| count(c) != count(c + 1)).unwrap();
    let (class, renamed) = (c.to_string(), format!("x{c}"));
    let fc = d.path().join("fc.json");
    let fc_s = fc.to_str().unwrap();
    ok(&amun(&[
        "split",
        "--dataset",
        ds,
        "--class",
        &class,
        "--out",
        fc_s,
    ]));
    let old = d.path().join("old.json");
    common::without_keys(&fc, &["train_sha256", "class_name"], &old);
    let old_s = old.to_str().unwrap();

    // N21: warned of where it is still the data's.
    let eval = |forget: &str| {
        Args::of(&["eval", "--checkpoint", &m, "--forget", forget])
            .with("--device", "cpu")
            .run()
    };
    let o = eval(old_s);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("warning") && err.contains("no content hash") && err.contains("split --from"),
        "{err}"
    );
    assert!(!stderr(&eval(fc_s)).contains("warning"));
    // Refused once a class folder is renamed in place.
    rename_class(&data, &class, &renamed);
    let rt = path_in(d.path(), "rt.safetensors");
    let o = Args::of(&[
        "train",
        "--dataset",
        ds,
        "--exclude",
        old_s,
        "--out",
        &rt,
        "-q",
    ])
    .quick("1")
    .run();
    fails_with(
        &o,
        &[
            "old.json",
            &format!("class {c}"),
            "not the training samples",
        ],
    );
    assert!(!Path::new(&rt).exists());
    rename_class(&data, &renamed, &class);

    // N16: a set of amun's MNIST with the folder model.
    let fm = path_in(d.path(), "fm.json");
    common::split_mnist("400", "20", &fm, &[]);
    let o = eval(&fm);
    fails_with(&o, &["fm.json", "mnist[train:400]", "other data"]);
    assert!(!stderr(&o).contains("split --from"), "{}", stderr(&o));

    // N9/N10/N11: every checkpoint before the first is audited; --refs is
    // never read.
    let mm = common::registry::mnist_model(d.path(), "400", "1");
    let ff = path_in(d.path(), "ff.json");
    ok(&common::split_forget(ds, "12", &ff));
    let audit = |second: &str| {
        let a = ["--forget", &ff, "--refs", "nothere-refs", "--device", "cpu"];
        Args::of(&["audit", "--checkpoint", &m, second])
            .and(&a)
            .run()
    };
    fails_with(
        &audit("nothere.safetensors"),
        &["nothere.safetensors", "no such file"],
    );
    fails_with(
        &audit(mm.to_str().unwrap()),
        &["orig.safetensors", "trained on mnist[train:400]"],
    );
    fails_with(
        &audit(&ff),
        &[
            "ff.json",
            "expected a .safetensors checkpoint",
            "a forget set",
        ],
    );

    // N13: a run folder begun without `augment`, planned with it at its
    // default for one-channel images.
    let (c1, c2) = (path_in(d.path(), "c1.toml"), path_in(d.path(), "c2.toml"));
    std::fs::write(&c1, common::folder_config(&data, "", "")).unwrap();
    std::fs::write(&c2, common::folder_config(&data, "augment = false\n", "")).unwrap();
    let run = path_in(d.path(), "run");
    ok(&Args::of(&["experiment", "--config", &c1, "--out", &run])
        .and(&["--step", "forget-s0-f0.1", "-q"])
        .run());
    let o = amun(&["experiment", "--config", &c2, "--out", &run, "--plan"]);
    ok(&o);
    assert!(stdout(&o).contains("1 done"), "{}", stdout(&o));
    // Augmentation asked for on one-channel images is another config.
    std::fs::write(&c2, common::folder_config(&data, "augment = true\n", "")).unwrap();
    let o = amun(&["experiment", "--config", &c2, "--out", &run, "--plan"]);
    fails_with(&o, &["another config", "train.augment"]);

    // E12: an unsigned (older) experiment.json edited by hand was blamed on
    // the reference models it no longer matches.
    for step in ["ref-000", "ref-001", "references"] {
        ok(&Args::of(&["experiment", "--config", &c1, "--out", &run])
            .and(&["--step", step, "-q"])
            .run());
    }
    let rec = Path::new(&run).join("experiment.json");
    let mut v = read_json(&rec);
    v.as_object_mut().unwrap().remove("content_sha256");
    v["train"]["lr"] = serde_json::json!(0.5);
    std::fs::write(&rec, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let o = amun(&["experiment", "--folder", &run, "--plan"]);
    fails_with(
        &o,
        &["run/experiment.json", "records no content hash", "edited"],
    );
}

/// - hostile12 N31: `registry create --refs` of a manifest an older amun
///   wrote (no hash of its own text) was accepted without the warning an
///   audit gives;
/// - N26: another registry's receipt made `verify` call the registry
///   CHANGED with "1 problem(s) found": the receipt is named as not this
///   registry's, the registry as intact;
/// - N24: an image path of a copy of the dataset folder was printed
///   `//tmp/…` with "paths are relative to the dataset folder", though an
///   absolute path inside it is taken.
#[test]
fn the_registry_names_foreign_receipts_paths_and_unsealed_references() {
    let d = tempfile::tempdir().unwrap();
    let (data, r) = folder_registry(d.path());
    let m = d.path().join("m.safetensors");

    // N31.
    let refs = d.path().join("refs");
    ok(&amun(&[
        "rmia",
        "train-refs",
        "--dataset",
        data.to_str().unwrap(),
        "--like",
        m.to_str().unwrap(),
        "--count",
        "2",
        "--device",
        "cpu",
        "--out",
        refs.to_str().unwrap(),
        "-q",
    ]));
    let manifest = refs.join("manifest.json");
    common::without_keys(&manifest, &["content_sha256"], &manifest);
    let r3 = d.path().join("reg3");
    let o = reg(
        "create",
        &r3,
        &[
            "--checkpoint",
            m.to_str().unwrap(),
            "--refs",
            refs.to_str().unwrap(),
            "--holdout-test",
            "10",
            "-q",
        ],
    );
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("carries no hash of its own text") && err.contains("seal it"),
        "{err}"
    );

    // N26.
    let r2 = d.path().join("reg2");
    create(&r2, &m, &["--holdout-test", "10", "-q"]);
    let q = request(d.path(), "q.csv", &[5]);
    ok(&reg("add", &r2, &[q.to_str().unwrap()]));
    let theirs = r2.join("receipts/r0001.json");
    let o = reg("verify", &r, &["--receipt", theirs.to_str().unwrap()]);
    fails_with(
        &o,
        &[
            "r0001.json",
            "is not a receipt of",
            "another registry",
            "itself is intact",
        ],
    );
    assert!(!stdout(&o).contains("CHANGED"), "{}", stdout(&o));

    // N24.
    let copy = d.path().join("copy");
    copy_dir(&data, &copy);
    let first = std::fs::read_dir(data.join("train/3"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .min()
        .unwrap();
    let q = d.path().join("qcp.txt");
    let in_copy = copy.join("train/3").join(&first);
    std::fs::write(&q, format!("{}\n", in_copy.display())).unwrap();
    let o = reg("add", &r, &[q.to_str().unwrap()]);
    fails_with(
        &o,
        &[
            &in_copy.display().to_string(),
            "outside the registry's dataset folder",
        ],
    );
    assert!(!stderr(&o).contains("//"), "{}", stderr(&o));
    let q = d.path().join("qabs.txt");
    std::fs::write(
        &q,
        format!("{}\n", data.join("train/3").join(&first).display()),
    )
    .unwrap();
    ok(&reg("add", &r, &[q.to_str().unwrap()]));
}
