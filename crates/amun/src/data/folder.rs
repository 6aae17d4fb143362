//! Image folders: `root/<class>/<image>.png|jpg`, or with explicit splits
//! `root/train/<class>/…` and `root/test/<class>/…` (`val` also accepted).
//! Classes are the sorted folder names; all images must share one size.
use super::{Split, split_from_bytes};
use crate::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).at(dir)? {
        let p = e.at(dir)?.path();
        if p.is_dir() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

pub(super) fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// The training images of an image folder, in the order of the training
/// split (sample i is file i).
pub fn train_files(root: &Path) -> Result<Vec<PathBuf>> {
    let (train_root, _) = split_roots(root)?;
    let classes: Vec<String> = subdirs(&train_root)?
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut files = collect(&train_root, &classes)?;
    files.sort();
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// The folders of the training and test split.
fn split_roots(root: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let train_dir = root.join("train");
    let test_dir = ["test", "val"]
        .iter()
        .map(|d| root.join(d))
        .find(|p| p.is_dir());
    if !train_dir.is_dir() {
        return Ok((root.to_path_buf(), None));
    }
    check_no_stray_class(root)?;
    Ok((train_dir, test_dir))
}

/// Refuses a folder of images beside `train/` and `test/`: read as split
/// folders, the dataset would leave its images out without a word, and
/// read as class folders, `train` and `test` would be classes.
fn check_no_stray_class(root: &Path) -> Result<()> {
    for dir in subdirs(root)? {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if ["train", "test", "val"].contains(&name.as_str()) || name.starts_with('.') {
            continue;
        }
        if !collect(root, std::slice::from_ref(&name))?.is_empty() {
            return Err(Error::format(
                &dir,
                format!(
                    "a folder of images beside train/ in {}, which neither layout reads; \
                     expected either class folders at the top (<class>/<image>.png|jpg) or \
                     train/ and test/ with the class folders inside \
                     (train/<class>/<image>.png|jpg): move {name}/ into train/ (and test/), \
                     or out of the dataset folder",
                    root.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Reads an image folder; without train/test subfolders the whole folder is
/// the training split and the test split is empty.
pub fn read_image_folder(root: &Path) -> Result<(Vec<String>, Split, Split)> {
    let (train_root, test_root) = split_roots(root)?;
    let classes: Vec<String> = subdirs(&train_root)?
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    if classes.is_empty() {
        return Err(Error::format(
            root,
            "no class folders; expected root/<class>/<image>.png|jpg, CIFAR-10 binary batches or IDX files",
        ));
    }
    // Colour is decided over both splits, so they share a channel count.
    let mut files = collect(&train_root, &classes)?;
    if files.is_empty() {
        return Err(Error::format(
            &train_root,
            format!(
                "no images found in its {} class folder(s) ({}); expected \
                 <class>/<image>.png|jpg|jpeg",
                classes.len(),
                short_list(&classes)
            ),
        ));
    }
    check_every_class_trained(root, &train_root, &classes, &files)?;
    let test_files = match &test_root {
        Some(t) => {
            check_test_classes(t, &classes)?;
            collect(t, &classes)?
        }
        None => Vec::new(),
    };
    let rgb = is_colour(files.iter().chain(&test_files).map(|(p, _)| p.as_path()))?;
    files.sort();
    let (train, size) = decode(root, &files, rgb, None)?;
    let (test, _) = decode(root, &test_files, rgb, Some(size))?;
    Ok((classes, train, test))
}

/// Refuses a class folder without training images: the model would get an
/// output for a class it never saw, and train and test without a word
/// (hostile16 Q16). A test class folder without images is accepted, as an
/// absent one is: the test split only measures, and `data info` shows its 0.
fn check_every_class_trained(
    root: &Path,
    train_root: &Path,
    classes: &[String],
    files: &[(PathBuf, i64)],
) -> Result<()> {
    let mut seen = vec![false; classes.len()];
    for (_, label) in files {
        seen[*label as usize] = true;
    }
    let empty: Vec<String> = classes
        .iter()
        .zip(&seen)
        .filter(|(_, s)| !**s)
        .map(|(c, _)| c.clone())
        .collect();
    let Some(first) = empty.first() else {
        return Ok(());
    };
    let dir = train_root.join(first);
    let shown = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
    let state = match std::fs::read_dir(&dir).at(&dir)?.next() {
        None => "is empty",
        Some(_) => "holds no .png, .jpg or .jpeg file",
    };
    let others = match empty.len() {
        1 => String::new(),
        n => format!(
            " ({} more class(es) without images: {})",
            n - 1,
            short_list(&empty[1..])
        ),
    };
    let also = if train_root == root {
        ""
    } else {
        " (and its test/ counterpart)"
    };
    Err(Error::format(
        root,
        format!(
            "class '{first}' has no training images ({shown} {state}){others}; the model would \
             have a class it never saw: add images to {shown} or remove that folder{also}"
        ),
    ))
}

/// Refuses a test class folder with images that the training split lacks:
/// they would have no label, and dropping them would shrink the test set
/// unseen.
fn check_test_classes(test_root: &Path, classes: &[String]) -> Result<()> {
    for dir in subdirs(test_root)? {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !classes.contains(&name) && !collect(test_root, std::slice::from_ref(&name))?.is_empty()
        {
            let split = test_root.file_name().unwrap().to_string_lossy();
            return Err(Error::format(
                &dir,
                format!(
                    "class folder {split}/{name} has no counterpart in train/ (its classes: {}); \
                     expected the test classes to be among the training classes: add \
                     train/{name} or remove {split}/{name}",
                    short_list(classes)
                ),
            ));
        }
    }
    Ok(())
}

/// The first three of `names`, then "…".
fn short_list(names: &[String]) -> String {
    let head = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 3 {
        head + ", …"
    } else {
        head
    }
}

fn collect(dir: &Path, classes: &[String]) -> Result<Vec<(PathBuf, i64)>> {
    let mut out = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let cdir = dir.join(class);
        if !cdir.is_dir() {
            continue;
        }
        let mut imgs: Vec<PathBuf> = std::fs::read_dir(&cdir)
            .at(&cdir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        imgs.sort();
        out.extend(imgs.into_iter().map(|p| (p, label as i64)));
    }
    Ok(out)
}

/// Whether a folder of `images` is read as colour (three channels): when
/// at least half are colour, the grayscale ones are repeated into three
/// channels, which loses nothing (as torchvision's `ImageFolder` reads
/// them). A few colour images among grayscale ones would turn every image,
/// and the model trained on them, into three channels unseen: refused,
/// naming the first colour image. Each image's header tells, from the
/// read that hashes it ([`super::file_facts`]): decoding every image here
/// too read the folder twice.
fn is_colour<'a>(images: impl Iterator<Item = &'a Path>) -> Result<bool> {
    let mut colour: Vec<&Path> = Vec::new();
    let mut n = 0usize;
    for p in images {
        n += 1;
        // A header that cannot be read: the decode names what is wrong.
        let rgb = match super::file_facts(p)?.colour {
            Some(c) => c,
            None => image_is_colour(p)?,
        };
        if rgb {
            colour.push(p);
        }
    }
    match colour.first() {
        None => Ok(false),
        Some(_) if 2 * colour.len() >= n => Ok(true),
        Some(first) => Err(Error::format(
            first,
            format!(
                "a colour image, but {} of the folder's {n} images are grayscale ({} colour): \
                 read together, every image would become three channels, and a model of the \
                 grayscale images would no longer fit the data; convert the colour image(s) to \
                 grayscale, or all images to colour",
                n - colour.len(),
                colour.len()
            ),
        )),
    }
}

/// The channels an image folder at `root` is read with (1 or 3), from its
/// images' headers alone, as [`read_image_folder`] decides them; `None`
/// when it is no image folder or cannot be told (unreadable, or a mix it
/// refuses). What settles a default that depends on the channels (`[train]
/// augment`) before the data is read. Every header counts (a folder of
/// mostly colour images is read as colour, its grayscale ones repeated),
/// but each comes from the one read of the file that also hashes it for
/// the plan ([`super::file_facts`]), so learning the channels costs no
/// pass of its own.
pub fn channels(root: &Path) -> Option<i64> {
    let (train_root, test_root) = split_roots(root).ok()?;
    let classes: Vec<String> = (subdirs(&train_root).ok()?.iter())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut files = collect(&train_root, &classes).ok()?;
    if files.is_empty() {
        return None;
    }
    if let Some(t) = &test_root {
        files.extend(collect(t, &classes).ok()?);
    }
    let mut colour = 0usize;
    for (p, _) in &files {
        colour += super::file_facts(p).ok()?.colour? as usize;
    }
    match colour {
        0 => Some(1),
        c if 2 * c >= files.len() => Some(3),
        _ => None,
    }
}

/// Whether the image file `path`, whose content is `bytes`, is colour by
/// its header (its format guessed as `ImageReader::open` does: by the
/// content, else by the extension); `None` when the header cannot be read.
pub(super) fn header_colour(path: &Path, bytes: &[u8]) -> Option<bool> {
    let mut r = image::ImageReader::new(std::io::Cursor::new(bytes));
    if let Ok(f) = image::ImageFormat::from_path(path) {
        r.set_format(f);
    }
    let r = r.with_guessed_format().ok()?;
    Some(image::ImageDecoder::color_type(&r.into_decoder().ok()?).has_color())
}

fn image_is_colour(p: &Path) -> Result<bool> {
    let img = image::ImageReader::open(p)
        .at(p)?
        .with_guessed_format()
        .at(p)?
        .decode()
        .map_err(|e| Error::format(p, format!("cannot decode image: {e}")))?;
    Ok(img.color().has_color())
}

fn decode(
    root: &Path,
    files: &[(PathBuf, i64)],
    rgb: bool,
    size: Option<(u32, u32)>,
) -> Result<(Split, (u32, u32))> {
    let channels = if rgb { 3 } else { 1 };
    let mut size = size;
    let mut first: Option<&PathBuf> = None;
    let mut bytes = Vec::new();
    let mut labels = Vec::with_capacity(files.len());
    for (p, label) in files {
        let img = image::ImageReader::open(p)
            .at(p)?
            .with_guessed_format()
            .at(p)?
            .decode()
            .map_err(|e| Error::format(p, format!("cannot decode image: {e}")))?;
        let dims = (img.width(), img.height());
        match size {
            None => {
                size = Some(dims);
                first = Some(p);
            }
            Some(s) if s != dims => {
                // Which of the two is the odd one is not known here: name both.
                let like = first.map_or_else(
                    || "the other split's images".to_string(),
                    |f| f.display().to_string(),
                );
                return Err(Error::format(
                    p,
                    format!(
                        "image is {}x{} but {like} is {}x{}; every image of the dataset must \
                         have one size (resize or remove the odd one)",
                        dims.0, dims.1, s.0, s.1
                    ),
                ));
            }
            _ => {}
        }
        // HWC interleaved → CHW planar.
        let (w, h) = (dims.0 as usize, dims.1 as usize);
        let raw = if rgb {
            img.to_rgb8().into_raw()
        } else {
            img.to_luma8().into_raw()
        };
        let start = bytes.len();
        bytes.resize(start + raw.len(), 0);
        for c in 0..channels {
            for i in 0..h * w {
                bytes[start + c * h * w + i] = raw[i * channels + c];
            }
        }
        labels.push(*label);
    }
    let (w, h) = size.unwrap_or((1, 1));
    let split = split_from_bytes(root, bytes, labels, [channels as i64, h as i64, w as i64])?;
    Ok((split, (w, h)))
}
