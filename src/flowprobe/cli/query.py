"""flowprobe query: the history store's records and sums, from the running
daemon (its control socket), or straight from a history_dir with --dir
(read-only; the daemon may be stopped).  Every option maps to one key of
the query object (store/query.py); --json prints the reply as it came."""

from flowprobe.cli import units
from flowprobe.cli.common import EXIT_FAILED, EXIT_OK, fail, print_json, socket_options
from flowprobe.control.client import call
from flowprobe.control.handlers import ControlError

DIRECT_DEADLINE_S = 60.0
# option → query key; values as typed (the daemon checks them)
TEXT_OPTIONS = {"since": "since", "until": "until", "address": "address", "src": "src",
                "dst": "dst", "interface": "interface", "direction": "direction",
                "sort": "sort"}
NUMBER_OPTIONS = {"port": "port", "src_port": "src_port", "dst_port": "dst_port",
                  "min_bytes": "min_bytes", "bucket": "bucket", "limit": "limit",
                  "offset": "offset"}


def query_of(args):
    spec = {}
    for option, key in TEXT_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            spec[key] = int(value) if key in ("since", "until") and value.isdigit() else value
    for option, key in NUMBER_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            spec[key] = value
    if args.protocol is not None:
        spec["protocol"] = int(args.protocol) if args.protocol.isdigit() else args.protocol
    if args.group_by:
        spec["group_by"] = [key.strip() for key in args.group_by.split(",") if key.strip()]
    if args.top is not None:
        spec.setdefault("group_by", ["host"])
        spec["limit"] = args.top
        spec.setdefault("sort", "bytes")
    return spec


def run_query(args, spec):
    if args.dir:
        import os
        import time

        from flowprobe.store import query, segments
        sealed, unsealed = segments.inventory(args.dir)
        for segment in unsealed:    # the daemon's open segment: its range is not named yet
            segment.first_ms, segment.last_ms = 0, 2**62
        rollups = os.path.join(args.dir, segments.ROLLUPS_FILE)
        # a process of its own: it may take longer than the daemon lets a query take
        return query.run(query.Query(spec, int(time.time() * 1000)), sealed + unsealed,
                         deadline_s=DIRECT_DEADLINE_S,
                         rollups_path=rollups if os.path.isfile(rollups) else None)
    return call(args.socket, "query", spec, timeout=10.0)


def format_records(reply):
    header = ("START", "DURATION", "PROTO", "SOURCE", "DESTINATION", "PACKETS", "BYTES", "IF")
    rows = []
    for record in reply["records"]:
        flow = dict(record, src_addr=record["src"], dst_addr=record["dst"],
                    protocol=_protocol_number(record["protocol"]))
        source, destination = units.flow_ends(flow)
        rows.append((units.timestamp_ms(record["start_ms"]),
                     units.seconds_ms(record["duration_ms"]), str(record["protocol"]), source,
                     destination, units.count(record["packets"] + record["reverse_packets"]),
                     units.size(record["bytes"]), record.get("interface") or "-"))
    summary = f"{len(rows)} of {reply['matched']} matching records ({reply['segments']} segments)"
    return (units.table(header, rows, right=(1, 5, 6)) + "\n" + summary) if rows else summary


def format_groups(reply):
    groups = reply["groups"]
    if not groups:
        return "no matching records"
    labels = [key for key in groups[0] if key not in ("bytes", "packets", "flows")]
    header = tuple(label.upper() for label in labels) + ("BYTES", "PACKETS", "FLOWS")
    rows = []
    for group in groups:
        cells = [units.timestamp_ms(group[label]) if label == "time" else str(group[label])
                 for label in labels]
        rows.append(tuple(cells) + (units.size(group["bytes"]), units.count(group["packets"]),
                                    units.count(group["flows"])))
    right = tuple(range(len(labels), len(labels) + 3))
    summary = (f"{len(rows)} of {reply['matched_groups']} groups; in all "
               f"{units.size(reply['bytes'])}, {units.count(reply['packets'])} packets, "
               f"{units.count(reply['flows'])} flows")
    return units.table(header, rows, right=right) + "\n" + summary


def _protocol_number(name):
    from flowprobe.store.query import PROTOCOLS
    return PROTOCOLS.get(name, name if isinstance(name, int) else 0)


def command_query(args):
    from flowprobe.store.query import QueryError
    try:
        reply = run_query(args, query_of(args))
    except (ControlError, QueryError) as e:
        return fail(e)
    except OSError as e:
        return fail(f"{args.dir}: {e.strerror or e}")
    if args.json:
        print_json(reply)
    else:
        print(format_groups(reply) if "groups" in reply else format_records(reply))
    return EXIT_OK if reply is not None else EXIT_FAILED


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "query", help="the flow history: records, sums, top talkers, time series",
        description="Records kept by the history store (option history), filtered by any "
                    "combination of fields; with --group-by or --bucket, sums per group.")
    socket_options(parser)
    parser.add_argument("--dir", metavar="PATH",
                        help="read a history_dir directly instead of asking the daemon")
    when = parser.add_argument_group("time (Unix ms, or before now: 90s, 30m, 24h, 7d)")
    when.add_argument("--since", help="from (default: 1 h before --until)")
    when.add_argument("--until", help="to (default: now)")
    match = parser.add_argument_group("filters (all given must match)")
    match.add_argument("--address", metavar="IP[/LEN]", help="either end")
    match.add_argument("--src", metavar="IP[/LEN]")
    match.add_argument("--dst", metavar="IP[/LEN]")
    match.add_argument("--port", type=int, help="either end")
    match.add_argument("--src-port", type=int)
    match.add_argument("--dst-port", type=int)
    match.add_argument("--protocol", metavar="NAME|NUMBER")
    match.add_argument("--interface", metavar="NAME")
    match.add_argument("--direction", choices=("in", "out"))
    match.add_argument("--min-bytes", type=int)
    sums = parser.add_argument_group("sums")
    sums.add_argument("--group-by", metavar="KEYS",
                      help="comma-separated: src dst host src/24 dst/24 host/24 (IPv6 /64) "
                           "src_port dst_port protocol interface direction ip_version")
    sums.add_argument("--bucket", type=int, metavar="SECONDS", help="sums per time bucket")
    sums.add_argument("--top", type=int, metavar="N",
                      help="the N busiest (by --group-by, default host)")
    parser.add_argument("--sort", choices=("bytes", "packets", "flows", "start", "time"))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--offset", type=int, help="skip this many (paging)")
    parser.set_defaults(handler=command_query)
