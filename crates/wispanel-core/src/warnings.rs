//! The status document's `warnings`: what needs an administrator's attention
//! while the host may still be licensed (SPEC, "Status socket").
//!
//! The list is a pure function of [`Facts`] and `now`. [`next_change`] gives
//! the next instant at which the list changes by itself (the last day of a
//! grace begins, an expiry comes within `warn_before_expiry`, the day count in
//! a message turns over), so the daemon sets one timer instead of polling.

use crate::machine::{Core, Inputs, Verdict};
use crate::portal_time::SKEW_TOLERANCE_SECS;
use crate::schedule::Schedule;
use crate::timestamp::Timestamp;
use crate::{LicenseState, UpdateState};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `grace_ending` appears when the grace ends in less than this.
pub const GRACE_ENDING_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// SPEC's default for `warn_before_expiry`.
pub const DEFAULT_WARN_BEFORE_EXPIRY: Duration = Duration::from_secs(30 * 86_400);

const DAY_MS: i64 = 86_400_000;

/// A warning's stable `code`.
///
/// The order of declaration is the order of urgency, most urgent first, and
/// the list is sorted by it:
/// - `grace_ending`: the host stops being licensed within a day; nothing else
///   is that close or that certain.
/// - `state_not_saved`: a restart now forgets the last verdict and the
///   schedule, and a disk that refuses this file usually troubles the panel too.
/// - `expiring_soon`: a certain end at a known date, whose cure (a renewal)
///   takes a person days, not minutes.
/// - `hardware_changed`: the next answer may be `HARDWARE_MISMATCH`, but the
///   portal may as well accept the new id.
/// - `activation_in_doubt`: settles itself with the next answer; only one that
///   lasts needs a person.
/// - `clock_skew`: the daemon reads the portal's deadlines in the portal's
///   clock, so the licence is safe; the rest of the host (TLS, logs) is not.
/// - `updates_expired`: the licence is fine; only downloads are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    GraceEnding,
    StateNotSaved,
    ExpiringSoon,
    HardwareChanged,
    ActivationInDoubt,
    ClockSkew,
    UpdatesExpired,
    /// A code this release does not know, read from a newer daemon's status;
    /// never produced here.
    #[serde(other)]
    Other,
}

impl WarningCode {
    /// Every code the daemon produces, most urgent first.
    pub const ALL: [WarningCode; 7] = [
        WarningCode::GraceEnding,
        WarningCode::StateNotSaved,
        WarningCode::ExpiringSoon,
        WarningCode::HardwareChanged,
        WarningCode::ActivationInDoubt,
        WarningCode::ClockSkew,
        WarningCode::UpdatesExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WarningCode::GraceEnding => "grace_ending",
            WarningCode::StateNotSaved => "state_not_saved",
            WarningCode::ExpiringSoon => "expiring_soon",
            WarningCode::HardwareChanged => "hardware_changed",
            WarningCode::ActivationInDoubt => "activation_in_doubt",
            WarningCode::ClockSkew => "clock_skew",
            WarningCode::UpdatesExpired => "updates_expired",
            WarningCode::Other => "other",
        }
    }
}

impl std::fmt::Display for WarningCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `warnings`: `{"code", "message", "at"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: WarningCode,
    /// One sentence, lower case, no final stop.
    pub message: String,
    /// The time the warning is about (whole seconds), or null.
    pub at: Option<Timestamp>,
}

/// What the daemon around the core knows and the core does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The configuration's `warn_before_expiry`; zero turns `expiring_soon` off.
    pub warn_before_expiry: Duration,
    /// Whether the hardware_id could be computed now (without it, as in the
    /// status document, `hardware_changed` is false).
    pub hardware_known: bool,
    /// When the current run of failed saves of `state.json` began; `None`
    /// when the last save worked.
    pub state_not_saved_since: Option<Timestamp>,
}

/// Everything the list depends on, taken at one moment. Only the passing of
/// time changes the list of the same facts: at `lapses_at` an `active` or
/// `grace` licence becomes `lapsed`, as [`Core::license_state`] derives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The licence state when the facts were taken.
    pub state: LicenseState,
    /// `license.grace_until` as the status shows it (the portal's clock).
    pub grace_until: Option<Timestamp>,
    /// The local instant at which an `active` or `grace` licence lapses
    /// ([`Core::next_lapse`]).
    pub lapses_at: Option<Timestamp>,
    /// `license.expires_at` as the portal sent it.
    pub expires_at: Option<Timestamp>,
    /// Local clock minus the portal's now, in seconds: the last answer's
    /// `clock_skew_seconds` plus the steps of the local clock since
    /// ([`Core::clock_skew_estimate_ms`]); `None` before any answer with a
    /// `Date`.
    pub clock_skew_seconds: Option<i64>,
    /// The part of `clock_skew_seconds` that the local clock was stepped by
    /// since the portal's last answer (an estimate until the next answer).
    pub clock_stepped_secs: i64,
    /// The skew applied to the dates the portal sends
    /// ([`Core::deadline_skew_secs`]: 0 within the tolerance).
    pub deadline_skew_secs: i64,
    pub hardware_changed: bool,
    pub activation_in_doubt: bool,
    pub update_state: UpdateState,
    pub state_not_saved_since: Option<Timestamp>,
    pub warn_before_expiry: Duration,
}

impl Facts {
    /// The facts of `core` for a daemon with `inputs`, at `now`.
    pub fn from_core(
        core: &Core,
        inputs: &Inputs,
        s: &Schedule,
        now: Timestamp,
        ctx: &Context,
    ) -> Facts {
        let state = core.license_state(inputs, s, now);
        let grace_until = match state {
            LicenseState::Active | LicenseState::Grace | LicenseState::Lapsed => {
                core.grace_until(s)
            }
            _ => None,
        };
        let expires_at = match &core.licence.verdict {
            Some(Verdict::Valid { details, .. }) if state != LicenseState::Unconfigured => {
                details.expires_at
            }
            _ => None,
        };
        Facts {
            state,
            grace_until,
            lapses_at: core.next_lapse(inputs, s, now),
            expires_at,
            clock_skew_seconds: core
                .clock_skew_estimate_ms()
                .map(crate::portal_time::round_secs),
            clock_stepped_secs: crate::portal_time::round_secs(core.stepped_since_answer_ms()),
            deadline_skew_secs: core.deadline_skew_secs(),
            hardware_changed: ctx.hardware_known && core.hardware_changed(inputs),
            activation_in_doubt: core.activation_in_doubt(),
            update_state: core.update.state,
            state_not_saved_since: ctx.state_not_saved_since,
            warn_before_expiry: ctx.warn_before_expiry,
        }
    }

    /// The licence state at `now` (a later `now` than the facts' own may
    /// have lapsed).
    pub fn state_at(&self, now: Timestamp) -> LicenseState {
        match (self.state, self.lapses_at) {
            (LicenseState::Active | LicenseState::Grace, Some(l)) if now >= l => {
                LicenseState::Lapsed
            }
            (s, _) => s,
        }
    }

    fn skew_ms(&self) -> i64 {
        self.deadline_skew_secs.saturating_mul(1000)
    }

    /// `now` read in the portal's clock (SPEC, "Portal time").
    fn portal_now(&self, now: Timestamp) -> Timestamp {
        Timestamp(now.0.saturating_sub(self.skew_ms()))
    }

    /// The local instant of an instant of the portal's clock.
    fn local(&self, portal: Timestamp) -> Timestamp {
        Timestamp(portal.0.saturating_add(self.skew_ms()))
    }
}

/// The warnings at `now`, most urgent first.
pub fn warnings(f: &Facts, now: Timestamp) -> Vec<Warning> {
    let mut out = Vec::new();
    let state = f.state_at(now);
    let mut push = |code, message: String, at: Option<Timestamp>| {
        out.push(Warning {
            code,
            message,
            at: at.map(Timestamp::whole_seconds),
        });
    };
    if state == LicenseState::Grace
        && let Some(lapse) = f.lapses_at
        && lapse.since(now) < GRACE_ENDING_WINDOW
    {
        let until = f.grace_until.unwrap_or(lapse);
        push(
            WarningCode::GraceEnding,
            format!(
                "the portal has not been reached and the grace period ends at {} (in less than 24 hours); the host stops being licensed then",
                until.whole_seconds()
            ),
            Some(until),
        );
    }
    if let Some(since) = f.state_not_saved_since {
        push(
            WarningCode::StateNotSaved,
            format!(
                "the state cannot be saved to state.json (failing since {}); a restart now would forget the last verdict",
                since.whole_seconds()
            ),
            Some(since),
        );
    }
    if let Some((message, at)) = expiry(f, state, now) {
        push(WarningCode::ExpiringSoon, message, Some(at));
    }
    if f.hardware_changed {
        push(
            WarningCode::HardwareChanged,
            "this host's hardware_id differs from the one the last verdict was given for; the portal may refuse it".into(),
            None,
        );
    }
    if f.activation_in_doubt {
        push(
            WarningCode::ActivationInDoubt,
            "an activation was sent and its answer was lost; it is retried with the same idempotency key, so it cannot take a second seat".into(),
            None,
        );
    }
    if let Some(k) = f.clock_skew_seconds
        && k.abs() > SKEW_TOLERANCE_SECS
    {
        let side = if k > 0 { "ahead of" } else { "behind" };
        let mut message = format!(
            "this host's clock is {} {side} the portal's",
            span(k.unsigned_abs())
        );
        // Stepped since the last answer: an estimate until the next one.
        if f.clock_stepped_secs != 0 {
            let way = if f.clock_stepped_secs > 0 {
                "forward"
            } else {
                "back"
            };
            message.push_str(&format!(
                " (estimated: it was set {way} by {} since the portal's last answer)",
                span(f.clock_stepped_secs.unsigned_abs())
            ));
        }
        push(WarningCode::ClockSkew, message, None);
    }
    if f.update_state == UpdateState::UpdatesExpired {
        push(
            WarningCode::UpdatesExpired,
            "the update entitlement has expired; new releases cannot be downloaded".into(),
            None,
        );
    }
    out.sort_by_key(|w| w.code);
    out
}

/// `expiring_soon`'s message and time, when it applies: only while the host
/// is licensed (after that the state itself says more), `expires_at` less than
/// `warn_before_expiry` away in the portal's clock, and never with a zero
/// `warn_before_expiry`.
fn expiry(f: &Facts, state: LicenseState, now: Timestamp) -> Option<(String, Timestamp)> {
    let e = f.expires_at?;
    if !state.licensed() || f.warn_before_expiry.is_zero() {
        return None;
    }
    let pnow = f.portal_now(now);
    let warn = i64::try_from(f.warn_before_expiry.as_millis()).unwrap_or(i64::MAX);
    if e.0.saturating_sub(pnow.0) >= warn {
        return None;
    }
    // Days counted by calendar date (UTC), so the count turns at midnight.
    let days = e.0.div_euclid(DAY_MS) - pnow.0.div_euclid(DAY_MS);
    let date = e.to_rfc3339().chars().take(10).collect::<String>();
    let message = if e > pnow {
        let when = match days {
            0 => "today".to_string(),
            1 => "tomorrow".to_string(),
            n => format!("in {n} days"),
        };
        format!("the licence expires on {date} ({when})")
    } else {
        let when = match -days {
            0 => "today".to_string(),
            1 => "yesterday".to_string(),
            n => format!("{n} days ago"),
        };
        format!("the licence expired on {date} ({when}); the portal has not confirmed it since")
    };
    Some((message, e))
}

/// `3 min 20 s`, `2 h 5 min`, `3 days 4 h`: a length of time, to the two
/// largest units.
fn span(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "days"), (3_600, "h"), (60, "min"), (1, "s")];
    let Some(first) = UNITS.iter().position(|(size, _)| secs >= *size) else {
        return "0 s".into();
    };
    let mut parts = Vec::new();
    for i in first..(first + 2).min(UNITS.len()) {
        let (size, name) = UNITS[i];
        let above = if i == 0 { u64::MAX } else { UNITS[i - 1].0 };
        match secs % above / size {
            0 => {}
            1 if i == 0 => parts.push("1 day".to_string()),
            n => parts.push(format!("{n} {name}")),
        }
    }
    parts.join(" ")
}

/// The next instant after `now` at which `warnings(f, _)` differs from
/// `warnings(f, now)` by the passing of time alone; `None` when the list
/// stays as it is until the facts change.
pub fn next_change(f: &Facts, now: Timestamp) -> Option<Timestamp> {
    let one_ms = Duration::from_millis(1);
    let mut candidates = Vec::new();
    if let Some(l) = f.lapses_at {
        // "Less than 24 h away" first holds 1 ms after the 24 h mark.
        candidates.push(l.sub(GRACE_ENDING_WINDOW).add(one_ms));
        candidates.push(l);
    }
    if let Some(e) = f.expires_at {
        candidates.push(f.local(e.sub(f.warn_before_expiry)).add(one_ms));
        candidates.push(f.local(e));
        // The day count of the message turns at the portal's midnight.
        let midnight = Timestamp((f.portal_now(now).0.div_euclid(DAY_MS) + 1) * DAY_MS);
        candidates.push(f.local(midnight));
    }
    candidates.retain(|t| *t > now);
    candidates.sort();
    candidates.dedup();
    let current = warnings(f, now);
    candidates.into_iter().find(|t| warnings(f, *t) != current)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_796_083_200_000); // 2026-12-01T00:00:00Z
    const MS: Duration = Duration::from_millis(1);
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn active() -> Facts {
        Facts {
            state: LicenseState::Active,
            grace_until: Some(T0.add(7 * DAY)),
            lapses_at: Some(T0.add(7 * DAY)),
            expires_at: None,
            clock_skew_seconds: Some(0),
            clock_stepped_secs: 0,
            deadline_skew_secs: 0,
            hardware_changed: false,
            activation_in_doubt: false,
            update_state: UpdateState::UpToDate,
            state_not_saved_since: None,
            warn_before_expiry: DEFAULT_WARN_BEFORE_EXPIRY,
        }
    }

    fn codes(f: &Facts, now: Timestamp) -> Vec<WarningCode> {
        warnings(f, now).into_iter().map(|w| w.code).collect()
    }

    #[test]
    fn a_healthy_active_licence_has_no_warning() {
        let f = active();
        assert!(warnings(&f, T0).is_empty());
        // Active licences lapse at grace_until, which removes nothing: no change.
        assert_eq!(next_change(&f, T0), None);
    }

    #[test]
    fn the_example_of_spec() {
        let f = Facts {
            expires_at: Some(t("2026-12-20T00:00:00Z")),
            ..active()
        };
        let now = t("2026-12-01T09:30:00Z");
        assert_eq!(
            warnings(&f, now),
            vec![Warning {
                code: WarningCode::ExpiringSoon,
                message: "the licence expires on 2026-12-20 (in 19 days)".into(),
                at: Some(t("2026-12-20T00:00:00Z")),
            }]
        );
        let json = serde_json::to_string(&warnings(&f, now)[0]).unwrap();
        assert_eq!(
            json,
            r#"{"code":"expiring_soon","message":"the licence expires on 2026-12-20 (in 19 days)","at":"2026-12-20T00:00:00Z"}"#
        );
    }

    #[test]
    fn grace_ending_appears_when_less_than_24_hours_are_left_and_ends_with_the_lapse() {
        let lapse = T0.add(3 * DAY);
        let f = Facts {
            state: LicenseState::Grace,
            grace_until: Some(lapse),
            lapses_at: Some(lapse),
            ..active()
        };
        let mark = lapse.sub(GRACE_ENDING_WINDOW);
        assert!(codes(&f, mark).is_empty(), "exactly 24 h left is not less");
        assert_eq!(codes(&f, mark.add(MS)), vec![WarningCode::GraceEnding]);
        assert_eq!(next_change(&f, T0), Some(mark.add(MS)));
        let w = &warnings(&f, mark.add(HOUR))[0];
        assert_eq!(w.at, Some(lapse));
        assert!(w.message.contains("2026-12-04T00:00:00Z"), "{}", w.message);
        assert_eq!(
            codes(&f, lapse.sub(MS)),
            vec![WarningCode::GraceEnding],
            "up to the last instant"
        );
        assert_eq!(next_change(&f, mark.add(MS)), Some(lapse));
        assert!(codes(&f, lapse).is_empty(), "lapsed: the state says it now");
        assert_eq!(f.state_at(lapse), LicenseState::Lapsed);
        assert_eq!(next_change(&f, lapse), None);
    }

    #[test]
    fn an_active_licence_near_its_lapse_has_no_grace_warning() {
        // Active (the portal answers) with valid_until close: no failure yet.
        let lapse = T0.add(HOUR);
        let f = Facts {
            lapses_at: Some(lapse),
            grace_until: Some(lapse),
            ..active()
        };
        assert!(codes(&f, T0).is_empty());
    }

    #[test]
    fn grace_ending_shows_grace_until_as_sent_and_times_with_the_local_deadline() {
        // The local clock is a day ahead: the deadline comes a day later locally.
        let shown = T0.add(2 * DAY);
        let local = shown.add(DAY);
        let f = Facts {
            state: LicenseState::Grace,
            grace_until: Some(shown),
            lapses_at: Some(local),
            clock_skew_seconds: Some(86_400),
            deadline_skew_secs: 86_400,
            ..active()
        };
        assert_eq!(
            next_change(&f, T0),
            Some(local.sub(GRACE_ENDING_WINDOW).add(MS))
        );
        let w = &warnings(&f, local.sub(HOUR))[0];
        assert_eq!(w.code, WarningCode::GraceEnding);
        assert_eq!(w.at, Some(shown));
    }

    #[test]
    fn expiring_soon_appears_at_expires_at_minus_warn_before_expiry() {
        let e = T0.add(40 * DAY);
        let f = Facts {
            expires_at: Some(e),
            lapses_at: Some(e.add(DAY)),
            grace_until: Some(e.add(DAY)),
            ..active()
        };
        let mark = e.sub(30 * DAY);
        assert!(codes(&f, mark).is_empty());
        assert_eq!(codes(&f, mark.add(MS)), vec![WarningCode::ExpiringSoon]);
        assert_eq!(next_change(&f, T0), Some(mark.add(MS)));
        // A longer setting warns earlier; "0s" never warns.
        let f90 = Facts {
            warn_before_expiry: 90 * DAY,
            ..f.clone()
        };
        assert_eq!(codes(&f90, T0), vec![WarningCode::ExpiringSoon]);
        let never = Facts {
            warn_before_expiry: Duration::ZERO,
            ..f.clone()
        };
        assert!(codes(&never, e.sub(MS)).is_empty());
        assert!(codes(&never, e.add(DAY)).is_empty());
        assert_eq!(next_change(&never, T0), None);
    }

    #[test]
    fn expiring_soon_counts_calendar_days_and_changes_at_midnight() {
        let e = t("2026-12-20T06:00:00Z");
        let f = Facts {
            expires_at: Some(e),
            lapses_at: Some(e.add(30 * DAY)),
            grace_until: Some(e.add(30 * DAY)),
            ..active()
        };
        let msg = |now: &str| warnings(&f, t(now))[0].message.clone();
        assert_eq!(
            msg("2026-12-18T23:59:59Z"),
            "the licence expires on 2026-12-20 (in 2 days)"
        );
        assert_eq!(
            msg("2026-12-19T00:00:00Z"),
            "the licence expires on 2026-12-20 (tomorrow)"
        );
        assert_eq!(
            msg("2026-12-20T05:59:59Z"),
            "the licence expires on 2026-12-20 (today)"
        );
        assert_eq!(
            msg("2026-12-20T06:00:00Z"),
            "the licence expired on 2026-12-20 (today); the portal has not confirmed it since"
        );
        assert_eq!(
            msg("2026-12-23T00:00:00Z"),
            "the licence expired on 2026-12-20 (3 days ago); the portal has not confirmed it since"
        );
        // The timer: next midnight, then the expiry instant itself.
        assert_eq!(
            next_change(&f, t("2026-12-18T10:00:00Z")),
            Some(t("2026-12-19T00:00:00Z"))
        );
        assert_eq!(
            next_change(&f, t("2026-12-20T00:00:00Z")),
            Some(e),
            "the expiry itself comes before midnight"
        );
    }

    #[test]
    fn expiring_soon_reads_expires_at_in_the_portals_clock() {
        // Local clock 2 days behind the portal's: the expiry is 2 days closer.
        let e = T0.add(33 * DAY);
        let f = Facts {
            expires_at: Some(e),
            clock_skew_seconds: Some(-2 * 86_400),
            deadline_skew_secs: -2 * 86_400,
            ..active()
        };
        let mark = T0.add(DAY);
        assert_eq!(codes(&f, mark), vec![WarningCode::ClockSkew]);
        assert_eq!(
            codes(&f, mark.add(MS)),
            vec![WarningCode::ExpiringSoon, WarningCode::ClockSkew]
        );
        assert_eq!(next_change(&f, T0), Some(mark.add(MS)));
        // Within the 60 s tolerance the local clock is used as is.
        let small = Facts {
            clock_skew_seconds: Some(-60),
            deadline_skew_secs: 0,
            ..f.clone()
        };
        assert_eq!(next_change(&small, T0), Some(e.sub(30 * DAY).add(MS)));
    }

    #[test]
    fn expiring_soon_only_while_licensed() {
        let e = T0.add(10 * DAY);
        let lapse = T0.add(2 * DAY);
        let f = Facts {
            expires_at: Some(e),
            lapses_at: Some(lapse),
            grace_until: Some(lapse),
            ..active()
        };
        assert_eq!(codes(&f, T0), vec![WarningCode::ExpiringSoon]);
        assert!(codes(&f, lapse).is_empty());
        let refused = Facts {
            state: LicenseState::Expired,
            lapses_at: None,
            grace_until: None,
            ..f.clone()
        };
        assert!(codes(&refused, T0).is_empty());
    }

    #[test]
    fn clock_skew_needs_more_than_60_seconds_either_way() {
        for (skew, expected) in [
            (Some(60), false),
            (Some(-60), false),
            (Some(61), true),
            (Some(-61), true),
            (None, false),
        ] {
            let f = Facts {
                clock_skew_seconds: skew,
                ..active()
            };
            assert_eq!(
                codes(&f, T0) == vec![WarningCode::ClockSkew],
                expected,
                "{skew:?}"
            );
        }
        let ahead = Facts {
            clock_skew_seconds: Some(200),
            ..active()
        };
        assert_eq!(
            warnings(&ahead, T0)[0].message,
            "this host's clock is 3 min 20 s ahead of the portal's"
        );
        let behind = Facts {
            clock_skew_seconds: Some(-(2 * 86_400 + 3600 + 7)),
            ..active()
        };
        assert_eq!(
            warnings(&behind, T0)[0].message,
            "this host's clock is 2 days 1 h behind the portal's"
        );
    }

    #[test]
    fn spans_name_the_two_largest_units() {
        for (secs, text) in [
            (0, "0 s"),
            (61, "1 min 1 s"),
            (3600, "1 h"),
            (3661, "1 h 1 min"),
            (86_400, "1 day"),
            (90_061, "1 day 1 h"),
            (3 * 86_400 + 59, "3 days"),
        ] {
            assert_eq!(span(secs), text, "{secs}");
        }
    }

    #[test]
    fn flags_make_their_warnings() {
        let since = T0.sub(HOUR);
        for (f, code, at) in [
            (
                Facts {
                    hardware_changed: true,
                    ..active()
                },
                WarningCode::HardwareChanged,
                None,
            ),
            (
                Facts {
                    activation_in_doubt: true,
                    ..active()
                },
                WarningCode::ActivationInDoubt,
                None,
            ),
            (
                Facts {
                    update_state: UpdateState::UpdatesExpired,
                    ..active()
                },
                WarningCode::UpdatesExpired,
                None,
            ),
            (
                Facts {
                    state_not_saved_since: Some(since.add(MS * 250)),
                    ..active()
                },
                WarningCode::StateNotSaved,
                Some(since),
            ),
        ] {
            let w = warnings(&f, T0);
            assert_eq!(w.len(), 1, "{code}");
            assert_eq!(w[0].code, code);
            assert_eq!(w[0].at, at, "{code}: whole seconds");
            assert!(!w[0].message.is_empty());
            assert_eq!(
                next_change(&f, T0),
                None,
                "{code} does not change by itself"
            );
        }
    }

    #[test]
    fn the_list_is_sorted_by_urgency() {
        let lapse = T0.add(HOUR);
        let f = Facts {
            state: LicenseState::Grace,
            grace_until: Some(lapse),
            lapses_at: Some(lapse),
            expires_at: Some(T0.add(5 * DAY)),
            clock_skew_seconds: Some(-3600),
            clock_stepped_secs: 0,
            deadline_skew_secs: -3600,
            hardware_changed: true,
            activation_in_doubt: true,
            update_state: UpdateState::UpdatesExpired,
            state_not_saved_since: Some(T0),
            warn_before_expiry: DEFAULT_WARN_BEFORE_EXPIRY,
        };
        assert_eq!(codes(&f, T0), WarningCode::ALL.to_vec());
        let mut sorted = WarningCode::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, WarningCode::ALL.to_vec());
    }

    #[test]
    fn codes_serialise_as_spec_names_them_and_unknown_ones_are_tolerated() {
        for c in WarningCode::ALL {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
            let back: WarningCode = serde_json::from_str(&format!("\"{c}\"")).unwrap();
            assert_eq!(back, c);
        }
        let w: Warning =
            serde_json::from_str(r#"{"code": "licence_on_fire", "message": "m", "at": null}"#)
                .unwrap();
        assert_eq!(w.code, WarningCode::Other);
    }

    #[test]
    fn from_core_reads_the_core() {
        use crate::classify::LicenseDetails;
        use crate::machine::{Binding, Verdict};
        let s = Schedule::default();
        let inputs = Inputs {
            key_fingerprint: Some("k".into()),
            hardware_id: "b".repeat(64),
        };
        let mut core = Core::default();
        core.licence.verdict = Some(Verdict::Valid {
            at: T0,
            details: LicenseDetails {
                tier: None,
                expires_at: Some(T0.add(3 * DAY)),
                valid_until: None,
                max_users: None,
                max_domains: None,
                max_databases: None,
            },
            skew_secs: None,
        });
        core.licence.failing = true;
        core.licence.verdict_binding = Some(Binding {
            key_fingerprint: "k".into(),
            hardware_id: "a".repeat(64),
        });
        let ctx = Context {
            warn_before_expiry: DEFAULT_WARN_BEFORE_EXPIRY,
            hardware_known: true,
            state_not_saved_since: None,
        };
        let now = T0.add(HOUR);
        let f = Facts::from_core(&core, &inputs, &s, now, &ctx);
        assert_eq!(f.state, LicenseState::Grace);
        assert_eq!(f.lapses_at, Some(T0.add(s.offline_grace)));
        assert_eq!(
            codes(&f, now),
            vec![WarningCode::ExpiringSoon, WarningCode::HardwareChanged]
        );
        let unknown_hw = Facts::from_core(
            &core,
            &inputs,
            &s,
            now,
            &Context {
                hardware_known: false,
                ..ctx
            },
        );
        assert!(!unknown_hw.hardware_changed);
    }
}
