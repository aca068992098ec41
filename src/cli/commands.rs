//! The daemon-facing subcommands: `status`, `check`, `activate`,
//! `deactivate`, `update check`. They talk to the daemon over the status
//! socket and print either the daemon's document unchanged (`--json`) or a
//! summary an administrator reads at a glance, with what to do next.
//!
//! Exit status of `status` and `check` follows the monitoring-plugin
//! convention (0 active with no warning, 1 grace or a warning, 2 not
//! licensed, 3 unknown or unreachable), and the first line of the summary
//! names the state and the most urgent warning, so the command works as a
//! Nagios/Icinga check; the others exit 0 on success, 1 refused, 2 usage,
//! 3 daemon unreachable.

use super::{ActivateArgs, Cli};
use crate::api::{ErrorEnvelope, StatusDocument};
use crate::config::{Config, resolve_config_path};
use crate::socket::client::{self, Answer};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::warnings::{Warning, WarningCode};
use wispanel_core::{LicenseState, UpdateState};

pub const DEFAULT_SOCKET: &str = "/run/wispanel-license/status.sock";

const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNREACHABLE: u8 = 3;

/// Long enough for the daemon's own portal request (request_timeout) and more.
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// `--socket`, else the configuration's `socket_path`, else the default. The
/// configuration may be unreadable for a normal user (a root-only key file),
/// so `socket_path` is also read from the raw TOML.
pub fn socket_path(cli: &Cli) -> PathBuf {
    if let Some(s) = &cli.socket {
        return s.clone();
    }
    let path = resolve_config_path(cli.config.clone());
    if let Ok(c) = Config::load(&path) {
        return c.socket_path;
    }
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("socket_path")?.as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
}

fn ask(
    cli: &Cli,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    t: Duration,
) -> Result<Answer, ExitCode> {
    let sock = socket_path(cli);
    client::request(&sock, method, path, body, t).map_err(|e| {
        if cli.json {
            let env = ErrorEnvelope::new(0, "DAEMON_UNREACHABLE", e.to_string());
            say(&serde_json::to_string(&env).unwrap_or_default());
        }
        eprintln!("wispanel-license: {e}");
        ExitCode::from(EXIT_UNREACHABLE)
    })
}

fn parse_doc(a: &Answer) -> Result<StatusDocument, String> {
    a.status_document()
}

fn envelope(a: &Answer) -> ErrorEnvelope {
    a.envelope()
}

fn when(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_rfc3339().replace('T', " ").replace('Z', " UTC"))
        .unwrap_or_else(|| "-".into())
}

fn limit(n: Option<i64>, what: &str) -> Option<String> {
    n.map(|n| {
        if n < 0 {
            format!("unlimited {what}")
        } else {
            format!("{n} {what}")
        }
    })
}

/// What an administrator should do in each state.
pub fn advice(doc: &StatusDocument) -> Option<String> {
    let l = &doc.license;
    Some(match l.state {
        LicenseState::Active => return None,
        LicenseState::Unconfigured => "No licence key is set. Run `sudo wispanel-license activate` and paste the key, or set license_key_file in the configuration.".into(),
        LicenseState::Unknown => "The portal has not given a verdict for this key yet. If this lasts, run `wispanel-license doctor` to see why the portal cannot be reached.".into(),
        LicenseState::Grace => format!(
            "The portal cannot be reached; the licence stays valid until {}. Run `wispanel-license doctor` to find out why.",
            when(l.grace_until)
        ),
        LicenseState::Lapsed => "The portal has been unreachable for longer than the grace period. Restore access to the portal (`wispanel-license doctor`), then run `wispanel-license check`.".into(),
        LicenseState::InvalidKey => "The portal does not know this key. Check it and activate the right one: `sudo wispanel-license activate`.".into(),
        LicenseState::Expired => "The licence has expired. Renew it in your WisPanel account, then run `wispanel-license check`.".into(),
        LicenseState::Suspended => "The licence is suspended. Contact WisPanel support; once it is reinstated, `wispanel-license check` picks it up.".into(),
        LicenseState::Revoked => "The licence was revoked. Contact WisPanel support or buy a new licence.".into(),
        LicenseState::HardwareMismatch => "The licence is bound to other hardware. Release it on the old host (`sudo wispanel-license deactivate` there, or in your WisPanel account), then run `sudo wispanel-license activate` here to bind it to this host.".into(),
        LicenseState::MaxActivations => "The licence is already active on as many hosts as it allows. Deactivate it on a host you no longer use (`sudo wispanel-license deactivate`), then run `sudo wispanel-license activate` here.".into(),
        LicenseState::VersionTooLow => "This WisPanel version is too old for the licence. Upgrade the panel (`wispanel-license update download`), then run `wispanel-license check`.".into(),
    })
}

/// What an administrator should do about a warning.
pub fn warning_advice(w: &Warning, doc: &StatusDocument) -> String {
    match w.code {
        WarningCode::GraceEnding => format!(
            "The portal has not answered since {}, and the licence lapses at {}. Restore this host's access to the portal before then (`wispanel-license doctor` shows what is in the way), then run `wispanel-license check`.",
            when(doc.portal.last_success_at),
            when(w.at.or(doc.license.grace_until))
        ),
        WarningCode::StateNotSaved => "The daemon cannot write state.json or history.jsonl in its state directory; its log says why (`journalctl -u wispanel-licensed`). Free disk space or make the directory writable again; the daemon retries by itself, and until then a restart would forget the last verdict.".into(),
        WarningCode::ExpiringSoon => format!(
            "Renew the licence in your WisPanel account before {}, then run `wispanel-license check` to pick up the new date. (warn_before_expiry in the configuration sets how early this warning comes.)",
            when(w.at.or(doc.license.expires_at))
        ),
        WarningCode::HardwareChanged => "This host's hardware_id has changed (new board or disk, a cloned VM?); a check runs at once. If the portal answers hardware_mismatch, release the licence on the old hardware and run `sudo wispanel-license activate` here. `wispanel-license hardware-id --explain` shows which sources changed.".into(),
        WarningCode::ActivationInDoubt => "Usually nothing: the activation is retried with the same idempotency key and settles with the portal's next answer. If this lasts, run `wispanel-license doctor`.".into(),
        WarningCode::ClockSkew => "Fix this host's time synchronisation (`timedatectl status`; enable systemd-timesyncd or chrony). The licence is safe, since the daemon reads the portal's dates in the portal's clock, but TLS and logs on this host are not.".into(),
        WarningCode::UpdatesExpired => "Renew the update entitlement in your WisPanel account to download new releases; the licence itself stays valid.".into(),
        WarningCode::Other => "This client does not know this warning; see its message, or update wispanel-license.".into(),
    }
}

/// The first line: the state and, when there is one, the most urgent warning
/// (what a monitoring system shows).
pub fn headline(doc: &StatusDocument) -> String {
    let l = &doc.license;
    let licensed = if l.licensed {
        "licensed"
    } else {
        "NOT licensed"
    };
    let mut s = format!("Licence:   {} ({licensed})", l.state);
    if let Some(w) = doc.most_urgent_warning() {
        s.push_str(&format!(", WARNING {}: {}", w.code, w.message));
        match doc.warnings.len() - 1 {
            0 => {}
            1 => s.push_str(" (and 1 more warning)"),
            n => s.push_str(&format!(" (and {n} more warnings)")),
        }
    }
    s
}

/// The human summary of a status document.
pub fn render(doc: &StatusDocument) -> String {
    let l = &doc.license;
    let mut s = headline(doc);
    s.push('\n');
    let key_tier: Vec<String> = [l.key.clone(), l.tier.as_ref().map(|t| format!("tier {t}"))]
        .into_iter()
        .flatten()
        .collect();
    if !key_tier.is_empty() {
        s.push_str(&format!("Key:       {}\n", key_tier.join(", ")));
    }
    if let Some(r) = &l.reason {
        s.push_str(&format!("Reason:    {}: {}\n", r.code, r.message));
    }
    if l.checked_at.is_some() {
        s.push_str(&format!("Checked:   {}\n", when(l.checked_at)));
    }
    if l.valid_until.is_some() {
        s.push_str(&format!("Trusted until: {}\n", when(l.valid_until)));
    }
    if l.grace_until.is_some() && l.state != LicenseState::Active {
        let verb = if l.state == LicenseState::Lapsed {
            "Lapsed at"
        } else {
            "Grace until"
        };
        s.push_str(&format!("{verb}: {}\n", when(l.grace_until)));
    }
    if l.expires_at.is_some() {
        s.push_str(&format!("Expires:   {}\n", when(l.expires_at)));
    }
    if let Some(lim) = &l.limits {
        let parts: Vec<String> = [
            limit(lim.max_users, "users"),
            limit(lim.max_domains, "domains"),
            limit(lim.max_databases, "databases"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            s.push_str(&format!("Limits:    {}\n", parts.join(", ")));
        }
    }
    let u = &doc.update;
    let current = u.current_version.as_deref().unwrap_or("?");
    let update = match u.state {
        UpdateState::Available => format!(
            "{} available (running {current})",
            u.latest_version.as_deref().unwrap_or("a newer version")
        ),
        UpdateState::UpToDate => format!("up to date ({current})"),
        UpdateState::Unknown => format!("not checked yet (running {current})"),
        UpdateState::UpdatesExpired => {
            "update entitlement expired: renew it to download updates".into()
        }
        UpdateState::VersionTooLow => {
            format!("version {current} is too old to update from the portal")
        }
        UpdateState::NotEntitled => "this licence is not entitled to downloads".into(),
    };
    s.push_str(&format!("Update:    {update}\n"));
    let p = &doc.portal;
    s.push_str(&format!(
        "Portal:    last answer {}, next check {}\n",
        when(p.last_success_at),
        when(p.next_validate_at)
    ));
    if let Some(e) = &p.last_error {
        let status = e
            .http_status
            .map(|s| format!(" HTTP {s}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "Last error: {}{status}: {} ({} in a row)\n",
            e.kind.as_str(),
            e.message,
            p.consecutive_failures
        ));
    }
    if let Some(t) = p.rate_limited_until {
        s.push_str(&format!(
            "Rate limited until {} (the portal asked us to wait)\n",
            when(Some(t))
        ));
    }
    match &doc.hardware_id {
        Some(h) if doc.hardware_changed => s.push_str(&format!(
            "Hardware:  {h} (CHANGED since the last verdict; a check runs at once)\n"
        )),
        Some(h) => s.push_str(&format!("Hardware:  {h}\n")),
        None => s.push_str(
            "Hardware:  cannot be computed (see `wispanel-license hardware-id --explain`)\n",
        ),
    }
    for (i, w) in doc.warnings.iter().enumerate() {
        let label = if i == 0 { "Warnings:" } else { "" };
        s.push_str(&format!("{label:<10} {}: {}\n", w.code, w.message));
    }
    let todo: Vec<String> = advice(doc)
        .into_iter()
        .chain(
            doc.warnings
                .iter()
                .map(|w| format!("{}: {}", w.code, warning_advice(w, doc))),
        )
        .collect();
    if !todo.is_empty() {
        s.push_str("\nWhat to do:\n");
        for t in todo {
            s.push_str(&format!("  - {t}\n"));
        }
    }
    s
}

/// Prints a status document (`--json`: the daemon's bytes unchanged) and
/// returns the monitoring-plugin exit code of its state.
fn show_status(cli: &Cli, a: &Answer) -> ExitCode {
    match parse_doc(a) {
        Ok(doc) => {
            if cli.json {
                say(&String::from_utf8_lossy(&a.body));
            } else {
                say(&render(&doc));
            }
            ExitCode::from(doc.plugin_exit_code())
        }
        Err(e) => {
            eprintln!("wispanel-license: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

pub fn status(cli: &Cli) -> ExitCode {
    match ask(cli, "GET", "/v1/status", None, STATUS_TIMEOUT) {
        Ok(a) if a.status == 200 => show_status(cli, &a),
        Ok(a) => {
            let e = envelope(&a);
            eprintln!("wispanel-license: status: {} ({})", e.message, e.code);
            ExitCode::from(EXIT_UNREACHABLE)
        }
        Err(code) => code,
    }
}

pub fn check(cli: &Cli) -> ExitCode {
    let a = match ask(cli, "POST", "/v1/check", None, ACTION_TIMEOUT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match a.status {
        200 => show_status(cli, &a),
        // No key, or the gate is closed: say so, then exit with the current state's code.
        409 | 429 => {
            let e = envelope(&a);
            if cli.json {
                say(&String::from_utf8_lossy(&a.body));
            } else {
                let mut msg = e.message.clone();
                if let Some(secs) = a.header("retry-after") {
                    msg.push_str(&format!(" (the next check may run in {secs} s)"));
                }
                eprintln!("wispanel-license: check: {msg}");
            }
            match ask(cli, "GET", "/v1/status", None, STATUS_TIMEOUT) {
                Ok(s) if s.status == 200 => match parse_doc(&s) {
                    Ok(doc) => {
                        if !cli.json {
                            say(&render(&doc));
                        }
                        ExitCode::from(doc.plugin_exit_code())
                    }
                    Err(_) => ExitCode::from(EXIT_UNREACHABLE),
                },
                Ok(_) => ExitCode::from(EXIT_UNREACHABLE),
                Err(code) => code,
            }
        }
        _ => {
            let e = envelope(&a);
            eprintln!("wispanel-license: check: {} ({})", e.message, e.code);
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// The outcome of an action (activate, deactivate, update check).
fn action(cli: &Cli, name: &str, a: &Answer) -> ExitCode {
    if a.status == 200 {
        if cli.json {
            say(&String::from_utf8_lossy(&a.body));
        } else if let Ok(doc) = parse_doc(a) {
            say(&render(&doc));
        }
        return ExitCode::SUCCESS;
    }
    let e = envelope(a);
    if cli.json {
        say(&String::from_utf8_lossy(&a.body));
    } else {
        let hint = match (a.status, e.code.as_str()) {
            (403, "FORBIDDEN") => " Run it as root (sudo).",
            (503, _) => " Run `wispanel-license doctor` to see why.",
            (_, "HARDWARE_MISMATCH") | (_, "MAX_ACTIVATIONS") => {
                " Release the licence on another host first (`sudo wispanel-license deactivate` there)."
            }
            _ => "",
        };
        eprintln!(
            "wispanel-license: {name}: {} ({}).{hint}",
            e.message, e.code
        );
    }
    ExitCode::from(EXIT_REFUSED)
}

/// Reads the key from standard input; without echo on a terminal.
fn read_key_from_stdin() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Licence key (WISP-XXXX-XXXX-XXXX): ")
            .map_err(|e| format!("cannot read the key from the terminal: {e}"))
    } else {
        let mut s = String::new();
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
        Ok(s.lines().next().unwrap_or_default().trim().to_string())
    }
}

pub fn activate(cli: &Cli, args: &ActivateArgs) -> ExitCode {
    let raw = match args.key.as_deref() {
        Some(k) if k != "-" => k.to_string(),
        _ => match read_key_from_stdin() {
            Ok(k) => k,
            Err(e) => {
                eprintln!("wispanel-license: activate: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let key = match wispanel_core::key::LicenseKey::parse(&raw) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("wispanel-license: activate: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let body = serde_json::json!({ "license_key": key.expose() }).to_string();
    match ask(
        cli,
        "POST",
        "/v1/activate",
        Some(body.as_bytes()),
        ACTION_TIMEOUT,
    ) {
        Ok(a) => action(cli, "activate", &a),
        Err(code) => code,
    }
}

pub fn deactivate(cli: &Cli) -> ExitCode {
    match ask(cli, "POST", "/v1/deactivate", None, ACTION_TIMEOUT) {
        Ok(a) => action(cli, "deactivate", &a),
        Err(code) => code,
    }
}

pub fn update_check(cli: &Cli) -> ExitCode {
    match ask(cli, "POST", "/v1/update/check", None, ACTION_TIMEOUT) {
        Ok(a) => action(cli, "update check", &a),
        Err(code) => code,
    }
}

pub fn doctor(cli: &Cli) -> ExitCode {
    crate::doctor::run(cli.config.clone(), cli.socket.as_deref(), cli.json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::example_document;

    fn warned(codes: &[WarningCode]) -> StatusDocument {
        let mut doc = example_document();
        doc.warnings = codes
            .iter()
            .map(|&code| Warning {
                code,
                message: format!("{code} message"),
                at: Some(Timestamp::from_unix_secs(1_800_000_000)),
            })
            .collect();
        doc
    }

    #[test]
    fn the_first_line_names_the_state_and_the_most_urgent_warning() {
        let doc = example_document();
        assert_eq!(headline(&doc), "Licence:   active (licensed)");
        let doc = warned(&[WarningCode::ExpiringSoon]);
        assert_eq!(
            headline(&doc),
            "Licence:   active (licensed), WARNING expiring_soon: expiring_soon message"
        );
        let doc = warned(&[WarningCode::GraceEnding, WarningCode::ClockSkew]);
        assert_eq!(
            render(&doc).lines().next(),
            Some(
                "Licence:   active (licensed), WARNING grace_ending: grace_ending message (and 1 more warning)"
            )
        );
    }

    #[test]
    fn what_to_do_covers_every_warning() {
        let doc = warned(&WarningCode::ALL);
        let text = render(&doc);
        let todo = text
            .split("\nWhat to do:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("no What to do in:\n{text}"));
        for c in WarningCode::ALL {
            assert!(
                todo.contains(&format!("  - {c}: ")),
                "{c} has no advice:\n{text}"
            );
            assert!(
                text.contains(&format!("{c}: {c} message")),
                "{c} not listed:\n{text}"
            );
        }
        // A healthy licence has nothing to do.
        assert!(!render(&example_document()).contains("What to do"));
    }
}
