//! SIGHUP: the configuration loaded again, and the task that waits for it.

use super::shared::{Daemon, lock};
use super::status_line;
use crate::config::Config;
use crate::history::{Event, ReloadOutcome};
use crate::systemd;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::{Instrument, info, info_span, warn};

impl Daemon {
    /// SIGHUP: loads the configuration again; a bad one is logged and the old
    /// one kept; socket and state_dir changes wait for a restart.
    pub fn reload(&self, path: &std::path::Path) {
        if self.systemd {
            systemd::reloading();
        }
        let old = self.config();
        let rejected = |message: String| {
            crate::logging::event::config_rejected(&message);
            self.note_reload(Some(message));
        };
        match Config::load(path) {
            Err(e) => rejected(e.to_string()),
            Ok(mut new) => {
                if new.socket_path != old.socket_path
                    || new.socket_mode != old.socket_mode
                    || new.socket_group != old.socket_group
                    || new.socket_connections_per_uid != old.socket_connections_per_uid
                    || new.state_dir != old.state_dir
                {
                    warn!(
                        "socket_path, socket_mode, socket_group, socket_connections_per_uid and state_dir changes need a restart; keeping the running values until then"
                    );
                    new.socket_path = old.socket_path.clone();
                    new.socket_mode = old.socket_mode;
                    new.socket_group = old.socket_group.clone();
                    new.socket_connections_per_uid = old.socket_connections_per_uid;
                    new.state_dir = old.state_dir.clone();
                }
                match (self.portal_factory)(&new) {
                    Err(e) => rejected(e.to_string()),
                    Ok(client) => {
                        if let Ok(mut c) = self.client.write() {
                            *c = client;
                        }
                        let key = new.license_key.clone();
                        if let Ok(mut c) = self.config.write() {
                            *c = Arc::new(new);
                        }
                        {
                            let mut st = lock(&self.state);
                            st.configured_key = key;
                            self.adopt_configured_key(&mut st);
                        }
                        info!("configuration reloaded");
                        self.note_reload(None);
                    }
                }
            }
        }
        self.refresh_inputs();
        self.publish();
        self.wake_licence.notify_one();
        self.wake_update.notify_one();
        if self.systemd {
            systemd::ready(&status_line(&self.snapshot().doc));
        }
    }
}

impl Daemon {
    /// Queues a `config_reloaded` entry (`None`: applied) for the next
    /// publish.
    fn note_reload(&self, rejected: Option<String>) {
        let outcome = match rejected {
            None => ReloadOutcome::Applied,
            Some(_) => ReloadOutcome::Rejected,
        };
        lock(&self.state).pending.push(Event::ConfigReloaded {
            outcome,
            message: rejected,
        });
    }
}

/// Reloads the configuration when asked (SIGHUP).
pub(super) async fn reloader(d: Arc<Daemon>, reload: Arc<Notify>, path: PathBuf) {
    async {
        loop {
            tokio::select! {
                _ = reload.notified() => {
                    info!(path = %path.display(), "reloading the configuration from {}", path.display());
                    d.reload(&path);
                }
                _ = d.shutdown.cancelled() => break,
            }
        }
    }
    .instrument(info_span!("reload"))
    .await
}
