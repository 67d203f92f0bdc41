"""A client, a router and a server in network namespaces of our own, joined
by veth pairs, with IPv4 and IPv6: real stacks for the daemon's live tests.

    with RouterLab() as lab:
        lab.run(lab.client, "ping", "-c", "1", lab.server4)

Only these namespaces and their addresses are ever targets.
"""

import os
import shutil
import subprocess
import uuid


def missing():
    """Why the lab cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "tcpdump", "curl", "ping"):
        if shutil.which(tool) is None:
            return f"needs {tool} in PATH"
    probe = f"fp-probe-{uuid.uuid4().hex[:6]}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"cannot create a network namespace: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class RouterLab:
    client4, router_client4, router_server4, server4 = ("10.91.1.2", "10.91.1.1", "10.91.2.1",
                                                        "10.91.2.2")
    client6, router_client6, router_server6, server6 = ("fd91:1::2", "fd91:1::1", "fd91:2::1",
                                                        "fd91:2::2")
    router_devices = ("r-cli", "r-srv")  # the router's side of each link

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.client, self.router, self.server = (f"fpc-{tag}", f"fpr-{tag}", f"fps-{tag}")
        self.processes = []

    def ip(self, *args, check=True):
        return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)

    def run(self, namespace, *command, check=True, timeout=60, **options):
        return subprocess.run(["ip", "netns", "exec", namespace, *command], check=check,
                              timeout=timeout, capture_output=True, text=True, **options)

    def popen(self, namespace, *command, **options):
        process = subprocess.Popen(["ip", "netns", "exec", namespace, *command], **options)
        self.processes.append(process)
        return process

    def link(self, namespace_a, device_a, namespace_b, device_b):
        self.ip("link", "add", device_a, "netns", namespace_a, "type", "veth", "peer", "name",
                device_b, "netns", namespace_b)
        for namespace, device in ((namespace_a, device_a), (namespace_b, device_b)):
            self.ip("-n", namespace, "link", "set", device, "up")

    def address(self, namespace, device, *addresses):
        for address in addresses:
            extra = ("nodad",) if ":" in address else ()
            self.ip("-n", namespace, "addr", "add", address, "dev", device, *extra)

    def connect_client(self):
        """The client's link; also used to re-create it after a test deleted it."""
        self.link(self.client, "eth0", self.router, "r-cli")
        self.address(self.client, "eth0", f"{self.client4}/24", f"{self.client6}/64")
        self.address(self.router, "r-cli", f"{self.router_client4}/24",
                     f"{self.router_client6}/64")
        self.ip("-n", self.client, "route", "add", "default", "via", self.router_client4)
        self.ip("-n", self.client, "-6", "route", "add", "default", "via", self.router_client6)

    def __enter__(self):
        for namespace in (self.client, self.router, self.server):
            self.ip("netns", "add", namespace)
            self.ip("-n", namespace, "link", "set", "lo", "up")
        try:
            self.connect_client()
            self.link(self.router, "r-srv", self.server, "eth0")
            self.address(self.router, "r-srv", f"{self.router_server4}/24",
                         f"{self.router_server6}/64")
            self.address(self.server, "eth0", f"{self.server4}/24", f"{self.server6}/64")
            self.ip("-n", self.server, "route", "add", "default", "via", self.router_server4)
            self.ip("-n", self.server, "-6", "route", "add", "default", "via",
                    self.router_server6)
            self.run(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                     "net.ipv6.conf.all.forwarding=1")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        tear_down(self.processes, (self.client, self.router, self.server))


def tear_down(processes, namespaces):
    """A lab's end: its processes stopped (killed after 5 s), then whatever
    still runs in its namespaces, then the namespaces."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
    for namespace in namespaces:
        pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
