//! The licence loop and one licence exchange (activate or validate, as the
//! core says).

use super::shared::{Daemon, lock};
use super::{Alive, LICENCE_LOOP, MAX_SLEEP, Why, instant_for};
use crate::history::{Action, Event, OUTCOME_OK};
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, error, info_span};
use wispanel_core::Endpoint;
use wispanel_core::classify::Outcome;
use wispanel_core::machine::{Inputs, Verdict};
use wispanel_core::timestamp::Timestamp;

impl Daemon {
    /// Makes one licence request (activate or validate, as the core says).
    /// A `Scheduled` request is made only if it is still due once the portal
    /// lock is held (a manual check may have just made it); a `Manual` one
    /// asks the core to check now. Returns whether a request was made, or
    /// `Err(until)` when the gate is closed: the one check of the gate for a
    /// request, under the portal lock.
    pub(super) async fn licence_request(&self, why: Why) -> Result<bool, Timestamp> {
        let _portal = self.portal_lock.lock().await;
        self.refresh_inputs();
        let config = self.config();
        let version = self.product_version(&config);
        let (endpoint, body, inputs, masked) = {
            let mut st = lock(&self.state);
            let now = self.observe(&mut st.core);
            let inputs = st.inputs();
            if st.key().is_none() || st.hwid.is_err() {
                return Ok(false);
            }
            if let Some(until) = st.core.gate_closed_until(now) {
                return Err(until);
            }
            if why == Why::Manual {
                st.core.check_now();
            }
            let Some(due) = st.core.due(&inputs, now) else {
                return Ok(false);
            };
            if why == Why::Scheduled && due.at > now {
                return Ok(false);
            }
            let (Some(key), Ok(hw)) = (st.key(), st.hwid.as_ref()) else {
                return Ok(false);
            };
            let body = self.body(due.endpoint, key, hw, &version, &config);
            (due.endpoint, body, inputs, key.masked())
        };
        let idempotency_key = match endpoint {
            Endpoint::Activate => Some(self.activation_key(&inputs).await),
            _ => None,
        };
        let Some(c) = self
            .call_keyed(endpoint, &body, idempotency_key.as_deref())
            .await
        else {
            return Ok(false);
        };
        {
            let mut st = lock(&self.state);
            let answered_at = self.observe(&mut st.core);
            st.core.record_licence(
                endpoint,
                &c,
                &inputs,
                &config.schedule.core,
                answered_at,
                &mut **self.jitter(),
            );
            // The key or hardware may have changed while the request ran.
            let now_inputs = st.inputs();
            st.core.apply_inputs(&now_inputs);
            // The daemon's own activation of the configured key: its
            // verdicts go to the history (uid null). An answer without a
            // verdict is not an outcome here (the loop tries again), nor is
            // a refusal held while the activation is in doubt (a validate
            // decides, and its verdict is a `license_state` entry).
            let decided = matches!(
                &st.core.licence.verdict,
                Some(Verdict::Valid { at, .. } | Verdict::Refused { at, .. }) if *at == answered_at
            );
            let outcome = match &c.outcome {
                Outcome::Valid(_) if decided => Some(OUTCOME_OK.to_string()),
                Outcome::Refused { reason, .. } if decided => Some(reason.code.clone()),
                _ => None,
            };
            if let (Endpoint::Activate, Some(outcome)) = (endpoint, outcome) {
                st.pending.push(Event::Activate(Action {
                    uid: None,
                    key: masked,
                    outcome,
                }));
            }
        }
        self.publish();
        self.wake_update.notify_one();
        Ok(true)
    }

    /// The `Idempotency-Key` of an `activate` with `inputs` about to be sent
    /// (the saved one while that activation has no verdict, else a new one),
    /// written to `state.json` before the request leaves (SPEC "Activation
    /// in doubt"), so that a kill -9 cannot lose it.
    pub(super) async fn activation_key(&self, inputs: &Inputs) -> String {
        let key = lock(&self.state)
            .core
            .activation_key_or(inputs, crate::portal::new_idempotency_key);
        // Published first: the save takes the core last published.
        self.publish();
        if let Err(e) = self.save_now().await {
            // Sent all the same: the key stays in memory and the state
            // writer keeps trying to save it.
            error!(error = %e, "cannot save the activation's Idempotency-Key before sending it: {e}");
        }
        key
    }
}

/// Validates (or activates) when the core says so, and wakes when the licence
/// lapses by itself so the change is announced at once.
pub(super) async fn licence_loop(d: Arc<Daemon>) {
    let _alive = Alive::new(&d, LICENCE_LOOP);
    async {
        loop {
            // A step of the wall clock while asleep moves the plan first.
            d.notice_clock_step();
            let now = d.now();
            let config = d.config();
            let (due, lapse, gate) = {
                let st = lock(&d.state);
                let inputs = st.inputs();
                let due = if st.hwid.is_ok() {
                    st.core.due(&inputs, now)
                } else {
                    None
                };
                (
                    due,
                    st.core.next_lapse(&inputs, &config.schedule.core, now),
                    st.core.portal.rate_limited_until,
                )
            };
            if let Some(due) = due
                && due.at <= now
            {
                if d.licence_request(Why::Scheduled).await != Ok(true) {
                    // Nothing was sent (gate, no key): wait for a wake or the next due time.
                    tokio::select! {
                        _ = d.wake_licence.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = d.shutdown.cancelled() => break,
                    }
                }
                continue;
            }
            let mut wake = now.add(MAX_SLEEP);
            for t in [due.map(|d| d.at), lapse, gate].into_iter().flatten() {
                if t > now {
                    wake = wake.min(t);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(instant_for(wake, now)) => {
                    // A lapse or an opened gate changes the status by itself;
                    // the hardware may have changed while nobody asked.
                    d.refresh_inputs();
                    d.publish();
                }
                _ = d.wake_licence.notified() => {}
                _ = d.shutdown.cancelled() => break,
            }
        }
    }
    .instrument(info_span!("licence"))
    .await
}
