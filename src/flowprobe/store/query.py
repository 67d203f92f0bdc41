"""Queries over the stored records: any combination of fields, across the
segments that overlap the time range.

A query is a JSON object (the control socket, ubus and the CLI send the
same one); every key is checked, an unknown one is an error naming it:

    since, until     Unix ms, or "24h" / "30m" / "7d" / "90s" before now (default: 1 h)
    address          an address or prefix at either end; src, dst: at that end
    port             either end; src_port, dst_port
    protocol         a name (tcp, udp, …) or a number; interface (a name); direction in|out
    min_bytes        flows of at least that many bytes (both directions)
    group_by         a list of: src dst host (either end) src/24 dst/24 host/24 (IPv6: /64)
                     src_port dst_port protocol interface direction ip_version, and
                     histograms by decade: bytes/log packets/log duration/log (ms)
                     packet_size/log (bytes per packet); a bucket is named by its
                     floor (0 for 0-9, 10 for 10-99, ...)
    bucket           seconds: sums per time bucket (for charts), with or without group_by
    sort             bytes | packets | flows | start (records: newest first) | time
                     (buckets in time order: the default with bucket)
    limit, offset    paging (limit at most MAX_LIMIT)

Without group_by and bucket the reply lists records; with them, groups
with their bytes, packets and flows.  A record belongs to the time of its
start.

Each segment is attached in turn to a private in-memory database and the
per-segment results are summed there, by SQLite: memory is bounded by
MAX_GROUPS, time by a deadline (SQLite's progress handler interrupts the
query), so a query never holds the daemon's loop longer than that.
"""

import ipaddress
import re
import sqlite3
import time

from flowprobe.store import segments

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_OFFSET = 1_000_000
MAX_GROUPS = 200_000
DEADLINE_S = 1.0              # on the daemon's loop: a query holds capture this long at most
DEFAULT_SPAN_MS = 3_600_000
HOUR_MS = 3_600_000
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58, "sctp": 132,
             "udplite": 136}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
DIRECTIONS = {"in": 1, "out": 2}
DIRECTION_NAMES = {1: "in", 2: "out", 0: "both"}
RELATIVE = re.compile(r"([0-9]+)([smhd])")
UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
KEYS = ("since", "until", "address", "src", "dst", "port", "src_port", "dst_port", "protocol",
        "interface", "direction", "min_bytes", "group_by", "bucket", "sort", "limit", "offset")
SORTS = ("bytes", "packets", "flows", "start", "time")

INTERFACE_NAME = "(SELECT name FROM s.interfaces i WHERE i.ifindex = f.ifindex)"
GROUP_KEYS = {
    # +: grouping scans and sorts; the address index would cost a random read a record
    "src": "+f.src", "dst": "+f.dst", "host": "+f.host",
    "src/24": "substr(f.src, 1, CASE f.ip_version WHEN 4 THEN 3 ELSE 8 END)",
    "dst/24": "substr(f.dst, 1, CASE f.ip_version WHEN 4 THEN 3 ELSE 8 END)",
    "host/24": "substr(f.host, 1, CASE f.ip_version WHEN 4 THEN 3 ELSE 8 END)",
    "src_port": "f.src_port", "dst_port": "f.dst_port", "protocol": "f.protocol",
    "interface": f"coalesce({INTERFACE_NAME}, f.ifindex)", "direction": "f.direction",
    "ip_version": "f.ip_version",
}
for _prefix in ("src", "dst", "host"):
    GROUP_KEYS[f"{_prefix}/64"] = GROUP_KEYS[f"{_prefix}/24"]
# histograms: decades (the number of decimal digits), portable to any SQLite
# (log() needs SQLITE_ENABLE_MATH_FUNCTIONS); a bucket is named by its floor
HISTOGRAMS = {
    "bytes/log": "f.octets + f.reverse_octets",
    "packets/log": "f.packets + f.reverse_packets",
    "duration/log": "f.duration_ms",
    "packet_size/log": "(f.octets + f.reverse_octets) / max(f.packets + f.reverse_packets, 1)",
}
for _key, _value in HISTOGRAMS.items():
    GROUP_KEYS[_key] = f"length(CAST({_value} AS TEXT))"
RECORD_COLUMNS = ("start_ms", "duration_ms", "ip_version", "protocol", "src", "dst", "src_port",
                  "dst_port", "packets", "octets", "reverse_packets", "reverse_octets",
                  "ifindex", "direction", "tcp_flags", "tos", "end_reason", "vlan", "nat_src",
                  "nat_dst", "nat_src_port", "nat_dst_port")


class QueryError(ValueError):
    """A query that cannot run; the message names the key."""


def _integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _time(key, value, now_ms):
    if _integer(value) and value >= 0:
        return value
    if isinstance(value, str):
        match = RELATIVE.fullmatch(value.strip())
        if match:
            return now_ms - int(match.group(1)) * UNIT_MS[match.group(2)]
    raise QueryError(f"query: {key} must be Unix milliseconds or a time before now such as "
                     f"\"24h\", \"30m\", \"7d\", got {value!r}")


def _network(key, value):
    if not isinstance(value, str):
        raise QueryError(f"query: {key} must be an IP address or prefix (a string), "
                         f"got {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise QueryError(f"query: {key} {value!r} is not an IP address or prefix") from None


def _bounded(key, value, low, high):
    if not _integer(value) or not low <= value <= high:
        raise QueryError(f"query: {key} must be an integer {low}..{high}, got {value!r}")
    return value


class Query:
    """A checked query: SQL conditions with their parameters."""

    def __init__(self, spec, now_ms):
        if not isinstance(spec, dict):
            raise QueryError(f"query: must be a JSON object, got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise QueryError(f"query: unknown key {', '.join(map(repr, unknown))} "
                             f"(allowed: {', '.join(KEYS)})")
        self.until_ms = _time("until", spec["until"], now_ms) if "until" in spec else now_ms + 1
        self.since_ms = (_time("since", spec["since"], now_ms) if "since" in spec
                         else self.until_ms - DEFAULT_SPAN_MS)
        if self.since_ms >= self.until_ms:
            raise QueryError("query: since must be before until")
        self.conditions = ["f.start_ms >= :since", "f.start_ms < :until"]
        self.parameters = {"since": self.since_ms, "until": self.until_ms}
        for key in ("address", "src", "dst"):
            if key in spec:
                self._address(key, _network(key, spec[key]))
        for key, columns in (("port", ("src_port", "dst_port")), ("src_port", ("src_port",)),
                             ("dst_port", ("dst_port",))):
            if key in spec:
                self.parameters[key] = _bounded(key, spec[key], 0, 65535)
                self.conditions.append(
                    "(" + " OR ".join(f"f.{column} = :{key}" for column in columns) + ")")
        if "protocol" in spec:
            self.parameters["protocol"] = _protocol(spec["protocol"])
            self.conditions.append("f.protocol = :protocol")
        if "interface" in spec:
            name = spec["interface"]
            if not isinstance(name, str) or not name:
                raise QueryError(f"query: interface must be an interface name, got {name!r}")
            self.parameters["interface"] = name
            self.conditions.append(
                "f.ifindex IN (SELECT ifindex FROM s.interfaces WHERE name = :interface)")
        if "direction" in spec:
            if spec["direction"] not in DIRECTIONS:
                raise QueryError(f"query: direction must be in or out, got {spec['direction']!r}")
            self.parameters["direction"] = DIRECTIONS[spec["direction"]]
            self.conditions.append("f.direction = :direction")
        if "min_bytes" in spec:
            self.parameters["min_bytes"] = _bounded("min_bytes", spec["min_bytes"], 0, 2**62)
            self.conditions.append("f.octets + f.reverse_octets >= :min_bytes")
        group_by = spec.get("group_by", [])
        if isinstance(group_by, str):
            group_by = [group_by]
        if not isinstance(group_by, list) or any(key not in GROUP_KEYS for key in group_by):
            raise QueryError(f"query: group_by must be a list of: {', '.join(GROUP_KEYS)}; "
                             f"got {spec.get('group_by')!r}")
        if len(set(group_by)) != len(group_by):
            raise QueryError("query: group_by names a key twice")
        self.group_by = group_by
        self.bucket_s = (_bounded("bucket", spec["bucket"], 1, 366 * 86400)
                         if "bucket" in spec else None)
        # time buckets (a chart) come in time order unless a sort is asked for
        self.sort = spec.get("sort", "time" if self.bucket_s is not None else
                             "bytes" if self.grouped else "start")
        if self.sort not in SORTS or (self.sort == "time" and self.bucket_s is None):
            raise QueryError(f"query: sort must be one of {', '.join(SORTS)}, "
                             f"got {self.sort!r}")
        self.limit = _bounded("limit", spec.get("limit", DEFAULT_LIMIT), 1, MAX_LIMIT)
        self.offset = _bounded("offset", spec.get("offset", 0), 0, MAX_OFFSET)

    @property
    def grouped(self):
        return bool(self.group_by) or self.bucket_s is not None

    def _address(self, key, network):
        size = 4 if network.version == 4 else 16
        low = network.network_address.packed
        high = network.broadcast_address.packed
        self.parameters.update({f"{key}_version": network.version, f"{key}_low": low,
                                f"{key}_high": high})
        assert len(low) == size
        ends = ("src", "dst") if key == "address" else (key,)
        if network.prefixlen == network.max_prefixlen:   # one address: index lookups
            # (4 bytes never equal 16: the length says the family)
            self.conditions.append(
                "(" + " OR ".join(f"f.{end} = :{key}_low" for end in ends) + ")")
            return
        self.conditions.append(
            f"f.ip_version = :{key}_version AND ("
            + " OR ".join(f"f.{end} BETWEEN :{key}_low AND :{key}_high" for end in ends) + ")")

    def wanted(self, segment):
        return segment.first_ms < self.until_ms and segment.last_ms >= self.since_ms

    # ---- SQL ----

    def source(self):
        return f"s.flows f WHERE {' AND '.join(self.conditions)}"

    def passes(self):
        """(group columns, source) of each pass over a segment: one, or two
        when a key is a host (either end): each record is counted at its
        source, then at its destination unless both are the same."""
        columns = [GROUP_KEYS[key] for key in self.group_by]
        if self.bucket_s is not None:
            columns.append(f"f.start_ms / {self.bucket_s * 1000} * {self.bucket_s}")
        if not any(key.startswith("host") for key in self.group_by):
            return [(columns, self.source())]
        return [([c.replace("f.host", f"f.{end}") for c in columns],
                 self.source() + (" AND f.dst != f.src" if end == "dst" else ""))
                for end in ("src", "dst")]


def _protocol(value):
    if isinstance(value, str):
        number = PROTOCOLS.get(value.strip().lower())
        if number is None:
            raise QueryError(f"query: unknown protocol {value!r} (names: {', '.join(PROTOCOLS)}; "
                             "or a number 0..255)")
        return number
    return _bounded("protocol", value, 0, 255)


def run(query, store_segments, deadline_s=DEADLINE_S, rollups_path=None):
    """The reply to a checked Query over the given segments (oldest first);
    with rollups_path, whole hours of the sums the rollups keep come from
    there (the same figures, a row per host or series an hour instead of a
    record per flow)."""
    wanted = [segment for segment in store_segments if query.wanted(segment)]
    connection = sqlite3.connect(":memory:", isolation_level=None)
    deadline = time.monotonic() + deadline_s
    connection.set_progress_handler(lambda: time.monotonic() > deadline, 20_000)
    try:
        hours = _rollup_hours(query, store_segments, rollups_path)
        if hours:
            reply = _grouped(connection, query, wanted, hours, rollups_path)
        elif query.grouped:
            reply = _grouped(connection, query, wanted)
        else:
            reply = _records(connection, query, wanted)
    except sqlite3.OperationalError as e:
        if "interrupted" in str(e):
            raise QueryError(f"query: took longer than {deadline_s:g} s; narrow the time "
                             "range or add filters") from None
        raise
    finally:
        connection.close()
    reply.update(since=query.since_ms, until=query.until_ms, segments=len(wanted),
                 limit=query.limit, offset=query.offset)
    return reply


def _attached(connection, store_segments):
    """Attaches each segment as s in turn (a segment removed meanwhile by
    the budget is skipped: its records are gone)."""
    for segment in store_segments:
        try:
            connection.execute("ATTACH ? AS s", (segments.sqlite_uri(segment.path, "ro",
                                                                     segment.sealed),))
        except sqlite3.OperationalError:
            continue
        try:
            yield segment
        finally:
            connection.execute("DETACH s")


def _records(connection, query, store_segments):
    order = {"bytes": "octets + reverse_octets DESC", "packets": "packets + reverse_packets DESC",
             "flows": "start_ms DESC", "start": "start_ms DESC"}[query.sort]
    wanted = query.limit + query.offset
    columns = ", ".join(RECORD_COLUMNS)
    connection.execute(f"CREATE TEMP TABLE found ({columns}, interface)")
    matched = 0
    for _ in _attached(connection, store_segments):
        taken = connection.execute(
            f"INSERT INTO found SELECT {', '.join('f.' + c for c in RECORD_COLUMNS)}, "
            f"{INTERFACE_NAME} FROM {query.source()} ORDER BY {order} LIMIT {wanted}",
            query.parameters).rowcount
        if taken < wanted:   # all of them: no need to count again
            matched += taken
        else:
            matched += connection.execute(f"SELECT count(*) FROM {query.source()}",
                                          query.parameters).fetchone()[0]
    found = connection.execute(f"SELECT {columns}, interface FROM found ORDER BY {order} "
                               f"LIMIT ? OFFSET ?", (query.limit, query.offset)).fetchall()
    return {"records": [_record(row) for row in found], "matched": matched}


SERIES_KEYS = {"protocol": "protocol", "direction": "direction",
               "interface": "coalesce((SELECT name FROM r.interfaces i "
                            "WHERE i.ifindex = x.ifindex), x.ifindex)"}


def _rollup_hours(query, store_segments, rollups_path):
    """(first, end) in ms of the whole hours a query can take from the
    rollups, or None: the query filters, or groups by what they do not keep
    (hosts alone; protocol, interface, direction and hour-multiple time
    buckets), or spans no whole hour after the oldest record."""
    if rollup_table(query) is None or rollups_path is None or not store_segments:
        return None
    oldest = min(segment.first_ms for segment in store_segments)
    first = -(-max(query.since_ms, oldest) // HOUR_MS) * HOUR_MS
    end = query.until_ms // HOUR_MS * HOUR_MS
    return (first, end) if first < end else None


def rollup_table(query):
    if len(query.conditions) != 2:
        return None
    if query.group_by == ["host"] and query.bucket_s is None:
        return "hosts"
    if (query.grouped and set(query.group_by) <= set(SERIES_KEYS)
            and (query.bucket_s is None or query.bucket_s % 3600 == 0)):
        return "series"
    return None


def _grouped(connection, query, store_segments, hours=None, rollups_path=None):
    names = [f"k{i}" for i in range(len(query.passes()[0][0]))]
    connection.execute(f"CREATE TEMP TABLE sums ({', '.join(names + ['b', 'p', 'n'])})")
    if hours:
        hours = _rollup_sums(connection, query, hours, rollups_path)
    if hours:   # the records outside those hours only
        query.conditions.append("(f.start_ms < :hours_first OR f.start_ms >= :hours_end)")
        query.parameters.update(hours_first=hours[0], hours_end=hours[1])
        store_segments = [s for s in store_segments
                          if s.first_ms < hours[0] or s.last_ms >= hours[1]]
    for _ in _attached(connection, store_segments):
        for columns, source in query.passes():
            select = ", ".join(f"{key} AS {name}" for key, name in zip(columns, names))
            connection.execute(
                f"INSERT INTO sums SELECT {select}, sum(f.octets + f.reverse_octets), "
                f"sum(f.packets + f.reverse_packets), count(*) FROM {source} "
                f"GROUP BY {', '.join(names)}", query.parameters)
        if connection.execute("SELECT count(*) FROM sums").fetchone()[0] > MAX_GROUPS:
            raise QueryError(f"query: more than {MAX_GROUPS} groups; narrow the time range, "
                             "filter, or group by less")
    order = {"bytes": "b DESC", "packets": "p DESC", "flows": "n DESC",
             "start": (names[-1] if query.bucket_s is not None else "b") + " DESC",
             "time": f"{names[-1]}, b DESC"}[query.sort]
    group = ", ".join(names)
    totals = connection.execute("SELECT count(*), sum(b), sum(p), sum(n) FROM "
                                f"(SELECT sum(b) b, sum(p) p, sum(n) n FROM sums GROUP BY {group})"
                                ).fetchone()
    found = connection.execute(
        f"SELECT {group}, sum(b) b, sum(p) p, sum(n) n FROM sums GROUP BY {group} "
        f"ORDER BY {order}, {group} LIMIT ? OFFSET ?", (query.limit, query.offset)).fetchall()
    labels = query.group_by + (["time"] if query.bucket_s is not None else [])
    groups = []
    for row in found:
        group_row = {label: _key(label, value) for label, value in zip(labels, row)}
        group_row.update(bytes=row[-3], packets=row[-2], flows=row[-1])
        groups.append(group_row)
    return {"groups": groups, "matched_groups": totals[0], "bytes": totals[1] or 0,
            "packets": totals[2] or 0, "flows": totals[3] or 0}


def _rollup_sums(connection, query, hours, rollups_path):
    """The sums of whole hours from the rollups; returns the hours they
    cover (the rollups' oldest hours may have gone to their budget)."""
    table = rollup_table(query)
    connection.execute("ATTACH ? AS r", (segments.sqlite_uri(rollups_path, "ro"),))
    try:
        oldest = connection.execute(f"SELECT min(bucket) FROM r.{table} WHERE resolution = 3600"
                                    ).fetchone()[0]
        if oldest is None or oldest * 1000 >= hours[1]:
            return None
        hours = (max(hours[0], oldest * 1000), hours[1])
        if table == "hosts":
            keys = ["address"]
        else:
            keys = [SERIES_KEYS[key] for key in query.group_by]
            if query.bucket_s is not None:
                keys.append(f"bucket / {query.bucket_s} * {query.bucket_s}")
        columns = ", ".join(keys)
        group = ", ".join(str(i + 1) for i in range(len(keys)))
        connection.execute(
            f"INSERT INTO sums SELECT {columns}, sum(octets), sum(packets), sum(flows) "
            f"FROM r.{table} x WHERE resolution = 3600 AND bucket >= ? AND bucket < ? "
            f"GROUP BY {group}", (hours[0] // 1000, hours[1] // 1000))
        return hours
    finally:
        connection.execute("DETACH r")


def address_text(blob):
    if blob is None:
        return None
    return str(ipaddress.ip_address(bytes(blob)))


def _key(label, value):
    if label in ("src", "dst", "host"):
        return address_text(value)
    if label.endswith("/24") or label.endswith("/64"):
        if len(value) == 3:
            return f"{ipaddress.ip_address(bytes(value) + bytes(1))}/24"
        return f"{ipaddress.ip_address(bytes(value) + bytes(8))}/64"
    if label == "protocol":
        return PROTOCOL_NAMES.get(value, value)
    if label == "direction":
        return DIRECTION_NAMES.get(value, value)
    if label == "time":
        return value * 1000    # Unix ms, as every time in a reply
    if label in HISTOGRAMS:
        return 0 if value <= 1 else 10 ** (value - 1)   # [floor, 10 x floor)
    return value


def _record(row):
    record = dict(zip(RECORD_COLUMNS + ("interface",), row))
    for key in ("src", "dst", "nat_src", "nat_dst"):
        record[key] = address_text(record[key])
    record["protocol"] = PROTOCOL_NAMES.get(record["protocol"], record["protocol"])
    record["direction"] = DIRECTION_NAMES.get(record["direction"], record["direction"])
    record["bytes"] = record["octets"] + record["reverse_octets"]
    if record["interface"] is None:
        record["interface"] = str(record["ifindex"])
    for key in ("nat_src", "nat_dst", "nat_src_port", "nat_dst_port"):
        if record[key] is None:
            del record[key]
    return record
