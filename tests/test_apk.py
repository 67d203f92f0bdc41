"""flowprobe as an apk package (OpenWrt 25.12 and snapshots), installed offline.

tools/apk_package.py builds the package as the 25.12 SDK does (apk mkpkg,
package-pack.mk's metadata and scripts); this test installs it with
`apk --root ROOT --initdb add --allow-untrusted` into a fresh root holding
only an OpenWrt base, apk running the package's post-install script chrooted
into it, and checks:
- apk's file list is the package's: the install recipe's files and the
  Python package with its compiled core, nothing else; modes as the recipe's;
- the conffile list (/etc/config/flowprobe) and its sha256, where sysupgrade
  and apk read them (lib/apk/packages/flowprobe.conffiles{,_static});
- the post-install script made the `flowprobe` user and group (USERID) and
  enabled the init script (/etc/rc.d/S<START>flowprobe -> ../init.d/flowprobe);
- an upgrade keeps the user's /etc/config/flowprobe (the new one beside it as
  .apk-new) and the user (runs last: it changes the root).

Needs, else skipped saying so:
- APK_TOOLS: apk-tools 3's apk, or a checkout of alpinelinux/apk-tools you
  built (build/src/apk); nothing of it is built here;
- OPENWRT_BASE: a directory laid into the root first, the parts of an
  OpenWrt 25.12 root the scripts use: lib/functions.sh (base-files, the
  apk-aware one), lib/functions/{service,procd}.sh, etc/rc.common,
  etc/{passwd,group,shadow}, usr/share/libubox/jshn.sh (e.g. an unpacked
  25.12 rootfs); when it has no /bin/sh that runs here, the host's busybox and
  its libraries are added as a stand-in shell;
- root (apk chroots into the root to run the scripts).
The dependencies (libc, python3-light, libpcap, ...) come from the release's feeds
on a router; here each is an empty stand-in package of that name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import namedtuple

import pytest

import package_manifest as manifest

REPO = manifest.REPO
INIT_SCRIPT = os.path.join(REPO, "files", "etc", "init.d", "flowprobe")
BASE_NEEDS = ["lib/functions.sh", "etc/rc.common", "etc/passwd", "etc/group"]
Installed = namedtuple("Installed", "apk root package output tool arch")


def load_tool():
    path = os.path.join(REPO, "tools", "apk_package.py")
    spec = importlib.util.spec_from_file_location("apk_package", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def requirements():
    tools, base = os.environ.get("APK_TOOLS"), os.environ.get("OPENWRT_BASE")
    if not tools:
        pytest.skip("APK_TOOLS is not set: point it at apk-tools 3's apk (or a checkout of "
                    "alpinelinux/apk-tools you built) to build and install the apk package")
    if not base:
        pytest.skip("OPENWRT_BASE is not set: point it at the OpenWrt 25.12 base files the "
                    "package scripts use (lib/functions.sh, etc/rc.common, ...)")
    missing = [p for p in BASE_NEEDS if not os.path.isfile(os.path.join(base, p))]
    if missing:
        pytest.fail(f"OPENWRT_BASE={base} lacks {missing}")
    with open(os.path.join(base, "lib", "functions.sh")) as f:
        if "lib/apk/packages" not in f.read():
            pytest.fail(f"{base}/lib/functions.sh is not apk-aware (OpenWrt 24.10 or older)")
    if os.geteuid() != 0:
        pytest.skip("not root: apk chroots into the new root to run the package's scripts")
    return tools, base


def add_stand_in_shell(root):
    """/bin/sh: the host's busybox and the libraries it loads (stand-in)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("OPENWRT_BASE has no /bin/sh and there is no busybox (Debian: busybox)")
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    libraries = re.findall(r"(/\S+\.so[.\d]*) ", subprocess.run(
        ["ldd", busybox], capture_output=True, text=True, check=True).stdout + " ")
    for library in libraries:
        target = os.path.join(root, library.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(library, target)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = os.path.join(root, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)


def lay_base(base, root):
    shutil.copytree(base, root, symlinks=True, dirs_exist_ok=True)
    shell = os.path.join(root, "bin", "sh")
    runs = os.path.exists(shell) and subprocess.run(
        ["chroot", root, "/bin/sh", "-c", "true"], capture_output=True).returncode == 0
    if not runs:
        add_stand_in_shell(root)
    for directory in ("etc/rc.d", "tmp", "var/lock", "dev"):
        os.makedirs(os.path.join(root, directory), exist_ok=True)


def stand_in_dependencies(tool, apk, outdir, arch):
    """An empty package for each dependency, named as it (stand-ins: on a
    router the release's feeds provide them)."""
    empty = os.path.join(outdir, "empty")
    os.makedirs(empty, exist_ok=True)
    packages = []
    for name in tool.package_depends():
        info = {"name": name, "version": "0-r0", "description": f"stand-in for {name}",
                "license": "none", "origin": "stand-in"}
        packages.append(tool.mkpkg(apk, info, empty, [], os.path.join(outdir, f"{name}.apk"),
                                   arch))
    return packages


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tools, base = requirements()
    tool = load_tool()
    apk = tool.apk_program(tools)
    work = tmp_path_factory.mktemp("apk")
    arch = subprocess.run([apk, "--print-arch"], capture_output=True, text=True,
                          check=True).stdout.strip()
    package = tool.build(apk, str(work / "out"), arch)
    dependencies = stand_in_dependencies(tool, apk, str(work / "deps"), arch)
    root = str(work / "root")
    lay_base(base, root)
    result = subprocess.run([apk, "--root", root, "--initdb", "--no-network", "--no-cache",
                             "add", "--allow-untrusted", package, *dependencies],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return Installed(apk, root, package, result.stdout + result.stderr, tool, arch)


def package_file_list(apk, root):
    result = subprocess.run([apk, "--root", root, "--no-network", "info", "-L", "flowprobe"],
                            capture_output=True, text=True, check=True)
    return sorted("/" + line.strip() for line in result.stdout.splitlines()
                  if line.strip() and not line.endswith(":"))


def test_apk_installs_exactly_the_packages_files(installed):
    apk, root = installed.apk, installed.root
    listed = package_file_list(apk, root)
    recipe = {destination: entry_mode for destination, entry_mode in (
        (e.destination, e.mode) for e in manifest.installed_entries()[1])}
    python = [p for p in listed if re.match(r"/usr/lib/python3[.\d]*/site-packages/flowprobe/",
                                            p)]
    meta = [p for p in listed if p.startswith("/lib/apk/packages/")]
    assert set(listed) == set(recipe) | set(python) | set(meta), sorted(
        set(listed) ^ (set(recipe) | set(python) | set(meta)))
    assert sorted(meta) == ["/lib/apk/packages/flowprobe.conffiles",
                            "/lib/apk/packages/flowprobe.conffiles_static",
                            "/lib/apk/packages/flowprobe.list",
                            "/lib/apk/packages/flowprobe.rusers"]
    assert any(p.endswith(".abi3.so") for p in python), "no compiled core"
    assert not [p for p in python if p.endswith((".c", ".h", "_build_cmeter.py"))]
    for destination, mode in recipe.items():
        assert os.stat(os.path.join(root, destination.lstrip("/"))).st_mode & 0o7777 == mode, \
            destination
    # the .list the scripts read is apk's list (less the lists written after it)
    with open(os.path.join(root, "lib/apk/packages/flowprobe.list")) as f:
        assert f.read().split() == [p for p in listed if not p.endswith(
            (".list", ".conffiles", ".conffiles_static"))]


def test_the_conffiles_are_listed_with_their_checksums(installed):
    root = installed.root
    packages = os.path.join(root, "lib", "apk", "packages")
    with open(os.path.join(packages, "flowprobe.conffiles")) as f:
        assert f.read().split() == manifest.conffiles() == ["/etc/config/flowprobe"]
    with open(os.path.join(packages, "flowprobe.conffiles_static")) as f:
        static = dict(line.split() for line in f if line.strip())
    with open(os.path.join(root, "etc", "config", "flowprobe"), "rb") as f:
        assert static == {"/etc/config/flowprobe": hashlib.sha256(f.read()).hexdigest()}


def test_post_install_made_the_user_and_enabled_the_service(installed):
    root, output = installed.root, installed.output
    with open(os.path.join(root, "etc", "passwd")) as f:
        users = {line.split(":")[0]: line.strip().split(":") for line in f if line.strip()}
    with open(os.path.join(root, "etc", "group")) as f:
        groups = {line.split(":")[0]: line.strip().split(":") for line in f if line.strip()}
    assert "flowprobe" in users, f"no flowprobe user; apk said:\n{output}"
    assert "flowprobe" in groups
    user, group = users["flowprobe"], groups["flowprobe"]
    assert user[3] == group[2], "the user's primary group is not the flowprobe group"
    assert "flowprobe" in group[3].split(","), group
    assert user[6] == "/bin/false"
    with open(INIT_SCRIPT) as f:
        init = f.read()
    # rc.common enable: S<START> and, when the script has STOP, K<STOP>
    for prefix, variable in (("S", "START"), ("K", "STOP")):
        number = re.search(rf"^{variable}=(\d+)$", init, re.M)
        if number is None and prefix == "K":
            continue
        link = os.path.join(root, "etc", "rc.d", f"{prefix}{number.group(1)}flowprobe")
        assert os.path.islink(link), f"{link} missing: {os.listdir(os.path.dirname(link))}"
        assert os.readlink(link) == "../init.d/flowprobe"


def test_the_package_says_what_the_makefile_says(installed):
    apk, root = installed.apk, installed.root
    result = subprocess.run([apk, "--root", root, "--no-network", "info", "-a", "flowprobe"],
                            capture_output=True, text=True, check=True)
    values = manifest.variables()
    assert f"flowprobe-{values['PKG_VERSION']}-r{values['PKG_RELEASE']}" in result.stdout
    depends = re.search(r"depends on:\n((?:.+\n)+)", result.stdout)
    assert depends and sorted(depends.group(1).split()) == sorted(
        ["libc", *manifest.depends()]), result.stdout


def test_an_upgrade_keeps_the_users_config(installed, tmp_path):
    apk, root = installed.apk, installed.root
    config = os.path.join(root, "etc", "config", "flowprobe")
    with open(config, "a") as f:
        f.write("# the user's change\n")
    with open(config) as f:
        edited = f.read()
    values = manifest.variables()
    newer = f"{values['PKG_VERSION']}-r{int(values['PKG_RELEASE']) + 1}"
    package = installed.tool.build(apk, str(tmp_path), installed.arch, version=newer)
    result = subprocess.run([apk, "--root", root, "--no-network", "--no-cache", "add",
                             "--allow-untrusted", package], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"-> {newer}" in result.stdout
    with open(config) as f:
        assert f.read() == edited, "the upgrade replaced the user's config"
    assert os.path.isfile(config + ".apk-new")
    with open(os.path.join(root, "etc", "passwd")) as f:
        assert sum(line.startswith("flowprobe:") for line in f) == 1
