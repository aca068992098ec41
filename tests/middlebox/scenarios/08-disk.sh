# shellcheck shell=bash
# (8) A full state_dir (a small tmpfs), then a read-only one: the daemon keeps serving, warns
# `state_not_saved`, recovers when space returns; state.json stays readable.

state_json_ok() { python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null; }
has_warning() { # has_warning DIR CODE
    [ "$(status_field "$1" "'$2' in [w['code'] for w in d['warnings']]")" = true ]
}

check_until() { # check_until DIR SECS COND: `check` once a second until COND holds
    local d=$1 n=$2
    shift 2
    while [ "$n" -gt 0 ]; do
        "$bindir/wispanel-license" --config "$d/license.toml" check >/dev/null 2>&1
        eval "$@" && return 0
        sleep 1
        n=$((n - 1))
    done
    return 1
}

mb_full_disk() {
    local d=$work/full-disk
    start_sim "$d/sim" || { errs+=("[simulator did not start]"); result full-disk "x"; return; }
    write_config "$d" "$SIM_URL" "ca_file = \"$SIM_CA\""
    mount -t tmpfs -o size=64k,mode=0700 mb-state "$d/state" || {
        skip full-disk "cannot mount a tmpfs"
        return
    }
    start_daemon "$d" || errs+=("[daemon socket]")
    wait_for 15 "[ \"\$(status_field '$d' 'd[\"license\"][\"state\"]')\" = active ]" || errs+=("[not active]")
    wait_for 10 "state_json_ok '$d/state/state.json'" || errs+=("[no state.json]")
    dd if=/dev/zero of="$d/state/fill" bs=1k count=1024 2>/dev/null # fills it
    "$bindir/wispanel-license" --config "$d/license.toml" check >/dev/null 2>&1
    wait_for 10 "has_warning '$d' state_not_saved" || errs+=("[no state_not_saved warning]")
    expect "state while full" "$(status_field "$d" 'd["license"]["state"]')" active
    state_json_ok "$d/state/state.json" || errs+=("[state.json unreadable while full]")
    expect_journal "journal" "$d" "$MID_NOT_SAVED" PRIORITY=3
    expect_grep "journal message" "CANNOT SAVE THE STATE|No space" "$d/daemon.log"
    rm -f "$d/state/fill"
    "$bindir/wispanel-license" --config "$d/license.toml" check >/dev/null 2>&1
    wait_for 10 "! has_warning '$d' state_not_saved" || errs+=("[warning stays after space returned]")
    state_json_ok "$d/state/state.json" || errs+=("[state.json unreadable after]")
    # Read-only, then writable again.
    mount -o remount,ro "$d/state" || errs+=("[remount ro]")
    # A `check` within 10 s of the last manual one gets its result without a
    # new request (SPEC, POST /v1/check), so nothing is saved: ask once a
    # second until a real check has tried (and failed) to save.
    check_until "$d" 20 "has_warning '$d' state_not_saved" || errs+=("[no state_not_saved when read-only]")
    expect "state while read-only" "$(status_field "$d" 'd["license"]["state"]')" active
    state_json_ok "$d/state/state.json" || errs+=("[state.json unreadable while read-only]")
    mount -o remount,rw "$d/state" || errs+=("[remount rw]")
    "$bindir/wispanel-license" --config "$d/license.toml" check >/dev/null 2>&1
    wait_for 10 "! has_warning '$d' state_not_saved" || errs+=("[warning stays once writable]")
    stop_pid "$DAEMON_PID"
    umount "$d/state"
    result full-disk "tmpfs full, then read-only: keeps serving active, state_not_saved, recovers each time, state.json readable"
}
register mb_full_disk
