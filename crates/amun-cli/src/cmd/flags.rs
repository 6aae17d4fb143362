//! Flag groups that several commands take (`#[command(flatten)]`): each
//! flag is defined once, and each group becomes the library's typed
//! overrides in one function, so every command reads and checks it alike.
use amun::attack::{AdvParams, AttackKind, Eps0};
use amun::registry::ApplyCap;
use amun::train::TrainOverrides;
use amun::unlearn::CalibrateOverrides;
use anyhow::Result;
use clap::Args;
use serde_json::{Map, Value};

/// The flag that gives each library setting (by its key) in the commands
/// that take these groups: a library error about one of them names the
/// flag the user typed ([`in_flags`]). Only settings no `--set` gives are
/// here, so a key given by `--set` (or a config file) keeps its name.
pub const SETTING_FLAGS: &[(&str, &str)] = &[
    ("calibrate.rule", "--calibrate-rule"),
    ("calibrate.lrs", "--calibrate-lrs"),
    ("calibrate.max_cost", "--calibrate-max-cost"),
    ("calibrate.start", "--calibrate-start"),
    ("calibrate.walk", "--calibrate-walk"),
    ("calibrate.max_epochs", "--calibrate-max-epochs"),
    ("calibrate.retain_budget", "--calibrate-retain-budget"),
    ("calibrate.max_utility_drop", "--calibrate-max-drop"),
    ("calibrate.level", "--calibrate-level"),
    ("adversarial", "--adv"),
    ("adaptive", "--adaptive"),
    ("with_retain", "--no-retain"),
    ("with_retain=false", "--no-retain"),
    ("forgotten", "--forgotten"),
    ("reference", "--reference"),
    ("anchor-copy", "--anchor-copy"),
    ("holdout-test", "--holdout-test"),
    ("checkpoint", "--checkpoint"),
];

/// The flag of the setting `key`, if a flag gives it.
pub fn flag_of(key: &str) -> Option<&'static str> {
    SETTING_FLAGS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, f)| *f)
}

/// A library error about a setting, in the words of the flags that gave
/// it (`calibrate.max_cost` → `--calibrate-max-cost`); any other error as
/// it is. `given` adds the settings that `--set` could give as well, each
/// with the flag that gave it this time ([`FinetuneArgs::given`],
/// [`AttackArgs::settings_given`]): such a key is matched with or without
/// the method's name in front (`ft.finetune.momentum`).
pub fn in_flags(e: anyhow::Error, given: &[(String, &'static str)]) -> anyhow::Error {
    let name = |k: &str| {
        flag_of(k)
            .or_else(|| {
                given
                    .iter()
                    .find(|(g, _)| k == g || k.ends_with(&format!(".{g}")))
                    .map(|(_, f)| *f)
            })
            .map(String::from)
    };
    match e.downcast_ref::<amun::Error>() {
        Some(lib @ (amun::Error::Setting { .. } | amun::Error::Invalid { .. }))
            if e.chain().count() == 1 =>
        {
            anyhow::anyhow!(lib.naming(&name))
        }
        _ => e,
    }
}

/// Fine-tuning flags of `amun unlearn` and `amun registry apply`; each one
/// left out keeps the method's setting.
#[derive(Args, Debug, Clone, Default)]
pub struct FinetuneArgs {
    /// Fine-tuning epochs
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Fine-tuning learning rate
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// e.g. step:1:0.1 (lr ×0.1 every epoch)
    #[arg(long)]
    pub schedule: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
}

impl FinetuneArgs {
    /// The settings these flags gave (`finetune.momentum`), with their
    /// flags, for [`in_flags`].
    pub fn given(&self) -> Vec<(String, &'static str)> {
        [
            ("epochs", "--epochs", self.epochs.is_some()),
            ("lr", "--lr", self.lr.is_some()),
            ("batch_size", "--batch-size", self.batch_size.is_some()),
            ("schedule", "--schedule", self.schedule.is_some()),
            ("momentum", "--momentum", self.momentum.is_some()),
            (
                "weight_decay",
                "--weight-decay",
                self.weight_decay.is_some(),
            ),
        ]
        .into_iter()
        .filter(|(_, _, given)| *given)
        .flat_map(|(k, f, _)| {
            // `--schedule`'s text is parsed before the method sees it.
            let bare = (k == "schedule").then(|| (k.to_string(), f));
            std::iter::once((format!("finetune.{k}"), f)).chain(bare)
        })
        .collect()
    }

    /// The flags, typed: what `Method::adjusted` applies.
    pub fn overrides(&self) -> Result<TrainOverrides> {
        Ok(TrainOverrides {
            epochs: self.epochs,
            lr: self.lr,
            batch_size: self.batch_size,
            schedule: self.schedule.as_deref().map(str::parse).transpose()?,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            ..Default::default()
        })
    }
}

/// `--set` of `amun unlearn` and `amun registry apply`.
#[derive(Args, Debug, Clone, Default)]
pub struct SetArgs {
    /// Any other setting, as KEY=VALUE (dotted keys for tables:
    /// finetune.lr=0.01, attack.steps=20)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl SetArgs {
    /// The method's settings table: `flags` (what the other flags gave, by
    /// setting) with every `--set` merged in; a key a flag gives too is
    /// refused (see [`super::settings_table`]).
    pub fn table(&self, flags: Map<String, Value>, train: &TrainOverrides) -> Result<Value> {
        super::settings_table(flags, &self.set, train)
    }
}

/// Calibration flags of `amun unlearn` and `amun registry apply`: every
/// `[calibrate]` setting but the few a config file alone tunes.
#[derive(Args, Debug, Clone, Default)]
pub struct CalibrateArgs {
    /// Calibration rule: accuracy (default), proxy-gap, mia or confidence
    #[arg(long, value_name = "RULE")]
    pub calibrate_rule: Option<String>,
    /// Calibration's learning-rate ladder, increasing [default: 0.001,0.003,0.01,0.03,0.1]
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LR,LR,..",
        allow_negative_numbers = true
    )]
    pub calibrate_lrs: Vec<f64>,
    /// The most calibration may cost, as a fraction of the same-recipe
    /// exact retrain's image-steps (the adversarial search included); the
    /// walk ends before an epoch that would pass it; none: no cap [default: no cap]
    #[arg(
        long,
        value_name = "FRACTION|none",
        allow_negative_numbers = true,
        value_parser = cost_cap
    )]
    pub calibrate_max_cost: Option<ApplyCap>,
    /// Where the ladder's walk starts: own (the rung nearest the method's
    /// rate, then up or down) or lowest (then up) [default: own]
    #[arg(long, value_name = "own|lowest")]
    pub calibrate_start: Option<String>,
    /// How the ladder is walked: continue (one trajectory that climbs or
    /// descends from the state it has, at most --calibrate-max-epochs
    /// epochs) or restart (every rung from the original model) [default: continue]
    #[arg(long, value_name = "continue|restart")]
    pub calibrate_walk: Option<String>,
    /// Epochs the continuing walk may run in all [default: twice the method's epochs]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub calibrate_max_epochs: Option<usize>,
    /// How much of D_R each of calibration's epochs visits: full, a multiple
    /// of the request (e.g. 4), or method (the method's own
    /// finetune.retain_budget) [default: full]
    #[arg(long, value_name = "full|K|method", allow_negative_numbers = true)]
    pub calibrate_retain_budget: Option<String>,
    /// Points of held-out and retain accuracy a calibrated result may lose
    /// against the original model before it counts as a utility loss
    /// [default: from the data: the noise at --calibrate-level plus what
    /// forgetting this many samples costs]
    #[arg(long, value_name = "POINTS", allow_negative_numbers = true)]
    pub calibrate_max_drop: Option<f64>,
    /// The two-sided level of calibration's tests (forget vs held-out
    /// accuracy, loss-AUC vs 50, utility) [default: 0.05]
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub calibrate_level: Option<f64>,
}

/// `--calibrate-max-cost`: a fraction, or `none`.
fn cost_cap(s: &str) -> std::result::Result<ApplyCap, String> {
    s.parse().map_err(|e: amun::Error| e.naming(&|_| None))
}

impl CalibrateArgs {
    /// A registry apply's cost cap: `none` turns its default off; a
    /// fraction given is in the calibration settings ([`Self::overrides`]).
    pub fn apply_cap(&self) -> ApplyCap {
        match self.calibrate_max_cost {
            Some(ApplyCap::Off) => ApplyCap::Off,
            _ => ApplyCap::Default,
        }
    }

    /// The flags of this group given, by name (for a message).
    pub fn given(&self) -> Vec<&'static str> {
        [
            (self.calibrate_rule.is_some(), "--calibrate-rule"),
            (!self.calibrate_lrs.is_empty(), "--calibrate-lrs"),
            (self.calibrate_max_cost.is_some(), "--calibrate-max-cost"),
            (self.calibrate_start.is_some(), "--calibrate-start"),
            (self.calibrate_walk.is_some(), "--calibrate-walk"),
            (
                self.calibrate_max_epochs.is_some(),
                "--calibrate-max-epochs",
            ),
            (
                self.calibrate_retain_budget.is_some(),
                "--calibrate-retain-budget",
            ),
            (self.calibrate_max_drop.is_some(), "--calibrate-max-drop"),
            (self.calibrate_level.is_some(), "--calibrate-level"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect()
    }

    /// The flags, typed, in the order they are checked (their values are
    /// checked by [`CalibrateOverrides::settings`]).
    pub fn overrides(&self) -> Result<CalibrateOverrides> {
        Ok(CalibrateOverrides {
            rule: self.calibrate_rule.as_deref().map(str::parse).transpose()?,
            lrs: (!self.calibrate_lrs.is_empty()).then(|| self.calibrate_lrs.clone()),
            max_cost: match self.calibrate_max_cost {
                Some(ApplyCap::Given(f)) => Some(f),
                _ => None,
            },
            start: self
                .calibrate_start
                .as_deref()
                .map(str::parse)
                .transpose()?,
            walk: self.calibrate_walk.as_deref().map(str::parse).transpose()?,
            max_epochs: self.calibrate_max_epochs,
            retain_budget: self
                .calibrate_retain_budget
                .as_deref()
                .map(amun::unlearn::parse_calibration_budget)
                .transpose()?,
            max_utility_drop: self.calibrate_max_drop,
            level: self.calibrate_level,
            ..Default::default()
        })
    }
}

/// Attack flags of `amun adv`, `amun unlearn` and `amun bench`; each one
/// left out keeps the default.
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

    /// The attack settings these flags gave, by the names the attack's
    /// checks give them (`steps`, `batch-size`), with their flags, for
    /// [`in_flags`].
    pub fn settings_given(&self) -> Vec<(String, &'static str)> {
        [
            ("attack", "--attack", self.attack.is_some()),
            ("eps0", "--eps0", self.eps0.is_some()),
            ("steps", "--pgd-steps", self.pgd_steps.is_some()),
            ("batch-size", "--attack-batch", self.attack_batch.is_some()),
            ("search", "--adv-search", self.adv_search.is_some()),
            ("fast-steps", "--fast-steps", self.fast_steps.is_some()),
            ("overshoot", "--overshoot", self.overshoot.is_some()),
        ]
        .into_iter()
        .filter(|(_, _, given)| *given)
        .map(|(k, f, _)| (k.to_string(), f))
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
    pub fn overrides(&self) -> Result<Map<String, Value>> {
        let mut m = Map::new();
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

#[cfg(test)]
mod tests {
    use super::{flag_of, in_flags};

    #[test]
    fn library_settings_are_named_by_their_flags() {
        assert_eq!(flag_of("calibrate.max_cost"), Some("--calibrate-max-cost"));
        assert_eq!(
            flag_of("calibrate.max_utility_drop"),
            Some("--calibrate-max-drop")
        );
        assert_eq!(
            flag_of("finetune.lr"),
            None,
            "--set gives it as well as --lr"
        );
        let e = amun::unlearn::CalibrateOverrides {
            walk: Some(amun::unlearn::Walk::Restart),
            max_cost: Some(0.05),
            ..Default::default()
        }
        .settings()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "calibrate.max_cost: only the continuing walk (calibrate.walk = continue) has a cost cap"
        );
        assert_eq!(
            in_flags(e.into(), &[]).to_string(),
            "--calibrate-max-cost: only the continuing walk (--calibrate-walk continue) has a \
             cost cap"
        );
        let other = anyhow::Error::from(amun::Error::invalid("calibrate.level", "x"));
        assert_eq!(in_flags(other, &[]).to_string(), "--calibrate-level: x");
    }

    /// A setting `--set` can give too is named by its flag only when the
    /// flag gave it (hostile7 AP1: `--momentum -1` was named
    /// `ft.finetune.momentum`).
    #[test]
    fn settings_a_flag_gave_are_named_by_it() {
        let ft = super::FinetuneArgs {
            momentum: Some(-1.0),
            ..Default::default()
        };
        let e = || anyhow::Error::from(amun::Error::invalid("ft.finetune.momentum", "bad"));
        assert_eq!(in_flags(e(), &ft.given()).to_string(), "--momentum: bad");
        assert_eq!(in_flags(e(), &[]).to_string(), "ft.finetune.momentum: bad");
        let lr = anyhow::Error::from(amun::Error::invalid("ft.finetune.lr", "bad"));
        assert_eq!(in_flags(lr, &ft.given()).to_string(), "ft.finetune.lr: bad");
    }
}
