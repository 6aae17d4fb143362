//! Which retrain-free calibration rule picks the states closest to an exact
//! retrain? For every method, learning rate of a ladder and epoch, this
//! measures the state twice: as calibration sees it (forget vs held-out
//! test images, no retrain) and as the audit does (Avg. Gap to the exactly
//! retrained model, RMIA on the other test images). Then, for each rule, it
//! reports the real gap of the state the rule would choose, next to the
//! best state of the whole grid (what tuning against retrain can reach).
//! The numbers of docs/CALIBRATION.md come from here.
//!
//! ```sh
//! cargo run --release --example calibration_study -- RUN_DIR HOLDOUT [R|noR] [methods,...]
//! ```
//! RUN_DIR is an `amun experiment` folder (original-s0, retrain-s0-f*,
//! forget-s0-f*, references/); HOLDOUT the number of test images (the last
//! ones) calibration may look at, which the audit then leaves out.
use amun::audit::{audit, audit_seed, avg_gap, load_references};
use amun::data::{DataSpec, ForgetSet, Split};
use amun::experiment::Config;
use amun::model::checkpoint;
use amun::progress::Quiet;
use amun::unlearn::{CalibrateSettings, ForgetRequest, Probes, Rule, RunCtx, score};
use std::cell::RefCell;
use std::path::PathBuf;

/// The command line: RUN_DIR HOLDOUT [R|noR] [methods,...] [lrs,...].
struct Args {
    dir: PathBuf,
    holdout: usize,
    with_retain: bool,
    methods: Vec<String>,
    lrs: Vec<f64>,
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: calibration_study RUN_DIR HOLDOUT [R|noR] [methods,...] [lrs,...]");
        std::process::exit(2);
    }
    Args {
        dir: PathBuf::from(&args[1]),
        holdout: args[2].parse().expect("HOLDOUT: a number"),
        with_retain: args.get(3).is_none_or(|s| s == "R"),
        methods: args
            .get(4)
            .map(|s| s.split(',').map(String::from).collect())
            .unwrap_or_else(|| {
                ["ft", "rl", "ga", "bs", "l1", "salun", "amun", "amun-salun"]
                    .map(String::from)
                    .to_vec()
            }),
        lrs: args
            .get(5)
            .map(|s| s.split(',').map(|x| x.parse().expect("lr")).collect())
            .unwrap_or_else(|| CalibrateSettings::default().lrs),
    }
}

/// AMUN's adversarial set of the forget set, searched on the original —
/// only when an AMUN variant is studied (the exact search is most of a
/// small study's time).
fn adv_set(
    methods: &[String],
    original: &amun::model::Classifier,
    train: &Split,
    forget: &[i64],
) -> amun::Result<Option<amun::attack::AdvSet>> {
    if !methods.iter().any(|m| m.starts_with("amun")) {
        return Ok(None);
    }
    let part = train.select(forget);
    let set = amun::attack::search(
        original,
        &part.images,
        &part.labels,
        forget,
        &amun::attack::AdvSettings::default(),
        &Quiet,
    )?;
    Ok(Some(set))
}

fn main() -> amun::Result<()> {
    let Args {
        dir,
        holdout,
        with_retain,
        methods,
        lrs,
    } = parse_args();
    let dir = dir.as_path();
    let cfg: Config = amun::experiment::folder_config(dir)?;
    let spec: DataSpec = cfg.data.clone();
    let data = spec.load(&amun::data::default_data_dir())?;
    let frac = cfg.forget.fractions[0];
    let forget = ForgetSet::read(&dir.join(format!("forget-s0-f{frac}.json")))?;
    let (original, _) = checkpoint::load(&dir.join("original-s0.safetensors"), tch::Device::Cpu)?;
    let (retrain, _) = checkpoint::load(
        &dir.join(format!("retrain-s0-f{frac}.safetensors")),
        tch::Device::Cpu,
    )?;
    let refs = load_references(&dir.join("references"), &data)?;
    let recipe = cfg.recipe(data.image_shape()[0])?;
    let heldout = last_test_images(&data.test, holdout);
    let seed = audit_seed(forget.seed);
    let aud = |m: &amun::model::Classifier| {
        audit(
            m,
            &data,
            &forget.indices,
            &refs,
            &cfg.rmia.attack,
            seed,
            holdout,
            &Quiet,
        )
    };
    let rt = aud(&retrain)?.scores;
    let orig_audit = aud(&original)?;
    let retain: Vec<i64> = forget.retain_indices();
    let adv = adv_set(&methods, &original, &data.train, &forget.indices)?;
    let req = ForgetRequest {
        train: &data.train,
        forget: &forget.indices,
        retain: with_retain.then_some(retain.as_slice()),
        adv: adv.as_ref(),
        mask: None,
        num_classes: data.num_classes(),
    };
    let probes = Probes::new(&req, &heldout, 1000, 0);
    let p0 = probes.probe(&original);
    println!(
        "# {} {}: retrain UA {:.1} RA {:.1} TA {:.1} MIA {:.1}; original gap {:.2}; probe0 forget {:.1} held-out {:.1} retain {:.1} lossAUC {:.1}",
        cfg.name,
        if with_retain { "R" } else { "noR" },
        rt.unlearn,
        rt.retain,
        rt.test,
        rt.mia,
        avg_gap(&orig_audit.scores, &rt),
        p0.forget_acc,
        p0.heldout_acc,
        p0.retain_acc,
        p0.loss_auc
    );
    println!("method\tlr\tepoch\tforget\theldout\tretain\tlossAUC\tks\tUA\tRA\tTA\tMIA\tgap");
    for name in &methods {
        let base = match cfg.methods()?.into_iter().find(|m| m.name() == name) {
            Some(m) => m,
            None => amun::unlearn::MethodSpec::new(name, &serde_json::json!({}))?,
        };
        if !with_retain && base.method().requires_retain().is_some() {
            continue;
        }
        // (lr, epoch, probe, real gap)
        let rows: RefCell<Vec<Row>> =
            RefCell::new(vec![(0.0, 0, p0, avg_gap(&orig_audit.scores, &rt))]);
        for &lr in &lrs {
            let method = base.adjusted(&amun::train::TrainOverrides::rate(lr, None))?;
            let method = method.method();
            let mut m = original.try_clone()?;
            let mut on_epoch = |epoch: usize,
                                now: &amun::model::Classifier|
             -> amun::Result<bool> {
                let p = probes.probe(now);
                let a = aud(now)?;
                let g = avg_gap(&a.scores, &rt);
                println!(
                    "{name}\t{lr}\t{epoch}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{g:.2}",
                    p.forget_acc,
                    p.heldout_acc,
                    p.retain_acc,
                    p.loss_auc,
                    p.confidence_ks,
                    a.scores.unlearn,
                    a.scores.retain,
                    a.scores.test,
                    a.scores.mia
                );
                rows.borrow_mut().push((lr, epoch, p, g));
                Ok(true)
            };
            let ctx = RunCtx {
                seed: amun::seed::derive(0, name, u64::from(with_retain)),
                progress: &Quiet,
                original_recipe: Some(&recipe),
                observe: None,
                on_epoch: Some(std::cell::RefCell::new(&mut on_epoch)),
            };
            method.unlearn(&mut m, &req, &ctx)?;
        }
        let rows = rows.into_inner();
        let best = rows
            .iter()
            .min_by(|a, b| a.3.total_cmp(&b.3))
            .expect("rows");
        let default_gap = {
            let method = base.method();
            let mut m = original.try_clone()?;
            let ctx = RunCtx {
                seed: amun::seed::derive(0, name, u64::from(with_retain)),
                progress: &Quiet,
                original_recipe: Some(&recipe),
                observe: None,
                on_epoch: None,
            };
            method.unlearn(&mut m, &req, &ctx)?;
            avg_gap(&aud(&m)?.scores, &rt)
        };
        println!(
            "## {name}: defaults {default_gap:.2}; grid best {:.2} (lr {} ep {}){}",
            best.3,
            best.0,
            best.1,
            rule_picks(&rows, &p0)
        );
    }
    Ok(())
}

/// The last `n` test images: what calibration may look at.
fn last_test_images(test: &Split, n: usize) -> Split {
    let from = (test.len() - n) as i64;
    Split {
        images: test.images.narrow(0, from, n as i64),
        labels: test.labels.narrow(0, from, n as i64),
    }
}

/// A measured state of the grid: (lr, epoch, probe, real gap).
type Row = (f64, usize, amun::unlearn::Probe, f64);

/// The real gap of the state each rule × guard would pick from `rows`.
fn rule_picks(rows: &[Row], p0: &amun::unlearn::Probe) -> String {
    let mut line = String::new();
    for rule in [Rule::Accuracy, Rule::Mia, Rule::Confidence, Rule::ProxyGap] {
        // (label, points, whether retain accuracy is guarded too)
        for (label, drop, retain_too) in [
            ("3", 3.0, true),
            ("10", 10.0, true),
            ("noguard", f64::INFINITY, true),
            ("heldout3", 3.0, false),
        ] {
            let keeps = |p: &amun::unlearn::Probe| {
                let ok = |now: f64, then: f64| {
                    !now.is_finite() || !then.is_finite() || now >= then - drop
                };
                ok(p.heldout_acc, p0.heldout_acc)
                    && (!retain_too || ok(p.retain_acc, p0.retain_acc))
            };
            let pick = rows
                .iter()
                .map(|r| (r, keeps(&r.2), score(rule, &r.2, p0)))
                .min_by(|a, b| (!a.1, a.2).partial_cmp(&(!b.1, b.2)).unwrap())
                .expect("rows");
            line.push_str(&format!(
                "; {rule:?}/{label}: {:.2} (lr {} ep {})",
                pick.0.3, pick.0.0, pick.0.1
            ));
        }
    }
    line
}
