//! The TCP connection to the portal (or the proxy), address by address.

use super::*;

/// Tries each address in turn, all within `limit`.
pub(super) async fn connect(
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
            status: crate::doctor::Status::Fail,
            found: errors.join("; "),
            hint: "nothing accepts the connection: a firewall rejecting it, or a wrong port".into(),
        }),
        Err(_) => Err(Unnamed {
            status: crate::doctor::Status::Fail,
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
