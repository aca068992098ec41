//! Where the daemon's log goes, and the events an administrator acts on.
//!
//! Under systemd (`$JOURNAL_STREAM` names the device and inode of our stderr)
//! events go to the journal natively through `tracing-journald`, with their
//! fields as journal fields: `wispanel_license_state` becomes
//! `WISPANEL_LICENSE_STATE`, `message_id` becomes `MESSAGE_ID`. Should the
//! journal socket be out of reach, each line goes to stderr with its syslog
//! priority (`<3>` error … `<7>` debug) and no timestamp, which journald reads
//! from the stream. Anywhere else: one plain line per event on stderr, with
//! ANSI colour only when stderr is a terminal. `RUST_LOG` is honoured; the
//! default level is `info`. Its accepted syntax (see [`parse_targets`]) is a
//! comma-separated list of directives, each `LEVEL` (the default for every
//! target), `TARGET=LEVEL` or a bare `TARGET` (everything from it), where
//! `LEVEL` is `off`, `error`, `warn`, `info`, `debug` or `trace` and `TARGET` a
//! module path prefix such as `wispanel_license::daemon` or `reqwest`. The
//! longest matching target wins. `tracing`'s span and field filters
//! (`[span]`, `{field}`) and regular expressions are not accepted: a value
//! with one of them, or with an unknown level, is refused as a whole, the
//! default `info` applies and a warning names the bad directive. (The filter
//! is `tracing_subscriber`'s `Targets`, which needs no regex engine.)
//!
//! [`event`] holds the events that carry a `MESSAGE_ID` ([`ids`]); each ID is
//! explained in the journal catalog `packaging/wispanel-license.catalog`.
//! No event carries the licence key (only its masked form), a raw machine-id
//! or a download token.

use std::fmt;
use std::io::IsTerminal;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The journal's `MESSAGE_ID`s, one per kind of event an administrator acts
/// on. Stable across releases: monitoring and the catalog refer to them.
pub mod ids {
    /// The licence state changed (not to `lapsed`, which has its own).
    pub const LICENCE_STATE_CHANGED: &str = "59dfb730ad434ec980016b9e0a34b9c8";
    /// In `grace`, less than 24 h before the licence lapses.
    pub const GRACE_ENDING: &str = "f718164b81394f599f54cc70e9bcaddd";
    /// The grace period ran out: the host is no longer licensed.
    pub const LAPSED: &str = "4facc9862e5c41b881009de1246a19b8";
    /// A portal request got no verdict (timeout, connection, TLS, HTTP, body).
    pub const PORTAL_UNREACHABLE: &str = "58701c86108a4775aec373693fbc80ef";
    /// The portal asked us to wait (429, 503 with `Retry-After`).
    pub const RATE_LIMITED: &str = "58d12cff869e42e6b9aaf6cc22013abc";
    /// The hardware_id computed now differs from the one before.
    pub const HARDWARE_ID_CHANGED: &str = "78726d85ab0f4d7f91b84b6c7c9d22b4";
    /// `state.json` could not be written.
    pub const STATE_NOT_SAVED: &str = "6bade82074c34ac98073723ee21011b2";
    /// A reload (SIGHUP) found a bad configuration and kept the running one.
    pub const CONFIG_REJECTED: &str = "ae4d8028ffb24516b78fd43d546f903b";

    /// Every ID with a short name, for tests and the catalog check.
    pub const ALL: &[(&str, &str)] = &[
        ("licence state changed", LICENCE_STATE_CHANGED),
        ("grace ending", GRACE_ENDING),
        ("lapsed", LAPSED),
        ("portal unreachable", PORTAL_UNREACHABLE),
        ("rate limited", RATE_LIMITED),
        ("hardware_id changed", HARDWARE_ID_CHANGED),
        ("state not saved", STATE_NOT_SAVED),
        ("configuration rejected on reload", CONFIG_REJECTED),
    ];
}

/// The events with a `MESSAGE_ID`, and the other state-bearing events, in
/// one place so that their fields stay the same wherever they are logged.
pub mod event {
    use super::ids;
    use tracing::{error, info, warn};
    use wispanel_core::timestamp::Timestamp;
    use wispanel_core::{Endpoint, LicenseState, PortalError, UpdateState};

    /// The licence state at start (no `MESSAGE_ID`: nothing changed).
    pub fn licence_state_at_start(licence: LicenseState, update: UpdateState) {
        info!(
            wispanel_license_state = %licence,
            wispanel_update_state = %update,
            "licence state {licence}"
        );
    }

    /// The licence state changed; `code` is the portal's refusal code and
    /// `kind` the last error's kind, when there are.
    pub fn licence_state_changed(
        from: LicenseState,
        to: LicenseState,
        update: UpdateState,
        code: Option<&str>,
        kind: Option<&str>,
        why: &str,
    ) {
        let why = match why {
            "" | "-" => String::new(),
            w => format!(" ({w})"),
        };
        if to == LicenseState::Lapsed {
            error!(
                message_id = ids::LAPSED,
                wispanel_license_state = %to,
                wispanel_update_state = %update,
                wispanel_error_kind = kind,
                from = %from,
                "licence state changed from {from} to {to}: the portal was out of reach past the grace period{why}"
            );
        } else if to.licensed() {
            info!(
                message_id = ids::LICENCE_STATE_CHANGED,
                wispanel_license_state = %to,
                wispanel_update_state = %update,
                wispanel_portal_code = code,
                wispanel_error_kind = kind,
                from = %from,
                "licence state changed from {from} to {to}{why}"
            );
        } else {
            warn!(
                message_id = ids::LICENCE_STATE_CHANGED,
                wispanel_license_state = %to,
                wispanel_update_state = %update,
                wispanel_portal_code = code,
                wispanel_error_kind = kind,
                from = %from,
                "licence state changed from {from} to {to}{why}"
            );
        }
    }

    pub fn update_state_changed(from: UpdateState, to: UpdateState, licence: LicenseState) {
        info!(
            wispanel_license_state = %licence,
            wispanel_update_state = %to,
            from = %from,
            "update state changed from {from} to {to}"
        );
    }

    /// Less than 24 h of grace left (the warning `grace_ending` appeared).
    pub fn grace_ending(grace_until: Option<Timestamp>, message: &str, update: UpdateState) {
        let until = grace_until.map_or("-".to_string(), |t| t.to_string());
        warn!(
            message_id = ids::GRACE_ENDING,
            wispanel_license_state = %LicenseState::Grace,
            wispanel_update_state = %update,
            grace_until = %until,
            warning = "grace_ending",
            "warning grace_ending: {message}; the licence lapses at {until} unless the portal answers"
        );
    }

    /// A portal request without a verdict.
    pub fn portal_failed(
        endpoint: Endpoint,
        e: &PortalError,
        licence: LicenseState,
        update: UpdateState,
    ) {
        let kind = e.kind.as_str();
        // A closed gate is its own event for the administrator (its own
        // MESSAGE_ID); every other non-verdict is "portal unreachable".
        let (message_id, what) = if e.kind == wispanel_core::ErrorKind::RateLimited {
            (ids::RATE_LIMITED, "rate limited")
        } else {
            (ids::PORTAL_UNREACHABLE, kind)
        };
        warn!(
            message_id,
            wispanel_license_state = %licence,
            wispanel_update_state = %update,
            wispanel_endpoint = %endpoint,
            wispanel_error_kind = kind,
            wispanel_http_status = e.http_status,
            wispanel_portal_code = e.code.as_deref(),
            "portal request failed ({endpoint}, {what}): {}",
            e.message
        );
    }

    /// A portal refusal (a verdict): the state change follows.
    pub fn portal_refused(
        endpoint: Endpoint,
        code: &str,
        message: &str,
        licence: LicenseState,
        update: UpdateState,
    ) {
        info!(
            wispanel_license_state = %licence,
            wispanel_update_state = %update,
            wispanel_endpoint = %endpoint,
            wispanel_portal_code = code,
            "portal refused ({endpoint}): {code}: {message}"
        );
    }

    pub fn hardware_id_changed(licence: LicenseState, update: UpdateState) {
        warn!(
            message_id = ids::HARDWARE_ID_CHANGED,
            wispanel_license_state = %licence,
            wispanel_update_state = %update,
            "the hardware_id changed; checking the licence at once"
        );
    }

    /// `retry_in_s`: when the writer tries again (none on shutdown).
    pub fn state_not_saved(error: &str, retry_in_s: Option<u64>) {
        match retry_in_s {
            Some(s) => error!(
                message_id = ids::STATE_NOT_SAVED,
                error,
                retry_in_s = s,
                "CANNOT SAVE THE STATE; serving it from memory and retrying in {s} s: {error}"
            ),
            None => error!(
                message_id = ids::STATE_NOT_SAVED,
                error, "cannot save the state on shutdown: {error}"
            ),
        }
    }

    /// An append to the history failed (the warning `state_not_saved`).
    pub fn history_not_saved(error: &str) {
        error!(
            message_id = ids::STATE_NOT_SAVED,
            error, "CANNOT WRITE THE HISTORY; licensing goes on: {error}"
        );
    }

    pub fn config_rejected(error: &str) {
        error!(
            message_id = ids::CONFIG_REJECTED,
            error, "configuration reload failed; keeping the running configuration: {error}"
        );
    }
}

/// Where the log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// stderr is journald's stream: the journal's native protocol.
    Journal,
    /// Plain lines on stderr; colour only on a terminal.
    Stderr { ansi: bool },
}

/// Whether `journal_stream` (`$JOURNAL_STREAM`, "DEVICE:INODE" in decimal)
/// names the file with this device and inode.
pub fn journal_stream_matches(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// The device and inode of our stderr (`fstat(2)`).
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether stderr is connected to the journal: `$JOURNAL_STREAM` is set and
/// names our stderr (a child whose stderr was redirected inherits the
/// variable but not the stream).
pub fn under_journald() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stderr_identity() else {
        return false;
    };
    journal_stream_matches(&stream.to_string_lossy(), dev, ino)
}

/// Where this process should log.
pub fn output() -> Output {
    if under_journald() {
        Output::Journal
    } else {
        Output::Stderr {
            ansi: std::io::stderr().is_terminal(),
        }
    }
}

fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Prefixes each event with its sd-daemon priority and leaves out the time:
/// for journald's stream when its socket is out of reach.
struct PriorityPrefix {
    inner: Format<Full, ()>,
}

impl<S, N> FormatEvent<S, N> for PriorityPrefix
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// The fields of a stderr line: the message, then `name=value` for the
/// `wispanel_*` fields (what the journal has as `WISPANEL_*`). The other
/// fields are for the journal only: the message says what they hold.
fn plain_fields() -> impl for<'w> FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| match field.name() {
        "message" => write!(w, "{value:?}"),
        name if name.starts_with("wispanel_") => write!(w, " {name}={value:?}"),
        _ => Ok(()),
    })
}

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let (targets, refused) = match std::env::var("RUST_LOG") {
        Ok(v) => match parse_targets(&v) {
            Ok(t) => (t, None),
            Err(e) => (default_targets(), Some(e)),
        },
        Err(_) => (default_targets(), None),
    };
    let filter = || targets.clone();
    match output() {
        Output::Journal => match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("wispanel-licensed".into())
                    .with_priority_mappings(tracing_journald::PriorityMappings {
                        info: tracing_journald::Priority::Informational,
                        debug: tracing_journald::Priority::Debug,
                        ..tracing_journald::PriorityMappings::new()
                    });
                let installed = tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init();
                if installed.is_ok() {
                    warn_refused(refused.as_deref());
                }
            }
            Err(e) => {
                let fmt = tracing_subscriber::fmt::format()
                    .without_time()
                    .with_level(false)
                    .with_target(false);
                let installed = tracing_subscriber::fmt()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .fmt_fields(plain_fields())
                    .event_format(PriorityPrefix { inner: fmt })
                    .finish()
                    .with(filter())
                    .try_init();
                if installed.is_ok() {
                    warn_refused(refused.as_deref());
                    tracing::warn!(
                        "cannot reach the journal socket ({e}); logging plain lines to stderr"
                    );
                }
            }
        },
        Output::Stderr { ansi } => {
            let installed = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false)
                .fmt_fields(plain_fields())
                .finish()
                .with(filter())
                .try_init();
            if installed.is_ok() {
                warn_refused(refused.as_deref());
            }
        }
    }
}

/// The filter without `RUST_LOG`: `info` and above from every target.
fn default_targets() -> Targets {
    Targets::new().with_default(LevelFilter::INFO)
}

fn warn_refused(refused: Option<&str>) {
    if let Some(e) = refused {
        tracing::warn!("RUST_LOG ignored, logging at info: {e}");
    }
}

/// Parses a `RUST_LOG` value into a [`Targets`] filter (syntax in the module
/// documentation). An empty value or empty directives (`a=debug,,`) are
/// allowed; anything else that is not a directive is an error naming it.
pub fn parse_targets(spec: &str) -> Result<Targets, String> {
    let mut targets = Targets::new();
    let mut default = LevelFilter::INFO;
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bad = |why: &str| format!("directive {directive:?}: {why}");
        if directive.contains(['[', ']', '{', '}', '*', '(', ')', '|', '^', '$', ' ']) {
            return Err(bad(
                "span, field and regular-expression filters are not supported",
            ));
        }
        match directive.split_once('=') {
            Some((target, level)) => {
                let level = parse_level(level).ok_or_else(|| bad("unknown level"))?;
                if target.is_empty() {
                    return Err(bad("empty target"));
                }
                targets = targets.with_target(target, level);
            }
            None => match parse_level(directive) {
                Some(level) => default = level,
                None => targets = targets.with_target(directive, LevelFilter::TRACE),
            },
        }
    }
    Ok(targets.with_default(default))
}

fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.to_ascii_lowercase().as_str() {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_is_parsed_into_targets() {
        use tracing::Level as L;
        let t = parse_targets("").unwrap();
        assert!(t.would_enable("anything", &L::INFO));
        assert!(!t.would_enable("anything", &L::DEBUG));

        let t = parse_targets("warn,wispanel_license::daemon=debug, reqwest ").unwrap();
        assert!(!t.would_enable("hyper", &L::INFO));
        assert!(t.would_enable("hyper", &L::WARN));
        assert!(t.would_enable("wispanel_license::daemon::reload", &L::DEBUG));
        assert!(!t.would_enable("wispanel_license::daemon", &L::TRACE));
        assert!(t.would_enable("reqwest::connect", &L::TRACE));
        assert!(!t.would_enable("wispanel_license::portal", &L::INFO));

        let t = parse_targets("DEBUG,hyper=off").unwrap();
        assert!(t.would_enable("x", &L::DEBUG));
        assert!(!t.would_enable("hyper::proto", &L::ERROR));

        for bad in ["a=loud", "=debug", "a[span]=debug", "a{f}=info", "a.*=info"] {
            let e = parse_targets(bad).unwrap_err();
            assert!(e.contains(bad), "{bad:?}: {e}");
        }
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }

    #[test]
    fn journal_stream_must_name_this_file() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(journal_stream_matches("8:12345\n", 8, 12345));
        assert!(!journal_stream_matches("8:12346", 8, 12345));
        assert!(!journal_stream_matches("9:12345", 8, 12345));
        for bad in ["", ":", "8", "8:", ":12345", "x:y", "8:12345:1", "-8:12345"] {
            assert!(!journal_stream_matches(bad, 8, 12345), "{bad:?}");
        }
    }

    #[test]
    fn stderr_of_a_test_has_an_identity() {
        // A test's stderr is a pipe, a file or a terminal: all have one.
        let (dev, ino) = stderr_identity().expect("fstat(2) of stderr");
        assert!(journal_stream_matches(&format!("{dev}:{ino}"), dev, ino));
    }

    #[test]
    fn message_ids_are_distinct_128_bit_hex() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, id) in ids::ALL {
            assert_eq!(id.len(), 32, "{name}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{name}: {id}"
            );
            assert!(seen.insert(*id), "{name}: {id} twice");
        }
        assert_eq!(seen.len(), 8);
    }
}
