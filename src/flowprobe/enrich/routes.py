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
import time
from collections import namedtuple

from flowprobe.enrich import netlink as nl

log = logging.getLogger("flowprobe")

RTM_GETRULE = 34
FRA_IIFNAME, FRA_FWMARK, FRA_OIFNAME, FRA_L3MDEV, FRA_UID_RANGE = 3, 10, 17, 19, 20
# what makes a rule select by more than the destination (FRA_UID_RANGE only
# matters to the router's own sockets, which lookups here never stand for)
POLICY_SELECTORS = (FRA_IIFNAME, FRA_FWMARK, FRA_OIFNAME, FRA_L3MDEV)

# answers that arrive for flows the FIB cannot route (no route, rp_filter,
# a martian source) are kept as such: no storm of requests for them
Route = namedtuple("Route", "egress next_hop resolved")
UNRESOLVED = Route(0, b"", False)
LOCAL = Route(0, b"", True)     # delivered to the router itself: it leaves by no interface


class RouteTable:
    """A bounded table of FIB answers (oldest out when full) with the
    requests in flight; emptied by every route or rule change."""

    def __init__(self, capacity=4096, max_in_flight=512):
        self.capacity = capacity
        self.max_in_flight = max_in_flight
        self.lookups = nl.NetlinkSocket(receive_buffer=1 << 20)
        try:
            self.changes = nl.NetlinkSocket(groups=(
                nl.RTNLGRP_IPV4_ROUTE, nl.RTNLGRP_IPV6_ROUTE, nl.RTNLGRP_IPV4_RULE,
                nl.RTNLGRP_IPV6_RULE), receive_buffer=256 << 10)
        except OSError:
            self.lookups.close()
            raise
        self.routes = {}          # key -> Route
        # the answers from before the latest change, for records of flows
        # that ended before it (their packets took the old routes)
        self.previous = {}
        self.changed_ms = 0
        self.asked = {}           # sequence -> key
        self.in_flight = {}       # key -> sequence
        self.by_source = True     # until the rules are known: the full key
        self.generation = 0
        self._rules_sequence = None
        self._rules_by_source = False
        self.counters = dict(route_lookups=0, route_answers=0, route_failures=0,
                             route_evictions=0, route_invalidations=0, route_overruns=0,
                             route_requests_refused=0)
        self._ask_rules()

    # ---- keys ----

    def key(self, ip_version, destination, source, ingress, mark):
        """The lookup a flow needs: (family, destination, source, ingress, mark)."""
        size = 4 if ip_version == 4 else 16
        family = nl.FAMILIES[ip_version]
        if not self.by_source:
            return (family, destination[:size], b"", 0, 0)
        return (family, destination[:size], source[:size] if ingress else b"", ingress, mark)

    def get(self, key):
        return self.routes.get(key)

    # ---- asking ----

    def ask(self, key):
        """Sends the lookup for key unless it is in flight; False when it
        cannot go now (too many in flight, or the kernel's queue is full)."""
        if key in self.in_flight:
            return True
        if len(self.in_flight) >= self.max_in_flight:
            self.counters["route_requests_refused"] += 1
            return False
        family, destination, source, ingress, mark = key
        sequence = self.lookups.send(nl.RTM_GETROUTE, 0, nl.route_request(
            family, destination, source, ingress, mark))
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
            if message.type == nl.RTM_NEWROUTE:
                kind, oif, gateway = nl.parse_route(message.payload)
                route = (LOCAL if kind == nl.RTN_LOCAL else
                         Route(oif, gateway, True) if kind == nl.RTN_UNICAST else UNRESOLVED)
                self.counters["route_answers"] += 1
            else:   # NLMSG_ERROR: unreachable, prohibited, a martian or rp_filter'd source
                route = UNRESOLVED
                self.counters["route_failures"] += 1
            self._keep(key, route)
        return answered

    def _keep(self, key, route):
        if len(self.routes) >= self.capacity:
            del self.routes[next(iter(self.routes))]
            self.counters["route_evictions"] += 1
        self.routes[key] = route

    # ---- changes ----

    def read_changes(self):
        """Route and rule notifications: any of them empties the table."""
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
        self.previous, self.routes = self.routes, {}
        self.changed_ms = int(time.time() * 1000)
        self.generation += 1
        self.counters["route_invalidations"] += 1
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

    # ---- the loop ----

    def watched(self):
        """(socket, callback) pairs for the loop's selector."""
        return ((self.lookups, self.read_answers), (self.changes, self.read_changes))

    def stats(self):
        return dict(self.counters, routes_cached=len(self.routes),
                    route_lookups_in_flight=len(self.in_flight),
                    routes_by_source=self.by_source)

    def close(self):
        self.lookups.close()
        self.changes.close()
