//! Credentials, `WWW-Authenticate` challenges and access scopes.
//!
//! Credentials are wrapped so they cannot leak through `Debug` or `Display`: nothing in regsweep
//! formats a password, and the logs only ever say which scheme was used.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

/// A secret string whose `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for building an `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A username and password for HTTP basic authentication (or to obtain tokens).
///
/// An identity token (docker's `identitytoken`, an OAuth2 refresh token) is held with the username
/// [`IDENTITY_TOKEN_USER`] and the token as the password, which is how docker's credential helpers
/// hand one over: it is never sent as basic credentials, only to the token server's OAuth2
/// endpoint as `grant_type=refresh_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// The username docker's credential-helper protocol uses for "the secret is an identity token".
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// An identity (refresh) token, exchanged for access tokens with the OAuth2 POST flow.
    pub fn identity_token(token: impl Into<String>) -> Self {
        Self {
            username: IDENTITY_TOKEN_USER.to_owned(),
            password: Secret::new(token),
        }
    }

    pub fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USER
    }

    /// Who these credentials are, for messages: `user `alice``, or `an identity token`.
    pub fn describe(&self) -> String {
        if self.is_identity_token() {
            "the identity token".to_owned()
        } else {
            format!("user `{}`", self.username)
        }
    }
}

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased: `basic`, `bearer`, …
    pub scheme: String,
    /// Parameters with lowercased names, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a `WWW-Authenticate` header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed WWW-Authenticate header `{header}`: {reason}")]
pub struct ChallengeError {
    pub header: String,
    pub reason: &'static str,
}

/// Parses a `WWW-Authenticate` header value into its challenges (RFC 7235 §4.1): a header may
/// hold several challenges, parameters may be quoted strings with backslash escapes, and a
/// parameter value may itself contain commas (`scope="repository:a:pull,push"`).
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let err = |reason| ChallengeError {
        header: header.chars().take(200).collect(),
        reason,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let token_len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        if token_len == 0 {
            return Err(err("expected an auth scheme or parameter name"));
        }
        let token = &rest[..token_len];
        let after = rest[token_len..].trim_start_matches([' ', '\t']);
        if let Some(value_part) = after.strip_prefix('=') {
            // A parameter of the current challenge.
            let Some(current) = challenges.last_mut() else {
                return Err(err("parameter before any auth scheme"));
            };
            let value_part = value_part.trim_start_matches([' ', '\t']);
            let (value, remainder) = if let Some(quoted) = value_part.strip_prefix('"') {
                parse_quoted(quoted).ok_or_else(|| err("unterminated quoted string"))?
            } else {
                let end = value_part.find([',', ' ', '\t']).unwrap_or(value_part.len());
                (value_part[..end].to_owned(), &value_part[end..])
            };
            current.params.push((token.to_ascii_lowercase(), value));
            rest = remainder.trim_start_matches([' ', '\t']);
            if !rest.is_empty() && !rest.starts_with(',') {
                // A new challenge may follow after whitespace only when the next token is a scheme.
                let next_len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
                let next_after = rest[next_len..].trim_start();
                if next_len == 0 || next_after.starts_with('=') {
                    return Err(err("expected `,` between parameters"));
                }
            }
        } else {
            challenges.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
            rest = after;
        }
    }
    if challenges.is_empty() {
        return Err(err("no challenge"));
    }
    Ok(challenges)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses the inside of a quoted string (after the opening quote); returns the unescaped value and
/// the text after the closing quote.
fn parse_quoted(input: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = input.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &input[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// An access scope as token servers understand it: `repository:team/app:pull,delete` or
/// `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        Self {
            resource_type: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    pub fn catalog() -> Self {
        Self {
            resource_type: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    /// Parses one resource scope, `type[(class)]:name:action[,action]*` (distribution's
    /// `spec/auth/scope.md`). The name may hold a `host:port/` prefix, so the type ends at the
    /// first `:` and the actions start after the last one. A class is dropped (it is deprecated
    /// and ignored by registries).
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        let err = |reason| ScopeError {
            scope: text.chars().take(200).collect(),
            reason,
        };
        let (resource_type, rest) = text
            .split_once(':')
            .ok_or_else(|| err("expected TYPE:NAME:ACTIONS"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| err("expected TYPE:NAME:ACTIONS"))?;
        let resource_type = resource_type.split('(').next().unwrap_or_default();
        let valid_type = !resource_type.is_empty()
            && resource_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_type {
            return Err(err("the resource type must be letters and digits"));
        }
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("the resource name is empty or holds whitespace"));
        }
        let actions: Vec<String> = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if actions
            .iter()
            .any(|a| !a.chars().all(|c| c.is_ascii_lowercase() || c == '*'))
        {
            return Err(err("actions are lowercase words or `*`"));
        }
        Ok(Self {
            resource_type: resource_type.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }

    /// Parses a space-separated scope list, as in a challenge's `scope` parameter or an OAuth2
    /// token response's `scope` field.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, ScopeError> {
        text.split_whitespace().map(Self::parse).collect()
    }

    /// Whether `other` names the same resource (type and name).
    pub fn same_resource(&self, other: &Scope) -> bool {
        self.resource_type == other.resource_type && self.name == other.name
    }

    /// The actions of this scope that `granted` does not allow, in this scope's order. A granted
    /// `*` allows every action on its resource.
    pub fn missing_from(&self, granted: &[Scope]) -> Vec<String> {
        let allowed: Vec<&str> = granted
            .iter()
            .filter(|g| g.same_resource(self))
            .flat_map(|g| g.actions.iter().map(String::as_str))
            .collect();
        if allowed.contains(&"*") {
            return Vec::new();
        }
        self.actions
            .iter()
            .filter(|a| !allowed.contains(&a.as_str()))
            .cloned()
            .collect()
    }
}

/// Adds `extra` to `scopes`: actions on a resource already present are merged into it (in
/// first-seen order), other resources are appended. Returns whether anything was added.
pub fn merge_scopes(scopes: &mut Vec<Scope>, extra: &[Scope]) -> bool {
    let mut changed = false;
    for wanted in extra {
        match scopes.iter_mut().find(|s| s.same_resource(wanted)) {
            Some(existing) => {
                for action in &wanted.actions {
                    if !existing.actions.contains(action) {
                        existing.actions.push(action.clone());
                        changed = true;
                    }
                }
            }
            None => {
                scopes.push(wanted.clone());
                changed = true;
            }
        }
    }
    changed
}

/// A space-separated list, as token requests and messages show scopes.
pub fn scope_list(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a scope string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope `{scope}`: {reason}")]
pub struct ScopeError {
    pub scope: String,
    pub reason: &'static str,
}

/// Decodes base64 in the standard or the URL-safe alphabet, padded or not (docker's `auth`
/// fields are standard and padded, JWT segments URL-safe and unpadded). `None` when the input is
/// not base64.
pub(crate) fn base64_decode(input: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::alphabet;
    use base64::engine::general_purpose::{GeneralPurpose, PAD_INDIFFERENT};
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, PAD_INDIFFERENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, PAD_INDIFFERENT);
    let input = input.trim();
    STANDARD.decode(input).or_else(|_| URL_SAFE.decode(input)).ok()
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.resource_type,
            self.name,
            self.actions.join(",")
        )
    }
}

/// Whether credentials may go to `realm` for a registry at `registry`: over HTTPS always; over
/// plain HTTP only when both the realm and the registry are plain HTTP on loopback (a test or
/// development setup on one machine), or when the user explicitly allowed insecure auth.
pub fn may_send_credentials(registry: &Url, realm: &Url, allow_insecure: bool) -> bool {
    realm.scheme() == "https"
        || allow_insecure
        || (registry.scheme() == "http" && is_loopback_url(registry) && is_loopback_url(realm))
}

/// Whether basic credentials may go to the registry at `registry` itself: over HTTPS, to
/// loopback, or when insecure auth was allowed.
pub fn may_send_basic(registry: &Url, allow_insecure: bool) -> bool {
    registry.scheme() == "https" || is_loopback_url(registry) || allow_insecure
}

/// Whether a URL's host is on loopback (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_url(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials {
            username: "u".into(),
            password: Secret::new("canary-123"),
        };
        assert!(!format!("{c:?}").contains("canary"));
        assert_eq!(c.password.to_string(), "***");
        assert_eq!(c.password.expose(), "canary-123");
    }

    #[test]
    fn parses_basic() {
        let c = parse_challenges(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("basic-realm"));
    }

    #[test]
    fn parses_bearer_with_scope_list_and_error() {
        let h = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push repository:other:pull",error="insufficient_scope""#;
        let c = parse_challenges(h).unwrap();
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:team/app:pull,push repository:other:pull")
        );
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn parses_several_challenges_and_odd_spacing() {
        let h = r#"Bearer realm="r", service=s , Basic realm="b\"q""#;
        let c = parse_challenges(h).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("service"), Some("s"));
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].param("realm"), Some("b\"q"));
        let c = parse_challenges("Negotiate").unwrap();
        assert_eq!(c[0].scheme, "negotiate");
        assert!(c[0].params.is_empty());
    }

    #[test]
    fn rejects_malformed_headers_without_panicking() {
        for bad in [
            "",
            "   ",
            "=x",
            r#"Bearer realm="unterminated"#,
            "realm=x",
            "Bearer a=b c=d",
            "\u{e9}",
        ] {
            assert!(parse_challenges(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_scopes_with_ports_classes_and_lists() {
        let s = Scope::parse("repository:localhost:5000/team/app:pull,push").unwrap();
        assert_eq!(s.resource_type, "repository");
        assert_eq!(s.name, "localhost:5000/team/app");
        assert_eq!(s.actions, ["pull", "push"]);
        let s = Scope::parse("repository(plugin):vieux/sshfs:pull").unwrap();
        assert_eq!(s.resource_type, "repository");
        assert_eq!(s.to_string(), "repository:vieux/sshfs:pull");
        assert_eq!(Scope::parse("registry:catalog:*").unwrap(), Scope::catalog());
        let list = Scope::parse_list(" repository:a:pull  repository:b:delete ").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].actions, ["delete"]);
        for bad in [
            "",
            "repository",
            "repository:a",
            ":a:pull",
            "repository::pull",
            "repository:a:PULL",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_actions_and_merging() {
        let want = Scope::repository("team/app", &["pull", "delete"]);
        let granted = vec![
            Scope::repository("team/app", &["pull"]),
            Scope::repository("other", &["delete"]),
        ];
        assert_eq!(want.missing_from(&granted), ["delete"]);
        assert_eq!(want.missing_from(&[]), ["pull", "delete"]);
        assert!(
            want.missing_from(&[Scope::repository("team/app", &["*"])])
                .is_empty()
        );
        assert!(Scope::catalog().missing_from(&[Scope::catalog()]).is_empty());

        let mut scopes = vec![Scope::repository("team/app", &["delete"])];
        assert!(merge_scopes(
            &mut scopes,
            &Scope::parse_list("repository:team/app:pull,push,delete").unwrap()
        ));
        assert_eq!(scope_list(&scopes), "repository:team/app:delete,pull,push");
        assert!(!merge_scopes(
            &mut scopes,
            &[Scope::repository("team/app", &["pull"])]
        ));
        assert!(merge_scopes(&mut scopes, &[Scope::catalog()]));
        assert_eq!(scopes.len(), 2);
    }

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(base64_decode("YWxpY2U6czNjcmV0").unwrap(), b"alice:s3cret");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm8").unwrap(), b"fo");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode("+/8=").unwrap(), [0xfb, 0xff]);
        for bad in ["Z", "Zm9v!", "Zg===", "Zm\u{e9}"] {
            assert!(base64_decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn identity_tokens_are_marked() {
        let c = Credentials::identity_token("refresh-canary");
        assert!(c.is_identity_token());
        assert_eq!(c.describe(), "the identity token");
        assert!(!format!("{c:?}").contains("refresh-canary"));
        assert_eq!(Credentials::new("bob", "x").describe(), "user `bob`");
    }

    #[test]
    fn challenge_parser_never_panics() {
        // Deterministic pseudo-random headers built from the characters that matter to the parser.
        let alphabet: Vec<char> = "Bearer Basic realm=\"\\,  =\t scope:é/".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((state >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            let _ = parse_challenges(&text);
        }
    }

    #[test]
    fn scope_strings() {
        assert_eq!(
            Scope::repository("a/b", &["pull", "delete"]).to_string(),
            "repository:a/b:pull,delete"
        );
        assert_eq!(Scope::catalog().to_string(), "registry:catalog:*");
    }
    #[test]
    fn credentials_go_to_realms_only_over_https_or_loopback_http() {
        let url = |s| Url::parse(s).unwrap();
        let plain_local = url("http://127.0.0.1:5000/");
        let tls_local = url("https://127.0.0.1:5000/");
        let remote = url("https://registry.example.com/");
        let plain_remote = url("http://registry.example.com/");
        assert!(may_send_credentials(
            &remote,
            &url("https://auth.example.com/token"),
            false
        ));
        assert!(may_send_credentials(
            &plain_local,
            &url("https://auth.example.com/t"),
            false
        ));
        assert!(may_send_credentials(
            &plain_local,
            &url("http://localhost:9/token"),
            false
        ));
        assert!(may_send_credentials(
            &plain_local,
            &url("http://[::1]:9/token"),
            false
        ));
        assert!(!may_send_credentials(
            &tls_local,
            &url("http://127.0.0.1:9/token"),
            false
        ));
        assert!(!may_send_credentials(
            &remote,
            &url("http://auth.example.com/token"),
            false
        ));
        assert!(!may_send_credentials(
            &plain_remote,
            &url("http://auth.example.com/t"),
            false
        ));
        assert!(!may_send_credentials(
            &plain_local,
            &url("http://auth.example.com/t"),
            false
        ));
        assert!(may_send_credentials(
            &remote,
            &url("http://auth.example.com/t"),
            true
        ));
    }
}
