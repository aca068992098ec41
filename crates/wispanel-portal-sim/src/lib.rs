//! `wispanel-portal-sim`: a simulated WisPanel licensing portal for the
//! integration tests, the benchmarks and the README demo.
//!
//! It serves the portal contract of `PORTAL.md` over a hand-written HTTP/1.1
//! server (not hyper) so it can misbehave on purpose: answer late, never,
//! half, too much, with a redirect, a skewed `Date`, or a certificate that does
//! not verify. By default it is a healthy portal that knows the keys in
//! [`keys`] and tracks activations (at most 3 hosts a key).
//!
//! Parts: [`scenario`] (what the portal knows and its scripts, TOML),
//! `portal` (the decisions, no I/O), `http` (reading and writing bytes),
//! `tls` (certificates), and here the accept loop and [`SimHandle`].
//!
//! # Scenario file (TOML)
//!
//! ```toml
//! date_skew_secs = -300     # Date header 5 min behind
//! release_size = 262144     # bytes of each release file
//! latest_version = "1.5.0"
//! [terms]                   # how valid keys are reported
//! tier = "pro"
//! valid_for_secs = 604800
//! [licenses]                # on top of the built-in keys
//! "WISP-TEST-0000-0009" = "valid"      # or expired, suspended, revoked, …
//! [validate]                # activate, validate, deactivate, check_update, token, release
//! repeat_last = false       # true: keep giving the last answer
//! [[validate.answers]]      # consumed in order, then the normal behaviour
//! status = 503
//! headers = { "Retry-After" = "2" }
//! body = { success = false, code = "INTERNAL_ERROR" }   # a string is sent as is
//! [[validate.answers]]
//! drop = true               # or stall, delay_ms, truncate_at, body_repeat,
//!                           # redirect_to, wrong_sha256, short_file, stall_body
//! ```
//!
//! An outage ([`SimHandle::set_outage`]) applies to every portal endpoint
//! before any script. `/_sim/license`, `/_sim/outage`, `/_sim/answers`,
//! `/_sim/seats`, `/_sim/mode` (POST) and `/_sim/requests` (GET) control a
//! running sim from scripts.
//!
//! Seats: each key has `max_activations` seats (or its `seat_limits` entry);
//! an `activate` takes one per hardware_id (every `activate` with
//! `activate_counts_every_request`), a `validate` is valid only on a
//! hardware_id that holds one, a `deactivate` frees the host's. An
//! `activate` with an `Idempotency-Key` seen in the last 24 h gets the first
//! answer again (409 `IDEMPOTENCY_KEY_CONFLICT` if the body differs), unless
//! `ignore_idempotency_key`. A scripted answer with `commit = true` is a lost
//! answer: the portal does its work (takes the seat), then drops, stalls or
//! answers the scripted status. `clock_offset = "+1d"` runs the portal's
//! whole clock a day ahead.
//!
//! Download endpoints serve only a host the key is activated on. The release
//! file is `GET /releases/wispanel-<version>.tar.gz?token=…` (or
//! `Authorization: Bearer <token>`), `application/gzip`, deterministic bytes
//! ([`release_bytes`]).

mod http;
mod portal;
pub mod scenario;
#[cfg(test)]
mod seat_property;
mod tls;

pub use portal::{RecordedRequest, release_bytes, release_file_name, release_sha256};
pub use scenario::{
    Body, Endpoint, LicenseBehaviour, LicenseTerms, Outage, Route, Scenario, ScenarioError, Script,
    ScriptedAnswer, keys,
};

use http::{After, ReadError, read_request, wait_for_close, write_reply};
use portal::{Incoming, Plan, SimulatedPortal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wispanel_core::timestamp::Timestamp;

/// A keep-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A TLS handshake that takes longer is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the sim speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP.
    Plain,
    /// HTTPS with a leaf signed by a CA made at start, written as PEM to `ca_out`.
    SelfCa { ca_out: PathBuf },
    /// HTTPS where `ca_out` receives a CA as in `SelfCa`, but the served leaf is
    /// signed by another, throw-away CA: a client trusting `ca_out` must refuse.
    OtherCa { ca_out: PathBuf },
}

/// How to start the sim.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub tls: TlsMode,
    pub scenario: Scenario,
    /// Must be a loopback address; port 0 lets the OS choose.
    pub bind: SocketAddr,
}

impl SimOptions {
    /// Plain HTTP on 127.0.0.1, a port chosen by the OS, the default scenario.
    pub fn plain() -> SimOptions {
        SimOptions {
            tls: TlsMode::Plain,
            scenario: Scenario::default(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// HTTPS with a fresh CA written to `ca_out`.
    pub fn https(ca_out: impl Into<PathBuf>) -> SimOptions {
        SimOptions {
            tls: TlsMode::SelfCa {
                ca_out: ca_out.into(),
            },
            ..SimOptions::plain()
        }
    }

    pub fn with_scenario(mut self, scenario: Scenario) -> SimOptions {
        self.scenario = scenario;
        self
    }
}

/// Why the sim could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the sim binds loopback only; {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot make the certificates: {0}")]
    Certificate(String),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot write the CA certificate to {path}: {source}")]
    WriteCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}

type Shared = Arc<Mutex<SimulatedPortal>>;

fn lock(p: &Shared) -> MutexGuard<'_, SimulatedPortal> {
    // A panic while holding the lock cannot leave the portal half-updated in a
    // way that matters to a test double; keep serving.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running sim. Dropping it stops it too (without waiting).
pub struct SimHandle {
    pub addr: SocketAddr,
    /// `http(s)://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    /// The CA to trust (`None` for plain HTTP).
    pub ca_pem_path: Option<PathBuf>,
    portal: Shared,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Starts the sim; it serves until [`SimHandle::shutdown`] or drop.
pub async fn start(opts: SimOptions) -> Result<SimHandle, SimError> {
    if !opts.bind.ip().is_loopback() {
        return Err(SimError::NotLoopback(opts.bind));
    }
    opts.scenario.check()?;
    let (acceptor, ca_pem_path) = match &opts.tls {
        TlsMode::Plain => (None, None),
        TlsMode::SelfCa { ca_out } | TlsMode::OtherCa { ca_out } => {
            let other = matches!(opts.tls, TlsMode::OtherCa { .. });
            let (config, ca_pem) = tls::server_config(other)?;
            std::fs::write(ca_out, ca_pem).map_err(|source| SimError::WriteCa {
                path: ca_out.clone(),
                source,
            })?;
            (Some(TlsAcceptor::from(config)), Some(ca_out.clone()))
        }
    };
    let listener = TcpListener::bind(opts.bind)
        .await
        .map_err(|source| SimError::Bind {
            addr: opts.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: opts.bind,
        source,
    })?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let base_url = format!("{scheme}://{addr}");
    let portal = Arc::new(Mutex::new(SimulatedPortal::new(
        opts.scenario,
        base_url.clone(),
        Timestamp::from_system_time(std::time::SystemTime::now()),
    )));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(accept_loop(
        listener,
        acceptor,
        portal.clone(),
        shutdown.clone(),
        tasks.clone(),
    ));
    Ok(SimHandle {
        addr,
        base_url,
        ca_pem_path,
        portal,
        shutdown,
        tasks,
    })
}

impl SimHandle {
    /// Every portal request so far (control requests excluded), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.portal).requests().to_vec()
    }

    /// How many requests reached `endpoint`.
    pub fn request_count(&self, endpoint: impl Into<Route>) -> usize {
        let endpoint = endpoint.into();
        lock(&self.portal)
            .requests()
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .count()
    }

    /// Appends scripted answers for `endpoint`, consumed in order.
    pub fn push_answers(&self, endpoint: impl Into<Route>, answers: Vec<ScriptedAnswer>) {
        let endpoint = endpoint.into();
        lock(&self.portal).push_answers(endpoint, answers);
    }

    /// Whether `endpoint` keeps giving its last scripted answer.
    pub fn set_repeat_last(&self, endpoint: impl Into<Route>, repeat_last: bool) {
        let endpoint = endpoint.into();
        lock(&self.portal).set_repeat_last(endpoint, repeat_last);
    }

    /// Starts (`Some`) or ends (`None`) a whole-portal outage.
    pub fn set_outage(&self, outage: Option<Outage>) {
        lock(&self.portal).set_outage(outage);
    }

    /// Changes (or adds) a key's verdict from now on.
    pub fn set_license(&self, key: &str, behaviour: LicenseBehaviour) {
        lock(&self.portal).set_license(key, behaviour);
    }

    /// Changes how valid keys are reported from now on.
    pub fn set_terms(&self, terms: LicenseTerms) {
        lock(&self.portal).set_terms(terms);
    }

    /// The hardware_ids `key` is activated on.
    pub fn activations(&self, key: &str) -> Vec<String> {
        lock(&self.portal).activations(key)
    }

    /// How many seats of `key` are taken (by any hardware_id).
    pub fn seats(&self, key: &str) -> usize {
        lock(&self.portal).seats(key)
    }

    /// How many seats of `key` `hardware_id` holds (more than one only on a
    /// portal that counts every activate).
    pub fn seats_of(&self, key: &str, hardware_id: &str) -> usize {
        lock(&self.portal).seats_of(key, hardware_id)
    }

    /// Sets the seat limit of `key` (default: the scenario's `max_activations`).
    pub fn set_seat_limit(&self, key: &str, seats: usize) {
        lock(&self.portal).set_seat_limit(key, seats);
    }

    /// Sets the portal's clock against the real one, in seconds (`clock_offset`).
    pub fn set_clock_offset(&self, secs: i64) {
        lock(&self.portal).set_clock_offset(secs);
    }

    /// The portal's clock now.
    pub fn portal_now(&self) -> Timestamp {
        lock(&self.portal).portal_now(Timestamp::from_system_time(std::time::SystemTime::now()))
    }

    /// Whether the portal ignores `Idempotency-Key` (`ignore_idempotency_key`).
    pub fn set_ignore_idempotency_key(&self, ignore: bool) {
        lock(&self.portal).set_ignore_idempotency_key(ignore);
    }

    /// Whether every `activate` takes a seat (`activate_counts_every_request`).
    pub fn set_activate_counts_every_request(&self, counts: bool) {
        lock(&self.portal).set_activate_counts_every_request(counts);
    }

    /// Stops accepting, ends every connection, and waits for them (at most 5 s).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    portal: Shared,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, portal, token) = (acceptor.clone(), portal.clone(), shutdown.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = connection(tcp, acceptor, portal) => {}
            }
        });
    }
}

async fn connection(tcp: TcpStream, acceptor: Option<TlsAcceptor>, portal: Shared) {
    let _ = tcp.set_nodelay(true);
    match acceptor {
        None => serve(tcp, &portal).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => serve(tls, &portal).await,
                Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// Serves requests on one connection until it closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, portal: &Shared) {
    let mut buf = Vec::new();
    loop {
        let req = match tokio::time::timeout(IDLE_TIMEOUT, read_request(&mut s, &mut buf)).await {
            Err(_) | Ok(Err(ReadError::Gone)) => return,
            Ok(Err(ReadError::Bad(status, msg))) => {
                let reply = lock(portal).malformed(status, msg);
                let _ = write_reply(&mut s, &reply, true).await;
                return;
            }
            Ok(Ok(req)) => req,
        };
        let incoming = Incoming {
            method: &req.method,
            path: req.path(),
            query: req.query(),
            authorization: req.header("Authorization"),
            idempotency_key: req.header("Idempotency-Key"),
            body: &req.body,
        };
        let plan = lock(portal).answer(
            &incoming,
            Timestamp::from_system_time(std::time::SystemTime::now()),
        );
        match plan {
            Plan::Drop { delay } => {
                tokio::time::sleep(delay).await;
                return;
            }
            Plan::Stall { delay } => {
                tokio::time::sleep(delay).await;
                wait_for_close(&mut s).await;
                return;
            }
            Plan::Reply(reply) => {
                tokio::time::sleep(reply.delay).await;
                match write_reply(&mut s, &reply, req.wants_close()).await {
                    Ok(After::KeepAlive) => {}
                    Ok(After::Stall) => {
                        wait_for_close(&mut s).await;
                        return;
                    }
                    Ok(After::Close) => {
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut s).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    }
}
