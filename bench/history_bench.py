"""The history store on 1 M records against nfdump (nfcapd's files, the
way a collector keeps history), in one run: bytes per record, the cost of
writing a record (on the loop, and in the writer thread) against the
meter's own cost per record, and query latencies: one address, and the
top 20 hosts by bytes over the 24 h.

    .venv/bin/python bench/history_bench.py [--records N] [--runs R]

The records are generated with chosen timestamps (a day), the same ones
for both engines: flowprobe's store gets them as the meter hands them
out; nfcapd gets them as IPFIX from flowprobe's exporter over loopback.
A report: it exits 0 whatever the figures are.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from collector_tools import NFDUMP, Nfcapd  # noqa: E402
from flowprobe._cmeter_ffi import ffi  # noqa: E402
from flowprobe.export.collectors import Exporter, profile_from_url  # noqa: E402
from flowprobe.meter import Meter  # noqa: E402
from flowprobe.settings import MeterSettings  # noqa: E402
from flowprobe.store import query, rows, segments  # noqa: E402
from flowprobe.store.sink import HistorySink  # noqa: E402
from flowprobe.store.writer import StoreWriter  # noqa: E402
from test_history_rows import by_parameters  # noqa: E402

DAY_START_MS = 1_767_225_600_000
DAY_MS = 86_400_000
BATCH = 1024
TARGETS = {"one address": 0.050, "top-20 hosts, 24 h": 1.0}


def generate(count, seed=1):
    """count records over a day as one bytes buffer of struct fp_record."""
    rnd = random.Random(seed)
    local = [bytes([10, 0, i // 250, i % 250 + 1]) + bytes(12) for i in range(1000)]
    remote = [bytes([198, 51, 100 + i // 250, i % 250 + 1]) + bytes(12) for i in range(5000)]
    ports = (443, 80, 53, 22, 123, 8080)
    parts = []
    for i in range(count):
        src, dst = rnd.choice(local), rnd.choice(remote)
        if rnd.random() < 0.4:
            src, dst = dst, src
        packets = rnd.randrange(1, 200)
        start = DAY_START_MS + i * DAY_MS // count
        # the fields rows.KEPT names, in order
        parts.append(rows.LAYOUT.pack(
            src, dst, packets, packets * rnd.randrange(40, 1500), start,
            start + rnd.randrange(0, 60_000), 0, 0, 2, rnd.randrange(1024, 65535),
            rnd.choice(ports), 0, 4, rnd.choice((6, 17)), 0, 0, 1, 1, bytes(16), bytes(16),
            0, 0, 0))
    return b"".join(parts)


def batches(data):
    buffer = ffi.from_buffer("struct fp_record[]", data)
    count = len(data) // rows.RECORD_SIZE
    for first in range(0, count, BATCH):
        yield buffer + first, min(BATCH, count - first)


def meter_cost_per_record(directory):
    """CPU seconds the meter spends per record it hands out, on a generated capture."""
    capture = directory / "meter.pcap"
    subprocess.run([sys.executable, str(ROOT / "tools/gen_capture.py"), "-o", str(capture),
                    "--packets", "300000", "--flows", "20000", "--seed", "3"], check=True,
                   capture_output=True)
    best = None
    for _ in range(3):
        meter = Meter(MeterSettings(hash_seed=1, max_flows=131072))
        records = 0
        started = time.process_time()
        for drained in meter.read_file(capture, drain=lambda meter=meter: sum(
                n for _, n in meter.drain_raw())):
            records += drained
        meter.flush()
        records += sum(n for _, n in meter.drain_raw())
        spent = time.process_time() - started
        best = min(best or spent, spent)
    return best / records, records


def median_of(runs, work):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def writer_cost(data, directory):
    """CPU per record of the writer thread's part, timed alone here."""
    segments.prepare_dir(str(directory))
    writer = StoreWriter(str(directory), 1 << 40)
    writer.start()
    step = 16 * BATCH * rows.RECORD_SIZE
    started = time.process_time()
    for first in range(0, len(data), step):
        chunk = data[first:first + step]
        writer.write([chunk], len(chunk) // rows.RECORD_SIZE, {2: "lan"},
                     DAY_START_MS / 1000 + first / len(data) * 86400)
    cost = (time.process_time() - started) / (len(data) // rows.RECORD_SIZE)
    writer.close()
    return cost


def flowprobe_store(data, directory, runs):
    count = len(data) // rows.RECORD_SIZE
    sink = HistorySink(str(directory), 1 << 40, 5, {2: "lan"})
    started = time.process_time()
    for records, n in batches(data):      # the loop's part: a copy into the queue
        sink.deliver(records, n, 0)
        if sink.queued >= 8192:
            sink.chunks, sink.queued = [], 0
    loop_cost = (time.process_time() - started) / count
    write_cost = writer_cost(data, directory)
    # the peer in the same run: rows bound one by one, as before cmeter/history_rows.c
    original = rows.Rows.insert
    rows.Rows.insert = lambda self, connection, chunk: by_parameters(connection, chunk)
    try:
        bound_cost = writer_cost(data, directory.with_name("bound"))
    finally:
        rows.Rows.insert = original
    sealed, _ = segments.inventory(str(directory))
    disk = sum(s.size for s in sealed) + segments.file_size(
        os.path.join(directory, segments.ROLLUPS_FILE))
    now = DAY_START_MS + DAY_MS

    def ask(spec):
        return query.run(query.Query(spec, now), sealed, deadline_s=60, rollups_path=os.path.join(
            directory, segments.ROLLUPS_FILE))

    address = "10.0.0.17"
    span = {"since": DAY_START_MS, "until": now}
    found = ask(dict(span, address=address, limit=1000))
    latency = {
        "one address": median_of(runs, lambda: ask(dict(span, address=address, limit=1000))),
        "top-20 hosts, 24 h": median_of(runs, lambda: ask(dict(span, group_by=["host"],
                                                                limit=20))),
    }
    return {"bytes_per_record": disk / count, "loop_cost": loop_cost, "write_cost": write_cost,
            "bound_cost": bound_cost,
            "latency": latency, "address_matches": found["matched"], "segments": len(sealed)}


def nfdump_store(data, directory, runs):
    count = len(data) // rows.RECORD_SIZE
    with Nfcapd(directory=str(directory), rotate_seconds=3600) as collector:
        exporter = Exporter([profile_from_url(f"ipfix://127.0.0.1:{collector.port}")],
                            boot_ms=0)
        exporter.start(DAY_START_MS)
        for records, size in batches(data):
            exporter.export(records, size, DAY_START_MS)
            exporter.pump(1.0)
            collector.drain(30)     # paced: loopback drops what nfcapd has not read
        exporter.finish(DAY_START_MS + DAY_MS, timeout_s=10)
        exporter.close()
        collector.stop()
        files = collector.files()
        disk = sum(f.stat().st_size for f in files)
        stored = collector.stats()["flows"]

        def nfdump(*args):
            return subprocess.run([NFDUMP, "-R", str(directory), "-q", *args],
                                  capture_output=True, text=True, check=True).stdout

        latency = {
            "one address": median_of(runs, lambda: nfdump("-c", "1000", "host 10.0.0.17")),
            "top-20 hosts, 24 h": median_of(runs, lambda: nfdump("-s", "ip/bytes", "-n", "20")),
        }
    return {"bytes_per_record": disk / max(stored, 1), "stored": stored, "latency": latency,
            "records": count}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="history-bench-"))
    try:
        data = generate(args.records)
        meter_cost, meter_records = meter_cost_per_record(work)
        ours = flowprobe_store(data, work / "store", args.runs)
        theirs = nfdump_store(data, work / "nfcapd", args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"history store, {args.records} records of a generated day "
          f"(nfdump {NFDUMP}: {theirs['stored']} of them stored by nfcapd)")
    print(f"  bytes per record on disk: flowprobe {ours['bytes_per_record']:.1f} "
          f"(SQLite, {ours['segments']} segments, indexes and rollups included), "
          f"nfcapd {theirs['bytes_per_record']:.1f} "
          f"(x{ours['bytes_per_record'] / theirs['bytes_per_record']:.2f})")
    print(f"  meter's CPU per record handed out: {meter_cost * 1e6:.2f} us "
          f"({meter_records} records from a 300000-packet capture)")
    print(f"  store on the loop (copy into the queue): {ours['loop_cost'] * 1e6:.3f} us per "
          f"record = {ours['loop_cost'] / meter_cost:.1%} of the meter's cost (target <= 10 %)")
    print(f"  store's writer thread (SQLite insert + rollups): {ours['write_cost'] * 1e6:.2f} us "
          f"per record = {ours['write_cost'] / meter_cost:.2f}x the meter's cost, "
          f"{1 / ours['write_cost']:.0f} records/s; with each record's fields bound as "
          f"parameters (before cmeter/history_rows.c) {ours['bound_cost'] * 1e6:.2f} us "
          f"(x{ours['write_cost'] / ours['bound_cost']:.2f})")
    for name, target in TARGETS.items():
        mine, peer = ours["latency"][name], theirs["latency"][name]
        print(f"  {name}: flowprobe {mine * 1000:.1f} ms (target <= {target * 1000:.0f} ms), "
              f"nfdump {peer * 1000:.1f} ms (flowprobe x{mine / peer:.3f} of nfdump)")
    print(f"  ({ours['address_matches']} records match the one address)")


if __name__ == "__main__":
    main()
