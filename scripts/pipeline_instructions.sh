#!/usr/bin/env bash
# Instructions a PATCH costs in process (callgrind), for floor, axum and ours-jwt, in two scopes:
#   whole: everything profile_pipeline does for a PATCH, the harness's building of the request
#          and its full parse of the answer included (each differs a little by contender: our
#          answer is longer, our token too);
#   timed: only inside the runtime's block_on, the scope `profile_pipeline rounds` and the
#          criterion benches time (the stack, and collecting the answer's body).
# Each figure is (count(30,000) - count(10,000)) / 20,000, so start-up drops out.
# Usage: scripts/pipeline_instructions.sh   (PIPELINE=path for another build; builds nothing:
#        cargo build --release -p security-update-tools --bin profile_pipeline)
set -euo pipefail
cd "$(dirname "$0")/.."
pipeline=${PIPELINE:-target/release/profile_pipeline}
count() { # contender requests [valgrind options...]
  local contender=$1 requests=$2
  shift 2
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" "$pipeline" "$contender" "$requests" 2>&1 |
    sed -n 's/.*refs: *//p' | tr -d ,
}
for contender in floor axum ours-jwt; do
  whole=$(( ($(count "$contender" 30000) - $(count "$contender" 10000)) / 20000 ))
  scope=--toggle-collect='tokio::runtime::runtime::Runtime::block_on*'
  timed=$(( ($(count "$contender" 30000 "$scope") - $(count "$contender" 10000 "$scope")) / 20000 ))
  echo "$contender: whole $whole, timed $timed instructions a PATCH"
done
