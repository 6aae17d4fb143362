//! Image classifiers: the CIFAR ResNet-18 of the spec (and the authors'
//! variant), VGG-19 with BatchNorm, and a small CNN for CPU work; plus
//! checkpoints (safetensors + a JSON sidecar).

pub mod checkpoint;
mod layers;
pub mod layout;
pub mod lineage;
mod open;
pub mod predict;
pub mod program;
mod resnet;
mod small_cnn;
mod torchfile;
mod vgg;

pub use checkpoint::{Origin, Sidecar};
pub use layout::{Layout, check_export_out, export, import};
pub use open::{
    ChanceCheck, ModelSource, OpenSpec, Opened, chance_check, check_checkpoint_path,
    check_openable, import_program, load_data, open, open_program,
};

use crate::error::{Error, Result, TorchContext};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// A model architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Three conv stages and a linear layer: seconds per epoch on a CPU.
    SmallCnn,
    /// CIFAR ResNet-18 (3x3 stem, no max-pool).
    Resnet18,
    /// The AMUN authors' ResNet-18: residual sum halved in downsampling blocks.
    Resnet18Div2,
    /// VGG-19 with BatchNorm.
    Vgg19,
    /// A user's own classifier exported with `torch.export` (the graph is
    /// `ModelSpec::program`).
    Exported,
}

impl Arch {
    /// Every built-in architecture, for help texts and errors.
    pub const ALL: [Arch; 4] = [
        Arch::SmallCnn,
        Arch::Resnet18,
        Arch::Resnet18Div2,
        Arch::Vgg19,
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Arch::SmallCnn => "small-cnn",
            Arch::Resnet18 => "resnet18",
            Arch::Resnet18Div2 => "resnet18-div2",
            Arch::Vgg19 => "vgg19",
            Arch::Exported => "exported",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
                Error::invalid(
                    "model",
                    format!("unknown model '{s}'; expected one of {}", names.join(", ")),
                )
            })
    }
}

/// Per-channel input normalisation applied inside the model, so attacks and
/// data stay in `[0,1]` pixel space while the weights see what they were
/// trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Normalize {
    /// Parses `M,S` (the same for every one of `channels`) or
    /// `M1,M2,M3:S1,S2,S3`.
    ///
    /// ```
    /// use amun::model::Normalize;
    /// assert_eq!(Normalize::parse("0.5,0.25", 3).unwrap().std, vec![0.25; 3]);
    /// assert_eq!(Normalize::parse("0.1,0.2:0.3,0.4", 2).unwrap().mean, vec![0.1, 0.2]);
    /// assert!(Normalize::parse("0.5", 1).is_err());
    /// ```
    pub fn parse(s: &str, channels: usize) -> Result<Normalize> {
        let bad = || {
            Error::invalid(
                format!("--normalize '{s}'"),
                "expected MEAN,STD or M1,M2,M3:S1,S2,S3",
            )
        };
        let nums = |t: &str| {
            t.split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<std::result::Result<Vec<f64>, _>>()
                .map_err(|_| bad())
        };
        let (mean, std) = match s.split_once(':') {
            Some((m, d)) => (nums(m)?, nums(d)?),
            None => match nums(s)?.as_slice() {
                [m, d] => (vec![*m; channels], vec![*d; channels]),
                _ => return Err(bad()),
            },
        };
        Ok(Normalize { mean, std })
    }
}

/// Everything needed to rebuild a model's graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Image channels (3 for CIFAR, 1 for MNIST).
    pub in_channels: i64,
    /// Image height = width.
    pub image_size: i64,
    pub num_classes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    /// The exported program of an `exported` model (none otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<program::ProgramRef>,
}

impl ModelSpec {
    /// The spec for `arch` on images of shape `[C,H,W]` with `num_classes`.
    pub fn for_data(arch: Arch, image_shape: [i64; 3], num_classes: usize) -> Result<ModelSpec> {
        let [c, h, w] = image_shape;
        if h != w {
            return Err(Error::invalid(
                "model",
                format!("{arch} needs square images, the data has {h}x{w}"),
            ));
        }
        let spec = ModelSpec {
            arch,
            in_channels: c,
            image_size: h,
            num_classes: num_classes as i64,
            normalize: None,
            program: None,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The spec of the exported program `program` on images of shape
    /// `[C,H,W]` with `num_classes`.
    pub fn exported(
        program: program::ProgramRef,
        image_shape: [i64; 3],
        num_classes: usize,
    ) -> Result<ModelSpec> {
        let [c, h, w] = image_shape;
        if h != w {
            return Err(Error::invalid(
                "model",
                format!("amun runs square images, the data has {h}x{w}"),
            ));
        }
        let spec = ModelSpec {
            arch: Arch::Exported,
            in_channels: c,
            image_size: h,
            num_classes: num_classes as i64,
            normalize: None,
            program: Some(program),
        };
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<()> {
        let min = match self.arch {
            Arch::SmallCnn => 8,
            Arch::Vgg19 => 32,
            Arch::Resnet18 | Arch::Resnet18Div2 => 8,
            // The graph says what it takes: checked when it is opened.
            Arch::Exported => 1,
        };
        if (self.arch == Arch::Exported) != self.program.is_some() {
            return Err(Error::invalid(
                "model",
                "an exported model needs its program, and only an exported model has one",
            ));
        }
        if self.image_size < min {
            return Err(Error::invalid(
                "model",
                format!(
                    "{} needs images of at least {min}x{min}, got {}x{}",
                    self.arch, self.image_size, self.image_size
                ),
            ));
        }
        if self.num_classes < 2 || self.in_channels < 1 {
            return Err(Error::invalid(
                "model",
                format!(
                    "needs ≥ 2 classes and ≥ 1 channel, got {} and {}",
                    self.num_classes, self.in_channels
                ),
            ));
        }
        if let Some(n) = &self.normalize {
            let c = self.in_channels as usize;
            if n.mean.len() != c || n.std.len() != c || n.std.iter().any(|s| *s <= 0.0) {
                return Err(Error::invalid(
                    "normalize",
                    format!("expected {c} means and {c} positive stds"),
                ));
            }
        }
        Ok(())
    }

    /// Checks that a dataset's images and classes fit this model.
    pub fn check_data(&self, image_shape: [i64; 3], num_classes: usize, what: &Path) -> Result<()> {
        let [c, h, _] = image_shape;
        if c != self.in_channels || h != self.image_size || num_classes as i64 != self.num_classes {
            return Err(Error::checkpoint(
                what,
                format!(
                    "model is {} for {}x{}x{} images and {} classes, but the data has {}x{}x{} images and {} classes",
                    self.arch,
                    self.in_channels,
                    self.image_size,
                    self.image_size,
                    self.num_classes,
                    c,
                    h,
                    h,
                    num_classes
                ),
            ));
        }
        Ok(())
    }
}

/// A classifier: its spec, its variables, and the graph over them.
/// Inputs are `[B,C,H,W]` f32 in `[0,1]`; outputs are logits `[B,K]`.
#[derive(Debug)]
pub struct Classifier {
    vs: nn::VarStore,
    net: Net,
    spec: ModelSpec,
    norm: Option<(Tensor, Tensor)>,
    channels_last: bool,
}

/// The graph over a classifier's variables.
#[derive(Debug)]
enum Net {
    Builtin(Box<dyn ModuleT>),
    Exported(program::ExportedNet),
}

impl Classifier {
    /// A freshly initialised model; the init draws from libtorch's generator
    /// seeded with `seed`, so the same seed gives the same weights. An
    /// exported model starts as its `ProgramRef::init` says.
    pub fn new(spec: &ModelSpec, device: Device, seed: u64) -> Result<Classifier> {
        let c = Classifier::build(spec, device, seed)?;
        if let (Net::Exported(net), Some(p)) = (&c.net, &spec.program) {
            match &p.init {
                program::ProgramInit::Pytorch => net.init_pytorch()?,
                program::ProgramInit::Weights { file, sha256 } => {
                    let got = crate::data::sha256_file(file)?;
                    if &got != sha256 {
                        return Err(Error::Checksum {
                            path: file.clone(),
                            expected: sha256.clone(),
                            actual: got,
                        });
                    }
                    let mut c = c;
                    let w = read_init_weights(file)?
                        .into_iter()
                        .map(|(k, v)| (k, v.to_device(device)))
                        .collect();
                    c.load_named(w, file)?;
                    return Ok(c);
                }
            }
        }
        Ok(c)
    }

    /// A model whose variables are about to be overwritten (a clone, a
    /// checkpoint being loaded): built-in models are initialised as by
    /// `new(spec, device, 0)`; an exported one is left at zeros (its init
    /// may need files a loaded model does not).
    pub fn blank(spec: &ModelSpec, device: Device) -> Result<Classifier> {
        Classifier::build(spec, device, 0)
    }

    fn build(spec: &ModelSpec, device: Device, seed: u64) -> Result<Classifier> {
        spec.validate()?;
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let net: Box<dyn ModuleT> = match spec.arch {
            Arch::SmallCnn => Box::new(small_cnn::SmallCnn::new(
                &root,
                spec.in_channels,
                spec.image_size,
                spec.num_classes,
            )),
            Arch::Resnet18 | Arch::Resnet18Div2 => Box::new(resnet::ResNet18::new(
                &root,
                spec.in_channels,
                spec.num_classes,
                spec.arch == Arch::Resnet18Div2,
            )),
            Arch::Vgg19 => Box::new(vgg::Vgg19::new(&root, spec.in_channels, spec.num_classes)),
            Arch::Exported => {
                let p = spec.program.as_ref().expect("validated");
                let prog = program::load(&p.file, Some(&p.sha256))?;
                // A spec (a sidecar, a config) states the graph's shapes;
                // the graph has the last word.
                let stated = [spec.in_channels, spec.image_size, spec.image_size];
                let fixed = prog.input_sizes.iter().skip(1).zip(stated);
                if fixed.clone().any(|(g, s)| g.is_some_and(|g| g != s))
                    || prog.classes.is_some_and(|k| k != spec.num_classes)
                {
                    let show = |v: Option<i64>| v.map_or("any".to_string(), |v| v.to_string());
                    let dims: Vec<String> =
                        prog.input_sizes.iter().skip(1).map(|v| show(*v)).collect();
                    return Err(Error::format(
                        &p.file,
                        format!(
                            "the graph takes {} images and returns {} classes; the model's \
                             record (a sidecar, a config) says {}x{}x{} and {}",
                            dims.join("x"),
                            show(prog.classes),
                            spec.in_channels,
                            spec.image_size,
                            spec.image_size,
                            spec.num_classes
                        ),
                    ));
                }
                let net = program::ExportedNet::new(&root, prog)?;
                return Ok(Classifier::assemble(vs, Net::Exported(net), spec, device));
            }
        };
        Ok(Classifier::assemble(vs, Net::Builtin(net), spec, device))
    }

    fn assemble(vs: nn::VarStore, net: Net, spec: &ModelSpec, device: Device) -> Classifier {
        let norm = spec.normalize.as_ref().map(|n| {
            let c = spec.in_channels;
            let f = |v: &[f64]| {
                Tensor::from_slice(&v.iter().map(|x| *x as f32).collect::<Vec<_>>())
                    .view([1, c, 1, 1])
                    .to_device(device)
            };
            (f(&n.mean), f(&n.std))
        });
        Classifier {
            vs,
            net,
            spec: spec.clone(),
            norm,
            channels_last: false,
        }
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The device its variables live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The variable store (parameters and BatchNorm buffers).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Logits for `x` (`[B,C,H,W]` f32 in `[0,1]`). `train` switches
    /// BatchNorm to batch statistics and updates its running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.prepare(x);
        match &self.net {
            Net::Builtin(net) => net.forward_t(&x, train),
            Net::Exported(net) => net.forward_t(&x, train),
        }
    }

    /// [`Classifier::forward_t`] that returns what failed instead of
    /// panicking: an exported program's node, a shape libtorch refused.
    /// Used to check a model on the data's shapes before any work.
    pub fn try_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.prepare(x);
        match &self.net {
            Net::Builtin(net) => Ok(net.forward_t(&x, train)),
            Net::Exported(net) => net.try_forward(&x, train),
        }
    }

    /// The exported program this model runs, if it is one.
    pub fn program(&self) -> Option<&std::sync::Arc<program::Program>> {
        match &self.net {
            Net::Exported(net) => Some(net.program()),
            Net::Builtin(_) => None,
        }
    }

    fn prepare(&self, x: &Tensor) -> Tensor {
        let x = match &self.norm {
            Some((m, s)) => (x - m) / s,
            None => x.shallow_clone(),
        };
        if self.channels_last {
            crate::device::channels_last(&x).expect("4-D input")
        } else {
            x
        }
    }

    /// An independent copy (same spec, device and values).
    pub fn try_clone(&self) -> Result<Classifier> {
        let mut c = Classifier::blank(&self.spec, self.device())?;
        c.vs.copy(&self.vs).ctx("copying model variables")?;
        if self.channels_last {
            c.use_channels_last()?;
        }
        Ok(c)
    }

    /// Overwrites this model's variables with `other`'s (same spec).
    pub fn copy_from(&mut self, other: &Classifier) -> Result<()> {
        self.vs.copy(&other.vs).ctx("copying model variables")
    }

    /// Stores 4-D weights channels-last and feeds inputs channels-last
    /// (faster convolutions on recent GPUs; same values).
    pub fn use_channels_last(&mut self) -> Result<()> {
        for (_, mut v) in self.vs.variables() {
            if v.dim() == 4 {
                let cl = crate::device::channels_last(&v)?;
                v.set_data(&cl);
            }
        }
        self.channels_last = true;
        Ok(())
    }

    /// Every variable by name, sorted (the checkpoint's content).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// sha256 over every variable's name and bytes: identifies the exact
    /// weights an artifact (an adversarial set, a mask) was computed from.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (name, t) in self.named_tensors() {
            h.update(name.as_bytes());
            let bytes = t
                .to_device(Device::Cpu)
                .contiguous()
                .flatten(0, -1)
                .view_dtype(Kind::Uint8);
            h.update(Vec::<u8>::try_from(bytes).unwrap_or_default());
        }
        format!("{:x}", h.finalize())
    }

    /// Names of the tensors (weights, BatchNorm statistics) holding NaN or
    /// Inf, sorted; empty for a healthy model.
    pub fn non_finite(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .named_tensors()
            .into_iter()
            .filter(|(_, t)| !all_finite(t))
            .map(|(k, _)| k)
            .collect();
        v.sort();
        v
    }

    /// The trainable parameters by name, sorted.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.named_tensors()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }

    /// Overwrites every variable from `tensors`. Strict: missing names,
    /// unexpected names and shape mismatches are all listed in the error.
    pub fn load_named(&mut self, tensors: HashMap<String, Tensor>, source: &Path) -> Result<()> {
        let mine = self.vs.variables();
        let mut missing: Vec<&String> = mine.keys().filter(|k| !tensors.contains_key(*k)).collect();
        let mut unexpected: Vec<&String> =
            tensors.keys().filter(|k| !mine.contains_key(*k)).collect();
        let mut shapes: Vec<String> = mine
            .iter()
            .filter_map(|(k, v)| {
                let t = tensors.get(k)?;
                (t.size() != v.size())
                    .then(|| format!("{k}: checkpoint {:?}, model {:?}", t.size(), v.size()))
            })
            .collect();
        missing.sort();
        unexpected.sort();
        shapes.sort();
        if !missing.is_empty() || !unexpected.is_empty() || !shapes.is_empty() {
            let mut parts = Vec::new();
            let list = |v: &[&String]| {
                let mut s: Vec<String> = v.iter().take(8).map(|x| x.to_string()).collect();
                if v.len() > 8 {
                    s.push(format!("… {} more", v.len() - 8));
                }
                s.join(", ")
            };
            if !missing.is_empty() {
                parts.push(format!("missing {}", list(&missing)));
            }
            if !unexpected.is_empty() {
                parts.push(format!("unexpected {}", list(&unexpected)));
            }
            if !shapes.is_empty() {
                parts.push(format!("shape mismatch {}", shapes.join("; ")));
            }
            return Err(Error::checkpoint(
                source,
                format!(
                    "does not fit a {} with {} classes: {}",
                    self.spec.arch,
                    self.spec.num_classes,
                    parts.join("; ")
                ),
            ));
        }
        // A diverged run leaves NaN/Inf in weights or BatchNorm statistics;
        // such a model predicts garbage, so it is refused by name.
        let mut non_finite: Vec<&String> = tensors
            .iter()
            .filter(|(k, t)| mine.contains_key(*k) && !all_finite(t))
            .map(|(k, _)| k)
            .collect();
        if !non_finite.is_empty() {
            non_finite.sort();
            let shown: Vec<&str> = non_finite.iter().take(4).map(|s| s.as_str()).collect();
            return Err(Error::checkpoint(
                source,
                format!(
                    "holds non-finite values (NaN or Inf) in {} tensor(s): {}{}; the run that \
                     wrote it diverged — train again (e.g. with a lower learning rate)",
                    non_finite.len(),
                    shown.join(", "),
                    if non_finite.len() > 4 { ", …" } else { "" }
                ),
            ));
        }
        tch::no_grad(|| -> Result<()> {
            for (k, mut v) in mine {
                let src = &tensors[&k];
                let src = if v.kind() == Kind::Int64 {
                    src.to_kind(Kind::Int64)
                } else {
                    src.to_kind(v.kind())
                };
                v.f_copy_(&src).ctx(format!("loading {k}"))?;
            }
            Ok(())
        })
    }
}

/// The initial weights of an exported model: a `.pt2`'s own weights or a
/// state dict (`.pt`/`.safetensors`), by name.
fn read_init_weights(file: &Path) -> Result<HashMap<String, Tensor>> {
    if file.extension().is_some_and(|e| e == "pt2") {
        program::read_state_dict(file)
    } else {
        Ok(layout::read_weights(file)?.into_iter().collect())
    }
}

/// Whether every value of a floating-point tensor is finite (integer
/// tensors always are).
pub(crate) fn all_finite(t: &Tensor) -> bool {
    if !matches!(
        t.kind(),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    ) {
        return true;
    }
    t.f_isfinite()
        .and_then(|f| f.f_all())
        .and_then(|a| a.f_int64_value(&[]))
        .is_ok_and(|v| v != 0)
}
