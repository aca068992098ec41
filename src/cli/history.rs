//! `wispanel-license history [--since T] [--limit N]`: the daemon's history
//! from `GET /v1/history`, or, when the daemon does not answer, from
//! `state_dir/history.jsonl` itself (root only), picked by the same rule
//! ([`crate::history::select`]).

use super::HistoryArgs;
use super::args::Cli;
use super::commands::socket_path;
use crate::config::{Config, client_state_dir, resolve_config_path};
use crate::history::{self, Entry, Page, Query};
use crate::socket::client;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wispanel_core::timestamp::Timestamp;

use crate::exit::{FAILED as EXIT_REFUSED, UNREACHABLE as EXIT_UNREACHABLE, USAGE as EXIT_USAGE};
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn history(cli: &Cli, args: &HistoryArgs) -> ExitCode {
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let since = match args.since.as_deref().map(|t| history::parse_since(t, now)) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            eprintln!("wispanel-license: history: --since: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let q = Query {
        since,
        limit: usize::from(args.limit),
    };
    let sock = socket_path(cli);
    let path = format!("/v1/history?{}", q.to_query_string());
    match client::request(&sock, "GET", &path, None, TIMEOUT) {
        Ok(a) if a.status == 200 => match a.json::<Page>() {
            Ok(page) => {
                print(cli, &page.entries);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wispanel-license: history: the daemon's answer cannot be read: {e}");
                ExitCode::from(EXIT_UNREACHABLE)
            }
        },
        Ok(a) => {
            let e = a.envelope();
            eprintln!("wispanel-license: history: {} ({})", e.message, e.code);
            ExitCode::from(EXIT_REFUSED)
        }
        Err(e) => from_file(cli, &q, &e.to_string()),
    }
}

/// The daemon does not answer: read the file, as root.
fn from_file(cli: &Cli, q: &Query, why: &str) -> ExitCode {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        if cli.json {
            // As every command that cannot reach the daemon (`commands::ask`).
            let env = crate::api::ErrorEnvelope::new(0, "DAEMON_UNREACHABLE", why);
            println!("{}", serde_json::to_string(&env).unwrap_or_default());
        }
        eprintln!(
            "wispanel-license: history: {why}; reading the history file without the daemon needs root (sudo wispanel-license history)"
        );
        return ExitCode::from(EXIT_UNREACHABLE);
    }
    let file = state_dir(cli).join(history::FILE_NAME);
    match history::read_file(&file) {
        Ok(c) => {
            eprintln!(
                "wispanel-license: history: {why}; read {} instead",
                file.display()
            );
            if c.skipped > 0 {
                eprintln!(
                    "wispanel-license: history: skipped {} unreadable line(s) (first: line {})",
                    c.skipped,
                    c.first_skipped_line.unwrap_or(0)
                );
            }
            print(cli, &history::select(c.entries.iter(), q));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wispanel-license: history: {why}; and {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// The configuration's `state_dir`, by the config's client rule.
fn state_dir(cli: &Cli) -> PathBuf {
    let path = resolve_config_path(cli.config.clone());
    client_state_dir(&path, Config::load(&path).ok().as_ref())
}

fn print(cli: &Cli, entries: &[Entry]) {
    if cli.json {
        println!("{}", serde_json::to_string(entries).unwrap_or_default());
    } else if entries.is_empty() {
        eprintln!("wispanel-license: history: no entries");
    } else {
        for e in entries {
            println!("{e}");
        }
    }
}
