//! Resolving the portal's (or the proxy's) name, within its own timeout,
//! and telling the causes apart: a name that does not exist, a resolver
//! that refuses or fails the query, a resolver that does not answer.
//!
//! The lookup is glibc's `getaddrinfo` (through tokio), as in the daemon.
//! Its errors reach us only as text; a Rust program never calls
//! `setlocale`, so that text is glibc's untranslated "C" message whatever
//! the administrator's `LANG`, and it can be matched.

use super::*;

/// glibc's `EAI_AGAIN`: the resolver gave no usable answer (it refused the
/// query, failed it with SERVFAIL, or every try timed out).
const EAI_AGAIN_TEXT: &str = "Temporary failure in name resolution";
/// glibc's `EAI_NONAME` and `EAI_NODATA`: the name, or its address, does
/// not exist.
const NO_NAME_TEXTS: [&str; 2] = [
    "Name or service not known",
    "No address associated with hostname",
];

/// How resolv.conf makes glibc try: `options timeout:` (default 5 s, at
/// most 30), `attempts:` (default 2, at most 5) and the number of
/// `nameserver` lines (at most 3 are used; none means the local one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolverTries {
    pub timeout: Duration,
    pub attempts: u32,
    pub servers: u32,
}

impl Default for ResolverTries {
    fn default() -> Self {
        ResolverTries {
            timeout: Duration::from_secs(5),
            attempts: 2,
            servers: 1,
        }
    }
}

impl ResolverTries {
    /// From the text of `/etc/resolv.conf`; what it does not say keeps
    /// glibc's default, and what glibc would not accept is ignored as glibc
    /// ignores it.
    pub fn parse(text: &str) -> ResolverTries {
        let mut r = ResolverTries::default();
        let mut servers = 0u32;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") if words.next().is_some() => servers += 1,
                Some("options") => {
                    for w in words {
                        let number = |prefix: &str| {
                            w.strip_prefix(prefix).and_then(|v| v.parse::<u32>().ok())
                        };
                        if let Some(n) = number("timeout:") {
                            r.timeout = Duration::from_secs(u64::from(n.clamp(1, 30)));
                        } else if let Some(n) = number("attempts:") {
                            r.attempts = n.clamp(1, 5);
                        }
                    }
                }
                _ => {}
            }
        }
        r.servers = servers.clamp(1, 3);
        r
    }

    /// The longest glibc tries before it gives up on a silent resolver.
    pub fn give_up_after(&self) -> Duration {
        self.timeout * self.attempts * self.servers
    }
}

pub(super) async fn dns(
    host: &str,
    port: u16,
    t: &Timeouts,
    resolver: &ResolverTries,
) -> Result<Vec<SocketAddr>, Unnamed> {
    let fail = |found: String, hint: &str| Unnamed {
        status: crate::doctor::Status::Fail,
        found,
        hint: hint.to_string(),
    };
    let silent = || "the resolver does not answer: check the nameserver lines of /etc/resolv.conf and that DNS (port 53) is allowed out";
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(t.dns, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(fail(
            format!("{host}: no answer within {} s", t.dns.as_secs_f64()),
            silent(),
        )),
        Ok(Err(e)) => {
            let text = e.to_string();
            let hint = if NO_NAME_TEXTS.iter().any(|n| text.contains(n)) {
                "the name does not resolve: check the spelling of portal_url / proxy, or the DNS records"
            } else if text.contains(EAI_AGAIN_TEXT) {
                // An answer that came before the first try's timeout was a
                // refusal or a failure; glibc gives the same error after its
                // last try timed out.
                if started.elapsed() < resolver.timeout {
                    "the resolver refused or failed the query (REFUSED or SERVFAIL): check its access rules and forwarders, or use another nameserver in /etc/resolv.conf"
                } else {
                    silent()
                }
            } else {
                "the lookup failed: check /etc/resolv.conf and /etc/nsswitch.conf"
            };
            Err(fail(format!("{host}: {text}"), hint))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_tries() {
        let d = ResolverTries::default();
        assert_eq!(ResolverTries::parse(""), d);
        assert_eq!(d.give_up_after(), Duration::from_secs(10));
        let r = ResolverTries::parse(
            "# comment\nnameserver 10.0.0.1\nnameserver 10.0.0.2\noptions edns0 timeout:2 attempts:3\nsearch example.com\n",
        );
        assert_eq!(
            r,
            ResolverTries {
                timeout: Duration::from_secs(2),
                attempts: 3,
                servers: 2
            }
        );
        assert_eq!(r.give_up_after(), Duration::from_secs(12));
        // glibc's bounds, and words it does not know.
        let r = ResolverTries::parse(
            "nameserver a\nnameserver b\nnameserver c\nnameserver d\noptions timeout:99 attempts:0 timeout:x rotate\nnameserver\n",
        );
        assert_eq!(
            r,
            ResolverTries {
                timeout: Duration::from_secs(30),
                attempts: 1,
                servers: 3
            }
        );
    }
}
