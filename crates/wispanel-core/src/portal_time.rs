//! Portal time (SPEC): deadlines the portal sends (`valid_until`, a
//! `Retry-After` date, `X-RateLimit-Reset`) are in the portal's clock. When
//! the last answer's `Date` differed from the local clock by more than 60 s,
//! they are compared with the local clock corrected by that skew, so a host
//! whose clock runs a day ahead neither lapses a day early nor, running
//! behind, trusts a verdict a day too long. `grace_until` is still shown as
//! the portal sent it; only the comparisons move.
//!
//! **Steps of the local clock while the daemon runs.** The skew on record is
//! the one of the last answer. If the wall clock is then stepped (an
//! administrator's `date -s`, NTP stepping a clock that was far off, a
//! resume that sets it from a wrong RTC) while the portal cannot be
//! reached, that skew is stale: a clock set a day forward would lapse the
//! licence a day early, one set back would trust it a day too long. So the
//! daemon hands the core a [`Reading`] of two clocks: the wall clock and one
//! that is never stepped and counts suspend (`CLOCK_BOOTTIME`: a host
//! suspended for a day has spent a day of its grace). A change of their
//! difference is a step ([`Core::observe_clock`], [`ClockSteps`]); the
//! portal's time is then estimated as the last answer's `Date` plus the
//! steady time elapsed since, i.e. the local clock corrected by the skew on
//! record *plus the steps since that answer*. The same steps move the
//! local deadlines: the end of an `offline_grace` counted from a verdict's
//! local time, and the plan (next validate, next update check, the gate),
//! which are lengths of time from when they were set, so pacing and the
//! gate follow elapsed time, which is the portal's. The steps are known only
//! while the process lives: after a restart the core knows none and falls
//! back to SPEC's rule (the local clock corrected by the skew on record).
//! `clock_skew_seconds` stays what SPEC says: the local clock minus the
//! portal's `Date` at the last answer.

use crate::machine::{Core, Verdict};
use crate::schedule::Schedule;
use crate::timestamp::Timestamp;

/// A skew up to this many seconds is clock noise: deadlines are read as sent.
pub const SKEW_TOLERANCE_SECS: i64 = 60;

/// A change of the wall clock against the steady clock smaller than this is
/// noise (the two are read one after the other, and slewing moves them
/// apart slowly), not a step.
pub const STEP_NOTICED_MS: i64 = 1000;

/// One reading of the daemon's two clocks, taken together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// The wall clock (`CLOCK_REALTIME`): what `now` is everywhere else.
    pub wall: Timestamp,
    /// A clock that is never stepped and counts suspend (`CLOCK_BOOTTIME`),
    /// in milliseconds from any fixed origin.
    pub steady_ms: i64,
}

/// The steps of the wall clock this process has seen, against the steady
/// clock. Never saved: after a restart there are none (SPEC's rule).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockSteps {
    /// Wall minus steady (ms) as of the last step noticed, or of the first
    /// reading. Readings that stay within [`STEP_NOTICED_MS`] of it change
    /// nothing, so a reading alone never changes the core.
    reference_ms: Option<i64>,
    /// The sum of the steps noticed (ms; positive: the clock was set
    /// forward).
    total_ms: i64,
    /// `total_ms` when the last answer that carried a `Date` came.
    at_answer: Option<i64>,
    /// `total_ms` when the last valid verdict came.
    at_verdict: Option<i64>,
}

impl ClockSteps {
    /// Notes `r`; returns the step since the reference (ms), 0 if none.
    fn observe(&mut self, r: Reading) -> i64 {
        let offset = r.wall.0.saturating_sub(r.steady_ms);
        let Some(reference) = self.reference_ms else {
            self.reference_ms = Some(offset);
            return 0;
        };
        let step = offset.saturating_sub(reference);
        if step.abs() < STEP_NOTICED_MS {
            return 0;
        }
        self.reference_ms = Some(offset);
        self.total_ms = self.total_ms.saturating_add(step);
        step
    }

    fn since(&self, mark: Option<i64>) -> i64 {
        mark.map_or(0, |m| self.total_ms.saturating_sub(m))
    }

    /// Marks an answer that carried a `Date` (once the clocks were read:
    /// a core that never had a reading stays as loaded).
    pub(crate) fn mark_answer(&mut self) {
        if self.reference_ms.is_some() {
            self.at_answer = Some(self.total_ms);
        }
    }

    /// Marks a valid verdict (once the clocks were read).
    pub(crate) fn mark_verdict(&mut self) {
        if self.reference_ms.is_some() {
            self.at_verdict = Some(self.total_ms);
        }
    }
}

fn shift(t: &mut Option<Timestamp>, ms: i64) {
    if let Some(t) = t {
        t.0 = t.0.saturating_add(ms);
    }
}

impl Core {
    /// Takes in a reading of the daemon's clocks. When the wall clock was
    /// stepped (by [`STEP_NOTICED_MS`] or more, either way) since the last
    /// step noticed, the plan moves with it: the next validate, the next
    /// update check and the gate stay as far away in elapsed time as they
    /// were. Returns the step in milliseconds (0: none; the core is then
    /// unchanged). The reading whose `wall` is passed as `now` to a
    /// `record_*` must be taken in first, so that a step is never counted
    /// after the answer it preceded.
    pub fn observe_clock(&mut self, r: Reading) -> i64 {
        let step = self.steps.observe(r);
        if step != 0 {
            shift(&mut self.plan.next_validate_at, step);
            shift(&mut self.plan.next_update_check_at, step);
            shift(&mut self.portal.rate_limited_until, step);
        }
        step
    }

    /// How far the local clock was stepped since the last answer that
    /// carried a `Date` (ms; 0 after a restart, or without such an answer).
    pub fn stepped_since_answer_ms(&self) -> i64 {
        self.steps.since(self.steps.at_answer)
    }

    /// Local clock minus the portal's now, estimated (ms): the last
    /// answer's `clock_skew_seconds` plus the steps of the local clock since
    /// that answer; `None` before any answer with a `Date`.
    pub fn clock_skew_estimate_ms(&self) -> Option<i64> {
        self.portal.clock_skew_seconds.map(|s| {
            s.saturating_mul(1000)
                .saturating_add(self.stepped_since_answer_ms())
        })
    }

    /// Local clock minus the portal's, as applied to the portal's deadlines
    /// (ms): [`Core::clock_skew_estimate_ms`] when it exceeds 60 s either
    /// way, else 0.
    pub fn deadline_skew_ms(&self) -> i64 {
        self.clock_skew_estimate_ms()
            .filter(|s| s.abs() > SKEW_TOLERANCE_SECS * 1000)
            .unwrap_or(0)
    }

    /// [`Core::deadline_skew_ms`] in whole seconds (rounded).
    pub fn deadline_skew_secs(&self) -> i64 {
        round_secs(self.deadline_skew_ms())
    }

    /// A deadline the portal sent (its clock), as an instant of the local clock.
    pub fn portal_to_local(&self, t: Timestamp) -> Timestamp {
        Timestamp(t.0.saturating_add(self.deadline_skew_ms()))
    }

    /// The instant of the local clock at which the licence lapses while the
    /// last verdict is valid: `grace_until` read in the portal's clock when
    /// the portal sent `valid_until`, else the verdict's (local) time plus
    /// `offline_grace`, moved by the steps of the local clock since the
    /// verdict. Every comparison with "now" uses this, never
    /// [`Core::grace_until`], which is the deadline as shown.
    pub fn lapse_at(&self, s: &Schedule) -> Option<Timestamp> {
        match &self.licence.verdict {
            Some(Verdict::Valid { at, details, .. }) => Some(match details.valid_until {
                Some(v) => self.portal_to_local(v),
                None => {
                    let stepped = self.steps.since(self.steps.at_verdict);
                    let end = at.add(s.offline_grace);
                    Timestamp(end.0.saturating_add(stepped))
                }
            }),
            _ => None,
        }
    }
}

/// Milliseconds to whole seconds, rounded half away from zero.
pub fn round_secs(ms: i64) -> i64 {
    let secs = ms / 1000;
    let rest = ms % 1000;
    if rest >= 500 {
        secs + 1
    } else if rest <= -500 {
        secs - 1
    } else {
        secs
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

    // ---- Steps of the local clock while the daemon runs ----

    const HOUR: i64 = 3600;
    const MIN: i64 = 60;

    /// A reading `elapsed` seconds of steady time after T0, with the wall
    /// clock stepped by `stepped` seconds in all (T0 reads steady 0).
    fn reading(elapsed: i64, stepped: i64) -> Reading {
        Reading {
            wall: Timestamp(T0.0 + (elapsed + stepped) * 1000),
            steady_ms: elapsed * 1000,
        }
    }

    /// How the portal's last valid answer gives the end of grace.
    #[derive(Clone, Copy, Debug)]
    enum Deadline {
        /// `valid_until` = the portal's now + this many seconds.
        ValidUntil(i64),
        /// No `valid_until`: the verdict's time plus `offline_grace` (7 days).
        OfflineGrace,
    }

    /// A daemon that read its clocks at T0 and had a valid answer then
    /// from a portal `skew` seconds behind it (its `Date` sent), then a
    /// failure without an answer (the portal down) 10 min later: in grace.
    fn in_grace(skew: i64, deadline: Deadline) -> Core {
        let mut c = Core::default();
        assert_eq!(c.observe_clock(reading(0, 0)), 0);
        let pn = portal_now(skew);
        let license = match deadline {
            Deadline::ValidUntil(secs) => {
                format!(r#"{{"valid_until": "{}"}}"#, pn.add(secs_(secs)))
            }
            Deadline::OfflineGrace => "{}".into(),
        };
        let body = format!(r#"{{"valid": true, "license": {license}}}"#);
        let a = ans(
            Endpoint::Validate,
            200,
            &body,
            &[("Date", pn.to_http_date())],
        );
        let (i, s) = (inputs(), sched());
        c.record_licence(Endpoint::Validate, &a, &i, &s, T0, &mut FixedJitter(0.0));
        let t = reading(10 * MIN, 0);
        c.observe_clock(t);
        let down = crate::machine::tests::unreachable(Endpoint::Validate, t.wall);
        c.record_licence(
            Endpoint::Validate,
            &down,
            &i,
            &s,
            t.wall,
            &mut FixedJitter(0.0),
        );
        assert_eq!(c.license_state(&i, &s, t.wall), LicenseState::Grace);
        c
    }

    fn secs_(n: i64) -> Duration {
        assert!(n >= 0);
        Duration::from_secs(n as u64)
    }

    fn at_ms(t: Timestamp, ms: i64) -> Timestamp {
        Timestamp(t.0 + ms)
    }

    #[test]
    fn a_stepped_clock_neither_lapses_early_nor_trusts_too_long() {
        let (i, s) = (inputs(), sched());
        let deadlines = [
            // "+2 h past a deadline": valid_until one hour away.
            Deadline::ValidUntil(HOUR),
            Deadline::ValidUntil(7 * DAY),
            Deadline::OfflineGrace,
        ];
        for skew in SKEWS {
            for deadline in deadlines {
                for step in [2 * HOUR, DAY, -DAY, 3 * DAY + 5] {
                    let mut c = in_grace(skew, deadline);
                    let lapse = c.lapse_at(&s).unwrap();
                    let shown = c.grace_until(&s);
                    let recorded = c.portal.clock_skew_seconds;
                    // 20 min after T0 in steady time, the clock is stepped.
                    let r = reading(20 * MIN, step);
                    assert_eq!(c.observe_clock(r), step * 1000);
                    let case = format!("skew {skew}, {deadline:?}, step {step}");
                    // The lapse is as far away in elapsed time as before
                    // (to the second: a skew of 30 s was noise before the
                    // step, and is counted once the estimate is over 60 s).
                    let moved = match deadline {
                        Deadline::ValidUntil(_) => {
                            let noise = if skew.abs() > 60 { 0 } else { skew };
                            at_ms(lapse, (step + noise) * 1000)
                        }
                        Deadline::OfflineGrace => at_ms(lapse, step * 1000),
                    };
                    assert_eq!(c.lapse_at(&s), Some(moved), "{case}");
                    assert_eq!(c.next_lapse(&i, &s, r.wall), Some(moved), "{case}");
                    assert_eq!(
                        c.license_state(&i, &s, r.wall),
                        LicenseState::Grace,
                        "{case}"
                    );
                    let before = at_ms(moved, -1);
                    assert_eq!(
                        c.license_state(&i, &s, before),
                        LicenseState::Grace,
                        "{case}"
                    );
                    // Not a moment longer either (a clock set back).
                    assert_eq!(
                        c.license_state(&i, &s, moved),
                        LicenseState::Lapsed,
                        "{case}"
                    );
                    // Shown as sent; the skew on record is the last answer's.
                    assert_eq!(c.grace_until(&s), shown, "{case}");
                    assert_eq!(c.portal.clock_skew_seconds, recorded, "{case}");
                    assert_eq!(
                        c.clock_skew_estimate_ms(),
                        Some((skew + step) * 1000),
                        "{case}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_old_rule_would_lapse_two_hours_early() {
        // What the steps prevent: valid_until one hour away, the clock set
        // forward by 2 h while the portal is down. Without the reading the
        // daemon compares with the stepped clock and the host lapses.
        let (i, s) = (inputs(), sched());
        let c = in_grace(0, Deadline::ValidUntil(HOUR));
        let stepped_now = reading(20 * MIN, 2 * HOUR).wall;
        assert_eq!(c.license_state(&i, &s, stepped_now), LicenseState::Lapsed);
        let mut seen = c.clone();
        seen.observe_clock(reading(20 * MIN, 2 * HOUR));
        assert_eq!(seen.license_state(&i, &s, stepped_now), LicenseState::Grace);
    }

    #[test]
    fn the_plan_and_the_gate_follow_elapsed_time() {
        let (i, s) = (inputs(), sched());
        for step in [2 * HOUR, DAY, -DAY] {
            let (mut c, _) = verdict(0);
            c.observe_clock(reading(0, 0));
            // Due 6 h after the verdict; the update check at once.
            assert_eq!(c.due(&i, T0).unwrap().at, T0.add(secs(6 * HOUR)));
            // A 429 with a Retry-After of 30 min closes the gate.
            let a = ans(
                Endpoint::CheckUpdate,
                429,
                "",
                &[("Date", T0.to_http_date()), ("Retry-After", "1800".into())],
            );
            c.record_update(&a, "1.4.2", &s, T0, &mut FixedJitter(0.0));
            let update_at = c.plan.next_update_check_at.unwrap();
            let r = reading(HOUR / 2 - 5 * MIN, step); // 25 min later
            c.observe_clock(r);
            let now = r.wall;
            // Still 5 min of gate, 5 h 35 min to the next validate.
            assert_eq!(
                c.gate_closed_until(now).map(|g| g.since(now)),
                Some(secs(5 * MIN)),
                "{step}"
            );
            let due = c.due(&i, now).unwrap();
            assert_eq!(due.at.since(now), secs(6 * HOUR - 25 * MIN), "{step}");
            assert_eq!(
                c.update_due(now).map(|u| u.0 - now.0),
                Some(update_at.0 - T0.0 - 25 * MIN * 1000),
                "{step}"
            );
        }
    }

    #[test]
    fn grace_pacing_follows_the_portals_time() {
        // Six days into a seven-day grace by the stepped clock, only 20 min
        // by the portal's: the host keeps the normal interval (no back-off,
        // no grace_ending) after its two quick retries.
        let (i, s) = (inputs(), sched());
        let mut c = in_grace(0, Deadline::ValidUntil(7 * DAY));
        let mut r = reading(20 * MIN, 6 * DAY);
        c.observe_clock(r);
        for n in 0..4 {
            let down = crate::machine::tests::unreachable(Endpoint::Validate, r.wall);
            c.record_licence(
                Endpoint::Validate,
                &down,
                &i,
                &s,
                r.wall,
                &mut FixedJitter(0.0),
            );
            let wait = c.due(&i, r.wall).unwrap().at.since(r.wall);
            if n >= 1 {
                // n = consecutive failures - 1 >= 2 from the third failure on.
                assert_eq!(wait, secs(6 * HOUR), "failure {n}");
            }
            let elapsed = (r.steady_ms / 1000) + wait.as_secs() as i64;
            r = reading(elapsed, 6 * DAY);
            c.observe_clock(r);
        }
        let f = crate::warnings::Facts::from_core(&c, &i, &s, r.wall, &context());
        let codes: Vec<_> = crate::warnings::warnings(&f, r.wall)
            .into_iter()
            .map(|w| w.code)
            .collect();
        assert_eq!(codes, vec![crate::warnings::WarningCode::ClockSkew]);
    }

    fn context() -> crate::warnings::Context {
        crate::warnings::Context {
            warn_before_expiry: Duration::ZERO,
            hardware_known: true,
            state_not_saved_since: None,
        }
    }

    fn skew_warning(c: &Core, now: Timestamp) -> Option<String> {
        let f = crate::warnings::Facts::from_core(c, &inputs(), &sched(), now, &context());
        crate::warnings::warnings(&f, now)
            .into_iter()
            .find(|w| w.code == crate::warnings::WarningCode::ClockSkew)
            .map(|w| w.message)
    }

    #[test]
    fn clock_skew_warns_on_the_estimate_and_says_so() {
        let mut c = in_grace(0, Deadline::ValidUntil(7 * DAY));
        assert_eq!(skew_warning(&c, T0), None);
        let r = reading(20 * MIN, DAY);
        c.observe_clock(r);
        assert_eq!(
            skew_warning(&c, r.wall).as_deref(),
            Some(
                "this host's clock is 1 day ahead of the portal's (estimated: it was set forward by 1 day since the portal's last answer)"
            )
        );
        // `clock_skew_seconds` (the status's) stays the last answer's.
        assert_eq!(c.portal.clock_skew_seconds, Some(0));
        // Set back again: no skew, no warning.
        let r = reading(30 * MIN, 0);
        assert_eq!(c.observe_clock(r), -DAY * 1000);
        assert_eq!(skew_warning(&c, r.wall), None);
        // A host a day behind the portal whose clock is set right: no
        // warning, deadlines read as sent.
        let mut behind = in_grace(-DAY, Deadline::ValidUntil(7 * DAY));
        assert!(skew_warning(&behind, T0).unwrap().contains("1 day behind"));
        behind.observe_clock(reading(20 * MIN, DAY));
        assert_eq!(skew_warning(&behind, reading(20 * MIN, DAY).wall), None);
        assert_eq!(behind.deadline_skew_ms(), 0);
        // Less than 60 s: noise, as SPEC says.
        let mut small = in_grace(0, Deadline::ValidUntil(7 * DAY));
        small.observe_clock(reading(20 * MIN, 45));
        assert_eq!(small.deadline_skew_ms(), 0);
        assert_eq!(skew_warning(&small, reading(20 * MIN, 45).wall), None);
    }

    #[test]
    fn the_next_answer_measures_the_skew_again() {
        let (i, s) = (inputs(), sched());
        let mut c = in_grace(0, Deadline::ValidUntil(7 * DAY));
        let lapse = c.lapse_at(&s).unwrap();
        let r = reading(20 * MIN, DAY);
        c.observe_clock(r);
        // A 503 with the portal's Date (its clock: T0 + 20 min).
        let pn = T0.add(secs(20 * MIN));
        let a = ans(Endpoint::Validate, 503, "", &[("Date", pn.to_http_date())]);
        c.record_licence(
            Endpoint::Validate,
            &a,
            &i,
            &s,
            r.wall,
            &mut FixedJitter(0.0),
        );
        assert_eq!(c.portal.clock_skew_seconds, Some(DAY));
        assert_eq!(c.stepped_since_answer_ms(), 0);
        assert_eq!(c.clock_skew_estimate_ms(), Some(DAY * 1000));
        // The same instant as before, now from the skew on record.
        assert_eq!(c.lapse_at(&s), Some(at_ms(lapse, DAY * 1000)));
        assert_eq!(
            skew_warning(&c, r.wall).as_deref(),
            Some("this host's clock is 1 day ahead of the portal's")
        );
    }

    #[test]
    fn suspend_and_noise_are_not_steps() {
        let s = sched();
        let c = in_grace(0, Deadline::OfflineGrace);
        let lapse = c.lapse_at(&s).unwrap();
        // Suspended for a day: both clocks moved a day; the day of grace is spent.
        let mut suspended = c.clone();
        assert_eq!(suspended.observe_clock(reading(DAY, 0)), 0);
        assert_eq!(suspended, c, "a reading alone changes nothing");
        assert_eq!(suspended.lapse_at(&s), Some(lapse));
        // Readings a few hundred ms apart (read one after the other).
        let mut noisy = c.clone();
        for (elapsed_ms, wall_extra_ms) in [(1000, 400), (2000, -900), (3000, 999), (4000, -999)] {
            let r = Reading {
                wall: Timestamp(T0.0 + elapsed_ms + wall_extra_ms),
                steady_ms: elapsed_ms,
            };
            assert_eq!(noisy.observe_clock(r), 0);
        }
        assert_eq!(noisy, c);
    }

    #[test]
    fn after_a_restart_spec_rule_applies_and_the_plan_stays_moved() {
        let (i, s) = (inputs(), sched());
        let mut c = in_grace(0, Deadline::ValidUntil(7 * DAY));
        let lapse = c.lapse_at(&s).unwrap();
        let plan = c.plan.next_validate_at.unwrap();
        let r = reading(20 * MIN, DAY);
        c.observe_clock(r);
        assert_eq!(c.plan.next_validate_at, Some(at_ms(plan, DAY * 1000)));
        // Saved and loaded (a restart): the steps are not in state.json.
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("steps"), "{json}");
        let mut loaded: Core = serde_json::from_str(&json).unwrap();
        assert_eq!(loaded.plan.next_validate_at, Some(at_ms(plan, DAY * 1000)));
        assert_eq!(loaded.stepped_since_answer_ms(), 0);
        // SPEC's rule: the local clock corrected by the skew on record (0).
        assert_eq!(loaded.lapse_at(&s), Some(lapse));
        assert_eq!(loaded.license_state(&i, &s, r.wall), LicenseState::Grace);
        // A step in the new process counts from its first reading.
        assert_eq!(loaded.observe_clock(reading(HOUR, DAY)), 0);
        assert_eq!(loaded.observe_clock(reading(HOUR, 0)), -DAY * 1000);
        assert_eq!(loaded.clock_skew_estimate_ms(), Some(0));
    }

    #[test]
    fn seconds_round_half_away_from_zero() {
        for (ms, want) in [
            (0, 0),
            (499, 0),
            (500, 1),
            (-499, 0),
            (-500, -1),
            (86_400_003, 86_400),
        ] {
            assert_eq!(round_secs(ms), want, "{ms}");
        }
    }
}
