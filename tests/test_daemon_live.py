"""The daemon live, on a router of network namespaces: what it exports to
nfcapd must equal what tcpdump saw on the same interfaces, flow by flow,
across a reload and a stop during traffic; a deleted interface comes back.

Needs root, ip netns, tcpdump, curl, ping and nfcapd; skipped otherwise.
"""

import re
import signal
import subprocess
import sys
import time

import pytest

from captures import differences
from collector_tools import NFCAPD, NFDUMP, Nfcapd, missing_tools, per_flow_key
from flowprobe.control.client import call
from netlab import RouterLab, missing
from realstack import simple_truth

# Both captures leave out neighbour discovery and MLD, which the stacks send
# whenever they like: the comparison must not depend on their timing.
QUIET = "not ip6 proto 0 and not (icmp6 and icmp6[0] >= 133 and icmp6[0] <= 137)"
LATE_PORT = 7777
LONG = {"idle_timeout": 3600, "active_timeout": 3600, "unanswered_timeout": 3600}

skip_reason = missing() or missing_tools(NFCAPD, NFDUMP)
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"live daemon: {skip_reason}")


def uci_config(socket_path, collector_port, interfaces, extra=None, collectors=1):
    main = {"enabled": 1, **LONG, "control_socket": socket_path, "filter": QUIET,
            "direction": "in", **(extra or {})}
    lines = ["config flowprobe 'main'"]
    lines += [f"\toption {key} '{value}'" for key, value in main.items()]
    lines += [f"\tlist interface '{name}'" for name in interfaces]
    for n in range(collectors):
        lines += [f"config collector 'c{n}'", "\toption protocol 'ipfix'",
                  "\toption host '127.0.0.1'", f"\toption port '{collector_port + n}'"]
    return "\n".join(lines) + "\n"


class Daemon:
    def __init__(self, lab, tmp_path, config_text):
        self.lab, self.config = lab, tmp_path / "flowprobe.conf"
        self.socket = str(tmp_path / "control.sock")
        self.config.write_text(config_text)
        self.log = open(tmp_path / "daemon.log", "w+")
        self.process = lab.popen(lab.router, sys.executable, "-m", "flowprobe", "run",
                                 "--config", str(self.config), "--no-ubus",
                                 stdout=self.log, stderr=subprocess.STDOUT)

    def status(self):
        return call(self.socket, "status")

    def wait_until(self, predicate, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if predicate(self.status()):
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.1)
        raise AssertionError(f"daemon never got there:\n{self.output()}")

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(30) == 0, self.output()


def all_up(status):
    return status["interfaces"] and all(i["up"] for i in status["interfaces"])


def start_truth(lab, tmp_path, devices):
    """tcpdump on the same interfaces, the same direction and filter."""
    captures = []
    for device in devices:
        path = tmp_path / f"{device}.pcap"
        process = lab.popen(lab.router, "tcpdump", "-i", device, "-Q", "in", "-U", "-n",
                            "-w", str(path), QUIET, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
        captures.append((process, path))
    time.sleep(1)  # tcpdump says "listening" only on a terminal: give it time to attach
    return captures


# tcpdump's capture ring hands over a partly filled block after its 1 s
# timeout: a file quiet for longer holds everything that was captured
TCPDUMP_QUIET_S = 1.2


def settle(path, quiet_s=TCPDUMP_QUIET_S, timeout_s=15):
    """tcpdump drops what it has not read when it exits, and on a loaded
    machine it lags: wait until its file stops growing for longer than its
    ring's block timeout."""
    deadline, size = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        if path.stat().st_size == size:
            return
        size = path.stat().st_size


def stop_truth(captures):
    truth = {}
    for process, path in captures:
        settle(path)
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        for key, (packets, octets) in simple_truth.truth(str(path)).items():
            old = truth.get(key, (0, 0))
            truth[key] = (old[0] + packets, old[1] + octets)
    return truth


def traffic(lab, big_file_url4, big_file_url6):
    lab.run(lab.client, "curl", "-s", "-o", "/dev/null", big_file_url4)
    lab.run(lab.client, "curl", "-s", "-o", "/dev/null", "-g", big_file_url6)
    lab.run(lab.client, "ping", "-c", "3", "-i", "0.2", "-s", "3000", lab.server4)
    lab.run(lab.client, "ping", "-6", "-c", "3", "-i", "0.2", "-s", "3000", lab.server6)
    lab.run(lab.client, sys.executable, "-c",
            "import socket\n"
            f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for n in range(20): s.sendto(b'x' * (n * 200), ('{lab.server4}', 5000))\n")


@pytest.fixture
def lab(tmp_path):
    with RouterLab() as lab:
        (tmp_path / "www").mkdir()
        (tmp_path / "www" / "big").write_bytes(b"b" * 400_000)
        lab.popen(lab.server, sys.executable, "-m", "http.server", "8080", "--bind", "::",
                  "--directory", str(tmp_path / "www"), stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
        # a sink for the late stream: no ICMP errors answer it after the stop
        lab.popen(lab.server, sys.executable, "-c",
                  "import socket\n"
                  "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
                  f"s.bind(('::', {LATE_PORT}))\n"
                  "while True: s.recv(2048)\n")
        time.sleep(0.5)
        yield lab


def test_exports_equal_the_wire_across_reload_and_stop(lab, tmp_path):
    url4 = f"http://{lab.server4}:8080/big"
    url6 = f"http://[{lab.server6}]:8080/big"
    with Nfcapd(netns=lab.router, port=2055) as first, \
            Nfcapd(netns=lab.router, port=2056) as second:
        truth_captures = start_truth(lab, tmp_path, lab.router_devices)
        daemon = Daemon(lab, tmp_path, uci_config(str(tmp_path / "control.sock"), 2055,
                                                  lab.router_devices))
        daemon.wait_until(all_up)
        traffic(lab, url4, url6)

        # reload in place during traffic: new timeouts and a second collector
        pinger = lab.popen(lab.client, "ping", "-c", "60", "-i", "0.05", lab.server4,
                           stdout=subprocess.DEVNULL)
        time.sleep(1)
        daemon.config.write_text(uci_config(daemon.socket, 2055, lab.router_devices,
                                            {"tcp_end_grace": 1}, collectors=2))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_until(lambda s: len(s["collectors"]) == 2 and all_up(s))
        # and again with a new table size: its flows are exported, a new table reads on
        daemon.config.write_text(uci_config(daemon.socket, 2055, lab.router_devices,
                                            {"max_flows": 1000}, collectors=2))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_until(lambda s: s["meter"]["max_flows"] == 1000)
        traffic(lab, url4, url6)
        status = daemon.status()
        pinger.wait(10)
        # a stream of its own, still running when the daemon stops
        late_sender = lab.popen(
            lab.client, sys.executable, "-c",
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
            f"for n in range(300): s.sendto(b'late', ('{lab.server6}', {LATE_PORT})); "
            "time.sleep(0.005)\n")
        time.sleep(0.5)
        daemon.stop()  # what it metered must still arrive
        late_sender.wait(30)
        truth = stop_truth(truth_captures)
        # the first collector was there all along; the second joined at the reload
        whole_run, second_half = per_flow_key(first.flows()), per_flow_key(second.flows())
    assert status["config_error"] is None
    assert {i["name"] for i in status["interfaces"]} == set(lab.router_devices)
    assert any(k[1] == 6 and k[5] == 8080 for k in truth), "the capture lacks the HTTP flows"
    late = [k for k in truth if k[5] == LATE_PORT]
    assert len(late) == 1 and 0 < whole_run[late[0]][0] <= truth[late[0]][0]
    # before the stop, every flow exactly as on the wire
    assert differences({k: v for k, v in truth.items() if k not in late},
                       {k: v for k, v in whole_run.items() if k not in late},
                       ("wire", "exported")) == []
    # at the stop, everything the daemon metered reached the collector
    metered = int(re.search(r"stopped: \d+ packets read, (\d+) metered", daemon.output())[1])
    assert sum(p for p, _ in whole_run.values()) == metered
    assert second_half and all(second_half[k][0] <= truth[k][0] for k in second_half)
    log = daemon.output()
    assert "reload refused" not in log and "Traceback" not in log


def test_bad_reload_keeps_the_old_config(lab, tmp_path):
    with Nfcapd(netns=lab.router, port=2055):
        daemon = Daemon(lab, tmp_path, uci_config(str(tmp_path / "control.sock"), 2055,
                                                  lab.router_devices))
        daemon.wait_until(all_up)
        daemon.config.write_text(uci_config(daemon.socket, 2055, lab.router_devices,
                                            {"idle_timeout": "soon"}))
        reply = call(daemon.socket, "reload")
        status = daemon.status()
        daemon.stop()
    assert reply["reloaded"] is False
    assert "flowprobe.main.idle_timeout" in reply["error"] and "soon" in reply["error"]
    assert status["config_error"] == reply["error"] and all_up(status)


def test_a_deleted_interface_comes_back(lab, tmp_path):
    daemon = Daemon(lab, tmp_path, uci_config(str(tmp_path / "control.sock"), 2055,
                                              ["r-cli"], collectors=0))
    daemon.wait_until(all_up)
    lab.ip("-n", lab.router, "link", "del", "r-cli")
    daemon.wait_until(lambda s: not s["interfaces"][0]["up"] and s["interfaces"][0]["error"])
    lab.connect_client()
    daemon.wait_until(all_up, timeout=20)
    lab.run(lab.client, "ping", "-c", "3", "-i", "0.2", lab.router_client4)

    def echo_requests():
        flows = call(daemon.socket, "flows", {"protocol": "icmp"})["flows"]
        return [f["packets"] for f in flows if f["src_addr"] == lab.client4]

    deadline = time.monotonic() + 5
    while echo_requests() != [3] and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = echo_requests()
    daemon.stop()
    assert seen == [3], daemon.output()


def test_forwarded_packets_with_both_directions_say_where_they_went(lab, tmp_path):
    """direction 'both' on two router interfaces: a forwarded flow gives one
    record per interface, each saying which interface and which way."""
    daemon = Daemon(lab, tmp_path, uci_config(str(tmp_path / "control.sock"), 2055,
                                              lab.router_devices, {"direction": "both"},
                                              collectors=0))
    daemon.wait_until(all_up)
    lab.run(lab.client, "ping", "-c", "3", "-i", "0.2", lab.server4)

    def echo_records():
        flows = call(daemon.socket, "flows", {"protocol": "icmp"})["flows"]
        return sorted((f["interface"], f["direction"], f["src_addr"], f["packets"])
                      for f in flows if f["dst_port"] >> 8 in (0, 8))

    expected = [("r-cli", "in", lab.client4, 3), ("r-cli", "out", lab.server4, 3),
                ("r-srv", "in", lab.server4, 3), ("r-srv", "out", lab.client4, 3)]
    deadline = time.monotonic() + 5
    while echo_records() != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = echo_records()
    interfaces = daemon.status()["interfaces"]
    daemon.stop()
    assert seen == expected
    # numbers a user can add up: each handle of a 'both' interface sees every
    # packet of the device, so the interface's received is one handle's
    for interface in interfaces:
        assert interface["pcap_received"] == interface["packets_read"], interface


def test_a_reload_over_the_socket_that_swaps_collectors_and_adds_an_interface(lab, tmp_path):
    """The control socket is served from inside the loop's turn, while the
    collectors' sockets are registered in it: the old collector's socket
    closes, the new interface's capture may reuse its descriptor number.
    And the stop right after the last packet still meters it: the capture
    ring's last, partly filled block is read before the handle closes."""
    with Nfcapd(netns=lab.router, port=2055), Nfcapd(netns=lab.router, port=2056) as second:
        daemon = Daemon(lab, tmp_path, uci_config(str(tmp_path / "control.sock"), 2055,
                                                  ["r-cli"]))
        daemon.wait_until(all_up)
        daemon.config.write_text(uci_config(daemon.socket, 2056, lab.router_devices))
        reply = call(daemon.socket, "reload")
        daemon.wait_until(lambda s: len(s["interfaces"]) == 2 and all_up(s))
        lab.run(lab.client, "ping", "-c", "3", "-i", "0.2", lab.server4)
        daemon.stop()   # at once: the last reply may still sit in the kernel's ring
        flows = per_flow_key(second.flows())
    assert reply == {"reloaded": True, "error": None}, daemon.output()
    echo = sorted((k[2], v[0]) for k, v in flows.items() if k[1] == 1)
    assert echo == [(lab.client4, 3), (lab.server4, 3)], daemon.output()


def test_a_reload_with_a_filter_that_does_not_compile_is_refused_and_capture_goes_on(
        lab, tmp_path):
    """Before: capture closed, 'reloaded', and the packets after it under no
    counter. Now the filter is compiled first and the reload refused whole."""
    daemon = Daemon(lab, tmp_path, uci_config(str(tmp_path / "control.sock"), 2055,
                                              ["r-cli"], collectors=0))
    daemon.wait_until(all_up)
    daemon.config.write_text(uci_config(daemon.socket, 2055, ["r-cli"],
                                        {"filter": "icmp and port"}, collectors=0))
    reply = call(daemon.socket, "reload")
    lab.run(lab.client, "ping", "-c", "5", "-i", "0.2", lab.router_client4)
    time.sleep(0.3)
    status = daemon.status()
    flows = call(daemon.socket, "flows", {"protocol": "icmp"})["flows"]
    daemon.stop()
    assert reply["reloaded"] is False and "interface r-cli: filter" in reply["error"]
    assert status["config_error"] == reply["error"] and all_up(status)
    assert [f["packets"] for f in flows if f["src_addr"] == lab.client4] == [5]
    assert status["interfaces"][0]["packets_not_captured"] == 0


def test_a_reload_to_a_collector_by_name_waits_for_dns_off_the_loop(lab, tmp_path):
    """The new collector's name is resolved in the resolver's thread: the
    reload answers at once that it waits, metering goes on, and the reload is
    applied when the answer is in (before: the loop blocked in getaddrinfo,
    10 s with DNS down, while the kernel dropped packets)."""
    daemon = Daemon(lab, tmp_path, uci_config(str(tmp_path / "control.sock"), 2055,
                                              ["r-cli"]))
    daemon.wait_until(all_up)
    text = uci_config(daemon.socket, 2055, ["r-cli"]).replace("option host '127.0.0.1'",
                                                             "option host 'localhost'")
    daemon.config.write_text(text)
    reply = call(daemon.socket, "reload")
    daemon.wait_until(lambda s: s["collectors"] and s["collectors"][0]["host"] == "localhost"
                      and s["config_error"] is None)
    lab.run(lab.client, "ping", "-c", "3", "-i", "0.2", lab.router_client4)
    status = daemon.status()
    daemon.stop()
    assert reply["reloaded"] is False and reply.get("pending") is True, reply
    assert "waits for collector names to resolve (localhost)" in reply["error"]
    assert status["loop_errors"] == 0 and "reloaded" in daemon.output()
