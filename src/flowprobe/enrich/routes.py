"""Where the kernel sends a flow: its egress interface and next hop, asked
of the FIB itself (RTM_GETROUTE, as `ip route get` does) and kept in a
bounded table until a route or a rule changes.

Lookups never wait, and cost no Python per key: C (cmeter/route_lookup.c)
sends a batch's unknown keys, many requests to a datagram, on a
non-blocking socket and parses the answers into the table as they come
(the kernel usually answers within the sending call; the loop's selector
watches the socket for the rest).  The kernel answers every key itself,
rather than a copy of its tables: policy rules, IPv6 source-specific
routes (netifd's), metrics, ECMP's hash (the path it picks for that
lookup), dead or link-down next hops all stay its to decide.

What a lookup is keyed by follows the kernel's rules: while every policy
rule selects by destination only (the usual local/main/default rules), the
route depends on the destination alone and one lookup serves every flow to
it; once a rule selects by source, incoming interface or mark (pbr, mwan3),
a lookup carries the flow's source and ingress interface (a forwarding
lookup, as the packet took) or the conntrack mark.  Rules that select by
port or protocol are not followed (the lookup carries no ports).  IPv6
routes can select by source themselves (`default from 2001:db8::/48 via
...`: netifd installs IPv6 defaults that way): while one exists, IPv6
lookups carry the source too (conntrack's by an output lookup from it, and
the way back from the flow's destination), else the kernel answers
"unreachable" for every IPv6 destination.
"""

import logging
import os
import struct
import time
from collections import namedtuple

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.enrich import netlink as nl

log = logging.getLogger("flowprobe")

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
    asked by C (cmeter/route_lookup.c, at most max_in_flight unanswered);
    a route or rule change starts a new generation of answers."""

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
        asking = lib.fp_route_lookups_new(self.lookups.fileno(), max_in_flight)
        if asking == ffi.NULL:
            self.close()
            raise MemoryError("no memory for the route lookups")
        self.asking = ffi.gc(asking, lib.fp_route_lookups_free)
        self._counters = ffi.new("struct fp_route_lookups_counters *")
        self.by_source = True     # until the rules are known: the full key
        self.ipv6_by_source = False   # source-specific IPv6 routes (forced by by_source)
        self.change_overruns = 0
        self._ask_rules()

    # ---- keys ----

    def key(self, ip_version, destination, source, ingress, mark):
        """The lookup a flow needs, as the C table keys it (for tests; the
        stage has C make them from records)."""
        size = 4 if ip_version == 4 else 16
        if not (self.by_source or ip_version == 6 and self.ipv6_by_source):
            return KEY.pack(destination[:size], b"", 0, 0, ip_version)
        # an IPv4 lookup from a source not the router's own must be a forwarding one
        with_source = ingress or ip_version == 6
        return KEY.pack(destination[:size], source[:size] if with_source else b"", ingress,
                        mark, ip_version)

    def get(self, key):
        """The current answer for a key, or None."""
        egress, next_hop = ffi.new("uint32_t *"), ffi.new("uint8_t[16]")
        length = lib.fp_route_cache_get(self.cache, as_key(key), egress, next_hop)
        if length < 0:
            return None
        return Route(egress[0], bytes(next_hop[0:length]))

    # ---- asking ----

    def ask(self, key):
        """Sends the lookup for one key (bytes of a struct fp_route_key)
        unless it is in flight or known; False when it cannot go now (too
        many in flight, or the kernel's queue is full).  Answers are read by
        read_answers()."""
        refused = self.counters["route_requests_refused"]
        self._checked(lib.fp_route_lookups_ask(self.asking, self.cache, as_key(key), 1, 0))
        return self.counters["route_requests_refused"] == refused

    def ask_keys(self, keys, count):
        """Asks for keys[0..count) (a struct fp_route_key array), reading the
        answers into the table as the kernel gives them; returns how many
        were sent."""
        sent = self._checked(lib.fp_route_lookups_ask(self.asking, self.cache, keys, count, 1))
        self._rules_answered()
        return sent

    def read_answers(self):
        """Answers waiting now, into the table; returns how many."""
        answered = lib.fp_route_lookups_read(self.asking, self.cache)
        self._rules_answered()
        return answered

    @staticmethod
    def _checked(result):
        if result < 0:
            raise OSError(-result, os.strerror(-result))
        return result

    @property
    def in_flight(self):
        """Sized as the lookups asked and not answered."""
        return range(self.counters["route_lookups_in_flight"])

    @property
    def counters(self):
        counters = self._counters
        lib.fp_route_lookups_counters(self.asking, counters)
        return dict(route_lookups=counters.lookups, route_answers=counters.answers,
                    route_failures=counters.failures,
                    route_overruns=counters.overruns + self.change_overruns,
                    route_requests_refused=counters.refused,
                    route_lookups_in_flight=counters.in_flight)

    # ---- changes ----

    def read_changes(self):
        """Route and rule notifications: any of them starts a new generation."""
        changed = False
        try:
            messages = self.changes.receive()
            changed = bool(messages)
            # a rule, or a source-specific route (rtm_src_len): what keys carry may change
            if any(m.type in (nl.RTM_NEWRULE, nl.RTM_DELRULE) or (
                    m.type in (nl.RTM_NEWROUTE, nl.RTM_DELROUTE) and m.payload[2])
                   for m in messages):
                self._ask_rules()
        except nl.Overrun:
            self.change_overruns += 1
            changed = True
            self._ask_rules()
        if changed:
            self.invalidate()
        return changed

    def invalidate(self):
        lib.fp_route_cache_changed(self.cache, int(time.time() * 1000))
        # answers to requests sent before the change may be stale: asked again
        lib.fp_route_lookups_forget(self.asking)

    def _ask_rules(self):
        self._checked(lib.fp_route_lookups_ask_rules(self.asking))

    @property
    def _rules_sequence(self):
        """Nonzero while the dumps of the rules and the IPv6 routes are asked
        and not all answered, else None."""
        return lib.fp_route_lookups_rules_sequence(self.asking) or None

    def _rules_answered(self):
        """Once the dumps of the rules and the IPv6 routes are answered (in
        C): whether lookups carry the source, ingress and mark."""
        answer = lib.fp_route_lookups_rules(self.asking)
        if answer < 0:
            return
        by_source = bool(answer & lib.FP_ROUTES_BY_RULES)
        ipv6_by_source = bool(answer & lib.FP_ROUTES_IPV6_BY_SOURCE)
        if (by_source, ipv6_by_source) != (self.by_source, self.ipv6_by_source):
            log.info("routing lookups by %s%s", "source, ingress and mark"
                     if by_source else "destination only", "; IPv6 by source too, for its "
                     "source-specific routes" if ipv6_by_source and not by_source else "")
            self.by_source, self.ipv6_by_source = by_source, ipv6_by_source
            lib.fp_route_cache_ipv6_by_source(self.cache, ipv6_by_source)
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
                    routes_by_source=self.by_source,
                    routes_ipv6_by_source=self.ipv6_by_source)

    def close(self):
        self.lookups.close()   # C only uses its descriptor, never after this
        self.changes.close()
