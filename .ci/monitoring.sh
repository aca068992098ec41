#!/usr/bin/env bash
# Checks the monitoring assets that the packages ship:
#   packaging/prometheus/wispanel-license.rules.yml       (promtool check rules)
#   packaging/prometheus/wispanel-license.rules.test.yml  (promtool test rules)
#   packaging/grafana/wispanel-license-fleet.json         (parses; every PromQL
#       expression, Grafana variables filled in, passes promtool check rules)
#   packaging/prometheus/exported-metrics.txt             (every wispanel_license_*
#       name the rules and the dashboard use is in it; every name in it is in
#       the daemon's source, so the list cannot drift from the code)
#   systemd/node-exporter-textfile.conf                   (the unit with this
#       drop-in keeps an exposure level of at most SECURITY_MAX)
#
# Needs promtool (Debian: prometheus), python3 and, for the last check,
# systemd-analyze. Runs in a few seconds, as any user. Prints one line per
# check and ends with "N passed, N failed"; exits 1 when a check failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

SECURITY_MAX=${SECURITY_MAX:-1.5}
RULES=packaging/prometheus/wispanel-license.rules.yml
TESTS=packaging/prometheus/wispanel-license.rules.test.yml
DASHBOARD=packaging/grafana/wispanel-license-fleet.json
METRICS=packaging/prometheus/exported-metrics.txt
UNIT=systemd/wispanel-licensed.service
DROPIN=systemd/node-exporter-textfile.conf

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
# check NAME COMMAND...: runs COMMAND, shows its output indented on failure.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name"
	else
		bad "$name"
		printf '%s\n' "$out" | sed 's/^/      /'
	fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! command -v promtool >/dev/null; then
	bad "promtool is not installed (Debian: apt-get install prometheus)"
else
	check "promtool check rules $RULES" promtool check rules "$RULES"
	# promtool resolves rule_files relative to the test file.
	check "promtool test rules $TESTS" promtool test rules "$TESTS"
fi

# --- The dashboard ------------------------------------------------------------
# Every expression, with Grafana's variables replaced by values of the right
# kind, becomes a recording rule in a temporary rules file for promtool.
if python3 - "$DASHBOARD" "$tmp/dashboard.rules.yml" >"$tmp/dashboard.out" 2>&1 <<'EOF'; then
import json, re, sys

path, out = sys.argv[1], sys.argv[2]
with open(path) as f:
    dash = json.load(f)  # fails on invalid JSON
problems = []
if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
    problems.append("schemaVersion missing or older than 36")
if not dash.get("uid") or not dash.get("title"):
    problems.append("uid or title missing")

# Grafana's built-in variables, with values of the right kind.
builtin = {
    "__rate_interval": "5m", "__interval": "1m", "__interval_ms": "60000",
    "__range": "1h", "__range_s": "3600", "__range_ms": "3600000",
    "__auto": "1m", "__dashboard": "dashboard", "__org": "1", "__user": "user",
}
values = dict(builtin)
for var in dash.get("templating", {}).get("list", []):
    name, kind = var.get("name"), var.get("type")
    if kind in ("custom", "constant", "textbox", "interval"):
        current = var.get("current", {}).get("value") or var.get("query", "")
        if isinstance(current, list):
            current = current[0]
        values[name] = str(current).split(",")[0]
    else:  # query, datasource, adhoc: used in regex matchers
        values[name] = ".*"

def substitute(expr, where):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            problems.append(f"{where}: unknown variable ${name}")
            return "0"
        return values[name]
    # $name, ${name} or ${name:format}, [[name]]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)

rules, ids = [], set()
def walk(panels):
    for p in panels:
        where = f'panel {p.get("id")} "{p.get("title")}"'
        if p.get("id") in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(p.get("id"))
        gp = p.get("gridPos", {})
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append(f"{where}: no complete gridPos")
        elif gp["x"] + gp["w"] > 24:
            problems.append(f"{where}: wider than the 24-column grid")
        if p.get("type") != "row":
            ds = p.get("datasource") or {}
            if ds.get("uid") != "${datasource}":
                problems.append(f"{where}: data source is not the ${{datasource}} variable")
            if not p.get("targets"):
                problems.append(f"{where}: no targets")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if not expr.strip():
                problems.append(f'{where} target {t.get("refId")}: empty expr')
                continue
            rules.append((f'dashboard:panel_{p.get("id")}:{t.get("refId", "A")}',
                          substitute(expr, where), expr))
        walk(p.get("panels", []))
walk(dash.get("panels", []))
for var in dash.get("templating", {}).get("list", []):
    q = var.get("query")
    if var.get("type") == "query":
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
        if not m:
            problems.append(f'variable {var.get("name")}: not a label_values() query: {q}')
        else:
            rules.append((f'dashboard:variable_{var.get("name")}',
                          f'group({substitute(m.group(1), "variable " + var["name"])})', q))

with open(out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for record, expr, _ in rules:
        f.write(f"      - record: {record}\n        expr: {json.dumps(expr)}\n")
with open(out + ".exprs", "w") as f:
    for _, _, expr in rules:
        f.write(expr + "\n")
print(f"{len(rules)} expressions")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
	ok "$DASHBOARD: valid JSON model, $(cat "$tmp/dashboard.out")"
else
	bad "$DASHBOARD: invalid dashboard"
	sed 's/^/      /' "$tmp/dashboard.out"
fi
if [ -f "$tmp/dashboard.rules.yml" ] && command -v promtool >/dev/null; then
	check "$DASHBOARD: every expression passes promtool check rules" \
		promtool check rules "$tmp/dashboard.rules.yml"
fi

# --- Metric names -------------------------------------------------------------
names() { grep -oE '\bwispanel_license_[a-z0-9_]*[a-z0-9]\b' "$@" | sort -u; }
grep -vE '^\s*(#|$)' "$METRICS" | sort -u >"$tmp/exported"
for file in "$RULES" "$TESTS" "$tmp/dashboard.rules.yml.exprs"; do
	[ -f "$file" ] || continue
	label=$file
	[ "$file" != "$tmp/dashboard.rules.yml.exprs" ] || label=$DASHBOARD
	unknown=$(names "$file" | comm -23 - "$tmp/exported")
	if [ -z "$unknown" ]; then
		ok "$label: every wispanel_license_* name is in $METRICS"
	else
		bad "$label uses names that $METRICS does not list:"
		while read -r n; do printf '      %s\n' "$n"; done <<<"$unknown"
	fi
done

# Each listed name must occur in the daemon's Rust source as a whole word
# (a string literal or a format string that writes it).
roots=()
for d in src crates; do [ -d "$d" ] && roots+=("$d"); done
missing=()
while read -r name; do
	grep -rqw --include='*.rs' -- "$name" "${roots[@]}" || missing+=("$name")
done <"$tmp/exported"
if [ ${#missing[@]} -eq 0 ]; then
	ok "$METRICS: every name occurs in the daemon's source (${roots[*]})"
else
	bad "$METRICS lists names that the daemon's source (${roots[*]}) does not write:"
	printf '      %s\n' "${missing[@]}"
	echo "      (the rules or the dashboard rely on them: export them, or drop them from the list and from their users)"
fi

# --- The drop-in ----------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
	root=$tmp/root
	mkdir -p "$root/etc/systemd/system/wispanel-licensed.service.d"
	cp "$UNIT" "$root/etc/systemd/system/"
	cp "$DROPIN" "$root/etc/systemd/system/wispanel-licensed.service.d/"
	security=$(systemd-analyze security --offline=true --root="$root" wispanel-licensed.service 2>&1)
	exposure=$(printf '%s\n' "$security" |
		sed -n 's/^→ Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -n "$exposure" ] && awk -v e="$exposure" -v m="$SECURITY_MAX" 'BEGIN { exit !(e <= m) }'; then
		ok "$UNIT with $DROPIN: exposure level $exposure (at most $SECURITY_MAX)"
	else
		bad "$UNIT with $DROPIN: exposure level ${exposure:-unknown}, at most $SECURITY_MAX allowed"
		printf '%s\n' "$security" | grep -v '^✓' | sed 's/^/      /'
	fi
else
	bad "systemd-analyze is not installed (Debian: systemd)"
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
