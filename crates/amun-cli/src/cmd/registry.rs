//! `amun registry …`: deletion requests as a workflow. Each subcommand
//! turns its flags into one library call on the registry folder and prints
//! a table or `--json`.
use super::flags::{CalibrateArgs, FinetuneArgs, SetArgs};
use super::{DataDir, device, pct, print_json};
use amun::experiment::SlurmSection;
use amun::registry::{
    self, ApplyCap, ApplySpec, CreateSpec, Policy, Registry, RequestState, RetrainExecutor,
    RetrainOutcome, RetrainSpec, VersionRow,
};
use amun::report::Table;
use amun::unlearn::MethodSpec;
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Make a registry from a trained checkpoint (its first version)
    Create(CreateArgs),
    /// Add deletion requests (one per file): all files checked, then added together
    Add(AddArgs),
    /// List requests (with their status) and versions
    List(ListArgs),
    /// Show one request (its samples) or one version (its audit)
    Show(ShowArgs),
    /// Apply the pending requests as one batch: a new version with its audit
    Apply(Box<ApplyArgs>),
    /// Print a version's certificate (Markdown or JSON), writing it first
    /// if it was never written (an issued certificate is never rewritten)
    Certificate(CertificateArgs),
    /// Re-hash every file and record of the registry and name what changed;
    /// with its anchor (anchor.log, made by every commit) and the receipts
    /// `add` handed out, also a registry.db put back to an older copy or
    /// whose newest records were deleted (without them, only what the
    /// chain itself shows: an older database is an intact shorter chain)
    Verify(VerifyArgs),
    /// The exact retrain without every forgotten sample, when the policy
    /// says so (or --force): locally or as a Slurm job; a new root
    Retrain(RetrainArgs),
    /// Set when the exact retrain is due
    Policy(PolicyArgs),
    /// Keep a copy of the anchor (every commit's chain head) in another
    /// file from now on, e.g. on another disk
    Anchor(AnchorArgs),
    /// Write a request's receipt (receipts/rNNNN.json) again from the
    /// records when it is missing (an add stopped after its commit); one
    /// that is there is never replaced
    Receipt(ReceiptArgs),
}

pub fn run(c: RegistryCmd) -> Result<()> {
    match c {
        RegistryCmd::Create(a) => create(a).map_err(|e| super::flags::in_flags(e, &[])),
        RegistryCmd::Add(a) => add(a).map_err(|e| super::flags::in_flags(e, &[])),
        RegistryCmd::List(a) => list(a),
        RegistryCmd::Show(a) => show(a),
        RegistryCmd::Apply(a) => {
            let given = a.finetune.given();
            apply(*a).map_err(|e| super::flags::in_flags(e, &given))
        }
        RegistryCmd::Certificate(a) => certificate(a),
        RegistryCmd::Verify(a) => verify(a),
        RegistryCmd::Retrain(a) => retrain(a),
        RegistryCmd::Policy(a) => policy(a),
        RegistryCmd::Anchor(a) => anchor(a),
        RegistryCmd::Receipt(a) => receipt(a),
    }
}

/// The registry folder.
#[derive(Args, Debug, Clone)]
pub struct RegistryDir {
    /// The registry folder
    #[arg(long, value_name = "DIR")]
    pub registry: PathBuf,
}

/// The retrain policy's flags.
#[derive(Args, Debug, Clone)]
pub struct PolicyFlags {
    /// Retrain exactly once this many requests were absorbed since the last root
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub retrain_after_requests: Option<usize>,
    /// Retrain exactly once this fraction of the training set was forgotten
    /// since the last root (e.g. 0.05)
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    pub retrain_after_fraction: Option<f64>,
}

impl PolicyFlags {
    fn policy(&self) -> Policy {
        Policy {
            after_requests: self.retrain_after_requests,
            after_fraction: self.retrain_after_fraction,
        }
    }
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// A model amun trained on the whole training split (.safetensors with its sidecar)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The last N test images calibration looks at (audits leave them out)
    /// [default: a tenth of the test split]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub holdout_test: Option<usize>,
    /// RMIA reference models of the model's data (`amun rmia train-refs`):
    /// every audit then adds RMIA and MIS
    #[arg(long, value_name = "DIR")]
    pub refs: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Seed of every random choice of the registry's applies and audits
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// A copy of the anchor (every commit's chain head) kept outside the
    /// registry folder, e.g. on another disk: verify then also names a
    /// registry folder put back whole to an older copy
    #[arg(long, value_name = "FILE")]
    pub anchor_copy: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDir,
    #[arg(long)]
    pub json: bool,
    /// No progress output (warnings are still shown)
    #[arg(short, long)]
    pub quiet: bool,
}

fn create(a: CreateArgs) -> Result<()> {
    let spec = CreateSpec {
        checkpoint: a.checkpoint.clone(),
        holdout_test: a.holdout_test,
        refs: a.refs.clone(),
        policy: a.policy.policy(),
        seed: a.seed,
        data_dir: a.data.path(),
        anchor_copy: a.anchor_copy.clone(),
    };
    let bars = crate::progress::Bars::terse(a.quiet);
    let reg = Registry::create(&a.dir.registry, &spec, &bars)?;
    let info = reg.info()?;
    let head = reg.head()?;
    if a.json {
        return print_json(
            &super::json::object! { registry: info.to_output(), version: head.to_output() },
        );
    }
    let audit = head.audit()?;
    super::outln!(
        "{}: registry of {} ({} training samples named by {}), version 1 = {} (test {}% on \
         {} audit images; {} held out for calibration); retrain policy: {}",
        a.dir.registry.display(),
        reg.data_spec()?.train_label(),
        info.train_size,
        info.sample_names,
        a.checkpoint.display(),
        pct(audit.heldout.test_acc),
        audit.heldout.test_images,
        info.holdout_test,
        reg.policy()?.describe()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// Request files: any list `amun split --from` reads (indices), or for an
    /// image folder one image path a line (relative to the dataset folder)
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Free text kept with each request (a ticket, an e-mail)
    #[arg(long, default_value = "")]
    pub reference: String,
    /// When the request was received, UTC (2026-03-01 or
    /// 2026-03-01T12:00:00Z) [default: now]
    #[arg(long, value_name = "TIME")]
    pub received: Option<String>,
    /// Also write the request's receipt to this new file (one request file
    /// only); the registry keeps its own in receipts/rNNNN.json
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<PathBuf>,
    // Where a class or sealed forget set's data (MNIST, CIFAR-10) is
    // read from, as the registry's other commands read it.
    #[command(flatten)]
    pub data: DataDir,
    #[arg(long)]
    pub json: bool,
}

fn add(a: AddArgs) -> Result<()> {
    for f in &a.files {
        amun::outputs::require_file(
            "FILE",
            "a deletion request: a list of training indices (any list `amun split --from` \
             reads) or, for an image folder, image paths",
            f,
        )?;
    }
    // The receipt's checks, its reservation before the commit and its
    // writing after it are the library's (`add_requests_receipt`); its
    // path is checked before the registry is opened.
    registry::check_add_receipt(&a.files, a.receipt.as_deref())?;
    let added = Registry::open(&a.dir.registry).and_then(|mut reg| {
        let added = reg.add_requests_receipt(
            &a.files,
            &a.reference,
            a.received.as_deref(),
            a.receipt.as_deref(),
            &a.data.path(),
        );
        for w in reg.take_warnings() {
            eprintln!("warning: {w}");
        }
        added
    })?;
    if a.json {
        return print_json(&added);
    }
    for s in &added {
        let r = &s.status;
        super::outln!(
            "request {}: {} sample(s) from {}, {}; {} (samples sha256 {}, chain head {} {})",
            r.request.id,
            r.request.size,
            r.request.source,
            match r.absorbed_by {
                Some(v) => format!("already forgotten by version {v} (absorbed)"),
                None => RequestState::Pending.to_string(),
            },
            match &s.receipt_file {
                Some(f) => format!("receipt {}", f.display()),
                None => "its receipt was NOT written (see the warning)".into(),
            },
            short(&r.request.samples_sha256),
            s.receipt.head_seq,
            short(&s.receipt.head_hash)
        );
    }
    Ok(())
}

/// The first 12 hex digits of a hash, as messages show them.
fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// requests, versions or all
    #[arg(default_value = "all")]
    pub what: String,
    #[arg(long)]
    pub json: bool,
}

fn list(a: ListArgs) -> Result<()> {
    let reg = Registry::open_read(&a.dir.registry)?;
    let (req, ver) = match a.what.as_str() {
        "all" => (true, true),
        "requests" => (true, false),
        "versions" => (false, true),
        w => bail!("'{w}': expected requests, versions or all"),
    };
    let requests = if req {
        reg.request_status()?
    } else {
        Vec::new()
    };
    let versions = if ver { reg.versions()? } else { Vec::new() };
    if a.json {
        let versions: Vec<_> = versions.iter().map(VersionRow::to_output).collect();
        return print_json(&super::json::object! { requests: requests, versions: versions });
    }
    if ver {
        let mut t = Table::new([
            "version",
            "kind",
            "parent",
            "created",
            "method",
            "forgotten",
            "forget %",
            "test %",
            "loss AUC",
        ]);
        for v in &versions {
            let au = v.audit()?;
            t.row([
                v.id.to_string(),
                v.kind.to_string(),
                v.parent.map_or("-".into(), |p| p.to_string()),
                v.created.clone(),
                v.method.clone().unwrap_or("-".into()),
                v.forgotten.to_string(),
                au.heldout.forget_acc.map_or("-".into(), pct),
                pct(au.heldout.test_acc),
                au.heldout.loss_auc.map_or("-".into(), pct),
            ]);
        }
        super::emit(&t.render())?;
    }
    if req {
        if ver {
            super::outln!("");
        }
        let mut t = Table::new(["request", "received", "reference", "samples", "status"]);
        for r in &requests {
            t.row([
                r.request.id.to_string(),
                r.request.received.clone(),
                amun::report::cell(&r.request.reference),
                r.request.size.to_string(),
                match (r.absorbed_by, &r.how) {
                    (Some(v), Some(h)) => format!("absorbed by v{v} ({h})"),
                    _ => RequestState::Pending.to_string(),
                },
            ]);
        }
        super::emit(&t.render())?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// request or version
    pub what: String,
    // A negative number gets "no such version", not clap's "use -- -1".
    #[arg(allow_negative_numbers = true)]
    pub id: i64,
    #[arg(long)]
    pub json: bool,
}

fn show(a: ShowArgs) -> Result<()> {
    let reg = Registry::open_read(&a.dir.registry)?;
    match a.what.as_str() {
        "request" => {
            let st = reg
                .request_status()?
                .into_iter()
                .find(|r| r.request.id == a.id)
                .ok_or_else(|| anyhow::anyhow!("request {}: no such request", a.id))?;
            let samples = reg.request_samples(a.id)?;
            if a.json {
                let s: Vec<Value> = samples
                    .iter()
                    .map(
                        |s| serde_json::json!({"index": s.idx, "path": s.path, "sha256": s.sha256}),
                    )
                    .collect();
                return print_json(&super::json::object! { request: st, samples: s });
            }
            let r = &st.request;
            super::outln!(
                "request {}: received {}, added {}, reference '{}', from {}; {} sample(s) \
                 (digest {}); {}",
                r.id,
                r.received,
                r.added,
                r.reference,
                r.source,
                r.size,
                r.samples_sha256,
                match st.absorbed_by {
                    Some(v) => format!(
                        "absorbed by version {v} ({})",
                        st.how.map_or(String::new(), |h| h.to_string())
                    ),
                    None => RequestState::Pending.to_string(),
                }
            );
            let mut t = Table::new(["sample", "file", "sha256"]);
            for s in &samples {
                t.row([
                    s.idx.to_string(),
                    s.path.clone().unwrap_or("-".into()),
                    s.sha256.clone(),
                ]);
            }
            super::emit(&t.render())
        }
        "version" => {
            let v = reg.version(a.id)?;
            if a.json {
                return print_json(&super::json::object! {
                    audit: v.audit()?,
                    absorbed: reg.absorbed(a.id)?,
                    version: v.to_output(),
                });
            }
            super::emit(&registry::render_markdown(&registry::certificate(
                &reg, a.id,
            )?))
        }
        w => bail!("'{w}': expected request or version"),
    }
}

#[derive(Args, Debug)]
#[command(mut_arg("calibrate_max_cost", |a| a.help(
    "The most the whole apply's calibration may cost, as a fraction of the exact retrain the \
     batch replaces (the root's recipe without every sample forgotten after it; the adversarial \
     search included): the pending requests share it equally; none: no cap [default: 1, never \
     more than `amun registry retrain`; no cap for --calibrate-walk restart]"
)))]
pub struct ApplyArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// The method (see `amun methods`)
    #[arg(long, default_value = "amun")]
    pub method: String,
    /// Run the method at its settings instead of calibrating the learning
    /// rate and stopping epoch on the registry's held-out test images
    #[arg(long)]
    pub no_calibrate: bool,
    #[command(flatten)]
    pub calibration: CalibrateArgs,
    /// Recompute the adversarial set for each pending request (AMUN-A)
    #[arg(long)]
    pub adaptive: bool,
    /// Unlearn without access to the retain set
    #[arg(long)]
    pub no_retain: bool,
    #[command(flatten)]
    pub finetune: FinetuneArgs,
    #[command(flatten)]
    pub settings: SetArgs,
    #[command(flatten)]
    pub data: DataDir,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

fn apply(a: ApplyArgs) -> Result<()> {
    let overrides = a.finetune.overrides()?;
    let table = a.settings.table(Map::new(), &overrides)?;
    let method = MethodSpec::new(&a.method, &table)?;
    let cal = a.calibration.overrides()?;
    let effective = if overrides.is_empty() {
        method.clone()
    } else {
        method.adjusted(&overrides)?
    };
    amun::unlearn::check_given(effective.method(), method.table(), !a.no_retain)?;
    let cost_cap = a.calibration.apply_cap();
    if a.no_calibrate && (!cal.is_empty() || cost_cap != ApplyCap::Default) {
        bail!(
            "{}: calibration settings, which --no-calibrate turns off; drop one or the other",
            a.calibration.given().join(", ")
        );
    }
    cal.check_with_retain(!a.no_retain)?;
    let spec = ApplySpec {
        method,
        overrides,
        calibrate: if a.no_calibrate {
            None
        } else {
            Some(cal.settings()?)
        },
        with_retain: !a.no_retain,
        adaptive: a.adaptive,
        cost_cap,
        device: device(&a.device)?,
        data_dir: a.data.path(),
    };
    let bars = crate::progress::Bars::terse(a.quiet || a.json);
    let Some(done) = registry::apply(&a.dir.registry, &spec, &bars)? else {
        if a.json {
            return print_json(&serde_json::json!({ "applied": null }));
        }
        super::outln!(
            "{}: no pending request; nothing to apply",
            a.dir.registry.display()
        );
        return Ok(());
    };
    if a.json {
        return print_json(&done);
    }
    let v = &done.version;
    if !done.new_version {
        super::outln!(
            "request(s) {:?}: every sample already forgotten by version {} (absorbed, no new \
             version)",
            done.covered,
            v.id
        );
    } else {
        let mut t = Table::new(["split", "before %", "after %"]);
        for (i, n) in ["forget (this batch)", "retain", "test"].iter().enumerate() {
            t.row([n.to_string(), pct(done.before[i]), pct(done.after[i])]);
        }
        super::emit(&t.render())?;
        if let Some(au) = &done.audit {
            let h = &au.heldout;
            super::outln!(
                "audit of version {} on {} forgotten samples vs {} held-out test images: forget \
                 {}%, test {}%, loss AUC {}{}",
                v.id,
                au.forgotten,
                h.test_images,
                h.forget_acc.map_or("-".into(), pct),
                pct(h.test_acc),
                h.loss_auc.map_or("-".into(), pct),
                au.rmia
                    .as_ref()
                    .map(|r| format!(", RMIA AUC {}, MIS {}", pct(r.scores.mia), pct(r.mis)))
                    .unwrap_or_default()
            );
        }
        super::outln!(
            "version {} ({} from version {}, {:.1}s): absorbed request(s) {:?}{}; certificate {}",
            v.id,
            v.method.as_deref().unwrap_or("?"),
            v.parent.unwrap_or(0),
            v.seconds,
            done.unlearned,
            if done.covered.is_empty() {
                String::new()
            } else {
                format!(" and {:?} (already forgotten)", done.covered)
            },
            done.certificate
                .as_ref()
                .map_or(String::new(), |c| c.0.display().to_string())
        );
    }
    if let Some(why) = &done.retrain_due {
        super::outln!("retrain policy: due ({why}); run `amun registry retrain`");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct CertificateArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// The version [default: the head]
    #[arg(long, allow_negative_numbers = true)]
    pub version: Option<i64>,
    /// Print the JSON instead of the Markdown
    #[arg(long)]
    pub json: bool,
}

fn certificate(a: CertificateArgs) -> Result<()> {
    let reg = Registry::open_read(&a.dir.registry)?;
    let id = match a.version {
        Some(v) => v,
        None => reg.head()?.id,
    };
    let issued = registry::ensure_certificate(&reg, id)?;
    registry::check_issued_certificate(&reg, id)?;
    for w in &issued.warnings {
        eprintln!("{w}");
    }
    let (md, json) = (issued.markdown, issued.json);
    if a.json {
        return super::emit(&std::fs::read_to_string(&json)?);
    }
    super::emit(&std::fs::read_to_string(&md)?)?;
    eprintln!("certificate: {} and {}", md.display(), json.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// Receipts `add` handed out (besides those in the registry's
    /// receipts/ folder): each request they acknowledge must be in the
    /// database as recorded
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub receipt: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

fn verify(a: VerifyArgs) -> Result<()> {
    // A receipt that is not there is the argument's fault, not a finding
    // about the registry (hostile9 VR1).
    for r in &a.receipt {
        amun::outputs::require_file("--receipt", "a receipt `amun registry add` wrote", r)?;
    }
    let v = registry::verify(&a.dir.registry, &a.receipt)?;
    if a.json {
        print_json(&v)?;
    } else {
        for f in &v.findings {
            super::outln!("CHANGED {f}");
        }
        for n in &v.notes {
            if n.starts_with("warning:") {
                eprintln!("{n}");
            } else {
                eprintln!("note: {n}");
            }
        }
    }
    if !v.ok() {
        bail!(
            "{}: {} problem(s) found; the first: {}",
            a.dir.registry.display(),
            v.findings.len(),
            v.findings[0]
        );
    }
    if !a.json {
        super::outln!(
            "{}: intact — {}, {}, {}, {} re-hashed, {} receipt(s) checked, {}; chain head {} \
             ({}); {}",
            a.dir.registry.display(),
            registry::counted(v.records, "chained record"),
            registry::counted(v.versions, "version"),
            registry::counted(v.requests, "request"),
            registry::counted(v.files, "file"),
            v.receipts,
            v.data,
            v.head_seq,
            short(&v.head_hash),
            match v.anchored_seq {
                Some(s) => anchored(s, &v.anchor_ends),
                None => "NOT anchored: a registry.db put back to an older copy could not be \
                         told"
                    .into(),
            }
        );
    }
    Ok(())
}

/// "anchored up to record S", naming each anchor file that ends before S
/// (a line that could not be written): only what the files hold.
fn anchored(s: i64, ends: &[(String, i64)]) -> String {
    let behind: Vec<String> = ends
        .iter()
        .filter(|(_, e)| *e < s)
        .map(|(f, e)| format!("{f} only up to {e}"))
        .collect();
    if behind.is_empty() {
        format!("anchored up to record {s}")
    } else {
        format!("anchored up to record {s} ({})", behind.join(", "))
    }
}

#[derive(Args, Debug)]
pub struct ReceiptArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// The request whose receipt to write again
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub request: i64,
    /// Print the receipt as JSON
    #[arg(long)]
    pub json: bool,
}

fn receipt(a: ReceiptArgs) -> Result<()> {
    let reg = Registry::open(&a.dir.registry)?;
    let (receipt, file, written) = reg.reissue_receipt(a.request)?;
    if a.json {
        return print_json(&receipt);
    }
    super::outln!(
        "request {}: receipt {} {} (chain record {}, chain head {} {})",
        a.request,
        file.display(),
        if written {
            "written again from the records"
        } else {
            "is there already (never replaced)"
        },
        receipt.record.seq,
        receipt.head_seq,
        short(&receipt.head_hash)
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct RetrainArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// Retrain even when the policy is not met
    #[arg(long)]
    pub force: bool,
    /// Run the retrain as a Slurm job (resources of the `train` kind from
    /// --slurm-config, as for experiments)
    #[arg(long)]
    pub slurm: bool,
    /// A TOML file with an experiment's [slurm] keys at its top level
    #[arg(long, value_name = "FILE", requires = "slurm")]
    pub slurm_config: Option<PathBuf>,
    /// With --slurm: wait for the job and report its version
    #[arg(long, requires = "slurm")]
    pub wait: bool,
    /// Wait for the Slurm job of an earlier retrain
    #[arg(long, value_name = "ID", conflicts_with_all = ["slurm", "force", "run"], allow_negative_numbers = true)]
    pub wait_for: Option<i64>,
    /// Run retrain ID (what its Slurm job does)
    #[arg(long, value_name = "ID", hide = true, conflicts_with_all = ["slurm", "force"], allow_negative_numbers = true)]
    pub run: Option<i64>,
    /// libtorch threads (bits depend on it)
    #[arg(long, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub data: DataDir,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

fn retrain(a: RetrainArgs) -> Result<()> {
    if let Some(t) = a.threads {
        amun::device::check_threads(t).map_err(|e| anyhow::anyhow!("--threads: {e}"))?;
        tch::set_num_threads(t as i32);
    }
    let bars = crate::progress::Bars::terse(a.quiet || a.json);
    let outcome = if let Some(id) = a.run {
        let (v, set_aside) = registry::run_retrain(
            &a.dir.registry,
            id,
            device(&a.device)?,
            &a.data.path(),
            &bars,
        )?;
        RetrainOutcome::Retrained {
            retrain: id,
            certificate: a.dir.registry.join(format!("certificates/v{:04}.md", v.id)),
            version: Box::new(v),
            set_aside,
        }
    } else if let Some(id) = a.wait_for {
        let v = registry::wait_retrain(
            &a.dir.registry,
            id,
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(86_400),
        )?;
        RetrainOutcome::Retrained {
            retrain: id,
            certificate: a.dir.registry.join(format!("certificates/v{:04}.md", v.id)),
            version: Box::new(v),
            set_aside: None,
        }
    } else {
        let executor = if a.slurm {
            let section = match &a.slurm_config {
                Some(p) => SlurmSection::read(p)?,
                None => SlurmSection::default(),
            };
            let mut section = section;
            if a.threads.is_some() {
                section.threads = a.threads;
            }
            RetrainExecutor::Slurm {
                section: Box::new(section),
                amun: std::env::current_exe()?,
                device: a.device.clone(),
                wait: a.wait,
            }
        } else {
            RetrainExecutor::Local
        };
        let spec = RetrainSpec {
            force: a.force,
            executor,
            device: if a.slurm {
                tch::Device::Cpu
            } else {
                device(&a.device)?
            },
            data_dir: a.data.path(),
        };
        registry::retrain(&a.dir.registry, &spec, &bars)?
    };
    if a.json {
        return print_json(&outcome);
    }
    match outcome {
        RetrainOutcome::NotDue { why, .. } => super::outln!("no retrain: {why}"),
        RetrainOutcome::Submitted {
            retrain, job, log, ..
        } => super::outln!(
            "retrain {retrain}: Slurm job {job} (log {}); `amun registry retrain --wait-for \
             {retrain}` waits for it",
            log.display()
        ),
        RetrainOutcome::Retrained {
            retrain,
            version,
            certificate,
            ..
        } => {
            let au = version.audit()?;
            super::outln!(
                "retrain {retrain}: version {} is a new root, trained without the {} forgotten \
                 sample(s) (sidecar exclusion checked, indices sha256 {}) in {:.1}s: forget {}%, \
                 test {}%{}; certificate {}",
                version.id,
                version.forgotten,
                version.forgotten_sha256,
                version.seconds,
                au.heldout.forget_acc.map_or("-".into(), pct),
                pct(au.heldout.test_acc),
                au.retrain
                    .as_ref()
                    .map(|c| format!(
                        "; version {} lies {:.2} accuracy points from it{}",
                        c.version,
                        c.accuracy_gap,
                        c.avg_gap
                            .map_or(String::new(), |g| format!(" (Avg. Gap {g:.2})"))
                    ))
                    .unwrap_or_default(),
                certificate.display()
            )
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct AnchorArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    /// The copy: a new (or empty) file outside the registry folder
    #[arg(long, value_name = "FILE")]
    pub copy: PathBuf,
}

fn anchor(a: AnchorArgs) -> Result<()> {
    let mut reg = Registry::open(&a.dir.registry)?;
    // The library names the setting; the user typed --copy.
    let copy = reg.set_anchor_copy(&a.copy).map_err(|e| {
        anyhow::anyhow!(e.naming(&|k| (k == "anchor-copy").then(|| "--copy".to_string())))
    })?;
    for w in reg.take_warnings() {
        eprintln!("warning: {w}");
    }
    super::outln!(
        "{}: the anchor is also kept in {} from now on",
        a.dir.registry.display(),
        copy.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub dir: RegistryDir,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Never retrain unless forced
    #[arg(long, conflicts_with_all = ["retrain_after_requests", "retrain_after_fraction"])]
    pub never: bool,
}

fn policy(a: PolicyArgs) -> Result<()> {
    let p = a.policy.policy();
    // The values first: they are what the user typed last.
    p.check()?;
    let mut reg = Registry::open(&a.dir.registry)?;
    if p == Policy::default() && !a.never {
        super::outln!("retrain policy: {}", reg.policy()?.describe());
        return Ok(());
    }
    reg.set_policy(&p)?;
    for w in reg.take_warnings() {
        eprintln!("warning: {w}");
    }
    super::outln!("retrain policy set: {}", p.describe());
    if let Some(why) = reg.retrain_due()? {
        super::outln!("the retrain is due now ({why}); run `amun registry retrain`");
    }
    Ok(())
}
