//! Writes the man pages and shell completions that the packages ship, from
//! the same clap definitions the binaries parse with, so they cannot drift:
//!
//! ```text
//! cargo run --example gen_assets -- OUT_DIR
//! ```
//!
//! OUT_DIR receives `man/wispanel-license.1` and one `wispanel-license-<command>.1`
//! per subcommand (git style, as the SUBCOMMANDS section of the main page
//! names them), `man/wispanel-licensed.8`, and `completions/` with
//! `wispanel-license.bash`, `_wispanel-license` (zsh) and
//! `wispanel-license.fish`. The hand-written `wispanel-license.toml.5` lives in
//! `packaging/man/`; `.ci/packaging.sh` compresses all pages.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use wispanel_license::cli::args::{Cli, DaemonCli};

const CLIENT: &str = "wispanel-license";
const DAEMON: &str = "wispanel-licensed";

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: cargo run --example gen_assets -- OUT_DIR");
    };
    let out = PathBuf::from(out);
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    client_pages(&man)?;
    daemon_page(&man)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command().name(CLIENT).bin_name(CLIENT);
        let path = clap_complete::generate_to(shell, &mut cmd, CLIENT, &completions)
            .with_context(|| format!("writing the {shell} completion"))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// `wispanel-license.1`, then a page per subcommand, each with the sections
/// clap cannot know (exit status, environment, files).
fn client_pages(dir: &Path) -> Result<()> {
    let mut cmd = Cli::command()
        .name(CLIENT)
        .bin_name(CLIENT)
        .disable_help_subcommand(true);
    cmd.build();
    write_page(dir, man(cmd.clone()), CLIENT_EXTRA)?;
    subcommand_pages(dir, &cmd)
}

fn subcommand_pages(dir: &Path, parent: &clap::Command) -> Result<()> {
    for sub in parent.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(dir, man(sub.clone()), SEE_CLIENT)?;
        subcommand_pages(dir, sub)?;
    }
    Ok(())
}

fn daemon_page(dir: &Path) -> Result<()> {
    let cmd = DaemonCli::command().name(DAEMON).bin_name(DAEMON);
    write_page(dir, man(cmd).section("8"), DAEMON_EXTRA)
}

/// A page whose footer names the package and its version (clap would put the
/// bare subcommand name there).
fn man(cmd: clap::Command) -> Man {
    Man::new(cmd)
        .source(format!("{CLIENT} {}", env!("CARGO_PKG_VERSION")))
        .manual("WisPanel")
}

fn write_page(dir: &Path, man: Man, extra: &str) -> Result<()> {
    let path = dir.join(man.get_filename());
    let mut buf = Vec::new();
    man.render(&mut buf)?;
    buf.write_all(extra.as_bytes())?;
    fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

// The sections below restate SPEC.md (Programs, Files); keep them in step.

const CLIENT_EXTRA: &str = r#".SH "EXIT STATUS"
.B status
and
.B check
follow the monitoring-plugin convention, so that they work unchanged as a
Nagios or Icinga check:
.TP
.B 0
licensed (state
.BR active )
.TP
.B 1
licensed but degraded (state
.BR grace )
.TP
.B 2
not licensed (states
.BR unconfigured ,
.B lapsed
and every refusal)
.TP
.B 3
unknown (the daemon is unreachable, or the state is
.BR unknown )
.PP
The other commands exit 0 on success, 1 when the portal or the daemon
refuses, 2 on a usage error and 3 when the daemon is unreachable;
.B doctor
exits 0 when every check passes, 1 on a warning and 2 on a failure.
The faults
.B doctor
names (firewall, proxy authentication, TLS interception, \&...), what the
daemon does and what to do are tabled in
.I /usr/share/doc/wispanel\-license/FAULTS.md
(docs/FAULTS.md in the source).
.SH ENVIRONMENT
.TP
.B WISPANEL_LICENSE_CONFIG
The configuration file, as
.BR \-\-config .
.TP
.B WISPANEL_LICENSE_SOCKET
The daemon's socket, as
.BR \-\-socket .
.SH FILES
.TP
.I /etc/wispanel/license.toml
The configuration, see
.BR wispanel\-license.toml (5).
.TP
.I /run/wispanel\-license/status.sock
The daemon's status socket, unless the configuration names another.
.TP
.I /var/lib/wispanel\-license/history.jsonl
The daemon's history, which
.B history
reads itself (root only) when the daemon does not answer.
Members of the group
.B wispanel
may connect; changing the licence
.RB ( activate ,
.BR deactivate )
is reserved to root.
.SH "SEE ALSO"
.BR wispanel\-licensed (8),
.BR wispanel\-license.toml (5)
"#;

const SEE_CLIENT: &str = r#".SH "SEE ALSO"
.BR wispanel\-license (1),
.BR wispanel\-license.toml (5)
"#;

const DAEMON_EXTRA: &str = r#".SH SIGNALS
.TP
.B SIGHUP
Reload the configuration without dropping the socket.
A configuration that does not load is logged and the old one kept;
changes to the socket settings and
.B state_dir
need a restart.
.TP
.BR SIGTERM ", " SIGINT
Stop accepting, save the state and exit within five seconds.
.SH "EXIT STATUS"
.TP
.B 0
clean shutdown
.TP
.B 1
any other fatal error
.TP
.B 78
configuration error (EX_CONFIG); systemd does not restart the daemon then
.SH ENVIRONMENT
.TP
.B WISPANEL_LICENSE_CONFIG
The configuration file, as
.BR \-\-config .
.TP
.B CREDENTIALS_DIRECTORY
systemd credentials:
.B license.key
(the licence key) and
.B product_uuid
(the DMI product UUID, which only root can read).
.TP
.BR NOTIFY_SOCKET ", " WATCHDOG_USEC ", " WATCHDOG_PID
systemd readiness and watchdog protocol.
.TP
.BR LISTEN_FDS ", " LISTEN_PID
socket activation: the daemon serves the listening socket systemd passes
(the first one) instead of binding
.BR socket_path ,
and never removes it.
.SH FILES
.TP
.I /etc/wispanel/license.toml
The configuration, see
.BR wispanel\-license.toml (5).
.TP
.I /var/lib/wispanel\-license/state.json
The saved state.
.TP
.I /var/lib/wispanel\-license/history.jsonl
The history: one JSON entry per line (mode 0600), the newest 1000 to 2000.
.TP
.I /run/wispanel\-license/status.sock
The status socket (HTTP with JSON bodies).
.TP
.I /usr/lib/systemd/system/wispanel\-licensed.service
The systemd unit; it runs the daemon as the user
.B wispanel\-license
in group
.BR wispanel .
.TP
.I /usr/lib/systemd/system/wispanel\-licensed.socket
The socket unit: systemd holds the status socket (mode 0660, group
.BR wispanel )
and keeps it while the daemon restarts, so clients wait instead of being
refused; the first connection starts a stopped daemon.
.SH "SEE ALSO"
.BR wispanel\-license (1),
.BR wispanel\-license.toml (5),
.BR systemd.exec (5)
"#;
