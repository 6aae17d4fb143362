//! The search loop. One loop serves the refilled and the naive schedule, so
//! they differ only in when waiting samples enter the batch.
use super::{AdvSet, AdvSettings, AttackKind, Eps0, SearchKind};
use crate::data::to_unit_float;
use crate::device::with_autocast;
use crate::error::Result;
use crate::model::Classifier;
use crate::progress::Progress;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// What the search attacks: anything that maps `[B,…]` inputs in `[0,1]` to
/// logits. A [`Classifier`] is attacked in eval mode (BatchNorm on running
/// statistics).
pub trait Target {
    fn logits(&self, x: &Tensor) -> Tensor;
    fn device(&self) -> Device;
}

impl Target for Classifier {
    fn logits(&self, x: &Tensor) -> Tensor {
        self.forward_t(x, false)
    }
    fn device(&self) -> Device {
        Classifier::device(self)
    }
}

/// One L2 PGD step for a batch: unit-norm gradient step of α = ε/10, then
/// projection of `x − x0` onto the ε-ball and clamping to `[0,1]`. `eps` is
/// per sample (`[B]`).
pub fn l2_step(x: &Tensor, x0: &Tensor, g: &Tensor, eps: &Tensor) -> Tensor {
    let shape = bshape(x);
    let eps = eps.view(shape.as_slice());
    let gn = per_sample_l2(g).view(shape.as_slice()) + 1e-10;
    let stepped = x + (&eps / 10.0) * (g / gn);
    let delta = &stepped - x0;
    let norm = per_sample_l2(&delta).view(shape.as_slice());
    let factor = (&eps / norm).clamp_max(1.0);
    (x0 + delta * factor).clamp(0.0, 1.0)
}

/// One L∞ PGD step: sign step of α = ε/10, box projection, clamp to `[0,1]`.
pub fn linf_step(x: &Tensor, x0: &Tensor, g: &Tensor, eps: &Tensor) -> Tensor {
    let shape = bshape(x);
    let eps = eps.view(shape.as_slice());
    let stepped = x + (&eps / 10.0) * g.sign();
    let delta = (&stepped - x0).clamp_tensor(Some(-&eps), Some(eps.shallow_clone()));
    (x0 + delta).clamp(0.0, 1.0)
}

/// `[B, 1, 1, …]` for broadcasting a per-sample value over `x`.
fn bshape(x: &Tensor) -> Vec<i64> {
    let mut s = vec![1i64; x.dim()];
    s[0] = -1;
    s
}

/// Per-sample results, filled as samples finish.
struct Out {
    images: Vec<Option<Tensor>>,
    adv: Vec<i64>,
    eps: Vec<f64>,
    dist: Vec<f64>,
    steps: Vec<u32>,
    success: Vec<bool>,
}

impl Out {
    fn new(n: usize) -> Out {
        Out {
            images: (0..n).map(|_| None).collect(),
            adv: vec![0; n],
            eps: vec![0.0; n],
            dist: vec![0.0; n],
            steps: vec![0; n],
            success: vec![false; n],
        }
    }
}

/// The samples currently in the batch.
struct Active {
    x0: Tensor,
    x: Tensor,
    y: Tensor,
    ids: Vec<usize>,
    eps: Vec<f64>,
    round: Vec<usize>,
    total: Vec<u32>,
    doublings: Vec<u32>,
}

impl Active {
    fn empty(like: &Tensor, device: Device) -> Active {
        let mut shape = like.size();
        shape[0] = 0;
        Active {
            x0: Tensor::zeros(&shape, (Kind::Float, device)),
            x: Tensor::zeros(&shape, (Kind::Float, device)),
            y: Tensor::zeros([0], (Kind::Int64, device)),
            ids: Vec::new(),
            eps: Vec::new(),
            round: Vec::new(),
            total: Vec::new(),
            doublings: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn push(&mut self, images: &Tensor, labels: &Tensor, ids: &[usize], eps0: f64, device: Device) {
        let idx = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>())
            .to_device(images.device());
        let x0 = to_unit_float(&images.index_select(0, &idx)).to_device(device);
        self.x = Tensor::cat(&[&self.x, &x0], 0);
        self.x0 = Tensor::cat(&[&self.x0, &x0], 0);
        self.y = Tensor::cat(
            &[&self.y, &labels.index_select(0, &idx).to_device(device)],
            0,
        );
        self.ids.extend_from_slice(ids);
        self.eps.extend(std::iter::repeat_n(eps0, ids.len()));
        self.round.extend(std::iter::repeat_n(0, ids.len()));
        self.total.extend(std::iter::repeat_n(0, ids.len()));
        self.doublings.extend(std::iter::repeat_n(0, ids.len()));
    }

    /// Keeps rows `keep` (positions), with `x` replaced by `new_x`.
    fn retain(&mut self, keep: &[usize], new_x: &Tensor) {
        let dev = self.x.device();
        let idx =
            Tensor::from_slice(&keep.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(dev);
        self.x = new_x.index_select(0, &idx);
        self.x0 = self.x0.index_select(0, &idx);
        self.y = self.y.index_select(0, &idx);
        let pick = |v: &Vec<usize>| keep.iter().map(|&i| v[i]).collect::<Vec<_>>();
        self.ids = pick(&self.ids);
        self.round = pick(&self.round);
        self.eps = keep.iter().map(|&i| self.eps[i]).collect();
        self.total = keep.iter().map(|&i| self.total[i]).collect();
        self.doublings = keep.iter().map(|&i| self.doublings[i]).collect();
    }
}

fn per_sample_l2(t: &Tensor) -> Tensor {
    t.flatten(1, -1)
        .square()
        .sum_dim_intlist(1, false, Kind::Float)
        .sqrt()
}

fn per_sample(v: &[f64], device: Device) -> Tensor {
    Tensor::from_slice(&v.iter().map(|x| *x as f32).collect::<Vec<_>>()).to_device(device)
}

/// Runs the search over `images`/`labels` (`[N,C,H,W]` uint8 or f32, `[N]`),
/// whose training indices are `indices`. Deterministic: no randomness.
pub fn search(
    model: &dyn Target,
    images: &Tensor,
    labels: &Tensor,
    indices: &[i64],
    s: &AdvSettings,
    progress: &dyn Progress,
) -> Result<AdvSet> {
    let started = Instant::now();
    let eps0 = match s.eps0 {
        Eps0::Fixed(e) => e,
        Eps0::Auto => auto_eps0(model, images, labels, s, progress)?,
    };
    let mut set = if s.attack == AttackKind::Fgsm {
        fgsm_search(model, images, labels, indices, s, eps0, progress)?
    } else if s.search == SearchKind::Fast && s.attack == AttackKind::PgdL2 {
        fast_search(model, images, labels, indices, s, eps0, progress)?
    } else {
        pgd_search(
            model,
            images,
            labels,
            indices,
            s,
            eps0,
            s.max_doublings,
            progress,
        )?
    };
    set.wall_s = started.elapsed().as_secs_f64();
    Ok(set)
}

#[allow(clippy::too_many_arguments)]
fn pgd_search(
    model: &dyn Target,
    images: &Tensor,
    labels: &Tensor,
    indices: &[i64],
    s: &AdvSettings,
    eps0: f64,
    max_doublings: u32,
    progress: &dyn Progress,
) -> Result<AdvSet> {
    let n = indices.len();
    let dev = model.device();
    let mut out = Out::new(n);
    let mut next = 0usize;
    let mut done = 0usize;
    let mut active = Active::empty(images, dev);
    progress.start("adversarial search", n as u64);
    while done < n {
        // Refill: every free slot (refill) or only an empty batch (naive).
        if s.refill || active.len() == 0 {
            let take = (s.batch_size - active.len()).min(n - next);
            if take > 0 {
                let ids: Vec<usize> = (next..next + take).collect();
                active.push(images, labels, &ids, eps0, dev);
                next += take;
            }
        }
        // A lone sample is run as a pair (itself twice): some kernels switch
        // algorithm at batch size 1, and a sample's result must not depend
        // on whether it is alone.
        let lone = active.len() == 1;
        let xin = if lone {
            active.x.repeat([2, 1, 1, 1])
        } else {
            active.x.shallow_clone()
        };
        let xg = xin.detach().set_requires_grad(true);
        let logits = with_autocast(dev, s.bf16, || model.logits(&xg)).to_kind(Kind::Float);
        let logits = if lone { logits.narrow(0, 0, 1) } else { logits };
        let pred = logits.argmax(1, false);
        let flipped = Vec::<bool>::try_from(pred.ne_tensor(&active.y).to_device(Device::Cpu))
            .expect("bool vector");
        // Rows that stop here: flipped, or out of doublings at a round's end.
        let mut finished = Vec::new();
        let mut keep = Vec::new();
        for (i, &f) in flipped.iter().enumerate() {
            let round_over = active.round[i] == s.steps;
            if f || (round_over && active.doublings[i] == max_doublings) {
                finished.push(i);
            } else {
                if round_over {
                    active.eps[i] *= 2.0;
                    active.round[i] = 0;
                    active.doublings[i] += 1;
                }
                keep.push(i);
            }
        }
        if !finished.is_empty() {
            let fidx = Tensor::from_slice(&finished.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(dev);
            let fx = active.x.index_select(0, &fidx);
            let fd = Vec::<f64>::try_from(
                per_sample_l2(&(&fx - active.x0.index_select(0, &fidx)))
                    .to_kind(Kind::Double)
                    .to_device(Device::Cpu),
            )
            .expect("f64 vector");
            let fp = Vec::<i64>::try_from(pred.index_select(0, &fidx).to_device(Device::Cpu))
                .expect("i64 vector");
            let fx = fx.to_device(Device::Cpu);
            for (k, &i) in finished.iter().enumerate() {
                let id = active.ids[i];
                out.images[id] = Some(fx.get(k as i64));
                out.adv[id] = fp[k];
                out.eps[id] = active.eps[i];
                out.dist[id] = fd[k];
                out.steps[id] = active.total[i];
                out.success[id] = flipped[i];
            }
            done += finished.len();
            progress.update(
                done as u64,
                &format!(
                    "ε {:.3}, {} in batch",
                    active.eps.iter().cloned().fold(0.0, f64::max),
                    keep.len()
                ),
            );
        }
        if keep.is_empty() {
            active = Active::empty(images, dev);
            continue;
        }
        let loss = logits.cross_entropy_loss::<Tensor>(&active.y, None, Reduction::Sum, -100, 0.0);
        let g = Tensor::run_backward(&[&loss], &[&xg], false, false).remove(0);
        let g = if lone { g.narrow(0, 0, 1) } else { g };
        let new_x = tch::no_grad(|| {
            let eps = per_sample(&active.eps, dev);
            match s.attack {
                AttackKind::PgdLinf => linf_step(&active.x, &active.x0, &g, &eps),
                _ => l2_step(&active.x, &active.x0, &g, &eps),
            }
        });
        for &i in &keep {
            active.round[i] += 1;
            active.total[i] += 1;
        }
        active.retain(&keep, &new_x);
    }
    let succeeded = out.success.iter().filter(|s| **s).count();
    progress.finish(&format!(
        "adversarial search: {n} samples, {succeeded} flipped, {} steps",
        out.steps.iter().map(|s| u64::from(*s)).sum::<u64>()
    ));
    Ok(assemble(out, labels, indices, s, eps0))
}

fn assemble(out: Out, labels: &Tensor, indices: &[i64], s: &AdvSettings, eps0: f64) -> AdvSet {
    let imgs: Vec<Tensor> = out
        .images
        .into_iter()
        .map(|t| t.expect("every sample finished"))
        .collect();
    let images = if imgs.is_empty() {
        Tensor::zeros([0], (Kind::Float, Device::Cpu))
    } else {
        Tensor::stack(&imgs, 0)
    };
    AdvSet {
        images,
        adv_labels: out.adv,
        true_labels: Vec::<i64>::try_from(labels.to_device(Device::Cpu)).expect("i64 labels"),
        indices: indices.to_vec(),
        eps: out.eps,
        dist: out.dist,
        steps: out.steps,
        success: out.success,
        settings: s.clone(),
        eps0,
        wall_s: 0.0,
        forward_only: 0,
        source: None,
    }
}

/// FGSM with ε doubling: x0 + ε·sign(∇) for ε = ε0, 2ε0, … until the
/// prediction changes (the gradient at x0 is computed once).
fn fgsm_search(
    model: &dyn Target,
    images: &Tensor,
    labels: &Tensor,
    indices: &[i64],
    s: &AdvSettings,
    eps0: f64,
    progress: &dyn Progress,
) -> Result<AdvSet> {
    let n = indices.len();
    let dev = model.device();
    let mut out = Out::new(n);
    progress.start("adversarial search (fgsm)", n as u64);
    for start in (0..n).step_by(s.batch_size) {
        let len = s.batch_size.min(n - start);
        let x0 = to_unit_float(&images.narrow(0, start as i64, len as i64)).to_device(dev);
        let y = labels.narrow(0, start as i64, len as i64).to_device(dev);
        let xg = x0.detach().set_requires_grad(true);
        let logits = with_autocast(dev, s.bf16, || model.logits(&xg)).to_kind(Kind::Float);
        let loss = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0);
        let sign = Tensor::run_backward(&[&loss], &[&xg], false, false)
            .remove(0)
            .sign();
        let mut x = x0.shallow_clone();
        let mut pred = logits.argmax(1, false);
        let mut open: Vec<usize> = (0..len).collect();
        let mut eps = 0.0;
        for attempt in 0..=s.max_doublings + 1 {
            let flipped =
                Vec::<bool>::try_from(pred.ne_tensor(&y).to_device(Device::Cpu)).expect("bools");
            let d = Vec::<f64>::try_from(
                per_sample_l2(&(&x - &x0))
                    .to_kind(Kind::Double)
                    .to_device(Device::Cpu),
            )
            .expect("f64");
            let p = Vec::<i64>::try_from(pred.to_device(Device::Cpu)).expect("i64");
            let last = attempt == s.max_doublings + 1;
            open.retain(|&i| {
                if flipped[i] || last {
                    let id = start + i;
                    out.images[id] = Some(x.get(i as i64).to_device(Device::Cpu));
                    out.adv[id] = p[i];
                    out.eps[id] = if attempt == 0 { eps0 } else { eps };
                    out.dist[id] = d[i];
                    out.steps[id] = attempt;
                    out.success[id] = flipped[i];
                    false
                } else {
                    true
                }
            });
            if open.is_empty() || last {
                break;
            }
            eps = eps0 * f64::from(1u32 << attempt.min(31));
            x = tch::no_grad(|| {
                let still =
                    Tensor::from_slice(&(0..len).map(|i| open.contains(&i)).collect::<Vec<_>>())
                        .to_device(dev)
                        .view([-1, 1, 1, 1]);
                let cand = (&x0 + &sign * eps).clamp(0.0, 1.0);
                cand.where_self(&still, &x)
            });
            pred =
                tch::no_grad(|| with_autocast(dev, s.bf16, || model.logits(&x)).argmax(1, false));
        }
        progress.update((start + len) as u64, "");
    }
    progress.finish(&format!("adversarial search (fgsm): {n} samples"));
    Ok(assemble(out, labels, indices, s, eps0))
}

/// The paper's ε0 rule: the smallest 0.01·2^k such that ≥ 95% of a probe of
/// up to 100 samples (evenly spaced over the set) flip within one round.
fn auto_eps0(
    model: &dyn Target,
    images: &Tensor,
    labels: &Tensor,
    s: &AdvSettings,
    progress: &dyn Progress,
) -> Result<f64> {
    let n = images.size()[0];
    let k = n.min(100);
    let pick: Vec<i64> = (0..k).map(|i| i * n / k.max(1)).collect();
    let idx = Tensor::from_slice(&pick).to_device(images.device());
    let (pi, pl) = (images.index_select(0, &idx), labels.index_select(0, &idx));
    let mut eps = 0.01;
    for _ in 0..=16 {
        let probe = pgd_search(model, &pi, &pl, &pick, s, eps, 0, &crate::progress::Quiet)?;
        let ok = probe.success.iter().filter(|x| **x).count();
        if ok as f64 >= 0.95 * k as f64 {
            progress.note(&format!(
                "eps0 auto: {eps} ({ok}/{k} of the probe flip within one round)"
            ));
            return Ok(eps);
        }
        eps *= 2.0;
    }
    Ok(eps)
}

/// BS's labels: the prediction after one FGSM step of size `eps` from each
/// image (no doubling), computed in eval mode on `model`.
pub fn fgsm_predictions(
    model: &dyn Target,
    images: &Tensor,
    labels: &Tensor,
    eps: f64,
    batch: usize,
) -> Vec<i64> {
    let dev = model.device();
    let n = images.size()[0];
    let mut out = Vec::with_capacity(n as usize);
    for start in (0..n).step_by(batch.max(1)) {
        let len = (batch as i64).min(n - start);
        let x0 = to_unit_float(&images.narrow(0, start, len)).to_device(dev);
        let y = labels.narrow(0, start, len).to_device(dev);
        let xg = x0.detach().set_requires_grad(true);
        let loss =
            model
                .logits(&xg)
                .cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0);
        let g = Tensor::run_backward(&[&loss], &[&xg], false, false).remove(0);
        let xa = tch::no_grad(|| (&x0 + g.sign() * eps).clamp(0.0, 1.0));
        let p = tch::no_grad(|| model.logits(&xa).argmax(1, false));
        out.extend(Vec::<i64>::try_from(p.to_device(Device::Cpu)).expect("i64"));
    }
    out
}

/// Logits of `x` with a lone sample run as a pair (batch-invariance, as in
/// the exact search).
fn logits_of(model: &dyn Target, x: &Tensor, bf16: bool) -> Tensor {
    let dev = model.device();
    if x.size()[0] == 1 {
        let l = with_autocast(dev, bf16, || model.logits(&x.repeat([2, 1, 1, 1])));
        l.to_kind(Kind::Float).narrow(0, 0, 1)
    } else {
        with_autocast(dev, bf16, || model.logits(x)).to_kind(Kind::Float)
    }
}

/// `z_y − max_{j≠y} z_j` per sample: positive while correctly classified.
fn margin(logits: &Tensor, y: &Tensor) -> Tensor {
    let zy = logits.gather(1, &y.view([-1, 1]), false).flatten(0, -1);
    let others = logits.scatter_value(1, &y.view([-1, 1]), f64::NEG_INFINITY);
    zy - others.amax([1i64].as_slice(), false)
}

/// The fast search of a batch: per sample, the first-order distance to the
/// decision boundary (|margin| / ‖∇ margin‖, DeepFool's and FMN's
/// estimate) starts an ε that each step shrinks while the point is
/// adversarial and grows while it is not (DDN's rule), with normalised
/// gradient steps projected onto the ε-sphere; the closest adversarial point
/// seen is kept, then bisected along the segment towards the original image
/// (forward passes only; every point kept is misclassified). Samples never
/// flipped fall back to the exact search from ε0.
fn fast_search(
    model: &dyn Target,
    images: &Tensor,
    labels: &Tensor,
    indices: &[i64],
    s: &AdvSettings,
    eps0: f64,
    progress: &dyn Progress,
) -> Result<AdvSet> {
    let n = indices.len();
    let dev = model.device();
    let mut out = Out::new(n);
    let mut fallback: Vec<usize> = Vec::new();
    let mut forward_only = 0u64;
    progress.start("adversarial search (fast)", n as u64);
    for start in (0..n).step_by(s.batch_size.max(1)) {
        let len = s.batch_size.min(n - start);
        let x0 = to_unit_float(&images.narrow(0, start as i64, len as i64)).to_device(dev);
        let y = labels.narrow(0, start as i64, len as i64).to_device(dev);
        let batch = FastBatch {
            model,
            s,
            shape: bshape(&x0),
            x0,
            y,
            len,
        };
        let found = batch.search(eps0);
        forward_only += found.forward_only;
        found.record(&mut out, start, eps0, &mut fallback);
        progress.update(
            (start + len) as u64,
            &format!("{} to fall back", fallback.len()),
        );
    }
    if !fallback.is_empty() {
        let sub = Fallback {
            model,
            images,
            labels,
            indices,
        };
        sub.search(&fallback, s, eps0, &mut out)?;
    }
    progress.finish(&format!(
        "adversarial search (fast): {n} samples, {} by fallback, {} steps + {forward_only} forward passes",
        fallback.len(),
        out.steps.iter().map(|s| u64::from(*s)).sum::<u64>()
    ));
    let mut set = assemble(out, labels, indices, s, eps0);
    set.forward_only = forward_only;
    Ok(set)
}

/// One batch of the fast search, on the model's device.
struct FastBatch<'a> {
    model: &'a dyn Target,
    s: &'a AdvSettings,
    /// The images as unit floats.
    x0: Tensor,
    y: Tensor,
    /// [`bshape`] of `x0`.
    shape: Vec<i64>,
    len: usize,
}

/// The closest adversarial point the walk saw, per sample.
struct Closest {
    best: Tensor,
    best_norm: Tensor,
    best_label: Tensor,
    /// Gradient steps taken (the starting radius's included).
    steps: Vec<u32>,
}

/// What the fast search of a batch found, on the CPU.
struct FastFound {
    /// The points kept (the original image where it is already wrong).
    images: Tensor,
    labels: Vec<i64>,
    dist: Vec<f64>,
    /// Flipped by the walk (and not already wrong).
    found: Vec<bool>,
    /// Misclassified before any step.
    wrong: Vec<bool>,
    steps: Vec<u32>,
    forward_only: u64,
}

impl FastBatch<'_> {
    /// The search of the batch: the starting radius, the walk, then the
    /// bisection towards the original images.
    fn search(&self, eps0: f64) -> FastFound {
        let (logits, wrong, eps) = self.start(eps0);
        let mut c = self.walk(eps);
        // Bisection between x0 (correct) and the closest adversarial point.
        let found = c.best_norm.isfinite().logical_and(&wrong.logical_not());
        let (dir, reach, forward_only) = self.bisect(&c.best, &found, &mut c.best_label);
        let shape = self.shape.as_slice();
        let x0 = &self.x0;
        let reached = x0 + &dir * reach.view(shape);
        let reached = if self.s.overshoot > 0.0 {
            reached.clamp(0.0, 1.0)
        } else {
            reached
        };
        let final_x = x0.where_self(&wrong.view(shape), &reached);
        let pred0 = logits.argmax(1, false);
        let labels_out = pred0.where_self(&wrong, &c.best_label);
        let dist = Vec::<f64>::try_from(
            per_sample_l2(&(&final_x - x0))
                .to_kind(Kind::Double)
                .to_device(Device::Cpu),
        )
        .expect("f64 vector");
        FastFound {
            found: Vec::<bool>::try_from(found.to_device(Device::Cpu)).expect("bools"),
            wrong: Vec::<bool>::try_from(wrong.to_device(Device::Cpu)).expect("bools"),
            labels: Vec::<i64>::try_from(labels_out.to_device(Device::Cpu)).expect("i64"),
            images: final_x.to_device(Device::Cpu),
            dist,
            steps: c.steps,
            forward_only,
        }
    }

    /// The starting radius, and which samples are already wrong: returns
    /// the logits of the images, which are wrong, and ε.
    fn start(&self, eps0: f64) -> (Tensor, Tensor, Tensor) {
        let xg = self.x0.detach().set_requires_grad(true);
        let logits = logits_of(self.model, &xg, self.s.bf16);
        let m = margin(&logits, &self.y);
        let g = Tensor::run_backward(&[&m.sum(Kind::Float)], &[&xg], false, false).remove(0);
        let wrong = m.le(0.0);
        let eps = tch::no_grad(|| {
            (m.abs() / (per_sample_l2(&g) + 1e-12)).clamp(eps0 / 16.0, 64.0 * eps0)
        });
        (logits, wrong, eps)
    }

    /// `fast_steps` normalised gradient steps on the ε-sphere, ε shrinking
    /// while adversarial and growing while not; keeps the closest
    /// adversarial point.
    fn walk(&self, mut eps: Tensor) -> Closest {
        const GAMMA: f64 = 0.1;
        let (s, x0, shape) = (self.s, &self.x0, self.shape.as_slice());
        let (len, dev) = (self.len as i64, self.model.device());
        let mut delta = Tensor::zeros_like(x0);
        let mut best = x0.shallow_clone();
        let mut best_norm = Tensor::full([len], f64::INFINITY, (Kind::Float, dev));
        let mut best_label = Tensor::zeros([len], (Kind::Int64, dev));
        let mut steps = vec![1u32; self.len];
        for t in 0..s.fast_steps {
            let x = (x0 + &delta).clamp(0.0, 1.0);
            let xg = x.detach().set_requires_grad(true);
            let logits = logits_of(self.model, &xg, s.bf16);
            let pred = logits.argmax(1, false);
            let adv = pred.ne_tensor(&self.y);
            let loss =
                logits.cross_entropy_loss::<Tensor>(&self.y, None, Reduction::Sum, -100, 0.0);
            let g = Tensor::run_backward(&[&loss], &[&xg], false, false).remove(0);
            for k in &mut steps {
                *k += 1;
            }
            tch::no_grad(|| {
                let norm = per_sample_l2(&(&x - x0));
                let closer = adv.logical_and(&norm.lt_tensor(&best_norm));
                best = x.where_self(&closer.view(shape), &best);
                best_norm = norm.where_self(&closer, &best_norm);
                best_label = pred.where_self(&closer, &best_label);
                // Shrink while adversarial, grow while not.
                eps = (&eps * (1.0 - GAMMA)).where_self(&adv, &(&eps * (1.0 + GAMMA)));
                // Step along the normalised gradient (cosine-annealed, in
                // units of ε), then back onto the ε-sphere.
                let c = 0.05
                    + 0.95
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * t as f64 / s.fast_steps as f64).cos());
                let e = eps.view(shape);
                let gn = per_sample_l2(&g).view(shape) + 1e-12;
                let stepped = &delta + &e * c * (&g / gn);
                let dn = per_sample_l2(&stepped).view(shape) + 1e-12;
                delta = &stepped * (&e / dn);
            });
        }
        Closest {
            best,
            best_norm,
            best_label,
            steps,
        }
    }

    /// Bisects the segment from each image to its closest adversarial
    /// point `best` (where `found`), then overshoots past the boundary when
    /// asked; updates `best_label`. Returns the segment, how far along it
    /// the kept point lies, and the forward passes run.
    fn bisect(
        &self,
        best: &Tensor,
        found: &Tensor,
        best_label: &mut Tensor,
    ) -> (Tensor, Tensor, u64) {
        let (s, x0, shape) = (self.s, &self.x0, self.shape.as_slice());
        let (len, dev) = (self.len as i64, self.model.device());
        let mut forward_only = 0u64;
        let mut lo = Tensor::zeros([len], (Kind::Float, dev));
        let mut hi = Tensor::ones([len], (Kind::Float, dev));
        let dir = best - x0;
        for _ in 0..s.bisect {
            let mid = (&lo + &hi) / 2.0;
            let x = x0 + &dir * mid.view(shape);
            let pred = tch::no_grad(|| logits_of(self.model, &x, s.bf16).argmax(1, false));
            forward_only += len as u64;
            let adv = pred.ne_tensor(&self.y).logical_and(found);
            hi = mid.where_self(&adv, &hi);
            *best_label = pred.where_self(&adv, best_label);
            lo = lo.where_self(&adv, &mid);
        }
        let mut reach = hi;
        if s.overshoot > 0.0 {
            // Past the boundary by a fraction of the distance, where that
            // point is still adversarial (clamped to the image box).
            let far = &reach * (1.0 + s.overshoot);
            let x = (x0 + &dir * far.view(shape)).clamp(0.0, 1.0);
            let pred = tch::no_grad(|| logits_of(self.model, &x, s.bf16).argmax(1, false));
            forward_only += len as u64;
            let adv = pred.ne_tensor(&self.y).logical_and(found);
            *best_label = pred.where_self(&adv, best_label);
            reach = far.where_self(&adv, &reach);
        }
        (dir, reach, forward_only)
    }
}

impl FastFound {
    /// Records the batch from sample `start` on in `out`: an already wrong
    /// sample at distance 0, a found one at the smallest ε of Alg. 1's grid
    /// whose ball holds it; the others go to `fallback`.
    fn record(&self, out: &mut Out, start: usize, eps0: f64, fallback: &mut Vec<usize>) {
        for k in 0..self.found.len() {
            let id = start + k;
            if self.wrong[k] {
                out.images[id] = Some(self.images.get(k as i64));
                out.adv[id] = self.labels[k];
                out.eps[id] = eps0;
                out.dist[id] = 0.0;
                out.steps[id] = 0;
                out.success[id] = true;
            } else if self.found[k] {
                out.images[id] = Some(self.images.get(k as i64));
                out.adv[id] = self.labels[k];
                let mut e = eps0;
                while e < self.dist[k] {
                    e *= 2.0;
                }
                out.eps[id] = e;
                out.dist[id] = self.dist[k];
                out.steps[id] = self.steps[k];
                out.success[id] = true;
            } else {
                fallback.push(id);
                out.steps[id] = self.steps[k];
            }
        }
    }
}

/// The samples the fast search never flipped, searched exactly.
struct Fallback<'a> {
    model: &'a dyn Target,
    images: &'a Tensor,
    labels: &'a Tensor,
    indices: &'a [i64],
}

impl Fallback<'_> {
    /// The exact search from ε0 of the samples at `fallback`, recorded in
    /// `out` (its steps added to the fast search's).
    fn search(&self, fallback: &[usize], s: &AdvSettings, eps0: f64, out: &mut Out) -> Result<()> {
        let idx = Tensor::from_slice(&fallback.iter().map(|&i| i as i64).collect::<Vec<_>>())
            .to_device(self.images.device());
        let sub_idx: Vec<i64> = fallback.iter().map(|&i| self.indices[i]).collect();
        let sub = pgd_search(
            self.model,
            &self.images.index_select(0, &idx),
            &self.labels.index_select(0, &idx),
            &sub_idx,
            s,
            eps0,
            s.max_doublings,
            &crate::progress::Quiet,
        )?;
        for (k, &id) in fallback.iter().enumerate() {
            out.images[id] = Some(sub.images.get(k as i64));
            out.adv[id] = sub.adv_labels[k];
            out.eps[id] = sub.eps[k];
            out.dist[id] = sub.dist[k];
            out.steps[id] += sub.steps[k];
            out.success[id] = sub.success[k];
        }
        Ok(())
    }
}
