//! What calibration is asked to do: the rule, the ladder and its walk, the
//! budgets, every default, and the overrides that replace them.
#[cfg(doc)]
use super::{CostCap, Targets, utility_drop};
use crate::error::{Error, Result};
use crate::train::RetainBudget;
use serde::{Deserialize, Serialize};

/// What "the forget set looks unseen" is measured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// SCRUB+R's rule: forget accuracy closest to held-out accuracy.
    Accuracy,
    /// A loss-based membership test (AUC of per-sample losses, forget vs
    /// held-out) closest to chance (50).
    Mia,
    /// The largest gap between the true-class confidence distributions of
    /// forget and held-out samples (Kolmogorov–Smirnov, in points).
    Confidence,
    /// The paper's Avg. Gap with retrain-free targets: forget accuracy →
    /// held-out accuracy, held-out and retain accuracy → the original's,
    /// membership AUC → 50; the mean of the four distances.
    ProxyGap,
}

impl std::str::FromStr for Rule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Rule> {
        match s {
            "accuracy" => Ok(Rule::Accuracy),
            "mia" => Ok(Rule::Mia),
            "confidence" => Ok(Rule::Confidence),
            "proxy-gap" => Ok(Rule::ProxyGap),
            _ => Err(Error::setting(
                "calibrate.rule",
                format!("unknown rule '{s}'; expected accuracy, mia, confidence or proxy-gap"),
            )),
        }
    }
}

/// Where the ladder's walk begins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LadderStart {
    /// The rung nearest the method's own learning rate, walking up or down
    /// from there.
    #[default]
    Own,
    /// The smallest rung, walking up (the ladder before the walk existed).
    Lowest,
}

impl std::str::FromStr for LadderStart {
    type Err = Error;
    fn from_str(s: &str) -> Result<LadderStart> {
        match s {
            "own" => Ok(LadderStart::Own),
            "lowest" => Ok(LadderStart::Lowest),
            _ => Err(Error::setting(
                "calibrate.start",
                format!("unknown start '{s}'; expected own or lowest"),
            )),
        }
    }
}

/// How the ladder is walked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Walk {
    /// One trajectory at a constant rate: it starts at the start rung and,
    /// after every epoch, climbs a rung (going on from the state it has)
    /// when the forget set's approach to the held-out accuracy would take
    /// more than `climb_after` more epochs at this rate; when a state
    /// over-unlearns (by accuracy or membership) it goes back to the best
    /// state so far and on from there one rung lower, never again above
    /// the rung that overshot. An epoch that costs utility is ridden out
    /// for `patience` epochs (the next ones usually win it back); a rate
    /// that still costs it then is left for the rung below, going on from
    /// the state it reached (its forgetting is kept, as a decaying
    /// schedule keeps it; the best admissible state stays recorded) and
    /// never climbed to again. It ends at the first state within
    /// the noise of the target, or after `max_epochs` epochs in all (twice
    /// the method's own by default), a probe after each.
    #[default]
    Continue,
    /// Every rung a fresh run of the method from the original model with
    /// its own schedule, walking up or down the ladder, then (for a
    /// decaying schedule that under-unlearned) a second ladder at a
    /// constant rate: up to rungs × 2 × the method's epochs.
    Restart,
}

impl std::str::FromStr for Walk {
    type Err = Error;
    fn from_str(s: &str) -> Result<Walk> {
        match s {
            "continue" => Ok(Walk::Continue),
            "restart" => Ok(Walk::Restart),
            _ => Err(Error::setting(
                "calibrate.walk",
                format!("unknown walk '{s}'; expected continue or restart"),
            )),
        }
    }
}

/// Calibration settings, every default here. The rule was chosen by
/// measurement (docs/CALIBRATION.md: 8 method × data × D_R cases on a
/// CIFAR-10 slice and MNIST): the accuracy rule picked states 0.33 Avg. Gap
/// above the best of the grid on average, the proxy-gap rule 1.45. Every
/// decision is a test at `level` against targets fixed from the original
/// model before the first epoch ([`Targets`]).
///
/// | field | default | meaning |
/// |---|---|---|
/// | lrs | 0.001, 0.003, 0.01, 0.03, 0.1 | the learning-rate ladder |
/// | start | own | walk from the rung nearest the method's own rate (up while it under-unlearns, down while it over-unlearns), or from the lowest |
/// | walk | continue | one trajectory that climbs and descends the ladder from the state it has (see [`Walk`]), or `restart` every rung from the original |
/// | max_epochs | twice the method's | `continue`: epochs in all |
/// | retain_budget | full | how much of D_R each of calibration's epochs visits: `full`, a multiple of the request, or `method` (the method's own); calibration's high rates need D_R's anchor (docs/CALIBRATION.md) |
/// | climb_after | 3 | `continue`: climb a rung when reaching the target at this rate would take more epochs than this |
/// | rule | accuracy | what is minimised (see [`Rule`]) |
/// | level | 0.05 | the two-sided level of every test: forget vs held-out accuracy, loss-AUC vs 50, utility |
/// | max_utility_drop | from the data | points of held-out (and retain) accuracy the result may lose against the original; unset: `guard_se` standard errors of the original's accuracy plus what removing the forget set costs ([`utility_drop`]) |
/// | guard_se | 1 | standard errors of the original's accuracy on a probe set that the utility guard allows for sampling noise ([`GUARD_SE`]; records without it: the one-sided z at `level`, as they ran) |
/// | patience | 2 | epochs a rung may go on getting worse once it over-unlearns (`continue`: epochs of lost utility ridden out) |
/// | stall | the method's: 2 for AMUN, 3 for the others ([`own_stall`]) | `continue`: epochs a leg that cannot climb (the top rung, or the rungs above lost utility or over-unlearned) gets to find a better state than the best so far before the walk ends |
/// | stall_carry | true | `continue`: a leg that steps down after lost utility goes on with the count of epochs without a better state of the leg above, instead of a fresh `stall` (records without it: false, as they ran) |
/// | end_on_second_loss | true | `continue`: a leg that stepped down after lost utility and loses it again without a better state ends the walk, instead of stepping down again (records without it: false, as they ran) |
/// | ties_by_membership | true | of states the rule scores the same (a forget accuracy pinned at 100%), keep one whose membership signal is nearer chance by more than one standard error of the AUC; the walk itself is unchanged (records without it: false, as they ran) |
/// | over_when_nearer | false | a state that keeps utility but is over-unlearned by membership (its AUC below 50 by more than the band) may be kept when it lies nearer chance than the original by more than the band; the walk itself is unchanged (measured: it changed 1 of 32 calibrated walks, an RL walk on a 30-epoch model, docs/CALIBRATION.md) |
/// | retain_probe | 1000 | retain samples measured after each epoch |
/// | max_cost | none | `continue`: the most calibration may cost, as a fraction of the same-recipe exact retrain's image-steps (the model's recorded recipe × D_R; the adversarial search counts); the walk ends before an epoch that would pass it ([`CostMeter`]) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrateSettings {
    pub lrs: Vec<f64>,
    pub start: LadderStart,
    pub walk: Walk,
    /// `None`: twice the method's own epochs.
    pub max_epochs: Option<usize>,
    pub climb_after: f64,
    /// `None`: the method's own.
    #[serde(with = "budget_or_method")]
    pub retain_budget: Option<RetainBudget>,
    pub rule: Rule,
    pub level: f64,
    /// `None`: from the data ([`utility_drop`]).
    pub max_utility_drop: Option<f64>,
    /// `None` (records from before it): the one-sided z at `level`.
    #[serde(
        default = "guard_at_the_level",
        skip_serializing_if = "Option::is_none"
    )]
    pub guard_se: Option<f64>,
    pub patience: usize,
    /// `None`: the method's own ([`own_stall`]); a calibration record holds
    /// the number it ran with ([`CalibrateSettings::for_method`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<usize>,
    /// Records from before it ran without it.
    #[serde(default = "stall_carry_before_it")]
    pub stall_carry: bool,
    /// Records from before it ran without it.
    #[serde(default = "no_end_on_second_loss")]
    pub end_on_second_loss: bool,
    /// Records from before it ran without it.
    #[serde(default = "no_ties_by_membership")]
    pub ties_by_membership: bool,
    /// Off: left out of the record, so records and experiment steps from
    /// before it keep their identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub over_when_nearer: bool,
    pub retain_probe: usize,
    /// `None`: no cap. Left out of the record when unset, so records and
    /// experiment steps from before the cap keep their identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
}

impl Default for CalibrateSettings {
    fn default() -> Self {
        CalibrateSettings {
            lrs: vec![0.001, 0.003, 0.01, 0.03, 0.1],
            start: LadderStart::Own,
            walk: Walk::Continue,
            max_epochs: None,
            climb_after: 3.0,
            retain_budget: Some(RetainBudget::Full),
            rule: Rule::Accuracy,
            level: 0.05,
            max_utility_drop: None,
            guard_se: Some(GUARD_SE),
            patience: 2,
            stall: None,
            stall_carry: true,
            end_on_second_loss: true,
            ties_by_membership: true,
            over_when_nearer: false,
            retain_probe: 1000,
            max_cost: None,
        }
    }
}

/// `stall` of the methods whose own is not given: the walks of FT, RL and
/// SalUn in issue 35's matrix found better states in a leg's third epoch
/// without a better state (CIFAR-10 slice: SalUn at 10%, FT at 1%).
pub const STALL: usize = 3;

/// A method's own `stall`: AMUN's is 2. Its walks in issue 35's matrix
/// (8, three datasets) never found a better state after two epochs without
/// one, and the third epoch over all of D_R costs 0.15× the retrain on the
/// 8-epoch recipes (docs/CALIBRATION.md, "A shorter stall for AMUN").
pub fn own_stall(method: &str) -> usize {
    if method == "amun" { 2 } else { STALL }
}

/// The utility guard's allowance for noise, in standard errors of the
/// original's accuracy on the probe set. One, not the one-sided z of a
/// test (1.645 at 0.05): the guard bounds the loss a kept state shows, and
/// a state at the guard's edge shows about as much again on images the
/// calibration never saw. With z, Fashion-MNIST 10% (seed 0) kept states
/// that lost 2.8 (AMUN) and 2.0 (SalUn) held-out points inside a 2.9-point
/// guard and 3.8 and 4.6 points of the audit's test accuracy, beyond the
/// retrain's loss plus its noise (docs/CALIBRATION.md, "A guard at one
/// standard error").
pub const GUARD_SE: f64 = 1.0;

/// What a record from before `guard_se` ran: the one-sided z at the level.
fn guard_at_the_level() -> Option<f64> {
    None
}

/// What a record from before `end_on_second_loss` ran: a step down after
/// every loss of utility, to the smallest rate.
fn no_end_on_second_loss() -> bool {
    false
}

/// What a record from before `ties_by_membership` ran: the first of the
/// states the rule scored the same.
fn no_ties_by_membership() -> bool {
    false
}

/// What a record from before `stall_carry` ran: every leg counted anew.
fn stall_carry_before_it() -> bool {
    false
}

impl CalibrateSettings {
    /// The settings `method` calibrates with: a `stall` left unset becomes
    /// the method's own, so the record says what ran.
    pub fn for_method(&self, method: &str) -> CalibrateSettings {
        CalibrateSettings {
            stall: Some(self.stall.unwrap_or_else(|| own_stall(method))),
            ..self.clone()
        }
    }

    /// Validates the values (names the field at fault).
    pub fn check(&self) -> Result<()> {
        if self.lrs.is_empty() {
            return Err(Error::setting(
                "calibrate.lrs",
                "give at least one positive learning rate",
            ));
        }
        if let Some(l) = self.lrs.iter().find(|l| !(**l > 0.0 && l.is_finite())) {
            return Err(Error::setting(
                "calibrate.lrs",
                format!("{l} is not a positive learning rate: give only rates above 0"),
            ));
        }
        let lrs = &self.lrs;
        if let Some(l) = (1..lrs.len()).find_map(|i| lrs[..i].contains(&lrs[i]).then_some(lrs[i])) {
            return Err(Error::setting(
                "calibrate.lrs",
                format!("{l} is listed twice: give each rung once"),
            ));
        }
        if self.lrs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::setting(
                "calibrate.lrs",
                "list the ladder in increasing order",
            ));
        }
        if let Some(d) = self.max_utility_drop
            && !(d >= 0.0 && d.is_finite())
        {
            return Err(Error::setting(
                "calibrate.max_utility_drop",
                format!("must be a number of points ≥ 0, got {d}"),
            ));
        }
        if let Some(g) = self.guard_se
            && !(g >= 0.0 && g.is_finite())
        {
            return Err(Error::setting(
                "calibrate.guard_se",
                format!("must be a number of standard errors ≥ 0, got {g}"),
            ));
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(Error::setting(
                "calibrate.level",
                format!(
                    "must be a test level between 0 and 1 (e.g. 0.05), got {}",
                    self.level
                ),
            ));
        }
        if self.retain_probe == 0 {
            return Err(Error::setting(
                "calibrate.retain_probe",
                "must be at least 1",
            ));
        }
        if self.walk == Walk::Restart && self.max_epochs.is_some() {
            // It would be ignored: the restarting ladder's length is rungs
            // × the method's epochs.
            return Err(Error::setting(
                "calibrate.max_epochs",
                "only the continuing walk ({calibrate.walk=continue}) has an epoch budget; the restarting \
                 ladder runs each rung for the method's epochs",
            ));
        }
        if self.stall == Some(0) {
            return Err(Error::setting(
                "calibrate.stall",
                "must be at least 1 epoch",
            ));
        }
        if let Some(c) = self.max_cost {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::setting(
                    "calibrate.max_cost",
                    format!(
                        "must be a positive fraction of the retrain's cost (e.g. 0.3), got {c}"
                    ),
                ));
            }
            if self.walk == Walk::Restart {
                return Err(Error::setting(
                    "calibrate.max_cost",
                    "only the continuing walk ({calibrate.walk=continue}) has a cost cap",
                ));
            }
        }
        if self.max_epochs == Some(0) {
            return Err(Error::setting("calibrate.max_epochs", "must be at least 1"));
        }
        if !(self.climb_after > 0.0 && self.climb_after.is_finite()) {
            return Err(Error::setting(
                "calibrate.climb_after",
                format!(
                    "must be a positive number of epochs, got {}",
                    self.climb_after
                ),
            ));
        }
        Ok(())
    }
}

/// Calibration settings to replace; each one left unset keeps its default.
/// One type for the experiment's `[calibrate]` keys and `amun unlearn`'s
/// `--calibrate-*` flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrateOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lrs: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<LadderStart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<Walk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub climb_after: Option<f64>,
    /// `Some(None)`: the method's own.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_budget_or_method"
    )]
    pub retain_budget: Option<Option<RetainBudget>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_utility_drop: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_se: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_carry: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_on_second_loss: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ties_by_membership: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_when_nearer: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_probe: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
}

impl CalibrateOverrides {
    /// Whether nothing is replaced.
    pub fn is_empty(&self) -> bool {
        *self == CalibrateOverrides::default()
    }

    /// The defaults with every set field replaced, checked.
    pub fn settings(&self) -> Result<CalibrateSettings> {
        if self.guard_se.is_some() && self.max_utility_drop.is_some() {
            // A fixed guard replaces the data's: the noise term would do
            // nothing.
            return Err(Error::setting(
                "calibrate.guard_se",
                "max_utility_drop sets a fixed guard, which replaces the one guard_se sizes; \
                 give one of them",
            ));
        }
        let d = CalibrateSettings::default();
        let o = self.clone();
        let s = CalibrateSettings {
            lrs: o.lrs.unwrap_or(d.lrs),
            start: o.start.unwrap_or(d.start),
            walk: o.walk.unwrap_or(d.walk),
            max_epochs: o.max_epochs.or(d.max_epochs),
            climb_after: o.climb_after.unwrap_or(d.climb_after),
            retain_budget: o.retain_budget.unwrap_or(d.retain_budget),
            rule: o.rule.unwrap_or(d.rule),
            level: o.level.unwrap_or(d.level),
            max_utility_drop: o.max_utility_drop.or(d.max_utility_drop),
            guard_se: o.guard_se.or(d.guard_se),
            patience: o.patience.unwrap_or(d.patience),
            stall: o.stall.or(d.stall),
            stall_carry: o.stall_carry.unwrap_or(d.stall_carry),
            end_on_second_loss: o.end_on_second_loss.unwrap_or(d.end_on_second_loss),
            ties_by_membership: o.ties_by_membership.unwrap_or(d.ties_by_membership),
            over_when_nearer: o.over_when_nearer.unwrap_or(d.over_when_nearer),
            retain_probe: o.retain_probe.unwrap_or(d.retain_probe),
            max_cost: o.max_cost.or(d.max_cost),
        };
        s.check()?;
        Ok(s)
    }
}

impl CalibrateOverrides {
    /// Refuses a retain budget for a run without the retain set, whose
    /// calibration visits no retain images: it would have no effect.
    pub fn check_with_retain(&self, with_retain: bool) -> Result<()> {
        if !with_retain && self.retain_budget.is_some() {
            return Err(Error::setting(
                "calibrate.retain_budget",
                "a run without the retain set ({with_retain=false}) visits no retain images in \
                 calibration either, so it would have no effect; drop one of them",
            ));
        }
        Ok(())
    }
}

/// `retain_budget` as written: "method" (the method's own), "full" or a
/// multiple of the request.
mod budget_or_method {
    use super::RetainBudget;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Method(MethodWord),
        Budget(RetainBudget),
    }
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum MethodWord {
        Method,
    }

    pub fn serialize<S: Serializer>(v: &Option<RetainBudget>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => Repr::Budget(*b),
            None => Repr::Method(MethodWord::Method),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RetainBudget>, D::Error> {
        match Repr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "retain_budget: expected \"method\", \"full\" or a multiple > 0 of the request",
            )
        })? {
            Repr::Method(_) => Ok(None),
            Repr::Budget(b) => Ok(Some(b)),
        }
    }
}

mod opt_budget_or_method {
    use super::RetainBudget;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<Option<RetainBudget>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => super::budget_or_method::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<RetainBudget>>, D::Error> {
        super::budget_or_method::deserialize(d).map(Some)
    }
}

/// `--calibrate-retain-budget`'s value: `method` (the method's own),
/// `full`, or a multiple of the request.
///
/// ```
/// use amun::unlearn::{RetainBudget, parse_calibration_budget};
/// assert_eq!(parse_calibration_budget("method").unwrap(), None);
/// assert_eq!(parse_calibration_budget("4").unwrap(), Some(RetainBudget::Multiple(4.0)));
/// assert!(parse_calibration_budget("0").is_err());
/// ```
pub fn parse_calibration_budget(s: &str) -> Result<Option<RetainBudget>> {
    if s == "method" {
        return Ok(None);
    }
    s.parse::<RetainBudget>().map(Some).map_err(|_| {
        Error::setting(
            "calibrate.retain_budget",
            format!("'{s}': expected full, method or a multiple > 0 of the request"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_cap_must_be_a_positive_fraction_of_a_continuing_walk() {
        for bad in [0.0, -0.3, f64::NAN, f64::INFINITY] {
            let e = CalibrateSettings {
                max_cost: Some(bad),
                ..CalibrateSettings::default()
            }
            .check()
            .unwrap_err()
            .to_string();
            assert!(e.contains("calibrate.max_cost"), "{e}");
        }
        let e = CalibrateSettings {
            max_cost: Some(0.3),
            walk: Walk::Restart,
            ..CalibrateSettings::default()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("max_cost") && e.contains("continuing walk"),
            "{e}"
        );
    }

    /// hostile7 V2/V3: a repeated or non-positive rate was refused as
    /// "list in increasing order" / "give at least one positive rate",
    /// naming neither: each is named.
    #[test]
    fn a_repeated_or_non_positive_rate_of_the_ladder_is_named() {
        let check = |lrs: &[f64]| {
            CalibrateSettings {
                lrs: lrs.to_vec(),
                ..Default::default()
            }
            .check()
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            check(&[0.01, 0.01]),
            "calibrate.lrs: 0.01 is listed twice: give each rung once"
        );
        assert!(check(&[0.01, 0.1, 0.01]).contains("0.01 is listed twice"));
        assert!(check(&[0.0, 0.01]).contains("0 is not a positive learning rate"));
        assert!(check(&[0.1, 0.01]).contains("increasing order"));
    }

    /// The other methods keep 3 (their walks in the matrix found better
    /// states in a third epoch), and a `stall` given wins over the
    /// method's own; the record holds the number that ran.
    #[test]
    fn stall_is_the_methods_own_unless_given() {
        let d = CalibrateSettings::default();
        assert_eq!(d.for_method("ft").stall, Some(3));
        assert_eq!(d.for_method("salun").stall, Some(3));
        let given = CalibrateOverrides {
            stall: Some(3),
            ..Default::default()
        };
        let s = given.settings().unwrap().for_method("amun");
        assert_eq!(s.stall, Some(3));
        let v = serde_json::to_value(d.for_method("amun")).unwrap();
        assert_eq!(v["stall"], 2);
        let back: CalibrateSettings = serde_json::from_value(v).unwrap();
        assert_eq!(back.stall, Some(2));
    }

    /// A record from before `stall_carry` reads as what it ran (each leg
    /// counted anew); new settings carry.
    #[test]
    fn records_from_before_stall_carry_read_as_they_ran() {
        let mut v = serde_json::to_value(CalibrateSettings::default()).unwrap();
        assert_eq!(v["stall_carry"], true);
        v.as_object_mut().unwrap().remove("stall_carry");
        let old: CalibrateSettings = serde_json::from_value(v).unwrap();
        assert!(!old.stall_carry);
        let mut v = serde_json::to_value(CalibrateSettings::default()).unwrap();
        assert_eq!(v["end_on_second_loss"], true);
        v.as_object_mut().unwrap().remove("end_on_second_loss");
        let old: CalibrateSettings = serde_json::from_value(v).unwrap();
        assert!(!old.end_on_second_loss);
        let mut v = serde_json::to_value(CalibrateSettings::default()).unwrap();
        assert_eq!(v["ties_by_membership"], true);
        v.as_object_mut().unwrap().remove("ties_by_membership");
        let old: CalibrateSettings = serde_json::from_value(v).unwrap();
        assert!(!old.ties_by_membership);
        // Off, `over_when_nearer` is left out, so a record (and an
        // experiment step's identity) reads as before it; on, it is kept.
        let v = serde_json::to_value(CalibrateSettings::default()).unwrap();
        assert!(v.get("over_when_nearer").is_none(), "{v}");
        let on = CalibrateSettings {
            over_when_nearer: true,
            ..CalibrateSettings::default()
        };
        let v = serde_json::to_value(&on).unwrap();
        assert_eq!(v["over_when_nearer"], true);
        assert_eq!(serde_json::from_value::<CalibrateSettings>(v).unwrap(), on);
    }

    /// A record from before `guard_se` reads as what it ran (the one-sided
    /// z at the level); new settings guard at one standard error.
    #[test]
    fn records_from_before_guard_se_read_as_they_ran() {
        let mut v = serde_json::to_value(CalibrateSettings::default()).unwrap();
        assert_eq!(v["guard_se"], 1.0);
        v.as_object_mut().unwrap().remove("guard_se");
        let old: CalibrateSettings = serde_json::from_value(v).unwrap();
        assert_eq!(old.guard_se, None);
        let bad = CalibrateSettings {
            guard_se: Some(-1.0),
            ..Default::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("calibrate.guard_se")
        );
    }

    /// `guard_se` given with a fixed guard would do nothing: refused,
    /// naming both.
    #[test]
    fn a_guard_se_beside_a_fixed_guard_is_refused() {
        let both = CalibrateOverrides {
            guard_se: Some(1.5),
            max_utility_drop: Some(3.0),
            ..Default::default()
        };
        let e = both.settings().unwrap_err().to_string();
        assert!(
            e.contains("calibrate.guard_se") && e.contains("max_utility_drop"),
            "{e}"
        );
        let one = CalibrateOverrides {
            max_utility_drop: Some(3.0),
            ..Default::default()
        };
        assert_eq!(one.settings().unwrap().max_utility_drop, Some(3.0));
    }

    /// Settings that would do nothing, or nothing sensible, are named.
    #[test]
    fn walk_settings_that_do_nothing_are_refused() {
        let err = |c: CalibrateSettings| c.check().unwrap_err().to_string();
        let base = CalibrateSettings::default();
        assert!(base.check().is_ok());
        let e = err(CalibrateSettings {
            max_epochs: Some(0),
            ..base.clone()
        });
        assert!(e.contains("max_epochs"), "{e}");
        let e = err(CalibrateSettings {
            stall: Some(0),
            ..base.clone()
        });
        assert!(e.contains("calibrate.stall"), "{e}");
        let e = err(CalibrateSettings {
            walk: Walk::Restart,
            max_epochs: Some(10),
            ..base.clone()
        });
        assert!(
            e.contains("max_epochs") && e.contains("continuing walk"),
            "{e}"
        );
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let e = err(CalibrateSettings {
                climb_after: bad,
                ..base.clone()
            });
            assert!(e.contains("climb_after"), "{e}");
        }
        for bad in ["0", "-2", "inf", "NaN", "all", ""] {
            let e = parse_calibration_budget(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("method"),
                "{e}"
            );
        }
        assert_eq!(
            parse_calibration_budget("full").unwrap(),
            Some(RetainBudget::Full)
        );
        assert!("walk".parse::<Walk>().is_err());
    }
}
