//! `wispanel-bench`: figures for the README, each measured next to a baseline
//! in the same run, printed as the median of several runs. Benchmarks print
//! and never fail on speed; everything runs on loopback, in temporary
//! directories, bounded in time, and stops by itself.
//!
//! Groups: `fleet` (the fleet simulation of [`wispanel_fleet`]), `daemon`
//! (resident memory and idle CPU), `socket` (status socket throughput and
//! latency), `fair` (root's latency while another uid floods the socket),
//! `startup` (spawn to `READY=1`, `hardware-id` wall time).

pub mod env;
pub mod fair;
pub mod socket;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use env::{DaemonFiles, HWID_A, HWID_B, Transport};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use wispanel_fleet::{self as fleet, FleetParams};
use wispanel_portal_sim::scenario::Endpoint;

/// Benchmarks of wispanel-license (loopback only; prints figures, never fails on speed).
#[derive(Parser, Debug)]
#[command(name = "wispanel-bench")]
pub struct Args {
    /// Which group to run.
    #[arg(value_enum, default_value = "all")]
    pub group: Group,
    /// Runs per figure (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// How long the idle CPU time is measured, in seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// Licence checks driven before the "after checks" memory figure.
    #[arg(long, default_value_t = 1000)]
    pub checks: usize,
    /// Hosts in the fleet simulation.
    #[arg(long, default_value_t = 100_000)]
    pub hosts: usize,
    /// Seconds of load per socket run.
    #[arg(long, default_value_t = 3)]
    pub socket_secs: u64,
    /// fleet: also write each scenario's per-minute series as CSV into this directory.
    #[arg(long, value_name = "DIR")]
    pub csv: Option<PathBuf>,
    /// For the hidden baseline modes.
    #[arg(long, hide = true)]
    pub socket: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub body_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Group {
    All,
    Fleet,
    Daemon,
    Socket,
    /// Root's status latency while another uid floods the socket (as root).
    Fair,
    Startup,
    /// Internal: the idle baseline process (READY=1, then sleep).
    #[value(hide = true)]
    BaselineIdle,
    /// Internal: the baseline status server.
    #[value(hide = true)]
    BaselineServer,
    /// Internal: the flooding clients of `fair` (run as another uid).
    #[value(hide = true)]
    FairFlood,
}

/// The bench binary's entry point.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.group {
        Group::BaselineIdle => baseline_idle(),
        Group::FairFlood => match &args.socket {
            Some(s) => fair::run_flood(s, Duration::from_secs(args.socket_secs)),
            None => Err(anyhow::anyhow!("fair-flood needs --socket")),
        },
        Group::BaselineServer => match (&args.socket, &args.body_file) {
            (Some(s), Some(b)) => socket::run_baseline_server(s, b),
            _ => Err(anyhow::anyhow!(
                "baseline-server needs --socket and --body-file"
            )),
        },
        _ => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wispanel-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn baseline_idle() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        wispanel_license::systemd::ready("baseline");
        // Bounded, like everything here: the bench kills it long before.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    let want = |g: Group| args.group == Group::All || args.group == g;
    if want(Group::Fleet) {
        run_fleet(args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if want(Group::Startup) {
        rt.block_on(run_startup(args))?;
    }
    if want(Group::Daemon) {
        rt.block_on(run_daemon(args))?;
    }
    if want(Group::Socket) {
        rt.block_on(run_socket(args))?;
    }
    if want(Group::Fair) {
        rt.block_on(fair::run_fair(args))?;
    }
    Ok(())
}

/// The median of `xs` (the mean of the two middle values for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn row(figure: &str, value: String, baseline: String, goal: &str) {
    println!("  {figure:<44} {value:>16} {baseline:>16}   {goal}");
}

fn header(title: &str) {
    println!("\n{title}");
    println!(
        "  {:<44} {:>16} {:>16}   goal",
        "figure (median)", "wispanel", "baseline"
    );
}

// ---------------------------------------------------------------------------
// fleet
// ---------------------------------------------------------------------------

fn run_fleet(args: &Args) {
    println!(
        "\nfleet simulation ({} hosts, default [schedule]; rates are portal requests per minute)",
        args.hosts
    );
    let base = FleetParams {
        hosts: args.hosts,
        ..FleetParams::default()
    };
    let scenarios: Vec<(&str, FleetParams)> = vec![
        (
            "10 min outage",
            FleetParams {
                outage: Duration::from_secs(600),
                ..base.clone()
            },
        ),
        (
            "1 h outage",
            FleetParams {
                outage: Duration::from_secs(3600),
                ..base.clone()
            },
        ),
        (
            "6 h outage",
            FleetParams {
                outage: Duration::from_secs(6 * 3600),
                ..base.clone()
            },
        ),
        (
            "6 h outage, portal capacity 1.5x steady",
            FleetParams {
                outage: Duration::from_secs(6 * 3600),
                capacity_factor: Some(1.5),
                ..base.clone()
            },
        ),
    ];
    for (i, (name, p)) in scenarios.into_iter().enumerate() {
        let t = Instant::now();
        let r = fleet::simulate(p);
        println!("\n{name} (simulated in {:.1} s)", t.elapsed().as_secs_f64());
        print!("{}", r.render());
        if let Some(dir) = &args.csv {
            let path = dir.join(format!("fleet-{i}.csv"));
            if let Err(e) =
                std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, r.csv()))
            {
                eprintln!("wispanel-bench: cannot write {}: {e}", path.display());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// startup
// ---------------------------------------------------------------------------

async fn run_startup(args: &Args) -> Result<()> {
    let sim = env::start_sim(Transport::Https).await?;
    header("startup");
    let mut daemon = Vec::new();
    let mut baseline = Vec::new();
    let runs = args.runs.max(3) * 4;
    for _ in 0..runs {
        let files = DaemonFiles::new(&sim, "")?;
        let d = env::spawn_daemon(&files)?;
        daemon.push(d.ready_after.as_secs_f64() * 1e3);
        d.stop();
        let b = env::spawn_idle_baseline()?;
        baseline.push(b.ready_after.as_secs_f64() * 1e3);
        b.stop();
    }
    row(
        &format!("spawn to READY=1 (ms, {runs} runs)"),
        format!("{:.2}", median(daemon)),
        format!("{:.2}", median(baseline)),
        "< 20 ms (baseline: bench baseline-idle)",
    );

    let files = DaemonFiles::new(&sim, "")?;
    let cli = env::bin("wispanel-license")?;
    let runs = args.runs.max(3) * 10;
    let time = |cmd: &mut Command| -> Result<f64> {
        let t = Instant::now();
        let ok = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(ok, "{cmd:?} failed");
        Ok(ms)
    };
    let mut id_file = Vec::new();
    let mut sources = Vec::new();
    let mut truth = Vec::new();
    // A configuration without id_file: the real recipe (machine-id, DMI, NICs).
    let real = files.dir.path().join("real.toml");
    std::fs::write(&real, "product_version = \"1.4.2\"\n")?;
    let real_ok = Command::new(&cli)
        .args(["--config"])
        .arg(&real)
        .arg("hardware-id")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    for _ in 0..runs {
        id_file.push(time(
            Command::new(&cli)
                .arg("--config")
                .arg(&files.config)
                .arg("hardware-id"),
        )?);
        if real_ok {
            sources.push(time(
                Command::new(&cli)
                    .arg("--config")
                    .arg(&real)
                    .arg("hardware-id"),
            )?);
        }
        truth.push(time(&mut Command::new("/bin/true"))?);
    }
    let t = median(truth);
    row(
        &format!("hardware-id, id_file (ms, {runs} runs)"),
        format!("{:.2}", median(id_file)),
        format!("{t:.2}"),
        "< 2 ms (baseline: /bin/true)",
    );
    if real_ok {
        row(
            &format!("hardware-id, host sources (ms, {runs} runs)"),
            format!("{:.2}", median(sources)),
            format!("{t:.2}"),
            "< 2 ms (baseline: /bin/true)",
        );
    } else {
        println!("  hardware-id from host sources: skipped (no source on this host)");
    }
    sim.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// daemon: memory and idle CPU
// ---------------------------------------------------------------------------

async fn run_daemon(args: &Args) -> Result<()> {
    header("daemon: resident memory and idle CPU");
    let n = args.runs.max(1);
    // Plain HTTP first, measured and stopped; then HTTPS with the
    // simulator's own CA (as deployed), whose daemons stay for the rest.
    let plain = idle_daemons(Transport::Plain, n).await?;
    let (p_rss, p_hwm) = memory(&plain.daemons)?;
    let p_parts = env::breakdown(plain.daemons[0].pid(), "wispanel-licensed")?;
    plain.stop().await;
    let IdleDaemons {
        sim,
        files,
        mut daemons,
        baselines,
    } = idle_daemons(Transport::Https, n).await?;
    let (d_rss, d_hwm) = memory(&daemons)?;
    let (b_rss, b_hwm) = memory(&baselines)?;
    let d_parts = env::breakdown(daemons[0].pid(), "wispanel-licensed")?;
    row(
        &format!("VmRSS idle after start, HTTPS (MiB, {n} procs)"),
        format!("{d_rss:.2}"),
        format!("{b_rss:.2}"),
        "< 8 MiB (baseline: bench baseline-idle)",
    );
    row(
        &format!("VmRSS idle after start, plain HTTP (MiB, {n})"),
        format!("{p_rss:.2}"),
        format!("{b_rss:.2}"),
        "",
    );
    row(
        "VmHWM idle after start, HTTPS (MiB)",
        format!("{d_hwm:.2}"),
        format!("{b_hwm:.2}"),
        "",
    );
    row(
        "VmHWM idle after start, plain HTTP (MiB)",
        format!("{p_hwm:.2}"),
        format!("{b_hwm:.2}"),
        "",
    );
    print_breakdown(&d_parts, &p_parts);

    let cpu0: Vec<_> = daemons
        .iter()
        .chain(&baselines)
        .map(|p| env::cpu_time(p.pid()))
        .collect::<Result<_>>()?;
    let idle = Duration::from_secs(args.idle_secs);
    tokio::time::sleep(idle).await;
    let cpu1: Vec<_> = daemons
        .iter()
        .chain(&baselines)
        .map(|p| env::cpu_time(p.pid()))
        .collect::<Result<_>>()?;
    let used = |i: usize| {
        (
            (cpu1[i].0 - cpu0[i].0).as_secs_f64() * 1e3,
            (cpu1[i].1.saturating_sub(cpu0[i].1)).as_secs_f64() * 1e3,
        )
    };
    let d_stat = median((0..n).map(|i| used(i).0).collect());
    let d_sched = median((0..n).map(|i| used(i).1).collect());
    let b_stat = median((n..2 * n).map(|i| used(i).0).collect());
    let b_sched = median((n..2 * n).map(|i| used(i).1).collect());
    row(
        &format!("CPU idle {}s, utime+stime (ms)", args.idle_secs),
        format!("{d_stat:.1}"),
        format!("{b_stat:.1}"),
        "",
    );
    row(
        &format!("CPU idle {}s, schedstat run time (ms)", args.idle_secs),
        format!("{d_sched:.3}"),
        format!("{b_sched:.3}"),
        "",
    );
    drop(baselines);
    for d in daemons.drain(1..) {
        d.stop();
    }

    // Licence checks: each SIGHUP with the other hardware id in id_file makes
    // the daemon reload and activate at once (one portal request each).
    let d = daemons.pop().context("no daemon")?;
    let f = &files[0];
    let before = sim.request_count(Endpoint::Activate);
    let t = Instant::now();
    for i in 0..args.checks {
        let id = if i % 2 == 0 { HWID_B } else { HWID_A };
        std::fs::write(&f.id_file, format!("{id}\n"))?;
        env::sighup(d.pid())?;
        let want = before + i + 1;
        env::wait_for(Duration::from_secs(10), "a check after SIGHUP", || {
            sim.request_count(Endpoint::Activate) >= want
        })
        .await?;
    }
    let took = t.elapsed();
    // Let the last state write finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss, hwm) = env::memory_kib(d.pid())?;
    row(
        &format!("VmRSS after {} checks, HTTPS (MiB)", args.checks),
        format!("{:.2}", rss as f64 / 1024.0),
        format!("{b_rss:.2}"),
        "< 8 MiB",
    );
    row(
        &format!("VmHWM after {} checks, HTTPS (MiB)", args.checks),
        format!("{:.2}", hwm as f64 / 1024.0),
        format!("{b_hwm:.2}"),
        "",
    );
    println!(
        "  ({} checks driven by SIGHUP + a flipped hardware id, {:.1} s, {:.1} ms each)",
        args.checks,
        took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / args.checks.max(1) as f64
    );
    d.stop();
    sim.shutdown().await;
    Ok(())
}

/// `runs` daemons (and as many idle baselines) after their first start.
struct IdleDaemons {
    sim: env::Sim,
    files: Vec<DaemonFiles>,
    daemons: Vec<env::Proc>,
    baselines: Vec<env::Proc>,
}

impl IdleDaemons {
    async fn stop(self) {
        drop(self.baselines);
        for d in self.daemons {
            d.stop();
        }
        drop(self.files);
        self.sim.shutdown().await;
    }
}

/// Starts `n` daemons against a simulator reached over `transport`, and `n`
/// baselines, side by side so they are measured over the same window.
async fn idle_daemons(transport: Transport, n: usize) -> Result<IdleDaemons> {
    let sim = env::start_sim(transport).await?;
    let mut files = Vec::new();
    let mut daemons = Vec::new();
    let mut baselines = Vec::new();
    for _ in 0..n {
        let f = DaemonFiles::new(&sim, "")?;
        daemons.push(env::spawn_daemon(&f)?);
        files.push(f);
        baselines.push(env::spawn_idle_baseline()?);
    }
    // The first start activates at once; idle means after that.
    env::wait_for(Duration::from_secs(10), "the first activations", || {
        sim.request_count(Endpoint::Activate) >= n && sim.request_count(Endpoint::CheckUpdate) >= n
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(IdleDaemons {
        sim,
        files,
        daemons,
        baselines,
    })
}

/// The medians of VmRSS and VmHWM (MiB).
fn memory(procs: &[env::Proc]) -> Result<(f64, f64)> {
    let mut rss = Vec::new();
    let mut hwm = Vec::new();
    for p in procs {
        let (r, h) = env::memory_kib(p.pid())?;
        rss.push(r as f64 / 1024.0);
        hwm.push(h as f64 / 1024.0);
    }
    Ok((median(rss), median(hwm)))
}

fn print_breakdown(https: &env::Breakdown, plain: &env::Breakdown) {
    println!("\n  what the idle daemon's resident memory is (KiB, one daemon, /proc/<pid>/smaps)");
    println!("  {:<44} {:>16} {:>16}", "", "HTTPS", "plain HTTP");
    let line = |what: &str, f: fn(&env::Breakdown) -> u64| {
        println!("  {what:<44} {:>16} {:>16}", f(https), f(plain));
    };
    line("binary: code (r-x, file-backed)", |b| b.binary_code);
    line("binary: read-only data, relro, data", |b| b.binary_data);
    line("other files (libc, loader, ...)", |b| b.other_files);
    line("heap and anonymous (incl. thread stacks)", |b| b.anonymous);
    line("main thread stack", |b| b.main_stack);
    line("vdso, vvar, ...", |b| b.other);
    line("Rss (smaps_rollup)", |b| b.rss);
    line("  of which Anonymous (smaps_rollup)", |b| {
        b.rollup_anonymous
    });
    println!();
}

// ---------------------------------------------------------------------------
// socket
// ---------------------------------------------------------------------------

async fn run_socket(args: &Args) -> Result<()> {
    let sim = env::start_sim(Transport::Https).await?;
    let files = DaemonFiles::new(&sim, "")?;
    let d = env::spawn_daemon(&files)?;
    env::wait_for(Duration::from_secs(10), "the first activation", || {
        sim.request_count(Endpoint::CheckUpdate) >= 1
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = socket::Client::connect(&files.socket)
        .await?
        .get_status()
        .await?;
    let body_file = files.dir.path().join("status.json");
    std::fs::write(&body_file, &body)?;
    let base_sock = files.dir.path().join("baseline.sock");
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("baseline-server")
        .arg("--socket")
        .arg(&base_sock)
        .arg("--body-file")
        .arg(&body_file);
    let b = env::spawn_notify(cmd)?;
    header(&format!(
        "status socket: GET /v1/status ({} byte body), keep-alive, {} s per run",
        body.len(),
        args.socket_secs
    ));
    let secs = Duration::from_secs(args.socket_secs);
    for clients in [1usize, 16, 64] {
        let mut dr = Vec::new();
        let mut br = Vec::new();
        for _ in 0..args.runs.max(1) {
            dr.push(socket::load(&files.socket, clients, secs).await?);
            br.push(socket::load(&base_sock, clients, secs).await?);
        }
        let rps = |v: &[socket::Load]| median(v.iter().map(|l| l.per_sec()).collect());
        let ms = |v: &[socket::Load], f: fn(&socket::Load) -> Duration| {
            median(v.iter().map(|l| f(l).as_secs_f64() * 1e3).collect())
        };
        let (d_rps, b_rps) = (rps(&dr), rps(&br));
        row(
            &format!("{clients:>2} clients: requests/s"),
            format!("{d_rps:.0}"),
            format!("{b_rps:.0}"),
            &format!(">= 0.8x baseline (is {:.2}x)", d_rps / b_rps),
        );
        row(
            &format!("{clients:>2} clients: p50 / p99 latency (ms)"),
            format!("{:.3} / {:.3}", ms(&dr, |l| l.p50), ms(&dr, |l| l.p99)),
            format!("{:.3} / {:.3}", ms(&br, |l| l.p50), ms(&br, |l| l.p99)),
            "",
        );
    }
    b.stop();
    d.stop();
    sim.shutdown().await;
    Ok(())
}
