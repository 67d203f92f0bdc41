"""What the verbs that talk to a running daemon share: the socket option,
the flow filters, one-line errors and the exit statuses."""

import json
import sys

from flowprobe.control.handlers import PROTOCOLS

DEFAULT_SOCKET = "/var/run/flowprobe.sock"

# exit statuses of every verb (argparse's usage errors are 2)
EXIT_OK = 0
EXIT_FAILED = 1        # the daemon could not be asked, or refused the request
EXIT_USAGE = 2
EXIT_ATTENTION = 3     # status: running, but something needs attention


def socket_options(parser):
    parser.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help=f"the daemon's control socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def filter_options(parser):
    group = parser.add_argument_group("filters (all given must match; the daemon applies them)")
    group.add_argument("--address", metavar="IP[/LEN]",
                       help="an address or prefix, matching either end")
    group.add_argument("--port", type=int, help="source or destination port")
    group.add_argument("--protocol", metavar="NAME|NUMBER",
                       help=f"{', '.join(PROTOCOLS)} or an IP protocol number")
    group.add_argument("--interface", metavar="NAME", help="capture interface")


def filters(args):
    """The control method's filter arguments from the options given."""
    chosen = {}
    if args.address is not None:
        chosen["address"] = args.address
    if args.port is not None:
        chosen["port"] = args.port
    if args.protocol is not None:
        protocol = args.protocol
        chosen["protocol"] = int(protocol) if protocol.isdigit() else protocol.lower()
    if args.interface is not None:
        chosen["interface"] = args.interface
    return chosen


def print_json(result):
    print(json.dumps(result, indent=2))


def fail(message):
    print(f"flowprobe: {message}", file=sys.stderr)
    return EXIT_FAILED


def interface_of(flow):
    if flow.get("interface"):
        return flow["interface"]
    return str(flow["ifindex"]) if flow.get("ifindex") else "-"
