//! What the benchmarks run against: a temporary directory with a
//! configuration, the portal simulator, the daemon (or a baseline process)
//! spawned with its own `NOTIFY_SOCKET`, and readers of `/proc`.

use anyhow::{Context, Result, bail};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use wispanel_portal_sim::{self as sim, SimHandle, SimOptions};

/// The simulator's always-valid key.
pub const GOOD_KEY: &str = "WISP-GOOD-0000-SA6T";
/// Two fixed hardware ids (64 hex).
pub const HWID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const HWID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "wispanel-bench-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the project's binaries are: beside the running bench binary.
pub fn bin_dir() -> Result<PathBuf> {
    // Measuring other binaries (an older build, as a baseline) with this bench.
    if let Some(dir) = std::env::var_os("WISPANEL_BENCH_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the bench binary's path")?;
    Ok(exe
        .parent()
        .context("the bench binary has no directory")?
        .to_path_buf())
}

pub fn bin(name: &str) -> Result<PathBuf> {
    bin_in(&bin_dir()?, name)
}

/// `name` in `dir` (a build's binaries: this one's, or an earlier one's).
pub fn bin_in(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "{} is missing: build it first (cargo build --release --bins)",
            p.display()
        );
    }
    Ok(p)
}

/// How the daemon reaches the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS with the simulator's own CA in `ca_file`: as deployed.
    Https,
    /// Plain HTTP on loopback (what the first figures measured).
    Plain,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Https => "HTTPS",
            Transport::Plain => "plain HTTP",
        }
    }
}

/// A running simulator and, over HTTPS, the directory holding its CA.
pub struct Sim {
    pub handle: SimHandle,
    _ca_dir: Option<TempDir>,
}

impl std::ops::Deref for Sim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl Sim {
    pub async fn shutdown(self) {
        self.handle.shutdown().await
    }
}

/// Starts the portal simulator on 127.0.0.1 (a port the OS picks): over
/// HTTPS with a CA of its own, or plain HTTP.
pub async fn start_sim(transport: Transport) -> Result<Sim> {
    let (opts, dir) = match transport {
        Transport::Plain => (SimOptions::plain(), None),
        Transport::Https => {
            let dir = TempDir::new("ca")?;
            (
                SimOptions::https(dir.path().join("portal-ca.pem")),
                Some(dir),
            )
        }
    };
    let handle = sim::start(opts)
        .await
        .context("cannot start the portal simulator")?;
    Ok(Sim {
        handle,
        _ca_dir: dir,
    })
}

/// A daemon's files: configuration, state, socket, hardware id.
pub struct DaemonFiles {
    pub dir: TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub id_file: PathBuf,
}

impl DaemonFiles {
    /// Writes a configuration for `sim` (its URL, and its CA as `ca_file`
    /// over HTTPS) with `schedule` lines.
    pub fn new(sim: &SimHandle, schedule: &str) -> Result<DaemonFiles> {
        let portal_url = &sim.base_url;
        let ca = match &sim.ca_pem_path {
            Some(p) => format!("ca_file = \"{}\"\n", p.display()),
            None => String::new(),
        };
        let dir = TempDir::new("daemon")?;
        let p = dir.path();
        let id_file = p.join("hardware-id");
        std::fs::write(&id_file, format!("{HWID_A}\n"))?;
        let socket = p.join("run").join("status.sock");
        let config = p.join("license.toml");
        let text = format!(
            "license_key = \"{GOOD_KEY}\"\n\
             portal_url = \"{portal_url}\"\n\
             {ca}\
             product_version = \"1.4.2\"\n\
             state_dir = \"{}\"\n\
             socket_path = \"{}\"\n\
             [schedule]\n{schedule}\n\
             [hardware]\n\
             id_file = \"{}\"\n",
            p.join("state").display(),
            socket.display(),
            id_file.display()
        );
        std::fs::write(&config, text)?;
        Ok(DaemonFiles {
            dir,
            config,
            socket,
            id_file,
        })
    }
}

/// A spawned process that is killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    /// From spawn to `READY=1`.
    pub ready_after: Duration,
    _notify: TempDir,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (SIGKILL after 5 s).
    pub fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Spawns `cmd` with a fresh `NOTIFY_SOCKET` and waits (at most 10 s) for
/// `READY=1`; the time from spawn to that datagram is `ready_after`.
pub fn spawn_notify(mut cmd: Command) -> Result<Proc> {
    let dir = TempDir::new("notify")?;
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).context("cannot bind the notify socket")?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    cmd.env("NOTIFY_SOCKET", &path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_FDS")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().context("cannot spawn")?;
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]);
                if msg.lines().any(|l| l == "READY=1") {
                    return Ok(Proc {
                        child,
                        ready_after: start.elapsed(),
                        _notify: dir,
                    });
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("notify socket"),
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the process exited before READY=1: {status}");
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no READY=1 within 10 s");
        }
    }
}

/// Spawns the daemon with `files`' configuration.
pub fn spawn_daemon(files: &DaemonFiles) -> Result<Proc> {
    spawn_daemon_in(&bin_dir()?, files)
}

/// Spawns the daemon of the build in `dir` with `files`' configuration.
pub fn spawn_daemon_in(dir: &Path, files: &DaemonFiles) -> Result<Proc> {
    let mut cmd = Command::new(bin_in(dir, "wispanel-licensed")?);
    cmd.arg("--config").arg(&files.config);
    spawn_notify(cmd).context("wispanel-licensed")
}

/// Spawns this bench binary's idle baseline: a current-thread tokio runtime
/// that sends `READY=1` and sleeps.
pub fn spawn_idle_baseline() -> Result<Proc> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("baseline-idle");
    spawn_notify(cmd).context("baseline-idle")
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
pub fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time used by `pid` (all threads): utime+stime from `/proc/<pid>/stat`
/// (clock ticks turned into a duration), and the sum of the threads'
/// `schedstat` run times (nanoseconds, finer grained).
pub fn cpu_time(pid: u32) -> Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields start after its ')'.
    let rest = &stat[stat.rfind(')').context("bad /proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let stat_time = Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let p = task?.path().join("schedstat");
        if let Ok(t) = std::fs::read_to_string(p) {
            ns += t
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok((stat_time, Duration::from_nanos(ns)))
}

/// `sysconf(_SC_CLK_TCK)` through `getconf` (100 on Linux when unknown).
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Polls `cond` every 5 ms for at most `limit`.
pub async fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Sends SIGHUP to `pid`.
pub fn sighup(pid: u32) -> Result<()> {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?
        .success();
    if !ok {
        bail!("kill -HUP {pid} failed");
    }
    Ok(())
}

/// Resident memory of a process by what it is made of (KiB), from
/// `/proc/<pid>/smaps` (the `Rss` of each mapping, sorted by its path and
/// permissions) and `/proc/<pid>/smaps_rollup` (the process's totals).
#[derive(Clone, Copy, Debug, Default)]
pub struct Breakdown {
    /// The program's own executable code (file-backed, `r-x`).
    pub binary_code: u64,
    /// The program's read-only data, relocations and data (file-backed
    /// mappings of the binary that are not executable).
    pub binary_data: u64,
    /// Every other file: the C library, the loader, locale files.
    pub other_files: u64,
    /// `[heap]` and anonymous mappings (the allocator's arenas, thread stacks).
    pub anonymous: u64,
    /// The main thread's `[stack]`.
    pub main_stack: u64,
    /// The kernel's `[vdso]`, `[vvar]` and the like.
    pub other: u64,
    /// `Rss` of `smaps_rollup` (equals the sum above).
    pub rss: u64,
    /// `Anonymous` of `smaps_rollup`: pages not backed by a file, including
    /// written copies of file pages (the binary's data after relocation).
    pub rollup_anonymous: u64,
}

/// Reads the breakdown of `pid`, whose binary's file name is `binary`.
pub fn breakdown(pid: u32, binary: &str) -> Result<Breakdown> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("cannot read /proc/{pid}/smaps"))?;
    let mut b = Breakdown::default();
    // The mapping that the next `Rss:` line belongs to: (permissions, path).
    let mut current: Option<(String, String)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if !first.ends_with(':') && first.contains('-') {
            // A mapping's header: range, perms, offset, dev, inode, [path].
            let perms = words.next().unwrap_or("").to_string();
            let path = words.nth(3).unwrap_or("").to_string();
            current = Some((perms, path));
            continue;
        }
        if first != "Rss:" {
            continue;
        }
        let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let Some((perms, path)) = &current else {
            continue;
        };
        let slot = if path.rsplit('/').next() == Some(binary) && path.starts_with('/') {
            if perms.contains('x') {
                &mut b.binary_code
            } else {
                &mut b.binary_data
            }
        } else if path.starts_with('/') {
            &mut b.other_files
        } else if path.is_empty() || path == "[heap]" {
            &mut b.anonymous
        } else if path == "[stack]" {
            &mut b.main_stack
        } else {
            &mut b.other
        };
        *slot += kib;
    }
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("cannot read /proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    b.rss = field("Rss:");
    b.rollup_anonymous = field("Anonymous:");
    Ok(b)
}
