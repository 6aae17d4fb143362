//! amun: machine unlearning for image classifiers.
//!
//! A trained model and a deletion request (a forget set) go in; a model that
//! behaves as if retrained without those samples comes out, together with
//! the evidence (accuracies, membership inference) that it does. The method
//! is AMUN (Adversarial Machine UNlearning, ICML 2025); the baselines of its
//! paper and the audit against an exactly retrained model live here too.
//!
//! The stages, in the order a run goes through them: [`data`] (datasets and
//! forget sets), [`model`] (architectures and checkpoints), [`train`],
//! [`eval`].
//!
//! ```no_run
//! use amun::data::{DataSpec, ForgetSet, ForgetSpec};
//! use amun::model::{Arch, ModelSpec};
//! use amun::train::{Subset, TrainJob, TrainParams, train};
//!
//! let data = DataSpec::new("mnist").load(&amun::data::default_data_dir())?;
//! let spec = ModelSpec::for_data(Arch::SmallCnn, data.image_shape(), data.num_classes())?;
//! let forget = ForgetSet::choose(&data, &ForgetSpec::Fraction(0.1), 1)?;
//! let job = TrainJob {
//!     spec,
//!     data: &data,
//!     recipe: TrainParams::new().epochs(3).check()?,
//!     seed: 0,
//!     subset: Subset::Exclude(&forget), // retraining without the forget set
//!     out: None,
//!     resume: false,
//!     eval_each_epoch: false,
//! };
//! let trained = train(&job, &amun::progress::Quiet)?;
//! println!("{:.1}%", amun::eval::accuracy(&trained.model, &data.test).percent());
//! # Ok::<(), amun::Error>(())
//! ```

pub mod cluster;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod fsutil;
pub mod model;
pub mod outputs;
pub mod progress;
pub mod registry;
pub mod seed;
pub mod train;
pub mod unlearn;

pub use error::{Error, Result};
pub mod attack;
pub mod audit;
pub mod bench;
pub mod report;

/// The libtorch version amun is built for (tch 0.24 requires exactly this).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// ARCHITECTURE.md's layers, checked on the source: a module may use only
/// modules of its own layer or a lower one.
#[cfg(test)]
mod layers {
    use std::path::Path;

    /// Lowest first, as ARCHITECTURE.md lists them.
    const LAYERS: &[&[&str]] = &[
        &[
            "error", "seed", "progress", "report", "fsutil", "device", "cluster",
        ],
        &["data"],
        &["model"],
        &["eval", "train", "attack"],
        &["outputs"],
        &["audit"],
        &["unlearn", "bench"],
        &["experiment"],
        &["registry"],
    ];

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// Every `crate::NAME` a file names, with the file's own top module.
    fn uses(dir: &Path, top: Option<&str>, out: &mut Vec<(String, String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let module = top.map_or(name.clone(), str::to_owned);
            if path.is_dir() {
                uses(&path, Some(&module), out);
            } else if path.extension().is_some_and(|e| e == "rs") && module != "lib" {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("crate::") {
                    let used: String = text[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    // `crate::Error` and other items of the root: no module.
                    if !used.is_empty() {
                        out.push((path.display().to_string(), module.clone(), used));
                    }
                }
            }
        }
    }

    #[test]
    fn no_module_uses_a_higher_layer() {
        let mut all = Vec::new();
        uses(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            None,
            &mut all,
        );
        assert!(all.len() > 100, "found only {} uses", all.len());
        let wrong: Vec<_> = all
            .iter()
            .filter(|(_, from, to)| {
                let (f, t) = (layer(from), layer(to));
                assert!(f.is_some() && t.is_some(), "{from} → {to}: not in LAYERS");
                t > f
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "uses against ARCHITECTURE.md's layers: {wrong:?}"
        );
    }
}
