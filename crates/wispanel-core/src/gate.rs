//! The portal gate: when the portal says "slow down" (a 429, or a 503 with
//! `Retry-After`), no request goes to any endpoint until the time it names.

use crate::timestamp::Timestamp;
use std::time::Duration;

/// The shortest and longest the gate may stay closed (SPEC: 1 s .. 24 h).
pub const MIN_WAIT: Duration = Duration::from_secs(1);
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// How long a closing answer asks us to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateClose {
    /// Until this instant of the local clock (already clamped to 1 s .. 24 h
    /// from the answer).
    Until(Timestamp),
    /// The answer named no usable time: wait for the retry back-off.
    Backoff,
    /// A date in the portal's clock (an HTTP-date `Retry-After` or an
    /// `X-RateLimit-Reset`) from an answer without a `Date` header to measure
    /// it against: the core reads it with the clock skew it knows (SPEC
    /// "Portal time") and clamps the wait.
    PortalDate(Timestamp),
}

/// Clamps a wait to SPEC's bounds and turns it into an instant.
pub fn clamp_until(now: Timestamp, wait_ms: i128) -> Timestamp {
    let min = MIN_WAIT.as_millis() as i128;
    let max = MAX_WAIT.as_millis() as i128;
    let w = wait_ms.clamp(min, max);
    Timestamp(now.0.saturating_add(w as i64))
}

/// What a rate-limit header names: a wait, or a date in the portal's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deadline {
    WaitMs(i128),
    PortalDate(Timestamp),
}

/// `Retry-After`: delta-seconds or an HTTP date. `None` when the value is
/// garbage or negative (the caller then falls back).
fn retry_after_value(value: &str) -> Option<Deadline> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        // Enormous values saturate, then clamp to 24 h.
        let secs: i128 = v.parse::<u64>().map(i128::from).unwrap_or(i128::MAX / 2000);
        return Some(Deadline::WaitMs(secs.saturating_mul(1000)));
    }
    Timestamp::parse_http_date(v).map(Deadline::PortalDate)
}

/// `X-RateLimit-Reset`: unix seconds in the portal's clock.
fn ratelimit_reset_value(value: &str) -> Option<Deadline> {
    let secs: i64 = value.trim().parse().ok()?;
    Some(Deadline::PortalDate(Timestamp::from_unix_secs(secs)))
}

/// Turns a deadline into a gate: a date is read against `portal_now` (the
/// `Date` of the same answer) when there is one (SPEC "Portal time").
fn resolve(d: Deadline, now: Timestamp, portal_now: Option<Timestamp>) -> GateClose {
    match (d, portal_now) {
        (Deadline::WaitMs(ms), _) => GateClose::Until(clamp_until(now, ms)),
        (Deadline::PortalDate(at), Some(pn)) => {
            GateClose::Until(clamp_until(now, i128::from(at.0) - i128::from(pn.0)))
        }
        (Deadline::PortalDate(at), None) => GateClose::PortalDate(at),
    }
}

/// Parses `Retry-After` read in the local clock: delta-seconds or an HTTP
/// date. `None` when the value is garbage or negative.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Timestamp> {
    match resolve(retry_after_value(value)?, now, Some(now)) {
        GateClose::Until(t) => Some(t),
        _ => None,
    }
}

/// Parses `X-RateLimit-Reset` as unix seconds, read in the local clock.
pub fn parse_ratelimit_reset(value: &str, now: Timestamp) -> Option<Timestamp> {
    match resolve(ratelimit_reset_value(value)?, now, Some(now)) {
        GateClose::Until(t) => Some(t),
        _ => None,
    }
}

/// Decides whether an HTTP answer closes the gate, and until when.
///
/// `header` looks a header up case-insensitively. A date the answer names is
/// turned into a wait against the answer's own `Date` when it has one; else
/// it is left to the core as [`GateClose::PortalDate`].
pub fn closing(
    status: u16,
    header: &dyn Fn(&str) -> Option<String>,
    now: Timestamp,
) -> Option<GateClose> {
    let portal_now = header("date").and_then(|d| Timestamp::parse_http_date(&d));
    let retry_after = header("retry-after").as_deref().and_then(retry_after_value);
    match status {
        429 => {
            let reset = || {
                header("x-ratelimit-reset")
                    .as_deref()
                    .and_then(ratelimit_reset_value)
            };
            Some(match retry_after.or_else(reset) {
                Some(d) => resolve(d, now, portal_now),
                None => GateClose::Backoff,
            })
        }
        503 => {
            header("retry-after")?;
            Some(match retry_after {
                Some(d) => resolve(d, now, portal_now),
                None => GateClose::Backoff,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn hdrs(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        move |name: &str| {
            v.iter()
                .find(|(k, _)| k == &name.to_ascii_lowercase())
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            parse_retry_after("60", NOW),
            Some(NOW.add(Duration::from_secs(60)))
        );
        assert_eq!(
            parse_retry_after(" 2 ", NOW),
            Some(NOW.add(Duration::from_secs(2)))
        );
    }

    #[test]
    fn retry_after_zero_clamps_to_one_second() {
        assert_eq!(parse_retry_after("0", NOW), Some(NOW.add(MIN_WAIT)));
    }

    #[test]
    fn retry_after_enormous_clamps_to_a_day() {
        assert_eq!(
            parse_retry_after("1000000000000", NOW),
            Some(NOW.add(MAX_WAIT))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999999", NOW),
            Some(NOW.add(MAX_WAIT))
        );
    }

    #[test]
    fn retry_after_negative_and_garbage_are_ignored() {
        assert_eq!(parse_retry_after("-5", NOW), None);
        assert_eq!(parse_retry_after("soon", NOW), None);
        assert_eq!(parse_retry_after("", NOW), None);
        assert_eq!(parse_retry_after("1.5", NOW), None);
    }

    #[test]
    fn retry_after_http_date() {
        let at = NOW.add(Duration::from_secs(120));
        assert_eq!(parse_retry_after(&at.to_http_date(), NOW), Some(at));
        // A date in the past still waits the minimum.
        let past = NOW.sub(Duration::from_secs(3600)).to_http_date();
        assert_eq!(parse_retry_after(&past, NOW), Some(NOW.add(MIN_WAIT)));
    }

    #[test]
    fn ratelimit_reset_past_and_future() {
        let future = (NOW.unix_secs() + 90).to_string();
        assert_eq!(
            parse_ratelimit_reset(&future, NOW),
            Some(NOW.add(Duration::from_secs(90)))
        );
        let past = (NOW.unix_secs() - 90).to_string();
        assert_eq!(parse_ratelimit_reset(&past, NOW), Some(NOW.add(MIN_WAIT)));
        assert_eq!(parse_ratelimit_reset("x", NOW), None);
    }

    #[test]
    fn which_answers_close_the_gate() {
        let none = hdrs(&[]);
        assert_eq!(closing(429, &none, NOW), Some(GateClose::Backoff));
        assert_eq!(closing(503, &none, NOW), None);
        assert_eq!(closing(500, &hdrs(&[("Retry-After", "5")]), NOW), None);
        assert_eq!(closing(200, &hdrs(&[("Retry-After", "5")]), NOW), None);
        assert_eq!(
            closing(503, &hdrs(&[("Retry-After", "5")]), NOW),
            Some(GateClose::Until(NOW.add(Duration::from_secs(5))))
        );
        assert_eq!(
            closing(503, &hdrs(&[("Retry-After", "junk")]), NOW),
            Some(GateClose::Backoff)
        );
        // Retry-After wins over X-RateLimit-Reset; garbage Retry-After falls through.
        let reset = (NOW.unix_secs() + 30).to_string();
        assert_eq!(
            closing(
                429,
                &hdrs(&[("Retry-After", "10"), ("X-RateLimit-Reset", &reset)]),
                NOW
            ),
            Some(GateClose::Until(NOW.add(Duration::from_secs(10))))
        );
        let date = NOW.to_http_date();
        assert_eq!(
            closing(
                429,
                &hdrs(&[
                    ("Retry-After", "??"),
                    ("X-RateLimit-Reset", &reset),
                    ("Date", &date)
                ]),
                NOW
            ),
            Some(GateClose::Until(NOW.add(Duration::from_secs(30))))
        );
        // Without a Date to measure it against, a date is left to the core.
        assert_eq!(
            closing(429, &hdrs(&[("X-RateLimit-Reset", &reset)]), NOW),
            Some(GateClose::PortalDate(NOW.add(Duration::from_secs(30))))
        );
    }

    #[test]
    fn dates_are_read_against_the_answers_own_date() {
        // The portal's clock is an hour behind ours.
        let portal_now = NOW.sub(Duration::from_secs(3600));
        let date = portal_now.to_http_date();
        let in_2m = portal_now.add(Duration::from_secs(120)).to_http_date();
        let reset = (portal_now.unix_secs() + 90).to_string();
        let two_min = Some(GateClose::Until(NOW.add(Duration::from_secs(120))));
        for status in [429, 503] {
            let h = hdrs(&[("Date", &date), ("Retry-After", &in_2m)]);
            assert_eq!(closing(status, &h, NOW), two_min, "{status}");
        }
        let h = hdrs(&[("Date", &date), ("X-RateLimit-Reset", &reset)]);
        assert_eq!(
            closing(429, &h, NOW),
            Some(GateClose::Until(NOW.add(Duration::from_secs(90))))
        );
        // Seconds are a wait, whatever the Date.
        let h = hdrs(&[("Date", &date), ("Retry-After", "5")]);
        assert_eq!(
            closing(503, &h, NOW),
            Some(GateClose::Until(NOW.add(Duration::from_secs(5))))
        );
    }
}
