//! The receipt `add --receipt FILE` hands the requester: its name reserved
//! before the commit (a path that cannot be written is refused while
//! nothing changed), its content written under a temporary name and put in
//! place only after the commit (hostile11 KK-RCPT: a kill before it left an
//! empty receipt of a request never made).
use super::Receipt;
use crate::error::{Error, Result};
use crate::fsutil::TempPath;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A receipt file to hand out: `dest` (new), and the temporary file beside
/// it that holds the receipt until it is linked into place.
pub(crate) struct ReceiptOut {
    dest: PathBuf,
    tmp: TempPath,
    file: std::fs::File,
}

impl ReceiptOut {
    /// Reserves `dest` for a receipt: never a link, a file that exists, a
    /// folder amun's own commands write, or a folder that is not there; the
    /// temporary file beside it is made now (removed on drop, and by a
    /// signal's handler).
    pub(crate) fn reserve(dest: &Path) -> Result<ReceiptOut> {
        check(dest)?;
        let tmp = TempPath::beside(dest)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp.path())
            .map_err(|e| {
                Error::invalid(
                    format!("--receipt {}", dest.display()),
                    format!("cannot be written ({e}); nothing was added"),
                )
            })?;
        Ok(ReceiptOut {
            dest: dest.to_path_buf(),
            tmp,
            file,
        })
    }

    /// Where the receipt goes.
    pub(crate) fn dest(&self) -> &Path {
        &self.dest
    }

    /// Writes `receipt` and links it into place, never over a file that
    /// appeared there meanwhile; the temporary name goes on drop.
    pub(crate) fn hand_out(mut self, receipt: &Receipt) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(receipt).map_err(std::io::Error::other)? + "\n";
        self.file.write_all(text.as_bytes())?;
        self.file.sync_all()?;
        std::fs::hard_link(self.tmp.path(), &self.dest)
    }
}

/// Refuses `dest` as a receipt's path: a link, a file that exists, a
/// folder amun's own commands write, or a folder that is not there.
pub(crate) fn check(dest: &Path) -> Result<()> {
    crate::outputs::refuse_evidence_path("--receipt", dest)?;
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(Error::invalid(
            format!("--receipt {}", dest.display()),
            "exists already; a receipt never replaces a file",
        ));
    }
    let folder = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(Error::invalid(
            format!("--receipt {}", dest.display()),
            format!(
                "no folder {} to make it in; make the folder first, or name a file in an \
                 existing one (nothing was added)",
                folder.display()
            ),
        ));
    }
    Ok(())
}
