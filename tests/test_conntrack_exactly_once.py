"""Every connection leaves the conntrack source as exactly one record, in
the orders of events, dumps and overruns a loaded machine produces: a
connection missing from a dump while its DESTROY is held by the kernel
(after an overrun) or still unread in the event socket, one released by a
smaller table, one whose DESTROY comes after it left as vanished.

The table is driven by hand-made ctnetlink messages (fp_conntrack_replay,
and unicasts into the real event socket) on a clock the test sets: no
timing. Needs root (netlink sockets, a network namespace of its own).
"""

import os

import pytest

import ctnetlink
from flowprobe._cmeter_ffi import lib
from flowprobe.sources.conntrack import ConntrackSource

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="conntrack: needs root for netlink sockets and a netns")

T0 = 1_700_000_000_000   # the test's clock, in ms
GRACE = 5.0
LACK_OF_RESOURCES = "lack_of_resources"


def replay(source, kind, *messages, now):
    data = b"".join(messages)
    assert lib.fp_conntrack_replay(source._source, data, len(data), kind, now) >= 0


def dump(source, *messages, now):
    replay(source, lib.FP_CT_REPLAY_DUMP, *messages, now=now)


def events(source, *messages, now):
    replay(source, lib.FP_CT_REPLAY_EVENTS, *messages, now=now)


def overrun(source, now):
    replay(source, lib.FP_CT_REPLAY_OVERRUN, now=now)


def new_source(max_connections=16):
    source = ConntrackSource(max_connections=max_connections, active_timeout=3600,
                             vanish_grace=GRACE, buffer_kb=64)
    source.baseline(T0)   # the namespace is empty: only the source's start
    return source


def summary(source):
    """(port, packets, end_reason) of every record waiting, and the counters."""
    records = [(r["src_port"], r["packets"], r["end_reason"]) for r in source.drain()]
    counters = source.counters()
    return {"records": records, "vanished": counters["vanished"],
            "destroys_after_vanish": counters["destroys_after_vanish"],
            "released_by_resize": counters["released_by_resize"]}


def seen_then_missing(source, sport=14227):
    """A connection a dump lists half-way (3 packets), the next misses."""
    dump(source, ctnetlink.message(7, sport, 3, T0 + 500), now=T0 + 1000)
    dump(source, now=T0 + 2000)


def test_a_connection_missing_while_events_are_lost_waits_for_its_destroy():
    def scenario():
        source = new_source()
        seen_then_missing(source)
        # the kernel could not deliver events: this connection's DESTROY may be
        # among those it holds, to deliver again once the socket has room
        overrun(source, now=T0 + 6000)
        source.expire(T0 + 2000 + 5001)   # the grace since the dump is over
        before = summary(source)
        events(source, ctnetlink.message(7, 14227, 8, T0 + 500, destroy=True, stop_ms=T0 + 7100),
               now=T0 + 7200)
        source.expire(T0 + 60_000)
        return before, summary(source)

    before, after = ctnetlink.in_own_netns(scenario)
    assert before["records"] == [] and before["vanished"] == 0
    assert after["records"] == [[14227, 8, "end_of_flow"]]   # whole, once, endOfFlow
    assert after["vanished"] == 0 and after["destroys_after_vanish"] == 0


def test_a_destroy_waiting_in_the_socket_comes_before_the_vanish():
    def scenario():
        source = new_source()
        seen_then_missing(source)
        # its DESTROY came, but the loop has not read it yet (busy elsewhere)
        ctnetlink.send_to(source.fileno(), ctnetlink.message(
            7, 14227, 8, T0 + 500, destroy=True, stop_ms=T0 + 1900))
        source.expire(T0 + 30_000)
        before = summary(source)
        source.read(T0 + 30_001)
        return before, summary(source)

    before, after = ctnetlink.in_own_netns(scenario)
    assert before["records"] == [] and before["vanished"] == 0
    assert after["records"] == [[14227, 8, "end_of_flow"]]


def test_a_destroy_after_the_vanish_is_counted_not_reported_again():
    def scenario():
        source = new_source()
        seen_then_missing(source)
        source.expire(T0 + 2000 + 5000)   # nothing lost, nothing waiting: gone
        vanished = summary(source)
        # yet the kernel held its DESTROY longer than the grace
        events(source, ctnetlink.message(7, 14227, 8, T0 + 500, destroy=True, stop_ms=T0 + 7100),
               now=T0 + 8000)
        return vanished, summary(source)

    vanished, after = ctnetlink.in_own_netns(scenario)
    assert vanished["records"] == [[14227, 3, LACK_OF_RESOURCES]] and vanished["vanished"] == 1
    assert after["records"] == [] and after["destroys_after_vanish"] == 1


def test_connections_released_by_a_smaller_table_and_seen_again_are_reported_once():
    def scenario():
        source = new_source(max_connections=8)
        listed = [ctnetlink.message(100 + n, 20000 + n, 2, T0 + 500) for n in range(8)]
        dump(source, *listed, now=T0 + 1000)
        source.reconfigure(3, 3600, GRACE, 64)       # 5 of them let go
        dump(source, *listed, now=T0 + 2000)          # all still open: none fits again
        dump(source, *listed[:4], now=T0 + 3000)      # the other 4 are being destroyed...
        overrun(source, now=T0 + 3500)                # ...and their DESTROYs held back
        source.expire(T0 + 3000 + 5200)
        events(source, *(ctnetlink.message(100 + n, 20000 + n, 6, T0 + 500, destroy=True,
                                           stop_ms=T0 + 2900) for n in range(8)),
               now=T0 + 8300)
        dump(source, now=T0 + 10_000)
        source.expire(T0 + 60_000)
        return summary(source)

    after = ctnetlink.in_own_netns(scenario)
    assert after["released_by_resize"] == 5
    assert sorted(after["records"]) == [[20000 + n, 6, "end_of_flow"] for n in range(8)]
    assert after["vanished"] == 0 and after["destroys_after_vanish"] == 0


def test_a_connection_missing_while_the_kernel_delivers_what_it_held_waits():
    def scenario():
        source = new_source()
        dump(source, ctnetlink.message(7, 14227, 3, T0 + 500),
             ctnetlink.message(8, 14228, 3, T0 + 500), now=T0 + 1000)
        overrun(source, now=T0 + 2500)
        dump(source, now=T0 + 3000)   # both gone: their DESTROYs held by the kernel
        # the kernel delivers what it held a socket's worth at a time: one of
        # them (stopped before the overrun) comes, so the other may still come
        events(source, ctnetlink.message(8, 14228, 8, T0 + 500, destroy=True, stop_ms=T0 + 2400),
               now=T0 + 7000)
        source.expire(T0 + 8500)      # the grace since the dump and the overrun is over
        before = summary(source)
        events(source, ctnetlink.message(7, 14227, 8, T0 + 500, destroy=True, stop_ms=T0 + 2400),
               now=T0 + 8600)
        source.expire(T0 + 60_000)
        return before, summary(source)

    before, after = ctnetlink.in_own_netns(scenario)
    assert before["records"] == [[14228, 8, "end_of_flow"]] and before["vanished"] == 0
    assert after["records"] == [[14227, 8, "end_of_flow"]]
    assert after["vanished"] == 0 and after["destroys_after_vanish"] == 0
