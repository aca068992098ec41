//! The update loop and one update check.

use super::shared::{Daemon, lock};
use super::{Alive, MAX_SLEEP, UPDATE_LOOP, Why, instant_for};
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, info_span};
use wispanel_core::Endpoint;
use wispanel_core::timestamp::Timestamp;

impl Daemon {
    /// Checks for an update now (the update loop and manual checks); a
    /// `Scheduled` check only if it is still due once the portal lock is held.
    /// Returns whether a request was made, or `Err(until)` when the gate is
    /// closed (its one check for a request, under the portal lock).
    pub(super) async fn update_request(&self, why: Why) -> Result<bool, Timestamp> {
        let _portal = self.portal_lock.lock().await;
        let config = self.config();
        let version = self.product_version(&config);
        let body = {
            let mut st = lock(&self.state);
            let now = self.observe(&mut st.core);
            let (Some(key), Ok(hw)) = (st.key(), st.hwid.as_ref()) else {
                return Ok(false);
            };
            if let Some(until) = st.core.gate_closed_until(now) {
                return Err(until);
            }
            if why == Why::Scheduled && st.core.update_due(now).is_none_or(|t| t > now) {
                return Ok(false);
            }
            self.body(Endpoint::CheckUpdate, key, hw, &version, &config)
        };
        let Some(c) = self.call(Endpoint::CheckUpdate, &body).await else {
            return Ok(false);
        };
        {
            let mut st = lock(&self.state);
            let now = self.observe(&mut st.core);
            st.core.record_update(
                &c,
                &version,
                &config.schedule.core,
                now,
                &mut **self.jitter(),
            );
        }
        self.publish();
        self.wake_licence.notify_one();
        Ok(true)
    }
}

/// Checks for updates on the core's update schedule.
pub(super) async fn update_loop(d: Arc<Daemon>) {
    let _alive = Alive::new(&d, UPDATE_LOOP);
    async {
        loop {
            d.notice_clock_step();
            let now = d.now();
            let due = lock(&d.state).core.update_due(now);
            if let Some(at) = due
                && at <= now
                && d.has_key()
            {
                if d.update_request(Why::Scheduled).await != Ok(true) {
                    tokio::select! {
                        _ = d.wake_update.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = d.shutdown.cancelled() => break,
                    }
                }
                continue;
            }
            let wake = due.filter(|t| *t > now).unwrap_or(now.add(MAX_SLEEP));
            tokio::select! {
                _ = tokio::time::sleep_until(instant_for(wake, now)) => {}
                _ = d.wake_update.notified() => {}
                _ = d.shutdown.cancelled() => break,
            }
        }
    }
    .instrument(info_span!("update"))
    .await
}
