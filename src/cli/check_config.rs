//! `wispanel-licensed --check-config`: the configuration loaded as a start
//! would load it, then printed as effective TOML with the key masked and a
//! last comment line saying which socket settings apply; or the error.
//! The binary calls [`check_config`] with its stdout and stderr; the tests
//! call it with buffers.

use crate::config::Config;
use crate::exit;
use crate::socket::activation;
use std::io::Write;
use std::path::Path;

/// Checks the configuration at `path`: the effective configuration to `out`
/// and [`exit::OK`], or the error (naming file, line and key) to `err` and
/// [`exit::CONFIG`]. `$CREDENTIALS_DIRECTORY` counts as for a start.
pub fn check_config(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match Config::load(path) {
        Ok(config) => {
            let unit = activation::installed_unit();
            let text = format!(
                "{}\n# {}\n",
                config.to_effective_toml(),
                activation::which_applies(&config, unit.as_ref())
            );
            // A closed stdout (`| head`) is not a configuration error.
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            exit::OK
        }
        Err(e) => {
            let _ = writeln!(err, "wispanel-licensed: {e}");
            exit::CONFIG
        }
    }
}
