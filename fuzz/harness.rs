//! What each fuzz target does with its input: write it where a user's file
//! would be and call the public function that reads such a file.
//!
//! Shared, through `#[path]`, by the targets in `fuzz/fuzz_targets/` and by
//! the regression test `crates/amun/tests/fuzz_regressions.rs`, so a saved
//! crash replays through exactly the code the fuzzer ran.
//!
//! Multi-file formats (checkpoint, adversarial set, IDX, CIFAR-10 folder,
//! image folder) cut the input into parts: [`parts`] reads `n - 1`
//! little-endian u16 lengths from the front; the last part is the rest.
#![allow(dead_code)]

use amun::Result;
use amun::attack::AdvSet;
use amun::data::{DataSpec, ForgetSet};
use amun::experiment::Config;
use amun::model::Arch;
use amun::model::checkpoint;
use amun::model::layout::{import, read_weights};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::Device;

/// A fresh folder per call (tmpfs `/dev/shm` when there is one), removed on
/// drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn scratch() -> Scratch {
    static INIT: Once = Once::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // One libtorch thread: the fuzzer runs on one core, and results do not
    // depend on it.
    INIT.call_once(|| tch::set_num_threads(1));
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "amun-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    Scratch { dir }
}

/// Cuts `data` into `n` parts: `n - 1` u16 LE lengths, then the parts (each
/// clamped to what is left); the last part is everything after.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let head = 2 * (n - 1);
    if data.len() < head {
        let mut v = vec![&data[..0]; n];
        v[n - 1] = data;
        return v;
    }
    let (lens, mut rest) = data.split_at(head);
    let mut out = Vec::with_capacity(n);
    for l in lens.chunks_exact(2) {
        let len = (u16::from_le_bytes([l[0], l[1]]) as usize).min(rest.len());
        let (a, b) = rest.split_at(len);
        out.push(a);
        rest = b;
    }
    out.push(rest);
    out
}

/// The inverse of [`parts`], for corpus generators.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in &parts[..parts.len() - 1] {
        out.extend((p.len() as u16).to_le_bytes());
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("scratch folder");
    }
    std::fs::write(path, bytes).expect("scratch file");
}

/// `.pt` (torch.save zip): `read_weights` (the restricted unpickler), then,
/// when that succeeds, `import` as a small CNN for 1x8x8 images, 2 classes
/// (what `amun import` does with the tensors).
///
/// An input that starts with `PK` is the file itself. Any other input is
/// parts = [data.pkl, storages 0..=7], zipped here as torch.save lays them
/// out (`archive/data.pkl`, `archive/data/<key>`, stored): the zip's CRC-32
/// would otherwise reject almost every mutation of the pickle.
pub fn pt(s: &Scratch, data: &[u8]) -> Result<()> {
    let p = s.dir.join("model.pt");
    if data.starts_with(b"PK") {
        write(&p, data);
    } else {
        write(&p, &pt_zip(&parts(data, 9)));
    }
    read_weights(&p)?;
    let classes = vec!["a".to_string(), "b".to_string()];
    import(
        &p,
        Arch::SmallCnn,
        None,
        &DataSpec::new("mnist"),
        [1, 8, 8],
        &classes,
        None,
        Device::Cpu,
    )?;
    Ok(())
}

/// A torch.save-style zip of `[data.pkl, storage 0, storage 1, …]` (empty
/// storages left out).
pub fn pt_zip(parts: &[&[u8]]) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    z.start_file("archive/data.pkl", opts).expect("zip");
    z.write_all(parts[0]).expect("zip");
    for (i, b) in parts[1..].iter().enumerate() {
        if !b.is_empty() {
            z.start_file(format!("archive/data/{i}"), opts)
                .expect("zip");
            z.write_all(b).expect("zip");
        }
    }
    z.start_file("archive/version", opts).expect("zip");
    z.write_all(b"3\n").expect("zip");
    z.finish().expect("zip").into_inner()
}

/// Placeholder in a fuzzed sidecar that stands for the sha256 of the fuzzed
/// weights, so the fuzzer gets past `verify_weights` to the model.
pub const SHA_PLACEHOLDER: &[u8] = b"@SHA@";

/// Suffix of a fuzzed JSON (a sidecar, an adversarial set's) that stands
/// for its content hash: the text before it is signed as amun signs it
/// (`fsutil::sign_json_text`), so the fuzzer gets past that check too.
pub const SIGN_SUFFIX: &[u8] = b"@SIGN@";

/// `json` signed when it ends in [`SIGN_SUFFIX`], as it is otherwise.
pub fn signed(json: &[u8]) -> Vec<u8> {
    json.strip_suffix(SIGN_SUFFIX)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|b| amun::fsutil::sign_json_text(b.trim_end()))
        .map_or_else(|| json.to_vec(), String::into_bytes)
}

/// Checkpoint (`model.safetensors` + `model.json`): parts = [weights,
/// sidecar]. `read_tensors`, `read_sidecar`, then `load`. The sidecar's
/// [`SHA_PLACEHOLDER`]s and [`SIGN_SUFFIX`] are filled in first.
pub fn safetensors_checkpoint(s: &Scratch, data: &[u8]) -> Result<()> {
    let p = parts(data, 2);
    let weights = s.dir.join("model.safetensors");
    write(&weights, p[0]);
    let sha = amun::data::sha256_file(&weights)?;
    let mut sidecar = Vec::with_capacity(p[1].len() + 64);
    let mut rest = p[1];
    while let Some(i) = rest
        .windows(SHA_PLACEHOLDER.len())
        .position(|w| w == SHA_PLACEHOLDER)
    {
        sidecar.extend_from_slice(&rest[..i]);
        sidecar.extend_from_slice(sha.as_bytes());
        rest = &rest[i + SHA_PLACEHOLDER.len()..];
    }
    sidecar.extend_from_slice(rest);
    write(&checkpoint::sidecar_path(&weights), &signed(&sidecar));
    let tensors = checkpoint::read_tensors(&weights, Device::Cpu);
    let sc = checkpoint::read_sidecar(&weights);
    let loaded = checkpoint::load(&weights, Device::Cpu);
    tensors?;
    sc?;
    loaded?;
    Ok(())
}

/// An IDX folder: flags byte (bit 0: gzip names `*.gz`), then parts =
/// [train images, train labels, test images, test labels]; read with
/// `DataSpec::load` of the folder.
pub fn idx(s: &Scratch, data: &[u8]) -> Result<()> {
    let (flags, rest) = data.split_first().unwrap_or((&0, data));
    let p = parts(rest, 4);
    let gz = if flags & 1 != 0 { ".gz" } else { "" };
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    let root = s.dir.join("idx");
    for (name, bytes) in names.iter().zip(&p) {
        write(&root.join(format!("{name}{gz}")), bytes);
    }
    DataSpec::new(root.display().to_string()).load(&s.dir)?;
    Ok(())
}

/// A CIFAR-10 binary folder: parts = [a training batch (written as
/// `data_batch_1..5.bin`), `test_batch.bin`, `batches.meta.txt` (absent when
/// empty)]; read with `DataSpec::load` of the folder.
pub fn cifar_batch(s: &Scratch, data: &[u8]) -> Result<()> {
    let p = parts(data, 3);
    let root = s.dir.join("cifar");
    for i in 1..=5 {
        write(&root.join(format!("data_batch_{i}.bin")), p[0]);
    }
    write(&root.join("test_batch.bin"), p[1]);
    if !p[2].is_empty() {
        write(&root.join("batches.meta.txt"), p[2]);
    }
    DataSpec::new(root.display().to_string()).load(&s.dir)?;
    Ok(())
}

/// An image folder: flags byte, then parts = three image files (an empty
/// third part: no third file). Flags bit 0: `train/` + `test/` layout (the
/// third image is the test split); bit 1: the second image is named `.jpg`;
/// bit 2: the third `.jpeg`. Read with `DataSpec::load` of the folder.
pub fn image_folder(s: &Scratch, data: &[u8]) -> Result<()> {
    let (flags, rest) = data.split_first().unwrap_or((&0, data));
    let p = parts(rest, 3);
    let root = s.dir.join("images");
    let ext1 = if flags & 2 != 0 { "jpg" } else { "png" };
    let ext2 = if flags & 4 != 0 { "jpeg" } else { "png" };
    let (a, b, c) = if flags & 1 != 0 {
        (
            "train/a/0.png",
            format!("train/b/1.{ext1}"),
            format!("test/a/2.{ext2}"),
        )
    } else {
        ("a/0.png", format!("b/1.{ext1}"), format!("b/2.{ext2}"))
    };
    write(&root.join(a), p[0]);
    write(&root.join(b), p[1]);
    if !p[2].is_empty() {
        write(&root.join(c), p[2]);
    }
    DataSpec::new(root.display().to_string()).load(&s.dir)?;
    Ok(())
}

/// MNIST-5k (`mnist_5k.csv.gz`). The public path, `DataSpec::load` of the
/// registry dataset `mnist`, checks the file's pinned sha256 before parsing
/// (so it refuses every fuzzed file); the parser itself, `read_mnist5k`, is
/// in a private module and is passed in by the caller (the source file
/// compiled into the target, see `fuzz_targets/mnist_csv.rs`).
pub fn mnist_csv(
    s: &Scratch,
    data: &[u8],
    read_mnist5k: impl Fn(&Path) -> Result<()>,
) -> Result<()> {
    let p = s.dir.join("mnist").join("mnist_5k.csv.gz");
    write(&p, data);
    let public = DataSpec::new("mnist").load(&s.dir);
    let parsed = read_mnist5k(&p);
    public?;
    parsed
}

/// A forget-set file: `ForgetSet::read`.
pub fn forget_json(s: &Scratch, data: &[u8]) -> Result<()> {
    let p = s.dir.join("forget.json");
    write(&p, data);
    ForgetSet::read(&p)?;
    Ok(())
}

/// An experiment file: `Config::read` (parse + validation). A relative
/// dataset folder resolves against the scratch folder, which holds
/// `data/` (an empty folder).
pub fn experiment_toml(s: &Scratch, data: &[u8]) -> Result<()> {
    let p = s.dir.join("experiment.toml");
    write(&p, data);
    std::fs::create_dir_all(s.dir.join("data")).expect("scratch folder");
    Config::read(&p)?;
    Ok(())
}

/// An adversarial set (`adv.safetensors` + `adv.json`): parts = [tensors,
/// JSON, signed when it ends in [`SIGN_SUFFIX`]]. `AdvSet::load`; a loaded set must also be usable (`subset`,
/// `summary`), which is what its consumers do first.
pub fn adv_set(s: &Scratch, data: &[u8]) -> Result<()> {
    let p = parts(data, 2);
    let path = s.dir.join("adv.safetensors");
    write(&path, p[0]);
    write(&AdvSet::meta_path(&path), &signed(p[1]));
    let (set, _meta) = AdvSet::load(&path)?;
    let mut keep = set.indices.clone();
    keep.sort_unstable();
    keep.dedup();
    let sub = set.subset(&keep);
    let _ = sub.summary();
    Ok(())
}
