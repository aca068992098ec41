//! The effective configuration as TOML (`wispanel-licensed --check-config`):
//! defaults filled in, the licence key and a proxy password masked.

use super::*;
use crate::net::proxy::mask_proxy;

/// A TOML string literal (quotes and escapes done by the toml crate).
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

impl Config {
    /// The effective configuration as TOML that a person can read: defaults
    /// filled in, durations as strings, the licence key masked, a proxy
    /// password masked. Loading it again gives the same configuration, except
    /// that a masked inline key is refused as such.
    pub fn to_effective_toml(&self) -> String {
        let mut o = String::new();
        let mut line = |s: String| {
            o.push_str(&s);
            o.push('\n');
        };
        line(format!(
            "# Effective configuration, from {}",
            self.path.display()
        ));
        line("# (defaults filled in; the licence key is masked)".into());
        match (&self.key_source, &self.license_key) {
            (Some(KeySource::Inline), Some(k)) => {
                line(format!("license_key = {}", quote(&k.masked())))
            }
            (Some(KeySource::File(p)), Some(k)) => line(format!(
                "license_key_file = {}  # holds {}",
                quote_path(p),
                k.masked()
            )),
            (Some(KeySource::Credential(p)), Some(k)) => line(format!(
                "# licence key {} from the systemd credential {} (plaintext or encrypted at rest: `wispanel-license doctor` tells)",
                k.masked(),
                p.display()
            )),
            _ => line(
                "# no licence key configured (set one with `wispanel-license activate`)".into(),
            ),
        }
        line(format!("portal_url = {}", quote(&self.portal_url)));
        match &self.ca_file {
            Some(p) => line(format!("ca_file = {}", quote_path(p))),
            None => line("# ca_file: not set (system trust store only)".into()),
        }
        match &self.version {
            VersionSource::Fixed(v) => line(format!("product_version = {}", quote(v))),
            VersionSource::File(p) => line(format!("version_file = {}", quote_path(p))),
        }
        line(format!("channel = {}", quote(&self.channel)));
        line(format!("state_dir = {}", quote_path(&self.state_dir)));
        line(format!("socket_path = {}", quote_path(&self.socket_path)));
        line(format!(
            "socket_mode = {}",
            quote(&format!("{:04o}", self.socket_mode))
        ));
        match &self.socket_group {
            Some(g) => line(format!("socket_group = {}", quote(g))),
            None => line("# socket_group: not set (the daemon's own group)".into()),
        }
        line(format!(
            "socket_connections_per_uid = {}",
            self.socket_connections_per_uid
        ));
        match &self.proxy {
            Some(p) => line(format!("proxy = {}", quote(&mask_proxy(p)))),
            None => line("# proxy: not set (HTTPS_PROXY and NO_PROXY are honoured)".into()),
        }
        line(format!(
            "warn_before_expiry = {}{}",
            quote(&format_duration(self.warn_before_expiry)),
            if self.warn_before_expiry.is_zero() {
                "  # never warns of the expiry"
            } else {
                ""
            }
        ));
        match &self.metrics_textfile {
            Some(p) => line(format!("metrics_textfile = {}", quote_path(p))),
            None => line("# metrics_textfile: not set (metrics on the socket only)".into()),
        }
        let s = &self.schedule;
        line(String::new());
        line("[schedule]".into());
        for (k, v) in [
            ("validate_interval", s.core.validate_interval),
            ("update_check_interval", s.core.update_check_interval),
            ("splay", s.core.splay),
            ("retry_initial", s.core.retry_initial),
            ("retry_max", s.core.retry_max),
            ("offline_grace", s.core.offline_grace),
            ("request_timeout", s.request_timeout),
        ] {
            line(format!("{k} = {}", quote(&format_duration(v))));
        }
        line(String::new());
        line("[hardware]".into());
        line(format!("root = {}", quote_path(&self.hardware.root)));
        match &self.hardware.id_file {
            Some(p) => line(format!("id_file = {}", quote_path(p))),
            None => {
                line("# id_file: not set (the id is computed from this host's hardware)".into())
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn inline_key_is_masked_and_refused_when_masked() {
        let c = load("license_key = \"WISP-AB12-CD34-SA6T\"\nproduct_version = \"1\"\n").unwrap();
        assert_eq!(c.key_source, Some(KeySource::Inline));
        let out = c.to_effective_toml();
        assert!(out.contains("license_key = \"WISP-****SA6T\""), "{out}");
        assert!(!out.contains("AB12"), "{out}");
        assert!(!format!("{c:?}").contains("AB12"));
        let e = Config::from_toml_str_with(&out, Path::new("/x.toml"), None).unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::MaskedKey), "{e}");

        let e = err("license_key = \"WISP-SECRET$KEY\"\nproduct_version = \"1\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("license_key")));
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}
