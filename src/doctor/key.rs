//! Where systemd takes the licence key from, and why a start failed with
//! 243/CREDENTIALS (issue 21).
//!
//! The daemon sees only `$CREDENTIALS_DIRECTORY/license.key`: whether systemd
//! decrypted it first is in the unit's configuration, not in the file. So
//! doctor asks systemd (`systemctl show -p LoadCredential -p
//! LoadCredentialEncrypted ...`): for one credential name the last
//! `LoadCredential*=` line of the unit and its drop-ins wins, and systemd lists
//! the winner under the property of its kind, so the answer is exact. The
//! `systemctl` of systemd 252 (Debian 12) prints these `a(ss)` properties as
//! `[unprintable]`; then the same two properties come from the bus
//! (`busctl --json=short get-property`). No line when systemd does not run
//! here.

use super::Check;
use crate::config::KEY_CREDENTIAL;
use std::time::Duration;

use super::unit::UNIT;

/// The exit status systemd gives a start that could not set up credentials.
pub const EXIT_CREDENTIALS: i32 = 243;

/// What `systemctl show` said about the unit's credentials and last exit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUnitFacts {
    /// `LoadCredential=` entries: (name, source).
    pub plain: Vec<(String, String)>,
    /// `LoadCredentialEncrypted=` entries: (name, source).
    pub encrypted: Vec<(String, String)>,
    pub exec_main_status: Option<i32>,
    pub result: String,
    pub active_state: String,
}

/// Parses `systemctl show -p LoadCredential -p LoadCredentialEncrypted -p
/// ExecMainStatus -p Result -p ActiveState` (one `Name=value` a line; one
/// line per credential, `name:source`).
pub fn parse_show(text: &str) -> KeyUnitFacts {
    let mut f = KeyUnitFacts::default();
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let cred = || {
            value
                .split_once(':')
                .map(|(id, src)| (id.to_string(), src.to_string()))
        };
        match name {
            "LoadCredential" => f.plain.extend(cred()),
            "LoadCredentialEncrypted" => f.encrypted.extend(cred()),
            "ExecMainStatus" => f.exec_main_status = value.trim().parse().ok(),
            "Result" => f.result = value.trim().to_string(),
            "ActiveState" => f.active_state = value.trim().to_string(),
            _ => {}
        }
    }
    f
}

/// Asks systemd, when it runs here; `None` otherwise or when it gave no answer.
pub async fn gather(limit: Duration) -> Option<KeyUnitFacts> {
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let show = run(
        "systemctl",
        &[
            "show",
            "--no-pager",
            "-p",
            "LoadCredential",
            "-p",
            "LoadCredentialEncrypted",
            "-p",
            "ExecMainStatus",
            "-p",
            "Result",
            "-p",
            "ActiveState",
            UNIT,
        ],
        limit,
    )
    .await?;
    let mut facts = parse_show(&show);
    if unprintable(&show) {
        let path = bus_path(&format!("{UNIT}.service"));
        let props = [
            "--json=short",
            "get-property",
            "org.freedesktop.systemd1",
            &path,
            "org.freedesktop.systemd1.Service",
            "LoadCredential",
            "LoadCredentialEncrypted",
        ];
        let (plain, encrypted) = parse_busctl(&run("busctl", &props, limit).await?)?;
        facts.plain = plain;
        facts.encrypted = encrypted;
    }
    Some(facts)
}

/// Runs a command to its end within `limit`: its output when it succeeded.
async fn run(program: &str, args: &[&str], limit: Duration) -> Option<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into()),
        _ => None,
    }
}

/// Whether `systemctl show` could not print the credential lists (systemd
/// 252 prints `LoadCredential=[unprintable]`).
fn unprintable(show: &str) -> bool {
    show.lines().any(|l| {
        l.split_once('=')
            .is_some_and(|(k, v)| k.starts_with("LoadCredential") && v.trim() == "[unprintable]")
    })
}

/// The unit's object path on systemd's bus: every byte that is not a letter
/// or digit becomes `_` and two hex digits (`wispanel-licensed.service` is
/// `.../unit/wispanel_2dlicensed_2eservice`).
fn bus_path(unit: &str) -> String {
    let mut p = String::from("/org/freedesktop/systemd1/unit/");
    for b in unit.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(char::from(b));
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

/// A unit's credentials of one kind: (name, source).
type Credentials = Vec<(String, String)>;

/// One property as `busctl --json=short get-property` prints it.
#[derive(serde::Deserialize)]
struct BusCredentials {
    data: Credentials,
}

/// Parses the two lines `busctl --json=short get-property ... LoadCredential
/// LoadCredentialEncrypted` prints (`{"type":"a(ss)","data":[["id","src"]]}`):
/// (plain, encrypted); `None` when they are not that.
fn parse_busctl(text: &str) -> Option<(Credentials, Credentials)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut next = || {
        lines
            .next()
            .and_then(|l| serde_json::from_str::<BusCredentials>(l).ok())
            .map(|p| p.data)
    };
    let plain = next()?;
    let encrypted = next()?;
    Some((plain, encrypted))
}

fn source_of(list: &[(String, String)]) -> Option<&str> {
    list.iter()
        .rev()
        .find(|(id, _)| id == KEY_CREDENTIAL)
        .map(|(_, src)| src.as_str())
}

/// Where systemd looks for a relative credential source.
fn searched(src: &str, encrypted: bool) -> String {
    if src.starts_with('/') {
        return src.to_string();
    }
    if encrypted {
        format!(
            "/etc/credstore.encrypted/{src} (or /run/, /usr/lib/credstore.encrypted/, and the plaintext /etc/credstore/{src})"
        )
    } else {
        format!("/etc/credstore/{src} (or /run/, /usr/lib/credstore/)")
    }
}

pub fn checks(f: &KeyUnitFacts) -> Vec<Check> {
    let mut out = Vec::new();
    let encrypted = source_of(&f.encrypted);
    let plain = source_of(&f.plain);
    out.push(match (encrypted, plain) {
        (Some(src), _) => Check::ok(
            "licence key credential",
            format!(
                "{UNIT} gets {KEY_CREDENTIAL} as an encrypted credential from {} (LoadCredentialEncrypted=), when that file exists",
                searched(src, true)
            ),
        ),
        (None, Some(src)) => Check::ok(
            "licence key credential",
            format!(
                "{UNIT} gets {KEY_CREDENTIAL} as a plaintext credential from {} (LoadCredential=), when that file exists; it can be kept encrypted: README, \"The key encrypted at rest\"",
                searched(src, false)
            ),
        ),
        (None, None) => Check::ok(
            "licence key credential",
            format!("{UNIT} loads no {KEY_CREDENTIAL} credential"),
        ),
    });
    if f.exec_main_status == Some(EXIT_CREDENTIALS) && f.active_state != "active" {
        let why = match (encrypted, plain) {
            (Some(src), _) => format!(
                "the file found for LoadCredentialEncrypted={KEY_CREDENTIAL}:{src} cannot be decrypted: it is plaintext (a relative name also finds /etc/credstore/{src}), was encrypted under another name than {KEY_CREDENTIAL}, on another host, or for a TPM2 this host lacks"
            ),
            (None, Some(src)) if src.starts_with('/') => format!(
                "the file named by LoadCredential={KEY_CREDENTIAL}:{src} is missing or unreadable"
            ),
            _ => "a credential of the unit (see the journal) could not be loaded".to_string(),
        };
        out.push(Check::fail(
            "last start",
            format!(
                "{UNIT} failed to start with status {EXIT_CREDENTIALS}/CREDENTIALS (Result={}): {why}",
                f.result
            ),
            format!(
                "encrypt the key with `systemd-creds encrypt --with-key=host --name={KEY_CREDENTIAL} KEYFILE /etc/credstore.encrypted/wispanel-license.key`, remove any plaintext copy, then `systemctl restart {UNIT}`; systemd's own reason: `journalctl -b -u {UNIT}`"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    const UNIT_DEFAULT: &str = "LoadCredential=product_uuid:/sys/class/dmi/id/product_uuid\nLoadCredential=license.key:wispanel-license.key\nExecMainStatus=0\nResult=success\nActiveState=active\n";

    #[test]
    fn plaintext_credential_by_default() {
        let f = parse_show(UNIT_DEFAULT);
        assert_eq!(f.plain.len(), 2);
        assert!(f.encrypted.is_empty());
        let cs = checks(&f);
        assert_eq!(cs.len(), 1, "{cs:?}");
        assert_eq!(cs[0].status, Status::Ok);
        assert!(
            cs[0]
                .found
                .contains("plaintext credential from /etc/credstore/wispanel-license.key"),
            "{cs:?}"
        );
    }

    #[test]
    fn encrypted_credential_with_the_drop_in() {
        let f = parse_show(
            "LoadCredential=product_uuid:/sys/class/dmi/id/product_uuid\nLoadCredentialEncrypted=license.key:wispanel-license.key\nExecMainStatus=0\nResult=success\nActiveState=active\n",
        );
        let cs = checks(&f);
        assert_eq!(cs.len(), 1, "{cs:?}");
        assert!(
            cs[0].found.contains(
                "encrypted credential from /etc/credstore.encrypted/wispanel-license.key"
            ),
            "{cs:?}"
        );
    }

    #[test]
    fn a_failed_start_with_243_is_explained() {
        let f = parse_show(
            "LoadCredentialEncrypted=license.key:/etc/credstore.encrypted/wispanel-license.key\nExecMainStatus=243\nResult=exit-code\nActiveState=failed\n",
        );
        let cs = checks(&f);
        assert_eq!(cs.len(), 2, "{cs:?}");
        assert_eq!(cs[1].status, Status::Fail);
        assert!(cs[1].found.contains("243/CREDENTIALS"), "{cs:?}");
        assert!(cs[1].found.contains("plaintext"), "{cs:?}");
        assert!(
            cs[1]
                .hint
                .as_deref()
                .unwrap_or("")
                .contains("systemd-creds encrypt")
        );
        // Once it runs again, the old status is no failure.
        let f = KeyUnitFacts {
            active_state: "active".into(),
            ..f
        };
        assert_eq!(checks(&f).len(), 1);
    }

    #[test]
    fn systemd_252_credentials_come_from_the_bus() {
        let show = "LoadCredential=[unprintable]\nLoadCredentialEncrypted=[unprintable]\nExecMainStatus=243\nResult=exit-code\nActiveState=failed\n";
        assert!(unprintable(show));
        assert!(!unprintable(UNIT_DEFAULT));
        let f = parse_show(show);
        assert!(f.plain.is_empty() && f.encrypted.is_empty());
        assert_eq!(f.exec_main_status, Some(243));
        let (plain, encrypted) = parse_busctl(
            "{\"type\":\"a(ss)\",\"data\":[[\"product_uuid\",\"/sys/class/dmi/id/product_uuid\"]]}\n{\"type\":\"a(ss)\",\"data\":[[\"license.key\",\"wispanel-license.key\"]]}\n",
        )
        .expect("two a(ss) lines");
        assert_eq!(plain.len(), 1);
        assert_eq!(
            encrypted,
            vec![(
                "license.key".to_string(),
                "wispanel-license.key".to_string()
            )]
        );
        assert!(parse_busctl("{\"type\":\"i\",\"data\":0}\n").is_none());
        assert!(parse_busctl("").is_none());
    }

    #[test]
    fn the_bus_path_escapes_the_unit_name() {
        assert_eq!(
            bus_path("wispanel-licensed.service"),
            "/org/freedesktop/systemd1/unit/wispanel_2dlicensed_2eservice"
        );
    }

    #[test]
    fn other_exit_statuses_and_garbage_say_nothing_more() {
        let f = parse_show(
            "ExecMainStatus=1\nResult=exit-code\nActiveState=failed\nnonsense\nLoadCredential=bad\n",
        );
        assert!(f.plain.is_empty());
        let cs = checks(&f);
        assert_eq!(cs.len(), 1, "{cs:?}");
        assert!(cs[0].found.contains("no license.key credential"), "{cs:?}");
    }
}
