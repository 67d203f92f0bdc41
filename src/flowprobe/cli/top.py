"""flowprobe top: the busiest flows, live.

Rates are differences of the daemon's counters between two `flows` calls
(the 1000 biggest flows by bytes that match the filters), in bit/s as links
are rated, with bytes/s beside the total, as LuCI's status page writes
them. Keys: q quits; r, p, b, a sort by bit rate, packet rate, bytes, age;
/ filters the rows by text (Enter keeps it, Esc clears it). On a narrow
terminal the least needed columns go first (age, interface, packets/s,
bytes) and long addresses are cut in the middle.
"""

import json
import os
import select
import shutil
import sys
import time

from flowprobe.cli import units
from flowprobe.cli.common import (
    EXIT_OK,
    fail,
    filter_options,
    filters,
    interface_of,
    socket_options,
)
from flowprobe.control.client import call
from flowprobe.control.handlers import MAX_LIMIT, ControlError

TOP_INTERVAL = 2.0
SORTS = {"rate": "bit rate", "packets": "packet rate", "bytes": "bytes", "age": "age"}
SORT_KEYS = {"r": "rate", "p": "packets", "b": "bytes", "a": "age"}
CLEAR_SCREEN = "\033[H\033[2J"
ALTERNATE_SCREEN, NORMAL_SCREEN = "\033[?1049h\033[?25l", "\033[?25h\033[?1049l"
HOME, CLEAR_LINE, CLEAR_BELOW = "\033[H", "\033[K", "\033[J"

COLUMNS = ("RATE", "PKT/S", "PROTO", "SOURCE", "DESTINATION", "BYTES", "AGE", "IF")
RIGHT = {"RATE", "PKT/S", "BYTES", "AGE"}
DROP_ORDER = ("AGE", "IF", "PKT/S", "BYTES")    # what a narrow terminal does without
ADDRESS_WIDTH = 21                              # 255.255.255.255:65535
MIN_ADDRESS_WIDTH = 9


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
    return sort_flows(rated, "rate")


def sort_flows(rated, key):
    orders = {
        "rate": lambda f: (-f["bytes_per_s"], -f["packets_per_s"], -f["octets"],
                           f["flow_start_ms"]),
        "packets": lambda f: (-f["packets_per_s"], -f["bytes_per_s"], -f["packets"],
                              f["flow_start_ms"]),
        "bytes": lambda f: (-f["octets"], -f["bytes_per_s"], f["flow_start_ms"]),
        "age": lambda f: (-f["age_ms"], -f["octets"]),
    }
    return sorted(rated, key=orders[key])


def row_cells(flow):
    source, destination = units.flow_ends(flow)
    return {"RATE": units.bit_rate(flow["bytes_per_s"]), "PKT/S": units.si(flow["packets_per_s"]),
            "PROTO": units.protocol_name(flow["protocol"]), "SOURCE": source,
            "DESTINATION": destination, "BYTES": units.size(flow["octets"]),
            "AGE": units.age(flow["age_ms"]), "IF": interface_of(flow)}


def matches(cells, text):
    """The row filter: every word of `text` in the row, any case."""
    row = " ".join(cells.values()).lower()
    return all(word in row for word in text.lower().split())


def layout(cells_list, width):
    """The columns shown and their widths, to fit `width` (None: all)."""
    shown = list(COLUMNS)

    def natural(name):
        return max([len(name)] + [len(cells[name]) for cells in cells_list])

    widths = {name: natural(name) for name in shown}
    if width is None:
        return shown, widths

    def total():
        return sum(widths[name] for name in shown) + 2 * (len(shown) - 1)

    for name in ("SOURCE", "DESTINATION"):          # first: long IPv6 down to an IPv4's
        if total() > width:
            widths[name] = min(widths[name], max(ADDRESS_WIDTH, len(name)))
    for name in DROP_ORDER:
        if total() <= width:
            break
        shown.remove(name)
    over = total() - width
    if over > 0:                                    # then the addresses, evenly
        for name in ("SOURCE", "DESTINATION"):
            cut = min((over + 1) // 2, widths[name] - MIN_ADDRESS_WIDTH)
            widths[name] -= max(0, cut)
            over -= max(0, cut)
    return shown, widths


def render_table(cells_list, width):
    shown, widths = layout(cells_list, width)
    lines = []
    for cells in [dict(zip(COLUMNS, COLUMNS))] + cells_list:
        parts = []
        for name in shown:
            text = units.shorten(cells[name], widths[name])
            parts.append(text.rjust(widths[name]) if name in RIGHT else text.ljust(widths[name]))
        lines.append("  ".join(parts).rstrip())
    return lines


def format_top(rated, current, seconds, rows, width=None, sort="rate", text_filter="",
               keys_line=None):
    """A frame: title, header, the rows that fit, and the keys line when
    interactive; `width` None: no column is dropped or cut."""
    shown = [cells for cells in (row_cells(f) for f in sort_flows(rated, sort))
             if not text_filter or matches(cells, text_filter)]
    total_bytes = sum(f["bytes_per_s"] for f in rated)
    total_packets = sum(f["packets_per_s"] for f in rated)
    title = (f"flowprobe top {time.strftime('%H:%M:%S')}  {current['matched']} of "
             f"{current['active']} flows  {units.bit_rate_with_bytes(total_bytes)}  "
             f"{units.packet_rate(total_packets)}")
    if keys_line is None:   # else the keys line says it
        title += f"  over {seconds:.1f} s  {view_text(sort, text_filter)}"
    lines = [title]
    if shown:
        lines += render_table(shown[:rows], width)
    else:
        lines.append("(no flows)" if not rated else f"(no flows match '{text_filter}')")
    if keys_line is not None:
        lines.append(keys_line)
    if width is not None:
        lines = [line[:width] for line in lines]
    return "\n".join(lines)


KEYS_HELP = "q quit  r p b a sort  / filter"


def view_text(sort, text_filter):
    return f"by {SORTS[sort]}" + (f"  filter: {text_filter}" if text_filter else "")


class Keyboard:
    """Single keys from a terminal without Enter; inert when stdin is not one."""

    def __init__(self, stream):
        self.saved = None
        if stream is not None and stream.isatty():
            import termios
            import tty
            self.fd = stream.fileno()
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)  # Ctrl-C still raises KeyboardInterrupt

    @property
    def interactive(self):
        return self.saved is not None

    def key(self, seconds):
        """The next key within `seconds`, or None."""
        if self.saved is None:
            time.sleep(max(0, seconds))
            return None
        ready, _, _ = select.select([self.fd], [], [], max(0, seconds))
        if not ready:
            return None
        return os.read(self.fd, 1).decode(errors="replace")

    def restore(self):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


class View:
    """What the keys change: the sort, the filter and its editing."""

    def __init__(self, sort, text_filter):
        self.sort, self.filter = sort, text_filter
        self.editing = None    # the filter being typed, or None

    def press(self, key):
        """Applies a key; 'quit' to stop, else True when the frame changed."""
        if self.editing is not None:
            if key in ("\r", "\n"):
                self.filter, self.editing = self.editing.strip(), None
            elif key == "\x1b":
                self.editing = None
            elif key in ("\x7f", "\b"):
                self.editing = self.editing[:-1]
            elif key.isprintable():
                self.editing += key
            return True
        if key in ("q", "Q"):
            return "quit"
        if key in SORT_KEYS:
            self.sort = SORT_KEYS[key]
            return True
        if key == "/":
            self.editing = self.filter
            return True
        if key == "\x1b" and self.filter:
            self.filter = ""
            return True
        return False

    def keys_line(self):
        if self.editing is not None:
            return f"filter: {self.editing}_   (Enter keeps it, Esc cancels)"
        return f"{view_text(self.sort, self.filter)}   {KEYS_HELP}"


def _screen_size(args):
    size = shutil.get_terminal_size()
    return size.columns, size.lines


def command_top(args):
    request = dict(filters(args), sort="bytes", limit=MAX_LIMIT)
    keyboard = Keyboard(None if args.once else sys.stdin)
    view = View(args.sort, args.filter or "")
    screen = not args.once and not args.json and sys.stdout.isatty()
    if screen:
        sys.stdout.write(ALTERNATE_SCREEN)
    try:
        previous, taken = call(args.socket, "flows", request), time.monotonic()
        frame = None

        def draw():
            columns, lines = _screen_size(args)
            keys = view.keys_line() if keyboard.interactive else None
            rows = args.rows or max(1, lines - 2 - (keys is not None))
            text = format_top(frame[0], frame[1], frame[2], rows,
                              width=columns if screen else None, sort=view.sort,
                              text_filter=view.filter, keys_line=keys)
            if screen:
                shown = text.split("\n")
                if keys is not None:   # the keys on the bottom line
                    shown[-1:] = [""] * (lines - len(shown)) + shown[-1:]
                # no newline after the last line: it would scroll the screen
                sys.stdout.write(HOME + (CLEAR_LINE + "\r\n").join(shown[:lines])
                                 + CLEAR_LINE + CLEAR_BELOW)
                sys.stdout.flush()
                return
            print(text if args.once else CLEAR_SCREEN + text, flush=True)

        while True:
            deadline = time.monotonic() + args.interval
            while (left := deadline - time.monotonic()) > 0:
                key = keyboard.key(left)
                if key is None:
                    continue
                changed = view.press(key)
                if changed == "quit":
                    return EXIT_OK
                if changed and frame is not None:
                    draw()
            current, now = call(args.socket, "flows", request), time.monotonic()
            seconds = max(now - taken, 1e-3)
            rated = top_rates(previous, current, seconds)
            if args.json:
                print(json.dumps({"seconds": round(seconds, 3), "active": current["active"],
                                  "matched": current["matched"],
                                  "flows": rated[:args.rows or 50]}), flush=True)
            else:
                frame = (rated, current, seconds)
                draw()
            if args.once:
                return EXIT_OK
            previous, taken = current, now
    except ControlError as e:
        if screen:
            sys.stdout.write(NORMAL_SCREEN)
            screen = False
        return fail(e)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        keyboard.restore()
        if screen:
            sys.stdout.write(NORMAL_SCREEN)
            sys.stdout.flush()


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def add_parser(subparsers):
    import argparse
    top = subparsers.add_parser("top", help="the busiest flows, live (q or Ctrl-C quits)",
                                description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    socket_options(top)
    filter_options(top)
    top.add_argument("--interval", type=_positive_float, default=TOP_INTERVAL,
                     metavar="SECONDS", help=f"refresh period (default {TOP_INTERVAL:g})")
    top.add_argument("--sort", choices=tuple(SORTS), default="rate",
                     help="busiest by bit rate (default), by packet rate, biggest by bytes, "
                          "or oldest first")
    top.add_argument("--filter", metavar="TEXT",
                     help="only rows holding every word of TEXT (an address, a port, "
                          "a protocol, an interface); applied here, to the flows shown")
    top.add_argument("--rows", type=int, default=0,
                     help="flows shown (default: what fits the terminal)")
    top.add_argument("--once", action="store_true",
                     help="print one frame (rates over one interval) and exit")
    top.set_defaults(handler=command_top)
