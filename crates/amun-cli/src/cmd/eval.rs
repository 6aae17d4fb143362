use super::{DataDir, ImportArgs, device, open_checkpoint, pct, print_json};
use amun::data::ForgetFile;
use amun::eval::{Accuracy, accuracy};
use amun::outputs::{Artifact, Outputs};
use amun::report::Table;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The checkpoint (.safetensors with its .json sidecar)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Also report the forget and retain sets of this forget file (amun's
    /// JSON or any list `amun split --from` reads)
    #[arg(long, value_name = "FORGET")]
    pub forget: Option<PathBuf>,
    #[command(flatten)]
    pub import: ImportArgs,
    #[command(flatten)]
    pub dir: DataDir,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
    /// Also write every sample's label, prediction, true-class confidence,
    /// loss, forget-set membership and logits (train then test) to FILE:
    /// .csv, .npy (a float32 matrix of those columns) or .safetensors
    #[arg(long, value_name = "FILE")]
    pub per_sample: Option<PathBuf>,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let dev = device(&a.device)?;
    let mut io = Outputs::new();
    io.reads_checkpoint("--checkpoint", &a.checkpoint);
    if let Some(f) = &a.forget {
        io.reads("--forget", "the forget set", f);
    }
    a.import.reads(&mut io);
    if let Some(p) = &a.per_sample {
        io.writes("--per-sample", p, Artifact::PerSample);
    }
    let _locks = super::claim(&io, &[("--per-sample", &["csv", "npy", "safetensors"])])?;
    let forget = a.forget.as_deref().map(ForgetFile::read).transpose()?;
    let (model, sidecar, data) = open_checkpoint(&a.checkpoint, &a.import, &a.dir, dev)?;
    let forget = match (forget, &a.forget) {
        (Some(f), Some(p)) => Some(f.resolve(&data, p)?),
        _ => None,
    };
    let mut rows: Vec<(&str, Accuracy)> = vec![
        ("train", accuracy(&model, &data.train)),
        ("test", accuracy(&model, &data.test)),
    ];
    if let Some(f) = &forget {
        rows.push(("forget", accuracy(&model, &data.train.select(&f.indices))));
        rows.push((
            "retain",
            accuracy(&model, &data.train.select(&f.retain_indices())),
        ));
    }
    if let Some(p) = &a.per_sample {
        let ps =
            amun::eval::per_sample(&model, &data, forget.as_ref().map(|f| f.indices.as_slice()));
        ps.write(p)?;
        eprintln!(
            "{}: {} samples (train then test)",
            p.display(),
            ps.index.len()
        );
    }
    if a.json {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "checkpoint".into(),
            a.checkpoint.display().to_string().into(),
        );
        obj.insert("dataset".into(), serde_json::to_value(&data.spec)?);
        obj.insert("classes".into(), serde_json::to_value(&data.classes)?);
        for (name, acc) in &rows {
            obj.insert(
                name.to_string(),
                serde_json::json!({
                    "accuracy": acc.percent(),
                    "correct": acc.correct,
                    "total": acc.total,
                    "per_class": (0..data.num_classes()).map(|c| acc.class_percent(c)).collect::<Vec<_>>(),
                }),
            );
        }
        return print_json(&obj);
    }
    super::outln!(
        "{} ({} on {})",
        a.checkpoint.display(),
        sidecar.model.arch,
        data.spec.label()
    );
    let mut t = Table::new(["split", "samples", "accuracy %"]);
    for (name, acc) in &rows {
        t.row([name.to_string(), acc.total.to_string(), pct(acc.percent())]);
    }
    super::emit(&t.render())?;
    let mut header = vec!["class".to_string()];
    header.extend(rows.iter().map(|(n, _)| format!("{n} %")));
    let mut pc = Table::new(header);
    for c in 0..data.num_classes() {
        let mut cells = vec![format!("{c} {}", data.classes[c])];
        cells.extend(rows.iter().map(|(_, acc)| pct(acc.class_percent(c))));
        pc.row(cells);
    }
    super::emit("\n")?;
    super::emit(&pc.render())?;
    Ok(())
}
