//! Portal time (SPEC): deadlines the portal sends (`valid_until`, a
//! `Retry-After` date, `X-RateLimit-Reset`) are in the portal's clock. When
//! the last answer's `Date` differed from the local clock by more than 60 s,
//! they are compared with the local clock corrected by that skew, so a host
//! whose clock runs a day ahead neither lapses a day early nor, running
//! behind, trusts a verdict a day too long. `grace_until` is still shown as
//! the portal sent it; only the comparisons move.

use crate::machine::{Core, Verdict};
use crate::schedule::Schedule;
use crate::timestamp::Timestamp;

/// A skew up to this many seconds is clock noise: deadlines are read as sent.
pub const SKEW_TOLERANCE_SECS: i64 = 60;

impl Core {
    /// Local clock minus the portal's, as applied to the portal's deadlines:
    /// the last answer's `clock_skew_seconds` when it exceeds 60 s either
    /// way, else 0.
    pub fn deadline_skew_secs(&self) -> i64 {
        self.portal
            .clock_skew_seconds
            .filter(|s| s.abs() > SKEW_TOLERANCE_SECS)
            .unwrap_or(0)
    }

    /// A deadline the portal sent (its clock), as an instant of the local clock.
    pub fn portal_to_local(&self, t: Timestamp) -> Timestamp {
        Timestamp(t.0.saturating_add(self.deadline_skew_secs().saturating_mul(1000)))
    }

    /// The instant of the local clock at which the licence lapses while the
    /// last verdict is valid: `grace_until` read in the portal's clock when
    /// the portal sent `valid_until`, else the verdict's (local) time plus
    /// `offline_grace`. Every comparison with "now" uses this, never
    /// [`Core::grace_until`], which is the deadline as shown.
    pub fn lapse_at(&self, s: &Schedule) -> Option<Timestamp> {
        match &self.licence.verdict {
            Some(Verdict::Valid { at, details, .. }) => Some(match details.valid_until {
                Some(v) => self.portal_to_local(v),
                None => at.add(s.offline_grace),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classified;
    use crate::machine::Inputs;
    use crate::schedule::FixedJitter;
    use crate::{Endpoint, LicenseState};
    use std::time::Duration;

    /// The local clock at the answer.
    const T0: Timestamp = Timestamp(1_800_000_000_000);
    const DAY: i64 = 86_400;
    /// Local minus portal: the portal's clock reads T0 - skew.
    const SKEWS: [i64; 4] = [-DAY, 0, 30, DAY];

    fn secs(n: i64) -> Duration {
        Duration::from_secs(n.unsigned_abs())
    }

    fn inputs() -> Inputs {
        Inputs {
            key_fingerprint: Some("k1".into()),
            hardware_id: "a".repeat(64),
        }
    }

    fn sched() -> Schedule {
        Schedule {
            splay: Duration::ZERO,
            ..Schedule::default()
        }
    }

    fn portal_now(skew: i64) -> Timestamp {
        Timestamp(T0.0 - skew * 1000)
    }

    fn ans(endpoint: Endpoint, status: u16, body: &str, headers: &[(&str, String)]) -> Classified {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::machine::tests::answer(endpoint, status, body, &hs, T0)
    }

    /// A valid verdict at T0 from a portal whose clock is `skew` behind ours,
    /// with `valid_until` = its now + 7 days.
    fn verdict(skew: i64) -> (Core, Timestamp) {
        let pn = portal_now(skew);
        let vu = pn.add(secs(7 * DAY));
        let body = format!(r#"{{"valid": true, "license": {{"valid_until": "{vu}"}}}}"#);
        let a = ans(
            Endpoint::Validate,
            200,
            &body,
            &[("Date", pn.to_http_date())],
        );
        let mut c = Core::default();
        c.record_licence(
            Endpoint::Validate,
            &a,
            &inputs(),
            &sched(),
            T0,
            &mut FixedJitter(0.0),
        );
        assert_eq!(c.portal.clock_skew_seconds, Some(skew));
        (c, vu)
    }

    #[test]
    fn valid_until_lapses_at_the_portals_instant_whatever_the_skew() {
        for skew in SKEWS {
            let (mut c, vu) = verdict(skew);
            let s = sched();
            // Shown as sent.
            assert_eq!(c.grace_until(&s), Some(vu), "skew {skew}");
            // Compared in the portal's clock when the skew is over 60 s; a
            // skew of 30 s is noise and the deadline is read as sent.
            let lapse = if skew.abs() > 60 {
                T0.add(secs(7 * DAY))
            } else {
                vu
            };
            assert_eq!(c.lapse_at(&s), Some(lapse), "skew {skew}");
            let i = inputs();
            let before = lapse.sub(Duration::from_millis(1));
            assert_eq!(
                c.license_state(&i, &s, before),
                LicenseState::Active,
                "skew {skew}"
            );
            assert_eq!(
                c.license_state(&i, &s, lapse),
                LicenseState::Lapsed,
                "skew {skew}"
            );
            assert_eq!(c.next_lapse(&i, &s, T0), Some(lapse), "skew {skew}");
            // In grace the same instant holds.
            let t = T0.add(secs(3600));
            let fail = ans(Endpoint::Validate, 500, "", &[]);
            c.record_licence(Endpoint::Validate, &fail, &i, &s, t, &mut FixedJitter(0.0));
            assert_eq!(
                c.license_state(&i, &s, before),
                LicenseState::Grace,
                "skew {skew}"
            );
            assert_eq!(
                c.license_state(&i, &s, lapse),
                LicenseState::Lapsed,
                "skew {skew}"
            );
        }
    }

    #[test]
    fn a_host_a_day_ahead_neither_lapses_early_nor_one_behind_trusts_too_long() {
        let s = sched();
        let i = inputs();
        // Ahead: without the correction it would lapse at T0 + 6 days.
        let (ahead, _) = verdict(DAY);
        assert!(
            ahead
                .license_state(&i, &s, T0.add(secs(6 * DAY + 3600)))
                .licensed()
        );
        // Behind: without the correction it would stay licensed until T0 + 8 days.
        let (behind, _) = verdict(-DAY);
        let after = T0.add(secs(7 * DAY + 1));
        assert_eq!(behind.license_state(&i, &s, after), LicenseState::Lapsed);
    }

    /// The gate a 429 closes at T0 in a core that knows `skew`, with `headers`.
    fn gate_after(skew: i64, headers: &[(&str, String)]) -> Duration {
        let (mut c, _) = verdict(skew);
        let a = ans(
            Endpoint::Validate,
            429,
            r#"{"code": "RATE_LIMITED"}"#,
            headers,
        );
        c.record_licence(
            Endpoint::Validate,
            &a,
            &inputs(),
            &sched(),
            T0,
            &mut FixedJitter(0.0),
        );
        let until = c.gate_closed_until(T0).expect("the gate is closed");
        // A retry never comes before it.
        assert!(c.due(&inputs(), T0).unwrap().at >= until);
        until.since(T0)
    }

    #[test]
    fn rate_limit_dates_wait_as_long_as_the_portal_asked_whatever_the_skew() {
        for skew in SKEWS {
            let pn = portal_now(skew);
            let date = pn.to_http_date();
            let in_120 = pn.add(secs(120)).to_http_date();
            let reset_90 = (pn.unix_secs() + 90).to_string();
            // Measured against the Date of the same answer: exact, any skew.
            let with_date: [(&[(&str, String)], i64); 3] = [
                (
                    &[("Date", date.clone()), ("Retry-After", in_120.clone())],
                    120,
                ),
                (
                    &[
                        ("Date", date.clone()),
                        ("X-RateLimit-Reset", reset_90.clone()),
                    ],
                    90,
                ),
                (&[("Date", date.clone()), ("Retry-After", "45".into())], 45),
            ];
            for (hs, want) in with_date {
                assert_eq!(gate_after(skew, hs), secs(want), "skew {skew} {hs:?}");
            }
            // No Date in the answer: the local clock corrected by the skew
            // known from the last answer (over 60 s), else read as sent.
            let noise = if skew.abs() > 60 { 0 } else { skew };
            let without: [(&[(&str, String)], i64); 3] = [
                (&[("Retry-After", in_120.clone())], 120 - noise),
                (&[("X-RateLimit-Reset", reset_90.clone())], 90 - noise),
                (&[("Retry-After", "45".into())], 45),
            ];
            for (hs, want) in without {
                assert_eq!(gate_after(skew, hs), secs(want), "skew {skew} {hs:?}");
            }
        }
    }

    #[test]
    fn rate_limit_dates_are_clamped_after_the_correction() {
        // A day ahead, a Retry-After date 2 days away in the portal's clock:
        // 24 h at most; one in the past: 1 s at least.
        let (mut c, _) = verdict(DAY);
        let pn = portal_now(DAY);
        for (at, want) in [
            (pn.add(secs(2 * DAY)), secs(DAY)),
            (pn.sub(secs(60)), secs(1)),
        ] {
            let a = ans(
                Endpoint::Validate,
                429,
                "",
                &[("Retry-After", at.to_http_date())],
            );
            c.portal.rate_limited_until = None;
            c.record_licence(
                Endpoint::Validate,
                &a,
                &inputs(),
                &sched(),
                T0,
                &mut FixedJitter(0.0),
            );
            assert_eq!(c.gate_closed_until(T0).map(|g| g.since(T0)), Some(want));
        }
    }

    #[test]
    fn without_any_date_nothing_moves() {
        let mut c = Core::default();
        assert_eq!(c.deadline_skew_secs(), 0);
        let t = T0.add(secs(100));
        assert_eq!(c.portal_to_local(t), t);
        c.portal.clock_skew_seconds = Some(-61);
        assert_eq!(c.portal_to_local(t), t.sub(secs(61)));
        c.portal.clock_skew_seconds = Some(60);
        assert_eq!(c.portal_to_local(t), t);
    }
}
