//! The daemon's shared state ([`Daemon`]): the core and what the daemon
//! knows beside it (keys, hardware_id, product version), and how a change is
//! published: the status document rebuilt once, announced (log, `STATUS=`)
//! and handed to the state writer.

use super::{HWID_FRESHNESS, LOOPS_ALL, Portal, PortalFactory};
use crate::api::{Announced, DaemonInfo, StatusDocument, StatusInputs};
use crate::clock::Clock;
use crate::config::Config;
use crate::history::{Entry, Event, History};
use crate::host::HostFacts;
use crate::key_in_force::{InForce, KeyFacts, key_in_force};
use crate::portal::{RequestFacts, request_body};
use crate::socket::Snapshot;
use crate::store::Store;
use crate::{hwid, logging, systemd};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use wispanel_core::Endpoint;
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::{Core, Inputs};
use wispanel_core::schedule::Jitter;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::warnings::{self, Warning};
use wispanel_core::{LicenseState, UpdateState};

/// Mutable runtime state; guarded by [`Daemon::state`].
pub(super) struct Runtime {
    pub(super) core: Core,
    /// From the configuration (inline, key file or credential).
    pub(super) configured_key: Option<LicenseKey>,
    /// Saved by `activate`; wins over the configured key.
    pub(super) saved_key: Option<LicenseKey>,
    /// The hardware_id now, or why it cannot be computed.
    pub(super) hwid: Result<String, String>,
    /// The last product version read (kept when `version_file` breaks).
    pub(super) product_version: Option<String>,
    /// Licence state, update state and warnings last announced.
    pub(super) announced: Option<Announced>,
    /// When the current run of failed saves of `state.json` began (the
    /// warning `state_not_saved`); `None` once a save works.
    pub(super) state_not_saved_since: Option<Timestamp>,
    /// When the current run of failed appends to the history began (the
    /// same warning); `None` once an append works.
    pub(super) history_not_saved_since: Option<Timestamp>,
    /// Events to write with the next `publish`, before it announces
    /// anything (an activation's outcome, a reload, the start).
    pub(super) pending: Vec<Event>,
    /// What the history last recorded, to write an entry on each change.
    pub(super) recorded: Recorded,
    /// The key in force and the inputs it makes with the hardware_id, as
    /// [`Runtime::settle`] last derived them from `configured_key`,
    /// `saved_key`, `hwid` and the core's key facts. Every change of those
    /// calls `settle`, so the rule runs once per change, not at each of the
    /// many reads of a cycle (debug builds check each read against the rule).
    settled: Settled,
}

/// What [`Runtime::settle`] derives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Settled {
    key: Option<LicenseKey>,
    inputs: Inputs,
}

/// The licence state, update state and hardware change the history holds
/// last (read from the file at start, then kept by `publish`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Recorded {
    pub(super) license: LicenseState,
    pub(super) update: UpdateState,
    /// The (from, to) of the hardware change in force, if one is.
    pub(super) hardware: Option<(String, String)>,
}

impl Recorded {
    /// From the history's newest entries; a history without them starts
    /// from `unknown` (the state before any verdict).
    pub(super) fn from_history(h: &History) -> Recorded {
        fn last<T>(entries: &[Entry], pick: impl Fn(&Event) -> Option<T>) -> Option<T> {
            entries.iter().rev().find_map(|e| pick(&e.event))
        }
        // One read of the file for the three.
        let entries = h.entries();
        Recorded {
            license: last(&entries, |e| match e {
                Event::LicenseState { to, .. } => Some(*to),
                _ => None,
            })
            .unwrap_or(LicenseState::Unknown),
            update: last(&entries, |e| match e {
                Event::UpdateState { to, .. } => Some(*to),
                _ => None,
            })
            .unwrap_or(UpdateState::Unknown),
            hardware: last(&entries, |e| match e {
                Event::HardwareChanged { from, to } => Some((from.clone(), to.clone())),
                _ => None,
            }),
        }
    }
}

impl Runtime {
    /// The runtime state at start, settled.
    pub(super) fn new(
        core: Core,
        configured_key: Option<LicenseKey>,
        saved_key: Option<LicenseKey>,
        recorded: Recorded,
    ) -> Runtime {
        let mut st = Runtime {
            core,
            configured_key,
            saved_key,
            hwid: Err(String::new()),
            product_version: None,
            announced: None,
            state_not_saved_since: None,
            history_not_saved_since: None,
            // Written by the first publish, before the socket serves.
            pending: vec![Event::DaemonStarted {
                version: env!("CARGO_PKG_VERSION").into(),
            }],
            recorded,
            settled: Settled {
                key: None,
                inputs: Inputs {
                    key_fingerprint: None,
                    hardware_id: String::new(),
                },
            },
        };
        st.settle();
        st
    }

    /// The key in force, by the one rule ([`crate::key_in_force`]).
    fn key_in_force(&self) -> InForce<'_> {
        key_in_force(&KeyFacts::new(
            self.configured_key.as_ref(),
            self.saved_key.as_ref(),
            Some(&self.core),
        ))
    }

    /// The rule's answer and the inputs, from the facts now.
    fn derive(&self) -> Settled {
        let key = self.key_in_force().key().cloned();
        Settled {
            inputs: Inputs {
                key_fingerprint: key.as_ref().map(LicenseKey::fingerprint),
                hardware_id: self.hwid.clone().unwrap_or_default(),
            },
            key,
        }
    }

    /// Derives the key in force and the inputs again: called after every
    /// change of a fact they depend on (a key configured, saved or removed,
    /// the hardware_id, an activation or deactivation recorded in the core).
    pub(super) fn settle(&mut self) {
        self.settled = self.derive();
    }

    /// Debug builds: a read that finds the derived values stale means a
    /// change forgot [`Runtime::settle`].
    fn check_settled(&self) {
        #[cfg(debug_assertions)]
        {
            let now = self.derive();
            assert!(
                self.settled == now,
                "the key in force is stale: a change of its facts did not settle ({:?} != {:?})",
                self.settled.inputs,
                now.inputs
            );
        }
    }

    pub(super) fn key(&self) -> Option<&LicenseKey> {
        self.check_settled();
        self.settled.key.as_ref()
    }

    /// Queues a `hardware_changed` entry when the hardware_id now differs
    /// from the one of the last verdict and the history does not hold this
    /// change yet: one entry per change, not one per start while it differs.
    pub(super) fn note_hardware(&mut self) {
        let hardware = match (&self.core.licence.verdict_binding, &self.hwid) {
            (Some(b), Ok(id)) if b.hardware_id != *id => Some((b.hardware_id.clone(), id.clone())),
            _ => None,
        };
        if hardware != self.recorded.hardware {
            if let Some((from, to)) = &hardware {
                self.pending.push(Event::HardwareChanged {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
            self.recorded.hardware = hardware;
        }
    }

    pub(super) fn inputs(&self) -> Inputs {
        self.check_settled();
        self.settled.inputs.clone()
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

/// Everything the tasks share.
pub struct Daemon {
    pub(super) config: RwLock<Arc<Config>>,
    /// Rebuilt by a reload.
    pub(super) client: RwLock<Arc<dyn Portal>>,
    /// Builds `client` from a configuration.
    pub(super) portal_factory: PortalFactory,
    pub(super) state: Mutex<Runtime>,
    pub(super) store: Store,
    /// `state_dir/history.jsonl` (in memory only the entries whose append
    /// failed).
    pub(super) history: History,
    pub(super) host: HostFacts,
    pub(super) info: DaemonInfo,
    /// The daemon's wall clock; nothing in the daemon reads another.
    pub(super) clock: Arc<dyn Clock>,
    /// The randomness of splay and back-off.
    pub(super) jitter: Mutex<Box<dyn Jitter + Send>>,
    /// Whether to talk to systemd (`READY=1`, `STATUS=`, the watchdog).
    pub(super) systemd: bool,
    pub(super) status_tx: watch::Sender<Arc<Snapshot>>,
    /// The core last published: what the state writer saves (its one copy
    /// per change, shared by the writer and `save_now`).
    pub(super) save_tx: watch::Sender<Arc<Core>>,
    /// When the warnings next change by themselves (set by `publish`, slept
    /// on by the warnings timer).
    pub(super) warnings_change_tx: watch::Sender<Option<Timestamp>>,
    /// One portal request at a time.
    pub(super) portal_lock: tokio::sync::Mutex<()>,
    /// One save of `state.json` at a time, each of the core last published
    /// (`Daemon::save_now`); the one lock of a save (`Store` has none).
    pub(super) save_lock: tokio::sync::Mutex<()>,
    /// When a manual licence check last made a request (for the 10 s reuse).
    pub(super) manual_licence: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// When a manual update check last made a request.
    pub(super) manual_update: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// When the hardware_id was last computed.
    pub(super) hwid_checked: Mutex<Option<tokio::time::Instant>>,
    /// Wakes the licence loop (inputs changed, manual action).
    pub(super) wake_licence: Notify,
    /// Wakes the update loop.
    pub(super) wake_update: Notify,
    pub counters: Counters,
    /// Set while the loops run (`/v1/health`).
    pub(super) loops_alive: AtomicU8,
    /// The socket's fair-use books (limits from the configuration at start:
    /// `socket_*` keys need a restart).
    pub(super) fair_use: Arc<crate::fair::Limiter>,
    pub shutdown: CancellationToken,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

    pub(super) fn client(&self) -> Arc<dyn Portal> {
        self.client
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The daemon's "now".
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The daemon's "now", with a reading of its clocks taken into `core`
    /// (a step of the wall clock moves the plan and the deadlines read in
    /// the portal's clock, see [`wispanel_core::portal_time`]). Every `now`
    /// an answer is recorded at comes from here, under the state lock, so
    /// that a step is never counted after the answer it preceded.
    pub(super) fn observe(&self, core: &mut Core) -> Timestamp {
        self.read_clocks(core).0
    }

    /// [`Daemon::observe`], and the step of the wall clock it noticed (ms,
    /// 0: none), which it logs.
    fn read_clocks(&self, core: &mut Core) -> (Timestamp, i64) {
        let (now, reading) = self.clock.reading();
        let step_ms = reading.map_or(0, |r| core.observe_clock(r));
        if step_ms != 0 {
            let way = if step_ms > 0 { "forward" } else { "back" };
            let secs = wispanel_core::portal_time::round_secs(step_ms.abs());
            warn!(
                clock_step_s = wispanel_core::portal_time::round_secs(step_ms),
                "the wall clock was set {way} by {secs} s (against CLOCK_BOOTTIME); the grace, the schedule and the gate follow the time elapsed until the portal answers again"
            );
        }
        (now, step_ms)
    }

    /// Takes a reading of the clocks when a loop wakes or a status is
    /// asked for; after a step of the wall clock the status is published
    /// again and the loops, whose times moved, woken.
    pub(super) fn notice_clock_step(&self) {
        let (_, step_ms) = self.read_clocks(&mut lock(&self.state).core);
        if step_ms != 0 {
            self.publish();
            self.wake_licence.notify_one();
            self.wake_update.notify_one();
        }
    }

    /// The jitter, for one call into the core.
    pub(super) fn jitter(&self) -> MutexGuard<'_, Box<dyn Jitter + Send>> {
        lock(&self.jitter)
    }

    /// Both loops run and no shutdown has begun.
    pub fn healthy(&self) -> bool {
        self.loops_alive.load(Ordering::SeqCst) == LOOPS_ALL && !self.shutdown.is_cancelled()
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
        lock(&self.state).core.gate_closed_until(self.now())
    }

    /// Rebuilds the status, writes what changed to the history (flushed to
    /// disk before anything is announced), announces a state change (log,
    /// `STATUS=`, the socket's watch), and hands the core to the state
    /// writer.
    ///
    /// The history's fsync runs here, on the caller's thread: it happens
    /// only when an entry is due (a change of state, an action, a reload),
    /// never for a status request, and SPEC wants it done before the
    /// announcement.
    pub fn publish(&self) {
        let now = self.observe(&mut lock(&self.state).core);
        let config = self.config();
        let proxy = self.client().proxy_shown();
        let build = |st: &Runtime| {
            let inputs = st.inputs();
            let si = StatusInputs {
                daemon: &self.info,
                schedule: &config.schedule.core,
                inputs: &inputs,
                masked_key: st.key().map(LicenseKey::masked),
                hardware_id: st.hwid.as_deref().ok(),
                product_version: st.product_version.clone(),
                proxy: proxy.clone(),
                warn_before_expiry: config.warn_before_expiry,
                state_not_saved_since: earliest(
                    st.state_not_saved_since,
                    st.history_not_saved_since,
                ),
            };
            let (doc, facts) = StatusDocument::build(&st.core, &si, now);
            let next_change = warnings::next_change(&facts, now);
            (doc, next_change)
        };
        let (mut doc, core, mut next_change, entries) = {
            let mut st = lock(&self.state);
            st.core.expire_gate(now);
            let (doc, next_change) = build(&st);
            let entries = history_entries(&mut st, &doc, now);
            (doc, Arc::new(st.core.clone()), next_change, entries)
        };
        if !entries.is_empty() {
            let written = self.history.append(&entries);
            if let Err(e) = &written {
                logging::event::history_not_saved(&e.to_string());
            }
            let mut st = lock(&self.state);
            let before = st.history_not_saved_since;
            st.history_not_saved_since = match written {
                Ok(()) => None,
                Err(_) => before.or(Some(now)),
            };
            if st.history_not_saved_since != before {
                (doc, next_change) = build(&st);
            }
        }
        let before = lock(&self.state).announced.replace(doc.announced());
        self.warnings_change_tx.send_if_modified(|old| {
            let changed = *old != next_change;
            *old = next_change;
            changed
        });
        log_warning_changes(
            before.as_ref().map_or(&[], |b| &b.warnings),
            &doc.warnings,
            doc.update.state,
        );
        let states = (doc.license.state, doc.update.state);
        let before_states = before.map(|b| (b.license, b.update));
        let change = (before_states != Some(states)).then_some((before_states, states));
        if let Some((before, (lic, upd))) = change {
            let why = doc
                .license
                .reason
                .as_ref()
                .map(|r| format!("{}: {}", r.code, r.message))
                .or_else(|| doc.portal.last_error.as_ref().map(|e| e.message.clone()))
                .unwrap_or_else(|| "-".into());
            let code = doc.license.reason.as_ref().map(|r| r.code.as_str());
            let kind = doc.portal.last_error.as_ref().map(|e| e.kind.as_str());
            match before {
                Some((bl, _)) if bl != lic => {
                    logging::event::licence_state_changed(bl, lic, upd, code, kind, &why)
                }
                Some((_, bu)) if bu != upd => logging::event::update_state_changed(bu, upd, lic),
                None => logging::event::licence_state_at_start(lic, upd),
                _ => {}
            }
            if self.systemd {
                systemd::status(&super::status_line(&doc));
            }
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
    pub(super) fn product_version(&self, config: &Config) -> String {
        match config.read_product_version() {
            Ok(v) => {
                lock(&self.state).product_version = Some(v.clone());
                v
            }
            Err(e) => {
                warn!(error = %e, "cannot read the product version ({e}); using the last one read");
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
    pub(super) fn adopt_configured_key(&self, st: &mut Runtime) {
        // The key in force before the change (the caller may have set a new
        // `configured_key` already).
        let before = st.settled.key.as_ref().map(LicenseKey::masked);
        let fp = st.configured_key.as_ref().map(LicenseKey::fingerprint);
        let replaced = st.key_in_force().saved_replaced;
        st.core.configured_key_changed(fp);
        if replaced {
            info!("the configuration names a new key; it replaces the key saved by `activate`");
            st.saved_key = None;
            if let Err(e) = self.store.remove_key() {
                error!(error = %e, "cannot remove the saved key: {e}");
            }
        }
        st.settle();
        let after = st.key().map(LicenseKey::masked);
        if before != after {
            let key = after.as_deref().unwrap_or("none");
            info!(key, "licence key in force: {key}");
        }
    }

    /// Recomputes the hardware_id and applies it (and the key) to the core.
    /// Returns whether the hardware_id changed.
    pub(super) fn refresh_inputs(&self) -> bool {
        if let Ok(mut t) = self.hwid_checked.lock() {
            *t = Some(tokio::time::Instant::now());
        }
        let config = self.config();
        let hw = hwid::compute_from_env(&config.hardware).map(|r| r.id);
        let mut st = lock(&self.state);
        match (&hw, &st.hwid) {
            (Err(e), Ok(_)) | (Err(e), Err(_))
                if st.hwid.as_ref().err() != Some(&e.to_string()) =>
            {
                error!(error = %e, "cannot compute the hardware_id; no licence request can be made: {e}")
            }
            (Ok(new), Ok(old)) if new != old => {
                let (l, u) = st
                    .announced
                    .as_ref()
                    .map_or((LicenseState::Unknown, UpdateState::Unknown), |a| {
                        (a.license, a.update)
                    });
                logging::event::hardware_id_changed(l, u)
            }
            _ => {}
        }
        let hw = hw.map_err(|e| e.to_string());
        let changed = st.hwid != hw;
        st.hwid = hw;
        st.settle();
        let inputs = st.inputs();
        st.core.apply_inputs(&inputs);
        st.note_hardware();
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

    /// The body of a request to `endpoint` from this host.
    pub(super) fn body(
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
}

/// The earlier of two times, either of which may be absent.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The history entries a publish writes: the pending events, then a change
/// of licence state, update state or hardware_id against what the history
/// recorded last (so a change while the daemon was down is written at
/// start, and a restart writes nothing new).
fn history_entries(st: &mut Runtime, doc: &StatusDocument, now: Timestamp) -> Vec<Entry> {
    let mut events = std::mem::take(&mut st.pending);
    let rec = &mut st.recorded;
    if doc.license.state != rec.license {
        events.push(Event::LicenseState {
            from: rec.license,
            to: doc.license.state,
            reason: doc.license.reason.clone(),
            error: doc.portal.last_error.clone(),
        });
        rec.license = doc.license.state;
    }
    if doc.update.state != rec.update {
        events.push(Event::UpdateState {
            from: rec.update,
            to: doc.update.state,
        });
        rec.update = doc.update.state;
    }
    st.pending = events;
    st.note_hardware();
    let events = std::mem::take(&mut st.pending);
    let at = now.whole_seconds();
    events
        .into_iter()
        .map(|event| Entry { at, event })
        .collect()
}

/// Logs each warning that appears (with what it says) and each that goes;
/// a message that only changes its day count is not news.
fn log_warning_changes(before: &[Warning], after: &[Warning], update: UpdateState) {
    let had = |ws: &[Warning], c| ws.iter().any(|w| w.code == c);
    for w in after.iter().filter(|w| !had(before, w.code)) {
        if w.code == wispanel_core::warnings::WarningCode::GraceEnding {
            // The one warning with a MESSAGE_ID of its own (journal catalog).
            logging::event::grace_ending(w.at, &w.message, update);
        } else {
            warn!(warning = %w.code, "warning {}: {}", w.code, w.message);
        }
    }
    for w in before.iter().filter(|w| !had(after, w.code)) {
        info!(warning = %w.code, "warning {} cleared", w.code);
    }
}

pub(super) fn placeholder_doc(started: Timestamp) -> StatusDocument {
    StatusDocument::empty(DaemonInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_at: started,
    })
}
