"""The CLI verbs over the control socket: status, flows, expire, reload, top;
against test_control's real meter behind a real socket, and against a live
`flowprobe run` on the loopback interface (root)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from flowprobe.cli import build_parser, status, top
from flowprobe.cli.common import EXIT_ATTENTION, EXIT_FAILED, EXIT_OK
from flowprobe.control.client import call
from flowprobe.control.handlers import Handlers
from flowprobe.control.server import ControlServer
from test_control import (  # noqa: F401  (fixtures, used by name)
    ICMP_FRAME,
    TCP_FRAME,
    Loop,
    MeterProbe,
    frame,
    handlers,
    probe,
    served,
    socket_path,
    summary,
)

UDP4 = (17, "10.1.0.1", 53)


def parse(*argv):
    return build_parser().parse_args(list(argv))


def run(*argv):
    args = parse(*argv)
    return args.handler(args)


# ---- a daemon's status, as the daemon writes it ----

NOW = 1_796_173_725.0


def daemon_status(**changes):
    """A status of the daemon's shape (service/status.py), all well."""
    result = {
        "version": "0.1.0", "running_since": int(NOW) - 3 * 3600 - 12 * 60,
        "uptime_s": 3 * 3600 + 12 * 60, "config": "/etc/config/flowprobe",
        "config_error": None, "warnings": [], "ubus": True,
        "user": {"uid": 1000, "capabilities": [12, 13]},
        "meter": {"packets_read": 1_234_567, "packets_metered": 1_234_000,
                  "octets_metered": 987_654_321, "fragment_packets_held": 0,
                  "dropped_truncated": 0, "dropped_non_ip": 567, "dropped_malformed": 0,
                  "dropped_flow_table_full": 0, "dropped_export_backlog": 0,
                  "dropped_fragment_orphaned": 0, "flows_created": 5000,
                  "flows_expired_idle": 4000, "flows_expired_active": 100,
                  "flows_expired_end_of_flow": 600, "flows_expired_forced": 0,
                  "flows_evicted": 0, "records_drained": 4700, "flows_active": 300,
                  "flows_pending_export": 0, "flows_peak": 900, "fragments_tracked": 0,
                  "fragment_datagrams": 12, "fragment_entries_evicted": 0,
                  "fragment_entries_timed_out": 0, "clock_ms": int(NOW * 1000),
                  "clock_first_ms": int(NOW * 1000) - 11_520_000, "memory_bytes": 7_133_792,
                  "packets_dropped_by_kernel": 0, "max_flows": 65536, "table_fill": 0.0046},
        "interfaces": [{"name": "lan", "device": "br-lan", "ifindex": 4, "direction": "in",
                        "up": True, "error": None, "packets_not_captured": 0,
                        "packets_read": 1_234_567, "octets_read": 999_999_999,
                        "pcap_dropped": 0, "pcap_received": 1_234_567, "pcap_if_dropped": 0}],
        "collectors": [{"messages_sent": 470, "records_sent": 4700, "octets_sent": 400_000,
                        "messages_not_sent": 0, "records_not_sent": 0, "errors": 0,
                        "last_error": None, "last_error_time": None, "connected": True,
                        "reconnects": 0, "connects": 1, "queued": 0, "down": False,
                        "messages_refused": 0, "records_refused": 0, "collector": "nfcapd",
                        "protocol": "ipfix", "host": "2001:db8::10", "port": 4739,
                        "transport": "udp", "group": None, "last_template_ms": 0,
                        "records_not_exportable": 0}],
        "records_without_collector": 0, "source": "capture", "conntrack": None,
        "control": {"clients": 1, "evicted": 0, "expired": 0, "internal_errors": 0},
        "loop_errors": 0, "previous_run": "stopped cleanly",
    }
    result.update(changes)
    return result


def failing(result):
    result["interfaces"].append({"name": "wan", "device": None, "ifindex": None,
                                 "direction": "in", "up": False,
                                 "error": "no such device 'eth1'", "packets_not_captured": 0,
                                 "packets_read": 0, "octets_read": 0, "pcap_dropped": 0,
                                 "pcap_received": 0, "pcap_if_dropped": 0})
    result["collectors"][0].update(down=True, errors=3, last_error_time=NOW - 125,
                                   last_error="connection refused by [2001:db8::10]:4739")
    result["meter"].update(packets_dropped_by_kernel=1500, dropped_malformed=20)
    return result


def test_status_summary_first_all_well(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    text, found = status.format_status(daemon_status(), now=NOW)
    lines = text.splitlines()
    assert found == []
    assert lines[:7] == [
        "flowprobe 0.1.0: running, all well",
        "since       2026-12-01 21:56:45 (3 h 12 min)",
        "source      packet capture",
        "interfaces  1 up (lan)",
        "collectors  nfcapd healthy",
        "drops       none since start (1.2 M packets read)",
        "flow table  300 of 65536 flows (0.5 %), peak 900",
    ]
    # then the details, grouped, in human units and names
    assert "Meter" in lines and "Interface lan" in lines and "Collector nfcapd" in lines
    assert "  packets  1.2 M read, 1.2 M metered (942 MiB), 567 not IP" in lines
    assert "  memory   6.8 MiB" in lines
    words = [line.split() for line in lines]
    assert ["sends", "ipfix", "to", "[2001:db8::10]:4739", "over", "udp"] in words
    assert ["capabilities", "CAP_NET_ADMIN", "CAP_NET_RAW"] in words


def test_status_names_what_needs_attention(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    text, found = status.format_status(failing(daemon_status()), now=NOW)
    lines = text.splitlines()
    assert lines[:3] == [
        "flowprobe 0.1.0: running, 2 things need attention",
        "  ! interface wan down: no such device 'eth1'",
        "  ! collector nfcapd failing: connection refused by [2001:db8::10]:4739",
    ]
    assert "interfaces  1 up (lan), 1 down (wan)" in lines
    assert ("collectors  nfcapd failing (last error: connection refused by "
            "[2001:db8::10]:4739, 2 min 5 s ago)") in lines
    assert ("drops       1.5 k packets (kernel 1.5 k, malformed 20; 0.1 %) since start"
            in lines)


@pytest.mark.parametrize("changes, expected", [
    ({"config_error": "flowprobe.main.idle_timeout: invalid value 'soon'"},
     "config not applied: flowprobe.main.idle_timeout: invalid value 'soon'"),
    ({"loop_errors": 2}, "2 internal errors in the loop (see the log)"),
    ({"conntrack": {"running": False, "error": "no ctnetlink", "connections": 0,
                    "capacity": 1000, "table_fill": 0}}, "conntrack not running: no ctnetlink"),
])
def test_status_attention_reasons(changes, expected):
    assert status.attention(daemon_status(**changes)) == [expected]
    result = daemon_status()
    result["meter"]["table_fill"] = 0.95
    assert status.attention(result) == ["flow table 95.0 % full"]
    result = daemon_status()
    result["collectors"][0].update(transport="tcp", connected=False)
    assert status.attention(result) == ["collector nfcapd failing: not connected"]


class StatusProbe(MeterProbe):
    def __init__(self, result):
        super().__init__()
        self.result = result

    def status(self):
        return self.result


@pytest.mark.parametrize("broken", [False, True])
def test_status_exit_statuses_over_the_socket(socket_path, capsys, broken):  # noqa: F811
    result = failing(daemon_status()) if broken else daemon_status()
    loop = Loop(ControlServer(socket_path, Handlers(StatusProbe(result))))
    try:
        assert run("status", "--socket", socket_path) == (EXIT_ATTENTION if broken else EXIT_OK)
        out = capsys.readouterr().out
        assert out.startswith("flowprobe 0.1.0: running, ")
        # --json: the reply as it came, and 0 whenever the daemon answered
        assert run("status", "--socket", socket_path, "--json") == EXIT_OK
        assert json.loads(capsys.readouterr().out) == result
    finally:
        loop.close()


def test_status_of_no_daemon_is_one_line_and_exit_1(tmp_path, capsys):
    missing = str(tmp_path / "none.sock")
    assert run("status", "--socket", missing) == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"flowprobe: flowprobe is not running (no control socket at {missing})\n"


def test_status_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        parse("status", "--help")
    out = capsys.readouterr().out
    assert "exit status:" in out and "3  running, but something needs attention" in out


# ---- flows, expire, reload ----

def test_cli_defaults():
    args = parse("flows")
    assert (args.socket, args.json, args.sort, args.limit) == ("/var/run/flowprobe.sock",
                                                               False, "bytes", 100)
    assert (args.address, args.port, args.protocol, args.interface) == (None,) * 4
    args = parse("top")
    assert (args.interval, args.once, args.rows, args.sort, args.filter) == (2.0, False, 0,
                                                                            "rate", None)


def test_cli_flows_table(served, capsys):  # noqa: F811
    assert run("flows", "--socket", served) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "PROTO  SOURCE              DESTINATION            PACKETS    BYTES  AGE  IF",
        "TCP    10.1.0.1:50000      10.2.0.2:80                  3  3.0 KiB   1s  eth0",
        "UDP    [2001:db8::1]:1234  [2001:db8::2]:443            1  1.2 KiB   0s  wan",
        "UDP    10.1.0.1:5353       192.0.2.53:53                5    190 B   0s  wan",
        "ICMP   10.1.0.9            10.2.0.2 echo request        1     28 B   0s  eth0",
        "4 of 4 matching flows (4 active)",
    ]


def test_cli_flows_filters_and_json(served, capsys):  # noqa: F811
    assert run("flows", "--socket", served, "--protocol", "17", "--interface", "wan",
               "--address", "10.0.0.0/8", "--port", "53", "--sort", "packets", "--limit", "5",
               "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert summary(result) == [UDP4] and result["matched"] == 1
    assert run("flows", "--socket", served, "--protocol", "GRE") == 0
    assert capsys.readouterr().out == "0 of 0 matching flows (4 active)\n"


def test_cli_errors_are_one_line(served, capsys):  # noqa: F811
    assert run("flows", "--socket", served, "--limit", "0") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "flowprobe: flows: limit must be an integer 1..1000, got 0\n"
    assert run("flows", "--socket", served, "--limit", "1001") == 1
    assert "1..1000" in capsys.readouterr().err


def test_cli_expire(served, capsys):  # noqa: F811
    assert run("expire", "--socket", served, "--interface", "eth0", "--port", "80") == 0
    assert capsys.readouterr().out == "expired 1 flow\n"
    assert run("expire", "--socket", served, "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"expired": 3}
    assert run("expire", "--socket", served) == 0
    assert capsys.readouterr().out == "expired 0 flows\n"


def test_cli_reload(served, probe, capsys):  # noqa: F811
    assert run("reload", "--socket", served) == 0
    assert capsys.readouterr().out == "reloaded\n"
    probe.reload_error = reason = "uci: flowprobe.main.interval: invalid value 'x'"
    assert run("reload", "--socket", served) == 1
    assert capsys.readouterr().out == f"not reloaded: {reason}\n"
    assert run("reload", "--socket", served, "--json") == 1
    assert json.loads(capsys.readouterr().out) == {"reloaded": False, "error": reason}


# ---- top ----

class LiveTraffic:
    """One UDP flow that keeps sending, one frame a loop turn, on the probe's
    packet clock (the meter's clock follows packet time)."""

    def __init__(self, probe):  # noqa: F811
        self.probe, self.at_ms = probe, 2000

    def __call__(self):
        from scapy.layers.inet import IP, UDP
        from scapy.packet import Raw
        self.at_ms += 1
        self.probe.feed(self.at_ms, frame(IP(src="10.9.0.1", dst="10.2.0.2")
                                          / UDP(sport=4000, dport=4001) / Raw(b"s" * 472)),
                        "wan")


def test_cli_top_once_sorts_by_rate(handlers, probe, socket_path, capsys):  # noqa: F811
    loop = Loop(ControlServer(socket_path, handlers), tick=LiveTraffic(probe))
    try:
        assert run("top", "--socket", socket_path, "--once", "--interval", "0.3") == 0
    finally:
        loop.close()
    lines = capsys.readouterr().out.splitlines()
    assert "\033" not in "".join(lines)  # --once: no screen control
    assert lines[0].startswith("flowprobe top ") and "5 of 5 flows" in lines[0]
    assert "bit/s (" in lines[0] and "B/s)" in lines[0] and "packets/s" in lines[0]
    assert lines[1].split() == ["RATE", "PKT/S", "PROTO", "SOURCE", "DESTINATION", "BYTES", "AGE",
                                "IF"]
    busiest = lines[2].split()
    assert busiest[1].endswith("bit/s") and busiest[0] != "0"
    assert busiest[3:6] == ["UDP", "10.9.0.1:4000", "10.2.0.2:4001"] and busiest[-1] == "wan"
    # the table's other flows sent nothing in between
    assert [line.split()[:3] for line in lines[3:]] == [["0", "bit/s", "0"]] * 4
    assert [line.split()[3] for line in lines[3:]] == ["TCP", "UDP", "UDP", "ICMP"]


def test_cli_top_sort_and_filter_options(handlers, probe, socket_path, capsys):  # noqa: F811
    loop = Loop(ControlServer(socket_path, handlers), tick=LiveTraffic(probe))
    try:
        assert run("top", "--socket", socket_path, "--once", "--interval", "0.2",
                   "--sort", "age", "--filter", "udp wan") == 0
    finally:
        loop.close()
    lines = capsys.readouterr().out.splitlines()
    assert "by age  filter: udp wan" in lines[0]
    assert [line.split()[3] for line in lines[2:]] == ["UDP"] * 3
    assert [line.split()[4] for line in lines[2:]] == ["10.1.0.1:5353", "[2001:db8::1]:1234",
                                                       "10.9.0.1:4000"]


def test_cli_top_json_and_filters(handlers, probe, socket_path, capsys):  # noqa: F811
    loop = Loop(ControlServer(socket_path, handlers), tick=LiveTraffic(probe))
    try:
        assert run("top", "--socket", socket_path, "--once", "--interval", "0.2",
                   "--interface", "wan", "--json") == 0
    finally:
        loop.close()
    frame_ = json.loads(capsys.readouterr().out)
    assert frame_["matched"] == 3 and frame_["active"] == 5
    first = frame_["flows"][0]
    assert first["src_addr"] == "10.9.0.1" and first["bytes_per_s"] > 0
    assert first["packets_per_s"] > 0
    assert [f["bytes_per_s"] for f in frame_["flows"][1:]] == [0, 0]


def test_top_rates_between_two_snapshots(handlers, probe):  # noqa: F811
    before = handlers.call("flows", {"limit": 1000})
    probe.feed(1500, TCP_FRAME, "eth0")      # +1040 octets on a known flow
    probe.feed(1501, ICMP_FRAME, "wan")      # a new flow (another interface): counts whole
    after = handlers.call("flows", {"limit": 1000})
    rated = top.top_rates(before, after, 2.0)
    assert [(f["protocol"], f["ifindex"], f["bytes_per_s"], f["packets_per_s"])
            for f in rated] == [(6, 2, 520.0, 0.5), (1, 3, 14.0, 0.5), (17, 3, 0.0, 0.0),
                                (17, 3, 0.0, 0.0), (1, 2, 0.0, 0.0)]


def test_top_against_no_daemon(tmp_path, capsys):
    missing = str(tmp_path / "none.sock")
    assert run("top", "--socket", missing, "--once") == 1
    assert capsys.readouterr().err.startswith("flowprobe: flowprobe is not running")


def v6_flow(n, rate):
    return {"ip_version": 6, "protocol": 6, "src_addr": f"2001:db8:100::{n:x}",
            "dst_addr": "2001:db8:200::abcd:1234", "src_port": 40000 + n, "dst_port": 443,
            "packets": 1000 * n, "octets": 1_000_000 * n, "flow_start_ms": n, "age_ms": 3_725_000,
            "interface": "lan", "ifindex": 4, "bytes_per_s": rate, "packets_per_s": rate / 1000}


def test_top_fits_80_columns_dropping_the_least_needed_first():
    rated = [v6_flow(n, 125_000.0 * n) for n in range(1, 30)]
    current = {"active": 29, "matched": 29}
    frame_ = top.format_top(rated, current, 2.0, rows=21, width=80,
                            keys_line=top.KEYS_HELP).splitlines()
    assert len(frame_) == 24 and all(len(line) <= 80 for line in frame_)
    header = frame_[1].split()
    assert header[:2] == ["RATE", "PROTO"] or header[:3] == ["RATE", "PKT/S", "PROTO"]
    assert "SOURCE" in header and "DESTINATION" in header
    assert frame_[2].split()[:2] == ["29.0", "Mbit/s"]   # 29 × 125 kB/s × 8
    assert frame_[-1] == top.KEYS_HELP
    # wide enough: every column, no address cut
    wide = top.format_top(rated, current, 2.0, rows=5, width=200).splitlines()
    assert wide[1].split() == list(top.COLUMNS) and "…" not in "".join(wide)
    assert "[2001:db8:100::1d]:40029" in wide[2]


def test_top_keys_sort_and_filter():
    view = top.View("rate", "")
    assert view.press("p") is True and view.sort == "packets"
    assert view.press("a") and view.sort == "age"
    assert view.press("/") and view.keys_line().startswith("filter: _")
    for key in "lanx\x7f":
        view.press(key)
    assert view.editing == "lan" and view.filter == ""
    view.press("\r")
    assert (view.filter, view.editing) == ("lan", None)
    assert view.keys_line() == "by age  filter: lan   q quit  r p b a sort  / filter"
    assert view.press("x") is False
    assert view.press("\x1b") and view.filter == ""
    assert view.press("q") == "quit"


# ---- a live daemon on lo ----

def live_missing():
    if os.geteuid() != 0:
        return "capturing on lo needs root"
    if not os.path.exists("/sys/class/net/lo"):
        return "no lo"
    return None


class LiveDaemon:
    """`flowprobe run` on lo, metering only this test's UDP ports."""

    def __init__(self, tmp_path, ports, interfaces=("lo",), collector_port=None):
        self.socket = str(tmp_path / "live.sock")
        self.log = open(tmp_path / "live.log", "w+")
        port_filter = " or ".join(f"port {p}" for p in ports)
        lines = ["config flowprobe 'main'", "\toption enabled '1'", "\toption user ''",
                 f"\toption control_socket '{self.socket}'", "\toption idle_timeout '3600'",
                 f"\toption filter 'udp and ({port_filter})'"]
        lines += [f"\tlist interface '{name}'" for name in interfaces]
        if collector_port:
            lines += ["config collector 'nfcapd'", "\toption host '127.0.0.1'",
                      f"\toption port '{collector_port}'"]
        config = tmp_path / "live.conf"
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen([sys.executable, "-m", "flowprobe", "run", "--config",
                                         str(config), "--no-ubus"], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if any(i["up"] for i in call(self.socket, "status")["interfaces"]):
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.1)
        raise AssertionError(f"the daemon never came up:\n{self.output()}")

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def cli(self, *argv, env=None):
        return subprocess.run([sys.executable, "-m", "flowprobe", *argv, "--socket", self.socket],
                              capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, **(env or {})))

    def stop(self):
        self.process.terminate()
        assert self.process.wait(30) == 0, self.output()
        self.log.close()


class Sender:
    """UDP from fixed ports to 127.0.0.1 and [::1], `rate` datagrams a
    second each, in a thread, until stopped."""

    def __init__(self, port, rate=50, size=1000):
        self.port, self.rate, self.size = port, rate, size
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def burst(self, count=5):
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((address, self.port + 1))
                for _ in range(count):
                    s.sendto(b"x" * self.size, (address, self.port))

    def run(self):
        while not self.stop_event.wait(1 / self.rate):
            self.burst(1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(tmp_path):
    reason = live_missing()
    if reason:
        pytest.skip(f"live daemon: {reason}")
    port = free_udp_port()
    daemon = LiveDaemon(tmp_path, [port, port + 1])
    daemon.port = port
    yield daemon
    daemon.stop()


def test_live_status_flows_expire_reload(live):
    Sender(live.port).burst(5)
    time.sleep(0.5)
    result = live.cli("status")
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": running, all well")
    assert lines[1].startswith("since ") and lines[2] == "source      packet capture"
    assert lines[3] == "interfaces  1 up (lo)"
    assert lines[4] == "collectors  none (records are not exported)"
    assert lines[5].startswith("drops       none since start")
    flows = live.cli("flows", "--port", str(live.port))
    assert flows.returncode == EXIT_OK, flows.stderr
    rows = flows.stdout.splitlines()
    assert rows[0].split() == ["PROTO", "SOURCE", "DESTINATION", "PACKETS", "BYTES", "AGE", "IF"]
    assert {tuple(row.split()[:4]) for row in rows[1:3]} == {
        ("UDP", f"127.0.0.1:{live.port + 1}", f"127.0.0.1:{live.port}", "5"),
        ("UDP", f"[::1]:{live.port + 1}", f"[::1]:{live.port}", "5")}
    assert rows[3] == "2 of 2 matching flows (2 active)"
    assert live.cli("expire", "--address", "::1").stdout == "expired 1 flow\n"
    reload = live.cli("reload")
    assert (reload.returncode, reload.stdout) == (EXIT_OK, "reloaded\n")


def test_live_status_exit_3_names_what_is_wrong(tmp_path):
    reason = live_missing()
    if reason:
        pytest.skip(f"live daemon: {reason}")
    port = free_udp_port()
    daemon = LiveDaemon(tmp_path, [port], interfaces=("lo", "fpnosuch0"),
                        collector_port=free_udp_port())
    try:
        Sender(port).burst(3)       # exported to a port nobody listens on: refused
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            result = daemon.cli("status")
            if "collector nfcapd failing" in result.stdout:
                break
            time.sleep(0.5)
        assert result.returncode == EXIT_ATTENTION, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].endswith(": running, 2 things need attention")
        assert lines[1] == "  ! interface fpnosuch0 down: no such device 'fpnosuch0'"
        assert lines[2].startswith("  ! collector nfcapd failing: ")
        assert "interfaces  1 up (lo), 1 down (fpnosuch0)" in lines
        collector = next(line for line in lines if line.startswith("collectors  "))
        assert " ago)" in collector
        assert daemon.cli("status", "--json").returncode == EXIT_OK
    finally:
        daemon.stop()


def test_live_top_once_in_bit_per_second(live):
    with Sender(live.port, rate=100):
        result = live.cli("top", "--once", "--interval", "1")
    assert result.returncode == EXIT_OK, result.stderr
    lines = result.stdout.splitlines()
    assert "bit/s (" in lines[0]
    busiest = lines[2].split()
    assert busiest[1].endswith("bit/s") and float(busiest[0]) > 0
    assert any(f"[::1]:{live.port}" in line for line in lines[2:])
