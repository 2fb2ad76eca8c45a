//! Builds distribution storage trees in a temporary folder for unit tests, byte for byte as the
//! registry writes them (71-byte link files without newline, blobs under a 2-hex fan-out).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::manifest::media_type;

use super::{LAYOUT_PREFIX, Storage, paths};

pub(crate) struct Tree {
    dir: tempfile::TempDir,
}

/// Long ago enough for any grace period the tests use.
pub(crate) fn old() -> SystemTime {
    SystemTime::now() - Duration::from_secs(10 * 24 * 3600)
}

impl Tree {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        fs::create_dir_all(dir.path().join(LAYOUT_PREFIX)).expect("create the layout folder");
        Self { dir }
    }

    /// The rootdirectory.
    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn v2(&self) -> PathBuf {
        self.dir.path().join(LAYOUT_PREFIX)
    }

    pub(crate) fn storage(&self) -> Storage {
        Storage::local(self.dir.path())
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.v2().join(rel)
    }

    pub(crate) fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub(crate) fn write(&self, rel: &str, content: &[u8]) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    pub(crate) fn mkdir(&self, rel: &str) {
        fs::create_dir_all(self.path(rel)).unwrap();
    }

    /// Stores a blob and returns its digest.
    pub(crate) fn blob(&self, content: &[u8]) -> Digest {
        let digest = Digest::sha256(content);
        self.write(&paths::blob_data(&digest), content);
        digest
    }

    pub(crate) fn link_layer(&self, repo: &str, digest: &Digest) {
        self.write(
            &format!("{}/link", paths::layer_link_dir(repo, digest)),
            digest.as_str().as_bytes(),
        );
    }

    pub(crate) fn link_revision(&self, repo: &str, digest: &Digest) {
        self.write(
            &format!("{}/link", paths::revision_dir(repo, digest)),
            digest.as_str().as_bytes(),
        );
    }

    /// Points `tag` at `digest` and records it in the tag's history, as a manifest PUT does.
    pub(crate) fn tag(&self, repo: &str, tag: &str, digest: &Digest) {
        let dir = paths::tag_dir(repo, tag);
        self.write(
            &format!("{}/link", paths::tag_history_dir(repo, tag, digest)),
            digest.as_str().as_bytes(),
        );
        self.write(&format!("{dir}/current/link"), digest.as_str().as_bytes());
    }

    /// Stores and links a config and `layers` layers whose content derives from `seed`; returns
    /// the OCI manifest body (not stored).
    pub(crate) fn image_body(
        &self,
        repo: &str,
        seed: &str,
        layers: usize,
        subject: Option<&Digest>,
    ) -> String {
        let config = self.blob(format!("{{\"config\":\"{seed}\"}}").as_bytes());
        self.link_layer(repo, &config);
        let mut layer_json = Vec::new();
        for i in 0..layers {
            let content = format!("layer {seed} {i}");
            let digest = self.blob(content.as_bytes());
            self.link_layer(repo, &digest);
            layer_json.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{digest}","size":{}}}"#,
                content.len()
            ));
        }
        let subject = subject
            .map(|s| {
                format!(
                    r#","subject":{{"mediaType":"{}","digest":"{s}","size":1}}"#,
                    media_type::OCI_MANIFEST
                )
            })
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":20}},"layers":[{}]{subject}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            layer_json.join(",")
        )
    }

    /// Stores a manifest body as a blob and links it as a revision of `repo`.
    pub(crate) fn manifest(&self, repo: &str, body: &str) -> Digest {
        let digest = self.blob(body.as_bytes());
        self.link_revision(repo, &digest);
        digest
    }

    /// An image (config + layers) pushed to `repo`, optionally tagged.
    pub(crate) fn image(&self, repo: &str, tag: Option<&str>, seed: &str, layers: usize) -> Digest {
        let body = self.image_body(repo, seed, layers, None);
        let digest = self.manifest(repo, &body);
        if let Some(tag) = tag {
            self.tag(repo, tag, &digest);
        }
        digest
    }

    /// An OCI index over `children`, pushed to `repo`, optionally tagged.
    pub(crate) fn index(&self, repo: &str, tag: Option<&str>, children: &[&Digest]) -> Digest {
        let manifests: Vec<String> = children
            .iter()
            .enumerate()
            .map(|(i, d)| {
                format!(
                    r#"{{"mediaType":"{}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"arch{i}"}}}}"#,
                    media_type::OCI_MANIFEST
                )
            })
            .collect();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
            media_type::OCI_INDEX,
            manifests.join(",")
        );
        let digest = self.manifest(repo, &body);
        if let Some(tag) = tag {
            self.tag(repo, tag, &digest);
        }
        digest
    }

    /// Sets the modification time of every file and folder in the tree.
    pub(crate) fn age_all(&self, when: SystemTime) {
        fn walk(path: &Path, when: SystemTime) {
            if path.is_dir() {
                for entry in fs::read_dir(path).unwrap() {
                    walk(&entry.unwrap().path(), when);
                }
            }
            set_mtime(path, when);
        }
        walk(&self.v2(), when);
    }

    pub(crate) fn set_mtime(&self, rel: &str, when: SystemTime) {
        set_mtime(&self.path(rel), when);
    }
}

fn set_mtime(path: &Path, when: SystemTime) {
    let file = fs::File::open(path).unwrap();
    file.set_modified(when).unwrap();
}
