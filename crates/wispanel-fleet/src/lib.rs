//! Fleet simulation: many hosts, each driven by the daemon's own no-I/O core
//! ([`Core`], [`classify`], the schedule), against a modelled portal that is
//! healthy, then down (503 without `Retry-After`) for a while, then healthy
//! again, optionally with a capacity above which it answers 429
//! `Retry-After: 60`. Beside it runs a naive client (exponential back-off
//! without jitter, no grace pacing) against its own copy of the same portal,
//! so the figures can be compared within one run.
//!
//! This is a discrete-event simulation: a heap of (next time, host), no
//! clocks, no sockets. With the same [`FleetParams`] (and seed) it gives the
//! same [`FleetReport`].
//!
//! Part of the fleet can run with its clock off ([`FleetParams::skewed`]):
//! such a host's core sees "now" in its own clock, while the portal's
//! answers carry the true time (its `Date`, `valid_until`, a `Retry-After`
//! date). Whether the core reads those deadlines in the portal's clock is
//! what the case measures: hosts that lapsed early, and the load.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::time::Duration;
use wispanel_core::classify::{Classified, Exchange, Outcome, classify};
use wispanel_core::machine::{Core, Inputs};
use wispanel_core::schedule::Schedule;
use wispanel_core::schedule::{Jitter, SeededJitter};
use wispanel_core::timestamp::Timestamp;
use wispanel_core::{Endpoint, LicenseState};

const MINUTE_MS: i64 = 60_000;
const HOUR: Duration = Duration::from_secs(3600);
/// An arbitrary, fixed "now" at which the simulation starts.
const T0: Timestamp = Timestamp(1_800_000_000_000);
/// `Retry-After` of the capacity-limited portal's 429.
const RETRY_AFTER_SECS: i64 = 60;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct FleetParams {
    pub hosts: usize,
    /// The hosts' `[schedule]` (the naive client uses its interval, retry_initial and retry_max).
    pub schedule: Schedule,
    /// Time from the start of the simulation (steady state) to the outage.
    pub outage_start: Duration,
    /// How long the portal answers 503 (zero: no outage).
    pub outage: Duration,
    /// How long to keep simulating after the outage.
    pub after: Duration,
    /// The portal serves at most this multiple of the fleet's steady
    /// per-minute load per minute (in the healthy phases) and answers 429
    /// `Retry-After: 60` to the rest; `None`: unlimited.
    pub capacity_factor: Option<f64>,
    /// Whether hosts also run the daemon's update loop (`download/check-update`
    /// every `update_check_interval`), as the daemon does.
    pub update_checks: bool,
    /// Width of the rate buckets; rates are reported per minute whatever it is.
    pub bucket: Duration,
    pub seed: u64,
    /// Every `skewed.0`-th host runs its clock off by `skewed.1` seconds
    /// (local minus true), alternately ahead and behind; `None`: every clock is right.
    pub skewed: Option<(usize, i64)>,
    /// `valid_until` of a valid answer: the portal's now plus this.
    pub valid_for: Duration,
    /// Answers carry the portal's `Date` (without it the core cannot know
    /// its skew and reads every deadline in its own clock).
    pub date_header: bool,
    /// The capacity-limited portal's 429 names an HTTP date in
    /// `Retry-After` instead of seconds.
    pub retry_after_date: bool,
}

impl Default for FleetParams {
    fn default() -> Self {
        FleetParams {
            hosts: 100_000,
            schedule: Schedule::default(),
            outage_start: Duration::from_secs(12 * 3600),
            outage: HOUR,
            after: Duration::from_secs(30 * 3600),
            capacity_factor: None,
            update_checks: true,
            bucket: Duration::from_secs(60),
            seed: 1,
            skewed: None,
            valid_for: Duration::from_secs(7 * 86400),
            date_header: true,
            retry_after_date: false,
        }
    }
}

impl FleetParams {
    fn bucket_ms(&self) -> i64 {
        (self.bucket.as_millis() as i64).max(1)
    }

    fn end(&self) -> Timestamp {
        T0.add(self.outage_start + self.outage + self.after)
    }

    /// The expected steady per-minute request rate of the daemon's core:
    /// one validate per `validate_interval` plus the mean splay, and one
    /// update check per `update_check_interval` plus the mean splay.
    pub fn core_steady_per_minute(&self) -> f64 {
        let s = &self.schedule;
        let per =
            |interval: Duration| self.hosts as f64 * 60.0 / (interval + s.splay / 2).as_secs_f64();
        per(s.validate_interval)
            + if self.update_checks {
                per(s.update_check_interval)
            } else {
                0.0
            }
    }

    /// The naive client's steady per-minute rate (validate only, no splay).
    pub fn naive_steady_per_minute(&self) -> f64 {
        self.hosts as f64 * 60.0 / self.schedule.validate_interval.as_secs_f64()
    }
}

/// Requests per bucket.
#[derive(Clone, Debug)]
pub struct Series {
    pub bucket_ms: i64,
    pub counts: Vec<u32>,
}

impl Series {
    fn new(p: &FleetParams) -> Series {
        let n = (p.end().0 - T0.0) / p.bucket_ms() + 1;
        Series {
            bucket_ms: p.bucket_ms(),
            counts: vec![0; n as usize],
        }
    }

    fn add(&mut self, t: Timestamp) {
        let i = ((t.0 - T0.0) / self.bucket_ms) as usize;
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
    }

    fn per_minute(&self, count: u32) -> f64 {
        f64::from(count) * MINUTE_MS as f64 / self.bucket_ms as f64
    }

    fn range(&self, from: Duration, to: Duration) -> std::ops::Range<usize> {
        let a = (from.as_millis() as i64 / self.bucket_ms) as usize;
        let b = (to.as_millis() as i64 / self.bucket_ms) as usize;
        a.min(self.counts.len())..b.min(self.counts.len())
    }

    /// Mean per-minute rate over [from, to) (offsets from the start).
    pub fn mean(&self, from: Duration, to: Duration) -> f64 {
        let r = self.range(from, to);
        if r.is_empty() {
            return 0.0;
        }
        let n = r.len() as f64;
        let sum: u64 = self.counts[r].iter().map(|&c| u64::from(c)).sum();
        sum as f64 * MINUTE_MS as f64 / self.bucket_ms as f64 / n
    }

    /// The highest per-minute rate over [from, to), and its bucket's start offset.
    pub fn peak(&self, from: Duration, to: Duration) -> (f64, Duration) {
        let r = self.range(from, to);
        let start = r.start;
        self.counts[r]
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .map(|(i, &c)| {
                (
                    self.per_minute(c),
                    Duration::from_millis(((start + i) as i64 * self.bucket_ms) as u64),
                )
            })
            .unwrap_or((0.0, from))
    }

    /// The end offset of the last bucket in [from, to) with more than `limit`
    /// requests per minute; `None` when none exceeds it.
    pub fn last_above(&self, limit: f64, from: Duration, to: Duration) -> Option<Duration> {
        let r = self.range(from, to);
        let start = r.start;
        self.counts[r]
            .iter()
            .rposition(|&c| self.per_minute(c) > limit)
            .map(|i| Duration::from_millis(((start + i + 1) as i64 * self.bucket_ms) as u64))
    }
}

/// The rates one client (the core, or the naive baseline) caused.
#[derive(Clone, Debug)]
pub struct ClientFigures {
    /// Mean per-minute rate before the outage (from 1 h after the start).
    pub steady: f64,
    /// The highest per-minute bucket before the outage (the noise level).
    pub steady_peak: f64,
    pub during_mean: f64,
    pub during_peak: f64,
    /// Over the whole simulated time after the outage.
    pub after_peak: f64,
    /// Where that peak lies, from the end of the outage.
    pub after_peak_at: Duration,
    /// Mean over the first hour after the outage.
    pub first_hour_after_mean: f64,
    /// Requests answered 429 by a capacity-limited portal.
    pub rate_limited: u64,
    /// With a capacity: the capacity (per minute), and how long after the
    /// outage the last minute above it ended (`None`: never above it after).
    pub capacity: Option<f64>,
    pub above_capacity_until: Option<Duration>,
    /// Hosts not licensed (state not active or grace) at the end.
    pub unlicensed_at_end: usize,
    /// Hosts found lapsed at some request or at the end (the portal never
    /// refused anyone, so every lapse is one too early).
    pub lapsed_hosts: usize,
    /// Hosts whose core, at the end, would lapse more than 60 s before /
    /// after the `valid_until` the portal sent (measured in true time).
    pub lapse_early: usize,
    pub lapse_late: usize,
    /// Requests per host over the whole run: hosts whose clock is right,
    /// ahead, behind (0 for a group without hosts).
    pub requests_per_host: [f64; 3],
    pub series: Series,
}

impl ClientFigures {
    pub fn during_ratio(&self) -> f64 {
        self.during_peak / self.steady
    }

    pub fn after_ratio(&self) -> f64 {
        self.after_peak / self.steady
    }
}

/// What [`simulate`] found.
#[derive(Clone, Debug)]
pub struct FleetReport {
    pub params: FleetParams,
    /// The daemon's core: every portal request (validate and, if enabled, update checks).
    pub core_all: ClientFigures,
    /// The daemon's core: licence requests only.
    pub core_licence: ClientFigures,
    /// The naive baseline (licence requests only).
    pub naive: ClientFigures,
}

/// The modelled portal.
struct ModelledPortal {
    outage_from: Timestamp,
    outage_to: Timestamp,
    /// Served requests per minute at most (healthy phases only).
    capacity: Option<u32>,
    minute: i64,
    served_this_minute: u32,
    rate_limited: u64,
}

enum Answer {
    Valid,
    Unavailable,
    RateLimited,
}

impl ModelledPortal {
    fn new(p: &FleetParams, steady_per_minute: f64) -> ModelledPortal {
        ModelledPortal {
            outage_from: T0.add(p.outage_start),
            outage_to: T0.add(p.outage_start + p.outage),
            capacity: p
                .capacity_factor
                .map(|f| (f * steady_per_minute).round().max(1.0) as u32),
            minute: i64::MIN,
            served_this_minute: 0,
            rate_limited: 0,
        }
    }

    fn answer(&mut self, now: Timestamp) -> Answer {
        if now >= self.outage_from && now < self.outage_to {
            return Answer::Unavailable;
        }
        if let Some(cap) = self.capacity {
            let minute = now.0.div_euclid(MINUTE_MS);
            if minute != self.minute {
                self.minute = minute;
                self.served_this_minute = 0;
            }
            if self.served_this_minute >= cap {
                self.rate_limited += 1;
                return Answer::RateLimited;
            }
            self.served_this_minute += 1;
        }
        Answer::Valid
    }
}

/// The portal's answer at the true time `now`, as the classifier of a host
/// whose clock reads `local` sees it.
fn classified(
    p: &FleetParams,
    endpoint: Endpoint,
    answer: &Answer,
    now: Timestamp,
    local: Timestamp,
) -> Classified {
    let mut headers: Vec<(&str, String)> = Vec::new();
    if p.date_header {
        headers.push(("date", now.to_http_date()));
    }
    let (status, body) = match answer {
        Answer::Valid => {
            let body = match endpoint {
                Endpoint::CheckUpdate => {
                    r#"{"update_available": false, "latest_version": "1.4.2"}"#.to_string()
                }
                _ => format!(
                    r#"{{"valid": true, "license": {{"valid_until": "{}"}}}}"#,
                    now.add(p.valid_for).to_rfc3339()
                ),
            };
            (200, body)
        }
        Answer::Unavailable => (
            503,
            r#"{"success": false, "code": "INTERNAL_ERROR", "error": "maintenance"}"#.into(),
        ),
        Answer::RateLimited => {
            let wait = Duration::from_secs(RETRY_AFTER_SECS as u64);
            headers.push((
                "retry-after",
                if p.retry_after_date {
                    now.add(wait).to_http_date()
                } else {
                    RETRY_AFTER_SECS.to_string()
                },
            ));
            (429, r#"{"success": false, "code": "RATE_LIMITED"}"#.into())
        }
    };
    let header = move |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    classify(
        endpoint,
        &Exchange::Answer {
            status,
            header: &header,
            body: body.as_bytes(),
            body_problem: None,
        },
        local,
    )
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Loop {
    Licence,
    Update,
}

struct Host {
    core: Core,
    /// Local clock minus the true one, in milliseconds.
    offset_ms: i64,
    lapsed: bool,
    /// Requests this host made.
    requests: u32,
    /// The time each loop is queued for (`i64::MAX`: not queued).
    licence_at: i64,
    update_at: i64,
}

type Queue = BinaryHeap<Reverse<(i64, u32, Loop)>>;

impl Host {
    fn local(&self, now: Timestamp) -> Timestamp {
        Timestamp(now.0.saturating_add(self.offset_ms))
    }
}

/// Queues a host's loops at the times its core says, as the daemon's loops
/// would sleep until them; entries that are no longer current are skipped
/// when they come up.
fn requeue(q: &mut Queue, idx: u32, h: &mut Host, inputs: &Inputs, updates: bool, now: Timestamp) {
    // The core plans in the host's clock; the queue runs in the true one.
    let local = h.local(now);
    let lic = h
        .core
        .due(inputs, local)
        .map_or(i64::MAX, |d| d.at.0.saturating_sub(h.offset_ms).max(now.0));
    if lic != h.licence_at {
        h.licence_at = lic;
        if lic != i64::MAX {
            q.push(Reverse((lic, idx, Loop::Licence)));
        }
    }
    let upd = if updates {
        h.core
            .update_due(local)
            .map_or(i64::MAX, |t| t.0.saturating_sub(h.offset_ms).max(now.0))
    } else {
        i64::MAX
    };
    if upd != h.update_at {
        h.update_at = upd;
        if upd != i64::MAX {
            q.push(Reverse((upd, idx, Loop::Update)));
        }
    }
}

fn simulate_core(p: &FleetParams) -> (ClientFigures, ClientFigures) {
    let s = &p.schedule;
    let inputs = Inputs {
        key_fingerprint: Some("fleet".into()),
        hardware_id: "0".repeat(64),
    };
    let mut j = SeededJitter(p.seed);
    let mut portal = ModelledPortal::new(p, p.core_steady_per_minute());
    let mut hosts = Vec::with_capacity(p.hosts);
    let mut q = Queue::with_capacity(p.hosts * 2);
    // Steady state: each host's last valid verdict lies a uniformly random
    // part of an interval in the past, so its next validate falls uniformly
    // within the first `validate_interval` (plus splay); update checks alike.
    for idx in 0..p.hosts {
        let offset_ms = match p.skewed {
            Some((every, secs)) if every > 0 && idx % every == 0 => {
                let sign = if (idx / every) % 2 == 0 { 1 } else { -1 };
                sign * secs * 1000
            }
            _ => 0,
        };
        let mut h = Host {
            core: Core::default(),
            offset_ms,
            lapsed: false,
            requests: 0,
            licence_at: i64::MAX,
            update_at: i64::MAX,
        };
        h.core.apply_inputs(&inputs);
        let at = T0
            .add(s.validate_interval.mul_f64(j.unit()))
            .sub(s.validate_interval);
        let c = classified(p, Endpoint::Activate, &Answer::Valid, at, h.local(at));
        h.core
            .record_licence(Endpoint::Activate, &c, &inputs, s, h.local(at), &mut j);
        let at = T0
            .add(s.update_check_interval.mul_f64(j.unit()))
            .sub(s.update_check_interval);
        let c = classified(p, Endpoint::CheckUpdate, &Answer::Valid, at, h.local(at));
        h.core.record_update(&c, "1.4.2", s, h.local(at), &mut j);
        requeue(&mut q, idx as u32, &mut h, &inputs, p.update_checks, T0);
        hosts.push(h);
    }
    let end = p.end();
    let mut all = Series::new(p);
    let mut licence = Series::new(p);
    while let Some(Reverse((t, idx, which))) = q.pop() {
        if t >= end.0 {
            break;
        }
        let h = &mut hosts[idx as usize];
        let queued = match which {
            Loop::Licence => h.licence_at,
            Loop::Update => h.update_at,
        };
        if queued != t {
            continue; // superseded
        }
        match which {
            Loop::Licence => h.licence_at = i64::MAX,
            Loop::Update => h.update_at = i64::MAX,
        }
        let now = Timestamp(t);
        let local = h.local(now);
        all.add(now);
        h.requests += 1;
        let answer = portal.answer(now);
        match which {
            Loop::Licence => {
                licence.add(now);
                if h.core.license_state(&inputs, s, local) == LicenseState::Lapsed {
                    h.lapsed = true;
                }
                let endpoint = h
                    .core
                    .due(&inputs, local)
                    .map_or(Endpoint::Validate, |d| d.endpoint);
                let c = classified(p, endpoint, &answer, now, local);
                h.core
                    .record_licence(endpoint, &c, &inputs, s, local, &mut j);
                h.core.apply_inputs(&inputs);
            }
            Loop::Update => {
                let c = classified(p, Endpoint::CheckUpdate, &answer, now, local);
                h.core.record_update(&c, "1.4.2", s, local, &mut j);
            }
        }
        h.core.expire_gate(local);
        requeue(&mut q, idx, h, &inputs, p.update_checks, now);
    }
    let state_at_end = |h: &Host| h.core.license_state(&inputs, s, h.local(end));
    let unlicensed = hosts.iter().filter(|h| !state_at_end(h).licensed()).count();
    let lapsed = hosts
        .iter()
        .filter(|h| h.lapsed || state_at_end(h) == LicenseState::Lapsed)
        .count();
    // Where each core puts the lapse, against the portal's valid_until.
    let (mut early, mut late) = (0, 0);
    for h in &hosts {
        if let (Some(shown), Some(local)) = (h.core.grace_until(s), h.core.lapse_at(s)) {
            let err = local.0.saturating_sub(h.offset_ms) - shown.0;
            early += usize::from(err < -60_000);
            late += usize::from(err > 60_000);
        }
    }
    let mut per_host = [0.0; 3];
    for (g, slot) in per_host.iter_mut().enumerate() {
        let group = hosts.iter().filter(|h| match g {
            0 => h.offset_ms == 0,
            1 => h.offset_ms > 0,
            _ => h.offset_ms < 0,
        });
        let (n, sum) = group.fold((0u64, 0u64), |(n, sum), h| {
            (n + 1, sum + u64::from(h.requests))
        });
        *slot = if n == 0 { 0.0 } else { sum as f64 / n as f64 };
    }
    let cap = portal.capacity.map(f64::from);
    let mut all = figures(p, all, portal.rate_limited, cap, unlicensed, lapsed);
    (all.lapse_early, all.lapse_late) = (early, late);
    all.requests_per_host = per_host;
    let mut licence = figures(p, licence, 0, None, unlicensed, lapsed);
    (licence.lapse_early, licence.lapse_late) = (early, late);
    (all, licence)
}

fn simulate_naive(p: &FleetParams) -> ClientFigures {
    let s = &p.schedule;
    let mut j = SeededJitter(p.seed ^ 0x5555_5555);
    let mut portal = ModelledPortal::new(p, p.naive_steady_per_minute());
    // Per host: consecutive failures, and whether the last verdict is valid.
    let mut failures = vec![0u32; p.hosts];
    let mut q: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::with_capacity(p.hosts);
    for idx in 0..p.hosts {
        let at = T0.add(s.validate_interval.mul_f64(j.unit()));
        q.push(Reverse((at.0, idx as u32)));
    }
    let end = p.end();
    let mut series = Series::new(p);
    while let Some(Reverse((t, idx))) = q.pop() {
        if t >= end.0 {
            break;
        }
        let now = Timestamp(t);
        series.add(now);
        let answer = portal.answer(now);
        let c = classified(p, Endpoint::Validate, &answer, now, now);
        let n = &mut failures[idx as usize];
        let next = match c.outcome {
            Outcome::Valid(_) => {
                *n = 0;
                now.add(s.validate_interval)
            }
            _ => {
                let factor = 2u32.saturating_pow((*n).min(31));
                let wait = s
                    .retry_initial
                    .checked_mul(factor)
                    .unwrap_or(s.retry_max)
                    .min(s.retry_max);
                *n += 1;
                let wait = match answer {
                    Answer::RateLimited => wait.max(Duration::from_secs(RETRY_AFTER_SECS as u64)),
                    _ => wait,
                };
                now.add(wait)
            }
        };
        q.push(Reverse((next.0, idx)));
    }
    let cap = portal.capacity.map(f64::from);
    figures(p, series, portal.rate_limited, cap, 0, 0)
}

fn figures(
    p: &FleetParams,
    series: Series,
    rate_limited: u64,
    capacity: Option<f64>,
    unlicensed_at_end: usize,
    lapsed_hosts: usize,
) -> ClientFigures {
    let steady_from = HOUR.min(p.outage_start / 2);
    let out_end = p.outage_start + p.outage;
    let end = out_end + p.after;
    let steady = series.mean(steady_from, p.outage_start);
    let (steady_peak, _) = series.peak(steady_from, p.outage_start);
    let (during_peak, _) = series.peak(p.outage_start, out_end);
    let (after_peak, at) = series.peak(out_end, end);
    ClientFigures {
        steady,
        steady_peak,
        during_mean: series.mean(p.outage_start, out_end),
        during_peak,
        after_peak,
        after_peak_at: at.saturating_sub(out_end),
        first_hour_after_mean: series.mean(out_end, out_end + HOUR),
        rate_limited,
        capacity,
        above_capacity_until: capacity
            .and_then(|c| series.last_above(c, out_end, end))
            .map(|t| t.saturating_sub(out_end)),
        unlicensed_at_end,
        lapsed_hosts,
        lapse_early: 0,
        lapse_late: 0,
        requests_per_host: [0.0; 3],
        series,
    }
}

/// Runs the fleet of daemons' cores and the naive baseline under `params`.
pub fn simulate(params: FleetParams) -> FleetReport {
    let (core_all, core_licence) = simulate_core(&params);
    let naive = simulate_naive(&params);
    FleetReport {
        params,
        core_all,
        core_licence,
        naive,
    }
}

/// "1h30m"-style text for a duration.
pub fn human(d: Duration) -> String {
    wispanel_core::duration::format_duration(d)
}

impl FleetReport {
    /// The per-bucket series as CSV: minute offset from the start, then
    /// requests per minute of the core (all, licence) and of the naive client.
    pub fn csv(&self) -> String {
        let mut out = String::from("minute,core_all,core_licence,naive\n");
        let s = &self.core_all.series;
        for i in 0..s.counts.len() {
            let _ = writeln!(
                out,
                "{:.1},{:.1},{:.1},{:.1}",
                (i as i64 * s.bucket_ms) as f64 / MINUTE_MS as f64,
                s.per_minute(s.counts[i]),
                self.core_licence
                    .series
                    .per_minute(self.core_licence.series.counts[i]),
                self.naive.series.per_minute(self.naive.series.counts[i]),
            );
        }
        out
    }

    /// A plain-text table of the figures.
    pub fn render(&self) -> String {
        let p = &self.params;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "fleet: {} hosts, outage {} (503, no Retry-After) starting {} in, {} simulated after{}{}",
            p.hosts,
            human(p.outage),
            human(p.outage_start),
            human(p.after),
            if p.update_checks {
                ", core with update checks"
            } else {
                ""
            },
            match p.capacity_factor {
                Some(f) => format!(
                    ", portal capacity {f}x steady (429 Retry-After: {} above)",
                    if p.retry_after_date {
                        "<date 60 s ahead>"
                    } else {
                        "60"
                    }
                ),
                None => String::new(),
            }
        );
        let _ = writeln!(
            out,
            "  {:<22} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
            "requests/min",
            "steady",
            "st.peak",
            "dur.mean",
            "dur.peak",
            "aft.1h",
            "aft.peak",
            "dur.x",
            "aft.x"
        );
        for (name, f) in [
            ("core (all endpoints)", &self.core_all),
            ("core (licence only)", &self.core_licence),
            ("naive (licence only)", &self.naive),
        ] {
            let _ = writeln!(
                out,
                "  {:<22} {:>8.0} {:>8.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>6.2}x {:>6.2}x   (after-peak at +{})",
                name,
                f.steady,
                f.steady_peak,
                f.during_mean,
                f.during_peak,
                f.first_hour_after_mean,
                f.after_peak,
                f.during_ratio(),
                f.after_ratio(),
                human(Duration::from_secs(f.after_peak_at.as_secs()))
            );
        }
        if p.capacity_factor.is_some() {
            for (name, f) in [("core", &self.core_all), ("naive", &self.naive)] {
                let _ = writeln!(
                    out,
                    "  {name}: capacity {:.0}/min, {} answered 429; {}",
                    f.capacity.unwrap_or(0.0),
                    f.rate_limited,
                    match f.above_capacity_until {
                        None => "never above capacity after the outage".to_string(),
                        Some(t) => format!(
                            "above capacity until +{} after the outage, below it from then on",
                            human(Duration::from_secs(t.as_secs().max(1)))
                        ),
                    }
                );
            }
        }
        // A few representative 10-minute means around the outage.
        let out_end = p.outage_start + p.outage;
        let mut points: Vec<(String, Duration)> = vec![
            (
                "before -30m".into(),
                p.outage_start.saturating_sub(HOUR / 2),
            ),
            ("outage +0".into(), p.outage_start),
        ];
        if p.outage > HOUR {
            points.push(("outage +1h".into(), p.outage_start + HOUR));
            points.push(("outage end -10m".into(), out_end - HOUR / 6));
        }
        for (label, h) in [
            ("end +0", 0u64),
            ("end +1h", 1),
            ("end +6h", 6),
            ("end +12h", 12),
        ] {
            let t = out_end + HOUR * h as u32;
            if t + HOUR / 6 <= out_end + p.after {
                points.push((label.into(), t));
            }
        }
        let ten = (HOUR / 6).max(p.bucket);
        let _ = write!(out, "  {}-min means/min:", ten.as_secs() / 60);
        for (label, t) in &points {
            let w = ten.min(if *t < out_end && *t >= p.outage_start {
                out_end - *t
            } else {
                ten
            });
            let _ = write!(
                out,
                " [{label}: core {:.0}, naive {:.0}]",
                self.core_all.series.mean(*t, *t + w),
                self.naive.series.mean(*t, *t + w)
            );
        }
        let _ = writeln!(out);
        let unl = self.core_all.unlicensed_at_end;
        if unl > 0 {
            let _ = writeln!(out, "  core: {unl} hosts not licensed at the end");
        }
        if let Some((every, secs)) = p.skewed {
            let _ = writeln!(
                out,
                "  clocks: 1 host in {every} off by {} (half ahead, half behind), answers {} Date; \
                 valid_until = now + {}; core hosts lapsed at some moment: {}; \
                 lapse instant off by more than 60 s: {} early, {} late; \
                 requests per host (clock right / ahead / behind): {:.1} / {:.1} / {:.1}",
                human(Duration::from_secs(secs.unsigned_abs())),
                if p.date_header { "with" } else { "without" },
                human(p.valid_for),
                self.core_all.lapsed_hosts,
                self.core_all.lapse_early,
                self.core_all.lapse_late,
                self.core_all.requests_per_host[0],
                self.core_all.requests_per_host[1],
                self.core_all.requests_per_host[2]
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One run of [`small`] per case, shared by the tests that read it (a
    /// run takes seconds in a debug build); `deterministic_with_a_seed`
    /// compares a shared run with a fresh one.
    fn shared(outage_h: u64, update_checks: bool) -> &'static FleetReport {
        use std::sync::OnceLock;
        static RUNS: [OnceLock<FleetReport>; 4] = [const { OnceLock::new() }; 4];
        let i = match (outage_h, update_checks) {
            (1, false) => 0,
            (6, false) => 1,
            (1, true) => 2,
            (6, true) => 3,
            other => panic!("no shared run for {other:?}"),
        };
        RUNS[i].get_or_init(|| small(outage_h, update_checks))
    }

    fn small(outage_h: u64, update_checks: bool) -> FleetReport {
        simulate(FleetParams {
            hosts: 5_000,
            outage: Duration::from_secs(outage_h * 3600),
            after: Duration::from_secs(24 * 3600),
            update_checks,
            // Wide buckets: 5 000 hosts make ~14 licence requests a minute,
            // too few for per-minute peaks to mean more than noise.
            bucket: Duration::from_secs(30 * 60),
            seed: 42,
            ..FleetParams::default()
        })
    }

    #[test]
    fn steady_rate_matches_the_schedule() {
        let r = shared(1, false);
        let want = r.params.core_steady_per_minute();
        let got = r.core_licence.steady;
        assert!((got - want).abs() / want < 0.1, "steady {got} vs {want}");
        let naive = r.naive.steady;
        assert!((naive - r.params.naive_steady_per_minute()).abs() / naive < 0.1);
    }

    #[test]
    fn grace_pacing_bounds_the_licence_load_where_naive_backoff_does_not() {
        for h in [1, 6] {
            let r = shared(h, false);
            let c = &r.core_licence;
            assert!(c.during_mean / c.steady < 3.1, "{h}h: {}", r.render());
            assert!(c.during_ratio() < 3.5, "{h}h: {}", r.render());
            assert!(c.after_ratio() < 3.5, "{h}h: {}", r.render());
            assert_eq!(c.unlicensed_at_end, 0);
        }
        // The baseline is what the pacing avoids: the check can fail.
        let r = shared(6, false);
        assert!(r.naive.during_ratio() > 8.0, "{}", r.render());
    }

    #[test]
    fn paced_update_checks_keep_all_endpoints_within_the_goal() {
        for h in [1, 6] {
            let r = shared(h, true);
            let c = &r.core_all;
            assert!(c.during_ratio() < 3.5, "{h}h: {}", r.render());
            assert!(c.after_ratio() < 3.5, "{h}h: {}", r.render());
            assert_eq!(c.unlicensed_at_end, 0);
        }
    }

    fn skewed(date_header: bool) -> FleetReport {
        simulate(FleetParams {
            hosts: 4_000,
            outage: Duration::from_secs(6 * 3600),
            after: Duration::from_secs(12 * 3600),
            capacity_factor: Some(1.1),
            skewed: Some((4, 86_400)),
            retry_after_date: true,
            date_header,
            bucket: Duration::from_secs(30 * 60),
            seed: 7,
            ..FleetParams::default()
        })
    }

    #[test]
    fn hosts_a_day_off_neither_lapse_early_nor_press_the_portal() {
        let r = skewed(true);
        let c = &r.core_all;
        assert!(r.core_all.rate_limited > 0, "the case must meet the 429s");
        assert_eq!(
            (c.lapse_early, c.lapse_late, c.lapsed_hosts),
            (0, 0, 0),
            "{}",
            r.render()
        );
        let [right, ahead, behind] = c.requests_per_host;
        for other in [ahead, behind] {
            assert!((other - right).abs() / right < 0.1, "{}", r.render());
        }
        // Without Date the core cannot know the skew: the check can fail.
        let r = skewed(false);
        assert_eq!(r.core_all.lapse_early, 500, "{}", r.render());
        assert_eq!(r.core_all.lapse_late, 500, "{}", r.render());
    }

    #[test]
    fn deterministic_with_a_seed() {
        let a = shared(1, true);
        let b = small(1, true);
        assert_eq!(a.core_all.series.counts, b.core_all.series.counts);
        assert_eq!(a.naive.series.counts, b.naive.series.counts);
    }
}
