//! The endpoints of the status socket and their error envelopes.

use super::{ActionError, BODY_READ_TIMEOUT, MAX_BODY, PeerUid, Service, Snapshot};
use crate::api::{ActivateRequest, ErrorEnvelope, Health};
use crate::fair::{ConnSlot, Refusal};
use crate::metrics;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wispanel_core::key::LicenseKey;
use wispanel_core::timestamp::Timestamp;

struct App<S> {
    service: Arc<S>,
    peer: PeerUid,
    /// The connection's fair-use slot (event streams take one more of it).
    slot: Arc<ConnSlot>,
    /// Ends event streams when the socket shuts down.
    shutdown: CancellationToken,
}

impl<S> Clone for App<S> {
    fn clone(&self) -> Self {
        App {
            service: self.service.clone(),
            peer: self.peer,
            slot: self.slot.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// The router for one connection (it carries the peer's uid).
pub fn router<S: Service>(
    service: Arc<S>,
    peer: PeerUid,
    slot: Arc<ConnSlot>,
    shutdown: CancellationToken,
) -> Router {
    Router::new()
        .route("/v1/status", get(status::<S>))
        .route("/v1/health", get(health::<S>))
        .route("/v1/check", post(check::<S>))
        .route("/v1/update/check", post(update_check::<S>))
        .route("/v1/activate", post(activate::<S>))
        .route("/v1/deactivate", post(deactivate::<S>))
        .route("/v1/events", get(events::<S>))
        .route("/metrics", get(metrics_handler::<S>))
        .route("/v1/history", get(history::<S>))
        .route("/v1/openapi.json", get(openapi_document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(guard))
        .with_state(App {
            service,
            peer,
            slot,
            shutdown,
        })
}

/// An error in the panel's envelope.
pub fn envelope(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorEnvelope::new(status.as_u16(), code, message);
    (status, axum::Json(body)).into_response()
}

fn json_doc(snap: &Snapshot) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        snap.json.clone(),
    )
        .into_response()
}

/// Refuses browsers and oversized bodies before any handler runs.
async fn guard(req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::ORIGIN) || req.headers().contains_key(header::REFERER) {
        return envelope(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "requests from web browsers (with Origin or Referer) are refused",
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    next.run(req).await
}

fn too_large() -> Response {
    envelope(
        StatusCode::PAYLOAD_TOO_LARGE,
        "VALIDATION_ERROR",
        format!("request body larger than {MAX_BODY} bytes"),
    )
}

async fn not_found(req: Request) -> Response {
    envelope(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no such endpoint: {}", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    envelope(
        StatusCode::METHOD_NOT_ALLOWED,
        "VALIDATION_ERROR",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The hot path: `GET /v1/status` without browser headers, answered from the
/// snapshot's bytes without the router. `None` sends the request through the
/// router (which also answers every refusal).
pub fn fast_status<S: Service, B>(service: &S, req: &axum::http::Request<B>) -> Option<Response> {
    let plain = req.method() == axum::http::Method::GET
        && req.uri().path() == "/v1/status"
        && !req.headers().contains_key(header::ORIGIN)
        && !req.headers().contains_key(header::REFERER)
        && !req.headers().contains_key(header::CONTENT_LENGTH)
        && !req.headers().contains_key(header::TRANSFER_ENCODING);
    if !plain {
        return None;
    }
    Some(json_doc(&service.status()))
}

async fn status<S: Service>(State(app): State<App<S>>) -> Response {
    json_doc(&app.service.status())
}

async fn health<S: Service>(State(app): State<App<S>>) -> Response {
    let ok = app.service.healthy();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(Health { ok })).into_response()
}

fn with_retry_after(mut r: Response, until: Timestamp, now: Timestamp) -> Response {
    let secs = until.since(now).as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Activation and deactivation: SPEC gives them 503 `PORTAL_UNREACHABLE` for
/// any answer without a verdict, and a closed gate is one (SPEC's 429 is for
/// the checks); `Retry-After` still says when to try again.
fn licence_action_error(e: ActionError, now: Timestamp) -> Response {
    match e {
        ActionError::Gate(until) => with_retry_after(
            envelope(
                StatusCode::SERVICE_UNAVAILABLE,
                "PORTAL_UNREACHABLE",
                format!(
                    "the portal asked us to wait; no request was sent; try again after {until}"
                ),
            ),
            until,
            now,
        ),
        other => action_error(other, now),
    }
}

fn action_error(e: ActionError, now: Timestamp) -> Response {
    match e {
        ActionError::NoKey => envelope(
            StatusCode::CONFLICT,
            "CONFLICT",
            "no licence key is configured; run `wispanel-license activate`",
        ),
        ActionError::Gate(until) => with_retry_after(
            envelope(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("the portal asked us to wait; the next request may go at {until}"),
            ),
            until,
            now,
        ),
        ActionError::Refused(reason) => envelope(
            StatusCode::UNPROCESSABLE_ENTITY,
            &reason.code,
            reason.message,
        ),
        ActionError::Unreachable(msg) => envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "PORTAL_UNREACHABLE",
            format!("no answer from the portal: {msg}"),
        ),
        ActionError::NoHardwareId(msg) => envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("cannot compute the hardware_id: {msg}"),
        ),
    }
}

async fn check<S: Service>(State(app): State<App<S>>) -> Response {
    match app.service.check().await {
        Ok(s) => json_doc(&s),
        Err(e) => action_error(e, app.service.now()),
    }
}

async fn update_check<S: Service>(State(app): State<App<S>>) -> Response {
    match app.service.update_check().await {
        Ok(s) => json_doc(&s),
        Err(e) => action_error(e, app.service.now()),
    }
}

/// The uid that a user namespace shows for every uid it does not map (the
/// kernel's `overflowuid`): under a `PrivateUsers=` unit (not the shipped one), every caller
/// other than root and the daemon's own user. It says "unknown", not who
/// called.
const OVERFLOW_UID: u32 = 65534;

/// The message of the 403 answer to a caller with this uid.
fn root_only_message(uid: u32) -> String {
    let what = "activate and deactivate change this host's licence";
    if uid == OVERFLOW_UID {
        format!("root only: {what}")
    } else {
        format!("root only (you are uid {uid}): {what}")
    }
}

/// The 403 answer for a caller that is not root, if it is not.
fn refuse_unless_root(peer: PeerUid) -> Option<Response> {
    match peer.0 {
        Some(0) => None,
        Some(uid) => Some(envelope(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            root_only_message(uid),
        )),
        None => Some(envelope(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "cannot tell who is calling (no peer credentials)",
        )),
    }
}

async fn read_body(body: Body) -> Result<Bytes, Response> {
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => Err(envelope(
            StatusCode::REQUEST_TIMEOUT,
            "VALIDATION_ERROR",
            "the request body did not arrive in time",
        )),
        Ok(Err(_)) => Err(too_large()),
        Ok(Ok(b)) => Ok(b),
    }
}

async fn activate<S: Service>(State(app): State<App<S>>, req: Request) -> Response {
    if let Some(r) = refuse_unless_root(app.peer) {
        return r;
    }
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed: ActivateRequest = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return envelope(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                format!("the body must be {{\"license_key\": \"WISP-...\"}}: {e}"),
            );
        }
    };
    let key = match LicenseKey::parse(&parsed.license_key) {
        Ok(k) => k,
        Err(e) => return envelope(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", e.to_string()),
    };
    match app.service.activate(key, app.peer.0).await {
        Ok(s) => json_doc(&s),
        Err(e) => licence_action_error(e, app.service.now()),
    }
}

async fn deactivate<S: Service>(State(app): State<App<S>>) -> Response {
    if let Some(r) = refuse_unless_root(app.peer) {
        return r;
    }
    match app.service.deactivate(app.peer.0).await {
        Ok(s) => json_doc(&s),
        Err(e) => licence_action_error(e, app.service.now()),
    }
}

/// `GET /v1/history?since=&limit=`: read from `history.jsonl` (plus any
/// entries whose append failed) on tokio's blocking pool, so that a long
/// file never holds the runtime thread (the daemon runs one); a bad
/// parameter is 400 naming it, an unknown one is ignored.
async fn history<S: Service>(
    State(app): State<App<S>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    match crate::history::Query::parse(query.as_deref()) {
        Ok(q) => {
            let service = app.service.clone();
            match tokio::task::spawn_blocking(move || service.history(&q)).await {
                Ok(entries) => axum::Json(crate::history::Page { entries }).into_response(),
                // Not seen in the daemon: its panic hook aborts the process,
                // and a runtime that stops drops this handler with the task.
                Err(e) => envelope(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    format!("reading the history failed: {e}"),
                ),
            }
        }
        Err(e) => envelope(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", e.to_string()),
    }
}

async fn metrics_handler<S: Service>(State(app): State<App<S>>) -> Response {
    let snap = app.service.snapshot();
    let text = metrics::render(
        &snap.doc,
        &app.service.request_counts(),
        &app.slot.figures(),
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// `GET /v1/openapi.json`: the API document, as installed in
/// `/usr/share/wispanel-license/openapi.json` (the same bytes).
async fn openapi_document() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        crate::api::OPENAPI_DOCUMENT,
    )
        .into_response()
}

/// The 429 answer to a request over its uid's fair-use limit (the standard
/// envelope, `Retry-After: 1`); the connection is closed after it.
pub fn refused(why: Refusal, limits: &crate::fair::Limits) -> Response {
    let mut r = envelope(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        why.message(limits),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// One `status` event now, then one on every change of the licence state,
/// the update state or the warnings ([`crate::api::StatusDocument::announced`]). The watch channel holds only the newest document, so a client that
/// reads slowly never makes the daemon buffer. Each stream holds one of its
/// uid's event-stream slots while it lasts; past them, 429.
async fn events<S: Service>(State(app): State<App<S>>) -> Response {
    let event_slot = match app.slot.event_stream() {
        Ok(s) => s,
        Err(why) => return refused(why, app.slot.limits()),
    };
    Sse::new(event_stream(app, event_slot)).into_response()
}

fn event_stream<S: Service>(
    app: App<S>,
    event_slot: crate::fair::EventSlot,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = app.service.subscribe();
    let shutdown = app.shutdown.clone();
    stream::unfold(
        (rx, None, shutdown, event_slot),
        |(mut rx, last, shutdown, event_slot)| async move {
            loop {
                let snap = rx.borrow_and_update().clone();
                // SPEC: an event on every change of licence state, update
                // state or warnings, not on every new document.
                let states = snap.doc.announced();
                if last.as_ref() != Some(&states) {
                    let data = String::from_utf8_lossy(&snap.json).into_owned();
                    let ev = Event::default().event("status").data(data);
                    return Some((Ok(ev), (rx, Some(states), shutdown, event_slot)));
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return None },
                    _ = shutdown.cancelled() => return None,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_says_root_only_and_never_the_overflow_uid() {
        let m = root_only_message(OVERFLOW_UID);
        assert!(m.starts_with("root only"), "{m}");
        assert!(!m.contains("65534") && !m.contains("uid"), "{m}");
        let m = root_only_message(1000);
        assert!(m.starts_with("root only (you are uid 1000)"), "{m}");
    }
}
