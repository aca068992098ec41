//! The configuration file (`/etc/wispanel/license.toml`): strict TOML, loaded
//! and validated into [`Config`]. Every error names the file, the key and the
//! problem; the daemon exits 78 (`EX_CONFIG`) on one.
//!
//! TYPES ARE FIXED (other modules code against them); loading is built in the
//! foundation issue.

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

impl Schedule {
    /// The parameters the core's schedule needs.
    pub fn core(&self) -> wispanel_core::schedule::Schedule {
        wispanel_core::schedule::Schedule {
            validate_interval: self.validate_interval,
            update_check_interval: self.update_check_interval,
            splay: self.splay,
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            offline_grace: self.offline_grace,
        }
    }
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

// ---------------------------------------------------------------------------
// Loading
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
const DEFAULT_SOCKET_PATH: &str = "/run/wispanel-license/status.sock";
const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// Key files, version files and CA files are small; refuse to slurp a device.
const MAX_SIDE_FILE: u64 = 64 * 1024;

/// The keys allowed at the top level, in `[schedule]` and in `[hardware]`
/// (a test pins these against the serde structs below).
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
    "proxy",
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

/// A configuration mistake: which file, which key, which line, and what is wrong.
///
/// Displays as `<file>:<line>: <key>: <problem>` (the line and key are left out
/// when not known). It never holds the licence key.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// 1-based line in the configuration file, when the mistake has one.
    pub line: Option<usize>,
    /// Dotted key, e.g. `schedule.splay`.
    pub key: Option<String>,
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    fn render(&self) -> String {
        let mut s = self.path.display().to_string();
        if let Some(line) = self.line {
            s.push_str(&format!(":{line}"));
        }
        s.push_str(": ");
        if let Some(key) = &self.key {
            s.push_str(key);
            s.push_str(": ");
        }
        s.push_str(&self.kind.to_string());
        s
    }

    fn file(path: &Path, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line: None,
            key: None,
            kind,
        }
    }
}

/// What is wrong; each kind of mistake has its own text.
#[derive(Debug, thiserror::Error)]
pub enum ConfigErrorKind {
    #[error("the configuration file does not exist")]
    Missing,
    #[error("cannot read the configuration file: {0}")]
    Unreadable(std::io::Error),
    #[error("not valid TOML: {0}")]
    Syntax(String),
    #[error("unknown key{suggestion}; the keys allowed here are: {allowed}")]
    UnknownKey { suggestion: String, allowed: String },
    #[error("{message}{hint}")]
    WrongType { message: String, hint: String },
    #[error("{value:?} is not a duration ({reason}); {DURATION_FORMS}")]
    BadDuration {
        value: String,
        reason: DurationError,
    },
    #[error("must be at least 1s (only schedule.splay may be \"0s\")")]
    DurationTooShort,
    #[error(
        "{initial} is longer than schedule.retry_max ({max}); the first retry cannot wait longer than the longest"
    )]
    RetryOrder { initial: String, max: String },
    #[error("license_key and license_key_file are both set; keep only one of them")]
    KeyTwice,
    #[error(
        "this is the masked form of a key (as printed by --check-config or status); write the full key, or use license_key_file"
    )]
    MaskedKey,
    #[error("{0}")]
    KeyShape(wispanel_core::key::KeyError),
    #[error("cannot read {}: {source}", path.display())]
    KeyFileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is {access} (mode {mode:04o}); the key file must be private to its owner: run `chmod 600 {}`",
        path.display(), path.display()
    )]
    KeyFilePermissions {
        path: PathBuf,
        mode: u32,
        access: String,
    },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("{} is larger than {MAX_SIDE_FILE} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("must be an absolute path (it starts with '/'), not {0:?}")]
    RelativePath(String),
    #[error("must not be empty")]
    Empty,
    #[error("{0:?} holds white space or a control character")]
    BadText(String),
    #[error("no group named {0:?} (looked up in /etc/group; a number is taken as a gid)")]
    UnknownGroup(String),
    #[error(
        "neither product_version nor version_file is set; one of them is required (e.g. product_version = \"1.4.2\")"
    )]
    VersionMissing,
    #[error("product_version and version_file are both set; keep only one of them")]
    VersionTwice,
    #[error("cannot read the version file {}: {source}", path.display())]
    VersionFileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the version file {} is empty", path.display())]
    VersionFileEmpty { path: PathBuf },
    #[error("{value:?} is not a URL: {reason}")]
    NotUrl { value: String, reason: String },
    #[error(
        "{0:?}: https is required; plain http is allowed only for localhost, 127.0.0.0/8 and ::1"
    )]
    InsecurePortal(String),
    #[error("the scheme must be https, not {0:?}")]
    PortalScheme(String),
    #[error("must be a plain base URL: no user name or password, query or fragment")]
    PortalExtras,
    #[error(
        "must be an http://, https:// or socks5:// URL with a host (the value is not shown: it may hold a password)"
    )]
    BadProxy,
    #[error("{0:?} is not an octal mode such as \"0660\"")]
    SocketModeSyntax(String),
    #[error("{0:?} is more than 0777 (only permission bits are allowed)")]
    SocketModeRange(String),
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaFileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    CaFileNotPem { path: PathBuf },
}

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

type Sp<T> = toml::Spanned<T>;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    license_key: Option<Sp<String>>,
    license_key_file: Option<Sp<String>>,
    portal_url: Option<Sp<String>>,
    ca_file: Option<Sp<String>>,
    product_version: Option<Sp<String>>,
    version_file: Option<Sp<String>>,
    channel: Option<Sp<String>>,
    state_dir: Option<Sp<String>>,
    socket_path: Option<Sp<String>>,
    socket_mode: Option<Sp<String>>,
    socket_group: Option<Sp<String>>,
    proxy: Option<Sp<String>>,
    schedule: Option<RawSchedule>,
    hardware: Option<RawHardware>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    validate_interval: Option<Sp<String>>,
    update_check_interval: Option<Sp<String>>,
    splay: Option<Sp<String>>,
    retry_initial: Option<Sp<String>>,
    retry_max: Option<Sp<String>>,
    offline_grace: Option<Sp<String>>,
    request_timeout: Option<Sp<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHardware {
    root: Option<Sp<String>>,
    id_file: Option<Sp<String>>,
}

/// Builds errors that point into one file's text.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn at(
        &self,
        key: &str,
        span: Option<std::ops::Range<usize>>,
        kind: ConfigErrorKind,
    ) -> ConfigError {
        ConfigError {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line_of(s.start)),
            key: Some(key.to_string()),
            kind,
        }
    }

    fn val(&self, key: &str, v: &Sp<String>, kind: ConfigErrorKind) -> ConfigError {
        self.at(key, Some(v.span()), kind)
    }

    /// Turns a serde error from `toml::from_str` into one that names the key.
    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span();
        let message = err.message().trim().to_string();
        let line = span.clone().map(|s| self.line_of(s.start));
        let tree = toml::de::DeTable::parse(self.text);
        let Ok(tree) = tree else {
            // A syntax error: the parser has no key to offer.
            return ConfigError {
                path: self.path.to_path_buf(),
                line,
                key: None,
                kind: ConfigErrorKind::Syntax(message),
            };
        };
        let mut entries = Vec::new();
        flatten(tree.get_ref(), "", &mut entries);
        let key = span.clone().and_then(|s| {
            entries
                .iter()
                .find(|e| e.key_span == s)
                .or_else(|| {
                    entries
                        .iter()
                        .filter(|e| e.value_span.start <= s.start && s.end <= e.value_span.end)
                        .min_by_key(|e| e.value_span.len())
                })
                .map(|e| e.path.clone())
        });
        let kind = if message.starts_with("unknown field") {
            let table = key
                .as_deref()
                .and_then(|k| k.rsplit_once('.').map(|(t, _)| t))
                .unwrap_or("");
            let allowed: &[&str] = match table {
                "schedule" => SCHEDULE_KEYS,
                "hardware" => HARDWARE_KEYS,
                _ => TOP_KEYS,
            };
            let leaf = key.as_deref().map(|k| k.rsplit('.').next().unwrap_or(k));
            let suggestion = leaf
                .and_then(|l| closest(l, allowed))
                .map(|s| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default();
            ConfigErrorKind::UnknownKey {
                suggestion,
                allowed: allowed.join(", "),
            }
        } else if message.starts_with("invalid type") {
            let hint = match key.as_deref() {
                Some(k) if k.starts_with("schedule.") => format!("; {DURATION_FORMS}"),
                Some("socket_mode") => {
                    "; write the mode as an octal string such as \"0660\"".into()
                }
                Some("schedule") | Some("hardware") => {
                    "; it is a table: write it as [section]".into()
                }
                _ => String::new(),
            };
            ConfigErrorKind::WrongType { message, hint }
        } else {
            ConfigErrorKind::Syntax(message)
        };
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            key,
            kind,
        }
    }
}

struct Entry {
    path: String,
    key_span: std::ops::Range<usize>,
    value_span: std::ops::Range<usize>,
}

fn flatten(table: &toml::de::DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if let toml::de::DeValue::Table(t) = v.get_ref() {
            flatten(t, &path, out);
        }
        out.push(Entry {
            path,
            key_span: k.span(),
            value_span: v.span(),
        });
    }
}

/// The allowed key closest to a typo, when it is close enough to be a guess.
fn closest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    // "retry_maximum" for "retry_max", "id" for "id_file".
    let prefix = allowed.iter().find(|a| {
        let (short, long) = if a.len() < word.len() {
            (**a, word)
        } else {
            (word, **a)
        };
        short.len() >= 2 && long.starts_with(short)
    });
    if let Some(a) = prefix {
        return Some(a);
    }
    allowed
        .iter()
        .map(|a| (edit_distance(word, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Reads a small text file; `Err` carries the I/O error or a size/encoding kind.
enum SideFileError {
    Io(std::io::Error),
    TooLarge,
    NotText,
}

fn read_side_file(path: &Path) -> Result<String, SideFileError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(SideFileError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_SIDE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(SideFileError::Io)?;
    if bytes.len() as u64 > MAX_SIDE_FILE {
        return Err(SideFileError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| SideFileError::NotText)
}

/// "readable by group and others" etc., for a mode with bits in 0o077.
fn describe_access(mode: u32) -> String {
    let who = |shift: u32| {
        let bits = (mode >> shift) & 0o7;
        let mut v = Vec::new();
        if bits & 0o4 != 0 {
            v.push("readable");
        }
        if bits & 0o2 != 0 {
            v.push("writable");
        }
        if bits & 0o1 != 0 {
            v.push("executable");
        }
        v.join(" and ")
    };
    let group = who(3);
    let others = who(0);
    match (group.is_empty(), others.is_empty()) {
        (false, true) => format!("{group} by its group"),
        (true, false) => format!("{others} by others"),
        _ if group == others => format!("{group} by its group and by others"),
        _ => format!("{group} by its group and {others} by others"),
    }
}

fn absolute(ctx: &Ctx<'_>, key: &str, v: &Sp<String>) -> Result<PathBuf, ConfigError> {
    let s = v.get_ref();
    if s.is_empty() {
        return Err(ctx.val(key, v, ConfigErrorKind::Empty));
    }
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err(ctx.val(key, v, ConfigErrorKind::RelativePath(s.clone())));
    }
    Ok(p)
}

fn word(ctx: &Ctx<'_>, key: &str, v: &Sp<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if s.is_empty() {
        return Err(ctx.val(key, v, ConfigErrorKind::Empty));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.val(key, v, ConfigErrorKind::BadText(s.clone())));
    }
    Ok(s.clone())
}

fn duration(
    ctx: &Ctx<'_>,
    key: &str,
    v: Option<&Sp<String>>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let d = parse_duration(v.get_ref()).map_err(|reason| {
        ctx.val(
            key,
            v,
            ConfigErrorKind::BadDuration {
                value: v.get_ref().clone(),
                reason,
            },
        )
    })?;
    if d < Duration::from_secs(1) && !zero_ok {
        return Err(ctx.val(key, v, ConfigErrorKind::DurationTooShort));
    }
    Ok(d)
}

fn parse_socket_mode(s: &str) -> Result<u32, ConfigErrorKind> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(ConfigErrorKind::SocketModeSyntax(s.to_string()));
    }
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| ConfigErrorKind::SocketModeSyntax(s.to_string()))?;
    if mode > 0o777 {
        return Err(ConfigErrorKind::SocketModeRange(s.to_string()));
    }
    Ok(mode)
}

/// `https://` anywhere, `http://` only to a loopback host; returns the URL
/// without a trailing '/'.
fn portal_url(raw: &str) -> Result<String, ConfigErrorKind> {
    let url = url::Url::parse(raw).map_err(|e| ConfigErrorKind::NotUrl {
        value: raw.to_string(),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConfigErrorKind::PortalExtras);
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(ConfigErrorKind::InsecurePortal(raw.to_string()));
            }
        }
        other => return Err(ConfigErrorKind::PortalScheme(other.to_string())),
    }
    if url.host().is_none() {
        return Err(ConfigErrorKind::NotUrl {
            value: raw.to_string(),
            reason: "it has no host".into(),
        });
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn proxy_url(raw: &str) -> Result<String, ConfigErrorKind> {
    let url = url::Url::parse(raw).map_err(|_| ConfigErrorKind::BadProxy)?;
    if !matches!(url.scheme(), "http" | "https" | "socks5") || url.host().is_none() {
        return Err(ConfigErrorKind::BadProxy);
    }
    Ok(raw.to_string())
}

/// A proxy URL with its password (if any) replaced by `****`, for display.
fn masked_proxy(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            if url.set_password(Some("****")).is_ok() {
                url.to_string()
            } else {
                "(a proxy URL with a password)".to_string()
            }
        }
        Ok(_) => raw.to_string(),
        Err(_) => "(not shown)".to_string(),
    }
}

/// Reads and checks a key file: private mode, readable, a well-shaped key.
fn read_key_file(
    ctx: &Ctx<'_>,
    key: &str,
    span: Option<std::ops::Range<usize>>,
    path: &Path,
    check_mode: bool,
) -> Result<LicenseKey, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |source| {
        ctx.at(
            key,
            span.clone(),
            ConfigErrorKind::KeyFileUnreadable {
                path: path.to_path_buf(),
                source,
            },
        )
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o7777;
    if check_mode && mode & 0o077 != 0 {
        return Err(ctx.at(
            key,
            span,
            ConfigErrorKind::KeyFilePermissions {
                path: path.to_path_buf(),
                mode,
                access: describe_access(mode),
            },
        ));
    }
    let text = read_side_file(path).map_err(|e| match e {
        SideFileError::Io(source) => unreadable(source),
        SideFileError::TooLarge => ctx.at(
            key,
            span.clone(),
            ConfigErrorKind::TooLarge {
                path: path.to_path_buf(),
            },
        ),
        SideFileError::NotText => ctx.at(
            key,
            span.clone(),
            ConfigErrorKind::NotText {
                path: path.to_path_buf(),
            },
        ),
    })?;
    LicenseKey::parse(&text).map_err(|e| ctx.at(key, span, ConfigErrorKind::KeyShape(e)))
}

fn read_version_file(path: &Path) -> Result<String, ConfigErrorKind> {
    let text = read_side_file(path).map_err(|e| match e {
        SideFileError::Io(source) => ConfigErrorKind::VersionFileUnreadable {
            path: path.to_path_buf(),
            source,
        },
        SideFileError::TooLarge => ConfigErrorKind::TooLarge {
            path: path.to_path_buf(),
        },
        SideFileError::NotText => ConfigErrorKind::NotText {
            path: path.to_path_buf(),
        },
    })?;
    let v = text.trim();
    if v.is_empty() {
        return Err(ConfigErrorKind::VersionFileEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(v.to_string())
}

/// A TOML string literal (quotes and escapes done by the toml crate).
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

impl Config {
    /// Loads and validates the configuration file at `path`. The licence key
    /// may come from the systemd credential in `$CREDENTIALS_DIRECTORY`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::file(path, ConfigErrorKind::Missing));
            }
            Err(e) => return Err(ConfigError::file(path, ConfigErrorKind::Unreadable(e))),
        };
        Config::from_toml_str(&text, path)
    }

    /// Validates configuration `text` as if read from `path`. Key files,
    /// version files, CA files and `$CREDENTIALS_DIRECTORY` are read as by
    /// [`Config::load`].
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::from_toml_str_with(text, path, credentials_dir_from_env().as_deref())
    }

    /// As [`Config::from_toml_str`], with an explicit credentials directory
    /// (`None`: no systemd credentials) instead of `$CREDENTIALS_DIRECTORY`.
    pub fn from_toml_str_with(
        text: &str,
        path: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let ctx = Ctx { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;

        // The licence key: inline, key file, or systemd credential.
        let (license_key, key_source) = match (&raw.license_key, &raw.license_key_file) {
            (Some(_), Some(file)) => {
                return Err(ctx.val("license_key_file", file, ConfigErrorKind::KeyTwice));
            }
            (Some(k), None) => {
                if k.get_ref().contains("****") {
                    return Err(ctx.val("license_key", k, ConfigErrorKind::MaskedKey));
                }
                let key = LicenseKey::parse(k.get_ref())
                    .map_err(|e| ctx.val("license_key", k, ConfigErrorKind::KeyShape(e)))?;
                (Some(key), Some(KeySource::Inline))
            }
            (None, Some(f)) => {
                let file = absolute(&ctx, "license_key_file", f)?;
                let key = read_key_file(&ctx, "license_key_file", Some(f.span()), &file, true)?;
                (Some(key), Some(KeySource::File(file)))
            }
            (None, None) => match credentials_dir {
                Some(dir) => {
                    let file = dir.join(KEY_CREDENTIAL);
                    if file.exists() {
                        // systemd makes the credentials directory private to the
                        // service, so the file's own mode is not checked.
                        let key =
                            read_key_file(&ctx, "license.key credential", None, &file, false)?;
                        (Some(key), Some(KeySource::Credential(file)))
                    } else {
                        (None, None)
                    }
                }
                None => (None, None),
            },
        };

        let portal_url = match &raw.portal_url {
            Some(v) => portal_url(v.get_ref()).map_err(|k| ctx.val("portal_url", v, k))?,
            None => DEFAULT_PORTAL_URL.to_string(),
        };

        let ca_file = match &raw.ca_file {
            Some(v) => {
                let p = absolute(&ctx, "ca_file", v)?;
                let pem = read_side_file(&p).map_err(|e| {
                    let kind = match e {
                        SideFileError::Io(source) => ConfigErrorKind::CaFileUnreadable {
                            path: p.clone(),
                            source,
                        },
                        SideFileError::TooLarge => ConfigErrorKind::TooLarge { path: p.clone() },
                        SideFileError::NotText => ConfigErrorKind::NotText { path: p.clone() },
                    };
                    ctx.val("ca_file", v, kind)
                })?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(ctx.val("ca_file", v, ConfigErrorKind::CaFileNotPem { path: p }));
                }
                Some(p)
            }
            None => None,
        };

        let version = match (&raw.product_version, &raw.version_file) {
            (Some(_), Some(f)) => {
                return Err(ctx.val("version_file", f, ConfigErrorKind::VersionTwice));
            }
            (Some(v), None) => VersionSource::Fixed(word(&ctx, "product_version", v)?),
            (None, Some(f)) => {
                let p = absolute(&ctx, "version_file", f)?;
                read_version_file(&p).map_err(|k| ctx.val("version_file", f, k))?;
                VersionSource::File(p)
            }
            (None, None) => {
                return Err(ctx.at("product_version", None, ConfigErrorKind::VersionMissing));
            }
        };

        let channel = match &raw.channel {
            Some(v) => word(&ctx, "channel", v)?,
            None => DEFAULT_CHANNEL.to_string(),
        };
        let state_dir = match &raw.state_dir {
            Some(v) => absolute(&ctx, "state_dir", v)?,
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };
        let socket_path = match &raw.socket_path {
            Some(v) => absolute(&ctx, "socket_path", v)?,
            None => PathBuf::from(DEFAULT_SOCKET_PATH),
        };
        let socket_mode = match &raw.socket_mode {
            Some(v) => parse_socket_mode(v.get_ref()).map_err(|k| ctx.val("socket_mode", v, k))?,
            None => DEFAULT_SOCKET_MODE,
        };
        let socket_group = match &raw.socket_group {
            Some(v) => {
                let g = word(&ctx, "socket_group", v)?;
                // Found now, so that `--check-config` and a start say the same.
                if crate::host::group_id(&g).is_err() {
                    return Err(ctx.val("socket_group", v, ConfigErrorKind::UnknownGroup(g)));
                }
                Some(g)
            }
            None => None,
        };
        let proxy = match &raw.proxy {
            Some(v) => Some(proxy_url(v.get_ref()).map_err(|k| ctx.val("proxy", v, k))?),
            None => None,
        };

        let d = Schedule::default();
        let s = raw.schedule.as_ref();
        let pick = |f: fn(&RawSchedule) -> Option<&Sp<String>>| s.and_then(f);
        let schedule = Schedule {
            validate_interval: duration(
                &ctx,
                "schedule.validate_interval",
                pick(|s| s.validate_interval.as_ref()),
                d.validate_interval,
                false,
            )?,
            update_check_interval: duration(
                &ctx,
                "schedule.update_check_interval",
                pick(|s| s.update_check_interval.as_ref()),
                d.update_check_interval,
                false,
            )?,
            splay: duration(
                &ctx,
                "schedule.splay",
                pick(|s| s.splay.as_ref()),
                d.splay,
                true,
            )?,
            retry_initial: duration(
                &ctx,
                "schedule.retry_initial",
                pick(|s| s.retry_initial.as_ref()),
                d.retry_initial,
                false,
            )?,
            retry_max: duration(
                &ctx,
                "schedule.retry_max",
                pick(|s| s.retry_max.as_ref()),
                d.retry_max,
                false,
            )?,
            offline_grace: duration(
                &ctx,
                "schedule.offline_grace",
                pick(|s| s.offline_grace.as_ref()),
                d.offline_grace,
                false,
            )?,
            request_timeout: duration(
                &ctx,
                "schedule.request_timeout",
                pick(|s| s.request_timeout.as_ref()),
                d.request_timeout,
                false,
            )?,
        };
        if schedule.retry_initial > schedule.retry_max {
            let span = pick(|s| s.retry_initial.as_ref()).map(|v| v.span());
            return Err(ctx.at(
                "schedule.retry_initial",
                span,
                ConfigErrorKind::RetryOrder {
                    initial: format_duration(schedule.retry_initial),
                    max: format_duration(schedule.retry_max),
                },
            ));
        }

        let h = raw.hardware.as_ref();
        let hardware = Hardware {
            root: match h.and_then(|h| h.root.as_ref()) {
                Some(v) => absolute(&ctx, "hardware.root", v)?,
                None => Hardware::default().root,
            },
            id_file: match h.and_then(|h| h.id_file.as_ref()) {
                Some(v) => Some(absolute(&ctx, "hardware.id_file", v)?),
                None => None,
            },
        };

        Ok(Config {
            path: path.to_path_buf(),
            license_key,
            key_source,
            portal_url,
            ca_file,
            version,
            channel,
            state_dir,
            socket_path,
            socket_mode,
            socket_group,
            proxy,
            schedule,
            hardware,
        })
    }

    /// The product version: the fixed string, or the version file read now
    /// (trimmed; an empty file is an error).
    pub fn read_product_version(&self) -> Result<String, ConfigError> {
        match &self.version {
            VersionSource::Fixed(v) => Ok(v.clone()),
            VersionSource::File(p) => read_version_file(p).map_err(|kind| ConfigError {
                path: self.path.clone(),
                line: None,
                key: Some("version_file".into()),
                kind,
            }),
        }
    }

    /// The effective configuration as TOML that a person can read: defaults
    /// filled in, durations as strings, the licence key masked, a proxy
    /// password masked. Loading it again gives the same configuration, except
    /// that a masked inline key is refused as such.
    pub fn to_effective_toml(&self) -> String {
        let mut o = String::new();
        let mut line = |s: String| {
            o.push_str(&s);
            o.push('\n');
        };
        line(format!(
            "# Effective configuration, from {}",
            self.path.display()
        ));
        line("# (defaults filled in; the licence key is masked)".into());
        match (&self.key_source, &self.license_key) {
            (Some(KeySource::Inline), Some(k)) => {
                line(format!("license_key = {}", quote(&k.masked())))
            }
            (Some(KeySource::File(p)), Some(k)) => line(format!(
                "license_key_file = {}  # holds {}",
                quote_path(p),
                k.masked()
            )),
            (Some(KeySource::Credential(p)), Some(k)) => line(format!(
                "# licence key {} from the systemd credential {}",
                k.masked(),
                p.display()
            )),
            _ => line(
                "# no licence key configured (set one with `wispanel-license activate`)".into(),
            ),
        }
        line(format!("portal_url = {}", quote(&self.portal_url)));
        match &self.ca_file {
            Some(p) => line(format!("ca_file = {}", quote_path(p))),
            None => line("# ca_file: not set (system trust store only)".into()),
        }
        match &self.version {
            VersionSource::Fixed(v) => line(format!("product_version = {}", quote(v))),
            VersionSource::File(p) => line(format!("version_file = {}", quote_path(p))),
        }
        line(format!("channel = {}", quote(&self.channel)));
        line(format!("state_dir = {}", quote_path(&self.state_dir)));
        line(format!("socket_path = {}", quote_path(&self.socket_path)));
        line(format!(
            "socket_mode = {}",
            quote(&format!("{:04o}", self.socket_mode))
        ));
        match &self.socket_group {
            Some(g) => line(format!("socket_group = {}", quote(g))),
            None => line("# socket_group: not set (the daemon's own group)".into()),
        }
        match &self.proxy {
            Some(p) => line(format!("proxy = {}", quote(&masked_proxy(p)))),
            None => line("# proxy: not set (HTTPS_PROXY and NO_PROXY are honoured)".into()),
        }
        let s = &self.schedule;
        line(String::new());
        line("[schedule]".into());
        for (k, v) in [
            ("validate_interval", s.validate_interval),
            ("update_check_interval", s.update_check_interval),
            ("splay", s.splay),
            ("retry_initial", s.retry_initial),
            ("retry_max", s.retry_max),
            ("offline_grace", s.offline_grace),
            ("request_timeout", s.request_timeout),
        ] {
            line(format!("{k} = {}", quote(&format_duration(v))));
        }
        line(String::new());
        line("[hardware]".into());
        line(format!("root = {}", quote_path(&self.hardware.root)));
        match &self.hardware.id_file {
            Some(p) => line(format!("id_file = {}", quote_path(p))),
            None => {
                line("# id_file: not set (the id is computed from this host's hardware)".into())
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_with(text, Path::new("/etc/wispanel/license.toml"), None)
    }

    fn err(text: &str) -> ConfigError {
        match load(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    const MIN: &str = "product_version = \"1.4.2\"\n";

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
    fn minimal_config_gets_every_default() {
        let c = load(MIN).unwrap();
        assert_eq!(c.portal_url, "https://wispanel.com");
        assert_eq!(c.channel, "stable");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/wispanel-license"));
        assert_eq!(
            c.socket_path,
            PathBuf::from("/run/wispanel-license/status.sock")
        );
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.socket_group, None);
        assert_eq!(c.proxy, None);
        assert_eq!(c.ca_file, None);
        assert_eq!(c.license_key, None);
        assert_eq!(c.key_source, None);
        assert_eq!(c.version, VersionSource::Fixed("1.4.2".into()));
        assert_eq!(c.schedule, Schedule::default());
        assert_eq!(c.hardware, Hardware::default());
        assert_eq!(c.read_product_version().unwrap(), "1.4.2");
    }

    #[test]
    fn allowed_key_lists_match_the_serde_structs() {
        // Every listed key is accepted by serde (a wrong type is fine here:
        // it proves the field exists), so the "allowed" hint never lies.
        for (table, keys) in [
            ("", TOP_KEYS),
            ("schedule", SCHEDULE_KEYS),
            ("hardware", HARDWARE_KEYS),
        ] {
            for k in keys {
                let text = if table.is_empty() {
                    format!("{k} = 1\n")
                } else {
                    format!("[{table}]\n{k} = 1\n")
                };
                let e = err(&text);
                assert!(
                    !matches!(e.kind, ConfigErrorKind::UnknownKey { .. }),
                    "{k}: {e}"
                );
            }
        }
        // And a key not listed is unknown in each table.
        for text in [
            "bogus = 1\n",
            "[schedule]\nbogus = \"1s\"\n",
            "[hardware]\nbogus = \"/\"\n",
        ] {
            assert!(matches!(err(text).kind, ConfigErrorKind::UnknownKey { .. }));
        }
    }

    #[test]
    fn unknown_key_names_key_line_and_a_guess() {
        let e = err(
            "product_version = \"1\"\n\n[schedule]\nsplay = \"1m\"\nvalidate_intervall = \"1h\"\n",
        );
        assert_eq!(e.line, Some(5));
        assert_eq!(e.key.as_deref(), Some("schedule.validate_intervall"));
        let msg = e.to_string();
        assert!(
            msg.starts_with("/etc/wispanel/license.toml:5: schedule.validate_intervall: unknown key (did you mean \"validate_interval\"?)"),
            "{msg}"
        );
        assert!(msg.contains("retry_max"), "{msg}");

        let e = err("portal_url = \"https://x.example\"\nchanel = \"beta\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("chanel")));
        assert!(e.to_string().contains("did you mean \"channel\""), "{e}");

        // A whole unknown table, and an unrelated word without a guess.
        let e = err("[scheduel]\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("scheduel")));
        let e = err("product_version = \"1\"\nzzzzzz = 1\n");
        assert!(!e.to_string().contains("did you mean"), "{e}");
    }

    #[test]
    fn wrong_types_and_syntax() {
        let e = err("[schedule]\nsplay = 5\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("schedule.splay"))
        );
        let msg = e.to_string();
        assert!(
            msg.contains("invalid type") && msg.contains("\"15m\""),
            "{msg}"
        );

        let e = err("socket_mode = 0o660\n");
        assert!(
            e.to_string().contains("octal string such as \"0660\""),
            "{e}"
        );

        let e = err("schedule = 3\n");
        assert_eq!(e.key.as_deref(), Some("schedule"));

        let e = err("product_version = \"1\"\nchannel = \n");
        assert_eq!(e.line, Some(2));
        assert!(matches!(e.kind, ConfigErrorKind::Syntax(_)), "{e:?}");
        assert!(e.to_string().contains("not valid TOML"), "{e}");

        let e = err("channel = \"a\"\nchannel = \"b\"\n");
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("duplicate key"), "{e}");
    }

    #[test]
    fn durations_in_the_file() {
        let e = err("product_version = \"1\"\n[schedule]\nretry_max = \"1 hour\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("schedule.retry_max"))
        );
        let msg = e.to_string();
        assert!(msg.contains("\"1 hour\" is not a duration"), "{msg}");
        assert!(
            msg.contains("(s, m, h, d)") && msg.contains("\"1h30m\""),
            "{msg}"
        );

        let e = err("product_version = \"1\"\n[schedule]\nrequest_timeout = \"0s\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::DurationTooShort), "{e}");
        assert!(
            e.to_string()
                .contains("schedule.request_timeout: must be at least 1s")
        );

        let c = load("product_version = \"1\"\n[schedule]\nsplay = \"0s\"\n").unwrap();
        assert_eq!(c.schedule.splay, Duration::ZERO);

        let e = err(
            "product_version = \"1\"\n[schedule]\nretry_initial = \"2h\"\nretry_max = \"1h\"\n",
        );
        assert!(matches!(e.kind, ConfigErrorKind::RetryOrder { .. }), "{e}");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("0660").unwrap(), 0o660);
        assert_eq!(parse_socket_mode("666").unwrap(), 0o666);
        assert_eq!(parse_socket_mode("0o600").unwrap(), 0o600);
        assert_eq!(parse_socket_mode("0777").unwrap(), 0o777);
        assert!(matches!(
            parse_socket_mode("1777"),
            Err(ConfigErrorKind::SocketModeRange(_))
        ));
        for bad in ["", "0668", "rw-rw----", "0x1ff", "00660", "-660"] {
            assert!(
                matches!(
                    parse_socket_mode(bad),
                    Err(ConfigErrorKind::SocketModeSyntax(_))
                ),
                "{bad}"
            );
        }
        let e = err("product_version = \"1\"\nsocket_mode = \"0668\"\n");
        assert_eq!(
            e.to_string(),
            "/etc/wispanel/license.toml:2: socket_mode: \"0668\" is not an octal mode such as \"0660\""
        );
    }

    #[test]
    fn portal_urls() {
        assert_eq!(
            portal_url("https://wispanel.com/").unwrap(),
            "https://wispanel.com"
        );
        assert_eq!(
            portal_url("https://WisPanel.com").unwrap(),
            "https://wispanel.com"
        );
        assert_eq!(
            portal_url("https://example.com/portal/").unwrap(),
            "https://example.com/portal"
        );
        assert_eq!(
            portal_url("http://localhost:8080").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(
            portal_url("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            portal_url("http://127.8.9.10").unwrap(),
            "http://127.8.9.10"
        );
        assert_eq!(
            portal_url("http://[::1]:8443").unwrap(),
            "http://[::1]:8443"
        );
        for bad in [
            "http://wispanel.com",
            "http://10.0.0.1",
            "http://128.0.0.1",
            "http://[::2]",
            "http://localhost.example.com",
        ] {
            assert!(
                matches!(portal_url(bad), Err(ConfigErrorKind::InsecurePortal(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            portal_url("ftp://x.example"),
            Err(ConfigErrorKind::PortalScheme(_))
        ));
        assert!(matches!(
            portal_url("wispanel.com"),
            Err(ConfigErrorKind::NotUrl { .. })
        ));
        for bad in [
            "https://u:p@x.example",
            "https://x.example/?a=1",
            "https://x.example/#f",
        ] {
            assert!(
                matches!(portal_url(bad), Err(ConfigErrorKind::PortalExtras)),
                "{bad}"
            );
        }
    }

    #[test]
    fn proxies() {
        for good in [
            "http://proxy.example:3128",
            "https://p.example",
            "socks5://127.0.0.1:1080",
        ] {
            assert!(proxy_url(good).is_ok(), "{good}");
        }
        for bad in [
            "proxy.example:3128",
            "ftp://p.example",
            "socks4://p.example",
            "",
        ] {
            assert!(proxy_url(bad).is_err(), "{bad}");
        }
        let e = err("product_version = \"1\"\nproxy = \"ftp://user:hunter2@p.example\"\n");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            masked_proxy("http://u:hunter2@p.example:3128/"),
            "http://u:****@p.example:3128/"
        );
        assert_eq!(
            masked_proxy("http://p.example:3128"),
            "http://p.example:3128"
        );
    }

    #[test]
    fn inline_key_is_masked_and_refused_when_masked() {
        let c = load("license_key = \"WISP-AB12-CD34-SA6T\"\nproduct_version = \"1\"\n").unwrap();
        assert_eq!(c.key_source, Some(KeySource::Inline));
        let out = c.to_effective_toml();
        assert!(out.contains("license_key = \"WISP-****SA6T\""), "{out}");
        assert!(!out.contains("AB12"), "{out}");
        assert!(!format!("{c:?}").contains("AB12"));
        let e = Config::from_toml_str_with(&out, Path::new("/x.toml"), None).unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::MaskedKey), "{e}");

        let e = err("license_key = \"WISP-SECRET$KEY\"\nproduct_version = \"1\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("license_key")));
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn versions() {
        let e = err("channel = \"stable\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::VersionMissing));
        assert!(e.to_string().contains("product_version: neither product_version nor version_file is set; one of them is required"), "{e}");
        let e = err("product_version = \"1\"\nversion_file = \"/nonexistent/VERSION\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::VersionTwice), "{e}");
        let e = err("product_version = \"\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::Empty), "{e}");
        let e = err("version_file = \"VERSION\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::RelativePath(_)), "{e}");
    }

    #[test]
    fn paths_must_be_absolute() {
        for key in [
            "state_dir",
            "socket_path",
            "license_key_file",
            "ca_file",
            "version_file",
        ] {
            let version = if key == "version_file" { "" } else { MIN };
            let e = err(&format!("{version}{key} = \"relative/x\"\n"));
            assert_eq!(e.key.as_deref(), Some(key));
            assert!(matches!(e.kind, ConfigErrorKind::RelativePath(_)), "{e}");
        }
        let e = err(&format!("{MIN}[hardware]\nroot = \"sysroot\"\n"));
        assert_eq!(e.key.as_deref(), Some("hardware.root"));
    }

    #[test]
    fn access_descriptions() {
        assert_eq!(
            describe_access(0o644),
            "readable by its group and by others"
        );
        assert_eq!(describe_access(0o640), "readable by its group");
        assert_eq!(describe_access(0o602), "writable by others");
        assert_eq!(
            describe_access(0o664),
            "readable and writable by its group and readable by others"
        );
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        // The variable and the default are covered through the binaries.
        assert_eq!(
            resolve_config_path(Some(PathBuf::from("/srv/license.toml"))),
            PathBuf::from("/srv/license.toml")
        );
        let keys = known_keys();
        assert_eq!(keys.len(), 21);
        assert!(keys.contains(&"schedule.splay".to_string()));
        assert!(keys.contains(&"hardware.id_file".to_string()));
    }

    #[test]
    fn edit_distance_guesses() {
        assert_eq!(edit_distance("splay", "splay"), 0);
        assert_eq!(edit_distance("spaly", "splay"), 2);
        assert_eq!(closest("licence_key", TOP_KEYS), Some("license_key"));
        assert_eq!(closest("retry_maximum", SCHEDULE_KEYS), Some("retry_max"));
        assert_eq!(closest("id", HARDWARE_KEYS), Some("id_file"));
        assert_eq!(closest("zzz", TOP_KEYS), None);
    }
}
