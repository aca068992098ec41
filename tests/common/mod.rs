//! Shared helpers of the daemon's integration tests: the portal simulator on
//! its own tokio runtime, a configuration in a temporary directory, the
//! daemon in-process ([`Env::serve`]: `daemon::run` on a thread of its own,
//! in real time, with the real portal client) or the daemon binary as a
//! child process that is always reaped ([`Env::start`]: only for what needs
//! a process: signals, kill -9, `$NOTIFY_SOCKET`, the journal, socket
//! activation), a tiny HTTP/1.1 client over the status socket, a systemd
//! notification socket, and a polling helper. Every wait is bounded; no
//! fixed ports.

#![allow(dead_code)]

use serde_json::Value;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wispanel_core::timestamp::Timestamp;
use wispanel_license::socket::client;
use wispanel_portal_sim::{self as sim, RecordedRequest, SimHandle, SimOptions};

pub use wispanel_portal_sim::keys;

/// The longest any condition is waited for.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);

pub const HWID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const HWID2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// Polls `f` every 50 ms until it gives `Some`, for at most `timeout`;
/// panics naming `what` (and the last value seen, via `f`'s own message).
pub fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// The simulator on a runtime of its own, so tests can stay synchronous.
pub struct Sim {
    pub h: SimHandle,
    rt: tokio::runtime::Runtime,
}

impl Sim {
    pub fn start(opts: SimOptions) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let h = rt.block_on(sim::start(opts)).expect("the sim starts");
        Sim { h, rt }
    }

    /// HTTPS with a CA written to `dir/ca.pem`.
    pub fn https(dir: &Path) -> Sim {
        Sim::start(SimOptions::https(dir.join("ca.pem")))
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.h.requests()
    }

    pub fn count(&self) -> usize {
        self.h.requests().len()
    }

    /// Requests recorded at or after `t`.
    pub fn since(&self, t: Timestamp) -> Vec<RecordedRequest> {
        self.h
            .requests()
            .into_iter()
            .filter(|r| r.time >= t)
            .collect()
    }
}

impl std::ops::Deref for Sim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.h
    }
}

/// What goes into the configuration file.
#[derive(Clone)]
pub struct Conf {
    pub key: Option<String>,
    pub portal_url: String,
    pub ca_file: Option<PathBuf>,
    pub validate_interval: String,
    pub update_check_interval: String,
    pub retry_initial: String,
    pub retry_max: String,
    pub offline_grace: String,
    pub request_timeout: String,
    pub socket_mode: String,
    /// Raw TOML lines added at the top level.
    pub extra: String,
}

impl Conf {
    pub fn for_sim(sim: &SimHandle, key: Option<&str>) -> Conf {
        Conf {
            key: key.map(str::to_string),
            portal_url: sim.base_url.clone(),
            ca_file: sim.ca_pem_path.clone(),
            validate_interval: "30s".into(),
            update_check_interval: "1h".into(),
            retry_initial: "1s".into(),
            retry_max: "2s".into(),
            offline_grace: "7d".into(),
            request_timeout: "2s".into(),
            socket_mode: "0660".into(),
            extra: String::new(),
        }
    }
}

/// A temporary directory with a configuration, a hardware id file, the state
/// directory and the socket path inside.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub hwid_file: PathBuf,
    pub conf: Conf,
}

impl Env {
    pub fn new(conf: Conf) -> Env {
        let dir = tempfile::tempdir().unwrap();
        Env::in_dir(dir, conf)
    }

    pub fn in_dir(dir: tempfile::TempDir, conf: Conf) -> Env {
        let p = dir.path().to_path_buf();
        let env = Env {
            config: p.join("license.toml"),
            state_dir: p.join("state"),
            socket: p.join("run").join("status.sock"),
            hwid_file: p.join("hardware-id"),
            conf,
            dir,
        };
        std::fs::write(&env.hwid_file, format!("{HWID}\n")).unwrap();
        env.write_config();
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// Writes `self.conf` to `self.config`.
    pub fn write_config(&self) {
        let c = &self.conf;
        let mut t = String::new();
        if let Some(k) = &c.key {
            t.push_str(&format!("license_key = \"{k}\"\n"));
        }
        t.push_str(&format!("portal_url = \"{}\"\n", c.portal_url));
        if let Some(ca) = &c.ca_file {
            t.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
        }
        t.push_str("product_version = \"1.4.2\"\n");
        t.push_str(&format!("state_dir = \"{}\"\n", self.state_dir.display()));
        t.push_str(&format!("socket_path = \"{}\"\n", self.socket.display()));
        t.push_str(&format!("socket_mode = \"{}\"\n", c.socket_mode));
        t.push_str(&c.extra);
        t.push_str(&format!(
            "\n[schedule]\nvalidate_interval = \"{}\"\nupdate_check_interval = \"{}\"\n\
             splay = \"0s\"\nretry_initial = \"{}\"\nretry_max = \"{}\"\n\
             offline_grace = \"{}\"\nrequest_timeout = \"{}\"\n",
            c.validate_interval,
            c.update_check_interval,
            c.retry_initial,
            c.retry_max,
            c.offline_grace,
            c.request_timeout
        ));
        t.push_str(&format!(
            "\n[hardware]\nid_file = \"{}\"\n",
            self.hwid_file.display()
        ));
        std::fs::write(&self.config, t).unwrap();
    }

    /// Runs the daemon in-process and waits until its socket answers; see
    /// [`Served`].
    pub fn serve(&self) -> Served {
        let d = self
            .try_serve()
            .unwrap_or_else(|e| panic!("the in-process daemon did not start: {e}"));
        d.wait_ready(self);
        d
    }

    /// Runs the daemon in-process: loads the configuration and binds the
    /// socket as the binary does (the error as the binary logs it, if
    /// either fails), then `daemon::run` on a thread of its own.
    pub fn try_serve(&self) -> Result<Served, String> {
        Served::start(&self.config, None)
    }

    /// Runs the daemon in-process on a socket that already listens (what
    /// systemd's socket activation hands over); waits until it answers.
    pub fn serve_on(&self, listener: std::os::unix::net::UnixListener) -> Served {
        let d = Served::start(&self.config, Some(listener))
            .unwrap_or_else(|e| panic!("the in-process daemon did not start: {e}"));
        d.wait_ready(self);
        d
    }

    /// Starts the daemon binary with no systemd variables.
    pub fn spawn(&self) -> Daemon {
        Daemon::spawn(self, &[])
    }

    /// Starts the daemon binary and waits until its socket answers.
    pub fn start(&self) -> Daemon {
        let d = self.spawn();
        d.wait_ready(self);
        d
    }

    pub fn get(&self, path: &str) -> Resp {
        request(&self.socket, "GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: Option<&str>) -> Resp {
        request(&self.socket, "POST", path, &[], body)
    }

    /// `GET /v1/status` as JSON.
    pub fn status(&self) -> Value {
        let r = self.get("/v1/status");
        assert_eq!(r.status, 200, "GET /v1/status: {}", r.text());
        r.json()
    }

    /// Like `status`, but `None` while the socket does not answer.
    pub fn try_status(&self) -> Option<Value> {
        let r = try_request(&self.socket, "GET", "/v1/status", &[], None).ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// Polls the status until `pred` holds; returns that status.
    pub fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_until(WAIT, what, || {
                let s = self.try_status()?;
                let ok = pred(&s);
                last = s.clone();
                ok.then_some(s)
            })
        }));
        match r {
            Ok(s) => s,
            Err(_) => panic!("timed out waiting for {what}; last status: {last:#}"),
        }
    }

    /// Waits for `license.state == state`.
    pub fn wait_state(&self, state: &str) -> Value {
        self.wait_status(&format!("license.state {state}"), |s| {
            s["license"]["state"] == state
        })
    }

    /// Reads `state.json` and parses it with the daemon's own parser.
    pub fn saved_core(&self) -> wispanel_core::machine::Core {
        let p = self.state_file();
        let text = std::fs::read_to_string(&p).unwrap();
        wispanel_license::store::Store::parse(&text, &p).unwrap()
    }
}

/// The daemon in-process, as the binary runs it (`daemon::main`): the
/// configuration loaded, the socket bound, `daemon::run` with the system
/// clock, `rand`'s jitter and the real portal client (the simulator's URL
/// and CA come from the configuration), on a `current_thread` runtime of
/// its own on a thread of its own, in real time; the socket file removed
/// at the end unless it was passed in ([`Env::serve_on`]). Only systemd is off (no `$NOTIFY_SOCKET` messages). The
/// proxy variables are the test process's, as for the harness's real
/// client: none is expected.
///
/// [`Served::reload`] is what SIGHUP does, [`Served::stop`] (and dropping
/// it) what SIGTERM does; the daemon's log lines (INFO and up, plain text)
/// are captured, from the runtime's thread and its blocking threads.
pub struct Served {
    stop: tokio_util::sync::CancellationToken,
    reload: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    logs: wispanel_license::testing::Logs,
}

impl Served {
    fn start(
        config: &Path,
        listening: Option<std::os::unix::net::UnixListener>,
    ) -> Result<Served, String> {
        use wispanel_license::{config::Config, daemon, socket};
        let logs = wispanel_license::testing::Logs::default();
        let writer = logs.clone();
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone())
                .finish(),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let reload = Arc::new(tokio::sync::Notify::new());
        let (started_tx, started_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let config = config.to_path_buf();
        let (token, notify) = (stop.clone(), reload.clone());
        let thread = std::thread::Builder::new()
            .name("in-process daemon".into())
            .spawn(move || {
                let _log = tracing::dispatcher::set_default(&dispatch);
                let on_blocking = dispatch.clone();
                let prepared = (|| -> Result<_, String> {
                    let config = Config::load(&config).map_err(|e| e.to_string())?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        // The blocking pool's threads (saves, textfile writes)
                        // log into the same capture for their whole life.
                        .on_thread_start(move || {
                            std::mem::forget(tracing::dispatcher::set_default(&on_blocking));
                        })
                        .build()
                        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
                    let passed = listening.is_some();
                    let listener = {
                        let _rt = rt.enter();
                        match listening {
                            Some(l) => l
                                .set_nonblocking(true)
                                .and_then(|()| tokio::net::UnixListener::from_std(l))
                                .map_err(|e| format!("the passed listener: {e}"))?,
                            None => socket::bind(&config).map_err(|e| e.to_string())?,
                        }
                    };
                    Ok((config, rt, listener, passed))
                })();
                let (config, rt, listener, passed) = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!("{e}");
                        let _ = started_tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let _ = started_tx.send(Ok(()));
                let socket_path = config.socket_path.clone();
                let mut env = daemon::Env::production();
                env.systemd = false;
                env.reload = notify;
                let result =
                    rt.block_on(daemon::run(config, listener, token.cancelled_owned(), env));
                // As `daemon::main`: a passed socket is not the daemon's to remove.
                if !passed {
                    let _ = std::fs::remove_file(&socket_path);
                }
                result.map_err(|e| e.to_string())
            })
            .map_err(|e| format!("cannot start the daemon's thread: {e}"))?;
        let served = Served {
            stop,
            reload,
            thread: Some(thread),
            logs,
        };
        match started_rx.recv_timeout(WAIT) {
            Ok(Ok(())) => Ok(served),
            Ok(Err(e)) => {
                // The thread ends with this error: nothing to stop.
                let mut served = served;
                if let Some(t) = served.thread.take() {
                    let _ = t.join();
                }
                Err(e)
            }
            Err(e) => Err(format!("the daemon's thread gave no word in {WAIT:?}: {e}")),
        }
    }

    /// Waits until the socket answers `GET /v1/status` (or panics with the log).
    pub fn wait_ready(&self, env: &Env) {
        let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_until(WAIT, "the in-process daemon's socket", || {
                let r = try_request(&env.socket, "GET", "/v1/status", &[], None).ok()?;
                (r.status == 200).then_some(())
            })
        }));
        if ready.is_err() {
            panic!(
                "the in-process daemon did not answer on its socket; log:\n{}",
                self.log()
            );
        }
    }

    /// Asks for a reload of the configuration (what SIGHUP does).
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    /// The daemon's log lines so far.
    pub fn log(&self) -> String {
        self.logs.text()
    }

    /// Waits until the log contains `what`; gives the log.
    pub fn wait_log(&self, what: &str) -> String {
        poll_until(WAIT, &format!("{what:?} in the log"), || {
            let l = self.log();
            l.contains(what).then_some(l)
        })
    }

    /// Shuts down (what SIGTERM does) and waits for the end, at most
    /// [`WAIT`]; `run`'s result, or why there is none.
    pub fn stop(mut self) -> Result<(), String> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), String> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.stop.cancel();
        let start = Instant::now();
        while !thread.is_finished() {
            if start.elapsed() > WAIT {
                // Left running: the test fails rather than hangs.
                return Err(format!(
                    "the in-process daemon did not stop within {WAIT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match thread.join() {
            Ok(r) => r,
            Err(_) => Err("the in-process daemon's thread panicked".into()),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let stopped = self.finish();
        if std::thread::panicking() {
            eprintln!("--- in-process daemon log ---\n{}", self.log());
        } else if let Err(e) = stopped {
            panic!("{e}");
        }
    }
}

/// A running `wispanel-licensed`; killed and reaped on drop.
pub struct Daemon {
    pub child: Child,
    pub log_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Spawns the daemon with extra environment variables (systemd's).
    pub fn spawn(env: &Env, vars: &[(&str, String)]) -> Daemon {
        Daemon::spawn_config(&env.config, env.path(), vars)
    }

    /// Spawns the daemon through `sh -c '... exec'` so that `WATCHDOG_PID` is
    /// the daemon's own pid (systemd sets it so).
    pub fn spawn_watchdog_pid_self(env: &Env, vars: &[(&str, String)]) -> Daemon {
        Daemon::spawn_inner(&env.config, env.path(), vars, true)
    }

    pub fn spawn_config(config: &Path, log_dir: &Path, vars: &[(&str, String)]) -> Daemon {
        Daemon::spawn_inner(config, log_dir, vars, false)
    }

    fn spawn_inner(
        config: &Path,
        log_dir: &Path,
        vars: &[(&str, String)],
        watchdog_pid_self: bool,
    ) -> Daemon {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log_path = log_dir.join(format!("daemon-{}-{n}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).unwrap();
        let bin = env!("CARGO_BIN_EXE_wispanel-licensed");
        let mut cmd = if watchdog_pid_self {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("WATCHDOG_PID=$$ exec \"$0\" --config \"$1\"")
                .arg(bin)
                .arg(config);
            c
        } else {
            let mut c = Command::new(bin);
            c.arg("--config").arg(config);
            c
        };
        for v in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "CREDENTIALS_DIRECTORY",
            "WISPANEL_LICENSE_CONFIG",
            "JOURNAL_STREAM",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("NO_PROXY", "*").env("RUST_LOG", "info");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn wispanel-licensed");
        Daemon {
            child,
            log_path,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the socket answers `GET /v1/health` (or panics with the log).
    pub fn wait_ready(&self, env: &Env) {
        let start = Instant::now();
        loop {
            if let Ok(r) = try_request(&env.socket, "GET", "/v1/status", &[], None)
                && r.status == 200
            {
                return;
            }
            if start.elapsed() > WAIT {
                panic!(
                    "the daemon did not answer on its socket; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn wait_log(&self, what: &str) -> String {
        poll_until(WAIT, &format!("{what:?} in the log"), || {
            let l = self.log();
            l.contains(what).then_some(l)
        })
    }

    pub fn signal(&self, sig: i32) {
        let rc = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(rc.success(), "kill -{sig} {}", self.pid());
    }

    pub fn sigterm(&self) {
        self.signal(15);
    }

    pub fn sighup(&self) {
        self.signal(1);
    }

    /// Waits for the exit, at most `timeout`; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited {
            return Some(s);
        }
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.exited = Some(s);
                return Some(s);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM and wait (at most 10 s); panics with the log if it did not stop.
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        match self.wait_exit(Duration::from_secs(10)) {
            Some(s) => s,
            None => panic!("the daemon did not stop on SIGTERM; log:\n{}", self.log()),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log {} ---\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// An HTTP answer from the socket.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<client::Answer> for Resp {
    fn from(a: client::Answer) -> Resp {
        Resp {
            status: a.status,
            headers: a.headers,
            body: a.body,
        }
    }
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts the panel's error envelope with `status` and `code`.
    pub fn assert_envelope(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        assert_eq!(v["success"], false, "{v}");
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["status"], status, "{v}");
        assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert!(v["message"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut keys = keys;
        keys.sort();
        assert_eq!(
            keys,
            ["code", "error", "message", "status", "success"],
            "{v}"
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        v
    }
}

/// One request on a fresh connection (`Connection: close`); panics on I/O errors.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    try_request(socket, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", socket.display()))
}

pub fn try_request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Resp> {
    // The product's own client of the socket: one parser for everyone.
    client::request_with(
        socket,
        method,
        path,
        headers,
        body.map(str::as_bytes),
        Duration::from_secs(30),
    )
    .map(Resp::from)
    .map_err(std::io::Error::other)
}

/// Parses a whole HTTP/1.1 response (Content-Length, chunked, or to EOF).
pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    client::parse_answer(raw)
        .map(Resp::from)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A systemd notification socket owned by the test: every datagram is kept
/// with the time it arrived.
pub struct Notify {
    pub path: PathBuf,
    pub messages: Arc<Mutex<Vec<(Timestamp, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Notify {
    pub fn new(dir: &Path) -> Notify {
        let (path, sock) = Notify::bind(dir);
        Notify::from_socket(path, sock, Vec::new())
    }

    /// Binds the datagram socket without reading it yet (see `drain`).
    pub fn bind(dir: &Path) -> (PathBuf, UnixDatagram) {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        (path, sock)
    }

    /// Every datagram already queued on `sock`, without waiting.
    pub fn drain(sock: &UnixDatagram) -> Vec<String> {
        sock.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::new();
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        sock.set_nonblocking(false).unwrap();
        out
    }

    /// Reads `sock` from now on in a thread; `earlier` are datagrams drained before.
    pub fn from_socket(path: PathBuf, sock: UnixDatagram, earlier: Vec<String>) -> Notify {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let now = wispanel_license::clock::now();
        let messages = Arc::new(Mutex::new(
            earlier.into_iter().map(|m| (now, m)).collect::<Vec<_>>(),
        ));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, st) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let now = wispanel_license::clock::now();
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    m.lock().unwrap().push((now, text));
                }
            }
        });
        Notify {
            path,
            messages,
            stop,
        }
    }

    pub fn var(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.display().to_string())
    }

    /// Every `NAME=value` line received so far, with its arrival time.
    pub fn lines(&self) -> Vec<(Timestamp, String)> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(t, m)| m.lines().map(|l| (*t, l.to_string())).collect::<Vec<_>>())
            .collect()
    }

    /// The first time a line equal to (or, ending in `=`, starting with) `line` arrived.
    pub fn first(&self, line: &str) -> Option<Timestamp> {
        self.lines()
            .into_iter()
            .find(|(_, l)| l == line)
            .map(|(t, _)| t)
    }

    pub fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|(_, l)| l == line).count()
    }

    pub fn wait(&self, line: &str) -> Timestamp {
        poll_until(WAIT, &format!("{line} on NOTIFY_SOCKET"), || {
            self.first(line)
        })
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A started sim + environment + in-process daemon in state `active` with
/// `keys::GOOD`.
pub fn active_served(conf: impl FnOnce(&mut Conf)) -> (Sim, Env, Served) {
    active_served_with(true, conf)
}

/// As `active_served`, over HTTPS (`https`) or plain HTTP.
pub fn active_served_with(https: bool, conf: impl FnOnce(&mut Conf)) -> (Sim, Env, Served) {
    let (sim, env) = sim_and_env(https, conf);
    let d = env.serve();
    env.wait_state("active");
    (sim, env, d)
}

fn sim_and_env(https: bool, conf: impl FnOnce(&mut Conf)) -> (Sim, Env) {
    let dir = tempfile::tempdir().unwrap();
    let sim = if https {
        Sim::https(dir.path())
    } else {
        Sim::start(SimOptions::plain())
    };
    let mut c = Conf::for_sim(&sim, Some(keys::GOOD));
    conf(&mut c);
    (sim, Env::in_dir(dir, c))
}

/// A started sim + environment + daemon process in state `active` with
/// `keys::GOOD`.
pub fn active_daemon(conf: impl FnOnce(&mut Conf)) -> (Sim, Env, Daemon) {
    active_daemon_with(true, conf)
}

/// As `active_daemon`, over HTTPS (`https`) or plain HTTP.
pub fn active_daemon_with(https: bool, conf: impl FnOnce(&mut Conf)) -> (Sim, Env, Daemon) {
    let (sim, env) = sim_and_env(https, conf);
    let d = env.start();
    env.wait_state("active");
    (sim, env, d)
}

/// Parses an RFC 3339 field of a status document.
pub fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(Timestamp::parse_rfc3339)
}

pub fn ms(t: Timestamp) -> i64 {
    t.0
}

/// Sleeps; only for "nothing happens during this time" checks.
pub fn quiet_for(d: Duration) {
    std::thread::sleep(d);
}

/// Whether we are root (some tests need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
