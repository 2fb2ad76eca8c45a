use std::collections::BTreeSet;
use std::time::SystemTime;

use super::testtree::{Tree, old};
use super::*;

#[test]
fn discovers_nested_repositories_and_skips_underscore_folders() {
    let tree = Tree::new();
    // `team` is both a repository and a namespace; `team/sub/app` is nested two levels down.
    tree.image("team", Some("v1"), "t", 1);
    tree.image("team/sub/app", Some("v1"), "a", 1);
    // distribution 2.8 finds repositories by `_layers`, 3.x by `_manifests`: both count.
    tree.mkdir("repositories/only-layers/_layers/sha256");
    tree.mkdir("repositories/only-manifests/_manifests/revisions");
    // Not repositories: a namespace with nothing, and folders under reserved names.
    tree.mkdir("repositories/empty-namespace/child");
    tree.mkdir("repositories/team/_uploads/123/_manifests");
    tree.mkdir("repositories/_hidden/_manifests");
    tree.write("repositories/stray-file", b"x");

    let found = tree.storage().repositories().unwrap();
    assert_eq!(
        found.names,
        vec!["only-layers", "only-manifests", "team", "team/sub/app"]
    );
    assert!(found.issues.is_empty());
}

#[test]
fn empty_or_missing_layout_has_no_repositories() {
    let tree = Tree::new();
    let storage = tree.storage();
    assert!(storage.repositories().unwrap().names.is_empty());
    assert_eq!(storage.blob_shards().unwrap().0, Vec::<String>::new());
    let nowhere = Storage::local(tree.root().join("does-not-exist"));
    assert!(nowhere.repositories().unwrap().names.is_empty());
}

#[test]
fn reads_tags_revisions_layers_and_history() {
    let tree = Tree::new();
    let first = tree.image("app", Some("latest"), "one", 2);
    let second = tree.image("app", Some("latest"), "two", 1);
    tree.tag("app", "stable", &first);
    let storage = tree.storage();

    let repo = storage.read_repository(
        "app",
        ReadOptions {
            tag_history: true,
            ..ReadOptions::default()
        },
    );
    assert_eq!(repo.name, "app");
    assert!(repo.issues.is_empty(), "{:?}", repo.issues);
    let revisions: BTreeSet<_> = repo.revisions.iter().map(|l| &l.digest).collect();
    assert_eq!(revisions, BTreeSet::from([&first, &second]));
    // Two configs and three layers.
    assert_eq!(repo.layers.len(), 5);

    let latest = repo.tags.iter().find(|t| t.name == "latest").unwrap();
    assert_eq!(latest.current.as_ref().unwrap().digest, second);
    let history: BTreeSet<_> = latest.history.iter().collect();
    assert_eq!(history, BTreeSet::from([&first, &second]));
    let stable = repo.tags.iter().find(|t| t.name == "stable").unwrap();
    assert_eq!(stable.history, vec![first.clone()]);
    let (history, issues) = storage.read_tag_history("app", "latest", "sha256");
    assert_eq!(
        history.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&first, &second])
    );
    assert!(issues.is_empty());
    assert_eq!(
        storage.read_tag_history("app", "latest", "sha512"),
        (Vec::new(), Vec::new())
    );

    // History is only listed on request.
    let repo = storage.read_repository("app", ReadOptions::default());
    assert!(repo.tags.iter().all(|t| t.history.is_empty()));
    // And links are not read when only names are wanted.
    let repo = storage.read_repository(
        "app",
        ReadOptions {
            tag_names_only: true,
            ..ReadOptions::default()
        },
    );
    assert_eq!(repo.tags.len(), 2);
    assert!(repo.tags.iter().all(|t| t.current.is_none()));
}

#[test]
fn link_files_must_be_exactly_the_digest_of_their_folder() {
    let tree = Tree::new();
    let good = tree.image("app", Some("v1"), "x", 0);
    let other = Digest::sha256(b"other");
    // Trailing newline: distribution's digest.Parse rejects it, so do we.
    tree.write(
        &format!("{}/link", paths::revision_dir("app", &other)),
        format!("{other}\n").as_bytes(),
    );
    // Names a different digest than its folder.
    let third = Digest::sha256(b"third");
    tree.write(
        &format!("{}/link", paths::layer_link_dir("app", &third)),
        good.as_str().as_bytes(),
    );
    tree.write(
        "repositories/app/_manifests/tags/broken/current/link",
        b"not a digest",
    );
    tree.write(
        "repositories/app/_manifests/tags/huge/current/link",
        &[b'a'; 2000],
    );

    let storage = tree.storage();
    // By default link files are not read: a revision is a folder with a link file, named by
    // the folder. Tag links are always read.
    let repo = storage.read_repository("app", ReadOptions::default());
    assert_eq!(repo.revisions.len(), 2);
    assert!(repo.layers.contains(&third));
    assert_eq!(repo.issues.len(), 2, "{:?}", repo.issues);

    let repo = storage.read_repository(
        "app",
        ReadOptions {
            verify_links: true,
            ..ReadOptions::default()
        },
    );
    assert_eq!(repo.revisions.len(), 1);
    // `_layers` links are never roots: a bad one is reported but still listed.
    assert!(repo.layers.contains(&third));
    let mut kinds: Vec<_> = repo
        .issues
        .iter()
        .map(|i| (i.kind, i.path.rsplit_once("/_").unwrap().1.to_owned()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (
                IssueKind::BadLink,
                format!("layers/sha256/{}/link", third.encoded())
            ),
            (
                IssueKind::BadLink,
                format!("manifests/revisions/sha256/{}/link", other.encoded())
            ),
            (
                IssueKind::BadLink,
                "manifests/tags/broken/current/link".to_owned()
            ),
            (IssueKind::BadLink, "manifests/tags/huge/current/link".to_owned()),
        ]
    );
    let broken = repo.tags.iter().find(|t| t.name == "broken").unwrap();
    assert!(broken.current.is_none());
}

#[test]
fn tolerates_empty_revision_folders_unknown_subfolders_and_odd_entries() {
    let tree = Tree::new();
    tree.image("app", Some("v1"), "x", 1);
    // A manifest deleted through the API leaves its empty folder.
    let deleted = Digest::sha256(b"deleted");
    tree.mkdir(&paths::revision_dir("app", &deleted));
    // Old schema1 registries keep signatures next to the link.
    let signed = Digest::sha256(b"signed");
    tree.link_revision("app", &signed);
    tree.write(
        &format!(
            "{}/signatures/sha256/{}/link",
            paths::revision_dir("app", &signed),
            signed.encoded()
        ),
        signed.as_str().as_bytes(),
    );
    // A folder without a link but with something else in it is neither a revision nor empty.
    let odd = Digest::sha256(b"odd");
    tree.write(&format!("{}/notes", paths::revision_dir("app", &odd)), b"?");
    tree.mkdir("repositories/app/_manifests/revisions/sha256/not-hex");
    tree.mkdir("repositories/app/_uploads/abc");
    tree.mkdir("repositories/app/_something_new/x");
    // A tag folder whose current link is missing (a push in progress, or damage).
    tree.mkdir("repositories/app/_manifests/tags/pending/index/sha256");

    let repo = tree.storage().read_repository("app", ReadOptions::default());
    assert_eq!(repo.revisions.len(), 2);
    assert_eq!(repo.empty_dirs.len(), 1);
    assert_eq!(repo.empty_dirs[0].path, paths::revision_dir("app", &deleted));
    let kinds: Vec<_> = repo.issues.iter().map(|i| i.kind).collect();
    assert!(kinds.contains(&IssueKind::Unexpected));
    let pending = repo
        .issues
        .iter()
        .find(|i| i.kind == IssueKind::MissingTagLink)
        .unwrap();
    assert!(pending.modified.is_some());
    assert_eq!(repo.tags.len(), 2);
}

#[test]
fn walks_blob_shards_and_reads_blobs() {
    let tree = Tree::new();
    let a = tree.blob(b"a");
    let b = tree.blob(b"bb");
    tree.write("blobs/sha256/zz/not-a-blob/data", b"?");
    tree.write("blobs/README", b"?");
    let storage = tree.storage();

    let (shards, issues) = storage.blob_shards().unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    let mut found = Vec::new();
    let mut odd = Vec::new();
    for shard in &shards {
        let listed = storage.list_blob_shard(shard).unwrap();
        for name in listed.names {
            match Digest::parse(&format!("{}:{name}", listed.algorithm)) {
                Ok(d) => found.push(d),
                Err(_) => odd.push(format!("{shard}/{name}")),
            }
        }
        odd.extend(listed.unexpected);
    }
    found.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(odd, vec!["blobs/sha256/zz/not-a-blob".to_owned()]);

    assert_eq!(storage.stat_blob(&b).unwrap().unwrap().size, 2);
    assert_eq!(storage.read_blob(&a, 10).unwrap().unwrap(), b"a");
    assert!(matches!(
        storage.read_blob(&b, 1),
        Err(StorageError::TooLarge { size: 2, .. })
    ));
    assert!(storage.stat_blob(&Digest::sha256(b"none")).unwrap().is_none());
}

#[test]
fn backend_deletes_and_removes_only_empty_folders() {
    let tree = Tree::new();
    let digest = tree.blob(b"x");
    let backend = tree.storage();
    let backend = backend.backend();
    let shard = paths::blob_dir(&digest).rsplit_once('/').unwrap().0.to_owned();
    assert!(!backend.remove_empty_dir(&shard).unwrap());
    assert!(backend.delete(&paths::blob_dir(&digest)).unwrap());
    assert!(!backend.delete(&paths::blob_dir(&digest)).unwrap());
    assert!(backend.remove_empty_dir(&shard).unwrap());
    assert!(!tree.exists(&shard));
    assert!(backend.list("nowhere").unwrap().is_none());
    assert!(backend.stat("nowhere").unwrap().is_none());
}

#[test]
fn link_modification_times_are_read_on_request() {
    let tree = Tree::new();
    let digest = tree.image("app", Some("v1"), "x", 1);
    tree.age_all(old());
    let storage = tree.storage();
    let repo = storage.read_repository("app", ReadOptions::default());
    // Revisions always have their time (it comes with the stat that finds them), tags on request.
    assert!(repo.revisions[0].modified.is_some());
    assert_eq!(repo.tags[0].current.as_ref().unwrap().modified, None);
    let repo = storage.read_repository(
        "app",
        ReadOptions {
            link_times: true,
            ..ReadOptions::default()
        },
    );
    let when = repo.revisions[0].modified.unwrap();
    assert!(when <= old() + std::time::Duration::from_secs(1));
    assert_eq!(repo.revisions[0].digest, digest);
    assert!(repo.tags[0].current.as_ref().unwrap().modified.is_some());
}

#[test]
fn layer_link_states_and_recent_links() {
    let tree = Tree::new();
    let image = tree.image("app", Some("v1"), "x", 1);
    let emptied = Digest::sha256(b"blob deleted through the API");
    tree.mkdir(&paths::layer_link_dir("app", &emptied));
    let odd = Digest::sha256(b"odd");
    tree.write(&format!("{}/other", paths::layer_link_dir("app", &odd)), b"?");
    tree.age_all(old());
    let storage = tree.storage();
    let layer = storage.read_repository("app", ReadOptions::default()).layers[0].clone();
    assert!(matches!(
        storage.layer_link_state("app", &layer).unwrap(),
        LayerLinkState::Link(t) if t < SystemTime::now() - std::time::Duration::from_secs(3600)
    ));
    assert!(matches!(
        storage.layer_link_state("app", &emptied).unwrap(),
        LayerLinkState::EmptyDir(_)
    ));
    assert_eq!(
        storage.layer_link_state("app", &odd).unwrap(),
        LayerLinkState::Other
    );
    assert_eq!(
        storage.layer_link_state("app", &Digest::sha256(b"none")).unwrap(),
        LayerLinkState::Other
    );

    let since = SystemTime::now() - std::time::Duration::from_secs(60);
    assert_eq!(storage.links_modified_since("app", since), RecentLinks::default());
    let pushed = tree.image("app", Some("v2"), "y", 1);
    let recent = storage.links_modified_since("app", since);
    // The revision link and the tag link both lead to the new manifest.
    assert_eq!(recent.manifests, vec![pushed.clone(), pushed]);
    assert_eq!(recent.blobs.len(), 2);
    assert!(!recent.manifests.contains(&image));
}
