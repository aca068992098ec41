//! `status [--wait [--timeout D]]`: with `--wait`, first wait while the
//! daemon does not answer yet (no socket, a refused connection, or a
//! connection waiting in a socket-activation queue) or the licence state is
//! `unknown`, following `/v1/events` when connected and retrying the
//! connection with a short bounded back-off when not; at most `--timeout`.
//! Then print and exit as `status` does.

use super::StatusArgs;
use super::args::Cli;
use super::commands::{self, socket_path};
use crate::socket::client::{self, ClientError};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wispanel_core::LicenseState;

use crate::exit::USAGE as EXIT_USAGE;
/// The first and the longest pause between two connection attempts.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(1);

pub fn status(cli: &Cli, args: &StatusArgs) -> ExitCode {
    if args.wait {
        let timeout = match wispanel_core::duration::parse_duration(&args.timeout) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "wispanel-license: status: --timeout {:?}: {e}",
                    args.timeout
                );
                return ExitCode::from(EXIT_USAGE);
            }
        };
        wait(cli, Instant::now() + timeout);
    }
    commands::status(cli)
}

/// Returns once the daemon shows a state other than `unknown`, or at
/// `deadline`.
fn wait(cli: &Cli, deadline: Instant) {
    let sock = socket_path(cli);
    let mut pause = FIRST_RETRY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let mut connected = false;
        let opened = client::events(&sock, left);
        if let Err(ClientError::Connect { source, .. }) = &opened
            && source.kind() == std::io::ErrorKind::PermissionDenied
        {
            // Waiting cannot help: `status` says so at once.
            return;
        }
        if let Ok(mut events) = opened {
            loop {
                match events.next(deadline) {
                    Ok(doc) if doc.license.state != LicenseState::Unknown => return,
                    Ok(_) => connected = true,
                    Err(ClientError::TimedOut { .. }) => return,
                    // The stream ended (a restart), or an error answer
                    // (429, 503): connect again.
                    Err(_) => break,
                }
            }
        }
        if connected {
            pause = FIRST_RETRY;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(MAX_RETRY);
    }
}
