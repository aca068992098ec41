//! The core does no I/O because its manifest names no I/O crate. This test
//! pins the list of direct dependencies: adding one is a decision to make
//! here, in review, not by accident. (`.ci/run` also checks the whole
//! dependency tree with `cargo tree`.)

/// The names in the manifest's `[dependencies]` table.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            out.push(name.to_string());
        }
    }
    out
}

#[test]
fn the_core_depends_only_on_pure_crates() {
    let deps = dependencies(include_str!("../Cargo.toml"));
    assert!(!deps.is_empty(), "no [dependencies] found in the manifest");
    let allowed = [
        "httpdate",
        "serde",
        "serde_json",
        "sha2",
        "thiserror",
        "time",
    ];
    for dep in &deps {
        assert!(
            allowed.contains(&dep.as_str()),
            "wispanel-core must not depend on {dep:?}: the core does no I/O \
             (the clock and randomness come in as arguments)"
        );
    }
}

#[test]
fn the_reader_sees_a_forbidden_crate() {
    let deps = dependencies(
        "[package]\nname = \"x\"\n[dependencies]\ntokio.workspace = true\nserde = \"1\"\n[dev-dependencies]\nproptest = \"1\"\n",
    );
    assert_eq!(deps, ["tokio", "serde"]);
}
