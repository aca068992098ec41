//! The status socket: HTTP/1.1 with JSON over a Unix socket (SPEC "Status
//! socket"), served by axum on hyper with our own accept loop so that each
//! connection carries its peer's uid (`SO_PEERCRED`) and the limits that keep
//! the daemon safe from local clients: a connection cap, a header-read
//! timeout, a body cap, and no browsers (`Origin`/`Referer` refused).
//!
//! The socket does not know the daemon: it serves any [`Service`], a small
//! trait over the status snapshot and the four actions that the daemon
//! implements. The types it hands back ([`Snapshot`], [`ActionError`]) live
//! here, beside the routes that turn them into answers.

pub mod activation;
mod bind;
pub mod client;
pub use crate::fair;
mod routes;
#[cfg(test)]
mod tests;

pub use bind::{SocketError, bind};
pub use fair::MAX_CONNECTIONS;

use crate::api::StatusDocument;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Instrument, debug, info_span, warn};
use wispanel_core::Reason;
use wispanel_core::key::LicenseKey;
use wispanel_core::timestamp::Timestamp;

/// A new connection must send a complete request head within this time.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection idle for this long after its last answer is closed
/// (an event stream is never idle).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Request bodies larger than this get 413.
pub const MAX_BODY: usize = 64 * 1024;
/// A client that takes none of an answer for this long is dropped (an event
/// stream reader that stopped reading, say), so it never holds a slot forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole request body must arrive within this time.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The status as served: the document and its JSON bytes.
#[derive(Debug)]
pub struct Snapshot {
    pub doc: StatusDocument,
    pub json: bytes::Bytes,
}

/// What the service was asked to do and could not.
#[derive(Debug)]
pub enum ActionError {
    /// No licence key in force (409 `CONFLICT`).
    NoKey,
    /// The portal gate is closed until then (429 `RATE_LIMITED`).
    Gate(Timestamp),
    /// The portal refused (422 with its code).
    Refused(Reason),
    /// No verdict (503 `PORTAL_UNREACHABLE`).
    Unreachable(String),
    /// The hardware_id cannot be computed (500 `INTERNAL_ERROR`).
    NoHardwareId(String),
}

/// An action's result: the status after it, or why it could not be done.
pub type ActionResult = Result<Arc<Snapshot>, ActionError>;

/// What the socket serves from (the daemon implements it).
pub trait Service: Send + Sync + 'static {
    /// The status for a status request (the service may refresh what it must
    /// show "computed now" first).
    fn status(&self) -> Arc<Snapshot>;
    /// The status as last published.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// Every published status from now on (the newest only).
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>>;
    /// Whether the daemon's loops run (`/v1/health`).
    fn healthy(&self) -> bool;
    /// Portal requests so far by (endpoint, outcome), for the metrics.
    fn request_counts(&self) -> Vec<((&'static str, &'static str), u64)>;
    /// The service's wall clock (for `Retry-After`).
    fn now(&self) -> Timestamp;
    /// `POST /v1/check`.
    fn check(&self) -> impl Future<Output = ActionResult> + Send;
    /// `POST /v1/update/check`.
    fn update_check(&self) -> impl Future<Output = ActionResult> + Send;
    /// `POST /v1/activate` (the caller is root; `caller` is its uid, for
    /// the history).
    fn activate(
        &self,
        key: LicenseKey,
        caller: Option<u32>,
    ) -> impl Future<Output = ActionResult> + Send;
    /// `POST /v1/deactivate` (the caller is root).
    fn deactivate(&self, caller: Option<u32>) -> impl Future<Output = ActionResult> + Send;
    /// `GET /v1/history`: the entries the query picks, oldest first. It may
    /// read a file: the socket calls it on tokio's blocking pool.
    fn history(&self, query: &crate::history::Query) -> Vec<crate::history::Entry>;
    /// The fair-use books of the socket (`serve` asks once); the daemon
    /// keeps them to show their figures in `metrics_textfile` too.
    fn fair_use(&self) -> Arc<fair::Limiter> {
        Arc::new(fair::Limiter::new(fair::Limits::default()))
    }
}

/// The uid of the connected peer, from `SO_PEERCRED`.
#[derive(Clone, Copy, Debug)]
pub struct PeerUid(pub Option<u32>);

/// Serves the socket until `shutdown`.
///
/// Fair use: each accepted connection takes a slot of its peer's uid from the
/// [`fair::Limiter`] before anything else. One that gets none is answered
/// 429 at once by [`refuse`] and never reaches hyper, so it holds no slot and
/// waits for nothing, and the accept loop goes straight on to the next
/// connection (of any uid).
pub async fn serve<S: Service>(
    listener: UnixListener,
    service: Arc<S>,
    shutdown: CancellationToken,
) {
    async {
        let limiter = service.fair_use();
        // Refused connections being drained (see `refuse`): bounded so that a
        // flood of them costs a fixed amount.
        let draining = Arc::new(Semaphore::new(REFUSALS_DRAINED));
        let conns = tokio_util::task::TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.cancelled() => break,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    warn!(error = %e, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let uid = PeerUid(stream.peer_cred().ok().map(|c| c.uid()));
            let slot = match limiter.admit(uid.0) {
                Ok(slot) => Arc::new(slot),
                Err(why) => {
                    debug!(uid = ?uid.0, reason = why.as_str(), "connection refused: {}", why.as_str());
                    refuse(stream, why, limiter.limits(), &draining);
                    continue;
                }
            };
            let app = routes::router(service.clone(), uid, slot.clone(), shutdown.clone());
            let shutdown = shutdown.clone();
            let d = service.clone();
            conns.spawn(serve_connection(stream, d, app, slot, shutdown));
        }
        conns.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), conns.wait()).await;
    }
    .instrument(info_span!("socket"))
    .await
}

/// At shutdown, how long a connection that has sent no request yet may take
/// to get its first one answered (a client that connected just before).
const FIRST_ANSWER_AT_SHUTDOWN: Duration = Duration::from_secs(1);

/// Refused connections whose requests are read and thrown away at once.
const REFUSALS_DRAINED: usize = 64;
/// How long a refused connection is kept open for its request to arrive.
const REFUSAL_DRAIN: Duration = Duration::from_secs(1);

/// Answers a connection over its uid's limit: 429 `RATE_LIMITED`,
/// `Retry-After: 1`, the standard error envelope, `Connection: close`.
///
/// The answer is written at once, before the request is read: waiting for the
/// request would hold the connection (and a task) for as long as the client
/// takes to send it, which is what a flood is made of, and the answer is the
/// same whatever the request. A client reads it as the answer to its request
/// (HTTP/1.1 lets a server answer early). The answer (about 300 bytes) always
/// fits in an empty socket buffer, so the non-blocking write completes or the
/// connection is dropped. Closing at once would make the client's own write of
/// its request fail (EPIPE) before it reads the answer, so the connection is
/// half-closed and its request read and thrown away for at most
/// [`REFUSAL_DRAIN`], by at most [`REFUSALS_DRAINED`] tasks; past those it is
/// closed at once.
fn refuse(
    stream: tokio::net::UnixStream,
    why: fair::Refusal,
    limits: &fair::Limits,
    draining: &Arc<Semaphore>,
) {
    let answer = refusal_bytes(why, limits);
    if stream.try_write(&answer).is_err() {
        return;
    }
    let Ok(permit) = draining.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
            let mut total = 0usize;
            while total < MAX_BODY {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        drop(permit);
    });
}

/// The raw HTTP answer to a refused connection.
pub fn refusal_bytes(why: fair::Refusal, limits: &fair::Limits) -> Vec<u8> {
    let body = serde_json::to_vec(&crate::api::ErrorEnvelope::new(
        429,
        "RATE_LIMITED",
        why.message(limits),
    ))
    .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// What a connection is doing, for its timeouts.
struct Activity {
    /// Requests whose answer is not fully written yet (an event stream's
    /// stays in flight while it lasts).
    in_flight: usize,
    /// Answers written completely.
    served: u64,
    /// When `in_flight` last went to 0 (or the connection was accepted).
    since: tokio::time::Instant,
}

impl Activity {
    /// When the connection is closed if nothing changes: none while a request
    /// is in flight.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        if self.in_flight > 0 {
            return None;
        }
        let limit = if self.served == 0 {
            FIRST_REQUEST_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        Some(self.since + limit)
    }
}

type SharedActivity = Arc<std::sync::Mutex<Activity>>;

fn activity(a: &SharedActivity) -> std::sync::MutexGuard<'_, Activity> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks a request in flight until dropped (with the answer's body, once
/// hyper has written it or given up).
struct InFlight(SharedActivity);

impl InFlight {
    fn start(a: &SharedActivity) -> Self {
        activity(a).in_flight += 1;
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = activity(&self.0);
        a.in_flight = a.in_flight.saturating_sub(1);
        a.served += 1;
        if a.in_flight == 0 {
            a.since = tokio::time::Instant::now();
        }
    }
}

/// An answer's body that keeps its request in flight.
struct Tracked {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl axum::body::HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one admitted connection until it ends, times out or the socket
/// shuts down; its slot is given back when the last of it is dropped.
async fn serve_connection<S: Service>(
    stream: tokio::net::UnixStream,
    d: Arc<S>,
    app: axum::Router,
    slot: Arc<fair::ConnSlot>,
    shutdown: CancellationToken,
) {
    let act: SharedActivity = Arc::new(std::sync::Mutex::new(Activity {
        in_flight: 0,
        served: 0,
        since: tokio::time::Instant::now(),
    }));
    let act_of = act.clone();
    // `GET /v1/status` is what the panel and monitoring poll: it is answered
    // straight from the snapshot; everything else goes through the router.
    let service = hyper::service::service_fn(move |req| {
        let in_flight = InFlight::start(&act_of);
        let fast = routes::fast_status(&*d, &req);
        let app = app.clone();
        async move {
            let r = match fast {
                Some(r) => r,
                None => match app.oneshot(req.map(axum::body::Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
            };
            Ok::<_, std::convert::Infallible>(r.map(|inner| {
                axum::body::Body::new(Tracked {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The request timeouts are ours (below): hyper's header timer also runs
    // while a keep-alive connection waits for its next request, which SPEC
    // gives 60 s, not the 10 s of a first request.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_BODY.max(8192) * 2);
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let conn = builder.serve_connection(TokioIo::new(Box::pin(stream)), service);
    tokio::pin!(conn);
    loop {
        let deadline = activity(&act).deadline();
        // While a request is in flight there is no deadline; look again
        // after a first-request timeout's time (its end resets `since`).
        let wake = deadline.unwrap_or_else(|| tokio::time::Instant::now() + FIRST_REQUEST_TIMEOUT);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r { debug!(error = %e, "connection ended: {e}"); }
                break;
            }
            _ = shutdown.cancelled() => {
                // A connection accepted just before the shutdown may hold a
                // request not read yet, which a graceful shutdown would close
                // unanswered (hyper closes a connection between requests):
                // give it up to FIRST_ANSWER_AT_SHUTDOWN to be answered.
                let until = tokio::time::Instant::now() + FIRST_ANSWER_AT_SHUTDOWN;
                while {
                    let a = activity(&act);
                    a.served == 0 && a.in_flight == 0
                } && tokio::time::Instant::now() < until
                {
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                break;
            }
            _ = tokio::time::sleep_until(wake) => {
                let a = activity(&act);
                if a.deadline().is_some_and(|d| d <= tokio::time::Instant::now()) {
                    debug!(
                        served = a.served,
                        "closing a connection: {}",
                        if a.served == 0 { "no complete request in time" } else { "idle" }
                    );
                    break;
                }
            }
        }
    }
    drop(slot);
}
