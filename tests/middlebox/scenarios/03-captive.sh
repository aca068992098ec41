# shellcheck shell=bash
# (3) A captive portal (or a misrouted proxy) answering `200 text/html` to
# everything: the daemon reports `malformed` and never a refusal state.

# start_captive DIR: a tiny HTTP server on lo answering every request with a
# 200 HTML login page; sets CAPTIVE_URL. Its request count in DIR/hits.
start_captive() {
    local d=$1
    mkdir -p "$d"
    cat >"$d/captive.py" <<'PY'
import http.server, sys
PAGE = b"<html><head><title>Hotel WiFi</title></head><body>Please log in</body></html>"
hits = 0
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        global hits
        hits += 1
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(PAGE)
        with open(sys.argv[2], "w") as f:
            f.write(str(hits))
    do_GET = do_POST = do_HEAD = do_PUT = answer
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("http://127.0.0.1:%d" % s.server_address[1])
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
PY
    python3 "$d/captive.py" "$d/url" "$d/hits" >"$d/captive.log" 2>&1 &
    pids+=($!)
    wait_for 20 "[ -s '$d/url' ]" || return 1
    CAPTIVE_URL=$(cat "$d/url")
}

mb_captive() {
    local d=$work/captive
    if ! command -v python3 >/dev/null; then skip captive "python3 not installed"; return; fi
    start_captive "$d/captive" || { errs+=("[captive server did not start]"); result captive "x"; return; }
    write_config "$d" "$CAPTIVE_URL"
    start_daemon "$d" || errs+=("[daemon socket]")
    wait_for 20 "[ \"\$(status_field '$d' 'd[\"portal\"][\"consecutive_failures\"]')\" -ge 2 ] 2>/dev/null" ||
        errs+=("[no failures seen]")
    expect "last_error.kind" "$(status_field "$d" 'd["portal"]["last_error"]["kind"]')" malformed
    expect "state" "$(status_field "$d" 'd["license"]["state"]')" unknown
    expect_journal "journal" "$d" "$MID_UNREACHABLE" WISPANEL_ENDPOINT=activate WISPANEL_ERROR_KIND=malformed
    # Back-off, no burst: retry_initial 1 s .. retry_max 4 s.
    local h1 h2
    h1=$(cat "$d/captive/hits")
    sleep 2
    h2=$(cat "$d/captive/hits")
    [ $((h2 - h1)) -le 2 ] 2>/dev/null || errs+=("[burst: $((h2 - h1)) requests in 2 s]")
    doctor "$d"
    # doctor's own round trip reads the body: HTML, not a JSON object, is
    # not the portal's (a failure, exit 2); the licence-state line, from the
    # daemon, shows its malformed.
    expect "doctor exit" "$DOCTOR_RC" 2
    expect_grep "doctor names the cause" "fail +portal HTTP: .*answered HTTP 200 .*not the portal's: a text/html" "$d/doctor.txt"
    expect_grep "doctor shows the daemon's error" "last portal error: malformed, HTTP 200: the answer is not JSON" "$d/doctor.txt"
    stop_pid "$DAEMON_PID"
    result captive "200 text/html from a captive portal: malformed, never unlicensed, back-off, doctor: the answer is not the portal's"
}
register mb_captive
