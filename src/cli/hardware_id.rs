//! `wispanel-license hardware-id [--explain]`: the hardware_id computed here,
//! without the daemon, from the configuration's `[hardware]` section.

use super::{Cli, HardwareIdArgs};
use crate::config::{Config, ConfigErrorKind, Hardware, resolve_config_path};
use crate::hwid::{self, HwidError, HwidReport};
use std::io::Write;
use std::process::ExitCode;

/// Prints the id alone on one line (`--explain`: then its sources and the
/// files tried; `--json`: one JSON object). Exit 0, or 1 when the
/// configuration cannot be loaded or no source gives an id.
pub fn run_hardware_id(cli: &Cli, args: &HardwareIdArgs) -> ExitCode {
    let (hardware, config_note) = match hardware_section(cli) {
        Ok(h) => h,
        Err(message) => {
            eprintln!("wispanel-license: {message}");
            return ExitCode::from(crate::exit::FAILED);
        }
    };
    let report = match hwid::compute_from_env(&hardware) {
        Ok(r) => r,
        Err(e) => return fail(cli, &e),
    };
    warn_unreadable(&report);
    let text = if cli.json {
        match json(&report, config_note.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("wispanel-license: hardware-id: cannot format JSON: {e}");
                return ExitCode::from(crate::exit::FAILED);
            }
        }
    } else if args.explain {
        explain(&report, config_note.as_deref())
    } else {
        format!("{}\n", report.id)
    };
    // A closed stdout (`| head`) is not worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// The `[hardware]` section to use, and a note when the defaults stand in for
/// a configuration file that does not exist at the default path.
fn hardware_section(cli: &Cli) -> Result<(Hardware, Option<String>), String> {
    let path = resolve_config_path(cli.config.clone());
    match Config::load(&path) {
        Ok(c) => Ok((c.hardware, None)),
        // Without --config (or its variable), a host with no configuration yet
        // can still tell support its id.
        Err(e) if cli.config.is_none() && matches!(e.kind, ConfigErrorKind::Missing) => Ok((
            Hardware::default(),
            Some(format!(
                "{} does not exist; using the default [hardware] section",
                path.display()
            )),
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn fail(cli: &Cli, e: &HwidError) -> ExitCode {
    eprintln!("wispanel-license: hardware-id: {e}");
    if cli.json {
        let v = serde_json::json!({ "error": e.to_string() });
        let _ = writeln!(std::io::stdout().lock(), "{v}");
    }
    ExitCode::from(crate::exit::FAILED)
}

/// An unprivileged user cannot read the DMI file; the daemon (root, or the
/// systemd credential) can, so its id would differ from the one printed.
fn warn_unreadable(report: &HwidReport) {
    for t in &report.tried {
        if t.outcome.contains("permission denied") {
            eprintln!(
                "wispanel-license: warning: {} is not readable by this user; run as root to get the id the daemon computes",
                t.path.display()
            );
        }
    }
}

fn explain(report: &HwidReport, note: Option<&str>) -> String {
    let mut o = format!("{}\n", report.id);
    if report.from_id_file {
        o.push_str("taken as is from hardware.id_file (no source read)\n");
    } else {
        o.push_str("recipe: v1\n");
    }
    if let Some(n) = note {
        o.push_str(&format!("note: {n}\n"));
    }
    o.push_str("sources used (SHA-256 of the value, first 12 hex digits):\n");
    let width = report
        .sources
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in &report.sources {
        o.push_str(&format!(
            "  {:width$}  {}  {}\n",
            s.name,
            s.digest,
            s.path.display()
        ));
    }
    o.push_str("files tried:\n");
    for t in &report.tried {
        o.push_str(&format!("  {}: {}\n", t.path.display(), t.outcome));
    }
    o
}

fn json(report: &HwidReport, note: Option<&str>) -> Result<String, serde_json::Error> {
    let v = serde_json::json!({
        "hardware_id": report.id,
        "recipe": if report.from_id_file { "id_file" } else { "v1" },
        "from_id_file": report.from_id_file,
        "sources": report.sources,
        "tried": report.tried,
        "note": note,
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&v)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hwid::{SourceUsed, TriedFile};
    use std::path::PathBuf;

    fn report() -> HwidReport {
        HwidReport {
            id: "ab".repeat(32),
            sources: vec![SourceUsed {
                name: "machine-id".into(),
                path: PathBuf::from("/etc/machine-id"),
                digest: "0123456789ab".into(),
            }],
            tried: vec![
                TriedFile {
                    path: PathBuf::from("/etc/machine-id"),
                    outcome: "used".into(),
                },
                TriedFile {
                    path: PathBuf::from("/sys/class/dmi/id/product_uuid"),
                    outcome: "missing".into(),
                },
            ],
            from_id_file: false,
        }
    }

    #[test]
    fn explain_starts_with_the_id_alone() {
        let text = explain(&report(), None);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("ab".repeat(32).as_str()));
        assert!(
            text.contains("  machine-id  0123456789ab  /etc/machine-id\n"),
            "{text}"
        );
        assert!(
            text.contains("  /sys/class/dmi/id/product_uuid: missing\n"),
            "{text}"
        );
    }

    #[test]
    fn json_has_the_id_and_the_files() {
        let v: serde_json::Value = serde_json::from_str(&json(&report(), None).unwrap()).unwrap();
        assert_eq!(v["hardware_id"], "ab".repeat(32));
        assert_eq!(v["tried"][1]["outcome"], "missing");
        assert_eq!(v["sources"][0]["digest"], "0123456789ab");
    }
}
