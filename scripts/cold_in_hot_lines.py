#!/usr/bin/env python3
"""The code that lies in the lines a PATCH runs but does not run itself, by the source line
of ours that put it there: what splitting hot from cold code by hand could take out.

Why: a PATCH of ours runs ~1,300 lines of code in process against the floor's ~670, and a
third of the bytes in those lines are instructions it jumps over (`footprint.py`,
`request_footprint.py`). Those bytes cost instruction-cache lines only if they sit in lines
the PATCH runs; moved out of line (a `#[cold]` function, `std::hint::cold_path`), each 64 of
them is a line less. This finds them: callgrind gives the instructions that ran at least once
a request on average (as `footprint.py` counts them), objdump the instructions of the lines
they lie in, and addr2line the source of each instruction that did not run, inlining
included: they are listed by function and by the outermost source line of this repository's
code in their inlining chain (what to change to move them). Padding (`nop`, `int3`) is
counted apart.

Usage: scripts/cold_in_hot_lines.py [CONTENDER]   (ours-jwt-every by default; needs a build
of profile_pipeline with line tables: CARGO_TARGET_DIR=/tmp/lines
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p security-update-tools
--bin profile_pipeline, given as PIPELINE=/tmp/lines/release/profile_pipeline; TOP=n rows,
40 by default)
"""
import bisect
import collections
import os
import re
import subprocess
import sys

import footprint
import source_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Padding between functions and before aligned loops, as objdump writes it.
PADDING = re.compile(r"((data16|cs|ds)\s+)*nop|int3")


def instructions(binary):
    """Every instruction of `binary`: sorted (address, text)."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        match = re.match(r"\s+([0-9a-f]+):\t(.*)", line)
        if match:
            found.append((int(match.group(1), 16), match.group(2)))
    found.sort()
    return found


def main():
    contender = sys.argv[1] if len(sys.argv) > 1 else "ours-jwt-every"
    top = int(os.environ.get("TOP", "40"))
    binary = os.path.realpath(os.environ.get(
        "PIPELINE", os.path.join(ROOT, "target/release/profile_pipeline")))
    os.environ["PIPELINE"] = binary
    ran, owner_of_line = set(), {}
    for (path, address), function in footprint.hot_addresses(contender, 0.5).items():
        if os.path.realpath(path) == binary:
            ran.add(address)
            owner_of_line.setdefault(address // footprint.LINE, function)
    listing = instructions(binary)
    starts = [address for address, _ in listing]
    skipped, padding = [], 0
    for line in owner_of_line:
        index = bisect.bisect_left(starts, line * footprint.LINE)
        while index < len(listing) and listing[index][0] < (line + 1) * footprint.LINE:
            address, text = listing[index]
            size = listing[index + 1][0] - address if index + 1 < len(listing) else 0
            if PADDING.match(text):
                padding += size
            elif address not in ran:
                skipped.append((address, size, owner_of_line[line]))
            index += 1
    chains = source_lines.inlining_chains(binary, [address for address, _, _ in skipped])
    by_place, by_source = collections.Counter(), collections.Counter()
    for address, size, function in skipped:
        ours = [os.path.relpath(place, ROOT)
                for place in chains.get(address, []) if place.startswith(ROOT + "/")]
        by_place[(function, ours[-1] if ours else "-")] += size
        if ours:
            by_source[ours[-1]] += size
    total = sum(size for _, size, _ in skipped)
    print(f"{contender}: {len(owner_of_line)} lines of the binary's code a PATCH, "
          f"{total:,} bytes in them it does not run ({total / footprint.LINE:.0f} lines' worth; "
          f"padding, not counted, {padding:,} bytes more)")
    print(f"  of them under a source line of this repository: {sum(by_source.values()):,} bytes "
          f"({sum(by_source.values()) / footprint.LINE:.0f} lines' worth) from {len(by_source)} "
          f"source lines, the most from one {max(by_source.values(), default=0)} bytes; the ten "
          f"with the most {sum(size for _, size in by_source.most_common(10)):,} bytes")
    print("  bytes  function callgrind names for the line  outermost source line of ours")
    for (function, place), size in by_place.most_common(top):
        print(f"  {size:5}  {function[:64]:64}  {place}")


if __name__ == "__main__":
    sys.exit(main())
