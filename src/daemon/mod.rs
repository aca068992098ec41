//! The daemon `wispanel-licensed`. Placeholder: replaced by the daemon issue.

use std::path::PathBuf;
use std::process::ExitCode;

/// Runs the daemon with the configuration at `config_path` until shutdown.
pub fn main(config_path: PathBuf) -> ExitCode {
    let _ = config_path;
    eprintln!("wispanel-licensed: daemon not built yet");
    ExitCode::from(1)
}
