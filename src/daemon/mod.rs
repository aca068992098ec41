//! `wispanel-licensed`: the long-lived tasks around the no-I/O core.
//!
//! Tasks (each in its own tracing span): the licence loop, the update loop,
//! the state writer, the watchdog, the signal handler and the status socket.
//! They share one [`Daemon`]: the core's state sits behind a `std` mutex that
//! is never held across an `.await`; every portal request goes through one
//! async lock, so the loops and the socket's manual checks never press the
//! portal in parallel. After each change [`Daemon::publish`] rebuilds the
//! status document (served from memory by the socket) and hands the core to
//! the state writer.

mod tasks;

pub use tasks::ALL as LOOPS_ALL;

use crate::api::{DaemonInfo, StatusDocument, StatusInputs};
use crate::clock::ThreadJitter;
use crate::config::Config;
use crate::host::HostFacts;
use crate::portal::{PortalClient, RequestFacts, request_body};
use crate::store::{Loaded, Store};
use crate::{hwid, logging, socket, systemd};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use wispanel_core::classify::{Classified, Outcome};
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::{Core, Inputs};
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{Endpoint, ErrorKind, LicenseState, Reason, UpdateState};

/// A manual check within this time of the last one gets its result.
pub const MANUAL_REUSE: Duration = Duration::from_secs(10);

/// How old a hardware_id may be before a status request has it recomputed.
pub const HWID_FRESHNESS: Duration = Duration::from_secs(2);

/// SIGTERM to exit: the in-flight request is abandoned, the state is saved.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(4);

/// The status as served: the document and its JSON bytes.
#[derive(Debug)]
pub struct Snapshot {
    pub doc: StatusDocument,
    pub json: bytes::Bytes,
}

/// What the daemon was asked to do and could not.
#[derive(Debug)]
pub enum ActionError {
    /// No licence key in force (409 `CONFLICT`).
    NoKey,
    /// The portal gate is closed until then (429 `RATE_LIMITED`).
    Gate(Timestamp),
    /// The portal refused (422 with its code).
    Refused(Reason),
    /// No verdict (503 `PORTAL_UNREACHABLE`).
    Unreachable(String),
    /// The hardware_id cannot be computed (500 `INTERNAL_ERROR`).
    NoHardwareId(String),
}

/// Who asked for a portal request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    /// A loop, because the core said it is due.
    Scheduled,
    /// A client of the socket.
    Manual,
}

/// Mutable runtime state; guarded by [`Daemon::state`].
struct Runtime {
    core: Core,
    /// From the configuration (inline, key file or credential).
    configured_key: Option<LicenseKey>,
    /// Saved by `activate`; wins over the configured key.
    saved_key: Option<LicenseKey>,
    /// The hardware_id now, or why it cannot be computed.
    hwid: Result<String, String>,
    /// The last product version read (kept when `version_file` breaks).
    product_version: Option<String>,
    /// Licence and update state last announced.
    announced: Option<(LicenseState, UpdateState)>,
}

impl Runtime {
    fn key(&self) -> Option<&LicenseKey> {
        if let Some(k) = &self.saved_key {
            return Some(k);
        }
        let k = self.configured_key.as_ref()?;
        (self.core.licence.deactivated_key.as_deref() != Some(&k.fingerprint())).then_some(k)
    }

    fn inputs(&self) -> Inputs {
        Inputs {
            key_fingerprint: self.key().map(LicenseKey::fingerprint),
            hardware_id: self.hwid.clone().unwrap_or_default(),
        }
    }
}

/// Portal request counters for the metrics.
#[derive(Default)]
pub struct Counters {
    map: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Counters {
    pub fn add(&self, endpoint: Endpoint, outcome: &'static str) {
        if let Ok(mut m) = self.map.lock() {
            *m.entry((endpoint.as_str(), outcome)).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> Vec<((&'static str, &'static str), u64)> {
        self.map
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

/// The last manual checks, for sharing and the 10 s reuse.
#[derive(Default)]
struct Manual {
    licence: Option<tokio::time::Instant>,
    update: Option<tokio::time::Instant>,
}

/// Everything the tasks share.
pub struct Daemon {
    config: RwLock<Arc<Config>>,
    client: RwLock<PortalClient>,
    state: Mutex<Runtime>,
    store: Store,
    host: HostFacts,
    info: DaemonInfo,
    status_tx: watch::Sender<Arc<Snapshot>>,
    save_tx: watch::Sender<Arc<Core>>,
    /// One portal request at a time.
    portal_lock: tokio::sync::Mutex<()>,
    manual_licence: tokio::sync::Mutex<Manual>,
    manual_update: tokio::sync::Mutex<Manual>,
    /// When the hardware_id was last computed.
    hwid_checked: Mutex<Option<std::time::Instant>>,
    /// Wakes the licence loop (inputs changed, manual action).
    wake_licence: Notify,
    /// Wakes the update loop.
    wake_update: Notify,
    pub counters: Counters,
    /// Set while the loops run (`/v1/health`).
    pub loops_alive: std::sync::atomic::AtomicU8,
    pub shutdown: CancellationToken,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock must not take the daemon down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Daemon {
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn client(&self) -> PortalClient {
        self.client
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The status as served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.status_tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.status_tx.subscribe()
    }

    /// Whether a key is in force.
    pub fn has_key(&self) -> bool {
        lock(&self.state).key().is_some()
    }

    /// The gate, if closed now.
    pub fn gate(&self) -> Option<Timestamp> {
        lock(&self.state)
            .core
            .gate_closed_until(crate::clock::now())
    }

    /// Rebuilds the status, announces a state change (log, `STATUS=`), and
    /// hands the core to the state writer.
    pub fn publish(&self) {
        let now = crate::clock::now();
        let config = self.config();
        let (doc, core, change) = {
            let mut st = lock(&self.state);
            st.core.expire_gate(now);
            let inputs = st.inputs();
            let si = StatusInputs {
                daemon: &self.info,
                schedule: &config.schedule.core(),
                inputs: &inputs,
                masked_key: st.key().map(LicenseKey::masked),
                hardware_id: st.hwid.as_deref().ok(),
                product_version: st.product_version.clone(),
                warn_before_expiry: wispanel_core::warnings::DEFAULT_WARN_BEFORE_EXPIRY,
                state_not_saved_since: None,
                activation_in_doubt: false,
            };
            let doc = StatusDocument::build(&st.core, &si, now);
            let states = (doc.license.state, doc.update.state);
            let change = (st.announced != Some(states)).then(|| (st.announced, states));
            st.announced = Some(states);
            (doc, Arc::new(st.core.clone()), change)
        };
        if let Some((before, (lic, upd))) = change {
            let why = doc
                .license
                .reason
                .as_ref()
                .map(|r| format!("{}: {}", r.code, r.message))
                .or_else(|| doc.portal.last_error.as_ref().map(|e| e.message.clone()))
                .unwrap_or_else(|| "-".into());
            match before {
                Some((bl, _)) if bl != lic => {
                    info!(from = %bl, to = %lic, why = %why, "licence state changed from {bl} to {lic}")
                }
                Some((_, bu)) if bu != upd => {
                    info!(from = %bu, to = %upd, "update state changed from {bu} to {upd}")
                }
                None => info!(state = %lic, update = %upd, "licence state {lic}"),
                _ => {}
            }
            systemd::status(&status_line(&doc));
        }
        let json = serde_json::to_vec(&doc).unwrap_or_default();
        self.status_tx.send_replace(Arc::new(Snapshot {
            doc,
            json: bytes::Bytes::from(json),
        }));
        self.save_tx.send_if_modified(|old| {
            if **old == *core {
                false
            } else {
                *old = core;
                true
            }
        });
    }

    /// Reads the product version (re-read each time from `version_file`).
    fn product_version(&self, config: &Config) -> String {
        match config.read_product_version() {
            Ok(v) => {
                lock(&self.state).product_version = Some(v.clone());
                v
            }
            Err(e) => {
                warn!(error = %e, "cannot read the product version; using the last one read");
                lock(&self.state)
                    .product_version
                    .clone()
                    .unwrap_or_else(|| "0.0.0".into())
            }
        }
    }

    /// A configuration that names a new key replaces a key saved by
    /// `activate` (the newest decision of the administrator wins); the key
    /// in force is logged whenever it changes.
    fn adopt_configured_key(&self, st: &mut Runtime) {
        let before = st.key().map(LicenseKey::masked);
        let fp = st.configured_key.as_ref().map(LicenseKey::fingerprint);
        if st.core.configured_key_changed(fp) && st.saved_key.is_some() {
            info!("the configuration names a new key; it replaces the key saved by `activate`");
            st.saved_key = None;
            if let Err(e) = self.store.remove_key() {
                error!(error = %e, "cannot remove the saved key");
            }
        }
        let after = st.key().map(LicenseKey::masked);
        if before != after {
            info!(
                key = after.as_deref().unwrap_or("none"),
                "licence key in force"
            );
        }
    }

    /// Recomputes the hardware_id and applies it (and the key) to the core.
    /// Returns whether the hardware_id changed.
    fn refresh_inputs(&self) -> bool {
        if let Ok(mut t) = self.hwid_checked.lock() {
            *t = Some(std::time::Instant::now());
        }
        let config = self.config();
        let hw = hwid::compute_from_env(&config.hardware).map(|r| r.id);
        let mut st = lock(&self.state);
        match (&hw, &st.hwid) {
            (Err(e), Ok(_)) | (Err(e), Err(_))
                if st.hwid.as_ref().err() != Some(&e.to_string()) =>
            {
                error!(error = %e, "cannot compute the hardware_id; no licence request can be made")
            }
            (Ok(new), Ok(old)) if new != old => {
                warn!("the hardware_id changed; checking the licence at once")
            }
            _ => {}
        }
        let hw = hw.map_err(|e| e.to_string());
        let changed = st.hwid != hw;
        st.hwid = hw;
        let inputs = st.inputs();
        st.core.apply_inputs(&inputs);
        changed
    }

    /// Keeps the hardware_id in the status "computed now" (SPEC): when the
    /// last computation is older than [`HWID_FRESHNESS`], a status request
    /// recomputes it first (a few small files under `hardware.root`, read in
    /// microseconds, at most once per [`HWID_FRESHNESS`]); a change is
    /// published and checked at once.
    pub fn refresh_hardware_if_stale(&self) {
        let stale = self
            .hwid_checked
            .lock()
            .map(|t| t.is_none_or(|t| t.elapsed() >= HWID_FRESHNESS))
            .unwrap_or(false);
        if stale && self.refresh_inputs() {
            self.publish();
            self.wake_licence.notify_one();
        }
    }

    /// Makes one licence request (activate or validate, as the core says).
    /// A `Scheduled` request is made only if it is still due once the portal
    /// lock is held (a manual check may have just made it). Returns whether a
    /// request was made.
    async fn licence_request(&self, why: Why) -> bool {
        let _portal = self.portal_lock.lock().await;
        self.refresh_inputs();
        let config = self.config();
        let version = self.product_version(&config);
        let now = crate::clock::now();
        let (endpoint, body, inputs) = {
            let st = lock(&self.state);
            let inputs = st.inputs();
            let (Some(key), Ok(hw)) = (st.key(), st.hwid.as_ref()) else {
                return false;
            };
            if st.core.gate_closed_until(now).is_some() {
                return false;
            }
            let Some(due) = st.core.due(&inputs, now) else {
                return false;
            };
            if why == Why::Scheduled && due.at > now {
                return false;
            }
            let body = self.body(due.endpoint, key, hw, &version, &config);
            (due.endpoint, body, inputs)
        };
        let Some(c) = self.call(endpoint, &body).await else {
            return false;
        };
        {
            let mut st = lock(&self.state);
            st.core.record_licence(
                endpoint,
                &c,
                &inputs,
                &config.schedule.core(),
                crate::clock::now(),
                &mut ThreadJitter,
            );
            // The key or hardware may have changed while the request ran.
            let now_inputs = st.inputs();
            st.core.apply_inputs(&now_inputs);
        }
        self.publish();
        self.wake_update.notify_one();
        true
    }

    /// The body of a request to `endpoint` from this host.
    fn body(
        &self,
        endpoint: Endpoint,
        key: &LicenseKey,
        hardware_id: &str,
        version: &str,
        config: &Config,
    ) -> serde_json::Value {
        request_body(
            endpoint,
            &RequestFacts {
                key,
                hardware_id,
                hostname: &self.host.hostname,
                product_version: version,
                channel: &config.channel,
                version: None,
            },
        )
    }

    /// Sends one request unless shutdown comes first; logs and counts it.
    async fn call(&self, endpoint: Endpoint, body: &serde_json::Value) -> Option<Classified> {
        let client = self.client();
        let c = tokio::select! {
            c = client.call(endpoint, body) => c,
            _ = self.shutdown.cancelled() => {
                info!(%endpoint, "shutting down: abandoning the portal request");
                return None;
            }
        };
        self.counters.add(endpoint, c.outcome.metric_label());
        match &c.outcome {
            Outcome::Failed(e) => warn!(
                %endpoint,
                kind = e.kind.as_str(),
                http_status = e.http_status,
                code = e.code.as_deref(),
                "portal request failed: {}",
                e.message
            ),
            Outcome::Refused { reason, .. } | Outcome::UpdateRefused { reason, .. } => {
                info!(%endpoint, code = %reason.code, "portal refused: {}", reason.message)
            }
            _ => tracing::debug!(%endpoint, "portal answered"),
        }
        Some(c)
    }

    /// Checks for an update now (the update loop and manual checks); a
    /// `Scheduled` check only if it is still due once the portal lock is held.
    async fn update_request(&self, why: Why) -> bool {
        let _portal = self.portal_lock.lock().await;
        let config = self.config();
        let version = self.product_version(&config);
        let now = crate::clock::now();
        let body = {
            let st = lock(&self.state);
            let (Some(key), Ok(hw)) = (st.key(), st.hwid.as_ref()) else {
                return false;
            };
            if st.core.gate_closed_until(now).is_some() {
                return false;
            }
            if why == Why::Scheduled && st.core.update_due(now).is_none_or(|t| t > now) {
                return false;
            }
            self.body(Endpoint::CheckUpdate, key, hw, &version, &config)
        };
        let Some(c) = self.call(Endpoint::CheckUpdate, &body).await else {
            return false;
        };
        lock(&self.state).core.record_update(
            &c,
            &version,
            &config.schedule.core(),
            crate::clock::now(),
            &mut ThreadJitter,
        );
        self.publish();
        self.wake_licence.notify_one();
        true
    }

    fn gate_refusal(&self, until: Timestamp) -> ActionError {
        lock(&self.state)
            .core
            .note_gate_refusal(crate::clock::now());
        self.publish();
        ActionError::Gate(until)
    }

    /// `POST /v1/check`: validates now; concurrent calls share one request and
    /// calls within 10 s of the last manual check get its result.
    pub async fn manual_check(&self) -> Result<Arc<Snapshot>, ActionError> {
        if !self.has_key() {
            return Err(ActionError::NoKey);
        }
        if let Some(until) = self.gate() {
            return Err(self.gate_refusal(until));
        }
        let mut m = self.manual_licence.lock().await;
        if m.licence.is_some_and(|t| t.elapsed() < MANUAL_REUSE) {
            return Ok(self.snapshot());
        }
        if let Some(until) = self.gate() {
            return Err(self.gate_refusal(until));
        }
        lock(&self.state).core.check_now();
        let made = self.licence_request(Why::Manual).await;
        if made {
            m.licence = Some(tokio::time::Instant::now());
        }
        // The licence loop sleeps until the time it computed before this
        // request; the answer may have moved it (a retry after a failure).
        self.wake_licence.notify_one();
        Ok(self.snapshot())
    }

    /// `POST /v1/update/check`, with the same sharing and gate rules.
    pub async fn manual_update_check(&self) -> Result<Arc<Snapshot>, ActionError> {
        if !self.has_key() {
            return Err(ActionError::NoKey);
        }
        if let Some(until) = self.gate() {
            return Err(self.gate_refusal(until));
        }
        let mut m = self.manual_update.lock().await;
        if m.update.is_some_and(|t| t.elapsed() < MANUAL_REUSE) {
            return Ok(self.snapshot());
        }
        if let Some(until) = self.gate() {
            return Err(self.gate_refusal(until));
        }
        if self.update_request(Why::Manual).await {
            m.update = Some(tokio::time::Instant::now());
        }
        // As for manual_check: let the update loop see its new schedule.
        self.wake_update.notify_one();
        Ok(self.snapshot())
    }

    /// `POST /v1/activate`: activates `key` on this host; on success the key
    /// is saved (mode 0600) and put in force.
    pub async fn activate(&self, key: LicenseKey) -> Result<Arc<Snapshot>, ActionError> {
        if let Some(until) = self.gate() {
            return Err(self.gate_refusal(until));
        }
        let _portal = self.portal_lock.lock().await;
        self.refresh_inputs();
        let config = self.config();
        let version = self.product_version(&config);
        let hw = lock(&self.state)
            .hwid
            .clone()
            .map_err(ActionError::NoHardwareId)?;
        let body = self.body(Endpoint::Activate, &key, &hw, &version, &config);
        let c = self
            .call(Endpoint::Activate, &body)
            .await
            .ok_or_else(|| ActionError::Unreachable("the daemon is shutting down".into()))?;
        let candidate = Inputs {
            key_fingerprint: Some(key.fingerprint()),
            hardware_id: hw,
        };
        let result = {
            let mut st = lock(&self.state);
            st.core.record_candidate_activation(
                &c,
                &candidate,
                &config.schedule.core(),
                crate::clock::now(),
                &mut ThreadJitter,
            );
            match &c.outcome {
                Outcome::Valid(_) => {
                    st.saved_key = Some(key.clone());
                    let inputs = st.inputs();
                    st.core.apply_inputs(&inputs);
                    Ok(())
                }
                Outcome::Refused { reason, .. } => Err(ActionError::Refused(reason.clone())),
                Outcome::Failed(e) if e.kind == ErrorKind::RateLimited => {
                    match st.core.gate_closed_until(crate::clock::now()) {
                        Some(until) => Err(ActionError::Gate(until)),
                        None => Err(ActionError::Unreachable(e.message.clone())),
                    }
                }
                Outcome::Failed(e) => Err(ActionError::Unreachable(e.message.clone())),
                _ => Err(ActionError::Unreachable("unexpected answer".into())),
            }
        };
        if result.is_ok() {
            info!(key = %key, "licence activated on this host");
            if let Err(e) = self.store.save_key(&key) {
                error!(error = %e, "cannot save the activated key; it is in force until the daemon stops");
            }
        }
        self.publish();
        self.wake_licence.notify_one();
        self.wake_update.notify_one();
        result.map(|()| self.snapshot())
    }

    /// `POST /v1/deactivate`: releases this host's activation.
    pub async fn deactivate(&self) -> Result<Arc<Snapshot>, ActionError> {
        if let Some(until) = self.gate() {
            return Err(self.gate_refusal(until));
        }
        let _portal = self.portal_lock.lock().await;
        self.refresh_inputs();
        let config = self.config();
        let (key, hw) = {
            let st = lock(&self.state);
            let key = st.key().cloned().ok_or(ActionError::NoKey)?;
            (key, st.hwid.clone().map_err(ActionError::NoHardwareId)?)
        };
        let version = self.product_version(&config);
        let body = self.body(Endpoint::Deactivate, &key, &hw, &version, &config);
        let c = self
            .call(Endpoint::Deactivate, &body)
            .await
            .ok_or_else(|| ActionError::Unreachable("the daemon is shutting down".into()))?;
        let result = {
            let mut st = lock(&self.state);
            let released = st.configured_key.as_ref().map(LicenseKey::fingerprint);
            st.core.record_deactivation(
                &c,
                released,
                &config.schedule.core(),
                crate::clock::now(),
                &mut ThreadJitter,
            );
            match &c.outcome {
                Outcome::Deactivated => {
                    st.saved_key = None;
                    Ok(())
                }
                Outcome::Refused { reason, .. } => Err(ActionError::Refused(reason.clone())),
                Outcome::Failed(e) => Err(ActionError::Unreachable(e.message.clone())),
                _ => Err(ActionError::Unreachable("unexpected answer".into())),
            }
        };
        if result.is_ok() {
            info!(key = %key, "licence deactivated on this host");
            if let Err(e) = self.store.remove_key() {
                error!(error = %e, "cannot remove the saved key");
            }
        }
        self.publish();
        self.wake_licence.notify_one();
        self.wake_update.notify_one();
        result.map(|()| self.snapshot())
    }

    /// SIGHUP: loads the configuration again; a bad one is logged and the old
    /// one kept; socket and state_dir changes wait for a restart.
    pub fn reload(&self, path: &std::path::Path) {
        systemd::reloading();
        let old = self.config();
        match Config::load(path) {
            Err(e) => {
                error!(error = %e, "configuration reload failed; keeping the running configuration")
            }
            Ok(mut new) => {
                if new.socket_path != old.socket_path
                    || new.socket_mode != old.socket_mode
                    || new.socket_group != old.socket_group
                    || new.state_dir != old.state_dir
                {
                    warn!(
                        "socket_path, socket_mode, socket_group and state_dir changes need a restart; keeping the running values until then"
                    );
                    new.socket_path = old.socket_path.clone();
                    new.socket_mode = old.socket_mode;
                    new.socket_group = old.socket_group.clone();
                    new.state_dir = old.state_dir.clone();
                }
                match PortalClient::new(&new) {
                    Err(e) => {
                        error!(error = %e, "configuration reload failed; keeping the running configuration")
                    }
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
                    }
                }
            }
        }
        self.refresh_inputs();
        self.publish();
        self.wake_licence.notify_one();
        self.wake_update.notify_one();
        systemd::ready(&status_line(&self.snapshot().doc));
    }
}

/// The one-line `STATUS=` for systemd.
pub fn status_line(doc: &StatusDocument) -> String {
    let l = &doc.license;
    let mut s = format!("licence {}", l.state);
    if let Some(t) = &l.tier {
        s.push_str(&format!(" ({t})"));
    }
    match l.state {
        LicenseState::Grace => {
            if let Some(g) = l.grace_until {
                s.push_str(&format!(", portal unreachable, grace until {g}"));
            }
        }
        LicenseState::Lapsed => s.push_str(", portal unreachable past the grace"),
        _ => {
            if let Some(r) = &l.reason {
                s.push_str(&format!(": {}", r.code));
            }
        }
    }
    match doc.update.state {
        UpdateState::Available => {
            if let Some(v) = &doc.update.latest_version {
                s.push_str(&format!("; update {v} available"));
            }
        }
        UpdateState::Unknown | UpdateState::UpToDate => {}
        other => s.push_str(&format!("; updates: {other}")),
    }
    s
}

/// How the caller controls a running daemon (signals, or a test).
#[derive(Clone)]
pub struct Control {
    pub shutdown: CancellationToken,
    pub reload: Arc<Notify>,
}

/// Starts everything and runs until `control.shutdown`; saves state on the way out.
pub async fn run(config: Config, control: Control) -> Result<(), StartError> {
    let started = crate::clock::now();
    let store = Store::open(&config.state_dir)?;
    let core = match store.load(started) {
        Loaded::Fresh => {
            info!(path = %store.state_path().display(), "no saved state: first start");
            Core::default()
        }
        Loaded::Existing(core) => *core,
        Loaded::Corrupt { problem, moved_to } => {
            error!(
                path = %store.state_path().display(),
                moved_to = moved_to.as_ref().map(|p| p.display().to_string()),
                "the saved state cannot be read ({problem}); moved aside, starting afresh"
            );
            Core::default()
        }
    };
    let saved_key = store.load_key().unwrap_or_else(|e| {
        error!(error = %e, "ignoring the saved key");
        None
    });
    let client = PortalClient::new(&config)?;
    let listener = socket::bind(&config)?;
    // The socket is ours, so no other daemon writes in state_dir.
    for p in store.remove_stale_temp_files() {
        info!(path = %p.display(), "removed a temporary file left by a crash");
    }
    let (status_tx, _) = watch::channel(Arc::new(Snapshot {
        doc: placeholder_doc(started),
        json: bytes::Bytes::new(),
    }));
    let (save_tx, save_rx) = watch::channel(Arc::new(core.clone()));
    let daemon = Arc::new(Daemon {
        host: crate::host::collect(),
        info: DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started_at: started,
        },
        state: Mutex::new(Runtime {
            core,
            configured_key: config.license_key.clone(),
            saved_key,
            hwid: Err(String::new()),
            product_version: None,
            announced: None,
        }),
        config: RwLock::new(Arc::new(config)),
        client: RwLock::new(client),
        store,
        status_tx,
        save_tx,
        portal_lock: tokio::sync::Mutex::new(()),
        manual_licence: tokio::sync::Mutex::new(Manual::default()),
        manual_update: tokio::sync::Mutex::new(Manual::default()),
        hwid_checked: Mutex::new(None),
        wake_licence: Notify::new(),
        wake_update: Notify::new(),
        counters: Counters::default(),
        loops_alive: std::sync::atomic::AtomicU8::new(0),
        shutdown: control.shutdown.clone(),
    });
    {
        let mut st = lock(&daemon.state);
        daemon.adopt_configured_key(&mut st);
        info!(
            key = st
                .key()
                .map(LicenseKey::masked)
                .as_deref()
                .unwrap_or("none"),
            "licence key in force"
        );
    }
    daemon.refresh_inputs();
    let cfg = daemon.config();
    daemon.product_version(&cfg);
    daemon.publish();

    let tracker = TaskTracker::new();
    tracker.spawn(tasks::state_writer(daemon.clone(), save_rx));
    tracker.spawn(socket::serve(
        listener,
        daemon.clone(),
        control.shutdown.clone(),
    ));
    systemd::ready(&status_line(&daemon.snapshot().doc));
    info!(
        socket = %cfg.socket_path.display(),
        portal = %cfg.portal_url,
        "ready"
    );
    tracker.spawn(tasks::licence_loop(daemon.clone()));
    tracker.spawn(tasks::update_loop(daemon.clone()));
    tracker.spawn(tasks::watchdog(daemon.clone()));
    tracker.spawn(tasks::reloader(
        daemon.clone(),
        control.reload.clone(),
        cfg.path.clone(),
    ));
    tracker.close();

    control.shutdown.cancelled().await;
    systemd::stopping();
    info!("stopping");
    if tokio::time::timeout(SHUTDOWN_BUDGET, tracker.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop in time");
    }
    // The writer saved on its way out; save once more in case it could not.
    let core = lock(&daemon.state).core.clone();
    if let Err(e) = daemon.store.save(&core, crate::clock::now()) {
        error!(error = %e, "cannot save the state on shutdown");
    }
    let _ = std::fs::remove_file(&daemon.config().socket_path);
    Ok(())
}

fn placeholder_doc(started: Timestamp) -> StatusDocument {
    use crate::api::*;
    StatusDocument {
        schema_version: SCHEMA_VERSION,
        daemon: DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started_at: started,
        },
        hardware_id: None,
        hardware_changed: false,
        license: LicenseView {
            state: LicenseState::Unknown,
            licensed: false,
            key: None,
            tier: None,
            expires_at: None,
            valid_until: None,
            limits: None,
            reason: None,
            checked_at: None,
            grace_until: None,
        },
        update: UpdateView {
            state: UpdateState::Unknown,
            current_version: None,
            latest_version: None,
            changelog: None,
            checked_at: None,
        },
        portal: PortalView {
            last_attempt_at: None,
            last_success_at: None,
            last_error: None,
            consecutive_failures: 0,
            next_validate_at: None,
            next_update_check_at: None,
            rate_limited_until: None,
            clock_skew_seconds: None,
        },
        warnings: Vec::new(),
    }
}

/// The daemon's entry point: configuration, runtime, signals. Exit 0 after a
/// clean shutdown, 78 for a configuration error, 1 for anything else.
pub fn main(config_path: PathBuf) -> ExitCode {
    logging::init();
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(78);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let control = Control {
            shutdown: CancellationToken::new(),
            reload: Arc::new(Notify::new()),
        };
        if let Err(e) = tasks::install_signals(control.clone()) {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::from(1);
        }
        match run(config, control).await {
            Ok(()) => {
                info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::from(1)
            }
        }
    })
}
