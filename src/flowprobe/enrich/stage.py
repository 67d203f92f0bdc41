"""The enrichment stage: between the meter (and the conntrack source) and
the sinks, it fills in what the router knows about each record, a batch at
a time: the egress interface and next hop the FIB chose (routes.py).  It
also keeps the device table (devices.py) that the control's flow list and
other stages ask which device an address is.

The route is the FIB's answer when the record leaves the meter; a record
of a flow that ended before the latest route change gets the answer from
before it where one was asked then (else today's, counted in
records_routed_after_change: its packets may have taken the old route).

A record whose route is not known yet is held, with its batch, until the
answer comes or `route_wait` has passed (checked whenever answers arrive
and at every tick of the loop), then it leaves with egress 0 and no next
hop, counted in records_without_route.  Held records are bounded
(MAX_HELD_RECORDS); beyond that a batch leaves at once the same way.
Nothing is lost: every record reaches the sinks.
"""

import logging
import selectors
import struct
from collections import deque

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.enrich.devices import DeviceTable
from flowprobe.enrich.routes import RouteTable

log = logging.getLogger("flowprobe")

RECORD_SIZE = ffi.sizeof("struct fp_record")
_OFFSET = {name: ffi.offsetof("struct fp_record", name) for name in (
    "src_addr", "dst_addr", "ifindex", "ip_version", "direction", "conntrack_mark", "flow_end_ms",
    "egress_ifindex", "next_hop")}
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
# at most this many rounds of asking and reading within one delivery: the
# kernel answers as it is asked, so rounds only follow a full socket queue
MAX_ROUNDS = 8
MAX_HELD_RECORDS = 16384   # 16 of the meter's batches, ~4 MB


class _Held:
    __slots__ = ("records", "count", "missing", "deadline_ms")

    def __init__(self, records, count, missing, deadline_ms):
        self.records, self.count, self.missing = records, count, missing
        self.deadline_ms = deadline_ms


class Enrichment:
    def __init__(self, settings, deliver, clock, routes=None, devices=None):
        """deliver(batch, count, now_ms): the sinks; clock(): now in ms.
        routes (a RouteTable) and devices (a DeviceTable): made from the
        settings unless given; None when the settings leave them off."""
        self.settings = settings
        self.clock = clock
        self.deliver_onward = deliver
        if routes is None and settings.routing:
            routes = RouteTable(settings.route_cache)
        self.routes = routes
        if devices is None and settings.devices:
            try:
                devices = device_table(settings)
            except OSError:
                if routes:
                    routes.close()
                raise
        self.devices = devices
        self.held = deque()
        self.held_records = 0
        self.counters = dict(records_enriched=0, records_without_route=0,
                             records_held=0, batches_not_held=0,
                             records_routed_after_change=0)

    # ---- records in ----

    def deliver(self, batch, count, now_ms):
        if not self.routes:
            self.deliver_onward(batch, count, now_ms)
            return
        if count <= 0:
            return
        view = ffi.buffer(batch, RECORD_SIZE * count)
        keys = [self._key(view, i) for i in range(count)]
        missing = self._fill(view, keys, range(count))
        for _ in range(MAX_ROUNDS):
            if not missing:
                break
            asked = [self.routes.ask(keys[i]) for i in missing]
            self.routes.read_answers()
            still = self._fill(view, keys, missing)
            if len(still) == len(missing) and not any(asked):
                break
            missing = still
        if not missing:
            self._onward(batch, count, 0, now_ms)
            return
        if self.held_records + count > MAX_HELD_RECORDS:
            self.counters["batches_not_held"] += 1
            self._onward(batch, count, len(missing), now_ms)
            return
        copy = ffi.new("struct fp_record[]", count)   # the meter reuses its batch
        ffi.memmove(copy, batch, RECORD_SIZE * count)
        self.held.append(_Held(copy, count, [(i, keys[i]) for i in missing],
                               now_ms + round(self.settings.route_wait * 1000)))
        self.held_records += count
        self.counters["records_held"] += count

    def _key(self, view, i):
        base = i * RECORD_SIZE
        version = view[base + _OFFSET["ip_version"]][0]
        destination = view[base + _OFFSET["dst_addr"]:base + _OFFSET["dst_addr"] + 16]
        direction = view[base + _OFFSET["direction"]][0]
        if direction == lib.FP_DIRECTION_IN:
            # a forwarding lookup, as the packet arrived
            ingress = U32.unpack_from(view, base + _OFFSET["ifindex"])[0]
            source = view[base + _OFFSET["src_addr"]:base + _OFFSET["src_addr"] + 16]
            return self.routes.key(version, destination, source, ingress, 0)
        # conntrack: the mark that policy rules (mwan3, pbr) route by
        mark = U32.unpack_from(view, base + _OFFSET["conntrack_mark"])[0]
        return self.routes.key(version, destination, b"", 0, mark)

    def _fill(self, view, keys, indices):
        """Writes the known routes; returns the indices still unknown."""
        missing = []
        for i in indices:
            route = self._route(view, i, keys[i])
            if route is None:
                missing.append(i)
            else:
                self._write(view, i, route)
        return missing

    def _route(self, view, i, key):
        """The route for record i: of before the latest change for a flow
        that ended before it, when it was asked then; else today's."""
        route = self.routes.get(key)
        changed_ms = self.routes.changed_ms
        if changed_ms and U64.unpack_from(view, i * RECORD_SIZE
                                          + _OFFSET["flow_end_ms"])[0] < changed_ms:
            before = self.routes.previous.get(key)
            if before is not None:
                return before
            if route is not None:   # its packets may have taken the old route
                self.counters["records_routed_after_change"] += 1
        return route

    @staticmethod
    def _write(view, i, route):
        base = i * RECORD_SIZE
        if view[base + _OFFSET["direction"]][0] != lib.FP_DIRECTION_OUT:
            U32.pack_into(view, base + _OFFSET["egress_ifindex"], route.egress)
        else:   # captured leaving: the capture's interface is the egress
            U32.pack_into(view, base + _OFFSET["egress_ifindex"],
                          U32.unpack_from(view, base + _OFFSET["ifindex"])[0])
        size = 4 if view[base + _OFFSET["ip_version"]][0] == 4 else 16
        if len(route.next_hop) == size:   # an IPv6 next hop of an IPv4 route has no field
            start = base + _OFFSET["next_hop"]
            view[start:start + size] = route.next_hop

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
            view = ffi.buffer(held.records, RECORD_SIZE * held.count)
            still = []
            for i, key in held.missing:
                route = self._route(view, i, key)
                if route is None:
                    still.append((i, key))
                    if not (everything or now_ms >= held.deadline_ms):
                        self.routes.ask(key)   # again, after an invalidation or a full queue
                else:
                    self._write(view, i, route)
            held.missing = still
            if not still or everything or now_ms >= held.deadline_ms:
                self.held_records -= held.count
                self._onward(held.records, held.count, len(still), now_ms)
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

    def finish(self, now_ms):
        if self.routes:
            self.release(now_ms, everything=True)

    def stats(self):
        stats = dict(self.counters, records_held_now=self.held_records)
        if self.routes:
            stats.update(self.routes.stats())
        if self.devices:
            stats.update(self.devices.stats())
        return stats

    def close(self):
        for table in (self.routes, self.devices):
            if table:
                table.close()


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
    current.finish(clock())
    if (old.routing, old.route_cache) != (settings.routing, settings.route_cache):
        if current.routes:
            current.routes.close()
        current.routes = _table(lambda: RouteTable(settings.route_cache), settings.routing)
    if (old.devices, old.lease_file, old.dhcpv6_lease_file) != (
            settings.devices, settings.lease_file, settings.dhcpv6_lease_file):
        if current.devices:
            current.devices.close()
        current.devices = _table(lambda: device_table(settings), settings.devices)
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
