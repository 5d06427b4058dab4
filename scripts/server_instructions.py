#!/usr/bin/env python3
"""Instructions the server spends per PATCH, logs on and off: callgrind, no wall clock.

Starts target/release/security-update-server under callgrind (memory store, dev mode, one
worker thread, the bench schema), sends N sequential PATCHes over one keep-alive connection,
stops it with SIGTERM, and reads callgrind's total. Run once with 1,000 and once with 3,000
PATCHes per setting; per request = (total at 3,000 - total at 1,000) / 2,000, which leaves
start-up and shutdown out. Every PATCH changes the object (a revision in `notes`).

Usage: scripts/server_instructions.py   (needs valgrind; builds nothing: cargo build --release first)
"""
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = ('{"riskProfile":{"level":"medium","score":42,"reasons":["mfa-missing","legacy-auth"],'
        '"reviewedBy":null},"notes":"quarterly review of sign-in risk for this account, '
        'revision %d","lastReviewed":"2026-11-29T01:02:03Z","obsolete":null}')


def total_instructions(rust_log, requests):
    work = tempfile.mkdtemp()
    out, err = os.path.join(work, "out"), os.path.join(work, "err")
    env = dict(os.environ, RUST_LOG=rust_log)
    with open(out, "w") as stdout, open(err, "w") as stderr:
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(work, "cg"),
             os.path.join(ROOT, "target/release/security-update-server"), "--memory",
             "--listen", "127.0.0.1:0", "--worker-threads", "1", "--rate-limit", "0",
             "--schema", os.path.join(ROOT, "scripts/bench-schema.json")],
            stdout=stdout, stderr=stderr, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:
            lines = open(out).read().splitlines()
            if any(line.startswith("listening on ") for line in lines) and len(lines) >= 3:
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start:\n" + open(err).read())
            time.sleep(0.2)
        address = next(line.split()[2] for line in lines if line.startswith("listening on "))
        token = lines[2].strip()
        host, port = address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        for revision in range(requests):
            connection.request("PATCH", "/beta/me/security", body=BODY % revision, headers={
                "Authorization": "Bearer " + token, "Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"PATCH answered {response.status}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    refs = re.findall(r"I\s+refs:\s+([\d,]+)", open(err).read())
    return int(refs[-1].replace(",", ""))


def main():
    for label, rust_log in [("logs (RUST_LOG unset: info)", "info"),
                            ("all logging off", "off,security_update::audit=off")]:
        low, high = total_instructions(rust_log, 1000), total_instructions(rust_log, 3000)
        print(f"{label}: {(high - low) / 2000:,.0f} instructions per PATCH")


if __name__ == "__main__":
    sys.exit(main())
