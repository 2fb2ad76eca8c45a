//! Registry addresses, repository names, tags and image references, checked against the grammars
//! of the OCI distribution spec and distribution's reference package.
//!
//! regsweep always talks to a registry the user names, so the first component of a reference is
//! always the registry host: `host[:port]/name[:tag][@digest]`. An optional `http://` or
//! `https://` prefix fixes the scheme. Every error names the rule that was broken.

use std::fmt;
use std::net::IpAddr;

use crate::digest::{Digest, DigestError};

/// Longest `host[:port]/name` most clients accept (distribution's `NameTotalLengthMax`).
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest tag allowed by the spec.
const TAG_LENGTH_MAX: usize = 128;

/// The URL scheme to reach a registry with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Https,
    Http,
}

/// A registry: `host[:port]`, with the scheme if the user wrote one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryAddr {
    host: String,
    scheme: Option<Scheme>,
}

/// A repository name such as `team/app` (without the registry). Only [`Repository::parse`] makes
/// one, so a value of this type is safe to put into a URL path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Repository(String);

/// A tag such as `v1.2.3`. Only [`Tag::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Tag(String);

/// What a manifest request names: a tag or a digest. Registry methods take this rather than a
/// string, so that a tag cannot be taken for a digest (or the other way round) and neither
/// reaches a URL path unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference<'a> {
    Tag(&'a Tag),
    Digest(&'a Digest),
}

/// A reference to an image: registry, repository, and a tag, a digest or both. The fields are
/// private so that every `ImageRef` comes from [`ImageRef::parse`], which guarantees a tag or a
/// digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    registry: RegistryAddr,
    repository: Repository,
    pin: Pin,
}

/// The tag, the digest or both of an [`ImageRef`]: never neither.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pin {
    Tag(Tag),
    Digest(Digest),
    Both(Tag, Digest),
}

/// A registry, optionally narrowed to one repository (`REGISTRY[/REPO]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub registry: RegistryAddr,
    pub repository: Option<Repository>,
}

/// Why a reference could not be parsed; each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "empty reference: expected REGISTRY[/REPOSITORY[:TAG][@DIGEST]], e.g. registry.example.com/team/app:v1"
    )]
    Empty,
    #[error("`{0}`: only http:// and https:// registry URLs are supported")]
    UnsupportedScheme(String),
    #[error(
        "`{input}`: `{host}` is not a valid registry host: expected a DNS name or IP address with an optional :port, e.g. registry.example.com:5000 or [::1]:5000"
    )]
    BadHost { input: String, host: String },
    #[error("`{input}`: names only a registry; expected REGISTRY/REPOSITORY, e.g. {input}/team/app")]
    MissingRepository { input: String },
    #[error(
        "`{input}`: repository name component `{component}` is invalid: components are lowercase letters and digits, separated by `.`, `_`, `__` or runs of `-`, and cannot be empty or start or end with a separator"
    )]
    BadNameComponent { input: String, component: String },
    #[error("`{input}`: registry and repository name together are {len} characters, over the limit of 255")]
    NameTooLong { input: String, len: usize },
    #[error(
        "`{input}`: tag `{tag}` is invalid: tags are 1 to 128 letters, digits, `_`, `.` and `-`, and do not start with `.` or `-`"
    )]
    BadTag { input: String, tag: String },
    #[error("`{input}`: {source}")]
    BadDigest {
        input: String,
        #[source]
        source: DigestError,
    },
    #[error("`{input}`: expected a repository without a tag or digest here (REGISTRY/REPOSITORY)")]
    UnexpectedTagOrDigest { input: String },
    #[error("`{input}`: expected a tag or digest, e.g. {input}:latest or {input}@sha256:…")]
    MissingTagOrDigest { input: String },
}

impl RegistryAddr {
    /// Parses `host[:port]`, optionally prefixed with `http://` or `https://` (a trailing `/` is
    /// allowed).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let (scheme, rest) = split_scheme(input)?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if host.contains('/') {
            return Err(ReferenceError::BadHost {
                input: input.to_owned(),
                host: host.to_owned(),
            });
        }
        Self::from_parts(input, host, scheme)
    }

    fn from_parts(input: &str, host: &str, scheme: Option<Scheme>) -> Result<Self, ReferenceError> {
        if !valid_host(host) {
            return Err(ReferenceError::BadHost {
                input: input.to_owned(),
                host: host.to_owned(),
            });
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            scheme,
        })
    }

    /// `host[:port]` as written (lowercased).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The scheme the user asked for, if any.
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// The host the API is served from: Docker Hub's `docker.io` names are served by
    /// `registry-1.docker.io`; every other host serves its own API.
    pub fn api_host(&self) -> &str {
        match self.host.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        }
    }

    /// The host without the port (IPv6 brackets removed).
    pub fn hostname(&self) -> &str {
        let host = self.host.as_str();
        if let Some(rest) = host.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    }

    /// Whether the host is on loopback (`localhost`, 127.0.0.0/8, `::1`): such registries are
    /// tried over HTTPS first and then over plain HTTP, as docker does.
    pub fn is_loopback(&self) -> bool {
        let name = self.hostname();
        name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for RegistryAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

impl Repository {
    /// Validates a repository name (without registry) against the spec grammar.
    pub fn parse(name: &str) -> Result<Self, ReferenceError> {
        validate_name(name, name)?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Repository {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<&str> for Tag {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<Repository> for String {
    fn from(repository: Repository) -> Self {
        repository.0
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Tag {
    /// Validates a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    pub fn parse(tag: &str) -> Result<Self, ReferenceError> {
        if valid_tag(tag) {
            Ok(Self(tag.to_owned()))
        } else {
            Err(ReferenceError::BadTag {
                input: tag.to_owned(),
                tag: tag.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Tag> for String {
    fn from(tag: Tag) -> Self {
        tag.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> Reference<'a> {
    /// The tag or digest as it goes into the URL path.
    pub fn as_str(&self) -> &'a str {
        match self {
            Reference::Tag(tag) => tag.as_str(),
            Reference::Digest(digest) => digest.as_str(),
        }
    }

    /// The digest, when the reference is one (the answer must then hash to it).
    pub fn digest(&self) -> Option<&'a Digest> {
        match self {
            Reference::Tag(_) => None,
            Reference::Digest(digest) => Some(digest),
        }
    }
}

impl<'a> From<&'a Tag> for Reference<'a> {
    fn from(tag: &'a Tag) -> Self {
        Reference::Tag(tag)
    }
}

impl<'a> From<&'a Digest> for Reference<'a> {
    fn from(digest: &'a Digest) -> Self {
        Reference::Digest(digest)
    }
}

impl fmt::Display for Reference<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ImageRef {
    /// Parses `[scheme://]host[:port]/name[:tag][@digest]`; a tag or a digest (or both) is
    /// required.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let parsed = parse_full(input)?;
        let (Some(repository), tag, digest) = (parsed.repository, parsed.tag, parsed.digest) else {
            return Err(ReferenceError::MissingRepository {
                input: input.to_owned(),
            });
        };
        let pin = match (tag, digest) {
            (Some(tag), Some(digest)) => Pin::Both(tag, digest),
            (Some(tag), None) => Pin::Tag(tag),
            (None, Some(digest)) => Pin::Digest(digest),
            (None, None) => {
                return Err(ReferenceError::MissingTagOrDigest {
                    input: input.to_owned(),
                });
            }
        };
        Ok(Self {
            registry: parsed.registry,
            repository,
            pin,
        })
    }

    pub fn registry(&self) -> &RegistryAddr {
        &self.registry
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    pub fn tag(&self) -> Option<&Tag> {
        match &self.pin {
            Pin::Tag(tag) | Pin::Both(tag, _) => Some(tag),
            Pin::Digest(_) => None,
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        match &self.pin {
            Pin::Digest(digest) | Pin::Both(_, digest) => Some(digest),
            Pin::Tag(_) => None,
        }
    }

    /// What to ask the registry for: the digest when there is one (it pins the content), else
    /// the tag.
    pub fn reference(&self) -> Reference<'_> {
        match &self.pin {
            Pin::Digest(digest) | Pin::Both(_, digest) => Reference::Digest(digest),
            Pin::Tag(tag) => Reference::Tag(tag),
        }
    }

    /// The registry, taking the reference apart.
    pub fn into_registry(self) -> RegistryAddr {
        self.registry
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = self.tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = self.digest() {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Location {
    /// Parses `REGISTRY[/REPOSITORY]`; a tag or digest is an error.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let parsed = parse_full(input)?;
        if parsed.tag.is_some() || parsed.digest.is_some() {
            return Err(ReferenceError::UnexpectedTagOrDigest {
                input: input.to_owned(),
            });
        }
        Ok(Self {
            registry: parsed.registry,
            repository: parsed.repository,
        })
    }

    /// Parses `REGISTRY/REPOSITORY`, where the repository is required.
    pub fn parse_repository(input: &str) -> Result<(RegistryAddr, Repository), ReferenceError> {
        let location = Self::parse(input)?;
        match location.repository {
            Some(repository) => Ok((location.registry, repository)),
            None => Err(ReferenceError::MissingRepository {
                input: input.to_owned(),
            }),
        }
    }
}

struct Parsed {
    registry: RegistryAddr,
    repository: Option<Repository>,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

fn parse_full(input: &str) -> Result<Parsed, ReferenceError> {
    if input.trim().is_empty() {
        return Err(ReferenceError::Empty);
    }
    let (scheme, rest) = split_scheme(input)?;
    let rest = rest.trim_end_matches('/');
    let Some((host, path)) = rest.split_once('/') else {
        return Ok(Parsed {
            registry: RegistryAddr::from_parts(input, rest, scheme)?,
            repository: None,
            tag: None,
            digest: None,
        });
    };
    let registry = RegistryAddr::from_parts(input, host, scheme)?;
    let (path, digest) = match path.rsplit_once('@') {
        Some((path, digest)) => {
            let digest = Digest::parse(digest).map_err(|source| ReferenceError::BadDigest {
                input: input.to_owned(),
                source,
            })?;
            (path, Some(digest))
        }
        None => (path, None),
    };
    let (name, tag) = match path.rsplit_once(':') {
        Some((name, tag)) => {
            if !valid_tag(tag) {
                return Err(ReferenceError::BadTag {
                    input: input.to_owned(),
                    tag: tag.to_owned(),
                });
            }
            (name, Some(Tag(tag.to_owned())))
        }
        None => (path, None),
    };
    validate_name(input, name)?;
    let total = registry.host.len() + 1 + name.len();
    if total > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong {
            input: input.to_owned(),
            len: total,
        });
    }
    Ok(Parsed {
        registry,
        repository: Some(Repository(name.to_owned())),
        tag,
        digest,
    })
}

fn split_scheme(input: &str) -> Result<(Option<Scheme>, &str), ReferenceError> {
    if let Some(rest) = input.strip_prefix("https://") {
        Ok((Some(Scheme::Https), rest))
    } else if let Some(rest) = input.strip_prefix("http://") {
        Ok((Some(Scheme::Http), rest))
    } else if input.contains("://") {
        Err(ReferenceError::UnsupportedScheme(input.to_owned()))
    } else {
        Ok((None, input))
    }
}

fn validate_name(input: &str, name: &str) -> Result<(), ReferenceError> {
    for component in name.split('/') {
        if !valid_name_component(component) {
            return Err(ReferenceError::BadNameComponent {
                input: input.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_name_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or any number of `-`.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_LENGTH_MAX
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A DNS name or IPv4 address with optional `:port`, or a bracketed IPv6 address with optional
/// `:port`.
fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return false;
    }
    if host.starts_with('[') {
        return true;
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_full_references() {
        let r = ImageRef::parse(&format!("localhost:5000/team/app:v1.2@{DIGEST}")).unwrap();
        assert_eq!(r.registry().host(), "localhost:5000");
        assert_eq!(r.repository().as_str(), "team/app");
        assert_eq!(r.tag().unwrap().as_str(), "v1.2");
        assert_eq!(r.digest().unwrap().as_str(), DIGEST);
        assert_eq!(r.reference(), Reference::Digest(r.digest().unwrap()));
        assert_eq!(r.to_string(), format!("localhost:5000/team/app:v1.2@{DIGEST}"));
        let r = ImageRef::parse("http://127.0.0.1:5000/app:latest").unwrap();
        assert_eq!(r.registry().scheme(), Some(Scheme::Http));
        assert_eq!(r.reference().as_str(), "latest");
        assert_eq!(r.reference(), Reference::Tag(&Tag::parse("latest").unwrap()));
    }

    #[test]
    fn references_keep_tags_and_digests_apart() {
        let tag = Tag::parse("v1").unwrap();
        let digest = Digest::parse(DIGEST).unwrap();
        let by_tag = Reference::from(&tag);
        let by_digest = Reference::from(&digest);
        assert_eq!((by_tag.as_str(), by_tag.digest()), ("v1", None));
        assert_eq!((by_digest.as_str(), by_digest.digest()), (DIGEST, Some(&digest)));
        assert_eq!(by_digest.to_string(), DIGEST);
        // A tag that looks like a digest's hex is still a tag.
        let hexlike = Tag::parse(&DIGEST[7..]).unwrap();
        assert_eq!(Reference::from(&hexlike).digest(), None);
        let only_digest = ImageRef::parse(&format!("r.io/app@{DIGEST}")).unwrap();
        assert_eq!((only_digest.tag(), only_digest.digest()), (None, Some(&digest)));
    }

    #[test]
    fn locations() {
        let l = Location::parse("registry.example.com").unwrap();
        assert!(l.repository.is_none());
        let l = Location::parse("https://registry.example.com:443/a/b/c/").unwrap();
        assert_eq!(l.repository.unwrap().as_str(), "a/b/c");
        assert!(matches!(
            Location::parse("r.example.com/app:v1"),
            Err(ReferenceError::UnexpectedTagOrDigest { .. })
        ));
        assert!(matches!(
            Location::parse_repository("r.example.com"),
            Err(ReferenceError::MissingRepository { .. })
        ));
    }

    #[test]
    fn name_grammar() {
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "a0/b1/c2", "library/ubuntu"] {
            assert!(Repository::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["A", "a..b", "a___b", "_a", "a-", "a/", "/a", "a//b", "a.-b", ""] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
        let err = ImageRef::parse("reg.io/Team/app:v1").unwrap_err();
        assert!(err.to_string().contains("`Team`"), "{err}");
    }

    #[test]
    fn tag_grammar() {
        assert!(Tag::parse("v1.2.3-rc_1").is_ok());
        assert!(Tag::parse("_x").is_ok());
        assert!(Tag::parse(".x").is_err());
        assert!(Tag::parse("-x").is_err());
        assert!(Tag::parse(&"a".repeat(128)).is_ok());
        assert!(Tag::parse(&"a".repeat(129)).is_err());
        assert!(matches!(
            ImageRef::parse("reg.io/app:v+1"),
            Err(ReferenceError::BadTag { .. })
        ));
    }

    #[test]
    fn hosts() {
        for ok in [
            "localhost",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[::1]",
            "my-reg.example.com:443",
        ] {
            let r = RegistryAddr::parse(ok).unwrap();
            assert_eq!(r.host(), ok);
        }
        for bad in [
            "-bad.com",
            "host:0",
            "host:99999",
            "ho_st",
            "[::1",
            "[zz]:1",
            "host:",
        ] {
            assert!(RegistryAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            RegistryAddr::parse("ftp://x"),
            Err(ReferenceError::UnsupportedScheme(_))
        ));
        assert!(matches!(RegistryAddr::parse(""), Err(ReferenceError::Empty)));
    }

    #[test]
    fn loopback_detection() {
        for lo in ["localhost:5000", "127.0.0.1", "127.9.9.9:80", "[::1]:5000"] {
            assert!(RegistryAddr::parse(lo).unwrap().is_loopback(), "{lo}");
        }
        for remote in ["example.com", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!RegistryAddr::parse(remote).unwrap().is_loopback(), "{remote}");
        }
        assert_eq!(RegistryAddr::parse("[::1]:5000").unwrap().hostname(), "::1");
    }

    #[test]
    fn docker_hub_api_host() {
        assert_eq!(
            RegistryAddr::parse("docker.io").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(RegistryAddr::parse("ghcr.io").unwrap().api_host(), "ghcr.io");
    }

    #[test]
    fn digest_and_length_errors() {
        assert!(matches!(
            ImageRef::parse("r.io/app@sha256:xyz"),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            ImageRef::parse("r.io/app"),
            Err(ReferenceError::MissingTagOrDigest { .. })
        ));
        let long = format!("r.io/{}:v1", "a".repeat(260));
        assert!(matches!(
            ImageRef::parse(&long),
            Err(ReferenceError::NameTooLong { .. })
        ));
    }
}
