"""Capture files read in place (cmeter/savefile.c) take every record as
libpcap's own reader does.  The reference is the same capture with the
header's minor version 3, which the in-place reader leaves to libpcap (with
captured lengths never above the wire's, libpcap reads 2.3 as 2.4), and a
named pipe, which only libpcap reads."""

import os
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flowprobe.meter import CaptureError, Meter
from flowprobe.settings import MeterSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import pcapfile  # noqa: E402

GENERATOR = Path(__file__).resolve().parent.parent / "tools" / "gen_capture.py"


def as_libpcap_reads(data):
    """The same file with minor version 3: read by libpcap, not in place."""
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    return data[:6] + struct.pack(order + "H", 3) + data[8:]


def metered(path, max_packets=None):
    """(records sorted, counters, error message or None)"""
    meter = Meter(MeterSettings(max_flows=4096))
    source = meter.open_file(path)
    records, error = [], None
    arguments = (source, max_packets) if max_packets else (source,)
    try:
        while True:
            records += meter.drain()
            if meter.dispatch(*arguments) == 0:
                break
    except CaptureError as e:
        error = str(e)
    meter.close(source)
    meter.flush()
    records += meter.drain()
    return sorted(records, key=lambda r: sorted(r.items())), meter.counters(), error


def both_ways(tmp_path, data, **kwargs):
    mapped, reference = tmp_path / "mapped.pcap", tmp_path / "libpcap.pcap"
    mapped.write_bytes(data)
    reference.write_bytes(as_libpcap_reads(data))
    return metered(mapped, **kwargs), metered(reference, **kwargs)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "capture.pcap"
    subprocess.run([sys.executable, str(GENERATOR), "-o", str(path), "--packets", "4000",
                    "--flows", "300", "--seed", "7"], check=True, capture_output=True)
    return pcapfile.read(path)[1]


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_records_and_counters_equal_libpcaps(tmp_path, generated, byte_order, nanoseconds):
    data = pcapfile.to_bytes(generated, byte_order=byte_order, nanoseconds=nanoseconds)
    mapped, reference = both_ways(tmp_path, data)
    assert mapped[2] is None and reference[2] is None
    assert mapped[1]["packets_read"] == len(generated)
    assert mapped == reference


def test_small_dispatches_and_breaks_lose_nothing(tmp_path, generated):
    mapped, reference = both_ways(tmp_path, pcapfile.to_bytes(generated), max_packets=7)
    assert mapped == reference and mapped[1]["packets_read"] == len(generated)


@pytest.mark.parametrize("cut", [5, 16 + 30])  # inside a record's header, inside its data
def test_a_file_cut_short_is_libpcaps_error(tmp_path, generated, cut):
    data = pcapfile.to_bytes(generated[:50])
    last = len(pcapfile.to_bytes(generated[:49]))
    mapped, reference = both_ways(tmp_path, data[:last + cut])
    assert mapped[2] is not None and mapped[2].startswith("truncated dump file")
    assert mapped == reference


def test_longer_than_the_snapshot_is_cut_to_it(tmp_path, generated):
    frames = [f for f in generated[:200] if len(f[1]) > 100]
    mapped, reference = both_ways(tmp_path, pcapfile.to_bytes(frames, snaplen=80))
    assert mapped[2] is None and mapped == reference
    assert mapped[1]["packets_read"] == len(frames)


def test_a_capture_length_beyond_any_snapshot_is_libpcaps_error(tmp_path, generated):
    data = bytearray(pcapfile.to_bytes(generated[:3]))
    # the first record's captured length (and a wire length above it: 2.3 would swap them)
    struct.pack_into("<II", data, 24 + 8, 300_000, 400_000)
    mapped, reference = both_ways(tmp_path, bytes(data))
    assert "invalid packet capture length 300000" in mapped[2]
    assert mapped[2] == reference[2]


@pytest.mark.parametrize("captured, words", [(300_000, "bigger than maximum of 262144"),
                                             (600_000_000, "bigger than snaplen of 500000000")])
def test_a_snapshot_above_libpcaps_maximum_is_named_as_libpcap_names_it(tmp_path, generated,
                                                                       captured, words):
    """Found by fuzz/fuzz_savefile.c: libpcap keeps a header's snapshot
    length above its maximum, compares records with it and names it."""
    data = bytearray(pcapfile.to_bytes(generated[:3], snaplen=500_000_000))
    struct.pack_into("<II", data, 24 + 16 + len(generated[0][1]) + 8, captured, captured + 1)
    mapped, reference = both_ways(tmp_path, bytes(data))
    assert mapped[2].endswith(f"invalid packet capture length {captured}, {words}")
    assert mapped == reference and mapped[1]["packets_read"] == 1


@pytest.mark.parametrize("nanoseconds", [False, True])
@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_odd_timestamps_as_libpcap_reads_them(tmp_path, generated, nanoseconds, byte_order):
    """Big-endian found by fuzz/fuzz_savefile.c: libpcap's byte swap makes
    the time fields unsigned, so past 2**31 they are not negative there."""
    data = bytearray(pcapfile.to_bytes(generated[:40], byte_order=byte_order,
                                       nanoseconds=nanoseconds))
    at = 24
    odd = [(0x7FFFFFFF, 999_999_999), (0x80000001, 5), (1_700_000_000, 0x80000005),
           (1_700_000_001, 1_500_000_000), (0, 0)]
    for i in range(40):
        seconds, fraction = odd[i % len(odd)]
        struct.pack_into(byte_order + "II", data, at, seconds, fraction)
        at += 16 + struct.unpack_from(byte_order + "I", data, at + 8)[0]
    mapped, reference = both_ways(tmp_path, bytes(data))
    assert mapped[2] == reference[2]
    assert mapped == reference


def through_a_pipe(tmp_path, data):
    """metered() of data as libpcap reads it from a named pipe (never mapped)"""
    fifo = tmp_path / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)

    def write():
        try:
            with open(fifo, "wb") as pipe:
                pipe.write(data)
        except BrokenPipeError:  # the reader stopped at an error
            pass

    writer = threading.Thread(target=write)
    writer.start()
    try:
        return metered(fifo)
    finally:
        writer.join()


def test_a_pipe_is_read_by_libpcap(tmp_path, generated):
    data = pcapfile.to_bytes(generated[:500])
    (tmp_path / "file.pcap").write_bytes(data)
    assert through_a_pipe(tmp_path, data) == metered(tmp_path / "file.pcap")


def test_damaged_files_read_as_libpcap_reads_them(tmp_path, generated):
    """Record headers overwritten at random (lengths, times), files cut
    anywhere: the same records, counters and error as libpcap from a pipe."""
    data = pcapfile.to_bytes(generated[:300])
    starts, at = [], 24
    while at < len(data):
        starts.append(at)
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    rng = random.Random(18)
    for _ in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            record = rng.choice(starts)
            field = rng.choice([0, 4, 8, 12, 8, 8])
            value = rng.choice([0, 1, 59, 1 << 31, 0xFFFFFFFF, 262144, 262145, 65536,
                                rng.getrandbits(32), rng.getrandbits(12)])
            struct.pack_into("<I", damaged, record + field, value)
        if rng.random() < 0.3:
            damaged = damaged[:rng.randint(24, len(damaged))]
        (tmp_path / "damaged.pcap").write_bytes(damaged)
        assert metered(tmp_path / "damaged.pcap") == through_a_pipe(tmp_path, bytes(damaged))
