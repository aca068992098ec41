//! hardware_id recipe v1 on fake roots. The expected ids are literals computed
//! independently with the shell, e.g.
//! `printf 'wispanel-hwid:v1\nmachine-id=%s\n' 0123…cdef | sha256sum`.

use std::fs;
use std::path::{Path, PathBuf};
use wispanel_license::config::Hardware;
use wispanel_license::hwid::{self, HwidError, HwidReport};

const MID: &str = "0123456789abcdef0123456789abcdef";
const MID2: &str = "fedcba9876543210fedcba9876543210";
const UUID: &str = "4c4c4544-0042-3510-8052-b4c04f565931";
const UUID2: &str = "6f0e1d2c-3b4a-5968-7a8b-9c0d1e2f3a4b";

/// sha256("wispanel-hwid:v1\nmachine-id=<MID>\n")
const ID_MID: &str = "b226467ed6edd501d99ca3c064d0a12f51e15775aef23b50a010395cbddd9cb6";
/// sha256("wispanel-hwid:v1\nproduct-uuid=<UUID>\n")
const ID_UUID: &str = "f3baafe4efe5ad2e40ee7ae18412480a61b6be792581abea1c9d19e9e433ba94";
/// sha256("wispanel-hwid:v1\nmachine-id=<MID>\nproduct-uuid=<UUID>\n")
const ID_BOTH: &str = "20d511640c997873132c41a3455dd6102067deb57574940d51ba5bba54c0dce9";
/// sha256("wispanel-hwid:v1\nmachine-id=<MID>\nproduct-uuid=<UUID2>\n")
const ID_BOTH_UUID2: &str = "02b93f57fb6dbdf366c7aa335f44ecf4f2b16f164a53aaf1b5a01743b8ff3531";
/// sha256("wispanel-hwid:v1\nmac=52:54:00:12:34:56\nmac=52:54:00:ab:cd:ef\n")
const ID_MACS: &str = "98b3c2a08a8a629c73121587a7bc0ae875d831f8d602cdbe88e9294e244fc410";
/// sha256("wispanel-hwid:v1\nmachine-id=<MID2>\n")
const ID_MID2: &str = "b975fbf5ef929eb1da5c8cce99aae60d0eeecd4c0dd07d85474b3bb33b9b42e6";

struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, content: &str) -> &Root {
        let p = self.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
        self
    }

    /// A NIC: `device` as a symlink (as in sysfs) when physical.
    fn nic(&self, name: &str, address: &str, physical: bool) -> &Root {
        let dir = self.path().join("sys/class/net").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("address"), format!("{address}\n")).unwrap();
        if physical {
            std::os::unix::fs::symlink(
                "../../../devices/pci0000:00/0000:00:03.0",
                dir.join("device"),
            )
            .unwrap();
        }
        self
    }

    fn hw(&self) -> Hardware {
        Hardware {
            root: self.path().to_path_buf(),
            id_file: None,
        }
    }

    fn compute(&self) -> Result<HwidReport, HwidError> {
        hwid::compute(&self.hw(), None)
    }

    fn id(&self) -> String {
        self.compute().unwrap().id
    }
}

fn outcome_of(report: &HwidReport, suffix: &str) -> String {
    report
        .tried
        .iter()
        .find(|t| t.path.ends_with(suffix))
        .map(|t| t.outcome.clone())
        .unwrap_or_else(|| format!("<{suffix} not tried: {:?}>", report.tried))
}

#[test]
fn machine_id_only() {
    let r = Root::new();
    r.write("etc/machine-id", &format!("{MID}\n"));
    let rep = r.compute().unwrap();
    assert_eq!(rep.id, ID_MID);
    assert!(!rep.from_id_file);
    assert_eq!(rep.sources.len(), 1);
    assert_eq!(rep.sources[0].name, "machine-id");
    assert_eq!(rep.sources[0].digest.len(), 12);
    assert_eq!(outcome_of(&rep, "etc/machine-id"), "used");
    assert_eq!(outcome_of(&rep, "sys/class/dmi/id/product_uuid"), "missing");
    // Another machine, another id.
    let other = Root::new();
    other.write("etc/machine-id", MID2);
    assert_eq!(other.id(), ID_MID2);
    // The D-Bus copy is not read when etc/machine-id is good.
    assert!(
        !rep.tried
            .iter()
            .any(|t| t.path.ends_with("var/lib/dbus/machine-id"))
    );
}

#[test]
fn values_are_trimmed_and_lowercased() {
    let r = Root::new();
    r.write("etc/machine-id", &format!("  {}\t\n", MID.to_uppercase()));
    r.write(
        "sys/class/dmi/id/product_uuid",
        &format!("{}\n", UUID.to_uppercase()),
    );
    assert_eq!(r.id(), ID_BOTH);
}

#[test]
fn product_uuid_only() {
    let r = Root::new();
    r.write("sys/class/dmi/id/product_uuid", &format!("{UUID}\n"));
    let rep = r.compute().unwrap();
    assert_eq!(rep.id, ID_UUID);
    assert_eq!(outcome_of(&rep, "etc/machine-id"), "missing");
    assert_eq!(outcome_of(&rep, "var/lib/dbus/machine-id"), "missing");
    assert_eq!(rep.sources[0].name, "product-uuid");
}

#[test]
fn both_and_macs_are_then_ignored() {
    let r = Root::new();
    r.write("etc/machine-id", MID);
    r.write("sys/class/dmi/id/product_uuid", UUID);
    r.nic("enp3s0", "52:54:00:12:34:56", true);
    let rep = r.compute().unwrap();
    assert_eq!(rep.id, ID_BOTH);
    assert!(
        !rep.tried
            .iter()
            .any(|t| t.path.to_string_lossy().contains("class/net"))
    );
}

#[test]
fn placeholder_uuids_are_ignored() {
    for placeholder in [
        "00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "ffffffffffffffffffffffffffffffff",
        "00000000000000000000000000000000",
        "",
        "\n",
    ] {
        let r = Root::new();
        r.write("etc/machine-id", MID);
        r.write("sys/class/dmi/id/product_uuid", placeholder);
        let rep = r.compute().unwrap();
        assert_eq!(rep.id, ID_MID, "{placeholder:?}");
        let outcome = outcome_of(&rep, "product_uuid");
        assert!(
            outcome.starts_with("placeholder") || outcome == "empty",
            "{placeholder:?}: {outcome}"
        );
    }
    let r = Root::new();
    r.write(
        "sys/class/dmi/id/product_uuid",
        "00000000-0000-0000-0000-000000000000",
    );
    r.write("etc/machine-id", MID);
    assert_eq!(
        outcome_of(&r.compute().unwrap(), "product_uuid"),
        "placeholder (all zeros)"
    );
}

#[test]
fn dbus_machine_id_is_the_fallback() {
    for bad in [
        "",
        "uninitialized\n",
        "0123456789abcdef",
        "0123456789abcdef0123456789abcdeg",
    ] {
        let r = Root::new();
        r.write("etc/machine-id", bad);
        r.write("var/lib/dbus/machine-id", &format!("{MID}\n"));
        let rep = r.compute().unwrap();
        assert_eq!(rep.id, ID_MID, "{bad:?}");
        assert_ne!(outcome_of(&rep, "etc/machine-id"), "used");
        assert_eq!(outcome_of(&rep, "var/lib/dbus/machine-id"), "used");
    }
    let r = Root::new();
    r.write("etc/machine-id", "uninitialized\n");
    r.write("var/lib/dbus/machine-id", MID);
    assert_eq!(
        outcome_of(&r.compute().unwrap(), "etc/machine-id"),
        "not 32 hex characters"
    );
}

#[test]
fn credential_product_uuid_is_preferred() {
    let r = Root::new();
    r.write("etc/machine-id", MID);
    r.write("sys/class/dmi/id/product_uuid", UUID);
    let creds = tempfile::tempdir().unwrap();
    fs::write(creds.path().join("product_uuid"), format!("{UUID2}\n")).unwrap();
    let rep = hwid::compute(&r.hw(), Some(creds.path())).unwrap();
    assert_eq!(rep.id, ID_BOTH_UUID2);
    assert_eq!(rep.sources[1].path, creds.path().join("product_uuid"));
    // A credentials directory without the file: the DMI file is read.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        hwid::compute(&r.hw(), Some(empty.path())).unwrap().id,
        ID_BOTH
    );
}

#[test]
fn macs_of_physical_nics_sorted_bytewise() {
    let r = Root::new();
    // Name order (eth1 < wlp2s0) differs from line order to prove the sort.
    r.nic("wlp2s0", "52:54:00:12:34:56", true);
    r.nic("eth1", "52:54:00:AB:CD:EF", true);
    r.nic("veth0", "aa:aa:aa:aa:aa:01", false);
    r.nic("docker0", "02:42:ac:11:00:02", false);
    r.nic("br0", "aa:aa:aa:aa:aa:02", false);
    r.nic("lo", "00:00:00:00:00:00", false);
    r.nic("bond-slave", "00:00:00:00:00:00", true);
    let rep = r.compute().unwrap();
    assert_eq!(rep.id, ID_MACS);
    let names: Vec<_> = rep.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mac:wlp2s0", "mac:eth1"]);
    assert_eq!(outcome_of(&rep, "bond-slave/address"), "all zeros");
    assert_eq!(
        outcome_of(&rep, "veth0"),
        "no device entry (virtual interface)"
    );
    assert_eq!(
        outcome_of(&rep, "docker0"),
        "no device entry (virtual interface)"
    );
}

#[test]
fn bridges_and_hostname_do_not_change_the_id() {
    let r = Root::new();
    r.write("etc/machine-id", MID);
    r.write("etc/hostname", "web1\n");
    let before = r.id();
    r.nic("br-1234", "02:42:00:00:00:01", false);
    r.nic("veth9", "02:42:00:00:00:02", false);
    r.write("etc/hostname", "web2\n");
    assert_eq!(r.id(), before);

    // Same on a MAC-only host: a new bridge or veth adds no line.
    let m = Root::new();
    m.nic("eth1", "52:54:00:ab:cd:ef", true);
    m.nic("wlp2s0", "52:54:00:12:34:56", true);
    assert_eq!(m.id(), ID_MACS);
    m.nic("docker0", "02:42:ac:11:00:02", false);
    m.write("etc/hostname", "other\n");
    assert_eq!(m.id(), ID_MACS);
}

#[test]
fn no_source_names_every_file_tried() {
    let r = Root::new();
    r.write("etc/machine-id", "uninitialized\n");
    r.nic("docker0", "02:42:ac:11:00:02", false);
    r.nic("eth0", "00:00:00:00:00:00", true);
    let err = r.compute().unwrap_err();
    let HwidError::NoSource { tried } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(tried.len(), 5, "{tried:?}");
    let msg = err.to_string();
    let root = r.path().display().to_string();
    for (rel, outcome) in [
        ("etc/machine-id", "not 32 hex characters"),
        ("var/lib/dbus/machine-id", "missing"),
        ("sys/class/dmi/id/product_uuid", "missing"),
        (
            "sys/class/net/docker0",
            "no device entry (virtual interface)",
        ),
        ("sys/class/net/eth0/address", "all zeros"),
    ] {
        let needle = format!("{root}/{rel} ({outcome})");
        assert!(msg.contains(&needle), "{needle} not in {msg}");
    }
    assert!(msg.contains("hardware.id_file"), "{msg}");

    // An empty root: the net directory itself is named.
    let e = Root::new().compute().unwrap_err().to_string();
    assert!(e.contains("sys/class/net (missing)"), "{e}");
}

#[test]
fn id_file_good_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hardware-id");
    let upper = ID_MID2.to_uppercase();
    fs::write(&file, format!(" {upper}\n")).unwrap();
    // Sources are present but not read.
    let r = Root::new();
    r.write("etc/machine-id", MID);
    let hw = Hardware {
        root: r.path().to_path_buf(),
        id_file: Some(file.clone()),
    };
    let rep = hwid::compute(&hw, None).unwrap();
    assert_eq!(rep.id, ID_MID2);
    assert!(rep.from_id_file);
    assert_eq!(rep.tried.len(), 1);

    for bad in [
        "",
        "abc",
        &ID_MID2[..63],
        &format!("{ID_MID2}0"),
        &ID_MID2.replace('b', "x"),
    ] {
        fs::write(&file, bad).unwrap();
        let e = hwid::compute(&hw, None).unwrap_err();
        assert!(matches!(e, HwidError::IdFile { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(bad.len() < 8 || !msg.contains(bad), "content leaked: {msg}");
    }
    let missing = Hardware {
        root: r.path().to_path_buf(),
        id_file: Some(PathBuf::from("/nonexistent/hardware-id")),
    };
    let e = hwid::compute(&missing, None).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/hardware-id: missing"), "{e}");
}

#[test]
fn raw_values_never_reach_the_report() {
    let r = Root::new();
    r.write("etc/machine-id", MID);
    r.write("sys/class/dmi/id/product_uuid", UUID);
    let rep = r.compute().unwrap();
    let json = serde_json::to_string(&rep).unwrap();
    let dbg = format!("{rep:?}");
    for raw in [MID, UUID, &UUID.replace('-', "")] {
        assert!(!json.contains(raw) && !dbg.contains(raw), "{raw} leaked");
    }

    let m = Root::new();
    m.nic("eth1", "52:54:00:ab:cd:ef", true);
    let json = serde_json::to_string(&m.compute().unwrap()).unwrap();
    assert!(!json.contains("52:54:00"), "{json}");
}
