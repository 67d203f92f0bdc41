"""The local control socket: newline-delimited JSON over a unix stream socket.

    request  {"method": "flows", "args": {"port": 443}}\\n
    reply    {"ok": true, "result": {...}}\\n   or   {"ok": false, "error": "..."}\\n

Served from the daemon's own selectors loop, in its one thread: every socket
is non-blocking, and no client can hold the loop or lock others out:

- a request costs bounded time and memory: at most MAX_REQUEST bytes, JSON
  nested at most MAX_DEPTH deep, and any failure is an error reply;
- requests are answered in serve(), a turn at a time, round-robin over the
  clients and within a time budget; a turn that overran it is followed by
  as long without control work, so capture always gets at least half;
- a client's next request waits until its previous reply has been taken,
  and a reply is written as the client reads it;
- deadlines, not idle timers: a client has REQUEST_SECONDS to send a whole
  request (from its connection, or its previous reply), and REPLY_SECONDS
  to take a reply; past them it is closed;
- at MAX_CLIENTS a new connection evicts the client that has waited longest
  without asking anything complete (else the slowest reader), after reading
  what the candidates have already sent; root's clients have MAX_CLIENTS
  slots of their own that no other user's connections can take, so root's
  `flowprobe status` always gets in; ubus does not go through here at all.

Access is the file's permissions (0600, root by default; 0660 with the
daemon's group); the directory (/var/run) is root's.
"""

import errno
import json
import logging
import os
import selectors
import socket
import stat
import struct
import time
from collections import deque

from flowprobe.control.handlers import ControlError

MAX_CLIENTS = 16               # for the members of the socket's group; as many again for root
ACCEPTS_PER_TURN = 16
LISTEN_BACKLOG = 64
MAX_REQUEST = 64 * 1024
MAX_DEPTH = 16                  # a request is an object of simple arguments
MAX_QUEUED_REQUESTS = 4         # pipelined requests read ahead, per client
REQUEST_SECONDS = 5.0
REPLY_SECONDS = 10.0
SERVE_BUDGET_SECONDS = 0.02     # control work per loop turn (at least one request)
RECEIVE_SIZE = 65536
REQUEST_KEYS = ("method", "args")

log = logging.getLogger("flowprobe.control")


def _encode(reply):
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _error(message):
    return _encode({"ok": False, "error": message})


def nesting_depth(text):
    """How deep brackets nest in a JSON text, strings skipped: checked before
    json.loads, whose recursion a deep enough text would exhaust."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _socket_in_use(path):
    """True when a live server answers at path; False for a stale file."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    finally:
        probe.close()


class ControlServer:
    def __init__(self, path, handlers, mode=0o600, gid=None, clock=time.monotonic):
        """mode 0o600: root only; with gid (the daemon's own group once it
        runs as a user) 0o660, so that group's members may ask too."""
        if gid is not None:
            mode |= 0o060
        self.path, self.handlers, self.mode = str(path), handlers, mode
        self.clock = clock
        self.clients = {}
        self.waiting = deque()     # clients with a request to answer, in turn
        self.resume_at = 0.0       # after a turn that overran its budget, control waits
        self.selector = None
        self.evicted = self.expired = self.internal_errors = 0
        self._claim_path()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # the socket is created with its final permissions (no window where
        # the umask's are in force); umask is per process, and this runs at
        # start-up, before any other thread creates files
        old_umask = os.umask(0o777 & ~mode)
        try:
            listener.bind(self.path)
        except OSError as e:
            listener.close()
            raise ControlError(f"cannot create the control socket {self.path}: "
                               f"{e.strerror}") from None
        finally:
            os.umask(old_umask)
        # the umask gave the mode at bind; the group is set on the name, never
        # through a link someone could have put there since (lchown)
        if gid is not None:
            try:
                os.chown(self.path, -1, gid, follow_symlinks=False)
                if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    raise OSError(errno.EEXIST, "replaced by something else")
            except OSError as e:
                listener.close()
                raise ControlError(f"cannot create the control socket {self.path}: "
                                   f"{e.strerror}") from None
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
        self.listener = listener

    def _claim_path(self):
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; not removing it")
        if _socket_in_use(self.path):
            raise ControlError(f"another flowprobe is running at {self.path}")
        os.unlink(self.path)  # stale: its daemon died without cleaning up

    # ---- the loop's side ----

    def attach(self, selector):
        """Registers the listening socket on the daemon's selector; the
        loop calls key.data(events) for every ready key."""
        self.selector = selector
        selector.register(self.listener, selectors.EVENT_READ, self._accept)

    def close(self):
        for client in list(self.clients.values()):
            client.close()
        if self.selector is not None:
            try:
                self.selector.unregister(self.listener)
            except (KeyError, ValueError):
                pass
        self.listener.close()
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except PermissionError:
            # no longer root, in a root-owned directory: the next start
            # finds the socket stale and replaces it
            log.debug("control socket %s left for the next start to replace", self.path)

    def wake_at(self):
        """When serve() has work: None while no request can be answered."""
        if not any(client.can_serve() for client in self.waiting):
            return None
        return self.resume_at

    def busy(self):
        wake = self.wake_at()
        return wake is not None and wake <= self.clock()

    def serve(self, budget_s=SERVE_BUDGET_SECONDS):
        """Answers waiting requests, one per client in turn, until budget_s
        is spent (at least one request)."""
        started = self.clock()
        if started < self.resume_at:
            return
        deadline = started + budget_s
        for _ in range(len(self.waiting)):
            client = self.waiting.popleft()
            if client.connection is None:
                continue
            if not client.can_serve():
                self.waiting.append(client)   # its turn comes when it has read
                continue
            client.serve_one()
            if client.connection is not None and client.requests:
                self.waiting.append(client)
            if self.clock() >= deadline:
                break
        spent = self.clock() - started
        if spent > budget_s:
            self.resume_at = self.clock() + spent

    def expire(self):
        """Closes the clients past a deadline (called every tick)."""
        now = self.clock()
        for client in list(self.clients.values()):
            if client.overdue(now):
                self.expired += 1
                client.close()

    def stats(self):
        return {"clients": len(self.clients), "evicted": self.evicted, "expired": self.expired,
                "internal_errors": self.internal_errors}

    def pending_replies(self):
        return sum(len(client.outgoing) for client in self.clients.values())

    def _peer_is_root(self, connection):
        try:
            credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                struct.calcsize("3i"))
        except OSError:
            return False
        return struct.unpack("3i", credentials)[1] == 0

    def _accept(self, _events):
        # a bounded number a turn: a flood of connections costs the loop no
        # more than that before capture gets its turn again
        for _ in range(ACCEPTS_PER_TURN):
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: try again next readiness
                log.warning("control socket: accept failed: %s", e.strerror)
                return
            connection.setblocking(False)
            root = self._peer_is_root(connection)
            self._make_room(root)
            client = _Client(self, connection, root)
            self.clients[connection.fileno()] = client
            self.selector.register(connection, selectors.EVENT_READ, client.ready)

    def _make_room(self, root):
        """Room for a newcomer among its peers (root's, or the others'): what
        the peers have already sent is read first (a request may be waiting
        there, or a hang-up); then the one that has waited longest without a
        complete request goes, else the one whose reply has waited longest."""
        peers = [c for c in self.clients.values() if c.root == root]
        if len(peers) < MAX_CLIENTS:
            return
        for client in peers:
            if client.reading and client.has_input():
                client.ready(selectors.EVENT_READ)
        peers = [c for c in peers if c.connection is not None]
        if len(peers) < MAX_CLIENTS:
            return
        asking = [c for c in peers if not c.requests and not c.outgoing]
        victim = min(asking or peers, key=lambda c: c.since)
        self.evicted += 1
        victim.close()

    def _dispatch(self, line):
        """One request line to one reply; never raises."""
        try:
            return self._answer(line)
        except Exception as e:  # a bug must not take the daemon down with it
            self.internal_errors += 1
            log.exception("control request failed")
            return _error(f"internal error: {type(e).__name__}")

    def _answer(self, line):
        try:
            text = bytes(line).decode("utf-8")
        except UnicodeDecodeError as e:
            return _error(f"request is not UTF-8: {e}")
        if nesting_depth(text) > MAX_DEPTH:
            return _error(f"request nested deeper than {MAX_DEPTH} levels")
        try:
            request = json.loads(text)
        except ValueError as e:
            return _error(f"request is not JSON: {e}")
        if not isinstance(request, dict):
            return _error("request must be a JSON object with \"method\" and \"args\"")
        unknown = sorted(set(request) - set(REQUEST_KEYS))
        if unknown:
            return _error(f"request: unknown key {', '.join(map(repr, unknown))} "
                          f"(allowed: method, args)")
        method = request.get("method")
        if not isinstance(method, str):
            return _error("request: \"method\" must be a string")
        try:
            result = self.handlers.call(method, request.get("args"))
        except ControlError as e:
            return _error(str(e))
        except Exception as e:  # a bug in a method: its caller is told, the loop goes on
            self.internal_errors += 1
            log.exception("control method %s failed", method)
            return _error(f"{method} failed: {type(e).__name__}: {e}")
        return _encode({"ok": True, "result": result})


class _Client:
    """One connection: requests in (one per line), replies out, in order."""

    def __init__(self, server, connection, root=False):
        self.server, self.connection = server, connection
        self.root = root            # root's clients have slots of their own
        self.fd = connection.fileno()
        self.incoming = b""
        self.requests = deque()     # (line, None) to answer, or (None, a ready error reply)
        self.events = selectors.EVENT_READ   # as registered; 0: not registered
        self.outgoing = bytearray()
        self.reading = True         # until EOF or an oversize request
        self.since = server.clock()  # start of the current deadline

    def overdue(self, now):
        if self.outgoing:
            return now - self.since > REPLY_SECONDS
        if self.requests or not self.reading:
            return False            # waiting for its turn, not for the client
        return now - self.since > REQUEST_SECONDS

    def can_serve(self):
        return self.connection is not None and bool(self.requests) and not self.outgoing

    def serve_one(self):
        line, reply = self.requests.popleft()
        self.outgoing += reply if reply is not None else self.server._dispatch(line)
        self.since = self.server.clock()   # the reply's deadline starts
        self._write()
        if self.connection is not None:
            self._update()

    def ready(self, events):
        if self.connection is None:  # closed earlier in the same batch of events
            return
        if events & selectors.EVENT_READ and self.reading:
            self._read()
        if self.connection is not None and events & selectors.EVENT_WRITE:
            self._write()
        if self.connection is not None:
            self._update()

    def _read(self):
        try:
            data = self.connection.recv(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:  # EOF: a last request may come without its newline
            self.reading = False
            if self.incoming.strip():
                self._queue(self.incoming)
            self.incoming = b""
            return
        self.incoming += data
        while self.reading and b"\n" in self.incoming:
            line, self.incoming = self.incoming.split(b"\n", 1)
            if line.strip():
                self._queue(line)
        if self.reading and len(self.incoming) > MAX_REQUEST:
            self._refuse(f"request larger than {MAX_REQUEST} bytes")

    def _queue(self, line):
        if len(line) > MAX_REQUEST:
            self._refuse(f"request larger than {MAX_REQUEST} bytes")
            return
        self._add((line, None))

    def _add(self, request):
        self.requests.append(request)
        if self not in self.server.waiting:
            self.server.waiting.append(self)

    def _refuse(self, message):
        """The rest of the stream cannot be framed: answer what came before,
        then this error, then close."""
        self.reading = False
        self.incoming = b""
        self._add((None, _error(message)))

    def _write(self):
        while self.outgoing:
            try:
                sent = self.connection.send(self.outgoing)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            del self.outgoing[:sent]
        self.since = self.server.clock()   # the next request's deadline starts

    def _update(self):
        if not self.reading and not self.outgoing and not self.requests:
            self.close()  # all answered; nothing more will be read
            return
        # read ahead a few requests only: the rest waits in the kernel's buffer
        reading = self.reading and len(self.requests) < MAX_QUEUED_REQUESTS
        events = (selectors.EVENT_READ if reading else 0) | (
            selectors.EVENT_WRITE if self.outgoing else 0)
        if events == self.events:
            return
        selector = self.server.selector
        if not events:      # waiting for its turn: nothing to watch (a hang-up shows later)
            selector.unregister(self.connection)
        elif not self.events:
            selector.register(self.connection, events, self.ready)
        else:
            selector.modify(self.connection, events, self.ready)
        self.events = events

    def has_input(self):
        """Bytes, or a hang-up, wait to be read."""
        try:
            self.connection.recv(1, socket.MSG_PEEK)
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def close(self):
        if self.connection is None:
            return
        if self.events:
            try:
                self.server.selector.unregister(self.connection)
            except (KeyError, ValueError):
                pass
        self.connection.close()
        self.connection = None
        self.server.clients.pop(self.fd, None)
