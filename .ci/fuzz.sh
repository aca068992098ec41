#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (FUZZ_SECONDS, default 30) with
# cargo-fuzz on the nightly toolchain (.ci/run calls it; cargo-fuzz is
# installed from crates.io when missing). Without a nightly toolchain it says
# so and exits 0; the same targets then still run as the bounded "fuzz smoke"
# test on stable (cargo test -p wispanel-fuzz-cases).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs="${FUZZ_SECONDS:-30}"
targets=(classify config)

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: skipped: no nightly toolchain (cargo fuzz needs one); run: cargo test -p wispanel-fuzz-cases"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    if ! cargo install cargo-fuzz --locked --quiet; then
        echo "fuzz: skipped: cargo-fuzz cannot be installed; run: cargo test -p wispanel-fuzz-cases"
        exit 0
    fi
fi

status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "fuzz: $t for ${secs}s"
    # Seeds: the smoke test's seed inputs are in the library; libFuzzer finds
    # its way from an empty corpus too, so none are written here.
    if ! cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -max_len=4096 -print_final_stats=1 2>"fuzz/$t.log"; then
        echo "fuzz: $t FAILED; see fuzz/$t.log and fuzz/artifacts/$t/"
        status=1
    fi
    grep -E '^(stat::|Done|#[0-9]+ *DONE)' "fuzz/$t.log" | sed "s/^/  $t: /" || true
done
exit $status
