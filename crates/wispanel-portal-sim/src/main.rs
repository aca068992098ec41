//! `wispanel-portal-sim`: runs the simulated licensing portal (see
//! `wispanel_portal_sim`) until SIGTERM or SIGINT.

use clap::Parser;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use wispanel_portal_sim::{self as sim, Scenario, SimOptions, TlsMode};

const AFTER_HELP: &str = "\
Known keys (default scenario): WISP-GOOD-0000-SA6T valid, WISP-EXPD-0000-0001 expired,
WISP-SUSP-0000-0002 suspended, WISP-REVK-0000-0003 revoked, WISP-MAXA-0000-0004
max activations, WISP-NOUP-0000-0005 updates expired; any other key is invalid.

Scenario file (TOML):
  date_skew_secs = -300          # Date header 5 min behind
  clock_offset = \"+1d\"           # the portal's whole clock a day ahead (Date, valid_until, ...)
  max_activations = 3            # seats per key; [seat_limits] \"KEY\" = 1 per key
  ignore_idempotency_key = false # true: a portal that ignores Idempotency-Key
  activate_counts_every_request = false  # true: every activate takes a seat
  release_size = 262144
  latest_version = \"1.5.0\"
  [terms]
  tier = \"pro\"
  valid_for_secs = 604800
  [licenses]
  \"WISP-TEST-0000-0009\" = \"valid\"  # expired, suspended, revoked, max_activations,
                                     # hardware_mismatch, updates_expired,
                                     # version_too_low, invalid_key
  [validate]                     # activate, validate, deactivate, check_update, token, release
  repeat_last = false
  [[validate.answers]]           # consumed in order, then the normal behaviour
  status = 503
  headers = { \"Retry-After\" = \"2\" }
  body = { success = false, code = \"INTERNAL_ERROR\" }   # a string is sent as is
  [[validate.answers]]
  drop = true                    # or: stall, delay_ms, truncate_at, body_repeat,
                                 # redirect_to, wrong_sha256, short_file, stall_body;
                                 # commit = true: the portal acts first (a lost answer)

Control while running:
  curl -X POST URL/_sim/license -d '{\"license_key\":\"WISP-GOOD-0000-SA6T\",\"behaviour\":\"expired\"}'
  curl -X POST URL/_sim/outage  -d '{\"mode\":\"429\",\"retry_after\":\"2\"}'   # 503, drop, stall, none
  curl -X POST URL/_sim/answers -d '{\"endpoint\":\"validate\",\"answers\":[{\"status\":500}]}'
  curl -X POST URL/_sim/seats   -d '{\"license_key\":\"WISP-GOOD-0000-SA6T\",\"limit\":1}'
  curl -X POST URL/_sim/mode    -d '{\"clock_offset\":\"-1d\",\"ignore_idempotency_key\":true}'
  curl URL/_sim/requests";

/// A simulated WisPanel licensing portal for tests and demos (loopback only).
#[derive(Parser, Debug)]
#[command(name = "wispanel-portal-sim", version, after_help = AFTER_HELP)]
struct Args {
    /// TOML scenario file (see below); default: a healthy portal.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    plain: bool,
    /// Loopback address to listen on; port 0 lets the OS choose.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the CA certificate (PEM) clients should trust
    /// [default: a file in the temporary directory, removed on exit].
    #[arg(long, value_name = "PATH", conflicts_with = "plain")]
    ca_out: Option<PathBuf>,
    /// Serve a certificate signed by another CA than the one in --ca-out.
    #[arg(long, conflicts_with = "plain")]
    other_ca: bool,
    /// Write the base URL (e.g. https://127.0.0.1:43117) to this file once listening.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wispanel-portal-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    };
    let temp_ca =
        std::env::temp_dir().join(format!("wispanel-portal-sim-{}-ca.pem", std::process::id()));
    let ca_out = args.ca_out.clone().unwrap_or_else(|| temp_ca.clone());
    let tls = match (args.plain, args.other_ca) {
        (true, _) => TlsMode::Plain,
        (false, false) => TlsMode::SelfCa { ca_out },
        (false, true) => TlsMode::OtherCa { ca_out },
    };
    // Both signals are hooked before announcing the URL, so a script that
    // kills us right after reading it still gets a clean exit.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let handle = sim::start(SimOptions {
        tls,
        scenario,
        bind: args.listen,
    })
    .await?;

    // The port file first: whoever reads the URL on stdout may rely on it.
    if let Some(path) = &args.port_file {
        write_atomically(path, &format!("{}\n", handle.base_url))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", handle.base_url)?;
    if let Some(ca) = &handle.ca_pem_path {
        writeln!(out, "ca file: {}", ca.display())?;
    }
    out.flush()?;
    drop(out);

    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    handle.shutdown().await;
    if args.ca_out.is_none() {
        let _ = std::fs::remove_file(&temp_ca);
    }
    Ok(())
}

/// Writes via a temporary file and a rename, so a script polling for the
/// file never reads half of it.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("cannot write the port file {}: {e}", path.display()))
}
