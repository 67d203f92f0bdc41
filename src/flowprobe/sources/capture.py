"""Live capture on the configured interfaces, as one source of the daemon.

A CaptureSet keeps one Capture per configured interface: it resolves the
name (a device, or an OpenWrt logical name netifd knows), opens a handle
per direction in the meter, registers it on the loop's selector, and
retries an interface that is missing or went away every RETRY_S.  Closing
is always sealed first: no new packet is taken and what the kernel holds
is read, so a stop or a reopen loses nothing it could have read.  While an
interface is not captured, the packets its device passed are taken from
the kernel's own counters and reported (packets_not_captured).

Packets never pass through here: the meter reads them in C; the set only
calls on_records() after each read so records move on in batches.
"""

import logging
import os
import selectors
import socket
import time

from flowprobe.frozen import replace
from flowprobe.meter import DLT_EN10MB, LINKTYPE_OF_ARPHRD, LIVE_BLOCK_TIMEOUT_S, CaptureError

log = logging.getLogger("flowprobe")

RETRY_S = 5.0                # a missing or failed interface is tried again this often
DISPATCH_PACKETS = 4096      # packets read per call, before records are moved on
DISPATCH_ROUNDS = 16         # calls per readable event: other sources get their turn
SEAL_MARGIN_S = 0.05         # beyond the capture ring's block timeout, before closing
SYS_NET = "/sys/class/net"   # a string: pathlib imports urllib on Python 3.11
# counted per socket, but each handle of a 'both' interface sees every packet
# of the device: the interface's figure is one handle's, not their sum
PER_DEVICE = ("pcap_received", "pcap_if_dropped")
PER_HANDLE = ("packets_read", "octets_read", "pcap_dropped")


def _sys_text(device, *names):
    with open(os.path.join(SYS_NET, device, *names)) as file:
        return file.read()


class Capture:
    """One configured interface and what is open for it."""

    def __init__(self, config, device="", ifindex=0, sources=None, error=None, retry_at=0.0,
                 opened_at=None):
        self.config = config                 # configuration.InterfaceConfig
        self.device = device
        self.ifindex = ifindex
        self.sources = {} if sources is None else sources   # source id -> direction
        self.error = error
        self.retry_at = retry_at
        self.opened_at = opened_at
        # packets the kernel counted on the device while it was not captured,
        # followed through the device going away and coming back
        self.down_since = None               # the device's counter when capture stopped
        self.down_last = None                # its latest reading since
        self.packets_while_down = 0          # over the earlier stretches


def exclusion_filter(endpoints):
    """A BPF expression matching the probe's own export traffic, both ways:
    to each collector, its replies (TCP), and its ICMP unreachables.  By
    address, never by name: libpcap would resolve a name at every compile,
    blocking the loop whenever DNS is slow."""
    terms = []
    for transport, address, port in endpoints:
        terms.append(f"({transport} and dst host {address} and dst port {port})")
        # a UDP export message larger than the path's MTU leaves in fragments,
        # and only the first carries the ports: the others, by host and
        # protocol (a fragmented ping to the collector's host is still metered)
        if transport == "udp":
            terms.append(f"(ip6 and dst host {address} and ip6[6] == 44 and ip6[40] == 17)"
                         if ":" in address else
                         f"(ip and dst host {address} and ip[9] == 17 and "
                         "ip[6:2] & 0x1fff != 0)")
        terms.append(f"({transport} and src host {address} and src port {port})")
        terms.append(f"(icmp6 and src host {address} and icmp6[icmp6type] == "
                     "icmp6-destinationunreach)" if ":" in address else
                     f"(icmp and src host {address} and icmp[icmptype] == icmp-unreach)")
    return " or ".join(terms)


def capture_filter(user_filter, endpoints):
    """The filter a capture runs with: the user's, minus the probe's own
    export traffic, which it must never meter."""
    own = exclusion_filter(endpoints)
    if not own:
        return user_filter
    if not user_filter:
        return f"not ({own})"
    return f"({user_filter}) and not ({own})"


def directions_of(interface):
    # "both" opens one handle a direction, so every record says which way it went
    return ("in", "out") if interface.direction == "both" else (interface.direction,)


def device_packets(device, direction):
    """The kernel's own packet counters of a device, in the capture's
    direction(s); None when the device is gone."""
    names = {"in": ("rx_packets",), "out": ("tx_packets",)}.get(direction,
                                                                 ("rx_packets", "tx_packets"))
    try:
        return sum(int(_sys_text(device, "statistics", name)) for name in names)
    except (OSError, ValueError):
        return None


def linktype_of(device):
    """The link type libpcap will give a device's capture (for checking
    filters before any capture is open); Ethernet when it is not there."""
    try:
        arphrd = int(_sys_text(device, "type"))
    except (OSError, ValueError):
        return DLT_EN10MB
    return LINKTYPE_OF_ARPHRD.get(arphrd, DLT_EN10MB)


class CaptureSet:
    def __init__(self, meter, on_records):
        self.meter = meter              # replaced by the daemon when a reload makes a new one
        self.on_records = on_records    # called after reads: records move on in batches
        self.selector = None
        self.netifd = False             # logical names are resolved over ubus when True
        self.captures = {}
        self.interface_names = {}       # ifindex -> name, shared with the exporter
        self.kernel_dropped_closed = 0  # capture-buffer drops of handles since closed
        self.endpoints = ()             # the collectors' addresses the filters leave out

    # ---- what the rest of the daemon asks ----

    def interface_index(self, name):
        capture = self.captures.get(name)
        return capture.ifindex if capture and capture.ifindex else None

    def status(self):
        return [self._status(capture) for capture in self.captures.values()]

    def kernel_dropped(self):
        """Packets the kernel dropped because a capture buffer was full:
        seen at the interface but never metered."""
        open_now = sum(self.meter.source_stats(source)["pcap_dropped"]
                       for capture in self.captures.values() for source in capture.sources)
        return self.kernel_dropped_closed + open_now

    # ---- configuration ----

    def apply(self, interfaces, endpoints, endpoints_changed=False):
        """Brings the open captures to the configured interfaces: a filter
        change is swapped in the kernel, other changes reopen.  endpoints:
        the collectors' (transport, address, port), left out of every capture."""
        self._refilter(interfaces, endpoints, endpoints_changed)
        self.open(interfaces, endpoints)

    def follow(self, interfaces, endpoints):
        """Each tick: interfaces that failed are tried again, and a collector
        that moved (its name resolves elsewhere now) is left out at its new
        address."""
        self.apply(interfaces, endpoints, endpoints_changed=endpoints != self.endpoints)

    def _refilter(self, interfaces, endpoints, endpoints_changed):
        """A capture whose filter alone changed (its own, or the collectors'
        addresses it leaves out) keeps its handles: the kernel swaps the filter."""
        wanted = {i.name: i for i in interfaces}
        for name, capture in self.captures.items():
            interface = wanted.get(name)
            if interface is None:
                continue  # closed by open()
            if replace(interface, bpf_filter="") != replace(capture.config, bpf_filter=""):
                continue  # other options changed: reopened by open()
            if interface == capture.config and not endpoints_changed:
                continue
            bpf = capture_filter(interface.bpf_filter, endpoints)
            try:
                for source in capture.sources:
                    self.meter.set_filter(source, bpf)
            except CaptureError as e:
                log.error("interface %s: %s", name, e)
                continue
            capture.config = interface

    def open(self, interfaces, endpoints):
        """Opens every configured interface not open yet (and closes those
        no longer configured); failures are reported and retried, never fatal."""
        self.endpoints = endpoints
        wanted = {i.name: i for i in interfaces}
        leaving = [name for name in self.captures
                   if name not in wanted or self.captures[name].config != wanted[name]]
        self._seal([self.captures[name] for name in leaving])   # together: one wait
        for name in leaving:
            self._close(self.captures.pop(name), sealed=True)
        now = time.monotonic()
        for name, interface in wanted.items():
            capture = self.captures.setdefault(name, Capture(interface))
            if not capture.sources:
                self._follow_down(capture)
            if capture.sources or now < capture.retry_at:
                continue
            try:
                capture.device, capture.ifindex = self._resolve(interface)
                bpf = capture_filter(interface.bpf_filter, endpoints)
                for direction in directions_of(interface):
                    source = self.meter.open_live(
                        capture.device, ifindex=capture.ifindex, snaplen=interface.snaplen,
                        promiscuous=interface.promiscuous,
                        buffer_bytes=interface.buffer_kb * 1024, bpf_filter=bpf,
                        direction=direction, tunnels=interface.tunnels,
                        l2_flows=interface.l2_flows)
                    capture.sources[source] = direction
                self._sample(capture)
            except (LookupError, CaptureError) as e:
                self._lost(capture, str(e), quiet=capture.error == str(e))
                continue
            capture.error, capture.opened_at = None, now
            self._up(capture)
            self.interface_names[capture.ifindex] = name
            log.info("interface %s: capturing on %s (ifindex %d, %s)", name, capture.device,
                     capture.ifindex, interface.direction)
            if self.selector:
                for source in capture.sources:
                    self.selector.register(self.meter.fileno(source), selectors.EVENT_READ,
                                           self._reader(capture, source))

    def drop_vanished(self):
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
                self._lost(capture, f"{capture.device} (ifindex {capture.ifindex}) is gone")

    def close_all(self):
        """Sealed all at once (one block timeout, not one each), then closed."""
        self._seal(self.captures.values())
        for capture in self.captures.values():
            self._close(capture, sealed=True)

    # ---- one interface ----

    def _resolve(self, interface):
        """(device, ifindex) of a configured interface: a device name, or an
        OpenWrt logical name (lan, wan) that netifd resolves over ubus."""
        device = interface.device or interface.name
        if not os.path.exists(os.path.join(SYS_NET, device)) and not interface.device:
            device = self._netifd_device(interface.name) or device
        try:
            ifindex = int(_sys_text(device, "ifindex"))
        except (OSError, ValueError):
            raise LookupError(f"no such device {device!r}") from None
        return device, ifindex

    def _netifd_device(self, name):
        """The device of an OpenWrt logical interface, from netifd; None
        without ubus or without such an interface."""
        if not self.netifd:
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

    def _sample(self, capture):
        """The interface's 1-in-N sampler (shared by its handles); a fixed
        hash_seed makes its random skips reproducible (tests)."""
        interface, seed = capture.config, self.meter.settings.hash_seed
        self.meter.set_sampling(capture.ifindex, interface.sampling,
                                interface.sampling_algorithm,
                                seed=(seed ^ capture.ifindex) if seed else 0)

    def sample_drops(self):
        """{ifindex: sampled packets lost so far}: the capture buffer's
        overruns and the header ring's (sFlow's drops, per data source)."""
        stats = self.meter.sampling_stats()
        drops = {}
        for capture in self.captures.values():
            lost = stats.get(capture.ifindex, {}).get("samples_lost", 0)
            drops[capture.ifindex] = lost + sum(self.meter.source_stats(s)["pcap_dropped"]
                                                for s in capture.sources)
        return drops

    def sampling(self, capture):
        """Sampled and estimated totals of an interface (estimated: sampled x N)."""
        stats = self.meter.sampling_stats().get(capture.ifindex)
        if not stats or not capture.ifindex:
            return None
        return {"rate": stats["rate"], "algorithm": stats["algorithm"],
                "packets_seen": stats["pool"], "packets_sampled": stats["sampled"],
                "packets_estimated": stats["sampled"] * stats["rate"],
                "samples_lost": stats["samples_lost"]}

    def _status(self, capture):
        status = {"name": capture.config.name, "device": capture.device or None,
                  "ifindex": capture.ifindex or None, "direction": capture.config.direction,
                  "up": bool(capture.sources), "error": capture.error,
                  "packets_not_captured": self._not_captured(capture)}
        stats = [self.meter.source_stats(source) for source in capture.sources]
        for key in PER_HANDLE:
            status[key] = sum(s[key] for s in stats)
        for key in PER_DEVICE:
            status[key] = max((s[key] for s in stats), default=0)
        status["sampling"] = self.sampling(capture)
        return status

    def _lost(self, capture, error, quiet=False):
        """The capture failed or its device went away: closed, counted from
        the device's counters while down, retried every RETRY_S."""
        if not quiet:
            log.warning("interface %s: %s (retrying every %g s)", capture.config.name, error,
                        RETRY_S)
        self._close(capture, keep=True)
        if capture.down_since is None and capture.device:
            reading = device_packets(capture.device, capture.config.direction)
            capture.down_since = capture.down_last = reading
        capture.error, capture.retry_at = error, time.monotonic() + RETRY_S

    def _follow_down(self, capture):
        """The device's counters while it is not captured: what it passed
        stays counted when it goes away, and a device that comes back under
        the name (counters from 0) is counted from 0."""
        reading = (device_packets(capture.device, capture.config.direction)
                   if capture.device else None)
        if capture.down_since is None:
            if reading is not None:          # it appeared: all it passed was missed
                capture.down_since, capture.down_last = 0, reading
            return
        if reading is None or reading < capture.down_last:   # gone, or a new one
            capture.packets_while_down += capture.down_last - capture.down_since
            capture.down_since = capture.down_last = None
            if reading is not None:
                capture.down_since, capture.down_last = 0, reading
        else:
            capture.down_last = reading

    def _up(self, capture):
        if capture.down_since is None:
            return                           # never down since it was first opened
        self._follow_down(capture)
        if capture.down_since is not None:
            missed = capture.down_last - capture.down_since
            capture.packets_while_down += missed
            capture.down_since = capture.down_last = None
            if missed:
                log.warning("interface %s: %d packets passed %s while it was not captured",
                            capture.config.name, missed, capture.device)

    def _not_captured(self, capture):
        """Packets the device passed while it was not captured (kernel counters)."""
        if not capture.sources:
            self._follow_down(capture)
        missed = capture.packets_while_down
        if capture.down_since is not None:
            missed += capture.down_last - capture.down_since
        return missed

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

    def _close(self, capture, keep=False, sealed=False):
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

    def _reader(self, capture, source):
        def on_readable(events):
            try:
                self._read(source)
            except CaptureError as e:  # the interface went away
                self._lost(capture, str(e))
            self.on_records()
        return on_readable

    def _read(self, source):
        for _ in range(DISPATCH_ROUNDS):
            if self.meter.dispatch(source, DISPATCH_PACKETS) == 0 and not self.meter.pending:
                return
            self.on_records()
