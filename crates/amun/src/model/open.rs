//! Opening the model a command works on: an amun checkpoint (weights and
//! sidecar) or a PyTorch file imported on the fly, with the data it was
//! trained on (fetched when a registry dataset is missing), and the checks
//! that catch a wrongly imported model before any long work.
use super::{Arch, Classifier, Layout, Normalize, Sidecar, checkpoint, import, program};
use crate::data::{DataSpec, Dataset, Registry};
use crate::error::{Error, Result};
use crate::progress::Progress;
use std::path::Path;
use tch::Device;

/// How to open a checkpoint: for a PyTorch file (no amun sidecar) its
/// architecture, parameter names and normalisation; for any checkpoint the
/// data it is used with (unset: an amun checkpoint's own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenSpec {
    pub arch: Option<Arch>,
    /// `None`: detected from the parameter names.
    pub layout: Option<Layout>,
    /// `M,S` (every channel) or `M1,M2,M3:S1,S2,S3`, applied inside the model.
    pub normalize: Option<String>,
    /// The dataset (a registry name or a folder); replaces the sidecar's.
    pub dataset: Option<String>,
    /// The first N training images; replaces the sidecar's slice.
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    /// For an exported program (`.pt2`): the weights of an untrained copy
    /// that retrains and reference models start from (PyTorch's per-layer
    /// defaults when unset).
    pub init: Option<std::path::PathBuf>,
}

impl OpenSpec {
    /// The data spec: `--dataset` with the slice options, over `base` (an
    /// amun sidecar's) when given.
    pub fn data_spec(&self, base: Option<&DataSpec>) -> Option<DataSpec> {
        let mut spec = match (&self.dataset, base) {
            // A missing folder stays as given, so its error names it so.
            (Some(d), _) if Path::new(d).exists() => {
                DataSpec::new(DataSpec::resolve(d, Path::new(".")))
            }
            (Some(d), _) => DataSpec::new(d.clone()),
            (None, Some(b)) => b.clone(),
            (None, None) => return None,
        };
        if self.train_limit.is_some() {
            spec.train_limit = self.train_limit;
        }
        if self.test_limit.is_some() {
            spec.test_limit = self.test_limit;
        }
        Some(spec)
    }
}

impl OpenSpec {
    /// Refuses the settings that describe a PyTorch file for an amun
    /// checkpoint, whose sidecar records its architecture, layout and
    /// normalisation: they would be ignored, not applied.
    fn check_amun(&self) -> Result<()> {
        let given = [
            ("--arch", self.arch.is_some()),
            ("--layout", self.layout.is_some()),
            ("--normalize", self.normalize.is_some()),
        ];
        match given.iter().find(|(_, g)| *g) {
            Some((flag, _)) => Err(Error::invalid(
                *flag,
                "applies only to a PyTorch checkpoint (or an exported program); an amun \
                 checkpoint's sidecar records its architecture, layout and normalisation, \
                 which nothing overrides: leave it out",
            )),
            None => Ok(()),
        }
    }
}

/// Refuses a `--checkpoint` that is no weights file before anything reads
/// it: a pipe or device (a read would wait forever), and an amun JSON file
/// (a forget set, a sidecar) given in place of the weights.
fn check_weights_path(path: &Path) -> Result<()> {
    crate::fsutil::require_regular(
        path,
        "a checkpoint's weights (.safetensors, a PyTorch .pt or an exported .pt2)",
    )?;
    if path.extension().is_some_and(|e| e == "json") && path.is_file() {
        return Err(Error::format(
            path,
            format!(
                "expected a .safetensors checkpoint; this file is {}",
                json_kind(path)
            ),
        ));
    }
    Ok(())
}

/// What a JSON file given as weights is, of the two amun JSON files a user
/// mistakes for a checkpoint (outputs::Kind tells every kind, but it sits
/// above model: it reads adversarial sets and run folders).
fn json_kind(path: &Path) -> String {
    let v = crate::fsutil::read_json::<serde_json::Value>(path).ok();
    let format = v
        .as_ref()
        .and_then(|v| v.get("format"))
        .and_then(|f| f.as_str());
    if format == Some(checkpoint::FORMAT) {
        let weights = path.with_extension("safetensors");
        format!(
            "a checkpoint's sidecar (its weights are {})",
            weights.display()
        )
    } else if v
        .is_some_and(|v| <crate::data::ForgetSet as serde::Deserialize>::deserialize(v).is_ok())
    {
        "a forget set (a deletion request)".into()
    } else {
        "a JSON file, not a checkpoint's weights".into()
    }
}

/// What [`open`] refuses of a `--checkpoint` before it reads anything: no
/// such file, a pipe or device, an amun JSON file in place of the weights.
/// A command that opens several checks them all first, before any long
/// work on the first (hostile12 N9/N11).
pub fn check_checkpoint_path(path: &Path) -> Result<()> {
    check_weights_path(path)?;
    if !path.exists() {
        return Err(Error::format(path, "no such file"));
    }
    Ok(())
}

/// What kind of model file a `--checkpoint` is, decided by its name and
/// what lies beside it, never by reading it: the one decision [`open`]
/// acts on and [`check_openable`] checks ahead, so the two cannot disagree
/// (and the check stays cheap: no weights are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    /// `.safetensors` weights with an amun sidecar beside them.
    Amun,
    /// A `torch.export` program (`.pt2`).
    Program,
    /// Anything else: a PyTorch state dict, described by the flags.
    PyTorch,
}

impl ModelSource {
    /// The kind of the model file at `path`.
    pub fn classify(path: &Path) -> ModelSource {
        let ext = |e: &str| path.extension().is_some_and(|x| x == e);
        if ext("safetensors") && checkpoint::sidecar_path(path).exists() {
            ModelSource::Amun
        } else if ext("pt2") {
            ModelSource::Program
        } else {
            ModelSource::PyTorch
        }
    }
}

/// What [`open`] would refuse of each of several checkpoints opened with
/// one `spec`, checked before any is opened (hostile13 A4: an audit's
/// second checkpoint without a sidecar was named only after the first was
/// audited): each file as [`check_checkpoint_path`] checks it, a PyTorch
/// file without the flags that describe it, and amun checkpoints with a
/// PyTorch file that `spec`'s --arch/--layout/--normalize describe, which
/// no one spec can open together (A5).
pub fn check_openable(paths: &[&Path], spec: &OpenSpec) -> Result<()> {
    for p in paths {
        check_checkpoint_path(p)?;
    }
    let first = |kind| paths.iter().find(|p| ModelSource::classify(p) == kind);
    let Some(t) = first(ModelSource::PyTorch) else {
        return Ok(());
    };
    let Some(a) = first(ModelSource::Amun) else {
        return described(t, spec).map(|_| ());
    };
    Err(Error::format(
        t,
        format!(
            "{}; it cannot be opened together with {}, an amun checkpoint, whose sidecar \
             records what --arch, --layout and --normalize describe for a PyTorch file and \
             refuses them: audit the two separately, or `amun import` this file first so that \
             it has a sidecar too",
            no_sidecar(t, spec.arch.is_some() && spec.dataset.is_some()),
            a.display()
        ),
    ))
}

/// What the PyTorch file at `path` is opened as: `spec`'s --arch and data,
/// both needed (no sidecar records them).
fn described(path: &Path, spec: &OpenSpec) -> Result<(Arch, DataSpec)> {
    match (spec.arch, spec.data_spec(None)) {
        (Some(arch), Some(data)) => Ok((arch, data)),
        _ => Err(Error::format(path, no_sidecar(path, false))),
    }
}

/// An opened checkpoint.
pub struct Opened {
    pub model: Classifier,
    pub sidecar: Sidecar,
    /// Its data, on the CPU.
    pub data: Dataset,
    /// Lines worth telling the user (what an import did, warnings).
    pub notes: Vec<String>,
}

/// Loads `spec`'s dataset from `data_dir`, fetching a registry dataset
/// first when it is missing or damaged.
pub fn load_data(spec: &DataSpec, data_dir: &Path, progress: &dyn Progress) -> Result<Dataset> {
    if let Some(reg) = Registry::from_name(&spec.dataset)
        && reg.verified_dir(data_dir).is_err()
    {
        crate::data::check_data_dir(data_dir)?;
        progress.note(&format!(
            "fetching {} from {} into {}",
            reg.name(),
            reg.package(),
            data_dir.display()
        ));
        crate::data::fetch(reg, data_dir)?;
    }
    spec.load(data_dir)
}

/// Opens the checkpoint at `path` on `device`.
pub fn open(
    path: &Path,
    spec: &OpenSpec,
    data_dir: &Path,
    device: Device,
    progress: &dyn Progress,
) -> Result<Opened> {
    let mut notes = Vec::new();
    check_weights_path(path)?;
    let source = ModelSource::classify(path);
    if source == ModelSource::Amun {
        spec.check_amun()?;
        let sc = checkpoint::read_sidecar(path)?;
        notes.extend(sc.incomplete_warning(path));
        let data_spec = spec.data_spec(Some(&sc.data)).expect("a base spec");
        let data = load_data(&data_spec, data_dir, progress)?;
        sc.model
            .check_data(data.image_shape(), data.num_classes(), path)?;
        notes.extend(sc.check_data(&data, path)?);
        notes.extend(other_data_note(&sc, &data, path));
        let (model, _) = checkpoint::load(path, device)?;
        return Ok(Opened {
            model,
            sidecar: sc,
            data,
            notes,
        });
    }
    if !path.exists() {
        return Err(Error::format(path, "no such file"));
    }
    if source == ModelSource::Program {
        return open_pt2(path, spec, data_dir, device, progress);
    }
    if spec.init.is_some() {
        return Err(Error::invalid(
            "--init",
            "names the untrained weights of an exported program (a .pt2 --checkpoint); this \
             checkpoint is not one",
        ));
    }
    let (arch, data_spec) = described(path, spec)?;
    let data = load_data(&data_spec, data_dir, progress)?;
    let norm = match &spec.normalize {
        Some(s) => Some(Normalize::parse(s, data.image_shape()[0] as usize)?),
        None => None,
    };
    let (model, mut sc, info) = import(
        path,
        arch,
        spec.layout,
        &data.spec,
        data.image_shape(),
        &data.classes,
        norm,
        device,
    )?;
    sc.data_sha256 = data.content().cloned();
    notes.push(format!(
        "{}: imported as {} ({} layout{})",
        path.display(),
        arch,
        info.layout.name(),
        if info.detected { ", detected" } else { "" }
    ));
    notes.extend(info.notes.iter().map(|n| format!("  {n}")));
    if let Some(why) = chance_check(&model, &data).problem {
        notes.push(format!("warning: {}: {why}", path.display()));
    }
    Ok(Opened {
        model,
        sidecar: sc,
        data,
        notes,
    })
}

/// What to tell when the flags (`--dataset`, `--train-limit`) replace the
/// training data the sidecar `sc` records (once [`Sidecar::check_data`]
/// passed): a note for a copy of it (the same content under another path),
/// else a warning that numbers refer to other data than the model's.
fn other_data_note(sc: &Sidecar, data: &Dataset, path: &Path) -> Option<String> {
    let (was, now) = (sc.data.train_label(), data.spec.train_label());
    if was == now {
        return None;
    }
    let same = match (&sc.data_sha256, data.content()) {
        (Some(a), Some(b)) => a.train == b.train,
        _ => false,
    };
    Some(if same {
        format!(
            "note: {now} holds the same training data as {was}, where {} was trained (content \
             sha256 {}…): a copy",
            path.display(),
            data.content()
                .map_or("", |c| c.train.get(..12).unwrap_or(&c.train))
        )
    } else {
        format!(
            "warning: {} was trained on {was}, but the flags (--dataset, --train-limit) make it \
             {now}: accuracies, forget-set indices and audits then refer to other data than the \
             model's",
            path.display()
        )
    })
}

/// Opens an exported program with the data `spec` names.
fn open_pt2(
    path: &Path,
    spec: &OpenSpec,
    data_dir: &Path,
    device: Device,
    progress: &dyn Progress,
) -> Result<Opened> {
    let Some(data_spec) = spec.data_spec(None) else {
        return Err(Error::format(
            path,
            "an exported program carries no record of its data: give --dataset (and \
             --normalize if the model expects normalised inputs)",
        ));
    };
    if let Some(a) = spec.arch {
        return Err(Error::invalid(
            format!("--arch {a}"),
            "an exported program brings its own architecture; leave --arch out",
        ));
    }
    let data = load_data(&data_spec, data_dir, progress)?;
    open_program(path, spec, data, device)
}

/// Opens an exported program over data the caller holds (the Python
/// binding's tensors): what [`open`] does for a `.pt2` once its data is
/// loaded. `spec`'s data fields are not read.
pub fn open_program(path: &Path, spec: &OpenSpec, data: Dataset, device: Device) -> Result<Opened> {
    if !path.exists() {
        return Err(Error::format(path, "no such file"));
    }
    let norm = match &spec.normalize {
        Some(s) => Some(Normalize::parse(s, data.image_shape()[0] as usize)?),
        None => None,
    };
    let (model, mut notes) = import_program(
        path,
        data.image_shape(),
        data.num_classes(),
        norm,
        spec.init.as_deref(),
        device,
    )?;
    let prog = model.program().expect("an exported model");
    let mut sidecar = Sidecar::new(
        model.spec(),
        &data.spec,
        &data.classes,
        0,
        super::Origin::Import {
            from: path.display().to_string(),
            layout: "exported".into(),
            forgotten: Vec::new(),
        },
    );
    sidecar.data_sha256 = data.content().cloned();
    notes.insert(
        0,
        format!(
            "{}: exported program, {} parameters and buffers, {} operators ({})",
            path.display(),
            prog.weights.len(),
            prog.ops.len(),
            prog.sha256.get(..12).unwrap_or_default()
        ),
    );
    if let Some(why) = chance_check(&model, &data).problem {
        notes.push(format!("warning: {}: {why}", path.display()));
    }
    Ok(Opened {
        model,
        sidecar,
        data,
        notes,
    })
}

/// Accuracy of a freshly imported model on the first (up to) 1,000
/// training and test images, and what is wrong if it is at chance.
pub struct ChanceCheck {
    pub train_n: usize,
    pub train_acc: f64,
    pub test_n: usize,
    pub test_acc: f64,
    pub problem: Option<String>,
}

/// A sanity check, not an evaluation: a model at chance on images it was
/// trained on was imported wrongly (normalisation, names, architecture).
pub fn chance_check(model: &Classifier, data: &Dataset) -> ChanceCheck {
    let train = data.train.prefix(1000);
    let test = data.test.prefix(1000);
    let train_acc = super::predict::accuracy(model, &train).percent();
    let test_acc = super::predict::accuracy(model, &test).percent();
    let k = data.num_classes().max(2) as f64;
    let chance = 100.0 / k;
    // Within a few points of chance (and far from what any trained model
    // reaches on its own training images).
    let problem = (train.len() >= 50 && train_acc < chance + 0.5 * (100.0 - chance) * 0.2).then(|| {
        let norm = if model.spec().normalize.is_none() {
            if data.image_shape()[0] == 3 {
                "the input normalisation it was trained with is missing (--normalize \
                 M1,M2,M3:S1,S2,S3; for CIFAR-10 usually 0.4914,0.4822,0.4465:0.2470,0.2435,0.2616), "
                    .to_string()
            } else {
                "the input normalisation it was trained with is missing (--normalize MEAN,STD; for \
                 MNIST usually 0.1307,0.3081), "
                    .to_string()
            }
        } else {
            "the --normalize given is not the one it was trained with, ".to_string()
        };
        format!(
            "it scores {train_acc:.1}% on its own first {} training images (chance: {chance:.1}%); \
             it was imported wrongly: {norm}the parameter names were mapped with the wrong layout \
             (--layout authors|torchvision|salun), the architecture is another (--arch), or the \
             dataset or slice is not the one it was trained on (--dataset, --train-limit)",
            train.len()
        )
    });
    ChanceCheck {
        train_n: train.len(),
        train_acc,
        test_n: test.len(),
        test_acc,
        problem,
    }
}

/// Opens the exported program (`.pt2`) at `path` with its own weights as a
/// classifier of `num_classes` classes for images of `image_shape`, on
/// `device`; `init` (an untrained copy's weights) is how a retrain or a
/// reference model of this architecture starts (PyTorch's per-layer
/// defaults when `None`). The graph is checked and run once on the data's
/// shape, in both modes, for two batch sizes, before anything else uses it.
/// Returns notes worth telling the user.
pub fn import_program(
    path: &Path,
    image_shape: [i64; 3],
    num_classes: usize,
    normalize: Option<Normalize>,
    init: Option<&Path>,
    device: Device,
) -> Result<(Classifier, Vec<String>)> {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let prog = program::load(&file, None)?;
    check_signature(&prog, path, image_shape, num_classes)?;
    let init = program_init(init)?;
    let mut spec = super::ModelSpec::exported(
        program::ProgramRef {
            file,
            sha256: prog.sha256.clone(),
            init,
        },
        image_shape,
        num_classes,
    )?;
    spec.normalize = normalize;
    let mut model = Classifier::blank(&spec, device)?;
    let weights = prog
        .read_weights()?
        .into_iter()
        .map(|(k, v)| (k, v.to_device(device)))
        .collect();
    model.load_named(weights, path)?;
    check_program(&model, path, num_classes)?;
    let notes = init_notes(&spec, &prog, path, device)?;
    Ok((model, notes))
}

/// Refuses a graph whose exported input or output shape cannot serve this
/// data: a fixed batch, other image sizes or channels, another class count.
fn check_signature(
    prog: &program::Program,
    path: &Path,
    image_shape: [i64; 3],
    num_classes: usize,
) -> Result<()> {
    if let Some(Some(n)) = prog.input_sizes.first() {
        return Err(Error::checkpoint(
            path,
            format!(
                "the batch size was fixed at export ({n}); amun runs batches of every size: \
                 export with dynamic_shapes={{\"{}\": {{0: torch.export.Dim(\"batch\")}}}}",
                prog.input_name
            ),
        ));
    }
    let [c, h, w] = image_shape;
    let want = [None, Some(c), Some(h), Some(w)];
    for (i, (got, want)) in prog.input_sizes.iter().zip(want).enumerate().skip(1) {
        if let (Some(g), Some(x)) = (got, want)
            && *g != x
        {
            return Err(Error::checkpoint(
                path,
                format!(
                    "the graph takes {}×{}×{} images (exported with that input shape), the data \
                     has {c}×{h}×{w}{}",
                    show(prog.input_sizes[1]),
                    show(prog.input_sizes[2]),
                    show(prog.input_sizes[3]),
                    if i == 1 {
                        " (another number of channels)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    if let Some(k) = prog.classes
        && k != num_classes as i64
    {
        return Err(Error::checkpoint(
            path,
            format!(
                "not a classifier of these {num_classes} classes: the graph returns {k} logits \
                 per image (exported with that output size)"
            ),
        ));
    }
    Ok(())
}

/// How retrains and reference models of an exported graph start: PyTorch's
/// per-layer defaults, or the untrained weights given as `--init` (hashed).
fn program_init(init: Option<&Path>) -> Result<program::ProgramInit> {
    let Some(f) = init else {
        return Ok(program::ProgramInit::Pytorch);
    };
    if !f.exists() {
        return Err(Error::format(
            f,
            "no such file (--init: the untrained model's weights)",
        ));
    }
    Ok(program::ProgramInit::Weights {
        file: std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf()),
        sha256: crate::data::sha256_file(f)?,
    })
}

/// Checks that an `--init` fits the graph now (not when a retrain starts)
/// and says where retrains start; without one, names the parameters that
/// have no PyTorch default initialisation.
fn init_notes(
    spec: &super::ModelSpec,
    prog: &program::Program,
    path: &Path,
    device: Device,
) -> Result<Vec<String>> {
    if let Some(program::ProgramInit::Weights { file, .. }) = spec.program.as_ref().map(|p| &p.init)
    {
        let fresh = Classifier::new(spec, device, 0)
            .map_err(|e| Error::invalid("--init", e.to_string()))?;
        drop(fresh);
        return Ok(vec![format!(
            "retrains and reference models start from {}",
            file.display()
        )]);
    }
    let missing = prog.without_default_init();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "note: {} parameter(s) of {} have no PyTorch default initialisation ({}{}): a \
         retrain or reference model of it needs --init (the untrained model's weights)",
        missing.len(),
        path.display(),
        missing
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        if missing.len() > 3 { ", …" } else { "" }
    )])
}

fn show(v: Option<i64>) -> String {
    v.map_or("N".into(), |v| v.to_string())
}

/// Runs an exported model on zeros in eval mode for batches of 1, 2 and 3
/// images and in train mode for 2 and 3 (a graph exported with a fixed
/// batch, or one that drops the batch dimension of a single image, fails
/// here, not hours later) and checks it returns `[B, num_classes]` logits.
/// BatchNorm statistics are put back afterwards.
fn check_program(model: &Classifier, path: &Path, num_classes: usize) -> Result<()> {
    let spec = model.spec();
    let saved: Vec<(String, tch::Tensor)> = model
        .named_tensors()
        .into_iter()
        .filter(|(_, t)| !t.requires_grad())
        .map(|(k, t)| (k, t.copy()))
        .collect();
    let mode = |train: bool| if train { "train" } else { "eval" };
    let run = |train: bool, b: i64| -> Result<tch::Tensor> {
        let x = tch::Tensor::zeros(
            [b, spec.in_channels, spec.image_size, spec.image_size],
            (tch::Kind::Float, model.device()),
        );
        model.try_forward_t(&x, train)
    };
    let result = tch::no_grad(|| -> Result<()> {
        for (train, b) in [(false, 1), (false, 2), (false, 3), (true, 2), (true, 3)] {
            let y = run(train, b).map_err(|e| {
                // (The path is this error's own: said once.)
                let e = match e {
                    Error::Format { msg, .. } => msg,
                    e => e.to_string(),
                };
                let hint = match b {
                    3 => {
                        " (it ran for a batch of 2 but not 3: export with a dynamic batch, \
                         dynamic_shapes=({0: torch.export.Dim(\"batch\")},))"
                    }
                    _ => "",
                };
                Error::checkpoint(
                    path,
                    format!(
                        "running it in {} mode on a batch of {b}: {e}{hint}",
                        mode(train)
                    ),
                )
            })?;
            if y.size() != [b, num_classes as i64] || y.kind() != tch::Kind::Float {
                return Err(Error::checkpoint(
                    path,
                    format!(
                        "not a classifier of these {num_classes} classes: a batch of {b} \
                         image(s) gives {:?} {:?} outputs in {} mode, expected [{b}, \
                         {num_classes}] float logits{}",
                        y.size(),
                        y.kind(),
                        mode(train),
                        if b == 3 && y.size().first() == Some(&2) {
                            "; its batch size is fixed: export with \
                             dynamic_shapes=({0: torch.export.Dim(\"batch\")},)"
                        } else if b == 1 && y.size().len() < 2 {
                            " (does its forward squeeze the batch dimension away?)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Ok(())
    });
    tch::no_grad(|| {
        let now = model.var_store().variables();
        for (k, t) in &saved {
            if let Some(v) = now.get(k) {
                v.shallow_clone().copy_(t);
            }
        }
    });
    result
}

/// Why a checkpoint without a sidecar beside it is not opened; a link whose
/// target has one is named as such (its sidecar is looked for beside the
/// path given, as every command writes and reads it). `described`: --arch
/// and --dataset were given, so they are not asked for again (hostile14 A5).
fn no_sidecar(path: &Path, described: bool) -> String {
    // Only a link (or a path through one) has a target elsewhere.
    let linked = path.ancestors().any(|p| p.is_symlink());
    let target = std::fs::canonicalize(path)
        .ok()
        .filter(|t| linked && checkpoint::sidecar_path(t) != *t);
    match target.filter(|t| checkpoint::sidecar_path(t).is_file()) {
        Some(t) => format!(
            "a link to {}, whose sidecar {} lies beside the target, not beside the link; give \
             the target's path (or link the sidecar as {} too)",
            t.display(),
            checkpoint::sidecar_path(&t).display(),
            checkpoint::sidecar_path(path).display()
        ),
        None if described => "no amun sidecar beside it".to_string(),
        None => "no amun sidecar beside it; to use a PyTorch checkpoint give --arch and \
                 --dataset (or run `amun import`)"
            .to_string(),
    }
}
