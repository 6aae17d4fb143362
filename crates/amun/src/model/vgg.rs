//! VGG-19 with BatchNorm (Simonyan & Zisserman 2015), in the CIFAR layout
//! used by the unlearning literature for Tiny-ImageNet: 16 conv-BN-ReLU
//! layers in five max-pooled stages, global average pool, one linear layer.
//! Names follow `nn.Sequential` indices: `features.0` (conv), `features.1`
//! (BN), …, `classifier`.
use super::layers::{BatchNorm2d, Linear, batch_norm2d, conv2d, linear};
use tch::Tensor;
use tch::nn::{self, ModuleT};

const CFG: [i64; 21] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
];

#[derive(Debug)]
enum Layer {
    Conv(nn::Conv2D, BatchNorm2d),
    Pool,
}

#[derive(Debug)]
pub struct Vgg19 {
    layers: Vec<Layer>,
    classifier: Linear,
}

impl Vgg19 {
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64) -> Vgg19 {
        let f = p / "features";
        let mut layers = Vec::new();
        let mut idx = 0;
        let mut cin = in_channels;
        for &c in &CFG {
            if c == 0 {
                layers.push(Layer::Pool);
                idx += 1;
            } else {
                layers.push(Layer::Conv(
                    conv2d(&f / idx.to_string(), cin, c, 3, 1, 1, true),
                    batch_norm2d(&f / (idx + 1).to_string(), c),
                ));
                idx += 3; // conv, bn, relu
                cin = c;
            }
        }
        Vgg19 {
            layers,
            classifier: linear(p / "classifier", 512, num_classes),
        }
    }
}

impl ModuleT for Vgg19 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for l in &self.layers {
            x = match l {
                Layer::Conv(conv, bn) => x.apply(conv).apply_t(bn, train).relu(),
                Layer::Pool => x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
            };
        }
        x.adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.classifier)
    }
}
