"""Independent per-flow packet and octet totals of a classic pcap file.

A deliberately simple reader used as the reference in the real-stacks test.
It shares no code with flowprobe and needs only the standard library, so a
bug in flowprobe's decoder cannot hide behind the same bug here.

Flow key: (ip_version, protocol, src_addr, dst_addr, src_port, dst_port).
For ICMP and ICMPv6, src_port is 0 and dst_port is type * 256 + code (the
NetFlow/IPFIX convention); other protocols without ports get 0, 0.
Non-first fragments take the key of their datagram's first fragment; the
file is read in two passes so fragment order does not matter.
Octets are the IP lengths (IPv4 total length, IPv6 40 + payload length),
never the frame length, so Ethernet padding is not counted.

Usage: python3 simple_truth.py CAPTURE.pcap   (prints JSON)
"""

from __future__ import annotations

import ipaddress
import json
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_ETHERTYPES = (0x8100, 0x88A8, 0x9100)

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PORT_PROTOCOLS = (PROTO_TCP, PROTO_UDP, 132)  # 132: SCTP, same port layout

# IPv6 extension headers that are walked to reach the upper layer (RFC 8200
# section 4). The fragment header is handled separately.
IPV6_HOP_BY_HOP = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_DEST_OPTIONS = 60
IPV6_LENGTH_IN_8_OCTETS = (IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_DEST_OPTIONS)

FlowKey = tuple[int, int, str, str, int, int]


class CaptureError(Exception):
    """The file is not a classic pcap file this reader understands."""


@dataclass
class Packet:
    index: int
    key: FlowKey | None  # None for a non-first fragment until resolved
    octets: int
    # (ip_version, src, dst, protocol, id) of the datagram, for fragments
    datagram: tuple | None = None
    first_fragment: bool = False
    tcp_flags: int = 0


@dataclass
class Truth:
    flows: dict[FlowKey, tuple[int, int]] = field(default_factory=dict)
    frames: int = 0
    non_ip_packets: int = 0
    undecodable_packets: int = 0  # IP, but truncated or malformed
    unmatched_fragments: int = 0  # non-first fragment without its first one
    ipv4_fragments: int = 0
    ipv6_fragments: int = 0
    tcp_rst_packets: int = 0
    # (first, last) packet time of each flow key, in milliseconds since the
    # epoch (microseconds cut to milliseconds, as exporters carry them)
    times: dict[FlowKey, tuple[int, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        flows = [
            {
                "ip_version": k[0],
                "protocol": k[1],
                "src_addr": k[2],
                "dst_addr": k[3],
                "src_port": k[4],
                "dst_port": k[5],
                "packets": v[0],
                "octets": v[1],
            }
            for k, v in sorted(self.flows.items())
        ]
        counts = {k: v for k, v in self.__dict__.items() if k not in ("flows", "times")}
        return {"flows": flows, **counts}


def read_frames(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield (link_type, frame bytes) for every record of a classic pcap."""
    for _, link_type, data in read_timed_frames(path):
        yield link_type, data


def read_timed_frames(path: str) -> Iterator[tuple[int, int, bytes]]:
    """Yield (time in microseconds since the epoch, link_type, frame bytes)."""
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24:
            raise CaptureError(f"{path}: too short for a pcap header")
        magic_le = struct.unpack("<I", header[:4])[0]
        # Microsecond (a1b2c3d4) and nanosecond (a1b23c4d) magics
        if magic_le in (0xA1B2C3D4, 0xA1B23C4D):
            order = "<"
        elif magic_le in (0xD4C3B2A1, 0x4D3CB2A1):
            order = ">"
        else:
            raise CaptureError(f"{path}: not a classic pcap file (magic {magic_le:#x})")
        nanoseconds = magic_le in (0xA1B23C4D, 0x4D3CB2A1)
        link_type = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
        while True:
            record = f.read(16)
            if not record:
                return
            if len(record) < 16:
                raise CaptureError(f"{path}: truncated record header")
            seconds, fraction, caplen, _ = struct.unpack(order + "IIII", record)
            data = f.read(caplen)
            if len(data) < caplen:
                raise CaptureError(f"{path}: truncated record")
            yield seconds * 1_000_000 + (fraction // 1000 if nanoseconds else fraction), \
                link_type, data


def network_layer(link_type: int, frame: bytes) -> tuple[int, bytes] | None:
    """Return (ethertype, payload) of a frame, or None if not recognised."""
    if link_type == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        offset = 12
        ethertype = struct.unpack_from("!H", frame, offset)[0]
        while ethertype in VLAN_ETHERTYPES and len(frame) >= offset + 6:
            offset += 4
            ethertype = struct.unpack_from("!H", frame, offset)[0]
        return ethertype, frame[offset + 2 :]
    if link_type == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        return struct.unpack_from("!H", frame, 14)[0], frame[16:]
    if link_type == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        return struct.unpack_from("!H", frame, 0)[0], frame[20:]
    if link_type == LINKTYPE_RAW:
        if not frame:
            return None
        version = frame[0] >> 4
        return {4: ETHERTYPE_IPV4, 6: ETHERTYPE_IPV6}.get(version, 0), frame
    raise CaptureError(f"unsupported link type {link_type}")


def ports(protocol: int, l4: bytes) -> tuple[int, int, int]:
    """Return (src_port, dst_port, tcp_flags) from an upper-layer header."""
    if protocol in PORT_PROTOCOLS and len(l4) >= 4:
        src, dst = struct.unpack_from("!HH", l4, 0)
        flags = l4[13] if protocol == PROTO_TCP and len(l4) >= 14 else 0
        return src, dst, flags
    if protocol in (PROTO_ICMP, PROTO_ICMPV6) and len(l4) >= 2:
        return 0, l4[0] * 256 + l4[1], 0
    return 0, 0, 0


def decode_ipv4(index: int, ip: bytes) -> Packet | None:
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    header_length = (ip[0] & 0x0F) * 4
    total_length, ident, fragment_field = struct.unpack_from("!HHH", ip, 2)
    protocol = ip[9]
    if header_length < 20 or total_length < header_length:
        return None
    src = str(ipaddress.IPv4Address(ip[12:16]))
    dst = str(ipaddress.IPv4Address(ip[16:20]))
    fragment_offset = fragment_field & 0x1FFF
    more_fragments = bool(fragment_field & 0x2000)
    datagram = (4, src, dst, protocol, ident)
    if fragment_offset:
        return Packet(index, None, total_length, datagram)
    l4 = ip[header_length:total_length]
    src_port, dst_port, flags = ports(protocol, l4)
    key = (4, protocol, src, dst, src_port, dst_port)
    if more_fragments:
        return Packet(index, key, total_length, datagram, True, flags)
    return Packet(index, key, total_length, tcp_flags=flags)


def decode_ipv6(index: int, ip: bytes) -> Packet | None:
    if len(ip) < 40 or ip[0] >> 4 != 6:
        return None
    payload_length = struct.unpack_from("!H", ip, 4)[0]
    octets = 40 + payload_length
    src = str(ipaddress.IPv6Address(ip[8:24]))
    dst = str(ipaddress.IPv6Address(ip[24:40]))
    next_header = ip[6]
    offset = 40
    end = min(len(ip), octets)
    datagram = None
    first_fragment = False
    while True:
        if next_header in IPV6_LENGTH_IN_8_OCTETS:
            if end < offset + 2:
                return None
            next_header, length = ip[offset], (ip[offset + 1] + 1) * 8
            offset += length
        elif next_header == IPV6_FRAGMENT:
            if end < offset + 8:
                return None
            fragment_next = ip[offset]
            fragment_field, ident = struct.unpack_from("!HI", ip, offset + 2)
            # Match on the fragment header's next header: the same value in
            # every fragment of a datagram (RFC 8200 section 4.5).
            datagram = (6, src, dst, fragment_next, ident)
            if fragment_field >> 3:
                return Packet(index, None, octets, datagram)
            first_fragment = bool(fragment_field & 1)
            next_header = fragment_next
            offset += 8
        else:
            break
    l4 = ip[offset:end]
    src_port, dst_port, flags = ports(next_header, l4)
    key = (6, next_header, src, dst, src_port, dst_port)
    if first_fragment:
        return Packet(index, key, octets, datagram, True, flags)
    # An atomic fragment (offset 0, M=0) is a whole datagram on its own.
    return Packet(index, key, octets, tcp_flags=flags)


def truth_report(path: str) -> Truth:
    result = Truth()
    packets: list[Packet] = []
    first_fragments: dict[tuple, list[Packet]] = {}
    times_ms: list[int] = []
    # Pass 1: decode every packet, remember where first fragments are.
    for index, (time_us, link_type, frame) in enumerate(read_timed_frames(path)):
        times_ms.append(time_us // 1000)
        result.frames += 1
        network = network_layer(link_type, frame)
        if network is None or network[0] not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
            result.non_ip_packets += 1
            continue
        ethertype, ip = network
        decode = decode_ipv4 if ethertype == ETHERTYPE_IPV4 else decode_ipv6
        packet = decode(index, ip)
        if packet is None:
            result.undecodable_packets += 1
            continue
        packets.append(packet)
        if packet.datagram is not None:
            if packet.datagram[0] == 4:
                result.ipv4_fragments += 1
            else:
                result.ipv6_fragments += 1
        if packet.first_fragment:
            first_fragments.setdefault(packet.datagram, []).append(packet)
        if packet.tcp_flags & 0x04:
            result.tcp_rst_packets += 1
    # Pass 2: give every packet its key; a non-first fragment takes the key
    # of the nearest first fragment of the same datagram (IP ids wrap, so
    # the same id may return much later for another datagram).
    for packet in packets:
        key = packet.key
        if key is None:
            candidates = first_fragments.get(packet.datagram)
            if not candidates:
                result.unmatched_fragments += 1
                continue
            nearest = min(candidates, key=lambda c: abs(c.index - packet.index))
            key = nearest.key
        count, octets = result.flows.get(key, (0, 0))
        result.flows[key] = (count + 1, octets + packet.octets)
        moment = times_ms[packet.index]
        first, last = result.times.get(key, (moment, moment))
        result.times[key] = (min(first, moment), max(last, moment))
    return result


def truth(path: str) -> dict[FlowKey, tuple[int, int]]:
    """Map each flow key of the capture to its (packets, octets)."""
    return truth_report(path).flows


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} CAPTURE.pcap", file=sys.stderr)
        return 2
    try:
        report = truth_report(argv[1])
    except (OSError, CaptureError) as error:
        print(f"simple_truth: {error}", file=sys.stderr)
        return 1
    json.dump(report.to_json(), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
