//! The state writer: saves the newest core after every change. The core to
//! save is the one `Daemon::publish` last handed over (one copy per change,
//! shared, never copied again for the save); `save_lock` is the one lock.

use super::shared::{Daemon, lock};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span};

impl Daemon {
    /// Saves the core last published (`Daemon::publish` hands every change
    /// over, so call it after publishing). Saves are serialised by
    /// `save_lock` and each takes the core under it, so a save can never put
    /// an older core on disk after a newer one (the state writer and the save
    /// of an activation's Idempotency-Key before it is sent both come here).
    pub(super) async fn save_now(&self) -> Result<(), String> {
        let _one_at_a_time = self.save_lock.lock().await;
        let core = self.save_tx.borrow().clone();
        let store = self.store.clone();
        let now = self.now();
        let saved = match tokio::task::spawn_blocking(move || store.save(&core, now)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the save task failed: {e}")),
        };
        self.note_save(saved.is_ok());
        saved
    }

    /// Records the outcome of a save of `state.json`: the warning
    /// `state_not_saved` stands from the first failure until a save works.
    fn note_save(&self, ok: bool) {
        let now = self.now();
        let changed = {
            let mut st = lock(&self.state);
            let before = st.state_not_saved_since;
            st.state_not_saved_since = if ok { None } else { before.or(Some(now)) };
            st.state_not_saved_since != before
        };
        if changed {
            self.publish();
        }
    }
}

/// Saves each new core; on failure (full disk, read-only directory) logs
/// loudly, keeps serving from memory and tries again with a growing delay.
pub(super) async fn state_writer(
    d: Arc<Daemon>,
    mut rx: watch::Receiver<Arc<wispanel_core::machine::Core>>,
) {
    use backon::{ExponentialBuilder, Retryable};
    async {
        loop {
            rx.mark_unchanged();
            // Each attempt saves the newest core; failures back off 1 s → 60 s
            // with jitter, for as long as it takes.
            let save = || d.save_now();
            let mut failed = false;
            let policy = ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(60))
                .with_jitter()
                .without_max_times();
            let saved = save.retry(policy).sleep(tokio::time::sleep).notify(
                |e: &String, wait: Duration| {
                    failed = true;
                    crate::logging::event::state_not_saved(e, Some(wait.as_secs()));
                },
            );
            tokio::select! {
                r = saved => if r.is_ok() && failed { info!("the state is saved again") },
                _ = d.shutdown.cancelled() => break,
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = d.shutdown.cancelled() => break,
            }
        }
    }
    .instrument(info_span!("store"))
    .await
}
