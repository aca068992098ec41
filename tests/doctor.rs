//! `doctor` end to end, on fake hardware roots and temporary state and socket
//! paths, against the portal simulator (trusted CA, another CA, a stall, a
//! skewed `Date`), a listener that never answers, and a real daemon.
//! Loopback only: the portal is `https://localhost:PORT`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use wispanel_license::doctor::{self, Check, Options, Report, Status, Timeouts};
use wispanel_portal_sim::{self as sim, Outage, Scenario, SimHandle, SimOptions, TlsMode, keys};

const MID: &str = "5f3e2d1c0b0a09080706050403020100";

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/machine-id"), format!("{MID}\n")).unwrap();
        Host { dir }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes the configuration (mode 0600) for a portal at `port`.
    fn config(&self, port: u16, ca: Option<&Path>, key: &str) -> PathBuf {
        let mut text = format!(
            "license_key = \"{key}\"\nportal_url = \"https://localhost:{port}\"\nproduct_version = \"1.4.2\"\n\
             state_dir = \"{}\"\nsocket_path = \"{}\"\n",
            self.p("state").display(),
            self.p("run/status.sock").display(),
        );
        if let Some(ca) = ca {
            text.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
        }
        text.push_str(&format!(
            "[hardware]\nroot = \"{}\"\n[schedule]\nsplay = \"0s\"\n",
            self.p("root").display()
        ));
        let path = self.p("license.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

fn opts(t: Timeouts) -> Options {
    Options {
        timeouts: t,
        systemd: false,
        ..Options::default()
    }
}

fn quick() -> Timeouts {
    Timeouts {
        dns: Duration::from_secs(2),
        tcp: Duration::from_secs(2),
        proxy_connect: Duration::from_secs(2),
        tls: Duration::from_secs(2),
        http: Duration::from_secs(2),
        socket: Duration::from_secs(2),
        systemctl: Duration::from_secs(2),
        portal_total: Duration::from_secs(10),
    }
}

fn named<'a>(r: &'a Report, name: &str) -> &'a Check {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name:?} in:\n{}", r.text()))
}

fn has(r: &Report, name: &str) -> bool {
    r.checks.iter().any(|c| c.name == name)
}

async fn sim_with(tls: TlsMode, scenario: Scenario) -> SimHandle {
    let opts = SimOptions {
        tls,
        ..SimOptions::plain()
    }
    .with_scenario(scenario);
    sim::start(opts).await.unwrap()
}

async fn trusted(h: &Host, scenario: Scenario) -> (SimHandle, PathBuf) {
    let ca = h.p("ca.pem");
    let s = sim_with(TlsMode::SelfCa { ca_out: ca.clone() }, scenario).await;
    let cfg = h.config(s.addr.port(), Some(&ca), keys::GOOD);
    (s, cfg)
}

#[tokio::test]
async fn healthy_portal_over_tls() {
    let h = Host::new();
    let (s, cfg) = trusted(&h, Scenario::default()).await;
    let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
    let text = r.text();
    for name in [
        "configuration",
        "licence key",
        "key file mode",
        "hardware_id",
        "machine-id",
        "proxy",
        "portal DNS",
        "portal TCP",
        "portal TLS",
        "portal HTTP",
        "clock vs portal",
    ] {
        assert_eq!(named(&r, name).status, Status::Ok, "{name}:\n{text}");
    }
    assert!(
        named(&r, "portal DNS").found.contains("127.0.0.1"),
        "{text}"
    );
    let tls = named(&r, "portal TLS");
    assert!(
        tls.found.contains("issued by CN=wispanel-portal-sim CA"),
        "{text}"
    );
    assert!(tls.found.contains(", expires "), "{text}");
    assert!(
        named(&r, "portal HTTP").found.contains("answered HTTP 4"),
        "{text}"
    );
    // Never the key, the raw machine-id, or the key's middle.
    assert!(
        !text.contains(keys::GOOD) && !text.contains("GOOD-0000"),
        "{text}"
    );
    assert!(!text.contains(MID), "{text}");
    assert!(named(&r, "licence key").found.starts_with("WISP-****SA6T"));
    let json = serde_json::to_string(&r.json()).unwrap();
    assert!(!json.contains(MID) && !json.contains(keys::GOOD));
    // No daemon, no state yet: warnings, not failures.
    assert_eq!(named(&r, "daemon").status, Status::Warn, "{text}");
    assert_eq!(named(&r, "socket").status, Status::Warn, "{text}");
    assert_eq!(named(&r, "state_dir").status, Status::Warn, "{text}");
    assert_eq!(r.exit_code(), 1, "{text}");
    assert!(s.request_count(sim::Endpoint::Validate) >= 1);
}

#[tokio::test]
async fn another_ca_suggests_an_intercepting_proxy() {
    let h = Host::new();
    let ca = h.p("ca.pem");
    let s = sim_with(TlsMode::OtherCa { ca_out: ca.clone() }, Scenario::default()).await;
    let cfg = h.config(s.addr.port(), Some(&ca), keys::GOOD);
    let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
    let text = r.text();
    let tls = named(&r, "portal TLS");
    assert_eq!(tls.status, Status::Fail, "{text}");
    assert!(tls.found.contains("does not verify"), "{text}");
    assert!(
        tls.found.contains("untrusted CA"),
        "the issuer is named: {text}"
    );
    assert!(
        tls.hint.as_deref().unwrap_or("").contains("intercepting"),
        "{text}"
    );
    // The round trip is not tried past a failed handshake.
    assert!(!has(&r, "portal HTTP"), "{text}");
    assert_eq!(r.exit_code(), 2);
}

#[tokio::test]
async fn a_stalled_portal_is_bounded() {
    let h = Host::new();
    let (s, cfg) = trusted(&h, Scenario::default()).await;
    s.set_outage(Some(Outage::Stall));
    // The HTTP step's own timeout, 1 s here, bounds it.
    let t = Timeouts {
        http: Duration::from_secs(1),
        ..quick()
    };
    let t0 = Instant::now();
    let r = doctor::diagnose(&cfg, None, &opts(t)).await;
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(7), "{took:?}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let text = r.text();
    assert_eq!(named(&r, "portal TLS").status, Status::Ok, "{text}");
    let http = named(&r, "portal HTTP");
    assert_eq!(http.status, Status::Fail, "{text}");
    assert!(http.found.contains("no answer within 1 s"), "{text}");
    assert!(!has(&r, "clock vs portal"), "{text}");
}

#[tokio::test]
async fn skewed_date_warns_then_fails() {
    for (skew, want) in [
        (120, Status::Warn),
        (-120, Status::Warn),
        (600, Status::Fail),
    ] {
        let h = Host::new();
        let scenario = Scenario {
            date_skew_secs: skew,
            ..Scenario::default()
        };
        let (_s, cfg) = trusted(&h, scenario).await;
        let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
        let c = named(&r, "clock vs portal");
        assert_eq!(c.status, want, "skew {skew}:\n{}", r.text());
        // The portal's Date is ahead by `skew`, so the local clock is behind.
        let dir = if skew > 0 { "behind" } else { "ahead of" };
        assert!(c.found.contains(dir), "{c:?}");
    }
}

/// Accepts connections and never says a word.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

/// Paused time: the default timeouts run out at once, and `took` is the
/// time the run waited by tokio's clock (the real one hardly moves).
#[tokio::test(start_paused = true)]
async fn a_silent_portal_ends_well_within_30_s_with_default_timeouts() {
    let h = Host::new();
    let (port, task) = black_hole().await;
    let cfg = h.config(port, None, keys::GOOD);
    let t0 = tokio::time::Instant::now();
    let r = doctor::diagnose(&cfg, None, &opts(Timeouts::default())).await;
    let took = t0.elapsed();
    task.abort();
    assert!(took < Duration::from_secs(30), "{took:?}");
    // The TLS step waited its whole default timeout, 5 s.
    assert!(took >= Duration::from_secs(5), "{took:?}");
    let text = r.text();
    let tls = named(&r, "portal TLS");
    assert_eq!(tls.status, Status::Fail, "{text}");
    assert!(tls.found.contains("no TLS handshake"), "{text}");
    assert!(tls.found.contains("within 5 s"), "{text}");
    assert_eq!(r.exit_code(), 2);
}

/// Paused time (as above): the overall limit runs out at once.
#[tokio::test(start_paused = true)]
async fn the_overall_limit_names_the_step_it_cut() {
    let h = Host::new();
    let (port, task) = black_hole().await;
    let cfg = h.config(port, None, keys::GOOD);
    let t = Timeouts {
        tls: Duration::from_secs(20),
        portal_total: Duration::from_millis(700),
        ..quick()
    };
    let t0 = tokio::time::Instant::now();
    let r = doctor::diagnose(&cfg, None, &opts(t)).await;
    task.abort();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(took >= Duration::from_millis(700), "{took:?}");
    let text = r.text();
    let cut = named(&r, "portal TLS");
    assert_eq!(cut.status, Status::Fail, "{text}");
    assert!(cut.found.contains("cut off"), "{text}");
    // What was found before the cut is kept.
    assert_eq!(named(&r, "portal TCP").status, Status::Ok, "{text}");
}

#[tokio::test]
async fn refused_connection_fails_tcp() {
    let h = Host::new();
    // A port that was just free: bind, learn it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = h.config(port, None, keys::GOOD);
    let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
    let tcp = named(&r, "portal TCP");
    assert_eq!(tcp.status, Status::Fail, "{}", r.text());
    assert!(!has(&r, "portal TLS"));
}

#[tokio::test]
async fn bad_state_and_socket_files() {
    let h = Host::new();
    let (_s, cfg) = trusted(&h, Scenario::default()).await;
    let state = h.p("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(state.join("state.json"), "{\"schema\": 1, \"licence\": ").unwrap();
    std::fs::create_dir_all(h.p("run")).unwrap();
    std::fs::write(h.p("run/status.sock"), "not a socket").unwrap();

    let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
    let text = r.text();
    assert_eq!(named(&r, "state_dir").status, Status::Ok, "{text}");
    let st = named(&r, "state.json");
    assert_eq!(st.status, Status::Fail, "{text}");
    assert!(st.found.contains("does not parse"), "{text}");
    let sock = named(&r, "socket");
    assert_eq!(sock.status, Status::Fail, "{text}");
    assert!(sock.found.contains("not a socket"), "{text}");
    assert_eq!(named(&r, "daemon").status, Status::Warn, "{text}");
    assert_eq!(r.exit_code(), 2);

    // --socket wins over the configuration's socket_path.
    let elsewhere = h.p("elsewhere.sock");
    let r = doctor::diagnose(&cfg, Some(&elsewhere), &opts(quick())).await;
    assert!(named(&r, "socket").found.contains("elsewhere.sock"));
}

#[tokio::test]
async fn clock_behind_the_saved_last_success_fails() {
    let h = Host::new();
    let (_s, cfg) = trusted(&h, Scenario::default()).await;
    let store = wispanel_license::store::Store::open(&h.p("state")).unwrap();
    let mut core = wispanel_core::machine::Core::default();
    let future = wispanel_license::clock::now().add(Duration::from_secs(3 * 3600));
    core.portal.last_success_at = Some(future);
    core.licence.verdict_binding = Some(wispanel_core::machine::Binding {
        key_fingerprint: "0011223344556677".into(),
        hardware_id: "e".repeat(64),
    });
    store.save(&core, wispanel_license::clock::now()).unwrap();
    let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
    let text = r.text();
    assert_eq!(named(&r, "state.json").status, Status::Ok, "{text}");
    assert_eq!(
        named(&r, "clock vs last success").status,
        Status::Fail,
        "{text}"
    );
    assert_eq!(
        named(&r, "hardware_id since last verdict").status,
        Status::Warn,
        "{text}"
    );
}

#[tokio::test]
async fn broken_configuration_skips_the_portal() {
    let h = Host::new();
    let cfg = h.p("license.toml");
    std::fs::write(
        &cfg,
        "portal_url = \"http://wispanel.com\"\nproduct_version = \"1\"\n",
    )
    .unwrap();
    let r = doctor::diagnose(&cfg, Some(&h.p("none.sock")), &opts(quick())).await;
    let text = r.text();
    let c = named(&r, "configuration");
    assert_eq!(c.status, Status::Fail, "{text}");
    assert!(c.found.contains("portal_url"), "{text}");
    assert_eq!(named(&r, "portal").status, Status::Fail, "{text}");
    assert!(
        !has(&r, "portal DNS"),
        "no lookup of a host outside loopback: {text}"
    );
    assert_eq!(r.exit_code(), 2);
}

#[tokio::test]
async fn asks_a_running_daemon() {
    let h = Host::new();
    let (s, cfg) = trusted(&h, Scenario::default()).await;
    let config = wispanel_license::config::Config::load(&cfg).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listener = wispanel_license::socket::bind(&config).unwrap();
    let env = wispanel_license::daemon::Env {
        systemd: false,
        ..wispanel_license::daemon::Env::production()
    };
    let stop = shutdown.clone().cancelled_owned();
    let daemon = tokio::spawn(wispanel_license::daemon::run(config, listener, stop, env));
    // Wait for the socket and the first verdict.
    let t0 = Instant::now();
    loop {
        let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
        let done =
            has(&r, "licence state") && named(&r, "licence state").found.starts_with("active");
        if done {
            let text = r.text();
            assert_eq!(named(&r, "daemon").status, Status::Ok, "{text}");
            assert!(named(&r, "daemon").found.contains("version"), "{text}");
            assert_eq!(named(&r, "licence state").status, Status::Ok, "{text}");
            assert_eq!(named(&r, "socket").status, Status::Ok, "{text}");
            assert_eq!(named(&r, "state_dir").status, Status::Ok, "{text}");
            assert_eq!(named(&r, "state.json").status, Status::Ok, "{text}");
            assert_eq!(
                named(&r, "hardware_id since last verdict").status,
                Status::Ok,
                "{text}"
            );
            assert_eq!(r.exit_code(), 0, "{text}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", r.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The daemon reports the proxy it uses (none here); a proxy that only
    // this shell has is named, masked, with what to do about it.
    let mut o = opts(quick());
    o.proxy_env.https_proxy = Some("http://user:pw@127.0.0.1:9".into());
    let r = doctor::diagnose(&cfg, None, &o).await;
    let text = r.text();
    let c = named(&r, "daemon proxy");
    assert_eq!(c.status, Status::Warn, "{text}");
    assert_eq!(
        c.found,
        "the daemon uses no proxy, but this shell has HTTPS_PROXY=http://user:****@127.0.0.1:9",
        "{text}"
    );
    assert!(
        c.hint.as_deref().unwrap_or("").contains("license.toml"),
        "{text}"
    );
    assert!(!text.contains(":pw@"), "{text}");
    // Without it, nothing to say.
    let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
    assert!(!has(&r, "daemon proxy"), "{}", r.text());

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), daemon).await;
    assert!(!s.activations(keys::GOOD).is_empty());
}

/// A loopback HTTP proxy that answers `CONNECT` (with `status` and, on 200,
/// a tunnel to `upstream`) and records each request head.
async fn connect_proxy(
    upstream: std::net::SocketAddr,
    status: u16,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                if status != 200 {
                    let _ = c
                        .write_all(
                            format!("HTTP/1.1 {status} No\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                    return;
                }
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = c
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
            });
        }
    });
    (port, heads)
}

fn with_proxy(cfg: &Path, proxy: &str) {
    let mut text = std::fs::read_to_string(cfg).unwrap();
    text = text.replacen("[hardware]", &format!("proxy = \"{proxy}\"\n[hardware]"), 1);
    std::fs::write(cfg, text).unwrap();
}

#[tokio::test]
async fn through_a_connect_proxy() {
    let h = Host::new();
    let (s, cfg) = trusted(&h, Scenario::default()).await;
    let (port, heads) = connect_proxy(s.addr, 200).await;
    with_proxy(&cfg, &format!("http://user:s3cret@127.0.0.1:{port}"));
    let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
    let text = r.text();
    let proxy = named(&r, "proxy");
    assert!(
        proxy
            .found
            .contains(&format!("http://user:****@127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    for name in [
        "proxy DNS",
        "proxy TCP",
        "proxy tunnel",
        "portal TLS",
        "portal HTTP",
    ] {
        assert_eq!(named(&r, name).status, Status::Ok, "{name}:\n{text}");
    }
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads[0].starts_with(&format!("CONNECT localhost:{} ", s.addr.port())),
        "{heads:?}"
    );
    // base64("user:s3cret")
    assert!(
        heads[0].contains("Proxy-Authorization: Basic dXNlcjpzM2NyZXQ="),
        "{heads:?}"
    );
    assert!(
        heads.len() >= 2,
        "the round trip went through the proxy too: {heads:?}"
    );
}

#[tokio::test]
async fn a_proxy_that_wants_credentials() {
    let h = Host::new();
    let (s, cfg) = trusted(&h, Scenario::default()).await;
    let (port, _) = connect_proxy(s.addr, 407).await;
    with_proxy(&cfg, &format!("http://127.0.0.1:{port}"));
    let r = doctor::diagnose(&cfg, None, &opts(quick())).await;
    let t = named(&r, "proxy tunnel");
    assert_eq!(t.status, Status::Fail, "{}", r.text());
    assert!(t.found.contains("authentication"), "{t:?}");
}
