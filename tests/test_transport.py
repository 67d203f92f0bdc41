"""Transports: real sockets on loopback, driven by a tiny poll loop."""

import errno
import selectors
import socket
import struct
import time

import pytest

from flowprobe.export.transport import (
    TcpTransport,
    TransportError,
    UdpTransport,
    open_transport,
)

HOSTS = ["127.0.0.1", "::1"]
TEMPLATES = struct.pack(">HH", 0, 8) + b"TMPL"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def message(number, size=16):
    """Length-framed like IPFIX (id, length), so a stream splits back into messages."""
    return struct.pack(">HH", number, size) + bytes(size - 4)


def split_messages(stream):
    found, at = [], 0
    while at < len(stream):
        number, size = struct.unpack_from(">HH", stream, at)
        assert at + size <= len(stream), "a message cut short"
        found.append(number)
        at += size
    return found


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def pump(transport, until, clock=None, timeout=3.0):
    """The event loop's contract: read always, write while wanted, tick on timers."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"gave up waiting: {transport.stats()}"
        transport.tick(clock() if clock else time.monotonic())
        fd = transport.fileno()
        if fd is None:
            time.sleep(0.001)
            continue
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if transport.wants_write() else 0)
        with selectors.DefaultSelector() as selector:
            selector.register(fd, events)
            for _, ready in selector.select(0.01):
                if ready & selectors.EVENT_READ:
                    transport.on_readable()
                if ready & selectors.EVENT_WRITE and transport.fileno() == fd:
                    transport.on_writable()


def udp_receiver(host):
    receiver = socket.socket(family(host), socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.settimeout(2)
    return receiver


def tcp_server(host, rcvbuf=None):
    server = socket.socket(family(host), socket.SOCK_STREAM)
    if rcvbuf:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    server.bind((host, 0))
    server.settimeout(2)
    return server


def read_stream(conn, octets):
    data = b""
    conn.settimeout(2)
    while len(data) < octets:
        chunk = conn.recv(65536)
        assert chunk, f"closed after {len(data)} of {octets} octets"
        data += chunk
    return data


def accounted(stats, offered):
    return stats["messages_sent"] + stats["messages_not_sent"] + stats["queued"] == offered


# UDP


@pytest.mark.parametrize("host", HOSTS)
def test_udp_delivers_datagrams_and_counts(host):
    receiver = udp_receiver(host)
    transport = UdpTransport(host, receiver.getsockname()[1])
    for number in range(3):
        assert transport.send(message(number, 20 + number), records=number + 1)
    assert [receiver.recv(100) for _ in range(3)] == [message(n, 20 + n) for n in range(3)]
    stats = transport.stats()
    assert (stats["messages_sent"], stats["records_sent"], stats["octets_sent"]) == (3, 6, 63)
    assert stats["connected"] and stats["errors"] == 0 and stats["queued"] == 0
    assert not transport.wants_write()
    transport.close()
    receiver.close()


def test_udp_source_address_is_bound():
    receiver = udp_receiver("127.0.0.1")
    transport = UdpTransport("127.0.0.1", receiver.getsockname()[1], source_address="127.0.0.2")
    transport.send(b"hello")
    assert receiver.recvfrom(100)[1][0] == "127.0.0.2"
    transport.close()
    receiver.close()


@pytest.mark.parametrize("host", HOSTS)
def test_udp_refused_collector_is_down_and_nothing_refused_counts_as_sent(host):
    """A UDP collector that is not there: the datagram the ICMP error names is
    not sent, the rest wait (never reported sent) and go once it is back."""
    clock = FakeClock()
    reserve = udp_receiver(host)
    port = reserve.getsockname()[1]
    reserve.close()  # nobody listens: a datagram draws an ICMP port unreachable
    transport = UdpTransport(host, port, clock=clock, queue_limit=100)
    started = time.monotonic()
    for number in range(20):
        assert transport.send(message(number), records=2)
        transport.on_readable()
    assert time.monotonic() - started < 0.5
    stats = transport.stats()
    shown = f"[{host}]" if ":" in host else host
    assert stats["last_error"] == f"connection refused by {shown}:{port}"
    assert abs(stats["last_error_time"] - time.time()) < 5
    assert (stats["messages_sent"], stats["records_sent"]) == (0, 0)
    assert (stats["messages_not_sent"], stats["records_refused"], stats["queued"]) == (1, 2, 19)
    assert stats["down"] and accounted(stats, 20)

    # the back-off's probe is refused too: still nothing sent, nothing more lost
    clock.now = transport.next_timer()
    transport.tick(clock.now)
    transport.on_readable()
    stats = transport.stats()
    assert (stats["messages_sent"], stats["messages_not_sent"], stats["queued"]) == (0, 1, 19)
    assert transport.next_timer() == pytest.approx(clock.now + 2.0)   # the back-off doubled

    receiver = socket.socket(family(host), socket.SOCK_DGRAM)
    receiver.bind((host, port))
    receiver.settimeout(2)
    clock.now = transport.next_timer()
    transport.tick(clock.now)                  # the probe: the queue's head alone
    assert split_messages(receiver.recv(100)) == [1]
    assert transport.stats()["messages_sent"] == 0   # not before its probe window ends
    clock.now = transport.next_timer()
    transport.tick(clock.now)
    got = [split_messages(receiver.recv(100))[0] for _ in range(18)]
    stats = transport.stats()
    assert got == list(range(2, 20))
    assert (stats["messages_sent"], stats["messages_not_sent"], stats["queued"]) == (19, 1, 0)
    assert not stats["down"]
    transport.close()
    receiver.close()


class StalledSocket:
    """Stands for a UDP socket whose send buffer is full (loopback never fills one)."""

    def __init__(self, sock, error=errno.EAGAIN):
        self.sock, self.error = sock, error

    def fileno(self):
        return self.sock.fileno()

    def send(self, data, flags=0):
        raise BlockingIOError(self.error, "stalled") if self.error == errno.EAGAIN \
            else OSError(self.error, "stalled")

    def close(self):
        self.sock.close()


def test_udp_queue_overflow_counted_then_drained():
    receiver = udp_receiver("127.0.0.1")
    transport = UdpTransport("127.0.0.1", receiver.getsockname()[1], queue_limit=2)
    real = transport._sock
    transport._sock = StalledSocket(real)
    results = [transport.send(message(n), records=10) for n in range(5)]
    assert results == [True, True, False, False, False]
    stats = transport.stats()
    assert (stats["messages_not_sent"], stats["records_not_sent"], stats["queued"]) == (3, 30, 2)
    assert transport.wants_write()
    transport._sock = real
    transport.on_writable()
    assert [split_messages(receiver.recv(100))[0] for _ in range(2)] == [0, 1]
    assert transport.stats()["messages_sent"] == 2 and not transport.wants_write()
    transport.close()
    receiver.close()


def test_udp_nobufs_pauses_instead_of_spinning():
    clock = FakeClock()
    receiver = udp_receiver("127.0.0.1")
    transport = UdpTransport("127.0.0.1", receiver.getsockname()[1], clock=clock)
    real = transport._sock
    transport._sock = StalledSocket(real, errno.ENOBUFS)
    assert transport.send(message(7), records=1)
    assert not transport.wants_write() and transport.next_timer() == pytest.approx(1000.05)
    transport._sock = real
    transport.tick(clock.now)
    assert transport.stats()["queued"] == 1
    clock.now += 0.05
    transport.tick(clock.now)
    assert split_messages(receiver.recv(100)) == [7]
    assert transport.stats()["messages_sent"] == 1 and transport.next_timer() is None
    transport.close()
    receiver.close()


def test_udp_oversized_message_counted_and_the_next_goes():
    receiver = udp_receiver("127.0.0.1")
    transport = UdpTransport("127.0.0.1", receiver.getsockname()[1])
    assert transport.send(bytes(70000), records=5)
    assert transport.send(message(1), records=1)
    stats = transport.stats()
    assert (stats["messages_not_sent"], stats["records_not_sent"]) == (1, 5)
    assert "70000 octets too large" in stats["last_error"]
    assert split_messages(receiver.recv(100)) == [1]
    transport.close()
    receiver.close()


# TCP


@pytest.mark.parametrize("host", HOSTS)
def test_tcp_templates_first_then_messages(host):
    server = tcp_server(host)
    server.listen()
    transport = TcpTransport(host, server.getsockname()[1], on_connect=lambda: TEMPLATES)
    for number in range(1, 4):
        assert transport.send(message(number), records=number)
    pump(transport, lambda: transport.stats()["queued"] == 0)
    conn, _ = server.accept()
    assert split_messages(read_stream(conn, 8 + 3 * 16)) == [0, 1, 2, 3]
    stats = transport.stats()
    assert (stats["messages_sent"], stats["records_sent"], stats["octets_sent"]) == (4, 6, 56)
    assert stats["connected"] and stats["connects"] == 1 and stats["errors"] == 0
    transport.close()
    conn.close()
    server.close()


def test_tcp_backoff_grows_then_connects_with_templates_first():
    clock = FakeClock()
    server = tcp_server("127.0.0.1")  # bound, not listening: connections are refused
    port = server.getsockname()[1]
    transport = TcpTransport("127.0.0.1", port, clock=clock, on_connect=lambda: TEMPLATES,
                             backoff_min=1.0, backoff_max=8.0)
    pump(transport, lambda: transport.stats()["errors"] == 1, clock)
    assert transport.fileno() is None and not transport.wants_write()
    assert transport.stats()["last_error"] == f"connection refused by 127.0.0.1:{port}"
    for number in range(1, 4):
        assert transport.send(message(number), records=1)
    delays = []
    for attempt in range(2, 7):
        delays.append(transport.next_timer() - clock.now)
        clock.now += delays[-1] / 2
        transport.tick(clock.now)
        assert transport.stats()["reconnects"] == attempt - 2  # not yet due
        clock.now = transport.next_timer()
        pump(transport, lambda n=attempt: transport.stats()["errors"] == n, clock)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert transport.stats()["reconnects"] == 5 and transport.stats()["queued"] == 3

    server.listen()
    clock.now = transport.next_timer()
    pump(transport, lambda: transport.stats()["queued"] == 0, clock)
    conn, _ = server.accept()
    assert split_messages(read_stream(conn, 8 + 3 * 16)) == [0, 1, 2, 3]
    stats = transport.stats()
    assert stats["connected"] and stats["connects"] == 1 and stats["messages_not_sent"] == 0
    # a break after a successful connect waits backoff_min again
    conn.close()
    pump(transport, lambda: not transport.stats()["connected"], clock)
    assert transport.next_timer() - clock.now == 1.0
    transport.close()
    server.close()


def test_tcp_peer_close_reconnects_and_sends_templates_again():
    clock = FakeClock()
    server = tcp_server("127.0.0.1")
    server.listen()
    templates_asked = []

    def on_connect():
        templates_asked.append(clock.now)
        return [TEMPLATES, message(50, 12)]

    transport = TcpTransport("127.0.0.1", server.getsockname()[1], clock=clock,
                             on_connect=on_connect, backoff_min=0.5)
    transport.send(message(1), records=4)
    pump(transport, lambda: transport.stats()["queued"] == 0, clock)
    conn, _ = server.accept()
    assert split_messages(read_stream(conn, 8 + 12 + 16)) == [0, 50, 1]
    conn.close()

    pump(transport, lambda: not transport.stats()["connected"], clock)
    stats = transport.stats()
    assert stats["last_error"].startswith("connection closed by 127.0.0.1:")
    assert stats["messages_not_sent"] == 0
    for number in (2, 3):
        assert transport.send(message(number), records=1)  # queued while down
    assert transport.next_timer() == clock.now + 0.5
    clock.now += 0.5
    pump(transport, lambda: transport.stats()["queued"] == 0, clock)
    conn, _ = server.accept()
    assert split_messages(read_stream(conn, 8 + 12 + 2 * 16)) == [0, 50, 2, 3]
    assert len(templates_asked) == 2
    stats = transport.stats()
    assert (stats["connects"], stats["reconnects"], stats["messages_sent"]) == (2, 1, 7)
    transport.close()
    conn.close()
    server.close()


def test_tcp_slow_reader_never_blocks_and_overflow_is_counted():
    server = tcp_server("127.0.0.1", rcvbuf=4096)
    server.listen()
    transport = TcpTransport("127.0.0.1", server.getsockname()[1], queue_limit=4,
                             on_connect=lambda: TEMPLATES, send_buffer=4096)
    pump(transport, lambda: transport.stats()["connected"])
    conn, _ = server.accept()  # and then does not read
    accepted, slowest = [], 0.0
    for number in range(1, 301):
        started = time.monotonic()
        if transport.send(message(number, 1000), records=3):
            accepted.append(number)
        transport.on_writable()
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.05
    stats = transport.stats()
    refused = 300 - len(accepted)
    assert refused > 0 and stats["messages_not_sent"] == refused
    assert stats["records_not_sent"] == 3 * refused
    assert accounted(stats, 301) and stats["queued"] <= 4

    # the collector catches up: everything accepted arrives, in order, whole
    octets = 8 + 1000 * len(accepted)
    stream = b""
    conn.setblocking(False)
    deadline = time.monotonic() + 3
    while len(stream) < octets:
        assert time.monotonic() < deadline
        try:
            stream += conn.recv(65536)
        except BlockingIOError:
            transport.on_writable()
    assert split_messages(stream) == [0] + accepted
    assert transport.stats()["queued"] == 0
    transport.close()
    conn.close()
    server.close()


def test_tcp_reset_drops_only_the_partly_written_message():
    clock = FakeClock()
    server = tcp_server("127.0.0.1", rcvbuf=4096)
    server.listen()
    transport = TcpTransport("127.0.0.1", server.getsockname()[1], clock=clock,
                             queue_limit=8, on_connect=lambda: TEMPLATES, send_buffer=4096)
    pump(transport, lambda: transport.stats()["connected"], clock)
    conn, _ = server.accept()
    number = 0
    while transport._offset == 0 and number < 1000:  # until a write stops mid-message
        number += 1
        transport.send(message(number, 3000), records=1)
    assert transport._offset > 0
    offered = 1 + number
    before = transport.stats()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # RST
    pump(transport, lambda: not transport.stats()["connected"], clock)
    stats = transport.stats()
    assert stats["messages_not_sent"] == before["messages_not_sent"] + 1
    assert stats["records_not_sent"] == before["records_not_sent"] + 1
    assert stats["queued"] == before["queued"] - 1 and accounted(stats, offered)
    assert "127.0.0.1" in stats["last_error"]

    clock.now = transport.next_timer()
    pump(transport, lambda: transport.stats()["connected"], clock)
    conn, _ = server.accept()
    waiting = stats["queued"]
    conn.setblocking(False)
    stream = b""
    deadline = time.monotonic() + 3
    while len(stream) < 8 + 3000 * waiting:
        assert time.monotonic() < deadline
        try:
            stream += conn.recv(65536)
        except BlockingIOError:
            transport.on_writable()
    assert split_messages(stream) == [0] + list(range(number - waiting + 1, number + 1))
    transport.close()
    conn.close()
    server.close()


def test_tcp_close_counts_what_waits_and_refuses_later_sends():
    clock = FakeClock()
    server = tcp_server("127.0.0.1")  # not listening
    transport = TcpTransport("127.0.0.1", server.getsockname()[1], clock=clock)
    pump(transport, lambda: transport.stats()["errors"] == 1, clock)
    for number in range(3):
        transport.send(message(number), records=2)
    transport.close()
    stats = transport.stats()
    assert (stats["messages_not_sent"], stats["records_not_sent"], stats["queued"]) == (3, 6, 0)
    assert not transport.send(message(9), records=1)
    assert transport.stats()["messages_not_sent"] == 4 and transport.next_timer() is None
    transport.close()  # twice is harmless
    server.close()


def test_tcp_connect_timeout_schedules_a_retry():
    clock = FakeClock()
    server = tcp_server("127.0.0.1")
    server.listen(0)
    transport = TcpTransport("127.0.0.1", server.getsockname()[1], clock=clock,
                             connect_timeout=5.0)
    transport._connecting = True  # as if the SYN went unanswered
    assert transport.wants_write() and transport.next_timer() == 1005.0
    clock.now = 1005.0
    transport.tick(clock.now)
    stats = transport.stats()
    assert "timed out after 5 s" in stats["last_error"] and not stats["connected"]
    assert transport.fileno() is None and transport.next_timer() == 1006.0
    transport.close()
    server.close()


# construction


def test_unresolvable_collector_is_a_clear_error(monkeypatch):
    def no_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_name)
    with pytest.raises(TransportError, match="'collector.lan' does not resolve"):
        UdpTransport("collector.lan", 4739)


@pytest.mark.parametrize("kwargs, text", [
    ({"port": 0}, "port: invalid value 0"),
    ({"port": 4739, "queue_limit": 0}, "queue_limit"),
    ({"port": 4739, "source_address": "::1"}, "same address family"),
    ({"port": 4739, "source_address": "eth0"}, "not an IP address"),
])
def test_bad_settings_are_clear_errors(kwargs, text):
    with pytest.raises(TransportError, match=text):
        UdpTransport("127.0.0.1", **kwargs)


def test_open_transport_by_name():
    receiver = udp_receiver("127.0.0.1")
    transport = open_transport("udp", "127.0.0.1", receiver.getsockname()[1], queue_limit=3)
    assert isinstance(transport, UdpTransport) and transport.queue_limit == 3
    transport.close()
    receiver.close()
    with pytest.raises(TransportError, match="udp or tcp"):
        open_transport("sctp", "127.0.0.1", 4739)



def test_a_name_is_resolved_off_the_caller_and_only_its_answer_is_used(monkeypatch):
    """At a reload the loop must not wait on DNS: without an answer yet the
    transport says so at once (NotResolvedYet) and the resolver asks in its
    own thread; then the answer is used, a failure included."""
    import threading

    from flowprobe.export.resolver import Resolver
    from flowprobe.export.transport import NotResolvedYet
    release = threading.Event()
    real = socket.getaddrinfo

    def slow(host, *args):
        release.wait(5)          # DNS that takes its time
        host = host.decode() if isinstance(host, bytes) else host   # ASCII names come as bytes
        if host == "nowhere.invalid":
            raise socket.gaierror(-2, "Name or service not known")
        return real("127.0.0.1", *args)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    resolver = Resolver()
    started = time.monotonic()
    with pytest.raises(NotResolvedYet):
        UdpTransport("collector.lan", 4739, resolver=resolver)
    assert time.monotonic() - started < 0.5
    resolver.request("collector.lan", 4739, socket.SOCK_DGRAM)
    resolver.request("nowhere.invalid", 4739, socket.SOCK_DGRAM)
    assert resolver.busy()
    release.set()
    deadline = time.monotonic() + 5
    while resolver.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    transport = UdpTransport("collector.lan", 4739, resolver=resolver)
    assert transport.address[0] == "127.0.0.1"
    transport.close()
    with pytest.raises(TransportError, match="does not resolve"):
        UdpTransport("nowhere.invalid", 4739, resolver=resolver)
    # an address never waits for the resolver
    UdpTransport("127.0.0.1", 4739, resolver=resolver).close()


@pytest.fixture
def moving_name(monkeypatch):
    """A stand-in for DNS (getaddrinfo answers from a table the test
    changes); the resolver thread and the sockets are real."""
    from flowprobe.export.resolver import Resolver
    points_to = {"collector.lan": "127.0.0.1"}
    real = socket.getaddrinfo

    def lookup(host, *args):
        host = host.decode() if isinstance(host, bytes) else host   # ASCII names come as bytes
        if host in points_to:
            if points_to[host] is None:
                raise socket.gaierror(-3, "Temporary failure in name resolution")
            host = points_to[host]
        return real(host, *args)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return points_to, Resolver()


def bound(kind, host, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    sock.bind((host, port))
    if kind == "tcp":
        sock.listen(4)
    sock.settimeout(2)
    return sock


def answered(transport, clock):
    """Ticks until the lookup the transport asked for came back."""
    deadline = time.monotonic() + 5
    transport.tick(clock())            # asks
    while transport._name_asked is not None:
        assert time.monotonic() < deadline, "the resolver never answered"
        time.sleep(0.01)
        transport.tick(clock())        # takes the answer


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_a_collector_that_moves_in_dns_is_followed_without_a_restart(moving_name, kind):
    from flowprobe.export.transport import NAME_REFRESH_SECONDS
    points_to, resolver = moving_name
    clock = FakeClock()
    old = bound(kind, "127.0.0.1", 0)
    port = old.getsockname()[1]
    new = bound(kind, "127.0.0.2", port)   # the same port at the address it moves to
    transport = open_transport(kind, "collector.lan", port, clock=clock,
                               on_connect=lambda: TEMPLATES)
    transport.names = resolver
    assert transport.address == ("127.0.0.1", port)
    if kind == "tcp":
        pump(transport, lambda: transport.stats()["connected"], clock)
    # the lookup is not due yet: nothing asked
    transport.tick(clock())
    assert transport._name_asked is None
    # due, but DNS fails: the address that worked stays
    points_to["collector.lan"] = None
    clock.now += NAME_REFRESH_SECONDS
    answered(transport, clock)
    assert transport.address == ("127.0.0.1", port) and transport.address_changes == 0
    # moved: the next lookup finds it, and exports go there, templates first
    points_to["collector.lan"] = "127.0.0.2"
    clock.now += NAME_REFRESH_SECONDS
    answered(transport, clock)
    assert transport.address == ("127.0.0.2", port) and transport.address_changes == 1
    if kind == "udp":
        assert transport.send(message(1), records=1)
        pump(transport, lambda: transport.stats()["messages_sent"] >= 2, clock)
        assert new.recv(100) == TEMPLATES and new.recv(100)[:2] == b"\x00\x01"
    else:
        # a working connection is kept; the next one goes to the new address
        assert transport.stats()["connected"]
        transport._broken("the test closed it")
        clock.now += 2   # the back-off
        assert transport.send(message(1), records=1)
        conn = None

        def connected():
            nonlocal conn
            try:
                conn, _ = new.accept()
                return True
            except socket.timeout:
                return False
        new.settimeout(0.01)
        pump(transport, lambda: conn is not None or connected(), clock)
        pump(transport, lambda: transport.stats()["records_sent"] >= 1, clock)
        assert split_messages(read_stream(conn, len(TEMPLATES) + 16)) == [0, 1]
        conn.close()
    transport.close()
    old.close()
    new.close()
