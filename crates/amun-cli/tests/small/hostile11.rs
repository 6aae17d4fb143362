//! Issue 37 (hostile11): inputs amun trusted unchecked or named wrongly: a
//! pipe in place of weights (a hang), a forget set or a checkpoint given
//! where another file was expected, flags ignored without a word, and a
//! reference folder's manifest read without its hash.
use crate::common::{Args, amun, fails_with, ok, path_in, stderr};
use crate::hostile::{audit_with, m};
use std::path::Path;
use std::process::Output;

/// The binary run on `args` with a limit, so that a command reading a pipe
/// fails the test rather than hanging it (the limit is never reached by a
/// command that refuses the pipe: it reads nothing).
fn amun_limited(args: &[&str]) -> Output {
    let o = std::process::Command::new("timeout")
        .arg("120")
        .arg(crate::common::bin())
        .args(args)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(124), "hung on {args:?}");
    o
}

fn mkfifo(p: &Path) {
    let s = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(s.success());
}

/// W2, W25, W23, W22: a pipe as a checkpoint's weights (`eval`, `registry
/// create`), as `import --from` and as `--adv` hung or was called
/// "missing"; each is now refused as "not a regular file (a pipe)". W7: a
/// forget set as `--checkpoint` got a diagnosis of links; AV8: a checkpoint
/// as `--adv` a raw serde error. M24: `--arch`, `--layout`, `--normalize`
/// were ignored for an amun checkpoint. UN9: `--adv-only` with ft named an
/// unknown setting `ft.adv_only`. M11: `split --forget -0.1` was a clap
/// error about an argument '-0'.
#[test]
fn pipes_and_wrong_files_are_named_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| path_in(d.path(), n);
    let weights = p("p.safetensors");
    mkfifo(Path::new(&weights));
    std::fs::copy(m("orig.json"), p("p.json")).unwrap();
    let pipe = ["not a regular file (a pipe)"];
    let o = amun_limited(&["eval", "--checkpoint", &weights, "--device", "cpu"]);
    fails_with(&o, &[&weights, pipe[0]]);
    let reg = p("reg");
    let o = amun_limited(&[
        "registry",
        "create",
        "--registry",
        &reg,
        "--checkpoint",
        &weights,
    ]);
    fails_with(&o, &pipe);
    assert!(!Path::new(&reg).exists());
    let from = p("from.pt");
    mkfifo(Path::new(&from));
    let import = [
        "import",
        "--from",
        &from,
        "--arch",
        "small-cnn",
        "--dataset",
        "mnist",
    ];
    let o = amun_limited(
        &[
            &import[..],
            &["--train-limit", "300", "--out", &p("imp.safetensors")],
        ]
        .concat(),
    );
    fails_with(&o, &[&from, pipe[0]]);
    let adv = p("adv.safetensors");
    mkfifo(Path::new(&adv));
    let unlearn = |adv: &str| {
        Args::unlearn(&m("orig.safetensors"), &m("f.json"), "amun")
            .with("--adv", adv)
            .with("--epochs", "1")
            .with("--device", "cpu")
            .with("--out", &p("u.safetensors"))
    };
    let o = amun_limited(&unlearn(&adv).words());
    fails_with(&o, &[&adv, pipe[0]]);
    assert!(!stderr(&o).contains("missing"), "{}", stderr(&o));
    // A checkpoint as --adv (AV8), a forget set as --checkpoint (W7).
    fails_with(
        &unlearn(&m("orig.safetensors")).run(),
        &[
            "orig.safetensors",
            "is an amun checkpoint, not an adversarial set",
        ],
    );
    let o = amun(&["eval", "--checkpoint", &m("f.json"), "--device", "cpu"]);
    fails_with(
        &o,
        &[
            "f.json",
            "expected a .safetensors checkpoint",
            "a forget set",
        ],
    );
    assert!(!stderr(&o).contains("link"), "{}", stderr(&o));
    // PyTorch-only flags for an amun checkpoint (M24).
    for flag in [
        ["--arch", "vgg19"],
        ["--normalize", "0.5,0.5"],
        ["--layout", "salun"],
    ] {
        let o = amun(
            &[
                &[
                    "eval",
                    "--checkpoint",
                    &m("orig.safetensors"),
                    "--device",
                    "cpu",
                ],
                &flag[..],
            ]
            .concat(),
        );
        fails_with(&o, &[flag[0], "only to a PyTorch checkpoint"]);
    }
    // --adv-only with a method that trains on no adversarial set (UN9).
    let o = Args::ft_one_epoch(&m("orig.safetensors"), &m("f.json"), &p("x.safetensors"))
        .and(&["--adv-only"])
        .run();
    fails_with(&o, &["--adv-only: only for amun and amun-salun"]);
    assert!(!stderr(&o).contains("unknown setting"), "{}", stderr(&o));
    // A negative number reaches the library's range check (M11).
    let o = Args::split_mnist("300", "-0.1")
        .with("--out", &p("x.json"))
        .run();
    fails_with(&o, &["forget", "-0.1", "expected a fraction in (0,1)"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!Path::new(&p("x.json")).exists());
}

/// The [`m`] reference folder copied to `dir`, the text of its manifest
/// changed by `edit` (which must change it, unless it is the identity).
fn refs_edited(dir: &Path, edit: impl Fn(&str) -> String) -> String {
    crate::common::registry::copy_dir(Path::new(&m("refs")), dir);
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).unwrap();
    std::fs::write(&mpath, edit(&text)).unwrap();
    dir.to_string_lossy().into_owned()
}

/// `text` with the first `from` replaced by `to` (which must be there).
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "no {from} in {text}");
    text.replacen(from, to, 1)
}

/// AU5, AU5c: a reference folder's manifest was read unchecked: editing its
/// recipe (epochs) silenced the warning that the references were trained
/// otherwise, and an edited training slice passed. The manifest now
/// carries the hash of its own text and is cross-checked against each
/// reference model's sidecar (also when its hashes are removed). AU16: a
/// `--forgotten` equal to `--forget`, or one the model's lineage never
/// forgot, passed without a word.
#[test]
fn an_audit_refuses_an_edited_manifest_and_unrecorded_forgotten_requests() {
    let d = tempfile::tempdir().unwrap();
    // The tiny models train 2 epochs on 300 images.
    let epochs = |t: &str| replaced(t, "\"epochs\": 2,", "\"epochs\": 3,");
    let refs = refs_edited(&d.path().join("epochs"), epochs);
    fails_with(
        &audit_with(&refs, &[]),
        &["manifest.json", "was changed after amun wrote it"],
    );
    let limit = |t: &str| replaced(t, "\"train_limit\": 300", "\"train_limit\": 299");
    let refs = refs_edited(&d.path().join("limit"), limit);
    fails_with(
        &audit_with(&refs, &[]),
        &["manifest.json", "was changed after amun wrote it"],
    );
    // Without its hashes (as an older amun wrote it) the edited recipe still
    // disagrees with the models' own sidecars.
    let unsealed = |t: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&epochs(t)).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("files");
        o.remove("content_sha256");
        serde_json::to_string_pretty(&v).unwrap()
    };
    let refs = refs_edited(&d.path().join("unsealed"), unsealed);
    fails_with(
        &audit_with(&refs, &[]),
        &[
            "manifest.json",
            "training recipe",
            "ref-000.safetensors",
            "records in its sidecar",
        ],
    );
    // The intact folder passes; --forgotten must be a request forgotten
    // before --forget, which the original never forgot.
    let intact = refs_edited(&d.path().join("intact"), str::to_string);
    ok(&audit_with(&intact, &[]));
    fails_with(
        &audit_with(&intact, &["--forgotten", &m("f.json")]),
        &["--forgotten", "f.json", "the same 30 samples as --forget"],
    );
    fails_with(
        &audit_with(&intact, &["--forgotten", &m("f2.json")]),
        &[
            "--forgotten",
            "f2.json",
            "no audited model's sidecar records this request",
        ],
    );
}

/// TR1: `train --out m.safetensors` replaced, without a word, the model an
/// unlearned model beside it was made from (its parent): it is refused now,
/// as `split` refuses to replace a forget set others were made from. TR2:
/// `unlearn --out u.safetensors` for another request replaced u silently:
/// a command may still replace its own earlier output, but says so, on
/// stderr and in its JSON.
#[test]
fn a_parent_is_never_replaced_and_a_replaced_model_is_named() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| path_in(d.path(), n);
    std::fs::copy(m("orig.safetensors"), p("m.safetensors")).unwrap();
    std::fs::copy(m("orig.json"), p("m.json")).unwrap();
    ok(
        &Args::ft_one_epoch(&p("m.safetensors"), &m("f.json"), &p("u.safetensors"))
            .and(&["-q"])
            .run(),
    );
    let before = std::fs::read(p("m.safetensors")).unwrap();
    let o = Args::train_mnist("300", "100")
        .quick("1")
        .with("--out", &p("m.safetensors"))
        .and(&["-q"])
        .run();
    fails_with(
        &o,
        &["m.safetensors", "u.safetensors", "was unlearned from"],
    );
    assert_eq!(std::fs::read(p("m.safetensors")).unwrap(), before);
    let o = Args::ft_one_epoch(&p("m.safetensors"), &m("f2.json"), &p("u.safetensors"))
        .and(&["--json"])
        .run();
    ok(&o);
    let said = "replaces an unlearned model (ft, forgot 30 samples";
    assert!(
        stderr(&o).contains(&format!("note: --out {}", p("u.safetensors"))),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains(said), "{}", stderr(&o));
    let out: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("unlearn --json prints JSON");
    assert!(out["replaced"][0].as_str().unwrap().contains(said), "{out}");
}
