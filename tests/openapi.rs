//! The API document (`openapi/openapi.json`, SPEC "API document") against the
//! code: its enumerations equal the Rust enums, its schemas have exactly the
//! fields the Rust types serialise (a field added to a type only fails here),
//! and the live daemon's answers conform to it.

mod common;
mod openapi_check;

use common::*;
use openapi_check::{assert_conforms, conforms, doc, schema};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::warnings::{Warning, WarningCode};
use wispanel_core::{ErrorKind, LicenseState, PortalError, Reason, UpdateState};
use wispanel_license::api::{
    DaemonInfo, ErrorEnvelope, Health, LicenseView, Limits, PortalView, StatusDocument, UpdateView,
};
use wispanel_portal_sim::Outage;

fn enum_of(doc: &Value, name: &str) -> BTreeSet<String> {
    schema(doc, name)["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has no enum"))
        .iter()
        .map(|v| v.as_str().expect("enum values are strings").to_string())
        .collect()
}

fn names<T: serde::Serialize>(all: &[T]) -> BTreeSet<String> {
    all.iter()
        .map(|v| match serde_json::to_value(v) {
            Ok(Value::String(s)) => s,
            other => panic!("not a string enum: {other:?}"),
        })
        .collect()
}

#[test]
fn the_documents_enumerations_are_the_rust_enums() {
    let d = doc();
    assert_eq!(enum_of(&d, "LicenseState"), names(&LicenseState::ALL));
    assert_eq!(enum_of(&d, "UpdateState"), names(&UpdateState::ALL));
    assert_eq!(enum_of(&d, "WarningCode"), names(&WarningCode::ALL));
    assert_eq!(enum_of(&d, "ErrorKind"), names(&ErrorKind::ALL));
    // The envelope's codes: the panel's, the portal's refusal codes (a bare
    // 401 is UNAUTHORIZED, a panel code too) and PORTAL_UNREACHABLE.
    let mut codes: BTreeSet<String> = [
        "VALIDATION_ERROR",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "CONFLICT",
        "RATE_LIMITED",
        "INTERNAL_ERROR",
        "PORTAL_UNREACHABLE",
    ]
    .map(String::from)
    .into();
    codes.extend(
        wispanel_core::classify::LICENCE_VERDICT_CODES
            .iter()
            .map(|c| c.to_string()),
    );
    assert_eq!(enum_of(&d, "EnvelopeCode"), codes);
}

fn t(s: u64) -> Option<Timestamp> {
    Some(Timestamp::from_unix_secs(s as i64))
}

/// Every optional field set (so every nested object is walked).
fn full_document() -> StatusDocument {
    let mut doc = StatusDocument::empty(DaemonInfo {
        version: "0.1.0".into(),
        pid: 42,
        started_at: Timestamp::from_unix_secs(1_700_000_000),
    });
    doc.hardware_id = Some(HWID.into());
    doc.license = LicenseView {
        state: LicenseState::Grace,
        licensed: true,
        key: Some("WISP-****SA6T".into()),
        tier: Some("pro".into()),
        expires_at: t(1_800_000_000),
        valid_until: t(1_790_000_000),
        limits: Some(Limits {
            max_users: Some(30),
            max_domains: Some(100),
            max_databases: Some(-1),
        }),
        reason: Some(Reason {
            code: "EXPIRED".into(),
            message: "m".into(),
        }),
        checked_at: t(1_700_000_100),
        grace_until: t(1_790_000_000),
    };
    doc.update = UpdateView {
        state: UpdateState::Available,
        current_version: Some("1.4.2".into()),
        latest_version: Some("1.5.0".into()),
        changelog: Some("c".into()),
        checked_at: t(1_700_000_200),
    };
    doc.portal = PortalView {
        last_attempt_at: t(1_700_000_300),
        last_success_at: t(1_700_000_100),
        last_error: Some(PortalError {
            kind: ErrorKind::Timeout,
            http_status: Some(503),
            code: Some("INTERNAL_ERROR".into()),
            message: "m".into(),
        }),
        consecutive_failures: 3,
        next_validate_at: t(1_700_000_400),
        next_update_check_at: t(1_700_000_500),
        rate_limited_until: t(1_700_000_600),
        clock_skew_seconds: Some(-90),
        proxy: Some("http://user:****@proxy:3128".into()),
        activation_in_doubt: true,
    };
    doc.warnings = WarningCode::ALL
        .iter()
        .map(|&code| Warning {
            code,
            message: "m".into(),
            at: t(1_700_000_700),
        })
        .collect();
    doc
}

#[test]
fn the_status_document_type_matches_the_documents_schema() {
    // Every value set, then every optional value null: both must conform,
    // so the fields, their types and which of them may be null all agree.
    assert_conforms(
        &serde_json::to_value(full_document()).unwrap(),
        "StatusDocument",
    );
    let empty = StatusDocument::empty(DaemonInfo {
        version: "0.1.0".into(),
        pid: 1,
        started_at: Timestamp::from_unix_secs(0),
    });
    assert_conforms(&serde_json::to_value(empty).unwrap(), "StatusDocument");
    let env = ErrorEnvelope::new(409, "CONFLICT", "no key");
    assert_conforms(&serde_json::to_value(env).unwrap(), "ErrorEnvelope");
    assert_conforms(
        &serde_json::to_value(Health { ok: true }).unwrap(),
        "Health",
    );
}

#[test]
fn the_strict_check_catches_an_added_a_missing_and_a_mistyped_field() {
    let good = serde_json::to_value(full_document()).unwrap();
    let d = doc();
    let s = schema(&d, "StatusDocument");
    let mut added = good.clone();
    added["license"]["seats"] = json!(3);
    assert!(conforms(&d, &added, s, "doc").is_err());
    let mut missing = good.clone();
    missing["portal"].as_object_mut().unwrap().remove("proxy");
    assert!(conforms(&d, &missing, s, "doc").is_err());
    let mut null = good.clone();
    null["license"]["licensed"] = Value::Null;
    assert!(conforms(&d, &null, s, "doc").is_err());
    let mut state = good;
    state["update"]["state"] = json!("later");
    assert!(conforms(&d, &state, s, "doc").is_err());
}

/// The real daemon's answers: status, envelopes, health, the document itself.
#[test]
fn the_daemons_answers_conform_to_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, None));
    let _d = env.serve();

    let served = env.get("/v1/openapi.json");
    assert_eq!(served.status, 200);
    assert_eq!(served.json(), doc(), "the served document is the file");

    assert_conforms(&env.status(), "StatusDocument");
    assert_conforms(&env.get("/v1/health").json(), "Health");
    // 409: no key in force.
    let r = env.post("/v1/check", None);
    assert_eq!(r.status, 409);
    assert_conforms(&r.json(), "ErrorEnvelope");
    // 400, 422, 503 from activate; 200 and the status document.
    for (body, status) in [
        ("not json".to_string(), 400),
        (format!("{{\"license_key\": \"{}\"}}", keys::EXPIRED), 422),
    ] {
        let r = env.post("/v1/activate", Some(&body));
        assert_eq!(r.status, status, "{}", r.text());
        assert_conforms(&r.json(), "ErrorEnvelope");
    }
    sim.set_outage(Some(Outage::Drop));
    let r = env.post(
        "/v1/activate",
        Some(&format!("{{\"license_key\": \"{}\"}}", keys::GOOD)),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_conforms(&r.json(), "ErrorEnvelope");
    sim.set_outage(None);
    let r = env.post(
        "/v1/activate",
        Some(&format!("{{\"license_key\": \"{}\"}}", keys::GOOD)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_conforms(&r.json(), "StatusDocument");
    assert_conforms(&env.wait_state("active"), "StatusDocument");
    // 404 and 405 answer the envelope too.
    for (m, p, status) in [("GET", "/v1/nothing", 404), ("DELETE", "/v1/status", 405)] {
        let r = request(&env.socket, m, p, &[], None);
        assert_eq!(r.status, status);
        assert_conforms(&r.json(), "ErrorEnvelope");
    }
    // 403: a browser's request.
    let r = request(
        &env.socket,
        "GET",
        "/v1/status",
        &[("Origin", "http://x")],
        None,
    );
    assert_eq!(r.status, 403);
    assert_conforms(&r.json(), "ErrorEnvelope");
}
