"""sFlow version 5 datagrams (sflow.org, "sFlow Version 5", 2004), XDR.

An sFlow agent sends packet samples, not flow records: each flow sample
carries one sampled packet's first bytes (raw packet header record) with
the sampler's rate, sample pool and drops, and counter samples carry an
interface's generic counters.  Pure: samples (struct fp_packet_sample from
the meter's ring) and counters in, [(datagram, samples in it)] out.

Flow samples are packed in C (cmeter/sflow_pack.c), a datagram at a time:
at 1:1 every packet is one.  Sequence numbers: one per datagram (the
agent's), one per sampler (flow samples of an interface), one per counter
source; the data source of both is the interface (ifIndex).  Datagrams
never exceed the mtu.
"""

import struct

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.addresses import packed_address
from flowprobe.export.encoding import Encoder, split_messages, uncleared

VERSION = 5
ADDRESS_IPV4, ADDRESS_IPV6 = 1, 2
COUNTER_SAMPLE = 2                                  # enterprise 0 (flow samples: sflow_pack.c)
GENERIC_INTERFACE_COUNTERS = 1                      # counter record
UNKNOWN32 = 0xFFFFFFFF     # a counter the kernel does not keep (the spec's "unknown")
MAX_SOURCES = 256          # data sources (interfaces) with a flow sample sequence
DATAGRAMS_PER_CALL = 64    # datagrams packed in one call to C

DATAGRAM_HEAD = struct.Struct("!II")                # version, address type
DATAGRAM_TAIL = struct.Struct("!IIII")              # sub-agent, sequence, uptime, samples
SAMPLE_HEAD = struct.Struct("!II")                  # data format, length
COUNTER_SAMPLE_HEAD = struct.Struct("!III")         # sequence, source id, records
GENERIC_COUNTERS = struct.Struct("!IIQIIQIIIIIIQIIIIII")   # 88 bytes


class SflowEncoder(Encoder):
    """One sFlow agent's datagrams to one collector."""

    def __init__(self, *, sub_agent_id=0, mtu=1400, boot_ms=0, agent_address="0.0.0.0"):
        self.sub_agent_id = sub_agent_id
        self.mtu = mtu
        self.agent_boot_ms = boot_ms    # uptime zero (not the v9 boot_ms the exporter resets)
        self.agent_address = agent_address
        self.sequence = 0               # datagrams
        self.counter_sequence = {}      # ifindex -> counter samples sent
        self.samples_encoded = 0
        self.counter_samples = 0
        self.samples_not_encodable = 0  # link types sFlow has no header protocol for
        self._parsed = (None, 0, b"")
        # the C packer's state: each data source's sequence number and drops
        self._sources = ffi.new("struct fp_sflow_source[]", MAX_SOURCES)
        self._sources_used = ffi.new("int *", 0)
        self._counts = (ffi.new("int *"), ffi.new("int *"))
        self._ends = ffi.new("int[]", DATAGRAMS_PER_CALL)
        self._packed = ffi.new("int[]", DATAGRAMS_PER_CALL)
        self._sequence = ffi.new("uint32_t *")

    def encode(self, records, count, now_ms, meter_biflow=False, stride=1, offset=0):
        return []   # flow records are for IPFIX and NetFlow collectors

    # ---- datagrams ----

    def _address(self):
        """(type, packed) of the agent address, parsed once per address."""
        if self._parsed[0] != self.agent_address:
            packed = packed_address(self.agent_address)  # not ipaddress: kept all run long
            self._parsed = (self.agent_address, ADDRESS_IPV4 if len(packed) == 4
                            else ADDRESS_IPV6, packed)
        return self._parsed[1:]

    def _datagram(self, now_ms, samples, count=None):
        """A datagram of encoded samples (bytes each, or one run of count)."""
        kind, packed = self._address()
        uptime = (now_ms - self.agent_boot_ms) & 0xFFFFFFFF
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        return (DATAGRAM_HEAD.pack(VERSION, kind) + packed
                + DATAGRAM_TAIL.pack(self.sub_agent_id, self.sequence, uptime,
                                     len(samples) if count is None else count)
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

    def encode_samples(self, samples, count, now_ms, drops=None):
        """[(datagram, samples)] for a drained batch of the meter's samples
        (struct fp_packet_sample), packed in C a datagram at a time; drops:
        {ifindex: packets lost to lack of resources so far}."""
        sources, used = self._sources, self._sources_used
        for i in range(used[0]):
            sources[i].drops = (drops or {}).get(sources[i].ifindex, 0) & 0xFFFFFFFF
        kind, packed_address = self._address()
        head = DATAGRAM_HEAD.pack(VERSION, kind) + packed_address + struct.pack(
            "!I", self.sub_agent_id)
        uptime = (now_ms - self.agent_boot_ms) & 0xFFFFFFFF
        sequence, consumed, not_encodable = self._sequence, *self._counts
        messages, start = [], 0
        while start < count:   # whole datagrams in C (cmeter/record_batch.c)
            sequence[0] = self.sequence
            out = uncleared("uint8_t[]", self.mtu * DATAGRAMS_PER_CALL)
            n = lib.fp_sflow_pack_datagrams(samples + start, count - start, sources, used,
                                            MAX_SOURCES, head, len(head), sequence, uptime,
                                            self.mtu, out, DATAGRAMS_PER_CALL,
                                            self._ends, self._packed, consumed, not_encodable)
            self.sequence = sequence[0]
            self.samples_not_encodable += not_encodable[0]
            if consumed[0] == 0:   # the mtu cannot hold one sample (the profile's check)
                self.samples_not_encodable += count - start
                break
            start += consumed[0]
            if n:
                datagrams = split_messages(out, self._ends, self._packed, n)
                self.samples_encoded += sum(packed for _, packed in datagrams)
                messages += datagrams
        return messages

    @property
    def flow_sequence(self):
        """{ifindex: flow samples sent}, per data source."""
        return {self._sources[i].ifindex: self._sources[i].sequence
                for i in range(self._sources_used[0])}

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
