//! Refusals (issue #4) in-process on the harness, under paused time, against
//! the portal simulator through the real client: each refusal reaches its
//! state, is a verdict (not an error), and causes no retry before the
//! validate it plans.

use serde_json::Value;
use wispanel_core::timestamp::Timestamp;
use wispanel_license::testing::*;
use wispanel_portal_sim::{self as sim, LicenseBehaviour, SimHandle, SimOptions, keys};

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(Timestamp::parse_rfc3339)
}

/// A refusal reaches its state and causes no fast retries.
async fn refusal(key: &str, setup: impl FnOnce(&SimHandle), state: &str, code: &str) {
    let sim = sim::start(SimOptions::plain())
        .await
        .expect("the simulator");
    setup(&sim);
    // The process tests' schedule: a validate every 30 s, retries at 1-2 s.
    let sched = Sched {
        validate_interval: "30s",
        update_check_interval: "1h",
        splay: "0s",
        retry_initial: "1s",
        retry_max: "2s",
        ..DEFAULTS
    };
    let mut h = Harness::real_portal(sched, wispanel_license::clock::now(), &sim.base_url);
    h.set_key(Some(key));
    let d = h.start(1);
    pass(secs(1)).await;
    let s = h.status_json().await;
    assert_eq!(s["license"]["state"], state, "{s:#}");
    assert_eq!(s["license"]["licensed"], false);
    assert_eq!(s["license"]["reason"]["code"], code, "{s:#}");
    assert!(s["license"]["grace_until"].is_null());
    assert!(
        s["portal"]["last_error"].is_null(),
        "a verdict is not an error"
    );
    assert_eq!(s["portal"]["consecutive_failures"], 0);
    let next = ts(&s["portal"]["next_validate_at"]).expect("refusals are validated again");
    assert!(next.since(h.now()) > secs(20), "{s:#}");
    // No request at all until the planned validate (paused time: instant),
    // where the process test could only watch 3 s of wall clock.
    let n = sim.requests().len();
    pass(after(next, h.now()) - secs(1)).await;
    assert_eq!(
        sim.requests().len(),
        n,
        "a refusal caused retries: {:?}",
        sim.requests()
    );
    assert_eq!(h.status_json().await["license"]["state"], state);
    // ... and the planned one comes.
    pass(secs(2)).await;
    assert_eq!(sim.requests().len(), n + 1, "{:?}", sim.requests());
    assert_eq!(h.status_json().await["license"]["state"], state);
    d.stop().await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn refusal_expired() {
    refusal(keys::EXPIRED, |_| {}, "expired", "EXPIRED").await;
}

#[tokio::test(start_paused = true)]
async fn refusal_suspended() {
    refusal(keys::SUSPENDED, |_| {}, "suspended", "SUSPENDED").await;
}

#[tokio::test(start_paused = true)]
async fn refusal_revoked() {
    refusal(keys::REVOKED, |_| {}, "revoked", "REVOKED").await;
}

#[tokio::test(start_paused = true)]
async fn refusal_max_activations() {
    refusal(
        keys::MAX_ACTIVATIONS,
        |_| {},
        "max_activations",
        "MAX_ACTIVATIONS",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn refusal_invalid_key() {
    refusal("WISP-NONE-0000-0042", |_| {}, "invalid_key", "INVALID_KEY").await;
}

#[tokio::test(start_paused = true)]
async fn refusal_version_too_low() {
    refusal(
        "WISP-OLDV-0000-0043",
        |s| s.set_license("WISP-OLDV-0000-0043", LicenseBehaviour::VersionTooLow),
        "version_too_low",
        "VERSION_TOO_LOW",
    )
    .await;
}
