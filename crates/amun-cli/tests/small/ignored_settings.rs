//! Settings a run would drop, repeat or record as used without using them
//! (issue 37): each refused with an error naming it, before any file is read
//! or any step runs.
use crate::common::{amun, ensure, fails_with};
use crate::hostile::EXPERIMENT;
use std::path::Path;

#[test]
fn settings_a_run_would_ignore_are_refused_before_reading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // Neither file exists: every check below comes before either is read.
    let (ck, f, out) = (p("none.safetensors"), p("f.json"), p("u.safetensors"));
    let unlearn = |extra: &[&str]| {
        let mut a = vec![
            "unlearn",
            "--checkpoint",
            &ck,
            "--forget",
            &f,
            "--out",
            &out,
            "--device",
            "cpu",
        ];
        a.extend_from_slice(extra);
        amun(&a)
    };
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["--no-retain", "--set", "finetune.retain_budget=2"],
            &["amun.finetune.retain_budget", "--no-retain"],
        ),
        (
            &["--no-retain", "--set", "finetune.retain_floor=100"],
            &["amun.finetune.retain_floor", "--no-retain"],
        ),
        (
            &[
                "--no-retain",
                "--calibrate",
                "--holdout-test",
                "50",
                "--calibrate-retain-budget",
                "full",
            ],
            &["--calibrate-retain-budget", "--no-retain"],
        ),
        (
            &[
                "--method",
                "ft",
                "--set",
                "finetune.retain_budget=full",
                "--set",
                "finetune.retain_floor=100",
            ],
            &["ft.finetune.retain_floor", "full"],
        ),
        (
            &[
                "--method",
                "amun",
                "--schedule",
                "constant",
                "--set",
                "finetune.stop_below=0.1",
            ],
            &["amun.finetune.stop_below", "constant"],
        ),
        (
            &["--adv-search", "exact", "--overshoot", "0.5"],
            &["overshoot", "exact search"],
        ),
        (
            &["--adv-search", "exact", "--fast-steps", "5"],
            &["fast-steps", "exact search"],
        ),
        (
            &[
                "--set",
                "attack.search=exact",
                "--set",
                "attack.overshoot=0.5",
            ],
            &["overshoot", "exact search"],
        ),
    ];
    for (extra, needles) in cases {
        fails_with(&unlearn(extra), needles);
    }
    let o = amun(&[
        "registry",
        "apply",
        "--registry",
        &p("reg"),
        "--no-retain",
        "--set",
        "finetune.retain_budget=2",
    ]);
    fails_with(&o, &["amun.finetune.retain_budget", "--no-retain"]);
    assert!(!Path::new(&out).exists() && !Path::new(&p("reg")).exists());
}

#[test]
fn bench_unlearn_refuses_a_fraction_given_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("none.safetensors");
    let o = amun(&[
        "bench",
        "unlearn",
        "--checkpoint",
        &ck.to_string_lossy(),
        "--fractions",
        "0.1,0.1",
    ]);
    fails_with(&o, &["--fractions", "0.1", "twice"]);
}

#[test]
fn plan_refuses_what_the_run_refuses() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let plan = |text: &str| {
        std::fs::write(p("exp.toml"), text).unwrap();
        amun(&[
            "experiment",
            "--config",
            &p("exp.toml"),
            "--out",
            &p("run"),
            "--plan",
        ])
    };
    // More held-out images than MNIST's 10,000 test images.
    let holdout = EXPERIMENT.replace("test_limit = 100\n", "")
        + "\n[calibrate]\nholdout = 10000\nmethods = [\"rl\"]\n";
    fails_with(&plan(&holdout), &["calibrate.holdout", "10000"]);
    // A forget file whose index is out of the 200 training images.
    let idx: Vec<String> = (180..199).chain([5000]).map(|i| i.to_string()).collect();
    std::fs::write(p("bad.csv"), format!("idx\n{}\n", idx.join("\n"))).unwrap();
    let files = EXPERIMENT.replace(
        "with_retain = [true]",
        "with_retain = [true]\nfiles = [\"bad.csv\"]",
    );
    fails_with(&plan(&files), &["bad.csv", "5000", "out of range"]);
    assert!(!Path::new(&p("run")).exists());
}

#[test]
fn audit_refuses_a_nan_gamma_before_reading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let audit = |flag: &str, v: &str| {
        amun(&[
            "audit",
            "--checkpoint",
            &p("none.safetensors"),
            "--forget",
            &p("f.json"),
            "--refs",
            &p("refs"),
            flag,
            v,
        ])
    };
    fails_with(&audit("--gamma", "nan"), &["--gamma", "NaN"]);
    fails_with(&audit("--a", "2"), &["--a", "[0,1]"]);
}

#[test]
fn a_flag_and_set_clash_is_refused_alike_by_every_command_that_takes_both() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // None of these files exists: the clash is refused before any is read.
    let (ck, f, out, reg) = (
        p("none.safetensors"),
        p("f.json"),
        p("u.safetensors"),
        p("reg"),
    );
    let unlearn = [
        "unlearn",
        "--checkpoint",
        &ck,
        "--forget",
        &f,
        "--out",
        &out,
        "--device",
        "cpu",
    ];
    let apply = ["registry", "apply", "--registry", &reg, "--device", "cpu"];
    let bench = ["bench", "unlearn", "--checkpoint", &ck, "--device", "cpu"];
    let refusal = |cmd: &[&str], clash: &[&str]| {
        let o = amun(&[cmd, clash].concat());
        fails_with(&o, &["--set", "silently win"]);
        crate::common::stderr(&o)
    };
    // The fine-tune flags: `unlearn` and `registry apply` take them.
    for clash in [
        &["--set", "finetune.lr=0.1", "--lr", "0.01"][..],
        &["--batch-size", "16", "--set", "finetune.batch-size=8"][..],
        &[
            "--set",
            "finetune.schedule=constant",
            "--schedule",
            "cosine",
        ][..],
    ] {
        assert_eq!(
            refusal(&unlearn, clash),
            refusal(&apply, clash),
            "{clash:?}"
        );
    }
    // The attack flags: `unlearn` and `bench unlearn` take them.
    for clash in [
        &["--pgd-steps", "5", "--set", "attack.steps=3"][..],
        &["--set", "attack.attack=fgsm", "--attack", "pgd-linf"][..],
    ] {
        assert_eq!(
            refusal(&unlearn, clash),
            refusal(&bench, clash),
            "{clash:?}"
        );
    }
    assert!(!Path::new(&out).exists() && !Path::new(&reg).exists());
}
