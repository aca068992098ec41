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

/// Everything a [`PortalClient`] is built from, read from the configuration
/// and the environment: two equal setups make equivalent clients, so a reload
/// that leaves it unchanged keeps the running client (see [`ClientCache`]).
/// The `ca_file`'s content is part of it: a certificate replaced in place
/// takes effect on the next reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSetup {
    base: String,
    ca_file: Option<PathBuf>,
    ca_pem: Option<Vec<u8>>,
    proxy: ProxyChoice,
    timeout: Duration,
}

impl ClientSetup {
    /// Reads `ca_file` and decides the proxy ([`decide`], with this process's
    /// environment).
    pub fn read(
        base: &str,
        ca_file: Option<&std::path::Path>,
        proxy: Option<&str>,
        timeout: Duration,
    ) -> Result<ClientSetup, SetupError> {
        let ca_pem = match ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| SetupError::CaRead {
                path: path.to_path_buf(),
                source,
            })?),
            None => None,
        };
        Ok(ClientSetup {
            base: base.trim_end_matches('/').to_string(),
            ca_file: ca_file.map(std::path::Path::to_path_buf),
            ca_pem,
            proxy: decide(proxy, &ProxyEnv::from_process(), base),
            timeout,
        })
    }

    pub fn from_config(config: &Config) -> Result<ClientSetup, SetupError> {
        Self::read(
            &config.portal_url,
            config.ca_file.as_deref(),
            config.proxy.as_deref(),
            config.schedule.request_timeout,
        )
    }
}

/// The daemon's client, kept across reloads while its [`ClientSetup`] is
/// unchanged: building one loads and parses the system's CA bundle for the
/// platform verifier, which on every SIGHUP cost time and left memory behind.
#[derive(Default)]
pub struct ClientCache {
    last: std::sync::Mutex<Option<(ClientSetup, std::sync::Arc<PortalClient>)>>,
    builds: std::sync::atomic::AtomicUsize,
}

impl ClientCache {
    /// The client for `config`: the previous one when its setup is the same,
    /// else a new one (which replaces it).
    pub fn client(&self, config: &Config) -> Result<std::sync::Arc<PortalClient>, SetupError> {
        let setup = ClientSetup::from_config(config)?;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, c)) = last.as_ref()
            && *s == setup
        {
            return Ok(c.clone());
        }
        let client = std::sync::Arc::new(PortalClient::from_setup(&setup)?);
        self.builds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *last = Some((setup, client.clone()));
        Ok(client)
    }

    /// How many clients this cache has built.
    pub fn builds(&self) -> usize {
        self.builds.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The HTTPS client of every portal request, the daemon's and `doctor`'s:
/// the user agent, no redirects, `timeout` to connect and for the whole
/// request, the certificates of `ca_file` added, and the `proxy` decided.
pub fn http_client(
    ca_file: Option<&std::path::Path>,
    proxy: &ProxyChoice,
    timeout: Duration,
) -> Result<reqwest::Client, SetupError> {
    let pem = match ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|source| SetupError::CaRead {
            path: path.to_path_buf(),
            source,
        })?),
        None => None,
    };
    http_client_with(ca_file.zip(pem.as_deref()), proxy, timeout)
}

/// The part of `request_timeout` that name resolution, the TCP connect, a
/// proxy's tunnel and the TLS handshake may take: nine tenths of it, so that
/// a connection that never completes (a black hole, a resolver that does not
/// answer) ends as a connect timeout, which reqwest marks `is_connect`:
/// nothing was sent, and an `activate` is not put in doubt. With the whole
/// timeout for both, the whole request's deadline fired first and such a
/// failure could not be told from an answer lost after the request.
pub fn connect_timeout(timeout: Duration) -> Duration {
    timeout - timeout / 10
}

/// [`http_client`] with the `ca_file`'s content already read (its path names
/// it in errors).
fn http_client_with(
    ca: Option<(&std::path::Path, &[u8])>,
    proxy: &ProxyChoice,
    timeout: Duration,
) -> Result<reqwest::Client, SetupError> {
    let mut b = reqwest::Client::builder()
        .user_agent(user_agent())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout(timeout))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1);
    let extra = match ca {
        Some((path, pem)) => {
            crate::net::tls::pem_certificates(pem).map_err(|message| SetupError::CaParse {
                path: path.to_path_buf(),
                message,
            })?
        }
        None => Vec::new(),
    };
    b = b.tls_backend_preconfigured(
        tls_config(extra).map_err(|e| SetupError::Build(e.to_string()))?,
    );
    b = with_proxy(b, proxy).map_err(|e| SetupError::Proxy(e.to_string()))?;
    b.build().map_err(|e| SetupError::Build(error_chain(&e)))
}

/// The TLS configuration of the portal client: the provider this program
/// installed ([`crate::net::tls`]), the system's trust store plus `extra`
/// (the `ca_file` certificates).
fn tls_config(
    extra: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
) -> Result<tokio_rustls::rustls::ClientConfig, tokio_rustls::rustls::Error> {
    use crate::net::tls;
    let provider = tls::provider()?;
    let verifier = tls::platform_verifier(extra, provider.clone())?;
    tls::client_config(provider, std::sync::Arc::new(verifier))
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
        Self::from_setup(&ClientSetup::read(base, ca_file, proxy, timeout)?)
    }

    /// Builds the client `setup` describes: the TLS configuration (platform
    /// verifier plus the `ca_file` certificates) is made here, once per client.
    pub fn from_setup(setup: &ClientSetup) -> Result<PortalClient, SetupError> {
        let timeout = setup.timeout;
        let ca = setup.ca_file.as_deref().zip(setup.ca_pem.as_deref());
        let http = http_client_with(ca, &setup.proxy, timeout)?;
        Ok(PortalClient {
            http,
            base: setup.base.clone(),
            timeout,
            proxy: setup.proxy.clone(),
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
                let (kind, message) = transport_error(&e);
                let exchange = if never_sent(&e) {
                    Exchange::Unsent { kind, message }
                } else {
                    Exchange::Failed { kind, message }
                };
                return classify::classify(endpoint, &exchange, now);
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

/// Whether the request failed before a byte of it could reach the portal:
/// name resolution, the TCP connect (refused, unreachable, its timeout), the
/// proxy's tunnel (a 407 to CONNECT) or the TLS handshake. reqwest marks all
/// of these `is_connect`; a reset or close after the request was written is
/// not, and may have reached the portal (SPEC "Activation in doubt").
pub fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect()
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

#[cfg(test)]
mod never_sent_tests {
    use super::PortalClient;
    use std::io::Read;
    use std::time::Duration;
    use wispanel_core::classify::Outcome;
    use wispanel_core::{Endpoint, ErrorKind};

    /// An `activate` with an empty body and an idempotency key.
    async fn activate(c: &PortalClient) -> super::Classified {
        c.exchange(
            Endpoint::Activate,
            &serde_json::json!({}),
            Some("k"),
            &crate::clock::SystemClock,
        )
        .await
    }

    fn client(base: &str) -> PortalClient {
        PortalClient::build(base, None, None, Duration::from_secs(30)).expect("a client")
    }

    /// A refused connect never reached the portal; a close after the request
    /// was read may have (SPEC "Activation in doubt").
    #[tokio::test]
    async fn refused_connect_is_unsent_a_close_after_the_request_is_not() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let c = activate(&client(&format!("http://127.0.0.1:{port}"))).await;
        assert!(c.unsent, "{:?}", c.outcome);
        assert!(matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Connect));

        // A server that reads the whole request, then closes without answering.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let addr = l.local_addr().expect("its address");
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("a connection");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then the 2-byte body "{}".
            while !buf.ends_with(b"\r\n\r\n{}") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf
        });
        let c = activate(&client(&format!("http://{addr}"))).await;
        let seen = server.join().expect("the server thread");
        assert!(seen.starts_with(b"POST /"), "the request arrived");
        assert!(!c.unsent, "{:?}", c.outcome);
        assert!(matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Connect));
    }

    /// A connection that never completes (the TCP connect is taken by the
    /// kernel's backlog, the TLS handshake is never answered, as behind a
    /// black hole or a resolver that does not answer) is a timeout within
    /// request_timeout, and nothing was sent: the connect's own deadline ends
    /// it before the whole request's.
    #[tokio::test]
    async fn a_connection_that_never_completes_times_out_unsent() {
        // Listening, never accepting: the handshake's ClientHello is never read.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let addr = l.local_addr().expect("its address");
        let limit = Duration::from_millis(1000);
        let c =
            PortalClient::build(&format!("https://{addr}"), None, None, limit).expect("a client");
        let t = std::time::Instant::now();
        let r = activate(&c).await;
        let took = t.elapsed();
        drop(l);
        assert!(r.unsent, "{:?}", r.outcome);
        assert!(
            matches!(&r.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Timeout),
            "{:?}",
            r.outcome
        );
        assert!(took < limit + Duration::from_secs(1), "{took:?}");
        assert_eq!(super::connect_timeout(limit), Duration::from_millis(900));
    }
}
