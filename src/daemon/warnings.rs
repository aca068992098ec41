//! The warnings timer and the metrics textfile.
//!
//! Warnings change by themselves as time passes (the last day of a grace
//! begins, an expiry comes within `warn_before_expiry`, the day count of a
//! message turns over). `publish` computes when that happens next
//! ([`wispanel_core::warnings::next_change`]); the timer sleeps until then and
//! publishes, so the warning appears at its instant, with its event, and
//! nothing polls.

use super::instant_for;
use super::shared::Daemon;
use crate::{metrics, textfile};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{Instrument, info_span};
use wispanel_core::timestamp::Timestamp;

/// Publishes the status when the warnings change by themselves.
pub(super) async fn warnings_timer(d: Arc<Daemon>, mut rx: watch::Receiver<Option<Timestamp>>) {
    async {
        loop {
            let at = *rx.borrow_and_update();
            let now = d.now();
            let due = async {
                match at {
                    Some(at) if at > now => tokio::time::sleep_until(instant_for(at, now)).await,
                    Some(_) => {}
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = due => {
                    // Long sleeps are cut (a jump of the wall clock is
                    // noticed); only a time that has come is published.
                    if at.is_some_and(|at| d.now() >= at) {
                        d.publish();
                    }
                }
                r = rx.changed() => if r.is_err() { break },
                _ = d.shutdown.cancelled() => break,
            }
        }
    }
    .instrument(info_span!("warnings"))
    .await
}

/// Keeps `metrics_textfile` written (see [`textfile::keep_written`]): the
/// same text as `GET /metrics`, on every published change and at least once
/// a minute; the path is read from the configuration in force each time.
pub(super) async fn metrics_textfile(d: Arc<Daemon>) {
    let (config_of, counters_of) = (d.clone(), d.clone());
    let fair = d.fair_use.clone();
    textfile::keep_written(
        move || config_of.config().metrics_textfile.clone(),
        d.subscribe(),
        move |snap| metrics::render(&snap.doc, &counters_of.counters.snapshot(), &fair.figures()),
        textfile::REWRITE_EVERY,
        d.shutdown.clone(),
    )
    .await
}
