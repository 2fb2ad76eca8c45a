//! The in-memory listing of a bucket that an object-store collection works from, kept compact:
//! a registry of a million blobs has two to three million keys, so every byte per key counts.
//!
//! - Keys are relative to the layout prefix, and each path segment that is a sha256 digest in hex
//!   (64 characters, in every blob and link key) is stored as its 32 bytes ([`pack_key`]).
//! - Objects sit in one vector sorted by packed key, not a tree map: no per-node slack, and
//!   folders are contiguous ranges found by binary search. Deleted objects are flagged, not
//!   removed, so that deleting one folder does not move the rest of the vector.
//! - Times are integers, the ETag only its MD5 when it is one.
//! - Listings are added as each one completes; nothing holds the whole listing twice.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use md5::{Digest as _, Md5};

use crate::storage::{Entry, EntryKind, FileMeta};

/// Starts a packed digest segment. The byte never occurs in UTF-8 text, so a packed segment
/// cannot be confused with a key's own characters.
const PACKED: u8 = 0xff;
/// A packed segment: the marker and 32 bytes.
const PACKED_LEN: usize = 33;

/// `key` with each path segment of exactly 64 lowercase hex digits replaced by [`PACKED`] and
/// the 32 bytes it encodes. Packing is segment by segment, so the packing of a folder followed
/// by `/` is a prefix of the packing of every key below it.
pub(super) fn pack_key(key: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(key.len());
    for (i, segment) in key.split('/').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        let mut raw = [0u8; 32];
        let lower_hex =
            segment.len() == 64 && segment.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if lower_hex && hex::decode_to_slice(segment, &mut raw).is_ok() {
            out.push(PACKED);
            out.extend_from_slice(&raw);
        } else {
            out.extend_from_slice(segment.as_bytes());
        }
    }
    out.into_boxed_slice()
}

/// The first segment of a packed key and what follows it (empty, or starting with `/`).
fn split_segment(packed: &[u8]) -> (&[u8], &[u8]) {
    let end = if packed.first() == Some(&PACKED) {
        PACKED_LEN.min(packed.len())
    } else {
        packed.iter().position(|&b| b == b'/').unwrap_or(packed.len())
    };
    packed.split_at(end)
}

/// The text of one segment.
fn unpack_segment(segment: &[u8]) -> String {
    match segment.split_first() {
        Some((&PACKED, raw)) => hex::encode(raw),
        // Raw segments are slices of UTF-8 keys cut at `/`.
        _ => String::from_utf8_lossy(segment).into_owned(),
    }
}

/// The key [`pack_key`] packed.
pub(super) fn unpack_key(mut packed: &[u8]) -> String {
    let mut out = String::with_capacity(packed.len() + 32);
    loop {
        let (segment, rest) = split_segment(packed);
        out.push_str(&unpack_segment(segment));
        match rest.split_first() {
            Some((b'/', after)) => {
                out.push('/');
                packed = after;
            }
            _ => return out,
        }
    }
}

/// The packed prefix of everything below `dir` (`""` is the whole layout).
fn packed_prefix(dir: &str) -> Vec<u8> {
    if dir.is_empty() {
        return Vec::new();
    }
    let mut prefix = pack_key(dir).into_vec();
    prefix.push(b'/');
    prefix
}

/// A plain-MD5 ETag (`"<32 hex>"`), as S3 gives for single-part uploads.
pub(super) fn etag_md5(etag: Option<&str>) -> Option<[u8; 16]> {
    let text = etag?.trim_matches('"');
    let mut out = [0u8; 16];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The `<alg>:<hex>` digest text of a link key `…/<alg>/<hex>/link`, if it looks like one: the
/// content a link file at that key normally has.
fn digest_of_link(relative: &str) -> Option<String> {
    let mut parts = relative.rsplit('/');
    let file = parts.next()?;
    let hex = parts.next()?;
    let alg = parts.next()?;
    let plausible =
        file == "link" && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !alg.is_empty();
    plausible.then(|| format!("{alg}:{hex}"))
}

fn md5_of(text: &str) -> [u8; 16] {
    Md5::digest(text.as_bytes()).into()
}

/// One object of the listing.
#[derive(Debug, Clone)]
pub(super) struct Object {
    key: Box<[u8]>,
    pub(super) size: u64,
    /// Last modification in nanoseconds since the Unix epoch (earlier dates count as the epoch).
    modified_ns: u64,
    /// The ETag when it is a plain MD5 (single-part uploads without KMS encryption).
    md5: Option<[u8; 16]>,
    /// Deleted during this run.
    deleted: bool,
}

impl Object {
    pub(super) fn new(relative: &str, size: u64, modified: SystemTime, md5: Option<[u8; 16]>) -> Self {
        let nanos = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self {
            key: pack_key(relative),
            size,
            modified_ns: nanos,
            md5,
            deleted: false,
        }
    }

    fn modified(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.modified_ns)
    }

    pub(super) fn meta(&self) -> FileMeta {
        FileMeta {
            size: self.size,
            modified: self.modified(),
        }
    }
}

/// Every key under the layout prefix, relative to it. Filled with [`Snapshot::insert`], then
/// [`Snapshot::seal`]ed before any query.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    /// Sorted by packed key once sealed.
    objects: Vec<Object>,
    /// MD5 of `<alg>:<hex>` for every manifest revision link, to that digest text. A tag's
    /// `current/link` holds a manifest digest, so its ETag names it without a GET. (Other link
    /// files hold the digest of their own key path: [`Snapshot::link_content`] checks that
    /// directly.)
    manifest_by_etag: HashMap<[u8; 16], Box<str>>,
    /// Prefixes (relative, with a trailing `/`) whose listing failed, with the error.
    pub(super) unreadable: Vec<(String, String)>,
    /// Directory-marker keys that were dropped.
    pub(super) markers: Vec<String>,
}

impl Snapshot {
    pub(super) fn insert(&mut self, object: Object) {
        if object.md5.is_some() && object.key.windows(22).any(|w| w == b"/_manifests/revisions/") {
            let relative = unpack_key(&object.key);
            if let Some(text) = digest_of_link(&relative) {
                self.manifest_by_etag.insert(md5_of(&text), text.into_boxed_str());
            }
        }
        self.objects.push(object);
    }

    /// Sorts the listing (listings complete in any order) and drops directory markers: zero-byte
    /// keys that are also a folder of other keys.
    pub(super) fn seal(&mut self) {
        self.objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        // The same key twice only if two listings overlapped; either copy will do.
        self.objects.dedup_by(|a, b| a.key == b.key);
        let markers: Vec<usize> = (0..self.objects.len())
            .filter(|&i| self.objects[i].size == 0 && self.has_children(&self.objects[i].key))
            .collect();
        for &i in &markers {
            self.markers.push(unpack_key(&self.objects[i].key));
        }
        let mut index = 0;
        self.objects.retain(|_| {
            let keep = markers.binary_search(&index).is_err();
            index += 1;
            keep
        });
        self.objects.shrink_to_fit();
    }

    /// Index of the first object at or after `from`.
    fn first_from(&self, from: &[u8]) -> usize {
        self.objects.partition_point(|o| *o.key < *from)
    }

    fn has_children(&self, packed_dir: &[u8]) -> bool {
        let mut prefix = packed_dir.to_vec();
        prefix.push(b'/');
        self.objects
            .get(self.first_from(&prefix))
            .is_some_and(|o| o.key.starts_with(&prefix))
    }

    /// The live object at `path`.
    pub(super) fn get(&self, path: &str) -> Option<&Object> {
        let key = pack_key(path);
        let found = self.objects.binary_search_by(|o| o.key.cmp(&key)).ok()?;
        Some(&self.objects[found]).filter(|o| !o.deleted)
    }

    /// Indexes of the objects below `prefix` (packed), deleted ones included.
    fn range_below(&self, prefix: &[u8]) -> std::ops::Range<usize> {
        let start = self.first_from(prefix);
        let len = self.objects[start..].partition_point(|o| o.key.starts_with(prefix));
        start..start + len
    }

    /// Live keys equal to `path` or below it.
    pub(super) fn keys_under(&self, path: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.objects[self.range_below(&packed_prefix(path))]
            .iter()
            .filter(|o| !o.deleted)
            .map(|o| unpack_key(&o.key))
            .collect();
        if self.get(path).is_some() {
            keys.push(path.to_owned());
        }
        keys
    }

    /// Flags the given keys as deleted.
    pub(super) fn mark_deleted<'a>(&mut self, keys: impl IntoIterator<Item = &'a String>) {
        for key in keys {
            let packed = pack_key(key);
            if let Ok(found) = self.objects.binary_search_by(|o| o.key.cmp(&packed)) {
                self.objects[found].deleted = true;
            }
        }
    }

    pub(super) fn unreadable_covering(&self, dir: &str) -> Option<&(String, String)> {
        let with_slash = format!("{dir}/");
        self.unreadable
            .iter()
            .find(|(prefix, _)| with_slash.starts_with(prefix.as_str()) || prefix.starts_with(&with_slash))
    }

    /// The immediate children of `dir`, skipping over each child folder's keys instead of
    /// visiting them.
    pub(super) fn children(&self, dir: &str) -> Vec<Entry> {
        let prefix = packed_prefix(dir);
        let mut entries = Vec::new();
        let mut at = self.first_from(&prefix);
        while let Some(object) = self.objects.get(at) {
            let Some(rest) = object.key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let (segment, after) = split_segment(rest);
            if after.is_empty() {
                if !object.deleted {
                    entries.push(Entry {
                        name: unpack_segment(segment),
                        kind: EntryKind::File,
                    });
                }
                at += 1;
                continue;
            }
            // A folder: everything below `<segment>/` sorts before `<segment>0` (`0` follows `/`).
            let mut folder = prefix.clone();
            folder.extend_from_slice(segment);
            folder.push(b'/');
            let below = self.range_below(&folder);
            if self.objects[below.clone()].iter().any(|o| !o.deleted) {
                entries.push(Entry {
                    name: unpack_segment(segment),
                    kind: EntryKind::Dir,
                });
            }
            at = below.end.max(at + 1);
        }
        entries
    }

    /// The newest modification below `dir` (an object store has no folder times).
    pub(super) fn newest_under(&self, dir: &str) -> Option<FileMeta> {
        self.objects[self.range_below(&packed_prefix(dir))]
            .iter()
            .filter(|o| !o.deleted)
            .map(Object::modified)
            .max()
            .map(|modified| FileMeta { size: 0, modified })
    }

    /// The content of the link file at `path`, known without reading it when its ETag is the
    /// MD5 of the digest in its own key path or of a manifest digest.
    pub(super) fn link_content(&self, path: &str) -> Option<String> {
        let md5 = self.get(path)?.md5?;
        if let Some(own) = digest_of_link(path).filter(|text| md5_of(text) == md5) {
            return Some(own);
        }
        self.manifest_by_etag.get(&md5).map(|text| text.to_string())
    }

    /// Replaces everything below `repositories/` with a fresh listing of it.
    pub(super) fn replace_repositories(&mut self, fresh: Snapshot) {
        let range = self.range_below(b"repositories/");
        self.objects.splice(range, fresh.objects);
        self.manifest_by_etag.extend(fresh.manifest_by_etag);
        self.unreadable.retain(|(p, _)| !p.starts_with("repositories/"));
        self.unreadable.extend(fresh.unreadable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(keys: &[(&str, u64)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (k, size) in keys {
            s.insert(Object::new(k, *size, SystemTime::UNIX_EPOCH, None));
        }
        s.seal();
        s
    }

    fn names(s: &Snapshot, dir: &str) -> Vec<(String, EntryKind)> {
        let mut names: Vec<(String, EntryKind)> =
            s.children(dir).into_iter().map(|e| (e.name, e.kind)).collect();
        // Packed and raw names do not sort as text does; callers sort names themselves.
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names
    }

    #[test]
    fn packed_keys_round_trip_and_shrink_digests() {
        let hex = "0123456789abcdef".repeat(4);
        let odd = [
            format!("blobs/sha256/01/{hex}/data"),
            format!("repositories/a/_manifests/tags/{hex}/current/link"),
            // Uppercase, too short or too long: not packed, still exact.
            format!("blobs/sha256/01/{}/data", hex.to_uppercase()),
            format!("x/{}/y", &hex[..63]),
            format!("x/{hex}0/y"),
            // Empty segments, a trailing slash, non-ASCII text, a digest as the whole key.
            "a//b/".to_owned(),
            "".to_owned(),
            "dossier/é ü/ファイル".to_owned(),
            hex.clone(),
        ];
        for key in &odd {
            assert_eq!(&unpack_key(&pack_key(key)), key);
        }
        assert_eq!(pack_key(&odd[0]).len(), odd[0].len() - 64 + PACKED_LEN);
        assert_eq!(pack_key(&odd[2]).len(), odd[2].len());
        // A packed digest may contain `/` bytes: segments are still told apart.
        let slashes = "2f".repeat(32);
        let key = format!("r/{slashes}/link");
        assert_eq!(unpack_key(&pack_key(&key)), key);
        let s = snapshot(&[(&key, 1), (&format!("r/{slashes}/other"), 1)]);
        assert_eq!(names(&s, "r"), vec![(slashes.clone(), EntryKind::Dir)]);
        assert_eq!(names(&s, &format!("r/{slashes}")).len(), 2);
    }

    #[test]
    fn children_skip_over_folders() {
        let hex = "ab".repeat(32);
        let s = snapshot(&[
            ("repositories/a/_layers/x", 1),
            ("repositories/a/_manifests/y", 1),
            ("repositories/a-b/_layers/z", 1),
            ("repositories/file", 1),
            ("repositoriesX/q", 1),
            (&format!("repositories/{hex}/_layers/z"), 1),
            (&format!("repositories/{hex}"), 1),
        ]);
        assert_eq!(
            names(&s, "repositories"),
            vec![
                ("a".to_owned(), EntryKind::Dir),
                ("a-b".to_owned(), EntryKind::Dir),
                (hex.clone(), EntryKind::File),
                (hex.clone(), EntryKind::Dir),
                ("file".to_owned(), EntryKind::File),
            ]
        );
        assert!(s.children("nothing").is_empty());
        assert_eq!(s.keys_under("repositories/a").len(), 2);
        assert_eq!(s.keys_under(&format!("repositories/{hex}")).len(), 2);
    }

    #[test]
    fn deleted_objects_disappear_from_every_answer() {
        let mut s = snapshot(&[
            ("repositories/a/_layers/x/link", 1),
            ("repositories/a/_layers/y/link", 1),
            ("repositories/b/_layers/z/link", 1),
        ]);
        let gone = s.keys_under("repositories/a/_layers/x");
        s.mark_deleted(&gone);
        assert!(s.get("repositories/a/_layers/x/link").is_none());
        assert_eq!(
            names(&s, "repositories/a/_layers"),
            vec![("y".to_owned(), EntryKind::Dir)]
        );
        let rest = s.keys_under("repositories/a");
        s.mark_deleted(&rest);
        assert_eq!(names(&s, "repositories"), vec![("b".to_owned(), EntryKind::Dir)]);
        assert!(s.newest_under("repositories/a").is_none());
        assert!(s.newest_under("repositories/b").is_some());
    }

    #[test]
    fn directory_markers_are_dropped_and_reported() {
        let s = snapshot(&[
            ("blobs/sha256/04", 0),
            ("blobs/sha256/04-x", 3),
            ("blobs/sha256/04/0400/data", 5),
            ("blobs/lone", 0),
        ]);
        assert_eq!(s.markers, vec!["blobs/sha256/04".to_owned()]);
        assert!(s.get("blobs/sha256/04").is_none());
        // A zero-byte key without children is an ordinary (empty) file.
        assert!(s.get("blobs/lone").is_some());
    }

    #[test]
    fn link_content_from_etag() {
        let hex = "a".repeat(64);
        let other = "b".repeat(64);
        let md5 = md5_of(&format!("sha256:{hex}"));
        let mut s = Snapshot::default();
        let at = |key: &str| Object::new(key, 71, SystemTime::UNIX_EPOCH, Some(md5));
        s.insert(at(&format!(
            "repositories/x/_manifests/revisions/sha256/{hex}/link"
        )));
        s.insert(at("repositories/x/_manifests/tags/t/current/link"));
        s.insert(at(&format!("repositories/x/_layers/sha256/{other}/link")));
        s.seal();
        let text = Some(format!("sha256:{hex}"));
        // Its own key path, and a tag's current link through the manifest revisions.
        assert_eq!(
            s.link_content(&format!("repositories/x/_manifests/revisions/sha256/{hex}/link")),
            text
        );
        assert_eq!(
            s.link_content("repositories/x/_manifests/tags/t/current/link"),
            text
        );
        // A link whose content is not its own digest but names a known manifest.
        assert_eq!(
            s.link_content(&format!("repositories/x/_layers/sha256/{other}/link")),
            text
        );
        assert_eq!(etag_md5(Some(&format!("\"{}\"", hex::encode(md5)))), Some(md5));
        // Multipart ETags are not an MD5 of the content.
        assert_eq!(etag_md5(Some("\"0123456789abcdef0123456789abcdef-2\"")), None);
    }

    #[test]
    fn times_keep_nanoseconds() {
        let when = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(Object::new("k", 0, when, None).modified(), when);
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(
            Object::new("k", 0, before, None).modified(),
            SystemTime::UNIX_EPOCH
        );
    }
}
