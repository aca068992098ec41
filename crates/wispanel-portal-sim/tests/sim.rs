//! The portal simulator over real sockets: TLS and plain HTTP, every
//! misbehaviour, runtime control, and the binary.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wispanel_core::timestamp::Timestamp;
use wispanel_portal_sim::{
    self as sim, Endpoint, LicenseBehaviour, Outage, Route, Scenario, ScriptedAnswer, SimHandle,
    SimOptions, TlsMode, keys,
};

const HW: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const VALIDATE: &str = "/api/v1/license/validate";
const ACTIVATE: &str = "/api/v1/license/activate";

/// reqwest is built without its `json` feature; these two stand in.
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body.to_string())
    }
}

async fn json_of(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

fn client(h: &SimHandle, timeout: Duration) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &h.ca_pem_path {
        let pem = std::fs::read(ca).unwrap();
        b = b.tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]);
    }
    b.build().unwrap()
}

async fn plain() -> (SimHandle, reqwest::Client) {
    let h = sim::start(SimOptions::plain()).await.unwrap();
    let c = client(&h, Duration::from_secs(5));
    (h, c)
}

async fn post(c: &reqwest::Client, h: &SimHandle, path: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(format!("{}{path}", h.base_url))
        .json_body(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn lic(key: &str) -> Value {
    json!({"license_key": key, "hardware_id": HW, "product_version": "1.4.2", "hostname": "h1"})
}

#[tokio::test]
async fn healthy_flow_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let h = sim::start(SimOptions::https(dir.path().join("ca.pem")))
        .await
        .unwrap();
    assert!(
        h.base_url.starts_with("https://127.0.0.1:"),
        "{}",
        h.base_url
    );
    assert_ne!(h.addr.port(), 0);
    let c = client(&h, Duration::from_secs(5));

    let (s, b) = post(&c, &h, ACTIVATE, lic(keys::GOOD)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["valid"], true);
    let l = &b["license"];
    assert_eq!(l["key"], "WISP-****SA6T");
    assert_eq!(l["tier"], "pro");
    assert_eq!(
        (l["max_users"].as_i64(), l["max_domains"].as_i64()),
        (Some(30), Some(100))
    );
    assert_eq!(l["max_databases"], -1);
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let expires = Timestamp::parse_rfc3339(l["expires_at"].as_str().unwrap()).unwrap();
    let valid_until = Timestamp::parse_rfc3339(l["valid_until"].as_str().unwrap()).unwrap();
    assert!(expires.since(now) > Duration::from_secs(364 * 86_400));
    let week = valid_until.since(now).as_secs();
    assert!((7 * 86_400 - 60..=7 * 86_400).contains(&week), "{week}");

    let (s, b) = post(&c, &h, VALIDATE, lic(keys::GOOD)).await;
    assert_eq!((s, &b["valid"]), (200, &json!(true)));
    assert_eq!(h.activations(keys::GOOD), vec![HW.to_string()]);

    let (s, b) = post(&c, &h, "/api/v1/license/deactivate", lic(keys::GOOD)).await;
    assert_eq!((s, b), (200, json!({"valid": false, "deactivated": true})));
    let (s, b) = post(&c, &h, VALIDATE, lic(keys::GOOD)).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("HARDWARE_MISMATCH")));

    assert_eq!(h.request_count(Endpoint::Validate), 2);
    assert_eq!(h.request_count(Endpoint::Deactivate), 1);
    let recorded = h.requests();
    assert_eq!(recorded.len(), 4);
    assert_eq!(recorded[0].endpoint, Endpoint::Activate);
    assert_eq!(recorded[0].key_last4.as_deref(), Some("SA6T"));
    assert_eq!(
        recorded[0].body.as_ref().unwrap()["license_key"],
        "WISP-****SA6T"
    );
    assert_eq!(recorded[0].body.as_ref().unwrap()["hostname"], "h1");
    assert!(!format!("{recorded:?}").contains(keys::GOOD));
    h.shutdown().await;
}

#[tokio::test]
async fn every_known_key_answers_its_code() {
    let (h, c) = plain().await;
    assert!(h.base_url.starts_with("http://127.0.0.1:"));
    assert!(h.ca_pem_path.is_none());
    for (key, status, code) in [
        (keys::EXPIRED, 403, "EXPIRED"),
        (keys::SUSPENDED, 403, "SUSPENDED"),
        (keys::REVOKED, 403, "REVOKED"),
        ("WISP-ZZZZ-9999-0000", 404, "INVALID_KEY"),
    ] {
        for path in [ACTIVATE, VALIDATE] {
            let (s, b) = post(&c, &h, path, lic(key)).await;
            assert_eq!(
                (s, b["code"].as_str()),
                (status, Some(code)),
                "{key} {path}"
            );
            assert_eq!(b["valid"], false);
        }
    }
    let (s, b) = post(&c, &h, VALIDATE, lic("WISP-ZZZZ-9999-0000")).await;
    assert_eq!(
        (s, b),
        (
            404,
            json!({"valid": false, "error": "Invalid license key", "code": "INVALID_KEY"})
        )
    );
    let (_, b) = post(&c, &h, VALIDATE, lic(keys::EXPIRED)).await;
    assert_eq!(
        b,
        json!({"valid": false, "error": "License expired", "code": "EXPIRED"})
    );

    let (s, b) = post(&c, &h, ACTIVATE, lic(keys::MAX_ACTIVATIONS)).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("MAX_ACTIVATIONS")));
    let (s, b) = post(&c, &h, VALIDATE, lic(keys::MAX_ACTIVATIONS)).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("HARDWARE_MISMATCH")));

    let (s, b) = post(&c, &h, ACTIVATE, lic(keys::NO_UPDATES)).await;
    assert_eq!((s, &b["valid"]), (200, &json!(true)));
    let mut upd = lic(keys::NO_UPDATES);
    upd["current_version"] = json!("1.4.2");
    upd["channel"] = json!("stable");
    for path in ["/api/v1/download/check-update", "/api/v1/download/token"] {
        let (s, b) = post(&c, &h, path, upd.clone()).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("UPDATES_EXPIRED")),
            "{path}"
        );
    }
    upd["license_key"] = json!("WISP-ZZZZ-9999-0000");
    let (s, b) = post(&c, &h, "/api/v1/download/check-update", upd).await;
    assert_eq!((s, b), (401, json!({"error": "Invalid license"})));

    let (s, b) = post(&c, &h, "/api/v2/nothing", json!({})).await;
    assert_eq!(
        (s, b),
        (
            404,
            json!({"success": false, "error": "Not found", "code": "NOT_FOUND"})
        )
    );
    h.shutdown().await;
}

#[tokio::test]
async fn short_hardware_id_is_a_validation_error() {
    let (h, c) = plain().await;
    let (s, b) = post(
        &c,
        &h,
        VALIDATE,
        json!({"license_key": keys::GOOD, "hardware_id": "abc"}),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        b,
        json!({"valid": false, "error": "Invalid request data", "code": "VALIDATION_ERROR",
               "details": {"hardware_id": ["The hardware id field must be 64 characters."]}})
    );
    h.shutdown().await;
}

#[tokio::test]
async fn scripted_sequence_is_consumed_in_order_then_default() {
    let scenario = Scenario::from_toml(
        r#"
        [[validate.answers]]
        status = 503
        headers = { "Retry-After" = "2" }
        body = { success = false, code = "INTERNAL_ERROR" }
        [[validate.answers]]
        status = 200
        body = "<html>maintenance</html>"
        headers = { "Content-Type" = "text/html" }
        "#,
        Path::new("inline.toml"),
    )
    .unwrap();
    let h = sim::start(SimOptions::plain().with_scenario(scenario))
        .await
        .unwrap();
    let c = client(&h, Duration::from_secs(5));
    post(&c, &h, ACTIVATE, lic(keys::GOOD)).await;

    let r = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        json_of(r).await,
        json!({"success": false, "code": "INTERNAL_ERROR"})
    );

    let r = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert_eq!(r.text().await.unwrap(), "<html>maintenance</html>");

    let (s, b) = post(&c, &h, VALIDATE, lic(keys::GOOD)).await;
    assert_eq!((s, &b["valid"]), (200, &json!(true)));
    h.shutdown().await;
}

#[tokio::test]
async fn stall_makes_the_client_time_out() {
    let h = sim::start(SimOptions::plain()).await.unwrap();
    let c = client(&h, Duration::from_millis(300));
    h.push_answers(Endpoint::Validate, vec![ScriptedAnswer::stall()]);
    let err = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // The stall was recorded, and the sim still serves.
    assert_eq!(h.requests()[0].status, None);
    let (s, _) = post(&c, &h, ACTIVATE, lic(keys::GOOD)).await;
    assert_eq!(s, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn drop_is_a_connection_error() {
    let (h, c) = plain().await;
    h.push_answers(Endpoint::Validate, vec![ScriptedAnswer::drop_connection()]);
    let err = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.status().is_none(), "no status line was sent: {err:?}");
    let (s, _) = post(&c, &h, ACTIVATE, lic(keys::GOOD)).await;
    assert_eq!(s, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn truncated_body_fails_to_read() {
    let (h, c) = plain().await;
    post(&c, &h, ACTIVATE, lic(keys::GOOD)).await;
    h.push_answers(
        Endpoint::Validate,
        vec![ScriptedAnswer::normal().with_truncate_at(10)],
    );
    let r = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let declared = r.content_length().unwrap();
    assert!(declared > 10, "{declared}");
    assert!(
        r.bytes().await.is_err(),
        "a cut body must not read as complete"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn body_repeat_streams_five_mib() {
    let (h, c) = plain().await;
    const SIZE: u64 = 5 * 1024 * 1024;
    h.push_answers(
        Endpoint::Validate,
        vec![ScriptedAnswer::json(200, json!({"valid": true})).with_body_repeat(SIZE)],
    );
    let r = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.content_length(), Some(SIZE));
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len() as u64, SIZE);
    assert!(body.starts_with(br#"{"valid":true}{"valid":true}"#));
    h.shutdown().await;
}

#[tokio::test]
async fn redirect_answers_302_with_location() {
    let (h, c) = plain().await;
    h.push_answers(
        Endpoint::Validate,
        vec![ScriptedAnswer::redirect("https://elsewhere.invalid/api")],
    );
    let r = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"], "https://elsewhere.invalid/api");
    h.shutdown().await;
}

#[tokio::test]
async fn date_header_is_skewed() {
    let scenario = Scenario {
        date_skew_secs: -3600,
        ..Scenario::default()
    };
    let h = sim::start(SimOptions::plain().with_scenario(scenario))
        .await
        .unwrap();
    let c = client(&h, Duration::from_secs(5));
    let r = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    let date = r.headers()["date"].to_str().unwrap();
    let portal = Timestamp::parse_http_date(date).unwrap();
    let behind =
        Timestamp::from_system_time(std::time::SystemTime::now()).unix_secs() - portal.unix_secs();
    assert!((3595..=3605).contains(&behind), "{date}: {behind}s behind");
    h.shutdown().await;
}

#[tokio::test]
async fn other_ca_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let h = sim::start(SimOptions {
        tls: TlsMode::OtherCa { ca_out: ca.clone() },
        ..SimOptions::plain()
    })
    .await
    .unwrap();
    assert_eq!(h.ca_pem_path.as_deref(), Some(ca.as_path()));
    let c = client(&h, Duration::from_secs(5));
    let err = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "{text}"
    );
    assert_eq!(h.requests().len(), 0, "nothing got past TLS");
    h.shutdown().await;
}

#[tokio::test]
async fn release_download_matches_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let h = sim::start(SimOptions::https(dir.path().join("ca.pem")))
        .await
        .unwrap();
    let c = client(&h, Duration::from_secs(5));
    post(&c, &h, ACTIVATE, lic(keys::GOOD)).await;

    let mut req = lic(keys::GOOD);
    req["current_version"] = json!("1.4.2");
    req["channel"] = json!("stable");
    let (s, b) = post(&c, &h, "/api/v1/download/check-update", req.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(b["update_available"], true);
    assert_eq!(b["latest_version"], "1.5.0");
    req["current_version"] = json!("0.0.1");
    let (s, b) = post(&c, &h, "/api/v1/download/check-update", req).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("VERSION_TOO_LOW")));

    let mut tok = lic(keys::GOOD);
    tok["version"] = json!("1.5.0");
    let (s, token) = post(&c, &h, "/api/v1/download/token", tok.clone()).await;
    assert_eq!(s, 200, "{token}");
    let url = token["url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "{}/releases/wispanel-1.5.0.tar.gz?token=",
        h.base_url
    )));
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let file = r.bytes().await.unwrap();
    assert_eq!(file.len() as u64, token["size"].as_u64().unwrap());
    let digest: String = Sha256::digest(&file)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(token["sha256"], digest);
    assert_eq!(digest, sim::release_sha256("1.5.0", 256 * 1024));

    // Misbehaving downloads, in order.
    h.push_answers(
        Route::Release,
        vec![
            ScriptedAnswer {
                wrong_sha256: true,
                ..Default::default()
            },
            ScriptedAnswer {
                short_file: true,
                ..Default::default()
            },
            ScriptedAnswer {
                stall_body: true,
                ..Default::default()
            },
        ],
    );
    let corrupt = c.get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(corrupt.len(), file.len());
    assert_ne!(corrupt, file);
    let short = c.get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(short.len(), file.len() / 2);
    let slow = client(&h, Duration::from_millis(500));
    let r = slow.get(url).send().await.unwrap();
    assert!(r.bytes().await.unwrap_err().is_timeout());

    let (s, _) = post(&c, &h, "/api/v1/download/token", {
        tok["version"] = json!("9.0.0");
        tok
    })
    .await;
    assert_eq!(s, 404);
    let r = c
        .get(format!(
            "{}/releases/wispanel-1.5.0.tar.gz?token=forged",
            h.base_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    h.shutdown().await;
}

#[tokio::test]
async fn runtime_control() {
    let (h, c) = plain().await;
    post(&c, &h, ACTIVATE, lic(keys::GOOD)).await;

    h.set_outage(Some(Outage::Status(503)));
    let (s, b) = post(&c, &h, VALIDATE, lic(keys::GOOD)).await;
    assert_eq!((s, b["code"].as_str()), (503, Some("INTERNAL_ERROR")));

    h.set_outage(Some(Outage::RateLimit {
        retry_after: Some("2".into()),
    }));
    let r = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");

    h.set_outage(Some(Outage::Drop));
    assert!(
        c.post(format!("{}{VALIDATE}", h.base_url))
            .json_body(&lic(keys::GOOD))
            .send()
            .await
            .is_err()
    );

    h.set_outage(None);
    let (s, _) = post(&c, &h, VALIDATE, lic(keys::GOOD)).await;
    assert_eq!(s, 200);

    h.set_license(keys::GOOD, LicenseBehaviour::Expired);
    let (s, b) = post(&c, &h, VALIDATE, lic(keys::GOOD)).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("EXPIRED")));
    h.set_license(keys::GOOD, LicenseBehaviour::Valid);

    h.push_answers(
        Endpoint::Validate,
        vec![ScriptedAnswer::json(500, json!({"code": "INTERNAL_ERROR"}))],
    );
    assert_eq!(post(&c, &h, VALIDATE, lic(keys::GOOD)).await.0, 500);
    assert_eq!(post(&c, &h, VALIDATE, lic(keys::GOOD)).await.0, 200);

    // The same over the control endpoints the binary's users script with.
    let ctl = |path: &str, body: Value| {
        let c = c.clone();
        let url = format!("{}{path}", h.base_url);
        async move {
            c.post(url)
                .json_body(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        ctl(
            "/_sim/license",
            json!({"license_key": keys::GOOD, "behaviour": "suspended"})
        )
        .await,
        200
    );
    let (_, b) = post(&c, &h, VALIDATE, lic(keys::GOOD)).await;
    assert_eq!(b["code"], "SUSPENDED");
    assert_eq!(
        ctl("/_sim/outage", json!({"mode": "503", "retry_after": "5"})).await,
        200
    );
    let r = c
        .post(format!("{}{VALIDATE}", h.base_url))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["retry-after"].to_str().ok()
        ),
        (503, Some("5"))
    );
    assert_eq!(ctl("/_sim/outage", json!({"mode": "none"})).await, 200);
    let listed = json_of(
        c.get(format!("{}/_sim/requests", h.base_url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), h.requests().len());
    h.shutdown().await;
}

/// Raw sockets: keep-alive with pipelining, `Connection: close`, and a broken
/// request answered 400 then closed.
#[tokio::test]
async fn keep_alive_close_and_malformed_requests() {
    let h = sim::start(SimOptions::plain()).await.unwrap();
    let body = lic(keys::EXPIRED).to_string();
    let one = format!(
        "POST {VALIDATE} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let last = format!(
        "POST {VALIDATE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(format!("{one}{one}{last}").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("the server closes after Connection: close")
        .unwrap();
    assert_eq!(
        out.matches("HTTP/1.1 403 Forbidden\r\n").count(),
        3,
        "{out}"
    );
    assert_eq!(
        out.matches("Connection: keep-alive\r\n").count(),
        2,
        "{out}"
    );
    assert_eq!(out.matches("Connection: close\r\n").count(), 1, "{out}");

    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"BLAH\x00\x01 nonsense\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("the server closes after a malformed request")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.contains("\"code\":\"VALIDATION_ERROR\""), "{out}");
    assert_eq!(h.requests().len(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn refuses_to_bind_beyond_loopback() {
    let opts = SimOptions {
        bind: "0.0.0.0:0".parse().unwrap(),
        ..SimOptions::plain()
    };
    assert!(matches!(
        sim::start(opts).await,
        Err(sim::SimError::NotLoopback(_))
    ));
}

#[tokio::test]
async fn binary_prints_url_writes_port_file_and_exits_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let ca = dir.path().join("ca.pem");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wispanel-portal-sim"))
        .arg("--port-file")
        .arg(&port_file)
        .arg("--ca-out")
        .arg(&ca)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the URL is printed promptly")
        .unwrap()
        .unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{first}");
    assert_eq!(std::fs::read_to_string(&port_file).unwrap().trim(), url);

    let pem = std::fs::read(&ca).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let r = c
        .post(format!("{url}{VALIDATE}"))
        .json_body(&lic(keys::GOOD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "not activated yet");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits within 5 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(err.contains("endpoint=validate"), "{err}");
    assert!(err.contains("WISP-****SA6T"), "{err}");
    assert!(!err.contains(keys::GOOD), "the full key was logged: {err}");
}

#[tokio::test]
async fn idempotency_key_and_a_lost_activation_over_the_wire() {
    let scenario = Scenario {
        clock_offset: "+1d".into(),
        ..Scenario::default()
    };
    let h = sim::start(SimOptions::plain().with_scenario(scenario))
        .await
        .unwrap();
    h.set_seat_limit(keys::GOOD, 1);
    h.set_activate_counts_every_request(true);
    h.push_answers(Endpoint::Activate, vec![ScriptedAnswer::lost()]);
    let c = client(&h, Duration::from_secs(5));
    let send = |key: &'static str| {
        c.post(format!("{}{ACTIVATE}", h.base_url))
            .header("Idempotency-Key", key)
            .json_body(&lic(keys::GOOD))
            .send()
    };
    assert!(send("k-1").await.is_err(), "the answer is lost");
    assert_eq!(h.seats(keys::GOOD), 1, "but the seat is taken");
    let r = send("k-1").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    // The portal's clock is a day ahead: its Date and valid_until.
    let date = Timestamp::parse_http_date(r.headers()["date"].to_str().unwrap()).unwrap();
    let ahead =
        date.unix_secs() - Timestamp::from_system_time(std::time::SystemTime::now()).unix_secs();
    assert!((86_395..=86_405).contains(&ahead), "{ahead}");
    let b = json_of(r).await;
    let vu = Timestamp::parse_rfc3339(b["license"]["valid_until"].as_str().unwrap()).unwrap();
    assert!((vu.unix_secs() - date.unix_secs() - 7 * 86_400).abs() <= 5);
    assert_eq!(h.seats_of(keys::GOOD, HW), 1);
    let keys_sent: Vec<_> = h
        .requests()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys_sent, vec![Some("k-1".to_string()); 2]);
    // Control API.
    let (s, b) = post(&c, &h, "/_sim/seats", json!({"license_key": keys::GOOD})).await;
    assert_eq!((s, b["seats"].as_u64()), (200, Some(1)));
    h.shutdown().await;
}
