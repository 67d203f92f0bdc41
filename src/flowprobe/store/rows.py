"""struct fp_record batches as rows of a segment.

A batch is copied out of the meter's buffer as bytes (one memcpy).  The
writer hands each ROWS_PER_INSERT of its records to SQLite as one blob, in
which the C core (cmeter/history_rows.c) has written the KEPT fields at
fixed widths: addresses as their 16 bytes, numbers as zero-padded decimals
(3 characters for a uint8_t, ..., 20 for a uint64_t).  One prepared INSERT
takes the blob apart (substr, CAST), and its expressions, here, trim IPv4
addresses to 4 bytes, turn the end time into a duration and drop the NAT
fields of captured flows.  No Python runs per record: binding each
record's 23 fields as parameters through sqlite3 cost ~20 000 interpreter
instructions a record.
"""

import struct

from flowprobe._cmeter_ffi import ffi, lib

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


def _fields():
    """(the fields for the C core, the SQL expression that reads each from
    the blob ?1 at the record that starts at r.at, a record's width)"""
    fields = dict(RECORD.fields)
    wanted = ffi.new("struct fp_history_field[]", len(KEPT))
    reads, position = {}, 0
    for field, name in zip(wanted, KEPT):
        found = fields[name]
        field.offset = found.offset
        field.kind = lib.FP_HISTORY_ADDRESS if found.type.kind == "array" else ffi.sizeof(
            found.type)
        width = lib.fp_history_field_width(field.kind)
        read = f"substr(?1, r.at + {position}, {width})"
        reads[name] = read if field.kind == lib.FP_HISTORY_ADDRESS else f"CAST({read} AS INTEGER)"
        position += width
    return wanted, reads, position


FIELDS, _P, ROW_WIDTH = _fields()
assert ROW_WIDTH == lib.fp_history_row_width(FIELDS, len(KEPT))
ROWS_PER_INSERT = 256   # the blob: ~60 KB


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
# a row for each ROW_WIDTH bytes of the blob, in order (rowid order is
# write order)
INSERT = (f"WITH RECURSIVE r(at) AS (SELECT 1 WHERE length(?1) >= {ROW_WIDTH} UNION ALL "
          f"SELECT at + {ROW_WIDTH} FROM r WHERE at + {ROW_WIDTH} <= length(?1)) "
          f"INSERT INTO flows ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS.values())} FROM r")

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


class Rows:
    """Records into the open segment's flows, through a buffer of its own
    (ROWS_PER_INSERT records) where the C core writes their blob."""

    def __init__(self):
        self._blob = ffi.new("uint8_t[]", ROWS_PER_INSERT * ROW_WIDTH)

    def insert(self, connection, data):
        """Every record of a bytes copy of records."""
        records = ffi.from_buffer("struct fp_record[]", data)
        count = len(data) // RECORD_SIZE
        for start in range(0, count, ROWS_PER_INSERT):
            length = lib.fp_history_rows(records + start, min(count - start, ROWS_PER_INSERT),
                                         FIELDS, len(KEPT), self._blob, len(self._blob))
            if length < 0:   # cannot happen: the buffer holds ROWS_PER_INSERT records
                raise ValueError("history: a batch's rows do not fit their buffer")
            connection.execute(INSERT, (ffi.buffer(self._blob, length),))
