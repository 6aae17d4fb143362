//! `amun registry`: wrong or late errors (issue 37) — flags checked before
//! any work, nothing recorded by a retrain that did not happen, what
//! changed in the data named, read-only copies that verify, certificates
//! without the machine's paths; and reference logits computed again with
//! the same bits.
use crate::common;
use common::registry::{
    APPLY_FAST, Immutable, copy_dir, count, create, folder_registry, mnist_model, pending, reg,
    request, small_registry,
};
use common::{fails_with, ok, read_json, stderr, stdout};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[test]
fn registry_apply_set_and_flag_clash_is_refused_as_in_unlearn() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    let o = reg(
        "apply",
        &r,
        &[
            "--device",
            "cpu",
            "--method",
            "ft",
            "--no-calibrate",
            "--set",
            "finetune.lr=0.1",
            "--lr",
            "0.01",
        ],
    );
    fails_with(&o, &["--set finetune.lr", "silently win"]);
    assert_eq!(pending(&r), vec![1, 2]);
    assert_eq!(count(&r, "versions"), 1);
}

#[test]
fn registry_apply_checks_its_flags_first_and_refuses_retrain_up_front() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let empty = d.path().join("empty");
    create(&empty, &model, &[]);
    // Nothing pending, and still a bad flag is named.
    let o = reg(
        "apply",
        &empty,
        &[
            "--device",
            "cpu",
            "--method",
            "ft",
            "--no-calibrate",
            "--lr",
            "-1",
        ],
    );
    fails_with(&o, &["lr"]);
    assert!(!stdout(&o).contains("nothing to apply"), "{}", stdout(&o));
    fails_with(
        &reg("apply", &empty, &["--device", "cpu", "--method", "retrain"]),
        &["amun registry retrain"],
    );
    // With requests pending: refused before the data is loaded.
    let r = d.path().join("reg");
    create(&r, &model, &[]);
    let r1 = request(d.path(), "r1.csv", &[1, 2, 3]);
    ok(&reg("add", &r, &[r1.to_str().unwrap()]));
    for args in [
        &["--device", "cpu", "--method", "retrain", "--no-calibrate"][..],
        &[
            "--device",
            "cpu",
            "--method",
            "ft",
            "--no-retain",
            "--no-calibrate",
        ][..],
    ] {
        let o = reg("apply", &r, args);
        assert!(!o.status.success(), "{args:?} was accepted");
        let e = stderr(&o);
        assert!(!e.contains("applying request"), "{args:?}: {e}");
        assert!(
            e.contains("amun registry retrain") || e.contains("without the retain set"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(pending(&r), vec![1]);
    assert_eq!(count(&r, "versions"), 1);
}

/// hostile7 AP1: a bad value of a flag was named by its setting's key
/// (`ft.finetune.momentum: must lie in [0,1), got -1`); on `registry
/// apply`, `unlearn` and `train` alike, each is named by the flag given.
#[test]
fn bad_flag_values_are_named_by_the_flags_given() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let empty = d.path().join("empty");
    create(&empty, &model, &[]);
    let forget = request(d.path(), "f.csv", &[1, 2, 3]);
    let out = d.path().join("u.safetensors");
    let bad = [
        ("--momentum", "-1"),
        ("--weight-decay", "nan"),
        ("--epochs", "0"),
        ("--lr", "-1"),
        ("--batch-size", "0"),
    ];
    for (flag, value) in bad {
        let args = [
            "--device",
            "cpu",
            "--method",
            "ft",
            "--no-calibrate",
            flag,
            value,
        ];
        fails_with(&reg("apply", &empty, &args), &[&format!("error: {flag}: ")]);
    }
    let unlearn = |method: &str, flag: &str, value: &str| {
        common::amun(&[
            "unlearn",
            "--checkpoint",
            model.to_str().unwrap(),
            "--forget",
            forget.to_str().unwrap(),
            "--method",
            method,
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
            flag,
            value,
        ])
    };
    for (flag, value) in bad.into_iter().chain([("--salun-ratio", "2")]) {
        let method = if flag == "--salun-ratio" {
            "salun"
        } else {
            "ft"
        };
        fails_with(
            &unlearn(method, flag, value),
            &[&format!("error: {flag}: ")],
        );
    }
    for (flag, value) in [("--pgd-steps", "0"), ("--overshoot", "9")] {
        fails_with(
            &unlearn("amun", flag, value),
            &[&format!("error: {flag}: ")],
        );
    }
    // hostile7 HT1b: a registry whose held-out set no test can fire on.
    let tiny = d.path().join("tiny");
    let a = [
        "--checkpoint",
        model.to_str().unwrap(),
        "--holdout-test",
        "1",
    ];
    fails_with(
        &reg("create", &tiny, &a),
        &["--holdout-test: 1:", "at least 2"],
    );
    assert!(!tiny.exists());
    // `train`'s recipe flags alike.
    for (flag, value) in [("--momentum", "-1"), ("--weight-decay", "-1")] {
        let o = common::train_mnist(out.to_str().unwrap(), "100", "1", &[flag, value]);
        fails_with(&o, &[&format!("error: {flag}: ")]);
    }
    assert!(!out.exists());
}

/// A `PATH` of one folder (no real Slurm on it, whatever the machine has):
/// with an `sbatch` script of `body` when given.
fn path_with(dir: &Path, sbatch: Option<&str>) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    if let Some(body) = sbatch {
        let p = bin.join("sbatch");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin.display().to_string()
}

#[test]
fn registry_retrain_that_fails_or_is_killed_records_nothing() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    ok(&reg("apply", &r, APPLY_FAST));
    let chain = count(&r, "chain");
    let retrain = |path: &str, extra: &[&str], stop: Option<String>| {
        let mut c = std::process::Command::new(common::bin());
        c.args(["registry", "retrain", "--registry", r.to_str().unwrap()])
            .args(["--force", "--device", "cpu", "-q"])
            .args(extra)
            .env("PATH", path);
        if let Some(s) = stop {
            c.env("AMUN_REGISTRY_STOP_AT", s);
        }
        c.output().unwrap()
    };
    let no_slurm = path_with(&d.path().join("none"), None);
    let o = retrain(&no_slurm, &["--slurm"], None);
    fails_with(&o, &["sbatch"]);
    let refused = path_with(
        &d.path().join("refuses"),
        Some("echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1"),
    );
    let o = retrain(&refused, &["--slurm"], None);
    fails_with(&o, &["invalid partition"]);
    // Killed after its model was staged: as if never started.
    let abs = std::path::absolute(&r).unwrap();
    let o = retrain(&no_slurm, &[], Some(format!("staged@{}", abs.display())));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "{}", stderr(&o));
    assert_eq!(count(&r, "retrains"), 0);
    assert_eq!(count(&r, "retrain_jobs"), 0);
    assert_eq!(count(&r, "chain"), chain);
    let scripts: Vec<_> = std::fs::read_dir(r.join("slurm"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(scripts.is_empty(), "{scripts:?}");
    ok(&reg("verify", &r, &[]));
    // The retrain that succeeds is retrain 1, recorded with its version.
    let o = retrain(&no_slurm, &[], None);
    ok(&o);
    assert!(
        stdout(&o).starts_with("retrain 1: version 3"),
        "{}",
        stdout(&o)
    );
    assert_eq!(count(&r, "retrains"), 1);
    ok(&reg("verify", &r, &[]));
}

#[test]
fn registry_renamed_class_folder_is_named_not_reported_as_changed_bytes() {
    let d = tempfile::tempdir().unwrap();
    let (data, r) = folder_registry(d.path());
    let req = d.path().join("paths.txt");
    let first = std::fs::read_dir(data.join("train/1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .min()
        .unwrap();
    std::fs::write(&req, format!("train/1/{first}\n")).unwrap();
    ok(&reg("add", &r, &[req.to_str().unwrap()]));
    // Renamed so that the order of the classes stays: every image keeps
    // its index and bytes, only the class names differ. Renamed in test/
    // too, as a user renaming a class would (a test class that train/
    // lacks is refused by the data loader before any registry check).
    std::fs::rename(data.join("train/1"), data.join("train/1b")).unwrap();
    if data.join("test/1").exists() {
        std::fs::rename(data.join("test/1"), data.join("test/1b")).unwrap();
    }
    let o = reg("apply", &r, APPLY_FAST);
    fails_with(
        &o,
        &["class folder(s) renamed", "'train/1' is now 'train/1b'"],
    );
    assert!(!stderr(&o).contains("bytes changed"), "{}", stderr(&o));
    assert_eq!(count(&r, "versions"), 1);
}

/// Every file under `dir` (relative name → bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn registry_read_commands_work_on_a_read_only_copy_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    ok(&reg("apply", &r, APPLY_FAST));
    let copy = d.path().join("audit-copy");
    copy_dir(&r, &copy);
    let before = snapshot(&copy);
    {
        let guard = Immutable::set(&copy);
        if guard.is_set() {
            // Immutable for real: not even root may create a file in it.
            assert!(std::fs::write(copy.join("probe"), b"x").is_err());
        }
        for (sub, args) in [
            ("verify", &[][..]),
            ("list", &[][..]),
            ("show", &["version", "2"][..]),
            ("show", &["request", "1"][..]),
            ("certificate", &["--version", "2"][..]),
        ] {
            let o = reg(sub, &copy, args);
            assert!(
                o.status.success(),
                "{sub} {args:?} on a read-only copy: {}",
                stderr(&o)
            );
        }
        let o = reg("verify", &copy, &[]);
        assert!(stdout(&o).contains("intact"), "{}", stdout(&o));
    }
    assert_eq!(
        snapshot(&copy).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "a read command created or removed files"
    );
    assert!(snapshot(&copy) == before, "a read command changed a file");
}

#[test]
fn registry_certificates_name_no_machine_paths_and_the_folder_moves() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    ok(&reg("apply", &r, APPLY_FAST));
    let machine = d.path().to_str().unwrap().to_string();
    for f in ["certificates/v0002.json", "certificates/v0002.md"] {
        let text = std::fs::read_to_string(r.join(f)).unwrap();
        assert!(!text.contains(&machine), "{f} names {machine}:\n{text}");
    }
    let cert = read_json(&r.join("certificates/v0002.json"));
    let receipt = read_json(&r.join("receipts/r0001.json"));
    assert_eq!(cert["registry"], receipt["registry"]);
    assert_eq!(cert["deleted"][0]["source"], "r1.csv");
    let moved = d.path().join("elsewhere/reg");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&r, &moved).unwrap();
    ok(&reg("verify", &moved, &[]));
    // Messages name the registry as the user gave it, no folder of the
    // machine (issue 37): from beside it, with a version's weights
    // changed and a receipt gone, verify, apply and certificate refuse.
    let weights = moved.join("versions/v0002.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes.push(0);
    std::fs::write(&weights, bytes).unwrap();
    std::fs::remove_file(moved.join("receipts/r0001.json")).unwrap();
    for args in [
        &["verify"][..],
        &["apply", "--device", "cpu", "-q"][..],
        &["certificate", "--version", "2"][..],
    ] {
        let o = std::process::Command::new(common::bin())
            .args(["registry", args[0], "--registry", "reg"])
            .args(&args[1..])
            .current_dir(moved.parent().unwrap())
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}: {}", stdout(&o));
        let said = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            said.contains("versions/v0002.safetensors"),
            "{args:?}: {said}"
        );
        assert!(!said.contains(&machine), "{args:?} names {machine}: {said}");
    }
    let o = std::process::Command::new(common::bin())
        .args(["registry", "verify", "--registry", "reg"])
        .current_dir(moved.parent().unwrap())
        .output()
        .unwrap();
    assert!(stderr(&o).contains("reg/receipts/"), "{}", stderr(&o));
}

#[test]
fn rmia_reference_logits_deleted_and_computed_again_have_the_same_bits() {
    let d = tempfile::tempdir().unwrap();
    let refs = d.path().join("refs");
    let train_refs = || {
        let a = common::Args::train_refs_mnist(None)
            .and(&["--epochs", "1", "--device", "cpu"])
            .with("--out", refs.to_str().unwrap())
            .and(&["-q"]);
        ok(&a.run())
    };
    train_refs();
    let logits = refs.join("ref-000.logits.safetensors");
    let first = std::fs::read(&logits).unwrap();
    std::fs::remove_file(&logits).unwrap();
    train_refs();
    assert!(
        std::fs::read(&logits).unwrap() == first,
        "the logits computed again from the kept model differ from the first ones"
    );
}

#[test]
fn registry_receipt_and_anchor_copy_inside_a_registry_are_refused_before_any_change() {
    let d = tempfile::tempdir().unwrap();
    let (_, r) = folder_registry(d.path());
    let req = request(d.path(), "req.csv", &[1, 2]);
    let req = req.to_str().unwrap();
    // A symlink to the registry folder is the registry folder.
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&r, &link).unwrap();
    let anchors = count(&r, "anchors");
    for inside in [
        r.join("versions/v0002.json"),
        r.join("receipts/r0001.json"),
        link.join("receipts/r0002.json"),
    ] {
        let p = inside.to_str().unwrap();
        let o = reg("add", &r, &[req, "--receipt", p]);
        fails_with(&o, &["--receipt", "outside the registry folder"]);
        assert!(!inside.exists(), "{p} was written");
        assert_eq!(
            count(&r, "requests"),
            0,
            "--receipt {p}: a request was added"
        );
        let o = reg("anchor", &r, &["--copy", p]);
        fails_with(&o, &["--copy: ", "outside the registry folder"]);
        // hostile8 ACE1: the flag, not the flag and the setting's key.
        assert!(!stderr(&o).contains("anchor-copy"), "{}", stderr(&o));
        assert!(!inside.exists(), "{p} was written");
        assert_eq!(
            count(&r, "anchors"),
            anchors,
            "--copy {p}: the anchor changed"
        );
    }
    // A receipt that cannot be written (issue 37: the request was added,
    // then the add failed, and a retry added it twice) is refused first;
    // an add refused after the receipt's file was made leaves no file.
    let receipt = d.path().join("receipt.json");
    for cannot in [
        d.path().join("nowhere/r.json"),
        Path::new(req).join("r.json"),
    ] {
        let o = reg("add", &r, &[req, "--receipt", cannot.to_str().unwrap()]);
        fails_with(&o, &["--receipt", "nothing was added"]);
        assert_eq!(count(&r, "requests"), 0, "{}", cannot.display());
    }
    let missing = d.path().join("missing.csv");
    let o = reg(
        "add",
        &r,
        &[
            missing.to_str().unwrap(),
            "--receipt",
            receipt.to_str().unwrap(),
        ],
    );
    fails_with(&o, &["missing.csv"]);
    assert!(!receipt.exists(), "the refused add left its receipt file");
    // Beside the registry both are fine, and the registry still takes adds.
    ok(&reg(
        "add",
        &r,
        &[req, "--receipt", receipt.to_str().unwrap()],
    ));
    assert_eq!(count(&r, "requests"), 1);
    let copy = d.path().join("anchor.copy");
    ok(&reg("anchor", &r, &["--copy", copy.to_str().unwrap()]));
    assert!(receipt.exists() && copy.exists());
}

/// Issue 37 C58/C62/C68/D5/C27/C28: a receipt `add --receipt` handed out
/// and the anchor's copy were replaced by `split --out` (exit 0); an anchor
/// copy through a dangling link into another registry's versions/ was
/// accepted (later adds appended to that registry's released file); a
/// receipt, an anchor copy or a registry could be made inside reference
/// models, a run folder or another registry. Each is refused first, naming
/// the file or folder and what it is, and nothing changes.
#[test]
fn receipts_and_anchor_copies_are_kept_and_never_linked_or_held() {
    common::ensure("mnist");
    let d = tempfile::tempdir().unwrap();
    let (_, r) = folder_registry(d.path());
    let model = d.path().join("m.safetensors");
    let p = |n: &str| d.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let req = s(&request(d.path(), "req.csv", &[1, 2]));
    let (rcpt, copy) = (p("myrcpt.json"), p("acopy.json"));
    ok(&reg("add", &r, &[&req, "--receipt", &s(&rcpt)]));
    ok(&reg("anchor", &r, &["--copy", &s(&copy)]));
    for (f, what) in [(&rcpt, "receipt"), (&copy, "anchor")] {
        let before = std::fs::read(f).unwrap();
        let o = common::Args::split_mnist("300", "5")
            .with("--out", &s(f))
            .run();
        fails_with(&o, &["--out", "registry's", what]);
        assert!(std::fs::read(f).unwrap() == before, "{what} was replaced");
    }
    // Links: whatever they point to (here another registry's next
    // version, not there yet) would be written.
    let other = p("other");
    create(&other, &model, &["--holdout-test", "10"]);
    let (anchors, requests) = (count(&r, "anchors"), count(&r, "requests"));
    let victim = other.join("versions/v0002.json");
    std::os::unix::fs::symlink(&victim, p("dang.log")).unwrap();
    let o = reg("anchor", &r, &["--copy", &s(&p("dang.log"))]);
    fails_with(&o, &["--copy", "dang.log", "symbolic link"]);
    std::os::unix::fs::symlink(other.join("receipts/r0009.json"), p("dang.json")).unwrap();
    let o = reg("add", &r, &[&req, "--receipt", &s(&p("dang.json"))]);
    fails_with(&o, &["--receipt", "dang.json", "symbolic link"]);
    // Folders only their own command writes: reference models, a run
    // folder, a registry (its versions/ too), also through a link.
    let refs = p("refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(
        refs.join("manifest.json"),
        "{\"format\": \"amun-rmia-refs/1\"}",
    )
    .unwrap();
    let run = p("run");
    std::fs::write(p("exp.toml"), crate::hostile::EXPERIMENT).unwrap();
    ok(&common::amun(&[
        "experiment",
        "--config",
        &s(&p("exp.toml")),
        "--out",
        &s(&run),
        "--step",
        "forget-s0-f0.1",
        "-q",
    ]));
    std::os::unix::fs::symlink(&refs, p("here")).unwrap();
    for (inside, what) in [
        (refs.join("x.json"), "reference models' folder"),
        (run.join("x.json"), "run folder"),
    ] {
        let o = reg("add", &r, &[&req, "--receipt", &s(&inside)]);
        fails_with(&o, &["--receipt", what]);
        let o = reg("anchor", &r, &["--copy", &s(&inside)]);
        fails_with(&o, &["--copy", what]);
        assert!(!inside.exists(), "{} was written", inside.display());
    }
    assert!(!victim.exists(), "the other registry's version was written");
    assert_eq!(
        (count(&r, "anchors"), count(&r, "requests")),
        (anchors, requests)
    );
    for (inside, what) in [
        (run.join("reg"), "run folder"),
        (p("here").join("reg"), "reference models' folder"),
        (r.join("versions/sub"), "registry folder"),
    ] {
        let o = reg("create", &inside, &["--checkpoint", &s(&model)]);
        fails_with(&o, &[what]);
        assert!(!inside.exists(), "{} was made", inside.display());
    }
}

/// Issue 37 W4/W-receipt-missing-folder/K13: `registry add` of a missing
/// request file, or with `--receipt` in a folder that does not exist,
/// gave the OS's bare "No such file or directory"; `apply --no-calibrate
/// --calibrate-max-cost 0.3` named only --calibrate-rule and
/// --calibrate-lrs. Each refused before the registry is opened.
#[test]
fn registry_add_and_apply_name_what_they_were_given() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("reg");
    let nope = d.path().join("nope.csv");
    let o = reg("add", &r, &[nope.to_str().unwrap()]);
    fails_with(&o, &["nope.csv", "no such file", "deletion request"]);
    assert!(!stderr(&o).contains("os error"), "{}", stderr(&o));
    let req = request(d.path(), "r1.csv", &[1, 2, 3]);
    let receipt = d.path().join("nodir/sub/rcpt.json");
    let o = reg(
        "add",
        &r,
        &[
            req.to_str().unwrap(),
            "--receipt",
            receipt.to_str().unwrap(),
        ],
    );
    fails_with(&o, &["--receipt", "nodir/sub", "make the folder first"]);
    assert!(!stderr(&o).contains("os error"), "{}", stderr(&o));
    let o = reg(
        "apply",
        &r,
        &[
            "--method",
            "ft",
            "--no-calibrate",
            "--epochs",
            "1",
            "--calibrate-max-cost",
            "0.3",
        ],
    );
    fails_with(&o, &["--calibrate-max-cost", "--no-calibrate"]);
    assert!(!stderr(&o).contains("--calibrate-rule"), "{}", stderr(&o));
    assert_eq!(common::files_in(d.path()), ["r1.csv"]);
}

/// Hostile7 AP10: `apply --method amun --calibrate-max-cost 0.001` with two
/// pending requests was refused up front, but named `calibrate.max_cost`
/// with a per-request value never typed ("0.0003") and hinted a per-request
/// fraction: following the hint was refused again. The hint is in the
/// flag's units (the batch's cap) and following it passes the check.
#[test]
fn a_batch_cost_cap_below_the_search_hints_a_cap_for_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    let cheap = [
        "--device",
        "cpu",
        "-q",
        "--method",
        "amun",
        "--set",
        "attack.steps=10",
        "--calibrate-lrs",
        "0.01",
        "--epochs",
        "1",
        "--calibrate-max-cost",
    ];
    let with_cap = |cap: &str| {
        let mut a = cheap.to_vec();
        a.push(cap);
        reg("apply", &r, &a)
    };
    let o = with_cap("0.001");
    fails_with(
        &o,
        &[
            "--calibrate-max-cost: 0.001",
            "image-steps",
            "give more than",
        ],
    );
    let err = stderr(&o);
    assert!(!err.contains("calibrate.max_cost"), "{err}");
    let hint = err
        .split("give more than ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("a hint");
    let o = with_cap(hint);
    assert!(!stderr(&o).contains("adversarial search"), "{}", stderr(&o));
}

/// Hostile7 O5: `registry add --reference $'multi\nline | pipe'` was taken,
/// and `registry list`'s table was broken by the line break and the `|`.
/// A reference is one line (a control character is refused, naming the
/// flag), and a `|` in it is escaped in the table.
#[test]
fn a_reference_is_one_line_and_its_pipe_keeps_the_table_whole() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    let r3 = request(d.path(), "r3.csv", &[20]);
    let o = reg(
        "add",
        &r,
        &[r3.to_str().unwrap(), "--reference", "multi\nline"],
    );
    fails_with(
        &o,
        &["--reference", "control character", "nothing was added"],
    );
    assert_eq!(count(&r, "requests"), 2);
    ok(&reg(
        "add",
        &r,
        &[r3.to_str().unwrap(), "--reference", "ticket 7 | mail"],
    ));
    let o = reg("list", &r, &[]);
    ok(&o);
    let out = stdout(&o);
    assert!(out.contains("ticket 7 \\| mail"), "{out}");
    let columns = |l: &str| l.replace("\\|", "").matches('|').count();
    let table: Vec<&str> = out.lines().filter(|l| l.contains("| request")).collect();
    assert_eq!(table.len(), 1, "{out}");
    let row = out.lines().find(|l| l.contains("ticket 7")).unwrap();
    assert_eq!(columns(row), columns(table[0]), "{out}");
}

/// Issue 38: `registry create` of an unlearned checkpoint named it only as
/// one of five kinds of model it refuses; the requests its lineage forgot
/// (which a registry made from it could not keep out of its retain sets)
/// and the way to a registry that holds them went unsaid.
#[test]
fn registry_create_of_an_unlearned_model_names_the_requests_its_lineage_forgot() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let forget = request(d.path(), "r1.csv", &[1, 2, 3]);
    let unlearned = d.path().join("u.safetensors");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    ok(&common::unlearn(
        &path(&model),
        &path(&forget),
        "ft",
        &path(&unlearned),
        &["--epochs", "1", "--device", "cpu", "-q"],
    ));
    let r = d.path().join("reg");
    fails_with(
        &reg("create", &r, &["--checkpoint", &path(&unlearned)]),
        &[
            "u.safetensors",
            "an unlearned model",
            "forgot 1 request(s) (3 samples)",
            "from the trained original",
            "registry add",
        ],
    );
    assert!(!r.exists());
}
