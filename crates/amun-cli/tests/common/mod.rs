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
    Args::train_mnist(train_limit, "200")
        .quick(epochs)
        .with("--out", out)
        .and(&["-q"])
        .and(extra)
        .run()
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
    unlearn_args(ck, forget, method, out, extra).run()
}

/// [`unlearn`]'s arguments, for callers that run the binary their own way.
pub fn unlearn_args(ck: &str, forget: &str, method: &str, out: &str, extra: &[&str]) -> Args {
    Args::unlearn(ck, forget, method)
        .with("--out", out)
        .and(extra)
}

/// A JSON file, parsed.
pub fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `json` without the top-level `keys`, written to `to`: a file as an
/// older amun wrote it.
pub fn without_keys(json: impl AsRef<Path>, keys: &[&str], to: impl AsRef<Path>) {
    let mut v = read_json(json.as_ref());
    for k in keys {
        v.as_object_mut().unwrap().remove(*k);
    }
    std::fs::write(to, serde_json::to_string_pretty(&v).unwrap()).unwrap();
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
    let a = Args::split_mnist(train_limit, count)
        .with("--out", out)
        .and(extra);
    ok(&a.run());
}

pub mod registry;

/// A one-seed experiment on the folder `data` (one epoch, FT, 10% forgotten
/// with D_R, 2 references), with `train_extra` and `forget_extra` lines
/// added to `[train]` and `[forget]`.
pub fn folder_config(data: &Path, train_extra: &str, forget_extra: &str) -> String {
    format!(
        "name = \"folder\"\nmodel = \"small-cnn\"\nseeds = [0]\ndevice = \"cpu\"\n\
         [data]\ndataset = \"{}\"\n\
         [train]\nepochs = 1\nbatch_size = 32\n{train_extra}\
         [forget]\nfractions = [0.1]\n{forget_extra}with_retain = [true]\n\
         [rmia]\nreference_models = 2\n\
         [methods.ft]\nfinetune.epochs = 1\n",
        data.display()
    )
}

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

/// An `amun` command line built a few words at a time: the argument lists
/// several tests share are named once here, and each test adds its own
/// words in the order it always gave them.
#[derive(Debug, Clone, Default)]
pub struct Args(Vec<String>);

impl Args {
    /// `words`, as given.
    pub fn of(words: &[&str]) -> Args {
        Args(words.iter().map(|w| w.to_string()).collect())
    }

    /// `words` appended.
    pub fn and(mut self, words: &[&str]) -> Args {
        self.0.extend(words.iter().map(|w| w.to_string()));
        self
    }

    /// `flag value` appended.
    pub fn with(self, flag: &str, value: &str) -> Args {
        self.and(&[flag, value])
    }

    /// The words, as [`amun`] takes them.
    pub fn words(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }

    /// Runs `amun` with them.
    pub fn run(&self) -> Output {
        amun(&self.words())
    }

    /// The binary with them, to be spawned.
    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.args(&self.0);
        c
    }

    /// `--dataset mnist --train-limit N` (MNIST, fetched first).
    pub fn mnist(self, train_limit: &str) -> Args {
        ensure("mnist");
        self.with("--dataset", "mnist")
            .with("--train-limit", train_limit)
    }

    /// `amun train` on MNIST[train:train_limit][test:test_limit].
    pub fn train_mnist(train_limit: &str, test_limit: &str) -> Args {
        Args::of(&["train"])
            .mnist(train_limit)
            .with("--test-limit", test_limit)
    }

    /// The tests' quick recipe on the CPU: `epochs` epochs of batches of
    /// 32 at lr 0.02.
    pub fn quick(self, epochs: &str) -> Args {
        self.with("--epochs", epochs)
            .with("--batch-size", "32")
            .with("--lr", "0.02")
            .with("--device", "cpu")
    }

    /// `amun rmia train-refs` of two reference models on
    /// MNIST[train:300][test:100], trained `--like` a model when given.
    pub fn train_refs_mnist(like: Option<&str>) -> Args {
        let a = Args::of(&["rmia", "train-refs"]);
        let a = match like {
            Some(m) => a.with("--like", m),
            None => a,
        };
        a.mnist("300")
            .with("--test-limit", "100")
            .with("--count", "2")
    }

    /// [`Args::train_refs_mnist`] `--like` the model `like`, on the CPU,
    /// into `out`, quietly.
    pub fn refs_like(like: &str, out: &str) -> Args {
        Args::train_refs_mnist(Some(like))
            .with("--device", "cpu")
            .with("--out", out)
            .and(&["-q"])
    }

    /// `amun split` of `count` samples of MNIST[train:train_limit].
    pub fn split_mnist(train_limit: &str, count: &str) -> Args {
        Args::of(&["split"])
            .mnist(train_limit)
            .with("--forget", count)
    }

    /// `amun unlearn --checkpoint CK --forget F --method M`.
    pub fn unlearn(ck: &str, forget: &str, method: &str) -> Args {
        Args::of(&["unlearn"])
            .with("--checkpoint", ck)
            .with("--forget", forget)
            .with("--method", method)
    }

    /// `amun unlearn` of fine-tuning for one epoch on the CPU, into `out`.
    pub fn ft_one_epoch(ck: &str, forget: &str, out: &str) -> Args {
        Args::unlearn(ck, forget, "ft")
            .with("--epochs", "1")
            .with("--device", "cpu")
            .with("--out", out)
    }
}

/// `amun train` of 200 epochs on all of MNIST, writing `out`: a command
/// that runs for minutes, to be interrupted (its stderr piped).
pub fn long_training(out: &Path) -> std::process::Child {
    ensure("mnist");
    Args::of(&[
        "train",
        "--dataset",
        "mnist",
        "--epochs",
        "200",
        "--device",
        "cpu",
        "-q",
        "--out",
    ])
    .command()
    .arg(out)
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap()
}

/// `amun split` of `count` samples of the folder dataset `ds` into `out`.
pub fn split_forget(ds: &str, count: &str, out: &str) -> Output {
    amun(&["split", "--dataset", ds, "--forget", count, "--out", out])
}

/// `amun split --class CLASS` of `ds` into `out`.
pub fn split_class(ds: &str, class: &str, out: &str) -> Output {
    amun(&["split", "--dataset", ds, "--class", class, "--out", out])
}
