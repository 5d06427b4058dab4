#!/usr/bin/env bash
# Attack run: latency of a legitimate client (fixed-rate PATCHes from 127.0.0.2) with and without
# hostile clients (idle sockets, slow headers, forged tokens from 127.0.0.3 and up), against the
# release server pinned to core 0, load on core 1. Loopback only; every run is bounded.
# Prints a markdown table for benches/README.md. Settings are environment variables, listed in
# scripts/attack_run.py (e.g. PAIRS=3 DURATION=10 LEGIT_RATE=200 IDLE_SOCKETS=1000).
# Usage: scripts/attack-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${SERVER_BIN:-target/release/security-update-server}"
if [[ ! -x "$bin" ]]; then
  echo "no server binary at $bin; build it first:" >&2
  echo "  cargo build --release -p security-update-server" >&2
  exit 2
fi
for tool in python3 taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done

# Open files for ~1,100 attacker sockets here and as many connections in the server (which
# inherits the limit and derives its default --max-connections from it).
if ! ulimit -n 65536 2>/dev/null; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  echo "open-file limit: $(ulimit -n) (65536 is above the hard limit)" >&2
fi

exec taskset -c "${LOAD_CORE:-1}" python3 scripts/attack_run.py "$@"
