"""Route lookups asked and answered in C (cmeter/route_lookup.c), a batch at
a time, against the kernel itself: in a namespace router with several
routes, a more specific one inside another, multipath, a default route,
blackhole, unreachable, prohibit and throw routes, an IPv4 route via an
IPv6 next hop, and policy rules by source and by mark, the table's answer
for each of hundreds of destinations must be what `ip route get` says for
it.  Requests in flight stay bounded, a key asked twice goes once, and
answers the kernel drops are counted and asked again.

Needs root and ip netns; skipped otherwise.
"""

import ipaddress
import os
import random
import re
import select
import socket
import subprocess

import pytest

from enrich_lab import UplinkRouter
from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.enrich import routes as routing
from netlab import missing

skip_reason = missing()
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"route lookups: {skip_reason}")

# route types `ip route get` names first, none with an egress a flow leaves by
NOT_UNICAST = {"local", "broadcast", "blackhole", "unreachable", "prohibit", "multicast",
               "anycast", "throw"}
FAILED = re.compile(r"Command failed -:(\d+)")

ROUTES = (
    ("route", "add", "198.18.0.0/15", "via", "10.1.2.254", "dev", "up2"),
    ("route", "add", "198.18.7.0/24", "via", "10.1.1.253", "dev", "up1"),
    ("route", "add", "198.51.100.128/25", "nexthop", "via", "10.1.1.253", "nexthop", "via",
     "10.1.2.253"),
    ("route", "add", "blackhole", "203.0.113.0/25"),
    ("route", "add", "unreachable", "203.0.113.128/26"),
    ("route", "add", "prohibit", "203.0.113.192/26"),
    ("route", "add", "throw", "198.18.9.0/24"),
    ("route", "add", "100.64.0.0/10", "dev", "up2"),
    ("-6", "route", "add", "2001:db8:1::/48", "via", "fd02::254", "dev", "up2"),
    ("-6", "route", "add", "2001:db8:2::/48", "dev", "up2"),
    ("-6", "route", "add", "2001:db8:3::/48", "nexthop", "via", "fd01::253", "dev", "up1",
     "nexthop", "via", "fd02::253", "dev", "up2"),
    ("-6", "route", "add", "blackhole", "2001:db8:dead::/48"),
    ("-6", "route", "add", "unreachable", "2001:db8:beef::/48"),
)
# needs a kernel of 5.2 or later: added where it can be
IPV4_VIA_IPV6 = ("route", "add", "198.19.200.0/24", "via", "inet6", "fd01::254", "dev", "up1")


def destinations():
    """Addresses in and around every route above, and public ones behind
    the default routes, each once: about 360 IPv4 and 160 IPv6, always the
    same."""
    rng = random.Random(7)
    v4 = ["198.18.0.0/15", "198.18.7.0/24", "198.51.100.0/24", "203.0.113.0/24",
          "198.18.9.0/24", "100.64.0.0/10", "198.19.200.0/24", "192.168.7.0/24", "10.1.1.0/24",
          "10.1.2.0/24"]
    v6 = ["2001:db8:1::/48", "2001:db8:2::/48", "2001:db8:3::/48", "2001:db8:dead::/48",
          "2001:db8:beef::/48", "fd07::/64", "fd01::/64"]
    found = []
    for prefixes, per_prefix, public in ((v4, 24, 120), (v6, 16, 48)):
        for prefix in map(ipaddress.ip_network, prefixes):
            found += [prefix[rng.randrange(prefix.num_addresses)] for _ in range(per_prefix)]
        while public:
            address = (ipaddress.IPv4Address(rng.getrandbits(32)) if prefixes is v4 else
                       ipaddress.IPv6Address((0x2400 << 112) | rng.getrandbits(112)))
            if address.is_global:
                found.append(address)
                public -= 1
    return list(dict.fromkeys(found))


def packed(address):
    return ipaddress.ip_address(address).packed.ljust(16, b"\0")


class Kernel:
    """`ip route get` for many lookups in one `ip -batch`."""

    def __init__(self, router):
        self.router = router
        self.ifindex = {}

    def route_get(self, lookups):
        """[(egress ifindex, gateway or None)] for each lookup's `ip route
        get` arguments: (0, None) where it fails or the route has no egress."""
        # without the sanitizer tools/sanitize.sh preloads: iproute2's own
        # print_route trips it (strncpy onto itself), and ip is not under test
        environment = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        out = subprocess.run(["ip", "-n", self.router.name, "-o", "-force", "-batch", "-"],
                             input="".join(f"route get {' '.join(a)}\n" for a in lookups),
                             capture_output=True, text=True, env=environment)
        failed = {int(n) - 1 for n in FAILED.findall(out.stderr)}
        lines = iter(out.stdout.splitlines())
        return [(0, None) if n in failed else self.answer(next(lines).split())
                for n in range(len(lookups))]

    def answer(self, words):
        if words[0] in NOT_UNICAST:
            return 0, None
        device = words[words.index("dev") + 1]
        if device not in self.ifindex:
            self.ifindex[device] = self.router.ifindex(device)
        gateway = None
        if "via" in words:
            gateway = words[words.index("via") + 1]
            if gateway in ("inet", "inet6"):
                gateway = words[words.index("via") + 2]
        return self.ifindex[device], gateway


def as_found(route):
    if route is None:
        return None
    return route.egress, str(ipaddress.ip_address(route.next_hop)) if route.next_hop else None


def settle(table):
    """What the kernel has sent on both sockets, the rules' dump to its end."""
    for _ in range(100):
        while select.select([table.changes], [], [], 0)[0]:
            table.read_changes()
        table.read_answers()
        if table._rules_sequence is None and not table.in_flight:
            return
        select.select([table.lookups], [], [], 0.05)
    raise AssertionError("the kernel did not answer")


def key_array(keys):
    array = ffi.new("struct fp_route_key[]", len(keys))
    ffi.memmove(array, b"".join(keys), len(keys) * ffi.sizeof("struct fp_route_key"))
    return array


@pytest.fixture(scope="module")
def router():
    with UplinkRouter() as router:
        for route in ROUTES:
            router.ip(*route)
        router.via_ipv6 = router.ip(*IPV4_VIA_IPV6, check=False).returncode == 0
        yield router


def open_table(router, **options):
    with router.inside():
        table = routing.RouteTable(**options)
    settle(table)
    return table


def test_every_destination_is_answered_as_ip_route_get_answers_it(router):
    table = open_table(router, capacity=2048, max_in_flight=32)
    try:
        assert table.by_source is False
        addresses = [a for a in destinations()
                     if router.via_ipv6 or a not in ipaddress.ip_network("198.19.200.0/24")]
        keys = [table.key(a.version, packed(a), b"", 0, 0) for a in addresses]
        # each destination twice in the batch, as records to it are: asked once
        assert table.ask_keys(key_array(keys + keys), 2 * len(keys)) == len(keys)
        counters = table.counters
        assert counters["route_lookups"] == len(keys)
        assert counters["route_lookups_in_flight"] == 0
        assert counters["route_requests_refused"] == counters["route_overruns"] == 0
        found = [as_found(table.get(key)) for key in keys]
        expected = Kernel(router).route_get([(str(a),) for a in addresses])
        assert found == expected
        # all kinds were there: gateways of both families, none, no egress
        assert {("." in g) if g else None for _, g in expected} == {True, False, None}
        assert sum(e == (0, None) for e in expected) >= 5 * 16
        if router.via_ipv6:   # an IPv4 route's IPv6 next hop (RTA_VIA)
            assert {g for a, (_, g) in zip(addresses, expected)
                    if a in ipaddress.ip_network("198.19.200.0/24")} == {"fd01::254"}
    finally:
        table.close()


def test_policy_rules_by_source_and_mark_are_the_kernels_too(router):
    router.ip("rule", "add", "from", "192.168.7.128/25", "lookup", "100")
    router.ip("-6", "rule", "add", "from", "fd07::8000:0:0:0/65", "lookup", "100")
    router.ip("rule", "add", "fwmark", "0x7", "lookup", "100")
    try:
        table = open_table(router, capacity=2048)
        try:
            assert table.by_source is True
            lan0 = router.ifindex("lan0")
            rng = random.Random(11)
            lookups, keys = [], []
            for a in destinations()[::2]:
                if a in ipaddress.ip_network("198.19.200.0/24"):
                    continue
                if rng.random() < 0.5:   # captured coming in on the LAN
                    source = rng.choice(("192.168.7.20", "192.168.7.200") if a.version == 4
                                        else ("fd07::20", "fd07::8000:0:0:20"))
                    keys.append(table.key(a.version, packed(a), packed(source), lan0, 0))
                    lookups.append((str(a), "from", source, "iif", "lan0"))
                else:   # conntrack's, by its mark
                    mark = rng.choice((0, 7))
                    keys.append(table.key(a.version, packed(a), b"", 0, mark))
                    lookups.append((str(a), "mark", str(mark)))
            table.ask_keys(key_array(keys), len(keys))
            expected = Kernel(router).route_get(lookups)
            assert [as_found(table.get(key)) for key in keys] == expected
            # the rules made a difference: both uplinks' gateways answered
            assert {"10.1.1.254", "10.1.2.254"} <= {g for _, g in expected}
        finally:
            table.close()
    finally:
        router.ip("rule", "del", "from", "192.168.7.128/25", "lookup", "100")
        router.ip("-6", "rule", "del", "from", "fd07::8000:0:0:0/65", "lookup", "100")
        router.ip("rule", "del", "fwmark", "0x7", "lookup", "100")


def test_a_route_change_forgets_answers_and_the_next_batch_follows_it(router):
    table = open_table(router, capacity=256)
    try:
        key = table.key(4, packed("198.18.3.3"), b"", 0, 0)
        table.ask_keys(key_array([key]), 1)
        assert as_found(table.get(key)) == (router.ifindex("up2"), "10.1.2.254")
        router.ip("route", "replace", "198.18.0.0/15", "via", "10.1.1.254", "dev", "up1")
        try:
            settle(table)
            assert table.get(key) is None
            table.ask_keys(key_array([key]), 1)
            assert as_found(table.get(key)) == (router.ifindex("up1"), "10.1.1.254")
        finally:
            router.ip("route", "replace", "198.18.0.0/15", "via", "10.1.2.254", "dev", "up2")
    finally:
        table.close()


def test_answers_the_kernel_drops_are_counted_and_asked_again(router):
    """A receive buffer too small for a datagram's answers: the kernel drops
    some (ENOBUFS); nothing waits for them, and the next batch asks again."""
    table = open_table(router, capacity=2048)
    try:
        keys = [table.key(4, packed(f"198.18.{n // 250}.{n % 250 + 1}"), b"", 0, 0)
                for n in range(600)]
        table.lookups.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        table.ask_keys(key_array(keys), len(keys))
        counters = table.counters
        assert counters["route_overruns"] >= 1 and counters["route_lookups_in_flight"] == 0
        unanswered = [key for key in keys if table.get(key) is None]
        assert unanswered
        table.lookups.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        table.ask_keys(key_array(unanswered), len(unanswered))
        up2 = router.ifindex("up2")
        assert all(as_found(table.get(key)) == (up2, "10.1.2.254") for key in keys)
    finally:
        table.close()


def flow_records(*specs):
    """Records as the meter or conntrack gives them: (source, destination,
    ingress ifindex and direction 'in', or 0 for conntrack's)."""
    batch = ffi.new("struct fp_record[]", len(specs))
    for r, (source, destination, ingress) in zip(batch, specs):
        source, destination = ipaddress.ip_address(source), ipaddress.ip_address(destination)
        r.ip_version = source.version
        ffi.memmove(r.src_addr, source.packed, len(source.packed))
        ffi.memmove(r.dst_addr, destination.packed, len(destination.packed))
        r.ifindex, r.direction = ingress, lib.FP_DIRECTION_IN if ingress else 0
        r.packets = r.reverse_packets = 1
    return batch


def test_source_specific_ipv6_routes_are_followed_as_on_openwrt(router):
    """netifd's IPv6 defaults are `default from PREFIX via ...`: asked by
    destination alone the kernel says unreachable.  With one there, IPv6
    lookups carry the source: a captured flow's forwarding lookup, a
    conntrack flow's output lookup from its source, and the way back from
    its destination; IPv4 lookups still go by destination alone.  Whether
    such a route exists is followed as routes come and go."""
    table = open_table(router, capacity=256)
    assert (table.by_source, table.ipv6_by_source) == (False, False)
    router.ip("-6", "route", "del", "default", "via", "fd01::254")
    router.ip("-6", "route", "add", "default", "from", "fd07::/64", "via", "fd02::254", "dev",
              "up2")
    router.ip("-6", "route", "add", "default", "from", "fd01::/64", "via", "fd01::254", "dev",
              "up1")
    try:
        try:
            settle(table)
            assert (table.by_source, table.ipv6_by_source) == (False, True)
            lan0 = router.ifindex("lan0")
            specs = [("fd07::20", "2400:cb00::1", lan0), ("fd07::21", "2a00:1450::7", 0),
                     ("fd07::22", "2001:db8:1::9", lan0), ("192.168.7.20", "198.18.3.3", lan0)]
            batch = flow_records(*specs)
            missing_ = ffi.new("int[]", 8)
            keys = ffi.new("struct fp_route_key[]", 16)
            key_count = ffi.new("int *")
            assert lib.fp_records_route(table.cache, batch, ffi.NULL, 4, table.by_source,
                                        missing_, keys, key_count) == 4
            table.ask_keys(keys, key_count[0])
            assert lib.fp_records_route(table.cache, batch, ffi.NULL, 4, table.by_source,
                                        missing_, keys, key_count) == 0
            kernel = Kernel(router)
            expected = kernel.route_get(
                [(d, "from", s, "iif", "lan0") if i else (d, "from", s) for s, d, i in specs[:3]]
                + [(specs[3][1],)] + [(s, "from", d) for s, d, _ in specs[:3]]
                + [(specs[3][0],)])
            assert kernel.route_get([("2400:cb00::1",)]) == [(0, None)]   # by destination
            found = [(r.egress_ifindex, next_hop(r)) for r in batch]
            found += [(r.reverse_egress_ifindex, next_hop(r, reverse=True)) for r in batch]
            assert found == expected
            assert expected[0] == (router.ifindex("up2"), "fd02::254")
        finally:
            router.ip("-6", "route", "del", "default", "from", "fd07::/64")
            router.ip("-6", "route", "del", "default", "from", "fd01::/64")
            router.ip("-6", "route", "add", "default", "via", "fd01::254")
        settle(table)
        assert table.ipv6_by_source is False
    finally:
        table.close()


def next_hop(r, reverse=False):
    raw = bytes(ffi.buffer(r.reverse_next_hop if reverse else r.next_hop))
    if raw == bytes(16):
        return None
    return str(ipaddress.ip_address(raw[:4] if r.ip_version == 4 else raw))
