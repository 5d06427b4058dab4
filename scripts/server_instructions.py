#!/usr/bin/env python3
"""Instructions the server spends per PATCH, logs on and off: callgrind, no wall clock.

Starts target/release/security-update-server under callgrind with instrumentation off (memory
store, dev mode, one worker thread, the bench schema), sends 200 PATCHes over one keep-alive
connection to warm it up, turns it on (`callgrind_control -i on`), sends 2,000
more, turns it off, and stops the server: the instructions collected, divided by 2,000, are
what a PATCH costs, with start-up (key generation takes a random time) and shutdown left
out. Every PATCH changes the object (a revision in `notes`). The two baselines of the benches,
`floor` and `axum_baseline`, served by `bench_servers` the way the server serves our stack, are
measured the same way in the same run, so the figures can be read side by side.

Usage: scripts/server_instructions.py   (needs valgrind; builds nothing: cargo build --release
-p security-update-server -p security-update-tools first; SERVER=path measures another build
of the server; BASELINES=0 leaves the baselines out; STORE=embedded serves from the embedded
store, in a new data directory for each run, instead of memory: every PATCH is then one
commit of one write, the group commit's worst case, committer thread included; ATOMICS=1 also
counts the atomic instructions a PATCH executes, which cost far more than their count here;
CACHE=1 simulates the caches and prints their misses a PATCH, CACHE_ARGS="--I1=65536,8,64"
and the like giving other caches than this machine's; KEEP=1 prints where each run's
callgrind output is, for callgrind_annotate)
"""
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import atomics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = ('{"riskProfile":{"level":"medium","score":42,"reasons":["mfa-missing","legacy-auth"],'
        '"reviewedBy":null},"notes":"quarterly review of sign-in risk for this account, '
        'revision %d","lastReviewed":"2026-11-29T01:02:03Z","obsolete":null}')


WARM_UP, MEASURED = 200, 2000
# ATOMICS=1 also counts the locked instructions a PATCH executes (scripts/atomics.py).
ATOMICS = ["--dump-instr=yes"] if os.environ.get("ATOMICS") == "1" else []
# CACHE=1 also simulates the caches and prints the misses a PATCH (first-level instruction and
# data caches, last level), where the time that instructions miss goes.
CACHE = (["--cache-sim=yes"] + os.environ.get("CACHE_ARGS", "").split()
         if os.environ.get("CACHE") == "1" else [])


OURS = [os.environ.get("SERVER", os.path.join(ROOT, "target/release/security-update-server")),
        "--memory", "--listen", "127.0.0.1:0", "--worker-threads", "1", "--rate-limit", "0",
        "--schema", os.path.join(ROOT, "scripts/bench-schema.json")]
# The baselines' token and path (benches/support); ours prints its dev token on line 3.
BASELINE_TOKEN = "bench-token-0123456789abcdef"


def baseline(name):
    return [os.path.join(ROOT, "target/release/bench_servers"), name, "127.0.0.1:0", "1"]


def client(out, server, path, err=None):
    """Waits for the server writing to `out` to listen; returns `patch(revision)`, which sends
    it one PATCH over a keep-alive connection and checks the 200."""
    deadline = time.monotonic() + 120
    while True:
        lines = open(out).read().splitlines()
        started = any(line.startswith("listening on ") for line in lines)
        if started and (path != "/beta/me/security" or len(lines) >= 3):
            break
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the server did not start:\n" + (open(err).read() if err else ""))
        time.sleep(0.2)
    address = next(line.split()[2] for line in lines if line.startswith("listening on "))
    token = lines[2].strip() if path == "/beta/me/security" else BASELINE_TOKEN
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)

    def patch(revision):
        connection.request("PATCH", path, body=BODY % revision, headers={
            "Authorization": "Bearer " + token, "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"PATCH answered {response.status}")

    return patch


def per_request(command, rust_log="info", path="/beta/me/security"):
    work = tempfile.mkdtemp()
    if command is OURS and os.environ.get("STORE", "memory") == "embedded":
        command = [os.path.join(work, "data") if arg == "--memory" else arg
                   for arg in command]
        command.insert(command.index(os.path.join(work, "data")), "--data")
    out, err = os.path.join(work, "out"), os.path.join(work, "err")
    env = dict(os.environ, RUST_LOG=rust_log)
    with open(out, "w") as stdout, open(err, "w") as stderr:
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             "--callgrind-out-file=" + os.path.join(work, "cg")] + ATOMICS + CACHE + command,
            stdout=stdout, stderr=stderr, env=env, cwd=ROOT)
    try:
        patch = client(out, server, path, err)
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
    if os.environ.get("KEEP") == "1":
        print(f"  (callgrind output: {os.path.join(work, 'cg')})")
    refs = re.findall(r"I\s+refs:\s+([\d,]+)", open(err).read())
    if CACHE:
        log = open(err).read()
        misses = []
        for name in ["I1", "D1", "LLi", "LLd"]:
            found = re.findall(name + r"\s+misses:\s+([\d,]+)", log)
            if found:
                misses.append(f"{name} {int(found[-1].replace(',', '')) / MEASURED:,.0f}")
        print(f"  (cache misses per PATCH: {', '.join(misses)})")
    if ATOMICS:
        locked, _ = atomics.count(os.path.join(work, "cg"))
        print(f"  ({locked / MEASURED:.1f} atomic instructions per PATCH)")
    return int(refs[-1].replace(",", "")) / MEASURED


def main():
    figures = {}
    for label, rust_log in [("logs (RUST_LOG unset: info)", "info"),
                            ("all logging off", "off,security_update::audit=off")]:
        figures[label] = per_request(OURS, rust_log)
        print(f"{label}: {figures[label]:,.0f} instructions per PATCH")
    if os.environ.get("BASELINES", "1") == "0":
        return
    for name in ["floor", "axum"]:
        count = per_request(baseline(name), path="/me/security")
        ratios = ", ".join(f"{label.split(' (')[0]} {value / count:.2f}x"
                           for label, value in figures.items())
        print(f"{name}: {count:,.0f} instructions per PATCH (ours against it: {ratios})")


if __name__ == "__main__":
    sys.exit(main())
