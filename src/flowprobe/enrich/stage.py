"""The enrichment stage: between the meter (and the conntrack source) and
the sinks, it fills in what the router knows about each record, a batch at
a time: the egress interface and next hop the FIB chose (routes.py), the
AS numbers and prefix lengths of its addresses (prefixes.py).  It
also keeps the device table (devices.py) that the control's flow list and
other stages ask which device an address is.

The route is the FIB's answer when the record leaves the meter; a record
of a flow that ended before the latest route change gets the answer from
before it where one was asked then (else today's, counted in
records_routed_after_change: its packets may have taken the old route).
Records are routed in C (cmeter/route_cache.c), and the routes the
table does not know yet are asked of the kernel in C too
(cmeter/route_lookup.c): Python only calls it once a batch.

A record whose route is not known yet is held, with its batch, until the
answer comes or `route_wait` has passed (checked whenever answers arrive
and at every tick of the loop), then it leaves with egress 0 and no next
hop, counted in records_without_route.  Held records are bounded
(MAX_HELD_RECORDS); beyond that a batch leaves at once the same way.
Nothing is lost: every record reaches the sinks.
"""

import logging
import selectors
from collections import deque

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.enrich.devices import DeviceTable

log = logging.getLogger("flowprobe")

RECORD_SIZE = ffi.sizeof("struct fp_record")
KEY_SIZE = ffi.sizeof("struct fp_route_key")
# at most this many rounds of asking and reading within one delivery: the
# kernel answers as it is asked, so rounds only follow a full socket queue
MAX_ROUNDS = 8
MAX_HELD_RECORDS = 16384   # 16 of the meter's batches: 4 MB of 256-byte records


class _Held:
    __slots__ = ("records", "count", "missing", "unknown", "deadline_ms")

    def __init__(self, records, count, missing, unknown, deadline_ms):
        self.records, self.count, self.missing = records, count, missing
        self.unknown, self.deadline_ms = unknown, deadline_ms


class Enrichment:
    def __init__(self, settings, deliver, clock, routes=None, devices=None):
        """deliver(batch, count, now_ms): the sinks; clock(): now in ms.
        routes (a RouteTable) and devices (a DeviceTable): made from the
        settings unless given; None when the settings leave them off."""
        self.settings = settings
        self.clock = clock
        self.deliver_onward = deliver
        if routes is None and settings.routing:
            routes = _route_table(settings.route_cache)
        self.routes = routes
        if devices is None and settings.devices:
            try:
                devices = device_table(settings)
            except OSError:
                if routes:
                    routes.close()
                raise
        self.devices = devices
        self.prefixes = _prefix_table(settings)
        self.held = deque()
        self.held_records = 0
        self._missing = ffi.new("int[]", 1024)
        self._keys = ffi.new("struct fp_route_key[]", 2048)   # forward and reverse
        self._key_count = ffi.new("int *")
        self.counters = dict(records_enriched=0, records_without_route=0,
                             records_held=0, batches_not_held=0,
                             records_with_neighbour_macs=0)

    # ---- records in ----

    def deliver(self, batch, count, now_ms):
        if self.settings.macs and self.devices and count and batch[0].nat:
            self._conntrack_macs(batch, count)
        if self.prefixes:
            self.prefixes.apply(batch, count)
        if not self.routes:
            self.deliver_onward(batch, count, now_ms)
            return
        if count <= 0:
            return
        if count > len(self._missing):
            self._missing = ffi.new("int[]", count)
            self._keys = ffi.new("struct fp_route_key[]", 2 * count)
        unknown = self._route(batch, ffi.NULL, count, self._missing)
        if not unknown:
            self._onward(batch, count, 0, now_ms)
            return
        if self.held_records + count > MAX_HELD_RECORDS:
            self.counters["batches_not_held"] += 1
            self._onward(batch, count, unknown, now_ms)
            return
        copy = ffi.new("struct fp_record[]", count)   # the meter reuses its batch
        ffi.memmove(copy, batch, RECORD_SIZE * count)
        missing = ffi.new("int[]", unknown)
        ffi.memmove(missing, self._missing, ffi.sizeof("int") * unknown)
        self.held.append(_Held(copy, count, missing, unknown,
                               now_ms + round(self.settings.route_wait * 1000)))
        self.held_records += count
        self.counters["records_held"] += count

    # each direction's addresses, and where the neighbour table's MAC for them goes
    NEIGHBOUR_MACS = (("src_addr", "src_mac"), ("dst_addr", "dst_mac"),
                      ("post_dst_addr", "reverse_src_mac"), ("post_src_addr", "reverse_dst_mac"))

    def _conntrack_macs(self, batch, count):
        """Conntrack sees no frames: its records get the MACs the neighbour
        table has for their addresses (a record per connection; capture's
        batches, whose MACs come from frames, never pass here)."""
        neighbours = self.devices.neighbours
        for r in batch[0:count]:
            for address, mac_field in self.NEIGHBOUR_MACS:
                mac = neighbours.get(bytes(ffi.buffer(getattr(r, address))))
                if mac:
                    ffi.memmove(getattr(r, mac_field), mac, 6)
        self.counters["records_with_neighbour_macs"] += count

    def _route(self, records, indices, count, missing, ask=True):
        """Routes the records (indices: NULL, the first count) in C; asks the
        kernel for what is not known (a few rounds, while it answers);
        returns how many are still unknown, their indices in missing."""
        routes = self.routes
        unknown = lib.fp_records_route(routes.cache, records, indices, count,
                                       routes.by_source, missing, self._keys, self._key_count)
        ask_keys = getattr(routes, "ask_keys", None)   # else a table asked key by key
        for _ in range(MAX_ROUNDS if ask else 0):
            if not unknown:
                break
            if ask_keys:   # in C: sent, answered and put in the table
                asked = ask_keys(self._keys, self._key_count[0]) > 0
            else:
                keys = ffi.buffer(self._keys, KEY_SIZE * self._key_count[0])
                asked = False
                for n in range(0, len(keys), KEY_SIZE):
                    asked |= routes.ask(keys[n:n + KEY_SIZE])
                routes.read_answers()
            still = lib.fp_records_route(routes.cache, records, missing, unknown,
                                         routes.by_source, missing, self._keys, self._key_count)
            if still == unknown and not asked:
                break
            unknown = still
        return unknown

    def _onward(self, records, count, unresolved, now_ms):
        self.counters["records_enriched"] += count - unresolved
        self.counters["records_without_route"] += unresolved
        self.deliver_onward(records, count, now_ms)

    # ---- held records out ----

    def release(self, now_ms, everything=False):
        """Held batches whose routes are all known, or whose wait is over
        (everything: all of them, at a stop), go on."""
        self.routes.read_answers()
        kept = deque()
        for held in self.held:
            over = everything or now_ms >= held.deadline_ms
            held.unknown = self._route(held.records, held.missing, held.unknown, held.missing,
                                       ask=not over)
            if not held.unknown or over:
                self.held_records -= held.count
                self._onward(held.records, held.count, held.unknown, now_ms)
            else:
                kept.append(held)
        self.held = kept

    # ---- the loop ----

    def watched(self):
        """(fd, events, callback) of the stage's sockets, for the loop's selector."""
        def answers(events):
            self.routes.read_answers()
            if self.held:
                self.release(self.clock())

        watched = self.devices.watched() if self.devices else []
        if self.routes:
            watched += [(self.routes.lookups.fileno(), selectors.EVENT_READ, answers),
                        (self.routes.changes.fileno(), selectors.EVENT_READ,
                         lambda events: self.routes.read_changes())]
        return watched

    def tick(self, now_ms):
        if self.routes:
            self.routes.read_changes()
            if self.held:
                self.release(now_ms)
        if self.devices:
            self.devices.refresh()
        if self.prefixes:
            self.prefixes.refresh()

    def finish(self, now_ms):
        if self.routes:
            self.release(now_ms, everything=True)

    def stats(self):
        stats = dict(self.counters, records_held_now=self.held_records)
        if self.routes:
            stats.update(self.routes.stats())
        if self.devices:
            stats.update(self.devices.stats())
        if self.prefixes:
            stats.update(self.prefixes.stats())
        return stats

    def close(self):
        for table in (self.routes, self.devices):
            if table:
                table.close()



def _route_table(capacity):
    from flowprobe.enrich.routes import RouteTable  # only with option routing: not kept otherwise
    return RouteTable(capacity)


def _prefix_table(settings):
    """The prefix_file's table, None without one (prefixes.py imported only then)."""
    if not settings.prefix_file:
        return None
    from flowprobe.enrich.prefixes import PrefixTable
    return PrefixTable(settings.prefix_file, settings.max_prefixes)

def device_table(settings):
    return DeviceTable(lease_file=settings.lease_file,
                       odhcpd_lease_file=settings.dhcpv6_lease_file)


def apply(current, settings, deliver, clock):
    """The stage a config asks for (None: records go straight to the sinks):
    the running one's tables where their settings did not change, new ones
    where they did (the old one's held records delivered first).  A table
    that cannot open its socket is logged, and records go on without it."""
    if current is None or not settings.active:
        if current:
            current.finish(clock())
            current.close()
        return _new(settings, deliver, clock) if settings.active else None
    old = current.settings
    if (old.routing, old.route_cache) != (settings.routing, settings.route_cache):
        current.finish(clock())   # what waits for its route leaves with the old table
        if current.routes:
            current.routes.close()
        current.routes = _table(lambda: _route_table(settings.route_cache), settings.routing)
    if (old.devices, old.lease_file, old.dhcpv6_lease_file) != (
            settings.devices, settings.lease_file, settings.dhcpv6_lease_file):
        if current.devices:
            current.devices.close()
        current.devices = _table(lambda: device_table(settings), settings.devices)
    if (old.prefix_file, old.max_prefixes) != (settings.prefix_file, settings.max_prefixes):
        current.prefixes = _prefix_table(settings)
    current.settings = settings
    return current


def _new(settings, deliver, clock):
    try:
        return Enrichment(settings, deliver, clock)
    except OSError as e:
        log.error("enrichment off: cannot open a netlink socket: %s", e)
        return None


def _table(make, wanted):
    if not wanted:
        return None
    try:
        return make()
    except OSError as e:
        log.error("enrichment: cannot open a netlink socket: %s", e)
        return None
