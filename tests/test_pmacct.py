"""Exports judged by pmacct's nfacctd (Debian pmacct), as test_export_collectors
judges them with nfdump: per flow key, pmacct's totals must be the capture's.

Times: pmacct takes IPFIX flowStart/EndMilliseconds to the millisecond; NetFlow
v9 and v5 times it computes in whole seconds (unix_secs - (sysUptime -
FIRST_SWITCHED) / 1000, integer division), so there it gets each time
rounded up to the second: the tests pin that down, as pmacct's limit, not
flowprobe's.  RFC 5103 reverse elements pmacct does not know: a biflow
profile's reverse counters reach it as custom primitives (aggregate_primitives).

One nfacctd serves the module; each test exports from an address of its own.
"""

import ipaddress
import itertools
import json
import subprocess
import sys

import pytest

from captures import differences
from collector_tools import (
    NFACCTD,
    PMACCT_PRIMITIVES,
    Nfacctd,
    missing_tools,
    nfdump_flow_times,
    per_flow_key,
    time_problems,
)
from realstack import simple_truth

LONG = ("--idle-timeout", "3600", "--active-timeout", "3600", "--unanswered-timeout", "3600")
NAMES = ("truth", "pmacct")
NAT_PRIMITIVES = ("post_nat_src_host", "post_nat_dst_host", "post_nat_src_port",
                  "post_nat_dst_port")
# RFC 5103 reverse counters as pmacct custom primitives (PEN 29305, element ids 1 and 2)
REVERSE_PRIMITIVES = (
    "name=reverse_octets field_type=29305:1 len=8 semantics=u_int",
    "name=reverse_packets field_type=29305:2 len=8 semantics=u_int",
)

pytestmark = pytest.mark.skipif(missing_tools(NFACCTD) is not None,
                                reason=f"pmacct: {missing_tools(NFACCTD)} (apt-get install pmacct)")

_sources = itertools.count(10)


@pytest.fixture(scope="module")
def pmacct():
    with Nfacctd(primitives=PMACCT_PRIMITIVES + NAT_PRIMITIVES,
                 custom_primitives=REVERSE_PRIMITIVES) as collector:
        yield collector


@pytest.fixture
def source():
    """This test's exporter address, as pmacct's peer_src_ip."""
    return f"127.0.0.{next(_sources)}"


@pytest.fixture(params=["generated", "real-stacks"])
def capture(request, generated_capture):
    path = (generated_capture if request.param == "generated"
            else request.getfixturevalue("real_stacks_capture"))
    return path, simple_truth.truth_report(str(path))


def export(capture_path, url):
    done = subprocess.run([sys.executable, "-m", "flowprobe", "read", str(capture_path), *LONG,
                           "--export", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])


def seconds(truth_times):
    """The capture's times as pmacct's timestamp primitives compute them from v9 and v5:
    unix_secs - (sysUptime - FIRST_SWITCHED) / 1000, rounded up to the second."""
    return {key: (-(-first // 1000) * 1000, -(-last // 1000) * 1000)
            for key, (first, last) in truth_times.items()}


@pytest.mark.parametrize("protocol", ["ipfix", "netflow9", "netflow5"])
def test_nfacctd_stores_the_capture_exactly(pmacct, source, capture, protocol):
    path, truth = capture
    flows_truth, times = truth.flows, truth.times
    if protocol == "netflow5":
        flows_truth = {k: v for k, v in flows_truth.items() if k[0] == 4}
        times = {k: v for k, v in times.items() if k[0] == 4}
    summary = export(path, f"{protocol}://127.0.0.1:{pmacct.port}?source={source}")
    flows = pmacct.flows(source)
    assert differences(flows_truth, per_flow_key(flows), NAMES) == []
    assert pmacct.complaints(source) == [] and pmacct.final_socket["drops"] == 0
    assert summary["exporters"][0]["records_not_sent"] == 0
    expected_times = times if protocol == "ipfix" else seconds(times)
    assert time_problems(expected_times, nfdump_flow_times(flows)) == []


def test_nfacctd_reads_ipfix_biflows_through_custom_primitives(pmacct, source,
                                                                generated_capture):
    truth = simple_truth.truth(str(generated_capture))
    export(generated_capture, f"ipfix://127.0.0.1:{pmacct.port}?biflow=1&source={source}")
    flows = pmacct.flows(source)
    assert pmacct.complaints(source) == []
    assert sum(f["reverse_packets"] for f in flows) > 0
    assert differences(truth, per_flow_key(flows), NAMES) == []


# ---- NAT fields and options, as the conntrack source sends them ----

NOW = 1_700_000_000_000


def nat_records():
    """Two masqueraded connections as the conntrack source reports them: biflows,
    the original direction after NAT in the post_* fields."""
    from flowprobe._cmeter_ffi import ffi
    records = ffi.new("struct fp_record[]", 2)
    for n, (src, dst, sport, dport, protocol) in enumerate(
            [("192.168.1.10", "203.0.113.5", 40000, 443, 6),
             ("192.168.1.11", "198.51.100.53", 5353, 53, 17)]):
        r = records[n]
        r.ip_version, r.protocol, r.nat = 4, protocol, 1
        r.src_addr[0:4] = list(ipaddress.ip_address(src).packed)
        r.dst_addr[0:4] = list(ipaddress.ip_address(dst).packed)
        r.post_src_addr[0:4] = list(ipaddress.ip_address("192.0.2.1").packed)
        r.post_dst_addr[0:4] = list(ipaddress.ip_address(dst).packed)
        r.src_port, r.dst_port, r.post_src_port, r.post_dst_port = sport, dport, 61000 + n, dport
        r.packets, r.octets, r.reverse_packets, r.reverse_octets = 10 + n, 1000, 8, 4000 + n
        r.flow_start_ms, r.flow_end_ms = NOW + 250, NOW + 1250
        r.reverse_start_ms, r.reverse_end_ms = NOW + 260, NOW + 1240
    return records


@pytest.mark.parametrize("protocol", ["ipfix", "netflow9"])
def test_nfacctd_reads_nat_fields_and_ignores_our_options(pmacct, source, protocol):
    from flowprobe.export.collectors import Exporter, profile_from_url
    from flowprobe.export.fields import with_nat_fields
    url = f"{protocol}://127.0.0.1:{pmacct.port}?source={source}"
    exporter = Exporter(with_nat_fields([profile_from_url(url)]), boot_ms=NOW,
                        meter_biflow=True, interfaces={2: "eth0", 7: "br-lan"})
    exporter.start(NOW)                      # options: statistics, interface names
    exporter.export(nat_records(), 2, NOW + 2000)
    exporter.finish(NOW + 2000)
    flows = {(f["src_addr"], f["src_port"]): f["raw"] for f in pmacct.flows(source)}
    assert pmacct.complaints(source) == []
    outgoing, reply = flows[("192.168.1.10", 40000)], flows[("203.0.113.5", 443)]
    assert (outgoing["post_nat_ip_src"], outgoing["post_nat_port_src"]) == ("192.0.2.1", 61000)
    assert (outgoing["post_nat_ip_dst"], outgoing["post_nat_port_dst"]) == ("203.0.113.5", 443)
    assert (outgoing["packets"], outgoing["bytes"]) == (10, 1000)
    # the reply arrives for the router's address and leaves for the host's
    assert (reply["ip_dst"], reply["port_dst"]) == ("192.0.2.1", 61000)
    assert (reply["post_nat_ip_dst"], reply["post_nat_port_dst"]) == ("192.168.1.10", 40000)
    assert (reply["packets"], reply["bytes"]) == (8, 4000)
    assert flows[("198.51.100.53", 53)]["post_nat_ip_dst"] == "192.168.1.11"
    assert len(flows) == 4
