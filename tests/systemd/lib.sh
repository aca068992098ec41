# shellcheck shell=bash
# Helpers of the systemd tier (sourced by tests/systemd/run.sh).
#
# One sandbox is "current" at a time ($SBX, set by `boot`); `sbx CMD` runs a
# command inside it. Every wait polls with a bound; every check prints one
# PASS or FAIL line.

PASSED=0
FAILED=0
SKIPPED=0
SANDBOXES=()

pass() {
	PASSED=$((PASSED + 1))
	printf 'PASS %s\n' "$*"
}

fail() {
	FAILED=$((FAILED + 1))
	printf 'FAIL %s\n' "$*"
}

# skip WHAT AND WHY: a check not made, said aloud (counted apart).
skip() {
	SKIPPED=$((SKIPPED + 1))
	printf 'SKIP %s\n' "$*"
}

# check DESCRIPTION CMD [ARG...]: PASS when CMD succeeds.
check() {
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

# expect_eq DESCRIPTION GOT WANT
expect_eq() {
	if [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1: got '$2', want '$3'"
	fi
}

note() { printf '     %s\n' "$*"; }
group() { printf '\n--- %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

now_ms() { date +%s%3N; }
# seconds with milliseconds between two now_ms values
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1000 }'; }

# boot NAME: a new sandbox, which becomes the current one.
boot() {
	SBX=$WORK/$1
	SANDBOXES+=("$SBX")
	"$SANDBOX" start "$SBX" >"$WORK/$1.start.log" 2>&1 || {
		cat "$WORK/$1.start.log"
		return 1
	}
	sed 's/^/     /' "$WORK/$1.start.log"
}

# shutdown_sandbox: powers off the current sandbox.
shutdown_sandbox() {
	"$SANDBOX" stop "$SBX" >/dev/null 2>&1 || true
}

shutdown_all() {
	local s
	for s in "${SANDBOXES[@]}"; do
		"$SANDBOX" stop "$s" >/dev/null 2>&1 || true
	done
}

sbx() { "$SANDBOX" run "$SBX" "$@"; }

# put HOST_FILE PATH [MODE]: copies a file into the sandbox.
put() {
	sbx sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1" && chmod "$2" "$1"' sh "$2" "${3:-0644}" <"$1"
}

# write PATH [MODE] < text: writes standard input to a file in the sandbox
# (truncating, so an existing file keeps its owner and mode).
write() {
	sbx sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1" && { [ -z "$2" ] || chmod "$2" "$1"; }' sh "$1" "${2:-}"
}

# wait_for SECONDS CMD [ARG...]: polls CMD every 0.2 s until it succeeds.
wait_for() {
	local limit=$1 i
	shift
	for ((i = 0; i < limit * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}

# The daemon's status document (JSON), or nothing.
status_json() { sbx wispanel-license --json status 2>/dev/null; }
field() { status_json | jq -r "$1" 2>/dev/null; }
licence_state() { field .license.state; }
state_is() { [ "$(licence_state)" = "$1" ]; }
unit_prop() { sbx systemctl show -P "$1" wispanel-licensed.service; }

# unit_creds LoadCredential|LoadCredentialEncrypted: the unit's credentials,
# one `id:source` a line. From the bus: the systemctl of systemd 252 prints
# these a(ss) properties as `[unprintable]`.
unit_creds() {
	sbx busctl --json=short get-property org.freedesktop.systemd1 \
		/org/freedesktop/systemd1/unit/wispanel_2dlicensed_2eservice \
		org.freedesktop.systemd1.Service "$1" | jq -r '.data[] | "\(.[0]):\(.[1])"'
}

# status_exit [setpriv args]: the exit status of `wispanel-license status`.
status_exit() {
	local rc=0
	sbx "$@" wispanel-license status >/dev/null 2>&1 || rc=$?
	echo "$rc"
}

# The simulator, through its control endpoints.
sim() { # METHOD PATH [JSON]
	if [ $# -ge 3 ]; then
		sbx curl -sS --max-time 20 --cacert "$SIM_CA" -X "$1" "$PORTAL_URL$2" -d "$3"
	else
		sbx curl -sS --max-time 20 --cacert "$SIM_CA" -X "$1" "$PORTAL_URL$2"
	fi
}

# journal_count [journalctl match args...]: entries of the unit that match.
journal_count() {
	sbx journalctl -q --no-pager -u wispanel-licensed.service -o cat "$@" 2>/dev/null | wc -l
}
# journal_has [journalctl match args...]: at least one such entry.
journal_has() { [ "$(journal_count "$@")" -ge 1 ]; }
