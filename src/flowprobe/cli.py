"""The flowprobe command line.

    flowprobe read FILE.pcap [FILE ...] [--json] [table options]

prints every flow record of the captures (one JSON object per line with
--json), then the meter's counters as one JSON line on stderr.
"""

import argparse
import json
import sys

from flowprobe import __version__
from flowprobe.meter import CaptureError, Meter, MeterError
from flowprobe.settings import OVERFLOW_POLICIES, MeterSettings, SettingsError

DEFAULTS = MeterSettings()


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


def _settings_from(args):
    return MeterSettings(
        max_flows=args.max_flows,
        max_fragments=args.max_fragments,
        idle_timeout=args.idle_timeout,
        active_timeout=args.active_timeout,
        unanswered_timeout=args.unanswered_timeout,
        tcp_end_grace=args.tcp_end_grace,
        fragment_timeout=args.fragment_timeout,
        overflow_policy=args.overflow,
        bidirectional=args.biflow,
        hash_seed=args.hash_seed,
    )


def _text_line(r):
    return (f"{r['protocol']:>3} {r['src_addr']}:{r['src_port']} > {r['dst_addr']}:{r['dst_port']}"
            f"  packets {r['packets']} octets {r['octets']}"
            f"  {r['flow_start_ms']}..{r['flow_end_ms']} {r['end_reason']}")


def command_read(args):
    try:
        meter = Meter(_settings_from(args))
        for path in args.files:  # every file must open before anything is printed
            meter.close(meter.open_file(path))
    except SettingsError as e:
        print(f"flowprobe: --{e.option.replace('_', '-')}: {e}", file=sys.stderr)
        return 2
    except MeterError as e:
        print(f"flowprobe: {e}", file=sys.stderr)
        return 1

    out = sys.stdout.buffer
    if args.json:  # formatted in C, a batch at a time
        def drain():
            meter.drain_json(out.write)
    else:
        def drain():
            out.write("".join(_text_line(r) + "\n" for r in meter.drain()).encode())
    status = 0
    try:
        for path in args.files:
            for _ in meter.read_file(path, drain=drain):
                pass
    except CaptureError as e:
        # a capture cut short: what was read is still reported
        print(f"flowprobe: {e}", file=sys.stderr)
        status = 1
    meter.flush()
    drain()
    out.flush()
    summary = {"counters": meter.counters(), "memory_bytes": meter.memory_bytes}
    print(json.dumps(summary), file=sys.stderr)
    return status


def build_parser():
    parser = argparse.ArgumentParser(prog="flowprobe", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"flowprobe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    read = commands.add_parser("read", help="meter capture files and print their flow records")
    read.add_argument("files", nargs="+", metavar="FILE")
    read.add_argument("--json", action="store_true", help="one JSON object per record")
    _add_table_options(read)
    read.set_defaults(handler=command_read)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # `flowprobe read x.pcap | head`
        sys.stderr.close()
        return 1
