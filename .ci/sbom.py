#!/usr/bin/env python3
"""Writes the CycloneDX 1.5 SBOM of the shipped binaries (issue 21).

Usage: .ci/sbom.py OUTPUT.cdx.json   (from the workspace root)

The components are the crates linked into `wispanel-licensed` and
`wispanel-license` on x86_64 Linux: the normal dependencies of the root
package as `cargo tree -e normal,no-proc-macro --target ...` resolves them
for that package alone (its features, not the workspace's), so no build
script or proc-macro crate (compiled, run, not linked), no dev-dependency and
no other platform's crate. Names, versions and licences come from `cargo
metadata`, the SHA-256 of each crates.io archive from Cargo.lock.

Deterministic, so the packages stay reproducible: metadata.timestamp is
SOURCE_DATE_EPOCH (else the commit's date), the serialNumber a UUID derived
from the content, and the lists are sorted.
"""
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tomllib
import uuid

TARGET = "x86_64-unknown-linux-gnu"
ROOT = "wispanel-license"


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def linked_crates():
    """(name, version) of every crate linked into the root package's binaries."""
    out = run("cargo", "tree", "--locked", "-p", ROOT, "-e", "normal,no-proc-macro",
              "--target", TARGET, "--prefix", "none", "--format", "{p}")
    crates = set()
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].startswith("v"):
            crates.add((words[0], words[1][1:]))
    return crates


def source_date():
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or run("git", "log", "-1", "--format=%ct").strip()
    when = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def purl(pkg):
    return f"pkg:cargo/{pkg['name']}@{pkg['version']}"


def component(pkg, checksums):
    c = {
        "type": "library",
        "bom-ref": purl(pkg),
        "name": pkg["name"],
        "version": pkg["version"],
        "purl": purl(pkg),
    }
    if pkg.get("description"):
        c["description"] = " ".join(pkg["description"].split())
    if pkg.get("license"):
        c["licenses"] = [{"expression": pkg["license"]}]
    sha = checksums.get((pkg["name"], pkg["version"]))
    if sha:
        c["hashes"] = [{"alg": "SHA-256", "content": sha}]
    if pkg.get("repository"):
        c["externalReferences"] = [{"type": "vcs", "url": pkg["repository"]}]
    return c


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: .ci/sbom.py OUTPUT.cdx.json")
    meta = json.loads(run("cargo", "metadata", "--locked", "--format-version", "1",
                          "--filter-platform", TARGET))
    with open("Cargo.lock", "rb") as f:
        lock = tomllib.load(f)
    checksums = {(p["name"], p["version"]): p["checksum"]
                 for p in lock.get("package", []) if "checksum" in p}
    by_key = {(p["name"], p["version"]): p for p in meta["packages"]}
    linked = linked_crates()
    missing = sorted(k for k in linked if k not in by_key)
    if missing:
        sys.exit(f"sbom.py: cargo tree names crates cargo metadata lacks: {missing}")
    root = next(p for p in meta["packages"]
                if p["name"] == ROOT and p["id"] in meta["workspace_members"])
    ids = {by_key[k]["id"]: by_key[k] for k in linked}
    components = sorted((component(p, checksums) for k, p in
                         ((k, by_key[k]) for k in linked) if p["id"] != root["id"]),
                        key=lambda c: c["bom-ref"])
    # The dependency graph among the linked crates (normal edges only).
    deps = []
    for node in meta["resolve"]["nodes"]:
        if node["id"] not in ids:
            continue
        on = sorted({purl(ids[d["pkg"]]) for d in node["deps"]
                     if d["pkg"] in ids and any(k["kind"] is None for k in d["dep_kinds"])})
        deps.append({"ref": purl(ids[node["id"]]), "dependsOn": on})
    deps.sort(key=lambda d: d["ref"])
    root_component = {
        "type": "application",
        "bom-ref": purl(root),
        "name": root["name"],
        "version": root["version"],
        "purl": purl(root),
        "licenses": [{"expression": root["license"]}] if root.get("license") else [],
        "description": " ".join((root.get("description") or "").split()),
    }
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": source_date(),
            "tools": {"components": [{"type": "application", "name": ".ci/sbom.py"}]},
            "component": root_component,
            "properties": [{"name": "wispanel:target", "value": TARGET}],
        },
        "components": components,
        "dependencies": deps,
    }
    body = json.dumps(bom, sort_keys=True).encode()
    bom["serialNumber"] = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                      hashlib.sha256(body).hexdigest()))
    with open(sys.argv[1], "w") as f:
        json.dump(bom, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"sbom.py: {len(components)} components -> {sys.argv[1]}")


if __name__ == "__main__":
    main()
