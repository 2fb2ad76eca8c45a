//! regsweep: list, inspect and clean up images in Docker/OCI registries, and garbage-collect a
//! registry's storage.
//!
//! The library is organised around two sources of the same facts and a pure core:
//! - [`mod@reference`], [`digest`] and [`manifest`] are the shared vocabulary (names, tags,
//!   digests, manifests in every format);
//! - [`registry`] is the HTTP API v2 client (auth, pagination, retries, bounded concurrency);
//! - [`look`] builds the read-only views behind `repos`, `tags`, `inspect` and `du`;
//! - [`graph`] reads a repository's graph (tags, manifests, children, referrers, push times)
//!   over the API or from storage, [`policy`] decides per tag, [`plan`] turns decisions into
//!   safe ordered actions (pure), [`retention`] ties them together and [`apply`] carries a plan
//!   out, over the API or on storage;
//! - [`probe`] finds out what a registry allows before anything is done there;
//! - [`report`] renders `du` and plans as a self-contained HTML page with a treemap;
//! - [`progress`] is how long operations report progress;
//! - [`storage`] reads distribution's on-disk layout, and [`gc`] garbage-collects it;
//! - [`environment`] is the one place environment variables are read from.
//!
//! [`cli`] is the command line on top: [`cli::run`] parses arguments and runs a command in a
//! [`cli::Context`] (environment, clock, standard streams), so that tests and embedders call it
//! like `main` does. Nothing else here depends on it.

pub mod apply;
pub mod cli;
pub mod digest;
pub mod environment;
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod graph;
mod logging;
pub mod look;
pub mod manifest;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod report;
pub mod retention;
pub mod storage;
