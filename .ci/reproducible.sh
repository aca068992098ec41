#!/usr/bin/env bash
# CI: the packages are reproducible (issue 21). Builds the .deb and the .rpm a
# second time from a clone of HEAD in another directory, with another
# CARGO_HOME, and compares them with the ones .ci/packaging.sh has just built
# (sha256). On a difference it installs diffoscope (apt) and prints its report,
# then fails. The second CARGO_HOME shares the first one's registry index and
# downloaded archives (symlinks: no second download), but unpacks the sources
# under its own path, and has its own bin/ (the tools are found on the PATH).
# The clone's build is cold: its cost is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { printf 'reproducible.sh: FAIL: %s\n' "$*" >&2; exit 1; }
deb=$(ls target/debian/wispanel-license_*.deb 2>/dev/null | head -n 1)
rpm=$(ls target/generate-rpm/wispanel-license-*.rpm 2>/dev/null | head -n 1)
[ -n "$deb" ] && [ -n "$rpm" ] || fail "no package in target/; run .ci/packaging.sh first"
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
	echo "reproducible.sh: note: the worktree has changes; the clone builds HEAD without them"

cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)
work=$(mktemp -d /tmp/wispanel-repro.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q --no-local . "$work/checkout"
mkdir -p "$work/cargo-home/registry"
for d in index cache; do
	[ ! -d "$cargo_home/registry/$d" ] || ln -s "$cargo_home/registry/$d" "$work/cargo-home/registry/$d"
done
# The tools (cargo-deb, cargo-generate-rpm, cargo-auditable) stay where
# packaging.sh installed them.
export PATH="$cargo_home/bin:$PATH"
started=$(date +%s)
(
	cd "$work/checkout"
	CARGO_HOME="$work/cargo-home" PACKAGING_BUILD_ONLY=1 .ci/packaging.sh >"$work/build.log" 2>&1
) || { tail -n 40 "$work/build.log"; fail "the second build failed"; }
echo "second build (cold, in $work/checkout): $(($(date +%s) - started)) s"
deb2="$work/checkout/$deb"
rpm2="$work/checkout/$rpm"
same=1
for pair in "$deb $deb2" "$rpm $rpm2"; do
	set -- $pair
	a=$(sha256sum <"$1" | cut -d' ' -f1)
	b=$(sha256sum <"$2" | cut -d' ' -f1)
	if [ "$a" = "$b" ]; then
		echo "ok  identical: $(basename "$1") sha256 $a"
	else
		echo "DIFFERENT: $(basename "$1"): $a here, $b in the second build"
		same=
	fi
done
if [ -z "$same" ]; then
	if ! command -v diffoscope >/dev/null; then
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends diffoscope >/dev/null ||
			echo "reproducible.sh: cannot install diffoscope; the hashes above are all there is"
	fi
	if command -v diffoscope >/dev/null; then
		diffoscope --text - "$deb" "$deb2" || true
		diffoscope --text - "$rpm" "$rpm2" || true
	fi
	fail "two builds of one commit differ"
fi
