//! Credentials, `WWW-Authenticate` challenges and access scopes.
//!
//! Credentials are wrapped so they cannot leak through `Debug` or `Display`: nothing in regsweep
//! formats a password, and the logs only ever say which scheme was used.

use std::fmt;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
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
    fn scope_strings() {
        assert_eq!(
            Scope::repository("a/b", &["pull", "delete"]).to_string(),
            "repository:a/b:pull,delete"
        );
        assert_eq!(Scope::catalog().to_string(), "registry:catalog:*");
    }
}
