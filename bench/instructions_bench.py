#!/usr/bin/env python3
"""Instructions, not seconds: flowprobe and softflowd on the same captures,
counted by valgrind's callgrind (deterministic: the machine's noise does not
move it), per packet and per record, for each export protocol; and the C
core's instructions per packet on the routers' CPU (big-endian MIPS under
qemu-user) beside x86-64's.

    python3 bench/instructions_bench.py [--packets N] [--flows M] [--skip-mips] [--rows ROW..]

Each tool reads two captures from one generator (the small one has a tenth
of the packets, the same flows alive at once).  The difference of the two
counts over the difference in packets (in records) is the cost of a packet
(of a record) in steady state; start-up cancels out.  Per packet counts
everything, the records' share included; per record counts everything too,
over the records instead.  For flowprobe, Python's part of a record is
what did not run inside the C core (cffi's wrappers and what they call)
over the records: the figure the design bounds (no per-record Python).

Rows: records as JSON lines (formatted in C), IPFIX, IPFIX biflow (RFC
5103), NetFlow v9, v5 to a loopback socket nobody reads (softflowd -v 10,
-v 10 -b, -v 9, -v 5 alike), and sFlow at 1:1, where a record is a packet
sample (softflowd has no sFlow); then the daemon's other sinks, fed as its
loop feeds them: the history store (SQLite, in its writer thread) and the
enrichment stage routing every record (bench/sink_instructions.py): cold,
every destination new, and warm, each batch again (what that adds).

A report: exit 0 whatever the figures, non-zero only when a tool fails.
"""

import argparse
import json
import re
import shutil
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mips_instructions  # noqa: E402
from bench import SOFTFLOWD, generated_capture  # noqa: E402
from callgrind_costs import ToolFailed, count, is_compiled_core  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
EXPORTED = re.compile(r"Flows exported: \d+ \((\d+) records\)")
SAMPLES = re.compile(r"samples (\d+) records")

# (row, flowprobe's read arguments, or "sflow"; softflowd's export arguments)
EXPORTS = (
    ("JSON lines", ["--json"], None),
    ("IPFIX", ["--export", "ipfix://127.0.0.1:{port}"], ["-v", "10"]),
    ("IPFIX biflow", ["--export", "ipfix://127.0.0.1:{port}?biflow=1"], ["-v", "10", "-b"]),
    ("NetFlow v9", ["--export", "netflow9://127.0.0.1:{port}"], ["-v", "9"]),
    ("NetFlow v5", ["--export", "netflow5://127.0.0.1:{port}"], ["-v", "5"]),
    ("sFlow 1:1", "sflow", None),
    ("history", "history", None),
    ("enrichment", "enrich", None),
    ("enrich warm", "enrich-again", None),
)
# the daemon's other sinks (bench/sink_instructions.py)
SINKS = ("history", "enrich", "enrich-again")
# a row measured as what it adds to another row's run: each batch enriched a
# second time, its routes then all known, less the run enriching it once
ADDED_TO = {"enrich warm": "enrichment"}
RECORDS = re.compile(r"^records (\d+)$", re.M)


def flowprobe_run(python, pcap, arguments, port, max_flows):
    """(instructions, of them in the C core, records)."""
    if arguments in SINKS:
        command = [python, BENCH_DIR / "sink_instructions.py", arguments, pcap]
        total, core, stderr = count(command, is_compiled_core)
        return total, core, int(RECORDS.search(stderr).group(1))
    if arguments == "sflow":
        command = [python, BENCH_DIR / "sflow_bench.py", "--agent", pcap, 1, port]
        total, core, stderr = count(command, is_compiled_core)
        return total, core, int(SAMPLES.search(stderr).group(1))
    command = [python, "-m", "flowprobe", "read", pcap, "--max-flows", max_flows,
               *(a.format(port=port) for a in arguments)]
    total, core, stderr = count(command, is_compiled_core)
    summary = next(json.loads(line) for line in reversed(stderr.splitlines())
                   if line.startswith("{"))
    return total, core, summary["counters"]["records_drained"]


def softflowd_run(pcap, arguments, port, max_flows):
    """(instructions, records exported)."""
    command = [SOFTFLOWD, "-r", pcap, "-d", *arguments, "-m", max_flows,
               "-n", f"127.0.0.1:{port}", "-c", "none"]
    total, _, stderr = count(command, keep_stdout=True)
    found = EXPORTED.search(stderr)
    if not found:
        raise ToolFailed(f"softflowd printed no export statistics:\n{stderr[-2000:]}")
    return total, int(found.group(1))


def per_unit(small, big):
    """(per packet, per record, Python per record) from two runs'
    (packets, instructions, instructions in C, records)."""
    packets, total, core, records = (b - s for s, b in zip(small, big))
    return (total / packets, total / records if records else float("nan"),
            (total - core) / records if records else float("nan"))


def ratio(ours, theirs):
    return f"{ours / theirs:5.2f}x" if theirs and theirs == theirs else "    -"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--skip-mips", action="store_true",
                        help="without the MIPS cross build under qemu-user")
    parser.add_argument("--rows", nargs="+", metavar="ROW", choices=[r for r, *_ in EXPORTS],
                        help="only these rows (default: all)")
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        print("instructions: valgrind not found (apt-get install valgrind): skipped")
        return 0
    small_packets = args.packets // 10
    captures = {n: generated_capture(n, args.flows)[0] for n in (small_packets, args.packets)}
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound, never read
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    max_flows = 65536
    has_softflowd = Path(SOFTFLOWD).exists()
    print(f"instructions (callgrind), captures of {small_packets} and {args.packets} packets, "
          f"{args.flows} flows alive; differences between the two (start-up cancels out):")
    print(f"  {'':<13} {'flowprobe':>28}   {'softflowd':>18}   {'flowprobe/softflowd':>20}")
    print(f"  {'records as':<13} {'/packet':>8} {'/record':>8} {'Python/rec':>10}   "
          f"{'/packet':>8} {'/record':>8}   {'/packet':>9} {'/record':>9}")
    wanted = set(args.rows or (r for r, *_ in EXPORTS))
    wanted |= {ADDED_TO[r] for r in wanted if r in ADDED_TO}
    measured = {}
    try:
        for row, ours, theirs in EXPORTS:
            if row not in wanted:
                continue
            runs = {n: flowprobe_run(args.python, pcap, ours, port, max_flows)
                    for n, pcap in captures.items()}
            if row in ADDED_TO:   # the base's records, each enriched once more
                base = measured[ADDED_TO[row]]
                runs = {n: (total - base[n][0], core - base[n][1], base[n][2])
                        for n, (total, core, _) in runs.items()}
            measured[row] = runs
            mine = per_unit(*((n, *runs[n]) for n in sorted(runs)))
            line = f"  {row:<13} {mine[0]:8.0f} {mine[1]:8.0f} {mine[2]:10.0f}   "
            if theirs is not None and has_softflowd:
                runs = {n: softflowd_run(pcap, theirs, port, max_flows)
                        for n, pcap in captures.items()}
                other = per_unit(*((n, runs[n][0], 0, runs[n][1]) for n in sorted(runs)))
                line += (f"{other[0]:8.0f} {other[1]:8.0f}   {ratio(mine[0], other[0]):>9} "
                         f"{ratio(mine[1], other[1]):>9}")
            else:
                line += f"{'-':>8} {'-':>8}   {'-':>9} {'-':>9}"
            print(line, flush=True)
    except ToolFailed as e:
        print(f"instructions: {e}", file=sys.stderr)
        return 1
    finally:
        sink.close()
    print("  (Python/rec: flowprobe's instructions outside the C core, per record drained)")
    if "enrich warm" in measured:
        print("  (enrich warm: what delivering each batch a second time adds, its routes known)")
    if not args.skip_mips:
        mips_instructions.report(args.python, args.flows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
