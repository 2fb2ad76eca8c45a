//! The reachability rules, without I/O: repositories and manifests are built in memory.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::*;
use crate::manifest::Manifest;
use crate::storage::{EmptyDir, Issue, Link, Repository, Tag};

fn d(n: u32) -> Digest {
    Digest::sha256(&n.to_be_bytes())
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn old() -> SystemTime {
    now() - Duration::from_secs(48 * 3600)
}

fn cutoff() -> SystemTime {
    now() - Duration::from_secs(3600)
}

struct Fixture {
    repo: Repository,
    manifests: DigestMap<Digest, ManifestState>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            repo: Repository {
                name: "app".to_owned(),
                ..Repository::default()
            },
            manifests: DigestMap::default(),
        }
    }

    fn revision(&mut self, digest: &Digest, state: ManifestState) {
        self.repo.revisions.push(Link {
            digest: digest.clone(),
            modified: Some(old()),
        });
        self.manifests.insert(digest.clone(), state);
    }

    /// An image manifest `n` needing `blobs`, all linked into the repository.
    fn image(&mut self, n: u32, blobs: &[u32]) -> Digest {
        self.image_with(n, blobs, None)
    }

    fn image_with(&mut self, n: u32, blobs: &[u32], subject: Option<&Digest>) -> Digest {
        let digest = d(n);
        for &b in blobs {
            self.layer_link(&d(b));
        }
        self.revision(
            &digest,
            ManifestState::Parsed(ManifestFacts {
                blobs: blobs.iter().map(|&b| d(b)).collect(),
                subject: subject.cloned(),
                ..ManifestFacts::default()
            }),
        );
        digest
    }

    fn index(&mut self, n: u32, children: &[&Digest]) -> Digest {
        let digest = d(n);
        self.revision(
            &digest,
            ManifestState::Parsed(ManifestFacts {
                children: children.iter().map(|&c| c.clone()).collect(),
                ..ManifestFacts::default()
            }),
        );
        digest
    }

    fn layer_link(&mut self, digest: &Digest) {
        if !self.repo.layers.contains(digest) {
            self.repo.layers.push(digest.clone());
        }
    }

    fn tag(&mut self, name: &str, digest: &Digest) {
        self.repo.tags.push(Tag {
            name: name.to_owned(),
            current: Some(Link {
                digest: digest.clone(),
                modified: None,
            }),
            history: vec![digest.clone()],
        });
    }

    fn mark(&self, delete_untagged: bool) -> RepoMark {
        mark_repository(&MarkInput {
            repo: &self.repo,
            manifests: &self.manifests,
            delete_untagged,
            cutoff: cutoff(),
        })
    }
}

fn deleted(mark: &RepoMark) -> BTreeSet<Digest> {
    mark.delete_manifests.iter().map(|m| m.digest.clone()).collect()
}

fn kinds(mark: &RepoMark) -> Vec<(Severity, ProblemKind)> {
    mark.problems.iter().map(|p| (p.severity, p.kind)).collect()
}

#[test]
fn without_delete_untagged_every_revision_is_kept() {
    let mut f = Fixture::new();
    let tagged = f.image(1, &[10, 11]);
    f.tag("latest", &tagged);
    let untagged = f.image(2, &[11, 12]);
    f.layer_link(&d(99));

    let mark = f.mark(false);
    assert_eq!(mark.kept, BTreeSet::from([tagged.clone(), untagged.clone()]));
    for blob in [&tagged, &untagged, &d(10), &d(11), &d(12)] {
        assert!(mark.marked.contains(blob), "{blob} must be marked");
    }
    assert!(mark.delete_manifests.is_empty());
    assert_eq!(mark.unneeded_layers, vec![d(99)]);
    assert!(mark.problems.is_empty(), "{:?}", mark.problems);
}

#[test]
fn delete_untagged_removes_unreachable_manifests_with_their_history() {
    let mut f = Fixture::new();
    let old_build = f.image(1, &[10, 11]);
    let new_build = f.image(2, &[10, 12]);
    // `latest` moved from the old build to the new one: the old one stays in its history.
    f.tag("latest", &new_build);
    f.repo.tags[0].history.push(old_build.clone());

    let mark = f.mark(true);
    assert_eq!(mark.kept, BTreeSet::from([new_build.clone()]));
    assert_eq!(
        mark.delete_manifests,
        vec![ManifestItem {
            repository: "app".into(),
            digest: old_build.clone(),
            tag_history: vec!["latest".into()],
        }]
    );
    assert!(!mark.marked.contains(&old_build));
    assert!(!mark.marked.contains(&d(11)));
    assert!(
        mark.marked.contains(&d(10)),
        "a layer shared with a kept image stays"
    );
    assert_eq!(mark.unneeded_layers, vec![d(11)]);
}

#[test]
fn tagged_index_keeps_every_child_and_their_blobs() {
    // distribution 2.x with --delete-untagged deletes these children (#3178).
    let mut f = Fixture::new();
    let amd64 = f.image(1, &[10, 11]);
    let arm64 = f.image(2, &[20, 21]);
    let list = f.index(3, &[&amd64, &arm64]);
    f.tag("latest", &list);

    let mark = f.mark(true);
    assert_eq!(mark.kept, BTreeSet::from([amd64, arm64, list]));
    assert!(mark.delete_manifests.is_empty());
    assert!(mark.unneeded_layers.is_empty());
    for blob in [10, 11, 20, 21] {
        assert!(mark.marked.contains(&d(blob)));
        assert!(mark.needed.contains_key(&d(blob)));
    }
}

#[test]
fn nested_indexes_are_followed_recursively() {
    let mut f = Fixture::new();
    let leaf = f.image(1, &[10]);
    let inner = f.index(2, &[&leaf]);
    let outer = f.index(3, &[&inner]);
    f.tag("v1", &outer);
    let stray = f.image(4, &[40]);

    let mark = f.mark(true);
    assert_eq!(mark.kept, BTreeSet::from([leaf, inner, outer]));
    assert_eq!(deleted(&mark), BTreeSet::from([stray]));
    assert!(mark.marked.contains(&d(10)));
    assert_eq!(mark.unneeded_layers, vec![d(40)]);
}

#[test]
fn referrers_live_and_die_with_their_subject() {
    let mut f = Fixture::new();
    let image = f.image(1, &[10]);
    f.tag("v1", &image);
    let signature = f.image_with(2, &[20], Some(&image));
    // A signature of the signature: referrers are followed transitively.
    let countersign = f.image_with(3, &[30], Some(&signature));
    let gone = f.image(4, &[40]);
    let orphan_sig = f.image_with(5, &[50], Some(&gone));
    // A referrer of a manifest that was never in the repository.
    let stranger = f.image_with(6, &[60], Some(&d(12345)));

    let mark = f.mark(true);
    assert_eq!(mark.kept, BTreeSet::from([image, signature, countersign]));
    assert_eq!(deleted(&mark), BTreeSet::from([gone, orphan_sig, stranger]));
    assert!(mark.marked.contains(&d(20)) && mark.marked.contains(&d(30)));
    let mut expected = vec![d(40), d(50), d(60)];
    expected.sort();
    assert_eq!(mark.unneeded_layers, expected);
}

#[test]
fn a_referrer_does_not_keep_its_subject() {
    let mut f = Fixture::new();
    let image = f.image(1, &[10]);
    let signature = f.image_with(2, &[20], Some(&image));
    f.tag("sig-only", &signature);

    let mark = f.mark(true);
    assert_eq!(mark.kept, BTreeSet::from([signature]));
    assert_eq!(deleted(&mark), BTreeSet::from([image]));
}

#[test]
fn fallback_tag_index_keeps_its_referrers_and_orphan_tags_are_reported() {
    let mut f = Fixture::new();
    let image = f.image(1, &[10]);
    f.tag("v1", &image);
    // An attestation pushed without `subject`, listed in the `sha256-<hex>` fallback index.
    let attestation = f.image(2, &[20]);
    let fallback = f.index(3, &[&attestation]);
    f.tag(&image.referrers_tag(), &fallback);
    // A cosign signature tag for an image that was deleted through the API.
    let old_sig = f.image(4, &[40]);
    f.tag(&format!("{}.sig", d(777).referrers_tag()), &old_sig);

    let mark = f.mark(true);
    assert!(mark.kept.contains(&attestation) && mark.kept.contains(&fallback));
    assert!(mark.kept.contains(&old_sig), "every tag is a root");
    assert!(mark.delete_manifests.is_empty());
    let orphan: Vec<_> = mark
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::OrphanReferrerTag)
        .collect();
    assert_eq!(orphan.len(), 1);
    assert_eq!(orphan[0].severity, Severity::Warning);
    assert_eq!(orphan[0].digest.as_ref(), Some(&d(777)));
}

#[test]
fn young_content_is_kept() {
    let mut f = Fixture::new();
    let pushed_now = f.image(1, &[10]);
    f.repo.revisions[0].modified = Some(now());
    // Without its age a revision counts as young too: an unknown age never deletes.
    let age_unknown = f.image(2, &[20]);
    f.repo.revisions[1].modified = None;
    let stale = f.image(3, &[30]);
    f.repo.empty_dirs.push(EmptyDir {
        path: "repositories/app/_manifests/revisions/sha256/ab".into(),
        modified: now(),
    });
    f.repo.empty_dirs.push(EmptyDir {
        path: "repositories/app/_manifests/revisions/sha256/cd".into(),
        modified: old(),
    });

    let mark = f.mark(true);
    assert!(mark.kept.contains(&pushed_now) && mark.kept.contains(&age_unknown));
    assert_eq!(deleted(&mark), BTreeSet::from([stale]));
    assert!(mark.marked.contains(&d(10)) && mark.marked.contains(&d(20)));
    assert_eq!(mark.unneeded_layers, vec![d(30)]);
    assert_eq!(
        mark.delete_empty_dirs,
        vec!["repositories/app/_manifests/revisions/sha256/cd".to_owned()]
    );
    assert_eq!(mark.young_kept, 1);
}

#[test]
fn unreadable_and_missing_manifests_are_errors_and_kept() {
    let mut f = Fixture::new();
    let tagged = f.image(1, &[10]);
    f.tag("v1", &tagged);
    let corrupt = d(2);
    f.revision(&corrupt, ManifestState::Unreadable("not json".into()));
    let missing = d(3);
    f.revision(&missing, ManifestState::Missing);

    for delete_untagged in [false, true] {
        let mark = f.mark(delete_untagged);
        assert!(mark.kept.contains(&corrupt) && mark.kept.contains(&missing));
        assert!(mark.marked.contains(&corrupt));
        assert!(mark.delete_manifests.is_empty());
        let mut found = kinds(&mark);
        found.sort();
        assert_eq!(
            found,
            vec![
                (Severity::Error, ProblemKind::UnreadableManifest),
                (Severity::Error, ProblemKind::MissingManifest),
            ]
        );
    }
}

#[test]
fn tag_pointing_outside_the_repository_is_an_error() {
    let mut f = Fixture::new();
    f.tag("broken", &d(5));
    let mark = f.mark(true);
    assert_eq!(kinds(&mark), vec![(Severity::Error, ProblemKind::BrokenTag)]);
    assert!(mark.marked.contains(&d(5)));
}

#[test]
fn index_child_deleted_through_the_api_is_a_warning() {
    let mut f = Fixture::new();
    let kept_child = f.image(1, &[10]);
    let list = f.index(3, &[&kept_child, &d(2)]);
    f.tag("latest", &list);
    let mark = f.mark(true);
    assert_eq!(
        kinds(&mark),
        vec![(Severity::Warning, ProblemKind::UnlinkedChild)]
    );
    // Its blob stays (the index references it), as distribution does.
    assert!(mark.marked.contains(&d(2)));
}

#[test]
fn needed_blob_not_linked_is_a_warning_and_foreign_layers_are_not_needed() {
    let mut f = Fixture::new();
    let image = d(1);
    f.layer_link(&d(10));
    f.revision(
        &image,
        ManifestState::Parsed(ManifestFacts {
            blobs: vec![d(10), d(11)],
            foreign: vec![d(12)],
            ..ManifestFacts::default()
        }),
    );
    f.tag("v1", &image);
    let mark = f.mark(false);
    assert_eq!(kinds(&mark), vec![(Severity::Warning, ProblemKind::UnlinkedBlob)]);
    assert_eq!(mark.problems[0].digest.as_ref(), Some(&d(11)));
    assert!(mark.marked.contains(&d(12)));
    assert!(!mark.needed.contains_key(&d(12)));
}

#[test]
fn storage_issues_become_problems_by_what_they_hide() {
    let mut f = Fixture::new();
    let issue = |kind, path: &str, modified| Issue {
        kind,
        path: path.to_owned(),
        message: "m".to_owned(),
        modified,
    };
    f.repo.issues = vec![
        issue(
            IssueKind::BadLink,
            "repositories/app/_layers/sha256/aa/link",
            None,
        ),
        issue(
            IssueKind::BadLink,
            "repositories/app/_manifests/revisions/sha256/aa/link",
            None,
        ),
        issue(
            IssueKind::MissingTagLink,
            "repositories/app/_manifests/tags/new/current/link",
            Some(now()),
        ),
        issue(
            IssueKind::MissingTagLink,
            "repositories/app/_manifests/tags/old/current/link",
            Some(old()),
        ),
        issue(IssueKind::Unreadable, "repositories/app/_layers", None),
        issue(IssueKind::Unexpected, "repositories/app/_layers/sha256/zz", None),
    ];
    let mut found = kinds(&f.mark(false));
    found.sort();
    assert_eq!(
        found,
        vec![
            (Severity::Error, ProblemKind::BrokenTag),
            (Severity::Error, ProblemKind::BadLink),
            (Severity::Error, ProblemKind::Unreadable),
            (Severity::Warning, ProblemKind::BadLink),
            (Severity::Warning, ProblemKind::Unexpected),
        ]
    );
}

#[test]
fn referrer_tags_are_recognised() {
    let digest = d(1);
    assert_eq!(
        referrer_tag_subject(&digest.referrers_tag()),
        Some(digest.clone())
    );
    assert_eq!(
        referrer_tag_subject(&format!("{}.att", digest.referrers_tag())),
        Some(digest.clone())
    );
    assert_eq!(referrer_tag_subject("v1-2"), None);
    assert_eq!(referrer_tag_subject("sha256-abc"), None);
    assert_eq!(referrer_tag_subject("latest"), None);
}

#[test]
fn facts_from_every_manifest_format() {
    let blob = |n: u32| d(n).to_string();
    let docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
        "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":1}},
        "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":2}},
        {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":3,
        "urls":["https://example.com/layer"]}}]}}"#,
        blob(1),
        blob(2),
        blob(3)
    );
    let facts = ManifestFacts::from_manifest(&Manifest::parse(docker.as_bytes(), None).unwrap());
    assert_eq!(facts.blobs, vec![d(1), d(2)]);
    assert_eq!(facts.foreign, vec![d(3)]);

    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{}","size":1,
        "platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        blob(4)
    );
    let facts = ManifestFacts::from_manifest(&Manifest::parse(list.as_bytes(), None).unwrap());
    assert_eq!(facts.children, vec![d(4)]);
    assert!(facts.blobs.is_empty());

    let schema1 = format!(
        r#"{{"schemaVersion":1,"name":"app","tag":"old","fsLayers":[{{"blobSum":"{}"}},{{"blobSum":"{}"}}]}}"#,
        blob(5),
        blob(6)
    );
    let facts = ManifestFacts::from_manifest(&Manifest::parse(schema1.as_bytes(), None).unwrap());
    assert_eq!(facts.blobs, vec![d(5), d(6)]);

    let referrer = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json",
        "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[],
        "subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":9}}}}"#,
        blob(7),
        blob(8)
    );
    let facts = ManifestFacts::from_manifest(&Manifest::parse(referrer.as_bytes(), None).unwrap());
    assert_eq!(facts.blobs, vec![d(7)]);
    assert_eq!(facts.subject, Some(d(8)));
}

// The named steps of `mark_repository`, each on its own.

#[test]
fn revision_roots_are_every_revision_or_only_the_young_and_unreadable() {
    let mut f = Fixture::new();
    let old_image = f.image(1, &[10]);
    let unreadable = d(2);
    f.revision(&unreadable, ManifestState::Unreadable("not JSON".into()));
    let young = d(3);
    f.revision(&young, ManifestState::Parsed(ManifestFacts::default()));
    f.repo.revisions.last_mut().unwrap().modified = Some(now());
    let unknown_age = d(4);
    f.revision(&unknown_age, ManifestState::Parsed(ManifestFacts::default()));
    f.repo.revisions.last_mut().unwrap().modified = None;
    let input = |delete_untagged| MarkInput {
        repo: &f.repo,
        manifests: &f.manifests,
        delete_untagged,
        cutoff: cutoff(),
    };
    let roots = |delete_untagged| -> BTreeSet<Digest> {
        revision_roots(&input(delete_untagged))
            .into_iter()
            .cloned()
            .collect()
    };
    assert_eq!(
        roots(false),
        BTreeSet::from([old_image, unreadable.clone(), young.clone(), unknown_age.clone()])
    );
    assert_eq!(roots(true), BTreeSet::from([unreadable, young, unknown_age]));
}

#[test]
fn tag_roots_keep_targets_outside_the_repository_marked() {
    let mut f = Fixture::new();
    let image = f.image(1, &[10]);
    f.tag("v1", &image);
    f.tag("stray", &d(50));
    let revisions: DigestRefs<'_> = f.repo.revisions.iter().map(|l| &l.digest).collect();
    let mut out = RepoMark::default();
    let roots = tag_roots(&f.repo, &revisions, &mut out);
    assert_eq!(roots, vec![&image]);
    assert!(out.marked.contains(&d(50)), "a stray tag target keeps its blob");
    assert_eq!(kinds(&out), vec![(Severity::Error, ProblemKind::BrokenTag)]);
    assert!(out.problems[0].message.contains("`stray`"), "{:?}", out.problems);
}

#[test]
fn empty_dirs_split_by_age() {
    let mut f = Fixture::new();
    for (path, modified) in [("a", old()), ("b", now()), ("c", old())] {
        f.repo.empty_dirs.push(EmptyDir {
            path: path.to_owned(),
            modified,
        });
    }
    assert_eq!(
        old_empty_dirs(&f.repo, cutoff()),
        (vec!["a".to_owned(), "c".to_owned()], 1)
    );
}

#[test]
fn unlinked_blobs_are_reported_once_each_in_order() {
    let needed: DigestMap<Digest, Digest> = [(d(12), d(1)), (d(11), d(1)), (d(10), d(2))]
        .into_iter()
        .collect();
    let linked = d(11);
    let layers: DigestRefs<'_> = [&linked].into_iter().collect();
    let problems = unlinked_blob_problems("app", &needed, &layers);
    let blobs: Vec<Option<Digest>> = problems.iter().map(|p| p.digest.clone()).collect();
    let mut expected = vec![Some(d(10)), Some(d(12))];
    expected.sort();
    assert_eq!(blobs, expected);
}
