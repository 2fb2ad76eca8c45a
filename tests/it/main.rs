//! regsweep's integration tests: one test binary with one module per area, all against real
//! components (the registry server the testkit starts on loopback, skopeo, moto for S3).
//!
//! Run one area with `cargo test --test it -- gc::` (or any part of a test's path).
//!
//! Adding an area: put the tests in `tests/it/AREA.rs` (start it with a `//!` paragraph saying
//! what it covers and against what), add `mod AREA;` below in alphabetical order, and run the
//! CLI through [`common::Cli`] (or its shorthands [`common::regsweep`] and
//! [`common::regsweep_with`]) so every test gets the same clean credential environment. A file
//! does not become its own test binary: `tests/*.rs` files outside `tests/it/` are not expected.
//!
//! Human output is checked by snapshot tests in `snapshots` (insta; the snapshot files are in
//! `tests/it/snapshots/`). Review a changed or new snapshot with `cargo insta review` or by
//! running with `INSTA_UPDATE=always` and reading the diff; CI runs with `INSTA_UPDATE=no`, so a
//! missing or different snapshot fails there instead of being written.

mod common;

mod auth;
mod azure;
mod client;
mod faults;
mod gc;
mod look;
mod ops;
mod policy;
mod retention;
mod snapshots;
mod storage;
mod throttling;
