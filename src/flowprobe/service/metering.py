"""The meter across reloads: new capacities need a new table, which takes
over the capture handles (no gap) once the old one's flows are out; the
counters of the tables a reload replaced carry on in the totals."""

import logging
from collections import deque

from flowprobe.meter import Meter, packets_ignored

log = logging.getLogger("flowprobe")

# counters that say how things are now, not how many so far
GAUGES = {"fragment_packets_held", "flows_active", "flows_pending_export", "flows_peak",
          "fragments_tracked", "clock_ms", "clock_first_ms"}


class LastMinute:
    """Packets read and dropped over the last minute, from the totals sampled
    each tick (61 samples: bounded), for a status that says what happens now,
    not only since start."""

    def __init__(self):
        self.samples = deque(maxlen=61)    # (monotonic seconds, packets read, dropped)

    def sample(self, now, read, dropped):
        self.samples.append((now, read, dropped))

    def summary(self):
        if len(self.samples) < 2:
            return None
        (then, read0, dropped0), (now, read1, dropped1) = self.samples[0], self.samples[-1]
        return {"seconds": round(now - then, 1), "packets_read": read1 - read0,
                "packets_dropped": dropped1 - dropped0}


# sampled packets' headers waiting for the sFlow collectors (about 170 bytes
# each); drained after every read, and a read stops while it is half full
SAMPLE_RING = 4096


class Metering:
    def __init__(self, settings, deliver, deliver_samples=None):
        self.meter = Meter(settings)
        self.deliver = deliver          # (batch, count, now_ms): the sinks
        self.deliver_samples = deliver_samples   # (samples, count, now_ms): sFlow
        self.sample_ring = 0
        self.retired = {}               # counters of meters replaced by a reload

    def drain(self, now_ms):
        """Every record waiting in the meter goes to the sinks, a batch at a
        time; so do the sampled headers, when an sFlow collector wants them."""
        for batch, count in self.meter.drain_raw():
            self.deliver(batch, count, now_ms)
        if self.sample_ring:
            for samples, count in self.meter.drain_samples_raw():
                self.deliver_samples(samples, count, now_ms)

    def keep_samples(self, wanted):
        """The ring of sampled headers exists while an sFlow collector is
        configured (drain first: what a removed ring held counts as lost)."""
        self.sample_ring = SAMPLE_RING if wanted else 0
        self.meter.keep_samples(self.sample_ring)

    def prepare(self, settings):
        """New timeouts and policy go in place: None.  New capacities need a
        new meter, made here, before a reload switches anything, so that
        tables the process cannot map refuse the reload (MeterError) and the
        running table goes on."""
        if self.meter.update_settings(settings):
            return None
        return Meter(settings)

    def apply(self, meter, now_ms):
        """meter: prepare()'s.  A new one takes over: the old table's flows
        are exported, and the new table reads on from the same capture
        handles.  Returns the meter now in use."""
        if meter is None:
            return self.meter
        log.info("table settings changed: exporting %d flows, then a new table",
                 self.meter.counters()["flows_active"])
        self.meter.flush()
        self.drain(now_ms)
        meter.take_sources(self.meter)
        meter.keep_samples(self.sample_ring)
        for key, value in self.meter.counters().items():
            if key not in GAUGES:
                self.retired[key] = self.retired.get(key, 0) + value
        self.meter = meter
        return meter

    def counters(self):
        """The meter's counters since the daemon started, across table changes."""
        return {key: value + (0 if key in GAUGES else self.retired.get(key, 0))
                for key, value in self.meter.counters().items()}

    def packets_ignored(self, kernel_dropped):
        """IPFIX ignoredPacketTotalCount: the meter's named drops and the
        capture buffers' overruns alike."""
        return packets_ignored(self.counters()) + kernel_dropped
