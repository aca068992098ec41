//! Starting and stopping: [`run`] (the in-process entry point: load the
//! state, spawn the tasks, serve, drain on shutdown), the environment it
//! runs in ([`Env`]), the watchdog, the signal handler, and [`main`] for the
//! binary.

use super::portal::https_factory;
use super::shared::{Daemon, Recorded, Runtime, lock, placeholder_doc};
use super::{
    PortalFactory, SHUTDOWN_BUDGET, licence, reload, status_line, updates, warnings, writer,
};
use crate::api::DaemonInfo;
use crate::clock::{Clock, SystemClock, ThreadJitter};
use crate::config::Config;
use crate::history::{Entry, Event, History};
use crate::socket::Snapshot;
use crate::store::{Loaded, Store};
use crate::{logging, socket, systemd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::Core;
use wispanel_core::schedule::Jitter;

/// What the daemon takes from the world besides its configuration: the
/// clock, the randomness, the way to the portal, whether to talk to systemd,
/// and the reload trigger. Production uses [`Env::production`]; tests pass a
/// clock that follows paused tokio time, a seeded jitter and a fake portal.
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub jitter: Box<dyn Jitter + Send>,
    pub portal: PortalFactory,
    /// Send `READY=1`, `STATUS=`, `RELOADING=1`, `STOPPING=1` and watchdog
    /// pings (each is a no-op without `$NOTIFY_SOCKET`); tests turn this off so that they do
    /// not depend on the environment they run in.
    pub systemd: bool,
    /// Notified to reload the configuration (SIGHUP).
    pub reload: Arc<Notify>,
}

impl Env {
    /// The system clock, `rand`'s generator, the HTTPS client, systemd.
    pub fn production() -> Env {
        Env {
            clock: Arc::new(SystemClock),
            jitter: Box::new(ThreadJitter),
            portal: https_factory(),
            systemd: true,
            reload: Arc::new(Notify::new()),
        }
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Portal(#[from] crate::portal::SetupError),
    #[error("{0}")]
    Socket(#[from] socket::SocketError),
}

/// Runs the daemon on `listener` (already bound to `config.socket_path`)
/// until `shutdown` completes; saves the state on the way out.
pub async fn run(
    config: Config,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
    env: Env,
) -> Result<(), StartError> {
    let started = env.clock.now();
    let store = Store::open(&config.state_dir)?;
    let core = match store.load(started) {
        Loaded::Fresh => {
            info!(path = %store.state_path().display(), "no saved state in {}: first start", store.state_path().display());
            Core::default()
        }
        Loaded::Existing(core) => *core,
        Loaded::Corrupt { problem, moved_to } => {
            error!(
                path = %store.state_path().display(),
                moved_to = moved_to.as_ref().map(|p| p.display().to_string()),
                "the saved state cannot be read ({problem}); moved aside to {}, starting afresh",
                moved_to.as_ref().map_or("-".into(), |p| p.display().to_string())
            );
            Core::default()
        }
    };
    let saved_key = store.load_key().unwrap_or_else(|e| {
        error!(error = %e, "ignoring the saved key: {e}");
        None
    });
    let history = open_history(&store);
    let recorded = Recorded::from_history(&history);
    let client = (env.portal)(&config)?;
    // The socket is ours, so no other daemon writes in state_dir.
    for p in store.remove_stale_temp_files() {
        info!(path = %p.display(), "removed a temporary file left by a crash: {}", p.display());
    }
    let (status_tx, _) = watch::channel(Arc::new(Snapshot {
        doc: placeholder_doc(started),
        json: bytes::Bytes::new(),
    }));
    let (save_tx, save_rx) = watch::channel(Arc::new(core.clone()));
    let (warnings_change_tx, warnings_change_rx) = watch::channel(None);
    let token = CancellationToken::new();
    let fair_use = Arc::new(crate::fair::Limiter::new(
        crate::fair::Limits::with_per_uid(config.socket_connections_per_uid),
    ));
    let daemon = Arc::new(Daemon {
        host: crate::host::collect(),
        info: DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started_at: started,
        },
        state: Mutex::new(Runtime::new(
            core,
            config.license_key.clone(),
            saved_key,
            recorded,
        )),
        config: RwLock::new(Arc::new(config)),
        client: RwLock::new(client),
        portal_factory: env.portal,
        store,
        history,
        clock: env.clock,
        jitter: Mutex::new(env.jitter),
        systemd: env.systemd,
        status_tx,
        save_tx,
        warnings_change_tx,
        portal_lock: tokio::sync::Mutex::new(()),
        save_lock: tokio::sync::Mutex::new(()),
        manual_licence: tokio::sync::Mutex::new(None),
        manual_update: tokio::sync::Mutex::new(None),
        hwid_checked: Mutex::new(None),
        wake_licence: Notify::new(),
        wake_update: Notify::new(),
        counters: Default::default(),
        loops_alive: Default::default(),
        fair_use,
        shutdown: token.clone(),
    });
    {
        let mut st = lock(&daemon.state);
        daemon.adopt_configured_key(&mut st);
        let key = st.key().map(LicenseKey::masked);
        let key = key.as_deref().unwrap_or("none");
        info!(key, "licence key in force: {key}");
    }
    daemon.refresh_inputs();
    let cfg = daemon.config();
    daemon.product_version(&cfg);
    daemon.publish();
    let doc = &daemon.snapshot().doc;
    if doc.hardware_changed {
        // A clone or new hardware is met at start far more often than at run time.
        crate::logging::event::hardware_id_changed(doc.license.state, doc.update.state);
    }

    let tracker = TaskTracker::new();
    tracker.spawn(writer::state_writer(daemon.clone(), save_rx));
    tracker.spawn(socket::serve(listener, daemon.clone(), token.clone()));
    if daemon.systemd {
        systemd::ready(&status_line(&daemon.snapshot().doc));
    }
    info!(
        socket = %cfg.socket_path.display(),
        portal = %cfg.portal_url,
        "ready: socket {}, portal {}",
        cfg.socket_path.display(),
        cfg.portal_url
    );
    tracker.spawn(licence::licence_loop(daemon.clone()));
    tracker.spawn(updates::update_loop(daemon.clone()));
    tracker.spawn(warnings::warnings_timer(daemon.clone(), warnings_change_rx));
    tracker.spawn(warnings::metrics_textfile(daemon.clone()));
    if daemon.systemd {
        tracker.spawn(watchdog(daemon.clone()));
    }
    tracker.spawn(reload::reloader(
        daemon.clone(),
        env.reload,
        cfg.path.clone(),
    ));
    tracker.close();

    tokio::select! {
        () = shutdown => token.cancel(),
        () = token.cancelled() => {}
    }
    if daemon.systemd {
        systemd::stopping();
    }
    info!("stopping");
    if tokio::time::timeout(SHUTDOWN_BUDGET, tracker.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop in time");
    }
    // The writer stops at the cancellation without saving: this is the save
    // on the way out (of the core last published).
    if let Err(e) = daemon.save_now().await {
        crate::logging::event::state_not_saved(&e, None);
    }
    let stopped = Entry {
        at: daemon.now().whole_seconds(),
        event: Event::DaemonStopped {},
    };
    if let Err(e) = daemon.history.append(&[stopped]) {
        crate::logging::event::history_not_saved(&e.to_string());
    }
    Ok(())
}

/// Opens `state_dir/history.jsonl`; lines that cannot be read are skipped
/// and logged here, once.
fn open_history(store: &Store) -> History {
    let (history, read) = History::open(store.dir());
    match read {
        Ok(c) if c.skipped > 0 => warn!(
            path = %history.path().display(),
            skipped = c.skipped,
            "skipped {} unreadable line(s) of the history {} (first: line {}); a crash mid-write or a damaged disk",
            c.skipped,
            history.path().display(),
            c.first_skipped_line.unwrap_or(0)
        ),
        Ok(_) => {}
        Err(e) => error!(error = %e, "{e}; starting with an empty history in memory"),
    }
    history
}

/// Pings systemd's watchdog at half of `WATCHDOG_USEC` while the loops run.
async fn watchdog(d: Arc<Daemon>) {
    let Some(period) = systemd::watchdog_period() else {
        return;
    };
    async {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if d.loops_alive.load(Ordering::SeqCst) == super::LOOPS_ALL {
                        systemd::watchdog();
                    } else {
                        warn!("a loop has stopped; not pinging the watchdog");
                    }
                }
                _ = d.shutdown.cancelled() => break,
            }
        }
    }
    .instrument(info_span!("watchdog"))
    .await
}

/// SIGTERM and SIGINT cancel `shutdown`; SIGHUP notifies `reload`.
fn install_signals(shutdown: CancellationToken, reload: Arc<Notify>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { info!("SIGTERM"); shutdown.cancel(); }
                    _ = int.recv() => { info!("SIGINT"); shutdown.cancel(); }
                    _ = hup.recv() => reload.notify_one(),
                    _ = shutdown.cancelled() => break,
                }
            }
        }
        .instrument(info_span!("signals")),
    );
    Ok(())
}

/// The daemon's entry point: configuration, runtime, signals, socket. Exit 0
/// after a clean shutdown, 78 for a configuration error, 1 for anything else.
/// `passed` is the listening socket systemd passed (socket activation), if
/// any: served instead of binding `socket_path`, and never removed.
pub fn main(config_path: PathBuf, passed: Option<std::os::fd::OwnedFd>) -> ExitCode {
    super::abort_on_panic();
    logging::init();
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(crate::exit::CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime: {e}");
            return ExitCode::from(crate::exit::FAILED);
        }
    };
    rt.block_on(async move {
        let env = Env::production();
        let shutdown = CancellationToken::new();
        if let Err(e) = install_signals(shutdown.clone(), env.reload.clone()) {
            error!(error = %e, "cannot install signal handlers: {e}");
            return ExitCode::from(crate::exit::FAILED);
        }
        let activated = passed.is_some();
        let bound = match passed {
            Some(fd) => socket::activation::adopt(fd, &config),
            None => socket::bind(&config),
        };
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                error!("{}", StartError::from(e));
                return ExitCode::from(crate::exit::FAILED);
            }
        };
        let socket_path = config.socket_path.clone();
        let result = run(config, listener, shutdown.cancelled_owned(), env).await;
        // A socket the daemon bound is for this run only; a passed one is the
        // `.socket` unit's and keeps queueing clients until the next start.
        if !activated {
            let _ = std::fs::remove_file(&socket_path);
        }
        match result {
            Ok(()) => {
                info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::from(crate::exit::FAILED)
            }
        }
    })
}
