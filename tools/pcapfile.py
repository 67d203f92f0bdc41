"""Classic pcap files, written and read: the one place that knows the format,
for the tests, the capture generator, the benchmarks and the cross-
architecture inputs.  Timestamps are integer microseconds since the epoch;
a frame is (timestamp_us, data) or (timestamp_us, data, wire_length)."""

import struct

MAGIC_MICRO, MAGIC_NANO = 0xA1B2C3D4, 0xA1B23C4D
LINKTYPE_ETHERNET = 1


def file_header(linktype=LINKTYPE_ETHERNET, snaplen=65535, byte_order="<", nanoseconds=False):
    magic = MAGIC_NANO if nanoseconds else MAGIC_MICRO
    return struct.pack(byte_order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def record_struct(byte_order="<"):
    """The per-frame header (seconds, fraction, captured length, wire length),
    for writers that pack millions of records in place."""
    return struct.Struct(byte_order + "IIII")


def record_header(timestamp_us, captured, wire, byte_order="<", nanoseconds=False):
    fraction = timestamp_us % 1_000_000 * (1000 if nanoseconds else 1)
    return struct.pack(byte_order + "IIII", timestamp_us // 1_000_000, fraction, captured, wire)


def to_bytes(frames, linktype=LINKTYPE_ETHERNET, snaplen=65535, byte_order="<",
             nanoseconds=False):
    out = [file_header(linktype, snaplen, byte_order, nanoseconds)]
    for frame in frames:
        timestamp_us, data = frame[0], bytes(frame[1])
        wire = frame[2] if len(frame) > 2 else len(data)
        out.append(record_header(timestamp_us, len(data), wire, byte_order, nanoseconds))
        out.append(data)
    return b"".join(out)


def write(path, frames, linktype=LINKTYPE_ETHERNET, snaplen=65535, byte_order="<",
          nanoseconds=False):
    with open(path, "wb") as out:
        out.write(to_bytes(frames, linktype, snaplen, byte_order, nanoseconds))
    return path


def read(path):
    """(linktype, [(timestamp_us, data, wire_length)]) of a little-endian
    microsecond pcap file."""
    with open(path, "rb") as file:
        data = file.read()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    if magic != MAGIC_MICRO:
        raise ValueError(f"{path}: not a little-endian microsecond pcap")
    frames, pos = [], 24
    while pos < len(data):
        seconds, micros, captured, wire = struct.unpack_from("<IIII", data, pos)
        frames.append((seconds * 1_000_000 + micros, data[pos + 16:pos + 16 + captured], wire))
        pos += 16 + captured
    return linktype, frames
