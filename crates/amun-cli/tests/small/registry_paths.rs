//! Where a registry and the anchor's copy may lie, and what a failed or
//! killed `registry create` leaves: only what it made is ever removed.
//! The non-regular files are this test's own (a socket, a FIFO in its
//! temporary folder), never a system path.
use crate::common::registry::{
    count, create, folder_registry, mnist_model, reg, stopped, wait_stopped,
};
use crate::common::{self, fails_with, ok, stderr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A socket and a FIFO in `dir`: files that exist and are not regular.
fn special_files(dir: &Path) -> (std::os::unix::net::UnixListener, Vec<PathBuf>) {
    let sock = dir.join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    (listener, vec![sock, fifo])
}

fn still_special(p: &Path) {
    let t = std::fs::symlink_metadata(p)
        .unwrap_or_else(|_| panic!("{} was removed", p.display()))
        .file_type();
    assert!(t.is_socket() || t.is_fifo(), "{} was replaced", p.display());
}

/// The temporary folders of creates of `name` in `dir`.
fn leftovers(dir: &Path, name: &str) -> Vec<String> {
    common::files_in(dir)
        .into_iter()
        .filter(|f| f.starts_with(&format!(".{name}.tmp-")))
        .collect()
}

/// `registry create` of `model` at `r` with `copy`, stopped (or paused,
/// `pause:`) at its commit by `AMUN_REGISTRY_STOP_AT`.
fn create_stopped(r: &Path, model: &Path, copy: Option<&Path>, how: &str) -> Child {
    let mut c = Command::new(common::bin());
    c.args(["registry", "create", "--registry", r.to_str().unwrap()])
        .args(["--checkpoint", model.to_str().unwrap()]);
    if let Some(copy) = copy {
        c.args(["--anchor-copy", copy.to_str().unwrap()]);
    }
    let at = format!("{how}create@{}", std::path::absolute(r).unwrap().display());
    c.env("AMUN_REGISTRY_STOP_AT", at)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Hostile8 DN2 and DN1: `registry create --anchor-copy /dev/null` failed
/// after hashing with a raw error and its clean-up DELETED the device (and
/// left an empty registry folder); `registry anchor --copy /dev/null`
/// exited 0, recording a copy every later add then refused. A file that
/// exists and is not regular is now refused first and left where it is.
#[test]
fn an_anchor_copy_that_is_not_a_regular_file_is_refused_first_and_left_in_place() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let (_listener, specials) = special_files(d.path());
    let r_new = d.path().join("regF");
    for s in &specials {
        let copy = ["--anchor-copy", s.to_str().unwrap()];
        let o = reg(
            "create",
            &r_new,
            &[&["--checkpoint", model.to_str().unwrap()], &copy[..]].concat(),
        );
        // The flag, with its dashes (hostile9: ACE1 on create).
        fails_with(&o, &["--anchor-copy: ", "not a regular file"]);
        assert!(!stderr(&o).contains("hashing"), "refused after work");
        still_special(s);
        assert!(!r_new.exists(), "a failed create left its folder");
        assert!(leftovers(d.path(), "regF").is_empty());
    }
    let r = d.path().join("reg");
    create(&r, &model, &[]);
    let anchors = count(&r, "anchors");
    for s in &specials {
        let o = reg("anchor", &r, &["--copy", s.to_str().unwrap()]);
        fails_with(&o, &["--copy", "not a regular file", "nothing was changed"]);
        still_special(s);
    }
    assert_eq!(count(&r, "anchors"), anchors, "a copy was recorded");
    ok(&reg("verify", &r, &[]));
}

/// Hostile8 C6: of two concurrent creates naming the same anchor copy, the
/// loser's clean-up deleted the copy the winner had just made its own (the
/// winner then failed verify). The loser, stopped before its commit while
/// the winner makes the copy, now refuses and removes nothing of it.
#[test]
fn a_create_that_loses_its_anchor_copy_to_another_removes_only_its_own() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let copy = d.path().join("c.log");
    let loser = d.path().join("regB");
    let mut child = create_stopped(&loser, &model, Some(&copy), "pause:");
    let t = std::time::Instant::now();
    while !stopped(child.id()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the create never paused before its commit"
        );
        assert!(t.elapsed().as_secs() < 120, "the create never paused");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let winner = d.path().join("regA");
    create(&winner, &model, &["--anchor-copy", copy.to_str().unwrap()]);
    let theirs = std::fs::read(&copy).unwrap();
    let cont = Command::new("kill")
        .args(["-CONT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(cont.success());
    let o = child.wait_with_output().unwrap();
    fails_with(&o, &["anchor-copy", "made by another command"]);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        theirs,
        "the winner's copy changed"
    );
    assert!(!loser.exists() && leftovers(d.path(), "regB").is_empty());
    ok(&reg("verify", &winner, &[]));
}

/// hostile10 KILL4: a create stopped by SIGTERM (or Ctrl-C) before its
/// commit left `.reg.tmp-PID/` for the next create to remove. A signal's
/// handler removes it as it removes locks, after a commit in progress: the
/// registry is whole (and said to be) or absent, and nothing is left.
#[test]
fn a_create_ended_by_sigterm_leaves_no_temporary_folder() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let r = d.path().join("regT");
    let child = create_stopped(&r, &model, None, "pause:");
    wait_stopped(&child, "the create never paused");
    assert_eq!(leftovers(d.path(), "regT").len(), 1, "no folder to remove");
    for sig in ["-TERM", "-CONT"] {
        let sent = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(!err.contains("error:"), "{err}");
    assert!(
        leftovers(d.path(), "regT").is_empty(),
        "{:?}",
        leftovers(d.path(), "regT")
    );
    // The handler (on ctrlc's thread) and the resumed create race: either
    // the commit had not begun (nothing made, exit 143), or it was under
    // way (whole, said so, 143), or the create finished before the handler
    // ran and keeps its outcome's exit code, 0 (seen once on a loaded
    // 2-core machine: main.rs, "a done deletion" is not made a failure).
    match o.status.code() {
        Some(143) if r.exists() => {
            assert!(err.contains("regT was created and is complete"), "{err}")
        }
        Some(143) => {}
        Some(0) => assert!(r.exists(), "exit 0 without a registry: {err}"),
        other => panic!("exit {other:?}: {err}"),
    }
    if r.exists() {
        ok(&reg("verify", &r, &[]));
    }
}

/// Hostile8 KILL4: a create killed before its commit left `.reg.tmp-PID/`
/// with a copy of the model, which no later create removed. The next
/// create removes it, saying so; a folder of that name holding other
/// files is named and kept.
#[test]
fn the_next_create_removes_a_killed_create_s_temporary_folder() {
    let d = tempfile::tempdir().unwrap();
    let model = mnist_model(d.path(), "400", "1");
    let r = d.path().join("regK");
    let child = create_stopped(&r, &model, None, "");
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "the create was not stopped");
    let left = format!(".regK.tmp-{pid}");
    assert_eq!(leftovers(d.path(), "regK"), std::slice::from_ref(&left));
    // Named like one, but not amun's: a pid no process has (> pid_max).
    let foreign = d.path().join(".regK.tmp-4194399");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let o = reg("create", &r, &["--checkpoint", model.to_str().unwrap()]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("removed {}", d.path().join(&left).display())),
        "{err}"
    );
    assert!(
        err.contains(".regK.tmp-4194399") && err.contains("left as it is"),
        "{err}"
    );
    assert_eq!(leftovers(d.path(), "regK"), [".regK.tmp-4194399"]);
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "mine"
    );
    // Verify writes nothing: it names both.
    let like_ours = d.path().join(".regK.tmp-4194398");
    std::fs::create_dir_all(like_ours.join("versions")).unwrap();
    std::fs::copy(&model, like_ours.join("versions/v0001.safetensors")).unwrap();
    let o = reg("verify", &r, &[]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains(".regK.tmp-4194398") && err.contains("only what create writes"),
        "{err}"
    );
    assert!(
        err.contains(".regK.tmp-4194399") && err.contains("other files"),
        "{err}"
    );
    assert!(like_ours.exists());
}

/// Hostile8 RD5, RD6 and ACP5: a registry made inside its model's image
/// folder (and an anchor copy in a new class folder) added a class with
/// no images, so every model of the dataset was refused; a copy in a
/// folder that does not exist made that folder (a typo made folders at /).
#[test]
fn a_registry_or_its_copy_is_refused_in_the_dataset_folder_or_a_missing_folder() {
    let d = tempfile::tempdir().unwrap();
    let (data, r) = folder_registry(d.path());
    let model = d.path().join("m.safetensors");
    let inside = data.join("train/reg");
    let o = reg(
        "create",
        &inside,
        &["--checkpoint", model.to_str().unwrap()],
    );
    fails_with(&o, &["registry", "inside the dataset folder"]);
    assert!(!inside.exists());
    let copy = d.path().join("c.log");
    let args = ["--checkpoint", model.to_str().unwrap(), "--anchor-copy"];
    let in_class = data.join("train/0/c.log");
    let o = reg(
        "create",
        &d.path().join("reg2"),
        &[&args[..], &[in_class.to_str().unwrap()]].concat(),
    );
    fails_with(&o, &["anchor-copy", "inside the dataset folder"]);
    for c in [data.join("train/zzz/c.log"), in_class.clone()] {
        let o = reg("anchor", &r, &["--copy", c.to_str().unwrap()]);
        fails_with(&o, &["--copy"]);
        assert!(!c.exists() && !data.join("train/zzz").exists());
    }
    let typo = d.path().join("nonexist/dir/c.log");
    let o = reg("anchor", &r, &["--copy", typo.to_str().unwrap()]);
    fails_with(&o, &["--copy", "does not exist"]);
    assert!(!d.path().join("nonexist").exists());
    ok(&reg("anchor", &r, &["--copy", copy.to_str().unwrap()]));
    ok(&reg("verify", &r, &[]));
}
