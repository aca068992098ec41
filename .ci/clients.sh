#!/usr/bin/env bash
# The example clients (examples/clients/: Python, PHP, Go, shell) against the
# live daemon and the portal simulator: each prints the status, waits on
# GET /v1/events, and prints the next change, which this script makes by a
# root deactivate or activate once the client says it is waiting (no sleep).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
bin=$root/target/debug

need=()
command -v php >/dev/null || need+=(php-cli)
php -m 2>/dev/null | grep -qx curl || need+=(php-curl)
command -v go >/dev/null || need+=(golang-go)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --quiet --bin wispanel-licensed --bin wispanel-portal-sim

work=$(mktemp -d /tmp/wispanel-clients.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/wispanel-portal-sim" --ca-out "$work/ca.pem" --port-file "$work/url" >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/url" ] && break; sleep 0.05; done
printf '%064x\n' 48879 >"$work/hardware-id"
sock=$work/run/status.sock
cat >"$work/license.toml" <<TOML
license_key = "WISP-GOOD-0000-SA6T"
portal_url = "$(cat "$work/url")"
ca_file = "$work/ca.pem"
product_version = "1.4.2"
state_dir = "$work/state"
socket_path = "$sock"
socket_mode = "0600"

[hardware]
id_file = "$work/hardware-id"
TOML
"$bin/wispanel-licensed" --config "$work/license.toml" >"$work/daemon.log" 2>&1 &
pids+=($!)
api() { curl -sS --unix-socket "$sock" -o /dev/null -w '%{http_code}' -X "$1" "http://localhost$2" ${3:+-d "$3"}; }
state() { curl -sS --unix-socket "$sock" http://localhost/v1/status 2>/dev/null | jq -r .license.state 2>/dev/null || true; }
wait_for() { # $1: a test; up to 60 s
    for _ in $(seq 1200); do eval "$1" && return 0; sleep 0.05; done
    echo "FAIL: timed out waiting for: $1"; cat "$work/daemon.log"; return 1
}
wait_for '[ "$(state)" = active ]'

export GOPROXY=off GOFLAGS=-mod=mod GOCACHE=$work/go-cache GOPATH=$work/go
go build -o "$work/status-go" examples/clients/status.go

# Each client in turn: it prints the state, then waits; the change flips the
# licence between active and unconfigured.
run() { # $1: name; the rest: the command
    local name=$1; shift
    local out=$work/$name.out
    local now; now=$(state)
    "$@" "$sock" >"$out" 2>&1 &
    local cpid=$!
    wait_for "grep -q 'waiting for the next change' '$out' || ! kill -0 $cpid 2>/dev/null"
    local next
    if [ "$now" = active ]; then
        next=unconfigured
        [ "$(api POST /v1/deactivate)" = 200 ]
    else
        next=active
        [ "$(api POST /v1/activate '{"license_key": "WISP-GOOD-0000-SA6T"}')" = 200 ]
    fi
    local rc=0
    wait "$cpid" || rc=$?
    echo "--- $name (exit $rc)"; cat "$out"
    grep -Eq "^state=$now licensed=(true|false) update=[a-z_]+ warnings=" "$out" ||
        { echo "FAIL: $name did not print the state $now"; exit 1; }
    grep -Eq "^change: state=$next licensed=" "$out" ||
        { echo "FAIL: $name did not print the change to $next"; exit 1; }
    [ $rc = 0 ] || { echo "FAIL: $name exited $rc"; exit 1; }
}
run python python3 -u examples/clients/status.py
run php php examples/clients/status.php
run go "$work/status-go"
run shell sh examples/clients/status.sh

echo "ok: the four example clients read the status and follow the events"
