"""Control: the handlers over a real meter, the unix socket server and its
client, and the ubus object where python-ubus and ubusd exist (the CLI verbs
over this socket: test_cli_control.py)."""

import json
import os
import selectors
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from captures import START_US
from flowprobe.control import server
from flowprobe.control.client import call
from flowprobe.control.handlers import ControlError, Handlers
from flowprobe.control.server import ControlServer
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
START_MS = START_US // 1000
INTERFACES = {"eth0": 2, "wan": 3}
ETHERNET = 1


def frame(packet):
    return bytes(Ether(**MACS) / packet)


TCP_FRAME = frame(IP(src="10.1.0.1", dst="10.2.0.2") / TCP(sport=50000, dport=80, flags="PA")
                  / Raw(b"x" * 1000))                                     # 1040 octets
UDP_FRAME = frame(IP(src="10.1.0.1", dst="192.0.2.53") / UDP(sport=5353, dport=53)
                  / Raw(b"q" * 10))                                       # 38 octets
ICMP_FRAME = frame(IP(src="10.1.0.9", dst="10.2.0.2") / ICMP(type=8, code=0))  # 28 octets
IPV6_FRAME = frame(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1234, dport=443)
                   / Raw(b"v" * 1200))                                    # 1248 octets


class MeterProbe:
    """Stands in for the daemon: a real Meter fed with real frames, and the
    few things the handlers ask the daemon (status, reload, interfaces, now).

    The table it holds, at now = START_MS + 1000:
      tcp   10.1.0.1:50000 > 10.2.0.2:80      eth0  3 packets  3120 octets  age 1000
      udp   10.1.0.1:5353  > 192.0.2.53:53    wan   5 packets   190 octets  age  900
      icmp  10.1.0.9       > 10.2.0.2 (8/0)   eth0  1 packet     28 octets  age  500
      udp   [2001:db8::1]:1234 > [..::2]:443  wan   1 packet   1248 octets  age    0
    """

    def __init__(self):
        self.meter = Meter(MeterSettings(hash_seed=1))
        self.reloads = []
        self.reload_error = None
        for at_ms in (0, 1, 2):
            self.feed(at_ms, TCP_FRAME, "eth0")
        for at_ms in range(100, 105):
            self.feed(at_ms, UDP_FRAME, "wan")
        self.feed(500, ICMP_FRAME, "eth0")
        self.feed(1000, IPV6_FRAME, "wan")

    def feed(self, at_ms, data, interface):
        self.meter.process_frame(data, ETHERNET, START_US + at_ms * 1000,
                                 ifindex=INTERFACES[interface])

    def status(self):
        counters = self.meter.counters()
        return {"version": "test", "uptime": 3725, "active_flows": len(self.meter.snapshot()),
                "interfaces": {"eth0": {"packets": counters["packets_read"], "drops": 0}},
                "exporters": [{"name": "nfcapd", "last_error": None}]}

    def reload(self):
        self.reloads.append(True)
        return {"reloaded": self.reload_error is None, "error": self.reload_error}

    def interface_index(self, name):
        return INTERFACES.get(name)

    def interface_name(self, ifindex):
        return {index: name for name, index in INTERFACES.items()}.get(ifindex)

    def now_ms(self):
        return self.meter.counters()["clock_ms"]


@pytest.fixture
def probe():
    return MeterProbe()


@pytest.fixture
def handlers(probe):
    return Handlers(probe)


def summary(result):
    return [(f["protocol"], f["src_addr"], f["dst_port"]) for f in result["flows"]]


TCP, UDP4, ICMP4, UDP6 = (6, "10.1.0.1", 80), (17, "10.1.0.1", 53), (1, "10.1.0.9", 2048), \
    (17, "2001:db8::1", 443)


# ---- handlers ----

def test_status_is_the_daemons_as_is(handlers, probe):
    assert handlers.call("status", None) == probe.status()
    assert handlers.call("status", {}) == probe.status()


def test_flows_default_by_bytes_with_interface_and_age(handlers):
    result = handlers.call("flows", None)
    assert summary(result) == [TCP, UDP6, UDP4, ICMP4]
    assert (result["matched"], result["active"]) == (4, 4)
    tcp = result["flows"][0]
    assert (tcp["packets"], tcp["octets"], tcp["interface"], tcp["age_ms"]) == (3, 3120, "eth0",
                                                                                1000)
    assert tcp["flow_start_ms"] == START_MS and tcp["ifindex"] == 2
    assert [f["age_ms"] for f in result["flows"]] == [1000, 0, 900, 500]
    assert [f["interface"] for f in result["flows"]] == ["eth0", "wan", "wan", "eth0"]
    json.dumps(result)  # a JSON object, as ubus and the socket need


def test_flows_sorted_by_packets_and_age(handlers):
    # equal packets: the older flow first
    assert summary(handlers.call("flows", {"sort": "packets"})) == [UDP4, TCP, ICMP4, UDP6]
    assert summary(handlers.call("flows", {"sort": "age"})) == [TCP, UDP4, ICMP4, UDP6]
    assert summary(handlers.call("flows", {"sort": "bytes"})) == [TCP, UDP6, UDP4, ICMP4]


def test_flows_limit_keeps_the_counts(handlers):
    result = handlers.call("flows", {"limit": 2, "sort": "age"})
    assert summary(result) == [TCP, UDP4]
    assert (result["matched"], result["active"]) == (4, 4)
    assert len(handlers.call("flows", {"limit": 1000})["flows"]) == 4


@pytest.mark.parametrize("args, expected", [
    ({"address": "10.2.0.2"}, [TCP, ICMP4]),               # destination
    ({"address": "10.1.0.1"}, [TCP, UDP4]),                # source
    ({"address": "10.2.0.0/16"}, [TCP, ICMP4]),
    ({"address": "10.2.0.77/16"}, [TCP, ICMP4]),           # host bits ignored
    ({"address": "192.0.2.53"}, [UDP4]),
    ({"address": "2001:db8::/32"}, [UDP6]),
    ({"address": "2001:db8::2"}, [UDP6]),
    ({"address": "0.0.0.0/0"}, [TCP, UDP4, ICMP4]),        # the family only
    ({"address": "::/0"}, [UDP6]),
    ({"address": "198.51.100.1"}, []),
    ({"port": 80}, [TCP]),
    ({"port": 50000}, [TCP]),                              # source port
    ({"port": 53}, [UDP4]),
    ({"port": 2048}, [ICMP4]),                             # echo request: type 8 · 256
    ({"protocol": "udp"}, [UDP6, UDP4]),
    ({"protocol": "TCP"}, [TCP]),
    ({"protocol": 1}, [ICMP4]),
    ({"protocol": "icmp"}, [ICMP4]),
    ({"protocol": "gre"}, []),
    ({"interface": "eth0"}, [TCP, ICMP4]),
    ({"interface": "wan"}, [UDP6, UDP4]),
    ({"interface": "wan", "protocol": "udp", "address": "2001:db8::/32"}, [UDP6]),
    ({"interface": "eth0", "port": 80, "protocol": "udp"}, []),
])
def test_flows_filters(handlers, args, expected):
    result = handlers.call("flows", args)
    assert summary(result) == expected
    assert (result["matched"], result["active"]) == (len(expected), 4)


@pytest.mark.parametrize("args, expired, left", [
    ({"address": "10.2.0.0/16"}, 2, [UDP6, UDP4]),
    ({"port": 53}, 1, [TCP, UDP6, ICMP4]),
    ({"protocol": "udp"}, 2, [TCP, ICMP4]),
    ({"interface": "eth0"}, 2, [UDP6, UDP4]),
    ({"address": "::/0"}, 1, [TCP, UDP4, ICMP4]),
    ({"protocol": "udp", "interface": "wan", "port": 443}, 1, [TCP, UDP4, ICMP4]),
    ({"port": 9}, 0, [TCP, UDP6, UDP4, ICMP4]),
    ({}, 4, []),
    (None, 4, []),
])
def test_expire_ends_what_flows_lists(handlers, probe, args, expired, left):
    if args:  # the same filter lists exactly what it expires
        assert handlers.call("flows", args)["matched"] == expired
    assert handlers.call("expire", args) == {"expired": expired}
    assert summary(handlers.call("flows", None)) == left
    records = probe.meter.drain()
    assert len(records) == expired
    assert {r["end_reason"] for r in records} <= {"forced_end"}


def test_reload_is_the_daemons(handlers, probe):
    assert handlers.call("reload", None) == {"reloaded": True, "error": None}
    probe.reload_error = "flowprobe.@collector[0]: bad port"
    assert handlers.call("reload", {}) == {"reloaded": False,
                                           "error": "flowprobe.@collector[0]: bad port"}
    assert len(probe.reloads) == 2


@pytest.mark.parametrize("method, args, message", [
    ("dump", None, "unknown method 'dump' (methods: status, flows, expire, reload, query)"),
    ("Status", None, "unknown method 'Status' (methods: status, flows, expire, reload, query)"),
    ("status", {"verbose": True}, "status: unknown argument 'verbose' (allowed: none)"),
    ("reload", {"force": 1}, "reload: unknown argument 'force' (allowed: none)"),
    ("flows", [], "flows: arguments must be a JSON object, got list"),
    ("flows", "port=80", "flows: arguments must be a JSON object, got str"),
    ("flows", {"ports": 80, "adress": "x"},
     "flows: unknown argument 'adress', 'ports' "
     "(allowed: address, port, protocol, interface, sort, limit)"),
    ("expire", {"limit": 5},
     "expire: unknown argument 'limit' (allowed: address, port, protocol, interface)"),
    ("expire", {"sort": "bytes"},
     "expire: unknown argument 'sort' (allowed: address, port, protocol, interface)"),
    ("flows", {"address": "10.0.0.300"},
     "flows: address '10.0.0.300' is not an IP address or prefix"),
    ("expire", {"address": "10.0.0.0/33"},
     "expire: address '10.0.0.0/33' is not an IP address or prefix"),
    ("expire", {"address": ""}, "expire: address '' is not an IP address or prefix"),
    ("flows", {"address": 167772161},
     "flows: address must be an IP address or prefix (a string), got 167772161"),
    ("flows", {"port": "80"}, "flows: port must be an integer 1..65535, got '80'"),
    ("flows", {"port": 0}, "flows: port must be an integer 1..65535, got 0"),
    ("expire", {"port": 65536}, "expire: port must be an integer 1..65535, got 65536"),
    ("expire", {"port": True}, "expire: port must be an integer 1..65535, got True"),
    ("flows", {"port": 80.0}, "flows: port must be an integer 1..65535, got 80.0"),
    ("flows", {"protocol": "quic"},
     "flows: unknown protocol 'quic' (names: icmp, tcp, udp, gre, esp, icmpv6, sctp, udplite; "
     "or a number 1..255)"),
    ("expire", {"protocol": 0}, "expire: protocol must be a name or an integer 1..255, got 0"),
    ("flows", {"protocol": 256}, "flows: protocol must be a name or an integer 1..255, got 256"),
    ("flows", {"protocol": None},
     "flows: protocol must be a name or an integer 1..255, got None"),
    ("flows", {"interface": "eth9"}, "flows: no interface 'eth9'"),
    ("expire", {"interface": "eth9"}, "expire: no interface 'eth9'"),
    ("flows", {"interface": 2}, "flows: interface must be an interface name, got 2"),
    ("flows", {"interface": ""}, "flows: interface must be an interface name, got ''"),
    ("flows", {"sort": "rate"}, "flows: sort must be one of bytes, packets, age, got 'rate'"),
    ("flows", {"sort": None}, "flows: sort must be one of bytes, packets, age, got None"),
    ("flows", {"limit": 0}, "flows: limit must be an integer 1..1000, got 0"),
    ("flows", {"limit": 1001}, "flows: limit must be an integer 1..1000, got 1001"),
    ("flows", {"limit": "10"}, "flows: limit must be an integer 1..1000, got '10'"),
    ("flows", {"limit": False}, "flows: limit must be an integer 1..1000, got False"),
])
def test_bad_arguments_are_named(handlers, probe, method, args, message):
    with pytest.raises(ControlError) as error:
        handlers.call(method, args)
    assert str(error.value) == message
    assert len(probe.meter.snapshot()) == 4  # nothing expired by a bad filter
    assert probe.reloads == []


# ---- the unix socket server ----

class Loop:
    """The daemon's loop in miniature: a selector whose key.data is called
    with the events, in a thread of its own; `tick` runs every turn (live
    traffic, for top)."""

    def __init__(self, control_server, tick=None):
        self.selector = selectors.DefaultSelector()
        self.server, self.tick = control_server, tick
        control_server.attach(self.selector)
        self.stop = threading.Event()
        self.errors = []
        self.turns = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            while not self.stop.is_set():
                for key, events in self.selector.select(0 if self.server.busy() else 0.02):
                    key.data(events)
                self.server.serve()
                self.server.expire()
                self.turns += 1
                if self.tick:
                    self.tick()
        except Exception as e:  # surfaced by close()
            self.errors.append(e)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.close()
        self.selector.close()
        assert self.errors == []


@pytest.fixture
def socket_path(tmp_path):
    return str(tmp_path / "c.sock")


@pytest.fixture
def served(handlers, socket_path):
    loop = Loop(ControlServer(socket_path, handlers))
    yield socket_path
    loop.close()


def raw_exchange(path, data, shutdown=False):
    """Sends bytes as they are; returns the reply lines until the server closes
    or a second passes quietly."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(2)
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while True:
                s.settimeout(1)
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
        except ConnectionResetError:
            pass
    return [json.loads(line) for line in received.splitlines()]


def test_call_every_method(served, handlers):
    assert call(served, "status") == handlers.call("status", None)
    assert summary(call(served, "flows", {"protocol": "udp"})) == [UDP6, UDP4]
    assert call(served, "reload") == {"reloaded": True, "error": None}
    assert call(served, "expire", {"port": 80}) == {"expired": 1}
    assert call(served, "flows")["active"] == 3


def test_call_reports_the_servers_message(served):
    with pytest.raises(ControlError, match=r"^unknown method 'dump' \(methods: status, flows"):
        call(served, "dump")
    with pytest.raises(ControlError, match=r"^flows: port must be an integer 1\.\.65535, got 0$"):
        call(served, "flows", {"port": 0})


def test_socket_is_root_only(served):
    st = os.stat(served)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()


def test_mode_is_chosen_by_the_caller(handlers, socket_path):
    control = ControlServer(socket_path, handlers, mode=0o660)
    try:
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
    finally:
        control.close()


def test_concurrent_clients(served):
    results, failures = [], []

    def client(n):
        try:
            for _ in range(20):
                reply = call(served, "flows", {"limit": 1 + n % 4, "sort": "age"})
                results.append(len(reply["flows"]) == 1 + n % 4 and reply["active"] == 4)
        except Exception as e:
            failures.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert len(results) == 240 and all(results)


def test_malformed_requests_and_the_connection_goes_on(served):
    replies = raw_exchange(served, b"{not json\n"
                                   b"[1, 2]\n"
                                   b"{\"method\": 5}\n"
                                   b"{\"method\": \"status\", \"id\": 1}\n"
                                   b"{\"method\": \"flows\", \"args\": {\"port\": \"x\"}}\n"
                                   b"\n"
                                   b"{\"method\": \"flows\", \"args\": {\"limit\": 1}}\n")
    assert [r["ok"] for r in replies] == [False, False, False, False, False, True]
    assert replies[0]["error"].startswith("request is not JSON: ")
    assert replies[1]["error"] == "request must be a JSON object with \"method\" and \"args\""
    assert replies[2]["error"] == "request: \"method\" must be a string"
    assert replies[3]["error"] == "request: unknown key 'id' (allowed: method, args)"
    assert replies[4]["error"] == "flows: port must be an integer 1..65535, got 'x'"
    assert len(replies[5]["result"]["flows"]) == 1


def test_request_without_newline_is_answered_at_end_of_input(served):
    replies = raw_exchange(served, b"{\"method\": \"reload\"}", shutdown=True)
    assert replies == [{"ok": True, "result": {"reloaded": True, "error": None}}]


def test_invalid_utf8_is_malformed(served):
    replies = raw_exchange(served, b"{\"method\": \"st\xffus\"}\n")
    assert replies[0]["ok"] is False and replies[0]["error"].startswith("request is not UTF-8")


def test_oversize_request_is_refused_and_closed(served):
    replies = raw_exchange(served, b"{\"method\": \"flows\", \"args\": {\"address\": \""
                           + b"1" * (70 * 1024))
    assert replies == [{"ok": False, "error": "request larger than 65536 bytes"}]
    # a complete line over the bound, too
    replies = raw_exchange(served, b" " * (65 * 1024) + b"{\"method\": \"status\"}\n")
    assert replies == [{"ok": False, "error": "request larger than 65536 bytes"}]
    assert call(served, "flows")["active"] == 4  # the server goes on


def test_a_stalled_client_does_not_block_others(served):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
        stalled.connect(served)
        stalled.sendall(b"{\"method\": \"flo")  # and nothing more
        started = time.monotonic()
        assert call(served, "status")["version"] == "test"
        assert time.monotonic() - started < 1


def test_a_client_that_does_not_read_is_not_read_either(served):
    request = b"{\"method\": \"flows\", \"args\": {\"limit\": 1}}\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as greedy:
        greedy.connect(served)
        greedy.sendall(request * 2000)  # 100 kB in, about 1 MB of replies out
        time.sleep(0.3)
        assert call(served, "status")["version"] == "test"  # the loop goes on
        greedy.shutdown(socket.SHUT_WR)
        greedy.settimeout(5)
        received = b""
        while True:
            chunk = greedy.recv(65536)
            if not chunk:
                break
            received += chunk
    replies = [json.loads(line) for line in received.splitlines()]
    assert len(replies) == 2000 and all(r["ok"] for r in replies)


def connect_without_waiting(path, count):
    """count connections, none waiting to be accepted (a full backlog refuses some)."""
    sockets = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            pass
        sockets.append(s)
    return sockets


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def test_a_full_house_of_idle_connections_never_locks_status_out(handlers, socket_path):
    """2 000 connections that ask nothing: each newcomer evicts the one that
    has waited longest without a complete request; status still answers."""
    loop = Loop(ControlServer(socket_path, handlers))
    idle = []
    try:
        idle = connect_without_waiting(socket_path, 2000)
        assert call(socket_path, "status")["version"] == "test"   # within call()'s 5 s
        assert len(loop.server.clients) <= server.MAX_CLIENTS
        assert loop.server.evicted > 0
    finally:
        for s in idle:
            s.close()
        loop.close()


def test_clients_that_trickle_bytes_meet_a_request_deadline(handlers, socket_path, monkeypatch):
    """16 clients each sending a byte every 0.1 s are never idle, but no
    request of theirs ever completes: the request deadline closes them."""
    monkeypatch.setattr(server, "REQUEST_SECONDS", 0.5)
    loop = Loop(ControlServer(socket_path, handlers))
    tricklers = []
    try:
        for _ in range(server.MAX_CLIENTS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(socket_path)
            tricklers.append(s)
        closed = 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and closed < len(tricklers):
            closed = 0
            for s in tricklers:
                try:
                    s.send(b" ")
                except OSError:
                    closed += 1
            time.sleep(0.1)
        assert closed == len(tricklers)
        assert loop.server.expired >= server.MAX_CLIENTS
        assert call(socket_path, "status")["version"] == "test"
    finally:
        for s in tricklers:
            s.close()
        loop.close()


def test_pipelined_big_replies_to_clients_that_never_read_do_not_stall_the_loop(
        handlers, socket_path, monkeypatch):
    """15 clients pipelining `flows` without reading a byte: each gets one
    reply at a time, the loop keeps turning, memory stays bounded, status
    answers, and the clients are closed at the reply deadline."""
    monkeypatch.setattr(server, "REPLY_SECONDS", 1.0)
    loop = Loop(ControlServer(socket_path, handlers))
    request = b"{\"method\": \"flows\", \"args\": {\"limit\": 1000}}\n"
    greedy = []
    try:
        for _ in range(15):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(socket_path)
            s.setblocking(False)
            try:
                s.send(request * 1000)
            except BlockingIOError:
                pass
            greedy.append(s)
        turns = loop.turns
        assert call(socket_path, "status")["version"] == "test"   # within call()'s 5 s
        wait_for(lambda: loop.turns - turns > 5)                   # the loop keeps turning
        assert loop.server.pending_replies() <= 15 * 4096   # one small reply each, at most
        wait_for(lambda: loop.server.expired >= 15, timeout=30)   # their replies' deadline
    finally:
        for s in greedy:
            s.close()
        loop.close()


def test_deep_json_and_any_bytes_get_an_error_reply_never_a_dead_server(served):
    replies = raw_exchange(served, b"[" * 50000 + b"\n", shutdown=True)
    assert replies == [{"ok": False, "error": "request nested deeper than 16 levels"}]
    replies = raw_exchange(served, b"\"\\\"[[[\" " + b"{" * 40000 + b"\n", shutdown=True)
    assert replies[0]["ok"] is False
    assert call(served, "status")["version"] == "test"


def test_random_bytes_on_the_live_socket_only_ever_get_error_replies(served):
    """The control protocol fuzzed as a hostile local user would: raw bytes,
    not just well-formed arguments."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(st.binary(max_size=300),
                     st.text(alphabet='[]{}",:\\ 0123456789abtrue', max_size=300)
                     .map(str.encode)))
    def exchange(data):
        for reply in raw_exchange(served, data.replace(b"\n", b" ") + b"\n", shutdown=True):
            assert set(reply) in ({"ok", "error"}, {"ok", "result"})

    exchange()
    assert call(served, "status")["version"] == "test"


def test_a_failing_method_is_an_error_reply_not_a_dead_daemon(handlers, socket_path, probe):
    def broken():
        raise RuntimeError("boom")

    probe.status = broken
    loop = Loop(ControlServer(socket_path, handlers))
    try:
        with pytest.raises(ControlError, match=r"^status failed: RuntimeError: boom$"):
            call(socket_path, "status")
        assert call(socket_path, "flows")["active"] == 4
    finally:
        loop.close()


def test_stale_socket_is_replaced(handlers, socket_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(socket_path)  # a daemon that died without cleaning up
    stale.close()
    assert os.path.exists(socket_path)
    with pytest.raises(ControlError, match=r"^flowprobe is not running \(no control socket at "):
        call(socket_path, "status")
    loop = Loop(ControlServer(socket_path, handlers))
    try:
        assert call(socket_path, "flows")["active"] == 4
    finally:
        loop.close()


def test_a_live_socket_is_not_stolen(served, handlers):
    with pytest.raises(ControlError) as error:
        ControlServer(served, handlers)
    assert str(error.value) == f"another flowprobe is running at {served}"
    assert call(served, "status")["version"] == "test"


def test_a_file_that_is_not_a_socket_is_left_alone(handlers, socket_path):
    with open(socket_path, "w") as f:
        f.write("keep me")
    with pytest.raises(ControlError) as error:
        ControlServer(socket_path, handlers)
    assert str(error.value) == f"{socket_path} exists and is not a socket; not removing it"
    with open(socket_path) as f:
        assert f.read() == "keep me"


def test_close_removes_the_socket(handlers, socket_path):
    loop = Loop(ControlServer(socket_path, handlers))
    assert call(socket_path, "status")
    loop.close()
    assert not os.path.exists(socket_path)
    with pytest.raises(ControlError) as error:
        call(socket_path, "status")
    assert str(error.value) == f"flowprobe is not running (no control socket at {socket_path})"


def test_call_times_out_on_a_silent_server(socket_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(socket_path)
        silent.listen(1)
        with pytest.raises(ControlError) as error:
            call(socket_path, "status", timeout=0.2)
        assert str(error.value) == f"flowprobe at {socket_path} did not answer within 0.2 s"


# ---- ubus ----

def ubus_missing():
    try:
        import ubus  # noqa: F401
    except ImportError:
        return "python-ubus is not installed"
    for tool in ("ubusd", "ubus"):
        if shutil.which(tool) is None:
            return f"needs {tool} in PATH"
    return None


def test_ubus_object_says_why_without_python_ubus(handlers, monkeypatch):
    import sys

    from flowprobe.control.ubus import UbusObject
    monkeypatch.setitem(sys.modules, "ubus", None)  # import ubus -> ImportError
    with pytest.raises(ControlError) as error:
        UbusObject(handlers)
    assert str(error.value) == ("python-ubus is not installed (no ubus object; "
                                "the control socket still works)")


def test_ubus_replies_are_objects_and_errors_carry_the_message(handlers):
    from flowprobe.control.ubus import UbusObject
    served = UbusObject.__new__(UbusObject)  # the reply logic, without a ubusd
    served.handlers = handlers
    assert summary(served.reply("flows", {"port": 80})) == [TCP]
    assert served.reply("status", {}) == handlers.call("status", None)
    assert served.reply("flows", {"limit": 0}) == {
        "error": "flows: limit must be an integer 1..1000, got 0"}


@pytest.mark.skipif(ubus_missing() is not None, reason=f"ubus: {ubus_missing()}")
def test_ubus_object_serves_the_methods(handlers, tmp_path):
    from flowprobe.control.ubus import UbusObject
    ubus_socket = str(tmp_path / "ubus.sock")
    ubusd = subprocess.Popen(["ubusd", "-s", ubus_socket])
    try:
        for _ in range(100):
            if os.path.exists(ubus_socket):
                break
            time.sleep(0.05)
        served = UbusObject(handlers, socket_path=ubus_socket)
        try:
            def ubus_call(*argv, target="flowprobe"):
                process = subprocess.Popen(["ubus", "-s", ubus_socket, "call", target,
                                            *argv], stdout=subprocess.PIPE, text=True)
                while process.poll() is None:
                    served.poll()
                    time.sleep(0.01)
                output = process.stdout.read()
                return json.loads(output) if output else process.returncode

            assert ubus_call("status")["version"] == "test"
            assert ubus_call("flows")["active"] == 4
            assert ubus_call("reload") == {"reloaded": True, "error": None}
            assert ubus_call("expire") == {"expired": 4}
            # as uhttpd forwards LuCI's calls: with the session, to the web object
            session = json.dumps({"ubus_rpc_session": "0123456789abcdef"})
            assert ubus_call("status", session, target="luci.flowprobe")["version"] == "test"
            assert ubus_call("flows", session, target="luci.flowprobe")["active"] == 0  # expired
            # python-ubus refuses an undeclared argument: the ubus CLI exits with
            # -UBUS_STATUS_INVALID_ARGUMENT (2), as a byte
            assert ubus_call("status", session) == 256 - 2
        finally:
            served.close()
    finally:
        ubusd.terminate()
        ubusd.wait(5)


@pytest.mark.skipif(ubus_missing() is not None, reason=f"ubus: {ubus_missing()}")
def test_ubus_object_comes_back_after_ubusd_restarts(handlers, tmp_path):
    """procd respawns a dead ubusd; the object must be published again."""
    from flowprobe.control.ubus import UbusObject
    ubus_socket = str(tmp_path / "ubus.sock")

    def start_ubusd():
        process = subprocess.Popen(["ubusd", "-s", ubus_socket])
        for _ in range(100):
            if os.path.exists(ubus_socket):
                break
            time.sleep(0.05)
        return process

    ubusd = start_ubusd()
    served = UbusObject(handlers, socket_path=ubus_socket)
    try:
        assert served.check()
        ubusd.terminate()
        ubusd.wait(5)
        served.poll()
        assert not served.check() and not served.connected
        ubusd = start_ubusd()
        assert served.check() and served.connected
        call = subprocess.Popen(["ubus", "-s", ubus_socket, "call", "flowprobe", "reload"],
                                stdout=subprocess.PIPE, text=True)
        while call.poll() is None:
            served.poll()
            time.sleep(0.01)
        assert json.loads(call.stdout.read()) == {"reloaded": True, "error": None}
    finally:
        served.close()
        ubusd.terminate()
        ubusd.wait(5)


@pytest.mark.parametrize("sort", ["bytes", "packets", "age"])
def test_the_top_selection_in_c_equals_a_full_sort(sort):
    """`flows` selects its top N in C (a bounded heap, no copy of the table):
    the same flows, in the same order, as sorting every flow would give."""
    import random
    rng = random.Random(7)
    meter = Meter(MeterSettings(hash_seed=1, max_flows=4096))
    at_us = START_US
    for n in range(3000):
        data = bytearray(UDP_FRAME)
        data[34:36] = (1024 + n).to_bytes(2, "big")      # the UDP source port
        for _ in range(rng.randint(1, 3)):
            at_us += rng.choice((0, 1000))               # ties in start time too
            meter.process_frame(bytes(data), ETHERNET, at_us)
    everything = meter.snapshot()
    if sort == "age":
        everything.sort(key=lambda f: (f["flow_start_ms"], -f["octets"]))
    else:
        field = "octets" if sort == "bytes" else "packets"
        everything.sort(key=lambda f: (-f[field], f["flow_start_ms"]))

    def key(flow):
        return (flow["octets"], flow["packets"], flow["flow_start_ms"])

    for limit in (1, 7, 500, 3000, 5000):
        top, matched = meter.top(sort, limit)
        assert matched == 3000
        assert [key(f) for f in top] == [key(f) for f in everything[:limit]]
    top, matched = meter.top(sort, 10, port=1024 + 5)
    assert matched == 1 and top[0]["src_port"] == 1029


def test_a_link_planted_at_the_socket_name_is_never_followed(handlers, tmp_path, monkeypatch):
    """Where the socket's directory is the daemon user's, the user can swap
    the fresh socket for a link between bind and chown: the victim's owner
    and mode must not change (before: root's 0600 file became group 0660)."""
    import os
    victim = tmp_path / "victim"
    victim.write_text("secret")
    os.chmod(victim, 0o600)
    path = tmp_path / "c.sock"
    real_umask, calls = os.umask, []

    def umask(mask):   # its second call comes right after bind()
        calls.append(mask)
        if len(calls) == 2:
            os.rename(path, tmp_path / "moved.sock")
            os.symlink(victim, path)
        return real_umask(mask)
    monkeypatch.setattr(server.os, "umask", umask)
    before = victim.stat()
    with pytest.raises(ControlError, match="cannot create the control socket"):
        ControlServer(str(path), handlers, gid=before.st_gid + 1)
    after = victim.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid,
                                                           before.st_gid)


def test_another_users_connection_flood_never_evicts_roots_status(handlers):
    """A member of the socket's group connecting as fast as it can only
    evicts its own connections: root's `status` has slots of its own (before:
    30 of 31 status calls failed under such a flood)."""
    import grp
    import os
    import subprocess
    import sys
    import tempfile
    if os.geteuid() != 0:
        pytest.skip("needs root and another user")
    nobody_group = grp.getgrnam("nogroup").gr_gid
    directory = tempfile.mkdtemp(prefix="flowprobe-flood-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "c.sock")
    loop = Loop(ControlServer(path, handlers, gid=nobody_group))
    flood = ("import socket, time\n"
             "held, end = [], time.monotonic() + 4\n"
             "while time.monotonic() < end:\n"
             "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
             "    s.setblocking(False)\n"
             "    try:\n"
             f"        s.connect({path!r})\n"
             "    except OSError:\n"
             "        pass\n"
             "    held.append(s)\n"
             "    held = held[-200:]\n")
    flooder = subprocess.Popen(["setpriv", "--reuid=nobody", f"--regid={nobody_group}",
                                "--clear-groups", sys.executable, "-c", flood])
    try:
        time.sleep(0.5)
        answered = 0
        for _ in range(20):
            answered += call(path, "status")["version"] == "test"
            time.sleep(0.1)
        flooder.wait(10)
    finally:
        flooder.kill()
        loop.close()
        subprocess.run(["rm", "-rf", directory], check=False)
    assert answered == 20
    assert loop.server.evicted > 0     # the flood evicted its own


def test_control_work_that_overran_its_budget_waits_as_long_before_more(handlers, probe,
                                                                        socket_path):
    """A turn of control work that took longer than its budget is followed by
    as long without any: capture gets at least half of the loop's time."""
    slow_calls = []

    def slow_status():
        time.sleep(0.1)
        slow_calls.append(time.monotonic())
        return {"version": "slow"}

    probe.status = slow_status
    control = ControlServer(socket_path, handlers)
    selector = selectors.DefaultSelector()
    control.attach(selector)
    clients = []
    try:
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(socket_path)
            s.sendall(b'{"method": "status"}\n')
            clients.append(s)
        deadline = time.monotonic() + 5
        while len(slow_calls) < 3 and time.monotonic() < deadline:
            for key, events in selector.select(0.01):
                key.data(events)
            control.serve()
            if slow_calls and len(slow_calls) < 3:
                assert not control.busy() or time.monotonic() >= control.resume_at
    finally:
        for s in clients:
            s.close()
        control.close()
        selector.close()
    gaps = [b - a for a, b in zip(slow_calls, slow_calls[1:])]
    assert len(slow_calls) == 3 and all(gap >= 0.19 for gap in gaps), gaps


def test_a_flood_of_connections_is_accepted_a_bounded_number_a_turn(handlers, socket_path):
    """The loop takes at most ACCEPTS_PER_TURN connections a turn: a connect
    flood cannot keep it from capture (before: it accepted until the backlog
    was empty, evicting one client per accept)."""
    control = ControlServer(socket_path, handlers)
    selector = selectors.DefaultSelector()
    control.attach(selector)
    pending = []
    try:
        pending = connect_without_waiting(socket_path, server.LISTEN_BACKLOG)
        control._accept(selectors.EVENT_READ)
        assert len(control.clients) == server.ACCEPTS_PER_TURN
    finally:
        for s in pending:
            s.close()
        control.close()
        selector.close()
