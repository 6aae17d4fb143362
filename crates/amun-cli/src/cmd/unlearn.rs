use super::adv::AttackArgs;
use super::{DataDir, device, pct, print_json};
use amun::attack::AdvSet;
use amun::data::ForgetSet;
use amun::eval::accuracy;
use amun::model::checkpoint;
use amun::report::Table;
use amun::unlearn::{RequestOptions, RunCtx, build, unlearn_requests, unlearned_sidecar};
use anyhow::{Context, Result, bail};
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
    /// The deletion request (a forget set from `amun split`)
    #[arg(
        long,
        value_name = "FORGET.json",
        conflicts_with = "requests",
        required_unless_present = "requests"
    )]
    pub forget: Option<PathBuf>,
    /// Several requests, applied in order (continual unlearning)
    #[arg(long, value_name = "FORGET.json", num_args = 1..)]
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
    /// Fine-tuning epochs
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Fine-tuning learning rate
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub momentum: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// e.g. step:1:0.1 (lr ×0.1 every epoch)
    #[arg(long)]
    pub schedule: Option<String>,
    /// AMUN: train on D_R ∪ D_A (or D_A alone with --no-retain), without D_F
    #[arg(long)]
    pub adv_only: bool,
    /// Fraction of weights the saliency mask frees (amun-salun, salun)
    #[arg(long)]
    pub salun_ratio: Option<f64>,
    #[command(flatten)]
    pub attack: AttackArgs,
    #[command(flatten)]
    pub import: super::ImportArgs,
    /// Any other setting, as KEY=VALUE (dotted keys for tables: finetune.lr=0.01)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
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
    #[arg(long, value_name = "N", conflicts_with = "holdout")]
    pub holdout_test: Option<usize>,
    /// Held-out data for --calibrate: a dataset folder of images the model
    /// never trained on (both its splits are used)
    #[arg(long, value_name = "DIR")]
    pub holdout: Option<PathBuf>,
    /// Calibration rule: accuracy (default), proxy-gap, mia or confidence
    #[arg(long, value_name = "RULE")]
    pub calibrate_rule: Option<String>,
    /// Calibration's learning-rate ladder, increasing [default: 0.001,0.003,0.01,0.03,0.1]
    #[arg(long, value_delimiter = ',', value_name = "LR,LR,..")]
    pub calibrate_lrs: Vec<f64>,
    /// Points of held-out and retain accuracy a calibrated result may lose
    /// against the original model before it counts as a utility loss
    /// [default: 10]
    #[arg(long, value_name = "POINTS", allow_negative_numbers = true)]
    pub calibrate_max_drop: Option<f64>,
    /// Seed of every random choice (recorded in the sidecar)
    #[arg(long, default_value_t = 0)]
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

fn put(obj: &mut Map<String, Value>, dotted: &str, v: Value) -> Result<()> {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().unwrap_or("");
    let mut cur = obj;
    for p in parts {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .with_context(|| format!("--set {dotted}: '{p}' is a value, not a table"))?;
    }
    cur.insert(last.to_string(), v);
    Ok(())
}

impl UnlearnArgs {
    /// The method settings the flags ask for. The training flags go to the
    /// method's `finetune` table, or to `recipe` for retrain.
    fn overrides(&self) -> Result<Value> {
        let mut o = Map::new();
        let defaults = amun::unlearn::METHODS
            .iter()
            .find(|e| e.name == self.method)
            .map(|e| (e.defaults)())
            .unwrap_or(Value::Null);
        let table = if defaults.get("recipe").is_some() {
            "recipe"
        } else {
            "finetune"
        };
        let ft = [
            ("epochs", self.epochs.map(Value::from)),
            ("lr", self.lr.map(Value::from)),
            ("momentum", self.momentum.map(Value::from)),
            ("weight_decay", self.weight_decay.map(Value::from)),
            ("batch_size", self.batch_size.map(Value::from)),
            ("schedule", self.schedule.clone().map(Value::from)),
        ];
        for (k, v) in ft {
            if let Some(v) = v {
                put(&mut o, &format!("{table}.{k}"), v)?;
            }
        }
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
        for kv in &self.set {
            let Some((k, v)) = kv.split_once('=') else {
                bail!("--set '{kv}': expected KEY=VALUE");
            };
            let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
            put(&mut o, k.trim(), v)?;
        }
        Ok(Value::Object(o))
    }
}

pub fn run(a: UnlearnArgs) -> Result<()> {
    let method = build(&a.method, &a.overrides()?)?;
    let cal = calibration_settings(&a)?;
    if a.adv.is_some() && method.adversarial().is_none() {
        bail!(
            "--adv: {} trains on no adversarial set; --adv is for amun and amun-salun",
            method.name()
        );
    }
    let dev = device(&a.device)?;
    if a.out.canonicalize().ok().is_some()
        && a.out.canonicalize().ok() == a.checkpoint.canonicalize().ok()
    {
        bail!(
            "--out {}: would overwrite the input checkpoint; choose another file",
            a.out.display()
        );
    }
    let _lock = super::claim_output(&a.out, &["safetensors"])?;
    let (mut model, parent, data) = super::open_checkpoint(&a.checkpoint, &a.import, &a.dir, dev)?;
    let paths: Vec<PathBuf> = match &a.forget {
        Some(f) => vec![f.clone()],
        None => a.requests.clone(),
    };
    let mut requests = Vec::new();
    for p in &paths {
        let f = ForgetSet::read(p)?;
        f.check_matches(&data, p)?;
        requests.push(f);
    }
    let data = data.to_device(dev);
    let recipe = amun::train::recipe_of(&parent)?;
    if recipe.as_ref().is_some_and(|r| r.channels_last) {
        model.use_channels_last()?;
    }
    let fingerprint = model.fingerprint();
    let all: Vec<i64> = {
        let mut v: Vec<i64> = requests
            .iter()
            .flat_map(|r| r.indices.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let adv = match &a.adv {
        Some(p) => {
            let (set, meta) = AdvSet::load(p)?;
            set.check_matches(&meta, &all, &fingerprint, p)?;
            Some(set)
        }
        None => None,
    };
    let forget_split = data.train.select(&all);
    let retain_idx: Vec<i64> = (0..data.train.len() as i64)
        .filter(|i| all.binary_search(i).is_err())
        .collect();
    let retain_split = data.train.select(&retain_idx);
    let before = [
        accuracy(&model, &forget_split).percent(),
        accuracy(&model, &retain_split).percent(),
        accuracy(&model, &data.test).percent(),
    ];
    let bars = crate::progress::Bars::new(a.quiet || a.json);
    let ctx = RunCtx {
        seed: a.seed,
        progress: &bars,
        original_recipe: recipe.as_ref(),
        observe: None,
        on_epoch: None,
    };
    let idx: Vec<Vec<i64>> = requests.iter().map(|r| r.indices.clone()).collect();
    let heldout = match &cal {
        Some(_) => Some(heldout_split(&a, &data, dev)?),
        None => None,
    };
    let logs = unlearn_requests(
        method.as_ref(),
        &mut model,
        &data.train,
        data.num_classes(),
        &idx,
        &RequestOptions {
            with_retain: !a.no_retain,
            adaptive: a.adaptive,
            precomputed: adv.as_ref(),
            calibrate: cal.as_ref().zip(heldout.as_ref()),
        },
        &ctx,
    )?;
    let after = [
        accuracy(&model, &forget_split).percent(),
        accuracy(&model, &retain_split).percent(),
        accuracy(&model, &data.test).percent(),
    ];
    let mut sc = unlearned_sidecar(
        &parent,
        &fingerprint,
        method.as_ref(),
        &requests,
        &logs,
        a.seed,
    );
    for (i, k) in ["forget_acc", "retain_acc", "test_acc"].iter().enumerate() {
        sc.metrics.insert(format!("{k}_before"), before[i]);
        if after[i].is_finite() {
            sc.metrics.insert(k.to_string(), after[i]);
        }
    }
    sc.metrics
        .insert("with_retain".into(), if a.no_retain { 0.0 } else { 1.0 });
    checkpoint::save(&model, &a.out, &sc)?;
    if a.json {
        return print_json(&serde_json::json!({ "sidecar": sc, "logs": logs }));
    }
    let mut t = Table::new(["split", "samples", "before %", "after %"]);
    for (i, (name, n)) in [
        ("forget", all.len()),
        ("retain", retain_idx.len()),
        ("test", data.test.len()),
    ]
    .iter()
    .enumerate()
    {
        t.row([
            name.to_string(),
            n.to_string(),
            pct(before[i]),
            pct(after[i]),
        ]);
    }
    super::emit(&t.render())?;
    if let amun::model::Origin::Unlearn { timing, .. } = &sc.origin {
        let parts: Vec<String> = timing.iter().map(|(k, v)| format!("{k} {v:.1}s")).collect();
        super::outln!("time: {}", parts.join(", "));
    }
    if let Some(c) = logs.first().and_then(|l| l.calibration.as_ref()) {
        let c: amun::unlearn::Calibration = serde_json::from_value(c.clone())?;
        let chosen = &c.chosen;
        super::outln!(
            "calibration ({:?}, {} held-out images): {} — forget {:.1}% vs held-out {:.1}% \
             (noise ±{:.1}; utility guard {:.1} points), loss-AUC {:.1}; {} of at most {} epochs; {}",
            c.settings.rule,
            c.heldout_size,
            chosen.label(),
            chosen.probe.forget_acc,
            chosen.probe.heldout_acc,
            c.noise,
            c.allowed_drop,
            chosen.probe.loss_auc,
            c.epochs_run,
            c.epochs_worst_case,
            c.why
        );
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
        all.len()
    );
    Ok(())
}

/// The calibration the flags ask for, checked before any work.
fn calibration_settings(a: &UnlearnArgs) -> Result<Option<amun::unlearn::CalibrateSettings>> {
    let has_holdout = a.holdout.is_some() || a.holdout_test.is_some();
    if !a.calibrate {
        if has_holdout
            || a.calibrate_rule.is_some()
            || !a.calibrate_lrs.is_empty()
            || a.calibrate_max_drop.is_some()
        {
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
    let mut s = amun::unlearn::CalibrateSettings::default();
    if let Some(r) = &a.calibrate_rule {
        s.rule = r.parse()?;
    }
    if !a.calibrate_lrs.is_empty() {
        s.lrs = a.calibrate_lrs.clone();
    }
    if let Some(d) = a.calibrate_max_drop {
        if d.is_nan() || d < 0.0 {
            bail!("--calibrate-max-drop must be a number of points ≥ 0, got {d}");
        }
        s.max_utility_drop = d;
    }
    s.check()?;
    Ok(Some(s))
}

/// The held-out split of `--holdout-test N` or `--holdout DIR`, refused when
/// empty or when it shares an image with the model's training or test data.
fn heldout_split(
    a: &UnlearnArgs,
    data: &amun::data::Dataset,
    dev: tch::Device,
) -> Result<amun::data::Split> {
    if let Some(n) = a.holdout_test {
        let t = data.test.len();
        if n == 0 || n >= t {
            bail!(
                "--holdout-test {n}: expected 1..{} (the test split has {t} images)",
                t.max(1) - 1
            );
        }
        return Ok(amun::data::Split {
            images: data.test.images.narrow(0, (t - n) as i64, n as i64),
            labels: data.test.labels.narrow(0, (t - n) as i64, n as i64),
        });
    }
    let dir = a
        .holdout
        .as_ref()
        .expect("checked: one of the two is given");
    let h = amun::data::DataSpec::new(dir.display().to_string()).load(&a.dir.path())?;
    if h.image_shape() != data.image_shape() || h.num_classes() != data.num_classes() {
        bail!(
            "--holdout {}: {:?} images in {} classes; the model's data has {:?} in {}",
            dir.display(),
            h.image_shape(),
            h.num_classes(),
            data.image_shape(),
            data.num_classes()
        );
    }
    let all = amun::data::Split {
        images: tch::Tensor::cat(&[&h.train.images, &h.test.images], 0),
        labels: tch::Tensor::cat(&[&h.train.labels, &h.test.labels], 0),
    };
    if all.is_empty() {
        bail!("--holdout {}: no images", dir.display());
    }
    for (what, split) in [("training", &data.train), ("test", &data.test)] {
        let shared = all.shared_images(&split.to_device(tch::Device::Cpu));
        if let Some(&(i, j)) = shared.first() {
            bail!(
                "--holdout {}: {} of its images are also in the model's {what} data {} (e.g. \
                 held-out image {i} = {what} image {j}); held-out data must be unseen by the \
                 model{}",
                dir.display(),
                shared.len(),
                data.spec.label(),
                if what == "test" {
                    " and by the audit"
                } else {
                    ""
                }
            );
        }
    }
    Ok(all.to_device(dev))
}
