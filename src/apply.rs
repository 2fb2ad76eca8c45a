//! Carries out a [`Plan`] against the registry, and nothing more than the plan.
//!
//! Per repository, right before its deletions, every tag is resolved again and compared with the
//! plan (compare-and-delete): a tag that is new or moved protects what it points at (with index
//! children), and an action that would now delete something else than planned is skipped and
//! reported. With `--backup` each manifest is also fetched by digest and saved before deleting. Deletions run concurrently, phase by phase, so that referrers go before
//! their subject and indexes before their children.
//!
//! Removing one tag of a digest that other tags share needs care: deleting the digest deletes
//! them all. [`UntagMethod`] is probed once per registry, on throw-away tags, never on the
//! user's tags.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::digest::Digest;
use crate::look::Progress;
use crate::manifest::media_type;
use crate::plan::{Action, Plan, RepoPlan, Role, TagAction};
use crate::registry::{Client, RegistryError};

/// How a single tag is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UntagMethod {
    /// OCI 1.1 `DELETE /v2/<name>/manifests/<tag>`, verified to leave other tags alone.
    DeleteByTag,
    /// Point the tag at a unique placeholder manifest, then delete the placeholder by digest:
    /// that removes exactly this tag. The placeholder is never left behind.
    Placeholder,
}

/// Options for [`apply`].
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub concurrency: usize,
    /// Save every manifest before deleting it, for `restore`.
    pub backup: Option<PathBuf>,
}

/// One thing done or not done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub repository: String,
    /// `tag` or `@digest`.
    pub target: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub detail: String,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub deleted: Vec<Outcome>,
    pub untagged: Vec<Outcome>,
    pub skipped: Vec<Outcome>,
    pub failed: Vec<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untag_method: Option<UntagMethod>,
    /// Bytes the plan expected to free in repositories where every action succeeded.
    pub bytes_freed: u64,
}

/// Errors that stop the whole apply (as opposed to per-action failures, which are reported).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the plan is for registry `{plan}` but the client is connected to `{client}`")]
    WrongRegistry { plan: String, client: String },
    #[error("plan format {0} is not supported by this version of regsweep (expected 1)")]
    Format(u32),
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("cannot write the backup to {path}: {source}")]
    Backup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Executes a plan. Per-action failures are collected in the report; only setup errors fail.
pub async fn apply(
    client: &Client,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport, ApplyError> {
    if plan.format != crate::plan::PLAN_FORMAT {
        return Err(ApplyError::Format(plan.format));
    }
    if plan.registry != client.registry().host() {
        return Err(ApplyError::WrongRegistry {
            plan: plan.registry.clone(),
            client: client.registry().host().to_owned(),
        });
    }
    if let Some(dir) = &options.backup {
        std::fs::create_dir_all(dir).map_err(|source| ApplyError::Backup {
            path: dir.clone(),
            source,
        })?;
    }
    let untag = UntagProbe::default();
    let work: Vec<&RepoPlan> = plan
        .repositories
        .iter()
        .filter(|r| !r.actions.is_empty())
        .collect();
    if let Some(first) = work.first() {
        ensure_deletes_allowed(client, &first.repository).await?;
    }
    progress.add_total(work.iter().map(|r| r.actions.len() as u64).sum());
    let concurrency = options.concurrency.max(1);
    let reports: Vec<ApplyReport> = stream::iter(work)
        .map(|repo| apply_repository(client, repo, options, &untag, progress))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut total = ApplyReport {
        untag_method: untag.cell.get().and_then(|r| r.as_ref().ok()).copied(),
        ..ApplyReport::default()
    };
    for r in reports {
        total.deleted.extend(r.deleted);
        total.untagged.extend(r.untagged);
        total.skipped.extend(r.skipped);
        total.failed.extend(r.failed);
        total.bytes_freed += r.bytes_freed;
    }
    Ok(total)
}

/// The current state of a repository's tags, and what they protect.
struct Recheck {
    current: BTreeMap<String, Digest>,
    protected: HashSet<Digest>,
}

/// Resolves again every tag that must survive: kept tags, tags to untag, and tags that did not
/// exist when planning. Tags planned for deletion need no check beforehand: deleting a digest
/// removes only the tags that point at it, so one that moved elsewhere simply survives, and
/// [`report_survivors`] reports it afterwards.
async fn recheck(client: &Client, repo: &RepoPlan, concurrency: usize) -> Result<Recheck, RegistryError> {
    let name = repo.repository.as_str();
    let doomed: HashSet<&str> = repo
        .tags
        .iter()
        .filter(|t| t.action == TagAction::Delete)
        .map(|t| t.tag.as_str())
        .collect();
    let tags: Vec<String> = client
        .tags(name)
        .await?
        .into_iter()
        .filter(|t| !doomed.contains(t.as_str()))
        .collect();
    let heads: Vec<(String, Result<Digest, RegistryError>)> = stream::iter(tags)
        .map(|tag| async move {
            let head = client.manifest_head(name, &tag).await.map(|h| h.digest);
            (tag, head)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut current = BTreeMap::new();
    for (tag, head) in heads {
        match head {
            Ok(digest) => {
                current.insert(tag, digest);
            }
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err),
        }
    }
    // Tags that are new, or that now point elsewhere than planned, protect their content.
    let planned: HashMap<&str, &Digest> = repo.tags.iter().map(|t| (t.tag.as_str(), &t.digest)).collect();
    let mut roots: Vec<Digest> = Vec::new();
    for (tag, digest) in &current {
        match planned.get(tag.as_str()) {
            // Unchanged tags were accounted for by the plan.
            Some(planned_digest) if *planned_digest == digest => {}
            _ => roots.push(digest.clone()),
        }
    }
    // New and moved tags protect their manifests and index children (recursively).
    let mut protected: HashSet<Digest> = HashSet::new();
    while let Some(digest) = roots.pop() {
        if !protected.insert(digest.clone()) {
            continue;
        }
        let fetched = client.manifest(name, digest.as_str()).await?;
        roots.extend(fetched.manifest.manifests.iter().map(|c| c.digest.clone()));
    }
    Ok(Recheck { current, protected })
}

async fn apply_repository(
    client: &Client,
    repo: &RepoPlan,
    options: &ApplyOptions,
    untag: &UntagProbe,
    progress: &dyn Progress,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    let name = repo.repository.as_str();
    let outcome = |target: String, tags: Vec<String>, detail: String| Outcome {
        repository: name.to_owned(),
        target,
        tags,
        detail,
    };
    let concurrency = options.concurrency.max(1);
    let state = match recheck(client, repo, concurrency).await {
        Ok(state) => state,
        Err(err) => {
            report.failed.push(outcome(
                String::new(),
                Vec::new(),
                format!("re-reading the tags failed, nothing deleted: {err}"),
            ));
            progress.advance(repo.actions.len() as u64);
            return report;
        }
    };

    // Referrers of anything now protected (signatures of an image a tag moved onto) stay too.
    let mut protected = state.protected.clone();
    loop {
        let before = protected.len();
        for action in &repo.actions {
            if let Action::DeleteManifest {
                digest,
                role: Role::Referrer { subject },
                ..
            } = action
                && protected.contains(subject)
            {
                protected.insert(digest.clone());
            }
        }
        if protected.len() == before {
            break;
        }
    }

    // Decide per action whether it is still what was planned.
    let mut untags: Vec<(&String, &Digest)> = Vec::new();
    let mut phases: BTreeMap<u32, Vec<Deletion<'_>>> = BTreeMap::new();
    for action in &repo.actions {
        match action {
            Action::Untag { tag, digest } => match state.current.get(tag) {
                Some(now) if now == digest => untags.push((tag, digest)),
                Some(now) => {
                    report.skipped.push(outcome(
                        tag.clone(),
                        Vec::new(),
                        format!("changed since planning: now points at {}", now.short()),
                    ));
                    progress.advance(1);
                }
                None => {
                    report
                        .skipped
                        .push(outcome(tag.clone(), Vec::new(), "already gone".into()));
                    progress.advance(1);
                }
            },
            Action::DeleteManifest {
                digest,
                tags,
                phase,
                media_type,
                ..
            } => {
                let target = format!("@{digest}");
                let now_on_digest: Vec<&String> = state
                    .current
                    .iter()
                    .filter(|(_, d)| *d == digest)
                    .map(|(t, _)| t)
                    .collect();
                let unexpected: Vec<&String> = now_on_digest
                    .iter()
                    .filter(|t| !tags.contains(t))
                    .copied()
                    .collect();
                let skip = if protected.contains(digest) {
                    Some("changed since planning: a new or moved tag now needs it".to_owned())
                } else if !unexpected.is_empty() {
                    Some(format!(
                        "changed since planning: now also tagged {}",
                        join(&unexpected)
                    ))
                } else {
                    None
                };
                match skip {
                    Some(reason) => {
                        report.skipped.push(outcome(target, tags.clone(), reason));
                        progress.advance(1);
                    }
                    None => phases.entry(*phase).or_default().push(Deletion {
                        digest,
                        tags,
                        media_type,
                    }),
                }
            }
        }
    }

    // Untags first: they never remove a manifest.
    let untag_results: Vec<(String, Result<UntagMethod, String>)> = stream::iter(untags)
        .map(|(tag, digest)| async move {
            let result = untag_one(client, name, tag, digest, untag).await;
            progress.advance(1);
            (tag.clone(), result)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (tag, result) in untag_results {
        match result {
            Ok(method) => report
                .untagged
                .push(outcome(tag, Vec::new(), format!("{method:?}"))),
            Err(err) => report.failed.push(outcome(tag, Vec::new(), err)),
        }
    }

    let mut all_done = true;
    for (_, actions) in phases {
        let results: Vec<(&Digest, &Vec<String>, Result<String, String>)> = stream::iter(actions)
            .map(
                |Deletion {
                     digest,
                     tags,
                     media_type,
                 }| async move {
                    let result =
                        delete_one(client, name, digest, tags, media_type, options.backup.as_deref()).await;
                    progress.advance(1);
                    (digest, tags, result)
                },
            )
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut phase_failed = false;
        for (digest, tags, result) in results {
            match result {
                Ok(detail) => report
                    .deleted
                    .push(outcome(format!("@{digest}"), tags.clone(), detail)),
                Err(err) => {
                    phase_failed = true;
                    report
                        .failed
                        .push(outcome(format!("@{digest}"), tags.clone(), err));
                }
            }
        }
        if phase_failed {
            // Later phases hold what the failed manifests refer to: deleting them now could
            // leave a manifest pointing at something missing.
            all_done = false;
            break;
        }
    }
    if !report.deleted.is_empty()
        && let Err(err) = report_survivors(client, name, &mut report).await
    {
        report.failed.push(outcome(
            String::new(),
            Vec::new(),
            format!("re-reading the tags after deleting failed: {err}"),
        ));
    }
    if all_done && report.failed.is_empty() && report.skipped.is_empty() {
        report.bytes_freed = repo.bytes_freed;
    }
    report
}

/// Tags that were to go with a deleted manifest but still exist had moved to another digest
/// since planning: they were not deleted, and are reported as skipped.
async fn report_survivors(
    client: &Client,
    repository: &str,
    report: &mut ApplyReport,
) -> Result<(), RegistryError> {
    let remaining: HashSet<String> = client.tags(repository).await?.into_iter().collect();
    let mut skipped = Vec::new();
    for deleted in &mut report.deleted {
        let (survived, gone): (Vec<String>, Vec<String>) =
            deleted.tags.drain(..).partition(|t| remaining.contains(t));
        deleted.tags = gone;
        skipped.extend(survived.into_iter().map(|tag| Outcome {
            repository: repository.to_owned(),
            target: tag,
            tags: Vec::new(),
            detail: format!(
                "changed since planning: it no longer pointed at {}, so it was not deleted",
                deleted.target
            ),
        }));
    }
    report.skipped.extend(skipped);
    Ok(())
}

/// A manifest deletion that passed the re-check.
struct Deletion<'a> {
    digest: &'a Digest,
    tags: &'a Vec<String>,
    media_type: &'a str,
}

fn join(tags: &[&String]) -> String {
    tags.iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Backs the manifest up if asked (fetched by digest, so the bytes are verified) and deletes it.
/// The compare step is the repository's re-check, which ran right before its deletions.
async fn delete_one(
    client: &Client,
    repository: &str,
    digest: &Digest,
    tags: &[String],
    planned_media_type: &str,
    backup: Option<&Path>,
) -> Result<String, String> {
    if let Some(dir) = backup {
        let fetched = match client.manifest(repository, digest.as_str()).await {
            Ok(f) => f,
            Err(err) if err.is_not_found() => return Ok("already gone".into()),
            Err(err) => return Err(err.to_string()),
        };
        let media_type = if fetched.media_type.is_empty() {
            planned_media_type
        } else {
            &fetched.media_type
        };
        write_backup(dir, repository, digest, media_type, tags, &fetched.body)
            .map_err(|e| format!("backup failed, not deleted: {e}"))?;
    }
    match client.delete_manifest(repository, digest).await {
        Ok(()) => Ok("deleted".into()),
        Err(err) if err.is_not_found() => Ok("already gone".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// One manifest saved by `--backup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupEntry {
    pub repository: String,
    pub digest: Digest,
    pub media_type: String,
    pub tags: Vec<String>,
    /// The manifest bytes, as a JSON string (manifests are UTF-8 JSON).
    pub manifest: String,
}

fn write_backup(
    dir: &Path,
    repository: &str,
    digest: &Digest,
    media_type: &str,
    tags: &[String],
    body: &[u8],
) -> std::io::Result<()> {
    let entry = BackupEntry {
        repository: repository.to_owned(),
        digest: digest.clone(),
        media_type: media_type.to_owned(),
        tags: tags.to_vec(),
        manifest: String::from_utf8(body.to_vec())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
    };
    let file = dir.join(format!("{}-{}.json", digest.algorithm(), digest.encoded()));
    let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
    // Written to a temporary name and renamed, so a crash never leaves half an entry.
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, file)
}

/// Reads every backup entry in `dir`, in the order they must be restored (children and subjects
/// before what refers to them: the reverse of deletion).
pub fn read_backup(dir: &Path) -> std::io::Result<Vec<BackupEntry>> {
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let path = item?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = std::fs::read(&path)?;
            let entry: BackupEntry = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            entries.push(entry);
        }
    }
    // Images before indexes; untagged (children, referrers) before tagged: a registry may refuse
    // an index whose children are missing.
    entries.sort_by_key(|e| {
        (
            media_type::is_index(&e.media_type),
            !e.tags.is_empty(),
            e.digest.clone(),
        )
    });
    Ok(entries)
}

/// Puts backed-up manifests back (by digest, then under each tag). Works as long as the
/// registry's garbage collection has not removed their blobs.
pub async fn restore(client: &Client, entries: &[BackupEntry]) -> Vec<Result<String, String>> {
    let mut results = Vec::new();
    for entry in entries {
        let body = entry.manifest.as_bytes().to_vec();
        let mut outcome = client
            .put_manifest(
                &entry.repository,
                entry.digest.as_str(),
                &entry.media_type,
                body.clone(),
            )
            .await
            .map(|_| format!("{}@{}", entry.repository, entry.digest))
            .map_err(|e| format!("{}@{}: {e}", entry.repository, entry.digest));
        if outcome.is_ok() {
            for tag in &entry.tags {
                if let Err(e) = client
                    .put_manifest(&entry.repository, tag, &entry.media_type, body.clone())
                    .await
                {
                    outcome = Err(format!("{}:{tag}: {e}", entry.repository));
                    break;
                }
            }
        }
        results.push(outcome);
    }
    results
}

/// The untag method, probed at most once per apply.
#[derive(Default)]
pub struct UntagProbe {
    cell: OnceCell<Result<UntagMethod, String>>,
}

impl UntagProbe {
    pub async fn method(&self, client: &Client, repository: &str) -> Result<UntagMethod, String> {
        self.cell
            .get_or_init(|| async { probe_untag(client, repository).await.map_err(|e| e.to_string()) })
            .await
            .clone()
    }
}

async fn untag_one(
    client: &Client,
    repository: &str,
    tag: &str,
    digest: &Digest,
    probe: &UntagProbe,
) -> Result<UntagMethod, String> {
    let method = probe.method(client, repository).await?;
    // Compare right before acting: the tag must still point at the planned digest.
    match client.manifest_head(repository, tag).await {
        Ok(head) if head.digest == *digest => {}
        Ok(head) => {
            return Err(format!(
                "skipped: moved to {} just before untagging",
                head.digest.short()
            ));
        }
        Err(err) if err.is_not_found() => return Ok(method),
        Err(err) => return Err(err.to_string()),
    }
    remove_tag(client, repository, tag, method)
        .await
        .map_err(|e| e.to_string())?;
    Ok(method)
}

/// Removes one tag with the given method.
pub async fn remove_tag(
    client: &Client,
    repository: &str,
    tag: &str,
    method: UntagMethod,
) -> Result<(), RegistryError> {
    match method {
        UntagMethod::DeleteByTag => client.delete_tag(repository, tag).await,
        UntagMethod::Placeholder => {
            let placeholder = push_placeholder(client, repository, tag).await?;
            client.delete_manifest(repository, &placeholder).await
        }
    }
}

/// Pushes a unique, empty image to `tag` and returns its digest.
async fn push_placeholder(client: &Client, repository: &str, tag: &str) -> Result<Digest, RegistryError> {
    let config = client.upload_blob(repository, b"{}".to_vec()).await?;
    let nonce = format!("{}-{:016x}", jiff::Timestamp::now(), fastrand::u64(..));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_EMPTY, "digest": config, "size": 2},
        "layers": [],
        "annotations": {"dev.regsweep.placeholder": format!("untag {tag} {nonce}")},
    });
    let body = serde_json::to_vec(&manifest).expect("a JSON value serializes");
    client
        .put_manifest(repository, tag, media_type::OCI_MANIFEST, body)
        .await
}

/// Finds out how this registry removes a single tag, using two throw-away tags on one
/// placeholder: if deleting the first by tag works and the second survives, tag deletion is
/// safe; some registries (ACR) delete the image with all its tags instead, and distribution 2.x
/// refuses tag deletion (400).
async fn probe_untag(client: &Client, repository: &str) -> Result<UntagMethod, RegistryError> {
    // Nothing is pushed where it could not be deleted again.
    ensure_deletes_allowed(client, repository).await?;
    let id = format!("{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
    let (first, second) = (format!("regsweep-probe-{id}-a"), format!("regsweep-probe-{id}-b"));
    let placeholder = push_placeholder(client, repository, &first).await?;
    let body = client.manifest(repository, placeholder.as_str()).await?.body;
    client
        .put_manifest(repository, &second, media_type::OCI_MANIFEST, body)
        .await?;
    let method = match client.delete_tag(repository, &first).await {
        Ok(()) => match client.manifest_head(repository, &second).await {
            Ok(_) => UntagMethod::DeleteByTag,
            Err(err) if err.is_not_found() => UntagMethod::Placeholder,
            Err(err) => return Err(err),
        },
        Err(
            RegistryError::Status { .. }
            | RegistryError::MethodNotAllowed { .. }
            | RegistryError::NotFound { .. },
        ) => UntagMethod::Placeholder,
        Err(err) => return Err(err),
    };
    // Remove the placeholder with whatever tags are left on it.
    match client.delete_manifest(repository, &placeholder).await {
        Ok(()) => {}
        Err(err) if err.is_not_found() => {}
        Err(err) => return Err(err),
    }
    tracing::info!(?method, "probed how the registry removes a single tag");
    Ok(method)
}

/// Checks that the registry accepts manifest deletes, with a DELETE of a digest that cannot
/// exist: 404 means deletes are enabled; 405 (deletes disabled, or read-only) is returned as the
/// error, whose message says which setting to change.
pub async fn ensure_deletes_allowed(client: &Client, repository: &str) -> Result<(), RegistryError> {
    let nothing = Digest::sha256(format!("regsweep-probe-{}", fastrand::u64(..)).as_bytes());
    match client.delete_manifest(repository, &nothing).await {
        Ok(()) => Ok(()),
        Err(err) if err.is_not_found() => Ok(()),
        Err(err) => Err(err),
    }
}
