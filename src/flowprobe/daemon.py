"""The flowprobe service: it builds the stages from the config and runs them.

    sources (captures, conntrack) → meter → sinks (exporter)
    control (socket, ubus), the loop, reloads, status

Per-packet work stays in C: a readable capture is read by the core, and
records move to the sinks in batches.  Each stage lives in its own module;
this one only wires them and says what happens at start and stop.
"""

import logging
import os
import signal
import time

from flowprobe import __version__
from flowprobe import config as configuration
from flowprobe.control.handlers import ControlError, Handlers
from flowprobe.enrich import on_demand as enrichment
from flowprobe.errors import OptionError
from flowprobe.export.fields import with_nat_fields
from flowprobe.export.resolver import Resolver
from flowprobe.export.transport import TransportError
from flowprobe.meter import MeterError
from flowprobe.privileges import PrivilegeError, account, drop_for_service
from flowprobe.run_state import RunState
from flowprobe.service import reload, status
from flowprobe.service.control_plane import ControlPlane
from flowprobe.service.loop import Loop
from flowprobe.service.metering import LastMinute, Metering
from flowprobe.service.sinks import Sinks
from flowprobe.sources.capture import CaptureSet
from flowprobe.sources.conntrack_on_demand import ConntrackService
from flowprobe.store.service import HistoryService

log = logging.getLogger("flowprobe")

TICK_S = 1.0                 # expiry scan and export timers
FINISH_TIMEOUT_S = 5.0       # at stop: how long queued exports may take to leave


class Probe:
    def __init__(self, config_path, control_socket=None, ubus=True):
        self.config_path = config_path
        self.config = configuration.load(config_path)   # ConfigError: the caller exits 2
        self.control_socket = control_socket or self.config.control_socket
        self.use_ubus = ubus
        self.config_error = None
        self.started = time.time()
        self.stopping = self.reload_requested = self.reload_waiting = False
        self.resolver = Resolver()     # collector names at a reload, off the loop
        self.sinks = Sinks({}, with_nat_fields, self.resolver)
        self.metering = Metering(self.config.meter, self.sinks.deliver, self.sinks.deliver_samples)
        self.last_minute = LastMinute()
        self.captures = CaptureSet(self.metering.meter,
                                   lambda: self.metering.drain(self.now_ms()))
        self.sinks.interface_names = self.captures.interface_names
        self.sinks.sample_drops = self.captures.sample_drops
        self.conntrack = ConntrackService(self)   # the conntrack source, when configured
        self.sinks.exporter = self.sinks.prepare(self.config, self.now_ms())
        self.sinks.enrich = enrichment.apply(None, self.config.enrich, self.sinks.deliver_enriched,
                                             self.now_ms)
        self.metering.keep_samples(self.sinks.wants_samples)
        try:
            reload.check_filters(self.config, self.sinks.endpoints())
        except configuration.ConfigError:
            self.sinks.close()
            raise
        self.history = HistoryService(self.captures.interface_names)   # the history store
        self.history.apply(self.config)
        self.sinks.history = self.history
        self.handlers = Handlers(self)
        self.loop = self.control = self.run_state = None

    # ---- what the control handlers and the sources ask ----

    def now_ms(self):
        return int(time.time() * 1000)

    @property
    def meter(self):
        return self.metering.meter

    @property
    def selector(self):
        return self.loop.selector if self.loop else None

    @property
    def devices(self):   # which device an address is (enrich/devices.py), or None
        return self.sinks.enrich.devices if self.sinks.enrich else None

    def interface_index(self, name):
        return self.captures.interface_index(name)

    def interface_name(self, ifindex):
        return self.captures.interface_names.get(ifindex)

    def status(self):
        return status.status(self)

    def reload(self):
        return reload.reload(self)

    def packets_ignored(self):
        return self.metering.packets_ignored(self.captures.kernel_dropped())

    # ---- start, loop, stop ----

    def run(self):
        self.loop = Loop(self._on_signal)
        try:
            user = self._start()
        except _StartError as e:
            log.error("%s", e)
            self.loop.close()
            return 2
        if user:
            try:
                kept = drop_for_service(user, self.config.conntrack.tracks)
            except PrivilegeError as e:
                log.error("%s", e)
                self._stop()
                return 1
            if kept:
                log.info("running as %s, keeping only %s", user.name, kept)
        self.history.start()   # its files belong to the user the daemon now is
        log.info("flowprobe %s running: %d interfaces, %d collectors, control at %s",
                 __version__, len(self.config.interfaces), len(self.config.collectors),
                 self.control_socket)
        next_tick = time.monotonic() + TICK_S
        try:
            while not self.stopping:
                wake = min(next_tick, self.control.wake_at() or next_tick)
                self.loop.turn(max(0.0, wake - time.monotonic()), self.sinks.watched())
                self.control.serve(self.loop.guarded)   # after capture had its turn
                if self.reload_requested or (self.reload_waiting and not self.resolver.busy()):
                    self.reload_requested = False
                    self.loop.guarded(self.reload)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_S
                    self.loop.guarded(self._tick)
        finally:
            self._stop()
        return 0

    def _on_signal(self, signum):
        if signum == signal.SIGHUP:
            self.reload_requested = True
        else:
            self.stopping = True

    def _start(self):
        """The control socket, ubus, the exports and the sources; the user
        to become, if any.  An environment that cannot work is a config error
        (exit 2, the option named)."""
        try:
            user = account(self.config.user) if self.config.user else None
        except PrivilegeError as e:
            raise _StartError(f"{configuration.PACKAGE}.main.user: {e}") from None
        self.control = ControlPlane(self.handlers, self.control_socket, self.loop.selector)
        try:
            self.control.start(gid=user.gid if user else None, ubus=self.use_ubus)
        except ControlError as e:
            raise _StartError(f"{configuration.PACKAGE}.main.control_socket: {e}") from None
        self.captures.netifd = self.control.ubus is not None
        self.run_state = RunState(os.path.splitext(self.control_socket)[0] + ".state")
        if self.run_state.error:
            log.warning("%s", self.run_state.error)
        elif self.run_state.previous_unclean:
            log.warning("the previous run ended without a clean stop (%s): the flows it "
                        "held since their last export were never exported",
                        self.run_state.previous_unclean)
        for warning in self.config.warnings:
            log.warning("%s", warning)
        self.sinks.start(self.now_ms())
        self.captures.selector = self.loop.selector
        self.captures.open(self.config.interfaces, self.sinks.endpoints())
        self.conntrack.apply(self.config, self.now_ms())
        return user

    def _tick(self):
        now_ms = self.now_ms()
        self.meter.expire(now_ms)
        self.metering.drain(now_ms)
        self.conntrack.tick(now_ms)
        dropped = self.packets_ignored()
        self.sinks.tick(now_ms, dropped)
        self.last_minute.sample(time.monotonic(), self.metering.counters()["packets_read"],
                                dropped)
        self.control.tick()
        self.captures.drop_vanished()
        self.captures.follow(self.config.interfaces, self.sinks.endpoints())

    def _stop(self):
        """Every flow ends, is exported, and the exports get their chance to
        leave: a stop loses nothing that was metered."""
        log.info("stopping: flushing %d flows", self.meter.counters()["flows_active"])
        self.loop.drop_transient()   # a stop from inside a turn: the collectors' are out
        self.captures.close_all()
        now_ms = self.now_ms()
        self.meter.flush()
        self.metering.drain(now_ms)
        self.conntrack.close(now_ms)
        self.sinks.finish(now_ms, self.packets_ignored(), FINISH_TIMEOUT_S)
        counters = self.metering.counters()
        log.info("stopped: %d packets read, %d metered, %d dropped by reason; %d records, "
                 "%d not sent", counters["packets_read"], counters["packets_metered"],
                 self.packets_ignored(),
                 counters["records_drained"] + self.conntrack.counters().get("records", 0),
                 self.sinks.records_not_sent())
        if self.control:
            self.control.close()
        if self.run_state:
            self.run_state.stopped()
        self.loop.close()


class _StartError(Exception):
    pass


def run(args):
    """`flowprobe run`: the service, in the foreground (procd keeps it)."""
    from flowprobe.logs import setup_logging  # syslog by severity under procd
    setup_logging()
    try:
        probe = Probe(args.config, control_socket=args.socket, ubus=not args.no_ubus)
    except (configuration.ConfigError, TransportError, OptionError) as e:
        log.error("%s", e)
        return 2
    except MeterError as e:   # the tables' capacity cannot be reserved
        log.error("%s", e)
        return 2
    logging.getLogger().setLevel(probe.config.log_level.upper())
    if not probe.config.enabled:
        log.info("disabled in %s (option enabled '0'): nothing to do", args.config)
        return 0
    return probe.run()
