//! ResNet-18 in its CIFAR form (He et al. 2016; the layout of the AMUN
//! authors' code, after kuangliu/pytorch-cifar): 3x3 stem with stride 1 and
//! no max-pool, four stages of two basic blocks (64, 128, 256, 512 channels),
//! global average pool, linear head. Parameter names match that code's
//! `state_dict()` (`conv1`, `bn1`, `layer1.0.conv1`, …, `shortcut.0`, `linear`).
//!
//! The authors' variant divides the residual sum by 2 in the blocks that
//! downsample (`ResNet18 { halve_shortcut_sum: true }`).
use super::layers::{BatchNorm2d, Linear, batch_norm2d, conv2d, linear};
use tch::Tensor;
use tch::nn::{self, ModuleT};

#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: BatchNorm2d,
    conv2: nn::Conv2D,
    bn2: BatchNorm2d,
    shortcut: Option<(nn::Conv2D, BatchNorm2d)>,
    halve: bool,
}

impl BasicBlock {
    fn new(p: nn::Path, cin: i64, cout: i64, stride: i64, halve_sum: bool) -> BasicBlock {
        let shortcut = (stride != 1 || cin != cout).then(|| {
            (
                conv2d(&p / "shortcut" / "0", cin, cout, 1, stride, 0, false),
                batch_norm2d(&p / "shortcut" / "1", cout),
            )
        });
        BasicBlock {
            conv1: conv2d(&p / "conv1", cin, cout, 3, stride, 1, false),
            bn1: batch_norm2d(&p / "bn1", cout),
            conv2: conv2d(&p / "conv2", cout, cout, 3, 1, 1, false),
            bn2: batch_norm2d(&p / "bn2", cout),
            halve: halve_sum && shortcut.is_some(),
            shortcut,
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let out = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        let short = match &self.shortcut {
            Some((conv, bn)) => xs.apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        let sum = out + short;
        if self.halve { sum / 2.0 } else { sum }.relu()
    }
}

#[derive(Debug)]
pub struct ResNet18 {
    conv1: nn::Conv2D,
    bn1: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    linear: Linear,
}

impl ResNet18 {
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64, halve_sum: bool) -> ResNet18 {
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (stage, &(cout, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)].iter().enumerate() {
            let lp = p / format!("layer{}", stage + 1);
            blocks.push(BasicBlock::new(&lp / "0", cin, cout, stride, halve_sum));
            blocks.push(BasicBlock::new(&lp / "1", cout, cout, 1, halve_sum));
            cin = cout;
        }
        ResNet18 {
            conv1: conv2d(p / "conv1", in_channels, 64, 3, 1, 1, false),
            bn1: batch_norm2d(p / "bn1", 64),
            blocks,
            linear: linear(p / "linear", 512, num_classes),
        }
    }
}

impl ModuleT for ResNet18 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        for b in &self.blocks {
            x = x.apply_t(b, train);
        }
        x.adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.linear)
    }
}
