//! The command-line arguments of both programs, as clap derive types and
//! nothing else (only `clap` and `std` are used here), so that man pages and
//! shell completions can be generated from this file alone.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `wispanel-license`: the command-line client of the licence daemon.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "wispanel-license",
    version,
    about = "Show and manage the WisPanel licence of this host",
    long_about = "Show and manage the WisPanel licence of this host. Talks to \
                  wispanel-licensed over its status socket; hardware-id and doctor \
                  work without the daemon."
)]
pub struct Cli {
    /// Configuration file [default: /etc/wispanel/license.toml]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "WISPANEL_LICENSE_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// The daemon's status socket [default: the configuration's socket_path]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "WISPANEL_LICENSE_SOCKET"
    )]
    pub socket: Option<PathBuf>,

    /// Machine-readable output (JSON)
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `wispanel-license`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the licence and update state and its warnings (exit 0 active, 1 grace or a warning, 2 not licensed, 3 unknown)
    Status(StatusArgs),
    /// Ask the daemon to validate the licence now and print the outcome
    Check,
    /// Activate a licence key on this host
    Activate(ActivateArgs),
    /// Release this host's activation
    Deactivate,
    /// Check for or download a panel update
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Compute this host's hardware_id locally (without the daemon)
    HardwareId(HardwareIdArgs),
    /// Diagnose why licensing fails on this host (without the daemon)
    Doctor,
    /// Print the daemon's history, oldest first, one line per entry (reads
    /// the file itself, as root, when the daemon does not answer)
    History(HistoryArgs),
}

/// `status [--wait] [--timeout D]`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// First wait, following the daemon's events, while the daemon does not
    /// answer yet or the state is `unknown` (e.g. `activate`, then
    /// `status --wait` in a provisioning script)
    #[arg(long)]
    pub wait: bool,
    /// The longest `--wait` waits (a duration: 30s, 2m, 1h30m); then exit 3
    /// if the daemon still does not answer or the state is still `unknown`
    #[arg(long, value_name = "D", default_value = "120s", requires = "wait")]
    pub timeout: String,
}

/// `history [--since T] [--limit N]`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Only entries at or after T: an RFC 3339 time (2026-11-26T10:00:00Z)
    /// or a duration back from now (7d, 12h, 1h30m)
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// At most the newest N entries (1 to 1000)
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
}

/// `activate [KEY]`.
#[derive(Debug, Clone, Args)]
pub struct ActivateArgs {
    /// The licence key; `-` or absent: read from standard input, which keeps
    /// it out of the shell history and `ps`
    #[arg(value_name = "KEY")]
    pub key: Option<String>,
}

/// `update check` and `update download`.
#[derive(Debug, Clone, Subcommand)]
pub enum UpdateCommand {
    /// Ask the daemon to check for an update now and print the outcome
    Check,
    /// Fetch a release, verify its SHA-256 and print its path
    Download(DownloadArgs),
}

/// `update download [--version V] [--dir D]`.
#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// The version to fetch [default: the latest]
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Where to put the file [default: the current directory]
    #[arg(long, value_name = "D")]
    pub dir: Option<PathBuf>,
}

/// `hardware-id [--explain]`.
#[derive(Debug, Clone, Args)]
pub struct HardwareIdArgs {
    /// After the id, show the sources used (short digests only) and every file tried
    #[arg(long)]
    pub explain: bool,
}

/// `wispanel-licensed`: the licence daemon (runs in the foreground under systemd).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "wispanel-licensed",
    version,
    about = "Keep this WisPanel host licensed (runs in the foreground; logs to stderr)"
)]
pub struct DaemonCli {
    /// Configuration file
    #[arg(
        long,
        value_name = "PATH",
        env = "WISPANEL_LICENSE_CONFIG",
        default_value = "/etc/wispanel/license.toml"
    )]
    pub config: PathBuf,

    /// Load and validate the configuration, print it with the key masked (and
    /// whether the socket unit's or the configuration's socket settings apply),
    /// and exit (0: valid, 78: invalid)
    #[arg(long)]
    pub check_config: bool,
}
