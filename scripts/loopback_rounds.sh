#!/usr/bin/env bash
# Loopback throughput in alternating rounds, for issue 12's loopback and logging targets.
#
# One run of each server (scripts/loopback.sh) differs from the next by up to 15% on these
# shared machines, more than most changes are worth; so every round starts each contender
# afresh and runs them one after the other, and the ratios are taken within a round and their
# median reported. Contenders, in this order in every round:
#   floor, axum                 the two baselines (tools/src/bin/bench_servers.rs)
#   shipped                     security-update-server as deployed: RUST_LOG unset (info);
#                               target/release's build, or SERVER=path (scripts/pgo_build.sh's)
#   logging_off                 the same binary with every line off, audit included
#   start_shipped, start_off    the same two for another build, when START=path is given
#                               (a build of an earlier commit, to be measured beside this one)
#   floor_pgo, axum_pgo         the baselines built with PGO, when PGO_BASELINES=path is given
#                               (scripts/pgo_build.sh with BASELINES=1), to see what PGO gives
#                               code that is not ours
# Each server has one worker thread pinned to core 0, wrk (-t1) runs on core 1, 127.0.0.1 only,
# every run bounded by DURATION. Every request changes the object (scripts/patch.lua); a round
# with any answer but 200 fails the script.
#
# Usage: scripts/loopback_rounds.sh   (env: ROUNDS=4 DURATION=6s CONNECTIONS=32 START=path
# SERVER=path PGO_BASELINES=path BUILD=0 to use the binaries in target/release as they are)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-4}"
DURATION="${DURATION:-6s}"
CONNECTIONS="${CONNECTIONS:-32}"
LOGGING_OFF="off,security_update::audit=off"
SERVER="${SERVER:-target/release/security-update-server}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
if [ "${BUILD:-1}" != 0 ]; then
  cargo build --release --quiet -p security-update-server -p security-update-tools
fi

work="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# name, command...: starts a server on core 0 and waits until it has printed its address
# (and, for ours, the dev token on line 3).
start() {
  local name="$1"; shift
  taskset -c 0 "$@" >"$work/$name.out" 2>/dev/null &
  server=$!
  for _ in $(seq 1 150); do
    if grep -q '^listening on ' "$work/$name.out" 2>/dev/null; then
      case "$name" in floor*|axum*) return ;; esac
      [ "$(wc -l <"$work/$name.out")" -ge 3 ] && return
    fi
    sleep 0.1
  done
  echo "$name did not start" >&2
  exit 1
}

stop() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; server=""; }

# name: one timed run against the server just started; prints "round name requests/s".
measure() {
  local name="$1" round="$2" path token address
  address=$(awk '/^listening on / {print $3; exit}' "$work/$name.out")
  case "$name" in
    floor*|axum*) path=/me/security; token=bench-token-0123456789abcdef ;;
    *) path=/beta/me/security; token=$(sed -n '3p' "$work/$name.out") ;;
  esac
  TOKEN="$token" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s scripts/patch.lua \
    "http://$address$path" >"$work/$name.wrk"
  if grep '^status ' "$work/$name.wrk" | grep -v '^status 200' >&2; then
    echo "$name answered something else than 200 (above)" >&2
    exit 1
  fi
  echo "$round $name $(awk '/^Requests\/sec/ {print $2}' "$work/$name.wrk")"
}

ours() { # name, binary, RUST_LOG
  RUST_LOG="$3" start "$1" "$2" --memory --listen 127.0.0.1:0 --worker-threads 1 \
    --rate-limit 0 --schema scripts/bench-schema.json
}

# The rounds run in a subshell (the pipe to tee), which does not inherit the EXIT trap: its
# own stops the server it started if a round fails.
( trap '[ -z "$server" ] || stop' EXIT
for round in $(seq 1 "$ROUNDS"); do
  for baseline in floor axum; do
    start "$baseline" target/release/bench_servers "$baseline" 127.0.0.1:0 1
    measure "$baseline" "$round"; stop
    if [ -n "${PGO_BASELINES:-}" ]; then
      start "${baseline}_pgo" "$PGO_BASELINES" "$baseline" 127.0.0.1:0 1
      measure "${baseline}_pgo" "$round"; stop
    fi
  done
  ours shipped "$SERVER" info; measure shipped "$round"; stop
  ours logging_off "$SERVER" "$LOGGING_OFF"
  measure logging_off "$round"; stop
  if [ -n "${START:-}" ]; then
    ours start_shipped "$START" info; measure start_shipped "$round"; stop
    ours start_off "$START" "$LOGGING_OFF"; measure start_off "$round"; stop
  fi
done ) | tee "$work/rounds"

echo "machine: $(nproc) cores, $(uname -r); $ROUNDS rounds; wrk -t1 -c$CONNECTIONS -d$DURATION;" \
  "one server worker on core 0, wrk on core 1"
python3 - "$work/rounds" <<'EOF'
import collections, statistics, sys

rounds = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    round_, name, rps = line.split()
    rounds[round_][name] = float(rps)
rounds = list(rounds.values())


def ratios(top, bottom):
    return [r[top] / r[bottom] for r in rounds if top in r and bottom in r]


def show(label, values):
    if values:
        each = " / ".join(f"{v:.3f}" for v in values)
        print(f"{label:34s} median {statistics.median(values):.3f}   ({each})")


names = [name for name in rounds[0]]
print("requests/s, medians: " + ", ".join(
    f"{name} {statistics.median(r[name] for r in rounds if name in r):,.0f}" for name in names))
for name in names:
    if name != "floor":
        show(f"{name} / floor", ratios(name, "floor"))
for name in names:
    if name not in ("floor", "axum"):
        show(f"{name} / axum", ratios(name, "axum"))
for name in names:
    if not name.startswith(("floor", "axum")):
        show(f"{name} / floor_pgo", ratios(name, "floor_pgo"))
        show(f"{name} / axum_pgo", ratios(name, "axum_pgo"))
show("axum_pgo / axum (PGO's gain)", ratios("axum_pgo", "axum"))
show("shipped / logging_off (logs' cost)", ratios("shipped", "logging_off"))
show("start_shipped / start_off", ratios("start_shipped", "start_off"))
show("shipped / start_shipped", ratios("shipped", "start_shipped"))
show("logging_off / start_off", ratios("logging_off", "start_off"))
EOF
