//! Data: every loader against real files, integrity checks, forget sets,
//! augmentation.
use crate::common;

use amun::Error;
use amun::data::{
    Augment, DataSpec, ForgetSet, ForgetSpec, Registry, augment_batch, default_data_dir,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

fn px(t: &Tensor, idx: &[i64]) -> i64 {
    t.int64_value(idx)
}

#[test]
fn cifar10_loader_counts_labels_pixels() {
    let d = common::load("cifar10", None, None);
    assert_eq!(d.train.len(), 50_000);
    assert_eq!(d.test.len(), 10_000);
    assert_eq!(d.image_shape(), [3, 32, 32]);
    assert_eq!(d.train.images.kind(), Kind::Uint8);
    assert_eq!(d.train.class_counts(10), vec![5000; 10]);
    assert_eq!(d.test.class_counts(10), vec![1000; 10]);
    assert_eq!(&d.train.label_vec()[..3], &[6, 9, 9]);
    assert_eq!(&d.test.label_vec()[..3], &[3, 8, 8]);
    // Record 0 of data_batch_1: R, G, B planes, row-major.
    assert_eq!(px(&d.train.images, &[0, 0, 0, 0]), 59);
    assert_eq!(px(&d.train.images, &[0, 1, 0, 0]), 62);
    assert_eq!(px(&d.train.images, &[0, 2, 0, 0]), 63);
    assert_eq!(px(&d.train.images, &[0, 0, 5, 7]), 119);
    assert_eq!(px(&d.test.images, &[0, 0, 0, 0]), 158);
    assert_eq!(d.classes[6], "frog");
}

#[test]
fn mnist5k_loader_split_is_fixed_and_balanced() {
    let d = common::mnist();
    assert_eq!((d.train.len(), d.test.len()), (4000, 1000));
    assert_eq!(d.image_shape(), [1, 28, 28]);
    assert_eq!(d.train.class_counts(10), vec![400; 10]);
    assert_eq!(d.test.class_counts(10), vec![100; 10]);
    // Interleaved by class, so a prefix is balanced.
    assert_eq!(
        &d.train.label_vec()[..12],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    );
    assert_eq!(px(&d.train.images, &[0, 0, 4, 15]), 51);
    assert_eq!(px(&d.train.images, &[1, 0, 5, 18]), 124);
    assert_eq!(px(&d.test.images, &[0, 0, 4, 14]), 79);
    let small = common::load("mnist", Some(100), Some(50));
    assert_eq!(small.train.class_counts(10), vec![10; 10]);
    assert_eq!(small.test.len(), 50);
}

fn idx_bytes(magic_dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, magic_dims.len() as u8];
    for d in magic_dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn write_gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap();
}

/// Writes MNIST-5k as IDX files (train gzipped, test plain) and reads them
/// back through the folder loader.
#[test]
fn idx_loader_reads_plain_and_gz() {
    let d = common::mnist();
    let dir = tempfile::tempdir().unwrap();
    let raw = |t: &Tensor| Vec::<u8>::try_from(t.flatten(0, -1)).unwrap();
    let lab = |s: &amun::data::Split| s.label_vec().iter().map(|&l| l as u8).collect::<Vec<_>>();
    write_gz(
        &dir.path().join("train-images-idx3-ubyte.gz"),
        &idx_bytes(&[4000, 28, 28], &raw(&d.train.images)),
    );
    write_gz(
        &dir.path().join("train-labels-idx1-ubyte.gz"),
        &idx_bytes(&[4000], &lab(&d.train)),
    );
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        idx_bytes(&[1000, 28, 28], &raw(&d.test.images)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_bytes(&[1000], &lab(&d.test)),
    )
    .unwrap();
    let spec = DataSpec::new(dir.path().to_str().unwrap());
    let e = spec.load(&default_data_dir()).unwrap();
    assert_eq!((e.train.len(), e.test.len()), (4000, 1000));
    assert!(e.train.images.equal(&d.train.images));
    assert!(e.test.labels.equal(&d.test.labels));
    assert_eq!(e.num_classes(), 10);

    // A truncated IDX file is named in the error.
    let bad = dir.path().join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 10]).unwrap();
    let err = spec.load(&default_data_dir()).unwrap_err().to_string();
    assert!(
        err.contains("t10k-images-idx3-ubyte") && err.contains("truncated"),
        "{err}"
    );
}

/// Writes a few CIFAR-10 images as PNG class folders and reads them back.
#[test]
fn image_folder_loader_reads_png_classes() {
    let d = common::load("cifar10", Some(40), Some(20));
    let dir = tempfile::tempdir().unwrap();
    let write = |split: &amun::data::Split, sub: &str| {
        let labels = split.label_vec();
        for (i, &l) in labels.iter().enumerate() {
            let cdir = dir.path().join(sub).join(&d.classes[l as usize]);
            std::fs::create_dir_all(&cdir).unwrap();
            let chw = Vec::<u8>::try_from(split.images.get(i as i64).flatten(0, -1)).unwrap();
            let mut hwc = vec![0u8; 3 * 32 * 32];
            for c in 0..3 {
                for p in 0..1024 {
                    hwc[p * 3 + c] = chw[c * 1024 + p];
                }
            }
            image::RgbImage::from_raw(32, 32, hwc)
                .unwrap()
                .save(cdir.join(format!("{i:04}.png")))
                .unwrap();
        }
    };
    write(&d.train, "train");
    write(&d.test, "test");
    let e = DataSpec::new(dir.path().to_str().unwrap())
        .load(&default_data_dir())
        .unwrap();
    assert_eq!((e.train.len(), e.test.len()), (40, 20));
    assert_eq!(e.image_shape(), [3, 32, 32]);
    // Classes are the sorted folder names; images keep their exact bytes.
    let mut names = e.classes.clone();
    names.sort();
    assert_eq!(names, e.classes);
    let total: i64 = e.train.images.sum(Kind::Int64).int64_value(&[]);
    let want: i64 = d.train.images.sum(Kind::Int64).int64_value(&[]);
    assert_eq!(total, want);
    // A class folder without images gave the model a class it never saw
    // (hostile16 Q16): refused naming it, in either layout.
    let zebra = dir.path().join("train/zebra");
    std::fs::create_dir(&zebra).unwrap();
    std::fs::write(zebra.join("notes.txt"), "not an image").unwrap();
    let load = |root: &Path| DataSpec::new(root.to_str().unwrap()).load(&default_data_dir());
    let e = load(dir.path()).unwrap_err().to_string();
    let said = "class 'zebra' has no training images (train/zebra holds no .png, .jpg or .jpeg";
    assert!(e.contains(said), "{e}");
    let e = load(&dir.path().join("train")).unwrap_err().to_string();
    assert!(
        e.contains("class 'zebra' has no training images (zebra holds"),
        "{e}"
    );
}

fn copy_cifar_to(dir: &Path) {
    let src = Registry::Cifar10.verified_dir(&default_data_dir()).unwrap();
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn cifar_folder_errors_name_the_file() {
    common::load("cifar10", Some(1), Some(1));
    let dir = tempfile::tempdir().unwrap();
    copy_cifar_to(dir.path());
    let spec = DataSpec::new(dir.path().to_str().unwrap());
    assert_eq!(spec.load(&default_data_dir()).unwrap().train.len(), 50_000);
    // Wrong record size (a truncated file).
    let f = dir.path().join("data_batch_3.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..3073 * 10 + 5]).unwrap();
    let err = spec.load(&default_data_dir()).unwrap_err();
    assert!(matches!(err, Error::Format { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("3073"),
        "{msg}"
    );
    // A missing file.
    std::fs::remove_file(&f).unwrap();
    let msg = spec.load(&default_data_dir()).unwrap_err().to_string();
    assert!(msg.contains("data_batch_3.bin"), "{msg}");
    // A bad label byte.
    let mut bytes = bytes;
    bytes[0] = 42;
    std::fs::write(&f, &bytes).unwrap();
    let msg = spec.load(&default_data_dir()).unwrap_err().to_string();
    assert!(msg.contains("label 42"), "{msg}");
}

#[test]
fn sha256_mismatch_is_detected() {
    common::mnist();
    let cache = tempfile::tempdir().unwrap();
    let src = Registry::Mnist.verified_dir(&default_data_dir()).unwrap();
    let dst = cache.path().join("mnist");
    std::fs::create_dir_all(&dst).unwrap();
    let file = dst.join("mnist_5k.csv.gz");
    std::fs::copy(src.join("mnist_5k.csv.gz"), &file).unwrap();
    assert!(Registry::Mnist.verified_dir(cache.path()).is_ok());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let err = DataSpec::new("mnist").load(cache.path()).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("mnist_5k.csv.gz"));
    // A missing cache says how to fetch.
    let empty = tempfile::tempdir().unwrap();
    let msg = DataSpec::new("cifar10")
        .load(empty.path())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("amun data fetch cifar10"), "{msg}");
}

#[test]
fn unknown_dataset_lists_the_choices() {
    let msg = DataSpec::new("imagenet-xl")
        .load(&default_data_dir())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("cifar10") && msg.contains("mnist"), "{msg}");
}

#[test]
fn forget_sets_are_reproducible_disjoint_and_validated() {
    let d = common::mnist();
    let a = ForgetSet::choose(&d, &ForgetSpec::Fraction(0.1), 7).unwrap();
    let b = ForgetSet::choose(&d, &ForgetSpec::Fraction(0.1), 7).unwrap();
    let c = ForgetSet::choose(&d, &ForgetSpec::Fraction(0.1), 8).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.indices, c.indices);
    assert_eq!(a.size, 400);
    let retain = a.retain_indices();
    assert_eq!(retain.len() + a.size, 4000);
    let f: std::collections::HashSet<_> = a.indices.iter().collect();
    assert!(retain.iter().all(|i| !f.contains(i)));
    assert!(a.indices.windows(2).all(|w| w[0] < w[1]));

    let count = ForgetSet::choose(&d, &ForgetSpec::Count(123), 1).unwrap();
    assert_eq!(count.size, 123);
    let class = ForgetSet::choose(&d, &ForgetSpec::Class(3), 1).unwrap();
    assert_eq!(class.size, 400);
    let labels = d.train.label_vec();
    assert!(class.indices.iter().all(|&i| labels[i as usize] == 3));

    // Round trip, then corrupted files.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("forget.json");
    a.write(&p).unwrap();
    assert_eq!(ForgetSet::read(&p).unwrap(), a);
    let mut dup = a.clone();
    dup.indices[1] = dup.indices[0];
    dup.write(&p).unwrap();
    assert!(
        ForgetSet::read(&p)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    let mut out = a.clone();
    *out.indices.last_mut().unwrap() = 4000;
    out.write(&p).unwrap();
    assert!(
        ForgetSet::read(&p)
            .unwrap_err()
            .to_string()
            .contains("out of range")
    );
    // A set made for other data is refused.
    let small = common::load("mnist", Some(1000), None);
    assert!(a.check_matches(&small, &p).is_err());
    assert!(ForgetSpec::parse("1.5").is_err());
    assert!(ForgetSpec::parse("0").is_err());
}

#[test]
fn augmentation_keeps_shape_range_and_crops_exactly() {
    let d = common::load("cifar10", Some(64), Some(1));
    let x = d.train.images.shallow_clone();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let y = augment_batch(&x, Augment::CROP_FLIP, &mut rng);
    assert_eq!(y.size(), x.size());
    assert_eq!(y.kind(), Kind::Uint8);
    // Same seed, same batch; the float path gives the same values.
    let mut rng2 = ChaCha8Rng::seed_from_u64(3);
    let yf = augment_batch(
        &(x.to_kind(Kind::Float) / 255.0),
        Augment::CROP_FLIP,
        &mut rng2,
    );
    assert!(yf.ge(0.0).all().int64_value(&[]) == 1 && yf.le(1.0).all().int64_value(&[]) == 1);
    assert!((yf * 255.0).round().to_kind(Kind::Uint8).equal(&y));
    // Some images moved, none gained pixels that were not in the source or padding.
    assert!(!y.equal(&x));
    // A pure flip (no padding) is an exact mirror or the identity.
    let mut rng3 = ChaCha8Rng::seed_from_u64(5);
    let f = augment_batch(
        &x,
        Augment {
            crop_padding: 0,
            flip: true,
        },
        &mut rng3,
    );
    for i in 0..64 {
        let a = f.get(i);
        let b = x.get(i);
        assert!(a.equal(&b) || a.equal(&b.flip([2])));
    }
    // With padding and no flip, each image is a shifted copy with zero fill.
    let mut rng4 = ChaCha8Rng::seed_from_u64(9);
    let s = augment_batch(
        &x,
        Augment {
            crop_padding: 4,
            flip: false,
        },
        &mut rng4,
    );
    for i in 0..8 {
        let padded = x.get(i).constant_pad_nd([4, 4, 4, 4]);
        let found = (0..=8).any(|dy| {
            (0..=8).any(|dx| padded.narrow(1, dy, 32).narrow(2, dx, 32).equal(&s.get(i)))
        });
        assert!(found, "image {i} is not a crop of its padded source");
    }
}

/// Issue 37 (hostile6 F3b): one colour PNG among grayscale ones turned the
/// whole folder into three channels without a word (and a model trained on
/// the grayscale images no longer fit it). Refused, naming that file; a
/// colour folder with a few grayscale images still reads as colour.
#[test]
fn one_colour_image_among_grayscale_ones_is_named() {
    let d = common::load("mnist", Some(20), Some(10));
    let dir = tempfile::tempdir().unwrap();
    let write = |colour: &dyn Fn(usize) -> bool| {
        for (i, l) in d.train.label_vec().iter().enumerate() {
            let cdir = dir.path().join(l.to_string());
            std::fs::create_dir_all(&cdir).unwrap();
            let px = Vec::<u8>::try_from(d.train.images.get(i as i64).flatten(0, -1)).unwrap();
            let gray = image::GrayImage::from_raw(28, 28, px).unwrap();
            let img = image::DynamicImage::ImageLuma8(gray);
            let img = if colour(i) {
                image::DynamicImage::ImageRgb8(img.to_rgb8())
            } else {
                img
            };
            img.save(cdir.join(format!("{i:03}.png"))).unwrap();
        }
    };
    let load = || DataSpec::new(dir.path().to_str().unwrap()).load(&default_data_dir());
    write(&|i| i == 7);
    let e = load().unwrap_err().to_string();
    assert!(
        e.contains("007.png") && e.contains("19 of the folder's 20 images are grayscale"),
        "{e}"
    );
    write(&|i| i != 7);
    assert_eq!(load().unwrap().image_shape(), [3, 28, 28]);
}
