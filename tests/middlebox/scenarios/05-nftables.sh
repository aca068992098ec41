# shellcheck shell=bash
# (5) nftables between the daemon and the portal: a tcp reset (connection
# refused: nothing sent, nothing in doubt for the activate) and a drop (a
# black hole: request_timeout honoured, back-off, no burst when it opens).

fw() { # fw RULE...: one rule on output to the simulator's port
    nft add table inet mb 2>/dev/null
    nft 'add chain inet mb out { type filter hook output priority 0; }' 2>/dev/null
    nft flush chain inet mb out
    [ $# = 0 ] || nft add rule inet mb out tcp dport "$SIM_PORT" "$@"
}

nft_scenario() { # nft_scenario NAME KIND IN_DOUBT DOCTOR_PATTERN RULE...
    local name=$1 kind=$2 doubt=$3 pat=$4
    shift 4
    local d=$work/$name
    start_sim "$d/sim" || { errs+=("[simulator did not start]"); return; }
    write_config "$d" "$SIM_URL" "ca_file = \"$SIM_CA\""
    fw "$@"
    start_daemon "$d" || errs+=("[daemon socket]")
    wait_for 20 "[ \"\$(status_field '$d' 'd[\"portal\"][\"consecutive_failures\"]')\" -ge 2 ] 2>/dev/null" ||
        errs+=("[no failures seen]")
    expect "last_error.kind" "$(status_field "$d" 'd["portal"]["last_error"]["kind"]')" "$kind"
    expect "last_error.http_status" "$(status_field "$d" 'd["portal"]["last_error"]["http_status"]')" null
    expect "state" "$(status_field "$d" 'd["license"]["state"]')" unknown
    if [ "$doubt" != any ]; then
        expect "activation_in_doubt" "$(status_field "$d" 'd["portal"]["activation_in_doubt"]')" "$doubt"
        expect "warnings" "$(status_field "$d" '[w["code"] for w in d["warnings"]]')" '[]'
    fi
    expect_journal "journal" "$d" "$MID_UNREACHABLE" WISPANEL_ENDPOINT=activate "WISPANEL_ERROR_KIND=$kind"
    doctor "$d"
    expect "doctor exit" "$DOCTOR_RC" 2
    expect_grep "doctor names the cause" "$pat" "$d/doctor.txt"
    fw # open again
    wait_for 15 "[ \"\$(status_field '$d' 'd[\"license\"][\"state\"]')\" = active ]" ||
        errs+=("[not active once open]")
    local n
    n=$(sim_count)
    sleep 2 # no burst: nothing more within a validate_interval of 30 s
    # The simulator saw only what went through after opening (the firewall
    # stopped the rest before it): the one activate that settled it.
    expect "requests after opening (no burst)" "$(sim_count)" "$n"
    [ "${n:-9}" -le 2 ] 2>/dev/null || errs+=("[burst: $n requests when it opened]")
    fw
    nft delete table inet mb 2>/dev/null
    stop_pid "$DAEMON_PID"
}

mb_tcp_reset() {
    if ! command -v nft >/dev/null; then skip tcp-reset "nftables not installed"; return; fi
    nft_scenario tcp-reset connect false "refused" reject with tcp reset
    result tcp-reset "refused connect: connect, nothing in doubt, doctor names it, active when open"
}
mb_drop() {
    if ! command -v nft >/dev/null; then skip drop "nftables not installed"; return; fi
    # A connect that times out ends at the connect's own deadline
    # (portal::connect_timeout, before the request's): nothing was sent,
    # nothing in doubt.
    nft_scenario drop timeout false "packets are dropped on the way" drop
    result drop "black hole: timeout, doctor says packets are dropped, back-off, no burst when it opens"
}
register mb_tcp_reset
register mb_drop
