//! The one client of the status socket: a small blocking HTTP/1.1 client
//! (one request per connection, `Connection: close`, bounded reads) and the
//! one parser of the daemon's answers, used by the CLI, `doctor`, the
//! benchmarks and the tests. Answers read as the types the server writes
//! ([`StatusDocument`], [`ErrorEnvelope`]).

use crate::api::{ErrorEnvelope, StatusDocument};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most the client reads of an answer.
const MAX_ANSWER: u64 = 8 * 1024 * 1024;

/// An answer from the daemon.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The status document of a 2xx answer.
    pub fn status_document(&self) -> Result<StatusDocument, String> {
        self.json()
            .map_err(|e| format!("the daemon's status document cannot be read: {e}"))
    }

    /// The error envelope of a non-2xx answer; a body that is not one is
    /// read as an `INTERNAL_ERROR` carrying the body's text.
    pub fn envelope(&self) -> ErrorEnvelope {
        self.json().unwrap_or_else(|_| {
            ErrorEnvelope::new(
                self.status,
                "INTERNAL_ERROR",
                String::from_utf8_lossy(&self.body).into_owned(),
            )
        })
    }
}

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the daemon at {path}: {source} (is wispanel-licensed running?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon at {path} did not answer within {} s", limit.as_secs_f64())]
    TimedOut { path: PathBuf, limit: Duration },
    #[error("the daemon at {path} did not answer: {message}")]
    Exchange { path: PathBuf, message: String },
}

/// Sends one request and reads the whole answer within `timeout`.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    request_with(socket, method, path, &[], body, timeout)
}

/// As [`request`], with extra request headers.
///
/// A `GET` or `HEAD` whose connection closes before any byte of an answer
/// (the daemon stopped, or was killed, between taking the connection and
/// answering: a restart, a watchdog abort) is sent again on a new connection
/// while `timeout` lasts, as HTTP lets a client repeat an idempotent
/// request; under socket activation the new connection waits in the
/// socket's queue for the next daemon. Other methods are never repeated: the
/// daemon may have acted on them.
pub fn request_with(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let idempotent = matches!(method, "GET" | "HEAD");
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match exchange(
            socket,
            method,
            path,
            headers,
            body,
            left.max(Duration::from_millis(1)),
        ) {
            Err(Attempt::Unanswered(e))
                if idempotent
                    && deadline.saturating_duration_since(std::time::Instant::now()) > pause =>
            {
                tracing::debug!(
                    "the daemon closed the connection without an answer ({e}); asking again"
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(Attempt::Unanswered(e) | Attempt::Failed(e)) => return Err(e),
            Ok(a) => return Ok(a),
        }
    }
}

/// How one exchange on one connection failed.
enum Attempt {
    /// The connection closed (or was reset) before any byte of an answer.
    Unanswered(ClientError),
    /// Anything else: no connection, a timeout, a malformed answer.
    Failed(ClientError),
}

/// One request on one connection.
fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Answer, Attempt> {
    let fail = |message: String| {
        Attempt::Failed(ClientError::Exchange {
            path: socket.to_path_buf(),
            message,
        })
    };
    let unanswered = |message: String| {
        Attempt::Unanswered(ClientError::Exchange {
            path: socket.to_path_buf(),
            message,
        })
    };
    let timed_out = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    let mut s = UnixStream::connect(socket).map_err(|source| {
        Attempt::Failed(ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })
    })?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(e.to_string()))?;
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wispanel-license/{}\r\nAccept: application/json\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .map_err(|e| unanswered(format!("cannot send the request: {e}")))?;
    // A server may answer (413) and close before it has read the whole
    // body: what it said is still read below.
    let wrote = s.write_all(body);
    let mut raw = Vec::new();
    let read = (&mut s).take(MAX_ANSWER).read_to_end(&mut raw);
    if raw.is_empty() {
        match read {
            Err(e) if timed_out(&e) => {
                return Err(Attempt::Failed(ClientError::TimedOut {
                    path: socket.to_path_buf(),
                    limit: timeout,
                }));
            }
            Err(e) => return Err(unanswered(format!("cannot read the answer: {e}"))),
            Ok(_) => {
                return Err(match wrote {
                    Err(e) => unanswered(format!("cannot send the request: {e}")),
                    Ok(()) => unanswered("it closed the connection without an answer".into()),
                });
            }
        }
    }
    parse_answer(&raw).map_err(fail)
}

/// A `GET /v1/events` stream being read: each [`Events::next`] gives the
/// next `status` event's document.
pub struct Events {
    stream: UnixStream,
    path: PathBuf,
    /// Bytes read and not yet taken apart.
    raw: Vec<u8>,
    /// The head, once read.
    head: Option<Head>,
    /// The body so far, de-chunked, not yet split into events.
    body: Vec<u8>,
}

/// Opens `GET /v1/events`; the answer is read by [`Events::next`].
pub fn events(socket: &Path, timeout: Duration) -> Result<Events, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let head = format!(
        "GET /v1/events HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wispanel-license/{}\r\nAccept: text/event-stream\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
        .and_then(|()| stream.write_all(head.as_bytes()))
        .map_err(|e| ClientError::Exchange {
            path: socket.to_path_buf(),
            message: format!("cannot send the request: {e}"),
        })?;
    Ok(Events {
        stream,
        path: socket.to_path_buf(),
        raw: Vec::new(),
        head: None,
        body: Vec::new(),
    })
}

impl Events {
    /// The next event's status document, waiting at most until `deadline`
    /// (`TimedOut` then). A daemon that answers with an error (429, 503)
    /// or ends the stream is an `Exchange` error.
    pub fn next(&mut self, deadline: std::time::Instant) -> Result<StatusDocument, ClientError> {
        let path = self.path.clone();
        let fail = |message: String| ClientError::Exchange {
            path: path.clone(),
            message,
        };
        loop {
            if let Some(doc) = self.take_event().map_err(fail)? {
                return Ok(doc);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(ClientError::TimedOut {
                    path: self.path.clone(),
                    limit: Duration::ZERO,
                });
            }
            let mut buf = [0u8; 16 * 1024];
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| fail(e.to_string()))?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(fail("the daemon ended the event stream".into())),
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(fail(format!("cannot read the event stream: {e}"))),
            }
            if self.raw.len() as u64 > MAX_ANSWER {
                return Err(fail("the event stream sent too much at once".into()));
            }
        }
    }

    /// Takes the head, the complete chunks and the first complete event out
    /// of what was read.
    fn take_event(&mut self) -> Result<Option<StatusDocument>, String> {
        if self.head.is_none() {
            let Some(head) = parse_head(&self.raw)? else {
                return Ok(None);
            };
            if head.status != 200 {
                return Err(format!(
                    "the daemon answered {} to GET /v1/events",
                    head.status
                ));
            }
            self.raw.drain(..head.len);
            self.head = Some(head);
        }
        if self
            .head
            .as_ref()
            .is_some_and(|h| h.framing == Framing::Chunked)
        {
            while let Some(nl) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let text = std::str::from_utf8(&self.raw[..nl]).map_err(|_| "bad chunk size")?;
                let size = usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| "bad chunk size")?;
                if self.raw.len() < nl + 2 + size + 2 {
                    break;
                }
                self.body
                    .extend_from_slice(&self.raw[nl + 2..nl + 2 + size]);
                self.raw.drain(..nl + 2 + size + 2);
            }
        } else {
            self.body.append(&mut self.raw);
        }
        while let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.body.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                return serde_json::from_str(&data.join("\n"))
                    .map(Some)
                    .map_err(|e| format!("an event's status document cannot be read: {e}"));
            }
        }
        Ok(None)
    }
}

/// How the body of an answer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// At the end of the connection.
    ToEnd,
}

/// The head of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, the blank line included.
    pub len: usize,
    pub framing: Framing,
}

/// Parses the head at the start of `raw`: `Ok(None)` while it is
/// incomplete. For a client that keeps its connection open (the benchmarks).
pub fn parse_head(raw: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let status = resp.code.ok_or("an answer without a status")?;
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let framing = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked
    } else if let Some(v) = find("content-length") {
        Framing::Length(v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?)
    } else {
        Framing::ToEnd
    };
    Ok(Some(Head {
        status,
        headers,
        len,
        framing,
    }))
}

/// Parses a whole answer, read to the end of the connection.
pub fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let head = parse_head(raw)?.ok_or("the answer has no complete header")?;
    let rest = &raw[head.len..];
    let body = match head.framing {
        Framing::Chunked => dechunk(rest)?,
        Framing::Length(n) if rest.len() < n => {
            return Err(format!(
                "the answer was cut short ({} of {n} bytes)",
                rest.len()
            ));
        }
        Framing::Length(n) => rest[..n].to_vec(),
        Framing::ToEnd => rest.to_vec(),
    };
    Ok(Answer {
        status: head.status,
        headers: head.headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_text = std::str::from_utf8(&b[..nl]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("chunked body cut short".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let a = parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
        let c = parse_answer(b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(c.body, b"{}");
        assert_eq!(c.header("retry-after"), Some("3"));
        assert!(parse_answer(b"garbage").is_err());
        assert!(parse_answer(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn heads_for_a_kept_connection() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-len"), Ok(None));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!((h.status, h.framing), (200, Framing::Length(2)));
        assert_eq!(&raw[h.len..h.len + 2], b"{}");
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
    }

    #[test]
    fn typed_bodies() {
        let body = r#"{"success":false,"code":"FORBIDDEN","error":"Forbidden","message":"root only","status":403}"#;
        let raw = format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let a = parse_answer(raw.as_bytes()).unwrap();
        let e = a.envelope();
        assert_eq!((e.code.as_str(), e.status), ("FORBIDDEN", 403));
        let a = parse_answer(b"HTTP/1.1 500 Oops\r\n\r\nnot json").unwrap();
        assert_eq!(a.envelope().code, "INTERNAL_ERROR");
        assert!(a.status_document().is_err());
    }

    /// A server on a real Unix socket that drops its first `drops`
    /// connections without an answer (one closed at once, one reset: closed
    /// with the request unread), then answers every later one with 200.
    fn flaky_server(drops: usize) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<usize>) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = 0;
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { break };
                seen += 1;
                if seen <= drops {
                    if seen % 2 == 0 {
                        // Wait for the request, leave it unread: a reset.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    drop(c);
                    continue;
                }
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
                if seen == drops + 1 {
                    break;
                }
            }
            seen
        });
        (dir, sock, server)
    }

    #[test]
    fn a_get_closed_without_an_answer_is_asked_again() {
        let (_dir, sock, server) = flaky_server(2);
        let a = request(&sock, "GET", "/v1/status", None, Duration::from_secs(10)).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(
            server.join().unwrap(),
            3,
            "two dropped connections, then the answer"
        );
    }

    #[test]
    fn a_post_closed_without_an_answer_is_not_repeated() {
        let (_dir, sock, server) = flaky_server(1);
        let e = request(
            &sock,
            "POST",
            "/v1/check",
            Some(b"{}"),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("without an answer")
                || e.to_string().contains("cannot read the answer")
                || e.to_string().contains("cannot send the request"),
            "{e}"
        );
        // The server saw one connection; let it finish with a GET.
        request(&sock, "GET", "/v1/status", None, Duration::from_secs(10)).unwrap();
        assert_eq!(server.join().unwrap(), 2);
    }

    #[test]
    fn a_get_gives_up_when_its_time_is_spent() {
        let (_dir, sock, _server) = flaky_server(usize::MAX);
        let t = std::time::Instant::now();
        let e = request(&sock, "GET", "/v1/status", None, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, ClientError::Exchange { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
