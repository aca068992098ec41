//! The state directory and `state.json`: existence, owner and modes
//! (state_dir 0700, state.json 0600), whether the state parses, and the clock
//! against the last success. The socket and the daemon are in [`super::daemon`].

use super::Check;

use crate::store::{STATE_FILE, SavedRead, read_state};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use wispanel_core::timestamp::Timestamp;

/// What a path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Missing,
    Unreadable(String),
    Dir { mode: u32, uid: u32, gid: u32 },
    File { mode: u32, uid: u32, gid: u32 },
    Socket { mode: u32, uid: u32, gid: u32 },
    Other,
}

impl Node {
    pub fn of(p: &Path) -> Node {
        match std::fs::symlink_metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Node::Missing,
            Err(e) => Node::Unreadable(e.to_string()),
            Ok(m) => {
                let (mode, uid, gid) = (m.mode() & 0o7777, m.uid(), m.gid());
                let t = m.file_type();
                if t.is_dir() {
                    Node::Dir { mode, uid, gid }
                } else if t.is_file() {
                    Node::File { mode, uid, gid }
                } else if t.is_socket() {
                    Node::Socket { mode, uid, gid }
                } else {
                    Node::Other
                }
            }
        }
    }
}

/// What `state.json` held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateContent {
    Missing,
    Unreadable(String),
    Bad(String),
    Good { last_success_at: Option<Timestamp> },
}

/// The facts about `state_dir`.
#[derive(Clone, Debug)]
pub struct StateFacts {
    pub dir: PathBuf,
    pub dir_node: Node,
    pub file: PathBuf,
    pub file_node: Node,
    pub content: StateContent,
    /// The hardware_id the last verdict was given for.
    pub verdict_hardware_id: Option<String>,
}

pub fn gather_state(dir: &Path) -> StateFacts {
    let file = dir.join(STATE_FILE);
    let file_node = Node::of(&file);
    let mut verdict_hardware_id = None;
    let content = match read_state(dir) {
        SavedRead::Missing => StateContent::Missing,
        SavedRead::Unreadable(e) => StateContent::Unreadable(e.to_string()),
        SavedRead::NotText => StateContent::Bad("not UTF-8 text".into()),
        SavedRead::Invalid(e) => StateContent::Bad(e.to_string()),
        SavedRead::Good(core) => {
            verdict_hardware_id = core.licence.verdict_binding.map(|b| b.hardware_id);
            StateContent::Good {
                last_success_at: core.portal.last_success_at,
            }
        }
    };
    StateFacts {
        dir: dir.to_path_buf(),
        dir_node: Node::of(dir),
        file,
        file_node,
        content,
        verdict_hardware_id,
    }
}

/// `uid 0 (root)`, from /etc/passwd when it names the uid.
pub(super) fn owner(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
        t.lines().find_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let _pw = f.next()?;
            (f.next()?.parse::<u32>().ok()? == uid).then(|| n.to_string())
        })
    });
    match name {
        Some(n) => format!("owner {n}"),
        None => format!("owner uid {uid}"),
    }
}

/// The state directory and file checks, with the clock against the last success.
pub fn state_checks(f: &StateFacts, now: Timestamp) -> Vec<Check> {
    let mut out = Vec::new();
    let name = "state_dir";
    let d = f.dir.display();
    out.push(match &f.dir_node {
        Node::Missing => Check::warn(
            name,
            format!("{d} does not exist"),
            "the daemon creates it at start; has wispanel-licensed ever run here?",
        ),
        Node::Unreadable(e) => Check::warn(name, format!("{d}: {e}"), "run doctor as root"),
        Node::Dir { mode, uid, .. } if mode & 0o077 != 0 => Check::warn(
            name,
            format!("{d} is {mode:04o}, {}", owner(*uid)),
            format!("it holds the licence state and the activated key: run `chmod 700 {d}`"),
        ),
        Node::Dir { mode, uid, .. } => {
            Check::ok(name, format!("{d} is {mode:04o}, {}", owner(*uid)))
        }
        _ => Check::fail(
            name,
            format!("{d} is not a directory"),
            "the daemon cannot start; move it away or set state_dir",
        ),
    });
    if !matches!(f.dir_node, Node::Dir { .. }) {
        return out;
    }

    let name = "state.json";
    let p = f.file.display();
    let mode_check = match &f.file_node {
        Node::File { mode, uid, .. } if mode & 0o077 != 0 => Some(Check::warn(
            name,
            format!("{p} is {mode:04o}, {}", owner(*uid)),
            format!("run `chmod 600 {p}`"),
        )),
        Node::File { mode, uid, .. } => Some(Check::ok(
            name,
            format!("{p} is {mode:04o}, {}", owner(*uid)),
        )),
        Node::Missing | Node::Unreadable(_) => None,
        _ => Some(Check::fail(
            name,
            format!("{p} is not a regular file"),
            "remove it; the daemon writes a new one",
        )),
    };
    match &f.content {
        StateContent::Missing => out.push(Check::warn(
            name,
            format!("{p} does not exist: no state saved yet"),
            "the daemon writes it after its first start; start wispanel-licensed",
        )),
        StateContent::Unreadable(e) => out.push(Check::warn(
            name,
            format!("cannot read {p}: {e}"),
            "run doctor as root",
        )),
        StateContent::Bad(problem) => out.push(Check::fail(
            name,
            format!("does not parse: {problem}"),
            "the daemon moves it aside (state.json.corrupt-<time>) at start and starts afresh, losing the last verdict; restart wispanel-licensed",
        )),
        StateContent::Good { last_success_at } => {
            if let Some(c) = mode_check {
                out.push(c);
            }
            if let Some(last) = last_success_at {
                out.push(clock_vs_last_success(now, *last));
            }
        }
    }
    out
}

/// The local clock must not be behind the last successful portal answer.
pub fn clock_vs_last_success(now: Timestamp, last: Timestamp) -> Check {
    let name = "clock vs last success";
    if now.millis() + 1000 < last.millis() {
        let behind = (last.millis() - now.millis()) / 1000;
        Check::fail(
            name,
            format!(
                "the local clock ({}) is {behind} s behind the last successful portal answer ({})",
                now.whole_seconds().to_rfc3339(),
                last.to_rfc3339()
            ),
            "the clock went backwards: enable time synchronisation (`timedatectl set-ntp true`) and check the RTC",
        )
    } else {
        Check::ok(
            name,
            format!("last successful portal answer at {}", last.to_rfc3339()),
        )
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;
    use crate::store::Store;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    #[test]
    fn state_dir_missing_and_modes() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let cs = state_checks(&gather_state(&dir), NOW);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].status, Status::Warn);

        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        let cs = state_checks(&gather_state(&dir), NOW);
        assert_eq!(cs[0].status, Status::Warn, "{cs:?}");
        assert!(cs[0].found.contains("0755"));
        assert_eq!(cs[1].name, "state.json");
        assert_eq!(cs[1].status, Status::Warn, "missing state.json: {cs:?}");

        chmod(&dir, 0o700);
        let store = Store::open(&dir).unwrap();
        let mut core = wispanel_core::machine::Core::default();
        core.portal.last_success_at = Some(NOW.sub(Duration::from_secs(60)));
        store.save(&core, NOW).unwrap();
        let cs = state_checks(&gather_state(&dir), NOW);
        assert!(cs.iter().all(|c| c.status == Status::Ok), "{cs:?}");
        assert!(cs[1].found.contains("0600"));

        chmod(&dir.join("state.json"), 0o644);
        let cs = state_checks(&gather_state(&dir), NOW);
        assert_eq!(cs[1].status, Status::Warn);
    }

    #[test]
    fn state_dir_that_is_a_file_fails() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state");
        std::fs::write(&p, "x").unwrap();
        let cs = state_checks(&gather_state(&p), NOW);
        assert_eq!(cs[0].status, Status::Fail);
    }

    #[test]
    fn clock_behind_last_success_fails() {
        let c = clock_vs_last_success(NOW, NOW.add(Duration::from_secs(3600)));
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.contains("3600 s behind"), "{c:?}");
        let c = clock_vs_last_success(NOW, NOW.sub(Duration::from_secs(5)));
        assert_eq!(c.status, Status::Ok);
    }
}
