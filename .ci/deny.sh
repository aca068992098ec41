#!/usr/bin/env bash
# CI: the dependency policy (deny.toml): licences, banned crates, sources.
# Offline: no advisory database (README, "What is inside", says how a user
# checks advisories against the installed binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
	started=$(date +%s)
	cargo install --locked "cargo-deny@$CARGO_DENY_VERSION"
	echo "cargo install cargo-deny: $(($(date +%s) - started)) s"
fi
cargo deny --offline --locked check licenses bans sources
