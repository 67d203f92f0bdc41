"""Collector names resolved off the loop.

getaddrinfo() blocks, for the resolver's whole timeout (seconds) when DNS is
down, and the loop must never wait on it: at a reload, names are resolved in
a worker thread and the reload goes on once the answers are in (the loop only
ever reads them).  At start, before anything is metered, names are resolved
directly.  Addresses are never looked up here: they need no resolver.
"""

import socket
import threading
import time

from flowprobe.addresses import is_ip_address

ANSWER_SECONDS = 300.0    # an answer older than this is asked again


def ascii_host(host):
    """An ASCII host as bytes for getaddrinfo, which would otherwise load
    the idna codec (with stringprep and unicodedata, some 0.3 MB the daemon
    keeps) to encode it to the same bytes; others stay str (idna needed)."""
    return host.encode() if isinstance(host, str) and host.isascii() else host


def is_address(host):
    return is_ip_address(host.split("%", 1)[0])


class Resolver:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._answers = {}        # (host, port, socktype) -> (when, addrinfo list or error)
        self._pending = set()
        self._lock = threading.Lock()
        self._queue = None        # with the worker, at the first name to resolve
        self._thread = None

    def now(self):
        return self._clock()

    def answer(self, host, port, socktype, newer_than=None):
        """The getaddrinfo() result, an OSError it raised, or None (not asked
        yet, too old, or from before newer_than: a time of now())."""
        with self._lock:
            found = self._answers.get((host, port, socktype))
        if found is None or self._clock() - found[0] > ANSWER_SECONDS:
            return None
        if newer_than is not None and found[0] < newer_than:
            return None
        return found[1]

    def request(self, host, port, socktype):
        key = (host, port, socktype)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
            if self._thread is None:
                import queue
                self._queue = queue.Queue()
                self._thread = threading.Thread(target=self._work, name="resolver", daemon=True)
                self._thread.start()
        self._queue.put(key)

    def busy(self):
        with self._lock:
            return bool(self._pending)

    def _work(self):
        while True:
            host, port, socktype = key = self._queue.get()
            try:
                found = socket.getaddrinfo(ascii_host(host), port, socket.AF_UNSPEC, socktype)
            except (OSError, UnicodeError) as e:
                found = e
            with self._lock:
                self._answers[key] = (self._clock(), found)
                self._pending.discard(key)
