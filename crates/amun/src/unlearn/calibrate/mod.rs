//! Retrain-free calibration: how hard to unlearn, decided without a
//! retrained model. A user never has one; what they can have is data the
//! model never trained on (a held-out split). An exactly retrained model
//! treats the forget set like such unseen data: the same accuracy, the same
//! loss distribution (a membership test cannot tell them apart), and it
//! keeps the original's accuracy on unseen data. Calibration runs the method
//! over a ladder of learning rates, measures those quantities on the forget
//! set and the held-out set after every epoch, and keeps the best state.
//!
//! It is two-sided: a forget set that became *less* familiar than unseen
//! data (over-unlearning: forget accuracy below held-out accuracy, losses
//! above unseen data's) scores as badly as one still memorised.

mod probes;
mod record;
mod search;
mod settings;
mod targets;
mod walk;

pub use probes::{Probes, RmiaSignal};
pub use record::{Calibration, Candidate, Change, Leg, Membership, Probe};
pub use settings::{
    CalibrateOverrides, CalibrateSettings, LadderStart, Rule, Walk, parse_calibration_budget,
};
pub use targets::{
    Sizes, Targets, Verdict, accuracy_noise, auc_band, auc_se, min_heldout, score, utility_drop,
    z_two_sided,
};
use walk::Keep;
pub use walk::{BatchCap, CapOrigin, CostCap};

use super::{ForgetRequest, Method, RunCtx, UnlearnLog};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::model::Classifier;
use search::{Book, Search, cost_cap};
use std::time::Instant;
use tch::Tensor;
#[cfg(doc)]
use walk::{LegRun, RungRun, Walker, next_rung};

/// The original model measured once, before any epoch: the targets every
/// state is judged against, and whether the original is kept.
pub struct Opening<'a> {
    probes: Probes<'a>,
    pub original: Probe,
    pub sizes: Sizes,
    pub targets: Targets,
    started: Instant,
}

impl Opening<'_> {
    /// Whether the original already passes every test at the level: it is
    /// kept with no epoch run, so the method needs none of its preparation
    /// either (AMUN's adversarial search, SalUn's saliency mask).
    pub fn keeps_original(&self) -> bool {
        self.targets.verdict(&self.original) == Verdict::Reached
    }
}

/// Checks `cal` against `method` and `heldout`, and measures the original
/// (`model`) for `req` once: the first half of [`calibrate`], which needs
/// nothing of `req` but its forget and retain indices (not its adversarial
/// set), so that a caller can skip the method's preparation when
/// [`Opening::keeps_original`]. With `rmia` (reference models of the
/// model's data) the membership signal is RMIA's, else the loss-based one.
pub fn open<'a>(
    method: &dyn Method,
    cal: &CalibrateSettings,
    model: &Classifier,
    req: &ForgetRequest<'_>,
    heldout: &'a Split,
    rmia: Option<RmiaSignal<'_>>,
    ctx: &RunCtx<'_>,
) -> Result<Opening<'a>> {
    cal.check()?;
    if method.finetune().is_none() {
        return Err(Error::invalid(
            method.name(),
            "has no fine-tuning, so there is no learning rate to calibrate",
        ));
    }
    if heldout.is_empty() {
        return Err(Error::invalid("holdout", "the held-out set is empty"));
    }
    let started = Instant::now();
    let probes = Probes::new(req, heldout, cal.retain_probe, ctx.seed);
    let probes = match rmia {
        Some(r) => probes.with_rmia(req, r)?,
        None => probes,
    };
    let original = probes.probe(model);
    let sizes = Sizes {
        forget: probes.forget.len(),
        heldout: heldout.len(),
        retain: probes.retain_len(),
        train: req.train.len(),
    };
    Ok(Opening {
        probes,
        original,
        sizes,
        targets: Targets::new(
            original,
            sizes,
            cal.level,
            cal.guard_se,
            cal.max_utility_drop,
        ),
        started,
    })
}

/// Runs `method` (whose learning rate the ladder replaces) on `model` for
/// `req`, choosing the learning rate and the stopping epoch by `cal.rule`
/// against `heldout`, a split the model never trained on, with the
/// loss-based membership signal: [`open`], then [`calibrate_from`].
pub fn calibrate(
    method: &dyn Method,
    cal: &CalibrateSettings,
    model: &mut Classifier,
    req: &ForgetRequest<'_>,
    heldout: &Split,
    ctx: &RunCtx<'_>,
) -> Result<(UnlearnLog, Calibration)> {
    let opening = open(method, cal, model, req, heldout, None, ctx)?;
    calibrate_from(opening, method, cal, model, req, ctx)
}

/// Calibration from the original measured by [`open`] (of the same
/// `method`, `cal`, `model` and `req`'s indices). `model` ends in
/// the best state measured (possibly the original, if no state improved on
/// it).
///
/// The targets are fixed before the first epoch from the original model
/// measured once ([`Targets`]). When the original already passes the tests
/// (forget accuracy within the noise of its held-out accuracy, loss-AUC
/// within the null band of 50, at `cal.level`), it is kept and no epoch
/// runs: not detectably memorised at this sample size.
///
/// Otherwise `cal.walk` ([`Walk`]) walks the ladder. The continuing walk
/// (the default) is one trajectory at constant rates, at most
/// `cal.max_epochs` epochs in all ([`Walker`], [`LegRun`]). The restarting
/// ladder runs the method from the original once per rung ([`RungRun`],
/// [`next_rung`]); when it ends with its best state still remembering the
/// forget set and the method's schedule decays the rate within its run, it
/// runs again at a constant rate from the rung below that state's rate
/// upwards. The original stays a candidate, chosen when no state beats it.
pub fn calibrate_from(
    opening: Opening<'_>,
    method: &dyn Method,
    cal: &CalibrateSettings,
    model: &mut Classifier,
    req: &ForgetRequest<'_>,
    ctx: &RunCtx<'_>,
) -> Result<(UnlearnLog, Calibration)> {
    let resolved = cal.for_method(method.name());
    let cal = &resolved;
    let ft = method.finetune().ok_or_else(|| {
        Error::invalid(
            method.name(),
            "has no fine-tuning, so there is no learning rate to calibrate",
        )
    })?;
    let kept = opening.keeps_original();
    let Opening {
        probes,
        original,
        sizes,
        targets,
        started,
    } = opening;
    let base = model.try_clone()?;
    let keep = keep_rule(cal, &targets, &original);
    let mut search = Search {
        method,
        cal,
        probes: &probes,
        targets,
        book: Book::new(targets.judge(cal.rule, original), keep),
        logs: UnlearnLog::default(),
        epochs_run: 0,
        cost: cost_cap(cal, method, req, ctx),
    };
    let budget = cal.max_epochs.unwrap_or(2 * ft.epochs);
    let (mut why, worst_case) = if kept {
        kept_before_any_epoch(cal, budget, ft.epochs)
    } else {
        search.run_ladder(ft, budget, model, &base, req, ctx)?
    };
    let Search {
        book,
        mut logs,
        epochs_run,
        cost,
        ..
    } = search;
    note_cost(&mut why, cost.as_ref(), kept, cal, ctx);
    let Book {
        kept: chosen,
        kept_state,
        table,
        ..
    } = book;
    note_choice(&mut why, &table, &chosen, &original, &targets, &keep);
    restore_chosen(model, &base, kept_state, &chosen, epochs_run, &mut why)?;
    let cal_out = Calibration {
        settings: cal.clone(),
        verdict: targets.verdict_text(&chosen),
        remembers: targets.verdict(&chosen.probe) == Verdict::Under,
        changes: targets.changes(&chosen.probe),
        chosen,
        table,
        epochs_run,
        epochs_worst_case: worst_case,
        seconds: started.elapsed().as_secs_f64(),
        noise: targets.noise,
        accuracy_band: targets.accuracy_band(),
        allowed_drop: targets.heldout_drop,
        retain_drop: targets.retain_drop,
        auc_band: targets.auc_band(),
        signal: original.signal(),
        heldout_size: sizes.heldout,
        forget_size: sizes.forget,
        before: Some(original),
        cost: cost.filter(|_| !kept),
        why,
    };
    logs.timing.insert("calibration".into(), cal_out.seconds);
    Ok((logs, cal_out))
}

/// Why the original is kept, and the walk's worst case in epochs that
/// keeping it saved: decided before any epoch, it costs nothing.
fn kept_before_any_epoch(
    cal: &CalibrateSettings,
    budget: usize,
    method_epochs: usize,
) -> (String, usize) {
    let walk_worst = match cal.walk {
        Walk::Continue => budget,
        Walk::Restart => cal.lrs.len() * method_epochs,
    };
    (
        "the original passed every test before the first epoch and is kept: no epoch ran, \
         nor the method's preparation (adversarial search, saliency mask)"
            .to_string(),
        walk_worst,
    )
}

/// What the walk cost against the retrain, or why the cost cap does not
/// apply.
fn note_cost(
    why: &mut String,
    cost: Option<&CostCap>,
    kept: bool,
    cal: &CalibrateSettings,
    ctx: &RunCtx<'_>,
) {
    match cost {
        Some(c) if !kept => why.push_str(&format!(
            "; it cost {:.2}× the same-recipe retrain ({} of {} image-steps, cap {}×)",
            c.spent_fraction(),
            c.spent,
            c.retrain_image_steps,
            c.fraction
        )),
        None if cal.max_cost.is_some() && ctx.original_recipe.is_none() => why.push_str(
            "; max_cost does not apply: the model records no training recipe to price a retrain",
        ),
        _ => {}
    }
}

/// How the kept state is chosen: the settings' tie margin and, with
/// `over_when_nearer`, how near chance an over-unlearned state must lie
/// (the original's distance from 50 less the band; none when the original
/// is within the band).
fn keep_rule(cal: &CalibrateSettings, targets: &Targets, original: &Probe) -> Keep {
    let within = (original.membership_auc() - 50.0).abs() - targets.auc_band();
    Keep {
        tie_margin: cal.ties_by_membership.then_some(targets.auc_se),
        over_within: (cal.over_when_nearer && within > 0.0).then_some(within),
    }
}

/// The states not chosen for over-unlearning, and a choice outside the
/// bands.
fn note_choice(
    why: &mut String,
    table: &[Candidate],
    chosen: &Candidate,
    original: &Probe,
    targets: &Targets,
    keep: &Keep,
) {
    let name = original.signal().name();
    let refused = table
        .iter()
        .filter(|c| !c.membership_ok && *c != chosen)
        .count();
    if refused > 0 {
        why.push_str(&format!(
            "; {refused} state(s) over-unlearned by membership ({name} below 50 − {:.1}) were not \
             chosen",
            targets.auc_band()
        ));
    }
    if !chosen.membership_ok && keep.admits_over(chosen) {
        why.push_str(&format!(
            "; the kept state is over-unlearned by membership ({name} {:.1}), nearer chance than \
             the original's {:.1} by more than the band ({:.1}): over_when_nearer",
            chosen.probe.membership_auc(),
            original.membership_auc(),
            targets.auc_band()
        ));
    } else if !chosen.admissible() {
        why.push_str(
            "; no state kept both utility and membership within their bands: the closest is \
             kept, and is not calibrated",
        );
    }
}

/// Leaves `model` in the chosen state: a fine-tuned one's weights, or the
/// original's.
fn restore_chosen(
    model: &mut Classifier,
    base: &Classifier,
    kept_state: Option<Vec<(String, Tensor)>>,
    chosen: &Candidate,
    epochs_run: usize,
    why: &mut String,
) -> Result<()> {
    match kept_state {
        Some(state) if chosen.epoch > 0 => {
            let map = state.into_iter().collect();
            model.load_named(map, std::path::Path::new("calibration"))?;
        }
        _ => {
            // The continuing walk ran on `model` itself.
            model.copy_from(base)?;
            if epochs_run > 0 {
                why.push_str("; no fine-tuned state beat the original model, which is kept");
            }
        }
    }
    Ok(())
}

/// What the tests of the folder's files judge: probes, sizes and targets.
#[cfg(test)]
mod fixtures {
    use super::*;

    pub(super) fn probe(f: f64, h: f64, r: f64, auc: f64) -> Probe {
        Probe {
            forget_acc: f,
            heldout_acc: h,
            retain_acc: r,
            loss_auc: auc,
            confidence_ks: 0.0,
            rmia_auc: None,
        }
    }

    /// [`probe`] measured with reference models: RMIA AUC `rmia`.
    pub(super) fn with_rmia(p: Probe, rmia: f64) -> Probe {
        Probe {
            rmia_auc: Some(rmia),
            ..p
        }
    }

    pub(super) const SIZES: Sizes = Sizes {
        forget: 600,
        heldout: 500,
        retain: 1000,
        train: 6000,
    };

    pub(super) fn targets(original: Probe) -> Targets {
        Targets::new(original, SIZES, 0.05, Some(super::settings::GUARD_SE), None)
    }
}
