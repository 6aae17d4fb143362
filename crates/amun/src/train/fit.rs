//! One epoch of mini-batch SGD: the loop every training and fine-tuning
//! method shares. The loss is a closure, so methods differ only in it.
use super::sgd::Sgd;
use crate::data::{Batch, TrainSet};
use crate::device::with_autocast;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::progress::Progress;
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

/// How often (in steps) the loop reads the loss back from the device, to
/// report progress and catch NaN/Inf; a read forces a device sync.
const SYNC_EVERY: usize = 10;

/// What one epoch did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// Mean loss over the epoch's samples.
    pub loss: f64,
    /// Percent of training predictions that matched the batch labels.
    pub acc: f64,
    pub seconds: f64,
    pub images: usize,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
}

/// Settings of one epoch.
pub struct EpochConfig<'a> {
    /// Names the loop in progress bars and errors ("train", "amun", …).
    pub label: &'a str,
    /// 0-based epoch number, for errors and progress.
    pub epoch: usize,
    pub batch_size: usize,
    /// Seed of this epoch's shuffle and augmentation.
    pub seed: u64,
    /// bf16 autocast for the forward pass.
    pub bf16: bool,
    /// The learning rate for step `i` of this epoch.
    pub lr: &'a dyn Fn(usize) -> f64,
    /// Sees every batch before it is trained on (audits, tests).
    pub observe: Option<&'a dyn Fn(&Batch)>,
}

/// Mean cross-entropy of `logits` against the batch labels.
pub fn cross_entropy(logits: &Tensor, y: &Tensor) -> Tensor {
    logits
        .to_kind(Kind::Float)
        .cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.0)
}

/// Runs one epoch: for each batch, `loss(model, logits, batch)` is
/// minimised by one SGD step. The model is in train mode throughout.
pub fn sgd_epoch(
    model: &Classifier,
    opt: &mut Sgd,
    set: &TrainSet,
    cfg: &EpochConfig<'_>,
    loss_fn: &mut dyn FnMut(&Classifier, &Tensor, &Batch) -> Tensor,
    progress: &dyn Progress,
) -> Result<EpochStats> {
    let started = Instant::now();
    // Dropout and stochastic depth (in an exported model) draw from
    // libtorch's generator: seeded from the epoch's own seed, their masks
    // follow the recorded seed, not what ran before in the process, so a
    // resumed run draws what an uninterrupted one does.
    tch::manual_seed(crate::seed::derive(cfg.seed, "torch", 0) as i64);
    let steps = set.batches_per_epoch(cfg.batch_size);
    progress.start(
        &format!("{} epoch {}", cfg.label, cfg.epoch + 1),
        steps as u64,
    );
    let dev = set.device();
    let mut loss_sum = Tensor::zeros([], (Kind::Float, dev));
    let mut correct = Tensor::zeros([], (Kind::Int64, dev));
    let mut seen = 0usize;
    let mut lr = (cfg.lr)(0);
    for (i, batch) in set.epoch(cfg.batch_size, cfg.seed).enumerate() {
        lr = (cfg.lr)(i);
        if let Some(f) = cfg.observe {
            f(&batch);
        }
        let x = if model.device() == dev {
            batch.x.shallow_clone()
        } else {
            batch.x.to_device(model.device())
        };
        let logits = with_autocast(model.device(), cfg.bf16, || model.forward_t(&x, true));
        let loss = with_autocast(model.device(), cfg.bf16, || loss_fn(model, &logits, &batch));
        opt.zero_grad();
        loss.backward();
        opt.step(lr);
        let n = batch.y.size()[0] as usize;
        seen += n;
        tch::no_grad(|| {
            loss_sum += loss.detach().to_kind(Kind::Float) * n as f64;
            correct += logits.argmax(1, false).eq_tensor(&batch.y).sum(Kind::Int64);
        });
        if (i + 1) % SYNC_EVERY == 0 || i + 1 == steps {
            let mean = loss_sum.double_value(&[]) / seen as f64;
            if !mean.is_finite() {
                return Err(Error::Diverged {
                    what: cfg.label.to_string(),
                    epoch: cfg.epoch + 1,
                    cause: format!("the loss became {mean} by step {}", i + 1),
                    left: "nothing was written".into(),
                });
            }
            let acc = 100.0 * correct.int64_value(&[]) as f64 / seen as f64;
            let ips = seen as f64 / started.elapsed().as_secs_f64();
            progress.update(
                (i + 1) as u64,
                &format!("loss {mean:.3} acc {acc:.1}% lr {lr:.2e} {ips:.0} img/s"),
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = EpochStats {
        loss: if seen > 0 {
            loss_sum.double_value(&[]) / seen as f64
        } else {
            0.0
        },
        acc: if seen > 0 {
            100.0 * correct.int64_value(&[]) as f64 / seen as f64
        } else {
            0.0
        },
        seconds,
        images: seen,
        lr,
    };
    progress.finish(&format!(
        "{} epoch {}: loss {:.4} acc {:.2}% ({:.1}s, {:.0} img/s)",
        cfg.label,
        cfg.epoch + 1,
        stats.loss,
        stats.acc,
        seconds,
        seen as f64 / seconds.max(1e-9)
    ));
    Ok(stats)
}
