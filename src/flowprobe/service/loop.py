"""One thread, one loop: capture handles, the conntrack socket, collector
sockets, the control socket and signals are file descriptors in one
selector, and a ready one's callback gets the events.  What a callback lets
escape (a bug, an I/O error its own code missed) is logged and counted, and
the loop goes on: a probe that stops metering loses more than one turn."""

import logging
import os
import selectors
import signal

log = logging.getLogger("flowprobe")

SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class Loop:
    def __init__(self, on_signal):
        # the handlers before ubus connects: python-ubus would otherwise own them
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        signal.set_wakeup_fd(self._wake_write)
        for signum in SIGNALS:
            signal.signal(signum, lambda signum, frame: on_signal(signum))
        self.selector = selectors.DefaultSelector()
        self.selector.register(self._wake_read, selectors.EVENT_READ,
                               lambda events: os.read(self._wake_read, 4096))
        self.errors = 0
        self._transient = []

    def guarded(self, work, *args):
        try:
            work(*args)
        except Exception:
            self.errors += 1
            log.exception("internal error (the loop goes on; %d so far)", self.errors)

    def turn(self, timeout, transient=()):
        """One wait and the callbacks of what is ready.  transient: (fd,
        events, callback) watched for this turn only: collector sockets,
        whose descriptors come and go with reconnects."""
        for fd, events, callback in transient:
            self.selector.register(fd, events, callback)
            self._transient.append(fd)
        try:
            for key, events in self.selector.select(timeout):
                # a callback earlier in this turn (a reload over the control
                # socket) may have unregistered or replaced this one
                if self.selector.get_map().get(key.fd) is key:
                    self.guarded(key.data, events)
        finally:
            self.drop_transient()

    def drop_transient(self):
        """Out before their sockets may close: a descriptor opened later in
        the turn (a capture, a control client) may reuse the number."""
        for fd in self._transient:
            self.selector.unregister(fd)
        self._transient = []

    def close(self):
        signal.set_wakeup_fd(-1)
        self.selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
