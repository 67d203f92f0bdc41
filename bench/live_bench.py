#!/usr/bin/env python3
"""Meter the same traffic live: tcpreplay into a veth while flowprobe, then softflowd, capture.

A report, not a test: it exits 0 whatever the figures are, and non-zero only when a tool
fails to run (without root it says so and exits 0: namespaces need root).

    python3 bench/live_bench.py [--packets N] [--flows M] [--runs R] [--pps N] [--python PATH]

A network namespace of this process's own holds one end of a veth pair; each tool captures
on that end, inside the namespace, while tcpreplay sends a cached generated capture
(bench.py's generated_capture) into the other end. Runs are interleaved (flowprobe,
softflowd, then each idle for as long as its loaded run); each figure is the median over
the runs. Per tool: CPU seconds (user + sys from wait4, the whole process life) loaded and
idle, CPU seconds per million packets with and without the idle cost, the ratio flowprobe /
softflowd, and the drops: before the capture (the kernel's backlog, tcpreplay's failures)
and in each tool's capture (libpcap's counters, packets read against packets received).
Then each daemon's RSS, idle, with its default table.

Defaults: 300 000 packets with bench.py's 60 000 concurrent flows, at --topspeed. At that
size softflowd's table (one entry per conversation, kept for its long default timeouts)
never fills, so neither tool drops and both do the same work. The offline bench's 1 M
packets hold more conversations than the 131 072 slots; softflowd then evicts on every new
flow and drops packets at any replay rate (--packets 1000000 shows it).
"""

import argparse
import collections
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import SOFTFLOWD, WORK_DIR, ToolFailed, generated_capture, table_size_for

SOFTFLOWCTL = "/usr/sbin/softflowctl"
TCPREPLAY = shutil.which("tcpreplay")
LIVE_DIR = WORK_DIR / "live"
# The capture's 802.1ad frames reach 1522 bytes; a veth drops frames longer than its
# MTU + 18, so 1500 would lose them before any tool saw them.
VETH_MTU = 1600
READY_TIMEOUT_S = 20.0
SETTLE_S = 0.5           # after a tool reports ready, before the first packet
DRAIN_QUIET_S = 0.5      # a tool whose CPU time stands still this long has read everything
DRAIN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0    # flowprobe may spend up to 5 s handing its last exports over
IDLE_RSS_WAIT_S = 3.0
RSS_TARGET_MB = 14      # issue #18, as footprint_bench.py
CPU_TARGET_RATIO = 0.2  # issue #18: live <= 0.2x softflowd per packet, net of idle
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# A UDP socket bound inside the namespace that nobody reads: the tools' exports stay on
# the namespace's loopback, and what overflows its buffer the kernel drops (as bench.py).
SINK_SOURCE = """\
import socket, sys
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
print(sink.getsockname()[1], flush=True)
sys.stdin.read()
"""

Replay = collections.namedtuple("Replay", "sent failed seconds pps")
RunResult = collections.namedtuple(
    "RunResult", "cpu_s held_s peak_rss_kb replay kernel_drops counts")


def run_checked(command, **kwargs):
    completed = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if completed.returncode != 0:
        raise ToolFailed(f"{shlex.join(command)} exited {completed.returncode}: "
                         f"{completed.stderr.strip()}")
    return completed.stdout


class Testbed:
    """A namespace holding the receiving end of a veth pair; the sending end stays in
    this namespace for tcpreplay. Names carry this process's id, and only they are
    removed at the end."""

    def __init__(self):
        pid = os.getpid()
        self.namespace = f"fpbench-{pid}"
        self.outside, self.inside = f"fpbo{pid}", f"fpbi{pid}"   # at most 15 bytes
        self.sink = None
        self.sink_port = None

    def __enter__(self):
        run_checked(["ip", "netns", "add", self.namespace])
        try:
            run_checked(["ip", "link", "add", self.outside, "type", "veth",
                         "peer", "name", self.inside, "netns", self.namespace])
            # IPv6 off on both ends before they come up: otherwise the kernel's own router
            # solicitations and MLD reports join the replayed packets.
            self._disable_ipv6(self.outside, inside=False)
            self._disable_ipv6(self.inside, inside=True)
            run_checked(["ip", "link", "set", self.outside, "mtu", str(VETH_MTU), "up"])
            run_checked(["ip", "-n", self.namespace, "link", "set", self.inside,
                         "mtu", str(VETH_MTU), "up"])
            run_checked(["ip", "-n", self.namespace, "link", "set", "lo", "up"])
            self.sink = subprocess.Popen(self.exec([sys.executable, "-c", SINK_SOURCE]),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
            self.sink_port = int(self.sink.stdout.readline())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _disable_ipv6(self, device, inside):
        if not Path("/proc/sys/net/ipv6").exists():
            return
        command = ["sysctl", "-q", "-w", f"net.ipv6.conf.{device}.disable_ipv6=1"]
        run_checked(self.exec(command) if inside else command)

    def __exit__(self, *exc):
        if self.sink:
            self.sink.stdin.close()
            try:
                self.sink.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.sink.kill()
                self.sink.wait()
        subprocess.run(["ip", "link", "del", self.outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)

    def exec(self, command):
        # `ip netns exec` execs the command without forking: the child's pid, and so its
        # wait4 figures and /proc entries, are the tool's own.
        return ["ip", "netns", "exec", self.namespace] + command

    def kernel_drops(self):
        """Packets lost before any capture: the per-CPU input backlogs (all of them, so
        another host's traffic would show too) and the sending veth's transmit drops."""
        backlog = 0
        for line in Path("/proc/net/softnet_stat").read_text().splitlines():
            backlog += int(line.split()[1], 16)
        tx_dropped = int(Path(f"/sys/class/net/{self.outside}/statistics/tx_dropped")
                         .read_text())
        return backlog + tx_dropped


def replay(testbed, pcap, pps):
    pace = ["--topspeed"] if pps == 0 else [f"--pps={pps}"]
    # -K loads the file into memory first, so reading the disk never paces the replay.
    command = [TCPREPLAY, "-i", testbed.outside, "-K"] + pace + [str(pcap)]
    text = run_checked(command)

    def figure(pattern, kind=int):
        found = re.search(pattern, text)
        if not found:
            raise ToolFailed(f"tcpreplay printed no {pattern!r}:\n{text}")
        return kind(found.group(1))

    return Replay(sent=figure(r"Successful packets:\s+(\d+)"),
                  failed=figure(r"Failed packets:\s+(\d+)"),
                  seconds=figure(r"sent in ([\d.]+) seconds", float),
                  pps=figure(r"([\d.]+) pps", float))


def replay_command(testbed, pcap, pps):
    pace = "--topspeed" if pps == 0 else f"--pps={pps}"
    return f"tcpreplay -i {testbed.outside} -K {pace} {pcap}"


def process_cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])   # utime, stime


def process_memory_kb(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


class Daemon:
    """A tool running in the namespace until stopped its own graceful way."""

    name = ""

    def __init__(self, testbed, directory, max_flows):
        self.testbed, self.max_flows = testbed, max_flows
        self.stdout_path = directory / f"{self.name}.stdout"
        self.stderr_path = directory / f"{self.name}.stderr"
        self.process = None

    def command(self):
        raise NotImplementedError

    def ready(self):
        raise NotImplementedError

    def counts(self):
        raise NotImplementedError

    def request_stop(self):
        raise NotImplementedError

    def exited_well(self, returncode):
        return returncode == 0

    def start(self):
        command = self.testbed.exec(self.command())
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            try:
                self.process = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                                stdin=subprocess.DEVNULL)
            except OSError as e:
                raise ToolFailed(f"{command[0]}: {e}") from e
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready():
            if self.process.poll() is not None:
                raise ToolFailed(f"{shlex.join(command)} exited {self.process.returncode} "
                                 f"before it was ready:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ToolFailed(f"{self.name} not ready after {READY_TIMEOUT_S:.0f} s:\n"
                                 f"{self.stderr_tail()}")
            time.sleep(0.1)
        return time.monotonic()

    def stop(self):
        """CPU seconds of the whole process life, from wait4."""
        self.request_stop()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.kill()
                raise ToolFailed(f"{self.name} still running {STOP_TIMEOUT_S:.0f} s after "
                                 f"it was asked to stop:\n{self.stderr_tail()}")
            time.sleep(0.05)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        if not self.exited_well(self.process.returncode):
            raise ToolFailed(f"{shlex.join(self.command())} exited "
                             f"{self.process.returncode}:\n{self.stderr_tail()}")
        return usage.ru_utime + usage.ru_stime

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def wait_drained(self):
        """Until the tool's CPU time stands still: it has read what the kernel held."""
        pid = self.process.pid
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        last, quiet_since = process_cpu_ticks(pid), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now_ticks = process_cpu_ticks(pid)
            if now_ticks != last:
                last, quiet_since = now_ticks, time.monotonic()
            elif time.monotonic() - quiet_since >= DRAIN_QUIET_S:
                return
        raise ToolFailed(f"{self.name} still busy {DRAIN_TIMEOUT_S:.0f} s after the replay")

    def stderr_tail(self):
        return Path(self.stderr_path).read_text(errors="replace")[-2000:]


class Flowprobe(Daemon):
    name = "flowprobe"

    def __init__(self, testbed, directory, max_flows, python):
        super().__init__(testbed, directory, max_flows)
        self.python = python
        self.config_path = directory / "flowprobe.config"
        self.socket_path = directory / "control.sock"
        table = f"\toption max_flows '{max_flows}'\n" if max_flows else ""
        self.config_path.write_text(
            "config flowprobe 'main'\n"
            "\toption enabled '1'\n"
            f"\tlist interface '{testbed.inside}'\n"
            "\toption direction 'in'\n"
            f"\toption control_socket '{self.socket_path}'\n"
            f"{table}"
            "config collector 'sink'\n"
            "\toption protocol 'ipfix'\n"
            "\toption host '127.0.0.1'\n"
            f"\toption port '{testbed.sink_port}'\n")

    def command(self):
        return [self.python, "-m", "flowprobe", "run", "--config", str(self.config_path),
                "--no-ubus"]

    def status(self):
        completed = subprocess.run(
            [self.python, "-m", "flowprobe", "status", "--socket", str(self.socket_path),
             "--json"], capture_output=True, text=True, timeout=10)
        if completed.returncode != 0:
            return None
        return json.loads(completed.stdout)

    def ready(self):
        status = self.socket_path.exists() and self.status()
        return bool(status and status["interfaces"]
                    and all(i["up"] for i in status["interfaces"]))

    def counts(self):
        status = self.status()
        if status is None:
            raise ToolFailed(f"flowprobe status failed:\n{self.stderr_tail()}")
        interface = status["interfaces"][0]
        meter = status["meter"]
        return {"received": interface["pcap_received"], "dropped": interface["pcap_dropped"],
                "if_dropped": interface["pcap_if_dropped"],
                "read": interface["packets_read"], "metered": meter["packets_metered"],
                "octets": meter["octets_metered"],
                "ignored": sum(v for k, v in meter.items() if k.startswith("dropped_")),
                "memory_bytes": meter["memory_bytes"], "max_flows": meter["max_flows"]}

    def request_stop(self):
        os.kill(self.process.pid, signal.SIGTERM)

    def stopped_line(self):
        """The daemon's last word: what it read and metered over its whole life."""
        text = Path(self.stderr_path).read_text(errors="replace")
        found = re.findall(r"stopped: (\d+) packets read, (\d+) metered", text)
        return tuple(int(n) for n in found[-1]) if found else None


class Softflowd(Daemon):
    """softflowd with a control socket, unlike bench.py's `-c none`: with -d, softflowd
    1.1.0 installs no SIGTERM handler (it does so only when it daemonises), so SIGTERM
    kills it without expiring or exporting anything. `softflowctl shutdown` is its
    graceful stop, and `softflowctl statistics` gives libpcap's counters."""

    name = "softflowd"

    def __init__(self, testbed, directory, max_flows):
        super().__init__(testbed, directory, max_flows)
        self.control_path = directory / "softflowd.ctl"

    def command(self):
        table = ["-m", str(self.max_flows)] if self.max_flows else []
        return [SOFTFLOWD, "-i", self.testbed.inside, "-d", "-v", "9"] + table + [
            "-n", f"127.0.0.1:{self.testbed.sink_port}", "-c", str(self.control_path)]

    def control(self, word):
        return subprocess.run([SOFTFLOWCTL, "-c", str(self.control_path), word],
                              capture_output=True, text=True, timeout=10)

    def ready(self):
        return self.control_path.exists() and self.control("statistics").returncode == 0

    def counts(self):
        completed = self.control("statistics")
        if completed.returncode != 0:
            raise ToolFailed(f"softflowctl statistics failed: {completed.stderr.strip()}")

        def figure(label):
            found = re.search(re.escape(label) + r":\s*(\d+)", completed.stdout)
            if not found:
                raise ToolFailed(f"softflowctl statistics lacks {label!r}:\n"
                                 f"{completed.stdout}")
            return int(found.group(1))

        processed, ignored = figure("Packets processed"), figure("Ignored packets")
        return {"received": figure("Packets received by libpcap"),
                "dropped": figure("Packets dropped by libpcap"),
                "if_dropped": figure("Packets dropped by interface"),
                "read": processed + ignored, "metered": processed, "ignored": ignored}

    def request_stop(self):
        completed = self.control("shutdown")
        if completed.returncode != 0:
            raise ToolFailed(f"softflowctl shutdown failed: {completed.stderr.strip()}")

    def exited_well(self, returncode):
        # softflowd 1.1.0 returns the last poll() result, 1, after a shutdown asked for
        # on its control socket; its log says whether the shutdown was the graceful one.
        return returncode in (0, 1) and "Shutting down on user request" in self.stderr_tail()


def metered_run(daemon, testbed, pcap, pps, hold_s=None):
    """One process life: start, replay (or stay idle for hold_s), count, stop."""
    ready_at = daemon.start()
    try:
        time.sleep(SETTLE_S)
        drops_before = testbed.kernel_drops()
        replayed = None
        if hold_s is None:
            replayed = replay(testbed, pcap, pps)
            daemon.wait_drained()
        else:
            time.sleep(max(0.0, hold_s - SETTLE_S))
        kernel_drops = testbed.kernel_drops() - drops_before
        counts = daemon.counts()
        peak_rss_kb = process_memory_kb(daemon.process.pid, "VmHWM")
        held_s = time.monotonic() - ready_at
        cpu_s = daemon.stop()
    except BaseException:
        daemon.kill()
        raise
    if isinstance(daemon, Flowprobe):
        counts["stopped"] = daemon.stopped_line()
    return RunResult(cpu_s, held_s, peak_rss_kb, replayed, kernel_drops, counts)


def idle_rss(testbed, directory, python):
    """VmRSS of each tool with its default table, 3 s after it is ready on an idle link."""
    found = {}
    for daemon in (Flowprobe(testbed, directory, None, python),
                   Softflowd(testbed, directory, None)):
        daemon.start()
        try:
            time.sleep(IDLE_RSS_WAIT_S)
            rss_kb = process_memory_kb(daemon.process.pid, "VmRSS")
            counts = daemon.counts()
            daemon.stop()
        except BaseException:
            daemon.kill()
            raise
        found[daemon.name] = (rss_kb, counts)
    for label, code in (("interpreter", "pass"),
                        ("imports", "import flowprobe.cli, flowprobe.daemon")):
        code += ("\nimport re\nprint(re.search(r'VmRSS:\\s+(\\d+)', "
                 "open('/proc/self/status').read()).group(1))")
        found[label] = int(run_checked([python, "-c", code]))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=300_000)
    parser.add_argument("--flows", type=int, default=60_000,
                        help="directional flows alive at once in the capture")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pps", type=int, default=0,
                        help="replay rate in packets per second; 0 (default): --topspeed")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that has flowprobe installed")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("live bench: skipped, it needs root (network namespaces, veth, tcpreplay)",
              file=sys.stderr)
        return 0
    missing = [tool for tool in (SOFTFLOWD, SOFTFLOWCTL, "tcpreplay", "ip")
               if not shutil.which(tool)]
    if missing:
        print(f"live bench: {', '.join(missing)} not found "
              f"(apt-get install softflowd tcpreplay iproute2)", file=sys.stderr)
        return 1

    pcap, truth_path = generated_capture(args.packets, args.flows)
    truth = json.loads(truth_path.read_text())["summary"]
    max_flows = table_size_for(args.flows)
    LIVE_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs = {"flowprobe": [], "softflowd": []}
    idle = {"flowprobe": [], "softflowd": []}
    # Control sockets live in a short /tmp directory: sun_path holds 108 bytes.
    with tempfile.TemporaryDirectory(prefix="fpbench-") as sockets, Testbed() as testbed:
        directory = Path(sockets)
        tools = {
            "flowprobe": lambda: Flowprobe(testbed, directory, max_flows, args.python),
            "softflowd": lambda: Softflowd(testbed, directory, max_flows),
        }
        try:
            for run in range(args.runs):
                for name, tool in tools.items():
                    runs[name].append(metered_run(tool(), testbed, pcap, args.pps))
                    result = runs[name][-1]
                    print(f"run {run + 1}/{args.runs} {name}: {result.cpu_s:.2f} CPU s, "
                          f"{result.replay.pps:.0f} pps sent, {result.counts['dropped']} "
                          f"dropped by libpcap", file=sys.stderr)
                for name, tool in tools.items():
                    idle[name].append(metered_run(tool(), testbed, pcap, args.pps,
                                                  hold_s=runs[name][-1].held_s))
                    print(f"run {run + 1}/{args.runs} {name} idle: "
                          f"{idle[name][-1].cpu_s:.2f} CPU s", file=sys.stderr)
            resident = idle_rss(testbed, directory, args.python)
        except ToolFailed as e:
            print(f"live bench: {e}", file=sys.stderr)
            return 1
        finally:
            for name in tools:   # the last outputs, kept for a look after the report
                for suffix in ("stdout", "stderr"):
                    kept = directory / f"{name}.{suffix}"
                    if kept.exists():
                        shutil.copy(kept, LIVE_DIR / kept.name)
        commands = {name: tool().command() for name, tool in tools.items()}
        print_report(args, pcap, truth, max_flows, runs, idle, resident, testbed, commands,
                     time.monotonic() - started)
    return 0


def median(values):
    return statistics.median(values)


def print_report(args, pcap, truth, max_flows, runs, idle, resident, testbed, commands,
                 elapsed_s):
    packets = truth["packets"]
    pace = "topspeed" if args.pps == 0 else f"{args.pps} pps"
    print(f"capture: {packets} packets, {truth['octets']} IP octets, {truth['flows']} flows "
          f"({truth['conversations']} conversations), {truth['file_bytes'] / 1e6:.0f} MB; "
          f"replayed at {pace} into a veth, each tool capturing on the other end")
    print(f"table size {max_flows} for both; median of {args.runs} interleaved runs; "
          f"idle runs last as long as the loaded ones\n")

    header = (f"{'tool':<10} {'sent pps':>9} {'CPU s':>6} {'idle s':>6} {'s/Mpkt':>7} "
              f"{'net s/Mpkt':>10} {'net s/Mpkt read':>15} {'peak RSS MB':>11}")
    print(header)
    print("-" * len(header))
    per_million, net_per_million, net_per_million_read = {}, {}, {}
    for name in runs:
        cpu = median([r.cpu_s for r in runs[name]])
        idle_cpu = median([r.cpu_s for r in idle[name]])
        per_million[name] = cpu / packets * 1e6
        net_per_million[name] = (cpu - idle_cpu) / packets * 1e6
        # A tool that drops does less work: per packet it read, it is not rewarded for that.
        net_per_million_read[name] = median(
            [(r.cpu_s - idle_cpu) / r.counts["read"] * 1e6 for r in runs[name]])
        print(f"{name:<10} {median([r.replay.pps for r in runs[name]]):>9.0f} {cpu:>6.2f} "
              f"{idle_cpu:>6.2f} {per_million[name]:>7.2f} {net_per_million[name]:>10.2f} "
              f"{net_per_million_read[name]:>15.2f} "
              f"{median([r.peak_rss_kb for r in runs[name]]) / 1024:>11.1f}")
    print("s/Mpkt: CPU seconds of the whole process life per million packets sent; net: less "
          "the idle run's CPU (start, tables, ticks, stop); read: per million packets the "
          "tool read")

    def ratio(figures):
        return figures["flowprobe"] / figures["softflowd"]

    verdict = "met" if ratio(net_per_million_read) <= CPU_TARGET_RATIO else "NOT met"
    print(f"\nflowprobe / softflowd CPU per packet: {ratio(per_million):.2f}x whole life, "
          f"{ratio(net_per_million):.2f}x net, {ratio(net_per_million_read):.2f}x net per "
          f"packet read (target <= {CPU_TARGET_RATIO:.2f} on the last: {verdict})")

    print("\ndrops, per run (sent by tcpreplay; kernel: backlog and veth drops before any "
          "capture; received/dropped/if dropped: libpcap's counters; read: packets the tool "
          "took from libpcap; metered: of those, counted in a flow; unread: received, not "
          "dropped, not read when the counts were taken)")
    header = (f"{'run':>3} {'tool':<10} {'sent':>8} {'failed':>6} {'kernel':>6} "
              f"{'received':>9} {'dropped':>8} {'if drop':>7} {'read':>9} {'metered':>9} "
              f"{'unread':>7}")
    print(header)
    print("-" * len(header))
    for run in range(args.runs):
        for name in runs:
            r = runs[name][run]
            c = r.counts
            unread = c["received"] - c["dropped"] - c["read"]
            print(f"{run + 1:>3} {name:<10} {r.replay.sent:>8} {r.replay.failed:>6} "
                  f"{r.kernel_drops:>6} {c['received']:>9} {c['dropped']:>8} "
                  f"{c['if_dropped']:>7} {c['read']:>9} {c['metered']:>9} {unread:>7}")
    flowprobe_drops = [r.counts["dropped"] + r.counts["if_dropped"] for r in runs["flowprobe"]]
    softflowd_drops = [r.counts["dropped"] + r.counts["if_dropped"] for r in runs["softflowd"]]
    unmatched = [run + 1 for run in range(args.runs)
                 if flowprobe_drops[run] and not softflowd_drops[run]]
    print("drops target (none where softflowd has none): "
          + ("met" if not unmatched else f"NOT met in run(s) {unmatched}"))
    exact = [r for r in runs["flowprobe"]
             if r.counts["metered"] == packets and r.counts["octets"] == truth["octets"]]
    print(f"flowprobe metered every replayed packet and octet in {len(exact)} of {args.runs} "
          f"runs (status before the stop: packets_metered, octets_metered against the "
          f"generator's truth); its stop line: "
          + ", ".join(f"{s[0]} read, {s[1]} metered" if s else "missing"
                      for s in (r.counts["stopped"] for r in runs["flowprobe"])))
    if any(r.counts["received"] - r.counts["dropped"] - r.counts["read"]
           for r in runs["softflowd"]):
        print("softflowd's unread packets wait in the kernel's last, partly filled ring "
              "block: it sets a pcap timeout of 0, which libpcap's TPACKET_V3 turns into a "
              "block timeout of UINT_MAX ms, so a block is handed over only when full (a "
              "delay under traffic, not a loss; at a stop they are never read)")
    ignored = median([r.counts["ignored"] for r in runs["softflowd"]])
    if ignored:
        print(f"softflowd ignored {ignored:.0f} packets it could not decode (802.1ad frames)")

    rss_kb, counts = resident["flowprobe"]
    verdict = "met" if rss_kb / 1024 <= RSS_TARGET_MB else "NOT met"
    print(f"\nidle RSS, default table, {IDLE_RSS_WAIT_S:.0f} s after start on an idle veth: "
          f"flowprobe {rss_kb / 1024:.1f} MB (max_flows {counts['max_flows']}, tables "
          f"{counts['memory_bytes'] / 2**20:.1f} MiB; target <= {RSS_TARGET_MB} MB: "
          f"{verdict}); softflowd {resident['softflowd'][0] / 1024:.1f} MB (its default "
          f"table, 8192 flows, grows per flow)")
    print(f"flowprobe's share: the interpreter alone {resident['interpreter'] / 1024:.1f} MB, "
          f"with the daemon's modules imported {resident['imports'] / 1024:.1f} MB, the rest "
          f"tables, capture ring mappings touched and the running daemon")

    print(f"\ncommands (inside the namespace, {testbed.namespace}; the veth is "
          f"{testbed.outside} -> {testbed.inside}, MTU {VETH_MTU}, IPv6 off; the collector "
          f"is a UDP socket on 127.0.0.1:{testbed.sink_port} there that nobody reads):")
    print(f"  {replay_command(testbed, pcap, args.pps)}")
    for command in commands.values():
        print(f"  ip netns exec {testbed.namespace} {shlex.join(command)}")
    print(f"  stop: flowprobe SIGTERM, counts from `flowprobe status --json`; softflowd "
          f"`{SOFTFLOWCTL} -c CTL shutdown`, counts from `softflowctl statistics`")
    print(f"  flowprobe config: the file written next to its control socket, max_flows "
          f"{max_flows}; idle RSS run without max_flows; softflowd idle RSS run without -m")
    print(f"bench took {elapsed_s:.0f} s; the last daemons' outputs (the idle RSS runs) in "
          f"{LIVE_DIR}")


if __name__ == "__main__":
    sys.exit(main())
