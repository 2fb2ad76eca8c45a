//! Storage garbage collection (in progress).
