#!/usr/bin/env bash
# A release build of security-update-server laid out by LLVM's BOLT, for operators who build the
# binary they deploy. A PATCH runs through ~115 KiB of machine code, in 64-byte lines it uses
# only part of, against a 32 KiB instruction cache (benches/README.md, twenty-fifth session);
# BOLT rewrites the linked binary so that the blocks a request runs sit together, in the order
# they run, and the rest apart. Unlike PGO it needs no second compilation, and it
# works on any build linked with its relocations.
#
# 1. builds the server with its relocations kept (-Wl,--emit-relocs), in target/bolt/build;
# 2. instruments it (llvm-bolt -instrument: counters in the binary itself, no hardware
#    profiling, which this kind of machine does not offer);
# 3. trains it on loopback as scripts/pgo_build.sh does: PATCHes with wrk (scripts/patch.lua),
#    logs as shipped, on the memory store, then on the embedded one (each TRAIN seconds), plus a
#    few requests of every other kind the server answers (scripts/pgo_requests.py);
# 4. lays the binary out from the counts into target/bolt/security-update-server;
# 5. runs the server's integration tests against it (SECURITY_UPDATE_SERVER_BINARY).
# Behaviour is the plain build's: BOLT moves code, nothing else. Nothing here is part of the
# test command or CI.
#
# PGO=1 lays out the profile-guided build instead: compiled with scripts/pgo_build.sh's
# profile (make it first), everything else as above, into target/bolt-pgo/.
#
# Usage: scripts/bolt_build.sh   (env: TRAIN=8s PGO=0; needs Debian's bolt-19 and wrk,
# installed if missing, and Python 3)
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN="${TRAIN:-8s}"
work="$PWD/target/bolt"
flags="-Clink-arg=-Wl,--emit-relocs"
if [ "${PGO:-0}" = 1 ]; then
  profile="$PWD/target/pgo/server.profdata"
  if [ ! -s "$profile" ]; then
    echo "PGO=1 lays out the PGO build: run scripts/pgo_build.sh first ($profile)" >&2
    exit 1
  fi
  flags="$flags -Cprofile-use=$profile"
  work="$PWD/target/bolt-pgo"
fi
bolt=/usr/lib/llvm-19/bin

if [ ! -x "$bolt/llvm-bolt" ]; then
  echo "installing BOLT (Debian package bolt-19)..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq bolt-19 >/dev/null
fi
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi

RUSTFLAGS="$flags" CARGO_TARGET_DIR="$work/build" \
  cargo build --release --quiet -p security-update-server
plain="$work/build/release/security-update-server"
rm -rf "$work/profile"
mkdir -p "$work/profile"
# One counts file a process: the two training runs write theirs side by side.
"$bolt/llvm-bolt" "$plain" -instrument -o "$work/instrumented" \
  --instrumentation-file="$work/profile/counts" --instrumentation-file-append-pid \
  >"$work/instrument.log" 2>&1

scratch="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$scratch"; }
trap cleanup EXIT

source scripts/trained_build.sh
train_server "$work/instrumented" --memory
train_server "$work/instrumented" --data "$scratch/data"
counts=("$work"/profile/counts.*)
if [ "${#counts[@]}" -ne 2 ] || [ ! -s "${counts[0]}" ]; then
  echo "training: expected two counts files in $work/profile" >&2
  exit 1
fi
"$bolt/merge-fdata" "${counts[@]}" >"$work/counts.fdata" 2>"$work/merge.log"
# Blocks ordered for the paths taken (ext-tsp), functions by how they call each other
# (cdsort), the never-run parts of each function split out of the hot region, landing pads
# included; identical functions folded.
"$bolt/llvm-bolt" "$plain" -o "$work/security-update-server" -data="$work/counts.fdata" \
  -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold \
  -split-eh -icf=1 -use-gnu-stack -dyno-stats >"$work/optimize.log" 2>&1
grep -E 'functions in the binary .* have non-empty execution profile|splitting separates' \
  "$work/optimize.log" || true
check_server "$work/security-update-server" BOLT
