use clap::Parser;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use wispanel_license::cli::DaemonCli;

/// The listening socket systemd passed (socket activation), if any: the
/// first of `LISTEN_FDS` when `LISTEN_PID` is this process.
fn passed_socket() -> Option<OwnedFd> {
    let mut fds = sd_notify::listen_fds().ok()?;
    let fd = fds.next()?;
    // SAFETY: systemd hands these descriptors to this process (LISTEN_PID is
    // ours, sd_notify checked it) and nothing else in it knows of them, so
    // this is their one owner; it is taken once, before anything else runs.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn main() -> ExitCode {
    // aws-lc-rs, X25519MLKEM768 first: docs/PERFORMANCE.md.
    wispanel_license::net::tls::use_aws_lc_rs();
    let cli = DaemonCli::parse();
    if cli.check_config {
        let code = wispanel_license::cli::check_config(
            &cli.config,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
        return ExitCode::from(code);
    }
    wispanel_license::daemon::main(cli.config, passed_socket())
}
