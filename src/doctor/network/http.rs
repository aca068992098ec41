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
    },
    Failed(String),
    TimedOut,
}

pub fn http_check(url: &str, outcome: &HttpOutcome, limit: Duration) -> Check {
    let name = "portal HTTP";
    match outcome {
        HttpOutcome::Answered {
            status, elapsed, ..
        } => {
            let found = format!(
                "POST {url} answered HTTP {status} in {} ms",
                elapsed.as_millis()
            );
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
            let date = resp
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Timestamp::parse_http_date);
            HttpOutcome::Answered {
                status: resp.status().as_u16(),
                elapsed: start.elapsed(),
                date,
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
}
