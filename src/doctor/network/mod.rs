//! The way to the portal: the proxy in use, DNS, TCP, the TLS handshake and
//! its certificate chain (recorded by our own verifier, so that a certificate
//! from an intercepting proxy can be named), an HTTP round trip, and the
//! clock against the portal's `Date`.
//!
//! Each step has its own timeout ([`super::Timeouts`]) and all of them
//! together one more; a step cut off by either is a `fail` that names it.
//! One file per step: [`proxy`] (the decision shown, and the `CONNECT`
//! tunnel), [`dns`], [`tcp`], [`tls`], [`http`], [`clock`]; this file
//! runs them in order.

mod clock;
mod dns;
pub use dns::ResolverTries;
mod http;
mod proxy;
mod tcp;
mod tls;

use crate::net::proxy::{ProxyChoice, mask_proxy};
pub use clock::{skew_check, skew_secs};
pub use http::{HttpOutcome, http_check};
pub use proxy::{daemon_proxy_check, proxy_check};
pub use tls::{CertProblem, Leaf, TlsOutcome, tls_check};

use super::{Check, Options, Timeouts};
use crate::config::Config;
use std::net::SocketAddr;
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
    let choice =
        crate::net::proxy::decide(config.proxy.as_deref(), &opts.proxy_env, &config.portal_url);
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
    let addrs = match dns::dns(&dns_host, dns_port, t, &opts.resolver).await {
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
    let mut stream = match tcp::connect(&addrs, t.tcp).await {
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
            match tokio::time::timeout(t.proxy_connect, proxy::tunnel(&mut stream, u, &tgt)).await {
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
        let outcome = tls::handshake(stream, &tgt.host, config.ca_file.as_deref(), t.tls).await;
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
    let outcome = http::round_trip(&url, config.ca_file.as_deref(), &choice, t.http).await;
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
