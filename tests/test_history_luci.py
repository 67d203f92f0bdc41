"""The History page (luci-app-flowprobe view flowprobe/history) in headless
Chromium, through the LuCI STAND-IN (tests/luci/standin_server.py) against a
real daemon on lo whose store holds five days: a quiet daily cycle with an
injected spike (the daemon finds the anomaly from its rollups at start)
and a day of generated hosts. Screenshots go to build/artifacts/."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowprobe.control.client import call
from flowprobe.store.anomaly import STEP_S
from flowprobe.store.sink import HistorySink
from history_records import DAY_START_MS, Day
from test_history_anomaly import SPIKE, day_records
from test_history_store import INTERFACES, write
from test_luci_browser import ARTIFACTS, CHROMIUM, LUCI_TESTS, drive  # the page driver

HISTORY_PAGE = "admin/services/flowprobe/history"


def why_skip():
    if os.geteuid() != 0:
        return "the daemon captures on lo: needs root"
    if shutil.which("node") is None:
        return "needs node (Debian package nodejs)"
    if not Path(CHROMIUM).exists():
        return "needs chromium (Debian package chromium)"
    if not (LUCI_TESTS / "node_modules" / "playwright-core").is_dir():
        return "needs playwright-core: run `npm ci` in tests/luci (tools/setup-debian.sh does)"
    return None


pytestmark = pytest.mark.skipif(why_skip() is not None, reason=f"History page: {why_skip()}")


def five_days_ending_now(directory):
    """The anomaly test's five days, moved to end now, and a day of hosts."""
    import random
    now_ms = int(time.time() * 1000)
    records, count = day_records(random.Random(1))
    end = (now_ms // 1000 - 20 * 60) // STEP_S * STEP_S * 1000   # settled by the daemon's start
    shift = end - (records[count - 1].flow_start_ms // (STEP_S * 1000) * STEP_S * 1000)
    for i in range(count):
        records[i].flow_start_ms += shift
        records[i].flow_end_ms += shift
    hosts = Day(3000, seed=9, start_ms=now_ms - 20 * 3600 * 1000, span_ms=19 * 3600 * 1000)
    for i in range(hosts.count):   # on an interface of their own: the cycle stays quiet
        hosts.records[i].ifindex = 7
    sink = HistorySink(str(directory), 64 << 20, 5, {**INTERFACES, 7: "dmz"})
    sink.start()

    class Records:
        def batches(self, size=1024):
            for first in range(0, count, size):
                yield records + first, min(size, count - first)
    write(sink, Records(), now_ms=now_ms)
    write(sink, hosts, now_ms=now_ms)
    sink.finish()
    return shift


def test_the_history_page_against_a_running_daemon(tmp_path):
    sys.path.insert(0, str(LUCI_TESTS))
    from standin_server import StandinLuci
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    directory = tmp_path / "history"
    shift = five_days_ending_now(directory)
    socket_path = tmp_path / "c.sock"
    conf = tmp_path / "flowprobe"
    conf.write_text("config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
                    f"\toption control_socket '{socket_path}'\n\toption history '1'\n"
                    f"\toption history_dir '{directory}'\n\toption history_kb '65536'\n")
    daemon = subprocess.Popen([sys.executable, "-m", "flowprobe", "run", "--config", str(conf),
                               "--no-ubus"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            try:
                status = call(socket_path, "status")
                if any(a["series"] == "lan" for a in status["history"]["anomalies"]):
                    break
            except Exception:
                assert daemon.poll() is None
            time.sleep(0.2)
        # the spike on lan; dmz, silent for two days and then busy, is one too
        [anomaly] = [a for a in status["history"]["anomalies"] if a["series"] == "lan"]
        assert {a["series"] for a in status["history"]["anomalies"]} <= {"lan", "dmz"}
        spike_ms = DAY_START_MS + shift + SPIKE.start * STEP_S * 1000
        assert anomaly["series"] == "lan" and abs(anomaly["start_ms"] - spike_ms) <= STEP_S * 1000
        expected = call(socket_path, "query", {"since": "86400s", "group_by": ["host"],
                                               "limit": 20})
        with StandinLuci(socket_path, conf) as luci:
            seen = drive("history", luci.url(HISTORY_PAGE))
            assert ("luci.flowprobe", "query", None, "read") in luci.calls
            assert [c for c in luci.calls if c[3] == "denied"] == []
        assert seen["talkers"] == [g["host"] for g in expected["groups"]]
        assert set(seen["legend"]) <= {"tcp", "udp", "icmp"} and seen["legend"]
        assert seen["bars"] > 10
        assert "lan" in seen["anomalies"]          # the spike, marked on the chart
        assert [name for name, _ in seen["histograms"]] == ["bytes/log", "duration/log",
                                                            "packet_size/log"]
        assert all(bars > 0 for _, bars in seen["histograms"])
        assert seen["records"] and seen["talkers"][0] in seen["drillTitle"][0]
        assert seen["hostLegend"][0] == seen["talkers"][0]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)

