"""Holt-Winters anomalies: a generated series with a quiet daily cycle and
one injected spike; the spike is found, the cycle never alarms; and the
same from records written to the store, read back from its rollups."""

import logging
import math
import random

import pytest

from flowprobe._cmeter_ffi import ffi
from flowprobe.store import anomaly
from flowprobe.store.anomaly import SEASON, STEP_S, Detector
from flowprobe.store.service import SETTLE_S, HistoryService
from history_records import DAY_START_MS
from test_history_store import INTERFACES, write

DAYS = 5
SPIKE = range(SEASON * 4 + 100, SEASON * 4 + 106)    # 30 minutes on the fifth day


def daily(i, rnd, noise=0.03):
    """Bytes per 5 minutes: a day's cycle from 0.6 to 2.6 MB, with noise."""
    level = 1e6 * (1.6 + math.sin(2 * math.pi * i / SEASON))
    return level * (1 + rnd.gauss(0, noise))


@pytest.mark.parametrize("seed", range(6))
def test_the_spike_is_found_and_the_daily_cycle_never_alarms(seed):
    rnd = random.Random(seed)
    detector = Detector()
    for i in range(SEASON * DAYS):
        value = daily(i, rnd) * (4 if i in SPIKE else 1)
        detector.feed("wan", i * STEP_S, value)
    [found] = detector.anomalies
    assert SPIKE.start - 1 <= found.start_s // STEP_S <= SPIKE.start + 1
    assert found.end_s // STEP_S == SPIKE.stop - 1
    assert found.peak > 3 * found.expected


def test_a_quiet_cycle_alone_never_alarms():
    detector = Detector()
    rnd = random.Random(99)
    for i in range(SEASON * 8):
        detector.feed("lan", i * STEP_S, daily(i, rnd))
    assert detector.anomalies == []


def test_a_drop_to_nothing_is_an_anomaly_too():
    detector = Detector()
    rnd = random.Random(5)
    for i in range(SEASON * 4):
        value = 0 if SEASON * 3 + 50 <= i < SEASON * 3 + 60 else daily(i, rnd)
        detector.feed("wan", i * STEP_S, value)
    assert len(detector.anomalies) == 1


def day_records(rnd):
    """One record per 5 minutes on lan for DAYS days, bytes as daily(), the
    spike injected: the series the store's rollups give back."""
    count = SEASON * DAYS
    records = ffi.new("struct fp_record[]", count)
    for i in range(count):
        r = records[i]
        r.ip_version, r.protocol = 4, 17
        r.src_addr[0:4] = bytes([10, 0, 0, 1])
        r.dst_addr[0:4] = bytes([192, 0, 2, 1])
        r.src_port, r.dst_port = 5000, 53
        r.octets = int(daily(i, rnd) * (4 if i in SPIKE else 1))
        r.packets = r.octets // 1000 + 1
        r.flow_start_ms = DAY_START_MS + i * STEP_S * 1000 + 1000
        r.flow_end_ms = r.flow_start_ms + 1000
        r.ifindex = 2
    return records, count


class Records:
    def __init__(self, records, count):
        self.records, self.count = records, count

    def batches(self, size=1024):
        for first in range(0, self.count, size):
            yield self.records + first, min(size, self.count - first)


def test_anomalies_from_the_stores_rollups_reach_status_and_the_log(tmp_path, caplog):
    records, count = day_records(random.Random(1))
    end_ms = DAY_START_MS + count * STEP_S * 1000
    service = HistoryService(INTERFACES)

    class Settings:
        history, history_dir, history_kb, history_flush = True, str(tmp_path / "h"), 65536, 5
        user = ""
    service.apply(Settings)
    service.start()
    write(service.sink, Records(records, count), now_ms=end_ms)
    # the start replays the days the rollups hold, then the points as they settle
    with caplog.at_level(logging.WARNING, logger="flowprobe.history"):
        service._read_points(end_ms / 1000 - 3 * 3600)
        service._read_points(end_ms / 1000 + SETTLE_S)   # up to the last point with data
    status = service.status()
    service.finish()
    [found] = status["anomalies"]
    assert found["series"] == "lan"
    start = DAY_START_MS + SPIKE.start * STEP_S * 1000
    assert abs(found["start_ms"] - start) <= STEP_S * 1000
    assert found["end_ms"] == DAY_START_MS + (SPIKE.stop - 1) * STEP_S * 1000
    assert [r for r in caplog.records if "anomaly on lan" in r.getMessage()]
    assert anomaly.CONSECUTIVE * STEP_S * 1000 <= found["end_ms"] - found["start_ms"] + \
        STEP_S * 1000
