//! Shared by the binary's integration tests: running `amun`, asserting one
//! clear error line, listing folders, fetching registry data once.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

static FETCH: Mutex<()> = Mutex::new(());

/// The registry dataset `name` in the cache, fetched once per test binary.
pub fn ensure(name: &str) {
    let _g = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let reg = amun::data::Registry::from_name(name).unwrap();
    amun::data::fetch(reg, &amun::data::default_data_dir()).unwrap();
}

/// The binary under test: this build's, or `AMUN_TEST_BIN` (to show that a
/// regression test fails on an older build).
pub fn bin() -> PathBuf {
    std::env::var_os("AMUN_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_amun")))
}

pub fn amun(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("running amun")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Succeeds, or panics with its stderr.
pub fn ok(o: &Output) {
    assert!(o.status.success(), "expected success:\n{}", stderr(o));
}

/// Fails (exit code 1, never a panic's 101) with exactly one `error:` line
/// that contains every needle, and no backtrace.
pub fn fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success:\n{err}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit code of a clean error:\n{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("Exception raised") && !err.contains("frame #"),
        "a panic or backtrace reached the user:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    for n in needles {
        assert!(lines[0].contains(n), "'{n}' not in: {}", lines[0]);
    }
}

/// File names in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A path inside `dir`, as a string.
pub fn path_in(dir: &Path, f: &str) -> String {
    dir.join(f).to_string_lossy().into_owned()
}

/// `amun train` on an MNIST slice, quickly (CPU, no augmentation).
pub fn train_mnist(out: &str, train_limit: &str, epochs: &str, extra: &[&str]) -> Output {
    ensure("mnist");
    let mut args = vec![
        "train",
        "--dataset",
        "mnist",
        "--train-limit",
        train_limit,
        "--test-limit",
        "200",
        "--epochs",
        epochs,
        "--batch-size",
        "32",
        "--lr",
        "0.02",
        "--device",
        "cpu",
        "--out",
        out,
        "-q",
    ];
    args.extend_from_slice(extra);
    amun(&args)
}

/// `train_mnist(out, train_limit, epochs, &[])`, which must succeed, trained
/// once per test binary: later calls copy the first one's weights and
/// sidecar to `out`. Training is deterministic (same seed, same bits), so
/// the copy is what a second training would write.
pub fn mnist_trained_once(out: &Path, train_limit: &str, epochs: &str) {
    type Cache = BTreeMap<String, Arc<OnceLock<PathBuf>>>;
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static CACHE: Mutex<Cache> = Mutex::new(BTreeMap::new());
    let key = format!("{train_limit}-{epochs}");
    let slot = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_default()
        .clone();
    // Other tests wait here while the first one trains this model.
    let model = slot.get_or_init(|| {
        let dir = DIR.get_or_init(|| tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap());
        let m = dir.path().join(format!("mnist-{key}.safetensors"));
        ok(&train_mnist(m.to_str().unwrap(), train_limit, epochs, &[]));
        m
    });
    std::fs::copy(model, out).unwrap();
    std::fs::copy(model.with_extension("json"), out.with_extension("json")).unwrap();
}

/// `amun unlearn --checkpoint CK --forget F --method M --out OUT EXTRA…`.
pub fn unlearn(ck: &str, forget: &str, method: &str, out: &str, extra: &[&str]) -> Output {
    amun(&unlearn_args(ck, forget, method, out, extra))
}

/// [`unlearn`]'s arguments, for callers that run the binary their own way.
pub fn unlearn_args<'a>(
    ck: &'a str,
    forget: &'a str,
    method: &'a str,
    out: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "unlearn",
        "--checkpoint",
        ck,
        "--forget",
        forget,
        "--method",
        method,
        "--out",
        out,
    ];
    a.extend_from_slice(extra);
    a
}

/// A JSON file, parsed.
pub fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The indices of a forget-set file.
pub fn forget_indices(p: &Path) -> Vec<i64> {
    read_json(p)["indices"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no indices", p.display()))
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect()
}

/// `amun split` of `count` samples of an MNIST slice of `train_limit`
/// images (`--seed` 1 unless `extra` says otherwise), into `out`.
pub fn split_mnist(train_limit: &str, count: &str, out: &str, extra: &[&str]) {
    ensure("mnist");
    let mut args = vec![
        "split",
        "--dataset",
        "mnist",
        "--train-limit",
        train_limit,
        "--forget",
        count,
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    ok(&amun(&args));
}

pub mod registry;

/// An image folder (`train/<class>/*.png`, `test/<class>/*.png`) of the
/// first MNIST-5k images.
pub fn png_folder(dir: &Path, train: usize, test: usize) {
    ensure("mnist");
    let data = amun::data::DataSpec::new("mnist")
        .load(&amun::data::default_data_dir())
        .unwrap();
    for (split, n, name) in [(&data.train, train, "train"), (&data.test, test, "test")] {
        let s = split.prefix(n);
        let px: Vec<u8> = Vec::<u8>::try_from(s.images.flatten(0, -1)).unwrap();
        for (i, l) in s.label_vec().iter().enumerate() {
            let cdir = dir.join(name).join(l.to_string());
            std::fs::create_dir_all(&cdir).unwrap();
            let img =
                image::GrayImage::from_raw(28, 28, px[i * 784..(i + 1) * 784].to_vec()).unwrap();
            img.save(cdir.join(format!("{i:05}.png"))).unwrap();
        }
    }
}
