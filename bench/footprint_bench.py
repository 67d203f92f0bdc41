#!/usr/bin/env python3
"""What flowprobe costs a router before any traffic: start-up instructions and
idle memory, beside a bare python3 and softflowd measured in the same run.

    python3 bench/footprint_bench.py [--python PATH] [--settle SECONDS]
    PYTHONPATH=other/src python3 bench/footprint_bench.py     another checkout

Start-up, counted by valgrind's callgrind (deterministic; the environment is
fixed, as procd's: no LANG, so gettext looks for no catalogue):
  - `python3 -c pass`, the floor every Python program pays;
  - `flowprobe --version`, and `flowprobe read` of an empty capture;
  - the daemon up to ready: `flowprobe run` on a veth in a namespace of its
    own, dumped (callgrind_control) once it answers status with its
    interface up (that status request included).
Bytecode is compiled first (as OpenWrt ships .pyc): compiling is not start-up.

Idle memory: flowprobe's daemon (the default table, an IPFIX collector) and
softflowd (its default table) on the same veth, one after the other, each
read from /proc once it settled: VmRSS, Pss (smaps_rollup), anonymous
memory, and flowprobe's mappings by kind (smaps): the flow table (reserved
whole at start, resident only as flows use it: its resident part is what
status reports, meter.resident_bytes), the capture ring (the packet
socket's mapping), the interpreter (python binary or libpython), other
shared libraries and extensions, and the heap (Python's objects and the
imported modules).  The steps to it, each an idle process of its own: the
same python3 doing nothing, and python3 with the daemon's modules imported
and its meter built (`flowprobe run` of a config with `enabled '0'`: the
daemon's start without a capture, then a sleep).
A report: exit 0 whatever the figures, non-zero only when a tool fails.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live_bench  # noqa: E402
from bench import SOFTFLOWD, ToolFailed  # noqa: E402
from live_bench import Flowprobe, Softflowd, Testbed  # noqa: E402

COLLECTED = re.compile(r"Collected : (\d+)")
SUMMARY = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
if os.environ.get("PYTHONPATH"):   # another checkout measured: PYTHONPATH=that/src
    CLEAN_ENV["PYTHONPATH"] = os.environ["PYTHONPATH"]
STARTUP_TARGET = 100e6
RSS_TARGET_KB = 14 * 1024
PCAP_HEADER = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")


def callgrind(command, scratch):
    done = subprocess.run(["valgrind", "--tool=callgrind",
                           f"--callgrind-out-file={scratch}/out.%p", *command],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=CLEAN_ENV)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or not found:
        raise ToolFailed(f"{command} failed under callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def compile_bytecode(python):
    """The package's .pyc written, whatever PYTHONDONTWRITEBYTECODE says."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([python, "-c", "import compileall, flowprobe, os; compileall.compile_dir("
                    "os.path.dirname(flowprobe.__file__), quiet=1)"], check=True, env=env)


class ScriptFlowprobe(Flowprobe):
    """The daemon as the init script starts it: the console script, not -m."""

    def __init__(self, testbed, directory, max_flows, python, wrapper=()):
        super().__init__(testbed, directory, max_flows, python)
        self.wrapper = list(wrapper)

    def command(self):
        script = str(Path(self.python).parent / "flowprobe")
        return self.wrapper + [self.python, script, "run", "--config", str(self.config_path),
                               "--no-ubus"]


def daemon_until_ready(testbed, directory, python):
    """Instructions of `flowprobe run` from exec to ready (callgrind dumped then)."""
    out = directory / "daemon.callgrind"
    live_bench.READY_TIMEOUT_S = 180.0   # the daemon runs some 50x slower under valgrind
    daemon = ScriptFlowprobe(testbed, directory, None, python, wrapper=[
        "env", "-i", *(f"{k}={v}" for k, v in CLEAN_ENV.items()), "valgrind", "--tool=callgrind",
        f"--callgrind-out-file={out}"])
    daemon.start()
    try:
        subprocess.run(["callgrind_control", "-d", str(daemon.process.pid)],
                       capture_output=True, text=True, timeout=60)
        dumps = sorted(directory.glob("daemon.callgrind*"))
        totals = [int(m.group(1)) for d in dumps if d.name != out.name
                  for m in [SUMMARY.search(d.read_text(errors="replace"))] if m]
    finally:
        daemon.request_stop()
        try:
            daemon.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
    if not totals:
        raise ToolFailed("callgrind_control wrote no dump of the daemon")
    return totals[0]


# ---- memory ----

def smaps_by_kind(pid, table_bytes):
    """kB resident by kind of mapping, from /proc/PID/smaps.  The flow table is
    anonymous memory like Python's heap: its share is the resident part the
    meter reports (table_bytes), the rest of the anonymous memory is the
    heap (Python's objects, the imported modules' code)."""
    kinds = {"flow table": 0, "capture ring": 0, "interpreter": 0, "shared libraries": 0,
             "heap and imports": 0}
    name, rss = None, 0

    def close():
        if name is None:
            return
        if name.startswith("socket:"):
            kinds["capture ring"] += rss
        elif "python" in os.path.basename(name):
            kinds["interpreter"] += rss
        elif name.startswith("/"):
            kinds["shared libraries"] += rss
        else:
            kinds["heap and imports"] += rss

    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(None, 5)
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            close()
            name, rss = (first[5] if len(first) > 5 else ""), 0
        elif first[0] == "Rss:":
            rss = int(first[1])
    close()
    table_kb = min(table_bytes // 1024, kinds["heap and imports"])
    kinds["flow table"] = table_kb
    kinds["heap and imports"] -= table_kb
    return kinds


def bare_python_idle(python, settle_s):
    """The same interpreter doing nothing: the floor under any Python daemon."""
    process = subprocess.Popen([python, "-c", "import time; time.sleep(60)"], env=CLEAN_ENV)
    try:
        time.sleep(settle_s)
        figures = rollup(process.pid)
        figures["kinds"] = smaps_by_kind(process.pid, 0)
    finally:
        process.kill()
        process.wait()
    return figures


def imports_idle(python, directory, settle_s):
    """python3 with the daemon's modules imported and its meter built, idle:
    `flowprobe run` of a config with enabled '0' returns once the daemon is
    built, before any capture opens."""
    config = directory / "disabled.config"
    config.write_text("config flowprobe 'main'\n\toption enabled '0'\n"
                      f"\toption control_socket '{directory / 'disabled.sock'}'\n"
                      "config collector 'sink'\n\toption protocol 'ipfix'\n"
                      "\toption host '127.0.0.1'\n\toption port '4739'\n")
    code = ("import sys, time\nfrom flowprobe.cli import main\n"
            f"main(['run', '--config', {str(config)!r}, '--no-ubus'])\ntime.sleep(60)")
    process = subprocess.Popen([python, "-c", code], env=CLEAN_ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle_s)
        if process.poll() is not None:
            raise ToolFailed("flowprobe run of a disabled config exited before it slept")
        figures = rollup(process.pid)
    finally:
        process.kill()
        process.wait()
    return figures


def rollup(pid):
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0])
    status = Path(f"/proc/{pid}/status").read_text()
    values["VmRSS"] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return values


def idle_memory(daemon, settle_s):
    daemon.start()
    try:
        time.sleep(settle_s)
        pid = daemon.process.pid
        figures = rollup(pid)
        if isinstance(daemon, Flowprobe):
            meter = daemon.status()["meter"]
            figures["table_bytes"] = meter["memory_bytes"]
            # before resident_bytes (another checkout): the table was written whole
            figures["resident_bytes"] = meter.get("resident_bytes", meter["memory_bytes"])
            figures["max_flows"] = meter["max_flows"]
            figures["kinds"] = smaps_by_kind(pid, figures["resident_bytes"])
    finally:
        daemon.request_stop()
        try:
            daemon.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    return figures


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args(argv)
    compile_bytecode(args.python)
    script = str(Path(args.python).parent / "flowprobe")
    print("footprint: start-up instructions (callgrind) and idle memory, one run")
    have_root = os.geteuid() == 0 and shutil.which("ip")
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        if shutil.which("valgrind"):
            empty = directory / "empty.pcap"
            empty.write_bytes(PCAP_HEADER)
            bare = callgrind([args.python, "-c", "pass"], scratch)
            counts = {"flowprobe --version": callgrind([args.python, script, "--version"],
                                                       scratch),
                      "flowprobe read EMPTY.pcap": callgrind([args.python, script, "read",
                                                              str(empty)], scratch)}
            if have_root and shutil.which("callgrind_control"):
                with Testbed() as testbed:
                    counts["flowprobe run, until ready"] = daemon_until_ready(
                        testbed, directory, args.python)
            print(f"  {'python3 -c pass':<30} {bare / 1e6:8.1f} M instructions  1.00x")
            for label, count in counts.items():
                print(f"  {label:<30} {count / 1e6:8.1f} M instructions  {count / bare:.2f}x"
                      f" bare python")
            read = counts["flowprobe read EMPTY.pcap"]
            print(f"  read of an empty capture: {read / 1e6:.1f} M "
                  f"(target <= {STARTUP_TARGET / 1e6:.0f} M: "
                  f"{'met' if read <= STARTUP_TARGET else 'NOT met'})")
        else:
            print("  start-up: valgrind not found (apt-get install valgrind): skipped")
        if not have_root:
            print("  idle memory: needs root for a veth in a namespace: skipped")
            return 0
        bare = bare_python_idle(args.python, args.settle)
        imported = imports_idle(args.python, directory, args.settle)
        with Testbed() as testbed:
            probe = idle_memory(ScriptFlowprobe(testbed, directory, None, args.python),
                                args.settle)
            peer = (idle_memory(Softflowd(testbed, directory, None), args.settle)
                    if Path(SOFTFLOWD).exists() else None)
    print(f"  idle daemon, default table ({probe['max_flows']} flows, "
          f"{mb(probe['table_bytes'] / 1024)} reserved, {mb(probe['resident_bytes'] / 1024)} "
          f"resident), an IPFIX collector, settled {args.settle:g} s:")
    for label, figures in (("flowprobe", probe), ("softflowd", peer)):
        if figures is None:
            print(f"  {label}: not installed")
            continue
        ratio = (f"  {figures['VmRSS'] / peer['VmRSS']:.2f}x softflowd" if peer else "")
        print(f"  {label:<10} VmRSS {mb(figures['VmRSS']):>9}  Pss {mb(figures['Pss']):>9}"
              f"  anonymous {mb(figures['Anonymous']):>9}{ratio}")
    print(f"  steps: python3 idle VmRSS {mb(bare['VmRSS'])} (anonymous "
          f"{mb(bare['Anonymous'])}); + the daemon's imports and meter, no capture: "
          f"{mb(imported['VmRSS'])} (anonymous {mb(imported['Anonymous'])}); + the capture "
          f"and the loop: {mb(probe['VmRSS'])}")
    print(f"    {'by kind':<18} {'flowprobe':>9} {'python3':>9}")
    for kind, kb in probe["kinds"].items():
        print(f"    {kind:<18} {mb(kb):>9} {mb(bare['kinds'][kind]):>9}")
    own = probe["VmRSS"] - bare["VmRSS"] - probe["kinds"]["flow table"] \
        - probe["kinds"]["capture ring"]
    print(f"  beyond python3, the table's resident part and the ring: {mb(own)}")
    print(f"  flowprobe idle RSS {mb(probe['VmRSS'])} (target <= {mb(RSS_TARGET_KB)}: "
          f"{'met' if probe['VmRSS'] <= RSS_TARGET_KB else 'NOT met'})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ToolFailed as e:
        print(f"footprint: {e}", file=sys.stderr)
        sys.exit(1)
