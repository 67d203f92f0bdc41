#!/usr/bin/env python3
"""The conntrack source against packet capture, on the same forwarded traffic.

A report, not a test: it exits 0 whatever the figures are, non-zero only when a tool
fails (without root it says so and exits 0: namespaces need root).

    python3 bench/conntrack_bench.py [--connections N] [--megabytes M] [--runs R]

A client, a router doing nftables masquerade and a server in namespaces of this
process's own (tests/netlab.py). The daemon runs on the router with `source conntrack`,
then with `source capture` (both router interfaces, direction in: every forwarded packet
metered once), runs interleaved, each exporting IPFIX to a socket nobody reads. Per run
two loads: N short TCP connections (setup, 1000 bytes, teardown), then one TCP download
of M megabytes. The figure is the daemon's own CPU (utime + stime from /proc, idle cost
over the same time subtracted) per 1000 connections and per GB forwarded; medians over
the runs, and the ratio conntrack / capture. Also a plain-Python ctnetlink reader
(struct parsing, no table) subscribed to the same events during the conntrack runs: what
decoding in Python would cost, against the C source's whole work.

Not counted, for either side: the kernel's own work (conntrack runs anyway for NAT;
AF_PACKET copies for capture happen in softirq, outside the daemon's CPU time).
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
from netlab import RouterLab, missing  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BURST_PORT, BULK_PORT = 9000, 9001
NAT_RULES = """
table inet bench_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "r-srv" masquerade
  }
}
"""
SERVER = """
import socket, sys, threading
def burst():
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(('0.0.0.0', %d)); t.listen(1024)
    while True:
        c, _ = t.accept(); c.sendall(b'y' * 1000); c.close()
def bulk():
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(('0.0.0.0', %d)); t.listen(8)
    block = b'z' * (1 << 20)
    while True:
        c, _ = t.accept(); n = int(c.recv(64))
        for _ in range(n): c.sendall(block)
        c.close()
threading.Thread(target=burst, daemon=True).start()
bulk()
""" % (BURST_PORT, BULK_PORT)
BURST_CLIENT = """
import socket, sys
for n in range(int(sys.argv[2])):
    t = socket.create_connection((sys.argv[1], %d))
    while t.recv(4096): pass
    t.close()
""" % BURST_PORT
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
# The alternative to decoding in C: every NEW and DESTROY event parsed with struct
# (nlmsghdr, nfgenmsg, nested attributes), as pyroute2 or hand-written code would.
PYTHON_READER = r"""
import signal, socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)   # NETLINK_NETFILTER
s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)                # SO_RCVBUFFORCE
s.bind((0, 1 | 4))                                          # NEW | DESTROY, as the source
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


def cpu_seconds(pid):
    """Time on CPU, in ns resolution (schedstat), not the 10 ms of utime/stime."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def config_text(source, socket_path):
    lines = ["config flowprobe 'main'", "\toption enabled '1'", f"\toption source '{source}'",
             f"\toption control_socket '{socket_path}'", "\toption direction 'in'",
             "\tlist interface 'r-cli'", "\tlist interface 'r-srv'",
             "\toption conntrack_max_connections '65536'",
             "config collector 'sink'", "\toption protocol 'ipfix'",
             "\toption host '127.0.0.1'", "\toption port '4739'"]
    return "\n".join(lines) + "\n"


def wait_ready(socket_path, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(socket_path):
            time.sleep(1.0)   # captures opened and the first dump done
            return
        time.sleep(0.05)
    raise RuntimeError("the daemon did not come up")


def measure(lab, source, args, work):
    """(CPU per 1000 connections, CPU per GB, python reader CPU per 1000 connections)."""
    sock = os.path.join(work, f"{source}.sock")
    config = Path(work) / f"{source}.conf"
    config.write_text(config_text(source, sock))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    daemon = lab.popen(lab.router, sys.executable, "-m", "flowprobe", "run", "--config",
                       str(config), "--no-ubus", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
    reader = None
    try:
        wait_ready(sock)
        if source == "conntrack":
            reader = lab.popen(lab.router, sys.executable, "-c", PYTHON_READER,
                               stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
        # idle cost over the time of the loaded phases, measured first
        idle_start = cpu_seconds(daemon.pid)
        time.sleep(2.0)
        idle_rate = (cpu_seconds(daemon.pid) - idle_start) / 2.0
        figures = []
        for client, argument, units in (
                (BURST_CLIENT, str(args.connections), args.connections / 1000),
                (BULK_CLIENT, str(args.megabytes), args.megabytes / 1024)):
            before, started = cpu_seconds(daemon.pid), time.monotonic()
            reader_before = cpu_seconds(reader.pid) if reader else 0.0
            lab.run(lab.client, sys.executable, "-c", client, lab.server4, argument,
                    timeout=600)
            time.sleep(1.5)   # events and records still on their way
            elapsed = time.monotonic() - started
            used = cpu_seconds(daemon.pid) - before - idle_rate * elapsed
            figures.append(max(used, 0.0) / units)
            if reader and client is BURST_CLIENT:
                reader_cpu = (cpu_seconds(reader.pid) - reader_before) / units
        return figures[0], figures[1], reader_cpu if reader else None
    finally:
        for process in (reader, daemon):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    reason = missing()
    if reason:
        print(f"conntrack bench skipped: {reason}")
        return 0
    results = {"conntrack": [], "capture": []}
    with RouterLab() as lab, tempfile.TemporaryDirectory(prefix="ct-bench-") as work:
        loaded = subprocess.run(["ip", "netns", "exec", lab.router, "nft", "-f", "-"],
                                input=NAT_RULES, capture_output=True, text=True)
        if loaded.returncode != 0:
            print(f"conntrack bench skipped: nftables masquerade: {loaded.stderr.strip()}")
            return 0
        lab.run(lab.router, "sysctl", "-qw",
                "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")
        lab.popen(lab.server, sys.executable, "-c", SERVER)
        lab.popen(lab.router, sys.executable, "-c", SINK)
        time.sleep(0.5)
        for run in range(args.runs):
            for source in ("conntrack", "capture"):
                figures = measure(lab, source, args, work)
                results[source].append(figures)
                print(f"run {run + 1} {source:9}: daemon {figures[0]:.4f} CPU-s / 1000 "
                      f"connections, {figures[1]:.4f} CPU-s / GB"
                      + (f"; python ctnetlink reader {figures[2]:.4f} CPU-s / 1000 connections"
                         if figures[2] is not None else ""), flush=True)
    median = {source: [statistics.median(r[i] for r in runs) for i in (0, 1)]
              for source, runs in results.items()}
    reader = statistics.median(r[2] for r in results["conntrack"])
    ct, cap = median["conntrack"], median["capture"]
    print(f"\nmedians over {args.runs} runs ({args.connections} connections, "
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
