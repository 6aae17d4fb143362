//! A user's own model exported with `torch.export` through the binary: a
//! `.pt2` is evaluated, unlearned (its checkpoint then loads by itself, and
//! after a move with its graph; never with another graph), exported back
//! and trained from scratch; a graph with an unknown operator
//! and a truncated archive are refused with one error line naming the file
//! and leave no output behind.
use crate::common::{self, amun, fails_with, ok, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The archives at CIFAR-10's shape, built once per test binary.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let venv = std::env::var("AMUN_PYENV").expect(
            "AMUN_PYENV must name the PyTorch environment of requirements/python-dev.txt: run \
             the tests through scripts/test.sh",
        );
        let dir = tempfile::tempdir().unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../amun/tests/fixtures/exported.py");
        let o = Command::new(PathBuf::from(venv).join("bin/python"))
            .arg(script)
            .arg("cli")
            .arg(dir.path())
            .output()
            .expect("running python");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dir
    })
    .path()
}

#[test]
fn a_pt2_model_goes_through_every_command() {
    common::ensure("cifar10");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |n: &str| {
        match n {
            "cnn32.pt2" | "cnn16.pt2" | "sorting32.pt2" | "truncated32.pt2" => fixtures().join(n),
            _ => d.join(n),
        }
        .display()
        .to_string()
    };
    let data = [
        "--dataset",
        "cifar10",
        "--train-limit",
        "300",
        "--test-limit",
        "200",
        "--device",
        "cpu",
    ];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(data.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |args: Vec<String>| amun(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(with(&["eval", "--checkpoint", &p("cnn32.pt2")]));
    ok(&o);
    assert!(stdout(&o).contains("| test  | 200"), "{}", stdout(&o));
    assert!(common::stderr(&o).contains("exported program"));
    // A bench without data takes the graph's own image size (3×16×16).
    let cnn16 = p("cnn16.pt2");
    let bench = |extra: &[&str]| {
        let mut a = vec!["bench", "train", "--device", "cpu", "--batch", "2"];
        a.extend(["--warmup", "0", "--steps", "1", "--windows", "1"]);
        a.extend(["--model", &cnn16]);
        amun(&[&a[..], extra].concat())
    };
    ok(&bench(&[]));
    fails_with(&bench(&["--input", "3x32x32"]), &["takes 3×16×16 images"]);
    let mut split = with(&[
        "split",
        "--forget",
        "30",
        "--seed",
        "1",
        "--out",
        &p("f.json"),
    ]);
    split.truncate(split.len() - 2); // split has no --device
    ok(&run(split));
    // The user's own copy of the graph (the checkpoint records its path).
    std::fs::copy(fixtures().join("cnn32.pt2"), d.join("net.pt2")).unwrap();
    let o = run(with(&[
        "unlearn",
        "--checkpoint",
        &p("net.pt2"),
        "--method",
        "ft",
        "--forget",
        &p("f.json"),
        "--epochs",
        "1",
        "--out",
        &p("u.safetensors"),
    ]));
    ok(&o);
    // The unlearned checkpoint names its graph: it loads without flags.
    ok(&amun(&[
        "eval",
        "--checkpoint",
        &p("u.safetensors"),
        "--device",
        "cpu",
    ]));
    ok(&amun(&[
        "export",
        "--checkpoint",
        &p("u.safetensors"),
        "--out",
        &p("u.pt2"),
    ]));
    ok(&amun(&[
        "export",
        "--checkpoint",
        &p("u.safetensors"),
        "--out",
        &p("u.pt"),
    ]));
    ok(&run(with(&["eval", "--checkpoint", &p("u.pt2")])));
    // An export replaces its own earlier .pt2, never a user's graph
    // (issue 37 D6: one not read by this command was overwritten).
    let export_to = |out: &str| {
        amun(&[
            "export",
            "--checkpoint",
            &p("u.safetensors"),
            "--out",
            &p(out),
        ])
    };
    ok(&export_to("u.pt2"));
    // Issue 37 P1: the graph the checkpoint records was called "--checkpoint".
    fails_with(
        &export_to("net.pt2"),
        &["net.pt2", "the exported graph of --checkpoint"],
    );
    // Issue 37 P8: a model trained from an earlier export records its
    // sha256; another model's export onto it (exit 0) left that model
    // unopenable. The same weights again give the same bytes (above).
    ok(&run(with(&[
        "unlearn",
        "--checkpoint",
        &p("u.pt2"),
        "--method",
        "ft",
        "--forget",
        &p("f.json"),
        "--epochs",
        "1",
        "--out",
        &p("u2.safetensors"),
    ])));
    let before = std::fs::read(d.join("u.pt2")).unwrap();
    let export_onto_u = |ck: &str| amun(&["export", "--checkpoint", &p(ck), "--out", &p("u.pt2")]);
    fails_with(
        &export_onto_u("u2.safetensors"),
        &["u.pt2", "the exported graph of --checkpoint"],
    );
    // Another model of net.pt2's (other weights) onto u.pt2.
    ok(&run(with(&[
        "unlearn",
        "--checkpoint",
        &p("net.pt2"),
        "--method",
        "ft",
        "--forget",
        &p("f.json"),
        "--epochs",
        "2",
        "--out",
        &p("u3.safetensors"),
    ])));
    fails_with(
        &export_onto_u("u3.safetensors"),
        &["--out", "u.pt2", "different content", "records its sha256"],
    );
    assert!(std::fs::read(d.join("u.pt2")).unwrap() == before);
    ok(&amun(&[
        "eval",
        "--checkpoint",
        &p("u2.safetensors"),
        "--device",
        "cpu",
    ]));
    std::fs::copy(fixtures().join("sorting32.pt2"), d.join("users.pt2")).unwrap();
    let before = std::fs::read(d.join("users.pt2")).unwrap();
    fails_with(
        &export_to("users.pt2"),
        &["users.pt2", "a .pt2 amun did not write"],
    );
    assert!(std::fs::read(d.join("users.pt2")).unwrap() == before);
    // Moved with its graph, the checkpoint finds it beside itself (by name,
    // then sha256); another file of that name is refused, and so is none.
    let moved = d.join("moved");
    std::fs::create_dir(&moved).unwrap();
    for f in ["u.safetensors", "u.json", "net.pt2"] {
        std::fs::rename(d.join(f), moved.join(f)).unwrap();
    }
    let u = moved.join("u.safetensors").display().to_string();
    ok(&amun(&["eval", "--checkpoint", &u, "--device", "cpu"]));
    std::fs::copy(fixtures().join("sorting32.pt2"), moved.join("net.pt2")).unwrap();
    let o = amun(&["eval", "--checkpoint", &u, "--device", "cpu"]);
    fails_with(&o, &["net.pt2", "changed or replaced"]);
    std::fs::remove_file(moved.join("net.pt2")).unwrap();
    let o = amun(&["eval", "--checkpoint", &u, "--device", "cpu"]);
    fails_with(&o, &["net.pt2", "put it back"]);
    // The architecture trains from scratch (PyTorch's default init).
    let o = run(with(&[
        "train",
        "--model",
        &p("cnn32.pt2"),
        "--epochs",
        "1",
        "--out",
        &p("t.safetensors"),
    ]));
    ok(&o);
    // Refusals: one error line naming the file, no output.
    let o = run(with(&[
        "unlearn",
        "--checkpoint",
        &p("sorting32.pt2"),
        "--forget",
        &p("f.json"),
        "--out",
        &p("x.safetensors"),
    ]));
    fails_with(&o, &["sorting32.pt2", "aten.sort.default", "Supported"]);
    assert!(!d.join("x.safetensors").exists());
    let o = run(with(&["eval", "--checkpoint", &p("truncated32.pt2")]));
    fails_with(&o, &["truncated32.pt2", "truncated"]);
    let o = run(with(&[
        "eval",
        "--checkpoint",
        &p("cnn32.pt2"),
        "--arch",
        "resnet18",
    ]));
    fails_with(&o, &["--arch", "its own architecture"]);
}

/// An experiment config names a `.pt2`: amun trains the original, the
/// exact retrain and the reference models of that architecture itself
/// (PyTorch's default init from each seed), unlearns and reports.
#[test]
fn an_experiment_runs_on_a_pt2_architecture() {
    common::ensure("cifar10");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("x.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
name = "exported"
model = "{}"
seeds = [0]
device = "cpu"

[program]
normalize = "0.5,0.25"

[data]
dataset = "cifar10"
train_limit = 300
test_limit = 100

[train]
epochs = 2
batch_size = 50
lr = 0.05

[forget]
fractions = [0.1]
with_retain = [true]

[rmia]
reference_models = 2

[methods.ft]
finetune.epochs = 1

[methods.amun]
finetune.epochs = 1
attack.steps = 5
"#,
            fixtures().join("cnn32.pt2").display()
        ),
    )
    .unwrap();
    let out = d.join("run");
    let o = amun(&[
        "experiment",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("cnn32.pt2"), "{report}");
    assert!(
        report.contains("AMUN") || report.contains("amun"),
        "{report}"
    );
    // The models record the graph they were made from, by sha256.
    let sidecar = std::fs::read_to_string(out.join("original-s0.json")).unwrap();
    assert!(
        sidecar.contains("\"exported\"") && sidecar.contains("sha256"),
        "{sidecar}"
    );
}

/// A registry of an exported model keeps its own copy of the graph: the
/// user's `.pt2` replaced or gone changes nothing, the folder moves, and
/// verify names a copy that was replaced or removed.
#[test]
fn a_registry_holds_the_graph_of_its_exported_model() {
    use crate::common::registry::{APPLY_FAST, count, reg, request};
    common::ensure("cifar10");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = d.join("net.pt2");
    std::fs::copy(fixtures().join("cnn32.pt2"), &net).unwrap();
    let model = d.join("t.safetensors");
    ok(&amun(&[
        "train",
        "--model",
        net.to_str().unwrap(),
        "--dataset",
        "cifar10",
        "--train-limit",
        "300",
        "--test-limit",
        "200",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        model.to_str().unwrap(),
        "-q",
    ]));
    let r = d.join("reg");
    crate::common::registry::create(&r, &model, &["--holdout-test", "20"]);
    let sha = amun::data::sha256_file(&net).unwrap();
    let copy = format!("graphs/{sha}.pt2");
    assert!(r.join(&copy).is_file(), "no {copy}");
    // The user's graph replaced, then gone, the registry moved elsewhere:
    // it verifies and applies from its own copy.
    std::fs::copy(fixtures().join("sorting32.pt2"), &net).unwrap();
    ok(&reg("verify", &r, &[]));
    std::fs::remove_file(&net).unwrap();
    let moved = d.join("elsewhere");
    std::fs::rename(&r, &moved).unwrap();
    let req = request(d, "r1.csv", &[1, 2, 3]);
    ok(&reg("add", &moved, &[req.to_str().unwrap()]));
    ok(&reg("apply", &moved, APPLY_FAST));
    ok(&reg("verify", &moved, &[]));
    // The registry's copy replaced, then removed: named.
    std::fs::copy(fixtures().join("sorting32.pt2"), moved.join(&copy)).unwrap();
    fails_with(
        &reg("verify", &moved, &[]),
        &[&copy, "was replaced or changed", "version(s) 1, 2 need"],
    );
    std::fs::remove_file(moved.join(&copy)).unwrap();
    fails_with(
        &reg("verify", &moved, &[]),
        &[&copy, "is missing", "stored it", "version(s) 1, 2 need"],
    );
    // Issue 37 (N6): with the user's graph back in place, a deleted copy
    // passed verify as one "made before registries kept one", with the
    // original's absolute path. The database records what it stored.
    std::fs::copy(fixtures().join("cnn32.pt2"), &net).unwrap();
    let o = reg("verify", &moved, &[]);
    fails_with(
        &o,
        &[
            &copy,
            "is missing",
            "stored it",
            "net.pt2, which is unchanged",
        ],
    );
    // (Only the registry path the user gave is printed, not the graph's.)
    let machine = net.to_string_lossy().into_owned();
    assert!(
        !stdout(&o).contains(&machine) && !stderr(&o).contains(&machine),
        "{o:?}"
    );
    fails_with(&reg("apply", &moved, APPLY_FAST), &[&copy, "is missing"]);
    // A retrain without the graph records nothing (issue 37: it wrote an
    // immutable retrain record before failing).
    let chain = count(&moved, "chain");
    fails_with(
        &reg("retrain", &moved, &["--force", "--device", "cpu", "-q"]),
        &[&copy, "is missing", "nothing was retrained"],
    );
    assert_eq!(count(&moved, "retrains"), 0);
    assert_eq!(count(&moved, "chain"), chain);
    // Put back from the original, as the message says: intact again.
    std::fs::copy(&net, moved.join(&copy)).unwrap();
    ok(&reg("verify", &moved, &[]));
}
