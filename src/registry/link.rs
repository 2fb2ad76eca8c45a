//! `Link: <url>; rel="next"` pagination (RFC 8288), as `_catalog`, `tags/list` and the referrers
//! API use it. The link is resolved against the request URL and followed only when it stays on the
//! registry's own origin, so a registry cannot send regsweep (and its credentials) elsewhere.

use reqwest::Url;

/// Why a `Link` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("malformed Link header `{0}`: expected `<URL>; rel=\"next\"`")]
    Malformed(String),
    #[error("Link header target `{0}` is not a valid URL")]
    BadUrl(String),
    #[error("Link header points to another host ({0}); refusing to follow it")]
    OtherOrigin(String),
    #[error("Link header target `{0}` is outside the registry API (/v2/); refusing to follow it")]
    OutsideApi(String),
}

/// Finds the `rel="next"` target in one or more `Link` header values.
pub fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Option<String>, LinkError> {
    for value in values {
        let mut rest = value.trim();
        while !rest.is_empty() {
            let Some(after_open) = rest.strip_prefix('<') else {
                return Err(LinkError::Malformed(shorten(value)));
            };
            let Some(close) = after_open.find('>') else {
                return Err(LinkError::Malformed(shorten(value)));
            };
            let target = &after_open[..close];
            if !is_uri_reference(target) {
                return Err(LinkError::Malformed(shorten(value)));
            }
            let params_and_more = &after_open[close + 1..];
            // Parameters run until the next `,` that starts another link (`, <`).
            let end = params_and_more.find(", <").or_else(|| params_and_more.find(",<"));
            let (params, next) = match end {
                Some(i) => (&params_and_more[..i], &params_and_more[i + 1..]),
                None => (params_and_more, ""),
            };
            let is_next = params.split(';').any(|p| {
                let Some((k, v)) = p.split_once('=') else {
                    return false;
                };
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Ok(Some(target.to_owned()));
            }
            rest = next.trim();
        }
    }
    Ok(None)
}

/// Resolves a link target against the URL of the request that returned it and checks that it
/// stays on the same origin (scheme, host and port) as that request.
pub fn resolve_same_origin(base: &Url, target: &str) -> Result<Url, LinkError> {
    let url = base
        .join(target)
        .map_err(|_| LinkError::BadUrl(shorten(target)))?;
    let same = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default();
    if !same {
        return Err(LinkError::OtherOrigin(origin(&url)));
    }
    if !url.path().starts_with("/v2/") {
        return Err(LinkError::OutsideApi(shorten(target)));
    }
    Ok(url)
}

/// `scheme://host:port` of a URL, with the port always named: a link to another port of the same
/// host is another origin, and naming only the host would hide that.
fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Whether `target` can be a URI reference (RFC 3986): not empty, and none of the characters
/// that may never appear in one unescaped (`<`, `>`, `"`, spaces, controls, and the rest of the
/// "unwise" set). A header like `<<<>>>` is garbage, not a relative path.
fn is_uri_reference(target: &str) -> bool {
    !target.is_empty()
        && target.chars().all(|c| {
            c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
        })
}

fn shorten(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_next() {
        assert_eq!(
            next_link([r#"</v2/_catalog?last=b&n=2>; rel="next""#])
                .unwrap()
                .as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            next_link([r#"<https://r/a?x=1>; rel="prev", <https://r/b?y=2>; rel=next; title="x""#])
                .unwrap()
                .as_deref(),
            Some("https://r/b?y=2")
        );
        assert_eq!(next_link([r#"</x>; rel="prev""#]).unwrap(), None);
        assert_eq!(next_link(Vec::<&str>::new()).unwrap(), None);
    }

    #[test]
    fn rejects_malformed() {
        assert!(next_link(["/v2/_catalog?last=b; rel=next"]).is_err());
        assert!(next_link(["</v2/_catalog; rel=next"]).is_err());
        assert!(next_link(["<<<>>>"]).is_err());
        assert!(next_link([r#"<<<>>>; rel="next""#]).is_err());
        assert!(next_link([r#"<>; rel="next""#]).is_err());
        assert!(next_link([r#"</v2/a b>; rel="next""#]).is_err());
    }

    #[test]
    fn other_origins_are_named_with_their_port() {
        let base = Url::parse("http://127.0.0.1:5000/v2/_catalog").unwrap();
        let err = resolve_same_origin(&base, "http://127.0.0.1:5001/v2/x").unwrap_err();
        assert_eq!(err, LinkError::OtherOrigin("http://127.0.0.1:5001".into()));
        assert!(err.to_string().contains("127.0.0.1:5001"), "{err}");
    }

    #[test]
    fn links_stay_inside_the_api() {
        let base = Url::parse("http://127.0.0.1:5000/v2/_catalog").unwrap();
        assert!(matches!(
            resolve_same_origin(&base, "/admin/delete-everything"),
            Err(LinkError::OutsideApi(_))
        ));
        assert!(matches!(
            resolve_same_origin(&base, "../../x"),
            Err(LinkError::OutsideApi(_))
        ));
    }

    #[test]
    fn resolves_relative_and_checks_origin() {
        let base = Url::parse("http://127.0.0.1:5000/v2/_catalog").unwrap();
        let next = resolve_same_origin(&base, "/v2/_catalog?last=a%2Fb&n=100").unwrap();
        assert_eq!(
            next.as_str(),
            "http://127.0.0.1:5000/v2/_catalog?last=a%2Fb&n=100"
        );
        assert!(resolve_same_origin(&base, "http://127.0.0.1:5000/v2/x").is_ok());
        assert!(matches!(
            resolve_same_origin(&base, "http://evil.example/v2/_catalog"),
            Err(LinkError::OtherOrigin(_))
        ));
        assert!(resolve_same_origin(&base, "http://127.0.0.1:5001/v2/x").is_err());
        assert!(resolve_same_origin(&base, "https://127.0.0.1:5000/v2/x").is_err());
        let https = Url::parse("https://r.example.com/v2/").unwrap();
        assert!(resolve_same_origin(&https, "https://r.example.com:443/v2/next").is_ok());
    }
}
