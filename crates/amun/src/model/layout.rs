//! Bringing a PyTorch model in and out: parameter-name layouts, import from
//! `.pt`/`.safetensors`, export back.
//!
//! amun's own names are those of the AMUN authors' CIFAR ResNet-18
//! (kuangliu/pytorch-cifar: `conv1`, `bn1`, `layer1.0.conv1`, `shortcut.0`,
//! `linear`), of that repository's VGG (`features.N`, `classifier`), and of
//! the small CNN. Also read and written: torchvision's ResNet names
//! (`downsample.N`, `fc`) and the SalUn / l1-sparse code's, which adds a
//! `normalize` module (`normalize.mean`, `normalize.std`) that amun keeps as
//! the model's input normalisation.
use super::checkpoint::{Origin, Sidecar};
use super::torchfile::{read_pt, write_pt};
use super::{Arch, Classifier, ModelSpec, Normalize};
use crate::data::DataSpec;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A naming scheme for a model's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// amun's = the AMUN authors' (kuangliu) names.
    Authors,
    /// torchvision ResNet names (`downsample`, `fc`).
    Torchvision,
    /// torchvision names plus `normalize.mean`/`normalize.std` (SalUn, l1-sparse).
    Salun,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Authors => "authors",
            Layout::Torchvision => "torchvision",
            Layout::Salun => "salun",
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Layout> {
        match s {
            "authors" | "amun" => Ok(Layout::Authors),
            "torchvision" => Ok(Layout::Torchvision),
            "salun" | "l1-sparse" => Ok(Layout::Salun),
            _ => Err(Error::invalid(
                "layout",
                format!("'{s}': expected auto, authors, torchvision or salun"),
            )),
        }
    }
}

fn is_resnet(arch: Arch) -> bool {
    matches!(arch, Arch::Resnet18 | Arch::Resnet18Div2)
}

/// A name in `layout` → amun's name.
fn to_amun(name: &str, layout: Layout, arch: Arch) -> String {
    if layout == Layout::Authors || !is_resnet(arch) {
        return name.to_string();
    }
    let n = name.replace(".downsample.", ".shortcut.");
    match n.strip_prefix("fc.") {
        Some(rest) => format!("linear.{rest}"),
        None => n,
    }
}

/// amun's name → the name in `layout`.
fn from_amun(name: &str, layout: Layout, arch: Arch) -> String {
    if layout == Layout::Authors || !is_resnet(arch) {
        return name.to_string();
    }
    let n = name.replace(".shortcut.", ".downsample.");
    match n.strip_prefix("linear.") {
        Some(rest) => format!("fc.{rest}"),
        None => n,
    }
}

/// Guesses the layout from the names present.
pub fn detect_layout(names: &[&str]) -> Layout {
    let has = |k: &str| names.contains(&k);
    if has("normalize.mean") && has("normalize.std") {
        Layout::Salun
    } else if names.iter().any(|n| n.contains(".downsample."))
        || (has("fc.weight") && has("layer1.0.conv1.weight"))
    {
        Layout::Torchvision
    } else {
        Layout::Authors
    }
}

/// Reads the tensors of a `.pt` or `.safetensors` file (never running code).
pub fn read_weights(path: &Path) -> Result<Vec<(String, Tensor)>> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("pt" | "pth" | "bin") => read_pt(path),
        Some("safetensors") => Tensor::read_safetensors(path)
            .map_err(|e| crate::error::safetensors_error(e, path, "reading")),
        _ => Err(Error::invalid(
            path.display().to_string(),
            "expected a .pt/.pth (torch.save) or .safetensors file",
        )),
    }
}

/// What an import found.
#[derive(Debug, Clone)]
pub struct Imported {
    pub layout: Layout,
    pub detected: bool,
    pub notes: Vec<String>,
}

/// Imports a PyTorch checkpoint as an amun model for `data` (image shape
/// and class count), naming every missing, unexpected or misshapen tensor.
#[allow(clippy::too_many_arguments)]
pub fn import(
    path: &Path,
    arch: Arch,
    layout: Option<Layout>,
    data: &DataSpec,
    image_shape: [i64; 3],
    classes: &[String],
    normalize: Option<Normalize>,
    device: Device,
) -> Result<(Classifier, Sidecar, Imported)> {
    let raw = read_weights(path)?;
    let mut notes = Vec::new();
    let mut tensors: Vec<(String, Tensor)> = raw;
    if tensors.iter().all(|(n, _)| n.starts_with("module.")) {
        tensors = tensors
            .into_iter()
            .map(|(n, t)| (n["module.".len()..].to_string(), t))
            .collect();
        notes.push("stripped the DataParallel prefix `module.`".into());
    }
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let (layout, detected) = match layout {
        Some(l) => (l, false),
        None => (detect_layout(&names), true),
    };
    if is_resnet(arch)
        && let Some((_, w)) = tensors.iter().find(|(n, _)| n == "conv1.weight")
        && w.size().get(2) == Some(&7)
    {
        return Err(Error::checkpoint(
            path,
            "conv1 is 7x7: an ImageNet-stem ResNet; amun's ResNet-18 is the CIFAR form (3x3 stem, no max-pool)",
        ));
    }
    let mut map: HashMap<String, Tensor> = HashMap::new();
    let mut norm = normalize;
    let (mut file_mean, mut file_std) = (None, None);
    let values = |t: &Tensor| {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap_or_default()
    };
    for (n, t) in tensors {
        match (layout, n.as_str()) {
            (Layout::Salun, "normalize.mean") => file_mean = Some(values(&t)),
            (Layout::Salun, "normalize.std") => file_std = Some(values(&t)),
            _ => {
                map.insert(to_amun(&n, layout, arch), t);
            }
        }
    }
    if layout == Layout::Salun {
        let missing = |k: &str| Error::checkpoint(path, format!("salun layout without {k}"));
        let found = Normalize {
            mean: file_mean.ok_or_else(|| missing("normalize.mean"))?,
            std: file_std.ok_or_else(|| missing("normalize.std"))?,
        };
        if norm.as_ref().is_some_and(|n| *n != found) {
            notes.push("--normalize given; the file's normalize buffers were ignored".into());
        } else {
            let show = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            notes.push(format!(
                "input normalisation from the file: mean [{}], std [{}]",
                show(&found.mean),
                show(&found.std)
            ));
            norm = Some(found);
        }
    }
    // The head tells the class count: check it against the data first.
    let head = match arch {
        Arch::SmallCnn => "fc.weight",
        Arch::Vgg19 => "classifier.weight",
        _ => "linear.weight",
    };
    if let Some(w) = map.get(head)
        && w.size()[0] as usize != classes.len()
    {
        return Err(Error::checkpoint(
            path,
            format!(
                "{}-class head ({head} {:?}), but {} has {} classes",
                w.size()[0],
                w.size(),
                data.label(),
                classes.len()
            ),
        ));
    }
    let mut spec = ModelSpec::for_data(arch, image_shape, classes.len())?;
    spec.normalize = norm;
    let mut model = Classifier::new(&spec, device, 0)?;
    // Files without num_batches_tracked (older PyTorch) load with zeros.
    for (k, v) in model.named_tensors() {
        if k.ends_with("num_batches_tracked") && !map.contains_key(&k) {
            map.insert(k, v.zeros_like());
        }
    }
    let map = map
        .into_iter()
        .map(|(k, v)| (k, v.to_device(device)))
        .collect();
    model.load_named(map, path)?;
    let sidecar = Sidecar::new(
        &spec,
        data,
        classes,
        0,
        Origin::Import {
            from: path.display().to_string(),
            layout: layout.name().into(),
            forgotten: Vec::new(),
        },
    );
    Ok((
        model,
        sidecar,
        Imported {
            layout,
            detected,
            notes,
        },
    ))
}

/// Refuses an export onto an amun checkpoint (weights with a sidecar
/// beside them): the weights would change under a sidecar that describes
/// the old ones, and the checkpoint would no longer load.
pub fn check_export_out(path: &Path) -> Result<()> {
    let sidecar = super::checkpoint::sidecar_path(path);
    if super::ModelSource::classify(path) == super::ModelSource::Amun {
        return Err(Error::invalid(
            format!("--out {}", path.display()),
            format!(
                "is an amun checkpoint (its sidecar {} is beside it); an export there would \
                 replace its weights under a sidecar that describes others: choose another file",
                sidecar.display()
            ),
        ));
    }
    Ok(())
}

/// Writes `model` in `layout` as `.pt` (torch.save format) or `.safetensors`
/// (by the extension), loadable with `load_state_dict(strict=True)` into the
/// matching PyTorch module; an exported model also as `.pt2`, its graph
/// with the new weights, which `torch.export.load` runs.
pub fn export(model: &Classifier, layout: Layout, path: &Path) -> Result<()> {
    check_export_out(path)?;
    let arch = model.spec().arch;
    let mut tensors: Vec<(String, Tensor)> = model
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (from_amun(&n, layout, arch), t.to_device(Device::Cpu)))
        .collect();
    if layout == Layout::Salun {
        let c = model.spec().in_channels as usize;
        let (mean, std) = match &model.spec().normalize {
            Some(n) => (n.mean.clone(), n.std.clone()),
            None => (vec![0.0; c], vec![1.0; c]),
        };
        let f = |v: &[f64]| Tensor::from_slice(&v.iter().map(|x| *x as f32).collect::<Vec<_>>());
        tensors.push(("normalize.mean".into(), f(&mean)));
        tensors.push(("normalize.std".into(), f(&std)));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("pt" | "pth") => write_pt(path, &tensors),
        Some("safetensors") => super::checkpoint::write_tensors(path, &tensors),
        Some("pt2") => match model.program() {
            // The model's own graph with its new weights.
            Some(p) => {
                super::program::write_with_weights(&p.file, path, &tensors.into_iter().collect())
            }
            None => Err(Error::invalid(
                path.display().to_string(),
                format!(
                    "a .pt2 holds an exported program; {} is one of amun's own architectures: \
                     export it as .pt or .safetensors",
                    model.spec().arch
                ),
            )),
        },
        _ => Err(Error::invalid(
            path.display().to_string(),
            "expected a path ending in .pt, .pth, .safetensors or (an exported model) .pt2",
        )),
    }
}
