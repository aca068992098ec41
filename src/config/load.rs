//! Strict TOML: the file parsed into raw values with their spans (unknown
//! keys refused with a guess), then each value checked into [`Config`].

use super::ctx::{Ctx, Sp};
use super::fields::{
    absolute, duration, file_path, parse_socket_mode, portal_url, proxy_url, word,
};
use super::key_file::license_key;
use super::side_file::{ca_file, version};
use super::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    license_key: Option<Sp<String>>,
    license_key_file: Option<Sp<String>>,
    portal_url: Option<Sp<String>>,
    ca_file: Option<Sp<String>>,
    product_version: Option<Sp<String>>,
    version_file: Option<Sp<String>>,
    channel: Option<Sp<String>>,
    state_dir: Option<Sp<String>>,
    socket_path: Option<Sp<String>>,
    socket_mode: Option<Sp<String>>,
    socket_group: Option<Sp<String>>,
    socket_connections_per_uid: Option<Sp<i64>>,
    proxy: Option<Sp<String>>,
    warn_before_expiry: Option<Sp<String>>,
    metrics_textfile: Option<Sp<String>>,
    schedule: Option<RawSchedule>,
    hardware: Option<RawHardware>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    validate_interval: Option<Sp<String>>,
    update_check_interval: Option<Sp<String>>,
    splay: Option<Sp<String>>,
    retry_initial: Option<Sp<String>>,
    retry_max: Option<Sp<String>>,
    offline_grace: Option<Sp<String>>,
    request_timeout: Option<Sp<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHardware {
    root: Option<Sp<String>>,
    id_file: Option<Sp<String>>,
}

impl Config {
    /// Loads and validates the configuration file at `path`. The licence key
    /// may come from the systemd credential in `$CREDENTIALS_DIRECTORY`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::file(path, ConfigErrorKind::Missing));
            }
            Err(e) => return Err(ConfigError::file(path, ConfigErrorKind::Unreadable(e))),
        };
        Config::from_toml_str(&text, path)
    }

    /// Validates configuration `text` as if read from `path`. Key files,
    /// version files, CA files and `$CREDENTIALS_DIRECTORY` are read as by
    /// [`Config::load`].
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::from_toml_str_with(text, path, credentials_dir_from_env().as_deref())
    }

    /// As [`Config::from_toml_str`], with an explicit credentials directory
    /// (`None`: no systemd credentials) instead of `$CREDENTIALS_DIRECTORY`.
    pub fn from_toml_str_with(
        text: &str,
        path: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let ctx = Ctx { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;

        let (license_key, key_source) = license_key(
            &ctx,
            raw.license_key.as_ref(),
            raw.license_key_file.as_ref(),
            credentials_dir,
        )?;

        let portal_url = match &raw.portal_url {
            Some(v) => portal_url(v.get_ref()).map_err(|k| ctx.val("portal_url", v, k))?,
            None => DEFAULT_PORTAL_URL.to_string(),
        };

        let ca_file = match &raw.ca_file {
            Some(v) => Some(ca_file(&ctx, v)?),
            None => None,
        };

        let version = version(
            &ctx,
            raw.product_version.as_ref(),
            raw.version_file.as_ref(),
        )?;

        let channel = match &raw.channel {
            Some(v) => word(&ctx, "channel", v)?,
            None => DEFAULT_CHANNEL.to_string(),
        };
        let state_dir = match &raw.state_dir {
            Some(v) => absolute(&ctx, "state_dir", v)?,
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };
        let socket_path = match &raw.socket_path {
            Some(v) => absolute(&ctx, "socket_path", v)?,
            None => PathBuf::from(DEFAULT_SOCKET_PATH),
        };
        let socket_mode = match &raw.socket_mode {
            Some(v) => parse_socket_mode(v.get_ref()).map_err(|k| ctx.val("socket_mode", v, k))?,
            None => DEFAULT_SOCKET_MODE,
        };
        let socket_group = match &raw.socket_group {
            Some(v) => {
                let g = word(&ctx, "socket_group", v)?;
                // Found now, so that `--check-config` and a start say the same.
                if crate::host::group_id(&g).is_err() {
                    return Err(ctx.val("socket_group", v, ConfigErrorKind::UnknownGroup(g)));
                }
                Some(g)
            }
            None => None,
        };
        let socket_connections_per_uid = match &raw.socket_connections_per_uid {
            Some(v) => {
                let range = crate::fair::PER_UID_RANGE;
                match usize::try_from(*v.get_ref()) {
                    Ok(n) if range.contains(&n) => n,
                    _ => {
                        return Err(ctx.at(
                            "socket_connections_per_uid",
                            Some(v.span()),
                            ConfigErrorKind::CountRange {
                                value: *v.get_ref(),
                                min: *range.start(),
                                max: *range.end(),
                            },
                        ));
                    }
                }
            }
            None => crate::fair::DEFAULT_PER_UID,
        };
        let proxy = match &raw.proxy {
            Some(v) => Some(proxy_url(v.get_ref()).map_err(|k| ctx.val("proxy", v, k))?),
            None => None,
        };
        let warn_before_expiry = duration(
            &ctx,
            "warn_before_expiry",
            raw.warn_before_expiry.as_ref(),
            wispanel_core::warnings::DEFAULT_WARN_BEFORE_EXPIRY,
            true,
        )?;
        let metrics_textfile = match &raw.metrics_textfile {
            Some(v) => Some(file_path(&ctx, "metrics_textfile", v)?),
            None => None,
        };

        let schedule = schedule(&ctx, raw.schedule.as_ref())?;

        let h = raw.hardware.as_ref();
        let hardware = Hardware {
            root: match h.and_then(|h| h.root.as_ref()) {
                Some(v) => absolute(&ctx, "hardware.root", v)?,
                None => Hardware::default().root,
            },
            id_file: match h.and_then(|h| h.id_file.as_ref()) {
                Some(v) => Some(absolute(&ctx, "hardware.id_file", v)?),
                None => None,
            },
        };

        Ok(Config {
            path: path.to_path_buf(),
            license_key,
            key_source,
            portal_url,
            ca_file,
            version,
            channel,
            state_dir,
            socket_path,
            socket_mode,
            socket_group,
            socket_connections_per_uid,
            proxy,
            warn_before_expiry,
            metrics_textfile,
            schedule,
            hardware,
        })
    }
}

/// The `[schedule]` table, each value defaulting to the core's.
fn schedule(ctx: &Ctx<'_>, s: Option<&RawSchedule>) -> Result<Schedule, ConfigError> {
    let d = Schedule::default();
    let pick = |f: fn(&RawSchedule) -> Option<&Sp<String>>| s.and_then(f);
    let core = wispanel_core::schedule::Schedule {
        validate_interval: duration(
            ctx,
            "schedule.validate_interval",
            pick(|s| s.validate_interval.as_ref()),
            d.core.validate_interval,
            false,
        )?,
        update_check_interval: duration(
            ctx,
            "schedule.update_check_interval",
            pick(|s| s.update_check_interval.as_ref()),
            d.core.update_check_interval,
            false,
        )?,
        splay: duration(
            ctx,
            "schedule.splay",
            pick(|s| s.splay.as_ref()),
            d.core.splay,
            true,
        )?,
        retry_initial: duration(
            ctx,
            "schedule.retry_initial",
            pick(|s| s.retry_initial.as_ref()),
            d.core.retry_initial,
            false,
        )?,
        retry_max: duration(
            ctx,
            "schedule.retry_max",
            pick(|s| s.retry_max.as_ref()),
            d.core.retry_max,
            false,
        )?,
        offline_grace: duration(
            ctx,
            "schedule.offline_grace",
            pick(|s| s.offline_grace.as_ref()),
            d.core.offline_grace,
            false,
        )?,
    };
    let schedule = Schedule {
        core,
        request_timeout: duration(
            ctx,
            "schedule.request_timeout",
            pick(|s| s.request_timeout.as_ref()),
            d.request_timeout,
            false,
        )?,
    };
    if schedule.core.retry_initial > schedule.core.retry_max {
        let span = pick(|s| s.retry_initial.as_ref()).map(|v| v.span());
        return Err(ctx.at(
            "schedule.retry_initial",
            span,
            ConfigErrorKind::RetryOrder {
                initial: format_duration(schedule.core.retry_initial),
                max: format_duration(schedule.core.retry_max),
            },
        ));
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn minimal_config_gets_every_default() {
        let c = load(MIN).unwrap();
        assert_eq!(c.portal_url, "https://wispanel.com");
        assert_eq!(c.channel, "stable");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/wispanel-license"));
        assert_eq!(
            c.socket_path,
            PathBuf::from("/run/wispanel-license/status.sock")
        );
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.socket_group, None);
        assert_eq!(c.socket_connections_per_uid, 32);
        assert_eq!(c.proxy, None);
        assert_eq!(c.ca_file, None);
        assert_eq!(c.license_key, None);
        assert_eq!(c.key_source, None);
        assert_eq!(c.version, VersionSource::Fixed("1.4.2".into()));
        assert_eq!(c.schedule, Schedule::default());
        assert_eq!(c.hardware, Hardware::default());
        assert_eq!(c.warn_before_expiry, Duration::from_secs(30 * 86_400));
        assert_eq!(c.metrics_textfile, None);
        assert_eq!(c.read_product_version().unwrap(), "1.4.2");
    }

    #[test]
    fn warn_before_expiry_and_metrics_textfile() {
        let c = load(&format!(
            "{MIN}warn_before_expiry = \"0s\"\nmetrics_textfile = \"/var/lib/x/w.prom\"\n"
        ))
        .unwrap();
        assert_eq!(c.warn_before_expiry, Duration::ZERO);
        assert_eq!(c.metrics_textfile, Some(PathBuf::from("/var/lib/x/w.prom")));
        let out = c.to_effective_toml();
        assert!(out.contains("warn_before_expiry = \"0s\""), "{out}");
        assert!(
            out.contains("metrics_textfile = \"/var/lib/x/w.prom\""),
            "{out}"
        );
        let again = Config::from_toml_str_with(&out, Path::new("/x.toml"), None).unwrap();
        assert_eq!(
            (again.warn_before_expiry, again.metrics_textfile),
            (c.warn_before_expiry, c.metrics_textfile)
        );
        assert!(
            load(MIN)
                .unwrap()
                .to_effective_toml()
                .contains("warn_before_expiry = \"30d\"")
        );

        for (line, key) in [
            ("warn_before_expiry = \"30\"", "warn_before_expiry"),
            ("warn_before_expiry = \"1w\"", "warn_before_expiry"),
            ("metrics_textfile = \"w.prom\"", "metrics_textfile"),
            ("metrics_textfile = \"/var/lib/x/\"", "metrics_textfile"),
            ("metrics_textfile = \"\"", "metrics_textfile"),
        ] {
            let e = err(&format!("{MIN}{line}\n"));
            assert_eq!(
                (e.line, e.key.as_deref()),
                (Some(2), Some(key)),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn allowed_key_lists_match_the_serde_structs() {
        // Every listed key is accepted by serde (a wrong type is fine here:
        // it proves the field exists), so the "allowed" hint never lies.
        for (table, keys) in [
            ("", TOP_KEYS),
            ("schedule", SCHEDULE_KEYS),
            ("hardware", HARDWARE_KEYS),
        ] {
            for k in keys {
                let text = if table.is_empty() {
                    format!("{k} = 1\n")
                } else {
                    format!("[{table}]\n{k} = 1\n")
                };
                let e = err(&text);
                assert!(
                    !matches!(e.kind, ConfigErrorKind::UnknownKey { .. }),
                    "{k}: {e}"
                );
            }
        }
        // And a key not listed is unknown in each table.
        for text in [
            "bogus = 1\n",
            "[schedule]\nbogus = \"1s\"\n",
            "[hardware]\nbogus = \"/\"\n",
        ] {
            assert!(matches!(err(text).kind, ConfigErrorKind::UnknownKey { .. }));
        }
    }

    #[test]
    fn unknown_key_names_key_line_and_a_guess() {
        let e = err(
            "product_version = \"1\"\n\n[schedule]\nsplay = \"1m\"\nvalidate_intervall = \"1h\"\n",
        );
        assert_eq!(e.line, Some(5));
        assert_eq!(e.key.as_deref(), Some("schedule.validate_intervall"));
        let msg = e.to_string();
        assert!(
            msg.starts_with("/etc/wispanel/license.toml:5: schedule.validate_intervall: unknown key (did you mean \"validate_interval\"?)"),
            "{msg}"
        );
        assert!(msg.contains("retry_max"), "{msg}");

        let e = err("portal_url = \"https://x.example\"\nchanel = \"beta\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("chanel")));
        assert!(e.to_string().contains("did you mean \"channel\""), "{e}");

        // A whole unknown table, and an unrelated word without a guess.
        let e = err("[scheduel]\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("scheduel")));
        let e = err("product_version = \"1\"\nzzzzzz = 1\n");
        assert!(!e.to_string().contains("did you mean"), "{e}");
    }

    #[test]
    fn wrong_types_and_syntax() {
        let e = err("[schedule]\nsplay = 5\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("schedule.splay"))
        );
        let msg = e.to_string();
        assert!(
            msg.contains("invalid type") && msg.contains("\"15m\""),
            "{msg}"
        );

        let e = err("socket_mode = 0o660\n");
        assert!(
            e.to_string().contains("octal string such as \"0660\""),
            "{e}"
        );

        let e = err("schedule = 3\n");
        assert_eq!(e.key.as_deref(), Some("schedule"));

        let e = err("product_version = \"1\"\nchannel = \n");
        assert_eq!(e.line, Some(2));
        assert!(matches!(e.kind, ConfigErrorKind::Syntax(_)), "{e:?}");
        assert!(e.to_string().contains("not valid TOML"), "{e}");

        let e = err("channel = \"a\"\nchannel = \"b\"\n");
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("duplicate key"), "{e}");
    }

    #[test]
    fn socket_connections_per_uid_bounds() {
        for n in [1, 32, 512] {
            let c = load(&format!("{MIN}socket_connections_per_uid = {n}\n")).unwrap();
            assert_eq!(c.socket_connections_per_uid, n);
            // --check-config shows it, and its output loads again the same.
            let shown = c.to_effective_toml();
            assert!(
                shown.contains(&format!("socket_connections_per_uid = {n}\n")),
                "{shown}"
            );
        }
        for bad in ["0", "513", "-1", "99999999999"] {
            let e = err(&format!("{MIN}socket_connections_per_uid = {bad}\n"));
            assert_eq!(
                (e.line, e.key.as_deref()),
                (Some(2), Some("socket_connections_per_uid")),
                "{bad}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "/etc/wispanel/license.toml:2: socket_connections_per_uid: {bad} is out of range: write a whole number from 1 to 512"
                )
            );
        }
        let e = err(&format!("{MIN}socket_connections_per_uid = \"32\"\n"));
        assert!(e.to_string().contains("whole number without quotes"), "{e}");
    }

    #[test]
    fn durations_in_the_file() {
        let e = err("product_version = \"1\"\n[schedule]\nretry_max = \"1 hour\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("schedule.retry_max"))
        );
        let msg = e.to_string();
        assert!(msg.contains("\"1 hour\" is not a duration"), "{msg}");
        assert!(
            msg.contains("(s, m, h, d)") && msg.contains("\"1h30m\""),
            "{msg}"
        );

        let e = err("product_version = \"1\"\n[schedule]\nrequest_timeout = \"0s\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::DurationTooShort), "{e}");
        assert!(
            e.to_string()
                .contains("schedule.request_timeout: must be at least 1s")
        );

        let c = load("product_version = \"1\"\n[schedule]\nsplay = \"0s\"\n").unwrap();
        assert_eq!(c.schedule.core.splay, Duration::ZERO);

        let e = err(
            "product_version = \"1\"\n[schedule]\nretry_initial = \"2h\"\nretry_max = \"1h\"\n",
        );
        assert!(matches!(e.kind, ConfigErrorKind::RetryOrder { .. }), "{e}");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn versions() {
        let e = err("channel = \"stable\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::VersionMissing));
        assert!(e.to_string().contains("product_version: neither product_version nor version_file is set; one of them is required"), "{e}");
        let e = err("product_version = \"1\"\nversion_file = \"/nonexistent/VERSION\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::VersionTwice), "{e}");
        let e = err("product_version = \"\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::Empty), "{e}");
        let e = err("version_file = \"VERSION\"\n");
        assert!(matches!(e.kind, ConfigErrorKind::RelativePath(_)), "{e}");
    }

    #[test]
    fn paths_must_be_absolute() {
        for key in [
            "state_dir",
            "socket_path",
            "license_key_file",
            "ca_file",
            "version_file",
        ] {
            let version = if key == "version_file" { "" } else { MIN };
            let e = err(&format!("{version}{key} = \"relative/x\"\n"));
            assert_eq!(e.key.as_deref(), Some(key));
            assert!(matches!(e.kind, ConfigErrorKind::RelativePath(_)), "{e}");
        }
        let e = err(&format!("{MIN}[hardware]\nroot = \"sysroot\"\n"));
        assert_eq!(e.key.as_deref(), Some("hardware.root"));
    }
}
