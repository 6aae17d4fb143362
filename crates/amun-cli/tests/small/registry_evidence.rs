//! `amun registry` (issue 37, hostile6): a deletion request, once
//! acknowledged, never vanishes unnoticed — a lost or emptied anchor is
//! never started again, a clone that writes the shared anchor copy is named
//! as a fork, a lost receipt is named and written again, verify writes
//! nothing and says only what the anchor files hold, a certificate without
//! its JSON is named and never replaced, and apply checks its folders first
//! and says when a version committed without its certificate.
use crate::common;
use common::registry::{
    APPLY_FAST, Immutable, add_killed_before_its_anchor, added_and_backed_up, count, create,
    ft_apply, kill, mnist_model, put_back_db, reg, reg_stopping_at, request, roll_back,
    small_registry, small_registry_and_db_copy, spawn_stopped, verifies_noting,
};
use common::{fails_with, ok, read_json, stderr, stdout};
use std::path::Path;

/// The chain's newest record in the registry's database.
fn head_seq(r: &Path) -> i64 {
    common::registry::db(r)
        .query_row("SELECT MAX(seq) FROM chain", [], |x| x.get(0))
        .unwrap()
}

/// The newest record the anchor file `f` names.
fn anchored(f: &Path) -> i64 {
    let text = std::fs::read_to_string(f).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    last["seq"].as_i64().unwrap()
}

/// A registry at `d/reg` keeping its anchor's copy at `d/copy.log`, with
/// request 1 added, and a copy of the folder from then at `d/backup`.
fn with_copy_and_backup(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let copy = d.join("copy.log");
    let (r, _) = added_and_backed_up(d, &mnist_model(d, "400", "1"), Some(&copy));
    (r, copy)
}

/// Hostile6 AN6: a rolled-back registry whose anchor copy was deleted
/// verified "intact", and `registry anchor --copy` of the same path
/// started the copy again from the rolled-back database, hiding request 2.
#[test]
fn a_lost_anchor_copy_is_named_and_never_started_again() {
    let d = tempfile::tempdir().unwrap();
    let (r, copy) = with_copy_and_backup(d.path());
    let r2 = request(d.path(), "r2.csv", &[10, 11]);
    ok(&reg("add", &r, &[r2.to_str().unwrap()]));
    // What only the anchor's copy can show: request 2 and its receipt gone.
    roll_back(&r, &d.path().join("backup"), &[]);
    std::fs::remove_file(r.join("receipts/r0002.json")).unwrap();
    std::fs::remove_file(&copy).unwrap();
    let o = reg("verify", &r, &[]);
    fails_with(
        &o,
        &[
            "the anchor's copy",
            "copy.log",
            "is missing",
            "not verified",
        ],
    );
    assert!(!stdout(&o).contains("intact"), "{}", stdout(&o));
    let o = reg("anchor", &r, &["--copy", copy.to_str().unwrap()]);
    fails_with(
        &o,
        &[
            "--copy",
            "copy.log",
            "was this registry's anchor copy",
            "Put the copy back",
        ],
    );
    assert!(!copy.exists(), "the lost copy was started again");
    // Emptied instead of deleted: the same.
    std::fs::write(&copy, b"").unwrap();
    fails_with(&reg("verify", &r, &[]), &["copy.log", "is empty"]);
    // hostile7 AN6c: add committed (a warning) and numbered a new request
    // as the acknowledged one the rollback lost; now it refuses.
    let before = count(&r, "requests");
    let o = reg("add", &r, &[r2.to_str().unwrap()]);
    fails_with(
        &o,
        &["cannot add requests", "copy.log", "holds no anchor line"],
    );
    assert_eq!(count(&r, "requests"), before);
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), 0);
}

/// Hostile6 AE4: anchor.log emptied (logrotate's copytruncate) after a
/// rollback verified "intact … NOT anchored", and add started the anchor
/// again from the rolled-back database and handed out request 2 anew.
#[test]
fn an_emptied_anchor_is_refused_like_a_deleted_one() {
    let d = tempfile::tempdir().unwrap();
    let (r, backup) = small_registry_and_db_copy(d.path(), "backup.db");
    let r3 = request(d.path(), "r3.csv", &[20, 21]);
    ok(&reg("add", &r, &[r3.to_str().unwrap()]));
    put_back_db(&r, &backup);
    std::fs::write(r.join("anchor.log"), b"").unwrap();
    std::fs::remove_file(r.join("receipts/r0003.json")).unwrap();
    let o = reg("verify", &r, &[]);
    fails_with(&o, &["anchor.log", "is empty", "started its anchor"]);
    let r4 = request(d.path(), "r4.csv", &[30]);
    fails_with(
        &reg("add", &r, &[r4.to_str().unwrap()]),
        &[
            "cannot add requests",
            "anchor.log",
            "is empty",
            "nothing was changed",
        ],
    );
    fails_with(
        &reg("policy", &r, &["--retrain-after-requests", "5"]),
        &["cannot set the policy", "is empty"],
    );
    assert_eq!(count(&r, "requests"), 2);
    assert_eq!(std::fs::metadata(r.join("anchor.log")).unwrap().len(), 0);
}

/// Hostile6 BK1: `cp -r reg reg-backup`, then an add on the clone appended
/// to the anchor copy both share, and the real registry's verify accused
/// itself of a rollback. A clone is refused; a fork made anyway (both
/// wrote after the split: by an amun before this, or while each folder was
/// away in turn) is named as one, and a new copy lets each go on.
#[test]
fn a_clone_that_writes_the_shared_anchor_copy_is_named_a_fork_not_a_rollback() {
    let d = tempfile::tempdir().unwrap();
    let (r, copy) = with_copy_and_backup(d.path());
    let clone = d.path().join("backup");
    let r2 = request(d.path(), "r2.csv", &[10, 11]);
    let r3 = request(d.path(), "r3.csv", &[20]);
    let o = reg("add", &clone, &[r2.to_str().unwrap()]);
    fails_with(
        &o,
        &[
            "cannot add requests",
            "another copy of this registry",
            "copy.log",
            "--copy NEW_FILE",
        ],
    );
    assert_eq!(count(&clone, "requests"), 1);
    verifies_noting(&clone, "another copy of this registry");
    // Both write after the split: the real one a request of its own (its
    // line then taken out of the copy again), the clone another while the
    // real folder is away.
    let split = std::fs::read(&copy).unwrap();
    ok(&reg("add", &r, &[r3.to_str().unwrap()]));
    std::fs::write(&copy, split).unwrap();
    let away = d.path().join("away");
    std::fs::rename(&r, &away).unwrap();
    ok(&reg("add", &clone, &[r2.to_str().unwrap()]));
    std::fs::rename(&away, &r).unwrap();
    let o = reg("verify", &r, &[]);
    let clone_at = std::fs::canonicalize(&clone).unwrap();
    fails_with(
        &o,
        &[
            "copy.log",
            "another copy of this registry",
            clone_at.to_str().unwrap(),
            "a fork",
        ],
    );
    assert!(
        !stdout(&o).contains("put back to an older copy"),
        "{}",
        stdout(&o)
    );
    fails_with(
        &reg("add", &r, &[r2.to_str().unwrap()]),
        &["cannot add requests", "another copy of this registry"],
    );
    // Its own copy: the real registry verifies and takes requests again.
    let own = d.path().join("own.log");
    ok(&reg("anchor", &r, &["--copy", own.to_str().unwrap()]));
    ok(&reg("verify", &r, &[]));
    ok(&reg("add", &r, &[r2.to_str().unwrap()]));
    assert_eq!(anchored(&own), head_seq(&r));
    ok(&reg("verify", &clone, &[]));
    assert!(copy.exists());
}

/// Hostile7 FK8: `cp -r reg reg_bak`, then request 2 added to reg: the
/// stale backup, which never wrote since, was called "a fork", and
/// following the advice (`registry anchor --copy` on it) made it verify
/// "intact" and hand out request 2 again — the acknowledged one lost. A
/// backup whose chain the anchor's copy only runs ahead of is behind, as
/// when the real folder is gone, and gets no new copy.
#[test]
fn a_stale_backup_is_behind_its_anchor_not_a_fork() {
    let d = tempfile::tempdir().unwrap();
    let (r, _copy) = with_copy_and_backup(d.path());
    let bak = d.path().join("backup");
    let r2 = request(d.path(), "r2.csv", &[10, 11]);
    ok(&reg("add", &r, &[r2.to_str().unwrap()]));
    let o = reg("verify", &bak, &[]);
    fails_with(&o, &["registry.db", "is behind its anchor"]);
    assert!(stdout(&o).contains("request 2"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("a fork"), "{}", stdout(&o));
    let real = std::fs::canonicalize(&r).unwrap();
    assert!(
        stderr(&o).contains("older copy") && stderr(&o).contains(real.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    let new = d.path().join("new.log");
    fails_with(
        &reg("anchor", &bak, &["--copy", new.to_str().unwrap()]),
        &[
            "cannot set the anchor's copy",
            "is behind its anchor",
            real.to_str().unwrap(),
        ],
    );
    assert!(!new.exists());
    let r9 = request(d.path(), "r9.csv", &[30]);
    fails_with(
        &reg("add", &bak, &[r9.to_str().unwrap()]),
        &["cannot add requests", "is behind its anchor"],
    );
    // The real folder gone: the same.
    std::fs::remove_dir_all(&r).unwrap();
    fails_with(
        &reg("add", &bak, &[r9.to_str().unwrap()]),
        &["cannot add requests", "is behind its anchor"],
    );
    assert_eq!(count(&bak, "requests"), 1);
}

/// Hostile6 KA and RO1b: an add killed between its commit and its receipt
/// left a request without a receipt that nothing named or wrote again;
/// verify appended to anchor.log (README: it writes nothing), and said
/// "anchored up to record 16" of an anchor.log that ended at 14.
#[test]
fn a_lost_receipt_is_named_and_written_again_and_verify_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let r = add_killed_before_its_anchor(d.path());
    assert!(!r.join("receipts/r0003.json").exists());
    let before = std::fs::read(r.join("anchor.log")).unwrap();
    let o = reg("verify", &r, &[]);
    ok(&o);
    for n in [
        "request(s) 3 have no receipt",
        "amun registry receipt",
        "the next add, apply, retrain or policy appends the rest",
    ] {
        assert!(stderr(&o).contains(n), "{n}: {}", stderr(&o));
    }
    let anchored_at = anchored(&r.join("anchor.log"));
    assert!(
        stdout(&o).contains(&format!("anchored up to record {anchored_at}")),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        std::fs::read(r.join("anchor.log")).unwrap(),
        before,
        "verify wrote"
    );
    let o = reg("receipt", &r, &["--request", "3"]);
    ok(&o);
    assert!(stdout(&o).contains("written again"), "{}", stdout(&o));
    let rc = read_json(&r.join("receipts/r0003.json"));
    assert_eq!(rc["request"]["id"], 3);
    assert!(rc["reissued"].is_string(), "{rc}");
    let o = reg("verify", &r, &[]);
    ok(&o);
    assert!(!stderr(&o).contains("no receipt"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("3 receipt(s) checked"),
        "{}",
        stdout(&o)
    );
    let o = reg("receipt", &r, &["--request", "3"]);
    ok(&o);
    assert!(stdout(&o).contains("never replaced"), "{}", stdout(&o));
    fails_with(
        &reg("receipt", &r, &["--request", "9"]),
        &["9", "no such request"],
    );
    // The next commit appends what the anchor lacks.
    let r4 = request(d.path(), "r4.csv", &[30]);
    ok(&reg("add", &r, &[r4.to_str().unwrap()]));
    assert_eq!(anchored(&r.join("anchor.log")), head_seq(&r));
    // An anchor.log that cannot be written: the copy goes on, and verify
    // says how far each file reaches.
    let copy = d.path().join("copy.log");
    ok(&reg("anchor", &r, &["--copy", copy.to_str().unwrap()]));
    let guard = Immutable::set(&r.join("anchor.log"));
    if guard.is_set() {
        let r5 = request(d.path(), "r5.csv", &[40]);
        let o = reg("add", &r, &[r5.to_str().unwrap()]);
        ok(&o);
        assert!(
            stderr(&o).contains("was not written")
                && !stderr(&o).contains("`amun registry verify` appends"),
            "{}",
            stderr(&o)
        );
        let o = reg("verify", &r, &[]);
        ok(&o);
        let local = anchored(&r.join("anchor.log"));
        assert!(local < head_seq(&r));
        assert!(
            stdout(&o).contains(&format!("anchor.log only up to {local}")),
            "{}",
            stdout(&o)
        );
        assert!(!stderr(&o).contains("verify appends"), "{}", stderr(&o));
    }
}

/// Hostile6 CE6: certificates/v0002.md edited and v0002.json deleted
/// verified "intact" (a note: no certificate), and `registry certificate`
/// then replaced the edited file unseen. Hostile7 SG1: the apply deleted a
/// user's file it found in staging/; it removes only what amun stages.
#[test]
fn a_markdown_certificate_without_its_json_is_named_and_never_replaced() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    let notes = r.join("staging/notes.txt");
    let leftover = r.join("staging/v0002.json");
    std::fs::create_dir_all(r.join("staging")).unwrap();
    std::fs::write(&notes, b"mine").unwrap();
    std::fs::write(&leftover, b"{}").unwrap();
    let o = reg("apply", &r, APPLY_FAST);
    ok(&o);
    assert!(
        stderr(&o).contains("notes.txt") && stderr(&o).contains("not a file amun stages"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&notes).unwrap(), b"mine");
    assert!(!leftover.exists());
    std::fs::remove_file(&notes).unwrap();
    let md = r.join("certificates/v0002.md");
    let forged = std::fs::read_to_string(&md)
        .unwrap()
        .replace("unlearned", "retrained exactly");
    std::fs::write(&md, &forged).unwrap();
    std::fs::remove_file(r.join("certificates/v0002.json")).unwrap();
    fails_with(
        &reg("verify", &r, &[]),
        &["v0002.md", "has no JSON certificate"],
    );
    fails_with(
        &reg("certificate", &r, &["--version", "2"]),
        &["v0002.md", "without its JSON", "not replaced"],
    );
    assert_eq!(std::fs::read_to_string(&md).unwrap(), forged);
    std::fs::rename(&md, d.path().join("forged.md")).unwrap();
    // Hostile7 CE7: no cause verify cannot know, and the certificate
    // written again is marked so, as a receipt written again is.
    let o = reg("verify", &r, &[]);
    ok(&o);
    let err = stderr(&o);
    assert!(err.contains("version 2 has no certificate file"), "{err}");
    assert!(err.contains("or it was removed"), "{err}");
    assert!(
        !err.contains("its process stopped after the commit"),
        "{err}"
    );
    ok(&reg("certificate", &r, &["--version", "2"]));
    let json = read_json(&r.join("certificates/v0002.json"));
    assert!(json["reissued"].is_string(), "{json}");
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("Re-issued"), "{text}");
    ok(&reg("verify", &r, &[]));
}

/// Hostile6 RO5 and RO6: an apply with an unwritable versions/ ran the
/// whole unlearning, then failed with a raw error; one whose certificate
/// could not be written after its commit exited 1 with only the raw error,
/// no word that the version stands.
#[test]
fn apply_checks_its_folders_first_and_says_a_committed_version_stands() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    {
        let guard = Immutable::set(&r.join("versions"));
        if guard.is_set() {
            let o = reg("apply", &r, APPLY_FAST);
            fails_with(&o, &["versions", "cannot be written", "nothing was done"]);
            assert!(
                !r.join("staging/v0002.safetensors").exists(),
                "the apply worked before it failed"
            );
            assert_eq!(count(&r, "versions"), 1);
        }
    }
    let child = spawn_stopped(
        &mut reg_stopping_at("apply", &r, APPLY_FAST, "pause:committed"),
        "the apply never reached its commit",
    );
    let guard = Immutable::set(&r.join("certificates"));
    let cont = std::process::Command::new("kill")
        .args(["-CONT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(cont.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(count(&r, "versions"), 2);
    if guard.is_set() {
        fails_with(
            &o,
            &[
                "version 2 WAS committed",
                "not written",
                "registry certificate",
                "--version 2",
            ],
        );
        drop(guard);
        ok(&reg("certificate", &r, &["--version", "2"]));
    } else {
        ok(&o);
    }
    ok(&reg("verify", &r, &[]));
}

/// Hostile6 MC2: `--calibrate-max-cost` capped each request of an apply
/// against a retrain without that request alone, so a batch of three spent
/// 0.37 of the retrain it replaces under a cap of 0.1. The cap is now the
/// batch's, shared by its requests, and help says so.
#[test]
fn apply_s_cost_cap_holds_for_the_whole_batch_and_help_says_so() {
    let o = common::amun(&["registry", "apply", "--help"]);
    ok(&o);
    let help = stdout(&o).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("the whole apply's calibration") && help.contains("the batch replaces"),
        "{help}"
    );
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    let o = ft_apply(&r, &["--calibrate-max-cost", "0.1", "--device", "cpu"]);
    // 2 requests, 5 of the 400 samples forgotten after them: each walk may
    // cost 0.1 × 395 / (2 × 400) of its own retrain.
    assert!(
        stderr(&o).contains("shared by 2 request(s): each request's walk may cost 0.0494"),
        "{}",
        stderr(&o)
    );
}

/// Hostile7 AE6: an anchor.log of one garbage line was called "empty", a
/// folder in its place gave the OS's raw "Is a directory", and a symbolic
/// link to /dev/null was "empty" too. The line is named by its number, and
/// what is no regular file is said to be none.
#[test]
fn an_anchor_that_is_garbage_a_folder_or_a_device_is_named_as_such() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    let anchor = r.join("anchor.log");
    let r3 = request(d.path(), "r3.csv", &[20]);
    std::fs::write(&anchor, b"garbage\n").unwrap();
    let o = reg("verify", &r, &[]);
    fails_with(&o, &["anchor.log", "its line 1 is none"]);
    assert!(!stderr(&o).contains("is empty"), "{}", stderr(&o));
    fails_with(
        &reg("add", &r, &[r3.to_str().unwrap()]),
        &["cannot add requests", "anchor.log", "its line 1 is none"],
    );
    std::fs::remove_file(&anchor).unwrap();
    std::fs::create_dir(&anchor).unwrap();
    let adding = [r3.to_str().unwrap()];
    for (sub, args) in [("verify", &[][..]), ("add", &adding[..])] {
        let o = reg(sub, &r, args);
        fails_with(&o, &["anchor.log", "is not a regular file but a folder"]);
        assert!(!stderr(&o).contains("os error"), "{}", stderr(&o));
    }
    std::fs::remove_dir(&anchor).unwrap();
    std::os::unix::fs::symlink("/dev/null", &anchor).unwrap();
    fails_with(
        &reg("verify", &r, &[]),
        &["anchor.log", "not a regular file but a device", "/dev/null"],
    );
    assert_eq!(count(&r, "requests"), 2);
}

/// Hostile7 RO8: an add whose receipt could not be written warned, but its
/// success line still named the receipt file as if written.
#[test]
fn an_add_whose_receipt_was_not_written_does_not_name_it() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    let guard = Immutable::set(&r.join("receipts"));
    if !guard.is_set() {
        return;
    }
    let r3 = request(d.path(), "r3.csv", &[20]);
    let o = reg("add", &r, &[r3.to_str().unwrap()]);
    ok(&o);
    assert!(stderr(&o).contains("was not written"), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("request 3:"), "{out}");
    assert!(!out.contains("r0003.json"), "{out}");
    assert!(out.contains("receipt was NOT written"), "{out}");
}

/// Hostile7 C5: of two `registry create` of one folder at once, the one
/// that came second said only the OS's raw "Directory not empty (os error
/// 39)". It says another command filled the folder, and leaves it be.
#[test]
fn a_create_that_another_create_beat_says_so() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let r = d.path().join("reg");
    let abs = std::path::absolute(&r).unwrap();
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["registry", "create", "--registry", r.to_str().unwrap()])
        .args(["--checkpoint", model.to_str().unwrap()])
        .env(
            "AMUN_REGISTRY_STOP_AT",
            format!("pause:create-place@{}", abs.display()),
        );
    let child = spawn_stopped(&mut cmd, "the create never got ready");
    create(&r, &model, &[]);
    kill("-CONT", child.id());
    let o = child.wait_with_output().unwrap();
    fails_with(
        &o,
        &[
            "reg",
            "filled by another command",
            "nothing was created here",
        ],
    );
    assert!(!stderr(&o).contains("os error"), "{}", stderr(&o));
    ok(&reg("verify", &r, &[]));
    let left: Vec<String> = common::files_in(d.path())
        .into_iter()
        .filter(|f| f.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
