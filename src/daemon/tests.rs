//! The daemon's schedule and gate, run in-process under paused tokio time.
//!
//! The daemon runs through [`run`](super::run) with a clock that follows
//! tokio's time, a seeded jitter, and a portal that answers at once from a
//! script and records when each request came. So hours of schedule take
//! milliseconds, and the assertions are on exact request times.

use super::{Env, Portal, PortalFactory, run};
use crate::clock::{Clock, TokioClock};
use crate::config::Config;
use crate::store::{Loaded, Store};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wispanel_core::classify::{self, Classified, Exchange};
use wispanel_core::schedule::SeededJitter;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{Endpoint, ErrorKind};

const KEY: &str = "WISP-GOOD-0000-SA6T";
const HWID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The wall time at which every test starts (2027-01-15T08:00:00Z).
const T0: Timestamp = Timestamp(1_800_000_000_000);

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// What the fake portal answers.
#[derive(Clone, Debug)]
enum Reply {
    /// 200 with a valid licence (no `valid_until`) or an update answer.
    Valid,
    /// Any status, headers and body.
    Status(u16, Vec<(&'static str, String)>, &'static str),
    /// No answer within `request_timeout`.
    Timeout,
}

type Script = Box<dyn Fn(Endpoint, Timestamp) -> Reply + Send + Sync>;

/// A portal that answers at once, as `script` says, and records each request.
struct FakePortal {
    clock: Arc<dyn Clock>,
    script: Script,
    log: Mutex<Vec<(Endpoint, Timestamp)>>,
}

impl FakePortal {
    fn answer(&self, endpoint: Endpoint) -> Classified {
        let now = self.clock.now();
        if let Ok(mut log) = self.log.lock() {
            log.push((endpoint, now));
        }
        let (status, headers, body) = match (self.script)(endpoint, now) {
            Reply::Timeout => {
                let e = Exchange::Failed {
                    kind: ErrorKind::Timeout,
                    message: "no complete answer within request_timeout".into(),
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

    /// The licence requests so far (activate, validate), in order.
    fn licence_requests(&self) -> Vec<(Endpoint, Timestamp)> {
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(e, _)| matches!(e, Endpoint::Activate | Endpoint::Validate))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Portal for FakePortal {
    fn call<'a>(
        &'a self,
        endpoint: Endpoint,
        _body: &'a serde_json::Value,
    ) -> super::BoxFuture<'a, Classified> {
        Box::pin(async move { self.answer(endpoint) })
    }
}

/// A state directory, a configuration, the fake portal and the clock.
struct Host {
    dir: tempfile::TempDir,
    config: PathBuf,
    clock: Arc<TokioClock>,
    portal: Arc<FakePortal>,
}

/// `[schedule]` entries (SPEC's defaults unless a test says otherwise).
struct Sched {
    validate_interval: &'static str,
    update_check_interval: &'static str,
    splay: &'static str,
    retry_initial: &'static str,
    retry_max: &'static str,
    offline_grace: &'static str,
}

const DEFAULTS: Sched = Sched {
    validate_interval: "6h",
    update_check_interval: "24h",
    splay: "15m",
    retry_initial: "30s",
    retry_max: "1h",
    offline_grace: "7d",
};

impl Host {
    fn new(
        s: Sched,
        script: impl Fn(Endpoint, Timestamp) -> Reply + Send + Sync + 'static,
    ) -> Host {
        let dir = tempfile::tempdir().expect("temporary directory");
        let p = dir.path();
        let hwid_file = p.join("hardware-id");
        std::fs::write(&hwid_file, format!("{HWID}\n")).expect("hardware-id file");
        let config = p.join("license.toml");
        let text = format!(
            "license_key = \"{KEY}\"\nportal_url = \"http://127.0.0.1:9\"\n\
             product_version = \"1.4.2\"\nstate_dir = \"{}\"\nsocket_path = \"{}\"\n\
             \n[schedule]\nvalidate_interval = \"{}\"\nupdate_check_interval = \"{}\"\n\
             splay = \"{}\"\nretry_initial = \"{}\"\nretry_max = \"{}\"\n\
             offline_grace = \"{}\"\nrequest_timeout = \"20s\"\n\
             \n[hardware]\nid_file = \"{}\"\n",
            p.join("state").display(),
            p.join("run").join("status.sock").display(),
            s.validate_interval,
            s.update_check_interval,
            s.splay,
            s.retry_initial,
            s.retry_max,
            s.offline_grace,
            hwid_file.display(),
        );
        std::fs::write(&config, text).expect("configuration");
        let clock = Arc::new(TokioClock::starting_at(T0));
        let portal = Arc::new(FakePortal {
            clock: clock.clone(),
            script: Box::new(script),
            log: Mutex::new(Vec::new()),
        });
        Host {
            dir,
            config,
            clock,
            portal,
        }
    }

    /// Starts the daemon in-process (a new one each time, same directory).
    fn start(&self, seed: u64) -> Running {
        let config = Config::load(&self.config).expect("valid configuration");
        let listener = crate::socket::bind(&config).expect("bind the socket");
        let portal = self.portal.clone();
        let factory: PortalFactory =
            Arc::new(move |_: &Config| Ok(portal.clone() as Arc<dyn Portal>));
        let env = Env {
            clock: self.clock.clone(),
            jitter: Box::new(SeededJitter(seed)),
            portal: factory,
            systemd: false,
            reload: Arc::new(Notify::new()),
        };
        let reload = env.reload.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            config,
            listener,
            shutdown.clone().cancelled_owned(),
            env,
        ));
        Running {
            shutdown,
            task,
            reload,
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), super::StartError>>,
    /// SIGHUP for this daemon.
    reload: Arc<Notify>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let r = self.task.await.expect("the daemon task ended");
        assert!(r.is_ok(), "the daemon stopped with an error: {r:?}");
    }
}

/// Lets `d` of (paused) time pass; the daemon's timers fire on the way.
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

fn after(t: Timestamp, earlier: Timestamp) -> Duration {
    assert!(t >= earlier, "{t} is before {earlier}");
    t.since(earlier)
}

/// `d` is within `[lo, hi]`, give or take the timer's millisecond.
fn assert_within(what: &str, d: Duration, lo: Duration, hi: Duration) {
    let slack = Duration::from_millis(5);
    assert!(
        d + slack >= lo && d <= hi + slack,
        "{what}: {d:?} not within [{lo:?}, {hi:?}]"
    );
}

fn saved_next_validate(dir: &Path, now: Timestamp) -> Timestamp {
    let store = Store::open(dir).expect("state directory");
    match store.load(now) {
        Loaded::Existing(core) => core.plan.next_validate_at.expect("a next validate time"),
        _ => panic!("no saved state"),
    }
}

#[tokio::test(start_paused = true)]
async fn first_start_activates_at_once_then_validates_on_the_interval() {
    let h = Host::new(DEFAULTS, |_, _| Reply::Valid);
    let d = h.start(1);
    pass(secs(1)).await;
    let reqs = h.portal.licence_requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].0, Endpoint::Activate);
    assert_within("first request", after(reqs[0].1, T0), secs(0), secs(0));
    // The first update check follows the first valid verdict.
    let all = h.portal.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(
        all.get(1).map(|r| r.0),
        Some(Endpoint::CheckUpdate),
        "{all:?}"
    );

    pass(hours(7)).await;
    let reqs = h.portal.licence_requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].0, Endpoint::Validate);
    assert_within(
        "validate after activate",
        after(reqs[1].1, reqs[0].1),
        hours(6),
        hours(6) + secs(15 * 60),
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_closes_the_gate_and_the_return_is_spread() {
    let h = Host::new(DEFAULTS, |_, t| {
        if t == T0 {
            Reply::Status(
                429,
                vec![("Retry-After", "120".into())],
                r#"{"success": false, "code": "RATE_LIMITED", "error": "slow down"}"#,
            )
        } else {
            Reply::Valid
        }
    });
    let d = h.start(2);
    pass(secs(119)).await;
    assert_eq!(
        h.portal.licence_requests().len(),
        1,
        "nothing before the gate's end"
    );
    pass(secs(300)).await;
    let reqs = h.portal.licence_requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    // Spread over min(splay, gate / 2) = 60 s after the gate.
    assert_within("after the gate", after(reqs[1].1, T0), secs(120), secs(180));
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_doubling_to_retry_max() {
    let s = Sched {
        retry_max: "2m",
        ..DEFAULTS
    };
    let h = Host::new(s, |_, _| Reply::Status(503, vec![], "{}"));
    let d = h.start(3);
    pass(hours(1)).await;
    let reqs = h.portal.licence_requests();
    assert!(reqs.len() > 8, "{reqs:?}");
    for (n, w) in reqs.windows(2).enumerate() {
        // d = min(retry_max, retry_initial × 2^n): 30 s, 60 s, 120 s, 120 s, …
        let cap = secs(30u64 << n.min(2));
        assert_within(
            &format!("wait after failure {n}"),
            after(w[1].1, w[0].1),
            cap / 2,
            cap,
        );
    }
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn timeouts_back_off_like_any_failure() {
    let h = Host::new(DEFAULTS, |_, _| Reply::Timeout);
    let d = h.start(4);
    pass(secs(200)).await;
    let reqs = h.portal.licence_requests();
    assert!(reqs.len() >= 3, "{reqs:?}");
    for (n, w) in reqs.windows(2).take(3).enumerate() {
        let cap = secs(30u64 << n);
        assert_within(
            &format!("wait after timeout {n}"),
            after(w[1].1, w[0].1),
            cap / 2,
            cap,
        );
    }
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn grace_paces_retries_at_the_validate_interval_until_the_last_day() {
    // No update checks in the window: they share the failure count.
    let s = Sched {
        update_check_interval: "30d",
        offline_grace: "3d",
        ..DEFAULTS
    };
    // Valid in the first hour, then the portal is down for good.
    let h = Host::new(s, |_, t| {
        if t < T0.add(hours(1)) {
            Reply::Valid
        } else {
            Reply::Status(503, vec![], "{}")
        }
    });
    let d = h.start(5);
    pass(hours(60)).await;
    let reqs = h.portal.licence_requests();
    let grace_until = T0.add(hours(72));
    let last_day = grace_until.sub(hours(24));
    assert_eq!(reqs[0], (Endpoint::Activate, T0));
    assert_within(
        "first validate",
        after(reqs[1].1, T0),
        hours(6),
        hours(6) + secs(900),
    );
    // Two quick retries (n = 0, 1) with the back-off ...
    assert_within("retry n=0", after(reqs[2].1, reqs[1].1), secs(15), secs(30));
    assert_within("retry n=1", after(reqs[3].1, reqs[2].1), secs(30), secs(60));
    // ... then the validate interval with splay, never past the last day ...
    let mut i = 3;
    while reqs[i + 1].1 < last_day {
        assert_within(
            &format!("paced retry {i}"),
            after(reqs[i + 1].1, reqs[i].1),
            hours(6),
            hours(6) + secs(900),
        );
        i += 1;
    }
    assert_eq!(
        reqs[i + 1].1,
        last_day,
        "the last paced try is at the last day's start"
    );
    let paced = i + 1;
    // ... then the back-off again, capped at retry_max.
    for w in reqs[paced..].windows(2) {
        assert_within(
            "back-off in the last day",
            after(w[1].1, w[0].1),
            secs(1800),
            hours(1),
        );
    }
    // Within grace (6 h → 48 h): a handful of tries, not one an hour.
    let in_grace = reqs
        .iter()
        .filter(|(_, t)| *t > T0 && *t < last_day)
        .count();
    assert!(
        in_grace <= 3 + 7,
        "{in_grace} tries in 42 h of grace: {reqs:?}"
    );
    assert!(reqs.len() - paced >= 11, "{reqs:?}");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_makes_no_request_before_the_saved_time() {
    let h = Host::new(DEFAULTS, |_, _| Reply::Valid);
    let first = h.start(6);
    pass(hours(1)).await;
    first.stop().await;
    let before = h.portal.log.lock().map(|l| l.len()).unwrap_or_default();
    assert_eq!(before, 2, "activate and the first update check");
    let next = saved_next_validate(&h.state_dir(), h.now());
    assert_within(
        "saved next validate",
        after(next, T0),
        hours(6),
        hours(6) + secs(900),
    );

    // A restart (a crash loop would restart many times) sends nothing ...
    let second = h.start(7);
    pass(after(next, h.now()) - secs(1)).await;
    let log = h.portal.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(
        log.len(),
        before,
        "no request before the saved time: {log:?}"
    );
    // ... until the saved time comes.
    pass(secs(2)).await;
    let reqs = h.portal.licence_requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].0, Endpoint::Validate);
    assert_within(
        "validate after the restart",
        after(reqs[1].1, next),
        secs(0),
        secs(1),
    );
    second.stop().await;
}

/// The status document, read through the socket like any client.
async fn status_of(h: &Host) -> crate::api::StatusDocument {
    let sock = h.dir.path().join("run").join("status.sock");
    tokio::task::spawn_blocking(move || {
        crate::socket::client::request(&sock, "GET", "/v1/status", None, secs(10))
            .map_err(|e| e.to_string())
            .and_then(|a| a.status_document())
    })
    .await
    .expect("the client task")
    .expect("a status document")
}

fn codes(doc: &crate::api::StatusDocument) -> Vec<&'static str> {
    doc.warnings.iter().map(|w| w.code.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn grace_ending_appears_at_its_instant_without_a_request() {
    let s = Sched {
        update_check_interval: "30d",
        offline_grace: "3d",
        ..DEFAULTS
    };
    let h = Host::new(s, |_, t| {
        if t < T0.add(hours(1)) {
            Reply::Valid
        } else {
            Reply::Status(503, vec![], "{}")
        }
    });
    let d = h.start(8);
    let last_day = T0.add(hours(48));
    pass(after(last_day, h.now())).await;
    let doc = status_of(&h).await;
    assert_eq!(doc.license.state, wispanel_core::LicenseState::Grace);
    assert!(codes(&doc).is_empty(), "24 h left is not less: {doc:?}");
    let requests = h.portal.licence_requests().len();
    pass(Duration::from_millis(2)).await;
    let doc = status_of(&h).await;
    assert_eq!(codes(&doc), vec!["grace_ending"]);
    assert_eq!(doc.warnings[0].at, doc.license.grace_until);
    assert_eq!(
        h.portal.licence_requests().len(),
        requests,
        "the timer, not a request, made it appear"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_metrics_textfile_is_the_metrics_and_is_rewritten_every_minute() {
    let h = Host::new(DEFAULTS, |_, _| Reply::Valid);
    let file = h.dir.path().join("textfile").join("wispanel_license.prom");
    std::fs::create_dir(file.parent().expect("a directory")).expect("the textfile directory");
    let text = std::fs::read_to_string(&h.config).expect("configuration");
    std::fs::write(
        &h.config,
        format!("metrics_textfile = \"{}\"\n{text}", file.display()),
    )
    .expect("configuration");
    let d = h.start(9);
    pass(secs(1)).await;
    let sock = h.dir.path().join("run").join("status.sock");
    let metrics = tokio::task::spawn_blocking(move || {
        crate::socket::client::request(&sock, "GET", "/metrics", None, secs(10))
            .map(|a| String::from_utf8_lossy(&a.body).into_owned())
            .map_err(|e| e.to_string())
    })
    .await
    .expect("the client task")
    .expect("the metrics");
    assert_eq!(std::fs::read_to_string(&file).ok(), Some(metrics));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("the file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    // Nothing changes, yet the file is written again within the minute.
    std::fs::remove_file(&file).expect("remove the file");
    pass(secs(61)).await;
    for _ in 0..1000 {
        if file.exists() {
            break;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(file.exists(), "not rewritten within a minute");
    d.stop().await;
    let names: Vec<_> = std::fs::read_dir(file.parent().expect("a directory"))
        .expect("the directory")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("wispanel_license.prom")]
    );
}

mod history;
