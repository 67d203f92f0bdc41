"""Inputs for the cross-architecture replays, made once on the host:

- corpus/: the fuzz seed corpus (fuzz/make_corpus.py): every link type,
  VLANs, PPPoE, IPv4 options, IPv6 extension headers, fragments in several
  orders, truncated and malformed frames, and the meter's other entry points;
- gen*.pcap: tools/gen_capture.py captures (fixed seeds), one of them also
  with the file's headers big-endian and one with nanosecond timestamps,
  so libpcap's byte-swapping and precision paths run on every target;
- linktype-*.pcap: the corpus's single-link-type scenarios as capture files,
  so each link type also goes through libpcap and the core's dispatch.

    python qemu/cross/make_inputs.py DIR
"""

import argparse
import pathlib
import struct
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import pcapfile  # noqa: E402  (tools/pcapfile.py: the one pcap writer)

# fuzz_meter.c LINK_TYPES index -> the LINKTYPE_ value a capture file holds
CORPUS_LINKTYPES = {0: 0, 1: 1, 2: 101, 4: 108, 5: 113, 6: 276, 7: 228, 8: 229}
START_US = 1_700_000_000_000_000


def advance(now_us, dt):
    """fuzz_meter.c advance(): the time step a frame operation's dt byte means."""
    if dt < 0x80:
        return now_us + dt * 1000
    if dt < 0xF0:
        return now_us + (dt - 0x7F) * 1_000_000
    if dt < 0xFF:
        return max(0, now_us - (dt - 0xEF) * 1_000_000)
    return now_us + 60 * 86400 * 1_000_000


def wire_length(captured, wire):
    """fuzz_meter.c wire_length(): the length on the wire its wire byte means."""
    if wire < 0x80:
        return captured + wire
    if wire < 0xFF:
        return max(0, captured - (wire & 0x7F))
    return 0xFFFFFFFF


def corpus_frames(seed):
    """(link index, (timestamp_us, frame, wire length)) of each frame
    operation; None when the seed holds any other operation."""
    data, pos, frames, now_us = seed[4:], 0, [], START_US
    while pos < len(data):
        op = data[pos]
        if op >= 0xA0 or len(data) < pos + 5:
            return None
        dt, wire, length = data[pos + 1], data[pos + 2], struct.unpack_from(">H", data, pos + 3)[0]
        frame = data[pos + 5:pos + 5 + length]
        now_us = advance(now_us, dt)
        frames.append((op & 15, (now_us, frame, wire_length(len(frame), wire))))
        pos += 5 + length
    return frames


def write_pcap(path, linktype, frames, byte_order="<", nanoseconds=False):
    """frames: (timestamp_us, data, wire_length)."""
    pcapfile.write(path, frames, linktype, 65535, byte_order, nanoseconds)


def make_corpus(directory):
    corpus = directory / "corpus"
    subprocess.run([sys.executable, str(ROOT / "fuzz/make_corpus.py"), str(corpus)], check=True)
    written = 0
    for seed in sorted(corpus.glob("*-uni")):
        frames = corpus_frames(seed.read_bytes())
        if not frames or {link for link, _ in frames} - set(CORPUS_LINKTYPES):
            continue
        links = {link for link, _ in frames}
        if len(links) != 1:
            continue
        name = seed.name.removesuffix("-uni")
        write_pcap(directory / f"linktype-{name}.pcap", CORPUS_LINKTYPES[links.pop()],
                   [frame for _, frame in frames])
        written += 1
    print(f"make_inputs: {written} link-type captures from the corpus")


def make_generated(directory):
    runs = {"gen1": ["--packets", "20000", "--flows", "500", "--seed", "1"],
            "gen2": ["--packets", "60000", "--flows", "4000", "--seed", "2", "--duration", "90"]}
    for name, arguments in runs.items():
        subprocess.run([sys.executable, str(ROOT / "tools/gen_capture.py"), "-o",
                        str(directory / f"{name}.pcap"), *arguments], check=True)
    linktype, frames = pcapfile.read(directory / "gen1.pcap")
    write_pcap(directory / "gen1-big-endian.pcap", linktype, frames, byte_order=">")
    write_pcap(directory / "gen1-nanosecond.pcap", linktype, frames, nanoseconds=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=pathlib.Path)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    make_corpus(args.directory)
    make_generated(args.directory)


if __name__ == "__main__":
    main()
