//! One error type for the library. Every variant names the file, flag or
//! field at fault and what was expected, so the CLI can print it as is.
use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in amun.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    /// (The OS error is part of the message, not a separate source, so
    /// it is printed once.)
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A file exists but its content is not what the format requires.
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    /// A file's sha256 differs from the pinned one.
    #[error("{}: sha256 mismatch: expected {expected}, got {actual}", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A setting (flag, config field, method parameter) is out of range.
    #[error("{what}: {msg}")]
    Invalid { what: String, msg: String },
    /// A setting, by its key (`calibrate.max_cost`, as a config file or
    /// `--set` writes it), is out of range or clashes with another. `msg`
    /// names other settings as `{key}` or `{key=value}`, so that a front
    /// end can name every setting its own way ([`Error::naming`]); printed
    /// as is, they read `key` and `key = value`.
    #[error("{}", setting_text(.key, .msg, &|_| None))]
    Setting { key: String, msg: String },
    /// A checkpoint does not fit the model or data it is used with.
    #[error("{}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    /// The requested device is not usable.
    #[error("--device {requested}: {msg}")]
    Device { requested: String, msg: String },
    /// Fetching a dataset from its registry failed.
    #[error("fetching {dataset}: {msg}")]
    Fetch { dataset: String, msg: String },
    /// Training diverged (NaN or Inf loss, weights or statistics); `left`
    /// says what stayed on disk (the inputs are never touched).
    #[error("{what}: diverged in epoch {epoch}: {cause}; {left}")]
    Diverged {
        what: String,
        epoch: usize,
        cause: String,
        left: String,
    },
    /// libtorch reported an error.
    #[error("{context}: {err}")]
    Torch { context: String, err: tch::TchError },
}

impl Error {
    /// A setting `what` (flag or field name) is invalid.
    pub fn invalid(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            msg: msg.into(),
        }
    }

    /// The setting `key` is invalid; `msg` names any other setting it
    /// clashes with as `{key}` or `{key=value}` (see [`Error::Setting`]).
    pub fn setting(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Setting {
            key: key.into(),
            msg: msg.into(),
        }
    }

    /// The setting or flag at fault, if the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::Invalid { what, .. } => Some(what),
            Error::Setting { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The message, with every setting `name` knows named its way (a CLI's
    /// flags: `calibrate.walk` → `--calibrate-walk`, `{calibrate.walk=continue}`
    /// → `--calibrate-walk continue`; an [`Error::Invalid`]'s setting too);
    /// the rest as [`Display`](std::fmt::Display) prints it.
    pub fn naming(&self, name: &dyn Fn(&str) -> Option<String>) -> String {
        match self {
            Error::Setting { key, msg } => setting_text(key, msg, name),
            Error::Invalid { what, msg } => match name(what) {
                Some(flag) => format!("{flag}: {msg}"),
                None => self.to_string(),
            },
            e => e.to_string(),
        }
    }

    /// The content of `path` is not in the expected format.
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// `path` is a checkpoint that does not fit.
    pub fn checkpoint(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}

impl Error {
    /// A TOML parse error of `text` (read from `path`), with the line its
    /// span starts on.
    pub(crate) fn toml(text: &str, path: &Path, e: toml::de::Error) -> Self {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let msg = e.message().trim_end().replace('\n', " ");
        match line {
            Some(l) => Error::format(path, format!("line {l}: {msg}")),
            None => Error::format(path, msg),
        }
    }
}

/// `key: msg` with every setting named by `name`, or by its key where
/// `name` knows none (see [`Error::Setting`]).
fn setting_text(key: &str, msg: &str, name: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = format!("{}: ", name(key).unwrap_or_else(|| key.to_string()));
    let mut rest = msg;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        let inner = &rest[open + 1..close];
        let (k, value) = match inner.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (inner.trim(), None),
        };
        // A value may have a name of its own (`with_retain=false`: a flag
        // that takes no value).
        let whole = value.and_then(|v| name(&format!("{k}={v}")));
        match (whole, name(k), value) {
            (Some(flag), _, _) | (None, Some(flag), None) => out.push_str(&flag),
            (None, Some(flag), Some(v)) => out.push_str(&format!("{flag} {v}")),
            (None, None, Some(v)) => out.push_str(&format!("{k} = {v}")),
            (None, None, None) => out.push_str(k),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A libtorch error on the safetensors file `path` in words: the OS error
/// of a failed write or read as an [`Error::Io`] (safetensors 0.3 would show
/// its Debug form, `IoError(Os { code: 28, … })`), a malformed file as what
/// is wrong with it.
pub(crate) fn safetensors_error(e: tch::TchError, path: &Path, doing: &str) -> Error {
    use safetensors::SafeTensorError as S;
    let tch::TchError::SafeTensorError { err, .. } = e else {
        return Error::Torch {
            context: format!("{doing} {}", path.display()),
            err: e,
        };
    };
    let msg = match err {
        S::IoError(err) => {
            return Error::Io {
                path: path.to_path_buf(),
                err,
            };
        }
        S::InvalidHeader => "its header is not UTF-8 text".to_string(),
        S::InvalidHeaderStart => "its header does not start with '{'".to_string(),
        S::InvalidHeaderDeserialization | S::JsonError(_) => {
            "its header is not valid JSON".to_string()
        }
        S::HeaderTooLarge => "its header is larger than 100 MB".to_string(),
        S::HeaderTooSmall | S::InvalidHeaderLength => {
            "its header length is invalid (truncated?)".to_string()
        }
        S::TensorNotFound(n) => format!("no tensor named '{n}'"),
        S::InvalidOffset(n) => format!("tensor '{n}' has offsets outside the file (truncated?)"),
        S::TensorInvalidInfo | S::InvalidTensorView(..) | S::ValidationOverflow => {
            "a tensor's shape and type do not fit its bytes".to_string()
        }
        S::MetadataIncompleteBuffer => {
            "its tensors do not cover the file's data (truncated or padded)".to_string()
        }
    };
    Error::format(
        path,
        format!("{doing}: not a valid safetensors file: {msg}"),
    )
}

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.as_ref().to_path_buf(),
            err: source,
        })
    }
}

/// Attaches a context line to a libtorch error.
pub(crate) trait TorchContext<T> {
    fn ctx(self, context: impl std::fmt::Display) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn ctx(self, context: impl std::fmt::Display) -> Result<T> {
        self.map_err(|source| Error::Torch {
            context: context.to_string(),
            err: source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_setting_error_names_settings_by_key_or_as_asked() {
        let e = Error::setting(
            "calibrate.max_cost",
            "only the continuing walk ({calibrate.walk=continue}) has a cost cap; see {calibrate.lrs}",
        );
        assert_eq!(
            e.to_string(),
            "calibrate.max_cost: only the continuing walk (calibrate.walk = continue) has a cost \
             cap; see calibrate.lrs"
        );
        // Names keys (not values) but calibrate.lrs.
        let flag = |k: &str| {
            (k != "calibrate.lrs" && !k.contains('=')).then(|| format!("--{}", k.replace('.', "-")))
        };
        assert_eq!(
            e.naming(&flag),
            "--calibrate-max_cost: only the continuing walk (--calibrate-walk continue) has a \
             cost cap; see calibrate.lrs"
        );
        let e = Error::setting("a", "b ({with_retain=false})");
        let flag = |k: &str| (k == "with_retain=false").then(|| "--no-retain".to_string());
        assert_eq!(e.to_string(), "a: b (with_retain = false)");
        assert_eq!(e.naming(&flag), "a: b (--no-retain)");
        let other = Error::invalid("x", "{not a key}");
        assert_eq!(other.naming(&flag), "x: {not a key}");
    }
}
