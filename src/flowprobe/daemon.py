"""The flowprobe service: live metering on several interfaces, exported to
the configured collectors, controlled over a local socket (and ubus).

One thread, one loop: capture handles, collector sockets, the control
socket and signals are all file descriptors in one selector; ubus is
polled each turn; timers (expiry, template refresh, interface retries) run
from the loop. Per-packet work stays in C: a readable capture is read by
the core, and Python moves expired records to the exporter in batches.
"""

import logging
import os
import re
import selectors
import signal
import time
from pathlib import Path

from flowprobe import __version__
from flowprobe import config as configuration
from flowprobe.conntrack import ConntrackService, with_nat_fields
from flowprobe.control.handlers import ControlError, Handlers
from flowprobe.control.server import ControlServer
from flowprobe.errors import OptionError
from flowprobe.export.collectors import Exporter, capture_filter
from flowprobe.export.transport import TransportError
from flowprobe.meter import CaptureError, Meter, check_filter, packets_ignored
from flowprobe.privileges import (
    CAP_NET_ADMIN,
    CAP_NET_RAW,
    CAPABILITY_NAMES,
    PrivilegeError,
    account,
    drop_to,
    effective_capabilities,
)
from flowprobe.run_state import RunState
from flowprobe.sources.capture import CaptureSet, linktype_of

log = logging.getLogger("flowprobe")

TICK_S = 1.0                 # expiry scan and export timers
UBUS_CHECK_S = 5.0           # a lost ubus connection is tried again this often
FINISH_TIMEOUT_S = 5.0       # at stop: how long queued exports may take to leave
SPOOL_FILE = re.compile(r"[A-Za-z0-9_.-]+\.[0-9]+\.[0-9]+\.spool")   # export/collectors.py
# counters that say how things are now, not how many so far
GAUGES = {"fragment_packets_held", "flows_active", "flows_pending_export", "flows_peak",
          "fragments_tracked", "clock_ms", "clock_first_ms"}


def check_filters(config):
    """Every capture filter of a config compiles (the user's, with the
    exclusion of the probe's own export traffic): ConfigError otherwise,
    before anything switches to it."""
    for interface in config.interfaces:
        bpf = capture_filter(interface.bpf_filter, config.collectors)
        if not bpf:
            continue
        try:
            check_filter(bpf, linktype_of(interface.device or interface.name), interface.snaplen)
        except CaptureError as e:
            raise configuration.ConfigError(f"interface {interface.name}: {e}") from None


class Probe:
    def __init__(self, config_path, control_socket=None, ubus=True):
        self.config_path = config_path
        self.config = configuration.load(config_path)   # ConfigError: the caller exits non-zero
        check_filters(self.config)
        self.control_socket = control_socket or self.config.control_socket
        self.use_ubus = ubus
        self.config_error = None
        self.started = time.time()
        self.stopping = False
        self.reload_requested = False
        self.meter = Meter(self.config.meter)
        self.records_without_collector = 0
        self.retired = {}                  # counters of meters replaced by a reload
        self.captures = CaptureSet(self.meter, lambda: self._export_expired(self.now_ms()))
        self.conntrack = ConntrackService(self)   # the conntrack source, when configured
        self.exporter = self._new_exporter(self.config)
        self.handlers = Handlers(self)
        self.ubus = None
        self.ubus_check_at = 0.0
        self.server = None
        self.selector = None
        self.run_state = None
        self._transport_fds = []
        self.loop_errors = 0              # exceptions the loop caught, logged, and survived

    # ---- what the control handlers use ----

    def now_ms(self):
        return int(time.time() * 1000)

    def interface_index(self, name):
        return self.captures.interface_index(name)

    def interface_name(self, ifindex):
        return self.captures.interface_names.get(ifindex)

    def status(self):
        counters = self.counters()
        return {
            "version": __version__,
            "running_since": int(self.started),
            "uptime_s": int(time.time() - self.started),
            "config": str(self.config_path),
            "config_error": self.config_error,
            "warnings": list(self.config.warnings),
            "ubus": bool(self.ubus and self.ubus.connected),
            "user": {"uid": os.getuid(), "capabilities": effective_capabilities()},
            "meter": dict(counters, memory_bytes=self.meter.memory_bytes,
                          packets_dropped_by_kernel=self.captures.kernel_dropped(),
                          max_flows=self.meter.settings.max_flows,
                          table_fill=round(counters["flows_active"]
                                           / self.meter.settings.max_flows, 4)),
            "interfaces": self.captures.status(),
            "collectors": self.exporter.stats() if self.exporter else [],
            "records_without_collector": self.records_without_collector,
            "source": self.config.conntrack.source,
            "conntrack": self.conntrack.status(self.config, counters),
            "control": self.server.stats() if self.server else None,
            "loop_errors": self.loop_errors,
            "previous_run": self._previous_run(),
        }

    def _previous_run(self):
        if self.run_state is None or self.run_state.previous is None:
            return None
        unclean = self.run_state.previous_unclean
        return f"ended without a clean stop ({unclean})" if unclean else "stopped cleanly"

    def reload(self):
        """SIGHUP or the control API: apply a changed config without losing
        the flow table; a bad config keeps the old one running."""
        try:
            new = configuration.load(self.config_path)
            check_filters(new)   # before anything changes, as the collectors below
        except configuration.ConfigError as e:
            self.config_error = str(e)
            log.error("reload refused, still running the previous config: %s", e)
            return {"reloaded": False, "error": str(e)}
        old = self.config
        now_ms = self.now_ms()
        exporter_changes = (new.collectors != old.collectors
                            or new.meter.bidirectional != old.meter.bidirectional
                            or new.conntrack.tracks != old.conntrack.tracks
                            or new.spool_dir != old.spool_dir)
        try:   # before anything changes: a collector that cannot be set up refuses it all
            new_exporter = (self._new_exporter(new, carry_over=self.exporter)
                            if exporter_changes else None)
        except (TransportError, OptionError) as e:
            self.config_error = str(e)
            log.error("reload refused, still running the previous config: %s", e)
            return {"reloaded": False, "error": str(e)}
        if not self.meter.update_settings(new.meter):
            # new capacities: the old table's flows are exported, and a new
            # table reads on from the same capture handles (no gap)
            log.info("table settings changed: exporting %d flows, then a new table",
                     self.meter.counters()["flows_active"])
            self.meter.flush()
            self._export_expired(now_ms)
            meter = Meter(new.meter)
            meter.take_sources(self.meter)
            self._retire(self.meter)
            self.meter = self.captures.meter = meter
        self.conntrack.before_reload(new, now_ms)   # off: what it holds leaves first
        if exporter_changes:
            # a reload asked over the control socket runs inside the loop's turn, with
            # the old collectors' sockets still registered: out before they close, or a
            # capture opened below may reuse a number the selector still holds
            self._unregister_transports()
            self._export_expired(now_ms)
            if self.exporter:
                # unchanged collectors go on in the new exporter, queues and spools too
                self.exporter.finish(now_ms, self._packets_ignored(),
                                     handed_over=new_exporter.carried if new_exporter else ())
            self.exporter = new_exporter
            if self.exporter:
                self.exporter.start(now_ms)
        for option in ("control_socket", "user"):
            if getattr(new, option) != getattr(old, option):
                log.warning("option %s changed: it takes effect at the next restart", option)
        self.config, self.config_error = new, None
        self.captures.apply(new.interfaces, new.collectors, new.collectors != old.collectors)
        self.conntrack.apply(new, now_ms)
        for warning in new.warnings:
            log.warning("%s", warning)
        log.info("reloaded %s", self.config_path)
        if not new.enabled:
            log.info("disabled in %s: stopping", self.config_path)
            self.stopping = True
        return {"reloaded": True, "error": None}

    # ---- interfaces ----

    # ---- records ----

    def _new_exporter(self, config, carry_over=None):
        if not config.collectors:
            return None
        spool_dir = self._spool_dir(config)
        tracks = config.conntrack.tracks   # conntrack records: biflows with NAT fields
        return Exporter(with_nat_fields(config.collectors) if tracks else config.collectors,
                        boot_ms=self.now_ms(), meter_biflow=config.meter.bidirectional or tracks,
                        interfaces=self.captures.interface_names, spool_dir=spool_dir,
                        carry_over=carry_over)

    def _spool_dir(self, config):
        """The collectors' spool directory, made (for the daemon's user) when
        a collector has a spool; None otherwise."""
        if not any(c.spool_kb for c in config.collectors):
            return None
        path = config.spool_dir
        try:
            try:
                os.mkdir(path, 0o750)
                # only a directory made here becomes the user's: spool_dir '/etc'
                # must not hand /etc over
                if os.geteuid() == 0 and config.user:
                    user = account(config.user)
                    os.chown(path, user.uid, user.gid, follow_symlinks=False)
            except FileExistsError:
                pass
            if not getattr(self, "spools_cleared", False):
                # an earlier run's spools belong to sessions that no longer exist;
                # only files named as this daemon names them, and no link
                for stale in Path(path).iterdir():
                    if SPOOL_FILE.fullmatch(stale.name) and not stale.is_symlink():
                        stale.unlink()
                self.spools_cleared = True
        except (OSError, PrivilegeError) as e:
            raise TransportError(f"spool_dir {path}: {getattr(e, 'strerror', None) or e}") \
                from None
        return path

    def _export_expired(self, now_ms):
        for batch, count in self.meter.drain_raw():
            if self.exporter:
                self.exporter.export(batch, count, now_ms)
            else:  # no collector configured: counted, and the status says so
                self.records_without_collector += count

    def _retire(self, meter):
        """Counters of a replaced meter carry on in the totals."""
        for key, value in meter.counters().items():
            if key not in GAUGES:
                self.retired[key] = self.retired.get(key, 0) + value

    def counters(self):
        """The meter's counters since the daemon started, across table changes."""
        counters = self.meter.counters()
        return {key: value + (0 if key in GAUGES else self.retired.get(key, 0))
                for key, value in counters.items()}

    def _packets_ignored(self):
        """IPFIX ignoredPacketTotalCount: the meter's named drops and the
        capture buffer's overruns alike."""
        return packets_ignored(self.counters()) + self.captures.kernel_dropped()

    def _tick(self):
        now_ms = self.now_ms()
        self.meter.expire(now_ms)
        self._export_expired(now_ms)
        self.conntrack.tick(now_ms)
        if self.exporter:
            self.exporter.tick(now_ms, self._packets_ignored())
        if self.ubus and time.monotonic() >= self.ubus_check_at:
            self.ubus_check_at = time.monotonic() + UBUS_CHECK_S
            self.ubus.check()
        if self.server:
            self.server.expire()
        self.captures.drop_vanished()
        self.captures.open(self.config.interfaces, self.config.collectors)

    # ---- the loop ----

    def _on_signal(self, signum, frame):
        if signum == signal.SIGHUP:
            self.reload_requested = True
        else:
            self.stopping = True

    def run(self):
        # signal handlers before ubus.connect(): python-ubus would otherwise own them
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.selector = selectors.DefaultSelector()
        self.selector.register(wake_read, selectors.EVENT_READ,
                               lambda events: os.read(wake_read, 4096))
        # an environment that cannot work is a config error: exit 2, the option named
        try:
            user = account(self.config.user) if self.config.user else None
        except PrivilegeError as e:
            log.error("%s.main.user: %s", configuration.PACKAGE, e)
            return 2
        try:
            self.server = ControlServer(self.control_socket, self.handlers,
                                        gid=user.gid if user else None)
        except ControlError as e:
            log.error("%s.main.control_socket: %s", configuration.PACKAGE, e)
            return 2
        self.server.attach(self.selector)
        self.run_state = RunState(Path(self.control_socket).with_suffix(".state"))
        if self.run_state.error:
            log.warning("%s", self.run_state.error)
        elif self.run_state.previous_unclean:
            log.warning("the previous run ended without a clean stop (%s): the flows it "
                        "held since their last export were never exported",
                        self.run_state.previous_unclean)
        if self.use_ubus:
            self._connect_ubus()
        for warning in self.config.warnings:
            log.warning("%s", warning)
        if self.exporter:
            self.exporter.start(self.now_ms())
        self.captures.selector = self.selector
        self.captures.open(self.config.interfaces, self.config.collectors)
        self.conntrack.apply(self.config, self.now_ms())
        if user:
            preload_late_imports()
            # conntrack dumps need CAP_NET_ADMIN; decided at start: a reload that
            # turns the source on later reports the missing capability in status
            keep = (CAP_NET_RAW, CAP_NET_ADMIN) if self.config.conntrack.tracks else (CAP_NET_RAW,)
            try:
                if drop_to(user, keep):
                    log.info("running as %s, keeping only %s", user.name,
                             " and ".join(CAPABILITY_NAMES[c] for c in keep))
            except PrivilegeError as e:
                log.error("%s", e)
                self._stop()
                return 1
        log.info("flowprobe %s running: %d interfaces, %d collectors, control at %s",
                 __version__, len(self.config.interfaces), len(self.config.collectors),
                 self.control_socket)
        next_tick = time.monotonic() + TICK_S
        try:
            while not self.stopping:
                self._register_transports()
                timeout = max(0.0, next_tick - time.monotonic())
                if self.ubus:
                    timeout = min(timeout, 0.1)
                if self.server.busy():
                    timeout = 0.0
                for key, events in self.selector.select(timeout):
                    # a callback earlier in this turn (a reload over the control
                    # socket) may have unregistered or replaced this one
                    if self.selector.get_map().get(key.fd) is key:
                        self._guarded(key.data, events)
                self._unregister_transports()
                self._guarded(self.server.serve)   # after capture had its turn
                if self.ubus:
                    self._guarded(self.ubus.poll)
                if self.reload_requested:
                    self.reload_requested = False
                    self._guarded(self.reload)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_S
                    self._guarded(self._tick)
        finally:
            self._stop()
            signal.set_wakeup_fd(-1)
            os.close(wake_read)
            os.close(wake_write)
        return 0

    def _guarded(self, work, *args):
        """Runs one piece of the loop's work; an exception it lets out (a bug,
        or an I/O error its own code missed) is logged and counted, and the
        loop goes on: a probe that stops metering loses more than one turn."""
        try:
            work(*args)
        except Exception:
            self.loop_errors += 1
            log.exception("internal error (the loop goes on; %d so far)", self.loop_errors)

    def _connect_ubus(self):
        try:
            from flowprobe.control.ubus import UbusObject
            self.ubus = UbusObject(self.handlers)
            self.captures.netifd = True
            log.info("ubus object flowprobe registered")
        except ControlError as e:
            log.info("running without ubus: %s", e)

    def _register_transports(self):
        self._transport_fds = []
        if self.exporter:
            for fd, events, on_event in self.exporter.watched():
                self.selector.register(fd, events, on_event)
                self._transport_fds.append(fd)

    def _unregister_transports(self):
        for fd in self._transport_fds:
            self.selector.unregister(fd)
        self._transport_fds = []

    def _stop(self):
        """Every flow ends, is exported, and the exports get their chance to
        leave: a stop loses nothing that was metered."""
        log.info("stopping: flushing %d flows", self.meter.counters()["flows_active"])
        self._unregister_transports()   # a stop from inside a turn: the loop's are out
        self.captures.close_all()
        now_ms = self.now_ms()
        self.meter.flush()
        self._export_expired(now_ms)
        self.conntrack.close(now_ms)
        if self.exporter:
            self.exporter.finish(now_ms, self._packets_ignored(), FINISH_TIMEOUT_S)
            for collector in self.exporter.stats():
                if collector["records_not_sent"]:
                    log.warning("%s: %d records not sent (last error: %s)",
                                collector["collector"], collector["records_not_sent"],
                                collector["last_error"])
        counters = self.counters()
        not_sent = sum(c["records_not_sent"] for c in self.exporter.stats()) if self.exporter else 0
        log.info("stopped: %d packets read, %d metered, %d dropped by reason; %d records, "
                 "%d not sent", counters["packets_read"], counters["packets_metered"],
                 self._packets_ignored(),
                 counters["records_drained"] + self.conntrack.counters().get("records", 0),
                 not_sent)
        if self.server:
            self.server.close()
        if self.ubus:
            self.ubus.close()
        if self.run_state:
            self.run_state.stopped()


def preload_late_imports():
    """Modules Python would import on first use, imported while still root:
    after the drop the daemon's user may not be able to read them (a
    codec for a host name's IDNA, the JSON detector's UTF-16/32)."""
    import encodings.ascii  # noqa: F401
    import encodings.idna  # noqa: F401
    import encodings.latin_1  # noqa: F401
    import encodings.utf_16  # noqa: F401
    import encodings.utf_32  # noqa: F401


def run(args):
    """`flowprobe run`: the service, in the foreground (procd keeps it)."""
    from flowprobe.logs import setup_logging  # syslog by severity under procd
    setup_logging()
    try:
        probe = Probe(args.config, control_socket=args.socket, ubus=not args.no_ubus)
    except (configuration.ConfigError, TransportError, OptionError) as e:
        log.error("%s", e)
        return 2
    logging.getLogger().setLevel(probe.config.log_level.upper())
    if not probe.config.enabled:
        log.info("disabled in %s (option enabled '0'): nothing to do", args.config)
        return 0
    return probe.run()
