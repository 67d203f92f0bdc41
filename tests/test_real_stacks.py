"""flowprobe against traffic of real Linux stacks, checked by independent readers.

realstack/record_capture.sh records HTTP, fragmenting pings, UDP (one
datagram larger than the MTU) and TCP resets between two network namespaces
over IPv4 and IPv6. flowprobe's per-key totals must equal those of
realstack/simple_truth.py, a separate stdlib reader, for every key, and its
counters must account for every packet read. tshark is a second reference
for TCP, where no fragments blur what a "packet" is.

Needs root, `ip netns`, tcpdump, curl and ping; skipped with the reason
otherwise. The reader's own tests below run everywhere.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from captures import differences, pcapfile
from realstack import simple_truth

RECORD_SCRIPT = Path(__file__).parent / "realstack" / "record_capture.sh"
LONG = ["--idle-timeout", "3600", "--active-timeout", "3600", "--unanswered-timeout", "3600"]


@pytest.fixture(scope="module")
def capture(real_stacks_capture) -> Path:
    return real_stacks_capture


@pytest.fixture(scope="module")
def reference(capture) -> simple_truth.Truth:
    return simple_truth.truth_report(str(capture))


def run_flowprobe(capture: Path, *options: str) -> tuple[list[dict], dict]:
    done = subprocess.run(
        [sys.executable, "-m", "flowprobe", "read", str(capture), "--json", *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"flowprobe failed ({done.returncode}):\n{done.stderr}"
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    status = [
        json.loads(line)
        for line in done.stderr.splitlines()
        if line.startswith("{") and '"counters"' in line
    ]
    assert len(status) == 1, f"expected one counters line on stderr:\n{done.stderr}"
    return records, status[0]["counters"]


def totals_per_key(records: list[dict]) -> dict[tuple, tuple[int, int]]:
    """Sum packets and octets per flow key: a flow split over records adds up."""
    totals: dict[tuple, tuple[int, int]] = {}
    for record in records:
        key = (
            record["ip_version"],
            record["protocol"],
            record["src_addr"],
            record["dst_addr"],
            record["src_port"],
            record["dst_port"],
        )
        packets, octets = totals.get(key, (0, 0))
        totals[key] = (packets + record["packets"], octets + record["octets"])
    return totals


def assert_every_packet_accounted(counters: dict, records: list[dict], frames: int) -> None:
    drops = {name: value for name, value in counters.items() if name.startswith("dropped_")}
    assert drops, f"no dropped_* counters in {sorted(counters)}"
    metered = sum(record["packets"] for record in records)
    assert counters["packets_read"] == frames, counters
    assert counters["packets_read"] == metered + sum(drops.values()), (
        f"packets_read={counters['packets_read']} records={metered} drops={drops}"
    )


def test_capture_has_what_the_test_needs(reference):
    keys = reference.flows.keys()
    assert reference.ipv4_fragments > 0, "no IPv4 fragments recorded"
    assert reference.ipv6_fragments > 0, "no IPv6 fragments recorded"
    assert reference.tcp_rst_packets > 0, "no TCP RST recorded"
    assert reference.non_ip_packets > 0, "no ARP recorded (drop counters untested)"
    assert any(k[1] == 58 for k in keys), "no ICMPv6 recorded"
    for version in (4, 6):
        assert any(k[0] == version and k[1] == 17 for k in keys), f"no UDP over IPv{version}"
        assert any(k[0] == version and k[1] == 6 for k in keys), f"no TCP over IPv{version}"
    # The capture is sane: every IP packet decoded, every fragment placed.
    assert reference.undecodable_packets == 0
    assert reference.unmatched_fragments == 0


def test_totals_match_truth_for_every_key(capture, reference):
    records, counters = run_flowprobe(capture, *LONG)
    assert differences(reference.flows, totals_per_key(records), ("truth", "flowprobe")) == []
    assert_every_packet_accounted(counters, records, reference.frames)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param([], id="default-timeouts"),
        # Splits nearly every flow into several records.
        pytest.param(
            [
                "--idle-timeout",
                "0.01",
                "--active-timeout",
                "0.05",
                "--unanswered-timeout",
                "0.01",
                "--tcp-end-grace",
                "0",
            ],
            id="tight-timeouts",
        ),
        # Evicts the least recently seen flow on almost every new key.
        pytest.param(["--max-flows", "1", "--overflow", "evict", *LONG], id="tiny-table-evict"),
    ],
)
def test_splitting_records_loses_nothing(capture, reference, options):
    records, counters = run_flowprobe(capture, *options)
    assert differences(reference.flows, totals_per_key(records), ("truth", "flowprobe")) == []
    assert_every_packet_accounted(counters, records, reference.frames)
    if options:
        assert len(records) > len(reference.flows), "options meant to split flows did not"


def test_tshark_agrees_on_tcp(capture):
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    # ICMP errors quote a TCP header; only real TCP packets are wanted.
    done = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(capture),
            "-Y",
            "tcp && !icmp && !icmpv6",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.src",
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "ip.len",
            "-e",
            "ipv6.plen",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    tshark_totals: dict[tuple, tuple[int, int]] = {}
    for line in done.stdout.splitlines():
        src4, dst4, src6, dst6, sport, dport, length4, payload6 = line.split("\t")
        if src4:
            key = (4, 6, src4, dst4, int(sport), int(dport))
            octets = int(length4)
        else:
            src, dst = str(ipaddress.ip_address(src6)), str(ipaddress.ip_address(dst6))
            key = (6, 6, src, dst, int(sport), int(dport))
            octets = 40 + int(payload6)
        packets, total = tshark_totals.get(key, (0, 0))
        tshark_totals[key] = (packets + 1, total + octets)
    assert tshark_totals, "tshark found no TCP"
    records, _ = run_flowprobe(capture, *LONG)
    flowprobe_tcp = {k: v for k, v in totals_per_key(records).items() if k[1] == 6}
    assert differences(tshark_totals, flowprobe_tcp, ("tshark", "flowprobe")) == []


# simple_truth's own checks, on captures built here byte by byte.


def pcap_bytes(records: list[bytes], link_type: int, nanoseconds=False, big_endian=False):
    return pcapfile.to_bytes([(second * 1_000_000, frame) for second, frame in enumerate(records)],
                             link_type, 262144, ">" if big_endian else "<", nanoseconds)


def ethernet(ethertype: int, payload: bytes) -> bytes:
    frame = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + payload
    return frame + bytes(max(0, 60 - len(frame)))  # padded to the Ethernet minimum


def ipv4(protocol: int, payload: bytes, ident=1, offset=0, more=False) -> bytes:
    fragment = (0x2000 if more else 0) | (offset // 8)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        ident,
        fragment,
        64,
        protocol,
        0,
        bytes([192, 0, 2, 1]),
        bytes([192, 0, 2, 2]),
    )
    return header + payload


def ipv6(next_header: int, payload: bytes) -> bytes:
    src = ipaddress.IPv6Address("2001:db8::1").packed
    dst = ipaddress.IPv6Address("2001:db8::2").packed
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, 64) + src + dst + payload


def ipv6_fragment(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset | int(more), ident)


def test_simple_truth_keys_fragments_padding_and_headers(tmp_path):
    udp = struct.pack("!HHHH", 5000, 53, 8 + 24, 0) + bytes(24)
    tcp_rst = struct.pack("!HHIIBBHHH", 40000, 80, 0, 0, 0x50, 0x14, 0, 0, 0)
    hop_by_hop = bytes([58, 0, 5, 2, 0, 0, 1, 0])  # router alert, as in MLD
    frames = [
        # IPv4 datagram of 32 UDP octets in two fragments, the last one first.
        ethernet(0x0800, ipv4(17, udp[16:], ident=7, offset=16)),
        ethernet(0x0800, ipv4(17, udp[:16], ident=7, more=True)),
        ethernet(0x0800, ipv4(6, tcp_rst)),  # 40 octets, frame padded to 60
        ethernet(0x0806, bytes(28)),  # ARP
        ethernet(0x86DD, ipv6(0, hop_by_hop + bytes([143, 0, 0, 0]))),  # MLDv2 report
        # IPv6 UDP in two fragments, again in reverse order.
        ethernet(0x86DD, ipv6(44, ipv6_fragment(17, 16, False, 99) + udp[16:])),
        ethernet(0x86DD, ipv6(44, ipv6_fragment(17, 0, True, 99) + udp[:16])),
        # VLAN-tagged ICMP echo request.
        ethernet(0x8100, struct.pack("!HH", 10, 0x0800) + ipv4(1, bytes([8, 0]) + bytes(6))),
    ]
    expected = {
        (4, 17, "192.0.2.1", "192.0.2.2", 5000, 53): (2, 40 + 16 + 16),
        (4, 6, "192.0.2.1", "192.0.2.2", 40000, 80): (1, 40),
        (6, 58, "2001:db8::1", "2001:db8::2", 0, 143 * 256): (1, 52),
        (6, 17, "2001:db8::1", "2001:db8::2", 5000, 53): (2, 2 * 40 + 2 * 8 + 32),
        (4, 1, "192.0.2.1", "192.0.2.2", 0, 8 * 256): (1, 28),
    }
    for nanoseconds, big_endian in [(False, False), (True, True)]:
        path = tmp_path / f"synthetic-{nanoseconds}-{big_endian}.pcap"
        path.write_bytes(pcap_bytes(frames, 1, nanoseconds, big_endian))
        report = simple_truth.truth_report(str(path))
        assert report.flows == expected
        assert (report.frames, report.non_ip_packets, report.unmatched_fragments) == (8, 1, 0)
        assert (report.ipv4_fragments, report.ipv6_fragments, report.tcp_rst_packets) == (2, 2, 1)


def test_simple_truth_reads_linux_cooked_captures(tmp_path):
    packet = ipv4(17, struct.pack("!HHHH", 1, 2, 8, 0))
    sll = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800) + packet
    path = tmp_path / "sll.pcap"
    path.write_bytes(pcap_bytes([sll], simple_truth.LINKTYPE_LINUX_SLL))
    assert simple_truth.truth(str(path)) == {(4, 17, "192.0.2.1", "192.0.2.2", 1, 2): (1, 28)}
