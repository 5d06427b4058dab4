#!/usr/bin/env python3
"""Instructions the server spends per PATCH, logs on and off: callgrind, no wall clock.

Starts target/release/security-update-server under callgrind with instrumentation off (memory
store, dev mode, one worker thread, the bench schema), sends 200 PATCHes over one keep-alive
connection to warm it up, turns it on (`callgrind_control -i on`), sends 2,000
more, turns it off, and stops the server: the instructions collected, divided by 2,000, are
what a PATCH costs, with start-up (key generation takes a random time) and shutdown left
out. Every PATCH changes the object (a revision in `notes`).

Usage: scripts/server_instructions.py   (needs valgrind; builds nothing: cargo build --release
first; SERVER=path measures another build of the server)
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


WARM_UP, MEASURED = 200, 2000


def per_request(rust_log):
    work = tempfile.mkdtemp()
    out, err = os.path.join(work, "out"), os.path.join(work, "err")
    env = dict(os.environ, RUST_LOG=rust_log)
    with open(out, "w") as stdout, open(err, "w") as stderr:
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             "--callgrind-out-file=" + os.path.join(work, "cg"),
             os.environ.get("SERVER", os.path.join(ROOT, "target/release/security-update-server")),
             "--memory",
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

        def patch(revision):
            connection.request("PATCH", "/beta/me/security", body=BODY % revision, headers={
                "Authorization": "Bearer " + token, "Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"PATCH answered {response.status}")

        for revision in range(WARM_UP):
            patch(revision)
        control = ["callgrind_control", "-i"]
        subprocess.run(control + ["on", str(server.pid)], check=True, capture_output=True)
        for revision in range(WARM_UP, WARM_UP + MEASURED):
            patch(revision)
        subprocess.run(control + ["off", str(server.pid)], check=True, capture_output=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    refs = re.findall(r"I\s+refs:\s+([\d,]+)", open(err).read())
    return int(refs[-1].replace(",", "")) / MEASURED


def main():
    for label, rust_log in [("logs (RUST_LOG unset: info)", "info"),
                            ("all logging off", "off,security_update::audit=off")]:
        print(f"{label}: {per_request(rust_log):,.0f} instructions per PATCH")


if __name__ == "__main__":
    sys.exit(main())
