//! Fair use of the socket (SPEC "Fair use of the socket"): every connection
//! counts against its peer's uid. A uid other than 0 holds at most
//! `socket_connections_per_uid` connections, of which at most
//! [`EVENTS_PER_UID`] are event streams, and all of them together leave
//! [`ROOT_RESERVE`] of the [`MAX_CONNECTIONS`] for uid 0.
//!
//! [`Limiter`] is pure bookkeeping (no I/O, no clock), keyed by uid, so that
//! the rules are unit-tested with any uids; the accept loop asks it once per
//! connection and the events route once per stream. A slot is given back
//! when its guard drops, however the connection ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Concurrent connections served, all uids together.
pub const MAX_CONNECTIONS: usize = 768;
/// Of [`MAX_CONNECTIONS`], kept for uid 0.
pub const ROOT_RESERVE: usize = 64;
/// Event streams one uid other than 0 may hold at once.
pub const EVENTS_PER_UID: usize = 8;
/// `socket_connections_per_uid` when the configuration does not set it.
pub const DEFAULT_PER_UID: usize = 32;
/// The bounds of `socket_connections_per_uid`.
pub const PER_UID_RANGE: std::ops::RangeInclusive<usize> = 1..=512;

/// The limits in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections one uid other than 0 may hold.
    pub per_uid: usize,
    /// Of those, event streams.
    pub events_per_uid: usize,
    /// All connections together.
    pub total: usize,
    /// Of `total`, kept for uid 0.
    pub root_reserve: usize,
    /// The uid that has no per-uid limit and the reserve: 0. (Tests name
    /// another so that the accept path's limits apply to them as root.)
    pub privileged: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_uid: DEFAULT_PER_UID,
            events_per_uid: EVENTS_PER_UID,
            total: MAX_CONNECTIONS,
            root_reserve: ROOT_RESERVE,
            privileged: 0,
        }
    }
}

impl Limits {
    /// The defaults with `socket_connections_per_uid` = `per_uid`.
    pub fn with_per_uid(per_uid: usize) -> Self {
        Limits {
            per_uid,
            ..Limits::default()
        }
    }
}

/// Why a connection or an event stream was refused: the `reason` label of
/// `wispanel_license_socket_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The uid holds `socket_connections_per_uid` connections already.
    UidLimit,
    /// The uid holds its event streams already.
    EventsLimit,
    /// The connections open to this uid's kind (others, or everyone for
    /// root) are all taken.
    Full,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::UidLimit, Refusal::EventsLimit, Refusal::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UidLimit => "uid_limit",
            Refusal::EventsLimit => "events_limit",
            Refusal::Full => "full",
        }
    }

    fn index(self) -> usize {
        match self {
            Refusal::UidLimit => 0,
            Refusal::EventsLimit => 1,
            Refusal::Full => 2,
        }
    }

    /// The message of the 429 answer.
    pub fn message(self, limits: &Limits) -> String {
        match self {
            Refusal::UidLimit => format!(
                "too many connections from your uid (at most {} at once); close one and try again",
                limits.per_uid
            ),
            Refusal::EventsLimit => format!(
                "too many event streams from your uid (at most {} at once); close one and try again",
                limits.events_per_uid
            ),
            Refusal::Full => "the daemon serves as many connections as it can; try again".into(),
        }
    }
}

/// The key of a peer: its uid, or none when the kernel gave no credentials
/// (counted as one more uid other than 0, never as root).
type Peer = Option<u32>;

#[derive(Default)]
struct Books {
    /// Connections open, all uids.
    open: usize,
    /// Connections open by uids other than 0.
    others: usize,
    /// Per peer other than root: (connections, event streams).
    by_peer: HashMap<Peer, (usize, usize)>,
}

/// The connection and event-stream books of one socket, and its refusal
/// counters.
pub struct Limiter {
    limits: Limits,
    books: Mutex<Books>,
    refused: [AtomicU64; 3],
}

/// The socket's figures for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Connections open now.
    pub open: u64,
    /// Refusals so far, in the order of [`Refusal::ALL`].
    pub refused: [u64; 3],
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            books: Mutex::new(Books::default()),
            refused: Default::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        // Plain counters: a panic elsewhere leaves them consistent.
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_root(&self, peer: Peer) -> bool {
        peer == Some(self.limits.privileged)
    }

    fn refuse(&self, why: Refusal) -> Refusal {
        self.refused[why.index()].fetch_add(1, Ordering::Relaxed);
        why
    }

    /// Takes a connection slot for `peer`, or says why not (and counts the
    /// refusal). Never waits.
    pub fn admit(self: &Arc<Self>, peer: Peer) -> Result<ConnSlot, Refusal> {
        let mut b = self.books();
        let l = &self.limits;
        if self.is_root(peer) {
            if b.open >= l.total {
                return Err(self.refuse(Refusal::Full));
            }
        } else {
            let held = b.by_peer.get(&peer).map_or(0, |h| h.0);
            if held >= l.per_uid {
                return Err(self.refuse(Refusal::UidLimit));
            }
            if b.others >= l.total.saturating_sub(l.root_reserve) || b.open >= l.total {
                return Err(self.refuse(Refusal::Full));
            }
            b.others += 1;
            b.by_peer.entry(peer).or_default().0 += 1;
        }
        b.open += 1;
        Ok(ConnSlot {
            limiter: self.clone(),
            peer,
        })
    }

    /// The figures for the metrics.
    pub fn figures(&self) -> Figures {
        Figures {
            open: self.books().open as u64,
            refused: std::array::from_fn(|i| self.refused[i].load(Ordering::Relaxed)),
        }
    }
}

/// A connection's slot; dropping it gives the slot back.
pub struct ConnSlot {
    limiter: Arc<Limiter>,
    peer: Peer,
}

impl std::fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSlot")
            .field("peer", &self.peer)
            .finish()
    }
}

impl ConnSlot {
    /// Takes an event-stream slot for this connection's peer, or says why
    /// not (and counts the refusal).
    pub fn event_stream(&self) -> Result<EventSlot, Refusal> {
        let l = &self.limiter;
        if !l.is_root(self.peer) {
            let mut b = l.books();
            let held = b.by_peer.entry(self.peer).or_default();
            if held.1 >= l.limits.events_per_uid {
                drop(b);
                return Err(l.refuse(Refusal::EventsLimit));
            }
            held.1 += 1;
        }
        Ok(EventSlot {
            limiter: l.clone(),
            peer: self.peer,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limiter.limits
    }

    /// The socket's figures for the metrics.
    pub fn figures(&self) -> Figures {
        self.limiter.figures()
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut b = self.limiter.books();
        b.open = b.open.saturating_sub(1);
        if !self.limiter.is_root(self.peer) {
            b.others = b.others.saturating_sub(1);
            if let Some(h) = b.by_peer.get_mut(&self.peer) {
                h.0 = h.0.saturating_sub(1);
                if h.0 == 0 && h.1 == 0 {
                    b.by_peer.remove(&self.peer);
                }
            }
        }
    }
}

/// An event stream's slot; dropping it gives the slot back.
pub struct EventSlot {
    limiter: Arc<Limiter>,
    peer: Peer,
}

impl Drop for EventSlot {
    fn drop(&mut self) {
        if self.limiter.is_root(self.peer) {
            return;
        }
        let mut b = self.limiter.books();
        if let Some(h) = b.by_peer.get_mut(&self.peer) {
            h.1 = h.1.saturating_sub(1);
            if h.0 == 0 && h.1 == 0 {
                b.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_uid: usize, total: usize, reserve: usize) -> Arc<Limiter> {
        Arc::new(Limiter::new(Limits {
            per_uid,
            events_per_uid: 2,
            total,
            root_reserve: reserve,
            privileged: 0,
        }))
    }

    #[test]
    fn a_uid_over_its_limit_is_refused_and_others_are_not() {
        let l = limiter(3, 100, 10);
        let held: Vec<_> = (0..3).map(|_| l.admit(Some(1000)).unwrap()).collect();
        assert_eq!(l.admit(Some(1000)).unwrap_err(), Refusal::UidLimit);
        let other = l.admit(Some(1001)).expect("another uid is unaffected");
        let root = l.admit(Some(0)).expect("root is unaffected");
        assert_eq!(l.figures().open, 5);
        assert_eq!(l.figures().refused, [1, 0, 0]);
        drop(held);
        drop((other, root));
        assert_eq!(l.figures().open, 0);
        // Its slots are back.
        let _again: Vec<_> = (0..3).map(|_| l.admit(Some(1000)).unwrap()).collect();
        assert!(l.books().by_peer.len() == 1);
    }

    #[test]
    fn no_credentials_count_as_a_uid_other_than_root() {
        let l = limiter(1, 100, 10);
        let _a = l.admit(None).unwrap();
        assert_eq!(l.admit(None).unwrap_err(), Refusal::UidLimit);
        let _r = l.admit(Some(0)).unwrap();
        let _r2 = l.admit(Some(0)).unwrap();
    }

    #[test]
    fn the_reserve_is_kept_for_root_only() {
        // 10 connections, 4 kept for root: six other uids fill the rest.
        let l = limiter(5, 10, 4);
        let others: Vec<_> = (0..6).map(|i| l.admit(Some(1000 + i)).unwrap()).collect();
        assert_eq!(l.admit(Some(2000)).unwrap_err(), Refusal::Full);
        let roots: Vec<_> = (0..4).map(|_| l.admit(Some(0)).unwrap()).collect();
        // Everything is taken now, for root too.
        assert_eq!(l.admit(Some(0)).unwrap_err(), Refusal::Full);
        assert_eq!(l.figures().refused, [0, 0, 2]);
        drop(roots);
        // Root connections freed do not go to the others.
        assert_eq!(l.admit(Some(2000)).unwrap_err(), Refusal::Full);
        drop(others);
        let _ok = l.admit(Some(2000)).unwrap();
    }

    #[test]
    fn root_may_use_the_others_share_when_it_is_free() {
        let l = limiter(5, 10, 4);
        let roots: Vec<_> = (0..10).map(|_| l.admit(Some(0)).unwrap()).collect();
        assert_eq!(l.admit(Some(1000)).unwrap_err(), Refusal::Full);
        assert_eq!(roots.len(), 10);
    }

    #[test]
    fn event_streams_have_their_own_limit_within_the_connections() {
        let l = limiter(5, 100, 10);
        let conns: Vec<_> = (0..3).map(|_| l.admit(Some(1000)).unwrap()).collect();
        let e1 = conns[0].event_stream().unwrap();
        let _e2 = conns[1].event_stream().unwrap();
        assert_eq!(
            conns[2].event_stream().err(),
            Some(Refusal::EventsLimit),
            "a third stream of the same uid"
        );
        let other = l.admit(Some(1001)).unwrap();
        let _o = other
            .event_stream()
            .expect("another uid has its own streams");
        let root = l.admit(Some(0)).unwrap();
        let _r: Vec<_> = (0..5).map(|_| root.event_stream().unwrap()).collect();
        drop(e1);
        let _e3 = conns[2]
            .event_stream()
            .expect("a stream ended frees its slot");
        assert_eq!(l.figures().refused, [0, 1, 0]);
    }

    #[test]
    fn defaults_follow_spec() {
        let d = Limits::default();
        assert_eq!(
            (d.per_uid, d.events_per_uid, d.total, d.root_reserve),
            (32, 8, 768, 64)
        );
        assert!(PER_UID_RANGE.contains(&1) && PER_UID_RANGE.contains(&512));
        assert!(!PER_UID_RANGE.contains(&0) && !PER_UID_RANGE.contains(&513));
    }
}
