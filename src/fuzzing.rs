//! Entry points for the fuzz targets in `fuzz/`, shared with the corpus replay test below, so
//! stable builds run every saved input as an ordinary unit test.
//!
//! Each function takes arbitrary bytes, feeds them to one parser that reads untrusted input
//! (command-line references, policy files, manifests and plan files from disk or a registry,
//! `WWW-Authenticate` and `Link` headers from a server) and panics only when a property that
//! must hold for every input is broken. A parser returning an error is the expected outcome for
//! most inputs.

use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::plan::Plan;
use crate::policy::Policy;
use crate::reference::{ImageRef, Location, Repository, Tag};
use crate::registry::{auth, link};

/// One fuzz entry point: arbitrary bytes in, a panic only when a property is broken.
pub type Target = fn(&[u8]);

/// The fuzz targets by name: the folder names under `fuzz/corpus/` and `fuzz/fuzz_targets/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("reference", reference),
    ("policy", policy),
    ("manifest", manifest),
    ("plan", plan),
    ("www_authenticate", www_authenticate),
    ("link", link_header),
];

/// Image references, locations, repository names, tags and digests: whatever parses prints back
/// to the same value.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(digest) = Digest::parse(text) {
        assert_eq!(Digest::parse(digest.as_str()).as_ref(), Ok(&digest));
        // Only registered algorithms name referrers: a tag such as `sha256-<hex>.x-abc.sig` (what
        // the digest `sha256-<hex>.x:abc` would give) names the subject `sha256:<hex>`.
        let tag = format!("{}.sig", digest.referrers_tag());
        let referrer = Digest::from_referrer_tag(&tag);
        if matches!(digest.algorithm(), "sha256" | "sha512") {
            assert_eq!(referrer, Some((digest.clone(), ".sig")));
        }
    }
    if let Ok(repository) = Repository::parse(text) {
        assert_eq!(
            Repository::parse(&repository.to_string()).as_ref(),
            Ok(&repository)
        );
    }
    if let Ok(tag) = Tag::parse(text) {
        assert_eq!(Tag::parse(&tag.to_string()).as_ref(), Ok(&tag));
    }
    let _ = ImageRef::parse(text);
    let _ = Location::parse(text);
    let _ = Digest::from_referrer_tag(text);
}

/// Policy files: parsing never panics, and a policy that parses can be printed for debugging.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::from_yaml(text, "fuzz.yaml") {
        let _ = format!("{policy:?}");
    }
}

/// Manifests of every format, with and without a content type: whatever parses lists its blobs
/// and references without panicking.
pub fn manifest(data: &[u8]) {
    for content_type in [
        None,
        Some("application/vnd.oci.image.manifest.v1+json"),
        Some("application/vnd.oci.image.index.v1+json"),
        Some("application/vnd.docker.distribution.manifest.v2+json"),
        Some("application/vnd.docker.distribution.manifest.list.v2+json"),
        Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    ] {
        if let Ok(parsed) = Manifest::parse(data, content_type) {
            let _ = parsed.blobs().count();
            let _ = parsed.references().count();
            let _ = parsed.effective_artifact_type();
        }
    }
}

/// Plan files (`plan -o`): what parses serialises and parses back to the same plan.
pub fn plan(data: &[u8]) {
    if let Ok(plan) = serde_json::from_slice::<Plan>(data) {
        let again = serde_json::to_vec(&plan).expect("a parsed plan serialises");
        let reparsed: Plan = serde_json::from_slice(&again).expect("a serialised plan parses");
        assert_eq!(reparsed, plan);
    }
}

/// `WWW-Authenticate` header values.
pub fn www_authenticate(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = auth::parse_challenges(text);
    }
}

/// `Link` header values, one per line.
pub fn link_header(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = link::next_link(text.lines());
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::TARGETS;

    /// Every saved input of every fuzz target runs through its entry point: inputs that once
    /// crashed (and the seeds) stay fixed on stable toolchains, without cargo-fuzz.
    #[test]
    fn corpus_replays_without_panics() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus");
        let mut replayed = 0;
        for (name, target) in TARGETS {
            let folder = corpus.join(name);
            let entries = std::fs::read_dir(&folder)
                .unwrap_or_else(|e| panic!("corpus folder {} is missing: {e}", folder.display()));
            let mut count = 0;
            for entry in entries {
                let path = entry.expect("corpus entries can be listed").path();
                let data = std::fs::read(&path).expect("corpus files can be read");
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(
                    outcome.is_ok(),
                    "fuzz target {name} panicked on {}",
                    path.display()
                );
                count += 1;
            }
            assert!(
                count > 0,
                "fuzz target {name} has no corpus in {}",
                folder.display()
            );
            replayed += count;
        }
        assert!(replayed >= TARGETS.len());
    }

    #[test]
    fn every_fuzz_target_has_a_source_file() {
        let targets = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join("fuzz_targets");
        for (name, _) in TARGETS {
            let source = targets.join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&source)
                .unwrap_or_else(|e| panic!("{} is missing: {e}", source.display()));
            assert!(text.contains(&format!("regsweep::fuzzing::{}", entry_name(name))));
        }
    }

    fn entry_name(target: &str) -> &str {
        if target == "link" { "link_header" } else { target }
    }
}
