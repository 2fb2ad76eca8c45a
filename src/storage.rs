//! distribution storage layout reader (in progress).
