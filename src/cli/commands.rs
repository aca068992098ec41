//! The daemon-facing subcommands. Placeholders: replaced by the socket client.

use super::{ActivateArgs, Cli, DownloadArgs};
use std::process::ExitCode;

fn not_yet(name: &str) -> ExitCode {
    eprintln!("wispanel-license: {name}: not implemented yet");
    ExitCode::from(3)
}

pub fn status(_cli: &Cli) -> ExitCode {
    not_yet("status")
}

pub fn check(_cli: &Cli) -> ExitCode {
    not_yet("check")
}

pub fn activate(_cli: &Cli, _args: &ActivateArgs) -> ExitCode {
    not_yet("activate")
}

pub fn deactivate(_cli: &Cli) -> ExitCode {
    not_yet("deactivate")
}

pub fn update_check(_cli: &Cli) -> ExitCode {
    not_yet("update check")
}

pub fn update_download(_cli: &Cli, _args: &DownloadArgs) -> ExitCode {
    not_yet("update download")
}

pub fn doctor(_cli: &Cli) -> ExitCode {
    not_yet("doctor")
}
