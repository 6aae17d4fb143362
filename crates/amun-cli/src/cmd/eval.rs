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
        io.reads_file(
            "--forget",
            "the forget set: amun's JSON or a list of indices",
            f,
        );
    }
    a.import.reads(&mut io);
    if let Some(p) = &a.per_sample {
        io.writes("--per-sample", p, Artifact::PerSample);
    }
    let _locks = super::claim(&io, &[("--per-sample", &["csv", "npy", "safetensors"])])?;
    let forget = a.forget.as_deref().map(ForgetFile::read).transpose()?;
    let (model, sidecar, data) = open_checkpoint(&a.checkpoint, &a.import, &a.dir, dev)?;
    let forget = match (forget, &a.forget) {
        (Some(f), Some(p)) => Some(super::resolve_forget(f, &data, p)?),
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
        return print_json(&EvalJson {
            checkpoint: a.checkpoint.display().to_string(),
            dataset: &data.spec,
            classes: &data.classes,
            splits: rows
                .iter()
                .map(|(name, acc)| (*name, SplitJson::of(acc, data.num_classes())))
                .collect(),
        });
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

/// `eval --json`: typed rather than `json!`, so that print_json sees (and
/// names) an accuracy over no samples before it becomes null.
#[derive(serde::Serialize)]
struct EvalJson<'a> {
    checkpoint: String,
    dataset: &'a amun::data::DataSpec,
    classes: &'a [String],
    #[serde(flatten)]
    splits: std::collections::BTreeMap<&'a str, SplitJson>,
}

#[derive(serde::Serialize)]
struct SplitJson {
    accuracy: f64,
    correct: usize,
    total: usize,
    per_class: Vec<f64>,
}

impl SplitJson {
    fn of(acc: &Accuracy, classes: usize) -> SplitJson {
        SplitJson {
            accuracy: acc.percent(),
            correct: acc.correct,
            total: acc.total,
            per_class: (0..classes).map(|c| acc.class_percent(c)).collect(),
        }
    }
}
