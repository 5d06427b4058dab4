#!/usr/bin/env bash
# A profile-guided (PGO) release build of security-update-server, for operators who build the
# binary they deploy. The server's time per request goes mostly to fetching its code (our hot
# path is ~100 KB of machine code against a 32 KB instruction cache; benches/README.md), and
# PGO lays the code a request runs out together, apart from what it does not run.
#
# 1. builds the server instrumented (-Cprofile-generate), in target/pgo/generate;
# 2. trains it on loopback: PATCHes with wrk (scripts/patch.lua), logs as shipped, first on the
#    memory store, then on the embedded one (each TRAIN seconds), plus a few requests of every
#    other kind the server answers (reads, refusals, conditional writes, $batch) so that
#    they are not laid out as never run;
# 3. merges the profiles with the toolchain's own llvm-profdata (rustup's llvm-tools: the
#    profile format follows rustc's LLVM, so another LLVM's tool cannot read it);
# 4. builds the server again with the profile (-Cprofile-use) into
#    target/pgo/security-update-server;
# 5. runs the server's integration tests against that binary (SECURITY_UPDATE_SERVER_BINARY).
# Behaviour is the same as the plain build's: PGO changes code layout and inlining, nothing
# else. Nothing here is part of the test command or CI.
#
# BASELINES=1 also builds the benches' two baselines (tools' bench_servers: floor and axum)
# the same way, trained on the same PATCHes, into target/pgo/bench_servers: what PGO gives
# code that is not ours, to be measured beside ours (benches/README.md).
#
# Usage: scripts/pgo_build.sh   (env: TRAIN=8s BASELINES=0; needs wrk (installed if missing),
# Python 3, and rustup to add llvm-tools if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN="${TRAIN:-8s}"
work="$PWD/target/pgo"

host="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  echo "adding rustup's llvm-tools (llvm-profdata)..." >&2
  rustup component add llvm-tools >/dev/null
fi
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi

RUSTFLAGS="-Cprofile-generate=$work/raw" CARGO_TARGET_DIR="$work/generate" \
  cargo build --release --quiet -p security-update-server
# The build's own programs (build scripts, procedural macros) are instrumented too and leave
# their profiles here as they run: only the server's training goes into the merge.
rm -rf "$work/raw"
mkdir -p "$work/raw"

scratch="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$scratch"; }
trap cleanup EXIT

# The profile of a run is written when the training server exits; checked after each.
profiled() {
  if ! compgen -G "$work/raw/*.profraw" >/dev/null; then
    echo "training: no profile in $work/raw" >&2
    exit 1
  fi
}

stopped() { # pid: waits for a training baseline's clean exit, which is when it writes its profile
  if ! wait "$1"; then
    echo "training: the server did not exit cleanly, so wrote no profile" >&2
    exit 1
  fi
  server=""
  profiled
}

source scripts/trained_build.sh
train_server "$work/generate/release/security-update-server" --memory
profiled
train_server "$work/generate/release/security-update-server" --data "$scratch/data"
profiled

"$profdata" merge -o "$work/server.profdata" "$work/raw"
RUSTFLAGS="-Cprofile-use=$work/server.profdata" CARGO_TARGET_DIR="$work/use" \
  cargo build --release --quiet -p security-update-server
cp "$work/use/release/security-update-server" "$work/security-update-server"
check_server "$work/security-update-server" PGO

[ "${BASELINES:-0}" = 1 ] || exit 0
RUSTFLAGS="-Cprofile-generate=$work/raw" CARGO_TARGET_DIR="$work/generate" \
  cargo build --release --quiet -p security-update-tools --bin bench_servers
rm -rf "$work/raw"
mkdir -p "$work/raw"
for baseline in floor axum; do
  "$work/generate/release/bench_servers" "$baseline" 127.0.0.1:0 1 >"$scratch/out" &
  server=$!
  for _ in $(seq 1 150); do
    grep -q '^listening on ' "$scratch/out" 2>/dev/null && break
    sleep 0.1
  done
  address=$(awk '/^listening on / {print $3; exit}' "$scratch/out")
  if [ -z "$address" ]; then
    echo "training: $baseline did not start" >&2
    exit 1
  fi
  wrk -t1 -c32 -d"$TRAIN" -s scripts/patch.lua "http://$address/me/security" >"$scratch/wrk"
  if grep '^status ' "$scratch/wrk" | grep -v '^status 200' >&2; then
    echo "training $baseline: answers other than 200 (above)" >&2
    exit 1
  fi
  # bench_servers returns from main on SIGINT only; a SIGTERM would end it without its profile.
  kill -INT "$server"
  stopped "$server"
done
"$profdata" merge -o "$work/baselines.profdata" "$work/raw"
RUSTFLAGS="-Cprofile-use=$work/baselines.profdata" CARGO_TARGET_DIR="$work/use" \
  cargo build --release --quiet -p security-update-tools --bin bench_servers
cp "$work/use/release/bench_servers" "$work/bench_servers"
echo "built $work/bench_servers"
