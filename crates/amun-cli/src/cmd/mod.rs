//! Argument definitions and dispatch. Each subcommand lives in its own file
//! and does three things: turn flags into library values, call the library,
//! print the result (a table, or JSON with `--json`).

mod adv;
mod audit;
mod bench;
mod data;
mod eval;
mod experiment;
mod flags;
mod import;
mod json;
mod mask;
mod methods;
mod registry;
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
    Bench(Box<bench::BenchArgs>),
    /// Deletion requests as a workflow: a registry of requests and model
    /// versions, with certificates, verification and the exact retrain
    #[command(subcommand)]
    Registry(registry::RegistryCmd),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Data(c) => data::run(c),
        Command::Split(a) => split::run(a),
        Command::Train(a) => {
            let given = a.recipe.settings_given();
            train::run(a).map_err(|e| flags::in_flags(e, &given))
        }
        Command::Eval(a) => eval::run(a),
        Command::Adv(a) => {
            let given = a.attack.settings_given();
            adv::run(a).map_err(|e| flags::in_flags(e, &given))
        }
        Command::Mask(a) => mask::run(a),
        Command::Unlearn(a) => {
            let given = a.given();
            unlearn::run(*a).map_err(|e| flags::in_flags(e, &given))
        }
        Command::Methods(a) => methods::run(a),
        Command::Rmia(c) => rmia::run(c),
        Command::Audit(a) => audit::run(a),
        Command::Experiment(a) => experiment::run(a),
        Command::Demo(a) => experiment::demo(a),
        Command::Import(a) => import::run_import(a),
        Command::Export(a) => import::run_export(a),
        Command::Bench(a) => bench::run(*a),
        Command::Registry(c) => registry::run(c),
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
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub train_limit: Option<usize>,
    /// Use only the first N test images
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
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

/// A dataset name as recorded in sidecars and forget sets (a missing folder
/// stays as typed, so the error names what the user wrote).
pub fn dataset_name(s: &str) -> String {
    if std::path::Path::new(s).exists() {
        amun::data::DataSpec::resolve(s, std::path::Path::new("."))
    } else {
        s.to_string()
    }
}

/// Loads a dataset, fetching a registry dataset first if it is missing.
pub fn load_data(spec: &amun::data::DataSpec, dir: &DataDir) -> Result<amun::data::Dataset> {
    Ok(amun::model::load_data(
        spec,
        &dir.path(),
        &crate::progress::Stderr,
    )?)
}

/// How to read a checkpoint that has no amun sidecar (a PyTorch file).
#[derive(Args, Debug, Clone, Default)]
pub struct ImportArgs {
    /// For a PyTorch checkpoint (.pt/.pth/.safetensors without an amun
    /// sidecar): its architecture, small-cnn | resnet18 | resnet18-div2 | vgg19
    /// (an exported program, .pt2, brings its own)
    #[arg(long)]
    pub arch: Option<String>,
    /// Its parameter names: auto | authors | torchvision | salun
    #[arg(long, default_value = "auto")]
    pub layout: String,
    /// Its input normalisation, applied inside the model: M,S (every
    /// channel) or M1,M2,M3:S1,S2,S3
    #[arg(long, value_name = "MEAN:STD", allow_negative_numbers = true)]
    pub normalize: Option<String>,
    /// The dataset it was trained on (cifar10, mnist or a folder): a
    /// PyTorch checkpoint needs it; for an amun checkpoint it replaces the
    /// sidecar's
    #[arg(long, value_name = "NAME|DIR")]
    pub dataset: Option<String>,
    /// The model was trained on the first N training images only (replaces
    /// the sidecar's slice for an amun checkpoint)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub train_limit: Option<usize>,
    /// Use only the first N test images
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub test_limit: Option<usize>,
    /// For an exported program (.pt2): the weights of the untrained model
    /// (a .pt2 exported before training, or its state_dict as
    /// .pt/.safetensors) that retrains and reference models start from
    /// [default: PyTorch's default init of each layer]
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
}

impl ImportArgs {
    /// The files these flags read: `--init`, a `--dataset` folder.
    pub fn reads(&self, io: &mut amun::outputs::Outputs) {
        if let Some(i) = &self.init {
            io.reads_file("--init", "the initial weights", i);
        }
        if let Some(d) = &self.dataset {
            io.reads_dataset("--dataset", d);
        }
    }

    /// The library's value for these flags.
    pub fn spec(&self) -> Result<amun::model::OpenSpec> {
        Ok(amun::model::OpenSpec {
            arch: self.arch.as_deref().map(str::parse).transpose()?,
            layout: match self.layout.as_str() {
                "auto" => None,
                s => Some(s.parse()?),
            },
            normalize: self.normalize.clone(),
            dataset: self.dataset.clone(),
            train_limit: self.train_limit,
            test_limit: self.test_limit,
            init: self.init.clone(),
        })
    }
}

/// Opens a checkpoint: an amun one (weights + sidecar), or a PyTorch file
/// imported on the fly with `imp`. Returns the model on `dev`, its sidecar
/// and its data (on the CPU); prints what the import noticed.
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
    let o = amun::model::open(
        path,
        &imp.spec()?,
        &dir.path(),
        dev,
        &crate::progress::Stderr,
    )?;
    for n in &o.notes {
        eprintln!("{n}");
    }
    Ok((o.model, o.sidecar, o.data))
}

/// The forget set `f` (read from `path`) for `data`, with the warning
/// [`amun::data::ForgetFile::resolve_warned`] gives printed: a set that
/// nothing ties to its data's content (hostile12 N21).
pub fn resolve_forget(
    f: amun::data::ForgetFile,
    data: &amun::data::Dataset,
    path: &std::path::Path,
) -> amun::Result<amun::data::ForgetSet> {
    let (set, warning) = f.resolve_warned(data, path)?;
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    Ok(set)
}

/// Checks every file a command writes against every file it reads and
/// what is on disk, before any work, and claims the outputs (a lock beside
/// each) until the command ends, so a second process cannot write them at
/// once. `exts`: the file endings each output flag takes.
pub fn claim(
    io: &amun::outputs::Outputs,
    exts: &[(&str, &[&str])],
) -> Result<Vec<amun::fsutil::OutputLock>> {
    Ok(io.claim(exts)?)
}

/// Says on stderr which existing checkpoints an output replaced
/// ([`amun::outputs::Outputs::replacing`]), so none goes without a word.
pub fn say_replaced(replaced: &[String]) {
    for r in replaced {
        eprintln!("note: {r}");
    }
}

/// Sets `dotted` (`finetune.lr`) in a settings table, making the tables on
/// the way (`--set KEY=VALUE`).
pub fn put(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    dotted: &str,
    v: serde_json::Value,
) -> Result<()> {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().unwrap_or("");
    let mut cur = obj;
    for p in parts {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
            .as_object_mut()
            .with_context(|| format!("--set {dotted}: '{p}' is a value, not a table"))?;
    }
    cur.insert(last.to_string(), v);
    Ok(())
}

/// A method's settings table: `table` (what the other flags gave) with
/// every `--set KEY=VALUE` merged in. A key that a flag gives too is
/// refused rather than one silently winning: `finetune.*`/`recipe.*` keys
/// of the training flags set in `train`, and keys at or under a value of
/// `table` (`attack.steps` after `--pgd-steps`, `attack` after any attack
/// flag). Every command that takes `--set` builds its table here, so a
/// clash is refused by all of them.
pub fn settings_table(
    mut table: serde_json::Map<String, serde_json::Value>,
    sets: &[String],
    train: &amun::train::TrainOverrides,
) -> Result<serde_json::Value> {
    let by_flag = train.set_fields();
    let flags = table.clone();
    for (k, v) in set_values(sets)? {
        let key = k.replace('-', "_");
        let (top, rest) = key.split_once('.').unwrap_or((&key, ""));
        let clash = match top {
            "finetune" | "recipe" => by_flag.contains(&rest),
            _ => flag_gives(&flags, &key),
        };
        if clash {
            anyhow::bail!(
                "--set {k}: a flag sets {key} too, and one of them would silently win; give it \
                 once"
            );
        }
        put(&mut table, k, v)?;
    }
    Ok(serde_json::Value::Object(table))
}

/// Whether the flags' table `flags` holds a value at dotted `key`, or a
/// plain value above it that `key` would reach into.
fn flag_gives(flags: &serde_json::Map<String, serde_json::Value>, key: &str) -> bool {
    let mut cur = flags;
    for part in key.split('.') {
        match cur.get(part) {
            None => return false,
            Some(serde_json::Value::Object(m)) => cur = m,
            Some(_) => return true,
        }
    }
    true
}

/// Every `--set KEY=VALUE`, parsed; a key given twice is refused (one of
/// the values would silently win).
pub fn set_values(sets: &[String]) -> Result<Vec<(&str, serde_json::Value)>> {
    let mut seen = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for kv in sets {
        let (k, v) = set_value(kv)?;
        if let Some(first) = seen.insert(k.replace('-', "_"), kv) {
            anyhow::bail!(
                "--set {k} is given twice ('{first}' and '{kv}'), and only one would count; give \
                 it once"
            );
        }
        out.push((k, v));
    }
    Ok(out)
}

/// `--set KEY=VALUE`: the value as JSON if it parses, else as a string.
pub fn set_value(kv: &str) -> Result<(&str, serde_json::Value)> {
    let Some((k, v)) = kv.split_once('=') else {
        anyhow::bail!("--set '{kv}': expected KEY=VALUE");
    };
    let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
    Ok((k.trim(), v))
}

/// Parses and resolves `--device`.
pub fn device(s: &str) -> Result<tch::Device> {
    Ok(s.parse::<amun::device::DeviceSpec>()?.resolve()?)
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

/// Prints `value` as pretty JSON on stdout. A number that is not defined
/// (NaN, infinite) is written as `null` and named: in the object's
/// `undefined` list and on stderr (see [`json`]).
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Noted<'a, T> {
        #[serde(flatten)]
        value: &'a T,
        undefined: &'a [json::Undefined],
    }
    let undefined = json::undefined(value);
    for u in &undefined {
        eprintln!(
            "note: --json: {} is {} (not defined: an accuracy over no samples, an AUC without \
             both members and non-members…); JSON has no such number, so it is null there and \
             listed under \"undefined\"",
            u.at, u.value
        );
    }
    let s = if undefined.is_empty() {
        serde_json::to_string_pretty(value)
    } else {
        let noted = Noted {
            value,
            undefined: &undefined,
        };
        // A value that is not an object has nowhere to list them: stderr
        // named them.
        serde_json::to_string_pretty(&noted).or_else(|_| serde_json::to_string_pretty(value))
    }
    .context("serialising JSON")?;
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

#[cfg(test)]
mod tests {
    use super::settings_table;
    use amun::train::TrainOverrides;
    use serde_json::json;

    /// What `--pgd-steps 5 --adv-only --lr 0.01` give, with `sets` merged.
    fn table(sets: &[&str]) -> anyhow::Result<serde_json::Value> {
        let flags = json!({"attack": {"steps": 5}, "adv_only": true});
        let train = TrainOverrides {
            lr: Some(0.01),
            ..Default::default()
        };
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        settings_table(flags.as_object().unwrap().clone(), &sets, &train)
    }

    #[test]
    fn a_set_key_a_flag_gives_is_refused_and_its_siblings_are_merged() {
        for clash in [
            "attack.steps=3",
            "attack={\"eps0\":0.1}",
            "adv_only=false",
            "adv-only.x=1",
            "finetune.lr=0.1",
        ] {
            let e = table(&[clash]).unwrap_err().to_string();
            assert!(e.contains("silently win"), "{clash}: {e}");
        }
        let t = table(&["attack.eps0=0.1", "finetune.epochs=2", "salun_ratio=0.3"]).unwrap();
        assert_eq!(
            t,
            json!({
                "attack": {"steps": 5, "eps0": 0.1},
                "adv_only": true,
                "finetune": {"epochs": 2},
                "salun_ratio": 0.3,
            })
        );
    }
}
