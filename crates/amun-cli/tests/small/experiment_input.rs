//! An experiment's config and run folder taken as they are, nothing more
//! (issue 37, hostile11): a default written out is no other config, a name
//! or device a run refuses is refused at `--plan`, and a run folder's
//! steps and record are reported as what they are. Plans and one or two
//! steps on MNIST[train:200] ([`EXPERIMENT`]).
use crate::common::{bin, ensure, fails_with, ok, stderr};
use crate::hostile::EXPERIMENT;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

/// `amun experiment ARGS` run in `cwd`.
fn experiment_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(cwd)
        .arg("experiment")
        .args(args)
        .output()
        .expect("running amun")
}

/// Each step's `--plan --json` status (or `--status --json` state).
fn states(cwd: &Path, args: &[&str], key: &str) -> BTreeMap<String, String> {
    let o = experiment_in(cwd, args);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps = v.get("steps").unwrap_or(&v).as_array().unwrap().clone();
    let field = |s: &serde_json::Value, k: &str| s[k].as_str().unwrap().to_string();
    let id = if key == "status" { "id" } else { "step" };
    steps
        .iter()
        .map(|s| (field(s, id), field(s, key)))
        .collect()
}

/// hostile11 K15, K16, EF1 and SC6/K12: what a run refuses, `--plan`
/// refuses at the config's line; a method's setting written out at its
/// default plans the same steps as leaving it out.
#[test]
fn a_config_is_refused_at_plan_as_its_run_refuses_it_and_defaults_are_no_change() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plan = |text: &str, extra: &[&str]| {
        std::fs::write(d.join("exp.toml"), text).unwrap();
        let mut a = vec!["--config", "exp.toml", "--plan"];
        a.extend_from_slice(extra);
        experiment_in(d, &a)
    };
    // K15: a name that leaves runs/ (no --out), or none.
    for name in ["../../evil", "a/b", "..", ""] {
        let text = EXPERIMENT.replace("name = \"hostile\"", &format!("name = \"{name}\""));
        fails_with(
            &plan(&text, &[]),
            &["exp.toml", "line 1", "name", "plain name"],
        );
    }
    assert!(!d.join("runs").exists());
    // K16: a device this build or machine does not have (no machine has
    // eight GPUs here), as the run refuses it.
    let cuda = EXPERIMENT.replace("device = \"cpu\"", "device = \"cuda:7\"");
    let o = plan(&cuda, &["--out", "run"]);
    fails_with(&o, &["cuda:7"]);
    // EF1: files without their fraction, and an empty list, each named.
    let files = EXPERIMENT.replace("fractions = [0.1]", "files = [\"f.csv\"]");
    fails_with(
        &plan(&files, &["--out", "run"]),
        &[
            "exp.toml",
            "line 17",
            "forget.fractions",
            "with files",
            "the one fraction",
        ],
    );
    let empty = EXPERIMENT.replace("fractions = [0.1]", "fractions = []");
    fails_with(
        &plan(&empty, &["--out", "run"]),
        &[
            "exp.toml",
            "line 18",
            "forget.fractions",
            "at least one fraction",
        ],
    );
    assert!(!d.join("run").exists());
    // SC6/K12: rl's default learning rate written out (and [train]'s
    // momentum): the same steps, by name.
    let steps = |text: &str| {
        std::fs::write(d.join("exp.toml"), text).unwrap();
        states(
            d,
            &["--config", "exp.toml", "--out", "run", "--plan", "--json"],
            "status",
        )
    };
    let plain = steps(EXPERIMENT);
    let written = EXPERIMENT
        .replace(
            "finetune.epochs = 1",
            "finetune.epochs = 1\nfinetune.lr = 0.01",
        )
        .replace("lr = 0.02\n", "lr = 0.02\nmomentum = 0.9\n");
    assert_eq!(steps(&written), plain);
    let other = EXPERIMENT.replace(
        "finetune.epochs = 1",
        "finetune.epochs = 1\nfinetune.lr = 0.02",
    );
    assert_ne!(
        steps(&other).keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>()
    );
}

/// hostile11 SC6, X6, X4 and E12: a finished step stays done when the
/// config names a default; `--plan --reuse` shows what the run would copy;
/// `--status` calls an edited artifact stale, as `--plan` does, and one a
/// local run computes (its lock held) running (hostile14 XE1); a
/// hand-edited experiment.json is named as such, not blamed on the
/// reference models.
#[test]
fn a_run_folder_is_reported_as_what_it_holds() {
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("exp.toml"), EXPERIMENT).unwrap();
    for step in ["forget-s0-f0.1", "original-s0"] {
        ok(&experiment_in(
            d,
            &["--config", "exp.toml", "--out", "run", "--step", step, "-q"],
        ));
    }
    // SC6: [train] momentum = 0.9 (the default) is the same config.
    let momentum = EXPERIMENT.replace("lr = 0.02\n", "lr = 0.02\nmomentum = 0.9\n");
    std::fs::write(d.join("momentum.toml"), momentum).unwrap();
    let st = states(
        d,
        &[
            "--config",
            "momentum.toml",
            "--out",
            "run",
            "--plan",
            "--json",
        ],
        "status",
    );
    assert_eq!(st["original-s0"], "done");
    // X6: a fresh folder reusing this one plans both steps as copied, and
    // the retrain that reads the forget set as ready.
    let st = states(
        d,
        &[
            "--config", "exp.toml", "--out", "run2", "--reuse", "run", "--plan", "--json",
        ],
        "status",
    );
    assert_eq!(
        (st["original-s0"].as_str(), st["forget-s0-f0.1"].as_str()),
        ("reused", "reused")
    );
    assert_eq!(st["retrain-s0-f0.1"], "ready");
    assert!(!d.join("run2").exists());
    // X4: one byte of the original changed: stale in --status too.
    let ck = d.join("run/original-s0.safetensors");
    let mut bytes = std::fs::read(&ck).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    std::fs::write(&ck, bytes).unwrap();
    let st = states(d, &["--folder", "run", "--status", "--json"], "state");
    assert_eq!(st["original-s0"], "stale");
    assert_eq!(st["forget-s0-f0.1"], "done");
    // hostile14 XE1: a step whose lock a live process holds (this test's
    // pid, as a local run writes its own) is running, with that pid; a
    // lock left by a process that is gone (no pid that high) is not.
    let lock = d.join("run/original-s0.safetensors.lock");
    for (pid, state) in [(std::process::id(), "running"), (4_194_305, "stale")] {
        std::fs::write(&lock, format!("{pid}\n")).unwrap();
        let o = experiment_in(d, &["--folder", "run", "--status", "--json"]);
        ok(&o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let s = v
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "original-s0");
        let s = s.unwrap();
        assert_eq!(s["state"], state, "{s}");
        let job = format!("pid {pid}");
        assert_eq!(
            s["job"].as_str() == Some(job.as_str()),
            state == "running",
            "{s}"
        );
    }
    std::fs::remove_file(&lock).unwrap();
    // E12: the record edited by hand (lr 0.02 → 0.5) is named first.
    let rec = d.join("run/experiment.json");
    let text = std::fs::read_to_string(&rec).unwrap();
    assert!(text.contains("\"lr\": 0.02"), "{text}");
    std::fs::write(&rec, text.replace("\"lr\": 0.02", "\"lr\": 0.5")).unwrap();
    for args in [
        &["--folder", "run", "--plan"][..],
        &["--config", "exp.toml", "--out", "run", "--plan"],
    ] {
        let o = experiment_in(d, args);
        fails_with(&o, &["experiment.json", "changed after amun wrote it"]);
        assert!(!stderr(&o).contains("reference"), "{}", stderr(&o));
    }
}
