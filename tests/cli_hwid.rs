//! `wispanel-license hardware-id` through the real binary, on fake roots.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

const MID: &str = "0123456789abcdef0123456789abcdef";
const UUID2: &str = "6f0e1d2c-3b4a-5968-7a8b-9c0d1e2f3a4b";
/// sha256("wispanel-hwid:v1\nmachine-id=<MID>\n")
const ID_MID: &str = "b226467ed6edd501d99ca3c064d0a12f51e15775aef23b50a010395cbddd9cb6";
/// sha256("wispanel-hwid:v1\nmachine-id=<MID>\nproduct-uuid=<UUID2>\n")
const ID_BOTH_UUID2: &str = "02b93f57fb6dbdf366c7aa335f44ecf4f2b16f164a53aaf1b5a01743b8ff3531";

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A fake root with a machine-id, and a configuration pointing at it.
    fn new(machine_id: Option<&str>) -> Host {
        let h = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(h.root().join("etc")).unwrap();
        if let Some(mid) = machine_id {
            fs::write(h.root().join("etc/machine-id"), format!("{mid}\n")).unwrap();
        }
        h.write_config("");
        h
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("license.toml")
    }

    fn write_config(&self, extra_hardware: &str) {
        fs::write(
            self.config(),
            format!(
                "product_version = \"1\"\n[hardware]\nroot = \"{}\"\n{extra_hardware}",
                self.root().display()
            ),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        cli()
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .unwrap()
    }
}

fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wispanel-license"));
    cmd.env_remove("WISPANEL_LICENSE_CONFIG")
        .env_remove("WISPANEL_LICENSE_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn prints_the_id_alone_on_one_line() {
    let h = Host::new(Some(MID));
    let out = h.run(&["hardware-id"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), format!("{ID_MID}\n"));
    assert_eq!(stderr(&out), "");
}

#[test]
fn explain_lists_sources_and_files_after_the_id() {
    let h = Host::new(Some(MID));
    let out = h.run(&["hardware-id", "--explain"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(ID_MID));
    let root = h.root().display().to_string();
    assert!(text.contains("machine-id"), "{text}");
    assert!(
        text.contains(&format!("{root}/etc/machine-id: used")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{root}/sys/class/dmi/id/product_uuid: missing")),
        "{text}"
    );
    assert!(!text.contains(MID), "raw machine-id printed: {text}");
    // The short digest: `printf %s MID | sha256sum | cut -c1-12`.
    assert!(text.contains("3eb1bd439947"), "{text}");
}

#[test]
fn json_output() {
    let h = Host::new(Some(MID));
    let out = h.run(&["--json", "hardware-id"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["hardware_id"], ID_MID);
    assert_eq!(v["from_id_file"], false);
    assert_eq!(v["sources"][0]["name"], "machine-id");
    assert_eq!(v["sources"][0]["digest"], "3eb1bd439947");
    assert_eq!(v["tried"][0]["outcome"], "used");
    assert!(!stdout(&out).contains(MID));
    // --json is global: it may come after the subcommand too.
    let after = h.run(&["hardware-id", "--json"]);
    assert_eq!(stdout(&after), stdout(&out));
}

#[test]
fn credentials_directory_product_uuid_is_used() {
    let h = Host::new(Some(MID));
    let creds = tempfile::tempdir().unwrap();
    fs::write(creds.path().join("product_uuid"), UUID2).unwrap();
    let out = cli()
        .arg("--config")
        .arg(h.config())
        .arg("hardware-id")
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("{ID_BOTH_UUID2}\n"), "{out:?}");
}

#[test]
fn no_source_exits_1_naming_every_file() {
    let h = Host::new(None);
    let out = h.run(&["hardware-id"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    let root = h.root().display().to_string();
    for rel in [
        "etc/machine-id",
        "var/lib/dbus/machine-id",
        "sys/class/dmi/id/product_uuid",
        "sys/class/net",
    ] {
        assert!(
            err.contains(&format!("{root}/{rel} (missing)")),
            "{rel}: {err}"
        );
    }
}

#[test]
fn id_file_is_used_as_is_and_bad_content_fails() {
    let h = Host::new(Some(MID));
    let id_file = h.dir.path().join("hardware-id");
    let fixed = "c".repeat(64);
    fs::write(&id_file, format!("{fixed}\n")).unwrap();
    h.write_config(&format!("id_file = \"{}\"\n", id_file.display()));
    let out = h.run(&["hardware-id"]);
    assert_eq!(stdout(&out), format!("{fixed}\n"), "{out:?}");

    fs::write(&id_file, "not-an-id\n").unwrap();
    let out = h.run(&["hardware-id"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains(&id_file.display().to_string()), "{err}");
    assert!(!err.contains("not-an-id"), "{err}");
}

#[test]
fn config_errors_exit_1_and_usage_errors_exit_2() {
    let h = Host::new(Some(MID));
    fs::write(h.config(), "product_version = \"1\"\nbogus = 1\n").unwrap();
    let out = h.run(&["hardware-id"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:2: bogus: unknown key", h.config().display())),
        "{err}"
    );

    // An explicit --config that does not exist is an error, not defaults.
    let out = cli()
        .args(["--config", "/nonexistent/license.toml", "hardware-id"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("/nonexistent/license.toml: the configuration file does not exist")
    );

    for args in [&["hardware-id", "--bogus"][..], &["no-such-command"], &[]] {
        let out = cli().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    let out = cli().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("hardware-id"));
}

#[test]
fn the_config_variable_is_honoured() {
    let h = Host::new(Some(MID));
    let out = cli()
        .arg("hardware-id")
        .env("WISPANEL_LICENSE_CONFIG", h.config())
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("{ID_MID}\n"), "{out:?}");
}
