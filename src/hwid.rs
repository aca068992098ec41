//! The hardware_id, recipe v1 (SPEC "hardware_id"): the SHA-256 of a small
//! text built from the machine-id, the DMI product UUID and, only when both are
//! missing, the MAC addresses of physical NICs. Everything is read under
//! `hardware.root` (but the `product_uuid` credential systemd may pass, and
//! `hardware.id_file`, which replaces the recipe), so tests run on fake roots.
//!
//! Raw source values never leave this module: reports and errors carry only a
//! short digest of each value and the outcome of each file tried.

use crate::config::Hardware;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The first line of the hashed text.
pub const RECIPE_HEADER: &str = "wispanel-hwid:v1";

/// Source files are tiny; read at most this much of any of them.
const MAX_SOURCE: u64 = 4096;

/// The computed id and how it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HwidReport {
    /// 64 lowercase hex characters.
    pub id: String,
    /// The sources that went into the id, in recipe order.
    pub sources: Vec<SourceUsed>,
    /// Every file read (or looked for), in the order tried, with its outcome.
    pub tried: Vec<TriedFile>,
    /// The id is the content of `hardware.id_file`.
    pub from_id_file: bool,
}

/// One source that went into the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceUsed {
    /// `machine-id`, `product-uuid`, `mac:<ifname>` or `id-file`.
    pub name: String,
    pub path: PathBuf,
    /// First 12 hex digits of the SHA-256 of the value (never the value).
    pub digest: String,
}

/// One file looked at, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriedFile {
    pub path: PathBuf,
    /// `used`, `missing`, `not 32 hex characters`, `placeholder (all zeros)`, …
    pub outcome: String,
}

/// Why there is no hardware_id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HwidError {
    /// None of the recipe's sources gave a line.
    #[error(
        "no hardware_id source found; tried: {}; set hardware.id_file to a file holding a fixed 64-hex id (for containers)",
        TriedList(.tried)
    )]
    NoSource { tried: Vec<TriedFile> },
    /// `hardware.id_file` is set but does not hold an id. There is no fallback.
    #[error("hardware.id_file {}: {problem} (it must hold exactly 64 hex characters)", path.display())]
    IdFile { path: PathBuf, problem: String },
}

struct TriedList<'a>(&'a [TriedFile]);

impl fmt::Display for TriedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} ({})", t.path.display(), t.outcome)?;
        }
        Ok(())
    }
}

/// Computes the id with `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`)
/// as the credentials directory.
pub fn compute_from_env(hw: &Hardware) -> Result<HwidReport, HwidError> {
    let creds = crate::config::credentials_dir_from_env();
    compute(hw, creds.as_deref())
}

/// Computes the id by recipe v1 under `hw.root`, or takes it from
/// `hw.id_file`. `credentials_dir` is where a `product_uuid` credential may be.
pub fn compute(hw: &Hardware, credentials_dir: Option<&Path>) -> Result<HwidReport, HwidError> {
    if let Some(path) = &hw.id_file {
        return from_id_file(path);
    }
    let mut tried = Vec::new();
    let mut sources = Vec::new();
    let mut lines = Vec::new();

    // 1. machine-id, with the D-Bus copy as fallback.
    for rel in ["etc/machine-id", "var/lib/dbus/machine-id"] {
        let path = hw.root.join(rel);
        match read_source(&path) {
            Err(outcome) => tried.push(TriedFile { path, outcome }),
            Ok(raw) => {
                let v = raw.trim().to_ascii_lowercase();
                if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    lines.push(format!("machine-id={v}"));
                    sources.push(used("machine-id", &path, &v));
                    tried.push(TriedFile {
                        path,
                        outcome: "used".into(),
                    });
                    break;
                }
                let outcome = if v.is_empty() {
                    "empty"
                } else {
                    "not 32 hex characters"
                };
                tried.push(TriedFile {
                    path,
                    outcome: outcome.into(),
                });
            }
        }
    }

    // 2. The DMI product UUID; the systemd credential replaces the root-only file.
    let credential = credentials_dir
        .map(|d| d.join("product_uuid"))
        .filter(|p| p.symlink_metadata().is_ok());
    let uuid_path = credential.unwrap_or_else(|| hw.root.join("sys/class/dmi/id/product_uuid"));
    match read_source(&uuid_path) {
        Err(outcome) => tried.push(TriedFile {
            path: uuid_path,
            outcome,
        }),
        Ok(raw) => {
            let v = raw.trim().to_ascii_lowercase();
            let digits: Vec<u8> = v.bytes().filter(|b| *b != b'-').collect();
            let outcome = if v.is_empty() {
                "empty".to_string()
            } else if digits.iter().all(|b| *b == b'0') {
                "placeholder (all zeros)".to_string()
            } else if digits.iter().all(|b| *b == b'f') {
                "placeholder (all f)".to_string()
            } else {
                lines.push(format!("product-uuid={v}"));
                sources.push(used("product-uuid", &uuid_path, &v));
                "used".to_string()
            };
            tried.push(TriedFile {
                path: uuid_path,
                outcome,
            });
        }
    }

    // 3. MACs of physical NICs, only when neither of the above gave a line.
    if lines.is_empty() {
        let mut macs = Vec::new();
        mac_lines(&hw.root.join("sys/class/net"), &mut macs, &mut tried);
        macs.sort_by(|a, b| a.0.cmp(&b.0));
        for (line, source) in macs {
            lines.push(line);
            sources.push(source);
        }
    }

    if lines.is_empty() {
        return Err(HwidError::NoSource { tried });
    }
    Ok(HwidReport {
        id: hash_lines(&lines),
        sources,
        tried,
        from_id_file: false,
    })
}

/// The text that recipe v1 hashes, for these source lines.
pub fn recipe_text(lines: &[String]) -> String {
    let mut text = format!("{RECIPE_HEADER}\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    text
}

fn hash_lines(lines: &[String]) -> String {
    hex(&Sha256::digest(recipe_text(lines).as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// First 12 hex digits of the SHA-256 of a source value.
fn short_digest(value: &str) -> String {
    let mut h = hex(&Sha256::digest(value.as_bytes()));
    h.truncate(12);
    h
}

fn used(name: &str, path: &Path, value: &str) -> SourceUsed {
    SourceUsed {
        name: name.to_string(),
        path: path.to_path_buf(),
        digest: short_digest(value),
    }
}

/// Reads a source file as text; `Err` is the outcome to report.
fn read_source(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| io_outcome(&e))?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE)
        .read_to_end(&mut bytes)
        .map_err(|e| io_outcome(&e))?;
    String::from_utf8(bytes).map_err(|_| "not text".to_string())
}

fn io_outcome(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "missing".into(),
        std::io::ErrorKind::PermissionDenied => "unreadable (permission denied)".into(),
        _ => format!("unreadable ({e})"),
    }
}

/// `mac=` lines (with their source) for every interface with a `device` entry
/// and an address that is not all zeros. Interfaces are visited in name order
/// so that `tried` is stable.
fn mac_lines(net: &Path, out: &mut Vec<(String, SourceUsed)>, tried: &mut Vec<TriedFile>) {
    let entries = match std::fs::read_dir(net) {
        Ok(rd) => rd,
        Err(e) => {
            tried.push(TriedFile {
                path: net.to_path_buf(),
                outcome: io_outcome(&e),
            });
            return;
        }
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    if names.is_empty() {
        tried.push(TriedFile {
            path: net.to_path_buf(),
            outcome: "no interfaces".into(),
        });
    }
    for name in names {
        let dir = net.join(&name);
        let ifname = name.to_string_lossy();
        // In sysfs `device` is a symlink to the bus device; virtual interfaces
        // (bridges, veths, docker0, lo) have none.
        if dir.join("device").symlink_metadata().is_err() {
            tried.push(TriedFile {
                path: dir,
                outcome: "no device entry (virtual interface)".into(),
            });
            continue;
        }
        let path = dir.join("address");
        let outcome = match read_source(&path) {
            Err(outcome) => outcome,
            Ok(raw) => {
                let v = raw.trim().to_ascii_lowercase();
                if v.is_empty() {
                    "empty".into()
                } else if v.bytes().filter(|b| *b != b':').all(|b| b == b'0') {
                    "all zeros".into()
                } else {
                    out.push((
                        format!("mac={v}"),
                        used(&format!("mac:{ifname}"), &path, &v),
                    ));
                    "used".into()
                }
            }
        };
        tried.push(TriedFile { path, outcome });
    }
}

fn from_id_file(path: &Path) -> Result<HwidReport, HwidError> {
    let problem = |p: String| HwidError::IdFile {
        path: path.to_path_buf(),
        problem: p,
    };
    let raw = read_source(path).map_err(problem)?;
    let v = raw.trim().to_ascii_lowercase();
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        let what = if v.is_empty() {
            "it is empty".to_string()
        } else {
            format!(
                "it holds {} characters that are not a 64-hex id",
                v.chars().count()
            )
        };
        return Err(problem(what));
    }
    Ok(HwidReport {
        sources: vec![used("id-file", path, &v)],
        tried: vec![TriedFile {
            path: path.to_path_buf(),
            outcome: "used".into(),
        }],
        id: v,
        from_id_file: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_text_shape() {
        assert_eq!(recipe_text(&[]), "wispanel-hwid:v1\n");
        assert_eq!(
            recipe_text(&["machine-id=ab".into(), "product-uuid=cd".into()]),
            "wispanel-hwid:v1\nmachine-id=ab\nproduct-uuid=cd\n"
        );
    }

    #[test]
    fn digest_is_short_and_not_the_value() {
        let d = short_digest("0123456789abcdef0123456789abcdef");
        assert_eq!(d.len(), 12);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!"0123456789abcdef0123456789abcdef".contains(&d));
    }

    #[test]
    fn no_source_error_lists_every_file() {
        let e = HwidError::NoSource {
            tried: vec![
                TriedFile {
                    path: "/a".into(),
                    outcome: "missing".into(),
                },
                TriedFile {
                    path: "/b".into(),
                    outcome: "empty".into(),
                },
            ],
        };
        let s = e.to_string();
        assert!(s.contains("/a (missing), /b (empty)"), "{s}");
    }
}
