//! The retry back-off, the splay of scheduled runs and grace pacing.
//!
//! Randomness comes in through [`Jitter`] so tests and the fleet simulation
//! are deterministic.

use crate::timestamp::Timestamp;
use std::time::Duration;

/// The schedule parameters the core needs (SPEC `[schedule]`, less
/// `request_timeout`, which only the portal client uses). The configuration
/// converts its `[schedule]` table into this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub validate_interval: Duration,
    pub update_check_interval: Duration,
    pub splay: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub offline_grace: Duration,
}

impl Default for Schedule {
    /// SPEC's defaults.
    fn default() -> Self {
        Schedule {
            validate_interval: Duration::from_secs(6 * 3600),
            update_check_interval: Duration::from_secs(24 * 3600),
            splay: Duration::from_secs(15 * 60),
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            offline_grace: Duration::from_secs(7 * 86400),
        }
    }
}

/// A source of uniform numbers in `[0, 1)`.
pub trait Jitter {
    fn unit(&mut self) -> f64;
}

/// A fixed value, for tests: 0.0 gives the shortest wait, 0.999 nearly the longest.
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn unit(&mut self) -> f64 {
        self.0
    }
}

/// A small deterministic generator (SplitMix64) for simulations.
pub struct SeededJitter(pub u64);

impl Jitter for SeededJitter {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn scale(d: Duration, f: f64) -> Duration {
    Duration::from_secs_f64(d.as_secs_f64() * f.clamp(0.0, 1.0))
}

/// The cap `d = min(retry_max, retry_initial × 2^n)` after the n-th
/// consecutive failure (n = 0 for the first).
pub fn backoff_cap(s: &Schedule, n: u32) -> Duration {
    let factor = 2u32.checked_pow(n.min(31)).unwrap_or(u32::MAX);
    s.retry_initial
        .checked_mul(factor)
        .unwrap_or(s.retry_max)
        .min(s.retry_max)
}

/// A random wait between d/2 and d (SPEC "Rate limits and retries").
pub fn backoff_delay(s: &Schedule, n: u32, j: &mut dyn Jitter) -> Duration {
    let d = backoff_cap(s, n);
    d / 2 + scale(d - d / 2, j.unit())
}

/// A random delay between 0 and `splay`.
pub fn splay_delay(s: &Schedule, j: &mut dyn Jitter) -> Duration {
    scale(s.splay, j.unit())
}

/// The next scheduled run after `now`, `interval` plus splay.
pub fn next_regular(
    now: Timestamp,
    interval: Duration,
    s: &Schedule,
    j: &mut dyn Jitter,
) -> Timestamp {
    now.add(interval).add(splay_delay(s, j))
}

/// Grace pacing (SPEC): whether a licensed host in `grace` after its n-th
/// consecutive failure waits the normal interval instead of the back-off.
pub fn grace_paced(n: u32, grace_until: Timestamp, now: Timestamp) -> bool {
    n >= 2 && grace_until.since(now) >= Duration::from_secs(24 * 3600)
}

/// When to retry after the n-th consecutive failure of a licence request.
///
/// `grace_until` is set while the host is in `grace`. Paced retries never
/// overshoot the moment the last 24 h of grace begin; from then on the
/// back-off applies again.
pub fn next_licence_retry(
    now: Timestamp,
    n: u32,
    grace_until: Option<Timestamp>,
    s: &Schedule,
    j: &mut dyn Jitter,
) -> Timestamp {
    let backoff = now.add(backoff_delay(s, n, j));
    match grace_until {
        Some(g) if grace_paced(n, g, now) => {
            let paced = next_regular(now, s.validate_interval, s, j);
            let last_day = g.sub(Duration::from_secs(24 * 3600));
            if paced <= last_day {
                paced
            } else {
                last_day.max(backoff)
            }
        }
        _ => backoff,
    }
}

/// Quick retries of a failed update check before they are paced.
pub const UPDATE_QUICK_RETRIES: u32 = 2;

/// When to retry an update check after the `failed_checks`-th failed one in a
/// row (SPEC): the first two retries follow the back-off (`n` is the
/// portal's failure step), later ones come once per `validate_interval` with
/// splay until one succeeds. Update checks are never urgent, and a fleet must
/// not press a portal that is down with them.
pub fn next_update_retry(
    now: Timestamp,
    failed_checks: u32,
    n: u32,
    s: &Schedule,
    j: &mut dyn Jitter,
) -> Timestamp {
    if failed_checks > UPDATE_QUICK_RETRIES {
        next_regular(now, s.validate_interval, s, j)
    } else {
        now.add(backoff_delay(s, n, j))
    }
}

/// The first try after a closed gate opens: no earlier than the gate, and
/// spread over up to half of the wait (at most `splay`), so that the hosts a
/// portal refused in the same second do not all come back in the same second.
pub fn after_gate(
    next: Timestamp,
    gate: Timestamp,
    now: Timestamp,
    s: &Schedule,
    j: &mut dyn Jitter,
) -> Timestamp {
    if next > gate {
        return next;
    }
    let spread = (gate.since(now) / 2).min(s.splay);
    gate.add(scale(spread, j.unit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn sched() -> Schedule {
        Schedule::default()
    }

    #[test]
    fn backoff_grows_doubles_and_caps() {
        let s = sched();
        let caps: Vec<u64> = (0..10).map(|n| backoff_cap(&s, n).as_secs()).collect();
        assert_eq!(
            caps,
            vec![30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
        );
        assert_eq!(backoff_cap(&s, 1000), Duration::from_secs(3600));
    }

    #[test]
    fn backoff_is_jittered_between_half_and_full() {
        let s = sched();
        for n in 0..12 {
            let d = backoff_cap(&s, n);
            let lo = backoff_delay(&s, n, &mut FixedJitter(0.0));
            let hi = backoff_delay(&s, n, &mut FixedJitter(0.999_999));
            assert_eq!(lo, d / 2, "n={n}");
            assert!(hi <= d && hi > d.mul_f64(0.99), "n={n} hi={hi:?}");
        }
        let mut j = SeededJitter(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let v = backoff_delay(&s, 3, &mut j);
            assert!(v >= Duration::from_secs(120) && v <= Duration::from_secs(240));
            seen.insert(v.as_millis());
        }
        assert!(seen.len() > 50, "jitter spreads the retries");
    }

    #[test]
    fn splay_within_bounds() {
        let s = sched();
        assert_eq!(splay_delay(&s, &mut FixedJitter(0.0)), Duration::ZERO);
        assert!(splay_delay(&s, &mut FixedJitter(0.999)) <= s.splay);
        let zero = Schedule {
            splay: Duration::ZERO,
            ..sched()
        };
        assert_eq!(splay_delay(&zero, &mut FixedJitter(0.7)), Duration::ZERO);
    }

    #[test]
    fn grace_pacing_after_two_quick_retries() {
        let s = sched();
        let g = NOW.add(Duration::from_secs(5 * 86400));
        let j = &mut FixedJitter(0.0);
        // n = 0, 1: the quick back-off.
        assert_eq!(
            next_licence_retry(NOW, 0, Some(g), &s, j),
            NOW.add(Duration::from_secs(15))
        );
        assert_eq!(
            next_licence_retry(NOW, 1, Some(g), &s, j),
            NOW.add(Duration::from_secs(30))
        );
        // n = 2: back to the normal interval.
        assert_eq!(
            next_licence_retry(NOW, 2, Some(g), &s, j),
            NOW.add(s.validate_interval)
        );
        // Without grace (unknown, lapsed), the back-off continues.
        assert_eq!(
            next_licence_retry(NOW, 2, None, &s, j),
            NOW.add(Duration::from_secs(60))
        );
    }

    #[test]
    fn last_day_of_grace_gets_the_backoff_back() {
        let s = sched();
        let j = &mut FixedJitter(0.0);
        let g = NOW.add(Duration::from_secs(20 * 3600));
        assert_eq!(
            next_licence_retry(NOW, 5, Some(g), &s, j),
            NOW.add(Duration::from_secs(480))
        );
        // 27 h before the end: pacing stops at the 24 h mark, not 6 h later.
        let g = NOW.add(Duration::from_secs(27 * 3600));
        assert_eq!(
            next_licence_retry(NOW, 5, Some(g), &s, j),
            NOW.add(Duration::from_secs(3 * 3600))
        );
    }

    #[test]
    fn retries_after_a_gate_are_spread_but_never_early() {
        let s = sched();
        let gate = NOW.add(Duration::from_secs(60));
        let soon = NOW.add(Duration::from_secs(10));
        assert_eq!(after_gate(soon, gate, NOW, &s, &mut FixedJitter(0.0)), gate);
        let late = after_gate(soon, gate, NOW, &s, &mut FixedJitter(0.999));
        assert!(
            late > gate.add(Duration::from_secs(29)) && late <= gate.add(Duration::from_secs(30))
        );
        let later = NOW.add(Duration::from_secs(3600));
        assert_eq!(
            after_gate(later, gate, NOW, &s, &mut FixedJitter(0.5)),
            later
        );
    }

    #[test]
    fn seeded_jitter_is_uniformish() {
        let mut j = SeededJitter(1);
        let xs: Vec<f64> = (0..10_000).map(|_| j.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
