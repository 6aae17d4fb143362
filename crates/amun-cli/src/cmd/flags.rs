//! Flag groups that several commands take (`#[command(flatten)]`): each
//! flag is defined once, and each group becomes the library's typed
//! overrides in one function, so every command reads and checks it alike.
use amun::attack::{AdvParams, AttackKind, Eps0};
use amun::train::TrainOverrides;
use amun::unlearn::CalibrateOverrides;
use anyhow::Result;
use clap::Args;
use serde_json::{Map, Value};

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
}

impl FinetuneArgs {
    /// The flags, typed: what `Method::adjusted` applies.
    pub fn overrides(&self) -> Result<TrainOverrides> {
        Ok(TrainOverrides {
            epochs: self.epochs,
            lr: self.lr,
            batch_size: self.batch_size,
            schedule: self.schedule.as_deref().map(str::parse).transpose()?,
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

/// Calibration flags of `amun unlearn` and `amun registry apply`.
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
    /// walk ends before an epoch that would pass it [default: no cap]
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    pub calibrate_max_cost: Option<f64>,
}

impl CalibrateArgs {
    /// The flags of this group given, by name (for a message).
    pub fn given(&self) -> Vec<&'static str> {
        [
            (self.calibrate_rule.is_some(), "--calibrate-rule"),
            (!self.calibrate_lrs.is_empty(), "--calibrate-lrs"),
            (self.calibrate_max_cost.is_some(), "--calibrate-max-cost"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect()
    }

    /// The flags, typed (the rest of the overrides left out).
    pub fn overrides(&self) -> Result<CalibrateOverrides> {
        if let Some(c) = self.calibrate_max_cost
            && !(c > 0.0 && c.is_finite())
        {
            anyhow::bail!(
                "--calibrate-max-cost must be a positive fraction of the same-recipe retrain's \
                 cost (e.g. 0.3), got {c}"
            );
        }
        Ok(CalibrateOverrides {
            lrs: (!self.calibrate_lrs.is_empty()).then(|| self.calibrate_lrs.clone()),
            rule: self.calibrate_rule.as_deref().map(str::parse).transpose()?,
            max_cost: self.calibrate_max_cost,
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
