//! The property of SPEC's "Activation in doubt", checked against the
//! simulator's portal model in memory, with the daemon's own core deciding
//! every request: whatever the sequence of lost and answered activations
//! (and of daemon restarts between saving the `Idempotency-Key` and hearing
//! back), one host never holds more than one seat, and once the portal
//! answers again it ends `active` on exactly one.

use crate::portal::{Incoming, Plan, SimulatedPortal};
use crate::scenario::{Scenario, ScriptedAnswer, keys};
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;
use wispanel_core::classify::{Classified, Exchange, classify};
use wispanel_core::machine::{Core, Inputs};
use wispanel_core::schedule::{Schedule, SeededJitter};
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{Endpoint, ErrorKind, LicenseState};

const HW: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const T0: Timestamp = Timestamp(1_800_000_000_000);

/// What happens to one request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The portal answers normally.
    Answered,
    /// The portal does its work, the connection drops before the status line.
    LostAfterCommit,
    /// The connection drops before the portal does anything.
    LostBeforeCommit,
    /// The portal does its work, then a gateway answers 503.
    Committed503,
    /// A 503 before the portal does anything.
    Plain503,
    /// The portal does its work; the daemon is killed before the answer.
    CommittedThenKilled,
    /// The daemon is killed after saving the key, before the request leaves.
    KilledBeforeSending,
    /// 409 `IDEMPOTENCY_KEY_CONFLICT`.
    Conflict,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::Answered),
        Just(Fault::LostAfterCommit),
        Just(Fault::LostBeforeCommit),
        Just(Fault::Committed503),
        Just(Fault::Plain503),
        Just(Fault::CommittedThenKilled),
        Just(Fault::KilledBeforeSending),
        Just(Fault::Conflict),
    ]
}

/// The portal's modes: (ignores the header, counts every activate, seat
/// limit, seats other hosts hold). A portal that both ignores the header and
/// counts every activate cannot be kept from giving a retried activate a
/// second seat by any client; there the limit is 1, so the retry is refused
/// and the one validate must still find the host's seat.
fn modes() -> impl Strategy<Value = (bool, bool, usize, usize)> {
    (any::<bool>(), any::<bool>(), 1usize..=3).prop_flat_map(|(ignore, every, limit)| {
        let limit = if ignore && every { 1 } else { limit };
        (Just(ignore), Just(every), Just(limit), 0..limit)
    })
}

fn scripted(f: Fault) -> Option<ScriptedAnswer> {
    Some(match f {
        Fault::Answered | Fault::CommittedThenKilled | Fault::KilledBeforeSending => return None,
        Fault::LostAfterCommit => ScriptedAnswer::lost(),
        Fault::LostBeforeCommit => ScriptedAnswer::drop_connection(),
        Fault::Committed503 => ScriptedAnswer::committed_then_status(503),
        Fault::Plain503 => ScriptedAnswer::json(503, json!({"code": "INTERNAL_ERROR"})),
        Fault::Conflict => ScriptedAnswer::json(
            409,
            json!({"valid": false, "code": "IDEMPOTENCY_KEY_CONFLICT"}),
        ),
    })
}

/// What the client's classifier makes of the portal's plan.
fn classified(endpoint: Endpoint, plan: Plan, now: Timestamp) -> Classified {
    match plan {
        Plan::Drop { .. } | Plan::Stall { .. } => classify(
            endpoint,
            &Exchange::Failed {
                kind: ErrorKind::Connect,
                message: "connection closed before the status line".into(),
            },
            now,
        ),
        Plan::Reply(r) => {
            let headers = r.headers.clone();
            let header = move |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            classify(
                endpoint,
                &Exchange::Answer {
                    status: r.status,
                    header: &header,
                    body: r.body.as_bytes().unwrap_or_default(),
                    body_problem: None,
                },
                now,
            )
        }
    }
}

struct Run {
    portal: SimulatedPortal,
    core: Core,
    saved: String,
    inputs: Inputs,
    schedule: Schedule,
    jitter: SeededJitter,
    now: Timestamp,
    uuids: u32,
    max_seats_seen: usize,
    activates: u32,
}

impl Run {
    /// One licence request as the daemon makes it, with `fault` applied.
    fn step(&mut self, fault: Fault) {
        let Some(due) = self.core.due(&self.inputs, self.now) else {
            panic!("a key is configured");
        };
        self.now = self.now.max(due.at);
        let endpoint = due.endpoint;
        let idem = (endpoint == Endpoint::Activate).then(|| {
            let uuids = &mut self.uuids;
            self.core.activation_key_or(&self.inputs, || {
                *uuids += 1;
                format!("uuid-{uuids}")
            })
        });
        // Saved before the request leaves.
        self.saved = serde_json::to_string(&self.core).expect("the core serialises");
        if matches!(fault, Fault::KilledBeforeSending) {
            self.restart();
            return;
        }
        if let Some(a) = scripted(fault) {
            self.portal.push_answers(endpoint.into(), vec![a]);
        }
        if endpoint == Endpoint::Activate {
            self.activates += 1;
        }
        let body = json!({"license_key": keys::GOOD, "hardware_id": HW, "hostname": "h",
                          "product_version": "1.4.2"})
        .to_string();
        let plan = self.portal.answer(
            &Incoming {
                method: "POST",
                path: endpoint.path(),
                query: None,
                authorization: None,
                idempotency_key: idem.as_deref(),
                body: body.as_bytes(),
            },
            self.now,
        );
        self.max_seats_seen = self
            .max_seats_seen
            .max(self.portal.seats_of(keys::GOOD, HW));
        if matches!(fault, Fault::CommittedThenKilled) {
            self.restart();
            return;
        }
        let c = classified(endpoint, plan, self.now);
        self.core.record_licence(
            endpoint,
            &c,
            &self.inputs,
            &self.schedule,
            self.now,
            &mut self.jitter,
        );
        self.core.expire_gate(self.now);
        self.now = self.now.add(Duration::from_secs(1));
    }

    /// kill -9 and start again from what was saved.
    fn restart(&mut self) {
        self.core = serde_json::from_str(&self.saved).expect("the saved state loads");
        self.core.apply_inputs(&self.inputs);
        self.now = self.now.add(Duration::from_secs(5));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn one_host_never_holds_more_than_one_seat(
        (ignore, every, limit, others) in modes(),
        faults in proptest::collection::vec(fault(), 0..12),
        seed in any::<u64>(),
    ) {
        let scenario = Scenario {
            ignore_idempotency_key: ignore,
            activate_counts_every_request: every,
            max_activations: limit,
            ..Scenario::default()
        };
        let mut portal = SimulatedPortal::new(scenario, "http://127.0.0.1:1".into(), T0);
        // Other hosts hold some of the seats.
        for i in 0..others {
            let hw = format!("{i}").repeat(64);
            let body = json!({"license_key": keys::GOOD, "hardware_id": hw}).to_string();
            portal.answer(
                &Incoming {
                    method: "POST",
                    path: Endpoint::Activate.path(),
                    query: None,
                    authorization: None,
                    idempotency_key: None,
                    body: body.as_bytes(),
                },
                T0,
            );
        }
        prop_assert_eq!(portal.seats(keys::GOOD), others);
        let inputs = Inputs { key_fingerprint: Some("good".into()), hardware_id: HW.into() };
        let mut core = Core::default();
        core.apply_inputs(&inputs);
        let mut run = Run {
            portal,
            saved: serde_json::to_string(&core).expect("serialises"),
            core,
            inputs,
            schedule: Schedule::default(),
            jitter: SeededJitter(seed),
            now: T0,
            uuids: 0,
            max_seats_seen: 0,
            activates: 0,
        };
        for f in faults {
            run.step(f);
            prop_assert!(run.max_seats_seen <= 1, "{} seats after {f:?}", run.max_seats_seen);
        }
        // The portal answers again: the host ends active on its one seat.
        for _ in 0..4 {
            run.step(Fault::Answered);
        }
        let state = run.core.license_state(&run.inputs, &run.schedule, run.now);
        prop_assert_eq!(state, LicenseState::Active);
        prop_assert_eq!(run.portal.seats_of(keys::GOOD, HW), 1);
        prop_assert!(run.max_seats_seen <= 1);
        prop_assert!(!run.core.activation_in_doubt());
        prop_assert!(run.activates >= 1);
    }
}
