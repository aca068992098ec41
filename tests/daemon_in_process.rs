//! Daemon behaviours that need no process, moved from `daemon.rs` onto the
//! harness (`wispanel_license::testing`): in-process under paused time, the
//! portal simulator through the real client. A changed hardware_id (with and
//! without a reload), a corrupt state.json.

use serde_json::Value;
use wispanel_license::testing::*;
use wispanel_portal_sim::{self as sim, Endpoint, Outage, SimHandle, SimOptions, keys};

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
