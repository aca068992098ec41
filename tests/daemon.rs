//! The daemon binary against the portal simulator (issue #4): first start,
//! systemd notifications, grace and lapse, signals, kill -9,
//! reloads, and the saved state. What needs no process is in-process on the
//! harness: the refusals in `refusals.rs`, a changed hardware_id and a
//! corrupt state in `daemon_in_process.rs`, the gate and restarts in
//! `schedule.rs`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;
use wispanel_core::machine::Verdict;
use wispanel_license::store::Store;
use wispanel_portal_sim::{Endpoint, LicenseTerms, Outage};

/// First start with a key: READY=1 before any portal request, activate at
/// once, then `active`; STATUS= says so; the watchdog is pinged; SIGTERM
/// sends STOPPING=1 and exits 0.
#[test]
fn first_start_ready_before_request_then_activates() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    // The first request never gets an answer until the outage ends, so a
    // daemon that waited for the portal before READY=1 cannot pass.
    sim.set_outage(Some(Outage::Stall));
    let (npath, nsock) = Notify::bind(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let mut d = Daemon::spawn(
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
    // The stalled request times out (2 s), the retry activates.
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

    // WATCHDOG_USEC=200000: a ping at least every 100 ms.
    let before = notify.count("WATCHDOG=1");
    std::thread::sleep(Duration::from_millis(1500));
    let pings = notify.count("WATCHDOG=1") - before;
    assert!(pings >= 5, "only {pings} WATCHDOG=1 in 1.5 s");

    let status = d.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    notify.wait("STOPPING=1");
    assert!(!env.socket.exists(), "the socket is removed on exit");
}

/// `WATCHDOG_PID` naming the daemon: pings; naming another process: none.
#[test]
fn watchdog_honours_watchdog_pid() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let notify = Notify::new(env.path());
    let mut d =
        Daemon::spawn_watchdog_pid_self(&env, &[notify.var(), ("WATCHDOG_USEC", "200000".into())]);
    d.wait_ready(&env);
    poll_until(WAIT, "WATCHDOG=1 with WATCHDOG_PID = own pid", || {
        (notify.count("WATCHDOG=1") >= 3).then_some(())
    });
    assert_eq!(d.stop().code(), Some(0));

    // Another pid: the watchdog is not meant for this process.
    let other = Notify::new(&env.path().join("x").tap_mkdir());
    let mut d = Daemon::spawn(
        &env,
        &[
            other.var(),
            ("WATCHDOG_USEC", "200000".into()),
            ("WATCHDOG_PID", "1".into()),
        ],
    );
    d.wait_ready(&env);
    other.wait("READY=1");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(other.count("WATCHDOG=1"), 0, "{:?}", other.lines());
    assert_eq!(d.stop().code(), Some(0));
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// active → grace (a non-verdict) → lapsed once valid_until passes;
/// grace_until is kept in lapsed; STATUS= follows each change.
#[test]
fn grace_then_lapse() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    sim.set_terms(LicenseTerms {
        valid_for_secs: 8,
        ..LicenseTerms::default()
    });
    let notify = Notify::new(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = Daemon::spawn(&env, &[notify.var()]);
    let active = env.wait_state("active");
    let grace_until = ts(&active["license"]["grace_until"]).expect("grace_until while active");
    assert_eq!(
        active["license"]["grace_until"], active["license"]["valid_until"],
        "grace ends at the portal's valid_until"
    );

    sim.set_outage(Some(Outage::Status(503)));
    let r = env.post("/v1/check", None);
    assert_eq!(r.status, 200, "a failed check still answers the document");
    let s = r.json();
    if wispanel_license::clock::now() < grace_until {
        assert_eq!(s["license"]["state"], "grace", "{s:#}");
        assert_eq!(s["license"]["licensed"], true);
        assert_eq!(
            s["license"]["grace_until"],
            active["license"]["grace_until"]
        );
    }
    assert_eq!(s["portal"]["last_error"]["kind"], "http");
    assert_eq!(s["portal"]["last_error"]["http_status"], 503);

    let lapsed = env.wait_state("lapsed");
    assert!(wispanel_license::clock::now() >= grace_until);
    assert_eq!(lapsed["license"]["licensed"], false);
    assert_eq!(
        lapsed["license"]["grace_until"], active["license"]["grace_until"],
        "grace_until stays set in lapsed"
    );
    let lines: Vec<String> = notify.lines().into_iter().map(|(_, l)| l).collect();
    for want in [
        "STATUS=licence active",
        "STATUS=licence grace",
        "STATUS=licence lapsed",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "no {want:?} in {lines:?}"
        );
    }
    // The portal comes back: active again.
    sim.set_outage(None);
    env.wait_state("active");
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

/// SIGINT is a clean shutdown too.
#[test]
fn sigint_exits_zero() {
    let (_sim, env, mut d) = active_daemon(|_| {});
    d.signal(2);
    let status = d.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{}", d.log());
    assert!(!env.socket.exists());
    env.saved_core();
}

/// SIGHUP with a changed key checks at once; a broken file is logged and the
/// old configuration kept, the daemon still answering.
#[test]
fn sighup_reload_good_and_bad() {
    let (sim, mut env, d) = active_daemon(|_| {});
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

    // socket_path and state_dir changes wait for a restart.
    let moved = env.path().join("elsewhere.sock");
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        &format!("socket_path = \"{}\"", env.socket.display()),
        &format!("socket_path = \"{}\"", moved.display()),
    );
    std::fs::write(&env.config, text).unwrap();
    d.sighup();
    d.wait_log("need a restart");
    assert!(!moved.exists(), "the socket moved without a restart");
    assert_eq!(env.status()["license"]["state"], "active");

    std::fs::write(&env.config, "license_key = [this is not toml\n").unwrap();
    let t = wispanel_license::clock::now();
    d.sighup();
    let log = d.wait_log("configuration reload failed");
    assert!(log.contains("license.toml"), "the error names the file");
    let s = env.status();
    assert_eq!(
        s["license"]["key"], "WISP-****0005",
        "the old configuration is kept"
    );
    assert_eq!(s["license"]["state"], "active");
    let h = env.get("/v1/health");
    assert_eq!((h.status, h.json()), (200, json!({"ok": true})));
    quiet_for(Duration::from_millis(500));
    let licence: Vec<_> = sim
        .since(t)
        .into_iter()
        .filter(|r| r.endpoint.is_license())
        .collect();
    assert!(
        licence.is_empty(),
        "a failed reload made a licence request: {licence:?}"
    );
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

/// SIGKILL at random moments while the state changes all the time: the
/// state.json left behind always parses.
#[test]
fn crash_consistency_under_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, None));
    let mut rng = Rng::new();
    let mut changes = 0usize;
    let mut kills = 0usize;
    let body = format!("{{\"license_key\": \"{}\"}}", keys::GOOD);
    let start = std::time::Instant::now();
    while (changes < 200 || kills < 20) && start.elapsed() < Duration::from_secs(120) {
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
        let deadline = std::time::Instant::now() + Duration::from_millis(100 + rng.below(400));
        while std::time::Instant::now() < deadline {
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
        kills += 1;
        if env.state_file().exists() {
            let text = std::fs::read_to_string(env.state_file()).unwrap();
            if let Err(e) = Store::parse(&text, &env.state_file()) {
                panic!("after kill {kills}, state.json does not parse: {e}\n{text}");
            }
        }
        let corrupt = std::fs::read_dir(&env.state_dir)
            .map(|r| {
                r.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .contains("corrupt")
                })
                .count()
            })
            .unwrap_or(0);
        assert_eq!(corrupt, 0, "a restart found state.json unreadable");
        // A kill during a save may leave its temporary file; the next start
        // removes it, so they never pile up.
        let temps: Vec<String> = std::fs::read_dir(&env.state_dir)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".tmp-"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(temps.len() <= 2, "temporary files pile up: {temps:?}");
        sim.set_outage(None);
    }
    eprintln!("{kills} kills, {changes} state changes");
    assert!(
        kills >= 20 && changes >= 200,
        "{kills} kills, {changes} changes"
    );
}

/// Mounts a 64 KiB tmpfs; unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A full disk: the save failure is logged, the daemon keeps serving from
/// memory, and saves again once there is room.
#[test]
fn disk_full_is_logged_and_daemon_keeps_serving() {
    if !is_root() {
        eprintln!("SKIP disk_full: needs root to mount a tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP disk_full: `mount -t tmpfs` does not work here");
        return;
    }
    let _guard = Tmpfs(mnt.clone());
    let sim = Sim::https(dir.path());
    let mut env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    env.state_dir = mnt.join("state");
    env.write_config();
    let d = env.start();
    env.wait_state("active");
    poll_until(WAIT, "state.json", || {
        env.state_file().exists().then_some(())
    });
    // Fill the file system.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    sim.set_outage(Some(Outage::Status(503)));
    let r = env.post("/v1/check", None);
    assert_eq!(r.status, 200);
    d.wait_log("CANNOT SAVE THE STATE");
    let s = env.status();
    assert_eq!(s["license"]["state"], "grace", "served from memory");
    assert_eq!(env.get("/v1/health").status, 200);
    // state.json is still the old, readable one.
    env.saved_core();
    std::fs::remove_file(&filler).unwrap();
    d.wait_log("the state is saved again");
    let core = env.saved_core();
    assert!(core.licence.failing, "the newer state reached the disk");
}

/// A key saved by `activate` is in force until the configuration names
/// another key; then the configured key replaces it, and it is checked at once.
#[test]
fn a_new_configured_key_replaces_the_activated_one() {
    let (sim, mut env, d) = active_daemon(|_| {});
    let body = format!("{{\"license_key\": \"{}\"}}", keys::NO_UPDATES);
    let r = env.post("/v1/activate", Some(&body));
    if r.status == 403 {
        eprintln!("skipping: not root, activation is refused as it should be");
        return;
    }
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(env.status()["license"]["key"], "WISP-****0005");
    assert!(env.state_dir.join("license.key").exists());
    // A reload with the same configuration keeps the activated key.
    d.sighup();
    d.wait_log("configuration reloaded");
    assert_eq!(env.status()["license"]["key"], "WISP-****0005");
    // The configuration now names another key.
    env.conf.key = Some(keys::SUSPENDED.to_string());
    env.write_config();
    let t = wispanel_license::clock::now();
    d.sighup();
    let s = env.wait_state("suspended");
    assert_eq!(s["license"]["key"], "WISP-****0002");
    assert!(
        !env.state_dir.join("license.key").exists(),
        "the saved key is removed"
    );
    assert!(
        sim.since(t)
            .iter()
            .any(|r| r.key_last4.as_deref() == Some("0002")),
        "the new key was checked at once"
    );
    d.wait_log("replaces the key saved by `activate`");
}

/// SPEC "Which key is in force": key A configured, key B activated through
/// the socket. The daemon, `update download` and `doctor` all use B.
#[test]
fn the_daemon_update_download_and_doctor_agree_on_the_key() {
    let (sim, env, _d) = active_daemon(|_| {});
    let body = format!("{{\"license_key\": \"{}\"}}", keys::NO_UPDATES);
    let r = env.post("/v1/activate", Some(&body));
    if r.status == 403 {
        eprintln!("skipping: not root, activation is refused as it should be");
        return;
    }
    assert_eq!(r.status, 200, "{}", r.text());
    // The daemon: B.
    assert_eq!(env.status()["license"]["key"], "WISP-****0005");

    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wispanel-license"));
        cmd.arg("--config").arg(&env.config).args(args);
        for v in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env_remove(v);
        }
        cmd.env_remove("WISPANEL_LICENSE_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap()
    };

    // `update download`: the portal sees B (which has no updates: refused).
    let out_dir = env.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let t = wispanel_license::clock::now();
    let out = run(&["update", "download", "--dir", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let asked = sim.since(t);
    assert!(!asked.is_empty(), "update download asked the portal");
    for r in &asked {
        assert_eq!(r.key_last4.as_deref(), Some("0005"), "{r:?}");
    }

    // `doctor`: reports B.
    let out = run(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "licence key")
        .unwrap_or_else(|| panic!("no licence key check: {v}"));
    let found = key["found"].as_str().unwrap();
    assert!(
        found.starts_with("WISP-****0005 saved by `activate`"),
        "{found}"
    );
    assert!(
        found.contains("over the configured WISP-****SA6T"),
        "{found}"
    );
}
