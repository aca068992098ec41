//! Where systemd takes the licence key from, and why a start failed with
//! 243/CREDENTIALS (issue 21).
//!
//! The daemon sees only `$CREDENTIALS_DIRECTORY/license.key`: whether systemd
//! decrypted it first is in the unit's configuration, not in the file. So
//! doctor asks systemd (`systemctl show -p LoadCredential -p
//! LoadCredentialEncrypted ...`): for one credential name the last
//! `LoadCredential*=` line of the unit and its drop-ins wins, and systemd lists
//! the winner under the property of its kind, so the answer is exact. No line
//! when systemd does not run here.

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
    let mut cmd = tokio::process::Command::new("systemctl");
    cmd.args(["show", "--no-pager"])
        .args(["-p", "LoadCredential", "-p", "LoadCredentialEncrypted"])
        .args(["-p", "ExecMainStatus", "-p", "Result", "-p", "ActiveState"])
        .arg(UNIT)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => {
            Some(parse_show(&String::from_utf8_lossy(&out.stdout)))
        }
        _ => None,
    }
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
