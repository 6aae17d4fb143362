//! hostile14's findings (issue 38) that need a model of their own.
use crate::common::registry::{count, folder_registry, reg};
use crate::common::{self, amun, fails_with, ok, read_json};
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

/// hostile15 SR_fc_name, N31, N24 (`registry add` recorded a class set
/// whose class or class name was edited, which eval refuses), SR_ff_sha
/// (its refusal of a set of other content showed two equal prefixes), N26
/// (a receipt whose head was edited to before its own record verified
/// intact), N5c (`verify --receipt` of a pipe blocked) and N2/N3 (a set
/// made through a symlink to, or with a trailing slash on, the registry's
/// folder: the same data, taken).
#[test]
fn registry_add_checks_a_class_set_and_verify_an_edited_receipt() {
    let d = tempfile::tempdir().unwrap();
    let (data, r) = folder_registry(d.path());
    let at = |f: &str| d.path().join(f).to_str().unwrap().to_string();
    let (fc, ds) = (at("fc.json"), data.to_str().unwrap());
    ok(&common::split_class(ds, "3", &fc));
    let edit = |name: &str, key: &str, v: serde_json::Value| {
        let mut set = read_json(Path::new(&fc));
        set[key] = v;
        std::fs::write(at(name), set.to_string()).unwrap();
        at(name)
    };
    let renamed = edit("fc_name.json", "class_name", "4".into());
    fails_with(&reg("add", &r, &[&renamed]), &["class 3 was '4'"]);
    let renumbered = edit("fc_num.json", "class", 4.into());
    fails_with(
        &reg("add", &r, &[&renumbered]),
        &["are not the training samples of class 4"],
    );
    let hash = read_json(Path::new(&fc))["train_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let last = if hash.ends_with('0') { "1" } else { "0" };
    let other = format!("{}{last}", &hash[..hash.len() - 1]);
    let resealed = edit("fc_sha.json", "train_sha256", other.clone().into());
    fails_with(
        &reg("add", &r, &[&resealed]),
        &[&format!(
            "the set records {other}…, the registry's data {hash}…"
        )],
    );
    assert_eq!(count(&r, "requests"), 0);

    // The same folder through a symlink and with a trailing slash.
    let link = at("digits-link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    for (folder, n, out) in [
        (link.clone(), "5", "fl.json"),
        (format!("{ds}/"), "6", "fs.json"),
    ] {
        ok(&common::split_forget(&folder, n, &at(out)));
        ok(&reg("add", &r, &[&at(out)]));
    }
    ok(&reg("add", &r, &[&fc]));
    assert_eq!(count(&r, "requests"), 3);

    let receipt = r.join("receipts").join("r0001.json");
    for head in [0, -1] {
        let mut v = read_json(&receipt);
        let own = v["record"]["seq"].as_i64().unwrap();
        v["head_seq"] = head.into();
        let edited = at(&format!("r_h{head}.json"));
        std::fs::write(&edited, v.to_string()).unwrap();
        fails_with(
            &reg("verify", &r, &["--receipt", &edited]),
            &[&format!("its head ({head}) precedes its own record {own}")],
        );
    }
    let fifo = at("fifo.json");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    fails_with(
        &reg("verify", &r, &["--receipt", &fifo]),
        &["not a regular file (a pipe)"],
    );
}

/// hostile15 N11: `registry certificate` printed (and, its files gone,
/// wrote) a certificate, exit 0, over a registry whose training data had
/// changed, which verify reports. N13: with `anchor.log` deleted it issued
/// one without a word, though a database put back to an older copy cannot
/// then be told. It runs verify's checks first and refuses, writing
/// nothing.
#[test]
fn no_certificate_is_given_over_a_registry_that_fails_verification() {
    let d = tempfile::tempdir().unwrap();
    let (data, r) = folder_registry(d.path());
    let cert = |args: &[&str]| reg("certificate", &r, args);
    ok(&cert(&["--version", "1"]));
    let first = |class: &str| {
        let f = common::files_in(&data.join("train").join(class));
        format!("train/{class}/{}", f[0])
    };
    let (replaced, other) = (first("2"), first("7"));
    let img = data.join(&replaced);
    let kept = std::fs::read(&img).unwrap();
    std::fs::copy(data.join(&other), &img).unwrap();
    let json = r.join("certificates/v0001.json");
    let before = std::fs::read(&json).unwrap();
    let refused = [
        "fails verification",
        "no certificate of version 1",
        "training data",
        &format!("({replaced}) now holds the bytes recorded for"),
        "`amun registry verify` lists every finding",
    ];
    let o = cert(&["--version", "1"]);
    fails_with(&o, &refused);
    assert!(common::stdout(&o).is_empty(), "{}", common::stdout(&o));
    assert_eq!(std::fs::read(&json).unwrap(), before);
    // Its files gone: none is written.
    for x in ["json", "md"] {
        std::fs::remove_file(r.join(format!("certificates/v0001.{x}"))).unwrap();
    }
    fails_with(&cert(&["--version", "1", "--json"]), &refused);
    assert!(!json.exists() && !r.join("certificates/v0001.md").exists());
    std::fs::write(&img, kept).unwrap();
    ok(&cert(&["--version", "1"]));
    assert!(json.exists());

    let anchor = r.join("anchor.log");
    let lines = std::fs::read(&anchor).unwrap();
    std::fs::remove_file(&anchor).unwrap();
    fails_with(
        &cert(&["--version", "1"]),
        &[
            "fails verification",
            "anchor.log: is missing",
            "cannot be told",
            "put it back from a backup",
        ],
    );
    std::fs::write(&anchor, lines).unwrap();
    ok(&cert(&["--version", "1"]));
}

/// An MNIST registry of the first 400 images (`d/reg`) and a class-3
/// forget set of its data (`d/fc.json`).
fn mnist_registry_and_class_set(d: &Path) -> (std::path::PathBuf, String) {
    let model = crate::common::registry::mnist_model(d, "400", "1");
    let r = d.join("reg");
    crate::common::registry::create(&r, &model, &[]);
    let fc = d.join("fc.json").to_str().unwrap().to_string();
    ok(&common::Args::of(&["split"])
        .mnist("400")
        .with("--class", "3")
        .with("--out", &fc)
        .run());
    (r, fc)
}

/// Issue 37 review: `registry add` of a class set on an MNIST registry
/// read the data from the default data folder only; it takes `--data-dir`
/// (and `AMUN_DATA_DIR`) as the registry's other commands do.
#[test]
fn registry_add_reads_mnist_from_the_data_dir_it_is_given() {
    let d = tempfile::tempdir().unwrap();
    let (r, fc) = mnist_registry_and_class_set(d.path());
    let real = amun::data::default_data_dir();
    let empty = d.path().join("no-data");
    std::fs::create_dir(&empty).unwrap();
    let add = |args: &[&str]| {
        let mut a = vec!["registry", "add", "--registry", r.to_str().unwrap(), &fc];
        a.extend_from_slice(args);
        std::process::Command::new(common::bin())
            .args(&a)
            .env("AMUN_DATA_DIR", &empty)
            .output()
            .unwrap()
    };
    fails_with(&add(&[]), &["fc.json", "missing", "no-data"]);
    assert_eq!(count(&r, "requests"), 0);
    ok(&add(&["--data-dir", real.to_str().unwrap()]));
    assert_eq!(count(&r, "requests"), 1);
}

/// hostile15 N24: a class set of MNIST whose class (name or number) was
/// edited was refused with "give the class folder its name back": MNIST
/// has no class folder, and its classes never change.
#[test]
fn a_class_set_refusal_on_mnist_names_no_class_folder() {
    let d = tempfile::tempdir().unwrap();
    let (r, fc) = mnist_registry_and_class_set(d.path());
    for (key, v, needle) in [
        ("class_name", serde_json::json!("4"), "class 3 was '4'"),
        (
            "class",
            serde_json::json!(4),
            "are not the training samples of class 4",
        ),
    ] {
        let mut set = read_json(Path::new(&fc));
        set[key] = v;
        let edited = d.path().join(format!("fc_{key}.json"));
        std::fs::write(&edited, set.to_string()).unwrap();
        for o in [
            reg("add", &r, &[edited.to_str().unwrap()]),
            common::Args::of(&["eval"])
                .with(
                    "--checkpoint",
                    &r.join("versions/v0001.safetensors").to_string_lossy(),
                )
                .with("--forget", &edited.to_string_lossy())
                .run(),
        ] {
            fails_with(&o, &[needle, "make the forget set again"]);
            let err = common::stderr(&o);
            assert!(!err.contains("class folder"), "{err}");
        }
    }
    assert_eq!(count(&r, "requests"), 0);
}
