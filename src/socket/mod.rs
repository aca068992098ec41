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

mod bind;
pub mod client;
mod routes;

pub use bind::{SocketError, bind};

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

/// Concurrent connections served; past this, new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 768;
/// A request head must arrive within this time (also bounds idle keep-alive).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
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
    /// `GET /v1/history`: the entries the query picks, oldest first.
    fn history(&self, query: &crate::history::Query) -> Vec<crate::history::Entry>;
}

/// The uid of the connected peer, from `SO_PEERCRED`.
#[derive(Clone, Copy, Debug)]
pub struct PeerUid(pub Option<u32>);

/// Serves the socket until `shutdown`.
pub async fn serve<S: Service>(
    listener: UnixListener,
    service: Arc<S>,
    shutdown: CancellationToken,
) {
    async {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!("too many connections; closing a new one");
                drop(stream);
                continue;
            };
            let uid = PeerUid(stream.peer_cred().ok().map(|c| c.uid()));
            let app = routes::router(service.clone(), uid, shutdown.clone());
            let shutdown = shutdown.clone();
            let d = service.clone();
            conns.spawn(async move {
                // `GET /v1/status` is what the panel and monitoring poll: it is
                // answered straight from the snapshot; everything else goes
                // through the router.
                let service = hyper::service::service_fn(move |req| {
                    let fast = routes::fast_status(&*d, &req);
                    let app = app.clone();
                    async move {
                        match fast {
                            Some(r) => Ok::<_, std::convert::Infallible>(r),
                            None => app.oneshot(req.map(axum::body::Body::new)).await,
                        }
                    }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(MAX_BODY.max(8192) * 2);
                let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
                stream.set_write_timeout(Some(WRITE_TIMEOUT));
                let conn = builder.serve_connection(TokioIo::new(Box::pin(stream)), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r { debug!(error = %e, "connection ended: {e}"); }
                    }
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                    }
                }
                drop(permit);
            });
        }
        conns.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), conns.wait()).await;
    }
    .instrument(info_span!("socket"))
    .await
}
