"""What `status` shows (the control socket, ubus, LuCI): one JSON object
assembled from every stage's own figures."""

import os
import time

from flowprobe import __version__
from flowprobe.privileges import effective_capabilities


def status(probe):
    counters = probe.metering.counters()
    meter = probe.metering.meter
    return {
        "version": __version__,
        "running_since": int(probe.started),
        "uptime_s": int(time.time() - probe.started),
        "config": str(probe.config_path),
        "config_error": probe.config_error,
        "warnings": list(probe.config.warnings),
        "ubus": bool(probe.control and probe.control.ubus_connected),
        "user": {"uid": os.getuid(), "capabilities": effective_capabilities()},
        "meter": dict(counters, memory_bytes=meter.memory_bytes,
                      packets_dropped_by_kernel=probe.captures.kernel_dropped(),
                      max_flows=meter.settings.max_flows,
                      # max_flows 'auto': the capacity and why (table_size.py)
                      max_flows_reason=probe.config.max_flows_auto or "option max_flows",
                      table_fill=round(counters["flows_active"] / meter.settings.max_flows, 4),
                      sample_ring=meter.sample_ring_stats(),   # sFlow's sampled headers
                      resident_bytes=meter.resident_bytes),   # of memory_bytes, in memory now
        "last_minute": probe.last_minute.summary(),
        "interfaces": probe.captures.status(),
        "collectors": probe.sinks.stats(),
        "records_without_collector": probe.sinks.records_without_collector,
        "source": probe.config.conntrack.source,
        "conntrack": probe.conntrack.status(probe.config, counters),
        "control": probe.control.stats() if probe.control else None,
        "loop_errors": probe.loop.errors if probe.loop else 0,
        "previous_run": previous_run(probe.run_state),
        "enrich": probe.sinks.enrich.stats() if probe.sinks.enrich else None,
        "history": probe.history.status(),
    }


def previous_run(run_state):
    if run_state is None or run_state.previous is None:
        return None
    unclean = run_state.previous_unclean
    return f"ended without a clean stop ({unclean})" if unclean else "stopped cleanly"
