//! Release versions as the portal and the panel write them: semantic
//! versions (`1.4.2`, `1.5.0-rc.1`, `1.4.2+build.7`), tolerating a leading `v`
//! and a missing patch or minor number (`1.5` is `1.5.0`, `2` is `2.0.0`).
//!
//! Precedence follows semver 2.0.0 §11: numbers compare numerically
//! (`1.10.0` > `1.9.2`), a pre-release is lower than its release, and build
//! metadata is ignored (so `Eq` ignores it too, to agree with `Ord`).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Longest text quoted back in an error (a portal could send anything).
const MAX_QUOTED: usize = 64;

/// A parsed release version.
#[derive(Clone, Debug)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Dot-separated pre-release identifiers (`rc.1` → `["rc", "1"]`); empty
    /// for a release.
    pub pre: Vec<String>,
    /// Build metadata after `+`, kept for display only.
    pub build: Option<String>,
}

/// Why a text is not a version. Names the text (clipped) and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a version like 1.4.2: {problem}")]
pub struct VersionError {
    /// The text as given, clipped to 64 characters.
    pub text: String,
    pub problem: String,
}

impl Version {
    /// Parses `text` (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let err = |problem: &str| VersionError {
            text: clip(text),
            problem: problem.to_string(),
        };
        let t = text.trim();
        let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
        if t.is_empty() {
            return Err(err("it is empty"));
        }
        let (rest, build) = match t.split_once('+') {
            Some((r, b)) => {
                if !valid_identifiers(b) {
                    return Err(err(
                        "the build metadata after '+' must be dot-separated [0-9A-Za-z-] identifiers",
                    ));
                }
                (r, Some(b.to_string()))
            }
            None => (t, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => {
                if !valid_identifiers(p) {
                    return Err(err(
                        "the pre-release after '-' must be dot-separated [0-9A-Za-z-] identifiers",
                    ));
                }
                (c, p.split('.').map(str::to_string).collect())
            }
            None => (rest, Vec::new()),
        };
        let mut numbers = [0u64; 3];
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 3 {
            return Err(err("more than three numbers (major.minor.patch)"));
        }
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("major, minor and patch must be whole numbers"));
            }
            *slot = part
                .parse()
                .map_err(|_| err("a number is too large (at most 2^64 - 1)"))?;
        }
        Ok(Version {
            major: numbers[0],
            minor: numbers[1],
            patch: numbers[2],
            pre,
            build,
        })
    }

    /// Whether this is a pre-release (`1.5.0-rc.1`).
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

fn clip(text: &str) -> String {
    let mut s: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED)
        .collect();
    if text.chars().count() > MAX_QUOTED {
        s.push('…');
    }
    s
}

/// Non-empty, dot-separated identifiers of `[0-9A-Za-z-]`.
fn valid_identifiers(s: &str) -> bool {
    s.split('.')
        .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Semver §11.4: numeric identifiers numerically and below alphanumeric ones,
/// alphanumeric ones in ASCII order, a longer list above its prefix.
fn cmp_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        // A release is above any of its pre-releases.
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    for (x, y) in a.iter().zip(b) {
        let o = match (numeric(x), numeric(y)) {
            (Some(m), Some(n)) => m.cmp(&n),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => x.cmp(y),
        };
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// An identifier of digits only, as a number (leading zeros tolerated).
fn numeric(id: &str) -> Option<u128> {
    if id.bytes().all(|b| b.is_ascii_digit()) {
        // 39 digits overflow u128; such a monster sorts as the largest number.
        Some(id.parse().unwrap_or(u128::MAX))
    } else {
        None
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| cmp_pre(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must agree with Eq: `01` and `1` in a pre-release compare equal.
        (self.major, self.minor, self.patch).hash(state);
        for id in &self.pre {
            match numeric(id) {
                Some(n) => n.hash(state),
                None => id.hash(state),
            }
        }
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

/// The normal form: `1.5.0`, `1.5.0-rc.1`, `1.5.0+build.7` (no `v`).
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        if let Some(b) = &self.build {
            write!(f, "+{b}")?;
        }
        Ok(())
    }
}

/// Whether `latest` is newer than `current`, when both parse.
pub fn is_newer(latest: &str, current: &str) -> Option<bool> {
    Some(Version::parse(latest).ok()? > Version::parse(current).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parts_are_read() {
        let x = v(" v1.5.0-rc.1+b.7 ");
        assert_eq!((x.major, x.minor, x.patch), (1, 5, 0));
        assert_eq!(x.pre, vec!["rc", "1"]);
        assert_eq!(x.build.as_deref(), Some("b.7"));
        assert!(x.is_prerelease());
        assert_eq!(x.to_string(), "1.5.0-rc.1+b.7");
        assert_eq!(v("1.5").to_string(), "1.5.0");
        assert_eq!(v("2").to_string(), "2.0.0");
    }

    #[test]
    fn errors_name_the_text_and_never_panic() {
        for bad in [
            "",
            "   ",
            "v",
            "abc",
            "1..2",
            "1.2.",
            ".1",
            "1.2.3.4",
            "1.x",
            "1.2.3-",
            "1.2.3-a..b",
            "1.2.3+",
            "1.2.3-é",
            "-1.2.3",
            "1.-2",
            "99999999999999999999999",
        ] {
            let e = Version::parse(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{:?}", bad)), "{e}");
        }
        let long = "x".repeat(500);
        let e = Version::parse(&long).unwrap_err();
        assert!(e.text.chars().count() <= MAX_QUOTED + 1, "{}", e.text);
    }

    #[test]
    fn hash_agrees_with_eq() {
        use std::collections::HashSet;
        let set: HashSet<Version> = ["1.5", "1.5.0", "v1.5.0+x", "1.5.0-rc.01", "1.5.0-rc.1"]
            .into_iter()
            .map(v)
            .collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn is_newer_needs_both() {
        assert_eq!(is_newer("1.10.0", "1.9.2"), Some(true));
        assert_eq!(is_newer("1.4.2", "1.4.2"), Some(false));
        assert_eq!(is_newer("latest", "1.4.2"), None);
        assert_eq!(is_newer("1.5.0", "dev"), None);
    }
}
