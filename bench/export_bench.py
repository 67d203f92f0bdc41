#!/usr/bin/env python3
"""Benchmark flowprobe's export: encoding per protocol, and read --export against softflowd.

A report, not a test: it exits 0 whatever the numbers are, and non-zero only when a
tool fails to run. It reads the capture bench.py generates (cached in build/bench/).

    python3 bench/export_bench.py [--packets N] [--flows M] [--runs R] [--python PATH]
                                  [--collector-buffer BYTES]

1. In process (a child run by --python), each run: the meter reads the capture in
   both modes (uniflow, and bidirectional for IPFIX biflows) and keeps every record;
   then each profile (IPFIX, NetFlow v9, v5, IPFIX biflow) encodes them all, alone and
   with its UDP transport to a loopback socket nobody reads. CPU from process_time,
   medians over the runs, set against the meter's own records per CPU-second.
2. End to end: `flowprobe read FILE --export` and `softflowd -r FILE` send the same
   capture to a fresh nfcapd, per protocol (v5, v9, IPFIX), runs interleaved. CPU from
   wait4; what the collector stored from `nfdump -I`; datagrams it dropped from the
   drops column of /proc/net/udp, read before it is stopped.
"""

import argparse
import json
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import (
    SOFTFLOWD,
    WORK_DIR,
    ToolFailed,
    flowprobe_summary,
    generated_capture,
    measure,
    softflowd_statistic,
    table_size_for,
)

NFCAPD = "/usr/bin/nfcapd"
NFDUMP = "/usr/bin/nfdump"
COLLECTOR_DIR = WORK_DIR / "nfcapd"
EXPORT_BATCH = 1024  # records per export() call: the meter's drain batch
# (label, URL scheme and query, whether the meter runs bidirectional)
ENCODE_PROFILES = (
    ("ipfix", "ipfix://{address}", False),
    ("netflow9", "netflow9://{address}", False),
    ("netflow5", "netflow5://{address}", False),
    ("ipfix biflow", "ipfix://{address}?biflow=1", True),
)
# (flowprobe URL scheme, softflowd -v)
END_TO_END_PROTOCOLS = (("netflow5", "5"), ("netflow9", "9"), ("ipfix", "10"))
TOOLS = ("flowprobe", "softflowd")
# a receive buffer nfcapd cannot get: the kernel caps SO_RCVBUF at this sysctl
RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
BIND_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 10.0
SETTLE_S = 0.2


# ---- 1. encoding, in a child process that has flowprobe ----

def encode_in_process(pcap, max_flows, runs):
    """Meters the capture, keeps its records, times every profile exporting them all.
    Runs under the interpreter that has flowprobe; returns a dict for JSON."""
    from flowprobe._cmeter_ffi import ffi
    from flowprobe.export.collectors import Exporter, profile_from_url
    from flowprobe.meter import Meter
    from flowprobe.settings import MeterSettings

    record_size = ffi.sizeof("struct fp_record")

    def meter_and_keep(bidirectional):
        meter = Meter(MeterSettings(max_flows=max_flows, bidirectional=bidirectional))
        kept = []

        def keep():
            # drain_raw() reuses its buffer: every batch is copied out
            for batch, count in meter.drain_raw():
                copy = ffi.new("struct fp_record[]", count)
                ffi.memmove(copy, batch, count * record_size)
                kept.append((copy, count))

        started = time.process_time()
        for _ in meter.read_file(pcap, drain=keep):
            pass
        meter.flush()
        keep()
        cpu_s = time.process_time() - started
        counters = meter.counters()
        return kept, {"cpu_s": cpu_s, "packets": counters["packets_read"],
                      "records": sum(count for _, count in kept),
                      "now_ms": counters["clock_ms"], "boot_ms": counters["clock_first_ms"]}

    # a bound socket nobody reads: loopback sends never block, and what overflows
    # its buffer the kernel drops on the receiving side, after the sender's work
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % sink.getsockname()[1]
    # untimed: a process's first pass over the capture ran up to 60 % slower than the next
    meter_and_keep(False)

    meter_s = {False: [], True: []}
    results = {label: {"encode_s": [], "export_s": []} for label, _, _ in ENCODE_PROFILES}
    for _ in range(runs):
        modes = {}
        for bidirectional in (False, True):
            modes[bidirectional] = meter_and_keep(bidirectional)
            meter_s[bidirectional].append(modes[bidirectional][1]["cpu_s"])
        for label, url, bidirectional in ENCODE_PROFILES:
            kept, meter = modes[bidirectional]
            now_ms, boot_ms = meter["now_ms"], meter["boot_ms"]
            profile = profile_from_url(url.format(address=address))
            result = results[label]

            # the encoder alone: bytes out, no socket
            exporter = Exporter([profile], boot_ms=boot_ms, meter_biflow=bidirectional)
            encoder = exporter.collectors[0].encoder
            started = time.process_time()
            for batch, count in kept:
                encoder.encode(batch, count, now_ms, bidirectional)
            result["encode_s"].append(time.process_time() - started)
            exporter.close()

            # what read --export does per batch: templates, encoding, sending
            exporter = Exporter([profile], boot_ms=boot_ms, meter_biflow=bidirectional)
            started = time.process_time()
            exporter.start(now_ms)
            for batch, count in kept:
                exporter.export(batch, count, now_ms)
            # timeout 0: finish() would otherwise sit in select() for its whole timeout,
            # waiting on a socket the sink never makes readable; records_not_sent shows
            # whether anything was left queued
            exporter.finish(now_ms, timeout_s=0)
            result["export_s"].append(time.process_time() - started)
            stats = exporter.stats()[0]
            result.update(records_in=meter["records"], messages=stats["messages_sent"],
                          records_sent=stats["records_sent"], octets=stats["octets_sent"],
                          records_not_sent=stats["records_not_sent"],
                          records_not_exportable=stats["records_not_exportable"],
                          last_error=stats["last_error"])
    sink.close()
    meters = {("biflow" if bidirectional else "uniflow"):
              {"cpu_s": statistics.median(meter_s[bidirectional]), "packets": meter["packets"],
               "records": meter["records"]}
              for bidirectional, (_, meter) in modes.items()}
    return {"meter": meters, "export": results}


def run_encode_child(python, pcap, max_flows, runs):
    command = [python, str(Path(__file__).resolve()), "--encode-child", str(pcap),
               "--max-flows", str(max_flows), "--runs", str(runs)]
    try:
        child = subprocess.run(command, capture_output=True, text=True)
    except OSError as e:
        raise ToolFailed(f"{python}: {e}") from e
    if child.returncode != 0:
        raise ToolFailed(f"{shlex.join(command)} exited {child.returncode}:\n"
                         f"{child.stderr[-2000:]}")
    return command, json.loads(child.stdout)


# ---- 2. end to end, into nfcapd ----

def udp_socket_row(port):
    """(rx_queue bytes, drops) of the IPv4 UDP socket bound to 127.0.0.1:port, or None."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1] == local:
                return int(fields[4].split(":")[1], 16), int(fields[12])
    return None


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nfcapd_command(port, buffer_bytes):
    command = [NFCAPD, "-w", str(COLLECTOR_DIR), "-p", str(port), "-b", "127.0.0.1"]
    if buffer_bytes:
        command += ["-B", str(buffer_bytes)]
    return command


def collector_totals(directory):
    """Flows, packets, bytes and sequence failures nfcapd stored, from nfdump -I."""
    command = [NFDUMP, "-R", str(directory), "-I"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolFailed(f"{shlex.join(command)} exited {done.returncode}: {done.stderr}")
    totals = {}
    for key, label in (("flows", "Flows"), ("packets", "Packets"), ("bytes", "Bytes"),
                       ("sequence_failures", "Sequence failures")):
        found = re.search(rf"^{label}: (\d+)$", done.stdout, re.MULTILINE)
        totals[key] = int(found.group(1)) if found else 0
    return totals


def run_into_collector(command, port, buffer_bytes, stdout_path, stderr_path):
    """Measures `command` while a fresh nfcapd receives; returns (measurement, what
    the collector stored, datagrams its socket dropped)."""
    shutil.rmtree(COLLECTOR_DIR, ignore_errors=True)
    COLLECTOR_DIR.mkdir(parents=True)
    log_path = WORK_DIR / "nfcapd.log"
    with open(log_path, "wb") as log:
        collector = subprocess.Popen(nfcapd_command(port, buffer_bytes), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + BIND_TIMEOUT_S
        while udp_socket_row(port) is None:
            if collector.poll() is not None or time.monotonic() > deadline:
                raise ToolFailed(f"nfcapd did not bind 127.0.0.1:{port}:\n"
                                 f"{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.01)
        measurement = measure(command, stdout_path, stderr_path)
        # let nfcapd read what waits in its socket, then count what never got there
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while (row := udp_socket_row(port)) and row[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(SETTLE_S)
        row = udp_socket_row(port)
        if row is None:
            raise ToolFailed(f"nfcapd exited while receiving:\n"
                             f"{log_path.read_text(errors='replace')[-2000:]}")
        drops = row[1]
    finally:
        collector.send_signal(signal.SIGTERM)  # nfcapd writes its file out and exits
        try:
            collector.wait(timeout=10)
        except subprocess.TimeoutExpired:
            collector.kill()
            collector.wait()
            raise ToolFailed("nfcapd did not stop within 10 s of SIGTERM") from None
    return measurement, collector_totals(COLLECTOR_DIR), drops


def flowprobe_export_command(python, pcap, scheme, port, max_flows):
    return [python, "-m", "flowprobe", "read", str(pcap), "--export",
            f"{scheme}://127.0.0.1:{port}", "--max-flows", str(max_flows)]


def softflowd_export_command(pcap, version, port, max_flows):
    # -c none: see bench.py (softflowd 1.1.0 -r can block in accept() on its control socket)
    return [SOFTFLOWD, "-r", str(pcap), "-d", "-v", version, "-m", str(max_flows),
            "-n", f"127.0.0.1:{port}", "-c", "none"]


def flowprobe_claims(stderr_path):
    """What flowprobe says it metered and sent: its counters line on stderr."""
    summary = flowprobe_summary(stderr_path)
    exporter = summary["exporters"][0]
    return {"datagrams": exporter["messages_sent"],
            "not_sent": exporter["records_not_sent"],
            "not_exportable": exporter["records_not_exportable"],
            "packets": summary["counters"]["packets_metered"],
            "octets": summary["counters"]["octets_metered"]}


def softflowd_claims(stdout_path):
    """What softflowd says it metered and sent: the statistics it prints at the end."""
    text = Path(stdout_path).read_text(errors="replace")
    exported = re.search(r"Flows exported: \d+ \((\d+) records\) in (\d+) packets "
                         r"\((\d+) failures\)", text)
    # its per-protocol table holds every expired flow: at EOF that is all of them
    rows = re.findall(r"^\s+\S+ \(\d+\):\s+(\d+)\s+(\d+)\s", text, re.MULTILINE)
    return {"datagrams": int(exported.group(2)) if exported else None,
            "not_sent": int(exported.group(3)) if exported else None,
            "ignored": softflowd_statistic(stdout_path, "Ignored packets") or 0,
            "packets": sum(int(packets) for _, packets in rows),
            "octets": sum(int(octets) for octets, _ in rows)}


def collector_buffer_default():
    try:
        return int(RMEM_MAX.read_text())
    except (OSError, ValueError):
        return 0


# ---- the report ----

def print_encoding(encoding, command, runs):
    meters = encoding["meter"]
    print(f"1. encoding in process: median of {runs} interleaved runs (meter, biflow meter, "
          f"each profile), process_time CPU")
    for mode, meter in meters.items():
        print(f"   meter ({mode}): {meter['packets']} packets -> {meter['records']} records in "
              f"{meter['cpu_s']:.2f} CPU s = {meter['packets'] / meter['cpu_s'] / 1000:.0f} "
              f"kpkt/s, {meter['records'] / meter['cpu_s'] / 1000:.0f} krec/s")
    header = (f"{'profile':<13} {'records':>8} {'not exp.':>8} {'datagrams':>9} {'MB':>6} "
              f"{'encode s':>8} {'krec/s':>7} {'enc+send s':>10} {'krec/s':>7} "
              f"{'x meter':>7} {'share':>6}")
    print(header)
    print("-" * len(header))
    for label, _, bidirectional in ENCODE_PROFILES:
        result = encoding["export"][label]
        meter = meters["biflow" if bidirectional else "uniflow"]
        encode_s = statistics.median(result["encode_s"])
        export_s = statistics.median(result["export_s"])
        records = result["records_in"]
        export_rate = records / export_s
        meter_rate = meter["records"] / meter["cpu_s"]
        print(f"{label:<13} {records:>8} {result['records_not_exportable']:>8} "
              f"{result['messages']:>9} {result['octets'] / 1e6:>6.1f} {encode_s:>8.3f} "
              f"{records / encode_s / 1000:>7.0f} {export_s:>10.3f} {export_rate / 1000:>7.0f} "
              f"{export_rate / meter_rate:>6.1f}x {export_s / (export_s + meter['cpu_s']):>6.0%}")
        if result["records_not_sent"]:
            print(f"   !! {label}: {result['records_not_sent']} records not sent "
                  f"(last error: {result['last_error']})")
    print("records: the meter's records handed in (netflow5: the IPv6 ones are 'not exp.'); "
          "krec/s: records per CPU-second; x meter: export's records/s over the meter's "
          "records/s; share: export's part of meter + export CPU, what read --export pays "
          "for exporting this capture")
    print(f"   {shlex.join(command)}")


def print_end_to_end(truth, ipv4_truth, runs, results, commands, buffer_bytes):
    print(f"\n2. end to end into nfcapd (-B {buffer_bytes or 'default'}): median of {runs} "
          f"interleaved runs, CPU from wait4; collector columns from the worst run "
          f"(most datagrams dropped)")
    header = (f"{'protocol':<9} {'tool':<10} {'CPU s':>6} {'wall s':>6} {'kpkt/CPU-s':>10} "
              f"{'sent':>6} {'dropped':>7} {'flows':>7} {'packets':>8} {'of truth':>8} "
              f"{'bytes':>10} {'of truth':>8} {'seq':>4}")
    print(header)
    print("-" * len(header))
    rates = {}
    for scheme, _ in END_TO_END_PROTOCOLS:
        expected = ipv4_truth if scheme == "netflow5" else truth
        for tool in TOOLS:
            measured = results[scheme][tool]
            cpu_s = statistics.median(m.cpu_s for m, _, _, _ in measured)
            wall_s = statistics.median(m.wall_s for m, _, _, _ in measured)
            rates[scheme, tool] = truth["packets"] / cpu_s
            _, stored, drops, claims = max(measured, key=lambda run: run[2])
            print(f"{scheme:<9} {tool:<10} {cpu_s:>6.2f} {wall_s:>6.2f} "
                  f"{rates[scheme, tool] / 1000:>10.0f} {claims['datagrams']:>6} {drops:>7} "
                  f"{stored['flows']:>7} {stored['packets']:>8} "
                  f"{stored['packets'] / expected['packets']:>8.2%} {stored['bytes']:>10} "
                  f"{stored['bytes'] / expected['octets']:>8.2%} "
                  f"{stored['sequence_failures']:>4}")
    print()
    for scheme, version in END_TO_END_PROTOCOLS:
        print(f"{scheme} (softflowd -v {version}): flowprobe / softflowd packets per CPU-second "
              f"{rates[scheme, 'flowprobe'] / rates[scheme, 'softflowd']:.2f}x")
    print(f"\ntruth: {truth['packets']} packets, {truth['octets']} octets; for netflow5 the "
          f"IPv4 flows only, all v5 can carry: {ipv4_truth['packets']} packets, "
          f"{ipv4_truth['octets']} octets")
    for scheme, _ in END_TO_END_PROTOCOLS:
        expected = ipv4_truth if scheme == "netflow5" else truth
        for tool in TOOLS:
            notes = collector_notes(scheme, tool, results[scheme][tool], expected)
            if notes:
                print(f"  {scheme} {tool}: " + "; ".join(notes))
    print("kpkt/CPU-s: capture packets per CPU-second; sent: datagrams the tool says it sent; "
          "dropped: datagrams nfcapd's socket dropped (/proc/net/udp), never stored; "
          "of truth: stored over the generator's truth; seq: nfdump's sequence failures")
    waits = [m.wall_s - m.cpu_s for scheme, _ in END_TO_END_PROTOCOLS
             for m, _, _, _ in results[scheme]["flowprobe"]]
    if min(waits) > 4:
        print(f"flowprobe's wall time includes {min(waits):.1f}..{max(waits):.1f} s off CPU: "
              "Exporter.finish() pumps with a 5 s timeout and its select() waits for the "
              "socket to turn readable, which a collector that sends nothing never does")
    print("\ncommands (each run under /usr/bin/time -f %M, as in bench.py):")
    for line in commands:
        print(f"  {line}")


def collector_notes(scheme, tool, measured, expected):
    """Why what the collector stored differs from the truth: the tool's own account
    (what it ignored, could not export or send) and what the collector dropped."""
    notes = []
    claims = measured[-1][3]
    if tool == "softflowd":
        # what it says it metered is what it exported: at EOF every flow expires
        metered = (claims["packets"], claims["octets"])
        if claims["ignored"]:
            what = "IPv6 and 802.1ad frames" if scheme == "netflow5" else "802.1ad frames"
            notes.append(f"ignored {claims['ignored']} packets as non-IP ({what})")
        if metered != (expected["packets"], expected["octets"]):
            notes.append(f"metered {metered[0]} packets, {metered[1]} octets (truth "
                         f"{metered[0] - expected['packets']:+d}, "
                         f"{metered[1] - expected['octets']:+d})")
    else:
        metered = (expected["packets"], expected["octets"])  # bench.py checks it exact
        if claims["not_exportable"]:
            notes.append(f"{claims['not_exportable']} IPv6 records not exportable")
    if claims["not_sent"]:
        notes.append(f"{claims['not_sent']} not sent (its own count)")
    drops = [drops for _, _, drops, _ in measured]
    if any(drops):
        notes.append("datagrams dropped at nfcapd per run: " + ", ".join(map(str, drops)))
    complete = [stored for _, stored, drops, _ in measured if not drops]
    for stored in complete:
        if (stored["packets"], stored["bytes"]) != metered:
            notes.append(f"!! a run stored {stored['packets']} packets, {stored['bytes']} "
                         f"bytes with no datagram dropped")
    failures = sorted({stored["sequence_failures"] for stored in complete} - {0})
    if failures:
        notes.append(f"{'/'.join(map(str, failures))} sequence failures with no datagram "
                     f"dropped: its sequence numbers as nfdump counts them, not loss")
    return notes


def ipv4_totals(truth_path):
    flows = json.loads(Path(truth_path).read_text())["flows"]
    ipv4 = [f for f in flows if f["ip_version"] == 4]
    return {"packets": sum(f["packets"] for f in ipv4), "octets": sum(f["octets"] for f in ipv4)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=60_000,
                        help="directional flows alive at once in the capture")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that has flowprobe installed")
    parser.add_argument("--collector-buffer", type=int, default=None, metavar="BYTES",
                        help="nfcapd -B, for both tools (default: net.core.rmem_max, the most "
                             "the kernel grants; 0: nfcapd's own default)")
    parser.add_argument("--encode-child", metavar="PCAP", help=argparse.SUPPRESS)
    parser.add_argument("--max-flows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.encode_child:
        json.dump(encode_in_process(args.encode_child, args.max_flows, args.runs), sys.stdout)
        return 0
    for program, package in ((SOFTFLOWD, "softflowd"), (NFCAPD, "nfdump"), (NFDUMP, "nfdump")):
        if not shutil.which(program):
            print(f"export_bench: {program} not found (apt-get install {package})",
                  file=sys.stderr)
            return 1
    buffer_bytes = (collector_buffer_default() if args.collector_buffer is None
                    else args.collector_buffer)

    pcap, truth_path = generated_capture(args.packets, args.flows)
    truth = json.loads(truth_path.read_text())["summary"]
    ipv4_truth = ipv4_totals(truth_path)
    max_flows = table_size_for(args.flows)
    port = free_udp_port()
    commands = {
        "flowprobe": lambda scheme, version: flowprobe_export_command(
            args.python, pcap, scheme, port, max_flows),
        "softflowd": lambda scheme, version: softflowd_export_command(
            pcap, version, port, max_flows),
    }
    results = {scheme: {tool: [] for tool in TOOLS} for scheme, _ in END_TO_END_PROTOCOLS}
    try:
        print("encoding in process ...", file=sys.stderr)
        encode_command, encoding = run_encode_child(args.python, pcap, max_flows, args.runs)
        for run in range(args.runs):
            for scheme, version in END_TO_END_PROTOCOLS:
                for tool in TOOLS:
                    stdout_path = WORK_DIR / f"export-{tool}-{scheme}.stdout"
                    stderr_path = WORK_DIR / f"export-{tool}-{scheme}.stderr"
                    measured, stored, drops = run_into_collector(
                        commands[tool](scheme, version), port, buffer_bytes,
                        stdout_path, stderr_path)
                    claims = (flowprobe_claims(stderr_path) if tool == "flowprobe"
                              else softflowd_claims(stdout_path))
                    results[scheme][tool].append((measured, stored, drops, claims))
                    print(f"run {run + 1}/{args.runs} {scheme} {tool}: {measured.cpu_s:.2f} "
                          f"CPU s, {stored['packets']} packets stored, {drops} datagrams "
                          f"dropped", file=sys.stderr)
    except ToolFailed as e:
        print(f"export_bench: {e}", file=sys.stderr)
        return 1

    print(f"capture: {truth['packets']} packets, {truth['octets']} IP octets, {truth['flows']} "
          f"flows; table size {max_flows} for both tools\n")
    print_encoding(encoding, encode_command, args.runs)
    lines = [f"{shlex.join(nfcapd_command(port, buffer_bytes))}  "
             f"(fresh {COLLECTOR_DIR} each run; SIGTERM once the tool exited and nfcapd "
             f"read its socket empty)"]
    for scheme, version in END_TO_END_PROTOCOLS:
        for tool in TOOLS:
            lines.append(shlex.join(commands[tool](scheme, version)))
    lines.append(f"{NFDUMP} -R {COLLECTOR_DIR} -I")
    print_end_to_end(truth, ipv4_truth, args.runs, results, lines, buffer_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
