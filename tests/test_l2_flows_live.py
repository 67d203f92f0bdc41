"""Layer-2 flows and checksums on real stacks: two network namespaces of our
own (l2f-*) joined by a veth; the daemon runs in one with l2_flows and
verify_checksums on its end of the link, capturing both directions, while
tcpdump records the same link (the truth).  Real ARP (arping), IPv6
neighbour discovery (ping -6), LLDP and EAPOL frames (scapy's sendp), UDP
and TCP that the daemon's own side sends with checksum offload switched on
(ethtool -K tx on: the capture sees them before the checksum is filled), and
frames sent with wrong checksums.  The daemon's layer-2 flows must equal the
truth's non-IP frames flow by flow; exactly the corrupted frames count as
bad, the offloaded ones as not verifiable."""

import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import rdpcap

from flowprobe.control.client import call
from flowprobe.control.handlers import ControlError
from netlab import missing, tear_down

A4, B4, A6, B6 = "10.94.0.1", "10.94.0.2", "fd94::1", "fd94::2"
LLDP_GROUP, PAE_GROUP = "01:80:c2:00:00:0e", "01:80:c2:00:00:03"
CORRUPTED = 5   # frames B sends with a wrong checksum (IPv4 header, UDP, TCP)


def why_not():
    reason = missing()
    if reason:
        return reason
    for tool in ("arping", "ethtool"):
        if shutil.which(tool) is None:
            return f"needs {tool} in PATH (apt-get install iputils-arping ethtool)"
    return None


pytestmark = pytest.mark.skipif(why_not() is not None, reason=f"layer-2 lab: {why_not()}")


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


class Lab:
    """a (the daemon's side) and b, one veth l2f0 between them."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"l2f-a-{tag}", f"l2f-b-{tag}"
        self.processes = []

    def __enter__(self):
        try:
            for namespace in (self.a, self.b):
                ip("netns", "add", namespace)
                ip("-n", namespace, "link", "set", "lo", "up")
                self.run(namespace, "sysctl", "-qw", "net.ipv6.conf.default.router_solicitations=0")
            ip("link", "add", "l2f0", "netns", self.a, "type", "veth", "peer", "name", "l2f0",
               "netns", self.b)
            for namespace, address4, address6 in ((self.a, A4, A6), (self.b, B4, B6)):
                ip("-n", namespace, "addr", "add", f"{address4}/24", "dev", "l2f0")
                ip("-n", namespace, "addr", "add", f"{address6}/64", "dev", "l2f0", "nodad")
                ip("-n", namespace, "link", "set", "l2f0", "up")
            # the daemon's side hands its packets over before their checksums are filled
            self.run(self.a, "ethtool", "-K", "l2f0", "tx", "on")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        tear_down(self.processes, (self.a, self.b))

    def run(self, namespace, *command, check=True):
        return subprocess.run(["ip", "netns", "exec", namespace, *command], check=check,
                              capture_output=True, text=True, timeout=60)

    def popen(self, namespace, *command, **options):
        process = subprocess.Popen(["ip", "netns", "exec", namespace, *command], **options)
        self.processes.append(process)
        return process

    def mac(self, namespace):
        out = self.run(namespace, "cat", "/sys/class/net/l2f0/address").stdout
        return out.strip()


SEND = """
import sys
from scapy.layers.eap import EAPOL
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.sendrecv import sendp
a, b = sys.argv[1], sys.argv[2]
frames = [Ether(src=b, dst="{lldp}", type=0x88cc) / (b"\\x02\\x07\\x04" + bytes(40))] * 2
frames += [Ether(src=b, dst="{pae}") / EAPOL(type=1)]
frames += [Ether(src=b, dst=a) / Dot1Q(vlan=7) / ARP(psrc="{b4}", pdst="{a4}")]
frames += [Ether(src=b, dst=a) / IP(src="{b4}", dst="{a4}", chksum=0x1234) / UDP(dport=9)] * 2
frames += [Ether(src=b, dst=a) / IP(src="{b4}", dst="{a4}") / UDP(dport=9, chksum=7) / b"x"] * 2
frames += [Ether(src=b, dst=a) / IP(src="{b4}", dst="{a4}") / TCP(dport=9, chksum=1)]
sendp(frames, iface="l2f0", verbose=False)
""".format(lldp=LLDP_GROUP, pae=PAE_GROUP, a4=A4, b4=B4)

OFFLOADED = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in range(4):
    s.sendto(b"o" * (100 + n), ("{b4}", 4000))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for n in range(3):
    s6.sendto(b"p" * (50 + n), ("{b6}", 4001))
""".format(b4=B4, b6=B6)


def layer2_truth(packets):
    """(src, dst, VLAN, EtherType) → [packets, octets behind the EtherType] of
    the frames that are not IP."""
    truth = {}
    for packet in packets:
        vlan, ethertype, header = 0, packet[Ether].type, 14
        if packet.haslayer(Dot1Q):
            vlan, ethertype, header = packet[Dot1Q].vlan, packet[Dot1Q].type, 18
        if ethertype in (0x0800, 0x86DD):
            continue
        entry = truth.setdefault((packet[Ether].src, packet[Ether].dst, vlan, ethertype), [0, 0])
        entry[0] += 1
        entry[1] += len(packet) - header
    return truth


def checksum_wrong(packet):
    """Whether the captured transport checksum differs from the right one."""
    layer = packet.getlayer(UDP) or packet.getlayer(TCP)
    if layer is None or packet.haslayer(Dot1Q):
        return False
    rebuilt = packet.copy()
    del rebuilt[type(layer)].chksum
    return bytes(rebuilt[type(layer)])[6 if isinstance(layer, UDP) else 16:][:2] != \
        bytes(layer)[6 if isinstance(layer, UDP) else 16:][:2]


def test_layer2_flows_and_checksums_equal_the_wire(tmp_path):
    with Lab() as lab:
        config = tmp_path / "flowprobe.conf"
        control = str(tmp_path / "control.sock")
        config.write_text(
            "config flowprobe 'main'\n\toption enabled '1'\n"
            f"\toption control_socket '{control}'\n\toption verify_checksums '1'\n"
            "\toption idle_timeout '3600'\n\toption active_timeout '3600'\n"
            "\toption unanswered_timeout '3600'\n\tlist interface 'l2f0'\n"
            "config interface 'l2f0'\n\toption direction 'both'\n\toption l2_flows '1'\n"
            "\toption snaplen '2048'\n")
        log = open(tmp_path / "daemon.log", "w+")
        daemon = lab.popen(lab.a, sys.executable, "-m", "flowprobe", "run", "--config",
                           str(config), "--no-ubus", stdout=log, stderr=subprocess.STDOUT)
        truth_path = tmp_path / "truth.pcap"
        tcpdump = lab.popen(lab.a, "tcpdump", "-i", "l2f0", "-U", "-n", "-s", "2048", "-w",
                            str(truth_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def status():
            return call(control, "status")

        deadline = time.monotonic() + 20
        while True:
            assert daemon.poll() is None, log.seek(0) or log.read()
            try:
                if all(i["up"] for i in status()["interfaces"]):
                    break
            except (ControlError, OSError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline, "the daemon never captured"
            time.sleep(0.1)
        time.sleep(1)   # tcpdump attaches (it says so only on a terminal)

        mac_a, mac_b = lab.mac(lab.a), lab.mac(lab.b)
        lab.run(lab.b, "arping", "-c", "3", "-w", "5", "-I", "l2f0", A4)
        lab.run(lab.a, "ping", "-6", "-c", "2", "-i", "0.2", B6)         # neighbour discovery
        lab.run(lab.b, sys.executable, "-c", SEND, mac_a, mac_b)
        lab.run(lab.a, sys.executable, "-c", OFFLOADED)
        lab.run(lab.a, sys.executable, "-c",
                f"import socket\ns = socket.socket()\ns.settimeout(2)\n"
                f"s.connect_ex(('{B4}', 4002))")   # a SYN out, a RST back

        time.sleep(1.5)   # both capture rings hand over their last blocks
        tcpdump.send_signal(signal.SIGTERM)
        tcpdump.wait(10)
        wire = rdpcap(str(truth_path))
        meter = status()["meter"]
        flows = call(control, "flows", {"limit": 1000})["flows"]
        listing = subprocess.run([sys.executable, "-m", "flowprobe", "flows", "--socket", control],
                                 capture_output=True, text=True, timeout=30)
        shown = subprocess.run([sys.executable, "-m", "flowprobe", "status", "--socket",
                                control], capture_output=True, text=True, timeout=30)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.seek(0) or log.read()

    assert meter["packets_dropped_by_kernel"] == 0
    truth = layer2_truth(wire)
    got = Counter()
    octets = Counter()
    for flow in flows:
        if flow["ip_version"] == 0:
            key = (flow["src_mac"], flow["dst_mac"], flow["vlan_id"], flow["ethernet_type"])
            got[key] += flow["packets"]
            octets[key] += flow["octets"]
    assert {k: [got[k], octets[k]] for k in got} == truth
    kinds = {k[3] for k in truth}
    assert {0x0806, 0x88CC, 0x888E} <= kinds
    assert (mac_b, "ff:ff:ff:ff:ff:ff", 0, 0x0806) in truth   # arping's requests
    assert (mac_a, mac_b, 0, 0x0806) in truth                 # and the replies
    # ping -6's neighbour solicitation and advertisement (the stacks' own
    # chatter at link-up, MLD and DAD, comes when it likes: left out)
    neighbour_discovery = Counter(
        (p[IPv6].src, p[IPv6].dst, bytes(p[IPv6].payload)[0]) for p in wire
        if p.haslayer(IPv6) and p[IPv6].nh == 58 and bytes(p[IPv6].payload)[0] in (135, 136)
        and p[IPv6].src.startswith("fd94:"))
    assert sum(neighbour_discovery.values()) >= 2
    assert {key: sum(f["packets"] for f in flows if f["ip_version"] == 6
                     and (f["src_addr"], f["dst_addr"], f["dst_port"] >> 8) == key)
            for key in neighbour_discovery} == neighbour_discovery

    # checksums: the corrupted frames, and only they, are bad, on their flows
    assert meter["checksum_packets_bad"] == CORRUPTED
    assert sum(f.get("checksum_errors", 0) for f in flows) == CORRUPTED
    offloaded = [p for p in wire if p.haslayer(IP) and p[IP].src == A4 or
                 p.haslayer(IPv6) and p[IPv6].src == A6 and p.haslayer(UDP)]
    left_for_the_nic = [p for p in offloaded if checksum_wrong(p)]
    assert len(left_for_the_nic) >= 7, "tx offload on: the capture saw unfilled checksums"
    assert meter["checksum_packets_unverifiable"] >= len(left_for_the_nic)
    assert not any(f.get("checksum_errors") for f in flows
                   if f["src_addr"] in (A4, A6))

    assert listing.returncode == 0, listing.stderr
    assert mac_b in listing.stdout and "0x88cc LLDP" in listing.stdout
    assert shown.returncode == 0, shown.stderr
    assert f"{CORRUPTED} wrong" in shown.stdout
