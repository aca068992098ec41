//! Where the daemon's "now" and randomness come from. The core never reads a
//! clock or a random generator: the shells pass these in.
//!
//! The daemon takes a [`Clock`] so that tests can run it under
//! `tokio::time::pause()`: [`TokioClock`] moves with tokio's (paused) time,
//! so the daemon's timers and its notion of wall time advance together.
//!
//! Beside the wall clock, a [`Clock`] may give a steady one that is never
//! stepped ([`Clock::steady`]: `CLOCK_BOOTTIME` in production, which also
//! counts suspend), so that the core can tell a step of the wall clock
//! from time passing ([`wispanel_core::portal_time`]). A test steps the
//! wall clock of a [`TokioClock`] with [`TokioClock::step`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use wispanel_core::portal_time::Reading;
use wispanel_core::schedule::Jitter;
use wispanel_core::timestamp::Timestamp;

/// The current wall-clock time.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// `CLOCK_BOOTTIME`: time since boot, suspend included, never stepped;
/// `None` if the kernel does not have it.
pub fn boot_time() -> Option<Duration> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .map(Duration::from)
}

/// A source of wall-clock time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;

    /// A clock that is never stepped and counts suspend, from any fixed
    /// origin; `None` when there is none (the core then knows of no step
    /// of the wall clock and reads deadlines by SPEC's rule alone).
    fn steady(&self) -> Option<Duration> {
        None
    }

    /// Both clocks, read one after the other, for
    /// [`wispanel_core::machine::Core::observe_clock`].
    fn reading(&self) -> (Timestamp, Option<Reading>) {
        let wall = self.now();
        let reading = self.steady().map(|s| Reading {
            wall,
            steady_ms: i64::try_from(s.as_millis()).unwrap_or(i64::MAX),
        });
        (wall, reading)
    }
}

/// The system's wall clock and `CLOCK_BOOTTIME` (production).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }

    fn steady(&self) -> Option<Duration> {
        boot_time()
    }
}

/// A wall clock that follows tokio's time: the wall time at creation plus
/// the tokio time elapsed since, plus the steps a test made
/// ([`TokioClock::step`]). Under `tokio::time::pause()` it moves only when
/// tokio's time does (auto-advance, `advance`, `sleep`). Its steady clock is
/// tokio's time elapsed, which a step does not move.
pub struct TokioClock {
    start_wall: Timestamp,
    start: tokio::time::Instant,
    /// The sum of the steps of the wall clock, in milliseconds.
    stepped_ms: AtomicI64,
}

impl TokioClock {
    /// Starts at `start_wall` now (in tokio's time).
    pub fn starting_at(start_wall: Timestamp) -> TokioClock {
        TokioClock {
            start_wall,
            start: tokio::time::Instant::now(),
            stepped_ms: AtomicI64::new(0),
        }
    }

    /// Steps the wall clock by `secs` (negative: back), as `date -s` or
    /// NTP would; tokio's time and the steady clock go on unchanged.
    pub fn step(&self, secs: i64) {
        self.stepped_ms
            .fetch_add(secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let t = self.start_wall.add(self.start.elapsed());
        Timestamp(t.0.saturating_add(self.stepped_ms.load(Ordering::SeqCst)))
    }

    fn steady(&self) -> Option<Duration> {
        Some(self.start.elapsed())
    }
}

/// The daemon's jitter: the thread-local generator of `rand`.
pub struct ThreadJitter;

impl Jitter for ThreadJitter {
    fn unit(&mut self) -> f64 {
        rand::random::<f64>()
    }
}
