//! The `.pt2` archive `torch.export.save` writes (a zip, PyTorch's
//! `pt2_archive` layout): `<root>/models/model.json` (the graph),
//! `<root>/data/weights/model_weights_config.json` and
//! `<root>/data/constants/model_constants_config.json` (each payload's file,
//! dtype, sizes, strides, offset) and the payloads themselves (raw storage
//! bytes, or a `torch.save` pickle for tensor subclasses, read only through
//! the restricted unpickler). Nothing else in the archive is read; the
//! sample inputs (a pickle) are never opened. Writing copies every entry
//! as it is, replaces only the weight payloads and adds [`AMUN_EXPORT`].
use super::schema::{ExportedProgram, PayloadConfig, PayloadMeta, TensorMeta, kind_of};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::TempPath;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use tch::{Kind, Tensor};

pub const MODEL_JSON: &str = "models/model.json";
pub const WEIGHTS_DIR: &str = "data/weights/";
pub const WEIGHTS_CONFIG: &str = "data/weights/model_weights_config.json";
pub const CONSTANTS_DIR: &str = "data/constants/";
pub const CONSTANTS_CONFIG: &str = "data/constants/model_constants_config.json";

/// The record amun adds to every `.pt2` it writes (a `torch.export.save`
/// extra file, which `torch.export.load` reads only when asked for it):
/// how amun's own export is told from a user's graph, which no output
/// replaces.
pub const AMUN_EXPORT: &str = "extra/amun-export.json";

/// Whether `path` is a `.pt2` amun wrote (it holds [`AMUN_EXPORT`]).
pub fn written_by_amun(path: &Path) -> bool {
    Archive::open(path).is_ok_and(|a| {
        a.zip
            .index_for_name(&format!("{}{AMUN_EXPORT}", a.root))
            .is_some()
    })
}

/// The most bytes a JSON record may have (a large model's graph with its
/// stack traces is a few MB).
const MAX_JSON: u64 = 512 << 20;

/// How many times its size in the file a compressed record may inflate to
/// (weights and JSON compress a few times at most; a zip bomb, ~1000×).
const MAX_RATIO: u64 = 64;

/// An opened archive: its zip and the folder every record sits in.
pub struct Archive<'p> {
    zip: zip::ZipArchive<std::fs::File>,
    root: String,
    pub path: &'p Path,
}

fn zip_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::format(
        path,
        format!("not a readable .pt2 archive (truncated or damaged?): {e}"),
    )
}

impl<'p> Archive<'p> {
    pub fn open(path: &'p Path) -> Result<Archive<'p>> {
        crate::fsutil::require_regular(path, "an exported program (.pt2)")?;
        let file = std::fs::File::open(path).at(path)?;
        let zip = zip::ZipArchive::new(file).map_err(|e| zip_err(path, e))?;
        // torch.export.save puts every record under one folder (the file's
        // name when it was saved); PyTorch's reader takes it from the first.
        let first = zip
            .name_for_index(0)
            .ok_or_else(|| Error::format(path, "an empty zip, not a .pt2 archive"))?;
        let root = match first.split_once('/') {
            Some((r, _)) => format!("{r}/"),
            None => String::new(),
        };
        let mut a = Archive { zip, root, path };
        if a.zip
            .index_for_name(&format!("{}archive_format", a.root))
            .is_none()
        {
            // (A .pt2 cut short can also end here: the zip reader then finds
            // the sample inputs' own zip, nested inside, instead.)
            return Err(Error::format(
                path,
                "no archive_format record: not a .pt2 archive written by torch.export.save \
                 (a TorchScript or torch.save file, or a truncated .pt2?)",
            ));
        }
        let format = a.read("archive_format", 64)?;
        if format.trim_ascii() != b"pt2" {
            return Err(Error::format(
                path,
                format!(
                    "archive_format is '{}', expected 'pt2'",
                    String::from_utf8_lossy(&format)
                ),
            ));
        }
        Ok(a)
    }

    /// The record `name` (relative to the root), at most `max` bytes.
    /// Never holds more than the entry declares, and refuses a compressed
    /// entry that would inflate far beyond its size in the file (a zip
    /// bomb: torch.export.save stores every record uncompressed).
    pub fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>> {
        let full = format!("{}{name}", self.root);
        let path = self.path;
        let entry = self.zip.by_name(&full).map_err(|e| match e {
            zip::result::ZipError::FileNotFound => {
                Error::format(path, format!("no record {name} in the archive"))
            }
            e => zip_err(path, format!("{name}: {e}")),
        })?;
        let size = entry.size();
        if size > max {
            return Err(Error::format(
                path,
                format!("{name} has {size} bytes, more than {max}"),
            ));
        }
        if entry.compression() != zip::CompressionMethod::Stored
            && size > MAX_RATIO.saturating_mul(entry.compressed_size()) + (1 << 20)
        {
            return Err(Error::format(
                path,
                format!(
                    "{name}: a compressed record of {} bytes that inflates to {size} (a zip \
                     bomb?); torch.export.save stores records uncompressed",
                    entry.compressed_size()
                ),
            ));
        }
        let mut bytes = Vec::new();
        entry
            .take(size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| zip_err(path, format!("{name}: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(zip_err(
                path,
                format!("{name}: {} bytes where it declares {size}", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self, name: &str) -> Result<T> {
        let bytes = self.read(name, MAX_JSON)?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            Error::format(
                self.path,
                format!(
                    "{name}: not the export schema amun reads (at {}): {}",
                    e.path(),
                    e.inner()
                ),
            )
        })
    }

    pub fn program(&mut self) -> Result<ExportedProgram> {
        self.json(MODEL_JSON)
    }

    pub fn weights_config(&mut self) -> Result<PayloadConfig> {
        self.json(WEIGHTS_CONFIG)
    }

    /// The constants' config; archives without constants may lack it.
    pub fn constants_config(&mut self) -> Result<PayloadConfig> {
        let full = format!("{}{CONSTANTS_CONFIG}", self.root);
        if self.zip.index_for_name(&full).is_none() {
            return Ok(PayloadConfig {
                config: Default::default(),
            });
        }
        self.json(CONSTANTS_CONFIG)
    }

    /// The tensor `name` of a payload config whose files sit in `dir`, on
    /// the CPU, its own contiguous copy. `storages` caches the files read.
    pub fn tensor(
        &mut self,
        dir: &str,
        name: &str,
        meta: &PayloadMeta,
        storages: &mut HashMap<String, Vec<u8>>,
    ) -> Result<Tensor> {
        let path = self.path;
        let bad = |msg: String| Error::format(path, format!("{name}: {msg}"));
        if meta.path_name.is_empty()
            || !meta
                .path_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(format!(
                "payload file '{}' is not a plain name",
                meta.path_name
            )));
        }
        let record = format!("{dir}{}", meta.path_name);
        if meta.use_pickle {
            // Tensor subclasses are pickled; the restricted unpickler reads
            // a plain tensor and refuses anything else by name.
            let bytes = self.read(&record, u64::MAX / 2)?;
            let what = self.path.join(&record);
            return super::super::torchfile::read_pt_tensor(&bytes, &what);
        }
        let tm = meta
            .tensor_meta
            .as_ref()
            .ok_or_else(|| bad("no tensor_meta for a raw payload".into()))?;
        let (kind, size, stride, offset) = layout(tm).map_err(&bad)?;
        let elem = elem_size(kind);
        if !storages.contains_key(&record) {
            let bytes = self.read(&record, u64::MAX / 2)?;
            storages.insert(record.clone(), bytes);
        }
        let bytes = &storages[&record];
        if !bytes.len().is_multiple_of(elem) {
            return Err(bad(format!(
                "payload {record} has {} bytes, not a whole number of {kind:?} elements",
                bytes.len()
            )));
        }
        let numel = bytes.len() / elem;
        super::super::torchfile::view_fits(&size, &stride, offset, numel)
            .map_err(|m| bad(format!("payload {record}: {m} (truncated?)")))?;
        if size.iter().product::<i64>() == 0 {
            return Tensor::f_zeros(&size, (kind, tch::Device::Cpu))
                .map_err(|e| bad(super::torch_msg(&e)));
        }
        let flat = Tensor::f_from_data_size(bytes, &[numel as i64], kind)
            .map_err(|e| bad(super::torch_msg(&e)))?;
        flat.f_as_strided(&size, &stride, offset)
            .and_then(|t| t.f_contiguous())
            .map_err(|e| bad(super::torch_msg(&e)))
    }
}

/// A payload's dtype, sizes, strides and storage offset, all constants.
pub fn layout(tm: &TensorMeta) -> std::result::Result<(Kind, Vec<i64>, Vec<i64>, i64), String> {
    let kind = kind_of(tm.dtype).ok_or_else(|| format!("unsupported dtype code {}", tm.dtype))?;
    let ints = |v: &[super::schema::SymInt], what: &str| {
        v.iter()
            .map(|s| s.as_int().ok_or_else(|| format!("a symbolic {what}")))
            .collect::<std::result::Result<Vec<i64>, String>>()
    };
    let size = ints(&tm.sizes, "size")?;
    let stride = if tm.strides.is_empty() && !size.is_empty() {
        contiguous_strides(&size)
    } else {
        ints(&tm.strides, "stride")?
    };
    let offset = match &tm.storage_offset {
        Some(o) => o.as_int().ok_or("a symbolic storage offset")?,
        None => 0,
    };
    if tm.layout.is_some_and(|l| l != 7) {
        return Err("not a strided (dense) tensor".into());
    }
    Ok((kind, size, stride, offset))
}

fn contiguous_strides(size: &[i64]) -> Vec<i64> {
    let mut stride = vec![1i64; size.len()];
    for d in (0..size.len().saturating_sub(1)).rev() {
        stride[d] = stride[d + 1] * size[d + 1].max(1);
    }
    stride
}

pub fn elem_size(k: Kind) -> usize {
    match k {
        Kind::Double | Kind::Int64 => 8,
        Kind::Float | Kind::Int => 4,
        Kind::Half | Kind::BFloat16 | Kind::Int16 => 2,
        _ => 1,
    }
}

/// Writes a copy of the archive at `src` to `out` with the weights named in
/// `weights` (state-dict names → new values) in place of the old ones: each
/// weight payload is the old storage with the new values written into
/// their views (shared storages stay shared); every other record is copied
/// byte for byte. Atomic: `out` appears complete or not at all.
pub fn write_with_weights(src: &Path, out: &Path, weights: &HashMap<String, Tensor>) -> Result<()> {
    let mut a = Archive::open(src)?;
    let cfg = a.weights_config()?;
    let mut missing: Vec<&String> = cfg
        .config
        .keys()
        .filter(|k| !weights.contains_key(*k))
        .collect();
    missing.sort();
    if !missing.is_empty() {
        return Err(Error::invalid(
            format!("--out {}", out.display()),
            format!(
                "the model has no value for {} of the archive's weights ({}{})",
                missing.len(),
                missing
                    .iter()
                    .take(4)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() > 4 { ", …" } else { "" }
            ),
        ));
    }
    // New payloads: the old storage bytes, each weight's view overwritten.
    let mut payloads: HashMap<String, Vec<u8>> = HashMap::new();
    for (name, meta) in &cfg.config {
        let record = format!("{WEIGHTS_DIR}{}", meta.path_name);
        let bad = |msg: String| Error::format(src, format!("{name}: {msg}"));
        if meta.use_pickle {
            return Err(bad(
                "a pickled weight payload (a tensor subclass); amun writes raw weights only".into(),
            ));
        }
        let tm = meta
            .tensor_meta
            .as_ref()
            .ok_or_else(|| bad("no tensor_meta".into()))?;
        let (kind, size, stride, offset) = layout(tm).map_err(&bad)?;
        if !payloads.contains_key(&record) {
            let bytes = a.read(&record, u64::MAX / 2)?;
            payloads.insert(record.clone(), bytes);
        }
        let bytes = payloads.get_mut(&record).expect("just inserted");
        let numel = bytes.len() / elem_size(kind);
        super::super::torchfile::view_fits(&size, &stride, offset, numel).map_err(&bad)?;
        if size.iter().product::<i64>() == 0 {
            continue;
        }
        let new = weights[name].to_device(tch::Device::Cpu);
        if new.size() != size {
            return Err(bad(format!(
                "the model's value has shape {:?}, the archive's {:?}",
                new.size(),
                size
            )));
        }
        let flat = Tensor::f_from_data_size(bytes, &[numel as i64], kind)
            .map_err(|e| bad(super::torch_msg(&e)))?;
        flat.f_as_strided(&size, &stride, offset)
            .and_then(|mut v| v.f_copy_(&new.to_kind(kind)))
            .map_err(|e| bad(super::torch_msg(&e)))?;
        let n = bytes.len();
        flat.f_view_dtype(Kind::Uint8)
            .and_then(|b| b.f_copy_data_u8(bytes, n))
            .map_err(|e| bad(super::torch_msg(&e)))?;
    }
    let tmp = TempPath::beside(out)?;
    {
        let f = std::fs::File::create(tmp.path()).at(out)?;
        let mut z = zip::ZipWriter::new(f);
        let io = |e: zip::result::ZipError| {
            Error::invalid(format!("--out {}", out.display()), e.to_string())
        };
        // A fixed time: the same weights give the same bytes, so exporting
        // them again may replace an export a model records by its sha256.
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .with_alignment(64);
        for i in 0..a.zip.len() {
            let entry = a.zip.by_index_raw(i).map_err(|e| zip_err(src, e))?;
            let rel = entry.name().strip_prefix(&a.root).unwrap_or(entry.name());
            if rel == AMUN_EXPORT {
                // Written anew below (the source is an amun export).
                continue;
            }
            match payloads.get(rel) {
                Some(bytes) => {
                    let name = entry.name().to_string();
                    drop(entry);
                    z.start_file(name, opts).map_err(io)?;
                    z.write_all(bytes).at(out)?;
                }
                None => z.raw_copy_file(entry).map_err(io)?,
            }
        }
        z.start_file(format!("{}{AMUN_EXPORT}", a.root), opts)
            .map_err(io)?;
        z.write_all(br#"{"format": "amun-export/1"}"#).at(out)?;
        z.finish().map_err(io)?.sync_all().at(out)?;
    }
    tmp.commit()
}
