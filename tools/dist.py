#!/usr/bin/env python3
"""make dist: the versioned source tarball the OpenWrt feeds build from.

build/dist/flowprobe-<version>.tar.gz holds what the package build needs
(pyproject.toml, setup.py, README.md, LICENSE, src/, files/) under
flowprobe-<version>/, and build/dist/flowprobe-<version>.tar.gz.sha256 its
sha256, the PKG_HASH of package/flowprobe/Makefile.

Reproducible: the same files give the same bytes on any machine and at any
time: entries sorted, one fixed mtime (SOURCE_DATE_EPOCH, else DEFAULT_MTIME),
owner 0/0 without names, modes 0755 (directories, executables) or 0644, gzip
without a name or time. The files are those git tracks under DIST_PATHS, as
they are in the working tree (a build product never slips in); outside a git
checkout, every file under them but build products.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "flowprobe"
DIST_PATHS = ["pyproject.toml", "setup.py", "README.md", "LICENSE", "src", "files"]
BUILD_PRODUCTS = re.compile(r"(^|/)(__pycache__|[^/]*\.egg-info)(/|$)|\.(so|pyc|o)$")
# 2020-01-01T00:00:00Z: wheels cannot hold times before 1980, so not 0
DEFAULT_MTIME = 1577836800


def version():
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        project = f.read().split("[project]", 1)[1]
    return re.search(r'^version\s*=\s*"([^"]+)"', project, re.M).group(1)


def dist_files():
    """Relative paths of the files to ship, sorted."""
    try:
        listed = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--", *DIST_PATHS],
                                capture_output=True, check=True).stdout.decode()
        paths = [p for p in listed.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for top in DIST_PATHS:
            full = os.path.join(REPO, top)
            if os.path.isfile(full):
                paths.append(top)
            for directory, _, names in os.walk(full):
                paths += [os.path.relpath(os.path.join(directory, n), REPO) for n in names]
    # a tracked file deleted in the working tree is not shipped
    return sorted(p for p in set(paths) if not BUILD_PRODUCTS.search(p)
                  and os.path.isfile(os.path.join(REPO, p)))


def directories_of(paths):
    found = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent:
            found.add(parent)
            parent = os.path.dirname(parent)
    return sorted(found)


def entry(name, mtime, mode, kind=tarfile.REGTYPE, size=0):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def tarball_bytes(prefix, paths, mtime):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(entry(prefix, mtime, 0o755, tarfile.DIRTYPE))
        members = [(d, None) for d in directories_of(paths)] + [(p, p) for p in paths]
        for name, path in sorted(members):
            if path is None:
                tar.addfile(entry(f"{prefix}/{name}", mtime, 0o755, tarfile.DIRTYPE))
                continue
            full = os.path.join(REPO, path)
            with open(full, "rb") as f:
                data = f.read()
            mode = 0o755 if os.access(full, os.X_OK) else 0o644
            tar.addfile(entry(f"{prefix}/{path}", mtime, mode, size=len(data)), io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outdir", default=os.path.join(REPO, "build", "dist"))
    args = parser.parse_args(argv)
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_MTIME)
    prefix = f"{NAME}-{version()}"
    data = tarball_bytes(prefix, dist_files(), mtime)
    os.makedirs(args.outdir, exist_ok=True)
    tarball = os.path.join(args.outdir, f"{prefix}.tar.gz")
    with open(tarball, "wb") as f:
        f.write(data)
    digest = hashlib.sha256(data).hexdigest()
    with open(f"{tarball}.sha256", "w") as f:
        f.write(f"{digest}  {os.path.basename(tarball)}\n")
    print(tarball)
    print(f"PKG_HASH:={digest}")
    makefile = os.path.join(REPO, "package", NAME, "Makefile")
    with open(makefile) as f:
        committed = re.search(r"^PKG_HASH:=(\S*)", f.read(), re.M)
    where = os.path.relpath(makefile, REPO)
    if committed and committed.group(1) == digest:
        print(f"{where}: PKG_HASH is this tarball's")
    else:
        print(f"{where}: PKG_HASH differs: set it to this one when releasing {prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
