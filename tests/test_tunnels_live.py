"""A real tunnel between two network namespaces of our own: pings cross it,
tcpdump records the underlay and the tunnel device at once, and the
underlay's capture metered with `tunnels inner` must give, flow by flow,
what the tunnel device saw (the truth, read with scapy).  Tunnel types the
kernel here cannot create are skipped by name."""

import subprocess
import time
import uuid

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.utils import rdpcap

from captures import assert_conserved, meter_pcap
from netlab import missing

UNDERLAY = ("10.92.0.1", "10.92.0.2")
INNER4 = ("10.93.0.1", "10.93.0.2")
INNER6 = ("fd93::1", "fd93::2")
# name: (iproute2 type and arguments for side a, for side b; the segment id)
TUNNELS = {
    "vxlan": (["vxlan", "id", "4242", "local", UNDERLAY[0], "remote", UNDERLAY[1],
               "dstport", "4789"],
              ["vxlan", "id", "4242", "local", UNDERLAY[1], "remote", UNDERLAY[0],
               "dstport", "4789"], 0x01 << 56 | 4242),
    "gretap": (["gretap", "local", UNDERLAY[0], "remote", UNDERLAY[1], "key", "12"],
               ["gretap", "local", UNDERLAY[1], "remote", UNDERLAY[0], "key", "12"],
               0x02 << 56 | 12),
    "gre": (["gre", "local", UNDERLAY[0], "remote", UNDERLAY[1], "key", "11"],
            ["gre", "local", UNDERLAY[1], "remote", UNDERLAY[0], "key", "11"], 0x02 << 56 | 11),
    "geneve": (["geneve", "id", "99", "remote", UNDERLAY[1]],
               ["geneve", "id", "99", "remote", UNDERLAY[0]], 0x81 << 56 | 99),
    "ipip": (["ipip", "local", UNDERLAY[0], "remote", UNDERLAY[1]],
             ["ipip", "local", UNDERLAY[1], "remote", UNDERLAY[0]], 0x84 << 56),
}

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


class TunnelLab:
    def __init__(self, kind):
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"tun-a-{tag}", f"tun-b-{tag}"
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
        args_a, args_b, _ = TUNNELS[self.kind]
        for namespace, underlay, args, inner4, inner6 in (
                (self.a, UNDERLAY[0], args_a, INNER4[0], INNER6[0]),
                (self.b, UNDERLAY[1], args_b, INNER4[1], INNER6[1])):
            ip("-n", namespace, "addr", "add", f"{underlay}/24", "dev", "tun-under")
            ip("-n", namespace, "link", "set", "tun-under", "up")
            made = ip("-n", namespace, "link", "add", "tun-dev", "type", *args, check=False)
            if made.returncode != 0:
                pytest.skip(f"the kernel here cannot make a {self.kind} tunnel: "
                            f"{made.stderr.strip()}")
            ip("-n", namespace, "addr", "add", f"{inner4}/24", "dev", "tun-dev")
            ip("-n", namespace, "addr", "add", f"{inner6}/64", "dev", "tun-dev", "nodad")
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


EXTENSION_HEADERS = (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting)


def truth_of(path):
    """(src, dst, protocol) -> [packets, octets] of the IP packets a capture holds."""
    flows = {}
    for packet in rdpcap(str(path)):
        layer = packet.getlayer(IP) or packet.getlayer(IPv6)
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


@pytest.mark.parametrize("kind", TUNNELS)
def test_inner_flows_equal_the_tunnel_devices_truth(tmp_path, kind):
    underlay, device = tmp_path / "underlay.pcap", tmp_path / "device.pcap"
    with TunnelLab(kind) as lab:
        captures = [lab.tcpdump("tun-under", underlay)]
        try:
            captures.append(lab.tcpdump("tun-dev", device))
            lab.ping("-c", "3", "-s", "100", INNER4[1])
            lab.ping("-c", "2", "-s", "1000", INNER6[1])
            time.sleep(0.3)
        finally:
            for process in captures:
                process.terminate()
                process.wait(timeout=10)
    # the pings' flows: IPv6 autoconfiguration may still talk while the
    # two captures stop, one after the other
    ours = set(INNER4 + INNER6)
    truth = {k: v for k, v in truth_of(device).items() if {k[0], k[1]} <= ours}
    assert sum(p for p, _ in truth.values()) >= 10   # both pings, both ways
    records, counters = meter_pcap(underlay, tunnels="inner")
    assert_conserved(records, counters)
    segment = TUNNELS[kind][2]
    got, inner_packets = {}, 0
    for r in records:
        if r.get("layer2_segment_id") == segment:
            inner_packets += r["packets"]
            if {r["src_addr"], r["dst_addr"]} <= ours:
                counts = got.setdefault((r["src_addr"], r["dst_addr"], r["protocol"]), [0, 0])
                counts[0] += r["packets"]
                counts[1] += r["octets"]
    assert got == truth
    assert counters["tunnel_packets_inner"] == inner_packets
    # ARP inside the tunnel is not IP: metered as the tunnel, and counted so
    assert counters["tunnel_packets_undecoded"] >= 2
