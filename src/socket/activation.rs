//! Socket activation (SPEC "Files"): systemd's `wispanel-licensed.socket`
//! listens on the `socket_path` default and passes the listening socket to
//! the daemon (`LISTEN_FDS`, `LISTEN_PID`, fd 3). The daemon then serves that
//! socket instead of binding `socket_path`, and never removes it: it belongs
//! to the `.socket` unit, and a client that connects while the daemon
//! restarts waits in its queue instead of finding no socket.
//!
//! Taking the descriptor from systemd needs one `unsafe` line, which lives in
//! the daemon's binary (`src/bin/wispanel-licensed.rs`, this library forbids
//! unsafe code); this module checks what it was given and turns it into a
//! listener. It also says which settings apply (`--check-config`, `doctor`):
//! under socket activation the `.socket` unit's `SocketMode=`/`SocketGroup=`,
//! otherwise `socket_mode`/`socket_group`.

use super::SocketError;
use crate::config::Config;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// The socket unit the packages install.
pub const UNIT: &str = "wispanel-licensed.socket";
/// Where an installed unit file may be, first match wins (an administrator's
/// copy in /etc overrides the package's).
const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Turns the descriptor systemd passed into the listener to serve: it must
/// be a listening Unix stream socket with a path. A path other than
/// `socket_path` is served all the same (the unit decides), and logged.
pub fn adopt(fd: OwnedFd, config: &Config) -> Result<UnixListener, SocketError> {
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    let passed_path = std_listener.local_addr().map_err(|e| SocketError::Passed {
        problem: format!("it is not a Unix socket ({e})"),
    })?;
    let Some(path) = passed_path.as_pathname().map(Path::to_path_buf) else {
        return Err(SocketError::Passed {
            problem: "it has no path (an abstract or unnamed socket)".into(),
        });
    };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| SocketError::Passed {
            problem: format!("cannot make it non-blocking: {e}"),
        })?;
    let listener = UnixListener::from_std(std_listener).map_err(|e| SocketError::Passed {
        problem: format!("cannot serve it: {e}"),
    })?;
    if path != config.socket_path {
        tracing::warn!(
            passed = %path.display(),
            socket_path = %config.socket_path.display(),
            "systemd passed the socket {} but socket_path is {}; serving the passed one (change ListenStream= in a drop-in of {UNIT} to move it)",
            path.display(),
            config.socket_path.display()
        );
    }
    tracing::info!(path = %path.display(), "serving the socket passed by systemd: {}", path.display());
    Ok(listener)
}

/// What an installed `.socket` unit says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UnitSocket {
    pub file: PathBuf,
    pub listen: Option<PathBuf>,
    /// `SocketMode=` (systemd's default 0666 when unset).
    pub mode: u32,
    /// `SocketGroup=` (root's group when unset).
    pub group: Option<String>,
}

/// Reads the `[Socket]` settings that matter here from a unit file's text
/// (the last assignment wins, as in systemd; drop-ins are not read).
pub fn parse_unit(file: &Path, text: &str) -> UnitSocket {
    let mut u = UnitSocket {
        file: file.to_path_buf(),
        mode: 0o666,
        ..UnitSocket::default()
    };
    let mut in_socket = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_socket = line == "[Socket]";
            continue;
        }
        if !in_socket || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "ListenStream" if v.starts_with('/') => u.listen = Some(PathBuf::from(v)),
            "SocketMode" => {
                if let Ok(m) = u32::from_str_radix(v, 8) {
                    u.mode = m;
                }
            }
            "SocketGroup" => u.group = (!v.is_empty()).then(|| v.to_string()),
            _ => {}
        }
    }
    u
}

/// The installed socket unit, if any.
pub fn installed_unit() -> Option<UnitSocket> {
    UNIT_DIRS.iter().find_map(|d| {
        let file = Path::new(d).join(UNIT);
        let text = std::fs::read_to_string(&file).ok()?;
        Some(parse_unit(&file, &text))
    })
}

/// Which settings make the socket, in one line (for `--check-config` and
/// `doctor`).
pub fn which_applies(config: &Config, unit: Option<&UnitSocket>) -> String {
    match unit {
        Some(u) => {
            let listen = u
                .listen
                .as_deref()
                .map_or("?".into(), |p| p.display().to_string());
            let mut s = format!(
                "socket activation: {} is installed; when systemd starts the daemon through it, the unit's ListenStream={listen}, SocketMode={:04o}, SocketGroup={} apply, not socket_path, socket_mode and socket_group",
                u.file.display(),
                u.mode,
                u.group.as_deref().unwrap_or("(root's group)")
            );
            if u.listen.as_deref().is_some_and(|l| l != config.socket_path) {
                s.push_str(&format!(
                    "; socket_path ({}) differs from ListenStream=, so clients that use socket_path will not find the daemon",
                    config.socket_path.display()
                ));
            }
            s
        }
        None => format!(
            "no socket activation ({UNIT} is not installed): the daemon binds socket_path itself with socket_mode {:04o}{}",
            config.socket_mode,
            config
                .socket_group
                .as_deref()
                .map_or(String::new(), |g| format!(" and socket_group {g}"))
        ),
    }
}

/// The mode and group the socket should have: the unit's under socket
/// activation, else the configuration's.
pub fn expected_mode_group<'a>(
    config: Option<&'a Config>,
    unit: Option<&'a UnitSocket>,
) -> (Option<u32>, Option<&'a str>) {
    match unit {
        Some(u) => (Some(u.mode), u.group.as_deref()),
        None => (
            config.map(|c| c.socket_mode),
            config.and_then(|c| c.socket_group.as_deref()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn reads_the_shipped_unit() {
        let text = include_str!("../../systemd/wispanel-licensed.socket");
        let u = parse_unit(Path::new("/usr/lib/systemd/system/x.socket"), text);
        assert_eq!(
            u.listen.as_deref(),
            Some(Path::new("/run/wispanel-license/status.sock"))
        );
        assert_eq!(u.mode, 0o660);
        assert_eq!(u.group.as_deref(), Some("wispanel"));
        let c = load(MIN).unwrap();
        let line = which_applies(&c, Some(&u));
        assert!(
            line.contains("SocketMode=0660, SocketGroup=wispanel apply"),
            "{line}"
        );
        assert!(!line.contains("differs"), "{line}");
        assert_eq!(
            expected_mode_group(Some(&c), Some(&u)),
            (Some(0o660), Some("wispanel"))
        );
    }

    #[test]
    fn without_the_unit_the_configuration_applies() {
        let c = load(&format!("{MIN}socket_mode = \"0600\"\n")).unwrap();
        let line = which_applies(&c, None);
        assert!(
            line.contains("binds socket_path itself with socket_mode 0600"),
            "{line}"
        );
        assert_eq!(expected_mode_group(Some(&c), None), (Some(0o600), None));
        let u = parse_unit(
            Path::new("/etc/systemd/system/x.socket"),
            "[Socket]\nListenStream=/run/other.sock\n[Install]\nSocketMode=0600\n",
        );
        assert_eq!(u.mode, 0o666, "a key outside [Socket] is not the unit's");
        assert!(which_applies(&c, Some(&u)).contains("differs"));
    }

    #[tokio::test]
    async fn adopts_a_listening_unix_socket_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let c = load(MIN).unwrap();
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let listener = adopt(OwnedFd::from(l), &c).unwrap();
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        assert!(accepted.is_ok() && connected.is_ok());
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = adopt(OwnedFd::from(tcp), &c).unwrap_err().to_string();
        assert!(e.contains("not a Unix socket"), "{e}");
    }
}
