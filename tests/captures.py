"""Test helpers: write frames to a pcap file and meter it through libpcap.

Frames are built with scapy (an implementation independent of flowprobe's
decoder); the file goes through the real libpcap path, as in production.
"""

import json
import subprocess
import sys
from pathlib import Path

from flowprobe.meter import Meter, packets_ignored
from flowprobe.settings import MeterSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import pcapfile  # noqa: E402  (tools/pcapfile.py: the one pcap writer)

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

START_US = 1_700_000_000_000_000  # a fixed epoch, so times in records are predictable


def write_pcap(path, frames, linktype=LINKTYPE_ETHERNET, snaplen=65535):
    """frames: bytes, or (timestamp_us, bytes), or (timestamp_us, bytes, wire_length).
    Bare frames are spaced 1 ms apart from START_US."""
    frames = [(START_US + n * 1000, bytes(frame)) if isinstance(frame, (bytes, bytearray))
              else frame for n, frame in enumerate(frames)]
    return pcapfile.write(path, frames, linktype, snaplen)


def meter_pcap(path, **settings):
    """All records of a capture (flushed at the end) and the final counters."""
    meter = Meter(MeterSettings(hash_seed=1, **settings))
    records = [record for batch in meter.read_file(path) for record in batch]
    meter.flush()
    records += meter.drain()
    return records, meter.counters()


def meter_frames(tmp_path, frames, linktype=LINKTYPE_ETHERNET, **settings):
    return meter_pcap(write_pcap(tmp_path / "frames.pcap", frames, linktype), **settings)


def dropped(counters):
    return packets_ignored(counters)


def assert_conserved(records, counters):
    """Every packet read is in a record or under a named drop reason; with
    tunnels both, a tunnel's packet is in two records and counted so."""
    in_records = sum(r["packets"] + r.get("reverse_packets", 0) for r in records)
    assert counters["packets_read"] + counters["tunnel_packets_counted_twice"] == (
        in_records + dropped(counters) + counters["packets_skipped_by_sampling"])
    assert counters["fragment_packets_held"] == 0


def run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "flowprobe", *map(str, args)],
                            capture_output=True, text=True)
    return result


def cli_records(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def differences(expected, actual, names=("expected", "got")):
    """Keys whose (packets, octets) differ, as readable lines; [] when equal."""
    return [f"{key}: {names[0]} {expected.get(key)}, {names[1]} {actual.get(key)}"
            for key in sorted(set(expected) | set(actual), key=repr)
            if expected.get(key) != actual.get(key)]
