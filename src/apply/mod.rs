//! Carries out a [`Plan`] against the registry, and nothing more than the plan.
//!
//! Per repository, right before its deletions, the repository graph is read again and the plan
//! is [reviewed](review::review) against it: what a kept, new or moved tag needs is never
//! deleted, whatever the plan file says, and what changed since planning is skipped and
//! reported. With `--backup` every manifest deleted and every tag removed is saved first
//! ([`backup`]). Deletions run concurrently, phase by phase, so that referrers go before their
//! subject and indexes before their children. How a tag or manifest is removed is the
//! registry's [`Remover`](crate::registry::delete::Remover), probed once per run.

pub mod backup;
pub mod review;
pub mod storage;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::digest::Digest;
use crate::graph::{RepoGraph, ScanOptions, add_manifests_if_present, scan_assuming};
use crate::plan::{Plan, RepoPlan, TagAction};
use crate::progress::{NoProgress, Progress};
use crate::reference::{Repository, Tag};
pub use crate::registry::delete::UntagMethod;
use crate::registry::delete::{DeleteByTag, MethodProbe, Remover, UntagError, ensure_deletes_allowed};
use crate::registry::{Client, RegistryError};
pub use backup::{BackupEntry, read_backup, restore};
pub use review::{ErrorCode, ItemError};
pub use storage::{apply_on_storage, restore_on_storage};

/// Options for [`apply`].
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub concurrency: usize,
    /// Save every manifest before deleting it, and every removed tag, for `restore`.
    pub backup: Option<PathBuf>,
    /// Delete manifests even when kept content needs them (`rm --force`; never from a file).
    pub force: bool,
    /// On storage: afterwards, remove repositories of the plan left without tags and manifests
    /// (they would stay in the catalog forever otherwise).
    pub remove_empty_repositories: bool,
}

/// One thing done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub repository: String,
    /// `tag` or `@digest`.
    pub target: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// What was done, in words.
    pub detail: String,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub deleted: Vec<Done>,
    pub untagged: Vec<Done>,
    /// Tags left on regsweep's placeholders by an interrupted run, removed now.
    pub cleaned: Vec<Done>,
    /// Not done because it changed since planning or was already gone: expected, not an error.
    pub skipped: Vec<ItemError>,
    /// Not done because it is not safe (kept content needs it), whatever the plan says.
    pub refused: Vec<ItemError>,
    pub failed: Vec<ItemError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untag_method: Option<UntagMethod>,
    /// Bytes reclaimable by the registry's garbage collection after what was actually deleted
    /// (at most what the plan expected).
    pub bytes_freed: u64,
    /// Repositories removed because nothing was left in them (`--remove-empty-repositories`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_repositories: Vec<String>,
}

impl ApplyReport {
    /// Adds another report (of other repositories) to this one.
    pub fn merge(&mut self, other: ApplyReport) {
        self.deleted.extend(other.deleted);
        self.untagged.extend(other.untagged);
        self.cleaned.extend(other.cleaned);
        self.skipped.extend(other.skipped);
        self.refused.extend(other.refused);
        self.failed.extend(other.failed);
        self.untag_method = self.untag_method.or(other.untag_method);
        self.bytes_freed += other.bytes_freed;
        self.removed_repositories.extend(other.removed_repositories);
    }

    /// Files an item error as skipped (expected: changed since planning or already gone) or
    /// failed.
    pub fn file(&mut self, err: ItemError) {
        match err.code {
            ErrorCode::AlreadyGone | ErrorCode::ChangedSincePlanning => self.skipped.push(err),
            _ => self.failed.push(err),
        }
    }

    /// Records one phase of manifest deletions (digest and outcome each) into the report and
    /// `done`; `true` when one failed for another reason than being gone already, so that later
    /// phases, which hold what the failed manifests refer to, must not run.
    pub fn record_phase(
        &mut self,
        results: Vec<(Digest, Result<Done, ItemError>)>,
        done: &mut HashSet<Digest>,
    ) -> bool {
        let mut failed = false;
        for (digest, result) in results {
            match result {
                Ok(deleted) => {
                    done.insert(digest);
                    self.deleted.push(deleted);
                }
                Err(err) => {
                    failed |= err.code != ErrorCode::AlreadyGone;
                    self.file(err);
                }
            }
        }
        failed
    }

    /// Whether anything was removed (the registry's caches may then be stale).
    pub fn changed_anything(&self) -> bool {
        !(self.deleted.is_empty()
            && self.untagged.is_empty()
            && self.cleaned.is_empty()
            && self.removed_repositories.is_empty())
    }

    /// Whether everything asked for was done or deliberately skipped.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.refused.is_empty()
    }
}

/// Errors that stop the whole apply (as opposed to per-action failures, which are reported).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the plan is for registry `{plan}` but the client is connected to `{client}`")]
    WrongRegistry { plan: String, client: String },
    #[error("plan format {0} is not supported by this version of regsweep (expected 1)")]
    Format(u32),
    #[error("the plan names an invalid repository: {0}; nothing was done")]
    BadRepository(crate::reference::ReferenceError),
    #[error("the plan lists repository `{0}` twice; nothing was done")]
    DuplicateRepository(String),
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Storage(crate::storage::StorageError),
    #[error("cannot write the backup to {path}: {source}")]
    Backup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks what a plan file could get wrong before anything is sent: format, registry, and
/// repository names (they go into URL paths; `a/../b` would act on another repository).
pub fn validate(plan: &Plan, registry: &str) -> Result<(), ApplyError> {
    if plan.format == crate::plan::PLAN_FORMAT && plan.registry != registry {
        return Err(ApplyError::WrongRegistry {
            plan: plan.registry.clone(),
            client: registry.to_owned(),
        });
    }
    validate_contents(plan)
}

/// Checks a plan's format and repository names, wherever it is carried out. A plan applied on
/// storage may have been made over the API or on another path to the same storage: what it
/// deletes is reviewed against the storage itself, so its `registry` is not compared.
pub fn validate_contents(plan: &Plan) -> Result<(), ApplyError> {
    if plan.format != crate::plan::PLAN_FORMAT {
        return Err(ApplyError::Format(plan.format));
    }
    let mut seen = HashSet::new();
    for repo in &plan.repositories {
        Repository::parse(&repo.repository).map_err(ApplyError::BadRepository)?;
        if !seen.insert(repo.repository.as_str()) {
            return Err(ApplyError::DuplicateRepository(repo.repository.clone()));
        }
    }
    Ok(())
}

/// Executes a plan. Per-action failures are collected in the report; only setup errors fail.
pub async fn apply(
    client: &Client,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport, ApplyError> {
    validate(plan, client.registry().host())?;
    if let Some(dir) = options.backup.clone() {
        // On the blocking pool like every other backup write: a slow or network disk must not
        // hold up a runtime thread.
        let created = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || std::fs::create_dir_all(dir)
        })
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
        created.map_err(|source| ApplyError::Backup { path: dir, source })?;
    }
    let methods = MethodProbe::default();
    let work: Vec<(Repository, &RepoPlan)> = plan
        .repositories
        .iter()
        .filter(|r| !r.actions.is_empty())
        .map(|r| {
            Ok((
                Repository::parse(&r.repository).map_err(ApplyError::BadRepository)?,
                r,
            ))
        })
        .collect::<Result<_, ApplyError>>()?;
    if let Some((first, _)) = work.first() {
        ensure_deletes_allowed(client, first).await?;
    }
    progress.add_total(work.iter().map(|(_, r)| r.actions.len() as u64).sum());
    let concurrency = options.concurrency.max(1);
    let reports: Vec<ApplyReport> = stream::iter(&work)
        .map(|(repository, repo)| apply_repository(client, repository, repo, options, &methods, progress))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut total = ApplyReport {
        untag_method: methods.method(),
        ..ApplyReport::default()
    };
    for r in reports {
        total.merge(r);
    }
    Ok(total)
}

/// Reads the repository again: every tag that is to survive (kept, untagged only, new or
/// moved) with what it needs, and the untagged manifests the plan deletes (children and
/// referrers, whose `subject` must be checked); returns the graph and the planned manifests that
/// no longer exist. Tags the plan deletes with their manifest are taken to still point at the
/// planned digest without reading them (what they point at is about to be deleted; if one moved
/// meanwhile, deleting the planned digest leaves it alone and [`report_survivors`] says so).
async fn read_live(
    client: &Client,
    repository: &Repository,
    repo: &RepoPlan,
    concurrency: usize,
) -> (RepoGraph, Vec<Digest>) {
    let options = ScanOptions {
        with_configs: false,
        concurrency,
        skip_referrers_api: false,
    };
    let planned = repo.deleted_manifests();
    let doomed: HashMap<String, Digest> = repo
        .tags
        .iter()
        .filter(|t| t.action == TagAction::Delete && planned.contains(&t.digest))
        .map(|t| (t.tag.clone(), t.digest.clone()))
        .collect();
    let mut live = scan_assuming(client, repository, options, &doomed, &NoProgress).await;
    let tagged: HashSet<&Digest> = live.tags.values().collect();
    let unread: Vec<Digest> = planned
        .into_iter()
        .filter(|d| !tagged.contains(d))
        .cloned()
        .collect();
    let gone = add_manifests_if_present(client, repository, &mut live, unread, concurrency).await;
    (live, gone)
}

async fn apply_repository(
    client: &Client,
    repository: &Repository,
    repo: &RepoPlan,
    options: &ApplyOptions,
    methods: &MethodProbe,
    progress: &dyn Progress,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    let name = repo.repository.as_str();
    let concurrency = options.concurrency.max(1);
    let (mut live, gone) = read_live(client, repository, repo, concurrency).await;
    if !live.errors.is_empty() {
        report.failed.push(ItemError {
            repository: name.to_owned(),
            target: String::new(),
            tags: Vec::new(),
            code: ErrorCode::ReadFailed,
            detail: format!(
                "reading the repository again failed, nothing deleted in it: {}",
                live.errors.join("; ")
            ),
        });
        progress.advance(repo.actions.len() as u64);
        return report;
    }
    let review = review::review(repo, &live, &gone, options.force);
    let accepted: Vec<Digest> = review
        .phases
        .values()
        .flatten()
        .map(|d| d.digest.clone())
        .collect();
    // When only part of the plan runs, the plan's bytes freed no longer hold: read what is to be
    // deleted, so that what the deleted part frees can be computed.
    let partial = !review.skipped.is_empty() || !review.refused.is_empty();
    if partial {
        let unread: Vec<Digest> = accepted
            .iter()
            .filter(|d| !live.nodes.contains_key(*d))
            .cloned()
            .collect();
        add_manifests_if_present(client, repository, &mut live, unread, concurrency).await;
    }
    report.skipped = review.skipped;
    report.refused = review.refused;
    let step = Step {
        client,
        repository,
        name,
        backup: options.backup.as_deref(),
        methods,
    };

    // Leftovers and untags first: they never remove a manifest.
    for (tag, placeholder) in &review.placeholders {
        step.record(&mut report, step.remove_placeholder(tag, placeholder).await);
    }
    let untags: Vec<Result<Done, ItemError>> = stream::iter(&review.untags)
        .map(|(tag, digest)| async {
            let result = step.untag(tag, digest).await;
            progress.advance(1);
            result
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for result in untags {
        match result {
            Ok(done) => report.untagged.push(done),
            Err(err) => report.file(err),
        }
    }

    let mut done: HashSet<Digest> = HashSet::new();
    let mut phases = review.phases.into_values();
    for deletions in phases.by_ref() {
        let results: Vec<(Digest, Result<Done, ItemError>)> = stream::iter(&deletions)
            .map(|deletion| async {
                let result = step.delete(deletion).await;
                progress.advance(1);
                (deletion.digest.clone(), result)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let phase_failed = report.record_phase(results, &mut done);
        if phase_failed {
            // Later phases hold what the failed manifests refer to: deleting them now could
            // leave a manifest pointing at something missing.
            break;
        }
    }
    for deletion in phases.flatten() {
        report.failed.push(ItemError {
            repository: name.to_owned(),
            target: format!("@{}", deletion.digest),
            tags: deletion.tags,
            code: ErrorCode::NotAttempted,
            detail: "not attempted: deleting a manifest that refers to it failed".into(),
        });
    }
    if !report.deleted.is_empty()
        && let Err(err) = report_survivors(client, repository, &mut report).await
    {
        report.failed.push(ItemError {
            repository: name.to_owned(),
            target: String::new(),
            tags: Vec::new(),
            code: ErrorCode::Registry,
            detail: format!("re-reading the tags after deleting failed: {err}"),
        });
    }
    report.bytes_freed = if !partial && done.len() == accepted.len() {
        repo.bytes_freed
    } else {
        review::freed_bytes(&live, &done).min(repo.bytes_freed)
    };
    report
}

/// What one repository's actions share.
struct Step<'a> {
    client: &'a Client,
    repository: &'a Repository,
    name: &'a str,
    backup: Option<&'a Path>,
    methods: &'a MethodProbe,
}

impl Step<'_> {
    fn error(&self, target: String, tags: Vec<String>, code: ErrorCode, detail: String) -> ItemError {
        ItemError::new(self.name, target, tags, code, detail)
    }

    fn done(&self, target: String, tags: Vec<String>, detail: String) -> Done {
        Done {
            repository: self.name.to_owned(),
            target,
            tags,
            detail,
        }
    }

    fn record(&self, report: &mut ApplyReport, result: Result<Done, ItemError>) {
        match result {
            Ok(done) => report.cleaned.push(done),
            Err(err) => report.file(err),
        }
    }

    fn registry_error(&self, target: String, tags: Vec<String>, err: RegistryError) -> ItemError {
        if err.is_not_found() {
            self.error(target, tags, ErrorCode::AlreadyGone, "already gone".into())
        } else {
            self.error(target, tags, ErrorCode::Registry, err.to_string())
        }
    }

    /// The remover for deletions by digest: the probed one when there is one (deleting by
    /// digest needs no probe, and is the same for every method known).
    fn deleter(&self) -> &dyn Remover {
        self.methods.probed().unwrap_or(&DeleteByTag)
    }

    async fn remove_placeholder(&self, tag: &str, placeholder: &Digest) -> Result<Done, ItemError> {
        self.deleter()
            .delete_manifest(self.client, self.repository, placeholder)
            .await
            .map_err(|e| self.registry_error(tag.to_owned(), Vec::new(), e))?;
        Ok(self.done(
            tag.to_owned(),
            Vec::new(),
            format!(
                "removed regsweep's placeholder {} left by an interrupted run; the tag is gone, as intended",
                placeholder.short()
            ),
        ))
    }

    /// Compare-and-untag: the tag must still point at the planned digest right before.
    async fn untag(&self, tag: &str, digest: &Digest) -> Result<Done, ItemError> {
        let target = || tag.to_owned();
        // Plan files are written by hand too: a tag that is not one never reaches a URL path.
        let tag_name = Tag::parse(tag).map_err(|e| {
            self.error(
                target(),
                Vec::new(),
                ErrorCode::NotAttempted,
                format!("not attempted: the plan names an invalid tag: {e}"),
            )
        })?;
        let remover = self
            .methods
            .remover(self.client, self.repository)
            .await
            .map_err(|e| {
                self.error(
                    target(),
                    Vec::new(),
                    ErrorCode::NoUntagMethod,
                    format!("cannot find out how to remove a single tag: {e}"),
                )
            })?;
        match self.client.manifest_head(self.repository, &tag_name).await {
            Ok(head) if head.digest == *digest => {}
            Ok(head) => {
                return Err(self.error(
                    target(),
                    Vec::new(),
                    ErrorCode::ChangedSincePlanning,
                    format!(
                        "changed since planning: moved to {} just before untagging",
                        head.digest.short()
                    ),
                ));
            }
            Err(err) => return Err(self.registry_error(target(), Vec::new(), err)),
        }
        if let Some(dir) = self.backup {
            self.save(dir, digest, &[tag.to_owned()], Some(tag))
                .await
                .map_err(|e| self.error(target(), Vec::new(), ErrorCode::BackupFailed, e))?;
        }
        match remover
            .untag(self.client, self.repository, &tag_name, digest)
            .await
        {
            Ok(()) => Ok(self.done(
                target(),
                Vec::new(),
                format!("untagged by {}", remover.method().name()),
            )),
            Err(UntagError::Registry(err)) => Err(self.registry_error(target(), Vec::new(), err)),
            Err(err @ UntagError::Interrupted { .. }) => {
                Err(self.error(target(), Vec::new(), ErrorCode::UntagInterrupted, err.to_string()))
            }
            Err(err @ UntagError::Moved { .. }) => Err(self.error(
                target(),
                Vec::new(),
                ErrorCode::ChangedSincePlanning,
                err.to_string(),
            )),
        }
    }

    /// Backs the manifest up if asked and deletes it. The compare step is the repository's
    /// review, which ran right before its deletions.
    async fn delete(&self, deletion: &review::Deletion) -> Result<Done, ItemError> {
        let target = format!("@{}", deletion.digest);
        if let Some(dir) = self.backup {
            self.save(dir, &deletion.digest, &deletion.tags, None)
                .await
                .map_err(|e| self.error(target.clone(), deletion.tags.clone(), ErrorCode::BackupFailed, e))?;
        }
        self.deleter()
            .delete_manifest(self.client, self.repository, &deletion.digest)
            .await
            .map_err(|e| self.registry_error(target.clone(), deletion.tags.clone(), e))?;
        Ok(self.done(target, deletion.tags.clone(), "deleted".into()))
    }

    /// Saves the manifest `digest` (fetched by digest, so the bytes are verified) with `tags`.
    async fn save(
        &self,
        dir: &Path,
        digest: &Digest,
        tags: &[String],
        untagged: Option<&str>,
    ) -> Result<(), String> {
        let fetched = self
            .client
            .manifest(self.repository, digest)
            .await
            .map_err(|e| format!("backup failed, nothing removed: {e}"))?;
        let entry = BackupEntry {
            repository: self.name.to_owned(),
            digest: digest.clone(),
            media_type: fetched.media_type,
            tags: tags.to_vec(),
            manifest: String::from_utf8(fetched.body)
                .map_err(|e| format!("backup failed, nothing removed: the manifest is not UTF-8: {e}"))?,
        };
        let (dir, untagged) = (dir.to_owned(), untagged.map(str::to_owned));
        tokio::task::spawn_blocking(move || backup::write_backup(&dir, &entry, untagged.as_deref()))
            .await
            .map_err(|e| format!("backup failed, nothing removed: {e}"))?
            .map(drop)
            .map_err(|e| format!("backup failed, nothing removed: {e}"))
    }
}

/// Tags that were to go with a deleted manifest but still exist had moved to another digest
/// meanwhile: they were not deleted, and are reported as skipped.
async fn report_survivors(
    client: &Client,
    repository: &Repository,
    report: &mut ApplyReport,
) -> Result<(), RegistryError> {
    let remaining: HashSet<String> = client
        .tags(repository)
        .await?
        .into_iter()
        .map(String::from)
        .collect();
    let mut skipped = Vec::new();
    for deleted in &mut report.deleted {
        let (survived, gone): (Vec<String>, Vec<String>) =
            deleted.tags.drain(..).partition(|t| remaining.contains(t));
        deleted.tags = gone;
        skipped.extend(survived.into_iter().map(|tag| ItemError {
            repository: repository.to_string(),
            target: tag,
            tags: Vec::new(),
            code: ErrorCode::ChangedSincePlanning,
            detail: format!(
                "changed since planning: it no longer pointed at {}, so it was not deleted",
                deleted.target
            ),
        }));
    }
    report.skipped.extend(skipped);
    Ok(())
}
