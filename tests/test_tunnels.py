"""Tunnels: with `tunnels inner` a tunnel's packets are metered as the
packets inside it, keyed and exported with the tunnel's segment
(layer2SegmentId); with `outer` (the default) as the tunnel itself.  Every
frame is built with scapy, written to a pcap file and metered through
libpcap; the truth is what was put inside the tunnel."""

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP
from scapy.layers.l2 import Ether as ScapyEther
from scapy.layers.l2tp import L2TP
from scapy.layers.ppp import PPP
from scapy.layers.vxlan import VXLAN

from captures import assert_conserved, meter_frames

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
OUTER4 = IP(src="192.0.2.1", dst="192.0.2.2")
OUTER6 = IPv6(src="2001:db8::1", dst="2001:db8::2")


def Ether(**fields):  # noqa: N802 - scapy's name; fixed MACs spare scapy its ARP lookups
    return ScapyEther(**{**MACS, **fields})


def segment(kind, identifier=0):
    return kind << 56 | identifier


VXLAN_SEGMENT, GRE_SEGMENT, GENEVE_SEGMENT, L2TP_SEGMENT, GTPU_SEGMENT, IPIP_SEGMENT = (
    0x01, 0x02, 0x81, 0x82, 0x83, 0x84)
MPLS_SEGMENT = 0x85


def inner_tcp(n):
    return IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=443) / (b"x" * n)


def inner_udp6(n):
    return IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5000, dport=53) / (b"y" * n)


# L2TPv3 over UDP as Linux's l2tp_eth sends it (RFC 3931 4.1.2.1): version 3,
# session 0x10002, the default sublayer unsequenced (RFC 4719), Ethernet
L2TPV3_DATA = b"\x00\x03\x00\x00" + b"\x00\x01\x00\x02" + b"\x00\x00\x00\x00"

# name: (outer headers up to the inner packet, inner packet, segment id,
#        outer protocol; None: not IP outside, counted as non-IP with outer)
ENCAPSULATIONS = {
    "ipip": (lambda p: OUTER4 / p, inner_tcp, segment(IPIP_SEGMENT), 4),
    "6in4": (lambda p: OUTER4 / p, inner_udp6, segment(IPIP_SEGMENT), 41),
    "ip6ip6": (lambda p: OUTER6 / p, inner_udp6, segment(IPIP_SEGMENT), 41),
    "ip4in6": (lambda p: OUTER6 / p, inner_tcp, segment(IPIP_SEGMENT), 4),
    "gre": (lambda p: OUTER4 / GRE() / p, inner_tcp, segment(GRE_SEGMENT), 47),
    "gre-key-seq-csum": (
        lambda p: OUTER4 / GRE(chksum_present=1, key_present=1, key=0xfeed0001,
                               seqnum_present=1, sequence_number=7) / p,
        inner_udp6, segment(GRE_SEGMENT, 0xfeed0001), 47),
    "ip6gre": (lambda p: OUTER6 / GRE(key_present=1, key=5) / p, inner_tcp,
               segment(GRE_SEGMENT, 5), 47),
    "gretap": (lambda p: OUTER4 / GRE(proto=0x6558, key_present=1, key=77) / Ether() / p,
               inner_tcp, segment(GRE_SEGMENT, 77), 47),
    "vxlan": (lambda p: OUTER4 / UDP(sport=33333, dport=4789) / VXLAN(vni=4242) / Ether() / p,
              inner_tcp, segment(VXLAN_SEGMENT, 4242), 17),
    "vxlan6": (lambda p: OUTER6 / UDP(sport=33333, dport=4789) / VXLAN(vni=1) / Ether() / p,
               inner_udp6, segment(VXLAN_SEGMENT, 1), 17),
    "geneve": (lambda p: OUTER4 / UDP(sport=33333, dport=6081) / GENEVE(vni=99, proto=0x6558)
               / Ether() / p, inner_tcp, segment(GENEVE_SEGMENT, 99), 17),
    "geneve-ip": (lambda p: OUTER4 / UDP(sport=33333, dport=6081) / GENEVE(vni=98, proto=0x86dd)
                  / p, inner_udp6, segment(GENEVE_SEGMENT, 98), 17),
    "l2tp": (lambda p: OUTER4 / UDP(sport=1701, dport=1701) / L2TP(tunnel_id=5, session_id=7)
             / PPP() / p, inner_tcp, segment(L2TP_SEGMENT, 5 << 16 | 7), 17),
    "l2tp-acfc-ipv6": (lambda p: OUTER4 / UDP(sport=1701, dport=40000)
                       / L2TP(tunnel_id=6, session_id=8) / b"\xff\x03" / PPP(proto=0x57) / p,
                       inner_udp6, segment(L2TP_SEGMENT, 6 << 16 | 8), 17),
    "l2tpv3": (lambda p: OUTER4 / UDP(sport=1701, dport=1701) / L2TPV3_DATA / Ether() / p,
               inner_tcp, segment(L2TP_SEGMENT, 0x10002), 17),
    "l2tpv3-no-sublayer": (lambda p: OUTER4 / UDP(sport=1701, dport=1701)
                           / L2TPV3_DATA[:8] / Ether() / p,
                           inner_udp6, segment(L2TP_SEGMENT, 0x10002), 17),
    "gtpu": (lambda p: OUTER4 / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=0xabcdef) / p,
             inner_tcp, segment(GTPU_SEGMENT, 0xabcdef), 17),
    "gtpu-extension": (lambda p: OUTER4 / UDP(sport=2152, dport=2152)
                       / GTP_U_Header(teid=3, E=1, next_ex=0x85)
                       / GTPPDUSessionContainer(type=1, QFI=5) / p,
                       inner_udp6, segment(GTPU_SEGMENT, 3), 17),
    "mpls": (lambda p: MPLS(label=100, s=0) / MPLS(label=2000, s=1) / p, inner_tcp,
             segment(MPLS_SEGMENT, 2000), None),
    "mpls-ipv6": (lambda p: MPLS(label=16, s=1) / p, inner_udp6, segment(MPLS_SEGMENT, 16), None),
    "mpls-in-gre": (lambda p: OUTER4 / GRE(proto=0x8847) / MPLS(label=30, s=1) / p, inner_tcp,
                    segment(MPLS_SEGMENT, 30), 47),
}
SIZES = (10, 200, 33)


def frames_of(name):
    wrap, inner, _, _ = ENCAPSULATIONS[name]
    packets = [inner(n) for n in SIZES]
    return [bytes(Ether() / wrap(p)) for p in packets], sum(len(p) for p in packets)


@pytest.mark.parametrize("name", ENCAPSULATIONS)
def test_inner_flow_is_the_truth(tmp_path, name):
    frames, inner_octets = frames_of(name)
    records, counters = meter_frames(tmp_path, frames, tunnels="inner")
    assert_conserved(records, counters)
    assert len(records) == 1, records
    r = records[0]
    inner = ENCAPSULATIONS[name][1](0)
    assert r["src_addr"] == inner.src and r["dst_addr"] == inner.dst
    assert (r["src_port"], r["dst_port"]) == (inner.sport, inner.dport)
    assert (r["packets"], r["octets"]) == (len(SIZES), inner_octets)
    assert r["layer2_segment_id"] == ENCAPSULATIONS[name][2]
    assert counters["tunnel_packets_inner"] == len(SIZES)


@pytest.mark.parametrize("name", ENCAPSULATIONS)
def test_outer_is_todays_behaviour(tmp_path, name):
    frames, _ = frames_of(name)
    records, counters = meter_frames(tmp_path, frames)
    assert_conserved(records, counters)
    if ENCAPSULATIONS[name][3] is None:
        assert records == [] and counters["dropped_non_ip"] == len(SIZES)
        return
    r = records[0]
    assert len(records) == 1 and r["protocol"] == ENCAPSULATIONS[name][3]
    assert r["packets"] == len(SIZES) and "layer2_segment_id" not in r
    assert counters["tunnel_packets_inner"] == 0


def test_two_tenants_same_inner_flow_stay_apart(tmp_path):
    frames = [bytes(Ether() / OUTER4 / UDP(sport=1000 + vni, dport=4789) / VXLAN(vni=vni)
                    / Ether() / inner_tcp(10)) for vni in (10, 20, 10)]
    records, counters = meter_frames(tmp_path, frames, tunnels="inner")
    assert_conserved(records, counters)
    by_segment = {r["layer2_segment_id"]: r["packets"] for r in records}
    assert by_segment == {segment(VXLAN_SEGMENT, 10): 2, segment(VXLAN_SEGMENT, 20): 1}


def test_inner_and_direct_traffic_stay_apart(tmp_path):
    frames = [bytes(Ether() / inner_tcp(10)), bytes(Ether() / OUTER4 / GRE() / inner_tcp(10))]
    records, _ = meter_frames(tmp_path, frames, tunnels="inner")
    assert sorted(r.get("layer2_segment_id", 0) for r in records) == [0, segment(GRE_SEGMENT)]


def test_the_innermost_identifier_names_the_segment(tmp_path):
    # IP in IP inside VXLAN: IPIP has no identifier, so the VNI names it
    frame = Ether() / OUTER4 / UDP(dport=4789) / VXLAN(vni=7) / Ether() / OUTER4 / inner_tcp(5)
    records, counters = meter_frames(tmp_path, [bytes(frame)], tunnels="inner")
    assert records[0]["layer2_segment_id"] == segment(VXLAN_SEGMENT, 7)
    assert records[0]["protocol"] == 6 and counters["tunnel_packets_inner"] == 1


def test_nesting_beyond_the_limit_is_counted_and_metered(tmp_path):
    packet = inner_tcp(5)
    for _ in range(6):
        packet = IP(src="198.51.100.1", dst="198.51.100.2") / packet
    records, counters = meter_frames(tmp_path, [bytes(Ether() / packet)], tunnels="inner")
    assert_conserved(records, counters)
    # four tunnels opened: the fifth IP header is metered, carrying protocol 4
    assert only_one(records)["protocol"] == 4 and records[0]["src_addr"] == "198.51.100.1"
    assert counters["tunnel_packets_too_deep"] == 1 and counters["tunnel_packets_inner"] == 0


def only_one(records):
    assert len(records) == 1, records
    return records[0]


@pytest.mark.parametrize("inside, why", [
    (Ether() / ARP(), "not IP"),
    (Ether() / b"\x45\x00", "cut"),
    (Ether() / IP(src="10.0.0.1", dst="10.0.0.2", len=9999) / b"z", "impossible length"),
])
def test_undecodable_inside_meters_the_tunnel(tmp_path, inside, why):
    frame = Ether() / OUTER4 / UDP(sport=1, dport=4789) / VXLAN(vni=3) / inside
    records, counters = meter_frames(tmp_path, [bytes(frame)], tunnels="inner")
    assert_conserved(records, counters)
    r = only_one(records)
    assert (r["protocol"], r["dst_port"], r["octets"]) == (17, 4789, len(frame) - 14), why
    assert counters["tunnel_packets_undecoded"] == 1


def test_a_pseudowire_in_gre_meters_the_tunnel(tmp_path):
    frame = Ether() / OUTER4 / GRE(proto=0x8847) / MPLS(s=1) / (b"\x00" * 4) / Ether()
    records, counters = meter_frames(tmp_path, [bytes(frame)], tunnels="inner")
    assert_conserved(records, counters)
    assert only_one(records)["protocol"] == 47 and counters["tunnel_packets_undecoded"] == 1


def test_mpls_stacks_beyond_the_bound_are_not_flows(tmp_path):
    labels = MPLS(s=0)
    for _ in range(8):
        labels = labels / MPLS(s=0)
    frame = Ether() / labels / MPLS(s=1) / inner_tcp(1)
    records, counters = meter_frames(tmp_path, [bytes(frame)], tunnels="inner")
    assert records == [] and counters["dropped_non_ip"] == 1


def test_tunnel_cut_by_the_snap_length_meters_the_tunnel(tmp_path):
    # the snap length ends inside the inner IPv6 header
    from captures import START_US, meter_pcap, write_pcap
    frame = bytes(Ether() / OUTER6 / UDP(dport=4789) / VXLAN(vni=3) / Ether()
                  / inner_udp6(100))
    path = write_pcap(tmp_path / "cut.pcap", [(START_US, frame[:90], len(frame))])
    records, counters = meter_pcap(path, tunnels="inner")
    assert_conserved(records, counters)
    assert only_one(records)["octets"] == len(frame) - 14
    assert counters["tunnel_packets_undecoded"] == 1


def test_fragmented_tunnel_packets_stay_outer_flows(tmp_path):
    # fragmented outside, the inner header is split: metered as the tunnel
    datagram = OUTER4 / GRE() / inner_tcp(3000)
    frames = [bytes(Ether() / f) for f in fragment(datagram, fragsize=1000)]
    records, counters = meter_frames(tmp_path, frames, tunnels="inner")
    assert_conserved(records, counters)
    r = only_one(records)
    assert r["protocol"] == 47 and r["packets"] == len(frames)


def test_inner_fragments_join_their_flow(tmp_path):
    inner = inner_tcp(3000)
    pieces = fragment(inner, fragsize=1000)
    frames = [bytes(Ether() / OUTER4 / GRE(key_present=1, key=9) / p)
              for p in reversed(pieces)]   # the first fragment last: the rest wait for it
    records, counters = meter_frames(tmp_path, frames, tunnels="inner")
    assert_conserved(records, counters)
    r = only_one(records)
    assert (r["src_port"], r["dst_port"], r["packets"]) == (40000, 443, len(pieces))
    assert r["octets"] == sum(len(p) for p in pieces)
    assert r["layer2_segment_id"] == segment(GRE_SEGMENT, 9)


@pytest.mark.parametrize("frame", [
    OUTER4 / GRE(version=1) / inner_tcp(1),                  # version 1: PPTP's GRE
    OUTER4 / GRE(routing_present=1) / inner_tcp(1),        # RFC 1701 source routing
    OUTER4 / GRE(proto=0x880b) / (b"\x00" * 20),             # PPP in GRE
    OUTER4 / UDP(sport=4789, dport=4789) / (b"\x00" * 20),   # port 4789 without VXLAN's I flag
    OUTER4 / UDP(dport=2152) / (b"\x32\x01" + b"\x00" * 20),  # GTP-U echo, not a G-PDU
    OUTER4 / UDP(dport=1701) / (b"\xc8\x02" + b"\x00" * 20),  # L2TP control message
])
def test_what_is_not_opened_stays_as_it_is(tmp_path, frame):
    records, counters = meter_frames(tmp_path, [bytes(Ether() / frame)], tunnels="inner")
    assert_conserved(records, counters)
    assert only_one(records)["src_addr"] == "192.0.2.1"
    assert counters["tunnel_packets_inner"] == counters["tunnel_packets_undecoded"] == 0


def test_tshark_decodes_inner_flows_with_their_segment(tmp_path):
    """Two tenants' identical inner 5-tuples go out as two IPFIX records,
    told apart by layer2SegmentId (IE 351), as a real decoder reads them."""
    from captures import write_pcap
    from collector_tools import (
        TSHARK,
        DatagramRecorder,
        missing_tools,
        tshark_decode,
        tshark_problems,
    )
    from test_export_collectors import export

    if missing_tools(TSHARK):
        pytest.skip(missing_tools(TSHARK))
    frames = [bytes(Ether() / OUTER4 / UDP(sport=1000, dport=4789) / VXLAN(vni=vni) / Ether()
                    / inner_tcp(n)) for vni, n in ((10, 10), (20, 30), (10, 50))]
    path = write_pcap(tmp_path / "vxlan.pcap", frames)
    fields = ("sourceIPv4Address,destinationIPv4Address,sourceTransportPort,"
              "destinationTransportPort,protocolIdentifier,packetDeltaCount,octetDeltaCount,"
              "layer2SegmentId")
    with DatagramRecorder() as recorder:
        summary = export(path, f"ipfix://127.0.0.1:{recorder.port}?fields={fields}",
                         extra=("--tunnels", "inner"))
        recorder.wait(summary["exporters"][0]["messages_sent"])
        recorder.write_pcap(tmp_path / "out.pcap")
    assert tshark_problems(tmp_path / "out.pcap", recorder.port) == []
    records = [r["fields"] for m in tshark_decode(tmp_path / "out.pcap", recorder.port)
               for r in m["records"] if r["kind"] == "data"]
    got = sorted((r["cflow.srcaddr"], r["cflow.dstaddr"], r["cflow.srcport"], r["cflow.dstport"],
                  r["cflow.packets"], r["cflow.octets"],
                  next(v for k, v in r.items() if "segment" in k)) for r in records)
    assert got == [
        ("10.0.0.1", "10.0.0.2", "40000", "443", "1", str(40 + 30), str(segment(1, 20))),
        ("10.0.0.1", "10.0.0.2", "40000", "443", "2", str(2 * 40 + 60), str(segment(1, 10))),
    ]


def test_the_option_per_interface_and_its_errors():
    from flowprobe import config
    text = """
config flowprobe 'main'
\toption enabled '1'
\tlist interface 'wan'
\tlist interface 'lan'
config interface 'wan'
\toption tunnels 'inner'
"""
    parsed = config.parse(text)
    assert {i.name: i.tunnels for i in parsed.interfaces} == {"wan": "inner", "lan": "outer"}
    assert parsed.meter.tunnels == "inner"   # the table keys flows by tunnel too
    assert config.parse(text.replace("'inner'", "'outer'")).meter.tunnels == "outer"
    assert config.parse(text.replace("'inner'", "'both'")).meter.tunnels == "inner"
    with pytest.raises(config.ConfigError, match=r"flowprobe\.wan\.tunnels: invalid value "
                                                 r"'all' \(allowed: outer, inner, both\)"):
        config.parse(text.replace("'inner'", "'all'"))


def test_a_table_without_segments_refuses_inner_sources(tmp_path):
    from captures import write_pcap
    from flowprobe.meter import Meter, MeterError
    from flowprobe.settings import MeterSettings
    path = write_pcap(tmp_path / "one.pcap", [bytes(Ether() / inner_tcp(1))])
    outer = Meter(MeterSettings())
    for tunnels in ("inner", "both"):
        with pytest.raises(MeterError, match="inner and both on a meter made with tunnels inner"):
            outer.open_file(path, tunnels=tunnels)
    inner = Meter(MeterSettings(tunnels="inner"))
    assert inner.memory_bytes > outer.memory_bytes   # 8 bytes a slot for the segment
    inner.close(inner.open_file(path, tunnels="outer"))


def test_collectors_without_a_field_list_get_the_segment():
    from flowprobe import config
    from flowprobe.service.sinks import exporter_changes
    text = """
config flowprobe 'main'
\toption enabled '1'
\tlist interface 'wan'
config interface 'wan'
\toption tunnels 'inner'
config collector 'plain'
\toption host '127.0.0.1'
config collector 'v9'
\toption host '127.0.0.1'
\toption protocol 'netflow9'
config collector 'chosen'
\toption host '127.0.0.1'
\toption fields 'sourceIPv4Address packetDeltaCount'
"""
    from flowprobe.export.fields import with_segment_field
    inner = config.parse(text)
    profiles = {p.name: p for p in with_segment_field(inner.collectors, inner.collectors)}
    assert profiles["plain"].field_names[-1] == "layer2SegmentId"
    assert "layer2SegmentId" not in profiles["v9"].field_names   # v9 has no such field
    assert profiles["chosen"].field_names == ("sourceIPv4Address", "packetDeltaCount")
    outer = config.parse(text.replace("'inner'", "'outer'"))
    assert exporter_changes(outer, inner)   # the templates change


# ---- tunnels both: one decode, a packet in its tunnel's flow and its inner flow ----

FLOW_KEY = ("src_addr", "dst_addr", "src_port", "dst_port", "protocol", "layer2_segment_id")


def flow_counts(records):
    """(addresses, ports, protocol, segment) -> (packets, octets)."""
    counts = {}
    for r in records:
        key = tuple(r.get(name, 0) for name in FLOW_KEY)
        packets, octets = counts.get(key, (0, 0))
        counts[key] = (packets + r["packets"], octets + r["octets"])
    return counts


def three_ways(tmp_path, frames):
    return {tunnels: meter_frames(tmp_path, frames, tunnels=tunnels)
            for tunnels in ("outer", "inner", "both")}


@pytest.mark.parametrize("name", ENCAPSULATIONS)
def test_both_is_the_outer_flow_and_the_inner_flow(tmp_path, name):
    frames, _ = frames_of(name)
    runs = three_ways(tmp_path, frames)
    records, counters = runs["both"]
    assert_conserved(records, counters)
    assert flow_counts(records) == {**flow_counts(runs["outer"][0]),
                                    **flow_counts(runs["inner"][0])}
    # an MPLS label stack on the link has no IP flow outside: metered once, inside
    twice = len(SIZES) if ENCAPSULATIONS[name][3] is not None else 0
    assert counters["tunnel_packets_counted_twice"] == twice
    assert counters["tunnel_packets_inner"] == len(SIZES)
    assert counters["packets_metered"] == counters["packets_read"] + twice


def every_case():
    """Every encapsulation, and every way a tunnel is not (all) opened."""
    frames = [f for name in ENCAPSULATIONS for f in frames_of(name)[0]]
    nested = inner_tcp(5)
    for _ in range(6):
        nested = IP(src="198.51.100.1", dst="198.51.100.2") / nested
    vxlan = OUTER4 / UDP(sport=1, dport=4789) / VXLAN(vni=3)
    odd = [nested, vxlan / Ether() / ARP(), vxlan / Ether() / b"\x45\x00",
           OUTER4 / GRE(proto=0x8847) / MPLS(s=1) / (b"\x00" * 4) / Ether(),
           OUTER4 / GRE(version=1) / inner_tcp(1), OUTER4 / UDP(dport=1701) / (b"\xc8\x02" * 9),
           OUTER4 / UDP(sport=2, dport=4789) / VXLAN(vni=4) / Ether() / OUTER6 / GRE(key_present=1,
                                                                                  key=8)
           / inner_udp6(7),
           inner_tcp(3)]
    odd += fragment(OUTER4 / GRE() / inner_tcp(3000), fragsize=1000)
    odd += reversed(fragment(inner_tcp(2500), fragsize=800))
    frames += [bytes(Ether() / p) for p in odd[:-4]]
    frames += [bytes(Ether() / OUTER4 / GRE(key_present=1, key=9) / p) for p in odd[-4:]]
    return frames


def test_both_is_outer_plus_what_inner_opened(tmp_path):
    """The one property, on everything at once: with both, the flows are
    exactly outer's flows and inner's flows that carry a tunnel segment."""
    runs = three_ways(tmp_path, every_case())
    (records, counters), (inner, inner_counters) = runs["both"], runs["inner"]
    assert_conserved(records, counters)
    outer = flow_counts(runs["outer"][0])
    opened = {key: value for key, value in flow_counts(inner).items() if key[-1]}
    assert not set(outer) & set(opened)
    assert flow_counts(records) == {**outer, **opened}
    for name in ("tunnel_packets_inner", "tunnel_packets_undecoded", "tunnel_packets_too_deep"):
        assert counters[name] == inner_counters[name], name
    assert counters["packets_metered"] == (sum(p for p, _ in outer.values())
                                           + sum(p for p, _ in opened.values()))


def test_both_samples_a_packet_once(tmp_path):
    """Sampling decides before decoding: a packet taken is in both flows and
    one sFlow sample, a packet passed over in neither."""
    from captures import write_pcap
    from flowprobe.meter import Meter
    from flowprobe.settings import MeterSettings
    frames = [bytes(Ether() / OUTER4 / UDP(sport=7, dport=4789) / VXLAN(vni=5) / Ether()
                    / inner_tcp(n)) for n in range(50)] * 8
    path = write_pcap(tmp_path / "vxlan.pcap", frames)
    meter = Meter(MeterSettings(hash_seed=1, tunnels="both"))
    meter.set_sampling(0, 4, "random", seed=3)
    meter.keep_samples(1024)
    records = [r for batch in meter.read_file(path) for r in batch]
    samples = sum(n for _, n in meter.drain_samples_raw())
    meter.flush()
    records += meter.drain()
    counters = meter.counters()
    assert_conserved(records, counters)
    taken = counters["packets_read"] - counters["packets_skipped_by_sampling"]
    assert 0 < taken < len(frames)
    by_segment = flow_counts(records)
    assert sorted(p for p, _ in by_segment.values()) == [taken, taken]
    assert samples == taken == counters["tunnel_packets_counted_twice"]


def test_status_says_what_was_counted_twice():
    from flowprobe.cli.status import details
    meter = {"packets_read": 10, "packets_metered": 16, "tunnel_packets_inner": 6,
             "tunnel_packets_counted_twice": 6}
    text = "\n".join(details({"meter": meter}, 0))
    assert "Tunnels" in text and "counted twice 6" in text
    assert "Tunnels" not in "\n".join(details({"meter": {"packets_read": 1}}, 0))
