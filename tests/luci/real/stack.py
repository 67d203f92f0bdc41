"""The real OpenWrt web stack for luci-app-flowprobe's tests: ubusd, rpcd
(with rpcd-mod-luci and LuCI's ucode plugin), uhttpd with LuCI's ucode
handler, uci, and /www holding luci-base, luci-theme-bootstrap and the app
installed as luci.mk installs them; the daemon runs on ubus and reads
/etc/config/flowprobe, which rpcd (libuci) writes.

Nothing of it touches the host. `RealStack` starts this file again under
`unshare -m`: in that private mount namespace a tmpfs holds the staged
files, an overlay of them over the host's / becomes the root (writes land in
the tmpfs), with its own /run and /tmp; uhttpd listens on 127.0.0.1 of the
host's network namespace (the browser's), rpcd and the daemon run in the
test router's network namespace (tests/netlab.py), so LuCI sees its devices.

    with RealStack(userland, luci_src, workdir, networks={"lan": "r-cli"},
                   netns=lab.router, flowprobe_config=text) as stack:
        stack.start_daemon()
        stack.url("admin/services/flowprobe/status")
        stack.inside("uci", "show", "flowprobe")

`userland` is a root built by tools/openwrt-userland/build.sh; `luci_src`
an openwrt/luci checkout (one branch). Procd and netifd are not run:
tests/luci/real/standins.uc publishes what LuCI and the daemon ask of them
(system board, network.interface, and procd's `service event`, which here
reloads the daemon with SIGHUP as the init script's reload_signal does).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
APP = REPO / "luci-app-flowprobe"
STANDINS = HERE / "standins.uc"
# the LuCI packages laid into /www as luci.mk does
LUCI_PACKAGES = ("modules/luci-base", "themes/luci-theme-bootstrap")
USERS = {"root": "root-password", "viewer": "viewer-password"}
# a non-root LuCI user: the access groups of luci-base's ACL file (luci-base,
# luci-base-network-status, unauthenticated: without the last, luci.js's
# feature probe is refused, which LuCI takes for an expired session) and the
# app's, nothing else
ACL_FILES = ("usr/share/rpcd/acl.d/luci-base.json",
             "usr/share/rpcd/acl.d/luci-app-flowprobe.json")


def install_luci_package(package, root):
    """What luci.mk's Package/install copies: htdocs/ to /www, ucode/ to
    /usr/share/ucode/luci, root/ to / (src/ is built by build.sh)."""
    for part, target in (("htdocs", "www"), ("ucode", "usr/share/ucode/luci"), ("root", ".")):
        source = Path(package) / part
        if source.is_dir():
            shutil.copytree(source, root / target, symlinks=True, dirs_exist_ok=True)


def crypt_password(password):
    return subprocess.run(["openssl", "passwd", "-1", password], check=True,
                          capture_output=True, text=True).stdout.strip()


def uci_section(kind, name, options):
    lines = [f"config {kind}" + (f" '{name}'" if name else "")]
    for key, value in options.items():
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            lines.append(f"\t{'list' if isinstance(value, (list, tuple)) else 'option'} "
                         f"{key} '{item}'")
    return "\n".join(lines) + "\n\n"


def stage(userland, luci_src, root, networks, flowprobe_config):
    """The files laid over /: the userland, LuCI, the app, /etc/config."""
    userland = Path(userland)
    shutil.copytree(userland / "usr", root / "usr", symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("include", "pkgconfig", "cmake"))
    if (userland / "python").is_dir():
        shutil.copytree(userland / "python", root / "usr/lib/openwrt-python", symlinks=True)
    for package in LUCI_PACKAGES:
        install_luci_package(Path(luci_src) / package, root)
    install_luci_package(APP, root)
    # as OpenWrt's cgi-io package links its helper into uhttpd's cgi-bin
    cgi_bin = root / "www" / "cgi-bin"
    cgi_bin.mkdir(parents=True, exist_ok=True)
    for name in ("cgi-upload", "cgi-download", "cgi-backup", "cgi-exec"):
        (cgi_bin / name).symlink_to("/usr/libexec/cgi-io")
    config = root / "etc" / "config"
    config.mkdir(parents=True, exist_ok=True)
    rpcd = uci_section("rpcd", None, {"socket": "/var/run/ubus/ubus.sock", "timeout": "30"})
    rpcd += uci_section("login", None, {"username": "root",
                                        "password": crypt_password(USERS["root"]),
                                        "read": ["*"], "write": ["*"]})
    groups = [group for acl in ACL_FILES for group in json.loads((root / acl).read_text())]
    rpcd += uci_section("login", None, {"username": "viewer",
                                        "password": crypt_password(USERS["viewer"]),
                                        "read": groups, "write": groups})
    (config / "rpcd").write_text(rpcd)
    network = uci_section("interface", "loopback", {"device": "lo", "proto": "static",
                                                    "ipaddr": "127.0.0.1",
                                                    "netmask": "255.0.0.0"})
    for name, device in networks.items():
        network += uci_section("interface", name, {"device": device, "proto": "static"})
    (config / "network").write_text(network)
    (config / "system").write_text(uci_section("system", None, {"hostname": "flowprobe-test",
                                                                "zonename": "UTC",
                                                                "timezone": "UTC"}))
    for empty in ("wireless", "dhcp", "firewall"):
        (config / empty).write_text("")
    (config / "flowprobe").write_text(flowprobe_config)
    (root / "etc" / "board.json").write_text(json.dumps({
        "model": {"id": "flowprobe-test", "name": "flowprobe test stack"},
        "network": {name: {"device": device, "protocol": "static"}
                    for name, device in networks.items()}}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RealStack:
    def __init__(self, userland, luci_src, workdir, networks, netns, flowprobe_config,
                 python=sys.executable):
        self.userland, self.luci_src = Path(userland), Path(luci_src)
        self.workdir = Path(workdir).resolve()
        self.networks, self.netns, self.python = dict(networks), netns, python
        self.flowprobe_config = flowprobe_config
        self.port = free_port()
        self.process = self.daemon = None
        self.daemon_log = self.workdir / "daemon.log"
        self.daemon_pidfile = self.workdir / "daemon.pid"
        self.events = self.workdir / "events.log"

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}/cgi-bin/luci/{path}"

    def __enter__(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        staged = self.workdir / "stage"
        shutil.rmtree(staged, ignore_errors=True)
        stage(self.userland, self.luci_src, staged, self.networks, self.flowprobe_config)
        settings = {"stage": str(staged), "workdir": str(self.workdir), "port": self.port,
                    "netns": self.netns, "networks": self.networks,
                    "events": str(self.events), "pidfile": str(self.daemon_pidfile)}
        self.log = open(self.workdir / "stack.log", "w")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", self.python, __file__,
             json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the stack did not start: {line!r}\n"
                               f"{(self.workdir / 'stack.log').read_text()}")
        return self

    def __exit__(self, *exc):
        self.stop_daemon()
        if self.process and self.process.poll() is None:
            self.process.stdin.close()   # the namespace's init ends its services
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()

    def enter(self, *command, net=False):
        """A command inside the stack's mount namespace and root (and, with
        net, the router's network namespace)."""
        prefix = ["nsenter", "-t", str(self.process.pid), "-m", "-r", "-w"]
        if net:   # ip netns exec also mounts that namespace's /sys
            prefix += ["ip", "netns", "exec", self.netns]
        return prefix + list(command)

    def inside(self, *command, check=True, input=None):
        return subprocess.run(self.enter(*command), check=check, capture_output=True,
                              text=True, input=input, timeout=60).stdout

    def read_config(self, name="flowprobe"):
        return self.inside("cat", f"/etc/config/{name}")

    def write_config(self, text, name="flowprobe"):
        self.inside("sh", "-c", f"cat > /etc/config/{name}", input=text)

    def ubus(self, obj, method, args=None):
        out = self.inside("ubus", "call", obj, method, json.dumps(args or {}))
        return json.loads(out) if out.strip() else {}

    def start_daemon(self):
        """flowprobe run, as procd starts it (the init script's command): on
        ubus, reading /etc/config/flowprobe (python-ubus from the userland)."""
        import flowprobe  # the tree under test, wherever it is imported from
        source = Path(flowprobe.__file__).resolve().parents[1]
        env = dict(os.environ, PYTHONPATH=f"/usr/lib/openwrt-python:{source}")
        log = open(self.daemon_log, "a")
        self.daemon = subprocess.Popen(
            self.enter(self.python, "-m", "flowprobe", "run", "--config",
                       "/etc/config/flowprobe", net=True),
            stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.daemon_pidfile.write_text(f"{self.daemon.pid}\n")
        return self.daemon

    def stop_daemon(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.daemon_pidfile.exists():
            self.daemon_pidfile.unlink()

    def reload_events(self):
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()]


# ---- inside the namespace ----

def sh(*command):
    subprocess.run(command, check=True)


def wait_for(path, process, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def namespace_main(settings):
    workdir = Path(settings["workdir"])
    layers = workdir / "ns"
    layers.mkdir(exist_ok=True)
    sh("mount", "-t", "tmpfs", "stack", str(layers))
    # overlayfs refuses layers that overlap (the staged files under /), so
    # the staged files are copied into the tmpfs first
    for part in ("low", "upper", "work", "root"):
        (layers / part).mkdir()
    sh("cp", "-a", settings["stage"] + "/.", str(layers / "low"))
    root = layers / "root"
    sh("mount", "-t", "overlay", "stack", "-o",
       f"lowerdir={layers / 'low'}:/,upperdir={layers / 'upper'},workdir={layers / 'work'}",
       str(root))
    sh("mount", "-t", "proc", "proc", str(root / "proc"))
    for path in ("/sys", "/dev"):
        sh("mount", "--rbind", path, str(root) + path)
    for path in ("/run", "/tmp"):
        sh("mount", "-t", "tmpfs", "stack", str(root) + path)
    (root / "run/netns").mkdir()
    sh("mount", "--rbind", "/run/netns", str(root / "run/netns"))
    # the work directory is shared with the test (logs, pid file, events)
    os.makedirs(str(root) + str(workdir), exist_ok=True)   # under the new /tmp, say
    sh("mount", "--bind", str(workdir), str(root) + str(workdir))
    os.chroot(root)
    os.chdir("/")

    processes = []
    log = open(workdir / "services.log", "a")

    def start(*command, net=False):
        if net:   # ip netns exec also mounts that namespace's /sys
            command = ("ip", "netns", "exec", settings["netns"]) + command
        p = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        processes.append(p)
        return p

    try:
        os.makedirs("/var/run/ubus", exist_ok=True)
        ubusd = start("/usr/sbin/ubusd", "-s", "/var/run/ubus/ubus.sock")
        wait_for("/var/run/ubus/ubus.sock", ubusd, "ubusd")
        # what OpenWrt does at first boot (the theme sets itself in /etc/config/luci)
        for script in sorted(Path("/etc/uci-defaults").glob("*")):
            if subprocess.run(["sh", str(script)], stdout=log, stderr=log).returncode == 0:
                script.unlink()
        standin_config = Path("/tmp/standins.json")
        standin_config.write_text(json.dumps({
            "networks": settings["networks"], "hostname": "flowprobe-test",
            "events": settings["events"], "reload": {"flowprobe": settings["pidfile"]}}))
        start("/usr/bin/ucode", str(STANDINS), str(standin_config))
        start("/usr/sbin/rpcd", "-s", "/var/run/ubus/ubus.sock", "-t", "30", net=True)
        uhttpd = start("/usr/bin/uhttpd", "-f", "-h", "/www", "-r", "flowprobe-test",
                       "-x", "/cgi-bin", "-u", "/ubus", "-t", "60", "-T", "30", "-k", "20",
                       "-A", "1", "-n", "3", "-N", "100", "-R",
                       "-p", f"127.0.0.1:{settings['port']}",
                       "-o", "/cgi-bin/luci", "-O", "/usr/share/ucode/luci/uhttpd.uc")
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", settings["port"]), 1).close()
                break
            except OSError:
                if uhttpd.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("uhttpd did not start") from None
                time.sleep(0.05)
        # rpcd publishes `session` (LuCI's login) once it runs
        deadline = time.monotonic() + 20
        while subprocess.run(["ubus", "-t", "1", "wait_for", "session", "luci", "luci-rpc",
                              "system"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("rpcd or the stand-ins did not publish their objects")
        print("ready", flush=True)
        sys.stdin.read()   # until the test closes it
    except Exception as e:
        print(f"failed: {e}", flush=True)
    finally:
        for p in reversed(processes):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    namespace_main(json.loads(sys.argv[1]))
