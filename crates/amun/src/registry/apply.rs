//! Applying the pending requests as one batch: the head version, the
//! requests pending when the apply starts (a snapshot: what is added
//! meanwhile waits for the next apply), one unlearning run (calibrated by
//! default, each request in turn when several are pending), the audit,
//! and one transaction that makes the result a version.
use super::audit::{VersionAudit, audit_version};
use super::db::{self, sql};
use super::kinds::{Committer, How, VersionKind};
use super::writer::{Writer, head_in, load_checked_data};
use super::{
    CalibrationRecord, JsonText, Registry, RequestRow, VersionRow, VersionSettings,
    insert_absorption, insert_version,
};
use crate::data::{ForgetSet, HeldOut};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::seed::derive;
use crate::train::TrainOverrides;
use crate::unlearn::{
    BatchCap, BatchRun, CalibrateSettings, CapOrigin, MethodSpec, RunSettings, Walk,
};
use std::path::{Path, PathBuf};

/// How to apply.
pub struct ApplySpec {
    pub method: MethodSpec,
    /// Replaces the method's training settings (rate, epochs, schedule).
    pub overrides: TrainOverrides,
    /// Retrain-free calibration (the registry's held-out test images);
    /// `None` runs the method at its settings.
    pub calibrate: Option<CalibrateSettings>,
    pub with_retain: bool,
    /// AMUN-A: a fresh adversarial set per request.
    pub adaptive: bool,
    /// The calibration's cost cap for the whole batch.
    pub cost_cap: ApplyCap,
    pub device: tch::Device,
    pub data_dir: PathBuf,
}

/// The cost cap of a calibrated apply, as a fraction of the exact retrain
/// the batch replaces (the root's recipe without every sample forgotten
/// after it; the adversarial search counts).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ApplyCap {
    /// [`DEFAULT_APPLY_CAP`]: an apply never costs more than the exact
    /// retrain it stands in for (`amun registry retrain`). Only where that
    /// retrain is priced: the continuing walk, on a root that records its
    /// training recipe; otherwise no cap, said on the progress. A
    /// `calibrate.max_cost` in the calibration settings is a cap given.
    #[default]
    Default,
    /// This fraction (`--calibrate-max-cost F`).
    Given(f64),
    /// No cap (`--calibrate-max-cost none`).
    Off,
}

/// The default cost cap of a calibrated apply, × the exact retrain the
/// batch replaces: on Fashion-MNIST and MNIST at 10% an uncapped
/// calibrated AMUN walk cost 1.2–1.6× that retrain (docs/CALIBRATION.md).
pub const DEFAULT_APPLY_CAP: f64 = 1.0;

impl std::str::FromStr for ApplyCap {
    type Err = Error;
    /// `none`, or a fraction (checked with the calibration settings).
    fn from_str(s: &str) -> Result<ApplyCap> {
        if s == "none" {
            return Ok(ApplyCap::Off);
        }
        match s.parse::<f64>() {
            Ok(f) => Ok(ApplyCap::Given(f)),
            Err(_) => Err(Error::setting(
                "calibrate.max_cost",
                format!(
                    "'{s}': expected a fraction of the exact retrain's cost (e.g. 0.5) or none"
                ),
            )),
        }
    }
}

impl ApplySpec {
    /// The calibration settings with the cap asked for (`cost_cap`, or the
    /// settings' own `max_cost` as a given one) checked; `None` without
    /// calibration. Checked before anything is opened.
    fn checked_calibration(&self) -> Result<Option<(CalibrateSettings, ApplyCap)>> {
        let Some(cal) = &self.calibrate else {
            return match self.cost_cap {
                ApplyCap::Default => Ok(None),
                _ => Err(Error::setting(
                    "calibrate.max_cost",
                    "a cost cap is calibration's: this apply does not calibrate",
                )),
            };
        };
        let cap = match (self.cost_cap, cal.max_cost) {
            (c, None) => c,
            (ApplyCap::Default, Some(f)) => ApplyCap::Given(f),
            (c, Some(f)) => {
                return Err(Error::setting(
                    "calibrate.max_cost",
                    format!(
                        "{f} in the calibration settings and {c:?} as the apply's cap: give one"
                    ),
                ));
            }
        };
        let mut c = cal.clone();
        c.max_cost = match cap {
            ApplyCap::Given(f) => Some(f),
            _ => None,
        };
        c.check()?;
        Ok(Some((c, cap)))
    }
}

/// The batch's cap: `asked` resolved against the walk and the root's recipe
/// (`priced`: the root records one). The default applies only where the
/// retrain it is a fraction of is priced, which a progress note says.
fn resolve_cap(
    cal: &CalibrateSettings,
    asked: ApplyCap,
    priced: bool,
    progress: &dyn Progress,
) -> Option<BatchCap> {
    match asked {
        ApplyCap::Given(fraction) => Some(BatchCap {
            fraction,
            origin: CapOrigin::Given,
        }),
        ApplyCap::Off => None,
        ApplyCap::Default if cal.walk == Walk::Restart => {
            progress.note(
                "no default cost cap: the restarting walk (calibrate.walk = restart) has no cost \
                 cap; it may cost more than the exact retrain (`amun registry retrain`)",
            );
            None
        }
        ApplyCap::Default if !priced => {
            progress.note(
                "no default cost cap: the registry's root records no training recipe, so no \
                 exact retrain prices one",
            );
            None
        }
        ApplyCap::Default => Some(BatchCap {
            fraction: DEFAULT_APPLY_CAP,
            origin: CapOrigin::Default,
        }),
    }
}

impl ApplySpec {
    /// The method with its overrides, checked: what an apply refuses is
    /// refused before anything is opened or loaded, pending requests or
    /// not.
    pub fn checked_method(&self) -> Result<MethodSpec> {
        let m = self.method.method();
        if m.name() == "retrain" {
            return Err(Error::invalid(
                "method",
                "retrain: apply unlearns the pending requests from the head version; the exact \
                 retrain without every forgotten sample is `amun registry retrain` (a new root, \
                 `--force` when the policy is not met)",
            ));
        }
        crate::unlearn::check_run(m, self.with_retain, self.adaptive, false)?;
        if self.overrides.is_empty() {
            Ok(self.method.clone())
        } else {
            self.method.adjusted(&self.overrides)
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// The new version (or the head, when every request was covered), its
    /// records shown as objects ([`VersionRow::to_output`]).
    #[serde(serialize_with = "VersionRow::serialize_output")]
    pub version: VersionRow,
    pub new_version: bool,
    /// Requests unlearned by the run, in order.
    pub unlearned: Vec<i64>,
    /// Requests whose every sample was already forgotten.
    pub covered: Vec<i64>,
    /// Accuracy (%) on the batch's forget set, the retain set and the test
    /// split, before and after.
    pub before: [f64; 3],
    pub after: [f64; 3],
    pub audit: Option<VersionAudit>,
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// Why the exact retrain is now due, if it is.
    pub retrain_due: Option<String>,
    /// Where the files of a version the database lacks were moved before
    /// the apply (warned about on the progress too).
    pub set_aside: Option<String>,
}

/// Applies the pending requests of the registry in `dir` as one batch.
/// `Ok(None)`: nothing was pending.
pub fn apply(dir: &Path, spec: &ApplySpec, progress: &dyn Progress) -> Result<Option<Applied>> {
    let method = spec.checked_method()?;
    let calibration = spec.checked_calibration()?;
    let mut w = Writer::open(dir, "apply", "applied", progress)?;
    let reg = &w.reg;
    let head = reg.head()?;
    let pending = reg.pending()?;
    if pending.is_empty() {
        return Ok(None);
    }
    let info = reg.info()?;
    let forgotten_before = reg.forgotten(head.id)?;
    let Batch {
        gone,
        sets,
        covered,
    } = batch(reg, &pending, &forgotten_before)?;
    if sets.is_empty() {
        return absorb_covered(&mut w, head, covered, progress).map(Some);
    }
    let data = load_checked_data(reg, &spec.data_dir, progress)?;
    let (model, parent_sc) = reg.load_version(&head, spec.device)?;
    let holdout = info.holdout_test as usize;
    let priced = crate::train::recipe_of(&reg.root_sidecar()?)?.is_some();
    let cap =
        (calibration.as_ref()).and_then(|(c, asked)| resolve_cap(c, *asked, priced, progress));
    // A registry with references calibrates on the audit's RMIA.
    let run = RunSettings {
        with_retain: spec.with_retain,
        adaptive: spec.adaptive,
        calibrate: calibration.map(|(c, _)| {
            let c = batch_cost_cap(&c, cap, info.train_size, gone.len(), sets.len(), progress);
            (c, HeldOut::LastTest(holdout))
        }),
        refs: info.refs.as_ref().map(PathBuf::from),
        batch: BatchRun {
            // The batch is refused at a request calibration cannot forget.
            stop_when_remembered: true,
            cap,
        },
        ..RunSettings::new(spec.device, &spec.data_dir)
    };
    let requests = request_sets(reg, &sets)?;
    let mut prepared = run.prepare(model, &reg.root_sidecar()?, &data, requests, &[])?;
    let new_id = head.id + 1;
    let seed = derive(info.seed as u64, "apply", new_id as u64);
    note_applying(progress, &sets, head.id, &method, spec.calibrate.is_some());
    let done = prepared.run(
        &run,
        method.method(),
        &parent_sc,
        seed,
        &forgotten_before,
        progress,
    )?;
    refuse_what_is_still_remembered(&sets, &done.logs, cap)?;
    let (model, data) = (&prepared.model, &prepared.data);
    let audit = audit_version(
        model,
        data,
        &gone,
        holdout,
        prepared.refs.as_ref(),
        derive(info.seed as u64, "registry-audit", 0),
    )?;
    let staged = w.stage(model, &done.sidecar, new_id)?;
    let (weights, weights_sha256, sidecar_sha256) = w.place(&staged, new_id)?;
    let calibration = calibration_records(&sets, &done.logs);
    let row = VersionRow {
        id: new_id,
        parent: Some(head.id),
        kind: VersionKind::Unlearned,
        created: db::now_utc(),
        weights,
        weights_sha256,
        sidecar_sha256,
        method: Some(method.name().into()),
        settings: Some(JsonText::sorted(&VersionSettings::Method(
            method.method().settings(),
        ))),
        calibration: (!calibration.is_empty()).then(|| JsonText::sorted(&calibration)),
        audit: JsonText::new(&audit),
        forgotten: gone.len() as i64,
        forgotten_sha256: super::indices_sha256(&info, &gone),
        retrain: None,
        seed: seed as i64,
        seconds: done.seconds,
    };
    let unlearned: Vec<i64> = sets.iter().map(|(i, _)| *i).collect();
    record(
        &mut w, head.id, &pending, &row, &unlearned, &covered, progress,
    )?;
    let reg = &w.reg;
    let cert = super::writer::certify_committed(reg, new_id)?;
    Ok(Some(Applied {
        version: row,
        new_version: true,
        unlearned,
        covered,
        before: done.before,
        after: done.after,
        audit: Some(audit),
        certificate: Some(cert),
        retrain_due: reg.retrain_due()?,
        set_aside: w.set_aside.clone(),
    }))
}

/// The calibration settings of an apply of `requests` requests, after
/// which `gone` of the `train` training samples are forgotten, with its
/// cost cap (`max_cost`) holding for the whole batch: that fraction of the
/// exact retrain the batch replaces (the root's recipe without the `gone`
/// samples). Calibration prices each request against a retrain without
/// that request alone, never more than the whole training split's, so each
/// request's walk is capped at an equal share: the fraction times the
/// batch's retrain over (requests × the whole split's retrain). The
/// requests together then spend no more than the batch's cap.
fn batch_cost_cap(
    cal: &CalibrateSettings,
    cap: Option<BatchCap>,
    train: i64,
    gone: usize,
    requests: usize,
    progress: &dyn Progress,
) -> CalibrateSettings {
    let mut c = cal.clone();
    c.max_cost = None;
    if let Some(BatchCap {
        fraction: f,
        origin,
    }) = cap
    {
        let train = train.max(1) as f64;
        let batch = (train - gone as f64).max(1.0);
        let share = f * batch / (requests.max(1) as f64 * train);
        let from = match origin {
            CapOrigin::Default => " (the default: never more than that retrain)",
            CapOrigin::Given => "",
        };
        progress.note(&format!(
            "calibration cost cap: {f} × the exact retrain this batch replaces (without its \
             {gone} forgotten sample(s)){from}, shared by {requests} request(s): each request's \
             walk may cost {} × its own retrain",
            crate::unlearn::share_text(share)
        ));
        c.max_cost = Some(share);
    }
    c
}

/// A version that still remembers a request deletes nothing: calibration
/// keeps the original (or an early state) when every state that forgets
/// loses utility, and committing it would mark the request absorbed.
/// Nothing is committed; the requests stay pending.
fn refuse_what_is_still_remembered(
    sets: &[(i64, Vec<i64>)],
    logs: &[crate::unlearn::UnlearnLog],
    cap: Option<BatchCap>,
) -> Result<()> {
    for ((id, _), log) in sets.iter().zip(logs) {
        if let Some(c) = log.calibration.as_ref().filter(|c| c.remembers) {
            // The run stopped here (`BatchRun::stop_when_remembered`).
            let rest: Vec<String> = (sets[logs.len()..].iter())
                .map(|(i, _)| i.to_string())
                .collect();
            let stopped = if rest.is_empty() {
                String::new()
            } else {
                format!(
                    " (the batch stopped there: request(s) {} were not run)",
                    rest.join(", ")
                )
            };
            // The walk ended at the cap: another epoch would have passed it.
            let at_cap = c.cost.as_ref().filter(|m| !m.has_room());
            if let (Some(b), Some(m)) = (cap, at_cap) {
                return Err(Error::setting(
                    format!("request {id}"),
                    format!(
                        "calibration stopped at the cost cap ({}× the exact retrain the batch \
                         replaces; it spent {:.2}× its own retrain of {:.2}×) before any state \
                         forgot it within the utility guard ({}){stopped}; nothing was \
                         committed and the pending requests stay pending{}",
                        b.fraction,
                        m.spent_fraction(),
                        m.fraction,
                        c.verdict,
                        capped_way_out(b)
                    ),
                ));
            }
            return Err(Error::invalid(
                format!("request {id}"),
                format!(
                    "calibration found no state that forgets it within the utility guard \
                     ({}){stopped}; nothing was committed and the pending requests stay \
                     pending: retrain exactly (`amun registry retrain`, with --force before \
                     the policy's time), or apply without calibration or with another method",
                    c.verdict
                ),
            ));
        }
    }
    Ok(())
}

/// What to do when the walk stopped at the cap: the default's way out
/// (the exact retrain, or the cap lifted), or a larger cap given.
fn capped_way_out(cap: BatchCap) -> String {
    match cap.origin {
        CapOrigin::Default => crate::unlearn::default_cap_way_out(cap),
        CapOrigin::Given => format!(
            ": retrain exactly (`amun registry retrain`, with --force before the policy's \
             time), or give {{calibrate.max_cost}} more than {} (or \
             {{calibrate.max_cost=none}})",
            cap.fraction
        ),
    }
}

/// Every pending request was covered: the head absorbs them all, and no
/// version is made.
fn absorb_covered(
    w: &mut Writer,
    head: VersionRow,
    covered: Vec<i64>,
    progress: &dyn Progress,
) -> Result<Applied> {
    w.commit(Committer::Apply, progress, |tx, db| {
        for &r in &covered {
            insert_absorption(tx, db, head.id, r, How::Covered)?;
        }
        Ok(())
    })?;
    Ok(Applied {
        version: head,
        new_version: false,
        unlearned: Vec::new(),
        covered,
        before: [f64::NAN; 3],
        after: [f64::NAN; 3],
        audit: None,
        certificate: None,
        retrain_due: w.reg.retrain_due()?,
        set_aside: w.set_aside.clone(),
    })
}

/// The batch's requests as forget sets, each seeded by its request id.
fn request_sets(reg: &Registry, sets: &[(i64, Vec<i64>)]) -> Result<Vec<ForgetSet>> {
    sets.iter()
        .map(|(id, idx)| {
            let mut s = reg.forget_set(idx.clone(), "registry-request")?;
            s.seed = *id as u64;
            Ok(s)
        })
        .collect()
}

/// Says which requests are applied to which version, and how.
fn note_applying(
    progress: &dyn Progress,
    sets: &[(i64, Vec<i64>)],
    head: i64,
    method: &MethodSpec,
    calibrated: bool,
) {
    progress.note(&format!(
        "applying request(s) {} to version {} with {}{}",
        sets.iter()
            .map(|(i, _)| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        head,
        method.name(),
        if calibrated { " (calibrated)" } else { "" }
    ));
}

/// The calibration of each request that was calibrated, by request.
fn calibration_records(
    sets: &[(i64, Vec<i64>)],
    logs: &[crate::unlearn::UnlearnLog],
) -> Vec<CalibrationRecord> {
    sets.iter()
        .zip(logs)
        .filter_map(|((id, _), l)| {
            l.calibration.as_ref().map(|c| CalibrationRecord {
                calibration: serde_json::to_value(c).expect("calibrations serialise"),
                request: *id,
            })
        })
        .collect()
}

/// What a batch of pending requests forgets.
struct Batch {
    /// Every sample forgotten after it, sorted.
    gone: Vec<i64>,
    /// The requests to unlearn, each with its samples not forgotten before
    /// it.
    sets: Vec<(i64, Vec<i64>)>,
    /// The requests whose every sample was already forgotten.
    covered: Vec<i64>,
}

/// Each request's samples not forgotten before it: the head's and the
/// earlier requests' of this batch are already gone.
fn batch(reg: &Registry, pending: &[RequestRow], forgotten_before: &[i64]) -> Result<Batch> {
    let mut gone = forgotten_before.to_vec();
    let mut sets: Vec<(i64, Vec<i64>)> = Vec::new();
    let mut covered = Vec::new();
    for r in pending {
        let new: Vec<i64> = reg
            .request_samples(r.id)?
            .iter()
            .map(|s| s.idx)
            .filter(|i| gone.binary_search(i).is_err())
            .collect();
        if new.is_empty() {
            covered.push(r.id);
        } else {
            gone = crate::unlearn::union_sorted(&gone, &new);
            sets.push((r.id, new));
        }
    }
    Ok(Batch {
        gone,
        sets,
        covered,
    })
}

/// Commits version `row` with its absorptions, unless the head (`head`)
/// moved or a `pending` request was absorbed meanwhile.
fn record(
    w: &mut Writer,
    head: i64,
    pending: &[RequestRow],
    row: &VersionRow,
    unlearned: &[i64],
    covered: &[i64],
    progress: &dyn Progress,
) -> Result<()> {
    let registry = format!("registry {}", w.reg.dir.display());
    let taken_sql = format!(
        "SELECT COUNT(*) FROM absorptions WHERE request IN ({})",
        pending
            .iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    w.commit_version(Committer::Apply, progress, |tx, db| {
        let taken: i64 = tx
            .query_row(&taken_sql, [], |r| r.get(0))
            .map_err(sql(db))?;
        if head_in(tx, db)? != head || taken != 0 {
            return Err(Error::invalid(
                registry,
                "its head or pending requests changed during the apply (another writer \
                 bypassed the lock); nothing was recorded: run apply again",
            ));
        }
        insert_version(tx, db, row)?;
        for &r in unlearned {
            insert_absorption(tx, db, row.id, r, How::Unlearned)?;
        }
        for &r in covered {
            insert_absorption(tx, db, row.id, r, How::Covered)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(f: f64) -> Option<BatchCap> {
        Some(BatchCap {
            fraction: f,
            origin: CapOrigin::Given,
        })
    }

    /// Hostile6 MC2: 3 requests of 30 of 300 samples with a 40-epoch
    /// recipe and a cap of 0.1 spent 0.10 of a 270-image retrain each,
    /// 0.37 of the 210-image retrain the batch replaces.
    #[test]
    fn the_cost_cap_holds_for_the_whole_batch() {
        let cal = CalibrateSettings::default();
        let quiet = &crate::progress::Quiet;
        let c = batch_cost_cap(&cal, given(0.1), 300, 90, 3, quiet);
        let share = c.max_cost.unwrap();
        let (epochs, batch_retrain) = (40.0, 40.0 * 210.0);
        // Each request's walk is priced against a retrain without it
        // alone (270 images), at most the whole split's (300).
        for own in [270.0, 300.0] {
            let spent_by_three = 3.0 * share * epochs * own;
            assert!(spent_by_three <= 0.1 * batch_retrain + 1e-9, "{share}");
        }
        assert!((share - 0.1 * 210.0 / 900.0).abs() < 1e-12);
        // One request: its own retrain is the batch's, up to its samples.
        let one = batch_cost_cap(&cal, given(0.1), 300, 30, 1, quiet);
        assert!((one.max_cost.unwrap() - 0.1 * 270.0 / 300.0).abs() < 1e-12);
        assert_eq!(batch_cost_cap(&cal, None, 300, 90, 3, quiet).max_cost, None);
    }

    /// Issue 35: an apply defaults to a cap of 1× the exact retrain where
    /// that retrain is priced (the continuing walk, a root with a recipe);
    /// a restart walk or a recipe-less root gets none, and no error; a cap
    /// given or `none` wins.
    #[test]
    fn the_default_cap_applies_where_a_retrain_prices_it() {
        let quiet = &crate::progress::Quiet;
        let cont = CalibrateSettings::default();
        let restart = CalibrateSettings {
            walk: Walk::Restart,
            ..Default::default()
        };
        let default = Some(BatchCap {
            fraction: DEFAULT_APPLY_CAP,
            origin: CapOrigin::Default,
        });
        assert_eq!(resolve_cap(&cont, ApplyCap::Default, true, quiet), default);
        assert_eq!(resolve_cap(&cont, ApplyCap::Default, false, quiet), None);
        assert_eq!(resolve_cap(&restart, ApplyCap::Default, true, quiet), None);
        assert_eq!(resolve_cap(&cont, ApplyCap::Off, true, quiet), None);
        assert_eq!(
            resolve_cap(&cont, ApplyCap::Given(0.5), true, quiet),
            given(0.5)
        );
        assert_eq!("none".parse::<ApplyCap>().unwrap(), ApplyCap::Off);
        assert_eq!("0.5".parse::<ApplyCap>().unwrap(), ApplyCap::Given(0.5));
        assert!("half".parse::<ApplyCap>().is_err());
    }
}
