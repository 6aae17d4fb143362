//! A small CNN that trains in seconds on a CPU: three conv-BN-ReLU-maxpool
//! stages (32, 64, 128 channels) and a linear classifier.
use super::layers::{BatchNorm2d, Linear, batch_norm2d, conv2d, linear};
use tch::Tensor;
use tch::nn::{self, ModuleT};

#[derive(Debug)]
pub struct SmallCnn {
    convs: Vec<(nn::Conv2D, BatchNorm2d)>,
    fc: Linear,
}

impl SmallCnn {
    pub fn new(p: &nn::Path, in_channels: i64, image_size: i64, num_classes: i64) -> SmallCnn {
        let widths = [32, 64, 128];
        let mut convs = Vec::new();
        let mut cin = in_channels;
        for (i, &w) in widths.iter().enumerate() {
            convs.push((
                conv2d(p / format!("conv{}", i + 1), cin, w, 3, 1, 1, false),
                batch_norm2d(p / format!("bn{}", i + 1), w),
            ));
            cin = w;
        }
        let side = image_size / 8;
        let fc = linear(p / "fc", cin * side * side, num_classes);
        SmallCnn { convs, fc }
    }
}

impl ModuleT for SmallCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (conv, bn) in &self.convs {
            x = x.apply(conv).apply_t(bn, train).relu().max_pool2d(
                [2, 2],
                [2, 2],
                [0, 0],
                [1, 1],
                false,
            );
        }
        x.flatten(1, -1).apply(&self.fc)
    }
}
