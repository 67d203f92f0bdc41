"""`flows --limit N` on a full table: the top-N selection in C against the
copy-everything-then-sort it replaced, in one run (ratios, not times)."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from flowprobe.meter import Meter  # noqa: E402
from flowprobe.settings import MeterSettings  # noqa: E402
from test_control import ETHERNET, START_US, UDP_FRAME  # noqa: E402

FLOWS = 150_000


def best_of(work, runs=3):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    meter = Meter(MeterSettings(hash_seed=1, max_flows=262144))
    for n in range(FLOWS):
        data = bytearray(UDP_FRAME)
        data[34:36] = (n % 65536).to_bytes(2, "big")      # source port
        data[26:28] = (n // 65536).to_bytes(2, "big")      # source address, high half
        meter.process_frame(bytes(data), ETHERNET, START_US + n)
    full_sort = best_of(lambda: sorted(meter.snapshot(),
                                       key=lambda f: (-f["octets"], f["flow_start_ms"]))[:1])
    for limit in (1, 100, 10000):
        top = best_of(lambda limit=limit: meter.top("bytes", limit))
        print(f"flows --limit {limit} on {FLOWS} flows: top-N in C takes "
              f"{top / full_sort:.4f}x the time of copying and sorting every flow")


if __name__ == "__main__":
    main()
