"""Checksum verification (option verify_checksums): the IPv4 header's and
the TCP, UDP, ICMP and ICMPv6 checksums are checked; a wrong one is counted
in the totals and on its flow, and the packet is metered all the same.  What
cannot be checked (cut by the snap length, a fragment, a checksum left for
the NIC, UDP without one) is counted apart.  Frames are built with scapy
(which computes right checksums unless told a value)."""

import socket

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import Dot1Q
from scapy.layers.l2 import Ether as ScapyEther
from scapy.utils import checksum

from captures import assert_conserved, meter_pcap, write_pcap
from captures import meter_frames as meter_bytes

V4 = {"src": "10.0.0.1", "dst": "10.0.0.2"}
V6 = {"src": "fd00::1", "dst": "fd00::2"}


def Ether():  # noqa: N802 - scapy's name; fixed MACs, no ARP lookups
    return ScapyEther(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def meter(tmp_path, frames, **settings):
    return meter_bytes(tmp_path, [bytes(f) for f in frames], verify_checksums=True, **settings)


def verdicts(counters):
    return (counters["checksum_packets_verified"], counters["checksum_packets_bad"],
            counters["checksum_packets_unverifiable"])


def partial(packet, protocol):
    """What the kernel leaves in a TCP/UDP checksum the NIC is to fill
    (CHECKSUM_PARTIAL): the folded pseudo-header sum, not complemented."""
    ip = packet.getlayer(IP) or packet.getlayer(IPv6)
    length = len(bytes(ip.payload))
    if ip.version == 4:
        pseudo = (socket.inet_aton(ip.src) + socket.inet_aton(ip.dst)
                  + bytes([0, protocol]) + length.to_bytes(2, "big"))
    else:
        pseudo = (socket.inet_pton(socket.AF_INET6, ip.src)
                  + socket.inet_pton(socket.AF_INET6, ip.dst)
                  + length.to_bytes(4, "big") + bytes([0, 0, 0, protocol]))
    return 0xFFFF - checksum(pseudo)   # scapy's checksum() is the complement


def with_ah(packet):
    """The packet with an AH header between IP and its transport, whose
    checksum (over the IP pseudo header, not AH) scapy computed without it."""
    ip = packet.copy()
    transport = bytes(packet.payload)
    del ip.payload
    protocol = packet.proto if packet.version == 4 else packet.nh
    if packet.version == 4:
        ip.proto, ip.len, ip.chksum = 51, None, None
    else:
        ip.nh, ip.plen = 51, None
    return ip / AH(nh=protocol, payloadlen=4, spi=7, icv=b"\0" * 12) / transport


GOOD = [
    Ether() / IP(**V4) / TCP(sport=1000, dport=80, flags="S") / (b"a" * 11),   # odd length
    Ether() / IP(**V4) / UDP(sport=1000, dport=53) / (b"b" * 20),
    Ether() / IP(**V4) / ICMP() / (b"c" * 7),
    Ether() / IPv6(**V6) / TCP(sport=1000, dport=80) / (b"d" * 30),
    Ether() / IPv6(**V6) / UDP(sport=1000, dport=53) / (b"e" * 3),
    Ether() / IPv6(**V6) / ICMPv6EchoRequest() / (b"f" * 9),
    Ether() / IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(dport=9) / b"g",
    Ether() / IPv6(**V6) / IPv6ExtHdrFragment(m=0, offset=0) / TCP(dport=22),  # atomic
    Ether() / Dot1Q(vlan=3) / IP(**V4, options=b"\x01\x01\x01\x00") / TCP(dport=443),
    Ether() / with_ah(IP(**V4) / UDP(dport=500) / b"ah"),
    Ether() / with_ah(IPv6(**V6) / TCP(dport=179)),
]
BAD = [
    Ether() / IP(**V4, chksum=0x1234) / TCP(sport=2000, dport=80),     # IPv4 header
    Ether() / IP(**V4) / TCP(sport=2001, dport=80, chksum=0x4321),     # TCP
    Ether() / IP(**V4) / UDP(sport=2002, dport=53, chksum=7) / b"x",   # UDP
    Ether() / IP(**V4) / ICMP(chksum=9),                                # ICMP
    Ether() / IPv6(**V6) / TCP(sport=2003, dport=80, chksum=1),        # TCP over IPv6
    Ether() / IPv6(**V6) / UDP(sport=2004, dport=53, chksum=0) / b"y",  # IPv6 UDP must have one
    Ether() / IPv6(**V6) / ICMPv6EchoRequest(cksum=5),                  # ICMPv6
]


def test_right_checksums_are_verified_on_every_decoder_path(tmp_path):
    records, counters = meter(tmp_path, GOOD)
    assert verdicts(counters) == (len(GOOD), 0, 0)
    assert not any(r.get("checksum_errors") for r in records)


@pytest.mark.parametrize("frame", BAD, ids=["ipv4-header", "tcp", "udp", "icmp", "tcp6",
                                            "udp6-zero", "icmpv6"])
def test_a_wrong_checksum_is_bad_and_still_metered(tmp_path, frame):
    good = frame.copy()
    for layer in (IP, TCP, UDP, ICMP, ICMPv6EchoRequest):
        if good.haslayer(layer):
            field = "cksum" if layer is ICMPv6EchoRequest else "chksum"
            setattr(good[layer], field, None)
    records, counters = meter(tmp_path, [frame, frame, good])
    assert_conserved(records, counters)
    assert counters["checksum_packets_bad"] == 2
    (record,) = records
    assert (record["packets"], record["checksum_errors"]) == (3, 2)


def test_bad_counts_stay_with_their_flow_in_both_directions_of_a_biflow(tmp_path):
    frames = [Ether() / IP(**V4) / TCP(sport=5, dport=6, chksum=1),
              Ether() / IP(src=V4["dst"], dst=V4["src"]) / TCP(sport=6, dport=5, chksum=2),
              Ether() / IP(**V4) / TCP(sport=5, dport=6),
              Ether() / IP(**V4) / TCP(sport=7, dport=6)]
    records, counters = meter(tmp_path, frames, bidirectional=True)
    by_port = {r["src_port"]: r for r in records}
    assert by_port[5]["checksum_errors"] == 2 and by_port[5]["reverse_packets"] == 1
    assert "checksum_errors" not in by_port[7]
    assert verdicts(counters) == (2, 2, 0)


def test_what_cannot_be_summed_is_unverifiable_not_bad(tmp_path):
    cut = bytes(Ether() / IP(**V4) / UDP(dport=53) / (b"z" * 200))
    udp_none = Ether() / IP(**V4) / UDP(dport=53, chksum=0) / b"q"   # IPv4 UDP: none sent
    fragments = fragment(IP(**V4) / UDP(sport=9, dport=99) / (b"f" * 100), fragsize=48)
    offloaded = [Ether() / IP(**V4) / TCP(sport=3000, dport=80) / (b"o" * 10),
                 Ether() / IPv6(**V6) / UDP(sport=3001, dport=53) / (b"o" * 10)]
    for packet, protocol in zip(offloaded, (6, 17)):
        layer = packet.getlayer(TCP) or packet.getlayer(UDP)
        layer.chksum = partial(packet, protocol)
    frames = [(1_700_000_000_000_000, cut[:100], len(cut)), *[
        (1_700_000_000_001_000 + n, bytes(f)) for n, f in enumerate(
            [udp_none, *[Ether() / f for f in fragments], *offloaded])]]
    path = write_pcap(tmp_path / "unverifiable.pcap", frames)
    records, counters = meter_pcap(path, verify_checksums=True)
    assert_conserved(records, counters)
    assert verdicts(counters) == (0, 0, 2 + len(fragments) + len(offloaded))
    # the offload value is recognised only for itself: one more is bad
    offloaded[0][TCP].chksum += 1
    _, counters = meter(tmp_path, offloaded[:1])
    assert verdicts(counters) == (0, 1, 0)


def test_off_nothing_is_checked_and_records_carry_no_count(tmp_path):
    records, counters = meter_bytes(tmp_path, [bytes(f) for f in BAD])
    assert verdicts(counters) == (0, 0, 0)
    assert not any("checksum_errors" in r for r in records)


def test_json_names_the_count_and_status_counters_exist(tmp_path):
    import json

    from captures import run_cli
    path = write_pcap(tmp_path / "bad.pcap", [bytes(BAD[1]), bytes(BAD[1])])
    result = run_cli("read", "--json", "--verify-checksums", path)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["checksum_errors"] == 2
