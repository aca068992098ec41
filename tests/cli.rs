//! `wispanel-license` (the binary) against a real daemon (in-process,
//! `common::Served`, on the simulator) in each state: output, `--json`, and
//! the monitoring-plugin exit codes of SPEC.

mod common;

use common::{Conf, Env, Sim, keys};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use wispanel_portal_sim::{LicenseBehaviour, Outage};

fn cli(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wispanel-license"))
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `cmd` with `input` on its standard input.
fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn cli_stdin(env: &Env, args: &[&str], input: &str) -> Output {
    run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_wispanel-license"))
            .arg("--config")
            .arg(&env.config)
            .args(args),
        input,
    )
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

#[test]
fn status_in_each_state_with_plugin_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    // unconfigured → 2, with advice.
    let env = Env::new(Conf::for_sim(&sim, None));
    let _d = env.serve();
    let o = cli(&env, &["status"]);
    assert_eq!(code(&o), 2, "{}", out(&o));
    assert!(out(&o).contains("unconfigured"), "{}", out(&o));
    assert!(out(&o).contains("wispanel-license activate"), "{}", out(&o));
    // --json prints the daemon's document unchanged.
    let o = cli(&env, &["--json", "status"]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc, env.status());

    // active → 0.
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.serve();
    env.wait_state("active");
    let o = cli(&env, &["status"]);
    assert_eq!(code(&o), 0, "{}{}", out(&o), err(&o));
    let text = out(&o);
    for want in [
        "active (licensed)",
        "WISP-****SA6T",
        "tier pro",
        "30 users",
        "unlimited databases",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    assert!(!text.contains(keys::GOOD), "the full key never prints");

    // grace → 1.
    sim.set_outage(Some(Outage::Status(503)));
    let o = cli(&env, &["check"]);
    assert_eq!(code(&o), 1, "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("grace"), "{}", out(&o));
    assert!(out(&o).contains("wispanel-license doctor"), "{}", out(&o));
    sim.set_outage(None);
}

#[test]
fn refusal_states_exit_2_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    for (key, state, hint) in [
        (keys::EXPIRED, "expired", "Renew"),
        (keys::REVOKED, "revoked", "revoked"),
        (keys::SUSPENDED, "suspended", "support"),
        (
            "WISP-NOPE-0000-0000",
            "invalid_key",
            "does not know this key",
        ),
    ] {
        let env = Env::new(Conf::for_sim(&sim, Some(key)));
        let _d = env.serve();
        env.wait_state(state);
        let o = cli(&env, &["status"]);
        assert_eq!(code(&o), 2, "{key}: {}", out(&o));
        assert!(out(&o).contains(state), "{key}: {}", out(&o));
        assert!(out(&o).contains(hint), "{key}: {}", out(&o));
    }
}

#[test]
fn hardware_mismatch_says_how_to_rebind() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.serve();
    env.wait_state("active");
    sim.set_license(keys::GOOD, LicenseBehaviour::HardwareMismatch);
    let o = cli(&env, &["check"]);
    assert_eq!(code(&o), 2, "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(text.contains("hardware_mismatch"), "{text}");
    assert!(text.contains("bound to other hardware"), "{text}");
    assert!(text.contains("deactivate"), "{text}");
}

#[test]
fn unreachable_daemon_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    for args in [
        &["status"][..],
        &["check"],
        &["deactivate"],
        &["update", "check"],
    ] {
        let o = cli(&env, args);
        assert_eq!(code(&o), 3, "{args:?}: {}", err(&o));
        assert!(
            err(&o).contains("is wispanel-licensed running"),
            "{}",
            err(&o)
        );
    }
}

#[test]
fn check_without_key_and_with_a_closed_gate() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::new(Conf::for_sim(&sim, None));
    let _d = env.serve();
    let o = cli(&env, &["check"]);
    assert_eq!(code(&o), 2, "no key: the unconfigured state's code");
    assert!(err(&o).contains("no licence key"), "{}", err(&o));

    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.serve();
    // The first update check follows the activation: were it to meet the
    // 429, it would close the gate before the licence check below.
    env.wait_status("active and the first update check", |s| {
        s["license"]["state"] == "active" && s["update"]["state"] == "available"
    });
    sim.set_outage(Some(Outage::RateLimit {
        retry_after: Some("60".into()),
    }));
    // This check meets the 429 and closes the gate (its own exit status is
    // whatever the state is then); wait until the daemon reports the gate.
    cli(&env, &["check"]);
    env.wait_status("gate closed", |s| {
        !s["portal"]["rate_limited_until"].is_null()
    });
    let before = sim.count();
    let o = cli(&env, &["check"]);
    assert_eq!(
        code(&o),
        1,
        "grace (licensed, degraded): {}{}",
        out(&o),
        err(&o)
    );
    assert!(err(&o).contains("next check may run in"), "{}", err(&o));
    assert_eq!(sim.count(), before, "no request while the gate is closed");
    sim.set_outage(None);
}

#[test]
fn activate_reads_the_key_from_stdin_and_deactivate_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::new(Conf::for_sim(&sim, None));
    let _d = env.serve();
    // Tests run as root here; elsewhere the daemon refuses (403) and the CLI exits 1.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let o = cli_stdin(&env, &["activate"], &format!("{}\n", keys::GOOD));
    if !root {
        assert_eq!(code(&o), 1, "{}", err(&o));
        eprintln!("skipping the rest: not root, activation is refused as it should be");
        return;
    }
    assert_eq!(code(&o), 0, "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("active"), "{}", out(&o));
    assert!(!out(&o).contains(keys::GOOD));
    // A refused key: exit 1, the portal's code named, the licence kept.
    let o = cli_stdin(&env, &["activate", "-"], keys::REVOKED);
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(err(&o).contains("REVOKED"), "{}", err(&o));
    assert_eq!(env.status()["license"]["state"], "active");
    // A malformed key is a usage error, caught before the daemon.
    let o = cli(&env, &["activate", "not-a-key"]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    let o = cli(&env, &["deactivate"]);
    assert_eq!(code(&o), 0, "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("unconfigured"), "{}", out(&o));
    let o = cli(&env, &["deactivate"]);
    assert_eq!(code(&o), 1, "nothing left to release: {}", err(&o));
}

#[test]
fn update_check_shows_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.serve();
    env.wait_status("update checked", |s| s["update"]["state"] == "available");
    let o = cli(&env, &["update", "check"]);
    assert_eq!(code(&o), 0, "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("1.5.0 available (running 1.4.2)"),
        "{}",
        out(&o)
    );
    let o = cli(&env, &["--json", "update", "check"]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["update"]["latest_version"], "1.5.0");
}

#[test]
fn metrics_pass_promtool_when_it_is_installed() {
    let Ok(which) = Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
    else {
        return;
    };
    if !which.status.success() {
        eprintln!("skipping: promtool is not installed (CI installs Debian's prometheus package)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::new(Conf::for_sim(&sim, Some(keys::GOOD)));
    let _d = env.serve();
    env.wait_state("active");
    let text = env.get("/metrics").text();
    let o = run_with_stdin(Command::new("promtool").args(["check", "metrics"]), &text);
    assert!(
        o.status.success(),
        "promtool: {}{}\n{text}",
        out(&o),
        err(&o)
    );
}
