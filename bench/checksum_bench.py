#!/usr/bin/env python3
"""The per-packet CPU cost of verify_checksums (and of l2_flows), as a ratio
to the same meter with both off, in the same run.

A report, not a test: it exits 0 whatever the figures are.  A child process
meters the generator's capture (tools/gen_capture.py, its checksums filled
in here as a stack would send them: the generator leaves them zero) with `Meter` (records
drained raw, no Python per record) and times its own CPU (getrusage) around
the metering alone; runs interleave the settings, so a noisy neighbour hurts
all alike; each figure is the median.  With valgrind installed, the same
child also runs under callgrind on a smaller capture, counting only the
instructions inside fp_meter_dispatch (deterministic: the machine's noise
does not enter).

    python3 bench/checksum_bench.py [--packets N] [--flows M] [--runs R]
"""

import argparse
import array
import json
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "bench"))
import pcapfile  # noqa: E402
from bench import WORK_DIR, generated_capture  # noqa: E402

CHILD = """
import json, resource, sys
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings
path, verify, layer2 = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
meter = Meter(MeterSettings(max_flows=1 << 16, hash_seed=1, verify_checksums=verify,
                            l2_flows=layer2))
before = resource.getrusage(resource.RUSAGE_SELF)
for _ in meter.read_file(path, drain=lambda: sum(n for _, n in meter.drain_raw())):
    pass
meter.flush()
sum(n for _, n in meter.drain_raw())
after = resource.getrusage(resource.RUSAGE_SELF)
counters = meter.counters()
print(json.dumps({"cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                  "packets": counters["packets_read"],
                  "verified": counters["checksum_packets_verified"],
                  "bad": counters["checksum_packets_bad"],
                  "unverifiable": counters["checksum_packets_unverifiable"]}))
"""

CASES = {   # name: (verify_checksums, l2_flows)
    "both off": ("0", "0"),
    "verify_checksums on": ("1", "0"),
    "l2_flows on": ("0", "1"),
}


def internet_checksum(data):
    """RFC 1071, the complement of the ones' complement sum, as an int."""
    if len(data) % 2:
        data += b"\0"
    words = array.array("H", data)
    if sys.byteorder == "little":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def fill_checksums(frame):
    """The generator leaves checksums zero: the frame with every IPv4 header,
    TCP, UDP, ICMP and ICMPv6 checksum right, as a stack would send it."""
    frame = bytearray(frame)
    offset, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
    while ethertype in (0x8100, 0x88A8):
        ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
        offset += 4
    if ethertype == 0x0800:
        header = (frame[offset] & 15) * 4
        total = struct.unpack_from("!H", frame, offset + 2)[0]
        struct.pack_into("!H", frame, offset + 10, 0)
        struct.pack_into("!H", frame, offset + 10,
                         internet_checksum(bytes(frame[offset:offset + header])))
        protocol, pseudo = frame[offset + 9], bytes(frame[offset + 12:offset + 20])
        fragment = struct.unpack_from("!H", frame, offset + 6)[0] & 0x3FFF
        start, length = offset + header, total - header
        if fragment:
            return bytes(frame)
        pseudo += struct.pack("!BBH", 0, protocol, length)
    elif ethertype == 0x86DD:
        protocol, length = frame[offset + 6], struct.unpack_from("!H", frame, offset + 4)[0]
        start = offset + 40
        if protocol not in (6, 17, 58):   # extension headers, fragments: left as they are
            return bytes(frame)
        pseudo = bytes(frame[offset + 8:offset + 40]) + struct.pack("!IxxxB", length, protocol)
    else:
        return bytes(frame)
    at = {6: 16, 17: 6, 1: 2, 58: 2}.get(protocol)
    if at is None or start + length > len(frame):
        return bytes(frame)
    struct.pack_into("!H", frame, start + at, 0)
    body = bytes(frame[start:start + length])
    value = internet_checksum(body if protocol == 1 else pseudo + body)
    struct.pack_into("!H", frame, start + at, value or (0xFFFF if protocol == 17 else 0))
    return bytes(frame)


def with_checksums(plain):
    path = plain.with_name(plain.stem + "-checksums.pcap")
    if not path.exists():
        linktype, frames = pcapfile.read(plain)
        pcapfile.write(path, [(t, fill_checksums(data), wire) for t, data, wire in frames],
                       linktype)
    return path


def measure(path, verify, layer2):
    result = subprocess.run([sys.executable, "-c", CHILD, str(path), verify, layer2],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def instructions(path, verify, layer2):
    """Instructions executed inside fp_meter_dispatch (callgrind), or None."""
    with tempfile.TemporaryDirectory() as scratch:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/out",
                   "--toggle-collect=fp_meter_dispatch", sys.executable, "-c", CHILD, str(path),
                   verify, layer2]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            return None
        for line in done.stderr.splitlines():
            if "Collected :" in line:
                return int(line.split(":")[-1])
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=300000)
    parser.add_argument("--flows", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--callgrind-packets", type=int, default=50000)
    args = parser.parse_args()
    plain = with_checksums(generated_capture(args.packets, args.flows)[0])
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    runs = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, options in CASES.items():
            runs[name].append(measure(plain, *options))
    base = statistics.median(r["cpu_s"] / r["packets"] for r in runs["both off"])
    print(f"checksum_bench: {args.packets} packets, {args.flows} flows, median of {args.runs} "
          "runs (CPU time of the metering)")
    for name, results in runs.items():
        per_packet = statistics.median(r["cpu_s"] / r["packets"] for r in results)
        last = results[-1]
        print(f"  {name:20s} {per_packet * 1e9:7.1f} ns/packet  x{per_packet / base:.2f} "
              f"of both off  (checksums: {last['verified']} right, {last['bad']} wrong, "
              f"{last['unverifiable']} not verifiable)")
    if shutil.which("valgrind") is None:
        print("  callgrind: valgrind not installed, instruction counts left out")
        return
    small = with_checksums(generated_capture(args.callgrind_packets,
                                             max(args.flows // 10, 100))[0])
    counts = {name: instructions(small, *options) for name, options in CASES.items()}
    if None in counts.values():
        print("  callgrind: valgrind failed, instruction counts left out")
        return
    print(f"  instructions in fp_meter_dispatch (callgrind), {args.callgrind_packets} packets:")
    for name, count in counts.items():
        print(f"  {name:20s} {count / args.callgrind_packets:7.1f} per packet  "
              f"x{count / counts['both off']:.3f} of both off")


if __name__ == "__main__":
    main()
