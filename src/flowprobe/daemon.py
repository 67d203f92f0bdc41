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
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from flowprobe import __version__
from flowprobe import config as configuration
from flowprobe.conntrack import ConntrackService, with_nat_fields
from flowprobe.control.handlers import ControlError, Handlers
from flowprobe.control.server import ControlServer
from flowprobe.errors import OptionError
from flowprobe.export.collectors import Exporter, capture_filter
from flowprobe.export.transport import TransportError
from flowprobe.meter import (
    DLT_EN10MB,
    LINKTYPE_OF_ARPHRD,
    LIVE_BLOCK_TIMEOUT_S,
    CaptureError,
    Meter,
    check_filter,
    packets_ignored,
)
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

log = logging.getLogger("flowprobe")

TICK_S = 1.0                 # expiry scan and export timers
RETRY_S = 5.0                # a missing or failed interface is tried again this often
DISPATCH_PACKETS = 4096      # packets read per call, before records are moved on
DISPATCH_ROUNDS = 16         # calls per readable event: other sources get their turn
FINISH_TIMEOUT_S = 5.0       # at stop: how long queued exports may take to leave
SEAL_MARGIN_S = 0.05         # beyond the capture ring's block timeout, before closing
SPOOL_FILE = re.compile(r"[A-Za-z0-9_.-]+\.[0-9]+\.[0-9]+\.spool")   # export/collectors.py
# counters that say how things are now, not how many so far
GAUGES = {"fragment_packets_held", "flows_active", "flows_pending_export", "flows_peak",
          "fragments_tracked", "clock_ms", "clock_first_ms"}
SYS_NET = Path("/sys/class/net")


@dataclass
class Capture:
    """One configured interface and what is open for it."""
    config: object                       # configuration.InterfaceConfig
    device: str = ""
    ifindex: int = 0
    sources: dict = field(default_factory=dict)   # source id -> direction
    error: str = None
    retry_at: float = 0.0
    opened_at: float = None
    # packets the kernel counted on the device while it was not captured
    down_since: int = None               # the device's counter when capture stopped
    packets_while_down: int = 0          # over the earlier periods without capture


def device_packets(device, direction):
    """The kernel's own packet counters of a device, in the capture's
    direction(s); None when the device is gone."""
    names = {"in": ("rx_packets",), "out": ("tx_packets",)}.get(direction,
                                                                 ("rx_packets", "tx_packets"))
    try:
        return sum(int((SYS_NET / device / "statistics" / name).read_text()) for name in names)
    except (OSError, ValueError):
        return None


def linktype_of(device):
    """The link type libpcap will give a device's capture (for checking
    filters before any capture is open); Ethernet when it is not there."""
    try:
        arphrd = int((SYS_NET / device / "type").read_text())
    except (OSError, ValueError):
        return DLT_EN10MB
    return LINKTYPE_OF_ARPHRD.get(arphrd, DLT_EN10MB)


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


def directions_of(interface):
    # "both" opens one handle a direction, so every record says which way it went
    return ("in", "out") if interface.direction == "both" else (interface.direction,)


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
        self.interface_names = {}          # ifindex -> name, shared with the exporter
        self.records_without_collector = 0
        self.kernel_dropped_closed = 0     # capture-buffer drops of handles since closed
        self.retired = {}                  # counters of meters replaced by a reload
        self.captures = {}
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
        capture = self.captures.get(name)
        return capture.ifindex if capture and capture.ifindex else None

    def interface_name(self, ifindex):
        return self.interface_names.get(ifindex)

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
                          packets_dropped_by_kernel=self.kernel_dropped(),
                          max_flows=self.meter.settings.max_flows,
                          table_fill=round(counters["flows_active"]
                                           / self.meter.settings.max_flows, 4)),
            "interfaces": [self._capture_status(c) for c in self.captures.values()],
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

    def _capture_status(self, capture):
        status = {"name": capture.config.name, "device": capture.device or None,
                  "ifindex": capture.ifindex or None, "direction": capture.config.direction,
                  "up": bool(capture.sources), "error": capture.error,
                  "packets_read": 0, "octets_read": 0, "pcap_received": 0, "pcap_dropped": 0,
                  "pcap_if_dropped": 0, "packets_not_captured": self._not_captured(capture)}
        for source in capture.sources:
            stats = self.meter.source_stats(source)
            for key in ("packets_read", "octets_read", "pcap_received", "pcap_dropped",
                        "pcap_if_dropped"):
                status[key] += stats[key]
        return status

    def _not_captured(self, capture):
        """Packets the device passed while it was not captured (kernel counters)."""
        missed = capture.packets_while_down
        if capture.down_since is not None:
            now = device_packets(capture.device, capture.config.direction)
            if now is not None and now >= capture.down_since:
                missed += now - capture.down_since
        return missed

    def _capture_down(self, capture):
        if capture.down_since is None and capture.device:
            capture.down_since = device_packets(capture.device, capture.config.direction)

    def _capture_up(self, capture):
        if capture.down_since is not None:
            missed = self._not_captured(capture) - capture.packets_while_down
            capture.packets_while_down += missed
            capture.down_since = None
            if missed:
                log.warning("interface %s: %d packets passed %s while it was not captured",
                            capture.config.name, missed, capture.device)

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
            self.meter = meter
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
        self._refilter_captures(new.collectors != old.collectors)
        self._open_captures()
        self.conntrack.apply(new, now_ms)
        for warning in new.warnings:
            log.warning("%s", warning)
        log.info("reloaded %s", self.config_path)
        if not new.enabled:
            log.info("disabled in %s: stopping", self.config_path)
            self.stopping = True
        return {"reloaded": True, "error": None}

    # ---- interfaces ----

    def _resolve(self, interface):
        """(device, ifindex) of a configured interface: a device name, or an
        OpenWrt logical name (lan, wan) that netifd resolves over ubus."""
        device = interface.device or interface.name
        if not (SYS_NET / device).exists() and not interface.device:
            device = self._netifd_device(interface.name) or device
        try:
            ifindex = int((SYS_NET / device / "ifindex").read_text())
        except (OSError, ValueError):
            raise LookupError(f"no such device {device!r}") from None
        return device, ifindex

    def _netifd_device(self, name):
        """The device of an OpenWrt logical interface, from netifd; None
        without ubus or without such an interface."""
        if not self.ubus:
            return None
        try:
            import ubus  # python-ubus, connected by UbusObject
            # a netifd that does not answer must not stop the loop (ms)
            reply = ubus.call(f"network.interface.{name}", "status", {}, timeout=1000)
        except (ImportError, RuntimeError, TypeError) as e:
            log.debug("netifd has no interface %s: %s", name, e)
            return None
        status = reply[0] if reply else {}
        return status.get("l3_device") or status.get("device")

    def _refilter_captures(self, collectors_changed):
        """A capture whose filter alone changed (its own, or the collectors'
        addresses it leaves out) keeps its handles: the kernel swaps the filter."""
        wanted = {i.name: i for i in self.config.interfaces}
        for name, capture in self.captures.items():
            interface = wanted.get(name)
            if interface is None:
                continue  # closed by _open_captures
            if replace(interface, bpf_filter="") != replace(capture.config, bpf_filter=""):
                continue  # other options changed: reopened by _open_captures
            if interface == capture.config and not collectors_changed:
                continue
            bpf = capture_filter(interface.bpf_filter, self.config.collectors)
            try:
                for source in capture.sources:
                    self.meter.set_filter(source, bpf)
            except CaptureError as e:
                log.error("interface %s: %s", name, e)
                continue
            capture.config = interface

    def _open_captures(self):
        """Opens every configured interface not open yet; failures are
        reported and retried, never fatal."""
        wanted = {i.name: i for i in self.config.interfaces}
        leaving = [name for name in self.captures
                   if name not in wanted or self.captures[name].config != wanted[name]]
        self._seal([self.captures[name] for name in leaving])   # together: one wait
        for name in leaving:
            self._close_capture(self.captures.pop(name), sealed=True)
        now = time.monotonic()
        for name, interface in wanted.items():
            capture = self.captures.setdefault(name, Capture(interface))
            if capture.sources or now < capture.retry_at:
                continue
            try:
                capture.device, capture.ifindex = self._resolve(interface)
                bpf = capture_filter(interface.bpf_filter, self.config.collectors)
                for direction in directions_of(interface):
                    source = self.meter.open_live(
                        capture.device, ifindex=capture.ifindex, snaplen=interface.snaplen,
                        promiscuous=interface.promiscuous,
                        buffer_bytes=interface.buffer_kb * 1024, bpf_filter=bpf,
                        direction=direction)
                    capture.sources[source] = direction
            except (LookupError, CaptureError) as e:
                self._close_capture(capture, keep=True)
                self._capture_down(capture)
                if capture.error != str(e):
                    log.warning("interface %s: %s (retrying every %g s)", name, e, RETRY_S)
                capture.error, capture.retry_at = str(e), now + RETRY_S
                continue
            capture.error, capture.opened_at = None, now
            self._capture_up(capture)
            self.interface_names[capture.ifindex] = name
            log.info("interface %s: capturing on %s (ifindex %d, %s)", name, capture.device,
                     capture.ifindex, interface.direction)
            if self.selector:
                for source in capture.sources:
                    self.selector.register(self.meter.fileno(source), selectors.EVENT_READ,
                                           self._reader(capture, source))

    def _seal(self, captures):
        """The captures take no new packet, and what the kernel already took
        is read: without this, the ring's last block (up to a block timeout of
        traffic) would be closed unread at a stop or reopen."""
        sources = [source for capture in captures for source in capture.sources]
        for source in list(sources):
            try:
                self.meter.seal(source)
            except CaptureError:
                sources.remove(source)   # the device is gone: nothing more will come
        deadline = time.monotonic() + LIVE_BLOCK_TIMEOUT_S + SEAL_MARGIN_S
        while sources:
            for source in sources:
                try:
                    self._read(source)
                except CaptureError:
                    pass
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def _close_capture(self, capture, keep=False, sealed=False):
        if not sealed:
            self._seal([capture])
        for source in list(capture.sources):
            fd = self.meter.fileno(source)
            if self.selector and fd >= 0:
                try:
                    self.selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
            try:
                self._read(source)  # what the kernel still holds is metered first
            except CaptureError:
                pass  # the device is gone: nothing left to read
            self.kernel_dropped_closed += self.meter.source_stats(source)["pcap_dropped"]
            self.meter.close(source)
        capture.sources.clear()
        if not keep:
            self.interface_names.pop(capture.ifindex, None)

    def _drop_vanished_captures(self):
        """Captures whose device is gone, or came back as another interface
        (a new ifindex). libpcap reports a vanished device once, through the
        socket's error, and that report can be missed; this check cannot."""
        for capture in self.captures.values():
            if not capture.sources:
                continue
            try:
                present = socket.if_nametoindex(capture.device) == capture.ifindex
            except OSError:
                present = False
            if not present:
                error = f"{capture.device} (ifindex {capture.ifindex}) is gone"
                log.warning("interface %s: %s (retrying every %g s)", capture.config.name, error,
                            RETRY_S)
                self._close_capture(capture, keep=True)
                self._capture_down(capture)
                capture.error, capture.retry_at = error, time.monotonic() + RETRY_S

    def _close_captures(self):
        for capture in self.captures.values():
            self._close_capture(capture, keep=True)
        self.captures.clear()

    def _reader(self, capture, source):
        def on_readable(events):
            try:
                self._read(source)
            except CaptureError as e:  # the interface went away
                log.warning("interface %s: %s (retrying every %g s)", capture.config.name, e,
                            RETRY_S)
                self._close_capture(capture, keep=True)
                self._capture_down(capture)
                capture.error, capture.retry_at = str(e), time.monotonic() + RETRY_S
            self._export_expired(self.now_ms())
        return on_readable

    def _read(self, source):
        for _ in range(DISPATCH_ROUNDS):
            if self.meter.dispatch(source, DISPATCH_PACKETS) == 0 and not self.meter.pending:
                return
            self._export_expired(self.now_ms())

    # ---- records ----

    def _new_exporter(self, config, carry_over=None):
        if not config.collectors:
            return None
        spool_dir = self._spool_dir(config)
        tracks = config.conntrack.tracks   # conntrack records: biflows with NAT fields
        return Exporter(with_nat_fields(config.collectors) if tracks else config.collectors,
                        boot_ms=self.now_ms(), meter_biflow=config.meter.bidirectional or tracks,
                        interfaces=self.interface_names, spool_dir=spool_dir,
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

    def kernel_dropped(self):
        """Packets the kernel dropped because the capture buffer was full:
        seen at the interface but never metered."""
        open_now = sum(self.meter.source_stats(source)["pcap_dropped"]
                       for capture in self.captures.values() for source in capture.sources)
        return self.kernel_dropped_closed + open_now

    def _packets_ignored(self):
        """IPFIX ignoredPacketTotalCount: the meter's named drops and the
        capture buffer's overruns alike."""
        return packets_ignored(self.counters()) + self.kernel_dropped()

    def _tick(self):
        now_ms = self.now_ms()
        self.meter.expire(now_ms)
        self._export_expired(now_ms)
        self.conntrack.tick(now_ms)
        if self.exporter:
            self.exporter.tick(now_ms, self._packets_ignored())
        if self.ubus and time.monotonic() >= self.ubus_check_at:
            self.ubus_check_at = time.monotonic() + RETRY_S
            self.ubus.check()
        if self.server:
            self.server.expire()
        self._drop_vanished_captures()
        self._open_captures()

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
        self._open_captures()
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
        self._seal(self.captures.values())   # all at once: one block timeout, not one each
        for capture in self.captures.values():
            self._close_capture(capture, sealed=True)
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
