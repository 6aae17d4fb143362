use super::{DataArgs, load_data};
use amun::data::{ForgetSet, ForgetSpec};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SplitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A fraction of the training set (0.1) or a number of samples (5000),
    /// drawn uniformly at random
    #[arg(
        long,
        value_name = "FRACTION|COUNT",
        conflicts_with = "class",
        required_unless_present = "class"
    )]
    pub forget: Option<String>,
    /// Forget every training sample of this class instead
    #[arg(long, value_name = "C")]
    pub class: Option<i64>,
    /// Seed of the random choice (recorded in the file)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the forget set (JSON)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(a: SplitArgs) -> Result<()> {
    let spec = match (&a.forget, a.class) {
        (_, Some(c)) => ForgetSpec::Class(c),
        (Some(s), None) => ForgetSpec::parse(s)?,
        (None, None) => unreachable!("clap requires one of --forget, --class"),
    };
    let data = load_data(&a.data.spec(), &a.data.dir)?;
    let set = ForgetSet::choose(&data, &spec, a.seed)?;
    set.write(&a.out)?;
    super::outln!(
        "{}: {} of {} training samples of {} (seed {}, {})",
        a.out.display(),
        set.size,
        set.train_size,
        set.dataset,
        set.seed,
        set.kind
    );
    Ok(())
}
