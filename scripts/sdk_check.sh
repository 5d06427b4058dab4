#!/usr/bin/env bash
# Checks the server through Microsoft's Python SDK for Graph beta (scripts/sdk_check.py).
#
#   scripts/sdk_check.sh                          # uses target/release/security-update-server
#   SERVER_BIN=/path/to/server scripts/sdk_check.sh
#
# Environment:
#   SERVER_BIN   server binary (default target/release/security-update-server)
#   SDK_VENV     venv to create or reuse (default /tmp/sdk-venv)
#
# The server runs in memory, rate limit off, on a free loopback port; it is stopped on exit.
set -euo pipefail

# msgraph-beta-sdk and what it resolved to, pinned. msgraph-core's batch module imports
# `deprecated` without declaring it, so it is installed explicitly.
PACKAGES=(
    msgraph-beta-sdk==1.66.0
    msgraph-core==1.5.2
    microsoft-kiota-abstractions==1.16.0
    microsoft-kiota-authentication-azure==1.16.0
    microsoft-kiota-http==1.16.0
    microsoft-kiota-serialization-json==1.16.0
    Deprecated==1.3.1
)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER_BIN=${SERVER_BIN:-$ROOT/target/release/security-update-server}
VENV=${SDK_VENV:-/tmp/sdk-venv}

[ -x "$SERVER_BIN" ] || { echo "no server binary at $SERVER_BIN (build it, or set SERVER_BIN)" >&2; exit 2; }

if ! "$VENV/bin/python" -c 'import msgraph_beta, deprecated' 2>/dev/null ||
   [ "$("$VENV/bin/pip" freeze 2>/dev/null | grep -c -x -F -f <(printf '%s\n' "${PACKAGES[@]}"))" != "${#PACKAGES[@]}" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
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
# Dev mode prints the token on the line after "token for tenant ... user ID ...".
TOKEN=$(awk '/^token for /{getline; print; exit}' "$WORK/server.out")
USER_ID=$(awk '/^token for /{for (i = 1; i < NF; i++) if ($i == "user") {print $(i + 1); exit}}' "$WORK/server.out")
[ -n "$TOKEN" ] && [ -n "$USER_ID" ] || { echo "no dev token in the server's output" >&2; exit 2; }
echo "server $SERVER_BIN at $ADDR (pid $SERVER_PID), dev user $USER_ID"

started=$(date +%s.%N)
status=0
timeout 300 "$VENV/bin/python" "$ROOT/scripts/sdk_check.py" --addr "$ADDR" --token "$TOKEN" --user-id "$USER_ID" || status=$?
echo "sdk_check.sh: whole run $(echo "$(date +%s.%N) - $started" | bc -l | xargs printf '%.2f')s (python start-up and imports included), exit $status"
exit "$status"
