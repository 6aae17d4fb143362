//! The audit: does an unlearned model behave like one retrained without
//! the forget set? Accuracies on D_F, D_R, D_T; RMIA (AUC of D_F vs D_T,
//! ideal 50) against reference models; MIS (SalUn's SVC attack); the paper's
//! Avg. Gap against a retrained model.

mod gap;
mod mis;
pub(crate) mod rmia;
mod roc;

pub use gap::{Scores, avg_gap, mean_std};
pub use mis::mis;
pub use rmia::{
    RefManifest, RefSetup, References, RmiaParams, Signal, check_ref_count, check_reference_files,
    load_references, memberships, read_manifest, rmia_scores, scores, scores_brute, signal,
    train_references,
};
pub use roc::{auc, roc_curve, tpr_at_fpr};

use crate::data::{Dataset, ForgetSet, IndexSet};
use crate::error::{Error, Result};
use crate::model::checkpoint::ForgetSummary;
use crate::model::{Classifier, Origin, Sidecar};
use crate::progress::Progress;
use crate::seed::derive;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind};

/// Everything the audit measures on one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAudit {
    pub scores: Scores,
    /// RMIA AUC of a D_R sample (as large as D_T) vs D_T, percent: the
    /// attack's power on true members.
    pub rmia_auc_retain_test: f64,
    /// TPR at 1% and 0.1% FPR of RMIA, D_F vs D_T (percent).
    pub tpr_at_1pct_fpr: f64,
    pub tpr_at_01pct_fpr: f64,
    /// MIS: percent of D_F the SVC calls non-member.
    pub mis: f64,
    /// ROC curve of RMIA, D_F vs D_T (at most 200 points).
    pub roc: Vec<(f64, f64)>,
    /// Histograms (20 bins over [0,1]) of the true-class softmax confidence.
    pub confidence_hist: ConfidenceHist,
    /// Percent of the RMIA scores (D_F, the D_R sample and D_T) equal to
    /// their most common value ([`tied_share`]): near 100 every score is
    /// tied and the AUCs of 50 measure nothing ([`ModelAudit::tie_warning`]).
    #[serde(default)]
    pub rmia_tied: f64,
}

/// Above this percent of tied RMIA scores an audit says its AUCs measure
/// nothing: an AUC of ties is 50 whatever the model remembers, and the
/// few untied scores left decide too little to tell 50 from a leak.
pub const TIED_WARN: f64 = 90.0;

/// The percent of `scores` equal to their most common value (0 if empty).
pub fn tied_share(scores: &[f64]) -> f64 {
    let mut v = scores.to_vec();
    v.sort_by(f64::total_cmp);
    let longest = v
        .chunk_by(|a, b| a == b)
        .map(<[f64]>::len)
        .max()
        .unwrap_or(0);
    100.0 * longest as f64 / v.len().max(1) as f64
}

/// How a user sets what [`ModelAudit::tie_warning`] suggests: the audit's
/// flags, or an experiment's `[rmia.attack]` keys.
pub struct TieRemedy<'a> {
    /// Choosing the softmax signal.
    pub softmax: &'a str,
    /// Choosing γ = 1.1.
    pub gamma: &'a str,
}

impl TieRemedy<'static> {
    pub const FLAGS: TieRemedy<'static> = TieRemedy {
        softmax: "--signal softmax",
        gamma: "--gamma 1.1",
    };
    pub const CONFIG: TieRemedy<'static> = TieRemedy {
        softmax: "[rmia.attack] signal = { kind = \"softmax\", temperature = 1.0 }",
        gamma: "[rmia.attack] gamma = 1.1",
    };
}

impl ModelAudit {
    /// Says, when (nearly) every RMIA score is tied, that the RMIA columns
    /// measure nothing, and what may separate the scores under `p`.
    pub fn tie_warning(&self, p: &RmiaParams, how: &TieRemedy<'_>) -> Option<String> {
        if self.rmia_tied < TIED_WARN {
            return None;
        }
        let try_signal = match p.signal {
            Signal::TaylorSoftMargin { margin, .. } => format!(
                "{} (the default Taylor soft-margin signal lowers the true class's logit by \
                 {margin}, which ties models whose logits lie closer than that), or ",
                how.softmax
            ),
            Signal::Softmax { .. } => String::new(),
        };
        Some(format!(
            "{:.1}% of the RMIA scores are tied at one value (at γ = {} the likelihood ratios \
             separate none of them): the RMIA AUCs of 50 and TPR of 0 say nothing about \
             membership, not that the forget set looks unseen; try {try_signal}a γ nearer 1 \
             ({})",
            self.rmia_tied, p.gamma, how.gamma
        ))
    }
}

/// Histograms of true-class confidence on D_F, D_T and a D_R sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceHist {
    pub forget: Vec<usize>,
    pub test: Vec<usize>,
    pub retain: Vec<usize>,
}

fn hist(v: &[f64]) -> Vec<usize> {
    let mut h = vec![0; 20];
    for x in v {
        h[((x * 20.0) as usize).min(19)] += 1;
    }
    h
}

fn thin(roc: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if roc.len() <= max {
        return roc;
    }
    let step = roc.len() as f64 / max as f64;
    let mut out: Vec<(f64, f64)> = (0..max).map(|i| roc[(i as f64 * step) as usize]).collect();
    out.push(*roc.last().expect("non-empty"));
    out
}

/// The seed of the audit of a forget set drawn with `forget_seed` (the D_R
/// sample, the SVC subsample): one rule for `amun audit` and experiments.
pub fn audit_seed(forget_seed: u64) -> u64 {
    derive(forget_seed, "audit", 0)
}

/// Checks that the model at `path` (its sidecar `sc`) is a retrain without
/// exactly `forget`: the Avg. Gap is a distance to such a model, and any
/// other one (the original, a retrain of another forget set) gives a
/// number that only looks like one.
pub fn check_retrain(sc: &Sidecar, forget: &ForgetSet, path: &Path) -> Result<()> {
    let want = ForgetSummary::of(forget);
    let what = match (sc.excluded(), &sc.origin) {
        (Some(s), _) if s.indices_sha256 == want.indices_sha256 && s.dataset == want.dataset => {
            return Ok(());
        }
        (Some(s), _) => format!(
            "it was retrained without another forget set ({} samples of {}, {} seed {}, indices \
             sha256 {}), not without the {} samples of this one (sha256 {})",
            s.size,
            s.dataset,
            s.kind,
            s.seed,
            crate::fsutil::short_pair(&s.indices_sha256, &want.indices_sha256).0,
            want.size,
            crate::fsutil::short_pair(&s.indices_sha256, &want.indices_sha256).1
        ),
        (None, Origin::Train { subset: None, .. }) => {
            "it was trained on the whole training split: it excludes no sample, so it is an \
             original model, not a retrain"
                .to_string()
        }
        (None, Origin::Train { .. }) => {
            "it was trained on pool rows (a reference model), not without a forget set".to_string()
        }
        (None, Origin::Unlearn { method, .. }) => {
            format!("it is a model unlearned by {method}, not a retrain")
        }
        (None, Origin::Import { from, .. }) => format!(
            "it was imported from {from}, and its sidecar records no forget set it was trained \
             without"
        ),
    };
    Err(Error::checkpoint(
        path,
        format!(
            "--retrain: {what}. The Avg. Gap compares with a model retrained without exactly \
             the forget set: train one with `amun train --exclude FORGET`"
        ),
    ))
}

/// Checks that each audited model (with its sidecar) whose lineage forgot
/// anything forgot exactly `forget` and the `earlier` requests (`amun audit
/// --forgotten`): the Avg. Gap compares with a retrain without all of them,
/// and a model whose lineage forgot an earlier request too is otherwise
/// compared with a retrain that trained on it. Models that forgot nothing
/// (an original, an import) are the audit's baselines and pass.
///
/// Each earlier request (named by `names`, one per `earlier`) must differ
/// from `forget` and from the others, and be one that some audited model's
/// lineage records: a request its lineage never forgot makes the audit's
/// forget set larger than what was unlearned (as `amun unlearn
/// --forgotten` refuses).
pub fn check_lineage(
    audited: &[(&Path, &Sidecar)],
    forget: &ForgetSet,
    earlier: &[ForgetSet],
    names: &[String],
) -> Result<()> {
    check_earlier(audited, forget, earlier, names)?;
    let given: Vec<ForgetSet> = earlier.iter().chain([forget]).cloned().collect();
    let named: Vec<String> = (given.iter())
        .map(|g| crate::model::lineage::short_summary(&ForgetSummary::of(g)))
        .collect();
    for (path, sc) in audited {
        let recorded = sc.forgotten();
        if recorded.is_empty() || crate::model::lineage::lineage_gap(&recorded, &given).is_none() {
            continue;
        }
        let lineage: Vec<String> = recorded
            .iter()
            .map(crate::model::lineage::short_summary)
            .collect();
        return Err(Error::checkpoint(
            path,
            format!(
                "its lineage forgot {} request(s): {}; the audit names {} (--forget and each \
                 --forgotten). Its exact retrain excludes every request its lineage forgot: \
                 give the last one as --forget and each earlier one as --forgotten, with a \
                 retrain without all of them (`amun train --exclude` a file of their indices)",
                recorded.len(),
                lineage.join(", "),
                named.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The `--forgotten` half of [`check_lineage`].
fn check_earlier(
    audited: &[(&Path, &Sidecar)],
    forget: &ForgetSet,
    earlier: &[ForgetSet],
    names: &[String],
) -> Result<()> {
    let name = |i: usize| names.get(i).map_or("a request", String::as_str);
    for (i, e) in earlier.iter().enumerate() {
        let same = (earlier[..i].iter().position(|o| o.indices == e.indices))
            .map(|j| format!("as the --forgotten {}", name(j)))
            .or_else(|| (e.indices == forget.indices).then(|| "as --forget".to_string()));
        if let Some(other) = same {
            return Err(Error::invalid(
                format!("--forgotten {}", name(i)),
                format!(
                    "lists the same {} samples {other}: a request is either the one audited \
                     (--forget) or one forgotten before it (--forgotten), once",
                    e.indices.len()
                ),
            ));
        }
        let sha = ForgetSummary::of(e).indices_sha256;
        let recorded = audited.iter().any(|(_, sc)| {
            let lineage = sc.forgotten();
            lineage.iter().any(|r| r.indices_sha256 == sha)
                || crate::model::lineage::lineage_gap(
                    &lineage,
                    &[earlier, std::slice::from_ref(forget)].concat(),
                )
                .is_none()
        });
        if !recorded {
            return Err(Error::invalid(
                format!("--forgotten {}", name(i)),
                format!(
                    "no audited model's sidecar records this request ({} samples) as forgotten; \
                     give only the requests the model's lineage forgot before --forget",
                    e.indices.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that the retrain (`retrain`, at `path`) is the same network as
/// every audited model that records one: an Avg. Gap to a retrain of another
/// architecture, class count or exported graph measures the architectures'
/// difference, not what unlearning left.
pub fn check_retrain_model(
    retrain: &Sidecar,
    path: &Path,
    audited: &[(&Path, &Sidecar)],
) -> Result<()> {
    let net = |sc: &Sidecar| {
        let m = &sc.model;
        let graph = m.program.as_ref().map(|p| short(&p.sha256).to_string());
        (
            m.arch.name().to_string(),
            m.in_channels,
            m.image_size,
            m.num_classes,
            graph,
        )
    };
    let want = net(retrain);
    if let Some((done, total)) = retrain.incomplete() {
        return Err(Error::checkpoint(
            path,
            format!(
                "the retrain is unfinished: {done} of its recipe's {total} epochs were trained (a \
                 killed or failed run), so it is not the exact retrain the Avg. Gap compares \
                 with; train it to the end (`amun train --resume` with the same flags and --out)"
            ),
        ));
    }
    for (p, sc) in audited {
        let got = net(sc);
        if got != want {
            let say = |n: &(String, i64, i64, i64, Option<String>)| {
                format!(
                    "{} ({}×{}×{} images, {} classes{})",
                    n.0,
                    n.1,
                    n.2,
                    n.2,
                    n.3,
                    n.4.as_ref()
                        .map(|g| format!(", graph sha256 {g}"))
                        .unwrap_or_default()
                )
            };
            return Err(Error::checkpoint(
                path,
                format!(
                    "the retrain is a {}, but {} is a {}: the Avg. Gap compares a model with the \
                     same network retrained without the forget set — train one with `amun train \
                     --exclude FORGET` and the original's model and recipe",
                    say(&want),
                    p.display(),
                    say(&got),
                ),
            ));
        }
        if let Some(why) = recipes_differ(retrain, sc) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "the retrain's recipe is not that of {} ({why}): the Avg. Gap compares \
                     with a model retrained by the original's recipe — train one with `amun \
                     train --exclude FORGET` and the original's flags",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Where the training recipes of a retrain and an audited model trained
/// from scratch (an original) differ, in what shapes the model: epochs,
/// batch size, rate, schedule, momentum, weight decay, augmentation. `None`
/// when they agree or either has none (an unlearned or imported model).
fn recipes_differ(retrain: &Sidecar, other: &Sidecar) -> Option<String> {
    let recipe = |sc: &Sidecar| match &sc.origin {
        crate::model::Origin::Train { recipe, .. } => Some(recipe.clone()),
        _ => None,
    };
    let (r, o) = (recipe(retrain)?, recipe(other)?);
    const SHAPING: [&str; 8] = [
        "epochs",
        "batch_size",
        "lr",
        "schedule",
        "momentum",
        "nesterov",
        "weight_decay",
        "augment",
    ];
    let diffs: Vec<String> = (SHAPING.iter())
        .filter(|k| r.get(**k) != o.get(**k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("none".into(), |v| v.to_string());
            format!("{k} {} against {}", show(r.get(*k)), show(o.get(*k)))
        })
        .collect();
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The number of last test images an audit of `models` (path, sidecar)
/// leaves out: each calibrated model's recorded held-out test images,
/// so no audit scores the images a calibration chose by. `requested`
/// (`--holdout-test`) may leave out more, never fewer. Returns the count
/// and, when it comes from a record, a line saying so.
pub fn audit_holdout(
    models: &[(&Path, &Sidecar)],
    test_len: usize,
    requested: Option<usize>,
) -> Result<(usize, Option<String>)> {
    let need = models
        .iter()
        .filter_map(|(p, sc)| {
            let r = sc.calibration_heldout(test_len)?;
            Some((r.audit_holdout(test_len), *p, r))
        })
        .max_by_key(|(n, _, _)| *n);
    match (need, requested) {
        (Some((n, p, r)), Some(h)) if h < n => Err(Error::invalid(
            "holdout-test",
            format!(
                "{h}: {} (or a model it was unlearned from) was calibrated on {}; an audit \
                 leaving out only {h} test images would \
                 score images its calibration chose by: give --holdout-test {n} or more (or \
                 leave it out: the recorded held-out set is then left out)",
                p.display(),
                r.describe()
            ),
        )),
        (_, Some(h)) => Ok((h, None)),
        (Some((n, p, r)), None) if n > 0 => Ok((
            n,
            Some(format!(
                "leaving the last {n} test images out of D_T: {} (or a model it was \
                 unlearned from) was calibrated on {}",
                p.display(),
                r.describe()
            )),
        )),
        _ => Ok((0, None)),
    }
}

/// A warning when a class of the forget set has no image among the
/// audited test images (D_T: the test split before its last `heldout`):
/// MIS's classifier and RMIA's D_F-vs-D_T AUC then have no non-member of
/// that class to compare with, so they set the forgotten class against
/// other classes, and an exact retrain can score as remembering more than
/// the original (hostile17 E2). `None` when every class is covered.
pub fn uncovered_classes_warning(data: &Dataset, forget: &[i64], heldout: usize) -> Option<String> {
    let labels =
        |t: &tch::Tensor| Vec::<i64>::try_from(t.to_device(Device::Cpu)).unwrap_or_default();
    let train = labels(&data.train.labels);
    let n_test = data.test.len().saturating_sub(heldout);
    let test: std::collections::BTreeSet<i64> =
        labels(&data.test.labels).into_iter().take(n_test).collect();
    let forgotten: std::collections::BTreeSet<i64> = forget
        .iter()
        .filter_map(|&i| train.get(i as usize).copied())
        .collect();
    let missing: Vec<String> = forgotten
        .difference(&test)
        .map(|&c| {
            let name = data.classes.get(c as usize).map_or("?", String::as_str);
            format!("{c} ('{name}')")
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "the forget set holds class(es) {} with no image among the {n_test} audited test \
         images: MIS and RMIA's D_F-vs-D_T AUC have no non-member of them to compare with, so \
         they set the forgotten samples against other classes (even an exact retrain can look \
         as if it remembered); read those columns with care, or add test images of the class",
        missing.join(", ")
    ))
}

/// Audits `model` for the forget set `forget` (training indices) of `data`.
/// The last `heldout` test images are left out (a retrain-free calibration
/// looked at them): D_T is the test split before them. The model's pass
/// over every image is reported to `progress`, a batch a step.
#[allow(clippy::too_many_arguments)]
pub fn audit(
    model: &Classifier,
    data: &Dataset,
    forget: &[i64],
    refs: &References,
    p: &RmiaParams,
    seed: u64,
    heldout: usize,
    progress: &dyn Progress,
) -> Result<ModelAudit> {
    p.check()?;
    let n_train = data.train.len();
    if heldout >= data.test.len() {
        return Err(crate::error::Error::invalid(
            "holdout",
            format!(
                "{heldout} held-out test images leave none of the {} to audit with",
                data.test.len()
            ),
        ));
    }
    let n_test = data.test.len() - heldout;
    let retain: Vec<i64> = IndexSet::new(forget.iter().copied())
        .complement(n_train)
        .into_vec();
    let pool = data.pool();
    let logits = crate::eval::logits_reporting(model, &pool.images, "audit", progress);
    let labels = pool.labels.to_device(Device::Cpu);
    let pred = logits.argmax(1, false);
    let correct = Vec::<bool>::try_from(pred.eq_tensor(&labels)).expect("bools");
    let acc = |rows: &[usize]| {
        100.0 * rows.iter().filter(|&&r| correct[r]).count() as f64 / rows.len().max(1) as f64
    };
    let forget_rows: Vec<usize> = forget.iter().map(|&i| i as usize).collect();
    let retain_rows: Vec<usize> = retain.iter().map(|&i| i as usize).collect();
    let test_rows: Vec<usize> = (n_train..n_train + n_test).collect();
    // A D_R sample as large as D_T: the members of the sanity line and of MIS.
    let mut rng = ChaCha8Rng::seed_from_u64(derive(seed, "audit-retain-sample", 0));
    let k = retain_rows.len().min(n_test);
    let retain_sample: Vec<usize> = sample(&mut rng, retain_rows.len(), k)
        .into_iter()
        .map(|i| retain_rows[i])
        .collect();
    let mut cand = forget_rows.clone();
    cand.extend(&retain_sample);
    cand.extend(&test_rows);
    let s = rmia_scores(&logits, refs, &cand, &test_rows, p)?;
    let (sf, rest) = s.split_at(forget_rows.len());
    let (sr, st) = rest.split_at(retain_sample.len());
    let conf = Vec::<f64>::try_from(
        logits
            .softmax(1, Kind::Double)
            .gather(1, &labels.view([-1, 1]), false)
            .flatten(0, -1),
    )
    .expect("f64");
    let pick = |rows: &[usize]| rows.iter().map(|&r| conf[r]).collect::<Vec<f64>>();
    let (cf, ct, cr) = (pick(&forget_rows), pick(&test_rows), pick(&retain_sample));
    Ok(ModelAudit {
        scores: Scores {
            unlearn: acc(&forget_rows),
            retain: acc(&retain_rows),
            test: acc(&test_rows),
            mia: 100.0 * auc(sf, st),
        },
        rmia_auc_retain_test: 100.0 * auc(sr, st),
        tpr_at_1pct_fpr: 100.0 * tpr_at_fpr(sf, st, 0.01),
        tpr_at_01pct_fpr: 100.0 * tpr_at_fpr(sf, st, 0.001),
        mis: mis(&cr, &ct, &cf, seed)?,
        roc: thin(roc_curve(sf, st), 200),
        confidence_hist: ConfidenceHist {
            forget: hist(&cf),
            test: hist(&ct),
            retain: hist(&cr),
        },
        rmia_tied: tied_share(&s),
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    /// A small CNN's sidecar trained by `recipe`, `done` of its epochs.
    fn trained(recipe: serde_json::Value, done: usize) -> Sidecar {
        let spec = crate::model::ModelSpec::for_data(crate::model::Arch::SmallCnn, [1, 28, 28], 10)
            .unwrap();
        let origin = crate::model::Origin::Train {
            recipe,
            subset: None,
            epochs_done: done,
            wall_s: 1.0,
            resumes: vec![],
        };
        let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
        Sidecar::new(
            &spec,
            &crate::data::DataSpec::new("mnist"),
            &classes,
            0,
            origin,
        )
    }

    /// hostile7 AU3, UR5: a retrain of another recipe, or an unfinished
    /// one, is no exact retrain of the audited original.
    #[test]
    fn a_retrain_of_another_recipe_or_unfinished_is_refused() {
        let recipe = |epochs: usize| {
            serde_json::json!({"epochs": epochs, "batch_size": 32, "lr": 0.02, "momentum": 0.9,
                "nesterov": false, "schedule": "onecycle:0.25", "weight_decay": 5e-4,
                "augment": false, "bf16": false, "channels_last": false})
        };
        let original = trained(recipe(40), 40);
        let p = Path::new("r.safetensors");
        let o = Path::new("o.safetensors");
        assert!(check_retrain_model(&trained(recipe(40), 40), p, &[(o, &original)]).is_ok());
        let e = check_retrain_model(&trained(recipe(2), 2), p, &[(o, &original)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("epochs 2 against 40") && e.contains("o.safetensors"),
            "{e}"
        );
        let e = check_retrain_model(&trained(recipe(40), 18), p, &[(o, &original)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("18 of its recipe's 40 epochs"), "{e}");
    }

    #[test]
    fn tied_scores_are_counted_and_named() {
        assert_eq!(tied_share(&[]), 0.0);
        assert_eq!(tied_share(&[0.0; 10]), 100.0);
        assert_eq!(tied_share(&[0.0, 0.5, 0.0, 0.25]), 50.0);
        let mut a = ModelAudit {
            scores: Scores {
                unlearn: 0.0,
                retain: 0.0,
                test: 0.0,
                mia: 50.0,
            },
            rmia_auc_retain_test: 50.0,
            tpr_at_1pct_fpr: 0.0,
            tpr_at_01pct_fpr: 0.0,
            mis: 0.0,
            roc: Vec::new(),
            confidence_hist: ConfidenceHist {
                forget: Vec::new(),
                test: Vec::new(),
                retain: Vec::new(),
            },
            rmia_tied: 100.0,
        };
        let w = a
            .tie_warning(&RmiaParams::default(), &TieRemedy::FLAGS)
            .unwrap();
        assert!(w.contains("100.0% of the RMIA scores") && w.contains("--signal softmax"));
        let softmax = RmiaParams {
            signal: Signal::Softmax { temperature: 1.0 },
            ..RmiaParams::default()
        };
        let w = a.tie_warning(&softmax, &TieRemedy::FLAGS).unwrap();
        assert!(!w.contains("--signal") && w.contains("--gamma"), "{w}");
        a.rmia_tied = 40.0;
        assert_eq!(
            a.tie_warning(&RmiaParams::default(), &TieRemedy::FLAGS),
            None
        );
    }

    /// hostile17 E2: a forgotten class without test images is named; a
    /// class covered by the audited test images (not the held-out ones) is not.
    #[test]
    fn a_forgotten_class_without_audited_test_images_is_named() {
        let split = |labels: &[i64]| crate::data::Split {
            images: tch::Tensor::zeros(
                [labels.len() as i64, 1, 2, 2],
                (tch::Kind::Uint8, Device::Cpu),
            ),
            labels: tch::Tensor::from_slice(labels),
        };
        let classes: Vec<String> = ["zero", "one", "two"].map(String::from).to_vec();
        let data = Dataset::from_splits(
            crate::data::DataSpec::new("mem"),
            classes,
            split(&[0, 1, 2, 2]),
            split(&[0, 1, 2]),
        )
        .unwrap();
        assert_eq!(uncovered_classes_warning(&data, &[2, 3], 0), None);
        // The last test image (class 2) is held out: class 2 is uncovered.
        let w = uncovered_classes_warning(&data, &[0, 2, 3], 1).unwrap();
        assert!(w.contains("2 ('two')") && !w.contains("0 ('zero')"), "{w}");
        assert!(w.contains("2 audited test images"), "{w}");
    }
}
