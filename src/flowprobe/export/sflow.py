"""sFlow version 5 datagrams (sflow.org, "sFlow Version 5", 2004), XDR.

An sFlow agent sends packet samples, not flow records: each flow sample
carries one sampled packet's first bytes (raw packet header record) with
the sampler's rate, sample pool and drops, and counter samples carry an
interface's generic counters.  Pure: samples (struct fp_packet_sample from
the meter's ring) and counters in, [(datagram, samples in it)] out.

Sequence numbers: one per datagram (the agent's), one per sampler (flow
samples of an interface), one per counter source; the data source of both
is the interface (ifIndex).  Datagrams never exceed the mtu.
"""

import ipaddress
import struct

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.export.encoding import Encoder

VERSION = 5
ADDRESS_IPV4, ADDRESS_IPV6 = 1, 2
FLOW_SAMPLE, COUNTER_SAMPLE = 1, 2                  # enterprise 0
RAW_PACKET_HEADER, EXTENDED_SWITCH = 1, 1001        # flow records
GENERIC_INTERFACE_COUNTERS = 1                      # counter record
# header_protocol: the first bytes' format
HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6 = 1, 11, 12
ETHERNET_FCS = 4           # not captured, but on the wire: in frame_length, as stripped
UNKNOWN32 = 0xFFFFFFFF     # a counter the kernel does not keep (the spec's "unknown")

DLT_NULL, DLT_EN10MB, DLT_RAW, DLT_RAW_OPENBSD, DLT_LOOP = 0, 1, 12, 14, 108
DLT_LINUX_SLL, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL2 = 113, 228, 229, 276
# link headers libpcap adds that were never on the wire, by length: what
# follows is IP (the version nibble says which)
PSEUDO_HEADERS = {DLT_LINUX_SLL: 16, DLT_LINUX_SLL2: 20, DLT_NULL: 4, DLT_LOOP: 4}

DATAGRAM_HEAD = struct.Struct("!II")                # version, address type
DATAGRAM_TAIL = struct.Struct("!IIII")              # sub-agent, sequence, uptime, samples
SAMPLE_HEAD = struct.Struct("!II")                  # data format, length
FLOW_SAMPLE_HEAD = struct.Struct("!IIIIIIII")
RAW_HEADER_HEAD = struct.Struct("!IIII")            # protocol, frame length, stripped, length
SWITCH = struct.Struct("!IIII")                     # src vlan, priority, dst vlan, priority
COUNTER_SAMPLE_HEAD = struct.Struct("!III")         # sequence, source id, records
# the same, each with its (format, length) in front: one pack a sample
FLOW_SAMPLE_FULL = struct.Struct("!II" + FLOW_SAMPLE_HEAD.format[1:])
RAW_RECORD = struct.Struct("!II" + RAW_HEADER_HEAD.format[1:])
SWITCH_RECORD = struct.Struct("!II" + SWITCH.format[1:])
PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")      # to 4 bytes, by length % 4
GENERIC_COUNTERS = struct.Struct("!IIQIIQIIIIIIQIIIIII")   # 88 bytes
# a drained batch read in one pass (cffi field access costs more than the
# encoding): struct fp_packet_sample, fields at their C offsets, native order
SAMPLE = struct.Struct("=QQIIIiHBB%ds%dx" % (
    lib.FP_SAMPLE_HEADER_BYTES,
    ffi.sizeof("struct fp_packet_sample") - ffi.offsetof("struct fp_packet_sample", "header")
    - lib.FP_SAMPLE_HEADER_BYTES))
assert ffi.offsetof("struct fp_packet_sample", "header") == 36
FP_DIRECTION_OUT = lib.FP_DIRECTION_OUT


def header_of(linktype, header, frame_length):
    """(header_protocol, header bytes, frame length, stripped) of a sample, or
    None for a link type sFlow has no protocol for."""
    if linktype == DLT_EN10MB:
        return HEADER_ETHERNET, header, frame_length + ETHERNET_FCS, ETHERNET_FCS
    pseudo = PSEUDO_HEADERS.get(linktype, 0)
    if pseudo or linktype in (DLT_RAW, DLT_RAW_OPENBSD, DLT_IPV4, DLT_IPV6):
        header, frame_length = header[pseudo:], frame_length - pseudo
        version = header[0] >> 4 if header else 0
        if version in (4, 6):
            return (HEADER_IPV4 if version == 4 else HEADER_IPV6), header, frame_length, 0
    return None


def vlan_of(header):
    """(vlan, priority) of an 802.1Q (or the outer 802.1ad) tag, or None."""
    if len(header) >= 16 and header[12:14] in (b"\x81\x00", b"\x88\xa8"):
        tci = int.from_bytes(header[14:16], "big")
        return tci & 0xFFF, tci >> 13
    return None


class SflowEncoder(Encoder):
    """One sFlow agent's datagrams to one collector."""

    def __init__(self, *, sub_agent_id=0, mtu=1400, boot_ms=0, agent_address="0.0.0.0"):
        self.sub_agent_id = sub_agent_id
        self.mtu = mtu
        self.agent_boot_ms = boot_ms    # uptime zero (not the v9 boot_ms the exporter resets)
        self.agent_address = agent_address
        self.sequence = 0               # datagrams
        self.flow_sequence = {}         # ifindex -> flow samples sent
        self.counter_sequence = {}      # ifindex -> counter samples sent
        self.samples_encoded = 0
        self.counter_samples = 0
        self.samples_not_encodable = 0  # link types sFlow has no header protocol for
        self._parsed = (None, 0, b"")

    def encode(self, records, count, now_ms, meter_biflow=False, stride=1, offset=0):
        return []   # flow records are for IPFIX and NetFlow collectors

    # ---- datagrams ----

    def _address(self):
        """(type, packed) of the agent address, parsed once per address."""
        if self._parsed[0] != self.agent_address:
            address = ipaddress.ip_address(self.agent_address)
            self._parsed = (self.agent_address, ADDRESS_IPV4 if address.version == 4
                            else ADDRESS_IPV6, address.packed)
        return self._parsed[1:]

    def _datagram(self, now_ms, samples):
        kind, packed = self._address()
        uptime = (now_ms - self.agent_boot_ms) & 0xFFFFFFFF
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        return (DATAGRAM_HEAD.pack(VERSION, kind) + packed
                + DATAGRAM_TAIL.pack(self.sub_agent_id, self.sequence, uptime, len(samples))
                + b"".join(samples))

    def _room(self):
        return self.mtu - DATAGRAM_HEAD.size - len(self._address()[1]) - DATAGRAM_TAIL.size

    def _pack(self, now_ms, encoded):
        """Samples into datagrams within the mtu: [(datagram, samples)]."""
        messages, batch, used, room = [], [], 0, self._room()
        for sample in encoded:
            if batch and used + len(sample) > room:
                messages.append((self._datagram(now_ms, batch), len(batch)))
                batch, used = [], 0
            batch.append(sample)
            used += len(sample)
        if batch:
            messages.append((self._datagram(now_ms, batch), len(batch)))
        return messages

    # ---- flow samples ----

    def flow_sample(self, ifindex, rate, pool, direction, linktype, frame_length, header,
                    drops=0):
        """One flow sample (bytes) for a sampled packet's header, or None."""
        described = header_of(linktype, header, frame_length)
        if described is None:
            self.samples_not_encodable += 1
            return None
        protocol, header, frame_length, stripped = described
        length = len(header)
        padded = header + PADDING[length & 3]
        records = RAW_RECORD.pack(RAW_PACKET_HEADER, RAW_HEADER_HEAD.size + len(padded),
                                  protocol, frame_length, stripped, length) + padded
        count = 1
        vlan = vlan_of(header) if protocol == HEADER_ETHERNET else None
        if vlan is not None:   # a bridge's frame keeps its VLAN: in and out alike
            records += SWITCH_RECORD.pack(EXTENDED_SWITCH, SWITCH.size, vlan[0], vlan[1],
                                          vlan[0], vlan[1])
            count = 2
        sequence = self.flow_sequence[ifindex] = (self.flow_sequence.get(ifindex, 0) + 1) \
            & 0xFFFFFFFF
        egress = direction == FP_DIRECTION_OUT
        self.samples_encoded += 1
        return FLOW_SAMPLE_FULL.pack(
            FLOW_SAMPLE, FLOW_SAMPLE_HEAD.size + len(records), sequence, ifindex & 0xFFFFFF,
            rate, pool & 0xFFFFFFFF, drops & 0xFFFFFFFF, 0 if egress else ifindex,
            ifindex if egress else 0, count) + records

    def encode_samples(self, samples, count, now_ms, drops=None):
        """[(datagram, samples)] for a drained batch of the meter's samples;
        drops: {ifindex: packets lost to lack of resources so far}."""
        drops = drops or {}
        encoded = []
        for _, pool, ifindex, frame_length, rate, linktype, length, direction, _, header in \
                SAMPLE.iter_unpack(ffi.buffer(samples, count * SAMPLE.size)):
            sample = self.flow_sample(ifindex, rate, pool, direction, linktype, frame_length,
                                      header[:length], drops.get(ifindex, 0))
            if sample is not None:
                encoded.append(sample)
        return self._pack(now_ms, encoded)

    # ---- counter samples ----

    def counter_sample(self, counters):
        """A counter sample with the generic interface counters: a dict of
        sources/interface_counters.py."""
        c = counters
        ifindex = c["ifindex"]
        sequence = self.counter_sequence[ifindex] = (self.counter_sequence.get(ifindex, 0) + 1) \
            & 0xFFFFFFFF
        u32 = 0xFFFFFFFF
        record = GENERIC_COUNTERS.pack(
            ifindex, c["type"], c["speed"], c["duplex"], c["status"],
            c["in_octets"], c["in_unicast"] & u32, c["in_multicast"] & u32, UNKNOWN32,
            c["in_discards"] & u32, c["in_errors"] & u32, UNKNOWN32,
            c["out_octets"], c["out_unicast"] & u32, UNKNOWN32, UNKNOWN32,
            c["out_discards"] & u32, c["out_errors"] & u32, c["promiscuous"])
        body = COUNTER_SAMPLE_HEAD.pack(sequence, ifindex & 0xFFFFFF, 1)
        body += SAMPLE_HEAD.pack(GENERIC_INTERFACE_COUNTERS, len(record)) + record
        self.counter_samples += 1
        return SAMPLE_HEAD.pack(COUNTER_SAMPLE, len(body)) + body

    def counter_messages(self, now_ms, interfaces):
        """[(datagram, samples)] with one counter sample per interface."""
        return self._pack(now_ms, [self.counter_sample(c) for c in interfaces])
