"""A real tunnel between two network namespaces of our own: pings cross it,
tcpdump records the underlay and the tunnel device at once, and the
underlay's capture, metered three ways, must give flow by flow:
`tunnels inner` what the tunnel device saw (the truth, read with scapy),
`outer` what the underlay saw, and `both` the two side by side, each tunnel
packet counted twice.  Tunnel types the kernel here cannot create are
skipped by name, with iproute2's reason."""

import subprocess
import sys
import time
import uuid

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.utils import rdpcap

import tunnel_vm
from captures import assert_conserved, meter_pcap
from flowprobe.meter import packets_ignored
from netlab import missing

UNDERLAY = ("10.92.0.1", "10.92.0.2")
UNDERLAY6 = ("fd92::1", "fd92::2")
INNER4 = ("10.93.0.1", "10.93.0.2")
INNER6 = ("fd93::1", "fd93::2")
BOTH_FAMILIES, IPV4_ONLY, IPV6_ONLY = (4, 6), (4,), (6,)


def between(kind, *args, underlay=UNDERLAY):
    """iproute2 arguments for side a and side b of a point-to-point tunnel."""
    return ([kind, *args, "local", underlay[0], "remote", underlay[1]],
            [kind, *args, "local", underlay[1], "remote", underlay[0]])


# name: (iproute2 `ip link add` arguments for side a, for side b (None: made
#        by `ip l2tp`), the segment id, the inner families it carries)
TUNNELS = {
    "vxlan": (["vxlan", "id", "4242", "local", UNDERLAY[0], "remote", UNDERLAY[1],
               "dstport", "4789"],
              ["vxlan", "id", "4242", "local", UNDERLAY[1], "remote", UNDERLAY[0],
               "dstport", "4789"], 0x01 << 56 | 4242, BOTH_FAMILIES),
    "vxlan6": (*between("vxlan", "id", "77", "dstport", "4789", underlay=UNDERLAY6),
               0x01 << 56 | 77, BOTH_FAMILIES),                   # over an IPv6 underlay
    "gretap": (*between("gretap", "key", "12"), 0x02 << 56 | 12, BOTH_FAMILIES),
    "gre": (*between("gre", "key", "11"), 0x02 << 56 | 11, BOTH_FAMILIES),
    "geneve": (["geneve", "id", "99", "remote", UNDERLAY[1]],
               ["geneve", "id", "99", "remote", UNDERLAY[0]], 0x81 << 56 | 99, BOTH_FAMILIES),
    "ipip": (*between("ipip"), 0x84 << 56, IPV4_ONLY),
    "sit": (*between("sit"), 0x84 << 56, IPV6_ONLY),                 # 6in4
    "ip6gre": (*between("ip6gre", "key", "13", underlay=UNDERLAY6), 0x02 << 56 | 13,
               BOTH_FAMILIES),
    "ip6tnl": (*between("ip6tnl", "mode", "any", underlay=UNDERLAY6), 0x84 << 56,
               BOTH_FAMILIES),
    # L2TPv3 (iproute2 makes static tunnels only): Ethernet over UDP 1701, session 2
    "l2tp": (None, None, 0x82 << 56 | 2, BOTH_FAMILIES),
}

def build_commands(kind, side):
    """The `ip -n NAMESPACE ...` commands that make side's tun-dev."""
    args = TUNNELS[kind][side]
    if kind == "l2tp":
        return [["l2tp", "add", "tunnel", "tunnel_id", "1", "peer_tunnel_id", "1", "encap", "udp",
                 "local", UNDERLAY[side], "remote", UNDERLAY[1 - side], "udp_sport", "1701",
                 "udp_dport", "1701"],
                ["l2tp", "add", "session", "name", "tun-dev", "tunnel_id", "1", "session_id",
                 "2", "peer_session_id", "2"]]
    return [["link", "add", "tun-dev", "type", *args]]


def vm_commands(kind):
    return tuple([" ".join(c) for c in build_commands(kind, side)] for side in (0, 1))


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


class KernelLacks(Exception):
    """The kernel here cannot make this tunnel (iproute2's words)."""


class TunnelLab:
    def __init__(self, kind):
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"tn2-a-{tag}", f"tn2-b-{tag}"
        self.kind = kind

    def __enter__(self):
        for namespace in (self.a, self.b):
            ip("netns", "add", namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self):
        ip("link", "add", "tun-under", "netns", self.a, "type", "veth", "peer", "name",
           "tun-under", "netns", self.b)
        for side, namespace in ((0, self.a), (1, self.b)):
            ip("-n", namespace, "addr", "add", f"{UNDERLAY[side]}/24", "dev", "tun-under")
            ip("-n", namespace, "addr", "add", f"{UNDERLAY6[side]}/64", "dev", "tun-under",
               "nodad")
            ip("-n", namespace, "link", "set", "tun-under", "up")
            for command in build_commands(self.kind, side):
                made = ip("-n", namespace, *command, check=False)
                if made.returncode != 0:
                    raise KernelLacks(made.stderr.strip())
            ip("-n", namespace, "addr", "add", f"{INNER4[side]}/24", "dev", "tun-dev")
            ip("-n", namespace, "addr", "add", f"{INNER6[side]}/64", "dev", "tun-dev", "nodad")
            ip("-n", namespace, "link", "set", "tun-dev", "up")

    def __exit__(self, *exc):
        for namespace in (self.a, self.b):
            ip("netns", "del", namespace, check=False)

    def tcpdump(self, device, path):
        process = subprocess.Popen(["ip", "netns", "exec", self.a, "tcpdump", "-i", device, "-U",
                                    "--immediate-mode", "-n", "-w", str(path)],
                                   stderr=subprocess.PIPE, text=True)
        line = process.stderr.readline()   # "listening on ...": capturing from now on
        assert "listening" in line, line
        return process

    def ping(self, *args):
        subprocess.run(["ip", "netns", "exec", self.a, "ping", "-q", "-i", "0.2", *args],
                       check=True, capture_output=True, timeout=30)

    def knock(self, address):
        """A TCP connection refused (SYN, RST) and a UDP datagram answered
        by ICMP port unreachable: TCP, UDP and ICMP with no server to run."""
        subprocess.run(["ip", "netns", "exec", self.a, sys.executable, "-c", KNOCK, address],
                       check=True, capture_output=True, timeout=30)


KNOCK = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
try:
    socket.create_connection((sys.argv[1], 9), timeout=5)
except ConnectionRefusedError:
    pass
udp = socket.socket(family, socket.SOCK_DGRAM)
udp.sendto(b"x" * 300, (sys.argv[1], 9))
time.sleep(0.2)
"""


EXTENSION_HEADERS = (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting)


def outermost_ip(packet):
    layer = packet
    while layer and not isinstance(layer, (IP, IPv6)):
        layer = layer.payload
    return layer or None


def truth_of(path):
    """(src, dst, protocol) -> [packets, octets] of the IP packets a capture
    holds, by their outermost IP header."""
    flows = {}
    for packet in rdpcap(str(path)):
        layer = outermost_ip(packet)
        if layer is None:
            continue
        protocol = layer.proto if layer.version == 4 else layer.nh
        header = layer.payload
        while isinstance(header, EXTENSION_HEADERS):   # MLD reports carry hop-by-hop
            protocol, header = header.nh, header.payload
        length = layer.len if layer.version == 4 else 40 + layer.plen
        counts = flows.setdefault((layer.src, layer.dst, protocol), [0, 0])
        counts[0] += 1
        counts[1] += length
    return flows


def by_addresses(records):
    flows = {}
    for r in records:
        counts = flows.setdefault((r["src_addr"], r["dst_addr"], r["protocol"]), [0, 0])
        counts[0] += r["packets"]
        counts[1] += r["octets"]
    return flows


OURS = set(INNER4 + INNER6)


@pytest.fixture(scope="module")
def virtual_machine(tmp_path_factory):
    """Captures of the tunnel VM (tests/tunnel_vm.py), one boot for every
    type, on first need: kind -> (underlay, device), or why there are none."""
    made = {}

    def captures_of(kind):
        if not made:
            reason = tunnel_vm.missing()
            made["result"] = reason or tunnel_vm.capture(
                {k: vm_commands(k) + (TUNNELS[k][3], UNDERLAY, UNDERLAY6, INNER4, INNER6)
                 for k in TUNNELS}, tmp_path_factory.mktemp("vm"))
        result = made["result"]
        return result if isinstance(result, str) else result[kind]
    return captures_of


@pytest.fixture(scope="module", params=TUNNELS)
def captured(request, tmp_path_factory, virtual_machine):
    """One lab per tunnel type: pings of the families it carries cross it
    while tcpdump records both sides; (kind, underlay pcap, device truth).
    Where this kernel cannot make the type, the tunnel VM's captures (when
    FLOWPROBE_TUNNEL_KERNEL names a kernel for it), or a skip naming both."""
    kind = request.param
    directory = tmp_path_factory.mktemp(kind)
    try:
        underlay, device = capture_locally(kind, directory)
    except KernelLacks as lacking:
        from_vm = virtual_machine(kind)
        if isinstance(from_vm, str):
            pytest.skip(f"the kernel here cannot make a {kind} tunnel ({lacking}), "
                        f"and no VM: {from_vm}")
        underlay, device = from_vm
    # the pings' flows: IPv6 autoconfiguration may still talk while the
    # two captures stop, one after the other
    truth = {k: v for k, v in truth_of(device).items() if {k[0], k[1]} <= OURS}
    # pings both ways, the refused TCP, the UDP datagram and its ICMP answer
    families = TUNNELS[kind][3]
    assert {protocol for _, _, protocol in truth} >= {6, 17} | (
        {1} if 4 in families else set()) | ({58} if 6 in families else set())
    return kind, underlay, truth


def capture_locally(kind, directory):
    underlay, device = directory / "underlay.pcap", directory / "device.pcap"
    with TunnelLab(kind) as lab:
        captures = [lab.tcpdump("tun-under", underlay)]
        try:
            captures.append(lab.tcpdump("tun-dev", device))
            if 4 in TUNNELS[kind][3]:
                lab.ping("-c", "3", "-s", "100", INNER4[1])
                lab.knock(INNER4[1])
            if 6 in TUNNELS[kind][3]:
                lab.ping("-c", "2", "-s", "1000", INNER6[1])
                lab.knock(INNER6[1])
            time.sleep(0.3)
        finally:
            for process in captures:
                process.terminate()
                process.wait(timeout=10)
    return underlay, device


def test_inner_flows_equal_the_tunnel_devices_truth(captured):
    kind, underlay, truth = captured
    records, counters = meter_pcap(underlay, tunnels="inner")
    assert_conserved(records, counters)
    segment = TUNNELS[kind][2]
    inner = [r for r in records if r.get("layer2_segment_id") == segment]
    assert by_addresses(r for r in inner if {r["src_addr"], r["dst_addr"]} <= OURS) == truth
    assert counters["tunnel_packets_inner"] == sum(r["packets"] for r in inner)
    if kind in ("vxlan", "vxlan6", "gretap", "geneve", "l2tp"):
        # ARP inside an Ethernet tunnel is not IP: metered as the tunnel, and counted so
        assert counters["tunnel_packets_undecoded"] >= 2


def test_outer_flows_equal_the_underlays_truth(captured):
    kind, underlay, _ = captured
    records, counters = meter_pcap(underlay, tunnels="outer")
    assert_conserved(records, counters)
    assert by_addresses(records) == truth_of(underlay)
    assert not any(r.get("layer2_segment_id") for r in records)
    assert counters["tunnel_packets_inner"] == 0


def test_both_gives_the_underlays_and_the_tunnels_truth(captured):
    kind, underlay, truth = captured
    records, counters = meter_pcap(underlay, tunnels="both")
    assert_conserved(records, counters)
    inner = [r for r in records if r.get("layer2_segment_id")]
    outer = [r for r in records if not r.get("layer2_segment_id")]
    assert by_addresses(outer) == truth_of(underlay)
    assert by_addresses(r for r in inner if {r["src_addr"], r["dst_addr"]} <= OURS) == truth
    assert {r["layer2_segment_id"] for r in inner} == {TUNNELS[kind][2]}
    twice = sum(r["packets"] for r in inner)
    assert counters["tunnel_packets_counted_twice"] == counters["tunnel_packets_inner"] == twice
    assert counters["packets_metered"] == (counters["packets_read"] - packets_ignored(counters)
                                           + twice)
