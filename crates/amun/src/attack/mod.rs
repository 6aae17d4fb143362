//! Adversarial-set search (the paper's Alg. 1): for every forget sample, the
//! nearest adversarial example the attack finds, by growing ε until the
//! prediction changes.
//!
//! L2 PGD as specified: 50 steps per round, α = ε/10, no random start, eval
//! mode, inputs in `[0,1]`, per-sample unit-norm gradient, projection onto the
//! ε-ball, clamp to `[0,1]`; a sample stops the moment its prediction changes;
//! a sample still correct after a round continues from where it is with
//! ε ← 2ε; an already-misclassified sample is kept as it is with its wrong
//! label. Finished samples leave the batch and waiting ones take their place,
//! so no forward or backward pass is spent on a finished sample.

mod search;

pub use search::{Target, fgsm_predictions, l2_step, linf_step, search};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::checkpoint::{ForgetSummary, read_tensors, write_tensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The attack used to find adversarial examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// L2 PGD (the paper's attack).
    PgdL2,
    /// L∞ PGD: sign steps, box projection.
    PgdLinf,
    /// One signed-gradient step of size ε (ε doubled until it flips).
    Fgsm,
}

impl std::str::FromStr for AttackKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<AttackKind> {
        match s {
            "pgd-l2" => Ok(AttackKind::PgdL2),
            "pgd-linf" => Ok(AttackKind::PgdLinf),
            "fgsm" => Ok(AttackKind::Fgsm),
            _ => Err(Error::invalid(
                "attack",
                format!("unknown attack '{s}'; expected pgd-l2, pgd-linf or fgsm"),
            )),
        }
    }
}

/// ε0: a number, or `auto` (the paper's rule: the smallest 0.01·2^k for which
/// about 95% of a 100-sample probe succeed within one round). In files it is
/// a number or the string "auto".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "Eps0Repr", try_from = "Eps0Repr")]
pub enum Eps0 {
    Fixed(f64),
    Auto,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Eps0Repr {
    Num(f64),
    Str(String),
}

impl From<Eps0> for Eps0Repr {
    fn from(e: Eps0) -> Eps0Repr {
        match e {
            Eps0::Fixed(v) => Eps0Repr::Num(v),
            Eps0::Auto => Eps0Repr::Str("auto".into()),
        }
    }
}

impl TryFrom<Eps0Repr> for Eps0 {
    type Error = Error;
    fn try_from(r: Eps0Repr) -> Result<Eps0> {
        match r {
            Eps0Repr::Num(v) => v.to_string().parse(),
            Eps0Repr::Str(s) => s.parse(),
        }
    }
}

impl std::str::FromStr for Eps0 {
    type Err = Error;
    fn from_str(s: &str) -> Result<Eps0> {
        if s == "auto" {
            return Ok(Eps0::Auto);
        }
        match s.parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(Eps0::Fixed(v)),
            _ => Err(Error::invalid(
                "eps0",
                format!("'{s}': expected a positive number or auto"),
            )),
        }
    }
}

/// How the adversarial example of each sample is searched for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchKind {
    /// The paper's Alg. 1 exactly: PGD rounds of `steps` steps at
    /// ε0, 2ε0, 4ε0, … until the prediction changes.
    Exact,
    /// Per sample: a first-order estimate of the distance to the decision
    /// boundary as the starting radius, `fast_steps` steps that adapt the
    /// radius (shrink while adversarial, grow while not) and keep the
    /// closest adversarial point, then bisection towards the original
    /// image. Samples it cannot flip fall back to Alg. 1. The default:
    /// its sets unlearn as well as Alg. 1's at a third to a half of AMUN's
    /// image-steps (docs/PERFORMANCE.md).
    #[default]
    Fast,
}

/// Checked attack settings (see [`AdvParams`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvSettings {
    pub attack: AttackKind,
    pub eps0: Eps0,
    /// PGD steps per round.
    pub steps: usize,
    /// Samples attacked at once.
    pub batch_size: usize,
    /// Give up on a sample after this many doublings of ε.
    pub max_doublings: u32,
    /// Refill the batch as samples finish (off: the naive loop, for benchmarks).
    pub refill: bool,
    /// bf16 autocast for the attack's forward passes.
    pub bf16: bool,
    /// Alg. 1 exactly, or the fast per-sample search.
    pub search: SearchKind,
    /// Fast search: steps of the adaptive-radius phase.
    pub fast_steps: usize,
    /// Fast search: bisection steps (forward passes only) towards x.
    pub bisect: usize,
    /// Fast search: how far past the boundary the example ends, as a
    /// fraction of its distance (δ ← (1 + overshoot)·δ, kept only where it
    /// is still adversarial). The closest point barely prefers the
    /// adversarial label; Alg. 1's examples end deeper inside the
    /// adversarial class.
    pub overshoot: f64,
}

impl AdvSettings {
    /// The fewest gradient steps the search spends on a sample the model
    /// classifies correctly (one it already gets wrong costs none): the
    /// fast search walks every such sample `fast_steps` steps after the
    /// step that estimates its starting radius; PGD and FGSM take at least
    /// one step. What calibration's cost cap prices the search at before
    /// it runs.
    pub fn min_steps_per_sample(&self) -> u64 {
        match (self.attack, self.search) {
            (AttackKind::PgdL2, SearchKind::Fast) => self.fast_steps as u64 + 1,
            _ => 1,
        }
    }
}

impl Default for AdvSettings {
    fn default() -> Self {
        AdvSettings {
            attack: AttackKind::PgdL2,
            eps0: Eps0::Fixed(0.04),
            steps: 50,
            batch_size: 128,
            max_doublings: 16,
            refill: true,
            bf16: false,
            search: SearchKind::Fast,
            fast_steps: 20,
            bisect: 6,
            overshoot: 0.0,
        }
    }
}

/// Unchecked attack settings, defaults in [`AdvParams::new`]:
///
/// | field | default | meaning |
/// |---|---|---|
/// | attack | pgd-l2 | pgd-l2, pgd-linf or fgsm |
/// | eps0 | 0.04 | first ε (for 32×32 RGB in `[0,1]`), or auto |
/// | steps | 50 | PGD steps per round (α = ε/10) |
/// | batch_size | 128 | samples attacked at once |
/// | max_doublings | 16 | ε doublings before giving up on a sample |
/// | search | fast | the fast per-sample search, or Alg. 1 exactly (`exact`) |
///
/// ```
/// use amun::attack::AdvParams;
/// let s = AdvParams::new().steps(20).check().unwrap();
/// assert_eq!(s.steps, 20);
/// assert!(AdvParams::new().steps(0).check().is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct AdvParams(AdvSettings);

impl AdvParams {
    pub fn new() -> AdvParams {
        AdvParams(AdvSettings::default())
    }
    pub fn from_settings(s: AdvSettings) -> AdvParams {
        AdvParams(s)
    }
    pub fn attack(mut self, v: AttackKind) -> Self {
        self.0.attack = v;
        self
    }
    pub fn eps0(mut self, v: Eps0) -> Self {
        self.0.eps0 = v;
        self
    }
    pub fn steps(mut self, v: usize) -> Self {
        self.0.steps = v;
        self
    }
    pub fn batch_size(mut self, v: usize) -> Self {
        self.0.batch_size = v;
        self
    }
    pub fn refill(mut self, v: bool) -> Self {
        self.0.refill = v;
        self
    }
    pub fn bf16(mut self, v: bool) -> Self {
        self.0.bf16 = v;
        self
    }
    pub fn search(mut self, v: SearchKind) -> Self {
        self.0.search = v;
        self
    }
    pub fn fast_steps(mut self, v: usize) -> Self {
        self.0.fast_steps = v;
        self
    }
    pub fn bisect(mut self, v: usize) -> Self {
        self.0.bisect = v;
        self
    }
    pub fn overshoot(mut self, v: f64) -> Self {
        self.0.overshoot = v;
        self
    }
    pub fn check(self) -> Result<AdvSettings> {
        let s = self.0;
        if s.steps == 0 {
            return Err(Error::invalid("steps", "must be at least 1"));
        }
        if s.batch_size == 0 {
            return Err(Error::invalid("batch-size", "must be at least 1"));
        }
        if let Eps0::Fixed(e) = s.eps0
            && !(e > 0.0 && e.is_finite())
        {
            return Err(Error::invalid("eps0", format!("must be positive, got {e}")));
        }
        if s.search == SearchKind::Fast && s.fast_steps == 0 {
            return Err(Error::invalid("fast-steps", "must be at least 1"));
        }
        if s.search == SearchKind::Exact {
            // Alg. 1 has no adaptive-radius phase, bisection or overshoot:
            // a value set for them would be recorded but never used.
            let d = AdvSettings::default();
            for (key, set) in [
                ("fast-steps", s.fast_steps != d.fast_steps),
                ("bisect", s.bisect != d.bisect),
                ("overshoot", s.overshoot != d.overshoot),
            ] {
                if set {
                    return Err(Error::invalid(
                        key,
                        format!(
                            "applies to the fast search only (attack.{}); the exact search \
                             (--adv-search exact, attack.search = \"exact\") would ignore it: drop \
                             it or use the fast search",
                            key.replace('-', "_")
                        ),
                    ));
                }
            }
        }
        if s.max_doublings > 40 {
            return Err(Error::invalid("max-doublings", "must be at most 40"));
        }
        if !(0.0..=4.0).contains(&s.overshoot) {
            return Err(Error::invalid(
                "overshoot",
                format!("must lie in [0,4], got {}", s.overshoot),
            ));
        }
        Ok(s)
    }
}

/// Summary statistics of an adversarial set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvSummary {
    pub samples: usize,
    /// Samples whose prediction changed (100% unless one hit max_doublings).
    pub succeeded: usize,
    pub success_rate: f64,
    /// Samples the model already misclassified (kept as they are).
    pub already_misclassified: usize,
    /// Number of samples per final ε.
    pub eps_histogram: BTreeMap<String, usize>,
    pub mean_distance: f64,
    pub median_distance: f64,
    /// Gradient steps per sample, mean.
    pub mean_steps: f64,
    /// Forward+backward passes over all samples.
    pub total_steps: u64,
    /// Forward-only passes over all samples (the fast search's bisection).
    #[serde(default)]
    pub forward_only: u64,
    pub eps0: f64,
    pub wall_s: f64,
}

/// The adversarial set D_A of a forget set.
#[derive(Debug)]
pub struct AdvSet {
    /// `[N,C,H,W]` f32 in `[0,1]` (exact, not quantised), on the CPU.
    pub images: Tensor,
    /// The model's prediction on each adversarial image (≠ true label).
    pub adv_labels: Vec<i64>,
    pub true_labels: Vec<i64>,
    /// Training-set index of each sample (the forget set's order).
    pub indices: Vec<i64>,
    /// Final ε of each sample.
    pub eps: Vec<f64>,
    /// ‖x_adv − x‖₂.
    pub dist: Vec<f64>,
    /// Gradient steps each sample took.
    pub steps: Vec<u32>,
    /// Whether the prediction changed.
    pub success: Vec<bool>,
    pub settings: AdvSettings,
    /// The ε0 actually used (resolved when `auto`).
    pub eps0: f64,
    pub wall_s: f64,
    /// Forward-only passes (the fast search's bisection), over all samples.
    pub forward_only: u64,
    /// The files it was read from (`None` for a set computed in this run).
    pub source: Option<AdvSource>,
}

/// The files a precomputed adversarial set was read from, as an unlearned
/// model's sidecar records them: the set, not any attack settings of the
/// run, made its adversarial examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvSource {
    /// The `.safetensors` file, as given.
    pub file: String,
    /// Its sha256.
    pub sha256: String,
    /// sha256 of its `.json` metadata.
    pub meta_sha256: String,
    /// The settings its metadata says it was computed with.
    pub settings: AdvSettings,
}

/// The JSON beside an adversarial set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvMeta {
    pub format: String,
    /// `sha256` fingerprint of the model the set was computed on.
    pub model_fingerprint: String,
    pub forget: ForgetSummary,
    pub settings: AdvSettings,
    pub summary: AdvSummary,
    /// sha256 of the set's safetensors file, checked on every load (absent
    /// in sets written by older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// sha256 of this JSON's own text without this field (its last), as a
    /// checkpoint's sidecar records it: metadata edited after `amun adv`
    /// wrote it (ε0, steps, the search), or without it, is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
}

pub(crate) const ADV_FORMAT: &str = "amun-adv/1";

impl AdvSet {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Gradient steps the search took, over all samples.
    pub fn total_steps(&self) -> u64 {
        self.steps.iter().map(|s| u64::from(*s)).sum()
    }

    /// Summary statistics.
    pub fn summary(&self) -> AdvSummary {
        let n = self.len();
        let mut hist = BTreeMap::new();
        for (e, ok) in self.eps.iter().zip(&self.success) {
            let key = if *ok {
                format!("{e:.4}")
            } else {
                "failed".into()
            };
            *hist.entry(key).or_insert(0) += 1;
        }
        let mut d = self.dist.clone();
        d.sort_by(f64::total_cmp);
        let succeeded = self.success.iter().filter(|s| **s).count();
        AdvSummary {
            samples: n,
            succeeded,
            success_rate: if n == 0 {
                100.0
            } else {
                100.0 * succeeded as f64 / n as f64
            },
            already_misclassified: self
                .steps
                .iter()
                .zip(&self.success)
                .filter(|(s, ok)| **s == 0 && **ok)
                .count(),
            eps_histogram: hist,
            mean_distance: if n == 0 {
                0.0
            } else {
                d.iter().sum::<f64>() / n as f64
            },
            median_distance: median(&d),
            mean_steps: if n == 0 {
                0.0
            } else {
                self.steps.iter().map(|s| f64::from(*s)).sum::<f64>() / n as f64
            },
            total_steps: self.total_steps(),
            forward_only: self.forward_only,
            eps0: self.eps0,
            wall_s: self.wall_s,
        }
    }

    /// `adv.safetensors` → `adv.json`.
    pub fn meta_path(path: &Path) -> PathBuf {
        path.with_extension("json")
    }

    /// Writes the set (safetensors) and its metadata (JSON), atomically.
    pub fn save(&self, path: &Path, model_fingerprint: &str, forget: ForgetSummary) -> Result<()> {
        if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            return Err(Error::invalid(
                path.display().to_string(),
                "expected a path ending in .safetensors",
            ));
        }
        let i64t = |v: &[i64]| Tensor::from_slice(v);
        let f32t = |v: &[f64]| Tensor::from_slice(&v.iter().map(|x| *x as f32).collect::<Vec<_>>());
        let tensors = vec![
            ("images".to_string(), self.images.shallow_clone()),
            ("adv_labels".to_string(), i64t(&self.adv_labels)),
            ("true_labels".to_string(), i64t(&self.true_labels)),
            ("indices".to_string(), i64t(&self.indices)),
            ("eps".to_string(), f32t(&self.eps)),
            ("dist".to_string(), f32t(&self.dist)),
            (
                "steps".to_string(),
                i64t(&self.steps.iter().map(|s| i64::from(*s)).collect::<Vec<_>>()),
            ),
            (
                "success".to_string(),
                i64t(
                    &self
                        .success
                        .iter()
                        .map(|s| i64::from(*s))
                        .collect::<Vec<_>>(),
                ),
            ),
        ];
        write_tensors(path, &tensors)?;
        let meta = AdvMeta {
            format: ADV_FORMAT.into(),
            model_fingerprint: model_fingerprint.into(),
            forget,
            settings: self.settings.clone(),
            summary: self.summary(),
            sha256: Some(crate::data::sha256_file(path)?),
            content_sha256: None,
        };
        fsutil::write_json_signed(&Self::meta_path(path), &meta)
    }

    /// Reads a set written by [`AdvSet::save`]. Its JSON must be as amun
    /// wrote it ([`fsutil::read_json_signed`]), the file must hold the
    /// sha256 its JSON records (when it records one), and its content must
    /// be an adversarial set: shapes and dtypes from the file (`images`
    /// `[N, C, H, W]`, every per-sample tensor `[N]`), images in `[0,1]`,
    /// and every sample marked flipped with an adversarial label other
    /// than its true label; anything else is refused as damaged.
    pub fn load(path: &Path) -> Result<(AdvSet, AdvMeta)> {
        let meta_path = Self::meta_path(path);
        for (p, what) in [
            (path, "the set's images and labels"),
            (&*meta_path, "its metadata"),
        ] {
            fsutil::require_regular(p, &format!("{what} (written by `amun adv`)"))?;
            if !p.is_file() {
                return Err(Error::format(
                    p,
                    format!(
                        "missing; expected {what}: `amun adv --out {}` writes the set with its \
                         metadata ({}, which records the model and forget set it was made for) \
                         beside it; put the file back, or recompute the set with `amun adv`",
                        path.display(),
                        meta_path.display()
                    ),
                ));
            }
        }
        // A checkpoint's sidecar lies where the set's metadata would.
        let format = fsutil::read_json::<serde_json::Value>(&meta_path)
            .ok()
            .and_then(|v| v.get("format")?.as_str().map(String::from));
        if format.as_deref() == Some(crate::model::checkpoint::FORMAT) {
            return Err(Error::format(
                path,
                "is an amun checkpoint, not an adversarial set from `amun adv` (give the \
                 model as --checkpoint; `amun adv --out` writes the set --adv reads)",
            ));
        }
        let meta: AdvMeta = fsutil::read_json_signed(
            &Self::meta_path(path),
            "adversarial set's metadata",
            "recompute the set with `amun adv`",
        )?;
        if meta.format != ADV_FORMAT {
            return Err(Error::format(
                path,
                format!("format '{}'; expected '{ADV_FORMAT}'", meta.format),
            ));
        }
        if let Some(want) = &meta.sha256 {
            let got = crate::data::sha256_file(path)?;
            if &got != want {
                return Err(Error::format(
                    path,
                    format!(
                        "changed since `amun adv` wrote it: its sha256 is {got}, {} records \
                         {want}; recompute the set with `amun adv`",
                        Self::meta_path(path).display()
                    ),
                ));
            }
        }
        let set = Self::read_checked(path, &meta)?;
        Ok((set, meta))
    }

    fn read_checked(path: &Path, meta: &AdvMeta) -> Result<AdvSet> {
        let mut t = read_tensors(path, Device::Cpu)?;
        let mut take = |k: &str| {
            t.remove(k).ok_or_else(|| {
                Error::format(
                    path,
                    format!("no '{k}' tensor; not an amun adversarial set"),
                )
            })
        };
        let damaged =
            |k: &str, msg: String| Error::format(path, format!("'{k}' {msg}; the file is damaged"));
        let images = take("images")?;
        let shape = images.size();
        if shape.len() != 4 {
            return Err(damaged(
                "images",
                format!("has shape {shape:?}; expected [N, C, H, W]"),
            ));
        }
        let n = shape[0];
        let images = images
            .f_to_kind(Kind::Float)
            .map_err(|e| damaged("images", e.to_string()))?;
        // One value per image, as a vector of `kind`.
        let mut column = |k: &str, kind: Kind| -> Result<Tensor> {
            let c = take(k)?;
            if c.size() != [n] {
                return Err(damaged(
                    k,
                    format!("has shape {:?}; expected [{n}] (one per image)", c.size()),
                ));
            }
            c.f_to_kind(kind).map_err(|e| damaged(k, e.to_string()))
        };
        let ints =
            |k: &str, c: Tensor| Vec::<i64>::try_from(c).map_err(|e| damaged(k, e.to_string()));
        let floats =
            |k: &str, c: Tensor| Vec::<f64>::try_from(c).map_err(|e| damaged(k, e.to_string()));
        let adv_labels = ints("adv_labels", column("adv_labels", Kind::Int64)?)?;
        let true_labels = ints("true_labels", column("true_labels", Kind::Int64)?)?;
        let indices = ints("indices", column("indices", Kind::Int64)?)?;
        let eps = floats("eps", column("eps", Kind::Double)?)?;
        let dist = floats("dist", column("dist", Kind::Double)?)?;
        let steps = ints("steps", column("steps", Kind::Int64)?)?
            .into_iter()
            .map(|s| {
                u32::try_from(s)
                    .map_err(|_| damaged("steps", format!("holds {s}; expected a step count")))
            })
            .collect::<Result<Vec<u32>>>()?;
        let success = ints("success", column("success", Kind::Int64)?)?
            .into_iter()
            .map(|s| s != 0)
            .collect();
        let set = AdvSet {
            adv_labels,
            true_labels,
            indices,
            eps,
            dist,
            steps,
            success,
            images,
            settings: meta.settings.clone(),
            eps0: meta.summary.eps0,
            wall_s: meta.summary.wall_s,
            forward_only: meta.summary.forward_only,
            source: Some(AdvSource {
                file: path.display().to_string(),
                sha256: crate::data::sha256_file(path)?,
                meta_sha256: crate::data::sha256_file(&Self::meta_path(path))?,
                settings: meta.settings.clone(),
            }),
        };
        set.check_content().map_err(|why| damaged_set(path, why))?;
        Ok(set)
    }

    /// What every adversarial set holds: images in `[0,1]` (the attack
    /// clamps to it) and, for each sample whose prediction changed, an
    /// adversarial label other than its true label.
    fn check_content(&self) -> std::result::Result<(), String> {
        if !self.is_empty() {
            let (lo, hi) = (self.images.min(), self.images.max());
            let (lo, hi) = (lo.double_value(&[]), hi.double_value(&[]));
            if !(lo >= 0.0 && hi <= 1.0) {
                return Err(format!(
                    "'images' range over [{lo}, {hi}]; adversarial images lie in [0, 1]"
                ));
            }
        }
        let bad =
            (0..self.len()).find(|&i| self.success[i] && self.adv_labels[i] == self.true_labels[i]);
        if let Some(i) = bad {
            return Err(format!(
                "sample {i} (training index {}) is marked as flipped but its adversarial label \
                 {} is its true label",
                self.indices[i], self.adv_labels[i]
            ));
        }
        if let Some(l) = self
            .adv_labels
            .iter()
            .chain(&self.true_labels)
            .find(|&&l| l < 0)
        {
            return Err(format!("holds the label {l}; labels are class indices"));
        }
        Ok(())
    }

    /// Refuses labels outside the `num_classes` classes of the model it is
    /// used with.
    pub fn check_classes(&self, num_classes: usize, path: &Path) -> Result<()> {
        match self
            .adv_labels
            .iter()
            .chain(&self.true_labels)
            .find(|&&l| l >= num_classes as i64)
        {
            Some(l) => Err(damaged_set(
                path,
                format!("holds the label {l}; the model has {num_classes} classes"),
            )),
            None => Ok(()),
        }
    }

    /// The rows whose training index is in `keep` (sorted), in set order.
    pub fn subset(&self, keep: &[i64]) -> AdvSet {
        let rows: Vec<usize> = (0..self.len())
            .filter(|&i| keep.binary_search(&self.indices[i]).is_ok())
            .collect();
        let idx = Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
        let pick_i = |v: &[i64]| rows.iter().map(|&r| v[r]).collect::<Vec<_>>();
        let pick_f = |v: &[f64]| rows.iter().map(|&r| v[r]).collect::<Vec<_>>();
        AdvSet {
            images: self.images.index_select(0, &idx),
            adv_labels: pick_i(&self.adv_labels),
            true_labels: pick_i(&self.true_labels),
            indices: pick_i(&self.indices),
            eps: pick_f(&self.eps),
            dist: pick_f(&self.dist),
            steps: rows.iter().map(|&r| self.steps[r]).collect(),
            success: rows.iter().map(|&r| self.success[r]).collect(),
            settings: self.settings.clone(),
            eps0: self.eps0,
            wall_s: self.wall_s,
            // A share of the set's forward passes, by its share of samples.
            forward_only: self.forward_only * rows.len() as u64 / self.len().max(1) as u64,
            source: self.source.clone(),
        }
    }

    /// Checks that this set belongs to `forget` (same samples, same order)
    /// and to the model with `fingerprint`.
    pub fn check_matches(
        &self,
        meta: &AdvMeta,
        forget: &[i64],
        fingerprint: &str,
        path: &Path,
    ) -> Result<()> {
        if self.indices != forget {
            return Err(Error::format(path, mismatch(&self.indices, forget)));
        }
        if meta.model_fingerprint != fingerprint {
            return Err(Error::format(
                path,
                "adversarial set was computed on another model (fingerprint differs); recompute it with `amun adv`",
            ));
        }
        Ok(())
    }
}

fn damaged_set(path: &Path, why: String) -> Error {
    Error::format(
        path,
        format!("{why}: not an adversarial set `amun adv` wrote; recompute it with `amun adv`"),
    )
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// What differs between the samples an adversarial set was made for and the
/// forget set it is given with, in counts a user can check.
fn mismatch(set: &[i64], forget: &[i64]) -> String {
    use std::collections::BTreeSet;
    let (a, b): (BTreeSet<i64>, BTreeSet<i64>) = (
        set.iter().copied().collect(),
        forget.iter().copied().collect(),
    );
    let what = if a == b {
        "the same samples in another order".to_string()
    } else {
        format!(
            "{} of the forget set's samples are not in it and it holds {} others",
            b.difference(&a).count(),
            a.difference(&b).count()
        )
    };
    format!(
        "adversarial set made for {} samples, the forget set has {}: {what}; recompute it \
         with `amun adv`",
        set.len(),
        forget.len()
    )
}

#[cfg(test)]
mod tests {
    use super::mismatch;

    #[test]
    fn a_mismatched_set_is_described_by_counts_that_add_up() {
        // hostile8 ADV2: a set for 20 samples given with a forget set of 30,
        // 2 of them shared, was said to be "for 29 other samples".
        let set: Vec<i64> = (0..18).chain([100, 101]).collect();
        let forget: Vec<i64> = (100..130).collect();
        let m = mismatch(&set, &forget);
        assert!(
            m.contains("made for 20 samples, the forget set has 30"),
            "{m}"
        );
        assert!(
            m.contains("28 of the forget set's samples are not in it"),
            "{m}"
        );
        assert!(m.contains("it holds 18 others"), "{m}");
        let m = mismatch(&[3, 1, 2], &[1, 2, 3]);
        assert!(m.contains("the same samples in another order"), "{m}");
    }
}
