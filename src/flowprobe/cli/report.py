"""flowprobe report: the history store summed up for a span (report/), from
the running daemon or a history_dir (--dir), as text, markdown or one HTML
file, or through a user's jinja2 template (--template)."""

import sys
from types import SimpleNamespace

from flowprobe.cli.common import EXIT_OK, fail, socket_options
from flowprobe.control.client import call
from flowprobe.control.handlers import ControlError


def command_report(args):
    from flowprobe.cli.query import run_query
    from flowprobe.report import FORMATS, ReportError, render, report_data
    from flowprobe.store.query import QueryError
    where = SimpleNamespace(dir=args.dir, socket=args.socket)
    anomalies = []
    try:
        if not args.dir:
            history = call(args.socket, "status").get("history") or {}
            anomalies = history.get("anomalies") or []
        data = report_data(lambda spec: run_query(where, spec), _time(args.since),
                           _time(args.until), anomalies)
        text = render(data, args.format, args.template)
    except (ControlError, QueryError, ReportError) as e:
        return fail(e)
    except OSError as e:
        return fail(f"{args.dir or args.template}: {e.strerror or e}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    else:
        sys.stdout.write(text)
    assert args.format in FORMATS
    return EXIT_OK


def _time(text):
    return int(text) if text is not None and text.isdigit() else text


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "report", help="the flow history summed up: top talkers, protocols, trend, histograms",
        description="Needs jinja2 (an optional dependency). The HTML report is one "
                    "self-contained file (inline SVG charts).")
    socket_options(parser)
    parser.add_argument("--dir", metavar="PATH",
                        help="read a history_dir directly instead of asking the daemon")
    parser.add_argument("--since", default="24h",
                        help="Unix ms, or before now: 30m, 24h, 7d (default 24h)")
    parser.add_argument("--until", help="Unix ms, or before now (default: now)")
    parser.add_argument("--format", choices=("text", "markdown", "html"), default="text")
    parser.add_argument("--template", metavar="FILE",
                        help="a jinja2 template of your own; it gets the same data")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")
    parser.set_defaults(handler=command_report)
