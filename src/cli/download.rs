//! `wispanel-license update download [--version V] [--dir D]`: fetches a
//! release without the daemon ([`crate::update::download()`]) and prints its
//! path alone on stdout (`--json`: path, version, sha256 and size). On a
//! terminal, a one-line progress bar goes to stderr.

use super::args::{Cli, DownloadArgs};
use crate::config::{Config, resolve_config_path};
use crate::exit::{FAILED as EXIT_FAILED, USAGE as EXIT_USAGE};
use crate::update::{DownloadError, Downloaded, Progress, download};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Runs `update download`: exit 0 with the path printed, 1 when the portal
/// refused or the download failed, 2 for a usage error (a `--version` that is
/// not a version).
pub fn update_download(cli: &Cli, args: &DownloadArgs) -> ExitCode {
    let path = resolve_config_path(cli.config.clone());
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(cli, &e.to_string(), None, EXIT_FAILED),
    };
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                cli,
                &format!("cannot start the async runtime: {e}"),
                None,
                EXIT_FAILED,
            );
        }
    };
    let mut bar = (!cli.json && std::io::stderr().is_terminal()).then(Bar::new);
    let result = runtime.block_on(async {
        let progress = bar.as_mut().map(|b| b as &mut dyn Progress);
        tokio::select! {
            r = download(&config, args.version.as_deref(), &dir, progress) => Some(r),
            // Dropping the download removes its temporary file.
            () = interrupted() => None,
        }
    });
    if result.is_none()
        && let Some(b) = bar.as_mut()
    {
        // End the bar's line before the message.
        b.finish();
    }
    match result {
        None => fail(
            cli,
            "interrupted; the partial file was removed",
            None,
            EXIT_FAILED,
        ),
        Some(Ok(d)) => print_done(cli, &d),
        Some(Err(e)) => {
            let code = if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
            fail(cli, &e.to_string(), Some(&e), code)
        }
    }
}

/// SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_done(cli: &Cli, d: &Downloaded) -> ExitCode {
    let text = if cli.json {
        let v = serde_json::json!({
            "path": d.path,
            "version": d.version,
            "sha256": d.sha256,
            "size": d.size,
        });
        format!("{v}\n")
    } else {
        format!("{}\n", d.path.display())
    };
    // A closed stdout (`| head`) is not worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

fn fail(cli: &Cli, message: &str, e: Option<&DownloadError>, code: u8) -> ExitCode {
    eprintln!("wispanel-license: update download: {message}");
    if cli.json {
        let v = serde_json::json!({
            "error": message,
            "code": e.and_then(DownloadError::code),
        });
        let _ = writeln!(std::io::stdout().lock(), "{v}");
    }
    ExitCode::from(code)
}

/// A hand-written progress line on stderr: bytes of total, percent, rate;
/// redrawn in place with `\r`, at most about ten times a second.
struct Bar {
    started: Instant,
    drawn: Option<Instant>,
    last: (u64, u64),
}

/// Time between two redraws.
const REDRAW: Duration = Duration::from_millis(100);

impl Bar {
    fn new() -> Bar {
        Bar {
            started: Instant::now(),
            drawn: None,
            last: (0, 0),
        }
    }

    fn draw(&mut self, now: Instant) {
        let (done, total) = self.last;
        let line = render(done, total, now.duration_since(self.started));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line:<60}");
        let _ = err.flush();
        self.drawn = Some(now);
    }
}

impl Progress for Bar {
    fn update(&mut self, done: u64, total: u64) {
        self.last = (done, total);
        let now = Instant::now();
        if self.drawn.is_none_or(|t| now.duration_since(t) >= REDRAW) {
            self.draw(now);
        }
    }

    fn finish(&mut self) {
        if self.drawn.is_some() {
            self.draw(Instant::now());
            eprintln!();
        }
    }
}

/// `  12.0 MiB / 40.0 MiB   30%   5.2 MiB/s`
fn render(done: u64, total: u64, elapsed: Duration) -> String {
    let pct = if total == 0 {
        100
    } else {
        (u128::from(done) * 100 / u128::from(total)) as u64
    };
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        format!("{}/s", bytes(done as f64 / secs))
    } else {
        "-".to_string()
    };
    format!(
        "{:>10} / {:<10} {:>3}%  {:>11}",
        bytes(done as f64),
        bytes(total as f64),
        pct,
        rate
    )
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_shows_bytes_total_percent_and_rate() {
        let line = render(3 * 1024 * 1024, 12 * 1024 * 1024, Duration::from_secs(2));
        assert!(line.contains("3.0 MiB"), "{line}");
        assert!(line.contains("12.0 MiB"), "{line}");
        assert!(line.contains("25%"), "{line}");
        assert!(line.contains("1.5 MiB/s"), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let line = render(0, 0, Duration::ZERO);
        assert!(line.contains("100%") && line.contains('-'), "{line}");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
    }
}
