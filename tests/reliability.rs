//! The fault matrix of issue #9 against the real daemon: every failure
//! PORTAL.md lists, one at a time, after a valid verdict. For each: the
//! daemon stays alive, the verdict stands (active → grace, never a refusal),
//! `last_error.kind` is SPEC's, the gate closes only when SPEC says so and is
//! respected, and the daemon recovers once the portal behaves.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use wispanel_portal_sim::{Endpoint, Outage, Route, ScriptedAnswer, SimOptions, TlsMode};

/// How long the gate must stay closed after the faulty answer, if at all.
#[derive(Clone, Copy, Debug)]
enum Gate {
    Open,
    /// Closed for between these many milliseconds after the answer.
    Closed(i64, i64),
}

struct Case {
    answer: ScriptedAnswer,
    kind: &'static str,
    http_status: Option<u16>,
    gate: Gate,
    /// The daemon retries and gets back to `active` within the wait.
    recovers: bool,
    /// Plain HTTP instead of HTTPS.
    plain: bool,
}

impl Case {
    fn new(answer: ScriptedAnswer, kind: &'static str, http_status: Option<u16>) -> Case {
        Case {
            answer,
            kind,
            http_status,
            gate: Gate::Open,
            recovers: true,
            plain: false,
        }
    }

    fn gate(mut self, lo_ms: i64, hi_ms: i64) -> Case {
        self.gate = Gate::Closed(lo_ms, hi_ms);
        self
    }
}

fn run(case: Case) {
    let (sim, env, d) = active_daemon_with(!case.plain, |_| {});
    env.wait_status("the first update check", |s| {
        s["update"]["state"] == "available"
    });
    let t0 = wispanel_license::clock::now();
    sim.push_answers(Endpoint::Validate, vec![case.answer.clone()]);
    let r = env.post("/v1/check", None);
    assert_eq!(
        r.status,
        200,
        "a failed check answers the document: {}",
        r.text()
    );
    let s = r.json();
    let fault = sim
        .since(t0)
        .into_iter()
        .find(|r| r.endpoint == Endpoint::Validate)
        .expect("the check reached the portal");

    assert_eq!(s["license"]["state"], "grace", "the verdict stands: {s:#}");
    assert_eq!(s["license"]["licensed"], true);
    assert!(s["license"]["reason"].is_null(), "{s:#}");
    let e = &s["portal"]["last_error"];
    assert_eq!(e["kind"], case.kind, "{s:#}");
    if let Some(st) = case.http_status {
        assert_eq!(e["http_status"], st, "{s:#}");
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(s["portal"]["consecutive_failures"], 1);
    let h = env.get("/v1/health");
    assert_eq!((h.status, h.json()), (200, json!({"ok": true})));

    match case.gate {
        Gate::Open => {
            assert!(s["portal"]["rate_limited_until"].is_null(), "{s:#}");
        }
        Gate::Closed(lo, hi) => {
            let until = ts(&s["portal"]["rate_limited_until"])
                .unwrap_or_else(|| panic!("the gate should be closed: {s:#}"));
            // The status shows whole seconds; allow one second of rounding.
            let closed = until.0 - fault.time.0;
            assert!(
                (lo - 1000..=hi).contains(&closed),
                "gate closed {closed} ms, expected {lo}..={hi}"
            );
            if closed < 10_000 {
                env.wait_status("the gate to open", |s| {
                    s["portal"]["rate_limited_until"].is_null()
                });
            } else {
                quiet_for(Duration::from_secs(2));
            }
            for r in sim.since(fault.time.add(Duration::from_millis(1))) {
                assert!(
                    r.time.0 >= fault.time.0 + lo - 1000 - 150,
                    "{} sent {} ms after the gate closed for {closed} ms",
                    r.endpoint,
                    r.time.0 - fault.time.0
                );
            }
        }
    }
    // Never followed anywhere else (a redirect) and never a verdict.
    assert!(
        sim.requests().iter().all(|r| r.endpoint != Route::Unknown),
        "{:?}",
        sim.requests()
    );
    if case.recovers {
        env.wait_state("active");
    } else {
        assert_eq!(env.status()["license"]["state"], "grace");
    }
    assert!(d.log().contains("portal request failed"));
}

#[test]
fn body_not_json() {
    run(Case::new(
        ScriptedAnswer::raw(200, "<html><body>Maintenance</body></html>"),
        "malformed",
        Some(200),
    ));
}

#[test]
fn body_truncated() {
    run(Case::new(
        ScriptedAnswer::normal().with_truncate_at(12),
        "malformed",
        Some(200),
    ));
}

#[test]
fn body_empty() {
    run(Case::new(
        ScriptedAnswer::status(200),
        "malformed",
        Some(200),
    ));
}

#[test]
fn body_5_mib() {
    run(Case::new(
        ScriptedAnswer::normal().with_body_repeat(5 * 1024 * 1024),
        "malformed",
        Some(200),
    ));
}

#[test]
fn body_wrong_shape() {
    run(Case::new(
        ScriptedAnswer::json(200, json!({"valid": "yes", "license": [1, 2]})),
        "malformed",
        Some(200),
    ));
}

#[test]
fn body_valid_false_without_code() {
    run(Case::new(
        ScriptedAnswer::json(200, json!({"valid": false})),
        "http",
        Some(200),
    ));
}

#[test]
fn server_error_with_refusal_code_is_not_a_verdict() {
    run(Case::new(
        ScriptedAnswer::json(500, json!({"valid": false, "code": "EXPIRED"})),
        "http",
        Some(500),
    ));
}

#[test]
fn unavailable_without_retry_after() {
    run(Case::new(ScriptedAnswer::status(503), "http", Some(503)));
}

#[test]
fn unavailable_with_retry_after() {
    run(Case::new(
        ScriptedAnswer::status(503).with_header("Retry-After", "3"),
        "rate_limited",
        Some(503),
    )
    .gate(3000, 5000));
}

fn too_many() -> ScriptedAnswer {
    ScriptedAnswer::json(429, json!({"success": false, "code": "RATE_LIMITED"}))
}

#[test]
fn retry_after_missing_uses_backoff() {
    // retry_initial = 1s: the wait is clamped to at least 1 s.
    run(Case::new(too_many(), "rate_limited", Some(429)).gate(1000, 4000));
}

#[test]
fn retry_after_zero_is_clamped_to_one_second() {
    run(Case::new(
        too_many().with_header("Retry-After", "0"),
        "rate_limited",
        Some(429),
    )
    .gate(1000, 3000));
}

#[test]
fn retry_after_garbage_uses_backoff() {
    run(Case::new(
        too_many().with_header("Retry-After", "soon"),
        "rate_limited",
        Some(429),
    )
    .gate(1000, 4000));
}

#[test]
fn retry_after_huge_is_clamped_to_a_day() {
    let day = 86_400_000;
    let mut c = Case::new(
        too_many().with_header("Retry-After", "999999999"),
        "rate_limited",
        Some(429),
    )
    .gate(day, day + 2000);
    c.recovers = false;
    run(c);
}

#[test]
fn retry_after_http_date() {
    let at = wispanel_license::clock::now().add(Duration::from_secs(4));
    // The HTTP date has whole seconds: between 3 and 4 s from now.
    run(Case::new(
        too_many().with_header("Retry-After", &at.to_http_date()),
        "rate_limited",
        Some(429),
    )
    .gate(2000, 6000));
}

#[test]
fn rate_limit_reset_without_retry_after() {
    let reset = wispanel_license::clock::now().unix_secs() + 4;
    run(Case::new(
        too_many().with_header("X-RateLimit-Reset", &reset.to_string()),
        "rate_limited",
        Some(429),
    )
    .gate(2000, 6000));
}

/// Rate-limit headers on a good answer close nothing.
#[test]
fn rate_limit_headers_on_success_close_nothing() {
    let (sim, env, _d) = active_daemon(|_| {});
    env.wait_status("the first update check", |s| {
        s["update"]["state"] == "available"
    });
    sim.push_answers(
        Endpoint::Validate,
        vec![
            ScriptedAnswer::normal()
                .with_header("Retry-After", "600")
                .with_header("X-RateLimit-Remaining", "0"),
        ],
    );
    let s = env.post("/v1/check", None).json();
    assert_eq!(s["license"]["state"], "active");
    assert!(s["portal"]["rate_limited_until"].is_null(), "{s:#}");
    assert!(s["portal"]["last_error"].is_null());
}

#[test]
fn redirect_is_not_followed() {
    run(Case::new(
        ScriptedAnswer::redirect("/elsewhere"),
        "http",
        Some(302),
    ));
}

#[test]
fn stall_times_out() {
    run(Case::new(ScriptedAnswer::stall(), "timeout", None));
}

#[test]
fn stall_mid_body_times_out() {
    run(Case::new(
        ScriptedAnswer {
            stall_body: true,
            ..ScriptedAnswer::normal()
        },
        "timeout",
        None,
    ));
}

/// A close before the status line is `connect`, also after a TLS handshake.
#[test]
fn dropped_connection() {
    run(Case::new(
        ScriptedAnswer::drop_connection(),
        "connect",
        None,
    ));
}

#[test]
fn dropped_connection_plain_http() {
    let mut c = Case::new(ScriptedAnswer::drop_connection(), "connect", None);
    c.plain = true;
    run(c);
}

/// A whole-portal outage that drops every connection: grace, two quick
/// retries, then grace pacing (the next try at validate_interval, not the
/// back-off); a manual check after the portal is back makes it active.
#[test]
fn outage_drop_grace_pacing_then_back() {
    // Plain HTTP: over TLS the kind is wrong (see `dropped_connection`).
    let (sim, env, _d) = active_daemon_with(false, |_| {});
    env.wait_status("the first update check", |s| {
        s["update"]["state"] == "available"
    });
    sim.set_outage(Some(Outage::Drop));
    let s = env.post("/v1/check", None).json();
    assert_eq!(s["license"]["state"], "grace");
    assert_eq!(s["portal"]["last_error"]["kind"], "connect");
    let s = env.wait_status("three failures", |s| {
        s["portal"]["consecutive_failures"] == 3
    });
    let last = ts(&s["portal"]["last_attempt_at"]).unwrap();
    let next = ts(&s["portal"]["next_validate_at"]).unwrap();
    let gap = next.0 - last.0;
    assert!(
        (25_000..=31_000).contains(&gap),
        "grace pacing: the next try {gap} ms after the last, not validate_interval"
    );
    let n = sim.count();
    quiet_for(Duration::from_secs(3));
    assert_eq!(sim.count(), n, "retries went on with the back-off in grace");
    assert_eq!(env.get("/v1/health").status, 200);
    sim.set_outage(None);
    // Manual checks reuse the last result for 10 s, then validate.
    poll_until(WAIT, "a manual check to make it active", || {
        let r = env.post("/v1/check", None);
        assert_eq!(r.status, 200);
        let ok = r.json()["license"]["state"] == "active";
        if !ok {
            std::thread::sleep(Duration::from_millis(450));
        }
        ok.then_some(())
    });
}

/// A certificate from another CA: `tls`, verdict kept. The daemon is moved
/// to that portal by a reload so that it has a valid verdict first.
#[test]
fn certificate_from_another_ca() {
    let (_sim, mut env, d) = active_daemon(|_| {});
    let bad = Sim::start(SimOptions {
        tls: TlsMode::OtherCa {
            ca_out: env.path().join("other-ca.pem"),
        },
        ..SimOptions::plain()
    });
    env.conf.portal_url = bad.base_url.clone();
    env.conf.ca_file = bad.ca_pem_path.clone();
    env.write_config();
    d.sighup();
    d.wait_log("configuration reloaded");
    let s = env.post("/v1/check", None).json();
    assert_eq!(s["license"]["state"], "grace", "{s:#}");
    assert_eq!(s["portal"]["last_error"]["kind"], "tls", "{s:#}");
    assert!(s["license"]["reason"].is_null());
    assert_eq!(bad.count(), 0, "no request got through the handshake");
    assert_eq!(env.get("/v1/health").status, 200);
}
