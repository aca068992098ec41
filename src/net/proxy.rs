//! Which proxy the portal's requests go through: decided once, here, for
//! the portal client (the daemon, `update download`) and for `doctor`, so
//! that what `doctor` reports is what the daemon does.

use std::net::IpAddr;

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
    /// The variables of this process's environment.
    pub fn from_process() -> ProxyEnv {
        ProxyEnv::from_lookup(&|name| std::env::var(name).ok())
    }

    /// The variables as `lookup` gives them (upper case first, then lower
    /// case; a blank value counts as unset).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> ProxyEnv {
        let var = |a: &str, b: &str| {
            [a, b]
                .iter()
                .filter_map(|n| lookup(n))
                .find(|v| !v.trim().is_empty())
        };
        ProxyEnv {
            https_proxy: var("HTTPS_PROXY", "https_proxy"),
            all_proxy: var("ALL_PROXY", "all_proxy"),
            no_proxy: var("NO_PROXY", "no_proxy"),
        }
    }
}

/// The proxy the portal's requests go through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyChoice {
    /// No proxy is configured or set in the environment.
    Direct,
    /// An environment proxy that `NO_PROXY` turns off for this host.
    Bypassed {
        masked: String,
        source: &'static str,
    },
    /// `url` as configured or set (with its credentials: only [`mask_proxy`]
    /// may show it); `source` names where it came from.
    Via { url: String, source: &'static str },
}

impl ProxyChoice {
    /// The proxy URL the requests go through, if any.
    pub fn url(&self) -> Option<&str> {
        match self {
            ProxyChoice::Via { url, .. } => Some(url),
            _ => None,
        }
    }

    /// The proxy in use as the status shows it (`portal.proxy`): its URL with
    /// the password masked, or `None` for a direct connection.
    pub fn shown(&self) -> Option<String> {
        self.url().map(mask_proxy)
    }

    /// For sentences: `the proxy http://p:3128 (from HTTPS_PROXY)` or `no proxy`.
    pub fn describe(&self) -> String {
        match self {
            ProxyChoice::Via { url, source } => {
                format!("the proxy {} (from {source})", mask_proxy(url))
            }
            ProxyChoice::Bypassed { .. } | ProxyChoice::Direct => "no proxy".into(),
        }
    }
}

/// The one decision of which proxy the portal's requests go through, used
/// by the portal client (the daemon and `update download`) and by `doctor`:
/// the configuration's `proxy`, else `HTTPS_PROXY` (or `https_proxy`), else
/// `ALL_PROXY` (or `all_proxy`), unless `NO_PROXY` (or `no_proxy`) names the
/// portal's host. A portal URL without a host never goes through a proxy.
pub fn decide(config_proxy: Option<&str>, env: &ProxyEnv, portal_url: &str) -> ProxyChoice {
    let host = match url::Url::parse(portal_url).ok().and_then(|u| {
        u.host().map(|h| match h {
            url::Host::Domain(d) => d.to_string(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        })
    }) {
        Some(h) => h,
        None if config_proxy.is_none() => return ProxyChoice::Direct,
        None => String::new(),
    };
    choose_proxy(config_proxy, env, &host)
}

/// [`decide`] for a host name or address: config `proxy`, else `HTTPS_PROXY`/`ALL_PROXY` unless `NO_PROXY` names `host`.
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

/// `http://user:****@host:port`: the password never shows (the user name
/// does: it names the account, it does not open it).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(https: Option<&str>, all: Option<&str>, no: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https_proxy: https.map(String::from),
            all_proxy: all.map(String::from),
            no_proxy: no.map(String::from),
        }
    }

    #[test]
    fn the_decision_table() {
        let cfg = Some("http://cfg:8080");
        let https = Some("http://u:pw@p:3128");
        let all = Some("socks5://q:1080");
        let portal = "https://portal.wispanel.com";
        let via = |url: &str, source: &'static str| ProxyChoice::Via {
            url: url.into(),
            source,
        };
        let cases: &[(Option<&str>, ProxyEnv, ProxyChoice)] = &[
            (None, env(None, None, None), ProxyChoice::Direct),
            (
                cfg,
                env(None, None, None),
                via("http://cfg:8080", "the configuration's proxy"),
            ),
            // The configuration wins over the environment and over NO_PROXY.
            (
                cfg,
                env(https, all, Some("*")),
                via("http://cfg:8080", "the configuration's proxy"),
            ),
            (
                None,
                env(https, all, None),
                via("http://u:pw@p:3128", "HTTPS_PROXY"),
            ),
            (
                None,
                env(None, all, None),
                via("socks5://q:1080", "ALL_PROXY"),
            ),
            (
                None,
                env(https, None, Some("*")),
                ProxyChoice::Bypassed {
                    masked: "http://u:****@p:3128".into(),
                    source: "HTTPS_PROXY",
                },
            ),
            (
                None,
                env(None, all, Some("wispanel.com")),
                ProxyChoice::Bypassed {
                    masked: "socks5://q:1080".into(),
                    source: "ALL_PROXY",
                },
            ),
            (
                None,
                env(https, None, Some("other.example")),
                via("http://u:pw@p:3128", "HTTPS_PROXY"),
            ),
            (None, env(None, None, Some("*")), ProxyChoice::Direct),
        ];
        for (config, e, want) in cases {
            assert_eq!(&decide(*config, e, portal), want, "{config:?} {e:?}");
        }
        // Addresses and ranges in NO_PROXY.
        let e = env(https, None, Some("127.0.0.0/8"));
        assert!(matches!(
            decide(None, &e, "http://127.0.0.1:8080"),
            ProxyChoice::Bypassed { .. }
        ));
        assert!(matches!(
            decide(None, &e, "https://10.1.1.1"),
            ProxyChoice::Via { .. }
        ));
    }

    #[test]
    fn variables_upper_case_first_blank_is_unset() {
        let vars = [
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:1"),
            ("ALL_PROXY", "  "),
            ("all_proxy", "socks5://lower:2"),
            ("no_proxy", "x.example"),
        ];
        let e = ProxyEnv::from_lookup(&|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        });
        assert_eq!(e.https_proxy.as_deref(), Some("http://upper:1"));
        assert_eq!(e.all_proxy.as_deref(), Some("socks5://lower:2"));
        assert_eq!(e.no_proxy.as_deref(), Some("x.example"));
    }

    #[test]
    fn shown_in_the_status_masked() {
        let c = decide(
            None,
            &env(Some("http://u:pw@p:3128"), None, None),
            "https://w.example",
        );
        assert_eq!(c.shown().as_deref(), Some("http://u:****@p:3128"));
        assert_eq!(ProxyChoice::Direct.shown(), None);
        assert_eq!(
            c.describe(),
            "the proxy http://u:****@p:3128 (from HTTPS_PROXY)"
        );
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
}
