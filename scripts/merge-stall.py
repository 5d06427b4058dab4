#!/usr/bin/env python3
"""How long a small request waits while big merges run (issue 10, finding 3).

Starts the release server (memory store, an open --schema, 2 worker threads, rate limit off),
then alternates runs: a prober sends GET /healthz on its own connection every 5 ms and records
each latency; in "load" runs two writers meanwhile PATCH ~1 MiB bodies that rewrite 30,000
members each (the merge, validation and serialization of such a body run on the blocking pool;
before they ran on the async workers and held everything behind them). Prints p50/p99 of the
probe for quiet and loaded runs, and the median ratio. Bounded: RUNS pairs of SECONDS each.

    cargo build --release -p security-update-server
    python3 scripts/merge-stall.py            # env: RUNS=3 SECONDS=5
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

RUNS = int(os.environ.get("RUNS", "3"))
SECONDS = float(os.environ.get("SECONDS", "5"))
BINARY = os.environ.get("SERVER_BIN", "target/release/security-update-server")


def start_server(schema_path):
    proc = subprocess.Popen(
        [BINARY, "--memory", "--listen", "127.0.0.1:0", "--schema", schema_path,
         "--rate-limit", "0", "--worker-threads", "2", "--max-body", "4000000",
         "--max-object-bytes", "16000000", "--request-timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    token, addr = None, None
    deadline = time.time() + 30
    for line in proc.stdout:
        if line.startswith("eyJ"):
            token = line.strip()
        if line.startswith("listening on "):
            addr = line.split()[2]
            break
        if time.time() > deadline:
            break
    if not (token and addr):
        proc.kill()
        sys.exit("the server did not start")
    host, port = addr.rsplit(":", 1)
    return proc, host, int(port), token


def body(tag):
    return json.dumps({f"m{i:06}": f"{tag}-{i:020}" for i in range(30000)})


def writer(host, port, token, stop, errors):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    n = 0
    while not stop.is_set():
        n += 1
        conn.request("PATCH", "/beta/me/security", body(f"w{n}"),
                     {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            errors.append(response.status)


def probe(host, port, seconds):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    latencies = []
    end = time.time() + seconds
    while time.time() < end:
        started = time.perf_counter()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.005)
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def main():
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as schema:
        schema.write('{"type": "object"}')
    proc, host, port, token = start_server(schema.name)
    try:
        rows, ratios50, ratios99 = [], [], []
        for run in range(RUNS):
            quiet = probe(host, port, SECONDS)
            stop, errors = threading.Event(), []
            threads = [threading.Thread(target=writer, args=(host, port, token, stop, errors))
                       for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            loaded = probe(host, port, SECONDS)
            stop.set()
            for t in threads:
                t.join(timeout=120)
            rows.append((run + 1, quiet, loaded, len(errors)))
            ratios50.append(loaded[0] / quiet[0])
            ratios99.append(loaded[1] / quiet[1])
        print("| pair | quiet p50 | quiet p99 | loaded p50 | loaded p99 | writer errors |")
        print("|---|---|---|---|---|---|")
        for run, quiet, loaded, errs in rows:
            print(f"| {run} | {quiet[0]*1e3:.2f} ms | {quiet[1]*1e3:.2f} ms | "
                  f"{loaded[0]*1e3:.2f} ms | {loaded[1]*1e3:.2f} ms | {errs} |")
        print(f"\nmedian ratio loaded/quiet: p50 {statistics.median(ratios50):.2f}x, "
              f"p99 {statistics.median(ratios99):.2f}x")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.unlink(schema.name)


if __name__ == "__main__":
    main()
