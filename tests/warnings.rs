//! Warnings end to end: the `warnings` list in the status document, the
//! `wispanel_license_warning` metrics, the CLI's exit code and advice, and
//! the metrics textfile, against the real daemon and the portal simulator.

mod common;

use common::{Conf, Env, Sim, keys};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use wispanel_portal_sim::{LicenseTerms, Outage};

fn cli(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wispanel-license"))
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn codes(doc: &Value) -> Vec<String> {
    doc["warnings"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn expiring_in_10_days(dir: &std::path::Path) -> Sim {
    let sim = Sim::https(dir);
    sim.set_terms(LicenseTerms {
        expires_in_secs: 10 * 86_400,
        ..LicenseTerms::default()
    });
    sim
}

#[test]
fn an_active_licence_expiring_soon_warns_everywhere_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let sim = expiring_in_10_days(dir.path());
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.start();
    let doc = env.wait_state("active");
    assert_eq!(codes(&doc), vec!["expiring_soon"], "{doc:#}");
    let w = &doc["warnings"][0];
    assert_eq!(w["at"], doc["license"]["expires_at"]);
    let message = w["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("the licence expires on "), "{message}");
    assert!(message.ends_with(" days)"), "{message}");

    let o = cli(&env, &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.contains("active (licensed)")
            && first.contains("expiring_soon")
            && first.contains(message),
        "first line: {first}"
    );
    assert!(text.contains("What to do:"), "{text}");
    assert!(text.contains("Renew the licence"), "{text}");
    // --json is the document; its warnings are the daemon's.
    let o = cli(&env, &["--json", "status"]);
    assert_eq!(o.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(codes(&json), vec!["expiring_soon"]);
}

#[test]
fn grace_ending_comes_first_and_check_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let sim = expiring_in_10_days(dir.path());
    // valid_until 12 h ahead: once in grace, less than 24 h are left.
    sim.set_terms(LicenseTerms {
        expires_in_secs: 10 * 86_400,
        valid_for_secs: 12 * 3600,
        ..LicenseTerms::default()
    });
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.start();
    env.wait_state("active");
    sim.set_outage(Some(Outage::Status(503)));
    let o = cli(&env, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let doc = env.wait_state("grace");
    assert_eq!(
        codes(&doc),
        vec!["grace_ending", "expiring_soon"],
        "{doc:#}"
    );
    assert_eq!(doc["warnings"][0]["at"], doc["license"]["grace_until"]);
    let text = out(&o);
    assert!(
        text.lines()
            .next()
            .unwrap_or_default()
            .contains("grace_ending"),
        "{text}"
    );
    assert!(text.contains("Restore this host's access"), "{text}");
    sim.set_outage(None);
}

/// Prints a status with a warning (`cargo test --test warnings -- --ignored
/// --nocapture sample`), to look at the output as an administrator sees it.
#[test]
#[ignore]
fn sample_status_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = expiring_in_10_days(dir.path());
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.start();
    env.wait_state("active");
    let o = cli(&env, &["status"]);
    println!("{}exit status {:?}", out(&o), o.status.code());
}
