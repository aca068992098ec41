//! The in-process test harness (feature `test-util`, never in the shipped
//! programs): the daemon run through [`daemon::run`] in the test's own tokio
//! runtime, with its configuration, state and socket in a temporary
//! directory, a clock that follows tokio's (paused) time, a seeded jitter,
//! and either a scripted [`FakePortal`] or the real [`PortalClient`] against
//! a URL (the portal simulator, a local stub).
//!
//! Under `#[tokio::test(start_paused = true)]` hours of schedule take
//! milliseconds and the assertions are on exact request times:
//!
//! ```ignore
//! let h = Harness::new(DEFAULTS, |_, _| Reply::Valid);
//! let d = h.start(1);                       // daemon::run, socket in h's dir
//! pass(hours(7)).await;                     // paused time: instant
//! assert_eq!(h.portal().licence_requests().len(), 2);
//! let doc = h.status().await;               // GET /v1/status over the socket
//! d.stop().await;                           // clean shutdown, state saved
//! let again = h.start(2);                   // a restart on the same directory
//! ```
//!
//! The socket is spoken to with the product's own client
//! ([`crate::socket::client`]), on a blocking thread: tokio does not advance
//! paused time while a blocking task runs, so a request is answered before
//! any timer fires. The real portal client's exchanges
//! ([`Harness::real_portal`]) run on a runtime of their own, in real time
//! (their `request_timeout` is real), waited for the same way: for the daemon
//! they take no time. A simulator run in the paused test runtime itself
//! answers at once, but its scripted delays are paused timers that never
//! fire while an exchange holds the time: run one with delays on a runtime of
//! its own (`tests/socket.rs`, `RealSim`). [`capture_logs`] collects the
//! daemon's log lines.

use crate::clock::{Clock, TokioClock};
use crate::config::Config;
use crate::daemon::{self, BoxFuture, Env, Portal, PortalFactory, StartError};
use crate::portal::PortalClient;
use crate::socket::client::{self, Answer};
use crate::store::{Loaded, Store};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wispanel_core::classify::{self, Classified, Exchange};
use wispanel_core::machine::Core;
use wispanel_core::schedule::SeededJitter;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{Endpoint, ErrorKind};

/// The licence key every harness configuration carries (the simulator's
/// "good" key).
pub const KEY: &str = "WISP-GOOD-0000-SA6T";
/// The hardware id of the harness's `[hardware] id_file`.
pub const HWID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The wall time at which the harness's clock starts unless told otherwise
/// (2027-01-15T08:00:00Z).
pub const T0: Timestamp = Timestamp(1_800_000_000_000);

pub const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub const fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// What the fake portal answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with a valid licence (no `valid_until`) or an update answer.
    Valid,
    /// Any status, headers and body.
    Status(u16, Vec<(&'static str, String)>, &'static str),
    /// Any status, headers and an owned body.
    Body(u16, Vec<(&'static str, String)>, String),
    /// No answer within `request_timeout`.
    Timeout,
    /// A transport failure of this kind (`connect`, `tls`).
    Failed(ErrorKind),
}

impl Reply {
    /// A refusal envelope with `status` and `code`.
    pub fn refused(status: u16, code: &str) -> Reply {
        Reply::Body(
            status,
            vec![],
            format!(r#"{{"success": false, "code": "{code}", "error": "refused by the test"}}"#),
        )
    }
}

/// Decides each answer from the endpoint and the (injected) time.
pub type Script = Box<dyn Fn(Endpoint, Timestamp) -> Reply + Send + Sync>;

/// One request the fake portal saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub endpoint: Endpoint,
    /// The daemon's time when it came.
    pub at: Timestamp,
    pub body: serde_json::Value,
    pub idempotency_key: Option<String>,
}

/// A portal that answers at once, as its script says, classifies at the
/// daemon's clock, and records each request.
pub struct FakePortal {
    script: Mutex<Script>,
    log: Mutex<Vec<Request>>,
}

impl FakePortal {
    pub fn new(
        script: impl Fn(Endpoint, Timestamp) -> Reply + Send + Sync + 'static,
    ) -> FakePortal {
        FakePortal {
            script: Mutex::new(Box::new(script)),
            log: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the script (the portal "changes its mind" mid-test).
    pub fn set_script(
        &self,
        script: impl Fn(Endpoint, Timestamp) -> Reply + Send + Sync + 'static,
    ) {
        if let Ok(mut s) = self.script.lock() {
            *s = Box::new(script);
        }
    }

    fn answer(
        &self,
        endpoint: Endpoint,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
        now: Timestamp,
    ) -> Classified {
        if let Ok(mut log) = self.log.lock() {
            log.push(Request {
                endpoint,
                at: now,
                body: body.clone(),
                idempotency_key: idempotency_key.map(str::to_string),
            });
        }
        let reply = match self.script.lock() {
            Ok(s) => s(endpoint, now),
            Err(_) => Reply::Failed(ErrorKind::Connect),
        };
        let (status, headers, body) = match reply {
            Reply::Timeout => {
                let e = Exchange::Failed {
                    kind: ErrorKind::Timeout,
                    message: "no complete answer within request_timeout".into(),
                };
                return classify::classify(endpoint, &e, now);
            }
            Reply::Failed(kind) => {
                let e = Exchange::Failed {
                    kind,
                    message: format!("the test's portal failed: {kind:?}"),
                };
                return classify::classify(endpoint, &e, now);
            }
            Reply::Valid if endpoint == Endpoint::CheckUpdate => (
                200,
                vec![],
                r#"{"update_available": false, "current_version": "1.4.2", "latest_version": "1.4.2"}"#
                    .to_string(),
            ),
            Reply::Valid => (
                200,
                vec![],
                r#"{"valid": true, "license": {"tier": "free", "max_users": 30}}"#.to_string(),
            ),
            Reply::Status(s, h, b) => (s, h, b.to_string()),
            Reply::Body(s, h, b) => (s, h, b),
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let e = Exchange::Answer {
            status,
            header: &header,
            body: body.as_bytes(),
            body_problem: None,
        };
        classify::classify(endpoint, &e, now)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every request so far as (endpoint, time).
    pub fn log(&self) -> Vec<(Endpoint, Timestamp)> {
        self.requests()
            .into_iter()
            .map(|r| (r.endpoint, r.at))
            .collect()
    }

    /// The licence requests so far (activate, validate), in order.
    pub fn licence_requests(&self) -> Vec<(Endpoint, Timestamp)> {
        self.log()
            .into_iter()
            .filter(|(e, _)| matches!(e, Endpoint::Activate | Endpoint::Validate))
            .collect()
    }

    /// How many requests to `endpoint` so far.
    pub fn count(&self, endpoint: Endpoint) -> usize {
        self.log().iter().filter(|(e, _)| *e == endpoint).count()
    }
}

impl Portal for FakePortal {
    fn call<'a>(
        &'a self,
        endpoint: Endpoint,
        body: &'a serde_json::Value,
        idempotency_key: Option<&'a str>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Classified> {
        Box::pin(async move { self.answer(endpoint, body, idempotency_key, clock.now()) })
    }
}

/// A tokio runtime of real time for the real client's exchanges, shut down
/// in the background when dropped (dropping a runtime blocks, which an
/// async context forbids).
struct RealTime(Option<tokio::runtime::Runtime>);

impl Drop for RealTime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A clock stopped at one instant.
struct At(Timestamp);

impl Clock for At {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// The real client. Each exchange runs on a runtime of its own, in real time
/// (its `request_timeout` is real), waited for from a blocking thread: tokio
/// does not advance paused time while a blocking task runs, so for the
/// daemon the exchange takes no time at all, and a timer cannot fire merely
/// because paused time jumped while the answer was on its way.
struct HeldPortal {
    client: PortalClient,
    rt: Arc<RealTime>,
    log: Arc<Mutex<Vec<(Endpoint, Timestamp)>>>,
}

impl Portal for HeldPortal {
    fn call<'a>(
        &'a self,
        endpoint: Endpoint,
        body: &'a serde_json::Value,
        idempotency_key: Option<&'a str>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Classified> {
        // Paused time stands still while the exchange runs, so the daemon's
        // "now" at the answer is its "now" at the call; it is read here, in
        // the daemon's runtime (tokio's clock on the other runtime is real).
        let now = clock.now();
        if let Ok(mut log) = self.log.lock() {
            log.push((endpoint, now));
        }
        let client = self.client.clone();
        let body = body.clone();
        let key = idempotency_key.map(str::to_string);
        let rt = self.rt.clone();
        Box::pin(async move {
            let held = tokio::task::spawn_blocking(move || {
                let rt = rt.0.as_ref()?;
                Some(rt.block_on(client.exchange(endpoint, &body, key.as_deref(), &At(now))))
            })
            .await;
            match held {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => classify::classify(
                    endpoint,
                    &Exchange::Failed {
                        kind: ErrorKind::Connect,
                        message: "the harness's portal runtime is gone".into(),
                    },
                    now,
                ),
            }
        })
    }

    fn proxy_shown(&self) -> Option<String> {
        self.client.proxy().shown()
    }
}

/// `[schedule]` entries (SPEC's defaults in [`DEFAULTS`]).
#[derive(Clone, Copy, Debug)]
pub struct Sched {
    pub validate_interval: &'static str,
    pub update_check_interval: &'static str,
    pub splay: &'static str,
    pub retry_initial: &'static str,
    pub retry_max: &'static str,
    pub offline_grace: &'static str,
    pub request_timeout: &'static str,
}

/// SPEC's defaults.
pub const DEFAULTS: Sched = Sched {
    validate_interval: "6h",
    update_check_interval: "24h",
    splay: "15m",
    retry_initial: "30s",
    retry_max: "1h",
    offline_grace: "7d",
    request_timeout: "20s",
};

/// A quick schedule for tests against the simulator: a validate every 30 s,
/// no splay, retries at 1-2 s, `request_timeout` 2 s.
pub const FAST: Sched = Sched {
    validate_interval: "30s",
    update_check_interval: "1h",
    splay: "0s",
    retry_initial: "1s",
    retry_max: "2s",
    offline_grace: "7d",
    request_timeout: "2s",
};

/// Which portal the daemon talks to.
enum Via {
    Fake(Arc<FakePortal>),
    /// The real client; its exchanges as (endpoint, daemon time).
    Real(Arc<RealTime>, Arc<Mutex<Vec<(Endpoint, Timestamp)>>>),
}

/// A host for the in-process daemon: a temporary directory holding its
/// configuration (`license.toml`), state (`state/`), socket
/// (`run/status.sock`) and hardware id, the clock, and the portal.
pub struct Harness {
    dir: tempfile::TempDir,
    config: PathBuf,
    clock: Arc<TokioClock>,
    via: Via,
    portal_url: String,
    sched: Sched,
    key: Option<String>,
    extra: String,
}

impl Harness {
    /// A harness whose clock starts at [`T0`] and whose portal is a
    /// [`FakePortal`] running `script`. Call it inside the tokio runtime.
    pub fn new(
        sched: Sched,
        script: impl Fn(Endpoint, Timestamp) -> Reply + Send + Sync + 'static,
    ) -> Harness {
        Harness::build(
            sched,
            T0,
            Via::Fake(Arc::new(FakePortal::new(script))),
            "http://127.0.0.1:9".into(),
        )
    }

    /// A harness whose daemon talks to the real [`PortalClient`] at `url`
    /// (the portal simulator, a stub), its clock starting at `start`.
    pub fn real_portal(sched: Sched, start: Timestamp, url: &str) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the real client");
        let via = Via::Real(Arc::new(RealTime(Some(rt))), Arc::default());
        Harness::build(sched, start, via, url.to_string())
    }

    /// As [`Harness::new`], the clock starting at `start`.
    pub fn starting_at(
        sched: Sched,
        start: Timestamp,
        script: impl Fn(Endpoint, Timestamp) -> Reply + Send + Sync + 'static,
    ) -> Harness {
        Harness::build(
            sched,
            start,
            Via::Fake(Arc::new(FakePortal::new(script))),
            "http://127.0.0.1:9".into(),
        )
    }

    fn build(sched: Sched, start: Timestamp, via: Via, portal_url: String) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let hwid_file = dir.path().join("hardware-id");
        std::fs::write(&hwid_file, format!("{HWID}\n")).expect("the hardware-id file");
        let h = Harness {
            config: dir.path().join("license.toml"),
            dir,
            clock: Arc::new(TokioClock::starting_at(start)),
            via,
            portal_url,
            sched,
            key: Some(KEY.into()),
            extra: String::new(),
        };
        h.write_config();
        h
    }

    /// The configuration file as the harness writes it.
    pub fn config_text(&self) -> String {
        let p = self.dir.path();
        let s = &self.sched;
        let key = match &self.key {
            Some(k) => format!("license_key = \"{k}\"\n"),
            None => String::new(),
        };
        format!(
            "{key}portal_url = \"{}\"\nproduct_version = \"1.4.2\"\n\
             state_dir = \"{}\"\nsocket_path = \"{}\"\n{}\
             \n[schedule]\nvalidate_interval = \"{}\"\nupdate_check_interval = \"{}\"\n\
             splay = \"{}\"\nretry_initial = \"{}\"\nretry_max = \"{}\"\n\
             offline_grace = \"{}\"\nrequest_timeout = \"{}\"\n\
             \n[hardware]\nid_file = \"{}\"\n",
            self.portal_url,
            self.state_dir().display(),
            self.socket_path().display(),
            self.extra,
            s.validate_interval,
            s.update_check_interval,
            s.splay,
            s.retry_initial,
            s.retry_max,
            s.offline_grace,
            s.request_timeout,
            p.join("hardware-id").display(),
        )
    }

    fn write_config(&self) {
        std::fs::write(&self.config, self.config_text()).expect("the configuration file");
    }

    /// Sets the licence key (`None`: no `license_key` line) and rewrites the
    /// configuration (a running daemon sees it on its next reload).
    pub fn set_key(&mut self, key: Option<&str>) {
        self.key = key.map(str::to_string);
        self.write_config();
    }

    /// Adds top-level `key = value` lines to the configuration (before any
    /// table) and rewrites it.
    pub fn add_config(&mut self, lines: &str) {
        self.extra.push_str(lines);
        if !lines.ends_with('\n') {
            self.extra.push('\n');
        }
        self.write_config();
    }

    /// Replaces the `[schedule]` entries and rewrites the configuration.
    pub fn set_sched(&mut self, sched: Sched) {
        self.sched = sched;
        self.write_config();
    }

    /// The temporary directory everything lives in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("run").join("status.sock")
    }

    /// The hardware-id file (rewrite it to "move" the host).
    pub fn hwid_file(&self) -> PathBuf {
        self.dir.path().join("hardware-id")
    }

    /// The fake portal. Panics for a harness on the real client.
    pub fn portal(&self) -> &FakePortal {
        match &self.via {
            Via::Fake(p) => p,
            Via::Real(..) => panic!("this harness talks to a real portal, not the fake"),
        }
    }

    /// The real client's exchanges so far, as (endpoint, daemon time).
    /// Panics for a harness on the fake portal (see [`Harness::portal`]).
    pub fn exchanges(&self) -> Vec<(Endpoint, Timestamp)> {
        match &self.via {
            Via::Real(_, log) => log.lock().map(|l| l.clone()).unwrap_or_default(),
            Via::Fake(_) => panic!("this harness talks to the fake portal: see portal()"),
        }
    }

    /// The injected clock's time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The injected clock.
    pub fn clock(&self) -> Arc<TokioClock> {
        self.clock.clone()
    }

    /// The loaded configuration.
    pub fn load_config(&self) -> Config {
        Config::load(&self.config).expect("the harness's configuration is valid")
    }

    /// Starts the daemon in-process (a new one each time, same directory),
    /// its jitter seeded with `seed`.
    pub fn start(&self, seed: u64) -> Running {
        self.try_start(seed).expect("the daemon binds its socket")
    }

    /// As [`Harness::start`], or the configuration's or the socket's error.
    pub fn try_start(&self, seed: u64) -> Result<Running, String> {
        let config = Config::load(&self.config).map_err(|e| e.to_string())?;
        let listener = crate::socket::bind(&config).map_err(|e| e.to_string())?;
        let factory: PortalFactory = match &self.via {
            Via::Fake(p) => {
                let p = p.clone();
                Arc::new(move |_: &Config| Ok(p.clone() as Arc<dyn Portal>))
            }
            Via::Real(rt, log) => {
                let (rt, log) = (rt.clone(), log.clone());
                Arc::new(move |c: &Config| {
                    Ok(Arc::new(HeldPortal {
                        client: PortalClient::new(c)?,
                        rt: rt.clone(),
                        log: log.clone(),
                    }) as Arc<dyn Portal>)
                })
            }
        };
        let reload = Arc::new(Notify::new());
        let env = Env {
            clock: self.clock.clone(),
            jitter: Box::new(SeededJitter(seed)),
            portal: factory,
            systemd: false,
            reload: reload.clone(),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon::run(
            config,
            listener,
            shutdown.clone().cancelled_owned(),
            env,
        ));
        Ok(Running {
            shutdown,
            reload,
            task,
        })
    }

    /// A request over the daemon's socket with the product's client.
    pub async fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Answer, String> {
        request(&self.socket_path(), method, path, body).await
    }

    /// `GET /v1/status`, parsed.
    pub async fn status(&self) -> crate::api::StatusDocument {
        self.request("GET", "/v1/status", None)
            .await
            .and_then(|a| a.status_document())
            .expect("a status document")
    }

    /// `GET /v1/status` as JSON.
    pub async fn status_json(&self) -> serde_json::Value {
        let a = self
            .request("GET", "/v1/status", None)
            .await
            .expect("an answer to GET /v1/status");
        serde_json::from_slice(&a.body).expect("JSON from GET /v1/status")
    }

    /// Lets paused time pass a second at a time until the status (as JSON)
    /// satisfies `pred`, for at most `max`; panics naming `what` and the
    /// last status. Instant under paused time.
    pub async fn wait_status(
        &self,
        what: &str,
        max: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = self.now().add(max);
        loop {
            let s = self.status_json().await;
            if pred(&s) {
                return s;
            }
            if self.now() >= until {
                panic!("no {what} within {max:?}: {s:#}");
            }
            pass(secs(1)).await;
        }
    }

    /// Lets paused time pass a second at a time until the saved core
    /// satisfies `pred` (the state writer saves a moment after a change),
    /// for at most `max`; gives that core.
    pub async fn wait_saved(
        &self,
        what: &str,
        max: Duration,
        pred: impl Fn(&Core) -> bool,
    ) -> Core {
        let until = self.now().add(max);
        loop {
            if let Ok(store) = Store::open(&self.state_dir())
                && let Loaded::Existing(core) = store.load(self.now())
                && pred(&core)
            {
                return *core;
            }
            if self.now() >= until {
                panic!("no {what} saved within {max:?}");
            }
            pass(secs(1)).await;
        }
    }

    /// Waits (as [`Harness::wait_status`], up to 5 paused minutes) for the
    /// licence state `state`; gives the status.
    pub async fn wait_state(&self, state: &str) -> serde_json::Value {
        self.wait_status(&format!("licence state {state}"), secs(300), |s| {
            s["license"]["state"] == state
        })
        .await
    }

    /// The core as saved in `state.json`.
    pub fn saved_core(&self) -> Core {
        let store = Store::open(&self.state_dir()).expect("the state directory");
        match store.load(self.now()) {
            Loaded::Existing(core) => *core,
            Loaded::Fresh => panic!("no saved state"),
            Loaded::Corrupt { problem, .. } => panic!("the saved state is corrupt: {problem}"),
        }
    }
}

/// A request over the socket at `sock`, on a blocking thread (paused time
/// stands still meanwhile). The error is the client's, as text.
pub async fn request(
    sock: &Path,
    method: &'static str,
    path: &str,
    body: Option<&str>,
) -> Result<Answer, String> {
    request_with(sock, method, path, &[], body).await
}

/// As [`request`], with extra request headers.
pub async fn request_with(
    sock: &Path,
    method: &'static str,
    path: &str,
    headers: &[(&'static str, &'static str)],
    body: Option<&str>,
) -> Result<Answer, String> {
    let sock = sock.to_path_buf();
    let path = path.to_string();
    let body = body.map(str::to_string);
    let headers = headers.to_vec();
    tokio::task::spawn_blocking(move || {
        client::request_with(
            &sock,
            method,
            &path,
            &headers,
            body.as_deref().map(str::as_bytes),
            secs(30),
        )
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the client task failed: {e}"))?
}

/// A daemon started by [`Harness::start`].
pub struct Running {
    shutdown: CancellationToken,
    reload: Arc<Notify>,
    task: tokio::task::JoinHandle<Result<(), StartError>>,
}

impl Running {
    /// Asks for a reload (what SIGHUP does).
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    /// Shuts down (what SIGTERM does) and waits; panics if `run` failed.
    pub async fn stop(self) {
        let r = self.stop_result().await;
        assert!(r.is_ok(), "the daemon stopped with an error: {r:?}");
    }

    /// Shuts down and gives `run`'s result.
    pub async fn stop_result(self) -> Result<(), String> {
        self.shutdown.cancel();
        match self.task.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the daemon task panicked: {e}")),
        }
    }

    /// The daemon ends without a clean shutdown, as under kill -9: its task
    /// is dropped where it stands (nothing more is saved).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Lets `d` of (paused) time pass; the daemon's timers fire on the way.
pub async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Lets the daemon's ready tasks run without moving time.
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// `t - earlier`, which must not be negative.
pub fn after(t: Timestamp, earlier: Timestamp) -> Duration {
    assert!(t >= earlier, "{t} is before {earlier}");
    t.since(earlier)
}

/// `d` is within `[lo, hi]`, give or take the timer's millisecond.
pub fn assert_within(what: &str, d: Duration, lo: Duration, hi: Duration) {
    let slack = Duration::from_millis(5);
    assert!(
        d + slack >= lo && d <= hi + slack,
        "{what}: {d:?} not within [{lo:?}, {hi:?}]"
    );
}

/// `a` is the panel's error envelope with `status` and `code` (SPEC: exactly
/// `success`, `code`, `status`, `error`, `message`; JSON); gives its body.
pub fn assert_envelope(a: &Answer, status: u16, code: &str) -> serde_json::Value {
    let text = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status, status, "{text}");
    let v: serde_json::Value =
        serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status, "{v}");
    assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(v["message"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    let mut keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(
        keys,
        ["code", "error", "message", "status", "success"],
        "{v}"
    );
    assert_eq!(a.header("content-type"), Some("application/json"), "{a:?}");
    v
}

/// An RFC 3339 time of a status document.
pub fn ts(v: &serde_json::Value) -> Option<Timestamp> {
    v.as_str().and_then(Timestamp::parse_rfc3339)
}

/// The daemon's log lines, captured for the test's thread (where a
/// `current_thread` test runtime runs every daemon task) while the guard
/// lives.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether any line so far contains `what`.
    pub fn contains(&self, what: &str) -> bool {
        self.text().contains(what)
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the log lines (plain text, level INFO and up) of this thread
/// until the guard is dropped.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, Logs) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), logs)
}
