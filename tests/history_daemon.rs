//! The history as the daemon writes it (SPEC "History"), in-process under
//! paused time on the harness (`wispanel_license::testing`): every kind of
//! entry with its fields, written before the change is announced, served by
//! `GET /v1/history`, torn lines, and a history that cannot be written never
//! stops licensing.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{Endpoint, LicenseState};
use wispanel_license::history::{self, Entry, Event, ReloadOutcome};
use wispanel_license::socket::client::Answer;
use wispanel_license::testing::*;

/// The harness under the name these tests grew up with.
type Host = Harness;

const NEW_HWID: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// What the portal answers a licence request: 0 valid, 1 `EXPIRED`; a
/// deactivation: 0 deactivated, else 503.
fn switchable() -> (
    Arc<AtomicU8>,
    impl Fn(Endpoint, Timestamp) -> Reply + Send + Sync,
) {
    let mode = Arc::new(AtomicU8::new(0));
    let m = mode.clone();
    let script = move |e: Endpoint, _| match (e, m.load(Ordering::SeqCst)) {
        (Endpoint::Validate | Endpoint::Activate, 1) => Reply::Status(
            403,
            vec![],
            r#"{"valid": false, "code": "EXPIRED", "error": "the licence has expired"}"#,
        ),
        (Endpoint::Deactivate, 0) => Reply::Status(200, vec![], r#"{"deactivated": true}"#),
        (Endpoint::Deactivate, _) => Reply::Status(503, vec![], "{}"),
        _ => Reply::Valid,
    };
    (mode, script)
}

/// One request through the socket, like any client.
async fn ask(h: &Host, method: &'static str, path: &str, body: Option<String>) -> Answer {
    h.request(method, path, body.as_deref())
        .await
        .expect("an answer")
}

async fn entries(h: &Host, query: &str) -> Vec<Entry> {
    let a = ask(h, "GET", &format!("/v1/history{query}"), None).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let v: serde_json::Value = a.json().expect("JSON");
    serde_json::from_value(v["entries"].clone()).expect("entries")
}

fn kinds(es: &[Entry]) -> Vec<&'static str> {
    es.iter().map(|e| e.event.kind()).collect()
}

fn file(h: &Host) -> history::FileContents {
    history::read_file(&h.state_dir().join(history::FILE_NAME)).expect("the history file")
}

/// The entries after the first `n`.
fn after_n(es: Vec<Entry>, n: usize) -> Vec<Entry> {
    es.into_iter().skip(n).collect()
}

#[tokio::test(start_paused = true)]
async fn every_kind_of_entry_is_written_with_its_fields() {
    let (mode, script) = switchable();
    let h = Host::new(DEFAULTS, script);
    let d = h.start(21);
    pass(secs(1)).await;

    // Start: the daemon, its own activation of the configured key, the states.
    let es = entries(&h, "").await;
    assert_eq!(
        kinds(&es),
        [
            "daemon_started",
            "activate",
            "license_state",
            "update_state"
        ],
        "{es:?}"
    );
    assert_eq!(
        es[0].event,
        Event::DaemonStarted {
            version: env!("CARGO_PKG_VERSION").into()
        }
    );
    let Event::Activate(a) = &es[1].event else {
        panic!("{es:?}")
    };
    assert_eq!(
        (a.uid, a.key.as_str(), a.outcome.as_str()),
        (None, "WISP-****SA6T", "ok")
    );
    assert_eq!(
        es[2].event,
        Event::LicenseState {
            from: LicenseState::Unknown,
            to: LicenseState::Active,
            reason: None,
            error: None
        }
    );
    assert_eq!(es[0].at, T0);
    let mut seen = es.len();

    // The hardware changes: one entry, from the verdict's id to the new
    // one; the daemon activates on the new hardware at once.
    std::fs::write(h.hwid_file(), format!("{NEW_HWID}\n")).expect("hwid");
    assert_eq!(ask(&h, "POST", "/v1/check", None).await.status, 200);
    let es = after_n(entries(&h, "").await, seen);
    assert_eq!(kinds(&es), ["hardware_changed", "activate"], "{es:?}");
    assert_eq!(
        es[0].event,
        Event::HardwareChanged {
            from: HWID.into(),
            to: NEW_HWID.into()
        }
    );
    seen += es.len();

    // A refusal: the state changes, with the portal's reason.
    mode.store(1, Ordering::SeqCst);
    pass(secs(11)).await;
    assert_eq!(ask(&h, "POST", "/v1/check", None).await.status, 200);
    let es = after_n(entries(&h, "").await, seen);
    let [
        Entry {
            event:
                Event::LicenseState {
                    from: LicenseState::Active,
                    to: LicenseState::Expired,
                    reason: Some(r),
                    error: None,
                },
            ..
        },
    ] = es.as_slice()
    else {
        panic!("{es:?}")
    };
    assert_eq!(r.code, "EXPIRED");
    seen += es.len();

    // activate and deactivate by a caller: its uid (root only).
    mode.store(0, Ordering::SeqCst);
    let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    let body = format!(r#"{{"license_key": "{KEY}"}}"#);
    let a = ask(&h, "POST", "/v1/activate", Some(body)).await;
    // The portal fails the first deactivation (no verdict), takes the second.
    mode.store(2, Ordering::SeqCst);
    let d1 = ask(&h, "POST", "/v1/deactivate", None).await;
    mode.store(0, Ordering::SeqCst);
    let d2 = ask(&h, "POST", "/v1/deactivate", None).await;
    let es = after_n(entries(&h, "").await, seen);
    if uid == 0 {
        assert_eq!((a.status, d1.status, d2.status), (200, 503, 200));
        assert_eq!(
            kinds(&es),
            [
                "activate",
                "license_state",
                "deactivate",
                "deactivate",
                "license_state",
                "update_state"
            ],
            "{es:?}"
        );
        let outcomes: Vec<_> = es
            .iter()
            .filter_map(|e| match &e.event {
                Event::Activate(a) | Event::Deactivate(a) => {
                    Some((e.event.kind(), a.uid, a.key.as_str(), a.outcome.as_str()))
                }
                _ => None,
            })
            .collect();
        let k = "WISP-****SA6T";
        assert_eq!(
            outcomes,
            [
                ("activate", Some(0), k, "ok"),
                ("deactivate", Some(0), k, "PORTAL_UNREACHABLE"),
                ("deactivate", Some(0), k, "ok")
            ]
        );
        let Event::LicenseState { from, to, .. } = &es[4].event else {
            panic!("{es:?}")
        };
        assert_eq!(*to, LicenseState::Unconfigured, "from {from}");
    } else {
        // Refused before anything happens: nothing to record.
        assert_eq!((a.status, d1.status, d2.status), (403, 403, 403));
        assert!(es.is_empty(), "{es:?}");
    }
    seen += es.len();

    // SIGHUP: a bad configuration is rejected with why, a good one applied.
    let good = std::fs::read_to_string(h.config_path()).expect("configuration");
    std::fs::write(h.config_path(), format!("{good}\nno_such_key = 1\n")).expect("configuration");
    d.reload();
    pass(secs(1)).await;
    std::fs::write(h.config_path(), &good).expect("configuration");
    d.reload();
    pass(secs(1)).await;
    let es = after_n(entries(&h, "").await, seen);
    let reloads: Vec<_> = es
        .iter()
        .filter_map(|e| match &e.event {
            Event::ConfigReloaded { outcome, message } => Some((*outcome, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(reloads.len(), 2, "{es:?}");
    assert_eq!(reloads[0].0, ReloadOutcome::Rejected);
    assert!(
        reloads[0]
            .1
            .as_deref()
            .is_some_and(|m| m.contains("no_such_key")),
        "{reloads:?}"
    );
    assert_eq!(reloads[1], (ReloadOutcome::Applied, None));

    // A clean shutdown, last on disk; the file is what the socket served.
    let served = entries(&h, "?limit=1000").await;
    d.stop().await;
    let c = file(&h);
    assert_eq!(c.skipped, 0);
    assert_eq!(
        c.entries.last().map(|e| e.event.kind()),
        Some("daemon_stopped")
    );
    assert_eq!(&c.entries[..c.entries.len() - 1], served.as_slice());
    let path = h.state_dir().join(history::FILE_NAME);
    let meta = std::fs::metadata(&path).expect("the history file");
    assert_eq!(meta.mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).expect("the history file");
    assert!(
        !text.contains("GOOD-0000"),
        "the full key is in the history:\n{text}"
    );

    // A restart writes daemon_started and no state it already holds.
    let d = h.start(22);
    pass(secs(1)).await;
    let es = after_n(entries(&h, "?limit=1000").await, c.entries.len());
    assert_eq!(kinds(&es)[0], "daemon_started", "{es:?}");
    assert!(!kinds(&es).contains(&"update_state"), "{es:?}");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn get_history_takes_since_and_limit_and_names_a_bad_parameter() {
    let (mode, script) = switchable();
    let h = Host::new(DEFAULTS, script);
    let d = h.start(23);
    pass(secs(1)).await;
    // A few changes, minutes apart.
    for m in [1, 0, 1, 0] {
        pass(secs(120)).await;
        mode.store(m, Ordering::SeqCst);
        assert_eq!(ask(&h, "POST", "/v1/check", None).await.status, 200);
    }
    let all = entries(&h, "").await;
    assert_eq!(all.len(), 8, "{all:?}");
    assert_eq!(entries(&h, "?limit=3").await, all[5..]);
    let since = all[5].at.to_rfc3339();
    assert_eq!(entries(&h, &format!("?since={since}")).await, all[5..]);
    assert_eq!(
        entries(&h, &format!("?since={since}&limit=1")).await,
        all[7..]
    );
    // An offset, escaped; an unknown parameter is ignored.
    let t = all[5]
        .at
        .add(hours(2))
        .to_rfc3339()
        .replace('Z', "%2B02:00");
    assert_eq!(entries(&h, &format!("?since={t}&other=x")).await, all[5..]);
    assert_eq!(entries(&h, "?since=2099-01-01T00:00:00Z").await, []);
    for (q, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("since=yesterday", "since"),
        ("since=", "since"),
    ] {
        let a = ask(&h, "GET", &format!("/v1/history?{q}"), None).await;
        let e = a.envelope();
        assert_eq!(
            (a.status, e.code.as_str()),
            (400, "VALIDATION_ERROR"),
            "{q}"
        );
        assert!(
            e.message.contains(&format!("`{param}`")),
            "{q}: {}",
            e.message
        );
    }
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_history_that_cannot_be_written_warns_and_licensing_goes_on() {
    let (mode, script) = switchable();
    let h = Host::new(DEFAULTS, script);
    // A directory where the file should be: unwritable even for root.
    let blocker = h.state_dir().join(history::FILE_NAME);
    std::fs::create_dir_all(&blocker).expect("the blocker");
    let d = h.start(24);
    pass(secs(1)).await;
    let doc = h.status().await;
    assert_eq!(doc.license.state, LicenseState::Active);
    assert_eq!(codes(&doc), ["state_not_saved"]);
    // Served from memory all the same.
    assert_eq!(kinds(&entries(&h, "").await)[0], "daemon_started");
    // Once it can be written again, the next entry clears the warning.
    std::fs::remove_dir(&blocker).expect("remove the blocker");
    mode.store(1, Ordering::SeqCst);
    pass(secs(11)).await;
    assert_eq!(ask(&h, "POST", "/v1/check", None).await.status, 200);
    let doc = h.status().await;
    assert_eq!(doc.license.state, LicenseState::Expired);
    assert!(codes(&doc).is_empty(), "{:?}", doc.warnings);
    assert_eq!(kinds(&file(&h).entries).last(), Some(&"license_state"));
    d.stop().await;
}

/// Reads `/v1/events` and, as each event arrives, the history file: the
/// licence states the events showed must already be there, in order.
async fn follow_events(sock: PathBuf, state_dir: PathBuf, want: usize) -> Vec<LicenseState> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(&sock)
        .await
        .expect("connect");
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut raw = Vec::new();
    let mut shown: Vec<LicenseState> = Vec::new();
    let mut buf = [0u8; 65536];
    while shown.len() < want {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "the stream ended");
        raw.extend_from_slice(&buf[..n]);
        // Each event is one chunk: `data: {...}\n` ends with a newline.
        while let Some(start) = find(&raw, b"data: ") {
            let Some(len) = find(&raw[start..], b"\n") else {
                break;
            };
            let line = raw[start + 6..start + len].to_vec();
            raw.drain(..start + len);
            let doc: wispanel_license::api::StatusDocument =
                serde_json::from_slice(&line).expect("a status document");
            let state = doc.license.state;
            if shown.last() != Some(&state) {
                shown.push(state);
            }
            // What the history holds now: the first state, then each change.
            let c = history::read_file(&state_dir.join(history::FILE_NAME)).expect("history");
            let mut recorded = vec![LicenseState::Unknown];
            recorded.extend(c.entries.iter().filter_map(|e| match e.event {
                Event::LicenseState { to, .. } => Some(to),
                _ => None,
            }));
            let mut it = recorded.iter();
            assert!(
                shown.iter().all(|s| it.any(|r| r == s)),
                "the events showed {shown:?}, the history holds only {recorded:?}"
            );
        }
    }
    shown
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(start_paused = true)]
async fn each_change_is_in_the_history_before_it_is_announced() {
    let (mode, script) = switchable();
    let h = Host::new(DEFAULTS, script);
    let d = h.start(25);
    let follower = tokio::spawn(follow_events(
        h.socket_path(),
        h.state_dir(),
        // unknown (the first event), active, then 6 changes.
        8,
    ));
    pass(secs(1)).await;
    for m in [1, 0, 1, 0, 1, 0] {
        pass(secs(11)).await;
        mode.store(m, Ordering::SeqCst);
        assert_eq!(ask(&h, "POST", "/v1/check", None).await.status, 200);
    }
    let shown = tokio::time::timeout(secs(60), follower)
        .await
        .expect("the events in time")
        .expect("the follower");
    assert_eq!(shown.last(), Some(&LicenseState::Active), "{shown:?}");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refusal_held_while_an_activation_is_in_doubt_is_no_outcome() {
    // The first activation gets no answer (in doubt); the retry meets
    // MAX_ACTIVATIONS (its own seat), which is held; the validate decides.
    let h = Host::new(DEFAULTS, |e, t| match e {
        Endpoint::Activate if t == T0 => Reply::Timeout,
        Endpoint::Activate => Reply::Status(
            409,
            vec![],
            r#"{"valid": false, "code": "MAX_ACTIVATIONS", "error": "no seat left"}"#,
        ),
        _ => Reply::Valid,
    });
    let d = h.start(26);
    pass(secs(120)).await;
    let es = entries(&h, "").await;
    let reqs: Vec<Endpoint> = h.portal().licence_requests().iter().map(|r| r.0).collect();
    assert_eq!(
        reqs[..3],
        [Endpoint::Activate, Endpoint::Activate, Endpoint::Validate]
    );
    assert!(
        !es.iter().any(|e| matches!(e.event, Event::Activate(_))),
        "{es:?}"
    );
    let states: Vec<_> = es
        .iter()
        .filter_map(|e| match e.event {
            Event::LicenseState { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(states, [(LicenseState::Unknown, LicenseState::Active)]);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_torn_line_is_skipped_and_a_hardware_change_is_written_once() {
    let phase = Arc::new(AtomicU8::new(0));
    let p = phase.clone();
    // Valid at first, then the portal is gone: the changed hardware_id gets
    // no new verdict and keeps differing across restarts.
    let h = Host::new(DEFAULTS, move |_, _| match p.load(Ordering::SeqCst) {
        0 => Reply::Valid,
        _ => Reply::Timeout,
    });
    let d = h.start(27);
    pass(secs(1)).await;
    d.stop().await;
    let path = h.state_dir().join(history::FILE_NAME);
    let before = file(&h).entries;
    // A crash cut the last write.
    let mut text = std::fs::read_to_string(&path).expect("history");
    text.push_str(r#"{"at":"2027-01-15T08:00:01Z","event":"lic"#);
    std::fs::write(&path, text).expect("history");

    phase.store(1, Ordering::SeqCst);
    std::fs::write(h.hwid_file(), format!("{NEW_HWID}\n")).expect("hwid");
    let d = h.start(28);
    pass(secs(1)).await;
    let es = entries(&h, "?limit=1000").await;
    assert_eq!(es[..before.len()], before[..]);
    let new = &es[before.len()..];
    assert_eq!(
        kinds(new)[..2],
        ["daemon_started", "hardware_changed"],
        "{new:?}"
    );
    d.stop().await;
    let c = file(&h);
    assert_eq!(c.skipped, 1, "the torn line, alone on its line");
    assert_eq!(c.entries.len(), es.len() + 1, "and daemon_stopped");

    // The hardware still differs at the next start: no second entry.
    let d = h.start(29);
    pass(secs(1)).await;
    let es = entries(&h, "?limit=1000").await;
    let again = &es[c.entries.len()..];
    assert_eq!(kinds(again), ["daemon_started"], "{again:?}");
    d.stop().await;
}

fn codes(doc: &wispanel_license::api::StatusDocument) -> Vec<&'static str> {
    doc.warnings.iter().map(|w| w.code.as_str()).collect()
}
