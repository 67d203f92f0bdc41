"""Instructions a command executes, counted by valgrind's callgrind, and how
many of them ran inside given C functions (inclusive: with what they call).

callgrind is deterministic: the same command on the same input counts the
same, whatever else the machine is doing.  For flowprobe the C core is
everything reached through cffi's wrappers (`_cffi_f_*`, one per function
of the core Python calls); the rest is Python's part: the interpreter, its
modules, and the C library they call.
"""

import re
import subprocess
import tempfile
from pathlib import Path

COLLECTED = re.compile(r"Collected : (\d+)")
NAMED = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")


class ToolFailed(Exception):
    pass


def inclusive_costs(out_file, wanted):
    """{function name: instructions} for the functions for which wanted(name)
    is true: their own cost plus that of every call they make (callgrind's
    format: `fn=` opens a function's lines, `calls=` lines are followed by
    the call's inclusive cost)."""
    names, costs = {}, {}
    current = None
    with open(out_file) as lines:
        for line in lines:
            first = line[:1]
            if first.isdigit() or first in "+-*":
                if current is not None:
                    parts = line.split()
                    if len(parts) > 1:
                        costs[current] = costs.get(current, 0) + int(parts[1])
                continue
            if line.startswith("fn="):
                found = NAMED.match(line.rstrip("\n"))
                number, name = found.group(1), found.group(2)
                if name is not None:
                    names[number] = name
                name = names.get(number, "")
                current = name if wanted(name) else None
            elif line.startswith("cfn="):
                found = NAMED.match(line.rstrip("\n"))
                if found.group(2) is not None:
                    names[found.group(1)] = found.group(2)
    return costs


def count(command, inside=None, keep_stdout=False):
    """(instructions in all, instructions inside the functions for which
    inside(name) is true, what it printed on stderr, after its stdout if
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
        within = sum(inclusive_costs(out_file, inside).values()) if inside else 0
        return int(found.group(1)), within, (done.stdout or "") + done.stderr


def is_cffi_wrapper(name):
    return name.startswith("_cffi_f_")
