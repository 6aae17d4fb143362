//! `amun._amun`: the native half of the Python package `amun`. It turns
//! what `python/amun/__init__.py` hands over (a request as JSON, tensors as
//! pointers into PyTorch's memory) into the library's values and runs the
//! library's own entry points (`open_program`, `UnlearnJob`); every
//! decision about data, models and runs stays in the `amun` crate.
//!
//! Tensors cross as `(data_ptr, shape, strides, dtype, device)` tuples of
//! tensors the Python caller keeps alive for the call: the process holds
//! one libtorch (PyTorch's), so a view made here over that memory is a view
//! of the caller's tensor.
use amun::data::{DataSpec, Dataset, HeldOutRecord, Split};
use amun::model::{Classifier, OpenSpec, open_program};
use amun::progress::Quiet;
use amun::train::TrainOverrides;
use amun::unlearn::{CalibrateOverrides, UnlearnJob};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Kind, Tensor};

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
        amun::Error::Invalid { .. } | amun::Error::Device { .. } => "invalid",
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

/// What `amun.unlearn` asks for, besides the tensors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    program: PathBuf,
    normalize: Option<String>,
    dataset: String,
    classes: Vec<String>,
    forget: Vec<i64>,
    method: String,
    settings: serde_json::Value,
    train: TrainOverrides,
    calibrate: Option<CalibrateOverrides>,
    seed: u64,
    device: String,
}

/// Runs one unlearning request and writes the unlearned weights into
/// `targets` (the module's `state_dict()` tensors, by name); returns the
/// record as JSON.
#[pyfunction]
#[pyo3(signature = (request, train, heldout, targets))]
fn unlearn(
    py: Python<'_>,
    request: &str,
    train: (TensorRef, TensorRef),
    heldout: Option<(TensorRef, TensorRef)>,
    targets: HashMap<String, TensorRef>,
) -> PyResult<String> {
    let req: Request = serde_json::from_str(request)
        .map_err(|e| invalid("request", format!("malformed request from amun: {e}")))?;
    let train = split("data", &train.0, &train.1)?;
    let test = match &heldout {
        Some((i, l)) => split("heldout", i, l)?,
        None => Split {
            images: train.images.narrow(0, 0, 0),
            labels: train.labels.narrow(0, 0, 0),
        },
    };
    py.allow_threads(|| guard(|| run(req, train, test, &targets)))
}

/// Runs `f`, turning a panic (a bug in amun or a libtorch error it did not
/// expect) into an `amun.AmunError` rather than unwinding into Python.
fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
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
    train: Split,
    test: Split,
    targets: &HashMap<String, TensorRef>,
) -> PyResult<String> {
    let dev = amun::device::parse_device(&req.device).map_err(py_err)?;
    let data = Dataset::from_splits(DataSpec::new(req.dataset.clone()), req.classes, train, test)
        .map_err(py_err)?;
    let spec = OpenSpec {
        normalize: req.normalize.clone(),
        ..Default::default()
    };
    let opened = open_program(&req.program, &spec, data, dev).map_err(py_err)?;
    let (mut model, parent) = (opened.model, opened.sidecar);
    let request = amun::data::ForgetSet::from_indices(
        &opened.data,
        req.forget.clone(),
        std::path::Path::new("forget"),
    )
    .map_err(py_err)?;
    let method = amun::unlearn::build(&req.method, &req.settings).map_err(py_err)?;
    let method = if req.train.is_empty() {
        method
    } else {
        method.adjusted(&req.train).map_err(py_err)?
    };
    let cal = req
        .calibrate
        .as_ref()
        .map(CalibrateOverrides::settings)
        .transpose()
        .map_err(py_err)?;
    let data = opened.data.to_device(dev);
    let record = HeldOutRecord::LastTest {
        size: data.test.len(),
        test_size: data.test.len(),
    };
    if cal.is_some() && data.test.is_empty() {
        return Err(invalid(
            "heldout",
            "calibrate needs held-out data the model never trained on",
        ));
    }
    let requests = [request];
    let job = UnlearnJob {
        method: method.as_ref(),
        data: &data,
        requests: &requests,
        with_retain: true,
        adaptive: false,
        adversarial: None,
        calibrate: cal.as_ref().map(|c| (c, &data.test, &record)),
        // No reference models from Python yet: the loss-based membership test.
        rmia: None,
        seed: req.seed,
        forgotten_before: &[],
        recipe: None,
    };
    let done = job.run(&mut model, &parent, &Quiet).map_err(py_err)?;
    write_back(&model, targets)?;
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
    });
    Ok(out.to_string())
}

/// Copies every weight of `model` into the caller's tensor of that name.
fn write_back(model: &Classifier, targets: &HashMap<String, TensorRef>) -> PyResult<()> {
    let named = model.named_tensors();
    // Checked in full first: no partial update of the caller's module.
    let mut views = Vec::with_capacity(named.len());
    for (name, t) in &named {
        let r = targets.get(name).ok_or_else(|| {
            invalid(
                "model",
                format!("the exported program has a weight {name} the module's state_dict lacks"),
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
        views.push(v);
    }
    tch::no_grad(|| {
        for (mut v, (name, t)) in views.into_iter().zip(&named) {
            v.f_copy_(t).map_err(|e| invalid(name, e.to_string()))?;
        }
        Ok(())
    })
}

/// What `amun.audit` asks for, besides the tensors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditRequest {
    program: PathBuf,
    normalize: Option<String>,
    dataset: String,
    classes: Vec<String>,
    forget: Vec<i64>,
    device: String,
}

/// Accuracies of the model in `request` on the forget set, the retain set
/// and the test split, overall and per class (amun's evaluation: eval mode,
/// every sample once); returns them as JSON.
#[pyfunction]
fn audit(
    py: Python<'_>,
    request: &str,
    train: (TensorRef, TensorRef),
    test: (TensorRef, TensorRef),
) -> PyResult<String> {
    let req: AuditRequest = serde_json::from_str(request)
        .map_err(|e| invalid("request", format!("malformed request from amun: {e}")))?;
    let train = split("data", &train.0, &train.1)?;
    let test = split("test", &test.0, &test.1)?;
    py.allow_threads(|| guard(|| run_audit(req, train, test)))
}

fn run_audit(req: AuditRequest, train: Split, test: Split) -> PyResult<String> {
    let dev = amun::device::parse_device(&req.device).map_err(py_err)?;
    let data = Dataset::from_splits(DataSpec::new(req.dataset.clone()), req.classes, train, test)
        .map_err(py_err)?;
    let spec = OpenSpec {
        normalize: req.normalize.clone(),
        ..Default::default()
    };
    let opened = open_program(&req.program, &spec, data, dev).map_err(py_err)?;
    let forget = amun::data::ForgetSet::from_indices(
        &opened.data,
        req.forget,
        std::path::Path::new("forget"),
    )
    .map_err(py_err)?;
    let data = opened.data.to_device(dev);
    let forget_split = data.train.select(&forget.indices);
    let retain_split = data.train.select(&forget.retain_indices());
    let parts = [
        ("forget", &forget_split),
        ("retain", &retain_split),
        ("test", &data.test),
    ];
    let mut out = serde_json::Map::new();
    for (name, s) in parts {
        let a = amun::eval::accuracy(&opened.model, s);
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
    Ok(serde_json::Value::Object(out).to_string())
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
    m.add_function(wrap_pyfunction!(torch_version, m)?)?;
    m.add_function(wrap_pyfunction!(fetch, m)?)?;
    m.add_function(wrap_pyfunction!(audit, m)?)?;
    m.add_function(wrap_pyfunction!(_double_into, m)?)?;
    Ok(())
}
