//! The search that trains: it runs the method leg by leg (or rung by
//! rung), measures every epoch through an observer, records the states and
//! keeps the best one's weights, driving the machines of `walk`.
use super::super::{
    Control, EpochObserver, ForgetRequest, GivenOrOwn, Method, RunCtx, UnlearnLog, given_or_own,
};
use super::probes::Probes;
use super::record::{Candidate, Leg};
use super::settings::{CalibrateSettings, LadderStart, Rule, Walk};
use super::targets::{Targets, Verdict};
use super::walk::{
    CostCap, Keep, LegEnd, LegRun, RungRun, Step, Walker, better, carried_stall, extended,
    kept_over, nearest, next_rung,
};
use crate::error::Result;
use crate::model::Classifier;
use crate::progress::Progress;
use crate::seed::derive;
use crate::train::{Schedule, TrainOverrides};
use std::cell::RefCell;
use tch::Tensor;

/// Every state measured, the best one (which the walk goes back to) and
/// the one it keeps as its result, with their weights (`None`: the
/// original's).
pub(super) struct Book {
    pub(super) table: Vec<Candidate>,
    pub(super) best: Candidate,
    pub(super) best_state: Option<Weights>,
    pub(super) kept: Candidate,
    pub(super) kept_state: Option<Weights>,
    /// How [`kept_over`] chooses.
    keep: Keep,
}

pub(super) type Weights = Vec<(String, Tensor)>;

fn weights(now: &Classifier) -> Weights {
    now.named_tensors()
        .into_iter()
        .map(|(k, t)| (k, t.detach().copy()))
        .collect()
}

impl Book {
    pub(super) fn new(original: Candidate, keep: Keep) -> Book {
        Book {
            table: vec![original.clone()],
            best: original.clone(),
            best_state: None,
            kept: original,
            kept_state: None,
            keep,
        }
    }

    /// Adds `c` (the state of `now`), keeping it with its weights when it
    /// is the best so far, or the one to keep.
    fn record(&mut self, c: &Candidate, now: &Classifier) {
        self.table.push(c.clone());
        if better(c, &self.best) {
            self.best = c.clone();
            self.best_state = Some(weights(now));
        }
        if kept_over(c, &self.kept, &self.keep) {
            self.kept = c.clone();
            self.kept_state = if *c == self.best {
                self.best_state.as_ref().map(|w| {
                    w.iter()
                        .map(|(k, t)| (k.clone(), t.shallow_clone()))
                        .collect()
                })
            } else {
                Some(weights(now))
            };
        }
    }
}

/// What an observer of calibration's epochs shares: the probes, the fixed
/// targets, the book of states.
struct Watch<'w, 'a> {
    probes: &'w Probes<'a>,
    targets: &'w Targets,
    rule: Rule,
    book: &'w mut Book,
    progress: &'w dyn Progress,
    name: &'w str,
}

impl Watch<'_, '_> {
    /// Measures `now`, judges it as `at` says (lr, epoch, schedule, path),
    /// notes and records it.
    fn see(&mut self, at: Candidate, now: &Classifier) -> Candidate {
        let probe = self.probes.probe(now);
        let c = Candidate {
            lr: at.lr,
            epoch: at.epoch,
            schedule: at.schedule,
            path: at.path,
            ..self.targets.judge(self.rule, probe)
        };
        self.progress.note(&format!(
            "calibrate {}: {}: forget {:.1}% (target {:.1}) held-out {:.1}% retain {:.1}% \
             {} {:.1} → score {:.2}{}",
            self.name,
            c.label(),
            probe.forget_acc,
            self.targets.forget_target(),
            probe.heldout_acc,
            probe.retain_acc,
            probe.signal().name(),
            probe.membership_auc(),
            c.score,
            match (c.keeps_utility, c.membership_ok) {
                (true, true) => "",
                (false, _) => " (utility lost)",
                (true, false) => " (over-unlearned: membership AUC below 50 − band)",
            }
        ));
        self.book.record(&c, now);
        c
    }
}

/// Observes one leg of the continuing walk.
struct LegObserver<'w, 'a> {
    watch: Watch<'w, 'a>,
    run: LegRun,
    lr: f64,
    path: Vec<Leg>,
    done: usize,
    ran: usize,
    last: Option<Candidate>,
    end: LegEnd,
    /// Images the method has trained on so far in this leg (counted by
    /// [`Search::run`]) and at the last epoch's end.
    images: &'w std::cell::Cell<u64>,
    images_before: u64,
    cost: Option<CostCap>,
}

impl EpochObserver for LegObserver<'_, '_> {
    fn after_epoch(&mut self, epoch: usize, now: &Classifier) -> Result<Control> {
        self.ran += 1;
        let at = Candidate {
            lr: self.lr,
            epoch: self.done + epoch,
            schedule: Some(Schedule::Constant),
            path: extended(&self.path, self.lr, epoch),
            ..self
                .watch
                .targets
                .judge(self.watch.rule, self.watch.targets.original)
        };
        let c = self.watch.see(at, now);
        let mut end = self.run.after(epoch, &c, self.watch.targets);
        self.last = Some(c);
        if let Some(cost) = &mut self.cost {
            let seen = self.images.get();
            cost.epoch_done(seen - self.images_before);
            self.images_before = seen;
            if end.is_none() && !cost.has_room() {
                end = Some(LegEnd::Cost);
            }
        }
        Ok(match end {
            Some(e) => {
                self.end = e;
                Control::Stop
            }
            None => Control::Continue,
        })
    }
}

/// Observes one rung of the restarting ladder.
struct RungObserver<'w, 'a> {
    watch: Watch<'w, 'a>,
    run: RungRun,
    lr: f64,
    schedule: Option<Schedule>,
    ran: usize,
}

impl EpochObserver for RungObserver<'_, '_> {
    fn after_epoch(&mut self, epoch: usize, now: &Classifier) -> Result<Control> {
        self.ran += 1;
        let at = Candidate {
            lr: self.lr,
            epoch,
            schedule: self.schedule.clone(),
            ..self
                .watch
                .targets
                .judge(self.watch.rule, self.watch.targets.original)
        };
        let c = self.watch.see(at, now);
        Ok(self.run.after(&c, self.watch.targets))
    }
}

/// The search's state across legs or rungs.
pub(super) struct Search<'p, 'a> {
    pub(super) method: &'p dyn Method,
    pub(super) cal: &'p CalibrateSettings,
    pub(super) probes: &'p Probes<'a>,
    pub(super) targets: Targets,
    pub(super) book: Book,
    pub(super) logs: UnlearnLog,
    pub(super) epochs_run: usize,
    /// The cost cap's meter, when one applies.
    pub(super) cost: Option<CostCap>,
}

impl<'a> Search<'_, 'a> {
    fn watch<'w>(&'w mut self, progress: &'w dyn Progress) -> Watch<'w, 'a> {
        Watch {
            probes: self.probes,
            targets: &self.targets,
            rule: self.cal.rule,
            book: &mut self.book,
            progress,
            name: self.method.name(),
        }
    }

    /// Runs `method` on `model` with `observer` watching its epochs, and
    /// adds its log; `images`, when given, counts every image it trains on
    /// (the cost cap's meter).
    #[allow(clippy::too_many_arguments)]
    fn run(
        logs: &mut UnlearnLog,
        method: &dyn Method,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
        seed: u64,
        observer: &mut dyn EpochObserver,
        images: Option<&std::cell::Cell<u64>>,
    ) -> Result<()> {
        let count = |b: &crate::data::Batch| {
            if let Some(n) = images {
                n.set(n.get() + b.origin.len() as u64);
            }
            if let Some(f) = ctx.observe {
                f(b);
            }
        };
        let rctx = RunCtx {
            seed,
            progress: ctx.progress,
            original_recipe: ctx.original_recipe,
            observe: match images {
                Some(_) => Some(&count),
                None => ctx.observe,
            },
            on_epoch: Some(RefCell::new(observer)),
        };
        let log = method.unlearn(model, req, &rctx)?;
        logs.epochs.extend(log.epochs);
        for (k, v) in log.timing {
            *logs.timing.entry(k).or_insert(0.0) += v;
        }
        Ok(())
    }

    /// One rung of the restarting ladder: the method from `base` at `lr`
    /// (its schedule replaced by `schedule` when given), measuring every
    /// epoch. Returns the rung's best state, if it ran an epoch.
    fn rung(
        &mut self,
        lr: f64,
        schedule: Option<&Schedule>,
        base: &Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<Option<Candidate>> {
        let method = self.method.adjusted(&TrainOverrides {
            retain_budget: self.cal.retain_budget,
            ..TrainOverrides::rate(lr, schedule.cloned())
        })?;
        let mut m = base.try_clone()?;
        let patience = self.cal.patience;
        let mut logs = std::mem::take(&mut self.logs);
        let mut obs = RungObserver {
            watch: self.watch(ctx.progress),
            run: RungRun {
                patience,
                ..RungRun::default()
            },
            lr,
            schedule: schedule.cloned(),
            ran: 0,
        };
        Self::run(
            &mut logs,
            method.as_ref(),
            &mut m,
            req,
            ctx,
            ctx.seed,
            &mut obs,
            None,
        )?;
        let (ran, best) = (obs.ran, obs.run.best);
        self.logs = logs;
        self.epochs_run += ran;
        Ok(best)
    }

    /// Walks `ladder` from rung `start` ([`next_rung`]). Returns why it
    /// stopped.
    fn walk(
        &mut self,
        ladder: &[f64],
        start: usize,
        schedule: Option<&Schedule>,
        base: &Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<String> {
        let (mut i, mut dir) = (start, 0i32);
        loop {
            let v = match self.rung(ladder[i], schedule, base, req, ctx)? {
                Some(rb) => self.targets.verdict(&rb.probe),
                None => Verdict::Over,
            };
            match next_rung(ladder, i, dir, v) {
                Ok((n, d)) => (i, dir) = (n, d),
                Err(why) => return Ok(why),
            }
        }
    }

    /// Whether the best state so far is a fine-tuned one that still
    /// remembers the forget set better than unseen data.
    fn under_unlearned(&self) -> bool {
        let b = &self.book.best;
        b.epoch > 0 && self.targets.verdict(&b.probe) == Verdict::Under
    }

    /// One leg of the continuing walk at the walker's rung, on `model` in
    /// place, for at most `epochs`. Returns how it ended, its epochs, its
    /// last state and its epochs without a better state at the end.
    fn leg(
        &mut self,
        w: &Walker,
        epochs: usize,
        seed: u64,
        model: &mut Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<(LegEnd, usize, Option<Candidate>, usize)> {
        let lr = w.ladder[w.rung];
        let method = self.method.adjusted(&TrainOverrides {
            epochs: Some(epochs),
            retain_budget: self.cal.retain_budget,
            ..TrainOverrides::rate(lr, Some(Schedule::Constant))
        })?;
        let run = LegRun::new(w.diff, w.can_climb(), &self.book.best, self.cal)
            .after_stalled(w.stalled_for);
        let images = std::cell::Cell::new(0u64);
        let cost = self.cost.take();
        let mut logs = std::mem::take(&mut self.logs);
        let mut obs = LegObserver {
            watch: self.watch(ctx.progress),
            run,
            lr,
            path: w.path.clone(),
            done: w.done,
            ran: 0,
            last: None,
            end: LegEnd::Budget,
            images: &images,
            images_before: 0,
            cost,
        };
        let counting = obs.cost.is_some().then_some(&images);
        Self::run(
            &mut logs,
            method.as_ref(),
            model,
            req,
            ctx,
            seed,
            &mut obs,
            counting,
        )?;
        let stalled = obs.run.stalled_for();
        let (end, ran, last, cost) = (obs.end, obs.ran, obs.last, obs.cost);
        self.cost = cost;
        self.logs = logs;
        self.epochs_run += ran;
        Ok((end, ran, last, stalled))
    }

    /// The continuing walk ([`Walk::Continue`]) from rung `start` over at
    /// most `budget` epochs; `model` holds the original and ends in the
    /// walk's last state. Returns why it stopped.
    #[allow(clippy::too_many_arguments)]
    fn climb(
        &mut self,
        ladder: &[f64],
        start: usize,
        budget: usize,
        model: &mut Classifier,
        base: &Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<String> {
        let mut w = Walker::new(
            ladder,
            start,
            self.targets.diff(&self.targets.original),
            self.cal,
        );
        for k in 0.. {
            if self.epochs_run >= budget {
                return Ok(format!("the {budget} epochs of the budget ran out"));
            }
            if self.cost.as_ref().is_some_and(|c| !c.has_room()) {
                return Ok("another epoch would pass the cost cap (max_cost)".to_string());
            }
            let seed = derive(ctx.seed, "calibrate-leg", k);
            let (end, ran, last, stalled) =
                self.leg(&w, budget - self.epochs_run, seed, model, req, ctx)?;
            w.stalled_for = carried_stall(end, stalled, self.cal);
            match w.after_leg(end, ran, last.as_ref(), &self.book.best, &self.targets) {
                Step::Go => {}
                Step::BackToBest => match &self.book.best_state {
                    Some(state) if self.book.best.epoch > 0 => {
                        let map = state.iter().map(|(k, t)| (k.clone(), t.copy())).collect();
                        model.load_named(map, std::path::Path::new("calibration"))?;
                    }
                    _ => model.copy_from(base)?,
                },
                Step::Stop(why) => return Ok(why),
            }
        }
        unreachable!("the walk returns from its loop")
    }
}

/// The meter for `cal.max_cost`, when it is set and the model records the
/// recipe that prices its retrain: the recipe's epochs over D_R (the
/// training split without the forget set). The adversarial set counts as
/// spent: it is this request's, made for this run or handed in.
pub(super) fn cost_cap(
    cal: &CalibrateSettings,
    method: &dyn Method,
    req: &ForgetRequest<'_>,
    ctx: &RunCtx<'_>,
) -> Option<CostCap> {
    let fraction = cal.max_cost?;
    let recipe = ctx.original_recipe?;
    let retain = req.train.len().saturating_sub(req.forget.len()) as u64;
    let search = match (method.adversarial(), req.adv) {
        (Some(_), Some(adv)) => adv.total_steps(),
        _ => 0,
    };
    Some(CostCap::new(
        fraction,
        recipe.epochs as u64 * retain,
        search,
    ))
}

/// The rung the ladder starts at (`cal.start`), and how the reason says
/// so.
fn ladder_start(cal: &CalibrateSettings, own_lr: f64) -> (usize, String) {
    let start_rung = match cal.start {
        LadderStart::Own => nearest(&cal.lrs, own_lr),
        LadderStart::Lowest => 0,
    };
    let from = match cal.start {
        LadderStart::Own => format!(
            "from lr {:e} (nearest the method's own)",
            cal.lrs[start_rung]
        ),
        LadderStart::Lowest => "from the lowest rung".to_string(),
    };
    (start_rung, from)
}

impl Search<'_, '_> {
    /// Walks the ladder as `cal.walk` says, from the rung `cal.start`
    /// names. Returns why it stopped and its worst case in epochs.
    pub(super) fn run_ladder(
        &mut self,
        ft: &super::super::FineTune,
        budget: usize,
        model: &mut Classifier,
        base: &Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
    ) -> Result<(String, usize)> {
        let cal = self.cal;
        let (start_rung, from) = ladder_start(cal, ft.lr);
        // Every leg and rung runs the method anew: SalUn's mask must be
        // the original's, computed once, not each leg's starting state's.
        let mask = given_or_own(
            self.method.saliency(),
            req.mask,
            base,
            || req.train.select(req.forget),
            ft.batch_size,
            &mut self.logs,
        )?;
        let req = &ForgetRequest {
            mask: mask.as_ref().map(GivenOrOwn::mask),
            ..*req
        };
        match cal.walk {
            Walk::Continue => {
                let w = self.climb(&cal.lrs, start_rung, budget, model, base, req, ctx)?;
                Ok((format!("{from}, one continuing walk: {w}"), budget))
            }
            Walk::Restart => self.restart(
                &cal.lrs,
                start_rung,
                &ft.schedule,
                ft.epochs,
                base,
                req,
                ctx,
                from,
            ),
        }
    }
}

impl Search<'_, '_> {
    /// The restarting ladder ([`Walk::Restart`]), with its constant-rate
    /// pass when a decaying schedule under-unlearned. Returns why it
    /// stopped and its worst case in epochs.
    #[allow(clippy::too_many_arguments)]
    fn restart(
        &mut self,
        ladder: &[f64],
        start: usize,
        schedule: &Schedule,
        method_epochs: usize,
        base: &Classifier,
        req: &ForgetRequest<'_>,
        ctx: &RunCtx<'_>,
        from: String,
    ) -> Result<(String, usize)> {
        let why = self.walk(ladder, start, None, base, req, ctx)?;
        let mut why = format!("{from}: {why}");
        let decays =
            schedule.lr(1.0, method_epochs.saturating_sub(1), 0, 1, method_epochs) < 1.0 - 1e-12;
        let mut worst_case = ladder.len() * method_epochs;
        if decays && self.under_unlearned() {
            // From the rung below the best one: a constant rate does several
            // times the work of the same rate decayed, so the best state's
            // own rate may now overshoot.
            let at = self.book.best.lr;
            let k = ladder.iter().position(|&l| l >= at).unwrap_or(0);
            let rungs: Vec<f64> = ladder[k.saturating_sub(1)..].to_vec();
            worst_case += rungs.len() * method_epochs;
            why.push_str(&format!(
                "; the best state still remembered the forget set, so the ladder ran again from \
                 lr {:e} with a constant rate (the schedule's decay cut the work short)",
                rungs[0]
            ));
            let w = self.walk(&rungs, 0, Some(&Schedule::Constant), base, req, ctx)?;
            why.push_str(&format!(": {w}"));
        }
        Ok((why, worst_case))
    }
}
