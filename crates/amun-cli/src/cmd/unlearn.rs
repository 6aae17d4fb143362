use super::flags::{AttackArgs, CalibrateArgs, FinetuneArgs, SetArgs};
use super::{DataDir, device, pct, print_json};
use amun::data::{ForgetFile, HeldOut};
use amun::model::checkpoint;
use amun::outputs::{Artifact, Outputs};
use amun::report::Table;
use amun::train::TrainOverrides;
use amun::unlearn::{CalibrateOverrides, UnlearnJob, build};
use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct UnlearnArgs {
    /// The trained model (.safetensors with its sidecar); it is never modified
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The method (see `amun methods`)
    #[arg(long, default_value = "amun")]
    pub method: String,
    /// The deletion request (a forget set from `amun split`, or any list
    /// `amun split --from` reads)
    #[arg(
        long,
        value_name = "FORGET",
        conflicts_with = "requests",
        required_unless_present = "requests"
    )]
    pub forget: Option<PathBuf>,
    /// Several requests, applied in order (continual unlearning)
    #[arg(long, value_name = "FORGET", num_args = 1..)]
    pub requests: Vec<PathBuf>,
    /// Recompute the adversarial set on the current model for each request (AMUN-A)
    #[arg(long)]
    pub adaptive: bool,
    /// Unlearn without access to the retain set
    #[arg(long)]
    pub no_retain: bool,
    /// A precomputed adversarial set (`amun adv`) instead of computing it
    #[arg(long, value_name = "ADV.safetensors")]
    pub adv: Option<PathBuf>,
    /// Where to write the unlearned checkpoint
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub finetune: FinetuneArgs,
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// AMUN: train on D_R ∪ D_A (or D_A alone with --no-retain), without D_F
    #[arg(long)]
    pub adv_only: bool,
    /// Fraction of weights the saliency mask frees (amun-salun, salun)
    #[arg(long, allow_negative_numbers = true)]
    pub salun_ratio: Option<f64>,
    #[command(flatten)]
    pub attack: AttackArgs,
    #[command(flatten)]
    pub import: super::ImportArgs,
    #[command(flatten)]
    pub settings: SetArgs,
    /// Choose the learning rate and the stopping epoch without a retrained
    /// model: the method runs over a ladder of learning rates and the state
    /// whose forget set looks most like held-out data (accuracy, loss-based
    /// membership test), with held-out accuracy kept, is the result. Needs
    /// --holdout or --holdout-test. See docs/CALIBRATION.md
    #[arg(long)]
    pub calibrate: bool,
    /// Held-out data for --calibrate: the last N test images of the model's
    /// dataset (then audit with `amun audit --holdout-test N`, so the audit
    /// never scores the images calibration looked at)
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "holdout",
        allow_negative_numbers = true
    )]
    pub holdout_test: Option<usize>,
    /// Held-out data for --calibrate: a dataset folder of images the model
    /// never trained on (both its splits are used)
    #[arg(long, value_name = "DIR")]
    pub holdout: Option<PathBuf>,
    /// Reference models of the model's data (`amun rmia train-refs`): with
    /// --calibrate, its membership test is the audit's RMIA (forget vs
    /// held-out) instead of the loss-based one. Needs --holdout-test
    #[arg(long, value_name = "DIR")]
    pub refs: Option<PathBuf>,
    #[command(flatten)]
    pub calibration: CalibrateArgs,
    /// Where the ladder's walk starts: own (the rung nearest the method's
    /// rate, then up or down) or lowest (then up) [default: own]
    #[arg(long, value_name = "own|lowest")]
    pub calibrate_start: Option<String>,
    /// How the ladder is walked: continue (one trajectory that climbs or
    /// descends from the state it has, at most --calibrate-max-epochs
    /// epochs) or restart (every rung from the original model) [default: continue]
    #[arg(long, value_name = "continue|restart")]
    pub calibrate_walk: Option<String>,
    /// Epochs the continuing walk may run in all [default: twice the method's epochs]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub calibrate_max_epochs: Option<usize>,
    /// How much of D_R each of calibration's epochs visits: full, a multiple
    /// of the request (e.g. 4), or method (the method's own
    /// finetune.retain_budget) [default: full]
    #[arg(long, value_name = "full|K|method")]
    pub calibrate_retain_budget: Option<String>,
    /// Points of held-out and retain accuracy a calibrated result may lose
    /// against the original model before it counts as a utility loss
    /// [default: from the data: the noise at --calibrate-level plus what
    /// forgetting this many samples costs]
    #[arg(long, value_name = "POINTS", allow_negative_numbers = true)]
    pub calibrate_max_drop: Option<f64>,
    /// The two-sided level of calibration's tests (forget vs held-out
    /// accuracy, loss-AUC vs 50, utility) [default: 0.05]
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub calibrate_level: Option<f64>,
    /// Seed of every random choice (recorded in the sidecar)
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    #[command(flatten)]
    pub dir: DataDir,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

impl UnlearnArgs {
    /// The training flags, typed: what `Method::adjusted` applies.
    fn train_overrides(&self) -> Result<TrainOverrides> {
        Ok(TrainOverrides {
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            ..self.finetune.overrides()?
        })
    }

    /// The method's other settings from the flags and `--set` (the JSON
    /// boundary, merged into the method's table by the library).
    fn table(&self, train: &TrainOverrides) -> Result<Value> {
        let mut o = Map::new();
        if self.adv_only {
            o.insert("adv_only".into(), true.into());
        }
        if let Some(r) = self.salun_ratio {
            o.insert("salun_ratio".into(), r.into());
        }
        let attack = self.attack.overrides()?;
        if !attack.is_empty() {
            o.insert("attack".into(), Value::Object(attack));
        }
        self.settings.table(o, train)
    }
}

pub fn run(a: UnlearnArgs) -> Result<()> {
    let train = a.train_overrides()?;
    let table = a.table(&train)?;
    let method = build(&a.method, &table)?;
    let method = if train.is_empty() {
        method
    } else {
        method.adjusted(&train)?
    };
    amun::unlearn::check_given(method.as_ref(), &table, !a.no_retain)?;
    let cal = calibration_settings(&a)?;
    if a.adv.is_some() && method.adversarial().is_none() {
        bail!(
            "--adv: {} trains on no adversarial set; --adv is for amun and amun-salun",
            method.name()
        );
    }
    if a.adaptive && method.adversarial().is_none() {
        bail!(
            "--adaptive: {} trains on no adversarial set to recompute; AMUN-A is amun (or \
             amun-salun) with --adaptive",
            method.name()
        );
    }
    if let Some(p) = &a.adv {
        check_precomputed(&a, p)?;
    }
    let dev = device(&a.device)?;
    let paths: Vec<PathBuf> = match &a.forget {
        Some(f) => vec![f.clone()],
        None => a.requests.clone(),
    };
    let _locks = super::claim(&files_of(&a, &paths), &[("--out", &["safetensors"])])?;
    let files = paths
        .iter()
        .map(|p| ForgetFile::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut model, parent, data) = super::open_checkpoint(&a.checkpoint, &a.import, &a.dir, dev)?;
    let mut requests = Vec::new();
    for (f, p) in files.into_iter().zip(&paths) {
        requests.push(f.resolve(&data, p)?);
    }
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    UnlearnJob::check_distinct(&requests, &names)?;
    let data = data.to_device(dev);
    amun::train::lay_out_as_trained(&mut model, &parent)?;
    let adv = match &a.adv {
        Some(p) => Some(UnlearnJob::load_adversarial(p, &requests, &model)?),
        None => None,
    };
    let heldout = match (&cal, a.holdout_test, &a.holdout) {
        (None, _, _) => None,
        (Some(_), Some(n), _) => Some(HeldOut::LastTest(n)),
        (Some(_), None, Some(d)) => Some(HeldOut::Folder(d.clone())),
        (Some(_), None, None) => unreachable!("calibration_settings checks for held-out data"),
    };
    let heldout = heldout
        .map(|h| h.prepare(&data, &a.dir.path()))
        .transpose()?;
    let refs = match &a.refs {
        Some(d) => Some(amun::audit::load_references(d, &data)?),
        None => None,
    };
    let rmia_params = amun::audit::RmiaParams::default();
    let rmia = refs
        .as_ref()
        .zip(heldout.as_ref())
        .map(|(r, (split, _))| amun::unlearn::RmiaSignal::last_test(r, &rmia_params, &data, split));
    let bars = crate::progress::Bars::new(a.quiet || a.json);
    let job = UnlearnJob {
        method: method.as_ref(),
        data: &data,
        requests: &requests,
        with_retain: !a.no_retain,
        adaptive: a.adaptive,
        adversarial: adv.as_ref(),
        calibrate: cal
            .as_ref()
            .zip(heldout.as_ref())
            .map(|(c, (split, record))| (c, split, record)),
        rmia,
        seed: a.seed,
        forgotten_before: &[],
        recipe: None,
    };
    let done = job.run(&mut model, &parent, &bars)?;
    checkpoint::save(&model, &a.out, &done.sidecar)?;
    let (sc, logs) = (&done.sidecar, &done.logs);
    if a.json {
        return print_json(&super::json::object! { sidecar: sc, logs: logs });
    }
    let mut t = Table::new(["split", "samples", "before %", "after %"]);
    for (i, name) in ["forget", "retain", "test"].iter().enumerate() {
        t.row([
            name.to_string(),
            done.sizes[i].to_string(),
            pct(done.before[i]),
            pct(done.after[i]),
        ]);
    }
    super::emit(&t.render())?;
    if let amun::model::Origin::Unlearn { timing, .. } = &sc.origin {
        let parts: Vec<String> = timing.iter().map(|(k, v)| format!("{k} {v:.1}s")).collect();
        super::outln!("time: {}", parts.join(", "));
    }
    if let Some(c) = logs.first().and_then(|l| l.calibration.as_ref()) {
        super::outln!(
            "calibration ({:?}, membership by {}, {} forgotten vs {} held-out images, level {}): \
             {}, {} of at most {} epochs; {}",
            c.settings.rule,
            c.signal.name(),
            c.forget_size,
            c.heldout_size,
            c.settings.level,
            c.chosen.label(),
            c.epochs_run,
            c.epochs_worst_case,
            c.verdict
        );
        for ch in &c.changes {
            super::outln!("  {}", ch.line());
        }
        super::outln!("  why: {}", c.why);
    }
    if let Some(s) = logs.first().and_then(|l| l.adv.as_ref()) {
        super::outln!(
            "adversarial set: {} samples, {:.1}% flipped, median ‖δ‖₂ {:.3}, {:.1} steps/sample",
            s.samples,
            s.success_rate,
            s.median_distance,
            s.mean_steps
        );
    }
    super::outln!(
        "{}: {} unlearned {} sample(s)",
        a.out.display(),
        a.method,
        done.sizes[0]
    );
    // Said even with -q: the file is written, but it deletes nothing.
    if let Some(c) = logs
        .iter()
        .filter_map(|l| l.calibration.as_ref())
        .find(|c| c.remembers)
    {
        eprintln!(
            "warning: {} still remembers the forget set: calibration found no state that forgets \
             it within the utility guard ({}); retrain without it (`amun train --exclude`), or \
             unlearn without --calibrate or with another method",
            a.out.display(),
            c.verdict
        );
    }
    Ok(())
}

/// With a precomputed adversarial set (`--adv`) no attack runs: a flag or
/// `--set attack.*` that would set one, or `--adaptive` (which computes its
/// own sets), would go unused while the sidecar looked as if it had not.
fn check_precomputed(a: &UnlearnArgs, adv: &std::path::Path) -> Result<()> {
    let why = format!(
        "--adv {} is an adversarial set computed already (its settings are in {}); attack \
         settings apply only when amun computes the set",
        adv.display(),
        amun::attack::AdvSet::meta_path(adv).display()
    );
    if let Some(flag) = a.attack.given().first() {
        bail!("{flag}: {why}; drop {flag} or --adv");
    }
    let set_attack = a.settings.set.iter().find(|kv| {
        let key = kv.split('=').next().unwrap_or("").trim().replace('-', "_");
        key == "attack" || key.starts_with("attack.")
    });
    if let Some(kv) = set_attack {
        bail!("--set {kv}: {why}; drop it or --adv");
    }
    if a.adaptive {
        bail!(
            "--adaptive computes a new adversarial set for each request on the current model, \
             so --adv {} would go unused; give one or the other",
            adv.display()
        );
    }
    Ok(())
}

/// Every file `amun unlearn` reads and writes.
fn files_of(a: &UnlearnArgs, requests: &[PathBuf]) -> Outputs {
    let mut io = Outputs::new();
    io.reads_checkpoint("--checkpoint", &a.checkpoint);
    let flag = if a.forget.is_some() {
        "--forget"
    } else {
        "--requests"
    };
    for p in requests {
        io.reads_file(
            flag,
            "the deletion request: amun's forget-set JSON or a list of indices",
            p,
        );
    }
    if let Some(p) = &a.adv {
        io.reads_adv_set("--adv", p);
    }
    if let Some(d) = &a.holdout {
        io.reads("--holdout", "the held-out data", d);
    }
    if let Some(d) = &a.refs {
        io.reads("--refs", "the reference models", d);
    }
    a.import.reads(&mut io);
    io.writes("--out", &a.out, Artifact::Unlearned);
    io
}

/// The calibration the flags ask for, checked before any work.
fn calibration_settings(a: &UnlearnArgs) -> Result<Option<amun::unlearn::CalibrateSettings>> {
    let has_holdout = a.holdout.is_some() || a.holdout_test.is_some();
    // The shared group first: --calibrate-rule is checked before --calibrate-start, as ever.
    let shared = a.calibration.overrides()?;
    let o = CalibrateOverrides {
        start: a.calibrate_start.as_deref().map(str::parse).transpose()?,
        walk: a.calibrate_walk.as_deref().map(str::parse).transpose()?,
        max_epochs: a.calibrate_max_epochs,
        retain_budget: a
            .calibrate_retain_budget
            .as_deref()
            .map(amun::unlearn::parse_calibration_budget)
            .transpose()?,
        max_utility_drop: a.calibrate_max_drop,
        level: a.calibrate_level,
        ..shared
    };
    if a.refs.is_some() && a.holdout_test.is_none() {
        bail!(
            "--refs: calibration's RMIA test scores the held-out images against the reference \
             models, which only saw the model's own data: it needs --calibrate with \
             --holdout-test N, not --holdout"
        );
    }
    if !a.calibrate {
        if has_holdout || !o.is_empty() {
            bail!("--holdout, --holdout-test and --calibrate-* only apply with --calibrate");
        }
        return Ok(None);
    }
    if !has_holdout {
        bail!(
            "--calibrate needs held-out data the model never trained on: --holdout-test N (the \
             last N test images) or --holdout DIR"
        );
    }
    if a.requests.len() > 1 {
        bail!("--calibrate takes one deletion request (--forget), not --requests");
    }
    if a.no_retain && a.calibrate_retain_budget.is_some() {
        bail!(
            "--calibrate-retain-budget: with --no-retain calibration visits no retain images, so \
             it would have no effect; drop one of them"
        );
    }
    if let Some(d) = a.calibrate_max_drop
        && (d.is_nan() || d < 0.0)
    {
        bail!("--calibrate-max-drop must be a number of points ≥ 0, got {d}");
    }
    if let Some(l) = a.calibrate_level
        && !(l > 0.0 && l < 1.0)
    {
        bail!("--calibrate-level must be a test level between 0 and 1 (e.g. 0.05), got {l}");
    }
    Ok(Some(o.settings()?))
}
