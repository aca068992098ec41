//! The portal client against the simulator over real TLS and real sockets:
//! trust, certificate failures, timeouts, the 1 MiB cap, redirects, and the
//! classification of what comes back.

use serde_json::json;
use std::time::{Duration, Instant};
use wispanel_core::classify::Outcome;
use wispanel_core::gate::GateClose;
use wispanel_core::key::LicenseKey;
use wispanel_core::{Endpoint, ErrorKind, LicenseState};
use wispanel_license::portal::{PortalClient, RequestFacts, request_body};
use wispanel_portal_sim::{self as sim, ScriptedAnswer, SimHandle, SimOptions, TlsMode, keys};

const HW: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn body(endpoint: Endpoint, key: &str) -> serde_json::Value {
    let key = LicenseKey::parse(key).unwrap();
    request_body(
        endpoint,
        &RequestFacts {
            key: &key,
            hardware_id: HW,
            hostname: "host1",
            product_version: "1.4.2",
            channel: "stable",
            version: None,
        },
    )
}

async fn tls_sim(dir: &tempfile::TempDir, mode: &str) -> (SimHandle, PortalClient) {
    let ca = dir.path().join("ca.pem");
    let tls = match mode {
        "other" => TlsMode::OtherCa { ca_out: ca.clone() },
        _ => TlsMode::SelfCa { ca_out: ca.clone() },
    };
    let opts = SimOptions {
        tls,
        ..SimOptions::https(ca.clone())
    };
    let h = sim::start(opts).await.unwrap();
    let c = PortalClient::build(&h.base_url, Some(&ca), None, Duration::from_secs(2)).unwrap();
    (h, c)
}

#[tokio::test]
async fn trusted_ca_activate_then_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = tls_sim(&dir, "self").await;
    let a = c
        .call(Endpoint::Activate, &body(Endpoint::Activate, keys::GOOD))
        .await;
    let Outcome::Valid(d) = &a.outcome else {
        panic!("{a:?}")
    };
    assert_eq!(d.max_databases, Some(-1));
    assert!(a.portal_date.is_some(), "the Date header is kept");
    let v = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(matches!(v.outcome, Outcome::Valid(_)), "{v:?}");
    // The key went in the body only: the sim saw it, masked in its log.
    let reqs = h.requests();
    assert!(reqs.iter().all(|r| !r.path.contains("WISP")));
    assert_eq!(reqs.len(), 2);
}

#[tokio::test]
async fn refusals_come_back_as_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, c) = tls_sim(&dir, "self").await;
    for (key, want) in [
        (keys::EXPIRED, LicenseState::Expired),
        (keys::SUSPENDED, LicenseState::Suspended),
        (keys::REVOKED, LicenseState::Revoked),
        ("WISP-NOPE-0000-0000", LicenseState::InvalidKey),
    ] {
        let r = c
            .call(Endpoint::Activate, &body(Endpoint::Activate, key))
            .await;
        match r.outcome {
            Outcome::Refused { state, .. } => assert_eq!(state, want, "{key}"),
            o => panic!("{key}: {o:?}"),
        }
    }
}

#[tokio::test]
async fn another_ca_is_a_tls_non_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, c) = tls_sim(&dir, "other").await;
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    match r.outcome {
        Outcome::Failed(e) => assert_eq!(e.kind, ErrorKind::Tls, "{}", e.message),
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn without_ca_file_the_sim_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = tls_sim(&dir, "self").await;
    let c = PortalClient::build(&h.base_url, None, None, Duration::from_secs(2)).unwrap();
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Tls),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_stall_hits_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = tls_sim(&dir, "self").await;
    h.push_answers(sim::Endpoint::Validate, vec![ScriptedAnswer::stall()]);
    let t = Instant::now();
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Timeout),
        "{r:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "bounded by request_timeout"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_connect() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = tls_sim(&dir, "self").await;
    h.push_answers(
        sim::Endpoint::Validate,
        vec![ScriptedAnswer::drop_connection()],
    );
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Connect),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_refused_port_is_connect() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let c = PortalClient::build(
        &format!("http://127.0.0.1:{port}"),
        None,
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Connect),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_five_mib_body_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = tls_sim(&dir, "self").await;
    h.push_answers(
        sim::Endpoint::Validate,
        vec![ScriptedAnswer::raw(200, "{\"valid\": true, \"pad\": \"").with_body_repeat(5 << 20)],
    );
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Malformed && e.message.contains("exceeds")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_truncated_body_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = tls_sim(&dir, "self").await;
    h.push_answers(
        sim::Endpoint::Validate,
        vec![
            ScriptedAnswer::json(200, json!({"valid": true, "license": {"tier": "pro"}}))
                .with_truncate_at(10),
        ],
    );
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Malformed),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = tls_sim(&dir, "self").await;
    let target = format!("{}/api/v1/license/validate", h.base_url);
    h.push_answers(
        sim::Endpoint::Validate,
        vec![ScriptedAnswer::redirect(&target)],
    );
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Http && e.http_status == Some(302)),
        "{r:?}"
    );
    assert_eq!(h.request_count(sim::Endpoint::Validate), 1, "not followed");
}

#[tokio::test]
async fn rate_limits_close_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = tls_sim(&dir, "self").await;
    h.push_answers(
        sim::Endpoint::Validate,
        vec![
            ScriptedAnswer::status(429).with_header("Retry-After", "60"),
            ScriptedAnswer::status(503).with_header("Retry-After", "7"),
        ],
    );
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::RateLimited));
    assert!(matches!(r.gate, Some(GateClose::Until(_))));
    let r = c
        .call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
        .await;
    assert!(matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::RateLimited));
}

#[tokio::test]
async fn plain_http_on_loopback_works() {
    let h = sim::start(SimOptions::plain()).await.unwrap();
    let c = PortalClient::build(&h.base_url, None, None, Duration::from_secs(2)).unwrap();
    let r = c
        .call(Endpoint::Activate, &body(Endpoint::Activate, keys::GOOD))
        .await;
    assert!(matches!(r.outcome, Outcome::Valid(_)), "{r:?}");
    let u = c
        .call(
            Endpoint::CheckUpdate,
            &body(Endpoint::CheckUpdate, keys::GOOD),
        )
        .await;
    assert!(
        matches!(u.outcome, Outcome::Update(ref a) if a.update_available),
        "{u:?}"
    );
}

#[test]
fn a_bad_ca_file_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ca.pem");
    std::fs::write(&p, "not a certificate").unwrap();
    let e = PortalClient::build(
        "https://127.0.0.1:1",
        Some(&p),
        None,
        Duration::from_secs(1),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("ca_file"), "{e}");
    let missing = dir.path().join("missing.pem");
    let e = PortalClient::build(
        "https://127.0.0.1:1",
        Some(&missing),
        None,
        Duration::from_secs(1),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("missing.pem"), "{e}");
}
