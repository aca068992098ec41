//! The history entries (`wispanel_license::history::Entry`) against the API
//! document's `HistoryEntry` schemas: every kind, its fields, which may be
//! null.

mod openapi_check;

use openapi_check::{assert_conforms, doc, schema};
use serde_json::Value;
use std::collections::BTreeSet;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{ErrorKind, LicenseState, PortalError, Reason, UpdateState};
use wispanel_license::history::{Action, Entry, Event, ReloadOutcome};

fn at() -> Timestamp {
    Timestamp::from_unix_secs(1_790_000_000)
}

/// Every kind twice: every optional field set, then every one null.
fn examples() -> Vec<Event> {
    let action = |uid, outcome: &str| Action {
        uid,
        key: "WISP-****SA6T".into(),
        outcome: outcome.into(),
    };
    vec![
        Event::DaemonStarted {
            version: "0.1.0".into(),
        },
        Event::DaemonStopped {},
        Event::LicenseState {
            from: LicenseState::Active,
            to: LicenseState::Grace,
            reason: Some(Reason {
                code: "EXPIRED".into(),
                message: "m".into(),
            }),
            error: Some(PortalError {
                kind: ErrorKind::Timeout,
                http_status: Some(503),
                code: Some("INTERNAL_ERROR".into()),
                message: "m".into(),
            }),
        },
        Event::LicenseState {
            from: LicenseState::Unknown,
            to: LicenseState::Active,
            reason: None,
            error: None,
        },
        Event::UpdateState {
            from: UpdateState::Unknown,
            to: UpdateState::Available,
        },
        Event::Activate(action(Some(0), "ok")),
        Event::Activate(action(None, "PORTAL_UNREACHABLE")),
        Event::Deactivate(action(Some(0), "REVOKED")),
        Event::Deactivate(action(None, "ok")),
        Event::HardwareChanged {
            from: "a".repeat(64),
            to: "b".repeat(64),
        },
        Event::ConfigReloaded {
            outcome: ReloadOutcome::Rejected,
            message: Some("m".into()),
        },
        Event::ConfigReloaded {
            outcome: ReloadOutcome::Applied,
            message: None,
        },
    ]
}

/// The kind's name; exhaustive, so a new kind fails to compile here until
/// an example of it is added above.
fn kind(e: &Event) -> &'static str {
    match e {
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

#[test]
fn the_history_entry_type_matches_the_documents_schema() {
    let d = doc();
    let documented: BTreeSet<String> = schema(&d, "HistoryEntry")["discriminator"]["mapping"]
        .as_object()
        .expect("HistoryEntry has a discriminator mapping")
        .keys()
        .cloned()
        .collect();
    let mut kinds = BTreeSet::new();
    for event in examples() {
        kinds.insert(kind(&event).to_string());
        let entry = Entry { at: at(), event };
        let v = serde_json::to_value(&entry).unwrap();
        assert_eq!(v["event"], Value::from(kind(&entry.event)));
        assert_conforms(&v, "HistoryEntry");
    }
    assert_eq!(kinds, documented, "the history's kinds and the document's");
    let page = serde_json::json!({"entries": []});
    assert_conforms(&page, "HistoryPage");
}
