//! Facts about this host: host name, OS, kernel, uptime, CPU count (cheap to
//! collect: no process table, no refresh loop, only the static look-ups of
//! `sysinfo`). The daemon collects them once at its start and sends the host
//! name to the portal (the `hostname` of an `activate`'s body); `doctor`
//! puts them all in its first line, for a support ticket. And the system's
//! user and group database (NSS), where `socket_group` and the owners that
//! `doctor` shows are looked up.

use serde::Serialize;
use sysinfo::System;

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
    /// The CPUs this process may run on (`available_parallelism`).
    pub cpu_count: usize,
    /// Seconds since the kernel booted.
    pub uptime_secs: u64,
}

/// Collects the facts now.
pub fn collect() -> HostFacts {
    HostFacts {
        hostname: System::host_name().unwrap_or_default(),
        os_name: System::name().unwrap_or_default(),
        os_version: System::os_version().unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
        cpu_count: cpu_count(),
        uptime_secs: System::uptime().unwrap_or(0),
    }
}

impl HostFacts {
    /// One line for people: `Debian GNU/Linux 12, kernel 6.1.0-18-amd64,
    /// 2 CPUs, up 3 d 4 h, host name panel1` (what is unknown is left out).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let os = format!("{} {}", self.os_name, self.os_version);
        if !os.trim().is_empty() {
            parts.push(os.trim().to_string());
        }
        if !self.kernel.is_empty() {
            parts.push(format!("kernel {}", self.kernel));
        }
        if self.cpu_count > 0 {
            let s = if self.cpu_count == 1 { "" } else { "s" };
            parts.push(format!("{} CPU{s}", self.cpu_count));
        }
        if self.uptime_secs > 0 {
            parts.push(format!("up {}", uptime(self.uptime_secs)));
        }
        if !self.hostname.is_empty() {
            parts.push(format!("host name {}", self.hostname));
        }
        if parts.is_empty() {
            "nothing known about this host".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// `3 d 4 h`, `5 h 2 min`, `7 min` (`0 min` under a minute).
fn uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

fn cpu_count() -> usize {
    // The CPUs this process may run on (affinity and cgroup quota): what a
    // support ticket needs, and no CPU table to read.
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
        assert!(f.uptime_secs > 0, "{f:?}");
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

    #[test]
    fn describes_what_is_known() {
        let f = HostFacts {
            hostname: "panel1".into(),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            kernel: "6.1.0-18-amd64".into(),
            cpu_count: 2,
            uptime_secs: 3 * 86_400 + 4 * 3600 + 59,
        };
        assert_eq!(
            f.describe(),
            "Debian GNU/Linux 12, kernel 6.1.0-18-amd64, 2 CPUs, up 3 d 4 h, host name panel1"
        );
        let bare = HostFacts {
            hostname: String::new(),
            os_name: String::new(),
            os_version: String::new(),
            kernel: String::new(),
            cpu_count: 1,
            uptime_secs: 2 * 3600 + 5 * 60,
        };
        assert_eq!(bare.describe(), "1 CPU, up 2 h 5 min");
        assert_eq!(uptime(59), "0 min");
    }
}
