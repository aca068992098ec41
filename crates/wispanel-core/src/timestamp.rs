//! Wall-clock instants as plain numbers, so the no-I/O core can do arithmetic
//! on them and tests can pick any "now" they like.
//!
//! A [`Timestamp`] is milliseconds since the Unix epoch (UTC). It serialises as
//! an RFC 3339 string (`2026-11-26T10:00:00Z`), which is what the status
//! document and `state.json` carry.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    pub fn from_unix_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    pub fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Rounded down to the whole second (the status document's precision).
    pub fn whole_seconds(self) -> Timestamp {
        Timestamp(self.0 - self.0.rem_euclid(1000))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating instead of overflowing.
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// `self - d`, saturating instead of overflowing.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The time from `earlier` to `self`; zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// RFC 3339 in UTC with second precision, e.g. `2026-11-26T10:00:00Z`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.unix_secs();
        match OffsetDateTime::from_unix_timestamp(secs) {
            Ok(t) => t.format(&Rfc3339).unwrap_or_else(|_| secs.to_string()),
            Err(_) => secs.to_string(),
        }
    }

    /// Parses RFC 3339 with any offset (the portal may send `+02:00`).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms).ok().map(Timestamp)
    }

    /// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT` and the obsolete forms).
    pub fn parse_http_date(s: &str) -> Option<Timestamp> {
        httpdate::parse_http_date(s.trim())
            .ok()
            .map(Timestamp::from_system_time)
    }

    /// Formats as an HTTP date (`Retry-After`, `Date`).
    pub fn to_http_date(self) -> String {
        let t = if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        } else {
            UNIX_EPOCH
        };
        httpdate::fmt_http_date(t)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            s.serialize_str(&self.to_rfc3339())
        } else {
            // Keep sub-second precision in state.json so saved schedules survive exactly.
            let secs = self.unix_secs();
            let ms = self.0.rem_euclid(1000);
            let base = self.to_rfc3339();
            let trimmed = base.strip_suffix('Z').unwrap_or(&base);
            let _ = secs;
            s.serialize_str(&format!("{trimmed}.{ms:03}Z"))
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_and_offsets() {
        let t = Timestamp::parse_rfc3339("2026-11-26T10:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-26T10:00:00Z");
        let o = Timestamp::parse_rfc3339("2026-11-26T12:00:00+02:00").unwrap();
        assert_eq!(o, t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn serde_keeps_millis() {
        let t = Timestamp(1_800_000_000_123);
        let s = serde_json::to_string(&t).unwrap();
        assert!(s.ends_with(".123Z\""), "{s}");
        let back: Timestamp = serde_json::from_str(&s).unwrap();
        assert_eq!(back, t);
        let whole = Timestamp(1_800_000_000_000);
        assert_eq!(
            serde_json::to_string(&whole).unwrap(),
            "\"2027-01-15T08:00:00Z\""
        );
    }

    #[test]
    fn http_date() {
        let t = Timestamp::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.unix_secs(), 784111777);
        assert_eq!(t.to_http_date(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp(i64::MAX - 1);
        assert_eq!(t.add(Duration::from_secs(10)), Timestamp(i64::MAX));
        assert_eq!(Timestamp(5).since(Timestamp(10)), Duration::ZERO);
    }
}
