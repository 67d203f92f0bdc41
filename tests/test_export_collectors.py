"""Exports judged by real collectors: nfdump's nfcapd and tshark's decoder.

The same captures as the metering tests (a generated one everywhere, the
real-stacks one where namespaces can be made) go out as IPFIX, NetFlow v9,
v5 and IPFIX biflows; what the collectors store must be the capture's truth,
flow by flow, and tshark must find nothing wrong.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from captures import START_US, differences, write_pcap
from collector_tools import (
    NFCAPD,
    NFDUMP,
    TSHARK,
    DatagramRecorder,
    Nfcapd,
    cflow_totals,
    free_tcp_port,
    free_udp_port,
    missing_tools,
    per_flow_key,
    sequence_problems,
    structure_problems,
    tshark_decode,
    tshark_problems,
)
from flowprobe.export.fields import ELEMENTS, REVERSE_PEN
from realstack import simple_truth

GENERATOR = Path(__file__).resolve().parent.parent / "tools" / "gen_capture.py"
LONG = ("--idle-timeout", "3600", "--active-timeout", "3600", "--unanswered-timeout", "3600")
PROFILES = {"ipfix": "ipfix", "netflow9": "netflow9", "netflow5": "netflow5",
            "ipfix-biflow": "ipfix?biflow=1"}
NAMES = ("truth", "collector")
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

pytestmark = pytest.mark.skipif(missing_tools(NFCAPD, NFDUMP, TSHARK) is not None,
                                reason=f"collectors: {missing_tools(NFCAPD, NFDUMP, TSHARK)}")


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("generated")
    pcap, truth = directory / "gen.pcap", directory / "gen.truth.json"
    subprocess.run([sys.executable, str(GENERATOR), "-o", str(pcap), "--truth", str(truth),
                    "--packets", "4000", "--flows", "150", "--seed", "3"],
                   check=True, capture_output=True)
    flows = json.loads(truth.read_text())["flows"]
    return pcap, {(f["ip_version"], f["protocol"], f["src_addr"], f["dst_addr"], f["src_port"],
                   f["dst_port"]): (f["packets"], f["octets"]) for f in flows}


@pytest.fixture(params=["generated", "real-stacks"])
def capture(request, generated):
    if request.param == "generated":
        return generated
    path = request.getfixturevalue("real_stacks_capture")
    return path, simple_truth.truth(str(path))


def export(capture_path, *urls, extra=()):
    result = subprocess.run([sys.executable, "-m", "flowprobe", "read", str(capture_path), *LONG,
                             *extra, *(arg for url in urls for arg in ("--export", url))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1])


def expected_for(protocol, truth):
    if protocol == "netflow5":
        return {k: v for k, v in truth.items() if k[0] == 4}
    return truth


@pytest.mark.parametrize("protocol", list(PROFILES))
def test_nfcapd_stores_the_capture_exactly(capture, protocol):
    path, truth = capture
    with Nfcapd() as collector:
        scheme, _, query = PROFILES[protocol].partition("?")
        summary = export(path, f"{scheme}://127.0.0.1:{collector.port}?{query}")
        flows = collector.flows()
        stats = collector.stats()
        complaints = collector.complaints()
    assert differences(expected_for(protocol, truth), per_flow_key(flows), NAMES) == []
    assert stats["sequence_failures"] == 0 and complaints == []
    exporter = summary["exporters"][0]
    assert exporter["records_not_sent"] == 0 and exporter["errors"] == 0
    has_ipv6 = any(k[0] == 6 for k in truth)
    assert (exporter["records_not_exportable"] > 0) == (protocol == "netflow5" and has_ipv6)


@pytest.mark.parametrize("protocol", list(PROFILES))
def test_tshark_decodes_everything_and_finds_nothing_wrong(capture, protocol, tmp_path):
    path, truth = capture
    expected = expected_for(protocol, truth)
    with DatagramRecorder() as recorder:
        scheme, _, query = PROFILES[protocol].partition("?")
        summary = export(path, f"{scheme}://127.0.0.1:{recorder.port}?{query}")
        recorder.wait(summary["exporters"][0]["messages_sent"])
        recorder.write_pcap(tmp_path / "export.pcap")
    assert tshark_problems(tmp_path / "export.pcap", recorder.port) == []
    messages = tshark_decode(tmp_path / "export.pcap", recorder.port)
    assert structure_problems(messages) == [] and sequence_problems(messages) == []
    totals = cflow_totals(messages)
    assert totals["unknown_sets"] == 0
    assert totals["packets"] + totals["reverse_packets"] == sum(p for p, _ in expected.values())
    assert totals["octets"] + totals["reverse_octets"] == sum(o for _, o in expected.values())


def test_ipfix_over_tcp(generated, tmp_path):
    path, truth = generated
    with DatagramRecorder(tcp=True) as recorder:
        summary = export(path, f"ipfix://127.0.0.1:{recorder.port}?transport=tcp")
        recorder.wait(1)
        recorder.write_pcap(tmp_path / "tcp.pcap")
    assert summary["exporters"][0]["records_not_sent"] == 0
    assert tshark_problems(tmp_path / "tcp.pcap", recorder.port, transport="tcp") == []
    messages = tshark_decode(tmp_path / "tcp.pcap", recorder.port, transport="tcp")
    assert messages[0]["templates"] and sequence_problems(messages) == []
    totals = cflow_totals(messages)
    assert (totals["packets"], totals["octets"]) == (sum(p for p, _ in truth.values()),
                                                     sum(o for _, o in truth.values()))


# ---- every element, with the value it should carry ----

def element_capture(tmp_path):
    frames = [
        bytes(Ether(**MACS) / Dot1AD(vlan=100) / Dot1Q(vlan=200)
              / IP(src="10.0.0.1", dst="10.0.0.2", tos=0xB8) / TCP(sport=1234, dport=80,
                                                                  flags="S")),
        bytes(Ether(**MACS) / Dot1AD(vlan=100) / Dot1Q(vlan=200)
              / IP(src="10.0.0.2", dst="10.0.0.1", tos=0xB8) / TCP(sport=80, dport=1234,
                                                                  flags="SA")),
        bytes(Ether(**MACS) / IP(src="10.0.0.3", dst="10.0.0.4") / ICMP(type=3, code=1)),
        bytes(Ether(**MACS) / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest()),
        bytes(Ether(**MACS) / IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6EchoReply()),
        bytes(Ether(**MACS) / IP(src="10.0.0.5", dst="10.0.0.6") / ESP(spi=0xDEADBEEF, seq=1)
              / (b"\0" * 16)),
    ]
    return write_pcap(tmp_path / "elements.pcap",
                      [(START_US + 1000 * n, frame) for n, frame in enumerate(frames)])


def decoded_records(tmp_path, path, url):
    with DatagramRecorder() as recorder:
        summary = export(path, url.format(port=recorder.port))
        recorder.wait(summary["exporters"][0]["messages_sent"])
        recorder.write_pcap(tmp_path / "out.pcap")
    assert tshark_problems(tmp_path / "out.pcap", recorder.port) == []
    messages = tshark_decode(tmp_path / "out.pcap", recorder.port)
    templates = [t for m in messages for t in m["templates"]]
    records = [r["fields"] for m in messages for r in m["records"] if r["kind"] == "data"]
    return templates, records


def by_source(records, address):
    (record,) = [r for r in records
                 if address in (r.get("cflow.srcaddr"), r.get("cflow.srcaddrv6"))]
    return record


def test_every_element_decodes_with_its_value(tmp_path):
    names = [n for n in ELEMENTS if ELEMENTS[n].enterprise == 0]
    path = element_capture(tmp_path)
    templates, records = decoded_records(
        tmp_path, path, "ipfix://127.0.0.1:{port}?fields=" + ",".join(names))
    announced = {(f["enterprise"], f["type"]) for t in templates for f in t["fields"]}
    assert {(0, ELEMENTS[n].ipfix_id) for n in names} <= announced

    tcp = by_source(records, "10.0.0.1")
    assert tcp["cflow.dstaddr"] == "10.0.0.2"
    assert (tcp["cflow.srcport"], tcp["cflow.dstport"], tcp["cflow.protocol"]) == ("1234", "80",
                                                                                    "6")
    assert (tcp["cflow.tos"], tcp["cflow.tcpflags"]) == ("0xb8", "0x02")
    assert (tcp["cflow.packets"], tcp["cflow.octets"]) == ("1", "40")
    assert (tcp["cflow.vlanid"], tcp["cflow.dot1q_customer_vlan_id"]) == ("100", "200")
    assert (tcp["cflow.ip_version"], tcp["cflow.flow_end_reason"]) == ("4", "4")
    assert (tcp["cflow.inputint"], tcp["cflow.outputint"]) == ("0", "0")
    assert tcp["cflow.abstimestart"] == "Nov 14, 2023 22:13:20.000000000 UTC"
    assert tcp["cflow.abstimeend"] == "Nov 14, 2023 22:13:20.000000000 UTC"
    unreachable = by_source(records, "10.0.0.3")
    assert unreachable["cflow.icmp_type_code_ipv4"] == "0x0301"
    assert unreachable["cflow.dstport"] == str(3 * 256 + 1)
    echo = by_source(records, "2001:db8::1")
    assert echo["cflow.dstaddrv6"] == "2001:db8::2"
    assert (echo["cflow.icmp_ipv6_type"], echo["cflow.icmp_ipv6_code"]) == ("128", "0")
    assert by_source(records, "10.0.0.5")["cflow.ipsec_spi"] == str(0xDEADBEEF)


def test_reverse_elements_decode_with_their_values(tmp_path):
    names = [n for n in ELEMENTS if ELEMENTS[n].family in (0, 4)]
    path = element_capture(tmp_path)
    templates, records = decoded_records(
        tmp_path, path, "ipfix://127.0.0.1:{port}?biflow=1&fields=" + ",".join(names))
    announced = {(f["enterprise"], f["type"]) for t in templates for f in t["fields"]}
    assert {(REVERSE_PEN, ELEMENTS[n].ipfix_id) for n in names
            if ELEMENTS[n].enterprise} <= announced
    tcp = by_source(records, "10.0.0.1")
    assert (tcp["cflow.packets"], tcp["reverse:cflow.packets"]) == ("1", "1")
    assert (tcp["cflow.octets"], tcp["reverse:cflow.octets"]) == ("40", "40")
    assert tcp["reverse:cflow.tcpflags"] == "0x12"
    # tshark shows reverse times under the forward name: [forward, reverse]
    assert tcp["cflow.abstimestart"] == ["Nov 14, 2023 22:13:20.000000000 UTC",
                                         "Nov 14, 2023 22:13:20.001000000 UTC"]


def test_interface_names_go_out_as_options(tmp_path):
    from flowprobe.export.collectors import Exporter, profile_from_url
    with DatagramRecorder() as recorder:
        exporter = Exporter([profile_from_url(f"ipfix://127.0.0.1:{recorder.port}")],
                            boot_ms=START_US // 1000, interfaces={2: "eth0", 7: "br-lan"})
        exporter.start(START_US // 1000)
        exporter.finish(START_US // 1000)
        recorder.wait(3)
        recorder.write_pcap(tmp_path / "names.pcap")
    assert tshark_problems(tmp_path / "names.pcap", recorder.port) == []
    options = [r["fields"] for m in tshark_decode(tmp_path / "names.pcap", recorder.port)
               for r in m["records"] if r["kind"] == "options"]
    names = {r["cflow.inputint"]: r["cflow.if_name"] for r in options if "cflow.if_name" in r}
    assert names == {"2": "eth0", "7": "br-lan"}


def test_interfaces_opened_after_the_start_are_named_too(tmp_path):
    """The daemon's exporter starts before its captures open: the table it
    shares fills later, and the names still go out (they went nowhere before:
    an empty table was replaced by a private one), after what was queued,
    with sequence numbers that follow on."""
    from flowprobe.export.collectors import Exporter, profile_from_url
    names = {}
    now = START_US // 1000
    with DatagramRecorder() as recorder:
        exporter = Exporter([profile_from_url(f"ipfix://127.0.0.1:{recorder.port}")],
                            boot_ms=now, interfaces=names)
        exporter.start(now)
        names.update({2: "eth0", 7: "br-lan"})   # the captures open
        exporter.tick(now + 1000)
        names[9] = "wan"                         # one more, later
        exporter.tick(now + 2000)
        exporter.finish(now + 3000)
        recorder.wait(3)
        recorder.write_pcap(tmp_path / "names.pcap")
    messages = tshark_decode(tmp_path / "names.pcap", recorder.port)
    assert tshark_problems(tmp_path / "names.pcap", recorder.port) == []
    assert sequence_problems(messages) == []
    options = [r["fields"] for m in messages for r in m["records"] if r["kind"] == "options"]
    sent = {r["cflow.inputint"]: r["cflow.if_name"] for r in options if "cflow.if_name" in r}
    assert sent == {"2": "eth0", "7": "br-lan", "9": "wan"}


# ---- collectors that fail, and groups ----

def test_dead_collectors_cost_only_their_counters(generated):
    path, truth = generated
    closed_udp, closed_tcp = free_udp_port(), free_tcp_port()
    with Nfcapd() as alive:
        summary = export(path, f"ipfix://127.0.0.1:{closed_udp}",
                         f"ipfix://127.0.0.1:{closed_tcp}?transport=tcp",
                         f"netflow9://127.0.0.1:{alive.port}")
        flows = alive.flows()
    assert differences(truth, per_flow_key(flows), NAMES) == []
    refused_udp, refused_tcp, good = summary["exporters"]
    assert refused_udp["errors"] > 0 and "refused" in refused_udp["last_error"]
    records = summary["counters"]["records_drained"]
    assert good["records_sent"] == records + 2  # statistics at start and at the end
    # over TCP the statistics go only at the end: no session at the start
    assert refused_tcp["records_not_sent"] == records + 1 and refused_tcp["records_sent"] == 0
    assert summary["counters"]["packets_metered"] == sum(p for p, _ in truth.values())


def test_a_group_shares_its_records_round_robin(generated):
    path, truth = generated
    with Nfcapd() as first, Nfcapd() as second, Nfcapd() as everything:
        export(path, f"ipfix://127.0.0.1:{first.port}?group=pair",
               f"ipfix://127.0.0.1:{second.port}?group=pair",
               f"netflow9://127.0.0.1:{everything.port}")
        first_flows, second_flows = first.flows(), second.flows()
        all_flows = everything.flows()
    assert abs(len(first_flows) - len(second_flows)) <= 2
    assert differences(truth, per_flow_key(first_flows + second_flows), NAMES) == []
    assert differences(truth, per_flow_key(all_flows), NAMES) == []


def test_a_reload_keeps_the_session_of_an_unchanged_collector(generated, tmp_path):
    """A reload that adds a collector replaces the exporter; the collector
    whose profile did not change goes on in the new one: the same socket,
    sequence numbers without a gap, no second start (statistics, templates)."""
    from flowprobe.export.collectors import Exporter, profile_from_url
    from flowprobe.meter import Meter
    from flowprobe.settings import MeterSettings
    path, _ = generated
    meter = Meter(MeterSettings())   # default timeouts: records leave while reading
    with DatagramRecorder() as kept, DatagramRecorder() as dropped, \
            DatagramRecorder() as added:
        def profile(recorder):
            return profile_from_url(f"ipfix://127.0.0.1:{recorder.port}")
        now = START_US // 1000
        first = Exporter([profile(kept), profile(dropped)], boot_ms=now)
        first.start(now)
        exporter, records, before_reload = first, 0, None
        source = meter.open_file(str(path))
        while meter.dispatch(source, 200):
            if before_reload is None and records >= 100:   # the reload, on the way
                before_reload = records
                second = Exporter([profile(kept), profile(added)], boot_ms=now,
                                  carry_over=first)
                first.finish(now, handed_over=second.carried)
                second.start(now)
                exporter = second
            for batch, count in meter.drain_raw():
                exporter.export(batch, count, now)
                records += count
        meter.close(source)
        meter.flush()
        for batch, count in meter.drain_raw():
            exporter.export(batch, count, now)
            records += count
        exporter.finish(now)
        for recorder in (kept, dropped, added):
            recorder.wait(3)
            recorder.write_pcap(tmp_path / f"{recorder.port}.pcap")
    kept_messages = tshark_decode(tmp_path / f"{kept.port}.pcap", kept.port)
    assert len({m["exporter"] for m in kept_messages}) == 1      # one session throughout
    assert sequence_problems(kept_messages) == []
    data = sum(1 for m in kept_messages for r in m["records"] if r["kind"] == "data")
    options = [m for m in kept_messages if any(r["kind"] == "options" for r in m["records"])]
    assert data == records > 0
    assert len(options) == 2                 # statistics at the start and at the end only
    assert sum(1 for m in tshark_decode(tmp_path / f"{dropped.port}.pcap", dropped.port)
               for r in m["records"] if r["kind"] == "data") == before_reload < records
