//! Resolving the portal's (or the proxy's) name, within its own timeout.

use super::*;

pub(super) async fn dns(host: &str, port: u16, t: &Timeouts) -> Result<Vec<SocketAddr>, Unnamed> {
    let fail = |found: String, hint: &str| Unnamed {
        status: crate::doctor::Status::Fail,
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
