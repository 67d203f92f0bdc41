"""Booting a real OpenWrt image under QEMU the way aparcar/openwrt-tests does (its
targets/qemu-*.yaml): the same machines, CPUs and NIC models, LAN on the first NIC and WAN
(user networking, for `opkg update`/`apk update` when the host is online) on the second.
The one change: LAN is a tap in this test's network namespace instead of user networking, so
the host side can capture and receive the exports at their real addresses.

    OPENWRT_IMAGE=openwrt-x86-64-generic-squashfs-combined.img.gz      (x86-64, disk image)
    OPENWRT_IMAGE=openwrt-armsr-armv8-generic-initramfs-kernel.bin     (armsr-armv8, kernel)
    OPENWRT_IMAGE=openwrt-malta-be-vmlinux-initramfs.elf               (malta-be, kernel)
    OPENWRT_TARGET=x86-64|armsr-armv8|malta-be    when the file name does not say
"""

import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

LAN_HOST4, LAN_GUEST4 = "192.168.1.2", "192.168.1.1"  # OpenWrt's LAN is 192.168.1.1/24
LAN_HOST6, LAN_GUEST6 = "fd77::1", "fd77::2"          # added on the guest by the test
CONSOLE_READY = r"Please press Enter to activate this console\."
PROMPT = r"root@[\w()-]+:[^ ]+ "
MEMORY_MB = 256  # openwrt-tests gives 128 MB; python3 and a 65536-flow table need more


class ImageError(ValueError):
    """The image cannot be used; the message says why and what is expected."""


@dataclass(frozen=True)
class Target:
    name: str
    qemu: str          # the system emulator
    machine: str
    cpu: str
    nic_model: str
    boots_from: str    # "disk" (a combined image) or "kernel" (an initramfs kernel)
    name_hints: tuple  # how image file names of this target look


TARGETS = (
    Target("x86-64", "qemu-system-x86_64", "pc", "max", "virtio-net-pci", "disk",
           ("x86-64", "x86_64")),
    Target("armsr-armv8", "qemu-system-aarch64", "virt", "cortex-a57", "virtio-net-pci",
           "kernel", ("armsr-armv8", "armvirt-64")),
    Target("malta-be", "qemu-system-mips", "malta", "24Kc", "pcnet", "kernel", ("malta-be",)),
)


def target_for(image_path, name=None):
    """The target of an image: OPENWRT_TARGET if given, else from the file name."""
    if name:
        for target in TARGETS:
            if target.name == name:
                return target
        raise ImageError(f"OPENWRT_TARGET={name!r}: not one of "
                         f"{', '.join(t.name for t in TARGETS)}")
    file_name = Path(image_path).name
    for target in TARGETS:
        if any(hint in file_name for hint in target.name_hints):
            return target
    raise ImageError(f"OPENWRT_IMAGE={image_path}: cannot tell the target from the file name; "
                     f"set OPENWRT_TARGET to one of {', '.join(t.name for t in TARGETS)}")


def prepare_image(image_path, target, work_directory):
    """The file QEMU boots: a .gz is unpacked into work_directory (OpenWrt pads its gzip
    images, which gzip(1) reports as trailing garbage: only the first member is read)."""
    image_path = Path(image_path)
    if not image_path.is_file():
        raise ImageError(f"OPENWRT_IMAGE={image_path}: no such file")
    if image_path.suffix != ".gz":
        return image_path
    unpacked = Path(work_directory) / image_path.stem
    decompressor = zlib.decompressobj(wbits=31)
    with open(image_path, "rb") as source, open(unpacked, "wb") as out:
        while not decompressor.eof:
            chunk = source.read(1 << 20)
            if not chunk:
                raise ImageError(f"OPENWRT_IMAGE={image_path}: the gzip stream is cut short")
            out.write(decompressor.decompress(chunk))
    return unpacked


def argv(target, image, link):
    """QEMU's command line, inside the link's namespace; the console on stdio."""
    if shutil.which(target.qemu) is None:
        raise ImageError(f"{target.qemu} is not installed (qemu/vm/install-deps.sh openwrt)")
    command = [target.qemu, "-M", target.machine, "-cpu", target.cpu, "-m", str(MEMORY_MB),
               "-nographic", "-no-reboot", "-device", "virtio-rng-pci"]
    if target.boots_from == "disk":
        command += ["-drive", f"file={image},if=virtio,format=raw,snapshot=on"]
    else:
        command += ["-kernel", str(image)]
    # -nic as openwrt-tests (labgrid) gives them: on malta the first is the board's own NIC
    command += ["-nic", f"tap,ifname={link.device},script=no,downscript=no,"
                        f"model={target.nic_model}",
                "-nic", f"user,model={target.nic_model}"]
    return link.command(*command)
