//! The configuration file (`/etc/wispanel/license.toml`): strict TOML, loaded
//! and validated into [`Config`]. Every error names the file, the key and the
//! problem; the daemon exits 78 (`EX_CONFIG`) on one.
//!
//! This file holds the types and where the file is found; [`load`] parses
//! (strict TOML) and builds the [`Config`], [`ctx`] points errors into the
//! text (file:line, the key, did-you-mean), [`fields`] validates each
//! value, [`key_file`] reads the key from a file or credential, [`side_file`]
//! reads the small files the configuration names, [`render`] prints the
//! effective configuration (`--check-config`), [`error`] says what is wrong.

mod ctx;
mod error;
mod fields;
mod key_file;
mod load;
mod render;
mod side_file;

pub use error::{ConfigError, ConfigErrorKind};

use std::path::{Path, PathBuf};
use std::time::Duration;
use wispanel_core::key::LicenseKey;

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

/// `[schedule]`: the core's schedule (SPEC's timing parameters, what the
/// core computes with) and the one setting that is the shell's alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `validate_interval`, `update_check_interval`, `splay`,
    /// `retry_initial`, `retry_max`, `offline_grace`, as the core takes them.
    pub core: wispanel_core::schedule::Schedule,
    /// How long one portal request may take (connect, headers and body).
    pub request_timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        // The core's defaults are SPEC's; only request_timeout is ours.
        Schedule {
            core: wispanel_core::schedule::Schedule::default(),
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
    /// Connections one uid other than 0 may hold on the socket at once.
    pub socket_connections_per_uid: usize,
    pub proxy: Option<String>,
    /// `expiring_soon` appears this long before `expires_at`; zero: never.
    pub warn_before_expiry: Duration,
    /// Where the metrics are also written for node_exporter's textfile
    /// collector, if anywhere.
    pub metrics_textfile: Option<PathBuf>,
    pub schedule: Schedule,
    pub hardware: Hardware,
}

// ---------------------------------------------------------------------------
// Where the file is, and the keys it may hold
// ---------------------------------------------------------------------------

/// Where the configuration is read from when neither `--config` nor
/// `WISPANEL_LICENSE_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/wispanel/license.toml";
/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "WISPANEL_LICENSE_CONFIG";
/// The systemd credential that may hold the licence key.
pub const KEY_CREDENTIAL: &str = "license.key";

const DEFAULT_PORTAL_URL: &str = "https://wispanel.com";
const DEFAULT_CHANNEL: &str = "stable";
const DEFAULT_STATE_DIR: &str = "/var/lib/wispanel-license";
/// SPEC's default `socket_path`.
pub const DEFAULT_SOCKET_PATH: &str = "/run/wispanel-license/status.sock";
const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// Key files, version files and CA files are small; refuse to slurp a device.
const MAX_SIDE_FILE: u64 = 64 * 1024;

/// The keys allowed at the top level, in `[schedule]` and in `[hardware]`
/// (a test in `load.rs` pins these against its serde structs).
const TOP_KEYS: &[&str] = &[
    "license_key",
    "license_key_file",
    "portal_url",
    "ca_file",
    "product_version",
    "version_file",
    "channel",
    "state_dir",
    "socket_path",
    "socket_mode",
    "socket_group",
    "socket_connections_per_uid",
    "proxy",
    "warn_before_expiry",
    "metrics_textfile",
    "schedule",
    "hardware",
];
const SCHEDULE_KEYS: &[&str] = &[
    "validate_interval",
    "update_check_interval",
    "splay",
    "retry_initial",
    "retry_max",
    "offline_grace",
    "request_timeout",
];
const HARDWARE_KEYS: &[&str] = &["root", "id_file"];

const DURATION_FORMS: &str = "write a number and a unit (s, m, h, d), or several from largest to smallest, e.g. \"30s\", \"15m\", \"6h\", \"7d\", \"1h30m\"";

pub use wispanel_core::duration::{DurationError, format_duration, parse_duration};

/// The configuration file to use: the `--config` flag, else
/// `$WISPANEL_LICENSE_CONFIG` (when set and not empty), else
/// `/etc/wispanel/license.toml`.
pub fn resolve_config_path(cli: Option<PathBuf>) -> PathBuf {
    if let Some(p) = cli {
        return p;
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// The status socket a client asks (the CLI and `doctor`): `explicit`
/// (`--socket`), else the loaded configuration's `socket_path`, else
/// `socket_path` read from the raw TOML at `config_path` (the configuration
/// may not load, e.g. for a normal user and a root-only key file), else the
/// default.
pub fn client_socket_path(
    explicit: Option<&Path>,
    config_path: &Path,
    loaded: Option<&Config>,
) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(c) = loaded {
        return c.socket_path.clone();
    }
    std::fs::read_to_string(config_path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("socket_path")?.as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH))
}

/// The `state_dir` a client reads without the daemon (`history` as root):
/// the loaded configuration's, else the raw TOML's (the whole file may not
/// load), else the default. The same shape as [`client_socket_path`].
pub fn client_state_dir(config_path: &Path, loaded: Option<&Config>) -> PathBuf {
    if let Some(c) = loaded {
        return c.state_dir.clone();
    }
    std::fs::read_to_string(config_path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("state_dir")?.as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Every key the configuration accepts, dotted (`schedule.splay`), in the
/// order of the SPEC.
pub fn known_keys() -> Vec<String> {
    let top = TOP_KEYS
        .iter()
        .filter(|k| !matches!(**k, "schedule" | "hardware"))
        .map(|k| k.to_string());
    let schedule = SCHEDULE_KEYS.iter().map(|k| format!("schedule.{k}"));
    let hardware = HARDWARE_KEYS.iter().map(|k| format!("hardware.{k}"));
    top.chain(schedule).chain(hardware).collect()
}

/// `$CREDENTIALS_DIRECTORY` when systemd set it.
pub fn credentials_dir_from_env() -> Option<PathBuf> {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => None,
    }
}

impl Config {
    /// The product version: the fixed string, or the version file read now
    /// (trimmed; an empty file is an error).
    pub fn read_product_version(&self) -> Result<String, ConfigError> {
        match &self.version {
            VersionSource::Fixed(v) => Ok(v.clone()),
            VersionSource::File(p) => side_file::read_version_file(p).map_err(|kind| ConfigError {
                path: self.path.clone(),
                line: None,
                key: Some("version_file".into()),
                kind,
            }),
        }
    }
}

/// Helpers of the configuration's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    pub use super::*;
    pub use std::path::Path;

    pub fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_with(text, Path::new("/etc/wispanel/license.toml"), None)
    }

    pub fn err(text: &str) -> ConfigError {
        match load(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    pub const MIN: &str = "product_version = \"1.4.2\"\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_socket_path_falls_back_to_the_raw_toml_then_the_default() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("license.toml");
        // Does not load (no product_version) but names its socket.
        std::fs::write(&conf, "socket_path = \"/srv/s.sock\"\n").unwrap();
        assert!(Config::load(&conf).is_err());
        let explicit = Path::new("/tmp/x.sock");
        assert_eq!(client_socket_path(Some(explicit), &conf, None), explicit);
        assert_eq!(
            client_socket_path(None, &conf, None),
            Path::new("/srv/s.sock")
        );
        let missing = d.path().join("none.toml");
        assert_eq!(
            client_socket_path(None, &missing, None),
            Path::new(DEFAULT_SOCKET_PATH)
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(21600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d2h3m4s"), Ok(Duration::from_secs(93784)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("30"),
            Err(DurationError::MissingUnit("30".into()))
        );
        assert_eq!(parse_duration("h"), Err(DurationError::MissingNumber('h')));
        assert_eq!(parse_duration("5w"), Err(DurationError::BadUnit('w')));
        assert_eq!(parse_duration("1 h"), Err(DurationError::BadUnit(' ')));
        assert_eq!(parse_duration("1.5h"), Err(DurationError::BadUnit('.')));
        assert_eq!(parse_duration("30m1h"), Err(DurationError::Order('h')));
        assert_eq!(parse_duration("1h1h"), Err(DurationError::Order('h')));
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("999999999999999999d"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn durations_format_and_round_trip() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90061)), "1d1h1m1s");
        assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s");
        for secs in [0u64, 1, 59, 60, 61, 3599, 3600, 86399, 86400, 1_000_000_007] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{secs}");
        }
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        // The variable and the default are covered through the binaries.
        assert_eq!(
            resolve_config_path(Some(PathBuf::from("/srv/license.toml"))),
            PathBuf::from("/srv/license.toml")
        );
        let keys = known_keys();
        assert_eq!(keys.len(), 24);
        assert!(keys.contains(&"schedule.splay".to_string()));
        assert!(keys.contains(&"hardware.id_file".to_string()));
    }
}
