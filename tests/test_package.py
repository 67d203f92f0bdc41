"""Checks of the OpenWrt package (package/flowprobe/) that need no SDK.

- every module the daemon imports at run time, every library the C core
  links and every kernel interface it speaks maps to a package in DEPENDS,
  and DEPENDS names nothing that none of them needs;
- every file the install recipe names exists (executables executable), every
  file under files/ is installed, the init script's paths are the installed ones;
- the package's own Build/Prepare recipe, the wheel build and install the SDK
  runs, and its filespec, on the host: what would reach the router;
- every JSON file of the repository parses;
- the init script and test.sh are shfmt-clean as the SDK's CI wants;
- the version is one that both opkg and apk accept, and the code's own;
- with OPENWRT_TREE set, OpenWrt's own metadata scan of every package here.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import package_manifest as manifest

REPO = manifest.REPO
SOURCE_ROOT = os.path.join(REPO, "src", "flowprobe")
OWN_PACKAGE = "flowprobe"
BUILD_ONLY_MODULES = {"_build_cmeter.py"}  # the cffi builder runs in the SDK, on the host
INIT_SCRIPT = os.path.join(REPO, "files", "etc", "init.d", "flowprobe")
PACKAGE_DIR = os.path.dirname(manifest.PACKAGE_MAKEFILE)

# Standard-library modules that OpenWrt ships outside python3-light, read from
# openwrt/packages lang/python/python3/files/python3-package-*.mk (each one's
# Py3BasePackage file list, snapshot 0521bb5) and lang/python/python3/Makefile.
# Every other module of sys.stdlib_module_names is in python3-light (its
# filespec is the whole /usr/lib/python3.X minus these) or python3-base, which
# python3-light depends on.
STDLIB_SPLIT_PACKAGES = {
    "asyncio": "python3-asyncio",
    "_codecs_cn": "python3-codecs", "_codecs_hk": "python3-codecs",
    "_codecs_iso2022": "python3-codecs", "_codecs_jp": "python3-codecs",
    "_codecs_kr": "python3-codecs", "_codecs_tw": "python3-codecs",
    "unicodedata": "python3-codecs",
    "ctypes": "python3-ctypes", "_ctypes": "python3-ctypes",
    "dbm": "python3-dbm", "_dbm": "python3-dbm", "_gdbm": "python3-dbm",
    "decimal": "python3-decimal", "_decimal": "python3-decimal",
    "logging": "python3-logging",
    "lzma": "python3-lzma", "_lzma": "python3-lzma",
    "multiprocessing": "python3-multiprocessing", "_multiprocessing": "python3-multiprocessing",
    "curses": "python3-ncurses", "_curses": "python3-ncurses", "_curses_panel": "python3-ncurses",
    "ssl": "python3-openssl", "_ssl": "python3-openssl", "_hashlib": "python3-openssl",
    "doctest": "python3-pydoc", "pydoc": "python3-pydoc", "pydoc_data": "python3-pydoc",
    "readline": "python3-readline",
    "sqlite3": "python3-sqlite3", "_sqlite3": "python3-sqlite3",
    "unittest": "python3-unittest",
    "email": "python3-urllib", "urllib": "python3-urllib",
    "uuid": "python3-uuid", "_uuid": "python3-uuid",
    "xml": "python3-xml", "xmlrpc": "python3-xml", "_elementtree": "python3-xml",
    "pyexpat": "python3-xml",
    "ensurepip": "python3-venv", "venv": "python3-venv",
}
# removed from python3-light's filespec and in no other package
STDLIB_NOT_ON_OPENWRT = {"idlelib", "tkinter", "_tkinter", "turtledemo", "turtle", "webbrowser",
                         "_osx_support"}
INTERPRETER_PACKAGE = "python3-light"

# Third-party modules and the OpenWrt package that provides each
# (lang/python/python-*/Makefile in openwrt/packages).
THIRD_PARTY_PACKAGES = {
    "cffi": "python3-cffi",
    "_cffi_backend": "python3-cffi",  # what a compiled cffi module imports
    "ubus": "python3-ubus",
    "uci": "python3-uci", "euci": "python3-uci",
    "jinja2": "python3-jinja2",
}
# Imported only by a command the daemon never runs, and left to the user to
# install (README says how): the package does not pull them in
OPTIONAL_MODULES = {"jinja2": "flowprobe report (src/flowprobe/report/); opkg install "
                              "python3-jinja2"}
# C libraries the extension links (set_source libraries=[...]) and their packages
C_LIBRARY_PACKAGES = {"pcap": "libpcap"}
# Kernel interfaces the C core speaks, by the header it includes, and the
# kernel module package that provides them (nlbwmon's Makefile does the same)
KERNEL_HEADER_PACKAGES = {
    "linux/netfilter/nfnetlink_conntrack.h": "kmod-nf-conntrack-netlink",
}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def pyproject_table(name):
    """A table of pyproject.toml as {key: string value} (tomllib is 3.11+;
    the file's tables of interest hold only `key = "string"` lines)."""
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        text = f.read()
    body = re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert body, f"pyproject.toml has no [{name}]"
    return dict(re.findall(r'^(\w[\w.-]*)\s*=\s*"([^"]*)"', body.group(1), re.M))


# ---- what the code needs ----

def runtime_sources():
    for directory, subdirectories, names in os.walk(SOURCE_ROOT):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py") and name not in BUILD_ONLY_MODULES:
                yield os.path.join(directory, name)


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(tree):
    """Absolute module names imported anywhere in a module (functions too:
    they run on the router), including importlib.import_module("literal"),
    but not under `if TYPE_CHECKING:`."""
    found = []

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            found.append(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def compiled_sources():
    """The C files the builder compiles (its C_SOURCES list), and the local
    headers they include, as paths."""
    with open(os.path.join(SOURCE_ROOT, "_build_cmeter.py")) as f:
        tree = ast.parse(f.read())
    names = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", None) == "C_SOURCES" for t in n.targets))
    pending = [os.path.join(SOURCE_ROOT, name) for name in names]
    seen = []
    while pending:
        path = os.path.normpath(pending.pop())
        if path in seen or not os.path.isfile(path):
            continue
        seen.append(path)
        with open(path) as f:
            for kind, header in INCLUDE.findall(f.read()):
                if kind == '"':
                    pending.append(os.path.join(os.path.dirname(path), header))
    return sorted(seen)


def cffi_builder():
    """The compiled module's name and the C libraries it links, from the
    builder's ffibuilder.set_source(name, ..., libraries=[...])."""
    with open(os.path.join(SOURCE_ROOT, "_build_cmeter.py")) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "set_source":
            libraries = next((ast.literal_eval(k.value) for k in node.keywords
                              if k.arg == "libraries"), [])
            return ast.literal_eval(node.args[0]), libraries
    raise AssertionError("_build_cmeter.py: no ffibuilder.set_source(...) call")


def package_for_module(module):
    """The OpenWrt package that provides a top-level module, or None for the
    daemon's own; AssertionError when none does."""
    if module == OWN_PACKAGE:
        return None
    if module in STDLIB_NOT_ON_OPENWRT:
        raise AssertionError(f"{module} is not packaged for OpenWrt")
    if module in sys.stdlib_module_names:
        return STDLIB_SPLIT_PACKAGES.get(module, INTERPRETER_PACKAGE)
    if module in THIRD_PARTY_PACKAGES:
        return THIRD_PARTY_PACKAGES[module]
    raise AssertionError(f"{module} maps to no OpenWrt package: add it to THIRD_PARTY_PACKAGES "
                         f"in {os.path.relpath(__file__, REPO)}")


def needed_packages():
    """{package: [why, ...]} for everything the installed daemon needs."""
    compiled_module, libraries = cffi_builder()
    needs = {INTERPRETER_PACKAGE: ["the interpreter"]}
    for library in libraries:
        if library not in C_LIBRARY_PACKAGES:
            raise AssertionError(f"the C core links lib{library}: add its OpenWrt package to "
                                 f"C_LIBRARY_PACKAGES in {os.path.relpath(__file__, REPO)}")
        needs.setdefault(C_LIBRARY_PACKAGES[library], []).append(
            f"{compiled_module} links lib{library}")
    for path in compiled_sources():
        with open(path) as f:
            for kind, header in INCLUDE.findall(f.read()):
                if kind == "<" and header in KERNEL_HEADER_PACKAGES:
                    needs.setdefault(KERNEL_HEADER_PACKAGES[header], []).append(
                        f"{os.path.relpath(path, REPO)} speaks {header}")
    for path in runtime_sources():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        where = os.path.relpath(path, REPO)
        for module in imported_modules(tree):
            if module == compiled_module:
                module, why = "_cffi_backend", f"{where} imports {compiled_module} (cffi API mode)"
            else:
                why = f"{where} imports {module}"
            if module.split(".")[0] in OPTIONAL_MODULES:
                continue
            try:
                package = package_for_module(module.split(".")[0])
            except AssertionError as e:
                raise AssertionError(f"{where}: {e}") from None
            if package:
                needs.setdefault(package, []).append(why)
    return needs


# ---- the checks ----

def test_the_import_walk_sees_what_it_must():
    source = (
        "import os.path\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    import decimal\n"
        "else:\n"
        "    import json\n"
        "def later():\n"
        "    import ubus\n"
        "    return importlib.import_module('uci')\n"
    )
    assert imported_modules(ast.parse(source)) == ["os.path", "typing", "json", "ubus", "uci"]
    # and on the real code, the ones known to be there
    needs = needed_packages()
    # collector URLs and SQLite URIs are taken apart without urllib (python3-urllib
    # carries the email package too): export/collector_url.py, store/segments.py
    assert "python3-urllib" not in needs
    assert any("imports flowprobe._cmeter_ffi" in why for why in needs["python3-cffi"])
    assert "python3-uci" not in needs   # the strict UCI parser reads the file itself
    assert any("links libpcap" in why for why in needs["libpcap"])


def test_every_stdlib_split_package_is_a_known_stdlib_module():
    unknown = sorted(m for m in STDLIB_SPLIT_PACKAGES if m not in sys.stdlib_module_names
                     and not m.startswith("_") and m not in {"pydoc_data"})
    assert unknown == []


def test_depends_names_exactly_what_the_daemon_needs():
    needs = needed_packages()
    declared = set(manifest.depends())
    missing = {package: needs[package] for package in sorted(set(needs) - declared)}
    unneeded = sorted(declared - set(needs))
    problems = [f"DEPENDS lacks +{package}, needed because: {'; '.join(why[:3])}"
                for package, why in missing.items()]
    problems += [f"DEPENDS names +{package}, which no runtime import or linked library needs"
                 for package in unneeded]
    assert not problems, f"{manifest.PACKAGE_MAKEFILE}:\n  " + "\n  ".join(problems)


def test_every_installed_file_exists():
    directories, files = manifest.installed_entries()
    assert files, "the install recipe installs nothing"
    scripts = pyproject_table("project.scripts")
    problems = []
    for entry in files:
        if entry.built:
            name = os.path.basename(entry.source)
            expected = f"{manifest.BUILD_OUTPUT_PREFIX}usr/bin/{name}"
            if entry.source != expected or name not in scripts:
                problems.append(f"{entry.source}: not a console script of pyproject.toml")
        elif not os.path.isfile(entry.source):
            problems.append(f"{entry.source}: no such file")
        elif entry.mode & 0o111 and not os.access(entry.source, os.X_OK):
            problems.append(f"{entry.source}: installed as a program but not executable here")
        if os.path.dirname(entry.destination) not in directories:
            problems.append(f"{entry.destination}: its directory is not made by $(INSTALL_DIR)")
    assert not problems, "\n".join(problems)


def test_the_package_ships_every_file_under_files():
    shipped = {source for source, _ in manifest.installed_files()}
    files_root = os.path.join(REPO, "files")
    unshipped = sorted(os.path.relpath(os.path.join(d, n), REPO)
                       for d, _, names in os.walk(files_root) for n in names
                       if os.path.join(d, n) not in shipped)
    assert unshipped == [], f"not installed by {manifest.PACKAGE_MAKEFILE}: {unshipped}"


def test_the_init_script_and_config_are_where_the_package_puts_them():
    destinations = {destination for _, destination in manifest.installed_files()}
    with open(INIT_SCRIPT) as f:
        init = f.read()
    for variable in ("PROG", "CONFIG"):
        path = re.search(rf"^{variable}=(\S+)$", init, re.M).group(1)
        assert path in destinations, f"the init script's {variable}={path} is not installed"
    for conffile in manifest.conffiles():
        assert conffile in destinations, f"conffile {conffile} is not installed"


def repository_json_files():
    try:
        listed = subprocess.run(
            ["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
             "--", "*.json"], capture_output=True, check=True).stdout.decode()
        return sorted({os.path.join(REPO, p) for p in listed.split("\0") if p})
    except (OSError, subprocess.CalledProcessError):
        skipped = {".git", ".venv", "build", "node_modules"}
        found = []
        for directory, subdirectories, names in os.walk(REPO):
            subdirectories[:] = [d for d in subdirectories if d not in skipped]
            found += [os.path.join(directory, n) for n in names if n.endswith(".json")]
        return sorted(found)


def test_every_json_file_parses():
    paths = [p for p in repository_json_files() if os.path.isfile(p)]
    assert any(p.endswith("acl.d/flowprobe.json") for p in paths), paths
    problems = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"{os.path.relpath(path, REPO)}: {e}")
    assert not problems, "\n".join(problems)


def test_shell_scripts_are_shfmt_clean():
    shfmt = shutil.which("shfmt")
    if shfmt is None:
        pytest.skip("shfmt is not installed (Debian: apt-get install shfmt)")
    test_script = os.path.join(PACKAGE_DIR, "test.sh")
    scripts = [INIT_SCRIPT] + ([test_script] if os.path.exists(test_script) else [])
    # -sr -s: what the OpenWrt SDK CI (openwrt/gh-action-sdk) applies to init scripts
    result = subprocess.run([shfmt, "-d", "-sr", "-s", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_version_is_valid_for_opkg_and_apk_and_is_the_codes():
    values = manifest.variables()
    version, release = values["PKG_VERSION"], values["PKG_RELEASE"]
    # apk-tools v3 rejects anything else (openwrt/packages #23706)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"PKG_VERSION {version!r} is not X.Y.Z"
    assert re.fullmatch(r"[1-9]\d*", release), f"PKG_RELEASE {release!r} is not a positive integer"
    with open(os.path.join(SOURCE_ROOT, "__init__.py")) as f:
        init = ast.parse(f.read())
    code_version = next(ast.literal_eval(n.value) for n in init.body if isinstance(n, ast.Assign)
                        and any(getattr(t, "id", None) == "__version__" for t in n.targets))
    wheel_version = pyproject_table("project")["version"]
    # flowprobe --version prints __version__; the SDK installs the wheel named by PKG_VERSION
    assert version == code_version == wheel_version, (version, code_version, wheel_version)


def _has_module(name):
    # run outside the repository: its build/ directory would pass for `build`
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is None)"
    return subprocess.run([sys.executable, "-c", probe], cwd="/").returncode == 0


def test_the_package_build_steps_on_the_host(tmp_path):
    """The Makefile's own Build/Prepare recipe, then the wheel build and
    install that python3-package.mk runs (python -m build / installer, or
    pip with the same setuptools backend where those are not installed),
    then the filespec: what reaches the router is the wheel named by
    PKG_VERSION, the compiled core and the console script, and no C source."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: the wheel builds the C core")
    values = manifest.variables()
    build_dir, install_dir = tmp_path / "build", tmp_path / "ipkg-install"
    build_dir.mkdir()
    substitutions = dict(values, PKG_BUILD_DIR=str(build_dir), CP="cp -fpR", FIND="find")
    prepare = "\n".join(manifest.expand(line, substitutions)
                        for line in manifest.recipe(manifest.PACKAGE_MAKEFILE, "Build/Prepare"))
    subprocess.run(["sh", "-ec", prepare], check=True)
    assert not list(build_dir.rglob("*.so")), "a host-built extension was copied into the build"

    wheels = tmp_path / "openwrt-build"
    if _has_module("build") and _has_module("installer"):
        build = [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", wheels]
    else:  # the same PEP 517 backend (setuptools + cffi) through pip
        build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                 "--wheel-dir", wheels]
    subprocess.run([*build, str(build_dir)], check=True, capture_output=True, cwd=tmp_path)
    # Py3Build/Install/Default looks for $(PYTHON3_PKG_WHEEL_NAME)-$(PKG_VERSION)-*.whl
    pattern = f"{values['PKG_NAME'].replace('-', '_')}-{values['PKG_VERSION']}-*.whl"
    found = list(wheels.glob(pattern))
    assert len(found) == 1, f"the SDK looks for {pattern}; the build made {os.listdir(wheels)}"
    wheel = found[0]
    if _has_module("installer"):
        install = [sys.executable, "-m", "installer", "--destdir", install_dir, "--prefix", "/usr",
                   "--no-compile-bytecode"]
    else:
        # --ignore-installed: otherwise pip uninstalls the venv's own flowprobe first
        install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                   "--ignore-installed", "--no-compile", "--root", install_dir, "--prefix", "/usr"]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, cwd=tmp_path)

    site = os.path.relpath(site_packages(install_dir), install_dir)
    problems = []
    for command, path in manifest.filespec():
        matches = list(install_dir.glob(path.replace("$(PYTHON3_PKG_DIR)", site)))
        if not matches:  # python-package-install.sh stops the build then
            problems.append(f"filespec {command}|{path}: matches nothing the wheel installs")
        if command == "-":
            for match in matches:
                if match.is_dir():
                    shutil.rmtree(match)
                else:
                    match.unlink()
    assert not problems, "\n".join(problems)
    package = install_dir / site / "flowprobe"
    assert list(package.glob("_cmeter_ffi*.so")), "the compiled core is not in the package"
    assert not [p.name for p in package.rglob("*.[ch]")], "C sources would reach the router"
    for source, _ in manifest.installed_files():
        if source.startswith(manifest.BUILD_OUTPUT_PREFIX):
            script = install_dir / source[len(manifest.BUILD_OUTPUT_PREFIX):]
            assert script.is_file() and script.read_text().startswith("#!"), script


def site_packages(root):
    """site-packages under root as an installer with --prefix /usr lays it out."""
    found = [p for p in root.glob("usr/lib/python3*/site-packages") if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


# ---- with a real OpenWrt tree ----

# include/scan.mk (openwrt/openwrt): how the SDK finds a feed's packages
FEED_SCAN_SIGNATURE = re.compile(r"call (Build/DefaultTargets|Build(Package|Target)|.+Package)")
FEED_SCAN_DEPTH = 5


def package_directories():
    """The directories the SDK's feed scan takes for packages of this repository."""
    found = []
    for directory, subdirectories, names in os.walk(REPO):
        depth = os.path.relpath(directory, REPO).count(os.sep) + 1
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")
                             and d not in {"build", "node_modules"} and depth < FEED_SCAN_DEPTH]
        if "Makefile" in names:
            with open(os.path.join(directory, "Makefile"), errors="replace") as f:
                if FEED_SCAN_SIGNATURE.search(f.read()):
                    found.append(directory)
    return sorted(found)


def test_the_feed_scan_finds_the_package_and_not_the_repository_root():
    found = package_directories()
    assert os.path.dirname(manifest.PACKAGE_MAKEFILE) in found
    # with src-git the repository root is the feed's root: its Makefile must not look like a package
    assert REPO not in found, f"the SDK would take {REPO}/Makefile for a package"


def known_packages(tree):
    """Binary and source package names from the tree's metadata index."""
    index = os.path.join(tree, "tmp", ".packageinfo")
    if not os.path.isfile(index):
        pytest.fail(f"{index} is missing: run './scripts/feeds update -a && ./scripts/feeds "
                    f"install -a && make defconfig' in {tree} first")
    binary, source = set(), set()
    with open(index, errors="replace") as f:
        for line in f:
            if line.startswith(("Package: ", "Provides: ")):
                binary.update(line.split(":", 1)[1].split())
            elif line.startswith("Source-Makefile: "):
                source.add(os.path.basename(os.path.dirname(line.split(":", 1)[1].strip())))
    return binary, source


def build_dependency_package(word):
    """The source package a Build-Depends word names: luci.mk writes them as
    COND:package (LUCI_CSSTIDY:csstidy: only when that option is set),
    host builds as package/host."""
    return word.lstrip("+").split(":")[-1].split("/")[0]


def test_build_dependency_words_name_their_package():
    assert [build_dependency_package(w) for w in
            ["LUCI_CSSTIDY:csstidy", "LUCI_SRCDIET:luasrcdiet", "python-cffi/host",
             "!BUILD_NLS:libiconv", "+libffi/host"]] == [
        "csstidy", "luasrcdiet", "python-cffi", "libiconv", "libffi"]


def test_openwrt_metadata_scan_finds_every_dependency():
    tree = os.environ.get("OPENWRT_TREE")
    if not tree:
        pytest.skip("OPENWRT_TREE is not set: point it at an OpenWrt SDK or buildroot whose "
                    "feeds (packages, luci and this repository) are installed, to run its "
                    "metadata scan on these packages")
    binary, source = known_packages(tree)
    problems = []
    for directory in package_directories():
        name = os.path.basename(directory)
        result = subprocess.run(["make", "--no-print-directory", "-r", "-C", directory, "DUMP=1",
                                 f"TOPDIR={tree}"], capture_output=True, text=True)
        if result.returncode != 0 or "Package: " not in result.stdout:
            problems.append(f"{name}: the metadata scan failed: {result.stderr.strip()}")
            continue
        for line in result.stdout.splitlines():
            field, _, value = line.partition(": ")
            if field == "Depends":
                wanted = [w.lstrip("+").split(":")[-1] for w in value.split()
                          if not w.startswith("@")]
                problems += [f"{name}: Depends on {w}, which the tree does not have"
                             for w in wanted if w not in binary]
            elif field == "Build-Depends":
                wanted = [build_dependency_package(w) for w in value.split()]
                problems += [f"{name}: Build-Depends on {w}, which the tree does not have"
                             for w in wanted if w not in source and w not in binary]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("cflags, added", [("", ["-O2"]), ("-Os -pipe", []),
                                           ("-pipe -mips32r2 -O3", []), ("-Os", [])])
def test_the_targets_optimisation_is_not_overridden(monkeypatch, cflags, added):
    """The OpenWrt SDK builds with -Os (flash is small: 16 % less MIPS text
    than -O2, measured in the note); the builder adds -O2 only when CFLAGS
    say nothing, because a later -O wins."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "build_cmeter", os.path.join(SOURCE_ROOT, "_build_cmeter.py"))
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    monkeypatch.setenv("CFLAGS", cflags)
    assert builder.optimization() == added
