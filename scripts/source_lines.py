"""The source lines of machine code, inlining included, from a binary's line tables
(`addr2line`): shared by the scripts that name code by where it was written."""
import subprocess

# Addresses given to one addr2line run (its command line stays far below the system's limit).
BATCH = 5000


def inlining_chains(binary, addresses, base=0):
    """Each address's inlining chain, innermost first, as `file:line` (discriminators left
    out): {address: [place, ...]}. `base`: where the binary was loaded (subtracted before
    the lookup, added back in the keys)."""
    addresses = list(addresses)
    chains, current = {}, None
    for start in range(0, len(addresses), BATCH):
        out = subprocess.run(
            ["addr2line", "-e", binary, "-a", "-i"]
            + [hex(a - base) for a in addresses[start:start + BATCH]],
            capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("0x"):
                current = int(line, 16) + base
                chains[current] = []
            elif current is not None:
                chains[current].append(line.split(" (discriminator")[0])
    return chains
