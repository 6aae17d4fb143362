//! No command's output replaces one of its inputs or another amun artifact
//! (issue 37, item 1), and a precomputed adversarial set is recorded as
//! what it is, never with attack flags it was not made with (item 6). Every
//! refusal comes before any work, exits 1, and leaves the input's bytes as
//! they were. The models are [`crate::hostile`]'s tiny MNIST ones, copied.
use crate::common::{self, Args, amun, fails_with, ok, read_json};
use crate::hostile::m;
use std::path::Path;
use std::sync::OnceLock;

/// A fresh folder with copies of the original model (`orig.safetensors` +
/// `orig.json`) and its forget set (`f.json`).
fn folder() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in ["orig.safetensors", "orig.json", "f.json"] {
        std::fs::copy(m(f), d.path().join(f)).unwrap();
    }
    d
}

/// An adversarial set of `f.json` on the original (5 PGD steps), made once.
fn adv_set() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("outputs-adv");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("adv.safetensors").to_string_lossy().into_owned();
        ok(&amun(&[
            "adv",
            "--checkpoint",
            &m("orig.safetensors"),
            "--forget",
            &m("f.json"),
            "--pgd-steps",
            "5",
            "--device",
            "cpu",
            "-q",
            "--out",
            &out,
        ]));
        dir
    })
}

/// Copies the adversarial set into `d` as `name.safetensors` + `name.json`.
fn copy_adv(d: &Path, name: &str) -> String {
    for ext in ["safetensors", "json"] {
        std::fs::copy(
            adv_set().join(format!("adv.{ext}")),
            d.join(format!("{name}.{ext}")),
        )
        .unwrap();
    }
    p(d, &format!("{name}.safetensors"))
}

fn p(d: &Path, name: &str) -> String {
    d.join(name).to_string_lossy().into_owned()
}

/// Runs `args`, which must be refused with an error line holding every
/// needle, with each of `kept` byte-identical afterwards.
fn refused_and_intact(args: &[&str], kept: &[&str], needles: &[&str]) {
    let before: Vec<Vec<u8>> = kept.iter().map(|f| std::fs::read(f).unwrap()).collect();
    fails_with(&amun(args), needles);
    for (f, b) in kept.iter().zip(before) {
        assert!(std::fs::read(f).unwrap() == b, "{f} was changed");
    }
}

#[test]
fn unlearn_out_whose_sidecar_is_the_forget_file_is_refused() {
    let d = folder();
    let clash = p(d.path(), "clash.json");
    std::fs::copy(m("f.json"), &clash).unwrap();
    let (ck, out) = (
        p(d.path(), "orig.safetensors"),
        p(d.path(), "clash.safetensors"),
    );
    refused_and_intact(
        &Args::ft_one_epoch(&ck, &clash, &out).words(),
        &[&clash],
        &["clash.json (its sidecar)", "--forget", "deletion request"],
    );
    assert!(!Path::new(&out).exists());
    // Through links (issue 37, item 1): a linked folder, and a sidecar
    // name that is a link to the request.
    std::os::unix::fs::symlink(d.path(), d.path().join("lnk")).unwrap();
    std::os::unix::fs::symlink(&clash, d.path().join("alias.json")).unwrap();
    for (out, side) in [
        ("lnk/clash.safetensors", "lnk/clash.json (its sidecar)"),
        ("alias.safetensors", "alias.json (its sidecar)"),
    ] {
        refused_and_intact(
            &Args::ft_one_epoch(&ck, &clash, &p(d.path(), out)).words(),
            &[&clash],
            &[side, "--forget", "deletion request"],
        );
        assert!(!d.path().join(out).exists());
    }
}

#[test]
fn train_out_whose_sidecar_is_the_exclude_file_is_refused() {
    let d = folder();
    let ex = p(d.path(), "ex.json");
    std::fs::copy(m("f.json"), &ex).unwrap();
    refused_and_intact(
        &[
            "train",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "-q",
            "--exclude",
            &ex,
            "--out",
            &p(d.path(), "ex.safetensors"),
        ],
        &[&ex],
        &["ex.json (its sidecar)", "--exclude"],
    );
}

#[test]
fn adv_out_whose_metadata_is_the_forget_file_is_refused() {
    let d = folder();
    let f = p(d.path(), "adv.json");
    std::fs::copy(m("f.json"), &f).unwrap();
    refused_and_intact(
        &[
            "adv",
            "--checkpoint",
            &p(d.path(), "orig.safetensors"),
            "--forget",
            &f,
            "--pgd-steps",
            "2",
            "--device",
            "cpu",
            "-q",
            "--out",
            &p(d.path(), "adv.safetensors"),
        ],
        &[&f],
        &["adv.json (its metadata)", "--forget"],
    );
}

#[test]
fn unlearn_out_onto_its_adversarial_set_is_refused() {
    let d = folder();
    let a = copy_adv(d.path(), "a");
    let meta = p(d.path(), "a.json");
    refused_and_intact(
        &[
            "unlearn",
            "--checkpoint",
            &p(d.path(), "orig.safetensors"),
            "--forget",
            &p(d.path(), "f.json"),
            "--adv",
            &a,
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            &a,
        ],
        &[&a, &meta],
        &["--adv", "the adversarial set"],
    );
}

#[test]
fn eval_per_sample_onto_the_checkpoint_is_refused() {
    let d = folder();
    let ck = p(d.path(), "orig.safetensors");
    // Directly, and through a link to the checkpoint (issue 37, item 1).
    let link = p(d.path(), "table.csv");
    std::os::unix::fs::symlink(&ck, &link).unwrap();
    for (table, names) in [
        (&ck, &["--per-sample", "which is --checkpoint"][..]),
        (
            &link,
            &["--per-sample", "table.csv", "which is --checkpoint"],
        ),
    ] {
        refused_and_intact(
            &[
                "eval",
                "--checkpoint",
                &ck,
                "--device",
                "cpu",
                "--per-sample",
                table,
            ],
            &[&ck, &p(d.path(), "orig.json")],
            names,
        );
    }
}

#[test]
fn split_out_onto_a_checkpoints_sidecar_is_refused() {
    // The checkpoint is no input of `split`: its sidecar is another
    // artifact, found by its content, through a symlinked folder.
    let d = folder();
    std::os::unix::fs::symlink(d.path(), d.path().join("o2")).unwrap();
    let side = p(d.path(), "o2/orig.json");
    refused_and_intact(
        &[
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--forget",
            "10",
            "--out",
            &side,
        ],
        &[&side],
        &["a checkpoint's sidecar"],
    );
}

#[test]
fn mask_out_onto_an_existing_checkpoint_is_refused() {
    let d = folder();
    let other = p(d.path(), "other.safetensors");
    std::fs::copy(m("rt.safetensors"), &other).unwrap();
    std::fs::copy(m("rt.json"), p(d.path(), "other.json")).unwrap();
    // Directly and through a linked folder (issue 37, item 1).
    std::os::unix::fs::symlink(d.path(), d.path().join("here")).unwrap();
    for (out, named) in [
        (other.clone(), "other.safetensors"),
        (
            p(d.path(), "here/other.safetensors"),
            "here/other.safetensors",
        ),
    ] {
        refused_and_intact(
            &[
                "mask",
                "--checkpoint",
                &p(d.path(), "orig.safetensors"),
                "--forget",
                &p(d.path(), "f.json"),
                "--device",
                "cpu",
                "--out",
                &out,
            ],
            &[&other, &p(d.path(), "other.json")],
            &[named, "an amun checkpoint this command does not write"],
        );
    }
}

#[test]
fn import_out_onto_its_from_file_is_refused() {
    let d = folder();
    let w = p(d.path(), "w.safetensors");
    ok(&amun(&[
        "export",
        "--checkpoint",
        &p(d.path(), "orig.safetensors"),
        "--out",
        &w,
    ]));
    // Directly, and through a link to the --from file (issue 37, item 1).
    let link = p(d.path(), "wl.safetensors");
    std::os::unix::fs::symlink(&w, &link).unwrap();
    for (out, names) in [
        (&w, &["which is --from"][..]),
        (&link, &["--out", "wl.safetensors", "which is --from"]),
    ] {
        refused_and_intact(
            &[
                "import",
                "--from",
                &w,
                "--arch",
                "small-cnn",
                "--dataset",
                "mnist",
                "--train-limit",
                "300",
                "--out",
                out,
            ],
            &[&w],
            names,
        );
        assert!(!Path::new(&out.replace(".safetensors", ".json")).exists());
    }
}

#[test]
fn split_out_onto_its_from_file_is_refused() {
    let d = folder();
    let list = p(d.path(), "list.json");
    std::fs::write(&list, "[3, 1, 2]\n").unwrap();
    refused_and_intact(
        &[
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--from",
            &list,
            "--out",
            &list,
        ],
        &[&list],
        &["which is --from"],
    );
}

/// A command run again onto its own output replaces it: a per-sample
/// table in each of its formats (told by its header, tensors or layout),
/// a forget set by the same set.
#[test]
fn a_command_still_replaces_its_own_earlier_output() {
    let d = folder();
    let ck = p(d.path(), "orig.safetensors");
    for ext in ["csv", "npy", "safetensors"] {
        let out = p(d.path(), &format!("ps.{ext}"));
        for _ in 0..2 {
            ok(&amun(&[
                "eval",
                "--checkpoint",
                &ck,
                "--device",
                "cpu",
                "--per-sample",
                &out,
            ]));
        }
    }
    let out = p(d.path(), "s.json");
    for _ in 0..2 {
        ok(&amun(&[
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--forget",
            "10",
            "--out",
            &out,
        ]));
    }
}

/// A user's `.npy` (a 2×9 float32 matrix, not a per-sample table).
fn users_npy(path: &str) {
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 9), }".to_string();
    // Magic, version and length (10 bytes), then the header, to a multiple of 64.
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    for i in 0..18 {
        b.extend((i as f32 * 0.5).to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// Issue 37 B4-B7: `split --out`, `eval --per-sample` and `adv --out`
/// replaced a user's file that had the output's name (a JSON deletion
/// list, a CSV copy of a request, a `.npy`, weights without a sidecar),
/// exit 0. An output replaces only amun's own earlier output of its kind.
#[test]
fn an_output_never_replaces_a_file_amun_did_not_write() {
    let d = folder();
    let f = |n: &str| p(d.path(), n);
    std::fs::write(f("dellist.json"), "[3, 1, 2]\n").unwrap();
    std::fs::write(f("req.csv"), "index\n3\n5\n").unwrap();
    users_npy(&f("user.npy"));
    std::fs::copy(m("orig.safetensors"), f("userw.safetensors")).unwrap();
    let (ck, forget) = (f("orig.safetensors"), f("f.json"));
    let eval = |out: &str| -> Vec<String> {
        [
            "eval",
            "--checkpoint",
            &ck,
            "--device",
            "cpu",
            "--per-sample",
            out,
        ]
        .map(String::from)
        .to_vec()
    };
    let cases: [(Vec<String>, &str, &str); 4] = [
        (
            [
                "split",
                "--dataset",
                "mnist",
                "--train-limit",
                "300",
                "--forget",
                "5",
                "--out",
                &f("dellist.json"),
            ]
            .map(String::from)
            .to_vec(),
            "--out",
            "dellist.json",
        ),
        (eval(&f("req.csv")), "--per-sample", "req.csv"),
        (eval(&f("user.npy")), "--per-sample", "user.npy"),
        (
            [
                "adv",
                "--checkpoint",
                &ck,
                "--forget",
                &forget,
                "--pgd-steps",
                "2",
                "--device",
                "cpu",
                "-q",
                "--out",
                &f("userw.safetensors"),
            ]
            .map(String::from)
            .to_vec(),
            "--out",
            "userw.safetensors",
        ),
    ];
    for (args, flag, name) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused_and_intact(
            &args,
            &[&f(name)],
            &[flag, name, "a file amun did not write", "remove"],
        );
    }
    assert!(!d.path().join("userw.json").exists());
}

/// Issue 37 L1: `split --out f.json` onto the forget set a retrain was
/// made without replaced it with another set, exit 0 (the retrain and its
/// audits then refused the new one). A forget set amun wrote is replaced
/// only by the same set.
#[test]
fn split_replaces_a_forget_set_only_with_the_same_set() {
    let d = folder();
    // f.json: 30 of mnist[train:300], seed 2 (the retrain rt.safetensors's).
    let f = p(d.path(), "f.json");
    let split = |seed| {
        [
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--forget",
            "30",
            "--seed",
            seed,
            "--out",
            f.as_str(),
        ]
    };
    ok(&amun(&split("2")));
    refused_and_intact(
        &split("3"),
        &[&f],
        &[
            "--out",
            "f.json",
            "different content",
            "amun train --exclude",
            "remove",
        ],
    );
    assert_eq!(
        crate::common::files_in(d.path()),
        ["f.json", "orig.json", "orig.safetensors"],
        "the new set's temporary file is gone"
    );
}

/// `amun unlearn` of `f.json` from the copied original with `--adv ADV`
/// and `extra`, into `out.safetensors`.
fn unlearn_with_adv(d: &Path, adv: &str, extra: &[&str]) -> std::process::Output {
    let (ck, f, out) = (
        p(d, "orig.safetensors"),
        p(d, "f.json"),
        p(d, "out.safetensors"),
    );
    let mut a = vec![
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--adv",
        adv,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-q",
        "--out",
        &out,
    ];
    a.extend_from_slice(extra);
    amun(&a)
}

#[test]
fn attack_flags_with_a_precomputed_adversarial_set_are_refused() {
    let d = folder();
    let a = copy_adv(d.path(), "adv");
    for (extra, flag) in [
        (&["--eps0", "0.5"][..], "--eps0"),
        (&["--adv-search", "fast"][..], "--adv-search"),
        (&["--attack", "fgsm", "--pgd-steps", "3"][..], "--attack"),
        (&["--set", "attack.eps0=0.5"][..], "--set attack.eps0"),
        (&["--adaptive"][..], "--adaptive"),
    ] {
        fails_with(&unlearn_with_adv(d.path(), &a, extra), &[flag, "--adv"]);
    }
    assert!(!d.path().join("out.safetensors").exists());
}

/// A retain budget that rounds below one batch runs one batch, as
/// documented, but the sidecar held only the budget as given (hostile16
/// W1k): it records the D_R images each epoch visited as well.
#[test]
fn the_retain_images_an_epoch_visits_are_recorded() {
    let d = folder();
    let a = copy_adv(d.path(), "adv");
    let budget = ["--set", "finetune.retain_budget=0.001"];
    ok(&unlearn_with_adv(d.path(), &a, &budget));
    let origin = &read_json(&d.path().join("out.json"))["origin"];
    assert_eq!(origin["settings"]["finetune"]["retain_budget"], 0.001);
    // One batch (128) of the 270 D_R images, for the one request.
    assert_eq!(
        origin["retain_per_epoch"],
        serde_json::json!([128]),
        "{origin}"
    );
}

#[test]
fn a_precomputed_adversarial_set_is_recorded_with_its_hash() {
    let d = folder();
    let a = copy_adv(d.path(), "adv");
    ok(&unlearn_with_adv(d.path(), &a, &[]));
    let origin = &read_json(&d.path().join("out.json"))["origin"];
    let rec = &origin["adversarial"];
    assert_eq!(rec["file"], a.as_str());
    let sha = amun::data::sha256_file(Path::new(&a)).unwrap();
    assert_eq!(rec["sha256"], sha.as_str());
    assert_eq!(
        rec["settings"]["steps"], 5,
        "the settings the set was made with"
    );
    assert!(
        origin["settings"].get("attack").is_none(),
        "no attack settings that made nothing: {}",
        origin["settings"]
    );
}

#[test]
fn negative_numbers_reach_the_value_checks() {
    let d = folder();
    let out = p(d.path(), "x.safetensors");
    let o = amun(&[
        "train",
        "--dataset",
        "mnist",
        "--train-limit",
        "300",
        "--weight-decay",
        "-1",
        "--device",
        "cpu",
        "--out",
        &out,
    ]);
    fails_with(&o, &["weight-decay", "≥ 0", "-1"]);
    let o = amun(&[
        "bench",
        "unlearn",
        "--checkpoint",
        &p(d.path(), "orig.safetensors"),
        "--fractions",
        "-0.1",
        "--device",
        "cpu",
    ]);
    fails_with(&o, &["--fractions", "(0,1)"]);
    let o = amun(&[
        "registry",
        "policy",
        "--registry",
        &p(d.path(), "no-registry"),
        "--retrain-after-fraction",
        "-0.1",
    ]);
    fails_with(&o, &["retrain-after-fraction", "-0.1", "(0,1)"]);
    // An unsigned flag: the parser's own value check, naming the flag.
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &p(d.path(), "orig.safetensors"),
        "--forget",
        &p(d.path(), "f.json"),
        "--calibrate",
        "--holdout-test",
        "50",
        "--calibrate-max-epochs",
        "-3",
        "--out",
        &out,
    ]);
    let err = crate::common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value '-3' for '--calibrate-max-epochs"),
        "{err}"
    );
    // It says what the flag expects, not Rust's "invalid digit found in
    // string" (hostile16 W2a, W3c), for every whole-number flag.
    assert!(
        err.contains("expected a whole number, not a negative one"),
        "{err}"
    );
    assert!(!Path::new(&out).exists());
    for (value, expected) in [("-1", "not a negative one"), ("1.5", "a whole number")] {
        let o = amun(&["experiment", "--config", "e.toml", "--threads", value]);
        let err = crate::common::stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("'{value}' for '--threads")), "{err}");
        assert!(err.contains(expected) && !err.contains("digit"), "{err}");
    }
}

#[test]
fn a_thread_count_beyond_the_bound_is_refused_at_once() {
    let d = folder();
    let cfg = p(d.path(), "e.toml");
    std::fs::write(&cfg, crate::hostile::EXPERIMENT).unwrap();
    let t = std::time::Instant::now();
    let o = amun(&[
        "experiment",
        "--config",
        &cfg,
        "--threads",
        "5000",
        "--plan",
        "--out",
        &p(d.path(), "run"),
    ]);
    fails_with(&o, &["--threads", "1 to 1024", "5000"]);
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());
}

#[test]
fn sigterm_ends_a_command_with_143() {
    let d = folder();
    let out = d.path().join("long.safetensors");
    let lock = d.path().join("long.safetensors.lock");
    let child = crate::common::long_training(&out);
    for _ in 0..2400 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(lock.exists(), "the lock never appeared");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    let err = crate::common::stderr(&o);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted: removed"), "{err}");
    assert!(!lock.exists());
}

/// hostile10: a SIGTERM after `registry create` had committed and printed
/// its result (the process still tearing down) ended it with 143 and
/// "interrupted": a script would retry a create that is done. A signal
/// after the outcome is decided keeps the outcome's exit code.
#[test]
fn a_signal_after_the_result_is_printed_keeps_the_exit_code() {
    use std::io::BufRead;
    let d = folder();
    let reg = d.path().join("reg");
    let mut child = std::process::Command::new(common::bin())
        .args(["registry", "create", "--checkpoint"])
        .arg(d.path().join("orig.safetensors"))
        .arg("--registry")
        .arg(&reg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    assert!(line.contains("registry of"), "{line}");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = common::stderr(&o);
    // Sent while the process still ran (else the check proves nothing).
    assert!(sent.success());
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("interrupted"), "{err}");
    ok(&amun(&[
        "registry",
        "verify",
        "--registry",
        reg.to_str().unwrap(),
    ]));
}

#[test]
fn one_set_key_given_twice_is_refused() {
    let d = folder();
    let o = amun(&[
        "unlearn",
        "--checkpoint",
        &p(d.path(), "orig.safetensors"),
        "--forget",
        &p(d.path(), "f.json"),
        "--method",
        "ft",
        "--set",
        "finetune.lr=0.1",
        "--set",
        "finetune.lr=0.01",
        "--device",
        "cpu",
        "--out",
        &p(d.path(), "u.safetensors"),
    ]);
    fails_with(&o, &["--set finetune.lr", "twice"]);
    assert!(!d.path().join("u.safetensors").exists());
}

#[test]
fn outputs_inside_a_registry_folder_are_refused() {
    // A released version's weights and an issued receipt are amun
    // artifacts of the very kinds `unlearn` and `split` write: only the
    // registry's own commands may write there.
    let d = folder();
    let reg = d.path().join("reg");
    std::fs::create_dir_all(reg.join("versions")).unwrap();
    std::fs::create_dir_all(reg.join("receipts")).unwrap();
    std::fs::write(reg.join("anchor.log"), b"").unwrap();
    let (v2, v2_side, receipt) = (
        p(&reg, "versions/v0002.safetensors"),
        p(&reg, "versions/v0002.json"),
        p(&reg, "receipts/r0001.json"),
    );
    std::fs::copy(m("orig.safetensors"), &v2).unwrap();
    std::fs::copy(m("orig.json"), &v2_side).unwrap();
    std::fs::write(&receipt, b"{\"request\": 1}").unwrap();
    let (ck, f) = (p(d.path(), "orig.safetensors"), p(d.path(), "f.json"));
    refused_and_intact(
        &Args::ft_one_epoch(&ck, &f, &v2).words(),
        &[&v2, &v2_side],
        &["--out", "inside the registry"],
    );
    refused_and_intact(
        &[
            "split",
            "--dataset",
            "mnist",
            "--train-limit",
            "300",
            "--forget",
            "10",
            "--out",
            &receipt,
        ],
        &[&receipt],
        &["--out", "inside the registry"],
    );
}

/// A reference folder's files (issue 37 D4) are written only by `amun
/// rmia train-refs`: a per-sample evaluation onto its memberships or a
/// model's logits replaced them, exit 0.
#[test]
fn eval_per_sample_into_a_reference_folder_is_refused() {
    let d = folder();
    let refs = d.path().join("refs");
    crate::common::registry::copy_dir(Path::new(&m("refs")), &refs);
    let ck = p(d.path(), "orig.safetensors");
    let kept = [
        p(&refs, "members.safetensors"),
        p(&refs, "ref-000.logits.safetensors"),
    ];
    let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
    for out in [kept[0], kept[1], &p(&refs, "new.csv")] {
        refused_and_intact(
            &[
                "eval",
                "--checkpoint",
                &ck,
                "--device",
                "cpu",
                "--per-sample",
                out,
            ],
            &kept,
            &["--per-sample", "inside the reference models' folder"],
        );
    }
    assert!(!refs.join("new.csv").exists());
}

/// An experiment's run folder (issue 37 D5) is written only by `amun
/// experiment`: a forget set, a retrain or a per-sample file written there
/// by another command replaced the step's result, exit 0.
#[test]
fn another_commands_output_into_a_run_folder_is_refused() {
    crate::common::ensure("mnist");
    let d = folder();
    let cfg = p(d.path(), "exp.toml");
    std::fs::write(&cfg, crate::hostile::EXPERIMENT).unwrap();
    let run = d.path().join("run");
    ok(&amun(&[
        "experiment",
        "--config",
        &cfg,
        "--out",
        run.to_str().unwrap(),
        "--step",
        "forget-s0-f0.1",
        "-q",
    ]));
    let forget = p(&run, "forget-s0-f0.1.json");
    let split = [
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        "200",
        "--forget",
        "5",
        "--out",
        &forget,
    ];
    let retrain = p(&run, "retrain-s0-f0.1.safetensors");
    let train = [
        "train",
        "--dataset",
        "mnist",
        "--train-limit",
        "200",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-q",
        "--out",
        &retrain,
    ];
    let report = p(&run, "report.csv");
    let eval = [
        "eval",
        "--checkpoint",
        &p(d.path(), "orig.safetensors"),
        "--device",
        "cpu",
        "--per-sample",
        &report,
    ];
    for args in [&split[..], &train[..], &eval[..]] {
        refused_and_intact(
            args,
            &[&forget],
            &["inside the experiment's run folder", "amun experiment"],
        );
    }
    assert!(!Path::new(&retrain).exists() && !Path::new(&report).exists());
}

/// Issue 37 C30/C31/C41c2: `export --out` replaced an existing PyTorch
/// file (a user's weights, or the `--init` file a model records) with exit
/// 0. amun cannot tell its own `.pt`/`.safetensors` export from a user's,
/// so an export never replaces an existing one.
#[test]
fn export_never_replaces_an_existing_pytorch_file() {
    let d = folder();
    for name in ["user.pt", "init.safetensors"] {
        let f = p(d.path(), name);
        std::fs::write(&f, b"a user's weights").unwrap();
        refused_and_intact(
            &[
                "export",
                "--checkpoint",
                &p(d.path(), "orig.safetensors"),
                "--out",
                &f,
            ],
            &[&f],
            &["--out", name, "cannot tell from a user's PyTorch weights"],
        );
    }
}

/// Issue 37 D5: `rmia train-refs --out <run folder>` wrote its models into
/// an experiment's run folder, `experiment --out <reference folder>` ran a
/// whole experiment inside reference models (exit 0 each). A folder output
/// is made only in a folder of its own kind (or a new one), named with
/// what it is.
#[test]
fn folder_outputs_go_only_into_folders_of_their_own_kind() {
    crate::common::ensure("mnist");
    let d = folder();
    let cfg = p(d.path(), "exp.toml");
    std::fs::write(&cfg, crate::hostile::EXPERIMENT).unwrap();
    let run = p(d.path(), "run");
    ok(&amun(&[
        "experiment",
        "--config",
        &cfg,
        "--out",
        &run,
        "--step",
        "forget-s0-f0.1",
        "-q",
    ]));
    let o = Args::train_refs_mnist(Some(&p(d.path(), "orig.safetensors")))
        .with("--out", &run)
        .and(&["-q"])
        .run();
    fails_with(
        &o,
        &["--out", "the experiment's run folder", "amun experiment"],
    );
    assert!(!Path::new(&run).join("manifest.json").exists());
    let refs = d.path().join("refs");
    crate::common::registry::copy_dir(Path::new(&m("refs")), &refs);
    let o = amun(&[
        "experiment",
        "--config",
        &cfg,
        "--out",
        refs.to_str().unwrap(),
        "--plan",
    ]);
    fails_with(&o, &["--out", "the reference models' folder"]);
    assert!(!refs.join("experiment.json").exists());
}

/// `amun args` run in the folder `cwd` (for `--out .`).
fn amun_in(cwd: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::common::bin())
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("running amun")
}

/// The files a user keeps beside an experiment's results, in `dir`.
fn users_files(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir.join("references")).unwrap();
    let files = [
        "original-s0.safetensors",
        "report.json",
        "gap-f0.1.png",
        "report.md",
        "references/ref-000.json",
    ];
    for f in files {
        std::fs::write(dir.join(f), format!("the user's {f}")).unwrap();
    }
    files.iter().map(|f| p(dir, f)).collect()
}

/// Issue 37 (hostile 5): `experiment --out .` (any folder holding files
/// that is no run folder) wrote the run over the user's files, exit 0. A
/// folder output goes only into a new or empty folder or one of its kind.
#[test]
fn experiment_out_into_a_folder_of_the_users_files_is_refused() {
    crate::common::ensure("mnist");
    let d = folder();
    let cfg = p(d.path(), "exp.toml");
    std::fs::write(&cfg, crate::hostile::EXPERIMENT).unwrap();
    let mine = d.path().join("mine");
    let kept = users_files(&mine);
    let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
    let needles = ["--out", "holds files it did not write", "gap-f0.1.png"];
    let step = ["--step", "forget-s0-f0.1", "-q"];
    let mut a = vec![
        "experiment",
        "--config",
        &cfg,
        "--out",
        mine.to_str().unwrap(),
    ];
    a.extend_from_slice(&step);
    refused_and_intact(&a, &kept, &needles);
    let before: Vec<Vec<u8>> = kept.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut a = vec!["experiment", "--config", &cfg, "--out", "."];
    a.extend_from_slice(&step);
    fails_with(&amun_in(&mine, &a), &needles);
    for (f, b) in kept.iter().zip(before) {
        assert!(std::fs::read(f).unwrap() == b, "{f} was changed");
    }
    assert!(!mine.join("experiment.json").exists());
    // A new or an empty folder is made a run folder, as before.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut a = vec![
        "experiment",
        "--config",
        &cfg,
        "--out",
        empty.to_str().unwrap(),
    ];
    a.extend_from_slice(&step);
    ok(&amun(&a));
    assert!(empty.join("experiment.json").exists());
}

/// Issue 37 (hostile 5): `rmia train-refs --out runs` (a folder holding a
/// run folder) or `--out .` trained, then marked the whole folder as
/// reference models, so the experiment in it was refused from then on.
/// Refused before any work; the run folder stays usable.
#[test]
fn train_refs_out_into_a_folder_holding_a_run_folder_is_refused() {
    crate::common::ensure("mnist");
    let d = folder();
    let cfg = p(d.path(), "exp.toml");
    std::fs::write(&cfg, crate::hostile::EXPERIMENT).unwrap();
    let runs = d.path().join("runs");
    let run = p(&runs, "x");
    let experiment = ["experiment", "--config", &cfg, "--out", &run];
    let step = ["--step", "forget-s0-f0.1", "-q"];
    ok(&amun(&[&experiment[..], &step[..]].concat()));
    let like = p(d.path(), "orig.safetensors");
    for (cwd, out) in [(d.path(), runs.to_str().unwrap()), (runs.as_path(), ".")] {
        let o = amun_in(cwd, &Args::refs_like(&like, out).words());
        fails_with(
            &o,
            &["--out", "holds files it did not write", "x among them"],
        );
        assert!(!runs.join("manifest.json").exists(), "--out {out}");
    }
    ok(&amun(&[&experiment[..], &step[..]].concat()));
}

/// hostile6 DL10: an output replaced an amun checkpoint made another way —
/// `unlearn --out` over a trained original (a 40-epoch model lost to a
/// 1-epoch fine-tune), exit 0. A checkpoint is replaced only by the kind of
/// command that made it.
#[test]
fn a_checkpoint_is_replaced_only_by_the_kind_of_command_that_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    common::mnist_trained_once(Path::new(&p("orig.safetensors")), "300", "1");
    common::split_mnist("300", "10", &p("f.json"), &[]);
    // Another trained model, under the name the unlearned one would take.
    common::mnist_trained_once(Path::new(&p("other.safetensors")), "300", "1");
    let before = std::fs::read(p("other.safetensors")).unwrap();
    let unlearn = |out: &str| {
        common::unlearn(
            &p("orig.safetensors"),
            &p("f.json"),
            "ft",
            out,
            &["--epochs", "1", "-q"],
        )
    };
    fails_with(
        &unlearn(&p("other.safetensors")),
        &["--out", "a trained model", "an unlearned model"],
    );
    assert_eq!(std::fs::read(p("other.safetensors")).unwrap(), before);
    // Its own earlier output is replaced, as before.
    ok(&unlearn(&p("u.safetensors")));
    ok(&unlearn(&p("u.safetensors")));
    // Training does not replace an unlearned model either.
    let o = common::train_mnist(&p("u.safetensors"), "300", "1", &[]);
    fails_with(&o, &["--out", "an unlearned model", "a trained model"]);
    // hostile7 DL10b: amun's sidecar copied beside a user's weights does
    // not make them amun's to replace.
    std::fs::write(p("user.safetensors"), b"a user's weights").unwrap();
    std::fs::copy(p("u.json"), p("user.json")).unwrap();
    let o = unlearn(&p("user.safetensors"));
    assert!(!o.status.success(), "replaced a user's weights");
    assert_eq!(
        std::fs::read(p("user.safetensors")).unwrap(),
        b"a user's weights"
    );
}

/// A pipe where amun reads or would write a file (hostile9 OUTFIFO, ZIN):
/// `--out` onto a FIFO blocked forever (telling what the file held opened
/// it for reading), and so did a FIFO as a config or a sidecar. Each is
/// refused at once, naming the file; `timeout` turns a hang into a failure.
#[test]
fn a_pipe_given_as_a_file_is_refused_not_waited_on() {
    let d = folder();
    let p = |f: &str| d.path().join(f).to_string_lossy().into_owned();
    let fifo = |f: &str| {
        let s = std::process::Command::new("mkfifo").arg(p(f)).status();
        assert!(s.unwrap().success(), "mkfifo {f}");
    };
    let run = |args: &[&str]| {
        std::process::Command::new("timeout")
            .arg("60")
            .arg(common::bin())
            .args(args)
            .output()
            .unwrap()
    };
    fifo("fifo.json");
    let o = run(&Args::split_mnist("300", "10")
        .with("--out", &p("fifo.json"))
        .words());
    fails_with(&o, &["fifo.json"]);
    fifo("fifo.toml");
    let o = run(&[
        "experiment",
        "--config",
        &p("fifo.toml"),
        "--out",
        &p("run"),
        "--plan",
    ]);
    fails_with(&o, &["fifo.toml", "not a regular file"]);
    // A checkpoint whose sidecar is a pipe.
    std::fs::remove_file(p("orig.json")).unwrap();
    fifo("orig.json");
    let o = run(&["eval", "--checkpoint", &p("orig.safetensors")]);
    fails_with(&o, &["orig.json", "not a regular file"]);
}
