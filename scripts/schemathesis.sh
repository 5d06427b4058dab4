#!/usr/bin/env bash
# Fuzzes the server against openapi/openapi.json with Schemathesis (pinned below).
#
#   scripts/schemathesis.sh                       # uses target/release/security-update-server
#   SERVER_BIN=/path/to/server scripts/schemathesis.sh
#
# Environment:
#   SERVER_BIN           server binary (default target/release/security-update-server)
#   SCHEMATHESIS_VENV    venv to create or reuse (default /tmp/st-venv)
#   ST_MAX_EXAMPLES      test cases per operation and phase (default 50)
#   ST_MAX_TIME          time budget of the API run, seconds (default 240; fuzzing repeats
#                        until it is spent)
#   ST_PROBES_MAX_TIME   time budget of the probes' run, seconds (default 30)
#   ST_SEED              random seed (default 1, for reproducible runs)
#   ST_REPORT_DIR        where the JUnit / NDJSON reports go (default a temp dir)
# Extra arguments are passed to `schemathesis run`.
#
# The server runs in memory, rate limit off, on a free loopback port; it is stopped on exit.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER_BIN=${SERVER_BIN:-$ROOT/target/release/security-update-server}
VENV=${SCHEMATHESIS_VENV:-/tmp/st-venv}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-50}
MAX_TIME=${ST_MAX_TIME:-240}
PROBES_MAX_TIME=${ST_PROBES_MAX_TIME:-30}
SEED=${ST_SEED:-1}

[ -x "$SERVER_BIN" ] || { echo "no server binary at $SERVER_BIN (build it, or set SERVER_BIN)" >&2; exit 2; }

if [ ! -x "$VENV/bin/schemathesis" ] ||
   [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

WORK=$(mktemp -d)
REPORT_DIR=${ST_REPORT_DIR:-$WORK/report}
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK/server.out" "$WORK/server.err" "$WORK/schemathesis.toml"
}
trap cleanup EXIT

"$SERVER_BIN" --memory --rate-limit 0 --listen 127.0.0.1:0 >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!

ADDR=
for _ in $(seq 1 100); do
    ADDR=$(awk '/^listening on /{print $3; exit}' "$WORK/server.out")
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; echo "server exited" >&2; exit 2; }
    sleep 0.1
done
[ -n "$ADDR" ] || { echo "server did not print 'listening on' within 10 s" >&2; exit 2; }
# Dev mode prints the token on the line after "token for tenant ...".
TOKEN=$(awk '/^token for /{getline; print; exit}' "$WORK/server.out")
[ -n "$TOKEN" ] || { echo "no dev token in the server's output" >&2; exit 2; }
echo "server $SERVER_BIN at $ADDR (pid $SERVER_PID)"

# Schemathesis settings the CLI has no flags for:
# - a syntactically valid If-Match that names no current ETag is rightly 412 (RFC 9110
#   §13.1.1); Schemathesis cannot know the current ETag, so 412 counts as accepting valid data;
# - a batch's cross-field rules (unique ids, dependsOn naming ids of the same batch, no cycle,
#   a Content-Type header with every body, valid header names) are beyond OpenAPI 3.0, so
#   schema-valid random batches are often rightly 400: for POST /$batch alone, 400 counts as
#   an expected answer to schema-valid data (a per-operation `enabled = false` is not honoured
#   by this Schemathesis version; every other check still runs on the batch).
cat >"$WORK/schemathesis.toml" <<'TOML'
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]

[[operations]]
include-path = "/$batch"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "412", "429", "5xx"]
TOML

# One worker: with two, Hypothesis's lambda descriptions call ast.parse from two threads, which
# CPython 3.11.7 can fail with "SystemError: AST constructor recursion depth mismatch".
run() {
    local budget=$1
    shift
    # Run from $WORK: Schemathesis keeps its replay data in ./.schemathesis.
    (cd "$WORK" && timeout $((budget + 120)) "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" \
        run "$ROOT/openapi/openapi.json" \
        --checks all \
        --max-examples "$MAX_EXAMPLES" \
        --max-time "$budget" \
        --seed "$SEED" \
        --workers 1 \
        --request-timeout 10 \
        "$@")
}

status=0
# The API, under /beta. Schemathesis applies --url to every path (it ignores the path-level
# `servers` of the probes), so the probes get a run of their own below.
echo "== API (/beta) =="
run "$MAX_TIME" --url "http://$ADDR/beta" \
    --header "Authorization: Bearer $TOKEN" \
    --exclude-path-regex '^/(healthz|readyz)$' \
    --report junit,ndjson --report-dir "$REPORT_DIR/api" \
    "$@" || status=1
# The probes, at the root, with no token.
echo "== probes (/healthz, /readyz) =="
run "$PROBES_MAX_TIME" --url "http://$ADDR" \
    --include-path-regex '^/(healthz|readyz)$' \
    --report junit,ndjson --report-dir "$REPORT_DIR/probes" \
    "$@" || status=1
echo "reports in $REPORT_DIR; replay data (st replay ID) in $WORK/.schemathesis"
exit "$status"
