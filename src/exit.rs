//! The exit statuses of both binaries (SPEC), defined once. `status` and
//! `check` exit with the monitoring-plugin code of the state instead
//! ([`crate::api::StatusDocument::plugin_exit_code`]).

/// Success.
pub const OK: u8 = 0;
/// The daemon: a fatal error other than the configuration. The CLI: refused
/// by the portal or the daemon, or the command failed. `doctor`: a warning.
pub const FAILED: u8 = 1;
/// A usage error (bad flag, missing subcommand, a key on a terminal without
/// `--stdin`). `doctor`: a failure.
pub const USAGE: u8 = 2;
/// The CLI: the daemon does not answer.
pub const UNREACHABLE: u8 = 3;
/// The daemon and `--check-config`: a configuration error (`EX_CONFIG` of
/// sysexits.h).
pub const CONFIG: u8 = 78;
/// `doctor`: a check warns.
pub const DOCTOR_WARN: u8 = 1;
/// `doctor`: a check fails (or doctor itself cannot run).
pub const DOCTOR_FAIL: u8 = 2;
