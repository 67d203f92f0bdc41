"""Where records go once the meter (or the conntrack source) hands them out:
the exporter and its collectors today; the history store and the live view
are sinks beside it.  A record with nowhere to go is counted, never dropped
unsaid (records_without_collector)."""

import logging
import time

from flowprobe.config import sampling_interval
from flowprobe.export.collectors import Exporter, pump, watched
from flowprobe.export.fields import with_layer2_fields, with_segment_field
from flowprobe.export.spool import SpoolError, prepare_spool_dir
from flowprobe.export.transport import TransportError

log = logging.getLogger("flowprobe")

LEAVE_S = 5.0   # a collector a reload removed delivers what waits for this long


def exporter_changes(old, new):
    """True when a reload needs a new exporter (collectors, or the shape of
    the records they get, or where spools live)."""
    return (new.collectors != old.collectors
            or sampling_interval(new) != sampling_interval(old)
            or new.meter.bidirectional != old.meter.bidirectional
            or new.conntrack.tracks != old.conntrack.tracks
            or new.spool_dir != old.spool_dir
            or new.meter.tunnels != old.meter.tunnels
            or new.meter.l2_flows != old.meter.l2_flows)


class Sinks:
    def __init__(self, interface_names, with_nat_fields, resolver=None):
        self.interface_names = interface_names   # ifindex -> name, from the captures
        self.resolver = resolver                 # collectors' names, looked up again
        self.with_nat_fields = with_nat_fields   # conntrack's collector profiles
        self.exporter = None
        self.leaving = []     # (collector, monotonic deadline): removed by a reload
        self.records_without_collector = 0
        self.spools_cleared = False
        self.history = None                      # the history store (store/sink.py), if on
        self.history_error = None
        self.sample_drops = dict        # () -> {ifindex: packets lost}: sFlow's drops

    def prepare(self, config, now_ms, carry_over=None, resolver=None):
        """The exporter a config asks for, every collector set up (resolved,
        spools created): TransportError or OptionError before anything
        switches. None without collectors."""
        if not config.collectors:
            return None
        spool_dir = None
        if any(c.spool_kb for c in config.collectors):
            try:
                spool_dir = prepare_spool_dir(config.spool_dir, config.user,
                                              clear_stale=not self.spools_cleared)
            except SpoolError as e:
                raise TransportError(str(e)) from None
            self.spools_cleared = True
        tracks = config.conntrack.tracks   # conntrack records: biflows with NAT fields
        profiles = self.with_nat_fields(config.collectors) if tracks else config.collectors
        if config.meter.tunnels != "outer":   # inner flows: which tunnel, too
            profiles = with_segment_field(config.collectors, profiles)
        if config.meter.l2_flows:   # layer-2 flows: their own template
            profiles = with_layer2_fields(config.collectors, profiles)
        return Exporter(profiles, boot_ms=now_ms, meter_biflow=config.meter.bidirectional or tracks,
                        interfaces=self.interface_names, spool_dir=spool_dir,
                        carry_over=carry_over, resolver=resolver,
                        sampling_interval=sampling_interval(config))

    def switch(self, exporter, now_ms, packets_ignored):
        """The new exporter takes over: collectors whose settings did not
        change go on in it (queues and spools too); the others end, after
        LEAVE_S of delivering what waits, from the loop (never blocking it)."""
        if self.exporter:
            deadline = time.monotonic() + LEAVE_S
            self.leaving += [(c, deadline) for c in self.exporter.retire(
                now_ms, packets_ignored, handed_over=exporter.carried if exporter else ())]
        self.exporter = exporter
        self.start(now_ms)

    enrich = None   # the enrichment stage in front of the sinks (enrich/), when configured

    def deliver(self, batch, count, now_ms):
        """Records in: through the enrichment stage when there is one."""
        if self.enrich:
            self.enrich.deliver(batch, count, now_ms)   # on to deliver_enriched
        else:
            self.deliver_enriched(batch, count, now_ms)

    def deliver_enriched(self, batch, count, now_ms):
        if self.history:
            self.history.deliver(batch, count, now_ms)
        if self.exporter and self.exporter.takes_records:
            self.exporter.export(batch, count, now_ms)
        else:  # no flow collector configured (none, or sFlow only): counted, and said
            self.records_without_collector += count

    def deliver_samples(self, samples, count, now_ms):
        """Sampled packets for the sFlow collectors (the ring exists only
        while one is configured)."""
        if self.exporter:
            self.exporter.export_samples(samples, count, now_ms, self.sample_drops())

    @property
    def wants_samples(self):
        return bool(self.exporter and self.exporter.takes_samples)

    def start(self, now_ms):
        if self.exporter:
            self.exporter.start(now_ms)
            if self.resolver:
                self.exporter.follow_names(self.resolver)

    def tick(self, now_ms, packets_ignored):
        if self.enrich:
            self.enrich.tick(now_ms)
        if self.history:
            self.history.tick(now_ms)
        if self.exporter:
            self.exporter.tick(now_ms, packets_ignored)
        if self.leaving:
            self._leave(time.monotonic())

    def _leave(self, now):
        staying = []
        for collector, deadline in self.leaving:
            collector.transport.tick(now)
            if collector.transport.wants_write() and now < deadline:
                staying.append((collector, deadline))
            else:
                self._close_leaving(collector)
        self.leaving = staying

    def _close_leaving(self, collector):
        collector.transport.close()   # what still waits is counted as not sent
        stats = collector.stats()
        if stats["records_not_sent"]:
            log.warning("%s (removed): %d records not sent (last error: %s)",
                        stats["collector"], stats["records_not_sent"], stats["last_error"])

    def watched(self):
        """(fd, events, callback) of every collector socket, for this turn."""
        current = self.exporter.watched() if self.exporter else []
        current = current + watched([c for c, _ in self.leaving])
        return current + self.enrich.watched() if self.enrich else current

    def finish(self, now_ms, packets_ignored, timeout_s):
        """The last statistics, then what waits gets timeout_s to leave; what
        is still waiting is counted as not sent, and said."""
        if self.enrich:   # records waiting for their routes go first
            self.enrich.finish(now_ms)
        if self.history:
            self.history.finish()
        if self.leaving:
            leaving_for = max(deadline for _, deadline in self.leaving) - time.monotonic()
            pump([c for c, _ in self.leaving], max(0.0, min(leaving_for, timeout_s)))
            for collector, _ in self.leaving:
                self._close_leaving(collector)
            self.leaving = []
        if not self.exporter:
            return
        self.exporter.finish(now_ms, packets_ignored, timeout_s)
        for collector in self.exporter.stats():
            if collector["records_not_sent"]:
                log.warning("%s: %d records not sent (last error: %s)", collector["collector"],
                            collector["records_not_sent"], collector["last_error"])

    def endpoints(self):
        return self.exporter.endpoints() if self.exporter else ()

    def stats(self):
        """Every collector's figures; those a reload removed while they still
        deliver what waits are marked leaving."""
        current = self.exporter.stats() if self.exporter else []
        return current + [dict(c.stats(), leaving=True) for c, _ in self.leaving]

    def records_not_sent(self):
        return sum(c["records_not_sent"] for c in self.stats())

    def close(self):
        if self.enrich:
            self.enrich.close()
        for collector, _ in self.leaving:
            collector.transport.close()
        self.leaving = []
        if self.exporter:
            self.exporter.close()
