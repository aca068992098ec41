//! Configuration and licence key checks: the file loads, a key is there and
//! well-formed (shown masked only), and the files that hold it are private.

use super::Check;
use crate::config::{Config, ConfigError, KeySource};
use crate::key_in_force::{KeyFacts, Origin, key_in_force};
use crate::store::{KEY_FILE, read_state};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::Core;

/// A file's mode and owner, or why they are unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileMode {
    Missing,
    Unreadable(String),
    Present { mode: u32, uid: u32 },
}

impl FileMode {
    pub fn of(path: &Path) -> FileMode {
        match std::fs::metadata(path) {
            Ok(m) => FileMode::Present {
                mode: m.mode() & 0o7777,
                uid: m.uid(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileMode::Missing,
            Err(e) => FileMode::Unreadable(e.to_string()),
        }
    }
}

/// The key saved by `activate` in `state_dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActivatedKey {
    None,
    Present {
        /// Masked form.
        masked: String,
        key: LicenseKey,
        path: PathBuf,
        mode: FileMode,
    },
    Bad {
        path: PathBuf,
        problem: String,
    },
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: Option<Config>,
    pub error: Option<String>,
    /// The configuration file's own mode (an inline key is only as private as it).
    pub config_mode: FileMode,
    /// The key file's mode (`license_key_file`), or the credential's.
    pub key_file_mode: Option<(PathBuf, FileMode)>,
    pub activated: ActivatedKey,
    /// The daemon's saved state, when readable: the key-in-force rule needs
    /// the configured key it recorded and the key a `deactivate` released.
    pub state: Option<Core>,
}

/// Loads the configuration and looks at the files that hold the key.
pub fn load(path: &Path, credentials_dir: Option<&Path>) -> Loaded {
    let result: Result<Config, ConfigError> = match std::fs::read_to_string(path) {
        Ok(text) => Config::from_toml_str_with(&text, path, credentials_dir),
        // Config::load gives the same messages for a missing or unreadable file.
        Err(_) => Config::load(path),
    };
    let config_mode = FileMode::of(path);
    let (config, error) = match result {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let key_file_mode = config.as_ref().and_then(|c| match &c.key_source {
        Some(KeySource::File(p)) | Some(KeySource::Credential(p)) => {
            Some((p.clone(), FileMode::of(p)))
        }
        _ => None,
    });
    let activated = match &config {
        Some(c) => activated_key(&c.state_dir.join(KEY_FILE)),
        None => ActivatedKey::None,
    };
    let state = config
        .as_ref()
        .and_then(|c| read_state(&c.state_dir).core());
    Loaded {
        path: path.to_path_buf(),
        config,
        error,
        config_mode,
        key_file_mode,
        activated,
        state,
    }
}

fn activated_key(path: &Path) -> ActivatedKey {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ActivatedKey::None,
        Err(e) => ActivatedKey::Bad {
            path: path.to_path_buf(),
            problem: format!("cannot read: {e}"),
        },
        Ok(text) => match LicenseKey::parse(&text) {
            Ok(k) => ActivatedKey::Present {
                masked: k.masked(),
                key: k,
                path: path.to_path_buf(),
                mode: FileMode::of(path),
            },
            Err(e) => ActivatedKey::Bad {
                path: path.to_path_buf(),
                problem: e.to_string(),
            },
        },
    }
}

/// "readable by its group and others", for the bits in 0o077.
fn exposure(mode: u32) -> Option<&'static str> {
    match (mode & 0o040 != 0, mode & 0o004 != 0) {
        (true, true) => Some("readable by its group and by others"),
        (true, false) => Some("readable by its group"),
        (false, true) => Some("readable by others"),
        (false, false) => None,
    }
}

/// `warn` when a file holding the key can be read by more than its owner.
pub fn key_file_check(what: &str, path: &Path, mode: &FileMode) -> Check {
    let name = "key file mode";
    match mode {
        FileMode::Missing => Check::fail(
            name,
            format!("{what} {} has disappeared", path.display()),
            "restore the file or run `wispanel-license activate`",
        ),
        FileMode::Unreadable(e) => Check::warn(
            name,
            format!("cannot stat {what} {}: {e}", path.display()),
            "run doctor as root",
        ),
        FileMode::Present { mode, .. } => match exposure(*mode) {
            None => Check::ok(name, format!("{what} {} is {mode:04o}", path.display())),
            Some(who) => Check::warn(
                name,
                format!("{what} {} is {mode:04o}, {who}", path.display()),
                format!("run `chmod 600 {}`", path.display()),
            ),
        },
    }
}

/// The configuration, key and key-file checks.
pub fn checks(l: &Loaded) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(c) = &l.config else {
        out.push(Check::fail(
            "configuration",
            l.error.clone().unwrap_or_else(|| "does not load".into()),
            format!(
                "the daemon refuses to start with this configuration (exit 78); fix it and check with `wispanel-licensed --check-config --config {}`",
                l.path.display()
            ),
        ));
        return out;
    };
    out.push(Check::ok(
        "configuration",
        format!("{} loads; portal {}", l.path.display(), c.portal_url),
    ));

    // The key in force, by the daemon's own rule.
    let saved = match &l.activated {
        ActivatedKey::Present { key, .. } => Some(key),
        _ => None,
    };
    let rule = key_in_force(&KeyFacts::new(
        c.license_key.as_ref(),
        saved,
        l.state.as_ref(),
    ));
    let configured_from = |source: &KeySource| match source {
        KeySource::Inline => format!("license_key in {}", l.path.display()),
        KeySource::File(p) => format!("license_key_file {}", p.display()),
        KeySource::Credential(p) => format!("systemd credential {}", p.display()),
    };
    let key = match (rule.key, &l.activated, &c.key_source) {
        (Some((k, Origin::Configured)), _, Some(source)) => {
            let mut found = format!("{} from {}", k.masked(), configured_from(source));
            if rule.saved_replaced {
                found.push_str(
                    " (it replaces the key saved by `activate`: the configuration names a new key)",
                );
            }
            Check::ok("licence key", found)
        }
        (Some((k, _)), ActivatedKey::Present { path, .. }, _) => {
            let mut found = format!("{} saved by `activate` in {}", k.masked(), path.display());
            if let Some(configured) = &c.license_key {
                found.push_str(&format!(
                    " (in force over the configured {}, as in the daemon)",
                    configured.masked()
                ));
            }
            Check::ok("licence key", found)
        }
        (Some((k, _)), _, _) => Check::ok("licence key", k.masked()),
        (None, ActivatedKey::Bad { path, problem }, _) => Check::fail(
            "licence key",
            format!(
                "the activated key {} is unusable: {problem}",
                path.display()
            ),
            "run `wispanel-license activate` again",
        ),
        (None, _, _) if rule.configured_released => Check::fail(
            "licence key",
            format!(
                "the configured key {} was released by `deactivate`; no key is in force",
                c.license_key
                    .as_ref()
                    .map(LicenseKey::masked)
                    .unwrap_or_default()
            ),
            "run `wispanel-license activate`, or configure another key",
        ),
        (None, _, _) => Check::fail(
            "licence key",
            "none configured and none activated",
            "set license_key_file in the configuration, or run `wispanel-license activate`",
        ),
    };
    out.push(key);

    match (&c.key_source, &l.key_file_mode) {
        (Some(KeySource::File(_)), Some((p, m))) => {
            out.push(key_file_check("license_key_file", p, m))
        }
        (Some(KeySource::Credential(p)), _) => out.push(Check::ok(
            "key file mode",
            format!(
                "systemd credential {} (its directory is private to the service)",
                p.display()
            ),
        )),
        (Some(KeySource::Inline), _) => {
            let check = match &l.config_mode {
                FileMode::Present { mode, .. } => match exposure(*mode) {
                    Some(who) => Check::warn(
                        "key file mode",
                        format!(
                            "the key is inline in {}, which is {mode:04o}, {who}",
                            l.path.display()
                        ),
                        format!(
                            "run `chmod 600 {}`, or move the key to license_key_file (mode 0600)",
                            l.path.display()
                        ),
                    ),
                    None => Check::ok(
                        "key file mode",
                        format!("the key is inline in {} ({mode:04o})", l.path.display()),
                    ),
                },
                other => key_file_check("configuration", &l.path, other),
            };
            out.push(check);
        }
        _ => {}
    }
    if let ActivatedKey::Present { path, mode, .. } = &l.activated {
        out.push(key_file_check("activated key", path, mode));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KEY: &str = "WISP-AB12-CD34-SA6T";

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn conf(dir: &Path, extra: &str, mode: u32) -> PathBuf {
        let text = format!(
            "product_version = \"1.4.2\"\nstate_dir = \"{}\"\n{extra}",
            dir.join("state").display()
        );
        write(dir, "license.toml", &text, mode)
    }

    #[test]
    fn bad_configuration_fails_with_the_loader_message() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "license.toml", "licence_key = \"x\"\n", 0o600);
        let cs = checks(&load(&p, None));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].status, super::super::Status::Fail);
        assert!(cs[0].found.contains("unknown key"), "{:?}", cs[0]);
        assert!(cs[0].found.contains("license.toml:1"), "{:?}", cs[0]);
    }

    #[test]
    fn missing_configuration_fails() {
        let d = tempfile::tempdir().unwrap();
        let cs = checks(&load(&d.path().join("nope.toml"), None));
        assert_eq!(cs[0].status, super::super::Status::Fail);
        assert!(cs[0].found.contains("does not exist"), "{:?}", cs[0]);
    }

    #[test]
    fn inline_key_is_masked_and_config_mode_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = conf(d.path(), &format!("license_key = \"{KEY}\"\n"), 0o644);
        let cs = checks(&load(&p, None));
        let all = format!("{cs:?}");
        assert!(!all.contains("AB12-CD34"), "{all}");
        assert_eq!(cs[1].found.split(' ').next(), Some("WISP-****SA6T"));
        assert_eq!(cs[2].name, "key file mode");
        assert_eq!(cs[2].status, super::super::Status::Warn);
        assert!(cs[2].found.contains("readable by"), "{:?}", cs[2]);

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cs = checks(&load(&p, None));
        assert_eq!(cs[2].status, super::super::Status::Ok, "{:?}", cs[2]);
    }

    #[test]
    fn key_file_ok_and_loader_refuses_an_open_one() {
        let d = tempfile::tempdir().unwrap();
        let k = write(d.path(), "license.key", KEY, 0o600);
        let p = conf(
            d.path(),
            &format!("license_key_file = \"{}\"\n", k.display()),
            0o644,
        );
        let cs = checks(&load(&p, None));
        assert_eq!(cs[2].status, super::super::Status::Ok, "{cs:?}");
        assert!(cs[2].found.contains("0600"), "{:?}", cs[2]);
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o640)).unwrap();
        let cs = checks(&load(&p, None));
        assert_eq!(cs[0].status, super::super::Status::Fail);
        assert!(cs[0].found.contains("chmod 600"), "{:?}", cs[0]);
    }

    #[test]
    fn key_file_check_warns_on_group_or_other() {
        use super::super::Status::{Ok, Warn};
        let check =
            |mode| key_file_check("x", Path::new("/k"), &FileMode::Present { mode, uid: 0 });
        for (mode, status, found) in [
            (0o640, Warn, Some("readable by its group")),
            (0o604, Warn, Some("readable by others")),
            (0o600, Ok, None),
            // Write-only for the group is not a leak.
            (0o620, Ok, None),
        ] {
            let c = check(mode);
            assert_eq!(c.status, status, "{mode:o}: {c:?}");
            if let Some(f) = found {
                assert!(c.found.contains(f), "{mode:o}: {c:?}");
            }
        }
    }

    #[test]
    fn no_key_fails_and_activated_key_counts() {
        let d = tempfile::tempdir().unwrap();
        let p = conf(d.path(), "", 0o600);
        let cs = checks(&load(&p, None));
        assert_eq!(cs[1].name, "licence key");
        assert_eq!(cs[1].status, super::super::Status::Fail);

        std::fs::create_dir(d.path().join("state")).unwrap();
        write(&d.path().join("state"), "license.key", KEY, 0o644);
        let cs = checks(&load(&p, None));
        assert_eq!(cs[1].status, super::super::Status::Ok, "{cs:?}");
        assert!(cs[1].found.starts_with("WISP-****SA6T"));
        let last = cs.last().unwrap();
        assert_eq!(last.status, super::super::Status::Warn, "{last:?}");

        write(&d.path().join("state"), "license.key", "garbage", 0o600);
        let cs = checks(&load(&p, None));
        assert_eq!(cs[1].status, super::super::Status::Fail, "{cs:?}");
    }

    #[test]
    fn credential_key() {
        let d = tempfile::tempdir().unwrap();
        let creds = d.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        write(&creds, "license.key", KEY, 0o644);
        let p = conf(d.path(), "", 0o600);
        let cs = checks(&load(&p, Some(&creds)));
        assert_eq!(cs[1].status, super::super::Status::Ok);
        assert!(cs[1].found.contains("systemd credential"));
        assert_eq!(cs[2].status, super::super::Status::Ok);
    }

    #[test]
    fn the_key_in_force_is_the_daemons() {
        use crate::doctor::Status;
        let d = tempfile::tempdir().unwrap();
        let configured = "WISP-AAAA-AAAA-AAAA";
        let p = conf(
            d.path(),
            &format!("license_key = \"{configured}\"\n"),
            0o600,
        );
        std::fs::create_dir(d.path().join("state")).unwrap();
        write(&d.path().join("state"), "license.key", KEY, 0o600);
        let a = LicenseKey::parse(configured).unwrap();

        // B activated while A was configured: B is in force, as in the daemon.
        let mut l = load(&p, None);
        let mut core = Core::default();
        core.configured_key_changed(Some(a.fingerprint()));
        l.state = Some(core.clone());
        let cs = checks(&l);
        assert_eq!(cs[1].status, Status::Ok, "{cs:?}");
        assert!(
            cs[1].found.starts_with("WISP-****SA6T saved by `activate`"),
            "{cs:?}"
        );
        assert!(
            cs[1].found.contains("over the configured WISP-****AAAA"),
            "{cs:?}"
        );

        // The configuration has named a new key since: it replaces B.
        let mut l = load(&p, None);
        let mut old = Core::default();
        old.configured_key_changed(Some("0000000000000000".into()));
        l.state = Some(old);
        let cs = checks(&l);
        assert!(
            cs[1].found.starts_with("WISP-****AAAA from license_key"),
            "{cs:?}"
        );

        // A deactivate released the configured key, and no key was activated.
        std::fs::remove_file(d.path().join("state/license.key")).unwrap();
        let mut l = load(&p, None);
        let mut released = core;
        released.licence.deactivated_key = Some(a.fingerprint());
        l.state = Some(released);
        let cs = checks(&l);
        assert_eq!(cs[1].status, Status::Fail, "{cs:?}");
        assert!(cs[1].found.contains("released by `deactivate`"), "{cs:?}");
    }
}
