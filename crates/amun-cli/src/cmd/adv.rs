use super::{DataDir, device, print_json};
use amun::attack::{AdvParams, AttackKind, Eps0, search};
use amun::data::ForgetFile;
use amun::model::checkpoint::ForgetSummary;
use amun::outputs::{Artifact, Outputs};
use amun::report::Table;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Attack flags shared by `amun adv` and `amun unlearn`; each one left out
/// keeps the default.
#[derive(Args, Debug, Clone)]
pub struct AttackArgs {
    /// pgd-l2 (the paper's) | pgd-linf | fgsm [default: pgd-l2]
    #[arg(long)]
    pub attack: Option<String>,
    /// First ε [default: 0.04, for 32×32 RGB in [0,1]], or auto: the smallest
    /// 0.01·2^k for which ~95% of a 100-sample probe flip within one round
    #[arg(long)]
    pub eps0: Option<String>,
    /// PGD steps per round, α = ε/10 [default: 50]
    #[arg(long, allow_negative_numbers = true)]
    pub pgd_steps: Option<usize>,
    /// Samples attacked at once [default: 128]
    #[arg(long, allow_negative_numbers = true)]
    pub attack_batch: Option<usize>,
    /// bf16 autocast for the attack
    #[arg(long)]
    pub attack_bf16: bool,
    /// exact (the paper's Alg. 1) | fast (per-sample start from the distance
    /// estimate, adaptive radius, bisection; Alg. 1 as fallback)
    #[arg(long, value_name = "exact|fast")]
    pub adv_search: Option<String>,
    /// Fast search: adaptive-radius steps [default: 20]
    #[arg(long, allow_negative_numbers = true)]
    pub fast_steps: Option<usize>,
    /// Fast search: end this fraction of the distance past the boundary
    /// [default: 0]
    #[arg(long, allow_negative_numbers = true)]
    pub overshoot: Option<f64>,
}

fn search_kind(s: &str) -> Result<amun::attack::SearchKind> {
    match s {
        "exact" => Ok(amun::attack::SearchKind::Exact),
        "fast" => Ok(amun::attack::SearchKind::Fast),
        _ => anyhow::bail!("--adv-search '{s}': expected exact or fast"),
    }
}

impl AttackArgs {
    /// The flags given, by name (`--eps0`).
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--attack", self.attack.is_some()),
            ("--eps0", self.eps0.is_some()),
            ("--pgd-steps", self.pgd_steps.is_some()),
            ("--attack-batch", self.attack_batch.is_some()),
            ("--attack-bf16", self.attack_bf16),
            ("--adv-search", self.adv_search.is_some()),
            ("--fast-steps", self.fast_steps.is_some()),
            ("--overshoot", self.overshoot.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, given)| given.then_some(f))
        .collect()
    }

    pub fn params(&self) -> Result<AdvParams> {
        let mut p = AdvParams::new().bf16(self.attack_bf16);
        if let Some(a) = &self.attack {
            p = p.attack(a.parse::<AttackKind>()?);
        }
        if let Some(e) = &self.eps0 {
            p = p.eps0(e.parse::<Eps0>()?);
        }
        if let Some(s) = self.pgd_steps {
            p = p.steps(s);
        }
        if let Some(b) = self.attack_batch {
            p = p.batch_size(b);
        }
        if let Some(s) = &self.adv_search {
            p = p.search(search_kind(s)?);
        }
        if let Some(n) = self.fast_steps {
            p = p.fast_steps(n);
        }
        if let Some(o) = self.overshoot {
            p = p.overshoot(o);
        }
        Ok(p)
    }

    /// The flags given, as method settings (`attack.*`).
    pub fn overrides(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut m = serde_json::Map::new();
        if let Some(a) = &self.attack {
            m.insert(
                "attack".into(),
                serde_json::to_value(a.parse::<AttackKind>()?)?,
            );
        }
        if let Some(e) = &self.eps0 {
            m.insert("eps0".into(), serde_json::to_value(e.parse::<Eps0>()?)?);
        }
        if let Some(s) = self.pgd_steps {
            m.insert("steps".into(), s.into());
        }
        if let Some(b) = self.attack_batch {
            m.insert("batch_size".into(), b.into());
        }
        if self.attack_bf16 {
            m.insert("bf16".into(), true.into());
        }
        if let Some(s) = &self.adv_search {
            m.insert("search".into(), serde_json::to_value(search_kind(s)?)?);
        }
        if let Some(n) = self.fast_steps {
            m.insert("fast_steps".into(), n.into());
        }
        if let Some(o) = self.overshoot {
            m.insert("overshoot".into(), o.into());
        }
        Ok(m)
    }
}

#[derive(Args, Debug)]
pub struct AdvArgs {
    /// The model to attack (.safetensors with its sidecar)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The forget set whose adversarial set to compute
    #[arg(long, value_name = "FORGET")]
    pub forget: PathBuf,
    /// Where to write the adversarial set (.safetensors; summary .json beside it)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub attack: AttackArgs,
    #[command(flatten)]
    pub import: super::ImportArgs,
    /// Run the naive loop (no batch refilling), for comparison
    #[arg(long)]
    pub no_refill: bool,
    #[command(flatten)]
    pub dir: DataDir,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: AdvArgs) -> Result<()> {
    let settings = a.attack.params()?.refill(!a.no_refill).check()?;
    let dev = device(&a.device)?;
    let mut io = Outputs::new();
    io.reads_checkpoint("--checkpoint", &a.checkpoint).reads(
        "--forget",
        "the forget set",
        &a.forget,
    );
    a.import.reads(&mut io);
    io.writes("--out", &a.out, Artifact::AdvSet);
    let _locks = super::claim(&io, &[("--out", &["safetensors"])])?;
    let forget = ForgetFile::read(&a.forget)?;
    let (model, _, data) = super::open_checkpoint(&a.checkpoint, &a.import, &a.dir, dev)?;
    let forget = forget.resolve(&data, &a.forget)?;
    let part = data.train.select(&forget.indices);
    let bars = crate::progress::Bars::new(a.quiet || a.json);
    let set = search(
        &model,
        &part.images,
        &part.labels,
        &forget.indices,
        &settings,
        &bars,
    )?;
    set.save(&a.out, &model.fingerprint(), ForgetSummary::of(&forget))?;
    let s = set.summary();
    if a.json {
        return print_json(&s);
    }
    super::emit(&summary_table(&s))?;
    super::outln!("{}: written", a.out.display());
    Ok(())
}

/// The summary of an adversarial set as text.
pub fn summary_table(s: &amun::attack::AdvSummary) -> String {
    let mut t = Table::new([
        "samples",
        "flipped",
        "already wrong",
        "ε0",
        "mean ‖δ‖₂",
        "median ‖δ‖₂",
        "steps/sample",
        "wall s",
        "samples/s",
    ]);
    t.row([
        s.samples.to_string(),
        format!("{:.2}%", s.success_rate),
        s.already_misclassified.to_string(),
        format!("{}", s.eps0),
        format!("{:.4}", s.mean_distance),
        format!("{:.4}", s.median_distance),
        format!("{:.1}", s.mean_steps),
        format!("{:.1}", s.wall_s),
        format!("{:.1}", s.samples as f64 / s.wall_s.max(1e-9)),
    ]);
    let mut h = Table::new(["final ε", "samples"]);
    let mut keys: Vec<(&String, &usize)> = s.eps_histogram.iter().collect();
    keys.sort_by(|a, b| {
        a.0.parse::<f64>()
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.0.parse::<f64>().unwrap_or(f64::INFINITY))
    });
    for (k, v) in keys {
        h.row([k.clone(), v.to_string()]);
    }
    format!("{}\n{}", t.render(), h.render())
}
