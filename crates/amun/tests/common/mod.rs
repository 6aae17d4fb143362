//! Shared by the integration tests: real datasets from the cache (fetched
//! on first use; `AMUN_DATA_DIR` picks the folder) and tiny training runs.
#![allow(dead_code)]

use amun::data::{DataSpec, Dataset, Registry, default_data_dir, fetch};
use std::sync::Mutex;

static FETCH: Mutex<()> = Mutex::new(());

/// libtorch has one default generator per process: a test that seeds it and
/// depends on what it draws (dropout masks, initial weights), or that draws
/// from or reseeds it, holds this, so no other test of the binary touches
/// it meanwhile (tests run in parallel threads).
pub fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry dataset, fetched once per test binary if missing.
pub fn load(name: &str, train_limit: Option<usize>, test_limit: Option<usize>) -> Dataset {
    let reg = Registry::from_name(name).expect("registry dataset");
    {
        let _g = FETCH.lock().unwrap_or_else(|e| e.into_inner());
        fetch(reg, &default_data_dir()).expect("fetching test data");
    }
    DataSpec::new(name)
        .train_limit(train_limit)
        .test_limit(test_limit)
        .load(&default_data_dir())
        .expect("loading test data")
}

/// MNIST-5k (4,000 train / 1,000 test).
pub fn mnist() -> Dataset {
    load("mnist", None, None)
}

/// A small CNN trained on `data` with `recipe` (in memory).
pub fn trained(
    data: &Dataset,
    recipe: amun::train::Recipe,
    seed: u64,
    subset: amun::train::Subset<'_>,
) -> amun::model::Classifier {
    let spec = amun::model::ModelSpec::for_data(
        amun::model::Arch::SmallCnn,
        data.image_shape(),
        data.num_classes(),
    )
    .unwrap();
    let job = amun::train::TrainJob {
        spec,
        data,
        recipe,
        seed,
        subset,
        out: None,
        resume: false,
        eval_each_epoch: false,
    };
    amun::train::train(&job, &amun::progress::Quiet)
        .unwrap()
        .model
}
