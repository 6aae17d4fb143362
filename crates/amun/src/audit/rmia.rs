//! RMIA (Zarifzadeh, Liu, Shokri, ICML 2024): the likelihood ratio of a
//! sample's signal under the target model to its signal averaged over
//! reference models, compared with the same ratio for population samples.
//!
//! `Score(x) = |{z ∈ Z : (p(x|θ)/p(x)) / (p(z|θ)/p(z)) > γ}| / |Z|`, counted by
//! sorting the population's ratios once and a binary search per sample.
use crate::data::Dataset;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::model::ModelSpec;
use crate::model::checkpoint::{self, read_tensors, write_tensors};
use crate::progress::Progress;
use crate::seed::derive;
use crate::train::{Recipe, Subset, TrainJob, train};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// How a model's output becomes the probability-like signal p(x|θ).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Signal {
    /// The RMIA authors' "Taylor soft-margin" softmax: logits/T, the exponential
    /// replaced by its Taylor polynomial of `order` terms, and the true class's
    /// logit lowered by `margin` before it.
    TaylorSoftMargin {
        temperature: f64,
        margin: f64,
        order: u32,
    },
    /// Plain softmax of logits/T, the true class's probability.
    Softmax { temperature: f64 },
}

impl Default for Signal {
    fn default() -> Self {
        Signal::TaylorSoftMargin {
            temperature: 2.0,
            margin: 0.6,
            order: 4,
        }
    }
}

/// 1 + z + z²/2! + … + z^(n−1)/(n−1)!
fn taylor(z: &Tensor, n: u32) -> Tensor {
    let mut power = z.shallow_clone();
    let mut sum = z + 1.0;
    let mut fact = 1.0;
    for i in 2..n {
        power = &power * z;
        fact *= f64::from(i);
        sum += &power / fact;
    }
    sum
}

/// p(x|θ) for each row of `logits` (`[N,K]`) and its true `labels` (`[N]`).
pub fn signal(logits: &Tensor, labels: &Tensor, s: Signal) -> Vec<f64> {
    let z = logits.to_kind(Kind::Double).to_device(Device::Cpu);
    let y = labels.to_device(Device::Cpu).view([-1, 1]);
    let out = match s {
        Signal::Softmax { temperature } => (z / temperature)
            .softmax(1, Kind::Double)
            .gather(1, &y, false),
        Signal::TaylorSoftMargin {
            temperature,
            margin,
            order,
        } => {
            let z = z / temperature;
            let t = taylor(&z, order);
            let true_t = t.gather(1, &y, false);
            let soft_true = taylor(&(z.gather(1, &y, false) - margin), order);
            let denom = t.sum_dim_intlist(1, true, Kind::Double) - true_t + &soft_true;
            soft_true / denom
        }
    };
    Vec::<f64>::try_from(out.flatten(0, -1)).expect("f64 signals")
}

/// Attack settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmiaParams {
    pub signal: Signal,
    /// Offline: p(x) from the models that did not train on x, linearly
    /// corrected with `a`; online: the mean over all reference models.
    pub offline: bool,
    /// The offline correction: p(x) = ½((1 + a)·p_OUT(x) + (1 − a)).
    pub a: f64,
    /// Threshold on the likelihood-ratio ratio.
    pub gamma: f64,
}

impl Default for RmiaParams {
    fn default() -> Self {
        RmiaParams {
            signal: Signal::default(),
            offline: true,
            a: 0.3,
            gamma: 2.0,
        }
    }
}

impl RmiaParams {
    /// Validates the numbers: a NaN or an out-of-range `a` or `gamma` would
    /// give every comparison of the scores the same answer, and an AUC
    /// (or NaN, written as JSON's `null`) that means nothing.
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.a) {
            return Err(Error::invalid(
                "a",
                format!(
                    "the offline correction (--a, rmia.attack.a) must lie in [0,1], got {}",
                    self.a
                ),
            ));
        }
        if !(self.gamma > 0.0 && self.gamma.is_finite()) {
            return Err(Error::invalid(
                "gamma",
                format!(
                    "the likelihood-ratio threshold (--gamma, rmia.attack.gamma) must be a \
                     positive number, got {}",
                    self.gamma
                ),
            ));
        }
        Ok(())
    }
}

/// RMIA scores of the samples with likelihood ratios `lr_x` against the
/// population with ratios `lr_z`. `self_in_z[i]` says that sample i is also
/// in the population; it is then left out of its own count, but every score
/// is divided by the same |Z|: a per-sample denominator (|Z| − 1 for members
/// of Z) would break the many ties of small counts in favour of Z's members
/// and bias the AUC. O((N+Z) log Z).
pub fn scores(lr_x: &[f64], lr_z: &[f64], self_in_z: &[bool], gamma: f64) -> Vec<f64> {
    let mut z = lr_z.to_vec();
    z.sort_by(f64::total_cmp);
    lr_x.iter()
        .zip(self_in_z)
        .map(|(&x, &inside)| {
            // LR(x)/LR(z) > γ  ⇔  LR(z) < LR(x)/γ  (ratios are positive).
            let thr = x / gamma;
            let mut count = z.partition_point(|&v| v < thr);
            if inside && x < thr {
                count -= 1;
            }
            if z.is_empty() {
                0.0
            } else {
                count as f64 / z.len() as f64
            }
        })
        .collect()
}

/// The quadratic definition of [`scores`], for tests.
pub fn scores_brute(
    lr_x: &[f64],
    lr_z: &[f64],
    self_index: &[Option<usize>],
    gamma: f64,
) -> Vec<f64> {
    lr_x.iter()
        .zip(self_index)
        .map(|(&x, me)| {
            let count = lr_z
                .iter()
                .enumerate()
                .filter(|(j, z)| Some(*j) != *me && x / **z > gamma)
                .count();
            count as f64 / lr_z.len().max(1) as f64
        })
        .collect()
}

/// The reference models of a pool, with who trained on what and their
/// logits over the whole pool.
pub struct References {
    /// `[K][N_pool]`: whether model k trained on pool row i.
    pub members: Vec<Vec<bool>>,
    /// `[K]` logits `[N_pool, classes]` (CPU).
    pub logits: Vec<Tensor>,
    /// Labels of the pool rows.
    pub labels: Tensor,
    pub n_train: usize,
    /// Warnings for the user (a folder whose manifest records no hashes).
    pub notes: Vec<String>,
    /// The architecture and recipe the reference models were trained with.
    pub model: ModelSpec,
    pub recipe: Recipe,
}

impl References {
    /// How the reference models were trained unlike the model `sc`
    /// describes (architecture, then the recipe of a model amun trained):
    /// RMIA's numbers assume references trained as the audited model was.
    pub fn unlike(&self, sc: &crate::model::Sidecar) -> Result<Option<String>> {
        if sc.model.arch != self.model.arch {
            return Ok(Some(format!(
                "the reference models are {}, the model {}",
                self.model.arch, sc.model.arch
            )));
        }
        let Some(recipe) = crate::train::recipe_of(sc)? else {
            return Ok(None);
        };
        let fields = |r: &Recipe| serde_json::to_value(r).unwrap_or_default();
        let (theirs, ours) = (fields(&self.recipe), fields(&recipe));
        let differ: Vec<String> = ours
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| theirs.get(k.as_str()) != Some(*v))
            .map(|(k, v)| {
                let t = theirs
                    .get(k.as_str())
                    .map_or("-".to_string(), |t| t.to_string());
                format!("{k} {t} against {v}")
            })
            .collect();
        Ok((!differ.is_empty()).then(|| {
            format!(
                "the reference models were trained with another recipe than the model ({})",
                differ.join(", ")
            )
        }))
    }

    /// p(x) for pool rows `rows`.
    pub fn prior(&self, rows: &[usize], p: &RmiaParams) -> Result<Vec<f64>> {
        let sig: Vec<Vec<f64>> = self
            .logits
            .iter()
            .map(|l| signal(l, &self.labels, p.signal))
            .collect();
        rows.iter()
            .map(|&r| {
                let (mut sum, mut n) = (0.0, 0usize);
                for (k, s) in sig.iter().enumerate() {
                    if !p.offline || !self.members[k][r] {
                        sum += s[r];
                        n += 1;
                    }
                }
                if n == 0 {
                    return Err(Error::invalid(
                        "rmia",
                        format!("pool row {r} has no reference model that left it out; train an even number of reference models"),
                    ));
                }
                let mean = sum / n as f64;
                Ok(if p.offline { 0.5 * ((1.0 + p.a) * mean + (1.0 - p.a)) } else { mean })
            })
            .collect()
    }
}

/// RMIA scores of `target` on candidate pool rows, with the population `z_rows`.
pub fn rmia_scores(
    target_logits_pool: &Tensor,
    refs: &References,
    rows: &[usize],
    z_rows: &[usize],
    p: &RmiaParams,
) -> Result<Vec<f64>> {
    let sig = signal(target_logits_pool, &refs.labels, p.signal);
    // One prior pass (it computes every reference model's signal) for both
    // the candidates and the population.
    let all: Vec<usize> = rows.iter().chain(z_rows).copied().collect();
    let lr: Vec<f64> = all
        .iter()
        .zip(refs.prior(&all, p)?)
        .map(|(&r, q)| sig[r] / q.max(1e-300))
        .collect();
    let (lr_x, lr_z) = lr.split_at(rows.len());
    let mut zset = z_rows.to_vec();
    zset.sort_unstable();
    let inside: Vec<bool> = rows.iter().map(|r| zset.binary_search(r).is_ok()).collect();
    Ok(scores(lr_x, lr_z, &inside, p.gamma))
}

/// What `refs/manifest.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefManifest {
    pub format: String,
    pub data: crate::data::DataSpec,
    pub model: ModelSpec,
    pub recipe: Recipe,
    pub seed: u64,
    pub count: usize,
    pub n_train: usize,
    pub n_test: usize,
    /// [`Dataset::content_sha256`] of the data whose pool the models
    /// trained on (absent in folders of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_sha256: Option<String>,
    /// sha256 of every file of the folder (memberships, and each reference
    /// model's weights, sidecar and logits), recorded once all models are
    /// trained and checked where they are read (absent in folders of older
    /// versions and while models are still being trained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<std::collections::BTreeMap<String, String>>,
    /// The sha256 of the manifest's own text, written last once `files`
    /// is ([`fsutil::write_json_signed`]): an edited manifest (its recipe,
    /// its data) is refused, as an edited sidecar is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
}

/// What a message calls a sealed manifest, and how to get one amun wrote.
const MANIFEST_WHAT: &str = "manifest of reference models";
const MANIFEST_REMAKE: &str = "put back the manifest `amun rmia train-refs` wrote, or train the \
                               references again in a new folder";

/// Reads the manifest at `mpath`. One that carries the hash of its text
/// (every folder this amun sealed) must be as amun signed it: its recipe,
/// data and pool are what RMIA's numbers are read against, so an edit is
/// refused. One without (an older amun's, or a folder still being
/// trained) is read as it is; [`check_models_match`] still holds it to
/// the models' own sidecars, and the audit says it is unsigned.
pub fn read_manifest(mpath: &Path) -> Result<RefManifest> {
    let text = fsutil::read_text(mpath)?;
    let m: RefManifest = serde_json::from_str(&text)
        .map_err(|e| Error::format(mpath, format!("invalid JSON: {e}")))?;
    if m.content_sha256.is_none() {
        return Ok(m);
    }
    fsutil::parse_json_signed(mpath, &text, MANIFEST_WHAT, MANIFEST_REMAKE)
}

/// Checks the manifest `m` of `dir` against each reference model's own
/// sidecar (which the manifest's file hashes cover): the architecture,
/// recipe and training data the manifest states must be the models'.
/// Models not trained yet are skipped, and so are sidecars that do not
/// read (the files' hashes refuse them in an audit; train-refs trains
/// such a model again).
fn check_models_match(dir: &Path, m: &RefManifest) -> Result<()> {
    let mpath = dir.join("manifest.json");
    for k in 0..m.count {
        let path = model_path(dir, k);
        if !checkpoint::sidecar_path(&path).is_file() {
            continue;
        }
        let Ok(sc) = checkpoint::read_sidecar(&path) else {
            continue;
        };
        let recipe = crate::train::recipe_of(&sc)?;
        let differs = if sc.model != m.model {
            Some(format!(
                "the architecture ({} against {})",
                m.model.arch, sc.model.arch
            ))
        } else if recipe.as_ref() != Some(&m.recipe) {
            Some("the training recipe (epochs, batch size, learning rate, …)".to_string())
        } else if sc.data.train_label() != m.data.train_label() {
            Some(format!(
                "the training data ({} against {})",
                m.data.train_label(),
                sc.data.train_label()
            ))
        } else {
            None
        };
        if let Some(what) = differs {
            return Err(Error::format(
                &mpath,
                format!(
                    "disagrees on {what} with what reference model {} records in its \
                     sidecar: the manifest was edited, or the models come from another folder; \
                     {MANIFEST_REMAKE}",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

const MEMBERS_FILE: &str = "members.safetensors";

/// The names of a folder's files for `count` models: memberships, then
/// each model's weights, sidecar and logits.
fn ref_files(count: usize) -> Vec<String> {
    let mut v = vec![MEMBERS_FILE.to_string()];
    for k in 0..count {
        v.extend([
            format!("ref-{k:03}.safetensors"),
            format!("ref-{k:03}.json"),
            format!("ref-{k:03}.logits.safetensors"),
        ]);
    }
    v
}

/// The sha256 of each file of a folder, by name, as its manifest records.
type Files = std::collections::BTreeMap<String, String>;

/// Checks `name` in `dir` against the sha256 `files` records for it.
fn check_ref_file(dir: &Path, files: &Files, name: &str) -> Result<()> {
    let p = dir.join(name);
    require_ref_file(
        dir,
        name,
        "a file the manifest records (a reference model's weights, sidecar or logits)",
    )?;
    match against_record(dir, files, name)? {
        Recorded::Same => Ok(()),
        Recorded::Unrecorded => Err(Error::format(
            dir.join("manifest.json"),
            format!("records no sha256 of {name}; {}", remedy(dir)),
        )),
        Recorded::Changed { got, want } => Err(Error::format(
            &p,
            format!(
                "changed since the reference models were made: its sha256 is {got}, {} \
                 records {want} (a swapped, edited or damaged file); RMIA would score against \
                 other reference models — {}",
                dir.join("manifest.json").display(),
                remedy(dir)
            ),
        )),
    }
}

/// A file's sha256 against the manifest's record of it.
enum Recorded {
    Same,
    Unrecorded,
    Changed { got: String, want: String },
}

/// The sha256 of `name` in `dir` against the one `files` records for it.
fn against_record(dir: &Path, files: &Files, name: &str) -> Result<Recorded> {
    let got = crate::data::sha256_file(&dir.join(name))?;
    Ok(match files.get(name) {
        None => Recorded::Unrecorded,
        Some(want) if *want == got => Recorded::Same,
        Some(want) => Recorded::Changed {
            got,
            want: want.clone(),
        },
    })
}

/// The settings in which two manifests differ, named for a message.
fn differences(a: &RefManifest, b: &RefManifest) -> Vec<&'static str> {
    [
        (a.data != b.data, "data"),
        (a.pool_sha256 != b.pool_sha256, "data's content"),
        (a.model != b.model, "model"),
        (a.recipe != b.recipe, "recipe"),
        (a.seed != b.seed, "seed"),
        (a.count != b.count, "count"),
        ((a.n_train, a.n_test) != (b.n_train, b.n_test), "pool size"),
        (a.format != b.format, "format"),
    ]
    .into_iter()
    .filter_map(|(d, name)| d.then_some(name))
    .collect()
}

/// Refuses a folder that lacks `name` (`what` it holds) with one message
/// naming the file and what makes it, rather than the OS's bare "No such
/// file or directory".
fn require_ref_file(dir: &Path, name: &str, what: &str) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::format(
            dir,
            "not a folder; expected a reference-model folder made by `amun rmia train-refs`",
        ));
    }
    let p = dir.join(name);
    if p.is_file() {
        return Ok(());
    }
    // Without its manifest the folder is no longer one of reference models:
    // nothing but a new folder can be trained.
    let fix = if name == "manifest.json" {
        "train the reference models anew in a new folder (`amun rmia train-refs --out NEW`)"
            .to_string()
    } else {
        remedy(dir)
    };
    Err(Error::format(
        &p,
        format!(
            "missing; expected {what}, as `amun rmia train-refs` (or an experiment's \
             references step) writes it: {fix}"
        ),
    ))
}

/// What makes the reference folder `dir` whole again, for a message: an
/// experiment's run folder's references are trained by the experiment
/// (nothing else writes there); any other folder by `amun rmia train-refs`
/// on it, which trains a missing or changed model again and keeps the rest.
fn remedy(dir: &Path) -> String {
    let run = dir
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .filter(|p| {
            dir.file_name().is_some_and(|n| n == "references")
                && crate::outputs::Holder::of(p) == Some(crate::outputs::Holder::RunFolder)
        });
    match run {
        Some(run) => format!(
            "these are the reference models of the experiment's run folder {}: move {} away \
             and run the experiment again (`amun experiment --folder {}`) to train them anew",
            run.display(),
            dir.display(),
            run.display()
        ),
        None => format!(
            "run `amun rmia train-refs --out {}` again with the flags that made it: it trains \
             a missing or changed model again and keeps the others",
            dir.display()
        ),
    }
}

pub(crate) use crate::outputs::REF_FORMAT;

/// Membership of `count` reference models over a pool of `n`: model 2p
/// trains on a random half, model 2p+1 on the other half, so with an even
/// count every row is OUT for exactly half of the models.
pub fn memberships(n: usize, count: usize, seed: u64) -> Vec<Vec<bool>> {
    let mut out = Vec::with_capacity(count);
    for pair in 0..count.div_ceil(2) {
        let mut rng = ChaCha8Rng::seed_from_u64(derive(seed, "rmia-half", pair as u64));
        let mut m = vec![false; n];
        for i in sample(&mut rng, n, n / 2) {
            m[i] = true;
        }
        let other: Vec<bool> = m.iter().map(|b| !b).collect();
        out.push(m);
        if out.len() < count {
            out.push(other);
        }
    }
    out
}

fn model_path(dir: &Path, k: usize) -> PathBuf {
    let [weights, _] = model_names(k);
    dir.join(weights)
}

fn logits_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(logits_name(k))
}

/// Model `k`'s weights and sidecar, by name.
pub(crate) fn model_names(k: usize) -> [String; 2] {
    [
        format!("ref-{k:03}.safetensors"),
        format!("ref-{k:03}.json"),
    ]
}

fn logits_name(k: usize) -> String {
    format!("ref-{k:03}.logits.safetensors")
}

/// Whether `name` is in `dir` with the sha256 that `files` (the manifest's
/// record, when it has one) records for it.
fn file_intact(dir: &Path, files: Option<&Files>, name: &str) -> Result<bool> {
    if !dir.join(name).is_file() {
        return Ok(false);
    }
    match files {
        Some(f) => Ok(matches!(against_record(dir, f, name)?, Recorded::Same)),
        None => Ok(true),
    }
}

/// Whether model `k`'s weights and sidecar are both in `dir`, as `files`
/// records them (when given), belong together (weights swapped under a
/// manifest that was made to record them would not load), and are a
/// finished run: a run killed mid-training leaves the weights of its last
/// epoch, which are no reference model of the recipe.
fn model_intact(dir: &Path, files: Option<&Files>, k: usize) -> Result<bool> {
    let [weights, sidecar] = model_names(k);
    let path = model_path(dir, k);
    Ok(file_intact(dir, files, &weights)?
        && file_intact(dir, files, &sidecar)?
        && checkpoint::read_sidecar(&path).is_ok_and(|sc| {
            checkpoint::verify_weights(&path, &sc).is_ok() && sc.incomplete().is_none()
        }))
}

/// Refuses reference model `k` of `dir` when its training stopped before
/// the recipe's last epoch: RMIA would score against a model unlike the
/// ones the audit assumes (and unlike its pair).
fn check_complete(dir: &Path, k: usize) -> Result<()> {
    let path = model_path(dir, k);
    // A missing model is named where its files are required.
    if !checkpoint::sidecar_path(&path).is_file() {
        return Ok(());
    }
    let Some((done, total)) = checkpoint::read_sidecar(&path)?.incomplete() else {
        return Ok(());
    };
    Err(Error::format(
        &path,
        format!(
            "an unfinished reference model: it holds epoch {done} of the {total} its recipe \
             trains (its training was interrupted); RMIA needs every reference model trained \
             to the end — {}",
            remedy(dir)
        ),
    ))
}

/// Removes what is left of model `k` (weights, sidecar, logits), so that it
/// is trained anew rather than returned as a finished run.
fn remove_reference(dir: &Path, k: usize) -> Result<()> {
    let weights = model_path(dir, k);
    for p in [
        checkpoint::sidecar_path(&weights),
        logits_path(dir, k),
        weights,
    ] {
        if p.exists() {
            std::fs::remove_file(&p).at(&p)?;
        }
    }
    Ok(())
}

/// What every reference model of a folder shares.
pub struct RefSetup<'a> {
    pub data: &'a Dataset,
    pub spec: &'a ModelSpec,
    pub recipe: &'a Recipe,
    pub count: usize,
    pub seed: u64,
    pub dir: &'a Path,
}

impl RefSetup<'_> {
    /// The manifest these settings write (without the files' hashes).
    fn manifest(&self) -> RefManifest {
        RefManifest {
            format: REF_FORMAT.into(),
            data: self.data.spec.clone(),
            model: self.spec.clone(),
            recipe: self.recipe.clone(),
            seed: self.seed,
            count: self.count,
            n_train: self.data.train.len(),
            n_test: self.data.test.len(),
            pool_sha256: Some(self.data.content_sha256()),
            files: None,
            content_sha256: None,
        }
    }

    /// Refuses a folder whose manifest records other settings, reading
    /// only: an experiment checks this before any step, so nothing of the
    /// run folder is touched before the refusal.
    pub fn check_manifest(&self) -> Result<()> {
        let mpath = self.dir.join("manifest.json");
        if !mpath.exists() {
            return Ok(());
        }
        let now = self.manifest();
        let mut old = read_manifest(&mpath)?;
        check_models_match(self.dir, &old)?;
        // The files' hashes are the folder's state, not its settings.
        old.files = None;
        old.content_sha256 = None;
        if old.pool_sha256.is_none() {
            old.pool_sha256 = now.pool_sha256.clone();
        }
        if old == now {
            return Ok(());
        }
        let mut what = differences(&old, &now).join(", ");
        if old.pool_sha256 != now.pool_sha256 {
            what += &self.content_change();
        }
        Err(Error::format(
            &mpath,
            format!(
                "reference models of other settings are in this folder (what differs: {what}); \
                 train references for these settings in another folder (`amun rmia train-refs \
                 --out`, `amun experiment --out`), or move {} away to train them again here",
                self.dir.display()
            ),
        ))
    }

    /// What changed in the data since the folder's models were made: its
    /// classes when the first model's sidecar records others, else "the
    /// content"; and the remedy of putting it back.
    fn content_change(&self) -> String {
        let recorded = checkpoint::read_sidecar(&model_path(self.dir, 0))
            .ok()
            .map(|sc| sc.classes)
            .filter(|c| *c != self.data.classes);
        let what = match recorded {
            Some(was) => format!(
                "its classes are [{}], the reference models were made with [{}] ({}): a class \
                 folder renamed, added or removed",
                self.data.classes.join(", "),
                was.join(", "),
                crate::data::class_diff(&was, &self.data.classes)
            ),
            None => "the data changed since they were made, e.g. an image replaced or a class \
                     folder renamed"
                .to_string(),
        };
        format!(
            " — {what}: putting the data back as it was is the other remedy (nothing is \
             recomputed then)"
        )
    }

    /// Writes the folder's manifest and memberships (once; the same content
    /// on every call), refusing a folder made with other settings.
    pub fn prepare(&self) -> Result<()> {
        let (data, count, dir) = (self.data, self.count, self.dir);
        if count == 0 {
            return Err(Error::invalid(
                "count",
                "must be at least 1 (2 or more, even, for offline RMIA)",
            ));
        }
        self.check_manifest()?;
        self.check_model_seeds()?;
        std::fs::create_dir_all(dir).at(dir)?;
        let mpath = dir.join("manifest.json");
        // A folder of an older amun records no pool hash: the check above
        // took this data's, and the manifest now records it.
        let upgrade = !mpath.exists() || read_manifest(&mpath)?.pool_sha256.is_none();
        if upgrade {
            fsutil::write_json(&mpath, &self.manifest())?;
        }
        let n = data.train.len() + data.test.len();
        let mfile = dir.join("members.safetensors");
        let members = memberships(n, count, self.seed);
        let flat: Vec<u8> = members.iter().flatten().map(|&b| u8::from(b)).collect();
        // The table follows from the seed: one that says otherwise (damaged,
        // edited) is written again rather than read by an audit.
        let kept = mfile.exists()
            && read_tensors(&mfile, Device::Cpu)
                .ok()
                .and_then(|mut t| t.remove("members"))
                .and_then(|t| Vec::<u8>::try_from(t.to_kind(Kind::Uint8).flatten(0, -1)).ok())
                .is_some_and(|v| v == flat);
        if !kept {
            let t = Tensor::from_slice(&flat).view([count as i64, n as i64]);
            write_tensors(&mfile, &[("members".to_string(), t)])?;
        }
        Ok(())
    }

    /// Refuses a folder whose models were trained with other seeds than
    /// these settings train them with, before anything is written: a
    /// manifest of an older amun (unsealed) whose seed was edited matched
    /// the flags, and its models were reused and sealed under a seed that
    /// did not make them (hostile13 A16). Each model's sidecar records the
    /// seed it trained with. A folder without a manifest, or with a sealed
    /// one, is left to the checks that retrain a model not its own.
    fn check_model_seeds(&self) -> Result<()> {
        // A sealed manifest (its own text hashed) cannot have been edited,
        // and it hashes each model's files: a model that is not its own
        // (swapped, copied in) is trained again to the same bits.
        let mpath = self.dir.join("manifest.json");
        if !mpath.exists() || read_manifest(&mpath)?.content_sha256.is_some() {
            return Ok(());
        }
        for k in 0..self.count {
            let p = model_path(self.dir, k);
            if !checkpoint::sidecar_path(&p).is_file() {
                continue;
            }
            let Ok(sc) = checkpoint::read_sidecar(&p) else {
                continue; // a damaged sidecar: the model is trained again
            };
            let want = derive(self.seed, "rmia-ref", k as u64);
            if sc.seed != want {
                return Err(Error::format(
                    &p,
                    format!(
                        "reference model {k} was trained with seed {}, but seed {} trains it \
                         with seed {want}: the folder's models were made with another --seed \
                         than its manifest records (an older manifest edited, or another \
                         folder's models); give the flags that made them, or train these \
                         settings in another folder (`--out`)",
                        sc.seed, self.seed
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The logits file of model `k`.
    pub fn logits_path(&self, k: usize) -> PathBuf {
        logits_path(self.dir, k)
    }

    /// Records the sha256 of every file of the folder in its manifest,
    /// once every model is trained: what [`load_references`] checks.
    pub fn seal(&self) -> Result<()> {
        let mpath = self.dir.join("manifest.json");
        let mut m = read_manifest(&mpath)?;
        let files = ref_files(m.count)
            .into_iter()
            .map(|name| {
                let sha = crate::data::sha256_file(&self.dir.join(&name))?;
                Ok((name, sha))
            })
            .collect::<Result<_>>()?;
        m.files = Some(files);
        m.content_sha256 = None;
        fsutil::write_json_signed(&mpath, &m)
    }

    /// Trains (or resumes, or reuses) reference model `k` and stores its
    /// logits over the pool. Call [`RefSetup::prepare`] first.
    pub fn train_one(&self, k: usize, progress: &dyn Progress) -> Result<()> {
        let (data, dir) = (self.data, self.dir);
        let pool = data.pool();
        let n = pool.len();
        let members = memberships(n, self.count, self.seed);
        let m = members
            .get(k)
            .ok_or_else(|| Error::invalid("reference", format!("model {k} of {}", self.count)))?;
        let rows: Vec<i64> = (0..n as i64).filter(|&i| m[i as usize]).collect();
        let job = TrainJob {
            spec: self.spec.clone(),
            data,
            recipe: self.recipe.clone(),
            seed: derive(self.seed, "rmia-ref", k as u64),
            subset: Subset::Pool(&rows),
            out: Some(&model_path(dir, k)),
            resume: true,
            eval_each_epoch: false,
        };
        let resuming = crate::train::resume_path(&model_path(dir, k)).exists();
        if model_intact(dir, None, k)? && !resuming {
            // A trained model is reused only as the folder recorded it.
            let m = read_manifest(&dir.join("manifest.json"))?;
            if let Some(files) = &m.files {
                for name in model_names(k) {
                    check_ref_file(dir, files, &name)?;
                }
            }
        } else {
            if !resuming {
                // What is left without a resume state (a run killed and its
                // state deleted, or damaged weights) trains anew.
                remove_reference(dir, k)?;
            }
            train(&job, progress)?;
        }
        // The logits always come from the saved model, laid out as the
        // recipe trains it: a file deleted and computed again from the
        // reused model then has the same bits as the first one (the model
        // in memory after training is channels-last, a loaded one is not,
        // and the two run different convolution kernels).
        let mut model = checkpoint::load(&model_path(dir, k), pool.labels.device())?.0;
        crate::train::lay_out(&mut model, self.recipe)?;
        let logits = crate::eval::logits(&model, &pool.images);
        write_tensors(&logits_path(dir, k), &[("logits".to_string(), logits)])
    }
}

/// Trains (or finishes training) `count` reference models in `dir`, each on
/// its half of the pool with `recipe`, and stores their logits over the
/// pool. Resumable: finished models are skipped, an interrupted one resumes
/// from its last epoch. A folder made with other settings is refused.
#[allow(clippy::too_many_arguments)]
/// A count of reference models RMIA can use: in complementary pairs, so
/// that each sample is OUT for half of them (checked before any work).
pub fn check_ref_count(count: usize) -> Result<()> {
    if count < 2 || count % 2 == 1 {
        return Err(Error::invalid(
            "count",
            format!(
                "{count}: expected an even number of at least 2 reference models (they train in \
                 complementary pairs, each sample OUT for half of them)"
            ),
        ));
    }
    Ok(())
}

/// Trains (or resumes) `count` reference models in `dir`; see [`RefSetup`].
pub fn train_references(
    data: &Dataset,
    spec: &ModelSpec,
    recipe: &Recipe,
    count: usize,
    seed: u64,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<References> {
    let setup = RefSetup {
        data,
        spec,
        recipe,
        count,
        seed,
        dir,
    };
    setup.prepare()?;
    let files = read_manifest(&dir.join("manifest.json"))?.files;
    for k in 0..count {
        // A model whose weights or sidecar were deleted or changed is
        // trained again (the same bits: its seed), not skipped for its
        // logits; changed logits are computed again from the model. The
        // folder is sealed below, so nothing the audit's check
        // (`check_reference_files`) would refuse may be kept.
        let model_ok = model_intact(dir, files.as_ref(), k)?;
        if model_ok && file_intact(dir, files.as_ref(), &logits_name(k))? {
            continue;
        }
        if !model_ok && !crate::train::resume_path(&model_path(dir, k)).exists() {
            remove_reference(dir, k)?;
        }
        progress.note(&format!("reference model {}/{count}", k + 1));
        setup.train_one(k, progress)?;
    }
    setup.seal()?;
    load_references(dir, data)
}

/// Checks every file of the reference folder `dir` against the sha256 its
/// manifest `m` records: the memberships, and each model's logits (when
/// present: a missing one is computed again from its model), weights and
/// sidecar, so that logits are never scored as another model's. What an
/// audit checks before it reads a folder, and an experiment before it
/// calls its references up to date. `Ok(false)`: the manifest records no
/// sha256s (an older amun wrote it), nothing was checked.
pub fn check_reference_files(dir: &Path, m: &RefManifest) -> Result<bool> {
    require_ref_file(dir, MEMBERS_FILE, "the reference models' memberships")?;
    let Some(files) = &m.files else {
        check_models_match(dir, m)?;
        return Ok(false);
    };
    check_ref_file(dir, files, MEMBERS_FILE)?;
    for k in 0..m.count {
        if logits_path(dir, k).exists() {
            check_ref_file(dir, files, &logits_name(k))?;
        }
        for name in model_names(k) {
            check_ref_file(dir, files, &name)?;
        }
    }
    check_models_match(dir, m)?;
    Ok(true)
}

/// Loads the reference models' memberships and logits from `dir`, for the
/// pool of `data` (refused if the pool differs).
pub fn load_references(dir: &Path, data: &Dataset) -> Result<References> {
    let mpath = dir.join("manifest.json");
    require_ref_file(
        dir,
        "manifest.json",
        "the manifest of a reference-model folder",
    )?;
    let m = read_manifest(&mpath)?;
    if m.format != REF_FORMAT {
        return Err(Error::format(
            &mpath,
            format!("format '{}'; expected '{REF_FORMAT}'", m.format),
        ));
    }
    let n = m.n_train + m.n_test;
    check_fits_data(&m, &mpath, data)?;
    let notes = integrity_notes(dir, &m, &mpath)?;
    for k in 0..m.count {
        check_complete(dir, k)?;
    }
    let logits = read_logits(dir, m.count, n)?;
    let members = read_members(dir, m.count, n)?;
    Ok(References {
        members,
        logits,
        labels: data.pool_labels().to_device(Device::Cpu),
        n_train: m.n_train,
        notes,
        model: m.model,
        recipe: m.recipe,
    })
}

/// Refuses references whose models or pool do not fit the audited data:
/// another input shape or class count, another pool's content, another size.
fn check_fits_data(m: &RefManifest, mpath: &Path, data: &Dataset) -> Result<()> {
    let [c, h, _] = data.image_shape();
    if m.model.in_channels != c
        || m.model.image_size != h
        || m.model.num_classes != data.num_classes() as i64
    {
        return Err(Error::format(
            mpath,
            format!(
                "reference models of {} for {}x{}x{} images and {} classes (trained on {}); \
                 the audited data {} has {c}x{h}x{h} images and {} classes",
                m.model.arch,
                m.model.in_channels,
                m.model.image_size,
                m.model.image_size,
                m.model.num_classes,
                m.data.label(),
                data.spec.label(),
                data.num_classes()
            ),
        ));
    }
    if let Some(want) = &m.pool_sha256 {
        let got = data.content_sha256();
        if *want != got {
            return Err(Error::format(
                mpath,
                format!(
                    "reference models trained on the pool of {} (content sha256 {}…); the \
                     audited data {} differs (sha256 {}…): RMIA needs references trained on \
                     the audited model's own data — train them with `amun rmia train-refs` \
                     on it",
                    m.data.label(),
                    crate::fsutil::short_pair(want, &got).0,
                    data.spec.label(),
                    crate::fsutil::short_pair(want, &got).1
                ),
            ));
        }
    }
    if m.n_train != data.train.len() || m.n_test != data.test.len() {
        return Err(Error::format(
            mpath,
            format!(
                "reference models of a pool of {} + {} samples; this data has {} + {}",
                m.n_train,
                m.n_test,
                data.train.len(),
                data.test.len()
            ),
        ));
    }
    Ok(())
}

/// Warnings for a folder an older amun wrote: a manifest without its own
/// hash, or without the reference files' hashes (their content is then
/// unchecked).
fn integrity_notes(dir: &Path, m: &RefManifest, mpath: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    if m.files.is_some() && m.content_sha256.is_none() {
        notes.push(format!(
            "warning: {} carries no hash of its own text (an older amun wrote it): an edit of \
             it is caught only where it contradicts the models' sidecars; run `amun rmia \
             train-refs` on this folder with the flags that made it to seal it (it reuses the \
             trained models)",
            mpath.display()
        ));
    }
    if !check_reference_files(dir, m)? {
        notes.push(format!(
            "warning: {} records no sha256 of the reference files (an older amun wrote it): a \
             swapped or edited file cannot be detected; run `amun rmia train-refs` on this \
             folder with the flags that made it to record them (it reuses the trained models)",
            mpath.display()
        ));
    }
    Ok(notes)
}

/// Each reference model's logits on the pool (`n` rows each).
fn read_logits(dir: &Path, count: usize, n: usize) -> Result<Vec<tch::Tensor>> {
    let mut logits = Vec::new();
    for k in 0..count {
        let p = logits_path(dir, k);
        if !p.exists() {
            return Err(Error::format(&p, format!("missing; {}", remedy(dir))));
        }
        let mut t = read_tensors(&p, Device::Cpu)?;
        let l = t
            .remove("logits")
            .ok_or_else(|| Error::format(&p, "no 'logits' tensor"))?;
        if l.size()[0] as usize != n {
            return Err(Error::format(
                &p,
                format!("logits for {} rows; the pool has {n}", l.size()[0]),
            ));
        }
        logits.push(l);
    }
    Ok(logits)
}

/// Which pool samples each reference model trained on: `count` rows of `n`.
fn read_members(dir: &Path, count: usize, n: usize) -> Result<Vec<Vec<bool>>> {
    let mfile = dir.join(MEMBERS_FILE);
    let mt = read_tensors(&mfile, Device::Cpu)?
        .remove("members")
        .ok_or_else(|| Error::format(&mfile, "no 'members' tensor"))?;
    if mt.size() != [count as i64, n as i64] {
        return Err(Error::format(
            &mfile,
            format!(
                "membership of shape {:?}; expected [{}, {n}]",
                mt.size(),
                count
            ),
        ));
    }
    // amun writes 0/1 bytes; another kind (0.5 read as "not a member") is
    // not its table.
    if !matches!(mt.kind(), Kind::Uint8 | Kind::Bool) {
        return Err(Error::format(
            &mfile,
            format!("membership of kind {:?}; expected uint8 (0/1)", mt.kind()),
        ));
    }
    let flat = Vec::<u8>::try_from(mt.flatten(0, -1)).unwrap_or_default();
    let members = flat
        .chunks(n)
        .map(|c| c.iter().map(|&b| b != 0).collect())
        .collect();
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A members table of another kind (floats) read as no rows at all,
    /// and the audit indexed past its end later.
    #[test]
    fn a_members_table_of_another_kind_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mfile = dir.path().join(MEMBERS_FILE);
        let write = |t: Tensor| write_tensors(&mfile, &[("members".to_string(), t)]).unwrap();
        write(Tensor::from_slice(&[1u8, 0, 1, 0, 1, 1]).view([2, 3]));
        assert_eq!(
            read_members(dir.path(), 2, 3).unwrap(),
            vec![vec![true, false, true], vec![false, true, true]]
        );
        write(Tensor::from_slice(&[1f32, 0., 1., 0., 1., 1.]).view([2, 3]));
        let e = read_members(dir.path(), 2, 3).unwrap_err().to_string();
        assert!(
            e.contains(MEMBERS_FILE) && e.contains("expected uint8"),
            "{e}"
        );
    }
}
