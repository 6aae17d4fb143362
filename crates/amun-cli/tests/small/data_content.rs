//! Forget sets and models tied to their data's content, whatever the
//! folder's path: a copy of a dataset folder is the same data, a changed
//! copy or a renamed class folder is other data (issue 37, hostile11).
use crate::common::{self, Args, amun, fails_with, ok, path_in, read_json};
use std::path::Path;

/// `cp -r` of a dataset folder.
fn copy_folder(from: &Path, to: &Path) {
    common::registry::copy_dir(from, to);
}

/// Renames class folder `from` to `to` in train/ and test/, as a user
/// renaming a class would.
fn rename_class(data: &Path, from: &str, to: &str) {
    for part in ["train", "test"] {
        std::fs::rename(data.join(part).join(from), data.join(part).join(to)).unwrap();
    }
}

/// A forget set and a model record their training data's content and are
/// checked by it whatever the data's path:
/// - hostile11 MV1/D3/D7: an identical copy of the folder is accepted with a
///   note (it was refused: "forget set is for …/digits, but the data is
///   …/copy"), and the unlearned sidecar records the data it read (D20);
/// - hostile11 D20/D5: a copy with images removed, given as `--dataset` to
///   `unlearn` with an index list or to `eval`, is refused naming both data
///   (it ran, recording the original path and hash); `train --exclude` of
///   a set made on the original refuses it naming the set;
/// - hostile11 D13: after a class folder is renamed in place, `train
///   --exclude` of a class set refuses, naming the class's old and new
///   name (it retrained without another class);
/// - hostile11 D13b: the same in an experiment: `--plan` refuses naming the
///   config's `files` line and the set, `--step` writes nothing;
/// - hostile14 M1: a recorded hash that differs in its last digit is shown
///   whole beside the data's;
/// - a set of an older amun (no content hash) keeps the path check, and
///   `split --from` on its data writes it with the hash, which a copy takes.
#[test]
fn forget_sets_and_models_follow_their_datas_content_whatever_its_path() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("digits");
    common::png_folder(&data, 120, 60);
    let ds = data.to_str().unwrap();
    let m = path_in(d.path(), "m.safetensors");
    ok(&Args::of(&["train", "--dataset", ds, "--out", &m, "-q"])
        .quick("1")
        .run());
    let (ff, fc) = (path_in(d.path(), "ff.json"), path_in(d.path(), "fc.json"));
    ok(&common::split_forget(ds, "12", &ff));
    ok(&common::split_class(ds, "3", &fc));
    let set = read_json(Path::new(&fc));
    assert_eq!(set["class_name"], "3", "{set}");
    let hash = set["train_sha256"].as_str().unwrap().to_string();

    // hostile14 M1: a set whose recorded hash differs from the data's only
    // in its last digit shows both hashes far enough to differ (it showed
    // two equal 12-digit prefixes).
    let mut edited = read_json(Path::new(&ff));
    let now = edited["train_sha256"].as_str().unwrap().to_string();
    let last = if now.ends_with('0') { "1" } else { "0" };
    let recorded = format!("{}{last}", &now[..now.len() - 1]);
    edited["train_sha256"] = recorded.clone().into();
    let fx = path_in(d.path(), "fx.json");
    std::fs::write(&fx, edited.to_string()).unwrap();
    fails_with(
        &amun(&["eval", "--checkpoint", &m, "--forget", &fx]),
        &[
            &format!("content sha256 {now}…"),
            &format!("the set records {recorded}…"),
        ],
    );

    // An identical copy: the same data under another path.
    let copy = d.path().join("copy");
    copy_folder(&data, &copy);
    let cp = copy.to_str().unwrap();
    let u = path_in(d.path(), "u.safetensors");
    let o = Args::ft_one_epoch(&m, &ff, &u)
        .with("--dataset", cp)
        .and(&["-q"])
        .run();
    ok(&o);
    let err = common::stderr(&o);
    assert!(err.contains("a copy") && !err.contains("warning"), "{err}");
    let sc = read_json(&Path::new(&u).with_extension("json"));
    assert_eq!(sc["data"]["dataset"], cp, "{sc}");
    assert_eq!(sc["data_sha256"]["train"], hash.as_str(), "{sc}");

    // A copy with ten training images removed: every later index shifts.
    let changed = d.path().join("changed");
    copy_folder(&data, &changed);
    let sevens = changed.join("train/7");
    let mut files: Vec<_> = (std::fs::read_dir(&sevens).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    std::fs::remove_file(&files[0]).unwrap();
    let ch = changed.to_str().unwrap();
    let list = path_in(d.path(), "idx.txt");
    std::fs::write(&list, "3\n100\n").unwrap();
    let u2 = path_in(d.path(), "u2.safetensors");
    let o = Args::ft_one_epoch(&m, &list, &u2)
        .with("--dataset", ch)
        .and(&["-q"])
        .run();
    fails_with(&o, &["m.safetensors", "digits", "changed", "not a copy"]);
    assert!(!Path::new(&u2).exists());
    let o = amun(&[
        "eval",
        "--checkpoint",
        &m,
        "--dataset",
        ch,
        "--device",
        "cpu",
    ]);
    fails_with(&o, &["m.safetensors", "other training data"]);
    let rt = path_in(d.path(), "rt.safetensors");
    let retrain = |dataset: &str, exclude: &str| {
        Args::of(&["train", "--dataset", dataset, "--exclude", exclude])
            .with("--out", &rt)
            .and(&["-q"])
            .quick("1")
            .run()
    };
    fails_with(
        &retrain(ch, &ff),
        &["ff.json", "other training data", "amun split"],
    );

    // A class folder renamed in place: label 3 is class '4' now.
    rename_class(&data, "3", "x3");
    fails_with(
        &retrain(ds, &fc),
        &["fc.json", "class 3 was '3'", "is '4' in this data"],
    );
    assert!(!Path::new(&rt).exists());
    // Renamed without moving: the same labels and images, another name.
    rename_class(&data, "x3", "3b");
    fails_with(
        &retrain(ds, &fc),
        &["fc.json", "a class forget set", "'3b'"],
    );
    rename_class(&data, "3b", "x3");
    let cfg = path_in(d.path(), "ef.toml");
    std::fs::write(
        &cfg,
        common::folder_config(&data, "", &format!("files = [\"{ff}\"]\n")),
    )
    .unwrap();
    let run = path_in(d.path(), "run");
    let plan = amun(&["experiment", "--config", &cfg, "--out", &run, "--plan"]);
    fails_with(&plan, &["ef.toml", "line 12", "forget.files", "ff.json"]);
    let step = ["--step", "forget-s0-f0.1", "-q"];
    let o = Args::of(&["experiment", "--config", &cfg, "--out", &run])
        .and(&step)
        .run();
    fails_with(&o, &["ff.json", "other training data"]);
    assert!(!Path::new(&run).join("forget-s0-f0.1.json").exists());
    rename_class(&data, "x3", "3");

    // A set of an older amun: no content hash, so only its path is compared.
    let mut old = read_json(Path::new(&ff));
    old.as_object_mut().unwrap().remove("train_sha256");
    let old_f = path_in(d.path(), "old.json");
    std::fs::write(&old_f, old.to_string()).unwrap();
    let eval_on = |dataset: &str, forget: &str| {
        let a = ["--dataset", dataset, "--forget", forget, "--device", "cpu"];
        Args::of(&["eval", "--checkpoint", &m]).and(&a).run()
    };
    fails_with(
        &eval_on(cp, &old_f),
        &["old.json", "no content hash", "split --from"],
    );
    let new_f = path_in(d.path(), "new.json");
    ok(&amun(&[
        "split",
        "--dataset",
        ds,
        "--from",
        &old_f,
        "--out",
        &new_f,
    ]));
    ok(&eval_on(cp, &new_f));
}
