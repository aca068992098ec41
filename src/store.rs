//! The saved state (`state_dir/state.json`) and the key saved by `activate`
//! (`state_dir/license.key`).
//!
//! Writes are atomic and durable: a temporary file in the same directory,
//! `fsync`, `rename`, then `fsync` of the directory, so no crash at any instant
//! leaves an unreadable `state.json`. A file that cannot be read at start is
//! moved aside as `state.json.corrupt-<unix time>` and the daemon starts afresh.

use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use wispanel_core::key::LicenseKey;
use wispanel_core::machine::Core;
use wispanel_core::timestamp::Timestamp;

/// The version of the `state.json` layout. Later versions must load every
/// earlier one (tests/fixtures/state-v1.json proves it for v1).
pub const SCHEMA: u32 = 1;

pub const STATE_FILE: &str = "state.json";
pub const KEY_FILE: &str = "license.key";

/// The file's layout.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedState {
    pub schema: u32,
    pub saved_at: Option<Timestamp>,
    #[serde(flatten)]
    pub core: Core,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        path,
        action,
        source,
    }
}

/// What `load` found.
#[derive(Debug)]
pub enum Loaded {
    /// No state file: a first start.
    Fresh,
    Existing(Box<Core>),
    /// The file could not be read; it was moved to `moved_to` (if that worked).
    Corrupt {
        problem: String,
        moved_to: Option<PathBuf>,
    },
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates `dir` (mode 0700) when it is missing.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir, "cannot create the state directory"))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Parses a state file's text.
    pub fn parse(text: &str, path: &Path) -> Result<Core, StoreError> {
        let saved: SavedState = serde_json::from_str(text).map_err(|e| StoreError::Invalid {
            path: path.to_path_buf(),
            problem: format!("not a valid state file: {e}"),
        })?;
        if saved.schema == 0 || saved.schema > SCHEMA {
            return Err(StoreError::Invalid {
                path: path.to_path_buf(),
                problem: format!(
                    "schema {} is not one this version reads (1..={SCHEMA})",
                    saved.schema
                ),
            });
        }
        Ok(saved.core)
    }

    /// Loads the saved state; a file that cannot be read is moved aside.
    pub fn load(&self, now: Timestamp) -> Loaded {
        let path = self.state_path();
        let problem = match read_state(&self.dir) {
            SavedRead::Missing => return Loaded::Fresh,
            SavedRead::Good(core) => return Loaded::Existing(core),
            SavedRead::Unreadable(e) => format!("cannot read: {e}"),
            SavedRead::NotText => "not UTF-8 text".to_string(),
            SavedRead::Invalid(StoreError::Invalid { problem, .. }) => problem,
            SavedRead::Invalid(other) => other.to_string(),
        };
        let aside = self
            .dir
            .join(format!("{STATE_FILE}.corrupt-{}", now.unix_secs()));
        let moved_to = fs::rename(&path, &aside).ok().map(|_| aside);
        Loaded::Corrupt { problem, moved_to }
    }

    /// Saves `core` atomically and durably, mode 0600. One save at a time
    /// per directory (the temporary file's name is per process): the daemon
    /// serialises its saves (`Daemon::save_now`).
    pub fn save(&self, core: &Core, now: Timestamp) -> Result<(), StoreError> {
        /// [`SavedState`] borrowing the core: serialised without a copy.
        #[derive(Serialize)]
        struct Saving<'a> {
            schema: u32,
            saved_at: Option<Timestamp>,
            #[serde(flatten)]
            core: &'a Core,
        }
        let saved = Saving {
            schema: SCHEMA,
            saved_at: Some(now),
            core,
        };
        let mut text = serde_json::to_vec_pretty(&saved).map_err(|e| StoreError::Invalid {
            path: self.state_path(),
            problem: format!("cannot serialise the state: {e}"),
        })?;
        text.push(b'\n');
        self.write_atomic(STATE_FILE, &text)
    }

    /// Writes `name` in the state directory: temp file, fsync, rename, fsync dir.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let target = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        crate::atomic_file::write(&self.dir, &target, &tmp, bytes, 0o600).map_err(|e| {
            StoreError::Io {
                path: e.file,
                action: e.action,
                source: e.source,
            }
        })
    }

    /// Removes temporary files that a killed daemon left behind
    /// (`.state.json.tmp-<pid>`, `.license.key.tmp-<pid>`,
    /// `.history.jsonl.tmp-<pid>`). Call it only once
    /// this daemon is known to be the only one using the directory.
    pub fn remove_stale_temp_files(&self) -> Vec<PathBuf> {
        let own = format!(".tmp-{}", std::process::id());
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = [STATE_FILE, KEY_FILE, crate::history::FILE_NAME]
                .iter()
                .any(|f| name.starts_with(&format!(".{f}.tmp-")));
            if ours && !name.ends_with(&own) && fs::remove_file(e.path()).is_ok() {
                removed.push(e.path());
            }
        }
        removed
    }

    /// The key saved by `activate`, if any.
    pub fn load_key(&self) -> Result<Option<LicenseKey>, StoreError> {
        let path = self.key_path();
        match fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io {
                path,
                action: "cannot read the activated key",
                source: e,
            }),
            Ok(text) => LicenseKey::parse(&text)
                .map(Some)
                .map_err(|e| StoreError::Invalid {
                    path,
                    problem: e.to_string(),
                }),
        }
    }

    /// Saves the activated key (mode 0600).
    pub fn save_key(&self, key: &LicenseKey) -> Result<(), StoreError> {
        let mut text = key.expose().as_bytes().to_vec();
        text.push(b'\n');
        self.write_atomic(KEY_FILE, &text)
    }

    /// Removes the activated key (after a deactivation).
    pub fn remove_key(&self) -> Result<(), StoreError> {
        match fs::remove_file(self.key_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
                path: self.key_path(),
                action: "cannot remove the activated key",
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// What `state_dir/state.json` holds, read without changing anything.
#[derive(Debug)]
pub enum SavedRead {
    Missing,
    Unreadable(std::io::Error),
    NotText,
    /// Not a state file this version reads ([`StoreError::Invalid`]).
    Invalid(StoreError),
    Good(Box<Core>),
}

impl SavedRead {
    /// The saved core; `None` when missing or unreadable.
    pub fn core(self) -> Option<Core> {
        match self {
            SavedRead::Good(core) => Some(*core),
            _ => None,
        }
    }
}

/// The one reader of `state.json`: the daemon's [`Store::load`], `doctor`,
/// `update download` and [`crate::key_in_force::OnDisk`] all read it here.
pub fn read_state(state_dir: &Path) -> SavedRead {
    let path = state_dir.join(STATE_FILE);
    match fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedRead::Missing,
        Err(e) => SavedRead::Unreadable(e),
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Err(_) => SavedRead::NotText,
            Ok(text) => match Store::parse(text, &path) {
                Ok(core) => SavedRead::Good(Box::new(core)),
                Err(e) => SavedRead::Invalid(e),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use wispanel_core::machine::{Binding, Verdict};

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn sample() -> Core {
        let mut c = Core::default();
        c.licence.verdict = Some(Verdict::Valid {
            at: NOW,
            details: Default::default(),
            skew_secs: Some(0),
        });
        c.licence.activated = Some(Binding {
            key_fingerprint: "0011223344556677".into(),
            hardware_id: "a".repeat(64),
        });
        c.plan.next_validate_at = Some(NOW.add(std::time::Duration::from_secs(60)));
        c
    }

    #[test]
    fn round_trip_with_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("state")).unwrap();
        assert_eq!(
            fs::metadata(s.dir()).unwrap().mode() & 0o777,
            0o700,
            "state_dir is created 0700"
        );
        assert!(matches!(s.load(NOW), Loaded::Fresh));
        s.save(&sample(), NOW).unwrap();
        assert_eq!(fs::metadata(s.state_path()).unwrap().mode() & 0o777, 0o600);
        match s.load(NOW) {
            Loaded::Existing(c) => assert_eq!(*c, sample()),
            other => panic!("{other:?}"),
        }
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(s.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        for junk in [
            &b"{\"schema\": 1, \"licence\": "[..],
            b"\xff\xfe",
            b"[]",
            b"{\"schema\": 99}",
        ] {
            fs::write(s.state_path(), junk).unwrap();
            match s.load(NOW) {
                Loaded::Corrupt { problem, moved_to } => {
                    let moved = moved_to.unwrap();
                    assert!(moved.ends_with(format!("state.json.corrupt-{}", NOW.unix_secs())));
                    assert_eq!(fs::read(&moved).unwrap(), junk);
                    assert!(!problem.is_empty());
                }
                other => panic!("{other:?}"),
            }
            assert!(!s.state_path().exists());
            assert!(matches!(s.load(NOW), Loaded::Fresh));
        }
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        s.save(&sample(), NOW).unwrap();
        for n in [".state.json.tmp-1", ".license.key.tmp-77", "other.tmp-1"] {
            fs::write(d.path().join(n), b"x").unwrap();
        }
        let removed = s.remove_stale_temp_files();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(d.path().join("other.tmp-1").exists(), "only our own names");
        assert!(s.state_path().exists());
    }

    #[test]
    fn key_file_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        assert_eq!(s.load_key().unwrap(), None);
        let k = LicenseKey::parse("WISP-AB12-CD34-SA6T").unwrap();
        s.save_key(&k).unwrap();
        assert_eq!(fs::metadata(s.key_path()).unwrap().mode() & 0o777, 0o600);
        assert_eq!(s.load_key().unwrap(), Some(k));
        s.remove_key().unwrap();
        s.remove_key().unwrap();
        assert_eq!(s.load_key().unwrap(), None);
    }

    #[test]
    fn read_only_dir_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o500)).unwrap();
        let r = s.save(&sample(), NOW);
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
        // root ignores directory modes; only check when the write was refused.
        if let Err(e) = r {
            assert!(
                e.to_string().contains("cannot create the temporary file"),
                "{e}"
            );
        }
    }
}
