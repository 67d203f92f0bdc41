"""flowprobe as installed by its package, on a Debian x86-64 guest under QEMU (TCG): its own
kernel, its own python3 and libpcap, a virtio NIC whose other end is a tap in a network
namespace of this test.

One boot for the module, tests in order:
1. the package's files are where the package puts them, the C extension loads in the guest's
   python3, the shipped config parses, the init script names files that exist;
2. the end-to-end run: flowprobe configured (UCI syntax in /etc/config/flowprobe) and started
   as a Debian user would (`flowprobe run`), real traffic from the host side (paced UDP with
   fragments, TCP, ICMP; IPv4 and IPv6), `flowprobe status`, SIGTERM; what nfcapd on the host
   side received must equal, flow by flow, packets and octets, what tcpdump saw on the link;
3. the guest powers off by itself; no namespace and no QEMU left behind.

Needs root, /dev/net/tun, qemu-system-x86_64, mmdebstrap, tcpdump, nfcapd/nfdump and a built
C extension (`make build`); skipped with the reason otherwise, failed instead when
QEMU_VM_REQUIRED=1 (CI). Run by `make qemu-test`.
"""

import json
import os
import re
import subprocess
import time

import image as vm_image
import pytest
import scenario
import staging
import vm

from collector_tools import NFCAPD, NFDUMP, missing_tools
from realstack import simple_truth

GUEST_LOG = "/tmp/flowprobe.log"
BIG_FILE_BYTES = 300_000

skip_reason = vm.missing() or missing_tools(NFCAPD, NFDUMP)
# CI sets it (through qemu-test.sh): there a missing tool must fail, not pass as a skip
REQUIRED = os.environ.get("QEMU_VM_REQUIRED") == "1"
pytestmark = pytest.mark.skipif(skip_reason is not None and not REQUIRED,
                                reason=f"QEMU VM test: {skip_reason}")


@pytest.fixture(scope="module")
def image():
    if skip_reason:
        pytest.fail(f"QEMU VM test required (QEMU_VM_REQUIRED=1) but cannot run: {skip_reason}")
    try:
        return vm_image.ensure_image()
    except staging.StagingError as error:
        pytest.fail(f"cannot stage the package: {error}")


class Booted:
    def __init__(self, link, guest, share):
        self.link, self.guest, self.share = link, guest, share
        self.boot_s = None


@pytest.fixture(scope="module")
def booted(image, tmp_path_factory):
    directory = tmp_path_factory.mktemp("vm")
    share = directory / "share"
    share.mkdir()
    with vm.HostLink() as link:
        guest = vm.Guest(vm.debian_argv(image, link, share), directory / "console.log")
        try:
            started = time.monotonic()
            guest.expect(r"FP-INIT-READY[^\n]*", 240)
            guest.expect(r"guest# ", 60)
            guest.quiet_console()
            state = Booted(link, guest, share)
            state.boot_s = time.monotonic() - started
            print(f"\nqemu: guest ready in {state.boot_s:.1f} s (console: {guest.log_path})")
            yield state
        finally:
            guest.close()  # kills QEMU only if a test left it running
    assert subprocess.run(["ip", "netns", "pids", link.namespace],
                          capture_output=True).returncode != 0, "the namespace is still there"


def test_the_package_layout_works_on_the_guest(booted, image):
    guest = booted.guest
    listed = guest.check("cat /etc/flowprobe-staged.txt").split()
    assert listed == [f.destination for f in image.staged]
    modes = guest.check("xargs stat -c '%n %a' </etc/flowprobe-staged.txt").split("\n")
    assert modes[:-1] == [f"{f.destination} {f.mode:o}" for f in image.staged]
    # the host-built C extension loads in the guest's Debian python3, with its libpcap
    where = guest.check("python3 -c 'import flowprobe._cmeter_ffi, flowprobe; "
                        "print(flowprobe.__file__)'")
    assert where.strip() == f"{staging.DEBIAN_DIST_PACKAGES}flowprobe/__init__.py", where
    version = guest.check("flowprobe --version")
    assert re.match(r"flowprobe \d+\.\d+", version), version
    # the init script: valid shell, and what it runs and reads is where the package put it
    init = guest.check("cat /etc/init.d/flowprobe")
    assert init.startswith("#!/bin/sh /etc/rc.common"), init[:200]
    guest.check("sh -n /etc/init.d/flowprobe")
    for name in ("PROG", "CONFIG"):
        path = re.search(rf"^{name}=(\S+)", init, re.M)
        assert path, f"the init script sets no {name}"
        guest.check(f"test -f {path[1]}")
    guest.check("test -x /usr/sbin/flowprobe")
    # the shipped config parses (it ships disabled: the daemon says so and exits)
    status, output = guest.run("flowprobe run --config /etc/config/flowprobe --no-ubus", 60)
    assert status == 0 and "nothing to do" in output, output


def test_exports_equal_the_wire(booted, tmp_path):
    link, guest, share = booted.link, booted.guest, booted.share
    (share / "flowprobe.conf").write_text(scenario.uci_file("eth0", vm.HOST_IP4))
    guest.check("cp /mnt/host/flowprobe.conf /etc/config/flowprobe")
    # servers for the traffic: an HTTP server for TCP, a UDP sink (no ICMP errors back)
    guest.check(f"mkdir -p /srv/www && head -c {BIG_FILE_BYTES} /dev/zero > /srv/www/big")
    guest.check(f"cd /srv/www && python3 -m http.server {scenario.HTTP_PORT} --bind :: "
                ">/tmp/http.log 2>&1 &")
    (share / "udp_sink.py").write_text(scenario.UDP_SINK)
    guest.check(f"python3 /mnt/host/udp_sink.py {scenario.UDP_PORT} >/tmp/sink.log 2>&1 &")

    with scenario.Nfcapd(netns=link.namespace, host=vm.HOST_IP4,
                         port=scenario.COLLECTOR_PORT) as nfcapd:
        # as a Debian user runs it: the config at the package's path, no procd
        guest.check(f"flowprobe run --config /etc/config/flowprobe >{GUEST_LOG} 2>&1 & "
                    "echo $! >/tmp/flowprobe.pid")
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            code, output = guest.run("flowprobe status --json 2>/dev/null", 30)
            if code == 0:
                status = json.loads(output)
                if status["interfaces"] and all(i["up"] for i in status["interfaces"]):
                    break
            time.sleep(1)
        assert status, "flowprobe never answered on its control socket:\n" + \
            guest.check(f"cat {GUEST_LOG}")
        truth_capture = scenario.TruthCapture(link, tmp_path / "link.pcap")
        started = time.monotonic()
        sent = scenario.send_traffic(link, vm.GUEST_IP4, vm.GUEST_IP6,
                                     http_port=scenario.HTTP_PORT)
        traffic_s = time.monotonic() - started
        truth = truth_capture.stop()
        status = scenario.wait_until_metered(
            lambda: json.loads(guest.check("flowprobe status --json", 30)),
            sum(p for p, _ in truth.values()))
        # SIGTERM: the daemon reads what the kernel holds, ends and exports every flow
        guest.check("kill -TERM $(cat /tmp/flowprobe.pid); "
                    "while kill -0 $(cat /tmp/flowprobe.pid) 2>/dev/null; do sleep 0.2; done",
                    90)
        log = guest.check(f"cat {GUEST_LOG}")
        received = nfcapd.flows()
        exported = scenario.per_flow_key(received)
        collector = nfcapd.stats()
    print(f"qemu: traffic {traffic_s:.1f} s, {sum(p for p, _ in truth.values())} packets in "
          f"{len(truth)} flows on the link; sent {sent.strip()}")

    assert status["config_error"] is None
    flowprobe_uid = int(guest.check("id -u flowprobe"))
    assert status["user"]["uid"] == flowprobe_uid, status["user"]  # it dropped root
    assert [(i["name"], i["up"]) for i in status["interfaces"]] == [("eth0", True)], status
    assert status["interfaces"][0]["pcap_dropped"] == 0, status["interfaces"]
    stopped = re.search(r"stopped: (\d+) packets read, (\d+) metered, .*; (\d+) records, "
                        r"(\d+) not sent", log)
    assert stopped, f"no stop summary in the daemon's log:\n{log}"
    assert int(stopped[4]) == 0 and int(stopped[3]) == len(received), stopped[0]
    assert "Traceback" not in log, log
    # the traffic the test meant to send is there: IPv4 and IPv6, UDP/TCP/ICMP, fragments
    protocols = {(key[0], key[1]) for key in truth}
    assert {(4, 17), (6, 17), (4, 6), (6, 6), (4, 1), (6, 58)} <= protocols, protocols
    report = simple_truth.truth_report(str(tmp_path / "link.pcap"))
    assert report.ipv4_fragments and report.ipv6_fragments, "no fragments crossed the link"
    # every flow exact, and every packet metered reached the collector
    assert scenario.compare(truth, exported) == []
    assert sum(p for p, _ in exported.values()) == int(stopped[2])
    assert collector["sequence_failures"] == 0 and collector["kernel_drops"] == 0, collector


def test_the_guest_powers_off_cleanly(booted):
    code = booted.guest.shutdown("exit", timeout=60)
    text = booted.guest.log_path.read_text(errors="replace")[-2000:]
    assert "FP-INIT: root remounted read-only" in text, text
    assert code == 0, f"QEMU exited {code}:\n{text}"
