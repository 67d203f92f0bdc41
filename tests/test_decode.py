"""The decoder, link type by link type and header by header, through libpcap."""

import struct

import pytest
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH, ESP
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q
from scapy.layers.l2 import Ether as ScapyEther
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.sctp import SCTP

from captures import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    assert_conserved,
    meter_frames,
)

A4, B4 = "192.0.2.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8:ffff::2"
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def Ether(**fields):  # noqa: N802 - scapy's name; fixed MACs spare scapy its ARP lookups
    return ScapyEther(**{**MACS, **fields})


def ether_header(ethertype=0x0800):
    return bytes(Ether(type=ethertype))


def ip4_tcp(**tcp):
    return IP(src=A4, dst=B4) / TCP(sport=40000, dport=443, **tcp) / (b"x" * 10)


def only(records):
    assert len(records) == 1, records
    return records[0]


def test_ethernet_ipv4_tcp(tmp_path):
    frame = Ether() / ip4_tcp(flags="S")
    records, counters = meter_frames(tmp_path, [bytes(frame)])
    r = only(records)
    assert (r["ip_version"], r["protocol"], r["src_addr"], r["dst_addr"]) == (4, 6, A4, B4)
    assert (r["src_port"], r["dst_port"], r["tcp_flags"]) == (40000, 443, 0x02)
    assert (r["packets"], r["octets"]) == (1, 50)
    assert r["flow_start_ms"] == r["flow_end_ms"] == 1_700_000_000_000
    assert_conserved(records, counters)


def test_ethernet_padding_is_not_counted(tmp_path):
    frame = bytes(Ether() / IP(src=A4, dst=B4) / TCP(flags="A"))
    assert len(frame) == 54
    records, _ = meter_frames(tmp_path, [frame + b"\0" * 6])  # padded to the 60-byte minimum
    assert only(records)["octets"] == 40


@pytest.mark.parametrize("tags, vlan, inner", [
    ([Dot1Q(vlan=100)], 100, 0),
    ([Dot1AD(vlan=200), Dot1Q(vlan=300)], 200, 300),
    ([Dot1Q(vlan=7), Dot1Q(vlan=8)], 7, 8),
])
def test_vlan_tags(tmp_path, tags, vlan, inner):
    frame = Ether()
    for tag in tags:
        frame = frame / tag
    frame = frame / ip4_tcp()
    r = only(meter_frames(tmp_path, [bytes(frame)])[0])
    assert (r["vlan_id"], r["inner_vlan_id"], r["dst_port"], r["octets"]) == (vlan, inner, 443, 50)


def test_vlans_separate_flows(tmp_path):
    frames = [bytes(Ether() / Dot1Q(vlan=v) / ip4_tcp()) for v in (10, 20, 10)]
    records, _ = meter_frames(tmp_path, frames)
    assert sorted((r["vlan_id"], r["packets"]) for r in records) == [(10, 2), (20, 1)]


def test_pppoe_session_ipv4_and_ipv6(tmp_path):
    frames = [
        bytes(Ether() / PPPoE(sessionid=5) / PPP(proto=0x0021) / ip4_tcp()),
        bytes(Ether() / PPPoE(sessionid=5) / PPP(proto=0x0057)
              / IPv6(src=A6, dst=B6) / UDP(sport=53, dport=5353) / b"q"),
        bytes(Ether() / PPPoE(sessionid=5) / PPP(proto=0xC021) / b"\x01\x01\x00\x04"),  # LCP
    ]
    records, counters = meter_frames(tmp_path, frames)
    assert sorted((r["ip_version"], r["dst_port"], r["octets"]) for r in records) == \
        [(4, 443, 50), (6, 5353, 49)]
    assert counters["dropped_non_ip"] == 1
    assert_conserved(records, counters)


def test_linux_cooked_v1_and_v2(tmp_path):
    v1 = bytes(CookedLinux(pkttype=4, proto=0x0800) / ip4_tcp())
    v2 = bytes(CookedLinuxV2(proto=0x86DD, ifindex=3) / IPv6(src=A6, dst=B6) / TCP(dport=22))
    r1 = only(meter_frames(tmp_path, [v1], LINKTYPE_LINUX_SLL)[0])
    r2 = only(meter_frames(tmp_path, [v2], LINKTYPE_LINUX_SLL2)[0])
    assert (r1["dst_port"], r1["octets"]) == (443, 50)
    assert (r2["ip_version"], r2["dst_port"], r2["octets"]) == (6, 22, 60)


def test_cooked_with_vlan_inside(tmp_path):
    frame = bytes(CookedLinux(proto=0x8100) / Dot1Q(vlan=42) / ip4_tcp())
    assert only(meter_frames(tmp_path, [frame], LINKTYPE_LINUX_SLL)[0])["vlan_id"] == 42


@pytest.mark.parametrize("linktype", [LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6])
def test_raw_ip(tmp_path, linktype):
    v4, v6 = bytes(ip4_tcp()), bytes(IPv6(src=A6, dst=B6) / UDP(dport=123) / (b"t" * 4))
    frames = {LINKTYPE_RAW: [v4, v6], LINKTYPE_IPV4: [v4], LINKTYPE_IPV6: [v6]}[linktype]
    records, counters = meter_frames(tmp_path, frames, linktype)
    assert len(records) == len(frames)
    assert_conserved(records, counters)


@pytest.mark.parametrize("header", [
    struct.pack("<I", 2),            # DLT_NULL written on a little-endian host
    struct.pack(">I", 2),            # ... on a big-endian one
])
def test_bsd_null_ipv4(tmp_path, header):
    r = only(meter_frames(tmp_path, [header + bytes(ip4_tcp())], LINKTYPE_NULL)[0])
    assert (r["src_addr"], r["octets"]) == (A4, 50)


@pytest.mark.parametrize("family", [10, 24, 28, 30])  # AF_INET6: Linux, NetBSD, FreeBSD, macOS
def test_bsd_loopback_ipv6_families(tmp_path, family):
    packet = bytes(IPv6(src=A6, dst=B6) / TCP(dport=80))
    records, _ = meter_frames(tmp_path, [struct.pack(">I", family) + packet], LINKTYPE_LOOP)
    assert only(records)["ip_version"] == 6


def test_ipv4_options_are_skipped(tmp_path):
    packet = IP(src=A4, dst=B4, options=b"\x94\x04\x00\x00" * 3) / UDP(sport=1, dport=2)
    assert bytes(packet)[0] & 0x0F == 8  # IHL 8: 12 bytes of options
    r = only(meter_frames(tmp_path, [bytes(Ether() / packet)])[0])
    assert (r["src_port"], r["dst_port"], r["octets"]) == (1, 2, 40)


def test_ipv6_extension_chain(tmp_path):
    packet = (IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting()
              / IPv6ExtHdrDestOpt() / TCP(sport=1234, dport=80, flags="SA"))
    r = only(meter_frames(tmp_path, [bytes(Ether() / packet)])[0])
    assert (r["protocol"], r["src_port"], r["dst_port"], r["tcp_flags"]) == (6, 1234, 80, 0x12)
    assert r["octets"] == len(bytes(packet))


def test_authentication_header_is_stepped_over(tmp_path):
    v6 = IPv6(src=A6, dst=B6) / AH(spi=0x1234, nh=6, payloadlen=4, icv=b"\0" * 12) / TCP(dport=25)
    v4 = IP(src=A4, dst=B4) / AH(spi=0x99, nh=17, payloadlen=4, icv=b"\0" * 12) / UDP(dport=500)
    records, _ = meter_frames(tmp_path, [bytes(Ether() / v6), bytes(Ether() / v4)])
    assert sorted((r["protocol"], r["dst_port"]) for r in records) == [(6, 25), (17, 500)]


@pytest.mark.parametrize("layer, protocol, ports", [
    (UDP(sport=5000, dport=53), 17, (5000, 53)),
    (SCTP(sport=2905, dport=2906), 132, (2905, 2906)),
    (ICMP(type=3, code=1), 1, (0, 3 * 256 + 1)),
    (GRE(), 47, (0, 0)),
])
def test_transports(tmp_path, layer, protocol, ports):
    r = only(meter_frames(tmp_path, [bytes(Ether() / IP(src=A4, dst=B4) / layer)])[0])
    assert (r["protocol"], r["src_port"], r["dst_port"]) == (protocol, *ports)


def test_udp_lite_ports(tmp_path):
    packet = IP(src=A4, dst=B4, proto=136) / struct.pack(">HHHH", 7000, 7001, 8, 0)
    r = only(meter_frames(tmp_path, [bytes(Ether() / packet)])[0])
    assert (r["protocol"], r["src_port"], r["dst_port"]) == (136, 7000, 7001)


def test_icmpv6_type_and_code(tmp_path):
    packet = IPv6(src=A6, dst=B6) / ICMPv6EchoRequest()
    r = only(meter_frames(tmp_path, [bytes(Ether() / packet)])[0])
    assert (r["protocol"], r["dst_port"]) == (58, 128 * 256)


def test_esp_spi_is_kept_and_separates_flows(tmp_path):
    frames = [bytes(Ether() / IP(src=A4, dst=B4) / ESP(spi=spi, seq=1) / (b"\0" * 16))
              for spi in (0xDEADBEEF, 0x01020304, 0xDEADBEEF)]
    records, _ = meter_frames(tmp_path, frames)
    assert sorted((r["ipsec_spi"], r["packets"]) for r in records) == \
        [(0x01020304, 1), (0xDEADBEEF, 2)]
    assert all(r["src_port"] == r["dst_port"] == 0 for r in records)


def test_dscp_and_traffic_class(tmp_path):
    frames = [bytes(Ether() / IP(src=A4, dst=B4, tos=0xB8) / UDP()),
              bytes(Ether() / IPv6(src=A6, dst=B6, tc=0x2E << 2) / UDP())]
    records, _ = meter_frames(tmp_path, frames)
    assert sorted(r["tos"] for r in records) == [0xB8, 0xB8]


def test_unknown_protocol_is_still_a_flow(tmp_path):
    packet = IP(src=A4, dst=B4, proto=89) / b"ospf hello....."
    r = only(meter_frames(tmp_path, [bytes(Ether() / packet)])[0])
    assert (r["protocol"], r["src_port"], r["dst_port"]) == (89, 0, 0)


# ---- what is refused, and why ----

def drop_reasons(counters):
    return {k: v for k, v in counters.items() if k.startswith("dropped_") and v}


def test_non_ip_frames(tmp_path):
    frames = [bytes(Ether() / ARP()), bytes(Ether(type=0x88CC) / (b"\0" * 46)),
              bytes(Ether(dst="01:80:c2:00:00:00", type=0x26) / (b"\0" * 46))]  # 802.3 length: STP
    records, counters = meter_frames(tmp_path, frames)
    assert records == []
    assert drop_reasons(counters) == {"dropped_non_ip": 3}


def test_snapped_short_frames_are_truncated(tmp_path):
    full = bytes(Ether() / ip4_tcp())
    frames = [
        (1_700_000_000_000_000, full[:10], len(full)),  # inside Ethernet
        (1_700_000_000_001_000, full[:30], len(full)),  # inside IPv4
        (1_700_000_000_002_000, full[:40], len(full)),  # IPv4 whole, TCP ports cut
        (1_700_000_000_003_000, full[:47], len(full)),  # ports but no flags
    ]
    records, counters = meter_frames(tmp_path, frames)
    assert records == []
    assert drop_reasons(counters) == {"dropped_truncated": 4}


def test_snapped_frame_counts_ip_length_not_captured_length(tmp_path):
    full = bytes(Ether() / IP(src=A4, dst=B4) / UDP() / (b"p" * 1000))
    records, _ = meter_frames(tmp_path, [(1_700_000_000_000_000, full[:64], len(full))])
    assert only(records)["octets"] == 1028


@pytest.mark.parametrize("mangle", [
    lambda p: p[:2] + struct.pack(">H", 9999) + p[4:],      # total length beyond the frame
    lambda p: p[:2] + struct.pack(">H", 10) + p[4:],        # total length below the header
    lambda p: bytes([0x43]) + p[1:],                        # IHL 3
    lambda p: bytes([0x55]) + p[1:],                        # version 5
])
def test_malformed_ipv4(tmp_path, mangle):
    packet = bytes(IP(src=A4, dst=B4) / UDP() / b"data")
    records, counters = meter_frames(tmp_path, [ether_header() + mangle(packet)])
    assert records == []
    assert drop_reasons(counters) == {"dropped_malformed": 1}


def test_ipv6_header_loop_is_malformed(tmp_path):
    packet = IPv6(src=A6, dst=B6)
    for _ in range(20):
        packet = packet / IPv6ExtHdrDestOpt()
    records, counters = meter_frames(tmp_path, [bytes(Ether() / packet / UDP())])
    assert records == [] and drop_reasons(counters) == {"dropped_malformed": 1}


def test_ipv6_extension_header_beyond_payload_is_malformed(tmp_path):
    raw = bytearray(bytes(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / UDP()))
    raw[41] = 200  # hop-by-hop length far past the packet
    records, counters = meter_frames(tmp_path, [ether_header(0x86DD) + bytes(raw)])
    assert records == [] and drop_reasons(counters) == {"dropped_malformed": 1}


def test_ipv4_total_length_zero_uses_frame(tmp_path):
    """TSO/BIG TCP frames captured on the host carry total length 0."""
    raw = bytearray(bytes(IP(src=A4, dst=B4) / TCP() / (b"z" * 2000)))
    raw[2:4] = b"\0\0"
    r = only(meter_frames(tmp_path, [ether_header() + bytes(raw)])[0])
    assert r["octets"] == 2040


def test_link_type_is_checked_at_open(tmp_path):
    from captures import run_cli, write_pcap
    path = write_pcap(tmp_path / "ppp.pcap", [b"\xff\x03\x00\x21"], linktype=9)  # DLT_PPP
    result = run_cli("read", path, "--json")
    assert result.returncode != 0
    assert "unsupported link type 9" in result.stderr and result.stdout == ""


def test_ethernet_linktype_constant():
    assert LINKTYPE_ETHERNET == 1
