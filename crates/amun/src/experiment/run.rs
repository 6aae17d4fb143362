//! Running an experiment: every artifact in one folder, each with a
//! `.meta.json` recording the sha256 of the inputs it was made from and the
//! seconds it took. A step is skipped when its artifact exists and its
//! inputs are unchanged, so a killed run resumes, and deleting an artifact
//! recomputes it and whatever was made from it (when its bytes change).
use super::config::Config;
use super::store::{content_sha, fresh, meta_path, record};
use crate::attack::{AdvSet, AdvSettings};
use crate::audit::{ModelAudit, References, audit, train_references};
use crate::data::{Dataset, ForgetSet, ForgetSpec};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::checkpoint::{self, ForgetSummary};
use crate::model::{Classifier, ModelSpec, Origin};
use crate::progress::Progress;
use crate::seed::derive;
use crate::train::{Recipe, Subset, TrainJob, train};
use crate::unlearn::{RunCtx, build, unlearn_requests, unlearned_sidecar};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn sha(path: &Path) -> Result<String> {
    content_sha(path)
}

fn short_hash(v: &impl Serialize) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    format!("{:x}", Sha256::digest(s.as_bytes()))[..10].to_string()
}

/// One audited model of the experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub seed: u64,
    pub fraction: f64,
    /// `None` for the original and the retrained model (they need no D_R choice).
    pub with_retain: Option<bool>,
    pub method: String,
    pub audit: ModelAudit,
    /// Wall-clock seconds of the method (training for original/retrain;
    /// adversarial search included for the methods that use one).
    pub seconds: f64,
    pub checkpoint: String,
}

/// The runner's state for one experiment folder.
pub struct Runner<'a> {
    pub cfg: &'a Config,
    pub dir: &'a Path,
    pub data: &'a Dataset,
    pub progress: &'a dyn Progress,
    /// Steps computed (not skipped) in this invocation, by artifact name.
    pub computed: Vec<String>,
}

impl<'a> Runner<'a> {
    /// Checks the folder belongs to this config (or claims an empty one).
    pub fn new(
        cfg: &'a Config,
        dir: &'a Path,
        data: &'a Dataset,
        progress: &'a dyn Progress,
    ) -> Result<Runner<'a>> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            err: source,
        })?;
        let p = dir.join("experiment.json");
        if p.exists() {
            let old: Config = fsutil::read_json(&p)?;
            if old != *cfg {
                return Err(Error::format(
                    &p,
                    format!(
                        "this run folder was made by another config ('{}'); refusing to mix results — use another --out or delete the folder",
                        old.name
                    ),
                ));
            }
        } else {
            fsutil::write_json(&p, cfg)?;
        }
        Ok(Runner {
            cfg,
            dir,
            data,
            progress,
            computed: Vec::new(),
        })
    }

    fn note_step(&mut self, name: &str, skipped: bool) {
        if skipped {
            self.progress.note(&format!("{name}: up to date"));
        } else {
            self.computed.push(name.to_string());
        }
    }

    fn spec(&self) -> Result<ModelSpec> {
        ModelSpec::for_data(
            self.cfg.model,
            self.data.image_shape(),
            self.data.num_classes(),
        )
    }

    /// Trains (or resumes, or reuses) a model of the config's recipe.
    fn trained(
        &mut self,
        name: &str,
        seed: u64,
        subset: Subset<'_>,
        inputs: BTreeMap<String, String>,
    ) -> Result<(Classifier, f64)> {
        let path = self.dir.join(format!("{name}.safetensors"));
        if let Some(m) = fresh(&path, &inputs) {
            self.note_step(name, true);
            let mut model = checkpoint::load(&path, self.data.train.labels.device())?.0;
            if self.cfg.recipe()?.channels_last {
                model.use_channels_last()?;
            }
            return Ok((model, m.seconds));
        }
        self.progress.note(&format!("{name}: training"));
        let recipe: Recipe = self.cfg.recipe()?;
        let job = TrainJob {
            spec: self.spec()?,
            data: self.data,
            recipe,
            seed,
            subset,
            out: Some(&path),
            resume: true,
            eval_each_epoch: false,
        };
        // A stale checkpoint (inputs changed, or its files no longer what
        // was recorded) must not be resumed or handed back.
        if meta_path(&path).exists() {
            super::store::forget(&path)?;
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(crate::train::resume_path(&path));
        }
        let t = train(&job, self.progress)?;
        let seconds = match &t.sidecar.origin {
            Origin::Train { wall_s, .. } => *wall_s,
            _ => 0.0,
        };
        record(
            &path,
            &[&path, &checkpoint::sidecar_path(&path)],
            inputs,
            seconds,
        )?;
        self.note_step(name, false);
        Ok((t.model, seconds))
    }

    fn forget_set(&mut self, seed: u64, fraction: f64) -> Result<(ForgetSet, PathBuf)> {
        let path = self.dir.join(format!("forget-s{seed}-f{fraction}.json"));
        let set = ForgetSet::choose(
            self.data,
            &ForgetSpec::Fraction(fraction),
            derive(seed, "forget", 0),
        )?;
        let inputs = BTreeMap::new();
        if fresh(&path, &inputs).is_none() {
            set.write(&path)?;
            record(&path, &[&path], inputs, 0.0)?;
            self.note_step(&format!("forget-s{seed}-f{fraction}"), false);
        }
        Ok((ForgetSet::read(&path)?, path))
    }

    fn adversarial(
        &mut self,
        original: &Classifier,
        orig_sha: &str,
        forget: &ForgetSet,
        forget_sha: &str,
        s: &AdvSettings,
        tag: &str,
    ) -> Result<(AdvSet, f64, String)> {
        let path = self
            .dir
            .join(format!("adv-{tag}-{}.safetensors", short_hash(s)));
        let inputs: BTreeMap<String, String> = [
            ("model".to_string(), orig_sha.to_string()),
            ("forget".into(), forget_sha.to_string()),
        ]
        .into();
        if let Some(m) = fresh(&path, &inputs) {
            self.note_step(&format!("adversarial set {tag}"), true);
            return Ok((AdvSet::load(&path)?.0, m.seconds, sha(&path)?));
        }
        self.progress
            .note(&format!("adversarial set {tag}: searching"));
        let part = self.data.train.select(&forget.indices);
        let t = Instant::now();
        let set = crate::attack::search(
            original,
            &part.images,
            &part.labels,
            &forget.indices,
            s,
            self.progress,
        )?;
        let seconds = t.elapsed().as_secs_f64();
        set.save(&path, &original.fingerprint(), ForgetSummary::of(forget))?;
        record(&path, &[&path, &AdvSet::meta_path(&path)], inputs, seconds)?;
        self.note_step(&format!("adversarial set {tag}"), false);
        Ok((set, seconds, sha(&path)?))
    }

    fn audited(
        &mut self,
        model_path: &Path,
        model: Option<&Classifier>,
        forget: &ForgetSet,
        forget_sha: &str,
        refs: &References,
        refs_sha: &str,
    ) -> Result<ModelAudit> {
        let stem = model_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model");
        let path = self
            .dir
            .join(format!("audit-{stem}-{}.json", &forget_sha[..10]));
        let inputs: BTreeMap<String, String> = [
            ("model".to_string(), sha(model_path)?),
            ("forget".into(), forget_sha.to_string()),
            ("references".into(), refs_sha.to_string()),
        ]
        .into();
        if fresh(&path, &inputs).is_some() {
            return fsutil::read_json(&path);
        }
        let loaded;
        let model = match model {
            Some(m) => m,
            None => {
                loaded = checkpoint::load(model_path, self.data.train.labels.device())?.0;
                &loaded
            }
        };
        let t = Instant::now();
        let a = audit(
            model,
            self.data,
            &forget.indices,
            refs,
            &self.cfg.rmia.attack,
            derive(forget.seed, "audit", 0),
        )?;
        fsutil::write_json(&path, &a)?;
        record(&path, &[&path], inputs, t.elapsed().as_secs_f64())?;
        self.computed.push(format!("audit {stem}"));
        Ok(a)
    }

    /// Runs every step; returns one result per audited model.
    pub fn run(&mut self) -> Result<Vec<RunResult>> {
        let cfg = self.cfg;
        let spec = self.spec()?;
        let recipe = cfg.recipe()?;
        let refs_dir = self.dir.join("references");
        std::fs::create_dir_all(&refs_dir).map_err(|source| Error::Io {
            path: refs_dir.clone(),
            err: source,
        })?;
        self.progress.note(&format!(
            "reference models: {} in {}",
            cfg.rmia.reference_models,
            refs_dir.display()
        ));
        let refs = train_references(
            self.data,
            &spec,
            &recipe,
            cfg.rmia.reference_models,
            derive(cfg.seeds[0], "references", 0),
            &refs_dir,
            self.progress,
        )?;
        let refs_sha = {
            let mut h = Sha256::new();
            for k in 0..cfg.rmia.reference_models {
                h.update(sha(&refs_dir.join(format!("ref-{k:03}.logits.safetensors")))?.as_bytes());
            }
            format!("{:x}", h.finalize())
        };
        let methods = cfg.method_list();
        let mut results = Vec::new();
        for &seed in &cfg.seeds {
            let (original, orig_secs) = self.trained(
                &format!("original-s{seed}"),
                derive(seed, "original", 0),
                Subset::All,
                BTreeMap::new(),
            )?;
            let orig_path = self.dir.join(format!("original-s{seed}.safetensors"));
            let orig_sha = sha(&orig_path)?;
            let orig_sidecar = checkpoint::read_sidecar(&orig_path)?;
            for &fraction in &cfg.forget.fractions {
                let (forget, forget_path) = self.forget_set(seed, fraction)?;
                let forget_sha = sha(&forget_path)?;
                let push = |results: &mut Vec<RunResult>,
                            method: &str,
                            with_retain: Option<bool>,
                            audit: ModelAudit,
                            seconds: f64,
                            path: &Path| {
                    results.push(RunResult {
                        seed,
                        fraction,
                        with_retain,
                        method: method.into(),
                        audit,
                        seconds,
                        checkpoint: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    })
                };
                let a = self.audited(
                    &orig_path,
                    Some(&original),
                    &forget,
                    &forget_sha,
                    &refs,
                    &refs_sha,
                )?;
                push(&mut results, "original", None, a, orig_secs, &orig_path);
                let rname = format!("retrain-s{seed}-f{fraction}");
                let (retrained, retrain_secs) = self.trained(
                    &rname,
                    derive(seed, "retrain", 0),
                    Subset::Exclude(&forget),
                    [("forget".to_string(), forget_sha.clone())].into(),
                )?;
                let rpath = self.dir.join(format!("{rname}.safetensors"));
                let a = self.audited(
                    &rpath,
                    Some(&retrained),
                    &forget,
                    &forget_sha,
                    &refs,
                    &refs_sha,
                )?;
                push(&mut results, "retrain", None, a, retrain_secs, &rpath);
                drop(retrained);
                let mut advs: BTreeMap<String, (AdvSet, f64, String)> = BTreeMap::new();
                for &with_retain in &cfg.forget.with_retain {
                    for (name, settings) in &methods {
                        let method = build(name, settings)?;
                        if !with_retain && method.requires_retain().is_some() {
                            continue;
                        }
                        let adv = match method.adversarial() {
                            Some(s) => {
                                let key = short_hash(&s);
                                if !advs.contains_key(&key) {
                                    let v = self.adversarial(
                                        &original,
                                        &orig_sha,
                                        &forget,
                                        &forget_sha,
                                        &s,
                                        &format!("s{seed}-f{fraction}"),
                                    )?;
                                    advs.insert(key.clone(), v);
                                }
                                Some(&advs[&key])
                            }
                            None => None,
                        };
                        let tag = if with_retain { "R" } else { "noR" };
                        let path = self.dir.join(format!(
                            "unlearn-{}-s{seed}-f{fraction}-{tag}-{}.safetensors",
                            name.replace('+', "plus"),
                            short_hash(&method.settings())
                        ));
                        let mut inputs: BTreeMap<String, String> = [
                            ("model".to_string(), orig_sha.clone()),
                            ("forget".into(), forget_sha.clone()),
                        ]
                        .into();
                        if let Some((_, _, s)) = adv {
                            inputs.insert("adversarial".into(), s.clone());
                        }
                        let adv_secs = adv.map_or(0.0, |a| a.1);
                        let (model, seconds) = match fresh(&path, &inputs) {
                            Some(m) => {
                                self.note_step(&format!("{name} {tag} s{seed} f{fraction}"), true);
                                (None, m.seconds)
                            }
                            None => {
                                self.progress.note(&format!(
                                    "{name} ({}) s{seed} f{fraction}",
                                    if with_retain {
                                        "with D_R"
                                    } else {
                                        "without D_R"
                                    }
                                ));
                                let mut model = original.try_clone()?;
                                let ctx = RunCtx {
                                    seed: derive(seed, name, u64::from(with_retain)),
                                    progress: self.progress,
                                    original_recipe: Some(&recipe),
                                    observe: None,
                                };
                                let t = Instant::now();
                                let logs = unlearn_requests(
                                    method.as_ref(),
                                    &mut model,
                                    &self.data.train,
                                    self.data.num_classes(),
                                    std::slice::from_ref(&forget.indices),
                                    with_retain,
                                    false,
                                    adv.map(|a| &a.0),
                                    &ctx,
                                )?;
                                let seconds = t.elapsed().as_secs_f64() + adv_secs;
                                let sc = unlearned_sidecar(
                                    &orig_sidecar,
                                    &orig_sha,
                                    method.as_ref(),
                                    std::slice::from_ref(&forget),
                                    &logs,
                                    ctx.seed,
                                );
                                checkpoint::save(&model, &path, &sc)?;
                                record(
                                    &path,
                                    &[&path, &checkpoint::sidecar_path(&path)],
                                    inputs,
                                    seconds,
                                )?;
                                self.note_step(&format!("{name} {tag} s{seed} f{fraction}"), false);
                                (Some(model), seconds)
                            }
                        };
                        let a = self.audited(
                            &path,
                            model.as_ref(),
                            &forget,
                            &forget_sha,
                            &refs,
                            &refs_sha,
                        )?;
                        push(&mut results, name, Some(with_retain), a, seconds, &path);
                    }
                }
            }
        }
        Ok(results)
    }
}
