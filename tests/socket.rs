//! The status socket of the real daemon (issue #5): every endpoint, every
//! error envelope, the sharing of manual checks, root-only actions, events,
//! metrics, abuse, and the socket file's life cycle.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};
use wispanel_core::timestamp::Timestamp;
use wispanel_license::socket::client;
use wispanel_license::testing as t;
use wispanel_portal_sim::{Endpoint, LicenseBehaviour, Outage, ScriptedAnswer};

fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

fn is_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.ends_with('Z') && Timestamp::parse_rfc3339(s).is_some() && !s.contains('.')
    })
}

/// Every field of SPEC's status document, with its type; nulls where absent.
fn assert_document_shape(s: &Value) {
    assert_eq!(
        keys_of(s),
        sorted(&[
            "schema_version",
            "daemon",
            "hardware_id",
            "hardware_changed",
            "license",
            "update",
            "portal",
            "warnings"
        ])
    );
    assert_eq!(s["schema_version"], 1);
    let warnings = s["warnings"].as_array().expect("warnings is a list");
    for w in warnings {
        assert_eq!(keys_of(w), sorted(&["code", "message", "at"]), "{w}");
        assert!(w["code"].is_string() && w["message"].is_string(), "{w}");
        assert!(w["at"].is_null() || is_time(&w["at"]), "{w}");
    }
    assert_eq!(
        keys_of(&s["daemon"]),
        sorted(&["version", "pid", "started_at"])
    );
    assert!(s["daemon"]["version"].is_string());
    assert!(s["daemon"]["pid"].is_u64());
    assert!(is_time(&s["daemon"]["started_at"]), "{}", s["daemon"]);
    assert!(s["hardware_changed"].is_boolean());
    assert_eq!(
        keys_of(&s["license"]),
        sorted(&[
            "state",
            "licensed",
            "key",
            "tier",
            "expires_at",
            "valid_until",
            "limits",
            "reason",
            "checked_at",
            "grace_until"
        ])
    );
    assert_eq!(
        keys_of(&s["update"]),
        sorted(&[
            "state",
            "current_version",
            "latest_version",
            "changelog",
            "checked_at"
        ])
    );
    assert_eq!(
        keys_of(&s["portal"]),
        sorted(&[
            "last_attempt_at",
            "last_success_at",
            "last_error",
            "consecutive_failures",
            "next_validate_at",
            "next_update_check_at",
            "rate_limited_until",
            "clock_skew_seconds",
            "proxy",
            "activation_in_doubt"
        ])
    );
    // The daemon runs without proxy variables (see tests/common): no proxy.
    assert!(s["portal"]["proxy"].is_null(), "{}", s["portal"]);
    assert_eq!(s["portal"]["activation_in_doubt"], false, "{}", s["portal"]);
    for (obj, f) in [
        ("license", "expires_at"),
        ("license", "valid_until"),
        ("license", "checked_at"),
        ("license", "grace_until"),
        ("update", "checked_at"),
        ("portal", "last_attempt_at"),
        ("portal", "last_success_at"),
        ("portal", "next_validate_at"),
        ("portal", "next_update_check_at"),
        ("portal", "rate_limited_until"),
    ] {
        let v = &s[obj][f];
        assert!(v.is_null() || is_time(v), "{obj}.{f} = {v}");
    }
    assert!(s["portal"]["consecutive_failures"].is_u64());
}

/// The simulator on a runtime of its own (real time: its delays are real,
/// not paused with the daemon's), let go on another thread when dropped
/// (a runtime cannot be dropped in an async context).
struct RealSim(Option<Sim>);

impl std::ops::Deref for RealSim {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        self.0.as_ref().expect("the simulator")
    }
}

impl Drop for RealSim {
    fn drop(&mut self) {
        if let Some(sim) = self.0.take() {
            std::thread::spawn(move || drop(sim));
        }
    }
}

/// The simulator (HTTPS) and the daemon in-process on it (paused time, the
/// real client) with `key`; waits for the first update check when there is
/// a key.
struct On {
    sim: RealSim,
    h: t::Harness,
    d: t::Running,
    _ca: tempfile::TempDir,
}

async fn on_sim(key: Option<&str>) -> On {
    let ca = tempfile::tempdir().expect("a temporary directory");
    let dir = ca.path().to_path_buf();
    let sim = RealSim(Some(
        tokio::task::spawn_blocking(move || Sim::https(&dir))
            .await
            .expect("the simulator"),
    ));
    let mut h = t::Harness::real_portal(t::FAST, wispanel_license::clock::now(), &sim.base_url);
    if let Some(pem) = &sim.ca_pem_path {
        h.add_config(&format!("ca_file = \"{}\"", pem.display()));
    }
    h.set_key(key);
    let d = h.start(1);
    if key.is_some() {
        h.wait_status("the first update check", t::secs(60), |s| {
            s["license"]["state"] == "active" && s["update"]["state"] == "available"
        })
        .await;
    }
    On { sim, h, d, _ca: ca }
}

impl On {
    async fn get(&self, path: &str) -> client::Answer {
        self.h.request("GET", path, None).await.expect("an answer")
    }

    async fn post(&self, path: &str, body: Option<&str>) -> client::Answer {
        self.h.request("POST", path, body).await.expect("an answer")
    }

    async fn stop(self) {
        self.d.stop().await;
    }
}

fn json_of(a: &client::Answer) -> Value {
    serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&a.body)))
}

#[tokio::test(start_paused = true)]
async fn status_document_has_every_spec_field() {
    let on = on_sim(Some(keys::GOOD)).await;
    let s = on.h.status_json().await;
    assert_document_shape(&s);
    assert_eq!(s["daemon"]["pid"], std::process::id(), "in-process: ours");
    assert_eq!(s["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["hardware_id"], HWID);
    assert_eq!(s["hardware_changed"], false);
    let l = &s["license"];
    assert_eq!(l["state"], "active");
    assert_eq!(l["licensed"], true);
    assert_eq!(l["key"], "WISP-****SA6T");
    assert_eq!(l["tier"], "pro");
    assert_eq!(
        l["limits"],
        json!({"max_users": 30, "max_domains": 100, "max_databases": -1})
    );
    assert!(l["reason"].is_null());
    for f in ["expires_at", "valid_until", "checked_at", "grace_until"] {
        assert!(is_time(&l[f]), "license.{f} = {}", l[f]);
    }
    let u = &s["update"];
    assert_eq!(u["current_version"], "1.4.2");
    assert_eq!(u["latest_version"], "1.5.0");
    assert!(u["changelog"].as_str().is_some_and(|c| c.contains("1.5.0")));
    let p = &s["portal"];
    assert!(p["last_error"].is_null());
    assert!(p["rate_limited_until"].is_null());
    assert_eq!(p["consecutive_failures"], 0);
    assert!(
        p["clock_skew_seconds"]
            .as_i64()
            .is_some_and(|k| k.abs() <= 5)
    );
    assert_eq!(
        s["warnings"],
        json!([]),
        "a healthy licence warns of nothing"
    );
    let body = on.get("/v1/status").await;
    assert_eq!(body.header("content-type"), Some("application/json"));
    assert!(
        !String::from_utf8_lossy(&body.body).contains(keys::GOOD),
        "the full key leaked"
    );

    let m = on.get("/metrics").await;
    assert!(!String::from_utf8_lossy(&m.body).contains(keys::GOOD));
    on.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unconfigured_document_nulls_and_409() {
    let on = on_sim(None).await;
    let s = on.h.status_json().await;
    assert_document_shape(&s);
    let l = &s["license"];
    assert_eq!(l["state"], "unconfigured");
    assert_eq!(l["licensed"], false);
    for f in [
        "key",
        "tier",
        "expires_at",
        "valid_until",
        "limits",
        "reason",
        "checked_at",
        "grace_until",
    ] {
        assert!(l[f].is_null(), "license.{f} = {}", l[f]);
    }
    let p = &s["portal"];
    for f in [
        "last_attempt_at",
        "last_success_at",
        "last_error",
        "next_validate_at",
        "next_update_check_at",
        "rate_limited_until",
        "clock_skew_seconds",
    ] {
        assert!(p[f].is_null(), "portal.{f} = {}", p[f]);
    }
    t::assert_envelope(&on.post("/v1/check", None).await, 409, "CONFLICT");
    t::assert_envelope(&on.post("/v1/update/check", None).await, 409, "CONFLICT");
    t::assert_envelope(&on.post("/v1/deactivate", None).await, 409, "CONFLICT");
    // An hour of (paused) time: still nothing sent.
    t::pass(t::hours(1)).await;
    assert_eq!(on.sim.requests().len(), 0, "no key, no request");
    on.stop().await;
}

#[tokio::test(start_paused = true)]
async fn health_unknown_path_wrong_method_and_browsers() {
    let on = on_sim(Some(keys::GOOD)).await;
    let h = on.get("/v1/health").await;
    assert_eq!((h.status, json_of(&h)), (200, json!({"ok": true})));
    t::assert_envelope(&on.get("/v1/nope").await, 404, "NOT_FOUND");
    t::assert_envelope(&on.get("/").await, 404, "NOT_FOUND");
    t::assert_envelope(&on.get("/v1/check").await, 405, "VALIDATION_ERROR");
    t::assert_envelope(
        &on.post("/v1/status", Some("{}")).await,
        405,
        "VALIDATION_ERROR",
    );
    let sock = on.h.socket_path();
    for h in [
        ("Origin", "http://evil.example"),
        ("Referer", "http://evil.example/"),
    ] {
        for (method, path) in [("GET", "/v1/status"), ("POST", "/v1/check")] {
            let r = t::request_with(&sock, method, path, &[h], None)
                .await
                .expect("an answer");
            t::assert_envelope(&r, 403, "FORBIDDEN");
        }
    }
    on.stop().await;
}

/// Concurrent manual checks share one portal request; another within 10 s
/// gets its result with no request; same for the update check.
#[tokio::test(start_paused = true)]
async fn manual_checks_are_shared_and_reused() {
    let on = on_sim(Some(keys::GOOD)).await;
    let sim = &*on.sim;
    let v0 = sim.request_count(Endpoint::Validate);
    sim.push_answers(
        Endpoint::Validate,
        vec![ScriptedAnswer::normal().with_delay(1000)],
    );
    let sock = on.h.socket_path();
    let checks: Vec<_> = (0..8)
        .map(|_| {
            let sock = sock.clone();
            tokio::spawn(async move { t::request(&sock, "POST", "/v1/check", None).await })
        })
        .collect();
    for c in checks {
        let r = c.await.expect("the check task").expect("an answer");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            json_of(&r)["license"]["state"],
            "active",
            "{:#}",
            json_of(&r)["portal"]
        );
    }
    assert_eq!(
        sim.request_count(Endpoint::Validate),
        v0 + 1,
        "8 checks, one request"
    );
    let r = on.post("/v1/check", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        sim.request_count(Endpoint::Validate),
        v0 + 1,
        "a check within 10 s made a request"
    );

    let u0 = sim.request_count(Endpoint::CheckUpdate);
    let r = on.post("/v1/update/check", None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_document_shape(&json_of(&r));
    assert_eq!(json_of(&r)["update"]["state"], "available");
    assert_eq!(sim.request_count(Endpoint::CheckUpdate), u0 + 1);
    let r = on.post("/v1/update/check", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(sim.request_count(Endpoint::CheckUpdate), u0 + 1);
    on.stop().await;
}

/// While the gate is closed, every action answers 429 with Retry-After and
/// RATE_LIMITED, and no request reaches the portal.
#[tokio::test(start_paused = true)]
async fn closed_gate_answers_429_without_a_request() {
    let on = on_sim(Some(keys::GOOD)).await;
    let sim = &*on.sim;
    sim.set_outage(Some(Outage::Unavailable {
        retry_after: "6".into(),
    }));
    let r = on.post("/v1/check", None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = json_of(&r);
    assert_eq!(s["portal"]["last_error"]["kind"], "rate_limited");
    let until = ts(&s["portal"]["rate_limited_until"]).expect("gate closed");
    let n = sim.requests().len();
    let key = format!("{{\"license_key\": \"{}\"}}", keys::GOOD);
    // The checks get SPEC's 429; activate and deactivate get no verdict,
    // which SPEC answers 503 PORTAL_UNREACHABLE. All carry Retry-After.
    for (path, body, status, code) in [
        ("/v1/check", None, 429, "RATE_LIMITED"),
        ("/v1/update/check", None, 429, "RATE_LIMITED"),
        (
            "/v1/activate",
            Some(key.as_str()),
            503,
            "PORTAL_UNREACHABLE",
        ),
        ("/v1/deactivate", None, 503, "PORTAL_UNREACHABLE"),
    ] {
        let r = on.post(path, body).await;
        // Paused time: the gate is still closed, however slow the machine.
        assert!(on.h.now() < until);
        t::assert_envelope(&r, status, code);
        let secs: u64 = r
            .header("retry-after")
            .unwrap_or_else(|| panic!("{path}: no Retry-After"))
            .parse()
            .expect("whole seconds");
        assert!((1..=6).contains(&secs), "{path}: Retry-After {secs}");
    }
    assert_eq!(
        sim.requests().len(),
        n,
        "a closed gate let a request through"
    );
    let s = on.h.status_json().await;
    assert_eq!(s["portal"]["last_error"]["kind"], "rate_limited");
    on.stop().await;
}

fn activate_body(key: &str) -> String {
    format!("{{\"license_key\": \"{key}\"}}")
}

/// Root's activate and deactivate: success, refusal (422 with the portal's
/// code), unreachable (503), bad bodies (400, 413); the saved key survives a
/// restart and is removed by a deactivation.
#[tokio::test(start_paused = true)]
async fn activate_and_deactivate() {
    let (_guard, logs) = t::capture_logs();
    let on = on_sim(None).await;
    let sim = &*on.sim;
    assert_eq!(on.h.status_json().await["license"]["state"], "unconfigured");

    // Bad bodies.
    t::assert_envelope(
        &on.post("/v1/activate", Some("not json")).await,
        400,
        "VALIDATION_ERROR",
    );
    t::assert_envelope(
        &on.post("/v1/activate", Some("{\"key\": \"x\"}")).await,
        400,
        "VALIDATION_ERROR",
    );
    t::assert_envelope(
        &on.post("/v1/activate", Some(&activate_body("nonsense")))
            .await,
        400,
        "VALIDATION_ERROR",
    );
    let big = format!(
        "{{\"license_key\": \"{}\", \"pad\": \"{}\"}}",
        keys::GOOD,
        "x".repeat(70 * 1024)
    );
    t::assert_envelope(
        &on.post("/v1/activate", Some(&big)).await,
        413,
        "VALIDATION_ERROR",
    );
    assert_eq!(sim.count(), 0, "a bad body reached the portal");

    // Refused.
    let r = on
        .post("/v1/activate", Some(&activate_body(keys::EXPIRED)))
        .await;
    let v = t::assert_envelope(&r, 422, "EXPIRED");
    assert!(!v.to_string().contains(keys::EXPIRED));
    assert_eq!(on.h.status_json().await["license"]["state"], "unconfigured");

    // Unreachable.
    sim.set_outage(Some(Outage::Drop));
    t::assert_envelope(
        &on.post("/v1/activate", Some(&activate_body(keys::GOOD)))
            .await,
        503,
        "PORTAL_UNREACHABLE",
    );
    sim.set_outage(None);

    // Success.
    let r = on
        .post("/v1/activate", Some(&activate_body(keys::GOOD)))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = json_of(&r);
    assert_eq!(s["license"]["state"], "active");
    assert_eq!(s["license"]["key"], "WISP-****SA6T");
    let key_file = on.h.state_dir().join("license.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        keys::GOOD
    );
    assert!(!logs.contains(keys::GOOD), "the key reached the log");

    // The saved key survives a restart (same directory, a new daemon).
    let On { sim, h, d, _ca } = on;
    d.stop().await;
    let on = On {
        d: h.start(2),
        sim,
        h,
        _ca,
    };
    let sim = &*on.sim;
    let s = on.h.status_json().await;
    assert_eq!(s["license"]["state"], "active");
    assert_eq!(s["license"]["key"], "WISP-****SA6T");

    // Deactivate: unreachable, then success.
    sim.set_outage(Some(Outage::Status(500)));
    t::assert_envelope(
        &on.post("/v1/deactivate", None).await,
        503,
        "PORTAL_UNREACHABLE",
    );
    sim.set_outage(None);
    let r = on.post("/v1/deactivate", None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = json_of(&r);
    assert_eq!(s["license"]["state"], "unconfigured");
    assert!(!key_file.exists(), "the saved key is removed");
    assert!(sim.activations(keys::GOOD).is_empty());
    t::assert_envelope(&on.post("/v1/check", None).await, 409, "CONFLICT");
    // No request at all in an hour of (paused) time after a deactivation.
    let n = sim.count();
    t::pass(t::hours(1)).await;
    assert_eq!(sim.count(), n, "requests after a deactivation");
    on.stop().await;
    assert!(!logs.contains(keys::GOOD), "the key reached the log");
}

/// Deactivation refused by the portal: 422 with its code.
#[tokio::test(start_paused = true)]
async fn deactivate_refused_is_422() {
    let on = on_sim(Some(keys::GOOD)).await;
    on.sim.set_license(keys::GOOD, LicenseBehaviour::Revoked);
    t::assert_envelope(&on.post("/v1/deactivate", None).await, 422, "REVOKED");
    on.stop().await;
}

/// `curl --unix-socket`, as SPEC promises; a local user (uid 65534) can read
/// the status but not activate (403 FORBIDDEN from SO_PEERCRED).
#[test]
fn curl_and_peer_credentials() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP curl_and_peer_credentials: curl is missing");
        return;
    }
    let (_sim, env, _d) = active_served(|c| c.socket_mode = "0666".into());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--unix-socket"])
        .arg(&env.socket)
        .arg("http://localhost/v1/status")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["license"]["state"], "active");
    // Two requests on one kept-alive connection.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n", "--unix-socket"])
        .arg(&env.socket)
        .args(["http://localhost/v1/health", "http://localhost/v1/health"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"ok\":true}\n{\"ok\":true}\n"
    );

    if !is_root() {
        eprintln!("SKIP peer credentials: not root");
        return;
    }
    // Let uid 65534 reach the socket.
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl"])
            .args([
                "-sS",
                "--max-time",
                "20",
                "-w",
                "\n%{http_code}",
                "--unix-socket",
            ])
            .arg(&env.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse::<u16>().unwrap(), body.to_string())
    };
    let (code, body) = as_nobody(&["http://localhost/v1/status"]);
    assert_eq!(code, 200, "{body}");
    for path in ["activate", "deactivate"] {
        let (code, body) = as_nobody(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &activate_body(keys::GOOD),
            &format!("http://localhost/v1/{path}"),
        ]);
        assert_eq!(code, 403, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "FORBIDDEN");
        assert_eq!(v["status"], 403);
        // 65534 is also what PrivateUsers= shows for any other caller: no uid.
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("root only"), "{message}");
        assert!(!message.contains("65534"), "{message}");
    }
}

/// Reads SSE events from a stream until `n` `status` events are in.
fn read_events(s: &mut UnixStream, buf: &mut Vec<u8>, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(buf).into_owned();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter(|block| block.lines().any(|l| l == "event: status"))
            .filter_map(|block| {
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect::<Vec<_>>()
                    .join("\n");
                serde_json::from_str(&data).ok()
            })
            .collect();
        if events.len() >= n {
            return events;
        }
        assert!(
            start.elapsed() < WAIT,
            "only {} events: {text}",
            events.len()
        );
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk) {
            Ok(0) => panic!("the event stream closed: {text}"),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn events_stream_status_now_and_on_change() {
    let (sim, env, _d) = active_served(|_| {});
    env.wait_status("the first update check", |s| {
        s["update"]["state"] == "available"
    });
    let mut s = UnixStream::connect(&env.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let ev = read_events(&mut s, &mut buf, 1);
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert_eq!(ev[0]["license"]["state"], "active");

    sim.set_license(keys::GOOD, LicenseBehaviour::Suspended);
    let r = env.post("/v1/check", None);
    assert_eq!(r.json()["license"]["state"], "suspended");
    let ev = read_events(&mut s, &mut buf, 2);
    assert_eq!(ev[1]["license"]["state"], "suspended");
    assert_eq!(ev[1]["license"]["reason"]["code"], "SUSPENDED");
}

/// Samples by metric name: labels and value.
type Metrics = BTreeMap<String, Vec<(Labels, f64)>>;
type Labels = BTreeMap<String, String>;

/// A small Prometheus text-format parser: every sample line is
/// `name{labels} value`, and every metric has a `# TYPE`.
fn parse_metrics(text: &str) -> Metrics {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut out: Metrics = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("# TYPE name type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), ty.to_string()).is_none(),
                "two # TYPE for {name}"
            );
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "unknown comment {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                let mut labels = BTreeMap::new();
                for pair in inner.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label in {line:?}"));
                    labels.insert(k.to_string(), v.to_string());
                }
                (name, labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{name}"
        );
        assert!(types.contains_key(name), "{name} has no # TYPE before it");
        out.entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    out
}

fn metric(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    let series = m.get(name).unwrap_or_else(|| panic!("no {name}"));
    series
        .iter()
        .find(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {name}{labels:?}"))
        .1
}

#[test]
fn metrics_parse_and_name_the_spec_series() {
    let (sim, env, _d) = active_served(|_| {});
    env.wait_status("the first update check", |s| {
        s["update"]["state"] == "available"
    });
    sim.push_answers(Endpoint::Validate, vec![ScriptedAnswer::status(502)]);
    assert_eq!(env.post("/v1/check", None).status, 200);
    let r = env.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let m = parse_metrics(&r.text());
    assert_eq!(metric(&m, "wispanel_license_licensed", &[]), 1.0);
    assert_eq!(
        metric(&m, "wispanel_license_state", &[("state", "grace")]),
        1.0
    );
    let states = &m["wispanel_license_state"];
    assert_eq!(states.iter().map(|(_, v)| *v).sum::<f64>(), 1.0);
    let states: BTreeSet<_> = states.iter().map(|(l, _)| l["state"].clone()).collect();
    for s in [
        "unconfigured",
        "unknown",
        "active",
        "grace",
        "lapsed",
        "invalid_key",
        "expired",
        "suspended",
        "revoked",
        "hardware_mismatch",
        "max_activations",
        "version_too_low",
    ] {
        assert!(states.contains(s), "no state {s}");
    }
    let now = wispanel_license::clock::now().unix_secs() as f64;
    assert!(metric(&m, "wispanel_license_expires_timestamp_seconds", &[]) > now);
    let last = metric(&m, "wispanel_license_last_success_timestamp_seconds", &[]);
    assert!((now - 60.0..=now + 1.0).contains(&last));
    assert_eq!(
        metric(
            &m,
            "wispanel_license_portal_requests_total",
            &[("endpoint", "activate"), ("outcome", "valid")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "wispanel_license_portal_requests_total",
            &[("endpoint", "validate"), ("outcome", "http")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "wispanel_license_portal_requests_total",
            &[("endpoint", "check_update"), ("outcome", "valid")]
        ),
        1.0
    );
    let pairs: BTreeSet<(String, String)> = m["wispanel_license_portal_requests_total"]
        .iter()
        .map(|(l, _)| (l["endpoint"].clone(), l["outcome"].clone()))
        .collect();
    for e in [
        "activate",
        "validate",
        "deactivate",
        "check_update",
        "token",
    ] {
        for o in [
            "valid",
            "refused",
            "rate_limited",
            "timeout",
            "connect",
            "tls",
            "http",
            "malformed",
        ] {
            assert!(
                pairs.contains(&(e.to_string(), o.to_string())),
                "no {e}/{o}"
            );
        }
    }
    assert_eq!(metric(&m, "wispanel_license_update_available", &[]), 1.0);
}

/// 500 idle connections, garbage, a 10 MiB body, an events client that never
/// reads: afterwards /v1/status still answers within 1 s. In-process (paused
/// time, the simulator through the real client); the raw socket work runs on
/// a blocking thread, beside the daemon's runtime.
#[tokio::test(start_paused = true)]
async fn socket_abuse_leaves_the_daemon_answering() {
    use wispanel_license::socket::client::parse_answer;
    use wispanel_license::testing::{self as t, FAST, Harness};
    let (_guard, logs) = t::capture_logs();
    let sim = wispanel_portal_sim::start(wispanel_portal_sim::SimOptions::plain())
        .await
        .expect("the simulator");
    let h = Harness::real_portal(FAST, wispanel_license::clock::now(), &sim.base_url);
    let d = h.start(1);
    h.wait_status("active", t::secs(60), |s| s["license"]["state"] == "active")
        .await;
    let sock = h.socket_path();
    let (lazy, idle) = tokio::task::spawn_blocking(move || {
        // An events client that never reads, while the state changes a lot.
        let mut lazy = UnixStream::connect(&sock).unwrap();
        lazy.write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let idle: Vec<UnixStream> = (0..500)
            .map(|_| UnixStream::connect(&sock).unwrap())
            .collect();
        for junk in [
            &b"\x00\xff\xfe garbage \r\n\r\n"[..],
            b"GET /v1/status HTTP/9.9\r\n\r\n",
            b"GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        ] {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(junk);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            if !out.is_empty() {
                let text = String::from_utf8_lossy(&out);
                assert!(text.starts_with("HTTP/1.1 4"), "{text}");
            }
        }
        // 10 MiB body, announced and sent.
        {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let n = 10 * 1024 * 1024;
            let head = format!(
                "POST /v1/activate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&vec![b'x'; n]);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            let r = parse_answer(&out).expect("an answer to the 10 MiB body");
            t::assert_envelope(&r, 413, "VALIDATION_ERROR");
        }
        // 10 MiB chunked (no Content-Length).
        {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(
                b"POST /v1/activate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "y".repeat(1 << 20));
            for _ in 0..10 {
                if s.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            let r = parse_answer(&out).expect("an answer to the chunked 10 MiB body");
            t::assert_envelope(&r, 413, "VALIDATION_ERROR");
        }
        (lazy, idle)
    })
    .await
    .expect("the raw socket work");
    // 100 000 bytes and no end of the head: the daemon's own timeouts end it,
    // so this client is async (paused time moves while it waits).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::UnixStream::connect(h.socket_path())
            .await
            .unwrap();
        let _ = s.write_all(&[b'A'; 100_000]).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(t::secs(600), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the daemon never ended the connection");
        if !out.is_empty() {
            let text = String::from_utf8_lossy(&out);
            assert!(text.starts_with("HTTP/1.1 4"), "{text}");
        }
    }
    // State changes for the lazy events client: each check a real one (past
    // the 10 s reuse of the last manual check's result, in paused time).
    for (b, state) in [
        (LicenseBehaviour::Suspended, "suspended"),
        (LicenseBehaviour::Valid, "active"),
    ] {
        t::pass(wispanel_license::daemon::MANUAL_REUSE + t::secs(1)).await;
        sim.set_license(keys::GOOD, b);
        let r = h
            .request("POST", "/v1/check", None)
            .await
            .expect("an answer");
        let s: Value = r.json().expect("JSON");
        assert_eq!(s["license"]["state"], state, "{s:#}");
    }
    // Wall clock on purpose: the answer must be quick for real.
    let start = Instant::now();
    let r = h
        .request("GET", "/v1/status", None)
        .await
        .expect("an answer");
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert!(took < Duration::from_secs(1), "/v1/status took {took:?}");
    let health = h
        .request("GET", "/v1/health", None)
        .await
        .expect("an answer");
    assert_eq!(health.status, 200);
    drop(idle);
    drop(lazy);
    assert!(logs.text().lines().count() < 10_000);
    d.stop().await;
    sim.shutdown().await;
}

/// A stale socket is replaced; a live daemon's socket is refused; a regular
/// file at socket_path is never deleted. Each error is the one the binary
/// logs before it exits 1 (`daemon::main`: load, bind, run, as `Served`).
#[test]
fn socket_file_life_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::https(dir.path());
    let env = Env::in_dir(dir, Conf::for_sim(&sim, Some(keys::GOOD)));

    // Stale: a socket file nobody listens on.
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&env.socket).unwrap());
    assert!(env.socket.exists());
    let d = env.serve();
    env.wait_state("active");
    assert!(d.log().contains("stale"), "{}", d.log());

    // Live: a second daemon must not take it.
    let second = env.try_serve().map(|d| d.log());
    assert!(second.is_err(), "the second daemon started: {second:?}");
    let second = second.unwrap_err();
    assert!(second.contains("already listening"), "{second}");
    assert_eq!(
        env.status()["license"]["state"],
        "active",
        "the first one still answers"
    );
    drop(d);

    // A regular file: refused, left alone.
    let _ = std::fs::remove_file(&env.socket);
    std::fs::write(&env.socket, b"precious").unwrap();
    let third = env.try_serve().map(|d| d.log());
    assert!(
        third.is_err(),
        "the daemon started over a regular file: {third:?}"
    );
    let third = third.unwrap_err();
    assert!(third.contains("not a socket"), "{third}");
    assert_eq!(std::fs::read(&env.socket).unwrap(), b"precious");
}
