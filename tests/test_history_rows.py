"""The history store's rows, a batch's blob written by the C core
(cmeter/history_rows.c) and taken apart by one INSERT, store exactly what
binding each record's fields as parameters stores."""

import random
import sqlite3

import pytest

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.store import rows

# the same columns, each field bound as a parameter (rows.py before the blob)
BOUND_INSERT = (f"INSERT INTO flows ({', '.join(rows.COLUMNS)}) VALUES ("
                + ", ".join(rows.COLUMNS.values()) + ")")
for _name in sorted(rows.KEPT, key=lambda name: -len(rows._P[name])):
    BOUND_INSERT = BOUND_INSERT.replace(rows._P[_name], f"?{rows.KEPT.index(_name) + 1}")


def random_records(count, seed):
    rng = random.Random(seed)
    records = ffi.new("struct fp_record[]", count)
    for record in records:
        record.ip_version = rng.choice((4, 6))
        length = 4 if record.ip_version == 4 else 16
        for name in ("src_addr", "dst_addr", "post_src_addr", "post_dst_addr"):
            getattr(record, name)[0:length] = bytes(rng.randrange(256) for _ in range(length))
        record.nat = rng.choice((0, 1))
        for name in ("packets", "octets", "reverse_packets", "reverse_octets"):
            setattr(record, name, rng.choice((0, 1, rng.randrange(1 << 20), (1 << 63) - 1)))
        record.flow_start_ms = rng.randrange(1 << 41)
        record.flow_end_ms = record.flow_start_ms + rng.randrange(1 << 20)
        record.ifindex = rng.randrange(1 << 32)
        for name in ("src_port", "dst_port", "vlan_id", "post_src_port", "post_dst_port"):
            setattr(record, name, rng.randrange(1 << 16))
        for name in ("protocol", "tcp_flags", "tos", "end_reason", "direction"):
            setattr(record, name, rng.randrange(256))
    return bytes(ffi.buffer(records))


def stored(data, insert):
    connection = sqlite3.connect(":memory:")
    connection.executescript(rows.SEGMENT_SCHEMA)
    insert(connection, data)
    found = connection.execute("SELECT * FROM flows ORDER BY rowid").fetchall()
    connection.close()
    return found


def by_c_rows(connection, data):
    rows.Rows().insert(connection, data)


def by_parameters(connection, data):
    connection.executemany(BOUND_INSERT, rows.LAYOUT.iter_unpack(data))


@pytest.mark.parametrize("count", [1, rows.ROWS_PER_INSERT, 2 * rows.ROWS_PER_INSERT + 7])
def test_the_rows_written_in_c_equal_the_rows_bound_one_by_one(count):
    data = random_records(count, seed=count)
    expected = stored(data, by_parameters)
    assert len(expected) == count
    assert stored(data, by_c_rows) == expected


def test_a_counter_beyond_int64_keeps_its_64_bits_instead_of_turning_into_a_real():
    records = ffi.new("struct fp_record[]", 1)
    records[0].ip_version = 4
    records[0].octets = (1 << 64) - 5
    records[0].packets = 1 << 63
    records[0].ifindex, records[0].src_port, records[0].protocol = (1 << 32) - 1, 65535, 255
    found = stored(bytes(ffi.buffer(records)), by_c_rows)
    assert (found[0][8], found[0][9]) == (-(1 << 63), -5)   # packets, octets
    assert found == stored(bytes(ffi.buffer(records)), by_parameters_but_64_bits_signed)


def by_parameters_but_64_bits_signed(connection, data):
    """What sqlite3_bind_int64 of the uint64 stores (Python's binding refuses it)."""
    def signed(value):
        return value - (1 << 64) if value >= 1 << 63 else value
    connection.executemany(BOUND_INSERT, ([signed(v) if isinstance(v, int) else v for v in row]
                                          for row in rows.LAYOUT.iter_unpack(data)))


def test_an_empty_batch_adds_no_row():
    assert stored(b"", by_c_rows) == []


def test_the_blob_holds_a_record_in_fixed_widths():
    records = ffi.new("struct fp_record[]", 2)
    records[1].ip_version, records[1].src_port = 6, 65535
    blob = ffi.new("uint8_t[]", 2 * rows.ROW_WIDTH)
    def write(size):
        return lib.fp_history_rows(records, 2, rows.FIELDS, len(rows.KEPT), blob, size)

    assert write(len(blob) - 1) == -1
    assert write(len(blob)) == len(blob)
    second = bytes(blob[rows.ROW_WIDTH:2 * rows.ROW_WIDTH])
    assert second[:32] == bytes(32) and b"65535" in second


def test_a_store_written_by_parameter_binding_is_continued_and_queried_as_one(
        tmp_path, monkeypatch):
    """Segments from before the C rows (each field bound) and after them, in
    one history_dir: one day's answers per host, port and hour, from the
    records and from the rollups."""
    from flowprobe.store import query, segments
    from flowprobe.store.sink import HistorySink
    from history_records import DAY_START_MS, HOUR_MS, Day

    day, directory = Day(4000, seed=3), str(tmp_path / "h")
    batches = list(day.batches(500))
    end_ms = DAY_START_MS + 24 * HOUR_MS
    for part, previous in ((batches[:4], True), (batches[4:], False)):
        with monkeypatch.context() as patch:
            if previous:   # the previous version's rows
                patch.setattr(rows.Rows, "insert", lambda self, connection, data:
                              by_parameters(connection, data))
            sink = HistorySink(directory, 64 << 20, 5, {2: "lan", 3: "wan"})
            sink.start()
            for records, count in part:
                sink.deliver(records, count, end_ms)
            sink.tick(end_ms, force=True)
            sink.finish()
            assert sink.stats()["records_written"] == sum(count for _, count in part)
    sealed, unsealed = segments.inventory(directory)
    assert len(sealed) == 2 and not unsealed

    def groups(key, **spec):
        reply = query.run(query.Query(dict(since=DAY_START_MS, until=end_ms, limit=1000, **spec),
                                      end_ms), sealed, rollups_path=f"{directory}/rollups.db")
        return {group[key]: group["bytes"] for group in reply["groups"]}

    assert groups("host", group_by=["host"]) == dict(day.per_host())
    assert groups("dst_port", group_by=["dst_port"]) == dict(day.per_port())
    assert groups("time", bucket=3600) == dict(day.per_hour())
