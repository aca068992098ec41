//! The status socket and the daemon behind it: the socket's existence, type,
//! mode and group, and the daemon's own view when it answers.

use super::Check;
use super::files::{Node, owner};
use crate::socket::client::{self, ClientError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The facts about the socket path.
pub fn gather_socket(p: &Path) -> (PathBuf, Node) {
    (p.to_path_buf(), Node::of(p))
}

fn group_name(gid: u32) -> String {
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                let n = f.next()?;
                let _pw = f.next()?;
                (f.next()?.parse::<u32>().ok()? == gid).then(|| n.to_string())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}

/// The socket: exists, is a socket, has `socket_mode` and `socket_group`.
pub fn socket_checks(
    s: &(PathBuf, Node),
    socket_mode: Option<u32>,
    socket_group: Option<&str>,
) -> Vec<Check> {
    let (path, node) = s;
    let name = "socket";
    let p = path.display();
    vec![match node {
        Node::Missing => Check::warn(
            name,
            format!("{p} does not exist"),
            "the daemon is not running (or uses another socket_path); start wispanel-licensed",
        ),
        Node::Unreadable(e) => Check::warn(name, format!("{p}: {e}"), "run doctor as root"),
        Node::Socket { mode, uid, gid } => {
            let found = format!(
                "{p} is {mode:04o}, {}, group {}",
                owner(*uid),
                group_name(*gid)
            );
            let group_differs = socket_group
                .is_some_and(|g| g != group_name(*gid) && g.parse::<u32>().ok() != Some(*gid));
            match socket_mode {
                Some(want) if want != *mode => Check::warn(
                    name,
                    found,
                    format!(
                        "socket_mode is {want:04o}; restart wispanel-licensed to recreate the socket"
                    ),
                ),
                _ if group_differs => Check::warn(
                    name,
                    found,
                    format!(
                        "socket_group is {}; restart wispanel-licensed to recreate the socket",
                        socket_group.unwrap_or_default()
                    ),
                ),
                _ => Check::ok(name, found),
            }
        }
        _ => Check::fail(
            name,
            format!("{p} exists and is not a socket"),
            format!(
                "the daemon will not start while it is there (it never deletes such a file): remove {p}"
            ),
        ),
    }]
}

/// What the daemon said on its socket.
#[derive(Clone, Debug, PartialEq)]
pub enum DaemonFacts {
    /// Nothing listens (or the path is not a socket).
    Unreachable(String),
    TimedOut,
    /// It answered something other than a status document.
    BadAnswer(String),
    Status(serde_json::Value),
}

/// `GET /v1/status` over the Unix socket, within `limit`.
pub async fn ask_daemon(path: &Path, limit: Duration) -> DaemonFacts {
    match tokio::time::timeout(limit, get_status(path, limit)).await {
        Err(_) => DaemonFacts::TimedOut,
        Ok(f) => f,
    }
}

async fn get_status(path: &Path, limit: Duration) -> DaemonFacts {
    let p = path.to_path_buf();
    let asked =
        tokio::task::spawn_blocking(move || client::request(&p, "GET", "/v1/status", None, limit))
            .await;
    match asked {
        Err(e) => DaemonFacts::BadAnswer(e.to_string()),
        Ok(Err(ClientError::Connect { source, .. })) => {
            DaemonFacts::Unreachable(source.to_string())
        }
        Ok(Err(ClientError::TimedOut { .. })) => DaemonFacts::TimedOut,
        Ok(Err(ClientError::Exchange { message, .. })) => DaemonFacts::BadAnswer(message),
        Ok(Ok(a)) => facts_of(&a),
    }
}

/// Parses an HTTP/1.1 answer holding the status document.
pub fn parse_answer(bytes: &[u8]) -> DaemonFacts {
    match client::parse_answer(bytes) {
        Ok(a) => facts_of(&a),
        Err(e) => DaemonFacts::BadAnswer(e),
    }
}

fn facts_of(a: &client::Answer) -> DaemonFacts {
    if a.status != 200 {
        return DaemonFacts::BadAnswer(format!("HTTP {}", a.status));
    }
    match a.json::<serde_json::Value>() {
        Ok(v) if v.get("license").is_some() => DaemonFacts::Status(v),
        Ok(_) => DaemonFacts::BadAnswer("JSON that is not a status document".into()),
        Err(e) => DaemonFacts::BadAnswer(format!("not JSON: {e}")),
    }
}

/// The daemon's answer and its licence state.
pub fn daemon_checks(path: &Path, f: &DaemonFacts) -> Vec<Check> {
    let p = path.display();
    match f {
        DaemonFacts::Unreachable(e) => vec![Check::warn(
            "daemon",
            format!("not answering on {p}: {e}"),
            "start it: `systemctl start wispanel-licensed`; meanwhile nothing keeps the licence validated",
        )],
        DaemonFacts::TimedOut => vec![Check::fail(
            "daemon",
            format!("no answer on {p} within the time limit"),
            "the daemon is hung; restart it: `systemctl restart wispanel-licensed`",
        )],
        DaemonFacts::BadAnswer(e) => vec![Check::fail(
            "daemon",
            format!("{p} answered {e}"),
            "is this wispanel-licensed's socket? check socket_path and the daemon's version",
        )],
        DaemonFacts::Status(v) => {
            let version = v["daemon"]["version"].as_str().unwrap_or("?");
            let pid = v["daemon"]["pid"].as_u64().unwrap_or(0);
            let mut out = vec![Check::ok(
                "daemon",
                format!("answering on {p} (version {version}, pid {pid})"),
            )];
            out.push(licence_check(v));
            out
        }
    }
}

fn licence_check(v: &serde_json::Value) -> Check {
    let name = "licence state";
    let state = v["license"]["state"].as_str().unwrap_or("?");
    let mut found = format!("{state} (daemon)");
    let err = &v["portal"]["last_error"];
    let last_error = (!err.is_null()).then(|| {
        let kind = err["kind"].as_str().unwrap_or("?");
        let msg = err["message"].as_str().unwrap_or("");
        match err["http_status"].as_u64() {
            Some(s) => format!("{kind}, HTTP {s}: {msg}"),
            None => format!("{kind}: {msg}"),
        }
    });
    if let Some(e) = &last_error {
        found.push_str(&format!("; last portal error: {e}"));
    }
    if let Some(code) = v["license"]["reason"]["code"].as_str() {
        found.push_str(&format!("; portal said {code}"));
    }
    match state {
        "active" => match last_error {
            None => Check::ok(name, found),
            Some(_) => Check::warn(
                name,
                found,
                "the last portal request failed; see the portal checks above",
            ),
        },
        "grace" => Check::warn(
            name,
            found,
            "licensed for now, but the portal is unreachable; see the portal checks above",
        ),
        "unknown" => Check::warn(name, found, "no verdict yet; see the portal checks above"),
        "unconfigured" => Check::fail(
            name,
            found,
            "no licence key: set license_key_file, or run `wispanel-license activate`",
        ),
        "lapsed" => Check::fail(
            name,
            found,
            "the grace period ran out without reaching the portal; fix the failing portal checks above",
        ),
        "hardware_mismatch" => Check::fail(
            name,
            found,
            "the licence is bound to another hardware_id; see the hardware_id checks above and contact support",
        ),
        _ => Check::fail(
            name,
            found,
            "the portal refused this licence; contact WisPanel support",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn sockets() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.sock");
        let c = &socket_checks(&gather_socket(&p), Some(0o660), None)[0];
        assert_eq!(c.status, Status::Warn);
        std::fs::write(&p, "x").unwrap();
        let c = &socket_checks(&gather_socket(&p), Some(0o660), None)[0];
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.contains("not a socket"));
        std::fs::remove_file(&p).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(&p).unwrap();
        chmod(&p, 0o660);
        let c = &socket_checks(&gather_socket(&p), Some(0o660), None)[0];
        assert_eq!(c.status, Status::Ok, "{c:?}");
        let c = &socket_checks(&gather_socket(&p), Some(0o600), None)[0];
        assert_eq!(c.status, Status::Warn);
        let c = &socket_checks(&gather_socket(&p), Some(0o660), Some("no-such-group-x"))[0];
        assert_eq!(c.status, Status::Warn);
    }

    #[test]
    fn answers() {
        let doc = r#"{"daemon":{"version":"0.1.0","pid":7},"license":{"state":"grace"},"portal":{"last_error":{"kind":"timeout","http_status":null,"message":"slow"}}}"#;
        let plain = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{doc}",
            doc.len()
        );
        let f = parse_answer(plain.as_bytes());
        let cs = daemon_checks(Path::new("/s"), &f);
        assert_eq!(cs[0].status, Status::Ok);
        assert!(cs[0].found.contains("pid 7"));
        assert_eq!(cs[1].status, Status::Warn);
        assert!(cs[1].found.contains("grace"));
        assert!(cs[1].found.contains("timeout: slow"), "{:?}", cs[1]);

        let chunked = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{doc}\r\n0\r\n\r\n",
            doc.len()
        );
        assert_eq!(parse_answer(chunked.as_bytes()), f);
        assert!(matches!(
            parse_answer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            DaemonFacts::BadAnswer(_)
        ));
        assert!(matches!(
            parse_answer(b"garbage"),
            DaemonFacts::BadAnswer(_)
        ));
        let cs = daemon_checks(Path::new("/s"), &DaemonFacts::Unreachable("refused".into()));
        assert_eq!(cs[0].status, Status::Warn);
    }

    #[test]
    fn licence_states() {
        let st = |s: &str| {
            let v = serde_json::json!({"license": {"state": s}, "portal": {"last_error": null}});
            licence_check(&v).status
        };
        assert_eq!(st("active"), Status::Ok);
        assert_eq!(st("grace"), Status::Warn);
        assert_eq!(st("unknown"), Status::Warn);
        assert_eq!(st("lapsed"), Status::Fail);
        assert_eq!(st("revoked"), Status::Fail);
    }

    #[tokio::test]
    async fn regular_file_at_socket_path_is_unreachable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.sock");
        std::fs::write(&p, "x").unwrap();
        let f = ask_daemon(&p, Duration::from_secs(2)).await;
        assert!(matches!(f, DaemonFacts::Unreachable(_)), "{f:?}");
    }

    #[tokio::test]
    async fn silent_socket_times_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.sock");
        let _l = tokio::net::UnixListener::bind(&p).unwrap();
        let t = std::time::Instant::now();
        let f = ask_daemon(&p, Duration::from_millis(300)).await;
        assert_eq!(f, DaemonFacts::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
