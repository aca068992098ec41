//! hardware_id checks: which sources gave the id (names and short digests
//! only), a machine-id that is empty, all zeros or one baked into a public
//! image, a placeholder DMI product UUID, and an id that differs from the one
//! the last verdict was given for.

use super::Check;
use crate::config::Hardware;
use crate::hwid::{self, HwidError, HwidReport, TriedFile};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Machine-ids that are shipped inside public images, so that every host made
/// from the image shares them (and so shares one hardware_id). Each was seen
/// in public material; the list is short on purpose and only ever warns.
///
/// - `b08dfa6083e7567a1921a715000001fb`: the machine-id that Whonix and
///   Kicksecure ship on purpose in `/etc/machine-id` (their dist-base-files
///   package), copied by many hardening guides and NixOS configurations.
/// - `b4047197195f4f359571cd0658157294`: left in `/var/lib/dbus/machine-id` of
///   the `bento/ubuntu-22.04` Vagrant box 202212.11.0 (chef/bento issue #1421).
/// - `ebb19c6b226f48fa86a541fd060e8762`: the machine-id of the
///   `quay.io/footloose/ubuntu18.04:0.4.0` machine image (weaveworks/footloose
///   issue #154).
pub const WELL_KNOWN_MACHINE_IDS: &[(&str, &str)] = &[
    (
        "b08dfa6083e7567a1921a715000001fb",
        "the shared machine-id of Whonix/Kicksecure images",
    ),
    (
        "b4047197195f4f359571cd0658157294",
        "the machine-id left in the bento/ubuntu-22.04 Vagrant box",
    ),
    (
        "ebb19c6b226f48fa86a541fd060e8762",
        "the machine-id of the footloose ubuntu18.04 image",
    ),
];

/// What a machine-id file holds, without its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineId {
    Missing,
    Unreadable(String),
    Empty,
    /// Not 32 hex characters (the recipe skips it).
    Malformed,
    AllZeros,
    /// One of [`WELL_KNOWN_MACHINE_IDS`]: its description.
    WellKnown(&'static str),
    Good,
}

/// Classifies the content of a machine-id file (the value is not kept).
pub fn classify_machine_id(raw: &str) -> MachineId {
    let v = raw.trim().to_ascii_lowercase();
    if v.is_empty() || v == "uninitialized" {
        return MachineId::Empty;
    }
    if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return MachineId::Malformed;
    }
    if v.bytes().all(|b| b == b'0') {
        return MachineId::AllZeros;
    }
    if let Some((_, what)) = WELL_KNOWN_MACHINE_IDS.iter().find(|(id, _)| *id == v) {
        return MachineId::WellKnown(what);
    }
    MachineId::Good
}

/// The facts behind the hardware checks.
#[derive(Clone, Debug)]
pub struct Facts {
    pub id_file: Option<PathBuf>,
    pub report: Result<HwidReport, HwidError>,
    /// `etc/machine-id` then `var/lib/dbus/machine-id`, under the root.
    pub machine_ids: Vec<(PathBuf, MachineId)>,
}

/// Reads the sources under `hw.root`.
pub fn gather(hw: &Hardware, credentials_dir: Option<&Path>) -> Facts {
    let machine_ids = ["etc/machine-id", "var/lib/dbus/machine-id"]
        .iter()
        .map(|rel| {
            let p = hw.root.join(rel);
            let fact = read_small(&p);
            (p, fact)
        })
        .collect();
    Facts {
        id_file: hw.id_file.clone(),
        report: hwid::compute(hw, credentials_dir),
        machine_ids,
    }
}

fn read_small(p: &Path) -> MachineId {
    let file = match std::fs::File::open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return MachineId::Missing,
        Err(e) => return MachineId::Unreadable(e.to_string()),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(4096).read_to_end(&mut bytes) {
        return MachineId::Unreadable(e.to_string());
    }
    match String::from_utf8(bytes) {
        Ok(text) => classify_machine_id(&text),
        Err(_) => MachineId::Malformed,
    }
}

fn tried(f: &Facts) -> &[TriedFile] {
    match &f.report {
        Ok(r) => &r.tried,
        Err(HwidError::NoSource { tried }) => tried,
        Err(HwidError::IdFile { .. }) => &[],
    }
}

/// The hardware checks; `verdict_id` is the hardware_id of the last verdict.
pub fn checks(f: &Facts, verdict_id: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    let id = match &f.report {
        Ok(r) => {
            let sources: Vec<String> = r
                .sources
                .iter()
                .map(|s| format!("{} ({})", s.name, s.digest))
                .collect();
            out.push(Check::ok(
                "hardware_id",
                format!("{} from {}", r.id, sources.join(", ")),
            ));
            Some(r.id.as_str())
        }
        Err(e) => {
            out.push(Check::fail(
                "hardware_id",
                e.to_string(),
                "without a hardware_id no licence request can be made; see `wispanel-license hardware-id --explain`",
            ));
            None
        }
    };

    if let Some(p) = &f.id_file {
        out.push(Check::ok(
            "machine-id",
            format!("not used: hardware.id_file {} is set", p.display()),
        ));
    } else {
        out.push(machine_id_check(&f.machine_ids));
        if let Some(c) = product_uuid_check(tried(f)) {
            out.push(c);
        }
    }

    if let (Some(now), Some(then)) = (id, verdict_id) {
        if now == then {
            out.push(Check::ok("hardware_id since last verdict", "unchanged"));
        } else {
            out.push(Check::warn(
                "hardware_id since last verdict",
                format!(
                    "the last verdict was for {}…, this host computes {}…",
                    &then[..then.len().min(12)],
                    &now[..now.len().min(12)]
                ),
                "the daemon checks again at once; the portal may answer HARDWARE_MISMATCH or count a new activation. If the hardware really changed, run `wispanel-license deactivate` on the old id's host or ask support to move the licence",
            ));
        }
    }
    out
}

const REGENERATE: &str = "give this host its own id: `rm -f /etc/machine-id /var/lib/dbus/machine-id && systemd-machine-id-setup` (the hardware_id changes, so the licence is activated again)";

fn machine_id_check(ids: &[(PathBuf, MachineId)]) -> Check {
    let name = "machine-id";
    // The file the recipe uses: the first that holds 32 hex characters.
    let used = ids.iter().find(|(_, m)| {
        matches!(
            m,
            MachineId::Good | MachineId::AllZeros | MachineId::WellKnown(_)
        )
    });
    match used {
        Some((p, MachineId::Good)) => Check::ok(name, format!("{} is set", p.display())),
        Some((p, MachineId::AllZeros)) => {
            Check::warn(name, format!("{} is all zeros", p.display()), REGENERATE)
        }
        Some((p, MachineId::WellKnown(what))) => Check::warn(
            name,
            format!(
                "{} is {what}: every host made from that image shares it",
                p.display()
            ),
            REGENERATE,
        ),
        _ => {
            let seen: Vec<String> = ids
                .iter()
                .map(|(p, m)| {
                    let what = match m {
                        MachineId::Missing => "missing".to_string(),
                        MachineId::Unreadable(e) => format!("unreadable ({e})"),
                        MachineId::Empty => "empty".to_string(),
                        _ => "not 32 hex characters".to_string(),
                    };
                    format!("{} {what}", p.display())
                })
                .collect();
            Check::warn(
                name,
                seen.join(", "),
                "systemd fills an empty /etc/machine-id at boot; run `systemd-machine-id-setup`. Without it the id rests on the DMI UUID or MAC addresses",
            )
        }
    }
}

fn product_uuid_check(tried: &[TriedFile]) -> Option<Check> {
    let t = tried.iter().find(|t| t.path.ends_with("product_uuid"))?;
    let name = "product_uuid";
    let found = format!("{} {}", t.path.display(), t.outcome);
    Some(if t.outcome == "used" {
        Check::ok(name, found)
    } else if t.outcome.starts_with("placeholder") {
        Check::warn(
            name,
            found,
            "the firmware gives no real UUID, so it is left out of the hardware_id; nothing to do unless the machine-id is missing too",
        )
    } else if t.outcome.contains("permission denied") {
        Check::warn(
            name,
            found,
            "run doctor as root; the daemon runs as root (or gets it as the systemd credential product_uuid), so its id may differ from the one shown here",
        )
    } else if t.outcome == "missing" {
        Check::ok(name, format!("{} is absent (not used)", t.path.display()))
    } else {
        Check::warn(name, found, "it is left out of the hardware_id")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    const MID: &str = "0123456789abcdef0123456789abcdef";

    fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        d
    }

    fn run(files: &[(&str, &str)], verdict: Option<&str>) -> Vec<Check> {
        let d = root(files);
        let hw = Hardware {
            root: d.path().to_path_buf(),
            id_file: None,
        };
        checks(&gather(&hw, None), verdict)
    }

    fn named<'a>(cs: &'a [Check], name: &str) -> &'a Check {
        cs.iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} in {cs:?}"))
    }

    #[test]
    fn classify() {
        assert_eq!(classify_machine_id(&format!("{MID}\n")), MachineId::Good);
        assert_eq!(classify_machine_id(" \n"), MachineId::Empty);
        assert_eq!(classify_machine_id("uninitialized\n"), MachineId::Empty);
        assert_eq!(classify_machine_id("abc"), MachineId::Malformed);
        assert_eq!(classify_machine_id(&"0".repeat(32)), MachineId::AllZeros);
        for (id, what) in WELL_KNOWN_MACHINE_IDS {
            assert_eq!(
                classify_machine_id(&id.to_ascii_uppercase()),
                MachineId::WellKnown(what)
            );
            assert_eq!(id.len(), 32);
        }
    }

    #[test]
    fn healthy_sources() {
        let cs = run(
            &[
                ("etc/machine-id", MID),
                (
                    "sys/class/dmi/id/product_uuid",
                    "4C4C4544-0042-3510-8052-B4C04F4E3732",
                ),
            ],
            None,
        );
        assert!(cs.iter().all(|c| c.status == Status::Ok), "{cs:?}");
        let id = named(&cs, "hardware_id");
        assert!(id.found.contains("machine-id ("), "{id:?}");
        assert!(id.found.contains("product-uuid ("), "{id:?}");
        let all = format!("{cs:?}");
        assert!(!all.contains(MID), "raw machine-id printed: {all}");
        assert!(
            !all.to_lowercase().contains("b4c04f4e3732"),
            "raw uuid printed: {all}"
        );
    }

    #[test]
    fn well_known_and_zero_machine_ids_warn() {
        let cs = run(&[("etc/machine-id", WELL_KNOWN_MACHINE_IDS[0].0)], None);
        let m = named(&cs, "machine-id");
        assert_eq!(m.status, Status::Warn);
        assert!(m.found.contains("Whonix"), "{m:?}");
        assert!(!m.found.contains(WELL_KNOWN_MACHINE_IDS[0].0));
        let cs = run(&[("etc/machine-id", &"0".repeat(32))], None);
        assert_eq!(named(&cs, "machine-id").status, Status::Warn);
        // The D-Bus copy is what the recipe uses when /etc/machine-id is empty.
        let cs = run(
            &[
                ("etc/machine-id", ""),
                ("var/lib/dbus/machine-id", WELL_KNOWN_MACHINE_IDS[1].0),
            ],
            None,
        );
        let m = named(&cs, "machine-id");
        assert!(m.found.contains("var/lib/dbus"), "{m:?}");
        assert!(m.found.contains("bento"), "{m:?}");
    }

    #[test]
    fn empty_machine_id_warns_and_no_source_fails() {
        let cs = run(&[("etc/machine-id", "\n")], None);
        let m = named(&cs, "machine-id");
        assert_eq!(m.status, Status::Warn);
        assert!(m.found.contains("empty"), "{m:?}");
        assert_eq!(named(&cs, "hardware_id").status, Status::Fail);
    }

    #[test]
    fn placeholder_uuid_warns() {
        for uuid in [
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        ] {
            let cs = run(
                &[
                    ("etc/machine-id", MID),
                    ("sys/class/dmi/id/product_uuid", uuid),
                ],
                None,
            );
            let u = named(&cs, "product_uuid");
            assert_eq!(u.status, Status::Warn, "{u:?}");
            assert!(u.found.contains("placeholder"), "{u:?}");
        }
        let cs = run(&[("etc/machine-id", MID)], None);
        assert_eq!(named(&cs, "product_uuid").status, Status::Ok);
    }

    #[test]
    fn changed_hardware_id_warns() {
        let files = [("etc/machine-id", MID)];
        let cs = run(&files, None);
        assert!(
            cs.iter()
                .all(|c| c.name != "hardware_id since last verdict")
        );
        let id = named(&cs, "hardware_id").found[..64].to_string();
        let cs = run(&files, Some(&id));
        assert_eq!(
            named(&cs, "hardware_id since last verdict").status,
            Status::Ok
        );
        let cs = run(&files, Some(&"a".repeat(64)));
        let c = named(&cs, "hardware_id since last verdict");
        assert_eq!(c.status, Status::Warn);
        assert!(c.found.contains("aaaaaaaaaaaa…"), "{c:?}");
    }

    #[test]
    fn id_file_skips_the_sources() {
        let d = root(&[("id", &"b".repeat(64))]);
        let hw = Hardware {
            root: d.path().to_path_buf(),
            id_file: Some(d.path().join("id")),
        };
        let cs = checks(&gather(&hw, None), None);
        assert!(cs.iter().all(|c| c.status == Status::Ok), "{cs:?}");
        assert!(named(&cs, "machine-id").found.contains("not used"));
    }
}
