//! Which licence key is in force (SPEC "Which key is in force"): one rule,
//! used by the daemon, by `update download` and by `doctor`, so that the
//! three never name different keys.
//!
//! In this order: the key saved by `activate`, until the configuration names
//! a key other than the one it named when that `activate` ran (the core
//! remembers that key's fingerprint; the configured key then replaces the
//! saved one); else the configured key, unless it is the key that a
//! `deactivate` released.

use crate::store::{Store, StoreError, read_state};
use std::path::Path;
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::Core;

/// What the rule looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyFacts<'a> {
    /// The configured key: `license_key`, `license_key_file` or the
    /// credential `license.key`.
    pub configured: Option<&'a LicenseKey>,
    /// The key saved by `activate` in `state_dir`.
    pub saved: Option<&'a LicenseKey>,
    /// The fingerprint of the configured key as last recorded in the saved
    /// state (`Some(None)`: recorded, no key configured then; `None`: never
    /// recorded, e.g. a fresh or an older state).
    pub recorded_configured: Option<Option<&'a str>>,
    /// The fingerprint of the configured key that a `deactivate` released.
    pub released: Option<&'a str>,
}

impl<'a> KeyFacts<'a> {
    /// The facts from the keys and the daemon's state (`None`: no state).
    pub fn new(
        configured: Option<&'a LicenseKey>,
        saved: Option<&'a LicenseKey>,
        core: Option<&'a Core>,
    ) -> KeyFacts<'a> {
        let licence = core.map(|c| &c.licence);
        KeyFacts {
            configured,
            saved,
            recorded_configured: licence
                .filter(|l| l.configured_key_seen)
                .map(|l| l.configured_key.as_deref()),
            released: licence.and_then(|l| l.deactivated_key.as_deref()),
        }
    }
}

/// Where the key in force comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Saved by `activate`.
    Activated,
    /// The configuration's key.
    Configured,
}

/// The rule's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InForce<'a> {
    /// The key in force and where it comes from; `None`: no key (the state
    /// is `unconfigured`).
    pub key: Option<(&'a LicenseKey, Origin)>,
    /// The configuration names a new key, which replaces the saved one (the
    /// daemon then removes the saved key).
    pub saved_replaced: bool,
    /// The configured key is not in force because a `deactivate` released it.
    pub configured_released: bool,
}

impl<'a> InForce<'a> {
    pub fn key(&self) -> Option<&'a LicenseKey> {
        self.key.map(|(k, _)| k)
    }
}

/// The one rule: see the module's documentation.
pub fn key_in_force<'a>(f: &KeyFacts<'a>) -> InForce<'a> {
    let configured_fp = f.configured.map(LicenseKey::fingerprint);
    // A configuration that names a key other than the recorded one (adding a
    // key where there was none included) is the newest decision of the
    // administrator: it wins over an earlier `activate`.
    let config_changed = match (f.recorded_configured, configured_fp.as_deref()) {
        (Some(recorded), Some(now)) => recorded != Some(now),
        _ => false,
    };
    let saved_replaced = f.saved.is_some() && config_changed;
    if let Some(k) = f.saved.filter(|_| !saved_replaced) {
        return InForce {
            key: Some((k, Origin::Activated)),
            saved_replaced,
            configured_released: false,
        };
    }
    let released = configured_fp.is_some() && configured_fp.as_deref() == f.released;
    InForce {
        key: f
            .configured
            .filter(|_| !released)
            .map(|k| (k, Origin::Configured)),
        saved_replaced,
        configured_released: released,
    }
}

/// What the programs that work without the daemon read from `state_dir`
/// (never creating it: it is the daemon's).
#[derive(Debug)]
pub struct OnDisk {
    /// The key `activate` saved, or why it cannot be read.
    pub saved: Result<Option<LicenseKey>, StoreError>,
    /// The daemon's saved state; `None` when missing or unreadable (the rule
    /// then knows no recorded or released key).
    pub core: Option<Core>,
}

impl OnDisk {
    pub fn read(state_dir: &Path) -> OnDisk {
        if !state_dir.is_dir() {
            return OnDisk {
                saved: Ok(None),
                core: None,
            };
        }
        let saved = Store::open(state_dir).and_then(|s| s.load_key());
        let core = read_state(state_dir).core();
        OnDisk { saved, core }
    }

    /// The key in force for `configured`; an unreadable saved key counts as
    /// none (as in the daemon, which logs it and goes on).
    pub fn in_force<'a>(&'a self, configured: Option<&'a LicenseKey>) -> InForce<'a> {
        let saved = self.saved.as_ref().ok().and_then(Option::as_ref);
        key_in_force(&KeyFacts::new(configured, saved, self.core.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LicenseKey {
        LicenseKey::parse(s).unwrap()
    }

    #[test]
    fn the_rule_table() {
        let a = key("WISP-AAAA-AAAA-AAAA");
        let b = key("WISP-BBBB-BBBB-BBBB");
        let (fa, fb) = (a.fingerprint(), b.fingerprint());
        let facts = |configured, saved, recorded, released| KeyFacts {
            configured,
            saved,
            recorded_configured: recorded,
            released,
        };
        use Origin::*;
        type Want<'a> = Option<(&'a LicenseKey, Origin)>;
        #[rustfmt::skip]
        let cases: &[(KeyFacts<'_>, Want<'_>, bool)] = &[
            // Nothing at all.
            (facts(None, None, None, None), None, false),
            // Configured only.
            (facts(Some(&a), None, None, None), Some((&a, Configured)), false),
            (facts(Some(&a), None, Some(Some(&fa)), None), Some((&a, Configured)), false),
            // Activated only.
            (facts(None, Some(&b), None, None), Some((&b, Activated)), false),
            // A configured, B activated while A was configured: B.
            (facts(Some(&a), Some(&b), Some(Some(&fa)), None), Some((&b, Activated)), false),
            // Never recorded (fresh or older state): the saved key wins.
            (facts(Some(&a), Some(&b), None, None), Some((&b, Activated)), false),
            // B activated while A was configured, now the configuration names B or C: it replaces.
            (facts(Some(&b), Some(&b), Some(Some(&fa)), None), Some((&b, Configured)), true),
            (facts(Some(&a), Some(&b), Some(Some(&fb)), None), Some((&a, Configured)), true),
            // Activated with no key configured, then one configured: it replaces.
            (facts(Some(&a), Some(&b), Some(None), None), Some((&a, Configured)), true),
            // The configured key removed: the saved key stays.
            (facts(None, Some(&b), Some(Some(&fa)), None), Some((&b, Activated)), false),
            // Deactivated: the released configured key is not in force...
            (facts(Some(&a), None, Some(Some(&fa)), Some(&fa)), None, false),
            // ...until the configuration names another key.
            (facts(Some(&b), None, Some(Some(&fa)), Some(&fa)), Some((&b, Configured)), false),
            // A key activated after a deactivation is in force.
            (facts(Some(&a), Some(&b), Some(Some(&fa)), Some(&fa)), Some((&b, Activated)), false),
        ];
        for (i, (f, want, replaced)) in cases.iter().enumerate() {
            let got = key_in_force(f);
            assert_eq!(got.key, *want, "case {i}: {f:?}");
            assert_eq!(got.saved_replaced, *replaced, "case {i}: {f:?}");
        }
        let released = key_in_force(&facts(Some(&a), None, Some(Some(&fa)), Some(&fa)));
        assert!(released.configured_released);
    }

    #[test]
    fn facts_from_the_core() {
        let a = key("WISP-AAAA-AAAA-AAAA");
        let mut core = Core::default();
        assert_eq!(
            KeyFacts::new(Some(&a), None, Some(&core)).recorded_configured,
            None
        );
        core.configured_key_changed(Some(a.fingerprint()));
        let f = KeyFacts::new(Some(&a), None, Some(&core));
        assert_eq!(f.recorded_configured, Some(Some(a.fingerprint().as_str())));
        assert_eq!(f.released, None);
    }

    #[test]
    fn on_disk_without_a_state_dir_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        let od = OnDisk::read(&missing);
        assert!(matches!(od.saved, Ok(None)));
        assert!(od.core.is_none());
        assert!(
            !missing.exists(),
            "reading must not create the state directory"
        );
    }
}
