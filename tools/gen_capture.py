#!/usr/bin/env python3
"""Write a deterministic synthetic pcap capture for testing and benchmarking flow meters.

The same arguments always give a byte-identical file. Because the generator builds
every packet itself, it knows the exact packets and octets of every flow; --truth
writes them out so a meter's records can be checked for exactness, not plausibility.

Traffic: TCP sessions (handshake, data, FIN or RST; some SYNs never answered),
UDP request/response and one-way, ICMP and ICMPv6 echo; ~75 % IPv4, ~25 % IPv6;
~10 % of conversations VLAN tagged (802.1Q, a few 802.1ad + 802.1Q); some datagrams
split into 2-3 IPv4 or IPv6 fragments, a quarter of those with the first fragment
sent last; frames shorter than the Ethernet minimum are padded, so only the IP
length tells a meter the truth.

Usage: gen_capture.py -o out.pcap [--packets N] [--flows M] [--seed S]
                      [--duration SEC] [--truth out.json]
"""

import argparse
import bisect
import gc
import itertools
import json
import random
import socket
import struct
import sys
import time

import pcapfile  # beside this script

PCAP_GLOBAL_HEADER = pcapfile.file_header()
PCAP_RECORD_HEADER = pcapfile.record_struct()
CAPTURE_START_US = 1_700_000_000 * 1_000_000  # fixed, so output never depends on the clock

ETHERNET_MIN_FRAME = 60  # 802.3 minimum without the FCS, which pcap does not store
LINK_MTU = 1500
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
ETHERTYPE_VLAN, ETHERTYPE_QINQ = 0x8100, 0x88A8

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
IPV6_NEXT_FRAGMENT = 44
ECHO_TYPES = {4: (8, 0), 6: (128, 129)}  # (request, reply) per IP version
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
IPV4_DONT_FRAGMENT, IPV4_MORE_FRAGMENTS = 0x4000, 0x2000

CLIENT, SERVER = 0, 1  # direction index: who sends the packet

IPV4_HEAD = struct.Struct("!BBHHHBBH")  # up to the addresses
IPV6_PAYLOAD_LENGTH = struct.Struct("!H")
IPV6_FRAGMENT_HEADER = struct.Struct("!BBHI")
TCP_AFTER_PORTS = struct.Struct("!IIBBHHH")
UDP_LENGTH_CHECKSUM = struct.Struct("!HH")
ICMP_ECHO_HEAD = struct.Struct("!BBHHH")

ZEROS = memoryview(bytes(4 * LINK_MTU))  # payload source: slicing a memoryview copies nothing
PADDING = [bytes(max(0, ETHERNET_MIN_FRAME - n)) for n in range(ETHERNET_MIN_FRAME)]


def uniform_int(rng, low, high):
    """rng.randint without its argument checking, which dominated the run time."""
    return low + int(rng.random() * (high - low + 1))


class Conversation:
    """One exchange between a client and a server.

    Holds per-direction frame templates (Ethernet with VLAN tags, the constant part of
    the IP header, the ports) so a packet only patches lengths, identifiers and L4
    fields, and the tally of each directional flow. Client addresses come from the
    conversation index through a bijection, so no two conversations share a 5-tuple.
    """

    def __init__(self, index, ip_version, protocol, server_port, rng):
        self.ip_version = ip_version
        self.protocol = protocol
        self.fragmenting = protocol != PROTO_TCP and rng.random() < 0.12
        if ip_version == 4:
            scrambled = (index * 0x9E3779B1) & 0xFFFFFF  # odd multiplier: a bijection mod 2**24
            client = struct.pack("!I", 0x0A000000 | scrambled)  # 10.0.0.0/8
            server = struct.pack("!I", 0xC6120000 | rng.getrandbits(17))  # 198.18.0.0/15
        else:
            client = struct.pack("!QQ", 0x20010DB8000C0000, index)  # 2001:db8:c::/48
            server = struct.pack("!QQ", 0x20010DB800050000, rng.getrandbits(32))
        self.addresses = (client + server, server + client)
        # For echo the "client port" is the echo identifier and the server port is unused.
        self.client_port = uniform_int(rng, 1024, 65535)
        self.server_port = server_port
        self.ports = (struct.pack("!HH", self.client_port, server_port),
                      struct.pack("!HH", server_port, self.client_port))

        tags = b""
        tag_draw = rng.random()
        if tag_draw < 0.01:
            tags = struct.pack("!HHHH", ETHERTYPE_QINQ, uniform_int(rng, 1, 4094),
                               ETHERTYPE_VLAN, uniform_int(rng, 1, 4094))
        elif tag_draw < 0.10:
            tags = struct.pack("!HH", ETHERTYPE_VLAN, uniform_int(rng, 1, 4094))
        ethertype = struct.pack("!H", ETHERTYPE_IPV4 if ip_version == 4 else ETHERTYPE_IPV6)
        client_mac = b"\x02\x00" + struct.pack("!I", index & 0xFFFFFFFF)
        router_mac = b"\x02\x01\x00\x00\x00" + bytes((rng.getrandbits(8),))
        self.ethernet = (router_mac + client_mac + tags + ethertype,
                         client_mac + router_mac + tags + ethertype)

        self.hop_limits = (64, rng.choice((52, 57, 116, 243)))
        self.ident = [rng.getrandbits(16), rng.getrandbits(16)]
        if ip_version == 4:
            # TCP sets DF as real stacks do; UDP and ICMP may be fragmented on the way.
            self.dont_fragment = IPV4_DONT_FRAGMENT if protocol == PROTO_TCP else 0
            # Header checksum over the fields that never change; each packet adds the rest.
            self.checksum_base = [0x4500 + (ttl << 8 | protocol) + sum(struct.unpack("!4H", pair))
                                  for ttl, pair in zip(self.hop_limits, self.addresses)]
            self.packet = self.ipv4_packet
        else:
            self.ipv6_first_word = [struct.pack("!I", 0x60000000 | rng.getrandbits(20))
                                    for _ in range(2)]
            self.ipv6_tails = [{next_header: bytes((next_header, hop)) + pair
                                for next_header in (protocol, IPV6_NEXT_FRAGMENT)}
                               for hop, pair in zip(self.hop_limits, self.addresses)]
            self.packet = self.ipv6_packet

        self.packets = [0, 0]
        self.octets = [0, 0]
        self.first_seen = [-1, -1]
        self.last_seen = [-1, -1]

    def flow_keys(self):
        """The directional 5-tuples as a meter reports them (ICMP: type*256+code as port)."""
        family, size = (socket.AF_INET, 4) if self.ip_version == 4 else (socket.AF_INET6, 16)
        pair = self.addresses[CLIENT]
        client = socket.inet_ntop(family, pair[:size])
        server = socket.inet_ntop(family, pair[size:])
        if self.protocol in (PROTO_ICMP, PROTO_ICMPV6):
            request, reply = ECHO_TYPES[self.ip_version]
            ports = ((0, request * 256), (0, reply * 256))
        else:
            ports = ((self.client_port, self.server_port), (self.server_port, self.client_port))
        return ((self.ip_version, self.protocol, client, server) + ports[CLIENT],
                (self.ip_version, self.protocol, server, client) + ports[SERVER])

    # Each sender returns a burst: a list of (direction, frame, IP octets).

    def tcp(self, direction, seq, ack, flags, payload_length, options=b""):
        header = (self.ports[direction]
                  + TCP_AFTER_PORTS.pack(seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                                         (20 + len(options)) << 2, flags, 64240, 0, 0)
                  + options)
        return [self.packet(direction, header, payload_length)]

    def udp(self, direction, payload_length, reorder=False):
        header = self.ports[direction] + UDP_LENGTH_CHECKSUM.pack(8 + payload_length, 0)
        return self.datagram(direction, header, payload_length, reorder)

    def echo(self, direction, sequence, payload_length, reorder=False):
        icmp_type = ECHO_TYPES[self.ip_version][direction]
        header = ICMP_ECHO_HEAD.pack(icmp_type, 0, 0, self.client_port, sequence)
        return self.datagram(direction, header, payload_length, reorder)

    def datagram(self, direction, header, payload_length, reorder):
        ip_header_length = 20 if self.ip_version == 4 else 40
        if ip_header_length + len(header) + payload_length <= LINK_MTU:
            return [self.packet(direction, header, payload_length)]
        transport = header + bytes(payload_length)
        if self.ip_version == 4:
            burst = self.ipv4_fragments(direction, transport)
        else:
            burst = self.ipv6_fragments(direction, transport)
        return burst[1:] + burst[:1] if reorder else burst

    def ipv4_packet(self, direction, header, payload_length,
                    flags_offset=None, ident=None):
        total_length = 20 + len(header) + payload_length
        if ident is None:
            ident = self.ident[direction] = (self.ident[direction] + 1) & 0xFFFF
            flags_offset = self.dont_fragment
        checksum = self.checksum_base[direction] + total_length + ident + flags_offset
        checksum = (checksum & 0xFFFF) + (checksum >> 16)
        checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
        frame = b"".join((self.ethernet[direction],
                          IPV4_HEAD.pack(0x45, 0, total_length, ident, flags_offset,
                                         self.hop_limits[direction], self.protocol, checksum),
                          self.addresses[direction], header, ZEROS[:payload_length]))
        if len(frame) < ETHERNET_MIN_FRAME:
            frame += PADDING[len(frame)]
        return direction, frame, total_length

    def ipv6_packet(self, direction, header, payload_length, next_header=None):
        payload_total = len(header) + payload_length
        frame = b"".join((self.ethernet[direction], self.ipv6_first_word[direction],
                          IPV6_PAYLOAD_LENGTH.pack(payload_total),
                          self.ipv6_tails[direction][next_header or self.protocol],
                          header, ZEROS[:payload_length]))
        if len(frame) < ETHERNET_MIN_FRAME:
            frame += PADDING[len(frame)]
        return direction, frame, 40 + payload_total

    def ipv4_fragments(self, direction, transport):
        ident = self.ident[direction] = (self.ident[direction] + 1) & 0xFFFF
        step = (LINK_MTU - 20) // 8 * 8  # offsets count 8-octet units (RFC 791)
        return [self.ipv4_packet(direction, transport[offset:offset + step], 0,
                                 (IPV4_MORE_FRAGMENTS if offset + step < len(transport) else 0)
                                 | offset >> 3, ident)
                for offset in range(0, len(transport), step)]

    def ipv6_fragments(self, direction, transport):
        ident = self.ident[direction] = self.ident[direction] + 1
        step = (LINK_MTU - 40 - 8) // 8 * 8  # room for the Fragment header (RFC 8200 4.5)
        return [self.ipv6_packet(
                    direction,
                    IPV6_FRAGMENT_HEADER.pack(self.protocol, 0,
                                              offset | (offset + step < len(transport)), ident)
                    + transport[offset:offset + step], 0, IPV6_NEXT_FRAGMENT)
                for offset in range(0, len(transport), step)]


# Conversation scripts: generators yielding bursts (lists of packets sent back to back).

def tcp_session(conv, rng, ending):
    mss = 1460 if conv.ip_version == 4 else 1440
    mss_option = struct.pack("!BBH", 2, 4, mss)
    client_seq, server_seq = rng.getrandbits(32), rng.getrandbits(32)
    yield conv.tcp(CLIENT, client_seq, 0, SYN, 0, mss_option)
    client_seq += 1
    yield conv.tcp(SERVER, server_seq, client_seq, SYN | ACK, 0, mss_option)
    server_seq += 1
    yield conv.tcp(CLIENT, client_seq, server_seq, ACK, 0)
    for _ in range(uniform_int(rng, 1, 3)):
        request = uniform_int(rng, 20, 700)
        yield conv.tcp(CLIENT, client_seq, server_seq, PSH | ACK, request)
        client_seq += request
        segments = rng.choice((1, 1, 1, 2, 2, 3, 4))
        for segment in range(segments):
            last = segment == segments - 1
            size = uniform_int(rng, 1, mss) if last else mss
            yield conv.tcp(SERVER, server_seq, client_seq, (PSH | ACK) if last else ACK, size)
            server_seq += size
        yield conv.tcp(CLIENT, client_seq, server_seq, ACK, 0)
    if ending == "rst":
        if rng.random() < 0.5:
            yield conv.tcp(CLIENT, client_seq, server_seq, RST | ACK, 0)
        else:
            yield conv.tcp(SERVER, server_seq, client_seq, RST | ACK, 0)
        return
    yield conv.tcp(CLIENT, client_seq, server_seq, FIN | ACK, 0)
    client_seq += 1
    yield conv.tcp(SERVER, server_seq, client_seq, FIN | ACK, 0)
    server_seq += 1
    yield conv.tcp(CLIENT, client_seq, server_seq, ACK, 0)


def tcp_closed_by_fin(conv, rng):
    return tcp_session(conv, rng, "fin")


def tcp_closed_by_rst(conv, rng):
    return tcp_session(conv, rng, "rst")


def tcp_unanswered(conv, rng):
    seq = rng.getrandbits(32)
    for _ in range(uniform_int(rng, 1, 3)):  # the client's SYN retransmissions
        yield conv.tcp(CLIENT, seq, 0, SYN, 0)


def datagram_size(conv, rng, low, high):
    """(payload length, reorder); fragmenting conversations send 2-3 fragment datagrams."""
    if conv.fragmenting and rng.random() < 0.7:
        return uniform_int(rng, 1600, 4000), rng.random() < 0.25
    return uniform_int(rng, low, high), False


def udp_request_response(conv, rng):
    for _ in range(uniform_int(rng, 1, 3)):
        yield conv.udp(CLIENT, uniform_int(rng, 20, 200))
        yield conv.udp(SERVER, *datagram_size(conv, rng, 40, 1200))


def udp_one_way(conv, rng):
    for _ in range(uniform_int(rng, 1, 6)):
        yield conv.udp(CLIENT, *datagram_size(conv, rng, 30, 1400))


def echo_exchange(conv, rng):
    for sequence in range(1, uniform_int(rng, 1, 4) + 1):
        size, reorder = datagram_size(conv, rng, 56, 56)
        yield conv.echo(CLIENT, sequence, size, reorder)
        yield conv.echo(SERVER, sequence, size, reorder)


# (weight, protocol, server ports, script, directional flows per conversation)
TRAFFIC_MIX = (
    (44, PROTO_TCP, (80, 443, 443, 443, 22, 993, 8080), tcp_closed_by_fin, 2),
    (8, PROTO_TCP, (80, 443, 443, 443, 22, 993, 8080), tcp_closed_by_rst, 2),
    (6, PROTO_TCP, (22, 23, 445, 3389, 8443), tcp_unanswered, 1),
    (24, PROTO_UDP, (53, 53, 123, 443, 5353, 2049), udp_request_response, 2),
    (8, PROTO_UDP, (514, 2055, 4739, 6343, 9995), udp_one_way, 1),
    (10, None, (0,), echo_exchange, 2),  # ICMP or ICMPv6 by IP version
)
MIX_CUMULATIVE = [sum(entry[0] for entry in TRAFFIC_MIX[:i + 1]) for i in range(len(TRAFFIC_MIX))]
FLOWS_PER_CONVERSATION = sum(e[0] * e[4] for e in TRAFFIC_MIX) / MIX_CUMULATIVE[-1]
# A flow is alive from its first to its last packet, but its conversation holds a slot
# a little longer (the reply starts one turn late, the next conversation's first packet
# waits its turn). Measured with the mix above: alive flows ~ 0.88 x slots x flows each.
FLOWS_ALIVE_PER_SLOT = 0.88 * FLOWS_PER_CONVERSATION


def start_conversation(index, rng):
    draw = rng.random() * MIX_CUMULATIVE[-1]
    _, protocol, ports, script, _ = TRAFFIC_MIX[bisect.bisect_right(MIX_CUMULATIVE, draw)]
    ip_version = 6 if rng.random() < 0.25 else 4
    if protocol is None:
        protocol = PROTO_ICMP if ip_version == 4 else PROTO_ICMPV6
    conv = Conversation(index, ip_version, protocol, rng.choice(ports), rng)
    return conv, script(conv, rng)


def tally(conv):
    """The directional flows of a finished (or cut-off) conversation that saw packets,
    as (5-tuple, packets, octets, first packet index, last packet index)."""
    return [(key, conv.packets[d], conv.octets[d], conv.first_seen[d], conv.last_seen[d])
            for d, key in enumerate(conv.flow_keys()) if conv.packets[d]]


def write_capture(out, packet_total, concurrent_flows, seed, duration_s):
    """Interleave conversations into `out`; return (flow tallies, conversations started).

    About `concurrent_flows` directional flows stay alive at once: the generator keeps
    enough conversations open, each packet comes from a randomly chosen open one, and a
    finished conversation is replaced by a new one. Timestamps advance evenly.
    """
    rng = random.Random(seed)
    slots = max(1, round(concurrent_flows / FLOWS_ALIVE_PER_SLOT))
    open_conversations = [start_conversation(index, rng) for index in range(slots)]
    started = slots
    flows = []
    chunk = [PCAP_GLOBAL_HEADER]
    pack_record = PCAP_RECORD_HEADER.pack
    random_fraction = rng.random
    duration_us = int(duration_s * 1_000_000)
    written = 0
    while written < packet_total:
        slot = int(random_fraction() * slots)
        conv, script = open_conversations[slot]
        burst = next(script, None)
        while burst is None:
            flows.extend(tally(conv))
            conv, script = open_conversations[slot] = start_conversation(started, rng)
            started += 1
            burst = next(script, None)
        packets, octets, first_seen, last_seen = (conv.packets, conv.octets,
                                                  conv.first_seen, conv.last_seen)
        for direction, frame, ip_octets in burst:
            if written == packet_total:
                break
            seconds, microseconds = divmod(CAPTURE_START_US + written * duration_us // packet_total,
                                           1_000_000)
            chunk.append(pack_record(seconds, microseconds, len(frame), len(frame)))
            chunk.append(frame)
            packets[direction] += 1
            octets[direction] += ip_octets
            if first_seen[direction] < 0:
                first_seen[direction] = written
            last_seen[direction] = written
            written += 1
        if len(chunk) > 65536:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))
    for conv, _ in open_conversations:
        flows.extend(tally(conv))
    return flows, started


def peak_concurrency(intervals, packet_total):
    """Most (first, last) packet-index intervals open at any one packet."""
    change = [0] * (packet_total + 1)
    for first, last in intervals:
        change[first] += 1
        change[last + 1] -= 1
    return max(itertools.accumulate(change))


def summarize(flows, conversations_started, packet_total, file_size):
    spans = {}  # the address pair identifies a conversation: client addresses are unique
    for key, _, _, first, last in flows:
        pair = (key[2], key[3]) if key[2] < key[3] else (key[3], key[2])
        span = spans.get(pair)
        spans[pair] = (first, last) if span is None else (min(span[0], first), max(span[1], last))
    return {
        "packets": sum(f[1] for f in flows),
        "octets": sum(f[2] for f in flows),
        "flows": len(flows),
        "conversations": conversations_started,
        "peak_concurrent_flows": peak_concurrency([f[3:5] for f in flows], packet_total),
        "peak_concurrent_conversations": peak_concurrency(spans.values(), packet_total),
        "file_bytes": file_size,
    }


def write_truth(path, summary, flows):
    line = ('{{"ip_version": {}, "protocol": {}, "src_addr": "{}", "dst_addr": "{}", '
            '"src_port": {}, "dst_port": {}, "packets": {}, "octets": {}}}')
    with open(path, "w") as out:
        out.write('{"summary": %s,\n"flows": [\n' % json.dumps(summary))
        out.write(",\n".join(line.format(*key, packets, octets)
                             for key, packets, octets, _, _ in sorted(flows)))
        out.write("\n]}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", required=True, help="pcap file to write")
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=60_000,
                        help="directional flows alive at once, approximately (default 60000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds from first to last packet (default 30)")
    parser.add_argument("--truth", help="write the exact packets and octets per flow as JSON")
    args = parser.parse_args(argv)
    # Client IPv4 addresses come from a bijection on 2**24 values; more conversations
    # than that would repeat 5-tuples.
    if not 1 <= args.packets <= 16_000_000 or args.flows < 1 or args.duration <= 0:
        parser.error("need 1 <= --packets <= 16000000, --flows >= 1 and --duration > 0")

    # Nothing here forms reference cycles; the cyclic collector would only keep rescanning
    # the growing list of flow tallies.
    gc.disable()
    started_at = time.monotonic()
    with open(args.output, "wb") as out:
        flows, conversations_started = write_capture(out, args.packets, args.flows,
                                                     args.seed, args.duration)
        file_size = out.tell()
    summary = summarize(flows, conversations_started, args.packets, file_size)
    if args.truth:
        write_truth(args.truth, summary, flows)
    print(f"gen_capture: {summary['packets']} packets, {summary['octets']} IP octets, "
          f"{summary['flows']} flows ({summary['peak_concurrent_flows']} alive at peak), "
          f"{summary['conversations']} conversations, {file_size / 1e6:.1f} MB "
          f"-> {args.output} in {time.monotonic() - started_at:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
