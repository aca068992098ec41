//! Where the daemon's "now" and randomness come from. The core never reads a
//! clock or a random generator: the shells pass these in.

use wispanel_core::schedule::Jitter;
use wispanel_core::timestamp::Timestamp;

/// The current wall-clock time.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// The daemon's jitter: the thread-local generator of `rand`.
pub struct ThreadJitter;

impl Jitter for ThreadJitter {
    fn unit(&mut self) -> f64 {
        rand::random::<f64>()
    }
}
