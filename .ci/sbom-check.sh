#!/usr/bin/env bash
# Validates a CycloneDX SBOM against the 1.5 JSON schema (cyclonedx-python-lib's
# validator, in a venv of its own under target/) and checks it names rustls.
# Usage: .ci/sbom-check.sh FILE.cdx.json
set -euo pipefail
cd "$(dirname "$0")/.."
sbom=$1
venv=target/sbom-venv
if ! "$venv/bin/python" -c 'import cyclonedx.validation.json' 2>/dev/null; then
	command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }
	python3 -m venv "$venv" 2>/dev/null || {
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
		python3 -m venv "$venv"
	}
	"$venv/bin/pip" install -q 'cyclonedx-python-lib[json-validation]==8.*'
fi
"$venv/bin/python" - "$sbom" <<'PY'
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
text = open(sys.argv[1]).read()
err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
if err:
    sys.exit(f"sbom-check: {sys.argv[1]} is not valid CycloneDX 1.5: {str(err)[:600]}")
bom = json.loads(text)
names = {c["name"] for c in bom.get("components", [])}
if "rustls" not in names:
    sys.exit(f"sbom-check: {sys.argv[1]} does not name rustls")
print(f"sbom-check: {sys.argv[1]}: valid CycloneDX 1.5, {len(names)} crates, rustls among them")
PY
