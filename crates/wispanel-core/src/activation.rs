//! Activation in doubt (SPEC): an `activate` whose answer was lost (timeout,
//! reset, 5xx) may still have taken a seat on the portal, and sending it again
//! must not take a second one. One that never left (DNS failure, refused
//! connect, TLS handshake failure: [`crate::classify::Exchange::Unsent`]) puts nothing in doubt.
//!
//! The core keeps the activation's `Idempotency-Key` (a random UUID that the
//! shell makes; the core has no randomness) from before the first request
//! leaves until a verdict comes, so every retry of the activation of the same
//! key on the same hardware_id, across restarts, sends the same one. While an
//! activation is in doubt, a `MAX_ACTIVATIONS` or `HARDWARE_MISMATCH` refusal
//! of the retried `activate` is held: the next request is one `validate`,
//! whose answer is the verdict. `IDEMPOTENCY_KEY_CONFLICT` makes the next
//! retry use a new key; since a new key no longer protects the seat the
//! earlier request may hold (a portal may count every `activate`), one
//! `validate` goes first: valid settles it, anything else lets the retry go.
//!
//! The shell's flow: [`Core::due`] names the endpoint; for `activate`,
//! [`Core::activation_key_or`] gives the key (storing a fresh one when there
//! is none); the shell saves `state.json`, sends the request with the
//! `Idempotency-Key` header, and records the answer with
//! [`Core::record_licence`] as for any request.

use crate::classify::{Classified, Outcome};
use crate::machine::{Binding, Core, Inputs};
use crate::{Endpoint, LicenseState, Reason};
use serde::{Deserialize, Serialize};

/// The code of the answer to a reused `Idempotency-Key` with another body.
pub const IDEMPOTENCY_KEY_CONFLICT: &str = "IDEMPOTENCY_KEY_CONFLICT";

/// An activation the portal has given no verdict on yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingActivation {
    /// The key (by fingerprint) and hardware_id being activated.
    pub binding: Binding,
    /// The `Idempotency-Key` every retry sends; `None` after an
    /// `IDEMPOTENCY_KEY_CONFLICT`: the next try takes a new one.
    pub idempotency_key: Option<String>,
    /// Requests handed to the shell to send (each counted before it leaves).
    pub sent: u32,
    /// A request went out and no verdict came back: it may hold a seat.
    pub in_doubt: bool,
    /// The refusal of a retried `activate` while in doubt, held until one
    /// `validate` decides.
    pub confirming: Option<HeldRefusal>,
    /// After `IDEMPOTENCY_KEY_CONFLICT`: one `validate` before the retry
    /// with a new key.
    #[serde(default)]
    pub validate_first: bool,
}

/// A `MAX_ACTIVATIONS` or `HARDWARE_MISMATCH` that is not final yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRefusal {
    pub state: LicenseState,
    pub reason: Reason,
}

fn binding_of(inputs: &Inputs) -> Binding {
    Binding {
        key_fingerprint: inputs.key_fingerprint.clone().unwrap_or_default(),
        hardware_id: inputs.hardware_id.clone(),
    }
}

impl Core {
    /// The `Idempotency-Key` for an `activate` with `inputs` about to be
    /// sent: the saved one when the activation of this key on this
    /// hardware_id is still without a verdict, else `fresh()` (stored). The
    /// request is counted as sent from here on, so the caller must save the
    /// state before it sends.
    pub fn activation_key_or(&mut self, inputs: &Inputs, fresh: impl FnOnce() -> String) -> String {
        let binding = binding_of(inputs);
        let pending = match &mut self.licence.activation {
            Some(p) if p.binding == binding => p,
            other => other.insert(PendingActivation {
                binding,
                idempotency_key: None,
                sent: 0,
                in_doubt: false,
                confirming: None,
                validate_first: false,
            }),
        };
        // An earlier request for this activation went out and no verdict
        // came back (or the daemon died while it was out).
        if pending.sent > 0 {
            pending.in_doubt = true;
        }
        pending.sent = pending.sent.saturating_add(1);
        pending.idempotency_key.get_or_insert_with(fresh).clone()
    }

    /// Whether an activation of the key and hardware_id in force is in
    /// doubt (`portal.activation_in_doubt`, warning `activation_in_doubt`).
    pub fn activation_in_doubt(&self) -> bool {
        self.licence.activation.as_ref().is_some_and(|p| {
            p.in_doubt && self.licence.seen.as_ref().is_none_or(|b| *b == p.binding)
        })
    }

    /// The activation without a verdict, if any.
    pub fn pending_activation(&self) -> Option<&PendingActivation> {
        self.licence.activation.as_ref()
    }

    /// Whether the activation of `binding` waits for one `validate` (a held
    /// refusal, or a retry after a key conflict).
    pub(crate) fn confirming_activation(&self, binding: &Binding) -> bool {
        self.licence
            .activation
            .as_ref()
            .is_some_and(|p| p.binding == *binding && (p.confirming.is_some() || p.validate_first))
    }

    /// Applies an answer to the pending activation of `binding`. Returns the
    /// refusal to hold (not to record as a verdict) when the answer is a
    /// `MAX_ACTIVATIONS` or `HARDWARE_MISMATCH` to a retried `activate` in
    /// doubt; the next request is then one `validate`.
    pub(crate) fn settle_activation(
        &mut self,
        endpoint: Endpoint,
        c: &Classified,
        binding: Option<&Binding>,
    ) -> Option<HeldRefusal> {
        let b = binding?;
        let p = self
            .licence
            .activation
            .as_mut()
            .filter(|p| p.binding == *b)?;
        match (&c.outcome, endpoint) {
            (Outcome::Refused { state, reason }, Endpoint::Activate)
                if p.in_doubt
                    && matches!(
                        state,
                        LicenseState::MaxActivations | LicenseState::HardwareMismatch
                    ) =>
            {
                let held = HeldRefusal {
                    state: *state,
                    reason: reason.clone(),
                };
                p.confirming = Some(held.clone());
                return Some(held);
            }
            // The validate before a retry with a new key found no seat: the
            // retry goes, at once; its answer decides.
            (Outcome::Refused { state, reason }, Endpoint::Validate)
                if p.validate_first && p.confirming.is_none() =>
            {
                p.validate_first = false;
                return Some(HeldRefusal {
                    state: *state,
                    reason: reason.clone(),
                });
            }
            // A verdict (of the activate, or of the confirming validate).
            (Outcome::Valid(_) | Outcome::Refused { .. }, _) => {
                self.licence.activation = None;
            }
            // The request never left (DNS, refused connect, TLS handshake):
            // the portal cannot hold a seat for it. It does not count as
            // sent, and a doubt from an earlier request stays as it was.
            (Outcome::Failed(_), Endpoint::Activate) if c.unsent => {
                p.sent = p.sent.saturating_sub(1);
            }
            (Outcome::Failed(e), Endpoint::Activate) => {
                // A conflict means the portal did not take this request but
                // did see the key before, with another body: that earlier
                // request may hold a seat too. The next try takes a new key.
                if e.code.as_deref() == Some(IDEMPOTENCY_KEY_CONFLICT) {
                    p.idempotency_key = None;
                    p.validate_first = true;
                }
                p.in_doubt = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::classify::{BodyProblem, Exchange, classify};
    use crate::machine::Due;
    use crate::schedule::{FixedJitter, Schedule};
    use crate::timestamp::Timestamp;
    use std::time::Duration;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

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

    /// An answer to `endpoint`: a status and body, or (status 0) no answer at all.
    fn ans(endpoint: Endpoint, status: u16, body: &str) -> Classified {
        if status == 0 {
            return classify(
                endpoint,
                &Exchange::Failed {
                    kind: ErrorKind::Timeout,
                    message: "no answer".into(),
                },
                T0,
            );
        }
        let none = |_: &str| None;
        classify(
            endpoint,
            &Exchange::Answer {
                status,
                header: &none,
                body: body.as_bytes(),
                body_problem: None,
            },
            T0,
        )
    }

    const VALID: (u16, &str) = (200, r#"{"valid": true, "license": {"tier": "pro"}}"#);
    const MAX: (u16, &str) = (409, r#"{"valid": false, "code": "MAX_ACTIVATIONS"}"#);
    const MISMATCH: (u16, &str) = (403, r#"{"valid": false, "code": "HARDWARE_MISMATCH"}"#);
    const CONFLICT: (u16, &str) = (409, r#"{"code": "IDEMPOTENCY_KEY_CONFLICT"}"#);
    const LOST: (u16, &str) = (0, "");

    /// Sends one `activate` the way the daemon does: take the key, "send",
    /// record. Returns the Idempotency-Key sent.
    fn activate(c: &mut Core, answer: (u16, &str), fresh: &str) -> String {
        let i = inputs();
        let key = c.activation_key_or(&i, || fresh.to_string());
        let a = ans(Endpoint::Activate, answer.0, answer.1);
        c.record_licence(
            Endpoint::Activate,
            &a,
            &i,
            &sched(),
            T0,
            &mut FixedJitter(0.0),
        );
        key
    }

    fn record(c: &mut Core, endpoint: Endpoint, answer: (u16, &str)) {
        let a = ans(endpoint, answer.0, answer.1);
        c.record_licence(endpoint, &a, &inputs(), &sched(), T0, &mut FixedJitter(0.0));
    }

    /// A core whose first `activate` (key "uuid-1") got no verdict.
    fn in_doubt() -> Core {
        let mut c = Core::default();
        c.apply_inputs(&inputs());
        assert_eq!(activate(&mut c, LOST, "uuid-1"), "uuid-1");
        assert!(c.activation_in_doubt());
        c
    }

    fn state(c: &Core) -> LicenseState {
        c.license_state(&inputs(), &sched(), T0)
    }

    fn due(c: &Core) -> Due {
        c.due(&inputs(), T0).expect("a key is configured")
    }

    #[test]
    fn the_key_is_kept_until_a_verdict_and_reused_by_every_retry() {
        let mut c = Core::default();
        let i = inputs();
        assert!(!c.activation_in_doubt());
        // Taken, counted as sent, not in doubt while only the first is out.
        assert_eq!(c.activation_key_or(&i, || "uuid-1".into()), "uuid-1");
        assert!(!c.activation_in_doubt());
        // The daemon dies here (kill -9): what was saved is what comes back.
        let saved = serde_json::to_string(&c).unwrap();
        let mut c: Core = serde_json::from_str(&saved).unwrap();
        assert_eq!(c.activation_key_or(&i, || "uuid-2".into()), "uuid-1");
        assert!(
            c.activation_in_doubt(),
            "the first request may have gone out"
        );
        record(&mut c, Endpoint::Activate, LOST);
        record(
            &mut c,
            Endpoint::Activate,
            (503, r#"{"code": "INTERNAL_ERROR"}"#),
        );
        assert_eq!(c.activation_key_or(&i, || "uuid-3".into()), "uuid-1");
        assert_eq!(c.pending_activation().unwrap().sent, 3);
        // A verdict forgets it: the next activation takes a new key.
        record(&mut c, Endpoint::Activate, VALID);
        assert_eq!(c.pending_activation(), None);
        assert!(!c.activation_in_doubt());
        assert_eq!(c.activation_key_or(&i, || "uuid-4".into()), "uuid-4");
        // Another key or hardware_id is another activation.
        let mut other = i.clone();
        other.hardware_id = "b".repeat(64);
        assert_eq!(c.activation_key_or(&other, || "uuid-5".into()), "uuid-5");
    }

    /// Each way an `activate` can fail × whether it leaves the activation
    /// in doubt (SPEC revision 3: one that never reached the portal puts
    /// nothing in doubt), first try and twice in a row; a doubt raised
    /// earlier stays through a later failure that never left.
    #[test]
    fn in_doubt_only_when_the_activate_may_have_reached_the_portal() {
        let none = |_: &str| None;
        let unsent = |kind: ErrorKind| {
            classify(
                Endpoint::Activate,
                &Exchange::Unsent {
                    kind,
                    message: "never left".into(),
                },
                T0,
            )
        };
        let maybe = |kind: ErrorKind| {
            classify(
                Endpoint::Activate,
                &Exchange::Failed {
                    kind,
                    message: "may have left".into(),
                },
                T0,
            )
        };
        let status = |status: u16, body: &str| {
            classify(
                Endpoint::Activate,
                &Exchange::Answer {
                    status,
                    header: &none,
                    body: body.as_bytes(),
                    body_problem: None,
                },
                T0,
            )
        };
        let cut = |problem: BodyProblem| {
            classify(
                Endpoint::Activate,
                &Exchange::Answer {
                    status: 200,
                    header: &none,
                    body: b"{\"val",
                    body_problem: Some(problem),
                },
                T0,
            )
        };
        // (failure, kind reported, in doubt after it)
        let rows: Vec<(&str, Classified, ErrorKind, bool)> = vec![
            (
                "DNS failure",
                unsent(ErrorKind::Connect),
                ErrorKind::Connect,
                false,
            ),
            (
                "connection refused",
                unsent(ErrorKind::Connect),
                ErrorKind::Connect,
                false,
            ),
            (
                "connect timeout",
                unsent(ErrorKind::Timeout),
                ErrorKind::Timeout,
                false,
            ),
            (
                "TLS handshake",
                unsent(ErrorKind::Tls),
                ErrorKind::Tls,
                false,
            ),
            (
                "proxy 407",
                unsent(ErrorKind::Connect),
                ErrorKind::Connect,
                false,
            ),
            (
                "timeout after sending",
                maybe(ErrorKind::Timeout),
                ErrorKind::Timeout,
                true,
            ),
            (
                "reset after sending",
                maybe(ErrorKind::Connect),
                ErrorKind::Connect,
                true,
            ),
            (
                "TLS alert after sending",
                maybe(ErrorKind::Tls),
                ErrorKind::Tls,
                true,
            ),
            (
                "500",
                status(500, r#"{"code": "INTERNAL_ERROR"}"#),
                ErrorKind::Http,
                true,
            ),
            (
                "502 from a proxy",
                status(502, "<html>bad gateway</html>"),
                ErrorKind::Http,
                true,
            ),
            ("503", status(503, ""), ErrorKind::Http, true),
            (
                "200 text/html",
                status(200, "<html>login</html>"),
                ErrorKind::Malformed,
                true,
            ),
            (
                "body cut",
                cut(BodyProblem::Cut("reset".into())),
                ErrorKind::Malformed,
                true,
            ),
            (
                "body timed out",
                cut(BodyProblem::TimedOut),
                ErrorKind::Timeout,
                true,
            ),
        ];
        for (what, answer, kind, doubt) in rows {
            assert!(
                matches!(&answer.outcome, Outcome::Failed(e) if e.kind == kind),
                "{what}: {:?}",
                answer.outcome
            );
            let i = inputs();
            let mut c = Core::default();
            c.apply_inputs(&i);
            for attempt in 1..=2 {
                let key = c.activation_key_or(&i, || format!("uuid-{attempt}"));
                assert_eq!(key, "uuid-1", "{what}: the key is kept until a verdict");
                c.record_licence(
                    Endpoint::Activate,
                    &answer,
                    &i,
                    &sched(),
                    T0,
                    &mut FixedJitter(0.0),
                );
                assert_eq!(c.activation_in_doubt(), doubt, "{what}, attempt {attempt}");
                let sent = c.pending_activation().map_or(0, |p| p.sent);
                assert_eq!(
                    sent,
                    if doubt { attempt } else { 0 },
                    "{what}, attempt {attempt}"
                );
            }
        }
        // In doubt after a lost answer; a later refused connect keeps it so.
        let mut c = in_doubt();
        let i = inputs();
        assert_eq!(c.activation_key_or(&i, || "uuid-2".into()), "uuid-1");
        c.record_licence(
            Endpoint::Activate,
            &unsent(ErrorKind::Connect),
            &i,
            &sched(),
            T0,
            &mut FixedJitter(0.0),
        );
        assert!(c.activation_in_doubt(), "the first request may hold a seat");
        assert_eq!(c.pending_activation().map(|p| p.sent), Some(1));
    }

    #[test]
    fn in_doubt_each_answer_to_the_retried_activate() {
        use LicenseState as S;
        // (answer, state after, next endpoint, at once?, still pending, key of the next try)
        type Row = ((u16, &'static str), S, Endpoint, bool, bool, &'static str);
        let rows: [Row; 12] = [
            (VALID, S::Active, Endpoint::Validate, false, false, "new"),
            (MAX, S::Unknown, Endpoint::Validate, true, true, "uuid-1"),
            (
                MISMATCH,
                S::Unknown,
                Endpoint::Validate,
                true,
                true,
                "uuid-1",
            ),
            (
                (403, r#"{"code": "EXPIRED"}"#),
                S::Expired,
                Endpoint::Activate,
                false,
                false,
                "new",
            ),
            (
                (403, r#"{"code": "SUSPENDED"}"#),
                S::Suspended,
                Endpoint::Activate,
                false,
                false,
                "new",
            ),
            (
                (403, r#"{"code": "REVOKED"}"#),
                S::Revoked,
                Endpoint::Activate,
                false,
                false,
                "new",
            ),
            (
                (404, r#"{"code": "INVALID_KEY"}"#),
                S::InvalidKey,
                Endpoint::Activate,
                false,
                false,
                "new",
            ),
            (
                (401, r#"{"error": "Invalid license"}"#),
                S::InvalidKey,
                Endpoint::Activate,
                false,
                false,
                "new",
            ),
            (
                (500, r#"{"code": "INTERNAL_ERROR"}"#),
                S::Unknown,
                Endpoint::Activate,
                false,
                true,
                "uuid-1",
            ),
            (LOST, S::Unknown, Endpoint::Activate, false, true, "uuid-1"),
            (
                (429, r#"{"code": "RATE_LIMITED"}"#),
                S::Unknown,
                Endpoint::Activate,
                false,
                true,
                "uuid-1",
            ),
            (CONFLICT, S::Unknown, Endpoint::Validate, false, true, "new"),
        ];
        for (answer, want, next, at_once, pending, key) in rows {
            let mut c = in_doubt();
            assert_eq!(activate(&mut c, answer, "new"), "uuid-1", "{answer:?}");
            assert_eq!(state(&c), want, "{answer:?}");
            let d = due(&c);
            assert_eq!(d.endpoint, next, "{answer:?}");
            assert_eq!(d.at == T0, at_once, "{answer:?}: next at {}", d.at);
            assert_eq!(c.pending_activation().is_some(), pending, "{answer:?}");
            assert_eq!(c.activation_in_doubt(), pending, "{answer:?}");
            if pending || next == Endpoint::Activate {
                let k = c.activation_key_or(&inputs(), || "new".into());
                assert_eq!(k, key, "{answer:?}");
            }
        }
    }

    #[test]
    fn in_doubt_the_one_validate_decides() {
        use LicenseState as S;
        // (held refusal, validate answer, state after, activated, next endpoint)
        type Row = ((u16, &'static str), (u16, &'static str), S, bool, Endpoint);
        let suspended = (403, r#"{"code": "SUSPENDED"}"#);
        let down = (503, r#"{"code": "INTERNAL_ERROR"}"#);
        let rows: [Row; 8] = [
            (MAX, VALID, S::Active, true, Endpoint::Validate),
            (MISMATCH, VALID, S::Active, true, Endpoint::Validate),
            (
                MAX,
                MISMATCH,
                S::HardwareMismatch,
                false,
                Endpoint::Activate,
            ),
            (
                MISMATCH,
                MISMATCH,
                S::HardwareMismatch,
                false,
                Endpoint::Activate,
            ),
            (MAX, MAX, S::MaxActivations, false, Endpoint::Activate),
            (MAX, suspended, S::Suspended, false, Endpoint::Activate),
            // No verdict: the validate is retried, the refusal still held.
            (MAX, down, S::Unknown, false, Endpoint::Validate),
            (MAX, LOST, S::Unknown, false, Endpoint::Validate),
        ];
        for (held, answer, want, activated, next) in rows {
            let mut c = in_doubt();
            activate(&mut c, held, "new");
            assert_eq!(due(&c).endpoint, Endpoint::Validate);
            record(&mut c, Endpoint::Validate, answer);
            assert_eq!(state(&c), want, "{held:?} then {answer:?}");
            let is_activated = c.licence.activated.is_some();
            assert_eq!(is_activated, activated, "{held:?} then {answer:?}");
            let d = due(&c);
            assert_eq!(d.endpoint, next, "{held:?} then {answer:?}");
            let decided = answer != down && answer != LOST;
            assert_eq!(c.pending_activation().is_none(), decided);
            if decided {
                // A verdict: the next check is at the normal interval, and a
                // later activation takes a new key.
                assert_eq!(d.at, T0.add(sched().validate_interval));
                assert_eq!(c.activation_key_or(&inputs(), || "new".into()), "new");
            } else {
                assert!(c.activation_in_doubt());
                assert!(d.at > T0, "a failed validate backs off");
            }
        }
    }

    #[test]
    fn not_in_doubt_a_refusal_is_final_at_once() {
        use LicenseState as S;
        for (answer, want) in [
            (MAX, S::MaxActivations),
            (MISMATCH, S::HardwareMismatch),
            ((403, r#"{"code": "EXPIRED"}"#), S::Expired),
        ] {
            let mut c = Core::default();
            c.apply_inputs(&inputs());
            assert_eq!(activate(&mut c, answer, "uuid-1"), "uuid-1");
            assert_eq!(state(&c), want);
            assert_eq!(c.pending_activation(), None);
            assert!(!c.activation_in_doubt());
            // The next check, at the normal interval, activates again with a new key.
            let d = due(&c);
            assert_eq!(
                (d.endpoint, d.at),
                (Endpoint::Activate, T0.add(sched().validate_interval))
            );
            assert_eq!(c.activation_key_or(&inputs(), || "uuid-2".into()), "uuid-2");
        }
    }

    #[test]
    fn after_a_conflict_one_validate_then_the_retry_with_a_new_key() {
        let mut c = Core::default();
        c.apply_inputs(&inputs());
        assert_eq!(activate(&mut c, CONFLICT, "uuid-1"), "uuid-1");
        assert!(c.activation_in_doubt(), "the portal saw this key before");
        // The validate first; a seat held: active, settled.
        let mut held = c.clone();
        assert_eq!(due(&held).endpoint, Endpoint::Validate);
        record(&mut held, Endpoint::Validate, VALID);
        assert_eq!(state(&held), LicenseState::Active);
        assert_eq!(held.pending_activation(), None);
        // No seat: not a verdict yet; the retry with a new key goes at once.
        record(&mut c, Endpoint::Validate, MISMATCH);
        assert_eq!(state(&c), LicenseState::Unknown);
        let d = due(&c);
        assert_eq!((d.endpoint, d.at), (Endpoint::Activate, T0));
        // Still in doubt, so a MAX_ACTIVATIONS is held for one more validate.
        assert_eq!(activate(&mut c, MAX, "uuid-2"), "uuid-2");
        assert_eq!(due(&c).endpoint, Endpoint::Validate, "held, not final");
        record(&mut c, Endpoint::Validate, MISMATCH);
        assert_eq!(state(&c), LicenseState::HardwareMismatch);
        assert_eq!(c.pending_activation(), None);
    }

    #[test]
    fn doubt_about_other_inputs_is_not_shown_and_a_changed_input_starts_afresh() {
        let mut c = in_doubt();
        let mut other = inputs();
        other.hardware_id = "b".repeat(64);
        c.apply_inputs(&other);
        assert!(
            !c.activation_in_doubt(),
            "the doubt is about the old hardware_id"
        );
        // A refusal for the new hardware_id is final at once.
        let k = c.activation_key_or(&other, || "uuid-9".into());
        assert_eq!(k, "uuid-9");
        let a = ans(Endpoint::Activate, MAX.0, MAX.1);
        c.record_licence(
            Endpoint::Activate,
            &a,
            &other,
            &sched(),
            T0,
            &mut FixedJitter(0.0),
        );
        assert_eq!(
            c.license_state(&other, &sched(), T0),
            LicenseState::MaxActivations
        );
    }

    #[test]
    fn a_candidate_key_in_doubt_is_decided_by_one_validate() {
        let s = sched();
        let cand = Inputs {
            key_fingerprint: Some("k9".into()),
            hardware_id: "a".repeat(64),
        };
        let j = &mut FixedJitter(0.0);
        for (validate, active) in [(VALID, true), (MISMATCH, false)] {
            let mut c = Core::default();
            c.apply_inputs(&inputs());
            let a = |x: (u16, &str)| ans(Endpoint::Activate, x.0, x.1);
            assert_eq!(c.activation_key_or(&cand, || "uuid-1".into()), "uuid-1");
            assert!(!c.record_candidate(Endpoint::Activate, &a(LOST), &cand, &s, T0, j));
            assert_eq!(c.activation_key_or(&cand, || "uuid-2".into()), "uuid-1");
            assert!(
                c.record_candidate(Endpoint::Activate, &a(MAX), &cand, &s, T0, j),
                "held: one validate decides"
            );
            let v = ans(Endpoint::Validate, validate.0, validate.1);
            assert!(!c.record_candidate(Endpoint::Validate, &v, &cand, &s, T0, j));
            assert_eq!(c.pending_activation(), None);
            let st = c.license_state(&cand, &s, T0);
            assert_eq!(st == LicenseState::Active, active, "{validate:?}");
        }
    }

    #[test]
    fn a_state_without_the_field_loads() {
        let old = r#"{"licence": {"verdict": null, "verdict_binding": null,
            "activated": null, "deactivated_key": null},
            "update": {"state": "unknown", "current_version": null, "latest_version": null,
            "changelog": null, "checked_at": null, "reason": null},
            "portal": {"last_attempt_at": null, "last_success_at": null, "last_error": null,
            "consecutive_failures": 0, "rate_limited_until": null, "clock_skew_seconds": null},
            "plan": {"next_validate_at": null, "next_update_check_at": null}}"#;
        let c: Core = serde_json::from_str(old).unwrap();
        assert_eq!(c.pending_activation(), None);
        assert_eq!(c.update.failed_checks, 0);
        let mut c = in_doubt();
        activate(&mut c, MAX, "x");
        let back: Core = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(due(&back).endpoint, Endpoint::Validate);
    }
}
