"""Where the daemon's log lines go, each at its own severity.

In a terminal, or wherever nothing says otherwise: standard error, as
"flowprobe: LEVEL: message" (unchanged).

Under procd the init script sets FLOWPROBE_LOG=syslog in the instance's
environment. procd logs everything a service writes to stderr at err level
and to stdout at info level, whatever the line says; so the daemon sends its
records to the syslog socket itself (/dev/log, logd's on OpenWrt), each with
its priority: daemon.debug, daemon.info, daemon.warn, daemon.err,
daemon.crit. `logread -l 4` then shows warnings and worse, and log filters
and remote syslog mean something. A traceback nobody caught still goes to
stderr, which procd logs at err.

The datagram is what syslog(3) sends, "<PRI>Mmm dd hh:mm:ss
flowprobe[PID]: message": logd strips a 16-character timestamp from every
local datagram whose 16th character is a space, so one is always sent.

If /dev/log is not there at start (logd not running), FLOWPROBE_LOG=syslog
falls back to FLOWPROBE_LOG=stdio: info and debug to stdout, warnings and
errors to stderr (procd: info and err). A line logd does not take later
(logd restarting) goes to stderr.
"""

import logging
import os
import socket
import sys

ENVIRONMENT = "FLOWPROBE_LOG"   # "syslog", "stdio"; anything else: stderr
SYSLOG_SOCKET = "/dev/log"
STDERR_FORMAT = "flowprobe: %(levelname)s: %(message)s"
SYSLOG_FORMAT = "%(asctime)s flowprobe[%(process)d]: %(message)s"
SYSLOG_DATE = "%b %e %H:%M:%S"   # syslog(3)'s: 15 characters, then a space


class _Below(logging.Filter):
    """Passes the records below a level (the stdout half of "stdio")."""

    def __init__(self, level):
        super().__init__()
        self.level = level

    def filter(self, record):
        return record.levelno < self.level


class _SysLog(logging.Handler):
    """syslog(3)'s datagram, "<PRI>" and the formatted line, to a unix
    socket: what logging.handlers.SysLogHandler sends, without importing
    logging.handlers (and with it pickle, queue and copy: some 0.4 MB a
    router's daemon would keep for nothing)."""

    facility = 3   # daemon
    # a record's levelname is not its syslog name: WARNING is warning (4),
    # ERROR err (3), CRITICAL crit (2)
    priority_map = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

    def __init__(self, address):
        super().__init__()
        self.address = address
        self.socket = self._connect()

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock

    def emit(self, record):
        try:
            priority = self.facility << 3 | self.priority_map.get(record.levelname, 4)
            datagram = f"<{priority}>{self.format(record)}".encode()
            try:
                self.socket.send(datagram)
            except OSError:   # logd restarted: its socket is a new one
                self.socket.close()
                self.socket = self._connect()
                self.socket.send(datagram)
        except Exception:
            self.handleError(record)

    def close(self):
        self.acquire()
        try:
            self.socket.close()
        finally:
            self.release()
        super().close()

    def handleError(self, record):
        """logd away (restarting): the line goes to stderr, which procd
        logs at err, rather than a "Logging error" traceback."""
        try:
            sys.stderr.write(f"flowprobe: {record.levelname}: {record.getMessage()}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _syslog_handler(address):
    handler = _SysLog(address)   # OSError: the socket cannot be reached
    handler.setFormatter(logging.Formatter(SYSLOG_FORMAT, datefmt=SYSLOG_DATE))
    return handler


def _stdio_handlers():
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_Below(logging.WARNING))
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    return [out, err]


def choose_handlers(environ=None, syslog_socket=SYSLOG_SOCKET):
    """(handlers, target, problem): where FLOWPROBE_LOG says the lines go;
    target is "syslog", "stdio" or "stderr"; problem says why syslog was
    wanted and not had (None otherwise)."""
    wanted = (os.environ if environ is None else environ).get(ENVIRONMENT, "")
    problem = None
    if wanted == "syslog":
        try:
            return [_syslog_handler(syslog_socket)], "syslog", None
        except OSError as e:
            problem = f"no syslog at {syslog_socket} ({e.strerror or e}): logging to stdout/stderr"
            wanted = "stdio"
    if wanted == "stdio":
        return _stdio_handlers(), "stdio", problem
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    return [handler], "stderr", None


def setup_logging(level=logging.INFO, environ=None, syslog_socket=SYSLOG_SOCKET):
    """Sets up the root logger for `flowprobe run` (as logging.basicConfig
    would: nothing changes if it already has handlers). Returns where the
    lines go: "syslog", "stdio", "stderr" (or "configured": unchanged)."""
    root = logging.getLogger()
    if root.handlers:
        return "configured"
    handlers, target, problem = choose_handlers(environ, syslog_socket)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    if problem:
        logging.getLogger("flowprobe").warning("%s", problem)
    return target
