"""NetFlow v9 (RFC 3954) packets: templates, data flowsets, options.

Times are sysUptime-relative (FIRST_SWITCHED / LAST_SWITCHED) against the
exporter's boot time, with a header whose unix_secs and sysUptime describe
one instant (encoding.header_clock): exact to the millisecond. The sequence
number counts export packets. Uniflow only: biflow records go out as two
records.
"""

import struct

from flowprobe._cmeter_ffi import ffi
from flowprobe.export.encoding import (
    FIRST_TEMPLATE_ID,
    Encoder,
    TemplateSchedule,
    family_templates,
    header_clock,
    uptime_zero,
    views,
)

VERSION = 9
HEADER = struct.Struct("!HHIIII")  # version, count, sysUptime, unix secs, sequence, source id
FLOWSET_HEADER = struct.Struct("!HH")
TEMPLATE_FLOWSET, OPTIONS_TEMPLATE_FLOWSET = 0, 1
INTERFACE_NAME_LENGTH = 16  # IF_NAME has no variable length in v9

SCOPE_SYSTEM, SCOPE_INTERFACE = 1, 2
# exported totals (RFC 3954 field types 40-42), scoped by the system (source id)
STATS_FIELDS = ((40, 8, "octets"), (41, 8, "messages"), (42, 8, "records"))
IF_NAME = 82
SAMPLING_INTERVAL = 34


def _flowset(flowset_id, body):
    body += b"\0" * (-len(body) % 4)  # flowsets end on a 32-bit boundary (RFC 3954 §5.3)
    return FLOWSET_HEADER.pack(flowset_id, FLOWSET_HEADER.size + len(body)) + body


def supported(element):
    return element.v9_id is not None


class Netflow9Encoder(Encoder):
    def __init__(self, field_names, *, source_id=0, mtu=1400, boot_ms=0,
                 template_refresh_seconds=60, template_refresh_messages=20, reliable=False):
        self.source_id = source_id
        self.mtu = mtu
        self.boot_ms = boot_ms   # sysUptime zero: no record may start earlier
        self.sequence = 0        # export packets sent
        self.schedule = TemplateSchedule(template_refresh_seconds, template_refresh_messages,
                                         reliable)
        self.templates = family_templates(field_names, mtu, HEADER.size + FLOWSET_HEADER.size,
                                          lambda e: e.v9_code or e.code, supported)
        self.stats_template_id = FIRST_TEMPLATE_ID + 2
        self.interfaces_template_id = FIRST_TEMPLATE_ID + 3
        self.sampling_template_id = FIRST_TEMPLATE_ID + 4
        self._header = ffi.new("struct fp_message_header *", {
            "version": VERSION, "domain": source_id})
        self._templates_body = (None, b"", 0)   # (sampling interval, flowsets, count)

    def reset(self):
        self.schedule.reset()

    def templates_sent(self, now_ms):
        self.schedule.sent(now_ms)

    def _packet(self, now_ms, body, count, records=0):
        unix_secs, uptime = header_clock(now_ms, self.boot_ms)
        packet = HEADER.pack(VERSION, count, uptime, unix_secs, self.sequence,
                             self.source_id) + body
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        self.schedule.counted()
        return packet, records

    def templates_due(self, now_ms):
        return self.schedule.due(now_ms)

    def template_messages(self, now_ms, records_queued=0):
        # v9 sequence numbers count packets: queued ones keep theirs
        if self._templates_body[0] != self.sampling_interval:   # made once, sent often
            self._templates_body = (self.sampling_interval, *self._templates_flowsets())
        message = self._packet(now_ms, *self._templates_body[1:])
        self.schedule.sent(now_ms)
        return [message]

    def _templates_flowsets(self):
        """(the template and options template flowsets, how many templates)."""
        body, count = b"", 0
        for template_id, elements, _ in self.templates.values():
            body += struct.pack("!HH", template_id, len(elements))
            body += b"".join(struct.pack("!HH", e.v9_id, e.v9_length) for e in elements)
            count += 1
        templates = _flowset(TEMPLATE_FLOWSET, body)
        stats = struct.pack("!HHH", self.stats_template_id, 4, 4 * len(STATS_FIELDS))
        stats += struct.pack("!HH", SCOPE_SYSTEM, 4)
        stats += b"".join(struct.pack("!HH", i, n) for i, n, _ in STATS_FIELDS)
        interfaces = struct.pack("!HHH", self.interfaces_template_id, 4, 4)
        interfaces += struct.pack("!HHHH", SCOPE_INTERFACE, 4, IF_NAME, INTERFACE_NAME_LENGTH)
        options = _flowset(OPTIONS_TEMPLATE_FLOWSET, stats + interfaces)
        if self.sampling_interval > 1:   # a flowset of its own, first: as IPFIX's (ipfix.py)
            options = _flowset(OPTIONS_TEMPLATE_FLOWSET, struct.pack(
                "!HHHHHHH", self.sampling_template_id, 4, 4, SCOPE_SYSTEM, 4, SAMPLING_INTERVAL,
                4)) + options
            count += 1
        return templates + options, count + 2

    def encode(self, records, count, now_ms, meter_biflow=False, stride=1, offset=0):
        messages = self.template_messages(now_ms) if self.templates_due(now_ms) else []
        self.count_without_template(self.templates, records, count, meter_biflow, stride, offset)
        header = self._header
        header.export_secs, header.uptime_ms = header_clock(now_ms, self.boot_ms)
        for family, (template_id, _, packer) in self.templates.items():
            room = self.mtu - HEADER.size - FLOWSET_HEADER.size - 3  # padding
            header.set_id, header.per_message = template_id, room // packer.record_length
            for reverse in views(meter_biflow, False):
                selected = packer.select(records, count, family, reverse, stride, offset)
                if selected:   # framed in C (cmeter/record_batch.c)
                    header.sequence = self.sequence
                    framed = packer.messages(records, selected, header, reverse,
                                             uptime_zero(self.boot_ms))
                    self.sequence = header.sequence
                    self.schedule.counted(len(framed))
                    messages += framed
        return messages

    def stats_message(self, now_ms, stats):
        record = struct.pack("!I", self.source_id)
        record += b"".join((stats[key] & (2**64 - 1)).to_bytes(n, "big")
                           for _, n, key in STATS_FIELDS)
        return self._packet(now_ms, _flowset(self.stats_template_id, record), 1, 1)

    def sampling_messages(self, now_ms):
        if self.sampling_interval <= 1:
            return []
        record = struct.pack("!II", self.source_id, self.sampling_interval)
        return [self._packet(now_ms, _flowset(self.sampling_template_id, record), 1, 1)]

    def interface_messages(self, now_ms, names):
        room = self.mtu - HEADER.size - FLOWSET_HEADER.size - 3
        per_message = room // (4 + INTERFACE_NAME_LENGTH)
        items = sorted(names.items())
        messages = []
        for start in range(0, len(items), per_message):
            chunk = items[start:start + per_message]
            body = b"".join(struct.pack("!I", ifindex)
                            + name.encode()[:INTERFACE_NAME_LENGTH].ljust(INTERFACE_NAME_LENGTH,
                                                                         b"\0")
                            for ifindex, name in chunk)
            messages.append(self._packet(now_ms, _flowset(self.interfaces_template_id, body),
                                         len(chunk), len(chunk)))
        return messages
