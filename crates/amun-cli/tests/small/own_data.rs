//! A user's own data: forget sets from their files, a dataset folder given
//! by a relative path, class names for IDX files, slices and per-sample
//! output (issue 14's points, one test each, on real MNIST-5k images).
use crate::common;
use common::{Args, amun, bin, fails_with, forget_indices, ok, path_in, stdout};
use std::path::Path;
use std::process::{Command, Output};

/// `amun` run from `dir`.
fn amun_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running amun")
}

#[test]
fn split_from_reads_users_lists_and_refuses_bad_ones() {
    common::ensure("mnist");
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = path_in(d.path(), name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let split_from = |file: &str, out: &str| {
        amun(&[
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            "1000",
            "--from",
            file,
            "--out",
            &path_in(d.path(), out),
        ])
    };
    let inputs = [
        ("authors.csv", "unlearn_idx\n905\n3\n42\n"),
        ("table.csv", "name,idx\na,42\nb,905\nc,3\n"),
        ("plain.txt", "42\n\n3\n905\n"),
        ("array.json", "[905, 42, 3]"),
    ];
    for (name, text) in inputs {
        let f = write(name, text);
        let out = format!("{name}.forget.json");
        ok(&split_from(&f, &out));
        assert_eq!(
            forget_indices(Path::new(&path_in(d.path(), &out))),
            [3, 42, 905],
            "{name}"
        );
    }
    // amun's own JSON round-trips.
    let own = path_in(d.path(), "authors.csv.forget.json");
    ok(&split_from(&own, "again.json"));
    assert_eq!(
        forget_indices(Path::new(&path_in(d.path(), "again.json"))),
        [3, 42, 905]
    );

    let bad = [
        ("dup.txt", "3\n42\n3\n", "index 3 is listed twice"),
        (
            "range.txt",
            "3\n1000\n",
            "index 1000 is out of range for the 1000",
        ),
        ("negative.json", "[3, -1]", "index -1 is out of range"),
        (
            "word.txt",
            "3\nfour\n",
            "line 2: 'four' is not an integer index",
        ),
        ("empty.txt", "\n\n", "the forget set is empty"),
        (
            "header.csv",
            "a,b\n1,2\n",
            "without unlearn_idx, index, idx or indices",
        ),
    ];
    for (name, text, why) in bad {
        let f = write(name, text);
        let o = split_from(&f, "bad.json");
        fails_with(&o, &[name, why]);
        assert!(!d.path().join("bad.json").exists(), "{name}: wrote a file");
    }
}

/// An IDX folder (the MNIST family's format) of the first `train`/`test`
/// MNIST-5k images, with `classes.txt`.
fn idx_folder(dir: &Path, train: usize, test: usize) {
    common::ensure("mnist");
    let data = amun::data::DataSpec::new("mnist")
        .load(&amun::data::default_data_dir())
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (split, n, prefix) in [(&data.train, train, "train"), (&data.test, test, "t10k")] {
        let s = split.prefix(n);
        let px: Vec<u8> = Vec::<u8>::try_from(s.images.flatten(0, -1)).unwrap();
        let mut img = vec![0, 0, 8, 3];
        for d in [n as u32, 28, 28] {
            img.extend_from_slice(&d.to_be_bytes());
        }
        img.extend_from_slice(&px);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
        let mut lab = vec![0, 0, 8, 1];
        lab.extend_from_slice(&(n as u32).to_be_bytes());
        lab.extend(s.label_vec().iter().map(|&l| l as u8));
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).unwrap();
    }
    let names = "zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n";
    std::fs::write(dir.join("classes.txt"), names).unwrap();
}

#[test]
fn a_relative_dataset_folder_resolves_from_any_directory_with_its_class_names() {
    let d = tempfile::tempdir().unwrap();
    let work = d.path().join("work");
    idx_folder(&work.join("digits"), 300, 100);

    // Class names from classes.txt.
    let o = amun_in(&work, &["data", "info", "--dataset", "digits"]);
    ok(&o);
    assert!(stdout(&o).contains("seven"), "{}", stdout(&o));

    // Trained with a relative path from `work`, used from its parent.
    ok(&amun_in(
        &work,
        &[
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--out",
            "m.safetensors",
            "-q",
        ],
    ));
    ok(&amun_in(
        &work,
        &[
            "split",
            "--dataset",
            "digits",
            "--forget",
            "30",
            "--out",
            "f.json",
        ],
    ));
    let o = amun_in(
        d.path(),
        &[
            "eval",
            "--checkpoint",
            "work/m.safetensors",
            "--forget",
            "work/f.json",
        ],
    );
    ok(&o);
    assert!(stdout(&o).contains("nine"), "{}", stdout(&o));

    // A classes.txt naming too few classes is refused, naming the file.
    std::fs::write(work.join("digits/classes.txt"), "zero\none\n").unwrap();
    let o = amun_in(&work, &["data", "info", "--dataset", "digits"]);
    fails_with(
        &o,
        &["classes.txt", "names 2 class(es), but the labels use 10"],
    );
}

#[test]
fn per_sample_output_matches_eval_and_a_slice_is_named_by_flags() {
    let d = tempfile::tempdir().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    ok(&common::train_mnist(&m, "400", "2", &[]));
    let csv = path_in(d.path(), "samples.csv");
    let o = amun(&["eval", "--checkpoint", &m, "--json", "--per-sample", &csv]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[..7],
        [
            "split",
            "index",
            "label",
            "pred",
            "confidence",
            "loss",
            "forget"
        ]
    );
    assert_eq!(header.len(), 7 + 10, "one logit column per class");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 400 + 200, "train then test rows");
    // Accuracy recomputed from the rows equals eval's, per split.
    for (split, n) in [("train", 400.0), ("test", 200.0)] {
        let right = rows
            .iter()
            .filter(|r| r[0] == split && r[2] == r[3])
            .count() as f64;
        let said = report[split]["accuracy"]
            .as_f64()
            .unwrap_or_else(|| panic!("no {split}.accuracy in {report}"));
        assert!(
            (100.0 * right / n - said).abs() < 1e-6 || (right / n - said).abs() < 1e-6,
            "{split}: rows give {}, eval says {said}",
            right / n
        );
    }
    // The prediction is the largest logit.
    for r in rows.iter().take(50) {
        let logits: Vec<f64> = r[7..].iter().map(|v| v.parse().unwrap()).collect();
        let arg = (0..10)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(r[3], arg.to_string());
    }

    // A forget set of a slice: a model whose sidecar says 400 images is
    // told it was trained on 300 (as a user's import would be) and accepts
    // a forget set of the 300-image slice.
    let f = path_in(d.path(), "f.json");
    ok(&amun(&[
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "300",
        "--forget",
        "20",
        "--out",
        &f,
    ]));
    let o = amun(&["eval", "--checkpoint", &m, "--forget", &f]);
    fails_with(&o, &["mnist[train:300]"]);
    let o = amun(&[
        "eval",
        "--checkpoint",
        &m,
        "--forget",
        &f,
        "--train-limit",
        "300",
    ]);
    ok(&o);
}

/// `[forget] files`: one file per seed, in any format `split --from` reads,
/// relative to the config, whatever the current directory; the forget-set
/// step writes exactly its indices, and a file of another size than the
/// config's fraction is refused naming the file.
#[test]
fn experiment_forget_sets_come_from_files_relative_to_the_config() {
    common::ensure("mnist");
    let d = tempfile::tempdir().unwrap();
    let cfg_dir = d.path().join("cfg");
    std::fs::create_dir_all(cfg_dir.join("lists")).unwrap();
    // 10% of a 400-image slice: 40 indices, in the authors' CSV format.
    let ids: Vec<i64> = (0..40).map(|i| (i * 37 + 11) % 400).collect();
    let mut csv = String::from("unlearn_idx\n");
    for i in &ids {
        csv.push_str(&format!("{i}\n"));
    }
    std::fs::write(cfg_dir.join("lists/req.csv"), &csv).unwrap();
    std::fs::write(cfg_dir.join("lists/short.txt"), "1\n2\n3\n").unwrap();
    let config = |file: &str| {
        format!(
            "name = \"files\"\nmodel = \"small-cnn\"\nseeds = [0]\ndevice = \"cpu\"\n\
             [data]\ndataset = \"mnist\"\ntrain_limit = 400\ntest_limit = 100\n\
             [train]\nepochs = 1\n\
             [forget]\nfractions = [0.1]\nfiles = [\"{file}\"]\nwith_retain = [true]\n\
             [rmia]\nreference_models = 2\n\
             [methods.ft]\n"
        )
    };
    std::fs::write(cfg_dir.join("exp.toml"), config("lists/req.csv")).unwrap();
    let out = path_in(d.path(), "run");
    ok(&amun_in(
        d.path(),
        &[
            "experiment",
            "--config",
            "cfg/exp.toml",
            "--out",
            &out,
            "--step",
            "forget-s0-f0.1",
            "-q",
        ],
    ));
    let mut want = ids.clone();
    want.sort_unstable();
    assert_eq!(
        forget_indices(Path::new(&path_in(Path::new(&out), "forget-s0-f0.1.json"))),
        want
    );

    std::fs::write(cfg_dir.join("short.toml"), config("lists/short.txt")).unwrap();
    let o = amun_in(
        d.path(),
        &[
            "experiment",
            "--config",
            "cfg/short.toml",
            "--out",
            &path_in(d.path(), "run2"),
            "--step",
            "forget-s0-f0.1",
            "-q",
        ],
    );
    fails_with(&o, &["short.txt", "holds 3 of 400 training samples"]);

    std::fs::write(cfg_dir.join("missing.toml"), config("lists/nope.csv")).unwrap();
    let o = amun_in(
        &cfg_dir,
        &["experiment", "--config", "missing.toml", "--plan"],
    );
    fails_with(&o, &["missing.toml", "nope.csv does not exist"]);
}

/// A report line can be reproduced with `amun audit`: the standalone audit of
/// the run's models, with its default seed, gives the experiment's numbers
/// (the same D_R draw, the same RMIA), and the experiment logs progress as
/// plain lines when its output is not a terminal.
#[test]
fn standalone_audit_reproduces_the_experiments_audit() {
    common::ensure("mnist");
    let d = tempfile::tempdir().unwrap();
    let cfg = path_in(d.path(), "tiny.toml");
    std::fs::write(
        &cfg,
        "name = \"tiny\"\nmodel = \"small-cnn\"\nseeds = [0]\ndevice = \"cpu\"\n\
         [data]\ndataset = \"mnist\"\ntrain_limit = 400\ntest_limit = 100\n\
         [train]\nepochs = 2\n\
         [forget]\nfractions = [0.1]\nwith_retain = [true]\n\
         [rmia]\nreference_models = 2\n\
         [methods.ft]\n",
    )
    .unwrap();
    let run = d.path().join("run");
    let o = amun(&[
        "experiment",
        "--config",
        &cfg,
        "--out",
        run.to_str().unwrap(),
    ]);
    ok(&o);
    // Not a terminal: progress comes as plain lines, no bar's control codes.
    let err = common::stderr(&o);
    assert!(!err.contains('\r') && !err.contains("\x1b["), "{err}");
    assert!(err.lines().count() >= 5, "too little progress:\n{err}");

    let name = |prefix: &str, ext: &str| -> String {
        let f = common::files_in(&run)
            .into_iter()
            .find(|f| f.starts_with(prefix) && f.ends_with(ext))
            .unwrap_or_else(|| panic!("no {prefix}*{ext} in the run"));
        path_in(&run, &f)
    };
    let ft = name("unlearn-ft-", ".safetensors");
    let retrain = name("retrain-", ".safetensors");
    let o = amun(&[
        "audit",
        "--checkpoint",
        &ft,
        &retrain,
        "--forget",
        &name("forget-", ".json"),
        "--refs",
        &path_in(&run, "references"),
        "--json",
    ]);
    ok(&o);
    let cli: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for (i, step) in [("audit-unlearn-ft-", 0), ("audit-retrain-", 1)]
        .iter()
        .map(|(p, i)| (*i, *p))
    {
        let exp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(name(step, ".json")).unwrap()).unwrap();
        let got = &cli["models"][i]["audit"];
        for key in ["scores", "mis", "rmia_auc_retain_test", "tpr_at_1pct_fpr"] {
            assert_eq!(got[key], exp[key], "{step}: {key}");
        }
    }
}

/// The first file of `dir`, by name.
fn first_file(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap()
}

/// Replaces `dst` with the bytes of `src`; returns what `dst` held.
fn replace_with(dst: &Path, src: &Path) -> Vec<u8> {
    let kept = std::fs::read(dst).unwrap();
    std::fs::copy(src, dst).unwrap();
    kept
}

/// A model made on an image folder is used only with that folder's
/// content: a renamed class folder (every label permuted) is refused
/// naming both class lists; a replaced training image (forget indices
/// would name other samples) is refused, also for `train --resume`; a
/// replaced test image is a warning, since evaluating on an updated test
/// set is legitimate.
#[test]
fn a_folder_models_classes_and_content_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 120, 60);
    let m = path_in(d.path(), "m.safetensors");
    let f = path_in(d.path(), "f.json");
    let ds = data.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "--dataset",
            ds,
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--out",
            &m,
            "-q",
        ];
        a.extend_from_slice(extra);
        amun(&a)
    };
    ok(&train(&[]));
    ok(&common::split_forget(ds, "12", &f));
    let eval = || amun(&["eval", "--checkpoint", &m, "--device", "cpu"]);
    let o = eval();
    ok(&o);
    assert!(
        !common::stderr(&o).contains("warning"),
        "{}",
        common::stderr(&o)
    );
    let unlearn = || {
        let out = path_in(d.path(), "u.safetensors");
        Args::ft_one_epoch(&m, &f, &out).and(&["-q"]).run()
    };

    // Class folder 3 renamed x3: it sorts last, every label from 3 on moves.
    // Renamed in train/ and test/ alike, as a user renaming a class would
    // (a test class that train/ lacks is refused before any step).
    let rename = |from: &str, to: &str| {
        for part in ["train", "test"] {
            let src = data.join(part).join(from);
            if src.exists() {
                std::fs::rename(&src, data.join(part).join(to)).unwrap();
            }
        }
    };
    rename("3", "x3");
    for o in [eval(), unlearn()] {
        fails_with(
            &o,
            &[
                "m.safetensors",
                "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]",
                "[0, 1, 2, 4, 5, 6, 7, 8, 9, x3]",
                "class 3 is '3' in the model, '4' in the data",
            ],
        );
    }
    rename("x3", "3");
    ok(&eval());

    // One training image replaced by another of its class (same count).
    let img = first_file(&data.join("train/1"));
    let other = std::fs::read_dir(data.join("train/1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let kept = replace_with(&img, &other);
    fails_with(
        &eval(),
        &["m.safetensors", "other training data", "forget-set indices"],
    );
    fails_with(&unlearn(), &["other training data"]);
    fails_with(&train(&["--resume"]), &["m.safetensors", "data content"]);
    std::fs::write(&img, kept).unwrap();

    // A test image replaced: evaluated, with a warning.
    let img = first_file(&data.join("test/2"));
    replace_with(&img, &first_file(&data.join("test/7")));
    let o = eval();
    ok(&o);
    assert!(
        common::stderr(&o).contains("warning: the test split"),
        "{}",
        common::stderr(&o)
    );
}

/// The status of each step of a run folder (`--plan --json`).
fn plan_status(run: &str) -> std::collections::BTreeMap<String, String> {
    let o = amun(&["experiment", "--folder", run, "--plan", "--json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// A run folder's steps are tied to the content of their dataset folder:
/// renamed class folders make them stale, and a model recomputed on the
/// renamed folder is stale again once the data is put back (changed bytes
/// under the same names: `data::tests`).
#[test]
fn a_run_folders_steps_follow_their_dataset_folders_content() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 120, 60);
    let cfg = path_in(d.path(), "exp.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"folder\"\nmodel = \"small-cnn\"\nseeds = [0]\ndevice = \"cpu\"\n\
             [data]\ndataset = \"{}\"\n\
             [train]\nepochs = 1\nbatch_size = 32\naugment = false\n\
             [forget]\nfractions = [0.1]\nwith_retain = [true]\n\
             [rmia]\nreference_models = 2\n\
             [methods.ft]\n",
            data.display()
        ),
    )
    .unwrap();
    let run = path_in(d.path(), "run");
    let step = |id: &str| {
        ok(&amun(&[
            "experiment",
            "--config",
            &cfg,
            "--out",
            &run,
            "--step",
            id,
            "-q",
        ]))
    };
    // The retrain too: every Avg. Gap is measured against it (issue 37,
    // item 3).
    let steps = ["forget-s0-f0.1", "original-s0", "retrain-s0-f0.1"];
    for id in steps {
        step(id);
    }
    let st = plan_status(&run);
    for id in steps {
        assert_eq!(st[id], "done", "{id}");
    }
    // Renamed in train/ and test/ alike, as a user renaming a class would
    // (a test class that train/ lacks is refused before any step).
    let rename = |from: &str, to: &str| {
        for part in ["train", "test"] {
            let src = data.join(part).join(from);
            if src.exists() {
                std::fs::rename(&src, data.join(part).join(to)).unwrap();
            }
        }
    };
    rename("3", "x3");
    let st = plan_status(&run);
    for id in steps {
        assert_eq!(st[id], "stale", "{id}");
    }
    // Recomputed on the renamed folder, then the folder is put back.
    for id in steps {
        step(id);
    }
    let st = plan_status(&run);
    for id in steps {
        assert_eq!(st[id], "done", "{id}");
    }
    rename("x3", "3");
    let st = plan_status(&run);
    assert_eq!(st["original-s0"], "stale");
    assert_eq!(st["retrain-s0-f0.1"], "stale");
}

/// A test class folder that `train/` lacks would have its images dropped
/// without a word (issue 37, N5): refused naming `test/<class>` before
/// any training, with nothing written.
#[test]
fn a_test_class_folder_train_lacks_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 20, 10);
    let test = data.join("test");
    let first = std::fs::read_dir(&test).unwrap().next().unwrap().unwrap();
    std::fs::rename(first.path(), test.join("seven")).unwrap();
    let m = path_in(d.path(), "m.safetensors");
    let o = amun(&[
        "train",
        "--dataset",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        &m,
        "-q",
    ]);
    fails_with(&o, &["test/seven", "no counterpart in train/"]);
    assert!(!Path::new(&m).exists());
    // An empty extra folder loses nothing and is accepted.
    let seven = test.join("seven");
    for f in std::fs::read_dir(&seven).unwrap() {
        std::fs::rename(f.unwrap().path(), d.path().join("moved.png")).unwrap();
    }
    let o = amun(&["data", "info", "--dataset", data.to_str().unwrap()]);
    ok(&o);
}

/// A `train/<class>` folder without images gave the model a class it never
/// saw, with no word from `data info` or `train` (hostile16 Q16): refused
/// naming the class and its folder, with nothing written. An empty
/// `test/<class>` is accepted, as an absent one is: the test split only
/// measures.
#[test]
fn a_class_without_training_images_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 20, 10);
    let class = first_file(&data.join("train"));
    let name = class.file_name().unwrap().to_str().unwrap().to_string();
    let kept = d.path().join("kept");
    std::fs::rename(&class, &kept).unwrap();
    std::fs::create_dir(&class).unwrap();
    let o = amun(&["data", "info", "--dataset", data.to_str().unwrap()]);
    let said = format!("class '{name}' has no training images (train/{name} is empty)");
    fails_with(&o, &[&said]);
    let m = path_in(d.path(), "m.safetensors");
    let args = ["--epochs", "1", "--device", "cpu", "--out", &m, "-q"];
    let o = amun(&[&["train", "--dataset", data.to_str().unwrap()][..], &args].concat());
    fails_with(&o, &[&said]);
    assert!(!Path::new(&m).exists());
    // Training images back, the test class folder emptied: accepted.
    std::fs::remove_dir(&class).unwrap();
    std::fs::rename(&kept, &class).unwrap();
    let test_class = first_file(&data.join("test"));
    for f in std::fs::read_dir(&test_class).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    ok(&amun(&[
        "data",
        "info",
        "--dataset",
        data.to_str().unwrap(),
    ]));
}

/// An image of another size among a folder's images: the error names both
/// it and the image it was compared with, since the first image read may
/// be the odd one (hostile8 EM1 blamed the normal image).
#[test]
fn an_image_of_another_size_is_named_with_the_one_it_differs_from() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 20, 10);
    let class = first_file(&data.join("train"));
    let odd = first_file(&class);
    image::GrayImage::new(32, 32).save(&odd).unwrap();
    let o = amun(&["data", "info", "--dataset", data.to_str().unwrap()]);
    let name = odd.file_name().unwrap().to_str().unwrap();
    fails_with(&o, &[name, "is 32x32", "28x28", "one size"]);
}

/// A class folder beside `train/` and `test/` was left out without a word
/// (hostile7 FL1): refused naming it and the two layouts, before any
/// training, with nothing written.
#[test]
fn a_class_folder_beside_train_and_test_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 20, 10);
    let dog = data.join("dog");
    std::fs::create_dir(&dog).unwrap();
    let img = first_file(&data.join("train/1"));
    std::fs::copy(&img, dog.join("000.png")).unwrap();
    let o = amun(&["data", "info", "--dataset", data.to_str().unwrap()]);
    fails_with(&o, &["dog", "class folders at the top", "train/ and test/"]);
    let m = path_in(d.path(), "m.safetensors");
    let args = ["--epochs", "1", "--device", "cpu", "--out", &m, "-q"];
    let o = amun(&[&["train", "--dataset", data.to_str().unwrap()][..], &args].concat());
    fails_with(&o, &["dog"]);
    assert!(!Path::new(&m).exists());
}

/// Every file under `dir` with its bytes, for "nothing was touched".
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(tree(&p));
        } else {
            out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// A class folder renamed under a run folder with reference models (issue
/// 37, W-class-rename-exp: "0 up to date", a reference step's record
/// deleted, then "move references away"; the data put back recomputed
/// it): refused before any step, naming the classes that changed and the
/// remedies, with the run folder untouched; put back, nothing recomputes.
#[test]
fn a_renamed_class_folder_is_named_before_a_run_folders_references_are_touched() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 60, 30);
    let cfg = path_in(d.path(), "exp.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"folder\"\nmodel = \"small-cnn\"\nseeds = [0]\ndevice = \"cpu\"\n\
             [data]\ndataset = \"{}\"\n\
             [train]\nepochs = 1\nbatch_size = 32\naugment = false\n\
             [forget]\nfractions = [0.1]\nwith_retain = [true]\n\
             [rmia]\nreference_models = 2\n\
             [methods.ft]\n",
            data.display()
        ),
    )
    .unwrap();
    let run = path_in(d.path(), "run");
    let exp = |extra: &[&str]| {
        let mut a = vec!["experiment", "--config", &cfg, "--out", &run, "-q"];
        a.extend_from_slice(extra);
        amun(&a)
    };
    ok(&exp(&["--step", "ref-000"]));
    let rename = |from: &str, to: &str| {
        for part in ["train", "test"] {
            let src = data.join(part).join(from);
            if src.exists() {
                std::fs::rename(&src, data.join(part).join(to)).unwrap();
            }
        }
    };
    rename("3", "x3");
    let before = tree(Path::new(&run));
    let needles = [
        "references/manifest.json",
        "its classes are [0, 1, 2, 4, 5, 6, 7, 8, 9, x3]",
        "made with [0, 1, 2, 3,",
        "a class folder renamed",
        "putting the data back",
        "`amun experiment --out`",
    ];
    fails_with(&exp(&[]), &needles);
    fails_with(&exp(&["--step", "ref-001"]), &needles);
    fails_with(&exp(&["--step", "ref-000"]), &needles);
    assert_eq!(
        tree(Path::new(&run)),
        before,
        "a refused run changed its folder"
    );
    rename("x3", "3");
    assert_eq!(plan_status(&run)["ref-000"], "done");
}

#[test]
fn a_class_is_named_by_its_label_or_its_folder_name_and_a_bad_data_dir_is_named() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 60, 10);
    for split in ["train", "test"] {
        std::fs::rename(data.join(split).join("3"), data.join(split).join("cat")).unwrap();
    }
    let split = |class: &str, out: &str| {
        let out = path_in(d.path(), out);
        let o = Args::of(&["split", "--dataset", data.to_str().unwrap()])
            .with("--class", class)
            .with("--out", &out)
            .run();
        (o, out)
    };
    // Sorted folder names: 0 1 2 4 … 9 cat, so `cat` is label 9.
    let (o, by_name) = split("cat", "by-name.json");
    ok(&o);
    let (o, by_label) = split("9", "by-label.json");
    // `9` is label 9 (cat) and the folder name of label 8: refused, not guessed.
    fails_with(&o, &["9", "both label 9 (cat)", "the name of label 8"]);
    let (o, _) = split("2", "by-label.json");
    ok(&o);
    let names = forget_indices(Path::new(&by_name));
    assert!(
        names.iter().all(|i| (54..60).contains(i)) && names.len() == 6,
        "{names:?}"
    );
    let twos = forget_indices(Path::new(&by_label));
    assert!(!twos.is_empty() && twos.iter().all(|i| !names.contains(i)));
    for bad in ["10", "dog", "-1"] {
        let (o, out) = split(bad, "bad.json");
        fails_with(&o, &[bad, "no such class", "0 to 9", "9 cat"]);
        assert!(!Path::new(&out).exists());
    }
    // MNIST's names are its labels: only the range is listed.
    let o = Args::of(&["split"])
        .mnist("300")
        .with("--class", "12")
        .with("--out", &path_in(d.path(), "m.json"))
        .run();
    let e = common::stderr(&o);
    assert!(e.contains("0 to 9") && !e.contains("a name"), "{e}");
    // A --data-dir that is a file is named before any download.
    let file = path_in(d.path(), "by-name.json");
    let o = Args::of(&["data", "info", "--dataset", "mnist"])
        .with("--data-dir", &file)
        .run();
    fails_with(
        &o,
        &["by-name.json", "is a file, not a folder", "--data-dir"],
    );
    assert!(!common::stderr(&o).contains("fetching"));
}
