#!/usr/bin/env python3
"""Build flowprobe's apk package as the OpenWrt 25.12 SDK does, with apk-tools 3.

    tools/apk_package.py --apk-tools PATH [--out DIR]

PATH is the `apk` program of apk-tools 3 (`apk mkpkg` is new in 3), or a
checkout of alpinelinux/apk-tools that you built (its build/src/apk, as its
meson build leaves it, or src/apk): this script runs it and builds nothing of
apk-tools itself.

What it does is package-pack.mk's apk branch (openwrt/openwrt include/), fed
from package/flowprobe/Makefile (read by tests/package_manifest.py):
- the package directory (IDIR): the files of the install recipe and the
  Python package with its compiled core (`make build`'s, for the host: as the
  QEMU test stages it), at their OpenWrt paths;
- lib/apk/packages/flowprobe.rusers (USERID), .list (every file, sorted),
  .conffiles (Package/flowprobe/conffiles) and .conffiles_static (each with
  its sha256);
- the post-install script the SDK writes (add_group_and_user,
  default_postinst: the user, and /etc/init.d/* enabled), post-upgrade and
  pre-deinstall;
- `apk mkpkg` with name, version (PKG_VERSION-rPKG_RELEASE), description,
  arch, license, origin, url, maintainer, depends (libc and DEPENDS, without
  + and @),
  the scripts and the files, under fakeroot when not root.
The .apk goes to build/apk/ (or --out) and its path is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "flowprobe"
# where the package sits in the packages feed: package.mk's SOURCE, apk's origin
FEED_SOURCE = "feeds/packages/net/flowprobe"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


manifest = _load("package_manifest", os.path.join(REPO, "tests", "package_manifest.py"))
staging = _load("qemu_staging", os.path.join(REPO, "qemu", "vm", "staging.py"))


class ApkError(RuntimeError):
    pass


def apk_program(path):
    """The apk binary: PATH itself, or a built checkout's."""
    candidates = [path] if os.path.isfile(path) else [
        os.path.join(path, "build", "src", "apk"), os.path.join(path, "src", "apk")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if not version.stdout.startswith("apk-tools 3"):
                raise ApkError(f"{candidate} is not apk-tools 3: {version.stdout.strip()!r}")
            return os.path.abspath(candidate)
    raise ApkError(f"no apk program at {path}: give the apk binary of apk-tools 3, or a "
                   "checkout of it that you built (build/src/apk)")


def package_depends():
    return ["libc"] + [name for name in manifest.depends() if name != "libc"]


def metadata():
    """What the SDK passes to apk mkpkg, from the package Makefile."""
    values = manifest.variables()
    field = lambda name: manifest.package_field(manifest.PACKAGE_MAKEFILE, PACKAGE, name)  # noqa: E731
    description = " ".join(" ".join(line.strip() for _, line in manifest.define_block(
        manifest.PACKAGE_MAKEFILE, f"Package/{PACKAGE}/description")).split())
    return {
        "name": PACKAGE,
        # include/package.mk with CONFIG_USE_APK: $(PKG_VERSION)-r$(PKG_RELEASE)
        "version": f"{values['PKG_VERSION']}-r{values['PKG_RELEASE']}",
        "description": description,
        "license": values["PKG_LICENSE"],
        "origin": FEED_SOURCE,
        "url": field("URL"),
        "maintainer": values["PKG_MAINTAINER"],
        # PKG_FIXUP_DEPENDS puts +libc first (package-defaults.mk); filter_deps
        # drops + and @ conditions and keeps COND:pkg as pkg
        "depends": " ".join(package_depends()),
        "userid": field("USERID"),
        "conffiles": manifest.conffiles(),
    }


def stage_files(idir):
    """The package directory: the install recipe's files and the Python package."""
    entries = staging.manifest_files()
    if not any(staging.OPENWRT_SITE_PACKAGES.match(d) for _, d, _ in entries):
        entries += staging.python_package_files()
    for source, destination, mode in entries:
        target = os.path.join(idir, destination.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(source if isinstance(source, bytes) else open(source, "rb").read())
        if mode is None:
            mode = 0o755 if destination.startswith(staging.EXECUTABLE_DIRECTORIES) else 0o644
        os.chmod(target, mode)


# the scripts package-pack.mk writes (ADIR), for a package without its own
# postinst/prerm (flowprobe has none)
def post_install(name):
    return ("#!/bin/sh\n"
            '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
            "[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
            ". ${IPKG_INSTROOT}/lib/functions.sh\n"
            'export root="${IPKG_INSTROOT}"\n'
            f'export pkgname="{name}"\n'
            "add_group_and_user\n"
            "default_postinst\n")


def post_upgrade(name):
    body = post_install(name).split("\n", 1)[1]  # its #! line dropped
    return "#!/bin/sh\nexport PKG_UPGRADE=1\n" + body


def pre_deinstall(name):
    return ("#!/bin/sh\n"
            "[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
            ". ${IPKG_INSTROOT}/lib/functions.sh\n"
            'export root="${IPKG_INSTROOT}"\n'
            f'export pkgname="{name}"\n'
            "default_prerm\n")


def package_files(idir, info):
    """lib/apk/packages/<name>.{rusers,list,conffiles,conffiles_static}, in
    package-pack.mk's order (the list is taken before the conffiles lists)."""
    name = info["name"]
    meta = os.path.join(idir, "lib", "apk", "packages")
    os.makedirs(meta, exist_ok=True)
    if info["userid"]:
        with open(os.path.join(meta, f"{name}.rusers"), "w") as f:
            f.write(info["userid"] + "\n")
    listed = sorted("/" + os.path.relpath(os.path.join(d, n), idir)
                    for d, _, names in os.walk(idir) for n in names)
    with open(os.path.join(meta, f"{name}.list"), "w") as f:
        f.write("".join(p + "\n" for p in listed))
    if info["conffiles"]:
        with open(os.path.join(meta, f"{name}.conffiles"), "w") as f:
            f.write("".join(p + "\n" for p in info["conffiles"]))
        with open(os.path.join(meta, f"{name}.conffiles_static"), "w") as f:
            for path in info["conffiles"]:
                full = os.path.join(idir, path.lstrip("/"))
                if os.path.isfile(full):
                    digest = hashlib.sha256(open(full, "rb").read()).hexdigest()
                    f.write(f"{path} {digest}\n")


def mkpkg(apk, info, idir, scripts, output, arch):
    """apk mkpkg as package-pack.mk runs it."""
    command = [apk, "mkpkg",
               "--info", f"name:{info['name']}",
               "--info", f"version:{info['version']}",
               "--info", f"description:{info['description']}",
               "--info", f"arch:{arch}",
               "--info", f"license:{info.get('license', '')}",
               "--info", f"origin:{info.get('origin', '')}",
               "--info", f"url:{info.get('url', '')}",
               "--info", f"maintainer:{info.get('maintainer', '')}"]
    if info.get("provides"):
        command += ["--info", f"provides:{info['provides']}"]
    for kind, path in scripts:
        command += ["--script", f"{kind}:{path}"]
    command += ["--info", f"depends:{info.get('depends', '')}", "--files", idir,
                "--output", output]
    if os.geteuid() != 0:
        fakeroot = shutil.which("fakeroot")
        if not fakeroot:
            raise ApkError("not root and no fakeroot (Debian: apt-get install fakeroot)")
        command = [fakeroot, *command]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ApkError(f"apk mkpkg failed: {result.stderr.strip() or result.stdout.strip()}")
    return output


def build(apk, outdir, arch=None, version=None):
    """The flowprobe .apk in outdir (version: another than the Makefile's, to
    test an upgrade); returns its path."""
    info = metadata()
    info["version"] = version or info["version"]
    arch = arch or subprocess.run([apk, "--print-arch"], capture_output=True, text=True,
                                  check=True).stdout.strip()
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flowprobe-apk-") as work:
        idir, adir = os.path.join(work, "ipkg"), os.path.join(work, "apk")
        os.makedirs(idir)
        os.makedirs(adir)
        stage_files(idir)
        package_files(idir, info)
        scripts = []
        for kind, text in (("post-install", post_install(info["name"])),
                           ("post-upgrade", post_upgrade(info["name"])),
                           ("pre-deinstall", pre_deinstall(info["name"]))):
            path = os.path.join(adir, kind)
            with open(path, "w") as f:
                f.write(text)
            scripts.append((kind, path))
        output = os.path.join(outdir, f"{info['name']}-{info['version']}.apk")
        return mkpkg(apk, info, idir, scripts, output, arch)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apk-tools", required=True,
                        help="apk-tools 3's apk binary, or a built checkout of apk-tools")
    parser.add_argument("--out", default=os.path.join(REPO, "build", "apk"))
    args = parser.parse_args(argv)
    try:
        print(build(apk_program(args.apk_tools), args.out))
    except (ApkError, staging.StagingError) as error:
        print(f"apk_package: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
