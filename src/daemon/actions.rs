//! What a client of the socket may ask: a manual licence or update check
//! (one function over the two kinds), activate, deactivate; and the
//! [`Service`] the socket serves, implemented by the daemon.

use super::shared::{Daemon, lock};
use super::{MANUAL_REUSE, Why};
use crate::history::{self, Event, OUTCOME_OK, OUTCOME_UNREACHABLE};
use crate::socket::{ActionError, ActionResult, Service, Snapshot};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{error, info};
use wispanel_core::classify::{Classified, Outcome};
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::Inputs;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{Endpoint, ErrorKind};

/// What a manual check asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CheckKind {
    /// `POST /v1/check`: validate (or activate) now.
    Licence,
    /// `POST /v1/update/check`: check for an update now.
    Update,
}

impl Daemon {
    fn gate_refusal(&self, until: Timestamp) -> ActionError {
        lock(&self.state).core.note_gate_refusal(self.now());
        self.publish();
        ActionError::Gate(until)
    }

    /// `POST /v1/check` and `POST /v1/update/check`: concurrent calls share
    /// one request, and calls within 10 s of the last manual request of the
    /// same kind get its result; a closed gate wins over the reuse. The gate
    /// is checked once per call: here for a reused result, else under the
    /// portal lock by the request itself.
    pub(super) async fn manual_check(&self, kind: CheckKind) -> ActionResult {
        if !self.has_key() {
            return Err(ActionError::NoKey);
        }
        let mut last = match kind {
            CheckKind::Licence => self.manual_licence.lock().await,
            CheckKind::Update => self.manual_update.lock().await,
        };
        if last.is_some_and(|t| t.elapsed() < MANUAL_REUSE) {
            return match self.gate() {
                Some(until) => Err(self.gate_refusal(until)),
                None => Ok(self.snapshot()),
            };
        }
        let made = match kind {
            CheckKind::Licence => self.licence_request(Why::Manual).await,
            CheckKind::Update => self.update_request(Why::Manual).await,
        };
        match made {
            Err(until) => return Err(self.gate_refusal(until)),
            Ok(true) => *last = Some(tokio::time::Instant::now()),
            Ok(false) => {}
        }
        // The loop sleeps until the time it computed before this request;
        // the answer may have moved it (a retry after a failure).
        match kind {
            CheckKind::Licence => self.wake_licence.notify_one(),
            CheckKind::Update => self.wake_update.notify_one(),
        }
        Ok(self.snapshot())
    }

    /// `POST /v1/activate`: activates `key` on this host; on success the key
    /// is saved (mode 0600) and put in force. The outcome goes to the
    /// history with the caller's uid.
    pub async fn activate(&self, key: LicenseKey, caller: Option<u32>) -> ActionResult {
        if let Some(until) = self.gate() {
            return Err(self.gate_refusal(until));
        }
        let _portal = self.portal_lock.lock().await;
        self.refresh_inputs();
        let config = self.config();
        let version = self.product_version(&config);
        let hw = lock(&self.state)
            .hwid
            .clone()
            .map_err(ActionError::NoHardwareId)?;
        let body = self.body(Endpoint::Activate, &key, &hw, &version, &config);
        let candidate = Inputs {
            key_fingerprint: Some(key.fingerprint()),
            hardware_id: hw.clone(),
        };
        let idempotency_key = self.activation_key(&candidate).await;
        let shutting_down = || ActionError::Unreachable("the daemon is shutting down".into());
        let mut c = self
            .call_keyed(Endpoint::Activate, &body, Some(&idempotency_key))
            .await
            .ok_or_else(shutting_down)?;
        // Records an answer about the candidate; true while the activation
        // is in doubt.
        let record = |endpoint: Endpoint, c: &Classified| {
            let mut st = lock(&self.state);
            let now = self.observe(&mut st.core);
            let held = st.core.record_candidate(
                endpoint,
                c,
                &candidate,
                &config.schedule.core,
                now,
                &mut **self.jitter(),
            );
            // A valid answer forgets a released key: the key in force may change.
            st.settle();
            held
        };
        if record(Endpoint::Activate, &c) {
            // The activation is in doubt: one validate decides (SPEC).
            let body = self.body(Endpoint::Validate, &key, &hw, &version, &config);
            c = self
                .call(Endpoint::Validate, &body)
                .await
                .ok_or_else(shutting_down)?;
            record(Endpoint::Validate, &c);
        }
        let result = {
            let mut st = lock(&self.state);
            match &c.outcome {
                Outcome::Valid(_) => {
                    st.saved_key = Some(key.clone());
                    st.settle();
                    let inputs = st.inputs();
                    st.core.apply_inputs(&inputs);
                    Ok(())
                }
                Outcome::Refused { reason, .. } => Err(ActionError::Refused(reason.clone())),
                Outcome::Failed(e) if e.kind == ErrorKind::RateLimited => {
                    match st.core.gate_closed_until(self.now()) {
                        Some(until) => Err(ActionError::Gate(until)),
                        None => Err(ActionError::Unreachable(e.message.clone())),
                    }
                }
                Outcome::Failed(e) => Err(ActionError::Unreachable(e.message.clone())),
                _ => Err(ActionError::Unreachable("unexpected answer".into())),
            }
        };
        self.note_action(true, caller, &key, &result);
        if result.is_ok() {
            info!(key = %key, "licence {key} activated on this host");
            if let Err(e) = self.store.save_key(&key) {
                error!(error = %e, "cannot save the activated key ({e}); it is in force until the daemon stops");
            }
        }
        self.publish();
        self.wake_licence.notify_one();
        self.wake_update.notify_one();
        result.map(|()| self.snapshot())
    }

    /// `POST /v1/deactivate`: releases this host's activation; the outcome
    /// goes to the history with the caller's uid.
    pub async fn deactivate(&self, caller: Option<u32>) -> ActionResult {
        if let Some(until) = self.gate() {
            return Err(self.gate_refusal(until));
        }
        let _portal = self.portal_lock.lock().await;
        self.refresh_inputs();
        let config = self.config();
        let (key, hw) = {
            let st = lock(&self.state);
            let key = st.key().cloned().ok_or(ActionError::NoKey)?;
            (key, st.hwid.clone().map_err(ActionError::NoHardwareId)?)
        };
        let version = self.product_version(&config);
        let body = self.body(Endpoint::Deactivate, &key, &hw, &version, &config);
        let c = self
            .call(Endpoint::Deactivate, &body)
            .await
            .ok_or_else(|| ActionError::Unreachable("the daemon is shutting down".into()))?;
        let result = {
            let mut st = lock(&self.state);
            let released = st.configured_key.as_ref().map(LicenseKey::fingerprint);
            let now = self.observe(&mut st.core);
            st.core.record_deactivation(
                &c,
                released,
                &config.schedule.core,
                now,
                &mut **self.jitter(),
            );
            let result = match &c.outcome {
                Outcome::Deactivated => {
                    st.saved_key = None;
                    Ok(())
                }
                Outcome::Refused { reason, .. } => Err(ActionError::Refused(reason.clone())),
                Outcome::Failed(e) => Err(ActionError::Unreachable(e.message.clone())),
                _ => Err(ActionError::Unreachable("unexpected answer".into())),
            };
            // The released key and the saved one are facts of the key in force.
            st.settle();
            result
        };
        self.note_action(false, caller, &key, &result);
        if result.is_ok() {
            info!(key = %key, "licence {key} deactivated on this host");
            if let Err(e) = self.store.remove_key() {
                error!(error = %e, "cannot remove the saved key: {e}");
            }
        }
        self.publish();
        self.wake_licence.notify_one();
        self.wake_update.notify_one();
        result.map(|()| self.snapshot())
    }
}

impl Daemon {
    /// Queues an activation's (`activate`) or deactivation's outcome for
    /// the history; the next `publish` writes it before announcing.
    fn note_action(
        &self,
        activate: bool,
        caller: Option<u32>,
        key: &LicenseKey,
        result: &Result<(), ActionError>,
    ) {
        let outcome = match result {
            Ok(()) => OUTCOME_OK.to_string(),
            Err(ActionError::Refused(reason)) => reason.code.clone(),
            Err(_) => OUTCOME_UNREACHABLE.to_string(),
        };
        let action = history::Action {
            uid: caller,
            key: key.masked(),
            outcome,
        };
        lock(&self.state).pending.push(if activate {
            Event::Activate(action)
        } else {
            Event::Deactivate(action)
        });
    }
}

impl Service for Daemon {
    fn fair_use(&self) -> Arc<crate::fair::Limiter> {
        self.fair_use.clone()
    }

    fn status(&self) -> Arc<Snapshot> {
        self.refresh_hardware_if_stale();
        self.notice_clock_step();
        self.snapshot()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Daemon::snapshot(self)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        Daemon::subscribe(self)
    }

    fn healthy(&self) -> bool {
        Daemon::healthy(self)
    }

    fn request_counts(&self) -> Vec<((&'static str, &'static str), u64)> {
        self.counters.snapshot()
    }

    fn now(&self) -> Timestamp {
        Daemon::now(self)
    }

    async fn check(&self) -> ActionResult {
        self.manual_check(CheckKind::Licence).await
    }

    async fn update_check(&self) -> ActionResult {
        self.manual_check(CheckKind::Update).await
    }

    async fn activate(&self, key: LicenseKey, caller: Option<u32>) -> ActionResult {
        Daemon::activate(self, key, caller).await
    }

    async fn deactivate(&self, caller: Option<u32>) -> ActionResult {
        Daemon::deactivate(self, caller).await
    }

    fn history(&self, query: &crate::history::Query) -> Vec<crate::history::Entry> {
        self.history.query(query)
    }
}
