"""Generated flow records with chosen timestamps (a day in compressed time)
and the truth they hold, for the history store's tests and bench."""

import ipaddress
import random
from collections import Counter

from flowprobe._cmeter_ffi import ffi

DAY_START_MS = 1_767_225_600_000          # 2026-01-01 00:00 UTC
HOUR_MS = 3_600_000
PROTOCOLS = (6, 17, 1)
PORTS = (443, 80, 53, 22, 123, 8080)


class Day:
    """count records spread over a day: hosts 10.0.x.y (and some IPv6)
    talking to servers; each record's fields chosen by a seeded random."""

    def __init__(self, count, seed=1, hosts=200, servers=500, start_ms=DAY_START_MS,
                 span_ms=24 * HOUR_MS):
        rnd = random.Random(seed)
        self.records = ffi.new("struct fp_record[]", count)
        self.count = count
        self.truth = []        # (src, dst, src_port, dst_port, protocol, start_ms, octets, packets)
        local = [ipaddress.ip_address(f"10.0.{i // 250}.{i % 250 + 1}") for i in range(hosts)]
        local6 = [ipaddress.ip_address(f"fd00::{i + 1:x}") for i in range(hosts // 10)]
        remote = [ipaddress.ip_address(f"198.51.{100 + i // 250}.{i % 250 + 1}")
                  for i in range(servers)]
        remote6 = [ipaddress.ip_address(f"2001:db8::{i + 1:x}") for i in range(servers // 10)]
        for i in range(count):
            six = rnd.random() < 0.1
            src = rnd.choice(local6 if six else local)
            dst = rnd.choice(remote6 if six else remote)
            if rnd.random() < 0.3:
                src, dst = dst, src
            protocol = rnd.choice(PROTOCOLS)
            sport = rnd.randrange(1024, 65535) if protocol != 1 else 0
            dport = rnd.choice(PORTS) if protocol != 1 else 2048
            packets = rnd.randrange(1, 200)
            octets = packets * rnd.randrange(40, 1500)
            start = start_ms + i * span_ms // count
            r = self.records[i]
            r.ip_version = 6 if six else 4
            r.protocol = protocol
            r.src_addr[0:len(src.packed)] = src.packed
            r.dst_addr[0:len(dst.packed)] = dst.packed
            r.src_port, r.dst_port = sport, dport
            r.packets, r.octets = packets, octets
            r.flow_start_ms, r.flow_end_ms = start, start + rnd.randrange(0, 120_000)
            r.ifindex = 2 if rnd.random() < 0.7 else 3
            r.direction = 1
            r.end_reason = 1
            self.truth.append((str(src), str(dst), sport, dport, protocol, start, octets,
                               packets, r.ifindex))

    def batches(self, size=1024):
        """(cdata pointer, count) as the meter hands them out."""
        for first in range(0, self.count, size):
            yield self.records + first, min(size, self.count - first)

    def per_host(self):
        octets = Counter()
        for src, dst, *_, total, _packets, _ifindex in self.truth:
            octets[src] += total
            if dst != src:
                octets[dst] += total
        return octets

    def per_port(self):
        octets = Counter()
        for *_, dport, _protocol, _start, total, _packets, _ifindex in self.truth:
            octets[dport] += total
        return octets

    def per_hour(self):
        octets = Counter()
        for *_, start, total, _packets, _ifindex in self.truth:
            octets[start // HOUR_MS * HOUR_MS] += total
        return octets
