"""Properties over random traffic: nothing is lost, nothing grows.

For any packet sequence, table size and timeouts: every packet read ends
in a record or under a named drop reason, and the table never holds more
than max_flows active flows.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrFragment,
    fragment6,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from captures import START_US, dropped
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
HOSTS4 = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
HOSTS6 = ["2001:db8::1", "2001:db8::2"]
LINKTYPES = [0, 1, 12, 101, 108, 113, 228, 229, 276]


def _pool():
    """A fixed set of frames to draw from: both directions, every protocol,
    fragments of several datagrams, and frames that must be refused."""
    frames = []
    for src in HOSTS4:
        for dst in HOSTS4:
            if src == dst:
                continue
            for flags in ("S", "SA", "A", "PA", "FA", "R"):
                frames.append(IP(src=src, dst=dst) / TCP(sport=1000, dport=80, flags=flags))
                frames.append(IP(src=dst, dst=src) / TCP(sport=80, dport=1000, flags=flags))
            frames.append(IP(src=src, dst=dst) / UDP(sport=53, dport=53))
            frames.append(IP(src=src, dst=dst) / ICMP(type=8))
            frames.append(IP(src=src, dst=dst) / ICMP(type=0))
    frames += [IP(src="10.0.0.1", dst="10.0.0.2", id=77) / UDP(sport=7, dport=7) / (b"x" * 3000)]
    frames[-1:] = fragment(frames[-1], fragsize=1000)
    frames += fragment(IP(src="10.0.0.2", dst="10.0.0.1", id=77) / ICMP() / (b"y" * 2500), 1000)
    for src, dst in ((HOSTS6[0], HOSTS6[1]), (HOSTS6[1], HOSTS6[0])):
        frames.append(IPv6(src=src, dst=dst) / ICMPv6EchoRequest())
        frames.append(IPv6(src=src, dst=dst) / ICMPv6EchoReply())
        frames.append(IPv6(src=src, dst=dst) / TCP(sport=2000, dport=443, flags="SA"))
        frames += fragment6(IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(id=5)
                            / UDP(sport=9, dport=9) / (b"z" * 3000), 1280)
    built = [bytes(Ether(**MACS) / f) for f in frames]
    built.append(bytes(Ether(**MACS) / Dot1Q(vlan=3) / IP(src=HOSTS4[0], dst=HOSTS4[1]) / UDP()))
    built.append(bytes(Ether(**MACS) / ARP()))
    return built


POOL = _pool()


def _fragment_groups():
    """Datagrams as lists of fragments, to be sent in a drawn order."""
    groups = [
        fragment(IP(src="10.0.0.3", dst="10.0.0.1", id=9) / UDP(sport=5, dport=6) / (b"a" * 3500),
                 1000),
        fragment(IP(src="10.0.0.1", dst="10.0.0.3", id=9) / ICMP(type=8) / (b"b" * 2500), 1000),
        fragment6(IPv6(src=HOSTS6[0], dst=HOSTS6[1]) / IPv6ExtHdrFragment(id=11)
                  / TCP(sport=3, dport=4, flags="PA") / (b"c" * 3000), 1280),
    ]
    return [[bytes(Ether(**MACS) / f) for f in group] for group in groups]


FRAGMENT_GROUPS = _fragment_groups()

single_packet = st.tuples(
    st.integers(0, len(POOL) - 1).map(lambda i: [POOL[i]]),
    st.integers(0, 8000),                      # ms since the previous packet
    st.one_of(st.none(), st.integers(0, 80)),  # captured length cut, if any
)
whole_datagram = st.tuples(
    st.sampled_from(FRAGMENT_GROUPS).flatmap(st.permutations),
    st.integers(0, 4000),
    st.none(),
)
packet_events = st.lists(st.one_of(single_packet, whole_datagram), max_size=60)

meter_settings = st.builds(
    MeterSettings,
    max_flows=st.integers(1, 12),
    max_fragments=st.integers(1, 4),
    idle_timeout=st.sampled_from([0.5, 2, 15]),
    active_timeout=st.sampled_from([1, 5, 300]),
    unanswered_timeout=st.sampled_from([0.2, 1, 5]),
    tcp_end_grace=st.sampled_from([0, 0.5, 2]),
    fragment_timeout=st.sampled_from([0.5, 3, 30]),
    overflow_policy=st.sampled_from(["evict", "refuse"]),
    bidirectional=st.booleans(),
    hash_seed=st.integers(0, 2**64 - 1),
)


def check_conserved(meter, records):
    counters = meter.counters()
    in_records = sum(r["packets"] + r.get("reverse_packets", 0) for r in records)
    octets = sum(r["octets"] + r.get("reverse_octets", 0) for r in records)
    assert counters["packets_read"] == (in_records + dropped(counters)
                                       + counters["packets_skipped_by_sampling"])
    assert counters["octets_metered"] == octets
    assert counters["fragment_packets_held"] == 0
    assert counters["flows_active"] == counters["flows_pending_export"] == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=packet_events, config=meter_settings, drain_every=st.integers(1, 50))
def test_every_packet_is_accounted_for(events, config, drain_every):
    meter = Meter(config)
    records = []
    now_us = START_US
    for n, (frames, gap_ms, cut) in enumerate(events):
        now_us += gap_ms * 1000
        for frame in frames:
            captured = frame[:cut] if cut is not None else frame
            meter.process_frame(captured, 1, now_us, wire_length=len(frame))
            now_us += 100
        assert meter.counters()["flows_active"] <= config.max_flows
        if n % drain_every == 0:
            records += meter.drain()
        if gap_ms > 7000:
            meter.expire(now_us // 1000)
    meter.flush()
    records += meter.drain()
    check_conserved(meter, records)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=200), linktype=st.sampled_from(LINKTYPES),
       wire_extra=st.integers(0, 3000))
def test_arbitrary_bytes_never_crash_and_are_counted(data, linktype, wire_extra):
    meter = Meter(MeterSettings(max_flows=4, max_fragments=2))
    meter.process_frame(data, linktype, START_US, wire_length=len(data) + wire_extra)
    meter.flush()
    check_conserved(meter, meter.drain())


@settings(max_examples=200, deadline=None)
@given(base=st.sampled_from(POOL),
       flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_real_frames_are_counted(base, flips):
    frame = bytearray(base)
    for position, value in flips:
        if position < len(frame):
            frame[position] = value
    meter = Meter(MeterSettings(max_flows=4, max_fragments=2))
    meter.process_frame(bytes(frame), 1, START_US)
    meter.flush()
    check_conserved(meter, meter.drain())
