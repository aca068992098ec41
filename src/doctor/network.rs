//! The way to the portal: the proxy in use, DNS, TCP, the TLS handshake and
//! its certificate chain (recorded by our own verifier, so that a certificate
//! from an intercepting proxy can be named), an HTTP round trip, and the
//! clock against the portal's `Date`.
//!
//! Each step has its own timeout ([`super::Timeouts`]) and all of them
//! together one more; a step cut off by either is a `fail` that names it.

use super::{Check, Options, Timeouts};
use crate::config::Config;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use wispanel_core::timestamp::Timestamp;

/// Clock skew above this many seconds warns, above [`SKEW_FAIL_SECS`] fails.
pub const SKEW_WARN_SECS: i64 = 60;
pub const SKEW_FAIL_SECS: i64 = 300;
/// A certificate that expires sooner than this warns.
const CERT_WARN_DAYS: i64 = 14;
/// The endpoint of the round trip; an empty body is refused, which is fine.
pub const PROBE_PATH: &str = "/api/v1/license/validate";

// ---------------------------------------------------------------------------
// Proxy (pure)
// ---------------------------------------------------------------------------

/// The proxy variables of the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `HTTPS_PROXY`, else `https_proxy`.
    pub https_proxy: Option<String>,
    /// `ALL_PROXY`, else `all_proxy`.
    pub all_proxy: Option<String>,
    /// `NO_PROXY`, else `no_proxy`.
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    pub fn from_process() -> ProxyEnv {
        let var = |a: &str, b: &str| {
            [a, b]
                .iter()
                .filter_map(|n| std::env::var(n).ok())
                .find(|v| !v.trim().is_empty())
        };
        ProxyEnv {
            https_proxy: var("HTTPS_PROXY", "https_proxy"),
            all_proxy: var("ALL_PROXY", "all_proxy"),
            no_proxy: var("NO_PROXY", "no_proxy"),
        }
    }
}

/// The proxy the daemon uses for the portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyChoice {
    Direct,
    /// An environment proxy that `NO_PROXY` turns off for this host.
    Bypassed {
        masked: String,
        source: &'static str,
    },
    Via {
        url: String,
        source: &'static str,
    },
}

/// Config `proxy`, else `HTTPS_PROXY`/`ALL_PROXY` unless `NO_PROXY` names `host`.
pub fn choose_proxy(config_proxy: Option<&str>, env: &ProxyEnv, host: &str) -> ProxyChoice {
    if let Some(p) = config_proxy {
        return ProxyChoice::Via {
            url: p.to_string(),
            source: "the configuration's proxy",
        };
    }
    let (url, source) = match (&env.https_proxy, &env.all_proxy) {
        (Some(p), _) => (p.clone(), "HTTPS_PROXY"),
        (None, Some(p)) => (p.clone(), "ALL_PROXY"),
        (None, None) => return ProxyChoice::Direct,
    };
    if env
        .no_proxy
        .as_deref()
        .is_some_and(|n| no_proxy_matches(n, host))
    {
        return ProxyChoice::Bypassed {
            masked: mask_proxy(&url),
            source,
        };
    }
    ProxyChoice::Via { url, source }
}

/// Whether a `NO_PROXY` list names `host`: `*`, the host itself, a parent
/// domain (`example.com` and `.example.com` both match `a.example.com`), an
/// address, or an address range (`10.0.0.0/8`).
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            if let Some((net, bits)) = entry.split_once('/') {
                return match (host_ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    (Some(h), Ok(n), Ok(b)) => in_range(h, n, b),
                    _ => false,
                };
            }
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            if let (Some(h), Ok(e)) = (host_ip, entry.parse::<IpAddr>()) {
                return h == e;
            }
            // "example.com:443": the port does not matter here.
            let entry = match entry.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => entry,
            };
            host == entry || host.ends_with(&format!(".{entry}"))
        })
}

fn in_range(host: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (host, net) {
        (IpAddr::V4(h), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(h) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(h), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(h) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `http://user:****@host:port`: the password never shows.
pub fn mask_proxy(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() && u.set_password(Some("****")).is_err() {
                return "(a proxy URL with a password)".into();
            }
            let s = u.to_string();
            if u.path() == "/" && !raw.ends_with('/') {
                s.trim_end_matches('/').to_string()
            } else {
                s
            }
        }
        Err(_) => "(a proxy URL that does not parse)".into(),
    }
}

pub fn proxy_check(choice: &ProxyChoice) -> Check {
    match choice {
        ProxyChoice::Direct => Check::ok("proxy", "none (direct connection)"),
        ProxyChoice::Bypassed { masked, source } => Check::ok(
            "proxy",
            format!("none: NO_PROXY exempts the portal from {source} ({masked})"),
        ),
        ProxyChoice::Via { url, source } => {
            Check::ok("proxy", format!("{} (from {source})", mask_proxy(url)))
        }
    }
}

// ---------------------------------------------------------------------------
// Clock skew (pure)
// ---------------------------------------------------------------------------

/// Local clock minus the portal's `Date`, in whole seconds.
pub fn skew_secs(now: Timestamp, portal_date: Timestamp) -> i64 {
    (now.millis() - portal_date.millis()) / 1000
}

pub fn skew_check(skew: Option<i64>) -> Check {
    let name = "clock vs portal";
    let Some(s) = skew else {
        return Check::warn(
            name,
            "the portal's answer has no usable Date header",
            "the clock could not be compared; make sure time synchronisation runs (`timedatectl`)",
        );
    };
    let dir = if s > 0 { "ahead of" } else { "behind" };
    let found = format!("the local clock is {} s {dir} the portal's Date", s.abs());
    let hint = "enable time synchronisation: `timedatectl set-ntp true` (or chrony/ntpd), then check `timedatectl status`";
    if s.abs() > SKEW_FAIL_SECS {
        Check::fail(name, found, hint)
    } else if s.abs() > SKEW_WARN_SECS {
        Check::warn(name, found, hint)
    } else {
        Check::ok(name, format!("within {} s of the portal's Date", s.abs()))
    }
}

// ---------------------------------------------------------------------------
// TLS: facts and their lines (pure)
// ---------------------------------------------------------------------------

/// The leaf certificate, as much as a person needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub subject: String,
    pub issuer: String,
    pub not_after: Option<Timestamp>,
    /// Certificates the server sent, the leaf included.
    pub chain_len: usize,
}

impl Leaf {
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Option<Leaf> {
        let der = chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        Some(Leaf {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: Some(Timestamp::from_unix_secs(
                cert.validity().not_after.timestamp(),
            )),
            chain_len: chain.len(),
        })
    }
}

/// How the handshake went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsOutcome {
    Ok {
        version: String,
        leaf: Option<Leaf>,
    },
    /// The certificate did not verify.
    Rejected {
        error: String,
        kind: CertProblem,
        leaf: Option<Leaf>,
    },
    /// Any other failure (the server closed, a protocol error, no trust store).
    Failed(String),
    TimedOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertProblem {
    UnknownIssuer,
    Time,
    Name,
    Other,
}

pub fn tls_check(
    host: &str,
    outcome: &TlsOutcome,
    ca_file: Option<&Path>,
    limit: Duration,
    now: Timestamp,
) -> Check {
    let name = "portal TLS";
    let describe = |l: &Leaf| {
        let exp = l
            .not_after
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "?".into());
        format!(
            "certificate for {} issued by {}, expires {exp}, chain of {}",
            l.subject, l.issuer, l.chain_len
        )
    };
    match outcome {
        TlsOutcome::Ok { version, leaf } => {
            let Some(l) = leaf else {
                return Check::ok(name, format!("{version} handshake with {host}"));
            };
            let found = format!("{version}, {}", describe(l));
            match l.not_after {
                Some(t) if t.millis() - now.millis() < CERT_WARN_DAYS * 86_400_000 => Check::warn(
                    name,
                    found,
                    "the portal's certificate expires soon; nothing to do here unless the clock is wrong",
                ),
                _ => Check::ok(name, found),
            }
        }
        TlsOutcome::Rejected { error, kind, leaf } => {
            let seen = leaf
                .as_ref()
                .map(|l| format!("; the server sent a {}", describe(l)))
                .unwrap_or_default();
            let trust = match ca_file {
                Some(p) => format!("ca_file {} nor the system roots", p.display()),
                None => "the system roots".to_string(),
            };
            match kind {
                CertProblem::UnknownIssuer => Check::fail(
                    name,
                    format!("the certificate does not verify against {trust} ({error}){seen}"),
                    format!(
                        "an intercepting (TLS-inspecting) proxy or firewall is probably in the way: ask its admin to exempt {host}, or set ca_file to that proxy's CA{}",
                        if ca_file.is_some() {
                            "; or ca_file is not the CA of this portal"
                        } else {
                            ""
                        }
                    ),
                ),
                CertProblem::Time => Check::fail(
                    name,
                    format!("the certificate is not valid now ({error}){seen}"),
                    "check the clock (see the clock checks) and enable time synchronisation",
                ),
                CertProblem::Name => Check::fail(
                    name,
                    format!("the certificate is not for {host} ({error}){seen}"),
                    "an intercepting proxy, or portal_url names the wrong host",
                ),
                CertProblem::Other => Check::fail(
                    name,
                    format!("the certificate was refused ({error}){seen}"),
                    "an intercepting proxy or a broken portal certificate",
                ),
            }
        }
        TlsOutcome::Failed(e) => Check::fail(
            name,
            format!("handshake with {host} failed: {e}"),
            "something between this host and the portal breaks TLS (a proxy or firewall?)",
        ),
        TlsOutcome::TimedOut => Check::fail(
            name,
            format!(
                "no TLS handshake with {host} within {} s",
                limit.as_secs_f64()
            ),
            "the connection opens but nothing answers: a firewall or proxy swallowing the traffic?",
        ),
    }
}

/// The round trip's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpOutcome {
    Answered {
        status: u16,
        elapsed: Duration,
        date: Option<Timestamp>,
    },
    Failed(String),
    TimedOut,
}

pub fn http_check(url: &str, outcome: &HttpOutcome, limit: Duration) -> Check {
    let name = "portal HTTP";
    match outcome {
        HttpOutcome::Answered {
            status, elapsed, ..
        } => {
            let found = format!(
                "POST {url} answered HTTP {status} in {} ms",
                elapsed.as_millis()
            );
            match status {
                300..=399 => Check::warn(
                    name,
                    found,
                    "a redirect: a captive portal or a proxy may be answering instead of the portal",
                ),
                429 => Check::warn(
                    name,
                    found,
                    "the portal rate-limits this host; the daemon waits as told",
                ),
                500..=599 => Check::warn(
                    name,
                    found,
                    "the portal (or a proxy) has trouble; the daemon retries with back-off",
                ),
                _ => Check::ok(name, found),
            }
        }
        HttpOutcome::Failed(e) => {
            Check::fail(name, format!("POST {url}: {e}"), "see the checks above")
        }
        HttpOutcome::TimedOut => Check::fail(
            name,
            format!("POST {url}: no answer within {} s", limit.as_secs_f64()),
            "the portal (or a proxy) accepts the request but does not answer",
        ),
    }
}

// ---------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------

/// The portal's address as the checks need it.
struct Target {
    base: String,
    host: String,
    port: u16,
    tls: bool,
}

fn target(portal_url: &str) -> Result<Target, String> {
    let u = url::Url::parse(portal_url).map_err(|e| e.to_string())?;
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("the URL has no host".into()),
    };
    let port = u
        .port_or_known_default()
        .ok_or_else(|| "the URL has no port".to_string())?;
    Ok(Target {
        base: portal_url.trim_end_matches('/').to_string(),
        host,
        port,
        tls: u.scheme() == "https",
    })
}

/// Where the checks have got to, kept outside the overall timeout so that a
/// run cut short still shows what it found and names the step it was in.
#[derive(Default)]
struct Progress {
    checks: Vec<Check>,
    step: &'static str,
}

/// Every portal check, bounded by `opts.timeouts.portal_total`.
pub async fn run(config: &Config, opts: &Options) -> Vec<Check> {
    let mut progress = Progress::default();
    let t = &opts.timeouts;
    let r = tokio::time::timeout(t.portal_total, steps(config, opts, &mut progress)).await;
    if r.is_err() {
        progress.checks.push(Check::fail(
            progress.step,
            format!(
                "cut off: the portal checks did not finish within {} s",
                t.portal_total.as_secs_f64()
            ),
            "the network is very slow or black-holes traffic to the portal",
        ));
    }
    progress.checks
}

async fn steps(config: &Config, opts: &Options, p: &mut Progress) {
    let t = &opts.timeouts;
    let tgt = match target(&config.portal_url) {
        Ok(t) => t,
        Err(e) => {
            p.checks.push(Check::fail(
                "portal",
                format!("portal_url {}: {e}", config.portal_url),
                "fix portal_url",
            ));
            return;
        }
    };
    let choice = choose_proxy(config.proxy.as_deref(), &opts.proxy_env, &tgt.host);
    p.checks.push(proxy_check(&choice));

    // Where the TCP connection goes: the portal, or the proxy.
    let proxy = match &choice {
        ProxyChoice::Via { url, .. } => match url::Url::parse(url) {
            Ok(u) => Some(u),
            Err(_) => {
                p.checks.push(Check::fail(
                    "proxy",
                    format!("{} does not parse", mask_proxy(url)),
                    "fix the proxy URL",
                ));
                return;
            }
        },
        _ => None,
    };
    let (dns_name, dns_host, dns_port) = match &proxy {
        Some(u) => (
            "proxy DNS",
            u.host_str()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            u.port_or_known_default().unwrap_or(3128),
        ),
        None => ("portal DNS", tgt.host.clone(), tgt.port),
    };

    p.step = dns_name;
    let addrs = match dns(&dns_host, dns_port, t).await {
        Ok(a) => {
            let list: Vec<String> = a.iter().map(|s| s.ip().to_string()).collect();
            p.checks.push(Check::ok(
                dns_name,
                format!("{dns_host} → {}", list.join(", ")),
            ));
            a
        }
        Err(c) => {
            p.checks.push(c.named(dns_name));
            return;
        }
    };

    let tcp_name = if proxy.is_some() {
        "proxy TCP"
    } else {
        "portal TCP"
    };
    p.step = tcp_name;
    let mut stream = match connect(&addrs, t.tcp).await {
        Ok((s, addr, elapsed)) => {
            p.checks.push(Check::ok(
                tcp_name,
                format!("connected to {addr} in {} ms", elapsed.as_millis()),
            ));
            s
        }
        Err(c) => {
            p.checks.push(c.named(tcp_name));
            return;
        }
    };

    let mut tls_ok = true;
    if let Some(u) = &proxy {
        if u.scheme() != "http" {
            p.checks.push(Check::ok(
                "proxy tunnel",
                format!(
                    "not probed directly through a {} proxy; see the HTTP round trip",
                    u.scheme()
                ),
            ));
            tls_ok = false;
        } else {
            p.step = "proxy tunnel";
            match tokio::time::timeout(t.proxy_connect, tunnel(&mut stream, u, &tgt)).await {
                Ok(Ok(())) => p.checks.push(Check::ok(
                    "proxy tunnel",
                    format!("CONNECT {}:{} accepted", tgt.host, tgt.port),
                )),
                Ok(Err(c)) => {
                    p.checks.push(c);
                    return;
                }
                Err(_) => {
                    p.checks.push(Check::fail(
                        "proxy tunnel",
                        format!(
                            "no answer to CONNECT within {} s",
                            t.proxy_connect.as_secs_f64()
                        ),
                        "the proxy accepts connections but does not answer",
                    ));
                    return;
                }
            }
        }
    }

    if tgt.tls && tls_ok {
        p.step = "portal TLS";
        let outcome = handshake(stream, &tgt.host, config.ca_file.as_deref(), t.tls).await;
        let check = tls_check(
            &tgt.host,
            &outcome,
            config.ca_file.as_deref(),
            t.tls,
            crate::clock::now(),
        );
        let failed = check.status == super::Status::Fail;
        p.checks.push(check);
        if failed {
            return;
        }
    } else if !tgt.tls {
        drop(stream);
        p.checks.push(Check::ok(
            "portal TLS",
            format!("not used: {} is plain http (loopback only)", tgt.base),
        ));
    }

    p.step = "portal HTTP";
    let url = format!("{}{PROBE_PATH}", tgt.base);
    let outcome = round_trip(&url, config.ca_file.as_deref(), &choice, t.http).await;
    p.checks.push(http_check(&url, &outcome, t.http));
    if let HttpOutcome::Answered { date, .. } = outcome {
        p.checks
            .push(skew_check(date.map(|d| skew_secs(crate::clock::now(), d))));
    }
}

/// A check whose name is set by the caller.
struct Unnamed {
    status: super::Status,
    found: String,
    hint: String,
}

impl Unnamed {
    fn named(self, name: &str) -> Check {
        Check::new(name, self.status, self.found, Some(self.hint))
    }
}

async fn dns(host: &str, port: u16, t: &Timeouts) -> Result<Vec<SocketAddr>, Unnamed> {
    let fail = |found: String, hint: &str| Unnamed {
        status: super::Status::Fail,
        found,
        hint: hint.to_string(),
    };
    match tokio::time::timeout(t.dns, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(fail(
            format!("{host}: no answer within {} s", t.dns.as_secs_f64()),
            "the resolver does not answer: check /etc/resolv.conf and that DNS (port 53) is allowed out",
        )),
        Ok(Err(e)) => Err(fail(
            format!("{host}: {e}"),
            "the name does not resolve: check /etc/resolv.conf, or the spelling of portal_url / proxy",
        )),
        Ok(Ok(it)) => {
            let mut v: Vec<SocketAddr> = Vec::new();
            for a in it {
                if !v.contains(&a) {
                    v.push(a);
                }
            }
            if v.is_empty() {
                Err(fail(format!("{host}: no address"), "check the DNS records"))
            } else {
                Ok(v)
            }
        }
    }
}

/// Tries each address in turn, all within `limit`.
async fn connect(
    addrs: &[SocketAddr],
    limit: Duration,
) -> Result<(TcpStream, SocketAddr, Duration), Unnamed> {
    let start = Instant::now();
    let mut errors = Vec::new();
    let attempt = async {
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Some((s, *a)),
                Err(e) => errors.push(format!("{a}: {e}")),
            }
        }
        None
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Some((s, a))) => Ok((s, a, start.elapsed())),
        Ok(None) => Err(Unnamed {
            status: super::Status::Fail,
            found: errors.join("; "),
            hint: "nothing accepts the connection: a firewall rejecting it, or a wrong port".into(),
        }),
        Err(_) => Err(Unnamed {
            status: super::Status::Fail,
            found: format!(
                "no connection to {} within {} s",
                addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                limit.as_secs_f64()
            ),
            hint: "packets are dropped on the way: a firewall? allow outgoing TCP to the portal (or the proxy)".into(),
        }),
    }
}

/// `CONNECT host:port` through an HTTP proxy; the proxy's answer head is read.
async fn tunnel(s: &mut TcpStream, proxy: &url::Url, tgt: &Target) -> Result<(), Check> {
    let authority = if tgt.host.contains(':') {
        format!("[{}]:{}", tgt.host, tgt.port)
    } else {
        format!("{}:{}", tgt.host, tgt.port)
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if !proxy.username().is_empty() {
        let user = percent_decode(proxy.username());
        let pass = percent_decode(proxy.password().unwrap_or(""));
        req.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(format!("{user}:{pass}").as_bytes())
        ));
    }
    req.push_str("\r\n");
    let io_fail = |e: std::io::Error| {
        Check::fail(
            "proxy tunnel",
            format!("CONNECT {authority}: {e}"),
            "the proxy closed the connection",
        )
    };
    s.write_all(req.as_bytes()).await.map_err(io_fail)?;
    // Read the answer head byte by byte so no TLS byte is taken from the stream.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(Check::fail(
                "proxy tunnel",
                "the proxy's answer head is too long",
                "is this an HTTP proxy?",
            ));
        }
        let mut b = [0u8; 1];
        match s.read(&mut b).await.map_err(io_fail)? {
            0 => {
                return Err(Check::fail(
                    "proxy tunnel",
                    format!("the proxy closed the connection after CONNECT {authority}"),
                    "the proxy refuses tunnels to the portal; ask its admin to allow it",
                ));
            }
            _ => head.push(b[0]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or("").to_string();
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    match code {
        "200" => Ok(()),
        "407" => Err(Check::fail(
            "proxy tunnel",
            format!("the proxy wants authentication: {status_line}"),
            "put the user and password in the proxy URL (http://user:password@host:port)",
        )),
        _ => Err(Check::fail(
            "proxy tunnel",
            format!("the proxy refused CONNECT {authority}: {status_line}"),
            "ask the proxy's admin to allow HTTPS to the portal",
        )),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(char::from(T[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Delegates to the platform verifier (as the daemon's HTTPS client does) and
/// keeps the chain the server sent and what the delegate thought of it.
#[derive(Debug)]
struct Recorder {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<Mutex<Option<Seen>>>,
}

/// The chain the server sent, and the delegate's complaint about it.
type Seen = (Vec<CertificateDer<'static>>, Option<rustls::Error>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        if let Ok(mut g) = self.seen.lock() {
            *g = Some((chain, r.as_ref().err().cloned()));
        }
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn cert_problem(e: &rustls::Error) -> CertProblem {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => CertProblem::UnknownIssuer,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => CertProblem::Time,
            other if format!("{other:?}").starts_with("NotValidForName") => CertProblem::Name,
            _ => CertProblem::Other,
        },
        _ => CertProblem::Other,
    }
}

/// The CA certificates of `ca_file`.
fn ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    certs.map_err(|e| format!("ca_file {}: {e:?}", path.display()))
}

async fn handshake(
    tcp: TcpStream,
    host: &str,
    ca_file: Option<&Path>,
    limit: Duration,
) -> TlsOutcome {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let extra = match ca_file.map(ca_certs).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return TlsOutcome::Failed(e),
    };
    let inner =
        match rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone()) {
            Ok(v) => v,
            Err(e) => return TlsOutcome::Failed(format!("no trust anchors: {e}")),
        };
    let seen = Arc::new(Mutex::new(None));
    let recorder = Recorder {
        inner: Arc::new(inner),
        seen: seen.clone(),
    };
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(e) => return TlsOutcome::Failed(e.to_string()),
    };
    let mut config = config
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(recorder))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match ServerName::try_from(host.to_string()) {
        Ok(n) => n,
        Err(e) => return TlsOutcome::Failed(format!("{host} is not a valid server name: {e}")),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = tokio::time::timeout(limit, connector.connect(name, tcp)).await;
    let recorded = seen.lock().ok().and_then(|mut g| g.take());
    let leaf = recorded
        .as_ref()
        .and_then(|(chain, _)| Leaf::from_chain(chain));
    match result {
        Err(_) => TlsOutcome::TimedOut,
        Ok(Ok(conn)) => {
            let version = conn
                .get_ref()
                .1
                .protocol_version()
                .map(|v| format!("{v:?}").replace('_', "."))
                .unwrap_or_else(|| "TLS".into());
            TlsOutcome::Ok { version, leaf }
        }
        Ok(Err(e)) => match recorded.and_then(|(_, err)| err) {
            Some(err) => TlsOutcome::Rejected {
                error: err.to_string(),
                kind: cert_problem(&err),
                leaf,
            },
            None => TlsOutcome::Failed(e.to_string()),
        },
    }
}

async fn round_trip(
    url: &str,
    ca_file: Option<&Path>,
    proxy: &ProxyChoice,
    limit: Duration,
) -> HttpOutcome {
    let mut b = reqwest::Client::builder()
        .user_agent(crate::portal::user_agent())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(limit)
        .timeout(limit);
    if let Some(path) = ca_file {
        let certs = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string()));
        match certs {
            Ok(c) => b = b.tls_certs_merge(c),
            Err(e) => return HttpOutcome::Failed(format!("ca_file {}: {e}", path.display())),
        }
    }
    b = match proxy {
        ProxyChoice::Via { url, .. } => match reqwest::Proxy::all(url) {
            Ok(p) => b.proxy(p),
            Err(e) => return HttpOutcome::Failed(format!("proxy: {e}")),
        },
        _ => b.no_proxy(),
    };
    let client = match b.build() {
        Ok(c) => c,
        Err(e) => return HttpOutcome::Failed(crate::portal::error_chain(&e)),
    };
    let start = Instant::now();
    let send = client
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body("{}")
        .send();
    match tokio::time::timeout(limit, send).await {
        Err(_) => HttpOutcome::TimedOut,
        Ok(Err(e)) if e.is_timeout() => HttpOutcome::TimedOut,
        Ok(Err(e)) => {
            let (kind, msg) = crate::portal::transport_error(&e);
            HttpOutcome::Failed(format!("{}: {msg}", kind.as_str()))
        }
        Ok(Ok(resp)) => {
            let date = resp
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Timestamp::parse_http_date);
            HttpOutcome::Answered {
                status: resp.status().as_u16(),
                elapsed: start.elapsed(),
                date,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn env(https: Option<&str>, all: Option<&str>, no: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https_proxy: https.map(String::from),
            all_proxy: all.map(String::from),
            no_proxy: no.map(String::from),
        }
    }

    #[test]
    fn proxy_masking() {
        assert_eq!(
            mask_proxy("http://user:secret@proxy.example:3128"),
            "http://user:****@proxy.example:3128"
        );
        assert_eq!(mask_proxy("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(mask_proxy("http://proxy:3128/"), "http://proxy:3128/");
        assert!(!mask_proxy("not a url secret").contains("secret"));
    }

    #[test]
    fn proxy_choice() {
        let e = env(Some("http://u:pw@p:3128"), Some("socks5://q:1080"), None);
        assert_eq!(
            choose_proxy(Some("http://cfg:8080"), &e, "wispanel.com"),
            ProxyChoice::Via {
                url: "http://cfg:8080".into(),
                source: "the configuration's proxy"
            }
        );
        assert_eq!(
            choose_proxy(None, &e, "wispanel.com"),
            ProxyChoice::Via {
                url: "http://u:pw@p:3128".into(),
                source: "HTTPS_PROXY"
            }
        );
        let e = env(None, Some("socks5://q:1080"), None);
        assert!(matches!(
            choose_proxy(None, &e, "wispanel.com"),
            ProxyChoice::Via {
                source: "ALL_PROXY",
                ..
            }
        ));
        let e = env(
            Some("http://u:pw@p:3128"),
            None,
            Some("localhost,.wispanel.com"),
        );
        let c = choose_proxy(None, &e, "portal.wispanel.com");
        assert!(matches!(c, ProxyChoice::Bypassed { .. }), "{c:?}");
        let line = proxy_check(&c).line();
        assert!(!line.contains("pw"), "{line}");
        assert!(line.contains("u:****@p"), "{line}");
        assert_eq!(
            choose_proxy(None, &env(None, None, None), "x"),
            ProxyChoice::Direct
        );
        let via = proxy_check(&choose_proxy(
            None,
            &env(Some("http://u:pw@p:3128"), None, None),
            "x",
        ));
        assert!(
            via.found
                .contains("http://u:****@p:3128 (from HTTPS_PROXY)"),
            "{via:?}"
        );
    }

    #[test]
    fn no_proxy_rules() {
        assert!(no_proxy_matches("*", "wispanel.com"));
        assert!(no_proxy_matches("wispanel.com", "wispanel.com"));
        assert!(no_proxy_matches("wispanel.com", "api.wispanel.com"));
        assert!(no_proxy_matches(".wispanel.com", "api.wispanel.com"));
        assert!(no_proxy_matches("*.wispanel.com", "api.wispanel.com"));
        assert!(no_proxy_matches("a, WisPanel.com:443", "wispanel.com"));
        assert!(!no_proxy_matches("panel.com", "wispanel.com"));
        assert!(no_proxy_matches("127.0.0.0/8", "127.1.2.3"));
        assert!(!no_proxy_matches("10.0.0.0/8", "127.1.2.3"));
        assert!(no_proxy_matches("::1", "[::1]"));
        assert!(no_proxy_matches("fd00::/8", "fd12::1"));
        assert!(!no_proxy_matches("", "x"));
    }

    #[test]
    fn skew_thresholds() {
        let now = Timestamp::from_unix_secs(1_800_000_000);
        let at = |s: i64| Timestamp::from_unix_secs(1_800_000_000 - s);
        assert_eq!(skew_secs(now, at(120)), 120);
        assert_eq!(skew_check(Some(0)).status, Status::Ok);
        assert_eq!(skew_check(Some(60)).status, Status::Ok);
        assert_eq!(skew_check(Some(61)).status, Status::Warn);
        assert_eq!(skew_check(Some(-120)).status, Status::Warn);
        assert!(skew_check(Some(-120)).found.contains("120 s behind"));
        assert_eq!(skew_check(Some(300)).status, Status::Warn);
        assert_eq!(skew_check(Some(301)).status, Status::Fail);
        assert_eq!(skew_check(None).status, Status::Warn);
    }

    #[test]
    fn tls_lines() {
        let now = Timestamp::from_unix_secs(1_800_000_000);
        let leaf = Leaf {
            subject: "CN=localhost".into(),
            issuer: "CN=Corp Inspect CA".into(),
            not_after: Some(Timestamp::from_unix_secs(1_900_000_000)),
            chain_len: 2,
        };
        let d = Duration::from_secs(5);
        let ok = tls_check(
            "h",
            &TlsOutcome::Ok {
                version: "TLSv1.3".into(),
                leaf: Some(leaf.clone()),
            },
            None,
            d,
            now,
        );
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.found.contains("issued by CN=Corp Inspect CA"), "{ok:?}");
        let soon = Leaf {
            not_after: Some(Timestamp::from_unix_secs(1_800_000_000 + 86_400)),
            ..leaf.clone()
        };
        let c = tls_check(
            "h",
            &TlsOutcome::Ok {
                version: "TLSv1.3".into(),
                leaf: Some(soon),
            },
            None,
            d,
            now,
        );
        assert_eq!(c.status, Status::Warn);
        let rejected = TlsOutcome::Rejected {
            error: "invalid peer certificate: UnknownIssuer".into(),
            kind: CertProblem::UnknownIssuer,
            leaf: Some(leaf),
        };
        let c = tls_check("h", &rejected, None, d, now);
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.contains("system roots"), "{c:?}");
        assert!(c.found.contains("Corp Inspect CA"), "{c:?}");
        assert!(
            c.hint.as_deref().unwrap_or("").contains("intercepting"),
            "{c:?}"
        );
        let c = tls_check("h", &TlsOutcome::TimedOut, None, d, now);
        assert!(c.found.contains("within 5 s"), "{c:?}");
    }

    #[test]
    fn http_lines() {
        let d = Duration::from_secs(5);
        let a = |status| HttpOutcome::Answered {
            status,
            elapsed: Duration::from_millis(12),
            date: None,
        };
        assert_eq!(http_check("u", &a(422), d).status, Status::Ok);
        assert_eq!(http_check("u", &a(200), d).status, Status::Ok);
        assert_eq!(http_check("u", &a(302), d).status, Status::Warn);
        assert_eq!(http_check("u", &a(503), d).status, Status::Warn);
        assert_eq!(
            http_check("u", &HttpOutcome::TimedOut, d).status,
            Status::Fail
        );
        assert!(
            http_check("u", &a(422), d)
                .found
                .contains("HTTP 422 in 12 ms")
        );
    }

    #[test]
    fn base64_and_percent() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(percent_decode("p%40ss"), "p@ss");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
