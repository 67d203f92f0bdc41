"""The end-to-end scenario on a real OpenWrt image (x86-64, armsr-armv8 or malta-be, booted
as aparcar/openwrt-tests boots them; openwrt.py), when the user gives one:

    make qemu-test OPENWRT_IMAGE=openwrt-x86-64-generic-squashfs-combined.img.gz \
                   OPENWRT_PACKAGES=bin/packages/x86_64/flowprobe

The packages built by the OpenWrt SDK (OPENWRT_PACKAGES: a directory of .ipk or .apk files,
flowprobe's and any dependencies to install offline; what is missing comes from the feeds over
the WAN NIC, when the host is online) are served over HTTP from the host side and installed
with opkg or apk. Without OPENWRT_PACKAGES the image must already hold flowprobe (ImageBuilder
PACKAGES=flowprobe). Then: configure with uci, start with the init script (procd),
`ubus call flowprobe status`, real traffic from the host side (paced UDP with fragments, TCP to
dropbear, ICMP; IPv4 and IPv6), stop with the init script, and what nfcapd on the host side
received must equal, flow by flow, what tcpdump saw on the link. Then `poweroff`.

Skipped, saying so, when OPENWRT_IMAGE is not set.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import openwrt
import pytest
import scenario
import staging
import vm

from collector_tools import NFCAPD, NFDUMP, missing_tools

IMAGE = os.environ.get("OPENWRT_IMAGE", "")
PACKAGES = os.environ.get("OPENWRT_PACKAGES", "")
HTTP_PORT = 8000

if not IMAGE:
    pytestmark = pytest.mark.skip(reason="OpenWrt image mode: no OPENWRT_IMAGE given (make "
                                         "qemu-test OPENWRT_IMAGE=path [OPENWRT_PACKAGES=dir])")
else:
    skip_reason = vm.missing() or missing_tools(NFCAPD, NFDUMP)
    pytestmark = pytest.mark.skipif(skip_reason is not None,
                                    reason=f"OpenWrt image mode: {skip_reason}")


def json_from(output):
    """The JSON object in a console output (a stray line around it is left out)."""
    start, end = output.find("{"), output.rfind("}")
    assert start >= 0 and end > start, f"no JSON in:\n{output}"
    return json.loads(output[start:end + 1])


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    directory = tmp_path_factory.mktemp("openwrt")
    try:
        target = openwrt.target_for(IMAGE, os.environ.get("OPENWRT_TARGET"))
        image = openwrt.prepare_image(IMAGE, target, directory)
    except openwrt.ImageError as error:
        pytest.fail(str(error))
    served = directory / "served"
    served.mkdir()
    packages = []
    if PACKAGES:
        for path in sorted(Path(PACKAGES).glob("*")):
            if path.suffix in (".ipk", ".apk"):
                (served / path.name).symlink_to(path.resolve())
                packages.append(path.name)
        if not any(name.startswith("flowprobe") for name in packages):
            pytest.fail(f"OPENWRT_PACKAGES={PACKAGES}: no flowprobe .ipk or .apk in it")
    (served / "udp_sink.py").write_text(scenario.UDP_SINK)

    with vm.HostLink(host4=f"{openwrt.LAN_HOST4}/24", host6=f"{openwrt.LAN_HOST6}/64") as link:
        link.popen(sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind",
                   openwrt.LAN_HOST4, "--directory", str(served), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
        guest = vm.Guest(openwrt.argv(target, image, link), directory / "console.log")
        try:
            started = time.monotonic()
            guest.expect(openwrt.CONSOLE_READY, 600)
            guest.send("\n")
            guest.expect(openwrt.PROMPT, 60)
            guest.quiet_console()
            guest.check("dmesg -n 1")  # kernel messages off the console the test reads
            print(f"\nqemu: OpenWrt {target.name} ready in {time.monotonic() - started:.1f} s "
                  f"(console: {guest.log_path})")
            yield guest, link, packages, target
        finally:
            guest.close()


def lan_device(guest):
    guest.check("ubus -t 120 wait_for network.interface.lan", 150)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = json_from(guest.check("ubus call network.interface.lan status"))
        addresses = [a["address"] for a in status.get("ipv4-address", [])]
        if status.get("up") and openwrt.LAN_GUEST4 in addresses:
            return status["l3_device"]
        time.sleep(2)
    raise AssertionError(f"the LAN never came up with {openwrt.LAN_GUEST4}: {status}")


def install(guest, packages):
    if not packages:
        guest.check("test -x /etc/init.d/flowprobe")  # baked into the image
        return "preinstalled"
    guest.check("mkdir -p /tmp/fp")
    for name in packages:  # one short line each: busybox's line editor cuts long ones
        guest.check(f"wget -q -O /tmp/fp/{name} http://{openwrt.LAN_HOST4}:{HTTP_PORT}/{name}",
                    300)
    if guest.run("command -v apk")[0] == 0:
        offline, online = "apk add --allow-untrusted /tmp/fp/*.apk", "apk update"
    else:
        offline, online = "opkg install /tmp/fp/*.ipk", "opkg update"
    status, output = guest.run(offline, 600)
    if status != 0:  # dependencies not given: from the feeds, when the WAN reaches them
        guest.check(online, 300)
        guest.check(offline, 600)
    return offline.split()[0]


def test_the_scenario_on_openwrt(router, tmp_path):
    guest, link, packages, target = router
    device = lan_device(guest)
    guest.run(f"ip -6 addr add {openwrt.LAN_GUEST6}/64 dev {device} nodad || "
              f"ip -6 addr add {openwrt.LAN_GUEST6}/64 dev {device}")
    manager = install(guest, packages)

    # installed as the package says: its files where its recipe puts them, the extension loads
    for destination in (f.destination for f in staging.installed_files()
                        if not f.destination.startswith(staging.DEBIAN_DIST_PACKAGES)):
        guest.check(f"test -f {destination}")
    guest.check("python3 -c 'import flowprobe._cmeter_ffi'", 120)

    # the logical name, resolved by netifd as on any router
    for command in scenario.uci_commands("lan", openwrt.LAN_HOST4):
        if " delete " in command:
            guest.run(command)  # nothing to delete on a fresh install
        else:
            guest.check(command)
    guest.check(f"wget -q -O /tmp/udp_sink.py http://{openwrt.LAN_HOST4}:{HTTP_PORT}/udp_sink.py"
                f" && (python3 /tmp/udp_sink.py {scenario.UDP_PORT} >/dev/null 2>&1 &)")

    with scenario.Nfcapd(netns=link.namespace, host=openwrt.LAN_HOST4,
                         port=scenario.COLLECTOR_PORT) as nfcapd:
        guest.check("/etc/init.d/flowprobe enable && /etc/init.d/flowprobe start", 120)
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            code, output = guest.run("ubus call flowprobe status 2>/dev/null", 60)
            if code == 0 and "{" in output:
                status = json_from(output)
                if status["interfaces"] and all(i["up"] for i in status["interfaces"]):
                    break
            time.sleep(2)
        assert status, "no ubus object flowprobe:\n" + guest.run("logread -e flowprobe")[1]
        truth_capture = scenario.TruthCapture(link, tmp_path / "link.pcap")
        sent = scenario.send_traffic(link, openwrt.LAN_GUEST4, openwrt.LAN_GUEST6,
                                     banner_port=22, rate=200, datagrams=300)
        truth = truth_capture.stop()
        status = scenario.wait_until_metered(
            lambda: json_from(guest.check("ubus call flowprobe status", 60)),
            sum(p for p, _ in truth.values()), timeout=120)
        guest.check("/etc/init.d/flowprobe stop", 120)
        deadline = time.monotonic() + 60
        while guest.run("pgrep -f 'flowprobe run'")[0] == 0 and time.monotonic() < deadline:
            time.sleep(1)
        log = guest.check("logread -e flowprobe")
        exported = scenario.per_flow_key(nfcapd.flows())
    print(f"qemu: OpenWrt {target.name}, installed with {manager}; "
          f"{sum(p for p, _ in truth.values())} packets in {len(truth)} flows; sent {sent}")

    assert status["config_error"] is None, status
    assert status["interfaces"] and all(i["up"] for i in status["interfaces"]), status
    stopped = re.findall(r"stopped: (\d+) packets read, (\d+) metered", log)
    assert stopped, f"no stop summary in the log:\n{log}"
    protocols = {(key[0], key[1]) for key in truth}
    assert {(4, 17), (6, 17), (4, 6), (6, 6), (4, 1), (6, 58)} <= protocols, protocols
    assert scenario.compare(truth, exported) == []
    assert sum(p for p, _ in exported.values()) == int(stopped[-1][1])


def test_openwrt_powers_off(router):
    guest = router[0]
    guest.shutdown("poweroff", timeout=120, done=rb"reboot: Power down|Power off")

