//! `update download` and release versions: the version table, and downloads
//! from the portal simulator over TLS (success, every way a transfer can go
//! wrong, refusals, the saved gate), through the library and the binary.

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wispanel_core::classify::Outcome;
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::Core;
use wispanel_core::{Endpoint, UpdateState};
use wispanel_license::config::Config;
use wispanel_license::portal::{PortalClient, RequestFacts, request_body};
use wispanel_license::store::Store;
use wispanel_license::update::{DownloadError, Progress, Version, download};
use wispanel_portal_sim::{
    self as sim, self, Endpoint as SimEndpoint, Route as SimRoute, ScriptedAnswer, SimHandle,
    SimOptions, keys, release_bytes, release_sha256,
};

const HW: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SIZE: u64 = 256 * 1024;

// ---------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

#[test]
fn version_comparison_table() {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let table = [
        ("1.10.0", "1.9.2", Greater),
        ("1.9.2", "1.10.0", Less),
        ("2.0.0", "1.99.99", Greater),
        ("1.0.0-rc.1", "1.0.0", Less),
        ("1.0.0", "1.0.0-rc.1", Greater),
        ("1.0.0-alpha", "1.0.0-alpha.1", Less),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
        ("1.0.0-alpha.beta", "1.0.0-beta", Less),
        ("1.0.0-beta.2", "1.0.0-beta.11", Less),
        ("1.0.0-beta.11", "1.0.0-rc.1", Less),
        ("v1.2.3", "1.2.3", Equal),
        ("V1.2.3", "1.2.3", Equal),
        ("1.5", "1.5.0", Equal),
        ("1.5", "1.5.1", Less),
        ("2", "2.0.0", Equal),
        ("1.4.2+build.7", "1.4.2", Equal),
        (" 1.4.2\n", "1.4.2", Equal),
    ];
    for (a, b, want) in table {
        assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
        assert_eq!(v(a) == v(b), want == Equal, "{a} == {b}");
    }
}

#[test]
fn garbage_is_an_error_naming_the_text() {
    for bad in [
        "", "garbage", "1.2.x", "1..3", "1.2.3.4", "v", "1.2.3-", "one.two",
    ] {
        let e = Version::parse(bad).unwrap_err();
        assert!(e.to_string().contains(&format!("{bad:?}")), "{bad:?}: {e}");
        assert!(bad.parse::<Version>().is_err());
    }
}

// ---------------------------------------------------------------------------
// Downloads against the simulator
// ---------------------------------------------------------------------------

struct Env {
    sim: SimHandle,
    tmp: tempfile::TempDir,
    config_path: PathBuf,
    config: Config,
    out: PathBuf,
}

impl Env {
    fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }
}

fn write_config(
    tmp: &Path,
    base_url: &str,
    ca: &Path,
    key: Option<&str>,
    timeout: &str,
) -> PathBuf {
    std::fs::write(tmp.join("hwid"), format!("{HW}\n")).unwrap();
    let key_line = key
        .map(|k| format!("license_key = \"{k}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "{key_line}portal_url = \"{base_url}\"\nca_file = \"{}\"\nproduct_version = \"1.4.2\"\n\
         state_dir = \"{}\"\nsocket_path = \"{}\"\n\
         [schedule]\nrequest_timeout = \"{timeout}\"\n[hardware]\nid_file = \"{}\"\n",
        ca.display(),
        tmp.join("state").display(),
        tmp.join("status.sock").display(),
        tmp.join("hwid").display(),
    );
    let path = tmp.join("license.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A sim over TLS, a configuration with `key`, and the key activated on `HW`.
async fn setup(key: &str, timeout: &str) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    let sim = sim::start(SimOptions::https(&ca)).await.unwrap();
    let config_path = write_config(tmp.path(), &sim.base_url, &ca, Some(key), timeout);
    let config = Config::load(&config_path).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let env = Env {
        sim,
        tmp,
        config_path,
        config,
        out,
    };
    activate(&env, key).await;
    env
}

fn facts<'a>(key: &'a LicenseKey, version: Option<&'a str>) -> RequestFacts<'a> {
    RequestFacts {
        key,
        hardware_id: HW,
        hostname: "h1",
        product_version: "1.4.2",
        channel: "stable",
        version,
    }
}

async fn activate(env: &Env, key: &str) {
    let key = LicenseKey::parse(key).unwrap();
    let client = PortalClient::new(&env.config).unwrap();
    let c = client
        .call(
            Endpoint::Activate,
            &request_body(Endpoint::Activate, &facts(&key, None)),
        )
        .await;
    assert!(matches!(c.outcome, Outcome::Valid(_)), "{:?}", c.outcome);
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sha_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Default)]
struct Recorder {
    seen: Vec<(u64, u64)>,
    finished: bool,
}

impl Progress for Recorder {
    fn update(&mut self, done: u64, total: u64) {
        self.seen.push((done, total));
    }
    fn finish(&mut self) {
        self.finished = true;
    }
}

#[tokio::test]
async fn downloads_the_latest_release_and_verifies_it() {
    let env = setup(keys::GOOD, "5s").await;
    let mut rec = Recorder::default();
    let d = download(&env.config, None, &env.out, Some(&mut rec))
        .await
        .unwrap();
    let want = env.out.join("wispanel-1.5.0.tar.gz");
    assert_eq!(d.path, want);
    assert_eq!(d.version, "1.5.0");
    assert_eq!(d.size, SIZE);
    assert_eq!(d.sha256, release_sha256("1.5.0", SIZE));
    let bytes = std::fs::read(&want).unwrap();
    assert_eq!(bytes, release_bytes("1.5.0", SIZE));
    assert_eq!(sha_hex(&bytes), d.sha256);
    let mode = std::fs::metadata(&want).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    // No temporary file left beside it.
    assert_eq!(entries(&env.out), vec!["wispanel-1.5.0.tar.gz"]);
    // check-update named the latest, then one token, one GET.
    assert_eq!(env.sim.request_count(SimEndpoint::CheckUpdate), 1);
    assert_eq!(env.sim.request_count(SimEndpoint::Token), 1);
    assert_eq!(env.sim.request_count(SimRoute::Release), 1);
    // Progress: from 0 to the whole size, never backwards.
    assert!(rec.finished);
    assert_eq!(rec.seen.first(), Some(&(0, SIZE)));
    assert_eq!(rec.seen.last(), Some(&(SIZE, SIZE)));
    assert!(rec.seen.windows(2).all(|w| w[0].0 <= w[1].0));
    // The licence key went in request bodies only.
    for r in env.sim.requests() {
        assert!(!r.path.contains("GOOD"), "{}", r.path);
    }
}

#[tokio::test]
async fn a_requested_version_skips_check_update_and_replaces_old_files() {
    let env = setup(keys::GOOD, "5s").await;
    let target = env.out.join("wispanel-1.4.0.tar.gz");
    std::fs::write(&target, b"an older copy").unwrap();
    // A temporary file an interrupted run of a process with our pid left.
    let stale = env.out.join(format!(
        ".wispanel-1.4.0.tar.gz.part-{}",
        std::process::id()
    ));
    std::fs::write(&stale, b"half").unwrap();
    let d = download(&env.config, Some("v1.4.0"), &env.out, None)
        .await
        .unwrap();
    assert_eq!(d.path, target);
    assert_eq!(d.version, "1.4.0");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        release_bytes("1.4.0", SIZE)
    );
    assert_eq!(env.sim.request_count(SimEndpoint::CheckUpdate), 0);
    assert_eq!(entries(&env.out), vec!["wispanel-1.4.0.tar.gz"]);
}

#[tokio::test]
async fn a_symlink_at_the_temporary_name_is_not_followed() {
    let env = setup(keys::GOOD, "5s").await;
    let victim = env.tmp.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let part = env.out.join(format!(
        ".wispanel-1.5.0.tar.gz.part-{}",
        std::process::id()
    ));
    std::os::unix::fs::symlink(&victim, &part).unwrap();
    download(&env.config, None, &env.out, None).await.unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(entries(&env.out), vec!["wispanel-1.5.0.tar.gz"]);
}

#[tokio::test]
async fn the_key_saved_by_activate_is_used() {
    let env = setup(keys::GOOD, "5s").await;
    // The same sim and state dir, but no key in the configuration.
    let ca = env.tmp.path().join("ca.pem");
    let path = write_config(env.tmp.path(), &env.sim.base_url, &ca, None, "5s");
    let config = Config::load(&path).unwrap();
    let e = download(&config, None, &env.out, None).await.unwrap_err();
    assert!(matches!(e, DownloadError::NoKey { .. }), "{e}");
    assert!(e.to_string().contains("activate"), "{e}");
    Store::open(&env.state_dir())
        .unwrap()
        .save_key(&LicenseKey::parse(keys::GOOD).unwrap())
        .unwrap();
    let d = download(&config, None, &env.out, None).await.unwrap();
    assert!(d.path.exists());
}

/// SPEC "Which key is in force": key A configured, key B set by `activate`
/// while A was configured: the download asks with B, as the daemon would;
/// once the configuration names another key, with that one.
#[tokio::test]
async fn the_key_in_force_is_the_daemons() {
    let env = setup(keys::GOOD, "5s").await;
    let ca = env.tmp.path().join("ca.pem");
    let configured = "WISP-AAAA-0000-0009";
    let path = write_config(
        env.tmp.path(),
        &env.sim.base_url,
        &ca,
        Some(configured),
        "5s",
    );
    let config = Config::load(&path).unwrap();
    let store = Store::open(&env.state_dir()).unwrap();
    store
        .save_key(&LicenseKey::parse(keys::GOOD).unwrap())
        .unwrap();
    let mut core = Core::default();
    let a = LicenseKey::parse(configured).unwrap();
    core.configured_key_changed(Some(a.fingerprint()));
    store.save(&core, wispanel_license::clock::now()).unwrap();

    let d = download(&config, None, &env.out, None).await.unwrap();
    assert!(d.path.exists());
    let token = env
        .sim
        .requests()
        .into_iter()
        .rfind(|r| r.endpoint == SimEndpoint::Token)
        .expect("a token request");
    assert_eq!(
        token.key_masked.as_deref(),
        Some("WISP-****SA6T"),
        "{token:?}"
    );

    // The configuration now names a key other than the one recorded: it
    // replaces the saved key (the simulator does not know it: refused).
    let mut newer = Core::default();
    newer.configured_key_changed(Some("0000000000000000".into()));
    store.save(&newer, wispanel_license::clock::now()).unwrap();
    let before = env.sim.requests().len();
    let e = download(&config, None, &env.out, None).await.unwrap_err();
    assert!(matches!(e, DownloadError::Refused { .. }), "{e}");
    let asked: Vec<_> = env.sim.requests().into_iter().skip(before).collect();
    assert!(!asked.is_empty());
    for r in asked {
        assert_eq!(r.key_masked.as_deref(), Some("WISP-****0009"), "{r:?}");
    }
}

#[tokio::test]
async fn a_wrong_checksum_deletes_the_file() {
    let env = setup(keys::GOOD, "5s").await;
    // The token announces a wrong digest...
    env.sim.push_answers(
        SimEndpoint::Token,
        vec![ScriptedAnswer {
            wrong_sha256: true,
            ..Default::default()
        }],
    );
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DownloadError::Checksum { .. }), "{text}");
    assert!(text.contains("SHA-256 mismatch"), "{text}");
    let real = release_sha256("1.5.0", SIZE);
    assert!(text.contains(&real[..16]), "{text}");
    assert!(text.contains("deleted"), "{text}");
    assert!(entries(&env.out).is_empty(), "{:?}", entries(&env.out));
    // ...or the server sends other bytes than announced.
    env.sim.push_answers(
        SimRoute::Release,
        vec![ScriptedAnswer {
            wrong_sha256: true,
            ..Default::default()
        }],
    );
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::Checksum { .. }), "{e}");
    assert!(entries(&env.out).is_empty(), "{:?}", entries(&env.out));
}

#[tokio::test]
async fn a_short_body_is_refused() {
    let env = setup(keys::GOOD, "5s").await;
    env.sim.push_answers(
        SimRoute::Release,
        vec![ScriptedAnswer {
            short_file: true,
            ..Default::default()
        }],
    );
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    match &e {
        DownloadError::Short { got, size, .. } => assert_eq!((*got, *size), (SIZE / 2, SIZE)),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("partial file was removed"), "{e}");
    assert!(!e.to_string().contains("token="), "{e}");
    assert!(entries(&env.out).is_empty(), "{:?}", entries(&env.out));
}

#[tokio::test]
async fn a_stalled_body_ends_after_request_timeout() {
    let env = setup(keys::GOOD, "1s").await;
    env.sim.push_answers(
        SimRoute::Release,
        vec![ScriptedAnswer {
            stall_body: true,
            ..Default::default()
        }],
    );
    let started = Instant::now();
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &e {
        DownloadError::Stalled { got, .. } => assert!(*got > 0 && *got < SIZE, "{got}"),
        other => panic!("{other}"),
    }
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(e.to_string().contains("request_timeout"), "{e}");
    assert!(entries(&env.out).is_empty(), "{:?}", entries(&env.out));
}

/// A genuine token from the sim, to be re-announced with other facts.
async fn real_token(env: &Env) -> (String, String, String) {
    let key = LicenseKey::parse(keys::GOOD).unwrap();
    let client = PortalClient::new(&env.config).unwrap();
    let c = client
        .call(
            Endpoint::Token,
            &request_body(Endpoint::Token, &facts(&key, Some("1.5.0"))),
        )
        .await;
    match c.outcome {
        Outcome::Token(t) => (t.token, t.url, t.sha256),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_body_larger_than_announced_is_refused() {
    let env = setup(keys::GOOD, "5s").await;
    let (token, url, sha) = real_token(&env).await;
    env.sim.push_answers(
        SimEndpoint::Token,
        vec![ScriptedAnswer::json(
            200,
            json!({"token": token, "url": url, "sha256": sha, "size": SIZE - 1000}),
        )],
    );
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains(&format!("{}", SIZE - 1000)), "{e}");
    assert!(entries(&env.out).is_empty(), "{:?}", entries(&env.out));
}

/// A plain-HTTP loopback server that sends `body` chunked (no Content-Length)
/// to every request.
async fn chunked_server(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head =
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                for part in body.chunks(8192) {
                    let _ = s
                        .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                        .await;
                    let _ = s.write_all(part).await;
                    let _ = s.write_all(b"\r\n").await;
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_stream_past_the_announced_size_is_cut_off() {
    let env = setup(keys::GOOD, "5s").await;
    let body = vec![7u8; 100_000];
    let base = chunked_server(body).await;
    env.sim.push_answers(
        SimEndpoint::Token,
        vec![ScriptedAnswer::json(
            200,
            json!({"token": "t", "url": format!("{base}/r/panel-1.5.0.tgz?token=t"),
                   "sha256": "0".repeat(64), "size": 50_000}),
        )],
    );
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    match &e {
        DownloadError::TooLarge { announced, .. } => assert_eq!(*announced, None),
        other => panic!("{other}"),
    }
    assert!(entries(&env.out).is_empty(), "{:?}", entries(&env.out));
}

#[tokio::test]
async fn an_insecure_redirect_is_not_followed() {
    let env = setup(keys::GOOD, "5s").await;
    env.sim.push_answers(
        SimRoute::Release,
        vec![ScriptedAnswer {
            redirect_to: Some("http://cdn.example/wispanel-1.5.0.tar.gz".into()),
            ..Default::default()
        }],
    );
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::BadUrl { .. }), "{e}");
    assert!(e.to_string().contains("plain http"), "{e}");
    assert!(entries(&env.out).is_empty());
}

#[tokio::test]
async fn an_unusable_directory_fails_before_any_request() {
    let env = setup(keys::GOOD, "5s").await;
    let file = env.tmp.path().join("file.txt");
    std::fs::write(&file, b"x").unwrap();
    // A path under a regular file fails for root too.
    for dir in [
        file.join("sub"),
        file.clone(),
        env.tmp.path().join("missing"),
    ] {
        let e = download(&env.config, None, &dir, None).await.unwrap_err();
        assert!(matches!(e, DownloadError::Dir { .. }), "{e}");
        assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
    }
    assert_eq!(env.sim.request_count(SimEndpoint::Token), 0);
    assert_eq!(env.sim.request_count(SimEndpoint::CheckUpdate), 0);
}

#[tokio::test]
async fn updates_expired_is_a_refusal_naming_the_code() {
    let env = setup(keys::NO_UPDATES, "5s").await;
    let e = download(&env.config, Some("1.5.0"), &env.out, None)
        .await
        .unwrap_err();
    match &e {
        DownloadError::Refused { state, code, .. } => {
            assert_eq!(*state, UpdateState::UpdatesExpired);
            assert_eq!(code, "UPDATES_EXPIRED");
        }
        other => panic!("{other}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("UPDATES_EXPIRED") && text.contains("renew"),
        "{text}"
    );
    assert!(!text.contains("NOUP-0000-0005"), "{text}");
    assert_eq!(e.code(), Some("UPDATES_EXPIRED"));
    // Without --version, check-update refuses the same way.
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("UPDATES_EXPIRED"), "{e}");
    assert!(entries(&env.out).is_empty());
}

#[tokio::test]
async fn a_bare_401_is_not_entitled() {
    let env = setup(keys::GOOD, "5s").await;
    // A valid key that is not activated on this other host.
    std::fs::write(env.tmp.path().join("hwid"), format!("{}\n", "f".repeat(64))).unwrap();
    let e = download(&env.config, Some("1.5.0"), &env.out, None)
        .await
        .unwrap_err();
    match &e {
        DownloadError::Refused { state, code, .. } => {
            assert_eq!(*state, UpdateState::NotEntitled);
            assert_eq!(code, "UNAUTHORIZED");
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("activate"), "{e}");
}

#[tokio::test]
async fn a_bad_version_is_a_usage_error() {
    let env = setup(keys::GOOD, "5s").await;
    let e = download(&env.config, Some("latest!"), &env.out, None)
        .await
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("\"latest!\""), "{e}");
    assert_eq!(env.sim.request_count(SimEndpoint::Token), 0);
}

#[tokio::test]
async fn the_saved_gate_is_respected() {
    let env = setup(keys::GOOD, "5s").await;
    let before = env.sim.requests().len();
    let until = wispanel_license::clock::now()
        .add(Duration::from_secs(600))
        .whole_seconds();
    let mut core = Core::default();
    core.portal.rate_limited_until = Some(until);
    Store::open(&env.state_dir())
        .unwrap()
        .save(&core, wispanel_license::clock::now())
        .unwrap();
    let e = download(&env.config, None, &env.out, None)
        .await
        .unwrap_err();
    match &e {
        DownloadError::GateClosed { until: t, .. } => assert_eq!(*t, until),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains(&until.to_string()), "{e}");
    assert_eq!(env.sim.requests().len(), before);
    // An open gate (in the past) lets the download through.
    core.portal.rate_limited_until =
        Some(wispanel_license::clock::now().sub(Duration::from_secs(1)));
    Store::open(&env.state_dir())
        .unwrap()
        .save(&core, wispanel_license::clock::now())
        .unwrap();
    download(&env.config, None, &env.out, None).await.unwrap();
}

#[tokio::test]
async fn a_429_names_when_to_try_again() {
    let env = setup(keys::GOOD, "5s").await;
    env.sim.push_answers(
        SimEndpoint::Token,
        vec![ScriptedAnswer {
            headers: [("Retry-After".to_string(), "120".to_string())].into(),
            ..ScriptedAnswer::json(429, json!({"code": "RATE_LIMITED", "error": "slow down"}))
        }],
    );
    let e = download(&env.config, Some("1.5.0"), &env.out, None)
        .await
        .unwrap_err();
    match &e {
        DownloadError::Portal { retry_at, .. } => assert!(retry_at.is_some()),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("try again after"), "{e}");
}

// ---------------------------------------------------------------------------
// Through the binary
// ---------------------------------------------------------------------------

async fn run_cli(env: &Env, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wispanel-license"))
        .arg("--config")
        .arg(&env.config_path)
        .args(args)
        .env_remove("WISPANEL_LICENSE_CONFIG")
        .env_remove("WISPANEL_LICENSE_SOCKET")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_the_path_and_exits_0() {
    let env = setup(keys::GOOD, "5s").await;
    let out = env.out.to_str().unwrap();
    let o = run_cli(&env, &["update", "download", "--dir", out]).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let want = env.out.join("wispanel-1.5.0.tar.gz");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n", want.display())
    );
    assert_eq!(std::fs::read(&want).unwrap(), release_bytes("1.5.0", SIZE));
    // Not a terminal: no progress bar.
    assert!(!stderr.contains('\r'), "{stderr}");

    let o = run_cli(
        &env,
        &[
            "--json",
            "update",
            "download",
            "--dir",
            out,
            "--version",
            "1.4.0",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["path"],
        env.out.join("wispanel-1.4.0.tar.gz").to_str().unwrap()
    );
    assert_eq!(v["version"], "1.4.0");
    assert_eq!(v["sha256"], release_sha256("1.4.0", SIZE));
    assert_eq!(v["size"], SIZE);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_1_on_a_refusal_and_2_on_a_bad_version() {
    let env = setup(keys::NO_UPDATES, "5s").await;
    let out = env.out.to_str().unwrap();
    let o = run_cli(&env, &["update", "download", "--dir", out]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("UPDATES_EXPIRED"), "{stderr}");
    assert!(!stderr.contains(keys::NO_UPDATES), "{stderr}");

    let o = run_cli(&env, &["--json", "update", "download", "--dir", out]).await;
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["code"], "UPDATES_EXPIRED");

    let o = run_cli(
        &env,
        &["update", "download", "--version", "x.y", "--dir", out],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
}
