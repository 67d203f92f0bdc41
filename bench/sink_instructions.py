"""The daemon's other sinks as instructions_bench.py counts them: a capture
metered by the C core, each drained batch handed to the sink as the
daemon's loop hands it (Sinks.deliver), its tick after each read, and its
finish at the end.  Run under callgrind by the bench:

    python bench/sink_instructions.py history|enrich|enrich-again CAPTURE

- history: the store (store/sink.py) in a temporary directory, its writer
  thread writing the segments and rollups with SQLite, waited for when the
  queue is full (under callgrind it is slower than the loop);
- enrich: the enrichment stage (enrich/stage.py) routing every record by the
  kernel's FIB (asked over netlink for each new destination, then in C):
  the generated capture's destinations are all new, so every lookup is cold;
- enrich-again: the same, each batch then delivered a second time, when its
  routes are all known (warm): the difference from enrich is the warm cost.

Prints "records N" (records drained) on stderr.
"""

import sys
import tempfile


def history(path):
    from flowprobe.store.sink import QUEUE_RECORDS, HistorySink
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as directory:
        sink = HistorySink(directory, 1 << 40, 5, {0: "capture"})
        sink.start()
        def deliver(batch, count, now_ms):
            if sink.queued + count > QUEUE_RECORDS:   # the writer keeps up: nothing dropped
                sink.tick(now_ms, force=True)
                sink._idle.wait()
            sink.deliver(batch, count, now_ms)

        records = meter_into(path, deliver, lambda now_ms: None)
        sink.finish(timeout_s=3600)
        stats = sink.stats()
    if stats["records_not_written"] or stats["write_errors"]:
        raise SystemExit(f"history: records not written: {stats}")
    return records


def enrich(path, again=False):
    from flowprobe.enrich.settings import EnrichSettings
    from flowprobe.enrich.stage import Enrichment
    clock = [0]
    stage = Enrichment(EnrichSettings(routing=True, devices=False), lambda *_: None,
                       lambda: clock[0])

    def tick(now_ms):
        clock[0] = now_ms
        stage.tick(now_ms)

    def deliver(batch, count, now_ms):
        stage.deliver(batch, count, now_ms)
        if again:
            stage.deliver(batch, count, now_ms)

    records = meter_into(path, deliver, tick)
    stage.finish(clock[0])
    stage.close()
    return records


def meter_into(path, deliver, tick):
    from flowprobe.meter import Meter
    from flowprobe.settings import MeterSettings
    meter = Meter(MeterSettings(max_flows=65536))
    records = 0

    def drain():
        nonlocal records
        now_ms = meter.counters()["clock_ms"]
        for batch, count in meter.drain_raw():
            records += count
            deliver(batch, count, now_ms)
        tick(now_ms)
        return []

    for _ in meter.read_file(path, drain=drain):
        pass
    meter.flush()
    drain()
    return records


if __name__ == "__main__":
    kind, capture = sys.argv[1:3]
    count = {"history": history, "enrich": enrich,
             "enrich-again": lambda path: enrich(path, again=True)}[kind](capture)
    print(f"records {count}", file=sys.stderr)
