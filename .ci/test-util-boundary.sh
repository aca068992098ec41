#!/usr/bin/env bash
# The in-process test harness (`wispanel_license::testing`, feature
# `test-util`) is for tests only: the shipped programs are built without it.
# Checked on the resolved feature tree of a normal (non-test) build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tree=$(cargo tree -p wispanel-license -e normal,features --prefix none)
if grep -q -E '^(wispanel-license|tokio) feature "test-util"' <<<"$tree"; then
    echo "a normal build of the product enables test-util:"
    grep -E 'feature "test-util"' <<<"$tree" | sort -u
    exit 1
fi
# ... while its tests do get it (else the harness's tests would not build).
cargo tree -p wispanel-license -e features --prefix none | grep -q '^wispanel-license feature "test-util"' ||
    { echo "the product's tests do not enable test-util"; exit 1; }
echo "ok: the shipped programs are built without the test harness (test-util)"
