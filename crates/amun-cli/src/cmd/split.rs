use super::{DataArgs, load_data};
use amun::data::{ForgetFile, ForgetSet, ForgetSpec};
use amun::outputs::{Artifact, Outputs, write_recorded};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// The forget-set file amun writes (and every `--forget` reads):
///
/// {"dataset": "cifar10[train:2000]", "train_size": 2000, "kind": "random",
///  "seed": 1, "size": 200, "indices": [3, 17, ...]}
///
/// `dataset` names the training split the indices refer to (with its
/// --train-limit), `train_size` its size, `kind` random | class | file |
/// tune-random (`class` adds "class": C and "class_name"), `indices` are
/// sorted and distinct; for a folder dataset `train_sha256` is the content
/// hash of the training split, which every reader compares whatever the
/// folder's path.
#[derive(Args, Debug)]
#[command(
    after_long_help = "FORGET-SET JSON: {\"dataset\": \"cifar10[train:2000]\", \"train_size\": 2000, \"kind\": \"random\", \"seed\": 1, \"size\": 200, \"indices\": [3, 17, …]}: dataset is the training split the indices refer to (with its --train-limit), kind random | class | file | tune-random (class adds \"class\": C and \"class_name\"); indices sorted and distinct; train_sha256 (folder datasets): the training split's content hash, compared whatever the folder's path."
)]
pub struct SplitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A fraction of the training set (0.1) or a number of samples (5000),
    /// drawn uniformly at random
    #[arg(
        long,
        value_name = "FRACTION|COUNT",
        allow_negative_numbers = true,
        conflicts_with_all = ["class", "from"],
        required_unless_present_any = ["class", "from"]
    )]
    pub forget: Option<String>,
    /// Forget every training sample of this class instead: its label
    /// (0, 1, …) or its name (a folder dataset's class folder)
    #[arg(
        long,
        value_name = "C",
        conflicts_with = "from",
        allow_negative_numbers = true
    )]
    pub class: Option<String>,
    /// Take the indices from a file: the AMUN authors' CSV (header
    /// unlearn_idx), any CSV whose header names an index/idx column, one
    /// index per line, a JSON array, or amun's JSON (which must be for
    /// --dataset and its slice); validated against --dataset, sorted
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Seed of the random choice (recorded in the file)
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub seed: u64,
    /// Where to write the forget set (JSON)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(a: SplitArgs) -> Result<()> {
    // The flags' values first, then the files.
    // A class is named by label or name, so it resolves once the data is read.
    let spec = match (&a.forget, &a.class) {
        (Some(s), None) => Some(ForgetSpec::parse(s)?),
        _ => None,
    };
    let mut io = Outputs::new();
    io.reads_dataset("--dataset", &a.data.dataset);
    if let Some(f) = &a.from {
        io.reads_file("--from", "the list of indices", f);
    }
    io.writes("--out", &a.out, Artifact::ForgetSet);
    let _locks = super::claim(&io, &[("--out", &["json"])])?;
    if let Some(f) = &a.from {
        // The file's syntax is checked before the data is loaded.
        let file = ForgetFile::read(f)?;
        let data = load_data(&a.data.spec(), &a.data.dir)?;
        // An older file matched by its path gets its data's content hash.
        let set = file.resolve(&data, f)?;
        // Said before the file is written: sealing fixes the class's name.
        if let Some(w) = set.sealing_warning(&data, f) {
            eprintln!("{w}");
        }
        let set = set.with_content_of(&data);
        write_recorded("--out", &a.out, |p| set.write(p))?;
        super::outln!(
            "{}: {} of {} training samples of {} (from {})",
            a.out.display(),
            set.size,
            set.train_size,
            set.dataset,
            f.display()
        );
        return Ok(());
    }
    let data = load_data(&a.data.spec(), &a.data.dir)?;
    let spec = match (spec, &a.class) {
        (Some(spec), _) => spec,
        (None, Some(c)) => ForgetSpec::Class(data.class_index(c)?),
        (None, None) => unreachable!("clap requires one of --forget, --class, --from"),
    };
    let set = ForgetSet::choose(&data, &spec, a.seed)?;
    write_recorded("--out", &a.out, |p| set.write(p))?;
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
