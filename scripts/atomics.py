#!/usr/bin/env python3
"""Atomic read-modify-write instructions a request executes, counted exactly (callgrind).

An instruction count takes a `lock`-prefixed instruction (an `Arc` or `Bytes` count, a mutex)
as one instruction, yet it drains the core's store buffer: a chain of them on one counter
takes ~6-9 ns each here, uncontended, the time of 20-40 ordinary instructions. So this counts
them: callgrind with `--dump-instr=yes` gives every instruction address its execution count;
`objdump` says which addresses hold `lock ...` or `xchg` with memory (implicitly locked); the
sum over a run, for every object in the process (the binary, libc), is the count.

What it showed (benches/README.md, eleventh session): in process, ours-jwt went from 82 to 64
a PATCH (floor 40, 15 of them in glibc's `malloc_consolidate`) with no change in time beyond
the noise of `profile_pipeline rounds` (+-3%): out of order, most of them overlap other work.
The instruction cache explains more of the gap between our time and the floor's
(`valgrind --tool=callgrind --cache-sim=yes`: L1i misses a PATCH).

Usage:
  scripts/atomics.py [CONTENDER ...]     in process: target/release/profile_pipeline (or
                                         PIPELINE=path), runs of
                                         N and 2N requests, (count(2N) - count(N)) / N; the
                                         contenders default to floor, axum, ours-jwt;
                                         TOP=n also lists the n functions with the most
  import atomics; atomics.count(cg)      from another script (server_instructions.py, with
                                         ATOMICS=1): the count in one callgrind output file

Needs valgrind and objdump; builds nothing (cargo build --release -p security-update-tools).
"""
import collections
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 2000

_LOCKED = re.compile(r"^\s*([0-9a-f]+):\s+(?:lock\s|xchg\s+%\w+,\s*-?\w*\()")
_objects = {}


def _locked_addresses(path):
    """Addresses of locked instructions, as callgrind writes them (offsets in the file)."""
    if path not in _objects:
        dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path],
                              capture_output=True, text=True).stdout
        _objects[path] = {int(locked.group(1), 16) for locked in map(_LOCKED.match,
                                                                      dump.splitlines())
                          if locked}
    return _objects[path]


def _named(line, table):
    """The number of a compressed name line (`fn=(12) name` or `fn=(12)`), noting the name."""
    key, _, name = line.strip().partition(" ")
    number = key.split("=", 1)[1]
    if name:
        table[number] = name
    return number


def executions(cg_file):
    """Every address's execution count in one `--dump-instr=yes` callgrind output, as
    `(object path, function, address, count)` (an address may come more than once, under
    different call contexts; callers sum)."""
    names, functions, position, call_line = {}, {}, 0, False
    path, function = "", "?"
    with open(cg_file) as lines:
        for line in lines:
            # `ob=(n) path` names an object, `fn=(n) name` a function, the first time only
            # (compressed names); `cob=`/`cfn=` name the callee of a call the same way.
            kind = line.split("=", 1)[0]
            if kind in ("ob", "cob", "fn", "cfn"):
                table = names if kind.endswith("ob") else functions
                number = _named(line, table)
                if kind == "ob":
                    path = table.get(number, "")
                elif kind == "fn":
                    function = table.get(number, "?")
                continue
            if line.startswith("calls="):
                call_line = True
                continue
            if not line or line[0] not in "0123456789+-*":
                continue
            fields = line.split()
            where = fields[0]
            if where.startswith("0x"):
                position = int(where, 16)
            elif where[0] in "+-":
                step = int(where[1:], 16) if where[1:].startswith("0x") else int(where[1:])
                position += step if where[0] == "+" else -step
            if call_line:
                # The line after `calls=` is the call's inclusive cost, not this address's.
                call_line = False
                continue
            if len(fields) > 2:
                yield path, function, position, int(fields[2])


def count(cg_file):
    """Locked instructions executed in one `--dump-instr=yes` callgrind output, in total and
    by function."""
    by_function = collections.Counter()
    total = 0
    objects = {}
    for path, function, address, executed in executions(cg_file):
        if path not in objects:
            objects[path] = _locked_addresses(path) if os.path.isfile(path) else frozenset()
        if address in objects[path]:
            total += executed
            by_function[function] += executed
    return total, by_function


def callgrind_in_process(contender, requests):
    """A `--dump-instr=yes` callgrind output of `profile_pipeline CONTENDER REQUESTS`."""
    out = os.path.join(tempfile.mkdtemp(), "cg")
    pipeline = os.environ.get("PIPELINE", os.path.join(ROOT, "target/release/profile_pipeline"))
    subprocess.run(["valgrind", "--tool=callgrind", "--dump-instr=yes",
                    "--callgrind-out-file=" + out, pipeline, contender, str(requests)],
                   check=True, capture_output=True)
    return out


def in_process(contender, requests):
    return count(callgrind_in_process(contender, requests))


def main():
    contenders = sys.argv[1:] or ["floor", "axum", "ours-jwt"]
    top = int(os.environ.get("TOP", "0"))
    for contender in contenders:
        (once, by_once), (twice, by_twice) = in_process(contender, N), in_process(contender, 2 * N)
        print(f"{contender}: {(twice - once) / N:.1f} atomic instructions per PATCH")
        by_twice.subtract(by_once)
        for function, executed in by_twice.most_common(top):
            print(f"  {executed / N:6.1f}  {function[:140]}")


if __name__ == "__main__":
    sys.exit(main())
