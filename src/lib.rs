//! wispanel-license: keeps a WisPanel panel host licensed.
//!
//! The product: a library with the two programs users run on top
//! (`src/bin/`). Its pure core is the `wispanel-core` crate. See
//! `ARCHITECTURE.md` for how the crates and modules fit together.
#![forbid(unsafe_code)]

pub mod api;
pub mod atomic_file;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod exit;
pub mod fair;
pub mod history;
pub mod host;
pub mod hwid;
pub mod key_in_force;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod portal;
pub mod socket;
pub mod store;
pub mod systemd;
/// The in-process test harness (feature `test-util`, tests only).
#[cfg(feature = "test-util")]
pub mod testing;
pub mod textfile;
pub mod update;
