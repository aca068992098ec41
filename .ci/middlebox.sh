#!/bin/bash
# The middlebox tier (tests/middlebox/run.sh, issue 20): installs Debian's
# parts it uses, then runs the group with the debug binaries of the tests.
set -eu
cd "$(dirname "$0")/.."
pkgs="nftables iproute2 curl python3"
updated=""
# Installed, not only known to dpkg (`dpkg -s` also succeeds for a package
# removed with its configuration files left).
installed() {
    for q in "$@"; do
        [ "$(dpkg-query -W -f='${Status}' "$q" 2>/dev/null)" = "install ok installed" ] || return 1
    done
}
if ! installed $pkgs; then
    apt-get update -qq || true
    updated=1
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; then
        echo "SKIP: middlebox: cannot install $pkgs"
        exit 0
    fi
fi
# The parts of single scenarios (squid-openssl: squid built with ssl-bump,
# which Debian's plain squid lacks; faketime: libfaketime for the clock
# scenario): one that cannot be installed makes its
# scenario print SKIP with the reason, not the whole group.
for p in squid-openssl openssl unbound faketime; do
    installed $p && continue
    [ -n "$updated" ] || { apt-get update -qq || true; updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $p >/dev/null ||
        echo "middlebox: cannot install $p (its scenarios will SKIP)"
done
[ -x target/debug/wispanel-licensed ] || cargo build --bins --workspace
tests/middlebox/run.sh target/debug
