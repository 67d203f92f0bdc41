"""Seed corpus for fuzz/fuzz_meter.c: the frames the tests build (every link
type, VLANs, PPPoE, IPv4 options, IPv6 extension chains, fragments in
several orders, truncated and malformed frames), in fuzz_meter's input
format, each scenario once per settings variant.

    .venv/bin/python fuzz/make_corpus.py build/fuzz/corpus
"""

import argparse
import pathlib
import struct

from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH, ESP
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.l2tp import L2TP
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.sctp import SCTP
from scapy.layers.vxlan import VXLAN

# fuzz_meter.c LINK_TYPES indices
NULL, ETHERNET, RAW, RAW_OPENBSD, LOOP, SLL, SLL2, IPV4, IPV6 = range(9)
UNSUPPORTED = 12

# fuzz_meter.c operations
EXPIRE_1S, EXPIRE_PAST = 0xB4, 0xB7
DRAIN_4, DRAIN_128 = 0xBA, 0xBF
SNAPSHOT_2 = 0xC1
EXPIRE_MATCHING = 0xC8
UPDATE_SETTINGS = 0xD0
CHECK_COUNTERS = 0xD8
FLUSH = 0xE0
DRAIN_ALL = 0xF0
REPEAT = 0xA0

A4, B4 = "192.0.2.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8:ffff::2"
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

# settings bytes (fuzz_meter.c settings_from): uniflow with 8 flows and 4
# fragments; biflow; one flow, evicted or refused when full, short timeouts
SETTINGS = {
    "uni": bytes([0x3C, 0x88, 0x88, 0]),
    "bi": bytes([0x3D, 0x88, 0x88, 1]),
    "evict1": bytes([0x00, 0x21, 0x11, 3]),
    "refuse1": bytes([0x02, 0x21, 0x11, 2]),
    "tunnels": bytes([0xBC, 0x88, 0x88, 0]),   # uni, with tunnels inner
    "tunnels_both": bytes([0xBC, 0x88, 0x88, 0x20]),   # uni, with tunnels both
    "l2sum": bytes([0x3D, 0x88, 0x88, 0xC1]),  # biflow, l2_flows and verify_checksums
}


def frame(data, linktype=ETHERNET, dt=1, wire=0, ifindex=0):
    data = bytes(data)
    return bytes([ifindex << 4 | linktype, dt, wire]) + struct.pack(">H", len(data)) + data


def eth(packet):
    return bytes(Ether(**MACS) / packet)


def tcp_conversation(src, dst, ip=IP):
    forward = ip(src=src, dst=dst)
    back = ip(src=dst, dst=src)
    return [forward / TCP(sport=40000, dport=443, flags="S"),
            back / TCP(sport=443, dport=40000, flags="SA"),
            forward / TCP(sport=40000, dport=443, flags="A") / (b"x" * 10),
            forward / TCP(sport=40000, dport=443, flags="FA"),
            back / TCP(sport=443, dport=40000, flags="FA")]


def link_layer_scenarios():
    v4 = tcp_conversation(A4, B4)
    v6 = tcp_conversation(A6, B6, IPv6)
    loop = {4: struct.pack(">I", 2), 6: struct.pack(">I", 10)}
    return {
        "ethernet": [frame(eth(p)) for p in v4 + v6],
        "null_le": [frame(struct.pack("<I", 2) + bytes(p), NULL) for p in v4]
        + [frame(struct.pack("<I", 30) + bytes(p), NULL) for p in v6],
        "loop": [frame(loop[4] + bytes(p), LOOP) for p in v4]
        + [frame(loop[6] + bytes(p), LOOP) for p in v6],
        "raw": [frame(p, RAW) for p in v4 + v6],
        "raw_openbsd": [frame(p, RAW_OPENBSD) for p in v4 + v6],
        "ipv4": [frame(p, IPV4) for p in v4] + [frame(v6[0], IPV4)],
        "ipv6": [frame(p, IPV6) for p in v6] + [frame(v4[0], IPV6)],
        "sll": [frame(CookedLinux(pkttype=4, proto=0x0800) / p, SLL) for p in v4]
        + [frame(CookedLinux(proto=0x8100) / Dot1Q(vlan=42) / v4[0], SLL)],
        "sll2": [frame(CookedLinuxV2(proto=0x86DD, ifindex=3) / p, SLL2) for p in v6],
        "unsupported": [frame(eth(v4[0]), UNSUPPORTED)],
        "interfaces": [frame(eth(p), ifindex=n % 3) for n, p in enumerate(v4)],
    }


def header_scenarios():
    udp4 = IP(src=A4, dst=B4) / UDP(sport=5000, dport=53) / b"q"
    udp6 = IPv6(src=A6, dst=B6) / UDP(sport=53, dport=5353) / b"q"
    chain = IPv6(src=A6, dst=B6)
    for _ in range(20):  # past the decoder's bound on extension headers
        chain = chain / IPv6ExtHdrDestOpt()
    chain = chain / UDP()
    return {
        "vlan": [frame(Ether(**MACS) / Dot1Q(vlan=10) / udp4),
                 frame(Ether(**MACS) / Dot1AD(vlan=100) / Dot1Q(vlan=20) / udp4),
                 frame(Ether(**MACS, type=0x9100) / Dot1Q(vlan=30) / udp6),
                 frame(Ether(**MACS) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3)
                       / Dot1Q(vlan=4) / Dot1Q(vlan=5) / udp4)],
        "pppoe": [frame(Ether(**MACS) / PPPoE(sessionid=5) / PPP(proto=0x0021) / udp4),
                  frame(Ether(**MACS) / PPPoE(sessionid=5) / PPP(proto=0x0057) / udp6),
                  frame(Ether(**MACS) / PPPoE(sessionid=5) / PPP(proto=0xC021)
                        / b"\x01\x01\x00\x04")],
        "ipv4_options": [frame(eth(IP(src=A4, dst=B4, options=b"\x94\x04\x00\x00" * 3)
                                   / UDP(sport=1, dport=2)))],
        "ipv6_extensions": [frame(eth(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop()
                                      / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt()
                                      / TCP(sport=1234, dport=80, flags="SA")))],
        "ipv6_header_loop": [frame(eth(chain))],
        "ah": [frame(eth(IPv6(src=A6, dst=B6) / AH(spi=0x1234, nh=6, payloadlen=4,
                                                   icv=b"\0" * 12) / TCP(dport=25))),
               frame(eth(IP(src=A4, dst=B4) / AH(spi=0x99, nh=17, payloadlen=4,
                                                 icv=b"\0" * 12) / UDP(dport=500)))],
        "esp": [frame(eth(IP(src=A4, dst=B4) / ESP(spi=spi, seq=1) / (b"\0" * 16)))
                for spi in (0xDEADBEEF, 0x01020304, 0xDEADBEEF)],
        "transports": [frame(eth(IP(src=A4, dst=B4) / layer)) for layer in (
            SCTP(sport=2905, dport=2906), ICMP(type=8), GRE(),
            struct.pack(">HHHH", 7000, 7001, 8, 0))]
        + [frame(eth(IP(src=B4, dst=A4) / ICMP(type=0))),
           frame(eth(IP(src=A4, dst=B4, proto=136) / struct.pack(">HHHH", 7000, 7001, 8, 0))),
           frame(eth(IP(src=A4, dst=B4, proto=89) / b"ospf hello....."))],
        "icmpv6": [frame(eth(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest())),
                   frame(eth(IPv6(src=B6, dst=A6) / ICMPv6EchoReply()))],
        "tos": [frame(eth(IP(src=A4, dst=B4, tos=0xB8) / UDP())),
                frame(eth(IPv6(src=A6, dst=B6, tc=0xB8) / UDP()))],
        "non_ip": [frame(Ether(**MACS) / ARP()),
                   frame(Ether(**MACS, type=0x88CC) / (b"\0" * 46)),
                   frame(Ether(dst="01:80:c2:00:00:00", type=0x26) / (b"\0" * 46))],
    }


def broken_scenarios():
    full = eth(IP(src=A4, dst=B4) / TCP(sport=40000, dport=443) / (b"x" * 10))
    packet = bytes(IP(src=A4, dst=B4) / UDP() / b"data")
    ether_header = bytes(Ether(**MACS, type=0x0800))
    mangled = [packet[:2] + struct.pack(">H", 9999) + packet[4:],
               packet[:2] + struct.pack(">H", 10) + packet[4:],
               bytes([0x43]) + packet[1:], bytes([0x55]) + packet[1:],
               packet[:2] + b"\0\0" + packet[4:]]
    ext = bytearray(bytes(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / UDP()))
    ext[41] = 200
    padded = eth(IP(src=A4, dst=B4) / UDP() / b"p") + b"\0" * 20
    return {
        "truncated": [frame(full[:cut], wire=len(full) - cut) for cut in (0, 10, 30, 40, 47)]
        + [frame(full, wire=0x7F), frame(full, wire=0xFF), frame(full, wire=0x85)],
        "malformed": [frame(ether_header + m) for m in mangled]
        + [frame(bytes(Ether(**MACS, type=0x86DD)) + bytes(ext)), frame(padded)],
    }


def fragment_scenarios():
    datagram4 = IP(src="10.0.0.1", dst="10.0.0.2", id=7) / ICMP(type=8) / (b"p" * 200)
    udp4 = IP(src="10.0.0.1", dst="10.0.0.2", id=8) / UDP(sport=1111, dport=9) / (b"u" * 200)
    datagram6 = (IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=9)
                 / ICMPv6EchoRequest(data=b"q" * 200))
    v4 = [eth(f) for f in fragment(datagram4, fragsize=64)]
    udp = [eth(f) for f in fragment(udp4, fragsize=64)]
    v6 = [eth(f) for f in fragment6(datagram6, 120)]
    scenarios = {}
    for family, fragments in (("4", v4), ("6", v6)):
        scenarios[f"fragments{family}_in_order"] = [frame(f) for f in fragments]
        scenarios[f"fragments{family}_reversed"] = [frame(f) for f in fragments[::-1]]
        scenarios[f"fragments{family}_first_last"] = [
            frame(f) for f in fragments[1:] + fragments[:1]]
        scenarios[f"fragments{family}_orphans"] = [frame(f) for f in fragments[1:]]
        scenarios[f"fragments{family}_late_first"] = (
            [frame(f) for f in fragments[1:]] + [frame(fragments[0], dt=0x85)])
    scenarios["fragments_interleaved"] = [frame(f) for pair in zip(v4, udp) for f in pair]
    # one datagram's later fragment, its ident bumped: many held datagrams
    scenarios["fragments_many"] = [frame(v4[1]), bytes([REPEAT, 40, 19, 0])]
    return scenarios


def tunnel_scenarios():
    """Every encapsulation the decoder opens, nested, cut and impostors."""
    inner4 = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="S")
    inner6 = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=3, dport=4) / b"v"
    outer = IP(src=A4, dst=B4)
    vxlan = outer / UDP(sport=9, dport=4789) / VXLAN(vni=7) / Ether(**MACS)
    nested = inner4
    for n in range(6):
        nested = IP(src=A4, dst=B4) / nested if n % 2 else outer / GRE() / nested
    packets = [
        outer / inner4, outer / inner6, IPv6(src=A6, dst=B6) / inner6,
        outer / GRE(key_present=1, key=5, seqnum_present=1, chksum_present=1) / inner4,
        outer / GRE(proto=0x6558) / Ether(**MACS) / Dot1Q(vlan=3) / inner6,
        vxlan / inner4, vxlan / ARP(),
        outer / UDP(dport=6081) / GENEVE(vni=9, proto=0x6558, optionlen=2)
        / (b"\0" * 8) / Ether(**MACS) / inner4,
        outer / UDP(sport=1701, dport=1701) / L2TP(tunnel_id=1, session_id=2) / PPP() / inner4,
        outer / UDP(dport=1701) / (b"\x4a\x02\x00\x20\x00\x01\x00\x02\x00\x01\x00\x01"
                                   b"\x00\x02\xff\x03\x00\x57") / inner6,
        outer / UDP(dport=2152) / GTP_U_Header(teid=4, E=1, next_ex=0x85)
        / GTPPDUSessionContainer(type=1, QFI=1) / inner4,
        nested,
        outer / GRE(proto=0x8847) / MPLS(label=30, s=1) / inner6,
        # the rest of tests/test_tunnels.py's ENCAPSULATIONS and the live ones
        IPv6(src=A6, dst=B6) / inner4,                                     # ip6tnl, 4 in 6
        IPv6(src=A6, dst=B6) / GRE(key_present=1, key=5) / inner4,         # ip6gre
        IPv6(src=A6, dst=B6) / GRE(proto=0x6558) / Ether(**MACS) / inner6,  # ip6gretap
        IPv6(src=A6, dst=B6) / UDP(dport=4789) / VXLAN(vni=1) / Ether(**MACS) / inner6,
        outer / UDP(dport=6081) / GENEVE(vni=98, proto=0x86DD) / inner6,
        outer / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=0xABCDEF) / inner4,
        outer / UDP(sport=1701, dport=40000) / L2TP(tunnel_id=6, session_id=8)
        / b"\xff\x03" / PPP(proto=0x57) / inner6,
        outer / UDP(dport=1701) / (b"\x02\x02\x00\x01\x00\x02\x00\x02\x00\x00\x21")
        / inner4,                                                          # offset, 1-byte PPP
        outer / UDP(sport=1701, dport=1701) / b"\x00\x03\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00"
        / Ether(**MACS) / inner6,                                          # L2TPv3, sublayer
        outer / UDP(sport=1701, dport=1701) / b"\x00\x03\x00\x00\x00\x00\x00\x02"
        / Ether(**MACS) / inner4,                                          # L2TPv3, none
    ]
    frames = [frame(eth(p)) for p in packets]
    frames.append(frame(Ether(**MACS) / MPLS(label=100, s=0) / MPLS(label=7, s=1) / inner4))
    return {
        "tunnels": frames,
        "tunnels_cut": [frame(eth(p)[:60]) for p in packets],
        "tunnels_inner_fragments": [frame(eth(outer / GRE() / f)) for f in
                                    fragment(inner4 / (b"z" * 1500), fragsize=600)],
        "tunnels_outer_fragments": [frame(eth(f)) for f in
                                    fragment(outer / GRE() / inner4 / (b"z" * 1500), fragsize=600)],
        # interfaces 1 and 2 are sampled: a packet taken once, whatever both makes of it
        "tunnels_sampled": [frame(eth(p), ifindex=1 + n % 2) for n, p in enumerate(packets)]
        + [bytes([REPEAT, 40, 60, 0])],
    }


def icmp_error_scenarios():
    """ICMP errors whose quotes name a flow, none, or are cut (icmp_error.c)."""
    data = IP(src=A4, dst=B4, flags="DF") / TCP(sport=40000, dport=443, flags="PA") / (b"x" * 1400)
    quote = IPerror(src=A4, dst=B4, flags="DF") / TCPerror(sport=40000, dport=443)
    router = IP(src="203.0.113.1", dst=A4)
    data6 = IPv6(src=A6, dst=B6) / UDP(sport=5000, dport=53) / (b"q" * 1300)
    quote6 = IPerror6(src=A6, dst=B6) / UDPerror(sport=5000, dport=53)
    router6 = IPv6(src="2001:db8::99", dst=A6)
    return {
        "icmp_errors": [frame(eth(p)) for p in (
            data, router / ICMP(type=3, code=4, nexthopmtu=1280) / quote,
            router / ICMP(type=11) / quote, router / ICMP(type=3, code=3) / bytes(quote)[:22],
            router / ICMP(type=12) / bytes(quote)[:12],
            router / ICMP(type=3) / IPerror(src=A4, dst=B4, frag=10, proto=6) / (b"\0" * 8),
            router / ICMP(type=11) / IPerror(src=A4, dst=B4) / ICMP(type=8),
            data6, router6 / ICMPv6PacketTooBig(mtu=1280) / quote6,
            router6 / ICMPv6TimeExceeded() / bytes(quote6)[:41],
            router6 / ICMPv6PacketTooBig() / IPv6ExtHdrFragment(offset=0) / quote6)]
        + [frame(eth(router / ICMP(type=3, code=4) / quote))[:40]],
    }


def tcp_end_scenarios():
    """Closes by sequence numbers (tcp_end.c): FIN/ACK both ways, a RST, late
    segments, an ACK met before its FIN, a close seen at two captures."""
    forward, back = IP(src=A4, dst=B4), IP(src=B4, dst=A4)

    def seg(ip, flags, seq, ack, sport=40000, dport=443, data=b""):
        if ip is back:
            sport, dport = dport, sport
        return eth(ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / data)

    close = [seg(forward, "S", 10, 0), seg(back, "SA", 90, 11),
             seg(forward, "PA", 11, 91, data=b"hi"),
             seg(forward, "FA", 13, 91), seg(back, "FA", 91, 14), seg(forward, "A", 14, 92),
             seg(back, "FA", 91, 14), seg(forward, "A", 14, 92), seg(forward, "S", 500, 0)]
    early_ack = [seg(forward, "FA", 2**32 - 1, 7), seg(forward, "A", 0, 8),
                 seg(back, "FA", 7, 0)]
    return {
        "tcp_end": [frame(p) for p in close + early_ack]
        + [frame(seg(forward, "RA", 5, 5, sport=41000)), frame(seg(back, "A", 5, 5, sport=41000))],
        "tcp_end_views": [frame(p, ifindex=n) for p in close for n in (1, 2)],
    }


def layer2_scenarios():
    """Frames that are not IP (layer-2 flows with l2_flows) and checksums,
    right, wrong and left for the NIC (verify_checksums)."""
    from scapy.layers.eap import EAPOL
    from scapy.layers.l2 import LLC, STP, Dot3
    from scapy.layers.ppp import PPPoED
    lldp = Ether(src=MACS["src"], dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x02\x07" * 9)
    frames = [frame(Ether(**MACS) / ARP()), frame(Ether(src=MACS["dst"], dst=MACS["src"])
                                                  / ARP(op=2)), frame(lldp),
              frame(Ether(**MACS) / EAPOL(type=1)), frame(Ether(**MACS) / PPPoED()),
              frame(Ether(**MACS) / PPPoE() / PPP(proto=0xC021) / b"\x01\x01\x00\x04"),
              frame(Dot3(**MACS) / LLC() / STP()),
              frame(Ether(**MACS) / Dot1Q(vlan=4) / ARP()),
              frame(Ether(**MACS) / Dot1AD(vlan=5) / Dot1Q(vlan=6) / ARP()),
              frame(bytes(lldp)[:13]), frame(bytes(Ether(**MACS) / Dot1Q(vlan=4) / ARP())[:16]),
              frame(Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00", type=0x88CC)),
              frame(CookedLinux(proto=0x0806) / ARP(), linktype=SLL)]
    checksums = [
        IP(src=A4, dst=B4) / TCP(sport=1, dport=2) / b"odd",
        IP(src=A4, dst=B4, chksum=1) / UDP(sport=3, dport=4),
        IP(src=A4, dst=B4) / UDP(sport=3, dport=4, chksum=0) / b"none",
        IP(src=A4, dst=B4) / ICMP(chksum=2),
        IPv6(src=A6, dst=B6) / TCP(sport=5, dport=6, chksum=3),
        IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / UDP(sport=7, dport=8) / b"e",
        IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(cksum=4),
    ]
    cut = [frame(eth(p)[:40], wire=20) for p in checksums]
    return {"layer2": frames, "checksums": [frame(eth(p)) for p in checksums] + cut}


def operations():
    """Scenarios that drive the meter's other entry points between frames."""
    syn = frame(eth(IP(src=A4, dst=B4) / TCP(sport=1000, dport=80, flags="S")))
    reply = frame(eth(IP(src=B4, dst=A4) / TCP(sport=80, dport=1000, flags="SA")))
    v6 = frame(eth(IPv6(src=A6, dst=B6) / UDP(sport=5, dport=6)))
    prefix = bytes([1, 24, 192, 0, 6, 0, 80, 0])  # IPv4, /24 of 192.0.x, TCP, port 80
    return {
        "ops_mixed": [syn, reply, v6, bytes([CHECK_COUNTERS, SNAPSHOT_2, DRAIN_4]),
                      bytes([EXPIRE_MATCHING]) + prefix, syn,
                      bytes([EXPIRE_1S, DRAIN_128, EXPIRE_PAST]), v6, bytes([FLUSH]), reply,
                      bytes([UPDATE_SETTINGS, 0x3C, 0x11, 0x11, 0, CHECK_COUNTERS])],
        "ops_scan": [syn, bytes([REPEAT, 255, 37, 0, REPEAT, 255, 36, 1, CHECK_COUNTERS,
                                 DRAIN_ALL])],
        "ops_capacity_change": [syn, bytes([UPDATE_SETTINGS, 0x00, 0, 0, 0, SNAPSHOT_2])],
        # found by the fuzzer: the reply's RST revived the flow it had just evicted
        "evicted_reverse_rst": [syn, frame(eth(IP(src=B4, dst=A4)
                                              / TCP(sport=80, dport=1000, flags="R")))],
        "ops_time_jumps": [syn, frame(b"", dt=0xFF), reply, syn[:1] + bytes([0xF5]) + syn[2:],
                           bytes([EXPIRE_PAST, DRAIN_ALL])],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=pathlib.Path)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    scenarios = {**link_layer_scenarios(), **header_scenarios(), **broken_scenarios(),
                 **fragment_scenarios(), **tunnel_scenarios(), **layer2_scenarios(),
                 **operations(), **icmp_error_scenarios(), **tcp_end_scenarios()}
    written = 0
    for name, parts in scenarios.items():
        body = b"".join(parts)
        for variant, settings in SETTINGS.items():
            (args.directory / f"{name}-{variant}").write_bytes(settings + body)
            written += 1
    print(f"make_corpus: {written} seeds in {args.directory}")


if __name__ == "__main__":
    main()
