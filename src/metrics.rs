//! The Prometheus exposition (text format 0.0.4) of the status document and
//! the portal request counters: what `GET /metrics` answers and what the
//! daemon writes to `metrics_textfile` for node_exporter's textfile collector.
//!
//! Hand-written on purpose. Every value is read from the status document at
//! the moment of rendering, so there is no registry of live metric objects to
//! keep in step with it, which is what client libraries such as
//! `prometheus-client` are built around; that crate also writes OpenMetrics
//! (a counter's `# TYPE` without `_total`, a closing `# EOF`), which
//! node_exporter's textfile collector reads less kindly than the classic
//! format. The label values are fixed names (states, endpoints, codes), so no
//! escaping is needed. `tests/socket.rs` parses the output, and `tests/cli.rs`
//! runs `promtool check metrics` on it where promtool is installed.

use crate::api::StatusDocument;
use crate::fair::{Figures, Refusal};
use std::fmt::Write;
use wispanel_core::warnings::WarningCode;
use wispanel_core::{Endpoint, ErrorKind, LicenseState, UpdateState};

/// The `outcome` label of `wispanel_license_portal_requests_total`: the
/// core's [`wispanel_core::classify::Outcome::metric_label`], an answer
/// (`valid`, `refused`) or one per [`ErrorKind`].
pub const OUTCOMES: [&str; 2 + ErrorKind::ALL.len()] = {
    let mut out = ["valid"; 2 + ErrorKind::ALL.len()];
    out[1] = "refused";
    let mut i = 0;
    while i < ErrorKind::ALL.len() {
        out[2 + i] = ErrorKind::ALL[i].as_str();
        i += 1;
    }
    out
};

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
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

/// A gauge with one series per label value: 1 for those `on` says, else 0.
/// Every value is always written, so an alert rule can say `== 1` and a
/// missing series means a missing daemon, never a quiet one.
fn one_hot<T: Copy>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    all: &[T],
    as_str: impl Fn(T) -> &'static str,
    on: impl Fn(T) -> bool,
) {
    header(out, name, "gauge", help);
    for v in all {
        let _ = writeln!(
            out,
            "{name}{{{label}=\"{}\"}} {}",
            as_str(*v),
            u8::from(on(*v))
        );
    }
}

/// Renders the metrics from the status document, the request counters
/// (`((endpoint, outcome), count)`) and the socket's fair-use figures.
pub fn render(
    doc: &StatusDocument,
    counters: &[((&'static str, &'static str), u64)],
    socket: &Figures,
) -> String {
    let mut out = String::with_capacity(6144);
    let l = &doc.license;
    gauge(
        &mut out,
        "wispanel_license_licensed",
        "1 when the host is licensed (state active or grace).",
        u8::from(l.licensed),
    );
    one_hot(
        &mut out,
        "wispanel_license_state",
        "1 for the current licence state.",
        "state",
        &LicenseState::ALL,
        LicenseState::as_str,
        |s| s == l.state,
    );
    one_hot(
        &mut out,
        "wispanel_license_warning",
        "1 for each current warning of the status document (0 for the others).",
        "code",
        &WarningCode::ALL,
        WarningCode::as_str,
        |c| doc.warnings.iter().any(|w| w.code == c),
    );
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
    header(
        &mut out,
        "wispanel_license_portal_requests_total",
        "counter",
        "Portal requests by endpoint and outcome.",
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
    one_hot(
        &mut out,
        "wispanel_license_update_state",
        "1 for the current update state.",
        "state",
        &UpdateState::ALL,
        UpdateState::as_str,
        |s| s == doc.update.state,
    );
    gauge(
        &mut out,
        "wispanel_license_socket_connections",
        "Connections to the status socket open now.",
        socket.open,
    );
    header(
        &mut out,
        "wispanel_license_socket_refused_total",
        "counter",
        "Connections and event streams refused by the socket's fair-use limits, by reason.",
    );
    for (why, n) in Refusal::ALL.iter().zip(socket.refused) {
        let _ = writeln!(
            out,
            "wispanel_license_socket_refused_total{{reason=\"{}\"}} {n}",
            why.as_str()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::example_document;
    use wispanel_core::warnings::Warning;

    #[test]
    fn every_kind_is_listed() {
        use wispanel_core::PortalError;
        use wispanel_core::classify::Outcome;
        // A new kind breaks this exhaustive match; give it its arm and add it
        // to `every` below, and the test then fails until it is in
        // `ErrorKind::ALL`, so in the metrics.
        let _exhaustive = |k: ErrorKind| match k {
            ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::Tls
            | ErrorKind::RateLimited
            | ErrorKind::Malformed
            | ErrorKind::Http => (),
        };
        let every = [
            ErrorKind::Timeout,
            ErrorKind::Connect,
            ErrorKind::Tls,
            ErrorKind::RateLimited,
            ErrorKind::Malformed,
            ErrorKind::Http,
        ];
        for k in every {
            assert!(
                ErrorKind::ALL.contains(&k),
                "{k:?} is not in ErrorKind::ALL"
            );
        }
        for k in ErrorKind::ALL {
            let failed = Outcome::Failed(PortalError {
                kind: k,
                http_status: None,
                code: None,
                message: "m".into(),
            });
            assert!(OUTCOMES.contains(&failed.metric_label()), "{k:?}");
            // The label is the kind's SPEC name (`portal.last_error.kind`).
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let mut seen = OUTCOMES.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), OUTCOMES.len(), "a label twice: {OUTCOMES:?}");
    }

    fn doc() -> StatusDocument {
        let mut doc = example_document();
        doc.license.state = LicenseState::Grace;
        doc.update.state = UpdateState::UpdatesExpired;
        doc.portal.consecutive_failures = 3;
        doc.warnings = [WarningCode::GraceEnding, WarningCode::UpdatesExpired]
            .into_iter()
            .map(|code| Warning {
                code,
                message: "m".into(),
                at: None,
            })
            .collect();
        doc
    }

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn every_warning_code_is_a_series_with_its_current_value() {
        let text = render(&doc(), &[], &Figures::default());
        for c in WarningCode::ALL {
            let want = match c {
                WarningCode::GraceEnding | WarningCode::UpdatesExpired => "1",
                _ => "0",
            };
            assert_eq!(
                sample(&text, &format!("wispanel_license_warning{{code=\"{c}\"}}")),
                Some(want),
                "{c}\n{text}"
            );
        }
        assert!(!text.contains("code=\"other\""));
    }

    #[test]
    fn grace_until_and_unknown_times() {
        let text = render(&doc(), &[(("validate", "timeout"), 4)], &Figures::default());
        assert_eq!(
            sample(&text, "wispanel_license_grace_until_timestamp_seconds"),
            Some("1700000000")
        );
        assert_eq!(
            sample(&text, "wispanel_license_last_success_timestamp_seconds"),
            Some("NaN")
        );
        assert_eq!(
            sample(
                &text,
                "wispanel_license_portal_requests_total{endpoint=\"validate\",outcome=\"timeout\"}"
            ),
            Some("4")
        );
        assert_eq!(
            sample(&text, "wispanel_license_state{state=\"grace\"}"),
            Some("1")
        );
    }

    #[test]
    fn each_family_is_announced_once_before_its_samples() {
        let text = render(&doc(), &[], &Figures::default());
        let mut announced: Vec<&str> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(!announced.contains(&name), "{name} twice");
                announced.push(name);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                assert_eq!(announced.last(), Some(&name), "{line}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn socket_series_carry_the_figures() {
        let figures = Figures {
            open: 7,
            refused: [3, 1, 2],
        };
        let text = render(&doc(), &[], &figures);
        assert_eq!(
            sample(&text, "wispanel_license_socket_connections"),
            Some("7")
        );
        for (reason, n) in [("uid_limit", "3"), ("events_limit", "1"), ("full", "2")] {
            assert_eq!(
                sample(
                    &text,
                    &format!("wispanel_license_socket_refused_total{{reason=\"{reason}\"}}")
                ),
                Some(n),
                "{text}"
            );
        }
        assert!(text.contains("# TYPE wispanel_license_socket_refused_total counter"));
    }
}
