"""The x86-64 test VM image, built offline and cached under build/qemu/.

Two layers, each keyed by a hash of its inputs so it is rebuilt only when they change:
- base-<hash>/: Debian from guest-packages.txt with the test init (build-base.sh; about a
  minute). Inputs: the package list, build-base.sh, guest-init.sh.
- image-<hash>/rootfs.ext4: the base plus flowprobe's files exactly as the package installs
  them (staging.py). Inputs: the base's hash and every staged path, mode and content. Packing
  takes seconds (hard-linked copy of the base tree, then mke2fs -d: no loop mount, no root
  filesystem tricks).

    python3 qemu/vm/image.py        # build what is missing, print the image directory
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import staging  # noqa: E402  (next to this file)

# QEMU_CACHE: somewhere that outlives the checkout (a CI machine's clones), if wanted
CACHE = Path(os.environ.get("QEMU_CACHE") or staging.REPO / "build" / "qemu")
BASE_INPUTS = (HERE / "guest-packages.txt", HERE / "build-base.sh", HERE / "guest-init.sh")
SPARE_MB = 200  # free space in the guest's root: logs, the config, the daemon's socket
KEEP_IMAGES = 3  # older staged images are deleted (each is a few hundred MB)


@dataclass(frozen=True)
class Image:
    directory: Path
    kernel: Path
    initrd: Path
    rootfs: Path
    staged: tuple  # the StagedFiles in it
    built: bool    # False when it came from the cache


def _digest(parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:16]


def base_key():
    return _digest([p.name.encode() + b"\0" + p.read_bytes() for p in BASE_INPUTS])


def ensure_base(log=print):
    """build/qemu/base-<hash>/ with vmlinuz, initrd.img and rootfs/; built when missing."""
    directory = CACHE / f"base-{base_key()}"
    if (directory / ".complete").exists():
        return directory, False
    for stale in CACHE.glob("base-*"):
        shutil.rmtree(stale, ignore_errors=True)
    building = CACHE / "base-building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    log(f"qemu image: building the Debian base (mmdebstrap) in {directory}")
    subprocess.run([str(HERE / "build-base.sh"), str(building), *map(str, BASE_INPUTS[:1]),
                    str(BASE_INPUTS[2])], check=True)
    (building / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    building.rename(directory)
    return directory, True


def _install(tree, staged_file):
    target = tree / staged_file.destination.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()  # a hard link into the base: never write through it
    target.write_bytes(staged_file.content)
    target.chmod(staged_file.mode)


def _add_accounts(tree, accounts):
    """The system users and groups the package creates (its USERID), in the guest's
    /etc/passwd and /etc/group: new files, never written through the base's hard links."""
    def read_table(name):
        path = tree / "etc" / name
        lines = path.read_text().splitlines()
        taken = {int(line.split(":")[2]) for line in lines if line.count(":") >= 3}
        names = {line.split(":")[0] for line in lines}
        return path, lines, taken, names

    for user, group in accounts:
        group_path, group_lines, gids, groups = read_table("group")
        gid = next(n for n in range(200, 1000) if n not in gids)
        if group not in groups:
            group_lines.append(f"{group}:x:{gid}:")
        else:
            gid = next(int(line.split(":")[2]) for line in group_lines
                       if line.split(":")[0] == group)
        passwd_path, passwd_lines, uids, users = read_table("passwd")
        if user not in users:
            uid = next(n for n in range(200, 1000) if n not in uids)
            passwd_lines.append(f"{user}:x:{uid}:{gid}:{user}:/var/run/{user}:/bin/false")
        for path, lines in ((group_path, group_lines), (passwd_path, passwd_lines)):
            path.unlink()
            path.write_text("\n".join(lines) + "\n")
            path.chmod(0o644)


def ensure_image(log=print, staged=None):
    """The staged image for the current tree (flowprobe's files as the package installs
    them); packed when its inputs changed. staged: another file list (to check that the
    test fails without a file the package needs)."""
    base, _ = ensure_base(log)
    staged = tuple(staging.installed_files() if staged is None else staged)
    accounts = staging.package_accounts()
    key = _digest([base.name.encode(), repr(accounts).encode()] + [
        f"{f.destination}\0{f.mode:o}\0".encode() + f.content for f in staged])
    directory = CACHE / f"image-{key}"
    image = Image(directory, base / "vmlinuz", base / "initrd.img",
                  directory / "rootfs.ext4", staged, built=False)
    if image.rootfs.exists():
        os.utime(directory)  # most recently used: kept by the clean-up below
        return image
    tree = CACHE / f"tree-{key}"
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["cp", "-al", str(base / "rootfs"), str(tree)], check=True)
    try:
        for staged_file in staged:
            _install(tree, staged_file)
        _add_accounts(tree, accounts)
        (tree / "etc" / "flowprobe-staged.txt").write_text(
            "".join(f"{f.destination}\n" for f in staged))
        used_mb = int(subprocess.run(["du", "-sm", str(tree)], check=True, capture_output=True,
                                     text=True).stdout.split()[0])
        directory.mkdir(parents=True, exist_ok=True)
        packing = directory / "rootfs.ext4.partial"
        packed = subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "flowroot", "-d",
                                 str(tree), str(packing), f"{used_mb + SPARE_MB}M"],
                                capture_output=True, text=True)
        if packed.returncode != 0:
            raise RuntimeError(f"mke2fs failed ({packed.returncode}):\n{packed.stdout}"
                               f"{packed.stderr}")
        packing.rename(image.rootfs)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    images = sorted(CACHE.glob("image-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[KEEP_IMAGES:]:
        shutil.rmtree(old, ignore_errors=True)
    log(f"qemu image: packed {image.rootfs} ({len(staged)} files from "
        f"{staging.source_of_list()})")
    return Image(directory, image.kernel, image.initrd, image.rootfs, staged, built=True)


if __name__ == "__main__":
    started = time.monotonic()
    ready = ensure_image()
    state = "built" if ready.built else "cached"
    print(f"qemu image: {ready.directory} ({state}, {time.monotonic() - started:.1f} s)")
