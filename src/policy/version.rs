//! Lenient versions, version ranges and natural name order.
//!
//! Tags are not strict SemVer: `v1.2.3`, `1.2`, `950` and `2024.01.15` are all versions here
//! (missing parts are 0, leading zeros are allowed). Versions compare by SemVer 2.0 precedence
//! (a pre-release sorts before its release: `2.0.0-rc1 < 2.0.0`; build metadata is ignored),
//! except that alphanumeric pre-release identifiers compare in natural order (`rc2 < rc10`), as
//! people number release candidates.
//!
//! A range is a list of comparators that must all hold (`>=1.2, <2`). A version written in a
//! range is read exactly like a tag (`1.2` is 1.2.0); wildcards (`1.2.*`) and `^`/`~` express
//! whole release lines. Unlike Cargo and npm, pre-releases get no special treatment: `<2.0.0`
//! matches `2.0.0-rc1`, because it is lower.

use std::cmp::Ordering;
use std::fmt;

/// A leniently parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pre: Vec<Ident>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Num(u64),
    Alpha(String),
}

impl Version {
    /// Parses `[v|V]MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`. `None` for anything else, including
    /// numbers too large for 64 bits and four-part versions.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let (text, _build) = match text.split_once('+') {
            Some((rest, build)) if valid_build(build) => (rest, Some(build)),
            Some(_) => return None,
            None => (text, None),
        };
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut parts = [0u64; 3];
        for (i, part) in core.split('.').enumerate() {
            if i == 3 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts[i] = part.parse().ok()?;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre.split('.').map(parse_ident).collect::<Option<Vec<_>>>()?,
        };
        Some(Self {
            major: parts[0],
            minor: parts[1],
            patch: parts[2],
            pre,
        })
    }

    /// Whether this is a pre-release (`1.0.0-rc1`).
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// SemVer precedence, with natural order for alphanumeric pre-release identifiers.
    pub fn precedence(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A release is higher than any of its pre-releases.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            })
    }

    /// The lowest version of a release: `X.Y.Z-0` (`0` is the lowest pre-release identifier), so
    /// that `< X.Y.Z-0` excludes the pre-releases of X.Y.Z.
    fn floor(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
            pre: vec![Ident::Num(0)],
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, ident) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match ident {
                Ident::Num(n) => write!(f, "{n}")?,
                Ident::Alpha(s) => f.write_str(s)?,
            }
        }
        Ok(())
    }
}

fn parse_ident(text: &str) -> Option<Ident> {
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Ident::Num);
    }
    // Tags may contain `_` where SemVer would not allow it (`1.2.3-rc_1`); accept it.
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .then(|| Ident::Alpha(text.to_owned()))
}

fn valid_build(build: &str) -> bool {
    !build.is_empty()
        && build
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn compare_pre(a: &[Ident], b: &[Ident]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x, y) {
            (Ident::Num(x), Ident::Num(y)) => x.cmp(y),
            // Numeric identifiers have lower precedence than alphanumeric ones.
            (Ident::Num(_), Ident::Alpha(_)) => Ordering::Less,
            (Ident::Alpha(_), Ident::Num(_)) => Ordering::Greater,
            (Ident::Alpha(x), Ident::Alpha(y)) => natural_cmp(x, y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// A version range: comparators that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    comparators: Vec<(Op, Version)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Why a range does not parse; the caller adds the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError(pub String);

impl Range {
    /// Parses comparators separated by commas or spaces. Each is `OP VERSION` with OP one of
    /// `=`, `==`, `!=`, `>`, `>=`, `<`, `<=`, `^`, `~` (none means `=`), or a wildcard (`*`,
    /// `1.*`, `1.2.x`).
    pub fn parse(text: &str) -> Result<Self, RangeError> {
        let mut comparators = Vec::new();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(RangeError("the range is empty".into()));
        }
        while !rest.is_empty() {
            let op_len = rest
                .find(|c: char| !matches!(c, '<' | '>' | '=' | '!' | '^' | '~'))
                .unwrap_or(rest.len());
            let (op, after) = rest.split_at(op_len);
            let after = after.trim_start();
            let version_len = after
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(after.len());
            let (version, after) = after.split_at(version_len);
            if version.is_empty() {
                return Err(RangeError(format!("`{op}` is not followed by a version")));
            }
            comparators.extend(comparator(op, version)?);
            rest = after.trim_start();
            if let Some(after_comma) = rest.strip_prefix(',') {
                rest = after_comma.trim_start();
                if rest.is_empty() {
                    return Err(RangeError("the range ends with a comma".into()));
                }
            }
        }
        Ok(Self { comparators })
    }

    /// Whether `version` satisfies every comparator.
    pub fn matches(&self, version: &Version) -> bool {
        self.comparators.iter().all(|(op, bound)| {
            let ord = version.precedence(bound);
            match op {
                Op::Eq => ord == Ordering::Equal,
                Op::Ne => ord != Ordering::Equal,
                Op::Gt => ord == Ordering::Greater,
                Op::Ge => ord != Ordering::Less,
                Op::Lt => ord == Ordering::Less,
                Op::Le => ord != Ordering::Greater,
            }
        })
    }
}

fn comparator(op: &str, version: &str) -> Result<Vec<(Op, Version)>, RangeError> {
    let bad_version = || {
        RangeError(format!(
            "`{version}` is not a version (a version is `[v]MAJOR[.MINOR[.PATCH]][-PRE]`, e.g. 1.2.3, v2, 1.2)"
        ))
    };
    let unprefixed = version.strip_prefix(['v', 'V']).unwrap_or(version);
    // The numeric part only: `1-rc.1` gives one part, not two.
    let core = unprefixed.split(['-', '+']).next().unwrap_or(unprefixed);
    let parts: Vec<&str> = core.split('.').collect();
    if let Some(wild) = parts.iter().position(|p| matches!(*p, "*" | "x" | "X")) {
        // A wildcard stands for the rest of the version: `1.2.*` is the whole 1.2 line,
        // pre-releases included.
        if !(op.is_empty() || op == "=" || op == "==") {
            return Err(RangeError(format!(
                "a wildcard version (`{version}`) cannot follow `{op}`; write it alone, e.g. `1.2.*`"
            )));
        }
        if wild != parts.len() - 1 || wild > 2 {
            return Err(RangeError(format!(
                "`{version}`: a wildcard must be the last part, e.g. `1.*` or `1.2.x`"
            )));
        }
        let mut fixed = [0u64; 2];
        for (slot, part) in fixed.iter_mut().zip(&parts[..wild]) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_version());
            }
            *slot = part.parse().map_err(|_| bad_version())?;
        }
        return Ok(match wild {
            0 => Vec::new(),
            1 => vec![
                (Op::Ge, Version::floor(fixed[0], 0, 0)),
                (Op::Lt, Version::floor(bump(fixed[0])?, 0, 0)),
            ],
            _ => vec![
                (Op::Ge, Version::floor(fixed[0], fixed[1], 0)),
                (Op::Lt, Version::floor(fixed[0], bump(fixed[1])?, 0)),
            ],
        });
    }
    let parsed = Version::parse(version).ok_or_else(bad_version)?;
    let given = parts.len().min(3);
    let simple = |op| Ok(vec![(op, parsed.clone())]);
    match op {
        "" | "=" | "==" => simple(Op::Eq),
        "!=" => simple(Op::Ne),
        ">" => simple(Op::Gt),
        ">=" => simple(Op::Ge),
        "<" => simple(Op::Lt),
        "<=" => simple(Op::Le),
        "^" => {
            // Cargo's caret: changes that do not modify the left-most non-zero part given.
            let (major, minor, patch) = (parsed.major, parsed.minor, parsed.patch);
            let upper = if major > 0 || given == 1 {
                Version::floor(bump(major)?, 0, 0)
            } else if minor > 0 || given == 2 {
                Version::floor(0, bump(minor)?, 0)
            } else {
                Version::floor(0, 0, bump(patch)?)
            };
            Ok(vec![(Op::Ge, parsed), (Op::Lt, upper)])
        }
        "~" => {
            // Tilde: patch updates if a minor version is given, else minor updates.
            let upper = if given == 1 {
                Version::floor(bump(parsed.major)?, 0, 0)
            } else {
                Version::floor(parsed.major, bump(parsed.minor)?, 0)
            };
            Ok(vec![(Op::Ge, parsed), (Op::Lt, upper)])
        }
        other => Err(RangeError(format!(
            "unknown operator `{other}`; use one of =, !=, >, >=, <, <=, ^, ~"
        ))),
    }
}

fn bump(n: u64) -> Result<u64, RangeError> {
    n.checked_add(1)
        .ok_or_else(|| RangeError(format!("{n} is too large to take the next version of")))
}

/// Natural order: runs of digits compare as numbers (`v2 < v10`), everything else byte by byte.
/// Ties (`v01` and `v1`) are broken by plain byte order, so the order is total and consistent
/// with string equality.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(cx), Some(cy)) if cx.is_ascii_digit() && cy.is_ascii_digit() => {
                let (dx, rx) = split_digits(x);
                let (dy, ry) = split_digits(y);
                let (tx, ty) = (trim_zeros(dx), trim_zeros(dy));
                let ord = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if ord != Ordering::Equal {
                    return ord;
                }
                (x, y) = (rx, ry);
            }
            (Some(cx), Some(cy)) => {
                if cx != cy {
                    return cx.cmp(cy);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b'0').unwrap_or(s.len());
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    fn range(text: &str) -> Range {
        Range::parse(text).unwrap_or_else(|e| panic!("{text}: {}", e.0))
    }

    #[test]
    fn lenient_parsing() {
        assert_eq!(v("v1.2.3").to_string(), "1.2.3");
        assert_eq!(v("1.2").to_string(), "1.2.0");
        assert_eq!(v("950").to_string(), "950.0.0");
        assert_eq!(v("V2").to_string(), "2.0.0");
        assert_eq!(v("2024.01.15").to_string(), "2024.1.15");
        assert_eq!(v("v2.0.0-rc1").to_string(), "2.0.0-rc1");
        assert_eq!(v("1.2.3-rc.1+build.5").to_string(), "1.2.3-rc.1");
        assert_eq!(v("1.2.3-rc_1").to_string(), "1.2.3-rc_1");
        assert!(v("1.2.3-alpine").is_prerelease());
        for bad in [
            "latest",
            "pr-12",
            "sha-abc",
            "",
            "v",
            "1.",
            ".1",
            "1..2",
            "1.2.3.4",
            "1.2.3-",
            "1.2.3-a..b",
            "1.2.3+",
            "v1.2-rc!",
            "99999999999999999999",
            "1.2.3 ",
            "main-1.2",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad:?} should not be a version");
        }
    }

    #[test]
    fn precedence() {
        let ordered = [
            "0.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc1",
            "1.0.0-rc2",
            "1.0.0-rc10",
            "1.0.0",
            "1.2",
            "v1.10",
            "2.0.0-rc1",
            "2.0.0",
            "950",
            "1002",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(v(pair[0]).precedence(&v(pair[1])), Ordering::Less, "{pair:?}");
            assert_eq!(v(pair[1]).precedence(&v(pair[0])), Ordering::Greater, "{pair:?}");
        }
        assert_eq!(v("1.2").precedence(&v("v1.2.0")), Ordering::Equal);
        assert_eq!(v("1.2.0+a").precedence(&v("1.2.0+b")), Ordering::Equal);
    }

    #[test]
    fn ranges() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (">=2.0.0", &["2.0.0", "v2.1", "950"], &["1.9.9", "v2.0.0-rc1"]),
            ("<2.0.0", &["1.9.9", "v2.0.0-rc1", "0.1"], &["2.0.0", "2.0.1"]),
            ("<2.0.0-0", &["1.9.9"], &["2.0.0-rc1", "2.0.0"]),
            (">=1.2, <2", &["1.2.0", "1.9"], &["1.1.9", "2.0.0"]),
            (">= 1.2 < 2", &["1.5"], &["2.1"]),
            ("1.2", &["1.2.0", "v1.2"], &["1.2.1"]),
            ("=1.2.3", &["1.2.3", "1.2.3+b"], &["1.2.4"]),
            ("!=1.2.3", &["1.2.4"], &["1.2.3"]),
            (">1.2", &["1.2.1"], &["1.2.0"]),
            ("<=1.2", &["1.2.0", "1.1"], &["1.2.1"]),
            ("1.2.*", &["1.2.0", "1.2.9", "1.2.0-rc1"], &["1.3.0-rc1", "1.1.9"]),
            ("1.x", &["1.0", "1.99.1"], &["2.0.0-rc1", "0.9"]),
            ("*", &["0.0.0", "950"], &[]),
            ("^1.2.3", &["1.2.3", "1.9.0"], &["1.2.2", "2.0.0-rc1", "2.0.0"]),
            ("^0.2.3", &["0.2.9"], &["0.3.0"]),
            ("^0.0.3", &["0.0.3"], &["0.0.4"]),
            ("^1", &["1.0.0", "1.9"], &["2.0.0"]),
            ("^0", &["0.9"], &["1.0.0"]),
            ("~1.2.3", &["1.2.9"], &["1.3.0"]),
            ("~1", &["1.9"], &["2.0.0"]),
            (">=950", &["950", "1002"], &["949", "v1.2.3"]),
        ];
        for (text, yes, no) in cases {
            let r = range(text);
            for tag in *yes {
                assert!(r.matches(&v(tag)), "{text} should match {tag}");
            }
            for tag in *no {
                assert!(!r.matches(&v(tag)), "{text} should not match {tag}");
            }
        }
    }

    #[test]
    fn bad_ranges() {
        for bad in [
            "",
            ">=",
            ">=abc",
            "=>1",
            "1.*.2",
            ">1.*",
            "1.2,",
            "<<1",
            "1.2.3.4",
            "99999999999999999999.*",
        ] {
            assert!(Range::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Range::parse(&format!("^{}", u64::MAX)).is_err());
    }

    #[test]
    fn natural_order() {
        let ordered = [
            "01", "1", "2", "10", "latest", "v2", "v10", "v10a", "v10b", "v011",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(natural_cmp(pair[0], pair[1]), Ordering::Less, "{pair:?}");
            assert_eq!(natural_cmp(pair[1], pair[0]), Ordering::Greater, "{pair:?}");
        }
        assert_eq!(natural_cmp("v2", "v2"), Ordering::Equal);
    }
}
