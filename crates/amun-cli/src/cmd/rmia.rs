use super::train::RecipeArgs;
use super::{DataArgs, device, load_data};
use amun::audit::train_references;
use amun::model::checkpoint;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum RmiaCmd {
    /// Train reference models on random halves of the pool (train ∪ test),
    /// in complementary pairs; resumable
    TrainRefs(TrainRefsArgs),
}

#[derive(Args, Debug)]
pub struct TrainRefsArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Number of reference models (even: each sample is OUT for half of them)
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub count: usize,
    /// Take the model and its training recipe from this checkpoint's sidecar
    #[arg(long, value_name = "FILE")]
    pub like: Option<PathBuf>,
    /// small-cnn | resnet18 | resnet18-div2 | vgg19 | FILE.pt2 (without --like)
    #[arg(long, default_value = "small-cnn")]
    pub model: String,
    #[command(flatten)]
    pub program: super::train::ProgramArgs,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Seed of the pool halves and of each model's training
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// cpu | cuda | cuda:N | auto
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Folder for the models, their memberships and logits
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(cmd: RmiaCmd) -> Result<()> {
    let RmiaCmd::TrainRefs(a) = cmd;
    // The library names the field; the user typed the flag.
    amun::audit::check_ref_count(a.count).map_err(|e| anyhow::anyhow!("--{e}"))?;
    if let Some(p) = &a.like {
        refuse_with_like(&a, p)?;
        check_like_data(&a.data, p)?;
    }
    let mut io = amun::outputs::Outputs::new();
    io.reads_dataset("--dataset", &a.data.dataset);
    if let Some(p) = &a.like {
        io.reads_checkpoint("--like", p);
    }
    io.writes("--out", &a.out, amun::outputs::Artifact::References)
        .check()?;
    let dev = device(&a.device)?;
    let data = load_data(&a.data.spec(), &a.data.dir)?.to_device(dev);
    let (spec, recipe) = match &a.like {
        Some(p) => {
            let sc = checkpoint::read_sidecar(p)?;
            sc.model
                .check_data(data.image_shape(), data.num_classes(), p)?;
            if let Some(why) =
                amun::data::classes_differ(&sc.classes, &data.classes, &data.spec.label())
            {
                bail!("--like {}: {why}", p.display());
            }
            let Some(recipe) = amun::train::recipe_of(&sc)? else {
                bail!(
                    "--like {}: not a trained model (its sidecar has no recipe)",
                    p.display()
                );
            };
            (sc.model, recipe)
        }
        None => {
            let (spec, arch) = super::train::model_spec(&a.model, &a.program, &data)?;
            (spec, a.recipe.params(arch, data.image_shape()[0])?.check()?)
        }
    };
    amun::fsutil::check_output(&a.out.join("manifest.json"), &[]).context("--out")?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let bars = crate::progress::Bars::new(a.quiet);
    let refs = train_references(&data, &spec, &recipe, a.count, a.seed, &a.out, &bars)?;
    super::outln!(
        "{}: {} reference models of {} on halves of a pool of {} samples",
        a.out.display(),
        refs.logits.len(),
        spec.arch,
        refs.members.first().map_or(0, Vec::len)
    );
    Ok(())
}

/// `--like` takes the model and its recipe from the checkpoint (RMIA's
/// references are trained as the audited model was): a model or recipe
/// flag beside it would be dropped, so it is refused.
fn refuse_with_like(a: &TrainRefsArgs, like: &std::path::Path) -> Result<()> {
    let mut given = a.recipe.given();
    if a.model != "small-cnn" {
        given.push("--model");
    }
    if a.program.init.is_some() {
        given.push("--init");
    }
    if a.program.normalize.is_some() {
        given.push("--normalize");
    }
    if !given.is_empty() {
        bail!(
            "{} with --like {}: --like trains the references as that model was trained (its \
             architecture and recipe, from its sidecar), so {} would not be used; drop {}, or \
             give --model and the recipe without --like",
            given.join(", "),
            like.display(),
            if given.len() == 1 { "it" } else { "they" },
            if given.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

/// RMIA needs references trained on the audited model's own data: a
/// dataset or slice other than `--like`'s would train for minutes and be
/// refused by the audit, so it is refused first, naming the flag.
fn check_like_data(data: &super::DataArgs, like: &std::path::Path) -> Result<()> {
    let sc = checkpoint::read_sidecar(like)?;
    let (want, given) = (&sc.data, data.spec());
    // (what was given, what the model records, the remedy)
    let limit = |flag: &str, given: Option<usize>, was: Option<usize>| match (given, was) {
        (g, w) if g == w => None,
        (g, Some(n)) => Some((
            flag_value(flag, g),
            format!("{flag} {n}"),
            format!("give {flag} {n}"),
        )),
        (g, None) => Some((
            flag_value(flag, g),
            format!("no {flag}"),
            format!("leave {flag} out"),
        )),
    };
    let dataset = (want.dataset != given.dataset).then(|| {
        (
            format!("--dataset {}", data.dataset),
            format!("--dataset {}", want.dataset),
            format!("give --dataset {}", want.dataset),
        )
    });
    let differs = dataset
        .or_else(|| limit("--train-limit", given.train_limit, want.train_limit))
        .or_else(|| limit("--test-limit", given.test_limit, want.test_limit));
    if let Some((got, was, remedy)) = differs {
        bail!(
            "{got} with --like {}: that model was trained on {} ({was}); the audit needs \
             references trained on the audited model's own data (its pool of training and test \
             images) and would refuse these: {remedy}",
            like.display(),
            want.label(),
        );
    }
    Ok(())
}

fn flag_value(flag: &str, v: Option<usize>) -> String {
    match v {
        Some(n) => format!("{flag} {n}"),
        None => format!("no {flag}"),
    }
}
