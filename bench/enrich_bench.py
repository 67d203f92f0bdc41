#!/usr/bin/env python3
"""Benchmark the enrichment stage: the CPU per record that routing
enrichment adds to export, as a ratio to the same records exported without
it, measured in the same run.

A report, not a test: it exits 0 whatever the numbers are.  Needs root for
a namespace of its own (enrich-bench-...: two uplinks, a default route);
without root the lookups ask this machine's own routes (read only).

    python3 bench/enrich_bench.py [--records N] [--destinations D] [--runs R] [--skip-macs]

Each run encodes the same N records (in the meter's 1024-record batches,
D distinct destinations) as IPFIX with egressInterface and
ipNextHopIPv4Address:
  export alone        the encoder, no stage
  + routes, warm      the stage in front, every route already in its table
  + routes, cold      a new table each run: D lookups asked of the kernel
  + 100k prefixes     AS numbers and prefix lengths from a 100 000-prefix table
CPU from process_time, medians over the runs.

Then the MAC side table: the meter reading one generated capture (bench.py's)
with settings.macs off and on, CPU and bytes a flow slot.
"""

import argparse
import ipaddress
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

BATCH = 1024
FIELDS = ("sourceIPv4Address destinationIPv4Address sourceTransportPort destinationTransportPort "
          "protocolIdentifier packetDeltaCount octetDeltaCount flowStartMilliseconds "
          "flowEndMilliseconds ingressInterface egressInterface ipNextHopIPv4Address")


PREFIXES = 100_000   # a prefix table's size: random IPv4 /16 to /24 and IPv6 /32 to /48


def write_prefixes(count):
    import random
    import tempfile
    rng = random.Random(1)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for _ in range(count):
            if rng.random() < 0.8:
                length = rng.randint(16, 24)
                network = ipaddress.IPv4Network((rng.getrandbits(length) << (32 - length), length))
            else:
                length = rng.randint(32, 48)
                network = ipaddress.IPv6Network((rng.getrandbits(length) << (128 - length),
                                                 length))
            f.write(f"{network} {rng.randint(1, 400000)}\n")
    return f.name


def batches(records, destinations):
    from flowprobe._cmeter_ffi import ffi, lib
    out = []
    now_ms = int(time.time() * 1000) + 3_600_000   # records of flows ending after any change
    for start in range(0, records, BATCH):
        count = min(BATCH, records - start)
        batch = ffi.new("struct fp_record[]", count)
        for i in range(count):
            n = start + i
            r = batch[i]
            r.ip_version, r.protocol, r.packets, r.octets = 4, 17, 3, 300
            r.flow_start_ms, r.flow_end_ms = now_ms - 500, now_ms
            r.direction, r.ifindex = lib.FP_DIRECTION_OUT, 2
            source = ipaddress.ip_address(0xC0A80700 + n % 200).packed
            destination = ipaddress.ip_address(0xC6336400 + n % destinations).packed
            ffi.memmove(r.src_addr, source, 4)
            ffi.memmove(r.dst_addr, destination, 4)
            r.src_port, r.dst_port = 1024 + n % 50000, 53
        out.append((batch, count))
    return out


def child(records, destinations, runs):
    from flowprobe.enrich.routes import RouteTable
    from flowprobe.enrich.settings import EnrichSettings
    from flowprobe.enrich.stage import Enrichment
    from flowprobe.export.ipfix import IpfixEncoder

    data = batches(records, destinations)
    encoder = IpfixEncoder(FIELDS.split())
    settings = EnrichSettings(routing=True, devices=False, route_cache=max(4096, destinations))

    def export(batch, count, now_ms):
        encoder.encode(batch, count, now_ms)

    def timed(deliver):
        start = time.process_time()
        for batch, count in data:
            deliver(batch, count, 2_000_000)
        return time.process_time() - start

    warm_table = RouteTable(settings.route_cache)
    warm = Enrichment(settings, export, lambda: 0, routes=warm_table)
    timed(warm.deliver)   # fills the table
    prefix_file = write_prefixes(PREFIXES)
    prefixed = Enrichment(EnrichSettings(devices=False, prefix_file=prefix_file), export,
                          lambda: 0)
    prefixed.prefixes.wait(60)
    os.unlink(prefix_file)
    results = {"export alone": [], "+ routes, warm": [], "+ routes, cold": [],
               f"+ {PREFIXES // 1000}k prefixes": []}
    lookups = 0
    for _ in range(runs):
        results["export alone"].append(timed(export))
        results["+ routes, warm"].append(timed(warm.deliver))
        cold_table = RouteTable(settings.route_cache)
        cold = Enrichment(settings, export, lambda: 0, routes=cold_table)
        while cold_table._rules_sequence is not None:   # the rules' answer first
            cold_table.read_answers()
        results["+ routes, cold"].append(timed(cold.deliver))
        results[f"+ {PREFIXES // 1000}k prefixes"].append(timed(prefixed.deliver))
        lookups = cold_table.counters["route_lookups"]
        assert cold.counters["records_without_route"] == 0, cold.counters
        cold.close()
    base = statistics.median(results["export alone"])
    print(f"enrich bench: {records} records, {destinations} destinations, {runs} runs "
          f"(medians, process CPU); {lookups} kernel lookups a cold run")
    print(f"  {'':16} {'CPU s':>8} {'us/record':>10} {'ratio':>7}")
    for label, times in results.items():
        median = statistics.median(times)
        print(f"  {label:16} {median:8.3f} {median / records * 1e6:10.2f} {median / base:7.2f}")


def macs_child(packets, flows, runs):
    """The meter's CPU on one capture with the MAC side table off and on,
    and what it costs in bytes a slot."""
    from bench import generated_capture

    from flowprobe.meter import Meter
    from flowprobe.settings import MeterSettings

    pcap, _ = generated_capture(packets, flows)
    results = {False: [], True: []}
    memory = {}
    pcap.read_bytes()   # into the page cache before the first measured run
    for _ in range(runs):
        for macs in (False, True):
            meter = Meter(MeterSettings(max_flows=65536, macs=macs, hash_seed=1))

            def drain(meter=meter):
                return sum(n for _, n in meter.drain_raw())

            start = time.process_time()
            for _ in meter.read_file(str(pcap), drain=drain):
                pass
            meter.flush()
            drain()
            results[macs].append(time.process_time() - start)
            memory[macs] = meter.memory_bytes
    off, on = (statistics.median(results[m]) for m in (False, True))
    slots = 65536 + 1024   # max_flows and the export reserve
    print(f"MAC side table: {packets} packets, {flows} flows, {runs} runs (medians, process CPU)")
    print(f"  macs off {off:.3f} s, on {on:.3f} s: ratio {on / off:.3f}; "
          f"memory {memory[False] / slots:.1f} -> {memory[True] / slots:.1f} bytes a slot "
          "(the 64-byte flow entry unchanged)")


def namespace():
    """A namespace of our own with two uplinks and a default route, or None."""
    if os.geteuid() != 0:
        return None
    name = f"enrich-bench-{uuid.uuid4().hex[:6]}"
    steps = [["ip", "netns", "add", name],
             ["ip", "-n", name, "link", "set", "lo", "up"]]
    for n in (1, 2):
        steps += [["ip", "-n", name, "link", "add", f"up{n}", "type", "veth", "peer", "name",
                   f"up{n}p"],
                  ["ip", "-n", name, "link", "set", f"up{n}p", "up"],
                  ["ip", "-n", name, "link", "set", f"up{n}", "up"],
                  ["ip", "-n", name, "addr", "add", f"10.1.{n}.1/24", "dev", f"up{n}"]]
    steps += [["ip", "-n", name, "route", "add", "default", "via", "10.1.1.254"],
              ["ip", "-n", name, "route", "add", "198.51.100.128/25", "via", "10.1.2.254"]]
    for step in steps:
        subprocess.run(step, check=True, capture_output=True)
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--destinations", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--packets", type=int, default=1_000_000, help="MACs: capture size")
    parser.add_argument("--flows", type=int, default=50_000, help="MACs: flows in it")
    parser.add_argument("--skip-macs", action="store_true", help="without the MAC side table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--macs-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.records, args.destinations, args.runs)
        return 0
    if args.macs_child:
        macs_child(args.packets, args.flows, args.runs)
        return 0
    own = namespace()
    command = [sys.executable, __file__, "--child", "--records", str(args.records),
               "--destinations", str(args.destinations), "--runs", str(args.runs)]
    try:
        if own is None:
            print("enrich bench: not root, lookups ask this machine's routes")
        done = subprocess.run(["ip", "netns", "exec", own, *command] if own else command)
        if done.returncode or args.skip_macs:
            return done.returncode
        return subprocess.run([sys.executable, __file__, "--macs-child", "--packets",
                               str(args.packets), "--flows", str(args.flows), "--runs",
                               str(args.runs)], cwd=Path(__file__).parent).returncode
    finally:
        if own:
            subprocess.run(["ip", "netns", "del", own], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
