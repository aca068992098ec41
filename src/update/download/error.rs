//! Why a download did not give a verified file: [`DownloadError`].

use crate::config::ConfigError;
use crate::hwid::HwidError;
use crate::portal::SetupError;
use crate::store::StoreError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::version::VersionError;
use wispanel_core::{Endpoint, ErrorKind, PortalError, UpdateState};

/// Why a download did not give a verified file. Each message says what went
/// wrong, where, and what to do; none holds the licence key or the token.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("--version: {0}")]
    BadVersion(VersionError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("hardware_id: {0}")]
    Hwid(#[from] HwidError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "no licence key: set license_key or license_key_file in {}, or run `wispanel-license activate` first",
        config.display()
    )]
    NoKey { config: PathBuf },
    #[error("cannot set up the portal client: {0}")]
    Setup(#[from] SetupError),
    #[error(
        "the portal asked this host to wait until {until} (the gate saved in {}); try again after that time",
        state.display()
    )]
    GateClosed { until: Timestamp, state: PathBuf },
    #[error(
        "{endpoint}: the portal refused ({code}; update state {state}): {message}. {}",
        advice(*state)
    )]
    Refused {
        endpoint: Endpoint,
        state: UpdateState,
        code: String,
        message: String,
    },
    #[error("{endpoint}: {}", PortalFailure(error, *retry_at))]
    Portal {
        endpoint: Endpoint,
        error: PortalError,
        /// When the portal said to try again (a 429 or a 503 with `Retry-After`).
        retry_at: Option<Timestamp>,
    },
    #[error("{endpoint}: unexpected answer from the portal")]
    Unexpected { endpoint: Endpoint },
    #[error("check_update: the portal named no latest version; ask for one with --version V")]
    NoLatest,
    #[error("{}: cannot use it as the download directory: {problem}", dir.display())]
    Dir { dir: PathBuf, problem: String },
    #[error("token: the release URL {url:?} is not usable: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("GET {url}: {}: {message}", kind.as_str())]
    Transfer {
        url: String,
        kind: ErrorKind,
        message: String,
    },
    #[error("GET {url}: HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "GET {url}: no data for {} s (request_timeout) after {got} of {size} bytes; the partial file was removed; try again",
        secs.as_secs_f64()
    )]
    Stalled {
        url: String,
        secs: Duration,
        got: u64,
        size: u64,
    },
    #[error(
        "GET {url}: the transfer broke after {got} of {size} bytes: {message}; the partial file was removed; try again"
    )]
    Cut {
        url: String,
        got: u64,
        size: u64,
        message: String,
    },
    #[error(
        "GET {url}: the body ended after {got} of the {size} bytes the portal announced; the partial file was removed; try again"
    )]
    Short { url: String, got: u64, size: u64 },
    #[error(
        "GET {url}: the server sent more than the {size} bytes the portal announced{}; the partial file was removed",
        announced.map(|n| format!(" (Content-Length {n})")).unwrap_or_default()
    )]
    TooLarge {
        url: String,
        size: u64,
        announced: Option<u64>,
    },
    #[error(
        "{}: SHA-256 mismatch: the portal announced {expected:.16}…, the file has {got:.16}…; the downloaded file was deleted; try again, and report it if it persists",
        file.display()
    )]
    Checksum {
        file: PathBuf,
        expected: String,
        got: String,
    },
    #[error("{}: {action}: {source}; the partial file was removed", path.display())]
    Write {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

impl DownloadError {
    /// The portal's code, for a refusal or a failed request that carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            DownloadError::Refused { code, .. } => Some(code),
            DownloadError::Portal { error, .. } => error.code.as_deref(),
            _ => None,
        }
    }

    /// Whether this is a usage mistake (exit 2) rather than a failure (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, DownloadError::BadVersion(_))
    }
}

/// What to do about a download refusal.
fn advice(state: UpdateState) -> &'static str {
    match state {
        UpdateState::UpdatesExpired => {
            "This licence no longer includes updates: renew its update entitlement with WisPanel, then try again"
        }
        UpdateState::VersionTooLow => {
            "This panel version is too old to update automatically: upgrade it by hand first"
        }
        UpdateState::NotEntitled => {
            "The portal does not accept this key on this host: check `wispanel-license status`, and activate the key on this host"
        }
        _ => "Check `wispanel-license status`",
    }
}

struct PortalFailure<'a>(&'a PortalError, Option<Timestamp>);

impl fmt::Display for PortalFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "no answer to act on ({}", e.kind.as_str())?;
        if let Some(s) = e.http_status {
            write!(f, ", HTTP {s}")?;
        }
        if let Some(c) = &e.code {
            write!(f, ", {c}")?;
        }
        write!(f, "): {}", e.message)?;
        match self.1 {
            Some(t) => write!(f, "; the portal asks to wait: try again after {t}"),
            None => f.write_str("; try again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_code_and_what_to_do() {
        let e = DownloadError::Refused {
            endpoint: Endpoint::Token,
            state: UpdateState::UpdatesExpired,
            code: "UPDATES_EXPIRED".into(),
            message: "Updates are no longer included".into(),
        };
        let text = e.to_string();
        assert!(text.contains("UPDATES_EXPIRED"), "{text}");
        assert!(text.contains("renew"), "{text}");
        assert_eq!(e.code(), Some("UPDATES_EXPIRED"));
    }

    #[test]
    fn checksum_message_shows_prefixes() {
        let e = DownloadError::Checksum {
            file: PathBuf::from("/d/.x.part-1"),
            expected: "a".repeat(64),
            got: "b".repeat(64),
        };
        let text = e.to_string();
        assert!(text.contains(&format!("{}…", "a".repeat(16))), "{text}");
        assert!(text.contains(&format!("{}…", "b".repeat(16))), "{text}");
        assert!(!text.contains(&"a".repeat(17)), "{text}");
        assert!(text.contains("deleted"), "{text}");
    }
}
