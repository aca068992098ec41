//! The configuration file (`/etc/wispanel/license.toml`): strict TOML, loaded
//! and validated into [`Config`]. Every error names the file, the key and the
//! problem; the daemon exits 78 (`EX_CONFIG`) on one.
//!
//! TYPES ARE FIXED (other modules code against them); loading is built in the
//! foundation issue.

use crate::key::LicenseKey;
use std::path::PathBuf;
use std::time::Duration;

/// Where the licence key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `license_key = "..."` in the file.
    Inline,
    /// `license_key_file = PATH`.
    File(PathBuf),
    /// systemd credential `license.key` in `$CREDENTIALS_DIRECTORY`.
    Credential(PathBuf),
}

/// Where the product version comes from. A `File` is re-read at each use so a
/// panel upgrade is seen without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    Fixed(String),
    File(PathBuf),
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub validate_interval: Duration,
    pub update_check_interval: Duration,
    pub splay: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub offline_grace: Duration,
    pub request_timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            validate_interval: Duration::from_secs(6 * 3600),
            update_check_interval: Duration::from_secs(24 * 3600),
            splay: Duration::from_secs(15 * 60),
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            offline_grace: Duration::from_secs(7 * 86400),
            request_timeout: Duration::from_secs(20),
        }
    }
}

/// `[hardware]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardware {
    /// The hardware_id sources are read under this directory (default `/`).
    pub root: PathBuf,
    /// A fixed 64-hex id, used as is (containers).
    pub id_file: Option<PathBuf>,
}

impl Default for Hardware {
    fn default() -> Self {
        Hardware {
            root: PathBuf::from("/"),
            id_file: None,
        }
    }
}

/// The validated, effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this was loaded from.
    pub path: PathBuf,
    /// The configured key (inline, key file, or systemd credential), if any.
    pub license_key: Option<LicenseKey>,
    pub key_source: Option<KeySource>,
    /// Base URL without a trailing slash, e.g. `https://wispanel.com`.
    pub portal_url: String,
    pub ca_file: Option<PathBuf>,
    pub version: VersionSource,
    pub channel: String,
    pub state_dir: PathBuf,
    pub socket_path: PathBuf,
    /// e.g. 0o660.
    pub socket_mode: u32,
    pub socket_group: Option<String>,
    pub proxy: Option<String>,
    pub schedule: Schedule,
    pub hardware: Hardware,
}
