#!/usr/bin/env bash
# Builds the .deb and the .rpm, lints them, checks the systemd unit, and
# installs, removes and purges the .deb on this machine.
#
# Run from anywhere, as root, on Debian 12 or later (CI runs it from .ci/run).
# It installs what it lacks (apt packages, cargo-deb, cargo-generate-rpm),
# reuses target/release, and can run again and again. It leaves the group
# wispanel behind when it has members, and nothing else.
#
# Environment: SECURITY_MAX (default 1.5), the highest exposure level that
# `systemd-analyze security` may give the unit. PACKAGING_BUILD_ONLY=1: stop
# once the .deb and the .rpm are built (.ci/reproducible.sh's second build).
#
# Reproducible (issue 21): SOURCE_DATE_EPOCH is the commit's date, the paths
# of $CARGO_HOME, the checkout and the toolchain are remapped in the Rust and
# the C code (RUSTFLAGS, CFLAGS: set for every release build of this script,
# so target/release's cache stays valid between its runs), man pages are
# gzipped with -n, generated files get the commit's date; so two runs of one
# commit in different directories with different CARGO_HOMEs give the same
# .deb and .rpm, byte for byte (.ci/reproducible.sh checks it).
set -euo pipefail

cd "$(dirname "$0")/.."
started=$(date +%s)
SECURITY_MAX=${SECURITY_MAX:-1.5}
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
CARGO_AUDITABLE_VERSION=0.7.7
UNIT=systemd/wispanel-licensed.service
PKG=wispanel-license
ASSETS=target/assets

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'packaging.sh: FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs packages and the .deb)"

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)
sysroot=$(rustc --print sysroot)
export RUSTFLAGS="--remap-path-prefix=$PWD=/build --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$sysroot=/rust"
# aws-lc-sys compiles C (assert() messages carry __FILE__).
export CFLAGS="-ffile-prefix-map=$PWD=/build -ffile-prefix-map=$cargo_home=/cargo"
export CXXFLAGS="$CFLAGS"

step "tools"
export DEBIAN_FRONTEND=noninteractive
missing=()
command -v lintian >/dev/null || missing+=(lintian)
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v strip >/dev/null || missing+=(binutils)
command -v groff >/dev/null || missing+=(groff-base)
command -v man >/dev/null || missing+=(man-db)
command -v rpm >/dev/null || missing+=(rpm)
command -v objcopy >/dev/null || missing+=(binutils)
command -v python3 >/dev/null || missing+=(python3)
command -v git >/dev/null || missing+=(git)
want_rpmlint=
command -v rpmlint >/dev/null || want_rpmlint=1
if [ ${#missing[@]} -gt 0 ] || [ -n "$want_rpmlint" ]; then
	apt-get update -qq
	# rpmlint is in Debian's archive (bookworm has 2.4); should a release
	# lack it, go on without it and say so in the rpmlint step.
	if [ -n "$want_rpmlint" ] && apt-cache show rpmlint >/dev/null 2>&1; then
		missing+=(rpmlint)
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION" ||
	cargo install --locked "cargo-deb@$CARGO_DEB_VERSION"
cargo generate-rpm --version 2>/dev/null | grep -q "$CARGO_GENERATE_RPM_VERSION" ||
	cargo install --locked "cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION"
# Built without this script's RUSTFLAGS, so that installing a tool does not
# depend on the checkout's path.
cargo auditable --version >/dev/null 2>&1 ||
	RUSTFLAGS= CFLAGS= CXXFLAGS= cargo install --locked "cargo-auditable@$CARGO_AUDITABLE_VERSION"

step "systemd-analyze security --offline=true $UNIT"
security=$(systemd-analyze security --offline=true "$UNIT" 2>&1) || true
printf '%s\n' "$security" | grep -v '^✓' # what is left open
exposure=$(printf '%s\n' "$security" |
	sed -n 's/^→ Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "no exposure level in the output of systemd-analyze security"
awk -v e="$exposure" -v m="$SECURITY_MAX" 'BEGIN { exit !(e <= m) }' ||
	fail "exposure level $exposure is above $SECURITY_MAX"
echo "exposure level: $exposure (at most $SECURITY_MAX)"

step "systemd-analyze verify (temporary root with a stand-in binary)"
# verify needs ExecStart's binary and the Documentation= man pages to exist;
# before the package is installed, a temporary root provides the binary
# (--man=no), and the installed unit is verified again after dpkg -i.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
ln -s usr/bin "$root/bin"
cp /usr/bin/kill "$root/usr/bin/"
printf '#!/bin/sh\n' >"$root/usr/bin/wispanel-licensed"
chmod 755 "$root/usr/bin/wispanel-licensed"
cp "$UNIT" systemd/wispanel-licensed.socket "$root/usr/lib/systemd/system/"
# verify exits 0 on warnings such as an unknown key: any output fails.
out=$(systemd-analyze verify --man=no --root="$root" wispanel-licensed.service wispanel-licensed.socket 2>&1) ||
	fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
echo "clean"

step "sysusers.d and tmpfiles.d (temporary root)"
mkdir -p "$root/etc" "$root/var/lib"
cp /etc/passwd /etc/group /etc/shadow /etc/gshadow "$root/etc/"
systemd-sysusers --root="$root" "$PWD/systemd/wispanel-license.sysusers"
systemd-tmpfiles --root="$root" --create "$PWD/systemd/wispanel-license.tmpfiles"
got=$(stat -c '%a %U:%G' "$root/var/lib/wispanel-license" 2>/dev/null || true)
# The names resolve through this host's files, not the temporary root's, so
# compare numbers with the temporary root's passwd.
uid=$(awk -F: '$1 == "wispanel-license" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "wispanel" { print $3 }' "$root/etc/group")
[ "$(stat -c '%a %u:%g' "$root/var/lib/wispanel-license")" = "700 $uid:$gid" ] ||
	fail "tmpfiles made /var/lib/wispanel-license $got"
echo "user $uid, group $gid, state directory 0700"

step "build (release, cargo auditable: the crate list in .dep-v0)"
echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH RUSTFLAGS=$RUSTFLAGS"
cargo auditable build --release --locked --bin wispanel-licensed --bin wispanel-license

step "man pages and completions"
rm -rf "$ASSETS"
# Through cargo auditable too: the same compiler wrapper, so the library
# built above is reused.
cargo auditable run --release --locked --quiet --example gen_assets -- "$ASSETS"
cp packaging/man/*.[1-8] "$ASSETS/man/"
for page in "$ASSETS"/man/*.[1-8]; do
	warnings=$(groff -ww -man -z "$page" 2>&1)
	[ -z "$warnings" ] || fail "groff warns about $page: $warnings"
done
gzip -9n "$ASSETS"/man/*.[1-8]
python3 .ci/sbom.py "$ASSETS/wispanel-license.cdx.json"
ls "$ASSETS/man" "$ASSETS/completions"
# cargo-generate-rpm packages binaries as they are: give it stripped copies.
mkdir -p "$ASSETS/bin"
for bin in wispanel-licensed wispanel-license; do
	strip --strip-unneeded --remove-section=.comment --remove-section=.note \
		-o "$ASSETS/bin/$bin" "target/release/$bin"
done
# Generated files carry the commit's date (the packagers clamp or replace
# dates too; this keeps it so whatever their version does).
find "$ASSETS" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
# cargo-generate-rpm clamps only the dates newer than SOURCE_DATE_EPOCH: a
# checked-in asset older than the commit (a worktree edited before it was
# committed) kept its own date and gave another .rpm than a fresh clone. The
# rpm's checked-in assets that are as committed get the commit's date too
# (git's own mtimes carry nothing; a file that differs from HEAD is left).
for f in $(grep -oE '^ *\{ source = "[^"]+"' Cargo.toml | cut -d'"' -f2 | grep -v '^target/'); do
	if git diff --quiet HEAD -- "$f" 2>/dev/null; then touch -d "@$SOURCE_DATE_EPOCH" "$f"; fi
done

step "cargo deb"
rm -f target/debian/"$PKG"_*.deb
cargo deb --no-build --locked
deb=$(ls target/debian/"$PKG"_*.deb)
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

step "cargo generate-rpm"
rm -f target/generate-rpm/"$PKG"-*.rpm
cargo generate-rpm
rpm=$(ls target/generate-rpm/"$PKG"-*.rpm)
rpm -qpi "$rpm"
files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm")
printf '%s\n' "$files"
printf '%s\n' "$files" | grep -qx -- '-rw-r----- root:wispanel cn /etc/wispanel/license.toml' ||
	fail "rpm: /etc/wispanel/license.toml is not %config(noreplace) 0640 root:wispanel"
printf '%s\n' "$files" | grep -qx -- '-rwxr-xr-x root:root  /usr/bin/wispanel-licensed' ||
	fail "rpm: /usr/bin/wispanel-licensed is not 0755 root:root"
printf '%s\n' "$files" | grep -q -- ' /usr/share/wispanel-license/openapi.json$' ||
	fail "rpm: /usr/share/wispanel-license/openapi.json is missing"
rpm -qp --scripts "$rpm"
sha256sum "$deb" "$rpm"
if [ "${PACKAGING_BUILD_ONLY:-}" = 1 ]; then
	step "built (PACKAGING_BUILD_ONLY) in $(($(date +%s) - started)) s"
	exit 0
fi

step "lintian"
lintian --display-info --fail-on error "$deb" || fail "lintian found errors"
echo "lintian: no errors"

step "rpmlint"
if command -v rpmlint >/dev/null; then
	# packaging/rpmlint.toml filters what does not apply, each with its reason.
	rpmlint --config packaging/rpmlint.toml "$rpm" || fail "rpmlint found errors"
else
	echo "rpmlint: SKIPPED, no rpmlint package in this Debian release's archive"
fi

step "dpkg -i / -r / -P"
# Never start the daemon here: deb-systemd-invoke asks policy-rc.d, and 101
# means "not allowed". Harmless where systemd does not run anyway.
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	own_policy=1
fi
trap 'rm -rf "$root"; [ -z "$own_policy" ] || rm -f "$policy"' EXIT
dpkg -P "$PKG" >/dev/null 2>&1 || true # a run that stopped half-way
dpkg -i "$deb"

mode() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }
expect() { # path, expected "mode owner:group"
	[ "$(mode "$1")" = "$2" ] || fail "$1 is $(mode "$1"), expected $2"
	echo "ok  $2  $1"
}
expect /etc/wispanel/license.toml "640 root:wispanel"
expect /usr/bin/wispanel-licensed "755 root:root"
expect /usr/bin/wispanel-license "755 root:root"
expect /usr/lib/systemd/system/wispanel-licensed.service "644 root:root"
expect /usr/lib/systemd/system/wispanel-licensed.socket "644 root:root"
expect /usr/lib/sysusers.d/wispanel-license.conf "644 root:root"
expect /usr/lib/tmpfiles.d/wispanel-license.conf "644 root:root"
expect /usr/lib/systemd/catalog/wispanel-license.catalog "644 root:root"
expect /var/lib/wispanel-license "700 wispanel-license:wispanel"
expect /usr/share/man/man5/wispanel-license.toml.5.gz "644 root:root"
expect /usr/share/man/man8/wispanel-licensed.8.gz "644 root:root"
expect /usr/share/man/man1/wispanel-license.1.gz "644 root:root"
expect /usr/share/bash-completion/completions/wispanel-license "644 root:root"
expect /usr/share/zsh/vendor-completions/_wispanel-license "644 root:root"
expect /usr/share/fish/vendor_completions.d/wispanel-license.fish "644 root:root"
expect /usr/share/wispanel-license/prometheus/wispanel-license.rules.yml "644 root:root"
expect /usr/share/wispanel-license/grafana/wispanel-license-fleet.json "644 root:root"
expect /usr/share/wispanel-license/systemd/node-exporter-textfile.conf "644 root:root"
expect /usr/share/wispanel-license/openapi.json "644 root:root"
cmp -s /usr/share/wispanel-license/openapi.json openapi/openapi.json || fail "the installed openapi.json is not openapi/openapi.json"
[ -L /etc/systemd/system/multi-user.target.wants/wispanel-licensed.service ] ||
	fail "postinst did not enable wispanel-licensed.service"
echo "ok  enabled in multi-user.target"
[ -L /etc/systemd/system/sockets.target.wants/wispanel-licensed.socket ] ||
	fail "postinst did not enable wispanel-licensed.socket"
echo "ok  socket enabled in sockets.target"
# cargo auditable's crate list survives the packages' strip (cargo-deb's and
# ours for the .rpm): zlib-compressed JSON in the section .dep-v0.
dep_v0_names() { # BINARY: the crate names, one a line
	local dump
	dump=$(mktemp)
	# objcopy must write a copy somewhere: a temporary file, never /dev/null
	# (it would replace it).
	objcopy --dump-section .dep-v0="$dump" "$1" "$dump.copy" 2>/dev/null || { rm -f "$dump" "$dump.copy"; return 1; }
	rm -f "$dump.copy"
	local rc=0
	python3 -c 'import json, sys, zlib
print("\n".join(p["name"] for p in json.loads(zlib.decompress(open(sys.argv[1], "rb").read()))["packages"]))' "$dump" || rc=$?
	rm -f "$dump"
	return "$rc"
}
for bin in /usr/bin/wispanel-licensed "$ASSETS/bin/wispanel-licensed"; do
	names=$(dep_v0_names "$bin") || fail "$bin has no readable .dep-v0 section (cargo auditable)"
	printf '%s\n' "$names" | grep -qx rustls || fail "$bin: .dep-v0 does not name rustls"
	echo "ok  $bin: .dep-v0 lists $(printf '%s\n' "$names" | wc -l) crates, rustls among them"
done
expect /usr/share/doc/wispanel-license/wispanel-license.cdx.json "644 root:root"
.ci/sbom-check.sh /usr/share/doc/wispanel-license/wispanel-license.cdx.json
expect /usr/share/wispanel-license/systemd/encrypted-key.conf "644 root:root"
/usr/bin/wispanel-license --help >/dev/null || fail "wispanel-license --help failed"
/usr/bin/wispanel-licensed --help >/dev/null || fail "wispanel-licensed --help failed"
echo "ok  --help of both programs"
# The installed unit, with the real binary and man pages.
out=$(systemd-analyze verify /usr/lib/systemd/system/wispanel-licensed.service /usr/lib/systemd/system/wispanel-licensed.socket 2>&1) ||
	fail "systemd-analyze verify (installed): $out"
[ -z "$out" ] || fail "systemd-analyze verify (installed): $out"
echo "ok  systemd-analyze verify of the installed unit, man pages included"

touch /var/lib/wispanel-license/state.json # stands for the daemon's state
dpkg -r "$PKG"
[ ! -e /usr/bin/wispanel-licensed ] || fail "dpkg -r left /usr/bin/wispanel-licensed"
[ -f /etc/wispanel/license.toml ] || fail "dpkg -r removed the configuration"
[ -f /var/lib/wispanel-license/state.json ] || fail "dpkg -r removed the state"
echo "ok  remove keeps the configuration and the state"

dpkg -P "$PKG"
[ ! -e /etc/wispanel/license.toml ] || fail "dpkg -P left /etc/wispanel/license.toml"
[ ! -e /var/lib/wispanel-license ] || fail "dpkg -P left /var/lib/wispanel-license"
! dpkg-statoverride --list /etc/wispanel/license.toml >/dev/null ||
	fail "dpkg -P left the statoverride"
[ ! -e /etc/systemd/system/multi-user.target.wants/wispanel-licensed.service ] ||
	fail "dpkg -P left the enablement symlink"
[ ! -e /etc/systemd/system/sockets.target.wants/wispanel-licensed.socket ] ||
	fail "dpkg -P left the socket's enablement symlink"
echo "ok  purge removes the configuration, the state and the enablement"

step "done in $(($(date +%s) - started)) s"
echo "$deb"
echo "$rpm"
