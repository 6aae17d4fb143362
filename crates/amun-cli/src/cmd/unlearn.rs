use super::flags::{AttackArgs, CalibrateArgs, FinetuneArgs, SetArgs};
use super::{DataDir, device, pct, print_json};
use amun::data::{ForgetFile, HeldOut};
use amun::model::checkpoint;
use amun::outputs::{Artifact, Outputs};
use amun::report::Table;
use amun::train::TrainOverrides;
use amun::unlearn::{AdvFile, RunSettings, build};
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
    /// A deletion request an earlier unlearning of --checkpoint already
    /// forgot (repeat for each; required for every one its sidecar
    /// records): kept out of this run's retain set
    #[arg(long, value_name = "FORGET")]
    pub forgotten: Vec<PathBuf>,
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
    /// The settings the flags gave that `--set` could give too, with
    /// their flags ([`super::flags::in_flags`]).
    pub fn given(&self) -> Vec<(String, &'static str)> {
        let mut out = self.finetune.given();
        out.extend(self.attack.settings_given());
        if self.salun_ratio.is_some() {
            out.push(("salun_ratio".into(), "--salun-ratio"));
        }
        if self.adv_only {
            out.push(("adv_only".into(), "--adv-only"));
        }
        if self.holdout_test.is_some() {
            out.push(("holdout".into(), "--holdout-test"));
        } else if self.holdout.is_some() {
            out.push(("holdout".into(), "--holdout"));
        }
        out
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
    let train = a.finetune.overrides()?;
    let table = a.table(&train)?;
    let method = build(&a.method, &table)?;
    let method = if train.is_empty() {
        method
    } else {
        method.adjusted(&train)?
    };
    amun::unlearn::check_given(method.as_ref(), &table, !a.no_retain)?;
    let settings = run_settings(&a)?;
    settings.check(method.as_ref())?;
    if let Some(p) = &a.adv {
        check_precomputed(&a, p)?;
    }
    let paths: Vec<PathBuf> = match &a.forget {
        Some(f) => vec![f.clone()],
        None => a.requests.clone(),
    };
    let io = files_of(&a, &paths);
    let _locks = super::claim(&io, &[("--out", &["safetensors"])])?;
    let replaced = io.replacing();
    let read = |paths: &[PathBuf]| {
        (paths.iter().map(|p| ForgetFile::read(p))).collect::<Result<Vec<_>, _>>()
    };
    let (files, earlier) = (read(&paths)?, read(&a.forgotten)?);
    let (model, parent, data) =
        super::open_checkpoint(&a.checkpoint, &a.import, &a.dir, settings.device)?;
    let resolve = |files: Vec<ForgetFile>, paths: &[PathBuf]| {
        (files
            .into_iter()
            .zip(paths)
            .map(|(f, p)| super::resolve_forget(f, &data, p)))
        .collect::<Result<Vec<_>, _>>()
    };
    let (requests, earlier) = (resolve(files, &paths)?, resolve(earlier, &a.forgotten)?);
    let shown = |paths: &[PathBuf]| -> Vec<String> {
        paths.iter().map(|p| p.display().to_string()).collect()
    };
    let forgotten = amun::unlearn::forgotten_before(&parent, &earlier, &shown(&a.forgotten))?;
    let names = shown(&paths);
    let mut prepared = settings.prepare(model, &parent, &data, requests, &names)?;
    drop(data);
    let bars = crate::progress::Bars::new(a.quiet || a.json);
    let done = prepared.run(
        &settings,
        method.as_ref(),
        &parent,
        a.seed,
        &forgotten,
        &bars,
    )?;
    checkpoint::save(&prepared.model, &a.out, &done.sidecar)?;
    super::say_replaced(&replaced);
    if a.json {
        let (sc, logs) = (&done.sidecar, &done.logs);
        return print_json(&super::json::object! { sidecar: sc, logs: logs, replaced: &replaced });
    }
    print_outcome(&a, &done)
}

/// The human-readable outcome: accuracies before → after, time, the
/// calibration's decision and the adversarial set's summary; a model that
/// still remembers is said even with -q.
fn print_outcome(a: &UnlearnArgs, done: &amun::unlearn::Unlearned) -> Result<()> {
    let (sc, logs) = (&done.sidecar, &done.logs);
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
/// `--set attack.*` that would set one would go unused while the sidecar
/// looked as if it had not (`--adaptive` with it: `RunSettings::check`).
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
    for p in &a.forgotten {
        io.reads_file("--forgotten", "an earlier deletion request", p);
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

/// The run's settings from the flags, checked before any work.
fn run_settings(a: &UnlearnArgs) -> Result<RunSettings> {
    let calibrate = calibration_settings(a)?.map(|c| {
        let heldout = match (a.holdout_test, &a.holdout) {
            (Some(n), _) => HeldOut::LastTest(n),
            (None, Some(d)) => HeldOut::Folder(d.clone()),
            (None, None) => unreachable!("calibration_settings checks for held-out data"),
        };
        (c, heldout)
    });
    Ok(RunSettings {
        with_retain: !a.no_retain,
        adaptive: a.adaptive,
        adversarial: a.adv.clone().map(AdvFile::Checked),
        calibrate,
        refs: a.refs.clone(),
        ..RunSettings::new(device(&a.device)?, a.dir.path())
    })
}

/// The calibration the flags ask for, checked before any work.
fn calibration_settings(a: &UnlearnArgs) -> Result<Option<amun::unlearn::CalibrateSettings>> {
    let has_holdout = a.holdout.is_some() || a.holdout_test.is_some();
    let o = a.calibration.overrides()?;
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
    o.check_with_retain(!a.no_retain)?;
    // The values are checked by the library, in the flags' words (`flags::in_flags`).
    Ok(Some(o.settings()?))
}
