//! How the daemon reaches the portal: the [`Portal`] trait (the real
//! [`PortalClient`] in production, a scripted fake in tests) and the one
//! place every request goes through (`Daemon::call`: shutdown, log, count).

use super::Daemon;
use crate::clock::Clock;
use crate::config::Config;
use crate::portal::{PortalClient, SetupError};
use std::pin::Pin;
use std::sync::Arc;
use tracing::info;
use wispanel_core::Endpoint;
use wispanel_core::classify::{Classified, Outcome};

/// A boxed future that may move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One exchange with the portal, classified at the daemon's clock. Never
/// fails: every failure is a classified non-verdict.
pub trait Portal: Send + Sync {
    /// POSTs `body` to `endpoint`, with an `Idempotency-Key` header when given
    /// (every `activate` carries one, SPEC "Activation in doubt"; a test's
    /// fake records it with the request), and classifies the
    /// answer at `clock`'s time (the daemon's: one clock for the gate, the
    /// deadlines and the records).
    fn call<'a>(
        &'a self,
        endpoint: Endpoint,
        body: &'a serde_json::Value,
        idempotency_key: Option<&'a str>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Classified>;

    /// The proxy the requests go through, as the status shows it
    /// (`portal.proxy`: credentials masked), or `None` for a direct line.
    fn proxy_shown(&self) -> Option<String> {
        None
    }
}

impl Portal for PortalClient {
    fn call<'a>(
        &'a self,
        endpoint: Endpoint,
        body: &'a serde_json::Value,
        idempotency_key: Option<&'a str>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Classified> {
        Box::pin(self.exchange(endpoint, body, idempotency_key, clock))
    }

    fn proxy_shown(&self) -> Option<String> {
        self.proxy().shown()
    }
}

/// Builds the portal client from a configuration (at start and on reload).
pub type PortalFactory = Arc<dyn Fn(&Config) -> Result<Arc<dyn Portal>, SetupError> + Send + Sync>;

/// The production factory: the HTTPS client of `crate::portal`, built once
/// and kept across reloads that leave its setup (`portal_url`, `ca_file` and
/// its content, `proxy`, `request_timeout`) unchanged.
pub fn https_factory() -> PortalFactory {
    let cache = crate::portal::ClientCache::default();
    Arc::new(move |config: &Config| Ok(cache.client(config)? as Arc<dyn Portal>))
}

impl Daemon {
    /// Sends one request unless shutdown comes first; logs and counts it.
    pub(super) async fn call(
        &self,
        endpoint: Endpoint,
        body: &serde_json::Value,
    ) -> Option<Classified> {
        self.call_keyed(endpoint, body, None).await
    }

    /// As `call`, with an `Idempotency-Key` header when given.
    pub(super) async fn call_keyed(
        &self,
        endpoint: Endpoint,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Option<Classified> {
        let client = self.client();
        let c = tokio::select! {
            c = client.call(endpoint, body, idempotency_key, &*self.clock) => c,
            _ = self.shutdown.cancelled() => {
                info!(%endpoint, "shutting down: abandoning the portal request ({endpoint})");
                return None;
            }
        };
        self.counters.add(endpoint, c.outcome.metric_label());
        let doc = &self.snapshot().doc;
        let (l, u) = (doc.license.state, doc.update.state);
        match &c.outcome {
            Outcome::Failed(e) => crate::logging::event::portal_failed(endpoint, e, l, u),
            Outcome::Refused { reason, .. } | Outcome::UpdateRefused { reason, .. } => {
                crate::logging::event::portal_refused(endpoint, &reason.code, &reason.message, l, u)
            }
            _ => tracing::debug!(%endpoint, "portal answered"),
        }
        Some(c)
    }
}
