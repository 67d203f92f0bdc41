"""IPFIX (RFC 7011) messages: templates, data sets, options.

An encoder is pure: records and its own state in, messages out; the
transport is someone else's. One template per address family; with a
biflow profile the records carry RFC 5103 reverse elements.
"""

import struct

from flowprobe._cmeter_ffi import ffi
from flowprobe.export.encoding import (
    FIRST_TEMPLATE_ID,
    Encoder,
    TemplateSchedule,
    family_templates,
    views,
)

VERSION = 10
HEADER = struct.Struct("!HHIII")   # version, length, export time, sequence, domain
SET_HEADER = struct.Struct("!HH")  # set id, length
TEMPLATE_SET, OPTIONS_TEMPLATE_SET = 2, 3
VARIABLE_LENGTH = 65535

# RFC 7011 §4.3: the exporting process's statistics, scoped by domain
STATS_FIELDS = (
    (149, 4, "observation_domain"),         # observationDomainId (scope)
    (41, 8, "messages"),                    # exportedMessageTotalCount
    (42, 8, "records"),                     # exportedFlowRecordTotalCount
    (40, 8, "octets"),                      # exportedOctetTotalCount
    (166, 8, "records_not_sent"),           # notSentFlowTotalCount
    (164, 8, "packets_ignored"),            # ignoredPacketTotalCount
)
INTERFACE_FIELDS = ((10, 4), (82, VARIABLE_LENGTH))  # ingressInterface (scope), interfaceName
SAMPLING_FIELDS = ((149, 4), (34, 4))   # observationDomainId (scope), samplingInterval


def _field_specifier(element_id, length, enterprise=0):
    if enterprise:
        return struct.pack("!HHI", element_id | 0x8000, length, enterprise)
    return struct.pack("!HH", element_id, length)


def _set(set_id, body):
    return SET_HEADER.pack(set_id, SET_HEADER.size + len(body)) + body


class IpfixEncoder(Encoder):
    def __init__(self, field_names, *, biflow=False, observation_domain=0, mtu=1400,
                 template_refresh_seconds=60, template_refresh_messages=20, reliable=False):
        self.biflow = biflow
        self.observation_domain = observation_domain
        self.mtu = mtu
        self.sequence = 0  # data records sent in this session (RFC 7011 §3.1)
        self.schedule = TemplateSchedule(template_refresh_seconds, template_refresh_messages,
                                         reliable)
        self.templates = family_templates(field_names, mtu, HEADER.size + SET_HEADER.size,
                                          lambda e: e.code)
        self.stats_template_id = FIRST_TEMPLATE_ID + 2
        self.interfaces_template_id = FIRST_TEMPLATE_ID + 3
        self.sampling_template_id = FIRST_TEMPLATE_ID + 4
        self._header = ffi.new("struct fp_message_header *", {
            "version": VERSION, "domain": observation_domain})
        self._templates_body = (None, b"")   # (sampling interval, the sets)

    def reset(self):
        self.schedule.reset()

    def templates_sent(self, now_ms):
        self.schedule.sent(now_ms)

    def _message(self, now_ms, body, records=0, sequence=None):
        if sequence is None:
            sequence = self.sequence
            self.sequence = (self.sequence + records) & 0xFFFFFFFF
        message = HEADER.pack(VERSION, HEADER.size + len(body), now_ms // 1000, sequence,
                              self.observation_domain) + body
        self.schedule.counted()
        return message, records

    # ---- templates ----

    def _template_set(self):
        body = b""
        for template_id, elements, _ in self.templates.values():
            body += struct.pack("!HH", template_id, len(elements))
            body += b"".join(_field_specifier(e.ipfix_id, e.length, e.enterprise)
                             for e in elements)
        return _set(TEMPLATE_SET, body)

    def _options_template_set(self):
        stats = struct.pack("!HHH", self.stats_template_id, len(STATS_FIELDS), 1)
        stats += b"".join(_field_specifier(i, n) for i, n, _ in STATS_FIELDS)
        interfaces = struct.pack("!HHH", self.interfaces_template_id, len(INTERFACE_FIELDS), 1)
        interfaces += b"".join(_field_specifier(i, n) for i, n in INTERFACE_FIELDS)
        # a set each: pmacct 1.7.7 misreads a second options template in one set
        options = _set(OPTIONS_TEMPLATE_SET, stats) + _set(OPTIONS_TEMPLATE_SET, interfaces)
        if self.sampling_interval > 1:
            # a set of its own, first: nfdump 1.7 reads one template a set
            sampling = struct.pack("!HHH", self.sampling_template_id, len(SAMPLING_FIELDS), 1)
            sampling += b"".join(_field_specifier(i, n) for i, n in SAMPLING_FIELDS)
            options = _set(OPTIONS_TEMPLATE_SET, sampling) + options
        return options

    def templates_due(self, now_ms):
        return self.schedule.due(now_ms)

    def template_messages(self, now_ms, records_queued=0):
        """[(message, data_records)] carrying every template. Sent ahead of
        records_queued records encoded earlier, it carries their sequence."""
        sequence = (self.sequence - records_queued) & 0xFFFFFFFF
        if self._templates_body[0] != self.sampling_interval:   # made once, sent often
            self._templates_body = (self.sampling_interval,
                                    self._template_set() + self._options_template_set())
        message = self._message(now_ms, self._templates_body[1], sequence=sequence)
        self.schedule.sent(now_ms)
        return [message]

    # ---- data ----

    def encode(self, records, count, now_ms, meter_biflow=False, stride=1, offset=0):
        """[(message, data_records)] for a batch of struct fp_record (the
        records offset, offset + stride, ... of it), templates first when due."""
        messages = self.template_messages(now_ms) if self.templates_due(now_ms) else []
        self.count_without_template(self.templates, records, count, meter_biflow, stride, offset)
        header = self._header
        header.export_secs = now_ms // 1000
        for family, (template_id, _, packer) in self.templates.items():
            header.set_id = template_id
            header.per_message = (self.mtu - HEADER.size - SET_HEADER.size) // packer.record_length
            for reverse in views(meter_biflow, self.biflow):
                selected = packer.select(records, count, family, reverse, stride, offset)
                if selected:   # framed in C (cmeter/record_batch.c)
                    header.sequence = self.sequence
                    framed = packer.messages(records, selected, header, reverse)
                    self.sequence = header.sequence
                    self.schedule.counted(len(framed))
                    messages += framed
        return messages

    # ---- options ----

    def stats_message(self, now_ms, stats):
        """The exporting process's statistics (RFC 7011 §4.3) as options data."""
        values = dict(stats, observation_domain=self.observation_domain)
        record = b"".join((values[key] & ((1 << (8 * n)) - 1)).to_bytes(n, "big")
                          for _, n, key in STATS_FIELDS)
        return self._message(now_ms, _set(self.stats_template_id, record), 1)

    def sampling_messages(self, now_ms):
        """The sampling interval as options data, after the templates (none
        while every packet is metered)."""
        if self.sampling_interval <= 1:
            return []
        record = struct.pack("!II", self.observation_domain, self.sampling_interval)
        return [self._message(now_ms, _set(self.sampling_template_id, record), 1)]

    def interface_messages(self, now_ms, names):
        """interfaceName for each ingressInterface: {ifindex: name}."""
        records = []
        for ifindex, name in sorted(names.items()):
            text = name.encode()[:254]
            records.append(struct.pack("!IB", ifindex, len(text)) + text)
        messages, body, count = [], b"", 0
        room = self.mtu - HEADER.size - SET_HEADER.size
        for record in records:
            if len(body) + len(record) > room:
                messages.append(self._message(now_ms, _set(self.interfaces_template_id, body),
                                              count))
                body, count = b"", 0
            body += record
            count += 1
        if body:
            messages.append(self._message(now_ms, _set(self.interfaces_template_id, body), count))
        return messages
