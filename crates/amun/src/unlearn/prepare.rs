//! One way to prepare an unlearning run, for every caller (`amun unlearn`,
//! an experiment's unlearning steps, `registry apply`): the run's settings,
//! checked against the method before anything is opened or loaded
//! ([`RunSettings::check`]); then, from the model and data the caller
//! opened its own way, the data on the run's device, the model laid out as
//! its lineage was trained, the deletion requests checked, calibration's
//! held-out split, the reference models and a precomputed adversarial set
//! ([`RunSettings::prepare`]); then the [`UnlearnJob`] over them
//! ([`Prepared::run`]).
use super::{CalibrateSettings, Method, RmiaSignal, UnlearnJob, Unlearned};
use crate::attack::AdvSet;
use crate::audit::{References, RmiaParams, load_references};
use crate::data::{Dataset, ForgetSet, HeldOut, HeldOutRecord, Split};
use crate::error::Result;
use crate::model::{Classifier, Sidecar};
use crate::progress::Progress;
use crate::train::Recipe;
use std::path::PathBuf;

/// A precomputed adversarial set to train on instead of searching one.
#[derive(Debug, Clone)]
pub enum AdvFile {
    /// `amun adv`'s output: the sha256 it records beside the set is
    /// required ([`UnlearnJob::load_adversarial`]).
    Checked(PathBuf),
    /// A run folder's set, whose file the run's own record hashed
    /// ([`UnlearnJob::load_recorded_adversarial`]).
    Recorded(PathBuf),
}

/// Every setting of an unlearning run beside the method's own, typed:
/// what each caller fills in from its flags, config or registry.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Where the run computes (the data is moved there).
    pub device: tch::Device,
    /// Where registry datasets are cached (a held-out folder loads through
    /// it).
    pub data_dir: PathBuf,
    /// Whether the method may use the retain set.
    pub with_retain: bool,
    /// AMUN-A: a fresh adversarial set per request.
    pub adaptive: bool,
    pub adversarial: Option<AdvFile>,
    /// Retrain-free calibration against this held-out data.
    pub calibrate: Option<(CalibrateSettings, HeldOut)>,
    /// Reference models of the model's data: calibration's membership test
    /// is then their RMIA (with `rmia`) instead of the loss-based one.
    pub refs: Option<PathBuf>,
    pub rmia: RmiaParams,
    /// How a registry's apply runs its batch.
    pub batch: super::job::BatchRun,
}

impl RunSettings {
    /// A plain run on `device`: with the retain set, no calibration, no
    /// precomputed set, no references.
    pub fn new(device: tch::Device, data_dir: impl Into<PathBuf>) -> Self {
        RunSettings {
            device,
            data_dir: data_dir.into(),
            with_retain: true,
            adaptive: false,
            adversarial: None,
            calibrate: None,
            refs: None,
            rmia: RmiaParams::default(),
            batch: Default::default(),
        }
    }

    /// Refuses settings that clash with `method` or with each other,
    /// naming them by key (`adversarial`, `adaptive`, `with_retain`):
    /// called before anything is opened or loaded.
    pub fn check(&self, method: &dyn Method) -> Result<()> {
        super::job::check_run(
            method,
            self.with_retain,
            self.adaptive,
            self.adversarial.is_some(),
        )
    }

    /// Prepares the run of `requests` (named in errors by `names`, in
    /// order) on `model` and its `data`, both as the caller opened them:
    /// `lineage` is the sidecar of the model its lineage trained first
    /// (the model's own, or a registry's root), whose recipe lays the model
    /// out and guides fine-tuning.
    pub fn prepare(
        &self,
        mut model: Classifier,
        lineage: &Sidecar,
        data: &Dataset,
        requests: Vec<ForgetSet>,
        names: &[String],
    ) -> Result<Prepared> {
        UnlearnJob::check_distinct(&requests, names)?;
        let data = data.to_device(self.device);
        let recipe = crate::train::lay_out_as_trained(&mut model, lineage)?;
        let adversarial = match &self.adversarial {
            Some(AdvFile::Checked(p)) => Some(UnlearnJob::load_adversarial(p, &requests, &model)?),
            Some(AdvFile::Recorded(p)) => {
                Some(UnlearnJob::load_recorded_adversarial(p, &requests, &model)?)
            }
            None => None,
        };
        let heldout = match &self.calibrate {
            Some((_, h)) => Some(h.prepare(&data, &self.data_dir)?),
            None => None,
        };
        let refs = match &self.refs {
            Some(d) => Some(load_references(d, &data)?),
            None => None,
        };
        Ok(Prepared {
            data,
            model,
            requests,
            recipe,
            heldout,
            refs,
            adversarial,
        })
    }
}

/// What a run needs, ready: see [`RunSettings::prepare`].
pub struct Prepared {
    /// The data, on the run's device.
    pub data: Dataset,
    /// The model, laid out as its lineage was trained; unlearned in place
    /// by [`Prepared::run`].
    pub model: Classifier,
    pub requests: Vec<ForgetSet>,
    /// The lineage's training recipe (`None`: a model amun did not train).
    pub recipe: Option<Recipe>,
    /// Calibration's held-out split and what the sidecar records of it.
    pub heldout: Option<(Split, HeldOutRecord)>,
    pub refs: Option<References>,
    pub adversarial: Option<AdvSet>,
}

impl Prepared {
    /// Unlearns the requests from the model (made by `parent`), in place,
    /// with `method` as `settings` say; `forgotten_before`: the samples
    /// the model's lineage forgot before (sorted).
    pub fn run(
        &mut self,
        settings: &RunSettings,
        method: &dyn Method,
        parent: &Sidecar,
        seed: u64,
        forgotten_before: &[i64],
        progress: &dyn Progress,
    ) -> Result<Unlearned> {
        // Fields borrowed apart: the model mutably, the rest shared.
        let heldout = self.heldout.as_ref();
        let rmia = (self.refs.as_ref().zip(heldout))
            .map(|(r, (split, _))| RmiaSignal::last_test(r, &settings.rmia, &self.data, split));
        let job = UnlearnJob {
            method,
            data: &self.data,
            requests: &self.requests,
            with_retain: settings.with_retain,
            adaptive: settings.adaptive,
            adversarial: self.adversarial.as_ref(),
            calibrate: (settings.calibrate.as_ref().zip(heldout))
                .map(|((c, _), (split, record))| (c, split, record)),
            rmia,
            seed,
            forgotten_before,
            recipe: self.recipe.as_ref(),
            batch: settings.batch,
        };
        job.run(&mut self.model, parent, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_clashes_with_its_method_is_refused_by_key() {
        let ft = super::super::build("ft", &serde_json::json!({})).unwrap();
        let amun = super::super::build("amun", &serde_json::json!({})).unwrap();
        let mut s = RunSettings::new(tch::Device::Cpu, ".");
        s.check(ft.as_ref()).unwrap();
        s.adversarial = Some(AdvFile::Checked("a.safetensors".into()));
        let e = s.check(ft.as_ref()).unwrap_err();
        assert_eq!(e.key(), Some("adversarial"));
        assert!(
            e.to_string().contains("ft trains on no adversarial set"),
            "{e}"
        );
        s.check(amun.as_ref()).unwrap();
        s.adaptive = true;
        let e = s.check(amun.as_ref()).unwrap_err();
        assert!(e.to_string().contains("AMUN-A, adaptive"), "{e}");
        s.adversarial = None;
        let e = s.check(ft.as_ref()).unwrap_err();
        assert_eq!(e.key(), Some("adaptive"));
    }
}
