//! Where the daemon's "now" and randomness come from. The core never reads a
//! clock or a random generator: the shells pass these in.
//!
//! The daemon takes a [`Clock`] so that tests can run it under
//! `tokio::time::pause()`: [`TokioClock`] moves with tokio's (paused) time,
//! so the daemon's timers and its notion of wall time advance together.

use wispanel_core::schedule::Jitter;
use wispanel_core::timestamp::Timestamp;

/// The current wall-clock time.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// A source of wall-clock time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock (production).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }
}

/// A wall clock that follows tokio's time: the wall time at creation plus
/// the tokio time elapsed since. Under `tokio::time::pause()` it moves only
/// when tokio's time does (auto-advance, `advance`, `sleep`).
pub struct TokioClock {
    start_wall: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at `start_wall` now (in tokio's time).
    pub fn starting_at(start_wall: Timestamp) -> TokioClock {
        TokioClock {
            start_wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.start_wall.add(self.start.elapsed())
    }
}

/// The daemon's jitter: the thread-local generator of `rand`.
pub struct ThreadJitter;

impl Jitter for ThreadJitter {
    fn unit(&mut self) -> f64 {
        rand::random::<f64>()
    }
}
