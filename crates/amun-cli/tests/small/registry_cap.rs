//! `registry apply`'s default cost cap (issue 35): a calibrated apply costs
//! no more than the exact retrain it stands in for (`amun registry
//! retrain`) unless the user says otherwise, and its records say so.
use crate::common;
use common::registry::{create, ft_apply, mnist_model, reg, request};
use common::{fails_with, ok, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A registry at `dir/reg` of a 400-image MNIST model trained for `epochs`
/// epochs, with one pending request of 20 samples.
fn one_request(dir: &Path, epochs: &str) -> PathBuf {
    let model = mnist_model(dir, "400", epochs);
    let r = dir.join("reg");
    create(&r, &model, &[]);
    let idx: Vec<i64> = (0..20).map(|i| 7 * i + 1).collect();
    let f = request(dir, "r1.csv", &idx);
    ok(&reg("add", &r, &[f.to_str().unwrap()]));
    r
}

/// A calibrated apply of `r` by `method` on a one-rung ladder at `lr`,
/// whose walk runs (a strict level keeps the original from passing as it
/// is) and keeps a state that forgets, with `extra` flags.
fn apply_at(r: &Path, method: &str, lr: &str, extra: &[&str]) -> Output {
    let mut a = vec![
        "--method",
        method,
        "--epochs",
        "2",
        "--calibrate-lrs",
        lr,
        "--calibrate-level",
        "0.95",
        // No utility guard: what these tests look at is the cost.
        "--calibrate-max-drop",
        "100",
        "--device",
        "cpu",
    ];
    a.extend_from_slice(extra);
    reg("apply", r, &a)
}

/// The calibration record of the one request version 2 of `r` unlearned,
/// from its certificate.
fn calibration(r: &Path) -> Value {
    let c = common::read_json(&r.join("certificates/v0002.json"));
    let text = c["version"]["calibration"].as_str().expect("a calibration");
    serde_json::from_str::<Value>(text).unwrap()[0]["calibration"].clone()
}

/// Issue 35: a calibrated apply cost up to 1.6× the exact retrain it
/// stands in for. By default the walk is capped at 1× that retrain, the
/// progress and the record say so and what it spent; `none` lifts it.
#[test]
fn a_calibrated_apply_is_capped_at_the_exact_retrain_by_default_and_none_lifts_it() {
    let d = tempfile::tempdir().unwrap();
    let r = one_request(d.path(), "4");
    // Random labels at a high rate forget: the walk ends below the cap.
    let o = apply_at(&r, "rl", "0.1", &[]);
    ok(&o);
    assert!(
        stderr(&o).contains("calibration cost cap: 1 × the exact retrain this batch replaces")
            && stderr(&o).contains("(the default: never more than that retrain)"),
        "{}",
        stderr(&o)
    );
    let cal = calibration(&r);
    let cost = &cal["cost"];
    assert_eq!(
        cost["batch"],
        serde_json::json!({"fraction": 1.0, "origin": "default"}),
        "{cal}"
    );
    assert!(cost["spent"].as_u64().unwrap() > 0, "{cost}");
    let why = cal["why"].as_str().unwrap();
    assert!(why.contains("share of the apply's default cap"), "{why}");
    let md = std::fs::read_to_string(r.join("certificates/v0002.md")).unwrap();
    assert!(md.contains("against a cap of 0.95×"), "{md}");
    assert!(
        md.contains("1× the exact retrain the batch replaces, the default"),
        "{md}"
    );
    let d = tempfile::tempdir().unwrap();
    let r = one_request(d.path(), "4");
    let o = apply_at(&r, "rl", "0.1", &["--calibrate-max-cost", "none"]);
    ok(&o);
    assert!(!stderr(&o).contains("cost cap"), "{}", stderr(&o));
    let cal = calibration(&r);
    assert!(cal.get("cost").is_none(), "{cal}");
}

/// The default cap needs the continuing walk (the only one with a cost
/// meter) and a root whose recipe prices the retrain: a restarting walk
/// gets no cap and no error, and the progress says so. (A root without a
/// recipe, which `registry create` refuses to make, is the library's unit
/// test `the_default_cap_applies_where_a_retrain_prices_it`.)
#[test]
fn a_restarting_walk_gets_no_default_cap_and_no_error() {
    let d = tempfile::tempdir().unwrap();
    let r = one_request(d.path(), "4");
    let o = ft_apply(&r, &["--calibrate-walk", "restart", "--device", "cpu"]);
    ok(&o);
    assert!(
        stderr(&o).contains("no default cost cap: the restarting walk"),
        "{}",
        stderr(&o)
    );
    assert!(calibration(&r).get("cost").is_none());
}

/// When the default cap cannot be met — here the adversarial search alone
/// costs more than the exact retrain — the refusal names the way out: the
/// exact retrain at that cost, or the flag that lifts the cap.
#[test]
fn a_default_cap_the_search_alone_passes_names_the_retrain_and_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let r = one_request(d.path(), "1");
    let o = reg(
        "apply",
        &r,
        &[
            "--method",
            "amun",
            "--set",
            "attack.fast_steps=400",
            "--device",
            "cpu",
            "-q",
        ],
    );
    fails_with(
        &o,
        &[
            "--calibrate-max-cost: 1 (the apply's default)",
            "adversarial search alone costs",
            "`amun registry retrain`",
            "--calibrate-max-cost none",
        ],
    );
    assert_eq!(common::registry::pending(&r), [1]);
}

/// When the walk stops at the default cap with the request still
/// remembered (a 1-epoch recipe leaves room for one epoch), nothing is
/// committed and the refusal names the same way out.
#[test]
fn a_walk_stopped_by_the_default_cap_names_the_retrain_and_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let r = one_request(d.path(), "1");
    fails_with(
        &apply_at(&r, "ft", "0.01", &[]),
        &[
            "request 1: calibration stopped at the cost cap (1× the exact retrain",
            "nothing was committed",
            "`amun registry retrain`",
            "--calibrate-max-cost none",
        ],
    );
    assert_eq!(common::registry::pending(&r), [1]);
    assert_eq!(common::registry::count(&r, "versions"), 1);
}
