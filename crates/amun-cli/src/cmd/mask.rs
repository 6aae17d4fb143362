use super::{DataDir, device};
use amun::data::ForgetFile;
use amun::outputs::{Artifact, Outputs};
use amun::unlearn::saliency_mask;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MaskArgs {
    /// The model (.safetensors with its sidecar)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The forget set the saliency is measured on
    #[arg(long, value_name = "FORGET")]
    pub forget: PathBuf,
    /// Fraction of weights to keep trainable (the most salient)
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub ratio: f64,
    /// Where to write the mask (.safetensors, one 0/1 tensor per parameter)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub import: super::ImportArgs,
    #[command(flatten)]
    pub dir: DataDir,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(a: MaskArgs) -> Result<()> {
    let dev = device(&a.device)?;
    let mut io = Outputs::new();
    io.reads_checkpoint("--checkpoint", &a.checkpoint)
        .reads_file(
            "--forget",
            "the forget set: amun's JSON or a list of indices",
            &a.forget,
        );
    a.import.reads(&mut io);
    io.writes("--out", &a.out, Artifact::Mask);
    let _locks = super::claim(&io, &[("--out", &["safetensors"])])?;
    let forget = ForgetFile::read(&a.forget)?;
    let (model, _, data) = super::open_checkpoint(&a.checkpoint, &a.import, &a.dir, dev)?;
    let forget = super::resolve_forget(forget, &data, &a.forget)?;
    let mask = saliency_mask(
        &model,
        &data.train.select(&forget.indices).to_device(dev),
        a.ratio,
        256,
    )?;
    mask.save(&a.out)?;
    super::outln!(
        "{}: saliency mask keeping {:.4} of the weights (ratio {})",
        a.out.display(),
        mask.kept_fraction(),
        a.ratio
    );
    Ok(())
}
