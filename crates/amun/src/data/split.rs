//! Forget sets: which training samples a deletion request removes.
use super::{Dataset, IndexSet};
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
    /// That class's name in the data the set was made for: a renamed class
    /// folder gives its label to another class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Seed the random choice was drawn with.
    pub seed: u64,
    /// Number of indices.
    pub size: usize,
    /// Sorted, distinct training indices.
    pub indices: Vec<i64>,
    /// Content sha256 of the training split the indices index (see
    /// [`crate::data::DataContent`]) for data outside amun's registry: what
    /// ties the set to its data whatever the folder's path, so a copy is
    /// accepted and changed data refused. Absent for registry datasets and
    /// in files of an older amun (then only the path is compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_sha256: Option<String>,
}

impl ForgetSet {
    /// The set of `indices` (sorted, distinct) of `dataset`'s training
    /// split of `train_size` samples, made by amun itself (`kind` says
    /// how): no seed, class or content hash.
    pub fn of_indices(
        dataset: String,
        train_size: usize,
        kind: &str,
        indices: Vec<i64>,
    ) -> ForgetSet {
        ForgetSet {
            dataset,
            train_size,
            kind: kind.into(),
            class: None,
            class_name: None,
            seed: 0,
            size: indices.len(),
            indices,
            train_sha256: None,
        }
    }

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
                    data.class_index(&c.to_string())?;
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
            class_name: class.and_then(|c| data.classes.get(c as usize).cloned()),
            seed,
            size: indices.len(),
            indices,
            train_sha256: train_sha256(data),
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
        let free = IndexSet::new(taken.iter().copied()).complement(n);
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
            class_name: None,
            seed,
            size: indices.len(),
            indices,
            train_sha256: train_sha256(data),
        })
    }

    /// A forget set of the given training indices (in any order; the file
    /// they came from is named in errors): every index in range, none
    /// twice, at least one, and at least one sample left.
    pub fn from_indices(data: &Dataset, indices: Vec<i64>, source: &Path) -> Result<ForgetSet> {
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
        let indices = IndexSet::unique(indices)
            .map_err(|i| Error::format(source, format!("index {i} is listed twice")))?
            .into_vec();
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
            class_name: None,
            seed: 0,
            size: indices.len(),
            indices,
            train_sha256: train_sha256(data),
        })
    }

    /// Reads the forget set at `path` for `data`, in any format
    /// [`ForgetFile::read`] takes: amun's JSON must have been made for this
    /// dataset and slice; a bare list of indices becomes a set of kind
    /// `file`.
    pub fn load(path: &Path, data: &Dataset) -> Result<ForgetSet> {
        ForgetFile::read(path)?.resolve(data, path)
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

    /// Checks that this set was made for `data`: by the content of its
    /// training split when the set records it (whatever the data's path: a
    /// copy passes, changed data is refused), else by the dataset's name
    /// and slice, as files of an older amun were; a class set's class by
    /// its name too.
    pub fn check_matches(&self, data: &Dataset, path: &Path) -> Result<()> {
        let label = data.spec.train_label();
        let now = data.content().map(|c| c.train.as_str());
        match (self.train_sha256.as_deref(), now) {
            (Some(rec), Some(now)) if rec != now || self.train_size != data.train.len() => {
                let (now, rec) = crate::fsutil::short_pair(now, rec);
                return Err(Error::format(
                    path,
                    format!(
                        "forget set was made for other training data than {label} holds \
                         (content sha256 {}…, {} samples; the set records {}…, {} samples of \
                         {}){}: its indices would name other samples; restore the data the set \
                         was made for, or make the forget set again on this data (`amun split`)",
                        now,
                        data.train.len(),
                        rec,
                        self.train_size,
                        self.dataset,
                        self.class_moved(data)
                            .map_or(String::new(), |m| format!("; {m}"))
                    ),
                ));
            }
            (Some(_), Some(_)) => {}
            (rec, _) if self.dataset != label || self.train_size != data.train.len() => {
                if self.of_registry_data() != data.content().is_none() {
                    return Err(self.other_kind_of_data(data, path));
                }
                if self.dataset == label && data.content().is_some() {
                    return Err(self.changed_in_place(data, path));
                }
                // Only the path can be compared: say how a copy is accepted.
                let hint = match (rec, now) {
                    (None, Some(_)) => format!(
                        "; the set records no content hash of its data (an older amun wrote \
                         it), so a copy of that data is not recognised: `amun split --from {} \
                         --out NEW` with the data it was made for writes it with one, which a \
                         copy then accepts",
                        path.display()
                    ),
                    _ => String::new(),
                };
                return Err(Error::format(
                    path,
                    format!(
                        "forget set is for {} ({} training samples), but the data is {} ({}){hint}",
                        self.dataset,
                        self.train_size,
                        label,
                        data.train.len()
                    ),
                ));
            }
            _ => {}
        }
        self.check_class(data, path)
    }

    /// That a class set's indices are `data`'s samples of its class and its
    /// class number still has the name it records: what every command that
    /// takes the set for `data` checks (`registry add` too: hostile15
    /// SR_fc_name, N31).
    pub fn check_class(&self, data: &Dataset, path: &Path) -> Result<()> {
        self.check_class_samples(data, path)?;
        if let Some(moved) = self.class_moved(data) {
            // A dataset amun fetches has no class folders and its classes
            // never change: the set was edited (hostile15 N24).
            let remedy = if builtin(data) {
                "its classes never change, so the set's class was edited: make the forget set \
                 again"
            } else {
                "give the class folder its name back, or make the forget set again"
            };
            return Err(Error::format(
                path,
                format!(
                    "a class forget set, but {moved}: it would forget another class than the \
                     one it was made for; {remedy} (`amun split --class`)"
                ),
            ));
        }
        Ok(())
    }

    /// Whether the set was made for one of amun's registry datasets
    /// (`mnist[train:1000]`), which no content hash ties sets to, rather
    /// than a user's folder or files.
    fn of_registry_data(&self) -> bool {
        let name = self.dataset.split('[').next().unwrap_or(&self.dataset);
        super::Registry::from_name(name).is_some()
    }

    /// A registry dataset's set given with a user's data, or the other way
    /// round (hostile12 N16/N29): other data, which no `amun split --from`
    /// can mend — a registry set never records a content hash.
    fn other_kind_of_data(&self, data: &Dataset, path: &Path) -> Error {
        // Not "amun's registry dataset", which read as the deletion
        // registry (hostile13 N16).
        let what = |dataset: &str| {
            let name = dataset.split('[').next().unwrap_or(dataset);
            match super::Registry::from_name(name) {
                Some(super::Registry::Mnist) => "the MNIST dataset amun fetches",
                Some(super::Registry::Cifar10) => "the CIFAR-10 dataset amun fetches",
                None => "the data of a folder or files",
            }
        };
        Error::format(
            path,
            format!(
                "forget set is for {} ({} training samples, {}), but the data is {} ({}, {}): \
                 other data, whose samples its indices do not name; make a forget set of this \
                 data (`amun split --dataset {}`), or give the data the set was made for",
                self.dataset,
                self.train_size,
                what(&self.dataset),
                data.spec.train_label(),
                data.train.len(),
                what(&data.spec.dataset),
                data.spec.dataset
            ),
        )
    }

    /// A set of a folder whose training split, at the same path, holds
    /// another number of samples now (hostile13 N21b/F14: it was called a
    /// copy, and the advice to seal it on the data it was made for looped).
    fn changed_in_place(&self, data: &Dataset, path: &Path) -> Error {
        Error::format(
            path,
            format!(
                "forget set is for {} with {} training samples, which holds {} now: the data at \
                 that path changed since the set was made (images added or removed), so its \
                 indices would name other samples; restore the data, or make the forget set \
                 again on it (`amun split --dataset {}`)",
                self.dataset,
                self.train_size,
                data.train.len(),
                data.spec.dataset
            ),
        )
    }

    /// still ties a set without a content hash or class name (an older
    /// amun's) to its data when a class folder was renamed or an image
    /// added (hostile12 N21).
    fn check_class_samples(&self, data: &Dataset, path: &Path) -> Result<()> {
        let Some(c) = self.class.filter(|_| self.kind == "class") else {
            return Ok(());
        };
        let labels = data.train.label_vec();
        let same = self.indices.len() == labels.iter().filter(|&&l| l == c).count()
            && (self.indices.iter()).all(|&i| labels.get(i as usize) == Some(&c));
        if same {
            return Ok(());
        }
        let why = if builtin(data) {
            "the set was edited or made for other data (a dataset amun fetches never \
             changes); make the forget set again"
        } else {
            "the data changed since the set was made (a class folder renamed, images added or \
             removed); restore the data, or make the forget set again"
        };
        Err(Error::format(
            path,
            format!(
                "a class forget set of class {c}{}, but its {} indices are not the training \
                 samples of class {c} ({}) in {}: {why} (`amun split --class`)",
                self.class_name
                    .as_ref()
                    .map_or(String::new(), |n| format!(" ('{n}')")),
                self.indices.len(),
                data.classes
                    .get(c as usize)
                    .map_or("no such class".to_string(), |n| format!("now '{n}'")),
                data.spec.train_label()
            ),
        ))
    }

    /// A warning when nothing ties this set to the content of `data` (a
    /// user's folder or files): a set of an older amun, which records no
    /// content hash, is matched by the folder's path alone, so a renamed
    /// class folder or a replaced image makes its indices name other
    /// samples unseen (hostile12 N21). `None` when the set is sealed or
    /// the data is a registry dataset (checked on every load).
    pub(crate) fn unsealed_warning(&self, data: &Dataset, path: &Path) -> Option<String> {
        if self.train_sha256.is_some() || data.content().is_none() {
            return None;
        }
        let class = match self.class_by_number_only(data) {
            Some((c, now)) => {
                format!("; it names class {c} by its number only, which is '{now}' in the data now")
            }
            None => String::new(),
        };
        Some(format!(
            "warning: {} records no content hash of its data (an older amun wrote it): nothing \
             checks that {} still holds the samples it was made for (a renamed class folder or \
             a replaced image makes its indices name other samples){class}; `amun split --from \
             {} --out NEW` on the data it was made for seals it",
            path.display(),
            data.spec.train_label(),
            path.display()
        ))
    }

    /// A warning before `amun split --from` seals this set onto `data`: a
    /// class set that names its class by number only (an older amun's) is
    /// sealed with the name the number has in `data` now, which is another
    /// class if a class folder was renamed since the set was made — and
    /// from then on nothing could tell (hostile13 F15). `None` for a set
    /// that names its class, for other kinds, and for registry datasets,
    /// whose classes never change.
    pub fn sealing_warning(&self, data: &Dataset, path: &Path) -> Option<String> {
        if self.kind != "class" {
            return None;
        }
        data.content()?;
        let (c, now) = self.class_by_number_only(data)?;
        Some(format!(
            "warning: {} names class {c} by its number only; it is sealed as class {c} '{now}', \
             the class at that number in {} now: if the set was made for another class (a \
             class folder renamed since), the sealed set names '{now}' for good — check that \
             '{now}' is the class it was made for, or make the set again (`amun split --class \
             NAME`)",
            path.display(),
            data.spec.train_label()
        ))
    }

    /// The class of a set that names it by number only (an older amun's),
    /// with the name that number has in `data` now.
    fn class_by_number_only<'d>(&self, data: &'d Dataset) -> Option<(i64, &'d str)> {
        let c = self.class.filter(|_| self.class_name.is_none())?;
        Some((c, data.classes.get(c as usize).map_or("?", |n| n.as_str())))
    }

    /// `class 7 was 'three' when the set was made and is 'six' in this data
    /// ('three' is class 0 now)` when a class set's label names another
    /// class in `data`.
    fn class_moved(&self, data: &Dataset) -> Option<String> {
        let (c, name) = (self.class?, self.class_name.as_ref()?);
        let now = data.classes.get(c as usize);
        if now == Some(name) {
            return None;
        }
        let now = now.map_or("no class".to_string(), |n| format!("'{n}'"));
        let there = match data.classes.iter().position(|n| n == name) {
            Some(i) => format!("'{name}' is class {i} now"),
            None => format!("no class is named '{name}' now"),
        };
        Some(format!(
            "class {c} was '{name}' when the set was made and is {now} in this data ({there})"
        ))
    }

    /// This set with the content of `data`'s training split recorded, when
    /// the set records none (a file of an older amun, matched by its path):
    /// what `amun split --from` writes, so a copy of the data accepts it.
    pub fn with_content_of(mut self, data: &Dataset) -> ForgetSet {
        if self.train_sha256.is_none() {
            self.train_sha256 = train_sha256(data);
        }
        if self.class_name.is_none() {
            self.class_name = (self.class).and_then(|c| data.classes.get(c as usize).cloned());
        }
        self
    }

    /// The training indices not in the forget set, sorted.
    pub fn retain_indices(&self) -> Vec<i64> {
        IndexSet::new(self.indices.iter().copied())
            .complement(self.train_size)
            .into_vec()
    }
}

/// A forget-set file as read, before it is matched to the data.
#[derive(Debug, Clone, PartialEq)]
pub enum ForgetFile {
    /// amun's JSON: a set that names its own dataset and slice.
    Set(ForgetSet),
    /// A bare list of training indices (the AMUN authors' CSV, a CSV with
    /// an index column, one index per line, a JSON array), in file order.
    Indices(Vec<i64>),
}

/// Header names of the index column, in the order one is preferred when a
/// header has several.
const INDEX_HEADERS: [&str; 4] = ["unlearn_idx", "index", "idx", "indices"];

impl ForgetFile {
    /// Reads a forget-set file in any of the formats users have: amun's
    /// JSON (a `ForgetSet`), a JSON array, or CSV/text read by the `csv`
    /// crate (quotes, commas or tabs) — one index per line, or a table
    /// whose header names the index column (`unlearn_idx`, the AMUN
    /// authors' files; `index`, `idx`, `indices`). What could be read two
    /// ways (`4,5,6` on a line of a headerless list, a first line that is
    /// neither an index nor a known header) is refused, naming the line.
    pub fn read(path: &Path) -> Result<ForgetFile> {
        let text = crate::fsutil::read_list_file(path)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let t = text.trim_start();
        if t.starts_with('{') {
            let set: ForgetSet = serde_json::from_str(text)
                .map_err(|e| Error::format(path, format!("invalid JSON for a forget set: {e}")))?;
            set.validate(path)?;
            return Ok(ForgetFile::Set(set));
        }
        if t.starts_with('[') {
            return serde_json::from_str::<Vec<i64>>(text)
                .map(ForgetFile::Indices)
                .map_err(|e| {
                    Error::format(
                        path,
                        format!("expected a JSON array of integer indices: {e}"),
                    )
                });
        }
        read_list(text, path).map(ForgetFile::Indices)
    }

    /// The forget set this file gives for `data`: amun's JSON only when it
    /// was made for this dataset and slice (as every `--forget` requires);
    /// a list checked against the training split.
    pub fn resolve(self, data: &Dataset, path: &Path) -> Result<ForgetSet> {
        match self {
            ForgetFile::Set(set) => {
                set.check_matches(data, path)?;
                Ok(set)
            }
            ForgetFile::Indices(indices) => ForgetSet::from_indices(data, indices, path),
        }
    }

    /// [`resolve`](Self::resolve) for a command that takes the set as its
    /// forget set or exclusion, with the warning every front end gives for
    /// it ([`ForgetSet::unsealed_warning`]: an older amun's set, which
    /// nothing ties to its data's content), so the CLI and Python warn
    /// alike (hostile15 P32).
    pub fn resolve_warned(
        self,
        data: &Dataset,
        path: &Path,
    ) -> Result<(ForgetSet, Option<String>)> {
        let set = self.resolve(data, path)?;
        let warning = set.unsealed_warning(data, path);
        Ok((set, warning))
    }
}

/// The indices of a CSV or plain list (see [`ForgetFile::read`]).
fn read_list(text: &str, path: &Path) -> Result<Vec<i64>> {
    let known = format!(
        "{} or {}",
        INDEX_HEADERS[..INDEX_HEADERS.len() - 1].join(", "),
        INDEX_HEADERS[INDEX_HEADERS.len() - 1]
    );
    let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    // A tab-separated file has tabs and no commas on its first line.
    let delimiter = if first_line.contains('\t') && !first_line.contains(',') {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let at = |line: u64, msg: String| Error::format(path, format!("line {line}: {msg}"));
    let is_index = |s: &str| s.parse::<i64>().is_ok();
    let hint = |s: &str| {
        if s.contains([';', ' ']) {
            " (columns are separated by commas or tabs; for a list, give one index per line)"
        } else {
            ""
        }
    };
    // (index column, its header name) once the first line is read.
    let mut column: Option<(usize, Option<String>)> = None;
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            at(line, format!("not readable as CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let cells: Vec<&str> = record.iter().collect();
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        let (col, name) = match &column {
            Some(c) => c.clone(),
            None => {
                let c = if cells.iter().all(|c| is_index(c)) {
                    (0, None)
                } else if let Some(i) = INDEX_HEADERS
                    .iter()
                    .find_map(|h| cells.iter().position(|c| c == h))
                {
                    (i, Some(cells[i].to_string()))
                } else if cells.len() == 1 {
                    return Err(at(
                        line,
                        format!(
                            "'{}' is neither an integer index nor a known header ({known}){}",
                            cells[0],
                            hint(cells[0])
                        ),
                    ));
                } else {
                    return Err(at(
                        line,
                        format!(
                            "a header of {} columns ({}) without {known}",
                            cells.len(),
                            cells.join(", ")
                        ),
                    ));
                };
                column = Some(c.clone());
                if c.1.is_some() {
                    continue;
                }
                c
            }
        };
        match &name {
            // A list without a header: one index per line, or it is
            // unclear whether `4,5,6` means three indices or one row.
            None if cells.len() > 1 => {
                return Err(at(
                    line,
                    format!(
                        "{} values on one line ({}): give one index per line, or a header \
                         naming the index column ({known})",
                        cells.len(),
                        cells.join(", ")
                    ),
                ));
            }
            Some(n) if cells.get(col).is_none_or(|c| c.is_empty()) => {
                return Err(at(line, format!("no value in column '{n}'")));
            }
            _ => {}
        }
        let cell = cells[col];
        let v = cell.parse::<i64>().map_err(|_| {
            at(
                line,
                format!("'{cell}' is not an integer index{}", hint(cell)),
            )
        })?;
        out.push(v);
    }
    if out.is_empty() {
        return Err(Error::format(
            path,
            "the forget set is empty: no index in the file",
        ));
    }
    Ok(out)
}

/// What a forget set records of `data`'s training split (see
/// [`ForgetSet::train_sha256`]).
fn train_sha256(data: &Dataset) -> Option<String> {
    data.content().map(|c| c.train.clone())
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

/// Whether `data` is a dataset amun fetches (MNIST, CIFAR-10), which has
/// no class folders and never changes.
fn builtin(data: &Dataset) -> bool {
    let name = data
        .spec
        .dataset
        .split('[')
        .next()
        .unwrap_or(&data.spec.dataset);
    super::Registry::from_name(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> std::result::Result<Vec<i64>, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.csv");
        std::fs::write(&p, text).unwrap();
        match ForgetFile::read(&p).map_err(|e| e.to_string())? {
            ForgetFile::Indices(v) => Ok(v),
            ForgetFile::Set(s) => Ok(s.indices),
        }
    }

    #[test]
    fn lists_are_read_as_csv_and_ambiguity_is_refused_by_line() {
        assert_eq!(read("unlearn_idx\n3\n4\n"), Ok(vec![3, 4]));
        // pandas' to_csv: an unnamed index column before the authors' one.
        assert_eq!(read(",unlearn_idx\n0,12\n1,7\n"), Ok(vec![12, 7]));
        assert_eq!(read("\u{feff}idx\tlabel\n3\t1\n"), Ok(vec![3]));
        assert_eq!(read("3\n\n 4 \n"), Ok(vec![3, 4]));
        assert_eq!(read("[5, 2]"), Ok(vec![5, 2]));
        // A quoted field is one field: its commas shift nothing.
        assert_eq!(read("name,idx\n\"a,7,b\",3\n"), Ok(vec![3]));
        let e = read("\"a,7,b\",3\n").unwrap_err();
        assert!(
            e.contains("line 1") && e.contains("without unlearn_idx"),
            "{e}"
        );
        // A first line that is neither an index nor a known header is not
        // dropped as a "header".
        let e = read("foo\n4\n5\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("'foo'"), "{e}");
        // Three indices or one row of three columns: refused.
        let e = read("4,5,6\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("3 values"), "{e}");
        let e = read("1\n2,3\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("2 values"), "{e}");
        let e = read("4;5;6\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("commas or tabs"), "{e}");
        let e = read("idx\n3\nx\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("'x'"), "{e}");
        let e = read("idx\n").unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
}
