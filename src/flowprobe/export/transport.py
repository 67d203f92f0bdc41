"""Transports: carry already-encoded export messages to one collector.

Encoders make bytes; a transport only moves them.  Everything here is
non-blocking and single-threaded, driven by the daemon's event loop:

    register fileno() for reading always, for writing while wants_write();
    call on_readable() / on_writable() when the poll says so;
    call tick(now) by next_timer() (reconnects, connect timeouts, pauses);
    look at fileno() again after every call: it changes when a TCP
    connection is made again (and is None while there is no socket).

A collector that is down, refusing or slow never stalls the caller: messages
wait in a bounded queue and whatever cannot be delivered is counted as not
sent, with its records.  "Sent" means handed to the kernel and not refused:
a TCP connection that breaks loses what sat in the kernel's buffer, and a
UDP datagram lost on the way is gone; neither protocol (RFC 7011 section 10)
acknowledges.  A UDP datagram that draws an ICMP error is not sent (see
UdpTransport).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections import deque

from flowprobe.export.resolver import ascii_host, is_address

# An established TCP connection to a collector that vanished without a RST
# would otherwise hold its unacknowledged data for the kernel's full
# retransmission time (~15 minutes), the queue overflowing all along.
TCP_STALL_SECONDS = 60.0
# ENOBUFS (a full device queue) is not a socket state the poll reports, so
# retrying at once would spin; wait this long instead.
NOBUFS_PAUSE_SECONDS = 0.05
# Gather at most this many queued messages into one sendmsg() (IOV_MAX is 1024).
GATHER_MESSAGES = 64
# Errors that say the collector, or the way to it, is not there (an ICMP
# error for an earlier datagram, or no route): nothing was sent.
UNREACHABLE = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                         errno.EHOSTDOWN, errno.ENETDOWN))
# Linux's IP_RECVERR / IPV6_RECVERR: without them a connected UDP socket
# reports only port unreachable; with them also a neighbour that does not
# answer (no ARP/ND reply on the local link) and host or network unreachable.
RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, 11), socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}
# How long a probe datagram to a collector that was down waits for an ICMP
# error before it counts as delivered: a LAN's round trip, many times over.
PROBE_WINDOW_SECONDS = 0.25
log = logging.getLogger("flowprobe")
# a collector given by name is looked up again this often (and at once
# after it failed): DNS may move it, and the probe follows without a restart
NAME_REFRESH_SECONDS = 300.0

_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE as an error, never SIGPIPE


class TransportError(ValueError):
    """A collector setting that cannot work (unresolvable name, bad port...)."""


class NotResolvedYet(TransportError):
    """The resolver has no answer for this name yet: ask it, and try again."""


class _Message:
    __slots__ = ("data", "records", "template")

    def __init__(self, data, records, template=False):
        self.data, self.records, self.template = data, records, template


def _endpoint_text(host, port, sockaddr):
    address = sockaddr[0]
    text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if host != address:
        text += f" ({address})"
    return text


def _resolve(host, port, socktype, source_address, resolver=None):
    """(family, collector sockaddr, local sockaddr) at construction; a name
    through the resolver's answer when there is one (the loop never waits
    on DNS), else by getaddrinfo (at start, before anything is metered)."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise TransportError(f"collector port: invalid value {port!r} (allowed: 1..65535)")
    try:
        if resolver is not None and not is_address(host):
            found = resolver.answer(host, port, socktype)
            if found is None:
                raise NotResolvedYet(f"collector {host!r} is being resolved")
            if isinstance(found, Exception):
                raise found
        else:
            found = socket.getaddrinfo(ascii_host(host), port, socket.AF_UNSPEC, socktype)
    except (socket.gaierror, UnicodeError) as e:
        raise TransportError(f"collector {host!r} does not resolve: {e}") from None
    except OSError as e:
        raise TransportError(f"collector {host!r} does not resolve: {e.strerror or e}") from None
    return _choose(host, found, socktype, source_address)


def _choose(host, found, socktype, source_address):
    """(family, collector sockaddr, local sockaddr) from getaddrinfo's answer."""
    found = [f for f in found if f[0] in (socket.AF_INET, socket.AF_INET6)]
    if not found:
        raise TransportError(f"collector {host!r} has no IPv4 or IPv6 address")
    if source_address is None:
        return found[0][0], found[0][4], None
    try:
        sources = socket.getaddrinfo(ascii_host(source_address), 0, socket.AF_UNSPEC, socktype, 0,
                                     socket.AI_PASSIVE | socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError) as e:
        raise TransportError(f"source address {source_address!r} is not an IP address: {e}") \
            from None
    for family, _, _, _, sockaddr in found:
        for source_family, _, _, _, source_sockaddr in sources:
            if source_family == family:
                return family, sockaddr, source_sockaddr
    raise TransportError(f"source address {source_address!r} and collector {host!r} "
                         "are not of the same address family")


class _Transport:
    """The queue, the counters and the timers shared by UDP and TCP."""

    _socktype = socket.SOCK_DGRAM
    _connecting = False
    on_connect = None

    def __init__(self, host: str, port: int, *, source_address: str | None = None,
                 queue_limit: int = 256, clock=time.monotonic, backoff_min: float = 1.0,
                 backoff_max: float = 60.0, send_buffer: int | None = None, spool=None,
                 resolver=None):
        if not isinstance(queue_limit, int) or queue_limit < 1:
            raise TransportError(f"queue_limit: invalid value {queue_limit!r} (allowed: >= 1)")
        if not 0 < backoff_min <= backoff_max:
            raise TransportError(f"backoff: invalid range {backoff_min!r}..{backoff_max!r} "
                                 "(allowed: 0 < min <= max)")
        self.host, self.port = host, port
        self.family, self.address, self.source = _resolve(host, port, self._socktype,
                                                          source_address, resolver)
        self.endpoint = _endpoint_text(host, port, self.address)
        self.queue_limit = queue_limit
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.send_buffer = send_buffer
        self.spool = spool          # export.spool.Spool: the queue's overflow, or None
        self._clock = clock
        self._queue = deque()
        self._offset = 0            # octets of the head message already written (TCP)
        self._templates = 0         # on_connect messages in the queue, outside queue_limit
        self._sock = None
        self._closed = False
        self._retry_at = None       # clock time of the next (re)open
        self._backoff = backoff_min
        self.messages_sent = self.records_sent = self.octets_sent = 0
        self.messages_not_sent = self.records_not_sent = 0
        self.errors = 0
        self.last_error = None
        self.last_error_time = None
        self.reconnects = 0         # attempts after the first
        self.connects = 0           # times a connection was established
        self.source_address = source_address
        self.names = None           # a Resolver: the name looked up again, off the loop
        self._name_check_at = clock() + NAME_REFRESH_SECONDS
        self._name_asked = None     # the resolver's time of a lookup in flight
        self.address_changes = 0

    # the event loop's side

    def fileno(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    def local_address(self) -> str | None:
        """The address this end sends from (the route to the collector
        chose it), or None while there is no socket."""
        try:
            return self._sock.getsockname()[0].partition("%")[0] if self._sock else None
        except OSError:
            return None

    def next_timer(self) -> float | None:
        """Clock time at which tick() has work, or None."""
        return self._retry_at

    def send(self, message: bytes, records: int = 0) -> bool:
        """Queue a message and write what the socket takes now.

        False when the queue is full or the transport closed: the message is
        then counted as not sent, with its records."""
        if self._closed:
            self._count_not_sent(1, records)
            return False
        # once messages wait in the spool, new ones queue behind them: order is kept
        if (self.spool is not None and len(self.spool)) or not self._has_room():
            if self.spool is not None:
                pushed = self.spool.push(bytes(message), records)
                self._count_not_sent(*self.spool.take_lost())
                if pushed:
                    return True
            self._count_not_sent(1, records)
            return False
        self._queue.append(_Message(bytes(message), records))
        if self._can_write():
            self._flush()
        return True

    def send_all(self, messages) -> None:
        """send() for each (message, records) of a list, in order."""
        for message, records in messages:
            self.send(message, records)

    def wants_write(self) -> bool:
        return self._connecting or (bool(self._queue) and self._can_write())

    def on_writable(self) -> None:
        if self._can_write():
            self._flush()

    def close(self) -> None:
        """Write what the socket takes now, count the rest as not sent, close.

        Never waits: what the kernel accepted still goes out after the close."""
        if self._closed:
            return
        if self._can_write():
            self._flush()
        for message in self._queue:
            self._count_not_sent(1, message.records)
        self._queue.clear()
        if self.spool is not None:
            self._count_not_sent(*self.spool.close())
        self._offset = self._templates = 0
        self._drop_socket()
        self._closed = True
        self._connecting = False
        self._retry_at = None

    def connected(self) -> bool:
        """stats()["connected"], without the rest of stats()."""
        return self._sock is not None and not self._connecting

    def stats(self) -> dict:
        return {
            "messages_sent": self.messages_sent,
            "records_sent": self.records_sent,
            "octets_sent": self.octets_sent,
            "messages_not_sent": self.messages_not_sent,
            "records_not_sent": self.records_not_sent,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
            "connected": self._sock is not None and not self._connecting,
            "reconnects": self.reconnects,
            "connects": self.connects,
            "address_changes": self.address_changes,
            "queued": len(self._queue),
            **(self.spool.stats() if self.spool is not None else {}),
        }

    # shared machinery

    def _can_write(self):
        return self._sock is not None and not self._connecting and self._retry_at is None

    def _has_room(self):
        return len(self._queue) - self._templates < self.queue_limit

    def _refill(self):
        """Moves spooled messages into the emptied queue; True if any moved."""
        moved = False
        while self.spool and self._has_room():
            popped = self.spool.pop()
            if popped is None:     # the spool's file failed: what it held is lost
                break
            self._queue.append(_Message(*popped))
            moved = True
        if self.spool is not None:
            self._count_not_sent(*self.spool.take_lost())
        return moved

    def _templates_first(self):
        """What on_connect() gives (the encoder's templates) goes ahead of
        every queued message, outside queue_limit."""
        first = self.on_connect() if self.on_connect is not None else None
        if isinstance(first, (bytes, bytearray, memoryview)):
            first = [first]
        for data in reversed(list(first or ())):
            if data:
                self._queue.appendleft(_Message(bytes(data), 0, template=True))
                self._templates += 1

    def _error(self, text):
        self.errors += 1
        self.last_error = text
        self.last_error_time = time.time()

    def _errno_text(self, err, doing):
        if err == errno.ECONNREFUSED:
            return f"connection refused by {self.endpoint}"
        if err == errno.ECONNRESET:
            return f"connection reset by {self.endpoint}"
        return f"{doing} {self.endpoint}: {os.strerror(err)}"

    def _count_sent(self, message):
        self.messages_sent += 1
        self.records_sent += message.records
        self.octets_sent += len(message.data)

    def _count_not_sent(self, messages, records):
        self.messages_not_sent += messages
        self.records_not_sent += records

    def _drop(self, message):
        self._count_not_sent(1, message.records)
        if message.template:
            self._templates -= 1

    def _new_socket(self):
        sock = socket.socket(self.family, self._socktype)
        try:
            sock.setblocking(False)
            if self.send_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
            if self.source is not None:
                sock.bind(self.source)
        except OSError:
            sock.close()
            raise
        return sock

    def _drop_socket(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _schedule_retry(self, now):
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max)
        self._name_check_at = min(self._name_check_at, now)   # moved, maybe: look again

    def _follow_name(self, now):
        """A collector given by name goes where the name points now: asked
        of the resolver thread every NAME_REFRESH_SECONDS (and after a
        failure), the answer taken on a later tick.  A lookup that fails
        keeps the address that worked."""
        if self.names is None or is_address(self.host):
            return
        if self._name_asked is None:
            if now >= self._name_check_at:
                self._name_asked = self.names.now()
                self.names.request(self.host, self.port, self._socktype)
            return
        found = self.names.answer(self.host, self.port, self._socktype,
                                  newer_than=self._name_asked)
        if found is None:
            return   # not answered yet
        self._name_asked = None
        self._name_check_at = now + NAME_REFRESH_SECONDS
        if isinstance(found, Exception):
            return
        try:
            family, address, source = _choose(self.host, found, self._socktype,
                                              self.source_address)
        except TransportError:
            return
        if any(f[4] == self.address for f in found if f[0] == self.family):
            return   # still among the answers: stay
        old, self.family, self.address, self.source = self.endpoint, family, address, source
        self.endpoint = _endpoint_text(self.host, self.port, address)
        self.address_changes += 1
        log.info("collector %s now resolves to %s: exports go there", old, self.endpoint)
        self._moved(now)

    def _moved(self, now):
        """The next (re)open goes to the new address."""


class UdpTransport(_Transport):
    """Datagrams over a connected UDP socket.

    A collector that is not there answers a datagram with an ICMP error
    (port or host unreachable), which the kernel reports as ECONNREFUSED or
    EHOSTUNREACH on the socket's next send or recv.  That datagram was not
    delivered: it moves from sent to not sent (the last one sent is the one
    the error names where the error comes back before the next send: on
    loopback and a LAN).  The collector is then down for a back-off period
    (1 s, doubling to 60 s): messages wait in the queue and, beyond it, in
    the spool if there is one, else are counted as not sent.  When the
    period ends the queue's head goes alone, as a probe, and is counted sent
    only if no error came back within PROBE_WINDOW_SECONDS; then the rest
    follows.  A collector back from being down may have restarted and
    lost the templates: on_connect() (as over TCP) gives them, and they are
    the probe, ahead of what waited.  A network that is unreachable (no
    route) is waited out the same way.  What UDP cannot tell: datagrams lost on the way, and those
    whose ICMP error never came (rate-limited, or filtered)."""

    def __init__(self, host: str, port: int, *, on_connect=None, **options):
        """options: those of every transport (_Transport)."""
        super().__init__(host, port, **options)
        self.on_connect = on_connect
        self._paused = False        # _retry_at is an ENOBUFS pause, not a reopen
        self._down = False          # _retry_at ends a period of the collector being down
        self._probing = False       # _retry_at ends a probe's wait for an ICMP error
        self._last_sent = None      # the datagram an ICMP error names
        self.messages_refused = self.records_refused = 0
        self._open(self._clock())

    def on_readable(self) -> None:
        # A collector sends nothing; reading collects pending errors, and the
        # error queue is emptied (else the poll would report it for ever).
        while self._sock is not None:
            try:
                self._sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in UNREACHABLE:
                    self._unreachable(e.errno)
                break
        for _ in range(64):
            if self._sock is None:
                return
            try:
                self._sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return

    def tick(self, now: float) -> None:
        if not self._closed:
            self._follow_name(now)
        if self._closed or self._retry_at is None or now < self._retry_at:
            return
        self._retry_at = None
        if self._paused:
            self._paused = False
        elif self._probing:
            self._probe_ended(now)
        elif self._down:
            self._probe(now)
        else:
            self.reconnects += 1
            self._open(now)
        if self._can_write():
            self._flush()

    def stats(self) -> dict:
        return dict(super().stats(), down=self._down, messages_refused=self.messages_refused,
                    records_refused=self.records_refused)

    def _open(self, now):
        try:
            sock = self._new_socket()
        except OSError as e:
            self._error(self._errno_text(e.errno, "cannot open a socket for"))
            self._schedule_retry(now)
            return
        try:
            level, option = RECVERR[self.family]
            sock.setsockopt(level, option, 1)
        except (KeyError, OSError):
            pass   # not Linux: port unreachable is still reported
        try:
            sock.connect(self.address)
        except OSError as e:
            sock.close()
            self._error(self._errno_text(e.errno, "cannot send to"))
            self._schedule_retry(now)
            return
        self._sock = sock
        self.connects += 1
        self._backoff = self.backoff_min

    def _moved(self, now):
        """A datagram socket has no session to keep: a new one to the new
        address now; what waits goes there, templates first (on_connect)."""
        self._drop_socket()
        self._down = self._probing = self._paused = False
        self._last_sent, self._retry_at = None, None
        self._open(now)
        if self._sock is not None and self.on_connect:
            self._templates_first()
        if self._can_write():
            self._flush()

    def _unreachable(self, err):
        """An ICMP error came back: the collector is down for a while."""
        self._error(self._errno_text(err, "sending to"))
        if self._probing:
            self._probing = False      # the probe is still the queue's head: not sent
        elif self._last_sent is not None:
            message, self._last_sent = self._last_sent, None
            self.messages_sent -= 1
            self.records_sent -= message.records
            self.octets_sent -= len(message.data)
            self.messages_refused += 1
            self.records_refused += message.records
            self._count_not_sent(1, message.records)
        self._down, self._paused = True, False
        self._schedule_retry(self._clock())

    def _probe(self, now):
        """The down period is over: the queue's head goes alone."""
        if not (self._queue or self._refill()):
            self._down = False          # nothing waits: the next message finds out
            return
        # the templates of an earlier probe are stale: new ones go first
        for message in [m for m in self._queue if m.template]:
            self._queue.remove(message)
            self._templates -= 1
        self._templates_first()
        try:
            self._sock.send(self._queue[0].data, _SEND_FLAGS)
        except BlockingIOError:
            self._retry_at = now + NOBUFS_PAUSE_SECONDS
            return
        except OSError as e:
            if e.errno in UNREACHABLE or e.errno == errno.ENOBUFS:
                self._unreachable(e.errno)
                return
            self._failed(e.errno)
            return
        self._probing = True
        self._retry_at = now + PROBE_WINDOW_SECONDS

    def _probe_ended(self, now):
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)   # and clears it
        self._probing = False
        if err in UNREACHABLE:
            self._unreachable(err)
            return
        message = self._queue.popleft()
        if message.template:
            self._templates -= 1
        self._count_sent(message)
        self._last_sent = message
        self._down = False
        self._backoff = self.backoff_min

    def _failed(self, err):
        """The socket itself failed (not the collector): a new one after the
        back-off; the message at hand waits in the queue."""
        self._error(self._errno_text(err, "cannot send to"))
        self._drop_socket()
        self._down = self._probing = False
        self._schedule_retry(self._clock())

    def send_all(self, messages) -> None:
        """send() for each (message, records) of a list, in order.  While
        nothing waits, the datagrams go straight into the socket, counted
        once for the list: a batch's messages cost a send() call each, no
        queue.  The first the socket does not take, and those after it, go
        send()'s way, its error dealt with as _flush() deals with it."""
        if self._queue or not self._can_write() or (self.spool is not None and len(self.spool)):
            super().send_all(messages)
            return
        send, done, records_sent, octets = self._sock.send, 0, 0, 0
        failed = None
        for message, records in messages:
            try:
                send(message, _SEND_FLAGS)
            except OSError as e:
                failed = e
                break
            done += 1
            records_sent += records
            octets += len(message)
        if done:
            self.messages_sent += done
            self.records_sent += records_sent
            self.octets_sent += octets
            self._last_sent = _Message(*messages[done - 1])   # the one an ICMP error names
        if failed is None:
            return
        self._queue.append(_Message(bytes(messages[done][0]), messages[done][1]))
        if self._send_failed(failed, self._queue[0]):
            self._flush()
        for message, records in messages[done + 1:]:
            self.send(message, records)

    def _flush(self):
        while self._queue or self._refill():
            message = self._queue[0]
            try:
                self._sock.send(message.data, _SEND_FLAGS)
            except OSError as e:
                if self._send_failed(e, message):
                    continue
                return
            self._queue.popleft()
            if message.template:
                self._templates -= 1
            self._count_sent(message)
            self._last_sent = message

    def _send_failed(self, e, message):
        """The socket did not take the queue's head (message): True when it
        was dropped and the next may go, False when the rest waits."""
        if isinstance(e, BlockingIOError):
            return False
        if e.errno in UNREACHABLE:
            self._unreachable(e.errno)   # an earlier datagram's error; this one waits
            return False
        if e.errno == errno.ENOBUFS:
            self._paused = True
            self._retry_at = self._clock() + NOBUFS_PAUSE_SECONDS
            return False
        if e.errno == errno.EMSGSIZE:
            self._queue.popleft()
            self._drop(message)
            self._error(f"message of {len(message.data)} octets too large "
                        f"for a datagram to {self.endpoint}")
            return True
        self._failed(e.errno)
        return False


class TcpTransport(_Transport):
    """A stream of messages over TCP, with reconnects.

    on_connect() is called each time a connection is established and returns
    the message(s) to send first: the encoder's templates (RFC 7011 section
    8.1 - a new connection knows no templates).  Queued messages follow."""

    _socktype = socket.SOCK_STREAM

    def __init__(self, host: str, port: int, *, on_connect=None,
                 connect_timeout: float = 10.0, **options):
        """options: those of every transport (_Transport)."""
        super().__init__(host, port, **options)
        self.on_connect = on_connect
        self.connect_timeout = connect_timeout
        self._connect(self._clock())

    def on_readable(self) -> None:
        if self._sock is None:
            return
        if self._connecting:
            self._finish_connect()
            return
        try:
            data = self._sock.recv(65536)  # a collector sends nothing; discard
        except BlockingIOError:
            return
        except OSError as e:
            self._broken(self._errno_text(e.errno, "connection lost to"))
            return
        if not data:
            self._broken(f"connection closed by {self.endpoint}")

    def on_writable(self) -> None:
        if self._connecting:
            self._finish_connect()
        super().on_writable()

    def tick(self, now: float) -> None:
        if not self._closed:
            self._follow_name(now)   # a working connection is kept; the next one goes there
        if self._closed or self._retry_at is None or now < self._retry_at:
            return
        if self._connecting:
            self._drop_socket()
            self._connecting = False
            self._retry_at = None
            self._error(f"connection to {self.endpoint} timed out "
                        f"after {self.connect_timeout:g} s")
            self._schedule_retry(now)
            return
        self._retry_at = None
        self.reconnects += 1
        self._connect(now)

    def _connect(self, now):
        try:
            sock = self._new_socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                                int(TCP_STALL_SECONDS * 1000))
        except OSError as e:
            self._error(self._errno_text(e.errno, "cannot open a socket for"))
            self._schedule_retry(now)
            return
        err = sock.connect_ex(self.address)
        self._sock = sock
        if err in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            self._connecting = True
            self._retry_at = now + self.connect_timeout
        elif err == 0:
            self._connected()
        else:
            self._connect_failed(err, now)

    def _finish_connect(self):
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err in (errno.EINPROGRESS, errno.EALREADY):
            return
        self._connecting = False
        self._retry_at = None
        if err:
            self._connect_failed(err, self._clock())
        else:
            self._connected()

    def _connect_failed(self, err, now):
        self._drop_socket()
        self._error(self._errno_text(err, "cannot connect to"))
        self._schedule_retry(now)

    def _connected(self):
        self._connecting = False
        self._retry_at = None
        self._backoff = self.backoff_min
        self.connects += 1
        self._templates_first()
        self._flush()

    def _broken(self, text):
        """Drop the socket, the partly written message and the old templates;
        try again after the backoff."""
        self._error(text)
        self._drop_socket()
        if self._offset:
            self._drop(self._queue.popleft())
            self._offset = 0
        # templates not yet written belong to the old connection; the next
        # one asks on_connect() again
        for message in [m for m in self._queue if m.template]:
            self._queue.remove(message)
            self._drop(message)
        self._schedule_retry(self._clock())

    def _flush(self):
        while (self._queue or self._refill()) and self._sock is not None:
            buffers = []
            for message in self._queue:
                view = memoryview(message.data)
                buffers.append(view[self._offset:] if not buffers else view)
                if len(buffers) == GATHER_MESSAGES:
                    break
            try:
                written = self._sock.sendmsg(buffers, (), _SEND_FLAGS)
            except BlockingIOError:
                return
            except OSError as e:
                self._broken(self._errno_text(e.errno, "connection lost to"))
                return
            full = written == sum(len(b) for b in buffers)
            while written:
                message = self._queue[0]
                left = len(message.data) - self._offset
                if written < left:
                    self._offset += written
                    break
                written -= left
                self._offset = 0
                self._queue.popleft()
                if message.template:
                    self._templates -= 1
                self._count_sent(message)
            if not full:
                return


def open_transport(kind: str, host, port, **kw):
    """A transport by its config name: "udp" or "tcp"."""
    kinds = {"udp": UdpTransport, "tcp": TcpTransport}
    try:
        cls = kinds[kind]
    except KeyError:
        raise TransportError(f"transport: invalid value {kind!r} "
                             f"(allowed: {' or '.join(kinds)})") from None
    return cls(host, port, **kw)
