//! hostile14's findings (issue 38) that need a model of their own.
use crate::common::{self, amun, fails_with};
use std::path::Path;

/// hostile14 PX1: `amun eval` of a checkpoint `amun.train` wrote from
/// in-memory tensors called its data record an unknown dataset name; it
/// says the model was trained from Python on tensors, and what to do. The
/// checkpoint is the MNIST one with its sidecar's data named as
/// `amun.train` names tensors (and signed again, as amun writes it).
#[test]
fn a_model_trained_on_python_tensors_is_named_so_by_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("p0.safetensors");
    common::mnist_trained_once(&m, "300", "1");
    let side = m.with_extension("json");
    let mut v = common::read_json(&side);
    v.as_object_mut().unwrap().remove("content_sha256");
    let name = format!(
        "tensors(images uint8[300,1,28,28] sha256:{}, labels int64[300] sha256:{})",
        "c3".repeat(32),
        "b8".repeat(32)
    );
    v["data"]["dataset"] = name.into();
    let body = serde_json::to_string_pretty(&v).unwrap();
    std::fs::write(&side, amun::fsutil::sign_json_text(&body).unwrap()).unwrap();
    fails_with(
        &amun(&["eval", "--checkpoint", m.to_str().unwrap()]),
        &[
            "trained from Python on in-memory tensors",
            "images uint8[300,1,28,28]",
            "--dataset",
            "amun.audit",
        ],
    );
    assert!(Path::new(&side).is_file());
}
