#!/usr/bin/env bash
# Loopback throughput and latency: security-update-server against the `floor` and
# `axum_baseline` contenders served the same way (benches/support, tools/src/bin/bench_servers.rs).
# Each server gets one worker thread pinned to core 0; wrk runs on core 1; 127.0.0.1 only;
# each run is bounded (DURATION). Prints requests/s, latency percentiles and ratios from this
# one run. Usage: scripts/loopback.sh   (env: DURATION=10s CONNECTIONS=32)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet -p security-update-server -p security-update-tools

work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start() { # name, command...: starts a server on core 0, waits for "listening on ADDR"
  local name="$1"; shift
  taskset -c 0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=("$!")
  for _ in $(seq 1 100); do
    grep -q '^listening on ' "$work/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  grep '^listening on ' "$work/$name.out" | awk '{print $3}'
}

run() { # name, url, token
  local name="$1" url="$2" token="$3"
  TOKEN="$token" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/patch.lua "$url" >"$work/$name.wrk"
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$name.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$work/$name.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/$name.wrk")
  echo "$name $rps $p50 $p99 $(grep -c '^status 200' "$work/$name.wrk")"
  grep '^status ' "$work/$name.wrk" | grep -v '^status 200' >&2 || true
}

floor_addr=$(start floor target/release/bench_servers floor 127.0.0.1:0 1)
axum_addr=$(start axum target/release/bench_servers axum 127.0.0.1:0 1)
# Our server as deployed: access log on (RUST_LOG=info, one line per request to stderr) and the
# per-caller rate limit off (it would throttle one token at 50 requests/s). OURS_RUST_LOG=warn
# measures it without the access log.
ours_addr=$(RUST_LOG="${OURS_RUST_LOG:-info}" start ours target/release/security-update-server --memory --listen :0 \
  --worker-threads 1 --rate-limit 0 --schema scripts/bench-schema.json)
token=$(sed -n '3p' "$work/ours.out")

results="$work/results"
run floor "http://$floor_addr/me/security" "bench-token-0123456789abcdef" >>"$results"
run axum_baseline "http://$axum_addr/me/security" "bench-token-0123456789abcdef" >>"$results"
run security_update "http://$ours_addr/beta/me/security" "$token" >>"$results"

echo "machine: $(nproc) cores, $(uname -r); wrk -t1 -c$CONNECTIONS -d$DURATION; one server worker on core 0, wrk on core 1"
awk '
  { name[NR]=$1; rps[NR]=$2; p50[NR]=$3; p99[NR]=$4; if ($1=="floor") f=$2; if ($1=="axum_baseline") a=$2 }
  END {
    printf "%-16s %12s %10s %10s %10s %12s\n", "contender", "requests/s", "p50", "p99", "vs floor", "vs axum"
    for (i=1; i<=NR; i++) printf "%-16s %12.0f %10s %10s %9.2fx %11.2fx\n", name[i], rps[i], p50[i], p99[i], rps[i]/f, rps[i]/a
  }' "$results"
