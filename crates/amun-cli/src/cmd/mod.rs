//! Argument definitions and dispatch. Each subcommand lives in its own file
//! and does three things: turn flags into library values, call the library,
//! print the result (a table, or JSON with `--json`).

mod adv;
mod audit;
mod bench;
mod data;
mod eval;
mod experiment;
mod import;
mod mask;
mod methods;
mod rmia;
mod split;
mod train;
mod unlearn;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Machine unlearning for image classifiers: AMUN, its baselines, and an
/// audit against an exactly retrained model.
#[derive(Parser, Debug)]
#[command(name = "amun", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch registry datasets into the cache and inspect datasets
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Choose a forget set (the samples a deletion request removes)
    Split(split::SplitArgs),
    /// Train a model from scratch (with --exclude: retrain without a forget set)
    Train(train::TrainArgs),
    /// Accuracy of a checkpoint on train/test (and forget/retain), per class
    Eval(eval::EvalArgs),
    /// Compute the adversarial set of a forget set (AMUN's D_A)
    Adv(adv::AdvArgs),
    /// Compute SalUn's weight-saliency mask of a forget set
    Mask(mask::MaskArgs),
    /// Unlearn a forget set from a checkpoint with one of the methods
    Unlearn(Box<unlearn::UnlearnArgs>),
    /// List the unlearning methods with their defaults
    Methods(methods::MethodsArgs),
    /// Membership inference: reference models for RMIA
    #[command(subcommand)]
    Rmia(rmia::RmiaCmd),
    /// Accuracies, RMIA, MIS and Avg. Gap of models for a forget set
    Audit(audit::AuditArgs),
    /// Run a whole experiment (original, retrain, references, every method,
    /// audit, report) from a TOML file; resumable
    Experiment(experiment::ExperimentArgs),
    /// The CPU demo: fetch CIFAR-10, run experiments/demo-cpu.toml (defaults,
    /// tuned and calibrated rows; --quick: defaults only)
    Demo(experiment::DemoArgs),
    /// Import a PyTorch checkpoint (.pt/.safetensors) as an amun checkpoint
    Import(import::ImportCmdArgs),
    /// Export a checkpoint for PyTorch (.pt or .safetensors, a chosen layout)
    Export(import::ExportArgs),
    /// Images/s of a training step or a PGD step, as a table with the hardware
    Bench(bench::BenchArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Data(c) => data::run(c),
        Command::Split(a) => split::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Adv(a) => adv::run(a),
        Command::Mask(a) => mask::run(a),
        Command::Unlearn(a) => unlearn::run(*a),
        Command::Methods(a) => methods::run(a),
        Command::Rmia(c) => rmia::run(c),
        Command::Audit(a) => audit::run(a),
        Command::Experiment(a) => experiment::run(a),
        Command::Demo(a) => experiment::demo(a),
        Command::Import(a) => import::run_import(a),
        Command::Export(a) => import::run_export(a),
        Command::Bench(a) => bench::run(a),
    }
}

/// Where registry datasets are cached.
#[derive(Args, Debug, Clone)]
pub struct DataDir {
    /// Folder of fetched datasets [default: <user cache>/amun/data]
    #[arg(long, env = "AMUN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDir {
    pub fn path(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(amun::data::default_data_dir)
    }
}

/// Which data to use.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// cifar10, mnist (5,000 images), or a folder: CIFAR-10 binary batches,
    /// IDX files (MNIST family), or <class>/<image>.png|jpg
    #[arg(long, value_name = "NAME|DIR")]
    pub dataset: String,
    /// Use only the first N training images
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,
    /// Use only the first N test images
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,
    #[command(flatten)]
    pub dir: DataDir,
}

impl DataArgs {
    pub fn spec(&self) -> amun::data::DataSpec {
        amun::data::DataSpec::new(dataset_name(&self.dataset))
            .train_limit(self.train_limit)
            .test_limit(self.test_limit)
    }
}

/// A dataset name as recorded in sidecars and forget sets: registry names
/// as they are, folders as absolute paths (so the record resolves from any
/// working directory).
pub fn dataset_name(s: &str) -> String {
    if amun::data::Registry::from_name(s).is_some() {
        return s.to_string();
    }
    let p = std::path::Path::new(s);
    if p.exists() {
        std::path::absolute(p)
            .map(|a| a.display().to_string())
            .unwrap_or_else(|_| s.to_string())
    } else {
        s.to_string()
    }
}

/// Loads a dataset, fetching a registry dataset first if it is missing.
pub fn load_data(spec: &amun::data::DataSpec, dir: &DataDir) -> Result<amun::data::Dataset> {
    let data_dir = dir.path();
    if let Some(reg) = amun::data::Registry::from_name(&spec.dataset)
        && reg.verified_dir(&data_dir).is_err()
    {
        eprintln!(
            "fetching {} from {} into {}",
            reg.name(),
            reg.package(),
            data_dir.display()
        );
        amun::data::fetch(reg, &data_dir)?;
    }
    Ok(spec.load(&data_dir)?)
}

/// How to read a checkpoint that has no amun sidecar (a PyTorch file).
#[derive(Args, Debug, Clone, Default)]
pub struct ImportArgs {
    /// For a PyTorch checkpoint (.pt/.pth/.safetensors without an amun
    /// sidecar): its architecture, small-cnn | resnet18 | resnet18-div2 | vgg19
    #[arg(long)]
    pub arch: Option<String>,
    /// Its parameter names: auto | authors | torchvision | salun
    #[arg(long, default_value = "auto")]
    pub layout: String,
    /// Its input normalisation, applied inside the model: M,S (every
    /// channel) or M1,M2,M3:S1,S2,S3
    #[arg(long, value_name = "MEAN:STD")]
    pub normalize: Option<String>,
    /// The dataset it was trained on (cifar10, mnist or a folder): a
    /// PyTorch checkpoint needs it; for an amun checkpoint it replaces the
    /// sidecar's
    #[arg(long, value_name = "NAME|DIR")]
    pub dataset: Option<String>,
    /// The model was trained on the first N training images only (replaces
    /// the sidecar's slice for an amun checkpoint)
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,
    /// Use only the first N test images
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,
}

impl ImportArgs {
    /// The data spec of `--dataset` with the slice flags, over `base` (the
    /// sidecar's) when given.
    fn data_spec(&self, base: Option<&amun::data::DataSpec>) -> Option<amun::data::DataSpec> {
        let mut spec = match (&self.dataset, base) {
            (Some(d), _) => amun::data::DataSpec::new(dataset_name(d)),
            (None, Some(b)) => b.clone(),
            (None, None) => return None,
        };
        if self.train_limit.is_some() {
            spec.train_limit = self.train_limit;
        }
        if self.test_limit.is_some() {
            spec.test_limit = self.test_limit;
        }
        Some(spec)
    }
}

impl ImportArgs {
    fn layout(&self) -> Result<Option<amun::model::Layout>> {
        Ok(match self.layout.as_str() {
            "auto" => None,
            s => Some(s.parse()?),
        })
    }

    fn normalize(&self, channels: usize) -> Result<Option<amun::model::Normalize>> {
        let Some(s) = &self.normalize else {
            return Ok(None);
        };
        let bad = || anyhow::anyhow!("--normalize '{s}': expected MEAN,STD or M1,M2,M3:S1,S2,S3");
        let nums = |t: &str| {
            t.split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<Vec<f64>, _>>()
        };
        let (mean, std) = match s.split_once(':') {
            Some((m, d)) => (nums(m).map_err(|_| bad())?, nums(d).map_err(|_| bad())?),
            None => match nums(s).map_err(|_| bad())?.as_slice() {
                [m, d] => (vec![*m; channels], vec![*d; channels]),
                _ => return Err(bad()),
            },
        };
        Ok(Some(amun::model::Normalize { mean, std }))
    }
}

/// Opens a checkpoint: an amun one (weights + sidecar), or a PyTorch file
/// imported on the fly with `imp`. Returns the model on `dev`, its sidecar
/// and its data (on the CPU).
pub fn open_checkpoint(
    path: &std::path::Path,
    imp: &ImportArgs,
    dir: &DataDir,
    dev: tch::Device,
) -> Result<(
    amun::model::Classifier,
    amun::model::Sidecar,
    amun::data::Dataset,
)> {
    use amun::model::checkpoint;
    if checkpoint::sidecar_path(path).exists()
        && path.extension().is_some_and(|e| e == "safetensors")
    {
        let sc = checkpoint::read_sidecar(path)?;
        if let Some((done, total)) = sc.incomplete() {
            eprintln!(
                "warning: {} is incomplete: {done} of {total} epochs were trained (a killed or \
                 failed run), so it is not the model its recipe describes",
                path.display()
            );
        }
        let spec = imp.data_spec(Some(&sc.data)).expect("a base spec");
        let data = load_data(&spec, dir)?;
        sc.model
            .check_data(data.image_shape(), data.num_classes(), path)?;
        let (model, _) = checkpoint::load(path, dev)?;
        return Ok((model, sc, data));
    }
    if !path.exists() {
        anyhow::bail!("{}: no such file", path.display());
    }
    let (Some(arch), Some(dataset)) = (&imp.arch, &imp.dataset) else {
        anyhow::bail!(
            "{}: no amun sidecar beside it; to use a PyTorch checkpoint give --arch and --dataset (or run `amun import`)",
            path.display()
        );
    };
    let arch: amun::model::Arch = arch.parse()?;
    let _ = dataset;
    let data = load_data(&imp.data_spec(None).expect("--dataset given"), dir)?;
    let norm = imp.normalize(data.image_shape()[0] as usize)?;
    let (model, sc, info) = amun::model::import(
        path,
        arch,
        imp.layout()?,
        &data.spec,
        data.image_shape(),
        &data.classes,
        norm,
        dev,
    )?;
    eprintln!(
        "{}: imported as {} ({} layout{})",
        path.display(),
        arch,
        info.layout.name(),
        if info.detected { ", detected" } else { "" }
    );
    for n in &info.notes {
        eprintln!("  {n}");
    }
    if let Some(why) = chance_check(&model, &data).problem {
        eprintln!("warning: {}: {why}", path.display());
    }
    Ok((model, sc, data))
}

/// Checks an output file before any work and claims it (a lock beside it)
/// until the command ends, so a second process cannot write it at once.
pub fn claim_output(path: &std::path::Path, exts: &[&str]) -> Result<amun::fsutil::OutputLock> {
    amun::fsutil::check_output(path, exts).with_context(|| "--out".to_string())?;
    Ok(amun::fsutil::OutputLock::acquire(path)?)
}

/// Accuracy of a freshly imported model on the first (up to) 1,000
/// training and test images, and what is wrong if it is at chance.
pub struct ChanceCheck {
    pub train_n: usize,
    pub train_acc: f64,
    pub test_n: usize,
    pub test_acc: f64,
    pub problem: Option<String>,
}

pub fn chance_check(model: &amun::model::Classifier, data: &amun::data::Dataset) -> ChanceCheck {
    let train = data.train.prefix(1000);
    let test = data.test.prefix(1000);
    let train_acc = amun::eval::accuracy(model, &train).percent();
    let test_acc = amun::eval::accuracy(model, &test).percent();
    let k = data.num_classes().max(2) as f64;
    let chance = 100.0 / k;
    // Within a few points of chance (and far from what any trained model
    // reaches on its own training images).
    let problem = (train.len() >= 50 && train_acc < chance + 0.5 * (100.0 - chance) * 0.2).then(|| {
        let norm = if model.spec().normalize.is_none() {
            if data.image_shape()[0] == 3 {
                "the input normalisation it was trained with is missing (--normalize \
                 M1,M2,M3:S1,S2,S3; for CIFAR-10 usually 0.4914,0.4822,0.4465:0.2470,0.2435,0.2616), "
                    .to_string()
            } else {
                "the input normalisation it was trained with is missing (--normalize MEAN,STD; for \
                 MNIST usually 0.1307,0.3081), "
                    .to_string()
            }
        } else {
            "the --normalize given is not the one it was trained with, ".to_string()
        };
        format!(
            "it scores {train_acc:.1}% on its own first {} training images (chance: {chance:.1}%); \
             it was imported wrongly: {norm}the parameter names were mapped with the wrong layout \
             (--layout authors|torchvision|salun), the architecture is another (--arch), or the \
             dataset or slice is not the one it was trained on (--dataset, --train-limit)",
            train.len()
        )
    });
    ChanceCheck {
        train_n: train.len(),
        train_acc,
        test_n: test.len(),
        test_acc,
        problem,
    }
}

/// Parses `--device`.
pub fn device(s: &str) -> Result<tch::Device> {
    Ok(amun::device::parse_device(s)?)
}

/// Writes to stdout, returning (rather than panicking on) a closed pipe,
/// which `main` treats as success.
pub fn emit(s: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `println!` through [`emit`].
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::cmd::emit(&format!("{}\n", format_args!($($t)*)))?
    };
}
pub(crate) use outln;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(value).context("serialising JSON")?;
    emit(&format!("{s}\n"))
}

/// Formats a percentage, `-` for an empty set.
pub fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}
