//! The licence key as a secret type.
//!
//! [`LicenseKey`] never prints itself unmasked: `Debug`, `Display` and
//! `Serialize` all give the panel's masked form `WISP-****SA6T` (prefix and last
//! four characters). The raw key is reachable only through
//! [`LicenseKey::expose`], which the portal client uses to build request bodies,
//! the state store to save an activated key, and the CLI to send a key to
//! the daemon's `POST /v1/activate`.

use sha2::{Digest, Sha256};
use std::fmt;

/// Shortest and longest accepted keys (the documented shape is
/// `WISP-XXXX-XXXX-XXXX`, 19 characters; allow longer groups from the future).
const MIN_LEN: usize = 9;
const MAX_LEN: usize = 128;

/// A licence key whose shape was checked on load.
#[derive(Clone, PartialEq, Eq)]
pub struct LicenseKey(String);

/// Why a string is not a licence key. Never carries the key itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the licence key is empty")]
    Empty,
    #[error("the licence key must start with \"WISP-\" (the shape is WISP-XXXX-XXXX-XXXX)")]
    Prefix,
    #[error("the licence key is {0} characters long; expected {MIN_LEN} to {MAX_LEN}")]
    Length(usize),
    #[error("the licence key holds a character other than A-Z, a-z, 0-9 and '-' at position {0}")]
    Character(usize),
}

impl LicenseKey {
    /// Checks the shape: `WISP-` then letters, digits and dashes. Surrounding
    /// white space (a trailing newline from a key file) is trimmed.
    pub fn parse(raw: &str) -> Result<LicenseKey, KeyError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(KeyError::Empty);
        }
        if !s.starts_with("WISP-") {
            return Err(KeyError::Prefix);
        }
        let len = s.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(KeyError::Length(len));
        }
        if let Some((i, _)) = s
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(KeyError::Character(i + 1));
        }
        Ok(LicenseKey(s.to_string()))
    }

    /// The raw key, for request bodies and the saved-key file only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The panel's masked form: `WISP-****` and the last four characters.
    pub fn masked(&self) -> String {
        let tail: String = {
            let chars: Vec<char> = self.0.chars().collect();
            chars[chars.len().saturating_sub(4)..].iter().collect()
        };
        format!("WISP-****{tail}")
    }

    /// A stable, non-reversible fingerprint (first 16 hex digits of SHA-256),
    /// used to notice that the configured key changed without storing it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseKey({})", self.masked())
    }
}

impl fmt::Display for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl serde::Serialize for LicenseKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "WISP-AB12-CD34-SA6T";

    #[test]
    fn masks_everywhere() {
        let k = LicenseKey::parse(KEY).unwrap();
        assert_eq!(k.masked(), "WISP-****SA6T");
        assert_eq!(k.to_string(), "WISP-****SA6T");
        let dbg = format!("{k:?} {k:#?}");
        assert!(!dbg.contains("AB12"), "{dbg}");
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, "\"WISP-****SA6T\"");
        assert_eq!(k.expose(), KEY);
    }

    #[test]
    fn shape_errors() {
        assert_eq!(LicenseKey::parse("  "), Err(KeyError::Empty));
        assert_eq!(LicenseKey::parse("ABCD-1234"), Err(KeyError::Prefix));
        assert_eq!(LicenseKey::parse("WISP-1"), Err(KeyError::Length(6)));
        assert_eq!(
            LicenseKey::parse("WISP-AB12-CD3$"),
            Err(KeyError::Character(14))
        );
        assert!(LicenseKey::parse("WISP-AB12-CD34-SA6T\n").is_ok());
    }

    #[test]
    fn errors_never_echo_the_key() {
        let e = LicenseKey::parse("WISP-SECRET$KEY")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn fingerprint_is_stable_and_short() {
        let a = LicenseKey::parse(KEY).unwrap();
        let b = LicenseKey::parse("WISP-AB12-CD34-SA6U").unwrap();
        assert_eq!(a.fingerprint().len(), 16);
        assert_eq!(
            a.fingerprint(),
            LicenseKey::parse(KEY).unwrap().fingerprint()
        );
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
