# shellcheck shell=bash
# Socket activation under a real systemd (sourced by tests/systemd/run.sh,
# which calls socket_activation_scenarios in sandbox A with the package
# installed, configured and licensed).
#
# SPEC "Files": a client that connects while the daemon restarts waits in the
# socket's queue and gets its answer. `wispanel-license status` runs in a
# loop (as a transient unit inside the sandbox) through three `systemctl
# restart`s, a watchdog kill and a `dpkg -i` of the package; every call's
# exit status is logged, and 3 (no daemon: cannot connect, or no answer) must
# never appear. Then the socket unit starts a stopped daemon on the first
# connection.
#
# The watchdog kill: systemd sends SIGABRT when WATCHDOG=1 stops coming
# (then SIGKILL after TimeoutAbortSec=). Freezing the daemon with SIGSTOP
# and waiting for the watchdog takes WatchdogSec= plus TimeoutAbortSec=,
# longer than the status command's 10 s answer timeout, so a call made during
# the freeze would rightly give up (the run.sh watchdog group covers the
# freeze itself). Here `systemctl kill --signal=SIGABRT` sends what the
# watchdog sends, and Restart=on-failure brings the daemon back the same way.

SA_LOG=/run/tier-status-loop.log
SA_STOP=/run/tier-status-loop.stop

# The loop's unit is collected when it ends (--collect) and its body ends
# true: one run's unit never blocks the next run's name.
sa_loop_start() {
	sbx rm -f "$SA_LOG" "$SA_LOG.err" "$SA_STOP"
	sbx systemctl reset-failed tier-status-loop >/dev/null 2>&1 || true
	sbx systemd-run --quiet --collect --unit=tier-status-loop --property=Type=exec sh -c \
		"while [ ! -e $SA_STOP ]; do out=\$(wispanel-license status 2>&1); rc=\$?; echo \$rc >>$SA_LOG; if [ \$rc = 3 ]; then printf '%s\\n' \"\$out\" >>$SA_LOG.err; fi; done" ||
		fail "the status loop (transient unit tier-status-loop) starts"
}

sa_loop_stop() {
	sbx touch "$SA_STOP"
	wait_for 30 eval '! sbx systemctl is-active --quiet tier-status-loop' || sbx systemctl stop tier-status-loop
}

# sa_calls [CODE]: calls logged so far (with that exit status).
sa_calls() {
	if [ -n "${1:-}" ]; then
		sbx grep -cx "$1" "$SA_LOG" 2>/dev/null || true
	else
		sbx wc -l <"$SA_LOG" 2>/dev/null | tr -d ' ' || true
	fi
}

sa_calls_at_least() { [ "$(sbx cat "$SA_LOG" 2>/dev/null | wc -l)" -ge "$1" ]; }

# sa_during WHAT CMD...: runs CMD while the loop runs; checks no call found
# no daemon, and that calls went on after it.
sa_during() {
	local what=$1 before after lost
	shift
	sa_loop_start
	wait_for 30 sa_calls_at_least 5
	before=$(sbx cat "$SA_LOG" | wc -l)
	"$@"
	check "$what: the daemon is active again" wait_for 60 sbx systemctl is-active --quiet wispanel-licensed.service
	wait_for 30 sa_calls_at_least $((before + 20))
	sa_loop_stop
	after=$(sbx cat "$SA_LOG" | wc -l)
	lost=$(sbx grep -cvx '[012]' "$SA_LOG" || true)
	note "$what: $after status calls, exit statuses: $(sbx sort "$SA_LOG" | uniq -c | tr -s ' ' | paste -sd, -)"
	[ "$lost" = 0 ] || note "$what: what the calls that exited 3 printed: $(sbx cat "$SA_LOG.err" 2>/dev/null | sort | uniq -c | tr -s ' ' | paste -sd';' -)"
	expect_eq "$what: calls that found no daemon (exit 3)" "$lost" 0
}

sa_restart3() {
	local i
	for i in 1 2 3; do
		sbx systemctl restart wispanel-licensed.service
		wait_for 30 sa_calls_at_least $(($(sbx cat "$SA_LOG" | wc -l) + 5))
	done
}

sa_watchdog_kill() {
	local pid
	pid=$(unit_prop MainPID)
	sbx systemctl kill --kill-whom=main --signal=SIGABRT wispanel-licensed.service
	# Restart=on-failure, RestartSec=5s: the calls meanwhile wait in the queue.
	wait_for 60 eval '[ "$(unit_prop MainPID)" != 0 ] && [ "$(unit_prop MainPID)" != "$pid" ]'
}

sa_dpkg() {
	sbx dpkg -i /root/wispanel-license.deb >/dev/null 2>&1 || fail "dpkg -i (reinstall) during the status loop"
}

socket_activation_scenarios() {
	group "sandbox A: socket activation (wispanel-licensed.socket)"
	expect_eq "the socket unit is enabled by the package" \
		"$(sbx systemctl is-enabled wispanel-licensed.socket 2>&1)" enabled
	expect_eq "the socket unit is active" "$(sbx systemctl is-active wispanel-licensed.socket 2>&1)" active
	expect_eq "the socket is 0660 root:wispanel (the unit's SocketMode=/SocketGroup=)" \
		"$(sbx stat -c '%a %U:%G' /run/wispanel-license/status.sock 2>&1)" "660 root:wispanel"
	check "the daemon serves the passed socket (logged)" journal_has --grep 'serving the socket passed by systemd'
	check "--check-config says the unit's settings apply" eval \
		'sbx wispanel-licensed --check-config --config /etc/wispanel/license.toml | grep -q "socket activation: /usr/lib/systemd/system/wispanel-licensed.socket is installed"'
	# doctor exits 1 or 2 for the sandbox's warnings: read its output first
	# (under pipefail a pipeline would take doctor's status).
	doctor_out=$(sbx wispanel-license doctor 2>&1 || true)
	check "doctor says so too" grep -q "socket activation" <<<"$doctor_out"

	sa_during "three systemctl restarts" sa_restart3
	sa_during "a watchdog kill (SIGABRT, as the watchdog sends)" sa_watchdog_kill
	sa_during "dpkg -i of the package (reinstall: postinst restarts the daemon)" sa_dpkg
	expect_eq "after dpkg -i the socket unit is still active" \
		"$(sbx systemctl is-active wispanel-licensed.socket 2>&1)" active

	# A stopped daemon, the socket listening: the first call starts it.
	sbx systemctl stop wispanel-licensed.service
	expect_eq "daemon stopped, socket still listening" \
		"$(sbx systemctl is-active wispanel-licensed.service wispanel-licensed.socket | paste -sd' ' -)" "inactive active"
	check "the socket file stays while the daemon is stopped" sbx test -S /run/wispanel-license/status.sock
	expect_eq "a status call to the stopped daemon exits 0 (the socket starts it)" "$(status_exit)" 0
	expect_eq "the daemon was started by the connection" "$(sbx systemctl is-active wispanel-licensed.service)" active
	check "started by the socket unit (TriggeredBy)" eval \
		'sbx systemctl show -P TriggeredBy wispanel-licensed.service | grep -q wispanel-licensed.socket'
}
