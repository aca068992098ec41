# shellcheck shell=bash
# (7) The host's clock under libfaketime, stepped while the daemon runs
# (+2 h past a deadline, +1 day, -1 day), with the portal up and down: no
# early lapse, `clock_skew` as SPEC says (the field is the last answer's,
# the warning the estimate), grace and pacing follow the portal's time, no
# request burst; doctor under the shifted clock names the skew.
#
# libfaketime shifts CLOCK_REALTIME (Rust's SystemTime) through glibc, read
# again from a timestamp file on every call (FAKETIME_NO_CACHE=1); the
# monotonic clocks (tokio's timers) and CLOCK_BOOTTIME (the daemon's steady
# clock) stay real (FAKETIME_DONT_FAKE_MONOTONIC=1). The simulator runs on
# the real clock: it is the portal's time.

faketime_lib() {
    local f
    for f in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}

# ft DIR OFFSET: steps the daemon's (and doctor's) clock to real + OFFSET.
ft() { echo "$2" >"$1/faketime"; }
# The environment that puts a program under the file's clock.
ft_env() {
    echo "LD_PRELOAD=$FT_LIB FAKETIME_TIMESTAMP_FILE=$1/faketime FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1"
}

# A status field as text (`status_field` of lib.sh, under a short name).
sf() { status_field "$1" "$2"; }
codes() { sf "$1" '",".join(w["code"] for w in d["warnings"])'; }
skew_msg() { sf "$1" '[w["message"] for w in d["warnings"] if w["code"]=="clock_skew"][0]'; }
# Seconds from the real clock to a time field of the status (RFC 3339).
secs_from_now() {
    python3 -c 'import sys,datetime,time
t=datetime.datetime.fromisoformat(sys.argv[1].replace("Z","+00:00")).timestamp()
print(round(t-time.time()))' "$1"
}
within() { # within WHAT VALUE LO HI
    [ "$2" -ge "$3" ] 2>/dev/null && [ "$2" -le "$4" ] 2>/dev/null ||
        errs+=("[$1: $2 not within [$3, $4]]")
}

# clock_start NAME VALID_FOR_SECS VALIDATE_INTERVAL: the simulator (terms
# valid for VALID_FOR_SECS) and the daemon under faketime at +0, active.
clock_start() {
    local d=$work/$1
    mkdir -p "$d/sim"
    printf '[terms]\nvalid_for_secs = %s\n' "$2" >"$d/sim/scenario.toml"
    start_sim "$d/sim" --scenario "$d/sim/scenario.toml" || {
        errs+=("[simulator did not start]")
        return 1
    }
    write_config "$d" "$SIM_URL" "ca_file = \"$SIM_CA\""
    sed -i "s/^validate_interval = .*/validate_interval = \"$3\"/" "$d/license.toml"
    ft "$d" "+0"
    # shellcheck disable=SC2046
    start_daemon "$d" $(ft_env "$d") || errs+=("[daemon socket]")
    wait_for 15 "[ \"\$(sf '$d' 'd[\"license\"][\"state\"]')\" = active ]" || {
        errs+=("[not active at +0]")
        return 1
    }
}

outage() { # outage MODE: the simulator's outage (drop: connections closed unanswered)
    curl -sk --noproxy '*' -X POST "$SIM_URL/_sim/outage" -d "{\"mode\":\"$1\"}" >/dev/null
}

check() { "$bindir/wispanel-license" --config "$1/license.toml" check >/dev/null 2>&1; }

# doctor under the shifted clock: exit 2 (the skew is over 300 s) and the
# clock line names it.
doctor_shifted() { # doctor_shifted DIR PATTERN
    # shellcheck disable=SC2046
    env -u HTTPS_PROXY -u ALL_PROXY $(ft_env "$1") "$bindir/wispanel-license" \
        --config "$1/license.toml" doctor >"$1/doctor.txt" 2>&1
    expect "doctor exit" "$?" 2
    expect_grep "doctor names the skew" "clock vs portal.*$2" "$1/doctor.txt"
}

# +2 h past valid_until (1 h), the portal down: no lapse; its answer, once
# up, measures the skew.
mb_clock_deadline() {
    if ! FT_LIB=$(faketime_lib); then
        skip clock-deadline "libfaketime not installed"
        return
    fi
    local d=$work/clock-deadline n grace
    clock_start clock-deadline 3600 1h || { result clock-deadline "x"; return; }
    grace=$(sf "$d" 'd["license"]["grace_until"]')
    within "grace_until at +0 (valid_until, 1 h)" "$(secs_from_now "$grace")" 3590 3600
    outage drop
    n=$(sim_count)
    ft "$d" "+2h"
    # A status request notices the step.
    expect "state after +2 h" "$(sf "$d" 'd["license"]["state"]')" active
    expect "grace_until after +2 h (as sent)" "$(sf "$d" 'd["license"]["grace_until"]')" "$grace"
    expect "clock_skew_seconds (the last answer's)" "$(sf "$d" 'd["portal"]["clock_skew_seconds"]')" 0
    expect "warnings after +2 h" "$(codes "$d")" clock_skew
    expect "clock_skew message" "$(skew_msg "$d")" \
        "this host's clock is 2 h ahead of the portal's (estimated: it was set forward by 2 h since the portal's last answer)"
    expect_grep "log: the step" "the wall clock was set forward by 7200 s" "$d/daemon.log"
    # A check with the portal down: grace, not lapsed (valid_until + the
    # skew on record is 1 h behind the stepped clock).
    check "$d"
    expect "state after a failed check" "$(sf "$d" 'd["license"]["state"]')" grace
    expect "last_error.kind" "$(sf "$d" 'd["portal"]["last_error"]["kind"]')" connect
    expect "warnings in grace" "$(codes "$d")" grace_ending,clock_skew
    expect_journal "journal: portal unreachable" "$d" "$MID_UNREACHABLE" WISPANEL_ENDPOINT=validate WISPANEL_ERROR_KIND=connect
    expect_journal "journal: state changed to grace" "$d" "$MID_STATE_CHANGED" WISPANEL_LICENSE_STATE=grace
    expect_grep "log: state changed" "licence state changed from active to grace" "$d/daemon.log"
    grep -q "to lapsed" "$d/daemon.log" && errs+=("[the log says lapsed]")
    # The portal up again: the daemon's own retry (back-off: grace ends
    # within 24 h) gets an answer that measures the skew.
    outage none
    wait_for 15 "[ \"\$(sf '$d' 'd[\"portal\"][\"clock_skew_seconds\"]')\" != 0 ]" ||
        errs+=("[no answer once up]")
    expect "state once up" "$(sf "$d" 'd["license"]["state"]')" active
    within "clock_skew_seconds measured" "$(sf "$d" 'd["portal"]["clock_skew_seconds"]')" 7199 7201
    expect "clock_skew message once measured" "$(skew_msg "$d")" \
        "this host's clock is 2 h ahead of the portal's"
    within "new grace_until (the portal's valid_until)" \
        "$(secs_from_now "$(sf "$d" 'd["license"]["grace_until"]')")" 3580 3600
    # Requests: the step made none; the check and the retries until up.
    within "requests (no burst)" "$(( $(sim_count) - n ))" 1 8
    doctor_shifted "$d" "7(199|200|201) s ahead of"
    stop_pid "$DAEMON_PID"
    result clock-deadline "+2 h past valid_until, portal down: no lapse, grace, clock_skew estimated then measured, no burst, doctor names it"
}

# +1 day then -1 day in grace (valid_until 7 days away) with the portal
# down: grace paced at validate_interval in elapsed time across both steps
# (no burst after +1 day, no stall of a day after -1 day); up again: the
# skew measured, active.
mb_clock_day() {
    if ! FT_LIB=$(faketime_lib); then
        skip clock-day "libfaketime not installed"
        return
    fi
    local d=$work/clock-day n fails nv
    clock_start clock-day 604800 10s || { result clock-day "x"; return; }
    local grace
    grace=$(sf "$d" 'd["license"]["grace_until"]')
    outage drop
    # Two quick retries fail, then grace pacing: one try per 10 s.
    wait_for 20 "[ \"\$(sf '$d' 'd[\"portal\"][\"consecutive_failures\"]')\" -ge 3 ] 2>/dev/null" ||
        errs+=("[no paced failures]")
    expect "state in grace" "$(sf "$d" 'd["license"]["state"]')" grace
    within "paced: next validate" "$(secs_from_now "$(sf "$d" 'd["portal"]["next_validate_at"]')")" 0 10
    ft "$d" "+1d"
    fails=$(sf "$d" 'd["portal"]["consecutive_failures"]')
    expect "state after +1 day" "$(sf "$d" 'd["license"]["state"]')" grace
    expect "grace_until after +1 day" "$(sf "$d" 'd["license"]["grace_until"]')" "$grace"
    expect "warnings after +1 day" "$(codes "$d")" clock_skew
    expect "clock_skew message +1 day" "$(skew_msg "$d")" \
        "this host's clock is 1 day ahead of the portal's (estimated: it was set forward by 1 day since the portal's last answer)"
    # The plan moved with the clock: still at most 10 s away in real time.
    nv=$(secs_from_now "$(sf "$d" 'd["portal"]["next_validate_at"]')")
    within "next validate after +1 day" "$((nv - 86400))" 0 10
    sleep 2 # no burst: a step makes no request
    within "tries within 2 s of the step" "$(( $(sf "$d" 'd["portal"]["consecutive_failures"]') - fails ))" 0 1
    ft "$d" "-1d"
    expect "state after -1 day" "$(sf "$d" 'd["license"]["state"]')" grace
    expect "warnings after -1 day" "$(codes "$d")" clock_skew
    expect "clock_skew message -1 day" "$(skew_msg "$d")" \
        "this host's clock is 1 day behind the portal's (estimated: it was set back by 1 day since the portal's last answer)"
    nv=$(secs_from_now "$(sf "$d" 'd["portal"]["next_validate_at"]')")
    within "next validate after -1 day" "$((nv + 86400))" 0 10
    # No stall: the next paced try within 10 s of real time, not a day.
    fails=$(sf "$d" 'd["portal"]["consecutive_failures"]')
    wait_for 15 "[ \"\$(sf '$d' 'd[\"portal\"][\"consecutive_failures\"]')\" -gt $fails ] 2>/dev/null" ||
        errs+=("[no paced try after -1 day: stalled]")
    expect "log: the steps" "$(grep -c 'the wall clock was set' "$d/daemon.log")" 2
    # Up again: the next paced try is answered.
    n=$(sim_count)
    outage none
    wait_for 15 "[ \"\$(sf '$d' 'd[\"license\"][\"state\"]')\" = active ]" || errs+=("[not active once up]")
    within "clock_skew_seconds measured" "$(sf "$d" 'd["portal"]["clock_skew_seconds"]')" -86401 -86399
    expect "clock_skew message measured" "$(skew_msg "$d")" "this host's clock is 1 day behind the portal's"
    within "grace_until (valid_until as sent, the portal's clock)" \
        "$(secs_from_now "$(sf "$d" 'd["license"]["grace_until"]')")" 604780 604800
    within "requests once up (no burst)" "$(( $(sim_count) - n ))" 1 2
    doctor_shifted "$d" "86(39[89]|40[01]) s behind"
    stop_pid "$DAEMON_PID"
    result clock-day "+1 day, -1 day in grace, portal down: paced in elapsed time (no burst, no stall), clock_skew estimated then measured, doctor names it"
}
register mb_clock_deadline
register mb_clock_day
