//! Bring your own model: real PyTorch checkpoints (made by the torch in the
//! project's virtual environment) in every supported layout are imported
//! with identical logits, exported back and loaded by PyTorch with
//! strict=True; hostile and broken files are refused.
use crate::common;
use amun::model::{Arch, import};
use common::amun;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn python() -> PathBuf {
    let venv = std::env::var("AMUN_PYENV").expect(
        "AMUN_PYENV must name the PyTorch environment of requirements/python-dev.txt: \
         run the tests through scripts/test.sh (or `scripts/setup.sh --dev && source scripts/env.sh`)",
    );
    PathBuf::from(venv).join("bin/python")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch_models.py")
}

/// CIFAR-10 in the cache before any `amun` process needs it (tests run in
/// parallel; one fetch at a time).
fn ensure_cifar() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        amun::data::fetch(
            amun::data::Registry::Cifar10,
            &amun::data::default_data_dir(),
        )
        .unwrap();
    });
}

fn fixtures(dir: &Path) {
    ensure_cifar();
    let o = Command::new(python())
        .arg(script())
        .arg("make")
        .arg(dir)
        .output()
        .expect("running python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const CASES: [(&str, Arch); 5] = [
    ("small-cnn", Arch::SmallCnn),
    ("resnet18-authors", Arch::Resnet18),
    ("resnet18-torchvision", Arch::Resnet18),
    ("resnet18-salun", Arch::Resnet18),
    ("vgg19", Arch::Vgg19),
];

fn classes() -> Vec<String> {
    (0..10).map(|c| c.to_string()).collect()
}

#[test]
fn imported_models_give_pytorchs_logits_and_export_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures(d);
    let spec = amun::data::DataSpec::new("cifar10");
    for (name, arch) in CASES {
        let io: std::collections::HashMap<String, tch::Tensor> =
            tch::Tensor::read_safetensors(d.join(format!("{name}.io.safetensors")))
                .unwrap()
                .into_iter()
                .collect();
        for ext in ["pt", "safetensors"] {
            let file = d.join(format!("{name}.{ext}"));
            let (model, _, info) = import(
                &file,
                arch,
                None,
                &spec,
                [3, 32, 32],
                &classes(),
                None,
                tch::Device::Cpu,
            )
            .unwrap_or_else(|e| panic!("{name}.{ext}: {e}"));
            let want = match name {
                "resnet18-torchvision" => "torchvision",
                "resnet18-salun" => "salun",
                _ => "authors",
            };
            assert_eq!(info.layout.name(), want, "{name}: detected layout");
            let logits = tch::no_grad(|| model.forward_t(&io["x"], false));
            let diff = (&logits - &io["logits"]).abs().max().double_value(&[]);
            assert!(diff <= 1e-5, "{name}.{ext}: max |Δlogit| {diff}");
        }
        // Import with the CLI, export in the file's own layout, load in PyTorch.
        let arch_name = arch.name();
        let ck = d.join(format!("{name}-amun.safetensors"));
        let o = amun(&[
            "import",
            "--from",
            d.join(format!("{name}.pt")).to_str().unwrap(),
            "--arch",
            arch_name,
            "--dataset",
            "cifar10",
            // Random weights score at chance by construction; the check
            // that refuses such imports is tested with a trained model.
            "--force",
            // That check's forward passes (1,000 train + 1,000 test images
            // by default: most of this test's time on the ResNets and the
            // VGG) prove nothing here, so it runs on a small slice.
            "--train-limit",
            "100",
            "--test-limit",
            "100",
            "--out",
            ck.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let layout = match name {
            "resnet18-torchvision" => "torchvision",
            "resnet18-salun" => "salun",
            _ => "authors",
        };
        for ext in ["pt", "safetensors"] {
            let out = d.join(format!("{name}-export.{ext}"));
            let o = amun(&[
                "export",
                "--checkpoint",
                ck.to_str().unwrap(),
                "--layout",
                layout,
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let o = Command::new(python())
                .arg(script())
                .args(["check", d.to_str().unwrap(), name, out.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "PyTorch refused {name}.{ext}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    // On the fly: a PyTorch file straight into eval (the small CNN, on a
    // training slice: eval runs the training set too, the whole test set).
    let o = amun(&[
        "eval",
        "--checkpoint",
        d.join("small-cnn.pt").to_str().unwrap(),
        "--arch",
        "small-cnn",
        "--dataset",
        "cifar10",
        "--train-limit",
        "1000",
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["test"]["total"], 10000);
}

fn fails(o: &Output, needles: &[&str]) {
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    for n in needles {
        assert!(line.contains(n), "'{n}' not in {line}");
    }
}

#[test]
fn hostile_and_broken_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ensure_cifar();
    let marker = d.join("pwned");
    let o = Command::new(python())
        .arg(script())
        .arg("make")
        .arg(d)
        .env("AMUN_PWNED", &marker)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = d.join("out.safetensors");
    let imp = |file: &str, arch: &str| {
        amun(&[
            "import",
            "--from",
            d.join(file).to_str().unwrap(),
            "--arch",
            arch,
            "--dataset",
            "cifar10",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    fails(
        &imp("evil.pt", "resnet18"),
        &[
            "evil.pt",
            "refusing",
            "system",
            "nothing in the file was executed",
        ],
    );
    assert!(!marker.exists(), "the pickle's code ran");
    fails(
        &imp("truncated.pt", "resnet18"),
        &["truncated.pt", "truncated"],
    );
    fails(&imp("legacy.pt", "resnet18"), &["legacy.pt", "legacy"]);
    fails(
        &imp("no-bn-stats.pt", "resnet18"),
        &["no-bn-stats.pt", "missing", "bn1.running_mean"],
    );
    fails(
        &imp("resnet18-100.pt", "resnet18"),
        &["resnet18-100.pt", "100-class", "10 classes"],
    );
    fails(
        &imp("vgg19.pt", "resnet18"),
        &["vgg19.pt", "missing", "unexpected", "features.0.weight"],
    );
    fails(&imp("small-cnn.pt", "transformer"), &["model", "resnet18"]);
    let o = amun(&[
        "eval",
        "--checkpoint",
        d.join("small-cnn.pt").to_str().unwrap(),
    ]);
    fails(&o, &["small-cnn.pt", "--arch", "--dataset"]);
    assert!(!out.exists());
}

/// A small CNN trained in PyTorch with the usual CIFAR-10 normalisation in its
/// training loop: imported without `--normalize` it scores at chance on its
/// own training images, and the import refuses it (writing nothing) with
/// what to try; with the normalisation it imports and keeps its accuracy.
#[test]
fn a_model_imported_without_its_normalisation_is_refused() {
    ensure_cifar();
    let d = tempfile::tempdir().unwrap();
    let pt = d.path().join("trained.pt");
    let cifar = amun::data::default_data_dir().join("cifar10");
    let o = Command::new(python())
        .arg(script())
        .args(["train", cifar.to_str().unwrap(), "1000"])
        .arg(&pt)
        .output()
        .expect("running python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // "trained on 1000 images: train accuracy 28.2%"
    let torch_said = String::from_utf8_lossy(&o.stdout).into_owned();
    let torch_acc: f64 = torch_said
        .split("train accuracy ")
        .nth(1)
        .and_then(|r| r.trim().trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no accuracy from PyTorch: {torch_said}"));
    let out = d.path().join("imported.safetensors");
    let import = |extra: &[&str]| -> Output {
        let mut args = vec![
            "import",
            "--from",
            pt.to_str().unwrap(),
            "--arch",
            "small-cnn",
            "--dataset",
            "cifar10",
            "--train-limit",
            "1000",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        amun(&args)
    };
    let o = import(&[]);
    common::fails_with(
        &o,
        &["on its own first 1000 training images", "--normalize"],
    );
    assert!(!out.exists(), "a refused import wrote {}", out.display());
    let o = import(&["--normalize", "0.4914,0.4822,0.4465:0.2470,0.2435,0.2616"]);
    common::ok(&o);
    assert!(out.exists());
    // With its normalisation the model scores what it scored in PyTorch on
    // the images it was trained on, well above chance (10%).
    let said = common::stdout(&o);
    let acc: f64 = said
        .split("accuracy on the first 1000 training images ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no training accuracy in: {said}"));
    assert!(
        (acc - torch_acc).abs() <= 0.1 && acc > 20.0,
        "imported with its normalisation: {acc}%, PyTorch: {torch_acc}%"
    );
}
