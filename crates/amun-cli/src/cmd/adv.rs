use super::flags::AttackArgs;
use super::{DataDir, device, print_json};
use amun::attack::search;
use amun::data::ForgetFile;
use amun::model::checkpoint::ForgetSummary;
use amun::outputs::{Artifact, Outputs};
use amun::report::Table;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

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
    io.reads_checkpoint("--checkpoint", &a.checkpoint)
        .reads_file(
            "--forget",
            "the forget set: amun's JSON or a list of indices",
            &a.forget,
        );
    a.import.reads(&mut io);
    io.writes("--out", &a.out, Artifact::AdvSet);
    let _locks = super::claim(&io, &[("--out", &["safetensors"])])?;
    let forget = ForgetFile::read(&a.forget)?;
    let (model, _, data) = super::open_checkpoint(&a.checkpoint, &a.import, &a.dir, dev)?;
    let forget = super::resolve_forget(forget, &data, &a.forget)?;
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
