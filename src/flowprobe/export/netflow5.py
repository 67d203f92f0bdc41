"""NetFlow v5 datagrams: the fixed 48-byte IPv4 record.

v5 carries IPv4 only and 32-bit counters: a flow beyond 2^32 - 1 packets or
octets is split over as many records as it needs (their sums are exact),
and IPv6 flows are counted as not exportable, never dropped silently.
"""

import struct

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.export.encoding import Encoder, RecordPacker, header_clock, uptime_zero, views

VERSION = 5
# version, count, sysUptime, secs, nsecs, flow sequence, engine type and id, sampling
HEADER = struct.Struct("!HHIIIIBBH")
MAX_RECORDS = 30                      # the format's own limit
COUNTER_LIMIT = 2**32 - 1

f = lib
LAYOUT = (
    f.FP_FIELD_SRC_ADDR4, f.FP_FIELD_DST_ADDR4, f.FP_FIELD_NEXT_HOP4,   # nexthop (enrich/)
    f.FP_FIELD_INGRESS16, f.FP_FIELD_EGRESS16,                          # input, output
    f.FP_FIELD_PACKETS32, f.FP_FIELD_OCTETS32, f.FP_FIELD_START_UPTIME, f.FP_FIELD_END_UPTIME,
    f.FP_FIELD_SRC_PORT, f.FP_FIELD_DST_PORT, f.FP_FIELD_ZERO8,         # pad1
    f.FP_FIELD_TCP_FLAGS, f.FP_FIELD_PROTOCOL, f.FP_FIELD_TOS,
    f.FP_FIELD_SRC_AS16, f.FP_FIELD_DST_AS16,                           # src_as, dst_as
    f.FP_FIELD_SRC_PREFIX_LENGTH, f.FP_FIELD_DST_PREFIX_LENGTH,         # src_mask, dst_mask
    f.FP_FIELD_ZERO16,                                                  # pad2
)


def _split(record, reverse):
    """Copies of a record whose counters fit in 32 bits, summing to it."""
    packets = record.reverse_packets if reverse else record.packets
    octets = record.reverse_octets if reverse else record.octets
    pieces = max(-(-packets // COUNTER_LIMIT), -(-octets // COUNTER_LIMIT), 1)
    copies = ffi.new("struct fp_record[]", pieces)
    for n in range(pieces):
        copies[n] = record
        share_packets = packets // pieces + (n < packets % pieces)
        share_octets = octets // pieces + (n < octets % pieces)
        if reverse:
            copies[n].reverse_packets, copies[n].reverse_octets = share_packets, share_octets
        else:
            copies[n].packets, copies[n].octets = share_packets, share_octets
    return copies, pieces


class Netflow5Encoder(Encoder):
    def __init__(self, *, engine_id=0, mtu=1400, boot_ms=0):
        self.engine_id = engine_id & 0xFF
        self.boot_ms = boot_ms
        self.flow_sequence = 0  # records sent before this datagram
        self.per_message = min(MAX_RECORDS, (mtu - HEADER.size) // 48)
        self.packer = RecordPacker(LAYOUT)
        self.records_not_exportable = 0  # IPv6 and layer-2 flows
        self._header = ffi.new("struct fp_message_header *", {
            "version": VERSION, "domain": self.engine_id, "per_message": self.per_message})

    def _datagram(self, now_ms, data, count):
        # unix_nsecs 0: collectors that ignore it (pmacct) are exact too
        unix_secs, uptime = header_clock(now_ms, self.boot_ms)
        header = HEADER.pack(VERSION, count, uptime, unix_secs, 0, self.flow_sequence, 0,
                             self.engine_id, self._sampling_field())
        self.flow_sequence = (self.flow_sequence + count) & 0xFFFFFFFF
        return header + data, count

    def _sampling_field(self):
        """The header's sampling: mode 1 (1 in N) in the top 2 bits and N
        in 14 (beyond 16383 it cannot be said: 0, as unsampled)."""
        interval = self.sampling_interval
        return (1 << 14) | interval if 1 < interval < (1 << 14) else 0

    def encode(self, records, count, now_ms, meter_biflow=False, stride=1, offset=0):
        messages = []
        for reverse in views(meter_biflow, False):
            for family in (6, 0):   # IPv6, layer-2 flows
                self.records_not_exportable += self.packer.select(records, count, family,
                                                                  reverse, stride, offset)
            selected = self.packer.select(records, count, 4, reverse, stride, offset)
            source, selected = self._within_32_bits(records, selected, reverse)
            if selected:   # framed in C (cmeter/record_batch.c)
                header = self._header
                header.export_secs, header.uptime_ms = header_clock(now_ms, self.boot_ms)
                header.sequence, header.sampling = self.flow_sequence, self._sampling_field()
                messages += self.packer.messages(source, selected, header, reverse,
                                                 uptime_zero(self.boot_ms))
                self.flow_sequence = header.sequence
        return messages

    def _within_32_bits(self, records, selected, reverse):
        """The selection, with records too big for 32-bit counters split;
        returns the records to pack from and how many are selected."""
        indices = self.packer._indices[reverse]
        if not lib.fp_records_over_32_bits(records, indices, selected, int(reverse)):
            return records, selected
        chosen = [records[indices[i]] for i in range(selected)]
        if all(max(r.reverse_packets, r.reverse_octets) <= COUNTER_LIMIT if reverse
               else max(r.packets, r.octets) <= COUNTER_LIMIT for r in chosen):
            return records, selected
        splits = [_split(record, reverse) for record in chosen]  # arrays kept alive here
        expanded = ffi.new("struct fp_record[]", sum(n for _, n in splits))
        position = 0
        for copies, n in splits:
            for i in range(n):
                expanded[position] = copies[i]
                position += 1
        self._expanded = expanded  # must outlive the packing that follows
        return expanded, self.packer.select(expanded, position, 4, reverse)
