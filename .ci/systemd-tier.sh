#!/usr/bin/env bash
# CI: the systemd tier (tests/systemd/run.sh) on the .deb that .ci/packaging.sh
# has just built, with the portal simulator that the tests built. Boots
# systemd as PID 1 in a sandbox (scripts/systemd-sandbox.sh); fails, saying
# why, where that cannot be done, unless WISPANEL_SKIP_SYSTEMD_TIER=1.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls -t target/debian/wispanel-license_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { echo "systemd-tier.sh: no target/debian/*.deb; run .ci/packaging.sh first" >&2; exit 1; }
exec tests/systemd/run.sh "$deb"
