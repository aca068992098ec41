#!/bin/bash
# The "middlebox" tier (issue 20): real Debian parts between the daemon and
# the portal simulator, inside a network namespace with only `lo` and a mount
# namespace of its own (nothing reaches the machine or the internet). Root
# only. Each scenario prints one `PASS/FAIL/SKIP <scenario>: <what>` line; the
# last line is `N passed, M failed`. Every process is stopped by its PID;
# every wait is bounded.
#
# Usage: [MB_ONLY=WORD] tests/middlebox/run.sh [BINDIR]   (default: target/debug)
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bindir=${1:-$root/target/debug}
bindir=$(cd "$bindir" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "SKIP middlebox: needs root (network namespaces, nftables, tmpfs)"
    exit 0
fi
# Re-run inside new network and mount namespaces.
if [ -z "${MB_INNER:-}" ]; then
    exec env MB_INNER=1 unshare --net --mount --propagation private "$0" "$bindir"
fi
ip link set lo up

# shellcheck source=tests/middlebox/lib.sh
. "$here/lib.sh"
t_start=$(date +%s)
for s in "$here"/scenarios/*.sh; do
    # MB_ONLY=WORD runs only the scenario files whose name contains WORD.
    case "$(basename "$s")" in *"${MB_ONLY:-}"*) ;; *) continue ;; esac
    # shellcheck disable=SC1090
    . "$s"
done
run_scenarios
echo "middlebox wall time: $(( $(date +%s) - t_start )) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
