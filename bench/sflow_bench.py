#!/usr/bin/env python3
"""flowprobe as an sFlow agent against pmacctd's sfprobe plugin, on the same capture.

A report, not a test: it exits 0 whatever the figures are, non-zero only when a tool
fails (without pmacctd it says so and exits 0).

    python3 bench/sflow_bench.py [--packets N] [--runs R] [--rates 1,100,1000]

Both read the same generated capture file (tools/gen_capture.py, in build/bench/) and
send sFlow v5 to a loopback socket this process binds and never reads:

- flowprobe: the daemon's own path without the loop: the C core reads the file,
  samples 1 in N (random) before decoding, meters the sampled packets into the flow
  table and puts their headers in the ring; Python drains records and headers in
  batches and the sFlow encoder sends them (`--agent`, a child process).
- pmacctd: `pcap_savefile` with `sampling_rate: N` and the sfprobe plugin (a core
  process and a plugin process).

The figure is CPU (user + sys from wait4, children included) per packet of the
capture: the median over the runs on the big capture minus the median on a 1000-packet
one (start-up: Python's imports, pmacctd's forks), runs interleaved; and the ratio
flowprobe / pmacctd at each rate. pmacctd also sleeps 2 s before reading a file: wall time is not
CPU, and is not counted.
"""

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PMACCTD = shutil.which("pmacctd") or "/usr/sbin/pmacctd"


def capture(packets):
    directory = ROOT / "build" / "bench"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"sflow-{packets}.pcap"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / "gen_capture.py"), "--packets",
                        str(packets), "--flows", str(max(100, packets // 40)), "--seed", "3",
                        "-o", str(path)], check=True, capture_output=True)
    return path


def agent(path, rate, port):
    """The agent run in a child: flowprobe's sampling, ring and sFlow encoder."""
    sys.path.insert(0, str(ROOT / "src"))
    from flowprobe.export.collectors import CollectorProfile, Exporter
    from flowprobe.meter import Meter
    from flowprobe.settings import MeterSettings

    now_ms = int(time.time() * 1000)
    exporter = Exporter([CollectorProfile(host="127.0.0.1", port=port, protocol="sflow",
                                          counter_interval=0, queue_limit=1_000_000)],
                        boot_ms=now_ms)
    exporter.start(now_ms)
    meter = Meter(MeterSettings())
    meter.set_sampling(0, rate, "random")
    meter.keep_samples(4096)
    records = 0

    def drain():
        nonlocal records
        for _, count in meter.drain_raw():
            records += count      # the flow table's records (for IPFIX collectors)
        for samples, count in meter.drain_samples_raw():
            exporter.export_samples(samples, count, now_ms, {0: 0})
        exporter.pump(0)
        return []

    for _ in meter.read_file(path, 0, drain=drain):
        pass
    meter.flush()
    drain()
    exporter.finish(now_ms, timeout_s=5)
    stats = exporter.stats()[0]
    print(f"samples {stats['flow_samples']} records {records} "
          f"not_sent {stats['records_not_sent']}", file=sys.stderr)


def cpu_of(command):
    """User + sys seconds of a command and every child it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # pmacctd's core may see its plugin end first at the end of a file, and
    # exit 1 saying so: the file was read all the same
    ended = "no more plugins active" in result.stdout + result.stderr
    if result.returncode != 0 and not ended:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{result.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def flowprobe_command(path, rate, port):
    return [sys.executable, __file__, "--agent", str(path), str(rate), str(port)]


def pmacctd_command(path, rate, port, directory):
    config = Path(directory) / f"pmacctd-{rate}.conf"
    config.write_text("\n".join([
        "daemonize: false", f"pcap_savefile: {path}", "plugins: sfprobe[s]",
        f"sfprobe_receiver[s]: 127.0.0.1:{port}", "sfprobe_agentip[s]: 127.0.0.1",
        f"sampling_rate: {rate}", ""]))
    return [PMACCTD, "-f", str(config)]


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--agent":
        agent(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", default="1,100,1000")
    args = parser.parse_args()
    if not os.path.exists(PMACCTD):
        print("sflow bench: pmacctd not installed (Debian package pmacct): skipped")
        return 0
    rates = [int(r) for r in args.rates.split(",")]
    big, small = capture(args.packets), capture(1000)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound, never read
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    figures = {}
    with tempfile.TemporaryDirectory(prefix="sflow-bench-") as directory:
        for _ in range(args.runs):
            for rate in rates:
                for tool in ("flowprobe", "pmacctd"):
                    for size, path in (("big", big), ("small", small)):
                        command = (flowprobe_command(path, rate, port) if tool == "flowprobe"
                                   else pmacctd_command(path, rate, port, directory))
                        figures.setdefault((tool, rate, size), []).append(cpu_of(command))
    print(f"sFlow agent CPU per packet, {args.packets} packets read from a file, "
          f"medians of {args.runs} runs (start-up subtracted)")
    print(f"{'rate':>8} {'flowprobe':>12} {'pmacctd sfprobe':>16} {'ratio':>8}")
    def per_packet(tool, rate):
        big_cpu = statistics.median(figures[(tool, rate, "big")])
        small_cpu = statistics.median(figures[(tool, rate, "small")])
        return (big_cpu - small_cpu) / (args.packets - 1000)

    for rate in rates:
        ours, theirs = per_packet("flowprobe", rate), per_packet("pmacctd", rate)
        ratio = ours / theirs if theirs > 0 else float("nan")
        print(f"{'1:' + str(rate):>8} {ours * 1e9:>10.0f} ns {theirs * 1e9:>14.0f} ns "
              f"{ratio:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
