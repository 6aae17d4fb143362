//! Giving out a version's certificate (`amun registry certificate`): the
//! issued one, or one written from the records when its file is missing —
//! never over a registry that fails verification. Apart from
//! [`super::certificate`] (what a certificate holds), which verify reads
//! to check issued certificates.
use super::certificate::{Certificate, certificate_paths, reissue_certificate, render_markdown};
use super::{Registry, verify};
use crate::error::{Error, Result};
use crate::fsutil;
use std::path::PathBuf;

/// A certificate [`ensure_certificate`] gave: its files, and the warnings
/// `amun registry verify` gives for the registry (it found no problem).
#[derive(Debug, Clone)]
pub struct Issued {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub warnings: Vec<String>,
}

/// Writes version `id`'s certificate unless it was issued already (both
/// files there): an issued certificate is never rewritten, it is what
/// verify checks against the records. Refused, with nothing written, while
/// the registry fails verification (its data and anchor included): a
/// certificate vouches for the registry as it is (hostile15 N11, N13).
pub fn ensure_certificate(reg: &Registry, id: i64) -> Result<Issued> {
    verify::check_certified_files(reg, id)?;
    let (md, json) = certificate_paths(reg, id);
    if !json.is_file() && md.exists() {
        // The JSON is written first: this Markdown is no certificate the
        // registry issued (it was edited and its JSON deleted, or put
        // there), and it is never replaced unseen.
        return Err(Error::invalid(
            md.display().to_string(),
            format!(
                "exists without its JSON certificate {}, so it cannot be checked against the \
                 records (edited, with its JSON deleted?); it is not replaced: move it away and \
                 run again to write version {id}'s certificate; nothing was written",
                json.display()
            ),
        ));
    }
    let warnings = verify::refuse_unverified(
        reg,
        &format!("no certificate of version {id} is given and nothing was written"),
    )?;
    if !json.is_file() {
        reissue_certificate(reg, id)?;
    } else if !md.is_file() {
        // The Markdown of the issued JSON, not of a new certificate.
        let c: Certificate = fsutil::read_json(&json)?;
        fsutil::write_atomic(&md, render_markdown(&c).as_bytes())?;
    }
    Ok(Issued {
        markdown: md,
        json,
        warnings,
    })
}
