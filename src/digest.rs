//! Content digests (`algorithm:encoded`), as defined by the OCI image spec (`descriptor.md`).
//!
//! A [`Digest`] is always valid once constructed: the algorithm follows the spec grammar and, for
//! the registered algorithms `sha256` and `sha512`, the encoded part is lowercase hex of the right
//! length. Every digest regsweep computes itself is sha256.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated content digest such as `sha256:2cf2…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: String,
    /// Byte offset of the `:` separating algorithm and encoded part.
    colon: usize,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("`{0}` is not a digest: expected `algorithm:encoded`, e.g. `sha256:` followed by 64 hex digits")]
    MissingColon(String),
    #[error(
        "`{0}` is not a digest: the algorithm must be lowercase letters and digits, optionally joined by `+`, `.`, `_` or `-`"
    )]
    BadAlgorithm(String),
    #[error("`{0}` is not a digest: the encoded part may contain only letters, digits, `=`, `_` and `-`")]
    BadEncoded(String),
    #[error("`{digest}` is not a valid {algorithm} digest: expected {len} lowercase hex digits")]
    BadHex {
        digest: String,
        algorithm: &'static str,
        len: usize,
    },
}

impl Digest {
    /// Parses and validates a digest.
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        let Some(colon) = text.find(':') else {
            return Err(DigestError::MissingColon(text.to_owned()));
        };
        let (algorithm, encoded) = (&text[..colon], &text[colon + 1..]);
        if !valid_algorithm(algorithm) {
            return Err(DigestError::BadAlgorithm(text.to_owned()));
        }
        if encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
        {
            return Err(DigestError::BadEncoded(text.to_owned()));
        }
        let registered = match algorithm {
            "sha256" => Some(("sha256", 64)),
            "sha512" => Some(("sha512", 128)),
            _ => None,
        };
        if let Some((name, len)) = registered
            && (encoded.len() != len || !encoded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(DigestError::BadHex {
                digest: text.to_owned(),
                algorithm: name,
                len,
            });
        }
        Ok(Self {
            text: text.to_owned(),
            colon,
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Self {
        let text = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        Self { text, colon: 6 }
    }

    /// Whether `bytes` hash to this digest. Digests with an algorithm regsweep cannot compute
    /// (anything but sha256) are reported as not verifiable through `None`.
    pub fn verify(&self, bytes: &[u8]) -> Option<bool> {
        (self.algorithm() == "sha256").then(|| Self::sha256(bytes) == *self)
    }

    /// The algorithm, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The encoded part (hex for sha256).
    pub fn encoded(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The whole digest as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A short form for tables: the first 12 characters of the encoded part.
    pub fn short(&self) -> &str {
        let encoded = self.encoded();
        &encoded[..encoded.len().min(12)]
    }

    /// The tag that the OCI referrers tag schema uses for this digest (`sha256-<hex>`), under
    /// which cosign also stores `.sig`, `.att` and `.sbom` artifacts.
    pub fn referrers_tag(&self) -> String {
        format!("{}-{}", self.algorithm(), self.encoded())
    }

    /// The subject digest a referrer tag names, and what follows it: `sha256-<hex>` or
    /// `sha512-<hex>`, optionally followed by a suffix starting with `.` (cosign's `.sig`, `.att`,
    /// `.sbom`). The one definition of a referrer tag: retention, `inspect` and gc all ask here,
    /// so they never disagree about which tags follow a subject.
    pub fn from_referrer_tag(tag: &str) -> Option<(Self, &str)> {
        let (algorithm, rest) = tag.split_once('-')?;
        let len = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return None,
        };
        let encoded = rest.get(..len)?;
        let suffix = &rest[len..];
        if !(suffix.is_empty() || suffix.starts_with('.')) {
            return None;
        }
        let digest = Self::parse(&format!("{algorithm}:{encoded}")).ok()?;
        Some((digest, suffix))
    }
}

fn valid_algorithm(algorithm: &str) -> bool {
    // algorithm-component ([+._-] algorithm-component)*, component = [a-z0-9]+
    !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(Digest::sha256(b"").as_str(), EMPTY_SHA256);
        assert_eq!(Digest::parse(EMPTY_SHA256).unwrap(), Digest::sha256(b""));
    }

    #[test]
    fn accessors() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.encoded().len(), 64);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(d.referrers_tag(), format!("sha256-{}", d.encoded()));
    }

    #[test]
    fn referrer_tags_of_both_registered_algorithms() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(
            Digest::from_referrer_tag(&d.referrers_tag()),
            Some((d.clone(), ""))
        );
        let sig = format!("{}.sig", d.referrers_tag());
        assert_eq!(Digest::from_referrer_tag(&sig), Some((d.clone(), ".sig")));
        let long = Digest::parse(&format!("sha512:{}", "ab".repeat(64))).unwrap();
        let att = format!("{}.att", long.referrers_tag());
        assert_eq!(Digest::from_referrer_tag(&att), Some((long, ".att")));
        for not_one in [
            "latest".to_owned(),
            "v1-2".to_owned(),
            "sha256-abc".to_owned(),
            "sha256-abc.sig".to_owned(),
            format!("{}x", d.referrers_tag()),
            format!("sha512-{}", "ab".repeat(32)),
            format!("md5-{}", "ab".repeat(16)),
        ] {
            assert_eq!(Digest::from_referrer_tag(&not_one), None, "{not_one}");
        }
        assert_eq!(d.verify(b""), Some(true));
        assert_eq!(d.verify(b"x"), Some(false));
    }

    #[test]
    fn a_digest_of_another_algorithm_can_look_like_a_referrer_tag_of_a_sha256_subject() {
        // `sha256-<hex>.x` is a valid algorithm name (components joined by `-` and `.`), so its
        // tag form `sha256-<hex>.x-abc` reads as a referrer of `sha256:<hex>` with a suffix: the
        // tag decides, not the digest it was made from. (Found by the `reference` fuzz target.)
        let hex = "ab".repeat(32);
        let odd = Digest::parse(&format!("sha256-{hex}.x:abc")).unwrap();
        let subject = Digest::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(
            Digest::from_referrer_tag(&odd.referrers_tag()),
            Some((subject, ".x-abc"))
        );
    }

    #[test]
    fn rejects_bad_digests_with_the_rule() {
        assert!(matches!(
            Digest::parse("sha256"),
            Err(DigestError::MissingColon(_))
        ));
        assert!(matches!(
            Digest::parse("SHA256:abc"),
            Err(DigestError::BadAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse("sha256+:abc"),
            Err(DigestError::BadAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse("sha256:"),
            Err(DigestError::BadEncoded(_))
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::BadHex { .. })
        ));
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(Digest::parse(&upper), Err(DigestError::BadHex { .. })));
        assert!(matches!(
            Digest::parse("sha256:a/b"),
            Err(DigestError::BadEncoded(_))
        ));
    }

    #[test]
    fn accepts_other_algorithms_without_verifying_them() {
        let d = Digest::parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8").unwrap();
        assert_eq!(d.algorithm(), "multihash+base58");
        assert_eq!(d.verify(b""), None);
    }

    #[test]
    fn serde_round_trip() {
        let d: Digest = serde_json::from_str(&format!("\"{EMPTY_SHA256}\"")).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{EMPTY_SHA256}\""));
        assert!(serde_json::from_str::<Digest>("\"nope\"").is_err());
    }
}
