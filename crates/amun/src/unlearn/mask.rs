//! SalUn's weight-saliency mask: |∇θ (−CE)| accumulated over the forget
//! set (model in eval mode), ranked over all weights at once; the top
//! fraction `ratio` is 1, the rest 0.
use crate::data::{Split, eval_batches};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::model::checkpoint::{read_tensors, write_tensors};
use crate::train::cross_entropy;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// One 0/1 tensor per trainable parameter.
#[derive(Debug)]
pub struct SaliencyMask {
    pub masks: HashMap<String, Tensor>,
    pub ratio: f64,
}

impl SaliencyMask {
    /// Fraction of weights the mask keeps.
    pub fn kept_fraction(&self) -> f64 {
        let (k, n) = self.masks.values().fold((0.0, 0.0), |(k, n), m| {
            (
                k + m.sum(Kind::Double).double_value(&[]),
                n + m.numel() as f64,
            )
        });
        if n == 0.0 { 0.0 } else { k / n }
    }

    /// Writes the mask (safetensors, one tensor per parameter name).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t: Vec<(String, Tensor)> = self
            .masks
            .iter()
            .map(|(k, v)| (k.clone(), v.to_kind(Kind::Uint8)))
            .collect();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t.push(("__ratio".into(), Tensor::from(self.ratio)));
        write_tensors(path, &t)
    }

    /// Reads a mask and checks it covers `model`'s parameters.
    pub fn load(path: &Path, model: &Classifier) -> Result<SaliencyMask> {
        let mut t = read_tensors(path, model.device())?;
        let ratio = t
            .remove("__ratio")
            .map(|r| r.double_value(&[]))
            .unwrap_or(f64::NAN);
        for (name, p) in model.named_parameters() {
            match t.get(&name) {
                Some(m) if m.size() == p.size() => {}
                _ => {
                    return Err(Error::format(
                        path,
                        format!("no mask of the right shape for {name}"),
                    ));
                }
            }
        }
        Ok(SaliencyMask {
            masks: t
                .into_iter()
                .map(|(k, v)| (k, v.to_kind(Kind::Float)))
                .collect(),
            ratio,
        })
    }
}

/// The mask a method trains under: the one its request carries (computed
/// once by calibration on the original model) or its own.
pub enum GivenOrOwn<'a> {
    Given(&'a SaliencyMask),
    Own(SaliencyMask),
}

impl GivenOrOwn<'_> {
    pub fn mask(&self) -> &SaliencyMask {
        match self {
            GivenOrOwn::Given(m) => m,
            GivenOrOwn::Own(m) => m,
        }
    }
}

/// The mask of a method whose saliency ratio is `ratio` (`None`: it masks
/// nothing): `given` when there is one, else `model`'s on the forget set
/// `forget` gives, timed in `log` as "saliency_mask".
pub fn given_or_own<'a>(
    ratio: Option<f64>,
    given: Option<&'a SaliencyMask>,
    model: &Classifier,
    forget: impl FnOnce() -> Split,
    batch: usize,
    log: &mut super::UnlearnLog,
) -> Result<Option<GivenOrOwn<'a>>> {
    Ok(match (ratio, given) {
        (None, _) => None,
        (Some(_), Some(m)) => Some(GivenOrOwn::Given(m)),
        (Some(r), None) => Some(GivenOrOwn::Own(log.time("saliency_mask", || {
            saliency_mask(model, &forget(), r, batch)
        })?)),
    })
}

/// Computes the mask keeping exactly ⌊ratio · #weights⌋ weights.
pub fn saliency_mask(
    model: &Classifier,
    forget: &Split,
    ratio: f64,
    batch: usize,
) -> Result<SaliencyMask> {
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(Error::invalid(
            "ratio",
            format!("must lie in (0,1], got {ratio}"),
        ));
    }
    let params = model.named_parameters();
    let mut acc: Vec<Tensor> = params.iter().map(|(_, p)| p.zeros_like()).collect();
    for (start, x) in eval_batches(&forget.images, batch, model.device()) {
        let n = x.size()[0];
        let y = forget.labels.narrow(0, start, n).to_device(model.device());
        let loss = -cross_entropy(&model.forward_t(&x, false), &y);
        let ps: Vec<&Tensor> = params.iter().map(|(_, p)| p).collect();
        let grads = Tensor::run_backward(&[&loss], &ps, false, false);
        tch::no_grad(|| {
            for (a, g) in acc.iter_mut().zip(&grads) {
                *a += g;
            }
        });
    }
    let flat = Tensor::cat(
        &acc.iter()
            .map(|a| a.abs().flatten(0, -1).to_device(Device::Cpu))
            .collect::<Vec<_>>(),
        0,
    );
    let total = flat.numel();
    let k = ((total as f64) * ratio).floor() as i64;
    let mut keep = Tensor::zeros([total as i64], (Kind::Float, Device::Cpu));
    if k > 0 {
        let (_, idx) = flat.topk(k, 0, true, false);
        let _ = keep.index_fill_(0, &idx, 1.0);
    }
    let mut masks = HashMap::new();
    let mut offset = 0i64;
    for (name, p) in &params {
        let n = p.numel() as i64;
        masks.insert(
            name.clone(),
            keep.narrow(0, offset, n)
                .view(p.size().as_slice())
                .to_device(p.device()),
        );
        offset += n;
    }
    Ok(SaliencyMask { masks, ratio })
}
