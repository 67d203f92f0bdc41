"""Meter: settings in, flow records out, in batches.

A thin wrapper over the C core.  Packets never pass through here: the core
reads them from libpcap itself; Python moves records, a batch at a time.
"""

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.records import record_to_dict
from flowprobe.settings import MeterSettings

DRAIN_BATCH = 1024
DIRECTIONS = {"both": lib.FP_DIRECTION_ANY, "in": lib.FP_DIRECTION_IN, "out": lib.FP_DIRECTION_OUT}
TUNNELS = {"outer": lib.FP_TUNNELS_OUTER, "inner": lib.FP_TUNNELS_INNER,
           "both": lib.FP_TUNNELS_BOTH}
DISPATCH_BATCH = 65536
SAMPLING_ALGORITHMS = {"deterministic": lib.FP_SAMPLING_DETERMINISTIC,
                       "random": lib.FP_SAMPLING_RANDOM}
# the kernel hands a partly filled block of the capture ring over after this
LIVE_BLOCK_TIMEOUT_S = lib.FP_LIVE_BLOCK_TIMEOUT_MS / 1000


class MeterError(RuntimeError):
    pass


class CaptureError(MeterError):
    pass


def _error_buffer():
    return ffi.new("char[]", lib.FP_ERROR_SIZE)


def _c_settings(s):
    return ffi.new("struct fp_settings *", {
        "max_flows": s.max_flows,
        "max_flows_ipv6": 0 if s.max_flows_ipv6 == "auto" else s.max_flows_ipv6,
        "max_fragments": s.max_fragments,
        "idle_timeout_ms": round(s.idle_timeout * 1000),
        "active_timeout_ms": round(s.active_timeout * 1000),
        "unanswered_timeout_ms": round(s.unanswered_timeout * 1000),
        "tcp_end_grace_ms": round(s.tcp_end_grace * 1000),
        "fragment_timeout_ms": round(s.fragment_timeout * 1000),
        "overflow_policy": (lib.FP_OVERFLOW_REFUSE_NEW if s.overflow_policy == "refuse"
                            else lib.FP_OVERFLOW_EVICT_OLDEST),
        "bidirectional": int(s.bidirectional),
        "hash_seed": s.hash_seed,
        "macs": int(s.macs),
        "tunnels": TUNNELS[s.tunnels],
        "icmp_errors": int(s.icmp_errors),
        "l2_flows": int(s.l2_flows),
        "verify_checksums": int(s.verify_checksums),
    })


# link types (DLT_*) a filter is checked against, by the device's ARPHRD type
DLT_EN10MB, DLT_RAW, DLT_LINUX_SLL = 1, 12, 113
LINKTYPE_OF_ARPHRD = {65534: DLT_RAW, 512: DLT_LINUX_SLL}   # none (tun), ppp


def check_filter(bpf_filter, linktype=DLT_EN10MB, snaplen=65535):
    """Raises CaptureError if the filter does not compile for the link type."""
    error = _error_buffer()
    if lib.fp_check_filter(linktype, snaplen, bpf_filter.encode(), error) < 0:
        raise CaptureError(ffi.string(error).decode(errors="replace"))


def packets_ignored(counters):
    """Packets read but in no flow: every named drop reason (IPFIX
    ignoredPacketTotalCount)."""
    return sum(value for key, value in counters.items() if key.startswith("dropped_"))


def _flow_filter(address=None, prefix_length=None, protocol=0, port=0, ifindex=0):
    """The core's fp_flow_filter: the one place that decides what matches."""
    query = ffi.new("struct fp_flow_filter *")
    if address:
        import ipaddress  # for a query's filter: not at every start
        network = ipaddress.ip_network(address, strict=False)
        query.ip_version = network.version  # a /0 matches the family only
        query.prefix_length = network.prefixlen if prefix_length is None else prefix_length
        packed = network.network_address.packed
        ffi.memmove(query.address, packed, len(packed))
    query.protocol, query.port, query.ifindex = protocol, port, ifindex
    return query


class Meter:
    def __init__(self, settings=None):
        self.settings = settings or MeterSettings()
        c_settings = _c_settings(self.settings)
        error = _error_buffer()
        meter = lib.fp_meter_new(c_settings, error)
        if meter == ffi.NULL:
            raise MeterError(ffi.string(error).decode())
        self._meter = ffi.gc(meter, lib.fp_meter_free)
        self._batch = ffi.new("struct fp_record[]", DRAIN_BATCH)
        self._json_buffer = ffi.new("char[]", DRAIN_BATCH * 800)
        self._samples = None

    # ---- sources ----

    def open_file(self, path, ifindex=0, tunnels=None, l2_flows=None):
        error = _error_buffer()
        source = lib.fp_meter_open_offline(self._meter, str(path).encode(), ifindex, error)
        if source < 0:
            raise CaptureError(ffi.string(error).decode(errors="replace"))
        if tunnels is not None:
            self._set_tunnels_or_close(source, tunnels)
        if l2_flows is not None:
            self._set_l2_flows_or_close(source, l2_flows)
        return source

    def open_live(self, device, ifindex=0, snaplen=128, promiscuous=False,
                  buffer_bytes=0, bpf_filter="", direction="both", tunnels=None,
                  l2_flows=None):
        """A non-blocking capture on a device; direction "in" or "out" keeps
        one direction only, and the records say which."""
        error = _error_buffer()
        source = lib.fp_meter_open_live(self._meter, device.encode(), ifindex,
                                        DIRECTIONS[direction], snaplen, int(promiscuous),
                                        buffer_bytes, bpf_filter.encode(), error)
        if source < 0:
            raise CaptureError(ffi.string(error).decode(errors="replace"))
        if tunnels is not None:
            self._set_tunnels_or_close(source, tunnels)
        if l2_flows is not None:
            self._set_l2_flows_or_close(source, l2_flows)
        return source

    def _set_l2_flows_or_close(self, source, l2_flows):
        if lib.fp_meter_set_source_l2_flows(self._meter, source, int(l2_flows)) < 0:
            self.close(source)
            raise MeterError(f"l2_flows {l2_flows!r} for source {source}: on only for a meter "
                             "made with l2_flows")

    def _set_tunnels_or_close(self, source, tunnels):
        try:
            self.set_tunnels(source, tunnels)
        except MeterError:
            self.close(source)
            raise

    def set_tunnels(self, source, tunnels):
        """"outer": a tunnel's packets are metered as the tunnel; "inner": as
        the packets inside it; "both": as both, each in two flows (default:
        the settings' tunnels)."""
        if tunnels not in TUNNELS or lib.fp_meter_set_source_tunnels(
                self._meter, source, TUNNELS[tunnels]) < 0:
            raise MeterError(f"tunnels {tunnels!r} for source {source}: allowed: "
                             f"{', '.join(TUNNELS)}; inner and both on a meter made with "
                             "tunnels inner or both")

    def close(self, source):
        lib.fp_meter_close_source(self._meter, source)

    def seal(self, source):
        """A live source takes no new packet; what it took still comes within
        LIVE_BLOCK_TIMEOUT_S: read on until then before closing it."""
        error = _error_buffer()
        if lib.fp_meter_seal_source(self._meter, source, error) < 0:
            raise CaptureError(ffi.string(error).decode(errors="replace"))

    def set_filter(self, source, bpf_filter):
        """Swaps a live source's BPF filter in place: no packet lost or doubled."""
        error = _error_buffer()
        if lib.fp_meter_set_filter(self._meter, source, bpf_filter.encode(), error) < 0:
            raise CaptureError(ffi.string(error).decode(errors="replace"))

    def take_sources(self, other):
        """Moves the capture sources of another meter here, ids kept: a meter
        with new tables reads on from the same handles, without a gap."""
        error = _error_buffer()
        if lib.fp_meter_take_sources(self._meter, other._meter, error) < 0:
            raise MeterError(ffi.string(error).decode(errors="replace"))

    def fileno(self, source):
        return lib.fp_meter_source_fd(self._meter, source)

    def source_stats(self, source):
        stats = ffi.new("struct fp_source_stats *")
        if lib.fp_meter_source_stats(self._meter, source, stats) < 0:
            raise MeterError(f"no capture source {source}")
        return {name: getattr(stats, name) for name, _ in ffi.typeof(stats[0]).fields}

    def dispatch(self, source, max_packets=DISPATCH_BATCH):
        """Reads packets in C; returns how many (0: none waiting, or end of file)."""
        error = _error_buffer()
        count = lib.fp_meter_dispatch(self._meter, source, max_packets, error)
        if count < 0:
            raise CaptureError(ffi.string(error).decode(errors="replace"))
        return count

    def process_frame(self, frame, linktype, timestamp_us, ifindex=0, wire_length=None,
                      direction=0):
        """One frame handed in: for tests and fuzzing, not a data path.
        direction: as a capture of that direction alone (FP_DIRECTION_*)."""
        lib.fp_meter_process_frame_from(self._meter, linktype, ifindex, direction, timestamp_us,
                                        frame, len(frame), wire_length or len(frame))

    # ---- time and records ----

    def expire(self, now_ms):
        lib.fp_meter_expire(self._meter, now_ms)

    def flush(self):
        lib.fp_meter_flush(self._meter)

    @property
    def pending(self):
        """Records, and sampled headers, waiting to be drained."""
        return lib.fp_meter_pending(self._meter) + self.sample_ring_stats()["queued"]

    # ---- sampling (cmeter/sampling.c) ----

    def set_sampling(self, ifindex, rate, algorithm="random", seed=0):
        """1 in rate packets of an interface go on to be metered (and, with
        keep_samples, their headers to the ring); the others are counted."""
        error = _error_buffer()
        if lib.fp_meter_set_sampling(self._meter, ifindex, rate, SAMPLING_ALGORITHMS[algorithm],
                                     seed, error) < 0:
            raise MeterError(ffi.string(error).decode())

    def sampling_stats(self):
        """{ifindex: {rate, algorithm, pool, sampled}} of every sampler."""
        out = ffi.new("struct fp_sampling_stats[]", 256)
        n = lib.fp_meter_sampling_stats(self._meter, out, 256)
        names = {v: k for k, v in SAMPLING_ALGORITHMS.items()}
        return {out[i].ifindex: {"rate": out[i].rate, "algorithm": names[out[i].algorithm],
                                 "pool": out[i].pool, "sampled": out[i].sampled,
                                 "samples_lost": out[i].samples_lost}
                for i in range(n)}

    def keep_samples(self, capacity):
        """A ring of capacity sampled headers (0: none); what a smaller ring
        cannot hold counts as overflow: drain first."""
        error = _error_buffer()
        if lib.fp_meter_keep_samples(self._meter, capacity, error) < 0:
            raise MeterError(ffi.string(error).decode())

    def drain_samples_raw(self):
        """Yields batches of struct fp_packet_sample (valid until the next)."""
        if self._samples is None:
            self._samples = ffi.new("struct fp_packet_sample[]", DRAIN_BATCH)
        while True:
            n = lib.fp_meter_drain_samples(self._meter, self._samples, DRAIN_BATCH)
            if n == 0:
                return
            yield self._samples, n

    def sample_ring_stats(self):
        stats = ffi.new("struct fp_sample_ring_stats *")
        lib.fp_meter_sample_ring_stats(self._meter, stats)
        return {name: getattr(stats, name) for name, _ in ffi.typeof(stats[0]).fields}

    def drain_raw(self):
        """Yields batches of struct fp_record cdata (valid until the next batch)."""
        while True:
            n = lib.fp_meter_drain(self._meter, self._batch, DRAIN_BATCH)
            if n == 0:
                return
            yield self._batch, n

    def drain(self):
        """Every waiting record, as dicts."""
        bidirectional = self.settings.bidirectional
        return [record_to_dict(batch[i], bidirectional)
                for batch, n in self.drain_raw() for i in range(n)]

    def format_json(self, batch, count, write):
        """A drained batch as JSON lines, formatted in C, passed to write()
        (the buffer is reused: write must copy)."""
        text = self._json_buffer
        length = lib.fp_records_format_json(batch, count, int(self.settings.bidirectional),
                                            text, len(text))
        write(ffi.buffer(text, length))

    def drain_json(self, write):
        """Every waiting record as JSON lines, written a batch at a time."""
        for batch, count in self.drain_raw():
            self.format_json(batch, count, write)

    def read_file(self, path, ifindex=0, drain=None):
        """Meters a whole capture file; yields what `drain` (default: drain)
        returns each time records expired. The caller flushes (and drains)
        when every input is read."""
        drain = drain or self.drain
        source = self.open_file(path, ifindex)
        try:
            while True:
                yield drain()  # dispatch reads nothing while records wait
                if self.dispatch(source) == 0:
                    return
        finally:
            self.close(source)

    def snapshot(self, **query):
        """The active flows matching query (the keywords of expire_matching;
        none: all), as record dicts (end_reason "0"), without touching them."""
        flow_filter = _flow_filter(**query)
        cursor = ffi.new("uint32_t *", 0)
        flows = []
        bidirectional = self.settings.bidirectional
        while True:
            n = lib.fp_meter_snapshot(self._meter, flow_filter, self._batch, DRAIN_BATCH, cursor)
            if n == 0:
                return flows
            flows += [record_to_dict(self._batch[i], bidirectional) for i in range(n)]

    def top(self, sort="bytes", limit=100, **query):
        """(the `limit` flows that rank first by sort, as record dicts; how
        many matched in all). Selected in C over the table: the cost does not
        grow with the flows beyond the limit, in time or memory."""
        order = {"bytes": lib.FP_SORT_OCTETS, "packets": lib.FP_SORT_PACKETS,
                 "age": lib.FP_SORT_AGE}[sort]
        out = ffi.new("struct fp_record[]", max(limit, 1))
        matched = ffi.new("uint64_t *")
        n = lib.fp_meter_top(self._meter, _flow_filter(**query), order, out, limit, matched)
        bidirectional = self.settings.bidirectional
        return [record_to_dict(out[i], bidirectional) for i in range(n)], matched[0]

    def expire_matching(self, **query):
        """Ends the matching active flows now (forced_end); returns how many.
        address: an IP address or network ("192.0.2.0/24") matching either end;
        protocol, port (either end), ifindex: 0 or absent matches all."""
        return lib.fp_meter_expire_matching(self._meter, _flow_filter(**query))

    def update_settings(self, settings):
        """New timeouts and policy without losing the table. False when the
        new settings need new tables (capacities, bidirectional)."""
        c_settings = _c_settings(settings)
        error = _error_buffer()
        if lib.fp_meter_update_settings(self._meter, c_settings, error) < 0:
            return False
        self.settings = settings
        return True

    def counters(self):
        counters = ffi.new("struct fp_counters *")
        lib.fp_meter_counters(self._meter, counters)
        return {name: getattr(counters, name) for name, _ in ffi.typeof(counters[0]).fields}

    @property
    def memory_bytes(self):
        return lib.fp_meter_memory_bytes(self._meter)

    @property
    def resident_bytes(self):
        """Of memory_bytes, what is in memory now (the table's pages are
        written only as flows use them)."""
        return lib.fp_meter_resident_bytes(self._meter)
