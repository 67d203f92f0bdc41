"""The conntrack metering source: flow records from the kernel's connection
tracker rather than from packets.

The kernel already counts every connection it tracks for NAT (with
nf_conntrack_acct=1), also the packets software flow offloading takes away
from capture. The C core (cmeter/conntrack.c) reads ctnetlink events and
dumps and keeps the connections in a fixed table; Python sees only record
batches, as with packet capture. Records are biflows: the original
direction with its reply counters, pre- and post-NAT addresses and ports.
"""

import logging
import os
import select
import selectors
import socket
import time

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.addresses import packed_address
from flowprobe.export.resolver import ascii_host
from flowprobe.records import record_to_dict

log = logging.getLogger("flowprobe")

DRAIN_BATCH = 1024
# Records wait for the next tick (1 s) unless this many are ready: events come
# one connection at a time, and exporting each on its own wakeup would cost
# a message per record.
EXPORT_BATCH = 256
# A read that finds fewer events than this is a trickle: the socket is then
# left alone for HOLD_MS and read in one go, instead of one wakeup (a turn
# of the Python loop) per event. The 1 MB buffer holds ~1000 events: 20 k/s; more
# overruns it, which a dump repairs (measured: 50 ms costs half of 20 ms per connection).
TRICKLE = 64
HOLD_MS = 50
# At close: the kernel redelivers DESTROYs it could not deliver every 10 ms, and
# the last dump reaps expired connections (more DESTROYs): read until the socket
# stays quiet, with room for them all.
CLOSE_QUIET_S = 0.05
CLOSE_LIMIT_S = 2.0
CLOSE_BUFFER_KB = 4096
SYSCTL = "/proc/sys/net/netfilter"
# Where a stop leaves what the next start needs to say what the gap cost: the
# control socket's path with this suffix (/var/run/flowprobe.conntrack: a tmpfs
# on OpenWrt, so a reboot clears it with the kernel's table), opened while still
# root and written through that descriptor.
GAUGES = {"connections", "records_pending", "capacity", "tombstones", "memory_bytes", "clock_ms",
          "peak", "listed", "open_at_start", "open_since_stop"}


class ConntrackError(RuntimeError):
    pass


def _sysctl_path(name):
    return os.path.join(SYSCTL, name)


def ensure_sysctl(name):
    """(on, error): net.netfilter.<name> is 1, or is set to 1 when allowed;
    error says why not (the value is per network namespace)."""
    path = _sysctl_path(name)
    try:
        with open(path) as file:
            if file.read().strip() == "1":
                return True, None
    except OSError as e:
        return False, (f"net.netfilter.{name} cannot be read ({e.strerror}): is nf_conntrack "
                       "loaded? (a firewall rule using conntrack loads it)")
    try:
        with open(path, "w") as file:
            file.write("1\n")
    except OSError as e:
        return False, (f"net.netfilter.{name} is 0 and cannot be set to 1 ({e.strerror}); "
                       f"set it with: sysctl -w net.netfilter.{name}=1")
    log.info("set net.netfilter.%s=1", name)
    return True, None


# conntrack's timeout sysctls in the C core's order (_cmeter.h FP_CT_*): TCP by
# state (SYN_SENT2 has SYN_SENT's), then UDP, UDP streams, ICMP, ICMPv6, others
TIMEOUT_SYSCTLS = (
    None, "tcp_timeout_syn_sent", "tcp_timeout_syn_recv", "tcp_timeout_established",
    "tcp_timeout_fin_wait", "tcp_timeout_close_wait", "tcp_timeout_last_ack",
    "tcp_timeout_time_wait", "tcp_timeout_close", "tcp_timeout_syn_sent",
    "udp_timeout", "udp_timeout_stream", "icmp_timeout", "icmpv6_timeout", "generic_timeout")


def conntrack_timeouts():
    """The namespace's conntrack timeouts in ms (0 where unknown): a connection
    that timed out was removed this long after its last packet."""
    timeouts = []
    for name in TIMEOUT_SYSCTLS:
        try:
            with open(_sysctl_path(f"nf_conntrack_{name}")) as file:
                timeouts.append(int(file.read()) * 1000)
        except (OSError, TypeError, ValueError):
            timeouts.append(0)
    return timeouts + [0] * (lib.FP_CT_TIMEOUTS - len(timeouts))


def _settings(max_connections, active_timeout, vanish_grace, buffer_kb, new_events=False):
    return ffi.new("struct fp_conntrack_settings *", {
        "max_connections": max_connections,
        "active_timeout_ms": round(active_timeout * 1000),
        "vanish_grace_ms": round(vanish_grace * 1000),
        "receive_buffer_bytes": buffer_kb * 1024,
        "new_events": new_events,
        "timeouts_ms": conntrack_timeouts(),
    })


class ConntrackSource:
    """The C source: events read on fileno(), dumps on dump(), records out
    of drain_raw(), a batch at a time."""

    def __init__(self, max_connections=16384, active_timeout=300.0, vanish_grace=5.0,
                 buffer_kb=1024, new_events=False):
        """new_events: NEW events too, for start times where the kernel does
        not timestamp connections (DESTROY events and dumps carry the rest)."""
        self._settings = (max_connections, active_timeout, vanish_grace, buffer_kb)
        settings = _settings(max_connections, active_timeout, vanish_grace, buffer_kb,
                             new_events)
        self._error = ffi.new("char[]", lib.FP_ERROR_SIZE)
        source = lib.fp_conntrack_new(settings, self._error)
        if source == ffi.NULL:
            raise ConntrackError(self._error_text())
        self._source = ffi.gc(source, lib.fp_conntrack_free)
        self._batch = ffi.new("struct fp_record[]", DRAIN_BATCH)

    def _error_text(self):
        return ffi.string(self._error).decode(errors="replace")

    def fileno(self):
        return lib.fp_conntrack_fd(self._source)

    def exclude_collectors(self, profiles):
        """Never meter connections to the collectors (the probe's own exports)."""
        lib.fp_conntrack_exclude(self._source, -1, ffi.NULL, 0, 0)
        for protocol, address, port in collector_endpoints(profiles):
            self.exclude(protocol, address, port)

    def exclude(self, protocol, address, port):
        packed = packed_address(address)
        if lib.fp_conntrack_exclude(self._source, protocol, packed, len(packed), port) < 0:
            raise ConntrackError("too many collectors to leave out (32 at most)")

    def timer_fileno(self):
        return lib.fp_conntrack_timer_fd(self._source)

    def hold(self, milliseconds):
        """Arms (or, with 0, clears) the source's one-shot timer."""
        if lib.fp_conntrack_hold(self._source, milliseconds) < 0:
            raise ConntrackError(f"timerfd: {os.strerror(ffi.errno)}")

    def read(self, now_ms):
        """Handles waiting events; resyncs with a dump after an overrun."""
        n = lib.fp_conntrack_read(self._source, now_ms, self._error)
        if n < 0:
            raise ConntrackError(self._error_text())
        return n

    def dump(self, now_ms):
        if lib.fp_conntrack_dump(self._source, now_ms, self._error) < 0:
            raise ConntrackError(self._error_text())

    def baseline(self, now_ms, stopped_ms=0):
        """The first dump: connections open now report only what comes next;
        with stopped_ms, counts those open since before that stop."""
        if lib.fp_conntrack_baseline(self._source, now_ms, stopped_ms, self._error) < 0:
            raise ConntrackError(self._error_text())

    def expire(self, now_ms):
        lib.fp_conntrack_expire(self._source, now_ms)

    def flush(self, now_ms):
        """Every connection ends now (forced_end), with fresh counters."""
        try:
            self.read(now_ms)  # DESTROYs that are waiting carry final counters
            self.dump(now_ms)
        except ConntrackError as e:
            log.warning("conntrack: %s (ending connections with their last known counters)", e)
        self.end_all(now_ms)

    def end_all(self, now_ms):
        """Every tracked connection ends now (forced_end), with what is known."""
        lib.fp_conntrack_flush(self._source, now_ms)

    def reconfigure(self, max_connections, active_timeout, vanish_grace, buffer_kb):
        """New settings, the same source: a new capacity rebuilds the table
        around the connections it holds, the event socket goes on."""
        settings = _settings(max_connections, active_timeout, vanish_grace, buffer_kb)
        if lib.fp_conntrack_reconfigure(self._source, settings, self._error) < 0:
            raise ConntrackError(self._error_text())
        self._settings = (max_connections, active_timeout, vanish_grace, buffer_kb)

    def grow_table(self, max_connections):
        current, active_timeout, vanish_grace, buffer_kb = self._settings
        if max_connections > current:
            self.reconfigure(max_connections, active_timeout, vanish_grace, buffer_kb)

    def grow_buffer(self, buffer_kb):
        max_connections, active_timeout, vanish_grace, current = self._settings
        if buffer_kb > current:
            self.reconfigure(max_connections, active_timeout, vanish_grace, buffer_kb)

    @property
    def pending(self):
        return lib.fp_conntrack_pending(self._source)

    def drain_raw(self):
        """Yields (struct fp_record batch, count) until nothing is waiting."""
        while True:
            n = lib.fp_conntrack_drain(self._source, self._batch, DRAIN_BATCH)
            if n == 0:
                return
            yield self._batch, n

    def drain(self):
        """Every waiting record as a dict (tests, tools)."""
        return [conntrack_record_to_dict(batch[i])
                for batch, n in self.drain_raw() for i in range(n)]

    def counters(self):
        counters = ffi.new("struct fp_conntrack_counters *")
        lib.fp_conntrack_counters(self._source, counters)
        return {name: getattr(counters, name) for name, _ in ffi.typeof(counters[0]).fields}


def conntrack_record_to_dict(r):
    """A conntrack record: the biflow record plus post-NAT addresses, ports,
    conntrack id, mark and zone."""
    record = record_to_dict(r, bidirectional=True)
    version = r.ip_version
    size = 4 if version == 4 else 16
    post = {"post_src_addr": bytes(ffi.buffer(r.post_src_addr))[:size],
            "post_dst_addr": bytes(ffi.buffer(r.post_dst_addr))[:size]}
    import ipaddress  # str() as every other record's addresses (records.py)
    record.update({key: str(ipaddress.ip_address(value)) for key, value in post.items()})
    record.update(post_src_port=r.post_src_port, post_dst_port=r.post_dst_port,
                  flow_id=r.flow_id, conntrack_mark=r.conntrack_mark,
                  conntrack_zone=r.conntrack_zone)
    return record


def kernel_connections():
    """Connections in the kernel's table now (this network namespace), 0 if unknown."""
    try:
        with open(_sysctl_path("nf_conntrack_count")) as file:
            return int(file.read())
    except (OSError, ValueError):
        return 0


def kernel_identity():
    """The boot and network namespace a conntrack table belongs to: a stop's
    state says nothing about another's."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            boot = file.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/net').st_ino}"
    except OSError:
        return None


def collector_endpoints(profiles):
    """(protocol number, address, port) of every collector, names resolved."""
    endpoints = set()
    for profile in profiles:
        protocol = socket.IPPROTO_TCP if profile.transport == "tcp" else socket.IPPROTO_UDP
        try:
            infos = socket.getaddrinfo(ascii_host(profile.host), profile.effective_port,
                                       proto=protocol)
        except OSError as e:
            log.warning("conntrack: collector %s not resolved (%s): its export traffic may be "
                        "metered", profile.host, e)
            continue
        endpoints |= {(protocol, info[4][0], profile.effective_port) for info in infos}
    return sorted(endpoints)


class ConntrackService:
    """The source inside the daemon: opened, reloaded, ticked, flushed and
    reported by the Probe; its event socket is one more fd in the loop."""

    def __init__(self, probe):
        self.probe = probe
        self.source = None
        self.settings = None
        self.error = None
        self.accounting = self.timestamps = None
        self.next_dump = 0.0
        self.registered_fd = None
        self.holding = False
        self.retired = {}   # counters of sources closed by a reload
        self.ended_while_stopped = 0   # open at a stop, gone at the next start
        self.logged_losses = 0

    # ---- lifecycle ----

    def before_reload(self, new_config, now_ms):
        """Closes the source (exporting what it holds) when the new config
        turns it off; called while the old exporter still runs. Any other
        change keeps the source (apply reconfigures it): closing it and
        starting another lost the connections between the two and counted
        some twice (issue 23)."""
        if self.source is not None and not new_config.conntrack.tracks:
            self.close(now_ms)

    def apply(self, config, now_ms):
        """Opens the source when the config wants it and it is not open;
        reconfigures the open one in place."""
        settings = config.conntrack
        if not settings.tracks:
            return
        if self.source is not None:
            self.reconfigure(config)
            return
        self.settings = settings
        self.accounting, accounting_error = ensure_sysctl("nf_conntrack_acct")
        self.timestamps, _ = ensure_sysctl("nf_conntrack_timestamp")
        stop = self._previous_stop()
        try:
            self.source = ConntrackSource(
                max_connections=settings.conntrack_max_connections,
                active_timeout=config.meter.active_timeout,
                vanish_grace=settings.conntrack_vanish_grace,
                buffer_kb=settings.conntrack_buffer_kb,
                new_events=not self.timestamps)
            self.source.exclude_collectors(config.collectors)
            # open connections: reported from now on
            self.source.baseline(now_ms, stop["stopped_ms"] if stop else 0)
        except ConntrackError as e:
            self.source = None
            self.error = f"conntrack source cannot start: {e}"
            log.error("%s (retrying at every dump interval)", self.error)
            self.next_dump = time.monotonic() + settings.conntrack_dump_interval
            return
        self.error = accounting_error
        if accounting_error:
            log.error("conntrack: %s: connections carry no counters, so they make no records "
                      "(counted as ends_without_traffic)", accounting_error)
        self.next_dump = time.monotonic() + settings.conntrack_dump_interval
        self._register()
        self._report_start(stop, now_ms)
        self.export(now_ms)

    # ---- the gap between a stop and the next start ----

    def _previous_stop(self):
        """What the previous stop left ({stopped_ms, open}) in the run state
        file, or None (none, another boot's or another namespace's)."""
        run_state = getattr(self.probe, "run_state", None)
        state = run_state.get("conntrack") if run_state else None
        def whole(value, high):
            return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high

        # nothing in the file is trusted: a time in the past, a count that fits
        if (not isinstance(state, dict) or state.get("kernel") != kernel_identity()
                or not whole(state.get("stopped_ms"), int(time.time() * 1000))
                or not whole(state.get("open"), 1 << 32)):
            return None
        return state

    def _save_stop(self, now_ms, open_connections):
        run_state = getattr(self.probe, "run_state", None)
        state = {"kernel": kernel_identity(), "stopped_ms": now_ms, "open": open_connections}
        if run_state is None or not run_state.put("conntrack", state):
            log.warning("conntrack: the stop is not recorded (%s): the next start cannot say "
                        "what ended meanwhile",
                        run_state.error if run_state else "no run state file")

    def _report_start(self, stop, now_ms):
        """The kernel keeps no count of connections that come and go: what
        ended while the source was stopped is the connections open at the
        stop that are gone now; those that began and ended in between are
        not known at all."""
        counters = self.source.counters()
        opened = (f"conntrack source started: {counters['open_at_start']} connections already "
                  f"open are reported from now on (capacity "
                  f"{self.settings.conntrack_max_connections}); ")
        if stop is None:
            log.info("%sconnections that ended before are not (no earlier stop recorded here)",
                     opened)
        elif not self.timestamps:
            log.info("%sconnections that ended while stopped are not (how many is not known: "
                     "net.netfilter.nf_conntrack_timestamp is off)", opened)
        else:
            ended = max(0, stop["open"] - counters["open_since_stop"])
            self.ended_while_stopped += ended
            log.info("%s%d connections ended while stopped (%.1f s) are not, nor those that "
                     "began and ended meanwhile (the kernel keeps no count of them)", opened,
                     ended, max(0, now_ms - stop["stopped_ms"]) / 1000)

    def reconfigure(self, config):
        """The open source takes the new settings: its table, its event socket
        and what is queued there go on, so nothing is lost or reported twice."""
        settings = config.conntrack
        try:
            self.source.reconfigure(settings.conntrack_max_connections, config.meter.active_timeout,
                                    settings.conntrack_vanish_grace, settings.conntrack_buffer_kb)
        except ConntrackError as e:
            log.error("conntrack: %s: the source keeps its previous settings", e)
        else:
            if settings.conntrack_max_connections != self.settings.conntrack_max_connections:
                log.info("conntrack source: table resized from %d to %d connections, %d tracked",
                         self.settings.conntrack_max_connections,
                         settings.conntrack_max_connections,
                         self.source.counters()["connections"])
            self.settings = settings
        try:
            self.source.exclude_collectors(config.collectors)
        except ConntrackError as e:
            log.warning("conntrack: %s", e)

    def _register(self):
        selector = self.probe.selector
        if selector and self.source and self.registered_fd is None:
            self.registered_fd = self.source.fileno()
            selector.register(self.registered_fd, selectors.EVENT_READ, self._on_readable)

    def _unregister(self):
        if self.registered_fd is not None and self.probe.selector:
            try:
                self.probe.selector.unregister(self.registered_fd)
            except (KeyError, ValueError):
                pass
        self.registered_fd = None

    def _hold(self):
        """A trickle of events: read it every HOLD_MS rather than per event."""
        selector = self.probe.selector
        self._unregister()
        self.source.hold(HOLD_MS)
        self.registered_fd = self.source.timer_fileno()
        selector.register(self.registered_fd, selectors.EVENT_READ, self._on_timer)
        self.holding = True

    def _release(self):
        self._unregister()
        self.source.hold(0)
        self.holding = False
        self._register()

    def _on_timer(self, events):
        messages = self._read()
        if messages == 0 or messages >= TRICKLE:
            self._release()      # quiet, or busy: wait for the socket again
        else:
            self.source.hold(HOLD_MS)

    def close(self, now_ms):
        """Every connection ends (forced_end) and is exported."""
        if self.source is None:
            return
        self._unregister()
        try:
            self.source.grow_buffer(CLOSE_BUFFER_KB)
        except ConntrackError as e:
            log.warning("conntrack: %s", e)
        # a DESTROY carries final counters: what the socket holds first, then
        # fresh counters for the rest from a dump, which also reaps the expired
        # connections the kernel has not collected yet (their DESTROYs follow)
        self._read_until_quiet(now_ms)
        try:
            # room for every connection the kernel has: those the table could
            # not hold are reported whole too (they ended here, as far as we know)
            self.source.grow_table(kernel_connections() + 1024)
            self.source.dump(now_ms)
        except ConntrackError as e:
            log.warning("conntrack: %s (ending connections with their last known counters)", e)
        self._read_until_quiet(now_ms)
        self.source.end_all(now_ms)
        self.export(now_ms)
        counters = self.source.counters()
        for key, value in counters.items():
            if key not in GAUGES:
                self.retired[key] = self.retired.get(key, 0) + value
        self._save_stop(now_ms, counters["listed"])
        log.info("conntrack source closed: %d records, %d connections open end here",
                 counters["records"], counters["listed"])
        self.source = None

    def _read_until_quiet(self, now_ms):
        """Reads and exports (a read stops when the records waiting fill the
        reserve) until the socket stays empty for CLOSE_QUIET_S; bounded, as
        events keep coming."""
        deadline = time.monotonic() + CLOSE_LIMIT_S
        while time.monotonic() < deadline:
            try:
                messages = self.source.read(now_ms)
            except ConntrackError as e:
                log.warning("conntrack: %s", e)
                return
            self.export(now_ms)
            if messages == 0 and not select.select([self.source.fileno()], [], [],
                                                   CLOSE_QUIET_S)[0]:
                return

    # ---- the loop ----

    def _on_readable(self, events):
        if self._read() < TRICKLE and self.probe.selector:
            self._hold()

    def _read(self):
        now_ms = self.probe.now_ms()
        try:
            messages = self.source.read(now_ms)
        except ConntrackError as e:
            self.error = str(e)
            log.error("conntrack: %s", e)
            messages = 0
        if self.source.pending >= EXPORT_BATCH:
            self.export(now_ms)
        return messages

    def tick(self, now_ms):
        if self.settings is None or not self.settings.tracks:
            return
        if self.source is None:
            if time.monotonic() >= self.next_dump:
                self.apply(self.probe.config, now_ms)   # retry a source that failed
            return
        if time.monotonic() >= self.next_dump:
            self.next_dump = time.monotonic() + self.settings.conntrack_dump_interval
            try:
                self.source.read(now_ms)
                self.source.dump(now_ms)
            except ConntrackError as e:
                self.error = str(e)
                log.error("conntrack: %s", e)
        self.source.expire(now_ms)
        self.export(now_ms)
        self._log_losses()

    def _log_losses(self):
        counters = self.counters()
        lost = counters.get("ends_before_baseline", 0) + counters.get("records_lost", 0)
        if lost > self.logged_losses:
            log.warning("conntrack: %d connections lost so far: %d open before the source "
                        "started ended untracked, what they carried since is not reported "
                        "(ends_before_baseline: the table was full at the start, or they ended "
                        "as it started), %d had no slot for their record (records_lost)", lost,
                        counters.get("ends_before_baseline", 0), counters.get("records_lost", 0))
            self.logged_losses = lost

    def export(self, now_ms):
        for batch, count in self.source.drain_raw():
            self.probe.sinks.deliver(batch, count, now_ms)   # every sink, as capture's

    # ---- status ----

    def counters(self):
        current = self.source.counters() if self.source else {}
        keys = set(current) | set(self.retired)
        return {key: current.get(key, 0) + (0 if key in GAUGES else self.retired.get(key, 0))
                for key in keys}

    def status(self, config, capture_counters):
        if not config.conntrack.tracks and self.source is None:
            return None
        counters = self.counters()
        capacity = config.conntrack.conntrack_max_connections
        status = {
            "running": self.source is not None,
            "error": self.error,
            "accounting": self.accounting,
            "timestamps": self.timestamps,
            "connections": counters.get("connections", 0),
            "capacity": capacity,
            "table_fill": round(counters.get("connections", 0) / capacity, 4),
            **{key: counters.get(key, 0) for key in (
                "peak", "events_new", "events_destroy", "dumps", "overruns", "resyncs",
                "overflows", "released_by_resize", "vanished", "destroys_untracked",
                "ends_before_baseline", "tracked_late", "ends_without_traffic", "records",
                "records_lost", "destroys_after_vanish",
                "packets", "octets", "memory_bytes", "listed", "open_at_start")},
            "ended_while_stopped": self.ended_while_stopped,
            "not_seen_by_capture": None,
        }
        if config.conntrack.source == "both":
            status["not_seen_by_capture"] = {
                "packets": max(0, status["packets"] - capture_counters["packets_metered"]),
                "octets": max(0, status["octets"] - capture_counters["octets_metered"]),
            }
        return status
