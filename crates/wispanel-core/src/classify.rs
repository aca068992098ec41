//! Turns any HTTP outcome into what it means for the licence: a verdict
//! (valid, or a refusal with its code), a success of a download endpoint, or a
//! non-verdict (with kind, status, code and message) that changes no verdict.
//!
//! The rules are SPEC's "Licence state" section: the `code` decides first, the
//! HTTP status only when there is no code, and a 5xx is never a verdict. All
//! three error shapes of the vendor's page are read (panel envelope, portal
//! admin, portal licence including the bare `{"error": "Invalid license"}`),
//! and missing or unknown fields are tolerated.

use super::gate::{self, GateClose};
use super::{Endpoint, ErrorKind, LicenseState, PortalError, Reason, UpdateState};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most body bytes the client reads; anything longer is malformed.
pub const MAX_BODY: usize = 1024 * 1024;

/// Codes that are a licence verdict on a licence endpoint.
pub const LICENCE_VERDICT_CODES: [&str; 8] = [
    "INVALID_KEY",
    "NOT_FOUND",
    "EXPIRED",
    "SUSPENDED",
    "REVOKED",
    "HARDWARE_MISMATCH",
    "MAX_ACTIVATIONS",
    "VERSION_TOO_LOW",
];

/// What happened on the wire, as the client saw it.
pub enum Exchange<'a> {
    /// No complete status line and headers: timeout, connect or TLS failure,
    /// after the request may have reached the portal (a timeout or a reset
    /// after it was written).
    Failed { kind: ErrorKind, message: String },
    /// The request never left: DNS failure, refused or failed TCP connect,
    /// TLS handshake failure, proxy tunnel refused. The portal cannot have
    /// seen it, so an `activate` that ends so puts nothing in doubt (SPEC
    /// revision 3).
    Unsent { kind: ErrorKind, message: String },
    /// A status line arrived.
    Answer {
        status: u16,
        /// Looks a header up case-insensitively.
        header: &'a dyn Fn(&str) -> Option<String>,
        /// At most [`MAX_BODY`] bytes of the body.
        body: &'a [u8],
        /// Why the body is incomplete, if it is.
        body_problem: Option<BodyProblem>,
    },
}

/// Why a body could not be read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyProblem {
    /// Longer than [`MAX_BODY`]; reading stopped there.
    TooLarge,
    /// The connection closed or failed mid-body.
    Cut(String),
    /// `request_timeout` elapsed while the body was still arriving.
    TimedOut,
}

/// The licence object of a valid answer. Every field may be missing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseDetails {
    pub tier: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub max_users: Option<i64>,
    pub max_domains: Option<i64>,
    pub max_databases: Option<i64>,
}

/// A `download/check-update` success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAnswer {
    pub update_available: bool,
    pub current_version: Option<String>,
    pub latest_version: Option<String>,
    pub changelog: Option<String>,
}

/// A `download/token` success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAnswer {
    pub token: String,
    pub url: String,
    pub expires_at: Option<Timestamp>,
    pub sha256: String,
    pub size: u64,
}

/// What an exchange means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A licence endpoint said valid.
    Valid(LicenseDetails),
    /// A licence endpoint refused: a verdict.
    Refused { state: LicenseState, reason: Reason },
    /// `license/deactivate` released the activation.
    Deactivated,
    /// `download/check-update` answered.
    Update(UpdateAnswer),
    /// `download/token` answered.
    Token(TokenAnswer),
    /// A download endpoint refused: changes the update state only.
    UpdateRefused { state: UpdateState, reason: Reason },
    /// No verdict: retried later; the last verdict stands.
    Failed(PortalError),
}

impl Outcome {
    /// The `outcome` label of `wispanel_license_portal_requests_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Outcome::Valid(_) | Outcome::Deactivated | Outcome::Update(_) | Outcome::Token(_) => {
                "valid"
            }
            Outcome::Refused { .. } | Outcome::UpdateRefused { .. } => "refused",
            Outcome::Failed(e) => e.kind.as_str(),
        }
    }

    /// A verdict or a success: the portal answered something it meant.
    pub fn is_answer(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }
}

/// The classification of one exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub outcome: Outcome,
    /// Whether (and how long) this answer closes the portal gate.
    pub gate: Option<GateClose>,
    /// The portal's `Date` header, for clock skew.
    pub portal_date: Option<Timestamp>,
    /// The request never reached the portal ([`Exchange::Unsent`]).
    pub unsent: bool,
}

fn failed(kind: ErrorKind, status: Option<u16>, code: Option<String>, message: String) -> Outcome {
    Outcome::Failed(PortalError {
        kind,
        http_status: status,
        code,
        message,
    })
}

/// Longest message kept from a portal body (a hostile portal could send 1 MiB).
const MAX_MESSAGE: usize = 300;

fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect();
    if s.chars().count() > MAX_MESSAGE {
        out.push('…');
    }
    out
}

fn str_field(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(Value::as_str).map(clip)
}

/// The human message of any of the three error shapes.
fn message_of(v: &Value) -> Option<String> {
    let mut msg = str_field(v, "message").or_else(|| str_field(v, "error"))?;
    if let Some(details) = v.get("details").and_then(Value::as_object) {
        let parts: Vec<String> = details
            .iter()
            .map(|(field, problems)| {
                let text = match problems {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{field}: {text}")
            })
            .collect();
        if !parts.is_empty() {
            msg = clip(&format!("{msg} ({})", parts.join("; ")));
        }
    }
    Some(msg)
}

fn default_message(status: u16) -> String {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        300..=399 => "redirect (not followed)",
        _ => "unexpected status",
    };
    format!("HTTP {status} {reason}")
}

fn int_field(v: &Value, name: &str) -> Option<i64> {
    match v.get(name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn time_field(v: &Value, name: &str) -> Option<Timestamp> {
    v.get(name)
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
}

fn license_details(v: &Value) -> LicenseDetails {
    // The licence object may be nested under "license" or flattened.
    let l = v.get("license").filter(|l| l.is_object()).unwrap_or(v);
    LicenseDetails {
        tier: str_field(l, "tier"),
        expires_at: time_field(l, "expires_at"),
        valid_until: time_field(l, "valid_until"),
        max_users: int_field(l, "max_users"),
        max_domains: int_field(l, "max_domains"),
        max_databases: int_field(l, "max_databases"),
    }
}

/// Classifies one exchange with `endpoint` at time `now`.
pub fn classify(endpoint: Endpoint, exchange: &Exchange<'_>, now: Timestamp) -> Classified {
    let (status, header, body, body_problem) = match exchange {
        Exchange::Failed { kind, message } | Exchange::Unsent { kind, message } => {
            return Classified {
                outcome: failed(*kind, None, None, clip(message)),
                gate: None,
                portal_date: None,
                unsent: matches!(exchange, Exchange::Unsent { .. }),
            };
        }
        Exchange::Answer {
            status,
            header,
            body,
            body_problem,
        } => (*status, *header, *body, body_problem),
    };
    let portal_date = header("date").and_then(|d| Timestamp::parse_http_date(&d));
    let gate = gate::closing(status, header, now);
    let outcome = classify_answer(
        endpoint,
        status,
        body,
        body_problem.as_ref(),
        gate.is_some(),
    );
    Classified {
        outcome,
        gate,
        portal_date,
        unsent: false,
    }
}

fn classify_answer(
    endpoint: Endpoint,
    status: u16,
    body: &[u8],
    body_problem: Option<&BodyProblem>,
    closes_gate: bool,
) -> Outcome {
    let success = (200..300).contains(&status);
    if let Some(problem) = body_problem {
        let what = match problem {
            BodyProblem::TooLarge => format!("the answer's body exceeds {MAX_BODY} bytes"),
            BodyProblem::Cut(e) => format!("the answer's body was cut short: {}", clip(e)),
            BodyProblem::TimedOut => {
                return failed(
                    ErrorKind::Timeout,
                    Some(status),
                    None,
                    format!("HTTP {status}: the body did not arrive within request_timeout"),
                );
            }
        };
        let kind = if closes_gate {
            ErrorKind::RateLimited
        } else if success {
            ErrorKind::Malformed
        } else {
            ErrorKind::Http
        };
        return failed(kind, Some(status), None, what);
    }

    let json: Option<Value> = serde_json::from_slice(body).ok();
    let obj = json.as_ref().filter(|v| v.is_object());
    let code = obj.and_then(|v| str_field(v, "code"));
    let message = obj
        .and_then(message_of)
        .unwrap_or_else(|| default_message(status));

    // 1. The code decides, except on a 5xx.
    if status < 500
        && let Some(c) = code.as_deref()
        && let Some(v) = verdict_by_code(endpoint, c, &message)
    {
        return v;
    }
    // 2. Rate limiting: a gate-closing answer, or the RATE_LIMITED code.
    if closes_gate {
        return failed(ErrorKind::RateLimited, Some(status), code, message);
    }
    // 3. No code: only a bare 401 is a verdict.
    if status == 401 && code.is_none() {
        let reason = Reason {
            code: "UNAUTHORIZED".into(),
            message,
        };
        return if endpoint.is_licence() {
            Outcome::Refused {
                state: LicenseState::InvalidKey,
                reason,
            }
        } else {
            Outcome::UpdateRefused {
                state: UpdateState::NotEntitled,
                reason,
            }
        };
    }
    if !success {
        return failed(ErrorKind::Http, Some(status), code, message);
    }
    // 4. A 2xx: the body must have the expected shape.
    let Some(v) = obj else {
        let why = if json.is_some() {
            "the answer is JSON but not an object"
        } else if body.is_empty() {
            "the answer's body is empty"
        } else {
            "the answer is not JSON"
        };
        return failed(ErrorKind::Malformed, Some(status), None, why.into());
    };
    success_shape(endpoint, status, v, code, message)
}

fn verdict_by_code(endpoint: Endpoint, code: &str, message: &str) -> Option<Outcome> {
    let reason = Reason {
        code: code.to_string(),
        message: message.to_string(),
    };
    if endpoint.is_licence() {
        if !LICENCE_VERDICT_CODES.contains(&code) {
            return None;
        }
        let state = LicenseState::from_refusal_code(code)?;
        return Some(Outcome::Refused { state, reason });
    }
    let state = match code {
        "UPDATES_EXPIRED" => UpdateState::UpdatesExpired,
        "VERSION_TOO_LOW" => UpdateState::VersionTooLow,
        // A licence refusal on a download endpoint: this licence is not
        // entitled to downloads; the licence state is the validate loop's job.
        c if LICENCE_VERDICT_CODES.contains(&c) => UpdateState::NotEntitled,
        _ => return None,
    };
    Some(Outcome::UpdateRefused { state, reason })
}

fn success_shape(
    endpoint: Endpoint,
    status: u16,
    v: &Value,
    code: Option<String>,
    message: String,
) -> Outcome {
    // A 2xx that carries a (non-verdict) code was read fine: `http`, not `malformed`.
    let shape_kind = if code.is_some() {
        ErrorKind::Http
    } else {
        ErrorKind::Malformed
    };
    let malformed = |what: &str| {
        failed(
            shape_kind,
            Some(status),
            code.clone(),
            format!("{} answer: {what}", endpoint.as_str()),
        )
    };
    match endpoint {
        Endpoint::Activate | Endpoint::Validate => match v.get("valid") {
            Some(Value::Bool(true)) => Outcome::Valid(license_details(v)),
            Some(Value::Bool(false)) => failed(
                ErrorKind::Http,
                Some(status),
                code,
                format!("\"valid\": false without a licence code: {message}"),
            ),
            Some(_) => malformed("\"valid\" is not a boolean"),
            None => malformed("no \"valid\" field"),
        },
        Endpoint::Deactivate => match v.get("deactivated") {
            Some(Value::Bool(true)) => Outcome::Deactivated,
            Some(Value::Bool(false)) | None => failed(
                ErrorKind::Http,
                Some(status),
                code,
                format!("the portal did not confirm the deactivation: {message}"),
            ),
            Some(_) => malformed("\"deactivated\" is not a boolean"),
        },
        Endpoint::CheckUpdate => match v.get("update_available") {
            Some(Value::Bool(b)) => Outcome::Update(UpdateAnswer {
                update_available: *b,
                current_version: str_field(v, "current_version"),
                latest_version: str_field(v, "latest_version"),
                changelog: v
                    .get("changelog")
                    .and_then(Value::as_str)
                    .map(|s| s.chars().take(64 * 1024).collect()),
            }),
            Some(_) => malformed("\"update_available\" is not a boolean"),
            None => malformed("no \"update_available\" field"),
        },
        Endpoint::Token => {
            let token = v.get("token").and_then(Value::as_str);
            let url = v.get("url").and_then(Value::as_str);
            let sha = v.get("sha256").and_then(Value::as_str);
            let size = v.get("size").and_then(Value::as_u64);
            match (token, url, sha, size) {
                (Some(t), Some(u), Some(s), Some(n))
                    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    Outcome::Token(TokenAnswer {
                        token: t.to_string(),
                        url: u.to_string(),
                        expires_at: time_field(v, "expires_at"),
                        sha256: s.to_ascii_lowercase(),
                        size: n,
                    })
                }
                _ => malformed("needs \"token\", \"url\", \"sha256\" (64 hex) and \"size\""),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn no_headers(_: &str) -> Option<String> {
        None
    }

    fn answer(endpoint: Endpoint, status: u16, body: &str) -> Classified {
        classify(
            endpoint,
            &Exchange::Answer {
                status,
                header: &no_headers,
                body: body.as_bytes(),
                body_problem: None,
            },
            NOW,
        )
    }

    fn licence_body(code: &str) -> String {
        format!(r#"{{"valid": false, "error": "refused", "code": "{code}"}}"#)
    }

    const VERDICT_STATUSES: [u16; 7] = [200, 400, 401, 403, 404, 409, 422];

    /// Every code of the vendor's page × the statuses of the vendor's page.
    #[test]
    fn licence_code_table() {
        let table: [(&str, Option<LicenseState>); 16] = [
            ("INVALID_KEY", Some(LicenseState::InvalidKey)),
            ("NOT_FOUND", Some(LicenseState::InvalidKey)),
            ("EXPIRED", Some(LicenseState::Expired)),
            ("SUSPENDED", Some(LicenseState::Suspended)),
            ("REVOKED", Some(LicenseState::Revoked)),
            ("HARDWARE_MISMATCH", Some(LicenseState::HardwareMismatch)),
            ("MAX_ACTIVATIONS", Some(LicenseState::MaxActivations)),
            ("VERSION_TOO_LOW", Some(LicenseState::VersionTooLow)),
            ("UPDATES_EXPIRED", None),
            ("VALIDATION_ERROR", None),
            ("UNAUTHORIZED", None),
            ("FORBIDDEN", None),
            ("CONFLICT", None),
            ("RATE_LIMITED", None),
            ("INTERNAL_ERROR", None),
            ("IDEMPOTENCY_KEY_CONFLICT", None),
        ];
        for endpoint in [Endpoint::Activate, Endpoint::Validate, Endpoint::Deactivate] {
            for (code, want) in &table {
                for status in VERDICT_STATUSES {
                    let c = answer(endpoint, status, &licence_body(code));
                    match (want, &c.outcome) {
                        (Some(s), Outcome::Refused { state, reason }) => {
                            assert_eq!(state, s, "{endpoint} {status} {code}");
                            assert_eq!(reason.code, *code);
                            assert_eq!(reason.message, "refused");
                        }
                        (None, Outcome::Failed(e)) => {
                            assert_eq!(e.kind, ErrorKind::Http, "{endpoint} {status} {code}");
                            assert_eq!(e.http_status, Some(status));
                            assert_eq!(e.code.as_deref(), Some(*code));
                        }
                        (w, o) => panic!("{endpoint} {status} {code}: want {w:?}, got {o:?}"),
                    }
                    assert_eq!(c.gate, None);
                }
                // A 5xx is never a verdict, whatever its body says.
                for status in [500, 502, 503, 504] {
                    let c = answer(endpoint, status, &licence_body(code));
                    assert!(
                        matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Http),
                        "{endpoint} {status} {code}: {:?}",
                        c.outcome
                    );
                }
            }
        }
    }

    #[test]
    fn download_code_table() {
        let table: [(&str, Option<UpdateState>); 8] = [
            ("UPDATES_EXPIRED", Some(UpdateState::UpdatesExpired)),
            ("VERSION_TOO_LOW", Some(UpdateState::VersionTooLow)),
            ("INVALID_KEY", Some(UpdateState::NotEntitled)),
            ("EXPIRED", Some(UpdateState::NotEntitled)),
            ("VALIDATION_ERROR", None),
            ("UNAUTHORIZED", None),
            ("RATE_LIMITED", None),
            ("INTERNAL_ERROR", None),
        ];
        for endpoint in [Endpoint::CheckUpdate, Endpoint::Token] {
            for (code, want) in &table {
                for status in VERDICT_STATUSES {
                    let c = answer(endpoint, status, &licence_body(code));
                    match (want, &c.outcome) {
                        (Some(s), Outcome::UpdateRefused { state, .. }) => {
                            assert_eq!(state, s, "{endpoint} {status} {code}")
                        }
                        (None, Outcome::Failed(e)) => assert_eq!(e.kind, ErrorKind::Http),
                        (w, o) => panic!("{endpoint} {status} {code}: want {w:?}, got {o:?}"),
                    }
                }
            }
            // The bare 401 of the vendor's page.
            let c = answer(endpoint, 401, r#"{"error": "Invalid license"}"#);
            assert_eq!(
                c.outcome,
                Outcome::UpdateRefused {
                    state: UpdateState::NotEntitled,
                    reason: Reason {
                        code: "UNAUTHORIZED".into(),
                        message: "Invalid license".into()
                    }
                }
            );
        }
    }

    #[test]
    fn bare_401_on_a_licence_endpoint_is_invalid_key() {
        for body in [r#"{"error": "Invalid license"}"#, "", "<html>nope</html>"] {
            let c = answer(Endpoint::Validate, 401, body);
            match c.outcome {
                Outcome::Refused { state, reason } => {
                    assert_eq!(state, LicenseState::InvalidKey);
                    assert_eq!(reason.code, "UNAUTHORIZED");
                }
                o => panic!("{body}: {o:?}"),
            }
        }
    }

    #[test]
    fn other_4xx_without_code_are_not_verdicts() {
        for status in [400, 403, 404, 409, 410, 422, 451] {
            let c = answer(Endpoint::Validate, status, r#"{"error": "no"}"#);
            assert!(
                matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Http && e.message == "no"),
                "{status}: {:?}",
                c.outcome
            );
        }
    }

    #[test]
    fn valid_answers_and_details() {
        let c = answer(
            Endpoint::Validate,
            200,
            r#"{"valid": true, "extra": 1, "license": {"key": "WISP-****SA6T", "tier": "free",
               "expires_at": "2027-11-26T10:00:00Z", "valid_until": "2026-12-03T10:00:00+00:00",
               "max_users": 30, "max_domains": "100", "max_databases": -1, "new_field": [1]}}"#,
        );
        let Outcome::Valid(d) = c.outcome else {
            panic!("{:?}", c.outcome)
        };
        assert_eq!(d.tier.as_deref(), Some("free"));
        assert_eq!(d.max_users, Some(30));
        assert_eq!(d.max_domains, Some(100));
        assert_eq!(d.max_databases, Some(-1));
        assert_eq!(
            d.valid_until,
            Timestamp::parse_rfc3339("2026-12-03T10:00:00Z")
        );
        // Every field may be missing.
        let c = answer(Endpoint::Activate, 201, r#"{"valid": true}"#);
        assert_eq!(c.outcome, Outcome::Valid(LicenseDetails::default()));
        // Wrongly typed fields are ignored, not fatal.
        let c = answer(
            Endpoint::Validate,
            200,
            r#"{"valid": true, "license": {"tier": 5, "expires_at": "soon"}}"#,
        );
        assert_eq!(c.outcome, Outcome::Valid(LicenseDetails::default()));
    }

    #[test]
    fn malformed_2xx() {
        for (body, what) in [
            ("", "empty"),
            ("not json", "not JSON"),
            ("[1,2]", "not an object"),
            (r#"{"valid": "yes"}"#, "not a boolean"),
            (r#"{"license": {}}"#, "no \"valid\""),
            (r#"{"valid": tr"#, "not JSON"),
        ] {
            let c = answer(Endpoint::Validate, 200, body);
            match c.outcome {
                Outcome::Failed(e) => {
                    assert_eq!(e.kind, ErrorKind::Malformed, "{body}");
                    assert!(e.message.contains(what), "{body}: {}", e.message);
                }
                o => panic!("{body}: {o:?}"),
            }
        }
    }

    #[test]
    fn valid_false_without_code_is_http() {
        let c = answer(Endpoint::Validate, 200, r#"{"valid": false}"#);
        assert!(matches!(c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Http));
    }

    #[test]
    fn body_problems() {
        let problems = [
            (BodyProblem::TooLarge, 200, ErrorKind::Malformed),
            (BodyProblem::Cut("reset".into()), 200, ErrorKind::Malformed),
            (BodyProblem::Cut("reset".into()), 403, ErrorKind::Http),
            (BodyProblem::TimedOut, 200, ErrorKind::Timeout),
            (BodyProblem::TooLarge, 503, ErrorKind::Http),
        ];
        for (p, status, kind) in problems {
            let c = classify(
                Endpoint::Validate,
                &Exchange::Answer {
                    status,
                    header: &no_headers,
                    body: br#"{"valid": true}"#,
                    body_problem: Some(p.clone()),
                },
                NOW,
            );
            assert!(
                matches!(&c.outcome, Outcome::Failed(e) if e.kind == kind),
                "{p:?} {status}: {:?}",
                c.outcome
            );
        }
    }

    #[test]
    fn rate_limits_and_redirects() {
        let retry = |name: &str| (name == "retry-after").then(|| "2".to_string());
        let c = classify(
            Endpoint::Validate,
            &Exchange::Answer {
                status: 503,
                header: &retry,
                body: b"{\"code\": \"EXPIRED\"}",
                body_problem: None,
            },
            NOW,
        );
        assert!(matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::RateLimited));
        assert_eq!(
            c.gate,
            Some(GateClose::Until(NOW.add(std::time::Duration::from_secs(2))))
        );
        let c = answer(Endpoint::Token, 429, "slow down");
        assert!(matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::RateLimited));
        assert_eq!(c.gate, Some(GateClose::Backoff));
        let c = answer(Endpoint::Validate, 302, "");
        assert!(
            matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Http && e.http_status == Some(302))
        );
        // A 503 without Retry-After is a plain http failure.
        let c = answer(Endpoint::Validate, 503, "");
        assert!(matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Http));
        assert_eq!(c.gate, None);
    }

    #[test]
    fn transport_failures_pass_through() {
        for kind in [ErrorKind::Timeout, ErrorKind::Connect, ErrorKind::Tls] {
            let c = classify(
                Endpoint::Validate,
                &Exchange::Failed {
                    kind,
                    message: "x".into(),
                },
                NOW,
            );
            assert!(matches!(&c.outcome, Outcome::Failed(e) if e.kind == kind));
            assert!(!c.unsent, "a request that may have left is not unsent");
            let c = classify(
                Endpoint::Activate,
                &Exchange::Unsent {
                    kind,
                    message: "x".into(),
                },
                NOW,
            );
            assert!(matches!(&c.outcome, Outcome::Failed(e) if e.kind == kind));
            assert!(c.unsent);
        }
    }

    #[test]
    fn panel_and_admin_shapes_give_messages() {
        let c = answer(
            Endpoint::Validate,
            403,
            r#"{"success": false, "code": "FORBIDDEN", "error": "e", "message": "Cannot mint", "status": 403}"#,
        );
        assert!(
            matches!(&c.outcome, Outcome::Failed(e) if e.message == "Cannot mint" && e.code.as_deref() == Some("FORBIDDEN"))
        );
        let c = answer(
            Endpoint::Validate,
            422,
            r#"{"valid": false, "error": "Invalid request data", "code": "VALIDATION_ERROR",
                "details": {"hardware_id": ["The hardware id field must be 64 characters."]}}"#,
        );
        assert!(
            matches!(&c.outcome, Outcome::Failed(e) if e.message.contains("hardware_id: The hardware id field must be 64 characters.")),
            "{:?}",
            c.outcome
        );
    }

    #[test]
    fn download_successes() {
        let c = answer(
            Endpoint::CheckUpdate,
            200,
            r#"{"update_available": true, "current_version": "1.4.2", "latest_version": "1.5.0", "changelog": "- x"}"#,
        );
        assert!(
            matches!(c.outcome, Outcome::Update(ref u) if u.update_available && u.latest_version.as_deref() == Some("1.5.0"))
        );
        let sha = "a".repeat(64);
        let c = answer(
            Endpoint::Token,
            200,
            &format!(r#"{{"token": "t", "url": "https://x/y", "sha256": "{sha}", "size": 10}}"#),
        );
        assert!(matches!(c.outcome, Outcome::Token(ref t) if t.size == 10));
        let c = answer(
            Endpoint::Token,
            200,
            r#"{"token": "t", "url": "u", "sha256": "zz", "size": 1}"#,
        );
        assert!(matches!(&c.outcome, Outcome::Failed(e) if e.kind == ErrorKind::Malformed));
    }

    #[test]
    fn date_header_is_kept() {
        let date =
            |name: &str| (name == "date").then(|| "Sun, 06 Nov 1994 08:49:37 GMT".to_string());
        let c = classify(
            Endpoint::Validate,
            &Exchange::Answer {
                status: 200,
                header: &date,
                body: br#"{"valid": true}"#,
                body_problem: None,
            },
            NOW,
        );
        assert_eq!(c.portal_date, Some(Timestamp::from_unix_secs(784111777)));
    }

    #[test]
    fn huge_messages_are_clipped() {
        let long = "x".repeat(10_000);
        let c = answer(
            Endpoint::Validate,
            400,
            &format!(r#"{{"error": "{long}"}}"#),
        );
        let Outcome::Failed(e) = c.outcome else {
            panic!()
        };
        assert!(e.message.chars().count() <= MAX_MESSAGE + 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(status in 0u16..1000, body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
                        ra in ".{0,40}", reset in ".{0,20}", date in ".{0,40}", ep in 0usize..5) {
            let h = move |name: &str| match name {
                "retry-after" => Some(ra.clone()),
                "x-ratelimit-reset" => Some(reset.clone()),
                "date" => Some(date.clone()),
                _ => None,
            };
            let c = classify(Endpoint::ALL[ep], &Exchange::Answer { status, header: &h, body: &body, body_problem: None }, NOW);
            if let Some(GateClose::Until(t)) = c.gate {
                proptest::prop_assert!(t >= NOW.add(gate::MIN_WAIT) && t <= NOW.add(gate::MAX_WAIT));
            }
        }

        #[test]
        fn json_bodies_never_panic(status in 100u16..600, code in "[A-Z_]{0,20}", valid in proptest::option::of(proptest::bool::ANY), ep in 0usize..5) {
            let mut v = serde_json::json!({"code": code, "license": {"max_users": "lots"}});
            if let Some(b) = valid { v["valid"] = serde_json::Value::Bool(b); }
            let body = v.to_string();
            let c = classify(Endpoint::ALL[ep], &Exchange::Answer { status, header: &no_headers, body: body.as_bytes(), body_problem: None }, NOW);
            if status >= 500 {
                proptest::prop_assert!(matches!(c.outcome, Outcome::Failed(_)));
            }
        }
    }
}
