//! The local clock against the portal's `Date` (pure).

use super::*;

/// Local clock minus the portal's `Date`, in whole seconds.
/// Local clock minus the portal's `Date`, in whole seconds, as the daemon
/// counts `clock_skew_seconds`: `Date` is the portal's second, floored, so
/// the difference is floored too (truncating would make a clock exactly a
/// day behind "86399 s behind").
pub fn skew_secs(now: Timestamp, portal_date: Timestamp) -> i64 {
    (now.millis() - portal_date.millis()).div_euclid(1000)
}

pub fn skew_check(skew: Option<i64>) -> Check {
    let name = "clock vs portal";
    let Some(s) = skew else {
        return Check::warn(
            name,
            "the portal's answer has no usable Date header",
            "the clock could not be compared; make sure time synchronisation runs (`timedatectl`)",
        );
    };
    let dir = if s > 0 { "ahead of" } else { "behind" };
    let found = format!("the local clock is {} s {dir} the portal's Date", s.abs());
    let hint = "enable time synchronisation: `timedatectl set-ntp true` (or chrony/ntpd), then check `timedatectl status`";
    if s.abs() > SKEW_FAIL_SECS {
        Check::fail(name, found, hint)
    } else if s.abs() > SKEW_WARN_SECS {
        Check::warn(name, found, hint)
    } else {
        Check::ok(name, format!("within {} s of the portal's Date", s.abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn skew_thresholds() {
        let now = Timestamp::from_unix_secs(1_800_000_000);
        let at = |s: i64| Timestamp::from_unix_secs(1_800_000_000 - s);
        assert_eq!(skew_secs(now, at(120)), 120);
        // A clock a day behind, read 300 ms into the portal's second.
        let date = Timestamp::from_unix_secs(1_800_000_000 + 86_400);
        let behind = Timestamp(now.millis() + 300);
        assert_eq!(skew_secs(behind, date), -86_400);
        assert_eq!(skew_secs(Timestamp(now.millis() + 999), now), 0);
        assert_eq!(skew_check(Some(0)).status, Status::Ok);
        assert_eq!(skew_check(Some(60)).status, Status::Ok);
        assert_eq!(skew_check(Some(61)).status, Status::Warn);
        assert_eq!(skew_check(Some(-120)).status, Status::Warn);
        assert!(skew_check(Some(-120)).found.contains("120 s behind"));
        assert_eq!(skew_check(Some(300)).status, Status::Warn);
        assert_eq!(skew_check(Some(301)).status, Status::Fail);
        assert_eq!(skew_check(None).status, Status::Warn);
    }
}
