#!/usr/bin/env python3
"""Stack frames of a binary's functions, read from their machine code: the bytes each
function's prologue takes from the stack pointer, the pages it probes included.

A request runs through a chain of frames, and the lines of them it writes are data lines
it touches (`request_footprint.py TOUCHERS=1` names the functions that touch the most); a
frame past a page (4 KiB) is also probed, one line a page, every time its function is called.
This lists the largest frames whose function names match PATTERN, binary by binary, so that
ours and the baselines' (bench_servers) can be read side by side. A large frame is not by
itself a cost: only the lines of it a request writes are (benches/README.md, twenty-seventh
session: the connection task's ~20 KB frame cut to ~8 KB saved 6 stack lines a PATCH and
no cache miss).

How a frame is read: x86-64 code from rustc reserves a frame with `sub $N,%rsp` in its first
instructions; a frame over a page is reserved a page at a time in a probing loop
(`sub $M,%r11` sets the loop's end, `sub $0x1000,%rsp` each page), then the rest with a last
`sub`. The sum is the frame; pushes of saved registers (8 bytes each) are left out.

Usage: scripts/frame_sizes.py [BINARY ...]   (objdump; target/release's security-update-server
and bench_servers by default; env: PATTERN=regex on the demangled name (by default tokio's
task polls, the connections' code (`serve_io`, the baselines' `serve`, hyper's HTTP/1, hyper-
util's service glue) and every function of ours, start-up's included), MIN=bytes (1024),
TOP=n (25))
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PATTERN = (r"tokio::runtime::task::raw::poll|serve_io|bench_servers::serve|"
                   r"hyper::proto::h1|security_update|TowerToHyperService")
PROLOGUE = 24  # instructions of a function in which its frame is reserved
FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
SUB = re.compile(r"\bsub\s+\$0x([0-9a-f]+),%(rsp|r11)\b")


def frames(binary):
    """(frame bytes, name) of every function of `binary` that reserves a frame."""
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", binary],
                             check=True, capture_output=True, text=True).stdout
    found, name, seen, total, probed = [], None, 0, 0, False
    for line in listing.splitlines():
        header = FUNCTION.match(line)
        if header:
            if name is not None and total:
                found.append((total, name))
            name, seen, total, probed = header.group(1), 0, 0, False
            continue
        seen += 1
        if name is None or seen > PROLOGUE:
            continue
        sub = SUB.search(line)
        if not sub:
            continue
        size, register = int(sub.group(1), 16), sub.group(2)
        if register == "r11":
            # The probing loop's end: the pages it reserves, one `sub $0x1000,%rsp` each.
            total += size
            probed = True
        elif not (probed and size == 0x1000):
            total += size
    if name is not None and total:
        found.append((total, name))
    return found


def main():
    binaries = sys.argv[1:] or [os.path.join(ROOT, "target/release", name)
                                for name in ("security-update-server", "bench_servers")]
    pattern = re.compile(os.environ.get("PATTERN", DEFAULT_PATTERN))
    least = int(os.environ.get("MIN", "1024"))
    top = int(os.environ.get("TOP", "25"))
    for binary in binaries:
        listed = sorted((f for f in frames(binary) if f[0] >= least and pattern.search(f[1])),
                        reverse=True)
        print(f"{os.path.basename(binary)}: {len(listed)} functions matching, frames of "
              f"{least:,} bytes or more")
        for size, name in listed[:top]:
            print(f"  {size:7,}  {name[:150]}")


if __name__ == "__main__":
    sys.exit(main())
