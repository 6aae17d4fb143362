//! SGD with momentum and weight decay, written out (rather than tch's
//! optimizer) so that its momentum buffers can be checkpointed for an exact
//! resume and gradients can be masked (SalUn) before the step.
//! Same update as `torch.optim.SGD` (dampening 0):
//! `g ← ∇ + wd·θ; b ← μ·b + g (b ← g on the first step); θ ← θ − lr·(nesterov ? g + μ·b : b)`.
use crate::error::{Error, Result};
use crate::model::Classifier;
use std::collections::HashMap;
use tch::Tensor;

/// The optimizer state of one model.
#[derive(Debug)]
pub struct Sgd {
    params: Vec<(String, Tensor)>,
    bufs: Vec<Option<Tensor>>,
    mask: Option<Vec<Tensor>>,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Sgd {
    /// An optimizer over `model`'s trainable parameters.
    pub fn new(model: &Classifier, momentum: f64, weight_decay: f64, nesterov: bool) -> Sgd {
        let params = model.named_parameters();
        let bufs = params.iter().map(|_| None).collect();
        Sgd {
            params,
            bufs,
            mask: None,
            momentum,
            weight_decay,
            nesterov,
        }
    }

    /// The parameters it updates, by name.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Multiplies every gradient by `mask[name]` (0/1) before each step;
    /// parameters absent from the map are not masked. Weight decay is added
    /// after masking, as in the SalUn reference code.
    pub fn set_grad_mask(&mut self, mask: &HashMap<String, Tensor>) -> Result<()> {
        let mut v = Vec::with_capacity(self.params.len());
        for (name, p) in &self.params {
            let m = match mask.get(name) {
                Some(m) if m.size() == p.size() => m.to_device(p.device()).to_kind(p.kind()),
                Some(m) => {
                    return Err(Error::invalid(
                        "mask",
                        format!("{name}: mask {:?} vs parameter {:?}", m.size(), p.size()),
                    ));
                }
                None => p.ones_like(),
            };
            v.push(m);
        }
        self.mask = Some(v);
        Ok(())
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// One update with learning rate `lr` from the current gradients.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = match &self.mask {
                    Some(m) => &g * &m[i],
                    None => g,
                };
                let mut g = if self.weight_decay != 0.0 {
                    g + p * self.weight_decay
                } else {
                    g
                };
                if self.momentum != 0.0 {
                    let buf = match self.bufs[i].take() {
                        Some(b) => b * self.momentum + &g,
                        None => g.copy(),
                    };
                    g = if self.nesterov {
                        g + &buf * self.momentum
                    } else {
                        buf.shallow_clone()
                    };
                    self.bufs[i] = Some(buf);
                }
                let _ = p.shallow_clone().f_sub_(&(g * lr));
            }
        });
    }

    /// Momentum buffers by parameter name (for checkpoints).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.bufs)
            .filter_map(|((n, _), b)| b.as_ref().map(|b| (n.clone(), b.shallow_clone())))
            .collect()
    }

    /// Restores momentum buffers saved by [`Sgd::state`].
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (n, p)) in self.params.iter().enumerate() {
            self.bufs[i] = match state.get(n) {
                Some(b) if b.size() == p.size() => Some(b.to_device(p.device()).to_kind(p.kind())),
                Some(b) => {
                    return Err(Error::invalid(
                        "resume",
                        format!("momentum for {n} has shape {:?}", b.size()),
                    ));
                }
                None => None,
            };
        }
        Ok(())
    }
}
