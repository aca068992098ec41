//! The systemd unit `wispanel-licensed`: enabled and active. No line at all
//! when there is no `systemctl` or systemd is not running (containers).

use super::Check;
use std::path::Path;
use std::time::Duration;

pub const UNIT: &str = "wispanel-licensed";

/// What `systemctl is-enabled` and `is-active` said (their first line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitFacts {
    pub enabled: Result<String, String>,
    pub active: Result<String, String>,
}

/// Asks systemd, when it runs here (`/run/systemd/system` exists, as
/// `sd_booted()` checks) and `systemctl` is on the PATH.
pub async fn gather(limit: Duration) -> Option<UnitFacts> {
    if !Path::new("/run/systemd/system").is_dir() || !on_path("systemctl") {
        return None;
    }
    let (enabled, active) = tokio::join!(
        systemctl("is-enabled", limit),
        systemctl("is-active", limit)
    );
    Some(UnitFacts { enabled, active })
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// `Ok(first line of stdout)` whatever the exit status; `Err` when it did not run.
async fn systemctl(verb: &str, limit: Duration) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("systemctl");
    cmd.arg(verb)
        .arg(UNIT)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => Err(format!("`systemctl {verb}` gave no answer in time")),
        Ok(Err(e)) => Err(format!("cannot run systemctl: {e}")),
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().next().unwrap_or("").trim().to_string();
            if line.is_empty() {
                let err = String::from_utf8_lossy(&out.stderr);
                Ok(err.lines().next().unwrap_or("no answer").trim().to_string())
            } else {
                Ok(line)
            }
        }
    }
}

pub fn checks(f: &UnitFacts) -> Vec<Check> {
    let enabled = match &f.enabled {
        Ok(s) if s == "enabled" || s == "static" || s == "alias" => {
            Check::ok("systemd unit enabled", format!("{UNIT}: {s}"))
        }
        Ok(s) => Check::warn(
            "systemd unit enabled",
            format!("{UNIT}: {s}"),
            format!("it will not start at boot: `systemctl enable --now {UNIT}`"),
        ),
        Err(e) => Check::warn("systemd unit enabled", e.clone(), "check systemd"),
    };
    let active = match &f.active {
        Ok(s) if s == "active" => Check::ok("systemd unit active", format!("{UNIT}: {s}")),
        Ok(s) => Check::warn(
            "systemd unit active",
            format!("{UNIT}: {s}"),
            format!(
                "start it and read why it stopped: `systemctl start {UNIT}; journalctl -u {UNIT} -n 50`"
            ),
        ),
        Err(e) => Check::warn("systemd unit active", e.clone(), "check systemd"),
    };
    vec![enabled, active]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn states() {
        let f = UnitFacts {
            enabled: Ok("enabled".into()),
            active: Ok("active".into()),
        };
        assert!(checks(&f).iter().all(|c| c.status == Status::Ok));
        let f = UnitFacts {
            enabled: Ok("disabled".into()),
            active: Ok("failed".into()),
        };
        let cs = checks(&f);
        assert!(cs.iter().all(|c| c.status == Status::Warn), "{cs:?}");
        assert!(cs[1].hint.as_deref().unwrap_or("").contains("journalctl"));
        let f = UnitFacts {
            enabled: Err("cannot run systemctl".into()),
            active: Ok("inactive".into()),
        };
        assert!(checks(&f).iter().all(|c| c.status == Status::Warn));
    }
}
