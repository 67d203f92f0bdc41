"""What the OpenWrt package Makefile (package/flowprobe/Makefile) says.

Read as text, without an OpenWrt tree: the version fields, a package's
DEPENDS, and the files its `Py3Package/<name>/install` recipe puts on the
router. The QEMU tests stage "the same file list as the package" from
installed_files(), so a file added to the recipe reaches them too.

The recipe is kept to plain lines (`$(INSTALL_DIR) dir`, `$(INSTALL_BIN|
INSTALL_CONF|INSTALL_DATA) source destination`); any other line that is not
a `$(call ...)` is an error here, so the parser never silently skips one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_MAKEFILE = os.path.join(REPO, "package", "flowprobe", "Makefile")

# include/package-defaults.mk (openwrt/openwrt): install -m0755/-m0600/-m0644
INSTALL_MODES = {"INSTALL_BIN": 0o755, "INSTALL_CONF": 0o600, "INSTALL_DATA": 0o644}

# made by the package build (python -m installer into $(PKG_INSTALL_DIR)), not in the repo
BUILD_OUTPUT_PREFIX = "$(PKG_INSTALL_DIR)/"

REFERENCE = re.compile(r"\$\((\w+)\)")
ABSPATH = re.compile(r"\$\(abspath ([^()]*)\)")


class ManifestError(Exception):
    pass


@dataclass(frozen=True)
class InstalledFile:
    source: str       # absolute path in the repository, or $(PKG_INSTALL_DIR)/... (built)
    destination: str  # absolute path on the router
    mode: int

    @property
    def built(self) -> bool:
        """True for a file the build makes: the wheel's console script
        (pyproject [project.scripts]) at $(PKG_INSTALL_DIR)/usr/bin/<name>."""
        return self.source.startswith(BUILD_OUTPUT_PREFIX)


def logical_lines(text):
    """The Makefile's lines with backslash continuations joined, comments
    (outside recipes) dropped, each with the number of its first line."""
    lines, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = pending + raw
        pending = ""
        if not line.startswith("\t"):
            line = line.split("#", 1)[0]
        lines.append((start, line.rstrip()))
    return lines


def variables(makefile_path=PACKAGE_MAKEFILE):
    """Simple (:=) assignments at the Makefile's top level, expanded, with
    CURDIR as make sets it (the physical directory). Assignments under a
    conditional (ifeq ... endif) are left out: what is read is the package as
    this repository's own feed builds it (FLOWPROBE_TREE, the working tree),
    not the release tarball's case."""
    with open(makefile_path) as f:
        text = f.read()
    values = {"CURDIR": os.path.dirname(os.path.realpath(makefile_path))}
    depth = conditional = 0
    for _, line in logical_lines(text):
        word = line.strip().split(" ", 1)[0]
        if line.startswith("define "):
            depth += 1
        elif line.strip() == "endef":
            depth -= 1
        elif depth == 0 and word in {"ifeq", "ifneq", "ifdef", "ifndef"}:
            conditional += 1
        elif depth == 0 and word == "endif":
            conditional -= 1
        elif depth == 0 and conditional == 0:
            match = re.fullmatch(r"(\w+)\s*:=\s*(.*)", line.strip())
            if match:
                values[match.group(1)] = expand(match.group(2).strip(), values)
    return values


def expand(text, values):
    """$(NAME) from values and $(abspath ...); anything else is left as it is."""
    previous = None
    while previous != text:
        previous = text
        text = REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), text)
        text = ABSPATH.sub(lambda m: os.path.abspath(m.group(1).strip()), text)
    return text


def define_block(makefile_path, name):
    """The lines of `define NAME` ... `endef` (continuations joined)."""
    with open(makefile_path) as f:
        lines = logical_lines(f.read())
    inside, block = False, []
    for number, line in lines:
        if line.strip() == f"define {name}":
            inside = True
        elif inside and line.strip() == "endef":
            return block
        elif inside:
            block.append((number, line))
    raise ManifestError(f"{makefile_path}: no 'define {name}' ... 'endef'")


def package_field(makefile_path, package, field):
    """A field of `define Package/<package>` (e.g. DEPENDS), as one string."""
    for _, line in define_block(makefile_path, f"Package/{package}"):
        match = re.fullmatch(rf"\s*{field}\s*:?=\s*(.*)", line)
        if match:
            return " ".join(match.group(1).split())
    raise ManifestError(f"{makefile_path}: Package/{package} has no {field}")


def depends(makefile_path=PACKAGE_MAKEFILE, package="flowprobe"):
    """The package names DEPENDS selects (+name, +COND:name); @ conditions
    and plain build-order names are not runtime packages and are left out."""
    names = []
    for word in package_field(makefile_path, package, "DEPENDS").split():
        if word.startswith("+"):
            names.append(word[1:].split(":")[-1])
    return names


def installed_entries(makefile_path=PACKAGE_MAKEFILE, package="flowprobe"):
    """The files the package's install recipe puts on the router, in order,
    and the directories it creates."""
    values = dict(variables(makefile_path), **{"1": ""})
    directories, files = [], []
    for number, line in define_block(makefile_path, f"Py3Package/{package}/install"):
        words = expand(line, values).split()
        if not words or line.strip().startswith("$(call "):
            continue
        macro = re.fullmatch(r"\$\((\w+)\)", words[0])
        where = f"{makefile_path}:{number}"
        if macro and macro.group(1) == "INSTALL_DIR":
            directories.extend(words[1:])
        elif macro and macro.group(1) in INSTALL_MODES and len(words) == 3:
            source, destination = words[1], words[2]
            if destination.endswith("/"):
                destination += os.path.basename(source)
            files.append(InstalledFile(source, destination, INSTALL_MODES[macro.group(1)]))
        else:
            raise ManifestError(f"{where}: not a plain install line: {line.strip()!r}")
    return directories, files


def installed_files(makefile_path=PACKAGE_MAKEFILE, package="flowprobe"):
    """[(source, destination)] of every file the package installs: source is
    a path in this repository, or $(PKG_INSTALL_DIR)/usr/bin/flowprobe for the
    console script the wheel builds (see InstalledFile.built)."""
    return [(f.source, f.destination) for f in installed_entries(makefile_path, package)[1]]


def conffiles(makefile_path=PACKAGE_MAKEFILE, package="flowprobe"):
    return [line.strip() for _, line in define_block(makefile_path, f"Package/{package}/conffiles")
            if line.strip()]


def recipe(makefile_path, name):
    """The shell lines of `define NAME` (a recipe), continuations joined."""
    return [line.strip() for _, line in define_block(makefile_path, name) if line.strip()]


def filespec(makefile_path=PACKAGE_MAKEFILE, package="flowprobe"):
    """[(command, path)] of `Py3Package/<package>/filespec` ('+' copy, '-' remove)."""
    entries = []
    for line in recipe(makefile_path, f"Py3Package/{package}/filespec"):
        command, _, path = line.partition("|")
        entries.append((command.strip(), path.split("|")[0].strip()))
    return entries
