//! The simulated portal's decisions, without I/O: given a parsed request, the
//! portal state and "now", what to answer and how to misbehave. The server
//! (the accept loop in `lib.rs`, `http.rs`) only moves bytes.

use super::scenario::{
    Endpoint, LicenseBehaviour, LicenseTerms, Outage, Route, Scenario, Script, ScriptedAnswer,
    builtin_licenses,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use wispanel_core::key::LicenseKey;
use wispanel_core::timestamp::Timestamp;

/// How long a download token stays usable.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Below this `current_version`, `check-update` answers `VERSION_TOO_LOW`.
const MINIMUM_VERSION: [u64; 3] = [1, 0, 0];

/// A request as the portal logic sees it.
pub(crate) struct Incoming<'a> {
    pub method: &'a str,
    /// Without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<&'a str>,
    pub body: &'a [u8],
}

/// One request the sim received (control requests under `/_sim/` excluded).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedRequest {
    pub endpoint: Route,
    pub method: String,
    /// Without the query (a download token is not kept).
    pub path: String,
    pub time: Timestamp,
    /// The JSON body with `license_key` masked; `None` when empty or not JSON.
    pub body: Option<Value>,
    /// `WISP-****SA6T`, or `(malformed key)`; `None` without a key.
    pub key_masked: Option<String>,
    pub key_last4: Option<String>,
    /// The status answered; `None` for a dropped or stalled request.
    pub status: Option<u16>,
    /// The `Idempotency-Key` header as sent.
    pub idempotency_key: Option<String>,
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Plan {
    Reply(Reply),
    /// Close without a status line, after `delay`.
    Drop {
        delay: Duration,
    },
    /// Never answer; close once the client goes away.
    Stall {
        delay: Duration,
    },
}

impl Plan {
    fn status(&self) -> Option<u16> {
        match self {
            Plan::Reply(r) => Some(r.status),
            Plan::Drop { .. } | Plan::Stall { .. } => None,
        }
    }
}

/// An HTTP answer, possibly delivered badly.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    /// Sent after the defaults; one named like a default replaces it.
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
    pub delivery: Delivery,
    /// Wait before writing anything.
    pub delay: Duration,
    /// Added to the clock for the `Date` header.
    pub date_skew_secs: i64,
}

#[derive(Debug)]
pub(crate) enum ReplyBody {
    Bytes(Vec<u8>),
    /// `unit` repeated up to `len` bytes.
    Repeat {
        unit: Vec<u8>,
        len: u64,
    },
    /// The first `len` bytes of a release file (one byte flipped if `corrupt`).
    Release {
        seed: u64,
        len: u64,
        corrupt: bool,
    },
}

/// How much of the body to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Complete,
    /// Send this many bytes of the body, then close.
    TruncateAt(u64),
    /// Send this many bytes of the body, then stall.
    StallAfter(u64),
}

impl Reply {
    pub(crate) fn json(status: u16, v: Value) -> Reply {
        Reply::bytes(status, v.to_string().into_bytes())
    }

    pub(crate) fn bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Bytes(body),
            delivery: Delivery::Complete,
            delay: Duration::ZERO,
            date_skew_secs: 0,
        }
    }

    /// Sets a header, replacing one of the same name (any case).
    pub(crate) fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.set_header(name, value);
        self
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl ReplyBody {
    pub(crate) fn len(&self) -> u64 {
        match self {
            ReplyBody::Bytes(b) => b.len() as u64,
            ReplyBody::Repeat { len, .. } | ReplyBody::Release { len, .. } => *len,
        }
    }

    /// Fills `buf` with the body bytes from `offset`; returns how many.
    pub(crate) fn fill(&self, offset: u64, buf: &mut [u8]) -> usize {
        let n = usize::try_from(self.len().saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let buf = &mut buf[..n];
        match self {
            ReplyBody::Bytes(b) => {
                // offset < len here whenever n > 0, so the cast fits.
                let start = usize::try_from(offset).unwrap_or(b.len()).min(b.len());
                buf.copy_from_slice(&b[start..start + n]);
            }
            ReplyBody::Repeat { unit, .. } => {
                let unit: &[u8] = if unit.is_empty() { b" " } else { unit };
                let mut at = (offset % unit.len() as u64) as usize;
                for byte in buf.iter_mut() {
                    *byte = unit[at];
                    at = (at + 1) % unit.len();
                }
            }
            ReplyBody::Release { seed, corrupt, .. } => {
                fill_release(*seed, offset, buf);
                if *corrupt && offset == 0 && !buf.is_empty() {
                    buf[0] ^= 0xff;
                }
            }
        }
        n
    }

    /// The whole body in memory (for re-editing small JSON bodies).
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ReplyBody::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// How long the portal remembers an `Idempotency-Key` (PORTAL.md: 24 hours).
pub(crate) const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The first answer to an `activate` with an `Idempotency-Key`.
struct Remembered {
    /// SHA-256 of the request body (as canonical JSON).
    body_digest: [u8; 32],
    status: u16,
    body: Vec<u8>,
    /// In the portal's clock.
    at: Timestamp,
}

struct IssuedToken {
    version: String,
    expires_at: Timestamp,
}

/// The portal's state. Owned by the server behind a mutex; never held across
/// an await.
pub(crate) struct SimulatedPortal {
    started_at: Timestamp,
    /// `scheme://host:port` of this sim, for download URLs.
    base_url: String,
    date_skew_secs: i64,
    release_size: u64,
    latest_version: String,
    changelog: String,
    max_activations: usize,
    seat_limits: BTreeMap<String, usize>,
    /// The portal's clock minus the real one.
    clock_offset_secs: i64,
    ignore_idempotency_key: bool,
    activate_counts_every_request: bool,
    terms: LicenseTerms,
    licenses: BTreeMap<String, LicenseBehaviour>,
    /// Key → the seats taken, each by a hardware_id (one hardware_id may
    /// hold several when the portal counts every activate).
    activations: HashMap<String, Vec<String>>,
    /// `Idempotency-Key` → the first answer, for 24 h.
    idempotency: HashMap<String, Remembered>,
    tokens: HashMap<String, IssuedToken>,
    scripts: BTreeMap<Route, Script>,
    outage: Option<Outage>,
    recorded: Vec<RecordedRequest>,
    /// Version → SHA-256 hex of its release file.
    sha_cache: HashMap<String, String>,
}

impl SimulatedPortal {
    pub(crate) fn new(mut scenario: Scenario, base_url: String, now: Timestamp) -> SimulatedPortal {
        let scripts = scenario.take_scripts();
        let clock_offset_secs = scenario.clock_offset_secs();
        let mut licenses = builtin_licenses();
        licenses.extend(std::mem::take(&mut scenario.licenses));
        SimulatedPortal {
            started_at: now,
            base_url,
            date_skew_secs: scenario.date_skew_secs,
            release_size: scenario.release_size,
            latest_version: scenario.latest_version,
            changelog: scenario.changelog,
            max_activations: scenario.max_activations,
            clock_offset_secs,
            ignore_idempotency_key: scenario.ignore_idempotency_key,
            activate_counts_every_request: scenario.activate_counts_every_request,
            seat_limits: std::mem::take(&mut scenario.seat_limits),
            terms: scenario.terms,
            licenses,
            activations: HashMap::new(),
            idempotency: HashMap::new(),
            tokens: HashMap::new(),
            scripts,
            outage: None,
            recorded: Vec::new(),
            sha_cache: HashMap::new(),
        }
    }

    pub(crate) fn requests(&self) -> &[RecordedRequest] {
        &self.recorded
    }

    pub(crate) fn push_answers(&mut self, endpoint: Route, answers: Vec<ScriptedAnswer>) {
        self.scripts
            .entry(endpoint)
            .or_default()
            .answers
            .extend(answers);
    }

    pub(crate) fn set_repeat_last(&mut self, endpoint: Route, repeat_last: bool) {
        self.scripts.entry(endpoint).or_default().repeat_last = repeat_last;
    }

    pub(crate) fn set_outage(&mut self, outage: Option<Outage>) {
        self.outage = outage;
    }

    pub(crate) fn set_license(&mut self, key: &str, behaviour: LicenseBehaviour) {
        self.licenses.insert(key.to_string(), behaviour);
    }

    pub(crate) fn set_terms(&mut self, terms: LicenseTerms) {
        self.terms = terms;
    }

    /// The hardware_ids holding a seat of `key`, sorted, one entry per seat.
    pub(crate) fn activations(&self, key: &str) -> Vec<String> {
        let mut v = self.activations.get(key).cloned().unwrap_or_default();
        v.sort();
        v
    }

    /// Seats of `key` taken (by any hardware_id).
    pub(crate) fn seats(&self, key: &str) -> usize {
        self.activations.get(key).map_or(0, Vec::len)
    }

    /// Seats of `key` held by `hardware_id`.
    pub(crate) fn seats_of(&self, key: &str, hardware_id: &str) -> usize {
        self.activations
            .get(key)
            .map_or(0, |h| h.iter().filter(|x| *x == hardware_id).count())
    }

    /// The seat limit of `key`.
    fn seat_limit(&self, key: &str) -> usize {
        self.seat_limits
            .get(key)
            .copied()
            .unwrap_or(self.max_activations)
    }

    pub(crate) fn set_seat_limit(&mut self, key: &str, seats: usize) {
        self.seat_limits.insert(key.to_string(), seats);
    }

    pub(crate) fn set_clock_offset(&mut self, secs: i64) {
        self.clock_offset_secs = secs;
    }

    pub(crate) fn set_ignore_idempotency_key(&mut self, ignore: bool) {
        self.ignore_idempotency_key = ignore;
    }

    pub(crate) fn set_activate_counts_every_request(&mut self, counts: bool) {
        self.activate_counts_every_request = counts;
    }

    /// The portal's clock at the real instant `now`.
    pub(crate) fn portal_now(&self, now: Timestamp) -> Timestamp {
        offset(now, self.clock_offset_secs)
    }

    /// Decides the answer to one request, records it and logs one line.
    /// `now` is the real clock; the portal reads its own (`clock_offset`).
    pub(crate) fn answer(&mut self, req: &Incoming<'_>, now: Timestamp) -> Plan {
        let mut plan = match req.path.strip_prefix("/_sim/") {
            Some(what) => {
                let reply = self.control(what, req);
                tracing::info!(status = reply.status, "control {} {}", req.method, req.path);
                Plan::Reply(reply)
            }
            None => self.portal_answer(req, now),
        };
        if let Plan::Reply(r) = &mut plan {
            r.date_skew_secs = self.date_skew_secs.saturating_add(self.clock_offset_secs);
        }
        plan
    }

    /// The answer to a request that could not be parsed (the connection closes after it).
    pub(crate) fn malformed(&self, status: u16, msg: &str) -> Reply {
        tracing::info!(status, "malformed request: {msg}");
        let mut reply = Reply::json(
            status,
            json!({"success": false, "error": msg, "code": "VALIDATION_ERROR"}),
        );
        reply.date_skew_secs = self.date_skew_secs.saturating_add(self.clock_offset_secs);
        reply
    }

    fn portal_answer(&mut self, req: &Incoming<'_>, real_now: Timestamp) -> Plan {
        let now = self.portal_now(real_now);
        let endpoint = Route::of(req.method, req.path);
        let body: Option<Value> = serde_json::from_slice(req.body).ok();
        let plan = if let Some(outage) = &self.outage {
            outage_plan(outage, now)
        } else if let Some(answer) = self.next_scripted(endpoint) {
            self.scripted(answer, endpoint, req, body.as_ref(), now)
        } else {
            Plan::Reply(self.normal(endpoint, req, body.as_ref(), now))
        };

        let raw_key = body
            .as_ref()
            .and_then(|b| b.get("license_key"))
            .and_then(Value::as_str);
        let (key_masked, key_last4) = match raw_key.map(LicenseKey::parse) {
            Some(Ok(k)) => {
                let chars: Vec<char> = k.expose().chars().collect();
                let last4 = chars[chars.len().saturating_sub(4)..].iter().collect();
                (Some(k.masked()), Some(last4))
            }
            Some(Err(_)) => (Some("(malformed key)".to_string()), None),
            None => (None, None),
        };
        let masked_body = body.map(|mut b| {
            if let (Some(obj), Some(m)) = (b.as_object_mut(), &key_masked)
                && obj.contains_key("license_key")
            {
                obj.insert("license_key".into(), Value::String(m.clone()));
            }
            b
        });
        let status = plan.status();
        tracing::info!(
            endpoint = %endpoint,
            key = %key_masked.as_deref().unwrap_or("-"),
            replay = req.idempotency_key.is_some(),
            status = %status.map_or_else(|| "none".to_string(), |s| s.to_string()),
            "{} {}",
            req.method,
            req.path
        );
        self.recorded.push(RecordedRequest {
            endpoint,
            method: req.method.to_string(),
            path: req.path.to_string(),
            time: real_now,
            body: masked_body,
            key_masked,
            key_last4,
            status,
            idempotency_key: req.idempotency_key.map(str::to_string),
        });
        plan
    }

    fn next_scripted(&mut self, endpoint: Route) -> Option<ScriptedAnswer> {
        let script = self.scripts.get_mut(&endpoint)?;
        match script.answers.len() {
            0 => None,
            1 if script.repeat_last => script.answers.first().cloned(),
            _ => Some(script.answers.remove(0)),
        }
    }

    fn scripted(
        &mut self,
        a: ScriptedAnswer,
        endpoint: Route,
        req: &Incoming<'_>,
        body: Option<&Value>,
        now: Timestamp,
    ) -> Plan {
        let delay = Duration::from_millis(a.delay_ms);
        // A lost answer: the portal did its work, the client never hears of it.
        let committed = a.commit.then(|| self.normal(endpoint, req, body, now));
        if a.drop {
            return Plan::Drop { delay };
        }
        if a.stall {
            return Plan::Stall { delay };
        }
        let mut reply = if a.replaces_default() {
            let status = a
                .status
                .unwrap_or(if a.redirect_to.is_some() { 302 } else { 200 });
            Reply::bytes(
                status,
                a.body.as_ref().map(|b| b.to_bytes()).unwrap_or_default(),
            )
        } else if let Some(done) = committed {
            done
        } else {
            self.normal(endpoint, req, body, now)
        };
        if let Some(location) = &a.redirect_to {
            reply.set_header("Location", location);
        }
        for (name, value) in &a.headers {
            reply.set_header(name, &expand_clock(value, now));
        }
        if a.wrong_sha256 {
            match &mut reply.body {
                ReplyBody::Release { corrupt, .. } => *corrupt = true,
                ReplyBody::Bytes(bytes) => {
                    if let Ok(Value::Object(mut obj)) = serde_json::from_slice(bytes) {
                        obj.insert(
                            "sha256".into(),
                            Value::String(hex(&Sha256::digest(b"wrong"))),
                        );
                        *bytes = Value::Object(obj).to_string().into_bytes();
                    }
                }
                ReplyBody::Repeat { .. } => {}
            }
        }
        if let (true, ReplyBody::Release { len, .. }) = (a.short_file, &mut reply.body) {
            *len /= 2;
        }
        if let Some(len) = a.body_repeat {
            let unit = reply.body.as_bytes().unwrap_or_default().to_vec();
            reply.body = ReplyBody::Repeat { unit, len };
        }
        if a.stall_body {
            reply.delivery = Delivery::StallAfter(reply.body.len() / 2);
        }
        if let Some(n) = a.truncate_at {
            reply.delivery = Delivery::TruncateAt(n);
        }
        reply.delay = delay;
        Plan::Reply(reply)
    }

    /// The healthy portal's answer.
    fn normal(
        &mut self,
        endpoint: Route,
        req: &Incoming<'_>,
        body: Option<&Value>,
        now: Timestamp,
    ) -> Reply {
        let obj = body.and_then(Value::as_object);
        let result = match (endpoint, obj) {
            (Route::Unknown, _) => Err(not_found("Not found")),
            (Route::Release, _) => self.release(req, now),
            (_, None) => Err(Reply::json(
                400,
                with_valid(
                    endpoint,
                    json!({"error": "The request body is not a JSON object",
                           "code": "VALIDATION_ERROR"}),
                ),
            )),
            (Route::Portal(Endpoint::CheckUpdate), Some(obj)) => self.check_update(obj),
            (Route::Portal(Endpoint::Token), Some(obj)) => self.token(obj, now),
            (Route::Portal(Endpoint::Activate), Some(obj)) => {
                return self.activate(obj, req.idempotency_key, body, now);
            }
            (_, Some(obj)) => self.license(endpoint, obj, now),
        };
        result.unwrap_or_else(|refusal| refusal)
    }

    /// `license/activate`, deduplicated by `Idempotency-Key` (PORTAL.md): a
    /// key repeated within 24 h with the same body gets the first answer
    /// again (and takes no seat); with another body, 409
    /// `IDEMPOTENCY_KEY_CONFLICT`.
    fn activate(
        &mut self,
        obj: &Map<String, Value>,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
        now: Timestamp,
    ) -> Reply {
        let key = idempotency_key
            .filter(|_| !self.ignore_idempotency_key)
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let Some(key) = key else {
            return self
                .license(Route::Portal(Endpoint::Activate), obj, now)
                .unwrap_or_else(|r| r);
        };
        self.idempotency
            .retain(|_, r| now.since(r.at) < IDEMPOTENCY_WINDOW);
        let digest: [u8; 32] =
            Sha256::digest(body.map(Value::to_string).unwrap_or_default()).into();
        if let Some(first) = self.idempotency.get(key) {
            if first.body_digest != digest {
                return Reply::json(
                    409,
                    json!({"valid": false, "code": "IDEMPOTENCY_KEY_CONFLICT",
                           "error": "The idempotency key was used with a different request"}),
                );
            }
            let mut replay = Reply::bytes(first.status, first.body.clone());
            replay.set_header("Idempotent-Replayed", "true");
            return replay;
        }
        let reply = self
            .license(Route::Portal(Endpoint::Activate), obj, now)
            .unwrap_or_else(|r| r);
        if let Some(bytes) = reply.body.as_bytes() {
            self.idempotency.insert(
                key.to_string(),
                Remembered {
                    body_digest: digest,
                    status: reply.status,
                    body: bytes.to_vec(),
                    at: now,
                },
            );
        }
        reply
    }

    fn behaviour(&self, key: &str) -> LicenseBehaviour {
        self.licenses
            .get(key)
            .copied()
            .unwrap_or(LicenseBehaviour::InvalidKey)
    }

    fn license(
        &mut self,
        endpoint: Route,
        obj: &Map<String, Value>,
        now: Timestamp,
    ) -> Result<Reply, Reply> {
        use LicenseBehaviour as B;
        let (key, hwid) = required_fields(endpoint, obj)?;
        let refuse = |status: u16, error: &str, code: &str| {
            Reply::json(
                status,
                json!({"valid": false, "error": error, "code": code}),
            )
        };
        let behaviour = self.behaviour(key);
        match behaviour {
            B::InvalidKey => return Err(refuse(404, "Invalid license key", "INVALID_KEY")),
            B::Expired => return Err(refuse(403, "License expired", "EXPIRED")),
            B::Suspended => return Err(refuse(403, "License suspended", "SUSPENDED")),
            B::Revoked => return Err(refuse(403, "License revoked", "REVOKED")),
            B::VersionTooLow => {
                return Err(refuse(403, "Product version too low", "VERSION_TOO_LOW"));
            }
            B::HardwareMismatch => {}
            B::Valid | B::MaxActivations | B::UpdatesExpired => {}
        }
        let max = self.seat_limit(key);
        let counts_every = self.activate_counts_every_request;
        let hosts = self.activations.entry(key.to_string()).or_default();
        let known = hosts.iter().any(|h| h == hwid) && behaviour != B::HardwareMismatch;
        match endpoint {
            Route::Portal(Endpoint::Deactivate) if behaviour != B::HardwareMismatch => {
                // Idempotent: releasing a host that holds no activation
                // succeeds; every seat the host holds is released.
                hosts.retain(|h| h != hwid);
                return Ok(Reply::json(
                    200,
                    json!({"valid": false, "deactivated": true}),
                ));
            }
            Route::Portal(Endpoint::Activate)
                if (!known || counts_every) && behaviour != B::HardwareMismatch =>
            {
                if behaviour == B::MaxActivations || hosts.len() >= max {
                    return Err(refuse(
                        409,
                        "Maximum number of activations reached",
                        "MAX_ACTIVATIONS",
                    ));
                }
                hosts.push(hwid.to_string());
            }
            _ if !known => {
                return Err(refuse(
                    403,
                    "License is not activated on this hardware",
                    "HARDWARE_MISMATCH",
                ));
            }
            _ => {}
        }
        Ok(Reply::json(200, self.valid_body(key, now)))
    }

    fn valid_body(&self, key: &str, now: Timestamp) -> Value {
        let t = &self.terms;
        let masked = LicenseKey::parse(key)
            .map(|k| k.masked())
            .unwrap_or_else(|_| "WISP-****".to_string());
        json!({"valid": true, "license": {
            "key": masked,
            "tier": t.tier,
            "expires_at": offset(self.portal_now(self.started_at), t.expires_in_secs).to_rfc3339(),
            "valid_until": offset(now, t.valid_for_secs).to_rfc3339(),
            "max_users": t.max_users,
            "max_domains": t.max_domains,
            "max_databases": t.max_databases,
        }})
    }

    /// Whether a download endpoint may serve this key on this host.
    fn entitled(&self, key: &str, hwid: &str) -> Result<(), Reply> {
        let activated = self.seats_of(key, hwid) > 0;
        match self.behaviour(key) {
            LicenseBehaviour::Valid | LicenseBehaviour::MaxActivations if activated => Ok(()),
            LicenseBehaviour::UpdatesExpired if activated => Err(Reply::json(
                403,
                json!({"error": "Updates are no longer included in this license",
                       "code": "UPDATES_EXPIRED"}),
            )),
            _ => Err(Reply::json(401, json!({"error": "Invalid license"}))),
        }
    }

    fn check_update(&mut self, obj: &Map<String, Value>) -> Result<Reply, Reply> {
        let (key, hwid) = required_fields(Route::Portal(Endpoint::CheckUpdate), obj)?;
        let current_raw = obj.get("current_version").and_then(Value::as_str);
        let Some((current_raw, current)) =
            current_raw.and_then(|s| parse_version(s).map(|v| (s, v)))
        else {
            let mut details = Map::new();
            details.insert(
                "current_version".into(),
                json!(["The current version field must be a version like 1.4.2."]),
            );
            return Err(validation_error(
                Route::Portal(Endpoint::CheckUpdate),
                details,
            ));
        };
        self.entitled(key, hwid)?;
        if cmp_versions(&current, &MINIMUM_VERSION) == Ordering::Less {
            return Err(Reply::json(
                403,
                json!({"error": "This version is too old to update automatically",
                       "code": "VERSION_TOO_LOW", "minimum_version": "1.0.0"}),
            ));
        }
        let latest = parse_version(&self.latest_version).unwrap_or_default();
        Ok(Reply::json(
            200,
            json!({
                "update_available": cmp_versions(&latest, &current) == Ordering::Greater,
                "current_version": current_raw,
                "latest_version": self.latest_version,
                "changelog": self.changelog,
            }),
        ))
    }

    fn token(&mut self, obj: &Map<String, Value>, now: Timestamp) -> Result<Reply, Reply> {
        let (key, hwid) = required_fields(Route::Portal(Endpoint::Token), obj)?;
        self.entitled(key, hwid)?;
        let version = obj
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or(&self.latest_version)
            .trim()
            .to_string();
        let latest = parse_version(&self.latest_version).unwrap_or_default();
        match parse_version(&version) {
            Some(v)
                if cmp_versions(&v, &latest) != Ordering::Greater
                    && cmp_versions(&v, &MINIMUM_VERSION) != Ordering::Less
                    && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {}
            _ => return Err(not_found("Release not found")),
        }
        let token = hex(&rand::random::<[u8; 16]>());
        let expires_at = now.add(TOKEN_LIFETIME);
        self.tokens.retain(|_, t| t.expires_at > now);
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                version: version.clone(),
                expires_at,
            },
        );
        let size = self.release_size;
        let sha256 = self
            .sha_cache
            .entry(version.clone())
            .or_insert_with(|| release_sha256(&version, size))
            .clone();
        Ok(Reply::json(
            200,
            json!({
                "token": token,
                "url": format!("{}/releases/{}?token={token}", self.base_url, release_file_name(&version)),
                "expires_at": expires_at.to_rfc3339(),
                "sha256": sha256,
                "size": size,
            }),
        ))
    }

    fn release(&self, req: &Incoming<'_>, now: Timestamp) -> Result<Reply, Reply> {
        let version = req
            .path
            .strip_prefix("/releases/wispanel-")
            .and_then(|f| f.strip_suffix(".tar.gz"))
            .filter(|v| parse_version(v).is_some())
            .ok_or_else(|| not_found("Release not found"))?;
        let from_query = req
            .query
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
        let from_header = req
            .authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim);
        let token = from_query.or(from_header).and_then(|t| self.tokens.get(t));
        match token {
            Some(t) if t.version == version && t.expires_at > now => {
                let mut reply = Reply {
                    body: ReplyBody::Release {
                        seed: release_seed(version),
                        len: self.release_size,
                        corrupt: false,
                    },
                    ..Reply::bytes(200, Vec::new())
                };
                reply.set_header("Content-Type", "application/gzip");
                Ok(reply)
            }
            _ => Err(Reply::json(
                403,
                json!({"error": "Invalid or expired download token", "code": "FORBIDDEN"}),
            )),
        }
    }

    /// `/_sim/*`: runtime control for scripts.
    fn control(&mut self, what: &str, req: &Incoming<'_>) -> Reply {
        let bad = |msg: String| {
            Reply::json(
                400,
                json!({"success": false, "error": msg, "code": "VALIDATION_ERROR"}),
            )
        };
        if (req.method, what) == ("GET", "requests") {
            return Reply::json(200, json!(self.recorded));
        }
        if req.method != "POST" {
            return not_found("Not found");
        }
        let body: Value = match serde_json::from_slice(req.body) {
            Ok(v) => v,
            Err(e) => return bad(format!("the body is not JSON: {e}")),
        };
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
        match what {
            "license" => {
                let (Some(key), Some(behaviour)) = (text("license_key"), text("behaviour")) else {
                    return bad("expected {\"license_key\": ..., \"behaviour\": ...}".into());
                };
                match behaviour.parse::<LicenseBehaviour>() {
                    Ok(b) => {
                        self.set_license(&key, b);
                        Reply::json(200, json!({"ok": true}))
                    }
                    Err(e) => bad(e),
                }
            }
            "outage" => {
                match Outage::from_mode(&text("mode").unwrap_or_default(), text("retry_after")) {
                    Ok(o) => {
                        self.set_outage(o);
                        Reply::json(200, json!({"ok": true}))
                    }
                    Err(e) => bad(e),
                }
            }
            "answers" => {
                let endpoint = body
                    .get("endpoint")
                    .cloned()
                    .map(serde_json::from_value::<Route>);
                let answers = body
                    .get("answers")
                    .cloned()
                    .map(serde_json::from_value::<Vec<ScriptedAnswer>>);
                match (endpoint, answers) {
                    (Some(Ok(ep)), Some(Ok(list))) => {
                        if let Some(r) = body.get("repeat_last").and_then(Value::as_bool) {
                            self.set_repeat_last(ep, r);
                        }
                        self.push_answers(ep, list);
                        Reply::json(200, json!({"ok": true}))
                    }
                    _ => bad("expected {\"endpoint\": \"validate\", \"answers\": [...]}".into()),
                }
            }
            "seats" => {
                let Some(key) = text("license_key") else {
                    return bad("expected {\"license_key\": ..., \"limit\": N (optional)}".into());
                };
                if let Some(limit) = body.get("limit").and_then(Value::as_u64) {
                    self.set_seat_limit(&key, usize::try_from(limit).unwrap_or(usize::MAX));
                }
                Reply::json(
                    200,
                    json!({"seats": self.seats(&key), "limit": self.seat_limit(&key),
                           "hardware_ids": self.activations(&key)}),
                )
            }
            "mode" => {
                if let Some(text) = text("clock_offset") {
                    match super::scenario::parse_clock_offset(&text) {
                        Some(secs) => self.set_clock_offset(secs),
                        None => return bad(format!("clock_offset {text:?} is not like \"+1d\"")),
                    }
                }
                if let Some(b) = body.get("ignore_idempotency_key").and_then(Value::as_bool) {
                    self.set_ignore_idempotency_key(b);
                }
                if let Some(b) = body
                    .get("activate_counts_every_request")
                    .and_then(Value::as_bool)
                {
                    self.set_activate_counts_every_request(b);
                }
                Reply::json(
                    200,
                    json!({"clock_offset_secs": self.clock_offset_secs,
                           "ignore_idempotency_key": self.ignore_idempotency_key,
                           "activate_counts_every_request": self.activate_counts_every_request}),
                )
            }
            _ => not_found("Not found"),
        }
    }
}

fn not_found(error: &str) -> Reply {
    Reply::json(
        404,
        json!({"success": false, "error": error, "code": "NOT_FOUND"}),
    )
}

/// Licence endpoints put `"valid": false` in front of every refusal.
fn with_valid(endpoint: Route, v: Value) -> Value {
    match (endpoint.is_license(), v) {
        (true, Value::Object(obj)) => {
            let mut out = Map::new();
            out.insert("valid".into(), Value::Bool(false));
            out.extend(obj);
            Value::Object(out)
        }
        (_, v) => v,
    }
}

fn validation_error(endpoint: Route, details: Map<String, Value>) -> Reply {
    Reply::json(
        422,
        with_valid(
            endpoint,
            json!({"error": "Invalid request data", "code": "VALIDATION_ERROR",
                   "details": details}),
        ),
    )
}

/// `license_key` and a 64-character `hardware_id`, or the portal's 422.
fn required_fields(endpoint: Route, obj: &Map<String, Value>) -> Result<(&str, &str), Reply> {
    let mut details = Map::new();
    let key = obj
        .get("license_key")
        .and_then(Value::as_str)
        .filter(|k| !k.trim().is_empty());
    if key.is_none() {
        details.insert(
            "license_key".into(),
            json!(["The license key field is required."]),
        );
    }
    let hwid = match obj.get("hardware_id") {
        None | Some(Value::Null) => Err("The hardware id field is required."),
        Some(Value::String(h)) if h.chars().count() == 64 => Ok(h.as_str()),
        Some(Value::String(_)) => Err("The hardware id field must be 64 characters."),
        Some(_) => Err("The hardware id field must be a string."),
    };
    if let Err(msg) = hwid {
        details.insert("hardware_id".into(), json!([msg]));
    }
    match (key, hwid) {
        (Some(k), Ok(h)) => Ok((k, h)),
        _ => Err(validation_error(endpoint, details)),
    }
}

fn outage_plan(outage: &Outage, now: Timestamp) -> Plan {
    let reply = match outage {
        Outage::Drop => {
            return Plan::Drop {
                delay: Duration::ZERO,
            };
        }
        Outage::Stall => {
            return Plan::Stall {
                delay: Duration::ZERO,
            };
        }
        Outage::Status(s) => error_reply(*s),
        Outage::Unavailable { retry_after } => {
            error_reply(503).with_header("Retry-After", &expand_clock(retry_after, now))
        }
        Outage::RateLimit { retry_after } => {
            let wait = retry_after
                .as_deref()
                .and_then(|r| r.trim().parse::<i64>().ok())
                .unwrap_or(60);
            let reset = now.unix_secs().saturating_add(wait).to_string();
            let mut r = error_reply(429)
                .with_header("X-RateLimit-Limit", "20")
                .with_header("X-RateLimit-Remaining", "0")
                .with_header("X-RateLimit-Reset", &reset);
            if let Some(ra) = retry_after {
                r.set_header("Retry-After", &expand_clock(ra, now));
            }
            r
        }
    };
    Plan::Reply(reply)
}

/// A panel-style error body for a bare status.
fn error_reply(status: u16) -> Reply {
    let code = match status {
        400 | 422 => Some("VALIDATION_ERROR"),
        401 => Some("UNAUTHORIZED"),
        403 => Some("FORBIDDEN"),
        404 => Some("NOT_FOUND"),
        409 => Some("CONFLICT"),
        429 => Some("RATE_LIMITED"),
        500..=599 => Some("INTERNAL_ERROR"),
        _ => None,
    };
    let mut body = json!({"success": false, "error": reason(status)});
    if let (Some(code), Some(obj)) = (code, body.as_object_mut()) {
        obj.insert("code".into(), Value::String(code.into()));
    }
    Reply::json(status, body)
}

/// The reason phrase for a status line.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Expands a header value that names the portal's clock: `{date+120}` (an
/// HTTP date 120 s after `now`), `{date-5}`, `{unix+90}` (unix seconds).
/// Anything else is returned as is.
pub(crate) fn expand_clock(value: &str, now: Timestamp) -> String {
    let parse = |inner: &str, prefix: &str| -> Option<i64> {
        let rest = inner.strip_prefix(prefix)?;
        if rest.is_empty() {
            return Some(0);
        }
        let (sign, n) = match rest.as_bytes()[0] {
            b'+' => (1, &rest[1..]),
            b'-' => (-1, &rest[1..]),
            _ => return None,
        };
        n.parse::<i64>().ok().map(|n| sign * n)
    };
    let Some(inner) = value
        .trim()
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
    else {
        return value.to_string();
    };
    if let Some(secs) = parse(inner, "date") {
        return offset(now, secs).to_http_date();
    }
    if let Some(secs) = parse(inner, "unix") {
        return offset(now, secs).unix_secs().to_string();
    }
    value.to_string()
}

fn offset(t: Timestamp, secs: i64) -> Timestamp {
    Timestamp(t.millis().saturating_add(secs.saturating_mul(1000)))
}

/// `1.4.2`, `v1.4`, `1.5.0-beta` (pre-release and build ignored) as numbers.
pub(crate) fn parse_version(s: &str) -> Option<Vec<u64>> {
    let s = s.trim();
    let core = s.strip_prefix('v').unwrap_or(s).split(['-', '+']).next()?;
    let parts = core
        .split('.')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    (1..=4).contains(&parts.len()).then_some(parts)
}

/// Compares dotted versions, missing parts counting as 0 (`1.5` = `1.5.0`).
pub(crate) fn cmp_versions(a: &[u64], b: &[u64]) -> Ordering {
    let n = a.len().max(b.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    (0..n)
        .map(|i| at(a, i).cmp(&at(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file name a release is served under.
pub fn release_file_name(version: &str) -> String {
    format!("wispanel-{version}.tar.gz")
}

fn release_seed(version: &str) -> u64 {
    let digest = Sha256::digest(format!("wispanel-portal-sim release {version}").as_bytes());
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(seed)
}

/// Word `i` of the release stream: SplitMix64 of a counter, so any range of
/// the file can be produced without the bytes before it.
fn release_word(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fill_release(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut out = buf;
    while !out.is_empty() {
        let word = release_word(seed, pos / 8).to_le_bytes();
        let from = (pos % 8) as usize;
        let n = (8 - from).min(out.len());
        out[..n].copy_from_slice(&word[from..from + n]);
        out = &mut out[n..];
        pos += n as u64;
    }
}

/// The release file for `version` (deterministic pseudo-random bytes).
pub fn release_bytes(version: &str, size: u64) -> Vec<u8> {
    let mut v = vec![0u8; usize::try_from(size).unwrap_or(0)];
    fill_release(release_seed(version), 0, &mut v);
    v
}

/// SHA-256 (lowercase hex) of the release file, computed in 64 KiB steps.
pub fn release_sha256(version: &str, size: u64) -> String {
    let seed = release_seed(version);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0;
    while pos < size {
        let n = usize::try_from(size - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        fill_release(seed, pos, &mut buf[..n]);
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::keys;

    const HW_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HW_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn portal() -> SimulatedPortal {
        SimulatedPortal::new(
            Scenario::default(),
            "https://127.0.0.1:1".into(),
            Timestamp::from_unix_secs(1_800_000_000),
        )
    }

    fn now() -> Timestamp {
        Timestamp::from_unix_secs(1_800_000_100)
    }

    /// Sends a POST and returns the status and the JSON body.
    fn post(p: &mut SimulatedPortal, path: &str, body: Value) -> (u16, Value) {
        let raw = body.to_string();
        let plan = p.answer(
            &Incoming {
                method: "POST",
                path,
                query: None,
                authorization: None,
                idempotency_key: None,
                body: raw.as_bytes(),
            },
            now(),
        );
        reply_json(plan)
    }

    fn reply_json(plan: Plan) -> (u16, Value) {
        match plan {
            Plan::Reply(r) => {
                let bytes = r.body.as_bytes().unwrap_or_default();
                (
                    r.status,
                    serde_json::from_slice(bytes).unwrap_or(Value::Null),
                )
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn lic(p: &mut SimulatedPortal, ep: &str, key: &str, hw: &str) -> (u16, Value) {
        post(
            p,
            &format!("/api/v1/license/{ep}"),
            json!({"license_key": key, "hardware_id": hw, "product_version": "1.4.2"}),
        )
    }

    #[test]
    fn healthy_flow_and_activation_limit() {
        let mut p = portal();
        let (s, b) = lic(&mut p, "validate", keys::GOOD, HW_A);
        assert_eq!((s, b["code"].as_str()), (403, Some("HARDWARE_MISMATCH")));
        let (s, b) = lic(&mut p, "activate", keys::GOOD, HW_A);
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["valid"], true);
        assert_eq!(b["license"]["key"], "WISP-****SA6T");
        assert_eq!(b["license"]["tier"], "pro");
        assert_eq!(b["license"]["max_databases"], -1);
        assert_eq!(
            b["license"]["valid_until"],
            offset(now(), 7 * 86_400).to_rfc3339()
        );
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).0, 200);
        let (s, b) = lic(&mut p, "deactivate", keys::GOOD, HW_A);
        assert_eq!(
            (s, &b),
            (200, &json!({"valid": false, "deactivated": true}))
        );
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).0, 403);

        for i in 0..3 {
            let hw = format!("{i}").repeat(64);
            assert_eq!(lic(&mut p, "activate", keys::GOOD, &hw).0, 200);
        }
        let (s, b) = lic(&mut p, "activate", keys::GOOD, HW_B);
        assert_eq!((s, b["code"].as_str()), (409, Some("MAX_ACTIVATIONS")));
        assert_eq!(p.activations(keys::GOOD).len(), 3);
    }

    /// An `activate` of `key` on `hw` with an optional `Idempotency-Key`
    /// and product version, at `at` (real clock).
    fn act_at(
        p: &mut SimulatedPortal,
        key: &str,
        hw: &str,
        idem: Option<&str>,
        version: &str,
        at: Timestamp,
    ) -> Plan {
        let raw = json!({"license_key": key, "hardware_id": hw, "hostname": "h",
                         "product_version": version})
        .to_string();
        p.answer(
            &Incoming {
                method: "POST",
                path: "/api/v1/license/activate",
                query: None,
                authorization: None,
                idempotency_key: idem,
                body: raw.as_bytes(),
            },
            at,
        )
    }

    fn act(p: &mut SimulatedPortal, key: &str, hw: &str, idem: Option<&str>) -> (u16, Value) {
        reply_json(act_at(p, key, hw, idem, "1.4.2", now()))
    }

    #[test]
    fn seats_per_hardware_id_or_per_activate() {
        let mut p = portal();
        p.set_seat_limit(keys::GOOD, 2);
        // Idempotent per hardware_id (default): a second activate takes no seat.
        assert_eq!(act(&mut p, keys::GOOD, HW_A, None).0, 200);
        assert_eq!(act(&mut p, keys::GOOD, HW_A, None).0, 200);
        assert_eq!((p.seats(keys::GOOD), p.seats_of(keys::GOOD, HW_A)), (1, 1));
        // A portal that counts every activate: the same host takes a second seat,
        // then the limit refuses even that host.
        p.set_activate_counts_every_request(true);
        assert_eq!(act(&mut p, keys::GOOD, HW_A, None).0, 200);
        assert_eq!(p.seats_of(keys::GOOD, HW_A), 2);
        let (s, b) = act(&mut p, keys::GOOD, HW_A, None);
        assert_eq!((s, b["code"].as_str()), (409, Some("MAX_ACTIVATIONS")));
        // validate is valid iff the host holds a seat.
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).0, 200);
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_B).0, 403);
        // deactivate frees every seat of the host.
        assert_eq!(lic(&mut p, "deactivate", keys::GOOD, HW_A).0, 200);
        assert_eq!(p.seats(keys::GOOD), 0);
    }

    #[test]
    fn a_repeated_idempotency_key_gets_the_first_answer() {
        for counts_every in [false, true] {
            let mut p = portal();
            p.set_seat_limit(keys::GOOD, 1);
            p.set_activate_counts_every_request(counts_every);
            let first = act(&mut p, keys::GOOD, HW_A, Some("k-1"));
            assert_eq!(first.0, 200);
            // The same key and body: the first answer, byte for byte, no seat.
            let again = act_at(&mut p, keys::GOOD, HW_A, Some("k-1"), "1.4.2", now());
            match &again {
                Plan::Reply(r) => assert_eq!(r.header("Idempotent-Replayed"), Some("true")),
                other => panic!("{other:?}"),
            }
            assert_eq!(reply_json(again), first);
            assert_eq!(p.seats(keys::GOOD), 1);
            // The same key with another body: a conflict, no seat.
            let (s, b) = reply_json(act_at(
                &mut p,
                keys::GOOD,
                HW_A,
                Some("k-1"),
                "1.5.0",
                now(),
            ));
            assert_eq!(
                (s, b["code"].as_str()),
                (409, Some("IDEMPOTENCY_KEY_CONFLICT"))
            );
            // A new key: processed as any activate.
            let (s, b) = act(&mut p, keys::GOOD, HW_A, Some("k-2"));
            if counts_every {
                assert_eq!((s, b["code"].as_str()), (409, Some("MAX_ACTIVATIONS")));
            } else {
                assert_eq!(s, 200);
            }
            assert_eq!(p.seats(keys::GOOD), 1);
            // After 24 hours the key is forgotten.
            let later = offset(now(), 24 * 3600 + 1);
            let (s, _) = reply_json(act_at(
                &mut p,
                keys::GOOD,
                HW_A,
                Some("k-1"),
                "1.5.0",
                later,
            ));
            assert_eq!(s, if counts_every { 409 } else { 200 });
        }
    }

    #[test]
    fn a_portal_that_ignores_the_header() {
        let mut p = portal();
        p.set_ignore_idempotency_key(true);
        p.set_activate_counts_every_request(true);
        p.set_seat_limit(keys::GOOD, 3);
        for _ in 0..2 {
            assert_eq!(act(&mut p, keys::GOOD, HW_A, Some("k-1")).0, 200);
        }
        assert_eq!(
            p.seats_of(keys::GOOD, HW_A),
            2,
            "the header changed nothing"
        );
    }

    #[test]
    fn a_lost_answer_commits_first() {
        let mut p = portal();
        p.set_seat_limit(keys::GOOD, 1);
        p.push_answers(
            Endpoint::Activate.into(),
            vec![
                ScriptedAnswer::lost(),
                ScriptedAnswer::committed_then_status(503),
                ScriptedAnswer::committed_then_stall(),
            ],
        );
        assert!(matches!(
            act_at(&mut p, keys::GOOD, HW_A, Some("k-1"), "1.4.2", now()),
            Plan::Drop { .. }
        ));
        assert_eq!(
            p.seats(keys::GOOD),
            1,
            "the seat is taken though the answer was lost"
        );
        // The retry with the same key is a replay, even though the portal
        // answers it with a 5xx this time; then a stall.
        assert_eq!(act(&mut p, keys::GOOD, HW_A, Some("k-1")).0, 503);
        assert!(matches!(
            act_at(&mut p, keys::GOOD, HW_A, Some("k-1"), "1.4.2", now()),
            Plan::Stall { .. }
        ));
        assert_eq!(act(&mut p, keys::GOOD, HW_A, Some("k-1")).0, 200);
        assert_eq!(p.seats(keys::GOOD), 1);
        // Without the header (and a portal counting every activate) the retry
        // is refused: the host's own lost activation holds the only seat.
        p.set_activate_counts_every_request(true);
        let (s, b) = act(&mut p, keys::GOOD, HW_A, None);
        assert_eq!((s, b["code"].as_str()), (409, Some("MAX_ACTIVATIONS")));
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).0, 200);
        let recorded: Vec<_> = p
            .requests()
            .iter()
            .map(|r| r.idempotency_key.clone())
            .collect();
        assert_eq!(recorded[0].as_deref(), Some("k-1"));
        assert_eq!(recorded[4], None);
    }

    #[test]
    fn a_skewed_clock_moves_every_date_the_portal_sends() {
        let day = 86_400;
        for off in [-day, day] {
            let mut p = portal();
            p.set_clock_offset(off);
            let pnow = offset(now(), off);
            let (_, b) = act(&mut p, keys::GOOD, HW_A, None);
            assert_eq!(
                b["license"]["valid_until"],
                offset(pnow, 7 * day).to_rfc3339(),
                "valid_until in the portal's clock"
            );
            let start = offset(Timestamp::from_unix_secs(1_800_000_000), off);
            assert_eq!(
                b["license"]["expires_at"],
                offset(start, 365 * day).to_rfc3339()
            );
            p.set_outage(Some(Outage::RateLimit {
                retry_after: Some("{date+120}".into()),
            }));
            match act_at(&mut p, keys::GOOD, HW_A, None, "1.4.2", now()) {
                Plan::Reply(r) => {
                    assert_eq!(r.date_skew_secs, off, "the Date header");
                    let ra = r.header("Retry-After").unwrap();
                    assert_eq!(Timestamp::parse_http_date(ra), Some(offset(pnow, 120)));
                    let reset = r.header("X-RateLimit-Reset").unwrap();
                    assert_eq!(reset, (pnow.unix_secs() + 60).to_string());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            expand_clock("{unix-5}", now()),
            (now().unix_secs() - 5).to_string()
        );
        assert_eq!(expand_clock("{date}", now()), now().to_http_date());
        for as_is in ["60", "{soon}", "{date*2}", "{unix+x}"] {
            assert_eq!(expand_clock(as_is, now()), as_is);
        }
    }

    #[test]
    fn seat_and_mode_control() {
        let mut p = portal();
        act(&mut p, keys::GOOD, HW_A, None);
        let (s, b) = post(
            &mut p,
            "/_sim/seats",
            json!({"license_key": keys::GOOD, "limit": 1}),
        );
        assert_eq!(s, 200);
        assert_eq!(
            (b["seats"].as_u64(), b["limit"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(b["hardware_ids"], json!([HW_A]));
        let (s, b) = post(
            &mut p,
            "/_sim/mode",
            json!({"clock_offset": "-1d", "ignore_idempotency_key": true,
                   "activate_counts_every_request": true}),
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["clock_offset_secs"], -86_400);
        assert_eq!(p.portal_now(now()), offset(now(), -86_400));
        assert_eq!(
            post(&mut p, "/_sim/mode", json!({"clock_offset": "x"})).0,
            400
        );
    }

    #[test]
    fn every_builtin_key() {
        let mut p = portal();
        for (key, status, code) in [
            (keys::EXPIRED, 403, "EXPIRED"),
            (keys::SUSPENDED, 403, "SUSPENDED"),
            (keys::REVOKED, 403, "REVOKED"),
            ("WISP-NOPE-0000-0000", 404, "INVALID_KEY"),
        ] {
            for ep in ["activate", "validate"] {
                let (s, b) = lic(&mut p, ep, key, HW_A);
                assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{key} {ep}");
                assert_eq!(b["valid"], false);
            }
        }
        let (s, b) = lic(&mut p, "activate", keys::MAX_ACTIVATIONS, HW_A);
        assert_eq!((s, b["code"].as_str()), (409, Some("MAX_ACTIVATIONS")));
        let (s, b) = lic(&mut p, "validate", keys::MAX_ACTIVATIONS, HW_A);
        assert_eq!((s, b["code"].as_str()), (403, Some("HARDWARE_MISMATCH")));

        assert_eq!(lic(&mut p, "activate", keys::NO_UPDATES, HW_A).0, 200);
        let (s, b) = post(
            &mut p,
            "/api/v1/download/check-update",
            json!({"license_key": keys::NO_UPDATES, "hardware_id": HW_A,
                   "current_version": "1.4.2", "channel": "stable"}),
        );
        assert_eq!((s, b["code"].as_str()), (403, Some("UPDATES_EXPIRED")));
    }

    #[test]
    fn validation_errors() {
        let mut p = portal();
        let (s, b) = lic(&mut p, "validate", keys::GOOD, "abc");
        assert_eq!(s, 422);
        assert_eq!(
            b,
            json!({"valid": false, "error": "Invalid request data", "code": "VALIDATION_ERROR",
                   "details": {"hardware_id": ["The hardware id field must be 64 characters."]}})
        );
        let (s, b) = post(
            &mut p,
            "/api/v1/license/validate",
            json!({"hardware_id": HW_A}),
        );
        assert_eq!(s, 422);
        assert!(b["details"]["license_key"].is_array(), "{b}");
        let plan = p.answer(
            &Incoming {
                method: "POST",
                path: "/api/v1/license/validate",
                query: None,
                authorization: None,
                idempotency_key: None,
                body: b"not json",
            },
            now(),
        );
        assert_eq!(reply_json(plan).0, 400);
    }

    #[test]
    fn check_update_and_token() {
        let mut p = portal();
        let upd = |p: &mut SimulatedPortal, key: &str, v: &str| {
            post(
                p,
                "/api/v1/download/check-update",
                json!({"license_key": key, "hardware_id": HW_A,
                       "current_version": v, "channel": "stable"}),
            )
        };
        // Not activated yet: the bare 401.
        assert_eq!(
            upd(&mut p, keys::GOOD, "1.4.2"),
            (401, json!({"error": "Invalid license"}))
        );
        assert_eq!(
            upd(&mut p, "WISP-NOPE-0000-0000", "1.4.2"),
            (401, json!({"error": "Invalid license"}))
        );
        lic(&mut p, "activate", keys::GOOD, HW_A);
        let (s, b) = upd(&mut p, keys::GOOD, "1.4.2");
        assert_eq!(s, 200);
        assert_eq!(b["update_available"], true);
        assert_eq!(b["latest_version"], "1.5.0");
        assert_eq!(b["current_version"], "1.4.2");
        assert!(b["changelog"].as_str().unwrap().starts_with("## 1.5.0"));
        assert_eq!(upd(&mut p, keys::GOOD, "1.5").1["update_available"], false);
        assert_eq!(
            upd(&mut p, keys::GOOD, "2.0.0").1["update_available"],
            false
        );
        let (s, b) = upd(&mut p, keys::GOOD, "0.0.1");
        assert_eq!((s, b["code"].as_str()), (403, Some("VERSION_TOO_LOW")));
        assert_eq!(upd(&mut p, keys::GOOD, "soon").0, 422);

        let (s, b) = post(
            &mut p,
            "/api/v1/download/token",
            json!({"license_key": keys::GOOD, "hardware_id": HW_A, "version": "1.5.0"}),
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["size"], 256 * 1024);
        assert_eq!(b["sha256"], release_sha256("1.5.0", 256 * 1024));
        let url = b["url"].as_str().unwrap();
        assert!(
            url.starts_with("https://127.0.0.1:1/releases/wispanel-1.5.0.tar.gz?token="),
            "{url}"
        );
        let token = b["token"].as_str().unwrap();
        let get = |p: &mut SimulatedPortal, path: &str, query: Option<&str>| {
            p.answer(
                &Incoming {
                    method: "GET",
                    path,
                    query,
                    authorization: None,
                    idempotency_key: None,
                    body: b"",
                },
                now(),
            )
        };
        let q = format!("token={token}");
        match get(&mut p, "/releases/wispanel-1.5.0.tar.gz", Some(&q)) {
            Plan::Reply(r) => {
                assert_eq!(r.status, 200);
                assert_eq!(r.body.len(), 256 * 1024);
                assert_eq!(r.header("Content-Type"), Some("application/gzip"));
            }
            other => panic!("{other:?}"),
        }
        let wrong = get(
            &mut p,
            "/releases/wispanel-1.5.0.tar.gz",
            Some("token=nope"),
        );
        assert_eq!(reply_json(wrong).0, 403);
        let other = get(&mut p, "/releases/wispanel-1.4.0.tar.gz", Some(&q));
        assert_eq!(reply_json(other).0, 403, "a token is for one version");
        let (s, _) = post(
            &mut p,
            "/api/v1/download/token",
            json!({"license_key": keys::GOOD, "hardware_id": HW_A, "version": "9.9.9"}),
        );
        assert_eq!(s, 404);
    }

    #[test]
    fn scripts_then_default_and_repeat_last() {
        let mut p = portal();
        lic(&mut p, "activate", keys::GOOD, HW_A);
        p.push_answers(
            Route::Portal(Endpoint::Validate),
            vec![
                ScriptedAnswer::json(503, json!({"code": "INTERNAL_ERROR"})),
                ScriptedAnswer::raw(200, "<html>"),
            ],
        );
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).0, 503);
        assert_eq!(
            lic(&mut p, "validate", keys::GOOD, HW_A),
            (200, Value::Null),
            "the raw body is not JSON"
        );
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).1["valid"], true);

        p.set_repeat_last(Route::Portal(Endpoint::Validate), true);
        p.push_answers(
            Route::Portal(Endpoint::Validate),
            vec![ScriptedAnswer::status(500)],
        );
        for _ in 0..3 {
            assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).0, 500);
        }
        // A scripted status leaves the state alone: no activation happened.
        p.push_answers(
            Route::Portal(Endpoint::Activate),
            vec![ScriptedAnswer::status(500)],
        );
        assert_eq!(lic(&mut p, "activate", keys::GOOD, HW_B).0, 500);
        assert_eq!(p.activations(keys::GOOD), vec![HW_A.to_string()]);
    }

    #[test]
    fn outage_wins_and_records() {
        let mut p = portal();
        p.set_outage(Some(Outage::RateLimit {
            retry_after: Some("2".into()),
        }));
        let plan = p.answer(
            &Incoming {
                method: "POST",
                path: "/api/v1/license/validate",
                query: None,
                authorization: None,
                idempotency_key: None,
                body: json!({"license_key": keys::GOOD, "hardware_id": HW_A})
                    .to_string()
                    .as_bytes(),
            },
            now(),
        );
        match plan {
            Plan::Reply(r) => {
                assert_eq!(r.status, 429);
                assert_eq!(r.header("Retry-After"), Some("2"));
                assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
                assert_eq!(
                    r.header("X-RateLimit-Reset"),
                    Some((now().unix_secs() + 2).to_string().as_str())
                );
            }
            other => panic!("{other:?}"),
        }
        p.set_outage(Some(Outage::Drop));
        assert!(matches!(
            p.answer(
                &Incoming {
                    method: "POST",
                    path: "/x",
                    query: None,
                    authorization: None,
                    idempotency_key: None,
                    body: b""
                },
                now()
            ),
            Plan::Drop { .. }
        ));
        let rec = p.requests();
        assert_eq!(rec.len(), 2);
        assert_eq!(rec[0].key_masked.as_deref(), Some("WISP-****SA6T"));
        assert_eq!(rec[0].key_last4.as_deref(), Some("SA6T"));
        assert_eq!(
            rec[0].body.as_ref().unwrap()["license_key"],
            "WISP-****SA6T"
        );
        assert_eq!(rec[0].status, Some(429));
        assert_eq!(rec[1].endpoint, Route::Unknown);
        assert_eq!(rec[1].status, None);
        let all = serde_json::to_string(rec).unwrap();
        assert!(!all.contains(keys::GOOD), "{all}");
    }

    #[test]
    fn control_endpoints() {
        let mut p = portal();
        let (s, _) = post(
            &mut p,
            "/_sim/license",
            json!({"license_key": keys::GOOD, "behaviour": "expired"}),
        );
        assert_eq!(s, 200);
        assert_eq!(
            lic(&mut p, "validate", keys::GOOD, HW_A).1["code"],
            "EXPIRED"
        );
        let (s, _) = post(
            &mut p,
            "/_sim/outage",
            json!({"mode": "503", "retry_after": "7"}),
        );
        assert_eq!(s, 200);
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).0, 503);
        assert_eq!(post(&mut p, "/_sim/outage", json!({"mode": "none"})).0, 200);
        assert_eq!(
            post(&mut p, "/_sim/outage", json!({"mode": "sometimes"})).0,
            400
        );
        let (s, _) = post(
            &mut p,
            "/_sim/answers",
            json!({"endpoint": "validate", "answers": [{"status": 418}]}),
        );
        assert_eq!(s, 200);
        assert_eq!(lic(&mut p, "validate", keys::GOOD, HW_A).0, 418);
        assert_eq!(p.requests().len(), 3, "control requests are not recorded");
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.4.2"), Some(vec![1, 4, 2]));
        assert_eq!(parse_version("v1.5.0-beta.1"), Some(vec![1, 5, 0]));
        assert_eq!(parse_version("1..2"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(cmp_versions(&[1, 5], &[1, 5, 0]), Ordering::Equal);
        assert_eq!(cmp_versions(&[1, 10, 0], &[1, 9, 9]), Ordering::Greater);
    }

    #[test]
    fn release_bytes_are_deterministic_and_chunk_independent() {
        let a = release_bytes("1.5.0", 1000);
        assert_eq!(a, release_bytes("1.5.0", 1000));
        assert_ne!(a, release_bytes("1.4.0", 1000));
        let mut part = vec![0u8; 13];
        fill_release(release_seed("1.5.0"), 501, &mut part);
        assert_eq!(part, a[501..514]);
        let body = ReplyBody::Release {
            seed: release_seed("1.5.0"),
            len: 1000,
            corrupt: false,
        };
        let mut streamed = vec![0u8; 1000];
        let mut at = 0;
        while at < 1000 {
            at += body.fill(at as u64, &mut streamed[at..(at + 77).min(1000)]);
        }
        assert_eq!(streamed, a);
        assert_eq!(release_sha256("1.5.0", 1000), hex(&Sha256::digest(&a)));
    }

    #[test]
    fn repeat_body_fills_cyclically() {
        let body = ReplyBody::Repeat {
            unit: b"abc".to_vec(),
            len: 8,
        };
        let mut buf = [0u8; 16];
        assert_eq!(body.fill(2, &mut buf), 6);
        assert_eq!(&buf[..6], b"cabcab");
    }
}
