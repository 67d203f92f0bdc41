"""Seed corpus for fuzz/fuzz_savefile.c: small classic pcap files in both
byte orders, with microsecond and nanosecond times, records longer than the
snapshot, other link types, and a file cut inside a record.

    .venv/bin/python fuzz/make_savefile_corpus.py build/fuzz/savefile_corpus
"""

import argparse
import pathlib
import sys

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tools"))
import pcapfile  # noqa: E402

LINKTYPE_RAW = 101
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
T0 = 1_700_000_000_123_456


def packets():
    return [IP(src="192.0.2.1", dst="198.51.100.2") / TCP(sport=40000, dport=443, flags="S"),
            IP(src="198.51.100.2", dst="192.0.2.1") / TCP(sport=443, dport=40000, flags="SA"),
            IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=5000, dport=53) / (b"q" * 60),
            IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / b"v6",
            IP(src="192.0.2.9", dst="192.0.2.1") / ICMP(type=8) / (b"p" * 200)]


def seeds():
    ethernet = [(T0 + n * 1_500, bytes(Ether(**MACS) / p)) for n, p in enumerate(packets())]
    ethernet.append((T0 + 10_000, bytes(Ether(**MACS) / ARP())))
    raw = [(T0 + n * 999_999, bytes(p)) for n, p in enumerate(packets())]
    out = {}
    for order, order_name in (("<", "le"), (">", "be")):
        for nanoseconds in (False, True):
            name = f"{order_name}-{'ns' if nanoseconds else 'us'}"
            out[name] = pcapfile.to_bytes(ethernet, byte_order=order, nanoseconds=nanoseconds)
            out[f"{name}-snap64"] = pcapfile.to_bytes(ethernet, snaplen=64, byte_order=order,
                                                      nanoseconds=nanoseconds)
            out[f"{name}-raw"] = pcapfile.to_bytes(raw, linktype=LINKTYPE_RAW, byte_order=order,
                                                   nanoseconds=nanoseconds)
    out["le-us-cut"] = out["le-us"][:-7]
    out["le-us-header-only"] = out["le-us"][:24]
    out["le-us-snap0"] = pcapfile.to_bytes(ethernet, snaplen=0)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=pathlib.Path)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    written = seeds()
    for name, data in written.items():
        (args.directory / f"{name}.pcap").write_bytes(data)
    print(f"make_savefile_corpus: {len(written)} seeds in {args.directory}")


if __name__ == "__main__":
    main()
