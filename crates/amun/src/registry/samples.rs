//! Samples as a registry knows them: by training index for registry
//! datasets and folders of CIFAR-10 batches or IDX files, by file path for
//! image folders, and always by the sha256 of their bytes (an image file's
//! bytes; for a sample without a file, its uint8 pixels in CHW order
//! followed by its label as a little-endian i64). The hashes are taken when
//! the registry is made; a dataset whose samples later differ (edited,
//! reordered, replaced) is refused by name. No image is ever stored.
use super::db::sha256;
use crate::data::{Dataset, ForgetFile};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// One training sample: its index, its file (image folders) and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub idx: i64,
    /// Relative to the dataset folder, with `/` separators.
    pub path: Option<String>,
    pub sha256: String,
}

impl Sample {
    /// How messages name it: `sample 17` or `sample 17 (cat/003.png)`.
    pub fn name(&self) -> String {
        match &self.path {
            Some(p) => format!("sample {} ({p})", self.idx),
            None => format!("sample {}", self.idx),
        }
    }
}

/// The digest of a list of samples (what a record stores of them).
pub fn digest<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> String {
    let mut text = String::new();
    for s in samples {
        text.push_str(&format!(
            "{}\t{}\t{}\n",
            s.idx,
            s.path.as_deref().unwrap_or(""),
            s.sha256
        ));
    }
    sha256(text.as_bytes())
}

/// A path as a registry records it: relative to `root`, `/`-separated.
/// A path outside `root` is kept as written (hostile12 N24: its root
/// component joined with `/` printed `//tmp/…`).
fn relative(root: &Path, p: &Path) -> String {
    let Ok(r) = p.strip_prefix(root) else {
        return p.to_string_lossy().into_owned();
    };
    r.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// An absolute path a request names, relative to the dataset folder `root`:
/// as written, or once both are resolved when it reaches the folder another
/// way (through a link to it, or `..`: hostile16 N30e). A path still outside
/// is kept as written, and refused as no training image.
fn inside(root: &Path, p: &Path) -> String {
    if p.strip_prefix(root).is_err()
        && let (Ok(r), Ok(dir), Some(name)) = (
            root.canonicalize(),
            p.parent().map_or(Ok(PathBuf::new()), Path::canonicalize),
            p.file_name(),
        )
        && dir.starts_with(&r)
    {
        return relative(&r, &dir.join(name));
    }
    relative(root, p)
}

/// Every training sample of `data` with its hash (`files`: an image
/// folder's training files in index order, see
/// [`crate::data::sample_files`]).
pub fn hash_all(data: &Dataset, files: Option<&[PathBuf]>) -> Result<Vec<Sample>> {
    if let Some(files) = files {
        return hash_files(Path::new(&data.spec.dataset), files);
    }
    let images = data
        .train
        .images
        .to_device(Device::Cpu)
        .to_kind(Kind::Uint8)
        .contiguous();
    let n = data.train.len();
    let bytes = Vec::<u8>::try_from(images.flatten(0, -1))
        .map_err(|e| Error::invalid("dataset", format!("reading its images: {e}")))?;
    let labels = data.train.label_vec();
    let per = bytes.len() / n.max(1);
    Ok((0..n)
        .map(|i| {
            let mut b = bytes[i * per..(i + 1) * per].to_vec();
            b.extend_from_slice(&labels[i].to_le_bytes());
            Sample {
                idx: i as i64,
                path: None,
                sha256: sha256(&b),
            }
        })
        .collect())
}

/// The training samples of the image folder `root` from their `files` (in
/// index order) without decoding them: what [`hash_all`] gives for a
/// folder, so `registry verify` checks the data as apply does.
pub fn hash_files(root: &Path, files: &[PathBuf]) -> Result<Vec<Sample>> {
    files
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(Sample {
                idx: i as i64,
                path: Some(relative(root, p)),
                sha256: crate::data::sha256_file(p)?,
            })
        })
        .collect()
}

/// Whether the registry's training data is still the data it recorded:
/// the one check `registry add`, `apply`/`retrain` and `verify` make.
/// `data`: the data as loaded (add, apply), whose samples are hashed as
/// [`hash_all`] does; `None` (verify, which decodes nothing): an image
/// folder's files are hashed, and data without a file per sample is left
/// unchecked (`Ok(None)`). The number of samples checked, or the first
/// differences ([`check_same`]).
pub(crate) fn check_recorded(
    recorded: &[Sample],
    spec: &crate::data::DataSpec,
    data: Option<&Dataset>,
) -> Result<Option<usize>> {
    let files = crate::data::sample_files(spec)?;
    let now = match (data, files.as_deref()) {
        (Some(d), files) => hash_all(d, files)?,
        (None, Some(files)) => hash_files(Path::new(&spec.dataset), files)?,
        (None, None) => return Ok(None),
    };
    check_same(recorded, &now, &spec.train_label())?;
    Ok(Some(now.len()))
}

/// Checks that `now` (the data as loaded) holds the samples `recorded`
/// when the registry was made, naming the first differences.
pub fn check_same(recorded: &[Sample], now: &[Sample], data: &str) -> Result<()> {
    if recorded.len() != now.len() {
        return Err(Error::invalid(
            "dataset",
            format!(
                "{data} now has {} training samples; the registry recorded {}: the data changed \
                 since the registry was made, so its indices no longer name the same samples",
                now.len(),
                recorded.len()
            ),
        ));
    }
    let by_hash: std::collections::HashMap<&str, &Sample> =
        recorded.iter().map(|s| (s.sha256.as_str(), s)).collect();
    let renamed = renamed_folders(recorded, now, &by_hash);
    if !renamed.is_empty() {
        return Err(Error::invalid(
            "dataset",
            format!(
                "{data} differs from what the registry recorded: class folder(s) renamed \
                 ({}); the folder names are the classes, so every index and label after \
                 them would name other samples; a registry applies requests only to the \
                 data its model was trained on — put the names back",
                renamed.join("; ")
            ),
        ));
    }
    let differ: Vec<String> = recorded
        .iter()
        .zip(now)
        .filter(|(a, b)| a.sha256 != b.sha256 || a.path != b.path)
        .map(|(a, b)| match by_hash.get(b.sha256.as_str()) {
            Some(other) if other.idx != a.idx => format!(
                "{} now holds the bytes recorded for {} (reordered)",
                b.name(),
                other.name()
            ),
            _ if a.sha256 == b.sha256 => format!(
                "{} is now {} (the same bytes, under another name)",
                a.name(),
                b.path.as_deref().unwrap_or("a sample without a file")
            ),
            _ => format!(
                "{}: its bytes changed (sha256 recorded {}, now {})",
                a.name(),
                crate::fsutil::short_pair(&a.sha256, &b.sha256).0,
                crate::fsutil::short_pair(&a.sha256, &b.sha256).1
            ),
        })
        .collect();
    if let Some(first) = differ.first() {
        return Err(Error::invalid(
            "dataset",
            format!(
                "{data} differs from what the registry recorded in {} training sample(s): \
                 {first}{}; a registry applies requests only to the data its model was \
                 trained on",
                differ.len(),
                differ
                    .get(1..3.min(differ.len()))
                    .map(|r| r.iter().map(|d| format!("; {d}")).collect::<String>())
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// The folder of a sample's path (`train/cat` of `train/cat/003.png`).
fn folder(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(f, _)| f)
}

/// Folders of the recorded paths that are gone, each with the new folder
/// whose images carry their bytes: `'train/3' is now 'train/three' (60 of
/// its 60 images)`. Empty when no folder was renamed.
fn renamed_folders(
    recorded: &[Sample],
    now: &[Sample],
    by_hash: &std::collections::HashMap<&str, &Sample>,
) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let folders = |v: &[Sample]| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for p in v.iter().filter_map(|s| s.path.as_deref()) {
            *m.entry(folder(p).to_string()).or_insert(0) += 1;
        }
        m
    };
    let (old, new) = (folders(recorded), folders(now));
    let gone: BTreeSet<&String> = old.keys().filter(|f| !new.contains_key(*f)).collect();
    let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for b in now {
        let Some(p) = b.path.as_deref() else { continue };
        if old.contains_key(folder(p)) {
            continue;
        }
        if let Some(a) = by_hash.get(b.sha256.as_str())
            && let Some(ap) = a.path.as_deref()
            && gone.contains(&folder(ap).to_string())
        {
            *pairs.entry((folder(ap), folder(p))).or_insert(0) += 1;
        }
    }
    pairs
        .into_iter()
        .map(|((from, to), n)| {
            format!(
                "'{from}' is now '{to}' ({n} of its {} images, the same bytes)",
                old[from]
            )
        })
        .collect()
}

/// sha256's first 12 hex digits, for messages.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The samples a request file names, before they are matched to the
/// registry's.
#[derive(Debug, Clone, PartialEq)]
pub enum Named {
    Indices(Vec<i64>),
    /// amun's JSON: indices of the dataset and slice it names.
    Set(crate::data::ForgetSet),
    /// Image files, relative to the dataset folder.
    Paths(Vec<String>),
}

fn is_image(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|e| l.ends_with(e))
}

/// Reads a request file: a list of image paths (one a line, optionally
/// under a `path` or `file` header; image folders only) or anything
/// `amun split --from` reads (indices).
pub fn read_request(path: &Path, dataset_root: Option<&Path>) -> Result<Named> {
    if let Some(root) = dataset_root {
        let text = crate::fsutil::read_list_file(path)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines
            .first()
            .is_some_and(|l| l.eq_ignore_ascii_case("path") || l.eq_ignore_ascii_case("file"))
        {
            lines.remove(0);
        }
        if !lines.is_empty() && lines.iter().all(|l| is_image(l)) {
            let paths = lines
                .iter()
                .map(|l| {
                    let l = l.trim_matches('"');
                    let p = Path::new(l);
                    let rel = if p.is_absolute() {
                        inside(root, p)
                    } else {
                        relative(Path::new(""), p)
                    };
                    rel.trim_start_matches("./").to_string()
                })
                .collect();
            return Ok(Named::Paths(paths));
        }
    }
    match ForgetFile::read(path)? {
        ForgetFile::Indices(v) => Ok(Named::Indices(v)),
        ForgetFile::Set(s) => Ok(Named::Set(s)),
    }
}

/// Whether `a` and `b` differ, if at all, only in their accented letters:
/// equal once every letter with an accent (a non-ASCII character, or one
/// followed by combining marks U+0300–U+036F) counts as one placeholder.
/// `bär` composed (NFC) and decomposed (NFD) match; so would `bär` and
/// `bör`, which is why a match is named as a hint, never taken for the
/// sample.
fn same_but_accents(a: &str, b: &str) -> bool {
    fn skeleton(s: &str) -> Vec<Option<char>> {
        let combining = |c: char| ('\u{300}'..='\u{36f}').contains(&c);
        let mut out: Vec<Option<char>> = Vec::new();
        for c in s.chars() {
            if combining(c) {
                if let Some(last) = out.last_mut() {
                    *last = None;
                }
            } else {
                out.push(c.is_ascii().then_some(c));
            }
        }
        out
    }
    a != b && skeleton(a) == skeleton(b)
}

/// A forget set made for another dataset or slice than the registry's
/// (hostile13 R9: a set of `mnist[train:500]` for a registry of
/// `mnist[train:1000]` names the same first samples, yet is another slice).
fn other_slice(s: &crate::data::ForgetSet, source: &Path, data: &str, n: usize) -> Error {
    let base = |d: &str| d.split('[').next().unwrap_or(d).to_string();
    let what = match base(&s.dataset) == base(data) {
        true => "another slice of the data, whose indices the registry does not take as its own",
        false => "other data, whose samples its indices do not name",
    };
    Error::format(
        source,
        format!(
            "forget set is for {} ({} training samples), but the registry's data is {data} \
             ({n}): it was made for {what}; make the set on the registry's data (`amun split \
             --dataset`), or list the samples' indices in the registry's data in a text file \
             (one a line) and add that",
            s.dataset, s.train_size
        ),
    )
}

/// Whether the sealed set `s` was made on training data of the content
/// `content` (the registry's), wherever that data lay.
fn same_content(s: &crate::data::ForgetSet, content: Option<&str>) -> bool {
    s.train_sha256.is_some() && s.train_sha256.as_deref() == content
}

/// A forget set of a folder that records no content hash (an older
/// amun's): the registry is the permanent record of which images a request
/// names, so a set that nothing ties to the folder's content (a class
/// folder renamed since makes its indices name another class) is refused
/// until sealed (hostile13 R15/R16).
fn unsealed_set(s: &crate::data::ForgetSet, source: &Path, data: &str) -> Error {
    let class = match (s.class, &s.class_name) {
        (Some(c), None) => format!(" (and names class {c} by its number only)"),
        _ => String::new(),
    };
    Error::format(
        source,
        format!(
            "forget set records no content hash of its data (an older amun wrote it){class}: \
             nothing checks that {data} still holds the samples it was made for (a renamed \
             class folder or a replaced image makes its indices name other samples), and a \
             request is recorded for good; seal it first with `amun split --from {} \
             --dataset {data} --out NEW` (which says what it seals) and add NEW, or name the \
             images by path in a text file",
            source.display()
        ),
    )
}

/// A sealed forget set whose recorded content is not the registry's data,
/// though it names the same dataset and size (`content`: the content
/// sha256 of the registry's training split, `None` for a dataset amun
/// fetches): made on the folder before or after an edit (an image
/// replaced, a class folder renamed), so its indices name other samples
/// than the registry's.
fn other_content(
    s: &crate::data::ForgetSet,
    source: &Path,
    data: &str,
    content: Option<&str>,
) -> Error {
    let set = s.train_sha256.as_deref().unwrap_or("");
    // Prefixes long enough to differ (hostile15 SR_ff_sha).
    let (set, registry) = match content {
        Some(c) => {
            let (a, b) = crate::fsutil::short_pair(set, c);
            (a, format!("the registry's data {b}…"))
        }
        None => (
            short(set),
            "the registry's data, a dataset amun fetches, none".to_string(),
        ),
    };
    Error::format(
        source,
        format!(
            "forget set was made for other training data than the registry's {data} (content \
             sha256: the set records {}…, {registry}; both {} samples): made on the folder \
             before or after an edit (an image replaced, a class folder renamed), its indices \
             name other samples than the ones the registry's model was trained on; make the \
             set again on the registry's data (`amun split --dataset {data}`), or name the \
             samples in a text file (image paths, or indices one a line)",
            set, s.train_size
        ),
    )
}

/// What a request's samples are: those of `recorded` (the registry's, in
/// index order) that `named` names, sorted by index; checked for range,
/// repeats and, for image files, that their bytes are still the recorded
/// ones. `dataset_root` is the image folder (files are hashed again).
/// `content` is the content sha256 of the registry's training split, which
/// a sealed forget set must record.
pub fn resolve(
    named: Named,
    recorded: &[Sample],
    source: &Path,
    data: &str,
    dataset_root: Option<&Path>,
    content: Option<&str>,
) -> Result<Vec<Sample>> {
    let n = recorded.len();
    let by_index = |v: Vec<i64>| -> Result<Vec<Sample>> {
        if v.is_empty() {
            return Err(Error::format(source, "the request names no sample"));
        }
        if let Some(bad) = v.iter().find(|&&i| i < 0 || i as usize >= n) {
            return Err(Error::format(
                source,
                format!(
                    "index {bad} is outside the registry's dataset {data} (training \
                     samples 0..{})",
                    n.saturating_sub(1)
                ),
            ));
        }
        Ok(v.iter().map(|&i| recorded[i as usize].clone()).collect())
    };
    let mut out: Vec<Sample> = match named {
        Named::Indices(v) => by_index(v)?,
        // Indices mean nothing in another dataset or slice, even in range;
        // a set sealed on a copy of the registry's folder (another path, the
        // same content hash: the same samples at the same indices) names the
        // registry's own samples, which it records by its own paths
        // (hostile14 RA1).
        Named::Set(s) if s.train_size != n || (s.dataset != data && !same_content(&s, content)) => {
            return Err(other_slice(&s, source, data, n));
        }
        Named::Set(s) if s.train_sha256.is_none() && dataset_root.is_some() => {
            return Err(unsealed_set(&s, source, data));
        }
        Named::Set(s) if s.train_sha256.is_some() && s.train_sha256.as_deref() != content => {
            return Err(other_content(&s, source, data, content));
        }
        Named::Set(s) => by_index(s.indices)?,
        Named::Paths(paths) => {
            let by_path: std::collections::HashMap<&str, &Sample> = recorded
                .iter()
                .filter_map(|s| s.path.as_deref().map(|p| (p, s)))
                .collect();
            let mut v = Vec::new();
            for p in &paths {
                let s = by_path.get(p.as_str()).ok_or_else(|| {
                    let mut paths = recorded.iter().filter_map(|s| s.path.as_deref());
                    let hint = match paths.find(|r| same_but_accents(r, p)) {
                        Some(r) => format!(
                            "; {r} is one, written with the same letters: if their accents look \
                             alike, the two are written in different Unicode forms (one with \
                             accents as separate marks, NFD, as macOS writes names; one with \
                             them composed, NFC): name it as the dataset's file is named"
                        ),
                        None => {
                            let e = (recorded.first())
                                .and_then(|s| s.path.clone())
                                .unwrap_or_default();
                            if Path::new(p).is_absolute() {
                                format!(
                                    ": it lies outside the registry's dataset folder (a copy's \
                                     path is not accepted); name the image relative to the \
                                     dataset folder, e.g. {e}, or by its absolute path inside it"
                                )
                            } else {
                                format!(
                                    " (paths are relative to the dataset folder, e.g. {e}, or \
                                     absolute inside it)"
                                )
                            }
                        }
                    };
                    Error::format(
                        source,
                        format!(
                            "{p} is not a training image of the registry's dataset {data}{hint}"
                        ),
                    )
                })?;
                if let Some(root) = dataset_root {
                    let now = crate::data::sha256_file(&root.join(p))?;
                    if now != s.sha256 {
                        return Err(Error::format(
                            source,
                            format!(
                                "{}: its bytes changed since the registry was made (sha256 \
                                 recorded {}, now {}): the model was trained on the recorded \
                                 image, which a request must name",
                                s.name(),
                                crate::fsutil::short_pair(&s.sha256, &now).0,
                                crate::fsutil::short_pair(&s.sha256, &now).1
                            ),
                        ));
                    }
                }
                v.push((*s).clone());
            }
            v
        }
    };
    out.sort_by_key(|s| s.idx);
    if let Some(w) = out.windows(2).find(|w| w[0].idx == w[1].idx) {
        return Err(Error::format(
            source,
            format!("{} is named twice", w[0].name()),
        ));
    }
    if out.len() >= n {
        return Err(Error::format(
            source,
            format!("names all {n} training samples; keep at least one"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Vec<Sample> {
        (0..5)
            .map(|i| Sample {
                idx: i,
                path: Some(format!("c/{i}.png")),
                sha256: format!("{i:064}"),
            })
            .collect()
    }

    #[test]
    fn a_renamed_class_folder_is_named_not_called_changed_bytes() {
        let a = recorded();
        // Renamed in place (the order kept): the folders are named.
        let mut b = a.clone();
        for s in &mut b {
            s.path = s.path.as_ref().map(|p| p.replace("c/", "kitty/"));
        }
        let e = check_same(&a, &b, "d").unwrap_err().to_string();
        assert!(
            e.contains("class folder(s) renamed") && e.contains("'c' is now 'kitty' (5 of its 5"),
            "{e}"
        );
        assert!(!e.contains("bytes changed"), "{e}");
        // One file renamed within its folder: the names, not "bytes changed".
        let mut c = a.clone();
        c[2].path = Some("c/two.png".into());
        let e = check_same(&a, &c, "d").unwrap_err().to_string();
        assert!(
            e.contains("sample 2 (c/2.png) is now c/two.png (the same bytes"),
            "{e}"
        );
    }

    #[test]
    fn changes_are_named_and_a_reordering_is_told_apart() {
        let a = recorded();
        assert!(check_same(&a, &a, "d").is_ok());
        let mut b = a.clone();
        b.swap(1, 2);
        b[1].idx = 1;
        b[2].idx = 2;
        b[1].path = a[1].path.clone();
        b[2].path = a[2].path.clone();
        let e = check_same(&a, &b, "d").unwrap_err().to_string();
        assert!(
            e.contains("2 training sample(s)") && e.contains("reordered"),
            "{e}"
        );
        let mut c = a.clone();
        c[3].sha256 = "f".repeat(64);
        let e = check_same(&a, &c, "d").unwrap_err().to_string();
        assert!(e.contains("sample 3 (c/3.png): its bytes changed"), "{e}");
    }

    #[test]
    fn requests_are_checked_against_the_recorded_samples() {
        let a = recorded();
        let src = Path::new("r.csv");
        let e = resolve(Named::Indices(vec![7]), &a, src, "d", None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("index 7 is outside") && e.contains("0..4"),
            "{e}"
        );
        let e = resolve(Named::Indices(vec![1, 1]), &a, src, "d", None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("named twice"), "{e}");
        let e = resolve(
            Named::Paths(vec!["c/9.png".into()]),
            &a,
            src,
            "d",
            None,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c/9.png is not a training image"), "{e}");
        // hostile7 UN2: a path in NFD, the dataset's in NFC, looked the same
        // and was refused without a word on why.
        let mut accented = recorded();
        accented[2].path = Some("b\u{e4}r/2.png".into());
        let nfd = "ba\u{308}r/2.png";
        let e = resolve(
            Named::Paths(vec![nfd.into()]),
            &accented,
            src,
            "d",
            None,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("b\u{e4}r/2.png is one") && e.contains("NFD"),
            "{e}"
        );
        assert!(same_but_accents("b\u{e4}r \u{fc}", "ba\u{308}r u\u{308}"));
        assert!(!same_but_accents("bar", "bar") && !same_but_accents("b\u{e4}r", "bar"));
        let ok = resolve(
            Named::Paths(vec!["c/3.png".into(), "c/1.png".into()]),
            &a,
            src,
            "d",
            None,
            None,
        )
        .unwrap();
        assert_eq!(ok.iter().map(|s| s.idx).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn a_forget_set_of_another_dataset_or_slice_is_refused_even_in_range() {
        let a = recorded();
        let src = Path::new("fs.json");
        let set = |dataset: &str, train_size: usize| {
            Named::Set(crate::data::ForgetSet::of_indices(
                dataset.into(),
                train_size,
                "random",
                vec![1, 2],
            ))
        };
        for (d, n) in [("cifar10[train:5]", 5), ("d", 4000)] {
            let e = resolve(set(d, n), &a, src, "d", None, None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("forget set is for {d} ({n} training samples)"))
                    && e.contains("registry's data is d (5)"),
                "{e}"
            );
        }
        let ok = resolve(set("d", 5), &a, src, "d", None, None).unwrap();
        assert_eq!(ok.iter().map(|s| s.idx).collect::<Vec<_>>(), vec![1, 2]);
        // A set sealed on other content of the same dataset and size is
        // refused; sealed on the registry's, taken (fix37e).
        let sealed = |sha: &str| match set("d", 5) {
            Named::Set(mut s) => {
                s.train_sha256 = Some(sha.into());
                Named::Set(s)
            }
            _ => unreachable!(),
        };
        let (reg, other) = ("a".repeat(64), "b".repeat(64));
        let e = resolve(sealed(&other), &a, src, "d", None, Some(&reg))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("other training data than the registry's d")
                && e.contains("bbbbbbbbbbbb…, the registry's data aaaaaaaaaaaa…"),
            "{e}"
        );
        assert!(resolve(sealed(&reg), &a, src, "d", None, Some(&reg)).is_ok());
        // hostile14 RA1: sealed on a copy of the registry's data at another
        // path, taken; on other content there, "other data".
        let on_copy = |sha: &str| match sealed(sha) {
            Named::Set(mut s) => {
                s.dataset = "copy".into();
                Named::Set(s)
            }
            _ => unreachable!(),
        };
        let ok = resolve(on_copy(&reg), &a, src, "d", None, Some(&reg)).unwrap();
        assert_eq!(ok.iter().map(|s| s.idx).collect::<Vec<_>>(), vec![1, 2]);
        let e = resolve(on_copy(&other), &a, src, "d", None, Some(&reg))
            .unwrap_err()
            .to_string();
        assert!(e.contains("made for other data"), "{e}");
    }

    /// hostile16 N30e: an absolute path through a link to the dataset
    /// folder names the folder's own image; a path outside stays outside.
    #[test]
    fn an_absolute_path_through_a_link_to_the_folder_is_inside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("fold");
        std::fs::create_dir_all(root.join("train/one")).unwrap();
        std::fs::write(root.join("train/one/a.png"), b"x").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let list = tmp.path().join("q.txt");
        let named = |line: &Path| {
            std::fs::write(&list, format!("{}\n", line.display())).unwrap();
            match read_request(&list, Some(&root)).unwrap() {
                Named::Paths(p) => p,
                _ => panic!("not read as paths"),
            }
        };
        assert_eq!(named(&link.join("train/one/a.png")), ["train/one/a.png"]);
        assert_eq!(named(&root.join("train/one/a.png")), ["train/one/a.png"]);
        let outside = tmp.path().join("other/a.png");
        assert_eq!(named(&outside), [outside.to_string_lossy().into_owned()]);
    }
}
