"""The exporter that feeds every collector, by their profiles (profile.py).

A profile says what one collector gets: protocol, address, transport, field
list, uniflow or biflow, observation domain, template refresh. Every
collector receives every record, except collectors sharing a group: those
split the group's records round-robin.
"""

import itertools
import math
import os
import re
import select
import selectors
import time

from flowprobe.export.profile import (  # noqa: F401  (their home is profile.py)
    DEFAULT_PORTS,
    CollectorProfile,
    ProfileError,
    profile_from_url,
)
from flowprobe.export.transport import TransportError, open_transport
from flowprobe.schema import PROTOCOLS, TRANSPORTS  # noqa: F401  (their home)
from flowprobe.sources import interface_counters

_spool_serial = itertools.count(1)


def _spool(profile, spool_dir):
    if not profile.spool_kb:
        return None
    if not spool_dir:
        raise ProfileError("spool_kb", profile.spool_kb, "0 (no spool directory is set)")
    # a reload's new exporter opens its spool while the old one still holds its own
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", profile.name or profile.label)
    name = f"{name}.{os.getpid()}.{next(_spool_serial)}.spool"
    from flowprobe.export.spool import Spool, SpoolError  # only with a spool
    try:
        return Spool(os.path.join(spool_dir, name), profile.spool_kb * 1024)
    except SpoolError as e:
        raise TransportError(str(e)) from None


class Collector:
    """One profile: its encoder, its transport, and what became of records."""

    def __init__(self, profile, *, boot_ms, meter_biflow, interfaces=None, spool_dir=None,
                 resolver=None, sampling_interval=1):
        self.profile = profile
        self.meter_biflow = meter_biflow
        # shared with the captures, which fill it as they open: never a copy
        self.interfaces = {} if interfaces is None else interfaces
        self.interfaces_sent = None     # the names the collector has in this session
        # sFlow's counter samples: the captures' interfaces as they come and go
        self.counter_interfaces = interfaces if interfaces is not None else {}
        reliable = profile.transport == "tcp"
        refresh = dict(template_refresh_seconds=profile.template_refresh_seconds,
                       template_refresh_messages=profile.template_refresh_packets,
                       reliable=reliable)
        # each protocol's encoder imported when a collector speaks it
        if profile.protocol == "ipfix":
            from flowprobe.export.ipfix import IpfixEncoder
            self.encoder = IpfixEncoder(profile.field_names, biflow=profile.biflow,
                                        observation_domain=profile.observation_domain,
                                        mtu=profile.mtu, **refresh)
        elif profile.protocol == "netflow9":
            from flowprobe.export.netflow9 import Netflow9Encoder
            self.encoder = Netflow9Encoder(profile.field_names,
                                           source_id=profile.observation_domain,
                                           mtu=profile.mtu, boot_ms=boot_ms, **refresh)
        elif profile.protocol == "sflow":
            from flowprobe.export.sflow import SflowEncoder
            self.encoder = SflowEncoder(sub_agent_id=profile.observation_domain,
                                        mtu=profile.mtu, boot_ms=boot_ms)
            self.last_counters_ms = boot_ms
        else:
            from flowprobe.export.netflow5 import Netflow5Encoder
            self.encoder = Netflow5Encoder(engine_id=profile.observation_domain,
                                           mtu=profile.mtu, boot_ms=boot_ms)
        self.encoder.sampling_interval = sampling_interval
        self.now_ms = boot_ms
        self.records_offered = 0
        self.last_template_ms = None
        self.last_stats_ms = None
        options = dict(source_address=profile.source_address or None,
                       queue_limit=profile.queue_limit, resolver=resolver)
        if reliable or profile.protocol != "netflow5":
            # TCP: every connection; UDP: a collector back from being down
            options["on_connect"] = self._new_session
        options["spool"] = spool = _spool(profile, spool_dir)
        try:
            self.transport = open_transport(profile.transport, profile.host,
                                            profile.effective_port, **options)
        except TransportError:
            if spool is not None:
                spool.close()
            raise

    def _new_session(self):
        """A (re)connected TCP session, or a UDP collector back from being
        down, starts with the templates, ahead of what was queued meanwhile."""
        sent = self.transport.stats()
        queued = self.records_offered - sent["records_sent"] - sent["records_not_sent"]
        self.encoder.reset()
        return b"".join(message for message, _ in self._templates(self.now_ms, queued))

    def _templates(self, now_ms, records_queued=0):
        messages = self.encoder.template_messages(now_ms, records_queued)
        if messages:
            self.last_template_ms = now_ms
        if messages:
            self.interfaces_sent = None   # a new session: the names go again (_send_names)
        # the interval as an options record: it takes the next sequence number,
        # so not ahead of queued records (theirs are taken); the next refresh
        # (UDP) or session (TCP) carries it then
        if messages and not records_queued:
            messages += self.encoder.sampling_messages(now_ms)
        return messages

    def _send_names(self, now_ms):
        """interfaceName options for the ingress interfaces, when the
        collector does not have them yet (a new session, a new interface).
        Never from inside the transport (on_connect): sent here, they take
        sequence numbers after every message already queued, not ahead of
        them."""
        if self.interfaces and self.interfaces_sent != self.interfaces:
            self.interfaces_sent = dict(self.interfaces)
            self._send(self.encoder.interface_messages(now_ms, self.interfaces_sent))

    def _send(self, messages):
        self.records_offered += sum(records for _, records in messages)
        self.transport.send_all(messages)

    def start(self, now_ms):
        self.now_ms = now_ms
        if self.profile.transport == "udp":
            self._send(self._templates(now_ms))
            self._send_names(now_ms)
            self.send_stats(now_ms)  # before any data: no collector sees a sequence gap
        else:
            # over TCP the templates open each session (_new_session), never the data
            self.encoder.templates_sent(now_ms)

    def export(self, records, count, now_ms, stride=1, offset=0):
        self.now_ms = now_ms
        if self.encoder.templates_due(now_ms) and self.profile.transport == "udp":
            self._send(self._templates(now_ms))
        self._send(self.encoder.encode(records, count, now_ms, self.meter_biflow, stride, offset))

    def tick(self, now_ms, packets_ignored=0):
        self.now_ms = now_ms
        if self.profile.transport == "udp" and self.encoder.templates_due(now_ms):
            self._send(self._templates(now_ms))
        if self.transport.connected():
            self._send_names(now_ms)
        interval_ms = self.profile.stats_interval * 1000
        if interval_ms and now_ms - (self.last_stats_ms or 0) >= interval_ms:
            self.send_stats(now_ms, packets_ignored)
        if self.profile.protocol == "sflow":
            self._counters_due(now_ms)
        self.transport.tick(time.monotonic())

    # ---- sFlow: packet samples and interface counters ----

    def _agent_address(self):
        """The configured source address, or the one the route to the
        collector leaves from (the connected socket's)."""
        return self.profile.source_address or self.transport.local_address() or "0.0.0.0"

    def export_samples(self, samples, count, now_ms, drops=None):
        self.now_ms = now_ms
        self.encoder.agent_address = self._agent_address()
        self._send(self.encoder.encode_samples(samples, count, now_ms, drops))

    def _counters_due(self, now_ms):
        interval_ms = self.profile.counter_interval * 1000
        if not interval_ms or now_ms - self.last_counters_ms < interval_ms:
            return
        self.last_counters_ms = now_ms
        counters = [c for c in map(interface_counters.read, sorted(self.counter_interfaces)) if c]
        if counters:
            self.encoder.agent_address = self._agent_address()
            self._send(self.encoder.counter_messages(now_ms, counters))

    def send_stats(self, now_ms, packets_ignored=0):
        sent = self.transport.stats()
        stats = {"messages": sent["messages_sent"], "records": sent["records_sent"],
                 "octets": sent["octets_sent"], "records_not_sent": sent["records_not_sent"],
                 "packets_ignored": packets_ignored}
        message = self.encoder.stats_message(now_ms, stats)
        if message is not None:   # NetFlow v5 has no options
            self.last_stats_ms = now_ms
            self._send([message])

    def stats(self):
        stats = dict(self.transport.stats(), collector=self.profile.label,
                     protocol=self.profile.protocol, host=self.profile.host,
                     port=self.profile.port, transport=self.profile.transport,
                     group=self.profile.group or None,
                     last_template_ms=self.last_template_ms)
        stats["records_not_exportable"] = self.encoder.records_not_exportable
        if self.profile.protocol == "sflow":   # its "records" are samples
            stats.update(flow_samples=self.encoder.samples_encoded,
                         counter_samples=self.encoder.counter_samples,
                         samples_not_encodable=self.encoder.samples_not_encodable)
        return stats


def watched(collectors):
    watched = []
    for collector in collectors:
        transport = collector.transport
        fd = transport.fileno()
        if fd is None:
            continue
        events = selectors.EVENT_READ
        if transport.wants_write():
            events |= selectors.EVENT_WRITE

        def on_event(ready, transport=transport):
            if ready & selectors.EVENT_READ:
                transport.on_readable()
            if ready & selectors.EVENT_WRITE:
                transport.on_writable()
        watched.append((fd, events, on_event))
    return watched


def busy(collectors):
    return any(c.transport.wants_write() for c in collectors)


def pump(collectors, timeout_s):
    """Moves queued messages into sockets and reads what collectors sent
    back; waits up to timeout_s, only while something is still queued (at
    a stop: the loop has ended).  Never longer."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready_now = watched(collectors)
        wait = min(deadline - time.monotonic(), 0.1) if busy(collectors) else 0
        for on_event, ready in _poll(ready_now, wait):
            on_event(ready)
        for collector in collectors:
            collector.transport.tick(time.monotonic())
        if not busy(collectors) or time.monotonic() >= deadline:
            return


def _poll(ready_now, wait):
    """[(callback, selectors events)] of the (fd, events, callback) ready
    within wait seconds: one poll(2), read as selectors.PollSelector reads
    it, without a selector's objects (pump runs at every tick of the loop)."""
    poller = select.poll()
    callbacks = {}
    for fd, events, on_event in ready_now:
        poller.register(fd, (select.POLLIN if events & selectors.EVENT_READ else 0)
                        | (select.POLLOUT if events & selectors.EVENT_WRITE else 0))
        callbacks[fd] = (on_event, events)
    ready = []
    for fd, event in poller.poll(math.ceil(wait * 1000) if wait > 0 else 0):
        on_event, events = callbacks[fd]
        found = (selectors.EVENT_WRITE if event & ~select.POLLIN else 0) \
            | (selectors.EVENT_READ if event & ~select.POLLOUT else 0)
        ready.append((on_event, found & events))
    return ready


class Exporter:
    """Every collector gets every record; a group's members take turns."""

    def __init__(self, profiles, *, boot_ms, meter_biflow=False, interfaces=None,
                 spool_dir=None, carry_over=None, resolver=None, sampling_interval=1):
        """carry_over: the exporter a reload replaces. A collector whose
        profile is unchanged (and records are shaped as before) goes on here
        with its session: sequence numbers, templates, queue and spool."""
        self.meter_biflow, self.spool_dir = meter_biflow, spool_dir
        self.collectors = []
        self.carried = set()   # ids of the collectors taken over from carry_over
        available = []
        if carry_over is not None and (carry_over.meter_biflow, carry_over.spool_dir) == \
                (meter_biflow, spool_dir):
            available = list(carry_over.collectors)
        try:
            for profile in profiles:
                kept = next((c for c in available if c.profile == profile), None)
                if kept is not None:
                    available.remove(kept)
                    kept.profile = profile   # the same settings; maybe a new section name
                    if kept.encoder.sampling_interval != sampling_interval:
                        kept.encoder.sampling_interval = sampling_interval
                        kept.encoder.reset()     # the new interval goes out with the templates
                    self.carried.add(id(kept))
                    self.collectors.append(kept)
                    continue
                self.collectors.append(Collector(profile, boot_ms=boot_ms,
                                                 meter_biflow=meter_biflow,
                                                 interfaces=interfaces, spool_dir=spool_dir,
                                                 resolver=resolver,
                                                 sampling_interval=sampling_interval))
        except TransportError:
            self.close()
            raise
        self.groups = {}
        for collector in self.collectors:
            if collector.profile.group:
                self.groups.setdefault(collector.profile.group, []).append(collector)
        self._turn = {name: 0 for name in self.groups}

    def start(self, now_ms, boot_ms=None):
        """Templates out; boot_ms (sysUptime zero for v9/v5) may be learnt
        only now, from the first records' capture."""
        for collector in self.collectors:
            if id(collector) in self.carried:
                continue   # its session goes on: nothing to announce
            if boot_ms is not None and collector.encoder.boot_ms is not None:
                collector.encoder.boot_ms = boot_ms
            collector.start(now_ms)

    def export(self, records, count, now_ms):
        for collector in self.collectors:
            if not collector.profile.group:
                collector.export(records, count, now_ms)
        for name, members in self.groups.items():
            size, turn = len(members), self._turn[name]
            for position, member in enumerate(members):
                # record i goes to member (i + turn) % size
                member.export(records, count, now_ms, size, (position - turn) % size)
            self._turn[name] = (turn + count) % size

    def tick(self, now_ms, packets_ignored=0):
        for collector in self.collectors:
            collector.tick(now_ms, packets_ignored)
        self.pump(0)

    @property
    def takes_records(self):
        """False when every collector is sFlow: flow records go nowhere."""
        return any(c.profile.protocol != "sflow" for c in self.collectors)

    @property
    def takes_samples(self):
        return any(c.profile.protocol == "sflow" for c in self.collectors)

    def export_samples(self, samples, count, now_ms, drops=None):
        """A batch of sampled packets (the meter's ring) to every sFlow collector."""
        for collector in self.collectors:
            if collector.profile.protocol == "sflow":
                collector.export_samples(samples, count, now_ms, drops)

    def watched(self, collectors=None):
        """(fd, events, callback(ready events)) for every transport with a
        socket: read always (ICMP errors, TCP closes), write while queued.
        The daemon's loop and pump() wait on these."""
        return watched(self.collectors if collectors is None else collectors)

    def busy(self, collectors=None):
        return busy(self.collectors if collectors is None else collectors)

    def pump(self, timeout_s, collectors=None):
        pump(self.collectors if collectors is None else collectors, timeout_s)

    def retire(self, now_ms, packets_ignored=0, handed_over=()):
        """At a reload: the statistics of the collectors that end (those not
        handed over to the new exporter); they are returned to be delivered
        from the loop until their deadline, never waited for here."""
        ending = [c for c in self.collectors if id(c) not in handed_over]
        for collector in ending:
            collector.send_stats(now_ms, packets_ignored)
        return ending

    def finish(self, now_ms, packets_ignored=0, timeout_s=5.0, handed_over=()):
        """Statistics last, then what waits is delivered (within timeout_s);
        collectors handed over to a new exporter (its .carried) go on."""
        ending = [c for c in self.collectors if id(c) not in handed_over]
        for collector in ending:
            collector.send_stats(now_ms, packets_ignored)
        self.pump(timeout_s, ending)   # a carried collector's backlog is not ours to wait for
        for collector in ending:
            collector.transport.close()

    def close(self):
        """Closes this exporter's own collectors (not those it took over:
        their old exporter still has them while a reload may fail)."""
        for collector in self.collectors:
            if id(collector) not in self.carried:
                collector.transport.close()

    def follow_names(self, resolver):
        """Collectors given by name are looked up again through resolver
        (export/transport.py): DNS may move them while the probe runs."""
        for collector in self.collectors:
            collector.transport.names = resolver

    def endpoints(self):
        """(transport, address, port) of every collector, addresses as
        resolved: what the captures leave out (sources/capture.py)."""
        return tuple((c.profile.transport, c.transport.address[0], c.transport.address[1])
                     for c in self.collectors)

    def stats(self):
        return [collector.stats() for collector in self.collectors]
