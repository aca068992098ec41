//! Checks of single values: absolute paths, plain words, durations, the
//! socket mode, the portal URL (https, or http to a loopback host), the
//! proxy URL.

use super::ctx::{Ctx, Sp};
use super::*;
use crate::net::scheme::{InsecureUrl, check_scheme};

pub(super) fn absolute(ctx: &Ctx<'_>, key: &str, v: &Sp<String>) -> Result<PathBuf, ConfigError> {
    let s = v.get_ref();
    if s.is_empty() {
        return Err(ctx.val(key, v, ConfigErrorKind::Empty));
    }
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err(ctx.val(key, v, ConfigErrorKind::RelativePath(s.clone())));
    }
    Ok(p)
}

/// An absolute path that names a file (not `/`, not ending in `/`).
pub(super) fn file_path(ctx: &Ctx<'_>, key: &str, v: &Sp<String>) -> Result<PathBuf, ConfigError> {
    let p = absolute(ctx, key, v)?;
    if v.get_ref().ends_with('/') || p.file_name().is_none() {
        return Err(ctx.val(key, v, ConfigErrorKind::NotAFileName(v.get_ref().clone())));
    }
    Ok(p)
}

pub(super) fn word(ctx: &Ctx<'_>, key: &str, v: &Sp<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if s.is_empty() {
        return Err(ctx.val(key, v, ConfigErrorKind::Empty));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.val(key, v, ConfigErrorKind::BadText(s.clone())));
    }
    Ok(s.clone())
}

pub(super) fn duration(
    ctx: &Ctx<'_>,
    key: &str,
    v: Option<&Sp<String>>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let d = parse_duration(v.get_ref()).map_err(|reason| {
        ctx.val(
            key,
            v,
            ConfigErrorKind::BadDuration {
                value: v.get_ref().clone(),
                reason,
            },
        )
    })?;
    if d < Duration::from_secs(1) && !zero_ok {
        return Err(ctx.val(key, v, ConfigErrorKind::DurationTooShort));
    }
    Ok(d)
}

pub(super) fn parse_socket_mode(s: &str) -> Result<u32, ConfigErrorKind> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(ConfigErrorKind::SocketModeSyntax(s.to_string()));
    }
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| ConfigErrorKind::SocketModeSyntax(s.to_string()))?;
    if mode > 0o777 {
        return Err(ConfigErrorKind::SocketModeRange(s.to_string()));
    }
    Ok(mode)
}

/// `https://` anywhere, `http://` only to a loopback host; returns the URL
/// without a trailing '/'.
pub(super) fn portal_url(raw: &str) -> Result<String, ConfigErrorKind> {
    let url = url::Url::parse(raw).map_err(|e| ConfigErrorKind::NotUrl {
        value: raw.to_string(),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConfigErrorKind::PortalExtras);
    }
    match check_scheme(&url) {
        Ok(()) => {}
        Err(InsecureUrl::PlainHttp) => {
            return Err(ConfigErrorKind::InsecurePortal(raw.to_string()));
        }
        Err(InsecureUrl::Scheme(other)) => return Err(ConfigErrorKind::PortalScheme(other)),
    }
    if url.host().is_none() {
        return Err(ConfigErrorKind::NotUrl {
            value: raw.to_string(),
            reason: "it has no host".into(),
        });
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

pub(super) fn proxy_url(raw: &str) -> Result<String, ConfigErrorKind> {
    let url = url::Url::parse(raw).map_err(|_| ConfigErrorKind::BadProxy)?;
    if !matches!(url.scheme(), "http" | "https" | "socks5") || url.host().is_none() {
        return Err(ConfigErrorKind::BadProxy);
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::net::proxy::mask_proxy as masked_proxy;

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("0660").unwrap(), 0o660);
        assert_eq!(parse_socket_mode("666").unwrap(), 0o666);
        assert_eq!(parse_socket_mode("0o600").unwrap(), 0o600);
        assert_eq!(parse_socket_mode("0777").unwrap(), 0o777);
        assert!(matches!(
            parse_socket_mode("1777"),
            Err(ConfigErrorKind::SocketModeRange(_))
        ));
        for bad in ["", "0668", "rw-rw----", "0x1ff", "00660", "-660"] {
            assert!(
                matches!(
                    parse_socket_mode(bad),
                    Err(ConfigErrorKind::SocketModeSyntax(_))
                ),
                "{bad}"
            );
        }
        let e = err("product_version = \"1\"\nsocket_mode = \"0668\"\n");
        assert_eq!(
            e.to_string(),
            "/etc/wispanel/license.toml:2: socket_mode: \"0668\" is not an octal mode such as \"0660\""
        );
    }

    #[test]
    fn portal_urls() {
        assert_eq!(
            portal_url("https://wispanel.com/").unwrap(),
            "https://wispanel.com"
        );
        assert_eq!(
            portal_url("https://WisPanel.com").unwrap(),
            "https://wispanel.com"
        );
        assert_eq!(
            portal_url("https://example.com/portal/").unwrap(),
            "https://example.com/portal"
        );
        assert_eq!(
            portal_url("http://localhost:8080").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(
            portal_url("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            portal_url("http://127.8.9.10").unwrap(),
            "http://127.8.9.10"
        );
        assert_eq!(
            portal_url("http://[::1]:8443").unwrap(),
            "http://[::1]:8443"
        );
        for bad in [
            "http://wispanel.com",
            "http://10.0.0.1",
            "http://128.0.0.1",
            "http://[::2]",
            "http://localhost.example.com",
        ] {
            assert!(
                matches!(portal_url(bad), Err(ConfigErrorKind::InsecurePortal(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            portal_url("ftp://x.example"),
            Err(ConfigErrorKind::PortalScheme(_))
        ));
        assert!(matches!(
            portal_url("wispanel.com"),
            Err(ConfigErrorKind::NotUrl { .. })
        ));
        for bad in [
            "https://u:p@x.example",
            "https://x.example/?a=1",
            "https://x.example/#f",
        ] {
            assert!(
                matches!(portal_url(bad), Err(ConfigErrorKind::PortalExtras)),
                "{bad}"
            );
        }
    }

    #[test]
    fn proxies() {
        for good in [
            "http://proxy.example:3128",
            "https://p.example",
            "socks5://127.0.0.1:1080",
        ] {
            assert!(proxy_url(good).is_ok(), "{good}");
        }
        for bad in [
            "proxy.example:3128",
            "ftp://p.example",
            "socks4://p.example",
            "",
        ] {
            assert!(proxy_url(bad).is_err(), "{bad}");
        }
        let e = err("product_version = \"1\"\nproxy = \"ftp://user:hunter2@p.example\"\n");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            masked_proxy("http://u:hunter2@p.example:3128/"),
            "http://u:****@p.example:3128/"
        );
        assert_eq!(
            masked_proxy("http://p.example:3128"),
            "http://p.example:3128"
        );
    }
}
