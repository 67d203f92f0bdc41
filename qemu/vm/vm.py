"""A QEMU guest under TCG, its NIC joined to a network namespace of our own, and its serial
console driven by the test (no pexpect: a select loop over QEMU's stdio).

    with HostLink() as link, Guest(debian_argv(image, link, share), log_path) as guest:
        guest.expect(r"FP-INIT-READY", 120)
        rc, output = guest.run("uname -r")
        guest.shutdown()          # the guest powers off; kill only as a last resort

Only the namespace created here and the guest behind its tap are ever targets.
"""

import os
import re
import select
import shutil
import signal
import subprocess
import time
import uuid

HOST_IP4, GUEST_IP4 = "10.77.0.1", "10.77.0.2"
HOST_IP6, GUEST_IP6 = "fd77::1", "fd77::2"
GUEST_MAC = "52:54:00:12:34:56"
# No offloads on the virtual NIC: each side's capture then sees the packets that cross the
# link, never a TSO/GSO super-packet that only one side would count as one.
# No option ROM either: iPXE's prompt only slows the boot.
VIRTIO_NET_OPTIONS = ("romfile=,csum=off,guest_csum=off,gso=off,guest_tso4=off,guest_tso6=off,"
                      "guest_ufo=off")


def missing():
    """Why a VM test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespace and tap device)"
    for tool in ("qemu-system-x86_64", "ip", "mke2fs", "mmdebstrap", "tcpdump"):
        if shutil.which(tool) is None:
            return f"needs {tool} in PATH (qemu/vm/install-deps.sh installs it)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun for the guest's tap"
    return None


class ConsoleTimeout(AssertionError):
    """The console did not show what was expected in time; the message has its tail."""


class HostLink:
    """Network namespace fpvm-<tag> holding tap0, the host end of the guest's NIC, with
    addresses for IPv4 and IPv6. Deleted on exit, whatever still runs in it is killed."""

    def __init__(self, host4=f"{HOST_IP4}/24", host6=f"{HOST_IP6}/64", device="tap0"):
        self.namespace = f"fpvm-{uuid.uuid4().hex[:6]}"
        self.device = device
        self.host4, self.host6 = host4, host6
        self.processes = []

    def ip(self, *args):
        return subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def command(self, *argv):
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, *argv, check=True, timeout=120, **options):
        options.setdefault("capture_output", True)
        return subprocess.run(self.command(*argv), check=check, timeout=timeout, text=True,
                              **options)

    def popen(self, *argv, **options):
        process = subprocess.Popen(self.command(*argv), **options)
        self.processes.append(process)
        return process

    def __enter__(self):
        self.ip("netns", "add", self.namespace)
        try:
            self.ip("-n", self.namespace, "link", "set", "lo", "up")
            self.ip("-n", self.namespace, "tuntap", "add", "dev", self.device, "mode", "tap")
            # room for a paced burst: tap's default queue (1000) drops under TCG
            self.ip("-n", self.namespace, "link", "set", self.device, "txqueuelen", "10000")
            self.ip("-n", self.namespace, "addr", "add", self.host4, "dev", self.device)
            self.ip("-n", self.namespace, "addr", "add", self.host6, "dev", self.device,
                    "nodad")
            self.ip("-n", self.namespace, "link", "set", self.device, "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        # anything else still in the namespace (e.g. a test's leftover) goes with it
        pids = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)

    def __exit__(self, *exc):
        self.close()


def debian_argv(image, link, share, memory_mb=512, extra_append=""):
    """QEMU for the Debian test image: direct kernel boot, the test init as PID 1, the root
    filesystem as a snapshot (the cached image stays pristine), share read-only over 9p."""
    append = (f"console=ttyS0 root=/dev/vda rw quiet loglevel=3 net.ifnames=0 panic=-1 "
              f"init=/usr/local/sbin/flowprobe-test-init fp_ip4={GUEST_IP4}/24 "
              f"fp_ip6={GUEST_IP6}/64 {extra_append}").strip()
    return link.command(
        "qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mb), "-smp", "1",
        "-nographic", "-no-reboot", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", append,
        "-drive", f"file={image.rootfs},if=virtio,format=raw,snapshot=on",
        "-virtfs", f"local,path={share},mount_tag=host0,security_model=none,readonly=on",
        "-netdev", f"tap,id=n0,ifname={link.device},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC},{VIRTIO_NET_OPTIONS}")


class Guest:
    """QEMU with its serial console on stdio; everything it prints goes to log_path."""

    def __init__(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.buffer = b""
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, bufsize=0)

    def _read(self, wait_s):
        ready, _, _ = select.select([self.process.stdout], [], [], wait_s)
        if not ready:
            return False
        chunk = os.read(self.process.stdout.fileno(), 65536)
        if not chunk:
            return None
        self.log.write(chunk)
        self.log.flush()
        self.buffer += chunk
        return True

    def tail(self, size=3000):
        return self.buffer[-size:].decode(errors="replace")

    def expect(self, pattern, timeout):
        """Wait for pattern (a regex) on the console; the match, and the console text up to
        it (consumed)."""
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buffer)
            if match:
                text = self.buffer[:match.end()]
                self.buffer = self.buffer[match.end():]
                return match, text.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConsoleTimeout(f"no {pattern!r} on the console within {timeout} s; "
                                     f"last output:\n{self.tail()}")
            if self._read(min(left, 1.0)) is None:
                raise ConsoleTimeout(f"QEMU exited ({self.process.wait()}) before "
                                     f"{pattern!r}; last output:\n{self.tail()}")

    def quiet_console(self):
        """No echo and no prompt from here on: what run() reads is the command's output
        alone, whatever order the shell and the terminal write in."""
        self.send("stty -echo; PS1=''; PS2=''; echo FP-CONSOLE''-QUIET\n")
        self.expect(r"FP-CONSOLE-QUIET\r?\n", 30)

    def send(self, text):
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def run(self, command, timeout=60):
        """Run a shell command on the console; (exit status, what it printed). The marker is
        split by quotes so the echoed command line cannot match it."""
        tag = f"FPRC{uuid.uuid4().hex[:8]}"
        # a line of its own: the command may end in '&'
        self.send(f"{command}\necho {tag[:4]}''{tag[4:]}=$?\n")
        match, text = self.expect(tag + r"=(\d+)\r?\n", timeout)
        return int(match.group(1)), text[:text.rfind(tag)].replace("\r", "")

    def check(self, command, timeout=60):
        """run() that must succeed: its output, or an AssertionError with it."""
        status, output = self.run(command, timeout)
        if status != 0:
            raise AssertionError(f"guest: `{command}` exited {status}:\n{output}")
        return output

    def wait_exit(self, timeout):
        """Read the console until QEMU exits; True when it did in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                while self._read(0) is True:
                    pass
                return True
            self._read(min(1.0, max(0.0, deadline - time.monotonic())))
        return self.process.poll() is not None

    def shutdown(self, command="exit", timeout=60, done=rb"FP-INIT-POWEROFF"):
        """Ask the guest to power off (the test init's shell exits, or `poweroff`); QEMU must
        then exit by itself. Killed only when it does not, and that is an error."""
        if self.process.poll() is None:
            self.send(command + "\n")
            try:
                if done:
                    self.expect(done, timeout)
                clean = self.wait_exit(timeout)
            except ConsoleTimeout:
                clean = False
            if not clean:
                self.kill()
                raise AssertionError(f"the guest did not power off within {timeout} s; "
                                     f"QEMU killed. Last output:\n{self.tail()}")
        return self.process.returncode

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def close(self):
        self.kill()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
