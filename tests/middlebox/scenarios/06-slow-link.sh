# shellcheck shell=bash
# (6) A slow link: `tc qdisc tbf` at 256 kbit/s on lo (its MTU set to 1500
# first, or the bucket drops everything). `update download` of a 128 KiB
# release takes seconds, more than request_timeout (2 s), and finishes with
# a verified file and nothing else left in its directory; a licence check
# still fits request_timeout (the daemon stays active, no error).

mb_slow_link() {
    if ! command -v tc >/dev/null; then skip slow-link "tc (iproute2) not installed"; return; fi
    local d=$work/slow-link mtu
    mkdir -p "$d/dl"
    printf 'release_size = 131072\n' >"$d/scenario.toml"
    start_sim "$d/sim" --scenario "$d/scenario.toml" || { errs+=("[simulator did not start]"); result slow-link "x"; return; }
    write_config "$d" "$SIM_URL" "ca_file = \"$SIM_CA\""
    start_daemon "$d" || errs+=("[daemon socket]")
    wait_for 20 "[ \"\$(status_field '$d' 'd[\"license\"][\"state\"]')\" = active ]" || errs+=("[not active]")
    mtu=$(cat /sys/class/net/lo/mtu)
    ip link set lo mtu 1500
    if ! tc qdisc add dev lo root tbf rate 256kbit burst 16kb limit 512kb 2>"$d/tc.err"; then
        ip link set lo mtu "$mtu"
        stop_pid "$DAEMON_PID"
        skip slow-link "cannot add a tbf qdisc: $(head -1 "$d/tc.err")"
        return
    fi
    local t0 t1 rc
    t0=$(date +%s%N)
    (cd "$d/dl" && "$bindir/wispanel-license" --config "$d/license.toml" update download --dir "$d/dl" \
        >"$d/download.out" 2>"$d/download.err")
    rc=$?
    t1=$(date +%s%N)
    SLOW_DOWNLOAD_MS=$(((t1 - t0) / 1000000))
    if [ "$rc" = 0 ]; then
        SLOW_OUTCOME="finished in $SLOW_DOWNLOAD_MS ms"
        expect "downloaded file" "$(cd "$d/dl" && ls -A)" "wispanel-1.5.0.tar.gz"
        expect "file size" "$(stat -c %s "$d/dl/wispanel-1.5.0.tar.gz" 2>/dev/null)" 131072
        expect_grep "path printed" "$d/dl/wispanel-1.5.0.tar.gz" "$d/download.out"
        # The link was slow: 128 KiB at 32 KB/s cannot take under 2 s.
        [ "$SLOW_DOWNLOAD_MS" -ge 2000 ] || errs+=("[download took $SLOW_DOWNLOAD_MS ms: the link was not slow]")
    else
        # Giving up is allowed only as a stall of request_timeout, with
        # nothing left behind.
        SLOW_OUTCOME="gave up after $SLOW_DOWNLOAD_MS ms (a stall)"
        expect_grep "gives up on a stall" "no data for 2 s \\(request_timeout\\).*partial file was removed" "$d/download.err"
        expect "nothing left in the directory" "$(cd "$d/dl" && ls -A)" ""
    fi
    # A licence check through the same slow link.
    "$bindir/wispanel-license" --config "$d/license.toml" check >"$d/check.out" 2>&1 ||
        errs+=("[check failed: $(head -1 "$d/check.out")]")
    expect "state after check" "$(status_field "$d" 'd["license"]["state"]')" active
    expect "last_error after check" "$(status_field "$d" 'd["portal"]["last_error"]')" null
    tc qdisc del dev lo root
    ip link set lo mtu "$mtu"
    stop_pid "$DAEMON_PID"
    result slow-link "tbf 256 kbit/s: update download of 128 KiB $SLOW_OUTCOME, a verified file or none; a licence check fits request_timeout"
}
register mb_slow_link
