//! Forget sets: which training samples a deletion request removes.
use super::Dataset;
use crate::error::{Error, Result};
use crate::fsutil;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How to choose a forget set.
#[derive(Debug, Clone, PartialEq)]
pub enum ForgetSpec {
    /// A uniformly random fraction of the training set, in (0, 1).
    Fraction(f64),
    /// A uniformly random subset of this many samples.
    Count(usize),
    /// Every training sample of one class (class-wise forgetting).
    Class(i64),
}

impl ForgetSpec {
    /// Parses `--forget`: `0.1` is a fraction, `5000` a count.
    pub fn parse(s: &str) -> Result<ForgetSpec> {
        let err = || {
            Error::invalid(
                "forget",
                format!("'{s}': expected a fraction in (0,1) such as 0.1, or a count such as 5000"),
            )
        };
        if let Ok(n) = s.parse::<usize>() {
            return if n == 0 {
                Err(err())
            } else {
                Ok(ForgetSpec::Count(n))
            };
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f < 1.0 => Ok(ForgetSpec::Fraction(f)),
            _ => Err(err()),
        }
    }
}

/// A forget set, as written to `forget.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetSet {
    /// The dataset label (see [`crate::data::DataSpec::label`]).
    pub dataset: String,
    /// Size of the training split the indices refer to.
    pub train_size: usize,
    /// `random` or `class`.
    pub kind: String,
    /// The class for class-wise forgetting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<i64>,
    /// Seed the random choice was drawn with.
    pub seed: u64,
    /// Number of indices.
    pub size: usize,
    /// Sorted, distinct training indices.
    pub indices: Vec<i64>,
}

impl ForgetSet {
    /// Chooses a forget set from `data`'s training split.
    pub fn choose(data: &Dataset, spec: &ForgetSpec, seed: u64) -> Result<ForgetSet> {
        let n = data.train.len();
        let (kind, class, mut indices) = match *spec {
            ForgetSpec::Fraction(f) => {
                let k = ((n as f64) * f).round() as usize;
                (
                    "random",
                    None,
                    draw(n, k.clamp(1, n.saturating_sub(1).max(1)), seed)?,
                )
            }
            ForgetSpec::Count(k) => {
                if k >= n {
                    return Err(Error::invalid(
                        "forget",
                        format!(
                            "{k} samples requested but the training set has {n}; keep at least one"
                        ),
                    ));
                }
                ("random", None, draw(n, k, seed)?)
            }
            ForgetSpec::Class(c) => {
                if c < 0 || c as usize >= data.num_classes() {
                    return Err(Error::invalid(
                        "class",
                        format!("{c}: expected 0..{}", data.num_classes()),
                    ));
                }
                let idx: Vec<i64> = data
                    .train
                    .label_vec()
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| **l == c)
                    .map(|(i, _)| i as i64)
                    .collect();
                if idx.is_empty() {
                    return Err(Error::invalid(
                        "class",
                        format!(
                            "{c}: no training image of class {c} in {} ({n} images)",
                            data.spec.train_label()
                        ),
                    ));
                }
                if idx.len() == n {
                    return Err(Error::invalid(
                        "class",
                        format!("{c}: every training image is of class {c}; keep at least one"),
                    ));
                }
                ("class", Some(c), idx)
            }
        };
        indices.sort_unstable();
        Ok(ForgetSet {
            dataset: data.spec.train_label(),
            train_size: n,
            kind: kind.into(),
            class,
            seed,
            size: indices.len(),
            indices,
        })
    }

    /// A random `fraction` of the training set drawn only from samples not
    /// in `taken` (a tuning forget set, disjoint from the evaluation ones).
    pub fn choose_outside(
        data: &Dataset,
        fraction: f64,
        taken: &[i64],
        seed: u64,
    ) -> Result<ForgetSet> {
        let n = data.train.len();
        let k = ((n as f64) * fraction).round().max(1.0) as usize;
        let mut t = taken.to_vec();
        t.sort_unstable();
        t.dedup();
        let free: Vec<i64> = (0..n as i64)
            .filter(|i| t.binary_search(i).is_err())
            .collect();
        if free.len() < k + 1 {
            return Err(Error::invalid(
                "tune",
                format!(
                    "a tuning forget set of {k} samples disjoint from the evaluation forget sets \
                     needs {} free training samples, but they leave {} of {n}: use fewer \
                     evaluation seeds or a smaller fraction",
                    k + 1,
                    free.len()
                ),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut indices: Vec<i64> = sample(&mut rng, free.len(), k)
            .into_iter()
            .map(|i| free[i])
            .collect();
        indices.sort_unstable();
        Ok(ForgetSet {
            dataset: data.spec.train_label(),
            train_size: n,
            kind: "tune-random".into(),
            class: None,
            seed,
            size: indices.len(),
            indices,
        })
    }

    /// A forget set of the given training indices (in any order; the file
    /// they came from is named in errors): every index in range, none
    /// twice, at least one, and at least one sample left.
    pub fn from_indices(data: &Dataset, mut indices: Vec<i64>, source: &Path) -> Result<ForgetSet> {
        let n = data.train.len();
        if indices.is_empty() {
            return Err(Error::format(
                source,
                "the forget set is empty: it lists no index",
            ));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i as usize >= n) {
            return Err(Error::format(
                source,
                format!(
                    "index {bad} is out of range for the {n} training samples of {}",
                    data.spec.train_label()
                ),
            ));
        }
        indices.sort_unstable();
        if let Some(w) = indices.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::format(
                source,
                format!("index {} is listed twice", w[0]),
            ));
        }
        if indices.len() >= n {
            return Err(Error::format(
                source,
                format!("lists all {n} training samples; keep at least one"),
            ));
        }
        Ok(ForgetSet {
            dataset: data.spec.train_label(),
            train_size: n,
            kind: "file".into(),
            class: None,
            seed: 0,
            size: indices.len(),
            indices,
        })
    }

    /// Reads training indices from a file in any of the formats users have:
    /// amun's JSON (a `ForgetSet`), a JSON array, or text with one index per
    /// line — optionally CSV with a header, where the column `unlearn_idx`
    /// (the AMUN authors' files), `index` or `idx` is used, or the only one.
    pub fn read_indices(path: &Path) -> Result<Vec<i64>> {
        let text = std::fs::read_to_string(path).map_err(|err| Error::Io {
            path: path.to_path_buf(),
            err,
        })?;
        let t = text.trim_start();
        if t.starts_with('{') {
            let set: ForgetSet = serde_json::from_str(&text)
                .map_err(|e| Error::format(path, format!("invalid forget-set JSON: {e}")))?;
            set.validate(path)?;
            return Ok(set.indices);
        }
        if t.starts_with('[') {
            return serde_json::from_str::<Vec<i64>>(&text).map_err(|e| {
                Error::format(
                    path,
                    format!("expected a JSON array of integer indices: {e}"),
                )
            });
        }
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty());
        let Some((first_no, first)) = lines.next() else {
            return Err(Error::format(
                path,
                "the forget set is empty: no index in the file",
            ));
        };
        let split = |l: &str| -> Vec<String> {
            l.split([',', '\t', ';'])
                .map(|c| c.trim().trim_matches('"').to_string())
                .collect()
        };
        let head = split(first);
        let header = head.iter().any(|c| c.parse::<i64>().is_err());
        let column = if header {
            match head
                .iter()
                .position(|c| matches!(c.as_str(), "unlearn_idx" | "index" | "idx" | "indices"))
            {
                Some(c) => c,
                None if head.len() == 1 => 0,
                None => {
                    return Err(Error::format(
                        path,
                        format!(
                            "line {first_no}: a header of {} columns ({}) without unlearn_idx, index or idx",
                            head.len(),
                            head.join(", ")
                        ),
                    ));
                }
            }
        } else {
            0
        };
        let mut out = Vec::new();
        let mut parse = |no: usize, l: &str| -> Result<()> {
            let cells = split(l);
            let cell = cells.get(column).ok_or_else(|| {
                Error::format(path, format!("line {no}: no column {}", column + 1))
            })?;
            let v = cell.parse::<i64>().map_err(|_| {
                Error::format(path, format!("line {no}: '{cell}' is not an integer index"))
            })?;
            out.push(v);
            Ok(())
        };
        if !header {
            parse(first_no, first)?;
        }
        for (no, l) in lines {
            parse(no, l)?;
        }
        Ok(out)
    }

    /// Reads and validates a forget file.
    pub fn read(path: &Path) -> Result<ForgetSet> {
        let set: ForgetSet = fsutil::read_json(path)?;
        set.validate(path)?;
        Ok(set)
    }

    /// Writes the forget file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        fsutil::write_json(path, self)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if self.indices.is_empty() {
            return Err(Error::format(
                path,
                "the forget set is empty: it lists no training index",
            ));
        }
        if self.size != self.indices.len() {
            return Err(Error::format(
                path,
                format!(
                    "size says {} but {} indices are listed",
                    self.size,
                    self.indices.len()
                ),
            ));
        }
        for w in self.indices.windows(2) {
            if w[0] == w[1] {
                return Err(Error::format(
                    path,
                    format!("index {} is listed twice", w[0]),
                ));
            }
            if w[0] > w[1] {
                return Err(Error::format(
                    path,
                    format!("indices must be sorted ({} comes before {})", w[0], w[1]),
                ));
            }
        }
        if let Some(&bad) = self
            .indices
            .iter()
            .find(|&&i| i < 0 || i as usize >= self.train_size)
        {
            return Err(Error::format(
                path,
                format!(
                    "index {bad} is out of range for a training set of {}",
                    self.train_size
                ),
            ));
        }
        Ok(())
    }

    /// Checks that this set was made for `data`.
    pub fn check_matches(&self, data: &Dataset, path: &Path) -> Result<()> {
        let label = data.spec.train_label();
        if self.dataset != label || self.train_size != data.train.len() {
            return Err(Error::format(
                path,
                format!(
                    "forget set is for {} ({} training samples), but the data is {} ({})",
                    self.dataset,
                    self.train_size,
                    label,
                    data.train.len()
                ),
            ));
        }
        Ok(())
    }

    /// The training indices not in the forget set, sorted.
    pub fn retain_indices(&self) -> Vec<i64> {
        let mut forget = self.indices.iter().peekable();
        (0..self.train_size as i64)
            .filter(|i| {
                while forget.peek().is_some_and(|&&f| f < *i) {
                    forget.next();
                }
                forget.peek() != Some(&i)
            })
            .collect()
    }
}

fn draw(n: usize, k: usize, seed: u64) -> Result<Vec<i64>> {
    if n < 2 {
        return Err(Error::invalid(
            "forget",
            "the training set needs at least 2 samples",
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Ok(sample(&mut rng, n, k)
        .into_iter()
        .map(|i| i as i64)
        .collect())
}
