//! A set of digests sized for whole registries: sha256 digests (all of them in practice) are
//! kept as 32 raw bytes and hashed by their first 8 bytes, which are already uniformly
//! distributed. That is a third of the memory of a `HashSet<Digest>` and no SipHash rounds.
//! Also a cheap hasher for maps keyed by [`Digest`]: digests are content hashes, so hash
//! flooding is not a concern and SipHash's cost buys nothing.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::digest::Digest;

/// A map keyed by digests (or references to digests) with [`DigestHasher`].
pub type DigestMap<K, V> = HashMap<K, V, BuildHasherDefault<DigestHasher>>;

/// An FxHash-style hasher (rotate, xor, multiply per 8-byte word).
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl DigestHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }
}

/// Values of lowercase hex digits; 0xff for every other byte.
static HEX_VALUES: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes exactly 64 lowercase hex digits (what `Digest::parse` accepts for sha256).
fn decode_sha256(encoded: &str) -> Option<[u8; 32]> {
    let bytes = encoded.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    let mut invalid = 0u8;
    for (out, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
        let (high, low) = (HEX_VALUES[pair[0] as usize], HEX_VALUES[pair[1] as usize]);
        invalid |= high | low;
        *out = (high << 4) | (low & 0x0f);
    }
    // Valid values are below 16; any 0xff sets the high bits.
    (invalid & 0xf0 == 0).then_some(key)
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Sha256Key([u8; 32]);

impl Hash for Sha256Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(prefix));
    }
}

/// Passes the `u64` written by [`Sha256Key::hash`] through unchanged.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than `Sha256Key` is hashed; stay correct anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

fn sha256_key(digest: &Digest) -> Option<Sha256Key> {
    if digest.algorithm() != "sha256" {
        return None;
    }
    // `Digest` guarantees 64 lowercase hex digits for sha256, so this cannot fail; a failure
    // would only send the digest to the general set.
    decode_sha256(digest.encoded()).map(Sha256Key)
}

/// A set of digests.
#[derive(Clone, Default)]
pub struct DigestSet {
    sha256: HashSet<Sha256Key, BuildHasherDefault<PrefixHasher>>,
    other: HashSet<Digest>,
}

impl std::fmt::Debug for DigestSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestSet").field("len", &self.len()).finish()
    }
}

impl DigestSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// `true` when the digest was not in the set yet.
    pub fn insert(&mut self, digest: &Digest) -> bool {
        match sha256_key(digest) {
            Some(key) => self.sha256.insert(key),
            None => self.other.insert(digest.clone()),
        }
    }

    /// Inserts `<algorithm>:<encoded>` without building a [`Digest`] for sha256 (the common
    /// case when listing every blob of a registry). `None` when it is not a valid digest.
    pub fn insert_parts(&mut self, algorithm: &str, encoded: &str) -> Option<bool> {
        if algorithm == "sha256" {
            return decode_sha256(encoded).map(|key| self.sha256.insert(Sha256Key(key)));
        }
        let digest = Digest::parse(&format!("{algorithm}:{encoded}")).ok()?;
        Some(self.insert(&digest))
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        match sha256_key(digest) {
            Some(key) => self.sha256.contains(&key),
            None => self.other.contains(digest),
        }
    }

    pub fn len(&self) -> usize {
        self.sha256.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every digest, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Digest> + '_ {
        self.sha256
            .iter()
            // 64 lowercase hex digits always form a sha256 digest.
            .filter_map(|key| Digest::parse(&format!("sha256:{}", hex::encode(key.0))).ok())
            .chain(self.other.iter().cloned())
    }

    /// Marks every digest of this set that `table` holds.
    pub fn mark_in(&self, table: &BlobTable) {
        for key in &self.sha256 {
            if let Some(bit) = table.sha256.get(key) {
                bit.store(true, Ordering::Relaxed);
            }
        }
        for digest in &self.other {
            table.mark(digest);
        }
    }

    /// Adds every digest of `other`, reusing the larger table.
    pub fn merge(mut self, mut other: DigestSet) -> DigestSet {
        if self.sha256.len() < other.sha256.len() {
            std::mem::swap(&mut self, &mut other);
        }
        self.sha256.extend(other.sha256);
        self.other.extend(other.other);
        self
    }
}

impl<'a> Extend<&'a Digest> for DigestSet {
    fn extend<I: IntoIterator<Item = &'a Digest>>(&mut self, iter: I) {
        for digest in iter {
            self.insert(digest);
        }
    }
}

/// Every blob found under `blobs/`, each with a mark bit. Marking threads set bits
/// concurrently without a lock: the table's shape is fixed once the listing is done. One table
/// instead of a set of blobs plus a set of marks halves the memory of a collection.
#[derive(Default)]
pub struct BlobTable {
    sha256: HashMap<Sha256Key, AtomicBool, BuildHasherDefault<PrefixHasher>>,
    other: HashMap<Digest, AtomicBool>,
}

impl std::fmt::Debug for BlobTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobTable").field("len", &self.len()).finish()
    }
}

impl BlobTable {
    /// Adds the blob `<algorithm>:<encoded>` (unmarked). `None` when it is not a valid digest.
    pub fn insert_parts(&mut self, algorithm: &str, encoded: &str) -> Option<()> {
        if algorithm == "sha256" {
            let key = Sha256Key(decode_sha256(encoded)?);
            self.sha256.entry(key).or_default();
        } else {
            let digest = Digest::parse(&format!("{algorithm}:{encoded}")).ok()?;
            self.other.entry(digest).or_default();
        }
        Some(())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        match sha256_key(digest) {
            Some(key) => self.sha256.contains_key(&key),
            None => self.other.contains_key(digest),
        }
    }

    /// Marks `digest`; `false` when the table does not hold it (nothing to mark).
    pub fn mark(&self, digest: &Digest) -> bool {
        let bit = match sha256_key(digest) {
            Some(key) => self.sha256.get(&key),
            None => self.other.get(digest),
        };
        bit.map(|bit| bit.store(true, Ordering::Relaxed)).is_some()
    }

    pub fn len(&self) -> usize {
        self.sha256.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The blobs nobody marked, in no particular order.
    pub fn unmarked(&self) -> Vec<Digest> {
        self.sha256
            .iter()
            .filter(|(_, bit)| !bit.load(Ordering::Relaxed))
            // 64 lowercase hex digits always form a sha256 digest.
            .filter_map(|(key, _)| Digest::parse(&format!("sha256:{}", hex::encode(key.0))).ok())
            .chain(
                self.other
                    .iter()
                    .filter(|(_, bit)| !bit.load(Ordering::Relaxed))
                    .map(|(d, _)| d.clone()),
            )
            .collect()
    }

    /// Adds every blob of `other`, reusing the larger table.
    pub fn merge(mut self, mut other: BlobTable) -> BlobTable {
        if self.sha256.len() < other.sha256.len() {
            std::mem::swap(&mut self, &mut other);
        }
        self.sha256.extend(other.sha256);
        self.other.extend(other.other);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", hex::encode([n; 32]))).unwrap()
    }

    #[test]
    fn sha256_and_other_algorithms() {
        let mut set = DigestSet::new();
        assert!(set.insert(&d(1)));
        assert!(!set.insert(&d(1)));
        let other = Digest::parse(&format!("sha512:{}", hex::encode([7u8; 64]))).unwrap();
        assert!(set.insert(&other));
        assert!(set.contains(&d(1)) && set.contains(&other) && !set.contains(&d(2)));
        assert_eq!(set.len(), 2);

        let mut second = DigestSet::new();
        second.extend([&d(2), &d(3), &d(1)]);
        let merged = set.merge(second);
        assert_eq!(merged.len(), 4);
        assert!(merged.contains(&d(3)) && merged.contains(&other));
        let mut all: Vec<Digest> = merged.iter().collect();
        all.sort();
        let mut expected = vec![d(1), d(2), d(3), other];
        expected.sort();
        assert_eq!(all, expected);
    }

    #[test]
    fn insert_parts_accepts_what_digest_parse_accepts() {
        let mut set = DigestSet::new();
        let hex = "ab".repeat(32);
        assert_eq!(set.insert_parts("sha256", &hex), Some(true));
        assert_eq!(set.insert_parts("sha256", &hex), Some(false));
        assert!(set.contains(&Digest::parse(&format!("sha256:{hex}")).unwrap()));
        assert_eq!(set.insert_parts("sha256", &"AB".repeat(32)), None);
        assert_eq!(set.insert_parts("sha256", "abc"), None);
        assert_eq!(set.insert_parts("sha512", &"cd".repeat(64)), Some(true));
        assert_eq!(set.insert_parts("sha512", "xyz"), None);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn hex_decoding_matches_the_hex_crate() {
        let text = "0123456789abcdef".repeat(4);
        let mut expected = [0u8; 32];
        hex::decode_to_slice(&text, &mut expected).unwrap();
        assert_eq!(decode_sha256(&text), Some(expected));
        for bad in [
            "0123456789ABCDEF".repeat(4),
            format!("{}g", &text[..63]),
            text[..62].to_owned(),
        ] {
            assert_eq!(decode_sha256(&bad), None, "{bad}");
        }
    }

    #[test]
    fn digest_maps_work_with_owned_and_borrowed_keys() {
        let mut map: DigestMap<&Digest, u32> = DigestMap::default();
        let (a, b) = (d(1), d(2));
        map.insert(&a, 1);
        map.insert(&b, 2);
        assert_eq!(map.get(&a), Some(&1));
        assert_eq!(map.get(&d(2)).copied(), Some(2));
        assert_eq!(map.get(&d(3)), None);
    }

    #[test]
    fn blob_table_marks_present_blobs_only() {
        let mut table = BlobTable::default();
        table.insert_parts("sha256", &hex::encode([1u8; 32])).unwrap();
        table.insert_parts("sha256", &hex::encode([2u8; 32])).unwrap();
        table.insert_parts("sha512", &hex::encode([3u8; 64])).unwrap();
        assert!(table.insert_parts("sha256", "nope").is_none());
        let mut second = BlobTable::default();
        second.insert_parts("sha256", &hex::encode([4u8; 32])).unwrap();
        let table = table.merge(second);
        assert_eq!(table.len(), 4);

        assert!(table.mark(&d(1)));
        assert!(!table.mark(&d(9)), "absent blobs are not marked");
        let mut set = DigestSet::new();
        set.extend([&d(4), &d(8)]);
        set.mark_in(&table);
        let sha512 = Digest::parse(&format!("sha512:{}", hex::encode([3u8; 64]))).unwrap();
        let mut unmarked = table.unmarked();
        unmarked.sort();
        let mut expected = vec![d(2), sha512];
        expected.sort();
        assert_eq!(unmarked, expected);
        assert!(table.contains(&d(4)) && !table.contains(&d(8)));
    }

    #[test]
    fn digests_sharing_a_prefix_stay_distinct() {
        let a = Digest::parse(&format!("sha256:{}{}", "ab".repeat(8), "00".repeat(24))).unwrap();
        let b = Digest::parse(&format!("sha256:{}{}", "ab".repeat(8), "11".repeat(24))).unwrap();
        let mut set = DigestSet::new();
        set.insert(&a);
        assert!(!set.contains(&b));
        assert!(set.insert(&b));
        assert_eq!(set.len(), 2);
    }
}
