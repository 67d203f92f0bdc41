"""Flow times as collectors see them: every record's absolute start and end
must be the capture's, to the millisecond, through nfdump and through
tshark, for IPFIX (absolute times), NetFlow v9 and v5 (times relative to
sysUptime, made absolute with the header's unix_secs: the two must describe
one instant).  No v9/v5 record may carry uptime 0, which nfdump shows as 1970.
"""

import json
import subprocess
import sys

import pytest

from collector_tools import (
    NFCAPD,
    NFDUMP,
    TSHARK,
    DatagramRecorder,
    Nfcapd,
    missing_tools,
    nfdump_flow_times,
    time_problems,
    tshark_decode,
    tshark_flow_times,
)
from realstack import simple_truth

LONG = ("--idle-timeout", "3600", "--active-timeout", "3600", "--unanswered-timeout", "3600")

pytestmark = pytest.mark.skipif(missing_tools(NFCAPD, NFDUMP, TSHARK) is not None,
                                reason=f"collectors: {missing_tools(NFCAPD, NFDUMP, TSHARK)}")


@pytest.fixture(params=["generated", "real-stacks"])
def capture(request, generated_capture):
    path = (generated_capture if request.param == "generated"
            else request.getfixturevalue("real_stacks_capture"))
    return path, simple_truth.truth_report(str(path)).times


@pytest.mark.parametrize("protocol", ["ipfix", "netflow9", "netflow5"])
def test_every_record_starts_and_ends_when_the_capture_says(capture, protocol, tmp_path):
    path, truth = capture
    if protocol == "netflow5":
        truth = {k: v for k, v in truth.items() if k[0] == 4}
    with Nfcapd() as nfcapd, DatagramRecorder() as recorder:
        done = subprocess.run([sys.executable, "-m", "flowprobe", "read", str(path), *LONG,
                               "--export", f"{protocol}://127.0.0.1:{nfcapd.port}",
                               "--export", f"{protocol}://127.0.0.1:{recorder.port}"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stderr.strip().splitlines()[-1])
        recorder.wait(summary["exporters"][1]["messages_sent"])
        recorder.write_pcap(tmp_path / "export.pcap")
        nfdump_times = nfdump_flow_times(nfcapd.flows())
    tshark_times = tshark_flow_times(tshark_decode(tmp_path / "export.pcap", recorder.port))
    assert time_problems(truth, nfdump_times) == []
    assert time_problems(truth, tshark_times) == []
    if protocol != "ipfix":
        assert min(relative for *_, relative in tshark_times) > 0
