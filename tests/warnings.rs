//! Warnings end to end: the `warnings` list in the status document, the
//! `wispanel_license_warning` metrics, the CLI's exit code and advice, and
//! the metrics textfile, against the real daemon (in-process,
//! `common::Served`; the CLI is the binary) and the portal simulator.

mod common;

use common::{Conf, Env, Sim, WAIT, keys, poll_until};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
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

/// The value of one series of `/metrics`.
fn series(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
}

/// Opens `GET /v1/events`.
fn events(env: &Env) -> UnixStream {
    let mut s = UnixStream::connect(&env.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    s
}

/// Reads the stream until `n` `status` events are in; returns them all.
fn read_events(s: &mut UnixStream, buf: &mut Vec<u8>, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(buf).into_owned();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter(|block| block.lines().any(|l| l == "event: status"))
            .filter_map(|block| {
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                serde_json::from_str(&data.join("\n")).ok()
            })
            .collect();
        if events.len() >= n {
            return events;
        }
        assert!(
            start.elapsed() < WAIT,
            "only {} events: {text}",
            events.len()
        );
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk) {
            Ok(0) => panic!("the event stream closed: {text}"),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
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
    let _d = env.serve();
    let doc = env.wait_state("active");
    assert_eq!(codes(&doc), vec!["expiring_soon"], "{doc:#}");
    let w = &doc["warnings"][0];
    assert_eq!(w["at"], doc["license"]["expires_at"]);
    let message = w["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("the licence expires on "), "{message}");
    assert!(message.ends_with(" days)"), "{message}");

    let m = env.get("/metrics").text();
    for c in [
        "grace_ending",
        "state_not_saved",
        "hardware_changed",
        "activation_in_doubt",
        "clock_skew",
        "updates_expired",
    ] {
        let name = format!("wispanel_license_warning{{code=\"{c}\"}}");
        assert_eq!(series(&m, &name).as_deref(), Some("0"), "{name}\n{m}");
    }
    assert_eq!(
        series(&m, "wispanel_license_warning{code=\"expiring_soon\"}").as_deref(),
        Some("1"),
        "{m}"
    );
    let grace_until = common::ts(&doc["license"]["grace_until"]).expect("grace_until");
    assert_eq!(
        series(&m, "wispanel_license_grace_until_timestamp_seconds"),
        Some(grace_until.unix_secs().to_string())
    );

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
    let _d = env.serve();
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

#[test]
fn warn_before_expiry_is_reloaded_and_a_change_of_warnings_is_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let sim = expiring_in_10_days(dir.path());
    let mut env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let d = env.serve();
    env.wait_status("the update check", |s| s["update"]["state"] == "available");
    let mut stream = events(&env);
    let mut buf = Vec::new();
    let ev = read_events(&mut stream, &mut buf, 1);
    assert_eq!(codes(&ev[0]), vec!["expiring_soon"]);

    // 5 days: the licence is no longer "soon". Nothing else changes, yet
    // the change of warnings is announced.
    env.conf.extra = "warn_before_expiry = \"5d\"\n".into();
    env.write_config();
    d.reload();
    let ev = read_events(&mut stream, &mut buf, 2);
    assert_eq!(codes(&ev[1]), Vec::<String>::new(), "{:#}", ev[1]);
    assert_eq!(ev[1]["license"]["state"], "active");
    assert_eq!(ev[1]["update"]["state"], "available");
    let o = cli(&env, &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(!out(&o).contains("What to do"), "{}", out(&o));

    // "0s" never warns, whatever the date.
    env.conf.extra = "warn_before_expiry = \"0s\"\n".into();
    env.write_config();
    assert!(d.stop().is_ok());
    let _d = env.serve();
    let doc = env.wait_state("active");
    assert_eq!(codes(&doc), Vec::<String>::new());
}

/// The shutdown (what SIGTERM starts; asked for in-process here) leaves no
/// temporary file behind.
#[test]
fn the_metrics_textfile_is_written_readable_and_left_clean_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let sim = expiring_in_10_days(dir.path());
    let textdir = dir.path().join("node-exporter");
    std::fs::create_dir(&textdir).unwrap();
    // A temporary file that a crashed daemon left behind.
    std::fs::write(textdir.join(".wispanel_license.prom.tmp-999999"), "half").unwrap();
    let file = textdir.join("wispanel_license.prom");
    let mut conf = Conf::for_sim(&sim, Some(keys::GOOD));
    conf.extra = format!("metrics_textfile = \"{}\"\n", file.display());
    let env = Env::in_dir(dir, conf);
    let d = env.serve();
    env.wait_status("the update check", |s| s["update"]["state"] == "available");
    // The file says what /metrics says (both may move on in between: wait
    // until they agree), except the open connections: the request for
    // /metrics is one of them.
    let without_open = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("wispanel_license_socket_connections "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let text = poll_until(WAIT, "the textfile to equal /metrics", || {
        let m = env.get("/metrics").text();
        (without_open(&std::fs::read_to_string(&file).ok()?) == without_open(&m)).then_some(m)
    });
    assert!(text.contains("wispanel_license_warning{code=\"expiring_soon\"} 1"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "readable by node_exporter's user");
    assert!(d.stop().is_ok());
    let names: Vec<String> = std::fs::read_dir(&textdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["wispanel_license.prom"], "no temporary file");
}

#[test]
fn a_missing_textfile_directory_is_logged_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let file = dir.path().join("no-such-dir").join("wispanel_license.prom");
    let mut conf = Conf::for_sim(&sim, Some(keys::GOOD));
    conf.extra = format!("metrics_textfile = \"{}\"\n", file.display());
    let env = Env::in_dir(dir, conf);
    let d = env.serve();
    env.wait_state("active");
    let log = d.wait_log("does not exist");
    assert!(log.contains(&file.display().to_string()), "{log}");
    assert_eq!(env.get("/v1/health").status, 200);
    assert!(d.stop().is_ok());
}

#[test]
fn an_activation_in_doubt_is_a_warning_whatever_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    // Every answer is a 503: the first activate may have taken a seat.
    sim.set_outage(Some(Outage::Status(503)));
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.serve();
    let doc = env.wait_status("an activation in doubt", |s| {
        s["portal"]["activation_in_doubt"] == true
    });
    assert_eq!(doc["license"]["state"], "unknown");
    assert!(
        codes(&doc).contains(&"activation_in_doubt".to_string()),
        "{doc:#}"
    );
    let m = env.get("/metrics").text();
    assert_eq!(
        series(&m, "wispanel_license_warning{code=\"activation_in_doubt\"}").as_deref(),
        Some("1"),
        "{m}"
    );
    // Unknown stays 3; the first line still names the warning.
    let o = cli(&env, &["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains("unknown") && l.contains("activation_in_doubt")),
        "{text}"
    );
    sim.set_outage(None);
}

#[test]
fn a_portal_clock_two_minutes_off_is_clock_skew_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    // The portal's clock is 2 minutes behind ours: ours is ahead.
    sim.set_clock_offset(-120);
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.serve();
    let doc = env.wait_state("active");
    assert_eq!(codes(&doc), vec!["clock_skew"], "{doc:#}");
    let message = doc["warnings"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ahead of the portal's"), "{message}");
    let o = cli(&env, &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("timedatectl"), "{}", out(&o));
}

/// Prints a status with a warning (`cargo test --test warnings -- --ignored
/// --nocapture sample`), to look at the output as an administrator sees it.
#[test]
#[ignore]
fn sample_status_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = expiring_in_10_days(dir.path());
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.serve();
    env.wait_state("active");
    let o = cli(&env, &["status"]);
    println!("{}exit status {:?}", out(&o), o.status.code());
}
