//! Helpers of the registry tests: a model to start from, `amun registry`,
//! the registry's database and files.
use super::{amun, ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `amun registry SUB --registry REG ARGS…`.
pub fn reg(sub: &str, registry: &Path, args: &[&str]) -> Output {
    let mut a = vec!["registry", sub, "--registry", registry.to_str().unwrap()];
    a.extend_from_slice(args);
    amun(&a)
}

/// `amun registry create` of `model` at `registry` with `args`, which must
/// succeed.
pub fn create(registry: &Path, model: &Path, args: &[&str]) {
    let mut a = vec!["--checkpoint", model.to_str().unwrap()];
    a.extend_from_slice(args);
    ok(&reg("create", registry, &a));
}

/// A registry (`reg`, 10 test images held out) of a small CNN trained for
/// one epoch on an image folder (`digits`: 120 training, 60 test PNGs) in
/// `dir`; returns the folder and the registry.
pub fn folder_registry(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("digits");
    super::png_folder(&data, 120, 60);
    let model = dir.join("m.safetensors");
    ok(&amun(&[
        "train",
        "--dataset",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--out",
        model.to_str().unwrap(),
        "-q",
    ]));
    let r = dir.join("reg");
    // -q as every other command takes it (hostile7 R4: refused).
    let o = reg(
        "create",
        &r,
        &[
            "--checkpoint",
            model.to_str().unwrap(),
            "--holdout-test",
            "10",
            "-q",
        ],
    );
    ok(&o);
    assert!(super::stderr(&o).is_empty(), "{}", super::stderr(&o));
    (data, r)
}

/// A small CNN trained on the first `train` MNIST-5k images (test 200),
/// trained once per test binary and copied into `dir`.
pub fn mnist_model(dir: &Path, train: &str, epochs: &str) -> PathBuf {
    let out = dir.join("orig.safetensors");
    super::mnist_trained_once(&out, train, epochs);
    out
}

/// Writes a request file of `indices` (one a line) and returns its path.
pub fn request(dir: &Path, name: &str, indices: &[i64]) -> PathBuf {
    let p = dir.join(name);
    let text: String = indices.iter().map(|i| format!("{i}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

/// `amun registry verify` of `registry`, which succeeds with `note` on
/// stderr (a warning, or what the next command does).
pub fn verifies_noting(registry: &Path, note: &str) {
    let o = reg("verify", registry, &[]);
    ok(&o);
    let err = super::stderr(&o);
    assert!(err.contains(note), "{note}: {err}");
}

/// The registry's database.
pub fn db(registry: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(registry.join("registry.db")).unwrap()
}

/// `SELECT COUNT(*) FROM table`.
pub fn count(registry: &Path, table: &str) -> i64 {
    db(registry)
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Requests no version absorbed.
pub fn pending(registry: &Path) -> Vec<i64> {
    let c = db(registry);
    let mut st = c
        .prepare(
            "SELECT id FROM requests WHERE id NOT IN (SELECT request FROM absorptions) ORDER BY id",
        )
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// The requests version `v` absorbed itself, in order.
pub fn absorbed_by(registry: &Path, v: i64) -> Vec<i64> {
    let c = db(registry);
    let mut st = c
        .prepare("SELECT request FROM absorptions WHERE version = ?1 ORDER BY request")
        .unwrap();
    st.query_map([v], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// A copy of folder `from` at `to` (files and subfolders).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// A registry of a 400-image MNIST model with two pending requests.
pub fn small_registry(dir: &Path) -> PathBuf {
    let model = mnist_model(dir, "400", "1");
    let r = dir.join("reg");
    create(&r, &model, &[]);
    let r1 = request(dir, "r1.csv", &[1, 2, 3]);
    let r2 = request(dir, "r2.csv", &[10, 11]);
    ok(&reg(
        "add",
        &r,
        &[r1.to_str().unwrap(), r2.to_str().unwrap()],
    ));
    r
}

/// A registry at `d/reg` of `model` (keeping its anchor's copy at `copy`,
/// if given) with request 1 (samples 1, 2, 3) added, and a copy of the
/// folder from then at `d/backup`: returns both folders.
pub fn added_and_backed_up(d: &Path, model: &Path, copy: Option<&Path>) -> (PathBuf, PathBuf) {
    let r = d.join("reg");
    if let Some(folder) = copy.and_then(Path::parent) {
        // No copy makes its folder (hostile8 ACP5): the user does.
        std::fs::create_dir_all(folder).unwrap();
    }
    let args: Vec<&str> = copy.map_or(vec![], |c| vec!["--anchor-copy", c.to_str().unwrap()]);
    create(&r, model, &args);
    let r1 = request(d, "r1.csv", &[1, 2, 3]);
    ok(&reg("add", &r, &[r1.to_str().unwrap()]));
    let backup = d.join("backup");
    copy_dir(&r, &backup);
    (r, backup)
}

/// Registry `r` put back to its copy `backup`, as a restore from a backup
/// does: the database, anchor.log, and each of the subfolders `folders`
/// (`certificates`, `receipts`) whole.
pub fn roll_back(r: &Path, backup: &Path, folders: &[&str]) {
    put_back_db(r, &backup.join("registry.db"));
    std::fs::copy(backup.join("anchor.log"), r.join("anchor.log")).unwrap();
    for sub in folders {
        std::fs::remove_dir_all(r.join(sub)).unwrap();
        copy_dir(&backup.join(sub), &r.join(sub));
    }
}

/// `amun registry SUB --registry REG ARGS…` that stops where the
/// registry's writer reaches `point` (`anchor`: killed between a commit
/// and its anchor line; `pause:committed`: stopped after a commit), through
/// the test hook `AMUN_REGISTRY_STOP_AT`.
pub fn reg_stopping_at(sub: &str, registry: &Path, args: &[&str], point: &str) -> Command {
    let abs = std::path::absolute(registry).unwrap();
    let mut c = Command::new(super::bin());
    c.args(["registry", sub, "--registry", registry.to_str().unwrap()])
        .args(args)
        .env(
            "AMUN_REGISTRY_STOP_AT",
            format!("{point}@{}", abs.display()),
        );
    c
}

/// [`small_registry`] with request 3 (samples 20, 21) committed by an add
/// killed before it wrote its anchor line and receipt.
pub fn add_killed_before_its_anchor(dir: &Path) -> PathBuf {
    let r = small_registry(dir);
    let r3 = request(dir, "r3.csv", &[20, 21]);
    let o = reg_stopping_at("add", &r, &[r3.to_str().unwrap()], "anchor")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9));
    r
}

/// [`small_registry`] and a copy of its database at `dir/name`, to put
/// back later with [`put_back_db`]: returns both.
pub fn small_registry_and_db_copy(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let r = small_registry(dir);
    let backup = dir.join(name);
    std::fs::copy(r.join("registry.db"), &backup).unwrap();
    (r, backup)
}

/// A copy of the registry `base` at `to`, with `sql` run on its database.
pub fn copy_with_sql(base: &Path, to: &Path, sql: &str) {
    copy_dir(base, to);
    db(to).execute_batch(sql).unwrap();
}

/// `registry.db` of `registry` replaced by the file `old` (its WAL gone),
/// as `cp backup.db registry.db` does.
pub fn put_back_db(registry: &Path, old: &Path) {
    std::fs::copy(old, registry.join("registry.db")).unwrap();
    for x in ["registry.db-wal", "registry.db-shm"] {
        let _ = std::fs::remove_file(registry.join(x));
    }
}

/// The sidecar-style sha256 of sorted training indices.
pub fn indices_sha256(dataset: &str, train_size: usize, indices: &[i64]) -> String {
    let mut v = indices.to_vec();
    v.sort_unstable();
    v.dedup();
    let set = amun::data::ForgetSet::of_indices(dataset.into(), train_size, "registry", v);
    amun::model::checkpoint::ForgetSummary::of(&set).indices_sha256
}

/// The apply flags the tests use: calibrated AMUN with a short search, a
/// two-rung ladder and at most 3 epochs a rung.
pub const AMUN_CHEAP: &[&str] = &[
    "--device",
    "cpu",
    "-q",
    "--set",
    "attack.steps=10",
    "--calibrate-lrs",
    "0.01,0.1",
    "--epochs",
    "3",
];

/// An apply that is quick but does the whole flow (load and check the
/// data, fine-tune, audit, stage, place, commit, certificate): FT,
/// uncalibrated, one epoch.
pub const APPLY_FAST: &[&str] = &[
    "--device",
    "cpu",
    "-q",
    "--method",
    "ft",
    "--no-calibrate",
    "--epochs",
    "1",
];

/// `chattr -R +i` on a folder (or file) while it lives (tests run as root, whom
/// file modes do not stop; an immutable folder stops root too, as
/// read-only media do); nothing where the file system has no such flag.
pub struct Immutable(Option<PathBuf>);

impl Immutable {
    pub fn set(dir: &Path) -> Immutable {
        let done = std::process::Command::new("chattr")
            .args(["-R", "+i"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        Immutable(done.then(|| dir.to_path_buf()))
    }

    /// Whether the flag could be set (the file system has it).
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::process::Command::new("chattr")
                .args(["-R", "-i"])
                .arg(d)
                .output();
        }
    }
}

/// The calibrated one-epoch fine-tune flags many apply tests share.
pub const FT_CALIBRATED: &[&str] = &["--method", "ft", "--epochs", "1", "--calibrate-lrs", "0.01"];

/// `amun registry apply` of [`FT_CALIBRATED`] and `extra`.
pub fn ft_apply(registry: &Path, extra: &[&str]) -> Output {
    reg("apply", registry, &[FT_CALIBRATED, extra].concat())
}

/// Whether process `pid` is stopped (SIGSTOP), as /proc says.
pub fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
        .unwrap_or(false)
}

/// Waits (two minutes at most, else fails with `never`) until `child`
/// has stopped at its pause point.
pub fn wait_stopped(child: &std::process::Child, never: &str) {
    let t = std::time::Instant::now();
    while !stopped(child.id()) {
        assert!(t.elapsed().as_secs() < 120, "{never}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `cmd` spawned with its output piped, once it has stopped at its pause
/// point (see [`wait_stopped`]).
pub fn spawn_stopped(cmd: &mut Command, never: &str) -> std::process::Child {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_stopped(&child, never);
    child
}

/// Sends signal `sig` (as `kill` spells it) to `pid`.
pub fn kill(sig: &str, pid: u32) {
    let sent = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}
