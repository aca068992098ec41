//! The fault matrix of issue #9 against the daemon (in-process, on the
//! harness, with the real portal client and the simulator): every failure
//! PORTAL.md lists, one at a time, after a valid verdict. For each: the
//! daemon stays alive, the verdict stands (active → grace, never a refusal),
//! `last_error.kind` is SPEC's, the gate closes only when SPEC says so and is
//! respected, and the daemon recovers once the portal behaves.

use serde_json::{Value, json};
use std::time::Duration;
use wispanel_license::testing::*;
use wispanel_portal_sim::{
    self as sim, Endpoint, Outage, Route, ScriptedAnswer, SimHandle, SimOptions, TlsMode,
};

/// The process tests' schedule.
const SIM_SCHED: Sched = FAST;

/// The simulator, the in-process daemon on it (paused time, real client),
/// its log lines; active, after its first update check.
/// Bind every field: a `..` in a `let` drops the rest at once (the log
/// capture, the CA).
struct Active {
    sim: SimHandle,
    h: Harness,
    d: Running,
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
    _ca: tempfile::TempDir,
}

async fn active_daemon_with(https: bool) -> Active {
    active_daemon_on(https, SIM_SCHED).await
}

async fn active_daemon_on(https: bool, sched: Sched) -> Active {
    let (guard, logs) = capture_logs();
    let ca = tempfile::tempdir().expect("a temporary directory");
    let opts = if https {
        SimOptions::https(ca.path().join("ca.pem"))
    } else {
        SimOptions::plain()
    };
    let sim = sim::start(opts).await.expect("the simulator");
    let mut h = Harness::real_portal(sched, wispanel_license::clock::now(), &sim.base_url);
    if let Some(pem) = &sim.ca_pem_path {
        h.add_config(&format!("ca_file = \"{}\"", pem.display()));
    }
    let d = h.start(1);
    h.wait_status("first update check", secs(60), |s| {
        s["license"]["state"] == "active" && s["update"]["state"] == "available"
    })
    .await;
    Active {
        sim,
        h,
        d,
        logs,
        _guard: guard,
        _ca: ca,
    }
}

async fn post_check(h: &Harness) -> Value {
    let r = h
        .request("POST", "/v1/check", None)
        .await
        .expect("an answer");
    assert_eq!(
        r.status,
        200,
        "a failed check answers the document: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().expect("JSON")
}

async fn health(h: &Harness) -> (u16, Value) {
    let r = h
        .request("GET", "/v1/health", None)
        .await
        .expect("an answer");
    (r.status, r.json().unwrap_or(Value::Null))
}

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
    /// The schedule (its `request_timeout` is real time: the client's
    /// exchanges run on a runtime of their own).
    sched: Sched,
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
            sched: SIM_SCHED,
        }
    }

    /// A stall waits out the whole `request_timeout`, in real time: 1 s
    /// here rather than the schedule's 2 s.
    fn quick_timeout(mut self) -> Case {
        self.sched = Sched {
            request_timeout: "1s",
            ..SIM_SCHED
        };
        self
    }

    fn gate(mut self, lo_ms: i64, hi_ms: i64) -> Case {
        self.gate = Gate::Closed(lo_ms, hi_ms);
        self
    }
}

async fn run(case: Case) {
    let Active {
        sim,
        h,
        d,
        logs,
        _guard,
        _ca,
    } = active_daemon_on(!case.plain, case.sched).await;
    let t0 = h.now();
    sim.push_answers(Endpoint::Validate, vec![case.answer.clone()]);
    let s = post_check(&h).await;
    let fault = h
        .exchanges()
        .into_iter()
        .find(|(e, t)| *e == Endpoint::Validate && *t >= t0)
        .map(|(_, t)| t)
        .expect("the check reached the portal");
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.endpoint == Endpoint::Validate),
        "the simulator saw the check"
    );

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
    assert_eq!(health(&h).await, (200, json!({"ok": true})));

    match case.gate {
        Gate::Open => {
            assert!(s["portal"]["rate_limited_until"].is_null(), "{s:#}");
        }
        Gate::Closed(lo, hi) => {
            let until = ts(&s["portal"]["rate_limited_until"])
                .unwrap_or_else(|| panic!("the gate should be closed: {s:#}"));
            // The status shows whole seconds; allow one second of rounding.
            let closed = until.0 - fault.0;
            assert!(
                (lo - 1000..=hi).contains(&closed),
                "gate closed {closed} ms, expected {lo}..={hi}"
            );
            if closed < 10_000 {
                h.wait_status("the gate to open", secs(20), |s| {
                    s["portal"]["rate_limited_until"].is_null()
                })
                .await;
            } else {
                pass(secs(2)).await;
            }
            // Paused time: exact, no allowance for a slow machine.
            for (e, t) in h.exchanges().into_iter().filter(|(_, t)| *t > fault) {
                assert!(
                    t.0 >= fault.0 + lo - 1000,
                    "{e} sent {} ms after the gate closed for {closed} ms",
                    t.0 - fault.0
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
        h.wait_status("active again", secs(60), |s| {
            s["license"]["state"] == "active"
        })
        .await;
    } else {
        assert_eq!(h.status_json().await["license"]["state"], "grace");
    }
    assert!(logs.contains("portal request failed"), "{}", logs.text());
    d.stop().await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn body_not_json() {
    run(Case::new(
        ScriptedAnswer::raw(200, "<html><body>Maintenance</body></html>"),
        "malformed",
        Some(200),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn body_truncated() {
    run(Case::new(
        ScriptedAnswer::normal().with_truncate_at(12),
        "malformed",
        Some(200),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn body_empty() {
    run(Case::new(
        ScriptedAnswer::status(200),
        "malformed",
        Some(200),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn body_5_mib() {
    run(Case::new(
        ScriptedAnswer::normal().with_body_repeat(5 * 1024 * 1024),
        "malformed",
        Some(200),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn body_wrong_shape() {
    run(Case::new(
        ScriptedAnswer::json(200, json!({"valid": "yes", "license": [1, 2]})),
        "malformed",
        Some(200),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn body_valid_false_without_code() {
    run(Case::new(
        ScriptedAnswer::json(200, json!({"valid": false})),
        "http",
        Some(200),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn server_error_with_refusal_code_is_not_a_verdict() {
    run(Case::new(
        ScriptedAnswer::json(500, json!({"valid": false, "code": "EXPIRED"})),
        "http",
        Some(500),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn unavailable_without_retry_after() {
    run(Case::new(ScriptedAnswer::status(503), "http", Some(503))).await;
}

#[tokio::test(start_paused = true)]
async fn unavailable_with_retry_after() {
    run(Case::new(
        ScriptedAnswer::status(503).with_header("Retry-After", "3"),
        "rate_limited",
        Some(503),
    )
    .gate(3000, 5000))
    .await;
}

fn too_many() -> ScriptedAnswer {
    ScriptedAnswer::json(429, json!({"success": false, "code": "RATE_LIMITED"}))
}

#[tokio::test(start_paused = true)]
async fn retry_after_missing_uses_backoff() {
    // retry_initial = 1s: the wait is clamped to at least 1 s.
    run(Case::new(too_many(), "rate_limited", Some(429)).gate(1000, 4000)).await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_zero_is_clamped_to_one_second() {
    run(Case::new(
        too_many().with_header("Retry-After", "0"),
        "rate_limited",
        Some(429),
    )
    .gate(1000, 3000))
    .await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_garbage_uses_backoff() {
    run(Case::new(
        too_many().with_header("Retry-After", "soon"),
        "rate_limited",
        Some(429),
    )
    .gate(1000, 4000))
    .await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_huge_is_clamped_to_a_day() {
    let day = 86_400_000;
    let mut c = Case::new(
        too_many().with_header("Retry-After", "999999999"),
        "rate_limited",
        Some(429),
    )
    .gate(day, day + 2000);
    c.recovers = false;
    run(c).await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date() {
    let at = wispanel_license::clock::now().add(Duration::from_secs(4));
    // The HTTP date has whole seconds: between 3 and 4 s from now.
    run(Case::new(
        too_many().with_header("Retry-After", &at.to_http_date()),
        "rate_limited",
        Some(429),
    )
    .gate(2000, 6000))
    .await;
}

#[tokio::test(start_paused = true)]
async fn rate_limit_reset_without_retry_after() {
    let reset = wispanel_license::clock::now().unix_secs() + 4;
    run(Case::new(
        too_many().with_header("X-RateLimit-Reset", &reset.to_string()),
        "rate_limited",
        Some(429),
    )
    .gate(2000, 6000))
    .await;
}

/// Rate-limit headers on a good answer close nothing.
#[tokio::test(start_paused = true)]
async fn rate_limit_headers_on_success_close_nothing() {
    let Active {
        sim,
        h,
        d,
        _guard,
        _ca,
        ..
    } = active_daemon_with(true).await;
    sim.push_answers(
        Endpoint::Validate,
        vec![
            ScriptedAnswer::normal()
                .with_header("Retry-After", "600")
                .with_header("X-RateLimit-Remaining", "0"),
        ],
    );
    let s = post_check(&h).await;
    assert_eq!(s["license"]["state"], "active");
    assert!(s["portal"]["rate_limited_until"].is_null(), "{s:#}");
    assert!(s["portal"]["last_error"].is_null());
    d.stop().await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn redirect_is_not_followed() {
    run(Case::new(
        ScriptedAnswer::redirect("/elsewhere"),
        "http",
        Some(302),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn stall_times_out() {
    run(Case::new(ScriptedAnswer::stall(), "timeout", None).quick_timeout()).await;
}

#[tokio::test(start_paused = true)]
async fn stall_mid_body_times_out() {
    run(Case::new(
        ScriptedAnswer {
            stall_body: true,
            ..ScriptedAnswer::normal()
        },
        "timeout",
        None,
    )
    .quick_timeout())
    .await;
}

/// A close before the status line is `connect`, also after a TLS handshake.
#[tokio::test(start_paused = true)]
async fn dropped_connection() {
    run(Case::new(
        ScriptedAnswer::drop_connection(),
        "connect",
        None,
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn dropped_connection_plain_http() {
    let mut c = Case::new(ScriptedAnswer::drop_connection(), "connect", None);
    c.plain = true;
    run(c).await;
}

/// A whole-portal outage that drops every connection: grace, two quick
/// retries, then grace pacing (the next try at validate_interval, not the
/// back-off); a manual check after the portal is back makes it active.
#[tokio::test(start_paused = true)]
async fn outage_drop_grace_pacing_then_back() {
    // Plain HTTP: over TLS the kind is wrong (see `dropped_connection`).
    let Active {
        sim,
        h,
        d,
        _guard,
        _ca,
        ..
    } = active_daemon_with(false).await;
    sim.set_outage(Some(Outage::Drop));
    let s = post_check(&h).await;
    assert_eq!(s["license"]["state"], "grace");
    assert_eq!(s["portal"]["last_error"]["kind"], "connect");
    let s = h
        .wait_status("three failures", secs(60), |s| {
            s["portal"]["consecutive_failures"] == 3
        })
        .await;
    let last = ts(&s["portal"]["last_attempt_at"]).expect("last_attempt_at");
    let next = ts(&s["portal"]["next_validate_at"]).expect("next_validate_at");
    let gap = next.0 - last.0;
    assert!(
        (25_000..=31_000).contains(&gap),
        "grace pacing: the next try {gap} ms after the last, not validate_interval"
    );
    // No try at all until the paced one (the process test watched 3 s).
    let n = sim.requests().len();
    pass(after(next, h.now()) - secs(1)).await;
    assert_eq!(
        sim.requests().len(),
        n,
        "retries went on with the back-off in grace"
    );
    assert_eq!(health(&h).await.0, 200);
    sim.set_outage(None);
    // Manual checks reuse the last result for 10 s, then validate.
    let mut active = false;
    for _ in 0..40 {
        if post_check(&h).await["license"]["state"] == "active" {
            active = true;
            break;
        }
        pass(Duration::from_millis(450)).await;
    }
    assert!(active, "a manual check made it active");
    d.stop().await;
    sim.shutdown().await;
}

/// A certificate from another CA: `tls`, verdict kept. The daemon is moved
/// to that portal by a reload so that it has a valid verdict first.
#[tokio::test(start_paused = true)]
async fn certificate_from_another_ca() {
    let Active {
        sim,
        h,
        d,
        logs,
        _guard,
        _ca,
    } = active_daemon_with(true).await;
    let other = tempfile::tempdir().expect("a temporary directory");
    let bad = sim::start(SimOptions {
        tls: TlsMode::OtherCa {
            ca_out: other.path().join("other-ca.pem"),
        },
        ..SimOptions::plain()
    })
    .await
    .expect("the other simulator");
    let pem = bad.ca_pem_path.clone().expect("the other CA");
    let text = std::fs::read_to_string(h.config_path())
        .expect("the configuration")
        .lines()
        .map(|l| {
            if l.starts_with("portal_url") {
                format!("portal_url = \"{}\"", bad.base_url)
            } else if l.starts_with("ca_file") {
                format!("ca_file = \"{}\"", pem.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(h.config_path(), text + "\n").expect("the configuration");
    d.reload();
    for _ in 0..100 {
        if logs.contains("configuration reloaded") {
            break;
        }
        settle().await;
    }
    assert!(logs.contains("configuration reloaded"), "{}", logs.text());
    let s = post_check(&h).await;
    assert_eq!(s["license"]["state"], "grace", "{s:#}");
    assert_eq!(s["portal"]["last_error"]["kind"], "tls", "{s:#}");
    assert!(s["license"]["reason"].is_null());
    assert_eq!(
        bad.requests().len(),
        0,
        "no request got through the handshake"
    );
    assert_eq!(health(&h).await.0, 200);
    d.stop().await;
    bad.shutdown().await;
    sim.shutdown().await;
}
