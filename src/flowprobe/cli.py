"""The flowprobe command line.

    flowprobe read FILE.pcap [FILE ...] [--json] [table options]

prints every flow record of the captures (one JSON object per line with
--json), then the meter's counters as one JSON line on stderr.
"""

import argparse
import json
import sys

from flowprobe import __version__
from flowprobe.export.collectors import Exporter, ProfileError, profile_from_url
from flowprobe.export.transport import TransportError
from flowprobe.meter import CaptureError, Meter, MeterError, packets_ignored
from flowprobe.records import record_to_dict
from flowprobe.settings import OVERFLOW_POLICIES, MeterSettings, SettingsError

DEFAULTS = MeterSettings()
DEFAULT_CONFIG = "/etc/config/flowprobe"


def _add_table_options(parser):
    table = parser.add_argument_group("flow table (the daemon's defaults)")
    table.add_argument("--max-flows", type=int, default=DEFAULTS.max_flows)
    table.add_argument("--max-fragments", type=int, default=DEFAULTS.max_fragments)
    for name in ("idle_timeout", "active_timeout", "unanswered_timeout", "tcp_end_grace",
                 "fragment_timeout"):
        table.add_argument("--" + name.replace("_", "-"), type=float, metavar="SECONDS",
                           default=getattr(DEFAULTS, name))
    table.add_argument("--overflow", choices=OVERFLOW_POLICIES, default=DEFAULTS.overflow_policy,
                       help="when the table is full: evict the least recently seen flow, "
                            "or refuse new flows")
    table.add_argument("--biflow", action="store_true",
                       help="fold the reverse direction into the same record (RFC 5103)")
    table.add_argument("--hash-seed", type=int, default=0, help=argparse.SUPPRESS)


def _settings_from(args, biflow=False):
    return MeterSettings(
        max_flows=args.max_flows,
        max_fragments=args.max_fragments,
        idle_timeout=args.idle_timeout,
        active_timeout=args.active_timeout,
        unanswered_timeout=args.unanswered_timeout,
        tcp_end_grace=args.tcp_end_grace,
        fragment_timeout=args.fragment_timeout,
        overflow_policy=args.overflow,
        bidirectional=args.biflow or biflow,
        hash_seed=args.hash_seed,
    )


def _text_line(r):
    return (f"{r['protocol']:>3} {r['src_addr']}:{r['src_port']} > {r['dst_addr']}:{r['dst_port']}"
            f"  packets {r['packets']} octets {r['octets']}"
            f"  {r['flow_start_ms']}..{r['flow_end_ms']} {r['end_reason']}")


class RecordSink:
    """Where `read` sends records: stdout (JSON formatted in C, or text)
    and the collectors of --export, a batch at a time."""

    def __init__(self, meter, profiles, print_json, print_text):
        self.meter, self.profiles = meter, profiles
        self.print_json, self.print_text = print_json, print_text
        self.out = sys.stdout.buffer
        self.exporter = None
        if profiles:  # transports are opened (and checked) before reading
            self.exporter = Exporter(profiles, boot_ms=0,
                                     meter_biflow=meter.settings.bidirectional)
        self.started = False

    def _now_ms(self):
        return self.meter.counters()["clock_ms"]

    def _exporter(self):
        if not self.started:
            # v9/v5 uptimes count from the capture's first packet, known by now
            counters = self.meter.counters()
            self.exporter.start(counters["clock_ms"], boot_ms=counters["clock_first_ms"])
            self.started = True
        return self.exporter

    def drain(self):
        bidirectional = self.meter.settings.bidirectional
        for batch, count in self.meter.drain_raw():
            if self.profiles:
                self._exporter().export(batch, count, self._now_ms())
            if self.print_json:
                self.meter.format_json(batch, count, self.out.write)
            elif self.print_text:
                self.out.write("".join(_text_line(record_to_dict(batch[i], bidirectional)) + "\n"
                                       for i in range(count)).encode())
        if self.exporter and self.started:
            self.exporter.tick(self._now_ms())

    def finish(self):
        self.drain()
        self.out.flush()
        if not self.profiles:
            return []
        exporter = self._exporter()
        exporter.finish(self._now_ms(), packets_ignored(self.meter.counters()))
        return exporter.stats()


def command_read(args):
    try:
        profiles = [profile_from_url(url) for url in args.export]
        settings = _settings_from(args, biflow=any(p.biflow for p in profiles))
        meter = Meter(settings)
        for path in args.files:  # every file must open before anything is printed
            meter.close(meter.open_file(path))
    except SettingsError as e:
        print(f"flowprobe: --{e.option.replace('_', '-')}: {e}", file=sys.stderr)
        return 2
    except ProfileError as e:
        print(f"flowprobe: --export: {e}", file=sys.stderr)
        return 2
    except MeterError as e:
        print(f"flowprobe: {e}", file=sys.stderr)
        return 1

    try:
        sink = RecordSink(meter, profiles, args.json, not profiles)
    except TransportError as e:
        print(f"flowprobe: --export: {e}", file=sys.stderr)
        return 2
    status = 0
    try:
        for path in args.files:
            for _ in meter.read_file(path, drain=sink.drain):
                pass
        meter.flush()
        exporters = sink.finish()
    except CaptureError as e:
        # a capture cut short: what was read is still reported
        print(f"flowprobe: {e}", file=sys.stderr)
        status = 1
        meter.flush()
        exporters = sink.finish()
    for collector in exporters:
        if collector["records_not_sent"]:
            print(f"flowprobe: {collector['collector']}: {collector['records_not_sent']} records "
                  f"not sent (last error: {collector['last_error']})", file=sys.stderr)
    summary = {"counters": meter.counters(), "memory_bytes": meter.memory_bytes}
    if profiles:
        summary["exporters"] = exporters
    print(json.dumps(summary), file=sys.stderr)
    return status


def build_parser():
    parser = argparse.ArgumentParser(prog="flowprobe", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"flowprobe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    read = commands.add_parser("read", help="meter capture files and print their flow records")
    read.add_argument("files", nargs="+", metavar="FILE")
    read.add_argument("--json", action="store_true", help="one JSON object per record")
    read.add_argument("--export", action="append", default=[], metavar="URL",
                      help="send the records to a collector: ipfix://HOST:PORT, netflow9://..., "
                           "netflow5://... with ?biflow=1&transport=tcp&fields=a,b&domain=N"
                           "&group=NAME; repeatable")
    _add_table_options(read)
    read.set_defaults(handler=command_read)

    run = commands.add_parser("run", help="the service: meter live interfaces and export "
                                          "(in the foreground; procd or systemd keep it)")
    run.add_argument("--config", default=DEFAULT_CONFIG,
                     help=f"UCI-format configuration (default {DEFAULT_CONFIG})")
    run.add_argument("--socket", help="control socket (default: from the config)")
    run.add_argument("--no-ubus", action="store_true", help="do not register on ubus")
    run.set_defaults(handler=_run_daemon)

    from flowprobe.control.commands import add_commands  # status, flows, expire, reload, top
    add_commands(commands)
    return parser


def _run_daemon(args):
    from flowprobe.daemon import run  # the control and config modules only when needed
    return run(args)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # `flowprobe read x.pcap | head`
        sys.stderr.close()
        return 1
