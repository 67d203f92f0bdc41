"""The flowprobe command line.

    flowprobe read FILE.pcap [FILE ...]      meter captures offline (read.py)
    flowprobe run [--config PATH]            the daemon
    flowprobe status                         the daemon's state (status.py)
    flowprobe flows | expire | reload        its flow table (flows.py)
    flowprobe top                            the busiest flows, live (top.py)
    flowprobe query                          the flow history (query.py)
    flowprobe report                         the history summed up, with jinja2 (report.py)

Every number, time and address is written by units.py.
"""

import argparse
import sys

from flowprobe import __version__
from flowprobe.cli import flows, query, read, report, status, top

DEFAULT_CONFIG = "/etc/config/flowprobe"


def _run_daemon(args):
    from flowprobe.daemon import run  # the daemon's modules only when needed
    return run(args)


def build_parser():
    parser = argparse.ArgumentParser(prog="flowprobe", description="a flow meter and exporter")
    parser.add_argument("--version", action="version", version=f"flowprobe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    read.add_parser(commands)

    run = commands.add_parser("run", help="the service: meter live interfaces and export "
                                          "(in the foreground; procd or systemd keep it)")
    run.add_argument("--config", default=DEFAULT_CONFIG,
                     help=f"UCI-format configuration (default {DEFAULT_CONFIG})")
    run.add_argument("--socket", help="control socket (default: from the config)")
    run.add_argument("--no-ubus", action="store_true", help="do not register on ubus")
    run.set_defaults(handler=_run_daemon)

    status.add_parser(commands)
    flows.add_parsers(commands)
    top.add_parser(commands)
    query.add_parser(commands)
    report.add_parser(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # `flowprobe read x.pcap | head`
        sys.stderr.close()
        return 1
