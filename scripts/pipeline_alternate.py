#!/usr/bin/env python3
"""In-process time of several builds of profile_pipeline, side by side: each build's
`rounds R` run N times, the builds' order rotated each time, and the medians of
ours-jwt / floor, axum / ours-jwt and the absolute times reported per build.

Why: one `profile_pipeline rounds 40` differs from the next by a few percent here, and
the floor and axum are compiled into each build too, so their code moves with ours. In the
twenty-second session (benches/README.md), three sets (30, 30 and 20 runs) had the floor
of one build 7% slower than the same floor in the other (1,630 against 1,520 ns a PATCH):
that build's ratio read 1.25x against 1.43x, while ours-jwt itself ran 6% faster. A later set of the
same two binaries had their floors 1% apart and ours 1% apart. Built with every function
and loop aligned to 64 bytes, the floors of the two builds stayed within 1.5% of each other
in three sets. So: compare ours' absolute times across builds as well as the ratios, over
more than one set, and control the code's placement with

  RUSTFLAGS="-C llvm-args=-align-all-functions=6 -C llvm-args=-align-loops=64" \
    CARGO_TARGET_DIR=/tmp/aligned cargo build --release -p security-update-tools \
    --bin profile_pipeline

(a build of its own: the flags change every crate), for each commit compared.

Usage: scripts/pipeline_alternate.py BUILD [BUILD ...]   (paths to profile_pipeline builds;
       N=30 alternations, ROUNDS=100 rounds each, by default)
"""
import os
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"floor (\d+) ns, axum (\d+) ns, ours-jwt (\d+) ns")


def run(build, rounds):
    out = subprocess.run([build, "rounds", str(rounds)], check=True, capture_output=True,
                         text=True)
    found = LINE.search(out.stdout + out.stderr)
    if not found:
        sys.exit(f"{build}: no medians in its output")
    return tuple(int(n) for n in found.groups())


def main():
    builds = sys.argv[1:]
    if not builds:
        sys.exit(__doc__)
    times = int(os.environ.get("N", "30"))
    rounds = int(os.environ.get("ROUNDS", "100"))
    seen = {build: [] for build in builds}
    for i in range(times):
        for j in range(len(builds)):
            build = builds[(i + j) % len(builds)]
            seen[build].append(run(build, rounds))
    for build, runs in seen.items():
        floor = statistics.median(f for f, _, _ in runs)
        axum = statistics.median(a for _, a, _ in runs)
        ours = statistics.median(o for _, _, o in runs)
        ratio = [o / f for f, _, o in runs]
        speed = [a / o for _, a, o in runs]
        print(f"{build}: ours-jwt / floor median {statistics.median(ratio):.3f} "
              f"({min(ratio):.3f}-{max(ratio):.3f}), axum / ours-jwt "
              f"{statistics.median(speed):.3f}; ns a PATCH: floor {floor:.0f}, "
              f"axum {axum:.0f}, ours-jwt {ours:.0f} ({len(runs)} runs)")


if __name__ == "__main__":
    sys.exit(main())
