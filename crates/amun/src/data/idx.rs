//! The IDX format of the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST):
//! `*-images-idx3-ubyte[.gz]` and `*-labels-idx1-ubyte[.gz]`, big-endian
//! header (magic 0x00000803 / 0x00000801, then the dimensions).
use super::{Split, split_from_bytes};
use crate::error::{Error, IoContext, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The four files of an IDX dataset.
#[derive(Debug)]
pub struct IdxFiles {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test_images: PathBuf,
    pub test_labels: PathBuf,
}

/// Finds `train-*`/`t10k-*` (or `test-*`) image and label files in `dir`.
/// `Ok(None)` when the folder holds no IDX file at all.
pub fn find_idx_files(dir: &Path) -> Result<Option<IdxFiles>> {
    let mut names: Vec<String> = Vec::new();
    for e in std::fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    if !names.iter().any(|n| n.contains("-idx")) {
        return Ok(None);
    }
    let find = |prefixes: &[&str], kind: &str| -> Result<PathBuf> {
        names
            .iter()
            .find(|n| {
                prefixes.iter().any(|p| n.starts_with(p))
                    && n.contains(kind)
                    && (n.ends_with("ubyte") || n.ends_with("ubyte.gz"))
            })
            .map(|n| dir.join(n))
            .ok_or_else(|| {
                Error::format(
                    dir,
                    format!(
                        "IDX dataset without a {}{kind}[.gz] file",
                        prefixes.join("|")
                    ),
                )
            })
    };
    Ok(Some(IdxFiles {
        train_images: find(&["train"], "-images-idx3-ubyte")?,
        train_labels: find(&["train"], "-labels-idx1-ubyte")?,
        test_images: find(&["t10k", "test"], "-images-idx3-ubyte")?,
        test_labels: find(&["t10k", "test"], "-labels-idx1-ubyte")?,
    }))
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).at(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt gzip: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file of unsigned bytes; returns (dims, data).
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::format(path, "not an IDX file (bad magic number)"));
    }
    if bytes[2] != 0x08 {
        return Err(Error::format(
            path,
            format!("IDX type 0x{:02x}; expected 0x08 (unsigned byte)", bytes[2]),
        ));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(Error::format(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    // The dimensions come from the file: their product may overflow.
    let data = &bytes[header..];
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "IDX dims {dims:?} describe more bytes than any file holds; found {} data bytes",
                    data.len()
                ),
            )
        })?;
    if data.len() != expected {
        return Err(Error::format(
            path,
            format!(
                "IDX dims {dims:?} need {expected} data bytes, found {} (truncated?)",
                data.len()
            ),
        ));
    }
    Ok((dims, data.to_vec()))
}

fn read_split(images: &Path, labels: &Path) -> Result<(Split, usize)> {
    let (idims, ibytes) = read_idx(images)?;
    let (ldims, lbytes) = read_idx(labels)?;
    if idims.len() != 3 {
        return Err(Error::format(
            images,
            format!("expected 3 dimensions (N, H, W), found {idims:?}"),
        ));
    }
    if idims.contains(&0) {
        return Err(Error::format(
            images,
            format!("dims {idims:?}: expected at least one image of at least 1x1 pixels"),
        ));
    }
    if ldims.len() != 1 || ldims[0] != idims[0] {
        return Err(Error::format(
            labels,
            format!("expected {} labels, found dims {ldims:?}", idims[0]),
        ));
    }
    let max = lbytes.iter().copied().max().unwrap_or(0) as usize;
    let labels_i64 = lbytes.iter().map(|&b| i64::from(b)).collect();
    let split = split_from_bytes(
        images,
        ibytes,
        labels_i64,
        [1, idims[1] as i64, idims[2] as i64],
    )?;
    Ok((split, max + 1))
}

/// Reads both splits. Class names come from `classes.txt` beside the files
/// (one name per line, line i naming label i) when there is one, else they
/// are the label numbers: IDX files carry no names.
pub fn read_pair(files: &IdxFiles) -> Result<(Vec<String>, Split, Split)> {
    let (train, c1) = read_split(&files.train_images, &files.train_labels)?;
    let (test, c2) = read_split(&files.test_images, &files.test_labels)?;
    if train.images.size()[1..] != test.images.size()[1..] {
        return Err(Error::format(
            &files.test_images,
            "test images have another size than the training images",
        ));
    }
    let n = c1.max(c2);
    let names = files
        .train_images
        .parent()
        .map(|d| d.join("classes.txt"))
        .filter(|p| p.is_file());
    let classes = match names {
        None => (0..n).map(|c| c.to_string()).collect(),
        Some(p) => {
            let text = std::fs::read_to_string(&p).at(&p)?;
            let names: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if names.len() < n {
                return Err(Error::format(
                    &p,
                    format!(
                        "names {} class(es), but the labels use {n}; give one name a line, \
                         line i naming label i",
                        names.len()
                    ),
                ));
            }
            names
        }
    };
    Ok((classes, train, test))
}
