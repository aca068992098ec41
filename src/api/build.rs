//! Builds the status document from the core (the daemon's side of [`super`]).

use super::*;
use wispanel_core::machine::{Core, Inputs, Verdict};
use wispanel_core::warnings;

/// What the status document is built from besides the core.
pub struct StatusInputs<'a> {
    pub daemon: &'a DaemonInfo,
    /// The schedule in force (the configuration's `[schedule]`).
    pub schedule: &'a wispanel_core::schedule::Schedule,
    pub inputs: &'a Inputs,
    /// The masked key in use.
    pub masked_key: Option<String>,
    /// `None` when the hardware_id cannot be computed now.
    pub hardware_id: Option<&'a str>,
    /// The version the daemon runs against (for `update.current_version`
    /// before the first update check).
    pub product_version: Option<String>,
    /// `portal.proxy`: [`crate::net::proxy::ProxyChoice::shown`] of the
    /// portal client's decision.
    pub proxy: Option<String>,
    /// The configuration's `warn_before_expiry`.
    pub warn_before_expiry: std::time::Duration,
    /// When the current run of failed saves of `state.json` or failed
    /// appends to the history began (the earlier of the two), if one is on.
    pub state_not_saved_since: Option<Timestamp>,
}

impl StatusInputs<'_> {
    /// What the `warnings` are computed from at `now`; the daemon also asks
    /// it when the list next changes by itself.
    pub fn warning_facts(&self, core: &Core, now: Timestamp) -> warnings::Facts {
        let ctx = warnings::Context {
            warn_before_expiry: self.warn_before_expiry,
            hardware_known: self.hardware_id.is_some(),
            state_not_saved_since: self.state_not_saved_since,
        };
        warnings::Facts::from_core(core, self.inputs, self.schedule, now, &ctx)
    }
}

impl StatusDocument {
    /// Builds the document from the core at `now`, and gives the warning
    /// facts it was built from (the daemon asks them when the warnings next
    /// change by themselves: computed once for both).
    pub fn build(
        core: &Core,
        si: &StatusInputs<'_>,
        now: Timestamp,
    ) -> (StatusDocument, warnings::Facts) {
        let facts = si.warning_facts(core, now);
        let s = si.schedule;
        let state = core.license_state(si.inputs, s, now);
        let (details, reason, checked_at) = match &core.licence.verdict {
            Some(Verdict::Valid { at, details, .. }) if state != LicenseState::Unconfigured => {
                (Some(details), None, Some(*at))
            }
            Some(Verdict::Refused { at, reason, .. }) if state != LicenseState::Unconfigured => {
                (None, Some(reason.clone()), Some(*at))
            }
            _ => (None, None, None),
        };
        let limits = details.and_then(|d| {
            (d.max_users.is_some() || d.max_domains.is_some() || d.max_databases.is_some())
                .then_some(Limits {
                    max_users: d.max_users,
                    max_domains: d.max_domains,
                    max_databases: d.max_databases,
                })
        });
        let grace_until = match state {
            LicenseState::Active | LicenseState::Grace | LicenseState::Lapsed => {
                core.grace_until(s)
            }
            _ => None,
        };
        let configured = si.inputs.key_fingerprint.is_some();
        let doc = StatusDocument {
            schema_version: SCHEMA_VERSION,
            daemon: si.daemon.clone(),
            hardware_id: si.hardware_id.map(str::to_string),
            hardware_changed: si.hardware_id.is_some() && core.hardware_changed(si.inputs),
            license: LicenseView {
                state,
                licensed: state.licensed(),
                key: si.masked_key.clone(),
                tier: details.and_then(|d| d.tier.clone()),
                expires_at: details.and_then(|d| d.expires_at),
                valid_until: details.and_then(|d| d.valid_until),
                limits,
                reason,
                checked_at,
                grace_until,
            },
            update: UpdateView {
                state: core.update.state,
                current_version: core
                    .update
                    .current_version
                    .clone()
                    .or(si.product_version.clone()),
                latest_version: core.update.latest_version.clone(),
                changelog: core.update.changelog.clone(),
                checked_at: core.update.checked_at,
            },
            portal: PortalView {
                last_attempt_at: core.portal.last_attempt_at,
                last_success_at: core.portal.last_success_at,
                last_error: core.portal.last_error.clone(),
                consecutive_failures: core.portal.consecutive_failures,
                next_validate_at: if configured {
                    core.due(si.inputs, now).map(|d| d.at)
                } else {
                    None
                },
                next_update_check_at: core.update_due(now),
                rate_limited_until: core.gate_closed_until(now),
                clock_skew_seconds: core.portal.clock_skew_seconds,
                proxy: si.proxy.clone(),
                activation_in_doubt: core.activation_in_doubt(),
            },
            warnings: warnings::warnings(&facts, now),
        };
        (doc.whole_seconds(), facts)
    }

    /// The same document with every time rounded down to the second, as SPEC's
    /// examples show them (`state.json` keeps milliseconds).
    fn whole_seconds(mut self) -> StatusDocument {
        fn t(x: &mut Option<Timestamp>) {
            *x = x.map(Timestamp::whole_seconds);
        }
        self.daemon.started_at = self.daemon.started_at.whole_seconds();
        let l = &mut self.license;
        for x in [
            &mut l.expires_at,
            &mut l.valid_until,
            &mut l.checked_at,
            &mut l.grace_until,
        ] {
            t(x);
        }
        t(&mut self.update.checked_at);
        let p = &mut self.portal;
        for x in [
            &mut p.last_attempt_at,
            &mut p.last_success_at,
            &mut p.next_validate_at,
            &mut p.next_update_check_at,
            &mut p.rate_limited_until,
        ] {
            t(x);
        }
        self
    }
}
