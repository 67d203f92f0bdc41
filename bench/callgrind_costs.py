"""Instructions a command executes, counted by valgrind's callgrind, and how
many of them ran inside given shared objects (entered from the others,
with all they call).

callgrind is deterministic: the same command on the same input counts the
same, whatever else the machine is doing.  For flowprobe the compiled side
is its C core (the cffi extension), libpcap and SQLite; the rest is
Python's part: the interpreter, its modules, and the C library they call.
"""

import re
import subprocess
import tempfile
from pathlib import Path

COLLECTED = re.compile(r"Collected : (\d+)")


class ToolFailed(Exception):
    pass


OBJECT = re.compile(r"^c?ob=\((\d+)\)(?: (.*))?$")
# code valgrind knows no object of: the trampolines (PLT stubs and the like)
# through which SQLite calls its own allocator and comparators.  A call from
# there into SQLite is made inside SQLite, and already counted in the call
# that entered it; counting it again took ~19 000 instructions a record off
# the history store's Python figure.
UNKNOWN = ("???", "")


def calls_into(out_file, inside):
    """Instructions run inside the objects (shared libraries) for which
    inside(path) is true, entered from the others: the inclusive cost of
    every call that crosses into them (callgrind's `ob=` is the caller's
    object, `cob=` the next call's callee's, the caller's when absent)."""
    names, total = {}, 0
    current = callee = None
    after_calls = False
    with open(out_file) as lines:
        for line in lines:
            first = line[:1]
            if first.isdigit() or first in "+-*":
                if after_calls:
                    target = callee if callee is not None else current
                    if inside(target) and not inside(current) and current not in UNKNOWN:
                        total += int(line.split()[1])
                    callee, after_calls = None, False
                continue
            if line.startswith(("ob=", "cob=")):
                found = OBJECT.match(line.rstrip("\n"))
                if found.group(2) is not None:
                    names[found.group(1)] = found.group(2)
                name = names.get(found.group(1), "")
                if line[0] == "o":
                    current = name
                else:
                    callee = name
            elif line.startswith("calls="):
                after_calls = True
    return total


def count(command, inside=None, keep_stdout=False):
    """(instructions in all, instructions inside the objects for which
    inside(path) is true, what it printed on stderr, after its stdout if
    keep_stdout) of a command run under callgrind."""
    with tempfile.TemporaryDirectory() as scratch:
        out_file = Path(scratch) / "callgrind.out"
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
                               *map(str, command)],
                              stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        found = COLLECTED.search(done.stderr)
        if done.returncode != 0 or not found:
            raise ToolFailed(f"{command[0]} failed under callgrind:\n{done.stderr[-2000:]}")
        within = calls_into(out_file, inside) if inside else 0
        return int(found.group(1)), within, (done.stdout or "") + done.stderr


def is_compiled_core(path):
    """flowprobe's C core and the C libraries it and the store drive."""
    name = path.rsplit("/", 1)[-1]
    return name.startswith(("_cmeter_ffi", "libpcap", "libsqlite3"))
