use super::{device, print_json};
use amun::bench::{BenchConfig, BenchKind, run as run_bench};
use amun::report::{Table, hardware_line};
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum What {
    /// Forward + backward + SGD step, train mode
    Train,
    /// Forward + backward w.r.t. the input, eval mode (one PGD iteration)
    Pgd,
    /// The adversarial-set search of --forget on --checkpoint: exact Alg. 1
    /// against the fast search (passes, distances, time), first --search N
    /// samples
    Search,
    /// What unlearning costs across request sizes: --method (AMUN by
    /// default, with --set) on --checkpoint for random forget sets of each
    /// of --fractions, against an exact retrain with the original's recipe
    Unlearn,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to time
    pub what: What,
    /// small-cnn | resnet18 | resnet18-div2 | vgg19 | FILE.pt2 (a model
    /// exported with torch.export, run by amun's interpreter) [default: resnet18]
    #[arg(long)]
    pub model: Option<String>,
    /// Batch sizes, comma-separated; one row each [default: 128]
    #[arg(long, value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// bf16 autocast
    #[arg(long)]
    pub bf16: bool,
    /// Channels-last memory format (CUDA)
    #[arg(long)]
    pub channels_last: bool,
    /// Allow TF32 in cuDNN/cuBLAS (default: strict fp32)
    #[arg(long)]
    pub tf32: bool,
    /// Input shape CxHxW (default: an exported model's own, else 3x32x32)
    #[arg(long)]
    pub input: Option<String>,
    /// Number of classes (default: an exported model's own, else 10)
    #[arg(long, allow_negative_numbers = true)]
    pub classes: Option<usize>,
    /// Untimed steps first [default: 3]
    #[arg(long, allow_negative_numbers = true)]
    pub warmup: Option<usize>,
    /// Timed steps per window [default: 5]
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<usize>,
    /// Windows; the median is reported [default: 3]
    #[arg(long, allow_negative_numbers = true)]
    pub windows: Option<usize>,
    /// pgd: also time the full adversarial-set search of the first N samples
    /// of --forget on --checkpoint, with batch refilling and without
    #[arg(long, value_name = "N", requires_all = ["checkpoint", "forget"], allow_negative_numbers = true)]
    pub search: Option<usize>,
    /// The trained model for --search
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<std::path::PathBuf>,
    /// The forget set for --search
    #[arg(long, value_name = "FORGET")]
    pub forget: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub attack: super::flags::AttackArgs,
    /// unlearn: the method (see `amun methods`) [default: amun]
    #[arg(long)]
    pub method: Option<String>,
    /// unlearn: method settings as KEY=VALUE (dotted keys: finetune.lr=0.05)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// unlearn: request sizes, as shares of the training set [default:
    /// 0.1,0.01,0.001]
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub fractions: Vec<f64>,
    /// unlearn: seed of the forget sets and the method [default: 1]
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub import: super::ImportArgs,
    #[command(flatten)]
    pub dir: super::DataDir,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The defaults of the flags left out. (Left out and given are told
    /// apart, so that one a bench would ignore is refused even when given
    /// its default: `bench search --model resnet18`.)
    fn model(&self) -> &str {
        self.model.as_deref().unwrap_or("resnet18")
    }
    fn batches(&self) -> Vec<usize> {
        if self.batch.is_empty() {
            vec![128]
        } else {
            self.batch.clone()
        }
    }
    fn fractions(&self) -> Vec<f64> {
        if self.fractions.is_empty() {
            vec![0.1, 0.01, 0.001]
        } else {
            self.fractions.clone()
        }
    }
    fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("amun")
    }
}

/// Refuses the flags the chosen bench would ignore (hostile7 BE5: `bench
/// search --model resnet18` timed the checkpoint's small-cnn with exit 0):
/// search and unlearn time `--checkpoint`'s own model, not `--model` on
/// random batches; only unlearn takes a method.
fn refuse_unused_flags(a: &BenchArgs) -> Result<()> {
    let batches = [
        ("--model", a.model.is_some()),
        ("--batch", !a.batch.is_empty()),
        ("--channels-last", a.channels_last),
        ("--input", a.input.is_some()),
        ("--classes", a.classes.is_some()),
        ("--warmup", a.warmup.is_some()),
        ("--steps", a.steps.is_some()),
        ("--windows", a.windows.is_some()),
    ];
    let unlearn = [
        ("--method", a.method.is_some()),
        ("--set", !a.set.is_empty()),
        ("--fractions", !a.fractions.is_empty()),
        ("--seed", a.seed.is_some()),
    ];
    let search = [
        ("--search", a.search.is_some()),
        ("--forget", a.forget.is_some()),
        ("--bf16", a.bf16),
    ];
    let (unused, why): (Vec<_>, _) = match a.what {
        What::Search => (
            batches.iter().chain(&unlearn).collect(),
            "it times the adversarial search of --forget on --checkpoint's own model",
        ),
        What::Unlearn => (
            batches.iter().chain(&search).collect(),
            "it times --method on --checkpoint's own model and its data",
        ),
        What::Train | What::Pgd => (
            unlearn.iter().collect(),
            "they set what bench unlearn times",
        ),
    };
    let unused: Vec<&str> = unused
        .iter()
        .filter(|(_, on)| *on)
        .map(|(f, _)| *f)
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    let what = format!("{:?}", a.what).to_lowercase();
    bail!(
        "{}: bench {what} does not use {}: {why}; drop {}",
        unused.join(", "),
        if unused.len() == 1 { "it" } else { "them" },
        if unused.len() == 1 { "it" } else { "them" }
    )
}

/// The image shape and class count to bench: `--input`/`--classes`, else
/// an exported model's own (what it was exported with), else CIFAR-10's.
fn input_of(a: &BenchArgs) -> Result<([i64; 3], usize)> {
    let graph = if a.model().ends_with(".pt2") {
        Some(amun::model::program::load(
            std::path::Path::new(a.model()),
            None,
        )?)
    } else {
        None
    };
    let shape = match (&a.input, &graph) {
        (Some(s), _) => {
            let bad = || anyhow::anyhow!("--input '{s}': expected CxHxW such as 3x32x32");
            let dims: Vec<i64> = (s.split('x').map(|d| d.parse::<i64>()))
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            <[i64; 3]>::try_from(dims).map_err(|_| bad())?
        }
        (None, Some(g)) => match g.input_sizes.get(1..4) {
            Some([Some(c), Some(h), Some(w)]) => [*c, *h, *w],
            _ => bail!(
                "--input: {} takes images of any size (exported with dynamic image sizes); give \
                 the size to bench as CxHxW",
                a.model()
            ),
        },
        (None, None) => [3, 32, 32],
    };
    let classes = a
        .classes
        .or_else(|| graph.as_ref()?.classes.map(|k| k as usize))
        .unwrap_or(10);
    Ok((shape, classes))
}

pub fn run(a: BenchArgs) -> Result<()> {
    let dev = device(&a.device)?;
    amun::device::set_tf32(a.tf32);
    refuse_unused_flags(&a)?;
    if matches!(a.what, What::Search) {
        return compare_searches(&a, dev);
    }
    if matches!(a.what, What::Unlearn) {
        return unlearning_cost(&a, dev);
    }
    refuse_model_flags(&a)?;
    // A rate over no timed step would be a number measured on nothing
    // (hostile8 BE6).
    if a.steps == Some(0) || a.windows == Some(0) {
        bail!("--steps and --windows: each must be at least 1 (a rate needs timed steps)");
    }
    let (shape, classes) = input_of(&a)?;
    let (spec, _) = super::train::model_spec_for(
        a.model(),
        &super::train::ProgramArgs::default(),
        shape,
        classes,
    )?;
    let mut results = Vec::new();
    for batch in a.batches() {
        if batch == 0 {
            bail!("--batch: sizes must be at least 1");
        }
        let cfg = BenchConfig {
            kind: match a.what {
                What::Train => BenchKind::Train,
                What::Pgd | What::Search | What::Unlearn => BenchKind::Pgd,
            },
            model: spec.clone(),
            batch,
            bf16: a.bf16,
            channels_last: a.channels_last,
            warmup: a.warmup.unwrap_or(3),
            steps: a.steps.unwrap_or(5),
            windows: a.windows.unwrap_or(3),
        };
        results.push(run_bench(&cfg, dev)?);
    }
    let hw = hardware_line(dev);
    let search = match (a.search, &a.checkpoint, &a.forget) {
        (Some(n), Some(ck), Some(f)) => Some(search_bench(n, ck, f, &a, dev)?),
        _ => None,
    };
    if a.json {
        return print_json(&super::json::object! {
            hardware: hw,
            tf32: a.tf32,
            results: &results,
            search: search
                .as_ref()
                .map(|(l, same)| super::json::object! { lines: l, bit_identical: same }),
        });
    }
    super::outln!("{hw}; tf32 {}", if a.tf32 { "on" } else { "off" });
    let mut t = Table::new([
        "bench",
        "model",
        "batch",
        "device",
        "precision",
        "images/s",
        "ms/step",
    ]);
    for r in &results {
        t.row([
            format!("{:?}", r.kind).to_lowercase(),
            r.model.clone(),
            r.batch.to_string(),
            r.device.clone(),
            r.precision.clone(),
            format!("{:.0}", r.images_per_s),
            format!("{:.2}", r.ms_per_step),
        ]);
    }
    super::emit(&t.render())?;
    if let Some((lines, same)) = search {
        let mut t = Table::new([
            "search",
            "samples",
            "wall s",
            "image-steps/s",
            "steps",
            "median ‖δ‖₂",
        ]);
        for l in &lines {
            t.row([
                l.schedule.clone(),
                l.samples.to_string(),
                format!("{:.2}", l.wall_s),
                format!("{:.0}", l.image_steps_per_s),
                l.total_steps.to_string(),
                format!("{:.4}", l.median_distance),
            ]);
        }
        super::emit("\n")?;
        super::emit(&t.render())?;
        super::outln!(
            "refill speed-up {:.2}x; results {}",
            lines[1].wall_s / lines[0].wall_s.max(1e-9),
            if same {
                "bit-identical"
            } else {
                "differ (see docs/PERFORMANCE.md)"
            }
        );
    }
    Ok(())
}

/// `bench train` and `bench pgd` time `--model` on random `--input`
/// images; a trained model and its data are read only by `--search N`.
/// Without it those flags would be dropped, and a user timing a model of
/// their own would read the default's numbers as theirs.
fn refuse_model_flags(a: &BenchArgs) -> Result<()> {
    let i = &a.import;
    let given: Vec<&str> = [
        ("--checkpoint", a.checkpoint.is_some()),
        ("--forget", a.forget.is_some()),
        ("--dataset", i.dataset.is_some()),
        ("--normalize", i.normalize.is_some()),
        ("--arch", i.arch.is_some()),
        ("--train-limit", i.train_limit.is_some()),
        ("--test-limit", i.test_limit.is_some()),
        ("--init", i.init.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, on)| on.then_some(flag))
    .collect();
    if given.is_empty() || (a.search.is_some() && matches!(a.what, What::Pgd)) {
        return Ok(());
    }
    let what = format!("{:?}", a.what).to_lowercase();
    bail!(
        "{}: bench {what} times --model ({}) on random images (--input) and reads no \
         trained model or data{}; drop {}, or give the model to time as --model (small-cnn, \
         resnet18, … or FILE.pt2) with --input and --classes",
        given.join(", "),
        a.model(),
        if matches!(a.what, What::Pgd) {
            " (only --search N times the search on --checkpoint and --forget)"
        } else {
            ""
        },
        if given.len() == 1 { "it" } else { "them" }
    )
}

fn search_bench(
    n: usize,
    ck: &std::path::Path,
    f: &std::path::Path,
    a: &BenchArgs,
    dev: tch::Device,
) -> Result<(Vec<amun::bench::SearchBench>, bool)> {
    let forget = amun::data::ForgetFile::read(f)?;
    let (model, _, data) = super::open_checkpoint(ck, &a.import, &a.dir, dev)?;
    let forget = forget.resolve(&data, f)?;
    let idx: Vec<i64> = forget.indices.iter().take(n).copied().collect();
    let part = data.train.select(&idx).to_device(dev);
    let settings = a
        .attack
        .params()?
        .bf16(a.bf16 || a.attack.attack_bf16)
        .check()?;
    let bars = crate::progress::Bars::new(a.json);
    Ok(amun::bench::search_refill_vs_naive(
        &model,
        &part.images,
        &part.labels,
        &idx,
        &settings,
        &bars,
    )?)
}

fn compare_searches(a: &BenchArgs, dev: tch::Device) -> Result<()> {
    let (Some(ck), Some(f)) = (&a.checkpoint, &a.forget) else {
        bail!("bench search needs --checkpoint and --forget");
    };
    let forget = amun::data::ForgetFile::read(f)?;
    let (model, _, data) = super::open_checkpoint(ck, &a.import, &a.dir, dev)?;
    let forget = forget.resolve(&data, f)?;
    let n = a.search.unwrap_or(forget.indices.len());
    let idx: Vec<i64> = forget.indices.iter().take(n).copied().collect();
    let part = data.train.select(&idx).to_device(dev);
    let settings = a
        .attack
        .params()?
        .bf16(a.bf16 || a.attack.attack_bf16)
        .check()?;
    let bars = crate::progress::Bars::new(a.json);
    let lines = amun::bench::search_exact_vs_fast(
        &model,
        &part.images,
        &part.labels,
        &idx,
        &settings,
        &bars,
    )?;
    let hw = hardware_line(dev);
    if a.json {
        return print_json(
            &super::json::object! { hardware: hw, checkpoint: ck, searches: &lines },
        );
    }
    super::outln!("{hw}; {} on {}", ck.display(), data.spec.label());
    let mut t = Table::new([
        "search",
        "samples",
        "flipped %",
        "fwd+bwd/sample",
        "fwd/sample",
        "median ‖δ‖₂",
        "mean ‖δ‖₂",
        "≤ exact's",
        "wall s",
    ]);
    for l in &lines {
        t.row([
            l.search.clone(),
            l.samples.to_string(),
            format!("{:.1}", l.success_rate),
            format!("{:.1}", l.passes_per_sample),
            format!("{:.1}", l.forward_per_sample),
            format!("{:.4}", l.median_distance),
            format!("{:.4}", l.mean_distance),
            l.closer_or_equal.map_or("-".into(), |c| {
                format!("{:.1}%", 100.0 * c as f64 / l.samples.max(1) as f64)
            }),
            format!("{:.2}", l.wall_s),
        ]);
    }
    super::emit(&t.render())?;
    let (e, fst) = (&lines[0], &lines[1]);
    super::outln!(
        "fast: {:.1}x fewer forward+backward passes, median distance {:.3}x exact's, {:.2}x the wall time",
        e.passes_per_sample / fst.passes_per_sample.max(1e-9),
        fst.median_distance / e.median_distance.max(1e-12),
        fst.wall_s / e.wall_s.max(1e-9)
    );
    let mut h = Table::new(["final ε", "exact", "fast"]);
    let keys: std::collections::BTreeSet<&String> =
        lines.iter().flat_map(|l| l.eps_histogram.keys()).collect();
    for k in keys {
        h.row([
            k.clone(),
            e.eps_histogram.get(k).copied().unwrap_or(0).to_string(),
            fst.eps_histogram.get(k).copied().unwrap_or(0).to_string(),
        ]);
    }
    super::emit("\n")?;
    super::emit(&h.render())?;
    Ok(())
}

/// `amun bench unlearn`: one row per request size.
fn unlearning_cost(a: &BenchArgs, dev: tch::Device) -> Result<()> {
    let Some(ck) = &a.checkpoint else {
        bail!("bench unlearn needs --checkpoint (the trained model)");
    };
    let fractions = a.fractions();
    if fractions.iter().any(|f| !(*f > 0.0 && *f < 1.0)) {
        bail!("--fractions: each must lie in (0,1)");
    }
    if let Some(f) = fractions
        .iter()
        .enumerate()
        .find_map(|(i, f)| fractions[..i].contains(f).then_some(f))
    {
        bail!("--fractions: {f} is listed twice (its row would be measured twice); give each once");
    }
    let mut table = serde_json::Map::new();
    let attack = a.attack.overrides()?;
    if !attack.is_empty() {
        table.insert("attack".into(), serde_json::Value::Object(attack));
    }
    let table = super::settings_table(table, &a.set, &amun::train::TrainOverrides::default())?;
    let method = amun::unlearn::build(a.method(), &table)?;
    let (mut model, parent, data) = super::open_checkpoint(ck, &a.import, &a.dir, dev)?;
    // Its fine-tune would train on what its lineage forgot, against a
    // retrain it records no recipe for (hostile8 BU1).
    let forgot: usize = parent.forgotten().iter().map(|f| f.size).sum();
    if forgot > 0 {
        bail!(
            "--checkpoint {}: an unlearned model (its lineage forgot {forgot} samples), whose \
             requests would retrain on them; bench the trained model it was made from",
            ck.display()
        );
    }
    amun::train::lay_out_as_trained(&mut model, &parent)?;
    let data = data.to_device(dev);
    let bars = crate::progress::Bars::new(a.json);
    let rows = amun::bench::unlearning_cost(
        &model,
        &parent,
        &data,
        method.as_ref(),
        &fractions,
        a.seed.unwrap_or(1),
        &bars,
    )?;
    let hw = hardware_line(dev);
    if a.json {
        return print_json(&super::json::object! {
            hardware: hw,
            method: method.name(),
            settings: method.settings(),
            rows: &rows,
        });
    }
    super::outln!(
        "{hw}; {} with D_R, {} training images",
        method.name(),
        data.train.len()
    );
    let mut t = Table::new([
        "request",
        "|D_F|",
        "search s",
        "method s",
        "total s",
        "image-steps",
        "retrain image-steps",
        "steps × retrain",
        "× retrain (s, est.)",
    ]);
    let n_train = data.train.len() as f64;
    for r in &rows {
        // A request is at least one sample: say when that is not the
        // fraction asked for (hostile9 BE12: "0.01%" of 300 is 1, 0.33%).
        let share = r.forget as f64 / n_train;
        let request = match (share - r.fraction).abs() > 0.1 * r.fraction {
            true => format!("{}% (as {:.2}%)", r.fraction * 100.0, share * 100.0),
            false => format!("{}%", r.fraction * 100.0),
        };
        t.row([
            request,
            r.forget.to_string(),
            format!("{:.1}", r.search_s),
            format!("{:.1}", r.method_s),
            format!("{:.1}", r.total_s),
            r.image_steps.to_string(),
            // No recipe (an imported model): no retrain to price.
            match r.retrain_image_steps {
                0 => "-".into(),
                n => n.to_string(),
            },
            match r.retrain_image_steps {
                0 => "-".into(),
                _ => format!("{:.3}", r.steps_vs_retrain),
            },
            if r.time_vs_retrain.is_finite() {
                format!("{:.3}", r.time_vs_retrain)
            } else {
                "-".into()
            },
        ]);
    }
    super::emit(&t.render())?;
    Ok(())
}
