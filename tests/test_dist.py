"""`make dist` and the package Makefile's release path (README: Packaging for the feeds).

- the tarball is reproducible (same bytes twice, whatever the umask and time
  zone), named and laid out as package/flowprobe/Makefile's PKG_SOURCE and
  package.mk's unpack expect, owned by 0/0 at one fixed time, with no build
  product, and its .sha256 is its sha256;
- unpacked, it holds exactly what the working-tree path (Build/Prepare)
  copies, and every file the install recipe takes from FLOWPROBE_FILES, so the
  wheel build and filespec that test_package.py runs on the working tree hold
  for the tarball too;
- with OPENWRT_TREE set (a buildroot or SDK with the packages and luci feeds
  and this repository installed as feeds): the buildroot's own `check` agrees
  with the .sha256 (and names it when PKG_HASH is wrong), its `prepare`
  unpacks the tarball into PKG_BUILD_DIR, and the two Makefiles, laid out as
  in the packages feed (net/flowprobe/) and the luci feed
  (applications/luci-app-flowprobe/), include ../../lang/python/
  python3-package.mk and ../../luci.mk and pass the metadata scan.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

import package_manifest as manifest

REPO = manifest.REPO
DIST_TOOL = os.path.join(REPO, "tools", "dist.py")
LUCI_APP = os.path.join(REPO, "luci-app-flowprobe")
WORKING_TREE_FILES = os.path.join(REPO, "files")


def load_dist_tool():
    spec = importlib.util.spec_from_file_location("dist_tool", DIST_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_dist(outdir, umask=0o022, tz="UTC"):
    env = dict(os.environ, TZ=tz)
    env.pop("SOURCE_DATE_EPOCH", None)
    result = subprocess.run([sys.executable, DIST_TOOL, "--outdir", str(outdir)], env=env,
                            capture_output=True, text=True, check=True,
                            preexec_fn=lambda: os.umask(umask))
    tarball = result.stdout.splitlines()[0]
    digest = re.search(r"^PKG_HASH:=([0-9a-f]{64})$", result.stdout, re.M).group(1)
    return tarball, digest


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return make_dist(tmp_path_factory.mktemp("dist"))


def test_make_dist_is_reproducible(dist, tmp_path):
    tarball, digest = dist
    again, again_digest = make_dist(tmp_path, umask=0o077, tz="Asia/Kathmandu")
    with open(tarball, "rb") as a, open(again, "rb") as b:
        data = a.read()
        assert data == b.read(), "two runs of make dist gave different bytes"
    assert digest == again_digest == hashlib.sha256(data).hexdigest()
    with open(f"{tarball}.sha256") as f:
        assert f.read() == f"{digest}  {os.path.basename(tarball)}\n"


def test_the_tarball_is_what_the_package_makefile_fetches(dist):
    tarball, _ = dist
    values = manifest.variables()
    name, version = values["PKG_NAME"], values["PKG_VERSION"]
    assert values["PKG_SOURCE"] == f"{name}-{version}.tar.gz" == os.path.basename(tarball)
    assert re.fullmatch(r"[0-9a-f]{64}", values["PKG_HASH"]), "PKG_HASH is not a sha256"
    assert re.fullmatch(r"https://\S+/", values["PKG_SOURCE_URL"]), values["PKG_SOURCE_URL"]
    assert manifest.package_field(manifest.PACKAGE_MAKEFILE, "flowprobe", "URL")
    # package.mk unpacks into $(PKG_BUILD_DIR)/.., which ends in $(PKG_NAME)-$(PKG_VERSION)
    prefix = f"{name}-{version}"
    mtime = load_dist_tool().DEFAULT_MTIME
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == prefix
    problems = [m.name for m in members if m.name != prefix and not m.name.startswith(prefix + "/")]
    problems += [f"{m.name}: {m.uid}/{m.gid} {m.uname!r}/{m.gname!r}" for m in members
                 if (m.uid, m.gid, m.uname, m.gname) != (0, 0, "", "")]
    problems += [f"{m.name}: mtime {m.mtime}" for m in members if m.mtime != mtime]
    problems += [f"{m.name}: mode {m.mode:o}" for m in members if m.mode not in (0o644, 0o755)]
    problems += [n for n in names if re.search(r"__pycache__|\.egg-info|\.so$|\.pyc$", n)]
    assert not problems, "\n".join(problems)
    for needed in ("pyproject.toml", "setup.py", "LICENSE", "README.md",
                   "src/flowprobe/__init__.py", "src/flowprobe/_build_cmeter.py",
                   "files/etc/init.d/flowprobe"):
        assert f"{prefix}/{needed}" in names, f"the tarball lacks {needed}"


def unpack(tarball, build_dir):
    """package.mk's default Build/Prepare: unpack into $(PKG_BUILD_DIR)/..."""
    options = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}  # 3.12 warns without
    with tarfile.open(tarball) as tar:
        tar.extractall(os.path.dirname(build_dir), **options)


def tree_files(root):
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = path
    return found


def test_the_unpacked_tarball_is_what_the_working_tree_path_builds(dist, tmp_path):
    tarball, _ = dist
    values = manifest.variables()
    prefix = f"{values['PKG_NAME']}-{values['PKG_VERSION']}"
    from_tarball = tmp_path / "tarball" / prefix
    from_tarball.parent.mkdir()
    unpack(tarball, str(from_tarball))
    from_tree = tmp_path / "tree"
    from_tree.mkdir()
    substitutions = dict(values, PKG_BUILD_DIR=str(from_tree), CP="cp -fpR", FIND="find")
    prepare = "\n".join(manifest.expand(line, substitutions)
                        for line in manifest.recipe(manifest.PACKAGE_MAKEFILE, "Build/Prepare"))
    subprocess.run(["sh", "-ec", prepare], check=True)

    shipped = set(load_dist_tool().dist_files())
    unpacked = tree_files(from_tarball)
    assert set(unpacked) == shipped
    # the working-tree path copies the same build inputs (it may also copy
    # files git does not track, which a release leaves out)
    copied = tree_files(from_tree)
    build_inputs = {p for p in shipped if not p.startswith("files/")}
    assert build_inputs <= set(copied), sorted(build_inputs - set(copied))
    differing = [p for p in build_inputs if open(unpacked[p], "rb").read() != open(
        copied[p], "rb").read() or os.access(unpacked[p], os.X_OK) != os.access(copied[p], os.X_OK)]
    assert differing == []

    # the install recipe with FLOWPROBE_FILES = $(PKG_BUILD_DIR)/files
    problems = []
    for entry in manifest.installed_entries()[1]:
        if entry.built:
            continue
        assert entry.source.startswith(WORKING_TREE_FILES + "/"), entry.source
        source = os.path.join(from_tarball, "files",
                              os.path.relpath(entry.source, WORKING_TREE_FILES))
        if not os.path.isfile(source):
            problems.append(f"{entry.destination}: not in the tarball")
        elif bool(entry.mode & 0o111) and not os.access(source, os.X_OK):
            problems.append(f"{entry.destination}: installed as a program, not executable")
    assert not problems, "\n".join(problems)


# ---- with a real OpenWrt tree ----

def openwrt_tree():
    tree = os.environ.get("OPENWRT_TREE")
    if not tree:
        pytest.skip("OPENWRT_TREE is not set: point it at an OpenWrt buildroot or SDK whose feeds "
                    "(packages, luci and this repository) are installed, to check and unpack the "
                    "release tarball with its own make rules")
    for feed in ("packages", "luci", "flowprobe"):
        if not os.path.isdir(os.path.join(tree, "feeds", feed)):
            pytest.fail(f"{tree}/feeds/{feed} is missing: ./scripts/feeds update -a && "
                        "./scripts/feeds install -a")
    return tree


def buildroot_make(tree, *args):
    """The package's own make, as the buildroot's package/Makefile runs it."""
    return subprocess.run(["make", "--no-print-directory", "-C",
                           os.path.dirname(manifest.PACKAGE_MAKEFILE), f"TOPDIR={tree}", *args,
                           "V=s"], capture_output=True, text=True)


def test_the_buildroot_checks_and_unpacks_the_tarball(dist, tmp_path):
    tree = openwrt_tree()
    tarball, digest = dist
    downloads = tmp_path / "dl"
    downloads.mkdir()
    shutil.copy(tarball, downloads)
    # FLOWPROBE_TREE= : the tarball, as in a feed of its own
    common = ["FLOWPROBE_TREE=", f"DL_DIR={downloads}"]
    # a wrong PKG_HASH: the buildroot's check names the tarball's sha256, the .sha256's
    result = buildroot_make(tree, "check", *common, f"PKG_HASH={'0' * 64}")
    assert f"PKG_HASH does not match {os.path.basename(tarball)} hash {digest}" in (
        result.stdout + result.stderr), result.stdout[-3000:] + result.stderr[-3000:]

    gzip = os.path.join(tree, "staging_dir", "host", "bin", "libdeflate-gzip")
    if not os.path.exists(gzip):
        pytest.skip(f"{gzip} is missing (the buildroot's host tools are not built): its unpack "
                    "step cannot run")
    buildroot_make(tree, "clean", *common)
    result = buildroot_make(tree, "prepare", *common, f"PKG_HASH={digest}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    unpacked = re.search(r"tar -C (\S+)/\.\. -xf", result.stdout)
    assert unpacked, "the buildroot did not unpack the tarball:\n" + result.stdout[-3000:]
    with tarfile.open(tarball) as tar:
        expected = sorted(m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile())
    # less the buildroot's own .prepared stamps
    assert sorted(p for p in tree_files(unpacked.group(1)) if not p.startswith(".")) == expected


def dump(directory, tree):
    """The metadata scan of one package directory, with make's database (-p)."""
    result = subprocess.run(["make", "--no-print-directory", "-r", "-p", "-C", directory, "DUMP=1",
                             f"TOPDIR={tree}"], capture_output=True, text=True)
    assert result.returncode == 0 and "Package: " in result.stdout, result.stderr[-3000:]
    makefiles = re.search(r"^MAKEFILE_LIST := (.*)$", result.stdout, re.M).group(1).split()
    return result.stdout, makefiles


def test_the_makefiles_work_in_the_packages_and_luci_feed_layouts(tmp_path):
    tree = openwrt_tree()
    packages = tmp_path / "packages"
    (packages / "net" / "flowprobe").mkdir(parents=True)
    shutil.copy(manifest.PACKAGE_MAKEFILE, packages / "net" / "flowprobe" / "Makefile")
    os.symlink(os.path.realpath(os.path.join(tree, "feeds", "packages", "lang")),
               packages / "lang")
    output, makefiles = dump(str(packages / "net" / "flowprobe"), tree)
    assert "../../lang/python/python3-package.mk" in makefiles, makefiles
    assert "Package: flowprobe\n" in output

    app = tmp_path / "luci" / "applications" / "luci-app-flowprobe"
    app.mkdir(parents=True)
    shutil.copy(os.path.join(LUCI_APP, "Makefile"), app / "Makefile")
    for part in ("htdocs", "root", "po"):
        os.symlink(os.path.join(LUCI_APP, part), app / part)
    os.symlink(os.path.realpath(os.path.join(tree, "feeds", "luci", "luci.mk")),
               tmp_path / "luci" / "luci.mk")
    output, makefiles = dump(str(app), tree)
    assert "../../luci.mk" in makefiles, makefiles
    assert "Package: luci-app-flowprobe\n" in output
