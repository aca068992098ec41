//! What the daemon's `state_dir` says to a download: the key in force (the
//! daemon's own rule) and a portal gate the daemon saved while it is closed.

use super::DownloadError;
use crate::config::Config;
use crate::key_in_force::OnDisk;
use crate::store::{STATE_FILE, read_state};
use std::path::{Path, PathBuf};
use wispanel_core::key::LicenseKey;
use wispanel_core::timestamp::Timestamp;

/// The key in force, by the daemon's rule ([`crate::key_in_force`]): the
/// key saved by `activate` unless the configuration names a newer one, else
/// the configured key unless a `deactivate` released it.
pub(super) fn licence_key(config: &Config) -> Result<LicenseKey, DownloadError> {
    // Never creates the state directory: it is the daemon's.
    let disk = OnDisk::read(&config.state_dir);
    if let Some(k) = disk.in_force(config.license_key.as_ref()).key() {
        return Ok(k.clone());
    }
    // No key in force; an unreadable saved key is the better message.
    disk.saved?;
    Err(DownloadError::NoKey {
        config: config.path.clone(),
    })
}

/// The portal gate the daemon saved, while it is closed. An unreadable or
/// missing state file closes nothing: the portal would say so itself.
pub(super) fn saved_gate(state_dir: &Path, now: Timestamp) -> Option<(Timestamp, PathBuf)> {
    let core = read_state(state_dir).core()?;
    core.gate_closed_until(now)
        .map(|t| (t, state_dir.join(STATE_FILE)))
}
