#!/usr/bin/env python3
"""Bytes a PATCH copies through libc's memmove/memcpy in process, for floor, axum and ours-jwt.

callgrind counts a `rep movsb` (how glibc copies a few hundred bytes and more) as a few
instructions whatever its length, so `pipeline_instructions.sh` cannot see what moving
requests, responses and layer futures costs; time can, but too noisily here to tell a few
hundred bytes apart. This counts the copies themselves: a uprobe on each of glibc's memmove
entry points records its length argument, and `profile_pipeline CONTENDER N` runs with
N = 10,000 and 20,000; the difference over 10,000 is what one PATCH copies, harness included
(the harness's share is the same for every contender: building the request, collecting the
answer). Copies the compiler inlines (fixed sizes up to ~128 bytes) are not calls and are not
counted.

`scripts/memmove_bytes.py server` counts the same over loopback instead: the server (memory
store, one worker, the bench schema; logs on, then off) and the two baselines served by
`bench_servers`, each sent 200 PATCHes to warm up and then 2,000 over one keep-alive
connection while perf records the server's copies (`server_instructions.py`'s set-up, with
perf in place of callgrind): hyper's reading and writing included.

Usage: scripts/memmove_bytes.py [server]   (root; perf and Debian's libc6-dbg, for the symbols
of glibc's internal memmove variants; builds nothing: cargo build --release -p
security-update-server -p security-update-tools first; PIPELINE=path or SERVER=path measures
another build)
"""
import os
import re
import signal
import subprocess
import sys
import tempfile

import server_instructions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPELINE = os.environ.get("PIPELINE", os.path.join(ROOT, "target/release/profile_pipeline"))
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
# glibc's memmove entry points (memcpy's are aliases of them: the same code) are found in
# its debug symbols: which one runs depends on the CPU and on GLIBC_TUNABLES. The fortified
# `_chk` ones jump into these and are left out, so that no copy counts twice.
def variants():
    listed = subprocess.run(["perf", "probe", "-F", "-x", LIBC, "--filter", "__memmove_*"],
                            check=True, capture_output=True, text=True).stdout.split()
    return [name for name in listed if name.startswith("__memmove_") and "_chk" not in name]


LOW, HIGH = 10_000, 20_000


def add_probes():
    events = []
    for n, symbol in enumerate(variants()):
        name = f"su_mm{n}"
        done = subprocess.run(["perf", "probe", "-q", "-x", LIBC, "-a",
                               f"{name}={symbol} len=%dx:u64"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            events.append(f"probe_libc:{name}")
    if not events:
        sys.exit("no memmove probe could be placed: is libc6-dbg installed, and are we root?")
    return events


def remove_probes():
    subprocess.run(["perf", "probe", "-q", "-d", "probe_libc:su_mm*"], capture_output=True)


def lengths(data):
    script = subprocess.run(["perf", "script", "-i", data, "-F", "trace"], check=True,
                            capture_output=True, text=True).stdout
    return [int(m.group(1)) for m in re.finditer(r"len=(\d+)", script)]


def copies(contender, requests, events):
    """(calls, bytes) of one run of `profile_pipeline contender requests`."""
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "perf.data")
        record = ["perf", "record", "-q", "-o", data]
        for event in events:
            record += ["-e", event]
        done = subprocess.run(record + [PIPELINE, contender, str(requests)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        checked(done.returncode, done.stderr)
        found = lengths(data)
    if not found:
        sys.exit(f"no copy counted for {contender}: are the probes on the variant this CPU runs?")
    return len(found), sum(found)


def checked(returncode, stderr):
    """Stops the script when perf failed or lost events: a count short of some is wrong.
    perf ends on the SIGINT it is stopped with by raising it again once its data is out."""
    if returncode not in (0, -signal.SIGINT) or "lost" in stderr.lower():
        sys.exit(f"perf failed ({returncode}) or lost events:\n" + stderr)


def served(command, events, rust_log="info", path="/beta/me/security"):
    """(calls, bytes) a PATCH costs the server started with `command`. perf attaches with its
    events off and turns them on and off through its control FIFO, acknowledged, so exactly
    the measured PATCHes are counted."""
    with tempfile.TemporaryDirectory() as work:
        out, err = os.path.join(work, "out"), os.path.join(work, "err")
        with open(out, "w") as stdout, open(err, "w") as stderr:
            server = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                      env=dict(os.environ, RUST_LOG=rust_log), cwd=ROOT)
        try:
            patch = server_instructions.client(out, server, path, err)
            for revision in range(server_instructions.WARM_UP):
                patch(revision)
            data = os.path.join(work, "perf.data")
            control, ack = os.path.join(work, "control"), os.path.join(work, "ack")
            os.mkfifo(control)
            os.mkfifo(ack)
            record = ["perf", "record", "-q", "-o", data, "-D", "-1",
                      f"--control=fifo:{control},{ack}", "-p", str(server.pid)]
            for event in events:
                record += ["-e", event]
            perf = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            # Read-write: opening either end of a FIFO so does not wait for the other.
            to_perf = os.open(control, os.O_RDWR)
            from_perf = os.open(ack, os.O_RDWR)

            def tell(command):
                os.write(to_perf, command + b"\n")
                answer = os.read(from_perf, 16)
                if answer.strip(b"\0\n ") != b"ack":
                    sys.exit(f"perf did not acknowledge {command!r}: {answer!r}")

            tell(b"enable")
            first = server_instructions.WARM_UP
            for revision in range(first, first + server_instructions.MEASURED):
                patch(revision)
            tell(b"disable")
            perf.send_signal(signal.SIGINT)
            _, perf_err = perf.communicate(timeout=60)
            checked(perf.returncode, perf_err)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        found = lengths(data)
    if not found:
        sys.exit("no copy counted: are the probes on the variant this CPU runs?")
    return len(found) / server_instructions.MEASURED, sum(found) / server_instructions.MEASURED


def main():
    remove_probes()
    events = add_probes()
    try:
        if sys.argv[1:] == ["server"]:
            for label, rust_log in [("ours, logs on", "info"),
                                    ("ours, logging off", "off,security_update::audit=off")]:
                calls, moved = served(server_instructions.OURS, events, rust_log)
                print(f"{label}: {moved:,.0f} bytes in {calls:.1f} memmove calls a PATCH")
            for name in ["floor", "axum"]:
                calls, moved = served(server_instructions.baseline(name), events,
                                      path="/me/security")
                print(f"{name}: {moved:,.0f} bytes in {calls:.1f} memmove calls a PATCH")
            return
        for contender in ["floor", "axum", "ours-jwt"]:
            low_calls, low_bytes = copies(contender, LOW, events)
            high_calls, high_bytes = copies(contender, HIGH, events)
            calls = (high_calls - low_calls) / (HIGH - LOW)
            moved = (high_bytes - low_bytes) / (HIGH - LOW)
            print(f"{contender}: {moved:,.0f} bytes in {calls:.1f} memmove calls a PATCH")
    finally:
        remove_probes()


if __name__ == "__main__":
    main()
