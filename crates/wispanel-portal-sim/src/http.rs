//! Just enough HTTP/1.1 by hand to misbehave on purpose: read one request
//! (head capped at 64 KiB, `Content-Length` body capped at 1 MiB) and write a
//! raw answer that may be cut short or stall.

use super::portal::{Delivery, Reply, reason};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wispanel_core::timestamp::Timestamp;

pub(crate) const MAX_HEAD: usize = 64 * 1024;
pub(crate) const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 100;
const CHUNK: usize = 64 * 1024;

/// One parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// HTTP/1.0 closes by default.
    pub http10: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub(crate) fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Whether the client asked to close after this exchange.
    pub(crate) fn wants_close(&self) -> bool {
        match self.header("Connection") {
            Some(c) => c.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")),
            None => self.http10,
        }
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client closed (or failed) between requests or mid-request.
    Gone,
    /// A broken request: answered with this status and the message, then closed.
    Bad(u16, &'static str),
}

/// Reads one request; bytes after it (a pipelined request) stay in `buf`.
pub(crate) async fn read_request<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Request, ReadError> {
    let mut tmp = [0u8; 16 * 1024];
    let (head_len, mut req, content_length) = loop {
        if let Some(parsed) = parse_head(buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(431, "the request head exceeds 64 KiB"));
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return Err(ReadError::Gone),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    if head_len > MAX_HEAD {
        return Err(ReadError::Bad(431, "the request head exceeds 64 KiB"));
    }
    let total = head_len + content_length;
    while buf.len() < total {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return Err(ReadError::Gone),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    req.body = buf[head_len..total].to_vec();
    buf.drain(..total);
    Ok(req)
}

/// The head, if complete: its length, the request without body, and the
/// declared body length.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Request, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Bad(431, "too many request headers"));
        }
        Err(_) => return Err(ReadError::Bad(400, "malformed HTTP request")),
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(ReadError::Bad(400, "malformed HTTP request"));
    };
    let mut out = Vec::with_capacity(parsed.headers.len());
    let mut content_length: Option<usize> = None;
    for h in parsed.headers.iter() {
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(ReadError::Bad(400, "a header value is not UTF-8"));
        };
        if h.name.eq_ignore_ascii_case("Transfer-Encoding") {
            return Err(ReadError::Bad(
                400,
                "chunked request bodies are not supported; send Content-Length",
            ));
        }
        if h.name.eq_ignore_ascii_case("Content-Length") {
            let Ok(n) = value.trim().parse::<usize>() else {
                return Err(ReadError::Bad(400, "Content-Length is not a number"));
            };
            if content_length.is_some_and(|c| c != n) {
                return Err(ReadError::Bad(400, "conflicting Content-Length headers"));
            }
            content_length = Some(n);
        }
        out.push((h.name.to_string(), value.to_string()));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(ReadError::Bad(413, "the request body exceeds 1 MiB"));
    }
    let req = Request {
        method: method.to_string(),
        target: target.to_string(),
        http10: version == 0,
        headers: out,
        body: Vec::new(),
    };
    Ok(Some((head_len, req, content_length)))
}

/// What the connection should do after a reply was written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    KeepAlive,
    Close,
    /// Wait for the client to leave, then close.
    Stall,
}

/// Writes `reply` (head, then the body as its delivery allows).
pub(crate) async fn write_reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    reply: &Reply,
    close: bool,
) -> std::io::Result<After> {
    let body_len = reply.body.len();
    let date = Timestamp(
        Timestamp::from_system_time(std::time::SystemTime::now())
            .millis()
            .saturating_add(reply.date_skew_secs.saturating_mul(1000)),
    )
    .to_http_date();
    // A lying Content-Length breaks framing, so the connection cannot be reused.
    let close =
        close || reply.delivery != Delivery::Complete || reply.header("Content-Length").is_some();
    let defaults = [
        ("Date", date),
        ("Server", "wispanel-portal-sim".to_string()),
        ("Content-Type", "application/json".to_string()),
        ("Content-Length", body_len.to_string()),
        (
            "Connection",
            if close { "close" } else { "keep-alive" }.to_string(),
        ),
    ];
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &defaults {
        if reply.header(name).is_none() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;

    let limit = match reply.delivery {
        Delivery::Complete => body_len,
        Delivery::TruncateAt(n) | Delivery::StallAfter(n) => n.min(body_len),
    };
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(limit).unwrap_or(CHUNK)).max(1)];
    let mut sent = 0u64;
    while sent < limit {
        let want = usize::try_from(limit - sent)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = reply.body.fill(sent, &mut buf[..want]);
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await?;
        sent += n as u64;
    }
    s.flush().await?;
    Ok(match reply.delivery {
        Delivery::StallAfter(_) => After::Stall,
        _ if close => After::Close,
        _ => After::KeepAlive,
    })
}

/// Reads and discards until the client closes (or fails).
pub(crate) async fn wait_for_close<S: AsyncRead + Unpin>(s: &mut S) {
    let mut tmp = [0u8; 4096];
    while let Ok(n) = s.read(&mut tmp).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::ReplyBody;

    async fn read_all(input: &[u8]) -> (Vec<Result<Request, ReadError>>, usize) {
        let mut reader = input;
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let r = read_request(&mut reader, &mut buf).await;
            let stop = r.is_err();
            out.push(r);
            if stop {
                break;
            }
        }
        (out, buf.len())
    }

    #[tokio::test]
    async fn pipelined_requests_keep_their_bodies() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b?x=1 HTTP/1.0\r\n\r\n";
        let (reqs, _) = read_all(input).await;
        let a = reqs[0].as_ref().unwrap();
        assert_eq!(
            (a.method.as_str(), a.path(), &a.body[..]),
            ("POST", "/a", &b"abc"[..])
        );
        assert!(!a.wants_close());
        let b = reqs[1].as_ref().unwrap();
        assert_eq!((b.path(), b.query()), ("/b", Some("x=1")));
        assert!(b.wants_close(), "HTTP/1.0 closes by default");
        assert!(matches!(reqs[2], Err(ReadError::Gone)));
    }

    #[tokio::test]
    async fn broken_requests_get_a_status() {
        for (input, status) in [
            (&b"NOT HTTP AT ALL\r\n\r\n"[..], 400),
            (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        ] {
            let (reqs, _) = read_all(input).await;
            match &reqs[0] {
                Err(ReadError::Bad(s, _)) => assert_eq!(*s, status, "{input:?}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD + 10, b'a');
        let (reqs, _) = read_all(&huge).await;
        assert!(matches!(reqs[0], Err(ReadError::Bad(431, _))));
        let (reqs, _) = read_all(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc").await;
        assert!(matches!(reqs[0], Err(ReadError::Gone)), "short body");
    }

    #[tokio::test]
    async fn writes_head_overrides_and_truncates() {
        let mut reply = Reply::bytes(200, b"0123456789".to_vec());
        reply.set_header("Content-Type", "text/html");
        reply.delivery = Delivery::TruncateAt(4);
        let mut out = Vec::new();
        let after = write_reply(&mut out, &reply, false).await.unwrap();
        assert_eq!(after, After::Close);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 10\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/html\r\n"), "{text}");
        assert!(!text.contains("application/json"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n0123"), "{text}");

        let reply = Reply {
            body: ReplyBody::Repeat {
                unit: b"xy".to_vec(),
                len: 200_000,
            },
            ..Reply::bytes(200, Vec::new())
        };
        let mut out = Vec::new();
        assert_eq!(
            write_reply(&mut out, &reply, false).await.unwrap(),
            After::KeepAlive
        );
        let body_at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(out.len() - body_at, 200_000);
    }
}
