//! A classifier's predictions and accuracies, in batches, in eval mode,
//! without gradients: what loading a model checks it with (an import at
//! chance) and what `eval` builds on.
use crate::data::{Split, eval_batches};
use crate::model::Classifier;
use crate::progress::{Progress, Quiet};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Batch size for evaluation (no gradients, so larger than training's).
pub const EVAL_BATCH: usize = 256;

/// Logits `[N,K]` (f32, on the CPU) for `images` (`[N,C,H,W]` uint8 or f32).
pub fn logits(model: &Classifier, images: &Tensor) -> Tensor {
    logits_reporting(model, images, "", &Quiet)
}

/// [`logits`], each batch reported to `progress` as one step of a phase
/// named `label`: a pass over a large split takes minutes on a CPU, and a
/// front end that stops on Ctrl-C (Python's) can only do so between steps.
pub fn logits_reporting(
    model: &Classifier,
    images: &Tensor,
    label: &str,
    progress: &dyn Progress,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    if n == 0 {
        return Tensor::zeros([0, model.spec().num_classes], (Kind::Float, Device::Cpu));
    }
    let batches = (n as u64).div_ceil(EVAL_BATCH as u64);
    progress.start(label, batches);
    let started = std::time::Instant::now();
    let outs: Vec<Tensor> = eval_batches(images, EVAL_BATCH, model.device())
        .enumerate()
        .map(|(k, (_, x))| {
            let out = model
                .forward_t(&x, false)
                .to_kind(Kind::Float)
                .to_device(Device::Cpu);
            progress.update(k as u64 + 1, "");
            out
        })
        .collect();
    progress.finish(&format!(
        "{label}: {n} images in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Tensor::cat(&outs, 0)
}

/// Predicted classes `[N]` (int64, CPU).
pub fn predictions(model: &Classifier, images: &Tensor) -> Tensor {
    logits(model, images).argmax(1, false)
}

/// Accuracy on a set of samples, overall and per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub correct: usize,
    pub total: usize,
    /// `(correct, total)` per class.
    pub per_class: Vec<(usize, usize)>,
}

impl Accuracy {
    /// Accuracy of predictions `pred` against `labels` (classes `0..k`).
    pub fn of(pred: &[i64], labels: &[i64], k: usize) -> Accuracy {
        let mut per_class = vec![(0usize, 0usize); k];
        let mut correct = 0;
        for (p, l) in pred.iter().zip(labels) {
            let e = &mut per_class[*l as usize];
            e.1 += 1;
            if p == l {
                e.0 += 1;
                correct += 1;
            }
        }
        Accuracy {
            correct,
            total: labels.len(),
            per_class,
        }
    }

    /// Percent correct (NaN for an empty set).
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            f64::NAN
        } else {
            100.0 * self.correct as f64 / self.total as f64
        }
    }

    /// Percent correct in class `c`.
    pub fn class_percent(&self, c: usize) -> f64 {
        let (k, n) = self.per_class[c];
        if n == 0 {
            f64::NAN
        } else {
            100.0 * k as f64 / n as f64
        }
    }
}

/// Accuracy of `model` on `split`.
pub fn accuracy(model: &Classifier, split: &Split) -> Accuracy {
    let k = model.spec().num_classes as usize;
    let pred = Vec::<i64>::try_from(predictions(model, &split.images)).expect("int64");
    Accuracy::of(&pred, &split.label_vec(), k)
}
