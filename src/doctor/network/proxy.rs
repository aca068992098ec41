//! The proxy line (the decision itself is [`crate::net::proxy`]'s, the same
//! one the portal client makes) and the `CONNECT` tunnel through an HTTP proxy.

use super::*;

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

/// `CONNECT host:port` through an HTTP proxy; the proxy's answer head is read.
pub(super) async fn tunnel(s: &mut TcpStream, proxy: &url::Url, tgt: &Target) -> Result<(), Check> {
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
        "407" => Err(auth_refused(&status_line, !proxy.username().is_empty())),
        _ => Err(Check::fail(
            "proxy tunnel",
            format!("the proxy refused CONNECT {authority}: {status_line}"),
            "ask the proxy's admin to allow HTTPS to the portal",
        )),
    }
}

/// The proxy answered `CONNECT` with 407: without credentials it requires
/// some; with credentials, it rejected the ones given.
fn auth_refused(status_line: &str, had_credentials: bool) -> Check {
    if had_credentials {
        Check::fail(
            "proxy tunnel",
            format!("the proxy rejected the credentials given: {status_line}"),
            "check the user and password in the proxy URL (percent-encode `@`, `:` and `%` in them) with the proxy's admin",
        )
    } else {
        Check::fail(
            "proxy tunnel",
            format!("the proxy requires authentication: {status_line}"),
            "put the user and password in the proxy URL (http://user:password@host:port)",
        )
    }
}

/// A URL's user or password as the proxy expects it (`p%40ss` -> `p@ss`).
pub(super) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

pub(super) fn base64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// The daemon's proxy (its status's `portal.proxy`, already masked; `None`:
/// direct) against the decision made from this shell's environment: a
/// `warn` naming both when they differ, else nothing. A proxy set in a login
/// shell's profile never reaches a systemd service, so the portal checks
/// above may have gone another way than the daemon's requests.
pub fn daemon_proxy_check(daemon: Option<&str>, own: &ProxyChoice) -> Option<Check> {
    let mine = own.shown();
    if daemon == mine.as_deref() {
        return None;
    }
    let name = "daemon proxy";
    let check = match (daemon, own) {
        (None, ProxyChoice::Via { url, source }) if !source.starts_with("the configuration") => {
            Check::warn(
                name,
                format!(
                    "the daemon uses no proxy, but this shell has {source}={}",
                    mask_proxy(url)
                ),
                "a proxy set in a login shell's profile never reaches a systemd service; if the portal is only reachable through it, set `proxy` in license.toml",
            )
        }
        (None, _) => Check::warn(
            name,
            format!(
                "the daemon uses no proxy, but these checks used {}",
                own.describe()
            ),
            "the daemon runs with an older configuration: reload it (`systemctl reload wispanel-licensed`)",
        ),
        (Some(theirs), _) => Check::warn(
            name,
            format!(
                "the daemon uses the proxy {theirs}, but these checks used {}",
                own.describe()
            ),
            "the daemon's environment (its unit's Environment=) or configuration differs from this shell's; the portal checks above went the way this shell would",
        ),
    };
    Some(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;
    use crate::net::proxy::{ProxyEnv, choose_proxy};

    fn env(https: Option<&str>, all: Option<&str>, no: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https_proxy: https.map(String::from),
            all_proxy: all.map(String::from),
            no_proxy: no.map(String::from),
        }
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

    /// A proxy that answers every CONNECT with 407, with or without
    /// credentials: doctor tells "requires" from "rejected the ones given".
    #[tokio::test]
    async fn a_407_names_missing_or_rejected_credentials() {
        for (proxy_url, found, hint) in [
            (
                "http://{addr}",
                "the proxy requires authentication",
                "put the user and password",
            ),
            (
                "http://u:wrong@{addr}",
                "the proxy rejected the credentials given",
                "check the user and password",
            ),
        ] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).await.unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                s.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .unwrap();
                String::from_utf8_lossy(&head).into_owned()
            });
            let url = url::Url::parse(&proxy_url.replace("{addr}", &addr.to_string())).unwrap();
            let mut s = TcpStream::connect(addr).await.unwrap();
            let tgt = Target {
                base: "https://portal.example:443".into(),
                host: "portal.example".into(),
                port: 443,
                tls: true,
            };
            let c = tunnel(&mut s, &url, &tgt).await.unwrap_err();
            let head = server.await.unwrap();
            assert_eq!(
                head.contains("Proxy-Authorization: Basic"),
                url.username() == "u"
            );
            assert_eq!(c.status, Status::Fail);
            assert!(c.found.starts_with(found), "{c:?}");
            assert!(c.found.contains("407"), "{c:?}");
            assert!(c.hint.as_deref().unwrap_or("").starts_with(hint), "{c:?}");
            assert!(!c.line().contains("wrong"), "{}", c.line());
        }
    }

    #[test]
    fn base64_and_percent() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(percent_decode("p%40ss"), "p@ss");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn daemon_proxy_against_this_shell() {
        let shell = choose_proxy(None, &env(Some("http://u:pw@proxy:3128"), None, None), "w");
        let c = daemon_proxy_check(None, &shell).unwrap();
        assert_eq!(c.status, Status::Warn);
        assert_eq!(
            c.found,
            "the daemon uses no proxy, but this shell has HTTPS_PROXY=http://u:****@proxy:3128"
        );
        assert!(
            c.hint
                .as_deref()
                .unwrap()
                .contains("set `proxy` in license.toml")
        );
        assert!(!c.line().contains("pw"), "{}", c.line());

        // The same on both sides: nothing to say.
        assert_eq!(
            daemon_proxy_check(Some("http://u:****@proxy:3128"), &shell),
            None
        );
        assert_eq!(daemon_proxy_check(None, &ProxyChoice::Direct), None);
        let bypassed = choose_proxy(None, &env(Some("http://p:1"), None, Some("*")), "w");
        assert_eq!(daemon_proxy_check(None, &bypassed), None);

        // The daemon has a proxy this shell does not.
        let c = daemon_proxy_check(Some("http://proxy:3128"), &ProxyChoice::Direct).unwrap();
        assert_eq!(
            c.found,
            "the daemon uses the proxy http://proxy:3128, but these checks used no proxy"
        );
    }
}
