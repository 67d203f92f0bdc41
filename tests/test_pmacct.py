"""Exports judged by pmacct's nfacctd (Debian pmacct), as test_export_collectors
judges them with nfdump: per flow key, pmacct's totals must be the capture's.

Times: pmacct takes IPFIX flowStart/EndMilliseconds to the millisecond; NetFlow
v9 and v5 times it computes in whole seconds (unix_secs - (sysUptime -
FIRST_SWITCHED) / 1000, integer division), so there it gets each time
rounded up to the second: the tests pin that down, as pmacct's limit, not
flowprobe's.  RFC 5103 reverse elements pmacct does not know: a
biflow profile's forward counters are stored and its reverse ones only
through custom primitives (aggregate_primitives), as shown here.
"""

import json
import subprocess
import sys

import pytest

from captures import differences
from collector_tools import (
    NFACCTD,
    Nfacctd,
    missing_tools,
    nfdump_flow_times,
    per_flow_key,
    time_problems,
)
from realstack import simple_truth

LONG = ("--idle-timeout", "3600", "--active-timeout", "3600", "--unanswered-timeout", "3600")
NAMES = ("truth", "pmacct")

pytestmark = pytest.mark.skipif(missing_tools(NFACCTD) is not None,
                                reason=f"pmacct: {missing_tools(NFACCTD)} (apt-get install pmacct)")


@pytest.fixture(params=["generated", "real-stacks"])
def capture(request, generated_capture):
    path = (generated_capture if request.param == "generated"
            else request.getfixturevalue("real_stacks_capture"))
    return path, simple_truth.truth_report(str(path))


def export(capture_path, *urls):
    done = subprocess.run([sys.executable, "-m", "flowprobe", "read", str(capture_path), *LONG,
                           *(arg for url in urls for arg in ("--export", url))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])


def seconds(truth_times):
    """The capture's times as pmacct's timestamp primitives compute them from v9 and v5:
    unix_secs - (sysUptime - FIRST_SWITCHED) / 1000, rounded up to the second."""
    return {key: (-(-first // 1000) * 1000, -(-last // 1000) * 1000)
            for key, (first, last) in truth_times.items()}


@pytest.mark.parametrize("protocol", ["ipfix", "netflow9", "netflow5"])
def test_nfacctd_stores_the_capture_exactly(capture, protocol):
    path, truth = capture
    flows_truth, times = truth.flows, truth.times
    if protocol == "netflow5":
        flows_truth = {k: v for k, v in flows_truth.items() if k[0] == 4}
        times = {k: v for k, v in times.items() if k[0] == 4}
    with Nfacctd() as collector:
        summary = export(path, f"{protocol}://127.0.0.1:{collector.port}")
        flows = collector.flows()
        complaints = collector.complaints()
    assert differences(flows_truth, per_flow_key(flows), NAMES) == []
    assert complaints == [] and collector.final_socket["drops"] == 0
    assert summary["exporters"][0]["records_not_sent"] == 0
    expected_times = times if protocol == "ipfix" else seconds(times)
    assert time_problems(expected_times, nfdump_flow_times(flows)) == []
    assert {f["exporter"] for f in flows} == {"127.0.0.1"}


# RFC 5103 reverse counters as pmacct custom primitives (PEN 29305, element ids 1 and 2)
REVERSE_PRIMITIVES = (
    "name=reverse_octets field_type=29305:1 len=8 semantics=u_int",
    "name=reverse_packets field_type=29305:2 len=8 semantics=u_int",
)


def test_nfacctd_reads_ipfix_biflows_through_custom_primitives(generated_capture):
    truth = simple_truth.truth(str(generated_capture))
    with Nfacctd(custom_primitives=REVERSE_PRIMITIVES) as collector:
        export(generated_capture, f"ipfix://127.0.0.1:{collector.port}?biflow=1")
        flows = collector.flows()
        complaints = collector.complaints()
    assert complaints == []
    assert sum(f["reverse_packets"] for f in flows) > 0
    assert differences(truth, per_flow_key(flows), NAMES) == []
