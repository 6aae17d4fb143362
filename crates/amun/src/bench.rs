//! Throughput benchmarks on synthetic batches: a training step (forward,
//! backward, SGD update) and an input-gradient step (what PGD does each
//! iteration). Timed after warm-up, synchronised on CUDA, median of windows.
use crate::device::{device_name, with_autocast};
use crate::error::Result;
use crate::model::{Classifier, ModelSpec};
use crate::train::{Sgd, cross_entropy};
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Which step to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchKind {
    /// Forward + backward + SGD step, BatchNorm in train mode.
    Train,
    /// Forward + backward w.r.t. the input, eval mode (one PGD iteration).
    Pgd,
}

/// Settings of one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub kind: BenchKind,
    pub model: ModelSpec,
    pub batch: usize,
    pub bf16: bool,
    pub channels_last: bool,
    pub warmup: usize,
    /// Timed steps per window; the result is the median over windows.
    pub steps: usize,
    pub windows: usize,
}

/// One measured line.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub kind: BenchKind,
    pub model: String,
    pub batch: usize,
    pub device: String,
    pub precision: String,
    pub images_per_s: f64,
    pub ms_per_step: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Runs one benchmark on `device`.
pub fn run(cfg: &BenchConfig, device: Device) -> Result<BenchResult> {
    let mut model = match &cfg.model.program {
        // The program's own weights: a graph may have parameters without a
        // default initialisation.
        Some(p) => {
            let mut m = Classifier::blank(&cfg.model, device)?;
            let w = crate::model::program::read_state_dict(&p.file)?
                .into_iter()
                .map(|(k, v)| (k, v.to_device(device)))
                .collect();
            m.load_named(w, &p.file)?;
            m
        }
        None => Classifier::new(&cfg.model, device, 0)?,
    };
    if cfg.channels_last {
        model.use_channels_last()?;
    }
    let s = &cfg.model;
    let b = cfg.batch as i64;
    let x = Tensor::rand(
        [b, s.in_channels, s.image_size, s.image_size],
        (Kind::Float, device),
    );
    let y = Tensor::randint(s.num_classes, [b], (Kind::Int64, device));
    let mut opt = Sgd::new(&model, 0.9, 5e-4, false);
    let mut step = || match cfg.kind {
        BenchKind::Train => {
            let logits = with_autocast(device, cfg.bf16, || model.forward_t(&x, true));
            let loss = cross_entropy(&logits, &y);
            opt.zero_grad();
            loss.backward();
            opt.step(0.01);
        }
        BenchKind::Pgd => {
            let xa = x.detach().set_requires_grad(true);
            let logits = with_autocast(device, cfg.bf16, || model.forward_t(&xa, false));
            let loss = cross_entropy(&logits, &y);
            let g = Tensor::run_backward(&[&loss], &[&xa], false, false);
            let _ = tch::no_grad(|| &x + &g[0] * 0.0);
        }
    };
    for _ in 0..cfg.warmup {
        step();
    }
    sync(device);
    let mut rates = Vec::new();
    for _ in 0..cfg.windows.max(1) {
        let t = Instant::now();
        for _ in 0..cfg.steps.max(1) {
            step();
        }
        sync(device);
        rates.push(t.elapsed().as_secs_f64() / cfg.steps.max(1) as f64);
    }
    rates.sort_by(f64::total_cmp);
    let sec = rates[rates.len() / 2];
    let mut precision = if cfg.bf16 { "bf16 autocast" } else { "fp32" }.to_string();
    if cfg.channels_last {
        precision.push_str(", channels-last");
    }
    Ok(BenchResult {
        kind: cfg.kind,
        model: match &s.program {
            Some(p) => p.file.display().to_string(),
            None => s.arch.name().into(),
        },
        batch: cfg.batch,
        device: device_name(device),
        precision,
        images_per_s: cfg.batch as f64 / sec,
        ms_per_step: sec * 1e3,
    })
}

/// One timed adversarial-set search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchBench {
    /// `refill` or `naive`.
    pub schedule: String,
    pub samples: usize,
    pub wall_s: f64,
    /// Forward+backward passes over samples, per second.
    pub image_steps_per_s: f64,
    pub total_steps: u64,
    pub median_distance: f64,
    pub eps_histogram: std::collections::BTreeMap<String, usize>,
}

/// Times the full search with batch refilling against the naive loop (a
/// batch runs until its last sample finishes) on the same samples, one after
/// the other; returns both lines and whether their results are bit-identical.
pub fn search_refill_vs_naive(
    model: &Classifier,
    images: &Tensor,
    labels: &Tensor,
    indices: &[i64],
    settings: &crate::attack::AdvSettings,
    progress: &dyn crate::progress::Progress,
) -> Result<(Vec<SearchBench>, bool)> {
    let mut lines = Vec::new();
    let mut sets = Vec::new();
    for refill in [true, false] {
        let mut s = settings.clone();
        s.refill = refill;
        sync(model.device());
        let t = Instant::now();
        let set = crate::attack::search(model, images, labels, indices, &s, progress)?;
        sync(model.device());
        let wall = t.elapsed().as_secs_f64();
        let sum = set.summary();
        lines.push(SearchBench {
            schedule: if refill { "refill" } else { "naive" }.into(),
            samples: sum.samples,
            wall_s: wall,
            image_steps_per_s: sum.total_steps as f64 / wall,
            total_steps: sum.total_steps,
            median_distance: sum.median_distance,
            eps_histogram: sum.eps_histogram,
        });
        sets.push(set);
    }
    let same = sets[0].images.equal(&sets[1].images)
        && sets[0].adv_labels == sets[1].adv_labels
        && sets[0].eps == sets[1].eps;
    Ok((lines, same))
}

/// One search of [`search_exact_vs_fast`].
#[derive(Debug, Clone, Serialize)]
pub struct SearchCompare {
    /// `exact` (Alg. 1) or `fast`.
    pub search: String,
    pub samples: usize,
    pub success_rate: f64,
    /// Forward+backward passes per sample.
    pub passes_per_sample: f64,
    /// Forward-only passes per sample (bisection).
    pub forward_per_sample: f64,
    pub median_distance: f64,
    pub mean_distance: f64,
    pub wall_s: f64,
    pub eps_histogram: std::collections::BTreeMap<String, usize>,
    /// Samples whose example is at most as far as exact's (fast only).
    pub closer_or_equal: Option<usize>,
}

/// Runs exact Alg. 1 and the fast search on the same samples, one after
/// the other, and compares passes, distances and time.
pub fn search_exact_vs_fast(
    model: &Classifier,
    images: &Tensor,
    labels: &Tensor,
    indices: &[i64],
    settings: &crate::attack::AdvSettings,
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<SearchCompare>> {
    use crate::attack::SearchKind;
    let mut out = Vec::new();
    let mut exact_dist: Vec<f64> = Vec::new();
    for kind in [SearchKind::Exact, SearchKind::Fast] {
        let mut s = settings.clone();
        s.search = kind;
        sync(model.device());
        let t = Instant::now();
        let set = crate::attack::search(model, images, labels, indices, &s, progress)?;
        sync(model.device());
        let wall = t.elapsed().as_secs_f64();
        let sum = set.summary();
        let n = sum.samples.max(1) as f64;
        let closer = (kind == SearchKind::Fast).then(|| {
            set.dist
                .iter()
                .zip(&exact_dist)
                .filter(|(f, e)| **f <= **e + 1e-9)
                .count()
        });
        if kind == SearchKind::Exact {
            exact_dist = set.dist.clone();
        }
        out.push(SearchCompare {
            search: if kind == SearchKind::Exact {
                "exact"
            } else {
                "fast"
            }
            .into(),
            samples: sum.samples,
            success_rate: sum.success_rate,
            passes_per_sample: sum.total_steps as f64 / n,
            forward_per_sample: sum.forward_only as f64 / n,
            median_distance: sum.median_distance,
            mean_distance: sum.mean_distance,
            wall_s: wall,
            eps_histogram: sum.eps_histogram,
            closer_or_equal: closer,
        });
    }
    Ok(out)
}

/// What unlearning one request of a given size cost.
#[derive(Debug, Clone, Serialize)]
pub struct CostRow {
    /// The request: this share of the training set.
    pub fraction: f64,
    pub forget: usize,
    pub search_s: f64,
    pub method_s: f64,
    pub total_s: f64,
    /// Images forwarded and backpropagated (fine-tune and search).
    pub image_steps: u64,
    /// An exact retrain's: the original recipe's epochs × |D_R|.
    pub retrain_image_steps: u64,
    pub steps_vs_retrain: f64,
    /// The original's training seconds scaled to |D_R| (NaN when the
    /// checkpoint records no training run).
    pub retrain_s_estimate: f64,
    pub time_vs_retrain: f64,
}

/// Runs `method` with the retain set on requests of each of `fractions`
/// of the training set (random forget sets from `seed`), each on a fresh
/// copy of `model` (made by `parent`), and measures what each cost against
/// an exact retrain with the original's recipe.
pub fn unlearning_cost(
    model: &Classifier,
    parent: &crate::model::Sidecar,
    data: &crate::data::Dataset,
    method: &dyn crate::unlearn::Method,
    fractions: &[f64],
    seed: u64,
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<CostRow>> {
    use crate::data::{ForgetSet, ForgetSpec};
    let recipe = crate::train::recipe_of(parent)?;
    let n = data.train.len();
    let trained_s = match &parent.origin {
        crate::model::Origin::Train { wall_s, .. } => Some(*wall_s),
        _ => None,
    };
    let mut rows = Vec::new();
    for &f in fractions {
        let forget = ForgetSet::choose(data, &ForgetSpec::Fraction(f), seed)?;
        let mut m = model.try_clone()?;
        let requests = [forget];
        let job = crate::unlearn::UnlearnJob {
            method,
            data,
            requests: &requests,
            with_retain: true,
            adaptive: false,
            adversarial: None,
            calibrate: None,
            seed,
            forgotten_before: &[],
            rmia: None,
            recipe: None,
            batch: Default::default(),
        };
        let out = job.run(&mut m, parent, progress)?;
        let timing = |k: &str| {
            out.logs
                .iter()
                .map(|l| l.timing.get(k).copied().unwrap_or(0.0))
                .sum::<f64>()
        };
        let d_r = n - requests[0].size;
        let retrain_steps = recipe.as_ref().map_or(0, |r| (r.epochs * d_r) as u64);
        let steps: u64 = out.logs.iter().map(|l| l.image_steps()).sum();
        let retrain_s = trained_s.map_or(f64::NAN, |s| s * d_r as f64 / n as f64);
        let total = timing("total");
        rows.push(CostRow {
            fraction: f,
            forget: requests[0].size,
            search_s: timing("adversarial_search"),
            method_s: timing("method_total"),
            total_s: total,
            image_steps: steps,
            retrain_image_steps: retrain_steps,
            steps_vs_retrain: steps as f64 / retrain_steps.max(1) as f64,
            retrain_s_estimate: retrain_s,
            time_vs_retrain: total / retrain_s,
        });
    }
    Ok(rows)
}
