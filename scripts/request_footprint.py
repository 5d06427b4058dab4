#!/usr/bin/env python3
"""How many distinct cache lines of code and of data one PATCH touches, server by server.

Where `server_instructions.py` counts instructions, this counts the memory a request runs
through: every 64-byte line of code it executes and of data it reads or writes, each once.
A core's first-level caches hold 32 KiB each (512 lines); a request whose lines do not fit
fetches them again from the next level every time, and that is time the instruction count
does not show (benches/README.md, twenty-fourth session: the server at 1.05x the floor's
instructions ran at 0.88x its speed).

Each server runs under `valgrind --tool=lackey --trace-mem=yes` (memory store, one worker
thread, logging off, the bench schema, as `server_instructions.py` runs it) and gets WARM_UP
PATCHes, then MEASURED more, over one keep-alive connection, every one changing the object.
The trace is cut into requests at an instruction of hyper's `recv_msg` (which takes each
request) that ran exactly once a PATCH; the figures are the median over the measured
requests. Code lines are named by the function they lie in (the binary's symbols; the
shared libraries as one), data lines by the mapping they lie in.
The baselines `floor` and `axum` (tools/src/bin/bench_servers.rs) are measured the same way.

Usage: scripts/request_footprint.py   (needs valgrind and the release builds of
security-update-server and bench_servers; SERVER=path and BENCH_SERVERS=path measure other
builds; BASELINES=0 leaves the baselines out; TOP=n functions listed, 25 by default; SOURCES=1
also names each code line by the source file its instructions come from, inlined code
included, and each data line by its mapping and the file of the code that first touched it:
it needs builds with line tables, e.g. CARGO_TARGET_DIR=/tmp/lines
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p security-update-server
-p security-update-tools; with SOURCES=1, FUNCTIONS_OF=text also lists the functions whose
code lines come from source files whose path contains text, e.g. header/map.rs: which callers
inlined that file's code); TOUCHERS=1 lists the data lines of each mapping by the function
whose instruction first touched them, the shared libraries' code as one: which code a
thread's stack or the statics are touched by
"""
import bisect
import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile

import server_instructions
import source_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARM_UP, MEASURED = 40, 12
# Where the trace is cut into requests: hyper's HTTP/1 server hands each request to the
# service here (a function of its own in every server measured, not inlined).
MARKER_FUNCTION = ("<hyper::proto::h1::dispatch::Server<", "Dispatch>::recv_msg")
LINE = 64
PAGE = 4096
# A first-level cache of 32 KiB, 8-way (this machine's, instructions and data alike).
SETS, WAYS = 64, 8
SERVER = os.environ.get("SERVER", os.path.join(ROOT, "target/release/security-update-server"))
BENCH_SERVERS = os.environ.get("BENCH_SERVERS",
                               os.path.join(ROOT, "target/release/bench_servers"))


def run(command, ours, work):
    """Runs `command` under lackey, sends it the PATCHes; returns (trace path, mappings)."""
    trace = os.path.join(work, "trace")
    out, err = os.path.join(work, "out"), os.path.join(work, "err")
    env = dict(os.environ, RUST_LOG="off,security_update::audit=off")
    with open(out, "w") as stdout, open(err, "w") as stderr:
        server = subprocess.Popen(
            ["valgrind", "--tool=lackey", "--trace-mem=yes", "--log-file=" + trace] + command,
            stdout=stdout, stderr=stderr, env=env, cwd=ROOT)
    try:
        patch = server_instructions.client(
            out, server, "/beta/me/security" if ours else "/me/security", err)
        for revision in range(WARM_UP + MEASURED):
            patch(revision)
        mappings = open(f"/proc/{server.pid}/maps").read().splitlines()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=300)
    return trace, mappings


def trace_events(trace, sizes=None):
    """The trace's accesses in order: (True, address) for code, (False, address) for data;
    each instruction's length into `sizes`, if given."""
    with open(trace) as lines:
        for line in lines:
            if line.startswith("I"):
                address, size = line[3:].split(",", 1)
                address = int(address, 16)
                if sizes is not None:
                    sizes[address] = int(size)
                yield True, address
            elif line[:2] in (" L", " S", " M"):
                yield False, int(line[3:].split(",", 1)[0], 16)


def requests(trace, in_marker_function):
    """The measured requests, each as (code lines, data lines with the instruction that first
    touched each), and every code address they ran: the trace cut at an
    instruction that ran once a PATCH, the one first run latest (not start-up's), taken in
    the function that takes each request (`in_marker_function`): elsewhere, a timer's
    or the runtime's instruction that happened to run as many times could be taken, and the
    trace cut at the wrong places. Three passes over the trace (hundreds of megabytes), none
    holding it."""
    total = WARM_UP + MEASURED
    counts = collections.Counter(address for is_code, address in trace_events(trace) if is_code)
    once = {address for address, count in counts.items()
            if count == total and in_marker_function(address)}
    if not once:
        raise SystemExit("no instruction of hyper's recv_msg ran exactly once a PATCH")
    first = {}
    for index, (is_code, address) in enumerate(trace_events(trace)):
        if is_code and address in once and address not in first:
            first[address] = index
    marker = max(first, key=first.get)
    measured, seen, current, addresses, last, sizes = [], 0, None, set(), None, {}
    for is_code, address in trace_events(trace, sizes):
        if is_code and address == marker:
            if current is not None:
                measured.append(current)
            seen += 1
            current = (set(), {}) if seen > WARM_UP else None
        if is_code:
            last = address
        if current is not None:
            if is_code:
                current[0].add(address // LINE)
                addresses.add(address)
            else:
                # Each data line with the instruction that touched it first.
                current[1].setdefault(address // LINE, last)
    # The last request's lines run on past its end (to the shutdown): left out.
    return measured, {address: sizes[address] for address in addresses}


def symbols(binary, mappings):
    """Start addresses and names of `binary`'s functions, where they were loaded."""
    name = os.path.realpath(binary)
    base = min(int(line.split("-")[0], 16) for line in mappings
               if line.endswith(name) or line.endswith(os.path.basename(binary)))
    text = subprocess.run(["nm", "-n", "-C", binary], capture_output=True, text=True).stdout
    table = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] and parts[1] in "tTwW":
            table.append((int(parts[0], 16) + base, parts[2]))
    return table, base


def marker_function(table):
    """Whether an address lies in the function of hyper's HTTP/1 server that takes each
    request ([`MARKER_FUNCTION`]), which every server measured here runs once a request;
    `table`: the binary's functions ([`symbols`])."""
    ranges = [(start, table[index + 1][0]) for index, (start, name) in enumerate(table[:-1])
              if name.startswith(MARKER_FUNCTION[0]) and name.endswith(MARKER_FUNCTION[1])]
    if not ranges:
        raise SystemExit(f"no function named like {MARKER_FUNCTION}")
    return lambda address: any(low <= address < high for low, high in ranges)


def region(address, mappings, binary):
    for line in mappings:
        fields = line.split()
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high:
            path = fields[5] if len(fields) > 5 else ""
            if path.endswith(os.path.basename(binary)):
                return "the binary's statics"
            if path == "[heap]":
                return "the main heap"
            if path.startswith("/"):
                return "shared libraries' data"
            if high - low == 2 << 20:
                return "a thread's stack (a 2 MiB mapping: tokio's workers)"
            return "anonymous (allocator arenas; the main heap, under valgrind)"
    return "unmapped at the end"


def report(label, binary, command, ours):
    with tempfile.TemporaryDirectory() as work:
        trace, mappings = run(command, ours, work)
        table, base = symbols(binary, mappings)
        measured, addresses = requests(trace, marker_function(table))
    code = statistics.median(len(c) for c, _ in measured)
    data = statistics.median(len(d) for _, d in measured)
    print(f"{label}: {code:,.0f} code lines ({code * LINE / 1024:,.0f} KiB), "
          f"{data:,.0f} data lines ({data * LINE / 1024:,.0f} KiB) a PATCH "
          f"(median of {len(measured)})")
    code_lines, data_lines = measured[len(measured) // 2]
    print(f"  density: {density(code_lines, addresses):.0%} of the bytes of those code lines "
          "are instructions the PATCH runs (the rest: code it jumps over, padding); they lie "
          f"in {len({line * LINE // PAGE for line in code_lines})} pages of 4 KiB (the data "
          f"lines in {len({line * LINE // PAGE for line in data_lines})})")
    print(f"  past a first-level cache's ways ({SETS} sets of {WAYS}, 32 KiB): code "
          f"{past_ways(code_lines)}, data {past_ways(data_lines)} lines, in "
          f"{sets_over(code_lines)} and {sets_over(data_lines)} sets")
    starts = [start for start, _ in table]
    end_of_binary = max(int(line.split("-")[1].split()[0], 16) for line in mappings
                        if line.endswith(os.path.basename(binary)))

    def function_of(address):
        """The function `address` lies in, the shared libraries as one."""
        if address is None:
            return "?"
        if address >= end_of_binary:
            return "(shared libraries)"
        index = bisect.bisect_right(starts, address) - 1
        return table[index][1] if index >= 0 else "?"

    by_function = collections.Counter(function_of(line * LINE) for line in code_lines)
    by_region = collections.Counter(region(line * LINE, mappings, binary) for line in data_lines)
    print("  data lines by mapping: " + ", ".join(f"{name} {n}" for name, n in
                                                  by_region.most_common()))
    print("  code lines by function:")
    for name, n in by_function.most_common(int(os.environ.get("TOP", "25"))):
        print(f"    {n:5d}  {name[:140]}")
    if os.environ.get("SOURCES") == "1":
        by_source(binary, (base, end_of_binary), code_lines, data_lines, addresses, mappings,
                  function_of)
    if os.environ.get("TOUCHERS") == "1":
        touched_by = collections.defaultdict(collections.Counter)
        for line, toucher in data_lines.items():
            touched_by[region(line * LINE, mappings, binary)][function_of(toucher)] += 1
        for kind, names in sorted(touched_by.items(), key=lambda item: -sum(item[1].values())):
            print(f"  data lines in {kind} ({sum(names.values())}), by the function first "
                  "touching them:")
            for name, n in names.most_common(int(os.environ.get("TOP", "25"))):
                print(f"    {n:5d}  {name[:140]}")
    return code, data


def occupancy(lines):
    """How many of `lines` fall in each set of a first-level cache of SETS sets."""
    return collections.Counter(line % SETS for line in lines).values()


def past_ways(lines):
    """The lines the sets hold beyond their WAYS. A set with more lines than ways loses some
    between requests (all of them, under LRU, when a request runs through them in the same
    order each time); one with no more keeps them. Placement cannot help a request whose
    lines outnumber the cache's; it can when only some sets overflow (benches/README.md,
    twenty-seventh session)."""
    return sum(max(0, n - WAYS) for n in occupancy(lines))


def sets_over(lines):
    """How many sets hold more of `lines` than WAYS."""
    return sum(1 for n in occupancy(lines) if n > WAYS)


def density(lines, addresses):
    """The share of the bytes of `lines` taken by instructions run (`addresses`: address to
    length, of every instruction run in a measured request)."""
    run = sum(size for address, size in addresses.items() if address // LINE in lines)
    return run / (len(lines) * LINE) if lines else 0.0


def source_of(frames):
    """The file an instruction is counted to: its innermost frame outside Rust's standard
    library (whose inlined helpers belong to the code that called them)."""
    for path in frames:
        if not path.startswith("/rustc/"):
            return path
    return frames[-1] if frames else "?"


def short(path):
    """A source path as `crate-version/src/...` or the path inside this repository."""
    if "/registry/src/" in path:
        return path.split("/registry/src/", 1)[1].split("/", 1)[1]
    if path.startswith(ROOT + "/"):
        return path[len(ROOT) + 1:]
    if path.startswith("/rustc/"):
        return "std: " + path.split("/library/", 1)[-1]
    return path


def by_source(binary, extent, code_lines, data_lines, addresses, mappings, function_of):
    """Each code line of `binary` named by the source file most of its instructions come from,
    printed by file and by crate; each data line by its mapping and the source file of the
    instruction that first touched it (another library's code: "(shared libraries)").
    `extent`: where the binary was loaded, start and end; `function_of`: an address's
    function (for FUNCTIONS_OF, see the module docs)."""
    base, end = extent
    in_lines = collections.defaultdict(list)
    for address in addresses:
        if address // LINE in code_lines and address < end:
            in_lines[address // LINE].append(address)
    touchers = {a for a in data_lines.values() if a is not None and a < end}
    wanted = sorted({a for found in in_lines.values() for a in found} | touchers)
    frames = {address: [place.rsplit(":", 1)[0] for place in chain] for address, chain
              in source_lines.inlining_chains(binary, wanted, base).items()}
    by_file, by_crate = collections.Counter(), collections.Counter()
    file_bytes = collections.Counter()
    functions_of = os.environ.get("FUNCTIONS_OF")
    holding = collections.Counter()
    for line, found in in_lines.items():
        votes = collections.Counter(short(source_of(frames.get(a, []))) for a in found)
        name = votes.most_common(1)[0][0]
        by_file[name] += 1
        if functions_of and functions_of in name:
            holding[function_of(line * LINE)] += 1
        file_bytes[name] += sum(addresses[a] for a in found)
        crate = name.split("/", 1)[0] if not name.startswith("std: ") else "std"
        by_crate["ours: " + name if name.startswith("src/") or name.startswith("server/")
                 else crate] += 1
    print("  code lines by crate (ours by file):")
    for name, n in by_crate.most_common(int(os.environ.get("TOP", "25"))):
        print(f"    {n:5d}  {name}")
    print("  code lines by file (and the share of their bytes run):")
    for name, n in by_file.most_common(int(os.environ.get("TOP", "25"))):
        print(f"    {n:5d}  {file_bytes[name] / (n * LINE):4.0%}  {name}")
    if functions_of:
        print(f"  code lines from files named like {functions_of!r}, by the function they "
              f"lie in ({sum(holding.values())}):")
        for name, n in holding.most_common(int(os.environ.get("TOP", "25"))):
            print(f"    {n:5d}  {name[:140]}")
    by_data = collections.defaultdict(collections.Counter)
    for line, toucher in data_lines.items():
        kind = region(line * LINE, mappings, binary)
        by_data[kind][short(source_of(frames[toucher])) if toucher in frames
                      else "(shared libraries)"] += 1
    for kind, files in sorted(by_data.items(), key=lambda item: -sum(item[1].values())):
        print(f"  data lines in {kind} ({sum(files.values())}), by the file first touching them:")
        for name, n in files.most_common(int(os.environ.get("TOP", "25")) // 2):
            print(f"    {n:5d}  {name}")


def main():
    ours = [SERVER] + server_instructions.OURS[1:]
    figures = {"ours (logging off)": report("ours (logging off)", SERVER, ours, True)}
    if os.environ.get("BASELINES", "1") != "0":
        for name in ["floor", "axum"]:
            figures[name] = report(name, BENCH_SERVERS,
                                   [BENCH_SERVERS, name, "127.0.0.1:0", "1"], False)
        code, data = figures["ours (logging off)"]
        for name in ["floor", "axum"]:
            print(f"ours against {name}: code {code / figures[name][0]:.2f}x, "
                  f"data {data / figures[name][1]:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
