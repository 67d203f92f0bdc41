"""ICMP errors joined to their flows (cmeter/icmp_error.c, option
icmp_errors): the error counts on the flow whose packet it quotes and on
its own ICMP flow; errors that name no flow, or whose quote cannot be read,
are counted in status.  Frames built with scapy."""

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPerror6, IPv6

from captures import START_US, assert_conserved, cli_records, run_cli, write_pcap
from test_flow_table import CLIENT, SERVER, Run, frame

ROUTER = "10.9.9.9"
CLIENT6, SERVER6, ROUTER6 = "2001:db8::1", "2001:db8::2", "2001:db8::99"
FRAG_NEEDED = 3 << 8 | 4


def tcp_data(forward=True, size=1400, ipv6=False):
    src, dst = (CLIENT6, SERVER6) if ipv6 else (CLIENT, SERVER)
    sport, dport = 50000, 443
    if not forward:
        src, dst, sport, dport = dst, src, dport, sport
    ip = IPv6(src=src, dst=dst) if ipv6 else IP(src=src, dst=dst, flags="DF")
    return frame(ip / TCP(sport=sport, dport=dport, flags="PA", seq=1, ack=1) / (b"x" * size))


def frag_needed(quote_from=CLIENT, quote_to=SERVER, sport=50000, dport=443, mtu=1280):
    """A router's "fragmentation needed" about a packet quote_from sent."""
    return frame(IP(src=ROUTER, dst=quote_from) / ICMP(type=3, code=4, nexthopmtu=mtu)
                 / IPerror(src=quote_from, dst=quote_to, flags="DF")
                 / TCPerror(sport=sport, dport=dport, flags="PA", seq=1, ack=1))


def packet_too_big(mtu=1280):
    return frame(IPv6(src=ROUTER6, dst=CLIENT6) / ICMPv6PacketTooBig(mtu=mtu)
                 / IPerror6(src=CLIENT6, dst=SERVER6)
                 / TCPerror(sport=50000, dport=443, flags="PA", seq=1, ack=1))


def by_protocol(records):
    return {(r["protocol"], r["src_addr"]): r for r in records}


@pytest.mark.parametrize("biflow", [False, True])
def test_fragmentation_needed_counts_on_the_tcp_flow_and_its_own(biflow):
    run = Run(icmp_errors=True, bidirectional=biflow)
    run.feed(0, tcp_data()).feed(1, tcp_data(False, 10)).feed(2, frag_needed())
    run.feed(3, tcp_data()).feed(4, frag_needed())
    live = by_protocol(run.meter.snapshot())
    tcp = live[(6, CLIENT)]
    assert (tcp["icmp_errors"], tcp["icmp_error_type"], tcp["icmp_error_code"]) == (2, 3, 4)
    assert live[(1, ROUTER)]["icmp_errors"] == 2
    if not biflow:
        assert "icmp_errors" not in live[(6, SERVER)]   # the other direction sent nothing too big
    counters = run.meter.counters()
    assert (counters["icmp_errors_joined"], counters["icmp_errors_unmatched"]) == (2, 0)
    records = by_protocol(run.finish())
    assert records[(6, CLIENT)]["icmp_errors"] == 2 and records[(6, CLIENT)]["packets"] == 2


def test_a_biflow_started_by_the_other_side_is_found_by_its_reverse():
    """The server spoke first (the entry is keyed server → client) and the
    client's packets are the ones too big: the quote names the reverse."""
    run = Run(icmp_errors=True, bidirectional=True)
    run.feed(0, tcp_data(False, 10)).feed(1, tcp_data()).feed(2, frag_needed())
    live = by_protocol(run.meter.snapshot())
    assert live[(6, SERVER)]["icmp_errors"] == 1


def test_ipv6_packet_too_big():
    run = Run(icmp_errors=True)
    run.feed(0, tcp_data(ipv6=True)).feed(1, packet_too_big())
    tcp = by_protocol(run.meter.snapshot())[(6, CLIENT6)]
    assert (tcp["icmp_errors"], tcp["icmp_error_type"], tcp["icmp_error_code"]) == (1, 2, 0)
    assert run.meter.counters()["icmp_errors_joined"] == 1


def test_time_exceeded_for_udp_and_an_icmp_echo():
    """traceroute: UDP probes and pings whose TTL ran out."""
    run = Run(icmp_errors=True)
    run.feed(0, frame(IP(src=CLIENT, dst=SERVER, ttl=1) / UDP(sport=33434, dport=33435)))
    run.feed(1, frame(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11, code=0)
                      / IPerror(src=CLIENT, dst=SERVER, ttl=1)
                      / UDPerror(sport=33434, dport=33435)))
    run.feed(2, frame(IP(src=CLIENT, dst=SERVER, ttl=1) / ICMP(type=8, id=7, seq=1)))
    run.feed(3, frame(IP(src=ROUTER, dst=CLIENT) / ICMP(type=11, code=0)
                      / IPerror(src=CLIENT, dst=SERVER, ttl=1) / ICMP(type=8, id=7, seq=1)))
    live = by_protocol(run.meter.snapshot())
    assert live[(17, CLIENT)]["icmp_errors"] == 1 and live[(17, CLIENT)]["icmp_error_type"] == 11
    echo = [r for r in run.meter.snapshot() if r["protocol"] == 1 and r["src_addr"] == CLIENT]
    assert echo[0]["icmp_errors"] == 1
    assert run.meter.counters()["icmp_errors_joined"] == 2


def test_an_error_about_no_flow_is_counted_unmatched():
    run = Run(icmp_errors=True)
    run.feed(0, frag_needed(sport=40000))
    counters = run.meter.counters()
    assert (counters["icmp_errors_joined"], counters["icmp_errors_unmatched"]) == (0, 1)
    assert by_protocol(run.meter.snapshot())[(1, ROUTER)]["icmp_errors"] == 1
    assert_conserved(run.finish(), run.meter.counters())


@pytest.mark.parametrize("quoted", [
    bytes(IPerror(src=CLIENT, dst=SERVER, proto=6))[:20] + b"\x00\x01",   # 2 bytes of TCP
    bytes(IPerror(src=CLIENT, dst=SERVER, proto=6))[:12],                 # not even the addresses
    bytes(IPerror(src=CLIENT, dst=SERVER, proto=6, frag=100)) + b"\x00" * 8,  # a later fragment
    b"\x45" + b"\x00" * 30,                                               # garbage
])
def test_a_quote_cut_short_or_unreadable_is_counted_and_the_error_still_metered(quoted):
    run = Run(icmp_errors=True)
    run.feed(0, tcp_data())
    run.feed(1, frame(IP(src=ROUTER, dst=CLIENT) / ICMP(type=3, code=4) / quoted))
    counters = run.meter.counters()
    assert counters["icmp_errors_joined"] == 0
    assert counters["icmp_errors_unreadable"] + counters["icmp_errors_unmatched"] == 1
    live = by_protocol(run.meter.snapshot())
    assert "icmp_errors" not in live[(6, CLIENT)] and live[(1, ROUTER)]["icmp_errors"] == 1
    assert_conserved(run.finish(), run.meter.counters())


def test_a_quote_cut_by_the_capture_is_read_no_further():
    run = Run(icmp_errors=True)
    run.feed(0, tcp_data())
    error = frag_needed()
    run.meter.process_frame(error[:14 + 20 + 8 + 21], 1, 10**15, wire_length=len(error))
    assert run.meter.counters()["icmp_errors_unreadable"] == 1


def test_off_by_default_nothing_is_kept():
    run = Run()
    run.feed(0, tcp_data()).feed(1, frag_needed())
    assert all("icmp_errors" not in r for r in run.meter.snapshot())
    counters = run.meter.counters()
    assert counters["icmp_errors_joined"] == counters["icmp_errors_unmatched"] == 0
    assert Run(icmp_errors=True).meter.memory_bytes - run.meter.memory_bytes == 8 * (65536 + 1024)


def test_the_json_lines_carry_the_errors():
    from flowprobe._cmeter_ffi import ffi, lib
    run = Run(icmp_errors=True)
    run.feed(0, tcp_data()).feed(1, frag_needed())
    run.meter.flush()
    raw = ffi.new("struct fp_record[]", 8)
    n = lib.fp_meter_drain(run.meter._meter, raw, 8)
    out = ffi.new("char[]", 8 * 800)
    length = lib.fp_records_format_json(raw, n, 0, out, 8 * 800)
    text = ffi.string(out, length).decode()
    assert '"icmp_errors": 1, "icmp_error_type": 3, "icmp_error_code": 4' in text


def test_read_icmp_errors_json(tmp_path):
    path = write_pcap(tmp_path / "pmtu.pcap", [(START_US, tcp_data()),
                                                (START_US + 1000, frag_needed())])
    result = run_cli("read", "--icmp-errors", "--json", path)
    assert result.returncode == 0, result.stderr
    tcp = [r for r in cli_records(result.stdout) if r["protocol"] == 6]
    errors = [(r["icmp_errors"], r["icmp_error_type"], r["icmp_error_code"]) for r in tcp]
    assert errors == [(1, 3, 4)]
    plain = run_cli("read", "--json", path)
    assert all("icmp_errors" not in r for r in cli_records(plain.stdout))


IN, OUT = 1, 2   # FP_DIRECTION_IN, FP_DIRECTION_OUT


@pytest.mark.parametrize("comes", ["soon", "late", "never"])
def test_an_error_read_before_its_flow_waits_for_it(comes):
    """A capture per direction reads two rings in either order: the router's
    error going out may be read before the packets it is about coming in
    (seen in the PMTU live test).  It waits and is joined when they come;
    past its time, or at the end, it is unmatched."""
    run = Run(icmp_errors=True)

    def feed(at_ms, data, direction):
        run.meter.process_frame(data, 1, START_US + at_ms * 1000, ifindex=2, direction=direction)

    # both captures are open from the start: the incoming one has a slot
    feed(0, frame(IP(src=SERVER, dst=ROUTER) / UDP(sport=53, dport=53)), IN)
    feed(0, frag_needed(), OUT)
    assert run.meter.counters()["icmp_errors_joined"] == 0
    if comes == "soon":
        feed(1, tcp_data(), IN)   # read from the other ring afterwards, timed before
    elif comes == "late":
        feed(2_001, tcp_data(), IN)
    joined = 1 if comes == "soon" else 0
    run.meter.flush()
    counters = run.meter.counters()
    assert (counters["icmp_errors_joined"], counters["icmp_errors_unmatched"]) == \
        (joined, 1 - joined)
    if comes == "soon":
        tcp = by_protocol(run.meter.drain())[(6, CLIENT)]
        assert (tcp["icmp_errors"], tcp["icmp_error_type"], tcp["icmp_error_code"]) == (1, 3, 4)


def test_errors_waiting_are_bounded():
    run = Run(icmp_errors=True)
    run.meter.process_frame(tcp_data(False, 10), 1, START_US, ifindex=2, direction=IN)
    for n in range(40):
        run.meter.process_frame(frag_needed(sport=10000 + n), 1, START_US + n, ifindex=2,
                                direction=OUT)
    run.meter.process_frame(tcp_data(), 1, START_US + 3_000_000, ifindex=2, direction=IN)
    counters = run.meter.counters()
    # 32 wait; the 8 beyond are unmatched at once, the 32 when their time is up
    assert counters["icmp_errors_unmatched"] == 40 and counters["icmp_errors_joined"] == 0
