"""struct fp_record batches as rows of a segment.

A batch is copied out of the meter's buffer as bytes (one memcpy), and
turned into rows by struct.iter_unpack and SQLite itself: the INSERT's
expressions trim IPv4 addresses to 4 bytes, turn the end time into a
duration and drop the NAT fields of captured flows.  No Python runs per
field, and only the iteration of executemany per record.
"""

import struct

from flowprobe._cmeter_ffi import ffi

RECORD = ffi.typeof("struct fp_record")
RECORD_SIZE = ffi.sizeof(RECORD)

# the fields a segment keeps, in the struct's order (struct.unpack's order)
KEPT = ("src_addr", "dst_addr", "packets", "octets", "flow_start_ms", "flow_end_ms",
        "reverse_packets", "reverse_octets", "ifindex", "src_port", "dst_port", "vlan_id",
        "ip_version", "protocol", "tcp_flags", "tos", "end_reason", "direction",
        "post_src_addr", "post_dst_addr", "post_src_port", "post_dst_port", "nat")
_CODES = {"uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "Q"}


def _layout():
    fields = dict(RECORD.fields)
    parts, position = ["="], 0
    for name in KEPT:
        field = fields[name]
        if field.offset > position:
            parts.append(f"{field.offset - position}x")
        size = ffi.sizeof(field.type)
        parts.append(f"{size}s" if field.type.kind == "array" else _CODES[field.type.cname])
        position = field.offset + size
    if RECORD_SIZE > position:
        parts.append(f"{RECORD_SIZE - position}x")
    return struct.Struct("".join(parts))


LAYOUT = _layout()
assert LAYOUT.size == RECORD_SIZE
_P = {name: f"?{i + 1}" for i, name in enumerate(KEPT)}   # SQL parameter of each field


def _address(name, version=_P["ip_version"]):
    return f"CASE {version} WHEN 4 THEN substr({_P[name]}, 1, 4) ELSE {_P[name]} END"


def _nat(expression):
    return f"CASE {_P['nat']} WHEN 0 THEN NULL ELSE {expression} END"


COLUMNS = {   # column → the expression over the record's fields that fills it
    "start_ms": _P["flow_start_ms"],
    "duration_ms": f"{_P['flow_end_ms']} - {_P['flow_start_ms']}",
    "ip_version": _P["ip_version"],
    "protocol": _P["protocol"],
    "src": _address("src_addr"),
    "dst": _address("dst_addr"),
    "src_port": _P["src_port"],
    "dst_port": _P["dst_port"],
    "packets": _P["packets"],
    "octets": _P["octets"],
    "reverse_packets": _P["reverse_packets"],
    "reverse_octets": _P["reverse_octets"],
    "ifindex": _P["ifindex"],
    "direction": _P["direction"],
    "tcp_flags": _P["tcp_flags"],
    "tos": _P["tos"],
    "end_reason": _P["end_reason"],
    "vlan": _P["vlan_id"],
    "nat_src": _nat(_address("post_src_addr")),
    "nat_dst": _nat(_address("post_dst_addr")),
    "nat_src_port": _nat(_P["post_src_port"]),
    "nat_dst_port": _nat(_P["post_dst_port"]),
}
INSERT = (f"INSERT INTO flows ({', '.join(COLUMNS)}) "
          f"VALUES ({', '.join(COLUMNS.values())})")

# rowid order is write order; the time range is pruned by segment first
SEGMENT_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS flows ({', '.join(
    name + (' BLOB' if name in ('src', 'dst', 'nat_src', 'nat_dst') else ' INTEGER')
    for name in COLUMNS)});
CREATE INDEX IF NOT EXISTS flows_src ON flows (src);
CREATE INDEX IF NOT EXISTS flows_dst ON flows (dst);
CREATE TABLE IF NOT EXISTS interfaces (ifindex INTEGER PRIMARY KEY, name TEXT NOT NULL);
"""


def batch_bytes(batch, count):
    """A copy of a drained batch (the meter reuses its buffer)."""
    return bytes(ffi.buffer(batch, count * RECORD_SIZE))


def rows(data):
    """The parameter tuples of INSERT for a bytes copy of records."""
    return LAYOUT.iter_unpack(data)
