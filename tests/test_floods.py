"""Floods: traffic far beyond the tables, in bounded memory.

- 2 M distinct flows into a 16 k flow table: peak RSS stays at the
  configured budget (no more than for a capture that merely fills the
  table), every flow is evicted and exported as a record, nothing lost;
- a fragment flood (first fragments never completed, orphans, overlapping
  and tiny fragments) into a 1 k fragment table: it stays bounded, its
  evictions and timeouts are counted, every packet is accounted for;
- a burst that overruns the capture buffer of the live daemon: the drops
  are reported per interface in status and reach the collector in the
  exporter's statistics (ignoredPacketTotalCount), and status answers
  throughout.

The figures are printed (pytest -s, or the summary at the end of the run).
"""

import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from captures import START_US, pcapfile
from collector_tools import TSHARK, missing_tools, tshark_decode
from netlab import RouterLab, missing
from test_daemon_live import Daemon, all_up, settle, uci_config

CHILD = Path(__file__).parent / "floods" / "meter_in_child.py"
FLOOD_FLOWS = 2_000_000
TABLE = 16_384
FRAGMENT_TABLE = 1024
MIB = 1024 * 1024

ETHERNET_IPV4 = bytes.fromhex("020000000002020000000001" "0800")
PCAP_HEADER = pcapfile.file_header()


def figure(request, text):
    """Printed now and in the run's summary (conftest collects them)."""
    print(text)
    request.config.flowprobe_figures = getattr(request.config, "flowprobe_figures", [])
    request.config.flowprobe_figures.append(text)


def udp_flood(path, flows, start=0):
    """One 42-byte UDP packet per flow, each flow its own source address
    and port, 1 µs apart; written with struct, fast enough for millions."""
    ip = bytearray.fromhex("4500001c00004000401100000a000000c0000201")
    udp = bytearray.fromhex("0000003500080000")
    frame = ETHERNET_IPV4 + bytes(ip) + bytes(udp)
    record = bytearray(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
    with open(path, "wb", buffering=4 * MIB) as out:
        out.write(PCAP_HEADER)
        for n in range(start, start + flows):
            t = START_US + n
            struct.pack_into("<II", record, 0, t // 1_000_000, t % 1_000_000)
            struct.pack_into("!IH", record, 16 + 14 + 12, 0x0A000000 | (n >> 6), 0)
            struct.pack_into("!H", record, 16 + 14 + 20, 1024 + (n & 63))
            out.write(record)
    return path


def meter_in_child(*paths, max_flows=TABLE, max_fragments=FRAGMENT_TABLE):
    """One meter reads the files in turn (see floods/meter_in_child.py)."""
    out = subprocess.run([sys.executable, str(CHILD), str(max_flows), str(max_fragments),
                          *map(str, paths)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def ignored(counters):
    return sum(v for k, v in counters.items() if k.startswith("dropped_"))


def test_two_million_flows_into_sixteen_thousand_entries(tmp_path, request):
    fill = udp_flood(tmp_path / "fill.pcap", 2 * TABLE)   # every table page touched
    flood = udp_flood(tmp_path / "flood.pcap", FLOOD_FLOWS, start=2 * TABLE)
    run = meter_in_child(fill, flood)
    counters, (filled, flooded) = run["counters"], run["files"]
    growth_kib = flooded["highest_kib"] - filled["after_kib"]
    total = 2 * TABLE + FLOOD_FLOWS
    figure(request, f"flow flood: {FLOOD_FLOWS} more flows into {TABLE} entries: "
                    f"{counters['flows_evicted']} evicted, {run['records']} records; tables "
                    f"{run['memory_bytes'] / MIB:.1f} MiB; resident {filled['after_kib']} KiB "
                    f"with the table full, at most {growth_kib:+d} KiB during the flood")
    # every flow got a record, each packet in one
    assert counters["packets_read"] == counters["packets_metered"] == total
    assert ignored(counters) == 0
    assert run["records"] == counters["flows_created"] == total
    assert counters["flows_evicted"] >= total - TABLE
    assert counters["flows_peak"] <= TABLE
    # not a page more per flow: memory stays at what the full table took, plus
    # the flood file's own 1 MiB read buffer (a leak of 8 bytes a flow: 16 MiB)
    assert growth_kib < 2048


def fragment(identification, offset_bytes, more, payload, src=0x0A010001):
    """An IPv4 UDP fragment: offset in bytes (a multiple of 8)."""
    flags = (0x2000 if more else 0) | (offset_bytes // 8)
    total = 20 + len(payload)
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, total, identification, flags, 64, 17, 0, src,
                     0xC0000202)
    return ETHERNET_IPV4 + ip + payload


def fragment_flood(path, datagrams, first_id=0):
    """Per datagram id: a first fragment never completed; an orphan tail
    (a last fragment whose first never comes); tiny 8-byte middle pieces;
    and for every tenth, an overlapping second copy of the first."""
    first = struct.pack("!HHHH", 4000, 53, 1480, 0) + b"f" * 1472
    with open(path, "wb", buffering=4 * MIB) as out:
        out.write(PCAP_HEADER)
        t = START_US
        for n in range(datagrams):
            frames = [fragment(n & 0xFFFF, 0, True, first, src=0x0A010000 + (n >> 16)),
                      fragment((n + 30000) & 0xFFFF, 1480, False, b"o" * 100,
                               src=0x0A020000 + (n >> 16)),
                      fragment((n + 50000) & 0xFFFF, 8, True, b"t" * 8,
                               src=0x0A030000 + (n >> 16))]
            if n % 10 == 0:
                frames.append(fragment(n & 0xFFFF, 0, True, first[:8] + b"x" * 200,
                                       src=0x0A010000 + (n >> 16)))
            for frame in frames:
                t += 10  # 100 k packets a second: the flood outruns the fragment timeout
                out.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame),
                                      len(frame)) + frame)
    return path


def test_a_fragment_flood_stays_in_its_table(tmp_path, request):
    fill = fragment_flood(tmp_path / "fill.pcap", 2 * FRAGMENT_TABLE)
    flood = fragment_flood(tmp_path / "flood.pcap", 200_000)
    run = meter_in_child(fill, flood)
    counters, (filled, flooded) = run["counters"], run["files"]
    growth_kib = flooded["highest_kib"] - filled["after_kib"]
    figure(request, f"fragment flood: {counters['packets_read']} fragments of "
                    f"{counters['fragment_datagrams']} datagrams into {FRAGMENT_TABLE} entries: "
                    f"{counters['fragment_entries_evicted']} evicted, "
                    f"{counters['fragment_entries_timed_out']} timed out, "
                    f"{counters['dropped_fragment_orphaned']} orphans dropped; resident "
                    f"at most {growth_kib:+d} KiB against the table filled")
    assert counters["fragments_tracked"] <= FRAGMENT_TABLE
    assert counters["fragment_entries_evicted"] + counters["fragment_entries_timed_out"] > 0
    assert counters["dropped_fragment_orphaned"] > 0
    # every fragment in a flow or under a named reason; none still held after the flush
    assert counters["fragment_packets_held"] == 0
    assert counters["packets_read"] == counters["packets_metered"] + ignored(counters)
    assert growth_kib < 2048   # as above: the second file's read buffer


# ---- live: a burst the capture buffer cannot hold ----

COLLECTOR_PORT = 2099
skip_live = missing() or missing_tools(TSHARK) or missing_tools("/usr/bin/tcpreplay")


def ignored_in_statistics(pcap):
    """ignoredPacketTotalCount of each exporter-statistics record, as tshark reads it."""
    return [int(record["fields"]["cflow.ignore_packets"])
            for message in tshark_decode(pcap, COLLECTOR_PORT)
            for record in message["records"]
            if record["kind"] == "options" and "cflow.ignore_packets" in record["fields"]]


@pytest.mark.skipif(skip_live is not None, reason=f"live flood: {skip_live}")
def test_a_burst_beyond_the_capture_buffer_is_reported(tmp_path, request):
    flood = udp_flood(tmp_path / "burst.pcap", 60_000)
    with RouterLab() as lab:
        # what the daemon exports, as it leaves, to a collector that reads and
        # discards (a closed port would make it down: nothing more sent)
        sink = lab.popen(lab.router, sys.executable, "-c",
                         "import socket\n"
                         "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                         f"s.bind(('127.0.0.1', {COLLECTOR_PORT}))\n"
                         "while True: s.recv(65536)\n")
        export = tmp_path / "export.pcap"
        recorder = lab.popen(lab.router, "tcpdump", "-i", "lo", "-U", "-n", "-w", str(export),
                             f"udp port {COLLECTOR_PORT}", stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        daemon = Daemon(lab, tmp_path, uci_config(str(tmp_path / "control.sock"),
                                                  COLLECTOR_PORT, ["r-cli"],
                                                  {"buffer_kb": 64, "max_flows": 4096}))
        daemon.wait_until(all_up)
        time.sleep(1)  # tcpdump attached
        # the daemon stops reading (as when a slow flash write stalls it), a burst
        # arrives, and the kernel's buffer overflows
        daemon.process.send_signal(signal.SIGSTOP)
        lab.run(lab.client, "tcpreplay", "-q", "--topspeed", "-i", "eth0", str(flood))
        daemon.process.send_signal(signal.SIGCONT)
        slowest = 0.0
        for _ in range(20):
            began = time.monotonic()
            status = daemon.status()
            slowest = max(slowest, time.monotonic() - began)
            time.sleep(0.05)
        daemon.stop()   # the last statistics record goes out at the stop
        settle(export)  # tcpdump drops what it has not written when it exits
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(10)
        sink.terminate()
    interface = status["interfaces"][0]
    figure(request, f"capture overrun: {interface['pcap_received']} received by the filter, "
                    f"{interface['pcap_dropped']} dropped by the kernel, "
                    f"{interface['packets_read']} metered; status answered within "
                    f"{slowest * 1000:.0f} ms")
    assert interface["pcap_dropped"] > 0
    assert status["meter"]["packets_dropped_by_kernel"] == interface["pcap_dropped"]
    assert slowest < 2.0
    reported = ignored_in_statistics(export)
    assert reported and reported[-1] >= interface["pcap_dropped"], reported
