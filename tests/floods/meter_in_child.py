"""Run in a child process by test_floods.py: meters capture files one after
the other through one meter, counting drained records in batches (as the
daemon does), and prints the counters, the records and the resident memory
as JSON: after each file, and the highest seen while reading each (sampled
between batches; ru_maxrss would only show the start-up peak of imports).

usage: meter_in_child.py MAX_FLOWS MAX_FRAGMENTS FILE...
"""

import json
import sys

from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings

SAMPLE_EVERY = 64   # drains between two looks at /proc/self/status


def resident_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    max_flows, max_fragments, *paths = sys.argv[1:]
    meter = Meter(MeterSettings(max_flows=int(max_flows), max_fragments=int(max_fragments),
                                fragment_timeout=1.0))
    drains = 0
    highest = 0

    def count():
        nonlocal drains, highest
        drains += 1
        if drains % SAMPLE_EVERY == 0:
            highest = max(highest, resident_kib())
        return sum(n for _, n in meter.drain_raw())

    records, files = 0, []
    for path in paths:
        highest = resident_kib()
        records += sum(meter.read_file(path, drain=count))
        files.append({"highest_kib": max(highest, resident_kib()), "after_kib": resident_kib()})
    meter.flush()
    records += count()
    print(json.dumps({"counters": meter.counters(), "records": records, "files": files,
                      "memory_bytes": meter.memory_bytes}))


if __name__ == "__main__":
    main()
