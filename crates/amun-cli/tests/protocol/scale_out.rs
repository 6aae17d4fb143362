//! Scale-out: the plan run by several local workers and by a real Slurm
//! cluster (Debian's slurm-wlm, brought up on this machine by
//! scripts/slurm-local.sh) ends with the same report, bit for bit, as the
//! sequential run; a cancelled job is resubmitted by the next run; a failed
//! one is reported with its log's last lines. These tests never skip: if
//! Slurm cannot start, they fail with the script's output.
use crate::common;
use common::{amun, ensure, ok, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// The tests share the 2-core machine and the one-node cluster: every test
// that submits to Slurm (the registry's retrain too) holds this, since
// these tests read the cluster's whole queue and accounting.
pub(crate) static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const CONFIG: &str = r#"name = "scale"
model = "small-cnn"
seeds = [0]
device = "cpu"
threads = 1

[data]
dataset = "mnist"
train_limit = 400
test_limit = 100

[train]
epochs = 3
batch_size = 32
lr = 0.02

[forget]
fractions = [0.1]
with_retain = [true, false]

[rmia]
reference_models = 2

[methods.ft]
finetune.epochs = 1

[methods.rl]
finetune.epochs = 1

[methods.amun]
finetune.epochs = 1
attack.steps = 5

[slurm]
train = { cpus = 1, mem = "2G" }
search = { cpus = 1, mem = "2G" }
unlearn = { cpus = 1, mem = "2G" }
audit = { cpus = 1, mem = "2G" }
light = { cpus = 1, mem = "1G" }
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts the local cluster (idempotent) and returns its SLURM_CONF.
pub(crate) fn slurm() -> String {
    let o = Command::new(repo().join("scripts/slurm-local.sh"))
        .arg("start")
        .output()
        .expect("running scripts/slurm-local.sh");
    assert!(
        o.status.success(),
        "the local Slurm cluster did not start:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let env = Command::new(repo().join("scripts/slurm-local.sh"))
        .arg("env")
        .output()
        .unwrap();
    String::from_utf8_lossy(&env.stdout)
        .trim()
        .trim_start_matches("export SLURM_CONF=")
        .to_string()
}

fn amun_env(args: &[&str], conf: &str) -> std::process::Output {
    Command::new(common::bin())
        .args(args)
        .env("SLURM_CONF", conf)
        .output()
        .expect("running amun")
}

fn sh(cmd: &str, conf: &str) -> String {
    let o = Command::new("bash")
        .args(["-c", cmd])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every model's audit in a report, in order.
fn audits(dir: &Path) -> Vec<serde_json::Value> {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| serde_json::json!([x["method"], x["with_retain"], x["audit"]]))
        .collect()
}

/// The audits of `CONFIG` run in one process: the reference both executors
/// are compared with, computed once per test binary (the same run for both).
fn sequential() -> &'static [serde_json::Value] {
    static WANT: OnceLock<Vec<serde_json::Value>> = OnceLock::new();
    WANT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("scale.toml");
        std::fs::write(&cfg, CONFIG).unwrap();
        let out = dir.path().join("local");
        ok(&amun(&[
            "experiment",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ]));
        audits(&out)
    })
}

#[test]
fn local_workers_give_the_sequential_report() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ensure("mnist");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scale.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let want = sequential();
    let out = dir.path().join("jobs");
    let o = amun(&[
        "experiment",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    ok(&o);
    assert!(stdout(&o).contains("| amun"), "{}", stdout(&o));
    assert_eq!(audits(&out), want, "2 workers, same bits as one process");
    // Every step's log is beside its artifact.
    assert!(out.join("original-s0.safetensors.log").exists());
    // The plan says everything is done.
    let o = amun(&["experiment", "--folder", out.to_str().unwrap(), "--plan"]);
    ok(&o);
    let last = stdout(&o).lines().last().unwrap_or("").to_string();
    assert!(last.contains(" done") && !last.contains("ready"), "{last}");
}

#[test]
fn slurm_runs_the_plan_resubmits_cancelled_jobs_and_reports_failures() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ensure("mnist");
    let conf = slurm();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scale.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let want = sequential();

    // Submit without waiting, cancel the original model's job once it runs.
    let out = dir.path().join("slurm");
    let o = amun_env(
        &[
            "experiment",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--slurm",
        ],
        &conf,
    );
    ok(&o);
    assert!(stdout(&o).contains("submitted"), "{}", stdout(&o));
    let jobs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("slurm/jobs.json")).unwrap()).unwrap();
    let original = jobs["original-s0"]["job"].as_str().unwrap().to_string();
    let t = Instant::now();
    loop {
        let st = sh(
            &format!(
                "squeue -h -r -j {} -o %T",
                original.split('_').next().unwrap()
            ),
            &conf,
        );
        if st.trim() == "RUNNING" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the original's job never ran: '{st}'\n{}",
            sh("squeue; sinfo", &conf)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sh(&format!("scancel {original}"), &conf);
    // Wait until Slurm has nothing left that can start.
    let t = Instant::now();
    loop {
        let q = sh("squeue -h -r -o '%T %r'", &conf);
        if q.lines().all(|l| l.starts_with("PENDING Dependency")) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "jobs still running:\n{q}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = amun_env(
        &["experiment", "--folder", out.to_str().unwrap(), "--status"],
        &conf,
    );
    ok(&o);
    let s = stdout(&o);
    assert!(s.contains("original-s0") && s.contains("cancelled"), "{s}");
    assert!(s.contains("blocked"), "{s}");
    // Rerun: only what is missing goes to Slurm; the blocked jobs are
    // cancelled and resubmitted; the result is the sequential one.
    let o = amun_env(
        &[
            "experiment",
            "--folder",
            out.to_str().unwrap(),
            "--slurm",
            "--wait",
        ],
        &conf,
    );
    ok(&o);
    let s = stdout(&o);
    assert!(
        s.contains("cancelled") && s.contains("waited for failed steps"),
        "{s}"
    );
    assert!(!s.contains("reference ×"), "references were done: {s}");
    assert_eq!(audits(&out), want, "Slurm jobs, same bits as one process");
    // Each step ran as its own job, visible in sacct.
    let acct = sh("sacct -n -X -o JobName%40,State", &conf);
    assert!(
        acct.contains("amun-scale-unlearn") && acct.contains("COMPLETED"),
        "{acct}"
    );

    // A failing step: its job FAILED, its log's last lines in --status.
    let bad_cfg = dir.path().join("bad.toml");
    std::fs::write(
        &bad_cfg,
        CONFIG
            .replace("name = \"scale\"", "name = \"bad\"")
            .replace(
                "[methods.ft]\nfinetune.epochs = 1",
                // All of D_R: three steps, so the rate's blow-up reaches
                // a non-finite loss within the one epoch.
                "[methods.ft]\nfinetune.epochs = 1\nfinetune.lr = 1e12\nfinetune.momentum = 0.0\n\
                 finetune.retain_budget = \"full\"",
            ),
    )
    .unwrap();
    let bad = dir.path().join("bad");
    let o = amun_env(
        &[
            "experiment",
            "--config",
            bad_cfg.to_str().unwrap(),
            "--out",
            bad.to_str().unwrap(),
            "--slurm",
            "--wait",
        ],
        &conf,
    );
    assert!(!o.status.success(), "a failed step fails the run");
    let s = stdout(&o);
    assert!(
        s.contains("unlearn-ft-s0-f0.1-R") && s.contains("failed") && s.contains("diverged"),
        "{s}\n{}",
        stderr(&o)
    );
}
