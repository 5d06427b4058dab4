#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo fuzz (libFuzzer) on the stable toolchain.
#
#   scripts/fuzz.sh              # every target, 300 s each
#   SECONDS_PER_TARGET=60 scripts/fuzz.sh merge jwt
#
# The address sanitizer (cargo fuzz's default) needs nightly, so targets run with
# `--sanitizer none`: Rust's own checks (bounds, overflow in debug assertions, panics) are the
# oracle. Corpora live in fuzz/corpus/<target> and are committed; a crash leaves its input in
# fuzz/artifacts/<target>, to be turned into a regression test. Prints, per target, the
# executions and libFuzzer's final cov:/ft: figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-300}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(merge jwt route_headers pipeline); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (crates.io)..." >&2
  cargo install cargo-fuzz --locked
fi

# Seed the corpora from the proptest corpus the first time.
seed() { # target, file
  local dir="fuzz/corpus/$1"
  mkdir -p "$dir"
  if [ -z "$(ls -A "$dir")" ] && [ -f "tests/fuzz-corpus/$2" ]; then
    local i=0
    while IFS= read -r line; do printf '%s' "$line" >"$dir/seed-$i"; i=$((i + 1)); done <"tests/fuzz-corpus/$2"
  fi
}
seed merge bodies.txt
seed jwt tokens.txt
seed route_headers paths.txt
seed pipeline bodies.txt

summary=()
for target in "${targets[@]}"; do
  log="$(mktemp)"
  echo "== $target (${SECONDS_PER_TARGET}s)" >&2
  status=0
  cargo fuzz run --sanitizer none --release "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{print $2}' | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | awk '{print $2}')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | awk '{print $2}')
  corpus=$(ls "fuzz/corpus/$target" | wc -l)
  summary+=("$target runs=${runs:-?} cov=${cov:-?} ft=${ft:-?} corpus=$corpus exit=$status")
  if [ "$status" -ne 0 ]; then
    echo "!! $target stopped with status $status; its log:" >&2
    tail -40 "$log" >&2
  fi
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
