//! hostile11's registry findings: an add's receipt and commit under
//! signals, a repeated add, a read-only registry, and what create and
//! apply say of a missing checkpoint, mismatched references or a moved
//! data folder.
use crate::common::registry::{
    Immutable, added_and_backed_up, count, folder_registry, kill, mnist_model, put_back_db, reg,
    reg_stopping_at, request, small_registry, spawn_stopped,
};
use crate::common::{fails_with, ok, read_json, stderr, stdout};
use std::path::Path;

/// hostile11 KK-RCPT: an add killed (-9) left its `--receipt` file empty;
/// the retry was refused ("exists already") and `verify --receipt` called
/// the registry CHANGED over it. The receipt is put in place only after
/// the commit, and a file that is no receipt is the argument's fault.
/// KA-TERM: a SIGTERM during the add's commit exited 143 "interrupted"
/// with the request committed and its receipt in receipts/ missing, and
/// the natural retry added the same request again without a word. The
/// commit and its receipts are whole and said to stand, and a repeat of a
/// pending request is refused. SG4: create of a missing checkpoint named
/// its sidecar. ROR2/ROR3: add and apply on a read-only registry gave
/// SQLite's "unable to open database file".
#[test]
fn an_add_stopped_or_repeated_loses_no_receipt_and_adds_nothing_twice() {
    let d = tempfile::tempdir().unwrap();
    let r = small_registry(d.path());
    let r3 = request(d.path(), "r3.csv", &[20, 21]);
    let kk = d.path().join("kk.rc");
    let o = reg_stopping_at(
        "add",
        &r,
        &[r3.to_str().unwrap(), "--receipt", kk.to_str().unwrap()],
        "anchor",
    )
    .output()
    .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9));
    assert!(
        !kk.exists(),
        "a receipt file before its request was written"
    );
    let empty = d.path().join("empty.rc");
    std::fs::write(&empty, b"").unwrap();
    let o = reg("verify", &r, &["--receipt", empty.to_str().unwrap()]);
    fails_with(
        &o,
        &["--receipt", "empty.rc", "is empty", "expected a receipt"],
    );
    assert!(!stdout(&o).contains("CHANGED"), "{}", stdout(&o));
    // The retry: request 3 was committed before the kill.
    let o = reg(
        "add",
        &r,
        &[r3.to_str().unwrap(), "--receipt", kk.to_str().unwrap()],
    );
    fails_with(
        &o,
        &[
            "already pending as request 3",
            "nothing was added",
            "registry receipt",
        ],
    );
    assert!(!kk.exists());
    assert_eq!(count(&r, "requests"), 3);
    // Another requester of the same samples gives its own reference.
    ok(&reg(
        "add",
        &r,
        &[r3.to_str().unwrap(), "--reference", "t-2"],
    ));
    assert_eq!(count(&r, "requests"), 4);

    let r5 = request(d.path(), "r5.csv", &[30, 31]);
    let ka = d.path().join("ka.rc.json");
    let mut cmd = reg_stopping_at(
        "add",
        &r,
        &[r5.to_str().unwrap(), "--receipt", ka.to_str().unwrap()],
        "pause:anchor",
    );
    let child = spawn_stopped(&mut cmd, "the add never paused");
    kill("-TERM", child.id());
    kill("-CONT", child.id());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    // Committed before the signal: whole, with both receipts.
    assert_eq!(count(&r, "requests"), 5, "{err}");
    assert!(r.join("receipts/r0005.json").is_file(), "{err}");
    assert_eq!(read_json(&ka)["request"]["id"], 5, "{err}");
    if o.status.code() == Some(143) {
        assert!(
            err.contains("before it stopped: request(s) 5 were added"),
            "{err}"
        );
    } else {
        ok(&o);
    }
    ok(&reg("verify", &r, &["--receipt", ka.to_str().unwrap()]));

    // SG4.
    let o = reg(
        "create",
        &d.path().join("regU"),
        &["--checkpoint", "nothere.safetensors"],
    );
    fails_with(&o, &["nothere.safetensors: no such file"]);
    assert!(!stderr(&o).contains("no sidecar"), "{}", stderr(&o));

    // ROR2/ROR3: as root only an immutable folder stops a write.
    let root = unsafe { libc::geteuid() } == 0;
    let guard = if root {
        let g = Immutable::set(&r);
        assert!(g.is_set(), "chattr +i is refused here");
        Some(g)
    } else {
        set_read_only(&r, true);
        None
    };
    let r6 = request(d.path(), "r6.csv", &[40]);
    for (sub, args) in [
        ("add", vec![r6.to_str().unwrap()]),
        ("apply", vec!["--no-calibrate", "--epochs", "1"]),
    ] {
        let o = reg(sub, &r, &args);
        fails_with(
            &o,
            &[
                "is read-only",
                "receipt and anchor need write access",
                "nothing was changed",
            ],
        );
        assert!(!stderr(&o).contains("unable to open"), "{}", stderr(&o));
    }
    drop(guard);
    if !root {
        set_read_only(&r, false);
    }
    assert_eq!(count(&r, "requests"), 5);
}

/// hostile11 R12/FK8c: a registry put back to an older database was
/// refused for good ("behind its anchor … nothing was changed") without a
/// word on how to go on. Verify and add name the next step.
#[test]
fn a_registry_behind_its_anchor_names_the_next_step() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let (r, backup) = added_and_backed_up(d.path(), &model, None);
    let r2 = request(d.path(), "r2.csv", &[10, 11]);
    ok(&reg("add", &r, &[r2.to_str().unwrap()]));
    put_back_db(&r, &backup.join("registry.db"));
    let o = reg("verify", &r, &[]);
    fails_with(&o, &["behind its anchor"]);
    assert!(
        stderr(&o).contains("to go on: put back the newer registry.db"),
        "{}",
        stderr(&o)
    );
    let r3 = request(d.path(), "r3.csv", &[20]);
    let o = reg("add", &r, &[r3.to_str().unwrap()]);
    fails_with(
        &o,
        &[
            "behind its anchor",
            "nothing was changed",
            "to go on:",
            "amun registry create",
        ],
    );
}

/// `chmod -R a-w` (or back) for a user whom file modes stop.
fn set_read_only(dir: &Path, on: bool) {
    let mode = if on { "a-w" } else { "u+w" };
    let done = std::process::Command::new("chmod")
        .args(["-R", mode])
        .arg(dir)
        .status()
        .unwrap();
    assert!(done.success());
}

/// hostile11 RF6: a registry whose data folder was moved verified
/// "intact", and apply failed with the loader's "unknown dataset". Verify
/// warns, apply names the recorded folder and refuses before any work.
/// RC6: create took references trained with another recipe than the model
/// without a word (audit warns of it); refused with the audit's words.
#[test]
fn a_moved_data_folder_and_unlike_references_are_named() {
    let d = tempfile::tempdir().unwrap();
    let (data, r) = folder_registry(d.path());
    ok(&reg(
        "add",
        &r,
        &[request(d.path(), "q.csv", &[1, 2]).to_str().unwrap()],
    ));
    let moved = d.path().join("digits.moved");
    std::fs::rename(&data, &moved).unwrap();
    let o = reg("verify", &r, &[]);
    ok(&o);
    assert!(
        stderr(&o).contains("warning: the registry's data folder")
            && stderr(&o).contains("put it back"),
        "{}",
        stderr(&o)
    );
    let o = reg("apply", &r, &["--no-calibrate", "--epochs", "1"]);
    fails_with(
        &o,
        &[
            "data folder",
            "digits",
            "is missing",
            "put it back",
            "nothing was changed",
        ],
    );
    std::fs::rename(&moved, &data).unwrap();

    let other = crate::hostile::other_recipe_model(d.path());
    let refs = crate::hostile::m("refs");
    let rc = d.path().join("regR");
    let o = reg(
        "create",
        &rc,
        &["--checkpoint", other.to_str().unwrap(), "--refs", &refs],
    );
    fails_with(
        &o,
        &[
            "--refs",
            "another recipe",
            "epochs 2 against 1",
            "train-refs --like",
        ],
    );
    assert!(!rc.exists());
}
