//! `wispanel-licensed`: the long-lived tasks around the no-I/O core.
//!
//! Tasks (each in its own tracing span): the licence loop (`licence.rs`), the
//! update loop (`updates.rs`), the state writer (`writer.rs`), the watchdog and
//! the signal handler (`run.rs`), the reloader (`reload.rs`), the warnings
//! timer and the `metrics_textfile` writer (`warnings.rs`) and the status
//! socket (`crate::socket`, which serves the daemon through
//! [`crate::socket::Service`], implemented in `actions.rs`). They share one
//! [`Daemon`] (`shared.rs`): the core's state sits behind a `std` mutex that is
//! never held across an `.await`; every portal request goes through one async
//! lock (`portal.rs`), so the loops and the socket's manual checks never press
//! the portal in parallel. After each change `Daemon::publish` rebuilds the
//! status document (served from memory by the socket) and hands the core to
//! the state writer.
//!
//! [`run`] is the in-process entry point: configuration, an already-bound
//! listener, a shutdown future and an [`Env`] (clock, randomness, portal), so
//! tests run the daemon under `tokio::time::pause()` (the harness in
//! `crate::testing`, feature `test-util`; its schedule tests are
//! `tests/schedule.rs`).

mod actions;
mod licence;
mod portal;
mod reload;
mod run;
mod shared;
mod status_line;
mod updates;
mod warnings;
mod writer;

mod abort;
pub use abort::abort_on_panic;
pub use portal::{BoxFuture, Portal, PortalFactory};
pub use run::{Env, StartError, main, run};
pub use shared::{Counters, Daemon};
pub use status_line::status_line;

use std::time::Duration;
use tokio::time::Instant;
use wispanel_core::timestamp::Timestamp;

/// A manual check within this time of the last one gets its result.
pub const MANUAL_REUSE: Duration = Duration::from_secs(10);

/// How old a hardware_id may be before a status request has it recomputed.
pub const HWID_FRESHNESS: Duration = Duration::from_secs(2);

/// SIGTERM to exit: the in-flight request is abandoned, the state is saved.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(4);

/// Sleeps are cut at this length so that a jump of the wall clock (suspend,
/// NTP step) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Bits of `Daemon::loops_alive`.
const LICENCE_LOOP: u8 = 1;
const UPDATE_LOOP: u8 = 2;
/// Both loops.
const LOOPS_ALL: u8 = LICENCE_LOOP | UPDATE_LOOP;

/// Who asked for a portal request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    /// A loop, because the core said it is due.
    Scheduled,
    /// A client of the socket.
    Manual,
}

use std::sync::atomic::Ordering;

/// Marks a loop alive in `Daemon::loops_alive` while it runs.
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

/// The tokio instant at which the wall time `at` comes, seen from `now`.
fn instant_for(at: Timestamp, now: Timestamp) -> Instant {
    Instant::now() + at.since(now).min(MAX_SLEEP)
}
