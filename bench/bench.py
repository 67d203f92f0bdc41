#!/usr/bin/env python3
"""Benchmark flowprobe against softflowd on the same generated capture.

A report, not a test: it exits 0 whatever the numbers are, and non-zero only when a
tool fails to run. Both tools read the same pcap file, one after the other, runs
interleaved so a noisy neighbour hurts both; each figure is the median over the runs.

    python3 bench/bench.py [--packets N] [--flows M] [--runs R] [--python PATH]

The floor: libpcap reading the same file with the same 1 MiB buffer and an empty
callback (bench/pcap_floor.c, built into build/bench/), run in the same interleaved
rounds; every tool's CPU is also given as a multiple of it. So is the C core alone
(bench/meter_file.c: the meter reads the file and drains its records, no Python).

Per tool: CPU seconds (user + sys of the child, from wait4), wall seconds, packets per
CPU-second, peak RSS. Bytes per flow: the peak RSS of the big capture minus that of a
tiny one with the same table size, over the flows the tool held at its peak. Exactness:
flowprobe's records, summed per 5-tuple, must equal the generator's truth.
"""

import argparse
import collections
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "tools" / "gen_capture.py"
WORK_DIR = REPO / "build" / "bench"
SOFTFLOWD = "/usr/sbin/softflowd"
GNU_TIME = shutil.which("time", path="/usr/bin:/bin")  # the program, not the shell keyword
TINY_CAPTURE = {"packets": 2000, "flows": 200}
FLOW_KEY = ("ip_version", "protocol", "src_addr", "dst_addr", "src_port", "dst_port")

HELPERS = {"floor": "pcap_floor.c", "C core": "meter_file.c"}  # built from bench/ into WORK_DIR
Measurement = collections.namedtuple("Measurement", "cpu_s wall_s peak_rss_kb")


class ToolFailed(Exception):
    pass


def generated_capture(packets, flows, seed=1):
    """Path of the capture and its truth file, generated once per arguments and generator."""
    arguments = {"packets": packets, "flows": flows, "seed": seed}
    digest = hashlib.sha256(GENERATOR.read_bytes())
    digest.update(json.dumps(arguments, sort_keys=True).encode())
    key = digest.hexdigest()[:16]
    pcap = WORK_DIR / f"capture-{packets}-{flows}-{key}.pcap"
    truth = pcap.with_suffix(".truth.json")
    if pcap.exists() and truth.exists():
        return pcap, truth
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    partial_pcap, partial_truth = pcap.with_suffix(".partial"), truth.with_suffix(".partial")
    command = [sys.executable, str(GENERATOR), "-o", str(partial_pcap),
               "--truth", str(partial_truth), "--packets", str(packets),
               "--flows", str(flows), "--seed", str(seed)]
    print("generating:", shlex.join(command), file=sys.stderr)
    subprocess.run(command, check=True)
    # Renamed only when complete, so an interrupted run never leaves a cached half file.
    partial_truth.rename(truth)
    partial_pcap.rename(pcap)
    return pcap, truth


def built_helper(source_name):
    """The C helper built from bench/SOURCE into build/bench/, rebuilt when a source changed."""
    source = REPO / "bench" / source_name
    binary = WORK_DIR / source.stem
    sources, include = [source], []
    if source_name == "meter_file.c":  # links the C core itself, built as setup.py builds it
        core = REPO / "src" / "flowprobe"
        sources += [core / "_cmeter.c", *sorted((core / "cmeter").glob("*.c"))]
        include = [f"-I{core}"]
    command = ["gcc", "-O2", "-std=gnu99", *include, "-o", str(binary),
               *(str(s) for s in sources), "-lpcap"]
    headers = list((REPO / "src" / "flowprobe").rglob("*.h"))
    newest = max(p.stat().st_mtime for p in sources + headers)
    if not binary.exists() or binary.stat().st_mtime < newest:
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(command, check=True)
    return binary


def measure(command, stdout_path, stderr_path):
    """Run `command` to completion and measure it alone.

    CPU time comes from wait4. Peak RSS does not: Linux counts the memory a child had
    before exec, which for a child forked from this interpreter is the interpreter's
    own RSS. GNU time forks from a process of a few hundred kilobytes and reports the
    peak of its child, so it runs the tool and wait4 covers both.
    """
    rss_path = WORK_DIR / "peak_rss_kb"
    if GNU_TIME:
        command = [GNU_TIME, "-f", "%M", "-o", str(rss_path)] + command
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        started = time.perf_counter()
        try:
            child = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                     stdin=subprocess.DEVNULL)
        except OSError as e:
            raise ToolFailed(f"{command[0]}: {e}") from e
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = Path(stderr_path).read_text(errors="replace")[-2000:]
        raise ToolFailed(f"{shlex.join(command)} exited {child.returncode}:\n{tail}")
    peak_rss_kb = usage.ru_maxrss
    if GNU_TIME:
        peak_rss_kb = int(rss_path.read_text().split()[-1])
    return Measurement(usage.ru_utime + usage.ru_stime, wall, peak_rss_kb)


def flowprobe_command(python, pcap, max_flows):
    return [python, "-m", "flowprobe", "read", str(pcap), "--json", "--max-flows", str(max_flows)]


def softflowd_command(pcap, export_port, max_flows):
    # -r: read the file, expire everything at EOF and exit; -d: stay in the foreground.
    # NetFlow v9 because v5 cannot carry IPv6 flows. "-c none": with a control socket,
    # softflowd 1.1.0 -r can block in accept() before reading (seen with paths longer
    # than about 12 characters), and an offline run needs no control socket anyway.
    return [SOFTFLOWD, "-r", str(pcap), "-d", "-v", "9", "-m", str(max_flows),
            "-n", f"127.0.0.1:{export_port}", "-c", "none"]


def flowprobe_summary(stderr_path):
    """The counters line flowprobe prints last on stderr."""
    for line in reversed(Path(stderr_path).read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ToolFailed(f"flowprobe printed no counters line in {stderr_path}")


def softflowd_statistic(stdout_path, label):
    """A figure from the statistics softflowd prints on stdout when a file ends."""
    text = Path(stdout_path).read_text(errors="replace")
    found = re.search(re.escape(label) + r":\s*(\d+)", text)
    return int(found.group(1)) if found else None


def exactness(records_path, truth_path):
    """'exact', or what differs between flowprobe's records and the generator's truth."""
    truth = json.loads(Path(truth_path).read_text())
    expected = {tuple(f[k] for k in FLOW_KEY): (f["packets"], f["octets"])
                for f in truth["flows"]}
    metered = collections.defaultdict(lambda: [0, 0])
    with open(records_path) as records:
        for line in records:
            record = json.loads(line)
            tally = metered[tuple(record[k] for k in FLOW_KEY)]
            tally[0] += record["packets"]
            tally[1] += record["octets"]
    packets = sum(t[0] for t in metered.values())
    octets = sum(t[1] for t in metered.values())
    wrong = sum(1 for key in expected.keys() | metered.keys()
                if tuple(metered.get(key, (0, 0))) != expected.get(key, (0, 0)))
    summary = truth["summary"]
    if wrong == 0 and packets == summary["packets"] and octets == summary["octets"]:
        return f"exact ({packets} packets, {octets} octets, {len(expected)} flows)"
    return (f"NOT exact: packets {packets - summary['packets']:+d}, "
            f"octets {octets - summary['octets']:+d}, {wrong} flows differ")


def median_measurement(measurements):
    return Measurement(*(statistics.median(values) for values in zip(*measurements)))


def table_size_for(flows):
    """Room for twice the concurrent flows: ended flows linger until their idle timeout."""
    size = 1
    while size < 2 * flows:
        size *= 2
    return size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=60_000,
                        help="directional flows alive at once in the capture")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that has flowprobe installed")
    args = parser.parse_args(argv)
    if not shutil.which(SOFTFLOWD):
        print(f"bench: {SOFTFLOWD} not found (apt-get install softflowd)", file=sys.stderr)
        return 1
    if not GNU_TIME:
        print("bench: /usr/bin/time not found (apt-get install time): peak RSS figures "
              "include this interpreter's own RSS", file=sys.stderr)

    pcap, truth_path = generated_capture(args.packets, args.flows)
    tiny_pcap, _ = generated_capture(**TINY_CAPTURE)
    truth = json.loads(truth_path.read_text())["summary"]
    max_flows = table_size_for(args.flows)

    # softflowd exports over UDP; a bound socket nobody reads keeps that on loopback
    # without ICMP errors, and the kernel drops what overflows its buffer.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    export_port = sink.getsockname()[1]

    helpers = {name: built_helper(source) for name, source in HELPERS.items()}
    commands = {
        "flowprobe": lambda capture: flowprobe_command(args.python, capture, max_flows),
        "softflowd": lambda capture: softflowd_command(capture, export_port, max_flows),
        "floor": lambda capture: [str(helpers["floor"]), str(capture)],
        "C core": lambda capture: [str(helpers["C core"]), str(capture), str(max_flows)],
    }
    outputs = {tool: (WORK_DIR / f"{tool.replace(' ', '_')}.stdout",
                      WORK_DIR / f"{tool.replace(' ', '_')}.stderr")
               for tool in commands}
    runs = {tool: [] for tool in commands}
    tiny = {}
    checks = []
    try:
        for tool, command in commands.items():
            if tool not in HELPERS:
                tiny[tool] = measure(command(tiny_pcap), *outputs[tool])
        for run in range(args.runs):
            for tool, command in commands.items():
                runs[tool].append(measure(command(pcap), *outputs[tool]))
                print(f"run {run + 1}/{args.runs} {tool}: {runs[tool][-1].cpu_s:.2f} CPU s",
                      file=sys.stderr)
                if tool == "flowprobe":
                    checks.append(exactness(outputs[tool][0], truth_path))
    except ToolFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        sink.close()

    flowprobe_counters = flowprobe_summary(outputs["flowprobe"][1])
    # softflowd keeps one entry per conversation (both directions) and, reading a file,
    # expires only when the table is full: it holds min(table size, conversations).
    held_at_peak = {
        "flowprobe": flowprobe_counters["counters"]["flows_peak"],
        "softflowd": min(max_flows, truth["conversations"]),
    }
    print_report(args, pcap, truth, max_flows, runs, tiny, held_at_peak, flowprobe_counters,
                 checks, commands, outputs)
    return 0


def print_report(args, pcap, truth, max_flows, runs, tiny, held_at_peak, flowprobe_counters,
                 checks, commands, outputs):
    medians = {tool: median_measurement(measured) for tool, measured in runs.items()
               if tool not in HELPERS}
    floors = {tool: median_measurement(runs[tool]) for tool in HELPERS}
    print(f"capture: {truth['packets']} packets, {truth['octets']} IP octets, "
          f"{truth['flows']} flows ({truth['peak_concurrent_flows']} alive at peak, "
          f"{truth['conversations']} conversations), {truth['file_bytes'] / 1e6:.0f} MB")
    print(f"table size {max_flows} for both; median of {args.runs} interleaved runs\n")
    header = (f"{'tool':<10} {'CPU s':>7} {'wall s':>7} {'kpkt/CPU-s':>11} {'peak RSS MB':>12} "
              f"{'tiny RSS MB':>12} {'held at peak':>13} {'B/flow':>7}")
    print(header)
    print("-" * len(header))
    rates, bytes_per_flow = {}, {}
    for tool, m in medians.items():
        rates[tool] = truth["packets"] / m.cpu_s
        bytes_per_flow[tool] = (m.peak_rss_kb - tiny[tool].peak_rss_kb) * 1024 / held_at_peak[tool]
        print(f"{tool:<10} {m.cpu_s:>7.2f} {m.wall_s:>7.2f} {rates[tool] / 1000:>11.0f} "
              f"{m.peak_rss_kb / 1024:>12.1f} {tiny[tool].peak_rss_kb / 1024:>12.1f} "
              f"{held_at_peak[tool]:>13} {bytes_per_flow[tool]:>7.0f}")
    print()
    print(f"flowprobe / softflowd: packets per CPU-second "
          f"{rates['flowprobe'] / rates['softflowd']:.2f}x, peak RSS "
          f"{medians['flowprobe'].peak_rss_kb / medians['softflowd'].peak_rss_kb:.2f}x, "
          f"bytes per held flow {bytes_per_flow['flowprobe'] / bytes_per_flow['softflowd']:.2f}x")
    floor_s = floors["floor"].cpu_s
    print(f"the libpcap floor (same file, same 1 MiB buffer, empty callback): {floor_s:.2f} CPU s; "
          f"flowprobe {medians['flowprobe'].cpu_s / floor_s:.2f}x the floor, softflowd "
          f"{medians['softflowd'].cpu_s / floor_s:.2f}x, the C core alone (no Python) "
          f"{floors['C core'].cpu_s / floor_s:.2f}x ({floors['C core'].cpu_s:.2f} CPU s)")
    memory_bytes = flowprobe_counters["memory_bytes"]
    ipv6_pool = flowprobe_counters["counters"].get("ipv6_flows_max")
    pool_note = (f", the IPv6 address pool ({ipv6_pool} flows, 36 B each: "
                 f"{ipv6_pool * 36 / max_flows:.0f} B of it)" if ipv6_pool else "")
    print(f"flowprobe tables: memory_bytes {memory_bytes} / max_flows {max_flows} = "
          f"{memory_bytes / max_flows:.0f} B per flow slot (fragment table included{pool_note}); "
          f"reserved at start, resident as flows use it (a new flow writes its slot and a "
          f"random bucket; with transparent huge pages 2 MiB at a time: the tiny run's "
          f"flows already make most of it resident)")
    print("held at peak: flowprobe's flows_peak counter; softflowd reading a file expires only "
          "when full, one entry per conversation")
    ignored = softflowd_statistic(outputs["softflowd"][0], "Ignored packets")
    if ignored:
        print(f"softflowd ignored {ignored} packets it could not decode "
              f"(802.1ad stacked VLAN tags)")
    distinct = sorted(set(checks))
    print("exactness (flowprobe vs generator truth): " + "; ".join(distinct))
    print("\ncommands" + (f" (each run under {GNU_TIME} -f %M for the peak RSS):"
                           if GNU_TIME else ":"))
    for tool, command in commands.items():
        stdout, stderr = outputs[tool]
        print(f"  {shlex.join(command(pcap))} > {stdout} 2> {stderr}")


if __name__ == "__main__":
    sys.exit(main())
