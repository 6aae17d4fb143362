//! `amun._amun`: the native half of the Python package `amun`. It turns
//! what `python/amun/__init__.py` hands over (a request as JSON, tensors as
//! pointers into PyTorch's memory) into the library's values and runs the
//! library's own entry points (`open_program`, `RunSettings`, `audit::audit`
//! with the checks `amun audit` makes, `registry::*` as `amun registry`
//! calls them); every decision about data, models and runs stays in the
//! `amun` crate.
//!
//! Tensors cross as `(data_ptr, shape, strides, dtype, device)` tuples of
//! tensors the Python caller keeps alive for the call: the process holds
//! one libtorch (PyTorch's), so a view made here over that memory is a view
//! of the caller's tensor.
use amun::audit::{
    References, RmiaParams, Signal, audit as audit_model, audit_holdout, audit_seed, avg_gap,
    check_ref_count, check_retrain, load_references, train_references,
};
use amun::data::{DataSpec, Dataset, ForgetFile, ForgetSet, HeldOut, Split};
use amun::eval::Accuracy;
use amun::model::{Arch, Classifier, Normalize, OpenSpec, Opened, import_program, open_program};
use amun::model::{Sidecar, checkpoint};
use amun::outputs::{Artifact, Outputs};
use amun::progress::{Progress, Quiet};
use amun::registry::{self, ApplyCap, ApplySpec, CreateSpec, Policy, Registry};
use amun::train::{
    Subset, TrainJob, TrainOverrides, TrainParams, record_final_metrics, train as train_model,
};
use amun::unlearn::{CalibrateOverrides, MethodSpec, RunSettings, check_given};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{Device, Kind, Tensor};

create_exception!(
    _amun,
    Error,
    PyException,
    "An error of the amun library: args are (kind, message)."
);

/// A library error as `_amun.Error(kind, message)`; `__init__.py` raises
/// the matching `amun` exception with the message.
fn py_err(e: amun::Error) -> PyErr {
    let kind = match &e {
        amun::Error::Invalid { .. } | amun::Error::Setting { .. } | amun::Error::Device { .. } => {
            "invalid"
        }
        amun::Error::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound => "not-found",
        _ => "amun",
    };
    Error::new_err((kind, e.to_string()))
}

fn invalid(what: &str, msg: impl Into<String>) -> PyErr {
    py_err(amun::Error::invalid(what, msg))
}

/// A tensor of the caller's, as `__init__.py`'s `_ref` describes it.
type TensorRef = (usize, Vec<i64>, Vec<i64>, String, String);

fn kind_of(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "torch.uint8" => Kind::Uint8,
        "torch.int64" => Kind::Int64,
        "torch.float32" => Kind::Float,
        "torch.float64" => Kind::Double,
        "torch.float16" => Kind::Half,
        "torch.bfloat16" => Kind::BFloat16,
        _ => return None,
    })
}

/// A view of the caller's tensor (no copy).
///
/// # Safety
/// The pointer, shape, strides and dtype must describe a live tensor that
/// the caller keeps alive while the view is used.
unsafe fn view(what: &str, r: &TensorRef) -> PyResult<Tensor> {
    let (ptr, shape, strides, dtype, device) = r;
    let kind = kind_of(dtype).ok_or_else(|| invalid(what, format!("unsupported dtype {dtype}")))?;
    let device = amun::device::parse_device(device).map_err(py_err)?;
    // SAFETY: the caller's contract above.
    unsafe { Tensor::f_from_blob(*ptr as *const u8, shape, strides, kind, device) }
        .map_err(|e| invalid(what, e.to_string()))
}

/// An owned copy of a split the caller holds (the job keeps its data for
/// the whole run, past any Python reference).
fn split(what: &str, images: &TensorRef, labels: &TensorRef) -> PyResult<Split> {
    // SAFETY: `__init__.py` passes live, contiguous tensors it holds.
    let (i, l) = unsafe { (view(what, images)?, view(what, labels)?) };
    Ok(Split {
        images: i.copy(),
        labels: l.copy(),
    })
}

/// The model and the data as the caller gives them: the `.pt2` amun runs
/// (the module exported, or the caller's file) over the caller's tensors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    program: PathBuf,
    normalize: Option<String>,
    dataset: String,
    classes: Vec<String>,
}

/// Opens `source`'s model over the caller's splits on `dev`: a `.pt2` as
/// `amun unlearn --checkpoint model.pt2` opens it over data it read, or an
/// amun checkpoint (`amun.train(..., out=)`), whose training tensors must
/// be these ([`check_trained_on`]). The data are named by their record
/// (`tensors(images … sha256:…, labels …)`), as `amun.train` names them, so
/// a retrain's record of its forget set can be checked against them too.
fn open_tensors(source: &Source, train: Split, test: Split, dev: Device) -> amun::Result<Opened> {
    let name = SplitRecord::of(&train).name();
    let program = &source.program;
    if is_checkpoint(program) {
        let sc = checkpoint::read_sidecar(program)?;
        check_trained_on(&sc, program, &name)?;
        let data = named(
            Dataset::from_splits(spec_of(source), sc.classes.clone(), train, test)?,
            name,
        );
        return open_checkpoint_over(program, sc, data, dev);
    }
    let data = named(
        Dataset::from_splits(spec_of(source), source.classes.clone(), train, test)?,
        name,
    );
    let spec = OpenSpec {
        normalize: source.normalize.clone(),
        ..Default::default()
    };
    open_program(program, &spec, data, dev)
}

/// The name `Dataset::from_splits`'s messages give the caller's data.
fn spec_of(source: &Source) -> DataSpec {
    DataSpec::new(source.dataset.clone())
}

/// `data` named `name` (its record), once `from_splits` has checked it.
fn named(mut data: Dataset, name: String) -> Dataset {
    data.spec = DataSpec::new(name);
    data
}

/// An amun checkpoint: weights with the sidecar that records their data.
fn is_checkpoint(path: &Path) -> bool {
    amun::model::ModelSource::classify(path) == amun::model::ModelSource::Amun
}

/// Opens the checkpoint at `path` (its sidecar `sc`) over the caller's
/// `data`, with the checks `amun::model::open` makes of data it read.
fn open_checkpoint_over(
    path: &Path,
    sc: Sidecar,
    data: Dataset,
    dev: Device,
) -> amun::Result<Opened> {
    let mut notes: Vec<String> = sc.incomplete_warning(path).into_iter().collect();
    sc.model
        .check_data(data.image_shape(), data.num_classes(), path)?;
    notes.extend(sc.check_data(&data, path)?);
    let (model, sc) = checkpoint::load_as(path, sc, dev)?;
    Ok(Opened {
        model,
        sidecar: sc,
        data,
        notes,
    })
}

/// Refuses training tensors other than the ones the checkpoint at `path`
/// was trained on (`given`: their record's name): forget-set indices,
/// retain sets and RMIA's memberships would name other samples. Only the
/// training split is checked: a model may be evaluated on any test split.
fn check_trained_on(sc: &Sidecar, path: &Path, given: &str) -> amun::Result<()> {
    let recorded = sc.data.train_label();
    if recorded == given {
        return Ok(());
    }
    if !recorded.starts_with("tensors(") {
        return Err(amun::Error::invalid(
            "data",
            format!(
                "{} was trained on {recorded}, a dataset amun reads itself, not on tensors: \
                 give data as that dataset (its registry name or folder)",
                path.display()
            ),
        ));
    }
    let differ: Vec<&str> = ["images", "labels"]
        .into_iter()
        .filter(|w| record_part(&recorded, w) != record_part(given, w))
        .collect();
    let differ = if differ.is_empty() {
        "tensors".to_string()
    } else {
        differ.join(" and ")
    };
    Err(amun::Error::invalid(
        "data",
        format!(
            "the {differ} differ from the ones {} was trained on: it records {recorded}, the \
             data given are {given}; forget-set indices and the audit would name other samples, \
             so give the tensors it was trained on (a different test split is fine)",
            path.display()
        ),
    ))
}

/// `images …` or `labels …` of a record's name `tensors(images …, labels …)`.
fn record_part<'a>(name: &'a str, what: &str) -> Option<&'a str> {
    name.strip_prefix("tensors(")?
        .strip_suffix(')')?
        .split(", ")
        .find(|p| p.starts_with(what))
}

/// What `amun.unlearn` asks for, besides the tensors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    source: Source,
    /// Data amun reads itself (`--dataset`); `None`: the caller's tensors.
    data_path: Option<String>,
    /// With `data_path`: calibration's held-out images, the last N test
    /// images (`--holdout-test`).
    holdout_test: Option<usize>,
    forget: Forget,
    method: String,
    settings: serde_json::Value,
    train: Keywords,
    calibrate: Option<Keywords>,
    seed: u64,
    device: String,
}

/// Keyword arguments (`epochs=`, `calibrate={...}`) as the caller gave
/// them; [`keywords`] turns them into the library's settings.
type Keywords = serde_json::Map<String, serde_json::Value>;

/// `table` as the library's `T`, each key deserialised alone first: serde's
/// message for the whole table names a line and column of JSON the caller
/// never wrote, this one names the keyword (`prefix` + key).
fn keywords<T: serde::de::DeserializeOwned>(prefix: &str, table: &Keywords) -> amun::Result<T> {
    for (key, value) in table {
        let one = Keywords::from_iter([(key.clone(), value.clone())]);
        serde_json::from_value::<T>(serde_json::Value::Object(one)).map_err(|e| {
            // A field's own parser may name it already (`schedule: 'x': ...`).
            let msg = e.to_string();
            let msg = msg.strip_prefix(&format!("{key}: ")).unwrap_or(&msg);
            amun::Error::invalid(format!("{prefix}{key}"), msg)
        })?;
    }
    serde_json::from_value(serde_json::Value::Object(table.clone())).map_err(|e| {
        amun::Error::invalid(
            prefix.trim_end_matches('.').to_string() + "settings",
            e.to_string(),
        )
    })
}

/// The fine-tuning keywords (`epochs=`, `lr=`, ...) as `TrainOverrides`.
fn train_keywords(table: &Keywords) -> amun::Result<TrainOverrides> {
    keywords("", table)
}

/// `calibrate={...}` as `CalibrateOverrides`' settings.
fn calibrate_keywords(
    table: Option<&Keywords>,
) -> amun::Result<Option<amun::unlearn::CalibrateSettings>> {
    table
        .map(|t| keywords::<CalibrateOverrides>("calibrate.", t)?.settings())
        .transpose()
}

/// Runs one unlearning request and writes the unlearned weights into
/// `targets` (the module's `state_dict()` tensors, by name); returns the
/// record as JSON.
#[pyfunction]
#[pyo3(signature = (request, train, heldout, targets, progress=None))]
fn unlearn(
    py: Python<'_>,
    request: &str,
    train: Option<(TensorRef, TensorRef)>,
    heldout: Option<(TensorRef, TensorRef)>,
    targets: HashMap<String, TensorRef>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let req: Request = serde_json::from_str(request)
        .map_err(|e| invalid("request", format!("malformed request from amun: {e}")))?;
    let splits = match &train {
        Some(tr) => {
            let train = split("data", &tr.0, &tr.1)?;
            let test = match &heldout {
                Some((i, l)) => split("heldout", i, l)?,
                None => Split {
                    images: train.images.narrow(0, 0, 0),
                    labels: train.labels.narrow(0, 0, 0),
                },
            };
            Some((train, test))
        }
        None => None,
    };
    let progress = PyProgress::new(progress);
    py.allow_threads(|| guard(|| run(req, splits, &targets, &progress)))
}

/// Opens `source`'s model over the dataset amun reads at `data_path`, as
/// `amun unlearn --checkpoint` and `amun audit --checkpoint` open it.
fn open_path(source: &Source, path: &Path, data_path: &str, dev: Device) -> amun::Result<Opened> {
    let spec = OpenSpec {
        normalize: source.normalize.clone(),
        dataset: Some(data_path.to_string()),
        ..Default::default()
    };
    amun::model::open(path, &spec, &amun::data::default_data_dir(), dev, &Quiet)
}

/// Reports the library's progress to a Python callback `(event, text, pos,
/// total)` (`event`: start, update, finish or note) and stops the run on
/// Ctrl-C: the epoch loop reports every ten batches, where the GIL is taken
/// for the callback and Python's pending signals are run.
struct PyProgress {
    callback: Option<Py<PyAny>>,
    /// The current phase's number of steps (`update` does not repeat it).
    total: AtomicU64,
}

/// The unwind that stops a run from inside [`PyProgress`], carrying the
/// Python exception (KeyboardInterrupt, or the callback's own error).
///
/// The library has no cancellation: an unwind out of its epoch loop is the
/// one way out that drops every tensor and lock on the way, and `guard`
/// turns it back into the exception before the caller's weights are
/// written, so the module is left as it was.
struct Stop(PyErr);

impl PyProgress {
    fn new(callback: Option<Py<PyAny>>) -> PyProgress {
        PyProgress {
            callback,
            total: AtomicU64::new(0),
        }
    }

    fn event(&self, event: &str, text: &str, pos: u64) {
        let total = self.total.load(Ordering::Relaxed);
        let res = Python::with_gil(|py| {
            py.check_signals()?;
            match &self.callback {
                Some(cb) => cb.call1(py, (event, text, pos, total)).map(drop),
                None => Ok(()),
            }
        });
        if let Err(e) = res {
            // resume_unwind: no panic hook, so nothing is printed.
            std::panic::resume_unwind(Box::new(Stop(e)));
        }
    }
}

impl Progress for PyProgress {
    fn start(&self, label: &str, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.event("start", label, 0);
    }
    fn update(&self, pos: u64, status: &str) {
        self.event("update", status, pos);
    }
    fn finish(&self, summary: &str) {
        self.event("finish", summary, self.total.load(Ordering::Relaxed));
    }
    fn note(&self, line: &str) {
        self.event("note", line, 0);
    }
}

/// Runs `f`, turning a panic (a bug in amun or a libtorch error it did not
/// expect) into an `amun.AmunError` rather than unwinding into Python, and
/// a [`Stop`] into its exception.
fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let p = match p.downcast::<Stop>() {
            Ok(stop) => return Err(stop.0),
            Err(p) => p,
        };
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(Error::new_err((
            "amun",
            format!("amun stopped on an internal error (please report it): {msg}"),
        )))
    })
}

fn run(
    req: Request,
    splits: Option<(Split, Split)>,
    targets: &HashMap<String, TensorRef>,
    progress: &PyProgress,
) -> PyResult<String> {
    let dev = amun::device::parse_device(&req.device).map_err(py_err)?;
    let opened = match (splits, &req.data_path) {
        (Some((train, test)), _) => open_tensors(&req.source, train, test, dev),
        (None, Some(d)) => open_path(&req.source, &req.source.program, d, dev),
        (None, None) => Err(amun::Error::invalid("data", "no data given")),
    }
    .map_err(py_err)?;
    let parent = opened.sidecar;
    // Before the run: a weight the module lacks must not surface after it.
    let views = target_views(&opened.model, targets)?;
    let (request, unsealed) = req.forget.resolve(&opened.data, "forget").map_err(py_err)?;
    let method = amun::unlearn::build(&req.method, &req.settings).map_err(py_err)?;
    let train = train_keywords(&req.train).map_err(py_err)?;
    let method = if train.is_empty() {
        method
    } else {
        method.adjusted(&train).map_err(py_err)?
    };
    let cal = calibrate_keywords(req.calibrate.as_ref()).map_err(py_err)?;
    // As `amun unlearn` prepares its run (layout, held-out split, device);
    // no reference models from Python yet: the loss-based membership test.
    let mut settings = RunSettings::new(dev, amun::data::default_data_dir());
    settings.calibrate = match cal {
        Some(c) => Some((c, held_out(&req)?)),
        None => None,
    };
    settings.check(method.as_ref()).map_err(py_err)?;
    // A checkpoint here was trained on tensors by amun.train, never unlearned
    // (`amun unlearn` cannot read tensors): one that records requests its
    // lineage forgot is refused, as `amun unlearn` refuses it without them.
    let forgotten = amun::unlearn::forgotten_before(&parent, &[], &[]).map_err(py_err)?;
    let names = ["forget".to_string()];
    let mut run = (settings.prepare(opened.model, &parent, &opened.data, vec![request], &names))
        .map_err(py_err)?;
    let done = (run.run(
        &settings,
        method.as_ref(),
        &parent,
        req.seed,
        &forgotten,
        progress,
    ))
    .map_err(py_err)?;
    write_back(&run.model, views)?;
    let log = done.logs.first();
    let out = serde_json::json!({
        "method": method.name(),
        "settings": method.settings(),
        "calibration": log.and_then(|l| l.calibration.as_ref()),
        "chosen": log.and_then(|l| l.calibration.as_ref()).map(|c| c.chosen.label()),
        "seconds": done.seconds,
        "image_steps": done.logs.iter().map(|l| l.image_steps()).sum::<u64>(),
        "timing": log.map(|l| &l.timing),
        "sizes": done.sizes,
        "before": done.before,
        "after": done.after,
        "notes": opened.notes.into_iter().chain(unsealed).collect::<Vec<_>>(),
    });
    Ok(out.to_string())
}

/// Calibration's held-out images: the caller's `heldout=` (the test split
/// of tensor data), or with data amun reads the last `holdout_test` test
/// images, as `amun unlearn --holdout-test`.
fn held_out(req: &Request) -> PyResult<HeldOut> {
    match (req.data_path.is_some(), req.holdout_test) {
        (true, Some(n)) => Ok(HeldOut::LastTest(n)),
        (true, None) => Err(invalid(
            "holdout_test",
            "calibrate with data amun reads needs holdout_test=N: its last N test images, \
             which the model never trained on",
        )),
        (false, _) => Ok(HeldOut::Test),
    }
}

/// Views of the caller's tensors (`targets`, by name) for every weight of
/// `model`, checked in full (names, shapes, dtypes) before any work, so
/// that the caller's module is never partly updated nor refused at the end.
fn target_views(
    model: &Classifier,
    targets: &HashMap<String, TensorRef>,
) -> PyResult<HashMap<String, Tensor>> {
    let named = model.named_tensors();
    let mut views = HashMap::with_capacity(named.len());
    for (name, t) in &named {
        let r = targets.get(name).ok_or_else(|| {
            invalid(
                "model",
                format!(
                    "the exported program has a weight {name} the module's state_dict lacks \
                     (amun writes the new weights back by their state_dict names)"
                ),
            )
        })?;
        // SAFETY: `__init__.py` passes the module's live state_dict tensors.
        let v = unsafe { view(name, r)? };
        if v.size() != t.size() || v.kind() != t.kind() {
            return Err(invalid(
                "model",
                format!(
                    "{name}: the module holds {:?} {:?}, the exported program {:?} {:?}",
                    v.kind(),
                    v.size(),
                    t.kind(),
                    t.size()
                ),
            ));
        }
        views.insert(name.clone(), v);
    }
    Ok(views)
}

/// Copies every weight of `model` into its view from [`target_views`].
fn write_back(model: &Classifier, mut views: HashMap<String, Tensor>) -> PyResult<()> {
    tch::no_grad(|| {
        for (name, t) in model.named_tensors() {
            let v = views.get_mut(&name).ok_or_else(|| {
                invalid(
                    "model",
                    format!("{name}: a weight the trained model gained"),
                )
            })?;
            v.f_copy_(&t).map_err(|e| invalid(&name, e.to_string()))?;
        }
        Ok(())
    })
}

/// What `amun.train` asks for, besides the tensors: `amun train`'s flags
/// (or `amun rmia train-refs`'s, with `refs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainRequest {
    source: Source,
    /// Data amun reads itself (`--dataset`); `None`: the caller's tensors.
    data_path: Option<String>,
    /// The samples to train without (`--exclude`): exact unlearning.
    exclude: Option<Forget>,
    /// Train this many reference models into `out` (a folder) instead.
    refs: Option<usize>,
    /// Start from the program's own weights (`--init MODEL.pt2`), not
    /// PyTorch's default initialisation drawn from the seed.
    init_from_program: bool,
    train: Keywords,
    seed: u64,
    device: String,
    out: Option<PathBuf>,
}

/// Trains a model as `amun train --model FILE.pt2` does (or reference
/// models as `amun rmia train-refs`), writing the trained weights into
/// `targets`; returns the sidecar and the record of tensor data (or the
/// folder's summary) as JSON.
#[pyfunction]
#[pyo3(signature = (request, train=None, test=None, targets=HashMap::new(), progress=None))]
fn train(
    py: Python<'_>,
    request: &str,
    train: Option<(TensorRef, TensorRef)>,
    test: Option<(TensorRef, TensorRef)>,
    targets: HashMap<String, TensorRef>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let req: TrainRequest = serde_json::from_str(request)
        .map_err(|e| invalid("request", format!("malformed request from amun: {e}")))?;
    let splits = match (&train, &test) {
        (Some(tr), Some(te)) => Some((split("data", &tr.0, &tr.1)?, split("test", &te.0, &te.1)?)),
        (Some(tr), None) => {
            let train = split("data", &tr.0, &tr.1)?;
            let test = Split {
                images: train.images.narrow(0, 0, 0),
                labels: train.labels.narrow(0, 0, 0),
            };
            Some((train, test))
        }
        _ => None,
    };
    let progress = PyProgress::new(progress);
    py.allow_threads(|| guard(|| run_train(req, splits, &targets, &progress)))
}

/// One tensor of the caller's data as a record names it: dtype, shape and
/// the sha256 of its bytes in C order, which Python gives as
/// `hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()`.
#[derive(serde::Serialize)]
struct TensorRecord {
    dtype: String,
    shape: Vec<i64>,
    sha256: String,
}

impl TensorRecord {
    fn of(t: &Tensor) -> TensorRecord {
        let t = t.to_device(Device::Cpu).contiguous();
        let bytes = Vec::<u8>::try_from(t.flatten(0, -1).view_dtype(Kind::Uint8));
        let dtype = match t.kind() {
            Kind::Uint8 => "uint8".to_string(),
            Kind::Int64 => "int64".to_string(),
            k => format!("{k:?}"),
        };
        TensorRecord {
            dtype,
            shape: t.size(),
            sha256: amun::fsutil::sha256_hex(&bytes.unwrap_or_default()),
        }
    }
}

impl std::fmt::Display for TensorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(i64::to_string).collect();
        write!(
            f,
            "{}[{}] sha256:{}",
            self.dtype,
            dims.join(","),
            self.sha256
        )
    }
}

/// The training split the caller gave, recorded so that an audit can tie a
/// model to the tensors it was trained on (a sidecar otherwise records a
/// dataset by the name amun reads it by, which tensors lack).
#[derive(serde::Serialize)]
struct SplitRecord {
    images: TensorRecord,
    labels: TensorRecord,
}

impl SplitRecord {
    fn of(s: &Split) -> SplitRecord {
        SplitRecord {
            images: TensorRecord::of(&s.images),
            labels: TensorRecord::of(&s.labels),
        }
    }

    /// The sidecar's dataset name: `tensors(images uint8[N,C,H,W]
    /// sha256:…, labels int64[N] sha256:…)`.
    fn name(&self) -> String {
        format!("tensors(images {}, labels {})", self.images, self.labels)
    }
}

/// The training data: the caller's splits (with their record), or a
/// dataset amun reads (a registry name or a folder, named as `--dataset`
/// names it).
fn train_data(
    req: &TrainRequest,
    splits: Option<(Split, Split)>,
) -> amun::Result<(Dataset, Option<SplitRecord>)> {
    match (splits, &req.data_path) {
        (Some((train, test)), _) => {
            let record = SplitRecord::of(&train);
            let spec = DataSpec::new(record.name());
            let data = Dataset::from_splits(spec, req.source.classes.clone(), train, test)?;
            Ok((data, Some(record)))
        }
        (None, Some(d)) => {
            let name = if Path::new(d).exists() {
                DataSpec::resolve(d, Path::new("."))
            } else {
                d.clone()
            };
            let dir = amun::data::default_data_dir();
            let data = amun::model::load_data(&DataSpec::new(name), &dir, &Quiet)?;
            Ok((data, None))
        }
        (None, None) => Err(amun::Error::invalid("data", "no data given")),
    }
}

/// Every file `amun.train` reads and writes when it writes any (`out=`),
/// as `amun train` and `amun rmia train-refs` list theirs, under the names
/// of the Python arguments.
fn train_files(req: &TrainRequest) -> Option<Outputs> {
    let out = req.out.as_ref()?;
    let mut io = Outputs::new();
    if let Some(d) = &req.data_path {
        io.reads_dataset("data", d);
    }
    if let Some(Forget::File(p)) = &req.exclude {
        io.reads_file(
            "exclude",
            "the forget set to train without: amun's JSON or a list of indices",
            p,
        );
    }
    io.reads_file(
        "model",
        "the exported graph, a torch.export .pt2",
        &req.source.program,
    );
    let artifact = match req.refs {
        Some(_) => Artifact::References,
        None => Artifact::Trained,
    };
    io.writes("out", out, artifact);
    Some(io)
}

/// The CLI's claim of `amun.train`'s outputs, before any work: an output
/// never replaces an input, a user's file or another amun artifact (a
/// forget set under a checkpoint's sidecar name), and reference models go
/// only into a new, empty or reference folder. A checkpoint is locked
/// until the returned value is dropped; a folder's files are claimed as
/// the library writes them (as `amun rmia train-refs` checks its folder).
fn claim_train_outputs(req: &TrainRequest) -> amun::Result<Vec<amun::fsutil::OutputLock>> {
    match (train_files(req), req.refs) {
        (None, _) => Ok(Vec::new()),
        (Some(io), Some(_)) => io.check().map(|()| Vec::new()),
        (Some(io), None) => io.claim(&[("out", &["safetensors"])]),
    }
}

fn run_train(
    req: TrainRequest,
    splits: Option<(Split, Split)>,
    targets: &HashMap<String, TensorRef>,
    progress: &PyProgress,
) -> PyResult<String> {
    let dev = amun::device::parse_device(&req.device).map_err(py_err)?;
    if let Some(count) = req.refs {
        check_ref_count(count).map_err(py_err)?;
    }
    let _locks = claim_train_outputs(&req).map_err(py_err)?;
    let replaced = train_files(&req).map_or_else(Vec::new, |io| io.replacing());
    let (data, data_record) = train_data(&req, splits).map_err(py_err)?;
    let norm = req
        .source
        .normalize
        .as_deref()
        .map(|s| Normalize::parse(s, data.image_shape()[0] as usize))
        .transpose()
        .map_err(py_err)?;
    let program = &req.source.program;
    let init = req.init_from_program.then_some(program.as_path());
    let (imported, _) = import_program(
        program,
        data.image_shape(),
        data.num_classes(),
        norm,
        init,
        Device::Cpu,
    )
    .map_err(py_err)?;
    let spec = imported.spec().clone();
    // Reference models are written to their folder, not to the caller's.
    let views = match req.refs {
        Some(_) => HashMap::new(),
        None => target_views(&imported, targets)?,
    };
    // `--augment auto`: on for colour images, off for one-channel digits.
    let mut overrides: TrainOverrides = train_keywords(&req.train).map_err(py_err)?;
    overrides.augment = overrides.augment.or(Some(data.image_shape()[0] != 1));
    let recipe = overrides
        .apply(TrainParams::for_arch(Arch::Exported))
        .check()
        .map_err(py_err)?;
    let (exclude, unsealed) = match &req.exclude {
        Some(f) => {
            let (set, warning) = f.resolve(&data, "exclude").map_err(py_err)?;
            (Some(set), warning)
        }
        None => (None, None),
    };
    let data = data.to_device(dev);
    if let Some(count) = req.refs {
        return train_refs(&data, &spec, &recipe, count, &req, progress).map_err(py_err);
    }
    let job = TrainJob {
        spec,
        data: &data,
        recipe,
        seed: req.seed,
        subset: exclude.as_ref().map_or(Subset::All, Subset::Exclude),
        out: req.out.as_deref(),
        resume: false,
        eval_each_epoch: true,
    };
    let mut trained = train_model(&job, progress).map_err(py_err)?;
    record_final_metrics(&trained.model, &data, &mut trained.sidecar);
    if let Some(out) = &req.out {
        checkpoint::save(&trained.model, out, &trained.sidecar).map_err(py_err)?;
    }
    write_back(&trained.model, views)?;
    // As `amun train` says on stderr which checkpoint its output replaced.
    for r in &replaced {
        progress.note(&format!("note: {r}"));
    }
    to_json(&serde_json::json!({
        "sidecar": trained.sidecar,
        "data": data_record,
        "notes": unsealed.into_iter().collect::<Vec<_>>(),
    }))
    .map_err(py_err)
}

/// `amun rmia train-refs` into the folder `req.out`.
fn train_refs(
    data: &Dataset,
    spec: &amun::model::ModelSpec,
    recipe: &amun::train::Recipe,
    count: usize,
    req: &TrainRequest,
    progress: &PyProgress,
) -> amun::Result<String> {
    let Some(out) = &req.out else {
        return Err(amun::Error::invalid(
            "out",
            "reference models are written to a folder: give out=",
        ));
    };
    amun::fsutil::check_output(&out.join("manifest.json"), &[])?;
    std::fs::create_dir_all(out).map_err(|err| amun::Error::Io {
        path: out.clone(),
        err,
    })?;
    let refs = train_references(data, spec, recipe, count, req.seed, out, progress)?;
    to_json(&serde_json::json!({
        "refs": refs.logits.len(),
        "pool": refs.members.first().map_or(0, Vec::len),
        "out": out,
    }))
}

/// What `amun.audit` asks for, besides the tensors: `amun audit`'s flags.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditRequest {
    source: Source,
    /// Data amun reads itself (`--dataset`: a registry name or a folder);
    /// `None`: the caller's tensors.
    data_path: Option<String>,
    forget: Forget,
    refs: Option<PathBuf>,
    retrain: Option<PathBuf>,
    signal: String,
    online: bool,
    a: f64,
    gamma: f64,
    seed: Option<u64>,
    holdout_test: Option<usize>,
    device: String,
}

/// A forget set as indices or as a file (`--forget`).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Forget {
    Indices(Vec<i64>),
    File(PathBuf),
}

impl Forget {
    /// The forget set over `data`; indices are checked as the argument
    /// `what` (`forget`, `exclude`), a file as `--forget FILE` is, with
    /// the warning the CLI prints for it ([`ForgetFile::resolve_warned`]:
    /// an older amun's set; hostile14 P32), raised in Python as an
    /// `amun.AmunWarning` from the returned notes.
    fn resolve(&self, data: &Dataset, what: &str) -> amun::Result<(ForgetSet, Option<String>)> {
        match self {
            Forget::Indices(i) => Ok((
                ForgetSet::from_indices(data, i.clone(), Path::new(what))?,
                None,
            )),
            Forget::File(p) => ForgetFile::read(p)?.resolve_warned(data, p),
        }
    }
}

impl AuditRequest {
    /// `--signal`, `--online`, `--a`, `--gamma` as the library's value.
    fn params(&self) -> amun::Result<RmiaParams> {
        let signal = match self.signal.as_str() {
            "taylor-soft-margin" => Signal::default(),
            "softmax" => Signal::Softmax { temperature: 1.0 },
            s => {
                return Err(amun::Error::invalid(
                    "signal",
                    format!("'{s}': expected taylor-soft-margin or softmax"),
                ));
            }
        };
        let p = RmiaParams {
            signal,
            offline: !self.online,
            a: self.a,
            gamma: self.gamma,
        };
        p.check()?;
        Ok(p)
    }

    /// Opens the retrain at `path` as `amun audit` opens `--retrain` (over
    /// the audited `data`; refused when trained on other data than `first`).
    fn open_retrain(
        &self,
        path: &Path,
        first: &Sidecar,
        data: &Dataset,
        dev: Device,
    ) -> amun::Result<Opened> {
        let rt = match &self.data_path {
            Some(d) => self.open_path(path, d, dev)?,
            None => open_checkpoint_over(path, checkpoint::read_sidecar(path)?, share(data)?, dev)?,
        };
        if !rt.sidecar.same_training_data(first) {
            let (got, want) = (rt.sidecar.data.label(), first.data.label());
            let msg = format!("trained on {got}, the others on {want}");
            return Err(amun::Error::checkpoint(path, msg));
        }
        Ok(rt)
    }

    /// Opens the model at `path` as `amun audit` opens each `--checkpoint`
    /// (an amun checkpoint, a PyTorch file, a `.pt2`) over `data_path`.
    fn open_path(&self, path: &Path, data_path: &str, dev: Device) -> amun::Result<Opened> {
        open_path(&self.source, path, data_path, dev)
    }
}

/// The audit of `amun audit`: accuracies on the forget set, the retain set
/// and D_T, and with `refs` RMIA, MIS and the Avg. Gap against `retrain`;
/// returns them as JSON.
#[pyfunction]
#[pyo3(signature = (request, train=None, test=None, progress=None))]
fn audit(
    py: Python<'_>,
    request: &str,
    train: Option<(TensorRef, TensorRef)>,
    test: Option<(TensorRef, TensorRef)>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let req: AuditRequest = serde_json::from_str(request)
        .map_err(|e| invalid("request", format!("malformed request from amun: {e}")))?;
    let splits = match (&train, &test) {
        (Some(tr), Some(te)) => Some((split("data", &tr.0, &tr.1)?, split("test", &te.0, &te.1)?)),
        _ => None,
    };
    let progress = PyProgress::new(progress);
    py.allow_threads(|| guard(|| run_audit(req, splits, &progress).map_err(py_err)))
}

/// `amun audit`'s steps (`cmd/audit.rs`) for one model, with the same
/// library calls in the same order: every check that needs only files
/// before any model is audited. Every pass over the data reports its
/// batches to `progress`, where Ctrl-C stops the audit.
fn run_audit(
    req: AuditRequest,
    splits: Option<(Split, Split)>,
    progress: &PyProgress,
) -> amun::Result<String> {
    let dev = amun::device::parse_device(&req.device)?;
    let params = req.params()?;
    let forget_file = match &req.forget {
        Forget::File(p) => Some(ForgetFile::read(p)?),
        Forget::Indices(_) => None,
    };
    let opened = match (splits, &req.data_path) {
        (Some((train, test)), _) => open_tensors(&req.source, train, test, dev)?,
        (None, Some(d)) => req.open_path(&req.source.program, d, dev)?,
        (None, None) => return Err(amun::Error::invalid("data", "no data given")),
    };
    let data = opened.data;
    if let Some(r) = req.retrain.as_ref().filter(|r| is_checkpoint(r))
        && req.data_path.is_none()
    {
        // Before the forget set's check, which would only say "another forget set".
        check_trained_on(&checkpoint::read_sidecar(r)?, r, &data.spec.dataset)?;
    }
    let (forget, unsealed) = match (forget_file, &req.forget) {
        (Some(f), Forget::File(p)) => f.resolve_warned(&data, p)?,
        (_, f @ Forget::Indices(_)) => f.resolve(&data, "forget")?,
        (None, Forget::File(_)) => unreachable!("read above"),
    };
    let (holdout, note) = checked_holdout(&req, &forget, data.test.len())?;
    let mut notes: Vec<String> = (opened.notes.into_iter())
        .chain(unsealed)
        .chain(note)
        .collect();
    let refs = req
        .refs
        .as_ref()
        .map(|r| load_references(r, &data))
        .transpose()?;
    notes.extend(refs.iter().flat_map(|r| r.notes.iter().cloned()));
    if refs.is_some() {
        notes.extend(amun::audit::uncovered_classes_warning(
            &data,
            &forget.indices,
            holdout,
        ));
    }
    let retrain = match (&req.retrain, &refs) {
        (Some(r), Some(_)) => Some(req.open_retrain(r, &opened.sidecar, &data, dev)?),
        _ => None,
    };
    let seed = req.seed.unwrap_or_else(|| audit_seed(forget.seed));
    let data = data.to_device(dev);
    let accuracy = accuracies(&opened.model, &data, &forget, holdout, progress)?;
    let run = |model: &Classifier, refs: &References| {
        audit_model(
            model,
            &data,
            &forget.indices,
            refs,
            &params,
            seed,
            holdout,
            progress,
        )
    };
    let (mut audited, mut gap) = (None, None);
    if let Some(refs) = &refs {
        let retrain = match &retrain {
            Some(rt) => Some(run(&rt.model, refs)?),
            None => None,
        };
        let a = run(&opened.model, refs)?;
        gap = retrain.map(|rt| avg_gap(&a.scores, &rt.scores));
        audited = Some(a);
    }
    Ok(serde_json::json!({
        "accuracy": accuracy,
        "audit": audited,
        "avg_gap": gap,
        "rmia": params,
        "holdout_test": holdout,
        "notes": notes,
    })
    .to_string())
}

/// A second dataset over `data`'s tensors (no copy), for the retrain.
fn share(data: &Dataset) -> amun::Result<Dataset> {
    let split = |s: &Split| Split {
        images: s.images.shallow_clone(),
        labels: s.labels.shallow_clone(),
    };
    let spec = DataSpec::new("python");
    let copy = Dataset::from_splits(
        spec,
        data.classes.clone(),
        split(&data.train),
        split(&data.test),
    )?;
    Ok(named(copy, data.spec.dataset.clone()))
}

/// The test images the audit leaves out (`audit_holdout` over the
/// sidecars of the model and the retrain), after `check_retrain`: every
/// check that needs only files, before any model is audited.
fn checked_holdout(
    req: &AuditRequest,
    forget: &ForgetSet,
    test_len: usize,
) -> amun::Result<(usize, Option<String>)> {
    let mut paths = vec![req.source.program.clone()];
    if let Some(r) = &req.retrain {
        paths.insert(0, r.clone());
    }
    let sidecars = read_sidecars(&paths)?;
    if let Some(r) = &req.retrain {
        match &sidecars[0] {
            Some(sc) => check_retrain(sc, forget, r)?,
            None => return Err(no_retrain_sidecar(r)),
        }
    }
    let recorded: Vec<(&Path, &Sidecar)> = paths
        .iter()
        .zip(&sidecars)
        .filter_map(|(p, sc)| sc.as_ref().map(|sc| (p.as_path(), sc)))
        .collect();
    if let (Some(r), Some((_, sc))) = (&req.retrain, recorded.first()) {
        amun::audit::check_retrain_model(sc, r, &recorded[1..])?;
    }
    audit_holdout(&recorded, test_len, req.holdout_test)
}

/// Each path's amun sidecar, when it has one.
fn read_sidecars(paths: &[PathBuf]) -> amun::Result<Vec<Option<Sidecar>>> {
    paths
        .iter()
        .map(|p| {
            checkpoint::sidecar_path(p)
                .exists()
                .then(|| checkpoint::read_sidecar(p))
                .transpose()
        })
        .collect()
}

fn no_retrain_sidecar(r: &Path) -> amun::Error {
    amun::Error::invalid(
        "retrain",
        format!(
            "{}: a PyTorch file without an amun sidecar records no forget set it was trained \
             without; the Avg. Gap needs a model retrained without exactly the forget set: \
             train one with `amun train --exclude FORGET`",
            r.display()
        ),
    )
}

/// Accuracy, sample count and per-class accuracy (%) of `model` on the
/// forget set, the retain set and D_T (the test split less its last
/// `holdout` images), by amun's evaluation (eval mode, every sample once).
fn accuracies(
    model: &Classifier,
    data: &Dataset,
    forget: &ForgetSet,
    holdout: usize,
    progress: &dyn Progress,
) -> amun::Result<serde_json::Value> {
    let n_test = data.test.len().checked_sub(holdout).filter(|&n| n > 0);
    let Some(n_test) = n_test else {
        return Err(amun::Error::invalid(
            "holdout",
            format!(
                "{holdout} held-out test images leave none of the {} to audit with",
                data.test.len()
            ),
        ));
    };
    let test = Split {
        images: data.test.images.narrow(0, 0, n_test as i64),
        labels: data.test.labels.narrow(0, 0, n_test as i64),
    };
    let parts = [
        ("forget", data.train.select(&forget.indices)),
        ("retain", data.train.select(&forget.retain_indices())),
        ("test", test),
    ];
    let mut out = serde_json::Map::new();
    for (name, s) in parts {
        let logits = amun::eval::logits_reporting(model, &s.images, name, progress);
        let pred =
            Vec::<i64>::try_from(logits.argmax(1, false)).map_err(|err| amun::Error::Torch {
                context: format!("{name} predictions"),
                err,
            })?;
        let a = Accuracy::of(&pred, &s.label_vec(), model.spec().num_classes as usize);
        let per_class: Vec<f64> = a
            .per_class
            .iter()
            .map(|&(c, t)| 100.0 * c as f64 / t.max(1) as f64)
            .collect();
        out.insert(
            name.to_string(),
            serde_json::json!({"accuracy": a.percent(), "samples": a.total, "per_class": per_class}),
        );
    }
    Ok(serde_json::Value::Object(out))
}

/// What `Registry.create` asks for: `amun registry create`'s flags.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    checkpoint: PathBuf,
    holdout_test: Option<usize>,
    refs: Option<PathBuf>,
    retrain_after_requests: Option<usize>,
    retrain_after_fraction: Option<f64>,
    seed: u64,
    anchor_copy: Option<PathBuf>,
    data_dir: Option<PathBuf>,
}

/// What `Registry.apply` asks for: `amun registry apply`'s flags.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    method: String,
    settings: serde_json::Value,
    train: Keywords,
    calibrate: Option<Keywords>,
    with_retain: bool,
    adaptive: bool,
    device: String,
    data_dir: Option<PathBuf>,
}

fn data_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(amun::data::default_data_dir)
}

fn to_json(v: &impl serde::Serialize) -> amun::Result<String> {
    serde_json::to_string(v).map_err(|e| amun::Error::invalid("result", e.to_string()))
}

/// The registry's record and head version, as `amun registry create --json`
/// prints them.
fn registry_summary(reg: &Registry) -> amun::Result<String> {
    to_json(&serde_json::json!({
        "registry": reg.info()?.to_output(),
        "version": reg.head()?.to_output(),
    }))
}

/// Creates a registry at `path` (`amun registry create`); returns its
/// record and first version as JSON.
#[pyfunction]
#[pyo3(signature = (path, request, progress=None))]
fn registry_create(
    py: Python<'_>,
    path: PathBuf,
    request: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let req: CreateRequest = serde_json::from_str(request)
        .map_err(|e| invalid("request", format!("malformed request from amun: {e}")))?;
    let spec = CreateSpec {
        checkpoint: req.checkpoint,
        holdout_test: req.holdout_test,
        refs: req.refs,
        policy: Policy {
            after_requests: req.retrain_after_requests,
            after_fraction: req.retrain_after_fraction,
        },
        seed: req.seed,
        data_dir: data_dir(req.data_dir),
        anchor_copy: req.anchor_copy,
    };
    let progress = PyProgress::new(progress);
    py.allow_threads(|| {
        guard(|| {
            let reg = Registry::create(&path, &spec, &progress).map_err(py_err)?;
            registry_summary(&reg).map_err(py_err)
        })
    })
}

/// The registry's record and head version (opened read-only).
#[pyfunction]
fn registry_info(path: PathBuf) -> PyResult<String> {
    let reg = Registry::open_read(&path).map_err(py_err)?;
    registry_summary(&reg).map_err(py_err)
}

/// Adds one deletion request per file (`amun registry add`); returns the
/// requests with their receipts, and the commits' warnings, as JSON.
#[pyfunction]
#[pyo3(signature = (path, files, reference, received=None, data_dir=None))]
fn registry_add(
    py: Python<'_>,
    path: PathBuf,
    files: Vec<PathBuf>,
    reference: &str,
    received: Option<&str>,
    data_dir: Option<PathBuf>,
) -> PyResult<String> {
    py.allow_threads(|| {
        guard(|| {
            let mut reg = Registry::open(&path).map_err(py_err)?;
            let dir = self::data_dir(data_dir);
            let added = reg
                .add_requests_receipt(&files, reference, received, None, &dir)
                .map_err(py_err)?;
            let warnings = reg.take_warnings();
            to_json(&serde_json::json!({ "added": added, "warnings": warnings })).map_err(py_err)
        })
    })
}

/// Applies the pending requests (`amun registry apply`, with its checks
/// of the method and settings); returns what `--json` prints.
#[pyfunction]
#[pyo3(signature = (path, request, progress=None))]
fn registry_apply(
    py: Python<'_>,
    path: PathBuf,
    request: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let req: ApplyRequest = serde_json::from_str(request)
        .map_err(|e| invalid("request", format!("malformed request from amun: {e}")))?;
    let progress = PyProgress::new(progress);
    py.allow_threads(|| guard(|| apply_request(&path, req, &progress).map_err(py_err)))
}

fn apply_request(dir: &Path, req: ApplyRequest, progress: &PyProgress) -> amun::Result<String> {
    let method = MethodSpec::new(&req.method, &req.settings)?;
    let train = train_keywords(&req.train)?;
    let effective = if train.is_empty() {
        method.clone()
    } else {
        method.adjusted(&train)?
    };
    check_given(effective.method(), method.table(), req.with_retain)?;
    // `max_cost=None`: no cost cap (the CLI's `--calibrate-max-cost none`);
    // a number is a cap given, in the settings.
    let mut calibrate = req.calibrate;
    let cost_cap = match calibrate
        .as_mut()
        .map(|t| t.get("max_cost").map(|v| v.is_null()))
    {
        Some(Some(true)) => {
            calibrate.as_mut().map(|t| t.remove("max_cost"));
            ApplyCap::Off
        }
        _ => ApplyCap::Default,
    };
    let spec = ApplySpec {
        method,
        overrides: train,
        calibrate: calibrate_keywords(calibrate.as_ref())?,
        with_retain: req.with_retain,
        adaptive: req.adaptive,
        cost_cap,
        device: amun::device::parse_device(&req.device)?,
        data_dir: data_dir(req.data_dir),
    };
    let done = registry::apply(dir, &spec, progress)?;
    to_json(&serde_json::json!({ "applied": done }))
}

/// The certificate of `version` (default the head), written when missing
/// and checked against the records (`amun registry certificate`); returns
/// its JSON text, the paths of its Markdown and JSON files, and verify's
/// warnings (raised as `amun.AmunWarning`).
#[pyfunction]
#[pyo3(signature = (path, version=None))]
fn registry_certificate(
    path: PathBuf,
    version: Option<i64>,
) -> PyResult<(String, PathBuf, PathBuf, Vec<String>)> {
    let run = || -> amun::Result<(String, PathBuf, PathBuf, Vec<String>)> {
        let reg = Registry::open_read(&path)?;
        let id = match version {
            Some(v) => v,
            None => reg.head()?.id,
        };
        let issued = registry::ensure_certificate(&reg, id)?;
        registry::check_issued_certificate(&reg, id)?;
        let json = issued.json;
        let text = std::fs::read_to_string(&json).map_err(|err| amun::Error::Io {
            path: json.clone(),
            err,
        })?;
        Ok((text, issued.markdown, json, issued.warnings))
    };
    run().map_err(py_err)
}

/// Verifies the registry (`amun registry verify`); returns the findings
/// as JSON, with `error`: the CLI's message when it found a problem.
#[pyfunction]
#[pyo3(signature = (path, receipts))]
fn registry_verify(py: Python<'_>, path: PathBuf, receipts: Vec<PathBuf>) -> PyResult<String> {
    py.allow_threads(|| {
        guard(|| {
            let v = registry::verify(&path, &receipts).map_err(py_err)?;
            let error = v.findings.first().map(|f| {
                format!(
                    "{}: {} problem(s) found; the first: {f}",
                    path.display(),
                    v.findings.len()
                )
            });
            to_json(&serde_json::json!({ "verified": v, "ok": v.ok(), "error": error }))
                .map_err(py_err)
        })
    })
}

/// Fetches a registry dataset (`mnist`, `cifar10`) into amun's data cache
/// when missing or damaged, as `amun data fetch` does; returns its folder.
#[pyfunction]
fn fetch(py: Python<'_>, name: &str) -> PyResult<PathBuf> {
    let reg = amun::data::Registry::from_name(name).ok_or_else(|| {
        invalid(
            "dataset",
            format!("unknown dataset '{name}'; known: mnist, cifar10"),
        )
    })?;
    let dir = amun::data::default_data_dir();
    py.allow_threads(|| amun::data::fetch(reg, &dir).map_err(py_err))?;
    reg.verified_dir(&dir).map_err(py_err)
}

/// The libtorch version this module was built against (`major.minor.patch`).
#[pyfunction]
fn torch_version() -> &'static str {
    "2.11.0"
}

/// Twice the caller's float tensor, written into `out` through libtorch
/// (the round-trip check of the shared libtorch).
#[pyfunction]
fn _double_into(x: TensorRef, out: TensorRef) -> PyResult<()> {
    // SAFETY: the test passes live tensors it holds.
    let (x, mut out) = unsafe { (view("x", &x)?, view("out", &out)?) };
    let twice = x
        .f_mul_scalar(2.0)
        .map_err(|e| invalid("x", e.to_string()))?;
    out.f_copy_(&twice)
        .map_err(|e| invalid("out", e.to_string()))?;
    Ok(())
}

#[pymodule]
fn _amun(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("Error", m.py().get_type::<Error>())?;
    m.add_function(wrap_pyfunction!(unlearn, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(torch_version, m)?)?;
    m.add_function(wrap_pyfunction!(fetch, m)?)?;
    m.add_function(wrap_pyfunction!(audit, m)?)?;
    m.add_function(wrap_pyfunction!(registry_create, m)?)?;
    m.add_function(wrap_pyfunction!(registry_info, m)?)?;
    m.add_function(wrap_pyfunction!(registry_add, m)?)?;
    m.add_function(wrap_pyfunction!(registry_apply, m)?)?;
    m.add_function(wrap_pyfunction!(registry_certificate, m)?)?;
    m.add_function(wrap_pyfunction!(registry_verify, m)?)?;
    m.add_function(wrap_pyfunction!(_double_into, m)?)?;
    Ok(())
}
