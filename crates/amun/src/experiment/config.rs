//! The experiment file (TOML): what to train, what to forget, which
//! methods, how many seeds and reference models. Errors point at the line.
use crate::audit::RmiaParams;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::model::{Arch, Normalize};
use crate::train::{Recipe, TrainOverrides, TrainParams};
use crate::unlearn::{CalibrateOverrides, CalibrateSettings, MethodSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetSection {
    /// Fractions of the training set to forget, e.g. [0.1, 0.5]. Left out,
    /// it is an empty list, which the config's check names (with `files`:
    /// the one fraction they represent is still required).
    #[serde(default)]
    pub fractions: Vec<f64>,
    /// Forget sets from files instead of random draws, one per seed (in
    /// the order of `seeds`): any format `amun split --from` reads; paths
    /// relative to the config file. `fractions` then holds the one fraction
    /// they represent (checked within one point).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Run every method with the retain set (true), without it (false), or both.
    #[serde(default = "both")]
    pub with_retain: Vec<bool>,
    /// One more exact retrain per seed and fraction, from another
    /// initialisation (`retrain (another seed)` in the report): the Avg. Gap
    /// between two retrains is the floor every method's gap is read against.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noise_floor: bool,
}

fn both() -> Vec<bool> {
    vec![true, false]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmiaSection {
    /// Reference models (even: each sample is OUT for half of them).
    pub reference_models: usize,
    /// The attack (signal, offline/online, a, γ); defaults are the paper's.
    #[serde(default)]
    pub attack: RmiaParams,
}

/// What tuning selects by (the paper's Table 1 by Avg. Gap, its Table 10
/// by the MIS gap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TuneMetric {
    /// Avg. Gap to the retrained model (UA, RA, TA, RMIA AUC).
    #[default]
    Gap,
    /// |MIS − Retrain's MIS|.
    MisGap,
}

/// A grid point's rate: `lr`, ×`gamma` every `step` epochs.
pub fn grid_rate(lr: f64, step: usize, gamma: f64) -> TrainOverrides {
    TrainOverrides::rate(lr, Some(crate::train::Schedule::Step { step, gamma }))
}

fn paper_lrs() -> Vec<f64> {
    vec![0.1, 0.05, 0.01, 0.005, 1e-3, 1e-4, 1e-5]
}

fn paper_steps() -> Vec<usize> {
    vec![1, 5, 10]
}

fn tenth() -> f64 {
    0.1
}

fn tune_seeds() -> Vec<u64> {
    vec![1]
}

/// The paper's tuning stage: every grid point (lr × StepLR step) of every
/// tuned method runs on a separate forget set (its own seed, disjoint from
/// the evaluation forget sets) of the first evaluation seed's original
/// model, is audited against that forget set's exact retrain, and the point
/// with the smallest gap is what runs on the evaluation seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuneSection {
    /// Learning rates [default: the paper's 0.1 … 1e-5].
    #[serde(default = "paper_lrs")]
    pub lr: Vec<f64>,
    /// StepLR steps (epochs between ×gamma decays) [default: 1, 5, 10].
    #[serde(default = "paper_steps")]
    pub step: Vec<usize>,
    #[serde(default = "tenth")]
    pub gamma: f64,
    /// Seeds of the tuning forget sets [default: 1].
    #[serde(default = "tune_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub metric: TuneMetric,
    /// Methods to tune [default: every configured method].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
}

/// Retrain-free calibration (see `unlearn::calibrate`): each listed method
/// also runs calibrated against the last `holdout` test images, which every
/// audit of the experiment then leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CalibrateTable")]
pub struct CalibrateSection {
    /// Test images (the last N) kept for calibration, never audited.
    pub holdout: usize,
    /// Methods to calibrate [default: every configured method].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// The calibration's own settings (lrs, rule, max_utility_drop,
    /// patience, stall, retain_probe), as `--calibrate-*` gives them.
    #[serde(flatten)]
    pub overrides: CalibrateOverrides,
}

/// The calibration settings `[calibrate]` takes besides its own keys (the
/// fields of [`CalibrateOverrides`]): what an error about one names.
const CALIBRATE_KEYS: &[&str] = &[
    "lrs",
    "start",
    "walk",
    "max_epochs",
    "climb_after",
    "retain_budget",
    "rule",
    "level",
    "max_utility_drop",
    "guard_se",
    "patience",
    "stall",
    "stall_carry",
    "end_on_second_loss",
    "ties_by_membership",
    "over_when_nearer",
    "retain_probe",
    "max_cost",
];

/// `[calibrate]` as written: its own keys, the rest the calibration's
/// settings (checked as [`CalibrateOverrides`], so an unknown key is an
/// error; serde's `flatten` would let it pass).
#[derive(Deserialize)]
struct CalibrateTable {
    holdout: usize,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(flatten)]
    rest: toml::Table,
}

impl TryFrom<CalibrateTable> for CalibrateSection {
    type Error = String;
    fn try_from(t: CalibrateTable) -> std::result::Result<Self, String> {
        // The path to the key at fault, so that the error can name its line
        // (`Config::parse` finds it) rather than the section's header.
        let overrides: CalibrateOverrides =
            serde_path_to_error::deserialize(toml::Value::Table(t.rest)).map_err(|e| {
                let key = e.path().to_string();
                let msg = e.into_inner().message().trim_end().to_string();
                match key.as_str() {
                    "" | "." => format!("calibrate: {msg}"),
                    k => format!("calibrate.{k}: {msg}"),
                }
            })?;
        Ok(CalibrateSection {
            holdout: t.holdout,
            methods: t.methods,
            overrides,
        })
    }
}

impl CalibrateSection {
    /// The calibration settings (defaults for what the file leaves out),
    /// checked.
    pub fn settings(&self) -> Result<CalibrateSettings> {
        self.overrides.settings()
    }
}

/// The model an experiment trains: one of amun's architectures by name, or
/// a user's own exported with `torch.export` (a `.pt2` path, relative to the
/// config file, stored absolute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelName {
    Builtin(Arch),
    Exported(String),
}

impl ModelName {
    /// The architecture (`Arch::Exported` for a `.pt2`).
    pub fn arch(&self) -> Arch {
        match self {
            ModelName::Builtin(a) => *a,
            ModelName::Exported(_) => Arch::Exported,
        }
    }
}

impl TryFrom<String> for ModelName {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        if s.ends_with(".pt2") {
            return Ok(ModelName::Exported(s));
        }
        s.parse::<Arch>()
            .map(ModelName::Builtin)
            .map_err(|e| format!("{e}, or a .pt2 file (a model exported with torch.export)"))
    }
}

impl From<ModelName> for String {
    fn from(m: ModelName) -> String {
        m.to_string()
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelName::Builtin(a) => write!(f, "{a}"),
            ModelName::Exported(p) => f.write_str(p),
        }
    }
}

/// `[program]`: how a `.pt2` model is set up. Its graph and init file are
/// pinned by sha256 when the config is read, so a run folder never mixes
/// two versions of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSection {
    /// The weights every model starts from: an untrained copy (a `.pt2`
    /// exported before training, or its state dict as `.pt`/`.safetensors`)
    /// [default: PyTorch's default init of each layer, drawn from the seed].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// The input normalisation the model expects, applied inside it:
    /// `M,S` or `M1,M2,M3:S1,S2,S3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<String>,
    /// The graph and init as read (set when the config is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<crate::model::program::ProgramRef>,
}

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: String,
    pub data: DataSpec,
    pub model: ModelName,
    /// With a `.pt2` model: its init and normalisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramSection>,
    /// The original model's recipe; fields left out take the
    /// architecture's defaults.
    #[serde(default)]
    pub train: TrainOverrides,
    pub forget: ForgetSection,
    /// One original model, forget set and run of every method per seed.
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub device: crate::device::DeviceSpec,
    pub rmia: RmiaSection,
    /// Method name → settings (a table, possibly empty). Methods run in the
    /// registry's order; `retrain` always runs (it is the reference). A
    /// method's `tune = { lr = […], step = […] }` replaces the grid for it.
    pub methods: BTreeMap<String, toml::Table>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tune: Option<TuneSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrate: Option<CalibrateSection>,
    /// libtorch threads per step [default: libtorch's, the machine's cores].
    /// CPU results are bit-identical only for the same thread count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// The `[slurm]` table: where steps run, not what they compute, so not
    /// part of the config (read by `placement::read`; accepted here so the
    /// file parses, never recorded).
    #[serde(
        default,
        rename = "slurm",
        skip_serializing,
        deserialize_with = "skip_placement"
    )]
    placement: NotRecorded,
}

/// What `[slurm]` becomes in a config: nothing (see `Config::placement`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct NotRecorded;

/// Reads past the `[slurm]` table.
fn skip_placement<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<NotRecorded, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| NotRecorded)
}

/// A method's own tuning grid (`tune = { lr = […], step = […] }` in its table).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodTune {
    pub lr: Option<Vec<f64>>,
    pub step: Option<Vec<usize>>,
}

/// Where each key of an experiment file is, from the TOML parser's spans:
/// errors found after parsing name the line of the key they are about.
struct Lines<'a> {
    text: &'a str,
    doc: Option<toml::de::DeTable<'a>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            text,
            doc: toml::de::DeTable::parse(text).ok().map(|d| d.into_inner()),
        }
    }

    /// The 1-based line of the key at `path` (`["tune", "gamma"]`), or of
    /// the deepest table on the way that the file has.
    fn of(&self, path: &[&str]) -> Option<usize> {
        let mut table = self.doc.as_ref()?;
        let mut found = None;
        for key in path {
            // A method's errors name its keys with `_` where the file may
            // have `-` (both are accepted).
            let same = |k: &str| k.replace('-', "_") == key.replace('-', "_");
            let Some((k, v)) = table.iter().find(|(k, _)| same(k.get_ref())) else {
                break;
            };
            found = Some(k.span().start);
            match v.get_ref().as_table() {
                Some(t) => table = t,
                None => break,
            }
        }
        found.map(|at| self.text[..at.min(self.text.len())].matches('\n').count() + 1)
    }

    /// `msg` about the key at `path` of the file at `file`, with its line.
    fn error(&self, file: &Path, path: &[&str], msg: impl std::fmt::Display) -> Error {
        match self.of(path) {
            Some(l) => Error::format(file, format!("line {l}: {msg}")),
            None => Error::format(file, msg.to_string()),
        }
    }
}

/// The experiment file being checked: errors name its path and the line
/// of their key; relative paths in it are relative to its folder.
struct Source<'a> {
    lines: Lines<'a>,
    path: &'a Path,
    base: &'a Path,
}

impl Source<'_> {
    /// `msg` about the key at `key`, with its line.
    fn at(&self, key: &[&str], msg: impl std::fmt::Display) -> Error {
        self.lines.error(self.path, key, msg)
    }

    /// `file` (relative to the config's folder), absolute, or an error at
    /// `key` when it does not exist.
    fn existing(&self, file: &str, key: &[&str]) -> Result<std::path::PathBuf> {
        let p = self.base.join(file);
        if !p.exists() {
            return Err(self.at(
                key,
                format!("{}: {} does not exist", key.join("."), p.display()),
            ));
        }
        Ok(std::path::absolute(&p).unwrap_or(p))
    }
}

/// The key serde names in an "unknown field `KEY`, expected …" message.
fn unknown_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("unknown field `")?.split('`').next()
}

/// A method's table without the settings equal to the method's defaults:
/// each key (its own grid, `tune`, aside) whose removal leaves the built
/// method's settings as they are goes, and a table it leaves empty with it.
/// A table the method refuses is returned as it is (its check names it).
fn method_without_defaults(name: &str, table: &toml::Table) -> toml::Table {
    let settings = |t: &toml::Table| {
        let mut t = t.clone();
        t.remove("tune");
        let v = serde_json::to_value(&t).ok()?;
        crate::unlearn::build(name, &v).ok().map(|m| m.settings())
    };
    let Some(full) = settings(table) else {
        return table.clone();
    };
    let mut t = table.clone();
    for path in leaves(table, &[]) {
        if path[0] == "tune" {
            continue;
        }
        let mut c = t.clone();
        remove_leaf(&mut c, &path);
        if settings(&c).as_ref() == Some(&full) {
            t = c;
        }
    }
    t
}

/// The dotted paths of a table's values that are not tables.
fn leaves(t: &toml::Table, at: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (k, v) in t {
        let mut p = at.to_vec();
        p.push(k.clone());
        match v.as_table() {
            Some(sub) => out.extend(leaves(sub, &p)),
            None => out.push(p),
        }
    }
    out
}

/// `t` without the value at `path`, and without the tables on the way
/// that this leaves empty.
fn remove_leaf(t: &mut toml::Table, path: &[String]) {
    let Some((k, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        t.remove(k);
        return;
    }
    if let Some(sub) = t.get_mut(k).and_then(|v| v.as_table_mut()) {
        remove_leaf(sub, rest);
        if sub.is_empty() {
            t.remove(k);
        }
    }
}

/// Whether a list holds one value twice (a list setting that would run the
/// same cell twice).
fn has_repeats<T: PartialEq>(v: &[T]) -> bool {
    v.iter().enumerate().any(|(i, x)| v[..i].contains(x))
}

/// A grid's lists must be non-empty, positive and without repeats; an error
/// names the key at fault (`lr` or `step`).
fn check_grid(
    lr: Option<&[f64]>,
    step: Option<&[usize]>,
) -> std::result::Result<(), (&'static str, String)> {
    if let Some(lr) = lr {
        if lr.is_empty() || lr.iter().any(|x| !(*x > 0.0 && x.is_finite())) {
            return Err(("lr", "lr: give at least one positive learning rate".into()));
        }
        if has_repeats(lr) {
            return Err(("lr", "lr: a learning rate is listed twice".into()));
        }
    }
    if let Some(step) = step {
        if step.is_empty() || step.contains(&0) {
            return Err((
                "step",
                "step: give at least one step of 1 or more epochs".into(),
            ));
        }
        if has_repeats(step) {
            return Err(("step", "step: a step is listed twice".into()));
        }
    }
    Ok(())
}

impl Config {
    /// Parses and validates an experiment file.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| Self::toml_error(text, path, e))?;
        super::placement::from_experiment(text, path)?;
        let src = Source {
            lines: Lines::new(text),
            path,
            base: path
                .parent()
                .filter(|b| !b.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        };
        cfg.check_name(&src)?;
        cfg.resolve_data(&src)?;
        cfg.resolve_program(&src)?;
        cfg.check_seeds(&src)?;
        cfg.resolve_forget(&src)?;
        cfg.check_rmia(&src)?;
        for (name, table) in &cfg.methods {
            cfg.check_method(name, table, &src)?;
        }
        cfg.check_methods_run(&src)?;
        let channels = if cfg.data.dataset == "mnist" { 1 } else { 3 };
        cfg.recipe(channels).map_err(|e| {
            // The recipe names its field as its flag (`batch-size`).
            let field = match &e {
                Error::Invalid { what, .. } => what.replace('-', "_"),
                _ => String::new(),
            };
            src.at(&["train", &field], e)
        })?;
        if let Some(t) = &cfg.tune {
            cfg.check_tune(t)
                .map_err(|(k, m)| src.at(&["tune", k], m))?;
        }
        if let Some(c) = &cfg.calibrate {
            cfg.check_calibrate(c)
                .map_err(|(k, m)| src.at(&["calibrate", k], m))?;
        }
        if let Some(t) = cfg.threads
            && let Err(e) = crate::device::check_threads(t)
        {
            return Err(src.at(&["threads"], format!("threads: {e}")));
        }
        Ok(cfg.without_defaults())
    }

    /// `name` is the run folder's name under `runs/` when no `--out` is
    /// given: one plain path component (hostile11 K15: `../../evil` planned
    /// a folder outside `runs/`).
    fn check_name(&self, src: &Source<'_>) -> Result<()> {
        let n = &self.name;
        let why = if n.trim().is_empty() {
            "is empty"
        } else if n.contains(['/', '\\']) || n == "." || n == ".." {
            "is not a plain name (it holds '/', '\\' or is '..')"
        } else if n.chars().any(char::is_control) {
            "holds a control character"
        } else {
            return Ok(());
        };
        Err(src.at(
            &["name"],
            format!(
                "name: {n:?} {why}; it names the run folder (runs/<name> without --out): give \
                 a plain name such as \"cifar10-ft\""
            ),
        ))
    }

    /// The config with every setting that equals its default left out, as
    /// if the file had not named it (hostile11 SC6/K12: `momentum = 0.9` or
    /// `finetune.epochs = 10` was another config, with other step ids).
    /// A config that names no default is returned as it is, so its step
    /// ids and hashes stay those of the run folders made before. `[train]`
    /// `augment` is kept as written for a folder dataset whose channels its
    /// images' headers do not tell (its default depends on them).
    pub fn without_defaults(mut self) -> Config {
        self.train = self.train_without_defaults();
        let methods = std::mem::take(&mut self.methods);
        self.methods = methods
            .into_iter()
            .map(|(name, t)| {
                let t = method_without_defaults(&name, &t);
                (name, t)
            })
            .collect();
        self
    }

    /// This config (without its defaults) with `[train]` and each method's
    /// table as `other` writes them where they are the same up to defaults.
    pub fn written_as(self, other: &Config) -> Config {
        let theirs = other.clone().without_defaults();
        let mut cfg = self;
        if theirs.train == cfg.train && theirs.model == cfg.model && theirs.data == cfg.data {
            cfg.train = other.train.clone();
        }
        for (name, t) in cfg.methods.iter_mut() {
            if let (Some(a), Some(b)) = (theirs.methods.get(name), other.methods.get(name))
                && a == t
            {
                *t = b.clone();
            }
        }
        cfg
    }

    /// `[train]` without the fields equal to the architecture's recipe.
    fn train_without_defaults(&self) -> TrainOverrides {
        let channels = match self.data.dataset.as_str() {
            "mnist" => Some(1),
            "cifar10" => Some(3),
            // An image folder's channels from its images' headers, only
            // when `augment` is written (hostile12 N13: `augment = false`
            // on one-channel images was "another config").
            d if self.train.augment.is_some() => crate::data::folder::channels(Path::new(d)),
            _ => None,
        };
        let base = TrainParams::for_arch(self.model.arch()).augment(channels != Some(1));
        let recipe = |o: &TrainOverrides| o.apply(base.clone()).check().ok();
        let Some(full) = recipe(&self.train) else {
            return self.train.clone();
        };
        let clears: [fn(&mut TrainOverrides); 9] = [
            |o| o.epochs = None,
            |o| o.batch_size = None,
            |o| o.lr = None,
            |o| o.momentum = None,
            |o| o.weight_decay = None,
            |o| o.schedule = None,
            |o| o.bf16 = None,
            |o| o.channels_last = None,
            |o| o.augment = None,
        ];
        let n = if channels.is_some() { 9 } else { 8 };
        let mut t = self.train.clone();
        for clear in &clears[..n] {
            let mut c = t.clone();
            clear(&mut c);
            if recipe(&c).as_ref() == Some(&full) {
                t = c;
            }
        }
        t
    }

    /// `[data]`: limits of at least one image, and a dataset that is a
    /// registry's or an existing folder.
    fn resolve_data(&mut self, src: &Source<'_>) -> Result<()> {
        for (key, v) in [
            ("train_limit", self.data.train_limit),
            ("test_limit", self.data.test_limit),
        ] {
            if v == Some(0) {
                return Err(src.at(
                    &["data", key],
                    format!("data.{key}: expected at least 1 image, got 0"),
                ));
            }
        }
        // A dataset folder given relative to the config file, stored
        // absolute so the run folder's record resolves from anywhere.
        self.data.dataset = DataSpec::resolve(&self.data.dataset, src.base);
        let d = &self.data.dataset;
        if crate::data::Registry::from_name(d).is_none() && !Path::new(d).exists() {
            return Err(src.at(
                &["data", "dataset"],
                format!(
                    "data.dataset '{d}': neither a dataset amun fetches (cifar10, mnist) nor an \
                     existing folder"
                ),
            ));
        }
        Ok(())
    }

    /// An exported model's files, made absolute and pinned by their
    /// sha256 in `[program]`; `[program]` without one is refused.
    fn resolve_program(&mut self, src: &Source<'_>) -> Result<()> {
        match (&mut self.model, &mut self.program) {
            (ModelName::Exported(m), program) => {
                let file = src.existing(m, &["model"])?;
                *m = file.display().to_string();
                let sec = program.get_or_insert_with(ProgramSection::default);
                let init = match &sec.init {
                    Some(i) => {
                        let f = src.existing(i, &["program", "init"])?;
                        sec.init = Some(f.display().to_string());
                        crate::model::program::ProgramInit::Weights {
                            sha256: crate::data::sha256_file(&f)?,
                            file: f,
                        }
                    }
                    None => crate::model::program::ProgramInit::Pytorch,
                };
                if let Some(n) = &sec.normalize {
                    Normalize::parse(n, 3)
                        .or_else(|_| Normalize::parse(n, 1))
                        .map_err(|e| {
                            src.at(&["program", "normalize"], format!("program.normalize: {e}"))
                        })?;
                }
                sec.pinned = Some(crate::model::program::ProgramRef {
                    sha256: crate::data::sha256_file(&file)?,
                    file,
                    init,
                });
                Ok(())
            }
            (ModelName::Builtin(a), Some(_)) => Err(src.at(
                &["program"],
                format!("[program] goes with a .pt2 model; {a} is one of amun's architectures"),
            )),
            (ModelName::Builtin(_), None) => Ok(()),
        }
    }

    /// At least one seed, none twice.
    fn check_seeds(&self, src: &Source<'_>) -> Result<()> {
        if self.seeds.is_empty() {
            return Err(src.at(&["seeds"], "seeds: give at least one seed"));
        }
        let mut s = self.seeds.clone();
        s.sort_unstable();
        s.dedup();
        if s.len() != self.seeds.len() {
            return Err(src.at(&["seeds"], "seeds: a seed is listed twice"));
        }
        Ok(())
    }

    /// `[forget]`: fractions in (0,1), none twice; one existing file a seed
    /// (made absolute) for one fraction; each retain setting once.
    fn resolve_forget(&mut self, src: &Source<'_>) -> Result<()> {
        // A calibrated run refuses to forget more than it keeps (before any
        // step of it would run, hostile7 EXM1).
        if let Some(f) =
            (self.calibrate.as_ref()).and_then(|_| self.forget.fractions.iter().find(|f| **f > 0.5))
        {
            return Err(src.at(
                &["forget", "fractions"],
                format!(
                    "forget.fractions: {f} forgets more than half the training set, and \
                     [calibrate] estimates a retrain by the original's held-out accuracy, which \
                     holds while at most half is forgotten; use fractions up to 0.5 or drop \
                     [calibrate]"
                ),
            ));
        }
        let forget = &mut self.forget;
        if forget.fractions.is_empty() {
            // An empty list has no element out of range (hostile11 EF1):
            // say what is missing, for files too.
            let msg = if forget.files.is_empty() {
                "forget.fractions: give at least one fraction of the training set to forget, \
                 e.g. fractions = [0.1]"
            } else {
                "forget.fractions: with files, give the one fraction of the training set they \
                 represent, e.g. fractions = [0.1] for files of 10% (each file's share is \
                 checked against it within one point)"
            };
            return Err(src.at(&["forget", "fractions"], msg));
        }
        if forget.fractions.iter().any(|f| !(*f > 0.0 && *f < 1.0)) {
            return Err(src.at(
                &["forget", "fractions"],
                "forget.fractions: each must lie in (0,1)",
            ));
        }
        if !forget.files.is_empty() {
            if forget.files.len() != self.seeds.len() {
                return Err(src.at(
                    &["forget", "files"],
                    format!(
                        "forget.files: {} file(s) for {} seed(s); give one per seed, in the order of seeds",
                        forget.files.len(),
                        self.seeds.len()
                    ),
                ));
            }
            if forget.fractions.len() != 1 {
                return Err(src.at(
                    &["forget", "fractions"],
                    "forget.fractions: with files, give the one fraction they represent",
                ));
            }
            for f in &mut forget.files {
                let p = src.base.join(&*f);
                if !p.exists() {
                    return Err(src.at(
                        &["forget", "files"],
                        format!("forget.files: {} does not exist", p.display()),
                    ));
                }
                *f = std::path::absolute(&p).unwrap_or(p).display().to_string();
            }
        }
        let mut f = forget.fractions.clone();
        f.sort_by(f64::total_cmp);
        f.dedup();
        if f.len() != forget.fractions.len() {
            return Err(src.at(
                &["forget", "fractions"],
                "forget.fractions: a fraction is listed twice",
            ));
        }
        if forget.with_retain.is_empty() {
            return Err(src.at(
                &["forget", "with_retain"],
                "forget.with_retain: give true, false or both",
            ));
        }
        if has_repeats(&forget.with_retain) {
            return Err(src.at(
                &["forget", "with_retain"],
                "forget.with_retain: a setting is listed twice (every method would run it \
                 twice); give true, false or both, each once",
            ));
        }
        Ok(())
    }

    /// `[rmia]`: an even number of reference models, and attack settings
    /// its own check accepts.
    fn check_rmia(&self, src: &Source<'_>) -> Result<()> {
        if self.rmia.reference_models < 2 || self.rmia.reference_models % 2 == 1 {
            return Err(src.at(
                &["rmia", "reference_models"],
                "rmia.reference_models: must be even and at least 2 (each sample OUT for half of them)",
            ));
        }
        if let Err(e) = self.rmia.attack.check() {
            let key = match &e {
                Error::Invalid { what, .. } => what.clone(),
                _ => String::new(),
            };
            return Err(src.at(&["rmia", "attack", &key], format!("rmia.attack.{e}")));
        }
        Ok(())
    }

    /// A method's table: its own tuning grid, then its settings as the
    /// method reads them.
    fn check_method(&self, name: &str, table: &toml::Table, src: &Source<'_>) -> Result<()> {
        let mut table = table.clone();
        if let Some(t) = table.remove("tune") {
            self.check_method_tune(name, t, src)?;
        }
        let v = serde_json::to_value(&table).map_err(|e| Error::format(src.path, e.to_string()))?;
        if let Err(e) = crate::unlearn::build(name, &v).and_then(|m| self.check_given(name, m, &v))
        {
            // Point at the offending key inside the method's table when
            // the error names one (`rl.speed`, `amun.finetune.lr`), else
            // at the table.
            let mut key = vec!["methods", name];
            if let Error::Invalid { what, .. } = &e
                && let Some(k) = what.strip_prefix(&format!("{name}."))
            {
                key.extend(k.split('.'));
            }
            return Err(src.at(&key, &e));
        }
        Ok(())
    }

    /// A method's own grid (`[methods.NAME.tune]`): readable, sound, and
    /// one that a `[tune]` section will run.
    fn check_method_tune(&self, name: &str, t: toml::Value, src: &Source<'_>) -> Result<()> {
        let key = ["methods", name, "tune"];
        let here = |msg: String| src.at(&key, format!("{name}.tune: {msg}"));
        let mt: MethodTune = t.try_into().map_err(|e: toml::de::Error| {
            // An unknown key at its own line, not the table's.
            let msg = format!("{name}.tune: {}", e.message());
            match unknown_field(e.message()) {
                Some(k) => src.at(&["methods", name, "tune", k], msg),
                None => here(e.message().to_string()),
            }
        })?;
        check_grid(mt.lr.as_deref(), mt.step.as_deref())
            .map_err(|(k, m)| src.at(&["methods", name, "tune", k], format!("{name}.tune.{m}")))?;
        // Without [tune] nothing is tuned: the grid would be dropped.
        if self.tune.is_none() {
            return Err(here(
                "a method's own grid needs a [tune] section (nothing is tuned without \
                 one); add [tune] or remove this key"
                    .into(),
            ));
        }
        if let Some(list) = self.tune.as_ref().and_then(|t| t.methods.as_ref())
            && !list.iter().any(|m| m == name)
        {
            return Err(here(format!(
                "{name} is not in tune.methods ({}), so this grid would never run; add \
                 it there or remove this key",
                list.join(", ")
            )));
        }
        Ok(())
    }

    /// A method that runs in no setting would vanish from the plan: one
    /// that needs the retain set, when no setting has it.
    fn check_methods_run(&self, src: &Source<'_>) -> Result<()> {
        if self.forget.with_retain.contains(&true) {
            return Ok(());
        }
        for m in self.methods()? {
            if let Some(why) = m.method().requires_retain() {
                return Err(src.at(
                    &["methods", m.name()],
                    format!(
                        "methods.{}: it needs the retain set ({why}), but forget.with_retain \
                         is [false]: it would run in no setting; add true to with_retain or \
                         remove the method",
                        m.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A parse error, at the line of the `[calibrate]` key it names when it
    /// names one (serde reports a flattened section's errors at its header).
    fn toml_error(text: &str, path: &Path, e: toml::de::Error) -> Error {
        let key = e
            .message()
            .strip_prefix("calibrate.")
            .and_then(|m| m.split(':').next())
            // The key as written (`lrs` of `lrs[0]`), known or not: an
            // unknown key is on a line of its own too.
            .and_then(|k| k.split(['.', '[']).next())
            .filter(|k| !k.is_empty());
        match key {
            Some(k) => Lines::new(text).error(path, &["calibrate", k], e.message().trim_end()),
            None => Error::toml(text, path, e),
        }
    }

    /// `msg` about the key at `key` of the experiment file at `path`, with
    /// its line (for checks that need the data, made after parsing).
    pub fn error_at(path: &Path, key: &[&str], msg: impl std::fmt::Display) -> Error {
        match std::fs::read_to_string(path) {
            Ok(text) => Lines::new(&text).error(path, key, msg),
            Err(_) => Error::format(path, msg.to_string()),
        }
    }

    /// Reads and validates an experiment file.
    pub fn read(path: &Path) -> Result<Config> {
        let text = crate::fsutil::read_text(path)?;
        Config::parse(&text, path)
    }

    /// [`crate::unlearn::check_given`] for the runs `name` takes part in:
    /// with the retain set if any setting has it, and, when it is tuned,
    /// under the grid's decaying schedule too.
    fn check_given(
        &self,
        name: &str,
        method: Box<dyn crate::unlearn::Method>,
        table: &serde_json::Value,
    ) -> Result<()> {
        let with_retain = self.forget.with_retain.contains(&true);
        crate::unlearn::check_given(method.as_ref(), table, with_retain).or_else(|e| {
            match (self.tune_grid(name), method.finetune()) {
                (Some((lr, step)), Some(_)) if !lr.is_empty() && !step.is_empty() => {
                    let gamma = self.tune.as_ref().map_or(0.1, |t| t.gamma);
                    let tuned = method.adjusted(&grid_rate(lr[0], step[0], gamma))?;
                    crate::unlearn::check_given(tuned.as_ref(), table, with_retain)
                }
                _ => Err(e),
            }
        })
    }

    /// `[tune]`'s values; an error names its key.
    fn check_tune(&self, t: &TuneSection) -> std::result::Result<(), (&'static str, String)> {
        check_grid(Some(&t.lr), Some(&t.step)).map_err(|(k, m)| (k, format!("tune.{m}")))?;
        if !(t.gamma > 0.0 && t.gamma.is_finite()) {
            return Err((
                "gamma",
                format!("tune.gamma: must be positive, got {}", t.gamma),
            ));
        }
        if t.seeds.is_empty() {
            return Err(("seeds", "tune.seeds: give at least one seed".into()));
        }
        if has_repeats(&t.seeds) {
            return Err((
                "seeds",
                "tune.seeds: a seed is listed twice (its grid would run twice on the same \
                 forget set)"
                    .into(),
            ));
        }
        self.check_method_list(t.methods.as_deref(), "tune.methods", "tuned")
            .map_err(|m| ("methods", m))
    }

    /// `[calibrate]`'s values; an error names its key.
    fn check_calibrate(
        &self,
        c: &CalibrateSection,
    ) -> std::result::Result<(), (&'static str, String)> {
        if c.holdout == 0 {
            return Err((
                "holdout",
                "calibrate.holdout: expected at least 1 test image".into(),
            ));
        }
        if let Some(n) = self.data.test_limit
            && c.holdout >= n
        {
            return Err((
                "holdout",
                format!(
                    "calibrate.holdout: {} leaves none of the {n} test images to audit",
                    c.holdout
                ),
            ));
        }
        if let Err(e) = c.settings() {
            let key = e
                .key()
                .and_then(|what| {
                    CALIBRATE_KEYS
                        .iter()
                        .copied()
                        .find(|k| what.strip_prefix("calibrate.") == Some(*k))
                })
                .unwrap_or("");
            return Err((key, e.to_string()));
        }
        if c.overrides.retain_budget.is_some() && !self.forget.with_retain.contains(&true) {
            return Err((
                "retain_budget",
                "calibrate.retain_budget: every run is without the retain set (forget.with_retain \
                 = [false]), so calibration visits no retain images and it would have no effect; \
                 drop it"
                    .into(),
            ));
        }
        self.check_method_list(c.methods.as_deref(), "calibrate.methods", "calibrated")
            .map_err(|m| ("methods", m))?;
        let methods = self.methods().map_err(|e| ("methods", e.to_string()))?;
        for m in methods {
            if self.calibrated(m.name()) && m.method().finetune().is_none() {
                return Err((
                    "methods",
                    format!(
                        "calibrate.methods: {} has no fine-tuning learning rate to calibrate",
                        m.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A `methods` list of `[tune]` or `[calibrate]`: configured methods,
    /// each once, at least one (an empty list would leave the section
    /// without effect).
    fn check_method_list(
        &self,
        list: Option<&[String]>,
        what: &str,
        done: &str,
    ) -> std::result::Result<(), String> {
        if let Some(l) = list {
            if l.is_empty() {
                return Err(format!(
                    "{what}: the list is empty, so nothing would be {done}; name at least one \
                     method, or leave the key out for every configured method"
                ));
            }
            if has_repeats(l) {
                return Err(format!("{what}: a method is listed twice"));
            }
        }
        self.check_method_names(list, what)
    }

    /// Names in `list` must be configured methods.
    fn check_method_names(
        &self,
        list: Option<&[String]>,
        what: &str,
    ) -> std::result::Result<(), String> {
        for m in list.unwrap_or_default() {
            if !self.methods.contains_key(m) {
                let mut known: Vec<&String> = self.methods.keys().collect();
                known.sort();
                return Err(format!(
                    "{what}: '{m}' is not a configured method (the file has {})",
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The tuning grid of `method`, or `None` when it is not tuned.
    pub fn tune_grid(&self, method: &str) -> Option<(Vec<f64>, Vec<usize>)> {
        let t = self.tune.as_ref()?;
        if let Some(list) = &t.methods
            && !list.iter().any(|m| m == method)
        {
            return None;
        }
        let own: MethodTune = self
            .methods
            .get(method)?
            .get("tune")
            .and_then(|v| v.clone().try_into().ok())
            .unwrap_or_default();
        Some((
            own.lr.unwrap_or_else(|| t.lr.clone()),
            own.step.unwrap_or_else(|| t.step.clone()),
        ))
    }

    /// Whether `method` also runs calibrated.
    pub fn calibrated(&self, method: &str) -> bool {
        self.calibrate.as_ref().is_some_and(|c| {
            c.methods
                .as_ref()
                .is_none_or(|l| l.iter().any(|m| m == method))
        })
    }

    /// Test images left out of every audit (kept for calibration).
    pub fn heldout(&self) -> usize {
        self.calibrate.as_ref().map_or(0, |c| c.holdout)
    }

    /// The spec of the models the experiment trains, for `data`'s images and
    /// classes.
    pub fn model_spec(
        &self,
        image_shape: [i64; 3],
        num_classes: usize,
    ) -> Result<crate::model::ModelSpec> {
        match (
            &self.model,
            self.program.as_ref().and_then(|p| p.pinned.clone()),
        ) {
            (ModelName::Exported(m), Some(pinned)) => {
                let mut spec = crate::model::ModelSpec::exported(pinned, image_shape, num_classes)?;
                if let Some(n) = self.program.as_ref().and_then(|p| p.normalize.as_ref()) {
                    spec.normalize = Some(Normalize::parse(n, image_shape[0] as usize)?);
                }
                let _ = m;
                Ok(spec)
            }
            (ModelName::Exported(m), None) => Err(Error::invalid(
                "model",
                format!("{m}: the config was not read through Config::parse (no pinned graph)"),
            )),
            (ModelName::Builtin(a), _) => {
                crate::model::ModelSpec::for_data(*a, image_shape, num_classes)
            }
        }
    }

    /// The original model's checked recipe, for images of `in_channels`
    /// channels: augmentation left unset is on for colour images and off
    /// for one-channel ones (flips corrupt digits), as `amun train` does.
    pub fn recipe(&self, in_channels: i64) -> Result<Recipe> {
        if self.train.retain_budget.is_some() {
            return Err(Error::invalid(
                "retain-budget",
                "a training recipe visits all of its data; the retain budget is a fine-tune's \
                 setting ([methods.NAME] finetune.retain_budget)",
            ));
        }
        let base = TrainParams::for_arch(self.model.arch()).augment(in_channels != 1);
        self.train.apply(base).check()
    }

    /// The names of the methods to run, in the registry's order
    /// (`retrain` always runs as the reference, so it is not one of them).
    pub fn method_names(&self) -> Vec<&'static str> {
        crate::unlearn::METHODS
            .iter()
            .filter(|e| e.name != "retrain" && self.methods.contains_key(e.name))
            .map(|e| e.name)
            .collect()
    }

    /// The methods to run, in the registry's order, each built from its
    /// table (the `tune` grid left out).
    pub fn methods(&self) -> Result<Vec<MethodSpec>> {
        self.method_names()
            .into_iter()
            .map(|name| {
                let mut t = self.methods[name].clone();
                t.remove("tune");
                let v = serde_json::to_value(&t)
                    .map_err(|e| Error::invalid(format!("methods.{name}"), e.to_string()))?;
                MethodSpec::new(name, &v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every calibration setting `[calibrate]` takes is one an error can
    /// point at: the list names each field of the settings once.
    #[test]
    fn the_calibrate_keys_are_the_settings_fields() {
        let every = CalibrateSettings {
            stall: Some(2),
            over_when_nearer: true,
            max_cost: Some(0.3),
            ..CalibrateSettings::default()
        };
        let v = serde_json::to_value(every).unwrap();
        let mut fields: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut keys = CALIBRATE_KEYS.to_vec();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, fields);
    }

    const BASE: &str = r#"
name = "t"
model = "small-cnn"
seeds = [0]
[data]
dataset = "mnist"
[forget]
fractions = [0.1]
[rmia]
reference_models = 2
[methods.amun]
"#;

    fn parse(extra: &str) -> Result<Config> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("t.toml"))
    }

    fn err(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn sections_are_typed_and_checked_with_their_line() {
        let c = parse("[calibrate]\nholdout = 100\nlrs = [0.01, 0.1]\n").unwrap();
        let s = c.calibrate.as_ref().unwrap().settings().unwrap();
        assert_eq!(s.lrs, vec![0.01, 0.1]);
        assert_eq!(
            s.max_utility_drop,
            CalibrateSettings::default().max_utility_drop
        );
        // An unknown key in a flattened section is still an error.
        let e = err("[calibrate]\nholdout = 100\nspeed = 3\n");
        assert!(e.contains("speed"), "{e}");
        let e = err("[calibrate]\nholdout = 100\nlrs = [0.1, 0.01]\n");
        assert!(e.contains("increasing"), "{e}");
        // [train] is the recipe override type of `amun train`'s flags.
        let c = parse("[train]\nepochs = 3\nlr = 0.2\n").unwrap();
        let r = c.recipe(1).unwrap();
        assert_eq!((r.epochs, r.lr, r.augment), (3, 0.2, false));
        let e = err("[train]\nepochs = 0\n");
        assert!(e.contains("epochs"), "{e}");
        // [slurm] is placement, not part of the config, but checked.
        let c = parse("[slurm]\ntrain = { cpus = 4 }\n").unwrap();
        assert_eq!(c, parse("").unwrap());
        let e = err("[slurm]\nunlearn = { mem = \"lots\" }\n");
        assert!(e.contains("slurm.unlearn.mem") && e.contains("lots"), "{e}");
        let e = Config::parse(&format!("device = \"gpu\"\n{BASE}"), Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gpu") && e.contains("expected cpu, cuda"), "{e}");
        // Method tables are built once, and name their key.
        let e = err("[methods.ft]\nfinetune.lr = -1\n");
        assert!(e.contains("ft.finetune.lr"), "{e}");
        let methods = parse("[methods.ft]\nfinetune.lr = 0.5\n")
            .unwrap()
            .methods()
            .unwrap();
        let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["ft", "amun"]);
        assert_eq!(methods[0].method().finetune().unwrap().lr, 0.5);
    }

    #[test]
    fn an_exported_model_is_pinned_by_sha256_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.pt2"), b"graph").unwrap();
        std::fs::write(dir.path().join("init.pt2"), b"init").unwrap();
        let cfg_path = dir.path().join("x.toml");
        let text = BASE.replace("model = \"small-cnn\"", "model = \"net.pt2\"");
        let c = Config::parse(
            &format!("{text}[program]\ninit = \"init.pt2\"\nnormalize = \"0.5,0.25\"\n"),
            &cfg_path,
        )
        .unwrap();
        assert_eq!(c.model.arch(), Arch::Exported);
        let pinned = c.program.as_ref().unwrap().pinned.clone().unwrap();
        assert!(pinned.file.is_absolute() && pinned.file.ends_with("net.pt2"));
        assert_eq!(
            pinned.sha256,
            crate::data::sha256_file(&pinned.file).unwrap()
        );
        assert!(matches!(
            pinned.init,
            crate::model::program::ProgramInit::Weights { .. }
        ));
        // The record reads back as the same config.
        let back: Config = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let e = Config::parse(&text.replace("net.pt2", "gone.pt2"), &cfg_path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gone.pt2") && e.contains("does not exist"),
            "{e}"
        );
        // A run folder made with this graph refuses it once the file changed.
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        crate::fsutil::write_json(&run.join("experiment.json"), &c).unwrap();
        crate::experiment::check_folder(&c, &run).unwrap();
        std::fs::write(dir.path().join("net.pt2"), b"another graph").unwrap();
        let again = Config::parse(
            &format!("{text}[program]\ninit = \"init.pt2\"\nnormalize = \"0.5,0.25\"\n"),
            &cfg_path,
        )
        .unwrap();
        let e = crate::experiment::check_folder(&again, &run)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("net.pt2")
                && e.contains(&pinned.sha256)
                && e.contains("put the original back"),
            "{e}"
        );
        let e = err("[program]\nnormalize = \"0.5,0.25\"\n");
        assert!(e.contains("[program]") && e.contains("small-cnn"), "{e}");
        let e = Config::parse(&BASE.replace("small-cnn", "resnet99"), Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(".pt2"), "{e}");
    }

    const TINY: &str = r#"
name = "tiny"
model = "small-cnn"
seeds = [0]
device = "cpu"

[data]
dataset = "mnist"
train_limit = 300
test_limit = 100

[train]
epochs = 3
batch_size = 32
lr = 0.02
augment = false

[forget]
fractions = [0.1]
with_retain = [true, false]

[rmia]
reference_models = 2

[methods.ft]
finetune.epochs = 1

[methods.amun]
finetune.epochs = 1
attack.steps = 5
"#;

    fn parse_tiny(text: &str) -> std::result::Result<Config, String> {
        Config::parse(text, Path::new("x.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn config_errors_point_at_the_line() {
        let cfg = parse_tiny(TINY).unwrap();
        assert_eq!(cfg.method_names(), vec!["ft", "amun"]);
        let e =
            parse_tiny(&TINY.replace("seeds = [0]", "seeds = [0]\ncolour = \"red\"")).unwrap_err();
        assert!(
            e.contains("line 5") && e.contains("colour") && !e.contains('\n'),
            "{e}"
        );
        let e = parse_tiny(&TINY.replace("[methods.ft]", "[methods.forgetful]")).unwrap_err();
        assert!(
            e.contains("line 25") && e.contains("forgetful") && e.contains("amun-salun"),
            "{e}"
        );
        let e = parse_tiny(&TINY.replace(
            "finetune.epochs = 1\n\n[methods.amun]",
            "finetune.epoch = 1\n\n[methods.amun]",
        ))
        .unwrap_err();
        assert!(
            e.contains("line 26") && e.contains("ft.finetune.epoch"),
            "{e}"
        );
        let e = parse_tiny(&TINY.replace("seeds = [0]", "seeds = [0, 0]")).unwrap_err();
        assert!(e.contains("line 4") && e.contains("twice"), "{e}");
        let e = parse_tiny(&TINY.replace("fractions = [0.1]", "fractions = [1.5]")).unwrap_err();
        assert!(e.contains("line 19") && e.contains("(0,1)"), "{e}");
        let e =
            parse_tiny(&TINY.replace("reference_models = 2", "reference_models = 3")).unwrap_err();
        assert!(e.contains("line 23") && e.contains("even"), "{e}");
        let e = parse_tiny(&TINY.replace("name = \"tiny\"\n", "")).unwrap_err();
        assert!(e.contains("name"), "{e}");
        // The recipe's own key, not the [train] header above it.
        let e = parse_tiny(&TINY.replace("lr = 0.02", "lr = -1")).unwrap_err();
        assert!(e.contains("line 15") && e.contains("lr"), "{e}");
    }

    #[test]
    fn settings_that_would_be_dropped_are_refused() {
        // A method's own grid without [tune]: nothing would be tuned.
        let e = err("tune = { lr = [0.1] }\n");
        assert!(
            e.contains("line 12") && e.contains("amun.tune") && e.contains("[tune]"),
            "{e}"
        );
        assert!(parse("tune = { lr = [0.1] }\n[tune]\n").is_ok());
        // …or a grid for a method tune.methods leaves out.
        let e = err("tune = { lr = [0.1] }\n[methods.ft]\n[tune]\nmethods = [\"ft\"]\n");
        assert!(e.contains("amun.tune") && e.contains("tune.methods"), "{e}");
        // A method that needs D_R where every setting runs without it.
        let only_ft = BASE
            .replace(
                "fractions = [0.1]",
                "fractions = [0.1]\nwith_retain = [false]",
            )
            .replace("[methods.amun]", "[methods.ft]");
        let e = Config::parse(&only_ft, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 12") && e.contains("methods.ft") && e.contains("no setting"),
            "{e}"
        );
        assert!(
            Config::parse(
                &only_ft.replace("[false]", "[true, false]"),
                Path::new("t.toml")
            )
            .is_ok()
        );
    }

    #[test]
    fn errors_name_the_line_of_their_own_key() {
        // `gamma` of [rmia.attack] comes first in the file; the error is
        // about [tune]'s.
        let e = err("[rmia.attack]\ngamma = 2.0\n[tune]\ngamma = -1.0\n");
        assert!(e.contains("line 15") && e.contains("tune.gamma"), "{e}");
        // The recipe's field, not the [train] header.
        let e = err("[train]\nepochs = 2\nbatch_size = 0\n");
        assert!(e.contains("line 14") && e.contains("batch"), "{e}");
        // A dotted method key, written as a table.
        let e = err("[methods.ft.finetune]\nlr = -1\n");
        assert!(e.contains("line 13") && e.contains("ft.finetune.lr"), "{e}");
    }

    /// An unknown key inside a `[methods.NAME]` table is named at its own
    /// line (13 or 15), never the table header's (11 or 12), also when
    /// written with `-` or inside the method's own `tune` table.
    #[test]
    fn an_unknown_method_key_is_named_at_its_own_line() {
        for (extra, line, key) in [
            (
                "finetune.epochs = 2\nbogus-key = 1\n",
                "line 13",
                "amun.bogus_key",
            ),
            (
                "finetune.epochs = 2\nfinetune.stop-belw = 0.1\n",
                "line 13",
                "amun.finetune.stop_belw",
            ),
            (
                "finetune.epochs = 2\nfinetune.stop-below = 2.0\n",
                "line 13",
                "amun.finetune.stop_below",
            ),
            (
                "[methods.ft.tune]\nlr = [0.1]\nspeed = 1\n[tune]\n",
                "line 14",
                "ft.tune",
            ),
        ] {
            let e = err(extra);
            assert!(e.contains(line) && e.contains(key), "{extra}: {e}");
        }
    }

    #[test]
    fn list_settings_that_would_run_a_cell_twice_are_refused() {
        let e = err("[tune]\nseeds = [1, 1]\n");
        assert!(
            e.contains("line 13") && e.contains("tune.seeds") && e.contains("twice"),
            "{e}"
        );
        let e = err("[tune]\nmethods = [\"amun\", \"amun\"]\n");
        assert!(
            e.contains("line 13") && e.contains("tune.methods") && e.contains("twice"),
            "{e}"
        );
        let e = err("[calibrate]\nholdout = 10\nmethods = [\"amun\", \"amun\"]\n");
        assert!(
            e.contains("line 14") && e.contains("calibrate.methods"),
            "{e}"
        );
        let e = Config::parse(
            &BASE.replace(
                "fractions = [0.1]",
                "fractions = [0.1]\nwith_retain = [true, true]",
            ),
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 9") && e.contains("forget.with_retain") && e.contains("twice"),
            "{e}"
        );
        assert!(parse("[tune]\nseeds = [1, 2]\n").is_ok());
    }

    #[test]
    fn empty_method_lists_of_tune_and_calibrate_are_refused() {
        let e = err("[tune]\nmethods = []\n");
        assert!(
            e.contains("line 13") && e.contains("tune.methods") && e.contains("empty"),
            "{e}"
        );
        let e = err("[calibrate]\nholdout = 10\nmethods = []\n");
        assert!(
            e.contains("line 14") && e.contains("calibrate.methods") && e.contains("empty"),
            "{e}"
        );
    }

    #[test]
    fn tune_and_calibrate_errors_name_the_line_of_their_key() {
        // Each key's own line (13 or 14), never the header's (12).
        for (extra, key) in [
            ("[tune]\nlr = [0.1, 0.1]\n", "tune.lr"),
            ("[tune]\nstep = [0]\n", "tune.step"),
            ("[tune]\nseeds = []\n", "tune.seeds"),
            ("[tune]\nmethods = [\"ft\"]\n", "tune.methods"),
            (
                "[calibrate]\nholdout = 10\nlrs = [0.1, 0.01]\n",
                "calibrate.lrs",
            ),
            (
                "[calibrate]\nholdout = 10\nlrs = \"fast\"\n",
                "calibrate.lrs",
            ),
            (
                "[calibrate]\nholdout = 10\nlevel = 2.0\n",
                "calibrate.level",
            ),
            (
                "[calibrate]\nholdout = 10\nretain_probe = 0\n",
                "calibrate.retain_probe",
            ),
            (
                "[calibrate]\nholdout = 10\nmax_epochs = 0\n",
                "calibrate.max_epochs",
            ),
            (
                "[calibrate]\nholdout = 10\nrule = \"best\"\n",
                "calibrate.rule",
            ),
            (
                "[calibrate]\nholdout = 10\nmax_utility_drop = -1.0\n",
                "calibrate.max_utility_drop",
            ),
            (
                "[calibrate]\nholdout = 10\nmethods = [\"ft\"]\n",
                "calibrate.methods",
            ),
            ("[calibrate]\nholdout = 10\nbogus = 1\n", "calibrate.bogus"),
        ] {
            let line = if extra.starts_with("[tune]") {
                "line 13"
            } else {
                "line 14"
            };
            let e = err(extra);
            assert!(e.contains(line) && e.contains(key), "{extra}: {e}");
        }
    }

    /// A config file's reader sees the settings by their keys (the CLI
    /// names its flags instead: `cmd::flags::in_flags`).
    #[test]
    fn a_clash_of_calibration_settings_names_both_keys() {
        let e = err("[calibrate]\nholdout = 10\nwalk = \"restart\"\nmax_cost = 0.5\n");
        assert!(
            e.contains("calibrate.max_cost: only the continuing walk (calibrate.walk = continue)"),
            "{e}"
        );
        assert!(!e.contains("--calibrate"), "{e}");
    }

    #[test]
    fn a_retain_budget_without_the_retain_set_is_refused() {
        let no_retain = |extra: &str| {
            Config::parse(
                &(BASE.replace(
                    "fractions = [0.1]",
                    "fractions = [0.1]\nwith_retain = [false]",
                ) + extra),
                Path::new("t.toml"),
            )
            .map_err(|e| e.to_string())
        };
        let e = no_retain("finetune.retain_budget = 2\n").unwrap_err();
        assert!(
            e.contains("line 13")
                && e.contains("amun.finetune.retain_budget")
                && e.contains("--no-retain"),
            "{e}"
        );
        let e = no_retain("[calibrate]\nholdout = 10\nretain_budget = \"full\"\n").unwrap_err();
        assert!(
            e.contains("line 15") && e.contains("calibrate.retain_budget"),
            "{e}"
        );
        assert!(no_retain("finetune.lr = 0.02\n").is_ok());
        // With the retain set in some run, the budget applies there.
        assert!(parse("finetune.retain_budget = 2\n").is_ok());
    }

    #[test]
    fn a_retain_floor_with_a_full_budget_is_refused() {
        let e = err("finetune.retain_budget = \"full\"\nfinetune.retain_floor = 512\n");
        assert!(
            e.contains("line 13") && e.contains("amun.finetune.retain_floor") && e.contains("full"),
            "{e}"
        );
        assert!(parse("finetune.retain_budget = 2\nfinetune.retain_floor = 512\n").is_ok());
        // The default floor under a full budget is not the user's doing.
        assert!(parse("[methods.ft]\nfinetune.retain_budget = \"full\"\n").is_ok());
    }

    #[test]
    fn stop_below_with_a_constant_schedule_is_refused() {
        let e = err("finetune.schedule = \"constant\"\nfinetune.stop_below = 0.1\n");
        assert!(
            e.contains("line 13")
                && e.contains("amun.finetune.stop_below")
                && e.contains("constant"),
            "{e}"
        );
        // ft's schedule is constant, but its tuned runs decay.
        let ft = "[methods.ft]\nfinetune.stop_below = 0.05\n";
        let e = err(ft);
        assert!(e.contains("ft.finetune.stop_below"), "{e}");
        assert!(parse(&format!("{ft}[tune]\n")).is_ok());
        // AMUN's default floor under a constant schedule the user chose.
        assert!(parse("finetune.schedule = \"constant\"\n").is_ok());
        assert!(parse("finetune.schedule = \"constant\"\nfinetune.stop_below = 0.0\n").is_ok());
    }

    #[test]
    fn a_calibrated_run_that_forgets_most_of_the_data_is_refused() {
        let most = TINY.replace("fractions = [0.1]", "fractions = [0.1, 0.9]");
        assert!(parse_tiny(&most).is_ok());
        let e = parse_tiny(&format!("{most}\n[calibrate]\nholdout = 50\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("0.9 forgets more than half") && e.contains("[calibrate]"),
            "{e}"
        );
    }

    #[test]
    fn fast_search_settings_with_the_exact_search_are_refused() {
        for key in ["overshoot = 0.5", "fast_steps = 5", "bisect = 3"] {
            let e = err(&format!("attack.search = \"exact\"\nattack.{key}\n"));
            let k = key.split(' ').next().unwrap();
            assert!(
                e.contains(&k.replace('_', "-")) && e.contains("exact search"),
                "{key}: {e}"
            );
        }
        assert!(parse("attack.search = \"exact\"\n").is_ok());
        assert!(parse("attack.overshoot = 0.5\n").is_ok());
    }

    #[test]
    fn nan_or_out_of_range_rmia_settings_are_refused() {
        let e = err("[rmia.attack]\ngamma = nan\n");
        assert!(
            e.contains("line 13") && e.contains("rmia.attack.gamma") && e.contains("NaN"),
            "{e}"
        );
        let e = err("[rmia.attack]\na = 1.5\n");
        assert!(e.contains("line 13") && e.contains("rmia.attack.a"), "{e}");
        assert!(parse("[rmia.attack]\na = 0.5\ngamma = 1.0\n").is_ok());
    }

    #[test]
    fn shipped_configs_parse_tiny() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let cfg = Config::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert!(
                    cfg.method_names().len() >= 8,
                    "{}: every method of the paper",
                    p.display()
                );
                n += 1;
            }
        }
        assert!(n >= 3);
    }
}
