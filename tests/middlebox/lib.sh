# Helpers of the middlebox tier (sourced by run.sh, inside the namespaces).
# shellcheck shell=bash
passed=0
failed=0
scenarios=()
pids=()
work=$(mktemp -d /tmp/middlebox.XXXXXX)
KEY=WISP-GOOD-0000-SA6T
HWID=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
# MESSAGE_IDs (src/logging.rs ids).
MID_UNREACHABLE=58701c86108a4775aec373693fbc80ef
MID_STATE_CHANGED=59dfb730ad434ec980016b9e0a34b9c8
MID_NOT_SAVED=6bade82074c34ac98073723ee21011b2

cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    pids=()
}
trap 'cleanup; [ -n "${MB_KEEP:-}" ] || rm -rf "$work"' EXIT

register() { scenarios+=("$1"); }

# result NAME: the scenario's checks (its `errs` array) decide PASS or FAIL.
result() {
    local name=$1 what=$2
    if [ ${#errs[@]} = 0 ]; then
        echo "PASS $name: $what"
        passed=$((passed + 1))
    else
        echo "FAIL $name: $what: ${errs[*]}"
        failed=$((failed + 1))
    fi
}
skip() { echo "SKIP $1: $2"; }
expect() { # expect WHAT ACTUAL WANTED
    [ "$2" = "$3" ] || errs+=("[$1: got '$2', want '$3']")
}
expect_grep() { # expect_grep WHAT PATTERN FILE
    grep -qE -- "$2" "$3" || errs+=("[$1: no /$2/ in $(basename "$3")]")
}

# Polls CMD (a shell snippet) every 0.1 s until it succeeds or SECS pass.
wait_for() {
    local secs=$1
    shift
    local n=$((secs * 10))
    while [ $n -gt 0 ]; do
        eval "$@" && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# start_sim DIR [sim args...]: HTTPS simulator on lo; sets SIM_URL, SIM_CA, SIM_PORT.
start_sim() {
    local d=$1
    shift
    mkdir -p "$d"
    "$bindir/wispanel-portal-sim" --ca-out "$d/ca.pem" --port-file "$d/url" "$@" \
        >"$d/sim.out" 2>"$d/sim.err" &
    pids+=($!)
    SIM_PID=$!
    wait_for 20 "[ -s '$d/url' ]" || return 1
    SIM_URL=$(cat "$d/url")
    SIM_CA=$d/ca.pem
    SIM_PORT=${SIM_URL##*:}
}

# Requests the simulator saw for licence endpoints.
sim_count() {
    curl -sk --noproxy '*' "$SIM_URL/_sim/requests" |
        python3 -c 'import json,sys
d=json.load(sys.stdin)
r=d.get("requests", d) if isinstance(d, dict) else d
print(sum(1 for x in r if str(x.get("path","")).rstrip("/").split("/")[-1] in ("activate","validate")))'
}

# write_config DIR PORTAL_URL [extra top-level lines] [schedule lines]
write_config() {
    local d=$1 url=$2 extra=${3:-} sched=${4:-}
    mkdir -p "$d/state" "$d/run"
    echo "$HWID" >"$d/hardware-id"
    cat >"$d/license.toml" <<TOML
license_key = "$KEY"
portal_url = "$url"
product_version = "1.4.2"
state_dir = "$d/state"
socket_path = "$d/run/status.sock"
$extra

[schedule]
validate_interval = "30s"
update_check_interval = "1h"
splay = "0s"
retry_initial = "1s"
retry_max = "4s"
offline_grace = "7d"
request_timeout = "2s"
$sched

[hardware]
id_file = "$d/hardware-id"
TOML
}

# start_daemon DIR [env assignments...]: the daemon in the foreground, log to DIR/daemon.log.
start_daemon() {
    local d=$1
    shift
    env -u JOURNAL_STREAM -u NOTIFY_SOCKET RUST_LOG=info "$@" \
        "$bindir/wispanel-licensed" --config "$d/license.toml" >"$d/daemon.log" 2>&1 &
    pids+=($!)
    DAEMON_PID=$!
    wait_for 20 "[ -S '$d/run/status.sock' ]"
}

# A port of lo free now (for parts that want a port number: squid).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# status_field DIR PYEXPR: a field of `status --json` (e.g. d["license"]["state"]).
status_field() {
    "$bindir/wispanel-license" --config "$1/license.toml" --json status 2>/dev/null |
        python3 -c "import json,sys
d=json.load(sys.stdin)
try:
    v=$2
except (KeyError, TypeError, IndexError):
    v=None
print(json.dumps(v) if not isinstance(v, str) else v)"
}

# doctor DIR: runs doctor, text to DIR/doctor.txt; sets DOCTOR_RC.
doctor() {
    env -u HTTPS_PROXY -u ALL_PROXY "$bindir/wispanel-license" --config "$1/license.toml" doctor \
        >"$1/doctor.txt" 2>&1
    DOCTOR_RC=$?
}

run_scenarios() {
    local s
    for s in "${scenarios[@]}"; do
        errs=()
        "$s"
        cleanup
    done
}
