//! The daemon binary against the portal simulator (issue #4): what needs a
//! process of its own: systemd's variables (`NOTIFY_SOCKET`, the watchdog),
//! the signals (SIGTERM, SIGINT, SIGHUP) and kill -9. Six starts of the
//! binary in all. The rest is in-process on the harness: grace and lapse,
//! reloads, the key in force, a full disk, a changed hardware_id and a
//! corrupt state in `daemon_in_process.rs`, the refusals in `refusals.rs`,
//! the gate and restarts in `schedule.rs`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};
use wispanel_core::machine::Verdict;
use wispanel_license::store::{Loaded, Store};
use wispanel_portal_sim::{Endpoint, Outage};

/// First start with a key, under systemd's variables (`WATCHDOG_PID` the
/// daemon's own pid, as systemd sets it): READY=1 before any portal request,
/// activate at once, then `active`; STATUS= says so; the watchdog is pinged.
/// Then, on the same process: SIGHUP with a changed key checks at once; a
/// failed check turns the licence to grace, and STATUS= says so; SIGTERM
/// sends STOPPING=1 and exits 0, the state saved and the socket removed.
#[test]
fn first_start_ready_before_request_then_activates_reloads_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    // The first request never gets an answer until the outage ends, so a
    // daemon that waited for the portal before READY=1 cannot pass.
    sim.set_outage(Some(Outage::Stall));
    let (npath, nsock) = Notify::bind(dir.path());
    let mut conf = Conf::for_sim(&sim, Some(keys::GOOD));
    conf.request_timeout = "1s".into();
    let mut env = Env::in_dir(dir, conf);
    let mut d = Daemon::spawn_watchdog_pid_self(
        &env,
        &[
            ("NOTIFY_SOCKET", npath.display().to_string()),
            ("WATCHDOG_USEC", "200000".into()),
        ],
    );
    poll_until(WAIT, "the first portal request", || {
        (sim.count() >= 1).then_some(())
    });
    // Datagrams are queued when sent: READY=1 must already be waiting.
    let queued = Notify::drain(&nsock);
    assert!(
        queued.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 was not sent before the first portal request; queued: {queued:?}"
    );
    let notify = Notify::from_socket(npath, nsock, queued);
    let first = &sim.requests()[0];
    assert_eq!(first.endpoint, Endpoint::Activate, "first start activates");
    assert_eq!(first.key_last4.as_deref(), Some("SA6T"));
    assert_eq!(
        first.body.as_ref().unwrap()["hardware_id"],
        json!(HWID),
        "the id_file's id is sent"
    );

    sim.set_outage(None);
    // The stalled request times out (1 s), the retry activates.
    let s = env.wait_state("active");
    assert_eq!(s["license"]["licensed"], true);
    assert_eq!(s["license"]["key"], "WISP-****SA6T");
    assert_eq!(s["license"]["tier"], "pro");
    assert_eq!(sim.activations(keys::GOOD), vec![HWID.to_string()]);
    poll_until(WAIT, "STATUS= naming the active licence", || {
        notify
            .lines()
            .iter()
            .any(|(_, l)| l.starts_with("STATUS=licence active"))
            .then_some(())
    });

    // WATCHDOG_USEC=200000: a ping at least every 100 ms, so 5 within 1.5 s.
    let before = notify.count("WATCHDOG=1");
    let t = Instant::now();
    poll_until(WAIT, "5 more WATCHDOG=1", || {
        (notify.count("WATCHDOG=1") >= before + 5).then_some(())
    });
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "5 WATCHDOG=1 took {took:?}"
    );

    // SIGHUP with a changed key: checked at once.
    env.conf.key = Some(keys::NO_UPDATES.into());
    env.write_config();
    d.sighup();
    let s = env.wait_status("the new key active", |s| {
        s["license"]["key"] == "WISP-****0005" && s["license"]["state"] == "active"
    });
    assert_eq!(s["license"]["state"], "active");
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.endpoint == Endpoint::Activate && r.key_last4.as_deref() == Some("0005")),
        "the new key was not activated"
    );
    d.wait_log("configuration reloaded");

    // A failed check: grace, announced on STATUS=.
    sim.set_outage(Some(Outage::Status(503)));
    let r = env.post("/v1/check", None);
    assert_eq!(r.status, 200, "a failed check still answers the document");
    let s = r.json();
    assert_eq!(s["license"]["state"], "grace", "{s:#}");
    assert_eq!(s["portal"]["last_error"]["http_status"], 503);
    poll_until(WAIT, "STATUS= naming the grace", || {
        notify
            .lines()
            .iter()
            .any(|(_, l)| l.starts_with("STATUS=licence grace"))
            .then_some(())
    });

    let status = d.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    notify.wait("STOPPING=1");
    assert!(!env.socket.exists(), "the socket is removed on exit");
    assert!(env.saved_core().licence.failing, "the grace is saved");
}

/// SIGTERM while a request stalls: exit 0 within 5 s, state saved.
#[test]
fn sigterm_during_stalled_request_exits_quickly() {
    let (sim, env, mut d) = active_daemon(|c| c.request_timeout = "60s".into());
    sim.set_outage(Some(Outage::Stall));
    let n = sim.count();
    let sock = env.socket.clone();
    let t = std::thread::spawn(move || {
        let _ = try_request(&sock, "POST", "/v1/check", &[], None);
    });
    poll_until(WAIT, "the stalled request", || {
        (sim.count() > n).then_some(())
    });
    // Clients that would hold a naive shutdown: an events stream, a request
    // head that never ends, an idle connection.
    let mut events = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    events
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut half = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    half.write_all(b"GET /v1/status HTTP/1.1\r\nHost: loc")
        .unwrap();
    let _idle = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let start = std::time::Instant::now();
    d.sigterm();
    let status = d.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some(),
        "still running 5 s after SIGTERM; log:\n{}",
        d.log()
    );
    assert_eq!(status.unwrap().code(), Some(0), "log:\n{}", d.log());
    assert!(start.elapsed() < Duration::from_secs(5));
    t.join().unwrap();
    env.saved_core();
}

/// SIGINT is a clean shutdown too; `WATCHDOG_PID` naming another process:
/// the watchdog is not meant for this one, no WATCHDOG=1.
#[test]
fn sigint_exits_zero_and_watchdog_pid_of_another_process_is_not_pinged() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let notify = Notify::new(env.path());
    let mut d = Daemon::spawn(
        &env,
        &[
            notify.var(),
            ("WATCHDOG_USEC", "200000".into()),
            ("WATCHDOG_PID", "1".into()),
        ],
    );
    d.wait_ready(&env);
    notify.wait("READY=1");
    env.wait_state("active");
    // Five periods of 100 ms at least since READY=1.
    quiet_for(Duration::from_millis(500));
    assert_eq!(notify.count("WATCHDOG=1"), 0, "{:?}", notify.lines());
    d.signal(2);
    let status = d.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{}", d.log());
    assert!(!env.socket.exists());
    env.saved_core();
}

/// tests/fixtures/state-v1.json (saved by a real daemon, schema 1) still loads.
#[test]
fn state_v1_fixture_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let core = Store::parse(&text, &path).expect("the v1 fixture parses");
    let Some(Verdict::Valid { details, .. }) = &core.licence.verdict else {
        panic!("a valid verdict: {core:?}");
    };
    assert_eq!(details.tier.as_deref(), Some("pro"));
    assert_eq!(details.max_users, Some(30));
    assert_eq!(details.max_domains, Some(100));
    assert_eq!(details.max_databases, Some(-1));
    assert!(details.valid_until.is_some() && details.expires_at.is_some());
    let b = core.licence.activated.as_ref().expect("activated binding");
    assert_eq!(b.hardware_id, HWID);
    let fp = wispanel_core::key::LicenseKey::parse(keys::GOOD)
        .unwrap()
        .fingerprint();
    assert_eq!(b.key_fingerprint, fp, "the key fingerprint is stable");
    assert_eq!(core.licence.verdict_binding.as_ref(), Some(b));
    assert!(!core.licence.failing);
    assert_eq!(core.portal.consecutive_failures, 0);
    assert!(core.portal.last_error.is_none());
    assert!(core.plan.next_validate_at.is_some());
    assert!(core.plan.next_update_check_at.is_some());
    assert_eq!(core.update.state, wispanel_core::UpdateState::Available);
    assert_eq!(core.update.latest_version.as_deref(), Some("1.5.0"));
    // Saving it again and reading it back gives the same core.
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], 1);
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    store.save(&core, wispanel_license::clock::now()).unwrap();
    let again = std::fs::read_to_string(store.state_path()).unwrap();
    assert_eq!(Store::parse(&again, &store.state_path()).unwrap(), core);
}

/// A tiny xorshift so the kill times differ between runs without a dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(wispanel_license::clock::now().0 as u64 | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The leftovers of a kill in `state_dir`: state.json parses (with the
/// daemon's own parser), nothing was moved aside as corrupt, and temporary
/// files do not pile up (the next start removes a kill's one).
fn assert_state_dir_survived(state_dir: &std::path::Path, after: &str) {
    let state = state_dir.join("state.json");
    if state.exists() {
        let text = std::fs::read_to_string(&state).unwrap();
        if let Err(e) = Store::parse(&text, &state) {
            panic!("{after}, state.json does not parse: {e}\n{text}");
        }
    }
    let names: Vec<String> = std::fs::read_dir(state_dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let corrupt: Vec<_> = names.iter().filter(|n| n.contains("corrupt")).collect();
    assert!(
        corrupt.is_empty(),
        "{after}, a start found a file unreadable: {corrupt:?}"
    );
    let temps: Vec<_> = names.iter().filter(|n| n.contains(".tmp-")).collect();
    assert!(
        temps.len() <= 2,
        "{after}, temporary files pile up: {temps:?}"
    );
}

/// The daemon itself under kill -9 at random moments while the state
/// changes (activations, the portal flipping between healthy and broken):
/// three kills, each followed by a start on what the last one left. The
/// many kills are the focused child's below.
#[test]
fn the_daemon_under_sigkill_leaves_a_state_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, None));
    let mut rng = Rng::new();
    let mut changes = 0usize;
    let body = format!("{{\"license_key\": \"{}\"}}", keys::GOOD);
    for kill in 1..=3 {
        let mut d = env.start();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sock, b, st) = (env.socket.clone(), body.clone(), stop.clone());
        let flipper = std::thread::spawn(move || {
            let mut n = 0usize;
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                match try_request(&sock, "POST", "/v1/activate", &[], Some(&b)) {
                    Ok(r) if r.status == 200 || r.status == 503 => n += 1,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            n
        });
        // Flip the portal between healthy and broken while activations run.
        let deadline = Instant::now() + Duration::from_millis(100 + rng.below(400));
        while Instant::now() < deadline {
            sim.set_outage(if rng.below(2) == 0 {
                Some(Outage::Status(503))
            } else {
                None
            });
            std::thread::sleep(Duration::from_millis(rng.below(30)));
        }
        d.signal(9);
        d.wait_exit(WAIT).expect("SIGKILL reaped");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        changes += flipper.join().unwrap();
        assert_state_dir_survived(&env.state_dir, &format!("after kill {kill}"));
        sim.set_outage(None);
    }
    eprintln!("3 kills, {changes} activations answered");
    assert!(changes >= 3, "{changes} activations answered");
}

/// Set in the child of `state_writes_survive_sigkill_at_random_moments`:
/// the state directory it writes to.
const WRITER_CHILD: &str = "WISPANEL_SIGKILL_WRITER_CHILD";

/// The focused child: what a daemon's start does to the state directory
/// (stale temporary files removed, the state loaded or moved aside), then
/// the state writer's saves (state.json, and the key file `activate` writes)
/// back to back, each core numbered in `consecutive_failures`, until killed.
fn writer_child(state_dir: &std::path::Path) {
    let store = Store::open(state_dir).unwrap();
    store.remove_stale_temp_files();
    let now = wispanel_license::clock::now();
    let mut core = match store.load(now) {
        Loaded::Existing(core) => *core,
        Loaded::Fresh => {
            let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/state-v1.json");
            Store::parse(&std::fs::read_to_string(&fixture).unwrap(), &fixture).unwrap()
        }
        Loaded::Corrupt { problem, .. } => panic!("corrupt after a kill: {problem}"),
    };
    let key = wispanel_core::key::LicenseKey::parse(keys::GOOD).unwrap();
    println!("saving");
    std::io::stdout().flush().unwrap();
    // Numbered on from the last saved core: the number on disk counts every
    // save that reached it, across kills.
    for n in core.portal.consecutive_failures + 1.. {
        core.portal.consecutive_failures = n;
        core.licence.failing = n % 2 == 0;
        store.save(&core, now).unwrap();
        if n % 7 == 0 {
            store.save_key(&key).unwrap();
        } else if n % 7 == 3 {
            store.remove_key().unwrap();
        }
    }
}

/// SIGKILL at random moments while the state writer saves all the time
/// (a focused child: this test binary run again, see `writer_child`): after
/// each of 20 kills the state.json left behind parses, the next start finds
/// nothing corrupt, temporary files do not pile up; 200 saves at least.
#[test]
fn state_writes_survive_sigkill_at_random_moments() {
    if let Ok(dir) = std::env::var(WRITER_CHILD) {
        return writer_child(std::path::Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let mut rng = Rng::new();
    let mut saves = 0u64;
    let mut kills = 0usize;
    let start = Instant::now();
    while (saves < 200 || kills < 20) && start.elapsed() < Duration::from_secs(120) {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "state_writes_survive_sigkill_at_random_moments",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_CHILD, &state_dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("saving") {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                let status = child.wait().unwrap();
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                panic!("the writer ended by itself ({status}) after {kills} kills:\n{err}");
            }
        }
        std::thread::sleep(Duration::from_millis(2 + rng.below(30)));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        assert_state_dir_survived(&state_dir, &format!("after kill {kills}"));
        let state = state_dir.join("state.json");
        if state.exists() {
            let core = Store::parse(&std::fs::read_to_string(&state).unwrap(), &state).unwrap();
            let n = u64::from(core.portal.consecutive_failures);
            assert!(
                n >= saves,
                "after kill {kills}, an older state: {n} < {saves}"
            );
            saves = n;
        }
        if let Ok(store) = Store::open(&state_dir) {
            assert!(store.load_key().is_ok(), "after kill {kills}, license.key");
        }
    }
    eprintln!("{kills} kills, {saves} saves");
    assert!(kills >= 20 && saves >= 200, "{kills} kills, {saves} saves");
}
