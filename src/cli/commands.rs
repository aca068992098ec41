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

use super::render::render;
use super::{ActivateArgs, Cli};
use crate::api::{ActivateRequest, ErrorEnvelope, StatusDocument};
use crate::config::{Config, client_socket_path, resolve_config_path};
use crate::socket::client::{self, Answer};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::exit::{FAILED as EXIT_REFUSED, UNREACHABLE as EXIT_UNREACHABLE, USAGE as EXIT_USAGE};

/// Long enough for the daemon's own portal request (request_timeout) and more.
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket to ask: [`crate::config::client_socket_path`], loading the
/// configuration only when `--socket` is not given.
pub fn socket_path(cli: &Cli) -> PathBuf {
    let path = resolve_config_path(cli.config.clone());
    let loaded = match cli.socket {
        Some(_) => None,
        None => Config::load(&path).ok(),
    };
    client_socket_path(cli.socket.as_deref(), &path, loaded.as_ref())
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
    let request = ActivateRequest {
        license_key: key.expose().to_string(),
    };
    let body = match serde_json::to_vec(&request) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wispanel-license: activate: cannot write the request: {e}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    match ask(cli, "POST", "/v1/activate", Some(&body), ACTION_TIMEOUT) {
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
