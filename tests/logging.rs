//! The daemon's log outside the journal: plain lines on stderr, no ANSI
//! colour when stderr is not a terminal, the journal's fields as
//! `wispanel_*=` and never the key; `$JOURNAL_STREAM` counts only when it
//! names our stderr. And the journal catalog explains every `MESSAGE_ID`.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use wispanel_license::logging::ids;

/// A daemon that goes from active to expired, its stderr in a file.
fn run_to_expired(vars: &[(&str, String)], env: &Env, sim: &Sim) -> String {
    let mut d = Daemon::spawn(env, vars);
    d.wait_ready(env);
    env.wait_state("active");
    sim.h
        .set_license(keys::GOOD, wispanel_portal_sim::LicenseBehaviour::Expired);
    env.post("/v1/check", None);
    env.wait_state("expired");
    d.stop();
    d.log()
}

#[test]
fn a_log_file_gets_plain_lines_without_colour_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::new(Conf::for_sim(&sim.h, Some(keys::GOOD)));
    // Inherited from a unit whose stderr the caller redirected: not ours.
    let log = run_to_expired(&[("JOURNAL_STREAM", "1:1".into())], &env, &sim);
    assert!(!log.contains('\x1b'), "ANSI escape in a log file:\n{log}");
    assert!(
        !log.contains("<6>"),
        "journal stream prefixes in a file:\n{log}"
    );
    assert!(!log.contains(keys::GOOD), "the key reached the log:\n{log}");
    assert!(!log.contains("message_id"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("licence state changed from active to expired"))
        .unwrap_or_else(|| panic!("no state change line:\n{log}"));
    assert!(line.contains("INFO") || line.contains("WARN"), "{line}");
    assert!(
        line.contains("wispanel_license_state=expired")
            && line.contains("wispanel_portal_code=\"EXPIRED\""),
        "{line}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("licence state changed"))
            .count(),
        2,
        "one line per event (unknown -> active -> expired):\n{log}"
    );
}

/// `$JOURNAL_STREAM` naming our stderr means journald's stream: without a
/// journal socket to talk to (as on a build machine), the lines carry their
/// syslog priority for journald instead, and say why.
#[test]
fn journal_stream_that_names_stderr_is_honoured() {
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("SKIP: a journal runs here; the events would go to it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::new(Conf::for_sim(&sim.h, Some(keys::GOOD)));
    let log_path = env.path().join("stream.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wispanel-licensed"))
        .arg("--config")
        .arg(&env.config)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("RUST_LOG", "info")
        .env("NO_PROXY", "*")
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ready = poll_until(WAIT, "ready in the log", || {
        let l = read();
        l.contains("ready").then_some(l)
    });
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    assert!(ready.lines().all(|l| l.starts_with('<')), "{ready}");
    assert!(ready.contains("cannot reach the journal socket"), "{ready}");
    assert!(ready.lines().any(|l| l.starts_with("<6>")), "{ready}");
    assert!(!read().contains('\x1b'), "{}", read());
}

#[test]
fn the_catalog_explains_every_message_id() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/wispanel-license.catalog"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let entries: Vec<&str> = text.split("\n-- ").skip(1).collect();
    assert_eq!(entries.len(), ids::ALL.len(), "one entry per MESSAGE_ID");
    for (name, id) in ids::ALL {
        let entry = entries
            .iter()
            .find(|e| e.starts_with(id))
            .unwrap_or_else(|| panic!("{name}: no catalog entry for {id}"));
        for header in ["Subject: ", "Defined-By: wispanel-license", "Support: "] {
            assert!(entry.contains(header), "{name}: no {header:?}");
        }
        assert!(entry.contains("What to do"), "{name}: no advice");
    }
}
