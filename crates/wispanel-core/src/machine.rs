//! The licence state machine: what the daemon knows, and how each portal
//! answer, each change of key or hardware_id, and the passing of time change it.
//!
//! [`Core`] is the whole saved state (`state.json` serialises it). Its methods
//! take `now` and a [`Jitter`] and never do I/O; the displayed licence state is
//! derived from the saved facts and `now` by [`Core::license_state`], so
//! `grace` turns into `lapsed` at the exact instant without a write.

use super::classify::{Classified, LicenseDetails, Outcome, UpdateAnswer};
use super::gate::{self, GateClose};
use super::schedule::{self, Jitter};
use super::{Endpoint, ErrorKind, LicenseState, PortalError, Reason, UpdateState};
use crate::activation::PendingActivation;
use crate::portal_time::ClockSteps;
use crate::schedule::Schedule;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// The portal's last decision about the licence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    Valid {
        at: Timestamp,
        details: LicenseDetails,
        /// Local clock minus the portal's `Date` when the verdict came, if known.
        #[serde(default)]
        skew_secs: Option<i64>,
    },
    Refused {
        at: Timestamp,
        state: LicenseState,
        reason: Reason,
    },
}

impl Verdict {
    pub fn at(&self) -> Timestamp {
        match self {
            Verdict::Valid { at, .. } | Verdict::Refused { at, .. } => *at,
        }
    }
}

/// A key (by fingerprint) bound to a hardware_id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub key_fingerprint: String,
    pub hardware_id: String,
}

/// What the daemon knows about the licence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    pub verdict: Option<Verdict>,
    /// A non-verdict came after the last valid verdict (the host is in grace).
    #[serde(default)]
    pub failing: bool,
    /// The key and hardware_id the last verdict was given for.
    pub verdict_binding: Option<Binding>,
    /// The key and hardware_id known to be activated at the portal.
    pub activated: Option<Binding>,
    /// Fingerprint of a configured key released by `deactivate`: ignored until
    /// the configured key changes.
    pub deactivated_key: Option<String>,
    /// The key and hardware_id last taken in, to notice a change.
    #[serde(default)]
    pub seen: Option<Binding>,
    /// Fingerprint of the configured key last seen (`None`: no key), and
    /// whether it was recorded at all, to notice that the configuration
    /// names another key.
    #[serde(default)]
    pub configured_key: Option<String>,
    #[serde(default)]
    pub configured_key_seen: bool,
    /// An `activate` without a verdict yet, with its `Idempotency-Key`
    /// (see [`crate::activation`]).
    #[serde(default)]
    pub activation: Option<PendingActivation>,
}

/// What the daemon knows about updates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub state: UpdateState,
    pub current_version: Option<String>,
    pub latest_version: Option<String>,
    pub changelog: Option<String>,
    pub checked_at: Option<Timestamp>,
    pub reason: Option<Reason>,
    /// Update checks failed in a row (without an answer), for their pacing.
    #[serde(default)]
    pub failed_checks: u32,
}

/// The portal connection's health, the gate and the back-off step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalHealth {
    pub last_attempt_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub last_error: Option<PortalError>,
    pub consecutive_failures: u32,
    pub rate_limited_until: Option<Timestamp>,
    pub clock_skew_seconds: Option<i64>,
}

/// When the loops run next.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// `None` with a key means "at once".
    pub next_validate_at: Option<Timestamp>,
    /// `None` until the first valid verdict.
    pub next_update_check_at: Option<Timestamp>,
}

/// The inputs the core does not own: the effective key and the hardware_id now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// Fingerprint of the key in use (`LicenseKey::fingerprint`), if any.
    pub key_fingerprint: Option<String>,
    pub hardware_id: String,
}

/// The whole saved state of the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Core {
    pub licence: Licence,
    pub update: Update,
    pub portal: PortalHealth,
    pub plan: Plan,
    /// The steps of the wall clock seen while this process runs (never
    /// saved; see [`crate::portal_time`]).
    #[serde(skip)]
    pub(crate) steps: ClockSteps,
}

/// What a licence request should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub endpoint: Endpoint,
    pub at: Timestamp,
}

impl Core {
    /// The licence state at `now` for a daemon with `inputs`.
    pub fn license_state(&self, inputs: &Inputs, s: &Schedule, now: Timestamp) -> LicenseState {
        if inputs.key_fingerprint.is_none() {
            return LicenseState::Unconfigured;
        }
        match &self.licence.verdict {
            None => LicenseState::Unknown,
            Some(Verdict::Refused { state, .. }) => *state,
            Some(Verdict::Valid { .. }) => {
                let until = self.lapse_at(s).unwrap_or(now);
                if now >= until {
                    LicenseState::Lapsed
                } else if self.licence.failing {
                    LicenseState::Grace
                } else {
                    LicenseState::Active
                }
            }
        }
    }

    /// The end of grace while the last verdict is valid, as shown: the
    /// portal's `valid_until` as sent (in the portal's clock), else the
    /// verdict's time plus `offline_grace` (SPEC). Comparisons with the local
    /// clock use [`Core::lapse_at`], which reads it in the portal's clock.
    pub fn grace_until(&self, s: &Schedule) -> Option<Timestamp> {
        match &self.licence.verdict {
            Some(Verdict::Valid { at, details, .. }) => Some(
                details
                    .valid_until
                    .unwrap_or_else(|| at.add(s.offline_grace)),
            ),
            _ => None,
        }
    }

    /// The next instant at which the derived state changes by itself (grace
    /// or active turning into lapsed), so the daemon can wake and announce it.
    pub fn next_lapse(&self, inputs: &Inputs, s: &Schedule, now: Timestamp) -> Option<Timestamp> {
        match self.license_state(inputs, s, now) {
            LicenseState::Active | LicenseState::Grace => self.lapse_at(s),
            _ => None,
        }
    }

    /// Whether the hardware_id differs from the one sent with the last verdict.
    pub fn hardware_changed(&self, inputs: &Inputs) -> bool {
        matches!(&self.licence.verdict_binding, Some(b) if b.hardware_id != inputs.hardware_id)
    }

    /// The gate, if closed at `now`.
    pub fn gate_closed_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.portal.rate_limited_until.filter(|t| *t > now)
    }

    /// Takes in the key and hardware_id in force (at start, on reload, after
    /// `activate`, before each request). Only a *change* counts: a changed key
    /// forgets the old key's verdict, and a changed key or hardware_id makes
    /// the next licence request due at once. Seeing the same inputs again
    /// changes nothing, so a retry schedule is never cut short.
    pub fn apply_inputs(&mut self, inputs: &Inputs) {
        let Some(fp) = &inputs.key_fingerprint else {
            self.plan.next_validate_at = None;
            self.licence.seen = None;
            return;
        };
        let now = Binding {
            key_fingerprint: fp.clone(),
            hardware_id: inputs.hardware_id.clone(),
        };
        // A verdict given for another key is forgotten, whenever it came.
        let verdict_key = self
            .licence
            .verdict_binding
            .as_ref()
            .map(|b| &b.key_fingerprint);
        if self.licence.verdict.is_some() && verdict_key != Some(fp) {
            self.licence.verdict = None;
            self.licence.failing = false;
            self.licence.verdict_binding = None;
            self.plan.next_validate_at = None;
        }
        if self.licence.seen.as_ref() == Some(&now) {
            return;
        }
        let before = self.licence.seen.replace(now.clone());
        let changed = match &before {
            Some(b) => *b != now,
            // First sight (a fresh state): compare with the last verdict's inputs.
            None => self.licence.verdict_binding.as_ref() != Some(&now),
        };
        if changed {
            self.plan.next_validate_at = None;
        }
    }

    /// Records the configured key's fingerprint; true when the configuration
    /// now names a key other than the one last seen (so it replaces a key
    /// saved by `activate`).
    pub fn configured_key_changed(&mut self, fingerprint: Option<String>) -> bool {
        let changed = self.licence.configured_key_seen
            && fingerprint.is_some()
            && self.licence.configured_key != fingerprint;
        self.licence.configured_key = fingerprint;
        self.licence.configured_key_seen = true;
        changed
    }

    /// The licence request to make next, and when; `None` without a key.
    /// The time is never before the gate opens.
    pub fn due(&self, inputs: &Inputs, now: Timestamp) -> Option<Due> {
        let fp = inputs.key_fingerprint.as_ref()?;
        let binding = Binding {
            key_fingerprint: fp.clone(),
            hardware_id: inputs.hardware_id.clone(),
        };
        let endpoint = if self.licence.activated.as_ref() == Some(&binding)
            || self.confirming_activation(&binding)
        {
            Endpoint::Validate
        } else {
            Endpoint::Activate
        };
        let at = self.plan.next_validate_at.unwrap_or(now);
        let at = self.gate_closed_until(now).map_or(at, |g| at.max(g));
        Some(Due { endpoint, at })
    }

    /// When the update check is due (never before the gate opens).
    pub fn update_due(&self, now: Timestamp) -> Option<Timestamp> {
        let at = self.plan.next_update_check_at?;
        Some(self.gate_closed_until(now).map_or(at, |g| at.max(g)))
    }

    /// Common bookkeeping of any exchange: attempt and success times, failure
    /// count, last error, clock skew and the gate.
    fn note_exchange(&mut self, c: &Classified, s: &Schedule, now: Timestamp, j: &mut dyn Jitter) {
        self.portal.last_attempt_at = Some(now);
        if let Some(date) = c.portal_date {
            self.portal.clock_skew_seconds = Some((now.0 - date.0).div_euclid(1000));
            // The portal's time is known again: steps count from here.
            self.steps.mark_answer();
        }
        match &c.outcome {
            Outcome::Failed(e) => {
                self.portal.consecutive_failures =
                    self.portal.consecutive_failures.saturating_add(1);
                self.portal.last_error = Some(e.clone());
            }
            _ => {
                self.portal.consecutive_failures = 0;
                self.portal.last_error = None;
                self.portal.last_success_at = Some(now);
            }
        }
        if let Some(g) = c.gate {
            let until = match g {
                GateClose::Until(t) => t,
                GateClose::Backoff => {
                    let wait = schedule::backoff_delay(s, self.failure_step(), j);
                    gate::clamp_until(now, wait.as_millis() as i128)
                }
                GateClose::PortalDate(at) => {
                    let at = self.portal_to_local(at);
                    gate::clamp_until(now, i128::from(at.0) - i128::from(now.0))
                }
            };
            let until = self
                .gate_closed_until(now)
                .map_or(until, |old| old.max(until));
            self.portal.rate_limited_until = Some(until);
        }
    }

    /// n of SPEC: 0 after the first consecutive failure.
    fn failure_step(&self) -> u32 {
        self.portal.consecutive_failures.saturating_sub(1)
    }

    /// Records a request that the closed gate refused locally.
    pub fn note_gate_refusal(&mut self, now: Timestamp) {
        if let Some(until) = self.gate_closed_until(now) {
            self.portal.last_error = Some(PortalError {
                kind: ErrorKind::RateLimited,
                http_status: None,
                code: Some("RATE_LIMITED".into()),
                message: format!("the portal asked us to wait until {until}; no request was sent"),
            });
        }
    }

    /// Applies the answer to a scheduled or manual licence request made with
    /// `inputs`.
    pub fn record_licence(
        &mut self,
        endpoint: Endpoint,
        c: &Classified,
        inputs: &Inputs,
        s: &Schedule,
        now: Timestamp,
        j: &mut dyn Jitter,
    ) {
        self.note_exchange(c, s, now, j);
        let binding = inputs.key_fingerprint.as_ref().map(|fp| Binding {
            key_fingerprint: fp.clone(),
            hardware_id: inputs.hardware_id.clone(),
        });
        let stale = self.licence.seen.is_some() && self.licence.seen != binding;
        if self
            .settle_activation(endpoint, c, binding.as_ref())
            .is_some()
        {
            // Not final while the activation is in doubt (SPEC): one
            // `validate` first, at once; its answer is the verdict.
            self.plan.next_validate_at = None;
            return;
        }
        match &c.outcome {
            Outcome::Valid(details) => {
                self.licence.verdict = Some(Verdict::Valid {
                    at: now,
                    details: details.clone(),
                    skew_secs: self
                        .portal
                        .clock_skew_seconds
                        .filter(|_| c.portal_date.is_some()),
                });
                self.steps.mark_verdict();
                self.licence.failing = false;
                self.licence.verdict_binding = binding.clone();
                if matches!(endpoint, Endpoint::Activate | Endpoint::Validate) {
                    self.licence.activated = binding;
                }
                self.plan.next_validate_at =
                    Some(schedule::next_regular(now, s.validate_interval, s, j));
                if self.plan.next_update_check_at.is_none() {
                    self.plan.next_update_check_at = Some(now);
                }
            }
            Outcome::Refused { state, reason } => {
                self.licence.verdict = Some(Verdict::Refused {
                    at: now,
                    state: *state,
                    reason: reason.clone(),
                });
                self.licence.failing = false;
                self.licence.verdict_binding = binding;
                // The activation stands: refusal states are validated again
                // (SPEC); re-binding is the administrator's `activate`.
                self.plan.next_validate_at =
                    Some(schedule::next_regular(now, s.validate_interval, s, j));
            }
            Outcome::Failed(_) => {
                if matches!(self.licence.verdict, Some(Verdict::Valid { .. })) {
                    self.licence.failing = true;
                }
                let grace = match self.license_state(inputs, s, now) {
                    LicenseState::Grace => self.lapse_at(s),
                    _ => None,
                };
                let next = schedule::next_licence_retry(now, self.failure_step(), grace, s, j);
                self.plan.next_validate_at = Some(self.spread_after_gate(next, s, now, j));
            }
            // Not a licence endpoint's answer: count it, change nothing else.
            Outcome::Deactivated
            | Outcome::Update(_)
            | Outcome::Token(_)
            | Outcome::UpdateRefused { .. } => {}
        }
        if stale {
            // The key or hardware_id changed while the request was out: the
            // answer is for the old inputs, so the new ones are checked at once.
            self.plan.next_validate_at = None;
        }
    }

    /// Applies the answer to an `activate` with a new key that is not in force
    /// yet. Only a valid verdict changes the licence (the caller then adopts the
    /// key); a refusal or a failure leaves the current licence as it is.
    pub fn record_candidate_activation(
        &mut self,
        c: &Classified,
        candidate: &Inputs,
        s: &Schedule,
        now: Timestamp,
        j: &mut dyn Jitter,
    ) {
        self.record_candidate(Endpoint::Activate, c, candidate, s, now, j);
    }

    /// As [`Core::record_candidate_activation`], for the `activate` or for
    /// the one `validate` that decides an activation in doubt. Returns true
    /// when the answer (a `MAX_ACTIVATIONS` or `HARDWARE_MISMATCH` to an
    /// `activate` in doubt) is not final: the caller sends one `validate`
    /// with the candidate and records it here too.
    pub fn record_candidate(
        &mut self,
        endpoint: Endpoint,
        c: &Classified,
        candidate: &Inputs,
        s: &Schedule,
        now: Timestamp,
        j: &mut dyn Jitter,
    ) -> bool {
        let binding = candidate.key_fingerprint.as_ref().map(|fp| Binding {
            key_fingerprint: fp.clone(),
            hardware_id: candidate.hardware_id.clone(),
        });
        if matches!(c.outcome, Outcome::Valid(_)) {
            self.licence.deactivated_key = None;
            // The candidate becomes the inputs in force with this answer.
            self.licence.seen = binding;
            self.record_licence(endpoint, c, candidate, s, now, j);
            false
        } else {
            self.note_exchange(c, s, now, j);
            self.settle_activation(endpoint, c, binding.as_ref())
                .is_some()
        }
    }

    /// Applies the answer to `deactivate`. On success the licence is released:
    /// no verdict, no activation, and `released_key` (the configured key's
    /// fingerprint) is ignored until the configuration names another key.
    pub fn record_deactivation(
        &mut self,
        c: &Classified,
        released_key: Option<String>,
        s: &Schedule,
        now: Timestamp,
        j: &mut dyn Jitter,
    ) {
        self.note_exchange(c, s, now, j);
        if matches!(c.outcome, Outcome::Deactivated) {
            self.licence = Licence {
                deactivated_key: released_key,
                configured_key: self.licence.configured_key.take(),
                configured_key_seen: self.licence.configured_key_seen,
                ..Licence::default()
            };
            self.update = Update::default();
            self.plan = Plan::default();
        }
    }

    /// Applies the answer to an update check made with `current_version`.
    /// `available` is `latest_version > current_version` when both parse as
    /// versions ([`crate::version::Version`]), else the portal's `update_available`.
    pub fn record_update(
        &mut self,
        c: &Classified,
        current_version: &str,
        s: &Schedule,
        now: Timestamp,
        j: &mut dyn Jitter,
    ) {
        self.note_exchange(c, s, now, j);
        match &c.outcome {
            Outcome::Update(UpdateAnswer {
                update_available,
                latest_version,
                changelog,
                ..
            }) => {
                // Our own comparison when both versions parse; the portal's
                // flag only when one does not.
                let available = latest_version
                    .as_deref()
                    .and_then(|latest| crate::version::is_newer(latest, current_version))
                    .unwrap_or(*update_available);
                self.update = Update {
                    state: if available {
                        UpdateState::Available
                    } else {
                        UpdateState::UpToDate
                    },
                    current_version: Some(current_version.to_string()),
                    latest_version: latest_version.clone(),
                    changelog: changelog.clone(),
                    checked_at: Some(now),
                    reason: None,
                    failed_checks: 0,
                };
            }
            Outcome::UpdateRefused { state, reason } => {
                self.update.state = *state;
                self.update.current_version = Some(current_version.to_string());
                self.update.checked_at = Some(now);
                self.update.reason = Some(reason.clone());
                self.update.failed_checks = 0;
            }
            _ => {
                self.update.failed_checks = self.update.failed_checks.saturating_add(1);
            }
        }
        self.plan.next_update_check_at = Some(if c.outcome.is_answer() {
            schedule::next_regular(now, s.update_check_interval, s, j)
        } else {
            // SPEC: two quick retries with the back-off, then one try every
            // `validate_interval` until one succeeds.
            let next = schedule::next_update_retry(
                now,
                self.update.failed_checks,
                self.failure_step(),
                s,
                j,
            );
            self.spread_after_gate(next, s, now, j)
        });
    }

    /// A retry due while the gate is closed moves to a spread moment after it.
    fn spread_after_gate(
        &self,
        next: Timestamp,
        s: &Schedule,
        now: Timestamp,
        j: &mut dyn Jitter,
    ) -> Timestamp {
        match self.gate_closed_until(now) {
            Some(g) => schedule::after_gate(next, g, now, s, j),
            None => next,
        }
    }

    /// Applies the answer to a `download/token` request (bookkeeping and the
    /// update state on a refusal; a token itself changes nothing).
    pub fn record_token(
        &mut self,
        c: &Classified,
        s: &Schedule,
        now: Timestamp,
        j: &mut dyn Jitter,
    ) {
        self.note_exchange(c, s, now, j);
        if let Outcome::UpdateRefused { state, reason } = &c.outcome {
            self.update.state = *state;
            self.update.reason = Some(reason.clone());
        }
    }

    /// Makes the next licence check due at once (a manual check, a changed
    /// hardware_id).
    pub fn check_now(&mut self) {
        self.plan.next_validate_at = None;
    }

    /// Clears a gate that has opened, so `state.json` and the status say null.
    pub fn expire_gate(&mut self, now: Timestamp) -> bool {
        if self.portal.rate_limited_until.is_some_and(|t| t <= now) {
            self.portal.rate_limited_until = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::{Exchange, classify};
    use crate::schedule::FixedJitter;
    use std::time::Duration;

    const T0: Timestamp = Timestamp(1_800_000_000_000);
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86400);

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

    /// A classified portal answer, for the core's tables.
    pub(crate) fn answer(
        endpoint: Endpoint,
        status: u16,
        body: &str,
        headers: &[(&str, &str)],
        now: Timestamp,
    ) -> Classified {
        let hs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let h = move |n: &str| hs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        classify(
            endpoint,
            &Exchange::Answer {
                status,
                header: &h,
                body: body.as_bytes(),
                body_problem: None,
            },
            now,
        )
    }

    /// No answer: the portal cannot be reached (a refused connection).
    pub(crate) fn unreachable(endpoint: Endpoint, now: Timestamp) -> Classified {
        classify(
            endpoint,
            &Exchange::Unsent {
                kind: ErrorKind::Connect,
                message: "connection refused".into(),
            },
            now,
        )
    }

    fn valid(now: Timestamp) -> Classified {
        answer(
            Endpoint::Validate,
            200,
            r#"{"valid": true, "license": {"tier": "free"}}"#,
            &[],
            now,
        )
    }

    fn failure(now: Timestamp) -> Classified {
        answer(Endpoint::Validate, 500, "oops", &[], now)
    }

    fn j() -> FixedJitter {
        FixedJitter(0.0)
    }

    #[test]
    fn first_start_activates_at_once_then_validates() {
        let mut c = Core::default();
        let i = inputs();
        c.apply_inputs(&i);
        assert_eq!(c.license_state(&i, &sched(), T0), LicenseState::Unknown);
        assert_eq!(
            c.due(&i, T0),
            Some(Due {
                endpoint: Endpoint::Activate,
                at: T0
            })
        );
        c.record_licence(Endpoint::Activate, &valid(T0), &i, &sched(), T0, &mut j());
        assert_eq!(c.license_state(&i, &sched(), T0), LicenseState::Active);
        let due = c.due(&i, T0).unwrap();
        assert_eq!(due.endpoint, Endpoint::Validate);
        assert_eq!(due.at, T0.add(6 * HOUR));
        // The first update check follows the first valid verdict.
        assert_eq!(c.update_due(T0), Some(T0));
    }

    #[test]
    fn no_key_is_unconfigured_and_nothing_is_due() {
        let c = Core::default();
        let i = Inputs {
            key_fingerprint: None,
            hardware_id: "a".repeat(64),
        };
        assert_eq!(
            c.license_state(&i, &sched(), T0),
            LicenseState::Unconfigured
        );
        assert_eq!(c.due(&i, T0), None);
    }

    #[test]
    fn active_grace_lapsed_at_the_right_instant() {
        let s = sched();
        let mut c = Core::default();
        let i = inputs();
        c.record_licence(Endpoint::Validate, &valid(T0), &i, &s, T0, &mut j());
        let until = T0.add(s.offline_grace);
        assert_eq!(c.grace_until(&s), Some(until));
        let t1 = T0.add(6 * HOUR);
        c.record_licence(Endpoint::Validate, &failure(t1), &i, &s, t1, &mut j());
        assert_eq!(c.license_state(&i, &s, t1), LicenseState::Grace);
        assert!(c.license_state(&i, &s, t1).licensed());
        assert_eq!(
            c.license_state(&i, &s, until.sub(Duration::from_millis(1))),
            LicenseState::Grace
        );
        assert_eq!(c.license_state(&i, &s, until), LicenseState::Lapsed);
        assert_eq!(c.next_lapse(&i, &s, t1), Some(until));
        // A newer valid verdict ends the grace.
        let t2 = until.add(HOUR);
        c.record_licence(Endpoint::Validate, &valid(t2), &i, &s, t2, &mut j());
        assert_eq!(c.license_state(&i, &s, t2), LicenseState::Active);
    }

    #[test]
    fn valid_until_sets_the_grace_and_lapse_needs_no_failure() {
        let s = sched();
        let mut c = Core::default();
        let i = inputs();
        let vu = T0.add(2 * DAY);
        let body = format!(r#"{{"valid": true, "license": {{"valid_until": "{vu}"}}}}"#);
        c.record_licence(
            Endpoint::Validate,
            &answer(Endpoint::Validate, 200, &body, &[], T0),
            &i,
            &s,
            T0,
            &mut j(),
        );
        assert_eq!(c.grace_until(&s), Some(vu));
        assert_eq!(c.license_state(&i, &s, vu), LicenseState::Lapsed);
    }

    #[test]
    fn grace_until_is_shown_as_sent_and_read_in_the_portals_clock() {
        let s = sched();
        let mut c = Core::default();
        let i = inputs();
        let portal_now = T0.sub(10 * DAY); // our clock is 10 days ahead
        let vu = portal_now.add(7 * DAY);
        let body = format!(r#"{{"valid": true, "license": {{"valid_until": "{vu}"}}}}"#);
        let date = portal_now.to_http_date();
        let a = answer(Endpoint::Validate, 200, &body, &[("Date", &date)], T0);
        c.record_licence(Endpoint::Validate, &a, &i, &s, T0, &mut j());
        assert_eq!(c.portal.clock_skew_seconds, Some(10 * 86400));
        assert_eq!(c.grace_until(&s), Some(vu));
        assert_eq!(c.license_state(&i, &s, T0), LicenseState::Active);
        assert_eq!(c.lapse_at(&s), Some(T0.add(7 * DAY)));
    }

    #[test]
    fn refusals_keep_the_activation_so_the_next_check_validates() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        c.apply_inputs(&i);
        c.record_licence(Endpoint::Activate, &valid(T0), &i, &s, T0, &mut j());
        for code in ["HARDWARE_MISMATCH", "INVALID_KEY"] {
            let a = answer(
                Endpoint::Validate,
                403,
                &format!(r#"{{"code": "{code}"}}"#),
                &[],
                T0,
            );
            c.record_licence(Endpoint::Validate, &a, &i, &s, T0, &mut j());
            assert_eq!(
                c.due(&i, T0).unwrap().endpoint,
                Endpoint::Validate,
                "{code}"
            );
        }
    }

    #[test]
    fn failed_update_checks_two_quick_retries_then_one_per_validate_interval() {
        let s = sched();
        let i = inputs();
        // Whatever the licence does (active, or grace), SPEC paces failed
        // update checks the same way.
        for grace in [false, true] {
            let mut c = Core::default();
            c.record_licence(Endpoint::Validate, &valid(T0), &i, &s, T0, &mut j());
            if grace {
                c.record_licence(Endpoint::Validate, &failure(T0), &i, &s, T0, &mut j());
                assert_eq!(c.license_state(&i, &s, T0), LicenseState::Grace);
            }
            let fail = |t| answer(Endpoint::CheckUpdate, 500, "", &[], t);
            let mut waits = vec![];
            let mut t = T0;
            for _ in 0..5 {
                c.record_update(&fail(t), "1.4.2", &s, t, &mut j());
                let next = c.update_due(t).unwrap();
                waits.push(next.since(t).as_secs());
                t = next;
            }
            let six_h = 6 * 3600;
            // The quick retries follow the portal's failure step n.
            let quick: Vec<u64> = if grace { vec![30, 60] } else { vec![15, 30] };
            assert_eq!(waits[..2], quick[..], "grace={grace}");
            assert_eq!(waits[2..], [six_h, six_h, six_h], "grace={grace}");
            assert_eq!(c.update.failed_checks, 5);
            // A success resets the count: the next failure retries quickly again.
            let ok = answer(
                Endpoint::CheckUpdate,
                200,
                r#"{"update_available": false}"#,
                &[],
                t,
            );
            c.record_update(&ok, "1.4.2", &s, t, &mut j());
            assert_eq!(c.update.failed_checks, 0);
            c.record_update(&fail(t), "1.4.2", &s, t, &mut j());
            assert_eq!(c.update_due(t).unwrap(), t.add(Duration::from_secs(15)));
            // A download refusal is an answer too.
            let no = answer(
                Endpoint::CheckUpdate,
                403,
                r#"{"code": "UPDATES_EXPIRED"}"#,
                &[],
                t,
            );
            c.record_update(&no, "1.4.2", &s, t, &mut j());
            assert_eq!(c.update.failed_checks, 0);
        }
    }

    #[test]
    fn non_verdicts_never_unlicense() {
        let s = sched();
        let i = inputs();
        type Case<'a> = (u16, &'a str, &'a [(&'a str, &'a str)]);
        let bodies: [Case; 8] = [
            (500, "", &[]),
            (503, r#"{"code": "EXPIRED"}"#, &[]),
            (429, "", &[("Retry-After", "60")]),
            (302, "", &[("Location", "https://evil")]),
            (200, "garbage", &[]),
            (200, r#"{"valid": false}"#, &[]),
            (403, r#"{"code": "FORBIDDEN"}"#, &[]),
            (400, r#"{"code": "SOMETHING_NEW"}"#, &[]),
        ];
        for (status, body, hs) in bodies {
            let mut c = Core::default();
            c.record_licence(Endpoint::Validate, &valid(T0), &i, &s, T0, &mut j());
            let t = T0.add(HOUR);
            c.record_licence(
                Endpoint::Validate,
                &answer(Endpoint::Validate, status, body, hs, t),
                &i,
                &s,
                t,
                &mut j(),
            );
            assert_eq!(
                c.license_state(&i, &s, t),
                LicenseState::Grace,
                "{status} {body}"
            );
            assert!(c.portal.last_error.is_some());
            assert_eq!(c.portal.consecutive_failures, 1);
        }
    }

    #[test]
    fn refusals_wait_the_normal_interval() {
        let s = sched();
        let i = inputs();
        for code in [
            "REVOKED",
            "HARDWARE_MISMATCH",
            "MAX_ACTIVATIONS",
            "INVALID_KEY",
            "EXPIRED",
            "SUSPENDED",
        ] {
            let mut c = Core::default();
            let a = answer(
                Endpoint::Validate,
                403,
                &format!(r#"{{"code": "{code}", "error": "no"}}"#),
                &[],
                T0,
            );
            c.record_licence(Endpoint::Validate, &a, &i, &s, T0, &mut j());
            let st = c.license_state(&i, &s, T0);
            assert!(!st.licensed());
            assert_eq!(
                c.due(&i, T0).unwrap().at,
                T0.add(s.validate_interval),
                "{code}"
            );
            assert_eq!(c.portal.consecutive_failures, 0);
            assert_eq!(c.grace_until(&s), None);
        }
    }

    #[test]
    fn suspended_can_be_reinstated() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        let a = answer(Endpoint::Validate, 403, r#"{"code": "SUSPENDED"}"#, &[], T0);
        c.record_licence(Endpoint::Validate, &a, &i, &s, T0, &mut j());
        assert_eq!(c.license_state(&i, &s, T0), LicenseState::Suspended);
        let t = T0.add(6 * HOUR);
        c.record_licence(Endpoint::Validate, &valid(t), &i, &s, t, &mut j());
        assert_eq!(c.license_state(&i, &s, t), LicenseState::Active);
    }

    #[test]
    fn failures_back_off_then_grace_paces() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        c.record_licence(Endpoint::Validate, &valid(T0), &i, &s, T0, &mut j());
        let mut t = T0.add(6 * HOUR);
        let mut waits = vec![];
        for _ in 0..5 {
            c.record_licence(Endpoint::Validate, &failure(t), &i, &s, t, &mut j());
            let next = c.due(&i, t).unwrap().at;
            waits.push(next.since(t).as_secs());
            t = next;
        }
        // 15 s, 30 s (jitter 0 gives d/2), then the normal 6 h interval.
        assert_eq!(waits, vec![15, 30, 6 * 3600, 6 * 3600, 6 * 3600]);
        // A success resets n.
        c.record_licence(Endpoint::Validate, &valid(t), &i, &s, t, &mut j());
        assert_eq!(c.portal.consecutive_failures, 0);
        c.record_licence(Endpoint::Validate, &failure(t), &i, &s, t, &mut j());
        assert_eq!(c.due(&i, t).unwrap().at, t.add(Duration::from_secs(15)));
    }

    #[test]
    fn unknown_state_keeps_backing_off() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        let mut t = T0;
        let mut waits = vec![];
        for _ in 0..9 {
            c.record_licence(Endpoint::Activate, &failure(t), &i, &s, t, &mut j());
            let next = c.due(&i, t).unwrap().at;
            waits.push(next.since(t).as_secs());
            t = next;
        }
        assert_eq!(waits, vec![15, 30, 60, 120, 240, 480, 960, 1800, 1800]);
        assert_eq!(c.license_state(&i, &s, t), LicenseState::Unknown);
    }

    #[test]
    fn the_gate_blocks_every_endpoint() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        c.record_licence(Endpoint::Validate, &valid(T0), &i, &s, T0, &mut j());
        let t = T0.add(Duration::from_secs(1));
        let rl = answer(Endpoint::CheckUpdate, 429, "", &[("Retry-After", "120")], t);
        c.record_update(&rl, "1.4.2", &s, t, &mut j());
        let open = t.add(Duration::from_secs(120));
        assert_eq!(c.gate_closed_until(t), Some(open));
        c.check_now();
        assert_eq!(c.due(&i, t).unwrap().at, open);
        assert!(c.update_due(t).unwrap() >= open);
        assert_eq!(c.gate_closed_until(open), None);
        assert!(c.expire_gate(open));
        assert_eq!(c.portal.rate_limited_until, None);
        // The licence state is untouched by a download endpoint's 429.
        assert_eq!(c.license_state(&i, &s, t), LicenseState::Active);
        c.note_gate_refusal(t);
    }

    #[test]
    fn a_429_without_times_closes_the_gate_for_the_backoff() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        let a = answer(Endpoint::Validate, 429, "", &[], T0);
        c.record_licence(Endpoint::Activate, &a, &i, &s, T0, &mut FixedJitter(0.0));
        assert_eq!(
            c.gate_closed_until(T0),
            Some(T0.add(Duration::from_secs(15)))
        );
        assert_eq!(
            c.portal.last_error.as_ref().unwrap().kind,
            ErrorKind::RateLimited
        );
    }

    #[test]
    fn changed_key_forgets_the_verdict_changed_hardware_checks_at_once() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        c.record_licence(Endpoint::Activate, &valid(T0), &i, &s, T0, &mut j());
        let mut hw = i.clone();
        hw.hardware_id = "b".repeat(64);
        assert!(c.hardware_changed(&hw));
        c.apply_inputs(&hw);
        assert_eq!(c.license_state(&hw, &s, T0), LicenseState::Active);
        assert_eq!(
            c.due(&hw, T0),
            Some(Due {
                endpoint: Endpoint::Activate,
                at: T0
            })
        );
        let mut k2 = i.clone();
        k2.key_fingerprint = Some("k2".into());
        c.apply_inputs(&k2);
        assert_eq!(c.license_state(&k2, &s, T0), LicenseState::Unknown);
        assert_eq!(c.due(&k2, T0).unwrap().at, T0);
    }

    #[test]
    fn seeing_the_same_inputs_again_keeps_the_retry_schedule() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        c.apply_inputs(&i);
        c.record_licence(Endpoint::Activate, &valid(T0), &i, &s, T0, &mut j());
        let mut hw = i.clone();
        hw.hardware_id = "b".repeat(64);
        c.apply_inputs(&hw);
        assert_eq!(
            c.due(&hw, T0).unwrap().at,
            T0,
            "a changed hardware_id checks at once"
        );
        // The portal is down: the retry must not be cut short by the still
        // changed hardware_id, however often the inputs are applied.
        c.record_licence(Endpoint::Activate, &failure(T0), &hw, &s, T0, &mut j());
        for _ in 0..3 {
            c.apply_inputs(&hw);
        }
        assert_eq!(c.due(&hw, T0).unwrap().at, T0.add(Duration::from_secs(15)));
        assert!(c.hardware_changed(&hw));
        // Unknown (no verdict) after a failure: a restart keeps the retry too.
        let mut fresh = Core::default();
        fresh.apply_inputs(&i);
        fresh.record_licence(Endpoint::Activate, &failure(T0), &i, &s, T0, &mut j());
        let text = serde_json::to_string(&fresh).unwrap();
        let mut back: Core = serde_json::from_str(&text).unwrap();
        back.apply_inputs(&i);
        assert_eq!(
            back.due(&i, T0).unwrap().at,
            T0.add(Duration::from_secs(15))
        );
    }

    #[test]
    fn inputs_that_change_while_a_request_is_out_are_checked_at_once() {
        let s = sched();
        let a = inputs();
        let mut b = a.clone();
        b.hardware_id = "b".repeat(64);
        let mut c = Core::default();
        c.apply_inputs(&a);
        c.record_licence(Endpoint::Activate, &valid(T0), &a, &s, T0, &mut j());
        // A request for `a` is out when the hardware changes to `b` ...
        c.apply_inputs(&b);
        // ... and its answer comes back afterwards.
        c.record_licence(Endpoint::Validate, &valid(T0), &a, &s, T0, &mut j());
        c.apply_inputs(&b);
        assert_eq!(
            c.due(&b, T0),
            Some(Due {
                endpoint: Endpoint::Activate,
                at: T0
            })
        );
        // The same for a key: the old key's verdict is not shown for the new one.
        let mut k2 = a.clone();
        k2.key_fingerprint = Some("k2".into());
        c.apply_inputs(&k2);
        c.record_licence(Endpoint::Validate, &valid(T0), &a, &s, T0, &mut j());
        c.apply_inputs(&k2);
        assert_eq!(c.license_state(&k2, &s, T0), LicenseState::Unknown);
        assert_eq!(c.due(&k2, T0).unwrap().at, T0);
    }

    #[test]
    fn a_new_configured_key_is_noticed_once() {
        let mut c = Core::default();
        assert!(!c.configured_key_changed(Some("a".into())), "first sight");
        assert!(!c.configured_key_changed(Some("a".into())));
        assert!(c.configured_key_changed(Some("b".into())));
        assert!(
            !c.configured_key_changed(None),
            "removing the key is no new key"
        );
        assert!(c.configured_key_changed(Some("c".into())));
    }

    #[test]
    fn deactivation_releases_everything() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        c.record_licence(Endpoint::Activate, &valid(T0), &i, &s, T0, &mut j());
        let ok = answer(
            Endpoint::Deactivate,
            200,
            r#"{"valid": false, "deactivated": true}"#,
            &[],
            T0,
        );
        c.record_deactivation(&ok, Some("k1".into()), &s, T0, &mut j());
        assert_eq!(c.licence.verdict, None);
        assert_eq!(c.licence.activated, None);
        assert_eq!(c.licence.deactivated_key.as_deref(), Some("k1"));
        let none = Inputs {
            key_fingerprint: None,
            hardware_id: i.hardware_id.clone(),
        };
        assert_eq!(c.license_state(&none, &s, T0), LicenseState::Unconfigured);
        // A refused deactivation changes nothing.
        let mut c2 = Core::default();
        c2.record_licence(Endpoint::Activate, &valid(T0), &i, &s, T0, &mut j());
        let no = answer(
            Endpoint::Deactivate,
            404,
            r#"{"code": "NOT_FOUND"}"#,
            &[],
            T0,
        );
        c2.record_deactivation(&no, Some("k1".into()), &s, T0, &mut j());
        assert_eq!(c2.license_state(&i, &s, T0), LicenseState::Active);
    }

    #[test]
    fn a_refused_candidate_key_leaves_the_licence_alone() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        c.record_licence(Endpoint::Activate, &valid(T0), &i, &s, T0, &mut j());
        let cand = Inputs {
            key_fingerprint: Some("k9".into()),
            hardware_id: i.hardware_id.clone(),
        };
        let no = answer(
            Endpoint::Activate,
            409,
            r#"{"code": "MAX_ACTIVATIONS"}"#,
            &[],
            T0,
        );
        c.record_candidate_activation(&no, &cand, &s, T0, &mut j());
        assert_eq!(c.license_state(&i, &s, T0), LicenseState::Active);
        c.record_candidate_activation(&valid(T0), &cand, &s, T0, &mut j());
        c.apply_inputs(&cand);
        assert_eq!(c.license_state(&cand, &s, T0), LicenseState::Active);
        let due = c.due(&cand, T0).unwrap();
        assert_eq!(due.endpoint, Endpoint::Validate);
        assert_eq!(
            due.at,
            T0.add(s.validate_interval),
            "no second request after activating"
        );
    }

    #[test]
    fn download_refusals_change_the_update_state_only() {
        let s = sched();
        let i = inputs();
        for (status, body, want) in [
            (
                403,
                r#"{"code": "UPDATES_EXPIRED"}"#,
                UpdateState::UpdatesExpired,
            ),
            (
                403,
                r#"{"code": "VERSION_TOO_LOW"}"#,
                UpdateState::VersionTooLow,
            ),
            (
                401,
                r#"{"error": "Invalid license"}"#,
                UpdateState::NotEntitled,
            ),
        ] {
            let mut c = Core::default();
            c.record_licence(Endpoint::Validate, &valid(T0), &i, &s, T0, &mut j());
            c.record_update(
                &answer(Endpoint::CheckUpdate, status, body, &[], T0),
                "1.4.2",
                &s,
                T0,
                &mut j(),
            );
            assert_eq!(c.update.state, want);
            assert_eq!(c.license_state(&i, &s, T0), LicenseState::Active);
            c.record_token(
                &answer(Endpoint::Token, status, body, &[], T0),
                &s,
                T0,
                &mut j(),
            );
            assert_eq!(c.license_state(&i, &s, T0), LicenseState::Active);
            assert_eq!(c.update_due(T0), Some(T0.add(s.update_check_interval)));
        }
        let mut c = Core::default();
        let up = answer(
            Endpoint::CheckUpdate,
            200,
            r#"{"update_available": true, "latest_version": "1.5.0", "changelog": "x"}"#,
            &[],
            T0,
        );
        c.record_update(&up, "1.4.2", &s, T0, &mut j());
        assert_eq!(c.update.state, UpdateState::Available);
        assert_eq!(c.update.latest_version.as_deref(), Some("1.5.0"));
        assert_eq!(c.update.current_version.as_deref(), Some("1.4.2"));
    }

    #[test]
    fn saved_state_round_trips() {
        let s = sched();
        let i = inputs();
        let mut c = Core::default();
        c.record_licence(Endpoint::Activate, &valid(T0), &i, &s, T0, &mut j());
        c.record_licence(Endpoint::Validate, &failure(T0), &i, &s, T0, &mut j());
        let text = serde_json::to_string_pretty(&c).unwrap();
        let back: Core = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn update_availability_compares_versions_when_both_parse() {
        let s = sched();
        // (portal flag, latest, current, expected state)
        let cases: [(bool, Option<&str>, &str, UpdateState); 9] = [
            // Our comparison overrides a wrong flag either way.
            (false, Some("1.10.0"), "1.9.2", UpdateState::Available),
            (true, Some("1.4.2"), "1.4.2", UpdateState::UpToDate),
            (true, Some("1.4.1"), "1.4.2", UpdateState::UpToDate),
            (true, Some("1.0.0-rc.1"), "1.0.0", UpdateState::UpToDate),
            (false, Some("v1.5"), "1.4.2", UpdateState::Available),
            (true, Some("1.5"), "1.5.0", UpdateState::UpToDate),
            // Either side unparsable: the portal's flag decides.
            (true, Some("latest"), "1.4.2", UpdateState::Available),
            (false, Some("1.5.0"), "dev-build", UpdateState::UpToDate),
            (true, None, "1.4.2", UpdateState::Available),
        ];
        for (flag, latest, current, want) in cases {
            let body = serde_json::json!({
                "update_available": flag,
                "latest_version": latest,
                "current_version": current,
            })
            .to_string();
            let mut c = Core::default();
            c.record_update(
                &answer(Endpoint::CheckUpdate, 200, &body, &[], T0),
                current,
                &s,
                T0,
                &mut j(),
            );
            assert_eq!(c.update.state, want, "{flag} {latest:?} {current}");
            assert_eq!(c.update.latest_version.as_deref(), latest);
            assert_eq!(c.update.current_version.as_deref(), Some(current));
        }
    }
}
