//! The daemon's long-lived tasks. Each runs in its own span and ends when the
//! shutdown token is cancelled.

use super::{Control, Daemon, lock};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};
use wispanel_core::timestamp::Timestamp;

/// Sleeps are cut at this length so that a jump of the wall clock (suspend,
/// NTP step) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Bits of `loops_alive`.
pub const LICENCE_LOOP: u8 = 1;
pub const UPDATE_LOOP: u8 = 2;
/// Both loops.
pub const ALL: u8 = LICENCE_LOOP | UPDATE_LOOP;

fn instant_for(at: Timestamp, now: Timestamp) -> Instant {
    Instant::now() + at.since(now).min(MAX_SLEEP)
}

struct Alive<'a>(&'a Daemon, u8);

impl<'a> Alive<'a> {
    fn new(d: &'a Daemon, bit: u8) -> Alive<'a> {
        d.loops_alive.fetch_or(bit, Ordering::SeqCst);
        Alive(d, bit)
    }
}

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.loops_alive.fetch_and(!self.1, Ordering::SeqCst);
    }
}

/// Validates (or activates) when the core says so, and wakes when the licence
/// lapses by itself so the change is announced at once.
pub async fn licence_loop(d: Arc<Daemon>) {
    let _alive = Alive::new(&d, LICENCE_LOOP);
    async {
        loop {
            let now = crate::clock::now();
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
                    st.core.next_lapse(&inputs, &config.schedule.core(), now),
                    st.core.portal.rate_limited_until,
                )
            };
            if let Some(due) = due
                && due.at <= now
            {
                if !d.licence_request(super::Why::Scheduled).await {
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

/// Checks for updates on the core's update schedule.
pub async fn update_loop(d: Arc<Daemon>) {
    let _alive = Alive::new(&d, UPDATE_LOOP);
    async {
        loop {
            let now = crate::clock::now();
            let due = lock(&d.state).core.update_due(now);
            if let Some(at) = due
                && at <= now
                && d.has_key()
            {
                if !d.update_request(super::Why::Scheduled).await {
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

/// Saves each new core; on failure (full disk, read-only directory) logs
/// loudly, keeps serving from memory and tries again with a growing delay.
pub async fn state_writer(
    d: Arc<Daemon>,
    mut rx: watch::Receiver<Arc<wispanel_core::machine::Core>>,
) {
    use backon::{ExponentialBuilder, Retryable};
    async {
        loop {
            rx.mark_unchanged();
            // Each attempt saves the newest core; failures back off 1 s → 60 s
            // with jitter, for as long as it takes.
            let save = || async {
                let core = rx.borrow().clone();
                let store = d.store.clone();
                match tokio::task::spawn_blocking(move || store.save(&core, crate::clock::now()))
                    .await
                {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("the save task failed: {e}")),
                }
            };
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

/// Pings systemd's watchdog at half of `WATCHDOG_USEC` while the loops run.
pub async fn watchdog(d: Arc<Daemon>) {
    let Some(period) = crate::systemd::watchdog_period() else {
        return;
    };
    async {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if d.loops_alive.load(Ordering::SeqCst) == LICENCE_LOOP | UPDATE_LOOP {
                        crate::systemd::watchdog();
                    } else {
                        warn!("a loop has stopped; not pinging the watchdog");
                    }
                }
                _ = d.shutdown.cancelled() => break,
            }
        }
    }
    .instrument(info_span!("watchdog"))
    .await
}

/// Reloads the configuration when asked (SIGHUP).
pub async fn reloader(d: Arc<Daemon>, reload: Arc<Notify>, path: PathBuf) {
    async {
        loop {
            tokio::select! {
                _ = reload.notified() => {
                    info!(path = %path.display(), "reloading the configuration from {}", path.display());
                    d.reload(&path);
                }
                _ = d.shutdown.cancelled() => break,
            }
        }
    }
    .instrument(info_span!("reload"))
    .await
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP reloads.
pub fn install_signals(control: Control) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { info!("SIGTERM"); control.shutdown.cancel(); }
                    _ = int.recv() => { info!("SIGINT"); control.shutdown.cancel(); }
                    _ = hup.recv() => control.reload.notify_one(),
                    _ = control.shutdown.cancelled() => break,
                }
            }
        }
        .instrument(info_span!("signals")),
    );
    Ok(())
}
