#!/usr/bin/env python3
"""The per-packet CPU cost of opening tunnels, as a ratio to plain traffic.

A report, not a test: it exits 0 whatever the figures are.  The generator's
capture (tools/gen_capture.py) is written three more times, each frame
wrapped whole in VXLAN, in Ethernet over GRE with a key, and in IP in IP;
a child process meters each file with `Meter` (records drained raw, no
Python per record) and times its own CPU (getrusage) around the metering
alone, with `tunnels outer`, `inner` and `both` (each tunnel packet in two
flows: per packet read, it does two accounts).  Runs interleave the files,
so a noisy neighbour hurts all alike; each figure is the median.

    python3 bench/tunnel_bench.py [--packets N] [--flows M] [--runs R]
"""

import argparse
import json
import statistics
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "bench"))
import pcapfile  # noqa: E402
from bench import WORK_DIR, generated_capture  # noqa: E402

MACS = bytes.fromhex("020000000002" "020000000001")
OUTER_SRC, OUTER_DST = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])

CHILD = """
import json, resource, sys
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings
path, tunnels = sys.argv[1], sys.argv[2]
meter = Meter(MeterSettings(max_flows=1 << 16, hash_seed=1, tunnels=tunnels))
before = resource.getrusage(resource.RUSAGE_SELF)
records = 0
for batch in meter.read_file(path, drain=lambda: sum(n for _, n in meter.drain_raw())):
    records += batch
meter.flush()
records += sum(n for _, n in meter.drain_raw())
after = resource.getrusage(resource.RUSAGE_SELF)
counters = meter.counters()
print(json.dumps({"cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                  "packets": counters["packets_read"], "inner": counters["tunnel_packets_inner"],
                  "metered": counters["packets_metered"], "records": records}))
"""


def ipv4(protocol, payload):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, protocol, 0,
                         OUTER_SRC, OUTER_DST)
    return header + payload


def ethernet(payload, ethertype=0x0800):
    return MACS + struct.pack("!H", ethertype) + payload


def vxlan(frame):
    body = struct.pack("!BBBBI", 0x08, 0, 0, 0, 4242 << 8) + frame
    return ethernet(ipv4(17, struct.pack("!HHHH", 49152, 4789, 8 + len(body), 0) + body))


def gretap(frame):
    return ethernet(ipv4(47, struct.pack("!HHI", 0x2000, 0x6558, 77) + frame))


def ipip(frame):  # the generator's frames are Ethernet: IPv4 inside, as 4; IPv6, as 41
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype != 0x0800 and ethertype != 0x86DD:
        return frame
    return ethernet(ipv4(4 if ethertype == 0x0800 else 41, frame[14:]))


def wrapped(plain, name, wrap):
    path = plain.with_name(plain.stem + f"-{name}.pcap")
    if not path.exists():
        linktype, frames = pcapfile.read(plain)
        pcapfile.write(path, [(t, wrap(data[:wire] if len(data) >= wire else data))
                              for t, data, wire in frames], linktype)
    return path


def measure(path, tunnels):
    result = subprocess.run([sys.executable, "-c", CHILD, str(path), tunnels],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=300000)
    parser.add_argument("--flows", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    plain, _ = generated_capture(args.packets, args.flows)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    cases = {
        "plain, tunnels outer": (plain, "outer"),
        "plain, tunnels inner": (plain, "inner"),
        "plain, tunnels both": (plain, "both"),
        "vxlan, tunnels outer": (wrapped(plain, "vxlan", vxlan), "outer"),
        "vxlan, tunnels inner": (wrapped(plain, "vxlan", vxlan), "inner"),
        "vxlan, tunnels both": (wrapped(plain, "vxlan", vxlan), "both"),
        "gretap, tunnels inner": (wrapped(plain, "gretap", gretap), "inner"),
        "gretap, tunnels both": (wrapped(plain, "gretap", gretap), "both"),
        "ipip, tunnels inner": (wrapped(plain, "ipip", ipip), "inner"),
        "ipip, tunnels both": (wrapped(plain, "ipip", ipip), "both"),
    }
    runs = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (path, tunnels) in cases.items():
            runs[name].append(measure(path, tunnels))
    base = statistics.median(r["cpu_s"] / r["packets"] for r in runs["plain, tunnels outer"])
    print(f"tunnel_bench: {args.packets} packets, {args.flows} flows, median of {args.runs} runs")
    for name, results in runs.items():
        per_packet = statistics.median(r["cpu_s"] / r["packets"] for r in results)
        last = results[-1]
        print(f"  {name:24s} {per_packet * 1e9:7.1f} ns/packet  x{per_packet / base:.2f} "
              f"of plain  (inner {last['inner']}, metered {last['metered']} "
              f"of {last['packets']})")


if __name__ == "__main__":
    main()
