# shellcheck shell=bash
# The history and `status --wait` under a real systemd (SPEC "History",
# `status --wait`). Sourced by run.sh; `history_tier` runs in sandbox A with
# the daemon active, after an activation by root.

history_tier() {
	group "sandbox A: the history across a restart, status --wait"
	local before kinds rc out
	before=$(sbx wispanel-license --json history --limit 1000 2>/dev/null | jq length)
	sbx systemctl restart $UNIT
	# No wait of ours: the client itself waits for the daemon and a verdict.
	rc=0
	out=$(sbx wispanel-license status --wait --timeout 60s 2>&1) || rc=$?
	expect_eq "status --wait right after a restart exits 0" "$rc" 0
	check "status --wait prints the state (${out%%$'\n'*})" grep -q "^Licence: *active" <<<"$out"
	local t0 t1
	t0=$(now_ms)
	rc=0
	sbx setpriv --reuid=nobody --regid=nogroup --clear-groups \
		wispanel-license status --wait --timeout 60s >/dev/null 2>&1 || rc=$?
	t1=$(now_ms)
	expect_eq "nobody: status --wait exits 3 (permission denied)" "$rc" 3
	check "... at once, not at the timeout ($(elapsed "$t0" "$t1") s)" \
		awk -v t="$(elapsed "$t0" "$t1")" 'BEGIN { exit !(t < 30) }'
	kinds=$(sbx wispanel-license --json history --limit 1000 2>/dev/null |
		jq -r --argjson n "${before:-0}" '.[$n:] | map(.event) | join(" ")')
	check "the restart is in the history: daemon_stopped, daemon_started ($kinds)" \
		grep -q "daemon_stopped daemon_started" <<<"$kinds"
	expect_eq "history.jsonl: mode 0600, the daemon's user" \
		"$(sbx stat -c %a:%U /var/lib/wispanel-license/history.jsonl 2>&1)" 600:wispanel-license
	check "the history holds no full key" eval '! sbx grep -q "$KEY" /var/lib/wispanel-license/history.jsonl'
	check "root's activation is recorded with uid 0 and the masked key" eval \
		'sbx wispanel-license --json history --limit 1000 | jq -e --arg k "$MASKED" "any(.[]; .event == \"activate\" and .uid == 0 and .key == \$k)" >/dev/null'
	out=$(sbx setpriv --reuid=tiermember --regid=tiermember --init-groups wispanel-license history 2>&1)
	check "a member of wispanel reads the history through the socket" grep -q daemon_started <<<"$out"
	# The daemon stopped: root reads the file itself. (Under socket
	# activation the .socket unit would start it again: stop that too.)
	sbx systemctl stop wispanel-licensed.socket >/dev/null 2>&1 || true
	sbx systemctl stop $UNIT
	rc=0
	out=$(sbx wispanel-license history 2>/dev/null) || rc=$?
	expect_eq "history with the daemon stopped (root reads the file) exits 0" "$rc" 0
	check "its last line is the clean stop" grep -q "daemon_stopped" <<<"$(tail -n 1 <<<"$out")"
	rc=0
	out=$(sbx setpriv --reuid=tiermember --regid=tiermember --init-groups wispanel-license history 2>&1) || rc=$?
	expect_eq "a member without the daemon: exit 3" "$rc" 3
	check "... told that reading the file needs root" grep -q "needs root" <<<"$out"
	sbx systemctl start wispanel-licensed.socket >/dev/null 2>&1 || true
	# The sandbox has restarted the daemon often by now: StartLimitBurst=
	# must not refuse this start.
	sbx systemctl reset-failed $UNIT >/dev/null 2>&1 || true
	sbx systemctl start $UNIT
	check "started again: active" wait_for 30 state_is active
}
