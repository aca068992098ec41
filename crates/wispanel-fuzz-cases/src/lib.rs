//! The fuzz targets' bodies, shared by `cargo fuzz` (`fuzz/`, nightly) and
//! the bounded "fuzz smoke" test that runs on stable (`tests/smoke.rs`).
//!
//! Each function takes arbitrary bytes, must not panic, and checks the
//! invariants that hold for every input.

use std::path::Path;
use wispanel_core::Endpoint;
use wispanel_core::classify::{BodyProblem, Exchange, Outcome, classify};
use wispanel_core::gate::{GateClose, MAX_WAIT, MIN_WAIT};
use wispanel_core::timestamp::Timestamp;
use wispanel_license::config::Config;

/// A fixed "now" for the classifier.
pub const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// The longest `last_error.message` or `reason.message` a portal can cause.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// Decodes `data` as: 2 bytes status, 1 byte endpoint, 1 byte body problem,
/// then header lines (`name: value`, `\n`-separated) up to the first `\0`,
/// then the body. Classifies it and checks: no panic; a 5xx is never a
/// verdict; a closed gate opens between 1 s and 24 h from now; messages are
/// bounded whatever the body's size.
pub fn classify_case(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 1000;
    let endpoint = Endpoint::ALL[usize::from(data[2]) % Endpoint::ALL.len()];
    let body_problem = match data[3] % 8 {
        0 => Some(BodyProblem::TooLarge),
        1 => Some(BodyProblem::Cut("reset".into())),
        2 => Some(BodyProblem::TimedOut),
        _ => None,
    };
    let rest = &data[4..];
    let (head, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let c = classify(
        endpoint,
        &Exchange::Answer {
            status,
            header: &header,
            body,
            body_problem,
        },
        NOW,
    );
    if status >= 500 {
        assert!(
            matches!(c.outcome, Outcome::Failed(_)),
            "a {status} became a verdict: {:?}",
            c.outcome
        );
    }
    if let Some(GateClose::Until(t)) = c.gate {
        let wait = t.since(NOW);
        assert!(
            (MIN_WAIT..=MAX_WAIT).contains(&wait) && t > NOW,
            "gate {wait:?} out of bounds"
        );
    }
    let message = match &c.outcome {
        Outcome::Failed(e) => Some(&e.message),
        Outcome::Refused { reason, .. } | Outcome::UpdateRefused { reason, .. } => {
            Some(&reason.message)
        }
        _ => None,
    };
    if let Some(m) = message {
        assert!(
            m.chars().count() <= MAX_MESSAGE_CHARS,
            "a message of {} chars",
            m.chars().count()
        );
    }
    // A transport failure must classify too.
    let _ = classify(
        endpoint,
        &Exchange::Failed {
            kind: wispanel_core::ErrorKind::Connect,
            message: head.into_owned(),
        },
        NOW,
    );
}

/// Loads `data` (lossily as UTF-8) as a configuration file without systemd
/// credentials; must not panic, and a loaded configuration must print its
/// effective TOML.
pub fn config_case(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::from_toml_str_with(&text, Path::new("/nonexistent/fuzz/license.toml"), None) {
        Ok(c) => {
            let _ = c.to_effective_toml();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// A small deterministic generator of fuzz inputs for the smoke test:
/// random bytes, and mutations (byte flips, splices, truncations) of seeds.
pub struct Mutator {
    state: u64,
}

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One input: a mutated seed, or random bytes.
    pub fn input(&mut self, seeds: &[&[u8]]) -> Vec<u8> {
        if seeds.is_empty() || self.below(4) == 0 {
            let len = self.below(256);
            return (0..len).map(|_| self.next_u64() as u8).collect();
        }
        let mut v = seeds[self.below(seeds.len())].to_vec();
        for _ in 0..=self.below(8) {
            match self.below(5) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = self.next_u64() as u8;
                }
                1 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v.truncate(i);
                }
                2 => {
                    let other = seeds[self.below(seeds.len())];
                    let a = self.below(other.len() + 1);
                    let b = a + self.below(other.len() - a + 1);
                    let at = self.below(v.len() + 1);
                    v.splice(at..at, other[a..b].iter().copied());
                }
                3 if !v.is_empty() => {
                    let i = self.below(v.len());
                    let n = self.below(v.len() - i + 1);
                    v.drain(i..i + n);
                }
                _ => {
                    let interesting: [&[u8]; 10] = [
                        b"\"",
                        b"{",
                        b"}",
                        b"\n",
                        b"=",
                        b"99999999999999999999",
                        b"-1",
                        b"\xff\xfe",
                        b"[[",
                        b"\0",
                    ];
                    let s = interesting[self.below(interesting.len())];
                    let at = self.below(v.len() + 1);
                    v.splice(at..at, s.iter().copied());
                }
            }
        }
        v
    }
}

/// Seed inputs for `classify_case`.
pub fn classify_seeds() -> Vec<Vec<u8>> {
    let mk = |status: u16, ep: u8, headers: &str, body: &str| {
        let mut v = status.to_be_bytes().to_vec();
        v.push(ep);
        v.push(7);
        v.extend_from_slice(headers.as_bytes());
        v.push(0);
        v.extend_from_slice(body.as_bytes());
        v
    };
    vec![
        mk(
            200,
            1,
            "Date: Thu, 26 Nov 2026 10:00:00 GMT",
            r#"{"valid": true, "license": {"tier": "pro", "valid_until": "2026-12-03T10:00:00Z", "max_users": 30}}"#,
        ),
        mk(429, 1, "Retry-After: 120", r#"{"code": "RATE_LIMITED"}"#),
        mk(429, 3, "X-RateLimit-Reset: 1800000060", ""),
        mk(
            503,
            1,
            "Retry-After: Thu, 26 Nov 2026 10:00:00 GMT",
            r#"{"code": "EXPIRED"}"#,
        ),
        mk(403, 1, "", r#"{"code": "SUSPENDED", "message": "no"}"#),
        mk(401, 3, "", r#"{"error": "Invalid license"}"#),
        mk(
            422,
            0,
            "",
            r#"{"success": false, "code": "VALIDATION_ERROR", "error": "bad", "details": {"license_key": ["is invalid"]}}"#,
        ),
        mk(
            200,
            3,
            "",
            r#"{"update_available": true, "latest_version": "1.5.0", "changelog": "x"}"#,
        ),
        mk(
            200,
            4,
            "",
            r#"{"token": "t", "url": "https://x/y", "sha256": "0000000000000000000000000000000000000000000000000000000000000000", "size": 10}"#,
        ),
        mk(200, 2, "", r#"{"valid": false, "deactivated": true}"#),
    ]
}

/// Seed inputs for `config_case`.
pub fn config_seeds() -> Vec<Vec<u8>> {
    [
        "license_key = \"WISP-GOOD-0000-SA6T\"\nportal_url = \"https://wispanel.com\"\nproduct_version = \"1.4.2\"\n",
        "portal_url = \"http://127.0.0.1:8080\"\nproduct_version = \"1.4.2\"\nsocket_mode = \"0660\"\n[schedule]\nvalidate_interval = \"6h\"\nsplay = \"0s\"\nretry_initial = \"30s\"\nretry_max = \"1h30m\"\noffline_grace = \"7d\"\n",
        "product_version = \"1.4.2\"\n[hardware]\nroot = \"/\"\nid_file = \"/nonexistent/id\"\n",
        "license_key = \"WISP-****-SA6T\"\nchannel = \"beta\"\nproxy = \"http://proxy:3128\"\n",
        "[schedule]\nrequest_timeout = \"0s\"\nupdate_check_interval = \"99999999999d\"\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
