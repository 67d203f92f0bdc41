"""A reload (SIGHUP, the control API): the new config is read and everything
that can fail is tried first (every filter compiled, every collector
resolved, every spool created); on any failure the old config goes on
running, whole, and the error shows in status.  Only then does each stage
switch, without losing the flow table."""

import logging
import socket

from flowprobe import config as configuration
from flowprobe.enrich import on_demand as enrichment
from flowprobe.errors import OptionError
from flowprobe.export.resolver import is_address
from flowprobe.export.transport import NotResolvedYet, TransportError
from flowprobe.meter import CaptureError, MeterError, check_filter
from flowprobe.service.sinks import exporter_changes
from flowprobe.sources.capture import capture_filter, linktype_of

log = logging.getLogger("flowprobe")

RESTART_ONLY = ("control_socket", "user")


def check_filters(config, endpoints):
    """Every capture filter of a config compiles (the user's, with the
    exclusion of the probe's own export traffic), for the device's link type."""
    for interface in config.interfaces:
        bpf = capture_filter(interface.bpf_filter, endpoints)
        if not bpf:
            continue
        try:
            check_filter(bpf, linktype_of(interface.device or interface.name), interface.snaplen)
        except CaptureError as e:
            raise configuration.ConfigError(f"interface {interface.name}: {e}") from None


def reload(probe):
    try:
        new = configuration.load(probe.config_path)
    except configuration.ConfigError as e:
        return _refused(probe, e)
    old, now_ms = probe.config, probe.now_ms()
    switch_exporter = exporter_changes(old, new)
    try:
        exporter = (probe.sinks.prepare(new, now_ms, carry_over=probe.sinks.exporter,
                                        resolver=probe.resolver)
                    if switch_exporter else None)
    except NotResolvedYet:
        return _wait_for_names(probe, new)
    except (TransportError, OptionError) as e:
        return _refused(probe, e)
    probe.reload_waiting = False
    endpoints = (exporter.endpoints() if exporter else ()) if switch_exporter \
        else probe.sinks.endpoints()
    try:
        check_filters(new, endpoints)
    except configuration.ConfigError as e:
        if exporter:
            exporter.close()   # its own collectors only: carried ones are still the old's
        return _refused(probe, e)

    try:
        meter = probe.metering.prepare(new.meter)
    except MeterError as e:   # new capacities the process cannot map
        if exporter:
            exporter.close()
        return _refused(probe, e)

    # nothing below can refuse
    probe.captures.meter = probe.metering.apply(meter, now_ms)
    probe.conntrack.before_reload(new, now_ms)   # off: what it holds leaves first
    if switch_exporter:
        if probe.loop:
            probe.loop.drop_transient()   # the old collectors' sockets may close now
        probe.metering.drain(now_ms)
        probe.sinks.switch(exporter, now_ms, probe.packets_ignored())
        probe.metering.keep_samples(probe.sinks.wants_samples)
    for option in RESTART_ONLY:
        if getattr(new, option) != getattr(old, option):
            log.warning("option %s changed: it takes effect at the next restart", option)
    if new.enrich != old.enrich:
        if probe.loop:
            probe.loop.drop_transient()   # the stage's sockets may close now
        probe.sinks.enrich = enrichment.apply(probe.sinks.enrich, new.enrich,
                                              probe.sinks.deliver_enriched, probe.now_ms)
    probe.config, probe.config_error = new, None
    probe.captures.apply(new.interfaces, endpoints, switch_exporter)
    probe.conntrack.apply(new, now_ms)
    probe.history.apply(new)   # history options changed: the store is reopened
    for warning in new.warnings:
        log.warning("%s", warning)
    log.info("reloaded %s", probe.config_path)
    if not new.enabled:
        log.info("disabled in %s: stopping", probe.config_path)
        probe.stopping = True
    return {"reloaded": True, "error": None}


def _wait_for_names(probe, new):
    """New collectors name hosts: they are resolved off the loop, and the
    loop runs this reload again once the answers are in."""
    names = []
    for profile in new.collectors:
        if is_address(profile.host):
            continue
        socktype = socket.SOCK_STREAM if profile.transport == "tcp" else socket.SOCK_DGRAM
        if probe.resolver.answer(profile.host, profile.effective_port, socktype) is None:
            probe.resolver.request(profile.host, profile.effective_port, socktype)
            names.append(profile.host)
    probe.reload_waiting = True
    message = (f"the reload waits for collector names to resolve ({', '.join(names)}); "
               "it is applied once they do")
    log.info("%s", message)
    return {"reloaded": False, "error": message, "pending": True}


def _refused(probe, error):
    probe.reload_waiting = False
    probe.config_error = str(error)
    log.error("reload refused, still running the previous config: %s", error)
    return {"reloaded": False, "error": str(error)}
