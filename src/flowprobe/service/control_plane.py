"""How a user reaches the running daemon: the control socket (the CLI) and
the ubus object (the shell, LuCI), both served from the loop.

python-ubus offers no descriptor to wait on, so the one its connection
opened (a new Unix socket whose peer is ubusd's) is found among the
process's descriptors after each connect, and watched in the loop's
selector: the loop wakes when ubusd writes, not ten times a second.  When
it cannot be found (an unusual libubus), ubus is polled every POLL_S."""

import logging
import os
import selectors
import socket
import time

from flowprobe.control.handlers import ControlError
from flowprobe.control.server import ControlServer

log = logging.getLogger("flowprobe")

CHECK_S = 5.0    # a lost ubus connection is tried again this often
POLL_S = 0.1     # without a descriptor to watch


class ControlPlane:
    def __init__(self, handlers, socket_path, selector):
        self.handlers, self.socket_path, self.selector = handlers, socket_path, selector
        self.server = self.ubus = None
        self.ubus_fds = ()          # watched in the selector; () while unknown or disconnected
        self.check_at = 0.0

    def start(self, gid=None, ubus=True):
        """The control socket (ControlError names what failed), then ubus
        if wanted and installed (without it the socket still serves)."""
        self.server = ControlServer(self.socket_path, self.handlers, gid=gid)
        self.server.attach(self.selector)
        if ubus:
            self._connect_ubus()

    def _connect_ubus(self):
        before = _sockets()
        try:
            from flowprobe.control.ubus import UbusObject
            self.ubus = UbusObject(self.handlers)
        except ControlError as e:
            log.info("running without ubus: %s", e)
            return
        self._watch(_new_ubus_sockets(before))
        if self.ubus.connected:   # else it is published once ubusd answers (ubus.py)
            log.info("ubus object flowprobe registered (%s)", self._how_served())

    def _how_served(self):
        if self.ubus_fds:
            return f"its socket watched: descriptor {', '.join(map(str, self.ubus_fds))}"
        return f"polled every {POLL_S:g} s: its socket was not found"

    def _watch(self, fds):
        for fd in self.ubus_fds:
            self.selector.unregister(fd)   # a closed one too: the selector forgets it
        self.ubus_fds = tuple(sorted(fds)) if self.ubus_connected else ()
        for fd in self.ubus_fds:
            self.selector.register(fd, selectors.EVENT_READ, lambda events: self.ubus.poll())

    @property
    def ubus_connected(self):
        return bool(self.ubus and self.ubus.connected)

    def wake_at(self):
        """The monotonic time the loop must wake by for the control (None: no need)."""
        wake = self.server.wake_at()
        if self.ubus_connected and not self.ubus_fds:
            poll = time.monotonic() + POLL_S
            wake = poll if wake is None else min(wake, poll)
        return wake

    def serve(self, guarded):
        """After each turn (capture had its share first)."""
        guarded(self.server.serve)
        if self.ubus_connected and not self.ubus_fds:
            guarded(self.ubus.poll)

    def tick(self):
        self.server.expire()
        if self.ubus and time.monotonic() >= self.check_at:
            self.check_at = time.monotonic() + CHECK_S
            before = _sockets()
            connected = self.ubus.check()
            new = _new_ubus_sockets(before)
            if new or not connected:   # lost, or published again on a new connection
                self._watch(new)
                if connected:
                    log.info("ubus: %s", self._how_served())

    def stats(self):
        return self.server.stats() if self.server else None

    def close(self):
        if self.server:
            self.server.close()
        self._watch(())
        if self.ubus:
            self.ubus.close()


def _sockets():
    """fd -> "socket:[inode]" of this process's sockets: a reconnect shows
    as a new inode even when it reuses the number."""
    sockets = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:   # the listing's own descriptor, closed by now
            continue
        if link.startswith("socket:"):
            sockets[int(name)] = link
    return sockets


def _new_ubus_sockets(before):
    """The sockets opened since before that are connected to ubusd (not,
    say, the resolver thread's DNS sockets)."""
    found = set()
    for fd, link in _sockets().items():
        if before.get(fd) == link:
            continue
        if _peer_is_ubusd(fd):
            found.add(fd)
    return found


def _peer_is_ubusd(fd):
    try:
        duplicate = os.dup(fd)
    except OSError:
        return False
    try:
        s = socket.socket(fileno=duplicate)   # its family detected
    except OSError:
        os.close(duplicate)
        return False
    with s:
        try:
            return s.family == socket.AF_UNIX and "ubus" in str(s.getpeername())
        except OSError:
            return False
