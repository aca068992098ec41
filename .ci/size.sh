#!/usr/bin/env bash
# Size budgets of the shipped binaries (issue 22, docs/PERFORMANCE.md): the
# stripped copies that .ci/packaging.sh packages (target/assets/bin/). A size
# is deterministic for a given toolchain and lock file, so it may fail CI;
# timings never do. Run after .ci/packaging.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Bytes (MB = 10^6, as in the issue's goals).
budget_wispanel_licensed=4500000
# Goal 4.0 MB, met since the CLI's TLS moved to ring (src/net/tls.rs):
# 3,491,632 bytes. The budget holds that plus about 1 %, so that growth
# fails CI (the goal itself leaves 0.5 MB).
budget_wispanel_license=3530000
dir=target/assets/bin
fail=0
for bin in wispanel-licensed wispanel-license; do
	f="$dir/$bin"
	[ -f "$f" ] || { echo "size: $f is missing: run .ci/packaging.sh first"; exit 1; }
	size=$(stat -c %s "$f")
	var="budget_${bin//-/_}"
	budget=${!var}
	if [ "$size" -gt "$budget" ]; then
		echo "size: FAIL $bin is $size bytes, over its budget of $budget"
		fail=1
	else
		echo "size: ok $bin is $size bytes (budget $budget)"
	fi
done
exit "$fail"
