//! Experiments: a run folder belongs to one config, and a rerun recomputes
//! exactly what is missing or stale. (Config errors are unit tests of
//! `experiment::config`.)
use crate::common;

use amun::experiment::{Config, open_folder, run as run_experiment};
use amun::progress::Quiet;
use std::path::Path;

const TINY: &str = r#"
name = "tiny"
model = "small-cnn"
seeds = [0]
device = "cpu"

[data]
dataset = "mnist"
train_limit = 300
test_limit = 100

[train]
epochs = 3
batch_size = 32
lr = 0.02
augment = false

[forget]
fractions = [0.1]
with_retain = [true, false]

[rmia]
reference_models = 2

[methods.ft]
finetune.epochs = 1

[methods.amun]
finetune.epochs = 1
attack.steps = 5
"#;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("x.toml")).map_err(|e| e.to_string())
}

#[test]
fn resume_recomputes_only_what_is_missing_or_stale() {
    let _rng = common::torch_rng();
    let data = common::load("mnist", Some(300), Some(100));
    let cfg = parse(TINY).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |_expect_all: bool| -> Vec<String> {
        let out = run_experiment(&cfg, &data, dir.path(), "test".into(), &Quiet).unwrap();
        // original, retrain, ft (R), amun (R), amun (noR): ft needs D_R.
        assert_eq!(out.report.results.len(), 5);
        out.computed
    };
    let first = run(true);
    assert!(
        first.iter().any(|c| c.starts_with("original"))
            && first.iter().any(|c| c.starts_with("retrain"))
    );
    for f in [
        "report.md",
        "report.json",
        "report.csv",
        "roc-f0.1-R.png",
        "confidence-f0.1-noR.png",
        "gap-f0.1.png",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        md.contains("| retrain") && md.contains("| amun") && md.contains("Avg. Gap"),
        "{md}"
    );

    // Nothing to do the second time.
    assert_eq!(run(false), Vec::<String>::new());

    // One unlearned model deleted: it comes back (bit-identical on the CPU,
    // so its audit stays valid), nothing else.
    let ft = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("unlearn-ft-") && n.ends_with(".safetensors")
        })
        .unwrap();
    std::fs::remove_file(&ft).unwrap();
    let again = run(false);
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].starts_with("unlearn-ft-s0-f0.1-R-"), "{again:?}");

    // The adversarial set deleted: recomputed bit-identically, so the AMUN
    // models made from it stay valid.
    let adv = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("adv-")
                && p.extension().unwrap() == "safetensors"
        })
        .unwrap();
    std::fs::remove_file(&adv).unwrap();
    let again = run(false);
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].starts_with("adv-s0-f0.1-"), "{again:?}");

    // The forget set changed on disk: the file is not what its meta
    // records, so it is not trusted but made again from its seed — the same
    // set, so nothing made from it needs recomputing.
    let fpath = dir.path().join("forget-s0-f0.1.json");
    let before = std::fs::read(&fpath).unwrap();
    let other =
        amun::data::ForgetSet::choose(&data, &amun::data::ForgetSpec::Fraction(0.1), 99).unwrap();
    other.write(&fpath).unwrap();
    let again = run(false);
    assert_eq!(again, vec!["forget-s0-f0.1".to_string()]);
    assert_eq!(std::fs::read(&fpath).unwrap(), before);

    // Another config in the same folder is refused.
    let other_cfg = parse(&TINY.replace("epochs = 3", "epochs = 4")).unwrap();
    let e = open_folder(&other_cfg, dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("another config"), "{e}");
}
