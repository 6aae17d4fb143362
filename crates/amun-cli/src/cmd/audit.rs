use super::{DataDir, device, pct, print_json};
use amun::audit::{
    ModelAudit, RmiaParams, Scores, Signal, TieRemedy, audit, audit_holdout, avg_gap,
    check_retrain, load_references,
};
use amun::data::ForgetFile;
use amun::model::checkpoint;
use amun::report::Table;
use anyhow::{Result, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Models to audit (each .safetensors with its sidecar)
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// The forget set (amun's JSON or any list `amun split --from` reads)
    #[arg(long, value_name = "FORGET")]
    pub forget: PathBuf,
    /// A deletion request the audited models' lineage forgot before
    /// --forget (repeat for each): the audit's forget set is then all of
    /// them, and --retrain must exclude all of them
    #[arg(long, value_name = "FORGET")]
    pub forgotten: Vec<PathBuf>,
    /// Reference models from `amun rmia train-refs`
    #[arg(long, value_name = "DIR")]
    pub refs: PathBuf,
    /// A model retrained without exactly the forget set (`amun train
    /// --exclude FORGET`; its sidecar records what it excluded, and any
    /// other model is refused): adds the Avg. Gap column
    #[arg(long, value_name = "FILE")]
    pub retrain: Option<PathBuf>,
    /// taylor-soft-margin (T 2, margin 0.6, order 4) | softmax (T 1)
    #[arg(long, default_value = "taylor-soft-margin")]
    pub signal: String,
    /// Online RMIA (prior from all reference models) instead of offline
    #[arg(long)]
    pub online: bool,
    /// Offline correction a
    #[arg(long, default_value_t = 0.3, allow_negative_numbers = true)]
    pub a: f64,
    /// Likelihood-ratio threshold γ
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub gamma: f64,
    /// Seed of the D_R sample and the SVC subsample [default: derived from
    /// the forget set's seed, as `amun experiment` does, so a report line
    /// can be reproduced here]
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Leave the last N test images out of D_T [default: what a calibrated
    /// checkpoint's sidecar records its calibration looked at (`amun
    /// unlearn --calibrate --holdout-test N`), else 0]; fewer than that is
    /// refused
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub holdout_test: Option<usize>,
    #[command(flatten)]
    pub import: super::ImportArgs,
    #[command(flatten)]
    pub dir: DataDir,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// RMIA's parameters from the flags, checked.
fn rmia_params(a: &AuditArgs) -> Result<RmiaParams> {
    let signal = match a.signal.as_str() {
        "taylor-soft-margin" => Signal::default(),
        "softmax" => Signal::Softmax { temperature: 1.0 },
        s => bail!("--signal '{s}': expected taylor-soft-margin or softmax"),
    };
    let params = RmiaParams {
        signal,
        offline: !a.online,
        a: a.a,
        gamma: a.gamma,
    };
    params.check()?;
    Ok(params)
}

pub fn run(a: AuditArgs) -> Result<()> {
    let dev = device(&a.device)?;
    let params = rmia_params(&a)?;
    let paths = check_files(&a)?;
    let forget = ForgetFile::read(&a.forget)?;
    let earlier = (a.forgotten.iter())
        .map(|p| ForgetFile::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (_, first, data) =
        super::open_checkpoint(&a.checkpoint[0], &a.import, &a.dir, tch::Device::Cpu)?;
    let forget = super::resolve_forget(forget, &data, &a.forget)?;
    let earlier = (earlier.into_iter().zip(&a.forgotten))
        .map(|(f, p)| super::resolve_forget(f, &data, p))
        .collect::<Result<Vec<_>, _>>()?;
    let sidecars = sidecars_on_data_of(&paths, &first)?;
    let audited: Vec<(&std::path::Path, &amun::model::Sidecar)> = (a.checkpoint.iter())
        .zip(&sidecars[a.retrain.is_some() as usize..])
        .filter_map(|(p, sc)| sc.as_ref().map(|sc| (p.as_path(), sc)))
        .collect();
    let names: Vec<String> = (a.forgotten.iter())
        .map(|p| p.display().to_string())
        .collect();
    let check = || amun::audit::check_lineage(&audited, &forget, &earlier, &names);
    if a.retrain.is_some() || !earlier.is_empty() {
        check()?;
    } else if let Err(e) = check() {
        // Without a retrain no number is compared with one, but the retain
        // set still holds what the lineage forgot before (hostile9 AU4b).
        eprintln!(
            "warning: {e} — without them, retain % and RMIA AUC R/T count the samples it forgot \
             before as retain samples"
        );
    }
    // What the lineage forgot before is forgotten too: the retrain excludes
    // it, and the forget set's numbers are of all of it.
    let forget = match earlier.is_empty() {
        true => forget,
        false => amun::unlearn::forget_union(
            &[&[&forget][..], &earlier.iter().collect::<Vec<_>>()].concat(),
        ),
    };
    if let Some(r) = &a.retrain {
        match &sidecars[0] {
            Some(sc) => check_retrain(sc, &forget, r)?,
            None => bail!(
                "--retrain {}: a PyTorch file without an amun sidecar records no forget set it \
                 was trained without; the Avg. Gap needs a model retrained without exactly {}: \
                 train one with `amun train --exclude {}`",
                r.display(),
                a.forget.display(),
                a.forget.display()
            ),
        }
    }
    let recorded: Vec<(&std::path::Path, &amun::model::Sidecar)> = paths
        .iter()
        .zip(&sidecars)
        .filter_map(|(p, sc)| sc.as_ref().map(|sc| (p.as_path(), sc)))
        .collect();
    if let (Some(r), Some((_, sc))) = (&a.retrain, recorded.first()) {
        amun::audit::check_retrain_model(sc, r, &recorded[1..])?;
    }
    // After the retrain's own checks, which name an original given as the
    // retrain more precisely.
    refuse_repeated(&paths, a.retrain.is_some())?;
    let (holdout, note) = audit_holdout(&recorded, data.test.len(), a.holdout_test)?;
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    let refs = load_references(&a.refs, &data)?;
    for n in &refs.notes {
        eprintln!("{n}");
    }
    let seed = a
        .seed
        .unwrap_or_else(|| amun::audit::audit_seed(forget.seed));
    if let Some(w) = amun::audit::uncovered_classes_warning(&data, &forget.indices, holdout) {
        eprintln!("warning: {w}");
    }
    let data = data.to_device(dev);
    let on = Audited {
        data: &data,
        forget: &forget.indices,
        refs: &refs,
        params: &params,
        seed,
        holdout,
    };
    let (rows, unlike) = audit_each(&a, &paths, &first, &on, dev)?;
    let retrain = a.retrain.as_ref().map(|_| rows[0].1.scores);
    for ((p, r), u) in rows.iter().zip(&unlike) {
        for w in r.tie_warning(&params, &TieRemedy::FLAGS).iter().chain(u) {
            eprintln!("warning: {p}: {w}");
        }
    }
    if a.json {
        return print_rows_json(&a, &params, holdout, &rows, &unlike, retrain);
    }
    print_rows(&rows, retrain)
}

/// What every model is audited on, and how.
struct Audited<'a> {
    data: &'a amun::data::Dataset,
    forget: &'a [i64],
    refs: &'a amun::audit::References,
    params: &'a RmiaParams,
    seed: u64,
    holdout: usize,
}

type Rows = Vec<(String, ModelAudit)>;

/// Opens and audits each model in turn (one in memory at a time); with
/// each row, the warning for references trained unlike it.
fn audit_each(
    a: &AuditArgs,
    paths: &[PathBuf],
    first: &amun::model::Sidecar,
    on: &Audited<'_>,
    dev: tch::Device,
) -> Result<(Rows, Vec<Option<String>>)> {
    let bars = crate::progress::Bars::new(a.json);
    let mut rows = Vec::new();
    let mut unlike = Vec::new();
    for p in paths {
        let (model, sc, _) = super::open_checkpoint(p, &a.import, &a.dir, dev)?;
        unlike.push(on.refs.unlike(&sc)?.map(|w| {
            format!(
                "{w}: RMIA assumes references trained as the audited model was, so its AUC \
                 and TPR may be off; `amun rmia train-refs --like {}` trains matching ones",
                p.display()
            )
        }));
        check_same_data(p, &sc, first)?;
        let row = audit(
            &model, on.data, on.forget, on.refs, on.params, on.seed, on.holdout, &bars,
        )?;
        rows.push((p.display().to_string(), row));
    }
    Ok((rows, unlike))
}

/// Every input file before the first model is opened (hostile12 N9/N11):
/// the forget sets exist, each model's file is weights. Returns the models'
/// paths, the retrain's first.
fn check_files(a: &AuditArgs) -> Result<Vec<PathBuf>> {
    amun::outputs::require_file(
        "--forget",
        "the forget set: amun's JSON or a list of indices",
        &a.forget,
    )?;
    for p in &a.forgotten {
        amun::outputs::require_file("--forgotten", "an earlier deletion request", p)?;
    }
    let paths: Vec<PathBuf> = a.retrain.iter().chain(&a.checkpoint).cloned().collect();
    let all: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
    amun::model::check_openable(&all, &a.import.spec()?)?;
    Ok(paths)
}

/// A model given twice (hostile13 A1/A18) would be audited twice, its row
/// printed twice: refused, as a repeated --forgotten is. `paths` are the
/// models, the retrain's first when `retrain`.
fn refuse_repeated(paths: &[PathBuf], retrain: bool) -> Result<()> {
    let same = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    let flag = |i: usize| match retrain && i == 0 {
        true => "--retrain",
        false => "--checkpoint",
    };
    for (j, q) in paths.iter().enumerate() {
        if let Some(i) = (0..j).find(|&i| same(&paths[i]) == same(q)) {
            // The retrain's row is worth naming only when it is one of the two.
            let row = match flag(i) == "--retrain" {
                true => " (the --retrain model is audited as the first row)",
                false => "",
            };
            bail!(
                "{}: given twice (as {} and as {}), so it would be audited twice; give each \
                 model once{row}",
                q.display(),
                flag(i),
                flag(j)
            );
        }
    }
    Ok(())
}

/// Each model's sidecar (none for a PyTorch file, which is opened on the
/// first's data), every one on the same training data as `first`, before
/// any model is audited (hostile12 N10).
fn sidecars_on_data_of(
    paths: &[PathBuf],
    first: &amun::model::Sidecar,
) -> Result<Vec<Option<amun::model::Sidecar>>> {
    let mut sidecars = Vec::new();
    for p in paths {
        let sc = checkpoint::sidecar_path(p)
            .exists()
            .then(|| checkpoint::read_sidecar(p))
            .transpose()?;
        if let Some(sc) = &sc {
            check_same_data(p, sc, first)?;
        }
        sidecars.push(sc);
    }
    Ok(sidecars)
}

/// The rows as JSON (`--json`).
fn print_rows_json<H: serde::Serialize>(
    a: &AuditArgs,
    params: &RmiaParams,
    holdout: H,
    rows: &[(String, ModelAudit)],
    unlike: &[Option<String>],
    retrain: Option<Scores>,
) -> Result<()> {
    // Typed rather than `json!`, so that print_json sees (and names) an
    // undefined number before it becomes null.
    #[derive(serde::Serialize)]
    struct Row<'a> {
        checkpoint: &'a str,
        audit: &'a ModelAudit,
        avg_gap: Option<f64>,
        /// What makes a number of the row mean less than it seems.
        warnings: Vec<String>,
    }
    #[derive(serde::Serialize)]
    struct Out<'a, H> {
        rmia: &'a RmiaParams,
        forget: &'a std::path::Path,
        holdout_test: H,
        models: Vec<Row<'a>>,
    }
    let models = rows
        .iter()
        .zip(unlike)
        .map(|((p, r), u)| Row {
            checkpoint: p,
            audit: r,
            avg_gap: retrain.map(|rt| avg_gap(&r.scores, &rt)),
            warnings: r
                .tie_warning(params, &TieRemedy::FLAGS)
                .into_iter()
                .chain(u.clone())
                .collect(),
        })
        .collect();
    print_json(&Out {
        rmia: params,
        forget: &a.forget,
        holdout_test: holdout,
        models,
    })
}

/// The rows as a table, with each model's Avg. Gap to the retrain's.
fn print_rows(rows: &[(String, ModelAudit)], retrain: Option<Scores>) -> Result<()> {
    let mut t = Table::new([
        "model",
        "forget %",
        "retain %",
        "test %",
        "RMIA AUC F/T",
        "RMIA AUC R/T",
        "TPR@1%",
        "MIS %",
        "Avg. Gap",
    ]);
    for (p, r) in rows {
        t.row([
            p.clone(),
            pct(r.scores.unlearn),
            pct(r.scores.retain),
            pct(r.scores.test),
            pct(r.scores.mia),
            pct(r.rmia_auc_retain_test),
            pct(r.tpr_at_1pct_fpr),
            pct(r.mis),
            retrain.map_or("-".into(), |rt| pct(avg_gap(&r.scores, &rt))),
        ]);
    }
    super::emit(&t.render())
}

/// Refuses a model trained on other data than the first `--checkpoint`.
fn check_same_data(
    p: &std::path::Path,
    sc: &amun::model::Sidecar,
    first: &amun::model::Sidecar,
) -> Result<()> {
    if !sc.same_training_data(first) {
        bail!(
            "{}: trained on {}, the others on {}",
            p.display(),
            sc.data.label(),
            first.data.label()
        );
    }
    Ok(())
}
