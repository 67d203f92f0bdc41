"""Which files the flowprobe package installs, and where they go in the Debian test guest.

The OpenWrt package (package/flowprobe/Makefile) is the authority: when
tests/package_manifest.py exists, its installed_files() reads the Makefile's install recipe
and that list is staged. Until then (or for what a Py3Package installs by itself, the Python
package), the list below, kept in this one place, says the same thing.

Paths are OpenWrt's; the one difference a Debian guest needs is where python3 looks for
packages, mapped in guest_path().
"""

import importlib.util
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_MAKEFILE = REPO / "package" / "flowprobe" / "Makefile"
PACKAGE_MANIFEST = REPO / "tests" / "package_manifest.py"

# OpenWrt's python3 packages live in /usr/lib/python3.X/site-packages; Debian's python3 reads
# /usr/lib/python3/dist-packages instead.
OPENWRT_SITE_PACKAGES = re.compile(r"^/usr/lib/python3(\.\d+)?/site-packages/")
DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages/"
PYTHON_PACKAGE_DESTINATION = "/usr/lib/python3.11/site-packages/flowprobe"
EXECUTABLE_DIRECTORIES = ("/etc/init.d/", "/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/")
# build-time only, left out by the package's filespec
BUILD_ONLY = ("_build_cmeter.py",)

# /usr/sbin/flowprobe: the console script ([project.scripts]) the package build makes, as
# setuptools writes it (with OpenWrt's shebang fixed to the system python3).
LAUNCHER = b"""#!/usr/bin/python3
import sys

from flowprobe.cli import main

sys.exit(main())
"""


class StagingError(RuntimeError):
    """The package's file list names a file that is not there (not built, or renamed)."""


@dataclass(frozen=True)
class StagedFile:
    destination: str      # the absolute path in the guest
    content: bytes
    mode: int
    origin: str           # where it came from, for messages

    def describe(self):
        return f"{self.destination} <- {self.origin} ({self.mode:o})"


def guest_path(destination):
    """An OpenWrt install path as the Debian guest needs it."""
    return OPENWRT_SITE_PACKAGES.sub(DEBIAN_DIST_PACKAGES, destination)


def python_package_files():
    """The flowprobe package as the Py3Package installs it (its filespec leaves out the cffi
    builder and the C sources): every module and the built C extension (.abi3.so, built by
    `make build` against Debian's libpcap)."""
    root = REPO / "src" / "flowprobe"
    sources = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                     and p.name not in BUILD_ONLY
                     and (p.suffix == ".py" or p.name.endswith(".abi3.so")))
    if not any(p.name.endswith(".abi3.so") for p in sources):
        raise StagingError(f"no built C extension (*.abi3.so) in {root}: run `make build`")
    return [(p, f"{PYTHON_PACKAGE_DESTINATION}/{p.relative_to(root)}", 0o644) for p in sources]


def fallback_files():
    """The package's install recipe until package/flowprobe/Makefile and
    tests/package_manifest.py exist: the files/ tree at the same paths, and the console
    script."""
    files = REPO / "files"
    pairs = [(p, "/" + str(p.relative_to(files)), None) for p in sorted(files.rglob("*"))
             if p.is_file()]
    return pairs + [(LAUNCHER, "/usr/sbin/flowprobe", 0o755)]


def _manifest_module():
    spec = importlib.util.spec_from_file_location("package_manifest", PACKAGE_MANIFEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def manifest_files():
    """(source, destination, mode) from the OpenWrt package's Makefile, or None when it or
    its reader is not there yet. A source the package build makes (the console script) is
    LAUNCHER, as setuptools writes it."""
    if not (PACKAGE_MAKEFILE.exists() and PACKAGE_MANIFEST.exists()):
        return None
    module = _manifest_module()
    try:
        recipe = module.installed_entries(PACKAGE_MAKEFILE)[1]
    except module.ManifestError as error:
        raise StagingError(f"cannot read the package's install recipe: {error}") from error
    entries = []
    for entry in recipe:
        if entry.built:
            if not entry.source.endswith("/usr/bin/flowprobe"):
                raise StagingError(f"the package installs {entry.source}, a build output "
                                   "this test does not know how to make")
            entries.append((LAUNCHER, entry.destination, entry.mode))
        else:
            entries.append((Path(entry.source), entry.destination, entry.mode))
    return entries


def package_accounts():
    """(user, group) pairs the package creates (OpenWrt's USERID:=user:group, user=uid:...),
    from the Makefile; the daemon drops to that user after opening its captures."""
    if not (PACKAGE_MAKEFILE.exists() and PACKAGE_MANIFEST.exists()):
        return [("flowprobe", "flowprobe")]
    try:
        field = _manifest_module().package_field(PACKAGE_MAKEFILE, "flowprobe", "USERID")
    except Exception as error:  # no USERID: the package creates no account
        if type(error).__name__ != "ManifestError":
            raise
        return []
    accounts = []
    for word in field.split():
        user, _, group = word.partition(":")
        accounts.append((user.split("=")[0], (group or user).split("=")[0]))
    return accounts


def source_of_list():
    return "package/flowprobe/Makefile" if manifest_files() is not None else "qemu/vm/staging.py"


def installed_files():
    """Every file the package puts on a system, as StagedFiles for the guest."""
    entries = manifest_files()
    if entries is None:
        entries = fallback_files()
    if not any(OPENWRT_SITE_PACKAGES.match(d) for _, d, _ in entries):
        entries += python_package_files()  # a Py3Package installs these by itself
    staged = {}
    for source, destination, mode in entries:
        if isinstance(source, bytes):
            content, origin = source, "console script (as setuptools writes it)"
        elif source.is_file():
            content, origin = source.read_bytes(), str(source.relative_to(REPO))
        else:
            raise StagingError(f"the package installs {source}, which does not exist")
        if mode is None:
            executable = source.stat().st_mode & stat.S_IXUSR or destination.startswith(
                EXECUTABLE_DIRECTORIES)
            mode = 0o755 if executable else 0o644
        path = guest_path(destination)
        staged[path] = StagedFile(path, content, mode, origin)
    return sorted(staged.values(), key=lambda f: f.destination)


if __name__ == "__main__":
    print(f"# from {source_of_list()}")
    for staged_file in installed_files():
        print(staged_file.describe())
