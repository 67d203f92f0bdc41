"""The conntrack metering source, live: a client, a router doing masquerade
with nftables and a server in network namespaces of our own; the daemon on
the router reads conntrack and exports to nfcapd (IPFIX biflow and NetFlow
v9) in the router's namespace.

Truth is tcpdump on both sides of the router: the client's capture holds
the connections before NAT, the server's after. Every connection's records
(summed over active-timeout reports) must equal both, direction by
direction; a forced netlink overrun must lose nothing and count nothing
twice.

Needs root, ip netns, nft, tcpdump, curl, nfcapd/nfdump and tshark, and a
kernel with nf_conntrack and nf_nat; skipped otherwise.
"""

import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import conntrack_churn as churn
from collector_tools import NFCAPD, NFDUMP, TSHARK, Nfcapd, missing_tools, tshark_decode
from flowprobe.control.client import call
from netlab import RouterLab, missing
from realstack import simple_truth
from test_conntrack_reload import config_text as reload_config
from test_daemon_live import Daemon, all_up, settle

# neighbour discovery, MLD and router solicitations pass no conntrack hook
QUIET = "not ip6 proto 0 and not (icmp6 and icmp6[0] >= 133 and icmp6[0] <= 143)"
UDP_PORT, TCP_BURST_PORT, HTTP_PORT = 5000, 9000, 8080
NAT_RULES = """
table inet fp_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "r-srv" masquerade
  }
}
"""


def _skip_reason():
    reason = missing() or missing_tools(NFCAPD, NFDUMP, TSHARK)
    if reason:
        return reason
    if shutil.which("nft") is None:
        return "needs nft (apt-get install nftables)"
    return None


skip_reason = _skip_reason()
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"conntrack: {skip_reason}")


def config_text(socket_path, extra=None):
    main = {"enabled": 1, "source": "conntrack", "control_socket": socket_path,
            "active_timeout": 3600, "conntrack_dump_interval": 1, **(extra or {})}
    lines = ["config flowprobe 'main'"]
    lines += [f"\toption {key} '{value}'" for key, value in main.items()]
    lines += ["config collector 'biflow'", "\toption protocol 'ipfix'", "\toption biflow '1'",
              "\toption host '127.0.0.1'", "\toption port '2055'",
              "config collector 'v9'", "\toption protocol 'netflow9'",
              "\toption host '127.0.0.1'", "\toption port '2056'"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def nat_lab(tmp_path):
    with RouterLab() as lab:
        loaded = subprocess.run(["ip", "netns", "exec", lab.router, "nft", "-f", "-"],
                                input=NAT_RULES, capture_output=True, text=True)
        if loaded.returncode != 0:
            pytest.skip(f"conntrack: nftables masquerade unavailable: {loaded.stderr.strip()}")
        # ended connections leave conntrack (and send DESTROY) within seconds
        lab.run(lab.router, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=2",
                "net.netfilter.nf_conntrack_udp_timeout_stream=2",
                "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
                "net.netfilter.nf_conntrack_tcp_timeout_close_wait=1",
                "net.netfilter.nf_conntrack_icmp_timeout=2",
                "net.netfilter.nf_conntrack_icmpv6_timeout=2")
        www = tmp_path / "www"
        www.mkdir()
        (www / "big").write_bytes(b"b" * 3_000_000)
        lab.popen(lab.server, sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", "::",
                  "--directory", str(www), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # a UDP sink (no port unreachable errors) and a TCP server for short connections
        lab.popen(lab.server, sys.executable, "-c",
                  "import socket, threading\n"
                  "u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
                  f"u.bind(('::', {UDP_PORT}))\n"
                  "threading.Thread(target=lambda: [u.recv(65535) for _ in iter(int, 1)],"
                  " daemon=True).start()\n"
                  "t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
                  "t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  f"t.bind(('::', {TCP_BURST_PORT})); t.listen(512)\n"
                  "while True:\n"
                  "    c, _ = t.accept(); c.sendall(b'y' * 1000); c.close()\n")
        time.sleep(0.5)
        yield lab


def start_captures(lab, tmp_path):
    """tcpdump on the client (before NAT) and on the server (after NAT)."""
    captures = []
    for namespace, name in ((lab.client, "client"), (lab.server, "server")):
        path = tmp_path / f"{name}.pcap"
        process = lab.popen(namespace, "tcpdump", "-i", "eth0", "-U", "-n", "-B", "16384",
                            "-w", str(path), QUIET, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        captures.append((process, path))
    time.sleep(1)
    return captures


def stop_captures(captures):
    truths = []
    for process, path in captures:
        settle(path)
        process.terminate()
        process.wait(10)
        truths.append(simple_truth.truth(str(path)))
    return truths


def nfdump_records(collector):
    """(raw nfdump JSON records) of every flow nfcapd stored."""
    return collector.raw_flows()


def _addr(raw, key4, key6):
    return raw.get(key4) or raw.get(key6)


def _nat_source(raw):
    """nfdump's post-NAT source address (its key differs between 1.7 releases)."""
    return next((value for key, value in raw.items()
                 if key.startswith("src") and ("xlt_ip" in key or "xlate_ip" in key)), None)


def exported_connections(raws):
    """Per connection (pre-NAT forward key): [forward packets, octets, reverse
    packets, octets, post-NAT source, post-NAT source port, records]."""
    totals = {}
    for raw in raws:
        src, dst = _addr(raw, "src4_addr", "src6_addr"), _addr(raw, "dst4_addr", "dst6_addr")
        version = 6 if ":" in src else 4
        if "icmp_type" in raw:
            ports = (0, raw["icmp_type"] * 256 + raw.get("icmp_code", 0))
        else:
            ports = (raw.get("src_port", 0), raw.get("dst_port", 0))
        key = (version, raw["proto"], src, dst, *ports)
        entry = totals.setdefault(key, [0, 0, 0, 0, None, None, 0])
        entry[0] += raw.get("in_packets", 0)
        entry[1] += raw.get("in_bytes", 0)
        entry[2] += raw.get("out_packets", 0)
        entry[3] += raw.get("out_bytes", 0)
        entry[4] = _nat_source(raw) or entry[4]
        entry[5] = int(raw.get("src_xlt_port", entry[5] or 0))
        entry[6] += 1
    return totals


def reverse_key(key, post_src=None, post_sport=None):
    version, protocol, src, dst, sport, dport = key
    if protocol in (1, 58):
        reply = {(1, 8): 0, (58, 128): 129}.get((protocol, dport >> 8), dport >> 8)
        return (version, protocol, dst, post_src or src, 0, reply << 8 | (dport & 0xFF))
    return (version, protocol, dst, post_src or src, dport, post_sport or sport)


def traffic(lab):
    lab.run(lab.client, "curl", "-s", "-o", "/dev/null", f"http://{lab.server4}:{HTTP_PORT}/big")
    lab.run(lab.client, "curl", "-s", "-g", "-o", "/dev/null",
            f"http://[{lab.server6}]:{HTTP_PORT}/big")
    lab.run(lab.client, "ping", "-c", "3", "-i", "0.2", lab.server4)
    lab.run(lab.client, "ping", "-6", "-c", "3", "-i", "0.2", lab.server6)
    for server in (lab.server4, lab.server6):
        family = "AF_INET6" if ":" in server else "AF_INET"
        lab.run(lab.client, sys.executable, "-c",
                "import socket\n"
                f"s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
                f"for n in range(20): s.sendto(b'x' * (n * 50), ('{server}', {UDP_PORT}))\n")


def test_nat_records_equal_both_sides_of_the_router(nat_lab, tmp_path):
    lab = nat_lab
    with Nfcapd(netns=lab.router, port=2055) as biflow, \
            Nfcapd(netns=lab.router, port=2056) as v9:
        exports = lab.popen(lab.router, "tcpdump", "-i", "lo", "-U", "-n", "-w",
                            str(tmp_path / "exports.pcap"), "udp port 2055",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        captures = start_captures(lab, tmp_path)
        daemon = Daemon(lab, tmp_path, config_text(str(tmp_path / "control.sock"),
                                                   {"active_timeout": 2}))
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
        traffic(lab)
        # a connection that lives past the active timeout: 6 s of UDP
        lab.run(lab.client, sys.executable, "-c",
                "import socket, time\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"for n in range(60): s.sendto(b'z' * 100, ('{lab.server4}', {UDP_PORT + 1}));"
                " time.sleep(0.1)\n")
        time.sleep(4)   # DESTROY events of the short ones
        status = daemon.status()
        daemon.stop()
        client, server = stop_captures(captures)
        settle(tmp_path / "exports.pcap")
        exports.terminate()
        exports.wait(10)
        biflow_raw, v9_exported = biflow.raw_flows(), v9.raw_flows()
    exported = exported_connections(biflow_raw)
    conntrack = status["conntrack"]
    assert status["source"] == "conntrack" and conntrack["accounting"] is True
    assert conntrack["error"] is None and conntrack["overruns"] == 0
    problems = []
    connections = [k for k in client if k[3] in (lab.server4, lab.server6)]
    assert len(connections) >= 7, client
    for key in connections:
        got = exported.get(key)
        if got is None:
            problems.append(f"{key}: not exported")
            continue
        post_src, post_sport = got[4], got[5]
        reverse = reverse_key(key)
        # before NAT: the client's view, both directions
        if (got[0], got[1]) != client[key] or (got[2], got[3]) != client.get(reverse, (0, 0)):
            problems.append(f"{key}: exported {got[:4]}, client saw {client[key]} and "
                            f"{client.get(reverse)}")
        # after NAT: the server's view of the same connection
        version, protocol, src, dst, sport, dport = key
        expected_src = lab.router_server4 if version == 4 else lab.router_server6
        if version == 4 and post_src != expected_src:
            problems.append(f"{key}: post-NAT source {post_src}, expected {expected_src}")
        post_key = (version, protocol, expected_src, dst,
                    sport if protocol in (1, 58) else (post_sport if version == 4 else sport),
                    dport)
        # (nfdump has no IPv6 NAT fields: there masquerade keeps the port, as it does
        # whenever the port is free, and tshark proves the address below)
        if server.get(post_key) != client[key]:
            problems.append(f"{key}: server saw {server.get(post_key)} as {post_key}")
    assert problems == [], "\n".join(problems) + f"\n{biflow_raw[:2]}"
    # the long one was reported at the active timeout more than once, and adds up
    long_key = next(k for k in connections if k[5] == UDP_PORT + 1)
    assert exported[long_key][6] >= 3 and exported[long_key][0] == 60
    # NetFlow v9 carries the NAT fields too (nfdump reads 225-228)
    assert any(_nat_source(r) == lab.router_server4 for r in v9_exported), v9_exported[:2]
    # IPv6 post-NAT addresses (IEs 281/282), decoded by tshark: nfdump 1.7 has no IPv6 NAT
    decoded = tshark_decode(str(tmp_path / "exports.pcap"), 2055)
    fields = [r["fields"] for m in decoded for r in m["records"] if r["kind"] == "data"]
    v6_post = {value for f in fields if "cflow.srcaddrv6" in f
               for name, values in f.items() if "post" in name.lower() or "xlate" in name.lower()
               for value in (values if isinstance(values, list) else [values])}
    assert lab.router_server6 in v6_post, [f for f in fields if "cflow.srcaddrv6" in f][:1]


def burst(lab, connections):
    """Short TCP connections (1000 bytes each) and one-datagram UDP ones, as
    fast as the client can open them."""
    lab.run(lab.client, sys.executable, "-c",
            "import socket\n"
            f"for n in range({connections}):\n"
            "    t = socket.create_connection(('" + lab.server4 + f"', {TCP_BURST_PORT}))\n"
            "    while t.recv(4096): pass\n"
            "    t.close()\n"
            "    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    u.sendto(b'u' * 64, ('" + lab.server4 + f"', {UDP_PORT})); u.close()\n",
            timeout=120)


def test_an_overrun_loses_nothing_and_counts_nothing_twice(nat_lab, tmp_path):
    """A receive buffer of 1 KB cannot hold a burst of events: the kernel
    reports ENOBUFS, the daemon resyncs with a dump, and every connection's
    totals still equal the wire."""
    lab = nat_lab
    with Nfcapd(netns=lab.router, port=2055) as biflow, Nfcapd(netns=lab.router, port=2056):
        captures = start_captures(lab, tmp_path)
        daemon = Daemon(lab, tmp_path, config_text(str(tmp_path / "control.sock"),
                                                   {"conntrack_buffer_kb": 1,
                                                    "conntrack_dump_interval": 2}))
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
        burst(lab, 300)
        time.sleep(5)   # their DESTROY events, lost or not
        status = daemon.status()
        daemon.stop()
        client, _ = stop_captures(captures)
        exported = exported_connections(biflow.raw_flows())
    conntrack = status["conntrack"]
    assert conntrack["overruns"] > 0 and conntrack["resyncs"] > 0, conntrack
    assert conntrack["records_lost"] == 0
    connections = [k for k in client if k[3] == lab.server4]
    assert len(connections) >= 590   # a UDP source port may come round twice
    problems = []
    for key in connections:
        got = exported.get(key)
        reverse = client.get(reverse_key(key), (0, 0))
        if got is None or (got[0], got[1]) != client[key] or (got[2], got[3]) != reverse:
            problems.append(f"{key}: exported {got and got[:4]}, client saw {client[key]}, "
                            f"{reverse}")
    assert problems == [], f"{len(problems)} wrong:\n" + "\n".join(problems[:20])
    assert set(exported) <= set(client)


def test_both_sources_report_what_capture_did_not_see(nat_lab, tmp_path):
    """source 'both', capture on the client side only (direction in): the
    replies never cross a captured interface inbound, so conntrack saw
    exactly them on top of what capture metered."""
    lab = nat_lab
    text = config_text(str(tmp_path / "control.sock"), {"source": "both", "filter": "icmp",
                                                        "direction": "in"})
    text = text.replace("config collector 'biflow'", "\tlist interface 'r-cli'\n"
                        "config collector 'biflow'", 1)
    with Nfcapd(netns=lab.router, port=2055), Nfcapd(netns=lab.router, port=2056):
        daemon = Daemon(lab, tmp_path, text)
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"]
                          and s["interfaces"] and s["interfaces"][0]["up"])
        lab.run(lab.client, "ping", "-c", "5", "-i", "0.2", "-s", "1000", lab.server4)
        # the echo connection ends (2 s ICMP timeout) and is reported
        daemon.wait_until(lambda s: s["conntrack"]["packets"] >= 10, timeout=30)
        status = daemon.status()
        daemon.stop()
    assert status["source"] == "both"
    assert status["meter"]["packets_metered"] == 5
    assert status["conntrack"]["packets"] == 10
    assert status["conntrack"]["not_seen_by_capture"] == {"packets": 5, "octets": 5 * 1028}


def test_a_reload_that_turns_conntrack_off_exports_what_it_held(nat_lab, tmp_path):
    lab = nat_lab
    socket_path = str(tmp_path / "control.sock")
    port = UDP_PORT + 2
    with Nfcapd(netns=lab.router, port=2055) as biflow, Nfcapd(netns=lab.router, port=2056):
        daemon = Daemon(lab, tmp_path, config_text(socket_path))
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
        # a stream still running at the reload: 60 datagrams over 6 s
        sender = lab.popen(lab.client, sys.executable, "-c",
                           "import socket, time\n"
                           "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                           f"for n in range(60): s.sendto(b'r' * 100, ('{lab.server4}', {port}));"
                           " time.sleep(0.1)\n")
        time.sleep(2)
        off = config_text(socket_path, {"source": "capture"}).replace(
            "config collector 'biflow'", "\tlist interface 'r-cli'\nconfig collector 'biflow'", 1)
        daemon.config.write_text(off)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_until(lambda s: s["source"] == "capture" and s["conntrack"] is None)
        sender.wait(30)
        daemon.stop()
        raws = biflow.raw_flows()
    stream = [r for r in raws if r.get("dst_port") == port]
    held = [r for r in stream if _nat_source(r)]          # conntrack's, with NAT fields
    captured = [r for r in stream if not _nat_source(r)]  # capture's, after the reload
    assert len(held) == 1, stream
    assert 5 < held[0]["in_packets"] < 55
    # nothing lost at the switch but what passed while the capture opened (ms)
    assert 57 <= held[0]["in_packets"] + sum(r["in_packets"] for r in captured) <= 60
    assert "conntrack source closed" in daemon.output()


def test_the_conntrack_source_runs_without_root(nat_lab, tmp_path):
    """As shipped the daemon becomes its own user: with the conntrack source
    it keeps CAP_NET_ADMIN for the table dumps (and CAP_NET_RAW), nothing else."""
    lab = nat_lab
    with Nfcapd(netns=lab.router, port=2055), Nfcapd(netns=lab.router, port=2056):
        daemon = Daemon(lab, tmp_path, config_text(str(tmp_path / "control.sock"),
                                                   {"user": "nobody"}))
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"]
                          and s["user"]["uid"] != 0)
        lab.run(lab.client, "ping", "-c", "5", "-i", "0.2", lab.server4)
        daemon.wait_until(lambda s: s["conntrack"]["packets"] >= 10, timeout=30)
        dumps_before = daemon.status()["conntrack"]["dumps"]
        daemon.wait_until(lambda s: s["conntrack"]["dumps"] > dumps_before + 1)
        status = daemon.status()
        daemon.stop()
    assert status["user"]["capabilities"] == [12, 13]   # CAP_NET_ADMIN, CAP_NET_RAW
    assert status["conntrack"]["error"] is None
    assert status["conntrack"]["packets"] == 10


def test_a_reload_over_the_socket_that_turns_conntrack_on_and_off(nat_lab, tmp_path):
    """The control socket's reload runs inside the loop's turn: collector
    sockets close and conntrack's open (reusing their numbers), then a
    reload closes the source while its descriptors may be ready in the
    same turn. The daemon must come through both, metering."""
    lab = nat_lab
    socket_path = str(tmp_path / "control.sock")
    capture_only = config_text(socket_path, {"source": "capture", "filter": "icmp"}).replace(
        "config collector 'biflow'", "\tlist interface 'r-cli'\nconfig collector 'biflow'", 1)
    with Nfcapd(netns=lab.router, port=2055), Nfcapd(netns=lab.router, port=2056):
        daemon = Daemon(lab, tmp_path, capture_only)
        daemon.wait_until(all_up)
        daemon.config.write_text(capture_only.replace("'capture'", "'both'"))
        turned_on = call(socket_path, "reload")
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
        pinger = lab.popen(lab.client, "ping", "-c", "30", "-i", "0.05", lab.server4,
                           stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        daemon.config.write_text(capture_only)
        turned_off = call(socket_path, "reload")
        pinger.wait(30)
        status = daemon.status()
        daemon.stop()
    assert turned_on == {"reloaded": True, "error": None}, daemon.output()
    assert turned_off == {"reloaded": True, "error": None}, daemon.output()
    assert status["source"] == "capture" and status["conntrack"] is None
    assert "Traceback" not in daemon.output()


def test_a_stop_and_start_say_what_the_gap_cost(nat_lab, tmp_path):
    """Connections open at a stop that end before the next start cannot be
    reported whole: the start says how many, and status counts them."""
    lab = nat_lab
    socket_path = str(tmp_path / "control.sock")
    sender = ("import socket, sys, time\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "for n in range(int(sys.argv[2])):\n"
              f"    s.sendto(b's' * 100, ('{lab.server4}', int(sys.argv[1]))); time.sleep(0.1)\n")
    with Nfcapd(netns=lab.router, port=2055), Nfcapd(netns=lab.router, port=2056):
        daemon = Daemon(lab, tmp_path, config_text(socket_path))
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
        first = daemon.output()
        # one stream ends during the gap (its conntrack entry 2 s after its last
        # datagram), one goes on across it
        ends = lab.popen(lab.client, sys.executable, "-c", sender, str(UDP_PORT + 3), "20")
        goes_on = lab.popen(lab.client, sys.executable, "-c", sender, str(UDP_PORT + 4), "120")
        time.sleep(1)
        daemon.stop()
        stopped = daemon.output()
        ends.wait(10)
        time.sleep(4)
        daemon = Daemon(lab, tmp_path, config_text(socket_path))
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
        status = daemon.status()["conntrack"]
        goes_on.terminate()
        daemon.stop()
        started = daemon.output()
    assert "no earlier stop recorded here" in first, first
    assert re.search(r"conntrack source closed: \d+ records, 2 connections open end here",
                     stopped), stopped
    # the daemon's stop line counts the conntrack source's records
    assert re.search(r"stopped: .*; [1-9]\d* records", stopped), stopped
    assert re.search(r"conntrack source started: 1 connections already open are reported from "
                     r"now on .*; 1 connections ended while stopped \(\d+\.\d s\) are not",
                     started), started
    assert status["ended_while_stopped"] == 1 and status["open_at_start"] == 1, status


def test_flow_end_is_the_last_packet_not_the_removal(nat_lab, tmp_path):
    """conntrack removes a UDP connection its timeout (2 s here) after its last
    datagram, and later still when its garbage collector is slow: flowEnd is
    the last datagram, within the dump interval (1 s), not the removal."""
    lab = nat_lab
    port = UDP_PORT + 5
    recorder = churn.start_recorder(lab, tmp_path / "ipfix.bin")
    daemon = Daemon(lab, tmp_path, reload_config(str(tmp_path / "control.sock"), 16384))
    daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
    first = time.time()
    lab.run(lab.client, sys.executable, "-c",
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for n in range(10): s.sendto(b'e' * 100, ('{lab.server4}', {port}));"
            " time.sleep(0.1)\n")
    last = time.time()
    daemon.wait_until(lambda s: s["conntrack"]["records"] >= 1, timeout=60)
    removed = time.time()
    daemon.stop()
    recorder.terminate()
    recorder.wait(10)
    records = [r for r in churn.ipfix_records((tmp_path / "ipfix.bin").read_bytes())
               if r.get("dst_port") == port]
    assert len(records) == 1 and records[0]["packets"] == 10, records
    start, end = records[0]["start_ms"] / 1000, records[0]["end_ms"] / 1000
    assert first - 0.5 <= start <= end <= last + 1.2, (first, last, removed, start, end)
