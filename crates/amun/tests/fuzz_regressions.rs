//! Every input the fuzzers (fuzz/, cargo-fuzz) found crashing, hanging or
//! allocating without bound, replayed through the code path of its target
//! (fuzz/harness.rs, shared with the targets): each must now end in a clean
//! `Ok` or an `Err` that names the file, never a panic.
//!
//! Inputs: `tests/fuzz_regressions/<target>/<file>`; the fuzz seed corpus
//! (`fuzz/corpus/<target>/`) is replayed too, as a check that the harness
//! still reads real files.
#[path = "../../../fuzz/harness.rs"]
mod harness;

// `read_mnist5k` is private; its source is compiled in here exactly as the
// `mnist_csv` fuzz target does (see fuzz/fuzz_targets/mnist_csv.rs).
#[path = "../src/data/mnist.rs"]
#[allow(dead_code)]
mod mnist_impl;

use amun::data::Split;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Same as the library's `data::split_from_bytes`.
fn split_from_bytes(
    path: &Path,
    images: Vec<u8>,
    labels: Vec<i64>,
    chw: [i64; 3],
) -> amun::Result<Split> {
    let n = labels.len() as i64;
    let per = chw.iter().product::<i64>();
    if images.len() as i64 != n * per {
        return Err(amun::Error::format(
            path,
            format!(
                "{} label(s) but {} image byte(s); expected {} per image",
                n,
                images.len(),
                per
            ),
        ));
    }
    Ok(Split {
        images: tch::Tensor::from_slice(&images).view([n, chw[0], chw[1], chw[2]]),
        labels: tch::Tensor::from_slice(&labels),
    })
}

mod error {
    pub use amun::error::{Error, Result};
    use std::path::Path;

    /// Same as the library's `error::IoContext`.
    pub trait IoContext<T> {
        fn at(self, path: impl AsRef<Path>) -> Result<T>;
    }

    impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
        fn at(self, path: impl AsRef<Path>) -> Result<T> {
            self.map_err(|err| Error::Io {
                path: path.as_ref().to_path_buf(),
                err,
            })
        }
    }
}

type Target = fn(&harness::Scratch, &[u8]) -> amun::Result<()>;

fn mnist_csv(s: &harness::Scratch, data: &[u8]) -> amun::Result<()> {
    harness::mnist_csv(s, data, |p| mnist_impl::read_mnist5k(p).map(|_| ()))
}

const TARGETS: &[(&str, Target)] = &[
    ("pt", harness::pt),
    ("safetensors_checkpoint", harness::safetensors_checkpoint),
    ("idx", harness::idx),
    ("cifar_batch", harness::cifar_batch),
    ("image_folder", harness::image_folder),
    ("mnist_csv", mnist_csv),
    ("forget_json", harness::forget_json),
    ("experiment_toml", harness::experiment_toml),
    ("adv_set", harness::adv_set),
];

/// The inputs in `dir` (`NAME.expect` files hold what the error for input
/// `NAME` must say).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "expect"))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Runs `target` on `input`; a panic fails, and so does an error that does
/// not name a file under the scratch folder (or a setting), or that does not
/// say what `input.expect` (when present) says. Returns the outcome as text.
fn replay(name: &str, target: Target, input: &Path) -> Result<String, String> {
    let data = std::fs::read(input).expect("regression input");
    let expect = std::fs::read_to_string(input.with_extension("expect"))
        .ok()
        .map(|e| e.trim().to_string());
    let s = harness::scratch();
    let out = catch_unwind(AssertUnwindSafe(|| target(&s, &data)));
    let shown = format!("{name}/{}", input.file_name().unwrap().to_string_lossy());
    if let (Some(want), Ok(r)) = (&expect, &out) {
        let got = match r {
            Ok(()) => "Ok".to_string(),
            Err(e) => e.to_string(),
        };
        if !got.contains(want.as_str()) {
            return Err(format!(
                "{shown}: expected an error saying '{want}', got: {got}"
            ));
        }
    }
    match out {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("{shown}: panicked: {msg}"))
        }
        Ok(Ok(())) => Ok(format!("{shown}: Ok")),
        Ok(Err(e)) => {
            let msg = e.to_string();
            let names_file = msg.contains(&s.dir.display().to_string());
            if names_file || matches!(e, amun::Error::Invalid { .. } | amun::Error::Setting { .. })
            {
                Ok(format!("{shown}: Err: {msg}"))
            } else {
                Err(format!("{shown}: error names no file: {msg}"))
            }
        }
    }
}

fn replay_dir(sub: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut bad = Vec::new();
    let mut n = 0;
    for (name, target) in TARGETS {
        let dir = root.join(sub).join(name);
        for f in files(&dir) {
            n += 1;
            match replay(name, *target, &f) {
                Ok(line) => eprintln!("{line}"),
                Err(line) => bad.push(line),
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    n
}

#[test]
fn fuzz_regressions_end_cleanly() {
    let n = replay_dir("tests/fuzz_regressions");
    assert!(n > 0, "no regression input under tests/fuzz_regressions");
}

#[test]
fn fuzz_seed_corpus_end_cleanly() {
    replay_dir("../../fuzz/corpus");
}
