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
    let (h, _) = tls_sim(&dir, "self").await;
    // A stall waits out the whole request_timeout: 1 s here.
    let limit = Duration::from_secs(1);
    let c =
        PortalClient::build(&h.base_url, Some(&dir.path().join("ca.pem")), None, limit).unwrap();
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

/// The daemon's client cache (`https_factory`): a reload with the same
/// setup keeps the client (no new TLS configuration, no CA bundle read
/// again); one whose `ca_file` content changed builds a new client, and the
/// new certificate is what it trusts.
#[tokio::test]
async fn the_client_is_rebuilt_only_when_its_setup_changes() {
    use wispanel_license::config::Config;
    use wispanel_license::portal::ClientCache;
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = tls_sim(&dir, "self").await;
    let ca_right = std::fs::read(dir.path().join("ca.pem")).unwrap();
    // A second sim, only for a well-formed CA that did not sign `h`'s certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let (_other, _) = tls_sim(&other_dir, "self").await;
    let ca_wrong = std::fs::read(other_dir.path().join("ca.pem")).unwrap();
    assert_ne!(ca_right, ca_wrong);

    let ca_file = dir.path().join("trusted.pem");
    let config_file = dir.path().join("license.toml");
    let write_config = |timeout: &str| {
        std::fs::write(
            &config_file,
            format!(
                "license_key = \"{}\"\nportal_url = \"{}\"\nca_file = \"{}\"\nproduct_version = \"1.4.2\"\n\
                 state_dir = \"{}\"\n\n[schedule]\nrequest_timeout = \"{timeout}\"\n",
                keys::GOOD,
                h.base_url,
                ca_file.display(),
                dir.path().join("state").display(),
            ),
        )
        .unwrap();
        Config::load(&config_file).unwrap()
    };
    let cache = ClientCache::default();
    let validate = |c: std::sync::Arc<PortalClient>| async move {
        c.call(Endpoint::Validate, &body(Endpoint::Validate, keys::GOOD))
            .await
            .outcome
    };

    std::fs::write(&ca_file, &ca_wrong).unwrap();
    let config = write_config("5s");
    let first = cache.client(&config).unwrap();
    match validate(first.clone()).await {
        Outcome::Failed(e) => assert_eq!(e.kind, ErrorKind::Tls, "{}", e.message),
        o => panic!("the wrong CA was trusted: {o:?}"),
    }
    // Reloading the same configuration: the same client, nothing rebuilt.
    for _ in 0..3 {
        let again = cache.client(&Config::load(&config_file).unwrap()).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &again));
    }
    assert_eq!(cache.builds(), 1);

    // The certificate replaced in place: the next reload takes it.
    std::fs::write(&ca_file, &ca_right).unwrap();
    let second = cache.client(&Config::load(&config_file).unwrap()).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(cache.builds(), 2);
    match validate(second.clone()).await {
        Outcome::Failed(e) => panic!("the new CA is not trusted after the reload: {e:?}"),
        _verdict => {}
    }

    // Another setting of the client (request_timeout) also rebuilds it.
    let third = cache.client(&write_config("7s")).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&second, &third));
    assert_eq!(cache.builds(), 3);

    // A ca_file that disappeared is an error naming it; nothing is replaced.
    std::fs::remove_file(&ca_file).unwrap();
    let e = cache
        .client(&config)
        .err()
        .expect("a missing ca_file is refused");
    assert!(e.to_string().contains("trusted.pem"), "{e}");
    assert_eq!(cache.builds(), 3);
}
