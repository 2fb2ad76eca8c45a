//! Test harness for regsweep: runs the real registry server (Debian's `docker-registry`,
//! distribution 2.8.2) on a free loopback port and pushes fixtures into it through the plain HTTP
//! API, with a client that shares no code with regsweep.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use regsweep_testkit::{Format, ImageSpec, RegistryOptions, TestRegistry};
//! let reg = TestRegistry::start(RegistryOptions::default()).await?;
//! let p = reg.client();
//! let img = p.push_image("app", Some("v1"), &ImageSpec::seeded(1)).await?;
//! let idx = p.push_index("app", Some("v2"), Format::Oci, &[("linux", "amd64"), ("linux", "arm64")], 2).await?;
//! p.verify_pullable("app", "v2").await?;
//! # let _ = (img, idx); Ok(()) }
//! ```
//!
//! Each registry lives in its own directory under `std::env::temp_dir()` (`$TMPDIR`). The
//! registry writes and deletes many tiny files (about a dozen per pushed image); on a disk where
//! deletes are slow (ext4 mounted with `discard`) run tests with `TMPDIR=/dev/shm`.
//!
//! Modules: [`config`] (options and config files), [`process`] (the registry process),
//! [`image`] (pure content construction), [`push`] (HTTP client), [`fixtures`] (bulk and demo
//! content), [`skopeo`] (second-client checks), [`token`] (a token server for `auth: token`
//! registries), [`loopback`] (a recording HTTP server: the token server's base, and canaries
//! that prove credentials go nowhere else), [`faults`] (a seeded fault-injecting proxy in front
//! of a registry), [`moto`] and [`azurite`] (S3 and Azure Blob servers on loopback).

pub mod azurite;
pub mod config;
pub mod faults;
pub mod fixtures;
pub mod image;
pub mod loopback;
pub mod moto;
pub mod process;
pub mod push;
pub mod skopeo;
pub mod token;

pub use azurite::Azurite;
pub use config::{RegistryOptions, S3Storage, TokenAuth};
pub use faults::{FaultCounts, FaultKind, FaultOptions, FaultProxy};
pub use fixtures::{FillReport, FillSpec, SampleReport, TagRecord, fill, sample};
pub use image::{
    Blob, BlobRef, BuiltImage, Descriptor, Format, ImageSpec, ManifestDoc, Platform, days_ago, media,
    rfc3339_utc, sha256_digest,
};
pub use loopback::{CannedResponse, LoopbackServer, RecordedRequest};
pub use moto::MotoServer;
pub use process::{TestRegistry, copy_tree};
pub use push::{PushedImage, PushedIndex, Pusher};
pub use skopeo::skopeo_available;
pub use token::{Grant, IssuedToken, TokenField, TokenServer, TokenServerOptions, TokenUser};

/// Re-exported so tests can compare statuses without depending on reqwest themselves.
pub use reqwest::StatusCode;
