//! A model's lineage (the deletion requests it already forgot) through a
//! retrain, an audit and an export/import (hostile8 RX1, AU4, EI1).
use crate::common::{self, Args, amun, fails_with, ok, stderr, stdout};
use common::registry::request;
use std::collections::BTreeSet;
use std::path::Path;

/// 300 training samples less those of the forget-set files `files`.
fn retained(files: &[&str]) -> usize {
    let gone: BTreeSet<i64> = (files.iter())
        .flat_map(|f| common::forget_indices(Path::new(f)))
        .collect();
    300 - gone.len()
}

/// `amun train --exclude FORGET` of the quick 1-epoch recipe of
/// `mnist_trained_once("300", "1")`.
fn retrain(forget: &str, out: &str) {
    let a = Args::train_mnist("300", "200")
        .quick("1")
        .with("--exclude", forget)
        .with("--out", out);
    ok(&a.and(&["-q"]).run());
}

/// One epoch of fine-tuning of `ck` on `forget`, with `extra` flags.
fn ft(ck: &str, forget: &str, out: &str, extra: &[&str]) -> std::process::Output {
    Args::ft_one_epoch(ck, forget, out).and(extra).run()
}

/// The trained model m, the forget sets f40 and f20, and u1: m fine-tuned
/// to forget f40 (files named by `p`).
fn unlearned_f40(p: &dyn Fn(&str) -> String) {
    common::mnist_trained_once(Path::new(&p("m.safetensors")), "300", "1");
    common::split_mnist("300", "40", &p("f40.json"), &["--seed", "1"]);
    common::split_mnist("300", "20", &p("f20.json"), &["--seed", "2"]);
    ok(&ft(
        &p("m.safetensors"),
        &p("f40.json"),
        &p("u1.safetensors"),
        &[],
    ));
}

/// hostile8 RX1: a retrain without f (`train --exclude f`) is f's exact
/// unlearning, but unlearning it again fine-tuned on f's samples (retain 280
/// of 300) with exit 0, and `--forgotten f` was refused as unrecorded. A
/// retrain's exclusion is lineage: required as --forgotten, kept out of
/// training, and carried into the child's sidecar. A registry's retrain
/// excludes its requests as one set: they may be named one file each.
/// `ft` of `ck` forgetting f20.json with f40.json given as `--forgotten`
/// (files named by `p`): it must run, on a retain set without both.
fn ft_after_f40(ck: &str, out: &str, p: &dyn Fn(&str) -> String) {
    ran_without_both(
        &ft(ck, &p("f20.json"), out, &["--forgotten", &p("f40.json")]),
        p,
    );
}

/// `o` succeeded on a retain set without f40.json and f20.json.
fn ran_without_both(o: &std::process::Output, p: &dyn Fn(&str) -> String) {
    ok(o);
    let retain = retained(&[&p("f40.json"), &p("f20.json")]);
    assert!(
        stdout(o).contains(&format!("| retain | {retain} ")),
        "{}",
        stdout(o)
    );
}

#[test]
fn a_retrains_exclusion_is_lineage_that_unlearning_it_keeps_out_of_training() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    common::split_mnist("300", "40", &p("f40.json"), &["--seed", "1"]);
    common::split_mnist("300", "20", &p("f20.json"), &["--seed", "2"]);
    retrain(&p("f40.json"), &p("r.safetensors"));
    fails_with(
        &ft(
            &p("r.safetensors"),
            &p("f20.json"),
            &p("u.safetensors"),
            &[],
        ),
        &[
            "--forgotten",
            "forgot 1 request(s)",
            "40 samples",
            "retrain",
        ],
    );
    assert!(!Path::new(&p("u.safetensors")).exists());
    ft_after_f40(&p("r.safetensors"), &p("u.safetensors"), &p);
    let u = common::read_json(Path::new(&p("u.json")));
    assert_eq!(u["origin"]["forgotten_before"][0]["size"], 40);

    // A registry's retrain excludes its requests as one set: named one
    // file each, they are that set together.
    let all = common::forget_indices(Path::new(&p("f40.json")));
    let (q1, q2) = (
        request(dir.path(), "q1.csv", &all[..15]),
        request(dir.path(), "q2.csv", &all[15..]),
    );
    let halves = |extra: &[&str]| {
        let q = [q1.to_str().unwrap(), q2.to_str().unwrap()];
        let mut a = vec!["--forgotten", q[0]];
        a.extend_from_slice(extra);
        a.extend(["--forgotten", q[1]]);
        ft(&p("r.safetensors"), &p("f20.json"), &p("v.safetensors"), &a)
    };
    fails_with(
        &halves(&["--forgotten", &p("f20.json")]),
        &["--forgotten", "40 samples"],
    );
    ran_without_both(&halves(&[]), &p);
}

/// hostile8 AU4: the audit of a model unlearned twice (f40, then f20)
/// against a retrain without f20 only gave an Avg. Gap with exit 0, though
/// the model forgot f40 too. Its lineage must be named (--forgotten) and
/// the retrain must exclude all of it.
#[test]
fn an_audit_compares_a_lineage_only_with_a_retrain_without_all_it_forgot() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    unlearned_f40(&p);
    ok(&ft(
        &p("u1.safetensors"),
        &p("f20.json"),
        &p("u2.safetensors"),
        &["--forgotten", &p("f40.json")],
    ));
    retrain(&p("f20.json"), &p("r20.safetensors"));
    let union: BTreeSet<i64> = [p("f40.json"), p("f20.json")]
        .iter()
        .flat_map(|f| common::forget_indices(Path::new(f)))
        .collect();
    let both = request(
        dir.path(),
        "both.csv",
        &union.into_iter().collect::<Vec<_>>(),
    );
    retrain(both.to_str().unwrap(), &p("rboth.safetensors"));
    let audit = |retrain: &str, extra: &[&str]| {
        Args::of(&["audit", "--checkpoint"])
            .and(&[&p("m.safetensors"), &p("u2.safetensors")])
            .with("--forget", &p("f20.json"))
            .with("--retrain", &p(retrain))
            // No reference models: the checks come before they are read.
            .with("--refs", &p("refs"))
            .and(extra)
            .run()
    };
    fails_with(
        &audit("r20.safetensors", &[]),
        &[
            "u2.safetensors",
            "lineage forgot 2 request(s)",
            "40 samples",
            "--forgotten",
        ],
    );
    fails_with(
        &audit("rboth.safetensors", &[]),
        &["lineage forgot 2 request(s)"],
    );
    fails_with(
        &audit("r20.safetensors", &["--forgotten", &p("f40.json")]),
        &[
            "r20.safetensors",
            "--retrain",
            "retrained without another forget set",
        ],
    );
    let o = audit("rboth.safetensors", &["--forgotten", &p("f40.json")]);
    assert!(
        !stderr(&o).contains("lineage")
            && !stderr(&o).contains("--retrain")
            && stderr(&o).contains("refs"),
        "{}",
        stderr(&o)
    );
    // The model that forgot f40 only is not compared with a retrain
    // without f20 either.
    let o = amun(&[
        "audit",
        "--checkpoint",
        &p("u1.safetensors"),
        "--forget",
        &p("f20.json"),
        "--retrain",
        &p("r20.safetensors"),
        "--refs",
        &p("refs"),
    ]);
    fails_with(&o, &["u1.safetensors", "lineage forgot 1 request(s)"]);
    // Without a retrain the audit goes on, warning that its retain set
    // holds what the lineage forgot before (hostile9 AU4b: silent).
    let o = amun(&[
        "audit",
        "--checkpoint",
        &p("u2.safetensors"),
        "--forget",
        &p("f20.json"),
        "--refs",
        &p("refs"),
    ]);
    let err = stderr(&o);
    assert!(
        err.contains("warning:")
            && err.contains("lineage forgot 2 request(s)")
            && err.contains("as retain samples"),
        "{err}"
    );
}

/// hostile8 EI1: export then import of an unlearned model dropped its
/// lineage, and unlearning the import trained on the forgotten samples
/// again (exit 0, no word). The export names what the file does not carry;
/// `import --forgotten` records it, and the import's unlearning needs it.
#[test]
fn an_exported_lineage_is_named_and_recorded_again_by_import() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    unlearned_f40(&p);
    let o = amun(&[
        "export",
        "--checkpoint",
        &p("u1.safetensors"),
        "--out",
        &p("u1.pt"),
    ]);
    ok(&o);
    for needle in ["lineage forgot 1", "40 samples", "--forgotten"] {
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    }
    let import = |out: &str, extra: &[&str]| {
        Args::of(&["import", "--from", &p("u1.pt"), "--arch", "small-cnn"])
            .mnist("300")
            .with("--test-limit", "200")
            .with("--out", &p(out))
            .and(&["--force"])
            .and(extra)
            .run()
    };
    ok(&import("i.safetensors", &["--forgotten", &p("f40.json")]));
    fails_with(
        &ft(
            &p("i.safetensors"),
            &p("f20.json"),
            &p("iu.safetensors"),
            &[],
        ),
        &["--forgotten", "forgot 1 request(s)", "40 samples"],
    );
    ft_after_f40(&p("i.safetensors"), &p("iu.safetensors"), &p);
    // An import that records nothing says where the record comes from.
    ok(&import("bare.safetensors", &[]));
    fails_with(
        &ft(
            &p("bare.safetensors"),
            &p("f20.json"),
            &p("bu.safetensors"),
            &["--forgotten", &p("f40.json")],
        ),
        &["no such forgotten request", "amun import --forgotten"],
    );
}
