//! The history from outside: `wispanel-license history` (plain, `--json`,
//! the file itself as root when the daemon is down), `status --wait`, and
//! kill -9 during a burst of state changes: every change `GET /v1/status`
//! showed before the kill is in the history after the restart. The daemon
//! runs in-process (`common::Served`) except where it is killed.

mod common;

use common::{Conf, Env, Sim, active_served_with, is_root, keys};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wispanel_core::LicenseState;
use wispanel_license::history::{Entry, Event, Page};
use wispanel_portal_sim::{Outage, SimOptions};

fn cli_cmd(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wispanel-license"));
    c.arg("--config")
        .arg(&env.config)
        .args(args)
        .stdin(Stdio::null());
    c
}

fn cli(env: &Env, args: &[&str]) -> Output {
    cli_cmd(env, args).output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn json_entries(o: &Output) -> Vec<Entry> {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not an entries array ({e}): {}", out(o)))
}

fn served(env: &Env) -> Vec<Entry> {
    let r = env.get("/v1/history?limit=1000");
    assert_eq!(r.status, 200);
    serde_json::from_slice::<Page>(&r.body).unwrap().entries
}

#[test]
fn history_plain_json_and_from_the_file_when_the_daemon_is_down() {
    let (_sim, env, d) = active_served_with(false, |_| {});
    let o = cli(&env, &["history"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let text = out(&o);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.contains("daemon_started") && first.contains(" UTC "),
        "{text}"
    );
    assert!(text.contains("unknown -> active"), "{text}");
    assert!(!text.contains(keys::GOOD), "{text}");

    // --json: the entries array as the socket gives it.
    let o = cli(&env, &["history", "--json"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let all = json_entries(&o);
    assert_eq!(all, served(&env));
    assert!(all.len() >= 3, "{all:?}");
    let o = cli(&env, &["history", "--json", "--limit", "1"]);
    assert_eq!(json_entries(&o), all[all.len() - 1..]);
    let o = cli(&env, &["history", "--json", "--since", "1d"]);
    assert_eq!(json_entries(&o), all);
    let o = cli(
        &env,
        &["history", "--json", "--since", "2099-01-01T00:00:00Z"],
    );
    assert_eq!((code(&o), json_entries(&o)), (0, vec![]));
    for bad in [
        &["--since", "soon"][..],
        &["--limit", "0"],
        &["--limit", "1001"],
    ] {
        let mut args = vec!["history"];
        args.extend_from_slice(bad);
        let o = cli(&env, &args);
        assert_eq!(code(&o), 2, "{bad:?}: {}", err(&o));
    }

    // The daemon stops: root reads the file itself, same rule.
    d.stop().expect("a clean stop");
    let o = cli(&env, &["history", "--json", "--limit", "2"]);
    if is_root() {
        assert_eq!(code(&o), 0, "{}", err(&o));
        assert!(err(&o).contains("history.jsonl"), "{}", err(&o));
        let es = json_entries(&o);
        assert_eq!(es.len(), 2);
        assert_eq!(es[0], all[all.len() - 1]);
        assert_eq!(es[1].event, Event::DaemonStopped {});
    } else {
        assert_eq!(code(&o), 3, "{}", err(&o));
        assert!(err(&o).contains("needs root"), "{}", err(&o));
    }
}

#[test]
fn status_wait_waits_for_the_socket_and_for_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimOptions::plain());
    // The portal does not answer yet: the state stays `unknown`.
    sim.set_outage(Some(Outage::Status(503)));
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    // The client starts before the daemon: no socket at all.
    let child = cli_cmd(&env, &["status", "--wait", "--timeout", "120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _d = env.serve();
    assert_eq!(env.status()["license"]["state"], "unknown");
    sim.set_outage(None);
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}{}", out(&o), err(&o));
    assert!(out(&o).starts_with("Licence:   active"), "{}", out(&o));
}

#[test]
fn status_wait_gives_up_at_the_timeout_with_3() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimOptions::plain());
    sim.set_outage(Some(Outage::Status(503)));
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    // No daemon.
    let t = Instant::now();
    let o = cli(&env, &["status", "--wait", "--timeout", "1s"]);
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(
        err(&o).contains("is wispanel-licensed running"),
        "{}",
        err(&o)
    );
    // A daemon that stays `unknown`.
    let _d = env.serve();
    let t = Instant::now();
    let o = cli(&env, &["status", "--wait", "--timeout", "2s"]);
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(t.elapsed() >= Duration::from_secs(2));
    assert!(out(&o).starts_with("Licence:   unknown"), "{}", out(&o));
    // Usage errors.
    for args in [
        &["status", "--timeout", "5s"][..],
        &["status", "--wait", "--timeout", "x"],
    ] {
        assert_eq!(code(&cli(&env, args)), 2, "{args:?}");
    }
}

/// A small deterministic generator for the kill instants (seeded).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Whether `seen` appears in `recorded` in order (other entries between).
fn in_order(seen: &[LicenseState], recorded: &[LicenseState]) -> bool {
    let mut it = recorded.iter();
    seen.iter().all(|s| it.any(|r| r == s))
}

#[test]
fn kill_9_during_a_burst_loses_no_change_the_status_showed() {
    let (_sim, mut env, d) = active_served_with(false, |_| {});
    drop(d);
    // The two configurations the burst swaps in (atomically, by rename).
    env.conf.key = None;
    env.write_config();
    let without = std::fs::read_to_string(&env.config).unwrap();
    env.conf.key = Some(keys::GOOD.to_string());
    env.write_config();
    let with = std::fs::read_to_string(&env.config).unwrap();
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    for round in 0..3 {
        std::fs::write(&env.config, &with).unwrap();
        // A process: only its kill -9 stops it at any instruction.
        let d = env.start();
        env.wait_state("active");
        let base = served(&env).len();
        let pid = d.pid();
        let d = Arc::new(Mutex::new(d));
        let stop = Arc::new(AtomicBool::new(false));
        // kill -9 right after the status shows the k-th change (the instant
        // where an announcement ahead of its history entry would be lost),
        // or a little later.
        let k = 2 + rng.below(6) as usize;
        let delay = Duration::from_micros(rng.below(3000));
        // The observer: what GET /v1/status showed, each change once.
        let observer = {
            let (stop, d, sock) = (stop.clone(), d.clone(), env.socket.clone());
            std::thread::spawn(move || {
                let mut shown = Vec::<LicenseState>::new();
                let give_up = Instant::now() + common::WAIT;
                while shown.len() < k && Instant::now() < give_up {
                    let Ok(r) = common::try_request(&sock, "GET", "/v1/status", &[], None) else {
                        continue;
                    };
                    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&r.body) else {
                        continue;
                    };
                    let Ok(s) =
                        serde_json::from_value::<LicenseState>(doc["license"]["state"].clone())
                    else {
                        continue;
                    };
                    if shown.last() != Some(&s) {
                        shown.push(s);
                    }
                }
                std::thread::sleep(delay);
                d.lock().unwrap().kill();
                stop.store(true, Ordering::SeqCst);
                shown
            })
        };
        // The burst: the key leaves and comes back (SIGHUP each time, the
        // next change as soon as the status shows this one), so the state
        // goes unconfigured <-> active as fast as it can.
        let driver = {
            let (stop, config) = (stop.clone(), env.config.clone());
            let (with, without) = (with.clone(), without.clone());
            let sock = env.socket.clone();
            std::thread::spawn(move || {
                let temp = config.with_extension("toml.new");
                let mut key = true;
                while !stop.load(Ordering::SeqCst) {
                    key = !key;
                    std::fs::write(&temp, if key { &with } else { &without }).unwrap();
                    std::fs::rename(&temp, &config).unwrap();
                    // After the kill, this finds no process: expected.
                    let _ = Command::new("kill")
                        .args(["-HUP", &pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                    let want = if key { "active" } else { "unconfigured" };
                    let give_up = Instant::now() + common::WAIT;
                    while !stop.load(Ordering::SeqCst) && Instant::now() < give_up {
                        let shown = common::try_request(&sock, "GET", "/v1/status", &[], None)
                            .ok()
                            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
                            .is_some_and(|doc| doc["license"]["state"] == want);
                        if shown {
                            break;
                        }
                    }
                }
            })
        };
        let shown = observer.join().unwrap();
        driver.join().unwrap();
        assert_eq!(
            shown.len(),
            k,
            "round {round}: too few changes seen before the kill: {shown:?}"
        );

        let _d = env.serve();
        let all = served(&env);
        // Far from a rewrite: the indices still hold.
        assert!(all.len() < 1000, "{}", all.len());
        let mut recorded = vec![LicenseState::Active];
        recorded.extend(all[base..].iter().filter_map(|e| match e.event {
            Event::LicenseState { to, .. } => Some(to),
            _ => None,
        }));
        assert!(
            in_order(&shown, &recorded),
            "round {round}: the status showed {shown:?}, the history holds {recorded:?}"
        );
    }
}

#[test]
fn status_wait_stops_at_once_when_the_socket_refuses_the_caller() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("needs root and setpriv to run the client as another user");
        return;
    }
    let (_sim, env, _d) = active_served_with(false, |_| {});
    // The test's directory is 0700 and root's: nobody cannot reach the socket.
    let t = Instant::now();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_wispanel-license"))
        .arg("--socket")
        .arg(&env.socket)
        .args(["status", "--wait", "--timeout", "60s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(err(&o).contains("ermission denied"), "{}", err(&o));
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

/// Connections to `path` the kernel knows: the listener, then one more for
/// each client waiting in its queue.
fn unix_sockets_at(path: &std::path::Path) -> usize {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let path = path.to_string_lossy();
    text.lines()
        .filter(|l| l.trim_end().ends_with(path.as_ref()))
        .count()
}

#[test]
fn status_wait_waits_in_the_socket_queue_until_the_daemon_serves() {
    // What socket activation does: the socket listens before the daemon
    // runs, and a client waits in its queue.
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimOptions::plain());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&env.socket).unwrap();
    let child = cli_cmd(&env, &["status", "--wait", "--timeout", "120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::poll_until(common::WAIT, "the client in the socket's queue", || {
        (unix_sockets_at(&env.socket) >= 2).then_some(())
    });
    // Now the daemon starts, in-process, on that listener.
    let daemon = env.serve_on(listener);
    let o = child.wait_with_output().unwrap();
    assert!(daemon.stop().is_ok());
    assert_eq!(code(&o), 0, "{}{}", out(&o), err(&o));
    assert!(out(&o).starts_with("Licence:   active"), "{}", out(&o));
}
