"""The sinks stage (service/sinks.py): where records go, and what a reload
does to the collectors it removes."""

import socket
import time

from flowprobe.export.collectors import Exporter, profile_from_url, pump
from flowprobe.service import sinks as sinks_module
from flowprobe.service.sinks import Sinks


def stalled_collector():
    """A TCP collector that accepts (the kernel does) and never reads."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    return server


def test_a_collector_a_reload_removes_leaves_from_the_loop_without_blocking_it():
    """Before, the switch waited up to 5 s for a removed collector's queue
    (a stalled one: the whole 5 s, the loop stopped); now the collector goes
    on delivering from the loop until its deadline, then what still waits is
    counted as not sent."""
    server = stalled_collector()
    port = server.getsockname()[1]
    now_ms = int(time.time() * 1000)
    sinks = Sinks({}, lambda profiles: profiles)
    profile = profile_from_url(f"ipfix://127.0.0.1:{port}?transport=tcp&queue=8")
    sinks.exporter = Exporter([profile], boot_ms=now_ms)
    sinks.start(now_ms)
    collector = sinks.exporter.collectors[0]
    pump([collector], 1.0)
    assert collector.transport.stats()["connected"]
    for _ in range(64):   # more than the socket buffers take: it waits in the queue
        collector.transport.send(b"\0" * 60000, records=10)
        pump([collector], 0.0)
    assert collector.transport.wants_write()

    sinks.switch(None, now_ms, 0)     # the reload removed it: returns at once
    assert [c for c, _ in sinks.leaving] == [collector]
    assert collector.transport.fileno() in [fd for fd, _, _ in sinks.watched()]
    assert [c.get("leaving") for c in sinks.stats()] == [True]   # status shows it
    sinks.tick(now_ms, 0)             # still leaving: its deadline is LEAVE_S away
    assert sinks.leaving and not collector.transport._closed

    sinks.leaving = [(collector, time.monotonic())]   # the deadline passed
    sinks.tick(now_ms, 0)
    assert sinks.leaving == [] and collector.transport._closed
    stats = collector.stats()
    assert stats["records_not_sent"] > 0 and stats["queued"] == 0
    assert sinks_module.LEAVE_S == 5.0   # what the README promises
    server.close()
