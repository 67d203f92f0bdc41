#!/usr/bin/env python3
"""Instructions, not seconds: flowprobe and softflowd on the same captures,
counted by valgrind's callgrind (deterministic: the machine's noise does not
move it).

    python3 bench/instructions_bench.py [--packets N] [--flows M]

Each tool reads two captures from one generator (the small one has a tenth
of the packets, the same flows alive at once).  The difference of the two
counts over the difference in packets is the cost of a packet in steady
state, its share of the records included; start-up (the small run minus
that share) is printed apart.  flowprobe writes its records as JSON lines
(formatted in C), softflowd exports NetFlow v9 to a socket nobody reads.
A report: exit 0 whatever the figures, non-zero only when a tool fails.
"""

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import SOFTFLOWD, flowprobe_command, generated_capture, softflowd_command  # noqa: E402

COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(command):
    """Instructions the command executed (callgrind's total)."""
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(["valgrind", "--tool=callgrind",
                               f"--callgrind-out-file={scratch}/out", *command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{command[0]} failed under callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        print("instructions: valgrind not found (apt-get install valgrind): skipped")
        return 0
    small_packets = args.packets // 10
    captures = {n: generated_capture(n, args.flows)[0] for n in (small_packets, args.packets)}
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    max_flows = 65536
    tools = {"flowprobe": lambda pcap: flowprobe_command(args.python, pcap, max_flows)}
    if Path(SOFTFLOWD).exists():
        tools["softflowd"] = lambda pcap: softflowd_command(pcap, sink.getsockname()[1],
                                                            max_flows)
    per_packet = {}
    print(f"instructions (callgrind), captures of {small_packets} and {args.packets} packets, "
          f"{args.flows} flows alive:")
    for tool, command in tools.items():
        counts = {n: instructions(command(pcap)) for n, pcap in captures.items()}
        per_packet[tool] = (counts[args.packets] - counts[small_packets]) / \
            (args.packets - small_packets)
        start_up = counts[small_packets] - per_packet[tool] * small_packets
        print(f"  {tool:<10} {per_packet[tool]:8.0f} per packet, start-up {start_up / 1e6:6.1f} M")
    if "softflowd" in per_packet:
        print(f"  flowprobe / softflowd: {per_packet['flowprobe'] / per_packet['softflowd']:.2f}x "
              "instructions per packet")
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
