//! Fetching a release: `wispanel-license update download`.
//!
//! The steps: hardware_id and the key in force (the daemon's rule,
//! [`crate::key_in_force`]); the daemon's saved portal gate is respected; `check-update`
//! names the latest release unless a version was asked for; `download/token`
//! gives a URL, a size and a SHA-256; the URL is streamed (never the whole
//! file in memory) into `.<name>.part-<pid>` beside the target, refusing more
//! bytes than announced and a body that stalls for `request_timeout`; only a
//! file of the right size and digest is fsynced and renamed to its final
//! name, so that name never holds a partial or unverified file. Any failure
//! removes the temporary file.
//!
//! One file per concept: [`state`] (what the daemon's `state_dir` says: the
//! key in force, a closed gate), [`token`] (`check-update` and
//! `download/token`), [`fetch`] (the streamed, verified GET), [`place`] (the
//! target directory, the file name, the part file and its placement),
//! [`error`]; this file runs the steps in order.

mod error;
mod fetch;
mod place;
mod state;
mod token;

pub use error::DownloadError;
pub use place::file_name;

use crate::config::Config;
use crate::hwid;
use crate::portal::{PortalClient, RequestFacts};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wispanel_core::version::Version;

/// The longest a whole download may take, however steadily bytes arrive
/// (the stall limit, `request_timeout` without a byte, is the usual bound).
pub const DOWNLOAD_CEILING: Duration = Duration::from_secs(24 * 3600);
/// Redirects followed for the release URL (a CDN may sit behind the portal).
pub const MAX_REDIRECTS: usize = 5;
/// Bytes of an error answer's body read for its message.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Told how far the transfer has come.
pub trait Progress: Send {
    /// `done` of `total` bytes have been written (called after every chunk).
    fn update(&mut self, done: u64, total: u64);
    /// The transfer has ended, well or not.
    fn finish(&mut self) {}
}

/// A verified release in its final place.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Downloaded {
    pub path: PathBuf,
    /// The version asked for (or the latest the portal named).
    pub version: String,
    /// Lowercase hex SHA-256 of the file (equal to the portal's).
    pub sha256: String,
    pub size: u64,
}

/// Downloads release `version` (default: the latest the portal names) into
/// `dir`, verifies its size and SHA-256, and returns where it is.
pub async fn download(
    config: &Config,
    version: Option<&str>,
    dir: &Path,
    mut progress: Option<&mut dyn Progress>,
) -> Result<Downloaded, DownloadError> {
    let requested = match version {
        Some(v) => {
            Version::parse(v).map_err(DownloadError::BadVersion)?;
            let v = v.trim();
            Some(v.strip_prefix(['v', 'V']).unwrap_or(v).to_string())
        }
        None => None,
    };
    place::check_dir(dir)?;
    let current = config.read_product_version()?;
    let hardware_id = hwid::compute_from_env(&config.hardware)?.id;
    let key = state::licence_key(config)?;
    if let Some((until, state)) = state::saved_gate(&config.state_dir, crate::clock::now()) {
        return Err(DownloadError::GateClosed { until, state });
    }
    let client = PortalClient::new(config)?;
    let facts = RequestFacts {
        key: &key,
        hardware_id: &hardware_id,
        hostname: "",
        product_version: &current,
        channel: &config.channel,
        version: None,
    };

    let (version, token) = token::request(&client, &facts, requested).await?;

    let url = fetch::release_url(client.base_url(), &token.url)?;
    let name = place::file_name(&url, &version);
    let target = dir.join(&name);
    let part = dir.join(format!(".{name}.part-{}", std::process::id()));
    let timeout = config.schedule.request_timeout;

    let resp = fetch::fetch(&client, url, timeout).await?;
    let shown = fetch::shown_url(resp.url());
    let mut guard = place::PartFile::create(&part).await?;
    let result = fetch::stream(
        resp,
        &mut guard,
        &token,
        (&shown, &target),
        timeout,
        &mut progress,
    )
    .await;
    if let Some(p) = progress {
        p.finish();
    }
    let sha256 = result?;
    guard.place(&target).await?;
    Ok(Downloaded {
        path: target,
        version,
        sha256,
        size: token.size,
    })
}
