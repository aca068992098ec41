//! Fetching a release: `wispanel-license update download`.
//!
//! The steps: hardware_id and key (the configuration's, else the one saved by
//! `activate`); the daemon's saved portal gate is respected; `check-update`
//! names the latest release unless a version was asked for; `download/token`
//! gives a URL, a size and a SHA-256; the URL is streamed (never the whole
//! file in memory) into `.<name>.part-<pid>` beside the target, refusing more
//! bytes than announced and a body that stalls for `request_timeout`; only a
//! file of the right size and digest is fsynced and renamed to its final
//! name, so that name never holds a partial or unverified file. Any failure
//! removes the temporary file.

use crate::config::{Config, ConfigError};
use crate::hwid::{self, HwidError};
use crate::portal::{PortalClient, RequestFacts, SetupError, error_chain, request_body};
use crate::store::{STATE_FILE, Store, StoreError};
use sha2::{Digest, Sha256};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use url::Url;
use wispanel_core::classify::{Classified, Outcome, TokenAnswer};
use wispanel_core::gate::GateClose;
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::Core;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::version::{Version, VersionError};
use wispanel_core::{Endpoint, ErrorKind, PortalError, UpdateState};

/// The longest a whole download may take, however steadily bytes arrive
/// (the stall limit, `request_timeout` without a byte, is the usual bound).
pub const DOWNLOAD_CEILING: Duration = Duration::from_secs(24 * 3600);
/// Redirects followed for the release URL (a CDN may sit behind the portal).
pub const MAX_REDIRECTS: usize = 5;
/// Bytes of an error answer's body read for its message.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Told how far the transfer has come.
pub trait Progress: Send {
    /// `done` of `total` bytes have been written (called after every chunk).
    fn update(&mut self, done: u64, total: u64);
    /// The transfer has ended, well or not.
    fn finish(&mut self) {}
}

/// A verified release in its final place.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Downloaded {
    pub path: PathBuf,
    /// The version asked for (or the latest the portal named).
    pub version: String,
    /// Lowercase hex SHA-256 of the file (equal to the portal's).
    pub sha256: String,
    pub size: u64,
}

/// Why a download did not give a verified file. Each message says what went
/// wrong, where, and what to do; none holds the licence key or the token.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("--version: {0}")]
    BadVersion(VersionError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("hardware_id: {0}")]
    Hwid(#[from] HwidError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "no licence key: set license_key or license_key_file in {}, or run `wispanel-license activate` first",
        config.display()
    )]
    NoKey { config: PathBuf },
    #[error("cannot set up the portal client: {0}")]
    Setup(#[from] SetupError),
    #[error(
        "the portal asked this host to wait until {until} (the gate saved in {}); try again after that time",
        state.display()
    )]
    GateClosed { until: Timestamp, state: PathBuf },
    #[error(
        "{endpoint}: the portal refused ({code}; update state {state}): {message}. {}",
        advice(*state)
    )]
    Refused {
        endpoint: Endpoint,
        state: UpdateState,
        code: String,
        message: String,
    },
    #[error("{endpoint}: {}", PortalFailure(error, *retry_at))]
    Portal {
        endpoint: Endpoint,
        error: PortalError,
        /// When the portal said to try again (a 429 or a 503 with `Retry-After`).
        retry_at: Option<Timestamp>,
    },
    #[error("{endpoint}: unexpected answer from the portal")]
    Unexpected { endpoint: Endpoint },
    #[error("check_update: the portal named no latest version; ask for one with --version V")]
    NoLatest,
    #[error("{}: cannot use it as the download directory: {problem}", dir.display())]
    Dir { dir: PathBuf, problem: String },
    #[error("token: the release URL {url:?} is not usable: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("GET {url}: {}: {message}", kind.as_str())]
    Transfer {
        url: String,
        kind: ErrorKind,
        message: String,
    },
    #[error("GET {url}: HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "GET {url}: no data for {} s (request_timeout) after {got} of {size} bytes; the partial file was removed; try again",
        secs.as_secs_f64()
    )]
    Stalled {
        url: String,
        secs: Duration,
        got: u64,
        size: u64,
    },
    #[error(
        "GET {url}: the transfer broke after {got} of {size} bytes: {message}; the partial file was removed; try again"
    )]
    Cut {
        url: String,
        got: u64,
        size: u64,
        message: String,
    },
    #[error(
        "GET {url}: the body ended after {got} of the {size} bytes the portal announced; the partial file was removed; try again"
    )]
    Short { url: String, got: u64, size: u64 },
    #[error(
        "GET {url}: the server sent more than the {size} bytes the portal announced{}; the partial file was removed",
        announced.map(|n| format!(" (Content-Length {n})")).unwrap_or_default()
    )]
    TooLarge {
        url: String,
        size: u64,
        announced: Option<u64>,
    },
    #[error(
        "{}: SHA-256 mismatch: the portal announced {expected:.16}…, the file has {got:.16}…; the downloaded file was deleted; try again, and report it if it persists",
        file.display()
    )]
    Checksum {
        file: PathBuf,
        expected: String,
        got: String,
    },
    #[error("{}: {action}: {source}; the partial file was removed", path.display())]
    Write {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

impl DownloadError {
    /// The portal's code, for a refusal or a failed request that carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            DownloadError::Refused { code, .. } => Some(code),
            DownloadError::Portal { error, .. } => error.code.as_deref(),
            _ => None,
        }
    }

    /// Whether this is a usage mistake (exit 2) rather than a failure (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, DownloadError::BadVersion(_))
    }
}

/// What to do about a download refusal.
fn advice(state: UpdateState) -> &'static str {
    match state {
        UpdateState::UpdatesExpired => {
            "This licence no longer includes updates: renew its update entitlement with WisPanel, then try again"
        }
        UpdateState::VersionTooLow => {
            "This panel version is too old to update automatically: upgrade it by hand first"
        }
        UpdateState::NotEntitled => {
            "The portal does not accept this key on this host: check `wispanel-license status`, and activate the key on this host"
        }
        _ => "Check `wispanel-license status`",
    }
}

struct PortalFailure<'a>(&'a PortalError, Option<Timestamp>);

impl fmt::Display for PortalFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "no answer to act on ({}", e.kind.as_str())?;
        if let Some(s) = e.http_status {
            write!(f, ", HTTP {s}")?;
        }
        if let Some(c) = &e.code {
            write!(f, ", {c}")?;
        }
        write!(f, "): {}", e.message)?;
        match self.1 {
            Some(t) => write!(f, "; the portal asks to wait: try again after {t}"),
            None => f.write_str("; try again later"),
        }
    }
}

/// Downloads release `version` (default: the latest the portal names) into
/// `dir`, verifies its size and SHA-256, and returns where it is.
pub async fn download(
    config: &Config,
    version: Option<&str>,
    dir: &Path,
    mut progress: Option<&mut dyn Progress>,
) -> Result<Downloaded, DownloadError> {
    let requested = match version {
        Some(v) => {
            Version::parse(v).map_err(DownloadError::BadVersion)?;
            let v = v.trim();
            Some(v.strip_prefix(['v', 'V']).unwrap_or(v).to_string())
        }
        None => None,
    };
    check_dir(dir)?;
    let current = config.read_product_version()?;
    let hardware_id = hwid::compute_from_env(&config.hardware)?.id;
    let key = licence_key(config)?;
    if let Some((until, state)) = saved_gate(&config.state_dir, crate::clock::now()) {
        return Err(DownloadError::GateClosed { until, state });
    }
    let client = PortalClient::new(config)?;
    let mut facts = RequestFacts {
        key: &key,
        hardware_id: &hardware_id,
        hostname: "",
        product_version: &current,
        channel: &config.channel,
        version: None,
    };

    let version = match requested {
        Some(v) => v,
        None => {
            let body = request_body(Endpoint::CheckUpdate, &facts);
            let answer = client.call(Endpoint::CheckUpdate, &body).await;
            match portal_outcome(Endpoint::CheckUpdate, answer)? {
                Outcome::Update(a) => match a.latest_version {
                    Some(v) if !v.trim().is_empty() => v.trim().to_string(),
                    _ => return Err(DownloadError::NoLatest),
                },
                _ => {
                    return Err(DownloadError::Unexpected {
                        endpoint: Endpoint::CheckUpdate,
                    });
                }
            }
        }
    };

    facts.version = Some(&version);
    let body = request_body(Endpoint::Token, &facts);
    let answer = client.call(Endpoint::Token, &body).await;
    let token = match portal_outcome(Endpoint::Token, answer)? {
        Outcome::Token(t) => t,
        _ => {
            return Err(DownloadError::Unexpected {
                endpoint: Endpoint::Token,
            });
        }
    };

    let url = release_url(client.base_url(), &token.url)?;
    let name = file_name(&url, &version);
    let target = dir.join(&name);
    let part = dir.join(format!(".{name}.part-{}", std::process::id()));
    let timeout = config.schedule.request_timeout;

    let resp = fetch(&client, url, timeout).await?;
    let shown = shown_url(resp.url());
    let mut guard = PartFile::create(&part).await?;
    let result = stream(
        resp,
        &mut guard,
        &token,
        (&shown, &target),
        timeout,
        &mut progress,
    )
    .await;
    if let Some(p) = progress {
        p.finish();
    }
    let sha256 = result?;
    guard.place(&target).await?;
    Ok(Downloaded {
        path: target,
        version,
        sha256,
        size: token.size,
    })
}

/// The outcome of a portal request, or the error it means here.
fn portal_outcome(endpoint: Endpoint, c: Classified) -> Result<Outcome, DownloadError> {
    match c.outcome {
        Outcome::UpdateRefused { state, reason } => Err(DownloadError::Refused {
            endpoint,
            state,
            code: reason.code,
            message: reason.message,
        }),
        // A licence endpoint's refusal cannot come from a download endpoint;
        // read it as "not entitled" all the same.
        Outcome::Refused { reason, .. } => Err(DownloadError::Refused {
            endpoint,
            state: UpdateState::NotEntitled,
            code: reason.code,
            message: reason.message,
        }),
        Outcome::Failed(error) => Err(DownloadError::Portal {
            endpoint,
            error,
            retry_at: match c.gate {
                Some(GateClose::Until(t)) => Some(t),
                _ => None,
            },
        }),
        other => Ok(other),
    }
}

fn check_dir(dir: &Path) -> Result<(), DownloadError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(DownloadError::Dir {
            dir: dir.to_path_buf(),
            problem: "not a directory".into(),
        }),
        Err(e) => Err(DownloadError::Dir {
            dir: dir.to_path_buf(),
            problem: e.to_string(),
        }),
    }
}

/// The configured key, else the one `activate` saved in `state_dir`.
fn licence_key(config: &Config) -> Result<LicenseKey, DownloadError> {
    if let Some(k) = &config.license_key {
        return Ok(k.clone());
    }
    // Never create the state directory from the CLI: it is the daemon's.
    if config.state_dir.is_dir()
        && let Some(k) = Store::open(&config.state_dir)?.load_key()?
    {
        return Ok(k);
    }
    Err(DownloadError::NoKey {
        config: config.path.clone(),
    })
}

/// The portal gate the daemon saved, while it is closed. An unreadable or
/// missing state file closes nothing: the portal would say so itself.
fn saved_gate(state_dir: &Path, now: Timestamp) -> Option<(Timestamp, PathBuf)> {
    let path = state_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let core: Core = Store::parse(&text, &path).ok()?;
    core.gate_closed_until(now).map(|t| (t, path))
}

/// The token's URL, resolved against the portal (it may be relative); https
/// only, plain http only to a loopback host (as for `portal_url`).
fn release_url(base: &str, raw: &str) -> Result<Url, DownloadError> {
    let bad = |problem: String| DownloadError::BadUrl {
        url: shown_str(raw),
        problem,
    };
    let base = Url::parse(&format!("{base}/")).map_err(|e| bad(format!("portal_url: {e}")))?;
    let url = base.join(raw).map_err(|e| bad(e.to_string()))?;
    check_scheme(&url).map_err(bad)?;
    Ok(url)
}

fn check_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("plain http is refused except to a loopback host".into())
            }
        }
        other => Err(format!("the scheme {other:?} is not https")),
    }
}

/// A URL for messages: without its query (the token) and fragment.
fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn shown_str(raw: &str) -> String {
    let cut = raw.split(['?', '#']).next().unwrap_or_default();
    cut.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The file name: the URL's last path segment when it is a plain name
/// (`[A-Za-z0-9._+-]`, not starting with a dot, at most 200 bytes), else
/// `wispanel-<version>.tar.gz`.
pub fn file_name(url: &Url, version: &str) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    if is_plain_name(last) {
        return last.to_string();
    }
    let v: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let name = format!("wispanel-{v}.tar.gz");
    if is_plain_name(&name) && !name.contains("..") {
        name
    } else {
        "wispanel-release.tar.gz".into()
    }
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// GETs `url`, following at most [`MAX_REDIRECTS`] redirects (https only),
/// until a 2xx with its headers; headers must come within `timeout`.
async fn fetch(
    client: &PortalClient,
    mut url: Url,
    timeout: Duration,
) -> Result<reqwest::Response, DownloadError> {
    for _ in 0..=MAX_REDIRECTS {
        let shown = shown_url(&url);
        let sent = tokio::time::timeout(
            timeout,
            client
                .http()
                .get(url.clone())
                // The client's own timeout is `request_timeout` for the whole
                // exchange; a release takes longer. Stalls are caught per chunk.
                .timeout(DOWNLOAD_CEILING)
                .send(),
        )
        .await;
        let resp = match sent {
            Err(_) => {
                return Err(DownloadError::Transfer {
                    url: shown,
                    kind: ErrorKind::Timeout,
                    message: format!(
                        "no answer within request_timeout ({} s)",
                        timeout.as_secs_f64()
                    ),
                });
            }
            Ok(Err(e)) => {
                let (kind, message) = crate::portal::transport_error(&e);
                return Err(DownloadError::Transfer {
                    url: shown,
                    kind,
                    message: scrub(&message, &url),
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status.is_redirection()
            && let Some(loc) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
        {
            let next = url.join(loc).map_err(|e| DownloadError::BadUrl {
                url: shown_str(loc),
                problem: format!("redirect from {shown}: {e}"),
            })?;
            check_scheme(&next).map_err(|problem| DownloadError::BadUrl {
                url: shown_str(loc),
                problem: format!("redirect from {shown}: {problem}"),
            })?;
            url = next;
            continue;
        }
        let message = error_message(resp, timeout).await;
        return Err(DownloadError::Http {
            url: shown,
            status: status.as_u16(),
            message,
        });
    }
    Err(DownloadError::Transfer {
        url: shown_url(&url),
        kind: ErrorKind::Http,
        message: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

/// Removes the token (the URL's query) from a transport error's text.
fn scrub(message: &str, url: &Url) -> String {
    match url.query() {
        Some(q) if !q.is_empty() => message.replace(q, "…"),
        _ => message.to_string(),
    }
}

/// The message of an error answer (its JSON `message` or `error`), briefly.
async fn error_message(mut resp: reqwest::Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(timeout, resp.chunk()).await {
            Ok(Ok(Some(c))) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    let v: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let field = |name: &str| {
        v.as_ref()
            .and_then(|v| v.get(name))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    };
    let text = match (field("message").or_else(|| field("error")), field("code")) {
        (Some(m), Some(c)) => format!("{m} ({c})"),
        (Some(m), None) => m,
        (None, Some(c)) => c,
        (None, None) => resp
            .status()
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_string(),
    };
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// Streams the body into the part file; returns the SHA-256 once the size
/// and the digest are right.
async fn stream(
    mut resp: reqwest::Response,
    part: &mut PartFile,
    token: &TokenAnswer,
    (url, target): (&str, &Path),
    timeout: Duration,
    progress: &mut Option<&mut dyn Progress>,
) -> Result<String, DownloadError> {
    let size = token.size;
    if let Some(n) = resp.content_length()
        && n > size
    {
        return Err(DownloadError::TooLarge {
            url: url.to_string(),
            size,
            announced: Some(n),
        });
    }
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    if let Some(p) = progress.as_deref_mut() {
        p.update(0, size);
    }
    loop {
        let chunk = match tokio::time::timeout(timeout, resp.chunk()).await {
            Err(_) => {
                return Err(DownloadError::Stalled {
                    url: url.to_string(),
                    secs: timeout,
                    got,
                    size,
                });
            }
            Ok(Err(e)) => {
                return Err(DownloadError::Cut {
                    url: url.to_string(),
                    got,
                    size,
                    message: shown_str(&error_chain(&e)),
                });
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        let len = chunk.len() as u64;
        if got.saturating_add(len) > size {
            return Err(DownloadError::TooLarge {
                url: url.to_string(),
                size,
                announced: resp.content_length(),
            });
        }
        hasher.update(&chunk);
        part.write(&chunk).await?;
        got += len;
        if let Some(p) = progress.as_deref_mut() {
            p.update(got, size);
        }
    }
    if got < size {
        return Err(DownloadError::Short {
            url: url.to_string(),
            got,
            size,
        });
    }
    let digest = hex(&hasher.finalize());
    if digest != token.sha256 {
        return Err(DownloadError::Checksum {
            file: target.to_path_buf(),
            expected: token.sha256.clone(),
            got: digest,
        });
    }
    Ok(digest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The temporary file; removed when dropped unless it was placed.
struct PartFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl PartFile {
    /// Creates `path` (mode 0600 until verified) without following a symlink
    /// or reusing a file someone else made; a leftover of a dead process with
    /// our pid is replaced.
    async fn create(path: &Path) -> Result<PartFile, DownloadError> {
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let open = || options.open(path);
        let file = match open().await {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = tokio::fs::remove_file(path).await;
                open().await
            }
            other => other,
        }
        .map_err(|source| DownloadError::Write {
            path: path.to_path_buf(),
            action: "cannot create the temporary file",
            source,
        })?;
        Ok(PartFile {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    fn err(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> DownloadError + use<> {
        let path = self.path.clone();
        move |source| DownloadError::Write {
            path,
            action,
            source,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), DownloadError> {
        let err = self.err("cannot write");
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes).await.map_err(err),
            None => Ok(()),
        }
    }

    /// fsync, mode 0644, rename to `target`, fsync the directory.
    async fn place(&mut self, target: &Path) -> Result<(), DownloadError> {
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        f.flush().await.map_err(self.err("cannot write"))?;
        f.sync_all().await.map_err(self.err("cannot fsync"))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .await
            .map_err(self.err("cannot set mode 0644"))?;
        drop(f);
        tokio::fs::rename(&self.path, target)
            .await
            .map_err(|source| DownloadError::Write {
                path: target.to_path_buf(),
                action: "cannot rename the verified file into place",
                source,
            })?;
        // Placed: nothing left to remove.
        self.path = PathBuf::new();
        if let Some(dir) = target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = tokio::fs::File::open(dir).await {
                // The file is complete and in place; a directory that cannot
                // be fsynced (some file systems) is not worth failing over.
                let _ = d.sync_all().await;
            }
        }
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn file_names_are_sanitised() {
        let v = "1.5.0";
        for (u, want) in [
            (
                "https://p/releases/wispanel-1.5.0.tar.gz?token=x",
                "wispanel-1.5.0.tar.gz",
            ),
            (
                "https://p/releases/a%2F..%2Fb?token=x",
                "wispanel-1.5.0.tar.gz",
            ),
            ("https://p/releases/..", "wispanel-1.5.0.tar.gz"),
            ("https://p/releases/.hidden", "wispanel-1.5.0.tar.gz"),
            ("https://p/releases/", "wispanel-1.5.0.tar.gz"),
            ("https://p", "wispanel-1.5.0.tar.gz"),
            ("https://p/x/panel_1.5+b.tgz", "panel_1.5+b.tgz"),
        ] {
            assert_eq!(file_name(&url(u), v), want, "{u}");
        }
        assert_eq!(
            file_name(&url("https://p/"), "../../x"),
            "wispanel-release.tar.gz"
        );
        assert_eq!(file_name(&url("https://p/"), "1/2"), "wispanel-1_2.tar.gz");
    }

    #[test]
    fn release_urls_resolve_and_need_https() {
        let u = release_url("https://portal.example", "/releases/a.tgz?token=t").unwrap();
        assert_eq!(u.as_str(), "https://portal.example/releases/a.tgz?token=t");
        let u = release_url("http://127.0.0.1:9", "http://127.0.0.1:9/r/a.tgz").unwrap();
        assert_eq!(u.host_str(), Some("127.0.0.1"));
        let e = release_url("https://p", "http://cdn.example/a.tgz?token=secret").unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = release_url("https://p", "ftp://cdn.example/a.tgz").unwrap_err();
        assert!(e.to_string().contains("\"ftp\""), "{e}");
    }

    #[test]
    fn shown_urls_hide_the_token() {
        assert_eq!(
            shown_url(&url("https://p/r/a.tgz?token=secret#x")),
            "https://p/r/a.tgz"
        );
        assert_eq!(shown_str("https://p/r?token=secret"), "https://p/r");
    }

    #[test]
    fn refusals_name_the_code_and_what_to_do() {
        let e = DownloadError::Refused {
            endpoint: Endpoint::Token,
            state: UpdateState::UpdatesExpired,
            code: "UPDATES_EXPIRED".into(),
            message: "Updates are no longer included".into(),
        };
        let text = e.to_string();
        assert!(text.contains("UPDATES_EXPIRED"), "{text}");
        assert!(text.contains("renew"), "{text}");
        assert_eq!(e.code(), Some("UPDATES_EXPIRED"));
    }

    #[test]
    fn checksum_message_shows_prefixes() {
        let e = DownloadError::Checksum {
            file: PathBuf::from("/d/.x.part-1"),
            expected: "a".repeat(64),
            got: "b".repeat(64),
        };
        let text = e.to_string();
        assert!(text.contains(&format!("{}…", "a".repeat(16))), "{text}");
        assert!(text.contains(&format!("{}…", "b".repeat(16))), "{text}");
        assert!(!text.contains(&"a".repeat(17)), "{text}");
        assert!(text.contains("deleted"), "{text}");
    }
}
