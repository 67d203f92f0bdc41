#!/usr/bin/env python3
"""Cache misses per packet, counted (not timed): the C core alone against the
libpcap floor, on the same generated capture, under valgrind's cachegrind.

    python3 bench/cache_bench.py [--packets N] [--flows M] [--last-level BYTES]

cachegrind simulates the caches, so its counts do not move with the machine's
load: instructions, first-level data misses (D1) and last-level data misses
(LL) per packet, for `meter_file` (bench/meter_file.c: the meter reads the file
and drains its records, no Python) and `pcap_floor` (libpcap with an empty
callback), built as bench.py builds them. The last level is simulated at 1 MiB
(`--last-level`), about a router's L2, not this machine's L3, which would hold
the whole table. cachegrind does not simulate prefetches or the TLB: what the
core's prefetching hides is still counted as a miss here. A report: exit 0
whatever the figures, non-zero only when a tool fails.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import HELPERS, built_helper, generated_capture, table_size_for  # noqa: E402

EVENTS = {"I": r"I\s+refs:\s+([\d,]+)", "D1": r"D1\s+misses:\s+([\d,]+)",
          "LL": r"LLd misses:\s+([\d,]+)"}


def cachegrind(command, last_level):
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=yes",
                               f"--LL={last_level},16,64", f"--cachegrind-out-file={scratch}/out",
                               *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed under cachegrind:\n{done.stderr[-2000:]}")
    counts = {}
    for name, pattern in EVENTS.items():
        found = re.search(pattern, done.stderr)
        if not found:
            raise SystemExit(f"no {name} count from cachegrind:\n{done.stderr[-2000:]}")
        counts[name] = int(found.group(1).replace(",", ""))
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--last-level", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        print("cache: valgrind not found (apt-get install valgrind): skipped")
        return 0
    pcap, _ = generated_capture(args.packets, args.flows)
    max_flows = table_size_for(args.flows)
    helpers = {name: built_helper(source) for name, source in HELPERS.items()}
    commands = {"C core": [str(helpers["C core"]), str(pcap), str(max_flows)],
                "floor": [str(helpers["floor"]), str(pcap)]}
    counts = {tool: cachegrind(command, args.last_level) for tool, command in commands.items()}
    print(f"cachegrind, {args.packets} packets, {args.flows} flows alive, table {max_flows}, "
          f"last level {args.last_level >> 10} KiB; per packet:")
    print(f"  {'':<8} {'instructions':>12} {'D1 misses':>10} {'LL misses':>10}")
    for tool, c in counts.items():
        print(f"  {tool:<8} {c['I'] / args.packets:>12.0f} {c['D1'] / args.packets:>10.2f} "
              f"{c['LL'] / args.packets:>10.2f}")
    core, floor = counts["C core"], counts["floor"]
    print(f"  C core beyond the floor: {(core['I'] - floor['I']) / args.packets:.0f} instructions, "
          f"{(core['D1'] - floor['D1']) / args.packets:.2f} D1 and "
          f"{(core['LL'] - floor['LL']) / args.packets:.2f} LL misses per packet")
    for tool, command in commands.items():
        print(f"  {tool}: valgrind --tool=cachegrind --cache-sim=yes "
              f"--LL={args.last_level},16,64 {' '.join(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
