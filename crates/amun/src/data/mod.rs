//! Datasets: fetching from registries, reading standard formats into
//! in-memory uint8 tensors, forget sets, and batched augmentation.
//!
//! Every split is held as `images: [N,C,H,W] uint8` and `labels: [N] int64`;
//! images become `f32` in `[0,1]` only batch by batch, on the model's device.
//! Nothing here normalises with a mean/std (AMUN's attack works in pixel space).

mod augment;
mod batches;
mod cifar;
mod fetch;
pub mod folder;
mod idx;
mod index_set;
mod mnist;
mod split;

pub use augment::{Augment, augment_batch};
pub use batches::{Batch, EpochIter, Part, TrainSet, eval_batches};
pub use fetch::{FetchOutcome, Registry, check_data_dir, default_data_dir, fetch, sha256_file};
pub use index_set::IndexSet;
pub use split::{ForgetFile, ForgetSet, ForgetSpec};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// One split of a dataset, in memory.
#[derive(Debug)]
pub struct Split {
    /// `[N,C,H,W]` uint8.
    pub images: Tensor,
    /// `[N]` int64 class indices.
    pub labels: Tensor,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// Whether the split holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples at `indices`, in that order (copies).
    pub fn select(&self, indices: &[i64]) -> Split {
        let idx = Tensor::from_slice(indices).to_device(self.labels.device());
        Split {
            images: self.images.index_select(0, &idx),
            labels: self.labels.index_select(0, &idx),
        }
    }

    /// The first `n` samples (no copy).
    pub fn prefix(&self, n: usize) -> Split {
        let n = n.min(self.len()) as i64;
        Split {
            images: self.images.narrow(0, 0, n),
            labels: self.labels.narrow(0, 0, n),
        }
    }

    /// The same split on `device`.
    pub fn to_device(&self, device: Device) -> Split {
        Split {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
        }
    }

    /// Labels as a plain vector.
    pub fn label_vec(&self) -> Vec<i64> {
        Vec::<i64>::try_from(&self.labels.to_device(Device::Cpu)).expect("int64 labels")
    }

    /// The rows of `self` whose image also appears in `other` (byte for
    /// byte), as `(row in self, row in other)` pairs, sorted.
    pub fn shared_images(&self, other: &Split) -> Vec<(usize, usize)> {
        use std::collections::HashMap;
        let rows = |s: &Split| -> Vec<Vec<u8>> {
            let t = s.images.to_device(Device::Cpu).contiguous();
            let per: i64 = t.size()[1..].iter().product();
            let flat =
                Vec::<u8>::try_from(t.to_kind(Kind::Uint8).flatten(0, -1)).unwrap_or_default();
            flat.chunks(per.max(1) as usize)
                .map(<[u8]>::to_vec)
                .collect()
        };
        let theirs: HashMap<Vec<u8>, usize> = rows(other)
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r, i))
            .collect();
        rows(self)
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| theirs.get(&r).map(|&j| (i, j)))
            .collect()
    }

    /// sha256 of its images and labels (kinds, shapes and bytes).
    pub fn content_sha256(&self) -> String {
        tensors_sha256(&[&self.images, &self.labels])
    }

    /// Number of samples per class (`num_classes` entries).
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for l in self.label_vec() {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// Converts uint8 images to `f32` in `[0,1]`; float images pass through.
pub fn to_unit_float(images: &Tensor) -> Tensor {
    if images.kind() == Kind::Uint8 {
        images.to_kind(Kind::Float) / 255.0
    } else {
        images.to_kind(Kind::Float)
    }
}

/// A dataset: train and test splits plus class names.
#[derive(Debug)]
pub struct Dataset {
    /// How the dataset was named and limited; recorded in every artifact.
    pub spec: DataSpec,
    /// Class names, index = label.
    pub classes: Vec<String>,
    pub train: Split,
    pub test: Split,
    /// [`Dataset::content`], once computed.
    content: std::sync::OnceLock<Option<DataContent>>,
}

/// sha256 of a dataset's content as loaded (images and labels, the slice
/// applied), split by split: a changed training split re-points forget-set
/// indices, a changed test split changes what evaluations measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataContent {
    pub train: String,
    pub test: String,
}

/// sha256 over tensors' kinds, shapes and bytes, in order.
pub(crate) fn tensors_sha256(tensors: &[&Tensor]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for t in tensors {
        let t = t.to_device(Device::Cpu).contiguous();
        h.update(format!("{:?}{:?}", t.kind(), t.size()).as_bytes());
        let bytes = t.flatten(0, -1).view_dtype(Kind::Uint8);
        h.update(Vec::<u8>::try_from(bytes).unwrap_or_default());
    }
    format!("{:x}", h.finalize())
}

impl Dataset {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The label a user named as `given`: its number, or its class name (a
    /// folder dataset's classes are named by their folders). The error
    /// lists the labels there are.
    pub fn class_index(&self, given: &str) -> Result<i64> {
        let by_name = self
            .classes
            .iter()
            .position(|c| c == given)
            .map(|i| i as i64);
        let by_label = (given.trim().parse::<i64>().ok())
            .filter(|c| (0..self.num_classes() as i64).contains(c));
        let label = match (by_name, by_label) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::invalid(
                    "class",
                    format!(
                        "{given}: is both label {b} ({}) and the name of label {a}; rename the \
                         class folder or give the other class's name",
                        self.classes[b as usize]
                    ),
                ));
            }
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => {
                return Err(Error::invalid(
                    "class",
                    format!(
                        "{given}: {} has no such class; give a label from 0 to {}{}",
                        self.spec.train_label(),
                        self.num_classes().saturating_sub(1),
                        self.class_list()
                    ),
                ));
            }
        };
        Ok(label)
    }

    /// ` or a name: 0 airplane, 1 automobile, …` (the first 20), or nothing
    /// where the names are the labels (MNIST's `0`…`9`).
    fn class_list(&self) -> String {
        let numbered = (self.classes.iter().enumerate()).all(|(i, c)| *c == i.to_string());
        if numbered {
            return String::new();
        }
        let mut s: Vec<String> = (self.classes.iter().enumerate())
            .take(20)
            .map(|(i, c)| format!("{i} {c}"))
            .collect();
        if self.num_classes() > 20 {
            s.push(format!("… ({} in all)", self.num_classes()));
        }
        format!(" or a name: {}", s.join(", "))
    }

    /// `[C, H, W]` of one image.
    pub fn image_shape(&self) -> [i64; 3] {
        let s = self.train.images.size();
        [s[1], s[2], s[3]]
    }

    /// The pool of membership inference: the training split followed by
    /// the test split (test row j is pool row `train.len() + j`).
    pub fn pool(&self) -> Split {
        Split {
            images: Tensor::cat(&[&self.train.images, &self.test.images], 0),
            labels: Tensor::cat(&[&self.train.labels, &self.test.labels], 0),
        }
    }

    /// The pool's labels alone (no image copy).
    pub fn pool_labels(&self) -> Tensor {
        Tensor::cat(&[&self.train.labels, &self.test.labels], 0)
    }

    /// sha256 of the content of both splits (images and labels, in order):
    /// what tells two datasets apart whatever their names or paths.
    pub fn content_sha256(&self) -> String {
        tensors_sha256(&[
            &self.train.images,
            &self.train.labels,
            &self.test.images,
            &self.test.labels,
        ])
    }

    /// The content hash of each split of data outside amun's registry (a
    /// user's folder or files, which nothing else pins), computed once;
    /// `None` for registry datasets, whose files are sha256-checked on
    /// every load. What a sidecar records of its data.
    pub fn content(&self) -> Option<&DataContent> {
        self.content
            .get_or_init(|| {
                Registry::from_name(&self.spec.dataset)
                    .is_none()
                    .then(|| DataContent {
                        train: self.train.content_sha256(),
                        test: self.test.content_sha256(),
                    })
            })
            .as_ref()
    }

    /// Moves both splits to `device` (kept there for the whole run).
    pub fn to_device(&self, device: Device) -> Dataset {
        Dataset {
            spec: self.spec.clone(),
            classes: self.classes.clone(),
            train: self.train.to_device(device),
            test: self.test.to_device(device),
            content: self.content.clone(),
        }
    }
}

/// Which dataset, and how much of it. Serialised into forget sets and
/// checkpoint sidecars, so an artifact can be matched to its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// `cifar10`, `mnist` (the 5,000-image MNIST) or a folder path in one of
    /// the standard formats (CIFAR-10 binary, IDX, image folder).
    pub dataset: String,
    /// Use only the first N training images (registry datasets are stored
    /// in an order where every prefix is class-balanced or random).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Use only the first N test images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_limit: Option<usize>,
}

impl DataSpec {
    /// The whole of a named dataset.
    pub fn new(dataset: impl Into<String>) -> Self {
        DataSpec {
            dataset: dataset.into(),
            train_limit: None,
            test_limit: None,
        }
    }

    /// A dataset named as records name it: a registry name as it is, a
    /// folder as an absolute path (resolved against `base` when relative),
    /// so the record resolves from any working directory.
    pub fn resolve(name: &str, base: &Path) -> String {
        if Registry::from_name(name).is_some() {
            return name.to_string();
        }
        let p = Path::new(name);
        let joined = if p.is_relative() {
            base.join(p)
        } else {
            p.to_path_buf()
        };
        std::path::absolute(&joined)
            .unwrap_or(joined)
            .display()
            .to_string()
    }

    /// Limits the training split to its first `n` images.
    pub fn train_limit(mut self, n: Option<usize>) -> Self {
        self.train_limit = n;
        self
    }

    /// Limits the test split to its first `n` images.
    pub fn test_limit(mut self, n: Option<usize>) -> Self {
        self.test_limit = n;
        self
    }

    /// Names the training split, such as `cifar10[train:10000]`: what forget
    /// sets refer to (their indices index this split).
    pub fn train_label(&self) -> String {
        match self.train_limit {
            Some(n) => format!("{}[train:{n}]", self.dataset),
            None => self.dataset.clone(),
        }
    }

    /// A short human label such as `cifar10[train:10000][test:1000]`.
    pub fn label(&self) -> String {
        let mut s = self.train_label();
        if let Some(n) = self.test_limit {
            s.push_str(&format!("[test:{n}]"));
        }
        s
    }

    /// Loads the dataset. Registry datasets (`cifar10`, `mnist`) are read
    /// from `data_dir` (see [`default_data_dir`]) and must have been fetched;
    /// their files are sha256-checked on every load.
    pub fn load(&self, data_dir: &Path) -> Result<Dataset> {
        if self.train_limit == Some(0) {
            return Err(Error::invalid("train-limit", "expected at least 1 image"));
        }
        if self.test_limit == Some(0) {
            return Err(Error::invalid(
                "test-limit",
                "expected at least 1 image (evaluation and audits need test images)",
            ));
        }
        let (classes, train, test) = match Registry::from_name(&self.dataset) {
            Some(reg) => {
                let dir = reg.verified_dir(data_dir)?;
                match reg {
                    Registry::Cifar10 => cifar::read_dir(&dir)?,
                    Registry::Mnist => mnist::read_mnist5k(&dir.join(mnist::MNIST5K_FILE))?,
                }
            }
            None => read_path(Path::new(&self.dataset))?,
        };
        for (flag, limit, have) in [
            ("train-limit", self.train_limit, train.len()),
            ("test-limit", self.test_limit, test.len()),
        ] {
            if let Some(n) = limit
                && n > have
            {
                return Err(Error::invalid(
                    flag,
                    format!(
                        "{n} exceeds the {have} {} images of {}",
                        &flag[..flag.len() - 6],
                        self.dataset
                    ),
                ));
            }
        }
        let train = match self.train_limit {
            Some(n) => train.prefix(n),
            None => train,
        };
        let test = match self.test_limit {
            Some(n) => test.prefix(n),
            None => test,
        };
        check_labels(&self.dataset, &train, classes.len())?;
        check_labels(&self.dataset, &test, classes.len())?;
        Ok(Dataset {
            spec: self.clone(),
            classes,
            train,
            test,
            content: std::sync::OnceLock::new(),
        })
    }
}

impl Dataset {
    /// A dataset a caller holds in memory (the Python binding's tensors):
    /// `[N,C,H,W]` uint8 images and int64 labels in `0..classes.len()`,
    /// checked as a dataset read from disk is. `spec` names it in records.
    pub fn from_splits(
        spec: DataSpec,
        classes: Vec<String>,
        train: Split,
        test: Split,
    ) -> Result<Dataset> {
        for (what, s) in [("training split", &train), ("test split", &test)] {
            let (i, l) = (s.images.size(), s.labels.size());
            let ok = s.images.kind() == tch::Kind::Uint8
                && s.labels.kind() == tch::Kind::Int64
                && i.len() == 4
                && l.len() == 1
                && i[0] == l[0];
            if !ok {
                return Err(Error::invalid(
                    format!("{} {what}", spec.dataset),
                    format!(
                        "expected [N,C,H,W] uint8 images and [N] int64 labels, got {:?} {:?} \
                         and {:?} {:?}",
                        s.images.kind(),
                        i,
                        s.labels.kind(),
                        l
                    ),
                ));
            }
        }
        if !test.is_empty() && train.images.size()[1..] != test.images.size()[1..] {
            return Err(Error::invalid(
                format!("{} test split", spec.dataset),
                format!(
                    "images of shape {:?}; the training split's are {:?}",
                    &test.images.size()[1..],
                    &train.images.size()[1..]
                ),
            ));
        }
        check_labels(&spec.dataset, &train, classes.len())?;
        check_labels(&spec.dataset, &test, classes.len())?;
        Ok(Dataset {
            spec,
            classes,
            train,
            test,
            content: std::sync::OnceLock::new(),
        })
    }
}

/// Where the held-out images of a calibration came from, as the unlearned
/// model's sidecar records it: what an audit must then leave out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HeldOutRecord {
    /// The last `size` of the `test_size` test images of the model's data.
    LastTest { size: usize, test_size: usize },
    /// Both splits of a dataset folder (`size` images), none of them in
    /// the model's data.
    Folder { path: String, size: usize },
}

impl HeldOutRecord {
    /// How many of the last test images of a test split of `test_len`
    /// images an audit must leave out so that its D_T holds none of these
    /// held-out images (D_T is the test split before the left-out ones).
    pub fn audit_holdout(&self, test_len: usize) -> usize {
        match *self {
            HeldOutRecord::LastTest { size, test_size } => {
                test_len.saturating_sub(test_size.saturating_sub(size))
            }
            HeldOutRecord::Folder { .. } => 0,
        }
    }

    /// Says what was held out, for messages.
    pub fn describe(&self) -> String {
        match self {
            HeldOutRecord::LastTest { size, test_size } => {
                format!("the last {size} of its {test_size} test images")
            }
            HeldOutRecord::Folder { path, size } => format!("{size} images of {path}"),
        }
    }
}

/// Data a model never trained on, which calibration compares the forget
/// set with.
#[derive(Debug, Clone, PartialEq)]
pub enum HeldOut {
    /// The last N test images of the model's dataset (audits then leave
    /// them out).
    LastTest(usize),
    /// A dataset folder of other images (both its splits).
    Folder(PathBuf),
    /// The whole test split of the model's data: images the caller set
    /// apart as held out (`amun.unlearn`'s `heldout=`).
    Test,
}

impl HeldOut {
    /// The last `n` test images of `data` (no copy).
    pub fn last_test(data: &Dataset, n: usize) -> Split {
        let t = data.test.len();
        let n = n.min(t) as i64;
        Split {
            images: data.test.images.narrow(0, t as i64 - n, n),
            labels: data.test.labels.narrow(0, t as i64 - n, n),
        }
    }

    /// The held-out split (see [`HeldOut::split`]) with what a sidecar
    /// records of it: what calibration takes.
    pub fn prepare(&self, data: &Dataset, data_dir: &Path) -> Result<(Split, HeldOutRecord)> {
        let split = self.split(data, data_dir)?;
        let record = self.record(data, &split);
        Ok((split, record))
    }

    /// What a sidecar records of this held-out data (`split` is what
    /// [`HeldOut::split`] gave for `data`).
    pub fn record(&self, data: &Dataset, split: &Split) -> HeldOutRecord {
        match self {
            HeldOut::LastTest(n) => HeldOutRecord::LastTest {
                size: *n,
                test_size: data.test.len(),
            },
            HeldOut::Test => HeldOutRecord::LastTest {
                size: data.test.len(),
                test_size: data.test.len(),
            },
            HeldOut::Folder(dir) => HeldOutRecord::Folder {
                path: std::path::absolute(dir)
                    .unwrap_or_else(|_| dir.clone())
                    .display()
                    .to_string(),
                size: split.len(),
            },
        }
    }

    /// The held-out split, on `data`'s device: refused when empty, when it
    /// leaves no test image to audit, when its images do not fit the
    /// model's data, or when it shares an image with the model's training
    /// or test data.
    pub fn split(&self, data: &Dataset, data_dir: &Path) -> Result<Split> {
        let dir = match self {
            HeldOut::LastTest(n) => {
                let t = data.test.len();
                if *n == 0 || *n >= t {
                    return Err(Error::invalid(
                        "holdout-test",
                        format!(
                            "{n}: expected 1..{} (the test split has {t} images)",
                            t.max(1) - 1
                        ),
                    ));
                }
                return Ok(Self::last_test(data, *n));
            }
            HeldOut::Test if data.test.is_empty() => {
                return Err(Error::invalid(
                    "heldout",
                    "calibrate needs held-out data the model never trained on",
                ));
            }
            HeldOut::Test => return Ok(Self::last_test(data, data.test.len())),
            HeldOut::Folder(dir) => dir,
        };
        let what = format!("holdout {}", dir.display());
        // Else the dataset loader would call it an unknown dataset name.
        if !dir.is_dir() {
            return Err(Error::invalid(
                what,
                if dir.exists() {
                    "not a folder; expected a dataset folder of images the model never trained on"
                } else {
                    "no such folder; expected a dataset folder of images the model never trained on"
                },
            ));
        }
        let h = DataSpec::new(dir.display().to_string()).load(data_dir)?;
        // Labels are indices into the sorted class folder names: the same
        // count under other names would permute every label unseen.
        if let Some(why) = classes_differ(&data.classes, &h.classes, &h.spec.label()) {
            return Err(Error::invalid(
                what,
                format!(
                    "the model {why}; give held-out images in class folders named as the \
                     model's"
                ),
            ));
        }
        if h.image_shape() != data.image_shape() {
            return Err(Error::invalid(
                what,
                format!(
                    "{:?} images in {} classes; the model's data has {:?} in {}",
                    h.image_shape(),
                    h.num_classes(),
                    data.image_shape(),
                    data.num_classes()
                ),
            ));
        }
        let all = Split {
            images: Tensor::cat(&[&h.train.images, &h.test.images], 0),
            labels: Tensor::cat(&[&h.train.labels, &h.test.labels], 0),
        };
        if all.is_empty() {
            return Err(Error::invalid(what, "no images"));
        }
        for (split_name, split) in [("training", &data.train), ("test", &data.test)] {
            let shared = all.shared_images(&split.to_device(Device::Cpu));
            if let Some(&(i, j)) = shared.first() {
                return Err(Error::invalid(
                    what,
                    format!(
                        "{} of its images are also in the model's {split_name} data {} (e.g. \
                         held-out image {i} = {split_name} image {j}); held-out data must be unseen \
                         by the model{}",
                        shared.len(),
                        data.spec.label(),
                        if split_name == "test" {
                            " and by the audit"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Ok(all.to_device(data.train.labels.device()))
    }
}

fn check_labels(name: &str, split: &Split, num_classes: usize) -> Result<()> {
    if split.is_empty() {
        return Ok(());
    }
    let max = split.labels.max().int64_value(&[]);
    let min = split.labels.min().int64_value(&[]);
    if min < 0 || max as usize >= num_classes {
        return Err(Error::format(
            name,
            format!("labels must lie in 0..{num_classes}, found {min}..={max}"),
        ));
    }
    Ok(())
}

/// Reads a dataset folder, detecting its format from the files present.
fn read_path(path: &Path) -> Result<(Vec<String>, Split, Split)> {
    let name = path.to_string_lossy();
    if !path.exists() && name.starts_with("tensors(") {
        // The record `amun.train` gives data it was handed as tensors
        // (hostile14 PX1: it read as an unknown dataset name).
        return Err(Error::invalid(
            "dataset",
            format!(
                "the model was trained from Python on in-memory tensors ({name}), which amun \
                 cannot load from their record: give --dataset with the same data, or audit \
                 it in Python with amun.audit(model, data=(images, labels), ...)"
            ),
        ));
    }
    if !path.exists() {
        return Err(Error::invalid(
            "dataset",
            format!(
                "unknown dataset '{}': expected cifar10, mnist, or an existing folder \
                 (CIFAR-10 binary batches, IDX files or <class>/<image> folders)",
                path.display()
            ),
        ));
    }
    if !path.is_dir() {
        return Err(Error::format(path, "expected a dataset folder"));
    }
    if path.join("data_batch_1.bin").exists() || path.join("test_batch.bin").exists() {
        return cifar::read_dir(path);
    }
    if let Some(pair) = idx::find_idx_files(path)? {
        return idx::read_pair(&pair);
    }
    folder::read_image_folder(path)
}

/// The files of the training samples when `spec` names an image folder
/// (`<class>/<image>` files, sample i is file i, the slice applied): how
/// a registry names its samples. `None` for registry datasets and folders
/// of CIFAR-10 batches or IDX files, whose samples have no files.
pub fn sample_files(spec: &DataSpec) -> Result<Option<Vec<PathBuf>>> {
    let path = Path::new(&spec.dataset);
    if Registry::from_name(&spec.dataset).is_some()
        || !path.is_dir()
        || path.join("data_batch_1.bin").exists()
        || path.join("test_batch.bin").exists()
        || idx::find_idx_files(path)?.is_some()
    {
        return Ok(None);
    }
    let mut files = folder::train_files(path)?;
    if let Some(n) = spec.train_limit {
        files.truncate(n);
    }
    Ok(Some(files))
}

/// sha256 over the files of a dataset folder — each file's path inside the
/// folder and its content, in sorted order — without decoding them: what a
/// run folder's steps record of the data they read, so that a renamed class
/// folder or a replaced image makes them stale. `None` for registry
/// datasets, pinned by their files' sha256. Within one process a file is
/// hashed again only when its size or modification time changed.
pub fn files_sha256(spec: &DataSpec) -> Result<Option<String>> {
    use sha2::{Digest, Sha256};
    if Registry::from_name(&spec.dataset).is_some() {
        return Ok(None);
    }
    let root = Path::new(&spec.dataset);
    if !root.is_dir() {
        return Err(Error::invalid(
            "dataset",
            format!(
                "{}: no such folder; expected a dataset folder or cifar10, mnist",
                root.display()
            ),
        ));
    }
    let mut files = Vec::new();
    list_files(root, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(file_facts(f)?.sha256.as_bytes());
        h.update([b'\n']);
    }
    Ok(Some(format!("{:x}", h.finalize())))
}

/// Every file under `dir`, through symbolic links.
fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    use crate::error::IoContext;
    for e in std::fs::read_dir(dir).at(dir)? {
        let p = e.at(dir)?.path();
        if p.is_dir() {
            list_files(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// What one read of a dataset file tells: its sha256 and, for an image,
/// whether its header says colour (what [`folder::channels`] counts).
#[derive(Debug, Clone)]
pub(crate) struct FileFacts {
    pub sha256: String,
    /// `None` for a file that is no image, or whose header cannot be read.
    pub colour: Option<bool>,
}

/// A file's [`FileFacts`], kept for this process on its size and
/// modification time: each process reads every file once, for the data's
/// hash and its channels together (an experiment's config learns the
/// channels before its plan hashes the folder).
pub(crate) fn file_facts(path: &Path) -> Result<FileFacts> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Seen = HashMap<PathBuf, (u64, std::time::SystemTime, FileFacts)>;
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    let io = |err| Error::Io {
        path: path.to_path_buf(),
        err,
    };
    let md = std::fs::metadata(path).map_err(io)?;
    let stamp = (md.len(), md.modified().unwrap_or(std::time::UNIX_EPOCH));
    let seen = SEEN.get_or_init(Default::default);
    if let Some((len, t, facts)) = seen.lock().ok().and_then(|m| m.get(path).cloned())
        && (len, t) == stamp
    {
        return Ok(facts);
    }
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    let colour = if folder::is_image(path) {
        // An image is small: read whole, hashed and its header read from
        // the same bytes.
        let bytes = std::fs::read(path).map_err(io)?;
        sha2::Digest::update(&mut h, &bytes);
        folder::header_colour(path, &bytes)
    } else {
        // Through the hasher's own buffer rather than `sha256_file`'s
        // 1 MiB one per file.
        std::fs::File::open(path)
            .and_then(|mut f| std::io::copy(&mut f, &mut h))
            .map_err(io)?;
        None
    };
    let facts = FileFacts {
        sha256: format!("{:x}", sha2::Digest::finalize(h)),
        colour,
    };
    if let Ok(mut m) = seen.lock() {
        m.insert(path.to_path_buf(), (stamp.0, stamp.1, facts.clone()));
    }
    Ok(facts)
}

/// Builds a `Split` from raw bytes, checking the sizes agree.
pub(crate) fn split_from_bytes(
    path: &Path,
    images: Vec<u8>,
    labels: Vec<i64>,
    chw: [i64; 3],
) -> Result<Split> {
    let n = labels.len() as i64;
    let per = chw.iter().product::<i64>();
    if images.len() as i64 != n * per {
        return Err(Error::format(
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
        images: Tensor::from_slice(&images).view([n, chw[0], chw[1], chw[2]]),
        labels: Tensor::from_slice(&labels),
    })
}

/// Paths for the folder holding a dataset's files in the cache.
pub(crate) fn cache_subdir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(name)
}

/// Why data whose class folders are `data` (named `label`) cannot be read
/// against a model made with the classes `model`: labels are indices into
/// the sorted class names, so other names, or the same in another order,
/// make every label name another class. `None` when they are the same.
/// Every place that reads a dataset against a model compares through this.
pub fn classes_differ(model: &[String], data: &[String], label: &str) -> Option<String> {
    (model != data).then(|| {
        format!(
            "was made with the classes [{}], but the data {label} has [{}] ({}): every label \
             would name another class (a class folder renamed, added or removed?)",
            model.join(", "),
            data.join(", "),
            class_diff(model, data)
        )
    })
}

/// Where two class lists differ, for messages: the first few positions
/// with another name, or the names only one of them has.
pub(crate) fn class_diff(model: &[String], data: &[String]) -> String {
    let n = model.len().max(data.len());
    let show = |v: &[String], i: usize| v.get(i).map_or("none".to_string(), |c| format!("'{c}'"));
    let diffs: Vec<String> = (0..n)
        .filter(|&i| model.get(i) != data.get(i))
        .map(|i| {
            format!(
                "class {i} is {} in the model, {} in the data",
                show(model, i),
                show(data, i)
            )
        })
        .collect();
    let more = diffs.len().saturating_sub(3);
    let mut s = diffs.into_iter().take(3).collect::<Vec<_>>().join("; ");
    if more > 0 {
        s.push_str(&format!("; {more} more"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folders_files_hash_follows_names_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("d");
        for (class, file, bytes) in [("a", "1.png", b"x"), ("b", "2.png", b"y")] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            std::fs::write(root.join(class).join(file), bytes).unwrap();
        }
        let spec = DataSpec::new(root.display().to_string());
        let hash = || files_sha256(&spec).unwrap().unwrap();
        let base = hash();
        assert_eq!(hash(), base);
        // A renamed class folder, then put back.
        std::fs::rename(root.join("b"), root.join("c")).unwrap();
        assert_ne!(hash(), base);
        std::fs::rename(root.join("c"), root.join("b")).unwrap();
        assert_eq!(hash(), base);
        // Other bytes under the same name and size (a later mtime: within
        // one process a file is read again when its size or mtime changed).
        let f = root.join("a/1.png");
        let later =
            std::fs::metadata(&f).unwrap().modified().unwrap() + std::time::Duration::from_secs(1);
        std::fs::write(&f, b"z").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_ne!(hash(), base);
        // Registry datasets are pinned by their own sha256.
        assert_eq!(files_sha256(&DataSpec::new("mnist")).unwrap(), None);
        assert!(
            files_sha256(&DataSpec::new(
                dir.path().join("none").display().to_string()
            ))
            .is_err()
        );
    }
}
