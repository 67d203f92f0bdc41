"""TCP ends by sequence numbers (cmeter/tcp_end.c): a connection's records
leave when both FINs are acknowledged or at a RST, without waiting for the
end grace; late segments without data are absorbed, never a tiny flow; the
grace stays the fallback.  Frames built with scapy, fed at chosen times."""

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from captures import START_US, assert_conserved
from test_flow_table import CLIENT, SERVER, Run, frame

CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::2"
C_ISN, S_ISN = 1000, 5000_000


def seg(flags, forward=True, seq=0, ack=0, data=b"", ipv6=False):
    """A segment of the client (forward) or the server, ports 50000 and 80."""
    src, dst = (CLIENT6, SERVER6) if ipv6 else (CLIENT, SERVER)
    sport, dport = 50000, 80
    if not forward:
        src, dst, sport, dport = dst, src, dport, sport
    ip = IPv6(src=src, dst=dst) if ipv6 else IP(src=src, dst=dst)
    return frame(ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq % 2**32,
                          ack=ack % 2**32) / data)


class Connection:
    """One TCP connection with its real sequence numbers, fed into a Run."""

    def __init__(self, run, ipv6=False, client_isn=C_ISN, server_isn=S_ISN):
        self.run, self.ipv6, self.at = run, ipv6, 0
        self.seq = {True: client_isn, False: server_isn}

    def send(self, flags, forward=True, data=b"", seq=None, ack=None):
        seq = self.seq[forward] if seq is None else seq
        ack = self.seq[not forward] if ack is None else ack
        self.run.feed(self.at, seg(flags, forward, seq, ack, data, self.ipv6))
        self.at += 1
        if seq == self.seq[forward]:
            self.seq[forward] += len(data) + ("S" in flags) + ("F" in flags)
        return self

    def open(self):
        self.send("S", ack=0).send("SA", False).send("A")
        return self.send("PA", data=b"GET /").send("PA", False, data=b"200 OK").send("A")

    def active(self):
        return self.run.meter.counters()["flows_active"]


def ends(run):
    return sorted((r["src_addr"], r["packets"], r["end_reason"]) for r in run.records)


@pytest.mark.parametrize("biflow", [False, True])
def test_fin_ack_fin_ack_leaves_at_the_final_ack(biflow):
    run = Run(tcp_end_grace=60, idle_timeout=300, bidirectional=biflow)
    c = Connection(run).open()
    c.send("FA").send("A", False).send("FA", False)
    assert run.records == [] and c.active() == (1 if biflow else 2)
    c.send("A")   # acknowledges the server's FIN: both acknowledged
    assert c.active() == 0 and run.meter.counters()["tcp_ends_by_fin"] == 1
    assert {r["end_reason"] for r in run.records} == {"end_of_flow"}
    if biflow:
        assert [(r["packets"], r["reverse_packets"]) for r in run.records] == [(6, 4)]
    else:
        assert ends(run) == [(CLIENT, 6, "end_of_flow"), (SERVER, 4, "end_of_flow")]
    assert_conserved(run.records, run.meter.counters())


def test_the_servers_fin_may_carry_the_ack_of_the_clients():
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Connection(run).open()
    c.send("FA").send("FA", False)
    assert c.active() == 2
    c.send("A")
    assert ends(run) == [(CLIENT, 6, "end_of_flow"), (SERVER, 3, "end_of_flow")]


@pytest.mark.parametrize("biflow", [False, True])
def test_simultaneous_close(biflow):
    run = Run(tcp_end_grace=60, idle_timeout=300, bidirectional=biflow)
    c = Connection(run).open()
    client_fin, server_fin = c.seq[True], c.seq[False]
    c.send("FA").send("FA", False, ack=client_fin)   # crossed: neither saw the other's
    c.send("A", ack=server_fin + 1)
    assert c.active() > 0            # the client's FIN is not acknowledged yet
    c.send("A", False, ack=client_fin + 1)
    assert c.active() == 0 and {r["end_reason"] for r in run.records} == {"end_of_flow"}


def test_an_ack_below_the_fin_does_not_end_it():
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Connection(run).open()
    fin = c.seq[True]
    c.send("FA").send("FA", False, ack=fin)   # acknowledges the data, not the FIN
    c.send("A")
    assert c.active() == 2
    c.send("A", False, ack=fin + 1)
    assert c.active() == 0


def test_a_fin_with_data_takes_the_sequence_number_after_it():
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Connection(run).open()
    c.send("FPA", data=b"bye!")
    c.send("FA", False).send("A")
    assert c.active() == 0


def test_sequence_numbers_wrap():
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Connection(run, client_isn=2**32 - 9, server_isn=2**32 - 1).open()
    c.send("FA").send("FA", False).send("A")
    assert c.active() == 0 and run.meter.counters()["tcp_ends_by_fin"] == 1


def test_ipv6():
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Connection(run, ipv6=True).open()
    c.send("FA").send("FA", False).send("A")
    assert c.active() == 0 and len(run.records) == 2


@pytest.mark.parametrize("biflow", [False, True])
def test_rst_ends_both_directions_at_once(biflow):
    run = Run(tcp_end_grace=60, idle_timeout=300, bidirectional=biflow)
    c = Connection(run).open()
    c.send("RA", False)
    assert c.active() == 0 and run.meter.counters()["tcp_ends_by_rst"] == 1
    assert {r["end_reason"] for r in run.records} == {"end_of_flow"}


def test_late_segments_are_absorbed_not_made_into_flows():
    """The client's final ACK was lost after the capture point: the server
    retransmits its FIN and the client (in TIME_WAIT) acknowledges it again."""
    run = Run(tcp_end_grace=2, idle_timeout=300)
    c = Connection(run).open()
    server_fin = c.seq[False]
    c.send("FA").send("FA", False).send("A")
    assert len(run.records) == 2
    c.send("FA", False, seq=server_fin).send("A")   # the retransmission and its ACK
    c.send("R", False, seq=server_fin + 1, ack=0)   # and a RST for good measure
    counters = run.meter.counters()
    assert counters["flows_active"] == 0 and counters["dropped_tcp_after_end"] == 3
    run.records += run.meter.drain()
    assert len(run.records) == 2                     # no tiny flow
    assert_conserved(run.finish(), run.meter.counters())


def test_after_the_grace_a_late_segment_is_a_flow_again():
    run = Run(tcp_end_grace=2, idle_timeout=300)
    c = Connection(run).open()
    c.send("FA").send("FA", False).send("A")
    c.at = 2500
    c.send("A")
    assert run.meter.counters()["dropped_tcp_after_end"] == 0 and c.active() == 1


def test_data_or_a_new_syn_after_the_end_starts_a_new_flow():
    run = Run(tcp_end_grace=2, idle_timeout=300)
    c = Connection(run).open()
    c.send("FA").send("FA", False).send("A")
    c.send("PA", data=b"more")                 # data is never a leftover
    c.send("S", ack=0)                          # nor a new connection on the same ports
    assert run.meter.counters()["dropped_tcp_after_end"] == 0
    assert sorted(r["packets"] for r in run.finish()) == [2, 3, 6]


def test_a_lost_final_ack_ends_by_the_grace():
    run = Run(tcp_end_grace=2, idle_timeout=300)
    c = Connection(run).open()
    c.send("FA").send("FA", False)             # the final ACK never seen
    assert run.expire(1000).records == [] and c.active() == 2
    assert ends(run.expire(2100)) == [(CLIENT, 5, "end_of_flow"), (SERVER, 3, "end_of_flow")]
    assert run.meter.counters()["tcp_ends_by_fin"] == 0


def test_a_retransmitted_fin_before_the_ack_changes_nothing():
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Connection(run).open()
    fin = c.seq[True]
    c.send("FA").send("FA", seq=fin)           # retransmitted: the same sequence number
    c.send("FA", False).send("A")
    assert c.active() == 0
    assert ends(run) == [(CLIENT, 7, "end_of_flow"), (SERVER, 3, "end_of_flow")]


def test_many_connections_closing_at_once_fall_back_to_the_grace_when_states_run_out():
    """The state table is bounded (64 states for a small table): beyond it,
    displaced connections end by the grace, and nothing is lost."""
    run = Run(max_flows=1000, tcp_end_grace=2, idle_timeout=300)
    for port in range(300):
        run.feed(port, frame(IP(src=CLIENT, dst=SERVER) / TCP(sport=port + 1, dport=80,
                                                                flags="FA", seq=7, ack=9)))
    counters = run.meter.counters()
    assert counters["tcp_end_states_displaced"] > 0
    for port in range(300):
        run.feed(400 + port, frame(IP(src=SERVER, dst=CLIENT) / TCP(sport=80, dport=port + 1,
                                                                     flags="FA", seq=9, ack=8)))
        run.feed(400 + port, frame(IP(src=CLIENT, dst=SERVER) / TCP(sport=port + 1, dport=80,
                                                                     flags="A", seq=8, ack=10)))
    assert run.meter.counters()["tcp_ends_by_fin"] < 300
    records = run.expire(5000).records
    assert len(records) == 600 and {r["end_reason"] for r in records} == {"end_of_flow"}
    assert_conserved(run.finish(), run.meter.counters())


class Views(Connection):
    """A connection seen by captures of their own: ingress captures of a
    router see one direction each; a second capture sees the same packets."""

    def __init__(self, run, forward_at=(1,), reverse_at=(2,)):
        super().__init__(run)
        self.captures = {True: forward_at, False: reverse_at}

    def send(self, flags, forward=True, data=b"", seq=None, ack=None):
        seq = self.seq[forward] if seq is None else seq
        ack = self.seq[not forward] if ack is None else ack
        for ifindex in self.captures[forward]:
            self.run.meter.process_frame(seg(flags, forward, seq, ack, data), 1,
                                         START_US + self.at * 1000, ifindex=ifindex)
        self.run.records += self.run.meter.drain()
        self.at += 1
        if seq == self.seq[forward]:
            self.seq[forward] += len(data) + ("S" in flags) + ("F" in flags)
        return self


def test_a_router_s_ingress_captures_one_direction_each_and_both_leave_at_the_end():
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Views(run).open()
    c.send("FA").send("FA", False)
    assert c.active() == 2
    c.send("A")
    assert c.active() == 0 and sorted(r["ifindex"] for r in run.records) == [1, 2]


def test_two_captures_of_each_direction_end_every_view_and_absorb_nothing():
    """direction both on the two interfaces of a router: four entries."""
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Views(run, forward_at=(1, 2), reverse_at=(2, 1)).open()
    c.send("FA").send("FA", False).send("A")
    counters = run.meter.counters()
    assert counters["flows_active"] == 0 and counters["dropped_tcp_after_end"] == 0
    assert len(run.records) == 4 and {r["end_reason"] for r in run.records} == {"end_of_flow"}
    assert_conserved(run.finish(), run.meter.counters())


def test_an_ack_met_before_the_fin_it_acknowledges():
    """Captures of the two ways are read apart: the client's final ACK may
    be processed before the server's FIN it acknowledges."""
    run = Run(tcp_end_grace=60, idle_timeout=300)
    c = Connection(run).open()
    server_fin = c.seq[False]
    c.send("FA").send("A", ack=server_fin + 1)     # the ACK of a FIN not met yet
    assert c.active() == 2
    c.send("FA", False)
    assert c.active() == 0 and run.meter.counters()["tcp_ends_by_fin"] == 1


def test_a_fragment_after_the_end_is_never_absorbed():
    from scapy.layers.inet import fragment
    run = Run(tcp_end_grace=2, idle_timeout=300)
    c = Connection(run).open()
    c.send("FA").send("FA", False).send("A")
    late = IP(src=CLIENT, dst=SERVER, id=77) / TCP(sport=50000, dport=80, flags="PA",
                                                    seq=c.seq[True]) / (b"d" * 2000)
    for piece in reversed(fragment(late, 1000)):   # the later fragments first
        run.feed(c.at, frame(piece))
    assert run.meter.counters()["dropped_tcp_after_end"] == 0
    assert_conserved(run.finish(), run.meter.counters())
