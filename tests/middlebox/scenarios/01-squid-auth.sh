# shellcheck shell=bash
# (1) Debian's squid as a CONNECT proxy with basic authentication
# (basic_ncsa_auth): right credentials → active, `portal.proxy` masked; no
# credentials → doctor says the proxy requires authentication; wrong ones →
# doctor says the proxy rejected the credentials given; the daemon is never
# marked unlicensed for it (a tunnel refused before anything was sent).

SQUID_AUTH=/usr/lib/squid/basic_ncsa_auth

# start_squid DIR [extra squid.conf lines]: squid in the foreground (-N) on a
# free port of lo, user "mb" / password "Pw7right"; sets SQUID_PORT.
start_squid() {
    local d=$1 extra=${2:-}
    mkdir -p "$d"
    # squid drops to the user proxy: it must reach its files.
    chmod o+x "$work" "$(dirname "$d")"
    printf 'mb:%s\n' "$(openssl passwd -apr1 Pw7right)" >"$d/passwd"
    SQUID_PORT=$(free_port)
    cat >"$d/squid.conf" <<CONF
http_port 127.0.0.1:$SQUID_PORT
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log stdio:$d/access.log
cache_store_log none
netdb_filename none
coredump_dir $d
pinger_enable off
shutdown_lifetime 0 seconds
cache deny all
auth_param basic program $SQUID_AUTH $d/passwd
auth_param basic realm middlebox
acl authed proxy_auth REQUIRED
$extra
http_access allow authed
http_access deny all
CONF
    chown -R proxy "$d"
    squid -N -f "$d/squid.conf" >"$d/squid.out" 2>&1 &
    pids+=($!)
    SQUID_PID=$!
    wait_for 20 "curl -s -o /dev/null --noproxy '' -x http://127.0.0.1:$SQUID_PORT http://127.0.0.1:1/ 2>/dev/null"
}

# squid_case NAME PROXY_URL: the daemon and doctor through squid.
squid_case() {
    local d=$work/squid-$1 proxy=$2
    write_config "$d" "$SIM_URL" "ca_file = \"$SIM_CA\"
proxy = \"$proxy\""
    start_daemon "$d" || errs+=("[$1: daemon socket]")
}

mb_squid_auth() {
    if ! command -v squid >/dev/null || [ ! -x "$SQUID_AUTH" ]; then
        skip squid-auth "squid (with basic_ncsa_auth) not installed"
        return
    fi
    if ! command -v openssl >/dev/null; then skip squid-auth "openssl not installed"; return; fi
    start_sim "$work/squid-sim" || { errs+=("[simulator did not start]"); result squid-auth "x"; return; }
    start_squid "$work/squid" || { errs+=("[squid did not start]"); result squid-auth "x"; return; }
    local d pu="http://127.0.0.1:$SQUID_PORT"

    # Right credentials: active through the tunnel, the proxy masked.
    d=$work/squid-right
    squid_case right "http://mb:Pw7right@127.0.0.1:$SQUID_PORT"
    wait_for 20 "[ \"\$(status_field '$d' 'd[\"license\"][\"state\"]')\" = active ]" || errs+=("[right: not active]")
    local shown
    shown=$(status_field "$d" 'd["portal"]["proxy"]')
    case "$shown" in *Pw7right*) errs+=("[right: portal.proxy shows the password: $shown]") ;; esac
    expect "right: portal.proxy (masked)" "$shown" "http://mb:****@127.0.0.1:$SQUID_PORT"
    grep -q "Pw7right" "$d/journal.jsonl" "$d/daemon.stderr" && errs+=("[right: the password is in the log]")
    doctor "$d"
    grep -q "Pw7right" "$d/doctor.txt" && errs+=("[right: doctor shows the password]")
    stop_pid "$DAEMON_PID"

    # No credentials, then wrong ones: a refused tunnel, never unlicensed.
    local c
    for c in none wrong; do
        d=$work/squid-$c
        if [ $c = none ]; then squid_case $c "$pu"; else squid_case $c "http://mb:Pw7wrong@127.0.0.1:$SQUID_PORT"; fi
        wait_for 20 "[ \"\$(status_field '$d' 'd[\"portal\"][\"consecutive_failures\"]')\" -ge 2 ] 2>/dev/null" ||
            errs+=("[$c: no failures seen]")
        expect "$c: state" "$(status_field "$d" 'd["license"]["state"]')" unknown
        expect "$c: last_error.kind" "$(status_field "$d" 'd["portal"]["last_error"]["kind"]')" connect
        expect "$c: activation_in_doubt" "$(status_field "$d" 'd["portal"]["activation_in_doubt"]')" false
        expect "$c: warnings" "$(status_field "$d" '[w["code"] for w in d["warnings"]]')" '[]'
        expect_journal "$c: journal" "$d" "$MID_UNREACHABLE" WISPANEL_ENDPOINT=activate WISPANEL_ERROR_KIND=connect
        grep -q "Pw7wrong" "$d/journal.jsonl" "$d/daemon.stderr" && errs+=("[$c: the password is in the log]")
        doctor "$d"
        expect "$c: doctor exit" "$DOCTOR_RC" 2
        if [ $c = none ]; then
            expect_grep "none: doctor names the cause" "the proxy requires authentication" "$d/doctor.txt"
        else
            expect_grep "wrong: doctor names the cause" "the proxy rejected the credentials given" "$d/doctor.txt"
        fi
        stop_pid "$DAEMON_PID"
    done
    # squid's own log (complete once it has stopped): tunnels for "mb", 407s.
    stop_pid "$SQUID_PID"
    expect_grep "squid tunnelled" "TCP_TUNNEL/200 .*CONNECT 127.0.0.1:$SIM_PORT mb " "$work/squid/access.log"
    expect_grep "squid refused" "TCP_DENIED/407 .*CONNECT 127.0.0.1:$SIM_PORT" "$work/squid/access.log"
    result squid-auth "squid basic auth: right → active, proxy masked; none → requires authentication; wrong → rejected the credentials; never unlicensed, nothing in doubt"
}
register mb_squid_auth
