use super::{DataDir, ImportArgs, device};
use amun::data::ForgetFile;
use amun::model::checkpoint::{ForgetSummary, Origin};
use amun::model::{Layout, ModelSource, check_export_out, checkpoint, export};
use amun::outputs::{Artifact, Outputs};
use anyhow::{Result, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
// The flags every command shares describe what they do to an amun
// checkpoint too; import takes none (it makes one).
#[command(mut_arg("dataset", |a| a.help(
    "The dataset it was trained on: cifar10, mnist or a folder (required)"
)))]
#[command(mut_arg("train_limit", |a| a.help(
    "The model was trained on the first N training images only"
)))]
pub struct ImportCmdArgs {
    /// The PyTorch file: torch.save(model.state_dict()) (.pt/.pth),
    /// .safetensors, or an exported program (.pt2, which brings its own
    /// architecture: no --arch)
    #[arg(long = "from", value_name = "FILE")]
    pub from: PathBuf,
    #[command(flatten)]
    pub import: ImportArgs,
    #[command(flatten)]
    pub dir: DataDir,
    /// Where to write the amun checkpoint (.safetensors + .json sidecar)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Keep a model that scores at chance on its own training images (an
    /// untrained model on purpose); refused otherwise
    #[arg(long)]
    pub force: bool,
    /// A deletion request the model already forgot (repeat for each; what
    /// `amun export` named of an unlearned or retrained model): recorded,
    /// so that unlearning the import keeps them out of its retain set
    #[arg(long, value_name = "FORGET")]
    pub forgotten: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The checkpoint to export
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Parameter names to write: authors (amun's) | torchvision | salun
    #[arg(long, default_value = "authors")]
    pub layout: String,
    /// model.pt (torch.save format) or model.safetensors; for a user's own
    /// (exported) model also model.pt2, its graph with these weights
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub dir: DataDir,
}

pub fn run_import(a: ImportCmdArgs) -> Result<()> {
    check_import_flags(&a)?;
    let mut io = Outputs::new();
    io.reads_file("--from", "the PyTorch checkpoint", &a.from);
    a.import.reads(&mut io);
    for p in &a.forgotten {
        io.reads_file("--forgotten", "an earlier deletion request", p);
    }
    io.writes("--out", &a.out, Artifact::Imported);
    let _locks = super::claim(&io, &[("--out", &["safetensors"])])?;
    let forgotten = (a.forgotten.iter())
        .map(|p| ForgetFile::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let opened = amun::model::open(
        &a.from,
        &a.import.spec()?,
        &a.dir.path(),
        device("cpu")?,
        &crate::progress::Stderr,
    )?;
    let (model, mut sc, data) = (opened.model, opened.sidecar, opened.data);
    if let Origin::Import { forgotten: f, .. } = &mut sc.origin {
        for (file, p) in forgotten.into_iter().zip(&a.forgotten) {
            f.push(ForgetSummary::of(&file.resolve(&data, p)?));
        }
    }
    // A sanity check, not an evaluation: a model at chance on images it was
    // trained on was imported wrongly (normalisation, names, architecture).
    let check = amun::model::chance_check(&model, &data);
    // The opening's own warning of it is said once, below.
    let chance = check
        .problem
        .as_ref()
        .map(|why| format!("warning: {}: {why}", a.from.display()));
    for n in opened.notes.iter().filter(|n| Some(*n) != chance.as_ref()) {
        eprintln!("{n}");
    }
    if let Some(why) = &check.problem {
        if !a.force {
            bail!("{}: {why}", a.from.display());
        }
        eprintln!("warning: {}: {why} (kept: --force)", a.from.display());
    }
    checkpoint::save(&model, &a.out, &sc)?;
    super::outln!(
        "{}: {} for {} ({} classes), accuracy on the first {} training images {}%, first {} test images {}%",
        a.out.display(),
        match &sc.model.program {
            Some(_) => format!("{} (exported program)", a.from.display()),
            None => sc.model.arch.to_string(),
        },
        data.spec.label(),
        data.num_classes(),
        check.train_n,
        super::pct(check.train_acc),
        check.test_n,
        super::pct(check.test_acc)
    );
    Ok(())
}

/// What `import` needs, checked before anything is read: an amun
/// checkpoint is read by every command as it is (nothing to import); a
/// PyTorch file needs its data, and its architecture unless it is an
/// exported program (which brings its own).
fn check_import_flags(a: &ImportCmdArgs) -> Result<()> {
    let sidecar = checkpoint::sidecar_path(&a.from);
    let source = ModelSource::classify(&a.from);
    if source == ModelSource::Amun {
        match checkpoint::read_sidecar(&a.from) {
            Ok(_) => bail!(
                "--from {}: already an amun checkpoint (its sidecar {} is beside it): nothing \
                 to import; every command reads it as it is (--dataset and --train-limit there \
                 use it on other data)",
                a.from.display(),
                sidecar.display()
            ),
            Err(e) => bail!(
                "--from {}: has an amun sidecar beside it, which is refused ({e}); to import \
                 its weights as a model of unknown origin, move {} aside and run import again",
                a.from.display(),
                sidecar.display()
            ),
        }
    }
    let program = source == ModelSource::Program;
    match (program, &a.import.arch, &a.import.dataset) {
        (_, _, None) => bail!(
            "--from {}: amun import needs --dataset (the data the model was trained on){}",
            a.from.display(),
            if program || a.import.arch.is_some() {
                ""
            } else {
                " and --arch (its architecture)"
            }
        ),
        (false, None, _) => bail!(
            "--from {}: amun import needs --arch (the model's architecture: small-cnn, resnet18, \
             resnet18-div2 or vgg19); only an exported program (.pt2) brings its own",
            a.from.display()
        ),
        _ => Ok(()),
    }
}

pub fn run_export(a: ExportArgs) -> Result<()> {
    let layout: Layout = a.layout.parse()?;
    check_export_out(&a.out)?;
    let mut io = Outputs::new();
    io.reads_checkpoint("--checkpoint", &a.checkpoint)
        .writes("--out", &a.out, Artifact::Export);
    let _locks = super::claim(&io, &[("--out", &["pt", "pth", "safetensors", "pt2"])])?;
    let sc = checkpoint::read_sidecar(&a.checkpoint)?;
    let (model, _) = checkpoint::load(&a.checkpoint, device("cpu")?)?;
    let forgotten = sc.forgotten();
    if layout != Layout::Authors
        && !matches!(
            sc.model.arch,
            amun::model::Arch::Resnet18 | amun::model::Arch::Resnet18Div2
        )
    {
        bail!(
            "--layout {}: only ResNet-18 has torchvision/salun names; use authors",
            a.layout
        );
    }
    // An earlier export a model was trained from is replaced only by the
    // same bytes (the export is deterministic).
    amun::outputs::write_recorded("--out", &a.out, |p| export(&model, layout, p))?;
    match &sc.model.program {
        Some(p) if a.out.extension().is_some_and(|e| e == "pt2") => super::outln!(
            "{}: the graph of {} with these weights (torch.export.load runs it)",
            a.out.display(),
            p.file.display()
        ),
        Some(_) => super::outln!(
            "{}: the weights under the model's own state_dict() names",
            a.out.display()
        ),
        None => super::outln!(
            "{}: {} in the {} layout",
            a.out.display(),
            sc.model.arch,
            layout.name()
        ),
    }
    if !forgotten.is_empty() {
        let said: Vec<String> = forgotten.iter().map(amun::unlearn::short_summary).collect();
        eprintln!(
            "note: {}'s lineage forgot {} deletion request(s): {}; {} does not carry this \
             record: import it with --forgotten FILE for each, or unlearning the import trains \
             on those samples again",
            a.checkpoint.display(),
            forgotten.len(),
            said.join(", "),
            a.out.display()
        );
    }
    if sc.model.normalize.is_some() && layout != Layout::Salun {
        super::outln!(
            "note: the model normalises its inputs inside amun; apply the same mean/std before it in PyTorch"
        );
    }
    Ok(())
}
