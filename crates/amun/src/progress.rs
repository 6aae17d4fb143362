//! How the library reports progress without printing: the caller passes a
//! [`Progress`] (the CLI draws bars with it; tests pass [`Quiet`]).

/// Receives progress of long operations.
pub trait Progress: Send + Sync {
    /// A new phase with `total` steps begins.
    fn start(&self, _label: &str, _total: u64) {}
    /// `pos` of `total` steps are done; `status` is a short live summary.
    fn update(&self, _pos: u64, _status: &str) {}
    /// The phase ended; `summary` is a line worth keeping.
    fn finish(&self, _summary: &str) {}
    /// A line worth keeping, outside any phase.
    fn note(&self, _line: &str) {}
    /// A warning about the user's files (what was moved, kept or refused):
    /// shown even where notes are not (`--quiet`).
    fn warn(&self, line: &str) {
        self.note(line);
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {}
