//! What the simulated portal knows (keys, terms, the latest release) and what
//! it has been scripted to do, as loaded from a TOML scenario file or built in
//! code by a test.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The built-in keys of the default scenario.
pub mod keys {
    /// Valid: tier `pro`, expires a year after the sim started.
    pub const GOOD: &str = "WISP-GOOD-0000-SA6T";
    /// `EXPIRED` (403).
    pub const EXPIRED: &str = "WISP-EXPD-0000-0001";
    /// `SUSPENDED` (403).
    pub const SUSPENDED: &str = "WISP-SUSP-0000-0002";
    /// `REVOKED` (403).
    pub const REVOKED: &str = "WISP-REVK-0000-0003";
    /// Activation answers `MAX_ACTIVATIONS` (409); validation on a host that
    /// is not activated answers `HARDWARE_MISMATCH` (403).
    pub const MAX_ACTIVATIONS: &str = "WISP-MAXA-0000-0004";
    /// A valid licence whose download endpoints answer `UPDATES_EXPIRED` (403).
    pub const NO_UPDATES: &str = "WISP-NOUP-0000-0005";
}

/// The portal's endpoints: the client's own enum, one for both sides.
pub use wispanel_core::Endpoint;

/// Where a request to the simulator went: one of the portal's endpoints, or
/// one of the simulator's own routes. Serialised by [`Route::name`]
/// (`validate`, `check_update`, …, `release`, `unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST` to one of the five portal endpoints.
    Portal(Endpoint),
    /// `GET /releases/<file>`
    Release,
    /// Anything else (answered 404 `NOT_FOUND`).
    Unknown,
}

impl Route {
    /// Every route, in order.
    pub const ALL: [Route; 7] = [
        Route::Portal(Endpoint::Activate),
        Route::Portal(Endpoint::Validate),
        Route::Portal(Endpoint::Deactivate),
        Route::Portal(Endpoint::CheckUpdate),
        Route::Portal(Endpoint::Token),
        Route::Release,
        Route::Unknown,
    ];

    /// The route a method and path (without query) address. The portal
    /// paths are the client's own (`Endpoint::path`).
    pub fn of(method: &str, path: &str) -> Route {
        if method == "GET" && path.starts_with("/releases/") {
            return Route::Release;
        }
        Endpoint::ALL
            .into_iter()
            .find(|e| method == "POST" && e.path() == path)
            .map_or(Route::Unknown, Route::Portal)
    }

    /// The name used in scenario files, logs and `/_sim/requests` (the
    /// client's metric label for the portal endpoints).
    pub fn name(self) -> &'static str {
        match self {
            Route::Portal(e) => e.as_str(),
            Route::Release => "release",
            Route::Unknown => "unknown",
        }
    }

    /// The route named `name`.
    pub fn from_name(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The portal endpoint, for the five portal routes.
    pub fn portal(self) -> Option<Endpoint> {
        match self {
            Route::Portal(e) => Some(e),
            Route::Release | Route::Unknown => None,
        }
    }

    /// A licence endpoint (answers carry `valid`).
    pub fn is_license(self) -> bool {
        self.portal().is_some_and(Endpoint::is_licence)
    }

    fn rank(self) -> usize {
        Route::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(Route::ALL.len())
    }
}

impl From<Endpoint> for Route {
    fn from(e: Endpoint) -> Route {
        Route::Portal(e)
    }
}

impl PartialEq<Endpoint> for Route {
    fn eq(&self, other: &Endpoint) -> bool {
        *self == Route::Portal(*other)
    }
}

impl PartialOrd for Route {
    fn partial_cmp(&self, other: &Route) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Route {
    fn cmp(&self, other: &Route) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Route, D::Error> {
        let name = String::deserialize(d)?;
        Route::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown endpoint {name:?} (one of: {})",
                Route::ALL.map(Route::name).join(", ")
            ))
        })
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the portal says about a key. Keys not in the table are `invalid_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseBehaviour {
    /// Valid with the scenario's [`LicenseTerms`]; up to `max_activations` hosts.
    Valid,
    /// `EXPIRED` (403) on licence endpoints; 401 on download endpoints.
    Expired,
    /// `SUSPENDED` (403) on licence endpoints; 401 on download endpoints.
    Suspended,
    /// `REVOKED` (403) on licence endpoints; 401 on download endpoints.
    Revoked,
    /// Valid on hosts already activated; a new activation answers
    /// `MAX_ACTIVATIONS` (409).
    MaxActivations,
    /// `HARDWARE_MISMATCH` (403) on every licence endpoint.
    HardwareMismatch,
    /// A valid licence; download endpoints answer `UPDATES_EXPIRED` (403).
    UpdatesExpired,
    /// `VERSION_TOO_LOW` (403) on licence endpoints.
    VersionTooLow,
    /// Unknown to the portal: `INVALID_KEY` (404); 401 on download endpoints.
    InvalidKey,
}

impl std::str::FromStr for LicenseBehaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!(
                "unknown behaviour {s:?}; expected valid, expired, suspended, revoked, \
                 max_activations, hardware_mismatch, updates_expired, version_too_low or invalid_key"
            )
        })
    }
}

/// The terms a valid licence is reported with. Times are relative so a
/// scenario file stays valid: `expires_at` counts from the sim's start,
/// `valid_until` from each answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LicenseTerms {
    pub tier: String,
    /// `expires_at` = sim start + this many seconds (may be negative).
    pub expires_in_secs: i64,
    /// `valid_until` = time of the answer + this many seconds (may be negative).
    pub valid_for_secs: i64,
    pub max_users: i64,
    pub max_domains: i64,
    pub max_databases: i64,
}

impl Default for LicenseTerms {
    fn default() -> Self {
        LicenseTerms {
            tier: "pro".to_string(),
            expires_in_secs: 365 * 86_400,
            valid_for_secs: 7 * 86_400,
            max_users: 30,
            max_domains: 100,
            max_databases: -1,
        }
    }
}

/// A scripted body: a TOML/JSON string is sent as is (so it can be broken
/// JSON or HTML); any other value (table, array, number) is sent as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Body {
    Raw(String),
    Json(serde_json::Value),
}

impl Body {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Body::Raw(s) => s.as_bytes().to_vec(),
            Body::Json(v) => v.to_string().into_bytes(),
        }
    }
}

/// One scripted answer. Without `status`, `body` and `redirect_to` it is the
/// portal's normal answer (state changes included) with the actions applied;
/// with any of them, the portal's state is left alone and this answer is sent
/// instead (status 200, or 302 with `redirect_to`; empty body unless given).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptedAnswer {
    pub status: Option<u16>,
    /// Extra headers; one named like a default (`Date`, `Content-Type`,
    /// `Content-Length`, …) replaces it.
    pub headers: BTreeMap<String, String>,
    pub body: Option<Body>,
    /// Wait this long after reading the request, before answering.
    pub delay_ms: u64,
    /// Read the request, never answer, close once the client goes away.
    pub stall: bool,
    /// Close the connection without a status line.
    pub drop: bool,
    /// Declare the full `Content-Length`, send this many body bytes, close.
    pub truncate_at: Option<u64>,
    /// Send the body repeated up to this many bytes (streamed).
    pub body_repeat: Option<u64>,
    /// Answer 302 (or `status`) with `Location: <this>`.
    pub redirect_to: Option<String>,
    /// `token`: announce a wrong `sha256`; `release`: serve bytes that differ.
    pub wrong_sha256: bool,
    /// `release`: serve only the first half of the file (consistent headers).
    pub short_file: bool,
    /// Send the headers and half of the body, then stall.
    pub stall_body: bool,
    /// "Lost answer": the portal first does what it normally does (an
    /// `activate` takes its seat and its `Idempotency-Key` is remembered),
    /// then this answer is delivered instead of its own (a drop, a stall, a
    /// 5xx, a delay). Header values may name the portal's clock:
    /// `{date+120}` (an HTTP date 120 s ahead) or `{unix-5}` (unix seconds).
    pub commit: bool,
}

impl ScriptedAnswer {
    /// The portal's normal answer (useful with `with_delay`).
    pub fn normal() -> Self {
        ScriptedAnswer::default()
    }

    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        ScriptedAnswer {
            status: Some(status),
            body: Some(Body::Json(body)),
            ..Default::default()
        }
    }

    /// `status` with a body sent byte for byte.
    pub fn raw(status: u16, body: &str) -> Self {
        ScriptedAnswer {
            status: Some(status),
            body: Some(Body::Raw(body.to_string())),
            ..Default::default()
        }
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        ScriptedAnswer {
            status: Some(status),
            ..Default::default()
        }
    }

    /// The portal commits (an `activate` takes its seat) and the answer is
    /// lost: the connection closes without a status line.
    pub fn lost() -> Self {
        ScriptedAnswer {
            commit: true,
            drop: true,
            ..Default::default()
        }
    }

    /// The portal commits, then the answer stalls (until the client leaves).
    pub fn committed_then_stall() -> Self {
        ScriptedAnswer {
            commit: true,
            stall: true,
            ..Default::default()
        }
    }

    /// The portal commits, then answers `status` with a panel error body.
    pub fn committed_then_status(status: u16) -> Self {
        ScriptedAnswer {
            commit: true,
            ..ScriptedAnswer::json(
                status,
                serde_json::json!({"success": false, "code": "INTERNAL_ERROR",
                                   "error": "upstream timeout"}),
            )
        }
    }

    pub fn drop_connection() -> Self {
        ScriptedAnswer {
            drop: true,
            ..Default::default()
        }
    }

    pub fn stall() -> Self {
        ScriptedAnswer {
            stall: true,
            ..Default::default()
        }
    }

    pub fn redirect(location: &str) -> Self {
        ScriptedAnswer {
            redirect_to: Some(location.to_string()),
            ..Default::default()
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_string(), value.to_string());
        self
    }

    pub fn with_delay(mut self, ms: u64) -> Self {
        self.delay_ms = ms;
        self
    }

    pub fn with_truncate_at(mut self, n: u64) -> Self {
        self.truncate_at = Some(n);
        self
    }

    pub fn with_body_repeat(mut self, n: u64) -> Self {
        self.body_repeat = Some(n);
        self
    }

    /// Whether this answer replaces the portal's own (and its state change).
    pub(crate) fn replaces_default(&self) -> bool {
        self.status.is_some() || self.body.is_some() || self.redirect_to.is_some()
    }
}

/// A sequence of scripted answers for one endpoint, consumed in order; then
/// the portal's normal behaviour, or with `repeat_last` the last answer forever.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Script {
    pub repeat_last: bool,
    pub answers: Vec<ScriptedAnswer>,
}

/// A whole-portal failure, applied to every portal endpoint (not to `/_sim/`)
/// before any script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outage {
    /// This status with a JSON error body (`INTERNAL_ERROR` for a 5xx), no `Retry-After`.
    Status(u16),
    /// 503 with `Retry-After: <retry_after>` (seconds or an HTTP date, sent as is).
    Unavailable { retry_after: String },
    /// 429 `RATE_LIMITED` with `X-RateLimit-Limit/-Remaining/-Reset`, and
    /// `Retry-After` when given (sent as is, so it may be garbage on purpose).
    RateLimit { retry_after: Option<String> },
    /// Close every connection without a status line.
    Drop,
    /// Read every request, never answer.
    Stall,
}

impl Outage {
    /// Reads the `mode` of `POST /_sim/outage` and the binary: `none`, `drop`,
    /// `stall`, `429` (rate limit), or an HTTP status (`503` with a
    /// `retry_after` is the gate-closing kind). `None` ends the outage.
    pub fn from_mode(mode: &str, retry_after: Option<String>) -> Result<Option<Outage>, String> {
        match mode.trim() {
            "none" | "" => Ok(None),
            "drop" => Ok(Some(Outage::Drop)),
            "stall" => Ok(Some(Outage::Stall)),
            "429" => Ok(Some(Outage::RateLimit { retry_after })),
            other => match (other.parse::<u16>(), retry_after) {
                (Ok(503), Some(retry_after)) => Ok(Some(Outage::Unavailable { retry_after })),
                (Ok(status), _) if (100..=999).contains(&status) => {
                    Ok(Some(Outage::Status(status)))
                }
                _ => Err(format!(
                    "unknown outage mode {other:?}; expected none, drop, stall, 429 or an HTTP status"
                )),
            },
        }
    }
}

/// The scenario: a TOML file or a value built by a test.
///
/// ```toml
/// date_skew_secs = -300        # the Date header is 5 min behind
/// clock_offset = "+1d"         # the portal's whole clock a day ahead ("-1d", "+30s")
/// release_size = 262144        # bytes of the release file
/// latest_version = "1.5.0"
/// max_activations = 3          # seats a key has (hosts it may be activated on)
/// ignore_idempotency_key = false       # true: a portal that ignores the header
/// activate_counts_every_request = false # true: every activate takes a seat
///
/// [seat_limits]                # per key, instead of max_activations
/// "WISP-GOOD-0000-SA6T" = 1
///
/// [terms]                      # how valid keys are reported
/// tier = "free"
/// valid_for_secs = 60
///
/// [licenses]                   # added to / overriding the built-in keys
/// "WISP-TEST-0000-0009" = "valid"
/// "WISP-GOOD-0000-SA6T" = "suspended"
///
/// [validate]                   # also: activate, deactivate, check_update, token, release
/// repeat_last = false
/// [[validate.answers]]
/// status = 503
/// headers = { "Retry-After" = "2" }
/// body = { success = false, code = "INTERNAL_ERROR" }
/// [[validate.answers]]
/// drop = true
/// [[validate.answers]]
/// delay_ms = 1500              # the normal answer, late
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Added to the clock for the `Date` header only (negative: portal behind).
    pub date_skew_secs: i64,
    /// The portal's whole clock against the real one, as `+1d`, `-1d`,
    /// `+30s`, `-1h30m` (empty: none): its `Date`, `valid_until`,
    /// `expires_at`, token expiry, `X-RateLimit-Reset` and the `{date+N}`
    /// header placeholders all read it.
    pub clock_offset: String,
    /// The portal ignores `Idempotency-Key` entirely.
    pub ignore_idempotency_key: bool,
    /// Every `activate` that is not a replay takes a seat, even on a
    /// hardware_id that already holds one ("a portal that counts every
    /// activate"); otherwise re-activating a host is idempotent.
    pub activate_counts_every_request: bool,
    /// Seats per key, overriding `max_activations`.
    pub seat_limits: BTreeMap<String, usize>,
    /// Size of every release file in bytes.
    pub release_size: u64,
    /// The release `check-update` offers (on every channel).
    pub latest_version: String,
    /// Markdown changelog of the latest release.
    pub changelog: String,
    /// Hosts one key may be activated on.
    pub max_activations: usize,
    pub terms: LicenseTerms,
    /// Keys and their behaviour, on top of the built-in keys (see [`keys`]).
    pub licenses: BTreeMap<String, LicenseBehaviour>,
    pub activate: Script,
    pub validate: Script,
    pub deactivate: Script,
    pub check_update: Script,
    pub token: Script,
    pub release: Script,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            date_skew_secs: 0,
            clock_offset: String::new(),
            ignore_idempotency_key: false,
            activate_counts_every_request: false,
            seat_limits: BTreeMap::new(),
            release_size: 256 * 1024,
            latest_version: "1.5.0".to_string(),
            changelog: "## 1.5.0\n\n- Faster backups\n- New DNS template editor\n\
                        - Fixes a crash when a domain has no mailboxes\n"
                .to_string(),
            max_activations: 3,
            terms: LicenseTerms::default(),
            licenses: BTreeMap::new(),
            activate: Script::default(),
            validate: Script::default(),
            deactivate: Script::default(),
            check_update: Script::default(),
            token: Script::default(),
            release: Script::default(),
        }
    }
}

/// A scenario that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("scenario: latest_version {0:?} is not a version like 1.5.0")]
    Version(String),
    #[error("scenario: clock_offset {0:?} is not a signed duration like \"+1d\" or \"-30s\"")]
    ClockOffset(String),
}

/// Parses a clock offset: `+1d`, `-1d`, `+30s`, `-1h30m`, `0s`, or empty
/// (none), into seconds.
pub fn parse_clock_offset(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes()[0] {
        b'-' => (-1, &t[1..]),
        b'+' => (1, &t[1..]),
        _ => (1, t),
    };
    if rest.trim() == "0" {
        return Some(0);
    }
    let d = wispanel_core::duration::parse_duration(rest).ok()?;
    i64::try_from(d.as_secs()).ok().map(|s| sign * s)
}

impl Scenario {
    /// Parses a TOML scenario; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        s.check()?;
        Ok(s)
    }

    /// Reads and parses a TOML scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::from_toml(&text, path)
    }

    pub(crate) fn check(&self) -> Result<(), ScenarioError> {
        if parse_clock_offset(&self.clock_offset).is_none() {
            return Err(ScenarioError::ClockOffset(self.clock_offset.clone()));
        }
        match super::portal::parse_version(&self.latest_version) {
            Some(_) => Ok(()),
            None => Err(ScenarioError::Version(self.latest_version.clone())),
        }
    }

    /// `clock_offset` in seconds (0 when unset or, unchecked, unreadable).
    pub fn clock_offset_secs(&self) -> i64 {
        parse_clock_offset(&self.clock_offset).unwrap_or(0)
    }

    /// The per-endpoint scripts, taken out of the scenario.
    pub(crate) fn take_scripts(&mut self) -> BTreeMap<Route, Script> {
        [
            (
                Route::Portal(Endpoint::Activate),
                std::mem::take(&mut self.activate),
            ),
            (
                Route::Portal(Endpoint::Validate),
                std::mem::take(&mut self.validate),
            ),
            (
                Route::Portal(Endpoint::Deactivate),
                std::mem::take(&mut self.deactivate),
            ),
            (
                Route::Portal(Endpoint::CheckUpdate),
                std::mem::take(&mut self.check_update),
            ),
            (
                Route::Portal(Endpoint::Token),
                std::mem::take(&mut self.token),
            ),
            (Route::Release, std::mem::take(&mut self.release)),
        ]
        .into_iter()
        .collect()
    }
}

/// The built-in key table (see [`keys`]).
pub(crate) fn builtin_licenses() -> BTreeMap<String, LicenseBehaviour> {
    [
        (keys::GOOD, LicenseBehaviour::Valid),
        (keys::EXPIRED, LicenseBehaviour::Expired),
        (keys::SUSPENDED, LicenseBehaviour::Suspended),
        (keys::REVOKED, LicenseBehaviour::Revoked),
        (keys::MAX_ACTIVATIONS, LicenseBehaviour::MaxActivations),
        (keys::NO_UPDATES, LicenseBehaviour::UpdatesExpired),
    ]
    .into_iter()
    .map(|(k, b)| (k.to_string(), b))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_scenario_parses() {
        let text = r#"
            date_skew_secs = -300
            release_size = 1024
            [terms]
            tier = "free"
            [licenses]
            "WISP-TEST-0000-0009" = "valid"
            [validate]
            repeat_last = true
            [[validate.answers]]
            status = 503
            headers = { "Retry-After" = "2" }
            body = { success = false, code = "INTERNAL_ERROR" }
            [[validate.answers]]
            body = "<html>oops</html>"
            [[release.answers]]
            short_file = true
        "#;
        let s = Scenario::from_toml(text, Path::new("t.toml")).unwrap();
        assert_eq!(s.date_skew_secs, -300);
        assert_eq!(s.terms.tier, "free");
        assert_eq!(s.terms.max_users, 30, "unset terms keep their defaults");
        assert_eq!(s.latest_version, "1.5.0");
        assert!(s.validate.repeat_last);
        let a = &s.validate.answers[0];
        assert_eq!(a.status, Some(503));
        assert_eq!(a.headers["Retry-After"], "2");
        assert_eq!(
            a.body,
            Some(Body::Json(
                serde_json::json!({"success": false, "code": "INTERNAL_ERROR"})
            ))
        );
        assert_eq!(
            s.validate.answers[1].body,
            Some(Body::Raw("<html>oops</html>".into()))
        );
        assert!(s.release.answers[0].short_file);
        assert_eq!(s.licenses["WISP-TEST-0000-0009"], LicenseBehaviour::Valid);
    }

    #[test]
    fn typos_are_errors() {
        for bad in [
            "date_skew = 1",
            "[[validate.answers]]\nstatsu = 200",
            "[validat]\nrepeat_last = true",
            "[licenses]\n\"WISP-A-B-C\" = \"expird\"",
            "latest_version = \"soon\"",
        ] {
            let e = Scenario::from_toml(bad, Path::new("bad.toml"));
            assert!(e.is_err(), "{bad:?} was accepted");
        }
        let e = Scenario::from_toml("date_skew = 1", Path::new("bad.toml")).unwrap_err();
        assert!(e.to_string().contains("bad.toml"), "{e}");
    }

    #[test]
    fn clock_offsets() {
        for (text, want) in [
            ("", Some(0)),
            ("0", Some(0)),
            ("+1d", Some(86_400)),
            ("-1d", Some(-86_400)),
            ("+30s", Some(30)),
            ("-1h30m", Some(-5_400)),
            ("2h", Some(7_200)),
            ("soon", None),
            ("+-1d", None),
        ] {
            assert_eq!(parse_clock_offset(text), want, "{text:?}");
        }
        let s = Scenario::from_toml(
            "clock_offset = \"-1d\"\nignore_idempotency_key = true\n\
             activate_counts_every_request = true\n[seat_limits]\n\"WISP-GOOD-0000-SA6T\" = 1",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(s.clock_offset_secs(), -86_400);
        assert!(s.ignore_idempotency_key && s.activate_counts_every_request);
        assert_eq!(s.seat_limits[keys::GOOD], 1);
        assert!(Scenario::from_toml("clock_offset = \"x\"", Path::new("t.toml")).is_err());
    }

    #[test]
    fn behaviour_from_str() {
        assert_eq!("expired".parse(), Ok(LicenseBehaviour::Expired));
        assert_eq!(
            "max_activations".parse(),
            Ok(LicenseBehaviour::MaxActivations)
        );
        assert!("nope".parse::<LicenseBehaviour>().is_err());
    }

    #[test]
    fn routes() {
        assert_eq!(
            Route::of("POST", "/api/v1/download/check-update"),
            Endpoint::CheckUpdate
        );
        assert_eq!(Route::of("GET", "/api/v1/license/validate"), Route::Unknown);
        assert_eq!(
            Route::of("GET", "/releases/wispanel-1.5.0.tar.gz"),
            Route::Release
        );
    }
}
