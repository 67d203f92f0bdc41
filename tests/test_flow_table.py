"""Flow table: expiry by idle, active, TCP end and overflow; biflows; bounds."""

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from captures import START_US, assert_conserved
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
CLIENT, SERVER = "10.1.0.1", "10.2.0.2"
MS = 1000  # microseconds


def frame(packet):
    return bytes(Ether(**MACS) / packet)


def tcp(flags, forward=True, sport=50000, dport=80):
    src, dst = (CLIENT, SERVER) if forward else (SERVER, CLIENT)
    ports = (sport, dport) if forward else (dport, sport)
    return frame(IP(src=src, dst=dst) / TCP(sport=ports[0], dport=ports[1], flags=flags))


def udp(forward=True, sport=5353, dport=53, src=CLIENT):
    if forward:
        return frame(IP(src=src, dst=SERVER) / UDP(sport=sport, dport=dport))
    return frame(IP(src=SERVER, dst=src) / UDP(sport=dport, dport=sport))


class Run:
    """Frames fed at chosen times (ms from START_US); records collected."""

    def __init__(self, **settings):
        self.meter = Meter(MeterSettings(hash_seed=1, **settings))
        self.records = []

    def feed(self, at_ms, data):
        self.meter.process_frame(data, 1, START_US + at_ms * MS)
        self.records += self.meter.drain()
        return self

    def expire(self, at_ms):
        self.meter.expire(START_US // 1000 + at_ms)
        self.records += self.meter.drain()
        return self

    def finish(self):
        self.meter.flush()
        self.records += self.meter.drain()
        assert_conserved(self.records, self.meter.counters())
        return self.records


def summary(records):
    return sorted((r["src_addr"], r["src_port"], r["packets"], r["end_reason"]) for r in records)


def test_idle_timeout_splits_a_flow():
    run = Run(idle_timeout=15)
    run.feed(0, udp()).feed(1, udp(forward=False)).feed(20_000, udp())
    records = run.finish()
    forward = sorted((r["flow_start_ms"], r["packets"], r["end_reason"])
                     for r in records if r["src_addr"] == CLIENT)
    assert [f[1:] for f in forward] == [(1, "idle_timeout"), (1, "forced_end")]


def test_expire_reports_idle_flows_without_new_packets():
    run = Run(idle_timeout=15)
    run.feed(0, udp()).feed(1, udp(forward=False))
    assert run.expire(14_000).records == []
    assert len(run.expire(15_001).records) == 2


def test_active_timeout_reports_long_flows_and_goes_on_counting():
    run = Run(active_timeout=3, idle_timeout=15)
    for second in range(11):
        run.feed(second * 1000, udp()).feed(second * 1000 + 1, udp(forward=False))
    records = [r for r in run.finish() if r["src_addr"] == CLIENT]
    assert sum(r["packets"] for r in records) == 11
    assert [r["packets"] for r in sorted(records, key=lambda r: r["flow_start_ms"])] == [3, 3, 3, 2]
    assert [r["end_reason"] for r in records].count("active_timeout") == 3
    assert all(r["flow_end_ms"] - r["flow_start_ms"] < 3000 for r in records)
    # consecutive records do not overlap
    spans = sorted((r["flow_start_ms"], r["flow_end_ms"]) for r in records)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


def test_unanswered_flows_have_the_shorter_timeout():
    run = Run(unanswered_timeout=5, idle_timeout=15)
    run.feed(0, tcp("S")).feed(7000, tcp("S"))  # a SYN never answered, retried
    assert [r["packets"] for r in run.finish()] == [1, 1]


def test_an_idle_timeout_below_the_unanswered_one_ends_unanswered_flows_too():
    run = Run(unanswered_timeout=5, idle_timeout=1)
    run.feed(0, udp()).feed(2000, udp())  # one way, 2 s apart: two flows, not one
    assert [r["packets"] for r in run.finish()] == [1, 1]


def test_answered_flows_keep_the_idle_timeout():
    run = Run(unanswered_timeout=5, idle_timeout=15)
    run.feed(0, udp()).feed(1, udp(forward=False)).feed(7000, udp())
    assert summary(run.finish()) == [(CLIENT, 5353, 2, "forced_end"), (SERVER, 53, 1, "forced_end")]


def test_icmp_echo_reply_answers_the_request():
    run = Run(unanswered_timeout=5, idle_timeout=15)
    request = frame(IP(src=CLIENT, dst=SERVER) / ICMP(type=8))
    reply = frame(IP(src=SERVER, dst=CLIENT) / ICMP(type=0))
    run.feed(0, request).feed(1, reply).feed(7000, request)
    assert sorted((r["dst_port"], r["packets"]) for r in run.finish()) == [(0, 1), (8 << 8, 2)]


def tcp_connection(run, start=0, close="F"):
    run.feed(start, tcp("S")).feed(start + 1, tcp("SA", False)).feed(start + 2, tcp("A"))
    run.feed(start + 3, tcp("PA")).feed(start + 4, tcp("A", False))
    if close == "F":
        run.feed(start + 5, tcp("FA")).feed(start + 6, tcp("FA", False)).feed(start + 7, tcp("A"))
    else:
        run.feed(start + 5, tcp("R", False))
    return run


def test_fin_both_ways_ends_the_flow_after_the_grace():
    run = tcp_connection(Run(tcp_end_grace=2, idle_timeout=60))
    assert run.expire(1000).records == []
    records = run.expire(2100).records
    assert summary(records) == [(CLIENT, 50000, 5, "end_of_flow"), (SERVER, 80, 3, "end_of_flow")]
    assert records[0]["tcp_flags"] & 0x01


def test_fin_one_way_is_not_the_end():
    run = Run(tcp_end_grace=2, idle_timeout=60)
    run.feed(0, tcp("S")).feed(1, tcp("SA", False)).feed(2, tcp("FA"))
    assert run.expire(10_000).records == []


def test_rst_ends_both_directions():
    run = tcp_connection(Run(tcp_end_grace=2, idle_timeout=60), close="R")
    assert {r["end_reason"] for r in run.expire(2100).records} == {"end_of_flow"}
    assert run.meter.counters()["flows_active"] == 0


def test_new_syn_on_a_closing_flow_starts_a_new_one():
    run = tcp_connection(Run(tcp_end_grace=2, idle_timeout=60))
    run.feed(500, tcp("S"))
    forward = [r for r in run.finish() if r["src_addr"] == CLIENT]
    assert sorted(r["packets"] for r in forward) == [1, 5]


def test_overflow_evicts_the_least_recently_seen():
    run = Run(max_flows=2, overflow_policy="evict")
    run.feed(0, udp(sport=1)).feed(1, udp(sport=2)).feed(2, udp(sport=1)).feed(3, udp(sport=3))
    evicted = [r for r in run.records if r["end_reason"] == "lack_of_resources"]
    assert [r["src_port"] for r in evicted] == [2]
    assert run.meter.counters()["flows_evicted"] == 1
    run.finish()


def test_overflow_refuses_new_flows_and_counts_them():
    run = Run(max_flows=2, overflow_policy="refuse")
    run.feed(0, udp(sport=1)).feed(1, udp(sport=2)).feed(2, udp(sport=3)).feed(3, udp(sport=1))
    counters = run.meter.counters()
    assert counters["dropped_flow_table_full"] == 1
    assert sorted((r["src_port"], r["packets"]) for r in run.finish()) == [(1, 2), (2, 1)]


def test_biflow_folds_the_reverse_direction():
    run = tcp_connection(Run(bidirectional=True, tcp_end_grace=2))
    records = run.expire(2100).records
    assert len(records) == 1
    r = records[0]
    assert (r["src_addr"], r["packets"], r["reverse_packets"]) == (CLIENT, 5, 3)
    assert r["tcp_flags"] & 0x02 and r["reverse_tcp_flags"] & 0x12 == 0x12
    assert r["reverse_start_ms"] == r["flow_start_ms"] + 1
    assert r["octets"] == 5 * 40 and r["reverse_octets"] == 3 * 40


def test_biflow_icmp_echo():
    run = Run(bidirectional=True)
    run.feed(0, frame(IP(src=CLIENT, dst=SERVER) / ICMP(type=8)))
    run.feed(1, frame(IP(src=SERVER, dst=CLIENT) / ICMP(type=0)))
    (r,) = run.finish()
    assert (r["dst_port"], r["packets"], r["reverse_packets"]) == (8 << 8, 1, 1)


def test_flush_ends_every_flow_as_forced():
    run = Run()
    for port in range(10):
        run.feed(port, udp(sport=port))
    records = run.finish()
    assert len(records) == 10 and {r["end_reason"] for r in records} == {"forced_end"}


def test_memory_is_fixed_whatever_the_traffic():
    run = Run(max_flows=1000)
    before = run.meter.memory_bytes
    for n in range(5000):
        run.feed(n, udp(sport=n % 65536, src=f"10.9.{n // 250}.{n % 250}"))
        assert run.meter.counters()["flows_active"] <= 1000
    assert run.meter.memory_bytes == before
    counters = run.meter.counters()
    assert counters["flows_evicted"] == 4000 and counters["dropped_export_backlog"] == 0
    assert len(run.finish()) == 5000


def test_memory_per_flow_slot():
    """The table's own bytes per flow: entry, IPv6 addresses, index, reserve."""
    meter = Meter(MeterSettings(max_flows=1 << 16, max_fragments=1))
    assert meter.memory_bytes / (1 << 16) < 104


def test_reading_a_file_while_records_wait(tmp_path):
    """Records left undrained must not make a file look empty."""
    from captures import write_pcap
    run = Run(max_flows=256, idle_timeout=1)
    for port in range(300):  # more than half the export reserve, then expired
        run.meter.process_frame(udp(sport=port), 1, START_US)
    run.meter.expire(START_US // 1000 + 5000)
    assert run.meter.pending >= 128
    path = write_pcap(tmp_path / "later.pcap", [(START_US + 10_000_000, udp(sport=7))])
    records = [r for batch in run.meter.read_file(path) for r in batch]
    run.meter.flush()
    records += run.meter.drain()
    assert len(records) == 301 and run.meter.counters()["packets_read"] == 301


def test_an_evicted_reverse_flow_stays_evicted():
    """Found by the fuzzer: with a full table, the flow evicted for a new one
    can be the new one's reverse; a RST (or FIN) must not revive it."""
    run = Run(max_flows=1, overflow_policy="evict")
    run.feed(0, tcp("S")).feed(1, tcp("R", forward=False))
    records = run.finish()
    # the RST ends its own flow at once (tcp_end.c), never the evicted one
    assert sorted((r["src_addr"], r["end_reason"]) for r in records) == [
        (CLIENT, "lack_of_resources"), (SERVER, "end_of_flow")]
    assert run.meter.counters()["flows_active"] == 0
