//! The no-I/O core: licence and update states, the classification of portal
//! answers, grace, the portal gate and the retry schedule.
//!
//! Everything here is a plain function of (state, answer, now, randomness).
//! Nothing in this crate reads a clock, a file or a socket, and its manifest
//! names no I/O crate, so the compiler keeps it that way: the daemon, the
//! tests and the fleet simulation all drive the same code.
#![forbid(unsafe_code)]

pub mod activation;
pub mod classify;
pub mod duration;
pub mod gate;
pub mod key;
pub mod machine;
pub mod portal_time;
pub mod schedule;
pub mod timestamp;
pub mod version;
pub mod warnings;

use serde::{Deserialize, Serialize};

/// `license.state` of SPEC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseState {
    Unconfigured,
    Unknown,
    Active,
    Grace,
    Lapsed,
    InvalidKey,
    Expired,
    Suspended,
    Revoked,
    HardwareMismatch,
    MaxActivations,
    VersionTooLow,
}

impl LicenseState {
    pub const ALL: [LicenseState; 12] = [
        LicenseState::Unconfigured,
        LicenseState::Unknown,
        LicenseState::Active,
        LicenseState::Grace,
        LicenseState::Lapsed,
        LicenseState::InvalidKey,
        LicenseState::Expired,
        LicenseState::Suspended,
        LicenseState::Revoked,
        LicenseState::HardwareMismatch,
        LicenseState::MaxActivations,
        LicenseState::VersionTooLow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LicenseState::Unconfigured => "unconfigured",
            LicenseState::Unknown => "unknown",
            LicenseState::Active => "active",
            LicenseState::Grace => "grace",
            LicenseState::Lapsed => "lapsed",
            LicenseState::InvalidKey => "invalid_key",
            LicenseState::Expired => "expired",
            LicenseState::Suspended => "suspended",
            LicenseState::Revoked => "revoked",
            LicenseState::HardwareMismatch => "hardware_mismatch",
            LicenseState::MaxActivations => "max_activations",
            LicenseState::VersionTooLow => "version_too_low",
        }
    }

    /// Whether the host counts as licensed in this state.
    pub fn licensed(self) -> bool {
        matches!(self, LicenseState::Active | LicenseState::Grace)
    }

    /// The refusal state a licence endpoint's verdict code maps to.
    pub fn from_refusal_code(code: &str) -> Option<LicenseState> {
        Some(match code {
            "INVALID_KEY" | "NOT_FOUND" => LicenseState::InvalidKey,
            "EXPIRED" => LicenseState::Expired,
            "SUSPENDED" => LicenseState::Suspended,
            "REVOKED" => LicenseState::Revoked,
            "HARDWARE_MISMATCH" => LicenseState::HardwareMismatch,
            "MAX_ACTIVATIONS" => LicenseState::MaxActivations,
            "VERSION_TOO_LOW" => LicenseState::VersionTooLow,
            _ => return None,
        })
    }

    /// The monitoring-plugin exit code of SPEC (0 ok, 1 degraded, 2 not licensed, 3 unknown).
    pub fn plugin_exit_code(self) -> u8 {
        match self {
            LicenseState::Active => 0,
            LicenseState::Grace => 1,
            LicenseState::Unknown => 3,
            _ => 2,
        }
    }
}

impl std::fmt::Display for LicenseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `update.state` of SPEC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    #[default]
    Unknown,
    UpToDate,
    Available,
    UpdatesExpired,
    VersionTooLow,
    NotEntitled,
}

impl UpdateState {
    pub const ALL: [UpdateState; 6] = [
        UpdateState::Unknown,
        UpdateState::UpToDate,
        UpdateState::Available,
        UpdateState::UpdatesExpired,
        UpdateState::VersionTooLow,
        UpdateState::NotEntitled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Unknown => "unknown",
            UpdateState::UpToDate => "up_to_date",
            UpdateState::Available => "available",
            UpdateState::UpdatesExpired => "updates_expired",
            UpdateState::VersionTooLow => "version_too_low",
            UpdateState::NotEntitled => "not_entitled",
        }
    }
}

impl std::fmt::Display for UpdateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The five portal endpoints of PORTAL.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Activate,
    Validate,
    Deactivate,
    CheckUpdate,
    Token,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Activate,
        Endpoint::Validate,
        Endpoint::Deactivate,
        Endpoint::CheckUpdate,
        Endpoint::Token,
    ];

    /// Path under the portal's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Activate => "/api/v1/license/activate",
            Endpoint::Validate => "/api/v1/license/validate",
            Endpoint::Deactivate => "/api/v1/license/deactivate",
            Endpoint::CheckUpdate => "/api/v1/download/check-update",
            Endpoint::Token => "/api/v1/download/token",
        }
    }

    /// The `endpoint` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Activate => "activate",
            Endpoint::Validate => "validate",
            Endpoint::Deactivate => "deactivate",
            Endpoint::CheckUpdate => "check_update",
            Endpoint::Token => "token",
        }
    }

    /// Licence endpoints decide the licence state; download endpoints never do.
    pub fn is_licence(self) -> bool {
        matches!(
            self,
            Endpoint::Activate | Endpoint::Validate | Endpoint::Deactivate
        )
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `portal.last_error.kind` of SPEC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Timeout,
    Connect,
    Tls,
    RateLimited,
    Malformed,
    Http,
}

impl ErrorKind {
    /// Every kind, in the order the metrics list them. A new kind must be
    /// added here (the shell's `metrics::tests::every_kind_is_listed` fails
    /// to compile, then fails, until it is).
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::RateLimited,
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Http,
        ErrorKind::Malformed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Http => "http",
        }
    }
}

/// `portal.last_error` of SPEC: a request that got no verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalError {
    pub kind: ErrorKind,
    pub http_status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
}

/// `license.reason` of SPEC: why the portal refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}
