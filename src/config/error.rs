//! What is wrong with a configuration, and where: [`ConfigError`].

use super::{DURATION_FORMS, DurationError, MAX_SIDE_FILE};
use std::path::{Path, PathBuf};

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

    pub(super) fn file(path: &Path, kind: ConfigErrorKind) -> ConfigError {
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
    #[error("must name a file, not a directory: {0:?}")]
    NotAFileName(String),
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
    #[error("{value} is out of range: write a whole number from {min} to {max}")]
    CountRange { value: i64, min: usize, max: usize },
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaFileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    CaFileNotPem { path: PathBuf },
}
