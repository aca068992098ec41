//! wispanel-license: keeps a WisPanel panel host licensed.
//!
//! The crate is a library with thin binaries on top (`src/bin/`). See
//! `ARCHITECTURE.md` for how the modules fit together.
#![forbid(unsafe_code)]

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod doctor;
pub mod fleet;
pub mod fuzzing;
pub mod host;
pub mod hwid;
pub mod key;
pub mod logging;
pub mod portal;
pub mod sim;
pub mod socket;
pub mod store;
pub mod systemd;
pub mod timestamp;
pub mod update;
