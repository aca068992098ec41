//! The configuration file: every key round-trips through the effective TOML,
//! every kind of mistake has its own message naming file, line and key, the
//! daemon's `--check-config` exits 78 on one, and the shipped example parses.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use wispanel_license::config::{
    Config, ConfigError, ConfigErrorKind, KeySource, VersionSource, known_keys,
};

const KEY: &str = "WISP-AB12-CD34-SA6T";
/// Parts of KEY that the masked form does not show.
const HIDDEN: [&str; 2] = ["AB12", "CD34"];

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn config(&self, text: &str) -> PathBuf {
        self.file("license.toml", text, 0o644)
    }

    fn load(&self, text: &str) -> Result<Config, ConfigError> {
        Config::load(&self.config(text))
    }

    fn err(&self, text: &str) -> ConfigError {
        match self.load(text) {
            Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
            Err(e) => e,
        }
    }
}

fn assert_no_key(text: &str) {
    for part in HIDDEN {
        assert!(!text.contains(part), "the key leaked: {text}");
    }
}

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// A configuration that sets every key (to a value other than its default)
/// except `license_key`/`product_version`, which exclude their partners.
fn full(d: &Dir) -> String {
    let key_file = d.file("license.key", &format!("{KEY}\n"), 0o600);
    let version = d.file("VERSION", "1.5.0\n", 0o644);
    let ca = d.file("ca.pem", PEM, 0o644);
    let id_file = d.file("hardware-id", &"a".repeat(64), 0o644);
    format!(
        r#"license_key_file = "{}"
portal_url = "https://portal.example.com/"
ca_file = "{}"
version_file = "{}"
channel = "beta"
state_dir = "/srv/state"
socket_path = "/srv/run/status.sock"
socket_mode = "0600"
socket_group = "root"
proxy = "socks5://127.0.0.1:1080"

[schedule]
validate_interval = "1h30m"
update_check_interval = "2d"
splay = "0s"
retry_initial = "5s"
retry_max = "10m"
offline_grace = "3d12h"
request_timeout = "45s"

[hardware]
root = "/srv/root"
id_file = "{}"
"#,
        key_file.display(),
        ca.display(),
        version.display(),
        id_file.display()
    )
}

#[test]
fn every_key_is_read() {
    let d = Dir::new();
    let c = d.load(&full(&d)).unwrap();
    assert_eq!(c.license_key.as_ref().map(|k| k.expose()), Some(KEY));
    assert_eq!(c.key_source, Some(KeySource::File(d.path("license.key"))));
    assert_eq!(c.portal_url, "https://portal.example.com");
    assert_eq!(c.ca_file, Some(d.path("ca.pem")));
    assert_eq!(c.version, VersionSource::File(d.path("VERSION")));
    assert_eq!(c.channel, "beta");
    assert_eq!(c.state_dir, PathBuf::from("/srv/state"));
    assert_eq!(c.socket_path, PathBuf::from("/srv/run/status.sock"));
    assert_eq!(c.socket_mode, 0o600);
    assert_eq!(c.socket_group.as_deref(), Some("root"));
    assert_eq!(c.proxy.as_deref(), Some("socks5://127.0.0.1:1080"));
    let s = &c.schedule;
    assert_eq!(s.core.validate_interval, Duration::from_secs(5400));
    assert_eq!(s.core.update_check_interval, Duration::from_secs(2 * 86400));
    assert_eq!(s.core.splay, Duration::ZERO);
    assert_eq!(s.core.retry_initial, Duration::from_secs(5));
    assert_eq!(s.core.retry_max, Duration::from_secs(600));
    assert_eq!(
        s.core.offline_grace,
        Duration::from_secs(3 * 86400 + 12 * 3600)
    );
    assert_eq!(s.request_timeout, Duration::from_secs(45));
    assert_eq!(c.hardware.root, PathBuf::from("/srv/root"));
    assert_eq!(c.hardware.id_file, Some(d.path("hardware-id")));
    assert_eq!(c.read_product_version().unwrap(), "1.5.0");
}

fn round_trip(d: &Dir, text: &str) -> (Config, String) {
    let first = d.load(text).unwrap();
    let effective = first.to_effective_toml();
    let again = Config::load(&d.file("effective.toml", &effective, 0o644))
        .unwrap_or_else(|e| panic!("{e}\n{effective}"));
    assert_eq!(
        Config {
            path: first.path.clone(),
            ..again
        },
        first,
        "{effective}"
    );
    (first, effective)
}

#[test]
fn every_key_round_trips_through_the_effective_toml() {
    let d = Dir::new();
    let (_, effective) = round_trip(&d, &full(&d));
    assert!(
        effective.contains("validate_interval = \"1h30m\""),
        "{effective}"
    );
    assert!(
        effective.contains("offline_grace = \"3d12h\""),
        "{effective}"
    );
    assert!(effective.contains("splay = \"0s\""), "{effective}");
    assert!(effective.contains("socket_mode = \"0600\""), "{effective}");
    assert!(effective.contains("WISP-****SA6T"), "{effective}");
    assert_no_key(&effective);

    // Every SPEC key but the two that exclude a set partner shows up in the
    // effective TOML (set, or commented as not set).
    for key in known_keys()
        .into_iter()
        .filter(|k| k != "license_key" && k != "product_version")
    {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            effective.contains(&format!("{leaf} =")) || effective.contains(&format!("# {leaf}:")),
            "{key} missing from\n{effective}"
        );
    }

    // The other half: product_version, and the defaults.
    let (c, _) = round_trip(&d, "product_version = \"1.4.2\"\n");
    assert_eq!(c.version, VersionSource::Fixed("1.4.2".into()));
    // http to loopback survives too.
    round_trip(
        &d,
        "product_version = \"1\"\nportal_url = \"http://127.0.0.1:8080/\"\n",
    );
}

#[test]
fn credential_key_is_used_and_round_trips() {
    let d = Dir::new();
    let creds = Dir::new();
    creds.file("license.key", &format!("{KEY}\n"), 0o400);
    let text = "product_version = \"1\"\n";
    let path = d.config(text);
    let c = Config::from_toml_str_with(text, &path, Some(creds.dir.path())).unwrap();
    assert_eq!(
        c.key_source,
        Some(KeySource::Credential(creds.path("license.key")))
    );
    assert_eq!(c.license_key.as_ref().map(|k| k.expose()), Some(KEY));
    let eff = c.to_effective_toml();
    assert_no_key(&eff);
    let again = Config::from_toml_str_with(&eff, &path, Some(creds.dir.path())).unwrap();
    assert_eq!(again, c);

    // A key in the file wins over the credential; no credential, no key.
    let inline = format!("license_key = \"{KEY}\"\n{text}");
    let c = Config::from_toml_str_with(&inline, &path, Some(creds.dir.path())).unwrap();
    assert_eq!(c.key_source, Some(KeySource::Inline));
    let empty = Dir::new();
    let c = Config::from_toml_str_with(text, &path, Some(empty.dir.path())).unwrap();
    assert_eq!(c.key_source, None);

    // A malformed credential is an error that does not echo it.
    creds.file("license.key", "WISP-SECRET$KEY", 0o400);
    let e = Config::from_toml_str_with(text, &path, Some(creds.dir.path())).unwrap_err();
    assert!(e.to_string().contains("license.key credential"), "{e}");
    assert!(!e.to_string().contains("SECRET"), "{e}");
}

#[test]
fn version_file_is_read_at_each_use() {
    let d = Dir::new();
    let v = d.file("VERSION", "1.4.2\n", 0o644);
    let c = d
        .load(&format!("version_file = \"{}\"\n", v.display()))
        .unwrap();
    assert_eq!(c.read_product_version().unwrap(), "1.4.2");
    fs::write(&v, "  1.5.0 \n").unwrap();
    assert_eq!(c.read_product_version().unwrap(), "1.5.0");
    fs::write(&v, " \n").unwrap();
    let e = c.read_product_version().unwrap_err();
    assert!(
        matches!(e.kind, ConfigErrorKind::VersionFileEmpty { .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("version_file: the version file"),
        "{e}"
    );
    fs::remove_file(&v).unwrap();
    assert!(c.read_product_version().is_err());
}

/// One example of a kind of mistake.
struct Mistake {
    name: &'static str,
    text: String,
    /// The key the message must name.
    key: &'static str,
    line: Option<usize>,
    /// Words that must be in the message.
    words: Vec<String>,
}

/// One example of each kind of mistake.
fn mistakes(d: &Dir) -> Vec<Mistake> {
    let open_key = d.file("open.key", KEY, 0o644);
    let good_key = d.file("good.key", KEY, 0o600);
    let dir_key = d.path("keydir");
    fs::create_dir_all(&dir_key).unwrap();
    let missing = d.path("missing.key");
    let m = |name, text: String, key, line, words: &[&str]| Mistake {
        name,
        text,
        key,
        line,
        words: words.iter().map(|w| w.to_string()).collect(),
    };
    let chmod = format!("chmod 600 {}", open_key.display());
    let cannot = format!("cannot read {}", missing.display());
    let dir_name = dir_key.display().to_string();
    vec![
        m(
            "unknown key",
            "product_version = \"1\"\n\n[schedule]\nsplay = \"1m\"\nretry_maximum = \"1h\"\n"
                .into(),
            "schedule.retry_maximum",
            Some(5),
            &[
                "unknown key (did you mean \"retry_max\"?)",
                "request_timeout",
            ],
        ),
        m(
            "bad duration",
            "product_version = \"1\"\n[schedule]\nvalidate_interval = \"6 hours\"\n".into(),
            "schedule.validate_interval",
            Some(3),
            &["\"6 hours\" is not a duration", "(s, m, h, d)"],
        ),
        m(
            "zero duration",
            "product_version = \"1\"\n[schedule]\nretry_initial = \"0s\"\n".into(),
            "schedule.retry_initial",
            Some(3),
            &["at least 1s"],
        ),
        m(
            "duration of the wrong type",
            "product_version = \"1\"\n[schedule]\nsplay = 900\n".into(),
            "schedule.splay",
            Some(3),
            &["expected a string", "\"15m\""],
        ),
        m(
            "http to a non-loopback host",
            "product_version = \"1\"\nportal_url = \"http://wispanel.com\"\n".into(),
            "portal_url",
            Some(2),
            &["https is required", "127.0.0.0/8"],
        ),
        m(
            "key and key file",
            format!(
                "license_key = \"{KEY}\"\nlicense_key_file = \"{}\"\nproduct_version = \"1\"\n",
                good_key.display()
            ),
            "license_key_file",
            Some(2),
            &["license_key and license_key_file are both set"],
        ),
        m(
            "missing version",
            "channel = \"stable\"\n".into(),
            "product_version",
            None,
            &["one of them is required"],
        ),
        m(
            "both versions",
            "product_version = \"1\"\nversion_file = \"/etc/VERSION\"\n".into(),
            "version_file",
            Some(2),
            &["product_version and version_file are both set"],
        ),
        m(
            "world-readable key file",
            format!(
                "license_key_file = \"{}\"\nproduct_version = \"1\"\n",
                open_key.display()
            ),
            "license_key_file",
            Some(1),
            &["readable by its group and by others", "mode 0644", &chmod],
        ),
        m(
            "missing key file",
            format!(
                "product_version = \"1\"\nlicense_key_file = \"{}\"\n",
                missing.display()
            ),
            "license_key_file",
            Some(2),
            &[&cannot],
        ),
        m(
            "key file is a directory",
            format!(
                "product_version = \"1\"\nlicense_key_file = \"{}\"\n",
                dir_key.display()
            ),
            "license_key_file",
            Some(2),
            &[&dir_name],
        ),
        m(
            "bad socket_mode",
            "product_version = \"1\"\nsocket_mode = \"0660 \"\n".into(),
            "socket_mode",
            Some(2),
            &["not an octal mode"],
        ),
        m(
            "socket_mode too wide",
            "product_version = \"1\"\nsocket_mode = \"4755\"\n".into(),
            "socket_mode",
            Some(2),
            &["more than 0777"],
        ),
        m(
            "bad proxy",
            "product_version = \"1\"\nproxy = \"proxy.example:3128\"\n".into(),
            "proxy",
            Some(2),
            &["http://, https:// or socks5://"],
        ),
        m(
            "bad key shape",
            "product_version = \"1\"\nlicense_key = \"KEY-AB12-CD34\"\n".into(),
            "license_key",
            Some(2),
            &["must start with \"WISP-\""],
        ),
    ]
}

#[test]
fn each_mistake_has_its_own_clear_message() {
    let d = Dir::new();
    let mut seen: Vec<String> = Vec::new();
    for Mistake {
        name,
        text,
        key,
        line,
        words,
    } in mistakes(&d)
    {
        let e = d.err(&text);
        let msg = e.to_string();
        assert_eq!(e.key.as_deref(), Some(key), "{name}: {msg}");
        assert_eq!(e.line, line, "{name}: {msg}");
        let file = d.path("license.toml").display().to_string();
        let head = match line {
            Some(l) => format!("{file}:{l}: {key}: "),
            None => format!("{file}: {key}: "),
        };
        assert!(
            msg.starts_with(&head),
            "{name}: {msg:?} should start with {head:?}"
        );
        for w in words {
            assert!(msg.contains(&w), "{name}: {w:?} not in {msg:?}");
        }
        assert_no_key(&msg);
        // The problem part differs from every other kind's.
        let problem = msg[head.len()..].to_string();
        assert!(
            !seen.contains(&problem),
            "{name}: same text as another: {problem}"
        );
        seen.push(problem);
    }
}

#[test]
fn unreadable_config_file_is_named() {
    let d = Dir::new();
    let e = Config::load(&d.path("nope.toml")).unwrap_err();
    assert!(matches!(e.kind, ConfigErrorKind::Missing));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the configuration file does not exist",
            d.path("nope.toml").display()
        )
    );
    let e = Config::load(d.dir.path()).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the configuration file",
            d.dir.path().display()
        )),
        "{e}"
    );
}

#[test]
fn the_key_never_prints_in_full() {
    let d = Dir::new();
    let c = d
        .load(&format!(
            "license_key = \"{KEY}\"\nproduct_version = \"1\"\n"
        ))
        .unwrap();
    assert_no_key(&format!("{c:?}"));
    assert_no_key(&format!("{c:#?}"));
    assert_no_key(&c.to_effective_toml());
    assert!(
        c.to_effective_toml()
            .contains("license_key = \"WISP-****SA6T\"")
    );
    let k = c.license_key.as_ref().unwrap();
    assert_eq!(k.to_string(), "WISP-****SA6T");
    assert_no_key(&format!("{k:?}"));
    // Errors in a file that holds the key do not show it either.
    for text in [
        format!("license_key = \"{KEY}\"\nproduct_version = \"1\"\nbogus = 1\n"),
        format!("license_key = \"{KEY}\"\n"),
        format!("license_key = \"{KEY}\"\nlicense_key = \"{KEY}\"\n"),
        format!("license_key = \"{KEY}\"\nproduct_version = \"1\"\n[schedule]\nsplay = 5\n"),
        format!("license_key = \"{KEY}x!\"\nproduct_version = \"1\"\n"),
    ] {
        let e = d.err(&text);
        assert_no_key(&e.to_string());
        assert_no_key(&format!("{e:?}"));
    }
}

fn example() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/license.toml"))
        .unwrap()
}

#[test]
fn the_example_config_parses_and_documents_every_key() {
    let d = Dir::new();
    let text = example();
    let c =
        Config::from_toml_str_with(&text, &d.config(&text), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.version, VersionSource::Fixed("1.4.2".into()));
    assert_eq!(c.license_key, None);
    for key in known_keys() {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches('#').starts_with(&format!("{leaf} = "))),
            "{key} is not documented in packaging/license.toml"
        );
    }

    // The commented values are the real defaults: uncommenting them (all but
    // the ones that need files or exclude a set key) changes only the optional
    // ones that have no default.
    let skip = ["license_key", "license_key_file", "ca_file", "version_file"];
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.contains(" = ")
                    && !skip.iter().any(|k| rest.starts_with(&format!("{k} "))) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
        // The group is looked up at load; the package creates `wispanel`,
        // a bare test machine has only `root`.
        .replace("socket_group = \"wispanel\"", "socket_group = \"root\"");
    let u = Config::from_toml_str_with(&uncommented, &d.config(&uncommented), None)
        .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(u.socket_group.as_deref(), Some("root"));
    assert_eq!(u.proxy.as_deref(), Some("http://proxy.example:3128"));
    assert_eq!(
        u.metrics_textfile,
        Some(PathBuf::from(
            "/var/lib/prometheus/node-exporter/wispanel_license.prom"
        ))
    );
    assert_eq!(
        u.hardware.id_file,
        Some(PathBuf::from("/etc/wispanel/hardware-id"))
    );
    assert_eq!(
        Config {
            socket_group: None,
            proxy: None,
            metrics_textfile: None,
            hardware: c.hardware.clone(),
            ..u
        },
        c
    );
}

// --- --check-config --------------------------------------------------------

/// `wispanel-licensed --check-config` in-process, as the binary runs it:
/// (exit code, stdout, stderr).
fn check_config(path: &Path) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = wispanel_license::cli::check_config(path, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn check_config_prints_the_effective_config_masked() {
    let d = Dir::new();
    let path = d.config(&format!(
        "license_key = \"{KEY}\"\nproduct_version = \"1\"\n"
    ));
    let (code, stdout, stderr) = check_config(&path);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("license_key = \"WISP-****SA6T\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("[schedule]\nvalidate_interval = \"6h\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nsocket_connections_per_uid = 32\n"),
        "{stdout}"
    );
    // Which socket settings apply: the .socket unit's, or socket_mode's.
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("# socket activation: ") || last.starts_with("# no socket activation"),
        "{stdout}"
    );
    assert_no_key(&stdout);
    assert_no_key(&stderr);
}

#[test]
fn check_config_exits_78_naming_file_and_key() {
    let d = Dir::new();
    for Mistake {
        name, text, key, ..
    } in mistakes(&d)
    {
        let path = d.config(&text);
        let (code, stdout, stderr) = check_config(&path);
        assert_eq!(code, 78, "{name}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(key), "{name}: {stderr}");
        assert_no_key(&stderr);
    }
    // A missing file is a configuration error too.
    let (code, ..) = check_config(&d.path("nope.toml"));
    assert_eq!(code, 78);
}

#[test]
fn an_unknown_socket_group_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("license.toml");
    std::fs::write(
        &path,
        "product_version = \"1.0.0\"\nsocket_group = \"no-such-group-wispanel-test\"\n",
    )
    .unwrap();
    let e = wispanel_license::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("license.toml"), "{e}");
    assert!(e.contains("socket_group"), "{e}");
    assert!(e.contains("no group named"), "{e}");
    let (code, ..) = check_config(&path);
    assert_eq!(code, 78);
    // A gid is taken as it is.
    std::fs::write(&path, "product_version = \"1.0.0\"\nsocket_group = \"0\"\n").unwrap();
    assert!(wispanel_license::config::Config::load(&path).is_ok());
}

// --- through the daemon binary ---------------------------------------------
//
// What only the process shows: its exit status, its streams, clap's usage
// error and the environment (`WISPANEL_LICENSE_CONFIG`,
// `CREDENTIALS_DIRECTORY`: process-global, never set in this parallel test
// binary). Four starts of the binary in all.

fn licensed() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wispanel-licensed"));
    cmd.env_remove("WISPANEL_LICENSE_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

/// Exit 0 and the effective configuration, masked, on stdout; `--config`
/// wins over `WISPANEL_LICENSE_CONFIG`.
#[test]
fn the_binary_prints_the_effective_config_and_config_wins_over_the_variable() {
    let d = Dir::new();
    let path = d.config(&format!(
        "license_key = \"{KEY}\"\nproduct_version = \"1\"\n"
    ));
    let other = d.file(
        "other.toml",
        "product_version = \"9.9\"\nchannel = \"edge\"\n",
        0o644,
    );
    let out = licensed()
        .args(["--check-config", "--config"])
        .arg(&path)
        .env("WISPANEL_LICENSE_CONFIG", &other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("license_key = \"WISP-****SA6T\""),
        "{stdout}"
    );
    assert!(stdout.contains("channel = \"stable\""), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("# socket activation: ") || last.starts_with("# no socket activation"),
        "{stdout}"
    );
    assert_no_key(&stdout);
    assert_no_key(&String::from_utf8_lossy(&out.stderr));
}

/// Exit 78, nothing on stdout, the error on stderr.
#[test]
fn the_binary_exits_78_on_a_mistake() {
    let d = Dir::new();
    let Mistake {
        name, text, key, ..
    } = mistakes(&d).swap_remove(0);
    let path = d.config(&format!("license_key = \"{KEY}\"\n{text}"));
    let out = licensed()
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{name}: {out:?}");
    assert!(out.stdout.is_empty(), "{name}: {out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&path.display().to_string()),
        "{name}: {stderr}"
    );
    assert!(stderr.contains(key), "{name}: {stderr}");
    assert_no_key(&stderr);
}

#[test]
fn check_config_honours_the_environment() {
    let d = Dir::new();
    let path = d.config("product_version = \"9.9\"\nchannel = \"edge\"\n");
    let creds = Dir::new();
    creds.file("license.key", KEY, 0o400);
    let out = licensed()
        .arg("--check-config")
        .env("WISPANEL_LICENSE_CONFIG", &path)
        .env("CREDENTIALS_DIRECTORY", creds.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("channel = \"edge\""), "{stdout}");
    assert!(
        stdout.contains("WISP-****SA6T from the systemd credential"),
        "{stdout}"
    );
    assert_no_key(&stdout);
}

#[test]
fn daemon_usage_error_exits_2() {
    let out = licensed().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
