//! The status socket's request and response types, shared by the server
//! (`socket`) and the command-line client (`cli`).
//!
//! [`StatusDocument`] is SPEC's status document field for field; absent values
//! serialise as `null`, times as RFC 3339 UTC. The daemon builds it from the
//! core in `build.rs`.

use serde::{Deserialize, Serialize};
use wispanel_core::timestamp::Timestamp;
use wispanel_core::warnings::Warning;
use wispanel_core::{LicenseState, PortalError, Reason, UpdateState};

pub const SCHEMA_VERSION: u32 = 1;

/// The OpenAPI 3.1 document of the socket API (SPEC "API document"), served
/// at `GET /v1/openapi.json` and installed as
/// `/usr/share/wispanel-license/openapi.json`. Its schemas are checked against
/// these types by `tests/openapi.rs`.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../openapi/openapi.json");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusDocument {
    pub schema_version: u32,
    pub daemon: DaemonInfo,
    pub hardware_id: Option<String>,
    pub hardware_changed: bool,
    pub license: LicenseView,
    pub update: UpdateView,
    pub portal: PortalView,
    /// Most urgent first; absent in a first release's document.
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub started_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_users: Option<i64>,
    pub max_domains: Option<i64>,
    pub max_databases: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LicenseView {
    pub state: LicenseState,
    pub licensed: bool,
    pub key: Option<String>,
    pub tier: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub limits: Option<Limits>,
    pub reason: Option<Reason>,
    pub checked_at: Option<Timestamp>,
    pub grace_until: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateView {
    pub state: UpdateState,
    pub current_version: Option<String>,
    pub latest_version: Option<String>,
    pub changelog: Option<String>,
    pub checked_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortalView {
    pub last_attempt_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub last_error: Option<PortalError>,
    pub consecutive_failures: u32,
    pub next_validate_at: Option<Timestamp>,
    pub next_update_check_at: Option<Timestamp>,
    pub rate_limited_until: Option<Timestamp>,
    pub clock_skew_seconds: Option<i64>,
    /// The proxy the daemon's portal requests go through, its password
    /// masked (`http://user:****@proxy:3128`), or null for a direct
    /// connection. Absent in the answers of older daemons.
    #[serde(default)]
    pub proxy: Option<String>,
    /// An activation went out and no verdict came back: it may hold a seat
    /// (SPEC "Activation in doubt"). Absent in the answers of older daemons.
    #[serde(default)]
    pub activation_in_doubt: bool,
}

mod build;
pub use build::StatusInputs;

impl StatusDocument {
    /// The monitoring-plugin exit code of SPEC: 0 `active` with no warning,
    /// 1 `grace` or `active` with a warning, 2 not licensed, 3 `unknown`.
    pub fn plugin_exit_code(&self) -> u8 {
        match self.license.state {
            LicenseState::Active if !self.warnings.is_empty() => 1,
            state => state.plugin_exit_code(),
        }
    }

    /// What `GET /v1/events` sends an event for a change of (SPEC: the
    /// licence state, the update state or the warnings).
    pub fn announced(&self) -> Announced {
        Announced {
            license: self.license.state,
            update: self.update.state,
            warnings: self.warnings.clone(),
        }
    }

    /// The most urgent warning, if any.
    pub fn most_urgent_warning(&self) -> Option<&Warning> {
        self.warnings.first()
    }
}

/// The part of the status whose change is announced (events, logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub license: LicenseState,
    pub update: UpdateState,
    pub warnings: Vec<Warning>,
}

/// The panel API's error envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub success: bool,
    pub code: String,
    pub error: String,
    pub message: String,
    pub status: u16,
}

impl ErrorEnvelope {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ErrorEnvelope {
        let message = message.into();
        ErrorEnvelope {
            success: false,
            code: code.to_string(),
            error: message.clone(),
            message,
            status,
        }
    }
}

/// Body of `POST /v1/activate`: sent by the CLI, read by the socket's
/// route. No `Debug`: it holds the key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub license_key: String,
}

/// `GET /v1/health`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
}

impl StatusDocument {
    /// The document before anything is known: state `unknown`, every other
    /// value absent. The daemon's status starts as it, and its first
    /// `publish` replaces it before the socket serves.
    pub fn empty(daemon: DaemonInfo) -> StatusDocument {
        StatusDocument {
            schema_version: SCHEMA_VERSION,
            daemon,
            hardware_id: None,
            hardware_changed: false,
            license: LicenseView {
                state: LicenseState::Unknown,
                licensed: false,
                key: None,
                tier: None,
                expires_at: None,
                valid_until: None,
                limits: None,
                reason: None,
                checked_at: None,
                grace_until: None,
            },
            update: UpdateView {
                state: UpdateState::Unknown,
                current_version: None,
                latest_version: None,
                changelog: None,
                checked_at: None,
            },
            portal: PortalView {
                last_attempt_at: None,
                last_success_at: None,
                last_error: None,
                consecutive_failures: 0,
                next_validate_at: None,
                next_update_check_at: None,
                rate_limited_until: None,
                clock_skew_seconds: None,
                proxy: None,
                activation_in_doubt: false,
            },
            warnings: Vec::new(),
        }
    }
}

/// A document to build test cases from: `active`, licensed, no warning.
#[cfg(test)]
pub(crate) fn example_document() -> StatusDocument {
    let mut doc = StatusDocument::empty(DaemonInfo {
        version: "0.1.0".into(),
        pid: 1,
        started_at: Timestamp(0),
    });
    doc.hardware_id = Some("a".repeat(64));
    doc.license = LicenseView {
        state: LicenseState::Active,
        licensed: true,
        key: Some("WISP-****SA6T".into()),
        tier: Some("pro".into()),
        expires_at: Some(Timestamp::from_unix_secs(1_800_000_000)),
        valid_until: None,
        limits: None,
        reason: None,
        checked_at: None,
        grace_until: Some(Timestamp::from_unix_secs(1_700_000_000)),
    };
    doc.update.state = UpdateState::UpToDate;
    doc.update.current_version = Some("1.4.2".into());
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use wispanel_core::warnings::WarningCode;

    fn warning(code: WarningCode) -> Warning {
        Warning {
            code,
            message: "m".into(),
            at: None,
        }
    }

    #[test]
    fn plugin_exit_codes_count_warnings_only_when_active() {
        for (state, warned, code) in [
            (LicenseState::Active, false, 0),
            (LicenseState::Active, true, 1),
            (LicenseState::Grace, false, 1),
            (LicenseState::Grace, true, 1),
            (LicenseState::Lapsed, true, 2),
            (LicenseState::Expired, false, 2),
            (LicenseState::Unconfigured, true, 2),
            (LicenseState::Unknown, true, 3),
        ] {
            let mut doc = example_document();
            doc.license.state = state;
            if warned {
                doc.warnings.push(warning(WarningCode::ClockSkew));
            }
            assert_eq!(doc.plugin_exit_code(), code, "{state} {warned}");
        }
    }

    #[test]
    fn a_first_release_document_without_warnings_still_reads() {
        let mut v = serde_json::to_value(example_document()).unwrap();
        v.as_object_mut().unwrap().remove("warnings");
        let doc: StatusDocument = serde_json::from_value(v).unwrap();
        assert!(doc.warnings.is_empty());
    }
}
