//! Status socket load: keep-alive clients doing `GET /v1/status`, and the
//! baseline they are compared with: a minimal hyper HTTP/1.1 server on a Unix
//! socket, in its own current-thread process, serving the same bytes.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util_free::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use wispanel_license::socket::client;

const REQUEST: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// One keep-alive connection's client side.
pub struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client> {
        Ok(Client {
            stream: UnixStream::connect(path)
                .await
                .with_context(|| format!("cannot connect to {}", path.display()))?,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends `GET /v1/status` and reads the whole answer; returns the status
    /// and the body.
    pub async fn get_status(&mut self) -> Result<(u16, Vec<u8>)> {
        self.stream.write_all(REQUEST).await?;
        loop {
            // The product's own parser of the socket's answers.
            let parsed = match client::parse_head(&self.buf).map_err(|e| anyhow!(e))? {
                Some(h) => match h.framing {
                    client::Framing::Length(len) => Some((h.status, h.len, len)),
                    _ => bail!("the answer has no Content-Length"),
                },
                None => None,
            };
            if let Some((code, head, len)) = parsed {
                while self.buf.len() < head + len {
                    self.read_more().await?;
                }
                let body = self.buf[head..head + len].to_vec();
                self.buf.drain(..head + len);
                return Ok((code, body));
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// What one load run measured.
#[derive(Clone, Debug)]
pub struct Load {
    pub requests: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Load {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` connections each doing requests back to back for `duration`.
pub async fn load(path: &Path, clients: usize, duration: Duration) -> Result<Load> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut c = Client::connect(path).await?;
        // Warm the connection up (and check the answer).
        let (code, _) = c.get_status().await?;
        if code != 200 {
            bail!("GET /v1/status answered {code}");
        }
        conns.push(c);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (code, _) = c.get_status().await?;
                    if code != 200 {
                        bail!("GET /v1/status answered {code}");
                    }
                    lat.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok(Load {
        requests: all.len() as u64,
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    })
}

/// Reads `body_file`, binds `socket` (a stale file replaced) on a
/// current-thread runtime, sends `READY=1` and runs `serve` with both: the
/// setup the two baseline servers share.
fn run_baseline<Fut>(
    socket: &Path,
    body_file: &Path,
    what: &str,
    serve: impl FnOnce(UnixListener, Bytes) -> Fut,
) -> Result<()>
where
    Fut: std::future::Future<Output = Result<()>>,
{
    let body = Bytes::from(std::fs::read(body_file)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        wispanel_license::systemd::ready(what);
        serve(listener, body).await
    })
}

/// The baseline server: serves `body` (as `application/json`) to every
/// request on `socket`, HTTP/1.1 keep-alive, on a current-thread runtime.
/// Runs until killed.
pub fn run_baseline_server(socket: &Path, body_file: &Path) -> Result<()> {
    run_baseline(
        socket,
        body_file,
        "baseline server",
        |listener, body| async move {
            let body = Arc::new(body);
            loop {
                let (stream, _) = listener.accept().await?;
                let body = body.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        let body = (*body).clone();
                        async move {
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        },
    )
}

/// The bare axum baseline (issue 22's "bare axum"): a router with the one
/// route `GET /v1/status` answering `body`, served by `axum::serve` on
/// `socket`, on a current-thread runtime. Runs until killed.
pub fn run_baseline_axum(socket: &Path, body_file: &Path) -> Result<()> {
    run_baseline(
        socket,
        body_file,
        "baseline axum server",
        |listener, body| async move {
            let app = axum::Router::new().route(
                "/v1/status",
                axum::routing::get(move || {
                    let body = body.clone();
                    async move { ([("content-type", "application/json")], body) }
                }),
            );
            axum::serve(listener, app).await?;
            Ok(())
        },
    )
}

/// A one-frame body (hyper 1 needs a `Body`; `http-body-util` is not a
/// dependency, so this is its `Full` in a few lines).
mod http_body_util_free {
    use bytes::Bytes;
    use hyper::body::{Body, Frame, SizeHint};
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Full(Option<Bytes>);

    impl Full {
        pub fn new(b: Bytes) -> Full {
            Full(Some(b))
        }
    }

    impl Body for Full {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_none()
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
        }
    }
}
