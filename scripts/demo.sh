#!/usr/bin/env bash
# The end-to-end demo: as a normal user, no root, no network beyond loopback.
# Starts the portal simulator (HTTPS with its own CA) and the daemon with its
# socket in a temporary directory, then shows `wispanel-license status`
# changing: no key → a key is configured (activation) → the portal expires it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --quiet --bins
bin=$PWD/target/debug
work=$(mktemp -d "${TMPDIR:-/tmp}/wispanel-demo.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cli() { "$bin/wispanel-license" --config "$work/license.toml" "$@"; }
status() { local rc=0; cli status || rc=$?; echo "(exit status $rc)"; }
wait_state() { # wait up to 20 s for the licence state $1
    for _ in $(seq 200); do
        { cli --json status 2>/dev/null || true; } | grep -q "\"state\":\"$1\"" && return 0
        sleep 0.1
    done
    echo "state $1 not reached" >&2
    return 1
}

step "starting the portal simulator"
"$bin/wispanel-portal-sim" --ca-out "$work/ca.pem" --port-file "$work/url" >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.05; done
url=$(cat "$work/url")
echo "portal: $url"

printf '%064x\n' 48879 >"$work/hardware-id"
write_config() {
    cat >"$work/license.toml" <<TOML
$1
portal_url = "$url"
ca_file = "$work/ca.pem"
product_version = "1.4.2"
state_dir = "$work/state"
socket_path = "$work/run/status.sock"
socket_mode = "0600"

[schedule]
validate_interval = "20s"
splay = "0s"
retry_initial = "1s"
retry_max = "10s"

[hardware]
id_file = "$work/hardware-id"
TOML
}
write_config "# no licence key yet"

step "starting wispanel-licensed (logs in $work/daemon.log)"
"$bin/wispanel-licensed" --config "$work/license.toml" >"$work/daemon.log" 2>&1 &
daemon=$!
pids+=($daemon)
for _ in $(seq 100); do [ -S "$work/run/status.sock" ] && break; sleep 0.05; done

step "wispanel-license status (no key)"
status

step "configuring the key WISP-GOOD-0000-SA6T and reloading (SIGHUP): the daemon activates it"
write_config 'license_key = "WISP-GOOD-0000-SA6T"'
kill -HUP "$daemon"
wait_state active
status

step "the portal now says the licence has expired; wispanel-license check"
curl -s -X POST "$url/_sim/license" --cacert "$work/ca.pem" \
    -d '{"license_key": "WISP-GOOD-0000-SA6T", "behaviour": "expired"}' >/dev/null
rc=0; cli check || rc=$?; echo "(exit status $rc)"

step "the portal goes down (503) and is renewed: the daemon keeps the verdict, says why"
curl -s -X POST "$url/_sim/license" --cacert "$work/ca.pem" \
    -d '{"license_key": "WISP-GOOD-0000-SA6T", "behaviour": "valid"}' >/dev/null
sleep 10.5  # manual checks within 10 s share the last result
cli check >/dev/null || true
wait_state active
curl -s -X POST "$url/_sim/outage" --cacert "$work/ca.pem" -d '{"mode": "503"}' >/dev/null
sleep 10.5
cli check >/dev/null || true
wait_state grace
status

step "metrics (excerpt)"
curl -s --unix-socket "$work/run/status.sock" http://localhost/metrics | grep -E '^wispanel_license_(licensed|state\{state="grace"\})'

step "done; the daemon log:"
cat "$work/daemon.log"
