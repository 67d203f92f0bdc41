"""Where the kernel sends a flow: its egress interface and next hop, asked
of the FIB itself (RTM_GETROUTE, as `ip route get` does) and kept in a
bounded table until a route or a rule changes.

Lookups never wait: ask() sends a request on a non-blocking socket and
answers are read when they are there (the kernel usually answers within
the sending call; the loop's selector watches the socket for the rest).

What a lookup is keyed by follows the kernel's rules: while every policy
rule selects by destination only (the usual local/main/default rules), the
route depends on the destination alone and one lookup serves every flow to
it; once a rule selects by source, incoming interface or mark (pbr, mwan3),
a lookup carries the flow's source and ingress interface (a forwarding
lookup, as the packet took) or the conntrack mark.  Rules that select by
port or protocol are not followed (the lookup carries no ports).
"""

import logging
import socket
import struct
import time
from collections import namedtuple

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.enrich import netlink as nl

log = logging.getLogger("flowprobe")

RTM_GETRULE = 34
FRA_IIFNAME, FRA_FWMARK, FRA_OIFNAME, FRA_L3MDEV, FRA_UID_RANGE = 3, 10, 17, 19, 20
# what makes a rule select by more than the destination (FRA_UID_RANGE only
# matters to the router's own sockets, which lookups here never stand for)
POLICY_SELECTORS = (FRA_IIFNAME, FRA_FWMARK, FRA_OIFNAME, FRA_L3MDEV)

KEY = struct.Struct("=16s16sIIB3x")   # struct fp_route_key
# an answer: the egress ifindex (0: none: local, unreachable, refused) and
# the gateway (b"": directly connected or none)
Route = namedtuple("Route", "egress next_hop")
NO_ROUTE = Route(0, b"")


def as_key(key):
    """Bytes of a key as the C table takes it."""
    return ffi.from_buffer("struct fp_route_key *", key)


class RouteTable:
    """The FIB's answers in a bounded table in C (cmeter/route_cache.c),
    with the requests in flight; a route or rule change starts a new
    generation of answers."""

    def __init__(self, capacity=4096, max_in_flight=512):
        self.max_in_flight = max_in_flight
        cache = lib.fp_route_cache_new(capacity)
        if cache == ffi.NULL:
            raise MemoryError("no memory for the route table")
        self.cache = ffi.gc(cache, lib.fp_route_cache_free)
        self.lookups = nl.NetlinkSocket(receive_buffer=1 << 20)
        try:
            self.changes = nl.NetlinkSocket(groups=(
                nl.RTNLGRP_IPV4_ROUTE, nl.RTNLGRP_IPV6_ROUTE, nl.RTNLGRP_IPV4_RULE,
                nl.RTNLGRP_IPV6_RULE), receive_buffer=256 << 10)
        except OSError:
            self.lookups.close()
            raise
        self.asked = {}           # sequence -> key
        self.in_flight = {}       # key -> sequence
        self.by_source = True     # until the rules are known: the full key
        self._rules_sequence = None
        self._rules_by_source = False
        self.counters = dict(route_lookups=0, route_answers=0, route_failures=0,
                             route_overruns=0, route_requests_refused=0)
        self._ask_rules()

    # ---- keys ----

    def key(self, ip_version, destination, source, ingress, mark):
        """The lookup a flow needs, as the C table keys it (for tests; the
        stage has C make them from records)."""
        size = 4 if ip_version == 4 else 16
        if not self.by_source:
            return KEY.pack(destination[:size], b"", 0, 0, ip_version)
        return KEY.pack(destination[:size], source[:size] if ingress else b"", ingress, mark,
                        ip_version)

    def get(self, key):
        """The current answer for a key, or None."""
        egress, next_hop = ffi.new("uint32_t *"), ffi.new("uint8_t[16]")
        length = lib.fp_route_cache_get(self.cache, as_key(key), egress, next_hop)
        if length < 0:
            return None
        return Route(egress[0], bytes(next_hop[0:length]))

    # ---- asking ----

    def ask(self, key):
        """Sends the lookup for key (bytes of a struct fp_route_key) unless
        it is in flight; False when it cannot go now (too many in flight,
        or the kernel's queue is full)."""
        if key in self.in_flight:
            return True
        if len(self.in_flight) >= self.max_in_flight:
            self.read_answers()   # the kernel answers as it is asked: room again
        if len(self.in_flight) >= self.max_in_flight:
            self.counters["route_requests_refused"] += 1
            return False
        destination, source, ingress, mark, version = KEY.unpack(key)
        sequence = self.lookups.send(nl.RTM_GETROUTE, 0, nl.route_request(
            nl.FAMILIES[version], destination, source if ingress else None, ingress, mark))
        if sequence is None:
            self.counters["route_requests_refused"] += 1
            return False
        self.counters["route_lookups"] += 1
        self.asked[sequence] = key
        self.in_flight[key] = sequence
        return True

    def read_answers(self):
        """Answers waiting now, into the table; returns how many."""
        try:
            messages = self.lookups.receive()
        except nl.Overrun:   # answers lost: ask again what is still wanted
            self.counters["route_overruns"] += 1
            self.asked.clear()
            self.in_flight.clear()
            return 0
        answered = 0
        for message in messages:
            if message.sequence == self._rules_sequence:
                self._rules_answer(message)
                continue
            key = self.asked.pop(message.sequence, None)
            if key is None:
                continue
            del self.in_flight[key]
            answered += 1
            route = NO_ROUTE
            if message.type == nl.RTM_NEWROUTE:
                self.counters["route_answers"] += 1
                kind, oif, gateway = nl.parse_route(message.payload)
                if kind == nl.RTN_UNICAST:   # not local, unreachable, prohibit, blackhole
                    route = Route(oif, gateway)
            else:   # NLMSG_ERROR: no route, or a martian or rp_filter'd source
                self.counters["route_failures"] += 1
            lib.fp_route_cache_put(self.cache, as_key(key), route.egress,
                                   route.next_hop, len(route.next_hop))
        return answered

    # ---- changes ----

    def read_changes(self):
        """Route and rule notifications: any of them starts a new generation."""
        changed = False
        try:
            messages = self.changes.receive()
            changed = bool(messages)
            if any(m.type in (nl.RTM_NEWRULE, nl.RTM_DELRULE) for m in messages):
                self._ask_rules()
        except nl.Overrun:
            self.counters["route_overruns"] += 1
            changed = True
            self._ask_rules()
        if changed:
            self.invalidate()
        return changed

    def invalidate(self):
        lib.fp_route_cache_changed(self.cache, int(time.time() * 1000))
        # answers to requests sent before the change may be stale: asked again
        self.asked.clear()
        self.in_flight.clear()

    def _ask_rules(self):
        self._rules_by_source = False
        self._rules_sequence = self.lookups.send(
            RTM_GETRULE, nl.NLM_F_DUMP, nl.RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0))

    def _rules_answer(self, message):
        if message.type == nl.RTM_NEWRULE:
            _, _, source_length, tos, _, _, _, _, _ = nl.RTMSG.unpack_from(message.payload)
            found = nl.attributes(message.payload, nl.RTMSG.size)
            if source_length or tos or any(kind in found for kind in POLICY_SELECTORS):
                self._rules_by_source = True
        elif message.type in (nl.NLMSG_DONE, nl.NLMSG_ERROR):
            self._rules_sequence = None
            if self._rules_by_source != self.by_source:
                log.info("routing lookups by %s", "source, ingress and mark"
                         if self._rules_by_source else "destination only")
                self.by_source = self._rules_by_source
                self.invalidate()

    def stats(self):
        counters = ffi.new("struct fp_route_cache_counters *")
        lib.fp_route_cache_counters(self.cache, counters)
        return dict(self.counters, routes_cached=counters.entries,
                    route_cache_capacity=counters.capacity,
                    route_evictions=counters.evictions, route_changes=counters.changes,
                    records_routed=counters.hits,
                    records_routed_before_change=counters.hits_previous,
                    records_routed_after_change=counters.routed_after_change,
                    route_lookups_in_flight=len(self.in_flight),
                    routes_by_source=self.by_source)

    def close(self):
        self.lookups.close()
        self.changes.close()
