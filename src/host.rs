//! Facts about this host that go with portal requests and `doctor`: host
//! name, OS, kernel, CPU count (cheap to collect: no process table, no
//! refresh loop, only the static look-ups of `sysinfo`), and the group
//! database that `socket_group` is looked up in.

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

/// A group name that `/etc/group` does not list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no group named {0:?} in /etc/group")]
pub struct UnknownGroup(pub String);

/// Resolves a group name (or a number) to a gid through `/etc/group`.
pub fn group_id(name: &str) -> Result<u32, UnknownGroup> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let _pw = f.next()?;
            let gid = f.next()?.parse::<u32>().ok()?;
            (n == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| UnknownGroup(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
