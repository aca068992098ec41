//! Daemon behaviours that need no process, moved from `daemon.rs` onto the
//! harness (`wispanel_license::testing`): in-process under paused time, the
//! portal simulator through the real client (or the fake portal). A changed
//! hardware_id (with and without a reload), a corrupt state.json, grace then
//! lapse, reloads (good, bad, a new configured key over the activated one),
//! the key in force for the daemon, `update download` and `doctor`, a full
//! disk. What needs a process (signals, systemd's variables, kill -9) stays
//! in `daemon.rs`.

use serde_json::Value;
use wispanel_license::daemon::status_line;
use wispanel_license::testing::*;
use wispanel_portal_sim::{
    self as sim, Endpoint, LicenseTerms, Outage, SimHandle, SimOptions, keys,
};

const HWID2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// The simulator (HTTPS) and a harness on it (key GOOD, the quick schedule).
async fn on_sim() -> (SimHandle, Harness, tempfile::TempDir) {
    let ca = tempfile::tempdir().expect("a temporary directory");
    let sim = sim::start(SimOptions::https(ca.path().join("ca.pem")))
        .await
        .expect("the simulator");
    let mut h = Harness::real_portal(FAST, wispanel_license::clock::now(), &sim.base_url);
    if let Some(pem) = &sim.ca_pem_path {
        h.add_config(&format!("ca_file = \"{}\"", pem.display()));
    }
    (sim, h, ca)
}

async fn first_update_check(h: &Harness) {
    h.wait_status("the first update check", secs(60), |s| {
        s["license"]["state"] == "active" && s["update"]["state"] == "available"
    })
    .await;
}

fn asks_for(sim: &SimHandle, endpoint: Endpoint, hwid: &str) -> Vec<Option<u16>> {
    sim.requests()
        .into_iter()
        .filter(|r| {
            r.endpoint == endpoint && r.body.as_ref().is_some_and(|b| b["hardware_id"] == hwid)
        })
        .map(|r| r.status)
        .collect()
}

/// A new hardware_id (id_file rewritten, then a reload): hardware_changed
/// while the portal is away, then a new activation for the new id at once.
#[tokio::test(start_paused = true)]
async fn hardware_id_change_checks_at_once() {
    let (_guard, logs) = capture_logs();
    let (sim, h, _ca) = on_sim().await;
    let d = h.start(1);
    first_update_check(&h).await;
    sim.set_outage(Some(Outage::Status(500)));
    std::fs::write(h.hwid_file(), format!("{HWID2}\n")).expect("the id file");
    d.reload();
    // validate_interval is 30 s: a request for the new id within a second
    // (paused time, exact) is "at once".
    pass(secs(1)).await;
    assert_eq!(
        asks_for(&sim, Endpoint::Activate, HWID2).first(),
        Some(&Some(500)),
        "a request for the new id: {:?}",
        sim.requests()
    );
    // The failed request leaves the old verdict standing (grace), and the
    // status says the id changed.
    let s = h
        .wait_status("hardware_changed after the failed request", secs(5), |s| {
            s["hardware_changed"] == true && s["portal"]["last_error"]["http_status"] == 500
        })
        .await;
    assert_eq!(s["hardware_id"], HWID2);
    assert_eq!(
        s["license"]["state"], "grace",
        "the old verdict stands: {s:#}"
    );
    assert!(logs.contains("hardware_id changed"), "{}", logs.text());
    sim.set_outage(None);
    let s = h
        .wait_status("active on the new id", secs(120), |s| {
            s["hardware_changed"] == false && s["license"]["state"] == "active"
        })
        .await;
    assert_eq!(s["hardware_id"], HWID2);
    let mut act = sim.activations(keys::GOOD);
    act.sort();
    let mut want = vec![HWID.to_string(), HWID2.to_string()];
    want.sort();
    assert_eq!(act, want);
    d.stop().await;
    sim.shutdown().await;
}

/// Without a reload: the status shows the id computed now, and a change is
/// checked at once.
#[tokio::test(start_paused = true)]
async fn hardware_id_change_is_seen_by_the_status_without_a_reload() {
    let (sim, h, _ca) = on_sim().await;
    let d = h.start(1);
    first_update_check(&h).await;
    std::fs::write(h.hwid_file(), format!("{HWID2}\n")).expect("the id file");
    let s = h
        .wait_status("the new id in the status", secs(10), |s| {
            s["hardware_id"] == HWID2
        })
        .await;
    assert_eq!(s["hardware_id"], HWID2);
    pass(secs(1)).await;
    assert!(
        !asks_for(&sim, Endpoint::Activate, HWID2).is_empty(),
        "a request for the new id at once: {:?}",
        sim.requests()
    );
    let s = h
        .wait_status("active on the new id", secs(60), |s| {
            s["hardware_changed"] == false && s["license"]["state"] == "active"
        })
        .await;
    assert_eq!(s["hardware_id"], HWID2);
    d.stop().await;
    sim.shutdown().await;
}

/// A corrupt state.json is moved aside (named by the daemon's clock) and the
/// daemon starts afresh.
#[tokio::test(start_paused = true)]
async fn corrupt_state_is_moved_aside() {
    let (_guard, logs) = capture_logs();
    let (sim, h, _ca) = on_sim().await;
    std::fs::create_dir_all(h.state_dir()).expect("the state directory");
    let junk = b"{\"schema\": 1, \"licence\": {\"verdict\": ";
    let state_file = h.state_dir().join("state.json");
    std::fs::write(&state_file, junk).expect("state.json");
    let before = h.now().unix_secs();
    let d = h.start(1);
    let s: Value = h.wait_state("active").await;
    assert_eq!(s["license"]["licensed"], true);
    let after = h.now().unix_secs();
    let aside: Vec<_> = std::fs::read_dir(h.state_dir())
        .expect("the state directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let named: i64 = aside[0]["state.json.corrupt-".len()..]
        .parse()
        .expect("unix seconds");
    assert!(
        (before..=after).contains(&named),
        "{named} not in {before}..={after}"
    );
    assert_eq!(
        std::fs::read(h.state_dir().join(&aside[0])).expect("the file moved aside"),
        junk
    );
    assert!(logs.contains("moved aside"), "{}", logs.text());
    h.wait_saved("a new state.json", secs(60), |_| true).await;
    d.stop().await;
    sim.shutdown().await;
}

/// Lets paused time pass a second at a time until a log line contains
/// `what`, for at most `max`; gives the log.
async fn wait_log(logs: &Logs, what: &str, max: std::time::Duration) -> String {
    let until = tokio::time::Instant::now() + max;
    loop {
        settle().await;
        if logs.contains(what) {
            return logs.text();
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no {what:?} in the log within {max:?}:\n{}",
            logs.text()
        );
        pass(secs(1)).await;
    }
}

/// The licence requests (activate, validate) the simulator saw after the
/// first `n` requests.
fn licence_requests_after(sim: &SimHandle, n: usize) -> Vec<sim::RecordedRequest> {
    sim.requests()
        .into_iter()
        .skip(n)
        .filter(|r| r.endpoint.is_license())
        .collect()
}

/// active → grace (a non-verdict) → lapsed once valid_until passes;
/// grace_until is kept in lapsed; each change is announced (the log line
/// beside `STATUS=`, whose text `status_line` makes; `STATUS=` itself is
/// checked on a process in `daemon.rs`); the portal back, active again.
#[tokio::test(start_paused = true)]
async fn grace_then_lapse() {
    let (_guard, logs) = capture_logs();
    let (sim, h, _ca) = on_sim().await;
    sim.set_terms(LicenseTerms {
        valid_for_secs: 8,
        ..LicenseTerms::default()
    });
    let d = h.start(1);
    let active = h.wait_state("active").await;
    let grace_until = ts(&active["license"]["grace_until"]).expect("grace_until while active");
    assert_eq!(
        active["license"]["grace_until"], active["license"]["valid_until"],
        "grace ends at the portal's valid_until"
    );
    assert!(status_line(&h.status().await).starts_with("licence active"));

    sim.set_outage(Some(Outage::Status(503)));
    let r = h
        .request("POST", "/v1/check", None)
        .await
        .expect("an answer");
    assert_eq!(r.status, 200, "a failed check still answers the document");
    let s: Value = serde_json::from_slice(&r.body).expect("JSON");
    // Paused time: the check took none, so the grace has not ended.
    assert!(h.now() < grace_until);
    assert_eq!(s["license"]["state"], "grace", "{s:#}");
    assert_eq!(s["license"]["licensed"], true);
    assert_eq!(
        s["license"]["grace_until"],
        active["license"]["grace_until"]
    );
    assert_eq!(s["portal"]["last_error"]["kind"], "http");
    assert_eq!(s["portal"]["last_error"]["http_status"], 503);
    assert!(status_line(&h.status().await).starts_with("licence grace"));
    assert!(
        logs.contains("licence state changed from active to grace"),
        "{}",
        logs.text()
    );

    let lapsed = h.wait_state("lapsed").await;
    assert!(h.now() >= grace_until);
    assert_eq!(lapsed["license"]["licensed"], false);
    assert_eq!(
        lapsed["license"]["grace_until"], active["license"]["grace_until"],
        "grace_until stays set in lapsed"
    );
    assert!(status_line(&h.status().await).starts_with("licence lapsed"));
    assert!(
        logs.contains("licence state changed from grace to lapsed"),
        "{}",
        logs.text()
    );
    // The portal comes back: active again.
    sim.set_outage(None);
    h.wait_state("active").await;
    d.stop().await;
    sim.shutdown().await;
}

/// A reload (what SIGHUP asks for; the signal itself is checked on a
/// process in `daemon.rs`) with a changed key checks at once; socket_path
/// changes wait for a restart; a broken file is logged and the old
/// configuration kept, the daemon still answering, no licence request made.
#[tokio::test(start_paused = true)]
async fn reload_good_and_bad() {
    let (_guard, logs) = capture_logs();
    let (sim, mut h, _ca) = on_sim().await;
    let d = h.start(1);
    h.wait_state("active").await;
    h.set_key(Some(keys::NO_UPDATES));
    d.reload();
    let s = h
        .wait_status("the new key active", secs(60), |s| {
            s["license"]["key"] == "WISP-****0005" && s["license"]["state"] == "active"
        })
        .await;
    assert_eq!(s["license"]["state"], "active");
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.endpoint == Endpoint::Activate && r.key_last4.as_deref() == Some("0005")),
        "the new key was not activated"
    );
    wait_log(&logs, "configuration reloaded", secs(5)).await;

    // socket_path and state_dir changes wait for a restart.
    let moved = h.path().join("elsewhere.sock");
    let text = h.config_text().replace(
        &format!("socket_path = \"{}\"", h.socket_path().display()),
        &format!("socket_path = \"{}\"", moved.display()),
    );
    assert_ne!(text, h.config_text());
    std::fs::write(h.config_path(), text).expect("the configuration");
    d.reload();
    wait_log(&logs, "need a restart", secs(5)).await;
    assert!(!moved.exists(), "the socket moved without a restart");
    assert_eq!(h.status_json().await["license"]["state"], "active");

    std::fs::write(h.config_path(), "license_key = [this is not toml\n").expect("the file");
    let n = sim.requests().len();
    d.reload();
    let log = wait_log(&logs, "configuration reload failed", secs(5)).await;
    assert!(log.contains("license.toml"), "the error names the file");
    let s = h.status_json().await;
    assert_eq!(
        s["license"]["key"], "WISP-****0005",
        "the old configuration is kept"
    );
    assert_eq!(s["license"]["state"], "active");
    let health = h.request("GET", "/v1/health", None).await.expect("health");
    assert_eq!(
        (
            health.status,
            serde_json::from_slice::<Value>(&health.body).expect("JSON")
        ),
        (200, serde_json::json!({"ok": true}))
    );
    // validate_interval is 30 s: 5 s without a licence request.
    pass(secs(5)).await;
    let licence = licence_requests_after(&sim, n);
    assert!(
        licence.is_empty(),
        "a failed reload made a licence request: {licence:?}"
    );
    d.stop().await;
    sim.shutdown().await;
}

/// Whether this test runs as root (activation through the socket needs it;
/// so does mounting a tmpfs).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `POST /v1/activate` of the NO_UPDATES key through the socket: true once
/// activated; false (the test is skipped) when not root, where the socket
/// refuses it as it should.
async fn activate_no_updates(h: &Harness) -> bool {
    let body = format!("{{\"license_key\": \"{}\"}}", keys::NO_UPDATES);
    let r = h
        .request("POST", "/v1/activate", Some(&body))
        .await
        .expect("an answer");
    if r.status == 403 {
        assert!(!is_root(), "root was refused the activation");
        eprintln!("skipping: not root, activation is refused as it should be");
        return false;
    }
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    true
}

/// A key saved by `activate` is in force until the configuration names
/// another key; then the configured key replaces it, and it is checked at once.
#[tokio::test(start_paused = true)]
async fn a_new_configured_key_replaces_the_activated_one() {
    let (_guard, logs) = capture_logs();
    let (sim, mut h, _ca) = on_sim().await;
    let d = h.start(1);
    h.wait_state("active").await;
    if !activate_no_updates(&h).await {
        return;
    }
    assert_eq!(h.status_json().await["license"]["key"], "WISP-****0005");
    assert!(h.state_dir().join("license.key").exists());
    // A reload with the same configuration keeps the activated key.
    d.reload();
    wait_log(&logs, "configuration reloaded", secs(5)).await;
    assert_eq!(h.status_json().await["license"]["key"], "WISP-****0005");
    // The configuration now names another key.
    h.set_key(Some(keys::SUSPENDED));
    let n = sim.requests().len();
    d.reload();
    let s = h.wait_state("suspended").await;
    assert_eq!(s["license"]["key"], "WISP-****0002");
    assert!(
        !h.state_dir().join("license.key").exists(),
        "the saved key is removed"
    );
    assert!(
        licence_requests_after(&sim, n)
            .iter()
            .any(|r| r.key_last4.as_deref() == Some("0002")),
        "the new key was checked at once"
    );
    wait_log(&logs, "replaces the key saved by `activate`", secs(5)).await;
    d.stop().await;
    sim.shutdown().await;
}

/// SPEC "Which key is in force": key A configured, key B activated through
/// the socket. The daemon, `update download` and `doctor` (the CLI's
/// processes, while the daemon runs here) all use B.
#[tokio::test(start_paused = true)]
async fn the_daemon_update_download_and_doctor_agree_on_the_key() {
    let (sim, h, _ca) = on_sim().await;
    let d = h.start(1);
    h.wait_state("active").await;
    if !activate_no_updates(&h).await {
        return;
    }
    // The daemon: B.
    assert_eq!(h.status_json().await["license"]["key"], "WISP-****0005");

    // The CLI runs on a blocking thread: the daemon and the simulator go on
    // serving on this runtime meanwhile, and paused time stands still.
    let config = h.config_path().to_path_buf();
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wispanel-license"));
        cmd.arg("--config").arg(&config).args(args);
        for v in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env_remove(v);
        }
        cmd.env_remove("WISPANEL_LICENSE_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY");
        tokio::task::spawn_blocking(move || cmd.output().expect("the CLI runs"))
    };

    // `update download`: the portal sees B (which has no updates: refused).
    let out_dir = h.path().join("out");
    std::fs::create_dir(&out_dir).expect("the download directory");
    let n = sim.requests().len();
    let out = run(&[
        "update",
        "download",
        "--dir",
        out_dir.to_str().expect("UTF-8"),
    ])
    .await
    .expect("the CLI's thread");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let asked: Vec<_> = sim.requests().into_iter().skip(n).collect();
    assert!(!asked.is_empty(), "update download asked the portal");
    for r in &asked {
        assert_eq!(r.key_last4.as_deref(), Some("0005"), "{r:?}");
    }

    // `doctor`: reports B.
    let out = run(&["doctor", "--json"]).await.expect("the CLI's thread");
    let v: Value = serde_json::from_slice(&out.stdout).expect("doctor's JSON");
    let key = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "licence key")
        .unwrap_or_else(|| panic!("no licence key check: {v}"));
    let found = key["found"].as_str().expect("found");
    assert!(
        found.starts_with("WISP-****0005 saved by `activate`"),
        "{found}"
    );
    assert!(
        found.contains("over the configured WISP-****SA6T"),
        "{found}"
    );
    d.stop().await;
    sim.shutdown().await;
}

/// A 64 KiB tmpfs mounted on a directory; unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` where `mount -t tmpfs` does not work (not root, a container).
    fn mount(at: &std::path::Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("the mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

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
#[tokio::test(start_paused = true)]
async fn disk_full_is_logged_and_daemon_keeps_serving() {
    if !is_root() {
        eprintln!("SKIP disk_full: needs root to mount a tmpfs");
        return;
    }
    let (_guard, logs) = capture_logs();
    let h = Harness::new(FAST, |_, _| Reply::Valid);
    let Some(_tmpfs) = Tmpfs::mount(&h.state_dir()) else {
        eprintln!("SKIP disk_full: `mount -t tmpfs` does not work here");
        return;
    };
    let d = h.start(1);
    h.wait_state("active").await;
    h.wait_saved("state.json", secs(60), |_| true).await;
    // Fill the file system.
    let filler = h.state_dir().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("the filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    h.portal()
        .set_script(|_, _| Reply::Status(503, vec![], "unavailable"));
    let r = h
        .request("POST", "/v1/check", None)
        .await
        .expect("an answer");
    assert_eq!(r.status, 200);
    wait_log(&logs, "CANNOT SAVE THE STATE", secs(60)).await;
    let s = h.status_json().await;
    assert_eq!(s["license"]["state"], "grace", "served from memory");
    let health = h.request("GET", "/v1/health", None).await.expect("health");
    assert_eq!(health.status, 200);
    // state.json is still the old, readable one.
    assert!(!h.saved_core().licence.failing);
    std::fs::remove_file(&filler).expect("the filler");
    wait_log(&logs, "the state is saved again", secs(600)).await;
    let core = h.saved_core();
    assert!(core.licence.failing, "the newer state reached the disk");
    d.stop().await;
}

/// A reload whose configuration names another key logs the key in force
/// when it changes (compared with the key in force before the reload), and
/// the next request is made with the new key at once.
#[tokio::test(start_paused = true)]
async fn a_reloaded_key_is_logged_and_used_at_once() {
    let (_guard, logs) = capture_logs();
    let mut h = Harness::new(FAST, |_, _| Reply::Valid);
    let d = h.start(1);
    h.wait_state("active").await;
    assert!(
        logs.contains("licence key in force: WISP-****SA6T"),
        "{}",
        logs.text()
    );
    let before = h.portal().requests().len();
    h.set_key(Some(keys::NO_UPDATES));
    d.reload();
    pass(secs(1)).await;
    assert!(
        logs.contains("licence key in force: WISP-****0005"),
        "the new key in force is logged: {}",
        logs.text()
    );
    let after: Vec<_> = h.portal().requests().into_iter().skip(before).collect();
    assert!(
        after
            .iter()
            .any(|r| r.body.to_string().contains(keys::NO_UPDATES)),
        "a request with the new key within a second: {after:?}"
    );
    let s = h.status_json().await;
    assert_eq!(s["license"]["key"], "WISP-****0005", "{s:#}");
    d.stop().await;
}
