//! `GET /metrics`: Prometheus text format (version 0.0.4).

use crate::api::StatusDocument;
use std::fmt::Write;
use wispanel_core::{Endpoint, LicenseState, UpdateState};

const OUTCOMES: [&str; 8] = [
    "valid",
    "refused",
    "rate_limited",
    "timeout",
    "connect",
    "tls",
    "http",
    "malformed",
];

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// A gauge whose value may be unknown: written as `NaN` then, so that every
/// series SPEC names is always present (a comparison with NaN never fires an
/// alert, where 0 would look like "expired in 1970").
fn opt_gauge(out: &mut String, name: &str, help: &str, value: Option<i64>) {
    match value {
        Some(v) => gauge(out, name, help, v),
        None => gauge(out, name, help, "NaN"),
    }
}

/// Renders the metrics from the status document and the request counters.
pub fn render(doc: &StatusDocument, counters: &[((&'static str, &'static str), u64)]) -> String {
    let mut out = String::with_capacity(4096);
    let l = &doc.license;
    gauge(
        &mut out,
        "wispanel_license_licensed",
        "1 when the host is licensed (state active or grace).",
        u8::from(l.licensed),
    );
    let _ = writeln!(
        out,
        "# HELP wispanel_license_state 1 for the current licence state.\n# TYPE wispanel_license_state gauge"
    );
    for s in LicenseState::ALL {
        let _ = writeln!(
            out,
            "wispanel_license_state{{state=\"{}\"}} {}",
            s.as_str(),
            u8::from(s == l.state)
        );
    }
    opt_gauge(
        &mut out,
        "wispanel_license_expires_timestamp_seconds",
        "When the licence ends (unix seconds).",
        l.expires_at.map(|t| t.unix_secs()),
    );
    opt_gauge(
        &mut out,
        "wispanel_license_valid_until_timestamp_seconds",
        "How long the last validation may be trusted (unix seconds).",
        l.valid_until.map(|t| t.unix_secs()),
    );
    opt_gauge(
        &mut out,
        "wispanel_license_grace_until_timestamp_seconds",
        "When the licence lapses without a new valid verdict (unix seconds).",
        l.grace_until.map(|t| t.unix_secs()),
    );
    opt_gauge(
        &mut out,
        "wispanel_license_last_success_timestamp_seconds",
        "Last answer from the portal (unix seconds).",
        doc.portal.last_success_at.map(|t| t.unix_secs()),
    );
    gauge(
        &mut out,
        "wispanel_license_portal_consecutive_failures",
        "Portal requests failed in a row.",
        doc.portal.consecutive_failures,
    );
    gauge(
        &mut out,
        "wispanel_license_portal_rate_limited",
        "1 while the portal gate is closed.",
        u8::from(doc.portal.rate_limited_until.is_some()),
    );
    opt_gauge(
        &mut out,
        "wispanel_license_clock_skew_seconds",
        "Local clock minus the portal's Date at the last answer.",
        doc.portal.clock_skew_seconds,
    );
    let _ = writeln!(
        out,
        "# HELP wispanel_license_portal_requests_total Portal requests by endpoint and outcome.\n# TYPE wispanel_license_portal_requests_total counter"
    );
    for e in Endpoint::ALL {
        for o in OUTCOMES {
            let n = counters
                .iter()
                .find(|((ce, co), _)| *ce == e.as_str() && *co == o)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(
                out,
                "wispanel_license_portal_requests_total{{endpoint=\"{}\",outcome=\"{o}\"}} {n}",
                e.as_str()
            );
        }
    }
    gauge(
        &mut out,
        "wispanel_license_update_available",
        "1 when a newer release is available.",
        u8::from(doc.update.state == UpdateState::Available),
    );
    let _ = writeln!(
        out,
        "# HELP wispanel_license_update_state 1 for the current update state.\n# TYPE wispanel_license_update_state gauge"
    );
    for s in UpdateState::ALL {
        let _ = writeln!(
            out,
            "wispanel_license_update_state{{state=\"{}\"}} {}",
            s.as_str(),
            u8::from(s == doc.update.state)
        );
    }
    out
}
