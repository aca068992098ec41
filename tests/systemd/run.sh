#!/usr/bin/env bash
# The systemd tier: the package as an administrator meets it, under a real
# systemd. Boots systemd as PID 1 in sandboxes (scripts/systemd-sandbox.sh),
# installs the .deb with dpkg, runs the portal simulator as a transient unit
# in the same network namespace, and drives the service: timings, the CLI as
# root, as a member of `wispanel` and as nobody, reload, stop, the watchdog,
# the hardware_id with and without DMI, the unit's exposure, the journal and
# its catalog, upgrade and purge; then Debian's node_exporter and Prometheus
# (tests/systemd/prometheus-e2e.sh) watch the daemon's metrics textfile until
# the not-licensed alert fires. Nothing reaches the machine: every write
# lands in the sandbox's tmpfs, and the only network is the sandbox's `lo`.
#
#   tests/systemd/run.sh [DEB]   (root; DEB defaults to the newest target/debian/*.deb)
#   TIER_ONLY=A,E tests/systemd/run.sh   (only those sandboxes)
#
# Prints a PASS or FAIL line per check (SKIP, with why, for a check it cannot
# make) and ends with the line
# "N passed, N failed"; exits 1 on any failure, or when this machine cannot
# boot systemd so (the message says why). WISPANEL_SKIP_SYSTEMD_TIER=1 skips
# the tier on purpose (exit 0). WISPANEL_PORTAL_SIM names the simulator
# binary (default: target/debug/wispanel-portal-sim, built when missing).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
ROOT=$PWD
SANDBOX=$ROOT/scripts/systemd-sandbox.sh
KEY=WISP-GOOD-0000-SA6T
MASKED="WISP-****SA6T"
UNIT=wispanel-licensed.service
# Fake DMI product UUIDs (mixed case: the recipe lowercases).
UUID1=4C4C4544-0042-3510-8052-B7C04F4E3732
UUID2=8e1c1f3a-5b2d-4c7e-9f10-2a3b4c5d6e7f
# MESSAGE_IDs (src/logging.rs, packaging/wispanel-license.catalog).
ID_STATE_CHANGED=59dfb730ad434ec980016b9e0a34b9c8
ID_GRACE_ENDING=f718164b81394f599f54cc70e9bcaddd
ID_LAPSED=4facc9862e5c41b881009de1246a19b8
ID_PORTAL_UNREACHABLE=58701c86108a4775aec373693fbc80ef
ID_RATE_LIMITED=58d12cff869e42e6b9aaf6cc22013abc
ID_HARDWARE_CHANGED=78726d85ab0f4d7f91b84b6c7c9d22b4
ID_CONFIG_REJECTED=ae4d8028ffb24516b78fd43d546f903b

# shellcheck source=tests/systemd/lib.sh
. tests/systemd/lib.sh
# shellcheck source=tests/systemd/prometheus-e2e.sh
. tests/systemd/prometheus-e2e.sh
# shellcheck source=tests/systemd/socket-activation.sh
. tests/systemd/socket-activation.sh
# shellcheck source=tests/systemd/encrypted-key.sh
. tests/systemd/encrypted-key.sh
# shellcheck source=tests/systemd/history.sh
. tests/systemd/history.sh

fatal() {
	printf 'systemd tier: %s\n' "$*" >&2
	fail "$*"
	printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
	exit 1
}

if [ "${WISPANEL_SKIP_SYSTEMD_TIER:-}" = 1 ]; then
	echo "systemd tier: SKIPPED (WISPANEL_SKIP_SYSTEMD_TIER=1)"
	exit 0
fi
started=$(now_ms)

# --- What the tier needs --------------------------------------------------
[ "$(id -u)" = 0 ] || fatal "run as root (it boots systemd in namespaces)"
why=$("$SANDBOX" check 2>&1) || fatal "this machine cannot boot systemd in a sandbox: $why (WISPANEL_SKIP_SYSTEMD_TIER=1 skips the tier)"
need=()
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v setpriv >/dev/null || need+=(util-linux)
command -v useradd >/dev/null || need+=(passwd)
command -v python3 >/dev/null || need+=(python3)
command -v setfacl >/dev/null || need+=(acl)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
if [ ${#need[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
		fatal "cannot install ${need[*]}"
fi

DEB=${1:-$(ls -t target/debian/wispanel-license_*.deb 2>/dev/null | head -n 1)}
[ -n "$DEB" ] && [ -f "$DEB" ] || fatal "no .deb (build it with .ci/packaging.sh, or name one)"
SIM_BIN=${WISPANEL_PORTAL_SIM:-target/debug/wispanel-portal-sim}
if [ ! -x "$SIM_BIN" ]; then
	cargo build --quiet -p wispanel-portal-sim --bin wispanel-portal-sim || fatal "cannot build the portal simulator"
fi
[ -x "$SIM_BIN" ] || fatal "no portal simulator at $SIM_BIN"
echo "package:   $DEB"
echo "simulator: $SIM_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wispanel-systemd-tier.XXXXXX")
trap 'shutdown_all; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# A newer build of the same package, for the upgrade: same files, higher version.
version=$(dpkg-deb -f "$DEB" Version)
NEW_VERSION="$version+tier1"
mkdir "$WORK/repack"
dpkg-deb -R "$DEB" "$WORK/repack/pkg" &&
	sed -i "s/^Version: .*/Version: $NEW_VERSION/" "$WORK/repack/pkg/DEBIAN/control" &&
	dpkg-deb -b -Zgzip -z1 --root-owner-group "$WORK/repack/pkg" "$WORK/newer.deb" >/dev/null ||
	fatal "cannot repack $DEB as version $NEW_VERSION"
rm -rf "$WORK/repack"

# TIER_ONLY=A,E (letters of the sandboxes below): runs only those, for work
# on one scenario; unset, all run (as CI does).
tier_only() { [ -z "${TIER_ONLY:-}" ] || [[ ,$TIER_ONLY, == *,"$1",* ]]; }

# --- Sandbox set-up -------------------------------------------------------

# dmi none|UUID: hides the DMI directory, or shows a product_uuid of UUID
# (root-only, as the kernel's), whatever the machine has. An overlay on
# /sys/class inside the sandbox's mount namespace: the machine's /sys is
# untouched.
dmi() {
	sbx sh -ec '
		if ! mountpoint -q /sys/class || [ ! -d /run/tier-dmi ]; then
			mkdir -p /run/tier-dmi/upper /run/tier-dmi/work
			mount -t overlay -o lowerdir=/sys/class,upperdir=/run/tier-dmi/upper,workdir=/run/tier-dmi/work tier-dmi /sys/class
		fi
		rm -rf /sys/class/dmi
		if [ "$1" != none ]; then
			mkdir -p /sys/class/dmi/id
			echo "$1" >/sys/class/dmi/id/product_uuid
			chmod 0400 /sys/class/dmi/id/product_uuid
		fi' sh "$1"
}

# The simulator as a transient unit, its CA where the daemon can read it;
# $1, when given, is its scenario (TOML).
start_portal() {
	put "$SIM_BIN" /opt/wispanel-tier/wispanel-portal-sim 0755 || return 1
	sbx mkdir -p /run/portal-sim /etc/wispanel
	local scenario=()
	if [ -n "${1:-}" ]; then
		printf '%s\n' "$1" | write /opt/wispanel-tier/scenario.toml || return 1
		scenario=(--scenario /opt/wispanel-tier/scenario.toml)
	fi
	sbx systemd-run --quiet --unit=portal-sim --property=Type=exec \
		/opt/wispanel-tier/wispanel-portal-sim --ca-out /run/portal-sim/ca.pem \
		--port-file /run/portal-sim/url "${scenario[@]}" || return 1
	wait_for 30 sbx test -s /run/portal-sim/url || return 1
	PORTAL_URL=$(sbx cat /run/portal-sim/url)
	sbx install -m 0644 /run/portal-sim/ca.pem /etc/wispanel/portal-ca.pem || return 1
	SIM_CA=/etc/wispanel/portal-ca.pem
	note "portal simulator (unit portal-sim.service) at $PORTAL_URL"
}

prepare() { # NAME DMI [SCENARIO]
	boot "$1" || fatal "cannot boot the sandbox $1"
	# man-db's trigger rebuilds its index on every install (half a minute
	# on 2 CPUs); it has nothing to do with this package's behaviour.
	sbx rm -f /var/lib/man-db/auto-update
	dmi "$2" || fatal "cannot set up DMI ($2) in the sandbox"
	start_portal "${3:-}" || fatal "cannot start the portal simulator in the sandbox"
	put "$DEB" /root/wispanel-license.deb || fatal "cannot copy the package into the sandbox"
	put "$WORK/newer.deb" /root/wispanel-license-newer.deb || fatal "cannot copy the package into the sandbox"
}

# config [LINE]: the configuration, pointing at the simulator; LINE, when
# given, is one more top-level setting.
config() {
	write /etc/wispanel/license.toml <<-EOF
		# Written by the systemd tier.
		license_key = "$KEY"
		portal_url = "$PORTAL_URL"
		ca_file = "$SIM_CA"
		product_version = "1.4.2"
		${1:-}

		[schedule]
		validate_interval = "1h"
		splay = "0s"
		retry_initial = "1s"
		retry_max = "4s"
		request_timeout = "5s"
	EOF
}

# The hardware_id that recipe v1 gives for this sandbox, computed here.
expected_hwid() {
	local mid uuid hex text
	mid=$(sbx cat /etc/machine-id 2>/dev/null | tr -d '[:space:]' | tr 'A-F' 'a-f')
	if ! [[ $mid =~ ^[0-9a-f]{32}$ ]]; then
		mid=$(sbx cat /var/lib/dbus/machine-id 2>/dev/null | tr -d '[:space:]' | tr 'A-F' 'a-f')
		[[ $mid =~ ^[0-9a-f]{32}$ ]] || mid=
	fi
	uuid=$(sbx cat /sys/class/dmi/id/product_uuid 2>/dev/null | tr -d '[:space:]' | tr 'A-F' 'a-f')
	hex=${uuid//-/}
	if [ -z "$hex" ] || [[ $hex =~ ^0+$ ]] || [[ $hex =~ ^f+$ ]]; then uuid=; fi
	text="wispanel-hwid:v1"$'\n'
	[ -z "$mid" ] || text+="machine-id=$mid"$'\n'
	[ -z "$uuid" ] || text+="product-uuid=$uuid"$'\n'
	printf '%s' "$text" | sha256sum | cut -d' ' -f1
}

if tier_only A; then
# ==========================================================================
group "sandbox A: a host without DMI; install, timings, the CLI"
prepare a none

t0=$(now_ms)
install_out=$(sbx dpkg -i /root/wispanel-license.deb 2>&1)
rc=$?
t_installed=$(now_ms)
expect_eq "dpkg -i exits 0" "$rc" 0
[ "$rc" = 0 ] || printf '%s\n' "$install_out" | tail -n 20 | sed 's/^/     /'
expect_eq "the unit is enabled by the package" "$(sbx systemctl is-enabled $UNIT 2>&1)" enabled
check "the unit is started by the package" wait_for 30 sbx systemctl is-active --quiet $UNIT
check "shipped configuration: state unconfigured" wait_for 30 state_is unconfigured
expect_eq "status of an unconfigured host exits 2" "$(status_exit)" 2
sbx useradd --no-create-home --groups wispanel tiermember || fail "cannot create a member of wispanel"

config
sbx systemctl reload $UNIT
if wait_for 60 state_is active; then
	t_licensed=$(now_ms)
	pass "configured with a key and reloaded: licensed (active)"
	DPKG_TO_LICENSED=$(elapsed "$t0" "$t_licensed")
	note "dpkg -i to licensed: $DPKG_TO_LICENSED s (dpkg -i itself: $(elapsed "$t0" "$t_installed") s)"
else
	fail "configured with a key and reloaded: licensed (state: $(licence_state))"
fi

sbx systemctl stop $UNIT
t0=$(now_ms)
sbx systemctl start $UNIT
t1=$(now_ms)
START_TO_ACTIVE=$(elapsed "$t0" "$t1")
expect_eq "systemctl start returns with the unit active (Type=notify, READY=1)" "$(sbx systemctl is-active $UNIT)" active
wait_for 30 state_is active
t2=$(now_ms)
note "systemctl start to active: $START_TO_ACTIVE s; to a licensed status: $(elapsed "$t0" "$t2") s"
expect_eq "a restart keeps the verdict: active" "$(licence_state)" active

group "sandbox A: wispanel-license as root, as a member of wispanel, as nobody"
expect_eq "status as root exits 0 (active)" "$(status_exit)" 0
expect_eq "status as a member of wispanel exits 0" \
	"$(status_exit setpriv --reuid=tiermember --regid=tiermember --init-groups)" 0
expect_eq "status as nobody exits 3 (cannot reach the socket)" \
	"$(status_exit setpriv --reuid=nobody --regid=nogroup --clear-groups)" 3
out=$(sbx setpriv --reuid=nobody --regid=nogroup --clear-groups wispanel-license status 2>&1)
check "nobody is told permission denied" grep -qi "permission denied" <<<"$out"
first=$(sbx wispanel-license status 2>/dev/null | head -n 1)
check "the first line of status names the state ($first)" grep -q active <<<"$first"

rc=0
out=$(sbx setpriv --reuid=tiermember --regid=tiermember --init-groups wispanel-license deactivate 2>&1) || rc=$?
expect_eq "deactivate as a member exits 1" "$rc" 1
note "$out"
check "the member's refusal says root only" grep -q "root only" <<<"$out"
member_uid=$(sbx id -u tiermember)
check "the member's refusal names its own uid $member_uid (no PrivateUsers=: real uids)" \
	grep -q "uid $member_uid)" <<<"$out"
expect_eq "the member's refusal changes nothing" "$(licence_state)" active

rc=0
sbx wispanel-license deactivate >/dev/null 2>&1 || rc=$?
expect_eq "deactivate as root exits 0" "$rc" 0
expect_eq "after deactivate: unconfigured" "$(licence_state)" unconfigured
rc=0
printf '%s\n' "$KEY" | sbx wispanel-license activate - >/dev/null 2>&1 || rc=$?
expect_eq "activate as root (key on stdin) exits 0" "$rc" 0
expect_eq "after activate: active" "$(licence_state)" active
expect_eq "the key is shown masked" "$(field .license.key)" "$MASKED"

group "sandbox A: the hardware_id without DMI (credential fallback)"
expect_eq "the daemon's hardware_id is recipe v1's (machine-id only)" "$(field .hardware_id)" "$(expected_hwid)"
expect_eq "wispanel-license hardware-id gives the same" "$(sbx wispanel-license hardware-id 2>/dev/null)" "$(expected_hwid)"

group "sandbox A: the portal expires the licence, fails, rate-limits"
sim POST /_sim/license "{\"license_key\": \"$KEY\", \"behaviour\": \"expired\"}" >/dev/null
rc=0
sbx wispanel-license check >/dev/null 2>&1 || rc=$?
expect_eq "check after the portal expired the licence exits 2" "$rc" 2
expect_eq "state expired" "$(licence_state)" expired
check "journalctl -u wispanel-licensed WISPANEL_LICENSE_STATE=expired finds the moment" \
	wait_for 10 journal_has WISPANEL_LICENSE_STATE=expired MESSAGE_ID=$ID_STATE_CHANGED
sim POST /_sim/license "{\"license_key\": \"$KEY\", \"behaviour\": \"valid\"}" >/dev/null
printf '%s\n' "$KEY" | sbx wispanel-license activate - >/dev/null 2>&1
expect_eq "renewed on the portal and activated again: active" "$(licence_state)" active

# A portal that answers 503: a non-verdict (grace), retried after 1 s; then
# 429 with Retry-After: the gate closes; then the portal is back.
sbx systemctl restart $UNIT # a fresh daemon: no manual check to share
sim POST /_sim/outage '{"mode": "503"}' >/dev/null
rc=0
sbx wispanel-license check >/dev/null 2>&1 || rc=$?
expect_eq "check while the portal answers 503 exits 1 (grace)" "$rc" 1
expect_eq "state grace" "$(licence_state)" grace
check "the failure is logged as portal unreachable, with its fields" wait_for 10 journal_has \
	MESSAGE_ID=$ID_PORTAL_UNREACHABLE WISPANEL_ENDPOINT=validate WISPANEL_ERROR_KIND=http WISPANEL_HTTP_STATUS=503 WISPANEL_LICENSE_STATE=active
sim POST /_sim/outage '{"mode": "429", "retry_after": "3"}' >/dev/null
check "the retry meets 429: logged as rate limited" wait_for 30 journal_has \
	MESSAGE_ID=$ID_RATE_LIMITED WISPANEL_ERROR_KIND=rate_limited WISPANEL_HTTP_STATUS=429
sim POST /_sim/outage '{"mode": "none"}' >/dev/null
# In grace, after two failed retries the daemon waits for validate_interval
# (grace pacing); the administrator asks for a check instead. Manual checks
# within 10 s of the last one share its result, so this takes up to 10 s.
checked_active() {
	sbx wispanel-license check >/dev/null 2>&1
	state_is active
}
check "the portal is back: wispanel-license check, active again" wait_for 60 checked_active

group "sandbox A: reload with a broken configuration"
conf_before=$(sbx sha256sum /etc/wispanel/license.toml)
sbx cp -p /etc/wispanel/license.toml /root/license.toml.good
# The key under a misspelt name: were it applied, the host would be unconfigured.
sbx sed -i 's/^license_key = /licence_key = /' /etc/wispanel/license.toml
since=$(sbx date '+%Y-%m-%d %H:%M:%S')
sleep 1
rc=0
sbx systemctl reload $UNIT || rc=$?
expect_eq "systemctl reload exits 0" "$rc" 0
check "the rejection is logged (MESSAGE_ID configuration rejected)" wait_for 10 journal_has \
	--since "$since" MESSAGE_ID=$ID_CONFIG_REJECTED
sbx journalctl -q --no-pager -u $UNIT --since "$since" MESSAGE_ID=$ID_CONFIG_REJECTED -o cat | head -n 1 | sed 's/^/     /'
expect_eq "the unit is still active" "$(sbx systemctl is-active $UNIT)" active
expect_eq "the old configuration is kept: still active" "$(licence_state)" active
expect_eq "the old configuration is kept: same key" "$(field .license.key)" "$MASKED"
sbx cp -p /root/license.toml.good /etc/wispanel/license.toml
expect_eq "configuration restored" "$(sbx sha256sum /etc/wispanel/license.toml)" "$conf_before"
sbx systemctl reload $UNIT

group "sandbox A: systemctl stop"
saved_before=$(sbx stat -c %.9Y /var/lib/wispanel-license/state.json)
timeout_stop=$(unit_prop TimeoutStopUSec)
t0=$(now_ms)
sbx systemctl stop $UNIT
t1=$(now_ms)
STOP_TIME=$(elapsed "$t0" "$t1")
note "systemctl stop took $STOP_TIME s (TimeoutStopSec=$timeout_stop; SPEC: exit within 5 s)"
check "stopped within TimeoutStopSec ($timeout_stop)" eval '[ "$(unit_prop Result)" != timeout ]'
check "stopped within SPEC's 5 s" awk -v t="$STOP_TIME" 'BEGIN { exit !(t < 5) }'
expect_eq "clean exit (Result)" "$(unit_prop Result)" success
expect_eq "clean exit (status 0)" "$(unit_prop ExecMainStatus)" 0
saved_after=$(sbx stat -c %.9Y /var/lib/wispanel-license/state.json)
check "state.json saved on the way out" awk -v a="$saved_before" -v b="$saved_after" 'BEGIN { exit !(b > a) }'
check "the socket stays with the .socket unit (socket activation)" sbx test -S /run/wispanel-license/status.sock
sbx systemctl start $UNIT
expect_eq "started again: active from the saved state" "$(licence_state)" active

history_tier

group "sandbox A: the watchdog"
write /etc/systemd/system/$UNIT.d/tier-watchdog.conf <<-EOF
	[Service]
	WatchdogSec=3s
	RestartSec=1s
	TimeoutAbortSec=5s
EOF
sbx systemctl daemon-reload
sbx systemctl restart $UNIT
checked_before=$(field .license.checked_at)
pid=$(unit_prop MainPID)
restarts=$(unit_prop NRestarts)
sbx kill -STOP "$pid"
restarted() {
	local p
	p=$(unit_prop MainPID)
	[ "$p" != 0 ] && [ "$p" != "$pid" ] && [ "$(sbx systemctl is-active $UNIT)" = active ]
}
if wait_for 60 restarted; then
	pass "a SIGSTOPped daemon is restarted by the watchdog (pid $pid -> $(unit_prop MainPID))"
else
	fail "a SIGSTOPped daemon is restarted by the watchdog (MainPID $(unit_prop MainPID))"
fi
check "NRestarts went up" test "$(unit_prop NRestarts)" -gt "$restarts"
watchdog_logged() { sbx journalctl -q --no-pager -u $UNIT -o cat | grep -q 'Watchdog timeout'; }
check "systemd logged the watchdog timeout" wait_for 10 watchdog_logged
expect_eq "the state survives: active" "$(licence_state)" active
expect_eq "the state survives: same verdict" "$(field .license.checked_at)" "$checked_before"
sbx rm /etc/systemd/system/$UNIT.d/tier-watchdog.conf
sbx systemctl daemon-reload
sbx systemctl restart $UNIT

socket_activation_scenarios

group "sandbox A: the unit as loaded"
security=$(sbx systemd-analyze security $UNIT 2>&1)
exposure=$(sed -n 's/^→ Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$security")
note "systemd-analyze security $UNIT: ${exposure:-?}"
check "exposure level ${exposure:-?} <= 1.5" awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 1.5) }'

group "sandbox A: the journal"
check "native journal entries (_TRANSPORT=journal) with SYSLOG_IDENTIFIER" journal_has \
	_TRANSPORT=journal SYSLOG_IDENTIFIER=wispanel-licensed
check "every state change carries WISPANEL_LICENSE_STATE and WISPANEL_UPDATE_STATE" eval \
	'[ "$(sbx journalctl -q --no-pager -u $UNIT MESSAGE_ID=$ID_STATE_CHANGED -o json | jq -s "map(select(.WISPANEL_LICENSE_STATE == null or .WISPANEL_UPDATE_STATE == null)) | length")" = 0 ]'
check "the expiry names the portal code (WISPANEL_PORTAL_CODE=EXPIRED)" journal_has \
	WISPANEL_LICENSE_STATE=expired WISPANEL_PORTAL_CODE=EXPIRED
catalog=$(sbx journalctl -x -q --no-pager -u $UNIT MESSAGE_ID=$ID_STATE_CHANGED WISPANEL_LICENSE_STATE=expired 2>&1)
check "journalctl -x shows the catalog text" grep -q "What to do" <<<"$catalog"
check "the catalog text names the state" grep -q "changed from active to" <<<"$catalog"
check "journalctl -x explains portal unreachable too" eval \
	'sbx journalctl -x -q --no-pager -u $UNIT MESSAGE_ID=$ID_PORTAL_UNREACHABLE | grep -q "wispanel-license doctor"'
check "the catalog lists every MESSAGE_ID" eval \
	'[ "$(sbx journalctl --list-catalog | grep -c WisPanel)" -ge 8 ]'
export_out=$(sbx journalctl -q --no-pager -u $UNIT -o json | jq -r 'to_entries[] | select(.key | startswith("_") | not) | .value' 2>/dev/null)
check "the licence key appears in no journal field" eval '! grep -q "$KEY" <<<"$export_out"'
mid=$(sbx cat /etc/machine-id)
check "the raw machine-id appears in no field the daemon wrote" eval '! grep -qi "$mid" <<<"$export_out"'

group "sandbox A: upgrade to a newer build, then purge"
sbx sh -c 'printf "\n# changed by the administrator\n" >>/etc/wispanel/license.toml'
conf_changed=$(sbx sha256sum /etc/wispanel/license.toml)
pid=$(unit_prop MainPID)
invocation=$(unit_prop InvocationID)
rc=0
upgrade_out=$(sbx dpkg -i /root/wispanel-license-newer.deb 2>&1) || rc=$?
expect_eq "dpkg -i of the newer build exits 0" "$rc" 0
[ "$rc" = 0 ] || printf '%s\n' "$upgrade_out" | tail -n 20 | sed 's/^/     /'
expect_eq "the newer version is installed" "$(sbx dpkg-query -W -f '${Version}' wispanel-license)" "$NEW_VERSION"
expect_eq "the changed conffile is untouched" "$(sbx sha256sum /etc/wispanel/license.toml)" "$conf_changed"
check "the service was restarted" eval '[ "$(unit_prop InvocationID)" != "$invocation" ] && [ "$(unit_prop MainPID)" != "$pid" ]'
expect_eq "the service is active after the upgrade" "$(sbx systemctl is-active $UNIT)" active
check "the state is kept: active" wait_for 30 state_is active
check "the activated key is kept" sbx test -s /var/lib/wispanel-license/license.key

rc=0
sbx dpkg -P wispanel-license >/dev/null 2>&1 || rc=$?
expect_eq "dpkg -P exits 0" "$rc" 0
check "the unit is gone" eval '[ "$(sbx systemctl is-active $UNIT)" != active ]'
check "the state is removed" eval '! sbx test -e /var/lib/wispanel-license'
check "the socket is removed" eval '! sbx test -e /run/wispanel-license/status.sock'
check "the configuration is removed" eval '! sbx test -e /etc/wispanel/license.toml'
check "the user wispanel-license is removed" eval '! sbx getent passwd wispanel-license >/dev/null'
check "the group wispanel stays while it has members (tiermember)" eval 'sbx getent group wispanel >/dev/null'
check "the catalog entries are gone" eval '[ "$(sbx journalctl --list-catalog | grep -c $ID_STATE_CHANGED)" = 0 ]'
shutdown_sandbox
fi

if tier_only B; then
# ==========================================================================
group "sandbox B: a host with a DMI product_uuid"
prepare b "$UUID1"
sbx dpkg -i /root/wispanel-license.deb >/dev/null 2>&1 || fail "dpkg -i in sandbox B"
config
sbx systemctl restart $UNIT
check "starts and is licensed" wait_for 60 state_is active
expect_eq "the credential holds the product_uuid" \
	"$(sbx sh -c 'cat /run/credentials/wispanel-licensed.service/product_uuid' | tr -d '[:space:]')" "$UUID1"
hw1=$(field .hardware_id)
expect_eq "the daemon's hardware_id is recipe v1's (machine-id and product_uuid)" "$hw1" "$(expected_hwid)"
expect_eq "wispanel-license hardware-id (root, reads DMI) gives the same" \
	"$(sbx wispanel-license hardware-id 2>/dev/null)" "$hw1"
dmi "$UUID2"
sbx systemctl restart $UNIT
hw2=$(field .hardware_id)
expect_eq "another board: the hardware_id follows" "$hw2" "$(expected_hwid)"
check "the change is logged (MESSAGE_ID hardware_id changed)" wait_for 10 journal_has \
	MESSAGE_ID=$ID_HARDWARE_CHANGED
shutdown_sandbox
fi

if tier_only C; then
# ==========================================================================
group "sandbox C: a portal out of reach until the licence lapses"
# Verdicts valid for 30 s: grace_until is the portal's valid_until, so the
# grace that follows a failure ends within 24 h at once, and lapses in 30 s.
prepare c none $'[terms]\nvalid_for_secs = 30'
sbx dpkg -i /root/wispanel-license.deb >/dev/null 2>&1 || fail "dpkg -i in sandbox C"
config
sbx systemctl restart $UNIT
check "starts and is licensed" wait_for 60 state_is active
sim POST /_sim/outage '{"mode": "503"}' >/dev/null
sbx wispanel-license check >/dev/null 2>&1
expect_eq "the portal answers 503: grace" "$(licence_state)" grace
check "less than 24 h of grace left: logged as grace ending" wait_for 10 journal_has \
	MESSAGE_ID=$ID_GRACE_ENDING WISPANEL_LICENSE_STATE=grace
check "the grace runs out: lapsed" wait_for 60 state_is lapsed
check "logged as lapsed (MESSAGE_ID lapsed)" wait_for 10 journal_has \
	MESSAGE_ID=$ID_LAPSED WISPANEL_LICENSE_STATE=lapsed
expect_eq "status of a lapsed host exits 2" "$(status_exit)" 2
check "journalctl -x explains the lapse" eval \
	'sbx journalctl -x -q --no-pager -u $UNIT MESSAGE_ID=$ID_LAPSED | grep -q "wispanel-license doctor"'
shutdown_sandbox
fi

if tier_only D; then
# ==========================================================================
group "sandbox D: Debian's node_exporter and Prometheus watch the licence"
# Debian's prometheus-node-exporter (textfile collector) and prometheus, with
# the shipped rules, beside the daemon (tests/systemd/prometheus-e2e.sh); the
# portal expires the licence and WispanelLicenseNotLicensed must fire.
TEXTFILE=/var/lib/prometheus/node-exporter/wispanel_license.prom
prepare d none
IN="$SANDBOX run $SBX"
sbx dpkg -i /root/wispanel-license.deb >/dev/null 2>&1 || fail "dpkg -i in sandbox D"
config "metrics_textfile = \"$TEXTFILE\""
if dropin_out=$(prom_e2e_install_dropin 2>&1); then
	pass "the packaged drop-in installs"
else
	fail "the packaged drop-in installs"
	printf '%s\n' "$dropin_out" | sed 's/^/     /'
fi
sbx systemctl restart $UNIT
expect_eq "restarted with the drop-in: the unit is active" "$(sbx systemctl is-active $UNIT)" active
check "licensed (active)" wait_for 60 state_is active
acl_set() { sbx getfacl -cp /var/lib/prometheus/node-exporter 2>/dev/null | grep -qx 'user:wispanel-license:rwx'; }
check "the drop-in's ExecStartPre= gave the daemon's user write access (ACL)" acl_set
check "the metrics textfile is written" wait_for 10 sbx test -s "$TEXTFILE"
expect_eq "the textfile is mode 0644, owned by the daemon's user" \
	"$(sbx stat -c '%a %U' "$TEXTFILE" 2>&1)" "644 wispanel-license"
check "no temporary file is left beside it" eval \
	'[ "$(sbx find /var/lib/prometheus/node-exporter -name "*wispanel*" ! -name wispanel_license.prom | wc -l)" = 0 ]'
if prom_e2e_start; then
	pass "node_exporter and Prometheus started, the shipped rules loaded"
	prom_licensed() {
		[ "$(prom_e2e_query wispanel_license_licensed | jq -r '.data.result[0].value[1]')" = 1 ]
	}
	check "Prometheus scrapes wispanel_license_licensed 1 through node_exporter" wait_for 30 prom_licensed
	prom_e2e_query wispanel_license_licensed | jq -c '.data.result' | sed 's/^/     /'
	not_licensed_alerts() {
		prom_e2e_get api/v1/alerts | jq '[.data.alerts[] | select(.labels.alertname == "WispanelLicenseNotLicensed")] | length'
	}
	expect_eq "while licensed, WispanelLicenseNotLicensed is neither pending nor firing" "$(not_licensed_alerts)" 0
	sim POST /_sim/license "{\"license_key\": \"$KEY\", \"behaviour\": \"expired\"}" >/dev/null
	sbx wispanel-license check >/dev/null 2>&1
	t_expired=$(now_ms)
	expect_eq "the portal expires the licence: state expired" "$(licence_state)" expired
	rule_for=$(prom_e2e_get api/v1/rules |
		jq -r '[.data.groups[].rules[] | select(.name == "WispanelLicenseNotLicensed") | .duration][0]')
	if alerts=$(prom_e2e_wait_alert WispanelLicenseNotLicensed 180); then
		t_fired=$(now_ms)
		ALERT_AFTER=$(elapsed "$t_expired" "$t_fired")
		pass "WispanelLicenseNotLicensed fires in /api/v1/alerts"
		note "state expired -> alert firing: $ALERT_AFTER s (for: ${rule_for:-?} s; scrape and evaluation every $PROM_E2E_INTERVAL)"
		note "/api/v1/alerts:"
		printf '%s\n' "$alerts" | sed 's/^/     /'
		check "it names the state (expired) and this host's instance" eval \
			'jq -e ".data.alerts[] | select(.labels.alertname == \"WispanelLicenseNotLicensed\" and .state == \"firing\" and .labels.state == \"expired\" and .labels.instance == \"127.0.0.1:$PROM_E2E_NE_PORT\")" <<<"$alerts" >/dev/null'
		check "it waited for its for: (${rule_for:-?} s)" awk -v t="$ALERT_AFTER" -v f="${rule_for:-60}" 'BEGIN { exit !(t >= f) }'
	else
		fail "WispanelLicenseNotLicensed fires in /api/v1/alerts within 180 s"
	fi
else
	fail "node_exporter and Prometheus started, the shipped rules loaded"
fi
prom_e2e_stop
shutdown_sandbox
fi

if tier_only E; then
encrypted_key_tier
fi

# ==========================================================================
ended=$(now_ms)
group "figures"
echo "systemctl start -> active:      ${START_TO_ACTIVE:-?} s"
echo "dpkg -i -> licensed status:     ${DPKG_TO_LICENSED:-?} s"
echo "systemctl stop:                 ${STOP_TIME:-?} s"
echo "systemd-analyze security:       ${exposure:-?}"
echo "expired -> alert firing:        ${ALERT_AFTER:-?} s"
echo "tier wall time:                 $(elapsed "$started" "$ended") s"
echo
[ "$SKIPPED" = 0 ] || printf '%d skipped (see the SKIP lines)\n' "$SKIPPED"
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" = 0 ]
