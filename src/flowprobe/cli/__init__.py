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

import importlib
import os
import sys

from flowprobe import __version__

DEFAULT_CONFIG = "/etc/config/flowprobe"


def _run_daemon(args):
    from flowprobe.daemon import run  # the daemon's modules only when needed
    return run(args)


# each verb's module, imported only when that verb (or the full --help) is
# asked for: `read` and `run` do not pay for the others' imports at start
VERB_MODULES = {"read": "read", "status": "status", "flows": "flows", "expire": "flows",
                "reload": "flows", "top": "top", "query": "query", "report": "report"}
ALL_MODULES = ("read", "status", "flows", "top", "query", "report")   # in --help's order


def _modules_for(argv):
    """The verb modules the parser needs for this command line: the verb's
    own, none for `run` and `--version`, all of them otherwise."""
    if not argv:
        return ALL_MODULES
    if argv[0] == "run" or argv == ["--version"]:
        return ()
    if argv[0] in VERB_MODULES:
        return (VERB_MODULES[argv[0]],)
    return ALL_MODULES


def _terminal_columns():
    """shutil.get_terminal_size's answer, without importing shutil (and its
    bz2, lzma and zlib) at every start, as argparse's formatter does."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _parser_class():
    import argparse  # not for `run`'s usual line (_run_arguments)

    class _Parser(argparse.ArgumentParser):
        """Its verbs' parsers are of this class too (argparse's parser_class)."""

        def _get_formatter(self):
            return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)

    return _Parser


def build_parser(modules=ALL_MODULES):
    _Parser = _parser_class()
    verbs = {name: importlib.import_module(f"flowprobe.cli.{name}") for name in modules}
    parser = _Parser(prog="flowprobe", description="a flow meter and exporter")
    parser.add_argument("--version", action="version", version=f"flowprobe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    if "read" in verbs:
        verbs["read"].add_parser(commands)

    run = commands.add_parser("run", help="the service: meter live interfaces and export "
                                          "(in the foreground; procd or systemd keep it)")
    run.add_argument("--config", default=DEFAULT_CONFIG,
                     help=f"UCI-format configuration (default {DEFAULT_CONFIG})")
    run.add_argument("--socket", help="control socket (default: from the config)")
    run.add_argument("--no-ubus", action="store_true", help="do not register on ubus")
    run.set_defaults(handler=_run_daemon)

    for name in ("status", "flows", "top", "query", "report"):
        if name in verbs:
            module = verbs[name]
            (module.add_parsers if name == "flows" else module.add_parser)(commands)
    return parser


def _run_arguments(argv):
    """`run`'s options as procd passes them (--config, --socket, --no-ubus),
    read without argparse: the daemon would otherwise keep argparse, gettext
    and locale (some 0.5 MB) all its life.  None for anything else (--help,
    an abbreviation, a mistake): argparse reads that line, as before."""
    if not argv or argv[0] != "run":
        return None
    values = {"config": DEFAULT_CONFIG, "socket": None, "no_ubus": False}
    rest = argv[1:]
    while rest:
        word = rest.pop(0)
        if word == "--no-ubus":
            values["no_ubus"] = True
            continue
        name, equals, value = word.partition("=")
        if name not in ("--config", "--socket"):
            return None
        if not equals:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        values[name[2:]] = value
    from types import SimpleNamespace
    return SimpleNamespace(command="run", handler=_run_daemon, **values)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _run_arguments(argv) or build_parser(_modules_for(argv)).parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # `flowprobe read x.pcap | head`
        sys.stderr.close()
        return 1
