"""How exact flow times are once a collector has them: per record, how far
nfdump's first/last lie outside the capture's first and last packet of that
flow key (ms), for flowprobe's IPFIX, NetFlow v9 and v5 and, in the same run,
another flowprobe (--baseline: an older checkout's python) as the peer.  Also
the records nfdump shows before 1973 (uptime 0 reads as "no time" there).
IPFIX carries absolute times: its column is the reference.  A report: exit 0
whatever the figures.

softflowd is no peer here: reading a file (-r), it stamps records against the
wall clock, so its error is the capture's age.

    .venv/bin/python bench/collector_times_bench.py [--packets N] [--flows M]
        [--python PATH] [--baseline PATH] [--capture FILE]
"""

import argparse
import subprocess
import sys
from pathlib import Path

from bench import generated_capture

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from collector_tools import NFCAPD, NFDUMP, Nfcapd, missing_tools, nfdump_flow_times  # noqa: E402,E501
from realstack import simple_truth  # noqa: E402

LONG = ("--idle-timeout", "3600", "--active-timeout", "3600", "--unanswered-timeout", "3600")


def flowprobe(python, pcap, protocol, port):
    return [python, "-m", "flowprobe", "read", str(pcap), *LONG, "--export",
            f"{protocol}://127.0.0.1:{port}"]


def errors(truth, records):
    """(ms outside the truth per record, records of keys not in the capture, before 1973)."""
    found, unknown, early = [], 0, 0
    for key, first, last in records:
        if first is not None and first < 100_000_000_000:
            early += 1
        if key not in truth:
            unknown += 1
            continue
        low, high = truth[key]
        found.append(max(low - first, first - high, low - last, last - high, 0))
    return sorted(found), unknown, early


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--flows", type=int, default=5_000)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--baseline", help="another flowprobe's python, run alike")
    parser.add_argument("--capture", help="a pcap instead of the generated capture")
    args = parser.parse_args(argv)
    if missing_tools(NFCAPD, NFDUMP):
        print(f"collector_times_bench: {missing_tools(NFCAPD, NFDUMP)}", file=sys.stderr)
        return 1
    pcap = Path(args.capture) if args.capture else generated_capture(args.packets,
                                                                       args.flows)[0]
    truth = simple_truth.truth_report(str(pcap)).times
    print(f"capture {pcap.name}: {len(truth)} flow keys")
    exporters = {"flowprobe": args.python}
    if args.baseline:
        exporters["baseline"] = args.baseline
    print(f"{'exporter':10} {'protocol':9} {'records':>8} {'max ms':>14} {'p99 ms':>7} "
          f"{'unknown':>8} {'<1973':>6}")
    for protocol in ("ipfix", "netflow9", "netflow5"):
        for name, python in exporters.items():
            # a large receive buffer: what loopback drops still lowers the record count only
            with Nfcapd(extra_args=("-B", str(32 << 20))) as collector:
                subprocess.run(flowprobe(python, pcap, protocol, collector.port), check=True,
                               capture_output=True, timeout=600)
                found, unknown, early = errors(truth, nfdump_flow_times(collector.flows()))
            worst = found[-1] if found else 0
            p99 = found[int(len(found) * 0.99)] if found else 0
            print(f"{name:10} {protocol:9} {len(found):8} {worst:14} {p99:7} {unknown:8} "
                  f"{early:6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
