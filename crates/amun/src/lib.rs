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
