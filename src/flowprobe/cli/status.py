"""flowprobe status: is all well, and if not, what needs attention.

A summary first (running since, source, interfaces, collectors, drops,
table fill), then the details grouped. Exit status: 0 all well, 3 running
but something needs attention (listed at the top), 1 not running or not
reachable. With --json the reply is printed as the daemon sent it, and
the exit status is 0 whenever it answered.
"""

import time

from flowprobe.cli import units
from flowprobe.cli.common import EXIT_ATTENTION, EXIT_OK, fail, print_json, socket_options
from flowprobe.control.client import call
from flowprobe.control.handlers import ControlError

TABLE_FILL_ATTENTION = 0.9

SOURCES = {"capture": "packet capture", "conntrack": "conntrack",
           "both": "packet capture and conntrack"}

METER_DROPS = units.METER_DROPS

EPILOG = """exit status:
  0  running, all well
  1  not running, or the control socket could not be used
  2  bad command line
  3  running, but something needs attention (config error, an interface
     down, a collector failing, a flow table over 90 % full, conntrack
     stopped, internal errors); each is named at the top
with --json: 0 whenever the daemon answered (the reply is the judge)"""


# ---- judging ----

def collector_failing(collector):
    """Down after an error (UDP back-off), or a TCP session not connected."""
    return bool(collector.get("down")) or (collector.get("transport") == "tcp"
                                           and not collector.get("connected", True))


def conntrack_stopped(status):
    conntrack = status.get("conntrack")
    return bool(conntrack) and (not conntrack.get("running") or bool(conntrack.get("error")))


def attention(status):
    """What needs someone to look, one line each; [] when all is well."""
    found = []
    if status.get("config_error"):
        found.append(f"config not applied: {status['config_error']}")
    for interface in status.get("interfaces") or []:
        if not interface.get("up"):
            found.append(f"interface {interface['name']} down: "
                         f"{interface.get('error') or 'no reason given'}")
    for collector in status.get("collectors") or []:
        if collector_failing(collector):
            found.append(f"collector {collector['collector']} failing: "
                         f"{collector.get('last_error') or 'not connected'}")
    meter = status.get("meter") or {}
    if meter.get("table_fill", 0) >= TABLE_FILL_ATTENTION:
        found.append(f"flow table {units.percent(meter['table_fill'])} full")
    conntrack = status.get("conntrack")
    if conntrack_stopped(status):
        found.append(f"conntrack not running: {conntrack.get('error') or 'stopped'}")
    elif conntrack and conntrack.get("table_fill", 0) >= TABLE_FILL_ATTENTION:
        found.append(f"conntrack table {units.percent(conntrack['table_fill'])} full")
    enrich = status.get("enrich") or {}   # enrich/: a table that could not be read
    if enrich.get("prefix_error"):
        found.append(f"prefix table {enrich.get('prefix_file')}: {enrich['prefix_error']}")
    found += [source["error"] for source in enrich.get("device_sources") or []
              if source.get("error")]
    found += history_attention(status.get("history"))
    if status.get("loop_errors"):
        found.append(f"{status['loop_errors']} internal errors in the loop (see the log)")
    control = status.get("control") or {}
    if control.get("internal_errors"):
        found.append(f"{control['internal_errors']} internal errors answering the control "
                     f"socket (see the log)")
    return found


def packet_drops(status):
    """[(reason, packets)] of every packet taken or seen and not metered."""
    meter = status.get("meter") or {}
    drops = [("kernel", meter.get("packets_dropped_by_kernel", 0))]
    drops += [(words, meter.get(key, 0)) for key, words in METER_DROPS]
    drops.append(("not captured", sum(i.get("packets_not_captured", 0)
                                      for i in status.get("interfaces") or [])))
    return [(reason, n) for reason, n in drops if n]


# ---- the summary ----

def _since(status, now):
    started = status.get("running_since")
    uptime = status.get("uptime_s", 0)
    if started is None:
        started = now - uptime
    return f"{units.local_time(started)} ({units.duration(uptime)})"


def _interfaces_line(status):
    interfaces = status.get("interfaces") or []
    if not interfaces:
        return "none"
    up = [i for i in interfaces if i.get("up")]
    down = [i for i in interfaces if not i.get("up")]
    text = f"{len(up)} up" + (f" ({', '.join(i['name'] for i in up)})" if up else "")
    if down:
        text += f", {len(down)} down ({', '.join(i['name'] for i in down)})"
    return text


def _collector_line(collector, now):
    name = collector.get("collector") or collector.get("host")
    state = "failing" if collector_failing(collector) else "healthy"
    text = f"{name} {state}"
    error, at = collector.get("last_error"), collector.get("last_error_time")
    if error:
        when = f", {units.ago(now - at)}" if at else ""
        text += f" (last error: {error}{when})"
    return text


def _drops_line(status):
    meter = status.get("meter") or {}
    read = meter.get("packets_read", 0)
    drops = packet_drops(status)
    total = sum(n for _, n in drops)
    not_sent = sum(c.get("records_not_sent", 0) for c in status.get("collectors") or [])
    not_sent += status.get("records_without_collector", 0) or 0
    recent = status.get("last_minute")
    now = ""
    if recent and recent["seconds"]:
        now = (f"{units.count(recent['packets_dropped'])} of "
               f"{units.count(recent['packets_read'])} read in the last "
               f"{units.duration(recent['seconds'])}; ")
    if not total and not not_sent:
        return f"{now}none since start ({units.count(read)} packets read)"
    parts = [now.rstrip("; ")] if now else []
    if total:
        reasons = ", ".join(f"{reason} {units.count(n)}" for reason, n in drops)
        share = units.percent(total / (read + meter.get("packets_dropped_by_kernel", 0) or 1))
        parts.append(f"{units.count(total)} packets ({reasons}; {share}) since start")
    if not_sent:
        parts.append(f"{units.count(not_sent)} records not sent")
    return "; ".join(parts)


def _table_line(meter):
    if "max_flows" not in meter:
        return "-"
    line = (f"{units.count(meter.get('flows_active', 0))} of {meter['max_flows']} "
            f"flows ({units.percent(meter.get('table_fill', 0))}), "
            f"peak {units.count(meter.get('flows_peak', 0))}")
    reason = meter.get("max_flows_reason", "")
    # max_flows 'auto': how the capacity was chosen (table_size.py)
    if not reason.startswith("auto:"):
        return line
    return f"{line}; auto: {reason.partition(' flows (')[2].rstrip(')')}"


def _enrichment_line(enrich):
    """Routes and prefixes when on (enrich/); None otherwise."""
    parts = []
    if "routes_cached" in enrich:
        parts.append(f"{units.count(enrich['routes_cached'])} routes known, "
                     f"{units.count(enrich.get('records_without_route', 0))} records "
                     "without one")
    if enrich.get("prefix_file"):
        parts.append(f"{units.count(enrich.get('prefixes', 0))} prefixes")
    return "; ".join(parts) or None


def summary(status, now):
    found = attention(status)
    version = status.get("version", "?")
    head = (f"flowprobe {version}: running, all well" if not found else
            f"flowprobe {version}: running, {len(found)} "
            f"{'thing needs' if len(found) == 1 else 'things need'} attention")
    lines = [head] + [f"  ! {text}" for text in found]
    rows = [("since", _since(status, now)),
            ("source", SOURCES.get(status.get("source"), status.get("source") or "-")),
            ("interfaces", _interfaces_line(status))]
    collectors = status.get("collectors") or []
    if not collectors:
        rows.append(("collectors", "none (records are not exported)"))
    for i, collector in enumerate(collectors):
        rows.append(("collectors" if i == 0 else "", _collector_line(collector, now)))
    rows.append(("drops", _drops_line(status)))
    rows.append(("flow table", _table_line(status.get("meter") or {})))
    if status.get("conntrack"):
        conntrack = status["conntrack"]
        rows.append(("conntrack", f"{units.count(conntrack.get('connections', 0))} of "
                                  f"{conntrack.get('capacity', 0)} connections "
                                  f"({units.percent(conntrack.get('table_fill', 0))})"))
    enrichment = _enrichment_line(status.get("enrich") or {})
    if enrichment:
        rows.append(("enrichment", enrichment))
    if status.get("history") and status["history"].get("enabled"):
        rows.append(("history", history_line(status["history"])))
    if (status.get("previous_run") or "").startswith("ended without"):
        rows.append(("last run", status["previous_run"]))
    for warning in status.get("warnings") or []:
        rows.append(("warning", warning))
    lines += _rows(rows)
    return lines, found


def _rows(rows, indent=""):
    width = max((len(key) for key, _ in rows), default=0)
    return [f"{indent}{key:<{width}}  {value}".rstrip() if key else
            f"{indent}{'':<{width}}  {value}" for key, value in rows]


# ---- the details ----

def _meter_rows(meter):
    read, metered = meter.get("packets_read", 0), meter.get("packets_metered", 0)
    rows = [
        ("packets", f"{units.count(read)} read, {units.count(metered)} metered "
                    f"({units.size(meter.get('octets_metered', 0))}), "
                    f"{units.count(meter.get('dropped_non_ip', 0))} not IP"),
        ("dropped", ", ".join(f"{words} {units.count(n)}"
                              for words, n in packet_drops({"meter": meter})) or "none"),
        ("flows", f"{units.count(meter.get('flows_active', 0))} active of "
                  f"{meter.get('max_flows', 0)} "
                  f"({units.percent(meter.get('table_fill', 0))}), "
                  f"peak {units.count(meter.get('flows_peak', 0))}, "
                  f"{units.count(meter.get('flows_created', 0))} created"),
        ("ended", f"idle {units.count(meter.get('flows_expired_idle', 0))}, "
                  f"active timeout {units.count(meter.get('flows_expired_active', 0))}, "
                  f"end of flow {units.count(meter.get('flows_expired_end_of_flow', 0))}, "
                  f"forced {units.count(meter.get('flows_expired_forced', 0))}, "
                  f"evicted {units.count(meter.get('flows_evicted', 0))}"),
        ("records", f"{units.count(meter.get('records_drained', 0))} handed to export, "
                    f"{units.count(meter.get('flows_pending_export', 0))} waiting"),
        ("memory", units.size(meter.get("memory_bytes", 0)) + (
            f" reserved, {units.size(meter['resident_bytes'])} in memory"
            if "resident_bytes" in meter else "")),
    ]
    if meter.get("layer2_packets"):   # option l2_flows
        rows.append(("layer 2", f"{units.count(meter['layer2_packets'])} frames metered as "
                                "layer-2 flows"))
    checked = [meter.get(f"checksum_packets_{k}", 0) for k in ("verified", "bad", "unverifiable")]
    if any(checked):   # option verify_checksums
        rows.append(("checksums", f"{units.count(checked[0])} right, {units.count(checked[1])} "
                                  f"wrong, {units.count(checked[2])} not verifiable"))
    return rows


def _fragment_rows(meter):
    return [("datagrams", f"{units.count(meter.get('fragment_datagrams', 0))} reassembled "
                          f"or tracked, {units.count(meter.get('fragments_tracked', 0))} "
                          f"tracked now, {units.count(meter.get('fragment_packets_held', 0))} "
                          f"packets held"),
            ("ended", f"evicted {units.count(meter.get('fragment_entries_evicted', 0))}, "
                      f"timed out {units.count(meter.get('fragment_entries_timed_out', 0))}, "
                      f"orphans dropped "
                      f"{units.count(meter.get('dropped_fragment_orphaned', 0))}")]


def _tunnel_rows(meter):
    """Only where tunnels were opened; "counted twice" (tunnels both) is
    why packets metered can exceed packets read."""
    names = (("inner", "tunnel_packets_inner"), ("counted twice", "tunnel_packets_counted_twice"),
             ("undecoded", "tunnel_packets_undecoded"), ("too deep", "tunnel_packets_too_deep"))
    if not any(meter.get(key) for _, key in names):
        return []
    return [("packets", ", ".join(f"{words} {units.count(meter.get(key, 0))}"
                                  for words, key in names))]


def _interface_rows(interface):
    state = "up" if interface.get("up") else "down"
    device = interface.get("device")
    head = state + (f" on {device}" if device and device != interface["name"] else "")
    if interface.get("ifindex"):
        head += f" (ifindex {interface['ifindex']})"
    head += f", direction {interface.get('direction', '-')}"
    rows = [("state", head)]
    if interface.get("error"):
        rows.append(("error", interface["error"]))
    rows.append(("captured", f"{units.count(interface.get('packets_read', 0))} packets, "
                             f"{units.size(interface.get('octets_read', 0))}"))
    rows.append(("dropped", f"libpcap {units.count(interface.get('pcap_dropped', 0))}, "
                            f"driver {units.count(interface.get('pcap_if_dropped', 0))}, "
                            f"not captured "
                            f"{units.count(interface.get('packets_not_captured', 0))}"))
    sampling = interface.get("sampling")
    if sampling and sampling.get("rate", 1) > 1:
        rows.append(("sampled", f"1:{sampling['rate']} {sampling['algorithm']}: "
                                f"{units.count(sampling['packets_sampled'])} of "
                                f"{units.count(sampling['packets_seen'])} packets, "
                                f"about {units.count(sampling['packets_estimated'])} estimated"))
    return rows


def _collector_rows(collector, now):
    host = collector.get("host")
    where = f"{units.endpoint(host, collector.get('port'))}" if host else "-"
    rows = [("sends", f"{collector.get('protocol', '?')} to {where} over "
                      f"{collector.get('transport', '?')}"
                      + (f", group {collector['group']}" if collector.get("group") else "")),
            ("state", "failing" if collector_failing(collector) else "healthy")]
    rows.append(("sent", f"{units.count(collector.get('records_sent', 0))} records in "
                         f"{units.count(collector.get('messages_sent', 0))} messages "
                         f"({units.size(collector.get('octets_sent', 0))})"))
    if collector.get("protocol") == "sflow":   # its records are packet samples
        rows.append(("samples", f"{units.count(collector.get('flow_samples', 0))} flow, "
                                f"{units.count(collector.get('counter_samples', 0))} counter, "
                                f"{units.count(collector.get('samples_not_encodable', 0))} "
                                f"not encodable"))
    rows.append(("not sent", f"{units.count(collector.get('records_not_sent', 0))} records "
                             f"in {units.count(collector.get('messages_not_sent', 0))} messages, "
                             f"{units.count(collector.get('records_refused', 0))} refused, "
                             f"{units.count(collector.get('records_not_exportable', 0))} "
                             f"not exportable"))
    rows.append(("queued", f"{units.count(collector.get('queued', 0))} messages"))
    if collector.get("transport") == "tcp":
        rows.append(("connects", f"{collector.get('connects', 0)}, "
                                 f"reconnects {collector.get('reconnects', 0)}"))
    if collector.get("last_error"):
        at = collector.get("last_error_time")
        when = f" ({units.ago(now - at)}, at {units.local_time(at)})" if at else ""
        rows.append(("last error", f"{collector['last_error']}{when}"))
    rows.append(("errors", str(collector.get("errors", 0))))
    for key in sorted(collector):
        if key.startswith("spool") and collector[key] is not None:
            rows.append((key.replace("_", " "), str(collector[key])))
    return rows


def _conntrack_rows(conntrack):
    rows = [("state", ("running" if conntrack.get("running") else "stopped")
             + (f": {conntrack['error']}" if conntrack.get("error") else "")),
            ("connections", f"{units.count(conntrack.get('connections', 0))} of "
                            f"{conntrack.get('capacity', 0)} "
                            f"({units.percent(conntrack.get('table_fill', 0))}), peak "
                            f"{units.count(conntrack.get('peak', 0))}"),
            ("records", f"{units.count(conntrack.get('records', 0))}, lost "
                        f"{units.count(conntrack.get('records_lost', 0))}"),
            ("traffic", f"{units.count(conntrack.get('packets', 0))} packets, "
                        f"{units.size(conntrack.get('octets', 0))}"),
            ("memory", units.size(conntrack.get("memory_bytes", 0)))]
    shown = {"running", "error", "connections", "capacity", "table_fill", "peak", "records",
             "records_lost", "packets", "octets", "memory_bytes"}
    for key, value in conntrack.items():
        if key in shown or value is None:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {units.count(v) if isinstance(v, int) else v}"
                              for k, v in value.items())
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, int):
            value = units.count(value)
        rows.append((key.replace("_", " "), str(value)))
    return rows


def _process_rows(status):
    user = status.get("user") or {}
    rows = [("config", str(status.get("config", "-"))),
            ("user", f"uid {user.get('uid', '?')}"),
            ("capabilities", units.capabilities(user.get("capabilities") or [])),
            ("ubus", "registered" if status.get("ubus") else "not registered")]
    control = status.get("control")
    if control:
        rows.append(("control socket", f"{control.get('clients', 0)} connected, "
                                       f"{control.get('evicted', 0)} evicted, "
                                       f"{control.get('expired', 0)} timed out"))
    rows.append(("loop errors", str(status.get("loop_errors", 0))))
    rows.append(("previous run", status.get("previous_run") or "-"))
    return rows


def details(status, now):
    sections = []
    meter = status.get("meter")
    if meter:
        sections.append(("Meter", _meter_rows(meter)))
        sections.append(("Fragments", _fragment_rows(meter)))
        if _tunnel_rows(meter):
            sections.append(("Tunnels", _tunnel_rows(meter)))
    for interface in status.get("interfaces") or []:
        sections.append((f"Interface {interface['name']}", _interface_rows(interface)))
    for collector in status.get("collectors") or []:
        sections.append((f"Collector {collector.get('collector')}",
                         _collector_rows(collector, now)))
    if status.get("conntrack"):
        sections.append(("Conntrack", _conntrack_rows(status["conntrack"])))
    sections.append(("Process", _process_rows(status)))
    lines = []
    for title, rows in sections:
        lines += ["", title] + _rows(rows, indent="  ")
    return lines


def format_status(status, now=None):
    """The status as text, and what needs attention ([] when all is well)."""
    now = time.time() if now is None else now
    lines, found = summary(status, now)
    return "\n".join(lines + details(status, now)), found


def command_status(args):
    try:
        result = call(args.socket, "status")
    except ControlError as e:
        return fail(e)
    if args.json:
        print_json(result)
        return EXIT_OK
    text, found = format_status(result)
    print(text)
    return EXIT_ATTENTION if found else EXIT_OK


def add_parser(subparsers):
    import argparse
    status = subparsers.add_parser(
        "status", help="the running daemon's state: a summary, then the details",
        description=__doc__.split("\n\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    socket_options(status)
    status.set_defaults(handler=command_status)


def history_attention(history):
    """The history store's errors, records it could not write, anomalies."""
    if not history:
        return []
    found = []
    if history.get("error"):
        found.append(f"history store off: {history['error']}")
    if history.get("records_not_written"):
        found.append(f"history: {units.count(history['records_not_written'])} records not "
                     f"written ({history.get('last_error') or 'queue full'})")
    for anomaly in history.get("anomalies") or []:
        if not anomaly.get("ongoing"):
            continue
        found.append(f"anomaly on {anomaly['series']} since "
                     f"{units.timestamp_ms(anomaly['start_ms'])}: "
                     f"{units.size(anomaly['peak_bytes'])} per 5 minutes, "
                     f"{units.size(anomaly['expected_bytes'])} expected")
    return found


def history_line(history):
    return (f"{units.count(history.get('records_written', 0))} records in "
            f"{history.get('segments', 0)} segments, {units.size(history.get('disk_bytes', 0))}"
            f" of {units.size(history.get('budget_bytes', 0))}")
