//! Panel updates: release versions ([`Version`]: parse and compare).

pub mod version;

pub use version::{Version, VersionError};
