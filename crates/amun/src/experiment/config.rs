//! The experiment file (TOML): what to train, what to forget, which
//! methods, how many seeds and reference models. Errors point at the line.
use crate::audit::RmiaParams;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::model::Arch;
use crate::train::{Recipe, Schedule, TrainParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The original model's recipe; fields left out take the architecture's
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
    pub schedule: Option<Schedule>,
    pub augment: Option<bool>,
    pub bf16: Option<bool>,
    pub channels_last: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetSection {
    /// Fractions of the training set to forget, e.g. [0.1, 0.5].
    pub fractions: Vec<f64>,
    /// Run every method with the retain set (true), without it (false), or both.
    #[serde(default = "both")]
    pub with_retain: Vec<bool>,
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

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: String,
    pub data: DataSpec,
    pub model: Arch,
    #[serde(default)]
    pub train: TrainSection,
    pub forget: ForgetSection,
    /// One original model, forget set and run of every method per seed.
    pub seeds: Vec<u64>,
    #[serde(default = "auto")]
    pub device: String,
    pub rmia: RmiaSection,
    /// Method name → settings (a table, possibly empty). Methods run in the
    /// registry's order; `retrain` always runs (it is the reference).
    pub methods: BTreeMap<String, toml::Table>,
}

fn auto() -> String {
    "auto".into()
}

/// The 1-based line of the first line of `text` that starts with `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map(|i| i + 1)
}

/// The line of the header `[section]` (quoted or not).
fn section_line(text: &str, section: &str) -> Option<usize> {
    let quoted = section
        .split('.')
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                p.to_string()
            } else {
                format!("\"{p}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".");
    line_of(text, &format!("[{section}]")).or_else(|| line_of(text, &format!("[{quoted}]")))
}

/// The line that sets `key` (a dotted path such as `finetune.lr`) of method
/// `name`: `finetune.lr = …` under `[methods.name]`, or `lr = …` under
/// `[methods.name.finetune]`.
fn setting_line(text: &str, name: &str, key: &str) -> Option<usize> {
    let parts: Vec<&str> = key.split('.').collect();
    for split in 0..parts.len() {
        let table = std::iter::once(format!("methods.{name}"))
            .chain(parts[..split].iter().map(|p| p.to_string()))
            .collect::<Vec<_>>()
            .join(".");
        let rest = parts[split..].join(".");
        let Some(h) = section_line(text, &table) else {
            continue;
        };
        let found = text
            .lines()
            .enumerate()
            .skip(h)
            .take_while(|(_, l)| !l.trim_start().starts_with('['))
            .find(|(_, l)| {
                l.trim_start()
                    .strip_prefix(rest.as_str())
                    .is_some_and(|r| r.trim_start().starts_with('='))
            });
        if let Some((i, _)) = found {
            return Some(i + 1);
        }
    }
    None
}

impl Config {
    /// Parses and validates an experiment file.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().trim_end().replace('\n', " ");
            match line {
                Some(l) => Error::format(path, format!("line {l}: {msg}")),
                None => Error::format(path, msg),
            }
        })?;
        let at = |needle: &str, msg: String| -> Error {
            match line_of(text, needle) {
                Some(l) => Error::format(path, format!("line {l}: {msg}")),
                None => Error::format(path, msg),
            }
        };
        for (key, v) in [
            ("train_limit", cfg.data.train_limit),
            ("test_limit", cfg.data.test_limit),
        ] {
            if v == Some(0) {
                return Err(at(
                    key,
                    format!("data.{key}: expected at least 1 image, got 0"),
                ));
            }
        }
        // A dataset folder given relative to the config file, stored
        // absolute so the run folder's record resolves from anywhere.
        let mut cfg = cfg;
        if crate::data::Registry::from_name(&cfg.data.dataset).is_none()
            && Path::new(&cfg.data.dataset).is_relative()
        {
            let base = path
                .parent()
                .filter(|b| !b.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let joined = base.join(&cfg.data.dataset);
            cfg.data.dataset = std::path::absolute(&joined)
                .unwrap_or(joined)
                .display()
                .to_string();
        }
        let d = &cfg.data.dataset;
        if crate::data::Registry::from_name(d).is_none() && !Path::new(d).exists() {
            return Err(at(
                "dataset",
                format!(
                    "data.dataset '{d}': neither a registry dataset (cifar10, mnist) nor an \
                     existing folder"
                ),
            ));
        }
        if cfg.seeds.is_empty() {
            return Err(at("seeds", "seeds: give at least one seed".into()));
        }
        let mut s = cfg.seeds.clone();
        s.sort_unstable();
        s.dedup();
        if s.len() != cfg.seeds.len() {
            return Err(at("seeds", "seeds: a seed is listed twice".into()));
        }
        if cfg.forget.fractions.is_empty()
            || cfg.forget.fractions.iter().any(|f| !(*f > 0.0 && *f < 1.0))
        {
            return Err(at(
                "fractions",
                "forget.fractions: each must lie in (0,1)".into(),
            ));
        }
        let mut f = cfg.forget.fractions.clone();
        f.sort_by(f64::total_cmp);
        f.dedup();
        if f.len() != cfg.forget.fractions.len() {
            return Err(at(
                "fractions",
                "forget.fractions: a fraction is listed twice".into(),
            ));
        }
        if cfg.forget.with_retain.is_empty() {
            return Err(at(
                "with_retain",
                "forget.with_retain: give true, false or both".into(),
            ));
        }
        if cfg.rmia.reference_models < 2 || cfg.rmia.reference_models % 2 == 1 {
            return Err(at(
                "reference_models",
                "rmia.reference_models: must be even and at least 2 (each sample OUT for half of them)".into(),
            ));
        }
        for (name, table) in &cfg.methods {
            let v = serde_json::to_value(table).map_err(|e| Error::format(path, e.to_string()))?;
            if let Err(e) = crate::unlearn::build(name, &v) {
                // Point at the offending key inside the method's table when
                // the error names one (`rl.speed`, `amun.finetune.lr`).
                let key_line = match &e {
                    Error::Invalid { what, .. } => what
                        .strip_prefix(&format!("{name}."))
                        .and_then(|key| setting_line(text, name, key)),
                    _ => None,
                };
                let header = section_line(text, &format!("methods.{name}"));
                return Err(match key_line.or(header) {
                    Some(l) => Error::format(path, format!("line {l}: {e}")),
                    None => Error::format(path, e.to_string()),
                });
            }
        }
        cfg.recipe().map_err(|e| at("[train]", e.to_string()))?;
        let d = cfg.device.as_str();
        let cuda_n = d
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok());
        if !matches!(d, "cpu" | "cuda" | "auto") && !cuda_n {
            return Err(at(
                "device",
                format!("device '{d}': expected cpu, cuda, cuda:N or auto"),
            ));
        }
        Ok(cfg)
    }

    /// Reads and validates an experiment file.
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            err: source,
        })?;
        Config::parse(&text, path)
    }

    /// The original model's checked recipe.
    pub fn recipe(&self) -> Result<Recipe> {
        let t = &self.train;
        let mut p = TrainParams::for_arch(self.model);
        if let Some(v) = t.epochs {
            p = p.epochs(v);
        }
        if let Some(v) = t.batch_size {
            p = p.batch_size(v);
        }
        if let Some(v) = t.lr {
            p = p.lr(v);
        }
        if let Some(v) = t.momentum {
            p = p.momentum(v);
        }
        if let Some(v) = t.weight_decay {
            p = p.weight_decay(v);
        }
        if let Some(v) = &t.schedule {
            p = p.schedule(v.clone());
        }
        if let Some(v) = t.augment {
            p = p.augment(v);
        }
        if let Some(v) = t.bf16 {
            p = p.bf16(v);
        }
        if let Some(v) = t.channels_last {
            p = p.channels_last(v);
        }
        p.check()
    }

    /// The methods to run, in the registry's order, with their settings.
    pub fn method_list(&self) -> Vec<(&'static str, serde_json::Value)> {
        crate::unlearn::METHODS
            .iter()
            .filter(|e| e.name != "retrain" && self.methods.contains_key(e.name))
            .map(|e| {
                (
                    e.name,
                    serde_json::to_value(&self.methods[e.name]).unwrap_or_default(),
                )
            })
            .collect()
    }
}
