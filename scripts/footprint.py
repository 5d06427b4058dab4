#!/usr/bin/env python3
"""The code a request runs, in instruction-cache lines: how much of the 32 KB L1i one PATCH
needs (callgrind, exact, so it does not move with the machine's noise).

Why: in process our PATCH runs 1.24x the floor's instructions but takes ~1.66x its time, and
callgrind's cache simulation puts the difference in L1i misses (benches/README.md, eleventh
session). A miss count depends on the simulated cache; this counts the cause: the distinct
64-byte lines of code that run on every request. A line is counted when the addresses in it
ran at least once a request on average, (count(2N) - count(N)) / N >= THRESHOLD (0.5); a
line shared by two functions counts once in the total and under each in the listing.

Usage:
  scripts/footprint.py [CONTENDER ...]   target/release/profile_pipeline (or PIPELINE=path),
                                         contenders default to floor, axum, ours-jwt;
                                         TOP=n lists the n functions with the most lines
"""
import collections
import os
import sys

import atomics

N = 2000
LINE = 64


def per_address(cg_file):
    counts = collections.Counter()
    owners = {}
    for path, function, address, executed in atomics.executions(cg_file):
        key = (path, address)
        counts[key] += executed
        owners.setdefault(key, function)
    return counts, owners


def hot_addresses(contender, threshold):
    """The addresses that ran at least `threshold` times a request on average, as
    {(object path, address): function}."""
    once, _ = per_address(atomics.callgrind_in_process(contender, N))
    twice, owners = per_address(atomics.callgrind_in_process(contender, 2 * N))
    return {key: owners[key] for key, executed in twice.items()
            if (executed - once.get(key, 0)) / N >= threshold}


def footprint(contender, threshold):
    lines, by_function = set(), collections.defaultdict(set)
    hot = hot_addresses(contender, threshold)
    for (path, address), function in hot.items():
        line = (path, address // LINE)
        lines.add(line)
        by_function[function].add(line)
    return lines, by_function, len(hot)


def main():
    contenders = sys.argv[1:] or ["floor", "axum", "ours-jwt"]
    top = int(os.environ.get("TOP", "0"))
    threshold = float(os.environ.get("THRESHOLD", "0.5"))
    for contender in contenders:
        lines, by_function, instructions = footprint(contender, threshold)
        print(f"{contender}: {len(lines)} lines of code a PATCH ({len(lines) * LINE / 1024:.1f}"
              f" KiB), {instructions} distinct instructions")
        ranked = sorted(by_function.items(), key=lambda item: -len(item[1]))
        for function, its_lines in ranked[:top]:
            print(f"  {len(its_lines):5}  {function[:140]}")


if __name__ == "__main__":
    sys.exit(main())
