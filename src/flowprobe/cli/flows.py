"""flowprobe flows | expire | reload: the live table, ending flows, and a
configuration re-read. Exit status 0, or 1 when the daemon could not be
asked or refused (a reload that was not applied)."""

from flowprobe.cli import units
from flowprobe.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    fail,
    filter_options,
    filters,
    interface_of,
    print_json,
    socket_options,
)
from flowprobe.control.client import call
from flowprobe.control.handlers import DEFAULT_LIMIT, MAX_LIMIT, SORT_KEYS, ControlError


def flow_row(flow):
    source, destination = units.flow_ends(flow)
    return (units.protocol_name(flow["protocol"]), source, destination,
            units.count(flow["packets"]), units.size(flow["octets"]), units.age(flow["age_ms"]),
            interface_of(flow))


def device_of(flow):
    """The device at the flow's local end (enrich/devices.py): its name, else its MAC."""
    for side in ("src_device", "dst_device"):
        device = flow.get(side)
        if device:
            return device.get("name") or device.get("mac")
    return "-"


def icmp_errors_of(flow):
    """ICMP errors about the flow: how many, and the latest's type/code."""
    if not flow.get("icmp_errors"):
        return "-"
    return f"{flow['icmp_errors']} (type {flow['icmp_error_type']}/{flow['icmp_error_code']})"


def format_flows(result):
    header = ("PROTO", "SOURCE", "DESTINATION", "PACKETS", "BYTES", "AGE", "IF")
    rows = [flow_row(flow) for flow in result["flows"]]
    if any(f.get("src_device") or f.get("dst_device") for f in result["flows"]):
        header += ("DEVICE",)
        rows = [row + (device_of(flow),) for row, flow in zip(rows, result["flows"])]
    if any(f.get("icmp_errors") for f in result["flows"]):   # option icmp_errors
        header += ("ICMP ERRORS",)
        rows = [row + (icmp_errors_of(flow),) for row, flow in zip(rows, result["flows"])]
    summary = f"{len(rows)} of {result['matched']} matching flows ({result['active']} active)"
    if not rows:
        return summary
    return units.table(header, rows, right=(3, 4, 5)) + "\n" + summary


def command_flows(args):
    request = dict(filters(args), sort=args.sort, limit=args.limit)
    try:
        result = call(args.socket, "flows", request)
    except ControlError as e:
        return fail(e)
    print_json(result) if args.json else print(format_flows(result))
    return EXIT_OK


def command_expire(args):
    try:
        result = call(args.socket, "expire", filters(args))
    except ControlError as e:
        return fail(e)
    if args.json:
        print_json(result)
    else:
        n = result["expired"]
        print(f"expired {n} flow{'' if n == 1 else 's'}")
    return EXIT_OK


def command_reload(args):
    try:
        result = call(args.socket, "reload")
    except ControlError as e:
        return fail(e)
    if args.json:
        print_json(result)
    elif result.get("reloaded"):
        print("reloaded")
    else:
        print(f"not reloaded: {result.get('error') or 'no reason given'}")
    return EXIT_OK if result.get("reloaded") else EXIT_FAILED


def add_parsers(subparsers):
    flows = subparsers.add_parser("flows", help="the live flow table, filtered and sorted")
    socket_options(flows)
    filter_options(flows)
    flows.add_argument("--sort", choices=SORT_KEYS, default="bytes",
                       help="biggest (bytes, packets) or oldest (age) first; default bytes")
    flows.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                       help=f"at most this many flows, 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})")
    flows.set_defaults(handler=command_flows)

    expire = subparsers.add_parser("expire", help="end flows now and export them "
                                                  "(all, or those matching the filters)")
    socket_options(expire)
    filter_options(expire)
    expire.set_defaults(handler=command_expire)

    reload = subparsers.add_parser("reload", help="re-read the configuration")
    socket_options(reload)
    reload.set_defaults(handler=command_reload)
