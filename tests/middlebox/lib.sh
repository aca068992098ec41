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

# The journal, caught. The tier's mount namespace gets a /run/systemd/journal
# of its own, where a listener takes each datagram of journald's native
# protocol (what tracing-journald sends to journald), with the sender's pid
# from SCM_CREDENTIALS as journald gets it, and writes it to
# $work/journal/PID.jsonl (one JSON object of fields per entry) and its
# MESSAGE to $work/journal/PID.log. A daemon from start_daemon has
# JOURNAL_STREAM naming its stderr, so it logs to "the journal" as under
# systemd, fields and MESSAGE_ID included.
journal_listener() {
    exec python3 - "$work/journal" "$work/journal.ready" <<'PY'
import array, json, os, socket, struct, sys
out, ready = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
path = "/run/systemd/journal/socket"
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
open(ready, "w").close()

def fields(b):
    f, i = {}, 0
    while i < len(b):
        nl = b.find(b"\n", i)
        nl = len(b) if nl < 0 else nl
        line = b[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:  # NAME\n<u64 le length><value>\n
            n = struct.unpack("<Q", b[nl + 1:nl + 9])[0]
            k, v = line, b[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        f[k.decode()] = v.decode("utf-8", "replace")
    return f

while True:
    data, anc, _, _ = s.recvmsg(1 << 20, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * 8))
    pid = 0
    for level, kind, d in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", d[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            # A large entry comes in a memfd.
            fds = array.array("i")
            fds.frombytes(d[:len(d) - len(d) % 4])
            for fd in fds:
                chunks, off = [], 0
                while True:
                    c = os.pread(fd, 1 << 16, off)
                    if not c:
                        break
                    chunks.append(c)
                    off += len(c)
                os.close(fd)
                data = b"".join(chunks)
    f = fields(data)
    f["_PID"] = str(pid)
    with open(os.path.join(out, f"{pid}.jsonl"), "a") as j:
        j.write(json.dumps(f) + "\n")
    with open(os.path.join(out, f"{pid}.log"), "a") as t:
        t.write(f.get("MESSAGE", "") + "\n")
PY
}

# Starts the listener unless it runs (cleanup stops it with each scenario).
ensure_journal() {
    [ -n "${JOURNAL_PID:-}" ] && kill -0 "$JOURNAL_PID" 2>/dev/null && return 0
    if ! mountpoint -q /run/systemd/journal; then
        mkdir -p /run/systemd/journal && mount -t tmpfs -o size=4m,mode=0755 tmpfs /run/systemd/journal ||
            return 1
    fi
    rm -f "$work/journal.ready"
    journal_listener &
    pids+=($!)
    JOURNAL_PID=$!
    wait_for 10 "[ -e '$work/journal.ready' ]"
}

# start_daemon DIR [env assignments...]: the daemon in the foreground, its
# journal entries in DIR/journal.jsonl (fields) and DIR/daemon.log (messages),
# anything it writes to stderr in DIR/daemon.stderr.
start_daemon() {
    local d=$1
    shift
    ensure_journal || errs+=("[the journal listener did not start]")
    : >"$d/daemon.stderr"
    local stream
    stream=$(stat -c '%d:%i' "$d/daemon.stderr")
    env -u NOTIFY_SOCKET JOURNAL_STREAM="$stream" RUST_LOG=info "$@" \
        "$bindir/wispanel-licensed" --config "$d/license.toml" >>"$d/daemon.stderr" 2>&1 &
    pids+=($!)
    DAEMON_PID=$!
    ln -sfn "$work/journal/$DAEMON_PID.jsonl" "$d/journal.jsonl"
    ln -sfn "$work/journal/$DAEMON_PID.log" "$d/daemon.log"
    wait_for 20 "[ -S '$d/run/status.sock' ]"
}

# expect_journal WHAT DIR MESSAGE_ID [FIELD=VALUE...]: DIR's daemon sent the
# journal an entry with that MESSAGE_ID and those fields.
expect_journal() {
    local what=$1 d=$2
    shift 2
    python3 - "$d/journal.jsonl" "$@" <<'PY' || errs+=("[$what: no journal entry MESSAGE_ID=$1 ${*:2} in $(basename "$d")/journal.jsonl]")
import json, sys
want = {"MESSAGE_ID": sys.argv[2]}
want.update(a.split("=", 1) for a in sys.argv[3:])
try:
    entries = [json.loads(l) for l in open(sys.argv[1])]
except OSError:
    sys.exit(1)
sys.exit(0 if any(all(e.get(k) == v for k, v in want.items()) for e in entries) else 1)
PY
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
