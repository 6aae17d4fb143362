//! Shuffled mini-batches over one or more parts (e.g. the retain set,
//! augmented, mixed with adversarial examples, not augmented).
use super::{Augment, Split, augment_batch, to_unit_float};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// One source of training samples.
#[derive(Debug)]
pub struct Part {
    /// Short name for logs ("retain", "forget", "adversarial").
    pub name: String,
    /// `[N,C,H,W]` uint8, or f32 in `[0,1]` (adversarial images stay float).
    pub images: Tensor,
    /// `[N]` int64 training labels (may differ from the true ones).
    pub labels: Tensor,
    /// Whether crop+flip applies to this part.
    pub augment: bool,
    /// Training-set index of each row, or -1 for a synthetic sample.
    pub origin: Vec<i64>,
    /// Each epoch trains on a fresh sample of some rows instead of all of
    /// them (a retain budget); `None`: every row, every epoch.
    pub draw: Option<Draw>,
}

/// A per-epoch sample: the rows `optional` may be left out, and each epoch
/// keeps `count` of them, drawn afresh from the epoch's seed; the other rows
/// of the part are always in.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    pub optional: Vec<u32>,
    pub count: usize,
}

impl Part {
    /// A part holding `split` rows `indices` of the training set.
    pub fn from_indices(name: &str, train: &Split, indices: &[i64], augment: bool) -> Part {
        let s = train.select(indices);
        Part {
            name: name.into(),
            images: s.images,
            labels: s.labels,
            augment,
            origin: indices.to_vec(),
            draw: None,
        }
    }

    /// A part holding a whole split whose rows are training indices 0..N.
    pub fn whole(name: &str, train: &Split, augment: bool) -> Part {
        Part {
            name: name.into(),
            images: train.images.shallow_clone(),
            labels: train.labels.shallow_clone(),
            augment,
            origin: (0..train.len() as i64).collect(),
            draw: None,
        }
    }

    /// This part with each epoch keeping only `count` of the rows whose
    /// training index is in `optional` (sorted); `count` at least their
    /// number keeps them all.
    pub fn drawing(mut self, optional: &[i64], count: usize) -> Part {
        let rows: Vec<u32> = self
            .origin
            .iter()
            .enumerate()
            .filter(|(_, o)| optional.binary_search(o).is_ok())
            .map(|(r, _)| r as u32)
            .collect();
        if count < rows.len() {
            self.draw = Some(Draw {
                optional: rows,
                count,
            });
        }
        self
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.origin.len()
    }

    /// Number of rows an epoch trains on.
    pub fn epoch_len(&self) -> usize {
        match &self.draw {
            Some(d) => self.len() - d.optional.len() + d.count,
            None => self.len(),
        }
    }

    /// Whether the part is empty.
    pub fn is_empty(&self) -> bool {
        self.origin.is_empty()
    }
}

/// Samples to train on: parts shuffled together into mixed batches.
#[derive(Debug)]
pub struct TrainSet {
    pub parts: Vec<Part>,
    /// Augmentation for the parts that ask for it.
    pub augment: Augment,
}

/// One mini-batch, on the parts' device.
#[derive(Debug)]
pub struct Batch {
    /// `[B,C,H,W]` f32 in `[0,1]`.
    pub x: Tensor,
    /// `[B]` int64.
    pub y: Tensor,
    /// Training-set index of each row (-1 for synthetic), in row order.
    pub origin: Vec<i64>,
}

impl TrainSet {
    /// A set of one part.
    pub fn single(part: Part, augment: Augment) -> TrainSet {
        TrainSet {
            parts: vec![part],
            augment,
        }
    }

    /// Total number of samples.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Part::len).sum()
    }

    /// Number of samples an epoch trains on (less than [`TrainSet::len`]
    /// when a part draws a sample per epoch).
    pub fn epoch_len(&self) -> usize {
        self.parts.iter().map(Part::epoch_len).sum()
    }

    /// Whether there is nothing to train on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of batches per epoch (see [`batch_count`]).
    pub fn batches_per_epoch(&self, batch_size: usize) -> usize {
        batch_count(self.epoch_len(), batch_size)
    }

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        self.parts
            .first()
            .map(|p| p.labels.device())
            .unwrap_or(Device::Cpu)
    }

    /// The batches of one epoch. Shuffling and augmentation draw from a
    /// ChaCha8 stream seeded with `seed`, so an epoch is reproducible on its
    /// own (what resuming needs). No sample is ever dropped; a remainder
    /// under half a batch joins the last full batch (see [`batch_count`]).
    pub fn epoch(&self, batch_size: usize, seed: u64) -> EpochIter<'_> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<(u32, u32)> = Vec::with_capacity(self.epoch_len());
        for (p, part) in self.parts.iter().enumerate() {
            match &part.draw {
                // Without a draw the stream is not touched: the same bits
                // as before draws existed.
                None => order.extend((0..part.len() as u32).map(|r| (p as u32, r))),
                Some(d) => {
                    let mut out = vec![false; part.len()];
                    for &r in &d.optional {
                        out[r as usize] = true;
                    }
                    for k in rand::seq::index::sample(&mut rng, d.optional.len(), d.count) {
                        out[d.optional[k] as usize] = false;
                    }
                    order.extend(
                        (0..part.len() as u32)
                            .filter(|&r| !out[r as usize])
                            .map(|r| (p as u32, r)),
                    );
                }
            }
        }
        order.shuffle(&mut rng);
        EpochIter {
            set: self,
            order,
            pos: 0,
            batch_size: batch_size.max(1),
            rng,
        }
    }
}

/// Batches of an epoch of `n` samples: full batches, the remainder its own
/// batch when it is at least half a batch, else part of the last full one.
/// A trailing batch of a few samples is one SGD step at the full learning
/// rate on a handful of images with BatchNorm statistics of those few: on a
/// 900-image retrain at batch 128 (a last batch of 4) it blew the loss up
/// from 1.7 to 4.0 mid-run and the "exact" retrain ended at 72% retain
/// accuracy where the same recipe at batch 100 memorises (100%), so the
/// audit's reference model was wrong.
pub fn batch_count(n: usize, batch_size: usize) -> usize {
    let b = batch_size.max(1);
    match (n / b, n % b) {
        (0, r) => usize::from(r > 0),
        (full, r) if r >= b.div_ceil(2) => full + 1,
        (full, _) => full,
    }
}

/// Iterator over the batches of one epoch.
pub struct EpochIter<'a> {
    set: &'a TrainSet,
    order: Vec<(u32, u32)>,
    pos: usize,
    batch_size: usize,
    rng: ChaCha8Rng,
}

impl Iterator for EpochIter<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.pos >= self.order.len() {
            return None;
        }
        // The last batch of `batch_count` takes whatever is left.
        let n = self.order.len();
        let end = if batch_count(n - self.pos, self.batch_size) == 1 {
            n
        } else {
            self.pos + self.batch_size
        };
        let chunk = &self.order[self.pos..end];
        self.pos = end;
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        let mut origin = Vec::with_capacity(chunk.len());
        for (p, part) in self.set.parts.iter().enumerate() {
            let rows: Vec<i64> = chunk
                .iter()
                .filter(|(q, _)| *q as usize == p)
                .map(|(_, r)| i64::from(*r))
                .collect();
            if rows.is_empty() {
                continue;
            }
            origin.extend(rows.iter().map(|&r| part.origin[r as usize]));
            let idx = Tensor::from_slice(&rows).to_device(part.labels.device());
            let imgs = part.images.index_select(0, &idx);
            let imgs = if part.augment {
                augment_batch(&imgs, self.set.augment, &mut self.rng)
            } else {
                imgs
            };
            xs.push(to_unit_float(&imgs));
            ys.push(part.labels.index_select(0, &idx));
        }
        Some(Batch {
            x: Tensor::cat(&xs, 0),
            y: Tensor::cat(&ys, 0),
            origin,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = batch_count(self.order.len() - self.pos, self.batch_size);
        (n, Some(n))
    }
}

impl ExactSizeIterator for EpochIter<'_> {}

/// Sequential batches of `images` for evaluation, as f32 in `[0,1]` on
/// `device`: `(start, x)` pairs, every sample exactly once.
pub fn eval_batches(
    images: &Tensor,
    batch_size: usize,
    device: Device,
) -> impl Iterator<Item = (i64, Tensor)> + '_ {
    let n = images.size()[0];
    let bs = batch_size.max(1) as i64;
    (0..n).step_by(bs as usize).map(move |start| {
        let len = bs.min(n - start);
        (
            start,
            to_unit_float(&images.narrow(0, start, len).to_device(device)),
        )
    })
}
