//! `amun registry`: an acknowledged deletion request never vanishes
//! unnoticed. Receipts, the anchor outside registry.db, a database put
//! back to an older copy or cut at its end, the files of a version a
//! rolled-back database lacks, a stop between a commit and its anchor
//! line, and registries made before anchors.
use crate::common;
use common::registry::{
    APPLY_FAST, add_killed_before_its_anchor, added_and_backed_up, copy_dir, copy_with_sql, count,
    create, db, mnist_model, pending, put_back_db, reg, reg_stopping_at, request, roll_back,
    small_registry, small_registry_and_db_copy, verifies_noting,
};
use common::{fails_with, ok, read_json, stderr, stdout};
use std::path::Path;

/// The anchor's lines.
fn anchor_lines(r: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(r.join("anchor.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The digest of request `id`'s samples, recomputed from the registry's
/// records of them: `index<TAB>path<TAB>sha256` lines in index order.
fn samples_digest(r: &Path, id: i64) -> String {
    let c = db(r);
    let mut st = c
        .prepare(
            "SELECT s.idx, COALESCE(s.path, ''), s.sha256 FROM request_samples q \
             JOIN samples s ON s.idx = q.idx WHERE q.request = ?1 ORDER BY s.idx",
        )
        .unwrap();
    let lines: Vec<String> = st
        .query_map([id], |r| {
            Ok(format!(
                "{}\t{}\t{}\n",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    amun::registry::db::sha256(lines.concat().as_bytes())
}

#[test]
fn a_database_put_back_to_an_older_copy_names_the_requests_it_lost() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let base = d.path().join("reg");
    // The anchor's copy on "another disk".
    let copy = d.path().join("elsewhere/reg-anchor.log");
    std::fs::create_dir(d.path().join("elsewhere")).unwrap(); // no copy makes folders
    create(&base, &model, &["--anchor-copy", copy.to_str().unwrap()]);
    let backup = d.path().join("backup.db");
    std::fs::copy(base.join("registry.db"), &backup).unwrap();
    let r1 = request(d.path(), "r1.csv", &[1, 2, 3]);
    let r2 = request(d.path(), "r2.csv", &[10, 11]);
    let kept = d.path().join("my-receipt.json");
    let o = reg(
        "add",
        &base,
        &[r1.to_str().unwrap(), "--receipt", kept.to_str().unwrap()],
    );
    ok(&o);
    assert!(stdout(&o).contains("receipt "), "{}", stdout(&o));
    let first_add = stdout(&o);
    let o = reg("add", &base, &[r2.to_str().unwrap(), "--json"]);
    ok(&o);
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // The receipt: the request, its samples' digest, the chain head after
    // the add and the registry's identity; kept by the registry too.
    let rc = &out[0]["receipt"];
    assert_eq!(rc["format"], "amun-receipt/1");
    assert_eq!(rc["request"]["id"], 2);
    assert_eq!(rc["request"]["size"], 2);
    assert_eq!(rc["record"]["kind"], "request");
    // Its time and its samples' digest (issue 37, item 5): the digest of
    // the samples the registry recorded for it, as the add printed it.
    for (id, receipt, said) in [
        (1, read_json(&kept), first_add.as_str()),
        (2, rc.clone(), ""),
    ] {
        let (received, added): (String, String) = db(&base)
            .query_row(
                "SELECT received, added FROM requests WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(receipt["request"]["received"], received.as_str());
        assert_eq!(receipt["request"]["added"], added.as_str());
        assert!(
            added.len() == 20 && added.ends_with('Z') && added.as_bytes()[10] == b'T',
            "{added}"
        );
        let digest = samples_digest(&base, id);
        assert_eq!(receipt["request"]["samples_sha256"], digest.as_str());
        assert!(said.is_empty() || said.contains(&digest[..12]), "{said}");
    }
    let head: (i64, String) = db(&base)
        .query_row(
            "SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rc["head_seq"], head.0);
    assert_eq!(rc["head_hash"], head.1.as_str());
    let first: String = db(&base)
        .query_row("SELECT hash FROM chain WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rc["registry"], first.as_str());
    assert_eq!(read_json(&base.join("receipts/r0002.json")), *rc);
    assert_eq!(read_json(&kept)["request"]["id"], 1);
    let lines = anchor_lines(&base);
    assert_eq!(lines.last().unwrap()["seq"], head.0);
    // The copy holds the same heads; each line's time is when that file
    // was written (a second may pass between the two).
    let heads = |p: &Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(p).unwrap();
        let mut lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for l in &mut lines {
            l.as_object_mut().unwrap().remove("time");
        }
        lines
    };
    assert_eq!(heads(&copy), heads(&base.join("anchor.log")));
    assert_eq!(lines.last().unwrap()["records"][0]["kind"], "request");
    let o = reg("verify", &base, &[]);
    ok(&o);
    assert!(
        stdout(&o).contains("2 receipt(s) checked") && stdout(&o).contains("anchored up to"),
        "{}",
        stdout(&o)
    );
    // `cp backup.db registry.db`: both requests are gone from the database.
    let a = d.path().join("a");
    copy_dir(&base, &a);
    put_back_db(&a, &backup);
    let o = reg("verify", &a, &[]);
    fails_with(&o, &["registry.db", "behind its anchor", "older copy"]);
    for n in [
        "CHANGED request 1: was acknowledged",
        "CHANGED request 2: was acknowledged",
        "no longer holds it",
    ] {
        assert!(stdout(&o).contains(n), "{n}: {}", stdout(&o));
    }
    // Nothing is written on top of the evidence.
    fails_with(
        &reg("add", &a, &[r1.to_str().unwrap()]),
        &[
            "cannot add requests",
            "behind its anchor",
            "nothing was changed",
        ],
    );
    assert_eq!(count(&a, "requests"), 0);
    // The whole folder put back (anchor and receipts too): the anchor's
    // copy names it (here an older copy of the registry beside the one
    // that wrote the copy's lines: named as such), and without the copy
    // the receipt the requester kept.
    let b = d.path().join("b");
    copy_dir(&base, &b);
    put_back_db(&b, &backup);
    std::fs::remove_dir_all(b.join("receipts")).unwrap();
    let first_line = anchor_lines(&b)[0].to_string() + "\n";
    std::fs::write(b.join("anchor.log"), first_line).unwrap();
    // Behind, not a fork (hostile7 FK8): it never wrote since the copy.
    let o = reg("verify", &b, &[]);
    fails_with(&o, &["reg-anchor.log", "is behind its anchor"]);
    assert!(
        stderr(&o).contains("another copy of this registry") && stderr(&o).contains("older copy"),
        "{}",
        stderr(&o)
    );
    let away = d.path().join("away.log");
    std::fs::rename(&copy, &away).unwrap();
    // Without its copy the registry is not verified (hostile6 AN6).
    fails_with(
        &reg("verify", &b, &[]),
        &["reg-anchor.log", "is missing", "not verified"],
    );
    let o = reg("verify", &b, &["--receipt", kept.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("CHANGED request 1: was acknowledged")
            && stdout(&o).contains("my-receipt.json"),
        "{}",
        stdout(&o)
    );
    std::fs::rename(&away, &copy).unwrap();
    // An edited receipt is named as such.
    let forged = d.path().join("forged.json");
    let mut f = read_json(&kept);
    f["request"]["size"] = serde_json::json!(1);
    std::fs::write(&forged, f.to_string()).unwrap();
    fails_with(
        &reg("verify", &base, &["--receipt", forged.to_str().unwrap()]),
        &["forged.json", "was edited"],
    );
    // A receipt whose chain head lies beyond the database's (hostile14
    // RG8: called intact): edited, or records after the head were lost.
    let mut f = read_json(&kept);
    f["head_seq"] = serde_json::json!(head.0 + 2);
    std::fs::write(&forged, f.to_string()).unwrap();
    fails_with(
        &reg("verify", &base, &["--receipt", forged.to_str().unwrap()]),
        &[
            "receipt ",
            "forged.json",
            &format!("was issued at chain head {}", head.0 + 2),
            &format!("chain ends at record {} ({})", head.0, &head.1[..12]),
            "or the receipt was edited",
        ],
    );
    // A receipt that is not there is the argument's fault, not a finding
    // about the registry (hostile9 VR1).
    let o = reg("verify", &base, &["--receipt", "nope.json"]);
    fails_with(&o, &["--receipt nope.json: no such file"]);
    assert!(!stdout(&o).contains("CHANGED"), "{}", stdout(&o));
    // The newest request deleted with its chain record.
    let c = d.path().join("c");
    copy_with_sql(
        &base,
        &c,
        "DELETE FROM request_samples WHERE request = 2; DELETE FROM requests WHERE id = 2; \
         DELETE FROM chain WHERE seq = (SELECT MAX(seq) FROM chain)",
    );
    std::fs::remove_dir_all(c.join("receipts")).unwrap();
    let o = reg("verify", &c, &[]);
    fails_with(&o, &["registry.db", "behind its anchor"]);
    assert!(
        stdout(&o).contains("CHANGED request 2: was acknowledged as chain record"),
        "{}",
        stdout(&o)
    );
    ok(&reg("verify", &base, &[]));
}

/// Hostile14 RG10: the newest request deleted with its chain record and
/// the anchor's last line was called intact, though the receipt of the
/// request added with it names the lost chain head.
#[test]
fn a_receipt_beyond_the_databases_head_names_the_lost_records() {
    let d = tempfile::tempdir().unwrap();
    // Requests 1 and 2 in one add: both receipts name the same head.
    let r = small_registry(d.path());
    let kept = d.path().join("kept.json");
    std::fs::copy(r.join("receipts/r0001.json"), &kept).unwrap();
    let head = read_json(&kept)["head_seq"].as_i64().unwrap();
    assert_eq!(
        read_json(&r.join("receipts/r0002.json"))["record"]["seq"],
        head
    );
    db(&r)
        .execute_batch(&format!(
            "DELETE FROM request_samples WHERE request = 2; DELETE FROM requests WHERE id = 2; \
             DELETE FROM chain WHERE seq = {head}"
        ))
        .unwrap();
    std::fs::remove_file(r.join("receipts/r0002.json")).unwrap();
    let mut lines = anchor_lines(&r);
    lines.pop();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(r.join("anchor.log"), text).unwrap();
    let lost = [
        format!("was issued at chain head {head}"),
        format!("the database's chain ends at record {}", head - 1),
        "records after".to_string(),
        "were deleted or the database was put back to an older copy".to_string(),
    ];
    let needles = |file: &str| -> Vec<String> {
        let mut n = vec!["receipt ".to_string(), file.to_string()];
        n.extend(lost.iter().cloned());
        n
    };
    let o = reg("verify", &r, &[]);
    let want = needles("r0001.json");
    fails_with(&o, &want.iter().map(String::as_str).collect::<Vec<_>>());
    // The requester's own copy tells it when the registry's is gone too.
    std::fs::remove_file(r.join("receipts/r0001.json")).unwrap();
    let o = reg("verify", &r, &["--receipt", kept.to_str().unwrap()]);
    let want = needles("kept.json");
    fails_with(&o, &want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn apply_after_a_rollback_keeps_the_released_versions_files() {
    let d = tempfile::tempdir().unwrap();
    let (r, backup) = small_registry_and_db_copy(d.path(), "before-apply.db");
    ok(&reg("apply", &r, APPLY_FAST));
    // The database put back, and the newer version's certificates deleted:
    // only its weights and sidecar are left, as an interrupted apply's.
    put_back_db(&r, &backup);
    for f in ["certificates/v0002.json", "certificates/v0002.md"] {
        std::fs::remove_file(r.join(f)).unwrap();
    }
    let o = reg("verify", &r, &[]);
    fails_with(&o, &["registry.db", "behind its anchor"]);
    assert!(
        stdout(&o).contains("CHANGED version 2: was committed as chain record"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("versions/v0002.safetensors: belongs to version 2"),
        "{}",
        stdout(&o)
    );
    fails_with(
        &reg("apply", &r, APPLY_FAST),
        &[
            "fails verification",
            "nothing was applied",
            "behind its anchor",
        ],
    );
    for f in ["versions/v0002.safetensors", "versions/v0002.json"] {
        assert!(r.join(f).exists(), "{f} was removed");
    }
    assert_eq!(count(&r, "versions"), 1);
    assert_eq!(pending(&r), vec![1, 2]);
}

#[test]
fn a_stop_between_a_commit_and_its_anchor_line_is_appended_not_cried_wolf() {
    let d = tempfile::tempdir().unwrap();
    let r = add_killed_before_its_anchor(d.path());
    assert_eq!(count(&r, "requests"), 3);
    let before = anchor_lines(&r).len();
    // Verify writes nothing: it says the next command appends the rest.
    verifies_noting(
        &r,
        "the next add, apply, retrain or policy appends the rest",
    );
    assert_eq!(anchor_lines(&r).len(), before);
    let r35 = request(d.path(), "r35.csv", &[25]);
    ok(&reg("add", &r, &[r35.to_str().unwrap()]));
    assert_eq!(anchor_lines(&r).len(), before + 1);
    let o = reg("verify", &r, &[]);
    ok(&o);
    assert!(!stderr(&o).contains("appends the rest"), "{}", stderr(&o));
    // A line cut short by a stop while it was written: the next line goes
    // after it, and verify tells it from an edited line.
    let log = r.join("anchor.log");
    let mut text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap().to_string();
    text.push_str(&last[..last.len() / 2]);
    std::fs::write(&log, text).unwrap();
    let r4 = request(d.path(), "r4.csv", &[30]);
    ok(&reg("add", &r, &[r4.to_str().unwrap()]));
    verifies_noting(&r, "cut short");
    // An apply stopped after placing its files, before its commit: the
    // anchor never saw version 2, so the next apply moves them aside.
    let o = reg_stopping_at("apply", &r, APPLY_FAST, "renamed")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9));
    let placed = std::fs::read(r.join("versions/v0002.safetensors")).unwrap();
    verifies_noting(&r, "the next apply or retrain moves it to set-aside/");
    let o = reg("apply", &r, &loud());
    ok(&o);
    assert!(stderr(&o).contains("Nothing was deleted"), "{}", stderr(&o));
    assert_eq!(count(&r, "versions"), 2);
    assert_eq!(set_aside(&r)["v0002.safetensors"], placed);
    verifies_noting(&r, "set-aside holds 2 file(s)");
}

/// [`APPLY_FAST`] without `-q`: the notes an apply prints.
fn loud() -> Vec<&'static str> {
    APPLY_FAST.iter().copied().filter(|a| *a != "-q").collect()
}

/// The files under `set-aside/` of registry `r`, by name, with their bytes.
fn set_aside(r: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut m = std::collections::BTreeMap::new();
    for d in std::fs::read_dir(r.join("set-aside")).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            assert!(!m.contains_key(&name), "{name} set aside twice");
            m.insert(name, std::fs::read(f.path()).unwrap());
        }
    }
    m
}

/// Issue 37 D3 (the hostile tester's "DATA LOSS"): the whole folder put
/// back from a backup taken before version 2 was released (database,
/// anchor.log, receipts, certificates), with no anchor copy or with the
/// copy put back too. The anchor then says version 2 never committed,
/// which is wrong: apply goes on, but moves the released version's files
/// to set-aside/ byte for byte instead of deleting them, and says so (even
/// with -q, and in --json's result). An emptied copy is a lost one
/// (hostile6 AN6): apply refuses.
#[test]
fn a_rollback_with_its_anchor_sets_the_released_version_aside_and_deletes_nothing() {
    let m = tempfile::tempdir().unwrap();
    let model = mnist_model(m.path(), "400", "1");
    for with_copy in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let copy = d.path().join("elsewhere/reg-anchor.log");
        let (r, backup) = added_and_backed_up(d.path(), &model, with_copy.then_some(&*copy));
        let copy_then = std::fs::read(&copy).ok();
        ok(&reg("apply", &r, APPLY_FAST));
        let released: Vec<Vec<u8>> = ["versions/v0002.safetensors", "versions/v0002.json"]
            .iter()
            .map(|f| std::fs::read(r.join(f)).unwrap())
            .collect();
        roll_back(&r, &backup, &["certificates", "receipts"]);
        if with_copy {
            std::fs::write(&copy, b"").unwrap();
            fails_with(
                &reg("apply", &r, APPLY_FAST),
                &["fails verification", "reg-anchor.log", "is empty"],
            );
            std::fs::write(&copy, copy_then.as_ref().unwrap()).unwrap();
        }
        // A warning about the user's files: said even with -q, and part
        // of the result --json prints (issue 37).
        let quiet_json: Vec<&str> = APPLY_FAST.iter().copied().chain(["--json"]).collect();
        let args = if with_copy { quiet_json } else { loud() };
        let o = reg("apply", &r, &args);
        ok(&o);
        assert!(
            stderr(&o).contains("warning: moved versions/v0002")
                && stderr(&o).contains("Nothing was deleted"),
            "copy {with_copy}: {}",
            stderr(&o)
        );
        if with_copy {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let note = v["set_aside"].as_str().unwrap_or_default();
            assert!(note.contains("set-aside"), "{v}");
        }
        let kept = set_aside(&r);
        assert_eq!(kept.len(), 2, "copy {with_copy}: {:?}", kept.keys());
        assert_eq!(kept["v0002.safetensors"], released[0], "copy {with_copy}");
        assert_eq!(kept["v0002.json"], released[1], "copy {with_copy}");
        // The folder is no tampering: verify only notes it.
        let o = reg("verify", &r, &[]);
        ok(&o);
        assert!(
            stderr(&o).contains("set-aside holds 2 file(s)"),
            "copy {with_copy}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_registry_made_before_anchors_verifies_with_a_warning_and_its_next_commit_starts_one() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let r = d.path().join("reg");
    create(&r, &model, &[]);
    // As amun made it before anchors: schema 1, no anchor record or file.
    db(&r)
        .execute_batch(
            "DELETE FROM chain WHERE kind = 'anchor'; DROP TABLE anchors; DROP TABLE graphs; \
             UPDATE schema_version SET version = 1",
        )
        .unwrap();
    std::fs::remove_file(r.join("anchor.log")).unwrap();
    // (Its certificate then named the chain's head without the anchor.)
    for x in ["json", "md"] {
        std::fs::remove_file(r.join(format!("certificates/v0001.{x}"))).unwrap();
    }
    ok(&reg("certificate", &r, &[]));
    let o = reg("verify", &r, &[]);
    ok(&o);
    assert!(
        stderr(&o).contains("warning:") && stderr(&o).contains("cannot be detected"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("NOT anchored"), "{}", stdout(&o));
    // Without an anchor, a version's files the database lacks may be a
    // released version: apply keeps them and says why.
    let v2 = r.join("versions/v0002.safetensors");
    std::fs::write(&v2, b"weights of a released version").unwrap();
    fails_with(
        &reg("apply", &r, APPLY_FAST),
        &[
            "v0002.safetensors",
            "no anchor proves",
            "move its files away",
        ],
    );
    assert!(v2.exists());
    std::fs::remove_file(&v2).unwrap();
    let r1 = request(d.path(), "r1.csv", &[1, 2, 3]);
    ok(&reg("add", &r, &[r1.to_str().unwrap()]));
    let v: i64 = db(&r)
        .query_row("SELECT version FROM schema_version", [], |x| x.get(0))
        .unwrap();
    assert_eq!(v, 3);
    assert_eq!(count(&r, "anchors"), 1);
    let o = reg("verify", &r, &[]);
    ok(&o);
    assert!(stdout(&o).contains("anchored up to"), "{}", stdout(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    // A copy named later holds the whole anchor at once.
    let copy = d.path().join("copy.log");
    ok(&reg("anchor", &r, &["--copy", copy.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap().lines().count(),
        1,
        "one line with every record"
    );
    let head: i64 = db(&r)
        .query_row("SELECT MAX(seq) FROM chain", [], |x| x.get(0))
        .unwrap();
    assert_eq!(anchor_lines(&r).last().unwrap()["seq"], head);
    // Named again (issue 37 N3: "another registry's anchor"): it is this
    // registry's own copy.
    fails_with(
        &reg("anchor", &r, &["--copy", copy.to_str().unwrap()]),
        &["--copy: ", "copy.log", "already this registry's copy"],
    );
    // From now on the anchor is part of the registry: removing it is named.
    std::fs::remove_file(r.join("anchor.log")).unwrap();
    fails_with(&reg("verify", &r, &[]), &["anchor.log", "is missing"]);
}

/// The whole folder put back from an older backup (database, anchor.log,
/// receipts, certificates) while the anchor's copy is unreachable (issue
/// 37 D3): the copy is the only evidence that version 2 was released, so
/// nothing may remove its files, and no command starts a new copy from
/// the rolled-back database.
#[test]
fn with_the_anchors_copy_unreadable_a_rollback_keeps_the_released_version() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let copy = d.path().join("elsewhere/reg-anchor.log");
    let (r, backup) = added_and_backed_up(d.path(), &model, Some(&copy));
    ok(&reg("apply", &r, APPLY_FAST));
    roll_back(&r, &backup, &["certificates"]);
    let away = d.path().join("away.log");
    std::fs::rename(&copy, &away).unwrap();
    let o = reg("verify", &r, &[]);
    fails_with(&o, &["reg-anchor.log", "is missing", "not verified"]);
    assert!(
        stderr(&o).contains("so it is kept")
            && !stderr(&o).contains("the next apply or retrain moves it"),
        "{}",
        stderr(&o)
    );
    // An add is refused (hostile7 AN6c: it used to be taken, numbering a
    // request as one a rollback lost), and writes no new copy (it would
    // start at this database and later hide the rollback).
    let r2 = request(d.path(), "r2.csv", &[10, 11]);
    let o = reg("add", &r, &[r2.to_str().unwrap()]);
    fails_with(&o, &["cannot add requests", "reg-anchor.log", "is missing"]);
    assert!(!copy.exists(), "a new anchor copy was started");
    fails_with(
        &reg("apply", &r, APPLY_FAST),
        &["fails verification", "reg-anchor.log", "is missing"],
    );
    for f in ["versions/v0002.safetensors", "versions/v0002.json"] {
        assert!(r.join(f).exists(), "{f} was removed");
    }
    // The copy back: the rollback is named.
    std::fs::rename(&away, &copy).unwrap();
    fails_with(&reg("verify", &r, &[]), &["reg-anchor.log"]);
}
