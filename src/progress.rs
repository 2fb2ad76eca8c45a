//! Progress of long operations (scans, plans, applies), reported by the library and drawn by
//! the CLI as a bar on a terminal. Here rather than in any one command's module because every
//! long operation reports through it.

/// Receives progress from long scans; the CLI draws it as a progress bar on a terminal.
pub trait Progress: Send + Sync {
    /// More work became known.
    fn add_total(&self, n: u64);
    /// Work was done.
    fn advance(&self, n: u64);
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn add_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}
