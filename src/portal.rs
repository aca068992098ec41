//! The portal client: the five endpoints of PORTAL.md over HTTPS (reqwest with
//! rustls), turned into [`Classified`] answers by the core's classifier.
//!
//! The client never follows a redirect, bounds every exchange by
//! `request_timeout` (connect, headers and body), reads at most 1 MiB of a
//! body, and keeps the licence key in the request body only: never in a URL,
//! a header or a log line.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::net::proxy::{ProxyChoice, ProxyEnv, decide};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use wispanel_core::Endpoint;
use wispanel_core::ErrorKind;
use wispanel_core::classify::{self, BodyProblem, Classified, Exchange, MAX_BODY};
use wispanel_core::key::LicenseKey;
use wispanel_core::timestamp::Timestamp;

/// A new `Idempotency-Key` for an `activate`: a random UUID (version 4, text).
pub fn new_idempotency_key() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The `User-Agent` of every request.
pub fn user_agent() -> String {
    format!("wispanel-license/{}", env!("CARGO_PKG_VERSION"))
}

/// Why the client could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{path}: ca_file: cannot read the certificate: {source}")]
    CaRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: ca_file: not a PEM certificate: {message}")]
    CaParse { path: PathBuf, message: String },
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("cannot build the HTTPS client: {0}")]
    Build(String),
}

/// What one request carries; the key is exposed only here, into the body.
pub struct RequestFacts<'a> {
    pub key: &'a LicenseKey,
    pub hardware_id: &'a str,
    pub hostname: &'a str,
    pub product_version: &'a str,
    pub channel: &'a str,
    /// For `download/token`: the release wanted.
    pub version: Option<&'a str>,
}

/// The JSON body PORTAL.md assumes for `endpoint`.
pub fn request_body(endpoint: Endpoint, f: &RequestFacts<'_>) -> Value {
    let key = f.key.expose();
    match endpoint {
        Endpoint::Activate => json!({
            "license_key": key, "hardware_id": f.hardware_id,
            "hostname": f.hostname, "product_version": f.product_version,
        }),
        Endpoint::Validate => json!({
            "license_key": key, "hardware_id": f.hardware_id,
            "product_version": f.product_version,
        }),
        Endpoint::Deactivate => json!({"license_key": key, "hardware_id": f.hardware_id}),
        Endpoint::CheckUpdate => json!({
            "license_key": key, "hardware_id": f.hardware_id,
            "current_version": f.product_version, "channel": f.channel,
        }),
        Endpoint::Token => json!({
            "license_key": key, "hardware_id": f.hardware_id,
            "version": f.version.unwrap_or(f.product_version),
        }),
    }
}

/// Sets `b` to go through the proxy `choice` names, or through none: reqwest
/// is never left to read the environment by itself, so the client does what
/// [`decide`] said (and `doctor` reports).
pub fn with_proxy(
    b: reqwest::ClientBuilder,
    choice: &ProxyChoice,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    Ok(match choice.url() {
        Some(url) => b.no_proxy().proxy(reqwest::Proxy::all(url)?),
        None => b.no_proxy(),
    })
}

/// A client bound to one portal.
#[derive(Clone)]
pub struct PortalClient {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    /// Decided once, when the client is built, by [`decide`].
    proxy: ProxyChoice,
}

impl PortalClient {
    /// Builds the client from the configuration: base URL, `ca_file`, `proxy`
    /// (else `HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` from this process's
    /// environment, as [`decide`] says), `request_timeout`.
    pub fn new(config: &Config) -> Result<PortalClient, SetupError> {
        Self::build(
            &config.portal_url,
            config.ca_file.as_deref(),
            config.proxy.as_deref(),
            config.schedule.request_timeout,
        )
    }

    pub fn build(
        base: &str,
        ca_file: Option<&std::path::Path>,
        proxy: Option<&str>,
        timeout: Duration,
    ) -> Result<PortalClient, SetupError> {
        let mut b = reqwest::Client::builder()
            .user_agent(user_agent())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1);
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|source| SetupError::CaRead {
                path: path.to_path_buf(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SetupError::CaParse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(SetupError::CaParse {
                    path: path.to_path_buf(),
                    message: "no certificate found in the file".into(),
                });
            }
            b = b.tls_certs_merge(certs);
        }
        let proxy = decide(proxy, &ProxyEnv::from_process(), base);
        b = with_proxy(b, &proxy).map_err(|e| SetupError::Proxy(e.to_string()))?;
        let http = b.build().map_err(|e| SetupError::Build(error_chain(&e)))?;
        Ok(PortalClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            timeout,
            proxy,
        })
    }

    /// The proxy this client's requests go through (`portal.proxy`).
    pub fn proxy(&self) -> &ProxyChoice {
        &self.proxy
    }

    /// The portal's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// POSTs `body` to `endpoint` and classifies whatever happens at the
    /// system's time. Never fails: every failure is a classified non-verdict.
    pub async fn call(&self, endpoint: Endpoint, body: &Value) -> Classified {
        self.exchange(endpoint, body, None, &SystemClock).await
    }

    /// As [`PortalClient::call`], with an `Idempotency-Key` header when given
    /// (every `activate` carries one, SPEC "Activation in doubt"), the answer
    /// classified at `clock`'s time: the daemon passes its own clock, so a
    /// `Retry-After` gate and the deadlines are in the time the daemon
    /// schedules with, whatever clock that is.
    pub async fn exchange(
        &self,
        endpoint: Endpoint,
        body: &Value,
        idempotency_key: Option<&str>,
        clock: &dyn Clock,
    ) -> Classified {
        let url = format!("{}{}", self.base, endpoint.path());
        let deadline = Instant::now() + self.timeout;
        let mut request = self
            .http
            .post(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        let sent = tokio::time::timeout_at(deadline, request.body(body.to_string()).send()).await;
        let now = clock.now();
        let resp = match sent {
            Err(_) => return failed(endpoint, ErrorKind::Timeout, self.timeout_message(), now),
            Ok(Err(e)) => {
                let (kind, msg) = transport_error(&e);
                return failed(endpoint, kind, msg, now);
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let (body, problem) = read_capped(resp, deadline).await;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        classify::classify(
            endpoint,
            &Exchange::Answer {
                status,
                header: &header,
                body: &body,
                body_problem: problem,
            },
            clock.now(),
        )
    }

    fn timeout_message(&self) -> String {
        format!(
            "no complete answer within request_timeout ({} s)",
            self.timeout.as_secs_f64()
        )
    }

    /// Starts a GET for a release download; the caller streams the body.
    pub async fn get(&self, url: &str) -> Result<reqwest::Response, (ErrorKind, String)> {
        self.http
            .get(url)
            .send()
            .await
            .map_err(|e| transport_error(&e))
    }

    /// The underlying HTTP client (the download streams through it).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

fn failed(endpoint: Endpoint, kind: ErrorKind, message: String, now: Timestamp) -> Classified {
    classify::classify(endpoint, &Exchange::Failed { kind, message }, now)
}

/// Reads at most [`MAX_BODY`] bytes before `deadline`.
async fn read_capped(
    mut resp: reqwest::Response,
    deadline: Instant,
) -> (Vec<u8>, Option<BodyProblem>) {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Err(_) => return (body, Some(BodyProblem::TimedOut)),
            Ok(Ok(None)) => return (body, None),
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return (body, Some(BodyProblem::TooLarge));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Err(e)) if e.is_timeout() => return (body, Some(BodyProblem::TimedOut)),
            Ok(Err(e)) => return (body, Some(BodyProblem::Cut(error_chain(&e)))),
        }
    }
}

/// The error and its sources, one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let t = src.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = src.source();
    }
    s
}

fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<tokio_rustls::rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| {
                inner
                    .downcast_ref::<tokio_rustls::rustls::Error>()
                    .is_some()
            })
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Maps a transport failure to SPEC's kinds: timeout, tls, connect.
pub fn transport_error(e: &reqwest::Error) -> (ErrorKind, String) {
    let msg = error_chain(e);
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if is_tls(e) {
        ErrorKind::Tls
    } else {
        // A close after the handshake ("without sending TLS close_notify") is a
        // close before the status line: `connect`, not `tls`.
        let lower = msg.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("handshake") {
            ErrorKind::Tls
        } else {
            ErrorKind::Connect
        }
    };
    (kind, msg)
}

#[cfg(test)]
mod idempotency_key_tests {
    use super::new_idempotency_key;

    #[test]
    fn idempotency_keys_are_v4_uuids_and_differ() {
        let a = new_idempotency_key();
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_eq!(&a[14..15], "4", "version 4: {a}");
        assert!("89ab".contains(&a[19..20]), "RFC 4122 variant: {a}");
        assert_ne!(a, new_idempotency_key());
    }
}
