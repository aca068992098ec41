//! The HTTP round trip to the portal: its lines (pure) and the request,
//! through the same proxy decision as the portal client.

use super::*;

/// The round trip's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpOutcome {
    Answered {
        status: u16,
        elapsed: Duration,
        date: Option<Timestamp>,
        /// What the body was when it could be read within the time left:
        /// the portal answers JSON objects, a captive portal or a misrouted
        /// proxy HTML.
        body: Option<Body>,
    },
    Failed(String),
    TimedOut,
}

/// An answer's body, as far as doctor judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    /// The `Content-Type` header, when there was one.
    pub content_type: Option<String>,
    /// Whether the body is a JSON object.
    pub json_object: bool,
}

impl Body {
    pub fn judge(content_type: Option<&str>, bytes: &[u8]) -> Body {
        Body {
            content_type: content_type.map(str::to_string),
            json_object: serde_json::from_slice::<serde_json::Value>(bytes)
                .is_ok_and(|v| v.is_object()),
        }
    }
}

pub fn http_check(url: &str, outcome: &HttpOutcome, limit: Duration) -> Check {
    let name = "portal HTTP";
    match outcome {
        HttpOutcome::Answered {
            status,
            elapsed,
            body,
            ..
        } => {
            let found = format!(
                "POST {url} answered HTTP {status} in {} ms",
                elapsed.as_millis()
            );
            // Every answer of the portal but a redirect, a 429 and a 5xx is a
            // JSON object (PORTAL.md): anything else came from something else.
            let judged = matches!(status, 200..=299 | 400..=428 | 430..=499);
            if let Some(b) = body.as_ref().filter(|b| judged && !b.json_object) {
                return Check::fail(
                    name,
                    format!(
                        "{found}, but the answer is not the portal's: {} that is not a JSON object",
                        b.content_type
                            .as_deref()
                            .map_or("a body without a Content-Type".to_string(), |t| format!(
                                "a {t} body"
                            ))
                    ),
                    "a captive portal, a login page or a misrouted proxy answers in the portal's place: \
                     log this host's network in, or check the proxy, `proxy` and `portal_url`",
                );
            }
            match status {
                300..=399 => Check::warn(
                    name,
                    found,
                    "a redirect: a captive portal or a proxy may be answering instead of the portal",
                ),
                429 => Check::warn(
                    name,
                    found,
                    "the portal rate-limits this host; the daemon waits as told",
                ),
                500..=599 => Check::warn(
                    name,
                    found,
                    "the portal (or a proxy) has trouble; the daemon retries with back-off",
                ),
                _ => Check::ok(name, found),
            }
        }
        HttpOutcome::Failed(e) => {
            Check::fail(name, format!("POST {url}: {e}"), "see the checks above")
        }
        HttpOutcome::TimedOut => Check::fail(
            name,
            format!("POST {url}: no answer within {} s", limit.as_secs_f64()),
            "the portal (or a proxy) accepts the request but does not answer",
        ),
    }
}

pub(super) async fn round_trip(
    url: &str,
    ca_file: Option<&Path>,
    proxy: &ProxyChoice,
    limit: Duration,
) -> HttpOutcome {
    let client = match crate::portal::http_client(ca_file, proxy, limit) {
        Ok(c) => c,
        Err(e) => {
            use crate::portal::SetupError;
            return HttpOutcome::Failed(match e {
                SetupError::CaRead { path, source } => {
                    format!("ca_file {}: {source}", path.display())
                }
                SetupError::CaParse { path, message } => {
                    format!("ca_file {}: {message}", path.display())
                }
                SetupError::Proxy(m) => format!("proxy: {m}"),
                SetupError::Build(m) => m,
            });
        }
    };
    let start = Instant::now();
    let send = client
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body("{}")
        .send();
    match tokio::time::timeout(limit, send).await {
        Err(_) => HttpOutcome::TimedOut,
        Ok(Err(e)) if e.is_timeout() => HttpOutcome::TimedOut,
        Ok(Err(e)) => {
            let (kind, msg) = crate::portal::transport_error(&e);
            HttpOutcome::Failed(format!("{}: {msg}", kind.as_str()))
        }
        Ok(Ok(resp)) => {
            let header = |name| {
                resp.headers()
                    .get(name)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let date = header(reqwest::header::DATE)
                .as_deref()
                .and_then(Timestamp::parse_http_date);
            let content_type = header(reqwest::header::CONTENT_TYPE);
            let status = resp.status().as_u16();
            let elapsed = start.elapsed();
            let left = limit.saturating_sub(elapsed);
            let body = match tokio::time::timeout(left, resp.bytes()).await {
                Ok(Ok(bytes)) => Some(Body::judge(content_type.as_deref(), &bytes)),
                _ => None,
            };
            HttpOutcome::Answered {
                status,
                elapsed,
                date,
                body,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn http_lines() {
        let d = Duration::from_secs(5);
        let a = |status| HttpOutcome::Answered {
            status,
            elapsed: Duration::from_millis(12),
            date: None,
            body: Some(Body::judge(
                Some("application/json"),
                br#"{"success":false}"#,
            )),
        };
        assert_eq!(http_check("u", &a(422), d).status, Status::Ok);
        assert_eq!(http_check("u", &a(200), d).status, Status::Ok);
        assert_eq!(http_check("u", &a(302), d).status, Status::Warn);
        assert_eq!(http_check("u", &a(503), d).status, Status::Warn);
        assert_eq!(
            http_check("u", &HttpOutcome::TimedOut, d).status,
            Status::Fail
        );
        assert!(
            http_check("u", &a(422), d)
                .found
                .contains("HTTP 422 in 12 ms")
        );
    }

    #[test]
    fn an_answer_that_is_not_the_portals() {
        let d = Duration::from_secs(5);
        let with = |status, ct: Option<&str>, body: &[u8]| HttpOutcome::Answered {
            status,
            elapsed: Duration::from_millis(3),
            date: None,
            body: Some(Body::judge(ct, body)),
        };
        let html = b"<html><body>Please log in</body></html>";
        let c = http_check("u", &with(200, Some("text/html"), html), d);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.found.contains("not the portal's: a text/html body"),
            "{c:?}"
        );
        assert!(
            c.hint.as_deref().unwrap_or("").contains("captive portal"),
            "{c:?}"
        );
        assert_eq!(
            http_check("u", &with(403, None, b"denied"), d).status,
            Status::Fail
        );
        assert_eq!(
            http_check("u", &with(200, None, b"[1]"), d).status,
            Status::Fail
        );
        // The portal's own answers, and those judged elsewhere, stay as they were.
        assert_eq!(
            http_check(
                "u",
                &with(422, Some("application/json"), br#"{"success":false}"#),
                d
            )
            .status,
            Status::Ok
        );
        assert_eq!(
            http_check("u", &with(503, Some("text/html"), html), d).status,
            Status::Warn
        );
        assert_eq!(
            http_check("u", &with(302, Some("text/html"), html), d).status,
            Status::Warn
        );
        assert_eq!(
            http_check("u", &with(429, None, b""), d).status,
            Status::Warn
        );
        // A body not read in time is not judged.
        let unread = HttpOutcome::Answered {
            status: 200,
            elapsed: Duration::from_millis(3),
            date: None,
            body: None,
        };
        assert_eq!(http_check("u", &unread, d).status, Status::Ok);
    }
}
