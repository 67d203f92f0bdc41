"""The local control socket: newline-delimited JSON over a unix stream socket.

    request  {"method": "flows", "args": {"port": 443}}\\n
    reply    {"ok": true, "result": {...}}\\n   or   {"ok": false, "error": "..."}\\n

Served from the daemon's own selectors loop, in its one thread: every socket
is non-blocking, a client's input and output are bounded, and a slow or silent
client costs a slot, never the loop.  Access is the file's permissions (0600,
root by default); the directory (/var/run) is root's.
"""

import json
import logging
import os
import selectors
import socket
import stat
import time

from flowprobe.control.handlers import ControlError

MAX_CLIENTS = 16
MAX_REQUEST = 64 * 1024
MAX_PENDING_REPLY = 16 * 1024 * 1024  # a `flows` reply of 10 000 flows is about 5 MB
IDLE_SECONDS = 10.0  # a full house evicts clients silent this long
MAX_REPLY = 64 * 1024 * 1024  # what the client accepts
RECEIVE_SIZE = 65536
REQUEST_KEYS = ("method", "args")

log = logging.getLogger("flowprobe.control")


def _encode(reply):
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _error(message):
    return _encode({"ok": False, "error": message})


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
    def __init__(self, path, handlers, mode=0o600, gid=None):
        """mode 0o600: root only; with gid (the daemon's own group once it
        runs as a user) 0o660, so that group's members may ask too."""
        if gid is not None:
            mode |= 0o060
        self.path, self.handlers, self.mode = str(path), handlers, mode
        self.clients = {}
        self.selector = None
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
        os.chmod(self.path, mode)
        if gid is not None:
            os.chown(self.path, -1, gid)
        listener.listen(MAX_CLIENTS)
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

    def _accept(self, _events):
        while True:
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: try again next readiness
                log.warning("control socket: accept failed: %s", e.strerror)
                return
            connection.setblocking(False)
            if len(self.clients) >= MAX_CLIENTS and not self._make_room():
                try:
                    connection.send(_error(f"too many clients (at most {MAX_CLIENTS})"))
                except OSError:
                    pass
                connection.close()
                continue
            client = _Client(self, connection)
            self.clients[connection.fileno()] = client
            self.selector.register(connection, selectors.EVENT_READ, client.ready)

    def _make_room(self):
        """At capacity: first the clients already gone (their EOF may not
        have been read yet, when the accept comes first in a batch), then the
        longest silent one if it has been silent long enough."""
        for client in list(self.clients.values()):
            if client.reading and client.hung_up():
                client.ready(selectors.EVENT_READ)
        if len(self.clients) < MAX_CLIENTS:
            return True
        oldest = min(self.clients.values(), key=lambda c: c.last_active)
        if time.monotonic() - oldest.last_active < IDLE_SECONDS:
            return False
        oldest.close()
        return True

    def _dispatch(self, line):
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
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
        except Exception as e:  # a bug must not take the daemon down with it
            log.exception("control method %s failed", method)
            return _error(f"{method} failed: {type(e).__name__}: {e}")
        return _encode({"ok": True, "result": result})


class _Client:
    """One connection: requests in (one per line), replies out, in order."""

    def __init__(self, server, connection):
        self.server, self.connection = server, connection
        self.fd = connection.fileno()
        self.incoming = b""
        self.outgoing = bytearray()
        self.reading = True  # until EOF or an oversize request
        self.last_active = time.monotonic()

    def ready(self, events):
        if self.connection is None:  # closed earlier in the same batch of events
            return
        self.last_active = time.monotonic()
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
                self._answer(self.incoming)
            self.incoming = b""
            return
        self.incoming += data
        while self.reading and b"\n" in self.incoming:
            line, self.incoming = self.incoming.split(b"\n", 1)
            if line.strip():
                self._answer(line)
        if len(self.incoming) > MAX_REQUEST:
            self.reading = False  # the rest of the stream cannot be framed
            self.incoming = b""
            self.outgoing += _error(f"request larger than {MAX_REQUEST} bytes")
        self._write()

    def hung_up(self):
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def _answer(self, line):
        if len(line) > MAX_REQUEST:
            self.reading = False
            self.outgoing += _error(f"request larger than {MAX_REQUEST} bytes")
            return
        self.outgoing += self.server._dispatch(line)

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

    def _update(self):
        if not self.reading and not self.outgoing:
            self.close()  # all answered; nothing more will be read
            return
        # a client that does not read its replies is not read either, until
        # it has taken most of them: its backlog stays bounded
        backlogged = len(self.outgoing) > MAX_PENDING_REPLY
        events = (selectors.EVENT_READ if self.reading and not backlogged else 0) | (
            selectors.EVENT_WRITE if self.outgoing else 0)
        self.server.selector.modify(self.connection, events, self.ready)

    def close(self):
        if self.connection is None:
            return
        try:
            self.server.selector.unregister(self.connection)
        except (KeyError, ValueError):
            pass
        self.connection.close()
        self.connection = None
        self.server.clients.pop(self.fd, None)


def call(path, method, args=None, timeout=5.0):
    """One request to a running flowprobe; its result, or ControlError with
    the server's message (or why it could not be asked)."""
    path = str(path)
    request = {"method": method}
    if args:
        request["args"] = args
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        try:
            connection.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"flowprobe is not running (no control socket at {path})") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path} (the control socket is "
                               f"root's: run as root)") from None
        except socket.timeout:
            raise ControlError(f"flowprobe at {path} did not answer within "
                               f"{timeout:g} s") from None
        except OSError as e:
            raise ControlError(f"cannot connect to {path}: {e.strerror}") from None
        reply = bytearray()
        try:
            try:
                connection.sendall(_encode(request))
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused (too many clients, too large): its reason may still be there
            while b"\n" not in reply:
                connection.settimeout(max(0.001, deadline - time.monotonic()))
                data = connection.recv(RECEIVE_SIZE)
                if not data:
                    break
                reply += data
                if len(reply) > MAX_REPLY:
                    raise ControlError(f"reply from {path} larger than {MAX_REPLY} bytes")
        except socket.timeout:
            raise ControlError(f"flowprobe at {path} did not answer within "
                               f"{timeout:g} s") from None
        except ConnectionResetError:
            pass
        except OSError as e:
            raise ControlError(f"control socket {path}: {e.strerror}") from None
    line = bytes(reply).split(b"\n", 1)[0]
    if not line:
        raise ControlError(f"flowprobe at {path} closed the connection without a reply")
    try:
        decoded = json.loads(line)
        ok = decoded["ok"]
    except (ValueError, KeyError, TypeError):
        raise ControlError(f"flowprobe at {path} sent a malformed reply") from None
    if not ok:
        raise ControlError(str(decoded.get("error", "unknown error")))
    return decoded.get("result", {})
