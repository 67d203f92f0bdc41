"""luci-app-flowprobe in a real browser against a real daemon.

A namespace router (netlab) runs `flowprobe run` on real traffic (ping between
two namespaces) exporting to a real nfcapd. The app's views are loaded in
headless Chromium (Debian's) driven by playwright-core (tests/luci), through
the LuCI stand-in (tests/luci/luci_standin: LuCI's client runtime is not
available offline) and its server (tests/luci/standin_server.py), which
bridges the views' ubus calls to the daemon's control socket and their UCI
changes to its config file, under the app's own ACL. Checked:
- Status shows the metering source, the daemon's interfaces with rates and
  drops, the table's fill and capacity, the collector's host:port/transport,
  records and last template, the chart, the busiest flows and their filter;
  Flush flows and Reload work;
- Settings refuses an invalid value with the daemon's message and saves
  nothing; a valid change (timeout, capacity, an interface, a NetFlow v9
  collector, added in the collectors grid's dialog) lands in the file and,
  after apply, in the running daemon; the file gets what was changed and
  nothing else, and a Save & Apply without a change leaves it alone;
- Settings shows the conntrack options only for a source using conntrack,
  refuses one out of range in the daemon's words, and writes source 'both',
  conntrack_max_connections and a collector's spool_kb to the file; the
  daemon reloads, and Status shows its Conntrack section: running, or the
  error the daemon reports (conntrack may be unavailable in the namespace;
  either is accepted, the test says which it saw), and the spool's use;
- a refused reload shows the "misconfigured" banner with the daemon's error, a
  stopped daemon the "stopped" banner with why its config would not start;
- every call the views made is granted by the ACL, and the ACL grants nothing
  they did not make.
Screenshots: build/artifacts/luci-status.png, luci-settings.png (and
luci-settings-invalid.png, luci-settings-collector.png,
luci-settings-collector-dialog.png, luci-settings-edit-dialog.png,
luci-status-conntrack.png, luci-misconfigured.png, luci-stopped.png).
tests/test_luci_real.py drives the same pages on the real LuCI runtime.

Needs root, ip netns, ping, nfcapd, node, chromium, and `npm ci` in tests/luci;
skipped otherwise, with the reason.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector_tools import NFCAPD, Nfcapd, missing_tools
from flowprobe import config
from flowprobe.config import ConfigError
from flowprobe.control.client import call
from netlab import RouterLab, missing

ROOT = Path(__file__).resolve().parent.parent
LUCI_TESTS = ROOT / "tests" / "luci"
DRIVER = LUCI_TESTS / "drive_pages.js"
ARTIFACTS = ROOT / "build" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ACL = ROOT / "luci-app-flowprobe/root/usr/share/rpcd/acl.d/luci-app-flowprobe.json"
STATUS_PAGE, SETTINGS_PAGE = "admin/services/flowprobe/status", "admin/services/flowprobe/settings"


def why_skip():
    reason = missing() or missing_tools(NFCAPD)
    if reason:
        return reason
    if shutil.which("node") is None:
        return "needs node (Debian package nodejs)"
    if not Path(CHROMIUM).exists():
        return "needs chromium (Debian package chromium)"
    if not (LUCI_TESTS / "node_modules" / "playwright-core").is_dir():
        return "needs playwright-core: run `npm ci` in tests/luci (tools/setup-debian.sh does)"
    return None


skip_reason = why_skip()
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"LuCI browser test: "
                                                                f"{skip_reason}")

if skip_reason is None:
    sys.path.insert(0, str(LUCI_TESTS))
    from standin_server import DAEMON_OBJECT, StandinLuci  # noqa: E402


def config_text(socket_path, spool_dir):
    return "\n".join([
        "config flowprobe 'main'",
        "\toption enabled '1'",
        "\tlist interface 'r-cli'",
        f"\toption control_socket '{socket_path}'",
        f"\toption spool_dir '{spool_dir}'",   # for the spool the settings test sets
        "\toption active_timeout '2'",     # records leave while ping goes on
        "\toption direction 'in'",
        "",
        "config collector 'nfcapd'",
        "\toption protocol 'ipfix'",
        "\toption host '127.0.0.1'",
        "\toption port '2055'",
        ""]) + "\n"


def drive(step, url, **params):
    result = subprocess.run(["node", str(DRIVER), step, url, str(ARTIFACTS), json.dumps(params)],
                            capture_output=True, text=True, timeout=180, cwd=LUCI_TESTS,
                            env={"PATH": "/usr/bin:/bin", "CHROMIUM": CHROMIUM, "HOME": "/tmp"})
    try:
        seen = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"driver {step}: {result.stdout}\n{result.stderr}") from None
    assert "failure" not in seen, f"driver {step}: {seen['failure']}\n{result.stderr}"
    assert not seen["pageErrors"], f"{step}: errors in the page: {seen['pageErrors']}"
    return seen


def wait_until(what, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # the daemon is not listening yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"never: {what}")


def file_section(path, header):
    """The option lines of one section of a UCI file, as written."""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("config "):
            inside = (line == f"config {header}")
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def daemons_error(path):
    try:
        config.load(str(path))
    except ConfigError as e:
        return str(e)
    return None


@pytest.fixture
def router(tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with RouterLab() as lab:
        socket_path = tmp_path / "control.sock"
        conf = tmp_path / "flowprobe"
        conf.write_text(config_text(socket_path, tmp_path / "spool"))
        with Nfcapd(netns=lab.router, directory=tmp_path / "nfcapd") as collector:
            log = open(tmp_path / "daemon.log", "w+")
            daemon = lab.popen(lab.router, sys.executable, "-m", "flowprobe", "run", "--config",
                               str(conf), "--no-ubus", stdout=log, stderr=subprocess.STDOUT)
            lab.popen(lab.client, "ping", "-q", "-i", "0.2", lab.server4,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lab.popen(lab.client, "ping", "-q", "-i", "0.5", "-s", "1000", lab.server6,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            yield lab, daemon, socket_path, conf, collector, tmp_path / "daemon.log"
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(30)


def test_status_and_settings_against_a_running_daemon(router):
    lab, daemon, socket_path, conf, collector, log = router
    status = wait_until("the collector got records", lambda: (
        lambda s: s if s["collectors"] and s["collectors"][0]["records_sent"] > 0 else None)(
        call(socket_path, "status")))
    assert status["interfaces"][0]["up"], status

    # Save & Apply reloads the daemon as procd does on a router: SIGHUP
    with StandinLuci(socket_path, conf, networks=RouterLab.router_devices,
                     daemon=(daemon.pid, log)) as luci:
        # ---- Status ----
        seen = drive("status", luci.url(STATUS_PAGE), filter=lab.server4)
        assert seen["banner"] == [], seen["banner"]
        assert seen["source"] == ["packet capture"] and seen["conntrackSections"] == 0
        assert len(seen["interfaces"]) == 1 and seen["interfaces"][0].startswith("r-cli")
        assert "capturing" in seen["interfaces"][0]
        assert seen["packetRates"][0].endswith("pkt/s") and seen["packetRates"][0] != "0.0 pkt/s"
        assert seen["drops"] == ["0 kernel, 0 interface"]
        assert "/ 65\u202f536" in seen["fill"][0], seen["fill"]
        assert seen["evicted"] == ["0"]
        assert len(seen["collectors"]) == 1 and seen["collectors"][0].startswith("nfcapd")
        assert int(seen["recordsSent"][0].replace("\u202f", "")) > 0
        assert seen["destinations"] == ["127.0.0.1:2055/udp"] and seen["spools"] == []
        assert seen["lastTemplate"][0].endswith("ago"), seen["lastTemplate"]
        assert seen["throughput"][0].startswith("Now:") and seen["chartPoints"] >= 1
        assert seen["byteRates"][0].endswith("B/s)"), seen["byteRates"]
        assert seen["chart"]["yLabels"][-1] == "0 bit/s" and seen["chart"]["xLabels"][0] == "now"
        assert "-5 min" in seen["chart"]["xLabels"] and "-60 min" in seen["hourLabels"]
        assert list(seen["chart"]["lines"]) == ["r-cli"] and seen["legend"][0].startswith("r-cli")
        # ICMP by type; the table sorts both ways
        assert "ICMP echo request" in seen["protocols"], seen["protocols"]
        assert "ICMPv6 echo request" in seen["protocols"], seen["protocols"]
        # a count sorts biggest first, a second click turns it round
        first, second = seen["sortedPackets"]
        assert first == sorted(first, reverse=True) and second == sorted(first)
        assert seen["filteredEmpty"] == ["No flow matches the filter."]
        assert any(lab.server4 in flow for flow in seen["flows"]), seen["flows"]
        assert any(lab.server6 in flow for flow in seen["flows"]), seen["flows"]
        assert seen["filtered"] and all(lab.server4 in flow for flow in seen["filtered"])
        assert len(seen["filtered"]) < len(seen["flows"])
        assert seen["filteredNone"] == []
        assert seen["expired"][0].endswith("flows ended and exported.")
        assert int(seen["expired"][0].split()[0]) >= 1
        assert seen["reloaded"] == ["Configuration reloaded."]

        # ---- Settings: an invalid value is refused in the daemon's words ----
        before = conf.read_text()
        seen = drive("settings-invalid", luci.url(SETTINGS_PAGE), idle_timeout="soon")
        conf_with_error = conf.parent / "flowprobe_check"
        conf_with_error.write_text(before.replace("option active_timeout '2'",
                                                  "option active_timeout '2'\n"
                                                  "\toption idle_timeout 'soon'"))
        assert seen["error"] == {"invalid": True, "message": daemons_error(conf_with_error)}
        assert seen["saveError"] == ['Option "Idle timeout" contains an invalid input value. '
                                     + daemons_error(conf_with_error)]
        assert seen["applied"] is False
        assert conf.read_text() == before

        # ---- Settings: a valid change reaches the file, then the daemon ----
        # the new collector in GridSection's dialog; then the main section
        seen = drive("settings-change", luci.url(SETTINGS_PAGE), idle_timeout="42",
                     max_flows="5000", networks=list(RouterLab.router_devices),
                     collector={"name": "second", "protocol": "netflow9", "host": "127.0.0.1",
                                "port": "2056", "fields": ["octetDeltaCount",
                                                           "packetDeltaCount",
                                                           "sourceIPv4Address"]})
        assert seen["before"] == {"networks": ["r-cli"], "devices": []}
        assert seen["fieldError"] == ("flowprobe.second.field: invalid value 'flowEndReason' "
                                      "(allowed: elements NetFlow v9 can carry)")
        # the grid: name, enabled (a checkbox), protocol, host, port, transport
        assert seen["grid"] == [["nfcapd", "IPFIX127.0.0.12055UDPEditDelete"],
                                ["second", "NetFlow v9127.0.0.12056UDPEditDelete"]], seen["grid"]
        assert seen["after"] == {"idle_timeout": "42", "max_flows": "5000",
                                 "networks": list(RouterLab.router_devices), "devices": []}
        saved = config.load(str(conf))
        assert saved.meter.idle_timeout == 42 and saved.meter.max_flows == 5000
        assert [i.name for i in saved.interfaces] == list(RouterLab.router_devices)
        second = next(c for c in saved.collectors if c.name == "second")
        assert (second.protocol, second.host, second.port, second.fields) == (
            "netflow9", "127.0.0.1", 2056,
            ("octetDeltaCount", "packetDeltaCount", "sourceIPv4Address"))
        # what the user set, nothing else: no enabled '1', no transport 'udp';
        # the options the file held (direction 'in', a default) stay
        assert file_section(conf, "collector 'second'") == [
            "option protocol 'netflow9'", "option host '127.0.0.1'", "option port '2056'",
            "list field 'octetDeltaCount'", "list field 'packetDeltaCount'",
            "list field 'sourceIPv4Address'"], conf.read_text()
        assert "option direction 'in'" in file_section(conf, "flowprobe 'main'")
        assert luci.reloads[-1] == {"reloaded": True, "error": None}
        status = call(socket_path, "status")
        assert status["config_error"] is None
        assert status["meter"]["max_flows"] == 5000
        assert [i["name"] for i in status["interfaces"]] == list(RouterLab.router_devices)
        assert "second" in [c["collector"] for c in status["collectors"]]

        # ---- Save & Apply again, nothing changed: the file stays as it is ----
        text, reloads = conf.read_text(), len(luci.reloads)
        seen = drive("save-unchanged", luci.url(SETTINGS_PAGE))
        assert seen["applied"] is False
        assert conf.read_text() == text and len(luci.reloads) == reloads

        # ---- Settings: the metering source, a conntrack option, a spool ----
        conf_with_error.write_text(conf.read_text().replace(
            "option max_flows '5000'",
            "option max_flows '5000'\n\toption conntrack_max_connections '0'"))
        seen = drive("settings-source", luci.url(SETTINGS_PAGE), source="both",
                     option="conntrack_max_connections", invalid="0", value="4096",
                     collector="nfcapd", spool_kb="64")
        conntrack_options = ["conntrack_max_connections", "conntrack_dump_interval",
                             "conntrack_vanish_grace", "conntrack_buffer_kb"]
        assert (seen["sourceBefore"], seen["shownBefore"]) == ("capture", [])
        assert seen["shownAfter"] == conntrack_options
        assert seen["error"] == {"invalid": True, "message": daemons_error(conf_with_error)}
        assert "RAM" in seen["spoolDescription"][0] and "flash" in seen["spoolDescription"][0]
        assert seen["after"] == {"source": "both", "conntrack_max_connections": "4096"}
        text = conf.read_text()
        assert "option source 'both'" in text and "option conntrack_max_connections '4096'" in text
        saved = config.load(str(conf))
        assert saved.conntrack.source == "both"
        assert saved.conntrack.conntrack_max_connections == 4096
        assert next(c for c in saved.collectors if c.name == "nfcapd").spool_kb == 64
        # a conntrack source that cannot start is reported in status, not refused
        assert luci.reloads[-1] == {"reloaded": True, "error": None}, luci.reloads[-1]
        status = call(socket_path, "status")
        assert status["source"] == "both" and status["config_error"] is None
        tracked = status["conntrack"]
        assert tracked is not None and tracked["capacity"] == 4096
        assert tracked["running"] or tracked["error"], tracked
        print(f"conntrack in the test namespace: "
              f"{'running' if tracked['running'] else 'not running'}"
              f"{', error: ' + tracked['error'] if tracked['error'] else ''}")
        spool = next(c for c in status["collectors"] if c["collector"] == "nfcapd")
        assert spool["spool_budget"] == 64 * 1024

        seen = drive("status-conntrack", luci.url(STATUS_PAGE))
        assert seen["source"] == ["packet capture and conntrack"]
        assert "/ 4\u202f096" in seen["conntrack"]["conntrack-fill"], seen["conntrack"]
        assert seen["conntrack"]["conntrack-state"] == (
            "reading the kernel's connection tracker" if tracked["running"] else "not running")
        assert seen["conntrack"]["not-seen"].startswith(tuple("0123456789")), seen["conntrack"]
        assert "offloaded" in seen["conntrack"]["not-seen"]
        problems = [b for b in seen["banner"] if b["state"] == "conntrack"]
        if tracked["error"]:
            assert len(problems) == 1 and tracked["error"] in problems[0]["text"], seen["banner"]
        else:
            assert problems == [], seen["banner"]
        assert any(s.startswith("0 B of 64.0 KiB") for s in seen["spools"]), seen["spools"]

        # ---- a refused reload: the misconfigured banner ----
        conf.write_text(conf.read_text().replace("option idle_timeout '42'",
                                                 "option idle_timeout 'soon'"))
        error = daemons_error(conf)
        assert error and call(socket_path, "reload")["reloaded"] is False
        seen = drive("banner", luci.url(STATUS_PAGE), screenshot="luci-misconfigured.png")
        assert seen["banner"][0]["state"] == "misconfigured"
        assert error in seen["banner"][0]["text"]

        # ---- stopped: the stopped banner says why it would not start ----
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        seen = drive("banner", luci.url(STATUS_PAGE), screenshot="luci-stopped.png")
        assert seen["banner"][0]["state"] == "stopped"
        assert error in seen["banner"][0]["text"]
        assert seen["buttonsDisabled"] == [True, True]

        # ---- the ACL against what the views called ----
        assert [c for c in luci.calls if c[3] == "denied"] == []
        acl = json.loads(ACL.read_text())["luci-app-flowprobe"]
        granted = {(obj, method) for access in ("read", "write")
                   for obj, methods in acl[access].get("ubus", {}).items() for method in methods}
        called = {(obj, method) for obj, method, _, verdict in luci.calls
                  if obj != "uci" and verdict != "framework"}
        # query: the History page's, called there (tests/test_history_luci.py)
        assert called | {(DAEMON_OBJECT, "query")} == granted
        assert {config for obj, _, config, _ in luci.calls if obj == "uci" and config} == \
            set(acl["read"]["uci"]) == set(acl["write"]["uci"])
        for name in ("luci-status.png", "luci-settings.png", "luci-status-conntrack.png"):
            assert (ARTIFACTS / name).stat().st_size > 10000
