# shellcheck shell=bash
# Prometheus end to end: a function library for the systemd test tier.
#
# Runs Debian's node_exporter (textfile collector on) and Debian's Prometheus
# (scraping it, with the shipped alerting rules loaded) beside wispanel-licensed
# in a running sandbox, and waits for an alert to fire, so that a test can turn
# the licence to `expired` in the portal simulator and see
# WispanelLicenseNotLicensed in Prometheus's /api/v1/alerts.
#
# It installs nothing. The sandbox needs:
#   apt-get install -y prometheus prometheus-node-exporter curl
# (Debian's packages; their own units may stay stopped, these functions start
# their own copies on other ports). python3 is used in the sandbox to find
# free ports when present, else `ss` (iproute2). On the calling side, python3
# reads the alert list.
#
# The daemon must write its metrics into node_exporter's textfile directory:
# metrics_textfile = "/var/lib/prometheus/node-exporter/wispanel_license.prom"
# in its configuration, and the packaged drop-in in place
# (prom_e2e_install_dropin does that from the installed package) before the
# daemon (re)starts.
#
# Source it, then:
#   IN="nsenter -t $SANDBOX_PID -a -r -w"   # how to run a command in the sandbox
#                                           # (empty: on this machine)
#   prom_e2e_install_dropin         # optional, see above; restart the daemon after
#   prom_e2e_start                  # config, node_exporter, Prometheus; waits until ready
#   prom_e2e_wait_alert WispanelLicenseNotLicensed 150
#                                   # polls /api/v1/alerts until that alert is
#                                   # firing (at most 150 s), prints the alert
#                                   # list as JSON; returns 1 on timeout
#   prom_e2e_stop                   # stops both, removes the working directory
#
# Settings (environment, all optional):
#   PROM_E2E_RULES         rules file inside the sandbox
#                          (default: the packaged /usr/share/wispanel-license/
#                          prometheus/wispanel-license.rules.yml)
#   PROM_E2E_TEXTFILE_DIR  node_exporter's textfile directory inside the sandbox
#                          (default: Debian's /var/lib/prometheus/node-exporter,
#                          where metrics_textfile must point)
#   PROM_E2E_INTERVAL      scrape and rule evaluation interval (default 2s)
#   PROM_E2E_USER          user that both run as (default prometheus, Debian's:
#                          so the test also proves that the daemon's file is
#                          readable by node_exporter's user)
#   PROM_E2E_SYSTEMD       1 (default): start both as transient units with
#                          systemd-run; 0: as background processes of this shell
#                          (for a machine without systemd; IN must then be empty)
#
# After prom_e2e_start: PROM_E2E_PORT (Prometheus), PROM_E2E_NE_PORT
# (node_exporter), PROM_E2E_DIR (working directory inside the sandbox). All
# listen on 127.0.0.1 only, on ports that were free when chosen.

: "${IN:=}"
: "${PROM_E2E_RULES:=/usr/share/wispanel-license/prometheus/wispanel-license.rules.yml}"
: "${PROM_E2E_TEXTFILE_DIR:=/var/lib/prometheus/node-exporter}"
: "${PROM_E2E_INTERVAL:=2s}"
: "${PROM_E2E_USER:=prometheus}"
: "${PROM_E2E_SYSTEMD:=1}"
PROM_E2E_PORT=
PROM_E2E_NE_PORT=
PROM_E2E_DIR=
PROM_E2E_PIDS=()

prom_e2e_log() { printf 'prometheus-e2e: %s\n' "$*" >&2; }

# prom_e2e_in CMD...: runs CMD in the sandbox.
prom_e2e_in() {
	# shellcheck disable=SC2086 # IN is a command prefix, split on purpose
	$IN "$@"
}

# prom_e2e_free_ports N: prints N distinct loopback ports that are free in the
# sandbox now (all bound at once, then released).
prom_e2e_free_ports() {
	local n=$1
	if prom_e2e_in python3 -c '' 2>/dev/null; then
		prom_e2e_in python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$n"
		return
	fi
	local used ports=() p
	used=$(prom_e2e_in ss -Hltn) ||
		{ prom_e2e_log "neither python3 nor ss in the sandbox"; return 1; }
	used=$(awk '{ n = split($4, a, ":"); print a[n] }' <<<"$used")
	while [ ${#ports[@]} -lt "$n" ]; do
		p=$((20000 + RANDOM % 40000))
		grep -qx "$p" <<<"$used" && continue
		[[ " ${ports[*]} " == *" $p "* ]] && continue
		ports+=("$p")
	done
	echo "${ports[*]}"
}

# prom_e2e_spawn NAME CMD...: starts CMD as PROM_E2E_USER in the sandbox.
prom_e2e_spawn() {
	local name=$1
	shift
	if [ "$PROM_E2E_SYSTEMD" = 1 ]; then
		prom_e2e_in systemd-run --quiet --collect --unit="$name" \
			-p User="$PROM_E2E_USER" -p WorkingDirectory="$PROM_E2E_DIR" -- "$@"
	else
		[ -z "$IN" ] || { prom_e2e_log "PROM_E2E_SYSTEMD=0 needs an empty IN"; return 1; }
		setpriv --reuid="$PROM_E2E_USER" --regid="$PROM_E2E_USER" --init-groups \
			"$@" >"$PROM_E2E_DIR/$name.log" 2>&1 &
		PROM_E2E_PIDS+=($!)
	fi
}

# prom_e2e_install_dropin: installs the packaged drop-in that lets
# wispanel-licensed write into the textfile directory (as the README's
# "Monitoring a fleet" says; its ExecStartPre= sets the ACL at each start) and
# reloads systemd. Restarting the daemon is left to the caller.
prom_e2e_install_dropin() {
	local share=/usr/share/wispanel-license/systemd
	prom_e2e_in install -D -m644 "$share/node-exporter-textfile.conf" \
		/etc/systemd/system/wispanel-licensed.service.d/node-exporter-textfile.conf &&
		prom_e2e_in systemctl daemon-reload
}

# prom_e2e_get PATH: GET http://127.0.0.1:PROM_E2E_PORT/PATH from the sandbox.
prom_e2e_get() {
	prom_e2e_in curl -fsS --max-time 5 "http://127.0.0.1:$PROM_E2E_PORT/$1"
}

# prom_e2e_start: writes the configuration and starts node_exporter and
# Prometheus; returns once Prometheus is ready and has loaded the rules.
prom_e2e_start() {
	local ports
	prom_e2e_in test -r "$PROM_E2E_RULES" ||
		{ prom_e2e_log "no rules file $PROM_E2E_RULES in the sandbox"; return 1; }
	prom_e2e_in test -d "$PROM_E2E_TEXTFILE_DIR" ||
		{ prom_e2e_log "no textfile directory $PROM_E2E_TEXTFILE_DIR in the sandbox"; return 1; }
	PROM_E2E_DIR=$(prom_e2e_in mktemp -d /var/tmp/wispanel-prom-e2e.XXXXXX) || return 1
	prom_e2e_in chown "$PROM_E2E_USER:" "$PROM_E2E_DIR" || return 1
	ports=$(prom_e2e_free_ports 2) || return 1
	read -r PROM_E2E_PORT PROM_E2E_NE_PORT <<<"$ports"

	prom_e2e_in tee "$PROM_E2E_DIR/prometheus.yml" >/dev/null <<EOF
global:
  scrape_interval: $PROM_E2E_INTERVAL
  scrape_timeout: $PROM_E2E_INTERVAL
  evaluation_interval: $PROM_E2E_INTERVAL
rule_files:
  - $PROM_E2E_RULES
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:$PROM_E2E_NE_PORT"]
EOF
	prom_e2e_in promtool check config "$PROM_E2E_DIR/prometheus.yml" >&2 || return 1

	prom_e2e_spawn "wispanel-e2e-node-exporter-$PROM_E2E_NE_PORT" \
		/usr/bin/prometheus-node-exporter \
		--web.listen-address="127.0.0.1:$PROM_E2E_NE_PORT" \
		--collector.disable-defaults --collector.textfile \
		--collector.textfile.directory="$PROM_E2E_TEXTFILE_DIR" || return 1
	prom_e2e_spawn "wispanel-e2e-prometheus-$PROM_E2E_PORT" \
		/usr/bin/prometheus \
		--config.file="$PROM_E2E_DIR/prometheus.yml" \
		--storage.tsdb.path="$PROM_E2E_DIR/data" \
		--web.listen-address="127.0.0.1:$PROM_E2E_PORT" || return 1

	local deadline=$((SECONDS + 60))
	until prom_e2e_get -/ready >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] ||
			{ prom_e2e_log "Prometheus not ready on 127.0.0.1:$PROM_E2E_PORT after 60 s"; return 1; }
		sleep 0.5
	done
	until prom_e2e_get api/v1/rules | grep -q WispanelLicenseNotLicensed; do
		[ $SECONDS -lt $deadline ] || { prom_e2e_log "rules not loaded after 60 s"; return 1; }
		sleep 0.5
	done
	prom_e2e_log "Prometheus on 127.0.0.1:$PROM_E2E_PORT, node_exporter on 127.0.0.1:$PROM_E2E_NE_PORT, rules $PROM_E2E_RULES"
}

# prom_e2e_wait_alert NAME [TIMEOUT_SECONDS]: polls /api/v1/alerts until an
# alert NAME is firing; prints the alert list (JSON) and how long it took.
# Returns 1 after TIMEOUT_SECONDS (default 150), printing the last list.
prom_e2e_wait_alert() {
	local name=$1 timeout=${2:-150} started=$SECONDS body=
	while :; do
		body=$(prom_e2e_get api/v1/alerts 2>/dev/null) || body=
		if [ -n "$body" ] && python3 -c '
import json, sys
alerts = json.loads(sys.stdin.read())["data"]["alerts"]
sys.exit(0 if any(a["labels"].get("alertname") == sys.argv[1] and a["state"] == "firing"
                  for a in alerts) else 1)' "$name" <<<"$body"; then
			python3 -m json.tool <<<"$body"
			prom_e2e_log "$name firing after $((SECONDS - started)) s"
			return 0
		fi
		if [ $((SECONDS - started)) -ge "$timeout" ]; then
			prom_e2e_log "$name not firing after $timeout s; the last alert list:"
			if [ -n "$body" ]; then python3 -m json.tool <<<"$body" >&2; fi
			return 1
		fi
		sleep 1
	done
}

# prom_e2e_query EXPR: prints the result of an instant query (JSON), for
# diagnostics.
prom_e2e_query() {
	prom_e2e_in curl -fsS --max-time 5 -G --data-urlencode "query=$1" \
		"http://127.0.0.1:$PROM_E2E_PORT/api/v1/query"
}

# prom_e2e_stop: stops both and removes the working directory.
prom_e2e_stop() {
	if [ "$PROM_E2E_SYSTEMD" = 1 ]; then
		[ -z "$PROM_E2E_PORT" ] ||
			prom_e2e_in systemctl stop "wispanel-e2e-prometheus-$PROM_E2E_PORT.service" || true
		[ -z "$PROM_E2E_NE_PORT" ] ||
			prom_e2e_in systemctl stop "wispanel-e2e-node-exporter-$PROM_E2E_NE_PORT.service" || true
	else
		local pid
		for pid in "${PROM_E2E_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
		for pid in "${PROM_E2E_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
		PROM_E2E_PIDS=()
	fi
	case $PROM_E2E_DIR in
	/var/tmp/wispanel-prom-e2e.*) prom_e2e_in rm -rf "$PROM_E2E_DIR" ;;
	esac
	PROM_E2E_DIR='' PROM_E2E_PORT='' PROM_E2E_NE_PORT=''
}
