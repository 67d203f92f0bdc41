"""What the system tests share: the probe's configuration, the truth capture on the host's end
of the link, the traffic, and the per-flow comparison of what nfcapd received with what
crossed the link.

The oracles are tests/'s: realstack/simple_truth.py reads the capture, collector_tools.Nfcapd
receives and nfdump reads back, captures.differences compares. None shares code with flowprobe.
"""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from captures import differences  # noqa: E402
from collector_tools import Nfcapd, per_flow_key  # noqa: E402
from realstack import simple_truth  # noqa: E402

COLLECTOR_PORT = 2055
UDP_PORT = 5000
HTTP_PORT = 8080
# Neighbour discovery and MLD come whenever the stacks like: neither side counts them, so the
# comparison cannot depend on their timing (the same filter as tests/test_daemon_live.py).
QUIET = "not ip6 proto 0 and not (icmp6 and icmp6[0] >= 133 and icmp6[0] <= 137)"
# The host's capture leaves out the probe's export, as the probe's own capture does.
TRUTH_FILTER = f"({QUIET}) and not (udp port {COLLECTOR_PORT})"
# the guest's UDP sink (python3 udp_sink.py PORT): datagrams are taken, so the guest answers
# none with an ICMP error
UDP_SINK = """import socket, sys
sink = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sink.bind(("::", int(sys.argv[1])))
while True:
    sink.recv(65536)
"""
LONG = {"idle_timeout": 3600, "active_timeout": 3600, "unanswered_timeout": 3600}


def main_options(interface):
    """The probe's main section: the guest's link both ways, every flow kept until the stop
    (so the stop's flush is what exports them), run as the user the package creates (only
    CAP_NET_RAW kept, on the guest's own kernel)."""
    return {"enabled": "1", "interface": interface, "direction": "both", "filter": QUIET,
            "user": "flowprobe", **{k: str(v) for k, v in LONG.items()}}


def collector_options(host):
    return {"protocol": "ipfix", "host": host, "port": str(COLLECTOR_PORT)}


def uci_file(interface, collector_host):
    """The configuration as /etc/config/flowprobe holds it (UCI syntax)."""
    lines = ["config flowprobe 'main'"]
    for key, value in main_options(interface).items():
        keyword = "list" if key == "interface" else "option"
        lines.append(f"\t{keyword} {key} '{value}'")
    lines += ["", "config collector 'host'"]
    lines += [f"\toption {k} '{v}'" for k, v in collector_options(collector_host).items()]
    return "\n".join(lines) + "\n"


def uci_commands(interface, collector_host):
    """The same configuration made with `uci` on OpenWrt."""
    commands = ["uci -q delete flowprobe.main.interface",
                "uci -q delete flowprobe.host",
                "uci set flowprobe.host=collector"]
    for key, value in main_options(interface).items():
        verb = "add_list" if key == "interface" else "set"
        commands.append(f"uci {verb} flowprobe.main.{key}='{value}'")
    commands += [f"uci set flowprobe.host.{k}='{v}'"
                 for k, v in collector_options(collector_host).items()]
    commands.append("uci commit flowprobe")
    return commands


class TruthCapture:
    """tcpdump on the host's end of the link, both ways: what really crossed it."""

    def __init__(self, link, path):
        self.link, self.path = link, Path(path)
        # a large buffer: under TCG the host is busy, and a truth with gaps
        # would be blamed on the probe
        self.process = link.popen("tcpdump", "-i", link.device, "-U", "-n", "-s", "262144",
                                  "-B", "16384", "-w", str(self.path), TRUTH_FILTER,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        # tcpdump says "listening" only on a terminal; its file header shows it is attached
        while time.monotonic() < deadline and not (self.path.exists()
                                                    and self.path.stat().st_size >= 24):
            time.sleep(0.1)
        time.sleep(0.5)

    def stop(self):
        """Per-flow (packets, octets) of everything captured."""
        # a loaded tcpdump lags, and its capture ring hands over a partly filled
        # block only after 1 s: quiet for longer than that, it has written all
        size, deadline = -1, time.monotonic() + 15
        while time.monotonic() < deadline and self.path.stat().st_size != size:
            size = self.path.stat().st_size
            time.sleep(1.2)
        self.process.send_signal(signal.SIGTERM)
        report = self.process.communicate(timeout=10)[1].decode(errors="replace")
        dropped = re.search(r"(\d+) packets? dropped by kernel", report)
        assert dropped and dropped[1] == "0", f"the truth capture lost packets: {report}"
        return simple_truth.truth(str(self.path))


def send_traffic(link, guest4, guest6, http_port=None, banner_port=None, rate=400,
                 datagrams=600):
    """Paced UDP (fragments included), TCP and ICMP echo with 3000-byte pings (fragmented both
    ways), over IPv4 and IPv6, from the host's end to the guest."""
    command = [sys.executable, str(HERE / "send_traffic.py"), "--to4", guest4, "--to6", guest6,
               "--udp-port", str(UDP_PORT), "--rate", str(rate), "--datagrams", str(datagrams)]
    if http_port:
        command += ["--http-port", str(http_port)]
    if banner_port:
        command += ["--banner-port", str(banner_port)]
    report = link.run(*command, timeout=300).stdout
    for family, target in (("-4", guest4), ("-6", guest6)):
        link.run("ping", family, "-c", "5", "-i", "0.2", "-s", "3000", target, timeout=60)
    return report


def ip_packets_metered(status):
    """IP packets the probe has read (ARP and other non-IP frames are read and counted apart)."""
    meter = status["meter"]
    return meter["packets_read"] - meter["dropped_non_ip"]


def wait_until_metered(read_status, packets, timeout=60):
    """The guest under TCG reads behind the host's capture: wait until the probe has read as
    many IP packets as crossed the link (then a lost packet shows as a difference, not as a
    race). read_status() returns the status; the last one is returned."""
    deadline = time.monotonic() + timeout
    status = read_status()
    while ip_packets_metered(status) < packets and time.monotonic() < deadline:
        time.sleep(1)
        status = read_status()
    return status


def compare(truth, exported):
    """Lines naming every flow whose packets or octets differ; [] when all are exact."""
    return differences(truth, exported, ("on the link", "at nfcapd"))


__all__ = ["Nfcapd", "per_flow_key", "compare", "TruthCapture", "send_traffic", "uci_file",
           "uci_commands", "COLLECTOR_PORT", "UDP_PORT", "HTTP_PORT", "QUIET"]
