"""The daemon as an sFlow agent on a router of network namespaces: an
interface sampled 1:4 (deterministic) sends flow samples of exactly every
fourth packet tcpdump saw, and counter samples of the kernel's own counters,
to an sFlow collector; tshark decodes every datagram cleanly, and the
status says what was seen, sampled and estimated.

Needs root, ip netns, tcpdump, ping and tshark; skipped otherwise.
"""

import signal
import subprocess
import sys
import time

import pytest

from collector_tools import TSHARK, missing_tools, tshark_problems
from flowprobe.control.client import call
from netlab import RouterLab, missing

QUIET = "not ip6 proto 0 and not (icmp6 and icmp6[0] >= 133 and icmp6[0] <= 137)"
PORT = 6343
RATE = 4
PINGS = 40

skip_reason = missing() or missing_tools(TSHARK)
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"sFlow live: {skip_reason}")


def config(socket_path):
    return "\n".join([
        "config flowprobe 'main'", "\toption enabled '1'",
        f"\toption control_socket '{socket_path}'",
        f"\toption filter '{QUIET}'", "\toption direction 'in'", "\toption hash_seed '7'",
        "\tlist interface 'r-cli'",
        "config interface 'rcli'", "\toption name 'r-cli'", f"\toption sampling '1:{RATE}'",
        "\toption sampling_algorithm 'deterministic'",
        "config collector 'sflow'", "\toption protocol 'sflow'", "\toption host '127.0.0.1'",
        "\toption counter_interval '1'", ""])


def tshark_rows(pcap, *fields):
    command = [TSHARK, "-n", "-r", str(pcap), "-d", f"udp.port=={PORT},sflow", "-o",
               "sflow.enable_dissection:FALSE", "-T", "fields", "-E", "occurrence=a", "-E",
               "aggregator=;"]
    for field in fields:
        command += ["-e", field]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [[v.split(";") if v else [] for v in line.split("\t")] for line in out.splitlines()]


def kernel_counters(lab, device):
    out = lab.run(lab.router, "sh", "-c", f"cd /sys/class/net/{device}/statistics && "
                  "echo $(cat rx_packets rx_bytes tx_packets tx_bytes)").stdout.split()
    return dict(zip(("rx_packets", "rx_bytes", "tx_packets", "tx_bytes"), map(int, out)))


def test_the_daemon_is_an_sflow_agent(tmp_path):
    with RouterLab() as lab:
        socket_path = str(tmp_path / "control.sock")
        (tmp_path / "flowprobe.conf").write_text(config(socket_path))
        ifindex = int(lab.run(lab.router, "cat", "/sys/class/net/r-cli/ifindex").stdout)
        sflow_pcap, truth_pcap = tmp_path / "sflow.pcap", tmp_path / "truth.pcap"
        # a socket that takes the datagrams (else ICMP says the port is
        # closed), and tcpdump keeping them for tshark
        lab.popen(lab.router, sys.executable, "-c", "import socket\n"
                  "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  f"s.bind(('127.0.0.1', {PORT}))\nwhile True: s.recv(65536)\n")
        collector = lab.popen(lab.router, "tcpdump", "-i", "lo", "-U", "-n", "-w", str(sflow_pcap),
                              "udp", "port", str(PORT), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        truth = lab.popen(lab.router, "tcpdump", "-i", "r-cli", "-Q", "in", "-U", "-n", "-w",
                          str(truth_pcap), QUIET, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        log = open(tmp_path / "daemon.log", "w+")
        daemon = lab.popen(lab.router, sys.executable, "-m", "flowprobe", "run", "--config",
                           str(tmp_path / "flowprobe.conf"), "--no-ubus", stdout=log,
                           stderr=subprocess.STDOUT)

        def status():
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                assert daemon.poll() is None, log.seek(0) or log.read()
                try:
                    answer = call(socket_path, "status")
                    if answer["interfaces"] and answer["interfaces"][0]["up"]:
                        return answer
                except Exception:   # not listening yet
                    pass
                time.sleep(0.1)
            raise AssertionError(log.seek(0) or log.read())

        status()
        time.sleep(1)   # tcpdump attaches
        lab.run(lab.client, "ping", "-c", str(PINGS), "-i", "0.01", lab.server4)
        time.sleep(2.5)   # a counter sample after the traffic
        before_end = kernel_counters(lab, "r-cli")
        time.sleep(1.5)
        answer = status()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        for process in (collector, truth):
            time.sleep(1.2)   # tcpdump's ring hands over its last block
            process.send_signal(signal.SIGTERM)
            process.wait(10)
        after_end = kernel_counters(lab, "r-cli")

    assert tshark_problems(sflow_pcap, PORT, min_severity="note", decoder="sflow",
                           preferences=["sflow.enable_dissection:FALSE"]) == []
    from scapy.utils import RawPcapReader
    frames = [data for data, _ in RawPcapReader(str(truth_pcap))]
    rows = tshark_rows(sflow_pcap, "sflow_245.agent", "sflow.flow_sample.sample_pool",
                       "sflow.flow_sample.sampling_rate", "sflow.flow_sample.input_interface",
                       "sflow_245.header.sampled_header_length", "sflow_245.header",
                       "sflow_245.ifindex", "sflow_245.ifinpkt", "sflow_245.ifinmcast",
                       "sflow_245.ifinoct")
    assert {row[0][0] for row in rows} == {"127.0.0.1"}
    samples = [s for row in rows for s in zip(*row[1:6])]
    [interface] = answer["interfaces"]
    seen = interface["packets_read"]
    # tcpdump, started first, may have seen a packet or two before the daemon
    early = len(frames) - seen
    assert 0 <= early <= 2 and seen >= PINGS
    assert len(samples) == seen // RATE
    heads = [frame[:128] for frame in frames]
    positions = []
    for pool, rate, input_ifindex, length, header in samples:
        assert (int(rate), int(input_ifindex)) == (RATE, ifindex)
        assert int(pool) % RATE == 0    # every fourth packet, the first being the fourth
        positions.append(heads.index(bytes.fromhex(header)[:int(length)]))  # byte for byte
    # every fourth packet tcpdump saw (an ARP tcpdump saw before the daemon may shift them)
    assert all(b - a == RATE for a, b in zip(positions, positions[1:])), positions
    assert positions[0] in range(RATE - 1, RATE - 1 + early + 1)
    counters = [c for row in rows for c in zip(*row[6:10])]
    assert counters and {int(c[0]) for c in counters} == {ifindex}
    last = counters[-1]
    # unicast and multicast together are the kernel's rx_packets
    assert before_end["rx_packets"] <= int(last[1]) + int(last[2]) <= after_end["rx_packets"]
    assert before_end["rx_bytes"] <= int(last[3]) <= after_end["rx_bytes"]
    assert interface["sampling"] == {
        "rate": RATE, "algorithm": "deterministic", "packets_seen": interface["packets_read"],
        "packets_sampled": len(samples), "packets_estimated": len(samples) * RATE,
        "samples_lost": 0}
    [sflow] = answer["collectors"]
    assert sflow["protocol"] == "sflow" and sflow["flow_samples"] == len(samples)
    assert sflow["counter_samples"] == len(counters) and sflow["records_not_sent"] == 0
