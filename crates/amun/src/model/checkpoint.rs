//! Checkpoints: `NAME.safetensors` holds the variables under PyTorch's
//! `state_dict()` names (loadable with `strict=True`); `NAME.json` beside it
//! (the sidecar) says what the model is and how it came to be. Both are
//! written atomically; the sidecar last, so a sidecar always describes a
//! complete weights file.
use super::{Classifier, ModelSpec};
use crate::data::{DataContent, DataSpec, Dataset, ForgetSet, HeldOutRecord};
use crate::error::{Error, Result};
use crate::fsutil::{self, TempPath};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Sidecar format tag.
pub const FORMAT: &str = "amun-checkpoint/1";

/// The `kind` of the subset a reference model trained on (rows of the
/// pool, not an exclusion).
pub const POOL_MEMBERS: &str = "pool-members";

/// A short record of a forget set inside a sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgetSummary {
    pub dataset: String,
    pub kind: String,
    pub seed: u64,
    pub size: usize,
    /// sha256 of the sorted indices, to tell sets apart without listing them.
    pub indices_sha256: String,
}

impl ForgetSummary {
    pub fn of(set: &ForgetSet) -> ForgetSummary {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for i in &set.indices {
            h.update(i.to_le_bytes());
        }
        ForgetSummary {
            dataset: set.dataset.clone(),
            kind: set.kind.clone(),
            seed: set.seed,
            size: set.size,
            indices_sha256: format!("{:x}", h.finalize()),
        }
    }
}

/// How a checkpoint came to be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// Trained from scratch by `amun train`.
    Train {
        /// The recipe (`train::Recipe` as JSON: the sidecar holds plain
        /// data, read back with `train::recipe_of`).
        recipe: serde_json::Value,
        /// The samples excluded (retraining) or, for a reference model, the
        /// pool rows trained on; absent for the whole training split.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subset: Option<ForgetSummary>,
        epochs_done: usize,
        wall_s: f64,
        /// Each time the run was continued from its resume state, with the
        /// libtorch thread counts before and after (CPU bits depend on it).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resumes: Vec<Resume>,
    },
    /// Produced by an unlearning method from a parent checkpoint.
    Unlearn {
        method: String,
        settings: serde_json::Value,
        forget: Vec<ForgetSummary>,
        parent: String,
        /// Seconds per stage (e.g. `adversarial_search`, `fine_tune`).
        timing: BTreeMap<String, f64>,
        /// What a retrain-free calibration chose (learning rate, epoch, the
        /// table it chose from), when the run was calibrated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        calibration: Option<serde_json::Value>,
        /// Images forwarded and backpropagated (fine-tuning epochs and the
        /// adversarial search together): the run's cost, comparable across
        /// devices.
        #[serde(default)]
        image_steps: u64,
        /// Why a fine-tune stopped early, per request.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notes: Vec<String>,
        /// The D_R images each epoch visited, per request, where the retain
        /// budget drew fewer than all of D_R (a budget rounding below one
        /// batch runs one batch); absent: all of D_R, or none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        retain_per_epoch: Vec<usize>,
        /// What the models it descends from had forgotten (each earlier
        /// unlearning's `forget` and its own record of this): a later
        /// unlearning of this model keeps them out of its retain set.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        forgotten_before: Vec<ForgetSummary>,
        /// The held-out data a calibration looked at: an audit leaves it
        /// out of D_T.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heldout: Option<HeldOutRecord>,
        /// The precomputed adversarial set the method trained on (`--adv`):
        /// its files' hashes and the settings it was made with
        /// (`attack::AdvSource` as JSON: the sidecar holds plain data);
        /// `settings` then holds no attack settings, since none were used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adversarial: Option<serde_json::Value>,
    },
    /// Imported from another framework's file.
    Import {
        from: String,
        layout: String,
        /// The deletion requests the model had forgotten before it was
        /// exported (`amun import --forgotten`): an export carries no
        /// lineage, so the import records what its user names.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        forgotten: Vec<ForgetSummary>,
    },
}

/// A training run continued from its resume state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// The first epoch (1-based) the continuation trained.
    pub epoch: usize,
    /// libtorch's intra-op threads of the continuation.
    pub threads: usize,
    /// Those of the epochs before (absent in resume states older than
    /// this record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads_before: Option<usize>,
}

/// One epoch of a training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub train_acc: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_acc: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_s: f64,
    /// Images forwarded and backpropagated in the epoch (every pass of a
    /// method's epoch together): its cost in image-steps.
    #[serde(default)]
    pub images: usize,
}

/// The JSON beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub format: String,
    pub amun_version: String,
    pub model: ModelSpec,
    pub data: DataSpec,
    pub classes: Vec<String>,
    /// The seed every random choice of the run drew from.
    pub seed: u64,
    pub origin: Origin,
    #[serde(default)]
    pub history: Vec<EpochRecord>,
    /// Final metrics (accuracies in percent).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// sha256 of the weights file this sidecar describes: a sidecar beside
    /// other weights is refused on load. Set by [`save`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// libtorch's intra-op thread count when the model was made: CPU
    /// results are bit-reproducible for the same seed, thread count and CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// The content of the data the model was made with, for data outside
    /// amun's registry (a folder of the user's can change under the same
    /// name); absent for registry datasets and in older sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<DataContent>,
    /// sha256 of the sidecar's own text without this field (its last): a
    /// sidecar edited after amun wrote it (a
    /// `train_limit`, a class name, a recorded setting) is refused where it
    /// is read. Set by [`save`], so amun's own re-writes carry a new one.
    /// A sidecar without it (an older amun's, or one edited and its hash
    /// removed) is refused too: nothing says it is what amun wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
}

impl Sidecar {
    /// A sidecar for a model of `spec` on `data` with the given origin.
    pub fn new(
        spec: &ModelSpec,
        data: &DataSpec,
        classes: &[String],
        seed: u64,
        origin: Origin,
    ) -> Sidecar {
        Sidecar {
            format: FORMAT.into(),
            amun_version: env!("CARGO_PKG_VERSION").into(),
            model: spec.clone(),
            data: data.clone(),
            classes: classes.to_vec(),
            seed,
            origin,
            history: Vec::new(),
            metrics: BTreeMap::new(),
            weights_sha256: None,
            threads: Some(tch::get_num_threads().max(1) as usize),
            data_sha256: None,
            content_sha256: None,
        }
    }

    /// Checks that `data` is the data this model (at `path`) was made
    /// with, as far as its sidecar records it. Other classes, or the same
    /// ones in another order, are refused: every label would name another
    /// class. For the slice the sidecar names, whatever the data's path
    /// (a copy of the folder passes), a changed training split is refused (forget-set indices, retain sets and
    /// memberships name its rows); a changed test split is only warned
    /// about, since evaluating a model on an updated test set is a
    /// legitimate use. Returns the warnings.
    pub fn check_data(&self, data: &Dataset, path: &Path) -> Result<Vec<String>> {
        if let Some(why) =
            crate::data::classes_differ(&self.classes, &data.classes, &data.spec.label())
        {
            return Err(Error::checkpoint(
                path,
                format!("{why}; use the data the model was made with"),
            ));
        }
        let mut notes = Vec::new();
        let Some(now) = data.content() else {
            return Ok(notes);
        };
        let Some(rec) = &self.data_sha256 else {
            notes.push(format!(
                "note: {} records no content hash of its data (an older amun wrote it), so \
                 changed images in {} cannot be told from the ones it was made with",
                sidecar_path(path).display(),
                data.spec.dataset
            ));
            return Ok(notes);
        };
        // The content is compared whatever the data's path (a copy of the
        // folder passes, a changed copy does not); another slice is other
        // data by the user's choice, which `open` warns about.
        let same = |a: Option<usize>, b: Option<usize>| a == b;
        if same(self.data.train_limit, data.spec.train_limit) && rec.train != now.train {
            let label = data.spec.train_label();
            let (rec, now) = fsutil::short_pair(&rec.train, &now.train);
            let msg = if self.data.dataset == data.spec.dataset {
                format!(
                    "was made with other training data than {label} holds now (content sha256 \
                     {now}…, recorded {rec}…): an image or label was replaced, added or removed, \
                     so forget-set indices would name other samples; restore the data, or train \
                     or import the model again on it"
                )
            } else {
                format!(
                    "was made with {} (content sha256 {rec}…), but {label} holds other training \
                     data (content sha256 {now}…): not a copy of it (an image or label replaced, \
                     added or removed), so forget-set indices would name other samples; give \
                     the data the model was made with, or train or import the model again on it",
                    self.data.train_label()
                )
            };
            return Err(Error::checkpoint(path, msg));
        }
        // No test split (Python's `amun.unlearn` without `heldout=`) measures
        // no other images.
        let measured = !data.test.is_empty();
        if measured && same(self.data.test_limit, data.spec.test_limit) && rec.test != now.test {
            let (now, rec) = fsutil::short_pair(&now.test, &rec.test);
            notes.push(format!(
                "warning: the test split of {} differs from the one {} was made with (content \
                 sha256 {}…, recorded {}…): test accuracies and audits measure other images",
                data.spec.label(),
                path.display(),
                now,
                rec
            ));
        }
        Ok(notes)
    }

    /// Whether `other` was made with the same training data: the same
    /// content when both record it (a copy of the folder under another
    /// path is the same data), else the same dataset and slice.
    pub fn same_training_data(&self, other: &Sidecar) -> bool {
        match (&self.data_sha256, &other.data_sha256) {
            (Some(a), Some(b)) => a.train == b.train,
            _ => self.data.train_label() == other.data.train_label(),
        }
    }

    /// For a trained model, `(epochs done, epochs of the recipe)` when the
    /// run stopped before its last epoch (a killed or failed run).
    pub fn incomplete(&self) -> Option<(usize, usize)> {
        match &self.origin {
            Origin::Train {
                recipe,
                epochs_done,
                ..
            } => {
                let total = recipe.get("epochs")?.as_u64()? as usize;
                (*epochs_done < total).then_some((*epochs_done, total))
            }
            _ => None,
        }
    }

    /// The warning every reader of the checkpoint at `path` gives when it
    /// is [`Sidecar::incomplete`]: its weights are not the model its
    /// recipe describes.
    pub fn incomplete_warning(&self, path: &Path) -> Option<String> {
        let (done, total) = self.incomplete()?;
        Some(format!(
            "warning: {} is incomplete: {done} of {total} epochs were trained (a killed or \
             failed run), so it is not the model its recipe describes",
            path.display()
        ))
    }

    /// Every deletion request this model's lineage forgot: those of the
    /// unlearnings it came from and of the one that made it, and what the
    /// retrain at its root excluded (an exact unlearning of those samples:
    /// a registry's retrain excludes all its requests as one set).
    pub fn forgotten(&self) -> Vec<ForgetSummary> {
        match &self.origin {
            Origin::Unlearn {
                forget,
                forgotten_before,
                ..
            } => forgotten_before.iter().chain(forget).cloned().collect(),
            Origin::Import { forgotten, .. } => forgotten.clone(),
            Origin::Train { .. } => self.excluded().cloned().into_iter().collect(),
        }
    }

    /// The held-out data a retrain-free calibration of this model looked
    /// at. Sidecars from before the record was kept name only its size:
    /// then it is taken as the last test images of a split as large as
    /// `test_len` (the safe reading: no image it may have seen is audited).
    pub fn calibration_heldout(&self, test_len: usize) -> Option<HeldOutRecord> {
        match &self.origin {
            Origin::Unlearn {
                heldout: Some(r), ..
            } => Some(r.clone()),
            Origin::Unlearn {
                calibration: Some(c),
                ..
            } => Some(HeldOutRecord::LastTest {
                size: c.get("heldout_size")?.as_u64()? as usize,
                test_size: test_len,
            }),
            _ => None,
        }
    }

    /// The forget set a retrain excluded: `None` for a model trained on
    /// the whole training split, one trained on pool rows (a reference
    /// model), or one not trained by amun.
    pub fn excluded(&self) -> Option<&ForgetSummary> {
        match &self.origin {
            Origin::Train {
                subset: Some(s), ..
            } if s.kind != POOL_MEMBERS => Some(s),
            _ => None,
        }
    }

    /// Images forwarded and backpropagated to make this model: a training
    /// run's epochs, or an unlearning run's fine-tuning and search.
    pub fn image_steps(&self) -> u64 {
        match &self.origin {
            Origin::Unlearn { image_steps, .. } => *image_steps,
            _ => self
                .history
                .iter()
                .map(|e| match e.images {
                    // Logs from before the count was kept.
                    0 => (e.images_per_s * e.seconds).round() as u64,
                    n => n as u64,
                })
                .sum(),
        }
    }
}

/// `model.safetensors` → `model.json`.
pub fn sidecar_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

fn check_extension(path: &Path) -> Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(Error::invalid(
            path.display().to_string(),
            "checkpoints are .safetensors files; expected a path ending in .safetensors",
        ));
    }
    Ok(())
}

/// Writes named tensors to a safetensors file atomically.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_tensors_hashed(path, tensors).map(|_| ())
}

/// [`write_tensors`], returning the sha256 of the bytes written.
pub fn write_tensors_hashed(path: &Path, tensors: &[(String, Tensor)]) -> Result<String> {
    let tmp = TempPath::beside(path)?;
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, tmp.path())
        .map_err(|e| crate::error::safetensors_error(e, path, "writing"))?;
    let sha = crate::data::sha256_file(tmp.path())?;
    tmp.commit()?;
    Ok(sha)
}

/// Reads every tensor of a safetensors file onto `device`.
pub fn read_tensors(path: &Path, device: Device) -> Result<HashMap<String, Tensor>> {
    fsutil::require_regular(path, "a .safetensors file of tensors")?;
    if !path.exists() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            err: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let v = Tensor::read_safetensors(path)
        .map_err(|e| crate::error::safetensors_error(e, path, "reading"))?;
    Ok(v.into_iter()
        .map(|(k, t)| (k, t.to_device(device)))
        .collect())
}

/// Saves weights then sidecar (which records the weights' sha256), each
/// atomically.
pub fn save(model: &Classifier, path: &Path, sidecar: &Sidecar) -> Result<()> {
    check_extension(path)?;
    let bad = model.non_finite();
    if !bad.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!(
                "not written: the model holds NaN or Inf in {} (the run diverged)",
                bad.join(", ")
            ),
        ));
    }
    let sha = write_tensors_hashed(path, &model.named_tensors())?;
    let mut sc = sidecar.clone();
    sc.weights_sha256 = Some(sha);
    sc.content_sha256 = None;
    fsutil::write_json_signed(&sidecar_path(path), &sc)
}

/// Checks that the weights file is the one its sidecar describes.
pub fn verify_weights(path: &Path, sc: &Sidecar) -> Result<()> {
    fsutil::require_regular(path, "a checkpoint's weights (.safetensors)")?;
    let Some(want) = &sc.weights_sha256 else {
        return Err(Error::checkpoint(
            path,
            format!(
                "its sidecar {} records no weights_sha256, so it cannot be told apart from \
                 another model's sidecar; re-save it with this amun (e.g. `amun import`)",
                sidecar_path(path).display()
            ),
        ));
    };
    let got = crate::data::sha256_file(path)?;
    if &got != want {
        return Err(Error::checkpoint(
            path,
            format!(
                "does not match its sidecar {}: the weights' sha256 is {got}, the sidecar \
                 records {want} — the sidecar belongs to other weights (or the file was changed)",
                sidecar_path(path).display()
            ),
        ));
    }
    Ok(())
}

/// Reads a sidecar and checks its format tag.
pub fn read_sidecar(path: &Path) -> Result<Sidecar> {
    let sc_path = sidecar_path(path);
    if !sc_path.exists() {
        return Err(Error::checkpoint(
            path,
            format!(
                "no sidecar {} beside it; amun checkpoints come in pairs (weights + JSON)",
                sc_path.display()
            ),
        ));
    }
    let remake = format!(
        "restore the one amun wrote, or make the model again (to keep its weights as a model \
         of unknown origin: move {} aside, then `amun import --from {} --arch … --dataset … \
         --out OTHER.safetensors` writes a sidecar of its own)",
        sc_path.display(),
        path.display()
    );
    let mut sc: Sidecar = fsutil::read_json_signed(&sc_path, "checkpoint sidecar", &remake)?;
    if sc.format != FORMAT {
        return Err(Error::format(
            &sc_path,
            format!("format '{}'; expected '{FORMAT}'", sc.format),
        ));
    }
    if let Some(p) = &mut sc.model.program {
        find_moved(&mut p.file, path);
        if let super::program::ProgramInit::Weights { file, .. } = &mut p.init {
            find_moved(file, path);
        }
    }
    Ok(sc)
}

/// An exported model's `file` as its sidecar records it (absolute), or,
/// when it is gone from there, the file of that name beside the checkpoint
/// (a run folder moved with its graph). Its sha256 is checked where it is
/// read, so only the very same file is ever taken.
fn find_moved(file: &mut PathBuf, checkpoint: &Path) {
    if file.exists() {
        return;
    }
    if let Some(b) = checkpoint
        .parent()
        .zip(file.file_name())
        .map(|(d, n)| d.join(n))
        .filter(|b| b.exists())
    {
        *file = std::path::absolute(&b).unwrap_or(b);
    }
}

/// Refuses a sidecar whose model could not fit in its weights file, before
/// the model is allocated. Every architecture's first convolution holds
/// `in_channels · width · 3 · 3` weights and its classifier `num_classes ·
/// (features + 1)` (model/small_cnn.rs, resnet.rs, vgg.rs), each at least one
/// byte in the file; otherwise a sidecar asking for 10^12 classes would make
/// libtorch allocate terabytes.
fn check_spec_fits(spec: &ModelSpec, path: &Path) -> Result<()> {
    let bytes = std::fs::metadata(path)
        .map_err(|err| Error::Io {
            path: path.to_path_buf(),
            err,
        })?
        .len() as u128;
    let (c, k, s) = (
        spec.in_channels.max(0) as u128,
        spec.num_classes.max(0) as u128,
        spec.image_size.max(0) as u128,
    );
    let (width, features) = match spec.arch {
        super::Arch::SmallCnn => (32, (s / 8).saturating_mul(s / 8).saturating_mul(128)),
        // The graph (hash-checked) fixes every shape, not the sidecar.
        super::Arch::Exported => return Ok(()),
        _ => (64, 512),
    };
    let need = c
        .saturating_mul(width * 9)
        .saturating_add(k.saturating_mul(features.saturating_add(1)));
    if need > bytes {
        return Err(Error::checkpoint(
            path,
            format!(
                "its sidecar describes a {} for {}x{}x{} images and {} classes: at least {need} \
                 parameters, more than its {bytes}-byte weights file holds; the sidecar is damaged",
                spec.arch, spec.in_channels, spec.image_size, spec.image_size, spec.num_classes
            ),
        ));
    }
    Ok(())
}

/// Loads a checkpoint onto `device`.
pub fn load(path: &Path, device: Device) -> Result<(Classifier, Sidecar)> {
    check_extension(path)?;
    let sc = read_sidecar(path)?;
    load_as(path, sc, device)
}

/// Loads the weights at `path` as described by `sc` (its sidecar, read by
/// [`read_sidecar`], with its graph's path pointed elsewhere, e.g. at a
/// registry's copy).
pub fn load_as(path: &Path, sc: Sidecar, device: Device) -> Result<(Classifier, Sidecar)> {
    check_extension(path)?;
    verify_weights(path, &sc)?;
    check_spec_fits(&sc.model, path)?;
    let mut model = Classifier::blank(&sc.model, device)?;
    let tensors = read_tensors(path, device)?;
    model.load_named(tensors, path)?;
    Ok((model, sc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;

    fn saved(dir: &Path) -> PathBuf {
        let spec = ModelSpec::for_data(Arch::SmallCnn, [1, 8, 8], 2).unwrap();
        let model = Classifier::new(&spec, Device::Cpu, 1).unwrap();
        let mut data = DataSpec::new("mnist");
        data.train_limit = Some(500);
        let origin = Origin::Import {
            from: "m.pt".into(),
            layout: "torchvision".into(),
            forgotten: Vec::new(),
        };
        let classes = ["a".to_string(), "b".to_string()];
        let mut sc = Sidecar::new(&spec, &data, &classes, 3, origin);
        // Floats whose parsed value may differ from the written one in the
        // last bit: the hash is of the bytes, not of parsed values.
        for i in 0..64 {
            sc.metrics
                .insert(format!("m{i:02}"), (i as f64 + 0.5).sqrt() * 1.234e-5);
        }
        let path = dir.join("m.safetensors");
        save(&model, &path, &sc).unwrap();
        path
    }

    /// Issue 37 (N4): an edited sidecar was read as amun wrote it, only its
    /// weights' sha256 being checked; and (S1) one edited with its hash
    /// removed was read as an older amun's, so any edit passed.
    #[test]
    fn an_edited_sidecar_is_refused_with_or_without_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path());
        let side = sidecar_path(&path);
        let text = std::fs::read_to_string(&side).unwrap();
        let sc = read_sidecar(&path).unwrap();
        assert_eq!(sc.data.train_limit, Some(500));
        assert!(sc.content_sha256.is_some());
        load(&path, Device::Cpu).unwrap();
        // One setting edited, or the file re-indented: refused, naming the
        // sidecar.
        let edited = text.replace("\"train_limit\": 500", "\"train_limit\": 400");
        assert_ne!(edited, text);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        std::fs::write(&side, serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(read_sidecar(&path).is_err());
        std::fs::write(&side, &edited).unwrap();
        for e in [
            read_sidecar(&path).unwrap_err().to_string(),
            load(&path, Device::Cpu).unwrap_err().to_string(),
        ] {
            assert!(
                e.contains("m.json") && e.contains("changed after amun wrote it"),
                "{e}"
            );
        }
        // Without its hash (edited, or an older amun's), it is refused as
        // well, naming the sidecar and how to get one amun wrote.
        let mut old: serde_json::Value = serde_json::from_str(&edited).unwrap();
        old.as_object_mut().unwrap().remove(fsutil::CONTENT_KEY);
        std::fs::write(&side, serde_json::to_string_pretty(&old).unwrap() + "\n").unwrap();
        for e in [
            read_sidecar(&path).unwrap_err().to_string(),
            load(&path, Device::Cpu).unwrap_err().to_string(),
        ] {
            assert!(
                e.contains("m.json")
                    && e.contains("carries no content_sha256")
                    && e.contains("amun import --from"),
                "{e}"
            );
        }
        // amun writing it again records the new content's hash.
        std::fs::write(&side, &text).unwrap();
        let (model, mut sc) = load(&path, Device::Cpu).unwrap();
        sc.data.train_limit = Some(300);
        save(&model, &path, &sc).unwrap();
        assert_eq!(read_sidecar(&path).unwrap().data.train_limit, Some(300));
    }
}
