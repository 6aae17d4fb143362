use super::{DataArgs, device, load_data, pct, print_json};
use amun::data::ForgetFile;
use amun::model::{Arch, ModelSpec, checkpoint};
use amun::train::{Subset, TrainJob, TrainOverrides, TrainParams, record_final_metrics, train};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Recipe flags; each one left out takes the model's default recipe.
#[derive(Args, Debug, Clone)]
pub struct RecipeArgs {
    /// Passes over the training set [default: 10 for small-cnn, 201 otherwise]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per SGD step [default: 128]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate [default: 0.05 for small-cnn, 0.1 otherwise]
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum [default: 0.9]
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay [default: 5e-4]
    #[arg(long)]
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
    /// small-cnn | resnet18 | resnet18-div2 (the AMUN authors' variant) | vgg19
    #[arg(long, default_value = "small-cnn")]
    pub model: String,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Train without these samples (a forget set: amun's JSON or any list
    /// `amun split --from` reads): exact unlearning
    #[arg(long, value_name = "FORGET")]
    pub exclude: Option<PathBuf>,
    /// Seed of init, shuffling and augmentation (recorded in the sidecar)
    #[arg(long, default_value_t = 0)]
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

pub fn run(a: TrainArgs) -> Result<()> {
    let arch: Arch = a.model.parse()?;
    let dev = device(&a.device)?;
    let _lock = super::claim_output(&a.out, &["safetensors"])?;
    let exclude = a.exclude.as_deref().map(ForgetFile::read).transpose()?;
    let data = load_data(&a.data.spec(), &a.data.dir)?;
    let recipe = a.recipe.params(arch, data.image_shape()[0])?.check()?;
    let exclude = match (exclude, &a.exclude) {
        (Some(f), Some(p)) => Some(f.resolve(&data, p)?),
        _ => None,
    };
    let data = data.to_device(dev);
    let spec = ModelSpec::for_data(arch, data.image_shape(), data.num_classes())?;
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
    if a.json {
        return print_json(&trained.sidecar);
    }
    let m = &trained.sidecar.metrics;
    let get = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    super::outln!(
        "{}: {} on {}: train {}%, test {}% ({})",
        a.out.display(),
        arch,
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
