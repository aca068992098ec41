//! The daemon's schedule and gate, run in-process under paused tokio time.
//!
//! The daemon runs through `daemon::run` on the harness
//! (`wispanel_license::testing`): a clock that follows tokio's time, a seeded
//! jitter, and a portal that answers at once from a script and records when
//! each request came. So hours of schedule take milliseconds, and the
//! assertions are on exact request times.

use std::path::Path;
use std::time::Duration;
use wispanel_core::Endpoint;
use wispanel_core::timestamp::Timestamp;
use wispanel_license::store::{Loaded, Store};
use wispanel_license::testing::*;

/// The harness under the name these tests grew up with.
type Host = Harness;

fn saved_next_validate(dir: &Path, now: Timestamp) -> Timestamp {
    let store = Store::open(dir).expect("state directory");
    match store.load(now) {
        Loaded::Existing(core) => core.plan.next_validate_at.expect("a next validate time"),
        _ => panic!("no saved state"),
    }
}

#[tokio::test(start_paused = true)]
async fn first_start_activates_at_once_then_validates_on_the_interval() {
    let h = Host::new(DEFAULTS, |_, _| Reply::Valid);
    let d = h.start(1);
    pass(secs(1)).await;
    let reqs = h.portal().licence_requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].0, Endpoint::Activate);
    assert_within("first request", after(reqs[0].1, T0), secs(0), secs(0));
    // The first update check follows the first valid verdict.
    let all = h.portal().log();
    assert_eq!(
        all.get(1).map(|r| r.0),
        Some(Endpoint::CheckUpdate),
        "{all:?}"
    );

    pass(hours(7)).await;
    let reqs = h.portal().licence_requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].0, Endpoint::Validate);
    assert_within(
        "validate after activate",
        after(reqs[1].1, reqs[0].1),
        hours(6),
        hours(6) + secs(15 * 60),
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_closes_the_gate_and_the_return_is_spread() {
    let h = Host::new(DEFAULTS, |_, t| {
        if t == T0 {
            Reply::Status(
                429,
                vec![("Retry-After", "120".into())],
                r#"{"success": false, "code": "RATE_LIMITED", "error": "slow down"}"#,
            )
        } else {
            Reply::Valid
        }
    });
    let d = h.start(2);
    pass(secs(119)).await;
    assert_eq!(
        h.portal().licence_requests().len(),
        1,
        "nothing before the gate's end"
    );
    pass(secs(300)).await;
    let reqs = h.portal().licence_requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    // Spread over min(splay, gate / 2) = 60 s after the gate.
    assert_within("after the gate", after(reqs[1].1, T0), secs(120), secs(180));
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_doubling_to_retry_max() {
    let s = Sched {
        retry_max: "2m",
        ..DEFAULTS
    };
    let h = Host::new(s, |_, _| Reply::Status(503, vec![], "{}"));
    let d = h.start(3);
    pass(hours(1)).await;
    let reqs = h.portal().licence_requests();
    assert!(reqs.len() > 8, "{reqs:?}");
    for (n, w) in reqs.windows(2).enumerate() {
        // d = min(retry_max, retry_initial × 2^n): 30 s, 60 s, 120 s, 120 s, …
        let cap = secs(30u64 << n.min(2));
        assert_within(
            &format!("wait after failure {n}"),
            after(w[1].1, w[0].1),
            cap / 2,
            cap,
        );
    }
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn timeouts_back_off_like_any_failure() {
    let h = Host::new(DEFAULTS, |_, _| Reply::Timeout);
    let d = h.start(4);
    pass(secs(200)).await;
    let reqs = h.portal().licence_requests();
    assert!(reqs.len() >= 3, "{reqs:?}");
    for (n, w) in reqs.windows(2).take(3).enumerate() {
        let cap = secs(30u64 << n);
        assert_within(
            &format!("wait after timeout {n}"),
            after(w[1].1, w[0].1),
            cap / 2,
            cap,
        );
    }
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn grace_paces_retries_at_the_validate_interval_until_the_last_day() {
    // No update checks in the window: they share the failure count.
    let s = Sched {
        update_check_interval: "30d",
        offline_grace: "3d",
        ..DEFAULTS
    };
    // Valid in the first hour, then the portal is down for good.
    let h = Host::new(s, |_, t| {
        if t < T0.add(hours(1)) {
            Reply::Valid
        } else {
            Reply::Status(503, vec![], "{}")
        }
    });
    let d = h.start(5);
    pass(hours(60)).await;
    let reqs = h.portal().licence_requests();
    let grace_until = T0.add(hours(72));
    let last_day = grace_until.sub(hours(24));
    assert_eq!(reqs[0], (Endpoint::Activate, T0));
    assert_within(
        "first validate",
        after(reqs[1].1, T0),
        hours(6),
        hours(6) + secs(900),
    );
    // Two quick retries (n = 0, 1) with the back-off ...
    assert_within("retry n=0", after(reqs[2].1, reqs[1].1), secs(15), secs(30));
    assert_within("retry n=1", after(reqs[3].1, reqs[2].1), secs(30), secs(60));
    // ... then the validate interval with splay, never past the last day ...
    let mut i = 3;
    while reqs[i + 1].1 < last_day {
        assert_within(
            &format!("paced retry {i}"),
            after(reqs[i + 1].1, reqs[i].1),
            hours(6),
            hours(6) + secs(900),
        );
        i += 1;
    }
    assert_eq!(
        reqs[i + 1].1,
        last_day,
        "the last paced try is at the last day's start"
    );
    let paced = i + 1;
    // ... then the back-off again, capped at retry_max.
    for w in reqs[paced..].windows(2) {
        assert_within(
            "back-off in the last day",
            after(w[1].1, w[0].1),
            secs(1800),
            hours(1),
        );
    }
    // Within grace (6 h → 48 h): a handful of tries, not one an hour.
    let in_grace = reqs
        .iter()
        .filter(|(_, t)| *t > T0 && *t < last_day)
        .count();
    assert!(
        in_grace <= 3 + 7,
        "{in_grace} tries in 42 h of grace: {reqs:?}"
    );
    assert!(reqs.len() - paced >= 11, "{reqs:?}");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_makes_no_request_before_the_saved_time() {
    let h = Host::new(DEFAULTS, |_, _| Reply::Valid);
    let first = h.start(6);
    pass(hours(1)).await;
    let doc_before = h.status_json().await;
    first.stop().await;
    let before = h.portal().log().len();
    assert_eq!(before, 2, "activate and the first update check");
    let next = saved_next_validate(&h.state_dir(), h.now());
    assert_within(
        "saved next validate",
        after(next, T0),
        hours(6),
        hours(6) + secs(900),
    );
    // The state round-trips: state.json is 0600 in a 0700 state_dir, parses
    // with the daemon's parser, and holds no full key.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&h.state_dir()), 0o700, "state_dir is created 0700");
    let state_file = h.state_dir().join("state.json");
    assert_eq!(mode(&state_file), 0o600, "state.json is 0600");
    let core = h.saved_core();
    assert!(matches!(
        core.licence.verdict,
        Some(wispanel_core::machine::Verdict::Valid { .. })
    ));
    assert_eq!(
        core.licence
            .activated
            .as_ref()
            .map(|b| b.hardware_id.as_str()),
        Some(HWID)
    );
    let text = std::fs::read_to_string(&state_file).expect("state.json");
    assert!(!text.contains(KEY), "the full key is in state.json");

    // A restart (a crash loop would restart many times) sends nothing ...
    let second = h.start(7);
    let s = h.status_json().await;
    assert_eq!(s["license"]["state"], "active", "{s:#}");
    assert_eq!(
        s["portal"]["next_validate_at"],
        doc_before["portal"]["next_validate_at"]
    );
    assert_eq!(
        s["license"]["checked_at"],
        doc_before["license"]["checked_at"]
    );
    pass(after(next, h.now()) - secs(1)).await;
    let log = h.portal().log();
    assert_eq!(
        log.len(),
        before,
        "no request before the saved time: {log:?}"
    );
    // ... until the saved time comes.
    pass(secs(2)).await;
    let reqs = h.portal().licence_requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].0, Endpoint::Validate);
    assert_within(
        "validate after the restart",
        after(reqs[1].1, next),
        secs(0),
        secs(1),
    );
    second.stop().await;
}

fn codes(doc: &wispanel_license::api::StatusDocument) -> Vec<&'static str> {
    doc.warnings.iter().map(|w| w.code.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn grace_ending_appears_at_its_instant_without_a_request() {
    let s = Sched {
        update_check_interval: "30d",
        offline_grace: "3d",
        ..DEFAULTS
    };
    let h = Host::new(s, |_, t| {
        if t < T0.add(hours(1)) {
            Reply::Valid
        } else {
            Reply::Status(503, vec![], "{}")
        }
    });
    let d = h.start(8);
    let last_day = T0.add(hours(48));
    pass(after(last_day, h.now())).await;
    let doc = h.status().await;
    assert_eq!(doc.license.state, wispanel_core::LicenseState::Grace);
    assert!(codes(&doc).is_empty(), "24 h left is not less: {doc:?}");
    let requests = h.portal().licence_requests().len();
    pass(Duration::from_millis(2)).await;
    let doc = h.status().await;
    assert_eq!(codes(&doc), vec!["grace_ending"]);
    assert_eq!(doc.warnings[0].at, doc.license.grace_until);
    assert_eq!(
        h.portal().licence_requests().len(),
        requests,
        "the timer, not a request, made it appear"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_metrics_textfile_is_the_metrics_and_is_rewritten_every_minute() {
    let mut h = Host::new(DEFAULTS, |_, _| Reply::Valid);
    let file = h.path().join("textfile").join("wispanel_license.prom");
    std::fs::create_dir(file.parent().expect("a directory")).expect("the textfile directory");
    h.add_config(&format!("metrics_textfile = \"{}\"", file.display()));
    let d = h.start(9);
    pass(secs(1)).await;
    let metrics = h
        .request("GET", "/metrics", None)
        .await
        .map(|a| String::from_utf8_lossy(&a.body).into_owned())
        .expect("the metrics");
    // The same text, except the open connections: the request for
    // /metrics is one of them, and the file was written before it came.
    let without_open = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("wispanel_license_socket_connections "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        std::fs::read_to_string(&file)
            .ok()
            .map(|t| without_open(&t)),
        Some(without_open(&metrics))
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("the file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    // Nothing changes, yet the file is written again within the minute.
    std::fs::remove_file(&file).expect("remove the file");
    // The rewrite is due at 60 s; its write runs on a blocking thread, and
    // paused time does not move on while one runs: at 61 s it is done.
    pass(secs(61)).await;
    assert!(file.exists(), "not rewritten within a minute");
    d.stop().await;
    let names: Vec<_> = std::fs::read_dir(file.parent().expect("a directory"))
        .expect("the directory")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("wispanel_license.prom")]
    );
}

/// A 429 with `Retry-After: 2` on a manual check closes the gate to every
/// endpoint for 2 s: manual checks get 429 locally with `Retry-After`, the
/// portal sees nothing, then the gate opens (`rate_limited_until` back to
/// null) and the daemon validates again, never before the gate's end.
/// (Was a process test with wall-clock waits, tests/daemon.rs.)
#[tokio::test(start_paused = true)]
async fn retry_after_on_a_manual_check_closes_the_gate_to_every_endpoint() {
    let h = Host::new(DEFAULTS, |_, _| Reply::Valid);
    let d = h.start(11);
    pass(secs(1)).await;
    assert_ne!(
        h.status_json().await["update"]["state"],
        "unknown",
        "the first update check came first"
    );
    let t429 = h.now();
    h.portal().set_script(move |e, t| {
        if e == Endpoint::Validate && t == t429 {
            Reply::Status(
                429,
                vec![("Retry-After", "2".into())],
                r#"{"success": false, "code": "RATE_LIMITED"}"#,
            )
        } else {
            Reply::Valid
        }
    });
    let r = h
        .request("POST", "/v1/check", None)
        .await
        .expect("an answer");
    assert_eq!(r.status, 200, "{r:?}");
    let s: serde_json::Value = r.json().expect("JSON");
    assert_eq!(
        h.portal().log().last().copied(),
        Some((Endpoint::Validate, t429)),
        "the check reached the portal"
    );
    assert_eq!(s["portal"]["last_error"]["kind"], "rate_limited", "{s:#}");
    assert_eq!(s["license"]["state"], "grace");
    let until = ts(&s["portal"]["rate_limited_until"]).expect("rate_limited_until set");
    // The status shows whole seconds.
    assert_within("gate closed", after(until, t429), secs(1), secs(2));

    // While closed (paused time: it stays closed): local 429s, no request.
    let n = h.portal().log().len();
    for path in ["/v1/check", "/v1/update/check"] {
        let r = h.request("POST", path, None).await.expect("an answer");
        assert_envelope(&r, 429, "RATE_LIMITED");
        let wait: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After header");
        assert!((1..=3).contains(&wait), "Retry-After {wait}");
    }
    assert_eq!(h.portal().log().len(), n, "a closed gate sent a request");

    pass(secs(2)).await;
    let s = h.status_json().await;
    assert!(s["portal"]["rate_limited_until"].is_null(), "{s:#}");
    // The retry after the failure comes once the gate opens (back-off 15-30 s).
    pass(secs(60)).await;
    let s = h.status_json().await;
    assert_eq!(s["license"]["state"], "active", "{s:#}");
    let later: Vec<_> = h
        .portal()
        .log()
        .into_iter()
        .filter(|(_, t)| *t > t429)
        .collect();
    assert!(!later.is_empty());
    for (e, t) in &later {
        assert!(
            after(*t, t429) >= secs(2),
            "{e} request {:?} after the 429 with Retry-After: 2",
            after(*t, t429)
        );
    }
    d.stop().await;
}
