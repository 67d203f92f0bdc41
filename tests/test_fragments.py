"""Fragments land in the flow of their datagram, in any order, in bounded memory."""

import pytest
from scapy.layers.inet import ICMP, IP, UDP, fragment
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether

from captures import START_US, assert_conserved, meter_frames

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def ether(packet):
    return bytes(Ether(**MACS) / packet)


def ipv4_ping_fragments(ident=7, size=3000):
    datagram = IP(src="10.0.0.1", dst="10.0.0.2", id=ident) / ICMP(type=8) / (b"p" * size)
    fragments = [ether(f) for f in fragment(datagram, fragsize=1480)]
    return fragments, sum(len(f) - 14 for f in fragments)  # each fragment's IP length


def ipv6_ping_fragments(ident=9, size=3000):
    datagram = (IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=ident)
                / ICMPv6EchoRequest(data=b"q" * size))
    fragments = [ether(f) for f in fragment6(datagram, 1280)]
    return fragments, sum(len(f) - 14 for f in fragments)


def ipv4_udp_fragments(ident, sport):
    datagram = (IP(src="10.0.0.1", dst="10.0.0.2", id=ident) / UDP(sport=sport, dport=9)
                / (b"u" * 4000))
    return [ether(f) for f in fragment(datagram, fragsize=1480)]


def one_flow(records):
    assert len(records) == 1, records
    return records[0]


@pytest.mark.parametrize("order", ["in_order", "reversed", "first_last"])
@pytest.mark.parametrize("family", [4, 6])
def test_fragments_join_their_flow(tmp_path, family, order):
    fragments, octets = ipv4_ping_fragments() if family == 4 else ipv6_ping_fragments()
    assert len(fragments) >= 3
    if order == "reversed":
        fragments = fragments[::-1]
    elif order == "first_last":
        fragments = fragments[1:] + fragments[:1]
    records, counters = meter_frames(tmp_path, fragments)
    r = one_flow(records)
    echo = 8 if family == 4 else 128
    assert (r["dst_port"], r["packets"], r["octets"]) == (echo * 256, len(fragments), octets)
    assert counters["fragment_datagrams"] == 1
    assert_conserved(records, counters)


def test_interleaved_datagrams_of_two_flows(tmp_path):
    a, b = ipv4_udp_fragments(1, 1111), ipv4_udp_fragments(2, 2222)
    frames = [a[2], b[1], a[0], b[2], a[1], b[0]]
    records, counters = meter_frames(tmp_path, frames)
    assert sorted((r["src_port"], r["packets"], r["octets"]) for r in records) == \
        [(1111, 3, 4028 + 40), (2222, 3, 4028 + 40)]
    assert_conserved(records, counters)


def test_completed_datagrams_leave_the_table(tmp_path):
    from flowprobe.meter import Meter
    from flowprobe.settings import MeterSettings
    meter = Meter(MeterSettings())
    for n, frame in enumerate(ipv4_udp_fragments(5, 5555)[::-1]):
        meter.process_frame(frame, 1, START_US + n)
    assert meter.counters()["fragments_tracked"] == 0


def test_fragments_without_their_first_are_orphans(tmp_path):
    fragments = ipv4_udp_fragments(3, 3333)
    records, counters = meter_frames(tmp_path, fragments[1:])
    assert records == []
    assert counters["dropped_fragment_orphaned"] == 2
    assert_conserved(records, counters)


def test_first_fragment_after_the_timeout(tmp_path):
    fragments = ipv4_udp_fragments(4, 4444)
    frames = [(START_US, fragments[1]), (START_US + 1000, fragments[2]),
              (START_US + 40_000_000, fragments[0])]
    records, counters = meter_frames(tmp_path, frames, fragment_timeout=30)
    assert one_flow(records)["packets"] == 1
    assert counters["dropped_fragment_orphaned"] == 2
    assert counters["fragment_entries_timed_out"] >= 1
    assert_conserved(records, counters)


def test_fragment_table_is_bounded(tmp_path):
    datagrams = [ipv4_udp_fragments(10 + n, 6000 + n) for n in range(3)]
    # later fragments of three datagrams, then their first fragments
    frames = [d[1] for d in datagrams] + [d[0] for d in datagrams]
    records, counters = meter_frames(tmp_path, frames, max_fragments=2)
    assert counters["fragment_entries_evicted"] >= 1
    assert counters["dropped_fragment_orphaned"] >= 1
    assert_conserved(records, counters)
