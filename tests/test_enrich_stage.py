"""The enrichment stage (enrich/stage.py) between the meter and the sinks:
records get the FIB's egress and next hop as they pass, a record whose
lookup has no answer waits at most route_wait and then leaves counted, the
held records stay bounded, and every record reaches the sinks.

The routing cases ask a real kernel (a namespace router of our own; root
needed, skipped otherwise); the waiting cases use a stand-in table that
never answers (SilentRoutes), since a real kernel always does.
"""

import ipaddress
import time

import pytest

from enrich_lab import UplinkRouter
from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.enrich import stage as enrichment
from flowprobe.enrich.routes import RouteTable, as_key
from flowprobe.enrich.settings import EnrichSettings
from flowprobe.frozen import replace
from netlab import missing

IN, OUT = lib.FP_DIRECTION_IN, lib.FP_DIRECTION_OUT


def records(*specs):
    batch = ffi.new("struct fp_record[]", len(specs))
    for r, spec in zip(batch, specs):
        source, destination = (ipaddress.ip_address(a) for a in (spec["src"], spec["dst"]))
        r.ip_version = source.version
        ffi.memmove(r.src_addr, source.packed, len(source.packed))
        ffi.memmove(r.dst_addr, destination.packed, len(destination.packed))
        r.ifindex = spec.get("ifindex", 0)
        r.direction = spec.get("direction", 0)
        r.conntrack_mark = spec.get("mark", 0)
        r.packets = 1
        r.flow_end_ms = spec.get("end_ms", 0)
    return batch


def next_hop(r):
    raw = bytes(ffi.buffer(r.next_hop))
    if raw == bytes(16):
        return None
    return str(ipaddress.ip_address(raw[:4] if r.ip_version == 4 else raw))


class Sink:
    def __init__(self):
        self.records = []

    def __call__(self, batch, count, now_ms):
        self.records += [(r.egress_ifindex, next_hop(r)) for r in batch[0:count]]


class SilentRoutes:
    """A stand-in route table that never answers on its own (a real kernel
    always does, within the asking call): what the stage does while it
    waits.  answer() puts an answer for everything asked, as a late kernel
    would."""

    class NoSocket:
        def fileno(self):
            return -1

    lookups = changes = NoSocket()
    by_source = False

    def __init__(self):
        self.cache = ffi.gc(lib.fp_route_cache_new(64), lib.fp_route_cache_free)
        self.asked = set()

    def ask(self, key):
        self.asked.add(bytes(key))
        return True

    def answer(self, egress, next_hop):
        for key in self.asked:
            lib.fp_route_cache_put(self.cache, as_key(key), egress, next_hop,
                                   len(next_hop))

    def read_answers(self):
        return 0

    def read_changes(self):
        return False

    def stats(self):
        return {}

    def close(self):
        pass


SETTINGS = EnrichSettings(routing=True, route_wait=0.5, devices=False)


@pytest.mark.skipif(missing() is not None, reason=f"routing: {missing()}")
def test_records_leave_with_the_egress_and_next_hop_the_kernel_chose():
    with UplinkRouter() as router:
        lan0, up1, up2 = (router.ifindex(d) for d in ("lan0", "up1", "up2"))
        router.ip("rule", "add", "from", "192.168.7.128/25", "lookup", "100")
        router.ip("rule", "add", "fwmark", "0x7", "lookup", "100")
        with router.inside():
            table = RouteTable()
        sink = Sink()
        stage = enrichment.Enrichment(SETTINGS, sink, lambda: 0, routes=table)
        table.read_answers()   # the rules: lookups by source, ingress and mark
        assert table.by_source
        batch = records(
            {"src": "192.168.7.200", "dst": "198.51.100.7", "ifindex": lan0, "direction": IN},
            {"src": "192.168.7.20", "dst": "198.51.100.7", "ifindex": lan0, "direction": IN},
            {"src": "192.168.7.20", "dst": "198.51.100.7", "mark": 7},     # conntrack
            {"src": "192.168.7.20", "dst": "198.51.100.7"},                # conntrack, no mark
            {"src": "10.1.1.1", "dst": "198.51.100.9", "ifindex": up1, "direction": OUT},
            {"src": "fd07::20", "dst": "2001:db8::7", "ifindex": lan0, "direction": IN},
            {"src": "192.168.7.20", "dst": "10.1.2.9", "ifindex": lan0, "direction": IN},
            {"src": "192.168.7.200", "dst": "198.51.100.7"},               # conntrack biflow
        )
        batch[7].reverse_packets = 1
        stage.deliver(batch, len(batch), 1000)
        assert sink.records == [(up2, "10.1.2.254"), (up1, "10.1.1.254"), (up2, "10.1.2.254"),
                                (up1, "10.1.1.254"), (up1, "10.1.1.254"), (up1, "fd01::254"),
                                (up2, None), (up1, "10.1.1.254")]
        assert stage.counters["records_enriched"] == 8 and not stage.held
        # the way back to the client: the LAN, directly connected
        assert (batch[7].reverse_egress_ifindex, bytes(batch[7].reverse_next_hop)) == (
            lan0, bytes(16))
        # a route change: flows after it follow it; flows that ended before
        # it keep the route of then, where it was asked then
        changed_ms = int(time.time() * 1000)
        router.ip("route", "replace", "default", "via", "10.1.2.254", "dev", "up2")
        stage.tick(2000)
        sink.records.clear()
        flow = {"src": "192.168.7.20", "dst": "198.51.100.7", "ifindex": lan0, "direction": IN}
        stage.deliver(records(dict(flow, end_ms=changed_ms + 5000),
                              dict(flow, end_ms=changed_ms - 1000),
                              dict(flow, dst="198.51.100.8", end_ms=changed_ms - 1000)), 3, 3000)
        assert sink.records == [(up2, "10.1.2.254"), (up1, "10.1.1.254"), (up2, "10.1.2.254")]
        assert table.stats()["records_routed_after_change"] == 1
        assert table.stats()["records_routed_before_change"] == 1
        stage.close()


def test_a_record_without_an_answer_waits_its_time_then_leaves_counted():
    sink = Sink()
    stage = enrichment.Enrichment(SETTINGS, sink, lambda: 0, routes=SilentRoutes())
    batch = records({"src": "192.0.2.1", "dst": "198.51.100.1", "ifindex": 3, "direction": IN},
                    {"src": "192.0.2.1", "dst": "198.51.100.2", "ifindex": 3, "direction": IN})
    stage.deliver(batch, 2, 1000)
    assert sink.records == [] and stage.held_records == 2
    # the meter reuses its batch: the stage held a copy
    ffi.memmove(batch, bytes(ffi.sizeof(batch)), ffi.sizeof(batch))
    stage.release(1499)
    assert sink.records == []
    stage.release(1500)
    assert sink.records == [(0, None), (0, None)]
    assert stage.counters["records_without_route"] == 2 and stage.held_records == 0


def test_answers_that_come_later_fill_the_held_records():
    routes = SilentRoutes()
    sink = Sink()
    stage = enrichment.Enrichment(SETTINGS, sink, lambda: 1100, routes=routes)
    stage.deliver(records({"src": "192.0.2.1", "dst": "198.51.100.1", "ifindex": 3,
                           "direction": IN}), 1, 1000)
    routes.answer(7, ipaddress.ip_address("192.0.2.254").packed)
    [(_, _, on_answers), _] = stage.watched()
    on_answers(None)
    assert sink.records == [(7, "192.0.2.254")]
    assert stage.counters["records_enriched"] == 1


def test_held_records_stay_bounded_and_a_stop_delivers_them_all(monkeypatch):
    monkeypatch.setattr(enrichment, "MAX_HELD_RECORDS", 3)
    sink = Sink()
    stage = enrichment.Enrichment(SETTINGS, sink, lambda: 0, routes=SilentRoutes())
    spec = {"src": "192.0.2.1", "dst": "198.51.100.1", "ifindex": 3, "direction": IN}
    stage.deliver(records(spec, spec), 2, 1000)
    stage.deliver(records(spec, spec), 2, 1000)   # beyond the bound: on at once, counted
    assert len(sink.records) == 2 and stage.counters["batches_not_held"] == 1
    stage.finish(1001)
    assert len(sink.records) == 4 and stage.held_records == 0
    assert stage.counters["records_without_route"] == 4


def test_the_packer_writes_each_directions_route():
    batch = records({"src": "192.0.2.1", "dst": "198.51.100.1", "ifindex": 3, "direction": IN})
    batch[0].egress_ifindex = 9
    ffi.memmove(batch[0].next_hop, ipaddress.ip_address("192.0.2.254").packed, 4)
    batch[0].reverse_packets = 1
    batch[0].reverse_egress_ifindex = 3
    layout = bytes([lib.FP_FIELD_INGRESS, lib.FP_FIELD_EGRESS, lib.FP_FIELD_NEXT_HOP4,
                    lib.FP_FIELD_EGRESS16])
    out = ffi.new("uint8_t[]", 64)
    indices = ffi.new("int[]", [0])
    packed = []
    for reverse in (0, 1):
        n = lib.fp_records_pack(batch, indices, 1, layout, len(layout), reverse, 0, out, 64)
        packed.append(bytes(ffi.buffer(out, n)))
    assert packed[0] == bytes([0, 0, 0, 3, 0, 0, 0, 9, 192, 0, 2, 254, 0, 9])
    # the reverse view: the way back to the source, directly connected
    assert packed[1] == bytes([0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 0, 0, 3])


class NeighbourTable:
    """A stand-in device table: only the neighbour entries a test sets."""

    def __init__(self, neighbours):
        self.neighbours = {ipaddress.ip_address(a).packed.ljust(16, b"\0"): bytes.fromhex(
            m.replace(":", "")) for a, m in neighbours.items()}

    def watched(self):
        return []

    def close(self):
        pass


def test_conntrack_records_get_macs_from_the_neighbour_table_when_asked():
    client, nat = "192.168.7.20", "10.1.1.1"
    devices = NeighbourTable({client: "02:00:00:00:00:20", "10.1.1.254": "02:00:00:00:00:fe"})
    settings = EnrichSettings(routing=False, devices=True, macs=True)
    got = []

    def sink(batch, count, now_ms):
        got.extend((bytes(ffi.buffer(r.src_mac)).hex(":"),
                    bytes(ffi.buffer(r.reverse_dst_mac)).hex(":")) for r in batch[0:count])

    stage = enrichment.Enrichment(settings, sink, lambda: 0, devices=devices)
    batch = records({"src": client, "dst": "198.51.100.7"})
    batch[0].nat = 1
    ffi.memmove(batch[0].post_src_addr, ipaddress.ip_address(nat).packed, 4)
    ffi.memmove(batch[0].post_dst_addr, ipaddress.ip_address("198.51.100.7").packed, 4)
    stage.deliver(batch, 1, 0)
    # the client's MAC; the reverse view's addresses are the reply tuple's, and
    # the router's own NAT address has no neighbour entry
    assert got == [("02:00:00:00:00:20", "00:00:00:00:00:00")]
    ffi.memmove(batch[0].post_src_addr, ipaddress.ip_address(client).packed, 4)
    stage.deliver(batch, 1, 0)
    assert got[-1] == ("02:00:00:00:00:20", "02:00:00:00:00:20")
    # not asked (no collector wants MAC fields): untouched
    stage.settings = EnrichSettings(routing=False, devices=True)
    captured = records({"src": client, "dst": "198.51.100.7"})
    captured[0].nat = 1
    stage.deliver(captured, 1, 0)
    assert got[-1] == ("00:00:00:00:00:00", "00:00:00:00:00:00")


def test_a_reload_keeps_what_did_not_change_and_delivers_what_was_held(tmp_path):
    """apply() at a reload: new route_wait keeps the table; routing off
    delivers the held records first; everything off closes the stage."""
    sink = Sink()
    settings = EnrichSettings(routing=True, devices=True, lease_file=str(tmp_path / "leases"),
                              dhcpv6_lease_file=str(tmp_path / "odhcpd"))
    stage = enrichment.apply(None, settings, sink, lambda: 5000)
    table, devices = stage.routes, stage.devices
    same = enrichment.apply(stage, replace(settings, route_wait=2.0), sink, lambda: 5000)
    assert same is stage and stage.routes is table and stage.devices is devices
    stage.routes = SilentRoutes()   # a batch waits for its answer
    stage.deliver(records({"src": "192.0.2.1", "dst": "198.51.100.1", "ifindex": 3,
                           "direction": IN}), 1, 1000)
    assert stage.held_records == 1 and sink.records == []
    table.close()
    stage = enrichment.apply(stage, replace(settings, routing=False), sink, lambda: 5000)
    assert sink.records == [(0, None)] and stage.routes is None and stage.devices is devices
    assert enrichment.apply(stage, replace(settings, routing=False, devices=False), sink,
                            lambda: 5000) is None
