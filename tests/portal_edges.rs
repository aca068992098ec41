//! The daemon binary against the portal simulator at the real portal's sharp
//! edges (issue #14): an activation whose answer is lost (the
//! `Idempotency-Key`, the one `validate` before a refusal is final, a kill -9
//! in between, a key conflict), and a portal whose clock is a day off.

mod common;

use common::*;
use serde_json::Value;
use wispanel_core::Endpoint;
use wispanel_core::timestamp::Timestamp;
use wispanel_portal_sim::{LicenseTerms, Outage, RecordedRequest, Route, ScriptedAnswer};

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(Timestamp::parse_rfc3339)
}

/// The licence requests the sim saw: (endpoint, status, Idempotency-Key).
fn licence_requests(sim: &Sim) -> Vec<(Endpoint, Option<u16>, Option<String>)> {
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

fn activate_keys(sim: &Sim) -> Vec<Option<String>> {
    licence_requests(sim)
        .into_iter()
        .filter(|(e, _, _)| *e == Endpoint::Activate)
        .map(|(_, _, k)| k)
        .collect()
}

/// The saved state once `pred` holds (the state writer saves a moment after
/// the status changes).
fn wait_saved(
    env: &Env,
    what: &str,
    pred: impl Fn(&wispanel_core::machine::Core) -> bool,
) -> wispanel_core::machine::Core {
    poll_until(WAIT, what, || {
        let core = env.saved_core();
        pred(&core).then_some(core)
    })
}

fn is_uuid_v4(k: &str) -> bool {
    let parts: Vec<usize> = k.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && k.as_bytes()[14] == b'4'
}

/// A lost `activate` (the portal took the seat, the answer never came), then
/// a portal that ignores the header and counts every activate refuses the
/// retry with `MAX_ACTIVATIONS`: the one validate finds the seat, `active`.
#[test]
fn lost_activation_then_max_activations_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    sim.set_seat_limit(keys::GOOD, 1);
    sim.set_ignore_idempotency_key(true);
    sim.set_activate_counts_every_request(true);
    sim.push_answers(Endpoint::Activate, vec![ScriptedAnswer::lost()]);
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.start();
    let s = env.wait_state("active");
    assert_eq!(s["portal"]["activation_in_doubt"], false, "settled");
    let seen = licence_requests(&sim);
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
    let keys_sent = activate_keys(&sim);
    assert!(
        keys_sent[0].as_deref().is_some_and(is_uuid_v4),
        "{keys_sent:?}"
    );
    assert_eq!(keys_sent[0], keys_sent[1], "the retry sends the same key");
    assert_eq!(sim.seats_of(keys::GOOD, HWID), 1);
    assert_eq!(sim.seats(keys::GOOD), 1);
    let core = wait_saved(&env, "the key forgotten after the verdict", |c| {
        c.pending_activation().is_none()
    });
    assert!(!core.activation_in_doubt());
}

/// The same lost answer on a portal that honours the header: the retry is a
/// replay of the first answer, no second seat, no validate needed.
#[test]
fn lost_activation_replayed_by_a_portal_that_honours_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    sim.set_seat_limit(keys::GOOD, 3);
    sim.set_activate_counts_every_request(true);
    sim.push_answers(
        Endpoint::Activate,
        vec![ScriptedAnswer::committed_then_status(503)],
    );
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.start();
    env.wait_state("active");
    let shape: Vec<_> = licence_requests(&sim)
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
    let keys_sent = activate_keys(&sim);
    assert_eq!(keys_sent[0], keys_sent[1]);
    assert_eq!(
        sim.seats_of(keys::GOOD, HWID),
        1,
        "one seat, though two activates"
    );
}

/// A lost `activate` that took no seat, a `MAX_ACTIVATIONS` to the retry,
/// and `HARDWARE_MISMATCH` to the one validate: that refusal is the verdict.
#[test]
fn lost_activation_then_hardware_mismatch_on_the_validate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    sim.push_answers(Endpoint::Activate, vec![ScriptedAnswer::drop_connection()]);
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::MAX_ACTIVATIONS)));
    let _d = env.start();
    let s = env.wait_state("hardware_mismatch");
    assert_eq!(s["license"]["reason"]["code"], "HARDWARE_MISMATCH");
    let shape: Vec<_> = licence_requests(&sim)
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
    wait_saved(&env, "the key forgotten after the verdict", |c| {
        c.pending_activation().is_none()
    });
}

/// No activation in doubt: `MAX_ACTIVATIONS` is final at once, no validate.
#[test]
fn no_doubt_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::MAX_ACTIVATIONS)));
    let _d = env.start();
    let s = env.wait_state("max_activations");
    assert_eq!(s["license"]["reason"]["code"], "MAX_ACTIVATIONS");
    let seen = licence_requests(&sim);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, Endpoint::Activate);
    assert!(seen[0].2.as_deref().is_some_and(is_uuid_v4));
    let core = wait_saved(&env, "the refusal saved", |c| c.licence.verdict.is_some());
    assert_eq!(core.pending_activation(), None);
    assert!(!core.activation_in_doubt());
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

    let _d = env.start();
    env.wait_state("active");
    let keys_sent = activate_keys(&sim);
    assert_eq!(keys_sent, vec![Some(first.clone()), Some(first)]);
    assert_eq!(sim.seats_of(keys::GOOD, HWID), 1);
}

/// `IDEMPOTENCY_KEY_CONFLICT`: a non-verdict; one validate (no seat here),
/// then the retry with a new key.
#[test]
fn idempotency_key_conflict_takes_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    sim.push_answers(
        Endpoint::Activate,
        vec![ScriptedAnswer::json(
            409,
            serde_json::json!({"valid": false, "code": "IDEMPOTENCY_KEY_CONFLICT",
                               "error": "The idempotency key was used with a different request"}),
        )],
    );
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.start();
    env.wait_state("active");
    let seen = licence_requests(&sim);
    let shape: Vec<_> = seen.iter().map(|(e, st, _)| (*e, *st)).collect();
    assert_eq!(
        shape,
        vec![
            (Endpoint::Activate, Some(409)),
            (Endpoint::Validate, Some(403)),
            (Endpoint::Activate, Some(200)),
        ]
    );
    let keys_sent = activate_keys(&sim);
    assert!(
        keys_sent
            .iter()
            .all(|k| k.as_deref().is_some_and(is_uuid_v4))
    );
    assert_ne!(keys_sent[0], keys_sent[1], "a new key after the conflict");
    assert_eq!(sim.seats(keys::GOOD), 1);
}

/// The portal's clock a day behind ours (`-1d`: the host runs a day ahead)
/// or a day ahead (`+1d`): the licence is `active` (not lapsed at once) and
/// lapses at the portal's `valid_until`, not a day later; `grace_until` is
/// shown as the portal sent it.
#[test]
fn host_clock_a_day_off_neither_lapses_early_nor_trusts_too_long() {
    for (offset, skew) in [("-1d", 86_400i64), ("+1d", -86_400)] {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::https(dir.path());
        sim.set_clock_offset(-skew);
        sim.set_terms(LicenseTerms {
            valid_for_secs: 8,
            ..LicenseTerms::default()
        });
        let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
        let _d = env.start();
        let active = env.wait_state("active");
        let p = &active["portal"];
        let seen = p["clock_skew_seconds"].as_i64().expect("a skew");
        assert!((seen - skew).abs() <= 2, "{offset}: skew {seen}");
        let shown = ts(&active["license"]["grace_until"]).expect("grace_until");
        assert_eq!(
            active["license"]["grace_until"], active["license"]["valid_until"],
            "{offset}: shown as sent"
        );
        // The deadline as sent is a day off our clock; the lapse comes
        // 8 s after the answer in our clock.
        let lapse_local = Timestamp(shown.0 + skew * 1000);
        let lapsed = env.wait_state("lapsed");
        let now = wispanel_license::clock::now();
        assert!(
            now.0 + 1000 >= lapse_local.0,
            "{offset}: lapsed before the portal's valid_until"
        );
        assert_eq!(
            lapsed["license"]["grace_until"],
            active["license"]["grace_until"]
        );
    }
}

/// A 429 whose `Retry-After` is an HTTP date (or whose `X-RateLimit-Reset`
/// names the time) from a portal whose clock is a day off: the gate lasts
/// as long as the portal asked, measured against the answer's own `Date`.
#[test]
fn retry_after_date_with_a_skewed_date() {
    for (offset, retry_after, wait) in [
        (86_400i64, Some("{date+5}"), 5i64),
        (-86_400, Some("{date+5}"), 5),
        (86_400, None, 60),
        (-86_400, None, 60),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::https(dir.path());
        sim.set_clock_offset(offset);
        sim.set_outage(Some(Outage::RateLimit {
            retry_after: retry_after.map(str::to_string),
        }));
        let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
        let _d = env.start();
        let s = env.wait_status("the gate closed", |s| {
            !s["portal"]["rate_limited_until"].is_null()
        });
        let until = ts(&s["portal"]["rate_limited_until"]).expect("a time");
        let asked = sim.requests()[0].time;
        let got = (until.0 - asked.0) / 1000;
        // Whole seconds on both sides, and the answer left the sim a moment
        // after it recorded the request.
        assert!(
            (wait - 2..=wait + 2).contains(&got),
            "offset {offset}, Retry-After {retry_after:?}: gate {got} s, asked {wait} s"
        );
        sim.set_outage(None);
    }
}

/// The saved key of an activation in doubt survives a restart; the status
/// says the activation is in doubt while it is.
#[test]
fn activation_in_doubt_is_saved_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    sim.set_outage(Some(Outage::Status(503)));
    let mut conf = Conf::for_sim(&sim, Some(keys::GOOD));
    conf.retry_initial = "1m".into();
    conf.retry_max = "1m".into();
    let env = Env::in_dir(dir, conf);
    let _d = env.start();
    let s = env.wait_status("a failed activate", |s| {
        s["portal"]["consecutive_failures"].as_u64() >= Some(1)
    });
    assert_eq!(s["license"]["state"], "unknown");
    wait_saved(&env, "the activation in doubt saved", |c| {
        c.activation_in_doubt()
    });
    assert_eq!(s["portal"]["activation_in_doubt"], true, "{s:#}");
}
