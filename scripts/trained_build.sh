# Sourced by scripts/pgo_build.sh and scripts/bolt_build.sh, the builds trained on loopback:
# one training run of an instrumented build of the server, and the check of the build made
# from it. The caller sets `scratch` (a scratch directory) and `TRAIN` (how long wrk runs),
# and keeps the running server's pid in the global `server`, which it kills on exit.

# binary, store arguments...: starts `binary` on that store, sends it PATCHes with wrk for
# TRAIN (scripts/patch.lua, logs as shipped, every answer checked to be 200) and a few requests
# of every other kind the server answers (scripts/pgo_requests.py), so that those are not laid
# out as never run; then stops it with SIGTERM and waits for its clean exit, which is when an
# instrumented build writes what it counted.
train_server() {
  local binary="$1"
  shift
  "$binary" "$@" --listen 127.0.0.1:0 --worker-threads 1 --rate-limit 0 \
    --schema scripts/bench-schema.json >"$scratch/out" 2>/dev/null &
  server=$!
  for _ in $(seq 1 150); do
    [ "$(grep -c '' "$scratch/out" 2>/dev/null)" -ge 3 ] && break
    sleep 0.1
  done
  local address token
  address=$(awk '/^listening on / {print $3; exit}' "$scratch/out")
  token=$(sed -n '3p' "$scratch/out")
  if [ -z "$address" ] || [ -z "$token" ]; then
    echo "training: the server did not start" >&2
    exit 1
  fi
  TOKEN="$token" wrk -t1 -c32 -d"$TRAIN" -s scripts/patch.lua \
    "http://$address/beta/me/security" >"$scratch/wrk"
  if grep '^status ' "$scratch/wrk" | grep -v '^status 200' >&2; then
    echo "training: answers other than 200 (above)" >&2
    exit 1
  fi
  python3 scripts/pgo_requests.py "$address" "$token"
  kill -TERM "$server"
  if ! wait "$server"; then
    echo "training: the server did not exit cleanly, so wrote nothing" >&2
    exit 1
  fi
  server=""
}

# binary, what made it: the same binary in every way a test can see: the server's integration
# tests, run against it (SECURITY_UPDATE_SERVER_BINARY).
check_server() {
  echo "built $1"
  SECURITY_UPDATE_SERVER_BINARY="$1" \
    cargo test --quiet -p security-update-server --tests >"$scratch/tests" 2>&1 || {
    cat "$scratch/tests" >&2
    echo "the integration tests failed against the $2 build (above)" >&2
    exit 1
  }
  echo "the server's integration tests pass against it"
}
