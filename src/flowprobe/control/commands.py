"""The CLI verbs that talk to a running flowprobe over its control socket:

    flowprobe status | flows [filters] | expire [filters] | reload | top

Each prints a readable summary, or the method's reply as JSON with --json.
"""

import json
import os
import select
import shutil
import sys
import time

from flowprobe.control.handlers import DEFAULT_LIMIT, MAX_LIMIT, PROTOCOLS, SORT_KEYS, ControlError
from flowprobe.control.server import call

DEFAULT_SOCKET = "/var/run/flowprobe.sock"
TOP_INTERVAL = 2.0
CLEAR_SCREEN = "\033[H\033[2J"
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
ICMP_PROTOCOLS = (1, 58)


# ---- formatting ----

def format_count(value, unit=""):
    """12345678 -> '12.3M' (SI: network counters, not memory)."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f}{prefix}{unit}"
    return f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def format_duration(ms):
    seconds = int(ms // 1000)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _endpoint(address, port, version):
    host = f"[{address}]" if version == 6 else address
    return f"{host}:{port}"


def flow_columns(flow):
    """protocol, source, destination as an operator reads them."""
    protocol = flow["protocol"]
    name = PROTOCOL_NAMES.get(protocol, str(protocol))
    version = flow["ip_version"]
    if protocol in ICMP_PROTOCOLS:  # dst_port is type·256 + code
        kind, code = divmod(flow["dst_port"], 256)
        return name, flow["src_addr"], f"{flow['dst_addr']} type {kind}/{code}"
    if flow["src_port"] or flow["dst_port"]:
        return (name, _endpoint(flow["src_addr"], flow["src_port"], version),
                _endpoint(flow["dst_addr"], flow["dst_port"], version))
    return name, flow["src_addr"], flow["dst_addr"]


def _interface(flow):
    if flow.get("interface"):
        return flow["interface"]
    return str(flow["ifindex"]) if flow.get("ifindex") else "-"


def format_table(header, rows, right=()):
    """Aligned columns; the indexes in `right` are right-aligned (numbers)."""
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = []
    for row in [header] + rows:
        cells = [str(cell).rjust(width) if i in right else str(cell).ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_flows(result):
    header = ("PROTO", "SOURCE", "DESTINATION", "PACKETS", "BYTES", "AGE", "IF")
    rows = [(*flow_columns(f), f["packets"], format_count(f["octets"]),
             format_duration(f["age_ms"]), _interface(f)) for f in result["flows"]]
    shown = len(rows)
    summary = (f"{shown} of {result['matched']} matching flows "
               f"({result['active']} active)")
    if not rows:
        return summary
    return format_table(header, rows, right=(3, 4, 5)) + "\n" + summary


def _scalar(key, value):
    if key in ("uptime", "uptime_s") and isinstance(value, (int, float)):
        return format_duration(value * 1000)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _pairs(mapping):
    return ", ".join(f"{k} {_scalar(k, v)}" for k, v in mapping.items())


def format_status(status):
    """A compact summary of whatever the daemon's status holds: scalars on
    one line each, tables as one line per entry."""
    lines = [f"{key}: {_scalar(key, value)}" for key, value in status.items()
             if not isinstance(value, (dict, list))]
    for key, value in status.items():
        if isinstance(value, dict):
            lines.append(f"{key}:" if value else f"{key}: none")
            for name, entry in value.items():
                text = _pairs(entry) if isinstance(entry, dict) else _scalar(name, entry)
                lines.append(f"  {name}: {text}")
        elif isinstance(value, list):
            lines.append(f"{key}:" if value else f"{key}: none")
            for entry in value:
                text = _pairs(entry) if isinstance(entry, dict) else _scalar(key, entry)
                lines.append(f"  - {text}")
    return "\n".join(lines)


# ---- the verbs ----

def _filters(args):
    filters = {}
    if args.address is not None:
        filters["address"] = args.address
    if args.port is not None:
        filters["port"] = args.port
    if args.protocol is not None:
        protocol = args.protocol
        filters["protocol"] = int(protocol) if protocol.isdigit() else protocol
    if args.interface is not None:
        filters["interface"] = args.interface
    return filters


def _print_json(result):
    print(json.dumps(result, indent=2))


def _fail(message):
    print(f"flowprobe: {message}", file=sys.stderr)
    return 1


def command_status(args):
    try:
        result = call(args.socket, "status")
    except ControlError as e:
        return _fail(e)
    print(json.dumps(result, indent=2) if args.json else format_status(result))
    return 0


def command_flows(args):
    request = dict(_filters(args), sort=args.sort, limit=args.limit)
    try:
        result = call(args.socket, "flows", request)
    except ControlError as e:
        return _fail(e)
    print(json.dumps(result, indent=2) if args.json else format_flows(result))
    return 0


def command_expire(args):
    try:
        result = call(args.socket, "expire", _filters(args))
    except ControlError as e:
        return _fail(e)
    if args.json:
        _print_json(result)
    else:
        n = result["expired"]
        print(f"expired {n} flow{'' if n == 1 else 's'}")
    return 0


def command_reload(args):
    try:
        result = call(args.socket, "reload")
    except ControlError as e:
        return _fail(e)
    if args.json:
        _print_json(result)
    elif result.get("reloaded"):
        print("reloaded")
    else:
        print(f"not reloaded: {result.get('error') or 'no reason given'}")
    return 0 if result.get("reloaded") else 1


# ---- top ----

def _flow_key(flow):
    """A flow's identity across snapshots; a new start time is a new flow
    (the old one ended in between)."""
    return (flow["ip_version"], flow["protocol"], flow["src_addr"], flow["src_port"],
            flow["dst_addr"], flow["dst_port"], flow["vlan_id"], flow["inner_vlan_id"],
            flow["ifindex"], flow.get("direction"), flow["flow_start_ms"])


def top_rates(previous, current, seconds):
    """Flows of `current` with bytes_per_s and packets_per_s since `previous`
    (a flow new since then counts whole), busiest first; the quiet ones by
    their totals."""
    before = {_flow_key(f): (f["octets"], f["packets"]) for f in previous["flows"]}
    rated = []
    for flow in current["flows"]:
        octets, packets = before.get(_flow_key(flow), (0, 0))
        rated.append(dict(flow, bytes_per_s=max(0, flow["octets"] - octets) / seconds,
                          packets_per_s=max(0, flow["packets"] - packets) / seconds))
    rated.sort(key=lambda f: (-f["bytes_per_s"], -f["packets_per_s"], -f["octets"],
                              f["flow_start_ms"]))
    return rated


def format_top(rated, current, seconds, rows):
    total_bits = sum(f["bytes_per_s"] for f in rated) * 8
    total_packets = sum(f["packets_per_s"] for f in rated)
    title = (f"flowprobe top  {time.strftime('%H:%M:%S')}  {current['active']} active, "
             f"{current['matched']} matching  {format_count(total_bits, 'b/s')} "
             f"{format_count(total_packets, 'p/s')}  over {seconds:.1f} s")
    header = ("RATE", "PKT/S", "PROTO", "SOURCE", "DESTINATION", "BYTES", "AGE", "IF")
    table = [(format_count(f["bytes_per_s"] * 8, "b/s"), format_count(f["packets_per_s"]),
              *flow_columns(f), format_count(f["octets"]), format_duration(f["age_ms"]),
              _interface(f)) for f in rated[:rows]]
    if not table:
        return title + "\n(no flows)"
    return title + "\n" + format_table(header, table, right=(0, 1, 5, 6))


class _Keyboard:
    """Single keys from a terminal without Enter (q quits); inert otherwise."""

    def __init__(self, stream):
        self.saved = None
        if stream is not None and stream.isatty():
            import termios
            import tty
            self.fd = stream.fileno()
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)  # Ctrl-C still raises KeyboardInterrupt

    def wait_for_quit(self, seconds):
        """Sleeps `seconds`; True as soon as q is pressed."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.saved is None:
                time.sleep(left)
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready and os.read(self.fd, 1) in (b"q", b"Q"):
                return True

    def restore(self):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def command_top(args):
    request = dict(_filters(args), sort="bytes", limit=MAX_LIMIT)
    keyboard = _Keyboard(None if args.once else sys.stdin)
    try:
        previous, taken = call(args.socket, "flows", request), time.monotonic()
        while True:
            if keyboard.wait_for_quit(args.interval):
                return 0
            current, now = call(args.socket, "flows", request), time.monotonic()
            seconds = max(now - taken, 1e-3)
            rated = top_rates(previous, current, seconds)
            if args.json:
                print(json.dumps({"seconds": round(seconds, 3), "active": current["active"],
                                  "matched": current["matched"],
                                  "flows": rated[:args.rows or 50]}), flush=True)
            else:
                rows = args.rows or max(1, shutil.get_terminal_size().lines - 3)
                frame = format_top(rated, current, seconds, rows)
                print(frame if args.once else CLEAR_SCREEN + frame, flush=True)
            if args.once:
                return 0
            previous, taken = current, now
    except ControlError as e:
        return _fail(e)
    except KeyboardInterrupt:
        return 0
    finally:
        keyboard.restore()


# ---- argparse ----

def _common(parser):
    parser.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help=f"the daemon's control socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def _filter_options(parser):
    group = parser.add_argument_group("filters (all given must match)")
    group.add_argument("--address", metavar="IP[/LEN]",
                       help="an address or prefix, matching either end")
    group.add_argument("--port", type=int, help="source or destination port")
    group.add_argument("--protocol", metavar="NAME|NUMBER",
                       help=f"{', '.join(PROTOCOLS)} or an IP protocol number")
    group.add_argument("--interface", metavar="NAME", help="capture interface")


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def add_commands(subparsers):
    status = subparsers.add_parser("status", help="the running daemon's state")
    _common(status)
    status.set_defaults(handler=command_status)

    flows = subparsers.add_parser("flows", help="the live flow table, filtered and sorted")
    _common(flows)
    _filter_options(flows)
    flows.add_argument("--sort", choices=SORT_KEYS, default="bytes",
                       help="biggest (bytes, packets) or oldest (age) first; default bytes")
    flows.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                       help=f"at most this many flows, 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})")
    flows.set_defaults(handler=command_flows)

    expire = subparsers.add_parser("expire", help="end flows now and export them "
                                                  "(all, or those matching the filters)")
    _common(expire)
    _filter_options(expire)
    expire.set_defaults(handler=command_expire)

    reload = subparsers.add_parser("reload", help="re-read the configuration")
    _common(reload)
    reload.set_defaults(handler=command_reload)

    top = subparsers.add_parser("top", help="the busiest flows, live (q or Ctrl-C quits)")
    _common(top)
    _filter_options(top)
    top.add_argument("--interval", type=_positive_float, default=TOP_INTERVAL,
                     metavar="SECONDS", help=f"refresh period (default {TOP_INTERVAL:g})")
    top.add_argument("--rows", type=int, default=0,
                     help="flows shown (default: what fits the terminal)")
    top.add_argument("--once", action="store_true",
                     help="print one frame (rates over one interval) and exit")
    top.set_defaults(handler=command_top)
