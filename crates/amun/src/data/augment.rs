//! Batched augmentation: random crop with zero padding and horizontal flip,
//! as torchvision's `RandomCrop(size, padding=p)` + `RandomHorizontalFlip()`,
//! done for a whole batch with one gather on the batch's device.
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Augmentation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Zero padding on each side before the random crop (0 = no crop).
    pub crop_padding: i64,
    /// Random horizontal flip with probability 1/2.
    pub flip: bool,
}

impl Augment {
    /// The spec's augmentation: crop 32 with padding 4, horizontal flip.
    pub const CROP_FLIP: Augment = Augment {
        crop_padding: 4,
        flip: true,
    };
    /// No augmentation.
    pub const NONE: Augment = Augment {
        crop_padding: 0,
        flip: false,
    };

    /// Whether this changes anything.
    pub fn is_identity(&self) -> bool {
        self.crop_padding == 0 && !self.flip
    }
}

/// Augments `images` (`[B,C,H,W]`, any dtype, any device). The offsets and
/// flips are drawn from `rng` (three draws per image, in order), so a seed
/// gives the same batch on every device.
pub fn augment_batch(images: &Tensor, aug: Augment, rng: &mut impl Rng) -> Tensor {
    if aug.is_identity() {
        return images.shallow_clone();
    }
    let size = images.size();
    let (b, c, h, w) = (size[0], size[1], size[2], size[3]);
    let p = aug.crop_padding;
    let mut dy = Vec::with_capacity(b as usize);
    let mut dx = Vec::with_capacity(b as usize);
    let mut flip = Vec::with_capacity(b as usize);
    for _ in 0..b {
        dy.push(rng.random_range(0..=2 * p));
        dx.push(rng.random_range(0..=2 * p));
        flip.push(aug.flip && rng.random_bool(0.5));
    }
    let dev = images.device();
    let opts = (Kind::Int64, dev);
    let dy = Tensor::from_slice(&dy).to_device(dev).view([b, 1, 1]);
    let dx = Tensor::from_slice(&dx).to_device(dev).view([b, 1, 1]);
    let flip = Tensor::from_slice(&flip).to_device(dev).view([b, 1, 1]);
    let (ph, pw) = (h + 2 * p, w + 2 * p);
    let padded = if p > 0 {
        images.constant_pad_nd([p, p, p, p])
    } else {
        images.shallow_clone()
    };
    let rows = Tensor::arange(h, opts).view([1, h, 1]) + &dy;
    let j = Tensor::arange(w, opts).view([1, 1, w]);
    let cols = j.where_self(&flip.logical_not(), &(j.neg() + (w - 1))) + &dx;
    // out[b,c,i,j] = padded[b,c,dy+i, dx+(flip ? w-1-j : j)], one gather.
    let flat = (rows * pw + cols)
        .view([b, 1, h * w])
        .expand([b, c, h * w], false);
    padded
        .view([b, c, ph * pw])
        .gather(2, &flat, false)
        .view([b, c, h, w])
}
