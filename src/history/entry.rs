//! The one definition of a history entry (SPEC "History"): what
//! `history.jsonl` holds line by line, what `GET /v1/history` answers in
//! `entries`, and what `wispanel-license history --json` prints. The JSON is
//! `{"at": "...", "event": "<kind>", <the kind's fields>}`.

use serde::{Deserialize, Serialize};
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{LicenseState, PortalError, Reason, UpdateState};

/// One line of the history: when, and what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC, whole seconds.
    pub at: Timestamp,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened, with the fields of its kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The daemon started (after loading its state).
    DaemonStarted { version: String },
    /// A clean shutdown.
    DaemonStopped {},
    /// The licence state changed.
    LicenseState {
        from: LicenseState,
        to: LicenseState,
        /// As the status's `license.reason`.
        reason: Option<Reason>,
        /// As the status's `portal.last_error`.
        error: Option<PortalError>,
    },
    /// The update state changed.
    UpdateState { from: UpdateState, to: UpdateState },
    /// An activation got its outcome.
    Activate(Action),
    /// A deactivation got its outcome.
    Deactivate(Action),
    /// The hardware_id differs from the one of the last verdict.
    HardwareChanged { from: String, to: String },
    /// SIGHUP.
    ConfigReloaded {
        outcome: ReloadOutcome,
        /// Why it was rejected; null when applied.
        message: Option<String>,
    },
}

/// The fields of `activate` and `deactivate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The caller's uid (`SO_PEERCRED`); null when the daemon itself
    /// activates a configured key.
    pub uid: Option<u32>,
    /// Masked as in the status (`WISP-****SA6T`).
    pub key: String,
    /// `ok`, the portal's refusal code, or `PORTAL_UNREACHABLE`.
    pub outcome: String,
}

/// The outcome of an [`Action`] that worked.
pub const OUTCOME_OK: &str = "ok";
/// The outcome of an [`Action`] that got no verdict.
pub const OUTCOME_UNREACHABLE: &str = "PORTAL_UNREACHABLE";

/// Whether a reloaded configuration was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    Applied,
    Rejected,
}

impl Event {
    /// The `event` name as written.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::DaemonStarted { .. } => "daemon_started",
            Event::DaemonStopped {} => "daemon_stopped",
            Event::LicenseState { .. } => "license_state",
            Event::UpdateState { .. } => "update_state",
            Event::Activate(_) => "activate",
            Event::Deactivate(_) => "deactivate",
            Event::HardwareChanged { .. } => "hardware_changed",
            Event::ConfigReloaded { .. } => "config_reloaded",
        }
    }
}

impl std::fmt::Display for Entry {
    /// One line for a person: time, kind, what it says.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self.at.to_rfc3339().replace('T', " ").replace('Z', " UTC");
        write!(f, "{at}  {:<16} ", self.event.kind())?;
        match &self.event {
            Event::DaemonStarted { version } => write!(f, "version {version}"),
            Event::DaemonStopped {} => write!(f, "clean shutdown"),
            Event::LicenseState {
                from,
                to,
                reason,
                error,
            } => {
                write!(f, "{from} -> {to}")?;
                if let Some(r) = reason {
                    write!(f, " ({}: {})", r.code, r.message)?;
                }
                if let Some(e) = error {
                    write!(f, " (last error {}: {})", e.kind.as_str(), e.message)?;
                }
                Ok(())
            }
            Event::UpdateState { from, to } => write!(f, "{from} -> {to}"),
            Event::Activate(a) | Event::Deactivate(a) => {
                let who = a
                    .uid
                    .map_or_else(|| "by the daemon".to_string(), |u| format!("by uid {u}"));
                write!(f, "{} {who}: {}", a.key, a.outcome)
            }
            Event::HardwareChanged { from, to } => write!(f, "{from} -> {to}"),
            Event::ConfigReloaded { outcome, message } => match (outcome, message) {
                (ReloadOutcome::Applied, _) => write!(f, "applied"),
                (ReloadOutcome::Rejected, Some(m)) => write!(f, "rejected: {m}"),
                (ReloadOutcome::Rejected, None) => write!(f, "rejected"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wispanel_core::ErrorKind;

    fn at() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-26T10:00:00Z").unwrap()
    }

    #[test]
    fn every_kind_writes_exactly_specs_fields() {
        let cases = [
            (
                Event::DaemonStarted {
                    version: "0.1.0".into(),
                },
                json!({"event": "daemon_started", "version": "0.1.0"}),
            ),
            (Event::DaemonStopped {}, json!({"event": "daemon_stopped"})),
            (
                Event::LicenseState {
                    from: LicenseState::Active,
                    to: LicenseState::Grace,
                    reason: None,
                    error: Some(PortalError {
                        kind: ErrorKind::Timeout,
                        http_status: None,
                        code: None,
                        message: "no answer in 10 s".into(),
                    }),
                },
                json!({"event": "license_state", "from": "active", "to": "grace", "reason": null,
                       "error": {"kind": "timeout", "http_status": null, "code": null, "message": "no answer in 10 s"}}),
            ),
            (
                Event::LicenseState {
                    from: LicenseState::Active,
                    to: LicenseState::Expired,
                    reason: Some(Reason {
                        code: "LICENSE_EXPIRED".into(),
                        message: "expired".into(),
                    }),
                    error: None,
                },
                json!({"event": "license_state", "from": "active", "to": "expired",
                       "reason": {"code": "LICENSE_EXPIRED", "message": "expired"}, "error": null}),
            ),
            (
                Event::UpdateState {
                    from: UpdateState::Unknown,
                    to: UpdateState::UpToDate,
                },
                json!({"event": "update_state", "from": "unknown", "to": "up_to_date"}),
            ),
            (
                Event::Activate(Action {
                    uid: Some(0),
                    key: "WISP-****SA6T".into(),
                    outcome: OUTCOME_OK.into(),
                }),
                json!({"event": "activate", "uid": 0, "key": "WISP-****SA6T", "outcome": "ok"}),
            ),
            (
                Event::Deactivate(Action {
                    uid: None,
                    key: "WISP-****SA6T".into(),
                    outcome: OUTCOME_UNREACHABLE.into(),
                }),
                json!({"event": "deactivate", "uid": null, "key": "WISP-****SA6T", "outcome": "PORTAL_UNREACHABLE"}),
            ),
            (
                Event::HardwareChanged {
                    from: "a".repeat(64),
                    to: "b".repeat(64),
                },
                json!({"event": "hardware_changed", "from": "a".repeat(64), "to": "b".repeat(64)}),
            ),
            (
                Event::ConfigReloaded {
                    outcome: ReloadOutcome::Rejected,
                    message: Some("bad".into()),
                },
                json!({"event": "config_reloaded", "outcome": "rejected", "message": "bad"}),
            ),
        ];
        for (event, mut want) in cases {
            want["at"] = json!("2026-11-26T10:00:00Z");
            let e = Entry { at: at(), event };
            let got = serde_json::to_value(&e).unwrap();
            assert_eq!(got, want, "{}", e.event.kind());
            assert_eq!(got["event"], e.event.kind());
            // And it reads back as itself.
            let back: Entry = serde_json::from_value(got).unwrap();
            assert_eq!(back, e);
            // The line starts with `at` (a person reading the file sees the time first).
            assert!(serde_json::to_string(&e).unwrap().starts_with("{\"at\":"));
        }
    }

    #[test]
    fn a_plain_line_says_what_happened() {
        let e = Entry {
            at: at(),
            event: Event::Activate(Action {
                uid: Some(0),
                key: "WISP-****SA6T".into(),
                outcome: "MAX_ACTIVATIONS".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "2026-11-26 10:00:00 UTC  activate         WISP-****SA6T by uid 0: MAX_ACTIVATIONS"
        );
    }
}
