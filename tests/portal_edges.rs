//! The daemon against the portal simulator at the real portal's sharp
//! edges (issue #14): an activation whose answer is lost (the
//! `Idempotency-Key`, the one `validate` before a refusal is final, a kill -9
//! in between, a key conflict), and a portal whose clock is a day off.
//! In-process on the harness under paused time (the real client), but for
//! the kill -9, which needs the binary (the restart after it is in-process,
//! `common::Served`).

mod common;

use common::{Conf, Env, Sim, WAIT, keys, poll_until};
use serde_json::Value;
use wispanel_core::Endpoint;
use wispanel_core::timestamp::Timestamp;
use wispanel_license::testing::{self as t, FAST, Harness, Running, Sched};
use wispanel_portal_sim::{
    LicenseTerms, Outage, RecordedRequest, Route, ScriptedAnswer, SimHandle, SimOptions,
};

const HWID: &str = t::HWID;

/// The simulator (HTTPS) set up by `setup`, and the daemon in-process on it
/// (paused time, the real client) with `key`.
struct On {
    sim: SimHandle,
    h: Harness,
    d: Running,
    _ca: tempfile::TempDir,
}

async fn start_on(key: &str, sched: Sched, setup: impl FnOnce(&SimHandle)) -> On {
    let ca = tempfile::tempdir().expect("a temporary directory");
    let sim = wispanel_portal_sim::start(SimOptions::https(ca.path().join("ca.pem")))
        .await
        .expect("the simulator");
    setup(&sim);
    let mut h = Harness::real_portal(sched, wispanel_license::clock::now(), &sim.base_url);
    if let Some(pem) = &sim.ca_pem_path {
        h.add_config(&format!("ca_file = \"{}\"", pem.display()));
    }
    h.set_key(Some(key));
    let d = h.start(1);
    On { sim, h, d, _ca: ca }
}

impl On {
    async fn stop(self) {
        self.d.stop().await;
        self.sim.shutdown().await;
    }
}

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(Timestamp::parse_rfc3339)
}

/// The licence requests the sim saw: (endpoint, status, Idempotency-Key).
fn licence_requests(sim: &SimHandle) -> Vec<(Endpoint, Option<u16>, Option<String>)> {
    sim.requests()
        .into_iter()
        .filter_map(|r: RecordedRequest| match r.endpoint {
            Route::Portal(e @ (Endpoint::Activate | Endpoint::Validate)) => {
                Some((e, r.status, r.idempotency_key))
            }
            _ => None,
        })
        .collect()
}

fn activate_keys(sim: &SimHandle) -> Vec<Option<String>> {
    licence_requests(sim)
        .into_iter()
        .filter(|(e, _, _)| *e == Endpoint::Activate)
        .map(|(_, _, k)| k)
        .collect()
}

fn is_uuid_v4(k: &str) -> bool {
    let parts: Vec<usize> = k.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && k.as_bytes()[14] == b'4'
}

/// A lost `activate` (the portal took the seat, the answer never came), then
/// a portal that ignores the header and counts every activate refuses the
/// retry with `MAX_ACTIVATIONS`: the one validate finds the seat, `active`.
#[tokio::test(start_paused = true)]
async fn lost_activation_then_max_activations_is_active() {
    let on = start_on(keys::GOOD, FAST, |sim| {
        sim.set_seat_limit(keys::GOOD, 1);
        sim.set_ignore_idempotency_key(true);
        sim.set_activate_counts_every_request(true);
        sim.push_answers(Endpoint::Activate, vec![ScriptedAnswer::lost()]);
    })
    .await;
    let (sim, h) = (&on.sim, &on.h);
    let s = h.wait_state("active").await;
    assert_eq!(s["portal"]["activation_in_doubt"], false, "settled");
    let seen = licence_requests(sim);
    let shape: Vec<_> = seen.iter().map(|(e, st, _)| (*e, *st)).collect();
    assert_eq!(
        shape,
        vec![
            (Endpoint::Activate, None),
            (Endpoint::Activate, Some(409)),
            (Endpoint::Validate, Some(200)),
        ],
        "{s:#}"
    );
    let keys_sent = activate_keys(sim);
    assert!(
        keys_sent[0].as_deref().is_some_and(is_uuid_v4),
        "{keys_sent:?}"
    );
    assert_eq!(keys_sent[0], keys_sent[1], "the retry sends the same key");
    assert_eq!(sim.seats_of(keys::GOOD, HWID), 1);
    assert_eq!(sim.seats(keys::GOOD), 1);
    let core = h
        .wait_saved("the key forgotten after the verdict", t::secs(60), |c| {
            c.pending_activation().is_none()
        })
        .await;
    assert!(!core.activation_in_doubt());
    on.stop().await;
}

/// The same lost answer on a portal that honours the header: the retry is a
/// replay of the first answer, no second seat, no validate needed.
#[tokio::test(start_paused = true)]
async fn lost_activation_replayed_by_a_portal_that_honours_the_key() {
    let on = start_on(keys::GOOD, FAST, |sim| {
        sim.set_seat_limit(keys::GOOD, 3);
        sim.set_activate_counts_every_request(true);
        sim.push_answers(
            Endpoint::Activate,
            vec![ScriptedAnswer::committed_then_status(503)],
        );
    })
    .await;
    let (sim, h) = (&on.sim, &on.h);
    h.wait_state("active").await;
    let shape: Vec<_> = licence_requests(sim)
        .into_iter()
        .map(|(e, st, _)| (e, st))
        .collect();
    assert_eq!(
        shape,
        vec![
            (Endpoint::Activate, Some(503)),
            (Endpoint::Activate, Some(200))
        ]
    );
    let keys_sent = activate_keys(sim);
    assert_eq!(keys_sent[0], keys_sent[1]);
    assert_eq!(
        sim.seats_of(keys::GOOD, HWID),
        1,
        "one seat, though two activates"
    );
    on.stop().await;
}

/// A lost `activate` that took no seat, a `MAX_ACTIVATIONS` to the retry,
/// and `HARDWARE_MISMATCH` to the one validate: that refusal is the verdict.
#[tokio::test(start_paused = true)]
async fn lost_activation_then_hardware_mismatch_on_the_validate_is_refused() {
    let on = start_on(keys::MAX_ACTIVATIONS, FAST, |sim| {
        sim.push_answers(Endpoint::Activate, vec![ScriptedAnswer::drop_connection()]);
    })
    .await;
    let (sim, h) = (&on.sim, &on.h);
    let s = h.wait_state("hardware_mismatch").await;
    assert_eq!(s["license"]["reason"]["code"], "HARDWARE_MISMATCH");
    let shape: Vec<_> = licence_requests(sim)
        .into_iter()
        .map(|(e, st, _)| (e, st))
        .collect();
    assert_eq!(
        shape,
        vec![
            (Endpoint::Activate, None),
            (Endpoint::Activate, Some(409)),
            (Endpoint::Validate, Some(403)),
        ]
    );
    assert_eq!(sim.seats(keys::MAX_ACTIVATIONS), 0);
    h.wait_saved("the key forgotten after the verdict", t::secs(60), |c| {
        c.pending_activation().is_none()
    })
    .await;
    on.stop().await;
}

/// No activation in doubt: `MAX_ACTIVATIONS` is final at once, no validate.
#[tokio::test(start_paused = true)]
async fn no_doubt_refused_at_once() {
    let on = start_on(keys::MAX_ACTIVATIONS, FAST, |_| {}).await;
    let (sim, h) = (&on.sim, &on.h);
    let s = h.wait_state("max_activations").await;
    assert_eq!(s["license"]["reason"]["code"], "MAX_ACTIVATIONS");
    let seen = licence_requests(sim);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, Endpoint::Activate);
    assert!(seen[0].2.as_deref().is_some_and(is_uuid_v4));
    let core = h
        .wait_saved("the refusal saved", t::secs(60), |c| {
            c.licence.verdict.is_some()
        })
        .await;
    assert_eq!(core.pending_activation(), None);
    assert!(!core.activation_in_doubt());
    on.stop().await;
}

/// The daemon is killed (kill -9) while its `activate` is out (the portal
/// took the seat, the answer stalls); the restarted daemon sends the same
/// key, read back from `state.json`, and the portal replays the first answer.
#[test]
fn same_idempotency_key_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    sim.set_seat_limit(keys::GOOD, 1);
    sim.set_activate_counts_every_request(true);
    sim.push_answers(
        Endpoint::Activate,
        vec![ScriptedAnswer::committed_then_stall()],
    );
    let mut conf = Conf::for_sim(&sim, Some(keys::GOOD));
    // Long enough that the daemon does not give up on the stalled request
    // before it is killed.
    conf.request_timeout = "10m".into();
    let env = Env::in_dir(dir, conf);
    // A process, for its kill -9.
    let mut d = env.start();
    let first = poll_until(WAIT, "the first activate", || {
        activate_keys(&sim).first().cloned().flatten()
    });
    assert!(is_uuid_v4(&first), "{first}");
    // It was saved before it left.
    let saved = env.saved_core();
    let pending = saved.pending_activation().expect("saved before sending");
    assert_eq!(pending.idempotency_key.as_deref(), Some(first.as_str()));
    d.kill();
    assert_eq!(sim.seats(keys::GOOD), 1, "the killed request took the seat");

    // The restart needs no process: in-process, on the same directory.
    let _d = env.serve();
    env.wait_state("active");
    let keys_sent = activate_keys(&sim);
    assert_eq!(keys_sent, vec![Some(first.clone()), Some(first)]);
    assert_eq!(sim.seats_of(keys::GOOD, HWID), 1);
}

/// `IDEMPOTENCY_KEY_CONFLICT`: a non-verdict; one validate (no seat here),
/// then the retry with a new key.
#[tokio::test(start_paused = true)]
async fn idempotency_key_conflict_takes_a_new_key() {
    let on = start_on(keys::GOOD, FAST, |sim| {
        sim.push_answers(
            Endpoint::Activate,
            vec![ScriptedAnswer::json(
                409,
                serde_json::json!({"valid": false, "code": "IDEMPOTENCY_KEY_CONFLICT",
                                   "error": "The idempotency key was used with a different request"}),
            )],
        );
    })
    .await;
    let (sim, h) = (&on.sim, &on.h);
    h.wait_state("active").await;
    let seen = licence_requests(sim);
    let shape: Vec<_> = seen.iter().map(|(e, st, _)| (*e, *st)).collect();
    assert_eq!(
        shape,
        vec![
            (Endpoint::Activate, Some(409)),
            (Endpoint::Validate, Some(403)),
            (Endpoint::Activate, Some(200)),
        ]
    );
    let keys_sent = activate_keys(sim);
    assert!(
        keys_sent
            .iter()
            .all(|k| k.as_deref().is_some_and(is_uuid_v4))
    );
    assert_ne!(keys_sent[0], keys_sent[1], "a new key after the conflict");
    assert_eq!(sim.seats(keys::GOOD), 1);
    on.stop().await;
}

/// The portal's clock a day behind ours (`-1d`: the host runs a day ahead)
/// or a day ahead (`+1d`): the licence is `active` (not lapsed at once) and
/// lapses at the portal's `valid_until`, not a day later; `grace_until` is
/// shown as the portal sent it. (Paused time: the lapse is awaited exactly.)
#[tokio::test(start_paused = true)]
async fn host_clock_a_day_off_neither_lapses_early_nor_trusts_too_long() {
    for (offset, skew) in [("-1d", 86_400i64), ("+1d", -86_400)] {
        let on = start_on(keys::GOOD, FAST, |sim| {
            sim.set_clock_offset(-skew);
            sim.set_terms(LicenseTerms {
                valid_for_secs: 8,
                ..LicenseTerms::default()
            });
        })
        .await;
        let h = &on.h;
        let active = h.wait_state("active").await;
        let p = &active["portal"];
        let seen = p["clock_skew_seconds"].as_i64().expect("a skew");
        assert!((seen - skew).abs() <= 2, "{offset}: skew {seen}");
        let shown = ts(&active["license"]["grace_until"]).expect("grace_until");
        assert_eq!(
            active["license"]["grace_until"], active["license"]["valid_until"],
            "{offset}: shown as sent"
        );
        // The deadline as sent is a day off our clock; the lapse comes
        // 8 s after the answer in our clock. (In our clock as the daemon
        // measured the skew: under paused time the daemon's clock may lag
        // the simulator's real one by the real time the test took.)
        let lapse_local = Timestamp(shown.0 + seen * 1000);
        let lapsed = h.wait_state("lapsed").await;
        let now = h.now();
        assert!(
            now.0 + 1000 >= lapse_local.0,
            "{offset}: lapsed before the portal's valid_until"
        );
        // ... and not a day later: within the seconds after it.
        assert!(
            now.0 <= lapse_local.0 + 3000,
            "{offset}: lapsed {} ms after the portal's valid_until",
            now.0 - lapse_local.0
        );
        assert_eq!(
            lapsed["license"]["grace_until"],
            active["license"]["grace_until"]
        );
        on.stop().await;
    }
}

/// A 429 whose `Retry-After` is an HTTP date (or whose `X-RateLimit-Reset`
/// names the time) from a portal whose clock is a day off: the gate lasts
/// as long as the portal asked, measured against the answer's own `Date`.
#[tokio::test(start_paused = true)]
async fn retry_after_date_with_a_skewed_date() {
    for (offset, retry_after, wait) in [
        (86_400i64, Some("{date+5}"), 5i64),
        (-86_400, Some("{date+5}"), 5),
        (86_400, None, 60),
        (-86_400, None, 60),
    ] {
        let on = start_on(keys::GOOD, FAST, |sim| {
            sim.set_clock_offset(offset);
            sim.set_outage(Some(Outage::RateLimit {
                retry_after: retry_after.map(str::to_string),
            }));
        })
        .await;
        let h = &on.h;
        let s = h
            .wait_status("the gate closed", t::secs(60), |s| {
                !s["portal"]["rate_limited_until"].is_null()
            })
            .await;
        let until = ts(&s["portal"]["rate_limited_until"]).expect("a time");
        let asked = h.exchanges()[0].1;
        let got = (until.0 - asked.0) / 1000;
        // Whole seconds on both sides, and the answer left the sim a moment
        // after it recorded the request.
        assert!(
            (wait - 2..=wait + 2).contains(&got),
            "offset {offset}, Retry-After {retry_after:?}: gate {got} s, asked {wait} s"
        );
        on.sim.set_outage(None);
        on.stop().await;
    }
}

/// The saved key of an activation in doubt survives a restart; the status
/// says the activation is in doubt while it is.
#[tokio::test(start_paused = true)]
async fn activation_in_doubt_is_saved_and_shown() {
    let sched = Sched {
        retry_initial: "1m",
        retry_max: "1m",
        ..FAST
    };
    let on = start_on(keys::GOOD, sched, |sim| {
        sim.set_outage(Some(Outage::Status(503)));
    })
    .await;
    let h = &on.h;
    let s = h
        .wait_status("a failed activate", t::secs(60), |s| {
            s["portal"]["consecutive_failures"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(s["license"]["state"], "unknown");
    h.wait_saved("the activation in doubt saved", t::secs(60), |c| {
        c.activation_in_doubt()
    })
    .await;
    assert_eq!(s["portal"]["activation_in_doubt"], true, "{s:#}");
    on.stop().await;
}
