#!/bin/bash
# The middlebox tier (tests/middlebox/run.sh, issue 20): installs Debian's
# parts it uses, then runs the group with the debug binaries of the tests.
set -eu
cd "$(dirname "$0")/.."
pkgs="nftables iproute2 curl python3 squid openssl unbound dnsutils"
if ! dpkg -s $pkgs >/dev/null 2>&1; then
    apt-get update -qq || true
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; then
        echo "SKIP: middlebox: cannot install $pkgs"
        exit 0
    fi
fi
[ -x target/debug/wispanel-licensed ] || cargo build --bins --workspace
tests/middlebox/run.sh target/debug
