"""luci-app-flowprobe on the real LuCI runtime, not the stand-in.

Built from upstream checkouts the user provides (tools/openwrt-userland/
build.sh) and started by tests/luci/real/stack.py in a private mount
namespace over the host's root: ubusd, rpcd with rpcd-mod-luci and LuCI's
ucode plugin, uhttpd with LuCI's ucode handler, uci, and /www holding
luci-base, luci-theme-bootstrap and the app as luci.mk installs them. The
daemon runs on ubus in a namespace router (tests/netlab.py), reading
/etc/config/flowprobe as rpcd's libuci writes it, and reloads on Save & Apply through
procd's config trigger (stood in for: standins.uc's `service event` sends
it SIGHUP, as the init script's reload_signal has procd do). A paced UDP
sender gives the chart a known rate; ping and a closed port give ICMP.

As root: both pages load without a page or console error and without a
call the ACL refuses; the chart shows the paced rate within 10 % on its
axis; busiest flows name ICMP types and sort; Flush flows and Reload work;
an invalid value is refused in the daemon's words and not saved; a new
collector (grid + dialog), a timeout, a capacity and the networks reach the
file (nothing else written: no enabled '1' or transport 'udp', and the
defaults the file held stay) and the daemon; a save without a change leaves
the file alone; a refused reload and a stopped daemon show their banners.
As a LuCI user holding only the access groups of luci-base's ACL file and
the app's: the same pages load with nothing refused, a change saves, and
with no collector both pages say what to do.

Skipped, saying why, unless OPENWRT_SRC names the checkouts (libubox, ubus,
uci, ucode, lucihttp, rpcd, uhttpd, cgi-io, iwinfo, luci). OPENWRT_USERLAND:
a root build.sh made (built on first use into /var/tmp otherwise);
OPENWRT_LUCI: LuCI trees to test, ':'-separated (default OPENWRT_SRC/luci).
Screenshots: build/artifacts/real-<luci>-<user>-luci-*.png.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector_tools import Nfcapd
from flowprobe import config
from flowprobe.config import ConfigError
from flowprobe.control.client import call
from netlab import RouterLab
from test_luci_browser import CHROMIUM, LUCI_TESTS, wait_until
from test_luci_browser import why_skip as browser_test_needs

ROOT = Path(__file__).resolve().parent.parent
DRIVER = LUCI_TESTS / "drive_pages.js"
BUILD = ROOT / "tools" / "openwrt-userland" / "build.sh"
TRAFFIC = LUCI_TESTS / "real" / "traffic.py"
ARTIFACTS = ROOT / "build" / "artifacts"
STATUS_PAGE, SETTINGS_PAGE = "admin/services/flowprobe/status", "admin/services/flowprobe/settings"
HISTORY_PAGE = "admin/services/flowprobe/history"
NETWORKS = {"lan": "r-cli", "wan": "r-srv"}
PACED_PPS, PACED_PAYLOAD, SINK_PORT, CLOSED_PORT = 100, 1000, 5001, 5009
WIRE_OVERHEAD = 14 + 20 + 8   # Ethernet, IPv4, UDP: capture counts whole frames
SOURCES = os.environ.get("OPENWRT_SRC")


def why_skip():
    if not SOURCES:
        return ("set OPENWRT_SRC to a directory of upstream checkouts (libubox, ubus, uci, "
                "ucode, lucihttp, rpcd, uhttpd, cgi-io, iwinfo, luci) to run it")
    # the browser test's needs (namespaces, nfcapd, node, chromium, playwright), and the stack's
    reason = browser_test_needs()
    if reason:
        return reason
    for tool in ("unshare", "nsenter", "cmake", "openssl"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


skip_reason = why_skip()
pytestmark = pytest.mark.skipif(skip_reason is not None,
                                reason=f"real LuCI runtime: {skip_reason}")

if skip_reason is None:
    sys.path.insert(0, str(LUCI_TESTS / "real"))
    from stack import USERS, RealStack  # noqa: E402


def luci_trees():
    trees = os.environ.get("OPENWRT_LUCI") or (f"{SOURCES}/luci" if SOURCES else "")
    return [Path(t) for t in trees.split(":") if t]


def tree_name(tree):
    """The LuCI branch a tree holds (a checkout's branch, or the tree's name)."""
    branch = subprocess.run(["git", "-C", str(tree), "rev-parse", "--abbrev-ref", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    if branch and branch != "HEAD" and (tree / ".git").exists():
        return branch
    return re.sub(r"^luci-", "", tree.name)


@pytest.fixture(scope="module")
def userland():
    prefix = Path(os.environ.get("OPENWRT_USERLAND") or "/var/tmp/flowprobe-openwrt-userland")
    if not (prefix / "usr" / "bin" / "uhttpd").exists():
        subprocess.run([str(BUILD), str(prefix)], check=True, timeout=1800,
                       env=dict(os.environ, PYTHON=sys.executable))
    return prefix


def config_text(workdir):
    return "\n".join([
        "config flowprobe 'main'",
        "\toption enabled '1'",
        "\tlist interface 'lan'",
        "\tlist interface 'wan'",
        f"\toption control_socket '{workdir}/control.sock'",
        f"\toption spool_dir '{workdir}/spool'",
        "\toption active_timeout '2'",
        "\toption direction 'in'",
        "\toption promisc '0'",          # a default written by hand: it stays
        "\toption history '1'",
        f"\toption history_dir '{workdir}/history'",
        "\toption history_flush '1'",
        f"\toption lease_file '{workdir}/dhcp.leases'",
        "",
        "config collector 'nfcapd'",
        "\toption protocol 'ipfix'",
        "\toption host '127.0.0.1'",
        "\toption port '2055'",
        ""]) + "\n"


def drive(step, url, user, prefix, **params):
    params.update(user=user, password=USERS[user], prefix=prefix)
    result = subprocess.run(["node", str(DRIVER), step, url, str(ARTIFACTS), json.dumps(params)],
                            capture_output=True, text=True, timeout=240, cwd=LUCI_TESTS,
                            env={"PATH": "/usr/bin:/bin", "CHROMIUM": CHROMIUM, "HOME": "/tmp"})
    try:
        seen = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"driver {step}: {result.stdout}\n{result.stderr}") from None
    assert "failure" not in seen, f"driver {step}: {seen['failure']}\n{result.stderr}"
    if step == "settings-invalid":
        # LuCI's Save & Apply shows the refusal in its "Save error" dialog
        # and leaves the rejected promise unhandled: every app's page does
        seen["pageErrors"] = [e for e in seen["pageErrors"]
                              if not e.startswith('TypeError: Option "Idle timeout" contains')]
    assert not seen["pageErrors"], f"{step}: errors in the page: {seen['pageErrors']}"
    # the one expected failure: apply asks luci-mod-network's luci-peeraddr
    # (through cgi-exec) whether LuCI's own address changes; not installed here
    peeraddr = any("cgi-exec" in e for e in seen["consoleErrors"])
    errors = [e for e in seen["consoleErrors"] if "cgi-exec" not in e and
              not (peeraddr and e.startswith("Failed to load resource"))]
    assert not errors, f"{step}: console errors: {errors}"
    assert not seen["denied"], f"{step}: calls the ACL refused: {seen['denied']}"
    return seen


def daemons_error(text, tmp_path):
    path = tmp_path / "flowprobe_check"
    path.write_text(text)
    try:
        config.load(str(path))
    except ConfigError as e:
        return str(e)
    return None


def file_section(text, header):
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("config "):
            inside = (line == f"config {header}")
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


@pytest.fixture
def router(tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with RouterLab() as lab:
        with Nfcapd(netns=lab.router, directory=tmp_path / "nfcapd"):
            lab.popen(lab.server, sys.executable, str(TRAFFIC), "sink", str(SINK_PORT))
            lab.popen(lab.client, sys.executable, str(TRAFFIC), "send", lab.server4,
                      str(SINK_PORT), str(PACED_PPS), str(PACED_PAYLOAD), str(CLOSED_PORT))
            lab.popen(lab.client, "ping", "-q", "-i", "1", lab.server4,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            yield lab


@pytest.mark.parametrize("tree", luci_trees(), ids=tree_name)
def test_the_app_on_the_real_luci_runtime(router, userland, tree, tmp_path):
    lab, branch = router, tree_name(tree)
    workdir = tmp_path / "stack"
    workdir.mkdir()
    # dnsmasq's lease file names the client: the Status page shows the device
    (workdir / "dhcp.leases").write_text(
        f"{int(time.time()) + 3600} 02:00:00:aa:bb:01 {lab.client4} laptop *\n")
    with RealStack(userland, tree, workdir, NETWORKS, lab.router, config_text(workdir)) as stack:
        stack.start_daemon()
        socket_path = workdir / "control.sock"
        wait_until("the daemon captures", lambda: all(
            i["up"] for i in call(socket_path, "status")["interfaces"]), timeout=40)
        assert stack.ubus("flowprobe", "status")["ubus"] is True
        root = dict(user="root", prefix=f"real-{branch}-root-")

        # ---- Status: the paced rate on the chart's axis ----
        seen = drive("status", stack.url(STATUS_PAGE), filter=lab.server4, lines=2, settle=25,
                     **root)
        assert seen["banner"] == [], seen["banner"]
        assert [i.split(" ")[0] for i in seen["interfaces"]] == ["lan", "wan"]
        expected = PACED_PPS * (PACED_PAYLOAD + WIRE_OVERHEAD)
        plotted = seen["chart"]["lines"]["lan"]
        assert len(plotted) >= 4, plotted
        drawn = sum(plotted[1:]) / len(plotted[1:])   # the first rate may cover the start
        print(f"{branch}: paced sender {expected} B/s, chart {drawn:.0f} B/s "
              f"({100 * (drawn - expected) / expected:+.1f} %), points {plotted}")
        assert abs(drawn - expected) <= 0.10 * expected, (drawn, expected, plotted)
        assert all(abs(v - expected) <= 0.10 * expected for v in plotted[1:]), plotted
        assert seen["chart"]["yLabels"][-1] == "0 bit/s"
        assert seen["chart"]["scaleBits"] >= expected * 8
        assert seen["legend"][0].startswith("lan") and "kbit/s" in seen["legend"][0]
        assert "ICMP echo request" in seen["protocols"], seen["protocols"]
        assert "laptop" in seen["devices"], seen["devices"]
        assert "ICMP port unreachable" in seen["protocols"], seen["protocols"]
        first, second = seen["sortedPackets"]
        assert first == sorted(first, reverse=True) and second == sorted(first)
        assert seen["filtered"] and all(lab.server4 in f for f in seen["filtered"])
        assert seen["expired"][0].endswith("flows ended and exported.")
        assert seen["reloaded"] == ["Configuration reloaded."]

        # ---- History: what the store kept, through rpcd's query grant ----
        seen = drive("history", stack.url(HISTORY_PAGE), **root)
        assert seen["banner"] == [], seen["banner"]
        assert lab.server4 in seen["talkers"] or lab.client4 in seen["talkers"], seen["talkers"]
        assert seen["bars"] > 0 and seen["records"], seen

        # ---- Settings: refused in the daemon's words, nothing saved ----
        before = stack.read_config()
        seen = drive("settings-invalid", stack.url(SETTINGS_PAGE), idle_timeout="soon", **root)
        error = daemons_error(before.replace("option active_timeout '2'",
                                             "option active_timeout '2'\n"
                                             "\toption idle_timeout 'soon'"), tmp_path)
        assert seen["error"] == {"invalid": True, "message": error}
        assert seen["saveError"] == [f'Option "Idle timeout" contains an invalid input value. '
                                     f'{error}']
        assert seen["applied"] is False and stack.read_config() == before

        # ---- Settings: a collector, a timeout, a capacity, the networks ----
        events = len(stack.reload_events())
        seen = drive("settings-change", stack.url(SETTINGS_PAGE), idle_timeout="42",
                     max_flows="5000", networks=["lan"],
                     collector={"name": "second", "protocol": "netflow9", "host": "127.0.0.1",
                                "port": "2056", "fields": ["octetDeltaCount",
                                                           "packetDeltaCount",
                                                           "sourceIPv4Address"]}, **root)
        assert seen["before"] == {"networks": ["lan", "wan"], "devices": []}, seen["before"]
        assert seen["fieldError"] == ("flowprobe.second.field: invalid value 'flowEndReason' "
                                      "(allowed: elements NetFlow v9 can carry)")
        assert seen["grid"] == [["nfcapd", "IPFIX127.0.0.12055UDPEditDelete"],
                                ["second", "NetFlow v9127.0.0.12056UDPEditDelete"]], seen["grid"]
        assert seen["after"] == {"idle_timeout": "42", "max_flows": "5000",
                                 "networks": ["lan"], "devices": []}
        text = stack.read_config()
        assert file_section(text, "collector 'second'") == [
            "option protocol 'netflow9'", "option host '127.0.0.1'", "option port '2056'",
            "list field 'octetDeltaCount'", "list field 'packetDeltaCount'",
            "list field 'sourceIPv4Address'"], text
        main = file_section(text, "flowprobe 'main'")
        assert "option promisc '0'" in main and "option direction 'in'" in main, text
        assert "list interface 'lan'" in main and "list interface 'wan'" not in main, text
        assert "option idle_timeout '42'" in main and "option max_flows '5000'" in main
        assert file_section(text, "collector 'nfcapd'") == [
            "option protocol 'ipfix'", "option host '127.0.0.1'", "option port '2055'"]
        # procd's config trigger (the stand-in) told the daemon, which took it
        assert [e["package"] for e in stack.reload_events()[events:]] == ["flowprobe"]
        status = wait_until("the daemon reloaded", lambda: (
            lambda s: s if s["meter"]["max_flows"] == 5000 else None)(
            call(socket_path, "status")))
        assert status["config_error"] is None
        assert [i["name"] for i in status["interfaces"]] == ["lan"]
        assert "second" in [c["collector"] for c in status["collectors"]]

        # ---- Save & Apply without a change: the file stays as it is ----
        events = len(stack.reload_events())
        seen = drive("save-unchanged", stack.url(SETTINGS_PAGE), **root)
        assert seen["applied"] is False
        assert stack.read_config() == text and len(stack.reload_events()) == events

        # ---- the metering source, a conntrack option, a collector's spool ----
        seen = drive("settings-source", stack.url(SETTINGS_PAGE), source="both",
                     option="conntrack_max_connections", invalid="0", value="4096",
                     collector="nfcapd", spool_kb="64", **root)
        assert seen["sourceBefore"] == "capture" and seen["shownBefore"] == []
        assert seen["error"]["invalid"] is True
        assert seen["after"] == {"source": "both", "conntrack_max_connections": "4096"}
        text = stack.read_config()
        assert "option source 'both'" in text and "option spool_kb '64'" in text
        status = wait_until("the daemon reloaded", lambda: (
            lambda s: s if s["source"] == "both" else None)(call(socket_path, "status")))
        drive("status-conntrack", stack.url(STATUS_PAGE), **root)

        # ---- a refused reload, then a stopped daemon ----
        bad = stack.read_config().replace("option idle_timeout '42'", "option idle_timeout 'soon'")
        stack.write_config(bad)
        assert stack.ubus("flowprobe", "reload")["reloaded"] is False
        seen = drive("banner", stack.url(STATUS_PAGE), screenshot="luci-misconfigured.png", **root)
        assert seen["banner"][0]["state"] == "misconfigured"
        assert daemons_error(bad, tmp_path) in seen["banner"][0]["text"]
        stack.stop_daemon()
        seen = drive("banner", stack.url(STATUS_PAGE), screenshot="luci-stopped.png", **root)
        assert seen["banner"][0]["state"] == "stopped"
        assert daemons_error(bad, tmp_path) in seen["banner"][0]["text"]
        assert seen["buttonsDisabled"] == [True, True]

        # ---- a LuCI user with luci-base's and the app's access groups only ----
        stack.write_config(config_text(workdir))
        stack.start_daemon()
        wait_until("the daemon captures again", lambda: all(
            i["up"] for i in call(socket_path, "status")["interfaces"]), timeout=40)
        viewer = dict(user="viewer", prefix=f"real-{branch}-viewer-")
        seen = drive("page", stack.url(STATUS_PAGE), wait="#flowprobe-chart polyline",
                     screenshot="luci-status.png", **viewer)
        assert seen["banner"] == []
        seen = drive("page", stack.url(SETTINGS_PAGE), wait=".cbi-section-table-row",
                     screenshot="luci-settings.png", **viewer)
        events = len(stack.reload_events())
        seen = drive("settings-change", stack.url(SETTINGS_PAGE), idle_timeout="30",
                     max_flows="6000", collector={"name": "third", "protocol": "ipfix",
                                                  "host": "127.0.0.1", "port": "4739",
                                                  "fields": []}, **viewer)
        assert seen["before"] == {"networks": ["lan", "wan"], "devices": []}, seen["before"]
        assert "option idle_timeout '30'" in stack.read_config()
        assert len(stack.reload_events()) == events + 1

        # ---- a new user's first look: no collector yet ----
        stack.write_config(config_text(workdir).split("config collector")[0])
        assert stack.ubus("flowprobe", "reload")["reloaded"] is True
        seen = drive("banner", stack.url(STATUS_PAGE), screenshot="luci-status-no-collector.png",
                     **viewer)
        assert seen["banner"] == [] and seen["empty"] == ["collectors"], seen
        seen = drive("page", stack.url(SETTINGS_PAGE), wait='[data-empty="collectors"] em',
                     screenshot="luci-settings-no-collector.png", **viewer)
