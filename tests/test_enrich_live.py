"""Routing enrichment live (issue 16): the daemon on a namespace router with
two uplinks and a policy rule exports, for every flow its LAN sends, the
egress interface and next hop `ip route get` names for it, in IPFIX,
NetFlow v9 and v5, as nfdump reads them; a route change during traffic
moves the flows that start after it; the MAC fields carry the first
frame's addresses.

Needs root, ip netns and nfcapd/nfdump; skipped otherwise.
"""

import shutil
import subprocess
import sys
import time

import pytest

from collector_tools import NFCAPD, NFDUMP, Nfcapd, missing_tools
from enrich_lab import TwoUplinks
from flowprobe.control.client import call
from netlab import missing

skip_reason = missing() or missing_tools(NFCAPD, NFDUMP)
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"enrich live: {skip_reason}")

FIELDS = ("sourceIPv4Address destinationIPv4Address sourceIPv6Address destinationIPv6Address "
          "sourceTransportPort destinationTransportPort protocolIdentifier packetDeltaCount "
          "octetDeltaCount flowStartMilliseconds flowEndMilliseconds ingressInterface "
          "egressInterface ipNextHopIPv4Address ipNextHopIPv6Address sourceMacAddress "
          "destinationMacAddress bgpSourceAsNumber bgpDestinationAsNumber sourceIPv4PrefixLength "
          "destinationIPv4PrefixLength sourceIPv6PrefixLength destinationIPv6PrefixLength")
PREFIXES = ("192.168.7.0/24 64501\n198.51.100.0/24 64500\nfd07::/64 64501\n"
            "2001:db8::/32 AS4200000000\n")
# (source AS, prefix length), (destination AS, prefix length) by family, as nfdump shows them
AS_FIELDS = {4: ((64501, 24), (64500, 24)), 6: ((64501, 64), (4200000000, 32))}
PORTS = {"ipfix": 2055, "netflow9": 2056, "netflow5": 2057}


def config_text(socket_path, prefix_file):
    lines = ["config flowprobe 'main'", "\toption enabled '1'",
             f"\toption prefix_file '{prefix_file}'",
             f"\toption control_socket '{socket_path}'", "\tlist interface 'lan0'",
             "\toption direction 'in'", "\toption filter 'udp'", "\toption idle_timeout '1'",
             "\toption routing '1'"]
    for protocol, port in PORTS.items():
        lines += [f"config collector '{protocol}'", f"\toption protocol '{protocol}'",
                  "\toption host '127.0.0.1'", f"\toption port '{port}'"]
        if protocol != "netflow5":
            lines.append(f"\toption fields '{FIELDS}'")
    return "\n".join(lines) + "\n"


def send(lab, source, destination, port):
    """Three datagrams from source to the far server's port."""
    family = "AF_INET6" if ":" in destination else "AF_INET"
    lab.run(lab.client, sys.executable, "-c",
            "import socket\n"
            f"s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
            f"s.bind(('{source}', 0))\n"
            f"for n in range(3): s.sendto(b'x' * 100, ('{destination}', {port}))\n")


def wait_for(predicate, process, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the daemon exited"
        try:
            if predicate():
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.1)
    raise AssertionError("never got there")


def test_every_flow_carries_the_egress_and_next_hop_ip_route_get_names(tmp_path):
    with TwoUplinks() as lab:
        collectors = {p: Nfcapd(netns=lab.router, port=port, directory=tmp_path / p)
                      for p, port in PORTS.items()}
        for collector in collectors.values():
            collector.start()
        socket_path = str(tmp_path / "control.sock")
        (tmp_path / "asn.txt").write_text(PREFIXES)
        (tmp_path / "flowprobe.conf").write_text(config_text(socket_path, tmp_path / "asn.txt"))
        log = open(tmp_path / "daemon.log", "w+")
        daemon = lab.popen(lab.router, sys.executable, "-m", "flowprobe", "run", "--config",
                           str(tmp_path / "flowprobe.conf"), "--no-ubus", stdout=log,
                           stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: call(socket_path, "status")["interfaces"][0]["up"], daemon)
            macs = (lab.run(lab.client, "cat", "/sys/class/net/eth0/address").stdout.strip(),
                    lab.run(lab.router, "cat", "/sys/class/net/lan0/address").stdout.strip())
            expected = {}   # (source, port) -> (egress ifindex, next hop)
            flows = [("192.168.7.20", lab.far4, 5001), ("192.168.7.200", lab.far4, 5002),
                     ("fd07::20", lab.far6, 5003), ("fd07::8000:0:0:20", lab.far6, 5004)]
            for source, destination, port in flows:
                device, gateway = lab.route_get(destination, source)
                expected[(source, port)] = (lab.ifindex(device), gateway)
                send(lab, source, destination, port)
            wait_for(lambda: call(socket_path, "status")["enrich"]["records_enriched"] >= 4,
                     daemon)
            # the route changes during traffic: flows after it leave by up2
            lab.ip(lab.router, "route", "replace", "default", "via", "10.1.2.254")
            device, gateway = lab.route_get(lab.far4, "192.168.7.20")
            assert (device, gateway) == ("up2", "10.1.2.254")
            expected[("192.168.7.20", 5005)] = (lab.ifindex(device), gateway)
            send(lab, "192.168.7.20", lab.far4, 5005)
            wait_for(lambda: call(socket_path, "status")["enrich"]["records_enriched"] >= 5,
                     daemon)
            status = call(socket_path, "status")["enrich"]
        finally:
            daemon.terminate()
            daemon.wait(30)
            log.seek(0)
            output = log.read()
        assert daemon.returncode == 0, output
        assert status["records_without_route"] == 0 and status["routes_by_source"], status
        assert expected[("192.168.7.20", 5001)][1] == "10.1.1.254"     # the rule's both sides
        assert expected[("192.168.7.200", 5002)][1] == "10.1.2.254"
        for protocol, collector in collectors.items():
            got = {}
            for flow in collector.flows():
                raw = flow["raw"]
                hop = raw.get("ip4_next_hop") or raw.get("ip6_next_hop")
                got[(flow["src_addr"], flow["dst_port"])] = (flow["out_if"], hop)
                if protocol != "netflow5":   # the first frame's MACs: client to router
                    assert (raw.get("in_src_mac"), raw.get("in_dst_mac")) == macs, raw
                source, destination = AS_FIELDS[6 if ":" in flow["src_addr"] else 4]
                if protocol == "netflow5":   # nfdump 1.7.1 keeps no v5 masks (their
                    # bytes: test_enrich_prefixes.py)
                    source, destination = (source[0], 0), (destination[0], 0)
                assert ((raw.get("src_as"), raw.get("src_mask")),
                        (raw.get("dst_as"), raw.get("dst_mask"))) == (source, destination), (
                            protocol, sorted(raw.items()))
            want = {key: value for key, value in expected.items()
                    if protocol != "netflow5" or ":" not in key[0]}   # v5: IPv4 only
            assert got == want, (protocol, collector.raw_flows()[:1])
            collector.close()


DHCP_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/24" dev "$interface"
exit 0
"""


@pytest.mark.skipif(missing_tools("/usr/sbin/dnsmasq", "/bin/busybox") is not None,
                    reason=f"device names: {missing_tools('/usr/sbin/dnsmasq', '/bin/busybox')}")
def test_the_flow_list_names_the_device_behind_each_address_from_a_real_dnsmasq(tmp_path):
    """A real dnsmasq leases an address to the client (busybox udhcpc,
    host name 'laptop'); the daemon's flow list names the device of a flow
    from that address, and of one from the client's IPv6 address, which no
    lease names: the neighbour table's MAC joins it to the lease."""
    with TwoUplinks() as lab:
        leases = tmp_path / "dhcp.leases"
        lab.popen(lab.router, "/usr/sbin/dnsmasq", "--no-daemon", "--conf-file=/dev/null",
                  "--port=0", "--interface=lan0", "--bind-interfaces", "--user=root",
                  "--dhcp-range=192.168.7.100,192.168.7.150,1h", "--no-ping",
                  f"--dhcp-leasefile={leases}", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        script = tmp_path / "udhcpc.sh"
        script.write_text(DHCP_SCRIPT)
        script.chmod(0o755)
        for _ in range(20):   # until dnsmasq listens
            done = lab.run(lab.client, "/bin/busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
                           "-t", "3", "-T", "1", "-x", "hostname:laptop", "-s", str(script),
                           check=False)
            if done.returncode == 0:
                break
        assert done.returncode == 0, done.stderr
        [leased] = [line.split()[2] for line in leases.read_text().splitlines()]
        mac = lab.run(lab.client, "cat", "/sys/class/net/eth0/address").stdout.strip()
        socket_path = str(tmp_path / "control.sock")
        (tmp_path / "flowprobe.conf").write_text("\n".join([
            "config flowprobe 'main'", "\toption enabled '1'",
            f"\toption control_socket '{socket_path}'", "\tlist interface 'lan0'",
            "\toption filter 'udp and not port 67'", "\toption devices '1'",
            f"\toption lease_file '{leases}'",
            f"\toption dhcpv6_lease_file '{tmp_path / 'odhcpd'}'"]) + "\n")
        log = open(tmp_path / "daemon.log", "w+")
        daemon = lab.popen(lab.router, sys.executable, "-m", "flowprobe", "run", "--config",
                           str(tmp_path / "flowprobe.conf"), "--no-ubus", stdout=log,
                           stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: call(socket_path, "status")["interfaces"][0]["up"], daemon)
            send(lab, leased, lab.far4, 5101)
            send(lab, "fd07::20", lab.far6, 5102)

            def devices():
                flows = call(socket_path, "flows", {"protocol": "udp"})["flows"]
                return {f["dst_port"]: f.get("src_device") for f in flows}

            wait_for(lambda: all(devices().get(port) for port in (5101, 5102)), daemon)
            seen = devices()
        finally:
            daemon.terminate()
            daemon.wait(30)
        laptop = {"name": "laptop", "mac": mac}
        assert seen[5101] == laptop and seen[5102] == laptop, seen


MARK_RULES = """
table ip enrich {
  chain pre {
    type filter hook prerouting priority mangle;
    ip saddr 192.168.7.20 udp dport 5201 meta mark set 7 ct mark set meta mark
  }
  chain post {
    type nat hook postrouting priority srcnat;
    oifname { "up1", "up2" } masquerade
  }
}
"""
ECHO = ("import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('198.51.100.7', {port}))\n"
        "while True:\n"
        "    data, peer = s.recvfrom(2048)\n"
        "    s.sendto(data, peer)\n")


@pytest.mark.skipif(shutil.which("nft") is None, reason="conntrack: needs nft")
def test_conntrack_flows_follow_their_mark_out_and_come_back_by_the_lan(tmp_path):
    """source 'conntrack' behind masquerade: a connection whose conntrack
    mark a fwmark rule routes by leaves by up2 as `ip route get ... mark 7`
    says, an unmarked one by up1; each reply's record leaves by the LAN."""
    with TwoUplinks() as lab:
        loaded = subprocess.run(["ip", "netns", "exec", lab.router, "nft", "-f", "-"],
                                input=MARK_RULES, capture_output=True, text=True)
        if loaded.returncode != 0:
            pytest.skip(f"conntrack: nftables unavailable: {loaded.stderr.strip()}")
        lab.ip(lab.router, "rule", "add", "fwmark", "7", "lookup", "100")
        lab.run(lab.router, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1",
                "net.netfilter.nf_conntrack_udp_timeout_stream=1")
        for isp in lab.isp:
            for port in (5201, 5202):
                lab.popen(isp, sys.executable, "-c", ECHO.format(port=port),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        collector = Nfcapd(netns=lab.router, port=2055, directory=tmp_path / "ipfix")
        collector.start()
        socket_path = str(tmp_path / "control.sock")
        (tmp_path / "flowprobe.conf").write_text("\n".join([
            "config flowprobe 'main'", "\toption enabled '1'", "\toption source 'conntrack'",
            f"\toption control_socket '{socket_path}'", "\toption routing '1'",
            "\toption conntrack_dump_interval '1'", "\toption devices '0'",
            "config collector 'ipfix'", "\toption protocol 'ipfix'",
            "\toption host '127.0.0.1'", "\toption port '2055'",
            f"\toption fields '{FIELDS}'"]) + "\n")
        log = open(tmp_path / "daemon.log", "w+")
        daemon = lab.popen(lab.router, sys.executable, "-m", "flowprobe", "run", "--config",
                           str(tmp_path / "flowprobe.conf"), "--no-ubus", stdout=log,
                           stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: call(socket_path, "status")["conntrack"] is not None, daemon)
            time.sleep(0.5)
            for port in (5201, 5202):
                send(lab, "192.168.7.20", lab.far4, port)
            wait_for(lambda: call(socket_path, "status")["enrich"]["records_enriched"] >= 2,
                     daemon)
            marked = lab.ip(lab.router, "route", "get", lab.far4, "mark", "7").stdout.split()
            status = call(socket_path, "status")["enrich"]
        finally:
            daemon.terminate()
            daemon.wait(30)
            log.seek(0)
            output = log.read()
        assert daemon.returncode == 0, output
        assert status["records_without_route"] == 0, status
        assert marked[marked.index("via") + 1] == "10.1.2.254"
        up1, up2, lan0 = (lab.ifindex(d) for d in ("up1", "up2", "lan0"))
        got = {}
        for flow in collector.flows():
            raw = flow["raw"]
            hop = raw.get("ip4_next_hop")
            port = flow["src_port"] if flow["src_addr"] == lab.far4 else flow["dst_port"]
            got[(flow["src_addr"], port)] = (
                flow["out_if"], None if hop in (None, "0.0.0.0") else hop)
        collector.close()
        assert got == {("192.168.7.20", 5201): (up2, "10.1.2.254"),
                       ("192.168.7.20", 5202): (up1, "10.1.1.254"),
                       (lab.far4, 5201): (lan0, None), (lab.far4, 5202): (lan0, None)}, (
            got, output)
