"""The CLI on a real terminal (tmux, 80×24): `read`'s progress line on a
large capture, and `top` against a live daemon, its keys and its layout.
What the terminal showed is saved as text in build/artifacts/.

Needs tmux (and root for the live daemon); skipped otherwise.
"""

import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from captures import START_US, write_pcap
from test_cli_control import LiveDaemon, free_udp_port, live_missing

ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "artifacts"
COLUMNS, LINES = 80, 24

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Terminal:
    """A command in a detached tmux session of its own server, COLUMNS×LINES."""

    def __init__(self, tmp_path, command):
        self.server = f"fp-{os.getpid()}-{id(self)}"
        # the pane stays after the command, with its exit status, for the last capture
        shell = f"{command}; echo EXIT=$?; sleep 600"
        self.tmux("new-session", "-d", "-x", str(COLUMNS), "-y", str(LINES), "-s", "cli",
                  "sh", "-c", shell)

    def tmux(self, *argv):
        return subprocess.run(["tmux", "-L", self.server, *argv], capture_output=True, text=True,
                              check=True, timeout=10).stdout

    def screen(self, history=False):
        """What the pane shows (with history: and what scrolled off above)."""
        return self.tmux("capture-pane", "-p", "-t", "cli", *(("-S", "-") if history else ()))

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "cli", *keys)

    def wait_for(self, predicate, timeout=20, every=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(every)
        raise AssertionError(f"the terminal never showed it:\n{self.screen()}")

    def close(self):
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True)


def save(name, text):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(text)


def flowprobe(*argv):
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "flowprobe", *map(str, argv)])


def large_capture(path, packets=1_500_000, flows=1000):
    """~110 MB of small UDP frames: above read's progress threshold (32 MiB);
    with an active timeout of 1 s, 75 000 records, written as they come,
    make it a few seconds to read."""
    template = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=9)
                     / (b"x" * 18))
    variants = []
    for n in range(flows):
        frame = bytearray(template)
        struct.pack_into("!H", frame, 34, 1024 + n)   # the UDP source port
        variants.append(bytes(frame))
    return write_pcap(path, [(START_US + n * 50, variants[n % flows]) for n in range(packets)])


def test_read_shows_progress_on_a_terminal_then_clears_it(tmp_path):
    path = large_capture(tmp_path / "large.pcap")
    terminal = Terminal(tmp_path,
                        flowprobe("read", path, "--active-timeout", "1") + " >/dev/null")
    try:
        during = terminal.wait_for(lambda text: "reading large.pcap:" in text)
        save("cli-read-progress-80x24.txt", during)
        line = next(line for line in during.splitlines() if "reading large.pcap:" in line)
        assert " MiB of 1" in line and " MiB (" in line and "packets/s" in line
        assert line.endswith(" left") and len(line) <= COLUMNS
        after = terminal.wait_for(lambda text: "EXIT=" in text)
        save("cli-read-done-80x24.txt", after)
        lines = [line for line in after.splitlines() if line]
        assert lines[0].startswith("Summary: 75.0 k flows, 1.5 M packets, ")
        assert lines[1] == "EXIT=0"          # the progress line is gone
    finally:
        terminal.close()
    # not a terminal: nothing but the summary on stderr
    piped = subprocess.run([sys.executable, "-m", "flowprobe", "read", str(path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert piped.stderr.startswith("Summary: ") and "\r" not in piped.stderr


class Traffic:
    """UDP to one port on 127.0.0.1 and [::1] from `flows` sockets, each at
    its own rate, in a thread, until stopped."""

    def __init__(self, port, flows=12):
        self.port, self.stop = port, threading.Event()
        self.sockets = []
        for n in range(flows):
            family, address = ((socket.AF_INET, "127.0.0.1") if n % 2 == 0
                               else (socket.AF_INET6, "::1"))
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.bind((address, 0))
            self.sockets.append((s, address, 100 * (n + 1)))
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.02):
            for s, address, size in self.sockets:
                s.sendto(b"t" * size, (address, self.port))

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s, _, _ in self.sockets:
            s.close()


def test_top_at_80x24_with_its_keys(tmp_path):
    reason = live_missing()
    if reason:
        pytest.skip(f"live daemon: {reason}")
    port = free_udp_port()
    daemon = LiveDaemon(tmp_path, [port])
    traffic = Traffic(port)
    terminal = Terminal(tmp_path, flowprobe("top", "--socket", daemon.socket, "--interval", "1"))
    try:
        first = terminal.wait_for(lambda text: "by bit rate" in text and "kbit/s" in text)
        save("cli-top-80x24.txt", first)
        lines = first.split("\n")[:LINES]
        assert all(len(line) <= COLUMNS for line in lines)
        assert lines[0].startswith("flowprobe top ") and "bit/s (" in lines[0]
        assert lines[1].split()[0] == "RATE"
        assert "SOURCE" in lines[1] and "DESTINATION" in lines[1]
        rows = [line for line in lines[2:] if "bit/s" in line]
        assert len(rows) == 12 and rows[0].split()[1].endswith("bit/s")
        assert lines[-1] == "by bit rate   q quit  r p b a sort  / filter"
        # the busiest first: the largest datagrams
        rates = [float(row.split()[0]) * {"k": 1e3, "M": 1e6}.get(row.split()[1][0], 1)
                 for row in rows]
        assert rates == sorted(rates, reverse=True)

        terminal.keys("p")
        terminal.wait_for(lambda text: "by packet rate" in text)
        terminal.keys("/", "::1", "Enter")
        filtered = terminal.wait_for(lambda text: "by packet rate  filter: ::1   q quit" in text
                                     and "127.0.0.1" not in text)
        save("cli-top-80x24-filtered.txt", filtered)
        rows = [line for line in filtered.split("\n")[2:] if "bit/s" in line]
        assert len(rows) == 6 and all("[::1]" in row for row in rows)

        terminal.keys("q")
        done = terminal.wait_for(lambda text: "EXIT=" in text)
        assert "EXIT=0" in done and "flowprobe top" not in done   # the screen is given back
    finally:
        terminal.close()
        traffic.close()
        daemon.stop()


def test_top_frame_with_long_ipv6_addresses_fits_80x24():
    from flowprobe.cli import top
    from test_cli_control import v6_flow
    rated = [v6_flow(n, 125_000.0 * n) for n in range(1, 30)]
    frame = top.format_top(rated, {"active": 29, "matched": 29}, 2.0, rows=LINES - 3,
                           width=COLUMNS, keys_line=top.View("rate", "").keys_line())
    save("cli-top-80x24-ipv6.txt", frame + "\n")
    lines = frame.splitlines()
    assert len(lines) == LINES and max(map(len, lines)) <= COLUMNS
    assert "…" in lines[2] and "]:443" in lines[2] and lines[1].split()[:2] == ["RATE", "PROTO"]


def test_status_on_a_terminal(tmp_path):
    reason = live_missing()
    if reason:
        pytest.skip(f"live daemon: {reason}")
    port = free_udp_port()
    daemon = LiveDaemon(tmp_path, [port], interfaces=("lo", "fpnosuch0"))
    terminal = Terminal(tmp_path, flowprobe("status", "--socket", daemon.socket))
    try:
        terminal.wait_for(lambda text: "EXIT=" in text)
        screen = terminal.screen(history=True)
        save("cli-status-80x24.txt", screen)
        assert screen.startswith("flowprobe ") and ": running, 1 thing needs attention" in screen
        assert "EXIT=3" in screen
    finally:
        terminal.close()
        daemon.stop()
