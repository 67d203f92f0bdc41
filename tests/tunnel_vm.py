"""Tunnels this machine's kernel cannot make, made in a throwaway virtual
machine instead: a distribution's kernel (a linux-image package unpacked
with `dpkg-deb -x`, named by FLOWPROBE_TUNNEL_KERNEL) boots under KVM with an
initramfs of busybox, iproute2, tcpdump and ping from this host and the
tunnel modules with what they depend on.  Inside, the same lab as
test_tunnels_live.py's runs for each tunnel type (two network namespaces, a
veth underlay, real pings, a refused TCP connection and traceroute's UDP
answered by ICMP), tcpdump records the underlay and the tunnel device, and
the captures come back on the serial console, base64-encoded.  Everything
else (metering, the truth) happens on the host, as for the local tunnels.

    FLOWPROBE_TUNNEL_KERNEL=DIR   DIR/boot/vmlinuz-* and DIR/lib/modules/*
                                  (tools/fetch_tunnel_kernel.sh), or make
                                  qemu-test's build/qemu/base-*/ (vmlinuz,
                                  rootfs/usr/lib/modules/*)
    FLOWPROBE_TUNNEL_VM_ACCEL=kvm  where nested KVM works (default: tcg, which
                                   boots in about 30 s on 2 cores)
"""

import base64
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

KERNEL_ENV = "FLOWPROBE_TUNNEL_KERNEL"
ACCEL_ENV = "FLOWPROBE_TUNNEL_VM_ACCEL"
QEMU = "qemu-system-x86_64"
MODULES = ("veth", "vxlan", "ip_gre", "ipip", "sit", "ip6_gre", "ip6_tunnel", "geneve",
           "l2tp_eth", "l2tp_netlink")
TOOLS = ("busybox", "ip", "tcpdump", "ping")
BOOT_TIMEOUT_S = 600


def _kernel_and_modules(directory):
    """(kernel image, modules tree) of either layout, or None."""
    for image, modules in (("boot/vmlinuz-*", "lib/modules/*/kernel"),
                           ("vmlinuz", "rootfs/usr/lib/modules/*/kernel")):
        images, trees = sorted(directory.glob(image)), sorted(directory.glob(modules))
        if images and trees:
            return images[-1], trees[-1]
    return None


def missing():
    """Why no VM can run here, or None."""
    kernel = os.environ.get(KERNEL_ENV)
    if not kernel:
        return (f"set {KERNEL_ENV} to an unpacked linux-image package "
                "(tools/fetch_tunnel_kernel.sh) for the VM")
    if _kernel_and_modules(Path(kernel)) is None:
        return f"{KERNEL_ENV}={kernel} has no kernel image and modules tree"
    if shutil.which(QEMU) is None:
        return f"needs {QEMU}"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def _depends(module_path):
    """The modules a .ko names in its .modinfo (depends=a,b)."""
    found = re.search(rb"depends=([^\0]*)\0", module_path.read_bytes())
    return [name for name in (found.group(1).decode().split(",") if found else []) if name]


def _module_order(modules_dir, names):
    """Paths of the modules and everything they depend on, dependencies first."""
    by_name = {p.name[:-3].replace("-", "_"): p for p in modules_dir.rglob("*.ko")}
    order = []

    def visit(name):
        path = by_name.get(name.replace("-", "_"))
        if path is None or path in order:
            return
        for dependency in _depends(path):
            visit(dependency)
        order.append(path)

    for name in names:
        visit(name)
    return order


def _libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return sorted({part for line in out.splitlines() for part in line.split()
                   if part.startswith("/")})


def _initramfs(modules_dir, script, directory):
    stage = directory / "stage"
    for sub in ("bin", "usr/bin", "proc", "sys", "tmp", "run", "dev", "etc", "modules", "var"):
        (stage / sub).mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:   # busybox's applets in /bin, the real tools before them
        path = shutil.which(tool)
        shutil.copy(path, stage / ("bin" if tool == "busybox" else "usr/bin") / tool)
        for library in _libraries(path):
            target = stage / library.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(library, target)
    order = _module_order(modules_dir, MODULES)
    for n, path in enumerate(order):
        shutil.copy(path, stage / "modules" / f"{n:02d}-{path.name}")
    (stage / "etc/passwd").write_text("root:x:0:0:root:/:/bin/sh\n")   # tcpdump -Z root
    (stage / "etc/group").write_text("root:x:0:\n")
    (stage / "init").write_text(script)
    (stage / "init").chmod(0o755)
    files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
    image = directory / "initramfs.cpio"
    with open(image, "wb") as out:
        subprocess.run([shutil.which("busybox"), "cpio", "-o", "-H", "newc"], cwd=stage,
                       input="\n".join(files).encode(), stdout=out, check=True)
    return image


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m" || echo "=== insmod failed $m"; done
echo "=== modules: $(cat /proc/modules | cut -d' ' -f1 | tr '\n' ' ')"
"""


def _lab_script(kind, build_a, build_b, families, underlay, underlay6, inner4, inner6):
    lines = [f"echo '=== lab {kind}'",
             "ip netns add a", "ip netns add b",
             "ip -n a link set lo up", "ip -n b link set lo up",
             "ip link add tun-under netns a type veth peer name tun-under netns b"]
    for side, namespace, build in ((0, "a", build_a), (1, "b", build_b)):
        lines += [f"ip -n {namespace} addr add {underlay[side]}/24 dev tun-under",
                  f"ip -n {namespace} addr add {underlay6[side]}/64 dev tun-under nodad",
                  f"ip -n {namespace} link set tun-under up"]
        lines += [f"ip -n {namespace} {command} || echo '=== failed {kind}'"
                  for command in build]
        lines += [f"ip -n {namespace} addr add {inner4[side]}/24 dev tun-dev",
                  f"ip -n {namespace} addr add {inner6[side]}/64 dev tun-dev nodad",
                  f"ip -n {namespace} link set tun-dev up"]
    # traffic starts once both captures say "listening" (a fixed sleep lost
    # the first ping's underlay packets under a loaded emulator)
    lines += ["ip netns exec a tcpdump -Z root -i tun-under -U -n -w /tmp/u.pcap 2>/tmp/u.err &",
              "U=$!",
              "ip netns exec a tcpdump -Z root -i tun-dev -U -n -w /tmp/d.pcap 2>/tmp/d.err &",
              "D=$!", "i=0",
              "until { grep -q listening /tmp/u.err && grep -q listening /tmp/d.err; } || "
              "[ $i -ge 600 ]; do sleep 0.1; i=$((i + 1)); done", "sleep 0.5"]
    if 4 in families:
        lines += [f"ip netns exec a ping -q -c 3 -s 100 -i 0.2 {inner4[1]} >/dev/null",
                  f"ip netns exec a nc -w 2 {inner4[1]} 9 </dev/null 2>/dev/null",
                  f"ip netns exec a traceroute -n -m 1 -q 1 -w 1 {inner4[1]} >/dev/null 2>&1"]
    if 6 in families:
        lines += [f"ip netns exec a ping -q -c 2 -s 1000 -i 0.2 {inner6[1]} >/dev/null",
                  f"ip netns exec a nc -w 2 {inner6[1]} 9 </dev/null 2>/dev/null",
                  f"ip netns exec a traceroute6 -n -m 1 -q 1 -w 1 {inner6[1]} >/dev/null 2>&1"]
    # emulated, the tunnel device's capture lags the underlay's: let both settle
    lines += ["sleep 2", "kill $U $D", "wait $U $D",
              f"echo '=== underlay {kind}'", "base64 /tmp/u.pcap", "echo '=== end'",
              f"echo '=== device {kind}'", "base64 /tmp/d.pcap", "echo '=== end'",
              "ip netns del a", "ip netns del b", "rm -f /tmp/u.pcap /tmp/d.pcap /tmp/?.err"]
    return "\n".join(lines) + "\n"


def capture(labs, directory):
    """labs: {kind: (commands for side a, for side b (each `ip -n NS` less its
    prefix), families, underlay, underlay6, inner4, inner6)}.  Boots the VM
    once; returns {kind: (underlay pcap, device pcap) or the reason it failed}."""
    kernel, modules_dir = _kernel_and_modules(Path(os.environ[KERNEL_ENV]))
    script = INIT + "".join(_lab_script(kind, *spec) for kind, spec in labs.items())
    script += "echo '=== done'\npoweroff -f\n"
    with tempfile.TemporaryDirectory() as scratch:
        image = _initramfs(modules_dir, script, Path(scratch))
        run = subprocess.run([QEMU, "-accel", os.environ.get(ACCEL_ENV, "tcg"), "-m", "512",
                              "-nographic", "-no-reboot",
                              "-kernel", str(kernel), "-initrd", str(image),
                              "-append", "console=ttyS0 quiet panic=-1"],
                             capture_output=True, text=True, errors="replace",
                             timeout=BOOT_TIMEOUT_S)
    console = run.stdout.replace("\r", "")
    if "=== done" not in console:
        raise RuntimeError(f"the tunnel VM did not finish:\n{console[-3000:]}")
    results = {}
    for kind in labs:
        if f"=== failed {kind}" in console:
            results[kind] = f"the VM's kernel could not make a {kind} tunnel"
            continue
        paths = []
        for side in ("underlay", "device"):
            block = re.search(rf"=== {side} {re.escape(kind)}\n(.*?)=== end", console, re.S)
            path = directory / f"{kind}-{side}.pcap"
            path.write_bytes(base64.b64decode("".join(block.group(1).split())))
            paths.append(path)
        results[kind] = tuple(paths)
    return results
