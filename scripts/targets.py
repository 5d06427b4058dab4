#!/usr/bin/env python3
"""Issue 12's speed targets on this host, each measured the way benches/README.md measures it,
side by side in one run, and judged: one table instead of an hour of commands by hand.

Why: every session lands on another host (Intel and AMD, 32 or 64 KiB of first-level
instruction cache a core, disks 2-6x apart), and the targets are ratios whose verdicts move
with it. This runs each target's own command, prints the figures it read and whether the
target is met in each run, and prints the host's caches and one bound worth knowing before
judging the loopback target against axum: a server no faster than the floor cannot be more
than floor / axum times axum's speed, so where that is under 1.3 no build of ours meets
"≥ 1.3x axum" without being faster than the floor itself.

  in process   `profile_pipeline rounds 40` and `rounds 40 every`, RUNS times each:
               ≤ 1.3x the floor's time, ≥ 1.6x axum's speed
  loopback     `scripts/loopback_alternate.py` (CYCLES cycles): logging off ≥ 0.9x the floor
               and ≥ 1.3x axum, shipped (default logs) ≥ 0.8x the floor, the logs' cost ≤ ~10%
  durable      `soak --seconds 6 --connections 64 --spread --server-cpu 0`, memory, embedded
               (`--durable`) and PostgreSQL (`--postgres`), RUNS rounds: embedded ≥ 0.5x
               memory's requests/s, p99 ≤ 5x memory's, ≥ 3x PostgreSQL's, 0 lost updates
  hot object   `cargo bench --bench contention -- 8_tasks_shared` (HOT=1 only: it builds the
               benches, minutes): ours ≥ 1.0x axum's speed

Usage: scripts/targets.py   (needs the release builds: cargo build --release -p
security-update-server -p security-update-tools; wrk (loopback_alternate.py installs it);
PostgreSQL at PG, postgres://postgres@127.0.0.1:5432/test by default. Env: RUNS=3, CYCLES=12,
SKIP=loopback,durable,... to leave parts out, HOT=1 for the hot object, SERVER=path for
another build of the server). Speed stays here and in benches: nothing asserts a time.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target/release")
RUNS = int(os.environ.get("RUNS", "3"))
SKIP = set(filter(None, os.environ.get("SKIP", "").split(",")))
PG = os.environ.get("PG", "postgres://postgres@127.0.0.1:5432/test")
SERVER = os.environ.get("SERVER", os.path.join(RELEASE, "security-update-server"))


def run(command, timeout, env=None):
    """`command`'s standard output; its standard error too when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                            env=dict(os.environ, **(env or {})))
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n"
                         f"{result.stdout}\n{result.stderr}")
    return result.stdout


def verdict(met):
    return "met" if met else "NOT met"


def host():
    """The CPU and its caches a core, from sysfs (lscpu sums them over the cores)."""
    model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    caches = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    for index in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if not index.startswith("index"):
            continue

        def read(name, index=index):
            with open(os.path.join(base, index, name)) as f:
                return f.read().strip()

        kind = {"Instruction": "i", "Data": "d"}.get(read("type"), "")
        caches.append(f"L{read('level')}{kind} {read('size')}")
    return f"{model}, {os.cpu_count()} cores; a core's caches: {', '.join(caches)}"


def in_process(rows):
    pattern = re.compile(r"ours-jwt / floor ([\d.]+)x; axum / floor ([\d.]+)x; "
                         r"ours-jwt is ([\d.]+)x axum's speed")
    pipeline = os.path.join(RELEASE, "profile_pipeline")
    for label, extra in (("in process, the bench's PATCH", []),
                         ("in process, every member changing", ["every"])):
        figures = []
        for _ in range(RUNS):
            found = pattern.search(run([pipeline, "rounds", "40", *extra], 600))
            if not found:
                raise SystemExit("profile_pipeline printed no ratios")
            figures.append((float(found.group(1)), float(found.group(3))))
        floor = [f for f, _ in figures]
        speed = [s for _, s in figures]
        rows.append((label + ": ≤ 1.3x floor",
                     " / ".join(f"{f:.3f}" for f in floor),
                     f"{sum(f <= 1.3 for f in floor)} of {RUNS} runs"))
        rows.append((label + ": ≥ 1.6x axum's speed",
                     " / ".join(f"{s:.3f}" for s in speed),
                     f"{sum(s >= 1.6 for s in speed)} of {RUNS} runs"))


def loopback(rows):
    out = run([sys.executable, os.path.join(ROOT, "scripts/loopback_alternate.py")], 3600,
              env={"SERVER": SERVER})
    medians = {}
    for line in out.splitlines():
        found = re.match(r"(.+?)\s+median ([\d.]+)", line)
        if found:
            medians[found.group(1).strip()] = float(found.group(2))
    off, shipped = medians["off / floor"], medians["shipped / floor"]
    off_axum, logs = medians["off / axum"], medians["shipped / off (the logs' cost)"]
    axum = medians["axum / floor"]
    rows.append(("loopback, logging off: ≥ 0.9x floor", f"{off:.3f}", verdict(off >= 0.9)))
    rows.append(("loopback, logging off: ≥ 1.3x axum",
                 f"{off_axum:.3f} (the floor itself: {1 / axum:.3f}x axum)",
                 verdict(off_axum >= 1.3)))
    rows.append(("loopback, shipped: ≥ 0.8x floor", f"{shipped:.3f}", verdict(shipped >= 0.8)))
    rows.append(("loopback, the logs' cost: ≤ ~10%", f"{logs:.3f}", verdict(logs >= 0.9)))


def soak(extra):
    out = run([os.path.join(RELEASE, "soak"), "--seconds", "6", "--connections", "64",
               "--spread", "--server-cpu", "0", "--server", SERVER, *extra], 300)
    rate = float(re.search(r"requests: \d+, ([\d.]+) requests/s", out).group(1))
    p99 = int(re.search(r"p99 (\d+) us", out).group(1))
    lost = int(re.search(r"lost updates: (\d+)", out).group(1))
    # The durable stores' runs time the disk beside them: a synced 4 KiB write's p50.
    disk = re.findall(r"p50 (\d+) us, p90 \d+ us (?:before|after)", out)
    return rate, p99, lost, "/".join(disk)


def durable(rows):
    ratios, tails, against_pg, lost = [], [], [], 0
    for _ in range(RUNS):
        memory = soak([])
        embedded = soak(["--durable"])
        postgres = soak(["--postgres", PG])
        ratios.append(embedded[0] / memory[0])
        tails.append(embedded[1] / memory[1])
        against_pg.append(embedded[0] / postgres[0])
        lost += memory[2] + embedded[2] + postgres[2]
        print(f"  soak round: memory {memory[0]:,.0f}, embedded {embedded[0]:,.0f}, "
              f"PostgreSQL {postgres[0]:,.0f} requests/s; p99 {memory[1]} / {embedded[1]} / "
              f"{postgres[1]} us; a synced 4 KiB write's p50 before/after the embedded run "
              f"{embedded[3]} us, PostgreSQL's {postgres[3]} us", file=sys.stderr)
    rows.append(("durable: embedded ≥ 0.5x memory", " / ".join(f"{r:.3f}" for r in ratios),
                 f"{sum(r >= 0.5 for r in ratios)} of {RUNS} rounds"))
    rows.append(("durable: p99 ≤ 5x memory's", " / ".join(f"{t:.2f}" for t in tails),
                 f"{sum(t <= 5 for t in tails)} of {RUNS} rounds"))
    rows.append(("durable: ≥ 3x PostgreSQL", " / ".join(f"{p:.2f}" for p in against_pg),
                 f"{sum(p >= 3 for p in against_pg)} of {RUNS} rounds"))
    rows.append(("durable: no lost update", str(lost), verdict(lost == 0)))


def hot_object(rows):
    out = run(["cargo", "bench", "--bench", "contention", "--", "8_tasks_shared"], 3600)
    times = {}
    # criterion: "<group>/<name>  time:   [low mid high]", the middle one its estimate.
    for found in re.finditer(r"(\S*8_tasks_shared\S*)\s+time:\s+\[\S+ \S+ ([\d.]+) (\S+)",
                             out):
        scale = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}[found.group(3)]
        times[found.group(1)] = float(found.group(2)) * scale
    ours = [t for name, t in times.items() if "ours" in name or "security" in name]
    axum = [t for name, t in times.items() if "axum" in name]
    if not ours or not axum:
        raise SystemExit(f"no times for ours and axum in the contention bench:\n{out}")
    speed = axum[0] / ours[0]
    rows.append(("hot object: ≥ 1.0x axum's speed",
                 f"{speed:.2f} (ours {ours[0]:.1f} µs, axum {axum[0]:.1f} µs)",
                 verdict(speed >= 1.0)))


def main():
    print(host())
    rows = []
    parts = [("in-process", in_process), ("loopback", loopback), ("durable", durable)]
    if os.environ.get("HOT") == "1":
        parts.append(("hot", hot_object))
    for name, part in parts:
        if name not in SKIP:
            print(f"measuring {name}...", file=sys.stderr)
            part(rows)
    width = max(len(row[0]) for row in rows)
    for target, figures, judged in rows:
        print(f"{target:{width}}  {figures:44}  {judged}")
    if any(row[0].startswith("loopback, logging off: ≥ 1.3x") for row in rows):
        print("(a server no faster than the floor is at most floor / axum times axum's speed)")


if __name__ == "__main__":
    sys.exit(main())
