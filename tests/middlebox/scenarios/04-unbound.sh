# shellcheck shell=bash
# (4) Debian's unbound as the host's resolver (/etc/resolv.conf bind-mounted
# inside the tier's mount namespace): a name it answers NXDOMAIN for, a zone
# it REFUSES, and a zone forwarded to a dead forwarder (the resolver answers
# nothing). The daemon: `connect` or `timeout`, never a verdict; doctor tells
# "no such name" from "the resolver does not answer".

# silent_udp ADDR PORT READY: a "forwarder" that reads queries and never answers.
silent_udp() {
    python3 -c 'import socket,sys
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
t=socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((sys.argv[1], int(sys.argv[2]))); t.listen(64)
open(sys.argv[3], "w").close()
while True: s.recvfrom(4096)' "$@" &
    pids+=($!)
}

mb_unbound() {
    if ! command -v unbound >/dev/null; then skip unbound "unbound not installed"; return; fi
    local d=$work/unbound
    mkdir -p "$d"
    silent_udp 127.0.0.2 53 "$d/silent.ready"
    wait_for 10 "[ -e '$d/silent.ready' ]" || errs+=("[silent forwarder did not start]")
    cat >"$d/unbound.conf" <<CONF
server:
    interface: 127.0.0.1
    port: 53
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$d"
    pidfile: ""
    use-syslog: no
    logfile: "$d/unbound.log"
    verbosity: 1
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    local-zone: "nx.test." static
    local-zone: "refused.test." refuse
    local-zone: "ok.test." static
    local-data: "portal.ok.test. A 127.0.0.1"
remote-control:
    control-enable: no
forward-zone:
    name: "dead.mbtier."
    forward-addr: 127.0.0.2@53
CONF
    unbound -d -c "$d/unbound.conf" >"$d/unbound.out" 2>&1 &
    pids+=($!)
    # glibc gives up on a silent resolver after 2 tries of 2 s (its default
    # is 2 x 5 s; a blocked lookup holds the daemon's and doctor's exit until
    # it returns). doctor reads the same options and waits as long, plus 1 s,
    # so "does not answer" is glibc's verdict; a refusal comes back at once.
    printf 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n' >"$d/resolv.conf"
    mount --bind "$d/resolv.conf" /etc/resolv.conf || {
        skip unbound "cannot bind-mount /etc/resolv.conf"
        return
    }
    wait_for 20 "getent hosts portal.ok.test >/dev/null" || errs+=("[unbound does not answer portal.ok.test]")
    start_sim "$d/sim" || errs+=("[simulator did not start]")

    local c host kind pat
    for c in nx refused dead; do
        host=portal.$c.test
        [ $c = dead ] && host=portal.dead.mbtier # (unbound answers all of .test itself)
        local cd=$d/$c
        write_config "$cd" "https://$host:$SIM_PORT" "ca_file = \"$SIM_CA\""
        start_daemon "$cd" || errs+=("[$c: daemon socket]")
        wait_for 25 "[ \"\$(status_field '$cd' 'd[\"portal\"][\"consecutive_failures\"]')\" -ge 2 ] 2>/dev/null" ||
            errs+=("[$c: no failures seen]")
        expect "$c: state" "$(status_field "$cd" 'd["license"]["state"]')" unknown
        # Nothing left the host, so the activate is not in doubt: a lookup
        # that fails or times out ends within the connect's own deadline
        # (portal::connect_timeout), which reqwest marks as a connect error.
        expect "$c: activation_in_doubt" "$(status_field "$cd" 'd["portal"]["activation_in_doubt"]')" false
        kind=$(status_field "$cd" 'd["portal"]["last_error"]["kind"]')
        case "$c:$kind" in nx:connect | refused:connect | dead:connect | dead:timeout) ;;
            *) errs+=("[$c: last_error.kind '$kind']") ;; esac
        expect_journal "$c: journal" "$cd" "$MID_UNREACHABLE" WISPANEL_ENDPOINT=activate "WISPANEL_ERROR_KIND=$kind"
        doctor "$cd"
        expect "$c: doctor exit" "$DOCTOR_RC" 2
        case $c in
            nx) pat="fail +portal DNS: $host: .*(Name or service not known|No address).*the name does not resolve" ;;
            refused) pat="fail +portal DNS: $host: .*Temporary failure in name resolution.*the resolver refused or failed the query" ;;
            dead) pat="fail +portal DNS: $host: .*(Temporary failure in name resolution|no answer within).*the resolver does not answer" ;;
        esac
        expect_grep "$c: doctor names the cause" "$pat" "$cd/doctor.txt"
        stop_pid "$DAEMON_PID"
    done
    expect "requests at the simulator" "$(sim_count)" 0
    umount /etc/resolv.conf
    result unbound "unbound NXDOMAIN / REFUSED / dead forwarder: connect or timeout, never a verdict; doctor: the name does not resolve vs the resolver refused vs the resolver does not answer"
}
register mb_unbound
