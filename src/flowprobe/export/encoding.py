"""What the IPFIX, NetFlow v9 and v5 encoders share: selecting and packing
data records in C, a batch at a time, and when templates are due."""

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.export.fields import family_elements, layer2_elements

FIRST_TEMPLATE_ID = 256  # lower ids are set ids
# IPv4 256, IPv6 257, options 258-260 (ipfix.py, netflow9.py); layer-2 flows
LAYER2_TEMPLATE_ID = FIRST_TEMPLATE_ID + 5
MESSAGE_OVERHEAD = 20 + 4 + 3   # the most a message adds to its records (v9: padding)


class EncodingError(ValueError):
    pass


class RecordPacker:
    """Packs the records of one address family into fixed-length data
    records. select() picks the records of a batch (forward, or the reverse
    directions of biflow records); pack() writes a run of them."""

    def __init__(self, codes):
        self.layout = bytes(codes)
        self.record_length = sum(lib.fp_field_length(c) for c in codes)
        self._indices = {False: ffi.new("int[]", 1024), True: ffi.new("int[]", 1024)}
        self._buffer = ffi.new("uint8_t[]", 65536)
        self._ends, self._counts = ffi.new("int[]", 64), ffi.new("int[]", 64)

    def select(self, records, count, family, reverse_view=False, stride=1, offset=0):
        """How many records of the batch go out in this direction."""
        if count > len(self._indices[reverse_view]):
            self._indices[reverse_view] = ffi.new("int[]", count)
        return lib.fp_records_select(records, count, family, int(reverse_view), stride, offset,
                                     self._indices[reverse_view])

    def messages(self, records, selected, header, reverse_view=False, uptime_base_ms=0):
        """[(message bytes, data records in it)] for the selected records,
        framed in C as header (struct fp_message_header) says; its sequence
        is the next message's afterwards."""
        most = -(-selected // header.per_message)
        size = selected * self.record_length + most * MESSAGE_OVERHEAD
        out = uncleared("uint8_t[]", size)
        if most > len(self._ends):
            self._ends, self._counts = ffi.new("int[]", most), ffi.new("int[]", most)
        n = lib.fp_records_pack_messages(records, self._indices[reverse_view], selected,
                                         self.layout, len(self.layout), int(reverse_view),
                                         uptime_base_ms, header, out, size,
                                         self._ends, self._counts, most)
        if n < 0:
            raise EncodingError("data records do not fit the message buffer")
        return split_messages(out, self._ends, self._counts, n)

    def pack(self, records, start, count, reverse_view=False, uptime_base_ms=0):
        """Data records for selected records start .. start + count, as bytes."""
        length = lib.fp_records_pack(records, self._indices[reverse_view] + start, count,
                                     self.layout, len(self.layout), int(reverse_view),
                                     uptime_base_ms, self._buffer, len(self._buffer))
        if length < 0:
            raise EncodingError("data records do not fit the packing buffer")
        return ffi.buffer(self._buffer, length)[:]


# messages are written into a new buffer each time, read in place (no copy):
# clearing it first would cost as much as copying it
uncleared = ffi.new_allocator(should_clear_after_alloc=False)


def split_messages(buffer, ends, counts, n):
    """[(message, records in it)] of n messages laid end to end in a C
    buffer of their own (never reused: they may be queued), as memoryview
    slices of it, which keep it alive."""
    data = memoryview(ffi.buffer(buffer, ends[n - 1]))
    offsets = ffi.unpack(ends, n)
    return list(zip(map(data.__getitem__, map(slice, [0] + offsets[:-1], offsets)),
                    ffi.unpack(counts, n)))


def uptime_zero(boot_ms):
    """sysUptime 0 of NetFlow v9/v5: before boot_ms, the earliest a record
    can start, so that no record carries uptime 0, which collectors such as
    nfdump read as "no time" (shown as 1970); on a whole second, so that
    collectors working in seconds (pmacct divides v5's uptimes by 1000 one
    by one) round every time the same way."""
    zero = max(boot_ms - 1, 0)
    return zero - zero % 1000


def header_clock(now_ms, boot_ms):
    """(unix_secs, sysUptime) of a v9/v5 header, both describing one
    instant: now rounded up to a whole second.  unix_secs has no fraction,
    so collectors' unix_secs * 1000 - sysUptime + a record's uptime is the
    record's time exactly (now itself would make every record early by
    now's sub-second part), and sysUptime is never below a record's uptime
    (pmacct subtracts the two unsigned)."""
    secs = -(-now_ms // 1000)
    return secs, (secs * 1000 - uptime_zero(boot_ms)) & 0xFFFFFFFF


def views(meter_biflow, profile_biflow):
    """The directions to export: a uniflow profile fed by a bidirectional
    meter gets each biflow record's reverse direction as a record of its own."""
    return (False, True) if meter_biflow and not profile_biflow else (False,)


class Encoder:
    """What a collector asks of its protocol's encoder.  An encoder is a pure
    function of records and its own state: [(message bytes, data records in
    it)] out, never a socket.  A protocol without templates or options
    (NetFlow v5) keeps the defaults."""

    boot_ms = None               # sysUptime zero (v9, v5); None: absolute times (IPFIX)
    records_not_exportable = 0   # records the protocol cannot carry (v5: IPv6)
    # 1 in sampling_interval packets metered (every interface alike). Told
    # as samplingInterval (34) alone in an options record: nfdump 1.7 takes
    # a sampling options template only with 34 and without 35 (its STDMASK
    # test), and ignores RFC 7014's selectorId set; pmacct's nfacctd takes
    # 34 with system scope (v9) or none it knows (IPFIX) for every record
    # without a sampler id.  Neither needs a field in the data records.
    sampling_interval = 1

    def reset(self):
        """A new transport session: templates first."""

    def templates_due(self, now_ms):
        return False

    def templates_sent(self, now_ms):
        """The session's templates are out (over TCP they open it)."""

    def template_messages(self, now_ms, records_queued=0):
        """Every template; sent ahead of records_queued records encoded
        earlier, where sequence numbers count records they carry theirs."""
        return []

    def encode(self, records, count, now_ms, meter_biflow=False, stride=1, offset=0):
        raise NotImplementedError

    def stats_message(self, now_ms, stats):
        """Exporting-process statistics as options data, or None."""
        return None

    def interface_messages(self, now_ms, names):
        """Interface names as options data."""
        return []

    def sampling_messages(self, now_ms):
        """The sampling interval as options data, sent after the templates."""
        return []

    def count_without_template(self, templates, records, count, meter_biflow, stride, offset):
        """Layer-2 flows (ip_version 0) for a field list without
        ethernetType have no template: counted as not exportable, never
        dropped unseen."""
        if 0 in templates:
            return
        packer = next(iter(templates.values()))[2]
        for reverse in views(meter_biflow, getattr(self, "biflow", False)):
            self.records_not_exportable += packer.select(records, count, 0, reverse, stride,
                                                         offset)


class TemplateSchedule:
    """Templates go out before the first data, after reset() (a new
    session), and, over UDP, again after refresh_seconds or every
    refresh_messages messages, whichever comes first (collectors such as
    goflow2 forget templates after a while; RFC 7011 §8.4)."""

    def __init__(self, refresh_seconds, refresh_messages, reliable):
        self.refresh_ms = refresh_seconds * 1000
        self.refresh_messages = refresh_messages
        self.reliable = reliable
        self.reset()

    def reset(self):
        self.sent_ms = None
        self.messages_since = 0

    def due(self, now_ms):
        if self.sent_ms is None:
            return True
        if self.reliable:
            return False
        return (now_ms - self.sent_ms >= self.refresh_ms
                or self.messages_since >= self.refresh_messages)

    def sent(self, now_ms):
        self.sent_ms = now_ms
        self.messages_since = 0

    def counted(self, messages=1):
        self.messages_since += messages


def family_templates(field_names, mtu, overhead, code_of, carried=lambda element: True):
    """{family: (template id, elements, packer)}: IPv4 records and IPv6
    records each have a template of their own, and so do layer-2 flows
    (family 0, their records' ip_version) when the fields name ethernetType."""
    templates = {}
    for n, family in enumerate((4, 6)):
        elements = [e for e in family_elements(field_names, family) if carried(e)]
        packer = RecordPacker([code_of(e) for e in elements])
        if packer.record_length + overhead > mtu:
            raise EncodingError(f"one record ({packer.record_length} bytes) exceeds mtu {mtu}")
        templates[family] = (FIRST_TEMPLATE_ID + n, elements, packer)
    if "ethernetType" in field_names:   # layer-2 flows: records of ip_version 0
        elements = [e for e in layer2_elements(field_names) if carried(e)]
        packer = RecordPacker([code_of(e) for e in elements])
        templates[0] = (LAYER2_TEMPLATE_ID, elements, packer)
    return templates
