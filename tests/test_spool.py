"""The spool: a collector's queue overflow on disk, within a budget, replayed
in order when the collector is back (real TCP and UDP sockets on loopback)."""

import errno
import os
import socket

import pytest

from flowprobe.export.spool import ENTRY, Spool
from flowprobe.export.transport import TcpTransport, UdpTransport
from test_transport import (
    TEMPLATES,
    FakeClock,
    message,
    pump,
    read_stream,
    split_messages,
    tcp_server,
)

QUEUE = 4


def test_messages_come_back_in_order_and_the_file_starts_over(tmp_path):
    spool = Spool(tmp_path / "c.spool", budget_bytes=10_000)
    for number in range(1, 6):
        assert spool.push(message(number), records=number)
    assert (len(spool), spool.records, spool.octets) == (5, 15, 5 * (ENTRY.size + 16))
    assert [split_messages(spool.pop()[0]) for _ in range(2)] == [[1], [2]]
    assert spool.push(message(6), records=6)
    assert [split_messages(spool.pop()[0]) for _ in range(4)] == [[3], [4], [5], [6]]
    assert spool.pop() is None
    assert os.path.getsize(tmp_path / "c.spool") == 0   # emptied: the file starts over
    assert spool.stats()["records_spooled"] == 21


def test_the_budget_is_kept_and_close_says_what_was_left(tmp_path):
    spool = Spool(tmp_path / "c.spool", budget_bytes=3 * (ENTRY.size + 16))
    assert [spool.push(message(n), records=2) for n in range(5)] == [True] * 3 + [False] * 2
    assert os.path.getsize(tmp_path / "c.spool") <= spool.budget
    assert spool.close() == (3, 6)
    assert not (tmp_path / "c.spool").exists()


def test_an_earlier_runs_spool_is_not_replayed(tmp_path):
    (tmp_path / "c.spool").write_bytes(ENTRY.pack(16, 1) + message(9))
    assert Spool(tmp_path / "c.spool", 1000).pop() is None


@pytest.mark.parametrize("spooled", [True, False], ids=["with spool", "queue only"])
def test_a_tcp_collector_down_then_back(tmp_path, spooled):
    """Twenty messages while the collector refuses connections: with a
    spool all arrive in order after it is back; without, the queue's four
    do and sixteen are counted as not sent."""
    clock = FakeClock()
    server = tcp_server("127.0.0.1")   # bound, not listening: refused
    port = server.getsockname()[1]
    spool = Spool(tmp_path / "c.spool", 1 << 20) if spooled else None
    transport = TcpTransport("127.0.0.1", port, clock=clock, on_connect=lambda: TEMPLATES,
                             queue_limit=QUEUE, spool=spool)
    pump(transport, lambda: transport.stats()["errors"] == 1, clock)
    sent = [transport.send(message(n), records=1) for n in range(1, 21)]
    stats = transport.stats()
    server.listen()
    clock.now = transport.next_timer()
    pump(transport, lambda: transport.stats()["queued"] == 0
         and not transport.stats().get("spooled_messages"), clock)
    conn, _ = server.accept()
    delivered = 20 if spooled else QUEUE
    got = split_messages(read_stream(conn, 8 + delivered * 16))
    final = transport.stats()
    transport.close()
    conn.close()
    server.close()
    if spooled:
        assert sent == [True] * 20 and stats["spooled_messages"] == 20 - QUEUE
        assert got == [0] + list(range(1, 21))   # the templates, then every message in order
        assert final["records_sent"] == 20 and final["records_not_sent"] == 0
        assert final["spool_octets"] == 0
    else:
        assert sent == [True] * QUEUE + [False] * (20 - QUEUE)
        assert got == [0, 1, 2, 3, 4]
        assert final["records_sent"] == QUEUE and final["records_not_sent"] == 20 - QUEUE


def test_new_messages_queue_behind_the_spool(tmp_path):
    """While the spool still holds older messages, a new one must not
    overtake them even if the memory queue has room."""
    clock = FakeClock()
    server = tcp_server("127.0.0.1")
    port = server.getsockname()[1]
    transport = TcpTransport("127.0.0.1", port, clock=clock, on_connect=lambda: TEMPLATES,
                             queue_limit=2, spool=Spool(tmp_path / "c.spool", 1 << 20))
    pump(transport, lambda: transport.stats()["errors"] == 1, clock)
    for n in range(1, 6):
        transport.send(message(n), records=1)
    transport._queue.popleft()   # as if the head had been written: room in the queue
    transport._queue.popleft()
    transport.send(message(6), records=1)
    server.listen()
    clock.now = transport.next_timer()
    pump(transport, lambda: transport.stats()["queued"] == 0
         and not transport.stats()["spooled_messages"], clock)
    conn, _ = server.accept()
    assert split_messages(read_stream(conn, 8 + 4 * 16)) == [0, 3, 4, 5, 6]
    transport.close()
    conn.close()
    server.close()


def test_udp_without_a_route_spools_until_the_route_is_back(tmp_path):
    """ENETUNREACH (the uplink is down) keeps messages; they go once it is back.

    The unreachable network is a stand-in socket (UnreachableStandIn) that
    fails as one without a route does: taking the route away for real needs
    the test's own network namespace around the transport."""
    clock = FakeClock()
    receiver_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver_socket.bind(("127.0.0.1", 0))
    receiver_socket.settimeout(2)
    transport = UdpTransport("127.0.0.1", receiver_socket.getsockname()[1], clock=clock,
                             queue_limit=QUEUE, spool=Spool(tmp_path / "u.spool", 1 << 20))
    real_socket = transport._sock

    class UnreachableStandIn:
        def fileno(self):
            return real_socket.fileno()

        def send(self, data, flags=0):
            raise OSError(101, "Network is unreachable")

        def close(self):
            pass

    transport._sock = UnreachableStandIn()
    for n in range(1, 11):
        assert transport.send(message(n), records=1)
    assert transport.stats()["spooled_messages"] >= 10 - QUEUE - 1
    assert transport.stats()["down"]
    transport._sock = real_socket        # the route is back
    for _ in range(2):                   # the back-off ends; then the probe's window
        clock.now = transport.next_timer()
        transport.tick(clock.now)
    pump(transport, lambda: transport.stats()["queued"] == 0
         and not transport.stats()["spooled_messages"], clock)
    got = [split_messages(receiver_socket.recv(100))[0] for _ in range(10)]
    stats = transport.stats()
    transport.close()
    real_socket.close()
    receiver_socket.close()
    # nothing was sent while the network was unreachable: all arrive, in order
    assert got == list(range(1, 11))
    assert stats["records_sent"] == 10 and stats["records_not_sent"] == 0


def test_what_was_replayed_makes_room_for_new_messages(tmp_path):
    """A collector back from an outage: the replay and the messages that
    keep coming share the budget; replayed ones no longer take room."""
    entry = ENTRY.size + 16
    spool = Spool(tmp_path / "c.spool", budget_bytes=4 * entry)
    assert all(spool.push(message(n), records=1) for n in range(1, 5))
    assert not spool.push(message(5), records=1)          # full
    assert [split_messages(spool.pop()[0]) for _ in range(2)] == [[1], [2]]
    assert spool.push(message(6), records=1) and spool.push(message(7), records=1)
    assert os.path.getsize(tmp_path / "c.spool") <= spool.budget
    assert [split_messages(spool.pop()[0]) for _ in range(4)] == [[3], [4], [6], [7]]


def test_a_planted_link_is_never_followed(tmp_path):
    """The spool directory is the daemon user's and the file is created by
    root: a link the user planted at the coming name must not make root
    truncate or write what it points to."""
    target = tmp_path / "secret"
    target.write_bytes(b"x" * 1900)
    os.chmod(target, 0o600)
    planted = tmp_path / "c.1234.1.spool"
    planted.symlink_to(target)
    spool = Spool(planted, 1 << 16)
    assert spool.push(message(1), records=1)
    assert target.read_bytes() == b"x" * 1900
    assert not planted.is_symlink() and planted.stat().st_size > 0
    spool.close()


def failing_disk(spool, error, monkeypatch):
    """The spool's disk fails from now on (EIO, ENOSPC); undo() lets it work again."""
    def fail(*args):
        raise OSError(error, os.strerror(error))
    for name in ("_pwrite", "_pread", "_truncate"):
        monkeypatch.setattr(spool, name, fail)
    return lambda: [monkeypatch.delattr(spool, name) for name in ("_pwrite", "_pread",
                                                                   "_truncate")]


@pytest.mark.parametrize("error", [errno.EIO, errno.ENOSPC])
def test_a_failing_spool_file_counts_what_it_held_and_never_raises(tmp_path, error,
                                                                    monkeypatch):
    spool = Spool(tmp_path / "c.spool", 1 << 16)
    assert all(spool.push(message(n), records=2) for n in range(3))
    recover = failing_disk(spool, error, monkeypatch)
    assert not spool.push(message(4), records=2)      # counted by the caller
    assert spool.pop() is None                         # the file failed: 3 messages lost
    assert spool.take_lost() == (3, 6) and spool.stats()["spool_errors"] == 1
    assert os.strerror(error) in spool.stats()["spool_last_error"]
    recover()                                          # the disk recovers: it works again
    assert spool.push(message(5), records=1)
    assert split_messages(spool.pop()[0]) == [5]
    spool.close()


def test_a_full_spool_filesystem_while_replaying_loses_no_count(tmp_path, monkeypatch):
    """The collector returns while the spool's disk fails: the transport
    counts what the spool lost as not sent, delivers the rest, and raises
    nothing."""
    clock = FakeClock()
    server = tcp_server("127.0.0.1")
    transport = TcpTransport("127.0.0.1", server.getsockname()[1], clock=clock,
                             queue_limit=QUEUE, spool=Spool(tmp_path / "t.spool", 1 << 20))
    pump(transport, lambda: transport.stats()["errors"] == 1, clock)
    for n in range(1, 11):
        transport.send(message(n), records=1)
    spooled = transport.stats()["spooled_records"]
    assert spooled > 0
    failing_disk(transport.spool, errno.ENOSPC, monkeypatch)
    server.listen()
    clock.now = transport.next_timer()
    pump(transport, lambda: transport.stats()["queued"] == 0, clock)
    conn, _ = server.accept()
    stats = transport.stats()
    assert stats["records_not_sent"] >= spooled
    assert stats["records_sent"] + stats["records_not_sent"] == 10
    transport.close()
    conn.close()
    server.close()


def test_a_write_that_fails_on_a_full_disk_keeps_what_the_spool_already_held(tmp_path):
    """A real full filesystem (a 16 KB tmpfs): the write that does not fit
    fails alone; what is in the file is still replayed, every message
    (before: the buffered failed write failed again at the next read and
    the whole spool was thrown away)."""
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], check=True)
    try:
        spool = Spool(mount / "c.1.1.spool", 1 << 20)
        pushed = 0
        while spool.push(message(pushed, 1000), records=1):
            pushed += 1
        assert spool.stats()["spool_write_errors"] == 1 and pushed > 0
        replayed = [split_messages(spool.pop()[0])[0] for _ in range(pushed)]
        assert replayed == list(range(pushed)) and spool.take_lost() == (0, 0)
        spool.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
