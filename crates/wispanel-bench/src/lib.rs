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
    /// daemon: an earlier build's binaries (a directory holding its
    /// `wispanel-licensed` and `wispanel-license`), measured in the same run
    /// and shown in a "before" column.
    #[arg(long, value_name = "DIR")]
    pub before: Option<PathBuf>,
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
    /// Internal: the bare axum status server.
    #[value(hide = true)]
    BaselineAxum,
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
        Group::BaselineServer | Group::BaselineAxum => match (&args.socket, &args.body_file) {
            (Some(s), Some(b)) if args.group == Group::BaselineAxum => {
                socket::run_baseline_axum(s, b)
            }
            (Some(s), Some(b)) => socket::run_baseline_server(s, b),
            _ => Err(anyhow::anyhow!(
                "the baseline servers need --socket and --body-file"
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
    let runs = args.runs.max(3) * 4;
    let (daemon, baseline) = ready_times(&env::bin_dir()?, &sim, runs)?;
    row(
        &format!("spawn to READY=1 (ms, {runs} runs)"),
        format!("{daemon:.2}"),
        format!("{baseline:.2}"),
        READY_GOAL,
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

const READY_GOAL: &str = "<= 10 ms (issue 22; baseline: bench baseline-idle)";
const SOCKET_GOAL: &str = ">= 0.9x bare axum (issue 22)";

/// The medians of spawn to `READY=1` (ms) of the daemon in `dir` and of the
/// idle baseline, alternating, `runs` each.
fn ready_times(dir: &std::path::Path, sim: &env::Sim, runs: usize) -> Result<(f64, f64)> {
    let mut daemon = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..runs {
        let files = DaemonFiles::new(sim, "")?;
        let d = env::spawn_daemon_in(dir, &files)?;
        daemon.push(d.ready_after.as_secs_f64() * 1e3);
        d.stop();
        let b = env::spawn_idle_baseline()?;
        baseline.push(b.ready_after.as_secs_f64() * 1e3);
        b.stop();
    }
    Ok((median(daemon), median(baseline)))
}

// ---------------------------------------------------------------------------
// daemon: memory and idle CPU
// ---------------------------------------------------------------------------

async fn run_daemon(args: &Args) -> Result<()> {
    let now_dir = env::bin_dir()?;
    let (now, base) = measure_build(&now_dir, "this build", args).await?;
    let before = match &args.before {
        Some(dir) => Some(measure_build(dir, "before", args).await?.0),
        None => None,
    };
    print_summary(args, &now, before.as_ref(), &base);
    Ok(())
}

/// What the `daemon` group measures of one build.
struct BuildFigures {
    daemon_bytes: u64,
    cli_bytes: u64,
    /// VmRSS idle over HTTPS (median, MiB).
    idle: f64,
    /// VmRSS after `early` checks, when that is fewer than all.
    early: Option<(usize, f64)>,
    /// VmRSS after all the checks.
    after: f64,
    cpu_per_check: f64,
    ready_ms: f64,
    socket: Vec<SocketFigure>,
}

/// The bare baseline processes of the same run.
struct BaselineFigures {
    idle: f64,
    ready_ms: f64,
}

/// Measures the build in `dir` (sizes, memory idle and after the checks,
/// idle CPU, CPU per check, spawn to `READY=1`, socket throughput), printing
/// the details as it goes.
async fn measure_build(
    dir: &std::path::Path,
    name: &str,
    args: &Args,
) -> Result<(BuildFigures, BaselineFigures)> {
    println!("\n== daemon: {name} ({})", dir.display());
    header("daemon: binary sizes (as built, stripped by the release profile)");
    let size = |bin: &str| -> Result<u64> { Ok(std::fs::metadata(env::bin_in(dir, bin)?)?.len()) };
    let (daemon_bytes, cli_bytes) = (size("wispanel-licensed")?, size("wispanel-license")?);
    for (bin, bytes, goal) in [
        ("wispanel-licensed", daemon_bytes, DAEMON_SIZE_GOAL),
        ("wispanel-license", cli_bytes, CLI_SIZE_GOAL),
    ] {
        row(
            &format!("{bin} (MB)"),
            format!("{:.2}", bytes as f64 / 1e6),
            "-".into(),
            goal,
        );
    }
    header("daemon: resident memory and idle CPU");
    let n = args.runs.max(1);
    // Plain HTTP first, measured and stopped; then HTTPS with the
    // simulator's own CA (as deployed), whose daemons stay for the rest.
    let plain = idle_daemons(dir, Transport::Plain, n).await?;
    let (p_rss, p_hwm) = memory(&plain.daemons)?;
    let p_parts = env::breakdown(plain.daemons[0].pid(), "wispanel-licensed")?;
    plain.stop().await;
    let IdleDaemons {
        sim,
        files,
        mut daemons,
        baselines,
    } = idle_daemons(dir, Transport::Https, n).await?;
    let (d_rss, d_hwm) = memory(&daemons)?;
    let (b_rss, b_hwm) = memory(&baselines)?;
    let d_parts = env::breakdown(daemons[0].pid(), "wispanel-licensed")?;
    row(
        &format!("VmRSS idle after start, HTTPS (MiB, {n} procs)"),
        format!("{d_rss:.2}"),
        format!("{b_rss:.2}"),
        IDLE_GOAL,
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
    let cpu_before = env::cpu_time(d.pid())?.0;
    let early = args.checks.min(100);
    let mut rss_early = None;
    for i in 0..args.checks {
        let id = if i % 2 == 0 { HWID_B } else { HWID_A };
        std::fs::write(&f.id_file, format!("{id}\n"))?;
        env::sighup(d.pid())?;
        let want = before + i + 1;
        env::wait_for(Duration::from_secs(10), "a check after SIGHUP", || {
            sim.request_count(Endpoint::Activate) >= want
        })
        .await?;
        if i + 1 == early && early < args.checks {
            tokio::time::sleep(Duration::from_millis(500)).await;
            rss_early = Some((early, env::memory_kib(d.pid())?.0 as f64 / 1024.0));
        }
    }
    let took = t.elapsed();
    let cpu_per_check = (env::cpu_time(d.pid())?.0.saturating_sub(cpu_before)).as_secs_f64() * 1e3
        / args.checks.max(1) as f64;
    // Let the last state write finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss, hwm) = env::memory_kib(d.pid())?;
    let after = rss as f64 / 1024.0;
    row(
        &format!("VmRSS after {} checks, HTTPS (MiB)", args.checks),
        format!("{after:.2}"),
        format!("{b_rss:.2}"),
        AFTER_GOAL,
    );
    if let Some((early, e)) = rss_early {
        row(
            &format!("VmRSS after {early} checks, HTTPS (MiB)"),
            format!("{e:.2}"),
            format!("{b_rss:.2}"),
            "",
        );
        row(
            &format!("VmRSS growth, {early} to {} checks (MiB)", args.checks),
            format!("{:+.2}", after - e),
            "-".into(),
            GROWTH_GOAL,
        );
    }
    row(
        "CPU per licence check (reload + HTTPS request, ms)",
        format!("{cpu_per_check:.2}"),
        "-".into(),
        CPU_GOAL,
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

    // Startup and the socket, shorter than their own groups run them.
    let runs = args.runs.max(3) * 2;
    let (ready_ms, b_ready_ms) = ready_times(dir, &sim, runs)?;
    row(
        &format!("spawn to READY=1 (ms, {runs} runs)"),
        format!("{ready_ms:.2}"),
        format!("{b_ready_ms:.2}"),
        READY_GOAL,
    );
    sim.shutdown().await;
    let (_, socket) = socket_figures(dir, Duration::from_secs(1), 3).await?;
    for f in &socket {
        row(
            &format!("GET /v1/status, {:>2} clients (req/s, 3 x 1 s)", f.clients),
            format!("{:.0}", f.rps()),
            format!("{:.0}", f.axum_rps()),
            &format!(
                "{SOCKET_GOAL} (is {:.2}x; {:.2}x bare hyper)",
                f.axum_ratio(),
                f.ratio()
            ),
        );
    }
    Ok((
        BuildFigures {
            daemon_bytes,
            cli_bytes,
            idle: d_rss,
            early: rss_early,
            after,
            cpu_per_check,
            ready_ms,
            socket,
        },
        BaselineFigures {
            idle: b_rss,
            ready_ms: b_ready_ms,
        },
    ))
}

const DAEMON_SIZE_GOAL: &str = "<= 4.5 MB (issue 22)";
const CLI_SIZE_GOAL: &str = "<= 4.0 MB (issue 22)";
const IDLE_GOAL: &str = "<= 6.0 MiB (issue 22; baseline: bench baseline-idle)";
const AFTER_GOAL: &str = "<= 6.5 MiB (issue 22)";
const GROWTH_GOAL: &str = "<= 0.2 MiB (issue 22)";
const CPU_GOAL: &str = "no worse than before (issue 22; --before DIR)";

/// Issue 22's figures in one table: this build, the earlier one (`--before`)
/// and the bare baselines, all from this run, beside their goals.
fn print_summary(
    args: &Args,
    now: &BuildFigures,
    before: Option<&BuildFigures>,
    base: &BaselineFigures,
) {
    println!("\ndaemon: summary (issue 22), all from this run");
    println!(
        "  {:<44} {:>12} {:>12} {:>12}   goal",
        "figure (median)", "this build", "before", "baseline"
    );
    let line = |figure: &str, f: &dyn Fn(&BuildFigures) -> String, baseline: String, goal: &str| {
        let b = before.map_or_else(|| "-".to_string(), f);
        println!(
            "  {figure:<44} {:>12} {b:>12} {baseline:>12}   {goal}",
            f(now)
        );
    };
    line(
        "wispanel-licensed (MB)",
        &|f| format!("{:.2}", f.daemon_bytes as f64 / 1e6),
        "-".into(),
        DAEMON_SIZE_GOAL,
    );
    line(
        "wispanel-license (MB)",
        &|f| format!("{:.2}", f.cli_bytes as f64 / 1e6),
        "-".into(),
        CLI_SIZE_GOAL,
    );
    line(
        "VmRSS idle, HTTPS (MiB)",
        &|f| format!("{:.2}", f.idle),
        format!("{:.2}", base.idle),
        IDLE_GOAL,
    );
    line(
        &format!("VmRSS after {} checks (MiB)", args.checks),
        &|f| format!("{:.2}", f.after),
        "-".into(),
        AFTER_GOAL,
    );
    if let Some((early, _)) = now.early {
        line(
            &format!("VmRSS growth, {early} to {} checks (MiB)", args.checks),
            &|f| {
                f.early
                    .map_or_else(|| "-".into(), |(_, e)| format!("{:+.2}", f.after - e))
            },
            "-".into(),
            GROWTH_GOAL,
        );
    }
    line(
        "CPU per licence check (ms)",
        &|f| format!("{:.2}", f.cpu_per_check),
        "-".into(),
        CPU_GOAL,
    );
    line(
        "spawn to READY=1 (ms)",
        &|f| format!("{:.2}", f.ready_ms),
        format!("{:.2}", base.ready_ms),
        READY_GOAL,
    );
    for (i, s) in now.socket.iter().enumerate() {
        line(
            &format!("GET /v1/status, {:>2} clients (x bare axum)", s.clients),
            &|f| {
                f.socket
                    .get(i)
                    .map_or_else(|| "-".into(), |s| format!("{:.2}x", s.axum_ratio()))
            },
            "1.00x".into(),
            SOCKET_GOAL,
        );
    }
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
async fn idle_daemons(
    dir: &std::path::Path,
    transport: Transport,
    n: usize,
) -> Result<IdleDaemons> {
    let sim = env::start_sim(transport).await?;
    let mut files = Vec::new();
    let mut daemons = Vec::new();
    let mut baselines = Vec::new();
    for _ in 0..n {
        let f = DaemonFiles::new(&sim, "")?;
        daemons.push(env::spawn_daemon_in(dir, &f)?);
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
    let secs = Duration::from_secs(args.socket_secs);
    let (body_len, figures) = socket_figures(&env::bin_dir()?, secs, args.runs).await?;
    header(&format!(
        "status socket: GET /v1/status ({body_len} byte body), keep-alive, {} s per run",
        args.socket_secs
    ));
    for f in &figures {
        let ms = |v: &[socket::Load], g: fn(&socket::Load) -> Duration| {
            median(v.iter().map(|l| g(l).as_secs_f64() * 1e3).collect())
        };
        row(
            &format!("{:>2} clients: requests/s (baseline: bare axum)", f.clients),
            format!("{:.0}", f.rps()),
            format!("{:.0}", f.axum_rps()),
            &format!("{SOCKET_GOAL} (is {:.2}x)", f.axum_ratio()),
        );
        row(
            &format!(
                "{:>2} clients: requests/s (baseline: bare hyper)",
                f.clients
            ),
            format!("{:.0}", f.rps()),
            format!("{:.0}", f.baseline_rps()),
            &format!("stricter: is {:.2}x", f.ratio()),
        );
        row(
            &format!("{:>2} clients: p50 / p99 latency (ms)", f.clients),
            format!(
                "{:.3} / {:.3}",
                ms(&f.daemon, |l| l.p50),
                ms(&f.daemon, |l| l.p99)
            ),
            format!(
                "{:.3} / {:.3}",
                ms(&f.baseline, |l| l.p50),
                ms(&f.baseline, |l| l.p99)
            ),
            "",
        );
    }
    Ok(())
}

/// `GET /v1/status` load on the daemon and on the bare server, one client
/// count.
struct SocketFigure {
    clients: usize,
    daemon: Vec<socket::Load>,
    /// The bare hyper server (the stricter baseline).
    baseline: Vec<socket::Load>,
    /// The bare axum server (issue 22's baseline).
    axum: Vec<socket::Load>,
}

impl SocketFigure {
    fn rps(&self) -> f64 {
        median(self.daemon.iter().map(socket::Load::per_sec).collect())
    }
    fn baseline_rps(&self) -> f64 {
        median(self.baseline.iter().map(socket::Load::per_sec).collect())
    }
    fn ratio(&self) -> f64 {
        self.rps() / self.baseline_rps()
    }
    fn axum_rps(&self) -> f64 {
        median(self.axum.iter().map(socket::Load::per_sec).collect())
    }
    fn axum_ratio(&self) -> f64 {
        self.rps() / self.axum_rps()
    }
}

/// Loads the status socket of the daemon in `dir`, a bare hyper server and
/// a bare axum one answering the same bytes, in turn, `runs` runs of `secs` for 1, 16
/// and 64 clients. Returns the body's length and the figures.
async fn socket_figures(
    dir: &std::path::Path,
    secs: Duration,
    runs: usize,
) -> Result<(usize, Vec<SocketFigure>)> {
    let sim = env::start_sim(Transport::Https).await?;
    let files = DaemonFiles::new(&sim, "")?;
    let d = env::spawn_daemon_in(dir, &files)?;
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
    let server = |mode: &str, sock: &std::path::Path| -> Result<env::Proc> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg(mode)
            .arg("--socket")
            .arg(sock)
            .arg("--body-file")
            .arg(&body_file);
        env::spawn_notify(cmd)
    };
    let base_sock = files.dir.path().join("baseline.sock");
    let axum_sock = files.dir.path().join("axum.sock");
    let b = server("baseline-server", &base_sock)?;
    let a = server("baseline-axum", &axum_sock)?;
    let mut figures = Vec::new();
    for clients in [1usize, 16, 64] {
        let mut f = SocketFigure {
            clients,
            daemon: Vec::new(),
            baseline: Vec::new(),
            axum: Vec::new(),
        };
        for _ in 0..runs.max(1) {
            f.daemon
                .push(socket::load(&files.socket, clients, secs).await?);
            f.baseline
                .push(socket::load(&base_sock, clients, secs).await?);
            f.axum.push(socket::load(&axum_sock, clients, secs).await?);
        }
        figures.push(f);
    }
    a.stop();
    b.stop();
    d.stop();
    sim.shutdown().await;
    Ok((body.len(), figures))
}
