//! Durations as the configuration writes them: `"30s"`, `"15m"`, `"1h30m"`.

use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("it is empty")]
    Empty,
    #[error("a number must come before {0:?}")]
    MissingNumber(char),
    #[error("the number {0:?} has no unit")]
    MissingUnit(String),
    #[error("{0:?} is not a unit")]
    BadUnit(char),
    #[error("the unit {0:?} comes twice or out of order")]
    Order(char),
    #[error("it is too large")]
    Overflow,
}

/// Parses `"30s"`, `"15m"`, `"6h"`, `"7d"` or several such parts from the
/// largest unit to the smallest (`"1d12h"`, `"1h30m"`). No spaces, no
/// fractions, no sign.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    // Index in "dhms" of the last unit seen; units must strictly decrease.
    let mut last_unit: Option<usize> = None;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (rank, secs) = match c {
            'd' => (0, 86_400u64),
            'h' => (1, 3_600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(DurationError::BadUnit(c)),
        };
        if number.is_empty() {
            return Err(DurationError::MissingNumber(c));
        }
        if last_unit.is_some_and(|last| rank <= last) {
            return Err(DurationError::Order(c));
        }
        last_unit = Some(rank);
        let n: u64 = number.parse().map_err(|_| DurationError::Overflow)?;
        total = n
            .checked_mul(secs)
            .and_then(|part| total.checked_add(part))
            .ok_or(DurationError::Overflow)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(DurationError::MissingUnit(number));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way [`parse_duration`] reads it: `"1d12h"`,
/// `"1h30m"`, `"0s"`. Fractions of a second are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 86_400u64), ('h', 3_600), ('m', 60), ('s', 1)] {
        let n = secs / size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push(unit);
        }
        secs %= size;
    }
    out
}
