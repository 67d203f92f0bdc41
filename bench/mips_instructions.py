"""The C core's instructions per packet on a router's CPU: the cross-build
replay driver (qemu/cross/, the CI's `cross` job) for big-endian MIPS 24Kf,
run under qemu-user, beside the same driver built for x86-64 under
callgrind.  The driver meters the capture and drains its records without
printing them (`replay pcap --quiet`): the core's own work.

Debian's qemu-user-static is linked statically and has no TCG plugins (no
-plugin, so no libinsn.so); the count comes from qemu's own log instead:
`-d in_asm,exec,nochain` prints each translated block's instructions once
and a line each time a block runs (nochain: every time), so the sum over
the runs of each block's length is the instructions executed, delay slots
included.  The log goes through a pipe, never to disk.  Deterministic like
callgrind: the same binary and input give the same count.
"""

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from bench import generated_capture
from callgrind_costs import ToolFailed, count

REPO = Path(__file__).resolve().parent.parent
CROSS = REPO / "build" / "cross"
CAPTURES = (2000, 20000)   # packets: qemu's log of a packet is ~30 kB
NEEDED = ("mips-linux-gnu-gcc", "qemu-mips-static")


def build_drivers():
    """The x86-64 and MIPS drivers, as the cross job builds them (cached by
    what made them); None, or the reason they cannot be built here."""
    missing = [tool for tool in NEEDED if not shutil.which(tool)]
    if missing:
        return f"{' and '.join(missing)} not found (qemu/cross/setup.sh installs them)"
    done = subprocess.run(["sh", "qemu/cross/run.sh"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, CROSS_ARCHES="mips", CROSS_BUILD_ONLY="1"))
    if done.returncode != 0:
        return "the cross build failed:\n" + (done.stdout + done.stderr)[-2000:]
    return None


def block_instructions(log):
    """Instructions executed, from a stream of qemu's in_asm + exec log."""
    lengths, executed = {}, 0
    block_pc, block_length = None, 0
    for line in log:
        first = line[:1]
        if first == "0" and line[1:2] == "x":           # 0x00400750:  addiu ...
            if block_pc is None:
                block_pc = line[2:line.index(":")]
            block_length += 1
            continue
        if block_pc is not None:                        # the block's listing ended
            lengths[block_pc], block_pc, block_length = block_length, None, 0
        if first == "T":                                # Trace 0: 0x… [cs/pc/flags/cflags]
            start = line.index("/") + 1
            executed += lengths[line[start:line.index("/", start)]]
    return executed


def qemu_instructions(driver, pcap):
    with tempfile.TemporaryDirectory() as scratch:
        fifo = Path(scratch) / "log"
        os.mkfifo(fifo)
        result = {}

        def read():
            with open(fifo, errors="replace") as log:
                result["executed"] = block_instructions(log)

        reader = threading.Thread(target=read)
        reader.start()
        done = subprocess.run(["qemu-mips-static", "-cpu", "24Kf", "-d", "in_asm,exec,nochain",
                               "-D", fifo, driver, "pcap", "--quiet", pcap],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            with open(fifo, "w"):   # the reader may still wait for a writer
                pass
        reader.join()
        if done.returncode != 0 or "executed" not in result:
            raise ToolFailed(f"qemu-mips-static {driver} failed:\n{done.stderr[-2000:]}")
        return result["executed"]


def report(python, flows):
    reason = build_drivers()
    if reason:
        print(f"  C core on MIPS: skipped: {reason}")
        return
    captures = {n: generated_capture(n, flows)[0] for n in CAPTURES}
    x86 = {n: count([CROSS / "x86_64" / "replay", "pcap", "--quiet", pcap])[0]
           for n, pcap in captures.items()}
    mips = {n: qemu_instructions(CROSS / "mips" / "replay", pcap) for n, pcap in captures.items()}
    small, big = CAPTURES
    per_x86 = (x86[big] - x86[small]) / (big - small)
    per_mips = (mips[big] - mips[small]) / (big - small)
    print(f"C core alone (qemu/cross replay driver, -O2, records drained), captures of {small} "
          f"and {big} packets:")
    print(f"  x86-64 (callgrind)                    {per_x86:6.0f} instructions per packet")
    print(f"  MIPS 24Kf big-endian (qemu-user log)  {per_mips:6.0f} instructions per packet "
          f"({per_mips / per_x86:.2f}x x86-64's)")
