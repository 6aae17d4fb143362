//! CIFAR-10 binary batches: records of 3,073 bytes (one label byte, then
//! 1,024 R, 1,024 G and 1,024 B bytes, row-major), 10,000 per file.
use super::{Split, split_from_bytes};
use crate::error::{Error, IoContext, Result};
use std::path::Path;

const RECORD: usize = 3073;
const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Reads one batch file into images and labels.
pub fn read_batch(path: &Path) -> Result<(Vec<u8>, Vec<i64>)> {
    let bytes = std::fs::read(path).at(path)?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(Error::format(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records \
                 (truncated or not a CIFAR-10 binary batch)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut images = Vec::with_capacity(n * (RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(Error::format(
                path,
                format!("record {i} has label {}; expected 0..=9", rec[0]),
            ));
        }
        labels.push(i64::from(rec[0]));
        images.extend_from_slice(&rec[1..]);
    }
    Ok((images, labels))
}

/// Reads `data_batch_1..5.bin` (train) and `test_batch.bin` (test) from a
/// folder; class names from `batches.meta.txt` when present.
pub fn read_dir(dir: &Path) -> Result<(Vec<String>, Split, Split)> {
    let mut train_x = Vec::new();
    let mut train_y = Vec::new();
    for i in 1..=5 {
        let p = dir.join(format!("data_batch_{i}.bin"));
        let (x, y) = read_batch(&p)?;
        train_x.extend(x);
        train_y.extend(y);
    }
    let test_path = dir.join("test_batch.bin");
    let (test_x, test_y) = read_batch(&test_path)?;
    let meta = dir.join("batches.meta.txt");
    let classes = match std::fs::read_to_string(&meta) {
        Ok(text) => {
            let names: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if names.len() != 10 {
                return Err(Error::format(
                    &meta,
                    format!("expected 10 class names, found {}", names.len()),
                ));
            }
            names
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            CLASSES.iter().map(|s| s.to_string()).collect()
        }
        // Present but unreadable (not UTF-8, a folder, no permission): an
        // error, not silently the default names.
        Err(e) => return Err(e).at(&meta),
    };
    let chw = [3, 32, 32];
    Ok((
        classes,
        split_from_bytes(dir, train_x, train_y, chw)?,
        split_from_bytes(&test_path, test_x, test_y, chw)?,
    ))
}
