//! `wispanel-license`, the command-line client: argument types ([`args`]),
//! dispatch, and the subcommands: `hardware-id` (without the daemon) in
//! `hardware_id.rs`, `update download` in [`download`], `history` in
//! `history.rs`, `status --wait` in `wait.rs`, the others in [`commands`], the
//! status summary they print in [`render`]. The daemon's `--check-config` is
//! here too ([`check_config`]), beside its arguments ([`DaemonCli`]).

pub mod args;
mod check_config;
pub mod commands;
pub mod download;
mod hardware_id;
mod history;
pub mod render;
mod wait;

pub use args::{
    ActivateArgs, Cli, Command, DaemonCli, DownloadArgs, HardwareIdArgs, HistoryArgs, StatusArgs,
    UpdateCommand,
};
pub use check_config::check_config;
pub use hardware_id::run_hardware_id;

use clap::Parser;
use std::process::ExitCode;

use crate::exit::USAGE as EXIT_USAGE;

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(cli) => run(&cli),
        Err(e) => {
            // --help and --version are "errors" too, printed to stdout.
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// Runs an already parsed command line.
pub fn run(cli: &Cli) -> ExitCode {
    match &cli.command {
        Command::Status(a) => wait::status(cli, a),
        Command::Check => commands::check(cli),
        Command::Activate(a) => commands::activate(cli, a),
        Command::Deactivate => commands::deactivate(cli),
        Command::Update(UpdateCommand::Check) => commands::update_check(cli),
        Command::Update(UpdateCommand::Download(a)) => download::update_download(cli, a),
        Command::HardwareId(a) => run_hardware_id(cli, a),
        Command::Doctor => commands::doctor(cli),
        Command::History(a) => history::history(cli, a),
    }
}
