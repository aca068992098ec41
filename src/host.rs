//! Facts about this host: host name, OS, kernel, CPU count (cheap to collect:
//! no process table, no refresh loop, only the static look-ups of `sysinfo`),
//! collected once at the daemon's start; of them only the host name goes with
//! portal requests (`hostname` of the licence endpoints). And the system's
//! user and group database (NSS), where `socket_group` and the owners that
//! `doctor` shows are looked up.

use serde::Serialize;
use sysinfo::{CpuRefreshKind, RefreshKind, System};

/// What this host says about itself. Unknown values are empty strings (or 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub hostname: String,
    /// e.g. `Debian GNU/Linux`.
    pub os_name: String,
    /// e.g. `12`.
    pub os_version: String,
    /// e.g. `6.1.0-18-amd64`.
    pub kernel: String,
    /// Logical CPUs.
    pub cpu_count: usize,
}

/// Collects the facts now.
pub fn collect() -> HostFacts {
    HostFacts {
        hostname: System::host_name().unwrap_or_default(),
        os_name: System::name().unwrap_or_default(),
        os_version: System::os_version().unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
        cpu_count: cpu_count(),
    }
}

fn cpu_count() -> usize {
    // The CPU list only (no usage sampling), then the scheduler's view.
    let listed =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()))
            .map(|s| s.cpus().len())
            .unwrap_or(0);
    if listed > 0 {
        return listed;
    }
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// A group name that the system's group database does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no group named {0:?} in the system's group database")]
pub struct UnknownGroup(pub String);

/// Resolves a group name (or a number) to a gid through the system's NSS
/// (`/etc/group`, and LDAP or sssd where `nsswitch.conf` names them).
pub fn group_id(name: &str) -> Result<u32, UnknownGroup> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(UnknownGroup(name.to_string())),
    }
}

/// The name of user `uid` through the system's NSS; `None` when unknown.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The name of group `gid` through the system's NSS; `None` when unknown.
pub fn group_name(gid: u32) -> Option<String> {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_come_from_the_system() {
        // Entries every Debian system has, in /etc/passwd and /etc/group.
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert_eq!(group_id("root"), Ok(0));
        assert_eq!(group_id("daemon"), Ok(1));
        assert_eq!(group_name(1).as_deref(), Some("daemon"));
        assert_eq!(group_id("42"), Ok(42));
        assert_eq!(
            group_id("no-such-group-x"),
            Err(UnknownGroup("no-such-group-x".into()))
        );
        assert_eq!(user_name(4_000_000_000), None);
    }

    #[test]
    fn collects_something_on_linux() {
        let f = collect();
        assert!(f.cpu_count >= 1, "{f:?}");
        assert!(!f.kernel.is_empty(), "{f:?}");
        let json = serde_json::to_value(&f).unwrap();
        for k in ["hostname", "os_name", "os_version", "kernel", "cpu_count"] {
            assert!(json.get(k).is_some(), "{k} missing in {json}");
        }
    }

    #[test]
    fn groups_by_number_and_name() {
        assert_eq!(group_id("4242"), Ok(4242));
        assert_eq!(group_id("root"), Ok(0));
        assert!(group_id("no-such-group-wispanel-test").is_err());
    }
}
