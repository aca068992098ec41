//! The one rule for where the programs may send a licence key or fetch a
//! release from: `https://` anywhere, plain `http://` only to a loopback host
//! (`localhost`, 127.0.0.0/8, `::1`). Used for `portal_url` and for the
//! release URL a download token names.

use url::Url;

/// Why a URL may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsecureUrl {
    #[error("plain http is refused except to a loopback host")]
    PlainHttp,
    #[error("the scheme {0:?} is not https")]
    Scheme(String),
}

/// `Ok` for `https://`, and for `http://` to a loopback host.
pub fn check_scheme(url: &Url) -> Result<(), InsecureUrl> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(InsecureUrl::PlainHttp),
        other => Err(InsecureUrl::Scheme(other.to_string())),
    }
}

/// Whether the URL's host is this machine: `localhost`, 127.0.0.0/8, `::1`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_to_loopback() {
        let check = |s: &str| check_scheme(&Url::parse(s).unwrap());
        for ok in [
            "https://wispanel.com",
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://127.8.9.10",
            "http://[::1]:8443",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://wispanel.com",
            "http://10.0.0.1",
            "http://localhost.evil.example",
        ] {
            assert_eq!(check(bad), Err(InsecureUrl::PlainHttp), "{bad}");
        }
        assert_eq!(
            check("ftp://x.example"),
            Err(InsecureUrl::Scheme("ftp".into()))
        );
    }
}
