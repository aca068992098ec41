#!/bin/sh
# Reads wispanel-licensed's status with curl over its Unix socket, then
# follows GET /v1/events until the next change and prints it.
#     sh status.sh [SOCKET]   (default /run/wispanel-license/status.sock)
# Needs curl and jq.
set -eu
SOCK=${1:-/run/wispanel-license/status.sock}
tmp=$(mktemp); trap 'rm -f "$tmp" "$tmp.h" "$tmp.fifo"' EXIT

call() { # $1 method, $2 path: the JSON answer on stdout; errors end the script
    for attempt in 1 2; do
        code=$(curl -sS --unix-socket "$SOCK" -X "$1" -D "$tmp.h" -o "$tmp" -w '%{http_code}' "http://localhost$2")
        if [ "$code" = 429 ] && [ $attempt = 1 ]; then
            wait=$(tr -d '\r' <"$tmp.h" | awk -F': ' 'tolower($1)=="retry-after"{print $2}')
            echo "busy (429 $(jq -r .code "$tmp")): retrying in ${wait:-1} s"
            sleep "${wait:-1}"; continue
        fi
        if [ "$code" -ge 400 ]; then
            jq -r '"error \(.status) \(.code): \(.message)"' "$tmp"
            [ "$code" = 403 ] && exit 2; exit 1
        fi
        cat "$tmp"; return 0
    done
    echo "still busy after one retry"; exit 1
}
show='"state=\(.license.state) licensed=\(.license.licensed) update=\(.update.state) warnings=\([.warnings[].code] | join(",") | if . == "" then "none" else . end)"'

call GET /v1/status | jq -r "$show"

# Events: the first `data:` line is the status now; the second is the change.
mkfifo "$tmp.fifo"
curl -sS -N --unix-socket "$SOCK" http://localhost/v1/events >"$tmp.fifo" &
cpid=$!
n=0
while IFS= read -r line; do
    case $line in
    data:*)
        n=$((n + 1))
        [ $n = 1 ] && echo "waiting for the next change"
        if [ $n = 2 ]; then
            printf '%s\n' "${line#data:}" | jq -r "\"change: \" + $show"
            break
        fi ;;
    esac
done <"$tmp.fifo"
kill $cpid 2>/dev/null || true
[ $n = 2 ] || { echo "the event stream ended"; exit 1; }
