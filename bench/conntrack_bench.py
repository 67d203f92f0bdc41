#!/usr/bin/env python3
"""The conntrack source against packet capture, on the same forwarded traffic.

A report, not a test: it exits 0 whatever the figures are, non-zero only when a tool
fails (without root it says so and exits 0: namespaces need root).

    python3 bench/conntrack_bench.py [--connections N] [--megabytes M] [--runs R]

A client, a router doing nftables masquerade and a server in namespaces of this
process's own (tests/netlab.py, tests/conntrack_churn.py). The daemon runs on the router
with `source conntrack`, then with `source capture` (both router interfaces, direction
in: every forwarded packet metered once), runs interleaved, each exporting IPFIX to a
socket nobody reads. Per run two loads: N short connections, half TCP (handshake, 1000
bytes, teardown), half UDP (one datagram), as a router full of DNS, NTP and scans sees
them; then one TCP download of M megabytes. The figure is the daemon's own CPU
(schedstat, idle cost over the same time subtracted) from the load's start until the
source has exported a record of every connection (conntrack: when the kernel has
destroyed them; capture: at the idle timeout), per 1000 connections and per GB
forwarded; medians over the runs, and the ratio conntrack / capture. Meanwhile a helper
dumps the kernel's table every 0.3 s: a dump reaps expired connections, as the kernel's
own collector does at its pace (seconds to a minute later), so the DESTROYs come within
the window; the helper's CPU is not the daemon's. Also, once, a plain-Python ctnetlink
reader (struct parsing, no table) subscribed to the same DESTROY events, alone on the
same load: what decoding in Python would cost, against the C source's whole work.

Not counted, for either side: the kernel's own work outside the daemon (conntrack runs
anyway for NAT; AF_PACKET copies for capture happen in softirq). Counted for conntrack:
copying each DESTROY to the daemon, and its periodic dumps (30 s) when one falls in
the window.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
import conntrack_churn as churn  # noqa: E402
from netlab import RouterLab, missing  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BULK_PORT = 9001
BULK_SERVER = """
import socket
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('0.0.0.0', %d)); t.listen(8)
block = b'z' * (1 << 20)
while True:
    c, _ = t.accept(); n = int(c.recv(64))
    for _ in range(n): c.sendall(block)
    c.close()
""" % BULK_PORT
BULK_CLIENT = """
import socket, sys
t = socket.create_connection((sys.argv[1], %d))
t.sendall(sys.argv[2].encode())
while t.recv(1 << 20): pass
""" % BULK_PORT
SINK = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 4739))
time.sleep(1e9)
"""
# The alternative to decoding in C: every DESTROY event parsed with struct
# (nlmsghdr, nfgenmsg, nested attributes), as pyroute2 or hand-written code would.
PYTHON_READER = r"""
import signal, socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)   # NETLINK_NETFILTER
s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)                # SO_RCVBUFFORCE
s.bind((0, 4))                                              # DESTROY, as the source
def attrs(data, start, end):
    out = {}
    while start + 4 <= end:
        length, kind = struct.unpack_from('=HH', data, start)
        if length < 4: break
        value = data[start + 4:start + length]
        out[kind & 0x3fff] = attrs(value, 0, len(value)) if kind & 0x8000 else value
        start += (length + 3) & ~3
    return out
events = 0
signal.signal(signal.SIGTERM, lambda *a: (print(events), sys.exit(0)))
while True:
    data = s.recv(65536)
    offset = 0
    while offset + 16 <= len(data):
        length, kind, flags, seq, pid = struct.unpack_from('=IHHII', data, offset)
        if length < 16: break
        attrs(data, offset + 20, offset + length)
        events += 1
        offset += (length + 3) & ~3
"""


# Dumps the table again and again: a dump reaps the expired connections it walks.
REAPER = r"""
import socket, struct, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)   # NETLINK_NETFILTER
s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)                # SO_RCVBUFFORCE
s.bind((0, 0))
seq = 0
while True:
    seq += 1
    s.send(struct.pack("=IHHIIBBH", 20, (1 << 8) | 1, 0x301, seq, 0, 0, 0, 0))  # CT_GET dump
    done = False
    while not done:
        data = s.recv(1 << 20)
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind in (2, 3) or length < 16:   # NLMSG_ERROR, NLMSG_DONE
                done = True
                break
            offset += (length + 3) & ~3
    time.sleep(0.3)
"""


def cpu_seconds(pid):
    """Time on CPU, in ns resolution (schedstat), not the 10 ms of utime/stime."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def config_text(source, socket_path):
    lines = ["config flowprobe 'main'", "\toption enabled '1'", f"\toption source '{source}'",
             f"\toption control_socket '{socket_path}'", "\toption direction 'in'",
             "\tlist interface 'r-cli'", "\tlist interface 'r-srv'",
             "\toption idle_timeout '5'", "\toption conntrack_max_connections '65536'",
             "config collector 'sink'", "\toption protocol 'ipfix'",
             "\toption host '127.0.0.1'", "\toption port '4739'"]
    return "\n".join(lines) + "\n"


def status(socket_path):
    from flowprobe.control.client import call
    return call(socket_path, "status")


def wait_ready(socket_path, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(socket_path):
            time.sleep(1.0)   # captures opened and the first dump done
            return
        time.sleep(0.05)
    raise RuntimeError("the daemon did not come up")


def all_reported(source, socket_path, connections, timeout=90):
    """Waits until the source has exported a record of every connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        state = status(socket_path)
        if source == "conntrack" and state["conntrack"]["records"] >= connections:
            return
        if source == "capture" and state["meter"]["flows_active"] == 0:
            return
    print(f"  ({source}: not every connection reported within {timeout} s)", flush=True)


def measure(lab, source, args, work):
    """(CPU per 1000 connections, CPU per GB, python reader CPU per 1000 connections)."""
    sock = os.path.join(work, f"{source}.sock")
    config = Path(work) / f"{source}.conf"
    config.write_text(config_text(source, sock))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    daemon = lab.popen(lab.router, sys.executable, "-m", "flowprobe", "run", "--config",
                       str(config), "--no-ubus", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
    reaper = None
    try:
        wait_ready(sock)
        reaper = lab.popen(lab.router, sys.executable, "-c", REAPER)
        time.sleep(0.3)
        # idle cost over the time of the loaded phases, measured first
        idle_start = cpu_seconds(daemon.pid)
        time.sleep(3.0)
        idle_rate = (cpu_seconds(daemon.pid) - idle_start) / 3.0

        def loaded(run, units):
            before, started = cpu_seconds(daemon.pid), time.monotonic()
            run()
            elapsed = time.monotonic() - started
            used = cpu_seconds(daemon.pid) - before - idle_rate * elapsed
            return max(used, 0.0) / units

        def short_connections():
            load = churn.Churn(lab, workers=1, per_worker=args.connections // 2)
            done = load.wait(timeout=600)
            all_reported(source, sock, len(done))

        def download():
            lab.run(lab.client, sys.executable, "-c", BULK_CLIENT, lab.server4,
                    str(args.megabytes), timeout=600)
            time.sleep(1.5)   # records still on their way

        per_connection = loaded(short_connections, args.connections / 1000)
        per_gb = loaded(download, args.megabytes / 1024)
        return per_connection, per_gb
    finally:
        for process in (reaper, daemon):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)


def measure_python_reader(lab, args):
    """CPU per 1000 connections of the plain-Python reader, on its own (beside
    the daemon it would take the daemon's CPU on a small machine)."""
    reader = lab.popen(lab.router, sys.executable, "-c", PYTHON_READER,
                       stdout=subprocess.PIPE, text=True)
    reaper = lab.popen(lab.router, sys.executable, "-c", REAPER)
    try:
        time.sleep(0.5)
        before = cpu_seconds(reader.pid)
        churn.Churn(lab, workers=1, per_worker=args.connections // 2).wait(timeout=600)
        used, deadline = -1.0, time.monotonic() + 90
        while time.monotonic() < deadline:   # until it has read the last DESTROY
            time.sleep(1.0)
            now = cpu_seconds(reader.pid) - before
            if now == used:
                break
            used = now
        return used / (args.connections / 1000)
    finally:
        for process in (reaper, reader):
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20000,
                        help="short connections per run, half TCP, half UDP")
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    reason = missing()
    if reason:
        print(f"conntrack bench skipped: {reason}")
        return 0
    results = {"conntrack": [], "capture": []}
    with RouterLab() as lab, tempfile.TemporaryDirectory(prefix="ct-bench-") as work:
        reason = churn.prepare(lab)
        if reason:
            print(f"conntrack bench skipped: {reason}")
            return 0
        lab.popen(lab.server, sys.executable, "-c", BULK_SERVER)
        lab.popen(lab.router, sys.executable, "-c", SINK)
        time.sleep(0.5)
        for run in range(args.runs):
            for source in ("conntrack", "capture"):
                figures = measure(lab, source, args, work)
                results[source].append(figures)
                print(f"run {run + 1} {source:9}: daemon {figures[0]:.4f} CPU-s / 1000 "
                      f"connections, {figures[1]:.4f} CPU-s / GB", flush=True)
        reader = measure_python_reader(lab, args)
    median = {source: [statistics.median(r[i] for r in runs) for i in (0, 1)]
              for source, runs in results.items()}
    ct, cap = median["conntrack"], median["capture"]
    print(f"\nmedians over {args.runs} runs ({args.connections} short connections, half UDP, "
          f"{args.megabytes} MB forwarded per run), the daemon's own CPU:")
    print(f"  per 1000 connections: conntrack {ct[0]:.4f} s, capture {cap[0]:.4f} s, "
          f"ratio {ct[0] / cap[0] if cap[0] else float('nan'):.3f}")
    print(f"  per GB forwarded:     conntrack {ct[1]:.4f} s, capture {cap[1]:.4f} s, "
          f"ratio {ct[1] / cap[1] if cap[1] else float('nan'):.3f}")
    print(f"  decoding the same events in Python (struct, no table): {reader:.4f} s per 1000 "
          f"connections, {reader / ct[0] if ct[0] else float('nan'):.1f}x the C source's "
          "whole work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
