//! Panel updates: release versions ([`Version`]: parse and compare) and
//! fetching a release from the portal ([`download()`]: token, streamed GET,
//! size and SHA-256 checks, atomic placement).

pub mod download;

pub use download::{DownloadError, Downloaded, Progress, download};
pub use wispanel_core::version::{self, Version, VersionError};
