//! The status socket's request and response types, shared by the server
//! (`socket`) and the command-line client (`cli`).
//!
//! [`StatusDocument`] is SPEC's status document field for field; absent values
//! serialise as `null`, times as RFC 3339 UTC.

use serde::{Deserialize, Serialize};
use wispanel_core::machine::{Core, Inputs, Verdict};
use wispanel_core::timestamp::Timestamp;
use wispanel_core::warnings::{self, Warning};
use wispanel_core::{LicenseState, PortalError, Reason, UpdateState};

pub const SCHEMA_VERSION: u32 = 1;

/// The OpenAPI 3.1 document of the socket API (SPEC "API document"), served
/// at `GET /v1/openapi.json` and installed as
/// `/usr/share/wispanel-license/openapi.json`. Its schemas are checked against
/// these types by `tests/openapi.rs`.
pub const OPENAPI_DOCUMENT: &str = include_str!("../openapi/openapi.json");

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

/// What the status document is built from besides the core.
pub struct StatusInputs<'a> {
    pub daemon: &'a DaemonInfo,
    /// The schedule in force (the configuration's `[schedule]`).
    pub schedule: &'a wispanel_core::schedule::Schedule,
    pub inputs: &'a Inputs,
    /// The masked key in use.
    pub masked_key: Option<String>,
    /// `None` when the hardware_id cannot be computed now.
    pub hardware_id: Option<&'a str>,
    /// The version the daemon runs against (for `update.current_version`
    /// before the first update check).
    pub product_version: Option<String>,
    /// `portal.proxy`: [`crate::net::proxy::ProxyChoice::shown`] of the
    /// portal client's decision.
    pub proxy: Option<String>,
    /// The configuration's `warn_before_expiry`.
    pub warn_before_expiry: std::time::Duration,
    /// When the current run of failed saves of `state.json` began, if the
    /// last save failed.
    pub state_not_saved_since: Option<Timestamp>,
}

impl StatusInputs<'_> {
    /// What the `warnings` are computed from at `now`; the daemon also asks
    /// it when the list next changes by itself.
    pub fn warning_facts(&self, core: &Core, now: Timestamp) -> warnings::Facts {
        let ctx = warnings::Context {
            warn_before_expiry: self.warn_before_expiry,
            hardware_known: self.hardware_id.is_some(),
            state_not_saved_since: self.state_not_saved_since,
        };
        warnings::Facts::from_core(core, self.inputs, self.schedule, now, &ctx)
    }
}

impl StatusDocument {
    /// Builds the document from the core at `now`.
    pub fn build(core: &Core, si: &StatusInputs<'_>, now: Timestamp) -> StatusDocument {
        let s = si.schedule;
        let state = core.license_state(si.inputs, s, now);
        let (details, reason, checked_at) = match &core.licence.verdict {
            Some(Verdict::Valid { at, details, .. }) if state != LicenseState::Unconfigured => {
                (Some(details), None, Some(*at))
            }
            Some(Verdict::Refused { at, reason, .. }) if state != LicenseState::Unconfigured => {
                (None, Some(reason.clone()), Some(*at))
            }
            _ => (None, None, None),
        };
        let limits = details.and_then(|d| {
            (d.max_users.is_some() || d.max_domains.is_some() || d.max_databases.is_some())
                .then_some(Limits {
                    max_users: d.max_users,
                    max_domains: d.max_domains,
                    max_databases: d.max_databases,
                })
        });
        let grace_until = match state {
            LicenseState::Active | LicenseState::Grace | LicenseState::Lapsed => {
                core.grace_until(s)
            }
            _ => None,
        };
        let configured = si.inputs.key_fingerprint.is_some();
        let doc = StatusDocument {
            schema_version: SCHEMA_VERSION,
            daemon: si.daemon.clone(),
            hardware_id: si.hardware_id.map(str::to_string),
            hardware_changed: si.hardware_id.is_some() && core.hardware_changed(si.inputs),
            license: LicenseView {
                state,
                licensed: state.licensed(),
                key: si.masked_key.clone(),
                tier: details.and_then(|d| d.tier.clone()),
                expires_at: details.and_then(|d| d.expires_at),
                valid_until: details.and_then(|d| d.valid_until),
                limits,
                reason,
                checked_at,
                grace_until,
            },
            update: UpdateView {
                state: core.update.state,
                current_version: core
                    .update
                    .current_version
                    .clone()
                    .or(si.product_version.clone()),
                latest_version: core.update.latest_version.clone(),
                changelog: core.update.changelog.clone(),
                checked_at: core.update.checked_at,
            },
            portal: PortalView {
                last_attempt_at: core.portal.last_attempt_at,
                last_success_at: core.portal.last_success_at,
                last_error: core.portal.last_error.clone(),
                consecutive_failures: core.portal.consecutive_failures,
                next_validate_at: if configured {
                    core.due(si.inputs, now).map(|d| d.at)
                } else {
                    None
                },
                next_update_check_at: core.update_due(now),
                rate_limited_until: core.gate_closed_until(now),
                clock_skew_seconds: core.portal.clock_skew_seconds,
                proxy: si.proxy.clone(),
                activation_in_doubt: core.activation_in_doubt(),
            },
            warnings: warnings::warnings(&si.warning_facts(core, now), now),
        };
        doc.whole_seconds()
    }

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

    /// The same document with every time rounded down to the second, as SPEC's
    /// examples show them (`state.json` keeps milliseconds).
    fn whole_seconds(mut self) -> StatusDocument {
        fn t(x: &mut Option<Timestamp>) {
            *x = x.map(Timestamp::whole_seconds);
        }
        self.daemon.started_at = self.daemon.started_at.whole_seconds();
        let l = &mut self.license;
        for x in [
            &mut l.expires_at,
            &mut l.valid_until,
            &mut l.checked_at,
            &mut l.grace_until,
        ] {
            t(x);
        }
        t(&mut self.update.checked_at);
        let p = &mut self.portal;
        for x in [
            &mut p.last_attempt_at,
            &mut p.last_success_at,
            &mut p.next_validate_at,
            &mut p.next_update_check_at,
            &mut p.rate_limited_until,
        ] {
            t(x);
        }
        self
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

/// Body of `POST /v1/activate`.
#[derive(Deserialize)]
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
    /// value absent. The daemon serves it until its first `publish`.
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
