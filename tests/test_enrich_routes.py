"""The FIB's answers (enrich/routes.py) against a real kernel: a namespace
router with two uplinks and policy rules.  What the table says must be
what `ip route get` says, follow a rule or a route as soon as it changes,
stay within its capacity, and never wait on the socket.

Needs root and ip netns; skipped otherwise.
"""

import ipaddress
import select
import socket

import pytest

from enrich_lab import UplinkRouter
from flowprobe.enrich import routes as routing
from netlab import missing

skip_reason = missing()
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"routing: {skip_reason}")


def packed(text):
    return ipaddress.ip_address(text).packed.ljust(16, b"\0")


def settle(table, timeout=2.0):
    """Reads what the kernel has sent (it sends within the asking call; the
    wait is only for a loaded machine)."""
    for sock in (table.changes, table.lookups):
        while select.select([sock], [], [], 0)[0]:
            (table.read_changes if sock is table.changes else table.read_answers)()
    if table._rules_sequence is not None or table.in_flight:
        select.select([table.lookups], [], [], timeout)
        table.read_answers()


def lookup(table, version, destination, source="", ingress=0, mark=0):
    key = table.key(version, packed(destination), packed(source) if source else b"", ingress,
                    mark)
    assert table.ask(key)
    settle(table)
    return table.get(key)


def gateway(route):
    return str(ipaddress.ip_address(route.next_hop)) if route.next_hop else None


@pytest.fixture
def router():
    with UplinkRouter() as router:
        yield router


@pytest.fixture
def table(router):
    with router.inside():
        table = routing.RouteTable(capacity=64)
    settle(table)
    yield table
    table.close()


def test_default_rules_key_by_destination_and_answer_as_ip_route_get(router, table):
    assert table.by_source is False
    up1 = router.ifindex("up1")
    route = lookup(table, 4, "198.51.100.7")
    assert (route.egress, gateway(route)) == (up1, "10.1.1.254")
    route = lookup(table, 6, "2001:db8::7")
    assert (route.egress, gateway(route)) == (up1, "fd01::254")
    # directly connected: the interface, no next hop
    route = lookup(table, 4, "10.1.2.9")
    assert (route.egress, route.next_hop) == (router.ifindex("up2"), b"")
    # one lookup serves every flow to a destination
    assert table.get(table.key(4, packed("198.51.100.7"), packed("192.168.7.3"),
                               router.ifindex("lan0"), 0)) is not None


def test_a_source_rule_makes_lookups_forwarding_ones_from_the_ingress(router, table):
    lan0, up1, up2 = (router.ifindex(d) for d in ("lan0", "up1", "up2"))
    router.ip("rule", "add", "from", "192.168.7.128/25", "lookup", "100")
    router.ip("-6", "rule", "add", "from", "fd07::8000:0:0:0/65", "lookup", "100")
    settle(table)
    assert table.by_source is True
    route = lookup(table, 4, "198.51.100.7", "192.168.7.200", lan0)
    assert (route.egress, gateway(route)) == (up2, "10.1.2.254")
    route = lookup(table, 4, "198.51.100.7", "192.168.7.20", lan0)
    assert (route.egress, gateway(route)) == (up1, "10.1.1.254")
    route = lookup(table, 6, "2001:db8::7", "fd07::8000:0:0:1", lan0)
    assert (route.egress, gateway(route)) == (up2, "fd02::254")
    # and back: the rule gone, destination only again
    router.ip("rule", "del", "from", "192.168.7.128/25", "lookup", "100")
    router.ip("-6", "rule", "del", "from", "fd07::8000:0:0:0/65", "lookup", "100")
    settle(table)
    assert table.by_source is False


def test_a_mark_rule_routes_conntrack_flows_by_their_mark(router, table):
    router.ip("rule", "add", "fwmark", "0x7", "lookup", "100")
    settle(table)
    assert table.by_source is True
    route = lookup(table, 4, "198.51.100.7", mark=7)
    assert (route.egress, gateway(route)) == (router.ifindex("up2"), "10.1.2.254")
    route = lookup(table, 4, "198.51.100.7", mark=8)
    assert gateway(route) == "10.1.1.254"


def test_a_route_change_empties_the_table_and_new_lookups_follow_it(router, table):
    assert gateway(lookup(table, 4, "198.51.100.7")) == "10.1.1.254"
    changes = table.stats()["route_changes"]
    router.ip("route", "replace", "default", "via", "10.1.2.254", "dev", "up2")
    settle(table)
    assert table.stats()["route_changes"] > changes
    assert table.get(table.key(4, packed("198.51.100.7"), b"", 0, 0)) is None
    route = lookup(table, 4, "198.51.100.7")
    assert (route.egress, gateway(route)) == (router.ifindex("up2"), "10.1.2.254")


def test_unroutable_and_local_destinations_are_kept_without_egress(router, table):
    """Kept as answers: no storm of requests for them."""
    router.ip("route", "add", "unreachable", "203.0.113.0/24")
    router.ip("route", "add", "local", "192.0.2.1", "dev", "lo", "table", "local")
    settle(table)
    assert lookup(table, 4, "203.0.113.5") == routing.NO_ROUTE
    assert table.counters["route_failures"] == 1
    assert lookup(table, 4, "192.0.2.1") == routing.NO_ROUTE
    assert table.get(table.key(4, packed("203.0.113.5"), b"", 0, 0)) == routing.NO_ROUTE


def test_the_table_keeps_its_capacity_and_asking_never_waits(router):
    with router.inside():
        table = routing.RouteTable(capacity=16, max_in_flight=8)
    try:
        settle(table)
        keys = [table.key(4, packed(f"198.51.100.{n}"), b"", 0, 0) for n in range(1, 41)]
        # at most max_in_flight unanswered: beyond, what has come is read
        # first (the kernel answers as it is asked)
        in_flight = []
        for key in keys[:20]:
            assert table.ask(key)
            in_flight.append(len(table.in_flight))
        assert max(in_flight) == 8
        settle(table)
        for key in keys:
            table.ask(key)
            table.read_answers()
        stats = table.stats()
        assert stats["routes_cached"] <= stats["route_cache_capacity"] == 32
        assert stats["route_evictions"] >= 40 - 32
        assert table.get(keys[-1]).egress == router.ifindex("up1")
    finally:
        table.close()


def test_a_lost_notification_empties_the_table(router, table):
    """ENOBUFS on the change socket: whatever changed, nothing is trusted."""
    lookup(table, 4, "198.51.100.7")
    table.changes.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    for n in range(200):
        router.ip("route", "add", f"198.18.{n}.0/24", "via", "10.1.1.254")
    settle(table)
    assert table.counters["route_overruns"] >= 1
    assert table.get(table.key(4, packed("198.51.100.7"), b"", 0, 0)) is None
