//! The release itself: its URL (https, or http to a loopback host: the rule
//! of [`crate::net::scheme`]), the GET with its redirects, and the body
//! streamed into the part file with its size and SHA-256 checked.

use super::place::PartFile;
use super::{DOWNLOAD_CEILING, DownloadError, MAX_ERROR_BODY, MAX_REDIRECTS, Progress};
use crate::net::scheme::check_scheme;
use crate::portal::{PortalClient, error_chain};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use url::Url;
use wispanel_core::ErrorKind;
use wispanel_core::classify::TokenAnswer;

/// The token's URL, resolved against the portal (it may be relative); https
/// only, plain http only to a loopback host (as for `portal_url`).
pub(super) fn release_url(base: &str, raw: &str) -> Result<Url, DownloadError> {
    let bad = |problem: String| DownloadError::BadUrl {
        url: shown_str(raw),
        problem,
    };
    let base = Url::parse(&format!("{base}/")).map_err(|e| bad(format!("portal_url: {e}")))?;
    let url = base.join(raw).map_err(|e| bad(e.to_string()))?;
    check_scheme(&url).map_err(|e| bad(e.to_string()))?;
    Ok(url)
}

/// A URL for messages: without its query (the token) and fragment.
pub(super) fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

pub(super) fn shown_str(raw: &str) -> String {
    let cut = raw.split(['?', '#']).next().unwrap_or_default();
    cut.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// GETs `url`, following at most [`MAX_REDIRECTS`] redirects (https, or
/// plain http to this machine only: `net::scheme::check_scheme`),
/// until a 2xx with its headers; headers must come within `timeout`.
pub(super) async fn fetch(
    client: &PortalClient,
    mut url: Url,
    timeout: Duration,
) -> Result<reqwest::Response, DownloadError> {
    for _ in 0..=MAX_REDIRECTS {
        let shown = shown_url(&url);
        let sent = tokio::time::timeout(
            timeout,
            client
                .http()
                .get(url.clone())
                // The client's own timeout is `request_timeout` for the whole
                // exchange; a release takes longer. Stalls are caught per chunk.
                .timeout(DOWNLOAD_CEILING)
                .send(),
        )
        .await;
        let resp = match sent {
            Err(_) => {
                return Err(DownloadError::Transfer {
                    url: shown,
                    kind: ErrorKind::Timeout,
                    message: format!(
                        "no answer within request_timeout ({} s)",
                        timeout.as_secs_f64()
                    ),
                });
            }
            Ok(Err(e)) => {
                let (kind, message) = crate::portal::transport_error(&e);
                return Err(DownloadError::Transfer {
                    url: shown,
                    kind,
                    message: scrub(&message, &url),
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status.is_redirection()
            && let Some(loc) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
        {
            let next = url.join(loc).map_err(|e| DownloadError::BadUrl {
                url: shown_str(loc),
                problem: format!("redirect from {shown}: {e}"),
            })?;
            check_scheme(&next).map_err(|problem| DownloadError::BadUrl {
                url: shown_str(loc),
                problem: format!("redirect from {shown}: {problem}"),
            })?;
            url = next;
            continue;
        }
        let message = error_message(resp, timeout).await;
        return Err(DownloadError::Http {
            url: shown,
            status: status.as_u16(),
            message,
        });
    }
    Err(DownloadError::Transfer {
        url: shown_url(&url),
        kind: ErrorKind::Http,
        message: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

/// Removes the token (the URL's query) from a transport error's text.
pub(super) fn scrub(message: &str, url: &Url) -> String {
    match url.query() {
        Some(q) if !q.is_empty() => message.replace(q, "…"),
        _ => message.to_string(),
    }
}

/// The message of an error answer (its JSON `message` or `error`), briefly.
pub(super) async fn error_message(mut resp: reqwest::Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(timeout, resp.chunk()).await {
            Ok(Ok(Some(c))) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    let v: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let field = |name: &str| {
        v.as_ref()
            .and_then(|v| v.get(name))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    };
    let text = match (field("message").or_else(|| field("error")), field("code")) {
        (Some(m), Some(c)) => format!("{m} ({c})"),
        (Some(m), None) => m,
        (None, Some(c)) => c,
        (None, None) => resp
            .status()
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_string(),
    };
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// Streams the body into the part file; returns the SHA-256 once the size
/// and the digest are right.
pub(super) async fn stream(
    mut resp: reqwest::Response,
    part: &mut PartFile,
    token: &TokenAnswer,
    (url, target): (&str, &Path),
    timeout: Duration,
    progress: &mut Option<&mut dyn Progress>,
) -> Result<String, DownloadError> {
    let size = token.size;
    if let Some(n) = resp.content_length()
        && n > size
    {
        return Err(DownloadError::TooLarge {
            url: url.to_string(),
            size,
            announced: Some(n),
        });
    }
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    if let Some(p) = progress.as_deref_mut() {
        p.update(0, size);
    }
    loop {
        let chunk = match tokio::time::timeout(timeout, resp.chunk()).await {
            Err(_) => {
                return Err(DownloadError::Stalled {
                    url: url.to_string(),
                    secs: timeout,
                    got,
                    size,
                });
            }
            Ok(Err(e)) => {
                return Err(DownloadError::Cut {
                    url: url.to_string(),
                    got,
                    size,
                    message: shown_str(&error_chain(&e)),
                });
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        let len = chunk.len() as u64;
        if got.saturating_add(len) > size {
            return Err(DownloadError::TooLarge {
                url: url.to_string(),
                size,
                announced: resp.content_length(),
            });
        }
        hasher.update(&chunk);
        part.write(&chunk).await?;
        got += len;
        if let Some(p) = progress.as_deref_mut() {
            p.update(got, size);
        }
    }
    if got < size {
        return Err(DownloadError::Short {
            url: url.to_string(),
            got,
            size,
        });
    }
    let digest = hex(&hasher.finalize());
    if digest != token.sha256 {
        return Err(DownloadError::Checksum {
            file: target.to_path_buf(),
            expected: token.sha256.clone(),
            got: digest,
        });
    }
    Ok(digest)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn release_urls_resolve_and_need_https() {
        let u = release_url("https://portal.example", "/releases/a.tgz?token=t").unwrap();
        assert_eq!(u.as_str(), "https://portal.example/releases/a.tgz?token=t");
        let u = release_url("http://127.0.0.1:9", "http://127.0.0.1:9/r/a.tgz").unwrap();
        assert_eq!(u.host_str(), Some("127.0.0.1"));
        let e = release_url("https://p", "http://cdn.example/a.tgz?token=secret").unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = release_url("https://p", "ftp://cdn.example/a.tgz").unwrap_err();
        assert!(e.to_string().contains("\"ftp\""), "{e}");
    }

    #[test]
    fn shown_urls_hide_the_token() {
        assert_eq!(
            shown_url(&url("https://p/r/a.tgz?token=secret#x")),
            "https://p/r/a.tgz"
        );
        assert_eq!(shown_str("https://p/r?token=secret"), "https://p/r");
    }
}
