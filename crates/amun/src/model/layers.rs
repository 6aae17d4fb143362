//! Layers initialised as PyTorch initialises them (tch's defaults differ:
//! BatchNorm weights U(0,1), another Kaiming bound), with PyTorch's parameter
//! and buffer names, so checkpoints map one to one onto `state_dict()`s.
use tch::nn::{self, Init, ModuleT};
use tch::{Kind, Tensor};

fn fan_in_bound(fan_in: i64) -> f64 {
    1.0 / (fan_in as f64).sqrt()
}

/// `nn.Conv2d(cin, cout, k, stride, padding, bias)` with PyTorch's init.
pub fn conv2d(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
    bias: bool,
) -> nn::Conv2D {
    let b = fan_in_bound(cin * k * k);
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias,
        ws_init: Init::Uniform { lo: -b, up: b },
        bs_init: Init::Uniform { lo: -b, up: b },
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// `nn.Linear(cin, cout)` with PyTorch's init and names. Computed as a
/// broadcast product and a sum over the input features rather than a GEMM,
/// so each sample's logits do not depend on what else is in the batch (BLAS
/// picks kernels by batch size, which moves the last bits): the adversarial
/// search gives the same bits whatever the batch around a sample. Only the
/// small classifier heads use it.
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

pub fn linear(p: nn::Path, cin: i64, cout: i64) -> Linear {
    let b = fan_in_bound(cin);
    Linear {
        weight: p.var("weight", &[cout, cin], Init::Uniform { lo: -b, up: b }),
        bias: p.var("bias", &[cout], Init::Uniform { lo: -b, up: b }),
    }
}

impl nn::Module for Linear {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let w = self.weight.to_kind(xs.kind());
        (xs.unsqueeze(1) * w.unsqueeze(0)).sum_dim_intlist(2, false, xs.kind()) + &self.bias
    }
}

/// `nn.BatchNorm2d(c)`: weight 1, bias 0, momentum 0.1, eps 1e-5, and the
/// `num_batches_tracked` buffer PyTorch's strict loading expects.
#[derive(Debug)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: Tensor,
}

pub fn batch_norm2d(p: nn::Path, c: i64) -> BatchNorm2d {
    BatchNorm2d {
        weight: p.var("weight", &[c], Init::Const(1.0)),
        bias: p.var("bias", &[c], Init::Const(0.0)),
        running_mean: p.zeros_no_train("running_mean", &[c]),
        running_var: p.ones_no_train("running_var", &[c]),
        num_batches_tracked: p.add(
            "num_batches_tracked",
            Tensor::zeros([], (Kind::Int64, p.device())),
            false,
        ),
    }
}

impl ModuleT for BatchNorm2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        Tensor::batch_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            0.1,
            1e-5,
            true,
        )
    }
}
