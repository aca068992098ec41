//! The harness itself and the one clock: the daemon in-process
//! (`wispanel_license::testing`) talking to the portal simulator through the
//! real `PortalClient`, under paused time, with a clock years away from the
//! system's. The gate a `Retry-After` closes and the deadlines it sets are in
//! the daemon's time, not the system's.

use serde_json::json;
use wispanel_core::Endpoint;
use wispanel_core::classify::Outcome;
use wispanel_core::gate::GateClose;
use wispanel_core::timestamp::Timestamp;
use wispanel_license::clock::Clock;
use wispanel_license::portal::PortalClient;
use wispanel_license::testing::*;
use wispanel_portal_sim::{self as sim, ScriptedAnswer, SimOptions};

/// 2031-01-01T00:00:00Z: far from any system clock these tests run under.
const T31: Timestamp = Timestamp(1_924_992_000_000);

struct Fixed(Timestamp);

impl Clock for Fixed {
    fn now(&self) -> Timestamp {
        self.0
    }
}

fn rate_limited(secs: &str) -> ScriptedAnswer {
    ScriptedAnswer::json(
        429,
        json!({"success": false, "code": "RATE_LIMITED", "error": "slow down"}),
    )
    .with_header("Retry-After", secs)
}

#[tokio::test]
async fn the_portal_client_classifies_at_the_clock_it_is_given() {
    let sim = sim::start(SimOptions::plain())
        .await
        .expect("the simulator");
    sim.push_answers(Endpoint::Validate, vec![rate_limited("120")]);
    let client = PortalClient::build(&sim.base_url, None, None, secs(20)).expect("a client");
    let body = json!({"license_key": KEY, "hardware_id": HWID, "product_version": "1.4.2"});
    let c = client
        .exchange(Endpoint::Validate, &body, None, &Fixed(T31))
        .await;
    assert!(matches!(c.outcome, Outcome::Failed(_)), "{c:?}");
    assert_eq!(c.gate, Some(GateClose::Until(T31.add(secs(120)))), "{c:?}");
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_gate_and_the_deadlines_follow_the_daemons_clock_through_the_real_client() {
    let sim = sim::start(SimOptions::plain())
        .await
        .expect("the simulator");
    sim.push_answers(Endpoint::Activate, vec![rate_limited("120")]);
    let h = Harness::real_portal(DEFAULTS, T31, &sim.base_url);
    let d = h.start(31);
    pass(secs(1)).await;
    assert_eq!(sim.request_count(Endpoint::Activate), 1);
    let doc = h.status().await;
    let p = &doc.portal;
    assert_eq!(p.last_attempt_at, Some(T31), "{p:?}");
    assert_eq!(p.rate_limited_until, Some(T31.add(secs(120))), "{p:?}");
    let next = p.next_validate_at.expect("a next licence request");
    // Spread over min(splay, gate / 2) = 60 s after the gate, in 2031.
    assert_within(
        "next request after the gate",
        after(next, T31),
        secs(120),
        secs(180),
    );

    // Nothing before the gate's end (paused time: 119 s pass at once) ...
    pass(secs(118)).await;
    assert_eq!(
        sim.request_count(Endpoint::Activate),
        1,
        "nothing before the gate's end"
    );
    // ... then the activation goes through.
    pass(secs(120)).await;
    assert_eq!(sim.request_count(Endpoint::Activate), 2);
    let doc = h.status().await;
    assert!(doc.license.licensed, "{:?}", doc.license);
    let checked = doc.license.checked_at.expect("a checked_at");
    assert_within("activated", after(checked, T31), secs(120), secs(180));
    d.stop().await;
    sim.shutdown().await;
}
