"""A router of our own for the enrichment tests: one network namespace
(named enrich-...) with a LAN and two uplinks, and a way for the test
process to open its sockets inside it (setns for this thread, then back).

Only this namespace is ever changed or a target.
"""

import contextlib
import ctypes
import os
import subprocess
import uuid

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


class UplinkRouter:
    """lan0 192.168.7.1/24 fd07::1/64; up1 10.1.1.1/24 (main table's default
    via 10.1.1.254, fd01::254); up2 10.1.2.1/24 (table 100's default via
    10.1.2.254, fd02::254).  Each device is one end of a veth pair whose
    other end stays in the namespace: routes and rules are the kernel's
    own, and a FIB lookup needs no traffic."""

    def __init__(self):
        self.name = f"enrich-{uuid.uuid4().hex[:6]}"

    def ip(self, *args, check=True):
        return subprocess.run(["ip", "-n", self.name, *args], check=check, capture_output=True,
                              text=True)

    def ifindex(self, device):
        out = self.ip("-o", "link", "show", "dev", device).stdout
        return int(out.split(":", 1)[0])

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        try:
            self.ip("link", "set", "lo", "up")
            for device, v4, v6 in (("lan0", "192.168.7.1/24", "fd07::1/64"),
                                   ("up1", "10.1.1.1/24", "fd01::1/64"),
                                   ("up2", "10.1.2.1/24", "fd02::1/64")):
                # veth pairs (no dummy module everywhere); the peer up for carrier
                self.ip("link", "add", device, "type", "veth", "peer", "name", f"{device}p")
                self.ip("link", "set", f"{device}p", "up")
                self.ip("link", "set", device, "up")
                self.ip("addr", "add", v4, "dev", device)
                self.ip("addr", "add", v6, "dev", device, "nodad")
            self.ip("route", "add", "default", "via", "10.1.1.254", "dev", "up1")
            self.ip("-6", "route", "add", "default", "via", "fd01::254", "dev", "up1")
            self.ip("route", "add", "default", "via", "10.1.2.254", "dev", "up2", "table", "100")
            self.ip("-6", "route", "add", "default", "via", "fd02::254", "dev", "up2", "table",
                    "100")
            subprocess.run(["ip", "netns", "exec", self.name, "sysctl", "-qw",
                            "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                            "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.lan0.rp_filter=0"],
                           check=True, capture_output=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    @contextlib.contextmanager
    def inside(self):
        """This thread in the namespace: sockets opened here stay in it."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield self
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)
