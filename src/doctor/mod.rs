//! `wispanel-license doctor`: why licensing fails on this host, found without
//! the daemon (and asking it too when its socket answers).
//!
//! Each group of checks has a pure part, which turns facts into [`Check`]
//! lines and is tested without I/O, and an I/O part that gathers the facts:
//! [`local`] (configuration and key), [`hardware`] (hardware_id sources),
//! [`network`] (proxy, DNS, TCP, TLS, HTTP, clock), [`files`] (state
//! directory), [`daemon`] (socket, daemon), [`unit`](mod@unit) (systemd)
//! and [`key`] (where systemd takes the licence key from). Every network
//! step has its own short timeout and the portal checks as a whole one
//! more, so a black-holed network ends the run in well under 30 s.

pub mod daemon;
pub mod files;
pub mod hardware;
pub mod key;
pub mod local;
pub mod network;
pub mod unit;

use crate::config::resolve_config_path;
use crate::exit;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the diagnosis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// e.g. `configuration`, `portal TLS`.
    pub name: String,
    pub status: Status,
    /// What was found (never a secret or a raw hardware value).
    pub found: String,
    /// What to do about it, when there is something to do.
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(name: &str, found: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, found, None)
    }

    pub fn warn(name: &str, found: impl Into<String>, hint: impl Into<String>) -> Check {
        Check::new(name, Status::Warn, found, Some(hint.into()))
    }

    pub fn fail(name: &str, found: impl Into<String>, hint: impl Into<String>) -> Check {
        Check::new(name, Status::Fail, found, Some(hint.into()))
    }

    pub fn new(
        name: &str,
        status: Status,
        found: impl Into<String>,
        hint: Option<String>,
    ) -> Check {
        Check {
            name: name.to_string(),
            status,
            found: found.into(),
            hint: hint.filter(|h| !h.is_empty()),
        }
    }

    /// `ok    name: found — hint`.
    pub fn line(&self) -> String {
        let mut s = format!("{:<4}  {}: {}", self.status.as_str(), self.name, self.found);
        if let Some(h) = &self.hint {
            s.push_str(" — ");
            s.push_str(h);
        }
        s
    }
}

/// Every check of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

/// Counts by status, for the JSON summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    /// The worst status.
    pub status: Status,
    pub exit_code: u8,
}

impl Report {
    pub fn push(&mut self, c: Check) {
        self.checks.push(c);
    }

    pub fn extend(&mut self, cs: impl IntoIterator<Item = Check>) {
        self.checks.extend(cs);
    }

    /// The worst status of all checks (`Ok` when there are none).
    pub fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// 0 all ok, 1 a warning, 2 a failure.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Status::Ok => exit::OK,
            Status::Warn => exit::DOCTOR_WARN,
            Status::Fail => exit::DOCTOR_FAIL,
        }
    }

    pub fn summary(&self) -> Summary {
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        Summary {
            ok: count(Status::Ok),
            warn: count(Status::Warn),
            fail: count(Status::Fail),
            status: self.worst(),
            exit_code: self.exit_code(),
        }
    }

    /// One line per check, then a closing count.
    pub fn text(&self) -> String {
        let mut o = String::new();
        for c in &self.checks {
            o.push_str(&c.line());
            o.push('\n');
        }
        let s = self.summary();
        o.push_str(&format!(
            "{} ok, {} warning{}, {} failure{}\n",
            s.ok,
            s.warn,
            if s.warn == 1 { "" } else { "s" },
            s.fail,
            if s.fail == 1 { "" } else { "s" },
        ));
        o
    }

    /// The document for a support ticket.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "checks": self.checks,
            "summary": self.summary(),
            "version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// Per-step time limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The name lookup. A real run ([`Options::from_env`]) waits as long as
    /// glibc tries by `/etc/resolv.conf`, plus a second.
    pub dns: Duration,
    pub tcp: Duration,
    /// The proxy's answer to `CONNECT`.
    pub proxy_connect: Duration,
    pub tls: Duration,
    pub http: Duration,
    /// The daemon's answer on the status socket.
    pub socket: Duration,
    /// Each `systemctl` call.
    pub systemctl: Duration,
    /// All portal checks together.
    pub portal_total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            dns: Duration::from_secs(3),
            tcp: Duration::from_secs(3),
            proxy_connect: Duration::from_secs(3),
            tls: Duration::from_secs(5),
            http: Duration::from_secs(5),
            socket: Duration::from_secs(2),
            systemctl: Duration::from_secs(3),
            portal_total: Duration::from_secs(22),
        }
    }
}

/// What the run reads from its surroundings; tests build it by hand.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub timeouts: Timeouts,
    /// Proxy variables (`HTTPS_PROXY`, `NO_PROXY`, …) as set.
    pub proxy_env: crate::net::proxy::ProxyEnv,
    /// `$CREDENTIALS_DIRECTORY`.
    pub credentials_dir: Option<PathBuf>,
    /// Ask systemd about the unit (when it runs here).
    pub systemd: bool,
    /// How the system's resolver tries (`/etc/resolv.conf`).
    pub resolver: network::ResolverTries,
}

impl Options {
    /// The options of a real run: process environment, default timeouts.
    pub fn from_env() -> Options {
        let resolver = network::ResolverTries::parse(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        );
        Options {
            timeouts: Timeouts {
                // As long as glibc tries (10 s by default) and a second more,
                // so that "the resolver does not answer" is glibc's own
                // verdict, not a slow resolver cut short.
                dns: resolver.give_up_after() + Duration::from_secs(1),
                ..Timeouts::default()
            },
            resolver,
            proxy_env: crate::net::proxy::ProxyEnv::from_process(),
            credentials_dir: crate::config::credentials_dir_from_env(),
            systemd: true,
        }
    }
}

/// Runs every check. `config_path` is the configuration file to load,
/// `socket` overrides the configuration's `socket_path`.
pub async fn diagnose(config_path: &Path, socket: Option<&Path>, opts: &Options) -> Report {
    let mut report = Report::default();
    // What a support ticket needs first: the system (sysinfo's look-ups).
    report.push(Check::ok("host", crate::host::collect().describe()));
    let loaded = local::load(config_path, opts.credentials_dir.as_deref());
    report.extend(local::checks(&loaded));
    let config = loaded.config.as_ref();

    // The hardware_id, with the defaults when the configuration did not load.
    let hw = config.map(|c| c.hardware.clone()).unwrap_or_default();
    let hw_facts = hardware::gather(&hw, opts.credentials_dir.as_deref());

    let state_dir = config.map(|c| c.state_dir.clone());
    let state = state_dir.as_deref().map(files::gather_state);
    report.extend(hardware::checks(
        &hw_facts,
        state
            .as_ref()
            .and_then(|s| s.verdict_hardware_id.as_deref()),
    ));

    let sock = crate::config::client_socket_path(socket, config_path, config);
    let portal = async {
        match config {
            Some(c) => network::run(c, opts).await,
            None => vec![Check::fail(
                "portal",
                "not checked",
                "the configuration did not load, so the portal URL, ca_file and proxy are unknown; fix the configuration first",
            )],
        }
    };
    let daemon = daemon::ask_daemon(&sock, opts.timeouts.socket);
    let systemd = async {
        if opts.systemd {
            unit::gather(opts.timeouts.systemctl).await
        } else {
            None
        }
    };
    let key_unit = async {
        if opts.systemd {
            key::gather(opts.timeouts.systemctl).await
        } else {
            None
        }
    };
    let (portal_checks, daemon_facts, unit_facts, key_unit_facts) =
        tokio::join!(portal, daemon, systemd, key_unit);
    report.extend(portal_checks);

    if let Some(st) = &state {
        report.extend(files::state_checks(st, crate::clock::now()));
    }
    let sock_facts = daemon::gather_socket(&sock);
    // Under socket activation the .socket unit sets the mode and group.
    let unit_socket = crate::socket::activation::installed_unit();
    let (want_mode, want_group) =
        crate::socket::activation::expected_mode_group(config, unit_socket.as_ref());
    report.extend(daemon::socket_checks(&sock_facts, want_mode, want_group));
    if let Some(c) = config {
        report.push(Check::ok(
            "socket activation",
            crate::socket::activation::which_applies(c, unit_socket.as_ref()),
        ));
    }
    report.extend(daemon::daemon_checks(&sock, &daemon_facts));
    // The proxy the daemon's requests go through, against this shell's.
    if let (Some(c), daemon::DaemonFacts::Status(v)) = (config, &daemon_facts)
        && let Some(theirs) = v["portal"].get("proxy")
    {
        let own = crate::net::proxy::decide(c.proxy.as_deref(), &opts.proxy_env, &c.portal_url);
        report.extend(network::daemon_proxy_check(theirs.as_str(), &own));
    }
    if let Some(u) = unit_facts {
        report.extend(unit::checks(&u));
    }
    if let Some(k) = key_unit_facts {
        report.extend(key::checks(&k));
    }
    report
}

/// `wispanel-license doctor`: prints the checks (or `--json`) and exits 0
/// when all are fine, 1 on a warning, 2 on a failure.
/// `config` is the `--config` flag, `socket` the `--socket` flag (or its
/// environment variable), `json` the `--json` flag.
pub fn run(config: Option<PathBuf>, socket: Option<&Path>, json: bool) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wispanel-license: doctor: cannot start the runtime: {e}");
            return ExitCode::from(exit::DOCTOR_FAIL);
        }
    };
    let path = resolve_config_path(config);
    let opts = Options::from_env();
    let report = rt.block_on(diagnose(&path, socket, &opts));
    let text = if json {
        match serde_json::to_string_pretty(&report.json()) {
            Ok(t) => format!("{t}\n"),
            Err(e) => {
                eprintln!("wispanel-license: doctor: cannot format JSON: {e}");
                return ExitCode::from(exit::DOCTOR_FAIL);
            }
        }
    } else {
        report.text()
    };
    // A closed stdout (`| head`) is not worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::from(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shape() {
        assert_eq!(
            Check::ok("configuration", "/etc/x.toml").line(),
            "ok    configuration: /etc/x.toml"
        );
        assert_eq!(
            Check::fail("portal DNS", "no address", "check /etc/resolv.conf").line(),
            "fail  portal DNS: no address — check /etc/resolv.conf"
        );
        assert_eq!(Check::warn("a", "b", "").line(), "warn  a: b");
    }

    #[test]
    fn exit_codes_follow_the_worst() {
        let mut r = Report::default();
        assert_eq!(r.exit_code(), 0);
        r.push(Check::ok("a", "x"));
        assert_eq!(r.exit_code(), 0);
        r.push(Check::warn("b", "x", "y"));
        assert_eq!(r.exit_code(), 1);
        r.push(Check::fail("c", "x", "y"));
        r.push(Check::ok("d", "x"));
        assert_eq!(r.exit_code(), 2);
        let s = r.summary();
        assert_eq!((s.ok, s.warn, s.fail, s.status), (2, 1, 1, Status::Fail));
    }

    #[test]
    fn json_document_shape() {
        let mut r = Report::default();
        r.push(Check::warn("key file mode", "0644", "chmod 600"));
        r.push(Check::ok("configuration", "loaded"));
        let v = r.json();
        assert_eq!(v["checks"][0]["name"], "key file mode");
        assert_eq!(v["checks"][0]["status"], "warn");
        assert_eq!(v["checks"][0]["found"], "0644");
        assert_eq!(v["checks"][0]["hint"], "chmod 600");
        assert!(v["checks"][1]["hint"].is_null());
        assert_eq!(v["summary"]["warn"], 1);
        assert_eq!(v["summary"]["exit_code"], 1);
        assert_eq!(v["summary"]["status"], "warn");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn text_ends_with_counts() {
        let mut r = Report::default();
        r.push(Check::ok("a", "x"));
        r.push(Check::fail("b", "y", "z"));
        assert!(
            r.text().ends_with("1 ok, 0 warnings, 1 failure\n"),
            "{}",
            r.text()
        );
    }
}
