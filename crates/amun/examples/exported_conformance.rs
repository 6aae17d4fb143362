//! The conformance table of docs/EXPORTED.md: every architecture that
//! bench/exported_conformance.py exported runs in amun, and its logits
//! (eval and train mode), input gradient and parameter gradients are
//! compared with PyTorch's on the same inputs (train mode after the same
//! seed, so dropout and stochastic depth draw the same masks).
//!
//! ```sh
//! python bench/exported_conformance.py OUT        # the tests' venv with torchvision and timm
//! cargo run --release --example exported_conformance -- OUT
//! ```
//! A model passes when its logits are within 1e-4 (max abs) and every
//! gradient within 1e-4 relative (max abs difference over the largest
//! magnitude) of PyTorch's, in both modes, for the train-mode export, and
//! its eval-mode export gives the same eval logits.
use amun::model::{Classifier, import_program};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    if a.size() != b.size() {
        return f64::INFINITY;
    }
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    max_abs(a, b) / b.abs().max().double_value(&[]).max(1e-6)
}

struct Row {
    logits: f64,
    grad_input: f64,
    grad_params: f64,
    ms: f64,
}

fn pass(m: &Classifier, r: &HashMap<String, Tensor>, mode: &str) -> Result<Row, String> {
    let train = mode == "train";
    for (_, p) in m.named_parameters() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let x = r["x"].copy().set_requires_grad(true);
    tch::manual_seed(123);
    let t = std::time::Instant::now();
    let logits = m.try_forward_t(&x, train).map_err(|e| e.to_string())?;
    (&logits * &r["r"]).sum(Kind::Float).backward();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let mut grad_params: f64 = 0.0;
    for (k, p) in m.named_parameters() {
        if let Some(want) = r.get(&format!("{mode}.grad.{k}")) {
            grad_params = grad_params.max(rel(&p.grad(), want));
        }
    }
    Ok(Row {
        logits: max_abs(&logits, &r[&format!("{mode}.logits")]),
        grad_input: rel(&x.grad(), &r[&format!("{mode}.grad_input")]),
        grad_params,
        ms,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1).map(Path::new) else {
        eprintln!("usage: exported_conformance DIR (from bench/exported_conformance.py)");
        std::process::exit(2);
    };
    tch::set_num_threads(tch::get_num_threads().max(1));
    let mut metas: Vec<serde_json::Value> = std::fs::read_dir(dir)
        .expect("reading DIR")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().is_some_and(|n| n != "versions.json")
        })
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    metas.sort_by_key(|m| {
        (
            m["source"].as_str().unwrap_or_default().to_string(),
            m["name"].as_str().unwrap_or_default().to_string(),
        )
    });
    println!(
        "| source | architecture | params | input | eval logits | train logits | input grad (rel) | param grads (rel) | fwd+bwd ms | result |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let (mut passed, mut total) = (0, 0);
    for meta in metas {
        total += 1;
        let key = meta["key"].as_str().unwrap();
        let size = meta["size"].as_i64().unwrap();
        let name = meta["name"].as_str().unwrap();
        let note = meta["note"].as_str().unwrap_or("");
        let lead = format!(
            "| {} | {}{} | {:.2}M | {size}×{size} |",
            meta["source"].as_str().unwrap(),
            name,
            if note.is_empty() {
                String::new()
            } else {
                format!(" ({note})")
            },
            meta["params"].as_f64().unwrap_or(0.0) / 1e6
        );
        if !meta["ok"].as_bool().unwrap_or(false) {
            println!(
                "{lead} - | - | - | - | - | not exported by PyTorch: {} |",
                meta["error"].as_str().unwrap_or("").replace('|', "/")
            );
            continue;
        }
        let r: HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.join(format!("{key}.ref.safetensors")))
                .unwrap()
                .into_iter()
                .collect();
        let open = |file: &str| {
            import_program(
                &dir.join(file),
                [3, size, size],
                10,
                None,
                None,
                Device::Cpu,
            )
            .map(|(m, _)| m)
            .map_err(|e| e.to_string())
        };
        let result = (|| -> Result<(Row, Row, f64), String> {
            let m = open(&format!("{key}.pt2"))?;
            let eval = pass(&m, &r, "eval")?;
            let train = pass(&m, &r, "train")?;
            let e = open(&format!("{key}-eval.pt2"))?;
            let y = tch::no_grad(|| e.try_forward_t(&r["x"], false)).map_err(|e| e.to_string())?;
            Ok((eval, train, max_abs(&y, &r["eval.logits"])))
        })();
        match result {
            Ok((eval, train, eval_export)) => {
                let ok = eval.logits.max(train.logits).max(eval_export) <= 1e-4
                    && eval.grad_input.max(train.grad_input) <= 1e-4
                    && eval.grad_params.max(train.grad_params) <= 1e-4;
                if ok {
                    passed += 1;
                }
                println!(
                    "{lead} {:.1e} | {:.1e} | {:.1e} | {:.1e} | {:.0} | {} |",
                    eval.logits.max(eval_export),
                    train.logits,
                    eval.grad_input.max(train.grad_input),
                    eval.grad_params.max(train.grad_params),
                    train.ms,
                    if ok { "pass" } else { "FAIL (over 1e-4)" }
                );
            }
            Err(e) => {
                // The supported list that follows an unknown operator is
                // the same for every row.
                let e = e.split(". Supported").next().unwrap_or(&e);
                let e = e.replace('|', "/").replace('\n', " ");
                let e: String = e.chars().take(400).collect();
                println!("{lead} - | - | - | - | - | refused: {e} |");
            }
        }
    }
    println!("\n{passed} of {total} architectures pass.");
}
