use super::{DataArgs, device, load_data, pct, print_json};
use amun::data::ForgetFile;
use amun::model::{Arch, ModelSpec, checkpoint};
use amun::outputs::{Artifact, Outputs};
use amun::train::{Subset, TrainJob, TrainOverrides, TrainParams, record_final_metrics, train};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Recipe flags; each one left out takes the model's default recipe.
#[derive(Args, Debug, Clone)]
pub struct RecipeArgs {
    /// Passes over the training set [default: 10 for small-cnn, 201 otherwise]
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Samples per SGD step [default: 128]
    #[arg(long, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// Base learning rate [default: 0.05 for small-cnn, 0.1 otherwise]
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// SGD momentum [default: 0.9]
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// Weight decay [default: 5e-4]
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// constant | step:STEP[:GAMMA] | multistep:M1,M2[:GAMMA] | cosine | onecycle[:PCT]
    /// [default: onecycle:0.25 for small-cnn, step:40:0.1 otherwise]
    #[arg(long)]
    pub schedule: Option<String>,
    /// Random crop (padding 4) + horizontal flip: on, off, or auto (on for
    /// colour images, off for one-channel digits, which flips would corrupt)
    #[arg(long, value_name = "auto|on|off", default_value = "auto")]
    pub augment: String,
    /// bf16 autocast for forward passes
    #[arg(long)]
    pub bf16: bool,
    /// Channels-last memory format (CUDA only; ignored on the CPU)
    #[arg(long)]
    pub channels_last: bool,
}

impl RecipeArgs {
    /// The recipe settings these flags gave, by the names the recipe's
    /// checks give them (`weight-decay`), with their flags, for
    /// [`super::flags::in_flags`].
    pub fn settings_given(&self) -> Vec<(String, &'static str)> {
        [
            ("epochs", "--epochs", self.epochs.is_some()),
            ("batch-size", "--batch-size", self.batch_size.is_some()),
            ("lr", "--lr", self.lr.is_some()),
            ("momentum", "--momentum", self.momentum.is_some()),
            (
                "weight-decay",
                "--weight-decay",
                self.weight_decay.is_some(),
            ),
            ("schedule", "--schedule", self.schedule.is_some()),
        ]
        .into_iter()
        .filter(|(_, _, given)| *given)
        .map(|(k, f, _)| (k.to_string(), f))
        .collect()
    }

    /// The flags as recipe overrides (the type of an experiment's
    /// `[train]` section), for images of `in_channels` channels.
    pub fn overrides(&self, in_channels: i64) -> Result<TrainOverrides> {
        let augment = match self.augment.as_str() {
            "on" => true,
            "off" => false,
            "auto" => in_channels != 1,
            other => anyhow::bail!("--augment '{other}': expected auto, on or off"),
        };
        Ok(TrainOverrides {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: self.schedule.as_deref().map(str::parse).transpose()?,
            augment: Some(augment),
            bf16: Some(self.bf16),
            channels_last: Some(self.channels_last),
            retain_budget: None,
        })
    }

    /// The recipe flags given (an `--augment` other than auto counts).
    pub fn given(&self) -> Vec<&'static str> {
        [
            (self.epochs.is_some(), "--epochs"),
            (self.batch_size.is_some(), "--batch-size"),
            (self.lr.is_some(), "--lr"),
            (self.momentum.is_some(), "--momentum"),
            (self.weight_decay.is_some(), "--weight-decay"),
            (self.schedule.is_some(), "--schedule"),
            (self.augment != "auto", "--augment"),
            (self.bf16, "--bf16"),
            (self.channels_last, "--channels-last"),
        ]
        .into_iter()
        .filter_map(|(g, f)| g.then_some(f))
        .collect()
    }

    pub fn params(&self, arch: Arch, in_channels: i64) -> Result<TrainParams> {
        Ok(self
            .overrides(in_channels)?
            .apply(TrainParams::for_arch(arch)))
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// small-cnn | resnet18 | resnet18-div2 (the AMUN authors' variant) |
    /// vgg19 | FILE.pt2 (a user's own architecture, exported with
    /// torch.export; its weights are not used, see --init)
    #[arg(long, default_value = "small-cnn")]
    pub model: String,
    #[command(flatten)]
    pub program: ProgramArgs,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Train without these samples (a forget set: amun's JSON or any list
    /// `amun split --from` reads): exact unlearning
    #[arg(long, value_name = "FORGET")]
    pub exclude: Option<PathBuf>,
    /// Seed of init, shuffling and augmentation (recorded in the sidecar)
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Checkpoint to write after every epoch (.safetensors; sidecar .json beside it)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Continue an interrupted run of the same settings from its last epoch
    #[arg(long)]
    pub resume: bool,
    /// Print the final sidecar as JSON
    #[arg(long)]
    pub json: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

/// How a user's own architecture (`--model FILE.pt2`) is set up.
#[derive(Args, Debug, Clone, Default)]
pub struct ProgramArgs {
    /// With --model FILE.pt2: the weights every new model starts from (an
    /// untrained copy: a .pt2 exported before training, or its state_dict
    /// as .pt/.safetensors) [default: PyTorch's default init of each layer,
    /// drawn from --seed]
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// With --model FILE.pt2: the input normalisation the model expects,
    /// applied inside it: M,S (every channel) or M1,M2,M3:S1,S2,S3
    #[arg(long, value_name = "MEAN:STD", allow_negative_numbers = true)]
    pub normalize: Option<String>,
}

/// The spec of `--model` for `data`: a built-in architecture, or an
/// exported program (checked on the data's shape before any training).
pub fn model_spec(
    model: &str,
    p: &ProgramArgs,
    data: &amun::data::Dataset,
) -> Result<(ModelSpec, Arch)> {
    model_spec_for(model, p, data.image_shape(), data.num_classes())
}

/// [`model_spec`] for images of `image_shape` and `num_classes` classes.
pub fn model_spec_for(
    model: &str,
    p: &ProgramArgs,
    image_shape: [i64; 3],
    num_classes: usize,
) -> Result<(ModelSpec, Arch)> {
    if model.ends_with(".pt2") {
        let norm = p
            .normalize
            .as_deref()
            .map(|s| amun::model::Normalize::parse(s, image_shape[0] as usize))
            .transpose()?;
        let (m, notes) = amun::model::import_program(
            std::path::Path::new(model),
            image_shape,
            num_classes,
            norm,
            p.init.as_deref(),
            tch::Device::Cpu,
        )?;
        for n in notes.iter().filter(|n| n.starts_with("note")) {
            eprintln!("{n}");
        }
        return Ok((m.spec().clone(), Arch::Exported));
    }
    if p.init.is_some() || p.normalize.is_some() {
        anyhow::bail!(
            "--init and --normalize go with --model FILE.pt2 (a user's own architecture); \
             {model} is one of amun's"
        );
    }
    let arch: Arch = model.parse()?;
    Ok((ModelSpec::for_data(arch, image_shape, num_classes)?, arch))
}

/// Every file `amun train` reads and writes.
fn files_of(a: &TrainArgs) -> Outputs {
    let mut io = Outputs::new();
    io.reads_dataset("--dataset", &a.data.dataset);
    if let Some(p) = &a.exclude {
        io.reads_file(
            "--exclude",
            "the forget set to train without: amun's JSON or a list of indices",
            p,
        );
    }
    if a.model.ends_with(".pt2") {
        io.reads_file(
            "--model",
            "the exported graph, a torch.export .pt2",
            std::path::Path::new(&a.model),
        );
    }
    if let Some(p) = &a.program.init {
        io.reads_file("--init", "the initial weights", p);
    }
    io.writes("--out", &a.out, Artifact::Trained);
    io
}

pub fn run(a: TrainArgs) -> Result<()> {
    let dev = device(&a.device)?;
    let io = files_of(&a);
    let _locks = super::claim(&io, &[("--out", &["safetensors"])])?;
    // A resumed run continues its own output rather than replacing it.
    let replaced = if a.resume { Vec::new() } else { io.replacing() };
    let exclude = a.exclude.as_deref().map(ForgetFile::read).transpose()?;
    let data = load_data(&a.data.spec(), &a.data.dir)?;
    let (spec, arch) = model_spec(&a.model, &a.program, &data)?;
    let recipe = a.recipe.params(arch, data.image_shape()[0])?.check()?;
    let exclude = match (exclude, &a.exclude) {
        (Some(f), Some(p)) => Some(super::resolve_forget(f, &data, p)?),
        _ => None,
    };
    let data = data.to_device(dev);
    let bars = crate::progress::Bars::new(a.quiet || a.json);
    let job = TrainJob {
        spec,
        data: &data,
        recipe,
        seed: a.seed,
        subset: exclude.as_ref().map_or(Subset::All, Subset::Exclude),
        out: Some(&a.out),
        resume: a.resume,
        eval_each_epoch: true,
    };
    let mut trained = train(&job, &bars)?;
    record_final_metrics(&trained.model, &data, &mut trained.sidecar);
    checkpoint::save(&trained.model, &a.out, &trained.sidecar)?;
    super::say_replaced(&replaced);
    if a.json {
        return print_json(&trained.sidecar);
    }
    let m = &trained.sidecar.metrics;
    let get = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    super::outln!(
        "{}: {} on {}: train {}%, test {}% ({})",
        a.out.display(),
        if arch == Arch::Exported {
            a.model.as_str()
        } else {
            arch.name()
        },
        data.spec.label(),
        pct(get("train_acc")),
        pct(get("test_acc")),
        match &trained.sidecar.origin {
            amun::model::Origin::Train {
                wall_s,
                epochs_done,
                ..
            } => format!("{epochs_done} epochs, {wall_s:.1}s"),
            _ => String::new(),
        }
    );
    Ok(())
}
