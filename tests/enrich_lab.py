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

from netlab import tear_down

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


class TwoUplinks:
    """Namespaces of our own (enrich-...): a client on the router's LAN,
    the router, and two providers behind its uplinks, each answering for
    the same far server (198.51.100.7, 2001:db8::7).

        client 192.168.7.20 .200, fd07::20 ::8000:0:0:20   (default via the router)
          |  lan0 192.168.7.1 fd07::1
        router   up1 10.1.1.1 fd01::1 -- isp1 10.1.1.254 fd01::254   (main table's default)
                 up2 10.1.2.1 fd02::1 -- isp2 10.1.2.254 fd02::254   (table 100's default)

    Real veth links: the client's packets are forwarded by the router's
    kernel, as the FIB decides."""

    far4, far6 = "198.51.100.7", "2001:db8::7"

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.client, self.router = f"enrich-c-{tag}", f"enrich-r-{tag}"
        self.isp = (f"enrich-a-{tag}", f"enrich-b-{tag}")
        self.processes = []

    def ip(self, namespace, *args):
        return subprocess.run(["ip", "-n", namespace, *args], check=True, capture_output=True,
                              text=True)

    def run(self, namespace, *command, check=True, timeout=60):
        return subprocess.run(["ip", "netns", "exec", namespace, *command], check=check,
                              timeout=timeout, capture_output=True, text=True)

    def popen(self, namespace, *command, **options):
        process = subprocess.Popen(["ip", "netns", "exec", namespace, *command], **options)
        self.processes.append(process)
        return process

    def _link(self, a, device_a, b, device_b, addresses_a, addresses_b):
        subprocess.run(["ip", "link", "add", device_a, "netns", a, "type", "veth", "peer",
                        "name", device_b, "netns", b], check=True, capture_output=True)
        for namespace, device, addresses in ((a, device_a, addresses_a),
                                             (b, device_b, addresses_b)):
            self.ip(namespace, "link", "set", device, "up")
            for address in addresses:
                self.ip(namespace, "addr", "add", address, "dev", device,
                        *(("nodad",) if ":" in address else ()))

    def ifindex(self, device):
        return int(self.ip(self.router, "-o", "link", "show", "dev", device).stdout
                   .split(":", 1)[0])

    def route_get(self, destination, source):
        """(device, gateway or None) as `ip route get` says for a forwarded packet."""
        words = self.ip(self.router, "route", "get", destination, "from", source, "iif",
                        "lan0").stdout.split()
        gateway = words[words.index("via") + 1] if "via" in words else None
        return words[words.index("dev") + 1], gateway

    def __enter__(self):
        for namespace in (self.client, self.router, *self.isp):
            subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
            self.ip(namespace, "link", "set", "lo", "up")
        try:
            self._link(self.client, "eth0", self.router, "lan0",
                       ("192.168.7.20/24", "192.168.7.200/24", "fd07::20/64",
                        "fd07::8000:0:0:20/64"), ("192.168.7.1/24", "fd07::1/64"))
            self.ip(self.client, "route", "add", "default", "via", "192.168.7.1")
            self.ip(self.client, "-6", "route", "add", "default", "via", "fd07::1")
            for n, isp in enumerate(self.isp, 1):
                self._link(self.router, f"up{n}", isp, "eth0", (f"10.1.{n}.1/24", f"fd0{n}::1/64"),
                           (f"10.1.{n}.254/24", f"fd0{n}::254/64"))
                self.ip(isp, "addr", "add", f"{self.far4}/32", "dev", "lo")
                self.ip(isp, "addr", "add", f"{self.far6}/128", "dev", "lo")
                self.ip(isp, "route", "add", "192.168.7.0/24", "via", f"10.1.{n}.1")
                self.ip(isp, "-6", "route", "add", "fd07::/64", "via", f"fd0{n}::1")
            self.ip(self.router, "route", "add", "default", "via", "10.1.1.254")
            self.ip(self.router, "-6", "route", "add", "default", "via", "fd01::254")
            self.ip(self.router, "route", "add", "default", "via", "10.1.2.254", "table", "100")
            self.ip(self.router, "-6", "route", "add", "default", "via", "fd02::254", "table",
                    "100")
            self.ip(self.router, "rule", "add", "from", "192.168.7.128/25", "lookup", "100")
            self.ip(self.router, "-6", "rule", "add", "from", "fd07::8000:0:0:0/65", "lookup",
                    "100")
            self.run(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                     "net.ipv6.conf.all.forwarding=1")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        tear_down(self.processes, (self.client, self.router, *self.isp))
