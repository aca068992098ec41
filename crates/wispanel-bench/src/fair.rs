//! Fair use of the socket under a flood: while one uid other than 0 holds
//! its `socket_connections_per_uid` connections and hammers the socket from
//! 64 clients (those with a connection send `GET /v1/status` back to back,
//! the others reconnect as fast as they are refused), root's own
//! `GET /v1/status` latency, beside root's latency on the same daemon idle,
//! in the same run. Goal: flooded p99 within 2x of idle.
//!
//! The flood runs in a child process (this binary, hidden group
//! `fair-flood`) started as uid/gid 65534 (`nobody`), which needs root; as
//! another user the flood is skipped with a message and only the idle figure
//! is printed.

use crate::env::{self, DaemonFiles, Transport};
use crate::socket::{self, Client};
use crate::{header, median, row};
use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use wispanel_portal_sim::scenario::Endpoint;

/// The flooding uid and gid (`nobody`).
const FLOOD_UID: u32 = 65534;
/// Clients of the flooding uid.
pub const FLOOD_CLIENTS: usize = 64;

/// The flood itself (the child process): `FLOOD_CLIENTS` clients for at most
/// `limit`, then it stops by itself.
pub fn run_flood(socket_path: &Path, limit: Duration) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let deadline = Instant::now() + limit;
        let tasks: Vec<_> = (0..FLOOD_CLIENTS)
            .map(|_| {
                let path = socket_path.to_path_buf();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let Ok(mut c) = Client::connect(&path).await else {
                            tokio::task::yield_now().await;
                            continue;
                        };
                        // Held until refused or closed: back-to-back requests.
                        while Instant::now() < deadline {
                            match c.get_status().await {
                                Ok((200, _)) => {}
                                _ => break,
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(())
}

/// One sample of the figures: wispanel-licensed's socket series.
async fn socket_series(path: &Path) -> Result<(u64, u64)> {
    let mut s = tokio::net::UnixStream::connect(path).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut text).await?;
    let value = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    Ok((
        value("wispanel_license_socket_connections "),
        value("wispanel_license_socket_refused_total{"),
    ))
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

pub async fn run_fair(args: &crate::Args) -> Result<()> {
    let sim = env::start_sim(Transport::Https).await?;
    let files = DaemonFiles::new(&sim, "")?;
    // The flooding uid must be able to connect: the socket open to all.
    let text = std::fs::read_to_string(&files.config)?;
    std::fs::write(&files.config, format!("socket_mode = \"0666\"\n{text}"))?;
    let d = env::spawn_daemon(&files)?;
    env::wait_for(Duration::from_secs(10), "the first activation", || {
        sim.request_count(Endpoint::CheckUpdate) >= 1
    })
    .await?;
    let secs = Duration::from_secs(args.socket_secs);
    let per_uid = wispanel_license::fair::DEFAULT_PER_UID;
    header(&format!(
        "fair use: root's GET /v1/status (1 keep-alive client, {} s per run) while uid {FLOOD_UID} holds its {per_uid} connections and hammers from {FLOOD_CLIENTS} clients",
        args.socket_secs
    ));
    let root = is_root();
    if !root {
        println!("  SKIP flood: running clients as another uid needs root; idle figures only");
    }
    let exe = std::env::current_exe()?;
    let mut idle = Vec::new();
    let mut flooded = Vec::new();
    let mut refused_seen = Vec::new();
    for _ in 0..args.runs.max(1) {
        idle.push(socket::load(&files.socket, 1, secs).await?);
        if !root {
            continue;
        }
        let (_, refused_before) = socket_series(&files.socket).await?;
        let mut cmd = Command::new(&exe);
        cmd.arg("fair-flood")
            .arg("--socket")
            .arg(&files.socket)
            .arg("--socket-secs")
            .arg((args.socket_secs + 30).to_string())
            .stdin(Stdio::null())
            .uid(FLOOD_UID)
            .gid(FLOOD_UID);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start the flood as uid {FLOOD_UID}"))?;
        // The flood is on once the uid holds its limit and is being refused.
        let on = async {
            loop {
                let (open, refused) = socket_series(&files.socket).await?;
                if open > per_uid as u64 && refused > refused_before {
                    return Ok::<_, anyhow::Error>(());
                }
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("the flood process exited early: {status}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let waited = tokio::time::timeout(Duration::from_secs(30), on).await;
        let measured = match waited {
            Ok(Ok(())) => socket::load(&files.socket, 1, secs).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow::anyhow!(
                "the flood did not reach the uid's limit in 30 s"
            )),
        };
        let (_, refused_after) = socket_series(&files.socket).await.unwrap_or_default();
        let _ = child.kill();
        let _ = child.wait();
        flooded.push(measured?);
        refused_seen.push((refused_after - refused_before) as f64 / args.socket_secs as f64);
    }
    let ms = |v: &[socket::Load], f: fn(&socket::Load) -> Duration| {
        median(v.iter().map(|l| f(l).as_secs_f64() * 1e3).collect())
    };
    let (ip50, ip99) = (ms(&idle, |l| l.p50), ms(&idle, |l| l.p99));
    row(
        "root idle: p50 / p99 latency (ms)",
        format!("{ip50:.3} / {ip99:.3}"),
        String::new(),
        "",
    );
    if root {
        let (fp50, fp99) = (ms(&flooded, |l| l.p50), ms(&flooded, |l| l.p99));
        row(
            "root flooded: p50 / p99 latency (ms)",
            format!("{fp50:.3} / {fp99:.3}"),
            format!("{ip50:.3} / {ip99:.3}"),
            &format!("p99 <= 2x idle (is {:.2}x)", fp99 / ip99),
        );
        row(
            "flooding uid refused (429) per second",
            format!("{:.0}", median(refused_seen)),
            String::new(),
            "",
        );
    }
    d.stop();
    sim.shutdown().await;
    Ok(())
}
