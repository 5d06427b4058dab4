#!/usr/bin/env python3
"""Loopback throughput in short alternating runs, for issue 12's loopback targets.

`loopback_rounds.sh` starts every contender afresh in each round and runs it for seconds; a
round takes a minute, and the host's speed drifts within it by as much as the changes it is
asked to see (benches/README.md: 10-25% from round to round). This script starts each server
once, then runs wrk against them in turn, a short run each (DURATION, 2 s by default), for
CYCLES cycles: every contender is measured within seconds of every other, many times, and
the figures are the medians of the ratios taken within each cycle.

Contenders, in this order in every cycle:
  floor, axum      the two baselines (tools/src/bin/bench_servers.rs)
  shipped          security-update-server as deployed, RUST_LOG unset (info): SERVER=path,
                   target/release's build by default (SHIPPED=0 leaves it out)
  off              the same binary with every line off, the audit included
  <label>_off      for each label=path in BUILDS (comma separated): that build, logging off
                   (a PGO or BOLT build, an earlier commit's: to be seen beside this one)

Each server has one worker thread pinned to core 0 and wrk (-t1, CONNECTIONS connections)
runs on core 1, 127.0.0.1 only, every run bounded by DURATION. Every request changes the
object (scripts/patch.lua); a run with any answer but 200 fails the script. The servers wait
idle while the others run.

Usage: scripts/loopback_alternate.py   (needs wrk and the release builds of
security-update-server and bench_servers; env: CYCLES=12 DURATION=2s CONNECTIONS=32
SERVER=path BENCH_SERVERS=path BUILDS=pgo=path,bolt=path SHIPPED=0)
"""
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import server_instructions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CYCLES = int(os.environ.get("CYCLES", "12"))
DURATION = os.environ.get("DURATION", "2s")
CONNECTIONS = os.environ.get("CONNECTIONS", "32")
SERVER = os.environ.get("SERVER", os.path.join(ROOT, "target/release/security-update-server"))
BENCH_SERVERS = os.environ.get("BENCH_SERVERS",
                               os.path.join(ROOT, "target/release/bench_servers"))
LOGGING_OFF = "off,security_update::audit=off"


def start(work, name, command, env=None):
    """Starts `command` on core 0; returns (process, address, path, token) once it listens."""
    out = os.path.join(work, name + ".out")
    process = subprocess.Popen(["taskset", "-c", "0"] + command, cwd=ROOT,
                               stdout=open(out, "w"), stderr=subprocess.DEVNULL,
                               env=dict(os.environ, **(env or {})))
    ours = env is not None
    for _ in range(300):
        lines = open(out).read().splitlines()
        listening = [line for line in lines if line.startswith("listening on ")]
        # Ours prints its dev token on the third line, before it listens.
        if listening:
            address = listening[0].split()[2]
            if ours:
                return process, address, "/beta/me/security", lines[2].strip()
            return process, address, "/me/security", server_instructions.BASELINE_TOKEN
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{name} did not start (see {out})")


def ours(work, name, binary, rust_log):
    # The server as server_instructions.py runs it, from `binary`.
    return start(work, name, [binary] + server_instructions.OURS[1:], env={"RUST_LOG": rust_log})


def measure(name, server):
    """One wrk run against `server`; its requests/s."""
    _, address, path, token = server
    result = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}",
         "-s", os.path.join(ROOT, "scripts/patch.lua"), f"http://{address}{path}"],
        capture_output=True, text=True, env=dict(os.environ, TOKEN=token), cwd=ROOT,
        timeout=120)
    statuses = [line for line in result.stdout.splitlines() if line.startswith("status ")]
    if not statuses or any(not line.startswith("status 200") for line in statuses):
        raise SystemExit(f"{name} answered something else than 200:\n{result.stdout}")
    for line in result.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise SystemExit(f"no requests/s from wrk for {name}:\n{result.stdout}")


def main():
    if shutil.which("wrk") is None:
        print("installing wrk (Debian package)...", file=sys.stderr)
        subprocess.run("apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null",
                       shell=True, check=True)
    builds = [item.split("=", 1) for item in os.environ.get("BUILDS", "").split(",") if item]
    servers = {}
    with tempfile.TemporaryDirectory() as work:
        try:
            servers["floor"] = start(work, "floor", [BENCH_SERVERS, "floor", "127.0.0.1:0", "1"])
            servers["axum"] = start(work, "axum", [BENCH_SERVERS, "axum", "127.0.0.1:0", "1"])
            if os.environ.get("SHIPPED", "1") != "0":
                servers["shipped"] = ours(work, "shipped", SERVER, "info")
            servers["off"] = ours(work, "off", SERVER, LOGGING_OFF)
            for label, path in builds:
                servers[label + "_off"] = ours(work, label + "_off", path, LOGGING_OFF)
            cycles = []
            for cycle in range(CYCLES):
                figures = {name: measure(name, server) for name, server in servers.items()}
                print(f"cycle {cycle + 1}: " + ", ".join(f"{name} {rps:,.0f}"
                                                         for name, rps in figures.items()),
                      flush=True)
                cycles.append(figures)
        finally:
            for process, *_ in servers.values():
                process.terminate()
                process.wait(timeout=30)
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}; {CYCLES} cycles; "
          f"wrk -t1 -c{CONNECTIONS} -d{DURATION}; one server worker on core 0, wrk on core 1")
    names = list(servers)
    print("requests/s, medians: " + ", ".join(
        f"{name} {statistics.median(c[name] for c in cycles):,.0f}" for name in names))
    rows = collections.OrderedDict()
    for base in ["floor", "axum"]:
        for name in names:
            if name not in ("floor", "axum") or (base == "floor" and name == "axum"):
                rows[f"{name} / {base}"] = [c[name] / c[base] for c in cycles]
    for label, _ in builds:
        rows[f"{label}_off / off"] = [c[label + "_off"] / c["off"] for c in cycles]
    if "shipped" in names:
        rows["shipped / off (the logs' cost)"] = [c["shipped"] / c["off"] for c in cycles]
    for label, values in rows.items():
        quartiles = (statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1
                     else values * 3)
        print(f"{label:32s} median {statistics.median(values):.3f}   "
              f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}, "
              f"range {min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    sys.exit(main())
