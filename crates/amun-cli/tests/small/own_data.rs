//! A user's own data: forget sets from their files, a dataset folder given
//! by a relative path, class names for IDX files, slices and per-sample
//! output (issue 14's points, one test each, on real MNIST-5k images).
use crate::common;
use common::{amun, bin, fails_with, forget_indices, ok, path_in, stdout};
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
