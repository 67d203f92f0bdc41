#!/usr/bin/env python3
"""Write a deterministic synthetic pcap capture for testing and benchmarking flow meters.

The same arguments always give a byte-identical file. Because the generator builds
every packet itself, it knows the exact packets and octets of every flow; --truth
writes them out so a meter's records can be checked for exactness, not plausibility.

Traffic: TCP sessions (handshake, data, FIN or RST; some SYNs never answered),
UDP request/response and one-way, ICMP and ICMPv6 echo; 75 % IPv4, 25 % IPv6;
some frames VLAN tagged (802.1Q, a few 802.1ad + 802.1Q); some datagrams split
into 2-3 IPv4 or IPv6 fragments, a few delivered out of order; frames shorter
than the Ethernet minimum are padded, so only the IP length tells the truth.

Usage: gen_capture.py -o out.pcap [--packets N] [--flows M] [--seed S]
                      [--duration SEC] [--truth out.json]
"""

import argparse
import json
import random
import socket
import struct
import sys
import time

PCAP_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
PCAP_RECORD_HEADER = struct.Struct("<IIII")
CAPTURE_START_US = 1_700_000_000 * 1_000_000  # fixed so output never depends on the clock

ETHERNET_MIN_FRAME = 60  # 802.3 minimum without the FCS, which pcap does not store
LINK_MTU = 1500
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
ETHERTYPE_VLAN, ETHERTYPE_QINQ = 0x8100, 0x88A8

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
IPV6_NEXT_FRAGMENT = 44
ECHO_TYPES = {4: (8, 0), 6: (128, 129)}  # (request, reply) per IP version
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

CLIENT, SERVER = 0, 1  # direction index: who sends the packet

IPV4_HEAD = struct.Struct("!BBHHHBBH")  # up to the addresses
IPV6_PAYLOAD_LENGTH = struct.Struct("!H")
IPV6_FRAGMENT_HEADER = struct.Struct("!BBHI")
TCP_HEAD = struct.Struct("!HHIIBBHHH")
UDP_HEAD = struct.Struct("!HHHH")
ICMP_ECHO_HEAD = struct.Struct("!BBHHH")


class Conversation:
    """One exchange between a client and a server.

    Holds the per-direction frame templates (Ethernet + VLAN tags, the constant part of
    the IP header) so a packet only patches lengths, identifiers and L4 fields, and the
    tally of each directional flow. Client addresses are derived from the conversation
    index through a bijection, so no two conversations ever share a 5-tuple.
    """

    def __init__(self, index, ip_version, protocol, rng):
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
        self.client_port = rng.randint(1024, 65535)
        self.server_port = 0

        tags = b""
        tag_draw = rng.random()
        if tag_draw < 0.01:
            tags = struct.pack("!HHHH", ETHERTYPE_QINQ, rng.randint(1, 4094),
                               ETHERTYPE_VLAN, rng.randint(1, 4094))
        elif tag_draw < 0.10:
            tags = struct.pack("!HH", ETHERTYPE_VLAN, rng.randint(1, 4094))
        ethertype = struct.pack("!H", ETHERTYPE_IPV4 if ip_version == 4 else ETHERTYPE_IPV6)
        client_mac = bytes((0x02, 0x00)) + struct.pack("!I", index & 0xFFFFFFFF)
        router_mac = bytes((0x02, 0x01, 0, 0, 0, rng.getrandbits(8)))
        self.ethernet = (router_mac + client_mac + tags + ethertype,
                         client_mac + router_mac + tags + ethertype)

        hop_limits = (64, rng.choice((52, 57, 116, 243)))
        self.ident = [rng.getrandbits(16), rng.getrandbits(16)]
        if ip_version == 4:
            # Header checksum over the fields that never change; packets add the rest.
            self.checksum_base = [
                0x4500 + (ttl << 8 | protocol) + sum(struct.unpack("!4H", pair))
                for ttl, pair in zip(hop_limits, self.addresses)
            ]
            self.hop_limits = hop_limits
        else:
            self.ipv6_first_word = [struct.pack("!I", 0x60000000 | rng.getrandbits(20))
                                    for _ in range(2)]
            self.ipv6_tails = [
                {nh: bytes((nh, hop)) + pair for nh in (protocol, IPV6_NEXT_FRAGMENT)}
                for hop, pair in zip(hop_limits, self.addresses)
            ]

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

    def tcp(self, direction, seq, ack, flags, payload_length, options=b""):
        ports = ((self.client_port, self.server_port) if direction == CLIENT
                 else (self.server_port, self.client_port))
        header = TCP_HEAD.pack(*ports, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                               (20 + len(options)) << 2, flags, 64240, 0, 0) + options
        return self.datagram(direction, header + bytes(payload_length))

    def udp(self, direction, payload_length, reorder=False):
        ports = ((self.client_port, self.server_port) if direction == CLIENT
                 else (self.server_port, self.client_port))
        header = UDP_HEAD.pack(*ports, 8 + payload_length, 0)
        return self.datagram(direction, header + bytes(payload_length), reorder)

    def echo(self, direction, sequence, payload_length, reorder=False):
        icmp_type = ECHO_TYPES[self.ip_version][direction]
        header = ICMP_ECHO_HEAD.pack(icmp_type, 0, 0, self.client_port, sequence)
        return self.datagram(direction, header + bytes(payload_length), reorder)

    def datagram(self, direction, transport, reorder=False):
        """(direction, frame, IP octets) for each packet carrying `transport`, fragmented
        at LINK_MTU when it does not fit; `reorder` sends the first fragment last."""
        if self.ip_version == 4:
            if len(transport) > LINK_MTU - 20:
                return self.ipv4_fragments(direction, transport, reorder)
            # TCP sets DF like real stacks do; UDP and ICMP leave it clear.
            return [self.ipv4_packet(direction, transport,
                                     0x4000 if self.protocol == PROTO_TCP else 0,
                                     self.next_ident(direction))]
        if len(transport) > LINK_MTU - 40:
            return self.ipv6_fragments(direction, transport, reorder)
        return [self.ipv6_packet(direction, self.protocol, transport)]

    def next_ident(self, direction):
        ident = self.ident[direction] = (self.ident[direction] + 1) & 0xFFFF
        return ident

    def ipv4_packet(self, direction, data, flags_offset, ident):
        total_length = 20 + len(data)
        checksum = self.checksum_base[direction] + total_length + ident + flags_offset
        checksum = (checksum & 0xFFFF) + (checksum >> 16)
        checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
        frame = b"".join((self.ethernet[direction],
                          IPV4_HEAD.pack(0x45, 0, total_length, ident, flags_offset,
                                         self.hop_limits[direction], self.protocol, checksum),
                          self.addresses[direction], data))
        return direction, pad_frame(frame), total_length

    def ipv6_packet(self, direction, next_header, data):
        frame = b"".join((self.ethernet[direction], self.ipv6_first_word[direction],
                          IPV6_PAYLOAD_LENGTH.pack(len(data)),
                          self.ipv6_tails[direction][next_header], data))
        return direction, pad_frame(frame), 40 + len(data)

    def ipv4_fragments(self, direction, transport, reorder):
        ident = self.next_ident(direction)
        step = (LINK_MTU - 20) // 8 * 8  # offsets count 8-octet units (RFC 791)
        packets = [self.ipv4_packet(direction, transport[offset:offset + step],
                                    (0x2000 if offset + step < len(transport) else 0) | offset >> 3,
                                    ident)
                   for offset in range(0, len(transport), step)]
        return packets[1:] + packets[:1] if reorder else packets

    def ipv6_fragments(self, direction, transport, reorder):
        ident = self.next_ident(direction)
        step = (LINK_MTU - 40 - 8) // 8 * 8  # room for the Fragment header (RFC 8200 4.5)
        packets = [self.ipv6_packet(
                       direction, IPV6_NEXT_FRAGMENT,
                       IPV6_FRAGMENT_HEADER.pack(self.protocol, 0,
                                                 offset | (offset + step < len(transport)), ident)
                       + transport[offset:offset + step])
                   for offset in range(0, len(transport), step)]
        return packets[1:] + packets[:1] if reorder else packets


def pad_frame(frame):
    if len(frame) < ETHERNET_MIN_FRAME:
        return frame + bytes(ETHERNET_MIN_FRAME - len(frame))
    return frame


# Conversation scripts: generators yielding lists of packets that go out back to back.

def tcp_session(conv, rng, ending):
    mss = 1460 if conv.ip_version == 4 else 1440
    mss_option = struct.pack("!BBH", 2, 4, mss)
    conv.server_port = rng.choice((80, 443, 443, 443, 22, 993, 8080))
    client_seq, server_seq = rng.getrandbits(32), rng.getrandbits(32)
    yield conv.tcp(CLIENT, client_seq, 0, SYN, 0, mss_option)
    client_seq += 1
    yield conv.tcp(SERVER, server_seq, client_seq, SYN | ACK, 0, mss_option)
    server_seq += 1
    yield conv.tcp(CLIENT, client_seq, server_seq, ACK, 0)
    for _ in range(rng.randint(1, 3)):
        request = rng.randint(20, 700)
        yield conv.tcp(CLIENT, client_seq, server_seq, PSH | ACK, request)
        client_seq += request
        segments = rng.choice((1, 1, 1, 2, 2, 3, 4))
        for segment in range(segments):
            last = segment == segments - 1
            size = rng.randint(1, mss) if last else mss
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


def tcp_unanswered(conv, rng):
    conv.server_port = rng.choice((22, 23, 445, 3389, 8443))
    seq = rng.getrandbits(32)
    for _ in range(rng.randint(1, 3)):  # the client's SYN retransmissions
        yield conv.tcp(CLIENT, seq, 0, SYN, 0)


def fragmentable_size(conv, rng, small_low, small_high):
    if conv.fragmenting:
        return rng.randint(1600, 4000), rng.random() < 0.25  # 2-3 fragments at MTU 1500
    return rng.randint(small_low, small_high), False


def udp_request_response(conv, rng):
    conv.server_port = rng.choice((53, 53, 123, 443, 5353, 2049))
    for _ in range(rng.randint(1, 3)):
        yield conv.udp(CLIENT, rng.randint(20, 200))
        size, reorder = fragmentable_size(conv, rng, 40, 1200)
        yield conv.udp(SERVER, size, reorder)


def udp_one_way(conv, rng):
    conv.server_port = rng.choice((514, 2055, 4739, 6343, 9995))
    for _ in range(rng.randint(1, 6)):
        size, reorder = fragmentable_size(conv, rng, 30, 1400)
        yield conv.udp(CLIENT, size, reorder)


def echo_exchange(conv, rng):
    conv.client_port = rng.getrandbits(16)  # the echo identifier
    for sequence in range(1, rng.randint(1, 4) + 1):
        size, reorder = fragmentable_size(conv, rng, 56, 56)
        yield conv.echo(CLIENT, sequence, size, reorder)
        yield conv.echo(SERVER, sequence, size, reorder)


# (weight, protocol, script, directional flows per conversation)
TRAFFIC_MIX = (
    (44, PROTO_TCP, lambda c, r: tcp_session(c, r, "fin"), 2),
    (8, PROTO_TCP, lambda c, r: tcp_session(c, r, "rst"), 2),
    (6, PROTO_TCP, tcp_unanswered, 1),
    (24, PROTO_UDP, udp_request_response, 2),
    (8, PROTO_UDP, udp_one_way, 1),
    (10, None, echo_exchange, 2),  # ICMP or ICMPv6 by IP version
)
MIX_WEIGHTS = [entry[0] for entry in TRAFFIC_MIX]
FLOWS_PER_CONVERSATION = sum(w * n for w, _, _, n in TRAFFIC_MIX) / sum(MIX_WEIGHTS)


def start_conversation(index, rng):
    _, protocol, script, _ = rng.choices(TRAFFIC_MIX, MIX_WEIGHTS)[0]
    ip_version = 6 if rng.random() < 0.25 else 4
    if protocol is None:
        protocol = PROTO_ICMP if ip_version == 4 else PROTO_ICMPV6
    conv = Conversation(index, ip_version, protocol, rng)
    return conv, script(conv, rng)


def tally(conv):
    """The directional flows of a finished (or cut-off) conversation that saw packets."""
    return [(key, conv.packets[d], conv.octets[d], conv.first_seen[d], conv.last_seen[d])
            for d, key in enumerate(conv.flow_keys()) if conv.packets[d]]


def write_capture(out, packet_total, concurrent_flows, seed, duration_s):
    """Interleave conversations into `out`; return the list of flow tallies.

    `concurrent_flows` directional flows stay alive at once: the generator keeps that
    many flows' worth of conversations open, and each packet comes from a randomly
    chosen open conversation; a finished conversation is replaced by a new one.
    """
    rng = random.Random(seed)
    slots = max(1, round(concurrent_flows / FLOWS_PER_CONVERSATION))
    started = 0
    open_conversations = []
    for _ in range(slots):
        open_conversations.append(start_conversation(started, rng))
        started += 1
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
        for direction, frame, ip_octets in burst:
            if written == packet_total:
                break
            timestamp_us = CAPTURE_START_US + written * duration_us // packet_total
            chunk.append(pack_record(timestamp_us // 1_000_000, timestamp_us % 1_000_000,
                                     len(frame), len(frame)))
            chunk.append(frame)
            conv.packets[direction] += 1
            conv.octets[direction] += ip_octets
            if conv.first_seen[direction] < 0:
                conv.first_seen[direction] = written
            conv.last_seen[direction] = written
            written += 1
        if len(chunk) > 100_000:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))
    for conv, _ in open_conversations:
        flows.extend(tally(conv))
    return flows, started


def peak_concurrency(intervals):
    """Most intervals (first, last packet index) open at any one packet."""
    events = sorted([(first, 1) for first, _ in intervals] + [(last + 1, -1) for _, last in intervals])
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


def summarize(flows, conversations_started, file_size):
    by_conversation = {}
    for key, _, _, first, last in flows:
        endpoints = (key[0], key[1]) + tuple(sorted((key[2], key[3])))
        span = by_conversation.get(endpoints, (first, last))
        by_conversation[endpoints] = (min(span[0], first), max(span[1], last))
    return {
        "packets": sum(f[1] for f in flows),
        "octets": sum(f[2] for f in flows),
        "flows": len(flows),
        "conversations": len(by_conversation),
        "conversations_started": conversations_started,
        "peak_concurrent_flows": peak_concurrency([(f[3], f[4]) for f in flows]),
        "peak_concurrent_conversations": peak_concurrency(by_conversation.values()),
        "file_bytes": file_size,
    }


def write_truth(path, summary, flows):
    names = ("ip_version", "protocol", "src_addr", "dst_addr", "src_port", "dst_port")
    with open(path, "w") as out:
        out.write('{"summary": %s,\n"flows": [\n' % json.dumps(summary))
        out.write(",\n".join(
            json.dumps(dict(zip(names, key), packets=packets, octets=octets))
            for key, packets, octets, _, _ in sorted(flows)))
        out.write("\n]}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", required=True, help="pcap file to write")
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=60_000,
                        help="directional flows alive at once (default 60000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds between first and last packet (default 30)")
    parser.add_argument("--truth", help="write exact per-flow packets and octets as JSON")
    args = parser.parse_args(argv)
    # Client IPv4 addresses come from a 2**24 bijection; beyond that 5-tuples would repeat.
    if not 1 <= args.packets <= 16_000_000 or args.flows < 1 or args.duration <= 0:
        parser.error("need 1 <= --packets <= 16000000, --flows >= 1, --duration > 0")

    started_at = time.monotonic()
    with open(args.output, "wb") as out:
        flows, conversations_started = write_capture(out, args.packets, args.flows,
                                                     args.seed, args.duration)
        file_size = out.tell()
    summary = summarize(flows, conversations_started, file_size)
    if args.truth:
        write_truth(args.truth, summary, flows)
    print(f"gen_capture: {summary['packets']} packets, {summary['octets']} IP octets, "
          f"{summary['flows']} flows ({summary['peak_concurrent_flows']} concurrent at peak), "
          f"{summary['conversations']} conversations, {file_size / 1e6:.1f} MB "
          f"-> {args.output} in {time.monotonic() - started_at:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
