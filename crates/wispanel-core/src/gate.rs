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
    /// Until this instant (already clamped to 1 s .. 24 h from the answer).
    Until(Timestamp),
    /// The answer named no usable time: wait for the retry back-off.
    Backoff,
}

/// Clamps a wait to SPEC's bounds and turns it into an instant.
pub fn clamp_until(now: Timestamp, wait_ms: i128) -> Timestamp {
    let min = MIN_WAIT.as_millis() as i128;
    let max = MAX_WAIT.as_millis() as i128;
    let w = wait_ms.clamp(min, max);
    Timestamp(now.0.saturating_add(w as i64))
}

/// Parses `Retry-After`: delta-seconds or an HTTP date. `None` when the value is
/// garbage or negative (the caller then falls back).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Timestamp> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        // Enormous values saturate, then clamp to 24 h.
        let secs: i128 = v.parse::<u64>().map(i128::from).unwrap_or(i128::MAX / 2000);
        return Some(clamp_until(now, secs.saturating_mul(1000)));
    }
    let at = Timestamp::parse_http_date(v)?;
    Some(clamp_until(now, i128::from(at.0) - i128::from(now.0)))
}

/// Parses `X-RateLimit-Reset` as unix seconds.
pub fn parse_ratelimit_reset(value: &str, now: Timestamp) -> Option<Timestamp> {
    let secs: i64 = value.trim().parse().ok()?;
    let at = i128::from(secs) * 1000;
    Some(clamp_until(now, at - i128::from(now.0)))
}

/// Decides whether an HTTP answer closes the gate, and until when.
///
/// `header` looks a header up case-insensitively.
pub fn closing(
    status: u16,
    header: &dyn Fn(&str) -> Option<String>,
    now: Timestamp,
) -> Option<GateClose> {
    let retry_after = header("retry-after");
    match status {
        429 => {
            if let Some(t) = retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, now))
            {
                return Some(GateClose::Until(t));
            }
            if let Some(t) = header("x-ratelimit-reset")
                .as_deref()
                .and_then(|v| parse_ratelimit_reset(v, now))
            {
                return Some(GateClose::Until(t));
            }
            Some(GateClose::Backoff)
        }
        503 => {
            let v = retry_after?;
            Some(match parse_retry_after(&v, now) {
                Some(t) => GateClose::Until(t),
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

    fn hdrs(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
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
        assert_eq!(
            closing(
                429,
                &hdrs(&[("Retry-After", "??"), ("X-RateLimit-Reset", &reset)]),
                NOW
            ),
            Some(GateClose::Until(NOW.add(Duration::from_secs(30))))
        );
    }
}
